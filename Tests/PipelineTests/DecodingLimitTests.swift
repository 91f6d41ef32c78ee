import Foundation
@testable import Learning
@testable import Pipeline
import Testing

/// Sizes read from a checkpoint are held against the checkpoint (and the memory budget) before
/// anything of that size is allocated: inputs the checkpoint fuzz target found to abort the process.
@Suite struct DecodingLimitTests {
    func smallStream(dim: Int, bufferCapacity: Int = 64) -> StreamPipeline {
        var s = StreamConfiguration()
        s.bufferCapacity = bufferCapacity
        s.autoencoderHidden = [8, 4, 8]
        s.mocoEncoder = [8]
        s.mocoHead = [4]
        s.mocoQueue = 64
        return StreamPipeline(name: "s", settings: s.resolved(dim: dim))
    }

    /// The offset of the stream's dim in its serialized state (after kind, format and name).
    func dimOffset(_ stream: StreamPipeline) -> Int {
        var w = StateWriter()
        w.write(StreamPipeline.kind); w.write(StreamPipeline.formatVersion); w.write(stream.name)
        return w.bytes.count
    }

    @Test func aStreamOfAHugeDimIsRefusedBeforeItIsBuilt() throws {
        let stream = smallStream(dim: 3)
        var bytes = stream.serialized()
        let at = dimOffset(stream)
        for dim: UInt32 in [1 << 20, UInt32.max, 0] {
            withUnsafeBytes(of: dim.littleEndian) { for i in 0..<4 { bytes[at + i] = $0[i] } }
            #expect(throws: StateError.self) { try StreamPipeline.restore(bytes, settings: stream.settings, maxBytes: 1 << 30) }
        }
        // The original restores, unless the budget is smaller than it.
        let original = stream.serialized()
        #expect(try StreamPipeline.restore(original, settings: stream.settings).sampleDimension == 3)
        #expect { try StreamPipeline.restore(original, settings: stream.settings, maxBytes: 1 << 10) } throws: {
            "\($0)".contains("would take")
        }
    }

    /// A model's working memory, which restore holds against the budget before building it, is
    /// within what its stream is charged: a stream that fits the budget is never refused for it.
    @Test(arguments: [1, 8, 600])
    func aStreamsModelsWorkWithinItsCharge(dim: Int) throws {
        var mixed = StreamConfiguration()
        mixed.mocoMix = 0.25
        for settings in [StreamConfiguration(), mixed] {
            let s = settings.resolved(dim: dim)
            let stream = StreamPipeline(name: "s", settings: s)
            let working = Autoencoder.workingBytes(stream.autoencoder.configuration) + MoCo.workingBytes(stream.moco.configuration)
            #expect(working < s.memoryEstimate)
            let restored = try StreamPipeline.restore(stream.serialized(), settings: s, maxBytes: s.memoryEstimate)
            #expect(restored.sampleDimension == dim)
        }
    }

    /// From review: a checkpoint whose CRC is right but which holds a value no signal can compute
    /// with (NaN, an infinity, a negative variance, a random state of zeros) is refused. A NaN in the
    /// window history made every later score NaN and the trainer roll back at every step.
    @Test func valuesNoSignalCanComputeWithAreRefused() throws {
        func refused(_ encode: (inout StateWriter) -> Void, _ decode: (inout StateReader) throws -> Void) -> Bool {
            var w = StateWriter()
            encode(&w)
            var r = StateReader(w.bytes)
            return (try? decode(&r)) == nil
        }
        var calibrator = Calibrator(horizon: 100, holdOff: 10)
        for x: Float in [0.1, 0.3, 0.2] {
            _ = calibrator.score(logError: x)
            calibrator.update(logError: x)
        }
        #expect(!refused(calibrator.encode) { _ = try Calibrator.decode(&$0) })
        for spoil: (inout Calibrator) -> Void in [{ $0.mean = .nan }, { $0.variance = -1 }, { $0.variance = .infinity }] {
            var bad = calibrator
            spoil(&bad)
            #expect(refused(bad.encode) { _ = try Calibrator.decode(&$0) })
        }
        var nanSurprise = calibrator
        nanSurprise.remember(.nan)
        #expect(refused(nanSurprise.encode) { _ = try Calibrator.decode(&$0) })

        var shaper = WindowShaper(window: 4, scales: [1])
        shaper.history = [1, 2, 3]
        #expect(!refused(shaper.encode) { try shaper.decode(&$0, version: 1) })
        shaper.history = [1, .nan, 3]
        #expect(refused(shaper.encode) { try shaper.decode(&$0, version: 1) })

        let buffer = ReplayBuffer(dimension: 2, capacity: 8)
        _ = [Float](repeating: 1, count: 8).withUnsafeBufferPointer { buffer.insert($0.baseAddress!, rows: 4) }
        #expect(!refused(buffer.encode) { _ = try ReplayBuffer.decode(&$0) })
        buffer.rows.pointer[1] = .infinity
        #expect(refused(buffer.encode) { _ = try ReplayBuffer.decode(&$0) })

        #expect(refused({ w in for _ in 0..<4 { w.write(UInt64(0)) }; w.write(false); w.write(Float(0)) }) {
            _ = try $0.read(RandomSource.self)
        })
    }

    @Test func countsBeyondTheInputAreRefused() throws {
        // A normaliser that claims a billion features in a few bytes.
        var w = StateWriter()
        w.write(UInt32(1 << 30)); w.write(UInt64(100)); w.write(UInt64(0))
        var r = StateReader(w.bytes)
        #expect(throws: StateError.self) { try Normaliser.decode(&r, dimension: 1 << 30) }
        // A step count beyond Int converts to an error, not a trap.
        var big = StateWriter()
        big.write(UInt64.max)
        var rb = StateReader(big.bytes)
        #expect(throws: StateError.self) { try rb.readInt() }
        // A replay buffer whose rows cannot all follow.
        var b = StateWriter()
        b.write(UInt32(1 << 16)); b.write(UInt32(1 << 16)); b.write(UInt32(1 << 15))
        var rr = StateReader(b.bytes)
        #expect(throws: StateError.self) { try ReplayBuffer.decode(&rr) }
        // Sizes whose product overflows an Int (the fuzzer's input) are refused the same way.
        var o = StateWriter()
        o.write(UInt32.max); o.write(UInt32.max); o.write(UInt32(1 << 31))
        var ro = StateReader(o.bytes)
        #expect(throws: StateError.self) { try ReplayBuffer.decode(&ro) }
    }

    /// The offset of the stream's counters (accepted, rejected, skipped, pending steps, two snapshot
    /// versions) in its serialized state; its normaliser follows them.
    func countersOffset(_ bytes: [UInt8]) throws -> Int {
        var r = StateReader(bytes)
        _ = try r.read(String.self); _ = try r.read(UInt32.self); _ = try r.read(String.self)
        _ = try r.read(UInt32.self); _ = try r.read(UInt32.self)
        for _ in 0..<(try r.read(UInt32.self)) { _ = try r.read(UInt32.self) }
        _ = try r.read(Bool.self)
        _ = try r.readBlob(); _ = try r.readBlob()
        return r.offset
    }

    func trainedStream() -> StreamPipeline {
        let stream = smallStream(dim: 3)
        let x = (0..<300).map { Float(sin(Double($0) / 5)) }
        _ = x.withUnsafeBufferPointer { stream.score($0.baseAddress!, count: 100, firstSequence: 0) }
        return stream
    }

    /// A checkpoint whose counters could not have been reached (one a step from overflowing, a
    /// pending step count that is not a number) is invalid state, not a trap at the next sample;
    /// a pending count above today's maximum (a setting lowered) is cut to it.
    @Test func countersNoStreamReachesAreRefused() throws {
        let stream = trainedStream()
        let original = stream.serialized()
        let at = try countersOffset(original)
        func with(_ value: UInt64, at field: Int) -> [UInt8] {
            var bytes = original
            withUnsafeBytes(of: value.littleEndian) { for i in 0..<8 { bytes[at + 8 * field + i] = $0[i] } }
            return bytes
        }
        for field in [0, 1, 4, 5] {
            #expect(throws: StateError.self) { try StreamPipeline.restore(with(UInt64.max, at: field), settings: stream.settings) }
            #expect(throws: StateError.self) { try StreamPipeline.restore(with(1 << 62 + 1, at: field), settings: stream.settings) }
        }
        #expect(try StreamPipeline.restore(with(1 << 62, at: 0), settings: stream.settings).accepted == 1 << 62)
        // Steps skipped are a statistic, added to with wrap-around: beyond the bound it is kept at it.
        #expect(try StreamPipeline.restore(with(UInt64.max, at: 2), settings: stream.settings).skippedSteps == 1 << 62)
        for pending in [Double.nan, -.infinity, .infinity, -1] {
            #expect(throws: StateError.self) { try StreamPipeline.restore(with(pending.bitPattern, at: 3), settings: stream.settings) }
        }
        let capped = try StreamPipeline.restore(with(Double(1e300).bitPattern, at: 3), settings: stream.settings)
        #expect(capped.pendingSteps == stream.settings.maximumPendingSteps)
        #expect(capped.status.pendingSteps == UInt64(stream.settings.maximumPendingSteps))
    }

    /// A normaliser of another width than the stream's, or with a statistic that is not a finite
    /// number (a variance below zero), is refused: copying it into the stream's would trap.
    @Test func aNormaliserThatDoesNotFitTheStreamIsRefused() throws {
        let stream = trainedStream()
        let original = stream.serialized()
        let at = try countersOffset(original) + 6 * 8
        #expect(try StreamPipeline.restore(original, settings: stream.settings).live.means == stream.live.means)
        for dim: UInt32 in [2, 4] {
            var bytes = original
            withUnsafeBytes(of: dim.littleEndian) { for i in 0..<4 { bytes[at + i] = $0[i] } }
            #expect { try StreamPipeline.restore(bytes, settings: stream.settings) } throws: { "\($0)".contains("normaliser of \(dim) features") }
        }
        // Its first mean after dimension, horizon, count and the means' length; the first variance
        // after the three means and the variances' length.
        for (offset, value) in [(28, Float.nan), (28, .infinity), (28 + 12 + 8, -1), (28 + 12 + 8, .nan)] {
            var bytes = original
            withUnsafeBytes(of: value.bitPattern.littleEndian) { for i in 0..<4 { bytes[at + offset + i] = $0[i] } }
            #expect { try StreamPipeline.restore(bytes, settings: stream.settings) } throws: { "\($0)".contains("normaliser statistics") }
        }
    }

    /// A stream of values near the largest `max_abs_value` allows (1e30) overflows its variances to
    /// +∞ (its scale is then 0): the checkpoint it writes restores, with the same statistics.
    @Test func aStreamOfHugeValuesRestores() throws {
        let stream = smallStream(dim: 3)
        let x: [Float] = (0..<300).map { i in
            let sign: Float = i % 2 == 0 ? 1 : -1
            return sign * 1e30 * Float(1 + i % 3) / 3
        }
        _ = x.withUnsafeBufferPointer { stream.score($0.baseAddress!, count: 100, firstSequence: 0) }
        #expect(stream.live.variances.contains(.infinity))
        let restored = try StreamPipeline.restore(stream.serialized(), settings: stream.settings)
        #expect(restored.live.variances == stream.live.variances)
        #expect(restored.live.means == stream.live.means)
        let range = try #require(stream.chain.signal(RangeSignal.self))
        #expect((0..<3).allSatisfy { !range.variance($0).isNaN }, "one sample's variance is 0, not 0 · ∞")
    }
}
