import Learning
import Testing

@testable import Pipeline

@Suite struct GlitchGuardTests {
    /// The guard alone: after its warm-up a value beyond the range by more than `ranges` widths is
    /// noted and replaced by the feature's last value, leaving the range as it was; one within that
    /// widens the range; a burst of three in a row on a feature is replaced value by value and a
    /// fourth is a new level that goes through; before the warm-up nothing is replaced. The state
    /// survives its checkpoint section, mid-run too.
    @Test func aLoneValueFarBeyondTheRangeIsReplacedAndAFourthInARowGoesThrough() throws {
        let guardUnit = GlitchGuard(dimension: 2, ranges: 30, warmup: 4, window: 0)
        var early: [Float] = [0, 0, 1, 1, 1e4, 0]  // three samples; the 1e4 comes before the warm-up
        guardUnit.inspect(early, count: 3)
        #expect(guardUnit.found.isEmpty, "not armed before 4 samples")
        #expect(guardUnit.high == [1e4, 1])
        let fresh = GlitchGuard(dimension: 2, ranges: 30, warmup: 4, window: 0)
        var batch: [Float] = [0, 0, 1, 1, 0.5, 0.25, 0.75, 0.5, 40, 0.5, 0.6, 0.5]
        fresh.inspect(batch, count: 6)
        // Feature 0's range is [0, 1] after four samples: 40 lies 39 widths above it.
        #expect(fresh.found.count == 1)
        let g = try #require(fresh.found.first)
        #expect(g.sample == 4 && g.feature == 0 && g.value == 40 && abs(g.ranges - 39) < 1e-4 && g.replacement == 0.75)
        batch.withUnsafeMutableBufferPointer { fresh.apply(to: $0.baseAddress!) }
        #expect(Array(batch[8...9]) == [0.75, 0.5], "replaced by the feature's last value, the other feature left")
        #expect(fresh.high[0] == 1, "a glitch does not widen the range")
        // 30 widths beyond is not yet a glitch: it widens the range to [0, 31].
        fresh.inspect([31, 0.5], count: 1)
        #expect(fresh.found.isEmpty && fresh.high[0] == 31)
        // Four in a row below: three glitches (each replaced by the value before the run), then a
        // new level, taken in, and a value within it.
        fresh.inspect([-1000, 0.5, -1001, 0.5, -1000.5, 0.5, -1002, 0.5, -1001.5, 0.5], count: 5)
        #expect(fresh.found.map(\.sample) == [0, 1, 2] && fresh.found.allSatisfy { $0.replacement == 31 })
        #expect(fresh.low[0] == -1002 && fresh.runs == [0, 0])
        // A burst of two: the checkpoint below is taken mid-run.
        fresh.inspect([1e6, 0.5, 1e6, 0.5], count: 2)
        #expect(fresh.found.map(\.sample) == [0, 1] && fresh.runs == [2, 0])

        var w = StateWriter()
        fresh.encode(&w)
        let copy = GlitchGuard(dimension: 2, ranges: 30, warmup: 4, window: 0)
        var r = StateReader(w.bytes)
        try copy.decode(&r, version: 1)
        #expect(copy.low == fresh.low && copy.high == fresh.high && copy.last == fresh.last && copy.seen == fresh.seen)
        #expect(copy.runs == fresh.runs)
        // Restored mid-run: a third glitch, a fourth taken in as a new level.
        copy.inspect([1e6, 0.5, 1e6, 0.5], count: 2)
        #expect(copy.found.map(\.sample) == [0] && copy.high[0] == 1e6)
        var longRun = w.bytes
        longRun[longRun.count - 2] = GlitchGuard.longestRun + 1
        var tooLong = StateReader(longRun)
        #expect(throws: StateError.self) { try GlitchGuard(dimension: 2, ranges: 30, warmup: 4, window: 0).decode(&tooLong, version: 1) }
        var again = StateReader(w.bytes)
        #expect(throws: StateError.self) { try copy.decode(&again, version: 2) }
        var narrow = StateReader(w.bytes)
        #expect(throws: StateError.self) { try GlitchGuard(dimension: 3, ranges: 30, warmup: 4, window: 0).decode(&narrow, version: 1) }
        _ = early.removeLast()
    }

    /// The pass of minima and maxima over a whole batch and the value-by-value pass agree: the same
    /// glitches, replacements and state whether a series comes as one batch, in batches of 7 or one
    /// sample at a time, on a series with a feature constant at first (its first move gives the
    /// width the next value is judged by), glitches, a new level and an outlier right after it.
    @Test func aBatchAtOnceAndOneSampleAtATimeFindTheSameGlitches() throws {
        var r = RandomSource(seed: 4)
        var x = (0..<(3 * 400)).map { _ in r.uniform() }
        for t in 0..<302 { x[3 * t + 2] = 5 }  // feature 2 constant for 302 samples, then 6
        x[3 * 302 + 2] = 6
        x[3 * 303 + 2] = 1000  // 994 widths beyond [5, 6], in the same batch of 7 or of 50
        x[3 * 120 + 0] = 1e5
        for t in 200..<204 { x[3 * t + 1] = -400 - Float(t - 200) }  // three glitches, then a new level: through
        x[3 * 204 + 1] = 1e9  // far beyond the widened range: a glitch again
        func run(_ chunk: Int) -> (found: [[Float]], state: [[Float]]) { Self.inspect(x, warmup: 50, chunk: chunk) }
        let whole = run(400), sevens = run(7), fifties = run(50), single = run(1)
        #expect(whole.found.map { Int($0[0]) } == [120, 200, 201, 202, 204, 303])
        #expect(whole.found[5] == [303, 2, 1000, 6], "the constant feature's first move sets the width")
        for other in [sevens, fifties, single] {
            #expect(other.found == whole.found && other.state == whole.state)
        }
    }

    /// Before the range's warm-up the bar is higher, `ranges × (warmup / n)²` widths after `n`
    /// values, and the guard waits for `arming` values: a young range is crossed by more. On a
    /// stream uniform in [0, 1) with the default warm-up of 500 (arming at 50): a 1e5 among the
    /// first 50 values goes through; after 100 values (a bar of 750 widths) a value 500 widths out is
    /// taken in and one 1,000 widths out is a glitch; after 400 (a bar of 47) one 150 out is too, and
    /// after 430 (a bar of 41) one 35 out is taken in, which a grown range's bar of 30 would not; after
    /// 445 (a bar of 38) one 40 out is a glitch. Each
    /// batching finds the same, the bar falling within a batch as it does sample by sample.
    @Test func aYoungRangeHasAHigherBar() throws {
        var r = RandomSource(seed: 9)
        var x = (0..<(3 * 450)).map { _ in r.uniform() }
        x[3 * 30 + 0] = 1e5  // before arming: through
        x[3 * 100 + 1] = 501  // 500 widths: under the bar of 750
        x[3 * 100 + 2] = 1001  // 1,000 widths: a glitch
        x[3 * 400 + 2] = 151  // 150 widths after 400 values: over the bar of 47
        x[3 * 430 + 0] = 3.6e6  // 35 widths of f0's range [0, 1e5] after 430 values: under the bar of 41
        x[3 * 445 + 1] = 501 + 40 * (501 - stride(from: 1, to: 3 * 445, by: 3).map { x[$0] }.min()!)  // 40 widths: over 37.9
        func run(_ chunk: Int) -> (found: [[Float]], state: [[Float]]) { Self.inspect(x, warmup: 500, chunk: chunk) }
        let whole = run(450)
        #expect(whole.found.map { [$0[0], $0[1]] } == [[100, 2], [400, 2], [445, 1]])
        #expect(whole.state[1][0] == 3.6e6 && whole.state[1][1] == 501, "taken into the range")
        for chunk in [1, 7, 30, 50, 64] {  // 30: the batch 420 to 449 holds the 445 (its bar at 420 is 42.5)
            let other = run(chunk)
            #expect(other.found == whole.found && other.state == whole.state, "batches of \(chunk)")
        }
        let guardUnit = GlitchGuard(dimension: 1, ranges: 30, warmup: 500, window: 0)
        #expect(guardUnit.bar(after: 50) == 3000 && guardUnit.bar(after: 250) == 120 && guardUnit.bar(after: 500) == 30)
    }

    /// The guard judges from a feature's 51st value: a 1e6 after 49 values is taken into the range,
    /// one after 50 (3,000 widths' bar, a million out) is a glitch, in batches that straddle the
    /// arming as well as sample by sample.
    @Test func theGuardJudgesOnceAFeatureHasShownFiftyValues() throws {
        var r = RandomSource(seed: 5)
        var x = (0..<(3 * 120)).map { _ in r.uniform() }
        x[3 * 49 + 0] = 1e6
        x[3 * 50 + 1] = 1e6
        let whole = Self.inspect(x, warmup: 500, chunk: 120)
        #expect(whole.found.map { [$0[0], $0[1]] } == [[50, 1]])
        #expect(whole.state[1][0] == 1e6 && whole.state[1][1] < 1, "the first taken in, the second not")
        for chunk in [1, 7, 45, 50, 51] {  // 45: the batch 45 to 89 straddles the arming; 7: 49 to 55
            let other = Self.inspect(x, warmup: 500, chunk: chunk)
            #expect(other.found == whole.found && other.state == whole.state, "batches of \(chunk)")
        }
    }

    /// A noisy stream (uniform in ±1) with a glitch of 1e4 at 800, a spike of +5 at 1500 and a level
    /// shift of +3 from 2000, through the daemon's whole pipeline at the defaults: the glitch alerts,
    /// naming itself, and every later reconstruction error is the one the stream gets with the glitch
    /// replaced by its previous value, so the spike and the shift alert as they do there. Without the guard
    /// (`glitch_ranges = 0`) the glitch took the normaliser's variance, the replay buffer, the range
    /// and the calibrations with it, and neither later incident alerted.
    @Test func aGlitchNeitherBlindsTheStreamNorChangesALaterScore() throws {
        try Self.checkRepaired(glitchAt: 800, alerts: true)
    }

    /// The same with a junk reading at the stream's 300th value, while it warms up (its range has 300
    /// values, the bar is 83 widths): replaced and counted as quarantined without an alert, and the
    /// stream is not blinded. Before the young bar the guard waited for 500 values and this one
    /// blinded the stream.
    @Test func aJunkReadingInAYoungStreamDoesNotBlindIt() throws {
        try Self.checkRepaired(glitchAt: 300, alerts: false)
    }

    /// The same with a burst of three junk readings at 800 to 802: each is replaced by the value
    /// before the burst, scores 1 and is counted, the first alerts (the rest are one incident with
    /// it), and the stream goes on as if they had not come. Before bursts were repaired the second was taken for a new level, and blinded it.
    @Test func aBurstOfJunkDoesNotBlindTheStream() throws {
        try Self.checkRepaired(glitchAt: 800, run: 3, alerts: true)
    }

    /// A 3-feature series through one guard (ranges 30) in batches of `chunk`: each glitch as
    /// (sample, feature, value, replacement), and the guard's state after it.
    static func inspect(_ x: [Float], warmup: Int, chunk: Int) -> (found: [[Float]], state: [[Float]]) {
        let g = GlitchGuard(dimension: 3, ranges: 30, warmup: warmup, window: 0)
        let total = x.count / 3
        var found: [[Float]] = []
        var start = 0
        while start < total {
            let n = min(chunk, total - start)
            x.withUnsafeBufferPointer { g.inspect($0.baseAddress! + 3 * start, count: n) }
            found += g.found.map { [Float(start + $0.sample), Float($0.feature), $0.value, $0.replacement] }
            start += n
        }
        return (found, [g.low, g.high, g.last, g.runs.map { Float($0) }, [Float(g.seen)]])
    }

    /// A glitch three samples after a spike's alert, inside the policy's repeat window, alerts all the
    /// same, naming itself: a value the stream does not learn is always reported.
    @Test func aGlitchAlertsWhateverTheRepeatCap() throws {
        var r = RandomSource(seed: 12)
        var values = (0..<1600).map { _ in r.uniform() * 2 - 1 }
        values[1500] += 5
        values[1503] = 1e4
        var run = OfflineRun(name: "g", settings: StreamConfiguration().resolved(dim: 1))
        let scores = values.map { v in
            var v = v
            return run.next(&v)
        }
        #expect(scores[1500].alert && scores[1500].glitch == nil, "the spike")
        #expect(scores[1503].alert && scores[1503].glitch?.value == 1e4, "the glitch, within the repeat window")
    }

    static func checkRepaired(glitchAt at: Int, run length: Int = 1, alerts: Bool) throws {
        var r = RandomSource(seed: 11)
        var clean = (0..<2400).map { _ in r.uniform() * 2 - 1 }
        clean[1500] += 5
        for t in 2000..<2400 { clean[t] += 3 }
        var glitched = clean
        for t in at..<(at + length) {
            glitched[t] = 1e4
            clean[t] = clean[at - 1]
        }
        let after = at + length

        func run(_ values: [Float], glitchRanges: Float) -> (scores: [SampleScore], quarantined: [UInt64]) {
            var settings = StreamConfiguration().resolved(dim: 1)
            settings.glitchRanges = glitchRanges
            var run = OfflineRun(name: "g", settings: settings)
            var quarantined: [UInt64] = []
            let scores = values.map { v in
                var v = v
                defer { quarantined.append(run.pipeline.quarantined) }
                return run.next(&v)
            }
            return (scores, quarantined)
        }
        let (repaired, kept) = run(glitched, glitchRanges: 30)
        let reference = run(clean, glitchRanges: 30).scores
        #expect(kept[at - 1] == 0 && kept[2399] == UInt64(length), "the glitches, and only they, are counted")
        // The first of a burst alerts, naming the glitch; every one of it scores 1, and the rest do
        // not alert again (one incident).
        let glitch = repaired[at]
        #expect(glitch.alert == alerts && glitch.warmingUp == !alerts)
        if alerts {
            #expect(glitch.beyondRange)
            #expect(glitch.glitch?.feature == 0 && glitch.glitch?.value == 1e4 && (glitch.glitch?.ranges ?? 0) > 1000)
            #expect(repaired[at..<after].allSatisfy { $0.score == 1 })
            #expect(!repaired[(at + 1)..<after].contains { $0.alert }, "a burst is one incident")
        }
        #expect(!reference[at..<after].contains { $0.alert })
        // The models saw the same values: the same errors, to the bit. (The signals' calibrations
        // learned one sample fewer, the glitch being anomalous, so scores may differ in the last digits.)
        #expect((after..<2400).allSatisfy { repaired[$0].error == reference[$0].error })
        #expect((after..<2400).allSatisfy { abs(repaired[$0].score - reference[$0].score) < 0.01 })
        #expect(repaired[1500].alert && reference[1500].alert, "the spike alerts")
        #expect(repaired[2000...2010].contains { $0.alert } && reference[2000...2010].contains { $0.alert }, "the shift alerts")

        let unguarded = run(glitched, glitchRanges: 0).scores
        #expect(unguarded[at].glitch == nil)
        #expect(!unguarded[1500].alert && !unguarded[2000...2010].contains { $0.alert }, "blinded without the guard")
    }

    /// A stream of `dim` features past every warm-up (no warm-up of its own, the range's after 10
    /// samples): 300 samples uniform in [0, 1) per feature, scored.
    static func warm(dim: Int, seed: UInt64) -> StreamPipeline {
        var settings = StreamConfiguration().resolved(dim: dim)
        settings.warmupSamples = 0
        settings.rangeWarmup = 10
        settings.warmupSteps = 0
        let p = StreamPipeline(name: "g", settings: settings)
        var r = RandomSource(seed: seed)
        let calm = (0..<(dim * 300)).map { _ in r.uniform() }
        _ = calm.withUnsafeBufferPointer { p.score($0.baseAddress!, count: 300, firstSequence: 0) }
        return p
    }

    /// On a sample where one feature has a glitch and another lies a little beyond its range, the
    /// alert is the glitch's (the range's excursion alone would wait for corroboration).
    @Test func aGlitchBesideARangeExcursionIsReportedAsTheGlitch() throws {
        let p = Self.warm(dim: 2, seed: 6)
        let s = p.score([1.2, 5e5], count: 1, firstSequence: 300).sample(0)
        #expect(s.alert && s.score == 1 && s.beyondRange)
        #expect(s.glitch?.feature == 1 && s.topFeatures.map(\.index) == [1])
    }

    /// The glitch alert on the wire names the signal and says why; a stream of several features
    /// names the feature.
    @Test func theAlertNamesTheGlitch() throws {
        let p = Self.warm(dim: 3, seed: 2)
        let batch = p.score([0.5, -2e6, 0.5], count: 1, firstSequence: 300)
        let s = batch.sample(0)
        #expect(s.alert && s.glitch?.feature == 1)
        let alert = Wire.alert(s, in: batch)
        #expect(alert.signal == "glitch" && alert.beyondRange)
        #expect(alert.reason.hasPrefix("feature 1's value -2000000.0 lies") && alert.reason.hasSuffix("not learned from"), "\(alert.reason)")
        #expect(alert.topFeatures.map(\.index) == [1])
    }
}
