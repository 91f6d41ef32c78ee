import Foundation
import Learning
@testable import Pipeline
import Testing

/// A univariate stream's score while it warms up (`early_score`, `EarlyScore`).
@Suite struct EarlyScoreTests {
    /// A sine of period 40 with noise; the cycle starting at `flat` (if any) held at its first value.
    static func wave(_ n: Int, flat: Int? = nil, seed: UInt64 = 5) -> [Float] {
        var random = RandomSource(seed: seed)
        return (0..<n).map { t in
            let u = flat.map { t >= $0 && t < $0 + 40 ? $0 : t } ?? t
            return sinf(Float(u) * 2 * .pi / 40) + 0.05 * random.normal()
        }
    }

    /// The nearest earlier window's distance worked out directly: the newest 16 values and every
    /// 16 of the newest 512 that end before them, means removed, mean squared difference.
    static func direct(_ values: [Float]) -> Double {
        let x = values.suffix(512).map(Double.init), n = x.count, w = 16
        func centred(_ s: Int) -> [Double] {
            let v = Array(x[s..<(s + w)])
            let m = v.reduce(0, +) / Double(w)
            return v.map { $0 - m }
        }
        let now = centred(n - w)
        return (0...(n - 2 * w)).map { s in zip(centred(s), now).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Double(w) }.min()!
    }

    /// The distance is to the nearest earlier window that does not overlap the newest: a twin 16
    /// values back counts, one 15 back does not. It speaks once 32 earlier windows and 20
    /// log-distances are there: from the 83rd value.
    @Test func theNearestEarlierWindowThatDoesNotOverlap() throws {
        var random = RandomSource(seed: 2)
        let noise = (0..<100).map { _ in random.normal() }
        // A window that ends exactly 16 values after an earlier copy of itself: distance 0.
        let e = EarlyScore()
        for x in noise + noise.suffix(16) { _ = e.read(x) }
        #expect(try #require(e.lastDistance) < 1e-9)
        // The last 15 values again, 15 later: the only near twin of the newest 16 overlaps them.
        let f = EarlyScore()
        let overlapped = noise + noise.suffix(15)
        for x in overlapped { _ = f.read(x) }
        let brute = Self.direct(overlapped)
        let d = try #require(f.lastDistance)
        #expect(d > 0.01 && abs(d - brute) < 1e-9 * max(1, brute), "\(d) against \(brute)")

        let g = EarlyScore()
        let first = Self.wave(200).enumerated().first { g.read($0.element) != nil }?.offset
        #expect(first == 82, "the first surprise at value \(String(describing: first))")
    }

    /// A cycle held flat while the stream warms up scores far above the normal cycles around it.
    @Test func aChangeOfShapeWhileWarmingUpScoresHigh() {
        let e = EarlyScore()
        var normal: Float = -.infinity, flat: Float = -.infinity
        for (t, x) in Self.wave(400, flat: 300).enumerated() {
            guard let z = e.read(x) else { continue }
            if t >= 150 && t < 300 { normal = max(normal, z) }
            if t >= 300 && t < 340 { flat = max(flat, z) }
        }
        #expect(flat > 4 && flat > normal + 2, "flat cycle \(flat), normal cycles at most \(normal)")
    }

    /// Through a stream: while it warms up it scores from its first scored sample on, never alerts,
    /// and once warm it retires; after that every score, alert strength and alert is the one it
    /// would have had with `early_score = false`.
    @Test func aWarmStreamScoresAsWithoutIt() throws {
        let xs = Self.wave(800, flat: 300)
        func run(_ early: Bool) -> (StreamPipeline, ScoredBatch) {
            var settings = StreamConfiguration().resolved(dim: 1)
            settings.earlyScore = early
            let p = StreamPipeline(name: "s", settings: settings)
            var all: ScoredBatch? = nil
            for t in 0..<xs.count {
                let r = [xs[t]].withUnsafeBufferPointer { p.score($0.baseAddress!, count: 1, firstSequence: UInt64(t)) }
                while p.trainStep() {}
                if all == nil { all = r } else {
                    all!.scores += r.scores; all!.alertScores += r.alertScores; all!.alerts += r.alerts; all!.warmingUp += r.warmingUp
                }
            }
            return (p, all!)
        }
        let (p, with) = run(true), (_, without) = run(false)
        let warm = try #require(with.warmingUp.firstIndex(of: false))
        #expect(warm > 400, "\(warm)")
        #expect(without.scores[..<warm].allSatisfy { $0 == 0 })
        #expect(with.scores[127..<warm].allSatisfy { $0 > 0 }, "scored from the first row (128 values)")
        #expect(with.scores[..<127].allSatisfy { $0 == 0 })
        #expect(!with.alerts[..<warm].contains(true) && with.alertScores[..<warm].allSatisfy { $0 == 0 })
        let flat = with.scores[300..<340].max()!, normal = with.scores[150..<300].max()!
        #expect(flat > 0.9999 && normal < flat, "flat cycle \(flat), normal \(normal)")
        #expect(Array(with.scores[warm...]) == Array(without.scores[warm...]))
        #expect(Array(with.alertScores[warm...]) == Array(without.alertScores[warm...]))
        #expect(Array(with.alerts[warm...]) == Array(without.alerts[warm...]))
        let early = try #require(p.chain.early)
        #expect(early.retired && early.discord == nil)

        var vector = StreamConfiguration().resolved(dim: 3)
        #expect(StreamPipeline(name: "v", settings: vector).chain.early == nil, "a sensor vector has none")
        vector = StreamConfiguration().resolved(dim: 1)
        vector.earlyScore = false
        #expect(StreamPipeline(name: "u", settings: vector).chain.early == nil)
        let parsed = try ConfigurationFile.parse("[stream]\nearly_score = false\n")
        #expect(!parsed.streamDefaults.earlyScore)
        #expect(StreamConfiguration().resolved(dim: 1).memoryEstimate - vector.memoryEstimate == EarlyScore.bytes)
    }

    /// A stream that stays warm-up long (a large first batch, a long `warmup_samples`) compares with
    /// its newest 512 values only, through its rings' wrap; restored from its section
    /// at any point, it reads on exactly.
    @Test func aLongWarmUpComparesWithTheNewest512Values() throws {
        var random = RandomSource(seed: 8)
        let xs = (0..<1300).map { t in sinf(Float(t) * 2 * .pi / 37) + 0.2 * random.normal() + (t % 401 < 20 ? 1 : 0) }
        let e = EarlyScore()
        var restored: EarlyScore? = nil
        for t in xs.indices {
            let z = e.read(xs[t])
            if let r = restored { #expect(r.read(xs[t]) == z, "value \(t)") }
            if [100, 700, 1100].contains(t) {
                let d = try #require(e.lastDistance)
                let brute = Self.direct(Array(xs[...t]))
                #expect(abs(d - brute) < 1e-9 * max(1, brute), "value \(t): \(d) against \(brute)")
            }
            if t == 1030 {
                var w = StateWriter()
                e.encode(&w)
                var r = StateReader(w.bytes)
                let copy = EarlyScore()
                try copy.decode(&r, version: EarlyScore.stateVersion)
                #expect(copy.count == e.count && copy.calibrator == e.calibrator)
                restored = copy
            }
        }
        #expect(e.count == 1300)
    }

    /// A damaged section is refused, not read: a flag that is neither 0 nor 1, more values than it
    /// has read, a count past 2⁶², a value that is not finite, bytes missing, an unknown version. A
    /// version 1 section (before the discord's own) starts afresh.
    @Test func aDamagedSectionIsRefused() throws {
        let e = EarlyScore()
        for x in Self.wave(600) { _ = e.read(x) }
        var w = StateWriter()
        e.encode(&w)
        let good = w.bytes
        func refused(_ bytes: [UInt8]) -> Bool {
            var r = StateReader(bytes)
            do { try EarlyScore().decode(&r, version: EarlyScore.stateVersion) } catch { return true }
            return false
        }
        #expect(!refused(good))
        #expect(refused([7] + good.dropFirst()))
        #expect(refused(Array(good.dropLast(3))))
        #expect(throws: StateError.self) {
            var r = StateReader(good)
            try EarlyScore().decode(&r, version: 3)
        }
        var old = StateReader([1, 2, 3])
        let fresh = EarlyScore()
        try fresh.decode(&old, version: 1)
        #expect(fresh.count == 0 && !fresh.retired)
        // Sections written by hand: the flag, the early score's calibrator, then the discord's section
        // (its count, moments, its own calibrator, and the values kept).
        func section(count: UInt64, values: [Double]) -> [UInt8] {
            var w = StateWriter()
            w.write(UInt32(0))
            var c = Calibrator(horizon: 50, holdOff: 3)
            for x: Float in [1, 2, 3, 4] { _ = c.score(logError: x); c.update(logError: x) }
            c.encode(&w)
            var inner = StateWriter()
            inner.write(count)
            inner.write(Double(0.5).bitPattern)
            inner.write(Double(2).bitPattern)
            Calibrator(horizon: 1, holdOff: 0).encode(&inner)
            inner.write(UInt32(values.count))
            for v in values { inner.write(v.bitPattern) }
            w.write(blob: inner.bytes)
            return w.bytes
        }
        // Its calibrator's own horizon and hold-off are not kept (the early score's are).
        var r = StateReader(section(count: 40, values: (0..<40).map { sin(Double($0)) }))
        let handmade = EarlyScore()
        try handmade.decode(&r, version: EarlyScore.stateVersion)
        #expect(handmade.count == 40 && handmade.calibrator.horizon == EarlyScore().calibrator.horizon && handmade.calibrator.holdOff == 0)
        #expect(handmade.calibrator.count == 4)
        #expect(refused(section(count: (1 << 62) + 1, values: [])), "a count past the limit")
        #expect(refused(section(count: 5, values: (0..<10).map(Double.init))), "more values than read")
        #expect(refused(section(count: 40, values: (0..<39).map(Double.init) + [.nan])), "a value that is not finite")
    }

    /// Checkpointed while it warms up, a stream reads on exactly as the original; checkpointed warm,
    /// its early score comes back retired.
    @Test func restoredItReadsOnAsTheOriginal() throws {
        let xs = Self.wave(700, flat: 300)
        let settings = StreamConfiguration().resolved(dim: 1)
        let p = StreamPipeline(name: "s", settings: settings)
        func feed(_ p: StreamPipeline, _ range: Range<Int>) -> [Float] {
            range.flatMap { t in
                let r = [xs[t]].withUnsafeBufferPointer { p.score($0.baseAddress!, count: 1, firstSequence: UInt64(t)) }
                while p.trainStep() {}
                return r.scores
            }
        }
        _ = feed(p, 0..<250)
        let restored = try StreamPipeline.restore(p.serialized(), settings: settings)
        let e = try #require(restored.chain.early), o = try #require(p.chain.early)
        #expect(e.count == o.count && e.calibrator == o.calibrator && !e.retired)
        #expect(feed(p, 250..<700) == feed(restored, 250..<700))
        let warm = try StreamPipeline.restore(p.serialized(), settings: settings)
        #expect(try #require(warm.chain.early).retired)
        // A checkpoint without the section (early_score off, or an older daemon's) starts it afresh;
        // one with it restores under early_score = false without it.
        var off = settings
        off.earlyScore = false
        let q = StreamPipeline(name: "s", settings: off)
        _ = feed(q, 0..<250)
        let fresh = try #require(try StreamPipeline.restore(q.serialized(), settings: settings).chain.early)
        #expect(fresh.count == 0 && !fresh.retired)
        let young = StreamPipeline(name: "s", settings: settings)
        _ = feed(young, 0..<250)
        #expect(try StreamPipeline.restore(young.serialized(), settings: off).chain.early == nil)
    }
}
