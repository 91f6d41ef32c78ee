import EddyProtocol
import Foundation
import Learning
import Logging
import Pipeline
import SwiftProtobuf
import Testing
import ZeroMQ

/// A daemon on 127.0.0.1 with OS-chosen ports and a fresh data directory, small enough to train fast.
func testConfiguration(dataDirectory: String = "") -> DaemonConfiguration {
    var c = DaemonConfiguration()
    c.ingest = "tcp://127.0.0.1:*"
    c.publish = "tcp://127.0.0.1:*"
    c.snapshots = "tcp://127.0.0.1:*"
    c.http = "127.0.0.1:0"
    c.dataDirectory = dataDirectory
    c.heartbeatSeconds = 0.1
    c.snapshotEverySteps = 20
    c.snapshotEverySeconds = 0.5
    c.streamDefaults.batchSize = 16
    c.streamDefaults.minimumBuffered = 16
    c.streamDefaults.bufferCapacity = 512
    c.streamDefaults.mocoQueue = 64
    c.streamDefaults.univariateWindow = 8
    c.streamDefaults.warmupSamples = 50
    c.streamDefaults.rangeWarmup = 50
    c.streamDefaults.warmupSteps = 5
    return c
}

func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "eddy-test-" + UUID().uuidString
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

var quietLogger: Logger {
    var l = Logger(label: "eddy.test")
    l.logLevel = .critical
    return l
}

/// The producer and subscriber side of a test, on real sockets.
struct Client: ~Copyable {
    let context: Context
    let push: Socket
    let sub: Socket

    /// With `curve`, both sockets are CURVE clients of the server key with the given key pair.
    init(_ endpoints: Daemon.Endpoints, curve: (server: String, keys: CurveKeyPair)? = nil) throws {
        let context = try Context()
        let push = try Socket(context, .push)
        let sub = try Socket(context, .sub)
        if let curve {
            try push.makeCurveClient(serverKey: curve.server, keys: curve.keys)
            try sub.makeCurveClient(serverKey: curve.server, keys: curve.keys)
        }
        try push.connect(endpoints.ingest)
        try sub.subscribe("")
        try sub.connect(endpoints.publish)
        self.context = context
        self.push = push
        self.sub = sub
    }

    /// Sends one batch; false if the socket's send timeout passed first.
    @discardableResult
    func send(stream: String, sequence: UInt64, dim: Int, values: [Float]) throws -> Bool {
        var batch = Eddy_V1_SampleBatch()
        batch.stream = stream
        batch.sequence = sequence
        batch.dim = UInt32(dim)
        batch.count = UInt32(values.count / dim)
        batch.values = Wire.bytes(values)
        return try push.send([Array(stream.utf8), try batch.serializedBytes()])
    }

    func sendRaw(_ frames: [[UInt8]]) throws { try push.send(frames) }

    /// Receives published messages until `done` says so or `seconds` pass; true if `done`.
    func receive(seconds: Double, _ done: (String, [UInt8]) throws -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            guard try sub.poll(timeout: 50) else { continue }
            while let frames = try sub.receive(dontWait: true) {
                if frames.count == 2, try done(String(decoding: frames[0], as: UTF8.self), frames[1]) { return true }
            }
        }
        return false
    }

    /// Waits for a heartbeat, so that the subscription is in place before traffic starts.
    func awaitHeartbeat() throws -> Eddy_V1_Heartbeat? {
        var hb: Eddy_V1_Heartbeat?
        _ = try receive(seconds: 5) { topic, body in
            if topic == "hb/" { hb = try Eddy_V1_Heartbeat(serializedBytes: body) }
            return hb != nil
        }
        return hb
    }
}

func values(_ n: Int, seed: Int) -> [Float] {
    (0..<n).map { i in sinf(Float(i + seed) * 0.37) + 0.1 * cosf(Float(i * 7 + seed)) }
}

@Suite(.serialized) struct DaemonTests {
    /// A heartbeat too large for one message (SPEC 7, 9) goes in parts, each within the bound a
    /// subscriber's queue is sized by, with the same counters: together they list every stream once.
    @Test func aHeartbeatOfManyStreamsGoesInPartsEachWithinTheBound() throws {
        var c = testConfiguration()
        c.maxStreams = 100
        c.maxStreamNameBytes = 256
        c.heartbeatSeconds = 0.2
        let daemon = try Daemon(configuration: c, logger: quietLogger)
        let endpoints = try daemon.start()
        defer { daemon.stop() }
        let client = try Client(endpoints)
        #expect(try client.awaitHeartbeat()?.parts == 1)
        let names = (0..<100).map { i in String(repeating: "s", count: 250) + String(format: "%06d", i) }
        for name in names { _ = try client.send(stream: name, sequence: 0, dim: 1, values: [1]) }
        #expect(eventually(10) { daemon.samplesAccepted.load == 100 })

        // The parts of one heartbeat, gathered by its time.
        var parts: [UInt64: [Int: Eddy_V1_Heartbeat]] = [:]
        var largest = 0
        var whole: [Eddy_V1_Heartbeat]?
        _ = try client.receive(seconds: 10) { topic, body in
            guard topic == "hb/" else { return false }
            let hb = try Eddy_V1_Heartbeat(serializedBytes: body)
            largest = max(largest, body.count)
            guard hb.samplesAccepted == 100 else { return false }
            parts[UInt64(hb.timeNs), default: [:]][Int(hb.part)] = hb
            let got = parts[UInt64(hb.timeNs)]!
            guard got.count == Int(hb.parts) else { return false }
            whole = (0..<Int(hb.parts)).compactMap { got[$0] }
            return true
        }
        let heartbeat = try #require(whole)
        #expect(heartbeat.count >= 2 && heartbeat.count == Int(heartbeat[0].parts))
        #expect(largest <= Wire.largestScoreMessage && largest > Wire.largestScoreMessage / 2)
        #expect(heartbeat.flatMap { $0.streams.map(\.stream) } == names)
        #expect(Set(heartbeat.map { "\($0.timeNs) \($0.uptimeMs) \($0.samplesAccepted) \($0.trainSteps)" }).count == 1)
        #expect(heartbeat.allSatisfy { $0.streams.allSatisfy { $0.accepted == 1 && $0.dim == 1 } })
    }

    @Test func twoStreamsGetOneScorePerSampleASnapshotAndHeartbeats() throws {
        let daemon = try Daemon(configuration: testConfiguration(), logger: quietLogger)
        let endpoints = try daemon.start()
        defer { daemon.stop() }
        #expect(endpoints.ingest.hasPrefix("tcp://127.0.0.1:") && !endpoints.ingest.hasSuffix(":*"))
        let client = try Client(endpoints)
        #expect(try client.awaitHeartbeat() != nil)

        // Stream "pumps": 8 sensors in batches of 25; stream "temp": univariate, windowed by 8.
        var sentPumps = 0, sentTemp = 0
        for b in 0..<40 {
            try client.send(stream: "pumps", sequence: UInt64(sentPumps), dim: 8, values: values(25 * 8, seed: b))
            sentPumps += 25
            try client.send(stream: "temp", sequence: UInt64(1000 + sentTemp), dim: 1, values: values(10, seed: b))
            sentTemp += 10
        }
        var seen: [String: [UInt64]] = ["pumps": [], "temp": []]
        var snapshot: Eddy_V1_ModelSnapshot?
        var tempSnapshots: Set<String> = []
        var warmingTemp = 0
        let complete = try client.receive(seconds: 30) { topic, body in
            if topic.hasPrefix("score/") {
                let batch = try Eddy_V1_ScoreBatch(serializedBytes: body)
                #expect(topic == "score/\(batch.stream)/")
                #expect(batch.scores.count == Int(batch.count) && batch.errors.count == Int(batch.count))
                seen[batch.stream, default: []] += (0..<UInt64(batch.count)).map { batch.firstSequence + $0 }
                if batch.stream == "temp" {
                    warmingTemp += zip(batch.warmingUp, batch.errors).filter { $0.0 && $0.1 == 0 }.count
                }
                for s in batch.scores { #expect(s >= 0 && s <= 1) }
            } else if topic == "snapshot/pumps/autoencoder/" {
                snapshot = try Eddy_V1_ModelSnapshot(serializedBytes: body)
            } else if topic.hasPrefix("snapshot/temp/") {
                tempSnapshots.insert(topic)
            }
            return seen["pumps"]!.count >= sentPumps && seen["temp"]!.count >= sentTemp && snapshot != nil
                && tempSnapshots.count == 2
        }
        #expect(complete)
        #expect(seen["pumps"] == (0..<UInt64(sentPumps)).map { $0 }, "every pumps sample scored once, in order")
        #expect(seen["temp"] == (1000..<UInt64(1000 + sentTemp)).map { $0 })
        // Window 8 at scales [1, 8]: the first 63 values have no input yet.
        let temp = testConfiguration().settings(for: "temp").resolved(dim: 1)
        #expect(temp.window == 8 && temp.windowScales == [1, 8])
        #expect(warmingTemp == temp.historyLength - 1, "the values before the first full history have no window")

        let s = try #require(snapshot)
        #expect(s.kind == .autoencoder && s.stream == "pumps" && s.inputDim == 8 && s.version > 0)
        #expect(s.tensors.map(\.name) == (0..<4).flatMap { ["layers.\($0).weight", "layers.\($0).bias"] })
        #expect(s.tensors[0].shape == [64, 8] && s.tensors[6].shape == [8, 64])
        #expect(s.activations == [.relu, .relu, .relu, .identity])
        #expect(s.checksum == CRC32.checksumOfTensors(s))

        // A late subscriber asks for the latest snapshot of each model.
        let req = try Socket(client.context, .req)
        try req.setReceiveTimeout(milliseconds: 5000)
        try req.connect(endpoints.snapshots)
        for kind in [Eddy_V1_ModelKind.autoencoder, .moco] {
            var request = Eddy_V1_SnapshotRequest()
            request.stream = "temp"
            request.kind = kind
            try req.send([try request.serializedBytes()])
            let reply = try Eddy_V1_SnapshotReply(serializedBytes: try #require(try req.receive())[0])
            #expect(reply.snapshot.kind == kind && reply.snapshot.inputDim == 16 && reply.snapshot.window == 8)
            #expect(reply.snapshot.windowScales == [1, 8])
        }
        var missing = Eddy_V1_SnapshotRequest()
        missing.stream = "nope"
        try req.send([try missing.serializedBytes()])
        let reply = try Eddy_V1_SnapshotReply(serializedBytes: try #require(try req.receive())[0])
        #expect(reply.error.code == .notFound)
        // A kind this build does not know is not served as another kind.
        var unknown = Eddy_V1_SnapshotRequest()
        unknown.stream = "temp"
        unknown.kind = .UNRECOGNIZED(7)
        try req.send([try unknown.serializedBytes()])
        let strange = try Eddy_V1_SnapshotReply(serializedBytes: try #require(try req.receive())[0])
        #expect(strange.error.code == .notFound && strange.error.message.contains("kind 7"))

        let hb = try #require(try client.awaitHeartbeat())
        #expect(hb.samplesAccepted == UInt64(sentPumps + sentTemp))
        #expect(hb.streams.map(\.stream) == ["pumps", "temp"])
        #expect(hb.trainSteps > 0 && hb.samplesDropped == 0)
    }

    @Test func badInputIsRejectedCountedAndReportedWhileGoodTrafficContinues() throws {
        var config = testConfiguration()
        config.maxStreams = 2
        config.maxSamplesPerMessage = 100
        // A declared stream whose window over 200 channels would be 25,600 inputs wide.
        var wide = config.streamDefaults
        wide.multivariateWindow = 64
        config.streams["wide"] = wide
        let daemon = try Daemon(configuration: config, logger: quietLogger)
        let endpoints = try daemon.start()
        defer { daemon.stop() }
        let client = try Client(endpoints)
        _ = try client.awaitHeartbeat()

        func batchBytes(stream: String, dim: Int, count: Int, values: [Float]? = nil) throws -> [UInt8] {
            var b = Eddy_V1_SampleBatch()
            b.stream = stream
            b.dim = UInt32(dim)
            b.count = UInt32(count)
            b.values = Wire.bytes(values ?? [Float](repeating: 0.5, count: dim * count))
            return try b.serializedBytes()
        }
        var nan = [Float](repeating: 1, count: 8)
        nan[5] = .nan
        let bad: [(Eddy_V1_ErrorCode, [[UInt8]])] = [
            (.badFrames, [Array("good".utf8)]),
            (.badFrames, [Array("good".utf8), try batchBytes(stream: "good", dim: 4, count: 2), [1]]),
            (.undecodable, [Array("good".utf8), [0xFF, 0xFF, 0xFF, 0x07]]),
            (.undecodable, [Array("good".utf8), try batchBytes(stream: "other", dim: 4, count: 2)]),
            (.undecodable, [Array("good".utf8), try batchBytes(stream: "good", dim: 4, count: 3, values: [1, 2])]),
            (.dimMismatch, [Array("good".utf8), try batchBytes(stream: "good", dim: 5, count: 2)]),
            (.nonFinite, [Array("good".utf8), try batchBytes(stream: "good", dim: 4, count: 2, values: nan)]),
            (.nonFinite, [Array("new".utf8), try batchBytes(stream: "new", dim: 4, count: 2, values: nan)]),
            (.oversized, [Array("good".utf8), try batchBytes(stream: "good", dim: 4, count: 101)]),
            (.oversized, [Array("wide".utf8), try batchBytes(stream: "wide", dim: 200, count: 1)]),
            (.badStreamName, [Array("a/b".utf8), try batchBytes(stream: "a/b", dim: 4, count: 1)]),
            (.tooManyStreams, [Array("third".utf8), try batchBytes(stream: "third", dim: 4, count: 1)]),
        ]
        // Two streams exist first, so a third is one too many.
        try client.send(stream: "good", sequence: 0, dim: 4, values: values(4 * 10, seed: 0))
        try client.send(stream: "second", sequence: 0, dim: 2, values: values(2 * 10, seed: 1))
        var sequence: UInt64 = 10
        for (_, frames) in bad {
            try client.sendRaw(frames)
            try client.send(stream: "good", sequence: sequence, dim: 4, values: values(4 * 10, seed: Int(sequence)))
            sequence += 10
        }
        var errors: [Eddy_V1_ErrorCode] = []
        var scored: [UInt64] = []
        let complete = try client.receive(seconds: 20) { topic, body in
            if topic.hasPrefix("error/") {
                let e = try Eddy_V1_Error(serializedBytes: body)
                errors.append(e.code)
                #expect(!e.message.isEmpty)
                #expect(topic == "error/\(e.stream.isEmpty ? "_" : e.stream)/")
            } else if topic == "score/good/" {
                let batch = try Eddy_V1_ScoreBatch(serializedBytes: body)
                scored += (0..<UInt64(batch.count)).map { batch.firstSequence + $0 }
            }
            return errors.count == bad.count && scored.count == Int(sequence)
        }
        #expect(complete)
        #expect(errors == bad.map(\.0), "each bad message is reported, in order, with its reason")
        #expect(scored == (0..<sequence).map { $0 }, "good traffic is scored throughout")
        let hb = try #require(try client.awaitHeartbeat())
        #expect(hb.messagesRejected == UInt64(bad.count))
        #expect(hb.samplesAccepted == sequence + 10)
        let good = try #require(hb.streams.first { $0.stream == "good" })
        #expect(good.accepted == sequence, "rejected messages leave the stream's state untouched")
        #expect(good.rejected == 8, "rejections naming an existing stream count against it")
        #expect(hb.streams.map(\.stream) == ["good", "second"], "a rejected first batch creates no stream")
    }

    @Test func restartResumesFromTheCheckpointWithStepsAndVersionsContinuing() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var firstSteps = 0, firstVersion: UInt64 = 0
        do {
            let daemon = try Daemon(configuration: testConfiguration(dataDirectory: directory), logger: quietLogger)
            let client = try Client(try daemon.start())
            _ = try client.awaitHeartbeat()
            for b in 0..<20 { try client.send(stream: "s", sequence: UInt64(b * 50), dim: 3, values: values(150, seed: b)) }
            _ = try client.receive(seconds: 20) { topic, body in
                guard topic == "snapshot/s/autoencoder/" else { return false }
                firstVersion = try Eddy_V1_ModelSnapshot(serializedBytes: body).version
                return firstVersion >= 20
            }
            daemon.stop()
            firstSteps = daemon.allStreams[0].autoencoder.step
        }
        #expect(firstSteps > 0 && firstVersion > 0)

        let daemon = try Daemon(configuration: testConfiguration(dataDirectory: directory), logger: quietLogger)
        let resumed = try #require(daemon.allStreams.first)
        #expect(resumed.name == "s" && resumed.autoencoder.step == firstSteps && resumed.accepted == 1000)
        let client = try Client(try daemon.start())
        defer { daemon.stop() }
        _ = try client.awaitHeartbeat()
        for b in 0..<10 { try client.send(stream: "s", sequence: UInt64(1000 + b * 50), dim: 3, values: values(150, seed: b)) }
        // The restored snapshot may be published again first (at its own version), before a new step.
        var versions: [UInt64] = []
        _ = try client.receive(seconds: 20) { topic, body in
            if topic == "snapshot/s/autoencoder/" { versions.append(try Eddy_V1_ModelSnapshot(serializedBytes: body).version) }
            return (versions.last ?? 0) > UInt64(firstSteps)
        }
        #expect(versions.allSatisfy { $0 >= UInt64(firstSteps) }, "no version goes back: \(versions) after \(firstSteps)")
        #expect((versions.last ?? 0) > UInt64(firstSteps), "versions continue upwards: \(versions) after \(firstSteps)")
    }
}

extension CRC32 {
    static func checksumOfTensors(_ s: Eddy_V1_ModelSnapshot) -> UInt32 {
        checksum(s.tensors.reduce(Data()) { $0 + $1.data })
    }
}
