import CKernels

/// Online per-feature standardisation, so raw sensor units (volts, ms, bytes/s) train alike.
///
/// Mean and variance follow Welford's recursion with weight `1/n` until `horizon` samples have
/// been seen, then a constant weight `1/horizon`: exact statistics at first, then an exponential
/// moving average that follows slow drift. Before the first sample it is the identity. The running
/// moments are kept in double (a float mean at 1e6 does not move for a step under 0.06, so at the
/// horizon's weight of 1e-4 it froze for every difference under 600 and the variance grew with the
/// drift instead); what is applied and published is their float copy.
public final class Normaliser {
    public let dimension: Int
    public let horizon: Int
    /// Samples observed so far.
    public private(set) var count: Int = 0
    /// The running moments.
    let runningMean: UnsafeMutablePointer<Double>, runningVariance: UnsafeMutablePointer<Double>
    /// Their float copies.
    let mean: FloatBuffer
    let variance: FloatBuffer
    /// `1/√(variance + ε)`, kept in step with `variance` so applying costs one multiply-add.
    let inverseScale: FloatBuffer
    /// Added to the variance before the square root.
    public static let epsilon: Float = 1e-6

    public init(dimension: Int, horizon: Int = 10_000) {
        precondition(dimension > 0 && horizon > 0, "Normaliser needs a positive dimension and horizon")
        self.dimension = dimension
        self.horizon = horizon
        runningMean = .allocate(capacity: dimension)
        runningMean.initialize(repeating: 0, count: dimension)
        runningVariance = .allocate(capacity: dimension)
        runningVariance.initialize(repeating: 1, count: dimension)
        mean = FloatBuffer(count: dimension)
        variance = FloatBuffer([Float](repeating: 1, count: dimension))
        inverseScale = FloatBuffer([Float](repeating: 1, count: dimension))
    }

    deinit {
        runningMean.deallocate()
        runningVariance.deallocate()
    }

    /// Updates the statistics with `rows` samples of `dimension` features.
    public func observe(_ x: UnsafePointer<Float>, rows: Int) {
        var n = Int64(count)
        eddy_running_moments(x, rows, dimension, runningMean, runningVariance, &n, Int64(horizon))
        count = Int(n)
        refreshScale()
    }

    /// The float copies of the running moments, and the scale from them.
    private func refreshScale() {
        let m = mean.pointer, v = variance.pointer, s = inverseScale.pointer
        for c in 0..<dimension {
            (m[c], v[c]) = (Float(runningMean[c]), Float(runningVariance[c]))
            s[c] = 1 / (v[c] + Normaliser.epsilon).squareRoot()
        }
    }

    /// Writes `(x - mean) / √(variance + ε)` for `rows` samples into `out` (which may alias `x`).
    @inline(__always)
    public func apply(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
        eddy_standardise(x, mean.pointer, inverseScale.pointer, rows, dimension, out)
    }

    /// Current per-feature means.
    public var means: [Float] { mean.array }
    /// Current per-feature variances.
    public var variances: [Float] { variance.array }

    /// Takes over another normaliser's statistics (same dimension).
    public func copy(from other: Normaliser) {
        precondition(other.dimension == dimension, "normaliser dimension mismatch")
        count = other.count
        runningMean.update(from: other.runningMean, count: dimension)
        runningVariance.update(from: other.runningVariance, count: dimension)
        refreshScale()
    }

    /// Writes the statistics (for checkpoints), as floats; `encodeRunning` adds the doubles.
    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(dimension)); w.write(UInt64(horizon)); w.write(UInt64(count))
        w.write(mean); w.write(variance)
    }

    /// The running moments in full (a section of a stream's checkpoint, after `encode`'s floats).
    public func encodeRunning(_ w: inout StateWriter) {
        w.write(UInt32(dimension))
        for c in 0..<dimension { w.write(runningMean[c]) }
        for c in 0..<dimension { w.write(runningVariance[c]) }
    }

    /// Takes back the running moments of `encodeRunning` (they round to the floats already read).
    public func restoreRunning(_ r: inout StateReader) throws {
        guard Int(try r.read(UInt32.self)) == dimension else { throw StateError.invalid("normaliser moments' width") }
        try r.requireRoom(dimension, each: 16)
        let m = try (0..<dimension).map { _ in try r.readFinite(Double.self, "normaliser moments") }
        let v = try (0..<dimension).map { _ in try r.readFinite(Double.self, "normaliser moments") }
        guard v.allSatisfy({ $0 >= 0 }) else { throw StateError.invalid("normaliser moments") }
        runningMean.update(from: m, count: dimension)
        runningVariance.update(from: v, count: dimension)
        refreshScale()
    }

    /// Reads statistics written by `encode` for a normaliser of `dimension` features; a saved one of
    /// another width, a negative or non-finite statistic, is invalid state rather than a trap.
    public static func decode(_ r: inout StateReader, dimension expected: Int) throws -> Normaliser {
        let dimension = Int(try r.read(UInt32.self))
        let horizon = try r.readInt()
        let count = try r.readInt()
        guard dimension > 0, horizon > 0, count >= 0 else { throw StateError.invalid("normaliser shape") }
        guard dimension == expected else {
            throw StateError.invalid("normaliser of \(dimension) features where \(expected) are expected")
        }
        try r.requireRoom(dimension, each: 8)  // its means and variances follow
        let n = Normaliser(dimension: dimension, horizon: horizon)
        n.count = count
        try r.read(into: n.mean)
        try r.read(into: n.variance)
        // A variance may be +∞: values near max_abs_value's largest (1e30) overflowed its float
        // square, and the feature's scale is then 0, as it was in the stream that wrote it.
        for c in 0..<dimension where !n.mean.pointer[c].isFinite || !(n.variance.pointer[c] >= 0) {
            throw StateError.invalid("normaliser statistics of feature \(c)")
        }
        for c in 0..<dimension { (n.runningMean[c], n.runningVariance[c]) = (Double(n.mean[c]), Double(n.variance[c])) }
        n.refreshScale()
        return n
    }
}
