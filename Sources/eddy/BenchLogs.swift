import ArgumentParser
import EddyProtocol
import Foundation
import LinearAlgebra
import LogMining
import Pipeline

/// Template mining alone, one core: lines per second through `TemplateMiner.add` (masking,
/// tokenising, the tree, the update). `scripts/bench-logs.py` runs it beside Drain3 on the same files.
struct MineBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mine",
        abstract: "Lines per second through the log template miner (one thread), over the given log files.")

    @Argument(help: "Log files; each is mined by a fresh miner, one pass after another, until the time is up.")
    var files: [String]
    @Option(help: "Seconds measured, after one warm-up pass.") var seconds = 3.0
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func validate() throws {
        if !(seconds > 0 && seconds <= 86_400) { throw ValidationError("--seconds must be more than 0 (and at most a day)") }
    }

    func run() throws {
        let logs = try readLogFiles(files)
        var templates = 0
        func pass() -> Int {
            var n = 0
            templates = 0
            for lines in logs {
                let miner = TemplateMiner()
                for line in lines { _ = miner.add(line) }
                n += lines.count
                templates += miner.templates.count
            }
            return n
        }
        _ = pass()
        let start = Date()
        var lines = 0, passes = 0
        while Date().timeIntervalSince(start) < seconds {
            lines += pass()
            passes += 1
        }
        let rate = Double(lines) / Date().timeIntervalSince(start)
        if json {
            print(#"{"lines_per_second": \#(Int(rate)), "passes": \#(passes), "templates": \#(templates), "files": \#(files.count)}"#)
        } else {
            print("mine: \(Int(rate)) lines/s over \(files.count) files (\(passes) passes, \(templates) templates in the last)")
        }
    }
}

/// A log stream's ingest work, one core: lines per second from a serialized `LineBatch` of `batch`
/// lines to scores, as the daemon's ingest thread does it once its ZMTP has the message's frames
/// (`Admission.check`: reading the message, UTF-8 checks and repair; then mining, the mix row, the
/// autoencoder's score, every log signal, alert reasons); training (the trainer thread's work) is left out, each file's models
/// trained first for a warm-up pass so the stream scores as it would once warm.
struct LogIngestBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Lines per second through a log stream's ingest (mining, features, scoring; one thread), over the given log files.")

    @Argument(help: "Log files; each is scored by its own log stream, one pass after another, until the time is up.")
    var files: [String]
    @Option(help: "Seconds measured, after one warm-up pass.") var seconds = 3.0
    @Option(help: "Lines per message.") var batch = 1000
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func validate() throws {
        if !(seconds > 0 && seconds <= 86_400) { throw ValidationError("--seconds must be more than 0 (and at most a day)") }
        let limit = DaemonConfiguration().maxSamplesPerMessage
        // 0 trapped in stride(by:); over the limit the daemon's own check refused the message and
        // the bench stopped on a fatalError (from review).
        if !(1...limit).contains(batch) { throw ValidationError("--batch must be in 1...\(limit) (max_samples_per_message)") }
    }

    func run() throws {
        BLAS.setThreads(1)
        let logs = try readLogFiles(files)
        var settings = StreamConfiguration()
        settings.log = true
        settings = settings.resolved(dim: LogFront.dimension)
        // One stream per file, warmed up: scored and trained on one pass.
        let streams = logs.map { lines -> StreamPipeline in
            var run = OfflineRun(name: "bench", settings: settings)
            for line in lines { _ = run.next(line: line) }
            return run.pipeline
        }
        // Each file's messages, serialized once.
        let messages = try logs.map { lines in
            try stride(from: 0, to: lines.count, by: batch).map { start in
                var m = Eddy_V1_LineBatch()
                m.stream = "bench"
                m.lines = lines[start..<min(start + batch, lines.count)].map { Data($0.utf8) }
                return [Array("bench".utf8), try m.serializedBytes() as [UInt8]]
            }
        }
        let configuration = DaemonConfiguration()
        var sequence: UInt64 = 0
        func pass() throws -> Int {
            var n = 0
            for (stream, messages) in zip(streams, messages) {
                for frames in messages {
                    let admitted = Admission.check(frames, configuration: configuration) { _, _, _ in .success(stream) }
                    guard case .lines(_, _, let lines, _, _) = admitted else {
                        throw CommandFailure("the daemon would refuse a message of this bench: \(admitted)")
                    }
                    _ = stream.scoreLines(lines, firstSequence: sequence)
                    sequence += UInt64(lines.count)
                    n += lines.count
                }
            }
            return n
        }
        _ = try pass()
        let start = Date()
        var lines = 0
        while Date().timeIntervalSince(start) < seconds { lines += try pass() }
        let rate = Double(lines) / Date().timeIntervalSince(start)
        if json {
            print(#"{"lines_per_second": \#(Int(rate)), "files": \#(files.count)}"#)
        } else {
            print("logs: \(Int(rate)) lines/s through a log stream's ingest over \(files.count) files")
        }
    }
}

/// Each file's lines.
func readLogFiles(_ files: [String]) throws -> [[Substring]] {
    try files.map { path in
        guard let data = FileManager.default.contents(atPath: path) else { throw CommandFailure("cannot read \(path)") }
        return String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline)
    }
}
