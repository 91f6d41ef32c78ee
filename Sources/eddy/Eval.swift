import ArgumentParser
import Evaluation
import Foundation
import LinearAlgebra
import Pipeline
import Synchronization

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score `eddy replay` against a labelled corpus (NAB's layout): NAB scores and event-level figures.",
        discussion: """
            Every file runs through the daemon's own pipeline (as `eddy replay` does: score a row, then \
            train), with one configuration for all files. Reports the NAB score under its three profiles \
            (one threshold per profile for the whole corpus, chosen by a sweep; 0 = never fires, \
            100 = perfect), event-level precision, recall and F1 at the standard profile's threshold and \
            at the daemon's own alert threshold, and one line per file. Example: eddy eval ../shared/data/nab
            """)

    @Argument(help: "Corpus directory with data/<category>/<file>.csv and labels/combined_windows.json.")
    var corpus: String
    @Option(help: "Configuration file (its [stream] section applies to every file).") var config: String?
    @Option(help: "Only files whose name contains this.") var only: String?
    @Option(help: "Write one SVG per file here: series, score, threshold, windows, detections.") var plots: String?
    @Option(help: "Files scored at once (one thread each).") var jobs: Int = 2
    @Option(help: "Also run with this many more seeds and report each profile's spread (tuning needs it: seeds move the score by a few points).")
    var extraSeeds: Int = 0
    @Flag(help: "One JSON object instead of the table.") var json = false

    struct FileResult {
        var scores: [Float]
        var alerts: [Int]
    }

    func run() throws {
        BLAS.setThreads(1)
        let configuration = try loadConfiguration(config)
        let corpus = try Corpus(directory: self.corpus, only: only)
        guard !corpus.files.isEmpty else { throw CommandFailure("no labelled files in \(self.corpus)") }
        let settings = configuration.streamDefaults.resolved(dim: 1)
        try settings.validate(name: "eval")

        let results = try scoreAll(corpus.files, settings: settings)
        let series = corpus.files.map(\.series)
        let scores = results.map(\.scores)
        let profiles = NABProfile.all.map { NAB.score(series, scores: scores, profile: $0) }
        let standard = profiles[0]
        // The same configuration with other seeds: the spread of each profile's score.
        var spread = profiles.map { [$0.normalised] }
        for k in 0..<max(0, extraSeeds) {
            var other = settings
            other.seed = settings.seed &+ UInt64(k + 1)
            let s = try scoreAll(corpus.files, settings: other).map(\.scores)
            for (i, p) in NABProfile.all.enumerated() { spread[i].append(NAB.score(series, scores: s, profile: p).normalised) }
        }
        let events = zip(series, scores).map { NAB.events($0, scores: $1, threshold: standard.threshold) }
        let daemonEvents = zip(series, scores).map { NAB.events($0, scores: $1, threshold: settings.threshold) }

        if let plots {
            try FileManager.default.createDirectory(atPath: plots, withIntermediateDirectories: true)
            for (file, result) in zip(corpus.files, results) {
                let plot = SeriesPlot(
                    title: "\(file.name): NAB standard threshold \(String(format: "%.4f", standard.threshold))",
                    values: file.values, scores: result.scores, threshold: standard.threshold,
                    windows: file.series.windows,
                    alerts: result.scores.indices.filter { $0 >= file.series.probation && result.scores[$0] >= standard.threshold },
                    unscoredPrefix: file.series.probation)
                let path = URL(fileURLWithPath: plots).appendingPathComponent(
                    file.name.replacingOccurrences(of: "/", with: "__").replacingOccurrences(of: ".csv", with: ".svg"))
                try plot.svg().write(to: path, atomically: true, encoding: .utf8)
            }
        }

        let total = events.reduce(NAB.Events(), +), daemonTotal = daemonEvents.reduce(NAB.Events(), +)
        if json {
            var o: [String: Any] = [:]
            o["profiles"] = profiles.map {
                [
                    "profile": $0.profile.name, "score": $0.normalised, "raw": $0.raw,
                    // Infinite when firing never pays (a corpus without windows): null.
                    "threshold": $0.threshold.isFinite ? Double($0.threshold) : NSNull(),
                ] as [String: Any]
            }
            if extraSeeds > 0 {
                o["scores_by_seed"] = Dictionary(uniqueKeysWithValues: zip(NABProfile.all.map(\.name), spread))
            }
            o["events"] = eventsObject(total, threshold: standard.threshold)
            o["events_at_alert_threshold"] = eventsObject(daemonTotal, threshold: settings.threshold)
            o["files"] = corpus.files.indices.map { i -> [String: Any] in
                [
                    "file": corpus.files[i].name, "rows": corpus.files[i].series.rows,
                    "windows": corpus.files[i].series.scoredWindows.count,
                    "found": events[i].found, "false_alarms": events[i].falseAlarms,
                    "raw_standard": NAB.fileScore(series[i], scores: scores[i], threshold: standard.threshold, profile: .standard),
                    "alerts": results[i].alerts.count,
                ]
            }
            let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("file                                                   rows  windows  found  false alarms  raw score  alerts")
        for i in corpus.files.indices {
            let f = corpus.files[i]
            let raw = NAB.fileScore(series[i], scores: scores[i], threshold: standard.threshold, profile: .standard)
            print(
                f.name.padded(52) + String(format: "%7d  %7d  %5d  %12d  %9.2f  %6d", f.series.rows, f.series.scoredWindows.count,
                events[i].found, events[i].falseAlarms, raw, results[i].alerts.count))
        }
        print("")
        for (i, p) in profiles.enumerated() {
            var line = "NAB " + p.profile.name.padded(20) + String(format: "%6.1f   (threshold %.6f, raw %.2f)", p.normalised, Double(p.threshold), p.raw)
            if spread[i].count > 1 {
                let mean = spread[i].reduce(0, +) / Double(spread[i].count)
                line += String(format: "; over %d seeds mean %.1f, %.1f to %.1f", spread[i].count, mean, spread[i].min()!, spread[i].max()!)
            }
            print(line)
        }
        print(String(
            format: "events at the standard threshold: %d of %d windows found, %d false alarms; precision %.2f, recall %.2f, F1 %.2f",
            total.found, total.found + total.missed, total.falseAlarms, total.precision, total.recall, total.f1))
        print(String(
            format: "events at the alert threshold %.4f: %d of %d windows found, %d false alarms; precision %.2f, recall %.2f, F1 %.2f",
            settings.threshold, daemonTotal.found, daemonTotal.found + daemonTotal.missed, daemonTotal.falseAlarms,
            daemonTotal.precision, daemonTotal.recall, daemonTotal.f1))
    }

    func eventsObject(_ e: NAB.Events, threshold: Float) -> [String: Any] {
        [
            "threshold": threshold.isFinite ? Double(threshold) : NSNull(), "found": e.found, "missed": e.missed, "false_alarms": e.falseAlarms,
            "precision": e.precision, "recall": e.recall, "f1": e.f1,
        ]
    }

    /// Every file through its own pipeline, `jobs` at a time, with a progress bar on a terminal.
    func scoreAll(_ files: [Corpus.File], settings: StreamConfiguration) throws -> [FileResult] {
        let results = Mutex<[FileResult?]>([FileResult?](repeating: nil, count: files.count))
        let nextFile = Counter(), rowsDone = Counter()
        let totalRows = files.reduce(0) { $0 + $1.values.count }
        let done = DispatchSemaphore(value: 0)
        let workers = max(1, min(jobs, files.count))
        for w in 0..<workers {
            let thread = Thread {
                while true {
                    let i = Int(nextFile.add(1)) - 1
                    guard i < files.count else { break }
                    var run = OfflineRun(name: files[i].name, settings: settings)
                    var r = FileResult(scores: [], alerts: [])
                    r.scores.reserveCapacity(files[i].values.count)
                    files[i].values.withUnsafeBufferPointer { v in
                        for row in 0..<v.count {
                            let s = run.next(v.baseAddress! + row)
                            r.scores.append(s.score)
                            if s.alert { r.alerts.append(row) }
                            if row % 256 == 255 { rowsDone.add(256) }
                        }
                        rowsDone.add(UInt64(v.count % 256))
                    }
                    results.withLock { $0[i] = r }
                }
                done.signal()
            }
            thread.name = "eval-\(w)"
            thread.start()
        }
        let progress = ProgressBar(total: totalRows, unit: "rows")
        var finished = 0
        while finished < workers {
            if done.wait(timeout: .now() + 0.2) == .success { finished += 1 }
            progress.show(Int(rowsDone.load), note: "\(min(Int(nextFile.load), files.count)) of \(files.count) files started")
        }
        progress.finish()
        return results.withLock { $0.map { $0! } }
    }
}

/// A one-line progress bar on standard error, drawn only when it is a terminal.
final class ProgressBar {
    let total: Int
    let unit: String
    let enabled = isatty(2) != 0
    let started = Date()

    init(total: Int, unit: String) {
        self.total = max(total, 1)
        self.unit = unit
    }

    func show(_ done: Int, note: String) {
        guard enabled else { return }
        let fraction = min(1, Double(done) / Double(total))
        let width = 30, filled = Int(fraction * Double(width))
        let elapsed = Date().timeIntervalSince(started)
        let eta = fraction > 0.02 ? String(format: ", %.0f s left", elapsed * (1 - fraction) / fraction) : ""
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        FileHandle.standardError.write(Data("\r[\(bar)] \(Int(fraction * 100))%  \(done)/\(total) \(unit), \(note)\(eta)   ".utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}

extension String {
    func padded(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
}
