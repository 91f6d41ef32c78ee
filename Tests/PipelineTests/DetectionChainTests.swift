import Foundation
import Learning
@testable import Pipeline
import Testing

/// A signal written for the test, as a user of the chain would add one: it reads a fixed surprise
/// and strength per sample, may be certain, and records what it was told to learn.
final class ScriptedSignal: AnomalySignal, @unchecked Sendable {
    static let name = "scripted"
    static let stateVersion: UInt32 = 3
    let script: [(surprise: Float, strength: Float, certain: Bool)]
    var position = 0
    var learned: [Bool] = []
    let corroborates: Bool

    init(script: [(surprise: Float, strength: Float, certain: Bool)], corroborates: Bool = true) {
        self.script = script
        self.corroborates = corroborates
    }

    func read(_ o: inout Observation) -> Reading {
        let s = script[position % script.count]
        position += 1
        return Reading(surprise: s.surprise, strength: s.strength, certain: s.certain)
    }
    var explanation: [(index: Int, share: Float)] { [(index: 7, share: 1)] }
    func learn(_ o: Observation, anomalous: Bool) { learned.append(anomalous) }
    func encode(_ w: inout StateWriter) { w.write(UInt32(position)) }
    func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 3 else { throw StateError.unsupportedVersion(version) }
        position = Int(try r.read(UInt32.self))
    }
}

@Suite struct DetectionChainTests {
    func observe(_ chain: inout DetectionChain, scored: Bool = true, warming: Bool = false) -> DetectionChain.Verdict? {
        var value: Float = 0
        return withUnsafePointer(to: &value) { p in
            var o = Observation(values: p, dimension: 1, logError: scored ? 0 : nil, modelReady: true)
            return chain.judge(&o, warming: warming)
        }
    }

    /// The score is Φ of the largest surprise (1 when a signal is certain); the alert strength is the
    /// largest strength and names its signal; the policy alerts on it and every signal learns whether
    /// the sample was anomalous.
    @Test func theCombinerTakesTheLargestEvidenceAndThePolicyDecides() throws {
        let a = ScriptedSignal(script: [(0.5, 0.6, false), (3, 0.95, false), (-1, 0.1, false), (0, 0.2, true)])
        let b = ScriptedSignal(script: [(2, 0.7, false), (1, 0.5, false), (-2, 0.05, false), (0, 0.3, false)])
        var chain = DetectionChain(signals: [a, b], policy: AlertPolicy(threshold: 0.9, repeatWindow: 0))
        let first = try #require(observe(&chain))
        #expect(abs(first.score - 0.97725) < 1e-4, "Φ(2), b's surprise")
        #expect(first.alertScore == 0.7 && !first.alert && chain.name(of: first.source) == "scripted")
        #expect(first.source == 1, "b's strength is the larger")
        let second = try #require(observe(&chain))
        #expect(second.alert && second.anomalous && second.source == 0 && abs(second.score - 0.99865) < 1e-4)
        let third = try #require(observe(&chain))
        #expect(!third.alert && third.score < 0.5)
        let fourth = try #require(observe(&chain))
        #expect(fourth.certain && fourth.score == 1 && fourth.alertScore == 1 && fourth.alert && fourth.source == 0)
        #expect(chain.explanation(fourth).map(\.index) == [7])
        let learned = try #require(chain.signal(ScriptedSignal.self)).learned
        #expect(learned == [false, true, false, true])
    }

    /// Samples that are not scored are still read by every signal (so a signal follows every value)
    /// but neither judged nor learned from; while warming up the score is 0 and nothing alerts.
    @Test func unscoredAndWarmingSamples() throws {
        let a = ScriptedSignal(script: [(5, 1, false)])
        var chain = DetectionChain(signals: [a], policy: AlertPolicy(threshold: 0.9, repeatWindow: 0))
        #expect(observe(&chain, scored: false) == nil)
        let warming = try #require(observe(&chain, warming: true))
        #expect(warming.warmingUp && warming.score == 0 && !warming.alert && !warming.anomalous)
        let s = try #require(chain.signal(ScriptedSignal.self))
        #expect(s.position == 2 && s.learned == [false])
    }

    /// A lasting incident: the policy's repeat cap stops the second alert, the score does not drop.
    @Test func theRepeatCapActsOnTheAlertNotTheScore() throws {
        let a = ScriptedSignal(script: [(4, 0.99, false)])
        var chain = DetectionChain(signals: [a], policy: AlertPolicy(threshold: 0.9, repeatWindow: 8))
        let first = try #require(observe(&chain)), second = try #require(observe(&chain))
        #expect(first.alert && !second.alert && second.alertScore == 0.5 && second.anomalous)
        #expect(second.score == first.score && second.score > 0.9999)
    }

    /// An incident that builds up: each sample's strength is held down by its own rise, so the
    /// strength never reaches the threshold. With `evidence` the first sample whose surprise reaches
    /// it alerts, once: not again while the evidence lasts, nor after a quiet shorter than `quiet`;
    /// after a longer quiet it alerts again. A certain sample's alert counts as the incident's.
    @Test func strongEvidenceAlertsOnceWhenTheStrengthDoesNot() throws {
        func run(_ policy: AlertPolicy, _ script: [(surprise: Float, strength: Float, certain: Bool)]) throws -> [Bool] {
            var chain = DetectionChain(signals: [ScriptedSignal(script: script)], policy: policy)
            return try script.indices.map { _ in try #require(observe(&chain)).alert }
        }
        let calm: (surprise: Float, strength: Float, certain: Bool) = (0.5, 0.3, false)
        let rise: [(surprise: Float, strength: Float, certain: Bool)] = [(2, 0.6, false), (4, 0.7, false), (6, 0.8, false), (7, 0.6, false)]
        let incident = [calm, calm] + rise + [calm, calm, calm] + rise + Array(repeating: calm, count: 6) + rise
        let off = try run(AlertPolicy(threshold: 0.9, repeatWindow: 0), incident)
        #expect(!off.contains(true), "without evidence the strength alone decides")
        let on = try run(AlertPolicy(threshold: 0.9, repeatWindow: 0, evidence: 5, quiet: 4), incident)
        // 6 at index 4 alerts; 7 after it does not; the second rise (index 11) comes 6 samples
        // after the last strong one, the third (index 21) 9 samples after: both past the quiet of 4.
        #expect(on.indices.filter { on[$0] } == [4, 11, 21])
        let long = try run(AlertPolicy(threshold: 0.9, repeatWindow: 0, evidence: 5, quiet: 8), incident)
        #expect(long.indices.filter { long[$0] } == [4, 21], "a quiet of 8: the second rise is the same incident")

        // A certain sample alerts; strong evidence right after it is the same incident.
        let certainFirst: [(surprise: Float, strength: Float, certain: Bool)] = [calm, (0, 0, true), (6, 0.5, false), calm]
        #expect(try run(AlertPolicy(threshold: 0.9, repeatWindow: 0, evidence: 5, quiet: 4), certainFirst) == [false, true, false, false])

        // An evidence alert names the signal whose surprise it was, not the one of larger strength.
        var pair = DetectionChain(
            signals: [ScriptedSignal(script: [(6, 0.3, false)]), ScriptedSignal(script: [(1, 0.5, false)])],
            policy: AlertPolicy(threshold: 0.9, repeatWindow: 0, evidence: 5, quiet: 4))
        let named = try #require(observe(&pair))
        #expect(named.alert && named.source == 0 && named.alertScore == 0.9 && named.onEvidence)
        var strong = DetectionChain(
            signals: [ScriptedSignal(script: [(6, 0.3, false)]), ScriptedSignal(script: [(1, 0.95, false)])],
            policy: AlertPolicy(threshold: 0.9, repeatWindow: 0, evidence: 5, quiet: 4))
        let onStrength = try #require(observe(&strong))
        #expect(onStrength.alert && onStrength.source == 1 && !onStrength.onEvidence, "an alert on strength names the strongest")

        // While warming up nothing alerts, and strong evidence then does not count against the quiet.
        var chain = DetectionChain(signals: [ScriptedSignal(script: [(8, 0.1, false)])], policy: AlertPolicy(threshold: 0.9, repeatWindow: 0, evidence: 5, quiet: 4))
        #expect(try #require(observe(&chain, warming: true)).alert == false)
        let after = try #require(observe(&chain))
        #expect(after.alert && after.anomalous && after.alertScore >= 0.9)
    }

    /// From review: an event (a log signal's burst, silence or parameter beyond its range) alerts
    /// with a score of at least the threshold, as every alerting sample has (SPEC 5), and evidence
    /// alone waits its quiet after it as after any alert. The score was Φ of the sample's surprise
    /// (0.88 for a parameter at z 1.16), and an evidence alert could follow the event at once.
    @Test func anEventAlertsWithAScoreOfTheThresholdAndStartsTheQuiet() throws {
        final class EventSignal: AnomalySignal, @unchecked Sendable {
            static let name = "event"
            static let stateVersion: UInt32 = 1
            let script: [(surprise: Float, event: Bool)]
            var position = 0
            init(_ script: [(surprise: Float, event: Bool)]) { self.script = script }
            func read(_ o: inout Observation) -> Reading {
                defer { position += 1 }
                return Reading(surprise: script[position].surprise, strength: 0.2, event: script[position].event)
            }
            func learn(_ o: Observation, anomalous: Bool) {}
            func encode(_ w: inout StateWriter) {}
            func decode(_ r: inout StateReader, version: UInt32) throws {}
        }
        let script: [(surprise: Float, event: Bool)] = [(0.5, false), (1.16, true), (6, false), (0.5, false)]
        var chain = DetectionChain(
            signals: [EventSignal(script)], policy: AlertPolicy(threshold: 0.9, repeatWindow: 0, evidence: 5, quiet: 4))
        let verdicts = try script.indices.map { _ in try #require(observe(&chain)) }
        #expect(verdicts.map(\.alert) == [false, true, false, false], "evidence 6 right after the event is the same incident")
        #expect(verdicts[1].score >= 0.9, "Φ(1.16) = 0.877 before")
    }

    /// The policy's counts are in its section (version 2); a version-1 section restores its
    /// strengths and starts the counts as after a long quiet.
    @Test func thePolicySectionKeepsTheQuiet() throws {
        var policy = AlertPolicy(threshold: 0.9, repeatWindow: 4, evidence: 5, quiet: 10)
        for z: Float in [0, 6, 6, 1] { _ = policy.decide(strength: 0.2, surprise: z, warming: false) }
        var w = StateWriter()
        policy.encode(&w)
        var restored = AlertPolicy(threshold: 0.9, repeatWindow: 4, evidence: 5, quiet: 10)
        var r = StateReader(w.bytes)
        try restored.decode(&r, version: 2)
        #expect(restored.sinceEvidence == 1 && restored.sinceAlert == 2)
        #expect(restored.decide(strength: 0.2, surprise: 6, warming: false).alert == false, "still within the quiet")

        var v1 = StateWriter()
        policy.recent.encode(&v1)
        var old = AlertPolicy(threshold: 0.9, repeatWindow: 4, evidence: 5, quiet: 10)
        var r1 = StateReader(v1.bytes)
        try old.decode(&r1, version: 1)
        #expect(old.recent.maximum == policy.recent.maximum)
        #expect(old.decide(strength: 0.2, surprise: 6, warming: false).alert, "no quiet to wait for")
        var r3 = StateReader(w.bytes)
        #expect(throws: StateError.self) { try restored.decode(&r3, version: 3) }
    }

    @Test func alertEvidenceIsReadAndChecked() throws {
        let c = try ConfigurationFile.parse("[stream]\nalert_evidence = 6\nalert_hold_off = 300\n")
        #expect(c.streamDefaults.alertEvidence == 6)
        let p = c.streamDefaults.alertPolicy
        #expect(p.evidence == 6 && p.quiet == 300)
        #expect(c.streamDefaults.resolved(dim: 3).alertEvidence == 6)
        var log = c.streamDefaults
        log.log = true
        #expect(log.resolved(dim: 1).alertEvidence == 0, "a log stream takes log_alert_evidence")
        log.logAlertEvidence = 7
        #expect(log.resolved(dim: 1).alertPolicy.evidence == 7)
        for key in ["alert_evidence", "log_alert_evidence"] {
            for bad in ["0.5", "41", "nan", "-1"] {
                #expect(throws: (any Error).self) { try ConfigurationFile.parse("[stream]\n\(key) = \(bad)\n").validate() }
            }
        }
    }

    /// Each unit's section restores by name; a signal the settings no longer have is dropped, one they
    /// add starts fresh, and a section of an unknown layout version is an error, not a guess.
    @Test func sectionsRestoreByNameAndVersion() throws {
        var settings = StreamConfiguration().resolved(dim: 1)
        settings.warmupSamples = 0
        settings.rangeWarmup = 0
        settings.period = .fixed(40)
        var run = OfflineRun(name: "s", settings: settings)
        for t in 0..<700 { var v = Float(sin(Double(t) * 2 * .pi / 40)); _ = run.next(&v) }
        let bytes = run.pipeline.serialized()
        let restored = try StreamPipeline.restore(bytes, settings: settings)
        #expect(restored.serialized() == bytes)
        let seen = try #require(restored.chain.signal(RangeSignal.self)).seen
        #expect(seen == 700)
        #expect(restored.chain.signal(PeriodSignal.self)?.check.calibrator.count == run.pipeline.chain.signal(PeriodSignal.self)?.check.calibrator.count)

        var withoutPeriod = settings
        withoutPeriod.signals = ["range", "reconstruction"]
        let dropped = try StreamPipeline.restore(bytes, settings: withoutPeriod)
        #expect(dropped.chain.signal(PeriodSignal.self) == nil && dropped.period == 0)
        #expect(dropped.chain.signal(RangeSignal.self)?.seen == 700, "the other units keep their state")

        var withoutReconstruction = settings
        withoutReconstruction.signals = ["range", "period"]
        let fresh = try StreamPipeline.restore(try StreamPipeline.restore(bytes, settings: withoutReconstruction).serialized(), settings: settings)
        #expect(fresh.chain.signal(ReconstructionSignal.self)?.calibrator.count == 0, "a signal added back starts fresh")

        // The range section's version is the u32 after its name; 99 is no layout this build knows.
        var tampered = bytes
        let name = Array("range".utf8)
        let at = try #require((0...(tampered.count - name.count)).first { Array(tampered[$0..<($0 + name.count)]) == name })
        tampered[at + name.count] = 99
        #expect(throws: StateError.self) { try StreamPipeline.restore(tampered, settings: settings) }
    }

    /// With `rangeCorroboration`, a value beyond the range is certain only when another signal's
    /// surprise at that sample reaches it: an excursion the model expects (surprise 1) is a reading
    /// like any other (scored by the other signals, no alert), one that surprises it (2 or more)
    /// scores 1 and alerts, as every excursion does without the setting. A signal that does not
    /// corroborate (the correlation signal: its distance grows with the excursion itself) leaves it
    /// a reading whatever its surprise. A stream of several features gets the setting, a univariate
    /// one and one whose chain has no other signal do not.
    @Test func anExcursionNeedsAnotherSignalsSurpriseWhenAsked() throws {
        func excursion(corroboration: Float, surprise: Float, corroborates: Bool = true) throws -> DetectionChain.Verdict {
            let range = RangeSignal(dimension: 2, margin: 0.05, refresh: 100, warmup: 50, window: 0)
            let calm: (surprise: Float, strength: Float, certain: Bool) = (0.5, 0.3, false)
            let other = ScriptedSignal(
                script: Array(repeating: calm, count: 50) + [(surprise, 0.5, false)], corroborates: corroborates)
            var chain = DetectionChain(
                signals: [range, other], policy: AlertPolicy(threshold: 0.9, repeatWindow: 0), rangeCorroboration: corroboration)
            var r = RandomSource(seed: 4)
            var verdict: DetectionChain.Verdict?
            for i in 0...50 {
                let x: [Float] = i < 50 ? [r.uniform(), r.uniform()] : [0.5, 3]
                verdict = x.withUnsafeBufferPointer { p in
                    chain.prepare(p.baseAddress!, count: 1, dimension: 2)
                    var o = Observation(values: p.baseAddress!, dimension: 2, logError: 0, modelReady: true)
                    return chain.judge(&o, warming: false)
                }
                if i < 50 { #expect(verdict?.alert == false && verdict?.certain == false) }
            }
            return try #require(verdict)
        }
        for surprise: Float in [1, 2.5] {
            let alone = try excursion(corroboration: 0, surprise: surprise)
            #expect(alone.certain && alone.score == 1 && alone.alert)
        }
        let expected = try excursion(corroboration: 2, surprise: 1)
        #expect(!expected.certain && !expected.alert && abs(expected.score - 0.8413) < 1e-3, "Φ(1): the other signal's reading")
        let surprising = try excursion(corroboration: 2, surprise: 2.5)
        #expect(surprising.certain && surprising.score == 1 && surprising.alert && surprising.source == 0)
        #expect(try excursion(corroboration: 2, surprise: 2).certain, "reaching the setting is enough")
        let uncorroborated = try excursion(corroboration: 2, surprise: 9, corroborates: false)
        #expect(!uncorroborated.certain && !uncorroborated.alert && uncorroborated.score > 0.999)
        #expect(!CorrelationSignal(dimension: 2, horizon: 100, holdOff: 0).corroborates)

        #expect(StreamConfiguration().rangeCorroboration == 2)
        let settings = StreamConfiguration()
        #expect(StreamPipeline(name: "v", settings: settings.resolved(dim: 3)).chain.rangeCorroboration == 2)
        #expect(StreamPipeline(name: "u", settings: settings.resolved(dim: 1)).chain.rangeCorroboration == 0)
        var rangeOnly = settings
        rangeOnly.signals = ["range"]
        #expect(StreamPipeline(name: "r", settings: rangeOnly.resolved(dim: 3)).chain.rangeCorroboration == 0)
        for bad in ["range_corroboration = -1\n", "range_corroboration = 41\n", "range_corroboration = nan\n"] {
            #expect { try ConfigurationFile.parse("[stream]\n" + bad).streamDefaults.resolved(dim: 2).validate(name: "s") } throws: {
                "\($0)".contains("range_corroboration")
            }
        }
    }

    /// The rule on a stream as it runs, with its models trained: three features that move together
    /// (x, 2x, −x, x uniform in [−1, 1), no order in time). A record the three set together, as they always move, is taken
    /// in without a word by default, and scores 1 with `range_corroboration = 0`; one feature far
    /// past its range while the others stay where they were surprises the model and scores 1 either way.
    @Test func aRecordTheModelExpectsIsNotCertainOnAStreamOfSeveralFeatures() throws {
        func stream(corroboration: Float) -> (StreamPipeline, ([Float], UInt64) -> SampleScore) {
            var settings = StreamConfiguration().resolved(dim: 3)
            settings.rangeCorroboration = corroboration
            settings.repeatWindow = 0
            let p = StreamPipeline(name: "c", settings: settings)
            var random = RandomSource(seed: 5)
            for start in stride(from: 0, to: 3000, by: 100) {
                var x = [Float]()
                for _ in 0..<100 {
                    let v = 2 * random.uniform() - 1
                    x += [v, 2 * v, -v]
                }
                _ = x.withUnsafeBufferPointer { p.score($0.baseAddress!, count: 100, firstSequence: UInt64(start)) }
                while p.trainStep() {}
            }
            return (p, { v, sequence in v.withUnsafeBufferPointer { p.score($0.baseAddress!, count: 1, firstSequence: sequence) }.sample(0) })
        }
        for corroboration: Float in [2, 0] {
            let (p, score) = stream(corroboration: corroboration)
            let (low, high) = p.chain.signal(RangeSignal.self)!.range(0)
            // A fifth of the range past it: past the margin (5%) and half a standard deviation (0.29).
            let record = high + 0.2 * (high - low)
            let together = score([record, 2 * record, -record], 3000)
            #expect(!together.warmingUp)
            #expect(together.beyondRange == (corroboration == 0), "corroboration \(corroboration): score \(together.score)")
            #expect(together.alert == (corroboration == 0) && (corroboration == 0 || together.score < 0.977), "Φ(2) not reached")
            let apart = score([0.1, 2 * (high + 3 * (high - low)), -0.1], 3001)
            #expect(apart.beyondRange && apart.score == 1 && apart.alert, "corroboration \(corroboration)")
        }
    }

    @Test func theSignalsSettingParsesAndIsChecked() throws {
        let c = try ConfigurationFile.parse("[stream]\nsignals = reconstruction, range\n")
        #expect(c.streamDefaults.signals == ["reconstruction", "range"])
        try c.streamDefaults.resolved(dim: 3).validate(name: "s")
        for bad in ["signals = range, novelty\n", "signals = range, range\n"] {
            #expect { try ConfigurationFile.parse("[stream]\n" + bad) } throws: { "\($0)".contains("signals:") }
        }
    }
}

@Suite struct RangeHabitTests {
    /// Reads one value through a range signal, and lets it learn as the chain would (not from a
    /// certain sample: it alerts); returns whether it was certain.
    func read(_ s: RangeSignal, _ v: Float) -> Bool {
        var value = v
        return withUnsafePointer(to: &value) { p in
            s.prepare(p, count: 1, dimension: 1)
            var o = Observation(values: p, dimension: 1, logError: 0, modelReady: true)
            let certain = s.read(&o).certain
            s.learn(o, anomalous: certain)
            return certain
        }
    }

    /// From review: far from zero the spread follows a level's step. At a level of a million a
    /// float mean does not move for a step under 0.06: after a step of 100 the mean stayed put (at a
    /// weight of 1/5000 it needed differences of 300) and the spread grew to 100 for good, so
    /// excursions of 5 to 50 beyond the range were never far enough. The section keeps the moments.
    @Test func theSpreadFollowsAStepFarFromZero() throws {
        let s = RangeSignal(dimension: 1, margin: 0.05, refresh: 100, warmup: 50, window: 0, deviations: 0.5, scaleHorizon: 5000)
        var r = RandomSource(seed: 4)
        for i in 0..<60_000 { _ = read(s, Float(1e6 + (i < 10_000 ? 0 : 100) + Double(r.normal()))) }
        #expect(s.variance(0) < 2, "\(s.variance(0))")
        var w = StateWriter()
        s.encode(&w)
        let copy = RangeSignal(dimension: 1, margin: 0.05, refresh: 100, warmup: 50, window: 0, deviations: 0.5, scaleHorizon: 5000)
        var reader = StateReader(w.bytes)
        try copy.decode(&reader, version: RangeSignal.stateVersion)
        #expect(copy.variance(0) == s.variance(0) && copy.meanP[0] == s.meanP[0])
    }

    /// With `deviations` 1, a random walk's new extremes (reached by steps of its usual size, a small
    /// share of its spread) are not certain, while a jump of several standard deviations beyond the
    /// range is, and stays out of the moments; without it every new extreme past the margin is
    /// certain. The moments survive the signal's section.
    @Test func aWalkSettingNewExtremesByOrdinaryStepsIsNotCertain() throws {
        var certain: [Float: (walk: Int, jump: Bool)] = [:]
        for deviations: Float in [0, 1] {
            let s = RangeSignal(dimension: 1, margin: 0.05, refresh: 100, warmup: 50, window: 0, deviations: deviations, scaleHorizon: 500)
            var r = RandomSource(seed: 9)
            var x: Float = 0, walk = 0
            for _ in 0..<3000 {
                x += r.normal()
                if read(s, x) { walk += 1 }
            }
            let before = (s.moments, s.variance(0))
            let (low, high) = s.range(0), spread = s.variance(0).squareRoot()
            let jump = read(s, high + 0.06 * (high - low) + 3 * spread)
            #expect(s.moments == before.0 && s.variance(0) == before.1, "a certain sample teaches no moments")
            certain[deviations] = (walk, jump)

            var w = StateWriter()
            s.encode(&w)
            let copy = RangeSignal(dimension: 1, margin: 0.05, refresh: 100, warmup: 50, window: 0, deviations: deviations, scaleHorizon: 500)
            var reader = StateReader(w.bytes)
            try copy.decode(&reader, version: RangeSignal.stateVersion)
            #expect(copy.moments == s.moments && copy.variance(0) == s.variance(0))
            // A bound that is not a number (it would never be crossed), or bounds out of order, are
            // invalid state. The low bound follows the width (4 bytes), the high bound it.
            for (offset, value) in [(4, Float.nan), (8, .nan), (4, .greatestFiniteMagnitude), (8, -.infinity)] {
                var bytes = w.bytes
                withUnsafeBytes(of: value.bitPattern.littleEndian) { for i in 0..<4 { bytes[offset + i] = $0[i] } }
                var bad = StateReader(bytes)
                #expect(throws: StateError.self, "\(offset) \(value)") { try copy.decode(&bad, version: RangeSignal.stateVersion) }
            }
        }
        #expect(certain[0]!.walk >= 10, "the walk leaves its range again and again: \(certain[0]!.walk)")
        #expect(certain[1]!.walk <= certain[0]!.walk / 5, "\(certain[1]!.walk) of \(certain[0]!.walk) left")
        #expect(certain[0]!.jump && certain[1]!.jump)
    }

    /// With a habit limit of 2, a stream that keeps leaving its range is certain twice, then its
    /// excursions are its habit; after a few horizons of quiet the count has decayed and an
    /// excursion is certain again. Without the limit every excursion is certain.
    @Test func aStreamThatKeepsLeavingItsRangeMakesAHabitOfIt() throws {
        for limit in [0.0, 2] {
            let s = RangeSignal(dimension: 1, margin: 0.05, refresh: 1, warmup: 50, window: 0, habitLimit: limit, habitHorizon: 100)
            for k in 0..<50 { _ = read(s, Float(k % 10)) }  // the range is [0, 9], learned during the warm-up
            let steps = [20, 40, 80, 160].map { read(s, Float($0)) }
            #expect(steps == (limit == 0 ? [true, true, true, true] : [true, true, false, false]), "limit \(limit)")
            #expect((s.habit(0) == 0) == (limit == 0), "without a limit nothing is counted")
            for _ in 0..<1000 { _ = read(s, 5) }
            #expect(read(s, 400), "after a quiet spell an excursion is certain again")
            // The habit survives its section; a version-1 section (before the habit) restores with none.
            // With one feature, version 4 (a count per feature) writes the bytes of version 3.
            var w = StateWriter()
            s.encode(&w)
            let copy = RangeSignal(dimension: 1, margin: 0.05, refresh: 1, warmup: 50, window: 0, habitLimit: limit, habitHorizon: 100)
            var r = StateReader(w.bytes)
            try copy.decode(&r, version: 3)
            #expect(copy.habit(0) == s.habit(0) && copy.seen == s.seen)
            // Version 2 ends before the moments (a count and two floats for the one feature), version 1
            // before the habit (its count and the sample of the last excursion).
            let version2 = Array(w.bytes.dropLast(16))
            let two = RangeSignal(dimension: 1, margin: 0.05, refresh: 1, warmup: 50, window: 0, habitLimit: limit, habitHorizon: 100)
            var r2 = StateReader(version2)
            try two.decode(&r2, version: 2)
            #expect(two.habit(0) == s.habit(0) && two.moments == 0)
            let old = RangeSignal(dimension: 1, margin: 0.05, refresh: 1, warmup: 50, window: 0, habitLimit: limit, habitHorizon: 100)
            var r1 = StateReader(Array(version2.dropLast(16)))
            try old.decode(&r1, version: 1)
            #expect(old.habit(0) == 0 && old.seen == s.seen)
        }
    }

    func read(_ s: RangeSignal, _ a: Float, _ b: Float) -> Bool {
        let values: [Float] = [a, b]
        return values.withUnsafeBufferPointer { p in
            s.prepare(p.baseAddress!, count: 1, dimension: 2)
            var o = Observation(values: p.baseAddress!, dimension: 2, logError: 0, modelReady: true)
            let certain = s.read(&o).certain
            s.learn(o, anomalous: certain)
            return certain
        }
    }

    /// The habit is each feature's: once feature 0 has left its range twice, its excursions are not
    /// certain, while feature 1's first excursion is, alone or beside one of feature 0's. Version 4
    /// keeps each feature's count and last excursion; a version-3 section's one count for the stream
    /// (kept even with the limit off, the default then) is dropped, so an upgraded stream is not silenced.
    @Test func aFeatureThatKeepsLeavingItsRangeDoesNotSilenceTheOthers() throws {
        let s = RangeSignal(dimension: 2, margin: 0.05, refresh: 1, warmup: 50, window: 0, habitLimit: 2, habitHorizon: 100)
        for k in 0..<50 { _ = read(s, Float(k % 10), Float(k % 10)) }  // both ranges are [0, 9]
        let wander = [20, 40, 80].map { read(s, Float($0), 5) }
        #expect(wander == [true, true, false], "feature 0 makes a habit of it")
        #expect(s.habit(0) > 2.9 && s.habit(1) == 0)
        #expect(read(s, 5, 20), "feature 1's first excursion is certain")
        #expect(read(s, 160, 40), "feature 1 has not made a habit of it: certain beside feature 0's")
        #expect(!read(s, 320, 5), "feature 0's alone is not")
        // Version 4 keeps both counts.
        var w = StateWriter()
        s.encode(&w)
        let copy = RangeSignal(dimension: 2, margin: 0.05, refresh: 1, warmup: 50, window: 0, habitLimit: 2, habitHorizon: 100)
        var r = StateReader(w.bytes)
        try copy.decode(&r, version: 4)
        #expect(copy.habit(0) == s.habit(0) && copy.habit(1) == s.habit(1))
        // The samples of the last excursions came too: after a quiet spell both decay alike.
        for _ in 0..<30 {
            _ = read(s, 5, 5)
            _ = read(copy, 5, 5)
        }
        #expect(read(s, 640, 80) == read(copy, 640, 80))
        #expect(copy.habit(0) == s.habit(0) && copy.habit(1) == s.habit(1) && s.habit(1) > 2.3 && s.habit(1) < 2.5)
        // A version-3 section: the range, the stream's count (2.5, at sample 55), and no moments.
        var v3 = StateWriter()
        v3.write(UInt32(2))
        for v: Float in [0, 0, 9, 9] { v3.write(v) }
        v3.write(UInt64(60))
        for v: Float in [0, 0, 9, 9] { v3.write(v) }
        v3.write(Double(2.5).bitPattern); v3.write(UInt64(55))
        v3.write(UInt64(0))
        for v: Float in [0, 0, 0, 0] { v3.write(v) }
        let old = RangeSignal(dimension: 2, margin: 0.05, refresh: 1, warmup: 50, window: 0, habitLimit: 2, habitHorizon: 100)
        var r3 = StateReader(v3.bytes)
        try old.decode(&r3, version: 3)
        #expect(old.habit(0) == 0 && old.habit(1) == 0 && old.seen == 60)
        #expect(read(old, 20, 20), "an upgraded stream's excursions are certain again")
    }
    /// A count stream: a daily cycle of 24 samples around `level`, noise, and heavy-tailed bursts
    /// (one sample in 30 multiplied by 1 + 2 / u, u uniform over [0.02, 1): a Pareto tail, up to 101).
    static func counts(_ n: Int, level: Float = 1000, seed: UInt64 = 5) -> [Float] {
        var r = RandomSource(seed: seed)
        return (0..<n).map { t in
            let rate = level * (1 + 0.5 * Float(sin(2 * Double.pi * Double(t) / 24)))
            var x = max(0, rate + 0.1 * rate * r.normal())
            if r.uniform() < 1 / 30 { x *= 1 + 2 / r.uniform(0.02, 1) }
            return x.rounded()
        }
    }

    /// A one-feature section's tails: whether the feature is a count, its values over where the
    /// tail begins, their excesses, and the normal sample of the last.
    static let tailBytes = 1 + 8 + 8 + 8
    /// A placed tail's early values in the section: their count, 0.
    static let earlyBytes = 4

    /// A count whose bursts are heavy-tailed (`counts`: one sample in 30 multiplied by 3 to 101)
    /// or light (one in 30 by 1.2 to 1.6).
    static func bursty(_ n: Int, heavy: Bool, seed: UInt64 = 5) -> [Float] {
        var r = RandomSource(seed: seed)
        return (0..<n).map { t in
            let rate: Float = 1000 * (1 + 0.5 * Float(sin(2 * Double.pi * Double(t) / 24)))
            var x = max(0, rate + 0.1 * rate * r.normal())
            if r.uniform() < 1 / 30 { x *= heavy ? 1 + 2 / r.uniform(0.02, 1) : 1.2 + 0.4 * r.uniform() }
            return x.rounded()
        }
    }

    /// `range_tail`: a count whose bursts reach a hundred times its level sets records as they come.
    /// After 4,000 of its values a value 1.5 times its highest is certain without the tail and not
    /// with it (it is beyond the range all the same: taken into it). A count whose bursts stay under
    /// 1.6 times its level keeps a value 3 times its highest certain, and so does the heavy count a
    /// value 1e12 times its highest (the tail makes it rarer than one in a million). The same values
    /// half a unit up (not whole) or once negative are judged as without the tail. The tail counts
    /// the values before it is placed too (530 values in, a record half again the highest is not
    /// certain).
    @Test func aCountsRecordIsCertainOnlyPastItsOwnTail() throws {
        func signal(_ tail: Double) -> RangeSignal {
            RangeSignal(
                dimension: 1, margin: 0.05, refresh: 100, warmup: 500, window: 0, deviations: 0.5, scaleHorizon: 5000, drop: 1,
                tail: tail)
        }
        func after(_ values: [Float], _ tail: Double) -> RangeSignal {
            let s = signal(tail)
            for x in values { _ = read(s, x) }
            return s
        }
        let heavy = Self.bursty(4000, heavy: true), light = Self.bursty(4000, heavy: false)
        for tail in [0, 1e-6] {
            let s = after(heavy, tail)
            let high = s.range(0).high
            #expect(read(s, 1.5 * high) == (tail == 0), "\(tail): a record half again the highest")
            #expect(s.range(0).high == 1.5 * high, "taken into the range either way")
            #expect(read(after(heavy, tail), 1e12 * high), "\(tail): far past the tail")
            let l = after(light, tail)
            #expect(read(l, 3 * l.range(0).high), "\(tail): light bursts")
            // Not whole: the tail is not judged.
            let fractional = after(heavy.map { $0 + 0.5 }, tail)
            #expect(read(fractional, 1.5 * fractional.range(0).high), "\(tail): not a count")
            // Once negative: not a count either.
            var negative = heavy
            negative[100] = -1
            let n = after(negative, tail)
            #expect(read(n, 1.5 * n.range(0).high), "\(tail): once negative")
        }
        // A record soon after the tail is placed is judged by it: the values before count.
        let young = after(Array(heavy.prefix(530)), 1e-6)
        #expect(young.logMoments >= RangeSignal.logMinimum && young.tailCountP[0] >= RangeSignal.tailMinimum)
        #expect(!read(young, 1.5 * young.range(0).high), "\(young.tailCountP[0]) values over the start")

        // The section keeps the tails, to the byte.
        let s = after(heavy, 1e-6)
        var w = StateWriter()
        s.encode(&w)
        let copy = signal(1e-6)
        var reader = StateReader(w.bytes)
        try copy.decode(&reader, version: RangeSignal.stateVersion)
        var again = StateWriter()
        copy.encode(&again)
        #expect(again.bytes == w.bytes)
        #expect(!read(copy, 1.5 * copy.range(0).high), "restored, a record is judged by the tail")
        // Version 6 (without the tails): a feature with whole range ends is a count, its tail measured
        // afresh; a record is certain until `tailMinimum` values have been over its start.
        let old = signal(1e-6)
        var r6 = StateReader(Array(w.bytes.dropLast(Self.tailBytes + Self.earlyBytes)))
        try old.decode(&r6, version: 6)
        #expect(old.wholeP[0] == 1 && old.tailCountP[0] == 0)
        let probe = signal(1e-6)
        var r6b = StateReader(Array(w.bytes.dropLast(Self.tailBytes + Self.earlyBytes)))
        try probe.decode(&r6b, version: 6)
        #expect(read(probe, 1.5 * probe.range(0).high), "no tail yet")
        for x in Self.bursty(1000, heavy: true, seed: 6) { _ = read(old, x) }
        #expect(old.tailCountP[0] >= RangeSignal.tailMinimum)
        #expect(!read(old, 1.5 * old.range(0).high), "the tail measured again")
        // Damaged tails are refused: a count flag of 2, a NaN count, a negative sum, a last sample
        // beyond the samples learned; early values for a placed tail.
        let end = w.bytes.count - Self.earlyBytes
        for (offset, bytes) in [
            (end - 25, [UInt8(2)]), (end - 24, Array(withUnsafeBytes(of: Double.nan.bitPattern.littleEndian) { Array($0) })),
            (end - 16, Array(withUnsafeBytes(of: (-1.0).bitPattern.littleEndian) { Array($0) })),
            (end - 8, Array(withUnsafeBytes(of: (s.moments + 1).littleEndian) { Array($0) })),
        ] {
            var bad = w.bytes
            for (i, b) in bytes.enumerated() { bad[offset + i] = b }
            var badReader = StateReader(bad)
            #expect(throws: StateError.self, "\(offset)") { try signal(1e-6).decode(&badReader, version: RangeSignal.stateVersion) }
        }
        // Early values, well formed, for a tail already placed.
        var placed = StateWriter()
        placed.write(UInt32(RangeSignal.earlyTop))
        for _ in 0..<RangeSignal.earlyTop { placed.write(-Float.infinity) }
        for _ in 0..<RangeSignal.earlyTop { placed.write(UInt32(0)) }
        var placedReader = StateReader(Array(w.bytes.dropLast(Self.earlyBytes)) + placed.bytes)
        #expect { try signal(1e-6).decode(&placedReader, version: RangeSignal.stateVersion) } throws: {
            "\($0)".contains("range early values")
        }
    }

    /// A count's highest values before its tail is placed (the first 512 normal ones) join the tail
    /// when it is: on three seeds of a bursty count, 530 values in, the tail has counted at least
    /// `tailMinimum` values over its start and a record half again the highest is not certain;
    /// without the early values (the tail counted from its placement) the same record is certain.
    /// A stream checkpointed before the placement and restored goes on to the same tail, to the
    /// byte; a version 7 section has no early values (the tail counts from its placement); damaged
    /// early values are refused.
    @Test func aCountsTailCountsTheValuesBeforeItIsPlaced() throws {
        func signal() -> RangeSignal {
            RangeSignal(
                dimension: 1, margin: 0.05, refresh: 100, warmup: 500, window: 0, deviations: 0.5, scaleHorizon: 5000, drop: 1,
                tail: 1e-6)
        }
        for seed: UInt64 in [5, 6, 7] {
            let values = Self.bursty(530, heavy: true, seed: seed)
            let s = signal(), bare = signal()
            for x in values.prefix(200) { _ = read(s, x); _ = read(bare, x) }
            // `bare` forgets its early values (a version 7 section's state): its tail starts at placement.
            bare.early = []
            for x in values.dropFirst(200) { _ = read(s, x); _ = read(bare, x) }
            #expect(s.early.isEmpty && s.tailStartP[0].isFinite)
            #expect(s.tailCountP[0] >= RangeSignal.tailMinimum, "\(seed): \(s.tailCountP[0])")
            #expect(bare.tailCountP[0] < RangeSignal.tailMinimum, "\(seed): \(bare.tailCountP[0])")
            #expect(!read(s, 1.5 * s.range(0).high), "\(seed): judged by the tail")
            #expect(read(bare, 1.5 * bare.range(0).high), "\(seed): no tail yet")
        }
        // Checkpointed 300 values in (the early values kept), restored, and fed on alike.
        let values = Self.bursty(700, heavy: true)
        let s = signal()
        for x in values.prefix(300) { _ = read(s, x) }
        var w = StateWriter()
        s.encode(&w)
        let count = w.bytes.count - RangeSignal.earlyTop * 8 - Self.earlyBytes
        #expect(!s.early.isEmpty && Array(w.bytes[count..<count + 4]) == [UInt8(RangeSignal.earlyTop), 0, 0, 0])
        let copy = signal()
        var reader = StateReader(w.bytes)
        try copy.decode(&reader, version: RangeSignal.stateVersion)
        #expect(copy.early == s.early && copy.earlyAt == s.earlyAt && copy.earlyFloor == s.earlyFloor)
        for x in values.dropFirst(300) { _ = read(s, x); _ = read(copy, x) }
        var a = StateWriter(), b = StateWriter()
        s.encode(&a)
        copy.encode(&b)
        #expect(a.bytes == b.bytes && s.tailCountP[0] > 0)
        // Version 7: without the early values; the tail counts from its placement.
        let old = signal()
        var r7 = StateReader(Array(w.bytes.dropLast(Self.earlyBytes + RangeSignal.earlyTop * 8)))
        try old.decode(&r7, version: 7)
        #expect(!old.early.isEmpty && old.early.allSatisfy { $0 == -.infinity })
        // Damaged: a negative value, one that is not whole, a sample beyond those learned.
        let start = w.bytes.count - RangeSignal.earlyTop * 8 - Self.earlyBytes
        for (offset, bytes) in [
            (start + 4, Array(withUnsafeBytes(of: Float(-1).bitPattern.littleEndian) { Array($0) })),
            (start + 4, Array(withUnsafeBytes(of: Float(2.5).bitPattern.littleEndian) { Array($0) })),
            (start + 4 + RangeSignal.earlyTop * 4, Array(withUnsafeBytes(of: UInt32(s.moments + 1000).littleEndian) { Array($0) })),
        ] {
            var bad = w.bytes
            for (i, byte) in bytes.enumerated() { bad[offset + i] = byte }
            var badReader = StateReader(bad)
            #expect { try signal().decode(&badReader, version: RangeSignal.stateVersion) } throws: {
                "\($0)".contains("range early values")
            }
        }
        // Whether a feature is a count is followed without the tail too: a measurement's checkpoint
        // taken without it and restored with it has no band.
        let plain = RangeSignal(dimension: 1, margin: 0.05, refresh: 100, warmup: 500, window: 0, deviations: 0.5, drop: 1)
        for x in Self.bursty(700, heavy: true) { _ = read(plain, x + 0.5) }
        var measured = StateWriter()
        plain.encode(&measured)
        let banded = RangeSignal(
            dimension: 1, margin: 0.05, refresh: 100, warmup: 500, window: 0, deviations: 0.5, drop: 1, tail: 1e-6, bands: true)
        var measuredReader = StateReader(measured.bytes)
        try banded.decode(&measuredReader, version: RangeSignal.stateVersion)
        #expect(banded.logMoments >= RangeSignal.logMinimum && banded.wholeP[0] == 0 && banded.bandP[0] == .infinity)
        // A count other than 0 or `earlyTop`, its 5 values and samples well formed.
        var five = StateWriter()
        five.write(UInt32(5))
        for _ in 0..<5 { five.write(-Float.infinity) }
        for _ in 0..<5 { five.write(UInt32(0)) }
        var fiveReader = StateReader(Array(w.bytes[..<start]) + five.bytes)
        #expect { try signal().decode(&fiveReader, version: RangeSignal.stateVersion) } throws: {
            "\($0)".contains("range early values")
        }
    }

    /// `range_tail_young`: before a count's tail is placed (480 values in, fewer than 512 learned), a
    /// record half again the highest of a heavy count is certain without `young` and not with it (its
    /// provisional tail, from the early values, makes it common); either way it is taken into the
    /// range. With `young`, a value a trillion times the highest stays certain, and so does a record
    /// three times the highest of a count whose bursts stay under 1.6 times its level, or the heavy
    /// values half a unit up (not a count). A placed tail left with one value over its start judges
    /// with `young` (not certain) and not without (certain); one with none keeps the record certain
    /// either way. Through the default pipeline without the model, a spike ten times the highest of the
    /// light count before its tail is placed alerts either way, on three seeds.
    @Test func aCountsYoungTailJudgesItsRecords() throws {
        func after(_ values: [Float], young: Bool) -> RangeSignal {
            let s = RangeSignal(
                dimension: 1, margin: 0.05, refresh: 100, warmup: 400, window: 0, deviations: 0.5, scaleHorizon: 5000, drop: 1,
                tail: 1e-6, young: young)
            for x in values { _ = read(s, x) }
            return s
        }
        let heavy = Self.bursty(480, heavy: true), light = Self.bursty(480, heavy: false)
        for young in [true, false] {
            let s = after(heavy, young: young)
            #expect(!s.tailStartP[0].isFinite && !s.early.isEmpty)
            let high = s.range(0).high
            #expect(read(s, 1.5 * high) == !young, "young \(young): a record before the tail is placed")
            #expect(s.range(0).high == 1.5 * high, "taken into the range either way")
            #expect(read(after(heavy, young: young), 1e12 * high), "young \(young): far past the provisional tail")
            let l = after(light, young: young)
            #expect(read(l, 3 * l.range(0).high), "young \(young): light bursts")
            let fractional = after(heavy.map { $0 + 0.5 }, young: young)
            #expect(read(fractional, 1.5 * fractional.range(0).high), "young \(young): not a count")
        }
        // Placed, with the tail's values set: one value over its start, then none.
        let long = Self.bursty(4000, heavy: true)
        for young in [true, false] {
            for values in [1.0, 0] {
                let s = after(long, young: young)
                #expect(s.tailStartP[0].isFinite && s.tailCountP[0] >= RangeSignal.tailMinimum)
                let meanExcess = s.tailSumP[0] / s.tailCountP[0]
                (s.tailCountP[0], s.tailSumP[0], s.tailLastP[0]) = (values, values * meanExcess, s.moments)
                #expect(read(s, 1.5 * s.range(0).high) == (!young || values == 0), "young \(young), \(values) values over the start")
            }
        }

        for young in [true, false] {
            for seed: UInt64 in [5, 6, 7] {
                var values = Self.bursty(620, heavy: false, seed: seed)
                values[560] = 10 * values.prefix(560).max()!
                var settings = StreamConfiguration().resolved(dim: 1)
                settings.rangeTailYoung = young
                settings.signals.removeAll { $0 == ReconstructionSignal.name }
                try settings.validate(name: "t")
                let pipeline = StreamPipeline(name: "t", settings: settings)
                var (spike, tailPlaced) = (false, true)
                for start in stride(from: 0, to: values.count, by: 20) {
                    let batch = Array(values[start..<min(start + 20, values.count)])
                    let range = try #require(pipeline.chain.signal(RangeSignal.self))
                    if start == 560 { tailPlaced = range.tailStartP[0].isFinite }
                    let scored = batch.withUnsafeBufferPointer { pipeline.score($0.baseAddress!, count: batch.count, firstSequence: UInt64(start)) }
                    if start == 560 { spike = scored.samples[0].alert }
                    while pipeline.trainStep() {}
                }
                #expect(spike && !tailPlaced, "young \(young), seed \(seed): the spike")
                #expect(try #require(pipeline.chain.signal(RangeSignal.self)).young == young)
            }
        }
        #expect(StreamConfiguration().rangeTailYoung)
        #expect(try ConfigurationFile.parse("[stream]\nrange_tail_young = false\n").streamDefaults.rangeTailYoung == false)
        #expect(throws: ConfigurationError.self) { try ConfigurationFile.parse("[stream]\nrange_tail_young = 1e-8\n") }
    }

    /// `range_drop`: a count stream's bursts widen its range and spread, so a fall to a twentieth of
    /// its lowest value stays inside the margin and under half a spread; on the log scale it is far
    /// (certain with `drop` 1, not without). A value a little under the lowest is not; a feature that
    /// has been negative is never judged so, nor learned from; a constant feature (no spread) is not
    /// either. The log moments survive the section; a version 5 section (without them) starts them
    /// afresh, and a fall is judged again once 512 normal samples have taught them; a damaged
    /// section is refused.
    @Test func aCountThatFallsToNearlyNothingIsBeyondItsRange() throws {
        let normal = Self.counts(3000)
        func signal(_ drop: Float) -> RangeSignal {
            RangeSignal(
                dimension: 1, margin: 0.05, refresh: 100, warmup: 500, window: 0, deviations: 0.5, scaleHorizon: 5000, drop: drop)
        }
        var outcomes: [Float: (outage: Bool, dip: Bool, normal: Int)] = [:]
        for drop: Float in [0, 1] {
            let s = signal(drop)
            let normalCertain = normal.filter { read(s, $0) }.count
            let (low, high) = s.range(0)
            #expect(low > 100 && high > 20 * low, "bursts widen the range: \(low) to \(high)")
            let dip = read(s, 0.9 * low)
            let outage = read(s, s.range(0).low / 20)
            outcomes[drop] = (outage, dip, normalCertain)
            if drop > 0 {
                // One normal sample in 16 teaches them, the first included.
                let expected = (s.moments + RangeSignal.logStride - 1) / RangeSignal.logStride
                #expect(s.logMoments == expected, "\(s.logMoments) of \(s.moments)")
                var w = StateWriter()
                s.encode(&w)
                let copy = signal(drop)
                var reader = StateReader(w.bytes)
                try copy.decode(&reader, version: RangeSignal.stateVersion)
                #expect(copy.logMoments == s.logMoments && copy.logMeanP[0] == s.logMeanP[0] && copy.logDownP[0] == s.logDownP[0])
                var again = StateWriter()
                copy.encode(&again)
                #expect(again.bytes == w.bytes)
                // Version 5 is version 6 without the log moments (a count, two doubles), and version
                // 6 version 7 without the tails at the end (a byte and three 8-byte fields a feature).
                let fresh = Self.counts(700, seed: 6)
                for (count, judged) in [(40, false), (700, true)] {
                    let old = signal(drop)
                    var r5 = StateReader(Array(w.bytes.dropLast(Self.earlyBytes + Self.tailBytes + 8 + 16)))
                    try old.decode(&r5, version: 5)
                    #expect(old.logMoments == 0 && old.moments == s.moments && old.range(0) == s.range(0))
                    for x in fresh.prefix(count) { _ = read(old, x) }
                    #expect(read(old, old.range(0).low / 20) == judged, "after \(count): \(old.logMoments) log samples")
                }
                // The count (24 bytes from the end), the log mean (16) and the spread under it (8):
                // a count beyond one per 16 normal samples, a mean that is no float's log, a NaN
                // mean, a negative spread.
                for (offset, bits) in [(24, s.moments), (16, (1e200).bitPattern), (16, Double.nan.bitPattern), (8, (-1.0).bitPattern)] {
                    var bad = w.bytes
                    withUnsafeBytes(of: bits.littleEndian) { for i in 0..<8 { bad[bad.count - Self.earlyBytes - Self.tailBytes - offset + i] = $0[i] } }
                    var badReader = StateReader(bad)
                    #expect(throws: StateError.self, "\(offset) \(bits)") {
                        try copy.decode(&badReader, version: RangeSignal.stateVersion)
                    }
                }
            }
        }
        #expect(outcomes[0]!.outage == false, "on the counts' own scale the outage is inside the margin")
        #expect(outcomes[1]!.outage, "on the log scale it is far below")
        #expect(!outcomes[0]!.dip && !outcomes[1]!.dip, "a tenth under the lowest is not")
        #expect(outcomes[1]!.normal == outcomes[0]!.normal, "normal values are judged as before")
        // A feature that has been negative is not a count: a fall from -1 to -20 is far on the log
        // scale, but on the feature's own scale it is inside the margin.
        let s = signal(1)
        for x in normal { _ = read(s, x) }
        #expect(read(s, -1), "from the counts' lowest to -1 is far on the log scale")
        #expect(s.range(0).low == -1)
        #expect(!read(s, -20), "below a range that reaches under 0 the fall is judged as before")
        let (mean, count) = (s.logMeanP[0], s.logMoments)
        for x in normal.prefix(100) { _ = read(s, x) }
        #expect(s.logMeanP[0] == mean && s.logMoments > count, "its log values are no longer learned")
        // A constant feature has no spread: any fall would be far. Its range has no width, and the
        // margin does not judge it either.
        let constant = signal(1)
        for _ in 0..<1000 { _ = read(constant, 100) }
        #expect(constant.logMoments >= RangeSignal.logMinimum && !read(constant, 10))
    }
}
