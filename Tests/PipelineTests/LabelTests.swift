import EddyProtocol
import Foundation
import Learning
@testable import Pipeline
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
        // A windowed stream's labelled sample is the stretch its window reads (16 × 8 values).
        #expect(windowed.labelDimension == 128)
        #expect(code(try Self.labelFrames("temps", dim: 1, values: [1], labels: ["a"])) == .dimMismatch)
        guard case .labels(let t, _, _) = check(try Self.labelFrames("temps", dim: 128, values: [Float](repeating: 1, count: 128), labels: ["a"]))
        else {
            Issue.record("a windowed stream's labelled stretch is admitted")
            return
        }
        #expect(t === windowed)
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
        #expect(try p.addLabels(labelled, labels: labels).get() == 30, "the newest max_labels are kept")
        #expect(p.wantsHead)
        let before = Daemon.monotonic()
        let moco = try #require(p.takeSnapshots(now: 2).first { $0.kind == .moco })
        // The next fit at once waits as long as this one took (the trainer paces fits by it).
        #expect(p.headFitReady > before)
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

    /// A windowed stream takes a label for the stretch of series its window reads: the head is
    /// fitted on the rows the stream itself builds, and every later sample is classed by the window
    /// that ends at it.
    @Test func aWindowedStreamClassesEachSampleByTheWindowEndingAtIt() throws {
        var settings = StreamConfiguration()
        settings.maxLabels = 40
        settings.warmupSamples = 50
        settings.rangeWarmup = 50
        let p = StreamPipeline(name: "motor", settings: settings.resolved(dim: 1))
        let span = p.labelDimension
        #expect(span == 128 && p.inputDimension == 32)
        var r = RandomSource(seed: 4)
        // Two regimes: a slow sine (period 40) and a fast one (period 9), alternating in blocks.
        var t = 0
        func value(_ regime: Int) -> Float {
            t += 1
            let period: Float = regime == 0 ? 40 : 9
            return sin(2 * .pi * Float(t) / period) + r.uniform(-0.1, 0.1)
        }
        func block(_ regime: Int, _ n: Int) -> [Float] { (0..<n).map { _ in value(regime) } }
        var series: [Float] = []
        for b in 0..<12 { series += block(b % 2, 300) }
        _ = series.withUnsafeBufferPointer { p.score($0.baseAddress!, count: series.count, firstSequence: 0) }
        while p.trainStep() {}

        // Ten stretches from each regime, each ending inside a block, after a full window of it.
        var labelled: [Float] = [], labels: [String] = []
        for k in 0..<20 {
            let regime = k % 2
            let stretch = block(regime, span)
            labelled += stretch
            labels.append(regime == 0 ? "slow" : "fast")
        }
        #expect(try p.addLabels(labelled, labels: labels).get() == 20)
        let moco = try #require(p.takeSnapshots(now: 1).first { $0.kind == .moco })
        #expect(try #require(moco.head).classes == ["fast", "slow"])

        // The stream keeps the rows its own window would build: a stretch scored as samples gives
        // the row held for its label.
        let probe = StreamPipeline(name: "probe", settings: settings.resolved(dim: 1))
        _ = Array(labelled[0..<span]).withUnsafeBufferPointer { probe.score($0.baseAddress!, count: span, firstSequence: 0) }
        #expect(Array(p.labelledValues[0..<32]) == Self.row(try #require(probe.shaper)))

        // A multivariate window: the stretch holds its samples' channels together, as they arrive.
        var two = settings
        two.multivariateWindow = 4
        let pair = StreamPipeline(name: "pair", settings: two.resolved(dim: 2))
        #expect(pair.labelDimension == 4 * 8 * 2)
        let pairs = (0..<64).map { Float($0) }
        _ = pair.addLabels(pairs, labels: ["a"])
        let pairProbe = StreamPipeline(name: "pair", settings: two.resolved(dim: 2))
        _ = pairs.withUnsafeBufferPointer { pairProbe.score($0.baseAddress!, count: 32, firstSequence: 0) }
        #expect(pair.labelledValues == Self.row(try #require(pairProbe.shaper)))

        // New blocks of each regime: samples whose window lies inside one block are classed by it.
        var test: [Float] = [], truth: [Int] = []
        for b in 0..<4 {
            test += block(b % 2, 300)
            truth += [Int](repeating: b % 2, count: 300)
        }
        let scored = test.withUnsafeBufferPointer { p.score($0.baseAddress!, count: test.count, firstSequence: UInt64(series.count)) }
        #expect(scored.classIndex.count == test.count && scored.classVersion == moco.version)
        let slow = UInt32(scored.classes.firstIndex(of: "slow")!)
        var right = 0, judged = 0
        for i in test.indices where i % 300 >= span {
            judged += 1
            if (scored.classIndex[i] == slow) == (truth[i] == 0) { right += 1 }
        }
        #expect(Double(right) >= 0.95 * Double(judged), "\(right) of \(judged)")
    }

    static func row(_ shaper: WindowShaper) -> [Float] {
        var row = [Float](repeating: 0, count: shaper.rowWidth)
        row.withUnsafeMutableBufferPointer {
            WindowShaper.windowRow(shaper.history, window: shaper.window, scales: shaper.scales, channels: shaper.channels, into: $0.baseAddress!)
        }
        return row
    }

    /// From review: a stream's labels make at most `maximumClasses` classes (a batch beyond is
    /// refused whole, the labels held unchanged; classes that leave with the oldest labels make room);
    /// one large batch leaves no room held beyond max_labels; labels are classes as bytes, so
    /// canonically equivalent spellings stay two classes, as numpy's `unique` keeps them.
    @Test func labelsAreBoundedInClassesAndMemory() throws {
        var settings = StreamConfiguration()
        settings.maxLabels = 100
        let p = StreamPipeline(name: "c", settings: settings.resolved(dim: 2))
        let many = (0..<65).map { "class\($0)" }
        let tooMany = p.addLabels([Float](repeating: 0.5, count: 2 * 65), labels: many)
        #expect((try? tooMany.get()) == nil && p.labelCount == 0)
        if case .failure(let refusal) = tooMany { #expect(refusal.classes == 65 && "\(refusal)".contains("more than the 64")) }
        #expect(try p.addLabels([Float](repeating: 0.5, count: 2 * 64), labels: Array(many.prefix(64))).get() == 64)
        // A 65th class does not fit beside the 64 held, until enough of the oldest labels go.
        #expect((try? p.addLabels([0.5, 0.5], labels: ["new"]).get()) == nil && p.labelCount == 64)
        let fill = [String](repeating: "class63", count: 99)
        #expect(try p.addLabels([Float](repeating: 0.5, count: 2 * 100), labels: fill + ["new"]).get() == 100)
        #expect(Set(p.labels) == ["class63", "new"])
        // A checkpoint from before the cap, holding more classes: its labels are dropped at restore,
        // and the stream says why (the daemon logs it), rather than losing them without a word.
        p.lock.withLock {
            p.labels = many
            p.labelledValues = [Float](repeating: 0.5, count: 2 * 65)
        }
        let restored = try StreamPipeline.restore(p.serialized(), settings: p.settings)
        #expect(restored.labelCount == 0 && restored.labelsDropped?.contains("65 classes") == true)

        var small = StreamConfiguration()
        small.maxLabels = 16
        let q = StreamPipeline(name: "m", settings: small.resolved(dim: 4))
        let big = (0..<10_000).map { "\($0 % 2)" }
        #expect(try q.addLabels([Float](repeating: 1, count: 4 * 10_000), labels: big).get() == 16)
        #expect(q.labelledValues.capacity <= 2 * 16 * 4 && q.labels.capacity <= 2 * 16)

        let head = SoftmaxHead.fit(features: [0, 1], labels: ["\u{E9}", "e\u{301}"])
        #expect(head.classCount == 2)
    }
}
