import Foundation
import Learning
@testable import Pipeline
import Testing

@Suite struct DiscordSignalTests {
    /// The nearest earlier window's distance worked out directly: each channel's last `w` values,
    /// means removed (if `centred`), against every earlier window that ends at least `w` values
    /// before the newest and starts at most `history` values before the current window.
    static func bruteForce(_ x: [Double], w: Int, history: Int, centred: Bool = true) -> Double? {
        let n = x.count
        guard n >= w else { return nil }
        let s = n - w
        let q = Array(x[s...]), qm = centred ? q.reduce(0, +) / Double(w) : 0
        var best = Double.infinity
        for lag in w...max(w, history) where s - lag >= 0 {
            let p = Array(x[(s - lag)..<(s - lag + w)]), pm = centred ? p.reduce(0, +) / Double(w) : 0
            var d = 0.0
            for k in 0..<w { let e = (q[k] - qm) - (p[k] - pm); d += e * e }
            best = min(best, d / Double(w))
        }
        return best.isFinite ? best : nil
    }

    /// One row read by a signal, which then learns from it (as normal unless `anomalous`).
    static func feed(_ s: any AnomalySignal, _ row: [Float], anomalous: Bool = false) -> Reading {
        var row = row
        return row.withUnsafeMutableBufferPointer { b in
            var o = Observation(values: UnsafePointer(b.baseAddress!), dimension: b.count, logError: 0, modelReady: true)
            let r = s.read(&o)
            s.learn(o, anomalous: anomalous)
            return r
        }
    }

    static func series(_ n: Int, seed: UInt64, channel: Int) -> [Double] {
        var random = RandomSource(seed: seed &+ UInt64(channel))
        return (0..<n).map { t in
            100 * Double(channel) + sin(Double(t) * 2 * .pi / Double(17 + 5 * channel)) + 0.3 * Double(random.normal())
        }
    }

    /// The sliding products give the brute-force distance at every sample, on every channel, past
    /// the point where the ring wraps (values far from 0 on later channels, so cancellation would
    /// show), with the windows' means removed and kept.
    @Test(arguments: [true, false]) func slidingDistancesMatchTheDirectComputation(centred: Bool) throws {
        let (w, history, n, channels) = (8, 40, 400, 3)
        let signal = DiscordSignal(window: w, history: history, channels: channels, centred: centred, horizon: 100, holdOff: 0)
        let xs = (0..<channels).map { Self.series(n, seed: 5, channel: $0) }
        var compared = 0
        for t in 0..<n {
            for c in 0..<channels {
                let got = signal.push(xs[c][t], channel: c)
                let lags = min(history, t + 1 - w) - w + 1
                guard lags >= 4 * w || min(history, t + 1 - w) == history else {
                    #expect(got == nil)
                    continue
                }
                let want = try #require(Self.bruteForce(Array(xs[c][...t]), w: w, history: history, centred: centred))
                let d = try #require(got, "a distance at sample \(t)")
                #expect(abs(d - want) <= 1e-9 * max(1, want) + 1e-9, "channel \(c), sample \(t): \(d) vs \(want)")
                compared += 1
            }
        }
        #expect(compared > channels * (n - 2 * history))
    }

    /// A sine whose frequency doubles for a while: the change is far from every earlier window, so
    /// the signal's surprise there is many standard units and its strength passes 0.9, while the
    /// unchanged sine never reaches that strength.
    @Test func aChangeOfShapeIsSurprisingAndTheUnchangedStreamIsNot() {
        let signal = DiscordSignal(window: 16, history: 256, channels: 1, horizon: 1000, holdOff: 100)
        var random = RandomSource(seed: 3)
        var normalStrength: Float = 0, changedSurprise = -Float.infinity, changedStrength: Float = 0
        for t in 0..<1600 {
            let changed = (1200..<1260).contains(t)
            var v = Float(sin(Double(t) * 2 * .pi / (changed ? 12 : 24))) + 0.05 * random.normal()
            let r = withUnsafePointer(to: &v) { p -> Reading in
                var o = Observation(values: p, dimension: 1, logError: 0, modelReady: true)
                let r = signal.read(&o)
                signal.learn(o, anomalous: false)
                return r
            }
            if t < 1200 { normalStrength = max(normalStrength, r.strength) }
            if changed { changedSurprise = max(changedSurprise, r.surprise); changedStrength = max(changedStrength, r.strength) }
        }
        #expect(normalStrength < 0.9, "no alert strength on the unchanged sine: \(normalStrength)")
        #expect(changedSurprise > 5 && changedStrength > 0.9, "surprise \(changedSurprise), strength \(changedStrength)")
    }

    /// A change that builds up: from sample 1200 a faster sine grows into the stream over 80 samples.
    /// Its distances rise a little at a time, and every one is learned (as the chain learns what does
    /// not alert). Unclipped, the calibrator learns the rise as its scale as it goes; with
    /// `discord_clip` (5) the scale stays that of the normal stream, and the change's surprise ends
    /// well above. Before the change neither gives alert strength.
    @Test func aChangeThatBuildsUpStaysSurprisingWhenTheCalibrationIsClipped() {
        func run(clip: Double) -> (normal: Float, changed: Float) {
            let signal = DiscordSignal(window: 32, history: 1024, channels: 1, margin: 4, clip: clip, horizon: 5000, holdOff: 400)
            var random = RandomSource(seed: 11)
            var (normal, changed) = (Float(0), -Float.infinity)
            for t in 0..<1300 {
                let grown = Double(min(max(t - 1200, 0), 80)) / 80
                let v = Float(sin(Double(t) * 2 * .pi / 24) + grown * sin(Double(t) * 2 * .pi / 7)) + 0.05 * random.normal()
                let r = Self.feed(signal, [v], anomalous: false)
                if t < 1200 { normal = max(normal, r.strength) } else { changed = max(changed, r.surprise) }
            }
            return (normal, changed)
        }
        let (plain, clipped) = (run(clip: 0), run(clip: 5))
        #expect(plain.normal < 0.9 && clipped.normal < 0.9, "strength before the change: \(plain.normal), \(clipped.normal)")
        #expect(clipped.changed > plain.changed + 3, "the change's surprise: unclipped \(plain.changed), clipped \(clipped.changed)")
    }

    /// On a stream of several features a channel that does not repeat is quiet, and its distances are
    /// learned unclipped: its calibrators (its period window's too) end as those of an unclipped
    /// discord, while a repeating channel's, and the same noise channel's in a discord with nothing
    /// quiet, do not.
    @Test func aQuietChannelIsCalibratedUnclipped() {
        func run(clip: Double, quiet: Bool) -> MultiscaleDiscord {
            let d = MultiscaleDiscord(
                windows: [16], period: .fixed(24), history: 256, channels: 2, clip: clip, horizon: 5000, holdOff: 100,
                quietSurprise: quiet ? 5.5 : nil)
            var random = RandomSource(seed: 4)
            for t in 0..<700 {
                let burst: Float = (300..<330).contains(t) || (560..<600).contains(t) ? 12 : 1
                let distorted = (500..<560).contains(t) ? Float(t - 500) / 20 * Float(sin(Double(t) * 2 * .pi / 7)) : 0
                let row = [Float(sin(Double(t) * 2 * .pi / 24)) + distorted + 0.05 * random.normal(), burst * random.normal()]
                _ = Self.feed(d, row)
            }
            return d
        }
        let (quietClipped, unclipped, noneQuiet) = (run(clip: 5, quiet: true), run(clip: 0, quiet: true), run(clip: 5, quiet: false))
        #expect(quietClipped.repeating?.repeats == [true, false])
        #expect(quietClipped.scales[0].calibrators[1] == unclipped.scales[0].calibrators[1], "the quiet channel learns as unclipped")
        #expect(noneQuiet.scales[0].calibrators[1] != unclipped.scales[0].calibrators[1], "the clip bites on that channel when it is not quiet")
        #expect(quietClipped.scales[0].calibrators[0] != unclipped.scales[0].calibrators[0], "the repeating channel is clipped")
        func period(_ d: MultiscaleDiscord, _ c: Int) -> Calibrator? { d.periodic?.windows[c]?.calibrators[0] }
        #expect(period(quietClipped, 1) != nil && period(quietClipped, 1) == period(unclipped, 1), "its period window too")
        #expect(period(noneQuiet, 1) != period(unclipped, 1))
    }

    /// The same shape at a new level: a sine that steps up by three amplitudes at sample 1300. Once
    /// the step has left the window (32 samples on), a centred window has a near twin (the sine
    /// before the step, any whole number of periods back), while a level window is far from every
    /// earlier window (they end at least 32 samples back, all or nearly all before the step);
    /// before the step both find twins.
    @Test func theSameShapeAtANewLevelIsNovelToALevelWindowOnly() {
        let (w, history, period) = (32, 512, 40)
        let level = DiscordSignal(window: w, history: history, channels: 1, centred: false, horizon: 1000, holdOff: 0)
        let centred = DiscordSignal(window: w, history: history, channels: 1, horizon: 1000, holdOff: 0)
        var random = RandomSource(seed: 8)
        for t in 0..<1300 + w + 8 {
            let v = sin(Double(t) * 2 * .pi / Double(period)) + (t < 1300 ? 0 : 3) + 0.01 * Double(random.normal())
            let distances = (level.push(v, channel: 0), centred.push(v, channel: 0))
            guard let dl = distances.0, let dc = distances.1 else {
                #expect(t < 6 * w, "a distance at sample \(t)")
                continue
            }
            if (1000..<1300).contains(t) {
                #expect(dl < 0.01 && dc < 0.01, "twins before the step, sample \(t): \(dl), \(dc)")
            } else if t >= 1300 + w {
                #expect(dc < 0.01, "the centred window has a twin, sample \(t): \(dc)")
                #expect(dl > 1, "the level window has none, sample \(t): \(dl)")
            }
        }
    }

    /// A checkpoint taken mid-stream (after the ring has wrapped, and before) restores a signal that
    /// reads the rest of the stream as the original does, for centred and level windows.
    @Test(arguments: [true, false]) func aRestoredSignalReadsOnAsTheOriginal(centred: Bool) throws {
        for cut in [150, 700] {
            let make = { DiscordSignal(window: 12, history: 120, channels: 2, centred: centred, horizon: 500, holdOff: 50) }
            let original = make()
            let xs = (0..<2).map { Self.series(1000, seed: 9, channel: $0).map(Float.init) }
            func feed(_ s: DiscordSignal, _ t: Int) -> Reading { Self.feed(s, [xs[0][t], xs[1][t]]) }
            for t in 0..<cut { _ = feed(original, t) }
            var w = StateWriter()
            original.encode(&w)
            let restored = make()
            var r = StateReader(w.bytes)
            try restored.decode(&r, version: DiscordSignal.stateVersion)
            #expect(restored.count == original.count)
            for t in cut..<1000 {
                let a = feed(original, t), b = feed(restored, t)
                #expect(abs(a.surprise - b.surprise) < 1e-3 || (a.surprise == b.surprise), "sample \(t) after a cut at \(cut)")
                #expect(abs(a.strength - b.strength) < 1e-4)
            }
        }
    }

    /// A signal saved with a longer history restores into a shorter one (an operator lowered
    /// `discord_history`): it keeps the newest values its ring holds, and from there on measures
    /// each window's distance as a signal of the shorter history that read the whole stream does.
    @Test func aShorterHistoryResumesFromTheNewestValues() throws {
        let xs = (0..<2).map { Self.series(1000, seed: 4, channel: $0).map(Float.init) }
        func feed(_ s: DiscordSignal, _ t: Int) { _ = Self.feed(s, [xs[0][t], xs[1][t]]) }
        let longer = DiscordSignal(window: 12, history: 240, channels: 2, horizon: 500, holdOff: 50)
        let shorter = { DiscordSignal(window: 12, history: 120, channels: 2, horizon: 500, holdOff: 50) }
        let throughout = shorter()
        for t in 0..<700 { feed(longer, t); feed(throughout, t) }
        var w = StateWriter()
        longer.encode(&w)
        let restored = shorter()
        var r = StateReader(w.bytes)
        try restored.decode(&r, version: DiscordSignal.stateVersion)
        #expect(restored.count == 700 && restored.calibrators.map(\.count) == longer.calibrators.map(\.count))
        for t in 700..<1000 {
            feed(restored, t)
            feed(throughout, t)
            for c in 0..<2 {
                let a = try #require(restored.lastLog[c]), b = try #require(throughout.lastLog[c])
                #expect(abs(a - b) < 1e-3, "sample \(t), channel \(c): \(a) against \(b)")
            }
        }
    }

    /// From review: a signal saved with a shorter history restores into a longer one (an operator
    /// raised `discord_history`): its ring holds the values kept and nothing before them, so each
    /// distance is what a signal of the longer history that read only those values measures. The
    /// lags beyond them read empty slots as windows of earlier values (a window of zeros, the twin
    /// of an outage) until the ring filled.
    @Test func aLongerHistoryResumesFromTheValuesKept() throws {
        let xs = (0..<2).map { Self.series(1000, seed: 6, channel: $0).map(Float.init) }
        func feed(_ s: DiscordSignal, _ t: Int) { _ = Self.feed(s, [xs[0][t], xs[1][t]]) }
        let shorter = DiscordSignal(window: 12, history: 120, channels: 2, horizon: 500, holdOff: 50)
        let longer = { DiscordSignal(window: 12, history: 400, channels: 2, horizon: 500, holdOff: 50) }
        for t in 0..<700 { feed(shorter, t) }
        var w = StateWriter()
        shorter.encode(&w)
        let restored = longer()
        var r = StateReader(w.bytes)
        try restored.decode(&r, version: DiscordSignal.stateVersion)
        #expect(restored.count == 700)
        let fresh = longer()
        for t in (700 - shorter.ring)..<700 { feed(fresh, t) }
        var compared = 0
        for t in 700..<1000 {
            feed(restored, t)
            feed(fresh, t)
            for c in 0..<2 {
                guard let b = fresh.lastLog[c] else { continue }
                let a = try #require(restored.lastLog[c])
                #expect(abs(a - b) < 1e-3, "sample \(t), channel \(c): \(a) against \(b)")
                compared += 1
            }
        }
        #expect(compared > 500)
    }

    /// The chain has the signal on streams up to `discord_channels` wide, and not on wider ones;
    /// its settings are validated.
    @Test func theSignalIsOnForNarrowStreamsOnly() throws {
        var settings = StreamConfiguration()
        settings.discordChannels = 4
        let narrow = StreamPipeline(name: "narrow", settings: settings.resolved(dim: 4))
        let wide = StreamPipeline(name: "wide", settings: settings.resolved(dim: 5))
        #expect(narrow.chain.signal(MultiscaleDiscord.self)?.scales.map(\.channels) == [4, 4])
        #expect(narrow.chain.signal(MultiscaleDiscord.self)?.scales.map { [$0.window, $0.centred ? 1 : 0] } == [[32, 1], [64, 0]])
        #expect(wide.chain.signal(MultiscaleDiscord.self) == nil)
        #expect(narrow.chain.signal(MultiscaleDiscord.self)?.scales.map(\.clip) == [0, 0])
        let clip = try ConfigurationFile.parse("[stream]\ndiscord_clip = 5\n").streamDefaults
        #expect(StreamPipeline(name: "clip", settings: clip.resolved(dim: 2)).chain.signal(MultiscaleDiscord.self)?.scales.map(\.clip) == [5, 5])
        let fixed = try ConfigurationFile.parse("[stream]\nperiod = 50\ndiscord_clip = 3\n").streamDefaults
        let periodic = StreamPipeline(name: "fixed", settings: fixed.resolved(dim: 2)).chain.signal(MultiscaleDiscord.self)?.periodic
        #expect(periodic?.windows.map { $0?.clip } == [3, 3], "the period windows are clipped alike")
        let c = try ConfigurationFile.parse("[stream]\ndiscord_window = 16\ndiscord_history = 500\ndiscord_margin = 2.5\n")
        #expect(c.streamDefaults.discordWindows == [16] && c.streamDefaults.discordHistory == 500 && c.streamDefaults.discordMargin == 2.5)
        let two = try ConfigurationFile.parse("[stream]\ndiscord_window = 16, 64\n").streamDefaults
        #expect(two.discordWindows == [16, 64])
        #expect(StreamPipeline(name: "two", settings: two.resolved(dim: 2)).chain.signal(MultiscaleDiscord.self)?.scales.map(\.window) == [16, 64, 64])
        let levels = try ConfigurationFile.parse("[stream]\ndiscord_level_window = 16, 128\n").streamDefaults
        #expect(levels.discordLevelWindows == [16, 128])
        let none = try ConfigurationFile.parse("[stream]\ndiscord_level_window = 0\n").streamDefaults
        #expect(none.discordLevelWindows.isEmpty)
        #expect(StreamPipeline(name: "none", settings: none.resolved(dim: 2)).chain.signal(MultiscaleDiscord.self)?.scales.map(\.centred) == [true])
        for bad in [
            "discord_window = 1", "discord_history = 8", "discord_channels = -1", "discord_margin = -1", "discord_window = 64, 32",
            "discord_window = 8, 16, 32, 64, 128", "discord_window = 16, 600\ndiscord_history = 500",
            "discord_level_window = 1", "discord_level_window = 64, 32", "discord_level_window = 8, 16, 32, 64, 128",
            "discord_level_window = 600\ndiscord_history = 500", "discord_level_window = 0, 64", "discord_level_window =",
            "discord_clip = -1", "discord_clip = 0.5", "discord_clip = 101",
        ] {
            #expect(throws: (any Error).self, "\(bad)") {
                try ConfigurationFile.parse("[stream]\ndiscord_window = 16\n\(bad)\n")
            }
        }
    }

    /// Several windows at once: a reading is the largest surprise and strength of the windows' own
    /// signals (each fed the same stream alone), the deciding window is the strongest one's, and the
    /// section restores every window; a version-1 section (one window) restores the first window and
    /// leaves the others fresh.
    @Test func severalWindowsReadAsTheirLargest() throws {
        let make = { MultiscaleDiscord(windows: [8, 24], history: 120, channels: 2, margin: 1, horizon: 500, holdOff: 50) }
        let composite = make()
        let alone = [8, 24].map { DiscordSignal(window: $0, history: 120, channels: 2, margin: 1, horizon: 500, holdOff: 50) }
        var xs = (0..<2).map { Self.series(1400, seed: 4, channel: $0).map(Float.init) }
        for t in 1000..<1060 { xs[1][t] = xs[1][t - 1] }  // a flat stretch on channel 1
        func feed(_ s: any AnomalySignal, _ t: Int) -> Reading { Self.feed(s, [xs[0][t], xs[1][t]]) }
        var decidedBy: Set<Int> = []
        var checkpoint: [UInt8] = []
        for t in 0..<1400 {
            let r = feed(composite, t)
            let each = alone.map { feed($0, t) }
            #expect(r.surprise == each.map(\.surprise).max()!, "sample \(t)")
            #expect(r.strength == each.map(\.strength).max()!, "sample \(t)")
            if r.strength > 0 {
                #expect(composite.origin().window == [8, 24][each.firstIndex { $0.strength == r.strength }!])
                decidedBy.insert(composite.origin().window)
            }
            if t == 900 {
                var w = StateWriter()
                composite.encode(&w)
                checkpoint = w.bytes
            }
        }
        #expect(decidedBy == [8, 24], "each window decides some readings: \(decidedBy)")

        var r = StateReader(checkpoint)
        let restored = make()
        try restored.decode(&r, version: MultiscaleDiscord.stateVersion)
        #expect(restored.scales.map(\.count) == [901, 901])
        var one = StateWriter()
        let first = DiscordSignal(window: 8, history: 120, channels: 2, margin: 1, horizon: 500, holdOff: 50)
        for t in 0..<300 { _ = feed(first, t) }
        first.encode(&one)
        var r1 = StateReader(one.bytes)
        let upgraded = make()
        try upgraded.decode(&r1, version: 1)
        #expect(upgraded.scales.map(\.count) == [300, 0])
    }

    /// Centred and level windows of the same length are separate scales: each restores from its own
    /// kind's section, and a section of the earlier format (version 2: every window centred, as
    /// checkpoints were before level windows) restores the centred windows alone, leaving a level
    /// window of the same length to start afresh rather than read a centred window's calibration.
    @Test func levelAndCentredWindowsRestoreFromTheirOwnKind() throws {
        let make = { MultiscaleDiscord(windows: [8, 24], levelWindows: [24], history: 120, channels: 1, horizon: 500, holdOff: 50) }
        let xs = Self.series(600, seed: 6, channel: 0).map(Float.init)
        let original = make()
        for t in 0..<400 { _ = Self.feed(original, [xs[t]]) }
        var w = StateWriter()
        original.encode(&w)
        let restored = make()
        var r = StateReader(w.bytes)
        try restored.decode(&r, version: MultiscaleDiscord.stateVersion)
        #expect(restored.scales.map { [$0.window, $0.centred ? 1 : 0, $0.count] } == [[8, 1, 400], [24, 1, 400], [24, 0, 400]])
        for t in 400..<600 {
            let a = Self.feed(original, [xs[t]]), b = Self.feed(restored, [xs[t]])
            #expect(a.strength == b.strength && a.surprise == b.surprise, "sample \(t)")
        }

        // Version 2, as the build before level windows wrote it: a count, then each window and its section.
        let old = MultiscaleDiscord(windows: [8, 24], history: 120, channels: 1, horizon: 500, holdOff: 50)
        for t in 0..<300 { _ = Self.feed(old, [xs[t]]) }
        var v2 = StateWriter()
        v2.write(UInt32(old.scales.count))
        for s in old.scales {
            v2.write(UInt32(s.window))
            var inner = StateWriter()
            s.encode(&inner)
            v2.write(blob: inner.bytes)
        }
        let upgraded = make()
        var r2 = StateReader(v2.bytes)
        try upgraded.decode(&r2, version: 2)
        #expect(upgraded.scales.map(\.count) == [300, 300, 0])
        #expect(upgraded.scales[1].calibrators == old.scales[1].calibrators)

        // A level window's section does not restore a centred window of the same length, nor the reverse.
        let swapped = MultiscaleDiscord(windows: [24], levelWindows: [8], history: 120, channels: 1, horizon: 500, holdOff: 50)
        var r3 = StateReader(w.bytes)
        try swapped.decode(&r3, version: MultiscaleDiscord.stateVersion)
        #expect(swapped.scales.map { [$0.window, $0.centred ? 1 : 0, $0.count] } == [[24, 1, 400], [8, 0, 0]])
        let saved = make()
        var r4 = StateReader(w.bytes)
        try saved.decode(&r4, version: MultiscaleDiscord.stateVersion)
        #expect(swapped.scales[0].calibrators == saved.scales[1].calibrators, "the centred 24's own section")
        #expect(swapped.scales[0].calibrators != saved.scales[2].calibrators, "not the level 24's")
    }

    /// A sparse count (a level of a few a step): Poisson around a daily cycle of 24 steps, its rate
    /// overdispersed (lognormal) and now and then a heavy-tailed burst of 1 to 3 steps.
    static func sparseCount(_ n: Int, level: Double, seed: UInt64) -> [Float] {
        var r = RandomSource(seed: seed)
        var (left, size) = (0, 1.0)
        return (0..<n).map { t in
            if left == 0 && r.uniform() < 0.02 { (left, size) = (1 + r.index(below: 3), 1 + 2 / Double(r.uniform(0.05, 1))) }
            let boost = left > 0 ? size : 1
            left = max(0, left - 1)
            let rate = level * (1 + 0.8 * sin(2 * Double.pi * Double(t) / 24)) * exp(0.5 * Double(r.normal()) - 0.125) * boost
            // Knuth's: the count of uniforms whose product stays over e^−rate.
            var (k, p) = (0, Double(r.uniform()))
            while p > exp(-rate) { k += 1; p *= Double(r.uniform()) }
            return Float(k)
        }
    }

    /// `discord_count_period_only`: on a one-feature count, where its bursts fall within a fixed
    /// window is chance, so the discord reads it at its own period's window only. On three seeds of a
    /// sparse count (4,000 values, a level of 4, no anomaly), the default pipeline without the model
    /// raises no alert from a fixed window and fewer alerts in all, where with the rule off (the
    /// reverted state, built in) the fixed windows alert (2 alerts, both theirs). The signal: a
    /// count's fixed windows have no opinion while they still learn (the same calibrators as a
    /// discord without the rule), a stream that is not a count is read as before, and the range says
    /// which streams are one count, whatever else it learns.
    @Test func aCountsDiscordReadsItsPeriodWindowOnly() throws {
        var alerts: [Bool: Int] = [:], fixedAlerts: [Bool: Int] = [:]
        for periodOnly in [true, false] {
            for seed: UInt64 in [5, 6, 7] {
                let values = Self.sparseCount(4000, level: 4, seed: seed)
                var settings = StreamConfiguration().resolved(dim: 1)
                settings.discordCountPeriodOnly = periodOnly
                // Without the model, whose errors differ a little between BLAS builds: what alerts
                // then is decided by exact arithmetic alone.
                settings.signals.removeAll { $0 == ReconstructionSignal.name }
                try settings.validate(name: "t")
                let pipeline = StreamPipeline(name: "t", settings: settings)
                let discord = try #require(pipeline.chain.signal(MultiscaleDiscord.self))
                #expect(discord.countPeriodOnly == periodOnly)
                let fixed = Set(discord.scales.map(\.window))
                for start in stride(from: 0, to: values.count, by: 50) {
                    let batch = Array(values[start..<min(start + 50, values.count)])
                    let scored = batch.withUnsafeBufferPointer { pipeline.score($0.baseAddress!, count: batch.count, firstSequence: UInt64(start)) }
                    for s in scored.samples where s.alert {
                        alerts[periodOnly, default: 0] += 1
                        if s.discordChannel != nil && fixed.contains(s.discordWindow) && s.discordWindow != discord.periodic?.windows[0]?.window {
                            fixedAlerts[periodOnly, default: 0] += 1
                        }
                    }
                    while pipeline.trainStep() {}
                }
            }
        }
        #expect(fixedAlerts[true, default: 0] == 0 && fixedAlerts[false, default: 0] >= 1, "\(fixedAlerts)")
        #expect(alerts[true, default: 0] < alerts[false, default: 0], "\(alerts)")

        #expect(try ConfigurationFile.parse("[stream]\ndiscord_count_period_only = false\n").streamDefaults.discordCountPeriodOnly == false)
        #expect(throws: ConfigurationError.self) { try ConfigurationFile.parse("[stream]\ndiscord_count_period_only = 2\n") }

        // The signal alone: the same count through a discord with the rule and one without, each
        // sample marked a count; then the same with no sample marked.
        for marked in [true, false] {
            let make = { (rule: Bool) in
                MultiscaleDiscord(windows: [16], levelWindows: [32], history: 256, channels: 1, horizon: 2000, holdOff: 50, countPeriodOnly: rule)
            }
            let (with, without) = (make(true), make(false))
            var (opinions, wrong) = (0, 0)
            for v in RangeHabitTests.bursty(1200, heavy: true, seed: 8) {
                var row = [v]
                let (a, b) = row.withUnsafeMutableBufferPointer { p in
                    var o = Observation(values: UnsafePointer(p.baseAddress!), dimension: 1, logError: 0, modelReady: true)
                    o.oneCount = marked
                    let (a, b) = (with.read(&o), without.read(&o))
                    with.learn(o, anomalous: false)
                    without.learn(o, anomalous: false)
                    return (a, b)
                }
                if b.surprise > -.infinity { opinions += 1 }
                // Marked: no opinion from the rule's discord; unmarked: both read alike.
                let unlike = marked ? a.surprise > -.infinity || a.strength > 0 : a.surprise != b.surprise || a.strength != b.strength
                if unlike { wrong += 1 }
            }
            #expect(wrong == 0 && opinions > 500, "marked \(marked): \(wrong) readings wrong; \(opinions) opinions without the rule")
            #expect(with.scales.map { $0.calibrators } == without.scales.map { $0.calibrators }, "the fixed windows still learn")
        }

        // The range marks a stream of one feature, whole and never negative; not one with a value
        // that is not whole (once learned) or below zero, nor a stream of two features.
        func marks(_ rows: [[Float]]) -> Bool {
            let range = RangeSignal(dimension: rows[0].count, margin: 0.05, refresh: 100, warmup: 50, window: 0)
            var last = false
            for row in rows {
                var row = row
                last = row.withUnsafeMutableBufferPointer { p in
                    var o = Observation(values: UnsafePointer(p.baseAddress!), dimension: p.count, logError: 0, modelReady: true)
                    _ = range.read(&o)
                    range.learn(o, anomalous: false)
                    return o.oneCount
                }
            }
            return last
        }
        let counts = RangeHabitTests.bursty(300, heavy: false)
        #expect(marks(counts.map { [$0] }))
        #expect(!marks([[2.5]] + counts.map { [$0] }))
        #expect(!marks([[-1]] + counts.map { [$0] }))
        #expect(!marks(counts.map { [$0, $0] }))
        #expect(RangeSignal(dimension: 1, margin: 0.05, refresh: 100, warmup: 50, window: 0).learns, "in a chain, too")

        // Through a pipeline whose range has nothing else to learn (no deviations, drop, tail or
        // surge), a stream of fractions is still not taken for a count.
        var plain = StreamConfiguration().resolved(dim: 1)
        (plain.rangeDeviations, plain.rangeDrop, plain.surgeRun) = (0, 0, 0)
        try plain.validate(name: "t")
        let pipeline = StreamPipeline(name: "t", settings: plain)
        let fractions = (0..<400).map { Float(sin(Double($0) / 5)) + 2.5 }
        _ = fractions.withUnsafeBufferPointer { pipeline.score($0.baseAddress!, count: $0.count, firstSequence: 0) }
        #expect(try #require(pipeline.chain.signal(RangeSignal.self)).wholeP[0] == 0)
    }
}
