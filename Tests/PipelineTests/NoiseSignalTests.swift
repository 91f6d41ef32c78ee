import EddyProtocol
import Foundation
import Learning
@testable import Pipeline
import Testing

@Suite struct NoiseSignalTests {
    /// Three channels: sines of periods 40, 50 and 70 with noise of σ 0.05; from `noisyFrom` for
    /// `noisyFor` rows channel `noisy` carries `gain` times that noise.
    static func rows(_ n: Int, noisyFrom: Int = -1, noisyFor: Int = 150, noisy: Int = 1, gain: Float = 5, seed: UInt64 = 3) -> [[Float]] {
        var r = RandomSource(seed: seed)
        return (0..<n).map { t in
            (0..<3).map { c in
                let g: Float = c == noisy && (noisyFrom..<(noisyFrom + noisyFor)).contains(t) ? gain : 1
                return Float(c + 1) * sinf(Float(t) * 2 * .pi / Float([40, 50, 70][c])) + 0.05 * g * r.normal()
            }
        }
    }

    /// A channel's level is `ln(median of the last window's |x(t) − 2x(t−1) + x(t−2)| + 0.05 ×
    /// their running mean)`, worked out here from the values (the mean of the middle two for an even
    /// window; the running mean exponential past the horizon); before `window` differences there is
    /// none. A slope and a level cancel in a second difference: a ramp's level is the floor's, or
    /// none while its differences are all exactly 0.
    @Test(arguments: [(5, 1000), (4, 10)])
    func theLevelIsTheMedianOfTheSecondDifferences(window: Int, horizon: Int) {
        let s = NoiseSignal(channels: 2, window: window, horizon: horizon)
        var r = RandomSource(seed: 11)
        let xs: [[Float]] = (0..<60).map { t in [r.normal(), 3 + 0.5 * Float(t)] }
        var differences: [Float] = []
        var mean = 0.0
        for t in 0..<60 {
            _ = DiscordSignalTests.feed(s, xs[t])
            if t >= 2 {
                let d = abs(xs[t][0] - 2 * xs[t - 1][0] + xs[t - 2][0])
                differences.append(d)
                mean += (Double(d) - mean) / Double(min(differences.count, horizon))
            }
            guard differences.count >= window else {
                #expect(s.level(channel: 0) == nil && s.level(channel: 1) == nil)
                continue
            }
            let last = differences.suffix(window).sorted()
            let median = window % 2 == 1 ? last[window / 2] : 0.5 * (last[window / 2 - 1] + last[window / 2])
            let expected = logf(median + NoiseSignal.floorShare * Float(mean))
            #expect(abs(s.level(channel: 0)! - expected) < 1e-4, "window \(window), row \(t)")
            #expect((s.level(channel: 1) ?? -.infinity) < logf(1e-4))
        }
    }

    /// A channel constant so far has no level (its first move is not compared with a noise of 0),
    /// nor a calibration; once it moves it has one. An alert's reason prints a factor of a million
    /// or more, or an infinite one, in words.
    @Test func aChannelThatHasNotMovedHasNoLevel() {
        let s = NoiseSignal(channels: 1, window: 8, horizon: 1000)
        for _ in 0..<300 { _ = DiscordSignalTests.feed(s, [7]) }
        #expect(s.level(channel: 0) == nil && s.calibrators[0].count == 0)
        _ = DiscordSignalTests.feed(s, [4e10])
        #expect(s.level(channel: 0) != nil && s.calibrators[0].count == 1)
        #expect(NoiseSignal.reason(channel: 3, factor: 4.56) == "feature 3's noise is 4.6 times its usual")
        #expect(NoiseSignal.reason(channel: 3, factor: 9.97) == "feature 3's noise is 10 times its usual")
        #expect(NoiseSignal.reason(channel: 0, factor: 1e30) == "feature 0's noise is over a million times its usual")
        #expect(NoiseSignal.reason(channel: 0, factor: .infinity) == "feature 0's noise is over a million times its usual")
    }

    /// The window kept sorted by one removal and one insertion per value holds what sorting the
    /// ring would, for windows of 1 to 9 values and for ties; its median is the sorted one's.
    @Test func theSortedWindowIsTheSortedRing() {
        var r = RandomSource(seed: 2)
        for w in 1...9 {
            var ring: [Float] = [], kept = [Float](repeating: 0, count: w)
            for t in 0..<200 {
                let x = t % 3 == 0 ? Float(Int(r.uniform() * 4)) : r.normal()
                kept.withUnsafeMutableBufferPointer { v in
                    if ring.count == w {
                        NoiseSignal.replace(ring.removeFirst(), with: x, in: v.baseAddress!, count: w)
                    } else {
                        NoiseSignal.insert(x, into: v.baseAddress!, count: ring.count)
                    }
                }
                ring.append(x)
                let expected = ring.sorted()
                #expect(Array(kept.prefix(ring.count)) == expected, "w \(w), t \(t)")
                let n = expected.count
                let median = n % 2 == 1 ? expected[n / 2] : 0.5 * (expected[n / 2 - 1] + expected[n / 2])
                #expect(kept.withUnsafeBufferPointer { NoiseSignal.median(ofSorted: $0.baseAddress!, count: n) } == median)
            }
        }
    }

    /// Samples the policy found anomalous teach no calibrator; the signal's surprise never
    /// corroborates a range excursion.
    @Test func anomalousSamplesAreNotLearned() {
        let s = NoiseSignal(channels: 3, window: 16, horizon: 1000)
        let xs = Self.rows(400)
        for t in 0..<300 { _ = DiscordSignalTests.feed(s, xs[t]) }
        let calibrators = s.calibrators
        for t in 300..<400 { _ = DiscordSignalTests.feed(s, xs[t], anomalous: true) }
        #expect(s.calibrators.map(\.count) == calibrators.map(\.count))
        #expect(!s.corroborates && s.lastChannel >= 0)
    }

    /// The section restores every channel (values, differences, calibrators); a stream of another
    /// width or window does not take it.
    @Test func theSectionRestoresEveryChannel() throws {
        let s = NoiseSignal(channels: 3, window: 16, horizon: 1000)
        let xs = Self.rows(700)
        for t in 0..<500 { _ = DiscordSignalTests.feed(s, xs[t]) }
        var w = StateWriter()
        s.encode(&w)
        let copy = NoiseSignal(channels: 3, window: 16, horizon: 1000)
        var reader = StateReader(w.bytes)
        try copy.decode(&reader, version: NoiseSignal.stateVersion)
        #expect(copy.calibrators == s.calibrators && copy.state == s.state && copy.seen == s.seen)
        // Both read the rest alike.
        for t in 500..<700 {
            let a = DiscordSignalTests.feed(s, xs[t]), b = DiscordSignalTests.feed(copy, xs[t])
            #expect(a.surprise == b.surprise && a.strength == b.strength)
        }
        // Restored before its window fills, it reads on as the original too.
        let young = NoiseSignal(channels: 3, window: 32, horizon: 1000), twin = NoiseSignal(channels: 3, window: 32, horizon: 1000)
        for t in 0..<20 { _ = DiscordSignalTests.feed(young, xs[t]) }
        var early = StateWriter()
        young.encode(&early)
        reader = StateReader(early.bytes)
        try twin.decode(&reader, version: NoiseSignal.stateVersion)
        for t in 20..<400 { _ = DiscordSignalTests.feed(young, xs[t]); _ = DiscordSignalTests.feed(twin, xs[t]) }
        #expect(twin.calibrators == young.calibrators && twin.state == young.state)
        #expect((0..<3).allSatisfy { twin.level(channel: $0) == young.level(channel: $0) && young.sorted(channel: $0) == young.ring(channel: $0).sorted() })
        // Another width is refused; another window (the setting changed) starts this signal afresh.
        let narrower = NoiseSignal(channels: 2, window: 16, horizon: 1000)
        reader = StateReader(w.bytes)
        #expect(throws: StateError.self) { try narrower.decode(&reader, version: NoiseSignal.stateVersion) }
        let wider = NoiseSignal(channels: 3, window: 32, horizon: 1000)
        reader = StateReader(w.bytes)
        try wider.decode(&reader, version: NoiseSignal.stateVersion)
        #expect(wider.seen == 0 && wider.calibrators.allSatisfy { $0.count == 0 })
    }

    /// On a running stream of three channels, channel 1 growing five times noisier for 150 rows
    /// alerts from the noise signal: the alert names channel 1, the noise signal and a factor near
    /// 5, on the wire too. Ordinary rows raise no noise alert. Without `noise_window` the chain
    /// has no such signal, and the same stretch raises no alert at all: the ranges, periods and
    /// correlations the other signals compare are unchanged by it. (The discord is left out of
    /// both: on a sine it sees the noisier shape as well, and alerts first.)
    @Test func aChannelGrowingNoisierAlerts() throws {
        func run(_ window: Int) -> (StreamPipeline, [SampleScore], [ScoredBatch]) {
            var settings = StreamConfiguration().resolved(dim: 3)
            settings.noiseWindow = window
            settings.signals.removeAll { $0 == DiscordSignal.name }
            let p = StreamPipeline(name: "machine", settings: settings)
            let xs = Self.rows(2600, noisyFrom: 2300)
            var batches: [ScoredBatch] = []
            for t in 0..<2600 {
                batches.append(xs[t].withUnsafeBufferPointer { p.score($0.baseAddress!, count: 1, firstSequence: UInt64(t)) })
                while p.trainStep() {}
            }
            return (p, batches.map { $0.sample(0) }, batches)
        }
        let (p, on, batches) = run(32)
        let noisy = on[2300..<2450].filter { $0.alert && $0.noiseChannel != nil }
        #expect(noisy.count == 1, "\(noisy.map(\.sequence))")
        let first = try #require(noisy.first)
        #expect(first.noiseChannel == 1 && first.topFeatures.map(\.index) == [1])
        #expect(first.noiseFactor > 3 && first.noiseFactor < 8, "\(first.noiseFactor)")
        let alert = Wire.alert(first, in: batches[Int(first.sequence)])
        #expect(alert.signal == NoiseSignal.name && alert.reason.hasPrefix("feature 1's noise is "), "\(alert.reason)")
        #expect(!on[600..<2300].contains { $0.alert && $0.noiseChannel != nil })

        let signal = try #require(p.chain.signal(NoiseSignal.self))
        let restored = try StreamPipeline.restore(p.serialized(), settings: p.settings)
        #expect(restored.chain.signal(NoiseSignal.self)?.calibrators == signal.calibrators)

        let (q, off, _) = run(0)
        #expect(q.chain.signal(NoiseSignal.self) == nil)
        #expect(!off[2300..<2450].contains { $0.alert })
    }

    @Test func theSettingsAreChecked() throws {
        for bad in ["noise_window = 2", "noise_window = 5000", "noise_window = -1", "noise_window = many"] {
            #expect(throws: (any Error).self, "\(bad)") { try ConfigurationFile.parse("[stream]\n\(bad)\n").validate() }
        }
        let c = try ConfigurationFile.parse("[stream]\nnoise_window = 48\n").streamDefaults
        #expect(c.noiseWindow == 48)
        #expect(StreamPipeline(name: "n", settings: c.resolved(dim: 2)).chain.signal(NoiseSignal.self)?.window == 48)
        var without = c
        without.signals.removeAll { $0 == NoiseSignal.name }
        #expect(StreamPipeline(name: "n", settings: without.resolved(dim: 2)).chain.signal(NoiseSignal.self) == nil)
    }
}
