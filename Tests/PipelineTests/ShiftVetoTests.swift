import Foundation
import Learning
@testable import Pipeline
import Testing

@Suite struct ShiftVetoTests {
    /// The share of the nearest twin's distance left when each value may match the twin's value one
    /// sample earlier or later, worked out directly: the nearest earlier window by plain distance (the
    /// first of equals), then per value the least squared difference against that window and its two
    /// neighbours (each about its own mean, neighbours only among the windows compared).
    static func bruteForceShare(_ x: [Double], w: Int, history: Int, centred: Bool) -> Double? {
        let n = x.count, s = n - w, longest = min(history, n - w)
        guard longest >= w else { return nil }
        func window(_ lag: Int) -> [Double] {
            let p = Array(x[(s - lag)..<(s - lag + w)])
            let m = centred ? p.reduce(0, +) / Double(w) : 0
            return p.map { $0 - m }
        }
        let q = window(0)
        var (nearest, plain) = (w, Double.infinity)
        for lag in w...longest {
            let p = window(lag)
            let d = (0..<w).reduce(0.0) { $0 + (q[$1] - p[$1]) * (q[$1] - p[$1]) }
            if d < plain { (nearest, plain) = (lag, d) }
        }
        guard plain > 0 else { return 1 }
        let twins = (max(w, nearest - 1)...min(longest, nearest + 1)).map(window)
        let tolerant = (0..<w).reduce(0.0) { total, k in total + twins.map { (q[k] - $0[k]) * (q[k] - $0[k]) }.min()! }
        return tolerant / plain
    }

    /// The signal's share, read right after each push, is the direct computation's, on every channel
    /// past the ring's wrap, with means removed and kept.
    @Test(arguments: [true, false]) func theShareMatchesTheDirectComputation(centred: Bool) throws {
        let (w, history, n, channels) = (8, 40, 300, 2)
        let signal = DiscordSignal(window: w, history: history, channels: channels, centred: centred, horizon: 100, holdOff: 0)
        let xs = (0..<channels).map { DiscordSignalTests.series(n, seed: 11, channel: $0) }
        var compared = 0
        for t in 0..<n {
            for c in 0..<channels {
                guard let d = signal.push(xs[c][t], channel: c) else { continue }
                let want = try #require(Self.bruteForceShare(Array(xs[c][...t]), w: w, history: history, centred: centred))
                let got = signal.shiftShare(channel: c, distance: d)
                #expect(abs(got - want) <= 1e-6 * max(1, want), "channel \(c), sample \(t): \(got) vs \(want)")
                #expect(got <= 1 + 1e-9, "a twin's own values are among the matches")
                compared += 1
            }
        }
        #expect(compared > channels * (n - 2 * history))
    }

    /// A square wave whose half-cycles last 20 or 21 values at random, as a wave whose period is not a
    /// whole number of samples: from `changeAt` on, for `changeLength` values, it runs at half its
    /// amplitude.
    static func jitteredSquare(_ n: Int, changeAt: Int, changeLength: Int = 80, seed: UInt64) -> [Float] {
        var random = RandomSource(seed: seed)
        var xs: [Float] = []
        var high = true
        while xs.count < n {
            let length = 20 + (random.uniform() < 0.5 ? 1 : 0)
            for _ in 0..<length { xs.append(high ? 1 : -1) }
            high.toggle()
        }
        return xs.prefix(n).enumerated().map { t, v in
            ((changeAt..<changeAt + changeLength).contains(t) ? 0.5 * v : v) + 0.01 * random.normal()
        }
    }

    /// The largest strength and surprise a discord gives before the change, and over the change.
    static func readings(_ veto: ShiftVeto?, _ xs: [Float], changeAt: Int) -> (before: Reading, change: Reading, vetoes: Int) {
        let d = MultiscaleDiscord(
            windows: [32], levelWindows: [64], period: .auto, history: 1024, channels: 1, margin: 4, horizon: 2000, holdOff: 400,
            shiftVeto: veto)
        var before = Reading(), change = Reading()
        for (t, x) in xs.enumerated() {
            let r = DiscordSignalTests.feed(d, [x], anomalous: t >= changeAt)
            if t < changeAt {
                (before.strength, before.surprise) = (max(before.strength, r.strength), max(before.surprise, r.surprise))
            } else {
                (change.strength, change.surprise) = (max(change.strength, r.strength), max(change.surprise, r.surprise))
            }
        }
        let vetoes = d.scales.reduce(0) { $0 + $1.shiftVetoes } + (d.periodic?.windows.reduce(0) { $0 + ($1?.shiftVetoes ?? 0) } ?? 0)
        return (before, change, vetoes)
    }

    /// On the jittered square wave the plain distance alerts (strength past 0.9, or a surprise past
    /// `alert_evidence` 6) where an edge falls a sample off its twin's; held back, the wave never
    /// reaches either before the change, and the change (half the amplitude: a change of shape no
    /// shift explains) still does.
    @Test func aSquareWaveEdgeASampleOffIsHeldBackAndAChangeOfShapeIsNot() {
        let veto = ShiftVeto(share: 0.25, strength: 0.9, surprise: Float(6).nextDown)
        var alertedWithout = 0
        for seed: UInt64 in 1...3 {
            let xs = Self.jitteredSquare(5000, changeAt: 4500, seed: seed)
            let plain = Self.readings(nil, xs, changeAt: 4500)
            let held = Self.readings(veto, xs, changeAt: 4500)
            if plain.before.strength > 0.9 || plain.before.surprise >= 6 { alertedWithout += 1 }
            #expect(plain.vetoes == 0)
            #expect(held.before.strength < 0.9 && held.before.surprise < 6, "seed \(seed): \(held.before)")
            #expect(held.change.strength > 0.9 && held.change.surprise > 20, "seed \(seed): the change still alerts: \(held.change)")
            #expect(held.vetoes > 0)
        }
        #expect(alertedWithout == 3, "the plain distance alerts on the wave itself")
    }

    /// `discord_shift_veto` (0.25) reads again what would alert (`threshold`, `alert_evidence`) and
    /// holds it back just under `alert_evidence`; 0 turns it off, and a share outside 0...1 is
    /// refused.
    @Test func theSettingGivesEveryWindowTheVeto() throws {
        let defaults = try ConfigurationFile.parse("[stream]\n").streamDefaults
        #expect(defaults.shiftVeto() == ShiftVeto(share: 0.25, strength: 0.9, surprise: Float(6).nextDown))
        let discord = StreamPipeline(name: "s", settings: defaults.resolved(dim: 2)).chain.signal(MultiscaleDiscord.self)
        #expect(discord?.scales.allSatisfy { $0.shiftVeto == defaults.shiftVeto() } == true)
        #expect(discord?.periodic?.shiftVeto == defaults.shiftVeto())
        let off = try ConfigurationFile.parse("[stream]\ndiscord_shift_veto = 0\n").streamDefaults
        #expect(off.shiftVeto() == nil)
        let noEvidence = try ConfigurationFile.parse("[stream]\nalert_evidence = 0\nthreshold = 0.8\n").streamDefaults
        #expect(noEvidence.shiftVeto() == ShiftVeto(share: 0.25, strength: 0.8, surprise: .infinity))
        for bad in ["-0.1", "1.5", "nan"] {
            #expect(throws: (any Error).self) { try ConfigurationFile.parse("[stream]\ndiscord_shift_veto = \(bad)\n") }
        }
    }
}
