/// Byte strings interned as dense ids, each with a count of holds: the miner's vocabulary.
///
/// What a `Dictionary<Substring, Int32>` did before, without its cost: a String key hashes its
/// normalised Unicode scalars and compares by canonical equivalence, which took a third of the
/// miner's time; tokens here are compared and hashed as bytes (a token is the bytes a line has).
/// Open addressing with linear probing over a power-of-two table at most half full; removal shifts
/// the probe run back (no tombstones, so a stream of ever-new tokens cannot clog it). The hash is
/// seeded per table from the system's random source, so crafted lines cannot aim at one probe run.
struct ByteTable {
    /// The bytes of each id (empty once freed), its hash, and its holds.
    private(set) var words: [[UInt8]] = []
    private var hashes: [UInt64] = []
    private(set) var holds: [Int32] = []
    /// Ids freed, given again before new ones.
    private(set) var freeIDs: [Int32] = []
    /// Slot → id, -1 where empty.
    private var slots = [Int32](repeating: -1, count: 64)
    private(set) var count = 0
    private let seed = UInt64.random(in: .min ... .max)

    /// A table whose id 0 is `first`, held for good.
    init(first: [UInt8]) {
        _ = first.withUnsafeBufferPointer { intern($0) }
    }

    /// The bytes of `id`.
    func word(_ id: Int32) -> [UInt8] { words[Int(id)] }

    /// The id of `bytes`, if interned.
    func find(_ bytes: UnsafeBufferPointer<UInt8>) -> Int32? {
        let h = hash(bytes)
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let id = slots[i]
            if id < 0 { return nil }
            if hashes[Int(id)] == h && Self.equal(words[Int(id)], bytes) { return id }
            i = (i + 1) & mask
        }
    }

    /// The id of `bytes`, interned if new, held once more (id 0 is never counted).
    mutating func intern(_ bytes: UnsafeBufferPointer<UInt8>) -> Int32 {
        if let id = find(bytes) {
            if id != 0 { holds[Int(id)] += 1 }
            return id
        }
        if (count + 1) * 2 > slots.count { grow() }
        let h = hash(bytes)
        let id: Int32
        if let free = freeIDs.popLast() {
            id = free
            words[Int(id)] = Array(bytes)
            hashes[Int(id)] = h
            holds[Int(id)] = 1
        } else {
            id = Int32(words.count)
            words.append(Array(bytes))
            hashes.append(h)
            holds.append(1)
        }
        place(id, hash: h)
        count += 1
        return id
    }

    /// One hold on `id` fewer; at none it is forgotten and its id freed.
    mutating func release(_ id: Int32) {
        guard id > 0 else { return }
        holds[Int(id)] -= 1
        guard holds[Int(id)] == 0 else { return }
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: hashes[Int(id)]) & mask
        while slots[i] != id { i = (i + 1) & mask }
        // Backward shift: move up each later entry of the run whose home is not between the hole
        // and it, so every entry stays reachable from its home without a gap.
        var j = i
        while true {
            j = (j + 1) & mask
            let other = slots[j]
            if other < 0 { break }
            let home = Int(truncatingIfNeeded: hashes[Int(other)]) & mask
            let between = i <= j ? (i < home && home <= j) : (i < home || home <= j)
            if !between {
                slots[i] = other
                i = j
            }
        }
        slots[i] = -1
        words[Int(id)] = []
        freeIDs.append(id)
        count -= 1
    }

    private mutating func place(_ id: Int32, hash h: UInt64) {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: h) & mask
        while slots[i] >= 0 { i = (i + 1) & mask }
        slots[i] = id
    }

    private mutating func grow() {
        slots = [Int32](repeating: -1, count: slots.count * 2)
        for id in 0..<words.count where id == 0 || holds[id] > 0 { place(Int32(id), hash: hashes[id]) }
    }

    static func equal(_ word: [UInt8], _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard word.count == bytes.count else { return false }
        return word.withUnsafeBufferPointer { w in
            for i in 0..<w.count where w[i] != bytes[i] { return false }
            return true
        }
    }

    func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 { Self.hash(bytes, seed: seed) }

    /// Eight bytes at a time, multiplied and folded (a short token is one or two words).
    static func hash(_ bytes: UnsafeBufferPointer<UInt8>, seed: UInt64) -> UInt64 {
        var h = seed ^ (UInt64(bytes.count) &* 0x9E37_79B9_7F4A_7C15)
        guard let base = bytes.baseAddress else { return h }
        let raw = UnsafeRawPointer(base)
        var i = 0
        while i + 8 <= bytes.count {
            h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 31
            i += 8
        }
        if i < bytes.count {
            var tail: UInt64 = 0
            for k in i..<bytes.count { tail = tail << 8 | UInt64(bytes[k]) }
            h = (h ^ tail) &* 0x94D0_49BB_1331_11EB
            h ^= h >> 29
        }
        h = (h ^ (h >> 32)) &* 0xD6E8_FEB8_6659_FD93
        return h ^ (h >> 32)
    }
}
