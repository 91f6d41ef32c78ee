import Foundation
import Learning
import CKernels
@testable import LogMining
import Testing

/// The LogHub samples beside this file (Data/README.md): raw lines and the ground-truth event of each.
func loghub(_ system: String) throws -> (lines: [Substring], events: [Substring]) {
    let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Data")
    let text = try String(contentsOf: dir.appendingPathComponent("\(system)_2k.log"), encoding: .utf8)
    let events = try String(contentsOf: dir.appendingPathComponent("\(system)_2k.events"), encoding: .utf8)
    // `\r\n` is one Character in Swift: split at either.
    return (text.split(whereSeparator: \.isNewline), events.split(whereSeparator: \.isNewline))
}

/// Grouping accuracy (the LogHub yardstick): the share of lines whose group of same-template lines
/// is exactly their ground-truth event's.
func groupingAccuracy(_ predicted: [UInt32], _ truth: [Substring]) -> Double {
    var byPrediction: [UInt32: [Int]] = [:], eventSizes: [Substring: Int] = [:]
    for (i, p) in predicted.enumerated() { byPrediction[p, default: []].append(i) }
    for e in truth { eventSizes[e, default: 0] += 1 }
    var correct = 0
    for group in byPrediction.values {
        let events = Set(group.map { truth[$0] })
        if events.count == 1, eventSizes[truth[group[0]]] == group.count { correct += group.count }
    }
    return Double(correct) / Double(truth.count)
}

@Suite struct TemplateMinerTests {
    /// The written-out calendar checks are the day and month names' initials and first three letters.
    @Test func calendarChecksAreTheNames() {
        let names = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february",
                     "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"]
        for b in 0...255 {
            let lower = (65...90).contains(b) ? UInt8(b) | 0x20 : UInt8(b)
            let initial = names.contains { $0.utf8.first! == lower }
            #expect(TemplateMiner.isCalendarInitial(UInt8(b)) == (initial || b == 0x5B || b == 0x28), "byte \(b)")
        }
        let letters = Array("abcdefghijklmnopqrstuvwxyz".utf8)
        for a in letters { for b in letters { for c in letters {
            let key = UInt32(a) << 16 | UInt32(b) << 8 | UInt32(c)
            #expect(TemplateMiner.isCalendarKey(key) == names.contains { Array($0.utf8.prefix(3)) == [a, b, c] })
        } } }
    }

    @Test func variablePartsAreMasked() {
        let cases: [(String, String)] = [
            ("123", "<*>"), ("-5", "<*>"), ("3.14", "<*>"), ("42,", "<*>"), ("0x1F", "<*>"),
            ("10.251.73.220:50010", "<*>"), ("10.0.0.1", "<*>"), ("123e4567-e89b-12d3-a456-426614174000", "<*>"),
            ("deadbeef12", "<*>"), ("/var/log/app.log", "<*>"), ("sshd[24200]:", "sshd[<*>]:"),
            ("06:55:46", "<*>:<*>:<*>"), ("blk_-6952295868487656571", "blk_<*>"), ("user1", "user1"),
            ("Invalid", "Invalid"), ("ERROR", "ERROR"), ("/", "/"), ("abc-12", "abc-<*>"), ("deadbeef", "deadbeef"),
        ]
        for (token, masked) in cases {
            #expect(TemplateMiner.mask(Substring(token)) == masked, "\(token)")
        }
    }

    @Test func linesOfOneShapeShareATemplateAndItsParametersAreTheirOwn() {
        let miner = TemplateMiner()
        let a = miner.add("Invalid user webmaster from 173.234.31.186")
        let b = miner.add("Invalid user bob from 10.0.0.7")
        let c = miner.add("Accepted password for root from 10.0.0.7 port 22 ssh2")
        #expect(a.isNew && !b.isNew && c.isNew && a.id == b.id && c.id != a.id)
        #expect(b.changed)  // "webmaster" became <*>
        #expect(miner.templates[a.id]?.text == "Invalid user <*> from <*>")
        #expect(b.parameters == ["bob", "10.0.0.7"])
        #expect(miner.match("Invalid user carol from 10.1.1.1") == a.id)
        #expect(miner.match("Connection closed by 10.1.1.1") == nil)
        #expect(miner.templates.count == 2)  // match() learns nothing
    }

    /// Measured on three real logs against LogHub's hand-checked templates, whole raw lines in (the
    /// headers are masked like any other variable part).
    @Test(arguments: [("OpenSSH", 0.7), ("HDFS", 0.95), ("Zookeeper", 0.95)])
    func groupsRealLogsAsTheirGroundTruthDoes(system: String, floor: Double) throws {
        let (lines, events) = try loghub(system)
        #expect(lines.count == 2000 && events.count == 2000)
        let miner = TemplateMiner()
        let ids = lines.map { miner.add($0).id }
        let accuracy = groupingAccuracy(ids, events)
        print("\(system): grouping accuracy \(accuracy), \(miner.templates.count) templates, \(Set(events).count) events")
        #expect(accuracy >= floor)
    }

    /// A template longer than a line can be split into (a damaged or foreign checkpoint) is refused
    /// with an error, not a trap.
    @Test func aCheckpointedTemplateOfTooManyTokensIsRefused() {
        var w = StateWriter()
        w.write(TemplateMiner.kind); w.write(TemplateMiner.formatVersion)
        w.write(UInt32(2)); w.write(UInt64(1)); w.write(UInt64(0))
        w.write(UInt32(1))
        w.write(UInt32(1)); w.write(UInt64(1)); w.write(UInt64(1))
        w.write(UInt32(TemplateMiner.maximumTokens + 1))
        for _ in 0...TemplateMiner.maximumTokens { w.write("x") }
        w.write(UInt32(0))
        var r = StateReader(w.bytes)
        #expect(throws: StateError.self) { try TemplateMiner.decode(&r) }
    }

    @Test func templatesAndTheirIdsSurviveACheckpoint() throws {
        let (lines, _) = try loghub("OpenSSH")
        let original = TemplateMiner()
        for line in lines[..<1000] { _ = original.add(line) }
        var w = StateWriter()
        original.encode(&w)
        var r = StateReader(w.bytes)
        let restored = try TemplateMiner.decode(&r)
        #expect(restored.templates == original.templates && restored.nextID == original.nextID)
        for line in lines[1000...] { #expect(original.add(line) == restored.add(line)) }
    }

    /// Lines of ever-new words found ever-new templates; eviction keeps both the templates and the
    /// vocabulary of their tokens bounded.
    @Test func everNewLinesCannotGrowTheMinerWithoutBound() {
        var c = TemplateMiner.Configuration()
        c.maxTemplates = 10
        let miner = TemplateMiner(configuration: c)
        for i in 0..<5000 { _ = miner.add(Substring("user u\(String(i, radix: 36))x logged in from host h\(String(i * 7, radix: 36))y")) }
        #expect(miner.templates.count == 10 && miner.evicted == 4990)
        #expect(miner.vocabulary.count <= 10 * 7 + 1)
        #expect(miner.vocabulary.words.count - miner.vocabulary.freeIDs.count == miner.vocabulary.count)
        // Every template's token is found under its id, and a forgotten one is not found.
        for t in miner.templates.values {
            for (token, id) in zip(t.tokens, t.ids) {
                #expect(Array(token.utf8).withUnsafeBufferPointer { miner.vocabulary.find($0) } == id)
            }
        }
        #expect(Array("u0x".utf8).withUnsafeBufferPointer { miner.vocabulary.find($0) } == nil)
    }

    /// Lines whose first two tokens are ever-new words (not masked) make branches in the parse tree;
    /// an evicted template's branches go with it, so the tree holds only the kept templates' routes.
    @Test func everNewPrefixesCannotGrowTheTreeWithoutBound() {
        var c = TemplateMiner.Configuration()
        c.maxTemplates = 10
        let miner = TemplateMiner(configuration: c)
        func word(_ i: Int) -> String { String(String(i, radix: 26).map { Character(Unicode.Scalar(UInt8(Int(String($0), radix: 26)! + 97))) }) + "q" }
        for a in 0..<99 { for b in 0..<99 { _ = miner.add(Substring("\(word(a)) \(word(b)) end")) } }
        #expect(miner.templates.count == 10 && miner.evicted == 99 * 99 - 10)
        #expect(miner.branches.count <= 2 * 10 + 1, "\(miner.branches.count) branch tokens for 10 templates")
        func nodes(_ n: TemplateMiner.Node) -> Int { 1 + n.children.values.reduce(0) { $0 + nodes($1) } }
        let total = miner.root.compactMap { $0 }.reduce(0) { $0 + nodes($1) }
        #expect(total <= 1 + 2 * 10, "\(total) nodes for 10 templates")
        // The kept templates are still found through the tree, and new lines still found templates.
        for t in miner.templates.values { #expect(miner.match(Substring(t.tokens.joined(separator: " "))) == t.id) }
        #expect(miner.add("brand new end").isNew && miner.add("brand new end").id == miner.nextID - 1)
    }

    /// Ids wrap after 2^32 − 1 templates, skipping 0 and the ids templates still hold.
    @Test func templateIdsWrapPastTheIdsStillHeld() {
        let miner = TemplateMiner()
        let first = miner.add("alpha beta gamma").id
        #expect(first == 1)
        miner.nextID = UInt32.max - 1
        let ids = ["one two", "three four five", "six", "seven eight"].map { miner.add(Substring($0)).id }
        #expect(ids == [UInt32.max - 1, UInt32.max, 2, 3])
        #expect(miner.add("alpha beta gamma").id == first && miner.templates.count == 5)
    }

    /// A restored state whose ids could not have been written (0, repeated, out of order, or a next
    /// id of 0) is refused: before, it trapped when a template was stored under id 0, or read past a
    /// row of a template whose id another shorter one had taken.
    @Test func impossibleTemplateIdsAreRefusedOnRestore() throws {
        func state(nextID: UInt32, ids: [(UInt32, [String])]) -> [UInt8] {
            var w = StateWriter()
            w.write(TemplateMiner.kind); w.write(TemplateMiner.formatVersion)
            w.write(nextID); w.write(UInt64(10)); w.write(UInt64(0))
            w.write(UInt32(ids.count))
            for (id, tokens) in ids {
                w.write(id); w.write(UInt64(1)); w.write(UInt64(1))
                w.write(UInt32(tokens.count))
                for t in tokens { w.write(t) }
                w.write(UInt32(min(2, tokens.count)))
                for t in tokens.prefix(2) { w.write(t) }
            }
            return w.bytes
        }
        let five = ["a", "b", "c", "d", "e"], three = ["a", "b", "x"]
        var good = StateReader(state(nextID: 3, ids: [(1, five), (2, three)]))
        #expect(try TemplateMiner.decode(&good).templates.count == 2)
        for bad in [state(nextID: 0, ids: []), state(nextID: 3, ids: [(0, five)]), state(nextID: 3, ids: [(1, five), (1, three)]),
                    state(nextID: 3, ids: [(2, five), (1, three)])] {
            var r = StateReader(bad)
            #expect(throws: StateError.self) { try TemplateMiner.decode(&r) }
        }
    }

    @Test func theLeastRecentlyMatchedTemplateIsEvictedAndItsIdNeverComesBack() {
        var c = TemplateMiner.Configuration()
        c.maxTemplates = 2
        let miner = TemplateMiner(configuration: c)
        let first = miner.add("alpha beta gamma").id
        let second = miner.add("one two three four").id
        _ = miner.add("alpha beta gamma")  // first is now the more recent
        let third = miner.add("x y").id     // evicts second
        #expect(miner.evicted == 1 && miner.templates.keys.sorted() == [first, third])
        let again = miner.add("one two three four")  // a new template, with a new id
        #expect(again.isNew && again.id == 4 && miner.templates[first] == nil)
    }

    @Test func aLineOfManyTokensKeepsTheRestOfItInItsLastToken() {
        let miner = TemplateMiner()
        let words = (0..<300).map { "w\(Character(Unicode.Scalar(UInt8(97 + $0 % 26))))" }
        let m = miner.add(Substring(words.joined(separator: " ") + "  "))
        let t = miner.templates[m.id]!
        #expect(t.tokens.count == TemplateMiner.maximumTokens)
        #expect(t.tokens.last == words[(TemplateMiner.maximumTokens - 1)...].joined(separator: " "))
        #expect(miner.add("a b  c").parameters.isEmpty && miner.templates.values.contains { $0.tokens == ["a", "b", "c"] })
    }
}

/// The miner's vocabulary table against a Dictionary doing the same: interning, holds, removal
/// with the probe run shifted back, growth, and ids freed and given again.
@Suite struct ByteTableTests {
    @Test func agreesWithADictionaryThroughInterningAndRemoval() {
        var table = ByteTable(first: Array("<*>".utf8))
        var model: [[UInt8]: (id: Int32, holds: Int)] = [:]
        var seed: UInt64 = 7
        func next() -> UInt64 {  // a fixed sequence, whatever the table's own seed
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return seed >> 33
        }
        // Few distinct words (short, so many share probe runs) and many operations.
        let words = (0..<300).map { i in Array("w\(i % 37)-\(i)".utf8.prefix(1 + i % 9)) + [UInt8(i % 251)] }
        for _ in 0..<20_000 {
            let word = words[Int(next() % UInt64(words.count))]
            if next() % 3 != 0 || model[word] == nil {
                let id = word.withUnsafeBufferPointer { table.intern($0) }
                if let known = model[word] {
                    #expect(known.id == id)
                    model[word] = (id, known.holds + 1)
                } else {
                    #expect(!model.values.contains { $0.id == id }, "a live id given twice")
                    model[word] = (id, 1)
                }
            } else {
                let known = model[word]!
                table.release(known.id)
                model[word] = known.holds == 1 ? nil : (known.id, known.holds - 1)
            }
        }
        #expect(table.count == model.count + 1)
        for word in words {
            #expect(word.withUnsafeBufferPointer { table.find($0) } == model[word]?.id)
        }
        #expect(Array("<*>".utf8).withUnsafeBufferPointer { table.find($0) } == 0)
    }
}

@Suite struct TemplateMapTests {
    /// Random sets, updates and removals over few ids (long probe runs that wrap around the
    /// table, which grows from 16 slots), checked against a Dictionary after every operation's key.
    @Test func agreesWithADictionaryThroughSettingAndRemoval() {
        var map = TemplateMap<Int>()
        var model: [UInt32: Int] = [:]
        var seed: UInt64 = 11
        func next() -> UInt64 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return seed >> 33
        }
        for step in 0..<20_000 {
            // Ids 1 to 600, sparse at first so the table both grows and empties.
            let key = UInt32(1 + next() % UInt64(step < 10_000 ? 600 : 40))
            switch next() % 4 {
            case 0:
                #expect(map.removeValue(forKey: key) == model.removeValue(forKey: key))
            case 1:
                map[key, default: 0] += 3
                model[key, default: 0] += 3
            case 2:
                let seen = map.update(key, default: 5) { v in
                    v *= 2
                    return v
                }
                model[key, default: 5] *= 2
                #expect(seen == model[key])
            default:
                map[key] = step
                model[key] = step
            }
            #expect(map[key] == model[key])
            #expect(map.count == model.count)
        }
        #expect(Dictionary(uniqueKeysWithValues: map.map { ($0.key, $0.value) }) == model)
        #expect(map.sortedEntries.map(\.key) == model.keys.sorted())
        for key in UInt32(0)...601 { #expect(map[key] == model[key]) }
        // Id 0 is no template: absent, and removing it changes nothing.
        #expect(map[0] == nil && map.removeValue(forKey: 0) == nil && map.count == model.count)
    }
}

@Suite struct RecentLinesTests {
    /// Lines that found templates, generalise them (`<*>` appearing in a template a remembered
    /// line found), and evict them (a small cap), interleaved with lines seen before.
    static func churn() -> [Substring] {
        var seed: UInt64 = 5
        func next(_ n: UInt64) -> UInt64 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return (seed >> 33) % n
        }
        let words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
        return (0..<6000).map { _ in
            let kind = next(12), a = words[Int(next(8))], b = words[Int(next(3))]
            return Substring("svc\(kind) \(a) sent \(b) to peer \(next(4) == 0 ? a : "node") in \(next(1000)) ms")
        }
    }

    /// Mining with the recent lines remembered gives what mining every line through the tree gives:
    /// the same templates, changes, evictions and parameters, line for line.
    @Test func rememberingLinesChangesNothing() throws {
        var cases: [(String, [Substring], TemplateMiner.Configuration)] = []
        for system in ["HDFS", "OpenSSH", "Zookeeper"] { cases.append((system, try loghub(system).lines, .init())) }
        var small = TemplateMiner.Configuration()
        small.maxTemplates = 20
        cases.append(("churn", Self.churn(), small))
        // Lines of one leaf over a tiny vocabulary: ties between templates, lines founding
        // templates that lines remembered for another would now prefer.
        var seed: UInt64 = 9
        for length in [3, 8] {
            let tiny = (0..<4000).map { _ -> Substring in
                let words = (0..<length).map { _ -> String in
                    seed = seed &* 6364136223846793005 &+ 1442695040888963407
                    return ["p", "q", "r"][Int((seed >> 33) % 3)]
                }
                return Substring("a b " + words.joined(separator: " "))
            }
            cases.append(("tiny \(length)", tiny, .init()))
        }
        // A template founded after a line was remembered for another, and one the line now prefers:
        // after K generalises T to "a b c d e f g h <*> <*>" (8 of K's tokens), L founds a template
        // with 9 of them.
        let k: Substring = "a b c d e f g h X Y"
        cases.append(("founded", ["a b c d e f g h i j", k, k, "a b c d e f g Z X Y", k], .init()))
        cases.append(("OpenSSH, 20 templates", try loghub("OpenSSH").lines, small))
        for (name, lines, configuration) in cases {
            let remembering = TemplateMiner(configuration: configuration), plain = TemplateMiner(configuration: configuration)
            plain.remembersLines = false
            var differ = 0
            for line in lines where remembering.add(line) != plain.add(line) { differ += 1 }
            #expect(differ == 0, "\(name): \(differ) lines mined differently")
            #expect(remembering.templates == plain.templates && remembering.evicted == plain.evicted, "\(name)")
            if name == "churn" { #expect(plain.evicted > 0 && remembering.recent.entries.contains { $0.epoch == remembering.epoch }) }
        }
    }
}

@Suite struct TokenizeTests {
    /// What `eddy_tokenize` must do, byte by byte (the miner's tokeniser before it was C).
    static func reference(_ b: [UInt8], max: Int) -> [(Range<Int>, Bool)] {
        var out: [(Range<Int>, Bool)] = [], start = -1, digit = false
        func blank(_ c: UInt8) -> Bool { c == 32 || c == 9 || c == 13 }
        for (i, c) in b.enumerated() {
            if blank(c) {
                if start >= 0, out.count < max - 1 {
                    out.append((start..<i, digit))
                    start = -1
                    digit = false
                }
            } else {
                if start < 0 { start = i }
                digit = digit || c &- 48 < 10
            }
        }
        if start >= 0 {
            var end = b.count
            while end > start, blank(b[end - 1]) { end -= 1 }
            out.append((start..<end, digit))
        }
        return out
    }

    /// Random lines (blanks of every kind in runs, digits, bytes above 127, lengths across the
    /// 16-byte blocks, more tokens than the cap) split as the reference splits them.
    @Test func agreesWithTheReference() {
        var seed: UInt64 = 1
        func next(_ n: Int) -> Int {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Int((seed >> 33) % UInt64(n))
        }
        let alphabet: [UInt8] = [32, 32, 32, 9, 13, 48, 57, 47, 58, 97, 122, 65, 0x80, 0xFF, 0x2F, 0x3A, 0x20 + 0x10]
        let starts = UnsafeMutablePointer<Int>.allocate(capacity: 128), ends = UnsafeMutablePointer<Int>.allocate(capacity: 128)
        let digits = UnsafeMutablePointer<Bool>.allocate(capacity: 128)
        defer { starts.deallocate(); ends.deallocate(); digits.deallocate() }
        for round in 0..<20_000 {
            let length = round < 2000 ? round % 70 : next(600)
            let line = (0..<length).map { _ in next(3) == 0 ? UInt8(97 + next(26)) : alphabet[next(alphabet.count)] }
            let max = [1, 2, 3, 7, 128][next(5)]
            let n = line.withUnsafeBufferPointer { eddy_tokenize($0.baseAddress, $0.count, starts, ends, digits, max) }
            let got = (0..<n).map { (starts[$0]..<ends[$0], digits[$0]) }
            let want = Self.reference(line, max: max)
            #expect(got.count == want.count && zip(got, want).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }, "\(line), max \(max)")
            if got.count != want.count || !zip(got, want).allSatisfy({ $0.0 == $1.0 && $0.1 == $1.1 }) { break }
        }
    }
}
