import Pipeline
import Testing

/// A stream that goes quiet keeps learning from its buffer: at most `idle_steps_per_second`, for
/// `idle_passes` passes over the buffer after its last batch, and never instead of an owed step.
@Suite struct IdleTrainingTests {
    func stream(rate: Double, passes: Double) -> StreamPipeline {
        var s = StreamConfiguration()
        s.mocoQueue = 128
        s.idleStepsPerSecond = rate
        s.idlePasses = passes
        return StreamPipeline(name: "quiet", settings: s.resolved(dim: 4))
    }

    func send(_ p: StreamPipeline, _ n: Int, from: Int = 0) {
        let x = (from..<from + n).flatMap { i in (0..<4).map { Float(i % 50) * 0.1 + Float($0) } }
        x.withUnsafeBufferPointer { _ = p.score($0.baseAddress!, count: n, firstSequence: UInt64(from)) }
    }

    /// From review: steps skipped at the cap are counted whole, their fractions carried. A stream of
    /// single samples owes an eighth of a step each, and every fraction was dropped: a trainer at the
    /// cap skipped nearly every step while `skipped_steps` stayed 0.
    @Test func stepsSkippedOneSampleAtATimeAreCounted() {
        var s = StreamConfiguration()
        s.mocoQueue = 128
        s.maximumPendingSteps = 1
        let p = StreamPipeline(name: "single", settings: s.resolved(dim: 4))
        for i in 0..<809 { send(p, 1, from: i) }
        #expect(p.status.pendingSteps == 1)
        #expect(p.skippedSteps == 100, "809 × 0.125 = 101.125 earned, 1 owed: \(p.skippedSteps)")
    }

    @Test func aQuietStreamTakesItsIdleStepsAtTheRateAndStops() {
        let p = stream(rate: 8, passes: 2)
        send(p, 256)
        #expect(p.status.pendingSteps == 32, "the heartbeat says what the trainer owes")
        var owed = 0
        while p.trainStep() {
            owed += 1
            #expect(p.status.pendingSteps == UInt64(32 - owed))
        }
        #expect(owed == 32)  // 256 samples × replay_ratio 8 / batch 64
        #expect(p.idleStepDue != nil)
        // Due every 1/8 s of the trainer's clock: a call sooner is refused.
        #expect(p.trainStep(idle: 100))
        #expect(!p.trainStep(idle: 100.1))
        #expect(p.idleStepDue == 100.125)
        var t = 100.125, taken = 1
        while p.trainStep(idle: t) {
            taken += 1
            t += 0.125
        }
        // Two passes over 256 buffered samples in batches of 64: 8 steps, then none.
        #expect(taken == 8 && p.idleStepDue == nil && p.status.idleSteps == 8, "\(taken) \(String(describing: p.idleStepDue)) \(p.status.idleSteps) \(p.status.buffered)")
        #expect(p.autoencoder.step == 40 && p.moco.step == 40)
        // A new batch grants the passes again; owed steps come first.
        send(p, 64, from: 256)
        #expect(p.idleStepDue == nil && p.status.pendingSteps == 8, "steps are owed")
        while p.trainStep() {}
        #expect(p.idleStepDue != nil && p.trainStep(idle: t + 1))
    }

    @Test func offByDefault() {
        let p = StreamPipeline(name: "d", settings: StreamConfiguration().resolved(dim: 4))
        send(p, 256)
        while p.trainStep() {}
        #expect(p.idleStepDue == nil && !p.trainStep(idle: 1e9))
    }
}
