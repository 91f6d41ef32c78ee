#if canImport(Glibc)
import Glibc
#endif
import Learning

/// Turns raw reconstruction errors into anomaly scores in [0, 1].
///
/// Reconstruction errors of normal samples are roughly log-normal (a mean of squares, positive and
/// right-skewed), so the calibrator keeps a running Gaussian of `ln(error)`: Welford until
/// `horizon` errors, then an exponential average over about `horizon` errors, so the scale follows
/// the model as it improves. A sample's surprise is `z = (ln e − μ) / σ`.
///
/// The score is `Φ(z − max(0, the largest z of the previous holdOff samples)))`: how far this error
/// stands out from the stream's usual errors *and* from the recent peak. An anomaly scores high when it
/// starts; while it lasts its errors stand no higher than its first, so it alerts once, not for every
/// sample (an operator wants one alert per incident; NAB counts only the first detection in a window
/// and charges every further one outside it). A sharper anomaly inside the hold-off still alerts. With
/// `holdOff` 0 the score is `Φ(z)`: 0.5 is typical, 0.999 a 1-in-1000 event.
public struct Calibrator: Sendable, Equatable {
    public let horizon: Int
    public let holdOff: Int
    public private(set) var count: UInt64 = 0
    var mean: Double = 0
    var variance: Double = 1
    /// The last `holdOff` surprises and their maximum.
    var recent: RecentMaximum
    /// With `lag` > 0, the maximum of the surprises before the newest `lag` (`measurePeak`).
    public private(set) var lag = 0
    var lagged = RecentMaximum(span: 0)
    /// With a lag, the peak an incident's reading stood out against, while the incident lasts (its
    /// surprises stay above it): until then its readings are measured over the whole recent peak,
    /// their own rise included, so a change that keeps building alerts once. Not checkpointed: an
    /// incident under way when a stream is restored may alert once more.
    var incident: Float?
    /// σ never goes below this (in log units), so a model that fits perfectly does not make every
    /// tiny wobble a 6-sigma event.
    static let minimumDeviation = 0.05
    static let floor: Float = 1e-12
    /// Errors learned unclipped, so the scale a clip is measured in has something behind it.
    static let clipFrom: UInt64 = 30

    public init(horizon: Int = 5000, holdOff: Int = 0) {
        self.horizon = max(1, horizon)
        self.holdOff = max(0, holdOff)
        recent = RecentMaximum(span: self.holdOff)
    }

    /// `ln(max(error, floor))`: what the statistics are kept in. An error beyond a Float's range (a
    /// sum of squares that overflowed) or NaN counts as the largest finite error (ln ≈ 88.7): a
    /// surprise as large as can be, never an infinity that would leave `z − peak` at ∞ − ∞.
    @inline(__always)
    public static func logError(_ error: Float) -> Float {
        logf(error >= floor ? min(error, .greatestFiniteMagnitude) : (error.isNaN ? .greatestFiniteMagnitude : floor))
    }

    /// The surprise of an error given as `logError(error)`: its z-score under the running statistics
    /// (0 before there are two).
    public func surprise(logError x: Float) -> Float {
        guard count >= 2 else { return 0 }
        let deviation: Double = max(variance.squareRoot(), Self.minimumDeviation)
        return Float((Double(x) - mean) / deviation)
    }

    /// The largest surprise of the last `holdOff` samples (but the newest `lag`), or 0 if none was positive.
    public var recentPeak: Float { max((lag > 0 ? lagged.maximum : recent.maximum) ?? 0, 0) }
    /// The largest surprise of the last `holdOff` samples, the newest included, or 0.
    public var wholePeak: Float { max(recent.maximum ?? 0, 0) }

    /// The score of a surprise `z` given the recent peak: Φ(z − max(peak, 0)).
    public static func score(surprise z: Float, peak: Float) -> Float { phi(z - max(peak, 0)) }

    /// The standard normal CDF, to 1.5e-7 (Abramowitz and Stegun 7.1.26 for erfc, one expf): libm's
    /// erfcf cost 4% of the ingest thread at 2 M samples/s.
    @inline(__always)
    static func phi(_ x: Float) -> Float {
        let a = abs(x) * 0.707_106_77
        let t = 1 / (1 + 0.327_591_1 * a)
        let poly = t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))))
        let half = 0.5 * poly * expf(-a * a)  // = erfc(a) / 2 = Φ(−|x|)
        return x >= 0 ? 1 - half : half
    }

    /// Scores a sample and remembers its surprise for the hold-off; does not touch the statistics.
    public mutating func score(logError x: Float) -> (score: Float, surprise: Float) {
        let z = surprise(logError: x)
        let s = Self.score(surprise: z, peak: recentPeak)
        remember(z)
        return (s, z)
    }

    mutating func remember(_ z: Float) {
        recent.push(z)
        if lag > 0, let v = recent.value(back: lag) { lagged.push(v) }
    }

    /// Measures the recent peak over the hold-off's samples before the newest `lag` (0: all of them),
    /// rebuilt from the remembered surprises: a surprise that builds up over `lag` samples is then
    /// measured against what came before it, not against its own rise.
    public mutating func measurePeak(skippingNewest lag: Int) {
        let lag = min(max(0, lag), holdOff)
        guard lag != self.lag else { return }
        self.lag = lag
        incident = nil
        lagged = RecentMaximum(span: lag > 0 ? holdOff - lag : 0, remembering: false)
        if lag > 0 { for z in orderedRecent.dropLast(lag) { lagged.push(z) } }
    }

    /// The same statistics and remembered surprises under another horizon and hold-off (a checkpoint
    /// restored with changed settings): the newest surprises that fit are kept.
    public func reconfigured(horizon: Int, holdOff: Int) -> Calibrator {
        guard horizon != self.horizon || holdOff != self.holdOff else { return self }
        var c = Calibrator(horizon: horizon, holdOff: holdOff)
        c.count = count
        c.mean = mean
        c.variance = variance
        for z in orderedRecent.suffix(c.holdOff) { c.remember(z) }
        c.measurePeak(skippingNewest: lag)
        return c
    }

    /// Adds an error given as `logError(error)` to the statistics. With `clip` > 0, once
    /// `clipFrom` errors are in, an error counts as at most `clip` standard units above the mean
    /// (winsorised, as Huber's estimators treat an outlier): a change that builds up over many
    /// samples, none of them far above the ones before, widens the scale it is measured by far
    /// less, while a lasting change still moves the mean, `clip` σ / n at a time.
    public mutating func update(logError: Float, clip: Double = 0) {
        // A reading that is not finite would leave the statistics at ∞ and then NaN for good (every
        // later surprise NaN, which no comparison takes for an anomaly): it is not learned.
        guard logError.isFinite else { return }
        var x = Double(logError)
        count += 1
        if count == 1 {
            mean = x
            variance = 0
            return
        }
        if clip > 0 && count > Self.clipFrom { x = min(x, mean + clip * max(variance.squareRoot(), Self.minimumDeviation)) }
        let w = 1 / Double(min(count, UInt64(horizon)))
        let delta = x - mean
        mean += w * delta
        variance = (1 - w) * (variance + w * delta * delta)
    }

    /// The remembered surprises, oldest first.
    var orderedRecent: [Float] { recent.ordered }

    /// Bytes a calibrator may hold with a hold-off of `holdOff` (and a lagged maximum): each
    /// remembered surprise's 4 bytes and its share of the maximum's deque (16 bytes an entry, as many
    /// entries as a falling run of surprises, here taken as all of them); the lagged maximum keeps
    /// a deque alone (it reads its values from the remembered ones).
    public static func bytes(holdOff: Int, lagged: Bool = false) -> Int { 64 + max(0, holdOff) * (lagged ? 36 : 20) }

    /// What a checkpoint keeps: the incident under way (not saved, `incident`) is not compared.
    public static func == (a: Calibrator, b: Calibrator) -> Bool {
        a.horizon == b.horizon && a.holdOff == b.holdOff && a.lag == b.lag && a.count == b.count && a.mean == b.mean
            && a.variance == b.variance && a.orderedRecent == b.orderedRecent
    }

    public func encode(_ w: inout StateWriter) {
        w.write(UInt64(horizon)); w.write(count); w.write(mean.bitPattern); w.write(variance.bitPattern)
        w.write(UInt64(holdOff))
        let ordered = orderedRecent
        w.write(UInt32(ordered.count)); for z in ordered { w.write(z) }
    }

    public static func decode(_ r: inout StateReader) throws -> Calibrator {
        let horizon = try r.readInt()
        let count = try r.readCount()
        let mean = Double(bitPattern: try r.read(UInt64.self))
        let variance = Double(bitPattern: try r.read(UInt64.self))
        let holdOff = try r.read(UInt64.self)
        let n = Int(try r.read(UInt32.self))
        guard holdOff <= 1 << 24, n <= holdOff else { throw StateError.invalid("calibrator hold-off") }
        guard mean.isFinite, variance.isFinite, variance >= 0 else { throw StateError.invalid("calibrator statistics") }
        try r.requireRoom(n, each: 4)
        var c = Calibrator(horizon: horizon, holdOff: Int(holdOff))
        c.count = count
        c.mean = mean
        c.variance = variance
        for _ in 0..<n {
            let z = try r.read(Float.self)
            guard !z.isNaN else { throw StateError.invalid("calibrator surprise") }
            c.remember(min(max(z, -.greatestFiniteMagnitude), .greatestFiniteMagnitude))
        }
        return c
    }
}

/// The maximum of the last `span` values pushed: a monotonic deque of (push number, value),
/// decreasing from its front, O(1) amortised per value; the values themselves are kept too (in a
/// ring starting at `start`), for checkpoints, unless it is not `remembering`. Both grow with the
/// values pushed, not with `span`, so a long span costs nothing until it fills (a checkpoint's span
/// is not an allocation). The deque's array holds its live entries and a dead front of at most a
/// third of it before it would grow, so at most about 1.5 · span entries (span of them live).
public struct RecentMaximum: Sendable {
    public let span: Int
    var values: [Float] = []
    var start = 0
    /// The deque: live from `peaksHead` on (the dead front is dropped once it is half the array).
    var peaks: [(index: Int, value: Float)] = []
    var peaksHead = 0
    /// Values pushed so far.
    var pushed = 0

    /// Whether the values themselves are kept (for `value(back:)`, `ordered` and `encode`), or only
    /// what the maximum needs (the deque).
    let remembering: Bool

    public init(span: Int, remembering: Bool = true) {
        self.span = max(0, span)
        self.remembering = remembering
    }

    /// The largest of the last `span` values, nil before any (or with span 0).
    public var maximum: Float? { peaksHead < peaks.count ? peaks[peaksHead].value : nil }

    public mutating func push(_ v: Float) {
        guard span > 0 else { return }
        if remembering {
            if values.count < span {
                values.append(v)
            } else {
                values[start] = v
                start = start + 1 == span ? 0 : start + 1
            }
        }
        // Drop smaller values from the back: they can never be the maximum again.
        while peaks.count > peaksHead && peaks[peaks.count - 1].value <= v { peaks.removeLast() }
        // The oldest leaves the window: it may be at the front.
        if peaksHead < peaks.count && peaks[peaksHead].index <= pushed - span { peaksHead += 1 }
        // The dead front goes when it is half the array, or a third of it when the array is full
        // (rather than growing it): O(1) amortised either way.
        if peaksHead > 0 && (peaks.count == peaks.capacity ? 3 * peaksHead >= peaks.count : peaksHead >= 32 && 2 * peaksHead >= peaks.count) {
            peaks.removeFirst(peaksHead)
            peaksHead = 0
        }
        peaks.append((pushed, v))
        pushed += 1
    }

    /// The value pushed `k` pushes before the newest (0: the newest), if it is still remembered.
    @inline(__always)
    public func value(back k: Int) -> Float? {
        guard k >= 0 && k < values.count else { return nil }
        if values.count < span { return values[values.count - 1 - k] }
        let i = start - 1 - k
        return values[i < 0 ? i + span : i]
    }

    /// The remembered values, oldest first.
    public var ordered: [Float] { Array(values[start...] + values[..<start]) }

    public func encode(_ w: inout StateWriter) {
        let o = ordered
        w.write(UInt32(o.count)); for v in o { w.write(v) }
    }

    /// The values of `encode`, pushed again into a maximum over `span` (the newest that fit).
    public static func decode(_ r: inout StateReader, span: Int) throws -> RecentMaximum {
        let n = Int(try r.read(UInt32.self))
        guard n <= 1 << 24 else { throw StateError.invalid("recent values") }
        try r.requireRoom(n, each: 4)
        let saved = try (0..<n).map { _ in try r.read(Float.self) }
        guard !saved.contains(where: \.isNaN) else { throw StateError.invalid("recent values") }
        var m = RecentMaximum(span: span)
        for v in saved.suffix(m.span) { m.push(v) }
        return m
    }
}
