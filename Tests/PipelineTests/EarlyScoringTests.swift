import Foundation
import Learning
import Pipeline
import Testing

/// The opt-in settings that score a stream sooner: `warmup_replay_ratio` and `window_padding`.
@Suite struct EarlyScoringTests {
    /// The first sample a stream judges warm (its warm-up over: it may alert), feeding one sample at
    /// a time and letting the trainer take every step owed.
    func firstWarm(_ settings: StreamConfiguration, values: (Int) -> [Float]) -> (first: Int?, steps: Int) {
        let p = StreamPipeline(name: "s", settings: settings)
        for t in 0..<700 {
            let scored = values(t).withUnsafeBufferPointer { p.score($0.baseAddress!, count: 1, firstSequence: UInt64(t)) }
            while p.trainStep() {}
            if !scored.warmingUp[0] { return (t, Int(p.status.autoencoderSteps)) }
        }
        return (nil, Int(p.status.autoencoderSteps))
    }

    /// With the warm-up's steps earned at 64 per batch, a sensor vector is scored from its 150th
    /// sample (`warmup_samples`) instead of about its 340th; no more than the warm-up's 30 steps come
    /// early: the trainer has then taken about 30 + 8 per 64 samples after, not 64 per 64.
    @Test func theWarmUpsStepsEarnedSoonerScoreAVectorFromItsHundredAndFiftiethSample() throws {
        var r = RandomSource(seed: 4)
        let rows = (0..<700).map { _ in [r.normal(), r.normal(), r.normal()] }
        var settings = StreamConfiguration().resolved(dim: 3)
        let usual = firstWarm(settings) { rows[$0] }
        settings.warmupReplayRatio = 64
        let sooner = firstWarm(settings) { rows[$0] }
        #expect((usual.first ?? 0) >= 320, "\(String(describing: usual.first))")
        let first = try #require(sooner.first)
        #expect(first == settings.warmupSamples - 1 || first == settings.warmupSamples, "\(first)")
        let expected = 30 + Double(first + 1 - 30) * 8 / 64
        #expect(abs(Double(sooner.steps) - expected) <= 2, "\(sooner.steps) steps by sample \(first), about \(expected) expected")
        // Only the warm-up's steps come at that rate: a frozen stream (replay_ratio 0) takes exactly
        // those, and none without the setting (its default follows replay_ratio).
        var frozen = StreamConfiguration().resolved(dim: 3)
        frozen.replayRatio = 0
        #expect(firstWarm(frozen) { rows[$0] } == (nil, 0))
        frozen.warmupReplayRatio = 64
        #expect(firstWarm(frozen) { rows[$0] }.steps == 30)
        #expect(throws: ConfigurationError.self) {
            var bad = StreamConfiguration().resolved(dim: 3)
            bad.warmupReplayRatio = -1
            try bad.validate(name: "s")
        }
        let parsed = try ConfigurationFile.parse("[stream]\nwarmup_replay_ratio = 64\nwindow_padding = true\n")
        #expect(parsed.streamDefaults.warmupReplayRatio == 64 && parsed.streamDefaults.windowPadding)
    }

    /// A padded window has a row from the window's 16th value on: the row a full history would give
    /// if every value before the first had been the first. With `warmup_replay_ratio` 64 as well, a
    /// univariate stream is scored from its 150th value instead of about its 467th.
    @Test func aPaddedWindowStartsOnceTheFinestScaleIsFull() throws {
        var shaper = WindowShaper(window: 4, scales: [1, 3], channels: 2, padded: true)
        #expect(shaper.firstRow == 4 && shaper.historyLength == 12)
        let values: [Float] = (0..<20).flatMap { [Float($0), 100 + Float($0 * $0)] }
        var rows = [Float](repeating: 0, count: 20 * shaper.rowWidth)
        var rowOf = [Int](repeating: -1, count: 20)
        let n = values.withUnsafeBufferPointer { v in
            rows.withUnsafeMutableBufferPointer { shaper.shape(v.baseAddress!, count: 20, into: $0.baseAddress!, rowOf: &rowOf) }
        }
        #expect(n == 17 && rowOf[2] == -1 && rowOf[3] == 0 && rowOf[19] == 16)
        for i in 3..<20 {
            // The history a full window would have read, the first sample standing in for the rest.
            let seen = Array(values[0..<(2 * (i + 1))])
            let padded = (0..<max(0, 12 - (i + 1))).flatMap { _ in Array(values[0..<2]) } + seen.suffix(24)
            var expected = [Float](repeating: 0, count: shaper.rowWidth)
            WindowShaper.windowRow(Array(padded.suffix(24)), window: 4, scales: [1, 3], channels: 2, into: &expected)
            #expect(Array(rows[(rowOf[i] * shaper.rowWidth)..<((rowOf[i] + 1) * shaper.rowWidth)]) == expected, "value \(i)")
        }

        var settings = StreamConfiguration().resolved(dim: 1)
        let wave: (Int) -> [Float] = { [sinf(Float($0) * 2 * .pi / 37)] }
        let usual = firstWarm(settings, values: wave)
        settings.windowPadding = true
        settings.warmupReplayRatio = 64
        let sooner = firstWarm(settings, values: wave)
        #expect((usual.first ?? 0) >= 440 && (sooner.first ?? .max) <= 150, "\(String(describing: usual.first)), \(String(describing: sooner.first))")
    }
}
