import Learning

/// A stream's bounded memory of samples for the trainer: half a ring of the most recent samples,
/// half a uniform reservoir over everything the stream ever sent (Vitter's algorithm R).
///
/// The recent half lets the models follow drift; the reservoir keeps rare but normal patterns (a
/// weekly cycle, a seldom-used mode) from being forgotten. A sample's id is a hash of its values,
/// which MoCo uses to mask it as its own false negative: a sample in both halves, and a sample that
/// comes again (a training set sent over and over, a stuck sensor), is one sample, not its own
/// negative.
///
/// Not thread-safe: the owner serialises access (the daemon holds the stream's lock).
public final class ReplayBuffer {
    public let dimension: Int
    public let capacity: Int
    /// Rows in the recent ring and in the reservoir.
    public let recentCapacity: Int
    public let reservoirCapacity: Int
    let rows: FloatBuffer
    let ids: UnsafeMutablePointer<Int64>
    var random: RandomSource
    /// Gather indices, kept between calls so that sampling allocates nothing.
    private var index = UnsafeMutablePointer<Int64>.allocate(capacity: 256)
    private var indexCapacity = 256

    /// Samples offered so far.
    public private(set) var inserted: UInt64 = 0
    /// Rows overwritten: the oldest recent sample pushed out, or a reservoir sample replaced.
    public private(set) var evicted: UInt64 = 0
    private var recentCount = 0
    private var recentNext = 0
    private var reservoirCount = 0

    /// - Parameters:
    ///   - capacity: rows in all (at least 2).
    ///   - recentFraction: share of rows for the recent ring, in (0, 1).
    public init(dimension: Int, capacity: Int, recentFraction: Double = 0.5, seed: UInt64 = 0) {
        precondition(dimension > 0 && capacity >= 2, "buffer needs a positive dimension and at least 2 rows")
        self.dimension = dimension
        self.capacity = capacity
        recentCapacity = min(capacity - 1, max(1, Int((Double(capacity) * recentFraction).rounded())))
        reservoirCapacity = capacity - recentCapacity
        rows = FloatBuffer(count: capacity * dimension)
        ids = .allocate(capacity: capacity)
        ids.initialize(repeating: -1, count: capacity)
        random = RandomSource(seed: seed ^ 0x5EED_B0FF)
    }

    deinit {
        ids.deallocate()
        index.deallocate()
    }

    /// Rows held now.
    public var count: Int { recentCount + reservoirCount }

    /// Offers `n` samples `(n, dimension)`.
    public func insert(_ x: UnsafePointer<Float>, rows n: Int) {
        let d = dimension
        for i in 0..<n {
            let sample = x + i * d
            let id = Self.id(sample, dimension: d)
            inserted += 1
            // Recent ring: rows [0, recentCapacity).
            if recentCount == recentCapacity { evicted += 1 } else { recentCount += 1 }
            write(sample, id: id, at: recentNext)
            recentNext = (recentNext + 1) % recentCapacity
            // Reservoir: rows [recentCapacity, capacity); keeps each sample seen with equal probability.
            if reservoirCount < reservoirCapacity {
                write(sample, id: id, at: recentCapacity + reservoirCount)
                reservoirCount += 1
            } else {
                let j = Int(random.next() % inserted)
                if j < reservoirCapacity {
                    write(sample, id: id, at: recentCapacity + j)
                    evicted += 1
                }
            }
        }
    }

    /// A sample's id: FNV-1a over its values' bits (0 and -0 alike), kept non-negative.
    public static func id(_ sample: UnsafePointer<Float>, dimension d: Int) -> Int64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for c in 0..<d {
            let v = sample[c]
            h = (h ^ UInt64(v == 0 ? 0 : v.bitPattern)) &* 0x0000_0100_0000_01B3
        }
        return Int64(bitPattern: h & UInt64(Int64.max))
    }

    @inline(__always)
    private func write(_ sample: UnsafePointer<Float>, id: Int64, at row: Int) {
        if let next = freeze?.next, row >= next { keepForEncoding(row) }
        (rows.pointer + row * dimension).update(from: sample, count: dimension)
        ids[row] = id
    }

    /// Draws `n` rows uniformly with replacement from what is held into `out` `(n, dimension)`, their
    /// ids into `outIDs`. Needs `count > 0`.
    public func sample(_ n: Int, into out: UnsafeMutablePointer<Float>, ids outIDs: UnsafeMutablePointer<Int64>) {
        precondition(count > 0, "sampling an empty buffer")
        if n > indexCapacity {
            index.deallocate()
            index = .allocate(capacity: n)
            indexCapacity = n
        }
        for r in 0..<n {
            let k = random.index(below: count)
            // Held rows: recent [0, recentCount), reservoir [recentCapacity, recentCapacity + reservoirCount).
            let row = k < recentCount ? k : recentCapacity + (k - recentCount)
            index[r] = Int64(row)
            outIDs[r] = ids[row]
        }
        Kernels.gatherRows(rows.pointer, index: index, rows: n, columns: dimension, into: out)
    }

    /// This buffer's samples under another split of its capacity (`recent_fraction` changed): the
    /// newest recent samples that fit, in order, and a uniform subset of the reservoir that fits.
    /// Rows left out count as evicted; the sample count and random state go on. A reservoir with
    /// room to spare fills from the next samples, as a new one does.
    public func resplit(recentFraction: Double) -> ReplayBuffer {
        let b = ReplayBuffer(dimension: dimension, capacity: capacity, recentFraction: recentFraction)
        guard b.recentCapacity != recentCapacity else { return self }
        b.inserted = inserted
        b.random = random
        let recent = min(recentCount, b.recentCapacity)
        for k in 0..<recent {
            // The oldest kept first: age 0 is the newest sample, in the row before `recentNext`.
            let row = (recentNext - recent + k + 2 * recentCapacity) % recentCapacity
            b.write(rows.pointer + row * dimension, id: ids[row], at: k)
        }
        b.recentCount = recent
        b.recentNext = recent % b.recentCapacity
        var slots = Array(0..<reservoirCount)
        let kept = min(reservoirCount, b.reservoirCapacity)
        for k in 0..<kept {
            slots.swapAt(k, k + b.random.index(below: reservoirCount - k))
            let row = recentCapacity + slots[k]
            b.write(rows.pointer + row * dimension, id: ids[row], at: b.recentCapacity + k)
        }
        b.reservoirCount = kept
        b.evicted = evicted + UInt64(recentCount - recent + reservoirCount - kept)
        return b
    }

    // MARK: State

    /// At least the bytes `encode` writes (dimension and capacity never change, so it is read
    /// without the stream's lock).
    var encodingBound: Int { 4 * capacity * dimension + 8 * capacity + 128 }

    func encode(_ w: inout StateWriter) {
        beginEncoding(&w)
        while continueEncoding(&w, rows: capacity) {}
    }

    /// An encoding under way: rows below `next` are written; a row at or above it that is
    /// overwritten first keeps its old values here, which the encoding writes instead. The ids as
    /// they were (8 bytes a row) are copied when it begins, and written after the rows.
    private struct Freeze {
        var next = 0
        var kept: [Int: [Float]] = [:]
        let ids: [Int64]
    }
    private var freeze: Freeze?

    /// Whether an encoding begun by `beginEncoding` is under way.
    var isEncoding: Bool { freeze != nil }

    /// Begins encoding the buffer as it stands now, in steps the owner's lock is released between:
    /// writes what precedes the rows. The samples that arrive until `continueEncoding` says it is
    /// done change the buffer but not the encoding (a row they overwrite is kept first, a copy of
    /// one row), so it is the state of this moment, consistent with whatever else the owner
    /// encodes under the same lock. Call under the owner's lock; one encoding at a time.
    func beginEncoding(_ w: inout StateWriter) {
        precondition(freeze == nil, "one encoding of a replay buffer at a time")
        w.write(UInt32(dimension)); w.write(UInt32(capacity)); w.write(UInt32(recentCapacity))
        w.write(inserted); w.write(evicted)
        w.write(UInt32(recentCount)); w.write(UInt32(recentNext)); w.write(UInt32(reservoirCount))
        w.write(random)
        w.write(UInt64(capacity * dimension))  // the rows' count, as `write(FloatBuffer)` has it
        freeze = Freeze(ids: Array(UnsafeBufferPointer(start: ids, count: capacity)))
    }

    /// Writes up to `rows` more rows of the encoding begun by `beginEncoding`, and after the last
    /// row every id. Returns whether there is more to write; once it returns false the encoding is
    /// complete and over. Call under the owner's lock.
    func continueEncoding(_ w: inout StateWriter, rows count: Int) -> Bool {
        precondition(freeze != nil && count > 0, "continueEncoding after beginEncoding, a row at least")
        let start = freeze!.next, end = min(start + count, capacity)
        var row = start
        while row < end {
            if let kept = freeze!.kept.removeValue(forKey: row) {  // written: its copy is not needed
                kept.withUnsafeBufferPointer { w.write(floats: $0.baseAddress!, count: dimension) }
                row += 1
            } else {
                // A run of rows not overwritten since the encoding began, in one copy.
                var runEnd = row + 1
                while runEnd < end && freeze!.kept[runEnd] == nil { runEnd += 1 }
                w.write(floats: rows.pointer + row * dimension, count: (runEnd - row) * dimension)
                row = runEnd
            }
        }
        freeze!.next = end
        guard end == capacity else { return true }
        for id in freeze!.ids { w.write(id) }
        freeze = nil
        return false
    }

    /// Keeps row `row` as it is for the encoding under way, unless it was kept already.
    private func keepForEncoding(_ row: Int) {
        guard freeze!.kept[row] == nil else { return }
        freeze!.kept[row] = Array(UnsafeBufferPointer(start: rows.pointer + row * dimension, count: dimension))
    }

    public static func decode(_ r: inout StateReader) throws -> ReplayBuffer {
        let dimension = Int(try r.read(UInt32.self)), capacity = Int(try r.read(UInt32.self))
        let recent = Int(try r.read(UInt32.self))
        guard dimension > 0, capacity >= 2, recent >= 1, recent < capacity else { throw StateError.invalid("buffer shape") }
        // The rows and their ids follow: capacity × (dimension + 2) values (never multiplied out,
        // which a crafted pair of sizes could overflow).
        try r.requireRoom(capacity, each: 4 * (dimension + 2))
        let b = ReplayBuffer(dimension: dimension, capacity: capacity, recentFraction: Double(recent) / Double(capacity))
        guard b.recentCapacity == recent else { throw StateError.invalid("buffer split") }
        b.inserted = try r.readCount(); b.evicted = try r.readCount()
        b.recentCount = Int(try r.read(UInt32.self)); b.recentNext = Int(try r.read(UInt32.self))
        b.reservoirCount = Int(try r.read(UInt32.self))
        guard b.recentCount <= recent, b.recentNext < recent, b.reservoirCount <= capacity - recent,
            UInt64(b.recentCount) <= b.inserted, UInt64(b.reservoirCount) <= b.inserted
        else {
            throw StateError.invalid("buffer counts")
        }
        b.random = try r.read(RandomSource.self)
        try r.read(into: b.rows)
        guard Kernels.firstNonFinite(b.rows.pointer, count: b.rows.count) == nil else { throw StateError.invalid("buffered sample value") }
        for i in 0..<capacity { b.ids[i] = try r.read(Int64.self) }
        return b
    }
}
