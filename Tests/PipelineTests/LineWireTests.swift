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

    /// Lines and timestamps beyond what a message may carry are counted, not kept: a body of empty
    /// lines (two bytes each) would otherwise cost eight times its size in ranges before its count
    /// was refused. Admission refuses it by its true count, and a batch within the limit is whole.
    @Test func countsWhatItDoesNotKeepAndAdmissionRefusesByTheCount() throws {
        let lines: [UInt8] = (0..<2000).map { $0 % 2 == 0 ? 8 << 3 | 2 : 0 }  // 1,000 empty lines
        let packed: [UInt8] = [5 << 3 | 2, 200, 1] + [UInt8](repeating: 7, count: 200)  // 200 timestamps
        let name: [UInt8] = [1 << 3 | 2, 3] + Array("app".utf8)
        let body: [UInt8] = name + packed + lines + [5 << 3 | 0, 9]  // 201 timestamps, one unpacked
        let read = try #require(body.withUnsafeBufferPointer { LineBatchWire.read($0, keep: 10) })
        #expect(read.lines.count == 10 && read.lineCount == 1000)
        #expect(read.batch.timestampsNs == [Int64](repeating: 7, count: 10) && read.timestampCount == 201)
        let whole = try #require(body.withUnsafeBufferPointer { LineBatchWire.read($0, keep: 1000) })
        #expect(whole.lines.count == 1000 && whole.batch.timestampsNs.count == 201 && whole.timestampCount == 201)

        var c = DaemonConfiguration()
        c.maxSamplesPerMessage = 10
        let verdict = Admission.check(
            [Array("app".utf8), body], configuration: c,
            lookup: { _, _, _ in .failure(.init(code: .notFound, why: "no stream is looked up")) })
        guard case .rejected(.oversized, let why, _, _, let samples) = verdict else {
            Issue.record("refused as OVERSIZED, got \(verdict)")
            return
        }
        #expect(why == "1000 lines exceed max_samples_per_message 10" && samples == 1000)
        // Within the limit, a timestamp count that differs from the lines' is still named whole.
        c.maxSamplesPerMessage = 1000
        guard case .rejected(.undecodable, let why2, _, _, _) = Admission.check(
            [Array("app".utf8), body], configuration: c, lookup: { _, _, _ in .failure(.init(code: .notFound, why: "no")) })
        else {
            Issue.record("201 timestamps for 1000 lines are undecodable")
            return
        }
        #expect(why2 == "201 timestamps for 1000 lines")
    }
}
