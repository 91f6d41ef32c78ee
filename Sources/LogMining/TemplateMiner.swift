import Learning

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
/// recently. Template ids count up from 1 and are never reused, so an id names one template for
/// the stream's whole life, across restarts (the state is checkpointed).
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
        /// The line's own text at each `<*>` of the template, before masking, in order.
        public let parameters: [Substring]
        /// The template evicted to make room for this one (0: none).
        public var evicted: UInt32 = 0
    }

    public static let wildcard = "<*>"
    public let configuration: Configuration
    public private(set) var templates: [UInt32: Template] = [:]
    public private(set) var nextID: UInt32 = 1
    /// Lines seen, and templates evicted.
    public private(set) var lines: UInt64 = 0
    public private(set) var evicted: UInt64 = 0

    /// Tree: token count, then the prefix tokens, then the templates at the leaf.
    final class Node {
        var children: [Substring: Node] = [:]
        var templates: [UInt32] = []
    }
    var root: [Int: Node] = [:]

    /// Every token some template holds, by id, with how many template positions hold it (a token
    /// no template holds any more is forgotten, so lines of ever-new values cannot grow it).
    /// Keys are Substrings of Strings of their own (a line's Substring looks them up without a copy).
    var vocabulary: [Substring: Int32] = [wildcardKey: 0]
    var words: [Substring] = [wildcardKey]
    static let wildcardKey = Substring(wildcard)
    var references: [Int32] = [0]
    var freeIDs: [Int32] = []

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    // MARK: Mining

    /// Mines one line.
    public func add(_ line: Substring) -> Match {
        lines &+= 1
        // The per-line arrays are the miner's, kept from line to line (taken out while in use, so
        // each stays uniquely referenced and is refilled in place instead of allocated).
        var raw = scratch.raw, masks = scratch.masks, tokens = scratch.tokens, ids = scratch.ids
        scratch = Scratch()
        defer { scratch = Scratch(raw: raw, masks: masks, tokens: tokens, ids: ids) }
        Self.split(line, into: &raw)
        masks.removeAll(keepingCapacity: true)
        tokens.removeAll(keepingCapacity: true)
        for token in raw {
            let m = Self.masked(token)
            masks.append(m)
            tokens.append(m.map { Substring($0) } ?? token)
        }
        lookUp(tokens, into: &ids)
        let (leaf, route) = self.leaf(for: tokens, masks: masks, creating: true)!
        if let (id, _) = best(in: leaf, ids) {
            // In place: a copy of the template would copy its arrays on every line.
            var changed = false
            let held = templates[id]!.ids
            for i in 0..<held.count where held[i] != ids[i] && held[i] != 0 {
                release(held[i])
                templates[id]!.ids[i] = 0
                templates[id]!.tokens[i] = Self.wildcard
                changed = true
            }
            templates[id]!.count &+= 1
            templates[id]!.lastLine = lines
            return Match(id: id, isNew: false, changed: changed, parameters: parameters(templates[id]!.ids, raw, masks))
        }
        let evictedID = templates.count >= configuration.maxTemplates ? evictOne() : 0
        let id = nextID
        nextID &+= 1
        var t = Template(id: id, tokens: tokens.map(String.init), count: 1, lastLine: lines, route: route.map(String.init))
        t.ids = tokens.map(intern)
        templates[id] = t
        leaf.templates.append(id)
        return Match(id: id, isNew: true, changed: false, parameters: parameters(t.ids, raw, masks), evicted: evictedID)
    }

    /// The template `line` would join, without learning anything from it (nil: it would be new).
    public func match(_ line: Substring) -> UInt32? {
        let raw = Self.split(line)
        let masks = raw.map(Self.masked)
        var tokens = raw
        for i in 0..<raw.count { if let m = masks[i] { tokens[i] = Substring(m) } }
        guard let (leaf, _) = leaf(for: tokens, masks: masks, creating: false) else { return nil }
        return best(in: leaf, lookUp(tokens))?.id
    }

    /// The line's tokens: what lies between spaces, tabs and carriage returns (split on bytes, not
    /// on Characters: grapheme breaking is most of the cost otherwise).
    static func split(_ line: Substring) -> [Substring] {
        var out: [Substring] = []
        split(line, into: &out)
        return out
    }

    /// `split` into `out` (emptied first).
    /// At most `maximumTokens` tokens: the last holds the rest of the line (so a template's size,
    /// and what a stream's memory budget charges for it, stays bounded whatever a line holds).
    static func split(_ line: Substring, into out: inout [Substring]) {
        out.removeAll(keepingCapacity: true)
        let u = line.utf8
        var i = u.startIndex
        var start: Substring.Index?
        while i != u.endIndex {
            let c = u[i]
            if c == 32 || c == 9 || c == 13 {
                if let s = start, out.count < maximumTokens - 1 {
                    out.append(line[s..<i])
                    start = nil
                }
            } else if start == nil {
                start = i
            }
            u.formIndex(after: &i)
        }
        if let s = start {
            // The rest, without the blanks it may end with.
            var end = u.endIndex
            while end > s, let c = Optional(u[u.index(before: end)]), c == 32 || c == 9 || c == 13 { end = u.index(before: end) }
            out.append(line[s..<end])
        }
    }

    /// Tokens a line is split into at most.
    public static let maximumTokens = 128

    /// The tokens' vocabulary ids; a token no template holds gets an id of its own below zero.
    func lookUp(_ tokens: [Substring]) -> [Int32] {
        var ids: [Int32] = []
        lookUp(tokens, into: &ids)
        return ids
    }

    /// `lookUp` into `ids` (emptied first).
    func lookUp(_ tokens: [Substring], into ids: inout [Int32]) {
        ids.removeAll(keepingCapacity: true)
        for i in 0..<tokens.count { ids.append(vocabulary[tokens[i]] ?? -Int32(truncatingIfNeeded: i + 1)) }
    }

    /// What `add` works in, kept between lines.
    struct Scratch {
        var raw: [Substring] = [], masks: [String?] = [], tokens: [Substring] = [], ids: [Int32] = []
    }
    var scratch = Scratch()

    /// The token's id, held once more.
    func intern(_ token: Substring) -> Int32 {
        if let id = vocabulary[token] {
            if id != 0 { references[Int(id)] += 1 }
            return id
        }
        let token = Substring(String(token))  // its own storage, not the line's
        let id: Int32
        if let free = freeIDs.popLast() {
            id = free
            words[Int(id)] = token
            references[Int(id)] = 1
        } else {
            id = Int32(words.count)
            words.append(token)
            references.append(1)
        }
        vocabulary[token] = id
        return id
    }

    /// One hold on the token fewer; at none it is forgotten.
    func release(_ id: Int32) {
        guard id > 0 else { return }
        references[Int(id)] -= 1
        if references[Int(id)] == 0 {
            vocabulary[words[Int(id)]] = nil
            words[Int(id)] = ""
            freeIDs.append(id)
        }
    }

    /// The most similar template at the leaf, if similar enough.
    func best(in leaf: Node, _ tokens: [Int32]) -> (id: UInt32, similarity: Double)? {
        var found: (id: UInt32, similarity: Double, wildcards: Int)?
        for id in leaf.templates {
            guard let t = templates[id], t.ids.count == tokens.count else { continue }
            var same = 0, wildcards = 0
            for i in 0..<tokens.count {
                // A masked value meets a masked value: the same; a parameter the template learned
                // meets anything: not evidence either way, but counted to break ties.
                if t.ids[i] == tokens[i] {
                    same += 1
                } else if t.ids[i] == 0 {
                    wildcards += 1
                }
            }
            let similarity = tokens.isEmpty ? 1 : Double(same) / Double(tokens.count)
            if found == nil || similarity > found!.similarity || (similarity == found!.similarity && wildcards > found!.wildcards) {
                found = (id, similarity, wildcards)
            }
        }
        guard let found, found.similarity >= configuration.similarity else { return nil }
        return (found.id, found.similarity)
    }

    /// The leaf for these tokens (by count, then by the prefix tokens) and the branches taken.
    func leaf(for tokens: [Substring], masks: [String?], creating: Bool) -> (Node, [Substring])? {
        var node: Node
        if let n = root[tokens.count] {
            node = n
        } else {
            guard creating else { return nil }
            node = Node()
            root[tokens.count] = node
        }
        var route: [Substring] = []
        for (i, token) in tokens.prefix(configuration.prefixDepth).enumerated() {
            let key = masks[i] != nil ? Self.wildcardKey : token
            if let next = node.children[key] {
                node = next
                route.append(key)
            } else if let any = node.children[Self.wildcardKey], !creating || node.children.count >= configuration.maxChildren {
                node = any
                route.append(Self.wildcardKey)
            } else {
                guard creating else { return nil }
                // The last free branch goes to `<*>`, which takes every new token from then on.
                let branch = node.children.count + 1 >= configuration.maxChildren ? Self.wildcardKey : Substring(String(key))
                let next = node.children[branch] ?? Node()
                node.children[branch] = next
                node = next
                route.append(branch)
            }
        }
        return (node, route)
    }

    /// The leaf at the end of `route` under token count `length`, made if missing.
    func leaf(length: Int, route: [String]) -> Node {
        var node = root[length] ?? Node()
        root[length] = node
        for key in route {
            let next = node.children[Substring(key)] ?? Node()
            node.children[Substring(key)] = next
            node = next
        }
        return node
    }

    /// Removes the template matched least recently (its id is never given again); returns its id.
    @discardableResult
    func evictOne() -> UInt32 {
        guard let oldest = templates.values.min(by: { $0.lastLine < $1.lastLine }) else { return 0 }
        templates[oldest.id] = nil
        leaf(length: oldest.tokens.count, route: oldest.route).templates.removeAll { $0 == oldest.id }
        for id in oldest.ids { release(id) }
        evicted &+= 1
        return oldest.id
    }

    /// The line's tokens where the template has `<*>`, or a masked value.
    func parameters(_ template: [Int32], _ raw: [Substring], _ masks: [String?]) -> [Substring] {
        var out: [Substring] = []
        for i in 0..<min(template.count, raw.count) where template[i] == 0 || masks[i] != nil {
            out.append(raw[i])
        }
        return out
    }

    // MARK: Masking

    /// The token with its variable parts as `<*>`.
    public static func mask(_ token: Substring) -> String { masked(token) ?? String(token) }

    /// The token with its variable parts as `<*>`, or nil if it has none (the common case, checked
    /// without allocating).
    static func masked(_ token: Substring) -> String? {
        // Only a digit, a leading '/' or a letter can start a variable part (a calendar word).
        let utf8 = token.utf8
        guard let first = utf8.first else { return nil }
        if first != UInt8(ascii: "/") && !utf8.contains(where: isDigit) {
            // A calendar word or nothing: 3 to 11 bytes (with brackets) starting with a letter that
            // starts a day or month name.
            let n = utf8.count
            guard n >= 3 && n <= 11, calendarInitial[Int(first)] else { return nil }
            return (utf8.withContiguousStorageIfAvailable { isCalendarWord($0[...]) } ?? isCalendarWord(Array(utf8)[...]))
                ? wildcard : nil
        }
        // A Substring of a native String is contiguous UTF-8: read it in place.
        return utf8.withContiguousStorageIfAvailable(maskBytes) ?? Array(utf8).withUnsafeBufferPointer(maskBytes)
    }

    /// `masked` on a token's bytes, once it may hold a variable part.
    static func maskBytes(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
        if isWhollyVariable(bytes[...]) { return wildcard }
        // Runs of digits bounded by what is neither a letter nor a digit.
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0, masked = false
        while i < bytes.count {
            if isDigit(bytes[i]), i == 0 || !isAlphanumeric(bytes[i - 1]) {
                var j = i
                while j < bytes.count && isDigit(bytes[j]) { j += 1 }
                if j == bytes.count || !isAlphanumeric(bytes[j]) {
                    // A sign before the run belongs to the number.
                    if let last = out.last, last == UInt8(ascii: "-") || last == UInt8(ascii: "+"),
                        out.count == 1 || !isAlphanumeric(out[out.count - 2])
                    {
                        out.removeLast()
                    }
                    out += Array(wildcard.utf8)
                    masked = true
                    i = j
                    continue
                }
            }
            out.append(bytes[i])
            i += 1
        }
        return masked ? String(decoding: out, as: UTF8.self) : nil
    }

    /// Numbers, hex, IPv4 (with a port), UUIDs, long hex strings and paths mask whole.
    static func isWhollyVariable<C: BidirectionalCollection>(_ b: C) -> Bool where C.Element == UInt8, C.SubSequence == C {
        guard !b.isEmpty else { return false }
        var s = b
        // Trailing punctuation a sentence or list puts after a value.
        while let last = s.last, last == UInt8(ascii: ",") || last == UInt8(ascii: ";") || last == UInt8(ascii: ".") {
            s = s.dropLast()
        }
        guard !s.isEmpty else { return false }
        if isNumber(s) || isIPv4(s) || isUUID(s) || isCalendarWord(s) { return true }
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
    static func isCalendarWord<C: BidirectionalCollection>(_ s: C) -> Bool where C.Element == UInt8, C.SubSequence == C {
        var t = s
        while let f = t.first, f == UInt8(ascii: "[") || f == UInt8(ascii: "(") { t = t.dropFirst() }
        while let l = t.last, l == UInt8(ascii: "]") || l == UInt8(ascii: ")") || l == UInt8(ascii: ":") { t = t.dropLast() }
        guard t.count >= 3, t.count <= 9 else { return false }
        var i = t.startIndex
        let a = t[i]
        t.formIndex(after: &i)
        let b = t[i]
        t.formIndex(after: &i)
        let key = UInt32(a | 0x20) << 16 | UInt32(b | 0x20) << 8 | UInt32(t[i] | 0x20)
        guard calendarKeys.contains(key) else { return false }
        if t.count == 3 { return true }
        return calendarNames.contains { name in
            name.count == t.count && zip(name, t).allSatisfy { $0 == $1 | 0x20 }
        }
    }
    /// Whether a byte can start a day or month name (either case), or a bracket before one.
    static let calendarInitial: [Bool] = (0..<256).map { b in
        "mtwfsjaondMTWFSJAOND[(".utf8.contains(UInt8(b))
    }
    static let calendarKeys: [UInt32] = [
        "mon", "tue", "wed", "thu", "fri", "sat", "sun",
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ].map { w in w.utf8.reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
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
        m.lines = try r.read(UInt64.self)
        m.evicted = try r.read(UInt64.self)
        let count = Int(try r.read(UInt32.self))
        try r.requireRoom(count, each: 24)
        var restored: [Template] = []
        for _ in 0..<count {
            let id = try r.read(UInt32.self), n = try r.read(UInt64.self), last = try r.read(UInt64.self)
            let length = Int(try r.read(UInt32.self))
            try r.requireRoom(length, each: 4)
            let tokens = try (0..<length).map { _ in try r.read(String.self) }
            let depth = Int(try r.read(UInt32.self))
            guard depth <= min(length, 64) else { throw StateError.invalid("template route") }
            let route = try (0..<depth).map { _ in try r.read(String.self) }
            guard id < m.nextID else { throw StateError.invalid("template id") }
            restored.append(Template(id: id, tokens: tokens, count: n, lastLine: last, route: route))
        }
        for var t in restored.sorted(by: { $0.lastLine > $1.lastLine }).prefix(configuration.maxTemplates) {
            t.ids = t.tokens.map { m.intern(Substring($0)) }
            m.templates[t.id] = t
            m.leaf(length: t.tokens.count, route: t.route).templates.append(t.id)
        }
        m.evicted &+= UInt64(max(0, restored.count - configuration.maxTemplates))
        return m
    }
}
