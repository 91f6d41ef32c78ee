import Foundation
import Learning
@testable import Pipeline
import Testing

@Suite struct PeriodWindowsTests {
    /// A pulse train: `width` values at `height` every `period` values, flat between, with noise;
    /// no pulse in the cycles listed in `missing`.
    static func pulses(_ n: Int, period: Int, width: Int = 6, height: Float = 5, missing: Set<Int> = [], seed: UInt64 = 3) -> [Float] {
        var random = RandomSource(seed: seed)
        return (0..<n).map { t in
            let pulse = t % period < width && !missing.contains(t / period)
            return (pulse ? height : 0) + 0.1 * random.normal()
        }
    }

    static func sine(_ n: Int, period: Int, seed: UInt64) -> [Float] {
        var random = RandomSource(seed: seed)
        return (0..<n).map { t in sin(Float(t) * 2 * .pi / Float(period)) + 0.1 * random.normal() }
    }

    /// A discord of three channels with period windows, and those windows.
    static func make(_ setting: PeriodSetting) -> (discord: MultiscaleDiscord, windows: PeriodWindows) {
        let d = MultiscaleDiscord(windows: [32], period: setting, history: 1024, channels: 3, margin: 4, horizon: 2000, holdOff: 400)
        return (d, d.periodic!)
    }

    /// Each channel's period is decided from its first 600 values: a sine of period 50 and pulses
    /// every 120 get windows that long, fed the values kept so far; noise gets none. A fixed period
    /// gives every channel its window at once, `off` none.
    @Test func eachRepeatingChannelGetsAWindowOfItsPeriod() throws {
        let (discord, p) = Self.make(.auto)
        let xs = [Self.sine(700, period: 50, seed: 1), Self.pulses(700, period: 120)]
        var noise = RandomSource(seed: 9)
        let rows = (0..<700).map { t in [xs[0][t], xs[1][t], noise.normal()] }
        for t in 0..<599 { _ = DiscordSignalTests.feed(discord, rows[t]) }
        #expect(p.decided == [false, false, false] && p.lengths == [0, 0, 0])
        _ = DiscordSignalTests.feed(discord, rows[599])
        #expect(p.decided == [true, true, true])
        #expect(p.lengths == [50, 120, 0])
        #expect(p.windows.compactMap { $0?.count } == [600, 600], "each window was fed the kept values")
        for t in 600..<700 { _ = DiscordSignalTests.feed(discord, rows[t]) }
        #expect(p.windows.compactMap { $0?.count } == [700, 700])
        #expect(p.seen.map(\.count) == [0, 0, 0])
        // Every value taught the window once, the one that decided it too: as a window of the same
        // period there from the start learned them.
        let (fixedDiscord, fixed) = Self.make(.fixed(50))
        for t in 0..<700 { _ = DiscordSignalTests.feed(fixedDiscord, rows[t]) }
        #expect(p.windows[0]?.calibrators == fixed.windows[0]?.calibrators)

        #expect(Self.make(.fixed(40)).windows.lengths == [40, 40, 40])
        #expect(Self.make(.fixed(1000)).windows.lengths == [256, 256, 256], "at most 256 values")
        #expect(Self.make(.fixed(4)).windows.lengths == [16, 16, 16], "at least 16")
        let off = Self.make(.off).windows
        #expect(off.decided == [true, true, true] && off.lengths == [0, 0, 0])
        let short = PeriodWindows(channels: 1, setting: .fixed(200), history: 400, margin: 4, horizon: 2000, holdOff: 400)
        #expect(short.windows[0]?.history == 1000, "five cycles when the history is shorter")
        #expect(Self.make(.fixed(100)).windows.windows[0]?.history == 1024)
    }

    /// A beat missing from a pulse train: every 32- or 64-value window of the gap has a twin between
    /// two earlier beats, so the discord's usual windows do not see it; a window of one cycle has no
    /// twin. The discord with period windows alerts there (strength past 0.9, from the period window
    /// of the channel, 100 values), stays below it on the normal cycles before, and without them
    /// does not alert.
    @Test func aMissingBeatHasNoTwinOneCycleLong() {
        let xs = Self.pulses(4000, period: 100, missing: [30])
        func strengths(_ period: PeriodSetting?) -> (normal: Float, gap: Float, window: Int, channel: Int) {
            let d = MultiscaleDiscord(
                windows: [32], levelWindows: [64], period: period, history: 1024, channels: 1, margin: 4, horizon: 2000, holdOff: 400)
            var normal: Float = 0, gap: Float = 0, window = 0, channel = -1
            for t in 0..<3200 {
                let r = DiscordSignalTests.feed(d, [xs[t]])
                if t >= 1500 && t < 3000 { normal = max(normal, r.strength) }
                if t >= 3000 && t < 3100 && r.strength > gap { (gap, window, channel) = (r.strength, d.origin().window, d.origin().channel); #expect(d.origin().history == 1024) }
            }
            return (normal, gap, window, channel)
        }
        let with = strengths(.auto), without = strengths(nil)
        #expect(with.gap > 0.9, "\(with)")
        #expect(with.window == 100 && with.channel == 0, "\(with)")
        #expect(with.normal < 0.5, "\(with)")
        #expect(without.gap < 0.5, "\(without)")
    }

    /// The section holds the channels' kept values before their periods are decided and their
    /// windows after: a signal restored from either reads the next values as the original does. A
    /// section of version 3 (before period windows) leaves them to start afresh; one with period
    /// windows restores into a signal without them, and into a fixed period only its windows of that
    /// length.
    @Test func periodWindowsRestoreBeforeAndAfterTheirPeriodIsFound() throws {
        let xs = (0..<1400).map { t in [Self.sine(1400, period: 50, seed: 1)[t], Self.pulses(1400, period: 120)[t]] }
        let make = { (period: PeriodSetting?) in
            MultiscaleDiscord(windows: [16], period: period, history: 400, channels: 2, margin: 1, horizon: 500, holdOff: 50)
        }
        let original = make(.auto)
        var sections: [Int: [UInt8]] = [:]
        for t in 0..<1400 {
            if t == 300 || t == 900 {
                var w = StateWriter()
                original.encode(&w)
                sections[t] = w.bytes
            }
            _ = DiscordSignalTests.feed(original, xs[t])
        }
        for (at, bytes) in sections.sorted(by: { $0.key < $1.key }) {
            let reference = make(.auto), restored = make(.auto)
            for t in 0..<at { _ = DiscordSignalTests.feed(reference, xs[t]) }
            var r = StateReader(bytes)
            try restored.decode(&r, version: MultiscaleDiscord.stateVersion)
            #expect(restored.periodic?.decided == reference.periodic?.decided)
            #expect(restored.periodic?.seen == reference.periodic?.seen)
            for t in at..<1400 {
                let a = DiscordSignalTests.feed(reference, xs[t]), b = DiscordSignalTests.feed(restored, xs[t])
                #expect(a.surprise == b.surprise && a.strength == b.strength, "restored at \(at), sample \(t)")
            }
            #expect(restored.periodic?.lengths == [50, 120])
        }

        // Version 3: the same section without the period windows' flag and bytes.
        let plain = make(nil)
        for t in 0..<900 { _ = DiscordSignalTests.feed(plain, xs[t]) }
        var w3 = StateWriter()
        plain.encode(&w3)
        let v3 = Array(w3.bytes.dropLast())
        let upgraded = make(.auto)
        var r3 = StateReader(v3)
        try upgraded.decode(&r3, version: 3)
        #expect(upgraded.scales[0].count == 900)
        #expect(upgraded.periodic?.decided == [false, false] && upgraded.periodic?.seen.map(\.count) == [0, 0])

        // Period windows saved, none now: the usual windows restore.
        let without = make(nil)
        var r4 = StateReader(sections[900]!)
        try without.decode(&r4, version: MultiscaleDiscord.stateVersion)
        #expect(without.scales[0].count == 900 && without.periodic == nil)

        // Windows of a fixed period, restored where channels find their own: they start afresh.
        let wasFixed = make(.fixed(50))
        for t in 0..<900 { _ = DiscordSignalTests.feed(wasFixed, xs[t]) }
        var w6 = StateWriter()
        wasFixed.encode(&w6)
        let finding = make(.auto)
        var r6 = StateReader(w6.bytes)
        try finding.decode(&r6, version: MultiscaleDiscord.stateVersion)
        #expect(finding.scales[0].count == 900)
        #expect(finding.periodic?.decided == [false, false] && finding.periodic?.lengths == [0, 0])

        // A fixed period keeps the saved windows of its length only.
        let fixed = make(.fixed(50))
        var r5 = StateReader(sections[900]!)
        try fixed.decode(&r5, version: MultiscaleDiscord.stateVersion)
        #expect(fixed.periodic?.windows.map { $0?.count } == [900, 0], "the 120-value window starts afresh")
    }

    /// `discord_period_channels` (8) gives streams of up to 8 features period windows, and a lower
    /// count none to wider streams; `period = off` turns them off; the memory estimate counts them;
    /// a negative count is refused.
    @Test func theSettingChoosesTheStreamsThatHavePeriodWindows() throws {
        let defaults = try ConfigurationFile.parse("[stream]\n").streamDefaults
        #expect(defaults.discordPeriodChannels == 8)
        func periodic(_ s: StreamConfiguration, dim: Int) -> PeriodWindows? {
            StreamPipeline(name: "s", settings: s.resolved(dim: dim)).chain.signal(MultiscaleDiscord.self)?.periodic
        }
        #expect(periodic(defaults, dim: 1) != nil)
        #expect(periodic(defaults, dim: 8)?.decided.count == 8)
        let one = try ConfigurationFile.parse("[stream]\ndiscord_period_channels = 1\n").streamDefaults
        #expect(periodic(one, dim: 1) != nil)
        #expect(periodic(one, dim: 2) == nil)
        let two = try ConfigurationFile.parse("[stream]\ndiscord_period_channels = 2\n").streamDefaults
        #expect(periodic(two, dim: 2)?.decided.count == 2)
        #expect(periodic(two, dim: 3) == nil)
        let off = try ConfigurationFile.parse("[stream]\nperiod = off\n").streamDefaults
        #expect(periodic(off, dim: 1) == nil)
        let none = try ConfigurationFile.parse("[stream]\ndiscord_period_channels = 0\n").streamDefaults
        #expect(periodic(none, dim: 1) == nil)
        #expect(
            defaults.resolved(dim: 1).memoryEstimate - none.resolved(dim: 1).memoryEstimate
                == PeriodWindows.bytes(channels: 1, history: defaults.discordHistory, holdOff: defaults.alertHoldOff, lagged: true))
        #expect(throws: (any Error).self) { try ConfigurationFile.parse("[stream]\ndiscord_period_channels = -1\n") }
    }

    /// A multiscale discord names where its reading came from twice: the strongest window and channel
    /// (what an alert on strength names) and the most surprising (what an alert on evidence alone
    /// names). Each channel is read as a one-channel discord reads it alone, and each window's reading
    /// is its own; over a stream whose channels change shape, the two differ at some samples.
    @Test func theStrongestAndTheMostSurprisingWindowAreNamedApart() {
        let n = 2600
        var random = RandomSource(seed: 11)
        let xs: [[Float]] = (0..<n).map { t in
            let a = sinf(Float(t) * 2 * .pi / 50) * (t >= 2000 && t < 2100 ? 3 : 1)
            let b: Float = (t % 120 < 6 ? 5 : 0) + (t >= 2300 && t < 2360 ? 2 : 0)
            return [a + 0.1 * random.normal(), b + 0.1 * random.normal(), random.normal()]
        }
        func make(_ channels: Int) -> MultiscaleDiscord {
            MultiscaleDiscord(
                windows: [32], levelWindows: [64], period: .fixed(50), history: 512, channels: channels, margin: 4, horizon: 2000,
                holdOff: 400)
        }
        let d = make(3)
        let alone = (0..<3).map { _ in make(1) }
        var differ = 0, compared = 0
        for t in 0..<n {
            let r = DiscordSignalTests.feed(d, xs[t])
            for c in 0..<3 { _ = DiscordSignalTests.feed(alone[c], [xs[t][c]]) }
            guard r.surprise.isFinite else { continue }
            // Each window's reading over the channels (the first of equals wins), from the one-channel
            // discords; then the window of the largest surprise and of the largest strength.
            var surprising = (k: 0, channel: 0, value: -Float.infinity), strongest = (k: 0, channel: 0, value: Float(0))
            for k in 0...d.scales.count {
                var surprise = (channel: -1, value: -Float.infinity), strength = (channel: -1, value: Float(0))
                for c in 0..<3 {
                    let one = k < d.scales.count ? alone[c].scales[k].lastReading : alone[c].periodic!.windows[0]!.lastReading
                    if surprise.channel < 0 || one.surprise > surprise.value { surprise = (c, one.surprise) }
                    if strength.channel < 0 || one.strength > strength.value { strength = (c, one.strength) }
                }
                if k == 0 || surprise.value > surprising.value { surprising = (k, surprise.channel, surprise.value) }
                if k == 0 || strength.value > strongest.value { strongest = (k, strength.channel, strength.value) }
            }
            let windows = d.scales.map(\.window) + [50]
            let bySurprise = d.origin(ofSurprise: true), byStrength = d.origin()
            #expect(bySurprise.channel == surprising.channel && bySurprise.window == windows[surprising.k], "sample \(t)")
            #expect(byStrength.channel == strongest.channel && byStrength.window == windows[strongest.k], "sample \(t)")
            #expect(bySurprise.level == (surprising.k == 1) && byStrength.level == (strongest.k == 1))
            compared += 1
            if bySurprise.channel != byStrength.channel || bySurprise.window != byStrength.window { differ += 1 }
        }
        #expect(compared > 1500 && differ > 0, "\(differ) of \(compared) samples name different windows")
    }
}
