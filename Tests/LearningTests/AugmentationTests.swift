import Testing

@testable import Learning

/// MoCo's views of a series: along time the same way in every channel, each channel's own scale,
/// offset and masked span; a vector of features is never treated as a series.
@Suite struct AugmentationTests {
    /// One view of `x` (`rows × d`) under `a`.
    func view(_ a: AugmentationConfiguration, _ x: [Float], rows: Int, seed: UInt64) -> [Float] {
        var out = [Float](repeating: .nan, count: x.count)
        var random = RandomSource(seed: seed)
        x.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { a.apply(xb.baseAddress!, rows: rows, dimension: x.count / rows, into: $0.baseAddress!, random: &random) }
        }
        return out
    }

    func alongTimeOnly(crop: Float?, warp: Float, channels: Int) -> AugmentationConfiguration {
        AugmentationConfiguration(jitter: 0, scale: 0, maskProbability: 0, cropMinimumFraction: crop, channels: channels, timeWarp: warp)
    }

    @Test func cropAndWarpMoveEveryChannelAlike() {
        let n = 50
        let ramp = (0..<n).map(Float.init)
        // Channel 1 is 2 × channel 0 + 1, channel 2 a parabola of it: interpolation is linear, so
        // an affine relation survives exactly when both channels read the same positions.
        let x = ramp + ramp.map { 2 * $0 + 1 } + ramp.map { $0 * $0 }
        for seed in 0..<20 as Range<UInt64> {
            let y = view(alongTimeOnly(crop: 0.5, warp: 0.4, channels: 3), x, rows: 1, seed: seed)
            let positions = Array(y[0..<n])
            for t in 0..<n {
                #expect(abs(y[n + t] - (2 * positions[t] + 1)) < 1e-3)
                #expect(positions[t] >= 0 && positions[t] <= Float(n - 1))
                if t > 0 { #expect(positions[t] >= positions[t - 1] - 1e-4, "monotone") }
            }
            // At least half the length is kept.
            #expect(positions[n - 1] - positions[0] >= 0.5 * Float(n - 1) - 1.5)
        }
    }

    @Test func warpWithoutCropKeepsTheEndsAndChangesTheSpeed() {
        let n = 64
        let x = (0..<n).map(Float.init)
        var bent = 0
        for seed in 0..<10 as Range<UInt64> {
            let y = view(alongTimeOnly(crop: nil, warp: 0.5, channels: 1), x, rows: 1, seed: seed)
            #expect(abs(y[0]) < 1e-4 && abs(y[n - 1] - Float(n - 1)) < 1e-3)
            if zip(y, x).contains(where: { abs($0 - $1) > 1 }) { bent += 1 }
        }
        #expect(bent >= 8, "warp 0.5 moves positions by more than a step in most views")
    }

    @Test func eachChannelGetsItsOwnScaleOffsetAndOneMaskedSpan() {
        let n = 40
        let x = (0..<(2 * n)).map { Float($0 % n) + 10 }
        var a = AugmentationConfiguration(jitter: 0, scale: 0, maskProbability: 0, channels: 2, channelScale: 0.3, channelOffset: 0.5)
        let y = view(a, x, rows: 1, seed: 3)
        var fits: [(Float, Float)] = []
        for c in 0..<2 {
            let slope = (y[c * n + n - 1] - y[c * n]) / Float(n - 1), intercept = y[c * n] - slope * 10
            for t in 0..<n { #expect(abs(y[c * n + t] - (slope * x[c * n + t] + intercept)) < 1e-3, "affine per channel") }
            fits.append((slope, intercept))
        }
        #expect(fits[0] != fits[1] && fits[0] != (1, 0))

        a = AugmentationConfiguration(jitter: 0, scale: 0, maskProbability: 0, channels: 2, spanMask: 0.5)
        for seed in 0..<20 as Range<UInt64> {
            let y = view(a, x, rows: 1, seed: seed)
            for c in 0..<2 {
                let zeros = (0..<n).filter { y[c * n + $0] == 0 }
                #expect(zeros.count <= n / 2)
                if let first = zeros.first { #expect(zeros == Array(first..<first + zeros.count), "one span") }
                for t in 0..<n where y[c * n + t] != 0 { #expect(y[c * n + t] == x[c * n + t]) }
            }
        }
    }

    @Test func aVectorOfFeaturesIsNeverCroppedOrWarped() {
        let x = (0..<40).map { Float($0 * $0) }
        let y = view(AugmentationConfiguration(jitter: 0, scale: 0, maskProbability: 0, cropMinimumFraction: 0.3, channels: 0, timeWarp: 1), x, rows: 1, seed: 1)
        #expect(y == x)
    }
}
