import EddyProtocol
import ZMTP
import ZeroMQ

/// The ingest socket's producer connections. Ingest binds a ZMQ_STREAM socket (raw TCP) and speaks
/// ZMTP itself (`ZMTPConnection`), so that what it holds is bounded in bytes: libzmq reads at most
/// `ingest_connection_bytes` ahead per connection (then TCP pushes back), at most
/// `max_ingest_connections` connections are kept, a message's frames are checked against their
/// limits at each frame header, before any is held, and their bytes against the
/// `ingest_buffer_bytes` budget as they arrive.
/// Ingest thread only.
struct IngestConnections {
    /// By routing id (libzmq's are 5 bytes: a zero and a counter), with the id's bytes to send back,
    /// when it opened, since when its message in progress has held bytes of the budget (nil when it
    /// holds none), and when it last finished a message (or opened; monotonic seconds).
    var open: [UInt64: Entry] = [:]
    typealias Entry = (id: [UInt8], connection: ZMTPConnection, opened: Double, holding: Double?, active: Double)
    /// Connections found gone when the daemon wrote to them: their disconnect notice is still to
    /// come, and must not be taken for a new connection.
    var gone: Set<UInt64> = []
    /// Connections the daemon has ended whose close could not be sent (their queue to the peer was
    /// full: a peer that does not read): the close is sent again at each maintenance tick, and until
    /// it goes they count toward `maximum` (their bytes are read past).
    var unclosed: [UInt64: [UInt8]] = [:]
    /// Connections whose CURVE handshake step waits for `handshakes`, oldest first (a closed one is
    /// passed by when its turn comes), and the same as a set.
    var waiting: [UInt64] = []
    var waitingKeys: Set<UInt64> = []
    /// CURVE handshake steps allowed per second (`ingest_handshakes_per_second`); nil without CURVE
    /// or without a limit.
    let handshakes: ZMTPConnection.HandshakeAllowance?
    /// Seconds a connection may take to finish its handshake before it is closed.
    let handshakeSeconds: Double
    /// With every slot taken, a connection this long in its handshake is closed for a newcomer (a
    /// producer's handshake takes two round trips: milliseconds).
    static let handshakeGrace = 1.0
    /// Seconds a message may be in progress (holding bytes of the budget) before it is closed.
    let messageSeconds: Double
    /// With every slot taken, a newcomer closes the connection that has gone longest without a
    /// message, if that is at least this long (`ingest_idle_seconds`: peers that finish a handshake
    /// and go silent cannot keep producers out for good, while busy producers are never closed for one).
    let idleBeforeEviction: Double
    let budget: ZMTPConnection.Budget
    let security: ZMTPConnection.Security
    let limits: ZMTPConnection.Limits
    let maximum: Int

    init(_ c: DaemonConfiguration, security: Security?, handshakesWaited: Counter = Counter()) {
        budget = .init(limit: c.ingestBufferBytes)
        limits = .init(frameBytes: [c.maxStreamNameBytes, c.maxMessageBytes])
        maximum = c.maxIngestConnections
        handshakeSeconds = c.ingestHandshakeSeconds
        messageSeconds = c.ingestMessageSeconds
        idleBeforeEviction = c.ingestIdleSeconds
        if let security, let secret = Curve.decode(security.server.secretKey) {
            let list = security.allowList
            self.security = .curve(secretKey: secret, allows: { list.contains(raw: $0) })
            handshakes = c.ingestHandshakesPerSecond > 0
                ? .init(perSecond: c.ingestHandshakesPerSecond, clock: Daemon.monotonic, waited: { handshakesWaited.add() }) : nil
        } else {
            self.security = .null
            handshakes = nil
        }
    }
}

extension Daemon {
    /// The STREAM socket producers connect to: per-connection read-ahead in 8 KiB chunks.
    func makeIngestSocket() throws -> Socket {
        let stream = try Socket(context, .stream)
        try stream.setHighWaterMarks(send: 1000, receive: configuration.ingestChunksPerConnection)
        return stream
    }

    /// Takes what the STREAM socket has queued, at most `limit` chunks and, once `deadline`
    /// (monotonic seconds) has passed, no more: connections opening or closing, and their bytes,
    /// spoken as ZMTP. False when it had nothing.
    func takeChunks(
        _ limit: Int, from stream: borrowing Socket, connections: inout IngestConnections, run: inout Coalesced,
        publisher: borrowing Socket, until deadline: Double = .infinity
    ) throws -> Bool {
        for n in 0..<limit {
            if n & 63 == 63 && Self.monotonic() >= deadline { return true }
            let got = try stream.receiveChunk { id, data in
                guard id.count <= 8 else { return }  // not an id libzmq makes
                let key = id.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                if data.isEmpty {
                    try opened(or: key, id: Array(id), stream: stream, connections: &connections)
                    return
                }
                try serve(key, stream: stream, connections: &connections, run: &run, publisher: publisher) { c, budget, emit in
                    try c.feed(data, budget: budget, emit: emit)
                }
            }
            if !got { return n > 0 }
        }
        return true
    }

    /// Connections whose CURVE handshake step waits for the allowance (`ingest_handshakes_per_second`),
    /// in the order they came: each takes its turn while the allowance has room.
    func resumeWaiting(_ stream: borrowing Socket, connections: inout IngestConnections, run: inout Coalesced, publisher: borrowing Socket) throws {
        while let key = connections.waiting.first {
            if let c = connections.open[key]?.connection, c.awaitsHandshakeTurn {
                try serve(key, stream: stream, connections: &connections, run: &run, publisher: publisher) { c, budget, emit in
                    try c.resume(budget: budget, emit: emit)
                }
                if c.awaitsHandshakeTurn && connections.open[key] != nil { return }  // no allowance left for now
            }
            connections.waiting.removeFirst()
            connections.waitingKeys.remove(key)
        }
    }

    /// Drives connection `key` with `drive` (its next bytes, or its waiting handshake step) and acts
    /// on what follows: replies sent, messages handled, refusals published, the connection closed.
    func serve(
        _ key: UInt64, stream: borrowing Socket, connections: inout IngestConnections, run: inout Coalesced,
        publisher: borrowing Socket,
        _ drive: (ZMTPConnection, ZMTPConnection.Budget, (ZMTPConnection.Event) throws -> Void) throws -> Void
    ) throws {
        guard let (idBytes, c, _, holding, _) = connections.open[key] else { return }  // closed by us; its last bytes
        var closed = false, finished = false
        try drive(c, connections.budget) { event in
            guard !closed else { return }
            switch event {
            case .send(let bytes):
                // Handshake replies and PONGs are small; a peer that does not read them is let
                // go (counted), one that has left is forgotten.
                let sent = try Self.send([idBytes, bytes], to: stream)
                if sent != .sent {
                    c.release(budget: connections.budget)
                    connections.open[key] = nil
                    closed = true
                }
                if sent == .gone { connections.gone.insert(key) }
                if sent == .full {
                    try close(key, id: idBytes, stream: stream, connections: &connections)
                    ended(.protocolError("the producer does not read: a handshake reply or pong would block"))
                }
            case .pong(let bytes):
                // Best effort: a PONG that cannot go is dropped, and the rest of what the
                // peer sent is still read (a producer that sends a PING, its last batch
                // and leaves had that batch thrown away uncounted). A peer that has left
                // is forgotten at its disconnect notice.
                if try Self.send([idBytes, bytes], to: stream) != .sent { pongsDropped.add() }
            case .ready:
                break
            case .message(let frames):
                finished = true
                handle(frames, run: &run, publisher: publisher)
            case .refused(let refusal, let before):
                finished = true
                messagesReceived.add()
                flush(&run, publisher: publisher)
                let name = before.first.flatMap { StreamName.decode($0, maxBytes: configuration.maxStreamNameBytes).name }
                let (code, why) = Self.describe(refusal, configuration: configuration)
                // For a stream coming back, its error takes its place among the stream's messages.
                if !holdRefusal(code, why, stream: name) {
                    reject(code, why, stream: name, sequence: 0, samples: 0, publisher: publisher)
                }
            case .close(let end):
                connections.open[key] = nil
                try close(key, id: idBytes, stream: stream, connections: &connections)
                ended(end)
                closed = true
            }
        }
        // The clock of the message in progress: started by its first held bytes, and again by
        // a message begun in the chunk that finished the one before.
        guard !closed else { return }
        if finished { connections.open[key]?.active = Self.monotonic() }
        if c.held == 0 {
            if holding != nil { connections.open[key]?.holding = nil }
        } else if holding == nil || finished {
            connections.open[key]?.holding = Self.monotonic()
        }
        if c.awaitsHandshakeTurn && connections.waitingKeys.insert(key).inserted { connections.waiting.append(key) }
    }

    /// An empty chunk: the connection `key` opened (greet it, or close it when too many are open)
    /// or closed.
    func opened(or key: UInt64, id: [UInt8], stream: borrowing Socket, connections: inout IngestConnections) throws {
        if connections.gone.remove(key) != nil || connections.unclosed.removeValue(forKey: key) != nil {
            return  // the notice of a connection already forgotten, or of one whose close was still owed
        } else if let (_, c, _, _, _) = connections.open.removeValue(forKey: key) {
            if let end = c.peerClosed(budget: connections.budget) { ended(end) }
        } else if try connections.open.count + connections.unclosed.count >= connections.maximum
            && !evictIdlest(stream: stream, connections: &connections)
        {
            if let n = connectionsRefused.addForLog() {
                logger.warning(
                    "producer connection refused",
                    metadata: ["error.message": "max_ingest_connections \(connections.maximum) are open", "refused.total": "\(n)"])
            }
            _ = try Self.send([id, []], to: stream)
        } else {
            let c = ZMTPConnection(security: connections.security, limits: connections.limits, handshakes: connections.handshakes)
            // A producer gone before its greeting is sent is not kept (its disconnect notice may
            // already have been read).
            if try Self.send([id, c.greeting], to: stream) != .gone {
                let now = Self.monotonic()
                connections.open[key] = (id, c, now, nil, now)
            } else {
                connections.gone.insert(key)
            }
        }
    }

    /// Makes room for a newcomer, if it can, by closing (counted, said in the log) the connection
    /// longest in its handshake, if that is at least `handshakeGrace`, or else the ready connection
    /// that has gone longest without a message, if that is at least `idleBeforeEviction`. False if
    /// none is. Before, connections in their handshake were never closed for a newcomer: peers
    /// without a key that opened every slot and sent nothing, reopening each as it timed out, kept
    /// every producer out (from review).
    func evictIdlest(stream: borrowing Socket, connections: inout IngestConnections) throws -> Bool {
        let now = Self.monotonic()
        let grace = min(IngestConnections.handshakeGrace, connections.handshakeSeconds)
        let waiting = connections.open.filter { !$0.value.connection.isReady }.min { $0.value.opened < $1.value.opened }
        let idle = connections.open.filter { $0.value.connection.isReady && $0.value.holding == nil }
            .min { $0.value.active < $1.value.active }
        let (key, entry, note, seconds): (UInt64, IngestConnections.Entry, String, Double)
        if let (k, e) = waiting, e.opened <= now - grace {
            (key, entry, note, seconds) = (k, e, "producer connection still in its handshake closed to make room for a new one", now - e.opened)
        } else if let (k, e) = idle, e.active <= now - connections.idleBeforeEviction {
            (key, entry, note, seconds) = (k, e, "idle producer connection closed to make room for a new one", now - e.active)
        } else {
            return false
        }
        entry.connection.release(budget: connections.budget)
        connections.open[key] = nil
        try close(key, id: entry.id, stream: stream, connections: &connections)
        if let n = connectionsEvicted.addForLog() {
            logger.notice("\(note)", metadata: ["seconds": "\(Int(seconds))", "evicted.total": "\(n)"])
        }
        return true
    }

    /// Closes the connection `key` (already out of `open`), or owes its close when its queue is full.
    func close(_ key: UInt64, id: [UInt8], stream: borrowing Socket, connections: inout IngestConnections) throws {
        switch try Self.send([id, []], to: stream) {
        case .sent: break
        case .gone: connections.gone.insert(key)
        case .full: connections.unclosed[key] = id
        }
    }

    enum Delivery { case sent, full, gone }

    /// Sends `frames` (a routing id, then the bytes; empty bytes close the connection) to a producer
    /// without blocking. A producer that has left is not an error: libzmq drops its connection at
    /// once and the notice of it comes later, so a reply or a close can find it gone.
    static func send(_ frames: [[UInt8]], to stream: borrowing Socket) throws -> Delivery {
        do {
            return try stream.send(frames, dontWait: true) ? .sent : .full
        } catch let error as ZMQError where error.isUnreachable {
            return .gone
        }
    }

    /// Closes connections still in their handshake `ingest_handshake_seconds` after they opened, and
    /// those whose message has been in progress `ingest_message_seconds` (counted as protocol errors):
    /// what they held of the buffer is free for the others.
    func closeStalledConnections(_ stream: borrowing Socket, connections: inout IngestConnections) throws {
        let now = Self.monotonic()
        for (key, entry) in connections.open {
            let why: String
            if !entry.connection.isReady && entry.opened < now - connections.handshakeSeconds {
                why = "no handshake within \(connections.handshakeSeconds) s"
            } else if let since = entry.holding, since < now - connections.messageSeconds {
                why = "a message in progress for more than \(connections.messageSeconds) s (holding \(ByteCount(entry.connection.held)))"
            } else {
                continue
            }
            entry.connection.release(budget: connections.budget)
            connections.open[key] = nil
            try close(key, id: entry.id, stream: stream, connections: &connections)
            ended(.protocolError(why))
        }
        for (key, id) in connections.unclosed {
            connections.unclosed[key] = nil
            try close(key, id: id, stream: stream, connections: &connections)
        }
    }

    static func describe(_ r: ZMTPConnection.Refusal, configuration c: DaemonConfiguration) -> (Eddy_V1_ErrorCode, String) {
        switch r {
        case .tooManyFrames(let n):
            return (.badFrames, "expected 2 frames (stream, SampleBatch), got at least \(n); refused at frame \(n)")
        case .oversized(0, let bytes, _):
            return (.badStreamName, "frame 0 of \(bytes) bytes is longer than max_stream_name_bytes \(c.maxStreamNameBytes)")
        case .oversized(_, let bytes, _):
            return (.oversized, "message of \(bytes) bytes exceeds max_message_bytes \(c.maxMessageBytes)")
        case .overBudget(let bytes):
            return (.overBudget, "a frame of \(bytes) bytes does not fit in ingest_buffer_bytes \(ByteCount(c.ingestBufferBytes)) "
                        + "beside the messages in progress on other connections")
        }
    }

    /// A connection the protocol ended: refusals count as refused handshakes; both are logged (the
    /// first ten, then every thousandth).
    func ended(_ end: ZMTPConnection.End) {
        switch end {
        case .refused(let why, let client):
            if let n = handshakesRefused.addForLog() {
                let key = client.flatMap(Curve.encode).map { " \($0)" } ?? ""
                logger.warning("client refused", metadata: ["error.message": "\(why)\(key)", "refused.total": "\(n)"])
            }
        case .protocolError(let why):
            if let n = protocolErrors.addForLog() {
                logger.warning("producer connection closed", metadata: ["error.message": "\(why)", "closed.total": "\(n)"])
            }
        }
    }
}
