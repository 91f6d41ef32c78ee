import EddyProtocol
import Foundation
import Learning
@testable import Pipeline
import Testing

@Suite struct LevelSignalTests {
    /// A count stream: a cycle of `period` samples around `level` (×(1 + 0.5 sin)), noise of 10%,
    /// one sample in 30 a burst (×(1 + 2/u), u uniform over [0.02, 1): up to 101 times), and from
    /// `shiftFrom` for `shiftFor` samples the rate times `factor`. With `week`, every seventh
    /// cycle's rate is halved (a weekend).
    static func counts(
        _ n: Int, period: Int = 24, level: Float = 1000, seed: UInt64 = 5, shiftFrom: Int = -1, shiftFor: Int = 0,
        factor: Float = 1, week: Bool = false
    ) -> [Float] {
        var r = RandomSource(seed: seed)
        return (0..<n).map { t in
            var rate = level * (1 + 0.5 * Float(sin(2 * Double.pi * Double(t) / Double(period))))
            if week && (t / period) % 7 == 6 { rate *= 0.5 }
            if (shiftFrom..<(shiftFrom + shiftFor)).contains(t) { rate *= factor }
            var x = max(0, rate + 0.1 * rate * r.normal())
            if r.uniform() < 1 / 30 { x *= 1 + 2 / r.uniform(0.02, 1) }
            return x.rounded()
        }
    }

    static func signal(channels: Int = 1) -> LevelSignal { LevelSignal(channels: channels, bar: 8, horizon: 5000, logScale: false) }

    /// The readings of `values` (one feature), where incidents began and the samples read in one.
    static func run(_ s: LevelSignal, _ values: [Float]) -> (surprises: [Float], starts: [Int], held: [Int], ratios: [Float]) {
        var surprises: [Float] = [], starts: [Int] = [], held: [Int] = [], ratios: [Float] = []
        for (t, x) in values.enumerated() {
            let was = s.inIncident(channel: 0)
            surprises.append(DiscordSignalTests.feed(s, [x]).surprise)
            if !was && s.inIncident(channel: 0) { (starts, ratios) = (starts + [t], ratios + [s.lastRatio]) }
            if s.inIncident(channel: 0) { held.append(t) }
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
    /// odd and even counts, ties, one value, sorted and reversed input.
    @Test func theMedianBySelectionIsTheSortedOnes() {
        var r = RandomSource(seed: 21)
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
        // After the width (4 bytes) and the flag (1): seen, period, learned, held, clear and the
        // samples since the statistics (8 bytes each), then the floor, median, scale and reference
        // (4 each), then the values.
        func refused(_ bytes: [UInt8], at offset: Int, _ patch: [UInt8], _ what: String) {
            var bad = bytes
            for (i, b) in patch.enumerated() { bad[offset + i] = b }
            var badReader = StateReader(bad)
            #expect(throws: StateError.self, "\(what)") { try Self.signal().decode(&badReader, version: 1) }
        }
        func le<T: FixedWidthInteger>(_ x: T) -> [UInt8] { withUnsafeBytes(of: x.littleEndian) { Array($0) } }
        refused(w.bytes, at: 5 + 8, le(UInt64(5)), "a period under 20")
        refused(w.bytes, at: 5 + 8, le(UInt64(800)), "a period over 749")
        refused(w.bytes, at: 5 + 16, le(UInt64(1 << 40)), "more learned than seen")
        refused(w.bytes, at: 5 + 48 + 16, le(Float(100).bitPattern), "a log value of 100")
        let fresh = Self.signal()
        _ = Self.run(fresh, Array(values[..<100]))
        var f = StateWriter()
        fresh.encode(&f)
        refused(f.bytes, at: 5 + 48 + 12, le(Float(1).bitPattern), "a reference without a period")
        // The count of differences kept follows the 100 values: more than were learned.
        refused(f.bytes, at: 5 + 48 + 16 + 400, le(UInt32(5)), "more differences than learned")
    }

    /// In the pipeline at the defaults (`level_bar` 8, above `alert_evidence`'s 6; the larger is the
    /// bar): a surge (3 times the rate for 300 samples) alerts first from the level signal, within
    /// two periods (its reason names the feature, the period and the ratio); with `level_bar = 0`
    /// the chain has no level signal and the surge's first alert comes more than a period later. The
    /// 3,000 samples before it alert the same either way.
    @Test func aCountStreamsLevelShiftAlertsByDefault() throws {
        #expect(StreamConfiguration().levelBar == 8)
        for (bar, evidence, expected) in [(Float(8), Float(6), Float(8)), (5, 6, 6), (8, 0, nil), (0, 6, nil)] {
            var settings = StreamConfiguration().resolved(dim: 1)
            (settings.levelBar, settings.alertEvidence) = (bar, evidence)
            #expect(StreamPipeline(name: "b", settings: settings).chain.signal(LevelSignal.self)?.bar == expected, "\(bar) \(evidence)")
        }
        var wrong = StreamConfiguration()
        wrong.levelBar = 0.5
        #expect(throws: (any Error).self) { try wrong.validate(name: "w") }
        let values = Self.counts(3600, shiftFrom: 3000, shiftFor: 300, factor: 3)
        var before: [[Int]] = [], firstInSurge: [UInt64] = []
        for on in [true, false] {
            var settings = StreamConfiguration().resolved(dim: 1)
            if !on { settings.levelBar = 0 }
            let p = StreamPipeline(name: "c", settings: settings)
            var batches: [ScoredBatch] = []
            for (t, v) in values.enumerated() {
                batches.append([v].withUnsafeBufferPointer { p.score($0.baseAddress!, count: 1, firstSequence: UInt64(t)) })
                while p.trainStep() {}
            }
            let scores = batches.map { $0.sample(0) }
            before.append(scores[..<3000].indices.filter { scores[$0].alert })
            let level = scores[3000...].filter { $0.alert && $0.levelChannel != nil }
            if on {
                let first = try #require(level.first, "\(scores[3000...].filter(\.alert).map(\.sequence))")
                #expect(first.sequence < 3048 && first.levelPeriod == 24 && first.levelRatio > 1.5, "\(first)")
                #expect(first.topFeatures.map(\.index) == [0])
                let alert = Wire.alert(first, in: batches[Int(first.sequence)])
                #expect(alert.signal == LevelSignal.name)
                #expect(alert.reason.hasPrefix("feature 0's level over its last period (24 values) is "), "\(alert.reason)")
            } else {
                #expect(level.isEmpty)
            }
            firstInSurge.append(scores[3000...].first(where: \.alert)?.sequence ?? .max)
            if on { #expect(scores[3000...].first(where: \.alert)?.levelChannel == 0, "the surge's first alert is the level's") }
        }
        #expect(before[0] == before[1], "\(before)")
        #expect(firstInSurge[0] < 3048 && firstInSurge[1] > firstInSurge[0] + 24, "\(firstInSurge): a period sooner at least")
    }
}
