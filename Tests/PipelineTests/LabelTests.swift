import EddyProtocol
import Foundation
import Learning
import Pipeline
import SwiftProtobuf
import Testing

@Suite struct LabelTests {
    static func labelFrames(_ stream: String, dim: Int, values: [Float], labels: [String]) throws -> [[UInt8]] {
        var m = Eddy_V1_LabelBatch()
        m.stream = stream
        m.dim = UInt32(dim)
        m.count = UInt32(labels.count)
        m.values = Wire.bytes(values)
        m.labels = labels
        return [Array(stream.utf8), try m.serializedBytes()]
    }

    /// A LabelBatch reaches an existing sample stream that takes labels, and only such a stream; it
    /// is never taken for samples (an older daemon would read a SampleBatch of count 0).
    @Test func labelsAreAdmittedToAStreamThatTakesThemAndRefusedElsewhere() throws {
        let c = DaemonConfiguration()
        var settings = StreamConfiguration()
        settings.maxLabels = 8
        let parts = StreamPipeline(name: "parts", settings: settings.resolved(dim: 3))
        let windowed = StreamPipeline(name: "temps", settings: settings.resolved(dim: 1))
        let plain = StreamPipeline(name: "plain", settings: StreamConfiguration().resolved(dim: 3))
        let streams = ["parts": parts, "temps": windowed, "plain": plain]
        func check(_ frames: [[UInt8]]) -> Admission {
            Admission.check(frames, configuration: c, lookup: { _, _, _ in .failure(.init(code: .notFound, why: "no")) },
                            existing: { streams[$0] })
        }
        guard case .labels(let s, let values, let labels) = check(try Self.labelFrames("parts", dim: 3, values: [1, 2, 3, 4, 5, 6], labels: ["a", "b"]))
        else {
            Issue.record("labels for a stream that takes them are admitted")
            return
        }
        #expect(s === parts && values == [1, 2, 3, 4, 5, 6] && labels == ["a", "b"])
        func code(_ frames: [[UInt8]]) -> Eddy_V1_ErrorCode? {
            if case .rejected(let code, _, _, _, _) = check(frames) { return code }
            return nil
        }
        #expect(code(try Self.labelFrames("nowhere", dim: 3, values: [1, 2, 3], labels: ["a"])) == .notFound)
        #expect(code(try Self.labelFrames("temps", dim: 1, values: [1], labels: ["a"])) == .wrongKind)
        #expect(code(try Self.labelFrames("plain", dim: 3, values: [1, 2, 3], labels: ["a"])) == .wrongKind)
        #expect(code(try Self.labelFrames("parts", dim: 2, values: [1, 2], labels: ["a"])) == .dimMismatch)
        #expect(code(try Self.labelFrames("parts", dim: 3, values: [1, 2, 3, 4, 5, 6], labels: ["a"])) == .undecodable)
        #expect(code(try Self.labelFrames("parts", dim: 3, values: [1, .nan, 3], labels: ["a"])) == .nonFinite)
        #expect(code(try Self.labelFrames("parts", dim: 3, values: [1, 2, 3], labels: ["a\u{7}"])) == .undecodable)
        // As a SampleBatch (what a daemon without labels reads): no samples in it.
        let asSamples = try Eddy_V1_SampleBatch(serializedBytes: try Self.labelFrames("parts", dim: 3, values: [1, 2, 3], labels: ["a"])[1])
        #expect(asSamples.count == 0 && asSamples.dim == 0 && asSamples.values.isEmpty)
    }

    /// Labels fit a head at the next MoCo snapshot, which carries it; the samples scored after it
    /// get classes from the encoder the head was fitted on; the oldest labels go beyond max_labels.
    @Test func aHeadIsFittedAtTheNextSnapshotAndClassesEveryLaterSample() throws {
        var settings = StreamConfiguration()
        settings.maxLabels = 30
        settings.warmupSamples = 50
        settings.rangeWarmup = 50
        let p = StreamPipeline(name: "parts", settings: settings.resolved(dim: 4))
        var r = RandomSource(seed: 9)
        let centres: [[Float]] = [[4, 0, 0, 0], [0, 4, 0, 0], [0, 0, 4, 0]]
        func sample(_ c: Int) -> [Float] { centres[c].map { $0 + r.uniform(-0.5, 0.5) } }
        var x: [Float] = []
        for i in 0..<600 { x += sample(i % 3) }
        _ = x.withUnsafeBufferPointer { p.score($0.baseAddress!, count: 600, firstSequence: 0) }
        while p.trainStep() {}
        #expect(p.takeSnapshots(now: 1).first { $0.kind == .moco }?.head == nil)
        #expect(!p.wantsHead)

        var labelled: [Float] = [], labels: [String] = []
        for i in 0..<36 {
            labelled += sample(i % 3)
            labels.append(["x", "y", "z"][i % 3])
        }
        #expect(p.addLabels(labelled, labels: labels) == 30, "the newest max_labels are kept")
        #expect(p.wantsHead)
        let moco = try #require(p.takeSnapshots(now: 2).first { $0.kind == .moco })
        let head = try #require(moco.head)
        #expect(moco.headLabels == 30 && head.classes == ["x", "y", "z"] && !p.wantsHead)
        #expect(Wire.message(moco).headClasses == ["x", "y", "z"] && Wire.message(moco).headWeights.shape == [UInt32(head.featureCount), 3])
        let saved = p.serialized()

        var test: [Float] = []
        for i in 0..<90 { test += sample(i % 3) }
        let scored = test.withUnsafeBufferPointer { p.score($0.baseAddress!, count: 90, firstSequence: 600) }
        #expect(scored.classes == ["x", "y", "z"] && scored.classVersion == moco.version && scored.classIndex.count == 90)
        let right = (0..<90).filter { Int(scored.classIndex[$0]) == $0 % 3 }.count
        #expect(right >= 85, "\(right) of 90")
        #expect(scored.classProbability.allSatisfy { $0 > 1.0 / 3 && $0 <= 1 })

        // The labels travel in checkpoints; the restored stream fits the same head at its first
        // snapshot (same encoder, normaliser and labels).
        var resolved = settings.resolved(dim: 4)
        let restored = try StreamPipeline.restore(saved, settings: resolved)
        #expect(restored.labelCount == 30 && restored.wantsHead)
        let again = try #require(restored.takeSnapshots(now: 3).first { $0.kind == .moco }?.head)
        #expect(again.classes == head.classes)
        #expect(zip(again.weights, head.weights).allSatisfy { abs($0 - $1) < 1e-5 })
        // A daemon whose setting shrank keeps the newest.
        resolved.maxLabels = 6
        #expect(try StreamPipeline.restore(saved, settings: resolved).labelCount == 6)
    }
}
