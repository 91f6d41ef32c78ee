import Foundation
import Learning
@testable import Pipeline
import Testing
import Workloads

@Suite struct RepeatingChannelsTests {
    static func sine(_ n: Int, period: Float, seed: UInt64) -> [Float] {
        var random = RandomSource(seed: seed)
        return (0..<n).map { sinf(Float($0) * 2 * .pi / period) + 0.1 * random.normal() }
    }

    static func walk(_ n: Int, seed: UInt64) -> [Float] {
        var random = RandomSource(seed: seed)
        var x: Float = 0
        return (0..<n).map { _ in
            x += random.normal()
            return x
        }
    }

    static func push(_ r: inout RepeatingChannels, _ row: [Float]) -> Bool {
        row.withUnsafeBufferPointer { r.push($0.baseAddress!, count: $0.count) }
    }

    /// A quick cycle is known to repeat at the first check (200 values), a cycle of 250 values only
    /// at the last (600: before it, the lags searched stop at half the values), and a random walk is
    /// decided not to at the last. The last check is `PeriodCheck.detectPeriod`'s search.
    @Test func quickCyclesAreKnownSoonSlowOnesAtTheLastCheckAndWalksNever() {
        let xs = [Self.sine(600, period: 40, seed: 1), Self.sine(600, period: 250, seed: 2), Self.walk(600, seed: 3)]
        var r = RepeatingChannels(channels: 3)
        var decidedAt: [Int?] = [nil, nil, nil]
        for t in 0..<600 {
            let changed = Self.push(&r, xs.map { $0[t] })
            for c in 0..<3 where r.repeats[c] != nil && decidedAt[c] == nil {
                decidedAt[c] = t + 1
                #expect(changed)
            }
            if t < 199 { #expect(r.repeats == [nil, nil, nil] && (0..<3).allSatisfy { r.quiet($0) }) }
        }
        #expect(decidedAt == [200, 600, 600])
        #expect(r.repeats == [true, true, false])
        #expect((0..<3).map { r.quiet($0) } == [false, false, true])
        #expect(r.seen.allSatisfy { $0.isEmpty }, "the values are let go once decided")
        for x in xs {
            #expect(RepeatingChannels.repeats(x, longestLag: PeriodCheck.longestPeriod) == (PeriodCheck.detectPeriod(x) > 0))
        }
    }

    /// A channel constant through its first values stays undecided at every check but the last,
    /// where it counts as repeating (its first move is news); the kept values have room for all 600
    /// from the start, as the memory estimate counts them.
    @Test func aConstantChannelRepeatsAtTheLastCheck() {
        var r = RepeatingChannels(channels: 2)
        #expect(r.seen.allSatisfy { $0.capacity >= RepeatingChannels.last })
        let walk = Self.walk(600, seed: 8)
        var decidedAt: [Int?] = [nil, nil]
        for t in 0..<600 {
            _ = Self.push(&r, [3, walk[t]])
            for c in 0..<2 where r.repeats[c] != nil && decidedAt[c] == nil { decidedAt[c] = t + 1 }
        }
        #expect(decidedAt == [600, 600])
        #expect(r.repeats == [true, false])
        #expect(RepeatingChannels.repeats(Array(repeating: 3, count: 300), longestLag: 150) == nil)
        #expect(RepeatingChannels.repeats(Array(walk.prefix(300)), longestLag: 150) == false)
    }

    static func make(quiet: Float?, peakLag: Int = 0) -> MultiscaleDiscord {
        MultiscaleDiscord(
            windows: [32], levelWindows: [64], history: 512, channels: 2, margin: 4, horizon: 2000, holdOff: 400,
            quietSurprise: quiet, peakLag: peakLag)
    }

    /// Two channels, one a cycle and one a random walk, each given a shape it never showed: a pulse on
    /// the walk at 1500, a cycle at three times its height at 2000. Without quiet channels both
    /// alert; with them the walk's pulse gives no strength and a surprise held under the cap, while
    /// the cycle's alerts exactly as before. Every channel is quiet until its first check.
    @Test func aChannelThatDoesNotRepeatIsQuiet() {
        let n = 2400
        var a = Self.sine(n, period: 40, seed: 4), b = Self.walk(n, seed: 5)
        for t in 1500..<1530 { b[t] += 40 * (t % 2 == 0 ? 1 : -1) }
        for t in 2000..<2040 { a[t] *= 3 }
        let loud = Self.make(quiet: nil), quiet = Self.make(quiet: 5.5)
        var loudPulse: Float = 0, quietPulse: Float = 0, loudCycle: Float = 0, quietCycle: Float = 0
        var heard = 0
        for t in 0..<n {
            let l = DiscordSignalTests.feed(loud, [a[t], b[t]]), q = DiscordSignalTests.feed(quiet, [a[t], b[t]])
            if t < 199 { #expect(q.strength == 0 && !(q.surprise > 5.5), "sample \(t): every channel is quiet before its first check") }
            if q.strength > 0 {
                #expect(quiet.origin().channel == 0, "sample \(t): only the cycle gives strength")
                heard += 1
            }
            if quiet.origin(ofSurprise: true).channel == 1 { #expect(!(q.surprise > 5.5), "sample \(t)") }
            if (1500..<1560).contains(t) { (loudPulse, quietPulse) = (max(loudPulse, l.strength), max(quietPulse, q.strength)) }
            if (2000..<2060).contains(t) { (loudCycle, quietCycle) = (max(loudCycle, l.strength), max(quietCycle, q.strength)) }
        }
        #expect(quiet.repeating?.repeats == [true, false])
        #expect(loudPulse > 0.9, "without quiet channels the walk's pulse alerts: \(loudPulse)")
        #expect(quietPulse < 0.5, "the walk's pulse is quiet: \(quietPulse)")
        #expect(loudCycle > 0.9 && quietCycle == loudCycle, "the cycle alerts as before: \(loudCycle), \(quietCycle)")
        #expect(heard > 0)
    }

    /// With a fixed period every channel has a period window from the start; a channel that does not
    /// repeat gets no strength from it either (the quiet stream's strongest reading stays under what
    /// the loud stream's period window alone reaches), and its surprise is held under the cap.
    @Test func aFixedPeriodsWindowIsQuietOnAChannelThatDoesNotRepeat() {
        let n = 2000
        let a = Self.sine(n, period: 40, seed: 9)
        var b = Self.walk(n, seed: 10)
        for t in 1500..<1530 { b[t] += 40 * (t % 2 == 0 ? 1 : -1) }
        func make(_ quiet: Float?) -> MultiscaleDiscord {
            MultiscaleDiscord(
                windows: [32], period: .fixed(40), history: 512, channels: 2, margin: 4, horizon: 2000, holdOff: 400,
                quietSurprise: quiet)
        }
        let loud = make(nil), quiet = make(5.5)
        #expect(quiet.periodic?.lengths == [40, 40])
        var loudPulse: Float = 0, quietPulse: Float = 0
        for t in 0..<n {
            let l = DiscordSignalTests.feed(loud, [a[t], b[t]]), q = DiscordSignalTests.feed(quiet, [a[t], b[t]])
            if (1500..<1560).contains(t) {
                if loud.origin().channel == 1 && loud.origin().window == 40 { loudPulse = max(loudPulse, l.strength) }
                quietPulse = max(quietPulse, q.strength)
            }
            if quiet.origin(ofSurprise: true).channel == 1 { #expect(!(q.surprise > 5.5), "sample \(t)") }
        }
        #expect(quiet.repeating?.repeats == [true, false])
        #expect(loudPulse > 0.6, "without quiet channels the walk's period window reads the pulse: \(loudPulse)")
        #expect(quietPulse < 0.5, "the walk's pulse is quiet in every window: \(quietPulse)")
    }

    /// Which channels repeat is part of the discord's section: restored halfway through the checks, a
    /// stream reads on as the original did. A section written before the decisions were kept
    /// (version 4), or without them, counts every channel as repeating; a bad section is refused.
    @Test func theDecisionsTravelInTheSection() throws {
        let a = Self.sine(1000, period: 40, seed: 6), b = Self.walk(1000, seed: 7)
        let original = Self.make(quiet: 5.5, peakLag: 8)
        for t in 0..<250 { _ = DiscordSignalTests.feed(original, [a[t], b[t]]) }
        #expect(original.repeating?.repeats == [true, nil] && original.repeating?.strong == [true, false])
        var w = StateWriter()
        original.encode(&w)
        let restored = Self.make(quiet: 5.5, peakLag: 8)
        var r = StateReader(w.bytes)
        try restored.decode(&r, version: MultiscaleDiscord.stateVersion)
        #expect(restored.repeating == original.repeating)
        #expect(restored.scales.allSatisfy { $0.calibrators.map(\.lag) == [8, 0] }, "the cycle's windows are lagged again")
        for t in 250..<1000 {
            let x = DiscordSignalTests.feed(original, [a[t], b[t]]), y = DiscordSignalTests.feed(restored, [a[t], b[t]])
            #expect(x.strength == y.strength && x.surprise == y.surprise, "sample \(t)")
        }
        #expect(restored.repeating?.repeats == [true, false])

        let before = Self.make(quiet: nil)
        for t in 0..<250 { _ = DiscordSignalTests.feed(before, [a[t], b[t]]) }
        var old = StateWriter()
        before.encode(&old)
        for (bytes, version) in [(Array(old.bytes.dropLast()), UInt32(4)), (old.bytes, MultiscaleDiscord.stateVersion)] {
            let upgraded = Self.make(quiet: 5.5)
            var r4 = StateReader(bytes)
            try upgraded.decode(&r4, version: version)
            #expect(upgraded.repeating?.repeats == [true, true], "version \(version)")
            #expect(upgraded.scales.allSatisfy { $0.quiet.isEmpty })
        }

        // Off now: a section's decisions are read past and dropped.
        let off = Self.make(quiet: nil)
        var r5 = StateReader(w.bytes)
        try off.decode(&r5, version: MultiscaleDiscord.stateVersion)
        #expect(off.repeating == nil && off.scales.map(\.count) == [250, 250])

        var bad = RepeatingChannels(channels: 1)
        // A bad decision, a value that is not finite, more values than a channel keeps, another
        // channel count, a section cut short.
        for (channels, decision, count, value, cut) in [
            (UInt32(1), UInt8(4), UInt32(1), Float(0), 0), (1, 0, 1, .nan, 0), (1, 0, UInt32(RepeatingChannels.last), 0, 0),
            (2, 0, 1, 0, 0), (1, 0, 1, 0, 1),
        ] {
            var s = StateWriter()
            s.write(channels)
            s.write(decision)
            s.write(count)
            s.write(value)
            var rb = StateReader(Array(s.bytes.dropLast(cut)))
            #expect(throws: StateError.self) { try bad.decode(&rb) }
        }
        var good = StateWriter()
        good.write(UInt32(1)); good.write(UInt8(0)); good.write(UInt32(1)); good.write(Float(2))
        var rg = StateReader(good.bytes)
        try bad.decode(&rg)
        #expect(bad.seen == [[2]] && bad.seen[0].capacity >= RepeatingChannels.last)
    }

    /// `discord_repeating_only` (true) gives streams of several features quiet channels, held just
    /// under `alert_evidence`, and univariate streams none; false turns it off. The decisions are
    /// kept without quiet channels for `discord_peak_lag` (8) alone; with both off there are none.
    /// The memory estimate counts the kept values.
    @Test func theSettingGivesStreamsOfSeveralFeaturesQuietChannels() throws {
        let defaults = try ConfigurationFile.parse("[stream]\n").streamDefaults
        #expect(defaults.discordRepeatingOnly && defaults.discordPeakLag == 8)
        func discord(_ s: StreamConfiguration, dim: Int) -> MultiscaleDiscord? {
            StreamPipeline(name: "s", settings: s.resolved(dim: dim)).chain.signal(MultiscaleDiscord.self)
        }
        #expect(discord(defaults, dim: 3)?.repeating?.repeats.count == 3)
        #expect(discord(defaults, dim: 3)?.quieting == true)
        #expect(discord(defaults, dim: 3)?.scales.allSatisfy { $0.quietSurprise == defaults.alertEvidence.nextDown } == true)
        #expect(discord(defaults, dim: 1)?.quieting == false && discord(defaults, dim: 1)?.repeating?.repeats.count == 1)
        let off = try ConfigurationFile.parse("[stream]\ndiscord_repeating_only = false\n").streamDefaults
        #expect(discord(off, dim: 3)?.quieting == false && discord(off, dim: 3)?.scales.allSatisfy { $0.quiet.isEmpty } == true)
        let none = try ConfigurationFile.parse("[stream]\ndiscord_repeating_only = false\ndiscord_peak_lag = 0\n").streamDefaults
        #expect(try ConfigurationFile.parse("[stream]\ndiscord_peak_lag = 3\n").streamDefaults.discordPeakLag == 3)
        #expect(throws: (any Error).self) { try ConfigurationFile.parse("[stream]\ndiscord_peak_lag = -1\n") }
        #expect(discord(none, dim: 3)?.repeating == nil && discord(none, dim: 1)?.repeating == nil)
        // The decisions' kept values, and each window's lagged maximum per channel (two windows and
        // the period window).
        for dim in [1, 3] {
            let lagged = dim * 3 * (Calibrator.bytes(holdOff: defaults.alertHoldOff, lagged: true) - Calibrator.bytes(holdOff: defaults.alertHoldOff))
            #expect(
                defaults.resolved(dim: dim).memoryEstimate - none.resolved(dim: dim).memoryEstimate
                    == RepeatingChannels.bytes(channels: dim) + lagged, "dim \(dim)")
        }
        #expect(throws: (any Error).self) { try ConfigurationFile.parse("[stream]\ndiscord_repeating_only = maybe\n") }
    }
}

/// `discord_peak_lag`: a channel that repeats strongly measures its discord over the peak before
/// its newest samples, so a change that builds up stands against what came before it.
@Suite struct PeakLagTests {
    /// Plateaus of random height and length with noise: shapes at random intervals, which may come
    /// back (a weak autocorrelation peak) but do not cycle.
    static func plateaus(_ n: Int, seed: UInt64) -> [Float] {
        var random = RandomSource(seed: seed)
        var xs: [Float] = []
        while xs.count < n {
            let level = 4 * random.uniform(), length = 40 + Int(160 * random.uniform())
            xs += (0..<length).map { _ in level + 0.05 * random.normal() }
        }
        return Array(xs.prefix(n))
    }

    static func square(_ n: Int, period: Int, seed: UInt64) -> [Float] {
        var random = RandomSource(seed: seed)
        return (0..<n).map { ($0 % period < period / 2 ? 1 : -1) + 0.1 * random.normal() }
    }

    /// A sine and a square wave repeat strongly (first autocorrelation peak 0.8 or more); plateaus
    /// at random heights and a random walk do not, whether or not they count as repeating.
    @Test func cyclesRepeatStronglyShapesAtRandomIntervalsDoNot() {
        let xs = [
            RepeatingChannelsTests.sine(600, period: 40, seed: 1), Self.square(600, period: 60, seed: 2),
            Self.plateaus(600, seed: 3), RepeatingChannelsTests.walk(600, seed: 4),
        ]
        var r = RepeatingChannels(channels: 4)
        for t in 0..<600 { _ = RepeatingChannelsTests.push(&r, xs.map { $0[t] }) }
        let peaks = xs.map { RepeatingChannels.firstPeak($0, longestLag: PeriodCheck.longestPeriod) ?? -1 }
        #expect(r.strong == [true, true, false, false], "first peaks \(peaks)")
        #expect(r.repeats[0] == true && r.repeats[1] == true)
        #expect(peaks[0] >= 0.8 && peaks[1] >= 0.8 && peaks[2] < 0.8 && peaks[3] < 0.8, "\(peaks)")
    }

    /// Which channels repeat strongly travels in the section (code 3, from the discord's version 6);
    /// a section that may not say so (version 5) refuses the code, and its plain "repeats" restores
    /// a channel that does not repeat strongly.
    @Test func strongRepetitionTravelsInTheSection() throws {
        var r = RepeatingChannels(channels: 2)
        let a = RepeatingChannelsTests.sine(200, period: 40, seed: 5), b = Self.plateaus(200, seed: 6)
        for t in 0..<200 { _ = RepeatingChannelsTests.push(&r, [a[t], b[t]]) }
        #expect(r.repeats[0] == true && r.strong == [true, false])
        var w = StateWriter()
        r.encode(&w)
        var copy = RepeatingChannels(channels: 2)
        var reader = StateReader(w.bytes)
        try copy.decode(&reader)
        #expect(copy == r)
        var old = RepeatingChannels(channels: 2)
        var oldReader = StateReader(w.bytes)
        #expect(throws: StateError.self) { try old.decode(&oldReader, strongly: false) }
        var bytes = w.bytes
        #expect(bytes[4] == 3)
        bytes[4] = 1  // what version 5 wrote for a channel that repeats
        var plain = RepeatingChannels(channels: 2)
        var plainReader = StateReader(bytes)
        try plain.decode(&plainReader, strongly: false)
        #expect(plain.repeats[0] == true && plain.strong == [false, false])
    }

    /// The recent peak skips the newest `lag` surprises: a surprise that climbs 0.4 standard units a
    /// sample reaches the threshold against the peak before its climb, never against its own last
    /// step. Rebuilt from the remembered surprises (a restored calibrator), it reads the same.
    @Test func aSurpriseThatBuildsUpStandsAgainstThePeakBeforeIt() throws {
        func run(lag: Int, holdOff: Int = 400) throws -> (strongest: Float, restoredAgrees: Bool) {
            var c = Calibrator(horizon: 5000, holdOff: holdOff)
            c.measurePeak(skippingNewest: lag)
            #expect(c.lag == lag)
            for i in 0..<600 {
                let x = sinf(Float(i))
                _ = c.score(logError: x)
                c.update(logError: x)
            }
            var strongest: Float = 0
            var agrees = true
            for k in 1...14 {
                let x = 0.3 * Float(k)
                var w = StateWriter()
                c.encode(&w)
                var r = StateReader(w.bytes)
                var restored = try Calibrator.decode(&r)
                restored.measurePeak(skippingNewest: lag)
                let (score, surprise) = c.score(logError: x)
                agrees = agrees && restored.score(logError: x).score == score
                strongest = max(strongest, Calibrator.score(surprise: surprise, peak: 0) >= 0.99 ? score : 0)
            }
            return (strongest, agrees)
        }
        // A hold-off of 1,000 is still filling after these 614 surprises (the ring not yet wrapped).
        for holdOff in [400, 1000] {
            let without = try run(lag: 0, holdOff: holdOff), with = try run(lag: 8, holdOff: holdOff)
            #expect(without.strongest < 0.9, "measured against its own rise: \(without.strongest)")
            #expect(with.strongest > 0.99, "measured against the peak before it: \(with.strongest)")
            #expect(without.restoredAgrees && with.restoredAgrees)
        }
    }

    /// The discord's windows on a strongly repeating channel skip the newest samples; on a channel
    /// that does not, and with the setting off, they do not. A level that climbs on the cycle over 100
    /// samples stands out with the lag, once in each window (its incident is then measured over its
    /// own rise; without that, each sample of the climb would stand out against the lagged peak).
    @Test func aCycleThatClimbsAlertsWithTheLag() {
        let n = 2000
        var a = RepeatingChannelsTests.sine(n, period: 40, seed: 11)
        let b = RepeatingChannelsTests.walk(n, seed: 12)
        for t in 1500..<n { a[t] += 0.03 * Float(min(t - 1500, 100)) }
        func make(_ lag: Int) -> MultiscaleDiscord {
            MultiscaleDiscord(
                windows: [32], levelWindows: [64], history: 1024, channels: 2, margin: 4, horizon: 2000, holdOff: 400,
                quietSurprise: 5.5, peakLag: lag)
        }
        let lagged = make(8), plain = make(0)
        var strongest: [Float] = [0, 0]
        var standing: [Int] = []
        for t in 0..<n {
            let x = DiscordSignalTests.feed(lagged, [a[t], b[t]]), y = DiscordSignalTests.feed(plain, [a[t], b[t]])
            if t >= 1500 && t < 1616 { strongest = [max(strongest[0], x.strength), max(strongest[1], y.strength)] }
            if t >= 1500 && x.strength >= 0.9 { standing.append(t) }
        }
        #expect(
            (1...lagged.scales.count).contains(standing.count),
            "the climb stands out once per window, then is measured over its own rise: \(standing)")
        #expect(lagged.repeating?.strong == [true, false])
        #expect(lagged.scales.allSatisfy { $0.calibrators.map(\.lag) == [8, 0] })
        #expect(plain.scales.allSatisfy { $0.calibrators.map(\.lag) == [0, 0] })
        #expect(strongest[0] > 0.9, "with the lag the climb alerts: \(strongest)")
        #expect(strongest[0] > strongest[1], "\(strongest)")
    }

    /// A univariate stream quiets no channel, but keeps the decisions for the lag: a sine's windows
    /// are lagged once it is seen to repeat strongly, and never quiet. Without the lag it keeps
    /// none. Restored from a section without decisions (version 5, as every univariate section was),
    /// it decides afresh rather than assuming.
    @Test func aUnivariateCycleIsLaggedAndNeverQuiet() throws {
        func make(_ lag: Int) -> MultiscaleDiscord {
            MultiscaleDiscord(
                windows: [32], levelWindows: [64], history: 512, channels: 1, horizon: 2000, holdOff: 400, peakLag: lag)
        }
        let sine = RepeatingChannelsTests.sine(400, period: 40, seed: 13)
        let lagged = make(8), plain = make(0)
        #expect(plain.repeating == nil && !lagged.quieting)
        for t in 0..<199 { _ = DiscordSignalTests.feed(lagged, [sine[t]]) }
        #expect(lagged.repeating?.repeats == [nil] && lagged.scales.allSatisfy { $0.calibrators[0].lag == 0 && $0.quiet.isEmpty })
        _ = DiscordSignalTests.feed(lagged, [sine[199]])
        #expect(lagged.repeating?.strong == [true])
        #expect(lagged.scales.allSatisfy { $0.calibrators[0].lag == 8 && $0.quiet.isEmpty })
        // A version-5 section of a univariate stream: the windows, and no decisions.
        var w = StateWriter()
        plain.encode(&w)
        let restored = make(8)
        var r = StateReader(w.bytes)
        try restored.decode(&r, version: 5)
        #expect(restored.repeating?.repeats == [nil] && restored.repeating?.strong == [false])
        for t in 0..<200 { _ = DiscordSignalTests.feed(restored, [sine[t]]) }
        #expect(restored.repeating?.strong == [true] && restored.scales.allSatisfy { $0.calibrators[0].lag == 8 })
    }

    /// The lagged peak is the largest remembered surprise but the newest `lag`, sample by sample,
    /// while the ring fills and after, and after the lag changes (mid-fill, and with the ring wrapped
    /// part-way); the lagged maximum keeps no values of its own (it reads them from the remembered
    /// surprises).
    @Test func theLaggedPeakIsTheMaximumBeforeTheNewest() {
        var random = RandomSource(seed: 41)
        var c = Calibrator(horizon: 5000, holdOff: 50)
        c.measurePeak(skippingNewest: 8)
        var surprises: [Float] = []
        for i in 0..<400 {
            // While the ring fills, and after it wraps at a position that is not its start.
            if i == 20 { c.measurePeak(skippingNewest: 5) }
            if i == 213 { c.measurePeak(skippingNewest: 3) }
            let x = random.normal() + (i % 97 < 10 ? 3 : 0)
            let z = c.score(logError: x).surprise
            c.update(logError: x)
            surprises.append(z)
            let held = surprises.suffix(50).dropLast(c.lag)
            #expect(c.recentPeak == max(held.max() ?? 0, 0), "sample \(i)")
            #expect(c.wholePeak == max(surprises.suffix(50).max() ?? 0, 0))
        }
        #expect(c.lag == 3 && c.lagged.values.isEmpty && c.recent.values.count == 50)
    }

    /// `eddy bench pipeline --cycling` times the lag: every channel of its stream repeats strongly,
    /// where no channel of the workload's reference stream (three sines) does.
    @Test func theBenchsCyclingStreamRepeatsStrongly() {
        for cycling in [true, false] {
            let xs = ReferenceStream(dimension: 8, seed: 1, cycling: cycling).samples(count: 600)
            var r = RepeatingChannels(channels: 8)
            for t in 0..<600 { _ = xs.withUnsafeBufferPointer { r.push($0.baseAddress! + 8 * t, count: 8) } }
            #expect(r.repeats.allSatisfy { $0 != nil })
            #expect(r.strong == Array(repeating: cycling, count: 8), "cycling \(cycling)")
        }
    }

    /// A channel's window of its own period (`discord_period_channels`) takes its channel's lag: it is
    /// made when the period is decided (600 values), after the channel was seen to repeat strongly
    /// (200), and told the lag then; a restored stream's period window is told it again. A channel
    /// with no period has no window. On its own, a lagged period window lets a level that climbs on
    /// the cycle stand out, where the same window without the lag measures the climb against itself.
    @Test func aPeriodWindowTakesItsChannelsLag() throws {
        func make(_ lag: Int) -> MultiscaleDiscord {
            MultiscaleDiscord(
                windows: [32], levelWindows: [64], period: .auto, history: 512, channels: 2, margin: 4, horizon: 2000,
                holdOff: 400, quietSurprise: 5.5, peakLag: lag)
        }
        let a = RepeatingChannelsTests.sine(800, period: 40, seed: 31), b = RepeatingChannelsTests.walk(800, seed: 32)
        let lagged = make(8), plain = make(0)
        for t in 0..<800 {
            _ = DiscordSignalTests.feed(lagged, [a[t], b[t]])
            _ = DiscordSignalTests.feed(plain, [a[t], b[t]])
            if t == 598 { #expect(lagged.periodic?.windows.allSatisfy { $0 == nil } == true, "no window before its period") }
        }
        #expect(lagged.repeating?.strong == [true, false])
        #expect(lagged.periodic?.lengths == [40, 0] && plain.periodic?.lengths == [40, 0])
        #expect(lagged.periodic?.windows[0]?.calibrators[0].lag == 8)
        #expect(plain.periodic?.windows[0]?.calibrators[0].lag == 0)
        var w = StateWriter()
        lagged.encode(&w)
        let restored = make(8)
        var r = StateReader(w.bytes)
        try restored.decode(&r, version: MultiscaleDiscord.stateVersion)
        #expect(restored.periodic?.lengths == [40, 0])
        #expect(restored.periodic?.windows[0]?.calibrators[0].lag == 8, "the restored period window is lagged again")

        // One period window alone, told a lag of 8 or none, over a cycle whose level climbs 3 over 100 samples.
        func strongest(lag: Int) -> Float {
            let windows = PeriodWindows(channels: 1, setting: .fixed(40), history: 512, margin: 4, horizon: 2000, holdOff: 400)
            windows.lags = [lag]
            var climbing = RepeatingChannelsTests.sine(2000, period: 40, seed: 33)
            for t in 1500..<2000 { climbing[t] += 0.03 * Float(min(t - 1500, 100)) }
            var top: Float = 0
            for t in 0..<1616 {
                var v = climbing[t]
                let x = withUnsafePointer(to: &v) { p in
                    var o = Observation(values: p, dimension: 1, logError: 0, modelReady: true)
                    let r = windows.read(&o)
                    windows.learn(o, anomalous: false)
                    return r
                }
                if t >= 1500 { top = max(top, x.strength) }
            }
            return top
        }
        let (with, without) = (strongest(lag: 8), strongest(lag: 0))
        #expect(with > 0.9, "the climb stands out against the peak before it: \(with)")
        #expect(with > without, "\(with) against \(without)")
    }

    /// A reading the shift veto holds back opens no incident: on a jittered square wave (edges a
    /// sample off their twins') with the lag, readings strong enough to open one are held back and
    /// the channel's peak stays the lagged one. Without the veto the same wave opens incidents.
    @Test func aVetoedReadingOpensNoIncident() {
        let veto = ShiftVeto(share: 0.25, strength: 0.9, surprise: Float(6).nextDown)
        var heldBack = 0, openedWithout = 0
        for seed: UInt64 in 1...3 {
            let xs = ShiftVetoTests.jitteredSquare(5000, changeAt: 5000, changeLength: 0, seed: seed)
            func make(_ veto: ShiftVeto?) -> MultiscaleDiscord {
                MultiscaleDiscord(
                    windows: [32], levelWindows: [64], period: .auto, history: 1024, channels: 1, margin: 4, horizon: 2000,
                    holdOff: 400, shiftVeto: veto, peakLag: 8)
            }
            func windows(_ d: MultiscaleDiscord) -> [DiscordSignal] { d.scales + (d.periodic?.windows.compactMap { $0 } ?? []) }
            let held = make(veto), plain = make(nil)
            for x in xs {
                let before = windows(held).map { ($0.shiftVetoes, $0.calibrators[0].incident != nil) }
                _ = DiscordSignalTests.feed(held, [x])
                for (w, (vetoes, open)) in zip(windows(held), before) where w.shiftVetoes > vetoes && !open {
                    heldBack += 1
                    #expect(w.calibrators[0].incident == nil, "seed \(seed): a held-back reading opened an incident")
                }
                let wasOpen = windows(plain).map { $0.calibrators[0].incident != nil }
                _ = DiscordSignalTests.feed(plain, [x])
                for (w, open) in zip(windows(plain), wasOpen) where !open && w.calibrators[0].incident != nil { openedWithout += 1 }
            }
            #expect(windows(held).allSatisfy { $0.calibrators[0].lag == 8 }, "seed \(seed)")
        }
        #expect(heldBack > 0 && openedWithout > 0, "held back \(heldBack), opened without the veto \(openedWithout)")
    }

    /// A channel's period window replays the values kept while its period was decided, and no
    /// incident is left open by the replay: a cycle that climbs at the end of those values is learned,
    /// and the window's first live reading is measured against the lagged peak, not the climb's own.
    @Test func aPeriodWindowsReplayLeavesNoIncident() {
        var opened = 0
        for seed: UInt64 in 41...43 {
            var xs = RepeatingChannelsTests.sine(PeriodCheck.detectionSamples, period: 40, seed: seed)
            for t in 560..<xs.count { xs[t] += 0.05 * Float(t - 560) }
            let windows = PeriodWindows(channels: 1, setting: .auto, history: 512, margin: 4, horizon: 2000, holdOff: 400)
            windows.lags = [8]
            // The replay as `decide` runs it, on a window of the same kind, to see it open an incident.
            let replay = windows.window(for: 40)
            replay.calibrators[0].measurePeak(skippingNewest: 8)
            for x in xs.dropLast() { _ = DiscordSignalTests.feed(replay, [x]) }
            if replay.calibrators[0].incident != nil { opened += 1 }
            for var x in xs {
                withUnsafePointer(to: &x) { p in
                    var o = Observation(values: p, dimension: 1, logError: 0, modelReady: true)
                    _ = windows.read(&o)
                    windows.learn(o, anomalous: false)
                }
            }
            let w = windows.windows[0]
            #expect(w?.window == 40 && w?.calibrators[0].lag == 8, "seed \(seed)")
            #expect(w?.calibrators[0].incident == nil, "seed \(seed): the replay left an incident open")
        }
        #expect(opened > 0, "the kept values open an incident when replayed")
    }

    /// A version-5 section says a channel repeats, not whether strongly: restored from one, a
    /// channel it says repeats decides that again from the newest values its windows kept, so an
    /// upgraded stream's sine and square wave are lagged and its plateaus are not.
    @Test func aVersion5SectionDecidesStrengthAgain() throws {
        func make() -> MultiscaleDiscord {
            MultiscaleDiscord(
                windows: [32], levelWindows: [64], history: 512, channels: 3, margin: 4, horizon: 2000, holdOff: 400,
                quietSurprise: 5.5, peakLag: 8)
        }
        let a = RepeatingChannelsTests.sine(900, period: 40, seed: 51), b = Self.plateaus(900, seed: 52)
        let c = Self.square(900, period: 60, seed: 53)
        let live = make()
        for t in 0..<900 { _ = DiscordSignalTests.feed(live, [a[t], b[t], c[t]]) }
        #expect(live.repeating?.strong == [true, false, true])
        // What version 5 wrote: the windows, no period windows, and the decisions with "repeats" for
        // a channel that repeats strongly.
        func version5(_ d: MultiscaleDiscord) -> [UInt8] {
            var w = StateWriter()
            w.write(UInt32(d.scales.count))
            for s in d.scales {
                w.write(UInt32(s.window))
                w.write(s.centred)
                var inner = StateWriter()
                s.encode(&inner)
                w.write(blob: inner.bytes)
            }
            w.write(false)
            w.write(true)
            var inner = StateWriter()
            d.repeating!.encode(&inner)
            var decisions = inner.bytes
            for i in 4..<decisions.count where decisions[i] == 3 { decisions[i] = 1 }
            w.write(blob: decisions)
            return w.bytes
        }
        let restored = make()
        var r = StateReader(version5(live))
        try restored.decode(&r, version: 5)
        #expect(restored.repeating?.repeats == live.repeating?.repeats)
        #expect(restored.repeating?.strong == [true, false, true])
        #expect(restored.scales.allSatisfy { $0.calibrators.map(\.lag) == [8, 0, 8] })
        // The values they are decided from: the newest the longest window's ring holds (577 of 900).
        let longest = try #require(live.scales.max { $0.ring < $1.ring })
        #expect(longest.ring == 512 + 64 + 1)
        #expect(longest.recentValues(channel: 2, count: 600) == Array(c[(900 - longest.ring)...]))
        #expect(longest.recentValues(channel: 0, count: 100) == Array(a[800...]))
    }
}
