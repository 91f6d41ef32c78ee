#if canImport(Glibc)
import Glibc
#endif
import Learning

/// Turns raw reconstruction errors into anomaly scores in [0, 1].
///
/// Reconstruction errors of normal samples are roughly log-normal (a mean of squares, positive and
/// right-skewed), so the calibrator keeps a running Gaussian of `ln(error)`: Welford until
/// `horizon` errors, then an exponential average over about `horizon` errors, so the scale follows
/// the model as it improves. A sample's score is `Φ((ln e − μ) / σ)`, the probability that a normal
/// sample's error is below this one's: 0.5 is typical, 0.999 is a 1-in-1000 event.
public struct Calibrator: Sendable, Equatable {
    public let horizon: Int
    public private(set) var count: UInt64 = 0
    var mean: Double = 0
    var variance: Double = 1
    /// σ never goes below this (in log units), so a model that fits perfectly does not make every
    /// tiny wobble a 6-sigma event.
    static let minimumDeviation = 0.05
    static let floor: Float = 1e-12

    public init(horizon: Int = 2000) { self.horizon = max(1, horizon) }

    /// The calibrated score of `error` under the current statistics.
    public func score(_ error: Float) -> Float { score(logError: Self.logError(error)) }

    /// `ln(max(error, floor))`: what the statistics are kept in.
    @inline(__always)
    public static func logError(_ error: Float) -> Float { logf(max(error, floor)) }

    /// The score of an error given as `logError(error)`.
    public func score(logError x: Float) -> Float {
        guard count >= 2 else { return 0.5 }
        let deviation: Double = max(variance.squareRoot(), Self.minimumDeviation)
        let z: Float = (x - Float(mean)) / Float(deviation)
        let tail: Float = erfcf(-z * 0.707_106_77)
        return 0.5 * tail
    }

    /// Adds `error` to the statistics.
    public mutating func update(_ error: Float) { update(logError: Self.logError(error)) }

    /// Adds an error given as `logError(error)`.
    public mutating func update(logError: Float) {
        let x = Double(logError)
        count += 1
        if count == 1 {
            mean = x
            variance = 0
            return
        }
        let w = 1 / Double(min(count, UInt64(horizon)))
        let delta = x - mean
        mean += w * delta
        variance = (1 - w) * (variance + w * delta * delta)
    }

    public func encode(_ w: inout StateWriter) {
        w.write(UInt64(horizon)); w.write(count); w.write(mean.bitPattern); w.write(variance.bitPattern)
    }

    public static func decode(_ r: inout StateReader) throws -> Calibrator {
        var c = Calibrator(horizon: Int(try r.read(UInt64.self)))
        c.count = try r.read(UInt64.self)
        c.mean = Double(bitPattern: try r.read(UInt64.self))
        c.variance = Double(bitPattern: try r.read(UInt64.self))
        return c
    }
}
