import LinearAlgebra
import Testing

/// Deterministic pseudo-random floats in [-1, 1).
func values(_ n: Int, seed: UInt32) -> [Float] {
    var s = seed &* 2_654_435_761 | 1
    return (0..<n).map { _ in
        s ^= s << 13; s ^= s >> 17; s ^= s << 5
        return Float(s % 20_000) / 10_000 - 1
    }
}

/// The naive triple loop the wrapper must agree with: C = alpha·op(A)·op(B) + beta·C, row-major.
func naiveGemm(
    _ ta: Transpose, _ tb: Transpose, m: Int, n: Int, k: Int, alpha: Float, a: [Float], b: [Float], beta: Float,
    c: [Float]
) -> [Float] {
    var out = c
    for i in 0..<m {
        for j in 0..<n {
            var sum: Double = 0
            for p in 0..<k {
                let av = ta == .none ? a[i * k + p] : a[p * m + i]
                let bv = tb == .none ? b[p * n + j] : b[j * k + p]
                sum += Double(av) * Double(bv)
            }
            out[i * n + j] = alpha * Float(sum) + beta * c[i * n + j]
        }
    }
    return out
}

@Suite struct BLASTests {
    @Test(arguments: [(1, 1, 1), (5, 7, 3), (13, 1, 9), (3, 17, 1), (64, 33, 31)])
    func gemmMatchesNaiveLoopOnOddShapesAndTransposes(shape: (Int, Int, Int)) {
        let (m, n, k) = shape
        for ta in [Transpose.none, .transposed] {
            for tb in [Transpose.none, .transposed] {
                let a = values(m * k, seed: 1), b = values(k * n, seed: 2), c0 = values(m * n, seed: 3)
                var c = c0
                BLAS.gemm(ta, tb, m: m, n: n, k: k, alpha: 0.7, a: a, b: b, beta: -0.3, c: &c)
                let expected = naiveGemm(ta, tb, m: m, n: n, k: k, alpha: 0.7, a: a, b: b, beta: -0.3, c: c0)
                for i in 0..<(m * n) {
                    #expect(abs(c[i] - expected[i]) <= 1e-5 * Float(k) + 1e-6, "\(ta) \(tb) \(shape) at \(i)")
                }
            }
        }
    }

    @Test func gemvMatchesNaiveLoopBothWays() {
        let rows = 7, cols = 5
        let a = values(rows * cols, seed: 4)
        for trans in [Transpose.none, .transposed] {
            let xn = trans == .none ? cols : rows, yn = trans == .none ? rows : cols
            let x = values(xn, seed: 5), y0 = values(yn, seed: 6)
            var y = y0
            BLAS.gemv(trans, rows: rows, columns: cols, alpha: 1.5, a: a, x: x, beta: 0.5, y: &y)
            for i in 0..<yn {
                var sum: Float = 0
                for j in 0..<xn { sum += (trans == .none ? a[i * cols + j] : a[j * cols + i]) * x[j] }
                #expect(abs(y[i] - (1.5 * sum + 0.5 * y0[i])) < 1e-5)
            }
        }
    }

    @Test func vectorOperationsMatchTheirDefinitions() {
        let x = values(11, seed: 7), y0 = values(11, seed: 8)
        var y = y0
        BLAS.axpby(count: 11, alpha: 0.25, x: x, beta: 0.75, y: &y)
        for i in 0..<11 { #expect(abs(y[i] - (0.25 * x[i] + 0.75 * y0[i])) < 1e-6) }
        y = y0
        BLAS.axpy(count: 11, alpha: -2, x: x, y: &y)
        for i in 0..<11 { #expect(abs(y[i] - (y0[i] - 2 * x[i])) < 1e-6) }
        var z = x
        BLAS.scale(count: 11, alpha: 3, x: &z)
        for i in 0..<11 { #expect(abs(z[i] - 3 * x[i]) < 1e-6) }
        let dot = zip(x, y0).map(*).reduce(0, +)
        #expect(abs(BLAS.dot(count: 11, x: x, y: y0) - dot) < 1e-5)
        #expect(abs(BLAS.norm(count: 11, x: x) - x.map { $0 * $0 }.reduce(0, +).squareRoot()) < 1e-5)
    }
}
