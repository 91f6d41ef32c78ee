import Foundation
import Learning

/// Range novelty: a value further beyond the range its stream has shown than `margin` of that range
/// scores 1 (a level never seen is an anomaly however well the model reconstructs it).
///
/// Per feature of the arriving samples it keeps the smallest and largest value seen (the live range,
/// which the period check scales by, so it is kept even when the rule is off) and the reference the
/// rule compares with: the live range as it stood at the last refresh, every `refresh` samples and
/// after every sample beyond it, so a jump alerts once and a drift alerts when it has gone past the
/// margin within `refresh` samples. The rule waits until the range has seen `warmup` samples, and
/// until it has seen four times as many the reference is the range up to the sample before (a
/// young range grows fast).
///
/// A sample beyond the margin is taken into the range only when `confirm` samples in a row have been
/// beyond it (held until then, and dropped when the stream comes back): a new level is learned from
/// its second sample, while a lone outlier (a glitch, a value of 1e4 among values of 10) alerts and
/// leaves the range as it was, so later spikes still alert. The held values are not checkpointed.
///
/// A feature that keeps leaving its range (a random walk, a growing count) makes a habit of it: with
/// `habitLimit` > 0, once a feature has left its range `habitLimit` times within about `habitHorizon`
/// samples (a count per feature, decaying by 1 − 1/horizon per sample), its further excursions are no
/// longer certain and are left to the other signals. A sample is certain when one of the features
/// beyond the range has not made a habit of it, so a wandering channel does not silence the others.
///
/// With `deviations` > 0 a sample must also lie that many of its feature's standard deviations
/// beyond the range (a running mean and variance over about `scaleHorizon` normal samples): a
/// series that wanders (a random walk, shapes of varying height) sets new extremes by ordinary
/// steps, a small share of its own spread past the old ones; a spike or a new level clears them by
/// more. Such a step is taken into the range without alerting.
///
/// A feature that has never been negative (a count, a volume, a rate, a level) varies by
/// multiplication: a burst multiplies it for a step or two, an outage takes it to nothing. Its
/// bursts set the range's width and its spread, so a fall to a tenth of its lowest value can stay
/// within the margin and under `deviations` of a spread grown on bursts. With `drop` > 0, such a
/// feature is also beyond its range when it falls below its lowest value by `drop` standard
/// deviations of its log values below their mean (`ln(1 + x)`; the spread of the values under their
/// running mean, over about `scaleHorizon` normal samples, one sample in `logStride`): the low side
/// judged on the scale counts vary on.
///
/// A count's high side is judged against its own tail. Bursts (a retweet storm, a retry wave) are
/// a count's normal behaviour, and where their sizes are heavy-tailed each new record is the next
/// burst a little larger than the last: every record beyond the range was an alert. With `tail` > 0,
/// a feature whose values have all been whole numbers, never negative, keeps the tail of its log
/// values: the normal values above `tailDeviations` spreads over their mean (those the log moments
/// measure), their share and their mean excess over it, both decayed over about `scaleHorizon`
/// samples. Log values over such a threshold are about exponential when a count's bursts are
/// Pareto-sized (peaks over a threshold: Siffer et al., KDD 2017), so a value `y` is that rare:
/// `share × exp(−(y − threshold) / mean excess)`. A value above the range that its tail makes more
/// common than `tail` a sample is beyond the range, taken into it, but not certain: the other signals
/// judge it (the surge signal a rise that stays). A spike far past the tail a count's bursts have
/// shown stays certain. Until `tailMinimum` values have been over the threshold the high side is
/// judged as before. With `young`, a tail judges from its first value over the threshold
/// (`youngTailMinimum`: while that value has not faded by half), and before the tail is placed a
/// count's value above its range is judged by a provisional one: the threshold from the log moments
/// measured so far, the early values (below) over it. A range of a few hundred values has seen few of
/// a count's bursts, so its records were mostly the next burst (stop 70 in
/// docs/anomaly-experiments.md). A tail, placed or provisional, with fewer than `youngTailMinimum`
/// values over its threshold (none, or one faded) still makes a record certain. The tail is placed once the log moments are measured (`logMinimum` log samples,
/// about 512 normal ones); the highest `earlyTop` values a count showed before that are kept, and those
/// over the start join its tail then, decayed from when they came, so the tail has measured the
/// stream's first samples as well (from them alone a first record soon after was certain on
/// bursty counts: stop 68 in docs/anomaly-experiments.md). With `bands`, each count feature's tail start (its burst band: where only its
/// bursts go) is handed to the signals after this one (`Observation.countBands`; +∞ for a feature
/// that is not a count, or before the log moments are measured): the surge signal reads it.
public final class RangeSignal: AnomalySignal, @unchecked Sendable {
    public static let name = "range"
    /// 2 added the excursion habit, 3 the features' moments, 4 the habit per feature, 5 the moments
    /// in double, 6 the log values' moments, 7 the counts' tails, 8 a count's highest values before
    /// its tail is placed.
    public static let stateVersion: UInt32 = 8
    /// One normal sample in this many teaches the log values' moments (a logarithm per feature on
    /// every sample cost 70% of a 32-feature stream's scoring path; a spread over ~5,000 samples
    /// is as well measured from every 16th).
    public static let logStride: UInt64 = 16
    /// Log samples the moments must have (and the fewest their running weights cover) before a fall
    /// is judged by them: 512 normal samples, about a fresh stream's `range_warmup`, and as many
    /// after a checkpoint from before them.
    public static let logMinimum: UInt64 = 32

    /// Negative: the range is kept but never scores.
    public let margin: Float
    let refresh: UInt64
    let warmup: UInt64
    let mature: UInt64
    /// A univariate windowed stream's window (its one value is time step `window − 1` in
    /// explanations); 0: none. A multivariate window's explanations name features.
    let window: Int
    let dimension: Int
    let low: FloatBuffer, high: FloatBuffer
    let referenceLow: FloatBuffer, referenceHigh: FloatBuffer
    /// Their storage, read on every sample without touching the buffers' references.
    let lowP, highP, referenceLowP, referenceHighP: UnsafeMutablePointer<Float>
    /// How far the last sample beyond the reference lay outside it, by feature.
    public private(set) var explanation: [(index: Int, share: Float)] = []
    /// Samples the range has seen.
    public internal(set) var seen: UInt64 = 0
    /// A feature's excursions, decayed, from which its further ones are its habit (0: off and not counted).
    public let habitLimit: Double
    let habitDecay: Double
    /// Per feature: its excursions beyond the reference, decayed, as of the sample of its last one.
    var habits: [Double]
    var lastExcursions: [UInt64]
    /// Samples until the next periodic refresh, and whether any sample of the batch lies outside the
    /// reference (nearly always none does: the per-sample test is then skipped).
    var untilRefresh: UInt64 = 1
    var batchOutside = true
    /// Samples beyond the margin in a row before the range takes them in, those held so far, and
    /// their extremes.
    let confirm: Int
    var held = 0
    let heldLowBuffer: FloatBuffer, heldHighBuffer: FloatBuffer
    let heldLow: UnsafeMutablePointer<Float>, heldHigh: UnsafeMutablePointer<Float>
    /// Standard deviations beyond the range a sample must also lie (0: off), and each feature's
    /// running mean and variance over about `scaleHorizon` normal samples (`moments` of them so far),
    /// in double: a float mean at 1e6 does not move for a step under 0.06, so at a weight of 1/5000
    /// it froze for every difference under 300 and the variance took in the drift instead.
    let deviations: Float
    let scaleHorizon: UInt64
    let meanP: UnsafeMutablePointer<Double>, varianceP: UnsafeMutablePointer<Double>
    public internal(set) var moments: UInt64 = 0
    /// Standard deviations of a never-negative feature's log values below their mean that a fall
    /// below its lowest value must reach to be beyond the range (0: off), and per feature the mean
    /// of its log values and their spread below it (twice the mean square of the deviations under
    /// the mean: a symmetric distribution's variance), from `logMoments` normal samples.
    public let drop: Double
    let logMeanP: UnsafeMutablePointer<Double>, logDownP: UnsafeMutablePointer<Double>
    public internal(set) var logMoments: UInt64 = 0
    /// How rare a count's value above its range must be, per sample by its tail, to be certain (0:
    /// off); the spreads over the log values' mean where its tail begins; the values over it a tail
    /// needs before it judges.
    public let tail: Double
    public static let tailDeviations = 2.0
    /// What the tails and bands hold a feature (bytes; the early values until the tails are placed).
    public static let countBytes = 1 + 8 + 8 + 8 + 8 + 4 + earlyTop * 8 + 4
    public static let tailMinimum = 2.0
    /// The values over its threshold a tail needs before it judges, with `young`.
    public static let youngTailMinimum = 0.5
    /// Whether a young tail judges (`youngTailMinimum`), and a record before the tail is placed is
    /// judged by a provisional tail; the values a tail needs before it judges.
    public let young: Bool
    let minimum: Double
    /// How many of a count's highest values before its tail is placed are kept for it.
    public static let earlyTop = 32
    /// Per feature: whether every value has been a whole number (0 or 1); where its tail begins (a
    /// log value, +∞ until the log moments have `logMinimum` samples; the value is its band, below);
    /// its values over that, and the sum of their excesses over it (decayed by `tailDecay` a normal
    /// sample, as of normal sample `tailLast`).
    let wholeP: UnsafeMutablePointer<UInt8>
    let tailStartP: UnsafeMutablePointer<Double>
    let tailCountP: UnsafeMutablePointer<Double>, tailSumP: UnsafeMutablePointer<Double>
    let tailLastP: UnsafeMutablePointer<UInt64>
    let tailDecay: Double
    /// Whether the tails' starts are handed on, and per feature the value above which a count is in
    /// its burst band, its tail's start (+∞: not a count, or not yet placed).
    public let bands: Bool
    let bandP: UnsafeMutablePointer<Float>
    /// Whether a one-feature count's value in its burst band is handed on as one
    /// (`Observation.countBurst`; with `bands` only).
    public let explains: Bool
    /// Features still taken for counts (whole so far).
    var countFeatures: Int
    /// Until the tails are placed (then empty): per feature its `earlyTop` highest normal values
    /// (−∞: a free slot), the normal sample each came at, and the smallest kept.
    var early: [Float] = [], earlyAt: [UInt32] = [], earlyFloor: [Float] = []

    public init(
        dimension: Int, margin: Float, refresh: Int, warmup: Int, window: Int, habitLimit: Double = 0, habitHorizon: Int = 5000,
        confirm: Int = 1, deviations: Float = 0, scaleHorizon: Int = 5000, drop: Float = 0, tail: Double = 0, young: Bool = false,
        bands: Bool = false, explains: Bool = false
    ) {
        self.young = young
        minimum = young ? Self.youngTailMinimum : Self.tailMinimum
        self.bands = bands
        self.explains = bands && explains
        countFeatures = dimension
        bandP = .allocate(capacity: dimension)
        bandP.initialize(repeating: .infinity, count: dimension)
        self.dimension = dimension
        self.tail = max(0, tail)
        tailDecay = 1 - 1 / Double(max(1, scaleHorizon))
        wholeP = .allocate(capacity: dimension)
        wholeP.initialize(repeating: 1, count: dimension)
        (tailStartP, tailCountP, tailSumP) = (.allocate(capacity: dimension), .allocate(capacity: dimension), .allocate(capacity: dimension))
        tailStartP.initialize(repeating: .infinity, count: dimension)
        tailCountP.initialize(repeating: 0, count: dimension)
        tailSumP.initialize(repeating: 0, count: dimension)
        tailLastP = .allocate(capacity: dimension)
        tailLastP.initialize(repeating: 0, count: dimension)
        self.drop = Double(max(0, drop))
        (logMeanP, logDownP) = (.allocate(capacity: dimension), .allocate(capacity: dimension))
        logMeanP.initialize(repeating: 0, count: dimension)
        logDownP.initialize(repeating: 0, count: dimension)
        self.deviations = max(0, deviations)
        self.scaleHorizon = UInt64(max(1, scaleHorizon))
        (meanP, varianceP) = (.allocate(capacity: dimension), .allocate(capacity: dimension))
        meanP.initialize(repeating: 0, count: dimension)
        varianceP.initialize(repeating: 0, count: dimension)
        self.confirm = max(1, confirm)
        self.habitLimit = habitLimit
        habitDecay = 1 - 1 / Double(max(1, habitHorizon))
        habits = Array(repeating: 0, count: dimension)
        lastExcursions = Array(repeating: 0, count: dimension)
        self.margin = margin
        self.refresh = UInt64(max(1, refresh))
        self.warmup = UInt64(max(0, warmup))
        self.mature = self.warmup > UInt64.max / 4 ? UInt64.max : 4 * self.warmup
        self.window = window
        low = FloatBuffer([Float](repeating: .infinity, count: dimension))
        high = FloatBuffer([Float](repeating: -.infinity, count: dimension))
        referenceLow = FloatBuffer(low.array)
        referenceHigh = FloatBuffer(high.array)
        (lowP, highP, referenceLowP, referenceHighP) = (low.pointer, high.pointer, referenceLow.pointer, referenceHigh.pointer)
        heldLowBuffer = FloatBuffer(low.array)
        heldHighBuffer = FloatBuffer(high.array)
        (heldLow, heldHigh) = (heldLowBuffer.pointer, heldHighBuffer.pointer)
        if tail > 0 || bands { clearEarly() }
    }

    /// Whether any of `rows` samples lies outside the reference: one branch-free pass (it vectorises).
    @inline(__always)
    func outside(_ x: UnsafePointer<Float>, rows: Int) -> Bool {
        let lo = referenceLowP, hi = referenceHighP, d = dimension
        var any: UInt32 = 0
        for i in 0..<rows {
            let row = x + i * d
            for f in 0..<d { any |= (row[f] < lo[f] ? 1 : 0) | (row[f] > hi[f] ? 1 : 0) }
        }
        return any != 0
    }

    public func prepare(_ values: UnsafePointer<Float>, count: Int, dimension: Int) {
        batchOutside = outside(values, rows: count)
        untilRefresh = refresh - seen % refresh
    }

    deinit {
        meanP.deallocate()
        varianceP.deallocate()
        logMeanP.deallocate()
        logDownP.deallocate()
        wholeP.deallocate()
        for p in [tailStartP, tailCountP, tailSumP] { p.deallocate() }
        tailLastP.deallocate()
        bandP.deallocate()
    }

    /// Whether `v`, above feature `f`'s range, is as common as `tail` a sample or more by the
    /// feature's tail (never while the feature is not a count, or its tail has fewer than `minimum`
    /// values; before the tail is placed, by the provisional one with `young`, and never without).
    @inline(__always)
    func ordinary(_ v: Float, feature f: Int) -> Bool {
        guard tail > 0 && wholeP[f] == 1 && lowP[f] >= 0 else { return false }
        guard tailStartP[f].isFinite else { return young && provisionallyOrdinary(v, feature: f) }
        let decay = Foundation.pow(tailDecay, Double(moments - tailLastP[f]))
        return !rare(v, start: tailStartP[f], count: tailCountP[f] * decay, sum: tailSumP[f] * decay)
    }

    /// Whether `v` is rarer than `tail` a sample by a tail that starts at the log value `start`, with
    /// `count` values over it (decayed to now) whose excesses over it sum to `sum`: their share of the
    /// normal samples, decayed alike (1 + d + d² + … over `moments` of them), times the exponential
    /// of the excess over their mean excess. Rare also while `count` is under `minimum`, or the
    /// values have no excess.
    func rare(_ v: Float, start: Double, count: Double, sum: Double) -> Bool {
        guard count >= minimum && sum > 0 else { return true }
        let all = (1 - Foundation.pow(tailDecay, Double(moments))) / (1 - tailDecay)
        let excess = Double(InputTransform.signedLog(v)) - start
        // Written so that a NaN falls to rare (certain), as a tail that cannot judge.
        return !(count / all * Foundation.exp(-excess * count / sum) >= tail)
    }

    /// Before feature `f`'s tail is placed: whether `v` is ordinary by the tail its early values
    /// give over the threshold its log moments give so far (the highest `earlyTop` values only, so
    /// the share is at most theirs). With fewer than two log samples (a stream's first 17 normal
    /// samples, or a checkpoint from before the log moments were kept, just restored) there is no
    /// threshold: certain, as a tail without values.
    func provisionallyOrdinary(_ v: Float, feature f: Int) -> Bool {
        guard logMoments >= 2 && !early.isEmpty else { return false }
        let start = logMeanP[f] + Self.tailDeviations * logDownP[f].squareRoot()
        // The values the placement would count: over the band `e^start − 1`, as `placeTails` does.
        let (count, sum) = addingEarly(f, start: start, band: Float(Foundation.expm1(start)), to: (0, 0))
        return !rare(v, start: start, count: count, sum: sum)
    }

    /// Whether `v`, below feature `f`'s reference low `l`, falls far on the log scale: the feature
    /// has never been negative (its live low, which the reference follows), its range has a width (a
    /// constant feature's spread is none: its falls are the margin's to judge), and its log values
    /// have `logMinimum` samples of moments.
    @inline(__always)
    func falls(_ v: Float, below l: Float, feature f: Int) -> Bool {
        guard drop > 0 && v < l && lowP[f] >= 0 && referenceHighP[f] > l && logMoments >= Self.logMinimum else { return false }
        let fall = Double(InputTransform.signedLog(l) - InputTransform.signedLog(v))
        return fall > 0 && fall * fall >= drop * drop * logDownP[f]
    }

    public func read(_ o: inout Observation) -> Reading {
        let x = o.values, d = dimension
        let lo = lowP, hi = highP, refLo = referenceLowP, refHi = referenceHighP
        var reading = Reading()
        var beyond = false
        if batchOutside && outside(x, rows: 1) {
            if margin >= 0 && seen >= warmup {
                let k = deviations, variance = varianceP
                for f in 0..<d {
                    let v = x[f], l = refLo[f], h = refHi[f], slack = margin * (h - l)
                    let fell = falls(v, below: l, feature: f)
                    guard fell || (h > l && (v > h + slack || v < l - slack)) else { continue }
                    // Also far enough beyond for the feature's own spread (compared squared).
                    let excess = v > h ? v - h : l - v
                    if fell || k == 0 || moments == 0
                        || Double(excess) * Double(excess) >= Double(k * k) * variance[f]
                    {
                        beyond = true
                        if !habitual(f) && !(v > h && ordinary(v, feature: f)) { reading.certain = true }
                    }
                }
                if reading.certain { explanation = Self.excess(x, refLo, refHi, count: d, window: window) }
            }
            if beyond && confirm > 1 {
                // Held until `confirm` in a row: a lone outlier does not widen the range.
                for f in 0..<d {
                    heldLow[f] = min(heldLow[f], x[f])
                    heldHigh[f] = max(heldHigh[f], x[f])
                }
                held += 1
                if held >= confirm { takeHeld() }
            } else {
                if !beyond && held > 0 { dropHeld() }
                for f in 0..<d {
                    if x[f] < lo[f] { lo[f] = x[f] }
                    if x[f] > hi[f] { hi[f] = x[f] }
                    if x[f] < 0 { bandP[f] = .infinity }
                }
            }
        } else if held > 0 {
            dropHeld()
        }
        seen += 1
        untilRefresh -= 1
        if untilRefresh == 0 { untilRefresh = refresh }
        // The reference catches up: a new level alerts once, a drift when it has gone past the
        // margin within `refresh` samples (and again after each further margin). Also while the
        // range is young, or still empty (no warm-up: from the first sample).
        if beyond || untilRefresh == refresh || seen < mature || refHi[0] < refLo[0] {
            refLo.update(from: lo, count: d)
            refHi.update(from: hi, count: d)
        }
        o.rangeWidth = max(hi[0] - lo[0], 0)
        o.oneCount = d == 1 && wholeP[0] == 1 && lo[0] >= 0
        if bands && countFeatures > 0 {
            o.countBands = UnsafePointer(bandP)
            // A burst: a whole value over a count's band (+∞ for a feature that is not a count, or
            // once negative; a value that is not whole marks the feature only once it is learned).
            o.countBurst = explains && d == 1 && x[0] > bandP[0] && x[0] == x[0].rounded()
        }
        return reading
    }

    /// Counts an excursion of feature `f`; whether the feature had made a habit of leaving its range
    /// before it (never, without a limit).
    @inline(__always)
    func habitual(_ f: Int) -> Bool {
        guard habitLimit > 0 else { return false }
        habits[f] *= Foundation.pow(habitDecay, Double(seen - lastExcursions[f]))
        lastExcursions[f] = seen
        // Half an excursion's slack: the count has decayed a little since the last ones.
        let habitual = habits[f] >= habitLimit - 0.5
        habits[f] += 1
        return habitual
    }

    /// Feature `f`'s excursions, decayed, as of its last one.
    public func habit(_ f: Int) -> Double { habits[f] }

    func takeHeld() {
        for f in 0..<dimension {
            lowP[f] = min(lowP[f], heldLow[f])
            highP[f] = max(highP[f], heldHigh[f])
            if lowP[f] < 0 { bandP[f] = .infinity }
        }
        dropHeld()
    }

    func dropHeld() {
        held = 0
        heldLow.update(repeating: .infinity, count: dimension)
        heldHigh.update(repeating: -.infinity, count: dimension)
    }

    /// The features' moments, from normal samples only (a spike must not widen the spread the next
    /// one is measured by); the log values' moments from one in `logStride` of them, for features
    /// that have never been negative.
    public func learn(_ o: Observation, anomalous: Bool) {
        guard !anomalous else { return }
        if (drop > 0 || tail > 0 || bands) && moments % Self.logStride == 0 { learnLogs(o.values) }
        // Whether each feature is a count is followed whatever the settings: a checkpoint taken
        // without the tail and restored with it must not take a measurement for a count.
        learnTails(o.values)
        moments += 1
        let a = 1 / Double(min(moments, scaleHorizon)), x = o.values, mean = meanP, variance = varianceP
        for f in 0..<dimension {
            let delta = Double(x[f]) - mean[f]
            mean[f] += a * delta
            // One sample's variance is 0, even where its square overflows (0 · ∞ would be NaN).
            variance[f] = a == 1 ? 0 : (1 - a) * (variance[f] + a * delta * delta)
        }
    }

    /// Whether each feature is still a count, and its values over where its tail begins.
    /// Features that are not counts are passed over (a stream of measurements has none: nothing is
    /// done at all).
    func learnTails(_ x: UnsafePointer<Float>) {
        guard countFeatures > 0 else { return }
        for f in 0..<dimension where wholeP[f] == 1 {
            let v = x[f]
            if v != v.rounded() {
                (wholeP[f], bandP[f]) = (0, .infinity)
                countFeatures -= 1
                if countFeatures == 0 { (early, earlyAt, earlyFloor) = ([], [], []) }
                continue
            }
            // Over the band: over the tail's start, on a feature never negative.
            guard v > bandP[f] else {
                if !early.isEmpty && v >= 0 && v > earlyFloor[f] { keepEarly(v, feature: f) }
                continue
            }
            let decay = Foundation.pow(tailDecay, Double(moments - tailLastP[f]))
            tailCountP[f] = tailCountP[f] * decay + 1
            tailSumP[f] = tailSumP[f] * decay + max(0, Double(InputTransform.signedLog(v)) - tailStartP[f])
            tailLastP[f] = moments
        }
    }

    /// Takes `v` into feature `f`'s early values in place of the smallest.
    func keepEarly(_ v: Float, feature f: Int) {
        let base = f * Self.earlyTop
        var smallest = base
        for k in base..<base + Self.earlyTop where early[k] < early[smallest] { smallest = k }
        (early[smallest], earlyAt[smallest]) = (v, UInt32(clamping: moments))
        var floor = Float.infinity
        for k in base..<base + Self.earlyTop { floor = min(floor, early[k]) }
        earlyFloor[f] = floor
    }

    /// Empty early values (the tails not yet placed).
    func clearEarly() {
        early = Array(repeating: -.infinity, count: dimension * Self.earlyTop)
        earlyAt = Array(repeating: 0, count: dimension * Self.earlyTop)
        earlyFloor = Array(repeating: -.infinity, count: dimension)
    }

    func learnLogs(_ x: UnsafePointer<Float>) {
        logMoments += 1
        let horizon = max(Self.logMinimum, scaleHorizon / Self.logStride)
        let a = 1 / Double(min(logMoments, horizon)), mean = logMeanP, down = logDownP
        // A held value (`confirm` > 1) is not in the live low yet: a negative one is not learned.
        for f in 0..<dimension where lowP[f] >= 0 && x[f] >= 0 {
            let delta = Double(InputTransform.signedLog(x[f])) - mean[f]
            mean[f] += a * delta
            let under = min(delta, 0)
            down[f] = a == 1 ? 0 : (1 - a) * (down[f] + a * 2 * under * under)
        }
        if (tail > 0 || bands) && logMoments >= Self.logMinimum { placeTails() }
    }

    /// Where each feature's tail begins: `tailDeviations` spreads of its log values over their mean.
    /// The first time, a count's early values over it join its tail.
    func placeTails() {
        defer { if !early.isEmpty { (early, earlyAt, earlyFloor) = ([], [], []) } }
        guard countFeatures > 0 else { return }
        for f in 0..<dimension where wholeP[f] == 1 {
            tailStartP[f] = logMeanP[f] + Self.tailDeviations * logDownP[f].squareRoot()
            bandP[f] = lowP[f] >= 0 ? Float(Foundation.expm1(tailStartP[f])) : .infinity
            guard !early.isEmpty && lowP[f] >= 0 else { continue }
            let decay = Foundation.pow(tailDecay, Double(moments - tailLastP[f]))
            (tailCountP[f], tailSumP[f], tailLastP[f]) = (tailCountP[f] * decay, tailSumP[f] * decay, moments)
            (tailCountP[f], tailSumP[f]) = addingEarly(f, start: tailStartP[f], band: bandP[f], to: (tailCountP[f], tailSumP[f]))
        }
    }

    /// `tail` (a count and a sum of excesses) with feature `f`'s early values over `band` added: each
    /// value counts as one and its excess over the log value `start`, decayed from its own sample.
    func addingEarly(_ f: Int, start: Double, band: Float, to tail: (count: Double, sum: Double)) -> (count: Double, sum: Double) {
        var (count, sum) = tail
        for k in f * Self.earlyTop..<(f + 1) * Self.earlyTop where early[k] > band {
            let age = Foundation.pow(tailDecay, Double(moments - min(moments, UInt64(earlyAt[k]))))
            count += age
            sum += age * max(0, Double(InputTransform.signedLog(early[k])) - start)
        }
        return (count, sum)
    }

    /// A one-feature stream learns whatever the settings: whether it is a count (`Observation.oneCount`)
    /// is followed from its learned values.
    public var learns: Bool { deviations > 0 || drop > 0 || tail > 0 || bands || dimension == 1 }

    /// Feature `f`'s range so far.
    public func range(_ f: Int) -> (low: Float, high: Float) { (lowP[f], highP[f]) }

    /// Feature `f`'s running variance (0 before any normal sample, and while neither `deviations`
    /// nor `drop` is on).
    public func variance(_ f: Int) -> Float { Float(varianceP[f]) }

    /// For a sample beyond the range: how far each feature lies outside [low, high], as shares of
    /// the total, largest first (at most five). A univariate windowed stream's one value is the newest
    /// time step of its window, index `window − 1`.
    static func excess(
        _ sample: UnsafePointer<Float>, _ low: UnsafePointer<Float>, _ high: UnsafePointer<Float>, count: Int, window: Int
    ) -> [(index: Int, share: Float)] {
        var excess: [(index: Int, share: Float)] = []
        var total: Float = 0
        for f in 0..<count where high[f] > low[f] {
            let v = sample[f]
            let e = v > high[f] ? v - high[f] : v < low[f] ? low[f] - v : 0
            if e > 0 {
                excess.append((window > 0 && count == 1 ? window - 1 : f, e))
                total += e
            }
        }
        guard total > 0 else { return [] }
        for k in excess.indices { excess[k].share /= total }
        excess.sort { $0.share > $1.share }
        return Array(excess.prefix(5))
    }

    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(dimension))
        for f in 0..<dimension { w.write(low[f]) }
        for f in 0..<dimension { w.write(high[f]) }
        w.write(seen)
        for f in 0..<dimension { w.write(referenceLow[f]) }
        for f in 0..<dimension { w.write(referenceHigh[f]) }
        for f in 0..<dimension { w.write(habits[f].bitPattern) }
        for f in 0..<dimension { w.write(lastExcursions[f]) }
        w.write(moments)
        for f in 0..<dimension { w.write(meanP[f]) }
        for f in 0..<dimension { w.write(varianceP[f]) }
        w.write(logMoments)
        for f in 0..<dimension { w.write(logMeanP[f]) }
        for f in 0..<dimension { w.write(logDownP[f]) }
        for f in 0..<dimension { w.write(wholeP[f]) }
        for f in 0..<dimension { w.write(tailCountP[f]) }
        for f in 0..<dimension { w.write(tailSumP[f]) }
        for f in 0..<dimension { w.write(tailLastP[f]) }
        w.write(UInt32(early.isEmpty ? 0 : Self.earlyTop))
        guard !early.isEmpty else { return }
        for k in early.indices { w.write(early[k]) }
        for k in earlyAt.indices { w.write(earlyAt[k]) }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard (1...8).contains(version) else { throw StateError.unsupportedVersion(version) }
        guard Int(try r.read(UInt32.self)) == dimension else { throw StateError.invalid("range width") }
        let l = try (0..<dimension).map { _ in try r.read(Float.self) }
        let h = try (0..<dimension).map { _ in try r.read(Float.self) }
        let seen = try r.readCount()
        let rl = try (0..<dimension).map { _ in try r.read(Float.self) }
        let rh = try (0..<dimension).map { _ in try r.read(Float.self) }
        try restore(low: l, high: h, seen: seen, reference: (rl, rh))
        if version >= 4 {
            let counts = try (0..<dimension).map { _ in Double(bitPattern: try r.read(UInt64.self)) }
            let last = try (0..<dimension).map { _ in try r.read(UInt64.self) }
            guard counts.allSatisfy({ $0.isFinite && $0 >= 0 }), last.allSatisfy({ $0 <= seen }) else {
                throw StateError.invalid("range habit")
            }
            (habits, lastExcursions) = (counts, last)
        } else if version >= 2 {
            let count = Double(bitPattern: try r.read(UInt64.self))
            let last = try r.read(UInt64.self)
            guard count.isFinite, count >= 0, last <= seen else { throw StateError.invalid("range habit") }
            // One count for the stream, kept even with the limit off (the default then): with one
            // feature it is that feature's; with several it counted every feature's excursions, and
            // given to each it would silence every feature of an upgraded stream, so they start afresh.
            if dimension == 1 { (habits[0], lastExcursions[0]) = (count, last) }
        }
        if version >= 3 {
            let n = try r.readCount()
            // Floats before version 5. A float variance may be +∞ (the square of values near 1e30
            // overflowed it); a double's is finite. Never NaN or negative.
            let m = try (0..<dimension).map { _ in version >= 5 ? try r.read(Double.self) : Double(try r.read(Float.self)) }
            let v = try (0..<dimension).map { _ in version >= 5 ? try r.read(Double.self) : Double(try r.read(Float.self)) }
            guard m.allSatisfy(\.isFinite), v.allSatisfy({ $0 >= 0 }), version < 5 || v.allSatisfy(\.isFinite) else {
                throw StateError.invalid("range moments")
            }
            moments = n
            for f in 0..<dimension { (meanP[f], varianceP[f]) = (m[f], v[f]) }
        }
        // Before version 6 the log values had no moments: they start afresh.
        if version >= 6 {
            let n = try r.readCount()
            let m = try (0..<dimension).map { _ in try r.read(Double.self) }
            let d = try (0..<dimension).map { _ in try r.read(Double.self) }
            // Only states the signal can reach: one log sample per `logStride` normal ones at most, a
            // log value within ±89 (ln(1 + x) of a float), deviations under the mean within twice that.
            let largest = Double(InputTransform.signedLog(.greatestFiniteMagnitude))
            guard n <= (moments + Self.logStride - 1) / Self.logStride, m.allSatisfy({ abs($0) <= largest }),
                d.allSatisfy({ $0 >= 0 && $0 <= 2 * (2 * largest) * (2 * largest) })
            else { throw StateError.invalid("range log moments") }
            logMoments = n
            for f in 0..<dimension { (logMeanP[f], logDownP[f]) = (m[f], d[f]) }
        }
        // Before version 7 no tails were kept: a feature whose range has whole ends is taken for a
        // count (its next value that is not whole says otherwise), and its tail is measured afresh.
        if version >= 7 {
            let whole = try (0..<dimension).map { _ in try r.read(UInt8.self) }
            let count = try (0..<dimension).map { _ in try r.read(Double.self) }
            let sum = try (0..<dimension).map { _ in try r.read(Double.self) }
            let last = try (0..<dimension).map { _ in try r.read(UInt64.self) }
            guard whole.allSatisfy({ $0 <= 1 }), count.allSatisfy({ $0.isFinite && $0 >= 0 }),
                sum.allSatisfy({ $0.isFinite && $0 >= 0 }), last.allSatisfy({ $0 <= moments })
            else { throw StateError.invalid("range tails") }
            for f in 0..<dimension { (wholeP[f], tailCountP[f], tailSumP[f], tailLastP[f]) = (whole[f], count[f], sum[f], last[f]) }
            countFeatures = whole.filter { $0 == 1 }.count
        } else {
            for f in 0..<dimension { wholeP[f] = l[f] == l[f].rounded() && h[f] == h[f].rounded() ? 1 : 0 }
            countFeatures = (0..<dimension).filter { wholeP[$0] == 1 }.count
        }
        // Before version 8 the early values were not kept: a stream whose tails are not yet placed
        // keeps them from here on.
        (early, earlyAt, earlyFloor) = ([], [], [])
        if (tail > 0 || bands) && countFeatures > 0 && logMoments < Self.logMinimum { clearEarly() }
        if version >= 8 {
            let n = Int(try r.read(UInt32.self))
            guard n == 0 || (n == Self.earlyTop && logMoments < Self.logMinimum) else { throw StateError.invalid("range early values") }
            if n > 0 {
                let values = try (0..<dimension * n).map { _ in try r.read(Float.self) }
                let at = try (0..<dimension * n).map { _ in try r.read(UInt32.self) }
                guard values.allSatisfy({ $0 == -.infinity || ($0 >= 0 && $0.isFinite && $0 == $0.rounded()) }), at.allSatisfy({ UInt64($0) <= moments })
                else { throw StateError.invalid("range early values") }
                if !early.isEmpty {
                    (early, earlyAt) = (values, at)
                    for f in 0..<dimension { earlyFloor[f] = early[f * n..<(f + 1) * n].min()! }
                }
            }
        }
        if logMoments >= Self.logMinimum { placeTails() }
    }

    /// Restores a range; the reference must lie inside the live range (the batch pre-check widens the
    /// live range only for samples outside the reference) or be empty, else (and when there is none,
    /// as in older checkpoints) it is the live range.
    /// A range that is neither empty (+∞, -∞) nor finite and ordered (a NaN bound would never be
    /// crossed: the rule silenced) is invalid state.
    func restore(low l: [Float], high h: [Float], seen: UInt64, reference: ([Float], [Float])?) throws {
        for f in 0..<dimension where !(l[f].isFinite && h[f].isFinite && l[f] <= h[f]) && !(l[f] == .infinity && h[f] == -.infinity) {
            throw StateError.invalid("range of feature \(f): \(l[f]) to \(h[f])")
        }
        for f in 0..<dimension {
            low[f] = l[f]
            high[f] = h[f]
        }
        self.seen = seen
        let valid = reference.map { (rl, rh) in
            (0..<dimension).allSatisfy { f in
                (rl[f] >= l[f] && rh[f] <= h[f]) || (rl[f] == .infinity && rh[f] == -.infinity)
            }
        } ?? false
        for f in 0..<dimension {
            referenceLow[f] = valid ? reference!.0[f] : l[f]
            referenceHigh[f] = valid ? reference!.1[f] : h[f]
        }
    }
}
