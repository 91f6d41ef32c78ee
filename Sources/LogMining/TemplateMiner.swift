import CKernels
import Learning

#if canImport(Glibc)
import Glibc
#endif

/// Log templates mined as lines arrive: Drain (He et al., "Drain: An Online Log Parsing Approach
/// with Fixed Depth Tree", ICWS 2017), as Drain3 runs it, bounded.
///
/// A line is split at whitespace and its variable parts are masked to `<*>` before anything is
/// compared: numbers, hex, IPv4 addresses (with a port), UUIDs, long hex strings, paths, day and
/// month names (the words of a header's date), and runs of
/// digits inside a token (`sshd[24200]:` becomes `sshd[<*>]:`, `06:55:46` becomes `<*>:<*>:<*>`).
/// The parse tree routes a line by its token count, then by its first `prefixDepth` tokens (a
/// token holding `<*>` goes to the `<*>` branch; a node with `maxChildren` branches sends new
/// tokens there too). Among the templates at the leaf, the most similar (the share of positions
/// equal to the line; a `<*>` the template learned counts as unequal) takes the line if the share reaches
/// `similarity`; the positions where they differ become `<*>`. Otherwise the line founds a new
/// template.
///
/// At most `maxTemplates` templates are kept; a new one beyond that evicts the one matched least
/// recently. Template ids count up from 1 and are not given again before 2^32 − 1 templates have
/// been founded (then they wrap, skipping ids still held), so an id names one template for the
/// stream's life, across restarts (the state is checkpointed). The parse tree holds only the
/// routes of the templates kept: an evicted template's nodes go with it if nothing else uses them.
public final class TemplateMiner {
    /// The defaults: `similarity` 0.8 was chosen by leaving one of LogHub's 15 systems out at a
    /// time, over whole raw lines and over their message text alone (docs/log-mining.md).
    public struct Configuration: Sendable, Equatable {
        public var prefixDepth = 2
        public var similarity = 0.8
        public var maxChildren = 100
        public var maxTemplates = 1000
        public init() {}
    }

    /// One template: its tokens (`<*>` where lines differ), how many lines it took, and when last.
    public struct Template: Sendable, Equatable {
        public let id: UInt32
        public internal(set) var tokens: [String]
        /// `tokens` as vocabulary ids (0: `<*>`), what lines are compared with.
        var ids: [Int32] = []
        public internal(set) var count: UInt64
        public internal(set) var lastLine: UInt64
        /// The tree branches that lead to it, fixed when it was founded (its tokens may become
        /// `<*>` later; it stays where lines like its first are routed).
        let route: [String]
        public var text: String { tokens.joined(separator: " ") }

        init(id: UInt32, tokens: [String], count: UInt64, lastLine: UInt64, route: [String]) {
            self.id = id
            self.tokens = tokens
            self.count = count
            self.lastLine = lastLine
            self.route = route
        }

        public static func == (a: Template, b: Template) -> Bool {
            a.id == b.id && a.tokens == b.tokens && a.count == b.count && a.lastLine == b.lastLine && a.route == b.route
        }
    }

    /// What the miner made of one line.
    public struct Match: Sendable, Equatable {
        public let id: UInt32
        /// The line founded the template.
        public let isNew: Bool
        /// The template changed (a position became `<*>`), so its text differs from before.
        public let changed: Bool
        /// The line mined.
        public let line: Substring
        /// Where the line's own text at each `<*>` of the template lies (before masking), in order:
        /// UTF-8 offsets from the line's start.
        public let parameterSpans: [Range<Int>]
        /// The template evicted to make room for this one (0: none).
        public var evicted: UInt32 = 0

        /// The line's own text at each `<*>` of the template, in order.
        public var parameters: [Substring] {
            let u = line.utf8
            return parameterSpans.map { span in
                Substring(u[u.index(u.startIndex, offsetBy: span.lowerBound)..<u.index(u.startIndex, offsetBy: span.upperBound)])
            }
        }
    }

    /// What the miner made of one line, without the line's parameters (`add(_:_:)` reads them in place).
    public struct Outcome: Sendable, Equatable {
        public let id: UInt32
        public let isNew: Bool
        public let changed: Bool
        public let evicted: UInt32
    }

    /// The parameters of the line just mined (where the template has `<*>`, or the line a masked
    /// value), read in place: valid only inside the body given to `add(_:_:)`.
    public struct Parameters {
        let line: UnsafeBufferPointer<UInt8>
        let scratch: Scratch
        public var count: Int { scratch.parameterCount }
        /// Parameter `i`'s span in the line (UTF-8 offsets).
        public func span(_ i: Int) -> Range<Int> {
            let token = Int(scratch.parameters[i])
            return scratch.starts[token]..<scratch.ends[token]
        }
        /// Parameter `i`'s bytes.
        public subscript(i: Int) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: line[span(i)]) }
    }

    public static let wildcard = "<*>"
    public let configuration: Configuration
    public private(set) var templates = TemplateMap<Template>()
    public internal(set) var nextID: UInt32 = 1
    /// Lines seen, and templates evicted.
    public private(set) var lines: UInt64 = 0
    public private(set) var evicted: UInt64 = 0
    /// The templates a restore left out (a smaller `maxTemplates` than the state was saved with):
    /// evicted with no line to say so, so what reads the miner's ids must forget them itself.
    public private(set) var droppedAtRestore: [UInt32] = []

    /// Tree: token count, then the prefix tokens (as ids in `branches`; 0 is `<*>`), then the
    /// templates at the leaf.
    final class Node {
        var children: [Int32: Node] = [:]
        var templates: [UInt32] = []
        /// The templates' token ids (`Template.ids`), a row of the leaf's token count each, in the
        /// order of `templates`: what a line is compared with, read in one pass.
        var rows: [Int32] = []

        func add(_ id: UInt32, ids: [Int32]) {
            templates.append(id)
            rows += ids
        }

        func remove(_ id: UInt32) {
            guard let r = templates.firstIndex(of: id) else { return }
            let n = rows.count / templates.count
            templates.remove(at: r)
            rows.removeSubrange(r * n..<(r + 1) * n)
        }
    }
    /// By token count (at most `maximumTokens`).
    var root = [Node?](repeating: nil, count: maximumTokens + 1)

    /// Every token some template holds, by id, with how many template positions hold it (a token
    /// no template holds any more is forgotten, so lines of ever-new values cannot grow it). Id 0
    /// is `<*>`.
    var vocabulary = ByteTable(first: Array(wildcard.utf8))
    /// The tree's branch tokens, held once per branch (at most `maxChildren` per node), released
    /// when an eviction prunes the branch.
    var branches = ByteTable(first: Array(wildcard.utf8))

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    // MARK: Mining

    /// Mines one line.
    public func add(_ line: Substring) -> Match {
        Self.withBytes(line) { line, bytes in
            let o = mine(bytes)
            let parameters = Parameters(line: bytes, scratch: scratch)
            let spans = (0..<parameters.count).map(parameters.span)
            return Match(id: o.id, isNew: o.isNew, changed: o.changed, line: line, parameterSpans: spans, evicted: o.evicted)
        }
    }

    /// Mines one line, and gives `parameters` its parameters, read in place (no allocation per
    /// line: what a log stream's ingest calls).
    public func add(_ line: Substring, parameters: (Parameters) -> Void) -> Outcome {
        Self.withBytes(line) { _, bytes in
            let o = mine(bytes)
            parameters(Parameters(line: bytes, scratch: scratch))
            return o
        }
    }

    /// Mines the line in `bytes`; its parameters' tokens into `scratch.parameters`.
    func mine(_ bytes: UnsafeBufferPointer<UInt8>) -> Outcome {
        lines &+= 1
        tokenize(bytes)
        let recall = remembersLines ? recent.find(scratch, epoch: epoch) : (id: nil, entry: -1)
        if let id = recall.id, let at = templates.slot(of: id) {
            // As the tree would: the same tokens find the same template, which they leave unchanged.
            templates[slot: at].count &+= 1
            templates[slot: at].lastLine = lines
            templates[slot: at].ids.withUnsafeBufferPointer { findParameters(of: $0) }
            return Outcome(id: id, isNew: false, changed: false, evicted: 0)
        }
        let outcome = mineInTree(bytes)
        recent.remember(outcome.id, at: recall.entry, scratch, epoch: epoch)
        return outcome
    }

    /// `mine` through the tree and the comparison with the leaf's templates.
    func mineInTree(_ bytes: UnsafeBufferPointer<UInt8>) -> Outcome {
        lookUp()
        let leaf = self.leaf(bytes, creating: true)!
        let n = scratch.count
        if let (id, row) = best(in: leaf), let at = templates.slot(of: id) {
            // In place, where `best` found it: a copy would copy its arrays on every line.
            var changed = false
            templates[slot: at].count &+= 1
            templates[slot: at].lastLine = lines
            for i in 0..<n {
                let held = templates[slot: at].ids[i]
                guard held != scratch.ids[i] && held != 0 else { continue }
                vocabulary.release(held)
                templates[slot: at].ids[i] = 0
                templates[slot: at].tokens[i] = Self.wildcard
                leaf.rows[row * n + i] = 0
                changed = true
            }
            if changed { epoch &+= 1 }
            templates[slot: at].ids.withUnsafeBufferPointer { findParameters(of: $0) }
            return Outcome(id: id, isNew: false, changed: changed, evicted: 0)
        }
        let evictedID = templates.count >= configuration.maxTemplates ? evictOne() : 0
        // The eviction may have pruned the (new, empty) leaf, or made room for a branch of its own.
        let target = evictedID == 0 ? leaf : self.leaf(bytes, creating: true)!
        let id = takeID()
        let route = (0..<scratch.routeCount).map { String(decoding: branches.word(scratch.route[$0]), as: UTF8.self) }
        var t = Template(id: id, tokens: (0..<n).map { String(decoding: key($0), as: UTF8.self) }, count: 1, lastLine: lines, route: route)
        t.ids = (0..<n).map { vocabulary.intern(key($0)) }
        t.ids.withUnsafeBufferPointer { findParameters(of: $0) }
        templates[id] = t
        target.add(id, ids: t.ids)
        epoch &+= 1
        return Outcome(id: id, isNew: true, changed: false, evicted: evictedID)
    }

    /// The next template id. Ids count up from 1; after 2^32 − 1 templates they wrap, skipping 0
    /// and every id a template still holds (so an id names one template at a time).
    func takeID() -> UInt32 {
        while nextID == 0 || templates.slot(of: nextID) != nil { nextID &+= 1 }
        defer { nextID &+= 1 }
        return nextID
    }

    /// The template `line` would join, without learning anything from it (nil: it would be new).
    public func match(_ line: Substring) -> UInt32? {
        Self.withBytes(line) { _, bytes in
            tokenize(bytes)
            lookUp()
            guard let leaf = leaf(bytes, creating: false) else { return nil }
            return best(in: leaf)?.id
        }
    }

    /// `body` over the line's UTF-8 bytes, in place for a native string.
    static func withBytes<R>(_ line: Substring, _ body: (Substring, UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let r = line.utf8.withContiguousStorageIfAvailable({ body(line, $0) }) { return r }
        let native = Substring(String(line))
        return native.utf8.withContiguousStorageIfAvailable { body(native, $0) }!
    }

    /// Tokens a line is split into at most.
    public static let maximumTokens = 128

    /// Counts the changes of the templates (one founded, generalised or evicted): what a line's
    /// tokens find in the tree changes only with it.
    var epoch: UInt64 = 0
    var recent = RecentLines()
    /// Whether `recent` is used (tests compare the two).
    var remembersLines = true
    /// Bytes the remembered lines take at most, whatever the lines.
    public static var rememberedBytes: Int { RecentLines.bytes }

    /// The templates recent lines found, by their masked tokens, valid while `epoch` stands: a line
    /// of the same tokens as one before (most lines, once a stream's templates have settled) joins
    /// its template without looking up each token, walking the tree and comparing the leaf's
    /// templates. What the tree would decide is decided by the tokens' keys and the templates at
    /// their leaf alone (the leaf is fixed by the tokens until a branch is pruned, which only an
    /// eviction does), and those templates and branches change only with `epoch`. Direct-mapped,
    /// `size` entries of keys up to `longest` bytes (`bytes` at most).
    struct RecentLines {
        static let size = 512, longest = 256
        /// The most an entry holds: its keys, their ends, two array headers and itself.
        static let bytes = size * (longest + 2 * maximumTokens + 2 * 32 + 32)
        struct Entry {
            var epoch = UInt64.max
            var id: UInt32 = 0
            var keys: [UInt8] = []
            var ends: [UInt16] = []
        }
        var entries = [Entry](repeating: Entry(), count: size)

        /// The entry for the line in `scratch`, and the template it found if it is remembered (nil:
        /// not remembered, or not rememberable: -1).
        func find(_ scratch: Scratch, epoch: UInt64) -> (id: UInt32?, entry: Int) {
            let n = scratch.count
            guard n > 0, scratch.keyEnds[n - 1] <= Self.longest else { return (nil, -1) }
            let keys = UnsafeBufferPointer(start: scratch.keys, count: scratch.keyEnds[n - 1])
            var h = UInt64(n) &* 0x9E37_79B9_7F4A_7C15
            for i in 0..<n { h = (h ^ UInt64(scratch.keyEnds[i])) &* 0xBF58_476D_1CE4_E5B9 }
            h ^= ByteTable.hash(keys, seed: 0)
            let k = Int(truncatingIfNeeded: h ^ (h >> 29)) & (Self.size - 1)
            // Read in place: a copy of the entry would retain its arrays.
            guard entries[k].epoch == epoch, entries[k].ends.count == n, entries[k].keys.count == keys.count else { return (nil, k) }
            let ends = entries[k].ends.withUnsafeBufferPointer { ends in
                (0..<n).allSatisfy { Int(ends[$0]) == scratch.keyEnds[$0] }
            }
            guard ends else { return (nil, k) }
            let same = entries[k].keys.withUnsafeBufferPointer { memcmp($0.baseAddress!, keys.baseAddress!, keys.count) == 0 }
            return (same ? entries[k].id : nil, k)
        }

        /// Remembers that the line in `scratch` found template `id`, in `entry` (from `find`).
        mutating func remember(_ id: UInt32, at entry: Int, _ scratch: Scratch, epoch: UInt64) {
            guard entry >= 0 else { return }
            let n = scratch.count
            entries[entry].epoch = epoch
            entries[entry].id = id
            entries[entry].keys.removeAll(keepingCapacity: true)
            entries[entry].keys.append(contentsOf: UnsafeBufferPointer(start: scratch.keys, count: scratch.keyEnds[n - 1]))
            entries[entry].ends.removeAll(keepingCapacity: true)
            for i in 0..<n { entries[entry].ends.append(UInt16(scratch.keyEnds[i])) }
        }
    }

    /// One line taken apart, in buffers the miner keeps from line to line (`maximumTokens` each,
    /// refilled in place: no allocation, no uniqueness check per token).
    struct Scratch {
        var count = 0
        /// Each token's bytes in the line.
        let starts = UnsafeMutablePointer<Int>.allocate(capacity: maximumTokens)
        let ends = UnsafeMutablePointer<Int>.allocate(capacity: maximumTokens)
        /// Each token masked, one after another in `keys` (room for `keyCapacity` bytes), to `keyEnds[i]`.
        var keys = UnsafeMutablePointer<UInt8>.allocate(capacity: 4096), keyCapacity = 4096
        let keyEnds = UnsafeMutablePointer<Int>.allocate(capacity: maximumTokens)
        /// Whether masking changed the token.
        let masked = UnsafeMutablePointer<Bool>.allocate(capacity: maximumTokens)
        /// Each key's vocabulary id; a key no template holds gets an id of its own below zero.
        let ids = UnsafeMutablePointer<Int32>.allocate(capacity: maximumTokens)
        /// The branches the line took in the tree.
        var routeCount = 0
        let route = UnsafeMutablePointer<Int32>.allocate(capacity: maximumTokens)
        /// The tokens that are the line's parameters, in order.
        var parameterCount = 0
        let parameters = UnsafeMutablePointer<Int32>.allocate(capacity: maximumTokens)

        func deallocate() {
            starts.deallocate(); ends.deallocate(); keyEnds.deallocate(); masked.deallocate(); ids.deallocate(); route.deallocate()
            parameters.deallocate()
            keys.deallocate()
        }

        /// Room for the keys of a line of `bytes` bytes (masking at most triples a token: `1` is `<*>`).
        mutating func reserveKeys(forLine bytes: Int) {
            guard 3 * bytes + 3 > keyCapacity else { return }
            keys.deallocate()
            keyCapacity = 3 * bytes + 3
            keys = .allocate(capacity: keyCapacity)
        }
    }
    var scratch = Scratch()

    deinit { scratch.deallocate() }

    /// Token `i`'s key.
    func key(_ i: Int) -> UnsafeBufferPointer<UInt8> {
        let from = i == 0 ? 0 : scratch.keyEnds[i - 1]
        return UnsafeBufferPointer(start: scratch.keys + from, count: scratch.keyEnds[i] - from)
    }

    /// Splits the line into `scratch`'s tokens (what lies between spaces, tabs and carriage
    /// returns; at most `maximumTokens`, the last holding the rest of the line) and masks each.
    func tokenize(_ b: UnsafeBufferPointer<UInt8>) {
        // Which tokens hold a digit, in `masked` until masking says what it masked (it looks no
        // further into a token without one). Sixteen bytes at a time, in C (`eddy_tokenize`).
        let starts = scratch.starts, ends = scratch.ends, digits = scratch.masked
        let n = eddy_tokenize(b.baseAddress, b.count, starts, ends, digits, Self.maximumTokens)
        scratch.count = n
        scratch.reserveKeys(forLine: b.count)
        var written = 0
        for i in 0..<n {
            let (length, masked) = Self.mask(
                UnsafeBufferPointer(rebasing: b[starts[i]..<ends[i]]), digits: digits[i], into: scratch.keys + written)
            written += length
            scratch.masked[i] = masked
            scratch.keyEnds[i] = written
        }
    }

    /// The tokens' vocabulary ids into `scratch.ids`.
    func lookUp() {
        for i in 0..<scratch.count {
            let k = key(i)
            // A value masked whole is `<*>`, id 0, without a search.
            if scratch.masked[i] && k.count == 3 && k[0] == UInt8(ascii: "<") && k[1] == UInt8(ascii: "*") && k[2] == UInt8(ascii: ">") {
                scratch.ids[i] = 0
            } else {
                scratch.ids[i] = vocabulary.find(k) ?? -Int32(truncatingIfNeeded: i + 1)
            }
        }
    }

    /// The most similar template at the leaf for `scratch.ids`, if similar enough, with its row in the leaf.
    func best(in leaf: Node) -> (id: UInt32, row: Int)? {
        let n = scratch.count, ids = scratch.ids
        guard n > 0 else { return leaf.templates.first.map { ($0, 0) } }  // an empty line is like any other
        var found: (row: Int, same: Int, wildcards: Int)?
        leaf.rows.withUnsafeBufferPointer { rows in
            for r in 0..<rows.count / n {
                let held = rows.baseAddress! + r * n
                var same = 0, wildcards = 0
                for i in 0..<n {
                    // A masked value meets a masked value: the same; a parameter the template
                    // learned meets anything: not evidence either way, but counted to break ties.
                    if held[i] == ids[i] {
                        same += 1
                    } else if held[i] == 0 {
                        wildcards += 1
                    }
                }
                if found == nil || same > found!.same || (same == found!.same && wildcards > found!.wildcards) {
                    found = (r, same, wildcards)
                }
            }
        }
        guard let found, Double(found.same) / Double(n) >= configuration.similarity else { return nil }
        return (leaf.templates[found.row], found.row)
    }

    /// The leaf for the line in `scratch` (by token count, then by the prefix tokens), the
    /// branches taken into `scratch.route`.
    func leaf(_ line: UnsafeBufferPointer<UInt8>, creating: Bool) -> Node? {
        var node: Node
        let n = scratch.count
        if let found = root[n] {
            node = found
        } else {
            guard creating else { return nil }
            node = Node()
            root[n] = node
        }
        scratch.routeCount = 0
        func take(_ branch: Int32) {
            scratch.route[scratch.routeCount] = branch
            scratch.routeCount += 1
        }
        for i in 0..<min(configuration.prefixDepth, n) {
            let token = UnsafeBufferPointer(rebasing: line[scratch.starts[i]..<scratch.ends[i]])
            let key: Int32? = scratch.masked[i] ? 0 : branches.find(token)
            if let key, let next = node.children[key] {
                node = next
                take(key)
            } else if let any = node.children[0], !creating || node.children.count >= configuration.maxChildren {
                node = any
                take(0)
            } else {
                guard creating else { return nil }
                // The last free branch goes to `<*>`, which takes every new token from then on.
                // Each branch holds its token once (released when the branch is pruned).
                let branch = key == 0 || node.children.count + 1 >= configuration.maxChildren ? 0 : branches.intern(token)
                let next = node.children[branch] ?? Node()
                node.children[branch] = next
                node = next
                take(branch)
            }
        }
        return node
    }

    /// The leaf at the end of `route` under token count `length`, made if missing.
    func leaf(length: Int, route: [String]) -> Node {
        var node = root[length] ?? Node()
        root[length] = node
        for key in route {
            let found = Array(key.utf8).withUnsafeBufferPointer { branches.find($0) }
            if let found, let next = node.children[found] {
                node = next
                continue
            }
            let branch = found == 0 ? 0 : Array(key.utf8).withUnsafeBufferPointer { branches.intern($0) }
            let next = Node()
            node.children[branch] = next
            node = next
        }
        return node
    }

    /// Takes template `id` out of the leaf at the end of `route` under token count `length`, and
    /// prunes the nodes that leaves with neither templates nor branches (releasing their branch
    /// tokens): the tree holds the routes of the templates kept, however many were evicted.
    func remove(_ id: UInt32, length: Int, route: [String]) {
        guard var node = root[length] else { return }
        var path: [(parent: Node, branch: Int32)] = []
        for key in route {
            guard let branch = Array(key.utf8).withUnsafeBufferPointer({ branches.find($0) }), let next = node.children[branch] else {
                return
            }
            path.append((node, branch))
            node = next
        }
        node.remove(id)
        var emptied = node
        while emptied.templates.isEmpty && emptied.children.isEmpty, let (parent, branch) = path.popLast() {
            parent.children[branch] = nil
            if branch != 0 { branches.release(branch) }
            emptied = parent
        }
        if emptied === root[length] && emptied.templates.isEmpty && emptied.children.isEmpty { root[length] = nil }
    }

    /// The line's tokens where the template has `<*>`, or a masked value, into `scratch.parameters`.
    func findParameters(of template: UnsafeBufferPointer<Int32>) {
        var k = 0
        for i in 0..<min(template.count, scratch.count) where template[i] == 0 || scratch.masked[i] {
            scratch.parameters[k] = Int32(i)
            k += 1
        }
        scratch.parameterCount = k
    }

    /// Removes the template matched least recently (its id is not given again before the ids wrap);
    /// returns its id.
    @discardableResult
    func evictOne() -> UInt32 {
        guard let oldest = templates.min(by: { $0.value.lastLine < $1.value.lastLine })?.value else { return 0 }
        templates[oldest.id] = nil
        remove(oldest.id, length: oldest.tokens.count, route: oldest.route)
        for id in oldest.ids { vocabulary.release(id) }
        evicted &+= 1
        epoch &+= 1
        return oldest.id
    }

    // MARK: Masking

    /// The token with its variable parts as `<*>`.
    public static func mask(_ token: Substring) -> String {
        withBytes(token) { _, bytes in
            let out = UnsafeMutablePointer<UInt8>.allocate(capacity: 3 * bytes.count + 3)
            defer { out.deallocate() }
            let (length, _) = mask(bytes, digits: bytes.contains { $0 &- 48 < 10 }, into: out)
            return String(decoding: UnsafeBufferPointer(start: out, count: length), as: UTF8.self)
        }
    }

    /// Writes the token (which holds a digit if `digits`) with its variable parts as `<*>` to `out`
    /// (room for three times the token); the bytes written, and whether any part was masked.
    static func mask(_ bytes: UnsafeBufferPointer<UInt8>, digits: Bool, into out: UnsafeMutablePointer<UInt8>) -> (Int, Bool) {
        func wildcard() -> (Int, Bool) {
            out[0] = UInt8(ascii: "<"); out[1] = UInt8(ascii: "*"); out[2] = UInt8(ascii: ">")
            return (3, true)
        }
        let n = bytes.count
        guard n > 0, let base = bytes.baseAddress else { return (0, false) }
        // Only a digit, a leading '/' or a letter can start a variable part (a calendar word).
        let first = base[0]
        if first != UInt8(ascii: "/") && !digits {
            // A calendar word or nothing: 3 to 11 bytes (with brackets) starting with a letter that
            // starts a day or month name.
            if n >= 3 && n <= 11 && isCalendarInitial(first) && isCalendarWord(bytes) { return wildcard() }
            // Most tokens are a few bytes: copied eight at a time, not through a call to memmove.
            if n <= 16 {
                var i = 0
                let from = UnsafeRawPointer(base), to = UnsafeMutableRawPointer(out)
                while i + 8 <= n {
                    to.storeBytes(of: from.loadUnaligned(fromByteOffset: i, as: UInt64.self), toByteOffset: i, as: UInt64.self)
                    i += 8
                }
                while i < n {
                    out[i] = base[i]
                    i += 1
                }
            } else {
                out.update(from: base, count: n)
            }
            return (n, false)
        }
        if isWhollyVariable(bytes) { return wildcard() }
        // Runs of digits bounded by what is neither a letter nor a digit.
        var i = 0, written = 0, masked = false
        while i < n {
            if isDigit(base[i]), i == 0 || !isAlphanumeric(base[i - 1]) {
                var j = i
                while j < n && isDigit(base[j]) { j += 1 }
                if j == n || !isAlphanumeric(base[j]) {
                    // A sign before the run belongs to the number.
                    if written >= 1, out[written - 1] == UInt8(ascii: "-") || out[written - 1] == UInt8(ascii: "+"),
                        written == 1 || !isAlphanumeric(out[written - 2])
                    {
                        written -= 1
                    }
                    out[written] = UInt8(ascii: "<"); out[written + 1] = UInt8(ascii: "*"); out[written + 2] = UInt8(ascii: ">")
                    written += 3
                    masked = true
                    i = j
                    continue
                }
            }
            out[written] = base[i]
            written += 1
            i += 1
        }
        return (written, masked)
    }

    /// Numbers, hex, IPv4 (with a port), UUIDs, long hex strings and paths mask whole.
    static func isWhollyVariable(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        // Trailing punctuation a sentence or list puts after a value.
        var n = b.count
        while n > 0, b[n - 1] == UInt8(ascii: ",") || b[n - 1] == UInt8(ascii: ";") || b[n - 1] == UInt8(ascii: ".") { n -= 1 }
        guard n > 0 else { return false }
        let word = UnsafeBufferPointer(rebasing: b[..<n])
        let s = word[...]
        if isNumber(s) || isIPv4(s) || isUUID(s) || isCalendarWord(word) { return true }
        if s.count > 2, s[s.startIndex] == UInt8(ascii: "0"), s[s.index(after: s.startIndex)] | 0x20 == UInt8(ascii: "x"),
            s.dropFirst(2).allSatisfy(isHex)
        {
            return true
        }
        if s.count >= 8, s.allSatisfy(isHex), s.contains(where: isDigit) { return true }
        if s.first == UInt8(ascii: "/"), s.dropFirst().contains(UInt8(ascii: "/")) { return true }
        return false
    }

    /// Day and month names (`Sun`, `Dec`, `[Sun`, `Monday`): the parts of a header's date that are
    /// words, which would otherwise split one message into a template per day. Compared on bytes.
    static func isCalendarWord(_ s: UnsafeBufferPointer<UInt8>) -> Bool {
        var from = 0, to = s.count
        while from < to, s[from] == UInt8(ascii: "[") || s[from] == UInt8(ascii: "(") { from += 1 }
        while to > from, s[to - 1] == UInt8(ascii: "]") || s[to - 1] == UInt8(ascii: ")") || s[to - 1] == UInt8(ascii: ":") { to -= 1 }
        let n = to - from
        guard n >= 3, n <= 9 else { return false }
        let key = UInt32(s[from] | 0x20) << 16 | UInt32(s[from + 1] | 0x20) << 8 | UInt32(s[from + 2] | 0x20)
        guard isCalendarKey(key) else { return false }
        if n == 3 { return true }
        return calendarNames.contains { name in
            guard name.count == n else { return false }
            for k in 0..<n where name[k] != s[from + k] | 0x20 { return false }
            return true
        }
    }
    /// Whether a byte can start a day or month name (either case), or a bracket before one
    /// (written out, as the keys below: a static table costs a lazy-initialisation check per token).
    static func isCalendarInitial(_ b: UInt8) -> Bool {
        switch b | 0x20 {
        case UInt8(ascii: "m"), UInt8(ascii: "t"), UInt8(ascii: "w"), UInt8(ascii: "f"), UInt8(ascii: "s"), UInt8(ascii: "j"),
            UInt8(ascii: "a"), UInt8(ascii: "o"), UInt8(ascii: "n"), UInt8(ascii: "d"):
            return true
        default:
            return b == UInt8(ascii: "[") || b == UInt8(ascii: "(")
        }
    }
    /// The first three letters of a day or month name, lowercase, as `a << 16 | b << 8 | c`.
    static func isCalendarKey(_ key: UInt32) -> Bool {
        switch key {
        case 0x6D6F6E, 0x747565, 0x776564, 0x746875, 0x667269, 0x736174, 0x73756E,  // mon tue wed thu fri sat sun
            0x6A616E, 0x666562, 0x6D6172, 0x617072, 0x6D6179, 0x6A756E, 0x6A756C,  // jan feb mar apr may jun jul
            0x617567, 0x736570, 0x6F6374, 0x6E6F76, 0x646563:  // aug sep oct nov dec
            return true
        default:
            return false
        }
    }
    static let calendarNames: [[UInt8]] = [
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february",
        "march", "april", "june", "july", "august", "september", "october", "november", "december",
    ].map { Array($0.utf8) }

    static func isNumber<C: Collection>(_ s: C) -> Bool where C.Element == UInt8, C.SubSequence == C {
        var t = s
        if let f = t.first, f == UInt8(ascii: "-") || f == UInt8(ascii: "+") { t = t.dropFirst() }
        guard let f = t.first, isDigit(f) else { return false }
        var dots = 0
        for c in t {
            if c == UInt8(ascii: ".") {
                dots += 1
            } else if !isDigit(c) {
                return false
            }
        }
        return dots <= 1
    }

    /// `a.b.c.d` of 1 to 3 digits each, with an optional `:port`.
    static func isIPv4<C: Collection>(_ s: C) -> Bool where C.Element == UInt8 {
        var parts = 0, digits = 0, port = false, portDigits = 0
        for c in s {
            if port {
                guard isDigit(c) else { return false }
                portDigits += 1
            } else if isDigit(c) {
                digits += 1
                if digits > 3 { return false }
            } else if c == UInt8(ascii: "."), digits > 0, parts < 3 {
                parts += 1
                digits = 0
            } else if c == UInt8(ascii: ":"), digits > 0, parts == 3 {
                port = true
            } else {
                return false
            }
        }
        return parts == 3 && digits > 0 && (!port || portDigits > 0)
    }

    static func isUUID<C: Collection>(_ s: C) -> Bool where C.Element == UInt8 {
        guard s.count == 36 else { return false }
        for (i, c) in s.enumerated() {
            if [8, 13, 18, 23].contains(i) {
                if c != UInt8(ascii: "-") { return false }
            } else if !isHex(c) {
                return false
            }
        }
        return true
    }

    static func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
    static func isHex(_ c: UInt8) -> Bool { isDigit(c) || (c | 0x20 >= 97 && c | 0x20 <= 102) }
    static func isAlphanumeric(_ c: UInt8) -> Bool { isDigit(c) || (c | 0x20 >= 97 && c | 0x20 <= 122) || c >= 0x80 }

    // MARK: State

    public static let kind = "eddy.templates"
    public static let formatVersion: UInt32 = 1

    /// The templates and counters; the tree is rebuilt from the templates on restore.
    public func encode(_ w: inout StateWriter) {
        w.write(Self.kind); w.write(Self.formatVersion)
        w.write(nextID); w.write(lines); w.write(evicted)
        w.write(UInt32(templates.count))
        for t in templates.values.sorted(by: { $0.id < $1.id }) {
            w.write(t.id); w.write(t.count); w.write(t.lastLine)
            w.write(UInt32(t.tokens.count))
            for token in t.tokens { w.write(token) }
            w.write(UInt32(t.route.count))
            for key in t.route { w.write(key) }
        }
    }

    /// A miner restored from `encode`, with `configuration` (a smaller `maxTemplates` evicts the
    /// least recently matched at once).
    public static func decode(_ r: inout StateReader, configuration: Configuration = Configuration()) throws -> TemplateMiner {
        guard try r.read(String.self) == kind else { throw StateError.wrongKind(expected: kind) }
        let version = try r.read(UInt32.self)
        guard version == formatVersion else { throw StateError.unsupportedVersion(version) }
        let m = TemplateMiner(configuration: configuration)
        m.nextID = try r.read(UInt32.self)
        guard m.nextID != 0 else { throw StateError.invalid("next template id 0") }
        m.lines = try r.read(UInt64.self)
        m.evicted = try r.read(UInt64.self)
        let count = Int(try r.read(UInt32.self))
        try r.requireRoom(count, each: 24)
        var restored: [Template] = []
        for _ in 0..<count {
            let id = try r.read(UInt32.self), n = try r.read(UInt64.self), last = try r.read(UInt64.self)
            let length = Int(try r.read(UInt32.self))
            guard length <= maximumTokens else { throw StateError.invalid("template of \(length) tokens") }
            try r.requireRoom(length, each: 4)
            let tokens = try (0..<length).map { _ in try r.read(String.self) }
            let depth = Int(try r.read(UInt32.self))
            guard depth <= min(length, 64) else { throw StateError.invalid("template route") }
            let route = try (0..<depth).map { _ in try r.read(String.self) }
            // Written in order of id: 0 names no template, and two templates never share one.
            guard id != 0, id > (restored.last?.id ?? 0) else { throw StateError.invalid("template id \(id) out of order") }
            restored.append(Template(id: id, tokens: tokens, count: n, lastLine: last, route: route))
        }
        let recentFirst = restored.sorted(by: { $0.lastLine > $1.lastLine })
        for var t in recentFirst.prefix(configuration.maxTemplates) {
            t.ids = t.tokens.map { token in Array(token.utf8).withUnsafeBufferPointer { m.vocabulary.intern($0) } }
            m.templates[t.id] = t
            m.leaf(length: t.tokens.count, route: t.route).add(t.id, ids: t.ids)
        }
        m.evicted &+= UInt64(max(0, restored.count - configuration.maxTemplates))
        m.droppedAtRestore = recentFirst.dropFirst(configuration.maxTemplates).map(\.id)
        return m
    }
}
