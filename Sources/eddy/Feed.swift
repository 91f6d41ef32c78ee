import ArgumentParser
import Foundation
import Workloads
import ZeroMQ

struct Feed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send samples to a daemon: CSV lines from a file or stdin, log lines (--log), or the synthetic demo machine.",
        discussion: """
            One sample per line, comma-separated; a first line with a non-numeric field is a header, and \
            a `timestamp` column and a label column (is_anomaly, is_anomalous, label, labels, anomaly) are not sent (--skip names \
            more). Rows go out as they are read, at most --batch to a message: piped from a live source \
            (`tail -F data.csv | eddy feed --stream s`), each is sent as soon as its line is written. --demo instead streams eight correlated sensors with an \
            injected anomaly (spike, stuck sensor, broken correlation) every --anomaly-every samples. \
            --log sends raw log lines to a log stream (`tail -F app.log | eddy feed --log --stream app`): \
            each read's lines go out at once, at most --batch to a message; lines from standard input are \
            stamped with the time they were read (--no-stamp: not), a file's lines are not (--stamp: they are). \
            --demo-log streams a synthetic service log with a fault every --anomaly-every lines.
            """)

    @Argument(help: "CSV file, or - for standard input.") var file: String = "-"
    @Option(help: "Stream name.") var stream: String = "default"
    @Option(help: "Columns that are not features, besides timestamp and a label column (comma-separated names).")
    var skip: String = ""
    @Option(help: "The daemon's ingest endpoint.") var endpoint: String = "tcp://127.0.0.1:7700"
    @OptionGroup var curve: CurveOptions
    @OptionGroup var refusals: RefusalOptions
    @Option(help: "The daemon's configuration file, for its limits (max_dim, max_abs_value, max_samples_per_message, max_message_bytes; default: the daemon's defaults).")
    var config: String?
    @Option(help: "Samples per message (at most what the daemon's limits allow).") var batch: Int = 64
    @Option(help: "Samples per second (0: as fast as possible).") var rate: Double = 0
    @Flag(help: "Stream the synthetic sensor demo instead of reading CSV.") var demo = false
    @Flag(help: "Send raw log lines (a log stream) instead of CSV samples.") var log = false
    @Flag(help: "Stream the synthetic service log instead (a fault every --anomaly-every lines, five kinds in turn).")
    var demoLog = false
    @Flag(inversion: .prefixedNo, help: "--log: stamp each line with the time it was read (default: for standard input only).")
    var stamp: Bool?
    @Option(help: "Demo: samples (or lines) to send (0: until interrupted).") var count: Int = 0
    @Option(help: "Demo: an anomaly every this many samples (or lines).") var anomalyEvery: Int = 5000

    func validate() throws {
        if batch < 1 { throw ValidationError("--batch must be at least 1") }
        if !(rate >= 0 && rate.isFinite) { throw ValidationError("--rate must not be negative") }
        if anomalyEvery < 1 { throw ValidationError("--anomaly-every must be at least 1") }
        if count < 0 { throw ValidationError("--count must not be negative") }
        // From review: `feed file.csv --demo` sent the demo and ignored the file without a word.
        let sources = [demo ? "--demo" : nil, demoLog ? "--demo-log" : nil, log ? "--log" : nil].compactMap { $0 }
        if sources.count > 1 { throw ValidationError("\(sources.joined(separator: " and ")) go one at a time") }
        if (demo || demoLog) && file != "-" { throw ValidationError("\(sources[0]) sends a synthetic stream; \(file) is not read with it") }
    }

    func run() throws {
        let limits = try ProducerLimits(config: config)
        let context = try Context()
        try checkStreamName(stream, limits: limits)
        let push = try producerSocket(context, endpoint: endpoint, curve: curve)
        let heard = refusals.listen(
            context: context, ingest: endpoint, configuration: limits.configuration, stream: stream, curve: curve, tool: "eddy feed")
        defer { heard?.close() }
        func done(_ said: String, samples: Int) throws {
            try endOfRun(said, tool: "eddy feed", heard: heard, samples: samples, timeout: refusals.confirmSeconds)
        }
        let lineBatch = min(batch, limits.configuration.maxSamplesPerMessage)
        if demoLog {
            let sent = try feedDemoLog(stream: stream, batch: lineBatch, rate: rate, count: count, faultEvery: anomalyEvery, push: push)
            try done("sent \(sent) lines to log stream \(stream)", samples: Int(sent))
            return
        }
        if log {
            let sent = try feedLines(
                file, stream: stream, batch: lineBatch, maxBytes: limits.configuration.maxMessageBytes - 1024, stamp: stamp, rate: rate,
                push: push)
            guard sent > 0 else { throw CommandFailure("no lines in \(file == "-" ? "standard input" : file)") }
            try done("sent \(sent) lines to log stream \(stream)", samples: Int(sent))
            return
        }
        var sequence: UInt64 = 0
        var pending: [Float] = []
        var dim = 0, perMessage = batch
        let start = Date()
        func flush() throws {
            guard !pending.isEmpty else { return }
            try push.deliver(try sampleFrames(stream: stream, sequence: sequence, dim: dim, values: pending))
            sequence += UInt64(pending.count / dim)
            pending.removeAll(keepingCapacity: true)
            if rate > 0 {
                let due = Double(sequence) / rate - Date().timeIntervalSince(start)
                if due > 0 { Thread.sleep(forTimeInterval: due) }
            }
        }
        if demo {
            var machine = SensorDemo(anomalyEvery: anomalyEvery)
            dim = SensorDemo.dimension
            perMessage = try limits.samplesPerMessage(batch: batch, dim: dim)
            while count == 0 || Int(sequence) + pending.count / dim < count {
                pending += machine.next()
                if pending.count / dim == perMessage { try flush() }
            }
        } else {
            // Rows go out as each read brings them, at most --batch to a message: a file's in full
            // batches, a live pipe's (`tail -F data.csv | eddy feed -`) as soon as they are written,
            // not held until --batch of them have come (nor lost to a Ctrl-C while held).
            var csv = CSVSamples(skipping: skip.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) })
            var reader = try LineReader(path: file)
            while true {
                let lines = try reader.next()
                if lines.isEmpty { break }
                for line in lines {
                    guard let values = try csv.parse(Substring(decoding: line, as: UTF8.self)) else { continue }
                    if dim == 0 {
                        dim = values.count
                        reportSkipped(csv)
                        perMessage = try limits.samplesPerMessage(batch: batch, dim: dim)
                    }
                    guard values.count == dim else {
                        throw CommandFailure("line \(csv.lineNumber): \(values.count) values, expected \(dim)")
                    }
                    try limits.check(values, line: csv.lineNumber)
                    pending += values
                    if pending.count / dim == perMessage { try flush() }
                }
                try flush()
            }
        }
        try flush()
        // An input with no row sent nothing: said, not "sent 0 samples" and success (from review).
        guard sequence > 0 || demo else { throw CommandFailure("no samples in \(file == "-" ? "standard input" : file)") }
        if perMessage < batch {
            FileHandle.standardError.write(Data("eddy feed: \(perMessage) samples to a message, the most the daemon's limits allow\n".utf8))
        }
        try done("sent \(sequence) samples to stream \(stream)", samples: Int(sequence))
    }
}
