import EddyProtocol
import Foundation
@testable import Pipeline
import SwiftProtobuf
import Testing

/// `LineBatchWire` reads a LineBatch body as the generated decoder does, or declines.
@Suite struct LineWireTests {
    struct Generator {
        var seed: UInt64
        mutating func next() -> UInt64 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return seed >> 29
        }
        mutating func bytes(_ n: Int) -> Data { Data((0..<n).map { _ in UInt8(truncatingIfNeeded: next()) }) }
    }

    /// The generated decoder's reading of `body`, as the reader reports it.
    static func reference(_ body: [UInt8]) -> (Eddy_V1_LineBatch, [Data])? {
        guard var b = try? Eddy_V1_LineBatch(serializedBytes: body), !b.lines.isEmpty else { return nil }
        let lines = b.lines
        b.lines = []
        b.unknownFields = UnknownStorage()
        return (b, lines)
    }

    static func read(_ body: [UInt8]) -> (Eddy_V1_LineBatch, [Data])? {
        body.withUnsafeBufferPointer { frame in
            LineBatchWire.read(frame).map { read in (read.batch, read.lines.map { Data(frame[$0]) }) }
        }
    }

    @Test func agreesWithTheGeneratedDecoderOnRandomBatches() throws {
        var g = Generator(seed: 3)
        for round in 0..<400 {
            var b = Eddy_V1_LineBatch()
            if g.next() % 2 == 0 { b.stream = "s\(g.next() % 1000)" }
            if g.next() % 2 == 0 { b.sequence = g.next() << (g.next() % 30) }
            if g.next() % 2 == 0 { b.producer = "p-ü\(g.next() % 10)" }
            b.timestampsNs = (0..<Int(g.next() % 4)).map { _ in Int64(bitPattern: g.next() << 20) &- 1 }
            b.lines = (0..<Int(g.next() % 5)).map { _ in g.bytes(Int(g.next() % 40)) }
            var body: [UInt8] = try b.serializedBytes()
            // Fields no message has (numbers 13 to 20, each wire type), appended: skipped by both.
            for _ in 0..<Int(g.next() % 3) {
                let field = UInt8(13 + g.next() % 8)
                switch g.next() % 4 {
                case 0: body += [field << 3 | 0, 0x96, 0x01]
                case 1: body += [field << 3 | 1] + [UInt8](repeating: 7, count: 8)
                case 2: body += [field << 3 | 2, 3, 1, 2, 3]
                default: body += [field << 3 | 5, 1, 2, 3, 4]
                }
            }
            // Unpacked timestamps, which a decoder must take as well as packed ones.
            if round % 5 == 0 { body += [5 << 3 | 0, 0x2A] }
            let ours = Self.read(body), theirs = Self.reference(body)
            #expect(ours?.0 == theirs?.0 && ours?.1 == theirs?.1, "round \(round)")
            // Cut anywhere: the reader takes what the decoder takes, or declines.
            let cut = Array(body.prefix(Int(g.next() % UInt64(body.count + 1))))
            if let cutOurs = Self.read(cut) {
                let cutTheirs = try #require(Self.reference(cut), "round \(round): a cut body the decoder refuses")
                #expect(cutOurs.0 == cutTheirs.0 && cutOurs.1 == cutTheirs.1)
            }
        }
    }

    @Test func declinesWhatItDoesNotTakeAsItIs() {
        let line: [UInt8] = [8 << 3 | 2, 2, 0x68, 0x69]  // lines: "hi"
        #expect(Self.read(line)?.1 == [Data("hi".utf8)])
        #expect(Self.read([]) == nil)  // no lines: not a LineBatch
        #expect(Self.read(line + [8 << 3 | 0, 1]) == nil)  // lines as a varint
        #expect(Self.read(line + [3 << 3 | 2, 0]) == nil)  // SampleBatch.dim as bytes
        #expect(Self.read(line + [13 << 3 | 3, 13 << 3 | 4]) == nil)  // a group
        #expect(Self.read(line + [1 << 3 | 2, 1, 0xFF]) == nil)  // a stream name that is not UTF-8
        #expect(Self.read(line + [2 << 3 | 0] + [UInt8](repeating: 0xFF, count: 9) + [1])?.0.sequence == UInt64.max)
        #expect(Self.read(line + [2 << 3 | 0] + [UInt8](repeating: 0xFF, count: 9) + [2]) == nil)  // beyond 64 bits
        #expect(Self.read(line + [2 << 3 | 0] + [UInt8](repeating: 0xFF, count: 10) + [1]) == nil)  // an 11-byte varint
        #expect(Self.read(line + [0 << 3 | 0, 1]) == nil)  // field 0
        #expect(Self.read(line + [8 << 3 | 2, 5, 0x61]) == nil)  // a line longer than the body
        // SampleBatch's count and LabelBatch's fields, of their types, are skipped: the lines are
        // what counts. A body with `dim` or `values` is samples (SPEC 4.1), not plainly lines.
        #expect(Self.read([4 << 3 | 0, 1, 9 << 3 | 2, 0] + line)?.1 == [Data("hi".utf8)])
        #expect(Self.read([3 << 3 | 0, 1] + line) == nil)
        #expect(Self.read(line + [6 << 3 | 2, 0]) == nil)
    }
}
