#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fixed-size, zero-initialised block of floats that owns its memory.
///
/// Hot loops take its raw pointer: no copy-on-write checks, no bounds checks, no allocation after
/// `init`. Models keep one per role (parameters, gradients, moments, activations).
///
/// The memory comes from `calloc`, which maps a large block as zero pages without writing it: a
/// new stream's replay buffer (65 MB at dim 2,000) costs its pages as rows arrive, not a 65 MB
/// memset on the ingest thread when the stream is made.
public final class FloatBuffer: @unchecked Sendable {
    /// Number of floats.
    public let count: Int
    /// The storage; valid for the buffer's lifetime.
    public let pointer: UnsafeMutablePointer<Float>

    public init(count: Int) {
        precondition(count >= 0, "FloatBuffer count must be non-negative")
        self.count = count
        guard let memory = calloc(max(count, 1), MemoryLayout<Float>.stride) else {
            fatalError("out of memory for \(count) floats")
        }
        pointer = memory.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    /// A buffer holding a copy of `values`.
    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    deinit { free(pointer) }

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
