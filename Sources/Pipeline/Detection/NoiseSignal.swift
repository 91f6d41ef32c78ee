#if canImport(Glibc)
import Glibc
#endif
import Learning

/// A channel's noise level, per channel: the median of the last `window` absolute second
/// differences `|x(t) − 2x(t−1) + x(t−2)|`, in logs, calibrated per channel by a running Gaussian of
/// normal samples' levels. A second difference cancels a level and a slope, so what it measures is
/// what a smooth shape does not explain: the noise on the channel (and, on a shape sharper than
/// the sampling, its curvature). The median over the window ignores the few large differences at
/// an edge or a spike. A sensor whose readings grow noisier (a loose mount, a failing component) is
/// the anomaly it finds; its shapes, range and period, which the other signals compare, may not
/// change at all.
///
/// The reading is the most surprising channel's surprise, with no alert strength of its own: the
/// level rises over half a window as the noisy values fill it, and a strength measured over the
/// signal's recent peak would be measured against its own rise. It alerts through the policy's
/// strong evidence (`alert_evidence`), once per incident, and it ranks in the published score.
/// It does not corroborate a range excursion: the largest of several channels' noise surprises
/// passes that bar by chance, and a value's distance says nothing about the noise.
public final class NoiseSignal: AnomalySignal, @unchecked Sendable {
    public static let name = "noise"
    public static let stateVersion: UInt32 = 1
    /// Levels a channel's calibrator must have learned before the channel has an opinion.
    public static let minimumCalibration: UInt64 = 100
    /// The level's floor as a share of the channel's long-run mean absolute second difference, so
    /// a quantised channel whose differences are mostly 0 has a finite level.
    static let floorShare: Float = 0.05

    public let window: Int
    let channels: Int
    /// Per channel, `stride` floats: the last two values, the ring of the last `window` absolute
    /// differences (in arrival order from `ringStart`, the slot the next one takes), and the same
    /// differences sorted (kept sorted as each arrives: one removal and one insertion, so the median
    /// costs no sort).
    var state: [Float]
    var stride: Int { 2 + 2 * window }
    /// Values read (every channel has the same number).
    var seen = 0
    var ringStart = 0
    /// Per channel, the running mean of the differences (for the floor).
    var meanDifference: [Double]
    public internal(set) var calibrators: [Calibrator]
    /// The last reading's log level per channel (NaN: none), between `read` and `learn`.
    var levels: [Float]
    /// The channel of the last reading's surprise (−1: none).
    public private(set) var lastChannel = -1

    public init(channels: Int, window: Int, horizon: Int) {
        let c = max(1, channels)
        self.channels = c
        self.window = max(3, window)
        state = [Float](repeating: 0, count: c * (2 + 2 * self.window))
        meanDifference = [Double](repeating: 0, count: c)
        calibrators = (0..<c).map { _ in Calibrator(horizon: horizon) }
        levels = [Float](repeating: .nan, count: c)
    }

    /// Channel `c`'s last level (nil: none yet).
    public func level(channel c: Int) -> Float? { levels[c].isNaN ? nil : levels[c] }

    /// Channel `c`'s differences held, oldest first, and sorted.
    func ring(channel c: Int) -> [Float] {
        let held = min(max(seen - 2, 0), window)
        return (0..<held).reversed().map { state[c * stride + 2 + (ringStart - 1 - $0 + 2 * window) % window] }
    }
    func sorted(channel c: Int) -> [Float] {
        Array(state[(c * stride + 2 + window)..<(c * stride + 2 + window + min(max(seen - 2, 0), window))])
    }

    /// What the signal holds for a stream of `channels` channels.
    public static func bytes(channels: Int, window: Int) -> Int { channels * (8 * window + 160) }

    public var corroborates: Bool { false }

    /// Channel `c`'s last noise level over its usual one (the exponential of its log level's
    /// distance from the calibrated mean); 0 without a level.
    public func factor(channel c: Int) -> Float {
        guard c >= 0 && c < channels, let level = level(channel: c) else { return 0 }
        return expf(level - Float(calibrators[c].mean))
    }

    /// An alert's reason, in the words an operator reads (a factor of a million or more, or one
    /// that is not finite, reads as "over a million").
    public static func reason(channel: Int, factor: Float) -> String {
        let times =
            !(factor < 1e6) ? "over a million" : factor >= 9.95 ? "\(Int(factor.rounded()))" : "\((factor * 10).rounded() / 10)"
        return "feature \(channel)'s noise is \(times) times its usual"
    }

    public func read(_ o: inout Observation) -> Reading {
        var surprise = -Float.infinity
        lastChannel = -1
        let w = window, stride = stride
        let slot = ringStart
        ringStart = (ringStart + 1) % w
        seen += 1
        let n = seen - 2  // differences so far, this one included
        state.withUnsafeMutableBufferPointer { sp in
            levels.withUnsafeMutableBufferPointer { lp in
                meanDifference.withUnsafeMutableBufferPointer { mp in
                    for c in 0..<channels {
                        let x = o.values[c]
                        let v = sp.baseAddress! + c * stride
                        let (last, previous) = (v[0], v[1])
                        v[1] = last
                        v[0] = x
                        lp[c] = .nan
                        guard n >= 1 else { continue }
                        // A difference of values near the float's limits can overflow: it counts as the largest.
                        let d = min(abs(x - 2 * last + previous), .greatestFiniteMagnitude)
                        let ring = v + 2, sorted = v + 2 + w
                        if n > w {
                            Self.replace(ring[slot], with: d, in: sorted, count: w)
                        } else {
                            Self.insert(d, into: sorted, count: n - 1)
                        }
                        ring[slot] = d
                        mp[c] += (Double(d) - mp[c]) / Double(min(n, calibrators[c].horizon))
                        // A channel that has not moved yet has no noise to compare with: its first
                        // move would read as a noise infinitely larger than its usual.
                        guard n >= w, mp[c] > 0 else { continue }
                        let median = Self.median(ofSorted: sorted, count: w)
                        let level = logf(max(median + Self.floorShare * Float(mp[c]), Calibrator.floor))
                        guard level.isFinite else { continue }
                        lp[c] = level
                        guard o.scored, calibrators[c].count >= Self.minimumCalibration else { continue }
                        let z = calibrators[c].surprise(logError: level)
                        if z > surprise { (surprise, lastChannel) = (z, c) }
                    }
                }
            }
        }
        return Reading(surprise: surprise)
    }

    /// Inserts `x` into the `count` sorted values at `v` (room for one more).
    static func insert(_ x: Float, into v: UnsafeMutablePointer<Float>, count: Int) {
        var j = count
        while j > 0 && v[j - 1] > x {
            v[j] = v[j - 1]
            j -= 1
        }
        v[j] = x
    }

    /// Replaces one value equal to `old` among the `count` sorted values at `v` by `x`, keeping them
    /// sorted (the values between the two places move by one).
    static func replace(_ old: Float, with x: Float, in v: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        while i < count - 1 && v[i] != old { i += 1 }
        if x >= old {
            while i + 1 < count && v[i + 1] < x {
                v[i] = v[i + 1]
                i += 1
            }
        } else {
            while i > 0 && v[i - 1] > x {
                v[i] = v[i - 1]
                i -= 1
            }
        }
        v[i] = x
    }

    /// The median of `count` sorted values (the mean of the middle two for an even count).
    static func median(ofSorted v: UnsafePointer<Float>, count n: Int) -> Float {
        n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])
    }

    public func learn(_ o: Observation, anomalous: Bool) {
        guard !anomalous else { return }
        for c in 0..<channels where !levels[c].isNaN { calibrators[c].update(logError: levels[c]) }
    }

    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(channels)); w.write(UInt32(window)); w.write(UInt32(ringStart)); w.write(UInt64(seen))
        for c in 0..<channels {
            let v = c * stride
            w.write(state[v]); w.write(state[v + 1]); w.write(meanDifference[c].bitPattern)
            for i in 0..<window { w.write(state[v + 2 + i]) }
            calibrators[c].encode(&w)
        }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        let n = Int(try r.read(UInt32.self)), w = Int(try r.read(UInt32.self)), start = Int(try r.read(UInt32.self))
        let count = try r.read(UInt64.self)
        guard n == channels else { throw StateError.invalid("noise: \(n) channels, the stream has \(channels)") }
        guard start < w else { throw StateError.invalid("noise: ring start \(start) of \(w)") }
        // A section of another window (the setting changed): this signal starts afresh, the rest
        // of the stream is restored.
        guard w == window else { return }
        guard count < 1 << 62 else { throw StateError.invalid("noise: values read") }
        var restored: [(values: [Float], mean: Double, calibrator: Calibrator)] = []
        for _ in 0..<n {
            var values = [try r.read(Float.self), try r.read(Float.self)]
            let m = Double(bitPattern: try r.read(UInt64.self))
            for _ in 0..<w { values.append(try r.read(Float.self)) }
            let cal = try Calibrator.decode(&r).reconfigured(horizon: calibrators[0].horizon, holdOff: 0)
            guard m.isFinite, values.allSatisfy(\.isFinite) else { throw StateError.invalid("noise: a channel's values") }
            restored.append((values, m, cal))
        }
        (ringStart, seen) = (start, Int(count))
        let held = min(max(seen - 2, 0), w)
        for c in 0..<n {
            let v = c * stride
            for i in 0..<(2 + w) { state[v + i] = restored[c].values[i] }
            // The differences held are the newest `held`, in the slots before `start`.
            let sorted = (0..<held).map { state[v + 2 + (start - 1 - $0 + 2 * w) % w] }.sorted()
            for i in 0..<held { state[v + 2 + w + i] = sorted[i] }
            meanDifference[c] = restored[c].mean
            calibrators[c] = restored[c].calibrator
            levels[c] = .nan
        }
    }
}
