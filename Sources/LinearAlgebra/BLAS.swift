import COpenBLAS

/// Whether a matrix operand is used as stored or transposed.
///
/// Every matrix in Eddy is row-major; the wrappers below hide the cblas enums.
public enum Transpose: Sendable {
    /// `CblasNoTrans`: use the operand as stored.
    case none
    /// `CblasTrans`: use the operand's transpose.
    case transposed

    @inline(__always)
    var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
}

/// The only place in Eddy that calls cblas. All matrices are row-major and single precision.
public enum BLAS {
    /// Pins OpenBLAS to `count` threads (`openblas_set_num_threads`).
    ///
    /// Eddy owns its threads: the trainer, ingest and publisher each get one, so the default is 1.
    public static func setThreads(_ count: Int = 1) {
        openblas_set_num_threads(Int32(count))
    }

    /// OpenBLAS's build configuration string (`openblas_get_config`), for benchmark reports.
    public static var configuration: String {
        guard let c = openblas_get_config() else { return "unknown" }
        return String(cString: c)
    }

    /// `C = alpha · op(A) · op(B) + beta · C` (`cblas_sgemm`, row-major).
    ///
    /// - Parameters:
    ///   - m: rows of `op(A)` and `C`.
    ///   - n: columns of `op(B)` and `C`.
    ///   - k: columns of `op(A)`, rows of `op(B)`.
    ///   - lda, ldb, ldc: row strides as stored (default: the natural width of each operand).
    @inline(__always)
    public static func gemm(
        _ transA: Transpose, _ transB: Transpose,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int? = nil,
        b: UnsafePointer<Float>, ldb: Int? = nil,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int? = nil
    ) {
        let lda = lda ?? (transA == .none ? k : m)
        let ldb = ldb ?? (transB == .none ? n : k)
        let ldc = ldc ?? n
        cblas_sgemm(
            CblasRowMajor, transA.cblas, transB.cblas,
            Int32(m), Int32(n), Int32(k),
            alpha, a, Int32(lda), b, Int32(ldb),
            beta, c, Int32(ldc))
    }

    /// `y = alpha · op(A) · x + beta · y` for a row-major `rows × columns` matrix (`cblas_sgemv`).
    @inline(__always)
    public static func gemv(
        _ trans: Transpose, rows: Int, columns: Int,
        alpha: Float = 1, a: UnsafePointer<Float>,
        x: UnsafePointer<Float>, beta: Float = 0, y: UnsafeMutablePointer<Float>
    ) {
        cblas_sgemv(
            CblasRowMajor, trans.cblas, Int32(rows), Int32(columns),
            alpha, a, Int32(columns), x, 1, beta, y, 1)
    }

    /// `y = alpha · x + beta · y` over `count` elements (`cblas_saxpby`).
    @inline(__always)
    public static func axpby(
        count: Int, alpha: Float, x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>
    ) {
        cblas_saxpby(Int32(count), alpha, x, 1, beta, y, 1)
    }

    /// `y += alpha · x` over `count` elements (`cblas_saxpy`).
    @inline(__always)
    public static func axpy(count: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        cblas_saxpy(Int32(count), alpha, x, 1, y, 1)
    }

    /// `x *= alpha` over `count` elements (`cblas_sscal`).
    @inline(__always)
    public static func scale(count: Int, alpha: Float, x: UnsafeMutablePointer<Float>) {
        cblas_sscal(Int32(count), alpha, x, 1)
    }

    /// Euclidean norm of `count` elements (`cblas_snrm2`).
    @inline(__always)
    public static func norm(count: Int, x: UnsafePointer<Float>) -> Float {
        cblas_snrm2(Int32(count), x, 1)
    }

    /// Dot product of `count` elements (`cblas_sdot`).
    @inline(__always)
    public static func dot(count: Int, x: UnsafePointer<Float>, y: UnsafePointer<Float>) -> Float {
        cblas_sdot(Int32(count), x, 1, y, 1)
    }
}
