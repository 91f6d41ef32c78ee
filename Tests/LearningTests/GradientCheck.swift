@testable import Learning

/// Central finite differences of `loss` with respect to each of `count` parameters at `p`:
/// `(L(θ + ε) − L(θ − ε)) / 2ε`, in float32 as the models compute.
func finiteDifferences(
    _ p: UnsafeMutablePointer<Float>, count: Int, epsilon: Float = 1e-3, loss: () -> Float
) -> [Float] {
    (0..<count).map { i in
        let saved = p[i]
        p[i] = saved + epsilon
        let up = loss()
        p[i] = saved - epsilon
        let down = loss()
        p[i] = saved
        return (up - down) / (2 * epsilon)
    }
}

/// The stated tolerance of every gradient check: |analytic − numeric| ≤ 1e-3 + 2e-2·|analytic|.
/// float32 central differences at ε = 1e-3 carry about 1e-4 of rounding noise on losses near 1.
func gradientMismatches(_ analytic: [Float], _ numeric: [Float]) -> [(Int, Float, Float)] {
    zip(analytic, numeric).enumerated().compactMap { i, pair in
        abs(pair.0 - pair.1) <= 1e-3 + 2e-2 * abs(pair.0) ? nil : (i, pair.0, pair.1)
    }
}

/// Row-major random values in [-scale, scale).
func randomValues(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var r = RandomSource(seed: seed)
    return (0..<n).map { _ in r.uniform(-scale, scale) }
}
