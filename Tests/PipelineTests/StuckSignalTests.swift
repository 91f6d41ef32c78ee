import EddyProtocol
import Foundation
import Learning
@testable import Pipeline
import Testing

@Suite struct StuckSignalTests {
    static func feed(_ s: StuckSignal, _ row: [Float], anomalous: Bool = false) -> Reading {
        DiscordSignalTests.feed(s, row, anomalous: anomalous)
    }

    /// One row as the chain gives it: read, then learned as anomalous if the reading is strong
    /// (a stuck sample's strength 1 passes every threshold).
    static func step(_ s: StuckSignal, _ row: [Float]) -> Reading {
        var row = row
        return row.withUnsafeMutableBufferPointer { b in
            var o = Observation(values: UnsafePointer(b.baseAddress!), dimension: b.count, logError: 0, modelReady: true)
            let r = s.read(&o)
            s.learn(o, anomalous: r.strength >= 1)
            return r
        }
    }

    /// Channel 0 noisy, channel 1 a level drawn from {0, 1, 2, 3} that repeats about half the time.
    static func rows(_ n: Int, seed: UInt64 = 5) -> [[Float]] {
        var r = RandomSource(seed: seed)
        var level: Float = 0
        return (0..<n).map { _ in
            if r.uniform() < 0.5 { level = Float(Int(r.uniform() * 4) % 4) }
            return [r.normal(), level]
        }
    }

    /// A noisy channel is stuck at its `minimumRun`th equal value, not one before; the reading is
    /// strong, certain of nothing, and names the channel; `holdOff` values later it stops.
    @Test func aNoisyChannelIsStuckAtTheMinimumRun() {
        let s = StuckSignal(channels: 2, minimumRun: 10, holdOff: 50)
        var r = RandomSource(seed: 1)
        for _ in 0..<300 { #expect(Self.feed(s, [r.normal(), r.normal()]).strength == 0) }
        #expect(s.longest == [0, 0] && s.bar(channel: 0) == 9)
        let held: Float = 0.25
        _ = Self.feed(s, [r.normal(), held])
        for k in 2...9 { #expect(Self.feed(s, [r.normal(), held]).strength == 0, "value \(k)") }
        let stuck = Self.feed(s, [r.normal(), held])
        #expect(stuck.strength == 1 && stuck.surprise == StuckSignal.stuckSurprise && !stuck.certain)
        #expect(s.lastChannel == 1 && s.repeated(channel: 1) == 10)
        #expect(StuckSignal.reason(channel: 1, values: 10) == "feature 1 has sent the same value 10 times in a row")
        // Stuck for the hold-off, then the channel's new normal.
        var strong = 1
        for _ in 0..<100 where Self.feed(s, [r.normal(), held]).strength == 1 { strong += 1 }
        #expect(strong == 50, "\(strong)")
        #expect(!s.corroborates)
    }

    /// A quantised channel's bar is the run its repeats make unlikely: ⌈ln 10⁻⁶ / ln p⌉ with p the
    /// share of its values that repeated, worked out here from the values; and at least twice its
    /// longest run, plus one.
    @Test func aQuantisedChannelNeedsTheRunItsRepeatsMakeUnlikely() {
        let s = StuckSignal(channels: 2, minimumRun: 10, holdOff: 400)
        let xs = Self.rows(4000)
        var repeats = 0, moves = 0, run = 0, longest = 0
        for (t, x) in xs.enumerated() {
            _ = Self.feed(s, x)
            guard t > 0 else { continue }
            if x[1] == xs[t - 1][1] {
                run += 1
            } else {
                moves += 1
                repeats += run
                if run + 1 < 10 { longest = max(longest, run) }  // a longer run makes its value a resting one
                run = 0
            }
        }
        #expect(s.moves[1] == moves && s.repeats[1] == repeats && s.longest[1] == longest)
        let p = Double(repeats) / Double(repeats + moves)
        #expect(p > 0.4 && p < 0.7, "\(p)")
        let expected = max(9, 2 * longest + 1, Int((log(1e-6) / log(p)).rounded(.up)))
        #expect(s.bar(channel: 1) == expected && expected > 9, "\(s.bar(channel: 1)) \(expected)")
    }

    /// A value the channel rested at in normal data (a run of `minimumRun` or more) is never stuck, however
    /// long; another value is, and a channel that has hardly moved has no opinion.
    @Test func aRestingValueIsAStateNotAFault() {
        let s = StuckSignal(channels: 2, minimumRun: 10, holdOff: 10_000)
        var r = RandomSource(seed: 7)
        // Channel 0 idles at 0 between busy stretches; channel 1 is constant.
        func busy(_ n: Int) { for _ in 0..<n { _ = Self.step(s, [1 + abs(r.normal()), 5]) } }
        func idle(_ n: Int) -> Float { (0..<n).map { _ in Self.step(s, [0, 5]).strength }.max() ?? 0 }
        busy(150)
        #expect(idle(20) == 1)  // not yet a resting value: a fault
        busy(150)
        #expect(s.resting.contains(0) == false)  // that run was anomalous: not learned
        // In normal data (a warm-up's, unflagged), a run of 0 teaches the value.
        for _ in 0..<20 { _ = Self.feed(s, [0, 5], anomalous: false) }
        busy(50)
        #expect(s.rests(channel: 0, at: 0))
        #expect(idle(500) == 0)
        busy(20)
        #expect((0..<30).map { _ in Self.step(s, [0.75, 5]).strength }.max() == 1 && s.lastChannel == 0)
        // Channel 1 never moved: never stuck.
        #expect(s.moves[1] == 0)
    }

    /// A stuck run's samples are anomalous, so the run is not learned when it ends; a run stuck past the
    /// hold-off is the channel's new normal, learned as a resting value.
    @Test func aStuckRunIsNotLearnedUnlessItOutlivesTheHoldOff() {
        let s = StuckSignal(channels: 1, minimumRun: 10, holdOff: 30)
        var r = RandomSource(seed: 9)
        for _ in 0..<200 { _ = Self.step(s, [r.normal()]) }
        let strong = (0..<30).filter { _ in Self.step(s, [2]).strength == 1 }.count
        #expect(strong == 21)
        for _ in 0..<10 { _ = Self.step(s, [r.normal()]) }
        #expect(s.longest == [0] && !s.rests(channel: 0, at: 2) && s.repeats == [0])
        for _ in 0..<60 { _ = Self.step(s, [3]) }
        _ = Self.step(s, [r.normal()])
        #expect(s.rests(channel: 0, at: 3) && s.longest == [0] && s.repeats == [59])
    }

    /// A run whose first value was a sample found anomalous is spoiled as well: when it ends it is
    /// not learned, while the same run after a normal sample is (its length becomes the longest).
    @Test func aRunThatBeginsAtAnAnomalousValueIsNotLearned() {
        func longest(firstAnomalous: Bool) -> (longest: Int, repeats: Int) {
            let s = StuckSignal(channels: 1, minimumRun: 10, holdOff: 30)
            var r = RandomSource(seed: 9)
            for _ in 0..<200 { _ = Self.feed(s, [r.normal()]) }
            _ = Self.feed(s, [5], anomalous: firstAnomalous)
            for _ in 0..<5 { _ = Self.feed(s, [5]) }
            _ = Self.feed(s, [r.normal()])
            // The flag spans one sample: a later run after normal samples is learned.
            _ = Self.feed(s, [r.normal()], anomalous: true)
            _ = Self.feed(s, [r.normal()])
            for _ in 0..<3 { _ = Self.feed(s, [7]) }
            _ = Self.feed(s, [r.normal()])
            return (s.longest[0], s.repeats[0])
        }
        let normal = longest(firstAnomalous: false), spoiled = longest(firstAnomalous: true)
        #expect(normal.longest == 5 && normal.repeats == 5 + 2)
        #expect(spoiled.longest == 2 && spoiled.repeats == 2)
    }

    /// The section restores every channel, mid-run: both read the rest alike. Another width is
    /// refused, and so is a damaged section.
    @Test func theSectionRestoresEveryChannel() throws {
        let s = StuckSignal(channels: 2, minimumRun: 10, holdOff: 400)
        let xs = Self.rows(1500)
        for t in 0..<1000 { _ = Self.feed(s, xs[t]) }
        for _ in 0..<20 { _ = Self.feed(s, [0, 7]) }
        var w = StateWriter()
        s.encode(&w)
        let copy = StuckSignal(channels: 2, minimumRun: 10, holdOff: 400)
        var reader = StateReader(w.bytes)
        try copy.decode(&reader, version: StuckSignal.stateVersion)
        #expect(copy.run == s.run && copy.longest == s.longest && copy.moves == s.moves && copy.repeats == s.repeats && copy.state == s.state)
        #expect(copy.resting.elementsEqual(s.resting) { $0 == $1 || ($0.isNaN && $1.isNaN) })
        for t in 1000..<1500 {
            let a = Self.feed(s, xs[t]), b = Self.feed(copy, xs[t])
            #expect(a.strength == b.strength && a.surprise == b.surprise)
        }
        reader = StateReader(w.bytes)
        #expect(throws: StateError.self) { try StuckSignal(channels: 3, minimumRun: 10, holdOff: 400).decode(&reader, version: 1) }
        var damaged = w.bytes
        damaged[4 + 4 + 8 + 4 + 4 * 8] = 0xFF  // channel 0's restingNext
        reader = StateReader(damaged)
        #expect(throws: StateError.self) { try StuckSignal(channels: 2, minimumRun: 10, holdOff: 400).decode(&reader, version: 1) }
        reader = StateReader(w.bytes)
        #expect(throws: StateError.self) { try StuckSignal(channels: 2, minimumRun: 10, holdOff: 400).decode(&reader, version: 2) }
        // A run and repeats whose sum would overflow are refused, not a trap.
        var huge = w.bytes
        for i in 0..<8 { huge[4 + 4 + 8 + 4 + i] = 0xFF; huge[4 + 4 + 8 + 4 + 16 + i] = 0xFF }  // channel 0's run, all repeats
        reader = StateReader(huge)
        #expect(throws: StateError.self) { try StuckSignal(channels: 2, minimumRun: 10, holdOff: 400).decode(&reader, version: 1) }
    }

    /// A section whose counts sit near their limits (a longest run of 2⁶² − 1, every value a repeat)
    /// restores and reads without trapping: such a channel is never stuck.
    @Test func extremeCountsDoNotTrap() throws {
        var w = StateWriter()
        let limit = UInt64(1) << 62 - 1
        w.write(UInt32(1)); w.write(UInt32(StuckSignal.restingValues)); w.write(limit)
        w.write(Float(2))
        for n in [UInt64(0), limit, limit - 1, UInt64(Int32.max), 0] { w.write(n) }  // run, longest, all repeats, repeats (at its cap), next slot
        w.write(UInt8(0))
        for _ in 0..<StuckSignal.restingValues { w.write(Float.nan) }
        let s = StuckSignal(channels: 1, minimumRun: 10, holdOff: 400)
        var reader = StateReader(w.bytes)
        try s.decode(&reader, version: StuckSignal.stateVersion)
        #expect(s.bar(channel: 0) == Int(limit) * 2 + 1)
        for _ in 0..<50 { #expect(Self.step(s, [2]).strength == 0) }
        _ = Self.step(s, [3])
        #expect(s.moves == [1])
    }

    /// On a running stream of three channels, channel 1 frozen at its last value for 60 rows alerts
    /// once, from the stuck signal, naming channel 1 and its run on the wire too; ordinary rows raise no
    /// stuck alert. Without `stuck_run` the chain has no such signal and the same stretch raises no
    /// alert: the frozen value is inside every range, shape and correlation the others compare.
    @Test func aFrozenChannelAlertsOnce() throws {
        func run(_ minimumRun: Int) -> (StreamPipeline, [SampleScore], [ScoredBatch]) {
            var settings = StreamConfiguration().resolved(dim: 3)
            settings.stuckRun = minimumRun
            settings.signals.removeAll { $0 == DiscordSignal.name || $0 == NoiseSignal.name }
            let p = StreamPipeline(name: "machine", settings: settings)
            var xs = NoiseSignalTests.rows(2200)
            for t in 2000..<2060 { xs[t][1] = xs[1999][1] }
            var batches: [ScoredBatch] = []
            for t in 0..<2200 {
                batches.append(xs[t].withUnsafeBufferPointer { p.score($0.baseAddress!, count: 1, firstSequence: UInt64(t)) })
                while p.trainStep() {}
            }
            return (p, batches.map { $0.sample(0) }, batches)
        }
        let (p, on, batches) = run(10)
        let stuck = on.filter { $0.alert && $0.stuckChannel != nil }
        #expect(stuck.map(\.sequence) == [2008], "\(stuck.map(\.sequence))")
        let first = try #require(stuck.first)
        #expect(first.stuckChannel == 1 && first.stuckValues == 10 && first.topFeatures.map(\.index) == [1])
        #expect(on[2008..<2059].allSatisfy { $0.score > 0.999 })
        let alert = Wire.alert(first, in: batches[Int(first.sequence)])
        #expect(alert.signal == StuckSignal.name && alert.reason == "feature 1 has sent the same value 10 times in a row")

        let signal = try #require(p.chain.signal(StuckSignal.self))
        let restored = try StreamPipeline.restore(p.serialized(), settings: p.settings)
        #expect(restored.chain.signal(StuckSignal.self)?.moves == signal.moves)

        let (q, off, _) = run(0)
        #expect(q.chain.signal(StuckSignal.self) == nil)
        #expect(!off[2000..<2060].contains { $0.alert })
    }

    @Test func theSettingsAreChecked() throws {
        for bad in ["stuck_run = 1", "stuck_run = 2000000", "stuck_run = -1", "stuck_run = often"] {
            #expect(throws: (any Error).self, "\(bad)") { try ConfigurationFile.parse("[stream]\n\(bad)\n").validate() }
        }
        let c = try ConfigurationFile.parse("[stream]\nstuck_run = 25\n").streamDefaults
        #expect(c.stuckRun == 25)
        #expect(StreamPipeline(name: "n", settings: c.resolved(dim: 2)).chain.signal(StuckSignal.self)?.minimumRun == 25)
        var without = c
        without.signals.removeAll { $0 == StuckSignal.name }
        #expect(StreamPipeline(name: "n", settings: without.resolved(dim: 2)).chain.signal(StuckSignal.self) == nil)
        #expect(StreamPipeline(name: "n", settings: StreamConfiguration().resolved(dim: 1)).chain.signal(StuckSignal.self) != nil)
    }
}
