import EddyProtocol
import Foundation
@testable import Pipeline
import Testing

/// A stream back from expiry has its kept state read off the ingest thread (it took up to 0.3 s
/// there at dim 2,000, every other stream waiting): its messages wait, in order, and are scored
/// once it is there; nothing is refused or lost for it.
@Suite struct RevivalTests {
    /// A daemon whose data directory keeps an expired stream "a" (dim 8, 40 samples accepted), with
    /// the reading of kept states stopped at `reading` until `release` is signalled.
    final class Setup {
        let daemon: Daemon
        let client: Client
        let reading = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)

        init(_ adjust: (inout DaemonConfiguration) -> Void = { _ in }) throws {
            let directory = temporaryDirectory()
            var configuration = testConfiguration(dataDirectory: directory)
            adjust(&configuration)
            let a = StreamPipeline(name: "a", settings: configuration.settings(for: "a").resolved(dim: 8))
            _ = values(40 * 8, seed: 1).withUnsafeBufferPointer { a.score($0.baseAddress!, count: 40, firstSequence: 0) }
            try CheckpointStore(directory: directory).writeExpired(a)
            daemon = try Daemon(configuration: configuration, logger: quietLogger)
            let (reading, release) = (reading, release)
            daemon.beforeReadingKept = { _ in
                reading.signal()
                release.wait()
            }
            client = try Client(try daemon.start())
            #expect(try client.awaitHeartbeat() != nil)
        }

        /// Per stream, the errors published while `scored` read, with the samples scored before each.
        var errors: [String: [(Eddy_V1_ErrorCode, Int)]] = [:]

        /// The sequences scored, per stream, until `done`.
        func scored(seconds: Double, until done: ([String: [UInt64]]) -> Bool) throws -> [String: [UInt64]] {
            var firsts: [String: [UInt64]] = [:]
            _ = try client.receive(seconds: seconds) { topic, body in
                if topic.hasPrefix("score/") {
                    let batch = try Eddy_V1_ScoreBatch(serializedBytes: body)
                    firsts[batch.stream, default: []].append(contentsOf: (0..<UInt64(batch.count)).map { batch.firstSequence + $0 })
                }
                if topic.hasPrefix("error/") {
                    let error = try Eddy_V1_Error(serializedBytes: body)
                    errors[error.stream, default: []].append((error.code, firsts[error.stream]?.count ?? 0))
                }
                return done(firsts)
            }
            return firsts
        }
    }

    @Test func otherStreamsAreScoredWhileOneComesBackAndItsMessagesWaitInOrder() throws {
        let setup = try Setup()
        defer { setup.daemon.stop() }
        try setup.client.send(stream: "a", sequence: 40, dim: 8, values: values(10 * 8, seed: 2))
        #expect(setup.reading.wait(timeout: .now() + 10) == .success)
        try setup.client.send(stream: "a", sequence: 50, dim: 8, values: values(10 * 8, seed: 3))
        try setup.client.send(stream: "b", sequence: 0, dim: 8, values: values(5 * 8, seed: 4))
        // b does not wait for a's state.
        let meanwhile = try setup.scored(seconds: 10) { $0["b"]?.count == 5 }
        #expect(meanwhile["b"] == Array(0..<5), "another stream waited for a kept state to be read")
        #expect(meanwhile["a"] == nil)
        #expect(setup.daemon.messagesHeld.load == 2 && setup.daemon.allStreams.map(\.name) == ["b"])
        setup.release.signal()
        let after = try setup.scored(seconds: 10) { $0["a"]?.count == 20 }
        #expect(after["a"] == Array(40..<60))
        let a = try #require(setup.daemon.allStreams.first { $0.name == "a" })
        #expect(a.accepted == 60, "it resumed from its kept state")
        #expect(setup.daemon.streamsRevived.load == 1 && setup.daemon.revivalWaits.load == 0)
        #expect(setup.daemon.messagesRejected.load == 0 && setup.daemon.samplesDropped.load == 0)
    }

    /// Held messages take at most `ingest_buffer_bytes`; past that ingest waits for the state, as
    /// every stream did before, and nothing is refused.
    @Test func pastTheHeldBoundIngestWaitsAndRefusesNothing() throws {
        let setup = try Setup {
            $0.maxMessageBytes = 4096
            $0.ingestBufferBytes = 4096 + $0.maxStreamNameBytes
        }
        defer { setup.daemon.stop() }
        // Three messages of about 1.9 KiB: the third does not fit beside the first two.
        for i in 0..<3 {
            try setup.client.send(stream: "a", sequence: 40 + 60 * UInt64(i), dim: 8, values: values(60 * 8, seed: 10 + i))
        }
        #expect(setup.reading.wait(timeout: .now() + 10) == .success)
        try setup.client.send(stream: "b", sequence: 0, dim: 8, values: values(5 * 8, seed: 4))
        let meanwhile = try setup.scored(seconds: 1) { $0["b"] != nil }
        #expect(meanwhile.isEmpty, "ingest went past its bound of held messages")
        #expect(setup.daemon.revivalWaits.load == 1)
        setup.release.signal()
        let after = try setup.scored(seconds: 10) { $0["a"]?.count == 180 && $0["b"]?.count == 5 }
        #expect(after["a"] == Array(40..<220) && after["b"] == Array(0..<5))
        #expect(setup.daemon.messagesRejected.load == 0 && setup.daemon.samplesDropped.load == 0)
    }

    /// A daemon that stops while a stream comes back scores what it held before it ends.
    @Test func aStoppingDaemonScoresWhatAStreamComingBackHeld() throws {
        let setup = try Setup()
        try setup.client.send(stream: "a", sequence: 40, dim: 8, values: values(10 * 8, seed: 2))
        try setup.client.send(stream: "a", sequence: 50, dim: 8, values: values(10 * 8, seed: 3))
        #expect(setup.reading.wait(timeout: .now() + 10) == .success)
        let end = Date().addingTimeInterval(10)
        while setup.daemon.messagesHeld.load < 2 && Date() < end { usleep(10_000) }
        #expect(setup.daemon.messagesHeld.load == 2)
        let stopped = DispatchSemaphore(value: 0), daemon = setup.daemon
        Thread.detachNewThread {
            daemon.stop()
            stopped.signal()
        }
        Thread.sleep(forTimeInterval: 0.3)
        setup.release.signal()
        #expect(stopped.wait(timeout: .now() + 20) == .success)
        #expect(setup.daemon.samplesAccepted.load == 20 && setup.daemon.samplesDropped.load == 0)
        #expect(setup.daemon.revivalWaits.load == 1 && setup.daemon.streamsRevived.load == 1)
    }

    /// Samples held for a stream coming back when the ingest thread fails are counted as dropped.
    @Test func samplesHeldWhenIngestFailsAreCountedAsDropped() throws {
        let setup = try Setup()
        let told = DispatchSemaphore(value: 0)
        setup.daemon.onThreadFailure = { _, _ in told.signal() }
        defer {
            setup.release.signal()
            setup.daemon.stop()
        }
        try setup.client.send(stream: "b", sequence: 0, dim: 8, values: values(5 * 8, seed: 4))
        _ = try setup.scored(seconds: 10) { $0["b"] != nil }  // b's connection made and its stream there
        try setup.client.send(stream: "a", sequence: 40, dim: 8, values: values(10 * 8, seed: 2))
        try setup.client.send(stream: "a", sequence: 50, dim: 8, values: values(7 * 8, seed: 3))
        #expect(setup.reading.wait(timeout: .now() + 10) == .success)
        let end = Date().addingTimeInterval(10)
        while setup.daemon.messagesHeld.load < 2 && Date() < end { usleep(10_000) }
        setup.daemon.injectFault(into: "eddy-ingest")
        try setup.client.send(stream: "b", sequence: 5, dim: 8, values: values(3 * 8, seed: 5))
        #expect(told.wait(timeout: .now() + 10) == .success, "no report of the dead thread")
        // The fault fires on the next pass that finds the socket ready: with b's second message
        // admitted (3 samples more dropped), or before it is read (not received at all).
        let bRead = setup.daemon.messagesReceived.load == 4
        #expect(setup.daemon.samplesDropped.load == 17 + (bRead ? 3 : 0) && setup.daemon.samplesAccepted.load == 5)
    }

    /// From review: a stopping daemon waited for every kept state with no deadline, and could go on
    /// scoring after the final checkpoint. Past the drain's time what is held is counted as dropped,
    /// and the kept file stays for the name's return.
    @Test func aStoppingDaemonWaitsForAKeptStateOnlyWithinItsDrain() throws {
        let setup = try Setup()
        setup.daemon.drainSeconds = 0.5
        defer { setup.release.signal() }
        try setup.client.send(stream: "a", sequence: 40, dim: 8, values: values(10 * 8, seed: 2))
        try setup.client.send(stream: "a", sequence: 50, dim: 8, values: values(10 * 8, seed: 3))
        #expect(setup.reading.wait(timeout: .now() + 10) == .success)
        let end = Date().addingTimeInterval(10)
        while setup.daemon.messagesHeld.load < 2 && Date() < end { usleep(10_000) }
        let began = Date()
        setup.daemon.stop()
        #expect(Date().timeIntervalSince(began) < 5)
        #expect(setup.daemon.samplesDropped.load == 20 && setup.daemon.samplesAccepted.load == 0)
        let kept = try #require(setup.daemon.checkpoints).expiredPath("a")
        #expect(FileManager.default.fileExists(atPath: kept))
    }

    /// From review: held messages were counted by their bytes alone, so one-sample messages took
    /// several times the bound; their bookkeeping counts too.
    @Test func smallHeldMessagesCountTheirBookkeeping() throws {
        let setup = try Setup {
            $0.maxMessageBytes = 4096
            $0.ingestBufferBytes = 4096 + $0.maxStreamNameBytes
        }
        defer { setup.daemon.stop() }
        // 40 one-sample messages: about 1.5 KiB of bytes, four times that with their arrays.
        for i in 0..<40 { try setup.client.send(stream: "a", sequence: 40 + UInt64(i), dim: 8, values: values(8, seed: i)) }
        #expect(setup.reading.wait(timeout: .now() + 10) == .success)
        let end = Date().addingTimeInterval(10)
        while setup.daemon.revivalWaits.load == 0 && Date() < end { usleep(10_000) }
        #expect(setup.daemon.revivalWaits.load == 1)
        setup.release.signal()
        let after = try setup.scored(seconds: 10) { $0["a"]?.count == 40 }
        #expect(after["a"] == Array(40..<80))
    }

    /// From review: a message for a stream coming back that ingest refused as it read it (a frame
    /// over `max_message_bytes`) had its error published before the stream's earlier messages were
    /// scored, and not counted on the stream. It takes its place among them.
    @Test func aRefusalTakesItsPlaceAmongAStreamComingBacksMessages() throws {
        let setup = try Setup { $0.maxMessageBytes = 4096 }
        defer { setup.daemon.stop() }
        try setup.client.send(stream: "a", sequence: 40, dim: 8, values: values(10 * 8, seed: 2))
        try setup.client.send(stream: "a", sequence: 50, dim: 8, values: values(200 * 8, seed: 3))  // 6.4 KB
        try setup.client.send(stream: "a", sequence: 50, dim: 8, values: values(10 * 8, seed: 4))
        #expect(setup.reading.wait(timeout: .now() + 10) == .success)
        let end = Date().addingTimeInterval(10)
        while setup.daemon.messagesHeld.load < 3 && Date() < end { usleep(10_000) }
        #expect(setup.daemon.messagesHeld.load == 3 && setup.daemon.messagesRejected.load == 0)
        setup.release.signal()
        let after = try setup.scored(seconds: 10) { $0["a"]?.count == 20 }
        #expect(after["a"] == Array(40..<60))
        let errors = setup.errors
        #expect(errors["a"]?.map(\.0) == [.oversized] && errors["a"]?.map(\.1) == [10], "the error came where its message did")
        #expect(setup.daemon.allStreams.first { $0.name == "a" }?.status.rejected == 1)
    }

    /// A kept state that comes back as another dim, through the reading thread: set aside, counted,
    /// and the stream starts afresh; while it comes back it holds a slot of `max_streams`.
    @Test func aKeptStateOfAnotherDimIsSetAsideAndTheStreamHoldsItsSlotMeanwhile() throws {
        let setup = try Setup { $0.maxStreams = 1 }
        defer { setup.daemon.stop() }
        try setup.client.send(stream: "a", sequence: 0, dim: 4, values: values(5 * 4, seed: 2))
        #expect(setup.reading.wait(timeout: .now() + 10) == .success)
        try setup.client.send(stream: "b", sequence: 0, dim: 4, values: values(5 * 4, seed: 3))
        _ = try setup.scored(seconds: 10) { _ in setup.errors["b"] != nil }
        #expect(setup.errors["b"]?.map(\.0) == [.tooManyStreams])
        setup.release.signal()
        let after = try setup.scored(seconds: 10) { $0["a"]?.count == 5 }
        #expect(after["a"] == Array(0..<5))
        let directory = try #require(setup.daemon.checkpoints).directory
        let aside = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("set-aside-expired-") }
        #expect(aside.count == 1 && setup.daemon.streamsSetAside.load == 1 && setup.daemon.streamsRevived.load == 0)
        #expect(setup.daemon.allStreams.first { $0.name == "a" }?.accepted == 5)
    }

    /// Labels for a stream coming back wait for it too (a LabelBatch needs the stream to exist: it
    /// would have been refused as for no stream), and are taken once it is there.
    @Test func labelsForAStreamComingBackWaitForIt() throws {
        let setup = try Setup { $0.streamDefaults.maxLabels = 10 }
        defer { setup.daemon.stop() }
        try setup.client.send(stream: "a", sequence: 40, dim: 8, values: values(10 * 8, seed: 2))
        #expect(setup.reading.wait(timeout: .now() + 10) == .success)
        try setup.client.sendRaw(try LabelTests.labelFrames("a", dim: 8, values: values(3 * 8, seed: 5), labels: ["x", "y", "x"]))
        var end = Date().addingTimeInterval(10)
        while setup.daemon.messagesHeld.load < 2 && Date() < end { usleep(10_000) }
        #expect(setup.daemon.messagesHeld.load == 2 && setup.daemon.messagesRejected.load == 0)
        setup.release.signal()
        end = Date().addingTimeInterval(10)
        while setup.daemon.labelsAccepted.load < 3 && Date() < end { usleep(10_000) }
        #expect(setup.daemon.labelsAccepted.load == 3 && setup.daemon.messagesRejected.load == 0)
    }
}
