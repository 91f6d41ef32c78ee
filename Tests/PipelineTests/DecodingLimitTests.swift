import Foundation
@testable import Learning
@testable import Pipeline
import Testing

/// Sizes read from a checkpoint are held against the checkpoint (and the memory budget) before
/// anything of that size is allocated: inputs the checkpoint fuzz target found to abort the process.
@Suite struct DecodingLimitTests {
    func smallStream(dim: Int) -> StreamPipeline {
        var s = StreamConfiguration()
        s.bufferCapacity = 64
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

    @Test func countsBeyondTheInputAreRefused() throws {
        // A normaliser that claims a billion features in a few bytes.
        var w = StateWriter()
        w.write(UInt32(1 << 30)); w.write(UInt64(100)); w.write(UInt64(0))
        var r = StateReader(w.bytes)
        #expect(throws: StateError.self) { try Normaliser.decode(&r) }
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
}
