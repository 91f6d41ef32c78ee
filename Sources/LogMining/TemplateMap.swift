/// Values by template id, what a log stream's miner and signals keep per template.
///
/// A `Dictionary<UInt32, Value>` hashes every key through SipHash, which took a tenth of a log
/// line's ingest once each signal looked its template up two or three times per line. Template ids
/// are the miner's own (counted up from 1, never a producer's choice), so a multiplicative hash of
/// the id is enough: open addressing with linear probing over a power-of-two table at most half
/// full, removal by backward shift (no tombstones). Id 0 is no template: it is never stored, and
/// reads as absent.
@frozen
public struct TemplateMap<Value> {
    /// Slot → id (0: empty), and the value in that slot.
    @usableFromInline var table = [UInt32](repeating: 0, count: 16)
    @usableFromInline var slots = [Value?](repeating: nil, count: 16)
    @usableFromInline var stored = 0
    @inlinable
    public var count: Int { stored }

    @inlinable
    public init() {}

    @inlinable
    public var isEmpty: Bool { count == 0 }

    @inlinable @inline(__always)
    func home(_ key: UInt32, mask: Int) -> Int {
        Int(truncatingIfNeeded: (UInt64(key) &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// The slot holding `key`, or the empty slot where it would go.
    @inlinable @inline(__always)
    func probe(_ key: UInt32) -> (slot: Int, found: Bool) {
        let mask = table.count - 1
        var i = home(key, mask: mask)
        while true {
            let k = table[i]
            if k == key { return (i, true) }
            if k == 0 { return (i, false) }
            i = (i + 1) & mask
        }
    }

    /// The slot of `key`, if present: for reading or changing its value in place (`self[slot:]`)
    /// until the next insertion or removal.
    @inlinable
    public func slot(of key: UInt32) -> Int? {
        guard key != 0 else { return nil }
        let (i, found) = probe(key)
        return found ? i : nil
    }

    /// The value in a slot `slot(of:)` found.
    @inlinable
    public subscript(slot i: Int) -> Value {
        // Borrowed, not copied: reading one field of a template must not retain its arrays.
        _read { yield slots[i]! }
        _modify { yield &slots[i]! }
    }

    @inlinable
    public subscript(key: UInt32) -> Value? {
        get { slot(of: key).map { slots[$0]! } }
        set {
            if let newValue { insert(key, newValue) } else { _ = removeValue(forKey: key) }
        }
    }

    /// The value of `key`, which is first set to `initial` if absent; changed in place.
    @inlinable
    public subscript(key: UInt32, default initial: @autoclosure () -> Value) -> Value {
        get { self[key] ?? initial() }
        _modify {
            var (i, found) = key == 0 ? (-1, false) : probe(key)
            if !found { i = insert(key, initial()) }
            yield &slots[i]!
        }
    }

    /// `body` over the value of `key` (first set to `initial` if absent), in place: one probe.
    @inlinable
    public mutating func update<R>(_ key: UInt32, default initial: @autoclosure () -> Value, _ body: (inout Value) -> R) -> R {
        var (i, found) = key == 0 ? (-1, false) : probe(key)
        if !found { i = insert(key, initial()) }
        return body(&slots[i]!)
    }

    /// Sets `key` (not 0) to `value`; its slot.
    @discardableResult
    @inlinable mutating func insert(_ key: UInt32, _ value: Value) -> Int {
        precondition(key != 0, "template id 0 is no template")
        var (i, found) = probe(key)
        if !found {
            if (count + 1) * 2 > table.count {
                grow()
                i = probe(key).slot
            }
            table[i] = key
            stored += 1
        }
        slots[i] = value
        return i
    }

    @discardableResult
    @inlinable
    public mutating func removeValue(forKey key: UInt32) -> Value? {
        guard key != 0 else { return nil }
        let (found, present) = probe(key)
        guard present else { return nil }
        let old = slots[found]
        var i = found
        let mask = table.count - 1
        // Backward shift: each later entry of the run whose home is not between the hole and it moves up.
        var j = i
        while true {
            j = (j + 1) & mask
            let other = table[j]
            if other == 0 { break }
            let h = home(other, mask: mask)
            let between = i <= j ? (i < h && h <= j) : (i < h || h <= j)
            if !between {
                table[i] = other
                slots[i] = slots[j]
                i = j
            }
        }
        table[i] = 0
        slots[i] = nil
        stored -= 1
        return old
    }

    @inlinable
    public mutating func removeAll() { self = TemplateMap() }

    @inlinable mutating func grow() {
        let old = zip(table, slots).filter { $0.0 != 0 }
        table = [UInt32](repeating: 0, count: table.count * 2)
        slots = [Value?](repeating: nil, count: table.count)
        for (key, value) in old {
            let i = probe(key).slot
            table[i] = key
            slots[i] = value
        }
    }

    /// Every id, in no order.
    @inlinable
    public var keys: [UInt32] { table.filter { $0 != 0 } }

    /// Every entry by id (what a checkpoint writes, so a state file does not depend on the table's layout).
    @inlinable
    public var sortedEntries: [(key: UInt32, value: Value)] { sorted { $0.key < $1.key } }

    /// Every value, in no order.
    @inlinable
    public var values: [Value] { map(\.value) }
}

/// The entries, in no order, read where they lie.
extension TemplateMap: Sequence {
    public typealias Element = (key: UInt32, value: Value)

    @frozen
    public struct Iterator: IteratorProtocol {
        @usableFromInline let map: TemplateMap
        @usableFromInline var i = 0

        @inlinable
        init(_ map: TemplateMap) { self.map = map }

        @inlinable
        public mutating func next() -> Element? {
            while i < map.table.count {
                defer { i += 1 }
                if map.table[i] != 0 { return (map.table[i], map.slots[i]!) }
            }
            return nil
        }
    }

    @inlinable
    public func makeIterator() -> Iterator { Iterator(self) }

    @inlinable
    public var underestimatedCount: Int { count }
}

extension TemplateMap where Value == Void {
    /// Adds `key` to a set of ids; whether it was not there.
    @inlinable
    public mutating func insert(_ key: UInt32) -> Bool {
        guard slot(of: key) == nil else { return false }
        self[key] = ()
        return true
    }

    @inlinable
    public func contains(_ key: UInt32) -> Bool { slot(of: key) != nil }

    /// The ids, smallest first.
    @inlinable
    public var sortedKeys: [UInt32] { sortedEntries.map(\.key) }
}

/// Equal when they hold the same ids with equal values, whatever their layout.
extension TemplateMap: Equatable where Value: Equatable {
    @inlinable
    public static func == (a: TemplateMap, b: TemplateMap) -> Bool {
        a.count == b.count && a.allSatisfy { b[$0.key] == $0.value }
    }
}
