import Foundation

/// The Numenta Anomaly Benchmark's scoring, written from its published rules (Lavin and Ahmad, "Evaluating
/// Real-time Anomaly Detection Algorithms: the Numenta Anomaly Benchmark", 2015, and NAB's README):
///
/// - A detection is a row whose score is at or above the threshold. Rows in a file's probationary
///   period (its first 15%, at most 750 rows) are not scored.
/// - Inside a labelled window only the best detection counts, weighted by a scaled sigmoid of its
///   position: 0.987 at the window's left edge, 0 just past its right edge; a window with no detection
///   costs `falseNegative`.
/// - A detection outside every window costs `falsePositive` times the sigmoid of its distance past the
///   previous window's end (in window widths); before any window, or far behind one, the full weight.
/// - One threshold for the whole corpus, the one that maximises the total, per profile; the total is
///   normalised so that the detector that never fires scores 0 and a perfect one 100.
public struct NABProfile: Sendable, Equatable {
    public var name: String
    public var truePositive: Double
    public var falsePositive: Double
    public var falseNegative: Double

    public static let standard = NABProfile(name: "standard", truePositive: 1, falsePositive: 0.11, falseNegative: 1)
    public static let rewardLowFalsePositives = NABProfile(
        name: "reward_low_FP_rate", truePositive: 1, falsePositive: 0.22, falseNegative: 1)
    public static let rewardLowFalseNegatives = NABProfile(
        name: "reward_low_FN_rate", truePositive: 1, falsePositive: 0.11, falseNegative: 2)
    public static let all = [standard, rewardLowFalsePositives, rewardLowFalseNegatives]
}

/// One file of a labelled corpus: how many rows, and its anomaly windows as inclusive row ranges.
public struct LabelledSeries: Sendable {
    public var name: String
    public var rows: Int
    public var windows: [ClosedRange<Int>]
    /// Rows at the start that are not scored: NAB's probationary period (the first 15% of the rows, at
    /// most 750) unless given.
    public var probation: Int

    public init(name: String, rows: Int, windows: [ClosedRange<Int>], probation: Int? = nil) {
        self.name = name
        self.rows = rows
        self.windows = windows.sorted { $0.lowerBound < $1.lowerBound }
        self.probation = probation ?? min(rows * 15 / 100, 750)
    }

    /// Windows with at least one row after the probationary period: the ones that count.
    public var scoredWindows: [ClosedRange<Int>] { windows.filter { $0.upperBound >= probation } }
}

public enum NAB {
    /// 2·sigmoid(−5x) − 1, and −1 from x = 3 on: NAB's weight of a detection at relative position x
    /// (−1 at a window's left edge, 0 at its right edge, positive past it).
    public static func scaledSigmoid(_ x: Double) -> Double {
        x >= 3 ? -1 : 2 / (1 + exp(5 * x)) - 1
    }

    /// What a detection on each scored row would be worth under `profile`: (row, weight, window
    /// index into `series.windows`, or nil outside every window). Rows in probation are left out.
    public static func rowWeights(_ series: LabelledSeries, profile: NABProfile) -> [(row: Int, weight: Double, window: Int?)] {
        let maxTP = scaledSigmoid(-1)
        var out: [(row: Int, weight: Double, window: Int?)] = []
        out.reserveCapacity(max(0, series.rows - series.probation))
        var next = 0  // the next window not yet passed
        var previous: ClosedRange<Int>?
        for row in 0..<series.rows {
            while next < series.windows.count && series.windows[next].upperBound < row {
                previous = series.windows[next]
                next += 1
            }
            let inside = next < series.windows.count && series.windows[next].contains(row)
            let weight: Double
            if inside {
                let w = series.windows[next]
                let width = Double(w.count)
                weight = scaledSigmoid(-Double(w.upperBound - row + 1) / width) * profile.truePositive / maxTP
            } else if let p = previous {
                weight = scaledSigmoid(Double(row - p.upperBound) / Double(max(p.count - 1, 1))) * profile.falsePositive
            } else {
                weight = -profile.falsePositive
            }
            if row >= series.probation { out.append((row, weight, inside ? next : nil)) }
        }
        return out
    }

    /// The raw score of a set of files at each distinct threshold, highest threshold first: every
    /// row of every file, sorted by score, swept downwards. `scores[f][r]` is file f's score of row r.
    public static func sweep(_ series: [LabelledSeries], scores: [[Float]], profile: NABProfile)
        -> [(threshold: Float, score: Double)]
    {
        precondition(series.count == scores.count)
        struct Point { var score: Float; var weight: Double; var window: Int }  // window -1: none
        var points: [Point] = []
        var windowCount = 0
        for (s, sc) in zip(series, scores) {
            precondition(sc.count == s.rows, "\(s.name): \(sc.count) scores for \(s.rows) rows")
            let base = windowCount
            for p in rowWeights(s, profile: profile) {
                // A NaN score (a model that diverged) detects nothing, as in `fileScore`: it is
                // swept last and never reached (compared as itself it would never equal the
                // threshold, and the sweep would not end). Its window still counts.
                let score = sc[p.row].isNaN ? -Float.infinity : sc[p.row]
                points.append(Point(score: score, weight: p.weight, window: p.window.map { base + $0 } ?? -1))
            }
            windowCount += s.windows.count
        }
        points.sort { $0.score > $1.score }
        // Windows with a scored row start at −falseNegative; windows wholly in probation never count.
        var best = [Double?](repeating: nil, count: windowCount)
        for p in points where p.window >= 0 { best[p.window] = -profile.falseNegative }
        var total = best.reduce(0) { $0 + ($1 ?? 0) }
        var out: [(threshold: Float, score: Double)] = [(Float.infinity, total)]
        var i = 0
        while i < points.count && points[i].score > -.infinity {
            let threshold = points[i].score
            while i < points.count && points[i].score == threshold {
                let p = points[i]
                if p.window >= 0 {
                    let old = best[p.window]!
                    if p.weight > old {
                        total += p.weight - old
                        best[p.window] = p.weight
                    }
                } else {
                    total += p.weight
                }
                i += 1
            }
            out.append((threshold, total))
        }
        return out
    }

    /// The result of one profile over a corpus.
    public struct ProfileResult: Sendable {
        public var profile: NABProfile
        public var threshold: Float
        public var raw: Double
        public var null: Double
        public var perfect: Double
        /// 100 · (raw − null) / (perfect − null).
        public var normalised: Double { perfect == null ? 0 : 100 * (raw - null) / (perfect - null) }
    }

    /// The best threshold for the corpus under `profile` and its normalised score. Ties go to the
    /// highest threshold.
    public static func score(_ series: [LabelledSeries], scores: [[Float]], profile: NABProfile) -> ProfileResult {
        let sweep = sweep(series, scores: scores, profile: profile)
        var best = sweep[0]
        for s in sweep.dropFirst() where s.score > best.score { best = s }
        let windows = Double(series.reduce(0) { $0 + $1.scoredWindows.count })
        return ProfileResult(
            profile: profile, threshold: best.threshold, raw: best.score, null: -profile.falseNegative * windows,
            perfect: profile.truePositive * windows)
    }

    /// The normalised score of a set of files at a threshold chosen elsewhere (a held-out family, with
    /// the threshold the other families chose).
    public static func score(
        _ series: [LabelledSeries], scores: [[Float]], profile: NABProfile, threshold: Float
    ) -> ProfileResult {
        let raw = zip(series, scores).reduce(0.0) { $0 + fileScore($1.0, scores: $1.1, threshold: threshold, profile: profile) }
        let windows = Double(series.reduce(0) { $0 + $1.scoredWindows.count })
        return ProfileResult(
            profile: profile, threshold: threshold, raw: raw, null: -profile.falseNegative * windows,
            perfect: profile.truePositive * windows)
    }

    /// Event-level counts at a threshold: a window is found if any of its scored rows is detected; a
    /// false-positive event is a run of consecutive detected rows outside every window.
    public struct Events: Sendable, Equatable {
        public var found = 0, missed = 0, falseAlarms = 0
        public init(found: Int = 0, missed: Int = 0, falseAlarms: Int = 0) {
            self.found = found
            self.missed = missed
            self.falseAlarms = falseAlarms
        }
        /// Nil when nothing was detected: no alert, so no share of them right.
        public var precision: Double? { found + falseAlarms == 0 ? nil : Double(found) / Double(found + falseAlarms) }
        /// Nil when there are no events to find.
        public var recall: Double? { found + missed == 0 ? nil : Double(found) / Double(found + missed) }
        /// The harmonic mean of precision and recall, 2·found / (2·found + false alarms + missed): 0
        /// when events were there and none was found. Nil when there are no events: a corpus without
        /// any says nothing of finding them, whatever the alerts (it scored 1.00 when silent).
        public var f1: Double? { found + missed == 0 ? nil : 2 * Double(found) / Double(2 * found + falseAlarms + missed) }
        public static func + (a: Events, b: Events) -> Events {
            Events(found: a.found + b.found, missed: a.missed + b.missed, falseAlarms: a.falseAlarms + b.falseAlarms)
        }
    }

    public static func events(_ series: LabelledSeries, scores: [Float], threshold: Float) -> Events {
        var e = Events()
        for w in series.scoredWindows {
            let rows = max(w.lowerBound, series.probation)...w.upperBound
            if rows.contains(where: { scores[$0] >= threshold }) { e.found += 1 } else { e.missed += 1 }
        }
        var inRun = false
        for row in series.probation..<series.rows {
            let outside = !series.windows.contains { $0.contains(row) }
            let detected = outside && scores[row] >= threshold
            if detected && !inRun { e.falseAlarms += 1 }
            inRun = detected
        }
        return e
    }

    /// A file's own raw score at `threshold` (the corpus threshold), under `profile`.
    public static func fileScore(_ series: LabelledSeries, scores: [Float], threshold: Float, profile: NABProfile) -> Double {
        var best = [Double](repeating: -profile.falseNegative, count: series.windows.count)
        var counted = [Bool](repeating: false, count: series.windows.count)
        var total = 0.0
        for p in rowWeights(series, profile: profile) {
            if let w = p.window {
                counted[w] = true
                if scores[p.row] >= threshold { best[w] = max(best[w], p.weight) }
            } else if scores[p.row] >= threshold {
                total += p.weight
            }
        }
        return total + zip(best, counted).reduce(0) { $0 + ($1.1 ? $1.0 : 0) }
    }
}
