import EddyProtocol
import Foundation
import Learning
import Pipeline
import SwiftProtobuf
import Testing

/// `transform = log`: a stream's values are taken on a log scale before anything reads them.
@Suite struct InputTransformTests {
    @Test func theLogIsSignedAndKeepsTheOrderOfValues() {
        var v: [Float] = [0, 1, -1, Float(M_E) - 1, -(Float(M_E) - 1), 1e30, -3e38, 0.001]
        v.withUnsafeMutableBufferPointer { InputTransform.log.apply($0.baseAddress!, count: $0.count) }
        #expect(v[0] == 0 && abs(v[1] - logf(2)) < 1e-6 && v[2] == -v[1])
        #expect(abs(v[3] - 1) < 1e-6 && v[4] == -v[3])
        #expect(abs(v[5] - 69.0776) < 1e-3 && v[6].isFinite && v[6] < -88)
        #expect(abs(v[7] - 0.0009995) < 1e-7, "the identity near 0")
        let sorted: [Float] = [-1e6, -5, -0.5, 0, 0.25, 3, 1e4]
        let logged = InputTransform.log.applied(to: sorted)
        #expect(zip(logged, logged.dropFirst()).allSatisfy { $0 < $1 })
        #expect(InputTransform.none.applied(to: sorted) == sorted)
        // Within a few ulps of ln(1 + x) over 38 decades.
        let sweep = (0..<760).map { Float(pow(10, Double($0) / 20 - 8)) }
        let worst = zip(sweep, InputTransform.log.applied(to: sweep)).map { x, y in
            let exact = log1p(Double(x))
            return abs(Double(y) - exact) / exact
        }.max()!
        #expect(worst < 5e-7, "\(worst)")
    }

    /// A count-like stream: a daily cycle of counts with heavy-tailed bursts.
    static func counts(_ n: Int, seed: UInt64) -> [Float] {
        var r = RandomSource(seed: seed)
        return (0..<n).map { t in
            let rate = 200 * (1 + 0.5 * sinf(2 * .pi * Float(t) / 24))
            let burst: Float = r.uniform(0, 1) < 0.02 ? 1 + 20 * r.uniform(0, 1) * r.uniform(0, 1) : 1
            return (rate * burst * r.uniform(0.8, 1.2)).rounded()
        }
    }

    /// A univariate stream (windowed: its windows are of transformed values), or with `dim` 2 a
    /// stream of two channels (unwindowed: it takes labels).
    static func settings(_ transform: InputTransform, dim: Int = 1) -> StreamConfiguration {
        var s = StreamConfiguration()
        s.transform = transform
        s.batchSize = 16
        s.mocoQueue = 64
        s.univariateWindow = 8
        s.warmupSamples = 100
        s.rangeWarmup = 100
        s.warmupSteps = 5
        s.maxLabels = 40
        return s.resolved(dim: dim)
    }

    /// Two count channels, the second a day out of phase with the first.
    static func pairs(_ n: Int, seed: UInt64) -> [Float] {
        let a = counts(n + 12, seed: seed)
        return (0..<n).flatMap { [a[$0 + 12], a[$0] * 0.5] }
    }

    static func feed(_ p: StreamPipeline, _ x: [Float]) -> [SampleScore] {
        var out: [SampleScore] = []
        let d = p.sampleDimension
        for start in stride(from: 0, to: x.count / d, by: 50) {
            let part = Array(x[(start * d)..<min((start + 50) * d, x.count)])
            out += part.withUnsafeBufferPointer { p.score($0.baseAddress!, count: part.count / d, firstSequence: UInt64(start)).samples }
            while p.trainStep() {}
        }
        return out
    }

    /// Everything downstream sees the transformed values: a `log` stream (its windows, models and
    /// signals) scores and learns exactly as a plain stream fed the logarithms.
    @Test func aLogStreamIsAPlainStreamFedTheLogarithms() throws {
        let x = Self.counts(1200, seed: 3)
        let logged = InputTransform.log.applied(to: x)
        let transformed = StreamPipeline(name: "c", settings: Self.settings(.log))
        let plain = StreamPipeline(name: "c", settings: Self.settings(.none))
        let a = Self.feed(transformed, x), b = Self.feed(plain, logged)
        #expect(a == b)
        #expect(a.contains { !$0.warmingUp && $0.score > 0 })
        // Not the same as the raw values.
        let raw = Self.feed(StreamPipeline(name: "c", settings: Self.settings(.none)), x)
        #expect(zip(a, raw).filter { $0.error != $1.error }.count > 1000)
        #expect(transformed.takeSnapshots(now: 1).allSatisfy { $0.inputTransform == .log })
    }

    /// Labels are taken under the transform too: the head is the one fitted on the logarithms.
    @Test func labelsAreTransformedOnceAndSnapshotsSaySo() throws {
        let x = Self.pairs(800, seed: 4)
        let transformed = StreamPipeline(name: "c", settings: Self.settings(.log, dim: 2))
        let plain = StreamPipeline(name: "c", settings: Self.settings(.none, dim: 2))
        #expect(Self.feed(transformed, x) == Self.feed(plain, InputTransform.log.applied(to: x)))
        let labelled = Array(x[0..<40]), labels = (0..<20).map { $0 % 24 < 12 ? "day" : "night" }
        _ = transformed.addLabels(labelled, labels: labels)
        _ = plain.addLabels(InputTransform.log.applied(to: labelled), labels: labels)
        let snapshotA = try #require(transformed.takeSnapshots(now: 1).first { $0.kind == .moco })
        let snapshotB = try #require(plain.takeSnapshots(now: 1).first { $0.kind == .moco })
        let headA = try #require(snapshotA.head), headB = try #require(snapshotB.head)
        #expect(headA.weights == headB.weights && headA.mean == headB.mean)
        #expect(snapshotA.inputTransform == .log && snapshotB.inputTransform == .none)
        let message = Wire.message(snapshotA)
        #expect(message.inputTransform == .log && Wire.message(snapshotB).inputTransform == .none)
        // Field 24, varint 1 (tag 24 << 3 = 0xC0 0x01); absent for `none`, as proto3 leaves defaults out.
        let bytes: [UInt8] = try message.serializedBytes()
        let field: [UInt8] = [0xC0, 0x01, 0x01]
        let found = (0..<(bytes.count - 2)).contains { Array(bytes[$0..<($0 + 3)]) == field }
        #expect(found)
        #expect(try Eddy_V1_ModelSnapshot(serializedBytes: bytes).inputTransform == .log)
    }

    /// A checkpoint records the transform its state was learned under: restored under it, the stream
    /// is the same (its labels are not transformed twice); under another, it is refused.
    @Test func aCheckpointIsRestoredOnlyUnderItsOwnTransform() throws {
        let x = Self.pairs(600, seed: 5)
        let p = StreamPipeline(name: "c", settings: Self.settings(.log, dim: 2))
        _ = Self.feed(p, x)
        _ = p.addLabels(Array(x[0..<20]), labels: (0..<10).map { "\($0 % 2)" })
        let bytes = p.serialized()
        let restored = try StreamPipeline.restore(bytes, settings: Self.settings(.log, dim: 2))
        #expect(restored.serialized() == bytes)
        let next = Self.pairs(100, seed: 6)
        #expect(Self.feed(restored, next) == Self.feed(p, next))
        #expect { try StreamPipeline.restore(bytes, settings: Self.settings(.none, dim: 2)) } throws: {
            "\($0)".contains("learned under transform log, now none")
        }
        let plain = StreamPipeline(name: "c", settings: Self.settings(.none, dim: 2))
        _ = Self.feed(plain, x)
        #expect { try StreamPipeline.restore(plain.serialized(), settings: Self.settings(.log, dim: 2)) } throws: {
            "\($0)".contains("learned under transform none, now log")
        }
    }

    @Test func theSettingParsesAndALogStreamTakesNone() throws {
        let c = try ConfigurationFile.parse("[stream]\ntransform = log\n[stream.plain]\ntransform = none\n")
        #expect(c.streamDefaults.transform == .log)
        #expect(c.settings(for: "plain").transform == .none && c.settings(for: "other").transform == .log)
        #expect(DaemonConfiguration().streamDefaults.transform == .none)
        #expect { try ConfigurationFile.parse("[stream]\ntransform = sqrt") } throws: { "\($0)".contains("neither none nor log") }
        var logs = c.streamDefaults
        logs.log = true
        #expect(logs.resolved(dim: 1).transform == .none)
    }
}
