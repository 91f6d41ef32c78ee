import ArgumentParser
import EddyProtocol
import Foundation
import Evaluation
import Pipeline
import SwiftProtobuf
import ZeroMQ

/// The two frames of a sample batch: the stream name, then the SampleBatch.
func sampleFrames(
    stream: String, sequence: UInt64, dim: Int, values: [Float], timestamps: [Int64] = []
) throws -> [[UInt8]] {
    var batch = Eddy_V1_SampleBatch()
    batch.stream = stream
    batch.sequence = sequence
    batch.dim = UInt32(dim)
    batch.count = UInt32(values.count / dim)
    batch.timestampsNs = timestamps
    batch.values = Wire.bytes(values)
    return [Array(stream.utf8), try batch.serializedBytes()]
}

/// A PUSH socket connected to a daemon's ingest endpoint (CURVE if the options say so) that lets
/// queued messages reach the daemon before the process exits. It queues messages only for a daemon
/// that completed the handshake (ZMQ_IMMEDIATE), and a send waits `producerTimeout` at most: with
/// no daemon there, or one that refuses this client's key, `deliver` says so instead of the tool
/// reporting samples sent that went nowhere.
func producerSocket(_ context: Context, endpoint: String, curve: CurveOptions) throws -> Socket {
    let push = try Socket(context, .push)
    try push.setOption(17, 5000)  // ZMQ_LINGER
    try push.setOption(39, 1)  // ZMQ_IMMEDIATE
    try push.setSendTimeout(milliseconds: Int(producerTimeout * 1000))
    try curve.apply(to: push)
    try push.connect(endpoint)
    return push
}

/// What a daemon refuses that a producer sees before sending (SPEC 4): a sample wider than
/// `max_dim`, a value beyond `max_abs_value`, more samples than `max_samples_per_message` or more
/// bytes than `max_message_bytes` in a message. The limits are the daemon's defaults, or those of
/// the configuration file it runs with (`--config`). Before, `feed` and `label` said "sent" for
/// messages the daemon then refused (from review).
struct ProducerLimits {
    let configuration: DaemonConfiguration

    init(config: String?) throws { configuration = try loadConfiguration(config) }

    private var whose: String { "the daemon's limit; --config names its configuration file" }

    /// Samples (or lines) to a message for rows of `dim` values: at most `batch`, within both
    /// message limits. Throws if one row is already too wide.
    func samplesPerMessage(batch: Int, dim: Int) throws -> Int {
        let c = configuration
        guard dim <= c.maxDim else { throw CommandFailure("\(dim) values a row exceed max_dim \(c.maxDim) (\(whose))") }
        // The values and a timestamp a row, and room for the stream's name and the fields around them.
        let rows = (c.maxMessageBytes - 1024) / (dim * 4 + 10)
        guard rows >= 1 else { throw CommandFailure("a row of \(dim) values exceeds max_message_bytes \(c.maxMessageBytes) (\(whose))") }
        return min(batch, c.maxSamplesPerMessage, rows)
    }

    /// Throws, naming the line, if a value is beyond `max_abs_value`.
    func check(_ values: [Float], line: Int) throws {
        let limit = configuration.maxAbsValue
        if let v = values.first(where: { !(abs($0) <= limit) }) {
            throw CommandFailure("line \(line): \(v) is beyond max_abs_value \(limit) (\(whose))")
        }
    }
}

/// Seconds a tool waits for a daemon to take a message.
let producerTimeout = 10.0

extension Socket {
    /// Sends a message to the daemon, or throws if none took it within `producerTimeout`.
    func deliver(_ frames: [[UInt8]]) throws {
        guard try send(frames) else {
            throw CommandFailure(
                "no daemon took a message within \(Int(producerTimeout)) s: is one running at the endpoint, "
                    + "and (with CURVE) is this client's key on its allow-list?")
        }
    }
}

/// Numeric rows of a CSV (blank lines before the first row and after the last are ignored; one among
/// the rows is an error: a one-column export writes a missing value so, and skipping it would put
/// every later row one place off). A header (a first line with a field that is not a number) names columns
/// that are not features: `timestamp`, a label column (`is_anomaly`, `label`, `anomaly`, ...: an
/// anomaly label learned as a feature would teach the model that the label is part of normal data)
/// and any named in `skipping`.
struct CSVSamples {
    var header: [String]?
    var skipped: Set<Int> = []
    /// The skipped columns' names, as the header has them.
    var skippedNames: [String] { header.map { h in skipped.sorted().map { h[$0] } } ?? [] }
    var lineNumber = 0
    var sawData = false
    let skipping: Set<String>
    /// The header's label column, if it has one, and the last row's label (its value is not 0).
    var labelColumn: Int?
    var label = false
    /// A blank line seen after the first row: an error if another row follows it.
    var blankAfterData: Int?

    init(skipping: [String] = []) {
        self.skipping = Set(skipping.map { $0.lowercased() })
    }

    /// Whether a column of this name is not a feature.
    static func isSkipped(_ name: String, extra: Set<String>) -> Bool {
        let n = name.lowercased()
        return n == "timestamp" || Corpus.labelColumns.contains(n) || extra.contains(n)
    }

    /// The numeric values of `line`, or nil for a header or blank line. Throws on a bad field, a
    /// value that is not finite, or a row of another width than the header's.
    mutating func parse(_ line: Substring) throws -> [Float]? {
        lineNumber += 1
        var trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
        // A byte-order mark (Excel's "CSV UTF-8") is not part of the first field.
        if lineNumber == 1, trimmed.hasPrefix("\u{FEFF}") { trimmed = String(trimmed.dropFirst()).trimmingCharacters(in: .whitespaces) }
        if trimmed.isEmpty {
            if sawData && blankAfterData == nil { blankAfterData = lineNumber }
            return nil
        }
        if let blank = blankAfterData {
            throw CSVError(line: blank, field: "", problem: "an empty line among the rows (a missing value?): every row must be whole")
        }
        let fields = Self.fields(of: trimmed)
        if header == nil, !sawData, fields.contains(where: { Float($0) == nil }) {
            header = fields
            skipped = Set(fields.indices.filter { Self.isSkipped(fields[$0], extra: skipping) })
            labelColumn = fields.firstIndex { Corpus.labelColumns.contains($0.lowercased()) }
            // A --skip that names no column would send the column it meant to leave out (from review).
            let named = Set(fields.map { $0.lowercased() })
            if let missing = skipping.sorted().first(where: { !named.contains($0) }) {
                throw CSVError(line: lineNumber, field: "", problem: "--skip \(missing): no such column (the header: \(fields.joined(separator: ", ")))")
            }
            guard skipped.count < fields.count else { throw CSVError(line: lineNumber, field: "", problem: "no value column left") }
            return nil
        }
        if header == nil, !skipping.isEmpty {
            throw CSVError(line: lineNumber, field: "", problem: "--skip names columns, and the file has no header (a first line of names)")
        }
        if let header, fields.count != header.count {
            throw CSVError(line: lineNumber, field: "", problem: "\(fields.count) fields, the header has \(header.count)")
        }
        label = labelColumn.map { Double(fields[$0]).map { $0 != 0 } ?? false } ?? false
        var values: [Float] = []
        for (i, f) in fields.enumerated() where !skipped.contains(i) {
            guard let v = Float(f) else {
                // A column that is not a feature under another name (`time`, `date`): say how to leave it out.
                guard let header else { throw CSVError(line: lineNumber, field: f) }
                throw CSVError(line: lineNumber, field: f, problem: "\"\(f)\" in column \(header[i]) is not a number (--skip \(header[i]) leaves the column out)")
            }
            guard v.isFinite else { throw CSVError(line: lineNumber, field: f, problem: "\"\(f)\" is not a finite number") }
            values.append(v)
        }
        sawData = true
        return values
    }

    /// A CSV line's fields (`Corpus.fields`: trimmed, unquoted), as `eddy eval` reads them too.
    static func fields(of line: String) -> [String] { Corpus.fields(of: line) }
}

/// Names the columns a CSV reader left out, on standard error (a label column learned silently as a
/// feature, or one dropped silently, are both surprises).
func reportSkipped(_ csv: CSVSamples) {
    // (`timestamp` is left out by name, as every tool and the README say: not worth a line.)
    let names = csv.skippedNames.filter { $0.lowercased() != "timestamp" }
    guard !names.isEmpty else { return }
    FileHandle.standardError.write(Data("eddy: not a feature, left out: \(names.joined(separator: ", "))\n".utf8))
}

struct CSVError: Error, CustomStringConvertible {
    let line: Int
    let field: String
    var problem: String? = nil
    var description: String { "line \(line): " + (problem ?? "\"\(field)\" is not a number") }
}

/// Reads lines from a file path or "-" (standard input).
func readLines(_ path: String) throws -> AnySequence<Substring> {
    if path == "-" {
        return AnySequence(AnyIterator { readLine(strippingNewline: true).map { Substring($0) } })
    }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CommandFailure("cannot read \(path)")
    }
    let text = String(decoding: data, as: UTF8.self)
    // By Character: "\r\n" is one (a CRLF file split on "\n" would be one long line).
    return AnySequence(text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline))
}

/// Why a file could not be read or written, in words: Foundation's errors print on Linux as an
/// NSError's fields ("Error Domain=NSCocoaErrorDomain Code=512 "(null)"…", from review).
func fileProblem(_ error: Error) -> String {
    let ns = error as NSError
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(underlying.code)))
    }
    if let path = ns.userInfo[NSFilePathErrorKey] as? String {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue { return "it is a directory" }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && !FileManager.default.fileExists(atPath: parent) { return "no directory \(parent)" }
    }
    return ns.localizedDescription
}

/// `fflush(stdout)`: each printed line reaches a pipe at once.
func flushStandardOutput() { fflush(nil) }

/// A command that ran and failed (not a usage mistake): printed as `Error: …` without the usage text.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The daemon's refusals of what a producer sends (from review: `feed` and `label` said "sent" for
/// messages the daemon then refused, a wrong dim or labels for a stream that takes none, which only
/// `error/<stream>/` told). A SUB socket on the daemon's publish endpoint, on a thread of its own
/// (a socket has one owner), takes the stream's errors, each printed as it comes, and the
/// heartbeats. A first whole heartbeat (every part of it) says the subscription is live, so no
/// refusal of the first message is missed. The end is confirmed when the heartbeats show the
/// stream has taken or refused every sample sent (ingest publishes its refusals and heartbeats in
/// order, so every refusal before that heartbeat has come), or, for what the stream does not count
/// (labels), two whole heartbeats after the last message.
final class Refusals: @unchecked Sendable {
    private let lock = Lock()
    /// Whole heartbeats received (a heartbeat split into parts counts once, at its last part).
    private var heartbeats = 0
    /// The stream's accepted samples in the latest heartbeat that listed it (nil: none has).
    private var accepted: UInt64?
    private var refused = 0, refusedSamples: UInt64 = 0, failure: String?
    /// `accepted` when listening began.
    private var acceptedBefore: UInt64 = 0
    /// A log stream's lines cut to `max_line_bytes` and repaired (invalid UTF-8), in the latest
    /// heartbeat and when listening began: the daemon takes such lines, and says so only there.
    private var mended: (cut: UInt64, repaired: UInt64) = (0, 0), mendedBefore: (cut: UInt64, repaired: UInt64) = (0, 0)
    private let stop = StopFlag()
    private var worker: Worker?
    private let tool: String, endpoint: String
    /// Refusals printed; the rest are counted.
    static let printed = 5

    init(context: Context, endpoint: String, stream: String, curve: CurveOptions, tool: String) {
        self.tool = tool
        self.endpoint = endpoint
        worker = Worker("\(tool)-refusals") { [self, stop] in
            do {
                let sub = try Socket(context, .sub)
                try sub.setOption(17, 0)  // ZMQ_LINGER
                try curve.apply(to: sub)
                try sub.subscribe(Topic.error(stream))
                try sub.subscribe(Topic.heartbeat)
                try sub.connect(endpoint)
                while !stop.isSet {
                    guard try sub.poll(timeout: 50) else { continue }
                    while let frames = try sub.receive(dontWait: true), frames.count == 2 {
                        if frames[0].starts(with: Array(Topic.heartbeat.utf8)) {
                            guard let hb = try? Eddy_V1_Heartbeat(serializedBytes: frames[1]) else { continue }
                            let status = hb.streams.first { $0.stream == stream }
                            lock.withLock {
                                if let status {
                                    accepted = status.accepted
                                    mended = (status.linesTruncated, status.linesRepaired)
                                }
                                if hb.part + 1 >= hb.parts { heartbeats += 1 }
                            }
                        } else if let e = try? Eddy_V1_Error(serializedBytes: frames[1]) {
                            let n = lock.withLock {
                                refused += 1
                                refusedSamples += UInt64(e.samples)
                                return refused
                            }
                            if n <= Self.printed {
                                FileHandle.standardError.write(Data("\(tool): the daemon refused: \(e.code): \(e.message)\n".utf8))
                            }
                        }
                    }
                }
            } catch {
                lock.withLock { failure = "\(error)" }
            }
        }
    }

    /// Waits until `done` holds (checked under the lock), giving up after `timeout` seconds
    /// without `progress` changing, or when the socket failed.
    private func wait(timeout: Double, progress: () -> UInt64 = { 0 }, until done: () -> Bool) -> Bool {
        var last = lock.withLock { progress() }, quietSince = Date()
        while Date().timeIntervalSince(quietSince) < timeout {
            let (finished, failed, now) = lock.withLock { (done(), failure != nil, progress()) }
            if finished { return true }
            if failed { return false }
            if now != last { (last, quietSince) = (now, Date()) }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return false
    }

    /// Waits for a first whole heartbeat (`timeout` seconds at most); without one, says that
    /// refusals will not be seen.
    func listening(timeout: Double) {
        if wait(timeout: timeout, until: { heartbeats > 0 }) {
            lock.withLock {
                acceptedBefore = accepted ?? 0
                mendedBefore = mended
            }
            return
        }
        let why = lock.withLock { failure.map { ": \($0)" } ?? "" }
        FileHandle.standardError.write(Data(
            "\(tool): no heartbeat from \(endpoint) within \(Int(timeout)) s\(why); the daemon's refusals, if any, will not be seen (--publish names its publish endpoint)\n".utf8))
    }

    /// Waits until the daemon has taken or refused the `samples` sent since listening began (nil:
    /// what the stream does not count, then two whole heartbeats after now), for as long as it makes
    /// progress and `timeout` seconds without; stops listening. Returns the refusals, and whether
    /// the end was confirmed.
    func finish(samples: Int?, timeout: Double) -> (refused: Int, confirmed: Bool) {
        let confirmed: Bool
        if lock.withLock({ heartbeats == 0 }) {
            confirmed = false
        } else if let samples {
            let sent = UInt64(samples)
            confirmed = wait(timeout: timeout, progress: { (accepted ?? 0) &+ refusedSamples }) {
                (accepted ?? 0) &- acceptedBefore &+ refusedSamples >= sent
            }
        } else {
            // Heartbeats that came before the last message but are not counted yet: the worker
            // reads every 50 ms.
            Thread.sleep(forTimeInterval: 0.06)
            let seen = lock.withLock { heartbeats }
            confirmed = wait(timeout: timeout, progress: { UInt64(heartbeats) }) { heartbeats >= seen + 2 }
        }
        close()
        let n = lock.withLock { refused }
        if n > Self.printed { FileHandle.standardError.write(Data("\(tool): \(n - Self.printed) more refusals\n".utf8)) }
        return (n, confirmed)
    }

    /// Stops listening and closes the socket (before its context goes, whose end waits for it).
    func close() {
        stop.set()
        worker?.join()
        worker = nil
    }

    /// The end of a tool's run: `sent` (what it said it sent) stands if the daemon refused none of
    /// it (`samples`: as in `finish`).
    func confirm(_ sent: String, samples: Int?, timeout: Double) throws {
        let (n, confirmed) = finish(samples: samples, timeout: timeout)
        // Lines taken but changed on the way in (from review: counted only in JSON heartbeats).
        let (cut, repaired) = lock.withLock { (mended.cut &- mendedBefore.cut, mended.repaired &- mendedBefore.repaired) }
        let mendedSaid =
            cut + repaired == 0 ? ""
            : "; the daemon cut \(cut) line\(cut == 1 ? "" : "s") to max_line_bytes and repaired \(repaired) with invalid UTF-8 (U+FFFD)"
        if n > 0 { throw CommandFailure("\(sent), and the daemon refused \(n) of its messages (above)\(mendedSaid)") }
        FileHandle.standardError.write(Data(
            "\(tool): \(sent)\(confirmed ? ", none refused" : "; no refusal seen, but the daemon's heartbeats did not confirm it")\(mendedSaid)\n".utf8))
    }
}

/// Where a producer hears the daemon's refusals: `--publish`, or with the default ingest endpoint
/// the default publish endpoint; nil (not listened for) when neither says.
struct RefusalOptions: ParsableArguments {
    @Option(help: "The daemon's publish endpoint, where it reports the messages it refuses (default: the publish endpoint of --config's daemon, or tcp://127.0.0.1:7701, when --endpoint is that daemon's ingest endpoint; none otherwise). With it the tool waits until the daemon's heartbeats show it took or refused what was sent, and fails if it refused any.")
    var publish: String?
    @Option(help: "Seconds to wait for a heartbeat, or for the daemon to make progress (with --publish).") var confirmSeconds: Double = 5

    func validate() throws {
        if !(confirmSeconds > 0 && confirmSeconds.isFinite) { throw ValidationError("--confirm-seconds must be positive") }
    }

    /// Starts listening for `stream`'s refusals, if there is an endpoint to listen on: `--publish`,
    /// or the publish endpoint of the daemon whose configuration (`--config`, else the defaults)
    /// has the ingest endpoint the tool sends to.
    func listen(context: Context, ingest: String, configuration: DaemonConfiguration, stream: String, curve: CurveOptions, tool: String)
        -> Refusals?
    {
        let defaults = DaemonConfiguration()
        let known = [configuration, defaults].first { $0.ingest == ingest }
        guard let endpoint = publish ?? known?.publish, !endpoint.isEmpty else { return nil }
        let r = Refusals(context: context, endpoint: endpoint, stream: stream, curve: curve, tool: tool)
        r.listening(timeout: confirmSeconds)
        return r
    }
}

/// The end of a producer's run: what it `said` it sent, confirmed by `heard` (`Refusals.confirm`)
/// when it listened, else said as it is.
func endOfRun(_ said: String, tool: String, heard: Refusals?, samples: Int?, timeout: Double) throws {
    guard let heard else { return FileHandle.standardError.write(Data("\(tool): \(said)\n".utf8)) }
    try heard.confirm(said, samples: samples, timeout: timeout)
}

/// A stream name the daemon would refuse (SPEC 4: UTF-8, no `/`, at most `max_stream_name_bytes`),
/// refused here before anything is sent.
func checkStreamName(_ stream: String, limits: ProducerLimits) throws {
    if let why = StreamName.problem(stream, maxBytes: limits.configuration.maxStreamNameBytes) {
        throw CommandFailure("--stream \(stream): \(why)")
    }
}
