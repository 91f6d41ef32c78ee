#if canImport(Glibc)
import Glibc
#endif
import Learning

/// A count's level and swing over its own period, on the log scale: a rate that has moved, or a
/// cycle that has flattened or grown, for a whole period.
///
/// A bursty count (requests, messages, sales per interval) can shift its level, surge for hours or
/// fall to a fraction of itself, with no single value out of the ordinary: its bursts are larger,
/// and its daily cycle spans more. What moves is the level over a whole cycle. So, per feature that
/// is a count (whole numbers, never negative; under `transform = log`, declared counts or volumes,
/// any value not negative), the signal finds the feature's period from its own values and compares
/// the mean of `ln(1 + x)` over the last period with the mean over the period before, where the
/// daily cycle cancels and a burst is one value among a period's.
///
/// **The swing** is the second statistic, judged the same way: the standard deviation over the
/// last period of the log values under a causal running median of `filterWidth` (the last 9 values;
/// a burst of a few does not move it), against the period before's. A daily cycle that is lost (a
/// service that stops following its users) keeps its level and loses its swing.
///
/// **The period** is decided once, from the first `detection` values (a week of half-hours shows
/// in them, a day of five-minute steps five times): the strongest peak of
/// the autocorrelation of the log values after its first dip, smoothed by a running median of
/// `filterWidth` (a burst of a few values would blur it), the shortest lag within `peakTolerance`
/// of the best, at least `PeriodCheck.minimumCorrelation`. A feature without one is not judged.
///
/// **The calibration** is robust, per statistic: the difference's median and scaled median absolute deviation
/// over its own earlier values (one in `historyStride`, the newest `horizon`), with a floor at what
/// the feature's own noise gives two independent means of a period, judged once they span
/// `historyPeriods` periods (and at least `minimumHistory` differences). A difference beyond its bar
/// (`level_bar` or `swing_bar`, at least `alert_evidence`) starts an incident, unless the last period
/// is like the one two before it (where three periods fit in the values kept): then the period
/// before was the odd one, and this is its echo. The period before becomes the
/// reference until the statistic has been back within half the bar for a whole period, or for
/// max(`holdPeriods` periods, `minimumHold`) samples at most (a lasting change is the new level), so
/// the incident's end is not a second one. The surprise that starts an incident is the
/// signal's one reading of it, and the alert policy alerts on it as on any evidence (once per quiet
/// `alert_hold_off`). The signal says nothing while the incident lasts: its held surprise raised
/// the count corpora's AUC-PR but lowered NAB's and GutenTAG's (docs/anomaly-experiments.md).
public final class LevelSignal: AnomalySignal, @unchecked Sendable {
    public static let name = "level"
    /// 2 adds the swing (a version 1 section restores the level, and the swing learns from the values
    /// kept).
    public static let stateVersion: UInt32 = 2
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

    /// What the signal compares over a period.
    public enum Statistic: Int, CaseIterable, Sendable {
        /// The mean of the log values.
        case level
        /// The standard deviation of the log values under a causal running median.
        case swing
    }

    /// Sums, and sums of squares, over the last period, the one before it and the one before that.
    struct PeriodSums {
        var now = 0.0, before = 0.0, earlier = 0.0
        var nowSquares = 0.0, beforeSquares = 0.0, earlierSquares = 0.0

        /// `x` enters the last period, `a` (a period back) moves to the period before, `b` (two
        /// back) to the one before that, and `e` (three back) leaves.
        mutating func slide(_ x: Float, _ a: Float, _ b: Float, _ e: Float) {
            let (x, a, b, e) = (Double(x), Double(a), Double(b), Double(e))
            now += x - a
            before += a - b
            earlier += b - e
            nowSquares += x * x - a * a
            beforeSquares += a * a - b * b
            earlierSquares += b * b - e * e
        }

        /// One value of each period (of the two, without `earlier`).
        mutating func add(_ x: Float, _ b: Float, _ e: Float?) {
            let (x, b) = (Double(x), Double(b))
            now += x
            before += b
            nowSquares += x * x
            beforeSquares += b * b
            if let e {
                earlier += Double(e)
                earlierSquares += Double(e) * Double(e)
            }
        }
    }

    /// One statistic of one feature: its calibration and its incident.
    struct Judge: Equatable {
        /// Differences learned (one in `historyStride` is kept), and how many of the kept ones the
        /// ring holds (fewer than learned / `historyStride` after a restore from a section that kept
        /// fewer).
        var learned = 0
        var kept = 0
        var median: Float = 0, scale: Float = 0
        var sinceRecompute = Int.max / 2
        /// The incident's reference (NaN: none), its age and the values back within half the bar.
        var reference = Float.nan
        var held = 0, clear = 0
    }

    /// Per feature.
    struct Channel: Equatable {
        /// A count so far: never negative, and whole numbers (under `transform = log`, any value not
        /// negative), with a period once it has been looked for. A feature that is not is read no more.
        var on = true
        /// Values read.
        var seen = 0
        /// The period found at `detection` values (0: none, or not yet decided).
        var period = 0
        /// What the feature's noise gives two independent means of a period: both statistics' floor.
        var floor: Float = 0
        var level = Judge(), swing = Judge()

        subscript(_ s: Statistic) -> Judge {
            get { s == .level ? level : swing }
            set { if s == .level { level = newValue } else { swing = newValue } }
        }
    }

    let channels: Int
    public let bar: Float
    /// The swing's bar (the level's unless told).
    public let swingBar: Float
    /// Whether a period like the one two before is the period before's echo (only tests turn it off).
    let echoes: Bool
    /// The values come on the log scale already (`transform = log`).
    let logScale: Bool
    let historyCapacity: Int
    var state: [Channel]
    /// Per channel, the last `detection` log values and their causal running medians (rings), and
    /// the sums over the last period, the one before it and the one before that (read where three
    /// periods fit in the rings): of the log values, and of the medians and their squares (kept in
    /// double, set again from the rings every 4,096 values).
    var rings: [Float]
    var smooth: [Float]
    var sums: [PeriodSums]
    var swingSums: [PeriodSums]
    /// Per channel and statistic, the differences learned (ring of `historyCapacity`).
    var history: [Float]
    var scratch: [Float] = []
    /// Per channel and statistic, the statistic over the reference's when its last incident began;
    /// per channel, the level's over the period before's when the swing's last incident began.
    var ratios: [Float]
    var levelAtSwing: [Float]
    /// The feature of the last reading with something to say (−1: none), the statistic that spoke,
    /// the ratio of it to the reference's, and the level's ratio then.
    public private(set) var lastChannel = -1
    public private(set) var lastStatistic = Statistic.level
    public private(set) var lastRatio: Float = 1
    public private(set) var lastLevelRatio: Float = 1

    public init(channels: Int, bar: Float, horizon: Int, logScale: Bool, swingBar: Float? = nil, echoes: Bool = true) {
        self.channels = max(1, channels)
        self.echoes = echoes
        self.bar = bar
        self.swingBar = swingBar ?? bar
        self.logScale = logScale
        historyCapacity = Self.historyCapacity(horizon: horizon)
        state = [Channel](repeating: Channel(), count: self.channels)
        rings = [Float](repeating: 0, count: self.channels * Self.detection)
        smooth = [Float](repeating: 0, count: self.channels * Self.detection)
        sums = .init(repeating: PeriodSums(), count: self.channels)
        swingSums = .init(repeating: PeriodSums(), count: self.channels)
        history = [Float](repeating: 0, count: self.channels * 2 * historyCapacity)
        ratios = [Float](repeating: 1, count: self.channels * 2)
        levelAtSwing = [Float](repeating: 1, count: self.channels)
    }

    /// What the signal holds for a stream of `channels` features.
    public static func bytes(channels: Int, horizon: Int) -> Int {
        channels * (8 * detection + 8 * historyCapacity(horizon: horizon) + 200)
    }

    /// The signal learns as it reads, by its own bar.
    public var learns: Bool { false }
    /// A period's level is not evidence about one value beyond its range.
    public var corroborates: Bool { false }
    public func learn(_ o: Observation, anomalous: Bool) {}

    /// Whether feature `c` is in an incident of statistic `s` (its reference held).
    public func inIncident(channel c: Int, _ s: Statistic = .level) -> Bool { !state[c][s].reference.isNaN }

    /// Whether feature `c` is still read: a count so far, and, from its 1,500th value, with a period.
    public func judges(channel c: Int) -> Bool { state[c].on }

    /// Feature `c`'s period (0: none found, or not yet decided).
    public func period(channel c: Int) -> Int { state[c].period }

    /// An alert's reason, in the words an operator reads: the level's ratio, and the swing's when the
    /// swing spoke.
    public static func reason(channel: Int, period: Int, ratio: Float, swing: Float? = nil) -> String {
        func times(_ x: Float) -> String { String(format: x >= 10 ? "%.0f" : x < 0.1 ? "%.2g" : "%.2f", Double(x)) }
        guard let swing else {
            return "feature \(channel)'s level over its last period (\(period) values) is \(times(ratio)) times the period's before"
        }
        // A period before without a swing (a sparse count's medians all one value) gives no ratio.
        let swung = swing.isFinite ? "is \(times(swing)) times the period's before" : "rose from none in the period before"
        return "feature \(channel)'s swing over its last period (\(period) values) \(swung) (its level \(times(ratio)) times)"
    }

    @inline(__always)
    func ringValue(_ c: Int, ago: Int) -> Float {
        let k = state[c].seen - 1 - ago
        return rings[c * Self.detection + k % Self.detection]
    }

    @inline(__always)
    func smoothValue(_ c: Int, ago: Int) -> Float {
        let k = state[c].seen - 1 - ago
        return smooth[c * Self.detection + k % Self.detection]
    }

    /// The median of the last `filterWidth` log values of feature `c` (fewer while it has fewer).
    private func causalMedian(_ c: Int) -> Float {
        let seen = state[c].seen, n = Self.detection
        guard seen >= Self.filterWidth else {
            return Self.causalMedians((0..<seen).map { ringValue(c, ago: seen - 1 - $0) }).last ?? 0
        }
        return rings.withUnsafeBufferPointer { r in
            var i = (seen - Self.filterWidth) % n
            func next() -> Float {
                defer { i = i + 1 == n ? 0 : i + 1 }
                return r[c * n + i]
            }
            return Self.median9(next(), next(), next(), next(), next(), next(), next(), next(), next())
        }
    }

    /// The median of nine values by a network of 19 exchanges (Paeth's, as in Devillard's
    /// "Fast median search", 1998): no sort, no branch.
    @inline(__always)
    static func median9(
        _ p0: Float, _ p1: Float, _ p2: Float, _ p3: Float, _ p4: Float, _ p5: Float, _ p6: Float, _ p7: Float, _ p8: Float
    ) -> Float {
        var (p0, p1, p2, p3, p4, p5, p6, p7, p8) = (p0, p1, p2, p3, p4, p5, p6, p7, p8)
        @inline(__always) func order(_ a: inout Float, _ b: inout Float) { (a, b) = (min(a, b), max(a, b)) }
        order(&p1, &p2); order(&p4, &p5); order(&p7, &p8)
        order(&p0, &p1); order(&p3, &p4); order(&p6, &p7)
        order(&p1, &p2); order(&p4, &p5); order(&p7, &p8)
        order(&p0, &p3); order(&p5, &p8); order(&p4, &p7)
        order(&p3, &p6); order(&p1, &p4); order(&p2, &p5)
        order(&p4, &p7); order(&p4, &p2); order(&p6, &p4)
        order(&p4, &p2)
        return p4
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
            if let (z, s) = push(c, logScale ? x : log1pf(x)), z > surprise { (surprise, lastChannel, lastStatistic) = (z, c, s) }
        }
        if lastChannel >= 0 {
            lastRatio = ratios[lastChannel * 2 + lastStatistic.rawValue]
            lastLevelRatio = lastStatistic == .level ? lastRatio : levelAtSwing[lastChannel]
        }
        return Reading(surprise: surprise)
    }

    /// Feature `c`'s next log value; its surprise and statistic if it starts an incident (nil
    /// otherwise).
    private func push(_ c: Int, _ y: Float) -> (Float, Statistic)? {
        let n = Self.detection
        let slot = c * n + state[c].seen % n
        rings[slot] = y
        state[c].seen += 1
        smooth[slot] = causalMedian(c)
        let seen = state[c].seen
        let detecting = seen == Self.detection
        if detecting { detect(c) }
        guard state[c].on else { return nil }
        let p = state[c].period
        guard p > 0, seen > 2 * p else { return nil }
        if detecting || seen % 4096 == 0 {
            // Detection set the sums from the rings, the newest value among them; drift is undone.
            resum(c)
        } else {
            // The newest value enters the last period, the one a period back moves to the period
            // before, the one two periods back to the one before that, the one three back leaves.
            let reach = 3 * p < Self.detection
            sums[c].slide(y, ringValue(c, ago: p), ringValue(c, ago: 2 * p), reach ? ringValue(c, ago: 3 * p) : 0)
            if swingBar.isFinite {
                swingSums[c].slide(smooth[slot], smoothValue(c, ago: p), smoothValue(c, ago: 2 * p), reach ? smoothValue(c, ago: 3 * p) : 0)
            }
        }
        let p64 = Double(p)
        // The period two before, where the values kept and the values read reach it.
        let earlier = echoes && 3 * p < Self.detection && seen > 3 * p
        // A statistic whose bar is out of reach (`level_bar` or `swing_bar` 0) is not judged (the
        // swing not summed either).
        let level = !bar.isFinite ? nil : judge(
            c, .level, now: Float(sums[c].now / p64), before: Float(sums[c].before / p64),
            earlier: earlier ? Float(sums[c].earlier / p64) : nil)
        let w = swingSums[c]
        let swing = !swingBar.isFinite ? nil : judge(
            c, .swing, now: Self.deviation(w.now, w.nowSquares, p64), before: Self.deviation(w.before, w.beforeSquares, p64),
            earlier: earlier ? Self.deviation(w.earlier, w.earlierSquares, p64) : nil)
        guard level != nil || swing != nil else { return nil }
        if swing != nil { levelAtSwing[c] = expf(Float((sums[c].now - sums[c].before) / p64)) }
        return (level ?? -.infinity) >= (swing ?? -.infinity) ? (level!, .level) : (swing!, .swing)
    }

    /// The standard deviation of `n` values from their sum and the sum of their squares.
    @inline(__always)
    static func deviation(_ sum: Double, _ squares: Double, _ n: Double) -> Float {
        let mean = sum / n
        return Float(max(squares / n - mean * mean, 0).squareRoot())
    }

    /// Statistic `s` over the newest period against the reference's (the period before's, or an
    /// incident's), judged and learned; its surprise if it starts an incident.
    private func judge(_ c: Int, _ s: Statistic, now: Float, before: Float, earlier: Float?) -> Float? {
        var k = state[c][s]
        defer { state[c][s] = k }
        let period = state[c].period, floor = state[c].floor
        let held = !k.reference.isNaN
        let d = now - (held ? k.reference : before)
        guard k.learned >= max(Self.minimumHistory, Self.historyPeriods * period) else {
            learn(&k, c, s, d)
            return nil
        }
        if k.sinceRecompute >= Self.recomputeEvery { recompute(&k, c, s, floor: floor) }
        k.sinceRecompute += 1
        let bar = s == .level ? self.bar : swingBar
        var z = abs(d - k.median) / k.scale
        // A period unlike the one before but like the one before that is the period before's echo:
        // no incident, and its difference (beyond the bar) is not learned either.
        if !held, let earlier, z > bar {
            z = min(z, abs(now - earlier - k.median) / k.scale)
            if z <= bar { return nil }
        }
        if held {
            k.held += 1
            k.clear = z > bar / 2 ? 0 : k.clear + 1
            if k.clear >= period || k.held >= max(Self.holdPeriods * period, Self.minimumHold) {
                (k.reference, k.held, k.clear) = (.nan, 0, 0)
            }
            return nil
        }
        guard z <= bar else {
            (k.reference, k.held, k.clear) = (before, 0, 0)
            // The level's ratio of rates (`exp` of its difference of logs), the swing's of swings.
            ratios[c * 2 + s.rawValue] = s == .level ? expf(d) : before > 0 ? now / before : .infinity
            return z
        }
        learn(&k, c, s, d)
        return nil
    }

    @inline(__always)
    func historyBase(_ c: Int, _ s: Statistic) -> Int { (c * 2 + s.rawValue) * historyCapacity }

    private func learn(_ k: inout Judge, _ c: Int, _ s: Statistic, _ d: Float) {
        k.learned += 1
        if k.learned % Self.historyStride == 0 {
            k.kept = min(k.kept + 1, historyCapacity)
            let i = (k.learned / Self.historyStride - 1) % historyCapacity
            history[historyBase(c, s) + i] = d
        }
    }

    /// The median and scaled median absolute deviation of the differences kept.
    private func recompute(_ k: inout Judge, _ c: Int, _ s: Statistic, floor: Float) {
        k.sinceRecompute = 0
        let m = min(k.kept, historyCapacity)
        guard m > 0 else { return }
        scratch.removeAll(keepingCapacity: true)
        let base = historyBase(c, s), newest = k.learned / Self.historyStride
        if m == historyCapacity {
            scratch.append(contentsOf: history[base..<(base + m)])
        } else {
            // The newest m of the ring, where a restore put them.
            for q in (newest - m)..<newest { scratch.append(history[base + q % historyCapacity]) }
        }
        // By selection, not a sort (13 µs for 1,250 differences against 60 to 90), every 256 samples
        // (64 new differences kept): every 64, with a sort, had cost 1 µs a sample a feature.
        let (median, deviation) = Self.medianAndDeviation(&scratch)
        k.median = median
        k.scale = max(1.4826 * deviation, floor) + 1e-6
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

    /// The sums over the last three periods, from the rings (the one before the period before's
    /// where three periods fit in them).
    private func resum(_ c: Int) {
        let p = state[c].period
        let reach = 3 * p < Self.detection && state[c].seen > 3 * p
        var (level, swing) = (PeriodSums(), PeriodSums())
        for j in 0..<p {
            level.add(ringValue(c, ago: j), ringValue(c, ago: p + j), reach ? ringValue(c, ago: 2 * p + j) : nil)
            swing.add(smoothValue(c, ago: j), smoothValue(c, ago: p + j), reach ? smoothValue(c, ago: 2 * p + j) : nil)
        }
        (sums[c], swingSums[c]) = (level, swing)
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
        learnKept(c, .level, from: values)
        learnKept(c, .swing, from: (0..<seen).map { smoothValue(c, ago: seen - 1 - $0) })
        resum(c)
    }

    /// The differences of statistic `s` the values kept (log values, or their running medians for the
    /// swing) would have given, learned as if read one by one (the newest is judged as it is read).
    private func learnKept(_ c: Int, _ s: Statistic, from values: [Float]) {
        let p = state[c].period, n = Double(p)
        var k = state[c][s]
        var now = 0.0, before = 0.0, nowSquares = 0.0, beforeSquares = 0.0
        for t in 0..<(values.count - 1) {
            let x = Double(values[t])
            now += x
            nowSquares += x * x
            if t >= p {
                let a = Double(values[t - p])
                (now, nowSquares, before, beforeSquares) = (now - a, nowSquares - a * a, before + a, beforeSquares + a * a)
            }
            if t >= 2 * p {
                let b = Double(values[t - 2 * p])
                (before, beforeSquares) = (before - b, beforeSquares - b * b)
                let d = s == .level
                    ? Float((now - before) / n)
                    : Self.deviation(now, nowSquares, n) - Self.deviation(before, beforeSquares, n)
                learn(&k, c, s, d)
            }
        }
        state[c][s] = k
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

    /// `n` log values, each in 0...`largestLog`.
    private static func readLogs(_ r: inout StateReader, _ n: Int, _ what: String) throws -> [Float] {
        try (0..<n).map { _ in
            let y = try r.readFinite(Float.self, what)
            guard y >= 0 && y <= Self.largestLog else { throw StateError.invalid("level: a \(what)") }
            return y
        }
    }

    /// Each value's median with the `filterWidth - 1` before it (fewer at the start), as `read` takes them.
    static func causalMedians(_ values: [Float]) -> [Float] {
        values.indices.map { i in
            let w = values[max(0, i - filterWidth + 1)...i].sorted(), n = w.count
            return n % 2 == 1 ? w[n / 2] : 0.5 * (w[n / 2 - 1] + w[n / 2])
        }
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

    /// Per feature: its flag, seen and period, floor, each statistic's counts and statistics, the
    /// log values and their running medians kept (oldest first), and each statistic's differences
    /// kept (oldest first, so that another `calibration_horizon` keeps the newest).
    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(channels))
        for c in 0..<channels {
            let k = state[c]
            w.write(UInt8(k.on ? 1 : 0))
            w.write(UInt64(k.seen))
            w.write(UInt64(k.period))
            w.write(k.floor)
            for s in Statistic.allCases {
                let j = k[s]
                for n in [j.learned, j.held, j.clear, min(j.sinceRecompute, Int(UInt32.max))] { w.write(UInt64(n)) }
                for x in [j.median, j.scale, j.reference] { w.write(x) }
            }
            let kept = min(k.seen, Self.detection)
            for j in 0..<kept { w.write(ringValue(c, ago: kept - 1 - j)) }
            for j in 0..<kept { w.write(smoothValue(c, ago: kept - 1 - j)) }
            for s in Statistic.allCases {
                let learned = k[s].learned / Self.historyStride, m = min(k[s].kept, historyCapacity)
                w.write(UInt32(m))
                for q in (learned - m)..<learned { w.write(history[historyBase(c, s) + q % historyCapacity]) }
            }
        }
    }

    /// Version 1 (the level alone) restores the level; the swing's running medians are taken again
    /// from the log values kept, and its differences learned from them as at detection.
    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 || version == 2 else { throw StateError.unsupportedVersion(version) }
        let n = Int(try r.read(UInt32.self))
        guard n == channels else { throw StateError.invalid("level: \(n) features, the stream has \(channels)") }
        typealias Restored = (channel: Channel, values: [Float], smooth: [Float]?, kept: [[Float]])
        var restored: [Restored] = []
        for _ in 0..<n {
            let on = try r.read(UInt8.self)
            var k = Channel(on: on == 1)
            var counts: [[UInt64]] = [], statistics: [[Float]] = []
            if version == 1 {
                let c = try (0..<6).map { _ in try r.read(UInt64.self) }
                guard c.allSatisfy({ $0 < 1 << 62 }) else { throw StateError.invalid("level: a feature's counts") }
                (k.seen, k.period) = (Int(c[0]), Int(c[1]))
                counts = [[c[2], c[3], c[4], c[5]]]
                k.floor = try r.readFinite(Float.self, "level floor")
                statistics = [[try r.readFinite(Float.self, "level median"), try r.readFinite(Float.self, "level scale"), try r.read(Float.self)]]
            } else {
                let (seen, period) = (try r.read(UInt64.self), try r.read(UInt64.self))
                guard seen < 1 << 62, period < 1 << 62 else { throw StateError.invalid("level: a feature's counts") }
                (k.seen, k.period) = (Int(seen), Int(period))
                k.floor = try r.readFinite(Float.self, "level floor")
                for _ in Statistic.allCases {
                    counts.append(try (0..<4).map { _ in try r.read(UInt64.self) })
                    statistics.append([try r.readFinite(Float.self, "level median"), try r.readFinite(Float.self, "level scale"), try r.read(Float.self)])
                }
            }
            guard on < 2, k.floor >= 0,
                k.period == 0 || (k.period >= Self.shortestPeriod && k.period <= Self.longestPeriod && k.seen >= Self.detection),
                on == 1 || k.seen == 0
            else { throw StateError.invalid("level: a feature's period or counts") }
            for (i, (c, x)) in zip(counts, statistics).enumerated() {
                let (median, scale, reference) = (x[0], x[1], x[2])
                guard c.allSatisfy({ $0 < 1 << 62 }), scale >= 0, abs(median) <= Self.largestLog,
                    reference.isNaN || (reference >= 0 && reference <= Self.largestLog)
                else { throw StateError.invalid("level: a feature's state") }
                let (learned, held, clear) = (Int(c[0]), Int(c[1]), Int(c[2]))
                guard learned <= k.seen, held <= k.seen, clear <= held, reference.isNaN || k.period > 0
                else { throw StateError.invalid("level: a feature's period or counts") }
                var j = Judge(learned: learned, median: median, scale: scale, reference: reference, held: held, clear: clear)
                j.sinceRecompute = Int(c[3])
                k[Statistic(rawValue: i)!] = j
            }
            let kept = min(k.seen, Self.detection)
            let values = try Self.readLogs(&r, kept, "log value")
            let smooth = version == 1 ? nil : try Self.readLogs(&r, kept, "running median")
            var differences: [[Float]] = []
            for i in 0..<counts.count {
                let s = Statistic(rawValue: i)!
                let learned = k[s].learned
                let m = Int(try r.read(UInt32.self))
                guard m <= learned / Self.historyStride, m <= Self.historyCapacity(horizon: .max),
                    m == learned / Self.historyStride || m >= 64
                else {
                    throw StateError.invalid("level: differences kept")
                }
                differences.append(try (0..<m).map { _ in
                    let d = try r.readFinite(Float.self, "level difference")
                    guard abs(d) <= Self.largestLog else { throw StateError.invalid("level: a difference") }
                    return d
                })
                // Statistics over other differences than this signal keeps (another horizon), or none
                // yet, are redone before they are used.
                if m > historyCapacity || m < min(learned / Self.historyStride, historyCapacity) || k[s].scale < 1e-6 {
                    k[s].sinceRecompute = Int.max / 2
                }
            }
            restored.append((k, values, smooth, differences))
        }
        for (c, x) in restored.enumerated() {
            let k = x.channel
            state[c] = Channel(on: k.on, seen: k.seen, period: k.period, floor: k.floor)
            let first = k.seen - x.values.count
            for (j, y) in x.values.enumerated() {
                rings[c * Self.detection + (first + j) % Self.detection] = y
            }
            if let medians = x.smooth {
                for (j, y) in medians.enumerated() { smooth[c * Self.detection + (first + j) % Self.detection] = y }
            } else {
                // Version 1: the running medians again, the first few over fewer values.
                for (j, y) in Self.causalMedians(x.values).enumerated() { smooth[c * Self.detection + (first + j) % Self.detection] = y }
            }
            state[c] = k
            for (i, kept) in x.kept.enumerated() {
                let s = Statistic(rawValue: i)!
                state[c][s].kept = min(kept.count, historyCapacity)
                let learned = k[s].learned / Self.historyStride
                for (q, d) in kept.suffix(historyCapacity).enumerated() {
                    history[historyBase(c, s) + (learned - min(kept.count, historyCapacity) + q) % historyCapacity] = d
                }
            }
            if version == 1 && k.on && k.period > 0 {
                learnKept(c, .swing, from: (0..<x.values.count).map { smoothValue(c, ago: x.values.count - 1 - $0) })
            }
            if k.period > 0 && k.seen > 2 * k.period { resum(c) }
        }
    }
}
