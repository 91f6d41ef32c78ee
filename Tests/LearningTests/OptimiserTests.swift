import Foundation
import Testing

@testable import Learning

@Suite struct OptimiserTests {
    /// Adam against its textbook definition (PyTorch's placement of ε and weight decay), in Double.
    @Test func adamMatchesTheBiasCorrectedDefinitionOverSeveralSteps() {
        let n = 37
        let config = AdamConfiguration(learningRate: 0.01, beta1: 0.8, beta2: 0.95, epsilon: 1e-6, weightDecay: 0.1)
        let adam = Adam(parameterCount: n, configuration: config)
        let p = FloatBuffer(randomValues(n, seed: 71))
        var ref = p.array.map(Double.init), m = [Double](repeating: 0, count: n), v = m
        for t in 1...5 {
            let g = randomValues(n, seed: UInt64(71 + t))
            g.withUnsafeBufferPointer { adam.update(parameters: p.pointer, gradients: $0.baseAddress!, count: n) }
            for i in 0..<n {
                let gi = Double(g[i]) + 0.1 * ref[i]
                m[i] = 0.8 * m[i] + 0.2 * gi
                v[i] = 0.95 * v[i] + 0.05 * gi * gi
                let mHat = m[i] / (1 - pow(0.8, Double(t))), vHat = v[i] / (1 - pow(0.95, Double(t)))
                ref[i] -= 0.01 * mHat / (vHat.squareRoot() + 1e-6)
            }
        }
        for i in 0..<n { #expect(abs(Double(p[i]) - ref[i]) < 1e-5, "parameter \(i)") }
        #expect(adam.step == 5)
    }

    @Test func gradientClippingCapsTheGlobalNorm() {
        let adam = Adam(parameterCount: 4, configuration: AdamConfiguration(gradientClipNorm: 1))
        var g: [Float] = [3, 4, 0, 0]
        let before = adam.clip(&g, count: 4)
        #expect(abs(before - 5) < 1e-6)
        #expect(abs((g[0] * g[0] + g[1] * g[1]).squareRoot() - 1) < 1e-4)
        #expect(abs(g[0] / g[1] - 0.75) < 1e-6, "direction kept")
        var small: [Float] = [0.3, 0.4, 0, 0]
        adam.clip(&small, count: 4)
        #expect(small == [0.3, 0.4, 0, 0], "below the cap nothing changes")
    }

    /// From review: at a level of a million a float mean does not move for a step under 0.06, so with
    /// the horizon's weight of 1e-4 a drift of 200 over 200,000 samples left the mean where it was and
    /// the variance took in the drift (36,000 instead of 101: the feature squashed 19 times).
    @Test func theNormaliserFollowsASlowDriftFarFromZero() throws {
        let n = Normaliser(dimension: 1, horizon: 10_000)
        var r = RandomSource(seed: 5)
        var x = [Float](repeating: 0, count: 200_000)
        for i in x.indices { x[i] = Float(1e6 + 200 * Double(i) / 200_000 + Double(r.normal())) }
        x.withUnsafeBufferPointer { n.observe($0.baseAddress!, rows: x.count) }
        // An average over the horizon trails a drift of 0.001 a sample by 10, and its variance holds
        // that lag's square (numpy in double: 190.0 and 100.9; in float: 0.125 and 36,144).
        #expect(abs(Double(n.means[0]) - (1e6 + 190)) < 1, "\(n.means[0])")
        #expect(abs(n.variances[0] - 101) < 5, "\(n.variances[0])")
        // What is applied is the float copy: the newest level maps near 0.
        var out: Float = 0
        [Float(1e6 + 200)].withUnsafeBufferPointer { n.apply($0.baseAddress!, rows: 1, into: &out) }
        #expect(abs(out) < 2, "10 over a deviation of 10")
        // The copy and a checkpoint's round trip through encodeRunning keep the moments exactly.
        let copy = Normaliser(dimension: 1, horizon: 10_000)
        copy.copy(from: n)
        var w = StateWriter()
        n.encode(&w)
        n.encodeRunning(&w)
        var reader = StateReader(w.bytes)
        let restored = try Normaliser.decode(&reader, dimension: 1)
        try restored.restoreRunning(&reader)
        [Float(1e6 + 150)].withUnsafeBufferPointer { p in for m in [n, copy, restored] { m.observe(p.baseAddress!, rows: 1) } }
        for other in [copy, restored] {
            #expect(other.runningMean[0] == n.runningMean[0] && other.runningVariance[0] == n.runningVariance[0])
        }
    }

    @Test func normaliserMatchesTwoPassStatisticsThenFollowsDrift() {
        let n = Normaliser(dimension: 3, horizon: 1000)
        let x = randomValues(500 * 3, seed: 81, scale: 4).enumerated().map { $0.element + Float($0.offset % 3) * 10 }
        x.withUnsafeBufferPointer { n.observe($0.baseAddress!, rows: 500) }
        for c in 0..<3 {
            let col = stride(from: c, to: x.count, by: 3).map { Double(x[$0]) }
            let mean = col.reduce(0, +) / 500
            let variance = col.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 500
            #expect(abs(Double(n.means[c]) - mean) < 1e-3)
            #expect(abs(Double(n.variances[c]) - variance) < 1e-3 * variance)
        }
        var out = [Float](repeating: 0, count: 3)
        [Float](arrayLiteral: n.means[0], n.means[1], n.means[2]).withUnsafeBufferPointer {
            n.apply($0.baseAddress!, rows: 1, into: &out)
        }
        #expect(out.allSatisfy { abs($0) < 1e-5 }, "the mean maps to 0")
        // Past the horizon the statistics move to a new level instead of averaging it away.
        let shifted = [Float](repeating: 100, count: 3 * 5000)
        shifted.withUnsafeBufferPointer { n.observe($0.baseAddress!, rows: 5000) }
        #expect(n.means.allSatisfy { $0 > 99 })
    }

    @Test func polynomialExpMatchesLibmWithinTwoULPs() {
        let xs = stride(from: -80.0 as Float, through: 80, by: 0.0137).map { $0 }
        var ys = [Float](repeating: 0, count: xs.count)
        Kernels.exp(xs, into: &ys, count: xs.count)
        for (x, y) in zip(xs, ys) {
            let exact = Foundation.exp(Double(x))
            #expect(abs(Double(y) - exact) <= 3e-7 * exact, "exp(\(x))")
        }
        #expect(Kernels.exp(-200) == 0 || Kernels.exp(-200) < 1e-37)
    }
}
