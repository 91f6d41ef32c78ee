import EddyProtocol
import Foundation
import Learning
import LinearAlgebra
import Logging
import CEddySystem
import SwiftProtobuf
import ZeroMQ

/// Eddy's main job on three threads, each owning its sockets: ingest (PULL in, PUB out: a sample is
/// received, scored and its score published without crossing a thread), the trainer (hands snapshots
/// to ingest's PUB through an inproc PUSH/PULL pipe), and the snapshot server (REP). Per-stream locks
/// guard what ingest and the trainer share; the trainer owns the models.
///
/// Life cycle: `init` validates the configuration and resumes from the newest valid checkpoint;
/// `start()` binds everything and returns the endpoints actually bound (port 0 / `*` is allowed);
/// `stop()` stops taking samples, lets the trainer finish its step and checkpoint, publishes what is
/// left, and returns when every thread has ended.
public final class Daemon: @unchecked Sendable {
    public struct Endpoints: Sendable, Equatable {
        public var ingest: String
        public var publish: String
        public var snapshots: String
    }

    public let configuration: DaemonConfiguration
    let logger: Logger
    let context: Context
    let publishPipe = "inproc://eddy-publish"
    let checkpoints: CheckpointStore?
    /// CURVE keys and allow-list; nil: plaintext.
    let security: Security?
    let started = Daemon.monotonic()

    let streamsLock = Lock()
    var streams: [String: StreamPipeline] = [:]
    var streamOrder: [String] = []
    /// What the streams are charged against `memory_budget` (their `memoryEstimate`s), under streamsLock.
    var committedBytes = 0

    let snapshotsLock = Lock()
    var latestSnapshots: [String: Data] = [:]
    /// The highest model versions published per stream, kept in the data directory before they are
    /// published (`published-versions`): a daemon killed after its last checkpoint restores older
    /// models, whose versions go on after these (`StreamPipeline.versionsFollow`). Under `publishedLock`.
    var published: [String: (autoencoder: UInt64, moco: UInt64)] = [:]
    /// When each name's versions were last published (a count of publishing rounds; under `publishedLock`).
    var publishedRound: [String: UInt64] = [:]
    var publishingRounds: UInt64 = 0
    let publishedLock = Lock()
    /// Writes of `published` that failed (each is also a failed checkpoint).
    let publishedWriteFailures = Counter()

    // Counters for heartbeats (and benchmarks).
    public let messagesReceived = Counter(), messagesRejected = Counter()
    public let samplesAccepted = Counter(), samplesRejected = Counter(), trainSteps = Counter()
    public let samplesDropped = Counter()
    /// Clients turned away in the handshake (unknown CURVE key, another mechanism): by the ZAP
    /// handler for PUB and REP, by ingest's own ZMTP for producers.
    public let handshakesRefused = Counter()
    /// Producer connections closed for breaking ZMTP, and those refused over `max_ingest_connections`.
    public let protocolErrors = Counter(), connectionsRefused = Counter()
    /// PONGs that could not go to their producer (it does not read, or is leaving): dropped.
    public let pongsDropped = Counter()
    /// Idle producer connections closed to make room for a new one at `max_ingest_connections`.
    public let connectionsEvicted = Counter()
    /// CURVE handshake steps that waited for their turn (`ingest_handshakes_per_second`).
    public let handshakesWaited = Counter()
    /// Times an idle trainer starved of CPU while steps were owed was raised to SCHED_OTHER.
    public let trainerBoosts = Counter()
    /// The trainer's kernel thread id and CPU clock, when it runs under SCHED_IDLE (stateLock).
    var idleTrainer: (tid: Int32, clock: clockid_t)?
    /// The trainer's share of a CPU as last measured, and whether it is raised. Ingest thread only.
    var trainerShare = (cpu: 0.0, wall: 0.0, boosted: false)
    /// Streams that expired (`stream_idle_seconds`), and those that came back from expiry.
    public let streamsExpired = Counter(), streamsRevived = Counter()
    /// Saved streams a start did not restore, and expired streams that came back unable to take
    /// their kept state (another dim or kind, other settings, a damaged file): their state kept
    /// aside (`set-aside-…`).
    public let streamsSetAside = Counter()
    /// Checkpoints a start passed over for an older one (damaged, or unreadable).
    public let checkpointsSkipped = Counter()
    /// Reloads of the allow-list (SIGHUP) that failed its checks, the one in force kept.
    public let allowListReloadFailures = Counter()
    /// When each stream last had samples accepted (monotonic seconds). Ingest thread only.
    var lastAccepted: [String: Double] = [:]
    /// Streams that expired and whose state the trainer has yet to write aside (it writes between
    /// its steps, so no step is caught halfway), and the kept states of streams that came back,
    /// removed once a checkpoint holds them (retireLock; `retiringCount` mirrors the first's size).
    let retireLock = Lock()
    var retiring: [StreamPipeline] = []
    /// Streams of `retiring` whose name came back as another kind or dim: the trainer writes them
    /// aside and moves the file out of the way of the stream that took the name (retireLock).
    var retiringAside: Set<ObjectIdentifier> = []
    var revivedFiles: [String: String] = [:]
    /// The stream the trainer is writing aside (outside retireLock); nil once it has come back.
    var writingAside: StreamPipeline?
    /// For tests: called on the trainer thread as it starts writing a stream aside.
    var beforeWritingAside: (@Sendable (StreamPipeline) -> Void)?
    let retiringCount = Counter()
    /// Streams coming back from expiry whose kept state is being read off the ingest thread, by
    /// name (streamsLock; `revivingCount` mirrors its size), in the order they came (ingest thread
    /// only), and the bytes of the messages they hold (ingest thread only).
    var reviving: [String: Revival] = [:]
    var revivalOrder: [Revival] = []
    var heldBytes = 0
    let revivingCount = Counter()
    /// Kept states waiting to be read, and whether the thread that reads them runs (revivalLock;
    /// a `Revival`'s `loaded` is set under it too).
    let revivalLock = Lock()
    var revivalQueue: [Revival] = []
    var loaderRunning = false
    /// Messages held while their stream came back, and the times ingest waited for a kept state
    /// (the held messages at their bound, or the daemon stopping).
    public let messagesHeld = Counter(), revivalWaits = Counter()
    /// For tests: called on the reading thread before it reads a stream's kept state.
    var beforeReadingKept: (@Sendable (String) -> Void)?
    public let alertsRaised = Counter(), snapshotsPublished = Counter(), labelsAccepted = Counter()
    /// Requests the snapshot server answered (with a snapshot or an error).
    public let snapshotRequests = Counter()
    public let checkpointsWritten = Counter(), checkpointFailures = Counter()
    /// Rejected messages and their samples by error code (indexed by the code's number).
    let rejectedMessages = (0..<16).map { _ in Counter() }, rejectedSamples = (0..<16).map { _ in Counter() }

    /// `/metrics` figures; nil when the HTTP endpoint is off.
    public let metrics: DaemonMetrics?
    var adminServer: AdminServer?
    /// Streams restored from a checkpoint at start: their per-stream metrics count from this start
    /// (a Prometheus counter starts at zero with its process), not from the checkpoint's counts.
    public private(set) var restoredAtStart: Set<String> = []
    /// The data directory's lock (`CheckpointStore.lock`), held from the start until the final
    /// checkpoint is written (-1: none; under `stateLock`).
    var dataLock: Int32 = -1
    let progress = ThreadProgress()
    /// Each running thread's CPU clock (stateLock).
    var cpuClocks: [DaemonThread: clockid_t] = [:]
    var phase = Health.Phase.starting  // stateLock
    /// Fault injection for tests: the named thread stops coming round its loop (until stopped).
    var injectedStall: String?  // stateLock

    // Stop flags, one per stage, set in order by `stop()`.
    let stateLock = Lock()
    var stopIngest = false, stopTrainer = false, stopServers = false, stopAuthenticator = false
    var finishedThreads: [String: DispatchSemaphore] = [:]
    /// Called (once, from the dying thread) when a thread ends with an error while the daemon is not
    /// stopping: a daemon missing a thread must not live on quietly. `eddy serve` stops and exits
    /// non-zero, so a supervisor restarts it.
    public var onThreadFailure: (@Sendable (_ thread: String, _ error: any Error) -> Void)?
    var threadFailure: (thread: String, error: String)?
    /// Fault injection for tests: the named thread fails as a socket error would end it.
    var injectedFault: String?

    /// For tests of the whole process: the named thread (`eddy-snapshots`) fails as a socket error
    /// would end it. `eddy serve` calls it when `EDDY_TEST_FAULT` names a thread.
    public func injectFault(into thread: String) { stateLock.withLock { injectedFault = thread } }

    /// For tests of health checks: the named thread stops making progress, as if blocked, until the
    /// daemon stops. `eddy serve` calls it when `EDDY_TEST_STALL` names a thread.
    public func injectStall(into thread: String) { stateLock.withLock { injectedStall = thread } }

    /// A thread came round its loop: it is making progress (or, when a test stalled it, it waits
    /// here without saying so until the daemon stops it).
    func beat(_ thread: DaemonThread) {
        guard stateLock.withLock({ injectedStall == thread.rawValue }) else { return progress.beat(thread) }
        logger.warning("thread stalled by EDDY_TEST_STALL", metadata: ["thread": "\(thread.rawValue)"])
        while !stopping(thread) { Thread.sleep(forTimeInterval: 0.05) }
    }

    func stopping(_ thread: DaemonThread) -> Bool {
        switch thread {
        case .ingest: ingestStopping
        case .trainer: trainerStopping
        case .snapshots: serversStopping
        case .authenticator: authenticatorStopping
        }
    }

    /// Whether every thread is alive and making progress, and whether the daemon takes samples.
    public func health() -> Health {
        let (phase, failed) = stateLock.withLock { (self.phase, threadFailure?.thread) }
        var h = Health(phase: phase, threads: [:], stalled: [], failed: failed)
        for (thread, age) in progress.ages() {
            h.threads[thread.rawValue] = age
            // While stopping, threads end in turn; until then one that stops coming round is stalled.
            if age > configuration.healthStallSeconds && phase != .stopping { h.stalled.append(thread.rawValue) }
        }
        return h
    }

    /// CPU seconds each running thread has used.
    public func cpuSeconds() -> [DaemonThread: Double] {
        stateLock.withLock {
            cpuClocks.compactMapValues { clock in
                var t = timespec()
                return clock_gettime(clock, &t) == 0 ? Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9 : nil
            }
        }
    }

    /// The HTTP endpoint as bound (`HOST:PORT`), or nil when `http` is empty.
    public private(set) var httpEndpoint: String?

    /// The first thread that ended with an error, if one did.
    public var failure: (thread: String, error: String)? { stateLock.withLock { threadFailure } }

    /// Records a thread's death and tells `onThreadFailure`, unless the daemon is stopping anyway.
    func threadFailed(_ thread: String, _ error: any Error) {
        let first: Bool = stateLock.withLock {
            guard threadFailure == nil else { return false }
            threadFailure = (thread, "\(error)")
            return true
        }
        logger.critical("thread failed; the daemon cannot go on without it", metadata: ["thread": "\(thread)", "error": "\(error)"])
        if first { onThreadFailure?(thread, error) }
    }

    /// Throws if a test asked this thread to fail.
    func checkInjectedFault(_ thread: String) throws {
        if stateLock.withLock({ injectedFault == thread }) { throw DaemonFault.injected(thread) }
    }
    /// Signalled when the ingest thread has taken its last sample (it goes on publishing).
    let ingestDrained = DispatchSemaphore(value: 0)
    let trainerWake = NSCondition()

    /// What a start checks of `configuration` before it binds or writes anything: its values and
    /// the key files it names (`eddy serve --check-config`).
    public static func check(_ configuration: DaemonConfiguration) throws {
        try configuration.validate()
        _ = try Security.load(configuration)
    }

    public init(configuration: DaemonConfiguration, logger: Logger) throws {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        metrics = configuration.http.isEmpty ? nil : DaemonMetrics()
        BLAS.setThreads(1)
        security = try Security.load(configuration)
        context = try Context(ioThreads: 1)
        checkpoints = configuration.dataDirectory.isEmpty ? nil : CheckpointStore(
            directory: configuration.dataDirectory, kept: configuration.checkpointsKept,
            streamBytesLimit: configuration.memoryBudget)
        try checkpoints?.prepareDirectory()
        dataLock = try checkpoints?.lock() ?? -1
        for path in checkpoints?.removeStaleTemporaries() ?? [] {
            logger.notice("removed the temporary file of an unfinished checkpoint", metadata: ["checkpoint.path": "\(path)"])
        }
        if let store = checkpoints {
            let (versions, unreadable) = store.readPublished()
            published = versions
            if unreadable > 0 {
                logger.warning(
                    "lines of the published versions file could not be read; those streams' versions may repeat",
                    metadata: ["file": "\(store.publishedPath)", "lines": "\(unreadable)"])
            }
        }
        if let store = checkpoints,
            let (path, restored) = try store.loadNewest(
                settings: configuration.settings(for:),
                skipped: { path, error, aside in
                    checkpointsSkipped.add()
                    logger.warning(
                        aside == path ? "checkpoint unreadable, left as it is; trying an older one" : "checkpoint damaged, moved aside; trying an older one",
                        metadata: ["checkpoint.path": "\(path)", "checkpoint.moved_to": "\(aside)", "error": "\(error)"])
                },
                setAside: { name, error, aside in
                    streamsSetAside.add()
                    logger.warning(
                        "a stream's saved state does not fit its settings or name rules now; it is not restored, its state kept aside",
                        metadata: ["stream.id": "\(name)", "error": "\(error)", "checkpoint.set_aside": "\(aside)"])
                },
                nameProblem: { StreamName.problem($0, maxBytes: configuration.maxStreamNameBytes) })
        {
            for r in restored {
                let s = newest(r, store: store)
                followPublished(s)
                streams[s.name] = s
                streamOrder.append(s.name)
                committedBytes += s.settings.memoryEstimate
                noteRestoredChanges(s)
            }
            restoredAtStart = Set(restored.map(\.name))
            logger.info(
                "resumed from checkpoint",
                metadata: ["checkpoint.path": "\(path)", "streams": "\(restored.count)"])
        }
        for (name, declared) in configuration.streams.sorted(by: { $0.key < $1.key })
        where streams[name] == nil && (declared.dim > 0 || declared.log) {
            // A stream declared since it expired resumes from the state it left.
            let resolved = configuration.settings(for: name).resolved(dim: declared.dim)
            let s = revive(name, settings: resolved) ?? fresh(name, settings: resolved)
            streams[name] = s
            streamOrder.append(name)
            committedBytes += s.settings.memoryEstimate
        }
        if committedBytes > configuration.memoryBudget {
            // Restored streams are kept (their learning is not thrown away); new ones will not fit.
            logger.warning(
                "restored and declared streams exceed memory_budget",
                metadata: ["memory.committed": "\(ByteCount(committedBytes))", "memory.budget": "\(ByteCount(configuration.memoryBudget))"])
        }
    }

    /// The pipelines, in creation order.
    public var allStreams: [StreamPipeline] { streamsLock.withLock { streamOrder.compactMap { streams[$0] } } }

    // MARK: Life cycle

    /// Binds every socket and starts the threads; returns the endpoints actually bound.
    public func start() throws -> Endpoints {
        let ingest = Promise<(ingest: String, publish: String)>(), server = Promise<String>()
        let trainer = Promise<String>()
        if let security {
            // The ZAP handler is bound before any socket can take a handshake.
            let authenticator = Promise<String>()
            spawn("eddy-auth") { self.runAuthenticator(security, ready: authenticator) }
            do {
                _ = try authenticator.wait()
            } catch {
                stop()
                throw error
            }
        }
        // Ingest first: the trainer publishes through ingest's pipe (restored models at once), and
        // with no ingest to read it a send waits for good, so a start that failed there (a port
        // taken) waited two minutes for the trainer before it shut the context down (from review).
        spawn("eddy-ingest") { self.runIngest(ready: ingest) }
        do {
            let bound = try ingest.wait()
            spawn("eddy-snapshots") { self.runSnapshotServer(ready: server) }
            spawn("eddy-trainer") { self.runTrainer(ready: trainer) }
            let endpoints = Endpoints(ingest: bound.ingest, publish: bound.publish, snapshots: try server.wait())
            _ = try trainer.wait()
            if !configuration.http.isEmpty {
                let admin = try AdminServer(address: configuration.http, daemon: self)
                adminServer = admin
                httpEndpoint = try admin.start()
            }
            stateLock.withLock { phase = .serving }
            logger.info(
                "eddy serving",
                metadata: [
                    "endpoint.ingest": "\(endpoints.ingest)", "endpoint.publish": "\(endpoints.publish)",
                    "endpoint.snapshots": "\(endpoints.snapshots)", "endpoint.http": "\(httpEndpoint ?? "off")",
                    "streams": "\(allStreams.count)",
                    "data_dir": "\(configuration.dataDirectory.isEmpty ? "none (state is not kept)" : configuration.dataDirectory)",
                    "security": "\(security.map { "curve, \($0.allowed.count) client keys" } ?? "plaintext")",
                ])
            if security == nil, [endpoints.ingest, endpoints.publish, endpoints.snapshots].contains(where: { !Endpoint.isLocal($0) }) {
                logger.warning("serving beyond loopback without CURVE (allow_plaintext): anyone who reaches the ports can use them")
            }
            return endpoints
        } catch {
            stop()
            throw error
        }
    }

    /// Graceful stop: samples first, then the trainer (which checkpoints), then the servers and the
    /// publishing of what is left. Returns when every thread has ended. Safe to call more than once.
    /// A stage that does not end in time (a thread blocked on a pipe whose reader died) is woken by
    /// shutting the context down (ETERM).
    public func stop() {
        stateLock.withLock {
            stopIngest = true
            phase = .stopping
        }
        trainerWake.broadcast()
        // Not if ingest never started (the authenticator failed at start): nothing would signal.
        let ingestStarted = stateLock.withLock { finishedThreads["eddy-ingest"] != nil }
        if ingestStarted && ingestDrained.wait(timeout: .now() + 10) == .timedOut {
            logger.error("ingest did not stop taking samples in time")
        }
        ingestDrained.signal()  // stays signalled for a second `stop()`
        // The trainer writes the final checkpoint: out of SCHED_IDLE for it, or on a machine busy
        // with other work the stop waits for CPU time nothing else wants.
        let idle = stateLock.withLock {
            stopTrainer = true
            return idleTrainer
        }
        if let idle { _ = eddy_idle_boost(idle.tid, 1) }
        trainerWake.broadcast()
        join("eddy-trainer", within: 120)
        stateLock.withLock { stopServers = true }
        join("eddy-snapshots", within: 10)
        join("eddy-ingest", within: 10)
        stateLock.withLock { stopAuthenticator = true }
        join("eddy-auth", within: 10)
        adminServer?.stop()
        adminServer = nil
        releaseDataDirectory()
    }

    /// Lets another daemon take the data directory (the final checkpoint is written).
    func releaseDataDirectory() {
        let fd = stateLock.withLock {
            defer { dataLock = -1 }
            return dataLock
        }
        if fd >= 0 { Glibc.close(fd) }
    }

    deinit { releaseDataDirectory() }

    /// Waits for the named thread to end; past `seconds`, shuts the context down and waits again.
    private func join(_ name: String, within seconds: Double) {
        guard let done = stateLock.withLock({ finishedThreads[name] }) else { return }
        if done.wait(timeout: .now() + seconds) == .timedOut {
            logger.error("thread did not stop in time; shutting the ZeroMQ context down", metadata: ["thread": "\(name)"])
            context.shutdown()
            done.wait()
        }
        done.signal()  // stays joinable for a second `stop()`
    }

    private func spawn(_ name: String, _ body: @escaping @Sendable () -> Void) {
        let done = DispatchSemaphore(value: 0)
        stateLock.withLock { finishedThreads[name] = done }
        let thread = Thread { [self] in
            eddy_set_thread_name(name)
            let known = DaemonThread(rawValue: name)
            if let known {
                progress.beat(known)
                var clock = clockid_t()
                if pthread_getcpuclockid(pthread_self(), &clock) == 0 { stateLock.withLock { cpuClocks[known] = clock } }
            }
            body()
            if let known {
                progress.retire(known)
                stateLock.withLock { cpuClocks[known] = nil }
            }
            done.signal()
        }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }

    var ingestStopping: Bool { stateLock.withLock { stopIngest } }
    var trainerStopping: Bool { stateLock.withLock { stopTrainer } }
    var serversStopping: Bool { stateLock.withLock { stopServers } }
    var authenticatorStopping: Bool { stateLock.withLock { stopAuthenticator } }

    /// Makes a socket that faces clients a CURVE server when the daemon has keys.
    func secure(_ socket: borrowing Socket) throws {
        if let security { try socket.makeCurveServer(secretKey: security.server.secretKey, domain: Security.domain) }
    }

    static func nowNanoseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1e9) }

    /// Seconds on a monotonic clock: intervals must not jump when the wall clock is set.
    static func monotonic() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

    // MARK: Ingest

    /// Receives samples, scores them and publishes their scores on PUB; also publishes what the
    /// trainer hands over through the pipe, and heartbeats. After `stop()` it takes no more samples
    /// but publishes until the trainer and the snapshot server have ended and the pipe is empty.
    /// Seconds a stopping daemon goes on scoring what libzmq has read from producers (half of
    /// what `stop` waits for ingest).
    static let drainSeconds = 5.0
    /// `drainSeconds`, shorter in tests.
    var drainSeconds = Daemon.drainSeconds

    func runIngest(ready: Promise<(ingest: String, publish: String)>) {
        defer { ingestDrained.signal() }
        // Admitted samples waiting to be scored with the next: lost, and counted, if ingest fails
        // (they were neither accepted, rejected nor dropped: from review).
        var run = Coalesced()
        do {
            let pub = try Socket(context, .pub)
            try secure(pub)
            try pub.setHighWaterMarks(send: configuration.publishHighWaterMark, receive: 1000)
            // The final snapshots and scores, published as the daemon stops, get a second to reach
            // subscribers after the socket closes.
            try pub.setLinger(milliseconds: 1000)
            let publishEndpoint = try pub.bind(Endpoint.bindable(configuration.publish))
            let pipe = try Socket(context, .pull)
            try pipe.setHighWaterMarks(send: configuration.highWaterMark, receive: configuration.highWaterMark)
            try pipe.bind(publishPipe)
            // Producers reach a STREAM socket: ingest speaks ZMTP (and CURVE) itself, so that it holds
            // a bounded number of bytes however producers frame their messages (IngestConnections).
            let ingest = try makeIngestSocket()
            var connections = IngestConnections(configuration, security: security, handshakesWaited: handshakesWaited)
            let ingestEndpoint = try ingest.bind(Endpoint.bindable(configuration.ingest))
            ready.fulfil((ingestEndpoint, publishEndpoint))
            var nextHeartbeat = Self.monotonic(), nextExpiry = Self.monotonic()
            while !ingestStopping {
                beat(.ingest)
                // While a stream comes back, its kept state is looked for every millisecond.
                let wait = revivingCount.load > 0 ? min(untilHeartbeat(nextHeartbeat), 1) : untilHeartbeat(nextHeartbeat)
                let ready = try Socket.poll(ingest, pipe, timeout: wait)
                // Streams whose kept state is read, with the messages they held, before any newer.
                if revivingCount.load > 0 { finishRevivals(run: &run, publisher: pub) }
                if ready.first {
                    // Drain what is queued (at most 1,000 chunks between looks at the rest).
                    // Consecutive batches of one stream with contiguous sequence numbers are scored
                    // and published as one: a producer sending one sample per message gets batched
                    // scoring.
                    _ = try takeChunks(1000, from: ingest, connections: &connections, run: &run, publisher: pub)
                    try checkInjectedFault("eddy-ingest")  // a test's: with a run admitted, not yet scored
                }
                // Handshakes waiting for their turn take it as the allowance refills.
                if !connections.waiting.isEmpty { try resumeWaiting(ingest, connections: &connections, run: &run, publisher: pub) }
                flush(&run, publisher: pub)
                try forward(pipe, to: pub, ready: ready.second, nextHeartbeat: &nextHeartbeat)
                if Self.monotonic() >= nextExpiry {
                    expireIdleStreams()
                    guardTrainerShare()
                    try closeStalledConnections(ingest, connections: &connections)
                    nextExpiry = Self.monotonic() + min(max(configuration.streamIdleSeconds / 10, 0.1), 0.5)
                }
            }
            // Stopping: what libzmq has already read from the producers is scored (at most twice each
            // open connection's read-ahead, should they keep sending, and for at most
            // `drainSeconds`, well within what `stop` waits), then the socket closes, so what they send
            // from now on stays queued on their side instead of vanishing here.
            var chunks = 2 * max(connections.open.count, 1) * configuration.ingestChunksPerConnection
            drainEnds = Self.monotonic() + drainSeconds
            var more = true
            while chunks > 0 && Self.monotonic() < drainEnds {
                // The deadline is looked at within a call too (from review): 1,000 chunks of large
                // samples could carry ingest past what `stop` waits, and the final checkpoint would
                // then miss samples scored after it.
                more = try takeChunks(
                    min(chunks, 1000), from: ingest, connections: &connections, run: &run, publisher: pub, until: drainEnds)
                flush(&run, publisher: pub)
                guard more else { break }
                chunks -= 1000
            }
            // Streams still coming back are waited for, within the drain's time (their held messages
            // were received); what is still held then is counted as dropped, their files left as they were.
            finishAllRevivals(until: drainEnds, run: &run, publisher: pub)
            flush(&run, publisher: pub)
            droppedHeld("the daemon stopped with samples held for streams coming back from expiry")
            // What is left was never received: the producers' messages not yet read (their ZeroMQ
            // keeps what it could not deliver) and those part-read here. Said, not silent.
            let partial = connections.open.values.filter { $0.connection.held > 0 }.count
            if more || partial > 0 {
                logger.warning(
                    "stopped with producers' data unread; their messages part-read here are not received, and the rest stays queued on their side",
                    metadata: ["drain.ended": "\(more ? "at its deadline or chunk budget" : "empty")", "connections.part_read": "\(partial)"])
            }
            _ = consume ingest
            ingestDrained.signal()
            // Publish what the trainer still hands over (final snapshots), until it and the snapshot
            // server are gone and the pipe is empty.
            while true {
                progress.beat(.ingest)
                let ready = try pipe.poll(timeout: untilHeartbeat(nextHeartbeat))
                try forward(pipe, to: pub, ready: ready, nextHeartbeat: &nextHeartbeat)
                if serversStopping, try !pipe.poll(timeout: 0) { break }
            }
        } catch {
            if run.count > 0 {
                samplesDropped.add(UInt64(run.count))
                logger.error("ingest ended with admitted samples not yet scored", metadata: ["samples": "\(run.count)"])
            }
            droppedHeld("ingest ended with samples held for streams coming back from expiry")
            ready.fail(error)
            if (error as? ZMQError)?.isTerminated != true { threadFailed("eddy-ingest", error) }
        }
    }

    /// Milliseconds to wait on sockets: until the next heartbeat, at most 50 (the stop flags' latency).
    func untilHeartbeat(_ next: Double) -> Int { min(Int(max(0, min(next - Self.monotonic(), 1)) * 1000), 50) }

    /// Forwards what the trainer handed over (when `ready`) and sends a heartbeat when one is due.
    func forward(_ pipe: borrowing Socket, to pub: borrowing Socket, ready: Bool, nextHeartbeat: inout Double) throws {
        if ready {
            for _ in 0..<1000 {
                guard let frames = try pipe.receive(dontWait: true) else { break }
                try pub.send(frames)
            }
        }
        if Self.monotonic() >= nextHeartbeat {
            nextHeartbeat = Self.monotonic() + configuration.heartbeatSeconds
            for part in try heartbeatParts() { try pub.send([Array(Topic.heartbeat.utf8), part]) }
        }
    }

    /// Accepted samples waiting to be scored together: one stream, contiguous sequence numbers.
    struct Coalesced {
        var pipeline: StreamPipeline?
        var firstSequence: UInt64 = 0
        var values: [Float] = []
        var timestamps: [Int64] = []
        var count = 0
        /// When its first message left the socket (uptime nanoseconds; 0: not measured).
        var received: UInt64 = 0
        static let maximum = 4096
    }

    /// One message from a producer: rejected with a reason, or admitted to the run of samples that
    /// is scored next.
    func handle(_ frames: [[UInt8]], run: inout Coalesced, publisher: borrowing Socket) {
        messagesReceived.add()
        admit(frames, received: nil, run: &run, publisher: publisher)
    }

    /// `handle`'s work, for a message taken from the socket now (`received` nil) or held while its
    /// stream came back.
    func admit(_ frames: [[UInt8]], received taken: UInt64?, run: inout Coalesced, publisher: borrowing Socket) {
        // A stream coming back holds every message for it, whatever it is, in order.
        if revivingCount.load > 0, frames.count == 2, let name = StreamName.decode(frames[0], maxBytes: configuration.maxStreamNameBytes).name,
            let r = streamsLock.withLock({ reviving[name] })
        {
            hold(frames, for: r, received: taken ?? receivedNow(), run: &run, publisher: publisher)
            return
        }
        switch Admission.check(
            frames, configuration: configuration, lookup: stream(named:dim:log:),
            existing: { name in self.streamsLock.withLock { self.streams[name] } })
        {
        case .rejected(let code, let why, let name, let sequence, let samples):
            flush(&run, publisher: publisher)
            reject(code, why, stream: name, sequence: sequence, samples: samples, publisher: publisher)
        case .held(let name):
            // Its stream began coming back with this message (a lookup says so only then).
            if let r = streamsLock.withLock({ reviving[name] }) {
                hold(frames, for: r, received: taken ?? receivedNow(), run: &run, publisher: publisher)
            } else {
                admit(frames, received: taken, run: &run, publisher: publisher)
            }
        case .lines(let pipeline, let batch, let lines, let truncated, let repaired):
            flush(&run, publisher: publisher)
            let received = taken ?? receivedNow()
            pipeline.countRepairs(truncated: truncated, repaired: repaired)
            let scored = pipeline.scoreLines(
                lines, firstSequence: batch.sequence, timestamps: batch.timestampsNs.isEmpty ? nil : batch.timestampsNs)
            publish(scored, of: pipeline, publisher: publisher)
            recordLatency(since: received)
        case .labels(let pipeline, let values, let labels):
            flush(&run, publisher: publisher)
            switch pipeline.addLabels(values, labels: labels) {
            case .success(let held):
                labelsAccepted.add(UInt64(labels.count))
                trainerWake.signal()
                logger.info("labels taken", metadata: ["stream.id": "\(pipeline.name)", "labels": "\(labels.count)", "labels.held": "\(held)"])
            case .failure(let refusal):
                reject(.oversized, "\(refusal)", stream: pipeline.name, sequence: 0, samples: labels.count, publisher: publisher)
            }
        case .accepted(let pipeline, let batch, let values):
            let n = Int(batch.count)
            let continues =
                run.pipeline === pipeline && run.firstSequence &+ UInt64(run.count) == batch.sequence
                && run.timestamps.isEmpty == batch.timestampsNs.isEmpty && run.count + n <= Coalesced.maximum
            if !continues {
                flush(&run, publisher: publisher)
                run.pipeline = pipeline
                run.firstSequence = batch.sequence
                run.received = taken ?? receivedNow()
            }
            if run.count == 0 { run.values = values } else { run.values += values }  // the first: no copy
            run.timestamps += batch.timestampsNs
            run.count += n
        }
    }

    /// Scores and publishes the pending run, if any.
    func flush(_ run: inout Coalesced, publisher: borrowing Socket) {
        guard let pipeline = run.pipeline, run.count > 0 else { return }
        let scored = run.values.withUnsafeBufferPointer {
            pipeline.score(
                $0.baseAddress!, count: run.count, firstSequence: run.firstSequence,
                timestamps: run.timestamps.isEmpty ? nil : run.timestamps)
        }
        publish(scored, of: pipeline, publisher: publisher)
        recordLatency(since: run.received)
        run.pipeline = nil
        run.values = []
        run.timestamps.removeAll(keepingCapacity: true)
        run.count = 0
    }

    static func uptimeNanoseconds() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Now, for the latency of a message just taken from the socket: read once per run (the clock
    /// costs a measurable share of a one-sample message), and only when metrics are on.
    func receivedNow() -> UInt64 { metrics == nil ? 0 : Self.uptimeNanoseconds() }

    /// Socket-to-score latency, once per scored run (its oldest message), when metrics are on.
    func recordLatency(since received: UInt64) {
        guard received > 0, let metrics else { return }
        metrics.scoreLatency.recordNanoseconds(Int64(Self.uptimeNanoseconds() &- received))
    }

    /// Counts a scored run and publishes its scores (at most `Wire.scoresPerMessage` to a message)
    /// and its alerts.
    func publish(_ scored: ScoredBatch, of pipeline: StreamPipeline, publisher: borrowing Socket) {
        samplesAccepted.add(UInt64(scored.count))
        lastAccepted[pipeline.name] = Self.monotonic()
        trainerWake.signal()
        for start in stride(from: 0, to: scored.count, by: Wire.scoresPerMessage) {
            let range = start..<min(start + Wire.scoresPerMessage, scored.count)
            send(Topic.score(pipeline.name), Wire.message(scored, range: range), publisher: publisher, samples: range.count)
            if !scored.classIndex.isEmpty {
                send(Topic.classes(pipeline.name), Wire.classes(scored, range: range), publisher: publisher, samples: 0)
            }
        }
        var alerts: UInt64 = 0
        for i in 0..<scored.count where scored.alerts[i] {
            send(Topic.alert(pipeline.name), Wire.alert(scored.sample(i), in: scored), publisher: publisher, samples: 0)
            alerts += 1
        }
        if alerts > 0 { alertsRaised.add(alerts) }
        let perMessage = Wire.representationsPerMessage(width: scored.representationWidth)
        for start in stride(from: 0, to: scored.representedCount, by: perMessage) {
            let range = start..<min(start + perMessage, scored.representedCount)
            send(Topic.representation(pipeline.name), Wire.representations(scored, range: range), publisher: publisher, samples: 0)
        }
    }

    /// The stream of this name, created with `dim` (a log stream: `log`) if it is new and there is
    /// room; `comingBackNow` while its kept state is read (ingest thread: it starts that reading).
    func stream(named name: String, dim: Int, log: Bool) -> Result<StreamPipeline, Admission.Refusal> {
        streamsLock.withLock {
            if let s = streams[name] {
                guard s.settings.log == log else {
                    return .failure(.init(code: .wrongKind, why: "stream \(name) is a \(s.settings.log ? "log" : "sample") stream"))
                }
                return .success(s)
            }
            if reviving[name] != nil { return .failure(.comingBackNow) }
            // A stream that could never be built says so whether or not there is room for one.
            var declared = configuration.settings(for: name)
            if configuration.streams[name] != nil && declared.log != log {
                return .failure(.init(code: .wrongKind, why: "stream \(name) is declared a \(declared.log ? "log" : "sample") stream"))
            }
            declared.log = log
            if !log && declared.dim > 0 && declared.dim != dim {
                return .failure(.init(code: .dimMismatch, why: "stream \(name) is declared with dim \(declared.dim), got \(dim)"))
            }
            let settings = declared.resolved(dim: dim)
            // The dim decides the model's input width (a multivariate window multiplies it).
            do {
                try settings.validate(name: name)
            } catch {
                return .failure(.init(code: .oversized, why: "\(error)"))
            }
            guard streams.count + reviving.count < configuration.maxStreams else {
                return .failure(.init(code: .tooManyStreams, why: "the daemon already has its maximum of \(configuration.maxStreams) streams"))
            }
            let cost = settings.memoryEstimate
            guard committedBytes + cost <= configuration.memoryBudget else {
                return .failure(
                    .init(
                        code: .overBudget,
                        why: "stream \(name) (dim \(dim)) would take \(ByteCount(cost)); \(ByteCount(committedBytes)) of the "
                            + "memory_budget \(ByteCount(configuration.memoryBudget)) is taken by \(streams.count) streams"))
            }
            committedBytes += cost
            let s: StreamPipeline
            switch retireLock.withLock({ takeBack(name, settings: settings) }) {
            case .stream(let back): s = back
            case .kept:
                // Read off the ingest thread (it took up to 0.3 s at dim 2,000, every stream
                // waiting): this message and the stream's next are held until it is there.
                let r = Revival(name: name, settings: settings)
                reviving[name] = r
                revivingCount.store(UInt64(reviving.count))
                revivalOrder.append(r)
                startReading(r)
                return .failure(.comingBackNow)
            case .none: s = fresh(name, settings: settings)
            }
            install(s)
            return .success(s)
        }
    }

    /// Makes `s` a stream of the daemon (streamsLock held).
    private func install(_ s: StreamPipeline) {
        streams[s.name] = s
        streamOrder.append(s.name)
        logger.info(
            "stream created",
            metadata: ["stream.id": "\(s.name)", "stream.dim": "\(s.settings.inputDimension)", "stream.log": "\(s.settings.log)"])
    }

    /// The expired stream of this name, if its state was kept and still fits `settings`, its kept
    /// file read on the calling thread (at start; ingest reads it on another: `startReading`).
    func revive(_ name: String, settings: StreamConfiguration) -> StreamPipeline? {
        switch retireLock.withLock({ takeBack(name, settings: settings) }) {
        case .stream(let s): return s
        case .kept: return adopt(name, readKept(name, settings: settings), settings: settings)
        case .none: return nil
        }
    }

    /// What an expired stream of a name that comes back returns from.
    enum Back {
        /// Not yet written aside: the stream itself.
        case stream(StreamPipeline)
        /// A file to read (`readKept`, then `adopt`); spared from pruning meanwhile.
        case kept
        /// Nothing to take back: it starts afresh.
        case none
    }

    /// Takes back an expired stream that is still in memory, or says whether a file holds its state
    /// (retireLock held).
    private func takeBack(_ name: String, settings: StreamConfiguration) -> Back {
        // Not yet written aside: the stream itself comes back.
        if let i = retiring.firstIndex(where: { $0.name == name && !retiringAside.contains(ObjectIdentifier($0)) }) {
            let s = retiring[i]
            guard sameKind(s, as: settings, name: name) else {
                // Its state is kept, not dropped (from review): the trainer writes it aside.
                retiringAside.insert(ObjectIdentifier(s))
                return .none
            }
            retiring.remove(at: i)
            retiringCount.store(UInt64(retiring.count))
            if writingAside === s { writingAside = nil }  // the trainer is writing it aside: taken back
            streamsRevived.add()
            s.oweSnapshots()  // its served snapshots went at expiry
            logger.notice("expired stream came back; it resumes as it was", metadata: ["stream.id": "\(name)"])
            return .stream(s)
        }
        // A state of this name waiting to be set aside is written (or being written) to the file
        // `takeExpired` reads, before the trainer moves it: that file is not this stream's to take
        // (from review).
        guard !retiring.contains(where: { $0.name == name }), let store = checkpoints, store.hasExpired(name) else { return .none }
        // The trainer's pruning of kept files passes it by while it is read.
        revivedFiles[name] = store.expiredPath(name)
        return .kept
    }

    /// An expired stream's kept file, read and restored under `settings` (any thread: no daemon
    /// state is touched), and where it was set aside if it could not be.
    typealias Kept = (taken: Result<StreamPipeline, Error>?, aside: String?)
    func readKept(_ name: String, settings: StreamConfiguration) -> Kept {
        var aside: String?
        let taken = checkpoints?.takeExpired(name, settings: settings, remove: false) { aside = $0 }
        return (taken, aside)
    }

    /// The stream `readKept` gave back, if it is the one asked for; counted and logged either way.
    private func adopt(_ name: String, _ kept: Kept, settings: StreamConfiguration) -> StreamPipeline? {
        switch kept.taken {
        case .success(let s) where sameKind(s, as: settings, name: name):
            // Its file stays until a checkpoint holds the stream: a kill before one loses nothing.
            followPublished(s)
            streamsRevived.add()
            logger.notice("expired stream came back; it resumes from its kept state", metadata: ["stream.id": "\(name)"])
            noteRestoredChanges(s)
            return s
        case .success:
            // Moved before the trainer's pruning may see it (from review: it could go first).
            let aside = retireLock.withLock { () -> String? in
                defer { revivedFiles[name] = nil }
                return checkpoints?.setAsideExpired(name)
            }
            notedAside(name, at: aside)
        case .failure(let error):
            retireLock.withLock { revivedFiles[name] = nil }
            logger.warning(
                "expired stream came back, but its kept state does not fit its settings now (or is damaged); it starts afresh",
                metadata: ["stream.id": "\(name)", "error": "\(error)"])
            notedAside(name, at: kept.aside)
        case nil:
            retireLock.withLock { revivedFiles[name] = nil }
        }
        return nil
    }

    // MARK: Streams coming back

    /// A stream coming back from expiry whose kept state is read off the ingest thread, and the
    /// messages for it that wait meanwhile (with when each was taken from its socket).
    final class Revival: @unchecked Sendable {
        let name: String
        let settings: StreamConfiguration
        /// What waits for the stream, in order: messages, and refusals of messages ingest could not
        /// read whole (their errors go out in their place among the stream's scores).
        enum Held {
            case message([[UInt8]], received: UInt64)
            case refusal(Eddy_V1_ErrorCode, String)
        }
        var held: [Held] = []
        var heldBytes = 0
        /// What the reading thread found (revivalLock); nil until it is done.
        var kept: Kept?
        init(name: String, settings: StreamConfiguration) {
            self.name = name
            self.settings = settings
        }
    }

    /// Queues `r`'s kept state to be read, starting the thread that reads them if it is not running
    /// (it ends when the queue is empty; one at a time, so several names coming back at once do not
    /// take every core from ingest).
    private func startReading(_ r: Revival) {
        let start = revivalLock.withLock { () -> Bool in
            revivalQueue.append(r)
            defer { loaderRunning = true }
            return !loaderRunning
        }
        guard start else { return }
        let thread = Thread { [self] in
            eddy_set_thread_name("eddy-revive")
            while let next = revivalLock.withLock({ () -> Revival? in
                guard !revivalQueue.isEmpty else {
                    loaderRunning = false
                    return nil
                }
                return revivalQueue.removeFirst()
            }) {
                beforeReadingKept?(next.name)
                let kept = readKept(next.name, settings: next.settings)
                revivalLock.withLock { next.kept = kept }
            }
        }
        thread.name = "eddy-revive"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Holds a message for a stream coming back. The held messages of all such streams take at most
    /// `ingest_buffer_bytes`; past that, ingest waits for the oldest stream to be read (as every
    /// stream did before), so nothing is refused or lost for it.
    func hold(_ frames: [[UInt8]], for r: Revival, received: UInt64, run: inout Coalesced, publisher: borrowing Socket) {
        let bytes = Self.heldCost(frames)
        while heldBytes > 0 && heldBytes + bytes > configuration.ingestBufferBytes && reviving[r.name] === r {
            revivalWaits.add()
            guard finishRevivals(waiting: true, until: drainEnds, run: &run, publisher: publisher) else { break }
        }
        guard streamsLock.withLock({ reviving[r.name] === r }) else {
            // It came back while ingest waited: the message goes to it now.
            admit(frames, received: received, run: &run, publisher: publisher)
            return
        }
        keep(.message(frames, received: received), bytes: bytes, in: r)
    }

    /// Puts `entry` behind what `r` holds, counted against the bound and in `messagesHeld`.
    private func keep(_ entry: Revival.Held, bytes: Int, in r: Revival) {
        r.held.append(entry)
        r.heldBytes += bytes
        heldBytes += bytes
        messagesHeld.add()
    }

    /// What a held message takes: its bytes and its arrays' bookkeeping (a header of 32 bytes and
    /// malloc's rounding for each frame, the list of frames and its place in the queue), so that
    /// one-sample messages of 25 bytes are not held at six times the bound (from review).
    static func heldCost(_ frames: [[UInt8]]) -> Int { frames.reduce(96) { $0 + $1.count + 48 } }

    /// Holds, in the order of the stream's messages, the refusal of a message for a stream coming
    /// back that ingest could not read whole; false if `stream` is not coming back.
    func holdRefusal(_ code: Eddy_V1_ErrorCode, _ why: String, stream: String?) -> Bool {
        guard revivingCount.load > 0, let stream, let r = streamsLock.withLock({ reviving[stream] }) else { return false }
        keep(.refusal(code, why), bytes: 96 + why.utf8.count, in: r)
        return true
    }

    /// When a stopping daemon's drain ends (ingest thread; infinity until it stops).
    var drainEnds = Double.infinity

    /// Makes the streams whose kept state has been read streams of the daemon, oldest first, each
    /// followed by the messages it held (in their order, before any taken from the socket after
    /// them). `waiting`: waits for the oldest to be read first.
    @discardableResult
    func finishRevivals(waiting: Bool = false, until deadline: Double = .infinity, run: inout Coalesced, publisher: borrowing Socket) -> Bool {
        if waiting, let oldest = revivalOrder.first {
            while revivalLock.withLock({ oldest.kept == nil }) {
                guard Self.monotonic() < deadline else { return false }
                progress.beat(.ingest)  // waiting on a disk, not stalled
                usleep(200)
            }
        }
        while let r = revivalOrder.first, let kept = revivalLock.withLock({ r.kept }) {
            revivalOrder.removeFirst()
            let s = adopt(r.name, kept, settings: r.settings) ?? fresh(r.name, settings: r.settings)
            streamsLock.withLock {
                reviving[r.name] = nil
                revivingCount.store(UInt64(reviving.count))
                install(s)
            }
            heldBytes -= r.heldBytes
            let held = r.held
            r.held = []
            for entry in held {
                switch entry {
                case .message(let frames, let received): admit(frames, received: received, run: &run, publisher: publisher)
                case .refusal(let code, let why):
                    flush(&run, publisher: publisher)
                    reject(code, why, stream: r.name, sequence: 0, samples: 0, publisher: publisher)
                }
            }
        }
        return true
    }

    /// Waits for every stream coming back, until `deadline`, and scores what they held (a stopping
    /// daemon's drain).
    func finishAllRevivals(until deadline: Double, run: inout Coalesced, publisher: borrowing Socket) {
        finishRevivals(run: &run, publisher: publisher)
        if !revivalOrder.isEmpty { revivalWaits.add() }
        while !revivalOrder.isEmpty {
            guard finishRevivals(waiting: true, until: deadline, run: &run, publisher: publisher) else { return }
        }
    }

    /// Counts as dropped, and logs, the samples still held for streams coming back (ingest ends):
    /// the messages' own counts; a held refusal is counted as the rejection it was. Their kept
    /// files stay where they are, to be read when the names come back.
    func droppedHeld(_ message: Logger.Message) {
        var samples = 0
        for r in revivalOrder {
            for entry in r.held {
                switch entry {
                case .message(let frames, _):
                    // Checked as if no stream were there: a rejection counts what the message carried.
                    let check = Admission.check(
                        frames, configuration: configuration, lookup: { _, _, _ in .failure(.init(code: .notFound, why: "")) })
                    if case .rejected(_, _, _, _, let n) = check { samples += n }
                case .refusal(let code, _):
                    countRejection(code, samples: 0)
                }
            }
            r.held = []
        }
        heldBytes = 0
        guard samples > 0 else { return }
        samplesDropped.add(UInt64(samples))
        logger.error(message, metadata: ["samples": "\(samples)"])
    }

    /// Counts an expired stream's state set aside and says where it went (it was deleted, or, for a
    /// stream not yet written, dropped, with no count: from review).
    private func notedAside(_ name: String, at path: String?) {
        streamsSetAside.add()
        logger.warning(
            path == nil ? "its kept state could not be moved aside and is removed" : "its kept state is set aside",
            metadata: ["stream.id": "\(name)", "stream.state": "\(path ?? "removed")"])
    }

    /// Whether an expired stream is of the kind and dim a batch now asks for (they come from its
    /// state: another would not be the stream asked for, nor cost what was charged for it); if not,
    /// says so (its state is then set aside).
    private func sameKind(_ s: StreamPipeline, as settings: StreamConfiguration, name: String) -> Bool {
        if s.settings.log == settings.log && s.settings.dim == settings.dim { return true }
        logger.warning(
            "expired stream came back as another kind or dim; it starts afresh",
            metadata: ["stream.id": "\(name)", "stream.log": "\(settings.log)", "stream.dim": "\(settings.dim)"])
        return false
    }

    /// Expires every undeclared stream idle for `stream_idle_seconds` (ingest thread, so no sample
    /// can arrive for it meanwhile): its slot and memory are freed, its snapshots no longer served,
    /// later checkpoints leave it out, and its state is kept aside until its name comes back.
    func expireIdleStreams() {
        let idle = configuration.streamIdleSeconds, now = Self.monotonic()
        // Not while stopping: the trainer may have written its last expired states already.
        guard idle > 0, !ingestStopping else { return }
        for s in allStreams where configuration.streams[s.name] == nil && now - (lastAccepted[s.name] ?? started) >= idle {
            streamsLock.withLock {
                streams[s.name] = nil
                streamOrder.removeAll { $0 == s.name }
                committedBytes -= s.settings.memoryEstimate
            }
            snapshotsLock.withLock {
                for kind in ["autoencoder", "moco"] { latestSnapshots["\(s.name)/\(kind)"] = nil }
            }
            lastAccepted[s.name] = nil
            streamsExpired.add()
            if checkpoints == nil {
                logger.notice(
                    "stream expired", metadata: ["stream.id": "\(s.name)", "idle.seconds": "\(Int(idle))", "stream.state": "dropped (no data_dir)"])
            } else {
                // The trainer writes its state aside between two steps (a step may be under way now).
                retireLock.withLock {
                    retiring.append(s)
                    retiringCount.store(UInt64(retiring.count))
                }
                trainerWake.signal()
            }
        }
    }

    /// Writes the state of streams that expired aside (trainer thread, between steps). A state that
    /// cannot be written is lost: counted as a failed checkpoint and logged as an error.
    ///
    /// The writing (an fsync of the file and of the directory) is done outside `retireLock`: a stream
    /// that comes back meanwhile (on the ingest thread, under `streamsLock`) does not wait for a
    /// disk. One that comes back while its own state is being written is taken back as it is; the
    /// file then holds an older state of a live stream, spent like a revived stream's file once a
    /// checkpoint holds the stream.
    func keepExpiredAside() {
        guard retiringCount.load > 0, let store = checkpoints else { return }
        for s in retireLock.withLock({ retiring }) {
            // Not one that came back since the list was read.
            guard retireLock.withLock({ () -> Bool in
                writingAside = retiring.contains { $0 === s } ? s : nil
                return writingAside != nil
            }) else { continue }
            beforeWritingAside?(s)
            let written = Result { try store.writeExpired(s) { progress.beat(.trainer) } }
            retireLock.withLock {
                let takenBack = writingAside !== s
                writingAside = nil
                if !takenBack {
                    retiring.removeAll { $0 === s }
                    retiringCount.store(UInt64(retiring.count))
                }
                // A stream marked to be set aside is never taken back (`takeBack` passes it by).
                let setAside = retiringAside.remove(ObjectIdentifier(s)) != nil
                switch written {
                case .success where setAside:
                    // Its name came back as another kind or dim: out of that stream's way.
                    notedAside(s.name, at: store.setAsideExpired(s.name))
                case .success(let path):
                    // The file holds this newer state now, or one a checkpoint of the stream makes spent.
                    revivedFiles[s.name] = takenBack ? path : nil
                    // Files kept for streams that came back are theirs until a checkpoint holds them.
                    store.pruneExpired(keep: configuration.maxStreams, sparing: Set(revivedFiles.values))
                    if !takenBack { logger.notice("stream expired", metadata: ["stream.id": "\(s.name)", "stream.state": "\(path)"]) }
                case .failure(let error) where !takenBack:
                    checkpointFailures.add()
                    logger.error(
                        "stream expired, and its state could not be written aside (or not durably): it may be lost",
                        metadata: ["stream.id": "\(s.name)", "error": "\(error)"])
                case .failure:
                    break  // it came back meanwhile: nothing is lost
                }
            }
        }
    }

    /// Whether the trainer has work waiting: steps owed, or expired streams to write aside (their
    /// memory no longer counted against `memory_budget`: a starved trainer that was not raised for
    /// them left them in memory while other processes kept the cores busy, from stop 57).
    var trainerOwesWork: Bool { retiringCount.load > 0 || allStreams.contains { $0.wantsStep } }

    /// The trainer's guaranteed share (ingest thread, twice a second). SCHED_IDLE gives the trainer
    /// only CPU time nothing else wants: on a machine saturated by other work it would get almost
    /// none, and a stream might never leave warm-up. When steps are owed and the trainer had less
    /// than `trainer_min_share` of a CPU since the last look, it is raised to SCHED_OTHER (a fair
    /// share beside the work that starves it) until the next look finds it had its share or owes
    /// nothing.
    func guardTrainerShare() {
        // Not once the trainer is stopping: `stop()` has raised it for good.
        guard configuration.trainerMinimumShare > 0, let trainer = stateLock.withLock({ stopTrainer ? nil : idleTrainer }) else { return }
        var now = timespec()
        guard clock_gettime(trainer.clock, &now) == 0 else { return }
        let cpu = Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9, wall = Self.monotonic()
        defer { trainerShare.cpu = cpu; trainerShare.wall = wall }
        guard trainerShare.wall > 0, wall > trainerShare.wall else { return }
        let share = (cpu - trainerShare.cpu) / (wall - trainerShare.wall)
        let owed = trainerOwesWork
        if owed && share < configuration.trainerMinimumShare && !trainerShare.boosted {
            if eddy_idle_boost(trainer.tid, 1) == 0 {
                trainerShare.boosted = true
                trainerBoosts.add()
                if trainerBoosts.load <= 10 || trainerBoosts.load % 1000 == 0 {
                    logger.notice(
                        "trainer starved while steps are owed; raised to a normal share",
                        metadata: ["trainer.share": "\(String(format: "%.3f", share))", "boosts": "\(trainerBoosts.load)"])
                }
            }
        } else if trainerShare.boosted && (!owed || share >= configuration.trainerMinimumShare) {
            _ = eddy_idle_boost(trainer.tid, 0)
            trainerShare.boosted = false
        }
    }

    /// Counts a rejected message and its samples, by code; the count to log it under, if it is one to log.
    @discardableResult
    func countRejection(_ code: Eddy_V1_ErrorCode, samples: Int) -> UInt64? {
        let logged = messagesRejected.addForLog()
        samplesRejected.add(UInt64(samples))
        let slot = min(max(code.rawValue, 0), rejectedMessages.count - 1)
        rejectedMessages[slot].add()
        rejectedSamples[slot].add(UInt64(samples))
        return logged
    }

    func reject(
        _ code: Eddy_V1_ErrorCode, _ why: String, stream: String?, sequence: UInt64, samples: Int,
        publisher: borrowing Socket
    ) {
        let logged = countRejection(code, samples: samples)
        if let stream, let s = streamsLock.withLock({ streams[stream] }) { s.countRejected() }
        if let n = logged {
            logger.warning(
                "message rejected",
                metadata: [
                    "stream.id": "\(stream ?? "_")", "error.code": "\(code)", "error.message": "\(why)",
                    "rejected.total": "\(n)",
                ])
        }
        send(Topic.error(stream), Wire.error(code, why, stream: stream, sequence: sequence, samples: samples),
             publisher: publisher, samples: 0)
    }

    /// Publishes a message. PUB never blocks: a subscriber `high_water_mark` messages behind loses
    /// messages at its own queue (ZeroMQ's rule), which the daemon cannot see; `samplesDropped`
    /// counts scores the socket refused outright (an error, or a send that did not go).
    func send<M: SwiftProtobuf.Message>(_ topic: String, _ message: M, publisher: borrowing Socket, samples: Int) {
        do {
            let body: [UInt8] = try message.serializedBytes()
            guard try publisher.send([Array(topic.utf8), body]) else {
                samplesDropped.add(UInt64(samples))
                logger.error("publish refused: the socket's queue is full", metadata: ["topic": "\(topic)"])
                return
            }
        } catch {
            samplesDropped.add(UInt64(samples))
            logger.error("publish failed", metadata: ["error": "\(error)", "topic": "\(topic)"])
        }
    }

    // MARK: Trainer

    func runTrainer(ready: Promise<String>) {
        // Training takes the CPU scoring leaves. Under SCHED_IDLE a waking ingest thread, or one
        // of libzmq's, is placed on the trainer's core at once, as if it were idle; at a nice value
        // it may wait for a slice to end. Idle halves the p99 latency at 10 k samples/s on two cores
        // and costs training steps while traffic is dense (`eddy bench latency`, README).
        switch configuration.trainerPriority {
        case .idle:
            // Idle needs the right to leave SCHED_IDLE while holding a lock; without it, nice 19.
            if eddy_set_thread_idle() != 0 {
                logger.warning(
                    "trainer_priority idle needs CAP_SYS_NICE or RLIMIT_NICE >= 20 (systemd: LimitNICE=+0); using nice 19")
                _ = eddy_set_thread_nice(19)
            } else {
                var clock = clockid_t()
                if pthread_getcpuclockid(pthread_self(), &clock) == 0 {
                    stateLock.withLock { idleTrainer = (eddy_thread_id(), clock) }
                }
            }
        case .nice(let n):
            if eddy_set_thread_nice(Int32(n)) != 0 { logger.warning("trainer nice value not set", metadata: ["nice": "\(n)"]) }
        }
        do {
            let out = try Socket(context, .push)
            try out.setHighWaterMarks(send: configuration.highWaterMark, receive: configuration.highWaterMark)
            try out.connect(publishPipe)
            // Restored streams' models are published, and served over REQ, before the daemon says it
            // has started (a client fetching one at once got NOT_FOUND for a moment: from review).
            publishSnapshots(of: allStreams, publisher: out)
            ready.fulfil("trainer")
            trainLoop(publisher: out)
        } catch {
            ready.fail(error)
            threadFailed("eddy-trainer", error)
        }
    }

    func trainLoop(publisher out: borrowing Socket) {
        var next = 0
        var lastSnapshot = Self.monotonic(), lastCheckpoint = Self.monotonic()
        /// What follows any step of `s`: counted, a rollback reported, a snapshot every so many steps.
        func afterStep(_ s: StreamPipeline, began: UInt64) {
            trainSteps.add()
            metrics?.trainStepDuration.recordNanoseconds(Int64(Self.uptimeNanoseconds() &- began))
            let rollbacks = s.rollbacks
            if rollbacks != s.rollbacksReported {
                s.rollbacksReported = rollbacks
                logger.error(
                    "a model weight was not finite; the stream's models went back to their last published state",
                    metadata: ["stream.id": "\(s.name)", "rollbacks": "\(rollbacks)"])
            }
            s.stepsSinceSnapshot += 1
            if s.stepsSinceSnapshot >= configuration.snapshotEverySteps {
                s.stepsSinceSnapshot = 0
                publishSnapshots(of: [s], publisher: out)
            }
        }
        while !trainerStopping {
            beat(.trainer)
            let list = allStreams
            var stepped = false
            for i in 0..<list.count {
                let s = list[(next + i) % list.count]
                let began = Self.uptimeNanoseconds()
                if s.trainStep() {
                    afterStep(s, began: began)
                    next = (next + i + 1) % list.count
                    stepped = true
                    break
                }
            }
            var wait = 0.05
            if !stepped {
                // Nothing owed: a stream that has gone quiet may keep learning from its buffer
                // (taking turns, as owed steps do).
                let now = Self.monotonic()
                for i in 0..<list.count {
                    let s = list[(next + i) % list.count]
                    guard let due = s.idleStepDue else { continue }
                    let began = Self.uptimeNanoseconds()
                    if due <= now, s.trainStep(idle: now) {
                        afterStep(s, began: began)
                        next = (next + i + 1) % list.count
                        stepped = true
                        break
                    }
                    wait = min(wait, max(due - now, 0.001))
                }
            }
            if !stepped {
                trainerWake.lock()
                _ = trainerWake.wait(until: Date().addingTimeInterval(wait))
                trainerWake.unlock()
            }
            // New labels: a MoCo snapshot with a head fitted on them, at once (or, when fits are
            // slow and labels come fast, as long after the last fit as it took).
            let now = Self.monotonic()
            for s in list where s.settings.maxLabels > 0 && s.wantsHead && s.headFitReady <= now {
                publishSnapshots(of: [s], publisher: out)
            }
            if Self.monotonic() - lastSnapshot >= configuration.snapshotEverySeconds {
                lastSnapshot = Self.monotonic()
                publishSnapshots(of: allStreams, publisher: out)
            }
            keepExpiredAside()
            if Self.monotonic() - lastCheckpoint >= configuration.checkpointEverySeconds {
                checkpoint()
                // From the end of the write: a checkpoint slower than its interval must not follow
                // itself with a single step between.
                lastCheckpoint = Self.monotonic()
            }
        }
        publishSnapshots(of: allStreams, publisher: out)
        keepExpiredAside()
        if !checkpoint() { stateLock.withLock { finalCheckpointFailed = true } }
    }

    /// Whether the checkpoint written as the daemon stopped failed (its state since the last one
    /// that was written is lost): `eddy serve` then exits 1, not 0.
    public var stoppedWithoutCheckpoint: Bool { stateLock.withLock { finalCheckpointFailed } }
    private var finalCheckpointFailed = false

    /// A restored stream whose state is also kept aside as expired (at start). Either the daemon was
    /// killed after the stream expired and before a checkpoint left it out (the state aside is the
    /// newer), or after a checkpoint held it again and before its kept file went (the checkpoint's
    /// is). A stream's state only grows, so the one that has accepted more samples, then taken more
    /// steps, is the stream's; the other file goes once a checkpoint holds the stream.
    func newest(_ restored: StreamPipeline, store: CheckpointStore) -> StreamPipeline {
        let path = store.expiredPath(restored.name)
        var aside: String?
        switch store.takeExpired(restored.name, settings: restored.settings, remove: false, setAside: { aside = $0 }) {
        case .success(let kept):
            let newer = (kept.accepted, kept.status.trainSteps) > (restored.accepted, restored.status.trainSteps)
            if newer {
                logger.notice(
                    "stream restored from the state it was kept in at expiry, newer than the checkpoint's",
                    metadata: ["stream.id": "\(restored.name)", "stream.state": "\(path)"])
            }
            retireLock.withLock { revivedFiles[restored.name] = path }  // spent once a checkpoint holds the stream
            return newer ? kept : restored
        case .failure(let error):
            logger.warning(
                "a stream's state kept at expiry could not be read; the checkpoint's is used",
                metadata: ["stream.id": "\(restored.name)", "error": "\(error)"])
            notedAside(restored.name, at: aside)
            return restored
        case nil:
            return restored
        }
    }

    /// Makes a stream that is not shared yet (read from disk or made anew; not one this process ran
    /// and takes back) follow the versions published for its name.
    func followPublished(_ s: StreamPipeline) {
        if let p = publishedLock.withLock({ published[s.name] }) { s.versionsFollow(p) }
    }

    /// A stream made anew, its versions after those published under its name.
    func fresh(_ name: String, settings: StreamConfiguration) -> StreamPipeline {
        let s = StreamPipeline(name: name, settings: settings)
        followPublished(s)
        return s
    }

    /// Publishes the snapshots `streams` owe (trainer thread). Their versions are written to the data
    /// directory first, so that no version can be published and then forgotten by a kill.
    func publishSnapshots(of streams: [StreamPipeline], publisher: borrowing Socket) {
        let now = Self.nowNanoseconds()
        let taken = streams.map { ($0, $0.takeSnapshots(now: now)) }.filter { !$0.1.isEmpty }
        guard !taken.isEmpty else { return }
        if let store = checkpoints {
            let live = Set(allStreams.map(\.name))
            let versions: [String: (autoencoder: UInt64, moco: UInt64)] = publishedLock.withLock {
                publishingRounds += 1
                for (stream, snapshots) in taken {
                    publishedRound[stream.name] = publishingRounds
                    var v = published[stream.name] ?? (0, 0)
                    for s in snapshots {
                        if s.kind == .autoencoder { v.autoencoder = max(v.autoencoder, s.version) } else { v.moco = max(v.moco, s.version) }
                    }
                    published[stream.name] = v
                }
                // Names that are not streams now (expired: their kept states hold their versions)
                // stay, the max_streams last published (the expired states kept are the newest too).
                let gone = published.keys.filter { !live.contains($0) }.sorted { publishedRound[$0, default: 0] < publishedRound[$1, default: 0] }
                for name in gone.dropLast(configuration.maxStreams) {
                    published[name] = nil
                    publishedRound[name] = nil
                }
                return published
            }
            do {
                try store.writePublished(versions)
            } catch {
                checkpointFailures.add()
                if let n = publishedWriteFailures.addForLog() {
                    logger.error(
                        "the versions published could not be kept; after a kill a stream's versions may repeat",
                        metadata: ["error": "\(error)", "failures": "\(n)"])
                }
            }
        }
        for (stream, snapshots) in taken { send(snapshots, of: stream, publisher: publisher) }
    }

    private func send(_ snapshots: [Snapshot], of stream: StreamPipeline, publisher: borrowing Socket) {
        for snapshot in snapshots {
            let message = Wire.message(snapshot)
            let body: [UInt8]
            do {
                body = try message.serializedBytes()
            } catch {
                logger.error(
                    "a snapshot could not be encoded; it is neither published nor served",
                    metadata: ["stream.id": "\(stream.name)", "snapshot.kind": "\(snapshot.kind.rawValue)", "error": "\(error)"])
                continue
            }
            // Not for a stream that expired meanwhile (its entries are gone and must stay gone).
            snapshotsLock.withLock {
                if streamsLock.withLock({ streams[stream.name] === stream }) {
                    latestSnapshots["\(stream.name)/\(snapshot.kind.rawValue)"] = Data(body)
                }
            }
            do {
                try publisher.send([Array(Topic.snapshot(stream.name, snapshot.kind).utf8), body])
                snapshotsPublished.add()
            } catch {
                logger.error("publish pipe failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Writes a checkpoint of every stream (trainer thread, between steps); false if it failed.
    @discardableResult
    public func checkpoint() -> Bool {
        guard let store = checkpoints else { return true }
        let began = Self.uptimeNanoseconds()
        defer { metrics?.checkpointDuration.recordNanoseconds(Int64(Self.uptimeNanoseconds() &- began)) }
        do {
            let written = allStreams
            let path = try store.write(written, now: Self.nowNanoseconds()) { progress.beat(.trainer) }
            // The kept states of streams that came back are spent once a checkpoint holds them.
            retireLock.withLock {
                for s in written { if let kept = revivedFiles.removeValue(forKey: s.name) { unlink(kept) } }
            }
            checkpointsWritten.add()
            logger.debug("checkpoint written", metadata: ["checkpoint.path": "\(path)"])
            return true
        } catch {
            checkpointFailures.add()
            logger.error("checkpoint failed", metadata: ["error": "\(error)"])
            return false
        }
    }

    // MARK: Heartbeats

    /// The heartbeat as published: its streams split, in order, between as few messages as keep
    /// each within `Wire.largestScoreMessage` bytes (the bound a subscriber's queue is sized by),
    /// each with the counters, `part` and `parts`. A stream's status is at most ~230 bytes beside
    /// its name (at most 256), so any part holds at least one.
    public func heartbeatParts() throws -> [[UInt8]] {
        var whole = heartbeat()
        let streams = whole.streams
        whole.streams = []
        whole.parts = UInt32.max  // the largest they can take
        whole.part = UInt32.max
        let room = Wire.largestScoreMessage - (try whole.serializedBytes() as [UInt8]).count
        var groups: [Range<Int>] = []
        var start = 0, used = 0
        for (i, s) in streams.enumerated() {
            let n = try (s.serializedBytes() as [UInt8]).count
            let size = 1 + Wire.varintSize(UInt64(n)) + n  // field 8: tag, length, the status
            if i > start && used + size > room {
                groups.append(start..<i)
                (start, used) = (i, 0)
            }
            used += size
        }
        groups.append(start..<streams.count)
        return try groups.enumerated().map { k, r in
            var hb = whole
            hb.part = UInt32(k)
            hb.parts = UInt32(groups.count)
            hb.streams = Array(streams[r])
            return try hb.serializedBytes()
        }
    }

    public func heartbeat() -> Eddy_V1_Heartbeat {
        var hb = Eddy_V1_Heartbeat()
        hb.timeNs = Self.nowNanoseconds()
        hb.uptimeMs = UInt64(max(0, (Self.monotonic() - started) * 1000))
        hb.messagesReceived = messagesReceived.load
        hb.samplesAccepted = samplesAccepted.load
        hb.samplesRejected = samplesRejected.load
        hb.messagesRejected = messagesRejected.load
        hb.trainSteps = trainSteps.load
        hb.samplesDropped = samplesDropped.load
        hb.handshakesRefused = handshakesRefused.load
        hb.streamsExpired = streamsExpired.load
        hb.trainerBoosts = trainerBoosts.load
        hb.parts = 1
        hb.streams = allStreams.map { s in
            let st = s.status
            var m = Eddy_V1_StreamStatus()
            m.stream = s.name
            m.dim = UInt32(s.sampleDimension)
            m.accepted = st.accepted
            m.rejected = st.rejected
            m.buffered = st.buffered
            m.evicted = st.evicted
            m.trainSteps = st.trainSteps
            m.autoencoderVersion = st.autoencoderSteps
            m.mocoVersion = st.mocoSteps
            m.warmingUp = st.warmingUp
            m.autoencoderLoss = st.autoencoderLoss
            m.mocoLoss = st.mocoLoss
            m.period = UInt32(st.period)
            m.skippedSteps = st.skippedSteps
            m.quarantined = st.quarantined
            m.rollbacks = st.rollbacks
            m.log = s.settings.log
            m.templates = UInt32(st.templates)
            m.templatesEvicted = st.templatesEvicted
            m.linesTruncated = st.linesTruncated
            m.linesRepaired = st.linesRepaired
            m.idleSteps = st.idleSteps
            m.pendingSteps = st.pendingSteps
            return m
        }
        return hb
    }

    // MARK: Snapshot server

    /// Replies (and requests) the snapshot server queues for one peer.
    static let snapshotRepliesQueued = 4

    func runSnapshotServer(ready: Promise<String>) {
        do {
            let rep = try Socket(context, .rep)
            try secure(rep)
            try rep.setMaximumMessageSize(64 << 10)  // a SnapshotRequest is a name and a kind
            // A peer that sends requests without reading the replies (a DEALER) has at most
            // `snapshotRepliesQueued` of them queued here; the ones beyond are dropped, not held.
            try rep.setHighWaterMarks(send: Self.snapshotRepliesQueued, receive: Self.snapshotRepliesQueued)
            let endpoint = try rep.bind(Endpoint.bindable(configuration.snapshots))
            ready.fulfil(endpoint)
            while !serversStopping {
                beat(.snapshots)
                guard try rep.poll(timeout: 50), let frames = try rep.receive(dontWait: true) else {
                    try checkInjectedFault("eddy-snapshots")
                    continue
                }
                snapshotRequests.add()
                var reply = Eddy_V1_SnapshotReply()
                if frames.count != 1 {
                    reply.error = Wire.error(.badFrames, "a snapshot request is one frame, got \(frames.count)", stream: nil)
                } else if let request = try? Eddy_V1_SnapshotRequest(serializedBytes: frames[0]) {
                    // An unspecified kind asks for the autoencoder's; a kind this build does not know, for none.
                    let kind: String? =
                        switch request.kind {
                        case .moco: "moco"
                        case .autoencoder, .unspecified: "autoencoder"
                        default: nil
                        }
                    if let kind, let body = snapshotsLock.withLock({ latestSnapshots["\(request.stream)/\(kind)"] }) {
                        // The snapshot as published, not decoded and encoded again for each request.
                        try rep.send([Wire.snapshotReply(body)])
                        continue
                    } else {
                        let what = kind ?? "model of kind \(request.kind.rawValue)"
                        reply.error = Wire.error(
                            .notFound, "no \(what) snapshot of stream \"\(request.stream)\" yet", stream: request.stream)
                    }
                } else {
                    reply.error = Wire.error(.undecodable, "the request is not a SnapshotRequest", stream: nil)
                }
                try rep.send([try reply.serializedBytes()])
            }
        } catch {
            ready.fail(error)
            if (error as? ZMQError)?.isTerminated != true { threadFailed("eddy-snapshots", error) }
        }
    }
}

extension Daemon {
    // MARK: Authentication

    /// SIGHUP: reads the allow-list again, with the checks of a start. A list that cannot be read, or
    /// is empty, is refused and the one in force kept. Says how many keys are let in, or why not.
    @discardableResult
    public func reloadAllowList() -> Result<Int, Error> {
        guard let security else {
            logger.notice("reload asked (SIGHUP): a plaintext daemon has no allow-list to read again")
            return .failure(KeyFile.Problem("the daemon has no CURVE keys: nothing to reload"))
        }
        do {
            let keys = try Security.readAllowList(configuration)
            security.allowList.replace(with: keys)
            logger.notice("allow-list reloaded", metadata: ["keys": "\(keys.count)", "path": "\(configuration.curveAllowedClients)"])
            return .success(keys.count)
        } catch {
            allowListReloadFailures.add()
            logger.error("allow-list not reloaded; the one in force is kept", metadata: ["error.message": "\(error)"])
            return .failure(error)
        }
    }

    /// The ZAP handler (RFC 27) of the daemon's context: libzmq asks it about every CURVE client of
    /// every socket before the client's first message is taken; clients not on the allow-list are
    /// turned away, counted and logged (the first ten, then every thousandth).
    func runAuthenticator(_ security: Security, ready: Promise<String>) {
        do {
            try checkInjectedFault("eddy-auth")
            let rep = try Socket(context, .rep)
            try rep.bind("inproc://zeromq.zap.01")
            ready.fulfil("eddy-auth")
            while !authenticatorStopping {
                beat(.authenticator)
                guard try rep.poll(timeout: 50), let request = try rep.receive(dontWait: true) else { continue }
                let answer = security.reply(to: request)
                if !answer.accepted {
                    if let n = handshakesRefused.addForLog() {
                        logger.warning(
                            "client refused",
                            metadata: ["client.address": "\(answer.address)", "error.message": "\(answer.why)", "refused.total": "\(n)"])
                    }
                }
                try rep.send(answer.frames)
            }
        } catch {
            ready.fail(error)
            if (error as? ZMQError)?.isTerminated != true { threadFailed("eddy-auth", error) }
        }
    }
}

/// A value one thread hands another once: a bound endpoint, or the error that prevented it.
public final class Promise<T: Sendable>: @unchecked Sendable {
    private let lock = Lock()
    private let semaphore = DispatchSemaphore(value: 0)
    private var result: Result<T, Error>?

    public init() {}

    public func fulfil(_ value: T) { settle(.success(value)) }
    public func fail(_ error: Error) { settle(.failure(error)) }

    private func settle(_ r: Result<T, Error>) {
        let first = lock.withLock { () -> Bool in
            guard result == nil else { return false }
            result = r
            return true
        }
        if first { semaphore.signal() }
    }

    /// Blocks until the value or the error is there.
    public func wait() throws -> T {
        semaphore.wait()
        semaphore.signal()
        return try lock.withLock { result! }.get()
    }
}

/// A fault a test injected into a daemon thread.
enum DaemonFault: Error, CustomStringConvertible {
    case injected(String)
    var description: String {
        switch self { case .injected(let thread): "fault injected into \(thread)" }
    }
}

extension Daemon {
    /// Logs what `restore` changed of a stream's saved models to fit its settings now: a MoCo begun
    /// afresh, an autoencoder resumed under a changed learning rate, clip or normaliser horizon.
    func noteRestoredChanges(_ s: StreamPipeline) {
        if let why = s.mocoStartedAfresh {
            logger.notice(
                "a stream's contrastive model no longer fits its settings; it starts afresh, the rest of the stream resumes",
                metadata: ["stream.id": "\(s.name)", "reason": "\(why)"])
        }
        if let what = s.autoencoderRetuned {
            logger.notice(
                "a stream's autoencoder resumes under its changed training settings, its weights and calibration kept",
                metadata: ["stream.id": "\(s.name)", "changes": "\(what)"])
        }
        if let why = s.labelsDropped {
            logger.warning(
                "a stream's saved labels were dropped; send labels of at most 64 classes again for a head",
                metadata: ["stream.id": "\(s.name)", "reason": "\(why)"])
        }
    }
}
