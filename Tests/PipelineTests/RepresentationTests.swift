import Foundation
import Learning
import Pipeline
import Testing

/// `publish_representations`: each scored sample's representation, by the trainer's latest MoCo
/// encoder, normalised as its score was.
@Suite struct RepresentationTests {
    /// A stream of `dim` that publishes representations (a small queue: these streams are short).
    func representing(dim: Int, window: Int = 0) -> StreamPipeline {
        var s = StreamConfiguration()
        s.mocoQueue = 128
        s.publishRepresentations = true
        if window > 0 {
            s.window = window
            s.windowScales = [1]
        }
        return StreamPipeline(name: "rep", settings: s.resolved(dim: dim))
    }

    @Test func eachSampleGetsTheTrainersLatestEncodersRepresentation() {
        let p = representing(dim: 4)
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
        let p = representing(dim: 4)
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
        let p = representing(dim: 1, window: 8)
        let x = (0..<20).map { Float($0) }
        let r = x.withUnsafeBufferPointer { p.score($0.baseAddress!, count: 20, firstSequence: 0) }
        #expect(r.representationFirst == 7 && r.representations.count == 13 * r.representationWidth)
        // Off by default.
        let off = StreamPipeline(name: "o", settings: StreamConfiguration().resolved(dim: 4))
        let scored = x.withUnsafeBufferPointer { off.score($0.baseAddress!, count: 5, firstSequence: 0) }
        #expect(scored.count == 5 && scored.representations.isEmpty && scored.representationWidth == 0)
    }
}
