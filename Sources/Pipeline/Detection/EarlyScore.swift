#if canImport(Glibc)
import Glibc
#endif
import Learning

/// A univariate stream's score while it warms up, before the autoencoder and the signals have seen
/// enough to speak: the shape novelty of its last `window` values (their mean removed), as the
/// discord measures it, against every earlier window among its newest `capacity` values,
/// calibrated by a running Gaussian of the log-distances before it. It speaks from the stream's
/// 83rd value (by default its first row is its 128th); it never alerts (the alert strength stays 0
/// until the stream is warm), and once the stream is warm it retires and frees what it kept. A
/// stream that never warms (no training: `replay_ratio = 0`) keeps it, and its cost, for good.
///
/// It is the chain's, not a signal: its reading enters only the score of a warming sample, so what
/// a warm stream scores and alerts is the same with it or without it.
public final class EarlyScore: CheckpointSection, @unchecked Sendable {
    public static let name = "early-score"
    public static let stateVersion: UInt32 = 1
    /// The window compared (values), and the earlier windows it needs before it speaks.
    public static let window = 16
    static let minimumWindows = 2 * window
    /// Log-distances that calibrate the surprise before the first is published.
    public static let minimumCalibration = 20
    /// The newest values compared with (a longer warm-up slides over them).
    public static let capacity = 512
    /// The distance's floor, as a share of the values' variance (the discord's).
    static let floorShare = 1e-4
    static let countLimit = 1 << 62
    /// The newest window, its mean removed (a scratch row: no allocation per value).
    private var current = [Double](repeating: 0, count: window)

    /// Values read so far (it stops counting at `UInt64(1) << 62`).
    public private(set) var count = 0
    /// The newest values, oldest first (at most `2 · capacity`; trimmed to `capacity` when full).
    private(set) var values: [Double] = []
    /// The values' running mean and sum of squared deviations (for the floor).
    private(set) var moments = (mean: 0.0, m2: 0.0)
    public private(set) var calibrator = Calibrator(horizon: Int(Int32.max), holdOff: 0)
    /// True once the stream was warm: nothing is kept or read any more.
    public private(set) var retired = false

    public init() {}

    /// Bytes it holds at most (the values kept, the window compared).
    public static let bytes = 8 * (2 * capacity + window) + 256

    /// Reads the sample's value; its surprise in standard units once there are enough earlier
    /// windows and log-distances, else nil.
    public func read(_ x: Float) -> Float? {
        guard !retired else { return nil }
        let v = Double(x)
        count = min(count + 1, Self.countLimit)
        let delta = v - moments.mean
        moments.mean += delta / Double(count)
        moments.m2 += delta * (v - moments.mean)
        if values.count == 2 * Self.capacity { values.removeFirst(Self.capacity) }
        values.append(v)
        guard let d = nearest() else { return nil }
        let variance = count > 1 ? moments.m2 / Double(count - 1) : 0
        let logDistance = Float(log(max(d, max(Self.floorShare * variance, Double(Calibrator.floor)))))
        let ready = calibrator.count >= UInt64(Self.minimumCalibration)
        let surprise = calibrator.surprise(logError: logDistance)
        calibrator.update(logError: logDistance)
        return ready ? surprise : nil
    }

    /// The mean squared difference of the newest window (mean removed) to its nearest earlier window
    /// that does not overlap it, among the kept values; nil with fewer than `minimumWindows` of them.
    func nearest() -> Double? {
        let w = Self.window, n = min(values.count, Self.capacity)
        let earlier = n - 2 * w + 1  // windows ending at least w values before the newest
        guard earlier >= Self.minimumWindows else { return nil }
        return values.withUnsafeBufferPointer { all in
            current.withUnsafeMutableBufferPointer { c in
                let x = all.baseAddress! + (all.count - n)
                var sum = 0.0
                for k in 0..<w { c[k] = x[n - w + k]; sum += c[k] }
                let m = sum / Double(w)
                for k in 0..<w { c[k] -= m }
                // Each earlier window's sum slides along (a value in, a value out).
                var s = 0.0
                for k in 0..<w { s += x[k] }
                var best = Double.infinity
                for start in 0..<earlier {
                    if start > 0 { s += x[start + w - 1] - x[start - 1] }
                    let mean = s / Double(w)
                    var d = 0.0
                    for k in 0..<w {
                        let e = x[start + k] - mean - c[k]
                        d += e * e
                    }
                    best = min(best, d)
                }
                return best / Double(w)
            }
        }
    }

    /// The stream is warm: drop what was kept; later reads say nothing.
    public func retire() {
        guard !retired else { return }
        retired = true
        values = []
    }

    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(retired ? 1 : 0))
        guard !retired else { return }
        w.write(UInt64(count))
        w.write(moments.mean.bitPattern)
        w.write(moments.m2.bitPattern)
        calibrator.encode(&w)
        let kept = values.suffix(Self.capacity)
        w.write(UInt32(kept.count))
        for v in kept { w.write(v.bitPattern) }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        let isRetired = try r.read(UInt32.self)
        guard isRetired <= 1 else { throw StateError.invalid("early score") }
        guard isRetired == 0 else { return retire() }
        let count = try r.read(UInt64.self)
        let mean = Double(bitPattern: try r.read(UInt64.self))
        let m2 = Double(bitPattern: try r.read(UInt64.self))
        let calibrator = try Calibrator.decode(&r).reconfigured(horizon: self.calibrator.horizon, holdOff: 0)
        let n = Int(try r.read(UInt32.self))
        guard n <= Self.capacity, UInt64(n) <= count, count <= UInt64(Self.countLimit), mean.isFinite, m2.isFinite, m2 >= 0 else {
            throw StateError.invalid("early score")
        }
        var kept: [Double] = []
        kept.reserveCapacity(n)
        for _ in 0..<n {
            let v = Double(bitPattern: try r.read(UInt64.self))
            guard v.isFinite else { throw StateError.invalid("early score value") }
            kept.append(v)
        }
        (self.count, moments, self.calibrator, values, retired) = (Int(count), (mean, m2), calibrator, kept, false)
    }
}
