import EddyProtocol
import Foundation
import Learning
@testable import Pipeline
import Testing

@Suite struct LevelSignalTests {
    /// A count stream: a cycle of `period` samples around `level` (×(1 + 0.5 sin)), noise of 10%,
    /// one sample in 30 a burst (×(1 + 2/u), u uniform over [0.02, 1): up to 101 times), and from
    /// `shiftFrom` for `shiftFor` samples the rate times `factor`. With `week`, every seventh
    /// cycle's rate is halved (a weekend). Over `flat`, the cycle is lost: the rate is `level`.
    static func counts(
        _ n: Int, period: Int = 24, level: Float = 1000, seed: UInt64 = 5, shiftFrom: Int = -1, shiftFor: Int = 0,
        factor: Float = 1, week: Bool = false, flat: Range<Int> = 0..<0
    ) -> [Float] {
        var r = RandomSource(seed: seed)
        return (0..<n).map { t in
            let cycle = flat.contains(t) ? 0 : 0.5 * Float(sin(2 * Double.pi * Double(t) / Double(period)))
            var rate = level * (1 + cycle)
            if week && (t / period) % 7 == 6 { rate *= 0.5 }
            if (shiftFrom..<(shiftFrom + shiftFor)).contains(t) { rate *= factor }
            var x = max(0, rate + 0.1 * rate * r.normal())
            if r.uniform() < 1 / 30 { x *= 1 + 2 / r.uniform(0.02, 1) }
            return x.rounded()
        }
    }

    static func signal(channels: Int = 1, swingBar: Float = 6) -> LevelSignal {
        LevelSignal(channels: channels, bar: 8, horizon: 5000, logScale: false, swingBar: swingBar)
    }

    /// The readings of `values` (one feature), where incidents of `statistic` began (and the
    /// ratio then) and the samples read in one.
    static func run(_ s: LevelSignal, _ values: [Float], _ statistic: LevelSignal.Statistic = .level)
        -> (surprises: [Float], starts: [Int], held: [Int], ratios: [Float])
    {
        var surprises: [Float] = [], starts: [Int] = [], held: [Int] = [], ratios: [Float] = []
        for (t, x) in values.enumerated() {
            let was = s.inIncident(channel: 0, statistic)
            surprises.append(DiscordSignalTests.feed(s, [x]).surprise)
            if !was && s.inIncident(channel: 0, statistic) { (starts, ratios) = (starts + [t], ratios + [s.ratios[statistic.rawValue]]) }
            if s.inIncident(channel: 0, statistic) { held.append(t) }
        }
        return (surprises, starts, held, ratios)
    }

    /// Bursts up to a hundred times the level hide a count's cycle from the autocorrelation of its
    /// values (`PeriodCheck.detectPeriod`, from 600, finds another or none), not from that of its log
    /// values under a running median: from 1,500 values the period is found at 24, 96 and 288, a
    /// week of 48-sample days (weekends at half the rate) as 336, and noise has none.
    @Test func aCountsPeriodIsFoundThroughItsBursts() {
        for period in [24, 96, 288] {
            let x = Self.counts(1500, period: period)
            let logs = x.map { log1pf($0) }
            let raw = PeriodCheck.detectPeriod(Array(x.prefix(600)))
            #expect(abs(raw - period) > 2, "the bursts hide it from the raw values: \(raw)")
            let found = LevelSignal.detectPeriod(logs)
            #expect(abs(found - period) <= 1, "\(period): \(found)")
        }
        let week = Self.counts(1500, period: 48, week: true).map { log1pf($0) }
        #expect(abs(LevelSignal.detectPeriod(week) - 336) <= 2, "\(LevelSignal.detectPeriod(week))")
        var r = RandomSource(seed: 9)
        #expect(LevelSignal.detectPeriod((0..<1500).map { _ in log1pf(100 + 10 * abs(r.normal())) }) == 0)
    }

    /// A count that falls to 0.3 of its rate for 300 samples (after 3,000) starts one incident,
    /// within two periods of the fall, with one reading past the bar (its start, where the level is
    /// under 0.8 of the reference's); the incident holds while the fall lasts, and the return to the
    /// old level, when the period before still holds the fall, is not a second incident. The 3,000
    /// normal samples, with their bursts, start none. A surge (6 times the rate for 60 samples)
    /// starts one too.
    @Test func aCountsLevelShiftIsOneIncident() {
        let s = Self.signal()
        let (surprises, starts, held, ratios) = Self.run(s, Self.counts(4200, shiftFrom: 3000, shiftFor: 300, factor: 0.3))
        #expect(ratios.allSatisfy { $0 < 0.8 }, "\(ratios)")
        #expect(s.period(channel: 0) == 24)
        #expect(starts.count == 1 && (3000...3048).contains(starts[0]), "\(starts)")
        let readings = surprises.indices.filter { surprises[$0] > -.infinity }
        #expect(readings == starts && surprises[starts[0]] > 8, "\(readings)")
        #expect(held.filter { (3000..<3300).contains($0) }.count > 250, "\(held.count) held")
        #expect(!s.inIncident(channel: 0), "the incident has ended")
        let surge = Self.signal()
        let (_, surgeStarts, _, surgeRatios) = Self.run(surge, Self.counts(4000, seed: 7, shiftFrom: 3000, shiftFor: 60, factor: 6))
        #expect(surgeStarts.count == 1 && (3000...3060).contains(surgeStarts[0]) && surgeRatios[0] > 1.2, "\(surgeStarts) \(surgeRatios)")
    }

    /// A count whose daily cycle is lost (the rate flat at its mean for 480 samples, after 3,000;
    /// its noise and bursts kept) keeps its level and loses its swing: one swing incident starts
    /// within two periods, its ratio (the swing over the period before's) under 0.5, and the level
    /// starts none; the cycle's return, with the reference held, is not a second. The 3,000 samples before start none of either. With the swing's bar out of
    /// reach (the level alone, as before the swing), the loss is not seen at all.
    @Test func aCountsLostCycleIsOneSwingIncident() {
        let values = Self.counts(4200, flat: 3000..<3480)
        let s = Self.signal()
        let swing = Self.run(s, values, .swing)
        #expect(swing.starts.count == 1 && (3000...3048).contains(swing.starts[0]), "\(swing.starts) \(swing.ratios)")
        #expect(swing.ratios.allSatisfy { $0 < 0.5 }, "\(swing.ratios)")
        let readings = swing.surprises.indices.filter { swing.surprises[$0] > -.infinity }
        #expect(readings == swing.starts, "\(readings)")
        #expect(s.lastStatistic == .swing)
        let level = Self.run(Self.signal(), values, .level)
        #expect(level.starts.isEmpty, "\(level.starts)")
        // Off (`swing_bar = 0`: its bar out of reach, neither summed nor judged), and judged under a
        // bar never reached: the level alone reads, and reads nothing.
        let levelAlone = Self.run(Self.signal(swingBar: .infinity), values)
        #expect(levelAlone.surprises.allSatisfy { $0 == -.infinity })
        #expect(Self.run(Self.signal(swingBar: 1000), values).surprises == levelAlone.surprises)
        #expect(LevelSignal.reason(channel: 2, period: 24, ratio: 1.02, swing: 0.31)
            == "feature 2's swing over its last period (24 values) is 0.31 times the period's before (its level 1.02 times)")
    }

    /// A period unlike the one before it but like the one before that is the period before's echo,
    /// not an incident. A period's dip to 0.7 of the rate, or a rise to 1.5 (24 samples after
    /// 3,000), is under both bars while it lasts; once it has passed, the period before holds it
    /// and the swing's last period differs from it. Compared with the period two before as well, no
    /// incident starts; compared with the period before alone (reverted), the swing starts one after
    /// the event has ended.
    @Test func aPeriodAfterAnUnusualOneIsNotAnIncident() {
        for (factor, seed) in [(0.7, 5), (0.7, 6), (1.5, 5), (1.5, 6)] as [(Float, UInt64)] {
            let values = Self.counts(4200, seed: seed, shiftFrom: 3000, shiftFor: 24, factor: factor)
            for echoes in [true, false] {
                let starts = LevelSignal.Statistic.allCases.map { statistic in
                    let signal = LevelSignal(channels: 1, bar: 8, horizon: 5000, logScale: false, swingBar: 6, echoes: echoes)
                    return Self.run(signal, values, statistic).starts
                }
                #expect(starts[0].isEmpty, "\(factor) \(seed) \(echoes): \(starts)")
                if echoes {
                    #expect(starts[1].isEmpty, "\(factor) \(seed): \(starts)")
                } else {
                    #expect(!starts[1].isEmpty && starts[1].allSatisfy { $0 >= 3024 }, "\(factor) \(seed): \(starts)")
                }
            }
        }
    }

    /// The level's echo. A period at 0.3 of the rate just before the signal starts judging (samples
    /// 1,452 to 1,475 of a 24-sample cycle: the 1,500 values kept hold it, no incident does) is the
    /// period before when judging starts, and the level's last period, back to normal, differs from it
    /// by a factor of 3. Compared with the period two before as well, no incident starts in the
    /// next 2,500 samples; compared with the period before alone (reverted), the level starts one
    /// as soon as it judges, 25 samples after the odd period ended. A fall to 0.3 that comes
    /// while the signal judges starts one either way (the echo does not hide a real change).
    @Test func theLevelsEchoOfAnOddPeriodBeforeJudgingIsNotAnIncident() {
        for seed in [5, 6, 7] as [UInt64] {
            let values = Self.counts(4000, seed: seed, shiftFrom: 1452, shiftFor: 24, factor: 0.3)
            for echoes in [true, false] {
                let signal = LevelSignal(channels: 1, bar: 8, horizon: 5000, logScale: false, swingBar: 6, echoes: echoes)
                let starts = Self.run(signal, values, .level).starts
                #expect(signal.period(channel: 0) == 24, "\(seed)")
                if echoes {
                    #expect(starts.isEmpty, "\(seed): \(starts)")
                } else {
                    #expect(starts == [LevelSignal.detection - 1], "\(seed): \(starts)")
                }
            }
            let later = Self.counts(4000, seed: seed, shiftFrom: 3000, shiftFor: 300, factor: 0.3)
            let starts = Self.run(Self.signal(), later, .level).starts
            #expect(starts.count == 1 && (3000...3048).contains(starts[0]), "\(seed): \(starts)")
        }
    }

    /// A feature that has been negative, or not a whole number, is not a count: never judged again.
    /// Noise without a cycle has no period and is never judged either. Under `transform = log` the
    /// values come as logs (not whole), and are judged.
    @Test func onlyCountsWithAPeriodAreJudged() {
        var values = Self.counts(4200, shiftFrom: 3000, shiftFor: 300, factor: 0.3)
        values[100] = -1
        let s = Self.signal()
        let (surprises, starts, _, _) = Self.run(s, values)
        #expect(!s.judges(channel: 0) && starts.isEmpty && surprises.allSatisfy { $0 == -.infinity })
        // A value that is not a whole number: not a count.
        values[100] = 0.5
        let fraction = Self.signal()
        #expect(Self.run(fraction, values).starts.isEmpty && !fraction.judges(channel: 0))
        values[100] = 7
        #expect(Self.run(Self.signal(), values).starts.count == 1, "the same values as counts")
        var r = RandomSource(seed: 4)
        let noise = Self.signal()
        let (noiseSurprises, _, _, _) = Self.run(noise, (0..<3000).map { _ in 100 + 10 * abs(r.normal()) })
        #expect(noise.period(channel: 0) == 0 && noiseSurprises.allSatisfy { $0 == -.infinity })
        let logs = LevelSignal(channels: 1, bar: 8, horizon: 5000, logScale: true)
        let (_, logStarts, _, _) = Self.run(logs, Self.counts(4200, shiftFrom: 3000, shiftFor: 300, factor: 0.3).map { log1pf($0) })
        #expect(logStarts.count == 1 && (3000...3048).contains(logStarts[0]), "\(logStarts)")
    }

    /// The median by selection is the median of the sorted values, and the MAD likewise, to the bit:
    /// odd and even counts, ties, one value, sorted and reversed input. The swing's median of nine
    /// by its network is the sorted nine's middle: 20,000 draws of nine, with ties and without.
    @Test func theMedianBySelectionIsTheSortedOnes() {
        var r = RandomSource(seed: 21)
        for trial in 0..<20000 {
            let v = (0..<9).map { _ in trial % 2 == 0 ? r.normal() : Float(Int(r.uniform() * 4)) }
            let m = LevelSignal.median9(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8])
            if m != v.sorted()[4] {
                Issue.record("\(v): \(m)")
                break
            }
        }
        var cases: [[Float]] = [[3], [2, 1], (0..<1250).map { _ in r.normal() }, (0..<1251).map { _ in r.normal() }]
        cases.append((0..<400).map { _ in Float(Int(r.uniform() * 5)) })
        cases.append((0..<300).map { Float($0) })
        cases.append((0..<301).map { Float(-$0) })
        for values in cases {
            let sorted = values.sorted()
            let expected = CorrelationSignal.medianAndDeviation(sorted)
            var v = values
            let median = v.withUnsafeMutableBufferPointer { LevelSignal.median($0.baseAddress!, count: $0.count) }
            #expect(median == expected.median, "\(values.count)")
            var deviations = values.map { abs($0 - median) }
            let deviation = deviations.withUnsafeMutableBufferPointer { LevelSignal.median($0.baseAddress!, count: $0.count) }
            #expect(deviation == expected.deviation, "\(values.count)")
        }
    }

    /// The section holds everything that decides a reading: a signal restored in the middle of an
    /// incident reads the rest (the incident's end, a second incident) as the original does, sample
    /// by sample, and writes the same bytes. A section written under another `calibration_horizon`
    /// restores (the newest differences kept) and finds the second incident too, within two periods. Sections of another width, a
    /// period out of bounds, more differences learned than values seen, a reference without a
    /// period, a log value no float has, or more differences than were learned are refused.
    @Test func theSectionRoundTrips() throws {
        var values = Self.counts(5200, shiftFrom: 3000, shiftFor: 300, factor: 0.3)
        for t in 4500..<4600 { values[t] *= 6 }
        let s = Self.signal()
        _ = Self.run(s, Array(values[..<3100]))
        #expect(s.inIncident(channel: 0))
        var w = StateWriter()
        s.encode(&w)
        let copy = Self.signal()
        var r = StateReader(w.bytes)
        try copy.decode(&r, version: LevelSignal.stateVersion)
        var again = StateWriter()
        copy.encode(&again)
        #expect(again.bytes == w.bytes)
        let rest = Array(values[3100...])
        let (original, restored) = (Self.run(s, rest), Self.run(copy, rest))
        #expect(original.surprises == restored.surprises && original.held == restored.held)
        #expect(original.starts.count == 1 && (1400...1500).contains(original.starts[0]), "the surge at 4,500: \(original.starts)")
        for horizon in [400, 20000] {
            let other = LevelSignal(channels: 1, bar: 8, horizon: horizon, logScale: false)
            var r2 = StateReader(w.bytes)
            try other.decode(&r2, version: LevelSignal.stateVersion)
            let starts = Self.run(other, rest).starts
            #expect(starts.count == 1 && abs(starts[0] - original.starts[0]) <= 48, "horizon \(horizon): \(starts)")
        }
        #expect(throws: StateError.self) {
            var r2 = StateReader(w.bytes)
            try Self.signal(channels: 2).decode(&r2, version: LevelSignal.stateVersion)
        }
        // After the width (4 bytes) and the flag (1): seen and period (8 bytes each), the floor (4);
        // per statistic learned, held, clear and the samples since the statistics (8 each), the
        // median, scale and reference (4 each); then the log values and their running medians.
        func refused(_ bytes: [UInt8], at offset: Int, _ patch: [UInt8], _ what: String) {
            var bad = bytes
            for (i, b) in patch.enumerated() { bad[offset + i] = b }
            var badReader = StateReader(bad)
            #expect(throws: StateError.self, "\(what)") { try Self.signal().decode(&badReader, version: 2) }
        }
        func le<T: FixedWidthInteger>(_ x: T) -> [UInt8] { withUnsafeBytes(of: x.littleEndian) { Array($0) } }
        let judge = 4 * 8 + 3 * 4, logs = 5 + 16 + 4 + 2 * judge
        refused(w.bytes, at: 5 + 8, le(UInt64(5)), "a period under 20")
        refused(w.bytes, at: 5 + 8, le(UInt64(800)), "a period over 749")
        refused(w.bytes, at: 5 + 20, le(UInt64(1 << 40)), "the level learned more than seen")
        refused(w.bytes, at: 5 + 20 + judge, le(UInt64(1 << 40)), "the swing learned more than seen")
        refused(w.bytes, at: logs + 16, le(Float(100).bitPattern), "a log value of 100")
        refused(w.bytes, at: logs + 4 * 1500 + 16, le(Float(-1).bitPattern), "a running median under 0")
        let fresh = Self.signal()
        _ = Self.run(fresh, Array(values[..<100]))
        var f = StateWriter()
        fresh.encode(&f)
        refused(f.bytes, at: 5 + 20 + 32 + 8, le(Float(1).bitPattern), "a level reference without a period")
        refused(f.bytes, at: 5 + 20 + judge + 32 + 8, le(Float(1).bitPattern), "a swing reference without a period")
        // The count of the level's differences kept follows the 100 values and their medians: more
        // than were learned.
        refused(f.bytes, at: logs + 800, le(UInt32(5)), "more differences than learned")
    }

    /// A section as version 1 wrote it (the level alone): its flag, seen, period, learned, held,
    /// clear and samples since the statistics, its floor, median, scale and reference, the log values
    /// kept and the differences kept.
    static func versionOne(_ s: LevelSignal) -> [UInt8] {
        var w = StateWriter()
        w.write(UInt32(s.channels))
        for c in 0..<s.channels {
            let (k, j) = (s.state[c], s.state[c].level)
            w.write(UInt8(k.on ? 1 : 0))
            for n in [k.seen, k.period, j.learned, j.held, j.clear, min(j.sinceRecompute, Int(UInt32.max))] { w.write(UInt64(n)) }
            for x in [k.floor, j.median, j.scale, j.reference] { w.write(x) }
            let kept = min(k.seen, LevelSignal.detection)
            for i in 0..<kept { w.write(s.ringValue(c, ago: kept - 1 - i)) }
            let learned = j.learned / LevelSignal.historyStride, m = min(learned, s.historyCapacity)
            w.write(UInt32(m))
            for q in (learned - m)..<learned { w.write(s.history[s.historyBase(c, .level) + q % s.historyCapacity]) }
        }
        return w.bytes
    }

    /// A version 1 section (before the swing) restores the level as it was: restored in the middle
    /// of a level incident, the level reads the rest as the original does and writes the same
    /// version 1 bytes. Its swing learns from the values kept, and judges at once: a cycle lost
    /// 1,400 samples later is found within two periods.
    @Test func aVersionOneSectionRestoresTheLevel() throws {
        var values = Self.counts(5400, shiftFrom: 3000, shiftFor: 300, factor: 0.3)
        let lost = Self.counts(5400, flat: 4500..<4980)
        for t in 4500..<5400 { values[t] = lost[t] }
        let original = Self.signal(swingBar: 1000)
        _ = Self.run(original, Array(values[..<3100]))
        #expect(original.inIncident(channel: 0))
        let bytes = Self.versionOne(original)
        let restored = Self.signal(swingBar: 1000)
        var r = StateReader(bytes)
        try restored.decode(&r, version: 1)
        #expect(Self.versionOne(restored) == bytes)
        let rest = Array(values[3100...])
        #expect(Self.run(original, rest).surprises == Self.run(restored, rest).surprises)
        let withSwing = Self.signal()
        var r2 = StateReader(bytes)
        try withSwing.decode(&r2, version: 1)
        #expect(withSwing.state[0].swing.learned >= 1500 - 1 - 2 * 24)
        let swing = Self.run(withSwing, rest, .swing).starts
        #expect(swing.count == 1 && (1400...1448).contains(swing[0]), "\(swing)")
        // A version 1 section with counts no stream reaches (seen 2⁶³) is refused, not trapped on.
        var huge = bytes
        for (i, b) in withUnsafeBytes(of: (UInt64(1) << 63).littleEndian, Array.init).enumerated() { huge[5 + i] = b }
        var r3 = StateReader(huge)
        #expect(throws: StateError.self) { try Self.signal().decode(&r3, version: 1) }
    }

    /// A section written under a short `calibration_horizon` keeps fewer differences than were
    /// learned; restored under a longer one, the calibration is of those differences alone: its
    /// median and scale are those of the 100 differences the short horizon kept. Reverted (the
    /// ring's first slots read, unrestored zeros among them), they differ.
    @Test func aSectionThatKeptFewerDifferencesCalibratesOnThem() throws {
        let values = Self.counts(3200, flat: 3100..<3200)
        let short = LevelSignal(channels: 1, bar: 8, horizon: 400, logScale: false, swingBar: 6)
        _ = Self.run(short, Array(values[..<3100]))
        var w = StateWriter()
        short.encode(&w)
        #expect(short.state[0].level.learned / 4 > 300, "more learned than the 100 kept")
        let long = LevelSignal(channels: 1, bar: 8, horizon: 20000, logScale: false, swingBar: 6)
        var r = StateReader(w.bytes)
        try long.decode(&r, version: LevelSignal.stateVersion)
        // Its first reading recomputes the statistics (other differences than it keeps).
        _ = DiscordSignalTests.feed(long, [values[3100]])
        for s in LevelSignal.Statistic.allCases {
            let base = short.historyBase(0, s)
            let kept = Array(short.history[base..<(base + 100)])
            let expected = CorrelationSignal.medianAndDeviation(kept.sorted())
            let k = long.state[0][s]
            #expect(short.state[0][s].kept == 100 && k.kept == 100, "\(s)")
            #expect(k.median == expected.median, "\(s): \(k) \(expected)")
            #expect(k.scale == max(1.4826 * expected.deviation, long.state[0].floor) + 1e-6, "\(s): \(k) \(expected)")
        }
    }

    /// In the pipeline at the defaults (`level_bar` 8 and `swing_bar` 6, each at least
    /// `alert_evidence`'s 6; a statistic at 0 is off, both at 0 build no signal): a surge (3 times
    /// the rate for 300 samples) and a lost cycle (the rate flat for 600) each alert first from the
    /// level signal, within two periods, with a reason that names the feature, the period and the
    /// ratios (the lost cycle's from the swing, under 0.5). With both statistics off the first alert
    /// of each comes more than a period later, if at all. The 3,000 samples before alert the same
    /// either way.
    @Test func aCountStreamsLevelShiftAndLostCycleAlertByDefault() throws {
        #expect(StreamConfiguration().levelBar == 8 && StreamConfiguration().swingBar == 6)
        let cases: [(Float, Float, Float, (Float, Float)?)] = [
            (8, 6, 6, (8, 6)), (5, 4, 6, (6, 6)), (8, 6, 0, nil), (0, 6, 6, (.infinity, 6)), (8, 0, 6, (8, .infinity)), (0, 0, 6, nil),
        ]
        for (level, swing, evidence, expected) in cases {
            var settings = StreamConfiguration().resolved(dim: 1)
            (settings.levelBar, settings.swingBar, settings.alertEvidence) = (level, swing, evidence)
            let signal = StreamPipeline(name: "b", settings: settings).chain.signal(LevelSignal.self)
            #expect(signal.map { ($0.bar, $0.swingBar) } ?? (-1, -1) == expected ?? (-1, -1), "\(level) \(swing) \(evidence)")
        }
        for bad in ["level_bar = 0.5", "swing_bar = 0.5", "swing_bar = 41"] {
            #expect(throws: (any Error).self) { _ = try ConfigurationFile.parse("[stream]\n\(bad)\n") }
        }
        #expect(try ConfigurationFile.parse("[stream]\nswing_bar = 9\n").streamDefaults.swingBar == 9)
        let surge = Self.counts(3600, shiftFrom: 3000, shiftFor: 300, factor: 3)
        let lost = Self.counts(3600, flat: 3000..<3600)
        for (values, isLost) in [(surge, false), (lost, true)] {
            var before: [[Int]] = [], firstInEvent: [UInt64] = []
            for on in [true, false] {
                var settings = StreamConfiguration().resolved(dim: 1)
                // The surge signal, which alerts on a surge sooner, is off: this is the level
                // signal's worth (SurgeSignalTests has the surge signal's).
                settings.surgeRun = 0
                if !on { (settings.levelBar, settings.swingBar) = (0, 0) }
                let p = StreamPipeline(name: "c", settings: settings)
                var batches: [ScoredBatch] = []
                for (t, v) in values.enumerated() {
                    batches.append([v].withUnsafeBufferPointer { p.score($0.baseAddress!, count: 1, firstSequence: UInt64(t)) })
                    while p.trainStep() {}
                }
                let scores = batches.map { $0.sample(0) }
                before.append(scores[..<3000].indices.filter { scores[$0].alert })
                let fromLevel = scores[3000...].filter { $0.alert && $0.levelChannel != nil }
                firstInEvent.append(scores[3000...].first(where: \.alert)?.sequence ?? .max)
                guard on else {
                    #expect(p.chain.signal(LevelSignal.self) == nil && fromLevel.isEmpty)
                    continue
                }
                let firstAlert = scores[3000...].first(where: \.alert)
                let first = try #require(firstAlert, "\(isLost)")
                #expect(first.levelChannel == 0 && first.sequence < 3048 && first.levelPeriod == 24, "\(first)")
                #expect(first.topFeatures.map(\.index) == [0])
                let alert = Wire.alert(first, in: batches[Int(first.sequence)])
                #expect(alert.signal == LevelSignal.name)
                if isLost {
                    #expect((first.levelSwing ?? 1) < 0.5 && (0.8...1.25).contains(first.levelRatio), "\(first)")
                    #expect(alert.reason.hasPrefix("feature 0's swing over its last period (24 values) is 0."), "\(alert.reason)")
                    #expect(alert.reason.contains(" times the period's before (its level "), "\(alert.reason)")
                } else {
                    #expect(first.levelRatio > 1.05, "\(first)")
                    #expect(alert.reason.hasPrefix("feature 0's") && alert.reason.contains(" over its last period (24 values) "), "\(alert.reason)")
                }
            }
            #expect(before[0] == before[1], "\(before)")
            #expect(firstInEvent[0] < 3048 && firstInEvent[1] > firstInEvent[0] + 24, "\(firstInEvent): a period sooner at least")
        }
    }
}
