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

    /// The distance is to the nearest earlier window that does not overlap the newest: a twin 16
    /// values back counts, one 15 back does not. It speaks once 32 earlier windows and 20
    /// log-distances are there: from the 83rd value.
    @Test func theNearestEarlierWindowThatDoesNotOverlap() throws {
        var random = RandomSource(seed: 2)
        let noise = (0..<100).map { _ in random.normal() }
        // A window that ends exactly 16 values after an earlier copy of itself: distance 0.
        let e = EarlyScore()
        for x in noise + noise.suffix(16) { _ = e.read(x) }
        #expect(try #require(e.nearest()) < 1e-9)
        // Its copy 15 values back overlaps it: not a twin.
        let f = EarlyScore()
        let overlapped = noise + noise.suffix(15)  // the newest 16 values equal the 16 ending 15 back
        for x in overlapped { _ = f.read(x) }
        let brute: Double = {
            let x = overlapped.map(Double.init), n = x.count, w = 16
            func centred(_ s: Int) -> [Double] { let v = Array(x[s..<(s + w)]); let m = v.reduce(0, +) / Double(w); return v.map { $0 - m } }
            let now = centred(n - w)
            return (0...(n - 2 * w)).map { s in zip(centred(s), now).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Double(w) }.min()!
        }()
        let d = try #require(f.nearest())
        #expect(d > 0.01 && abs(d - brute) < 1e-9 * max(1, brute), "\(d) against \(brute)")

        let g = EarlyScore()
        let first = Self.wave(200).enumerated().first { g.read($0.element) != nil }?.offset
        #expect(first == 82, "the first surprise at value \(String(describing: first))")
    }

    /// A cycle held flat while the stream warms up scores far above the normal cycles around it; the
    /// score stays 0 only before the early score can speak.
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
        #expect(early.retired && early.values.isEmpty)

        var vector = StreamConfiguration().resolved(dim: 3)
        #expect(StreamPipeline(name: "v", settings: vector).chain.early == nil, "a sensor vector has none")
        vector = StreamConfiguration().resolved(dim: 1)
        vector.earlyScore = false
        #expect(StreamPipeline(name: "u", settings: vector).chain.early == nil)
        let parsed = try ConfigurationFile.parse("[stream]\nearly_score = false\n")
        #expect(!parsed.streamDefaults.earlyScore)
        #expect(StreamConfiguration().resolved(dim: 1).memoryEstimate - vector.memoryEstimate == EarlyScore.bytes)
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
        #expect(e.count == o.count && e.values == o.values && e.calibrator == o.calibrator && !e.retired)
        #expect(feed(p, 250..<700) == feed(restored, 250..<700))
        let warm = try StreamPipeline.restore(p.serialized(), settings: settings)
        #expect(try #require(warm.chain.early).retired)
        // A damaged section is refused, not read.
        var w = StateWriter()
        o.encode(&w)
        var bytes = w.bytes
        bytes[0] = 7
        var r = StateReader(bytes)
        #expect(throws: StateError.self) { try EarlyScore().decode(&r, version: 1) }
    }
}
