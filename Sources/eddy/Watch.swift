import ArgumentParser
import EddyProtocol
import Foundation
import Pipeline
import SwiftProtobuf
import ZeroMQ

struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Subscribe to a daemon and print its scores, alerts, snapshots, heartbeats and errors.")

    @Option(help: "The daemon's publish endpoint.") var endpoint: String = "tcp://127.0.0.1:7701"
    @OptionGroup var curve: CurveOptions
    @Option(help: "Only this stream (heartbeats are still shown).") var stream: String?
    @Flag(help: "One JSON object per line instead of readable text.") var json = false
    @Flag(help: "Also print every score batch (off by default: one line per batch can be a lot).") var scores = false
    @Flag(help: "Also print every batch's classes from the stream's few-label head (one line per batch).") var classes = false
    @Option(help: "Stop after this many printed messages (0: never).") var count: Int = 0
    @Option(help: "Stop after this many seconds (0: never).") var seconds: Double = 0

    /// Seconds without a message (a heartbeat comes every second by default) before watch says so.
    static let silence = 10.0
    /// The signals of a log stream's alerts (SPEC 5).
    static let logSignals: Set<String> = ["template", "parameter", "burst", "silence", "reconstruction"]
    /// Bytes of a template, reason or line printed as they are; a longer one is cut, its length said
    /// (a 100 KB line's alert printed its 4 KB template three times; from review).
    static let printedBytes = 300

    static func cut(_ text: String) -> String {
        let bytes = text.utf8.count
        guard bytes > printedBytes else { return text }
        return String(decoding: text.utf8.prefix(printedBytes), as: UTF8.self) + "… (\(bytes) bytes)"
    }

    func run() throws {
        let context = try Context()
        let sub = try Socket(context, .sub)
        try curve.apply(to: sub)
        try sub.connect(endpoint)
        var kinds = ["alert", "snapshot", "error"]
        if scores { kinds.append("score") }
        if classes { kinds.append("class") }
        for kind in kinds { try sub.subscribe(stream.map { "\(kind)/\($0)/" } ?? "\(kind)/") }
        try sub.subscribe("hb/")
        let deadline = seconds > 0 ? Date().addingTimeInterval(seconds) : nil
        var printed = 0
        // From review: pointed at another port (the ingest endpoint), or at a daemon that refuses
        // this client's key, it printed nothing, then exited 0. A daemon publishes a heartbeat
        // every `heartbeat_seconds` (1 by default): silence this long is said, once.
        let started = Date()
        var heard = false
        while count == 0 || printed < count {
            if let deadline, Date() >= deadline { break }
            if !heard && Date().timeIntervalSince(started) >= Self.silence {
                heard = true
                FileHandle.standardError.write(Data(
                    "eddy watch: nothing from \(endpoint) in \(Int(Self.silence)) s: is it the daemon's publish endpoint (and, with CURVE, does the daemon allow this client's key)?\n".utf8))
            }
            guard try sub.poll(timeout: 100), let frames = try sub.receive(dontWait: true), frames.count == 2 else {
                continue
            }
            heard = true
            let topic = String(decoding: frames[0], as: UTF8.self)
            guard let line = try describe(topic: topic, body: frames[1]) else { continue }
            print(line)
            flushStandardOutput()
            printed += 1
        }
    }

    func describe(topic: String, body: [UInt8]) throws -> String? {
        let kind = topic.split(separator: "/").first.map(String.init) ?? ""
        let message: any SwiftProtobuf.Message
        switch kind {
        case "score": message = try Eddy_V1_ScoreBatch(serializedBytes: body)
        case "alert": message = try Eddy_V1_Alert(serializedBytes: body)
        case "snapshot": message = try Eddy_V1_ModelSnapshot(serializedBytes: body)
        case "hb": message = try Eddy_V1_Heartbeat(serializedBytes: body)
        case "error": message = try Eddy_V1_Error(serializedBytes: body)
        case "class": message = try Eddy_V1_ClassBatch(serializedBytes: body)
        default: return nil
        }
        if json {
            var options = JSONEncodingOptions()
            options.alwaysPrintEnumsAsInts = false
            let object = try message.jsonString(options: options)
            // A stream's name may hold '"' or '\\' (SPEC 3): the topic is quoted as JSON quotes it.
            return "{\"topic\": \(LineLogHandler.quoted(topic)), \"message\": \(object)}"
        }
        switch message {
        case let m as Eddy_V1_ScoreBatch:
            let alerts = m.alerts.filter { $0 }.count
            return "score    \(m.stream) seq \(m.firstSequence)+\(m.count) "
                + "max \(fmt(m.scores.max() ?? 0)) alerts \(alerts) model v\(m.modelVersion)"
                + (m.warmingUp.contains(true) ? " (warming up)" : "")
        // A log stream's alert names its signal (SPEC 5): laid out by that, not by a template that
        // is not empty (a blank line's is, and its alert came out in the sensor layout; from review).
        case let m as Eddy_V1_Alert where Self.logSignals.contains(m.signal):
            return "ALERT    \(m.stream) seq \(m.score.sequence) score \(fmt(m.score.score)) [\(m.signal)] \(Self.cut(m.reason))\n"
                + "         template \(m.templateID): \(Self.cut(m.template))\n         line: \(Self.cut(m.line))"
        case let m as Eddy_V1_Alert:
            let features = describeContributions(
                m.topFeatures.map { (Int($0.index), $0.share) }, window: Int(m.window), scales: m.windowScales.map { Int($0) })
            return "ALERT    \(m.stream) seq \(m.score.sequence) score \(fmt(m.score.score)) "
                + "error \(fmt(m.score.error)) threshold \(fmt(m.threshold)) "
                + (m.signal == GlitchGuard.name
                    ? "\(Self.cut(m.reason)); \(features)"
                    : m.beyondRange
                    ? "beyond range at \(features)"
                    : (m.period > 0 ? "unlike \(m.period) values earlier; " : "")
                        + (m.discord
                            ? "channel \(m.discordChannel)'s last \(m.discordWindow) values\(m.discordLevel ? ", level and all," : "") unlike any before; "
                            : "")
                        + (m.reason.isEmpty ? "" : "\(m.reason); ")
                        + "from \(features)")
        case let m as Eddy_V1_ModelSnapshot:
            let kind = m.kind == .moco ? "moco" : "autoencoder"
            return "snapshot \(m.stream) \(kind) v\(m.version) after \(m.samplesSeen) samples, \(m.tensors.count) tensors"
                + (m.headClasses.isEmpty ? "" : ", head on \(m.headLabels) labels (\(m.headClasses.joined(separator: ", ")))")
        case let m as Eddy_V1_ClassBatch:
            var counts = [Int](repeating: 0, count: m.classes.count)
            for i in m.classIndex where Int(i) < counts.count { counts[Int(i)] += 1 }
            let tally = zip(m.classes, counts).filter { $0.1 > 0 }.map { "\($0.0) \($0.1)" }.joined(separator: ", ")
            return "class    \(m.stream) seq \(m.firstSequence)+\(m.count): \(tally) (head of moco v\(m.modelVersion))"
        case let m as Eddy_V1_Heartbeat:
            let streams = m.streams.map { s in
                "\(s.stream): \(s.accepted) \(s.log ? "lines" : "in"), \(s.trainSteps) steps\(s.trainSteps > 0 ? ", ae loss \(fmt(s.autoencoderLoss))" : "")"
                    + (s.log ? ", \(s.templates) templates" : "")
                    + (s.linesTruncated > 0 ? ", \(s.linesTruncated) cut" : "") + (s.linesRepaired > 0 ? ", \(s.linesRepaired) repaired" : "")
                    + (s.period > 0 ? ", period \(s.period)" : "") + (s.warmingUp ? " (warming up)" : "")
            }
            return "hb       " + (m.parts > 1 ? "part \(m.part + 1) of \(m.parts), " : "")
                + "up \(m.uptimeMs / 1000)s, \(m.samplesAccepted) accepted, \(m.messagesRejected) rejected, "
                + "\(m.trainSteps) steps" + (streams.isEmpty ? "" : "; " + streams.joined(separator: "; "))
        case let m as Eddy_V1_Error:
            return "error    \(m.stream.isEmpty ? "_" : m.stream) \(m.code): \(m.message)"
        default:
            return nil
        }
    }

    func fmt(_ x: Float) -> String { String(format: "%.4g", x) }
}

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Fetch the latest snapshot of a stream's model from a daemon.")

    @Option(help: "The daemon's snapshot endpoint.") var endpoint: String = "tcp://127.0.0.1:7702"
    @OptionGroup var curve: CurveOptions
    @Option(help: "Stream name.") var stream: String = "default"
    @Option(help: "Model: autoencoder or moco.") var model: String = "autoencoder"
    @Option(help: "Write the ModelSnapshot's protobuf bytes to this file (default: print JSON).") var output: String?
    @Option(help: "Milliseconds to wait for the reply.") var timeout: Int = 5000

    func run() throws {
        guard model == "autoencoder" || model == "moco" else { throw ValidationError("--model is autoencoder or moco") }
        let context = try Context()
        let req = try Socket(context, .req)
        try req.setReceiveTimeout(milliseconds: timeout)
        try curve.apply(to: req)
        try req.connect(endpoint)
        var request = Eddy_V1_SnapshotRequest()
        request.stream = stream
        request.kind = model == "moco" ? .moco : .autoencoder
        try req.send([try request.serializedBytes()])
        guard let frames = try req.receive(), frames.count == 1 else {
            throw CommandFailure("no reply from \(endpoint) within \(timeout) ms")
        }
        let reply = try Eddy_V1_SnapshotReply(serializedBytes: frames[0])
        switch reply.result {
        case .snapshot(let s):
            if let output {
                do {
                    try Data(try s.serializedBytes() as [UInt8]).write(to: URL(fileURLWithPath: output))
                } catch {
                    throw CommandFailure("cannot write \(output): \(fileProblem(error))")
                }
                FileHandle.standardError.write(Data("eddy snapshot: \(stream) \(model) v\(s.version) -> \(output)\n".utf8))
            } else {
                print(try s.jsonString())
            }
        case .error(let e):
            throw CommandFailure("\(e.message) (\(e.code))")
        case nil:
            throw CommandFailure("empty reply from \(endpoint)")
        }
    }
}
