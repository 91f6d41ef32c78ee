/// The receiving end of one ZMTP 3.1 connection (RFC 37, with RFC 26's CurveZMQ), as a PULL socket
/// speaks it, driven by bytes: the daemon reads a ZMQ_STREAM socket (raw TCP) and feeds each
/// connection's bytes here, so that it, not libzmq, decides what a message may hold before holding
/// it. A frame's size is read from its header and checked against the limit for its place in the
/// message before one byte of it is kept, and its storage against the ingest buffer's room as its
/// bytes come; a message with too many frames is refused at its first extra frame. libzmq's own
/// PULL counts whole messages, and holds a multipart message whole however many frames it has.
///
/// Not thread-safe: one per connection, used by the thread that owns the STREAM socket.
public final class ZMTPConnection {
    /// What the daemon lets a message hold.
    public struct Limits: Sendable {
        /// Frames per message, and each frame's largest size by its place (the last applies to later ones).
        public var frameBytes: [Int]
        /// Largest command (handshake, PING) frame.
        public var commandBytes = 8_192
        public init(frameBytes: [Int]) { self.frameBytes = frameBytes }
    }

    /// The handshake the server requires.
    public enum Security: Sendable {
        case null
        /// CURVE with the server's raw 32-byte secret key; `allows` says whether a client's raw
        /// long-term public key is let in.
        case curve(secretKey: [UInt8], allows: @Sendable ([UInt8]) -> Bool)
    }

    /// Why a message was refused at a frame header, or as its bytes came (the connection goes on: the
    /// rest of the message is read past; under CURVE each box's MAC is checked as it passes, and
    /// its flags byte says where the message ends).
    public enum Refusal: Equatable, Sendable {
        case tooManyFrames(Int)
        case oversized(frame: Int, bytes: Int, limit: Int)
        case overBudget(bytes: Int)
    }

    /// Why a connection ends.
    public enum End: Equatable, Sendable {
        /// The peer broke the protocol (or sent ERROR).
        case protocolError(String)
        /// The handshake was refused: the wrong mechanism, a CURVE client not on the allow-list (its
        /// long-term public key).
        case refused(String, client: [UInt8]?)
    }

    public enum Event: Sendable {
        /// Bytes for the peer.
        case send([UInt8])
        /// A PONG for the peer, which it may do without: if it cannot go (the peer does not read, or
        /// is leaving), it is dropped and nothing else changes, so the messages after its PING are
        /// still taken.
        case pong([UInt8])
        /// The handshake is done; with CURVE, the client's long-term public key.
        case ready(client: [UInt8]?)
        /// A whole message.
        case message([[UInt8]])
        /// A message refused at a frame header, with the frames taken before it (its stream name).
        case refused(Refusal, framesBefore: [[UInt8]])
        /// Close the connection (after sending what came before).
        case close(End)
    }

    /// Bytes of messages in progress held by all connections, against a bound.
    /// Shared by the connections of one socket (its owner thread's).
    public final class Budget {
        public let limit: Int
        public internal(set) var used = 0
        public init(limit: Int) { self.limit = limit }
    }

    /// CURVE handshake steps (a HELLO or an INITIATE, each three Curve25519 operations: about 0.14 ms)
    /// a socket's connections may take per second, shared by them all: a token bucket of `perSecond`
    /// holding a tenth of a second's worth (at least one). Anyone who can open a connection can
    /// send a HELLO; without this a peer opening connections as fast as it could took the owner
    /// thread's time from every producer. A step beyond the allowance waits for its turn
    /// (`awaitsHandshakeTurn`, `resume`), the connection's other bytes with it.
    public final class HandshakeAllowance {
        public let perSecond: Double, burst: Double
        private var tokens: Double
        private var last: Double
        /// Steps waiting for their turn: while any waits, a new step waits behind it.
        public internal(set) var waiting = 0
        private let clock: () -> Double
        /// Called each time a step waits for its turn.
        let waited: () -> Void

        /// `clock`: seconds, monotonic.
        public init(perSecond: Double, clock: @escaping () -> Double, waited: @escaping () -> Void = {}) {
            self.perSecond = perSecond
            self.waited = waited
            burst = max(1, perSecond / 10)
            tokens = burst
            self.clock = clock
            last = clock()
        }

        /// Takes one step's allowance if there is one (whether or not steps wait: the caller keeps
        /// their order).
        public func take() -> Bool {
            let now = clock()
            tokens = min(burst, tokens + max(0, now - last) * perSecond)
            last = now
            guard tokens >= 1 else { return false }
            tokens -= 1
            return true
        }
    }

    public static let flagMore: UInt8 = 1, flagLong: UInt8 = 2, flagCommand: UInt8 = 4

    let limits: Limits
    private var curve: CurveServer?
    private let allows: (@Sendable ([UInt8]) -> Bool)?
    private enum Phase { case greeting, hello, initiate, readyCommand, ready, closed }
    private var phase = Phase.greeting
    private var head: [UInt8] = []  // the greeting, or a frame header, so far
    private var flags: UInt8 = 0
    private var body: [UInt8] = []
    private var remaining = 0  // bytes of the current frame's body still to come
    private var inBody = false
    private var skipping = false  // the current frame is read past, not kept
    private var charged = false  // the current frame's bytes count against the budget as they come
    private var exempt = false  // ... without being refused for it (a boxed frame the size of a PING)
    private var frameSize = 0
    private var frameCharged = 0  // bytes of the budget the current frame's storage holds
    /// A CURVE box being read past (`skipping`): its first bytes until they say its nonce, MAC and
    /// flags, then its MAC's running state.
    private var skippedBox: (first: [UInt8], skip: CurveServer.Skip?)?
    private var discarding = false  // the message was refused: frames are dropped until one without MORE
    private var frames: [[UInt8]] = []
    private var outbox: [Event] = []
    /// Bytes of `budget` this connection holds (its message in progress).
    public private(set) var held = 0
    private let handshakes: HandshakeAllowance?
    /// A handshake command waiting for the allowance, and the bytes that came after it.
    private var waiting: [UInt8]?
    private var afterWaiting: [UInt8] = []

    /// `handshakes`: the socket's allowance of CURVE handshake steps (nil: no limit).
    public init(security: Security, limits: Limits, handshakes: HandshakeAllowance? = nil) {
        self.limits = limits
        self.handshakes = handshakes
        switch security {
        case .null:
            curve = nil
            allows = nil
        case .curve(let secret, let allows):
            curve = CurveServer(secretKey: secret)
            self.allows = allows
        }
    }

    public var isClosed: Bool { phase == .closed }
    /// A handshake step waits for the socket's allowance: `resume` when there may be some.
    public var awaitsHandshakeTurn: Bool { waiting != nil }
    /// The handshake is done: messages may come.
    public var isReady: Bool { phase == .ready }

    /// The server's greeting, to send as soon as the connection opens: signature, version 3.1, the
    /// mechanism, as-server.
    public var greeting: [UInt8] {
        var g: [UInt8] = [0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 1]
        let mechanism = Array((curve == nil ? "NULL" : "CURVE").utf8)
        g += mechanism + [UInt8](repeating: 0, count: 20 - mechanism.count)
        g.append(1)
        g += [UInt8](repeating: 0, count: 31)
        return g
    }

    /// Takes the peer's next bytes; says what follows from them, in order.
    public func feed(_ bytes: UnsafeBufferPointer<UInt8>, budget: Budget) -> [Event] {
        var events: [Event] = []
        feed(bytes, budget: budget) { events.append($0) }
        return events
    }

    /// Takes the peer's next bytes and hands `emit` what follows from them, in order.
    public func feed(_ bytes: UnsafeBufferPointer<UInt8>, budget: Budget, emit: (Event) throws -> Void) rethrows {
        var events = outbox  // kept between calls: no allocation per chunk
        outbox = []
        defer {
            events.removeAll(keepingCapacity: true)
            outbox = events
        }
        func flush() throws {
            for e in events { try emit(e) }
            events.removeAll(keepingCapacity: true)
        }
        var i = 0
        let n = bytes.count
        while i < n && phase != .closed {
            if waiting != nil {
                // A peer awaiting WELCOME or READY has nothing to send: what it sends anyway is kept
                // for after its step, up to a command's size.
                guard afterWaiting.count + (n - i) <= limits.commandBytes else {
                    close(.protocolError("more than \(limits.commandBytes) bytes sent before its handshake was answered"), &events, budget: budget)
                    break
                }
                afterWaiting.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[i..<n]))
                break
            }
            if phase == .greeting {
                let take = min(64 - head.count, n - i)
                head.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[i..<(i + take)]))
                i += take
                if head.count == 64 { greeted(&events) }
                continue
            }
            if inBody {
                let take = min(remaining, n - i)
                let whole = body.isEmpty && take == remaining
                if charged && !skipping && body.count + take > frameCharged {
                    // The budget counts the frame's storage as it grows with the bytes that come, not
                    // the size its header announces: a header alone (nine bytes announcing 16 MiB)
                    // held that much for ingest_message_seconds, and four such took every other
                    // producer's messages (from review). Storage grows to the frame's size at most,
                    // doubling from 64 KiB, and what it takes is what is charged.
                    let want = whole ? take : min(frameSize, max(body.count + take, 2 * frameCharged, Self.firstReservation))
                    if !exempt && budget.used + want - frameCharged > budget.limit {
                        refuse(.overBudget(bytes: frameSize), &events, budget: budget)
                        if phase == .closed { break }
                    } else {
                        budget.used += want - frameCharged
                        held += want - frameCharged
                        frameCharged = want
                        if !whole { body.reserveCapacity(want) }
                    }
                }
                if skipping && skippedBox != nil {
                    passSkipped(UnsafeBufferPointer(rebasing: bytes[i..<(i + take)]), &events, budget: budget)
                    if phase == .closed { break }
                }
                if !skipping {
                    // A whole frame in the chunk is copied once, to an array of its size; one that
                    // comes in parts goes into the storage charged for it above.
                    if whole {
                        body = Array(UnsafeBufferPointer(rebasing: bytes[i..<(i + take)]))
                    } else {
                        body.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[i..<(i + take)]))
                    }
                }
                remaining -= take
                i += take
                if remaining == 0 { frameDone(&events, budget: budget) }
                try flush()
                continue
            }
            // A frame header: flags, then a 1- or 8-byte size; read in place when it is all here.
            if head.isEmpty && bytes[i] & 0xF8 == 0 {
                let flags = bytes[i]
                let sizeBytes = flags & Self.flagLong != 0 ? 8 : 1
                if n - i > sizeBytes {
                    var size: UInt64 = 0
                    for k in 1...sizeBytes { size = size << 8 | UInt64(bytes[i + k]) }
                    i += 1 + sizeBytes
                    begin(flags: flags, size: size, &events, budget: budget)
                    if phase != .closed && inBody && remaining == 0 { frameDone(&events, budget: budget) }
                    try flush()
                    continue
                }
            }
            head.append(bytes[i])
            i += 1
            let flags = head[0]
            guard flags & 0xF8 == 0 else {
                close(.protocolError("frame flags \(flags) have reserved bits set"), &events, budget: budget)
                break
            }
            let sizeBytes = flags & Self.flagLong != 0 ? 8 : 1
            guard head.count == 1 + sizeBytes else { continue }
            let size = head[1...].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            head.removeAll(keepingCapacity: true)
            begin(flags: flags, size: size, &events, budget: budget)
            if phase != .closed && inBody && remaining == 0 { frameDone(&events, budget: budget) }
            try flush()
        }
        try flush()
    }


    /// Takes the waiting handshake step if the allowance has room now, then what came after it.
    /// Nothing happens while it has none (or no step waits).
    public func resume(budget: Budget, emit: (Event) throws -> Void) rethrows {
        guard let frame = waiting, phase != .closed, handshakes?.take() ?? true else { return }
        waiting = nil
        handshakes?.waiting -= 1
        var events: [Event] = []
        step(frame, &events, budget: budget)
        for e in events { try emit(e) }
        let rest = afterWaiting
        afterWaiting = []
        if !rest.isEmpty && phase != .closed {
            try rest.withUnsafeBufferPointer { try feed($0, budget: budget, emit: emit) }
        }
    }

    /// Ends the connection from this side (or after the peer went): gives back what it held.
    public func release(budget: Budget) {
        budget.used -= held
        held = 0
        phase = .closed
        body = []
        frames = []
        if waiting != nil { handshakes?.waiting -= 1 }
        waiting = nil
        afterWaiting = []
    }

    /// The peer closed the connection: gives back what it held, and says why it ended if that counts
    /// (a refusal under CURVE, a protocol error under NULL). A libzmq client whose security differs
    /// from ours closes as soon as it reads our greeting, before its own is complete.
    public func peerClosed(budget: Budget) -> End? {
        // A peer that left while its step waited is no refusal (a HELLO flood's connections close
        // so; counted as refused, from review).
        let phase = waiting == nil ? self.phase : .initiate
        release(budget: budget)
        switch phase {
        case .greeting, .hello:
            // Refused only where the daemon asks for keys: a plaintext daemon refuses no one.
            let why = "the client left in the greeting (as a client whose security is not \(curve == nil ? "NULL" : "CURVE") does)"
            return curve == nil ? .protocolError(why) : .refused(why, client: nil)
        default:
            return nil
        }
    }

    // MARK: Steps

    private func greeted(_ events: inout [Event]) {
        let g = head
        head.removeAll(keepingCapacity: true)
        guard g[0] == 0xFF, g[9] & 1 == 1, g[10] >= 3 else {
            phase = .closed
            events.append(.close(.protocolError("not a ZMTP 3 peer")))
            return
        }
        let mechanism = String(decoding: g[12..<32].prefix { $0 != 0 }, as: UTF8.self)
        let ours = curve == nil ? "NULL" : "CURVE"
        guard mechanism == ours else {
            phase = .closed
            events.append(.close(.refused("the client's security is \(mechanism), this daemon requires \(ours)", client: nil)))
            return
        }
        if curve == nil {
            events.append(.send(Self.command(Self.readyBody)))
            phase = .readyCommand
        } else {
            phase = .hello
        }
    }

    /// A frame header has been read.
    private func begin(flags f: UInt8, size: UInt64, _ events: inout [Event], budget: Budget) {
        flags = f
        inBody = true
        skipping = false
        charged = false
        frameCharged = 0
        body = []
        let isCommand = f & Self.flagCommand != 0
        // Handshake frames, and every command, are small; CURVE sends its messages as MESSAGE frames
        // (command or not, by the libzmq version).
        let boxed = curve != nil && phase == .ready
        if phase != .ready || (isCommand && !boxed) {
            guard size <= UInt64(limits.commandBytes) else {
                close(.protocolError("command frame of \(size) bytes"), &events, budget: budget)
                return
            }
            guard isCommand || phase == .ready else {
                close(.protocolError("a message before the handshake ended"), &events, budget: budget)
                return
            }
            remaining = Int(size)
            return
        }
        if discarding {
            remaining = Int(clamping: size)
            frameSize = remaining
            if boxed && size <= UInt64(Self.smallBoxedFrame + CurveServer.messageOverhead) {
                // A box no larger than a PING is opened, not read past: a heartbeat libzmq slipped
                // between the refused message's frames gets its PONG (a producer whose PINGs go
                // unanswered drops its connection), and its flags say whether the message goes on.
                charged = true
                exempt = true
                return
            }
            skipping = true
            if boxed { skippedBox = ([], nil) }
            return
        }
        let index = frames.count
        let overhead = boxed ? CurveServer.messageOverhead : 0
        let content = size >= UInt64(overhead) ? Int(clamping: size - UInt64(overhead)) : 0
        // A boxed frame that starts a message and is no larger than a PING (what it is shows only
        // once it is opened) passes the limits: a producer's heartbeat is neither refused for the
        // budget other connections hold nor for a `max_stream_name_bytes` under its size, which
        // closed the connection. Such a frame holds at most `smallBoxedFrame` bytes over the budget
        // on each connection; a stream name that passes this way is still checked at admission.
        let small = boxed && index == 0 && content <= Self.smallBoxedFrame
        remaining = Int(clamping: size)
        frameSize = remaining
        if index >= limits.frameBytes.count {
            refuse(.tooManyFrames(index + 1), &events, budget: budget)
        } else if !small && content > limits.frameBytes[index] {
            refuse(.oversized(frame: index, bytes: content, limit: limits.frameBytes[index]), &events, budget: budget)
        } else {
            // Within its limits (each of which the budget holds); the budget is charged as its bytes come.
            charged = true
            exempt = small
        }
    }

    /// Refuses the message in progress at its current frame (its header, or its bytes as they
    /// come), and reads past the rest of the message: under NULL to the frame without MORE; under
    /// CURVE, where the flags are inside each box, box by box (`passSkipped`).
    private func refuse(_ refusal: Refusal, _ events: inout [Event], budget: Budget) {
        events.append(.refused(refusal, framesBefore: frames))
        dropMessage(budget: budget)
        frameCharged = 0
        let read = body
        body = []
        skipping = true
        charged = false
        if curve != nil {
            // Where the message ends is in its boxes' flags: each is read past with its MAC checked
            // (the box so far first), until one without MORE. Before, the connection was closed, and
            // the producer's messages read ahead behind it were lost uncounted (from review).
            discarding = true
            skippedBox = ([], nil)
            read.withUnsafeBufferPointer { passSkipped($0, &events, budget: budget) }
        } else {
            discarding = flags & Self.flagMore != 0
        }
    }

    /// Bytes of the CURVE box being read past: its first `messageOverhead` are kept until they
    /// begin the skip; the rest only pass through its MAC.
    private func passSkipped(_ bytes: UnsafeBufferPointer<UInt8>, _ events: inout [Event], budget: Budget) {
        guard var box = skippedBox, bytes.count > 0 else { return }
        var rest = bytes[...]
        if box.skip == nil {
            let take = min(CurveServer.messageOverhead - box.first.count, rest.count)
            box.first += rest.prefix(take)
            rest = rest.dropFirst(take)
            if box.first.count == CurveServer.messageOverhead {
                do {
                    box.skip = try curve!.beginSkip(box.first)
                } catch {
                    close(.protocolError(error.why), &events, budget: budget)
                    return
                }
            }
        }
        if !rest.isEmpty { box.skip!.update(UnsafeBufferPointer(rebasing: rest)) }
        skippedBox = box
    }

    /// A frame's body has been read (or read past).
    private func frameDone(_ events: inout [Event], budget: Budget) {
        inBody = false
        if skipping {
            skipping = false
            if let box = skippedBox {
                skippedBox = nil
                do throws(CurveServer.Failure) {
                    guard let skip = box.skip else { throw CurveServer.Failure("malformed CURVE MESSAGE") }
                    let inner = try curve!.finish(skip)
                    // A boxed command (a heartbeat slipped between the message's frames) is no
                    // part of it; the message ends at a frame without MORE.
                    if inner & CurveServer.flagCommand == 0 && inner & CurveServer.flagMore == 0 { discarding = false }
                } catch {
                    close(.protocolError(error.why), &events, budget: budget)
                }
                return
            }
            if discarding && flags & Self.flagMore == 0 { discarding = false }
            return
        }
        let frame = body
        body = []
        switch phase {
        case .hello, .initiate, .readyCommand:
            handshake(frame, &events, budget: budget)
        case .ready:
            var flags = self.flags, payload = frame
            if curve != nil {
                do {
                    let inner: UInt8
                    (inner, payload) = try curve!.open(message: frame)
                    // A MESSAGE's own flags byte: MORE in bit 0, COMMAND in bit 1 (RFC 26, as libzmq
                    // boxes its heartbeats), not a frame header's bits.
                    flags = (inner & CurveServer.flagMore != 0 ? Self.flagMore : 0)
                        | (inner & CurveServer.flagCommand != 0 ? Self.flagCommand : 0)
                } catch {
                    close(.protocolError(error.why), &events, budget: budget)
                    return
                }
            }
            if flags & Self.flagCommand != 0 || discarding {
                // A boxed command (a heartbeat's PING) was held as a message frame is: it is no part
                // of a message, so its bytes go back now; so do a refused message's small boxes.
                if curve != nil {
                    budget.used -= frameCharged
                    held -= frameCharged
                    frameCharged = 0
                }
                if flags & Self.flagCommand != 0 {
                    command(payload, &events, budget: budget)
                } else if flags & Self.flagMore == 0 {
                    discarding = false
                }
                return
            }
            frames.append(payload)
            if flags & Self.flagMore == 0 {
                events.append(.message(frames))
                frames = []
                budget.used -= held
                held = 0
            }
        case .greeting, .closed:
            break
        }
    }

    private func handshake(_ frame: [UInt8], _ events: inout [Event], budget: Budget) {
        // CURVE's costly steps take the socket's allowance, or wait for it.
        // A step waits while others wait (their turns come first, in the order they came) or while
        // the allowance has none.
        if phase == .hello || phase == .initiate, let handshakes, handshakes.waiting > 0 || !handshakes.take() {
            waiting = frame
            handshakes.waiting += 1
            handshakes.waited()
            return
        }
        step(frame, &events, budget: budget)
    }

    private func step(_ frame: [UInt8], _ events: inout [Event], budget: Budget) {
        do throws(CurveServer.Failure) {
            switch phase {
            case .hello:
                events.append(.send(Self.command(try curve!.welcome(hello: frame))))
                phase = .initiate
            case .initiate:
                let (client, metadata) = try curve!.initiate(frame)
                try Self.checkPeer(metadata)
                guard allows?(client) == true else {
                    events.append(.send(Self.command(Self.error("400"))))
                    close(.refused("client key not on the allow-list", client: client), &events, budget: budget)
                    return
                }
                events.append(.send(Self.command(curve!.ready(metadata: Self.metadata))))
                phase = .ready
                events.append(.ready(client: client))
            case .readyCommand:
                guard frame.starts(with: CurveServer.name("READY")) else {
                    throw CurveServer.Failure("expected READY")
                }
                try Self.checkPeer(Array(frame[6...]))
                phase = .ready
                events.append(.ready(client: nil))
            default:
                break
            }
        } catch {
            close(.protocolError(error.why), &events, budget: budget)
        }
    }

    /// What a frame that comes in parts reserves at its first part; it grows as the rest comes.
    static let firstReservation = 1 << 16

    /// The longest PING context RFC 37 allows.
    static let maximumPingContext = 16
    /// The largest boxed frame taken for what it may be, a PING (its name, TTL and context: 23 bytes).
    static let smallBoxedFrame = 7 + maximumPingContext

    /// A command after the handshake: PING gets its PONG, ERROR ends the connection, others pass.
    private func command(_ c: [UInt8], _ events: inout [Event], budget: Budget) {
        if c.starts(with: CurveServer.name("PING")), c.count >= 7 {
            // ping-context = 0*16OCTET (RFC 37): a longer context is not echoed back (8 KiB a PONG,
            // a thousand of them queued for a peer that does not read).
            guard c.count - 7 <= Self.maximumPingContext else {
                close(.protocolError("a PING context of \(c.count - 7) bytes (at most 16)"), &events, budget: budget)
                return
            }
            let pong = CurveServer.name("PONG") + c[7...]
            events.append(.pong(curve == nil ? Self.command(pong) : Self.frame(curve!.seal(flags: CurveServer.flagCommand, payload: pong), flags: 0)))
        } else if c.starts(with: CurveServer.name("ERROR")) {
            close(.protocolError("the peer sent ERROR"), &events, budget: budget)
        }
    }

    private func dropMessage(budget: Budget) {
        frames = []
        budget.used -= held
        held = 0
    }

    private func close(_ end: End, _ events: inout [Event], budget: Budget) {
        release(budget: budget)
        inBody = false
        events.append(.close(end))
    }

    // MARK: Wire

    /// Our metadata: we are a PULL socket.
    static let metadata: [UInt8] = property("Socket-Type", "PULL")
    static let readyBody: [UInt8] = CurveServer.name("READY") + metadata

    static func property(_ name: String, _ value: String) -> [UInt8] {
        let v = Array(value.utf8)
        return CurveServer.name(name) + CurveServer.bigEndian(UInt64(v.count)).suffix(4) + v
    }

    static func error(_ reason: String) -> [UInt8] { CurveServer.name("ERROR") + [UInt8(reason.utf8.count)] + Array(reason.utf8) }

    /// The peer must be a PUSH socket (RFC 37's compatible pairs: PULL takes PUSH).
    static func checkPeer(_ metadata: [UInt8]) throws(CurveServer.Failure) {
        var i = 0
        var type: String?
        while i < metadata.count {
            let nameLength = Int(metadata[i])
            guard i + 1 + nameLength + 4 <= metadata.count else { throw .init("malformed metadata") }
            let name = String(decoding: metadata[(i + 1)..<(i + 1 + nameLength)], as: UTF8.self)
            i += 1 + nameLength
            let valueLength = Int(CurveServer.uint64(metadata[i..<(i + 4)]))
            i += 4
            guard valueLength <= metadata.count - i else { throw .init("malformed metadata") }
            if name.lowercased() == "socket-type" { type = String(decoding: metadata[i..<(i + valueLength)], as: UTF8.self) }
            i += valueLength
        }
        guard type == "PUSH" else { throw .init("a \(type ?? "peer without a Socket-Type") cannot send to PULL") }
    }

    /// A command frame.
    static func command(_ body: [UInt8]) -> [UInt8] { frame(body, flags: flagCommand) }

    static func frame(_ body: [UInt8], flags: UInt8) -> [UInt8] {
        if body.count <= 255 { return [flags, UInt8(body.count)] + body }
        return [flags | flagLong] + CurveServer.bigEndian(UInt64(body.count)) + body
    }
}
