#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How MoCo makes two views of one sample: the positives of its contrastive loss.
///
/// A sample is either a vector of features with no order (`channels` 0) or `channels` series of
/// `dimension / channels` steps each, one channel after another: a whole series, several channels
/// of one, or a window of a stream. A series is augmented along time, the same way in every
/// channel (so channels stay aligned): crop-and-resize, then time warp; then each channel is
/// scaled and offset as a whole, and a span of it masked. Then, for either kind: per-feature
/// scaling, jitter, masking of single values. Each is off at 0 (or nil). The defaults are the
/// reference workload's: jitter 0.05 then masking 0.1.
public struct AugmentationConfiguration: Sendable, Equatable {
    /// Standard deviation of additive Gaussian noise, `x + σ·n`.
    public var jitter: Float = 0.05
    /// Standard deviation of a per-feature multiplicative factor, `x · (1 + s·n)`.
    public var scale: Float = 0
    /// Probability that a feature is zeroed (no rescaling of the rest).
    public var maskProbability: Float = 0.1
    /// For series: keep a random contiguous crop of at least this fraction of the length and
    /// stretch it back to full length by linear interpolation. Nil turns it off.
    public var cropMinimumFraction: Float? = nil
    /// The sample's layout: `channels` series one after another (0: features, no time axis).
    public var channels = 0
    /// For series: time warp. The length is cut into four segments whose durations are scaled by
    /// `exp(w·n)` each and put back to the same total: a smooth, monotone change of speed.
    public var timeWarp: Float = 0
    /// For series: standard deviations of each channel's factor `1 + s·n` and offset `o·n`.
    public var channelScale: Float = 0
    public var channelOffset: Float = 0
    /// For series: each channel loses one span of up to this fraction of its length (zeroed).
    public var spanMask: Float = 0

    public init(
        jitter: Float = 0.05, scale: Float = 0, maskProbability: Float = 0.1, cropMinimumFraction: Float? = nil,
        channels: Int = 0, timeWarp: Float = 0, channelScale: Float = 0, channelOffset: Float = 0, spanMask: Float = 0
    ) {
        self.jitter = jitter
        self.scale = scale
        self.maskProbability = maskProbability
        self.cropMinimumFraction = cropMinimumFraction
        self.channels = channels
        self.timeWarp = timeWarp
        self.channelScale = channelScale
        self.channelOffset = channelOffset
        self.spanMask = spanMask
    }

    /// Steps of each channel of a sample of `dimension` values, if it is a series (at least 4).
    func length(_ dimension: Int) -> Int? {
        guard channels > 0, dimension % channels == 0, dimension / channels >= 4 else { return nil }
        return dimension / channels
    }

    /// Writes one augmented view of `rows` samples of width `dimension` into `out`.
    func apply(
        _ x: UnsafePointer<Float>, rows: Int, dimension d: Int, into out: UnsafeMutablePointer<Float>,
        random: inout RandomSource
    ) {
        let length = length(d)
        var positions = [Float](repeating: 0, count: length ?? 0)
        for r in 0..<rows {
            let xr = x + r * d, yr = out + r * d
            if let length {
                alongTime(xr, into: yr, length: length, positions: &positions, random: &random)
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

    /// One series sample: where each output step reads (crop, then warp, shared by the channels),
    /// read by linear interpolation; then each channel's scale, offset and masked span.
    func alongTime(
        _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, length n: Int, positions: inout [Float],
        random: inout RandomSource
    ) {
        // Output step t reads input position start + warp(t) · step.
        var start = 0, step: Float = 1
        if let minimum = cropMinimumFraction {
            let fraction = random.uniform(min(max(minimum, 0), 1), 1)
            let kept = max(2, min(n, Int((fraction * Float(n)).rounded())))
            start = random.index(below: n - kept + 1)
            step = Float(kept - 1) / Float(n - 1)
        }
        let last = Float(n - 1)
        if timeWarp > 0 {
            // Segment k covers input [k, k+1]·last/4 and lasts durations[k] of the output.
            var durations = (0..<4).map { _ in exp(timeWarp * random.normal()) }
            let total = durations.reduce(0, +)
            for k in 0..<4 { durations[k] *= last / total }
            var k = 0, from: Float = 0
            for t in 0..<n {
                let time = Float(t)
                while k < 3 && time > from + durations[k] {
                    from += durations[k]
                    k += 1
                }
                let within = durations[k] > 0 ? min(max((time - from) / durations[k], 0), 1) : 0
                positions[t] = (Float(k) + within) * last / 4
            }
        } else {
            for t in 0..<n { positions[t] = Float(t) }
        }
        for t in 0..<n { positions[t] = min(Float(start) + positions[t] * step, last) }
        for c in 0..<channels {
            let xc = x + c * n, yc = y + c * n
            for t in 0..<n {
                let p = positions[t]
                let i = min(Int(p), n - 2)
                let w = p - Float(i)
                yc[t] = xc[i] * (1 - w) + xc[i + 1] * w
            }
            if channelScale > 0 || channelOffset > 0 {
                let a = 1 + channelScale * random.normal(), b = channelOffset * random.normal()
                for t in 0..<n { yc[t] = yc[t] * a + b }
            }
            if spanMask > 0 {
                let span = min(n - 1, Int(random.uniform(0, spanMask) * Float(n)))
                let from = random.index(below: n - span + 1)
                for t in from..<from + span { yc[t] = 0 }
            }
        }
    }
}

extension StateWriter {
    /// The augmentation of MoCo state format 2 (format 1 stopped after the crop).
    mutating func write(_ a: AugmentationConfiguration, format: UInt32 = 2) {
        write(a.jitter); write(a.scale); write(a.maskProbability)
        write(a.cropMinimumFraction != nil); write(a.cropMinimumFraction ?? 0)
        guard format >= 2 else { return }
        write(UInt32(a.channels)); write(a.timeWarp); write(a.channelScale); write(a.channelOffset); write(a.spanMask)
    }
}

extension StateReader {
    mutating func read(_: AugmentationConfiguration.Type, format: UInt32) throws -> AugmentationConfiguration {
        var a = AugmentationConfiguration()
        a.jitter = try read(Float.self); a.scale = try read(Float.self); a.maskProbability = try read(Float.self)
        let crops = try read(Bool.self)
        let crop = try read(Float.self)
        a.cropMinimumFraction = crops ? crop : nil
        if format >= 2 {
            a.channels = Int(try read(UInt32.self))
            a.timeWarp = try read(Float.self); a.channelScale = try read(Float.self)
            a.channelOffset = try read(Float.self); a.spanMask = try read(Float.self)
        } else if a.cropMinimumFraction != nil {
            // Format 1 cropped a whole row, and only a univariate window's: a series of one channel.
            a.channels = 1
        }
        // As the configuration file allows them (a damaged state must not steer writes).
        guard [a.jitter, a.scale, a.timeWarp, a.channelScale, a.channelOffset].allSatisfy({ $0 >= 0 && $0 <= 10 }),
            (0...1).contains(a.spanMask), (0...1).contains(a.maskProbability), (0...1).contains(a.cropMinimumFraction ?? 0), a.channels <= 1 << 24
        else { throw StateError.invalid("augmentation") }
        return a
    }
}
