#if canImport(Glibc)
import Glibc
#endif
import Learning

/// A count's level over its own period, on the log scale: a rate that has moved for a whole cycle.
///
/// A bursty count (requests, messages, sales per interval) can shift its level, surge for hours or
/// fall to a fraction of itself, with no single value out of the ordinary: its bursts are larger,
/// and its daily cycle spans more. What moves is the level over a whole cycle. So, per feature that
/// is a count (whole numbers, never negative; under `transform = log`, declared counts or volumes,
/// any value not negative), the signal finds the feature's period from its own values and compares
/// the mean of `ln(1 + x)` over the last period with the mean over the period before, where the
/// daily cycle cancels and a burst is one value among a period's.
///
/// **The period** is decided once, from the first `detection` values (a week of half-hours shows
/// in them, a day of five-minute steps five times): the strongest peak of
/// the autocorrelation of the log values after its first dip, smoothed by a running median of
/// `filterWidth` (a burst of a few values would blur it), the shortest lag within `peakTolerance`
/// of the best, at least `PeriodCheck.minimumCorrelation`. A feature without one is not judged.
///
/// **The calibration** is robust: the difference's median and scaled median absolute deviation
/// over its own earlier values (one in `historyStride`, the newest `horizon`), with a floor at what
/// the feature's own noise gives two independent means of a period, judged once they span
/// `historyPeriods` periods (and at least `minimumHistory` differences). A difference beyond `bar`
/// (`level_bar`, at least `alert_evidence`) starts an incident: the period before it becomes the
/// reference until the level has been back within half the bar for a whole period, or for
/// max(`holdPeriods` periods, `minimumHold`) samples at most (a lasting change is the new level), so
/// the incident's end is not a second one. The surprise that starts an incident is the
/// signal's one reading of it, and the alert policy alerts on it as on any evidence (once per quiet
/// `alert_hold_off`). The signal says nothing while the incident lasts: its held surprise raised
/// the count corpora's AUC-PR but lowered NAB's and GutenTAG's (docs/anomaly-experiments.md).
public final class LevelSignal: AnomalySignal, @unchecked Sendable {
    public static let name = "level"
    public static let stateVersion: UInt32 = 1
    public static let detection = 1500
    public static let shortestPeriod = 20
    /// The longest period the values kept can compare with the period before.
    public static let longestPeriod = (detection - 1) / 2
    static let filterWidth = 9
    static let peakTolerance = 0.05
    static let historyStride = 4
    static let recomputeEvery = 256
    static let minimumHistory = 200
    static let historyPeriods = 4
    static let holdPeriods = 4
    static let minimumHold = 600
    /// The largest log value kept (ln(1 + Float.greatestFiniteMagnitude) is 88.7): a checkpoint's
    /// values beyond it are damage.
    static let largestLog: Float = 89

    /// Differences kept for a calibration horizon (one in `historyStride`, at least 64, at most 2²⁰).
    static func historyCapacity(horizon: Int) -> Int { max(64, min(horizon, 1 << 22) / historyStride) }

    /// Per feature.
    struct Channel: Equatable {
        /// A count so far: never negative, and whole numbers (under `transform = log`, any value not
        /// negative), with a period once it has been looked for. A feature that is not is read no more.
        var on = true
        /// Values read.
        var seen = 0
        /// The period found at `detection` values (0: none, or not yet decided).
        var period = 0
        /// Differences learned (one in `historyStride` is kept).
        var learned = 0
        var median: Float = 0, scale: Float = 0, floor: Float = 0
        var sinceRecompute = Int.max / 2
        /// The incident's reference level (NaN: none), its age and the values back within half the bar.
        var reference = Float.nan
        var held = 0, clear = 0
    }

    let channels: Int
    public let bar: Float
    /// The values come on the log scale already (`transform = log`).
    let logScale: Bool
    let historyCapacity: Int
    var state: [Channel]
    /// Per channel, the last `detection` log values (ring), and the sums of the last period
    /// and of the one before it (kept in double, set again from the ring every 4,096 values).
    var rings: [Float]
    var sums: [(now: Double, before: Double)]
    /// Per channel, the differences learned (ring of `historyCapacity`).
    var history: [Float]
    var scratch: [Float] = []
    /// Per channel, its level over the reference's (`exp` of the difference) when its last incident
    /// began.
    var ratios: [Float]
    /// The feature of the last reading with something to say (−1: none), and the ratio of its level
    /// to the reference's.
    public private(set) var lastChannel = -1
    public private(set) var lastRatio: Float = 1

    public init(channels: Int, bar: Float, horizon: Int, logScale: Bool) {
        self.channels = max(1, channels)
        self.bar = bar
        self.logScale = logScale
        historyCapacity = Self.historyCapacity(horizon: horizon)
        state = [Channel](repeating: Channel(), count: self.channels)
        rings = [Float](repeating: 0, count: self.channels * Self.detection)
        sums = [(now: Double, before: Double)](repeating: (0, 0), count: self.channels)
        history = [Float](repeating: 0, count: self.channels * historyCapacity)
        ratios = [Float](repeating: 1, count: self.channels)
    }

    /// What the signal holds for a stream of `channels` features.
    public static func bytes(channels: Int, horizon: Int) -> Int {
        channels * (4 * detection + 4 * historyCapacity(horizon: horizon) + 100)
    }

    /// The signal learns as it reads, by its own bar.
    public var learns: Bool { false }
    /// A period's level is not evidence about one value beyond its range.
    public var corroborates: Bool { false }
    public func learn(_ o: Observation, anomalous: Bool) {}

    /// Whether feature `c` is in an incident (its reference held).
    public func inIncident(channel c: Int) -> Bool { !state[c].reference.isNaN }

    /// Whether feature `c` is still read: a count so far, and, from its 1,500th value, with a period.
    public func judges(channel c: Int) -> Bool { state[c].on }

    /// Feature `c`'s period (0: none found, or not yet decided).
    public func period(channel c: Int) -> Int { state[c].period }

    /// An alert's reason, in the words an operator reads.
    public static func reason(channel: Int, period: Int, ratio: Float) -> String {
        let r = String(format: ratio >= 10 ? "%.0f" : ratio < 0.1 ? "%.2g" : "%.2f", Double(ratio))
        return "feature \(channel)'s level over its last period (\(period) values) is \(r) times the period's before"
    }

    @inline(__always)
    func ringValue(_ c: Int, ago: Int) -> Float {
        let k = state[c].seen - 1 - ago
        return rings[c * Self.detection + k % Self.detection]
    }

    public func read(_ o: inout Observation) -> Reading {
        lastChannel = -1
        var surprise = -Float.infinity
        for c in 0..<min(channels, o.dimension) where state[c].on {
            let x = o.values[c]
            // A count: never negative, and whole (unless the stream is declared a log-scale one).
            guard x >= 0 && (logScale || x == x.rounded(.towardZero)) else {
                state[c] = Channel(on: false)
                continue
            }
            if let z = push(c, logScale ? x : log1pf(x)), z > surprise { (surprise, lastChannel) = (z, c) }
        }
        if lastChannel >= 0 { lastRatio = ratios[lastChannel] }
        return Reading(surprise: surprise)
    }

    /// Feature `c`'s next log value; its surprise if it starts an incident (nil otherwise).
    private func push(_ c: Int, _ y: Float) -> Float? {
        let n = Self.detection
        rings[c * n + state[c].seen % n] = y
        state[c].seen += 1
        let seen = state[c].seen
        let detecting = seen == Self.detection
        if detecting { detect(c) }
        guard state[c].on else { return nil }
        let p = state[c].period
        guard p > 0, seen > 2 * p else { return nil }
        if detecting || seen % 4096 == 0 {
            // Detection set the sums from the ring, the newest value among them; drift is undone.
            resum(c)
        } else {
            // The newest value enters the last period, the one a period back moves to the period
            // before, the one two periods back leaves.
            let a = Double(ringValue(c, ago: p)), b = Double(ringValue(c, ago: 2 * p))
            sums[c].now += Double(y) - a
            sums[c].before += a - b
        }
        return judge(c)
    }

    /// The difference of the newest period's mean from the reference's, judged and learned.
    private func judge(_ c: Int) -> Float? {
        var k = state[c]
        defer { state[c] = k }
        let p = Double(k.period)
        let now = Float(sums[c].now / p), before = Float(sums[c].before / p)
        let held = !k.reference.isNaN
        let d = now - (held ? k.reference : before)
        guard k.learned >= max(Self.minimumHistory, Self.historyPeriods * k.period) else {
            learn(&k, c, d)
            return nil
        }
        if k.sinceRecompute >= Self.recomputeEvery { recompute(&k, c) }
        k.sinceRecompute += 1
        let z = abs(d - k.median) / k.scale
        if held {
            k.held += 1
            k.clear = z > bar / 2 ? 0 : k.clear + 1
            if k.clear >= k.period || k.held >= max(Self.holdPeriods * k.period, Self.minimumHold) {
                (k.reference, k.held, k.clear) = (.nan, 0, 0)
            }
            return nil
        }
        guard z <= bar else {
            (k.reference, k.held, k.clear) = (before, 0, 0)
            ratios[c] = expf(d)
            return z
        }
        learn(&k, c, d)
        return nil
    }

    private func learn(_ k: inout Channel, _ c: Int, _ d: Float) {
        k.learned += 1
        if k.learned % Self.historyStride == 0 {
            let i = (k.learned / Self.historyStride - 1) % historyCapacity
            history[c * historyCapacity + i] = d
        }
    }

    /// The median and scaled median absolute deviation of the differences kept.
    private func recompute(_ k: inout Channel, _ c: Int) {
        k.sinceRecompute = 0
        let m = min(k.learned / Self.historyStride, historyCapacity)
        guard m > 0 else { return }
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: history[(c * historyCapacity)..<(c * historyCapacity + m)])
        // By selection, not a sort (13 µs for 1,250 differences against 60 to 90), every 256 samples
        // (64 new differences kept): every 64, with a sort, had cost 1 µs a sample a feature.
        let (median, deviation) = Self.medianAndDeviation(&scratch)
        k.median = median
        k.scale = max(1.4826 * deviation, k.floor) + 1e-6
    }

    /// The median of `v` and the median of its absolute deviations from it, by selection (`v` is
    /// overwritten).
    static func medianAndDeviation(_ v: inout [Float]) -> (median: Float, deviation: Float) {
        v.withUnsafeMutableBufferPointer { b in
            guard let p = b.baseAddress else { return (0, 0) }
            let median = Self.median(p, count: b.count)
            for i in b.indices { b[i] = abs(b[i] - median) }
            return (median, Self.median(p, count: b.count))
        }
    }

    /// The median of `n` values (the mean of the middle two for an even count), found by selection
    /// (Hoare's, median-of-three pivots); the values are reordered.
    static func median(_ v: UnsafeMutablePointer<Float>, count n: Int) -> Float {
        let upper = select(v, count: n, k: n / 2)
        guard n % 2 == 0 else { return upper }
        // The values before position n / 2 are those at most the upper middle: the largest of them
        // is the lower middle.
        var lower = -Float.infinity
        for i in 0..<(n / 2) where v[i] > lower { lower = v[i] }
        return 0.5 * (lower + upper)
    }

    /// The `k`-th smallest of `n` values (0-based), left at position `k` with the smaller before it.
    static func select(_ v: UnsafeMutablePointer<Float>, count n: Int, k: Int) -> Float {
        var lo = 0, hi = n - 1
        while hi > lo {
            let mid = lo + (hi - lo) / 2
            if v[mid] < v[lo] { (v[mid], v[lo]) = (v[lo], v[mid]) }
            if v[hi] < v[lo] { (v[hi], v[lo]) = (v[lo], v[hi]) }
            if v[hi] < v[mid] { (v[hi], v[mid]) = (v[mid], v[hi]) }
            let pivot = v[mid]
            var i = lo, j = hi
            while i <= j {
                while v[i] < pivot { i += 1 }
                while v[j] > pivot { j -= 1 }
                if i <= j {
                    (v[i], v[j]) = (v[j], v[i])
                    i += 1
                    j -= 1
                }
            }
            if k <= j { hi = j } else if k >= i { lo = i } else { break }
        }
        return v[k]
    }

    /// The sums of the last period and the one before, from the ring.
    private func resum(_ c: Int) {
        let p = state[c].period
        var now = 0.0, before = 0.0
        for j in 0..<p {
            now += Double(ringValue(c, ago: j))
            before += Double(ringValue(c, ago: p + j))
        }
        sums[c] = (now, before)
    }

    /// Decides feature `c`'s period from its values so far; a new period starts its calibration
    /// from the values kept.
    private func detect(_ c: Int) {
        let seen = state[c].seen
        let values = (0..<seen).map { ringValue(c, ago: seen - 1 - $0) }
        let found = Self.detectPeriod(values)
        guard found > 0 else {
            // Never judged: the feature is read no more.
            state[c] = Channel(on: false)
            return
        }
        var k = Channel(seen: seen, period: found)
        // The noise of a mean of `found` values, from the values' differences, floors the spread.
        var differences = (1..<seen).map { values[$0] - values[$0 - 1] }
        k.floor = 1.4826 * Self.medianAndDeviation(&differences).deviation / Float(2).squareRoot() * (2 / Float(found)).squareRoot()
        state[c] = k
        // The differences the values kept would have given, learned as if read one by one (the newest
        // is judged as it is read).
        var now = 0.0, before = 0.0
        for t in 0..<(seen - 1) {
            now += Double(values[t])
            if t >= found { now -= Double(values[t - found]); before += Double(values[t - found]) }
            if t >= 2 * found { before -= Double(values[t - 2 * found]) }
            if t >= 2 * found { learn(&k, c, Float((now - before) / Double(found))) }
        }
        state[c] = k
        resum(c)
    }

    /// The period of `values` (log values), or 0: the strongest autocorrelation peak after the first
    /// dip, of the values under a running median of `filterWidth`, among lags `shortestPeriod` to half
    /// the values (at most `longestPeriod`), reaching `PeriodCheck.minimumCorrelation`; the shortest
    /// lag within `peakTolerance` of it (a day, not two), moved to where within 8 lags the values
    /// repeat best.
    public static func detectPeriod(_ values: [Float]) -> Int {
        let v = runningMedian(values, width: filterWidth)
        let n = v.count, highest = min(n / 2, longestPeriod + 1)
        guard highest > shortestPeriod + 1, let correlation = PeriodCheck.autocorrelation(v) else { return 0 }
        let c = (0...highest).map(correlation)
        var dip = 1
        while dip < highest && !(c[dip] <= c[dip - 1] && c[dip] <= c[dip + 1]) { dip += 1 }
        let minimum = Double(PeriodCheck.minimumCorrelation)
        let peaks = (max(dip, shortestPeriod)..<highest).filter { c[$0] >= c[$0 - 1] && c[$0] >= c[$0 + 1] && c[$0] >= minimum }
        guard let best = peaks.map({ c[$0] }).max(), let lag = peaks.first(where: { c[$0] >= best - peakTolerance }) else { return 0 }
        return min(PeriodCheck.repeatsBest(v, near: lag, in: shortestPeriod...(highest - 1)), longestPeriod)
    }

    static func runningMedian(_ values: [Float], width: Int) -> [Float] {
        let h = width / 2, n = values.count
        guard n > 0 else { return [] }
        var window = [Float](repeating: 0, count: width)
        return (0..<n).map { i in
            for j in 0..<width { window[j] = values[min(max(i - h + j, 0), n - 1)] }
            window.sort()
            return window[h]
        }
    }

    /// Per feature: its flag, counts and statistics, the log values kept (oldest first) and the
    /// differences kept (oldest first, so that another `calibration_horizon` keeps the newest).
    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(channels))
        for c in 0..<channels {
            let k = state[c]
            w.write(UInt8(k.on ? 1 : 0))
            for n in [k.seen, k.period, k.learned, k.held, k.clear, min(k.sinceRecompute, Int(UInt32.max))] { w.write(UInt64(n)) }
            for x in [k.floor, k.median, k.scale, k.reference] { w.write(x) }
            let kept = min(k.seen, Self.detection)
            for j in 0..<kept { w.write(ringValue(c, ago: kept - 1 - j)) }
            let learned = k.learned / Self.historyStride, m = min(learned, historyCapacity)
            w.write(UInt32(m))
            for q in (learned - m)..<learned { w.write(history[c * historyCapacity + q % historyCapacity]) }
        }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        let n = Int(try r.read(UInt32.self))
        guard n == channels else { throw StateError.invalid("level: \(n) features, the stream has \(channels)") }
        var restored: [(Channel, [Float], [Float])] = []
        for _ in 0..<n {
            let on = try r.read(UInt8.self)
            let counts = try (0..<6).map { _ in try r.read(UInt64.self) }
            let floor = try r.readFinite(Float.self, "level floor"), median = try r.readFinite(Float.self, "level median")
            let scale = try r.readFinite(Float.self, "level scale")
            let reference = try r.read(Float.self)
            guard on < 2, counts.allSatisfy({ $0 < 1 << 62 }), floor >= 0, scale >= 0, abs(median) <= Self.largestLog,
                reference.isNaN || (reference >= 0 && reference <= Self.largestLog)
            else { throw StateError.invalid("level: a feature's state") }
            let (seen, period, learned, held, clear) = (Int(counts[0]), Int(counts[1]), Int(counts[2]), Int(counts[3]), Int(counts[4]))
            guard period == 0 || (period >= Self.shortestPeriod && period <= Self.longestPeriod && seen >= Self.detection),
                learned <= seen, on == 1 || seen == 0, held <= seen, clear <= held, reference.isNaN || period > 0
            else { throw StateError.invalid("level: a feature's period or counts") }
            let values = try (0..<min(seen, Self.detection)).map { _ in
                let y = try r.readFinite(Float.self, "level value")
                guard y >= 0 && y <= Self.largestLog else { throw StateError.invalid("level: a log value") }
                return y
            }
            let m = Int(try r.read(UInt32.self))
            guard m <= learned / Self.historyStride, m <= Self.historyCapacity(horizon: .max),
                m == learned / Self.historyStride || m >= 64
            else {
                throw StateError.invalid("level: differences kept")
            }
            let kept = try (0..<m).map { _ in
                let d = try r.readFinite(Float.self, "level difference")
                guard abs(d) <= Self.largestLog else { throw StateError.invalid("level: a difference") }
                return d
            }
            var k = Channel(on: on == 1, seen: seen, period: period, learned: learned)
            (k.floor, k.median, k.scale, k.reference, k.held, k.clear) = (floor, median, scale, reference, held, clear)
            // Statistics over other differences than this signal keeps (another horizon), or none yet,
            // are redone before they are used.
            let other = m > historyCapacity || m < min(learned / Self.historyStride, historyCapacity) || scale < 1e-6
            k.sinceRecompute = other ? Int.max / 2 : Int(counts[5])
            restored.append((k, values, kept))
        }
        for (c, (k, values, kept)) in restored.enumerated() {
            state[c] = k
            for (j, y) in values.enumerated() {
                rings[c * Self.detection + (k.seen - values.count + j) % Self.detection] = y
            }
            let learned = k.learned / Self.historyStride
            for (i, d) in kept.suffix(historyCapacity).enumerated() {
                history[c * historyCapacity + (learned - min(kept.count, historyCapacity) + i) % historyCapacity] = d
            }
            if k.period > 0 && k.seen > 2 * k.period { resum(c) }
        }
    }
}
