import ArgumentParser
import Foundation
import Learning
import LinearAlgebra

/// The exact sgemm calls of one training step, on scratch buffers: the ceiling a step can reach.
struct GemmPlan {
    struct Call {
        let transA: Transpose, transB: Transpose
        let m: Int, n: Int, k: Int
    }
    let calls: [Call]
    let a: FloatBuffer, b: FloatBuffer, c: FloatBuffer

    init(calls: [Call]) {
        self.calls = calls
        let size = calls.map { max($0.m * $0.k, $0.k * $0.n, $0.m * $0.n) }.max() ?? 1
        a = FloatBuffer(count: size); b = FloatBuffer(count: size); c = FloatBuffer(count: size)
        for i in 0..<size { a[i] = Float(i % 7) * 0.1; b[i] = Float(i % 5) * 0.1 }
    }

    func run() {
        for call in calls {
            BLAS.gemm(
                call.transA, call.transB, m: call.m, n: call.n, k: call.k, a: a.pointer, b: b.pointer, c: c.pointer)
        }
    }

    /// Forward `x Wᵀ` per layer; backward `dyᵀ x` per layer and `dy W` for all but the first.
    static func network(_ widths: [(Int, Int)], batch: Int, forwardOnly: Bool = false) -> [Call] {
        var calls = widths.map { Call(transA: .none, transB: .transposed, m: batch, n: $0.1, k: $0.0) }
        if forwardOnly { return calls }
        for (l, (i, o)) in widths.enumerated().reversed() {
            calls.append(Call(transA: .transposed, transB: .none, m: o, n: i, k: batch))
            if l > 0 { calls.append(Call(transA: .none, transB: .none, m: batch, n: i, k: o)) }
        }
        return calls
    }

    static func step(model: BenchModel, dim: Int, batch: Int) -> GemmPlan {
        let ae = network([(dim, 64), (64, 16), (16, 64), (64, dim)], batch: batch)
        let encoder = [(dim, 128), (128, 64), (64, 32)]
        let queue = 4096, width = 32
        let moco =
            network(encoder, batch: batch, forwardOnly: true)  // key encoder
            + network(encoder, batch: batch)  // query encoder, forward and backward
            + [
                Call(transA: .none, transB: .transposed, m: batch, n: queue, k: width),  // logits
                Call(transA: .none, transB: .none, m: batch, n: width, k: queue),  // dq
            ]
        switch model {
        case .ae: return GemmPlan(calls: ae)
        case .moco: return GemmPlan(calls: moco)
        case .both: return GemmPlan(calls: ae + moco)
        }
    }
}

struct KernelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Fused loops against the BLAS calls they replace, on the workload's small shapes.")

    @OptionGroup var options: BenchOptions

    func run() throws {
        BLAS.setThreads(options.threads)
        var report = Report()
        let seconds = min(options.seconds, 0.5)
        let batch = 64

        // 1. ReLU backward + bias gradient, (64 × 64): one fused pass vs mask pass + sgemv with ones.
        let rows = batch, cols = 64
        let d = FloatBuffer((0..<(rows * cols)).map { Float($0 % 13) - 6 })
        let h = FloatBuffer((0..<(rows * cols)).map { Float($0 % 7) - 3 })
        let db = FloatBuffer(count: cols)
        let ones = FloatBuffer([Float](repeating: 1, count: rows))
        let fused = Rate.measure(samplesPerCall: 1, seconds: seconds) {
            Kernels.activationBackwardBiasSum(
                d.pointer, output: h.pointer, biasGradient: db.pointer, rows: rows, columns: cols, activation: .relu)
        }
        let blas = Rate.measure(samplesPerCall: 1, seconds: seconds) {
            for i in 0..<(rows * cols) where h[i] <= 0 { d[i] = 0 }
            BLAS.gemv(.transposed, rows: rows, columns: cols, a: d.pointer, x: ones.pointer, y: db.pointer)
        }
        report.add("relu_backward_bias_fused_per_second", fused.wall)
        report.add("relu_backward_bias_mask_then_sgemv_per_second", blas.wall)

        // 2. L2-normalising (64 × 32) projections: one fused C pass vs snrm2 + sscal per row.
        let p = FloatBuffer((0..<(batch * 32)).map { Float($0 % 11) * 0.1 + 0.05 })
        let unit = FloatBuffer(count: batch * 32)
        let norms = FloatBuffer(count: batch)
        let fusedNorms = Rate.measure(samplesPerCall: 1, seconds: seconds) {
            Kernels.normaliseRows(p.pointer, rows: batch, columns: 32, into: unit.pointer, norms: norms.pointer)
        }
        let blasNorms = Rate.measure(samplesPerCall: 1, seconds: seconds) {
            unit.pointer.update(from: p.pointer, count: batch * 32)
            for r in 0..<batch {
                norms[r] = BLAS.norm(count: 32, x: p.pointer + r * 32)
                BLAS.scale(count: 32, alpha: 1 / norms[r], x: unit.pointer + r * 32)
            }
        }
        report.add("normalise_rows_fused_per_second", fusedNorms.wall)
        report.add("normalise_rows_snrm2_sscal_per_second", blasNorms.wall)

        // 3. One sample through a 64 × 32 ReLU layer: sgemv vs sgemm with m = 1 (each + the fused bias pass).
        let w = FloatBuffer((0..<(64 * 32)).map { Float($0 % 9) * 0.01 - 0.04 })
        let b = FloatBuffer((0..<64).map { Float($0 % 3) * 0.01 })
        let x = FloatBuffer((0..<32).map { Float($0) * 0.01 })
        let y = FloatBuffer(count: 64)
        let gemv = Rate.measure(samplesPerCall: 1, seconds: seconds) {
            BLAS.gemv(.none, rows: 64, columns: 32, a: w.pointer, x: x.pointer, y: y.pointer)
            Kernels.addBiasActivate(y.pointer, bias: b.pointer, rows: 1, columns: 64, activation: .relu)
        }
        let gemm = Rate.measure(samplesPerCall: 1, seconds: seconds) {
            BLAS.gemm(.none, .transposed, m: 1, n: 64, k: 32, a: x.pointer, b: w.pointer, c: y.pointer)
            Kernels.addBiasActivate(y.pointer, bias: b.pointer, rows: 1, columns: 64, activation: .relu)
        }
        report.add("dense_b1_sgemv_per_second", gemv.wall)
        report.add("dense_b1_sgemm_per_second", gemm.wall)

        // 4. Softmax exp over a (64 × 4096) logit block: the kernels' polynomial exp vs libm's expf.
        let n = batch * 4096
        let logits = FloatBuffer((0..<n).map { -Float($0 % 200) * 0.1 })
        let out = FloatBuffer(count: n)
        let poly = Rate.measure(samplesPerCall: 1, seconds: seconds) {
            Kernels.exp(logits.pointer, into: out.pointer, count: n)
        }
        let libm = Rate.measure(samplesPerCall: 1, seconds: seconds) {
            let x = logits.pointer, y = out.pointer
            for i in 0..<n { y[i] = expf(x[i]) }
        }
        report.add("softmax_exp_polynomial_blocks_per_second", poly.wall)
        report.add("softmax_exp_libm_blocks_per_second", libm.wall)
        report.print(json: options.json)
    }
}
