#if canImport(Glibc)
import Glibc
#endif
import Learning

/// How a windowed stream's period is found: detected from its first values, fixed, or not used.
public enum PeriodSetting: Sendable, Equatable, CustomStringConvertible {
    case auto
    case off
    case fixed(Int)

    /// `auto`, `off` or a period in values (at least 2), as in a configuration file.
    public init?(_ text: String) {
        switch text {
        case "auto": self = .auto
        case "off": self = .off
        default:
            guard let n = Int(text), n >= 2, n <= PeriodCheck.longestFixedPeriod else { return nil }
            self = .fixed(n)
        }
    }

    public var description: String {
        switch self {
        case .auto: "auto"
        case .off: "off"
        case .fixed(let n): String(n)
        }
    }
}

/// Compares a windowed stream's recent values with the same values one period earlier.
///
/// Many streams repeat: daily load, hourly jobs. A day that goes differently (a step missing, a
/// level moved for a few hours, a flat stretch) is an anomaly even when every window of it looks
/// like a normal window, which is all the autoencoder sees (its input spans 128 values, a day of
/// 5-minute samples is 288). The check keeps its own statistics: over the last `span` values,
///
///     ratio = (mean |x[t] − x[t − P]| + ε) / (mean |x[t] − x[t − 1]| + ε),   ε = 0.001 · range
///
/// how far the stream is from one period ago, relative to how much it moves from one value to the
/// next (so a noisy stream is not more anomalous for being noisy; ε keeps flat stretches at a
/// ratio of 1 rather than 0 or infinity), and calibrates `ln ratio` with
/// a `Calibrator` exactly as the reconstruction error is: a running Gaussian and the surprise over
/// the recent peak. The period P is the first local maximum of the autocorrelation of the stream's
/// first `detectionSamples` values among lags 21...298 that reaches 0.5, moved to the lag within 8
/// of it whose values repeat best; a stream without one, or whose period fits inside the model's
/// own input (`context` values: the autoencoder then sees whole cycles and their repetition
/// itself), has no period check unless a longer cycle built on it repeats better: with the first
/// `longDetectionSamples` values, the short period is detected again (and used if now longer than
/// `context`), and the multiple of it beyond `context` with the highest autocorrelation (moved
/// within 8 lags like the first) is the period if that correlation beats the short period's by
/// `longerCycleGain` (a week of daily cycles, when weekends differ from weekdays). 600 values hold
/// only two cycles of a period near 300: when noise is strong the first maximum can come from the
/// noise at a short lag, and the stream then goes without a check (`period = N` sets it).
public struct PeriodCheck: Sendable, Equatable {
    public static let detectionSamples = 600
    public static let longDetectionSamples = 1500
    public static let longerCycleGain = 0.05
    public static let shortestPeriod = 20
    public static let longestPeriod = 300
    public static let minimumCorrelation: Float = 0.5
    public static let longestFixedPeriod = 100_000

    /// Values averaged over (the stream's window).
    public let span: Int
    /// Values the model's input covers: detected periods up to this are left to the model.
    public let context: Int
    /// The period in values; 0 while undecided or when the stream has none.
    public private(set) var period: Int
    public private(set) var decided: Bool
    /// A cycle inside the model's input found at `detectionSamples` values, while a longer one
    /// built on it waits for `longDetectionSamples` values; 0 otherwise.
    public private(set) var shortPeriod = 0
    /// The period was configured, not detected.
    public let configured: Bool
    /// The last `capacity` values in a ring stored twice over (`ring[i] == ring[i + capacity]`), so
    /// the newest values are always contiguous, ending at `next − 1 + capacity`.
    var ring: [Float]
    let capacity: Int
    var next = 0, stored = 0
    public private(set) var calibrator: Calibrator

    /// `capacity`: values kept (default: enough to detect a period and to reach one period back).
    public init(span: Int, context: Int, setting: PeriodSetting, horizon: Int, holdOff: Int, capacity: Int? = nil) {
        self.span = max(1, span)
        self.context = max(0, context)
        switch setting {
        case .fixed(let n): (period, decided, configured) = (n, true, true)
        case .auto, .off: (period, decided, configured) = (0, false, false)
        }
        self.capacity = max(capacity ?? 0, Self.longDetectionSamples, period + self.span + 1)
        ring = [Float](repeating: 0, count: 2 * self.capacity)
        calibrator = Calibrator(horizon: horizon, holdOff: holdOff)
    }

    /// The value `ago` values before the newest (`ago < stored`).
    @inline(__always)
    func value(ago: Int) -> Float { ring[next - 1 + capacity - ago] }

    mutating func append(_ x: Float) {
        ring[next] = x
        ring[next + capacity] = x
        next = next + 1 == capacity ? 0 : next + 1
        stored = min(stored + 1, capacity)
    }

    /// The kept values, oldest first.
    var storedValues: [Float] { (0..<stored).map { value(ago: stored - 1 - $0) } }

    /// Adds the newest value (decides the period once enough values have come) and returns
    /// `ln ratio` for it, or nil while it cannot be compared with a period before.
    public mutating func push(_ x: Float, rangeWidth: Float) -> Float? {
        append(x)
        if !decided && shortPeriod == 0 && stored >= Self.detectionSamples {
            let detected = Self.detectPeriod(storedValues)
            if detected > 0 && detected <= context { shortPeriod = detected } else { decide(detected) }
        }
        if shortPeriod > 0 && stored >= Self.longDetectionSamples {
            // The short cycle again, from two and a half times as many values (a better estimate:
            // it moved from 48 to 24 in one of NAB's streams, whose week then stood out); a period
            // longer than the model's input found now is used as it is.
            let values = storedValues
            let again = Self.detectPeriod(values)
            decide(again > context ? again : Self.longerPeriod(values, short: again > 0 ? again : shortPeriod, beyond: context))
        }
        guard period > 0, stored >= period + span + 1 else { return nil }
        var away = 1e-3 * rangeWidth * Float(span) + 1e-30, moves = away
        let newest = next - 1 + capacity, period = period, span = span
        ring.withUnsafeBufferPointer { v in
            for j in 0..<span {
                let now = v[newest - j]
                away += abs(now - v[newest - j - period])
                moves += abs(now - v[newest - j - 1])
            }
        }
        return logf(away / moves)
    }

    /// A cycle the model's input covers is the model's to learn; the ring must reach back one period
    /// (it does for the detection's lags).
    private mutating func decide(_ detected: Int) {
        decided = true
        shortPeriod = 0
        period = detected <= context || detected + span + 1 > capacity ? 0 : detected
    }

    /// A check restored from a checkpoint older than the longer-cycle search (format 4) that found no
    /// usable period looks again, from the values it kept.
    private mutating func reopenDetection() {
        if decided && !configured && period == 0 { decided = false }
    }

    /// The multiple of `short` longer than `beyond` (and at most half the values) whose
    /// autocorrelation is highest, if it beats `short`'s by `longerCycleGain` and reaches
    /// `minimumCorrelation`; else 0.
    public static func longerPeriod(_ values: [Float], short: Int, beyond: Int) -> Int {
        let n = values.count
        guard short > 0, let correlation = autocorrelation(values) else { return 0 }
        var best = (lag: 0, correlation: -Double.infinity)
        for lag in stride(from: short * (beyond / short + 1), through: n / 2, by: short) {
            let c = correlation(lag)
            if c > best.correlation { best = (lag, c) }
        }
        guard best.lag > 0, best.correlation >= Double(minimumCorrelation),
            best.correlation >= correlation(short) + longerCycleGain
        else { return 0 }
        // A short period off by one would put its multiple off by several.
        return repeatsBest(values, near: best.lag, in: (beyond + 1)...(n / 2))
    }

    /// The autocorrelation of `values` at a lag (below their count), each lag's products averaged over
    /// the pairs it has; nil for constant values.
    static func autocorrelation(_ values: [Float]) -> ((Int) -> Double)? {
        let n = values.count
        guard n > 0 else { return nil }
        let mean = values.reduce(0, +) / Float(n)
        let x = values.map { Double($0 - mean) }
        let variance = x.reduce(0) { $0 + $1 * $1 } / Double(n)
        guard variance > 0 else { return nil }
        return { lag in
            var s = 0.0
            for i in 0..<(n - lag) { s += x[i] * x[i + lag] }
            return s / Double(n - lag) / variance
        }
    }

    /// The lag within 8 of `lag` (inside `bounds`) with the smallest mean |x[t] − x[t − lag]|: an
    /// autocorrelation peak is broad, the lag at which the values repeat best is not.
    static func repeatsBest(_ values: [Float], near lag: Int, in bounds: ClosedRange<Int>) -> Int {
        let n = values.count
        var best = (lag: lag, difference: Double.infinity)
        for l in max(bounds.lowerBound, lag - 8)...min(bounds.upperBound, lag + 8) where l < n {
            var d = 0.0
            for i in l..<n { d += Double(abs(values[i] - values[i - l])) }
            d /= Double(n - l)
            if d < best.difference { best = (l, d) }
        }
        return best.lag
    }

    /// The scores of a `ln ratio` from `push`: Φ(surprise over the recent peak), and the surprise
    /// itself; remembers the surprise.
    public mutating func score(logRatio: Float) -> (score: Float, surprise: Float) { calibrator.score(logError: logRatio) }

    /// Lets a `ln ratio` into the statistics (a sample that did not alert).
    public mutating func learn(logRatio: Float) { calibrator.update(logError: logRatio) }

    /// Whether the statistics have seen enough ratios to score.
    public var ready: Bool { calibrator.count >= UInt64(ReconstructionSignal.minimumCalibration) }

    /// The first local maximum of the autocorrelation among lags 21...298 that reaches
    /// `minimumCorrelation`, or 0. Each lag's products are averaged over the pairs it has (the
    /// unbiased estimate: the plain sum shrinks with the lag and moves a long period's peak early,
    /// 158 for a sine of period 160 in 600 values).
    public static func detectPeriod(_ values: [Float]) -> Int {
        guard values.count > longestPeriod, let autocorrelation = autocorrelation(values) else { return 0 }
        let lags = Array(shortestPeriod..<longestPeriod)
        let correlation = lags.map(autocorrelation)
        for k in 1..<(lags.count - 1) {
            let c = correlation[k]
            guard c > Double(minimumCorrelation) && c >= correlation[k - 1] && c >= correlation[k + 1] else { continue }
            return repeatsBest(values, near: lags[k], in: lags[1]...lags[lags.count - 2])
        }
        return 0
    }

    /// `saved` (a checkpoint's) in place of this check, fresh from the settings, while they still ask
    /// for it: a detected period when this one detects, the same period when this one's is fixed,
    /// and the same span; otherwise this check. The statistics take this one's horizon and hold-off.
    public func adopting(_ saved: PeriodCheck) -> PeriodCheck {
        guard saved.span == span, configured ? saved.period == period : !saved.configured else { return self }
        return saved.reconfigured(horizon: calibrator.horizon, holdOff: calibrator.holdOff)
    }

    /// The same check with its statistics under another horizon and hold-off.
    public func reconfigured(horizon: Int, holdOff: Int) -> PeriodCheck {
        var p = self
        p.calibrator = calibrator.reconfigured(horizon: horizon, holdOff: holdOff)
        return p
    }

    /// Format 5 of the stream's checkpoint added `shortPeriod`.
    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(span)); w.write(UInt32(context)); w.write(UInt32(period)); w.write(decided); w.write(configured)
        w.write(UInt32(shortPeriod))
        w.write(UInt32(capacity)); w.write(UInt32(stored))
        for k in 0..<stored { w.write(value(ago: stored - 1 - k)) }
        calibrator.encode(&w)
    }

    public static func decode(_ r: inout StateReader, streamFormat: UInt32) throws -> PeriodCheck {
        let span = Int(try r.read(UInt32.self))
        let context = Int(try r.read(UInt32.self))
        let period = Int(try r.read(UInt32.self))
        let decided = try r.read(UInt8.self) != 0
        let configured = try r.read(UInt8.self) != 0
        let shortPeriod = streamFormat >= 5 ? Int(try r.read(UInt32.self)) : 0
        guard shortPeriod <= longestPeriod, shortPeriod == 0 || !decided else { throw StateError.invalid("period check") }
        let capacity = Int(try r.read(UInt32.self))
        let stored = Int(try r.read(UInt32.self))
        guard span >= 1, span <= 1 << 16, !configured || period >= 2, capacity >= detectionSamples, capacity <= longestFixedPeriod + span + 1,
            capacity >= period + span + 1, stored <= capacity
        else { throw StateError.invalid("period check") }
        var p = PeriodCheck(
            span: span, context: context, setting: configured ? .fixed(period) : .auto, horizon: 1, holdOff: 0,
            capacity: capacity)
        p.period = period
        p.decided = decided
        p.shortPeriod = shortPeriod
        if streamFormat < 5 { p.reopenDetection() }
        for _ in 0..<stored { p.append(try r.readFinite(Float.self, "period check value")) }
        p.calibrator = try Calibrator.decode(&r)
        return p
    }
}
