import ArgumentParser
import Foundation
import LogMining

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

    func run() throws {
        let logs = try files.map { path -> [Substring] in
            guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
            return String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline)
        }
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
