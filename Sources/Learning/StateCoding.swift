/// Why model state bytes could not be decoded.
public enum StateError: Error, Equatable, CustomStringConvertible {
    /// The bytes end before the value being read.
    case truncated
    /// The leading magic does not name the expected model kind.
    case wrongKind(expected: String)
    /// A format version this build does not read.
    case unsupportedVersion(UInt32)
    /// The trailing CRC-32 does not match the content.
    case checksumMismatch
    /// A decoded value is out of range (named).
    case invalid(String)

    public var description: String {
        switch self {
        case .truncated: "state bytes are truncated"
        case .wrongKind(let expected): "state bytes are not a \(expected)"
        case .unsupportedVersion(let v): "state format version \(v) is not supported"
        case .checksumMismatch: "state checksum does not match"
        case .invalid(let what): "state has an invalid \(what)"
        }
    }
}

/// Little-endian writer for model and daemon state.
public struct StateWriter {
    public var bytes: [UInt8] = []
    public init() {}

    public mutating func write<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
    public mutating func write(_ value: Float) { write(value.bitPattern) }
    public mutating func write(_ value: Double) { write(value.bitPattern) }
    public mutating func write(_ value: Bool) { write(UInt8(value ? 1 : 0)) }
    /// Count, then the floats' bytes (IEEE 754, little-endian).
    public mutating func write(_ buffer: FloatBuffer) {
        write(UInt64(buffer.count))
        write(floats: buffer.pointer, count: buffer.count)
    }
    /// The floats' bytes alone (no count).
    public mutating func write(floats: UnsafePointer<Float>, count: Int) {
        #if _endian(little)
        // The host's floats are the format's: one copy (a value at a time, a checkpoint spent
        // 0.18 s on one replay buffer of dim 2,000, with the stream's lock held).
        bytes.append(contentsOf: UnsafeRawBufferPointer(start: floats, count: 4 * count))
        #else
        for i in 0..<count { write(floats[i].bitPattern) }
        #endif
    }
    public mutating func write(_ values: [Int64]) {
        write(UInt64(values.count))
        for v in values { write(v) }
    }
    public mutating func write(_ random: RandomSource) {
        write(random.s0); write(random.s1); write(random.s2); write(random.s3)
        write(random.spareNormal != nil)
        write(random.spareNormal ?? 0)
    }
    public mutating func write(_ string: String) {
        let utf8 = Array(string.utf8)
        write(UInt32(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    /// Makes room for `count` more bytes and touches its pages, so the writes that follow (under
    /// a lock) copy into memory that is there, without a reallocation or a page fault.
    public mutating func prepare(room count: Int) {
        let end = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: count))
        bytes.removeSubrange(end...)  // an Array keeps its capacity
    }

    /// Count, then the bytes: a nested state (a model inside a checkpoint).
    public mutating func write(blob: [UInt8]) {
        write(UInt64(blob.count))
        bytes.append(contentsOf: blob)
    }

    /// Appends the CRC-32 of everything written so far.
    public mutating func seal() { write(CRC32.checksum(bytes)) }
}

/// Little-endian reader for model and daemon state; every read checks the remaining length.
public struct StateReader {
    public let bytes: [UInt8]
    public var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Checks and strips the trailing CRC-32 written by `StateWriter.seal`.
    public init(sealed bytes: [UInt8]) throws {
        guard bytes.count >= 4 else { throw StateError.truncated }
        let body = Array(bytes[..<(bytes.count - 4)])
        var tail = StateReader(Array(bytes[(bytes.count - 4)...]))
        guard try tail.read(UInt32.self) == CRC32.checksum(body) else { throw StateError.checksumMismatch }
        self.init(body)
    }

    public mutating func read<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        guard offset + size <= bytes.count else { throw StateError.truncated }
        var value: T = 0
        for i in 0..<size { value |= T(truncatingIfNeeded: bytes[offset + i]) << (8 * i) }
        offset += size
        return value
    }
    public mutating func read(_: Float.Type) throws -> Float { Float(bitPattern: try read(UInt32.self)) }
    public mutating func read(_: Double.Type) throws -> Double { Double(bitPattern: try read(UInt64.self)) }

    /// A count or step written as a UInt64, refused beyond `countLimit`: converting a larger one to
    /// an Int, or adding to it, could trap.
    public mutating func readInt() throws -> Int { Int(try readCount()) }

    /// A counter written as a UInt64 (samples accepted, steps, versions), refused beyond
    /// `countLimit` (2^62, more than any stream reaches): a restored counter is added to, and one
    /// near `UInt64.max` would trap at its next increment.
    public mutating func readCount() throws -> UInt64 {
        let n = try read(UInt64.self)
        guard n <= Self.countLimit else { throw StateError.invalid("count \(n) beyond any a stream reaches") }
        return n
    }

    /// The largest count `readCount` and `readInt` accept.
    public static let countLimit: UInt64 = 1 << 62

    /// Bytes not read yet.
    public var remaining: Int { bytes.count - offset }

    /// Throws unless `count` items of at least `bytes` bytes each can still follow: a size read from
    /// the input is checked against the input before anything of that size is allocated.
    public func requireRoom(_ count: Int, each bytes: Int) throws {
        guard count >= 0, count <= remaining / max(bytes, 1) else { throw StateError.truncated }
    }
    public mutating func read(_: Bool.Type) throws -> Bool { try read(UInt8.self) != 0 }

    /// Reads a float array written by `write(_: FloatBuffer)` into `buffer`, which must match its size.
    public mutating func read(into buffer: FloatBuffer) throws {
        let n = try read(UInt64.self)
        guard n == UInt64(buffer.count) else { throw StateError.invalid("tensor size") }
        guard offset + 4 * buffer.count <= bytes.count else { throw StateError.truncated }
        #if _endian(little)
        // The format's little-endian floats are the host's: one copy (a value at a time cost a
        // revived stream of dim 2,000 a large share of its 0.6 s on the ingest thread).
        bytes.withUnsafeBytes { raw in
            UnsafeMutableRawPointer(buffer.pointer).copyMemory(from: raw.baseAddress! + offset, byteCount: 4 * buffer.count)
        }
        offset += 4 * buffer.count
        #else
        for i in 0..<buffer.count { buffer[i] = try read(Float.self) }
        #endif
    }
    public mutating func read(_: [Int64].Type, expected: Int) throws -> [Int64] {
        let n = try read(UInt64.self)
        guard n == UInt64(expected) else { throw StateError.invalid("id list size") }
        return try (0..<expected).map { _ in try read(Int64.self) }
    }
    /// A value a model or signal computes with: NaN or an infinity (a corrupt or crafted state) is
    /// refused, named `what`, rather than carried into every later score.
    public mutating func readFinite(_: Float.Type, _ what: String) throws -> Float {
        let v = try read(Float.self)
        guard v.isFinite else { throw StateError.invalid(what) }
        return v
    }
    public mutating func readFinite(_: Double.Type, _ what: String) throws -> Double {
        let v = try read(Double.self)
        guard v.isFinite else { throw StateError.invalid(what) }
        return v
    }
    /// A value that may be an infinity (an empty range's bound) but not NaN.
    public mutating func readNumber(_: Float.Type, _ what: String) throws -> Float {
        let v = try read(Float.self)
        guard !v.isNaN else { throw StateError.invalid(what) }
        return v
    }
    public mutating func readNumber(_: Double.Type, _ what: String) throws -> Double {
        let v = try read(Double.self)
        guard !v.isNaN else { throw StateError.invalid(what) }
        return v
    }

    public mutating func read(_: RandomSource.Type) throws -> RandomSource {
        var r = RandomSource(seed: 0)
        r.s0 = try read(UInt64.self); r.s1 = try read(UInt64.self)
        r.s2 = try read(UInt64.self); r.s3 = try read(UInt64.self)
        // xoshiro256** from all zeros gives 0 for ever: every batch the same row, every feature masked.
        guard r.s0 | r.s1 | r.s2 | r.s3 != 0 else { throw StateError.invalid("random state") }
        let hasSpare = try read(Bool.self)
        let spare = try read(Float.self)
        r.spareNormal = hasSpare ? spare : nil
        return r
    }
    /// Reads a nested state written by `write(blob:)`.
    public mutating func readBlob() throws -> [UInt8] {
        let n = try read(UInt64.self)
        guard n <= UInt64(bytes.count - offset) else { throw StateError.truncated }
        defer { offset += Int(n) }
        return Array(bytes[offset..<(offset + Int(n))])
    }

    public mutating func read(_: String.Type) throws -> String {
        let n = Int(try read(UInt32.self))
        guard offset + n <= bytes.count else { throw StateError.truncated }
        defer { offset += n }
        return String(decoding: bytes[offset..<(offset + n)], as: UTF8.self)
    }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as zlib computes it.
public enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }
    /// Slicing by eight: `tables[k][b]` is byte b's CRC followed by k zero bytes.
    static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for n in 0..<256 { t[n] = table[n] }
        for k in 1..<8 {
            for n in 0..<256 { t[k * 256 + n] = (t[(k - 1) * 256 + n] >> 8) ^ table[Int(t[(k - 1) * 256 + n] & 0xFF)] }
        }
        return t
    }()

    public static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        if let crc = bytes.withContiguousStorageIfAvailable({ checksum(UnsafeRawBufferPointer($0)) }) { return crc }
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// Eight bytes a step (slicing by eight): a checkpoint or expired state of tens of megabytes was
    /// checked a byte at a time, most of a revived stream's time on the ingest thread.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        let n = bytes.count
        var i = 0
        tables.withUnsafeBufferPointer { t in
            while i + 8 <= n {
                let lo = crc ^ (UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)
                let hi = UInt32(bytes[i + 4]) | UInt32(bytes[i + 5]) << 8 | UInt32(bytes[i + 6]) << 16 | UInt32(bytes[i + 7]) << 24
                crc = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                crc = t[Int((crc ^ UInt32(bytes[i])) & 0xFF)] ^ (crc >> 8)
                i += 1
            }
        }
        return crc ^ 0xFFFF_FFFF
    }
}
