import Learning
import Pipeline
import Foundation
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

    @Test func aQuietStreamTakesItsIdleStepsAtTheRateAndStops() {
        let p = stream(rate: 8, passes: 2)
        send(p, 256)
        var owed = 0
        while p.trainStep() { owed += 1 }
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
        #expect(p.idleStepDue == nil, "steps are owed")
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

/// `publish_representations`: each scored sample's representation, by the trainer's latest MoCo
/// encoder, normalised as its score was.
@Suite struct RepresentationTests {
    @Test func eachSampleGetsTheTrainersLatestEncodersRepresentation() {
        var s = StreamConfiguration()
        s.mocoQueue = 128
        s.publishRepresentations = true
        let p = StreamPipeline(name: "rep", settings: s.resolved(dim: 4))
        func batch(_ n: Int, from: Int) -> [Float] { (from..<from + n).flatMap { i in (0..<4).map { Float(sin(Double(i) / 5 + Double($0))) } } }
        let a = batch(300, from: 0)
        let first = a.withUnsafeBufferPointer { p.score($0.baseAddress!, count: 300, firstSequence: 0) }
        #expect(first.representations.count == 300 * 64 && first.representationVersion == 0 && first.representationFirst == 0)
        while p.trainStep() {}
        let b = batch(50, from: 300)
        let second = b.withUnsafeBufferPointer { p.score($0.baseAddress!, count: 50, firstSequence: 300) }
        #expect(second.representationVersion == UInt64(p.moco.step) && p.moco.step > 0)
        // The trainer's MoCo embeds with the normaliser it last copied from the scorer: the same
        // statistics the batch was scored with.
        let expected = p.moco.embed(b)
        #expect(second.representations.count == expected.count)
        #expect(zip(second.representations, expected).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) })
        #expect(Set(second.representations.map { $0.bitPattern }).count > 50, "not a constant")
    }

    /// A MoCo weight turned NaN sends the models back; the representations that follow come from
    /// the weights gone back to (and say so), never from the poisoned ones.
    @Test func afterARollbackTheRepresentationsComeFromTheModelGoneBackTo() {
        var s = StreamConfiguration()
        s.mocoQueue = 128
        s.publishRepresentations = true
        let p = StreamPipeline(name: "rb", settings: s.resolved(dim: 4))
        func batch(_ n: Int, from: Int) -> [Float] { (from..<from + n).flatMap { i in (0..<4).map { Float(cos(Double(i) / 3 + Double($0))) } } }
        func score(_ n: Int, from: Int) -> ScoredBatch { batch(n, from: from).withUnsafeBufferPointer { p.score($0.baseAddress!, count: n, firstSequence: UInt64(from)) } }
        _ = score(600, from: 0)
        while p.trainStep() {}
        _ = p.takeSnapshots(now: 1)
        let good = p.moco.step
        _ = score(600, from: 600)
        while p.trainStep() {}
        let ahead = score(10, from: 1200).representationVersion
        #expect(ahead > UInt64(good))
        p.moco.loadQuery(from: FloatBuffer([Float](repeating: .nan, count: p.moco.parameterCount)))
        _ = score(64, from: 1210)
        #expect(p.trainStep())
        #expect(p.rollbacks == 1 && p.moco.step == good)
        let after = score(10, from: 1274)
        #expect(after.representationVersion == UInt64(good))
        #expect(after.representations.allSatisfy { $0.isFinite })
    }

    @Test func aWindowsFirstSamplesHaveNone() {
        var s = StreamConfiguration()
        s.mocoQueue = 128
        s.window = 8
        s.windowScales = [1]
        s.publishRepresentations = true
        let p = StreamPipeline(name: "w", settings: s.resolved(dim: 1))
        let x = (0..<20).map { Float($0) }
        let r = x.withUnsafeBufferPointer { p.score($0.baseAddress!, count: 20, firstSequence: 0) }
        #expect(r.representationFirst == 7 && r.representations.count == 13 * r.representationWidth)
        // Off by default.
        let off = StreamPipeline(name: "o", settings: StreamConfiguration().resolved(dim: 4))
        let scored = x.withUnsafeBufferPointer { off.score($0.baseAddress!, count: 5, firstSequence: 0) }
        #expect(scored.count == 5 && scored.representations.isEmpty && scored.representationWidth == 0)
    }
}
