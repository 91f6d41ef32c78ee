import ArgumentParser
import Evaluation
import Foundation
import LinearAlgebra
import Pipeline
import Synchronization

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score `eddy replay` against a labelled corpus: events, false alarms, ranking, NAB scores, family folds.",
        discussion: """
            Every file runs through the daemon's own pipeline (as `eddy replay` does: score a row, then \
            train), with one configuration for all files. A corpus is NAB's layout \
            (data/<family>/<file>.csv and labels/combined_windows.json) or a directory of CSVs with a \
            label column (is_anomaly, is_anomalous, label, labels or anomaly: 0 or 1 per row; any other column but timestamp is \
            a value, so a file may be multivariate), in <family>/ folders. Reports, for the whole corpus \
            and for each family: events found at the daemon's alert threshold, false alarms (and per \
            10,000 rows), event precision, recall and F1, and how well the published score, the alert \
            policy's score and the raw reconstruction error rank labelled rows (AUC-PR; AUC-ROC too in --json). On NAB's \
            layout also the NAB score under its three profiles (one threshold per profile for the corpus, \
            chosen by a sweep over the alert policy's score) and, per family, the standard score at the \
            threshold the other families chose (leave one family out). Example: eddy eval corpus/nab. \
            With --log, a directory of labelled logs (NAME.log beside NAME.labels, one label per line: 0, or \
            the kind of fault the line belongs to), each line scored as a log stream scores it: events found \
            by kind, false alarms per 10,000 lines, event and line precision, recall and F1.
            """)

    @Argument(help: "Corpus directory (NAB's layout, or CSVs with a label column).")
    var corpus: String
    @Option(help: "Configuration file (its [stream] section applies to every file).") var config: String?
    @Option(help: "Only files whose name contains this.") var only: String?
    @Option(help: "Write one SVG per file here: series (first channel), score, threshold, windows, detections.")
    var plots: String?
    @Option(help: "Files scored at once (one thread each).") var jobs: Int = 2
    @Option(help: "Also run with this many more seeds and report the spread (seeds move the figures by a few points).")
    var extraSeeds: Int = 0
    @Option(help: "Labelled rows: an event's window extends this many rows past its last labelled row.")
    var slack: Int = 16
    @Option(help: "Labelled rows: columns that are not features, besides timestamp and the label column (comma-separated names).")
    var skip: String = ""
    @Option(help: Ablation.help)
    var without: String?
    @Flag(help: "One JSON object instead of the tables.") var json = false
    @Flag(help: "The corpus is labelled logs: NAME.log with NAME.labels (one label per line: 0, or the fault's kind).")
    var log = false

    struct FileResult {
        var scores: [Float] = []
        var alertScores: [Float] = []
        var errors: [Float] = []
        var alerts: [Int] = []
    }

    /// Everything measured on one set of files with one threshold.
    struct Figures {
        var events = NAB.Events()
        var rows = 0
        var averagePrecision: (score: Double?, alertScore: Double?, error: Double?) = (nil, nil, nil)
        var rocArea: (score: Double?, alertScore: Double?, error: Double?) = (nil, nil, nil)
        var falseAlarmsPer10k: Double { rows == 0 ? 0 : 10_000 * Double(events.falseAlarms) / Double(rows) }

        init() {}

        init(_ files: [Corpus.File], _ results: [FileResult], threshold: Float) {
            var labels: [Bool] = [], scores: [Float] = [], alertScores: [Float] = [], errors: [Float] = []
            for (f, r) in zip(files, results) {
                events = events + NAB.events(f.series, scores: r.alertScores, threshold: threshold)
                let scored = f.series.probation..<f.rows
                rows += scored.count
                labels += f.labels[scored]
                scores += r.scores[scored]
                alertScores += r.alertScores[scored]
                errors += r.errors[scored]
            }
            averagePrecision = (
                Ranking.averagePrecision(scores, labels), Ranking.averagePrecision(alertScores, labels),
                Ranking.averagePrecision(errors, labels)
            )
            rocArea = (Ranking.rocArea(scores, labels), Ranking.rocArea(alertScores, labels), Ranking.rocArea(errors, labels))
        }

        var object: [String: Any] {
            func value(_ x: Double?) -> Any { x ?? NSNull() }
            return [
                "found": events.found, "missed": events.missed, "false_alarms": events.falseAlarms,
                "precision": value(events.precision), "recall": value(events.recall), "f1": value(events.f1), "rows": rows,
                "false_alarms_per_10k_rows": falseAlarmsPer10k,
                "auc_pr": ["score": value(averagePrecision.score), "alert_score": value(averagePrecision.alertScore), "error": value(averagePrecision.error)],
                "auc_roc": ["score": value(rocArea.score), "alert_score": value(rocArea.alertScore), "error": value(rocArea.error)],
            ]
        }
    }

    func validate() throws {
        if !(1...256).contains(jobs) { throw ValidationError("--jobs must be in 1...256") }
        if !(0...100).contains(extraSeeds) { throw ValidationError("--extra-seeds must be in 0...100") }
        if slack < 0 { throw ValidationError("--slack must not be negative") }
        // A log corpus is scored once, with no plots: said, not ignored (from review).
        if log && plots != nil { throw ValidationError("--plots is not for a log corpus (--log)") }
        if log && extraSeeds > 0 { throw ValidationError("--extra-seeds is not for a log corpus (--log)") }
        _ = try Ablation.parts(without)
    }

    func run() throws {
        BLAS.setThreads(1)
        let configuration = try loadConfiguration(config)
        // Made before the files are scored, which can take minutes: a path that cannot be a
        // directory fails now, in words (it failed after scoring, as an NSError's fields).
        if let plots {
            do {
                try FileManager.default.createDirectory(atPath: plots, withIntermediateDirectories: true)
            } catch {
                throw CommandFailure("cannot write plots to \(plots): \(fileProblem(error))")
            }
        }
        var settings = configuration.streamDefaults
        try Ablation.apply(without, to: &settings)
        if log { return try evaluateLogs(settings: settings, maxLineBytes: configuration.maxLineBytes) }
        // A log stream's rows are mined from lines: a corpus of values is not one.
        if settings.log { throw CommandFailure("the configuration's [stream] has log = true: a log corpus is read with --log") }
        let corpus: Corpus
        do {
            let skipped = skip.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            corpus = try Corpus(directory: self.corpus, only: only, slack: slack, skip: Set(skipped))
        } catch let failure as Corpus.Failure {
            throw CommandFailure(failure.description)
        }
        guard !corpus.files.isEmpty else { throw CommandFailure("no labelled files in \(self.corpus) match --only") }
        if !corpus.skipped.isEmpty {
            FileHandle.standardError.write(Data(
                "eddy eval: not scored, not in labels/combined_windows.json: \(corpus.skipped.joined(separator: ", "))\n".utf8))
        }
        for d in Set(corpus.files.map(\.dimension)) { try settings.resolved(dim: d).validate(name: "eval") }
        // What the daemon would refuse (SPEC 4) is not scored here either.
        if let file = corpus.files.first(where: { $0.values.contains { !(abs($0) <= configuration.maxAbsValue) } }) {
            throw CommandFailure("\(file.name): a value is not finite or beyond max_abs_value \(configuration.maxAbsValue)")
        }

        let results = try scoreAll(corpus.files, settings: settings)
        let threshold = settings.threshold
        let families = corpus.families
        let familyFiles = families.map { family in corpus.files.indices.filter { corpus.files[$0].family == family } }
        let total = Figures(corpus.files, results, threshold: threshold)
        let byFamily = familyFiles.map { idx in Figures(idx.map { corpus.files[$0] }, idx.map { results[$0] }, threshold: threshold) }

        // NAB: one threshold per profile for the corpus, swept over what the alert policy compares.
        let isNAB = corpus.layout == .nab
        let series = corpus.files.map(\.series)
        let alertScores = results.map(\.alertScores)
        let profiles = isNAB ? NABProfile.all.map { NAB.score(series, scores: alertScores, profile: $0) } : []
        // Leave one family out: the standard threshold the other families choose, applied to this one.
        var folds: [(own: NAB.ProfileResult, heldOut: NAB.ProfileResult)] = []
        if isNAB && families.count > 1 {
            for idx in familyFiles {
                let others = corpus.files.indices.filter { !idx.contains($0) }
                let chosen = NAB.score(others.map { series[$0] }, scores: others.map { alertScores[$0] }, profile: .standard)
                let own = NAB.score(idx.map { series[$0] }, scores: idx.map { alertScores[$0] }, profile: .standard)
                let heldOut = NAB.score(
                    idx.map { series[$0] }, scores: idx.map { alertScores[$0] }, profile: .standard, threshold: chosen.threshold)
                folds.append((own, heldOut))
            }
        }
        // The same configuration with other seeds: the spread of the headline figures.
        var spread: [String: [Double]] = [:]
        func record(_ f: Figures, _ nab: [NAB.ProfileResult]) {
            if let f1 = f.events.f1 { spread["event_f1", default: []].append(f1) }
            if let ap = f.averagePrecision.score { spread["auc_pr", default: []].append(ap) }
            for p in nab { spread[p.profile.name, default: []].append(p.normalised) }
        }
        if extraSeeds > 0 {
            record(total, profiles)  // the first seed's figures, worked out above
            for k in 0..<extraSeeds {
                var other = settings
                other.seed = settings.seed &+ UInt64(k + 1)
                let results = try scoreAll(corpus.files, settings: other)
                let scores = results.map(\.alertScores)
                record(
                    Figures(corpus.files, results, threshold: threshold),
                    isNAB ? NABProfile.all.map { NAB.score(series, scores: scores, profile: $0) } : [])
            }
        }

        if let plots {
            let plotThreshold = profiles.first?.threshold ?? threshold
            for (file, result) in zip(corpus.files, results) {
                let plot = SeriesPlot(
                    title: "\(file.name): " + (isNAB ? "NAB standard threshold " : "alert threshold ")
                        + String(format: "%.4f", plotThreshold) + (file.dimension > 1 ? " (channel 0 of \(file.dimension))" : ""),
                    values: file.channel(0), scores: result.alertScores, threshold: plotThreshold,
                    windows: file.series.windows,
                    alerts: result.alertScores.indices.filter { $0 >= file.series.probation && result.alertScores[$0] >= plotThreshold },
                    unscoredPrefix: file.series.probation)
                let path = URL(fileURLWithPath: plots).appendingPathComponent(
                    file.name.replacingOccurrences(of: "/", with: "__").replacingOccurrences(of: ".csv", with: ".svg"))
                do {
                    try plot.svg().write(to: path, atomically: true, encoding: .utf8)
                } catch {
                    throw CommandFailure("cannot write \(path.path): \(fileProblem(error))")
                }
            }
        }

        let fileEvents = corpus.files.indices.map { NAB.events(series[$0], scores: alertScores[$0], threshold: threshold) }
        let thresholdFolds = Self.thresholdFolds(familyFiles, series: series, alertScores: alertScores)
        if json {
            var o: [String: Any] = ["layout": corpus.layout.rawValue, "threshold": Double(threshold)]
            o["events_at_alert_threshold"] = total.object
            o["families"] = families.indices.map { k -> [String: Any] in
                var f = byFamily[k].object
                f["family"] = families[k]
                if let fold = thresholdFolds[k] {
                    f["threshold_chosen_by_others"] = fold.threshold
                    f["f1_at_others_threshold"] = fold.f1
                }
                f["files"] = familyFiles[k].count
                if !folds.isEmpty && folds[k].own.perfect > folds[k].own.null {
                    f["nab_standard_own_threshold"] = folds[k].own.normalised
                    f["nab_standard_held_out"] = folds[k].heldOut.normalised
                    f["held_out_threshold"] = Double(folds[k].heldOut.threshold)
                }
                return f
            }
            if isNAB {
                o["profiles"] = profiles.map {
                    [
                        "profile": $0.profile.name, "score": $0.normalised, "raw": $0.raw,
                        // Infinite when firing never pays (a corpus without windows): null.
                        "threshold": $0.threshold.isFinite ? Double($0.threshold) : NSNull(),
                    ] as [String: Any]
                }
                let standard = profiles[0]
                let events = zip(series, alertScores).map { NAB.events($0, scores: $1, threshold: standard.threshold) }
                    .reduce(NAB.Events(), +)
                o["events"] = [
                    "threshold": standard.threshold.isFinite ? Double(standard.threshold) as Any : NSNull(), "found": events.found,
                    "missed": events.missed, "false_alarms": events.falseAlarms, "precision": events.precision ?? NSNull(),
                    "recall": events.recall ?? NSNull(), "f1": events.f1 ?? NSNull(),
                ]
            }
            if extraSeeds > 0 { o["by_seed"] = spread }
            o["files"] = corpus.files.indices.map { i -> [String: Any] in
                let f = corpus.files[i]
                var e: [String: Any] = [
                    "file": f.name, "family": f.family, "rows": f.rows, "dim": f.dimension,
                    "windows": f.series.scoredWindows.count, "found": fileEvents[i].found,
                    "false_alarms": fileEvents[i].falseAlarms, "alerts": results[i].alerts.count,
                    // Each window (rows, inclusive) and the first alerting row in it, or null.
                    "window_detections": f.series.scoredWindows.map { w -> [Any] in
                        let first = w.first { $0 >= f.series.probation && alertScores[i][$0] >= threshold }
                        return [w.lowerBound, w.upperBound, first.map { $0 as Any } ?? NSNull()]
                    },
                ]
                if isNAB {
                    e["raw_standard"] = NAB.fileScore(series[i], scores: alertScores[i], threshold: profiles[0].threshold, profile: .standard)
                }
                return e
            }
            let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }

        print("file".padded(52) + "  rows  dim  windows  found  false alarms  alerts")
        for i in corpus.files.indices {
            let f = corpus.files[i]
            print(
                f.name.padded(52) + String(format: "%6d  %3d  %7d  %5d  %12d  %6d", f.rows, f.dimension,
                f.series.scoredWindows.count, fileEvents[i].found, fileEvents[i].falseAlarms, results[i].alerts.count))
        }
        print("")
        print(
            String(format: "At the alert threshold %.4f: ", threshold) + (corpus.layout == .labelledRows
                ? "(an event's window runs \(slack) rows past its last labelled row)" : ""))
        print("family".padded(32) + "files  found/events  false alarms  per 10k rows  precision  recall    F1   AUC-PR score / alert score / error"
            + (folds.isEmpty ? "" : "   NAB held out (own)"))
        func line(_ name: String, _ files: Int, _ f: Figures, fold: (own: NAB.ProfileResult, heldOut: NAB.ProfileResult)?) -> String {
            func ap(_ x: Double?) -> String { x.map { String(format: "%.3f", $0) } ?? "  -  " }
            var s = name.padded(32) + String(
                format: "%5d  %5d/%-6d  %12d  %12.1f  ", files, f.events.found, f.events.found + f.events.missed,
                f.events.falseAlarms, f.falseAlarmsPer10k)
            s += "\(Self.fraction(f.events.precision, width: 9))  \(Self.fraction(f.events.recall, width: 6))  \(Self.fraction(f.events.f1, width: 4))   "
            s += "\(ap(f.averagePrecision.score)) / \(ap(f.averagePrecision.alertScore)) / \(ap(f.averagePrecision.error))"
            if let fold, fold.own.perfect > fold.own.null {
                s += String(format: "   %5.1f (%5.1f)", fold.heldOut.normalised, fold.own.normalised)
            } else if fold != nil {
                s += "   no windows"
            }
            return s
        }
        for k in families.indices {
            print(line(families[k], familyFiles[k].count, byFamily[k], fold: folds.isEmpty ? nil : folds[k]))
        }
        print(line("all", corpus.files.count, total, fold: nil))
        let chosen = thresholdFolds.compactMap { $0 }
        if !chosen.isEmpty {
            let text = families.indices.compactMap { k in
                thresholdFolds[k].map { "\(families[k]) \(String(format: "%.2f at %.3g", $0.f1, $0.threshold))" }
            }
            print("event F1 of each family at the alert threshold the other families chose: " + text.joined(separator: ", "))
        }
        if !profiles.isEmpty {
            print("")
            for p in profiles {
                var l = "NAB " + p.profile.name.padded(20) + String(format: "%6.1f   (threshold %.6f, raw %.2f)", p.normalised, Double(p.threshold), p.raw)
                if let s = spread[p.profile.name] { l += Self.spreadText(s) }
                print(l)
            }
            // Families with no window have no NAB score (a perfect detector and a silent one tie).
            let scored = folds.filter { $0.own.perfect > $0.own.null }
            if !scored.isEmpty {
                let mean = scored.map(\.heldOut.normalised).reduce(0, +) / Double(scored.count)
                print(String(
                    format: "NAB standard, each family with windows at the threshold the other families chose: mean %.1f (%d families)",
                    mean, scored.count))
            }
        }
        for key in ["event_f1", "auc_pr"] { if let s = spread[key] { print(key.padded(24) + Self.spreadText(s)) } }
    }

    /// Thresholds an operator might choose for the alert strength.
    static let thresholdGrid: [Double] = [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 0.999]

    /// Leave one family out for the alert threshold: for each family with events, the threshold of
    /// the grid with the best pooled event F1 on the other families (the higher on a tie), and the
    /// family's own event F1 at it. Nil for a family without events, or when the other families
    /// have none (or there is no other family).
    static func thresholdFolds(
        _ familyFiles: [[Int]], series: [LabelledSeries], alertScores: [[Float]]
    ) -> [(threshold: Double, f1: Double)?] {
        guard familyFiles.count > 1 else { return familyFiles.map { _ in nil } }
        // Events per family at every threshold of the grid, counted once.
        let events = familyFiles.map { idx in
            thresholdGrid.map { t in
                idx.map { NAB.events(series[$0], scores: alertScores[$0], threshold: Float(t)) }.reduce(NAB.Events(), +)
            }
        }
        return familyFiles.indices.map { k -> (threshold: Double, f1: Double)? in
            // Events do not depend on the threshold: a family (or the others) without any at one has none at all.
            var best: (index: Int, f1: Double)?
            for g in thresholdGrid.indices.reversed() {
                let others = familyFiles.indices.filter { $0 != k }.map { events[$0][g] }.reduce(NAB.Events(), +)
                if let f1 = others.f1, f1 > best?.f1 ?? -1 { best = (g, f1) }
            }
            guard let best, let own = events[k][best.index].f1 else { return nil }
            return (thresholdGrid[best.index], own)
        }
    }

    /// A figure in [0, 1] to two places, or "-" where it is undefined (no events, or no alert).
    static func fraction(_ x: Double?, width: Int) -> String {
        let text = x.map { String(format: "%.2f", $0) } ?? "-"
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }

    static func spreadText(_ s: [Double]) -> String {
        let mean = s.reduce(0, +) / Double(s.count)
        let digits = (s.max() ?? 0) <= 1 ? "%.3f" : "%.1f"
        return String(format: "; over %d seeds mean \(digits), \(digits) to \(digits)", s.count, mean, s.min()!, s.max()!)
    }

    /// Every file through its own pipeline, `jobs` at a time, with a progress bar on a terminal.
    func scoreAll(_ files: [Corpus.File], settings: StreamConfiguration) throws -> [FileResult] {
        let results = Mutex<[FileResult?]>([FileResult?](repeating: nil, count: files.count))
        let started = Counter(), rowsDone = Counter()
        let totalRows = files.reduce(0) { $0 + $1.rows }
        let progress = ProgressBar(total: totalRows, unit: "rows")
        forEachOnThreads(
            files.count, jobs: jobs, name: "eval",
            waiting: { progress.show(Int(rowsDone.load), note: "\(started.load) of \(files.count) files started") }
        ) { i in
            started.add()
            let file = files[i]
            var run = OfflineRun(name: file.name, settings: settings.resolved(dim: file.dimension))
            var r = FileResult()
            r.scores.reserveCapacity(file.rows)
            r.alertScores.reserveCapacity(file.rows)
            r.errors.reserveCapacity(file.rows)
            file.values.withUnsafeBufferPointer { v in
                for row in 0..<file.rows {
                    let s = run.next(v.baseAddress! + row * file.dimension)
                    r.scores.append(s.score)
                    r.alertScores.append(s.alertScore)
                    r.errors.append(s.error)
                    if s.alert { r.alerts.append(row) }
                    if row % 256 == 255 { rowsDone.add(256) }
                }
                rowsDone.add(UInt64(file.rows % 256))
            }
            results.withLock { $0[i] = r }
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

/// Runs `body` for each index in 0..<count, `jobs` at a time, each worker on a thread of its own
/// (BLAS work, never on a shared pool), calling `waiting` every 0.2 s until all are done.
func forEachOnThreads(_ count: Int, jobs: Int, name: String, waiting: () -> Void = {}, _ body: @escaping @Sendable (Int) -> Void) {
    let next = Counter(), done = DispatchSemaphore(value: 0)
    let workers = max(1, min(jobs, count))
    for w in 0..<workers {
        let thread = Thread {
            while true {
                let i = Int(next.add(1)) - 1
                guard i < count else { break }
                body(i)
            }
            done.signal()
        }
        thread.name = "\(name)-\(w)"
        thread.start()
    }
    var finished = 0
    while finished < workers {
        if done.wait(timeout: .now() + 0.2) == .success { finished += 1 }
        waiting()
    }
}
