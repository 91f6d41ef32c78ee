import CKernels

/// Swift faces of the fused C loops (`CKernels`): each replaces several elementwise passes with one.
///
/// The benchmark (`eddy bench kernels`) compares them with the BLAS calls or libm loops they replace.
public enum Kernels {
    /// `y[r, c] = act(y[r, c] + bias[c])` over a `rows × columns` block, one pass.
    @inline(__always)
    public static func addBiasActivate(
        _ y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, columns: Int, activation: Activation
    ) {
        eddy_bias_activate(y, bias, rows, columns, activation == .relu ? 1 : 0)
    }

    /// Turns dL/dh into dL/d(pre-activation) in place (ReLU: `d · [h > 0]`) and writes the bias
    /// gradient `db[c] = Σ_r d[r, c]`, in one pass.
    @inline(__always)
    public static func activationBackwardBiasSum(
        _ d: UnsafeMutablePointer<Float>, output h: UnsafePointer<Float>, biasGradient db: UnsafeMutablePointer<Float>,
        rows: Int, columns: Int, activation: Activation
    ) {
        eddy_activation_backward_bias(d, h, db, rows, columns, activation == .relu ? 1 : 0)
    }

    /// `exp` of every element with the kernels' polynomial (relative error below 2e-7 on [-87, 88]).
    @inline(__always)
    public static func exp(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        eddy_exp(x, y, count)
    }

    /// `exp` of one value with the same polynomial, for scalars that must match the vector path.
    @inline(__always)
    public static func exp(_ x: Float) -> Float {
        var x = x, y: Float = 0
        eddy_exp(&x, &y, 1)
        return y
    }

    /// `dst[r, :] = src[index[r], :]` for `rows` rows of `columns` floats: a minibatch gather.
    @inline(__always)
    public static func gatherRows(
        _ src: UnsafePointer<Float>, index: UnsafePointer<Int64>, rows: Int, columns: Int,
        into dst: UnsafeMutablePointer<Float>
    ) {
        eddy_gather_rows(src, index, rows, columns, dst)
    }

    /// `out[r, :] = p[r, :] / max(‖p[r, :]‖, 1e-12)`, norms into `norms` if given; one pass per row.
    @inline(__always)
    public static func normaliseRows(
        _ p: UnsafePointer<Float>, rows: Int, columns: Int, into out: UnsafeMutablePointer<Float>,
        norms: UnsafeMutablePointer<Float>?
    ) {
        eddy_normalise_rows(p, rows, columns, out, norms)
    }

    /// Index of the first NaN or infinity among `count` values, or nil if all are finite.
    @inline(__always)
    public static func firstNonFinite(_ x: UnsafePointer<Float>, count: Int) -> Int? {
        firstOutside(x, count: count, limit: .greatestFiniteMagnitude)
    }

    /// The first value that is not finite or lies beyond ±`limit`, if any.
    public static func firstOutside(_ x: UnsafePointer<Float>, count: Int, limit: Float) -> Int? {
        let i = eddy_first_outside(x, count, limit)
        return i < 0 ? nil : i
    }
}
