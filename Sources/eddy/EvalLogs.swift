import Evaluation
import Foundation
import Pipeline
import Synchronization

/// `eddy eval --log`: labelled logs through a log stream's pipeline.
///
/// An event is a group of lines of one label, each within `eventGap` lines of the last; it is found
/// when an alert falls on its first line or within `slack` lines after its last. An alert outside
/// every event's window is a false alarm. Event precision is events found over events found and
/// false alarms, as `eddy eval` has it on labelled rows (`NAB.Events`); a line is predicted anomalous when its score reaches the threshold (the score stays high while
/// an incident lasts; the alert policy alerts once).
struct LabelledLog: Sendable {
    var name: String
    var lines: [Substring]
    var labels: [String]

    static let eventGap = 50

    /// Events: (kind, first line, last line).
    var events: [(kind: String, first: Int, last: Int)] {
        var out: [(kind: String, first: Int, last: Int)] = []
        for (i, label) in labels.enumerated() where label != "0" {
            if let e = out.last, e.kind == label, i - e.last <= Self.eventGap {
                out[out.count - 1].last = i
            } else {
                out.append((label, i, i))
            }
        }
        return out
    }

    static func load(directory: String, only: String?, maxLineBytes: Int) throws -> [LabelledLog] {
        let listed: [String]
        do {
            listed = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw CommandFailure("cannot read \(directory): \(fileProblem(error))")
        }
        let names = listed.filter { $0.hasSuffix(".log") }.sorted()
        return try names.compactMap { file -> LabelledLog? in
            let stem = String(file.dropLast(4))
            if let only, !stem.contains(only) { return nil }
            let base = (directory as NSString).appendingPathComponent(stem)
            guard let log = FileManager.default.contents(atPath: base + ".log"),
                let labelText = try? String(contentsOfFile: base + ".labels", encoding: .utf8)
            else { throw CommandFailure("\(base).log needs \(base).labels beside it") }
            // Split as `feed --log` sends them ("\n", "\r\n" or a lone "\r"; from review).
            let raw = LineReader.lines(of: [UInt8](log))
            // By Character: "\r\n" is one, and a CRLF file split on "\n" was one label (from review).
            var labels = labelText.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            if labels.last?.isEmpty == true { labels.removeLast() }
            guard labels.count == raw.count else {
                throw CommandFailure("\(stem): \(raw.count) lines but \(labels.count) labels")
            }
            return LabelledLog(name: stem, lines: LineDecoding.decode(raw, maxBytes: maxLineBytes).lines, labels: labels)
        }
    }
}

extension Eval {
    struct LogFigures: Sendable {
        var lines = 0, events = 0, found = 0, alerts = 0, falseAlarms = 0
        var truePositiveLines = 0, predictedLines = 0, labelledLines = 0
        var byKind: [String: (found: Int, events: Int)] = [:]

        static func + (a: LogFigures, b: LogFigures) -> LogFigures {
            var c = a
            c.lines += b.lines; c.events += b.events; c.found += b.found; c.alerts += b.alerts
            c.falseAlarms += b.falseAlarms; c.truePositiveLines += b.truePositiveLines
            c.predictedLines += b.predictedLines; c.labelledLines += b.labelledLines
            for (k, v) in b.byKind {
                let old = c.byKind[k] ?? (0, 0)
                c.byKind[k] = (old.found + v.found, old.events + v.events)
            }
            return c
        }

        func ratio(_ a: Int, _ b: Int) -> Double { b == 0 ? 0 : Double(a) / Double(b) }
        func f1(_ p: Double, _ r: Double) -> Double { p + r == 0 ? 0 : 2 * p * r / (p + r) }
        /// Event figures as a labelled-row corpus has them: precision is events found over events
        /// found and false alarms, so an incident alerted on twice counts once.
        var eventCounts: NAB.Events { NAB.Events(found: found, missed: events - found, falseAlarms: falseAlarms) }
        var precision: Double? { eventCounts.precision }
        var recall: Double? { eventCounts.recall }
        var linePrecision: Double { ratio(truePositiveLines, predictedLines) }
        var lineRecall: Double { ratio(truePositiveLines, labelledLines) }
        var falseAlarmsPer10k: Double { lines == 0 ? 0 : 10_000 * Double(falseAlarms) / Double(lines) }

        var object: [String: Any] {
            [
                "lines": lines, "events": events, "found": found, "alerts": alerts, "false_alarms": falseAlarms,
                "false_alarms_per_10k_lines": falseAlarmsPer10k, "event_precision": precision ?? NSNull(),
                "event_recall": recall ?? NSNull(), "event_f1": eventCounts.f1 ?? NSNull(), "line_precision": linePrecision, "line_recall": lineRecall,
                "line_f1": f1(linePrecision, lineRecall),
                "by_kind": Dictionary(uniqueKeysWithValues: byKind.map { ($0.key, ["found": $0.value.found, "events": $0.value.events]) }),
            ]
        }
    }

    func evaluateLogs(settings base: StreamConfiguration, maxLineBytes: Int) throws {
        let logs = try LabelledLog.load(directory: corpus, only: only, maxLineBytes: maxLineBytes)
        guard !logs.isEmpty else { throw CommandFailure("no labelled logs (NAME.log with NAME.labels) in \(corpus)") }
        var log = base
        log.log = true
        let settings = log.resolved(dim: LogFront.dimension)
        try settings.validate(name: "eval")
        let figures = Mutex([LogFigures](repeating: LogFigures(), count: logs.count))
        let slack = self.slack
        // --jobs at a time (concurrentPerform took every core, from review).
        forEachOnThreads(logs.count, jobs: jobs, name: "eval") { k in
            let f = Self.evaluate(logs[k], settings: settings, slack: slack)
            figures.withLock { $0[k] = f }
        }
        let results = figures.withLock { $0 }
        let total = results.reduce(LogFigures(), +)
        if json {
            var object = total.object
            object["files"] = Dictionary(uniqueKeysWithValues: zip(logs.map(\.name), results.map(\.object)))
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        func row(_ name: String, _ f: LogFigures) -> String {
            let kinds = f.byKind.keys.sorted().map { "\($0) \(f.byKind[$0]!.found)/\(f.byKind[$0]!.events)" }.joined(separator: " ")
            return name.padding(toLength: 22, withPad: " ", startingAt: 0)
                + String(format: "%7d %4d/%-4d %5d %8.1f  ", f.lines, f.found, f.events, f.falseAlarms, f.falseAlarmsPer10k)
                + "\(Self.fraction(f.precision, width: 4)) \(Self.fraction(f.recall, width: 4)) \(Self.fraction(f.eventCounts.f1, width: 4))  "
                + String(format: "%.2f  ", f.f1(f.linePrecision, f.lineRecall))
                + kinds
        }
        print("file                     lines found  FA  FA/10k  P    R    F1   lineF1 by kind")
        for (log, f) in zip(logs, results) { print(row(log.name, f)) }
        print(row("all", total))
    }

    static func evaluate(_ log: LabelledLog, settings: StreamConfiguration, slack: Int) -> LogFigures {
        var run = OfflineRun(name: log.name, settings: settings)
        var alerts: [Int] = []
        var f = LogFigures()
        for (i, line) in log.lines.enumerated() {
            let s = run.next(line: line).score
            if s.alert { alerts.append(i) }
            let labelled = log.labels[i] != "0", predicted = s.score >= settings.threshold
            if labelled { f.labelledLines += 1 }
            if predicted { f.predictedLines += 1 }
            if labelled && predicted { f.truePositiveLines += 1 }
        }
        let events = log.events
        f.lines = log.lines.count
        f.events = events.count
        f.alerts = alerts.count
        for e in events {
            let hit = alerts.contains { $0 >= e.first && $0 <= e.last + slack }
            if hit { f.found += 1 }
            let old = f.byKind[e.kind] ?? (0, 0)
            f.byKind[e.kind] = (old.found + (hit ? 1 : 0), old.events + 1)
        }
        f.falseAlarms = alerts.filter { a in !events.contains { a >= $0.first && a <= $0.last + slack } }.count
        return f
    }
}
