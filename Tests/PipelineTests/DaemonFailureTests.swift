import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import Learning
@testable import Pipeline
import Testing
import EddyProtocol
import SwiftProtobuf
import ZeroMQ
import CEddySystem

@Suite struct DaemonFailureTests {
    /// A thread that ends with an error while the daemon is not stopping is not a quiet log line:
    /// `onThreadFailure` hears of it once (with the thread's name), `failure` keeps it, and the
    /// daemon still stops cleanly afterwards. (`eddy serve` stops on it and exits 70.)
    /// A start that fails after the data directory was locked (here a checkpoint in a newer format)
    /// lets the directory go: the next start in the same process gets the same reason, not "in use".
    @Test func aStartThatFailsAfterTakingTheDataDirectoryLetsItGo() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = CheckpointStore(directory: directory)
        let path = try store.write([StreamPipeline(name: "x", settings: StreamConfiguration().resolved(dim: 2))], now: 1)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[4 + "eddy.checkpoint".utf8.count] = 2
        let sealed = Array(bytes.dropLast(4))
        withUnsafeBytes(of: CRC32.checksum(sealed).littleEndian) { bytes.replaceSubrange(bytes.count - 4..<bytes.count, with: $0) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        for _ in 0..<2 {
            #expect { try Daemon(configuration: testConfiguration(dataDirectory: directory), logger: quietLogger) } throws: {
                "\($0)".contains("written by a newer eddy")
            }
        }
    }

    @Test func aDyingThreadIsReportedAndTheDaemonStillStops() throws {
        let daemon = try Daemon(configuration: testConfiguration(), logger: quietLogger)
        let heard = Lock()
        nonisolated(unsafe) var reports: [String] = []
        let told = DispatchSemaphore(value: 0)
        daemon.onThreadFailure = { thread, _ in
            heard.withLock { reports.append(thread) }
            told.signal()
        }
        _ = try daemon.start()
        #expect(daemon.failure == nil)
        daemon.stateLock.withLock { daemon.injectedFault = "eddy-snapshots" }
        #expect(told.wait(timeout: .now() + 10) == .success, "no report of the dead thread")
        #expect(heard.withLock { reports } == ["eddy-snapshots"])
        #expect(daemon.failure?.thread == "eddy-snapshots" && daemon.failure?.error.contains("fault injected") == true)
        // What an orchestrator sees until the process exits: unhealthy, not ready, the thread named.
        let http = try #require(daemon.httpEndpoint)
        let (status, body) = try HTTPProbe.get(http, "/healthz")
        #expect(status == 503 && body.contains("\"failed\":\"eddy-snapshots\""), "\(body)")
        #expect(try HTTPProbe.get(http, "/readyz").status == 503)
        #expect(!daemon.health().healthy)
        daemon.stop()
        #expect(heard.withLock { reports }.count == 1, "reported once")
    }

    /// From review: samples admitted and waiting to be scored with the next were lost uncounted when
    /// the ingest thread failed; they are counted as dropped, and said.
    @Test func samplesAdmittedWhenIngestFailsAreCountedAsDropped() throws {
        let daemon = try Daemon(configuration: testConfiguration(), logger: quietLogger)
        let told = DispatchSemaphore(value: 0)
        daemon.onThreadFailure = { _, _ in told.signal() }
        let endpoints = try daemon.start()
        defer { daemon.stop() }
        let client = try Client(endpoints)
        #expect(try client.awaitHeartbeat() != nil)
        // The producer's connection is made and its first batch scored before the fault: the chunk
        // that fails ingest is the one carrying the next batch, not a handshake's.
        try client.send(stream: "a", sequence: 0, dim: 3, values: values(5 * 3, seed: 1))
        #expect(try client.receive(seconds: 5) { topic, _ in topic.hasPrefix("score/a/") })
        daemon.injectFault(into: "eddy-ingest")
        try client.send(stream: "a", sequence: 5, dim: 3, values: values(10 * 3, seed: 2))
        #expect(told.wait(timeout: .now() + 10) == .success, "no report of the dead thread")
        #expect(daemon.failure?.thread == "eddy-ingest")
        #expect(daemon.messagesReceived.load == 2 && daemon.samplesAccepted.load == 5)
        #expect(daemon.samplesDropped.load == 10)
    }
}

@Suite struct RollbackTests {
    static func trained(_ p: StreamPipeline, from start: Int = 0, samples: Int = 600) {
        var random = RandomSource(seed: UInt64(start + 1))
        let d = p.sampleDimension
        var x = [Float](repeating: 0, count: samples * d)
        for i in 0..<x.count {
            let phase = Double(start * d + i) / 7
            x[i] = Float(sin(phase)) + 0.1 * random.normal()
        }
        _ = x.withUnsafeBufferPointer { p.score($0.baseAddress!, count: samples, firstSequence: UInt64(start)) }
        while p.trainStep() {}
    }

    /// A weight that turns NaN (as a poisoned batch once made it) is found at the next step: the
    /// models go back to the last published state, the scorer never gets the bad weights, no
    /// snapshot or checkpoint carries them, and the rollback is counted.
    @Test func aNonFiniteWeightRollsTheModelsBackToTheLastPublishedState() throws {
        var settings = StreamConfiguration().resolved(dim: 4)
        settings.mocoQueue = 128
        let p = StreamPipeline(name: "r", settings: settings)
        Self.trained(p)
        let published = p.takeSnapshots(now: 1)
        #expect(published.count == 2 && p.lastGood != nil)
        let goodVersion = p.autoencoder.step
        Self.trained(p, from: 600, samples: 200)  // more steps after the snapshot
        let steps = p.autoencoder.step - goodVersion
        #expect(steps > 0)
        p.autoencoder.parameters.pointer[3] = .nan
        Self.trained(p, from: 800, samples: 200)
        #expect(p.rollbacks == 1 && p.status.rollbacks == 1)
        #expect(p.autoencoder.isFinite && p.moco.isFinite)
        // Found at the first step after it (the weights handed over are checked at every step).
        #expect(p.autoencoder.step == goodVersion + steps - 1, "back to the snapshot, then on")
        // The stream's training steps count every step taken, the ones the rollback undid too.
        #expect(p.status.trainSteps == UInt64(goodVersion + 2 * steps) && p.status.autoencoderSteps == UInt64(p.autoencoder.step))
        // Whatever is published or checkpointed next is finite.
        for s in p.takeSnapshots(now: 2) { #expect(s.layers.allSatisfy { $0.weights.allSatisfy(\.isFinite) && $0.bias.allSatisfy(\.isFinite) }) }
        p.moco.key.pointer[0] = .infinity  // found before the checkpoint, not after a step
        let restored = try StreamPipeline.restore(p.serialized(), settings: p.settings)
        #expect(restored.autoencoder.isFinite && restored.moco.isFinite && p.rollbacks == 2)
        #expect(restored.status.trainSteps == p.status.trainSteps && restored.status.trainSteps > UInt64(restored.autoencoder.step))
    }

    /// A step owed stays pending until the models it made are handed over: whenever a heartbeat
    /// reads the stream, the steps taken and the steps pending add up to the steps earned, so
    /// pending 0 means the models handed over have seen every step owed. (The step was counted off
    /// before it ran, and pending read 0 while the last one was still under way.)
    @Test func aStepOwedIsPendingUntilItsModelsAreHandedOver() {
        var settings = StreamConfiguration().resolved(dim: 4)
        settings.mocoQueue = 128
        let p = StreamPipeline(name: "p", settings: settings)
        Self.trained(p)
        p.lock.withLock { p.pendingSteps = 40 }
        let start = p.status
        let earned = start.trainSteps + start.pendingSteps
        #expect(start.pendingSteps == 40)
        let finished = DispatchSemaphore(value: 0)
        Thread {
            while p.trainStep() {}
            finished.signal()
        }.start()
        var reads = 0, apart = 0
        repeat {
            let s = p.status
            if s.trainSteps + s.pendingSteps != earned { apart += 1 }
            reads += 1
        } while finished.wait(timeout: .now()) == .timedOut
        #expect(apart == 0 && reads > 40, "\(apart) of \(reads) reads")
        #expect(p.status.pendingSteps == 0 && p.status.trainSteps == earned)
    }

    /// From review: a weight that turns NaN is not handed over even at a step whose losses are
    /// finite and that is not one of the full checks. A NaN first-layer weight feeding a ReLU leaves
    /// the losses finite (the ReLU takes NaN to 0), and the weights went out unchecked for up to 15
    /// steps.
    @Test(arguments: ["autoencoder", "moco"])
    func aWeightThatTurnsNaNIsNeverHandedOver(model: String) throws {
        var settings = StreamConfiguration().resolved(dim: 4)
        settings.mocoQueue = 128
        settings.publishRepresentations = true  // MoCo's query is handed to a representer
        let p = StreamPipeline(name: "h", settings: settings)
        Self.trained(p)
        _ = p.takeSnapshots(now: 1)
        func step() -> Bool {
            p.lock.withLock { p.pendingSteps = 1 }
            return p.trainStep()
        }
        while (p.autoencoder.step + 1) % StreamPipeline.weightCheckEvery == 0 { #expect(step()) }
        let scorerVersion = p.exchangeVersion
        if model == "autoencoder" { p.autoencoder.parameters.pointer[0] = .nan } else { p.moco.query.pointer[0] = .nan }
        #expect(step())
        let mocoExchange = try #require(p.mocoExchange)
        #expect(Kernels.firstNonFinite(p.exchange.pointer, count: p.exchange.count) == nil)
        #expect(Kernels.firstNonFinite(mocoExchange.pointer, count: mocoExchange.count) == nil)
        #expect(p.rollbacks == 1 && p.exchangeVersion <= scorerVersion, "handed the models gone back to")
    }

    /// From review: the scorer takes every hand-over, a rollback's too, even when the trainer is back
    /// at the version the scorer last took (a rollback, then as many steps again, with other
    /// weights); heartbeats see the MoCo version gone back to at once.
    @Test func theScorerTakesTheWeightsARollbackLeadsToAtTheVersionItHad() throws {
        var settings = StreamConfiguration().resolved(dim: 4)
        settings.mocoQueue = 128
        let p = StreamPipeline(name: "v", settings: settings)
        Self.trained(p)
        _ = p.takeSnapshots(now: 1)
        let good = p.autoencoder.step, goodMoco = p.mocoVersionBase + UInt64(p.moco.step)
        Self.trained(p, from: 600, samples: 200)
        let version = p.autoencoder.step
        let before = p.exchange.array
        _ = [Float](repeating: 0.5, count: 4).withUnsafeBufferPointer { p.score($0.baseAddress!, count: 1, firstSequence: 800) }
        let scoredWith = p.scorer.parameterValues == before
        #expect(p.scorerVersion == UInt64(version) && scoredWith)
        p.rollBack()
        #expect(p.status.mocoSteps == goodMoco, "the MoCo version gone back to, at once")
        p.lock.withLock { p.pendingSteps = Double(version - good) }
        while p.trainStep() {}
        let other = p.exchange.array != before
        #expect(p.autoencoder.step == version && other)
        _ = [Float](repeating: 0.5, count: 4).withUnsafeBufferPointer { p.score($0.baseAddress!, count: 1, firstSequence: 801) }
        let taken = p.scorer.parameterValues == p.exchange.array
        #expect(taken, "the scorer kept the weights from before the rollback")
    }

    /// A restored stream's models are its good state until its first snapshot: a weight that turns
    /// NaN before then rolls back to them, not to fresh models.
    @Test func aRestoredStreamRollsBackToTheModelsItRestored() throws {
        var settings = StreamConfiguration().resolved(dim: 4)
        settings.mocoQueue = 128
        let p = StreamPipeline(name: "r", settings: settings)
        Self.trained(p)
        let restored = try StreamPipeline.restore(p.serialized(), settings: p.settings)
        let (aeStep, mocoStep) = (restored.autoencoder.step, restored.moco.step)
        #expect(aeStep > 20 && mocoStep > 20)
        restored.autoencoder.parameters.pointer[3] = .nan
        Self.trained(restored, from: 600, samples: 200)
        #expect(restored.rollbacks == 1 && restored.autoencoder.isFinite)
        #expect(restored.autoencoder.step >= aeStep && restored.moco.step >= mocoStep, "back to the restored models, then on")
    }

    /// With nothing published yet there is no good state to go back to: the models start afresh.
    @Test func withoutAPublishedStateTheModelsStartAfresh() {
        let p = StreamPipeline(name: "f", settings: StreamConfiguration().resolved(dim: 3))
        Self.trained(p)
        p.moco.query.pointer[0] = .nan
        Self.trained(p, from: 600, samples: 200)
        #expect(p.rollbacks == 1 && p.moco.isFinite && p.autoencoder.isFinite)
    }
}

@Suite struct SnapshotServerTests {
    /// A `SnapshotReply` is the published snapshot's bytes behind a tag and a length, the same bytes
    /// as the message encoded whole (lengths of one, two and three varint bytes).
    @Test func aReplyCarriesThePublishedBytes() throws {
        for size in [0, 100, 5_000, 300_000] {
            var snapshot = Eddy_V1_ModelSnapshot()
            snapshot.stream = "s"
            if size > 0 {
                var t = Eddy_V1_Tensor()
                t.name = "w"
                t.data = Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) })
                snapshot.tensors = [t]
            }
            let body = try snapshot.serializedData()
            var whole = Eddy_V1_SnapshotReply()
            whole.snapshot = snapshot
            #expect(Wire.snapshotReply(body) == Array(try whole.serializedData()))
            #expect(try Eddy_V1_SnapshotReply(serializedBytes: Wire.snapshotReply(body)).snapshot == snapshot)
        }
    }

    /// A peer that sends requests and never reads the replies (a DEALER) has a few of them queued
    /// by the daemon, not one per request: every request is answered (counted), and the replies
    /// beyond the queue are dropped instead of held.
    @Test func aPeerThatDoesNotReadHasFewRepliesQueued() throws {
        let daemon = try Daemon(configuration: testConfiguration(), logger: quietLogger)
        let endpoints = try daemon.start()
        defer { daemon.stop() }
        var snapshot = Eddy_V1_ModelSnapshot()
        snapshot.stream = "big"
        var t = Eddy_V1_Tensor()
        t.name = "w"
        t.data = Data(repeating: 7, count: 64 << 10)
        snapshot.tensors = [t]
        daemon.snapshotsLock.withLock { daemon.latestSnapshots["big/autoencoder"] = try! snapshot.serializedData() }
        let context = try Context()
        let dealer = try Socket(context, .dealer)
        try dealer.setHighWaterMarks(send: 10_000, receive: 1)
        try dealer.setReceiveTimeout(milliseconds: 1000)
        try dealer.connect(endpoints.snapshots)
        var request = Eddy_V1_SnapshotRequest()
        request.stream = "big"
        let requests = 2000
        for _ in 0..<requests { _ = try dealer.send([[], try request.serializedBytes()]) }
        let end = Date().addingTimeInterval(30)
        while daemon.snapshotRequests.load < UInt64(requests) && Date() < end { usleep(20_000) }
        #expect(daemon.snapshotRequests.load == UInt64(requests))
        var replies = 0
        while let frames = try dealer.receive() {
            #expect(frames.count == 2 && frames[0].isEmpty)
            #expect(try Eddy_V1_SnapshotReply(serializedBytes: frames[1]).snapshot == snapshot)
            replies += 1
        }
        // The daemon's queue of 4, what the kernel's socket buffers hold (a few megabytes on
        // loopback) and the client's own queue: a fraction of the 2,000 asked for.
        #expect(replies >= 1 && replies <= 300, "\(replies) replies held for a peer that did not read")
    }
}

@Suite struct AdminServerLimitsTests {
    /// A TCP connection to `hostPort` (IPv4), with the given buffer sizes and a receive and send timeout.
    static func connect(_ hostPort: String, receiveBuffer: Int32? = nil, sendBuffer: Int32? = nil, timeout: Int = 3) throws -> Int32 {
        let colon = try #require(hostPort.lastIndex(of: ":"))
        let port = try #require(UInt16(hostPort[hostPort.index(after: colon)...]))
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, 4) }
        if var size = sendBuffer { setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, 4) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, String(hostPort[..<colon]), &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0)
        return fd
    }

    /// Whether the server closed the connection (recv sees its end) within the socket's timeout.
    static func closedByServer(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        while true {
            let n = recv(fd, &byte, 1, 0)
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    /// A client that pipelines requests and never reads the answers is no longer read from once its
    /// answers back up: its requests wait in the kernel's buffers (its sends stall), not as answers
    /// in the daemon's memory.
    @Test func aClientThatDoesNotReadIsNotReadFrom() throws {
        let daemon = try Daemon(configuration: testConfiguration(), logger: quietLogger)
        let server = try AdminServer(address: "127.0.0.1:0", daemon: daemon)
        let endpoint = try server.start()
        defer { server.stop() }
        let fd = try Self.connect(endpoint, receiveBuffer: 4096, sendBuffer: 65536, timeout: 1)
        defer { close(fd) }
        let requests = Array(String(repeating: "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", count: 1000).utf8)
        let limit = 8 << 20  // about 1.3 MB go before the sends stall; without the bound, all of it
        var sent = 0
        while sent < limit {
            let n = requests.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
        #expect(sent < limit, "the server read \(sent) bytes of requests whose answers nobody read")
    }

    /// A connection that neither reads nor writes for `idleSeconds` is closed. At most
    /// `maxConnections` are open: one more closes the one that has gone longest without a request
    /// answered, so connections that never finish a request cannot keep a scraper out (before, the
    /// newcomer was refused).
    @Test func idleConnectionsCloseAndStalledOnesMakeRoom() throws {
        let daemon = try Daemon(configuration: testConfiguration(), logger: quietLogger)
        let quick = try AdminServer(address: "127.0.0.1:0", daemon: daemon, idleSeconds: 0.5)
        let idle = try Self.connect(try quick.start())
        #expect(Self.closedByServer(idle), "an idle connection stays open")
        close(idle)
        quick.stop()
        let server = try AdminServer(address: "127.0.0.1:0", daemon: daemon, idleSeconds: 60, maxConnections: 3)
        let endpoint = try server.start()
        defer { server.stop() }
        // Three connections that send half a request and stop; then a scraper comes.
        var stalled: [Int32] = []
        for _ in 0..<3 {
            let fd = try Self.connect(endpoint, timeout: 10)
            _ = Array("GET /metr".utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            stalled.append(fd)
            usleep(20_000)  // in order: the first is the stalest
        }
        #expect(try HTTPProbe.get(endpoint, "/").status == 200, "a scraper is served beside stalled connections")
        #expect(Self.closedByServer(stalled[0]), "the stalest made room")
        for fd in stalled { close(fd) }
    }
}

@Suite struct SignalTests {
    /// Signals that arrive before `eddy serve`'s main thread wakes are each kept: a SIGTERM followed
    /// by a SIGHUP gives the stop first, then the reload (one "last signal" slot let the SIGHUP
    /// overwrite the SIGTERM: the daemon reloaded twice and waited for ever). `raise` runs each
    /// handler before it returns, so both have arrived before the first wait. The test process's
    /// handlers go back to the defaults afterwards.
    @Test func aStopIsNotLostToAReloadThatFollowsIt() {
        // The test runs on a thread that may block these signals; `eddy serve` leaves them open.
        var handled = sigset_t(), before = sigset_t()
        sigemptyset(&handled)
        for s in [SIGTERM, SIGINT, SIGUSR1, SIGHUP] { sigaddset(&handled, s) }
        pthread_sigmask(SIG_UNBLOCK, &handled, &before)
        eddy_signals_install()
        defer {
            for s in [SIGTERM, SIGINT, SIGUSR1, SIGHUP] { signal(s, SIG_DFL) }
            pthread_sigmask(SIG_SETMASK, &before, nil)
        }
        raise(SIGTERM)
        raise(SIGHUP)
        #expect(eddy_signals_wait() == SIGTERM)
        #expect(eddy_signals_wait() == SIGHUP)
        raise(SIGHUP)
        raise(SIGUSR1)
        #expect(eddy_signals_wait() == SIGUSR1, "a thread's failure before a reload")
        #expect(eddy_signals_wait() == SIGHUP)
    }
}

/// From review: a daemon killed after its last checkpoint had published later versions than the
/// state it restores, and the restored models published those versions again with other weights.
/// The versions published are kept in the data directory, and a stream's versions go on after them.
@Suite struct PublishedVersionTests {
    static var settings: StreamConfiguration {
        var settings = StreamConfiguration().resolved(dim: 4)
        settings.mocoQueue = 128
        return settings
    }

    @Test func aRestoredStreamsVersionsGoOnAfterTheHighestPublished() throws {
        let p = StreamPipeline(name: "v", settings: Self.settings)
        RollbackTests.trained(p)
        _ = p.takeSnapshots(now: 1)
        let checkpoint = p.serialized()
        RollbackTests.trained(p, from: 600, samples: 200)
        let later = p.takeSnapshots(now: 2)
        let published = (autoencoder: try #require(later.first { $0.kind == .autoencoder }).version,
                         moco: try #require(later.first { $0.kind == .moco }).version)
        let restored = try StreamPipeline.restore(checkpoint, settings: Self.settings)
        let steps = (restored.autoencoder.step, restored.moco.step)
        #expect(UInt64(steps.0) < published.autoencoder && UInt64(steps.1) < published.moco)
        restored.versionsFollow(published)
        // Its restored models are published again, after every version published before.
        let again = restored.takeSnapshots(now: 3)
        #expect(again.map(\.version) == [published.autoencoder + 1, published.moco + 1])
        #expect(again.map(\.steps) == [UInt64(steps.0), UInt64(steps.1)], "steps stay the models' own")
        let status = restored.status
        #expect(status.autoencoderSteps == published.autoencoder + 1 && status.mocoSteps == published.moco + 1)
        #expect(status.trainSteps == UInt64(steps.0))
        let scored = [Float](repeating: 0.5, count: 4).withUnsafeBufferPointer { restored.score($0.baseAddress!, count: 1, firstSequence: 800) }
        #expect(scored.modelVersion == published.autoencoder + 1)
        // Trained on, it goes up from there, and a checkpoint keeps where its versions stand.
        RollbackTests.trained(restored, from: 800, samples: 200)
        let next = restored.takeSnapshots(now: 4)
        #expect(next.count == 2 && next.allSatisfy { $0.version == $0.steps + ($0.kind == .autoencoder ? published.autoencoder + 1 - UInt64(steps.0) : published.moco + 1 - UInt64(steps.1)) })
        let reread = try StreamPipeline.restore(restored.serialized(), settings: Self.settings)
        #expect(reread.status.autoencoderSteps == restored.status.autoencoderSteps && reread.status.mocoSteps == restored.status.mocoSteps)
        #expect(reread.status.trainSteps == restored.status.trainSteps)
        // Versions already beyond those published are left as they are.
        let ahead = try StreamPipeline.restore(restored.serialized(), settings: Self.settings)
        ahead.versionsFollow(published)
        #expect(ahead.status.autoencoderSteps == restored.status.autoencoderSteps && ahead.status.mocoSteps == restored.status.mocoSteps)
    }

    /// A stream made anew under a name whose versions were published publishes nothing untrained, and
    /// its first trained snapshot comes after them.
    @Test func aNewStreamUnderAPublishedNameStartsAfterItsVersions() {
        let p = StreamPipeline(name: "n", settings: Self.settings)
        p.versionsFollow((autoencoder: 5000, moco: 4000))
        #expect(p.takeSnapshots(now: 1).map(\.version) == [])
        #expect(p.status.autoencoderSteps == 5000 && p.status.trainSteps == 0)
        RollbackTests.trained(p)
        let s = p.takeSnapshots(now: 2)
        #expect(s.map(\.version) == [5000 + UInt64(p.autoencoder.step), 4000 + UInt64(p.moco.step)])
        #expect(p.status.trainSteps == UInt64(p.autoencoder.step))
    }

    /// From review: a state checkpointed before it trained, and versions published after it, do
    /// not publish the untrained models at the version published last; and a version published
    /// after the checkpoint equal to the model's own (a rollback, then as many steps again) was
    /// other weights, so the restored models go after it.
    @Test func anUntrainedRestoreWaitsAndAnEqualVersionPublishedAfterTheCheckpointIsPassed() throws {
        let untrained = try StreamPipeline.restore(StreamPipeline(name: "u", settings: Self.settings).serialized(), settings: Self.settings)
        untrained.versionsFollow((autoencoder: 50, moco: 40))
        let first = untrained.takeSnapshots(now: 1).map(\.version)
        #expect(first.isEmpty, "untrained models published at \(first)")
        RollbackTests.trained(untrained)
        #expect(untrained.takeSnapshots(now: 2).map(\.version) == [50 + UInt64(untrained.autoencoder.step), 40 + UInt64(untrained.moco.step)])

        let p = StreamPipeline(name: "e", settings: Self.settings)
        RollbackTests.trained(p)
        _ = p.takeSnapshots(now: 1)
        RollbackTests.trained(p, from: 600, samples: 200)  // trained past its last snapshot, not published
        let own = (autoencoder: UInt64(p.autoencoder.step), moco: UInt64(p.moco.step))
        let restored = try StreamPipeline.restore(p.serialized(), settings: Self.settings)
        restored.versionsFollow(own)
        #expect(restored.takeSnapshots(now: 2).map(\.version) == [own.autoencoder + 1, own.moco + 1])
        // Nothing published since the checkpoint: its models come back at their own versions.
        let clean = try StreamPipeline.restore(p.serialized(), settings: Self.settings)
        clean.versionsFollow((autoencoder: clean.snapshotVersions.autoencoder, moco: clean.snapshotVersions.moco))
        #expect(clean.takeSnapshots(now: 3).map(\.version) == [own.autoencoder, own.moco])
    }

    @Test func theFileKeepsTheVersionsAndSkipsADamagedLine() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("eddy-published-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = CheckpointStore(directory: dir)
        #expect(store.readPublished().versions.isEmpty)
        try store.writePublished(["pump 1": (12, 7), "ü": (UInt64.max, 0), "\u{301}mark": (3, 4)])
        let read = store.readPublished()
        #expect(read.unreadable == 0 && read.versions.count == 3)
        #expect(read.versions["pump 1"]! == (12, 7) && read.versions["ü"]! == (UInt64.max, 0))
        #expect(read.versions["\u{301}mark"]! == (3, 4), "a name that starts with a combining mark")
        let text = try String(contentsOfFile: store.publishedPath, encoding: .utf8)
        #expect(text.hasPrefix("eddy.published-versions 1\n") && text.contains("\n12 7 pump 1\n") && text.contains("\n18446744073709551615 0 ü\n"))
        try (text + "x 1 bad\n3 4\n").write(toFile: store.publishedPath, atomically: true, encoding: .utf8)
        let damaged = store.readPublished()
        #expect(damaged.unreadable == 2 && damaged.versions.count == 3)
    }
}
