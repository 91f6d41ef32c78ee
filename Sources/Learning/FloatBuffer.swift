/// A fixed-size, zero-initialised block of floats that owns its memory.
///
/// Hot loops take its raw pointer: no copy-on-write checks, no bounds checks, no allocation after
/// `init`. Models keep one per role (parameters, gradients, moments, activations).
public final class FloatBuffer: @unchecked Sendable {
    /// Number of floats.
    public let count: Int
    /// The storage; valid for the buffer's lifetime.
    public let pointer: UnsafeMutablePointer<Float>

    public init(count: Int) {
        precondition(count >= 0, "FloatBuffer count must be non-negative")
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    /// A buffer holding a copy of `values`.
    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    deinit { pointer.deallocate() }

    @inline(__always)
    public subscript(index: Int) -> Float {
        get { pointer[index] }
        set { pointer[index] = newValue }
    }

    /// Sets every element to zero.
    public func zero() { pointer.update(repeating: 0, count: count) }

    /// Copies every element of `other`, which must be the same size.
    public func copy(from other: FloatBuffer) {
        precondition(other.count == count, "FloatBuffer size mismatch")
        pointer.update(from: other.pointer, count: count)
    }

    /// The contents as an array (allocates; for tests, snapshots and serialisation).
    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}
