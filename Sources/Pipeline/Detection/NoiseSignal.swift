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
    /// Per channel: the last two values, the ring of the last `window` absolute differences, its
    /// fill, and the running mean of the differences (for the floor).
    var last: [Float], previous: [Float]
    var seen: [Int]
    var ring: [Float]
    var ringStart = 0
    var meanDifference: [Double]
    public internal(set) var calibrators: [Calibrator]
    /// The last reading's log level per channel (nil: none yet), between `read` and `learn`.
    var levels: [Float?]
    var scratch: [Float]
    /// The channel of the last reading's surprise (−1: none).
    public private(set) var lastChannel = -1

    public init(channels: Int, window: Int, horizon: Int) {
        let c = max(1, channels)
        self.channels = c
        self.window = max(3, window)
        last = [Float](repeating: 0, count: c)
        previous = [Float](repeating: 0, count: c)
        seen = [Int](repeating: 0, count: c)
        ring = [Float](repeating: 0, count: c * self.window)
        meanDifference = [Double](repeating: 0, count: c)
        calibrators = (0..<c).map { _ in Calibrator(horizon: horizon) }
        levels = [Float?](repeating: nil, count: c)
        scratch = [Float](repeating: 0, count: self.window)
    }

    /// What the signal holds for a stream of `channels` channels.
    public static func bytes(channels: Int, window: Int) -> Int { channels * (4 * window + 160) + 4 * window }

    public var corroborates: Bool { false }

    /// Channel `c`'s last noise level over its usual one (the exponential of its log level's
    /// distance from the calibrated mean); 0 without a level.
    public func factor(channel c: Int) -> Float {
        guard c >= 0 && c < channels, let level = levels[c] else { return 0 }
        return expf(level - Float(calibrators[c].mean))
    }

    /// An alert's reason, in the words an operator reads.
    public static func reason(channel: Int, factor: Float) -> String {
        "feature \(channel)'s noise is \(factor >= 10 ? "\(Int(factor.rounded()))" : "\((factor * 10).rounded() / 10)") times its usual"
    }

    public func read(_ o: inout Observation) -> Reading {
        var surprise = -Float.infinity
        lastChannel = -1
        let w = window
        let slot = ringStart
        ringStart = (ringStart + 1) % w
        for c in 0..<channels {
            let x = o.values[c]
            defer { previous[c] = last[c]; last[c] = x }
            seen[c] += 1
            levels[c] = nil
            guard seen[c] >= 3 else { continue }
            let d = abs(x - 2 * last[c] + previous[c])
            ring[c * w + slot] = d
            let n = seen[c] - 2
            meanDifference[c] += (Double(d) - meanDifference[c]) / Double(min(n, calibrators[c].horizon))
            guard n >= w else { continue }
            for i in 0..<w { scratch[i] = ring[c * w + i] }
            let median = Self.median(&scratch)
            let level = logf(max(median + Self.floorShare * Float(meanDifference[c]), Calibrator.floor))
            levels[c] = level
            guard o.scored, calibrators[c].count >= Self.minimumCalibration else { continue }
            let z = calibrators[c].surprise(logError: level)
            if z > surprise { (surprise, lastChannel) = (z, c) }
        }
        return Reading(surprise: surprise)
    }

    public func learn(_ o: Observation, anomalous: Bool) {
        guard !anomalous else { return }
        for c in 0..<channels { if let l = levels[c] { calibrators[c].update(logError: l) } }
    }

    /// The median of `v` (the mean of the two middle values for an even count); reorders `v`.
    static func median(_ v: inout [Float]) -> Float {
        v.sort()
        let n = v.count
        return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])
    }

    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(channels)); w.write(UInt32(window)); w.write(UInt32(ringStart))
        for c in 0..<channels {
            w.write(last[c]); w.write(previous[c]); w.write(UInt64(seen[c])); w.write(meanDifference[c].bitPattern)
            for i in 0..<window { w.write(ring[c * window + i]) }
            calibrators[c].encode(&w)
        }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        let n = Int(try r.read(UInt32.self)), w = Int(try r.read(UInt32.self)), start = Int(try r.read(UInt32.self))
        guard n == channels else { throw StateError.invalid("noise: \(n) channels, the stream has \(channels)") }
        guard w == window, start < w else { throw StateError.invalid("noise: window \(w), the stream's is \(window)") }
        var restored: [(Float, Float, Int, Double, [Float], Calibrator)] = []
        for _ in 0..<n {
            let l = try r.read(Float.self), p = try r.read(Float.self), s = try r.read(UInt64.self)
            let m = Double(bitPattern: try r.read(UInt64.self))
            var values = [Float](); values.reserveCapacity(w)
            for _ in 0..<w { values.append(try r.read(Float.self)) }
            let cal = try Calibrator.decode(&r).reconfigured(horizon: calibrators[0].horizon, holdOff: 0)
            guard s < 1 << 62, m.isFinite else { throw StateError.invalid("noise: a channel's counts") }
            restored.append((l, p, Int(s), m, values, cal))
        }
        ringStart = start
        for c in 0..<n {
            (last[c], previous[c], seen[c], meanDifference[c]) = (restored[c].0, restored[c].1, restored[c].2, restored[c].3)
            for i in 0..<w { ring[c * w + i] = restored[c].4[i] }
            calibrators[c] = restored[c].5
            levels[c] = nil
        }
    }
}
