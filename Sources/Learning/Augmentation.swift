/// How MoCo makes two views of one sample: the positives of its contrastive loss.
///
/// Applied in this order: crop-and-resize, per-feature scaling, jitter, masking. Each is off at 0
/// (or nil). The defaults are the reference workload's: jitter 0.05 then masking 0.1.
public struct AugmentationConfiguration: Sendable, Equatable {
    /// Standard deviation of additive Gaussian noise, `x + σ·n`.
    public var jitter: Float = 0.05
    /// Standard deviation of a per-feature multiplicative factor, `x · (1 + s·n)`.
    public var scale: Float = 0
    /// Probability that a feature is zeroed (no rescaling of the rest).
    public var maskProbability: Float = 0.1
    /// For windows of a time series: keep a random contiguous crop of at least this fraction of the
    /// window and stretch it back to full length by linear interpolation. Nil turns it off.
    public var cropMinimumFraction: Float? = nil

    public init(jitter: Float = 0.05, scale: Float = 0, maskProbability: Float = 0.1, cropMinimumFraction: Float? = nil) {
        self.jitter = jitter
        self.scale = scale
        self.maskProbability = maskProbability
        self.cropMinimumFraction = cropMinimumFraction
    }

    /// Writes one augmented view of `rows` samples of width `dimension` into `out`.
    func apply(
        _ x: UnsafePointer<Float>, rows: Int, dimension d: Int, into out: UnsafeMutablePointer<Float>,
        random: inout RandomSource
    ) {
        for r in 0..<rows {
            let xr = x + r * d, yr = out + r * d
            if let minimum = cropMinimumFraction, d > 2 {
                let fraction = random.uniform(min(max(minimum, 0), 1), 1)
                let length = max(2, min(d, Int((fraction * Float(d)).rounded())))
                let start = random.index(below: d - length + 1)
                let step = Float(length - 1) / Float(d - 1)
                for t in 0..<d {
                    let position = Float(start) + Float(t) * step
                    let i = min(Int(position), start + length - 2)
                    let w = position - Float(i)
                    yr[t] = xr[i] * (1 - w) + xr[i + 1] * w
                }
            } else {
                yr.update(from: xr, count: d)
            }
            if scale > 0 {
                for c in 0..<d { yr[c] *= 1 + scale * random.normal() }
            }
            if jitter > 0 {
                for c in 0..<d { yr[c] += jitter * random.normal() }
            }
            if maskProbability > 0 {
                for c in 0..<d where random.uniform() < maskProbability { yr[c] = 0 }
            }
        }
    }
}

extension StateWriter {
    mutating func write(_ a: AugmentationConfiguration) {
        write(a.jitter); write(a.scale); write(a.maskProbability)
        write(a.cropMinimumFraction != nil); write(a.cropMinimumFraction ?? 0)
    }
}

extension StateReader {
    mutating func read(_: AugmentationConfiguration.Type) throws -> AugmentationConfiguration {
        var a = AugmentationConfiguration()
        a.jitter = try read(Float.self); a.scale = try read(Float.self); a.maskProbability = try read(Float.self)
        let crops = try read(Bool.self)
        let crop = try read(Float.self)
        a.cropMinimumFraction = crops ? crop : nil
        return a
    }
}
