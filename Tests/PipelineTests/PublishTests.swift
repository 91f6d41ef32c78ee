import EddyProtocol
import Foundation
import Pipeline
import SwiftProtobuf
import Testing
import ZeroMQ

@Suite struct PublishTests {
    /// A run scored together is published in pieces of at most `Wire.scoresPerMessage` samples,
    /// contiguous and in order, each under the size the subscriber queue's bound assumes.
    @Test func longRunsArePublishedInBoundedPieces() throws {
        let daemon = try Daemon(configuration: testConfiguration(), logger: quietLogger)
        let endpoints = try daemon.start()
        defer { daemon.stop() }
        let client = try Client(endpoints)
        #expect(try client.awaitHeartbeat() != nil)
        let n = 2 * Wire.scoresPerMessage + 100
        try client.send(stream: "long", sequence: 0, dim: 2, values: values(2 * n, seed: 4))
        var pieces: [(first: UInt64, count: Int, bytes: Int)] = []
        _ = try client.receive(seconds: 10) { topic, body in
            if topic == "score/long/" {
                let m = try Eddy_V1_ScoreBatch(serializedBytes: body)
                #expect(m.scores.count == Int(m.count) && m.errors.count == Int(m.count) && m.alerts.count == Int(m.count))
                pieces.append((m.firstSequence, Int(m.count), body.count))
            }
            return pieces.reduce(0) { $0 + $1.count } >= n
        }
        #expect(pieces.map(\.first) == [0, UInt64(Wire.scoresPerMessage), UInt64(2 * Wire.scoresPerMessage)])
        #expect(pieces.map(\.count) == [Wire.scoresPerMessage, Wire.scoresPerMessage, 100])
        #expect(pieces.allSatisfy { $0.bytes <= Wire.largestScoreMessage })

        // Sequence numbers are the producer's and are not checked: a run that passes 2⁶⁴ wraps
        // around in the pieces' numbers (it used to trap the daemon on the second piece).
        let start = UInt64.max - 9, m = Wire.scoresPerMessage + 20
        try client.send(stream: "wrap", sequence: start, dim: 2, values: values(2 * m, seed: 5))
        var wrapped: [(first: UInt64, count: Int)] = []
        _ = try client.receive(seconds: 10) { topic, body in
            if topic == "score/wrap/" {
                let piece = try Eddy_V1_ScoreBatch(serializedBytes: body)
                wrapped.append((piece.firstSequence, Int(piece.count)))
            }
            return wrapped.reduce(0) { $0 + $1.count } >= m
        }
        #expect(wrapped.map(\.first) == [start, start &+ UInt64(Wire.scoresPerMessage)])
        #expect(wrapped.map(\.count) == [Wire.scoresPerMessage, 20])
        #expect(try client.awaitHeartbeat() != nil, "the daemon goes on")
    }

    @Test func theSubscriberQueueIsSizedInBytes() throws {
        var c = DaemonConfiguration()
        #expect(c.publishHighWaterMark == (128 << 20) / Wire.largestScoreMessage)
        c = try ConfigurationFile.parse("publish_queue_bytes = 16M\n")
        #expect(c.publishHighWaterMark * Wire.largestScoreMessage <= 16 << 20)
        #expect(throws: ConfigurationError.self) { try ConfigurationFile.parse("publish_queue_bytes = 1K\n") }
    }
}
