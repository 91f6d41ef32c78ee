import EddyProtocol
import Foundation
import Learning
@testable import Pipeline
import Testing

@Suite struct SurgeSignalTests {
    /// The range (which hands on the counts' burst bands) and the surge signal after it, as the
    /// chain runs them: each sample read by both, learned by the range unless either was certain.
    final class Pair {
        let range: RangeSignal
        let surge: SurgeSignal
        init(bands: Bool = true, minimumRun: Int = 5) {
            range = RangeSignal(
                dimension: 1, margin: 0.05, refresh: 100, warmup: 500, window: 0, deviations: 0.5, scaleHorizon: 5000, drop: 1,
                tail: 1e-6, bands: bands)
            surge = SurgeSignal(channels: 1, minimumRun: minimumRun, window: 0)
        }

        /// Whether the surge signal was certain of `v`.
        @discardableResult
        func read(_ v: Float) -> Bool {
            var value = v
            return withUnsafePointer(to: &value) { p in
                range.prepare(p, count: 1, dimension: 1)
                surge.prepare(p, count: 1, dimension: 1)
                var o = Observation(values: p, dimension: 1, logError: 0, modelReady: true)
                let r = range.read(&o), s = surge.read(&o)
                range.learn(o, anomalous: r.certain || s.certain)
                return s.certain
            }
        }

        /// The samples (by index) the surge signal was certain of.
        func run(_ values: [Float]) -> [Int] { values.indices.filter { read(values[$0]) } }
    }

    /// A count stream (`RangeHabitTests.bursty`: a daily cycle, bursts of 3 to 101 times its
    /// rate one sample in 30) with a surge: from 3,000, 60 samples at `factor` times the rate.
    static func surge(factor: Float, seed: UInt64 = 5, from start: Int = 3000, length: Int = 60) -> [Float] {
        var values = RangeHabitTests.bursty(4000, heavy: true, seed: seed)
        for t in start..<(start + length) { values[t] = (values[t] * factor).rounded() }
        return values
    }

    /// A surge of 5 times the rate for 60 samples: a certain reading within its first 10 samples (a
    /// run of at least 5, longer than the record), others only within the surge (a run of its own
    /// after each trough of the cycle), none after it; the 3,000 samples before, bursts and all, give
    /// none after their first thousand, and the record does not learn the surge's runs. Without the band (`bands` off, as with `surge_run = 0`) nothing is read;
    /// values that are not whole (half a unit up) have no band either.
    @Test func aCountThatStaysInItsBurstBandIsOneSurge() {
        for seed: UInt64 in [5, 6, 7] {
            let values = Self.surge(factor: 5, seed: seed)
            let pair = Pair()
            let certain = pair.run(Array(values.prefix(3000)))
            let record = pair.surge.record[0]
            #expect(record >= 1, "\(seed): bursts and peaks taught a record")
            let during = pair.run(Array(values[3000...])).map { $0 + 3000 }
            #expect(certain.allSatisfy { $0 < 1000 }, "\(seed): normal samples after the first thousand: \(certain)")
            // The surge's first run alerts at its fifth value; at the cycle's troughs (5 times the rate
            // of a trough) it dips under the band, and each run after that is a run of its own.
            #expect(!during.isEmpty && during[0] < 3010 && during.allSatisfy { $0 < 3060 }, "\(seed): \(during)")
            #expect(pair.surge.lastRun >= 5 && pair.surge.lastRun > pair.surge.lastRecord && pair.surge.lastRecord == record)
            #expect(pair.surge.record[0] == record, "the surge's run is not learned")
            // Off, and not counts.
            #expect(Pair(bands: false).run(values).isEmpty)
            #expect(Pair().run(values.map { $0 + 0.5 }).isEmpty)
        }
        #expect(SurgeSignal.reason(channel: 3, run: 12, record: 4)
            == "feature 3 has stayed above its bursts' usual level for 12 values in a row (4 at most before)")
    }

    /// Two count features that surge at the same sample: one is read there (feature 0), the other
    /// at the next sample, each once, so neither surge goes unreported.
    @Test func twoFeaturesThatSurgeTogetherAreEachRead() {
        let range = RangeSignal(
            dimension: 2, margin: 0.05, refresh: 100, warmup: 500, window: 0, deviations: 0.5, scaleHorizon: 5000, drop: 1,
            tail: 1e-6, bands: true)
        let surge = SurgeSignal(channels: 2, minimumRun: 5, window: 0)
        let a = Self.surge(factor: 8, seed: 5), b = Self.surge(factor: 8, seed: 6)
        var read: [(t: Int, channel: Int)] = []
        for t in 0..<4000 {
            let row = [a[t], b[t]]
            row.withUnsafeBufferPointer { p in
                range.prepare(p.baseAddress!, count: 1, dimension: 2)
                var o = Observation(values: p.baseAddress!, dimension: 2, logError: 0, modelReady: true)
                let r = range.read(&o), s = surge.read(&o)
                range.learn(o, anomalous: r.certain || s.certain)
                if s.certain && t >= 3000 { read.append((t, surge.lastChannel)) }
            }
        }
        let first = read.filter { $0.t < 3010 }
        #expect(Set(first.map(\.channel)) == [0, 1], "\(read)")
        #expect(first.count == 2 && first[1].t > first[0].t, "one a sample: \(read)")
    }

    /// The section keeps each channel's run, record and whether the run alerted, to the byte; a
    /// section of another width or a flag of 2 is refused. An alerted run shorter than the least
    /// that can alert is a `surge_run` raised since the checkpoint: restored, not refused (a refused
    /// section would set the whole stream aside).
    @Test func theSectionRoundTrips() throws {
        let pair = Pair()
        pair.run(Array(Self.surge(factor: 5).prefix(3006)))
        #expect(pair.surge.run[0] > 0)
        var w = StateWriter()
        pair.surge.encode(&w)
        let copy = SurgeSignal(channels: 1, minimumRun: 5, window: 0)
        var r = StateReader(w.bytes)
        try copy.decode(&r, version: SurgeSignal.stateVersion)
        #expect(copy.run == pair.surge.run && copy.record == pair.surge.record)
        var again = StateWriter()
        copy.encode(&again)
        #expect(again.bytes == w.bytes)
        var wide = StateReader(w.bytes)
        #expect(throws: StateError.self) { try SurgeSignal(channels: 2, minimumRun: 5, window: 0).decode(&wide, version: 1) }
        // Width (4), run (4), record (4), flag (1).
        var bad = w.bytes
        bad[12] = 2
        var reader = StateReader(bad)
        #expect(throws: StateError.self) { try copy.decode(&reader, version: SurgeSignal.stateVersion) }
        var raised = w.bytes
        (raised[4], raised[5], raised[6], raised[7], raised[12]) = (2, 0, 0, 0, 1)
        var raisedReader = StateReader(raised)
        try SurgeSignal(channels: 1, minimumRun: 8, window: 0).decode(&raisedReader, version: SurgeSignal.stateVersion)
    }

    /// In the pipeline at the defaults, a count stream's surge alerts from the surge signal with its
    /// reason, and the alert is not beyond the range; with `surge_run = 0` the signal is not in the
    /// chain. Streams under `transform = log` (their values are logs) have none.
    @Test func aCountStreamsSurgeAlertsWithItsReasonByDefault() throws {
        let values = Self.surge(factor: 5, seed: 6, from: 3000, length: 60)
        var settings = StreamConfiguration().resolved(dim: 1)
        try settings.validate(name: "t")
        #expect(settings.surgeRun == 5 && settings.rangeTail == 1e-8)
        let pipeline = StreamPipeline(name: "t", settings: settings)
        #expect(pipeline.chain.signal(SurgeSignal.self) != nil)
        var surges: [(sample: SampleScore, batch: ScoredBatch)] = []
        for start in stride(from: 0, to: values.count, by: 50) {
            let batch = Array(values[start..<min(start + 50, values.count)])
            let scored = batch.withUnsafeBufferPointer { pipeline.score($0.baseAddress!, count: batch.count, firstSequence: UInt64(start)) }
            surges += scored.samples.filter { $0.surge != nil }.map { ($0, scored) }
            while pipeline.trainStep() {}
        }
        #expect(surges.count == 1 && (3000..<3010).contains(Int(surges[0].sample.sequence)), "\(surges.map(\.sample.sequence))")
        if let (s, batch) = surges.first {
            #expect(s.alert && !s.beyondRange && s.surge!.channel == 0)
            let alert = Wire.sampleAlert(s, in: batch)
            #expect(alert.signal == "surge" && alert.reason.hasPrefix("feature 0 has stayed above its bursts' usual level"), "\(alert.reason)")
        }
        settings.surgeRun = 0
        #expect(StreamPipeline(name: "t", settings: settings).chain.signal(SurgeSignal.self) == nil)
        var logs = StreamConfiguration()
        logs.transform = .log
        #expect(StreamPipeline(name: "t", settings: logs.resolved(dim: 1)).chain.signal(SurgeSignal.self) == nil)
    }

    /// `band_explains`: a count's bursts are its normal behaviour, and the model's error on one is the
    /// burst's size. On three seeds of a heavy-tailed bursty count (4,000 values, no anomaly), the
    /// default pipeline raises fewer alerts than with `band_explains = false`, and none of its
    /// alerts is the model's at a burst (a value over the band that is neither beyond the range nor a
    /// surge), where without it some are. A ReconstructionSignal reading a burst has no opinion but
    /// keeps its surprise; a stream of two features hands no burst on.
    @Test func aCountsBurstExplainsTheModelsError() throws {
        var alerts: [Bool: Int] = [:], atBursts: [Bool: Int] = [:]
        for explains in [true, false] {
            for seed: UInt64 in [5, 6, 7] {
                let values = RangeHabitTests.bursty(4000, heavy: true, seed: seed)
                var settings = StreamConfiguration().resolved(dim: 1)
                settings.bandExplains = explains
                try settings.validate(name: "t")
                let pipeline = StreamPipeline(name: "t", settings: settings)
                let range = try #require(pipeline.chain.signal(RangeSignal.self))
                #expect(range.explains == explains)
                for start in stride(from: 0, to: values.count, by: 50) {
                    let batch = Array(values[start..<min(start + 50, values.count)])
                    // The band as it stood before the batch (it moves a little every 16 samples).
                    let band = range.bandP[0]
                    let scored = batch.withUnsafeBufferPointer { pipeline.score($0.baseAddress!, count: batch.count, firstSequence: UInt64(start)) }
                    for s in scored.samples where s.alert {
                        alerts[explains, default: 0] += 1
                        if values[Int(s.sequence)] > band && !s.beyondRange && s.surge == nil { atBursts[explains, default: 0] += 1 }
                    }
                    while pipeline.trainStep() {}
                }
            }
        }
        #expect(atBursts[true, default: 0] == 0 && atBursts[false, default: 0] >= 2, "\(atBursts)")
        #expect(alerts[true, default: 0] < alerts[false, default: 0], "\(alerts)")

        #expect(try ConfigurationFile.parse("[stream]\nband_explains = false\n").streamDefaults.bandExplains == false)
        #expect(throws: ConfigurationError.self) { try ConfigurationFile.parse("[stream]\nband_explains = maybe\n") }

        let signal = ReconstructionSignal(horizon: 100, holdOff: 10)
        let x = UnsafeMutablePointer<Float>.allocate(capacity: 2)
        defer { x.deallocate() }
        x[0] = 5
        for k in 0..<200 {
            var o = Observation(values: x, dimension: 1, logError: Float(k % 7) * 0.1, modelReady: true)
            _ = signal.read(&o)
            signal.learn(o, anomalous: false)
        }
        var burst = Observation(values: x, dimension: 1, logError: 3, modelReady: true)
        burst.countBurst = true
        let r = signal.read(&burst)
        #expect(r.surprise == -.infinity && r.strength == 0 && signal.lastSurprise > 4)
        var plain = Observation(values: x, dimension: 1, logError: 3, modelReady: true)
        #expect(signal.read(&plain).surprise > 4)

        // One feature: a whole value over the band is a burst, the same value half a unit up is not.
        let one = RangeSignal(dimension: 1, margin: 0.05, refresh: 100, warmup: 50, window: 0, tail: 1e-6, bands: true, explains: true)
        for v in RangeHabitTests.bursty(1000, heavy: true) {
            x[0] = v
            var o = Observation(values: x, dimension: 1, logError: 0, modelReady: true)
            _ = one.read(&o)
            one.learn(o, anomalous: false)
        }
        for (v, burst) in [((2 * one.bandP[0]).rounded(), true), ((2 * one.bandP[0]).rounded() + 0.5, false), (1, false)] {
            x[0] = v
            var o = Observation(values: x, dimension: 1, logError: 0, modelReady: true)
            _ = one.read(&o)
            #expect(o.countBurst == burst, "\(v) over a band of \(one.bandP[0])")
        }
        // Two features: no burst is handed on, however high.
        let two = RangeSignal(dimension: 2, margin: 0.05, refresh: 100, warmup: 50, window: 0, tail: 1e-6, bands: true, explains: true)
        var handed = 0
        for (t, v) in RangeHabitTests.bursty(1000, heavy: true).enumerated() {
            (x[0], x[1]) = (v, Float(t % 2))
            var o = Observation(values: x, dimension: 2, logError: 0, modelReady: true)
            _ = two.read(&o)
            if o.countBurst { handed += 1 }
            two.learn(o, anomalous: false)
        }
        #expect(handed == 0 && two.bandP[0].isFinite)
    }
}
