import Foundation
import Testing
@testable import ZMTP
import CZeroMQ
import ZeroMQ

/// A clock a test moves by hand (for `ZMTPConnection.HandshakeAllowance`).
final class ManualClock: @unchecked Sendable { var now = 0.0 }

/// A STREAM socket speaking ZMTP through `ZMTPConnection`s, as the daemon's ingest does, against
/// libzmq's own PUSH sockets (a real peer, NULL and CURVE).
final class ZMTPServerHarness {
    let context: Context
    var connections: [[UInt8]: ZMTPConnection] = [:]
    let budget: ZMTPConnection.Budget
    let security: ZMTPConnection.Security
    let limits: ZMTPConnection.Limits
    var events: [ZMTPConnection.Event] = []
    /// Changes each chunk a connection sends before it is fed (a test's damage on the wire).
    var tamper: ((inout [UInt8]) -> Void)?
    /// The connections' allowance of CURVE handshake steps, and a call made at each turn of the loop.
    let handshakes: ZMTPConnection.HandshakeAllowance?
    var tick: () -> Void = {}

    init(security: ZMTPConnection.Security = .null, limits: ZMTPConnection.Limits = .init(frameBytes: [64, 4096]),
         budget: Int = 1 << 20, handshakes: ZMTPConnection.HandshakeAllowance? = nil) throws {
        context = try Context()
        self.security = security
        self.limits = limits
        self.budget = .init(limit: budget)
        self.handshakes = handshakes
    }

    /// Sends what a connection's events ask for, and keeps the events.
    func act(_ new: [ZMTPConnection.Event], id: [UInt8], on stream: borrowing Socket) throws {
        for e in new {
            switch e {
            case .send(let bytes), .pong(let bytes): try stream.send([id, bytes])
            case .close: try stream.send([id, []])
            default: break
            }
        }
        events += new
    }

    /// Serves `stream` until `done` holds for the events so far, or 5 s pass.
    func serve(_ stream: borrowing Socket, until done: ([ZMTPConnection.Event]) -> Bool) throws {
        let deadline = Date().addingTimeInterval(5)
        while !done(events) && Date() < deadline {
            tick()
            for (id, c) in connections where c.awaitsHandshakeTurn {
                var new: [ZMTPConnection.Event] = []
                c.resume(budget: budget) { new.append($0) }
                try act(new, id: id, on: stream)
            }
            guard try stream.poll(timeout: 20), let frames = try stream.receive(dontWait: true), frames.count == 2 else { continue }
            let id = frames[0]
            if frames[1].isEmpty {
                if let c = connections.removeValue(forKey: id) {
                    if let end = c.peerClosed(budget: budget) { events.append(.close(end)) }
                } else {
                    let c = ZMTPConnection(security: security, limits: limits, handshakes: handshakes)
                    connections[id] = c
                    try stream.send([id, c.greeting])
                }
                continue
            }
            guard let c = connections[id] else { continue }
            var chunk = frames[1]
            tamper?(&chunk)
            let new = chunk.withUnsafeBufferPointer { c.feed($0, budget: budget) }
            try act(new, id: id, on: stream)
        }
    }

    var messages: [[[UInt8]]] { events.compactMap { if case .message(let m) = $0 { m } else { nil } } }
    var refusals: [ZMTPConnection.Refusal] { events.compactMap { if case .refused(let r, _) = $0 { r } else { nil } } }
    var ends: [ZMTPConnection.End] { events.compactMap { if case .close(let e) = $0 { e } else { nil } } }
}

@Suite struct ZMTPTests {
    func frames(_ texts: String...) -> [[UInt8]] { texts.map { Array($0.utf8) } }

    @Test func theGreetingAndReadyAreZMTP31Bytes() {
        let null = ZMTPConnection(security: .null, limits: .init(frameBytes: [1]))
        // Signature, version 3.1, "NULL" padded to 20, as-server, 31 zero bytes.
        #expect(null.greeting == [0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 1] + Array("NULL".utf8) + [UInt8](repeating: 0, count: 16) + [1]
            + [UInt8](repeating: 0, count: 31))
        // A NULL peer that greets gets READY (command flag, size 27, "READY", Socket-Type = PULL).
        let budget = ZMTPConnection.Budget(limit: 100)
        let greeting: [UInt8] = [0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 1] + Array("NULL".utf8) + [UInt8](repeating: 0, count: 16) + [0]
            + [UInt8](repeating: 0, count: 31)
        let events = greeting.withUnsafeBufferPointer { null.feed($0, budget: budget) }
        guard case .send(let ready)? = events.first else {
            Issue.record("no READY")
            return
        }
        #expect(ready == [4, 26, 5] + Array("READY".utf8) + [11] + Array("Socket-Type".utf8) + [0, 0, 0, 4] + Array("PULL".utf8))
        #expect(ready.count == 2 + 26)
        // A ZMTP 2 peer (signature without the final bit) is turned away.
        let old = ZMTPConnection(security: .null, limits: .init(frameBytes: [1]))
        let ends = [UInt8]([0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7E] + [UInt8](repeating: 0, count: 54)).withUnsafeBufferPointer { old.feed($0, budget: budget) }
        #expect(ends.count == 1 && old.isClosed)
    }

    @Test func aLibzmqPushDeliversWholeMessagesOneByteAtATimeOrAllAtOnce() throws {
        // Bytes fed one at a time split every header and body: the same messages come out.
        let server = try ZMTPServerHarness()
        let stream = try Socket(server.context, .stream)
        let endpoint = try stream.bind("tcp://127.0.0.1:*")
        let push = try Socket(server.context, .push)
        try push.connect(endpoint)
        let sent = (0..<50).map { i in [Array("s\(i)".utf8), [UInt8](repeating: UInt8(i), count: i * 80)] }  // up to 3,920 bytes: long frames
        for m in sent { try push.send(m) }
        try server.serve(stream) { _ in server.messages.count == sent.count }
        #expect(server.messages == sent)
        #expect(server.budget.used == 0)

        let budget = ZMTPConnection.Budget(limit: 1 << 20)
        let c = ZMTPConnection(security: .null, limits: .init(frameBytes: [64, 4096]))
        var wire: [UInt8] = [0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 1] + Array("NULL".utf8) + [UInt8](repeating: 0, count: 48)
        wire += ZMTPConnection.command(ZMTPConnection.readyBody.map { $0 }.replacingPull())
        for m in sent {
            wire += ZMTPConnection.frame(m[0], flags: 1) + ZMTPConnection.frame(m[1], flags: 0)
        }
        var out: [[[UInt8]]] = []
        for b in wire {
            for e in [b].withUnsafeBufferPointer({ c.feed($0, budget: budget) }) {
                if case .message(let m) = e { out.append(m) }
            }
        }
        #expect(out == sent)
    }

    /// The budget is charged by a frame's storage as its bytes come, not by its header: a header
    /// alone (a few bytes announcing a large frame) held its whole size for `ingest_message_seconds`,
    /// and a few such refused every other producer's messages (from review: the old code refuses `b`
    /// below). Storage grows with what comes, from 64 KiB, doubling, to the frame's size, and what it
    /// takes is what is charged (memory never exceeds the budget). A frame whose storage would
    /// overrun the budget is refused then; under NULL the rest of the message is read past and the
    /// connection goes on.
    @Test func theBudgetIsChargedAsBytesComeNotByAFramesHeader() {
        let budget = ZMTPConnection.Budget(limit: 250_000)
        func connection() -> ZMTPConnection {
            let c = ZMTPConnection(security: .null, limits: .init(frameBytes: [16, 1_000_000]))
            var wire: [UInt8] = [0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 1] + Array("NULL".utf8) + [UInt8](repeating: 0, count: 48)
            wire += ZMTPConnection.command(ZMTPConnection.readyBody.map { $0 }.replacingPull())
            _ = wire.withUnsafeBufferPointer { c.feed($0, budget: budget) }
            return c
        }
        func feed(_ c: ZMTPConnection, _ bytes: [UInt8]) -> [ZMTPConnection.Event] { bytes.withUnsafeBufferPointer { c.feed($0, budget: budget) } }
        func messages(_ e: [ZMTPConnection.Event]) -> [[[UInt8]]] { e.compactMap { if case .message(let m) = $0 { m } else { nil } } }
        func refusals(_ e: [ZMTPConnection.Event]) -> [ZMTPConnection.Refusal] { e.compactMap { if case .refused(let r, _) = $0 { r } else { nil } } }
        let a = connection(), b = connection()
        let big = [UInt8](repeating: 3, count: 200_000)
        let part = ZMTPConnection.frame(Array("a".utf8), flags: 1) + ZMTPConnection.frame(big, flags: 0)
        let header = part.count - big.count
        #expect(feed(a, Array(part.prefix(header))).isEmpty && a.held == 1 && budget.used == 1, "the header holds nothing; frame 0 its byte")
        #expect(feed(a, Array(part[header..<(header + 100)])).isEmpty && a.held == 1 + 65_536, "100 bytes: the first 64 KiB of storage")
        let other = [Array("b".utf8), [UInt8](repeating: 4, count: 150_000)]
        let taken = feed(b, ZMTPConnection.frame(other[0], flags: 1) + ZMTPConnection.frame(other[1], flags: 0))
        #expect(messages(taken) == [other] && refusals(taken).isEmpty)
        // The rest in 8 KiB parts: storage doubles up to the frame's size, never past it.
        var rest = Array(part.dropFirst(header + 100))[...], most = 0
        var done: [[[UInt8]]] = []
        while !rest.isEmpty {
            done += messages(feed(a, Array(rest.prefix(8192))))
            rest = rest.dropFirst(8192)
            most = max(most, a.held)
        }
        #expect(done == [[Array("a".utf8), big]] && most == 1 + big.count && budget.used == 0)
        // Both under way: the storage that would overrun the budget is refused as the bytes come.
        _ = feed(a, Array(part.prefix(header + 150_000)))
        let refused = feed(b, Array(part.prefix(header + 150_000)))
        #expect(refusals(refused) == [.overBudget(bytes: 200_000)] && b.held == 0 && !b.isClosed)
        let after = feed(b, Array(part.dropFirst(header + 150_000)) + ZMTPConnection.frame(Array("b".utf8), flags: 1) + ZMTPConnection.frame([1], flags: 0))
        #expect(messages(after) == [[Array("b".utf8), [1]]], "the refused message is read past; the next one is taken")
        #expect(messages(feed(a, Array(part.dropFirst(header + 150_000)))) == [[Array("a".utf8), big]] && budget.used == 0)
    }

    /// From review: a PING's context is at most 16 bytes (RFC 37); a longer one ends the connection
    /// instead of being echoed back (8 KiB a PONG, a thousand queued for a peer that does not read).
    /// A PONG is its own event, which the daemon sends best-effort: the message after the PING is
    /// still delivered whatever becomes of the PONG.
    @Test func aPingsContextIsAtMostSixteenBytesAndItsPongIsBestEffort() {
        func connection() -> (ZMTPConnection, ZMTPConnection.Budget) {
            let c = ZMTPConnection(security: .null, limits: .init(frameBytes: [64, 4096]))
            let budget = ZMTPConnection.Budget(limit: 1 << 20)
            var wire: [UInt8] = [0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 1] + Array("NULL".utf8) + [UInt8](repeating: 0, count: 48)
            wire += ZMTPConnection.command(ZMTPConnection.readyBody.map { $0 }.replacingPull())
            _ = wire.withUnsafeBufferPointer { c.feed($0, budget: budget) }
            return (c, budget)
        }
        func ping(_ context: Int) -> [UInt8] {
            ZMTPConnection.command([4] + Array("PING".utf8) + [0, 10] + [UInt8](repeating: 0x61, count: context))
        }
        let (c, budget) = connection()
        let wire = ping(16) + ZMTPConnection.frame(Array("s".utf8), flags: 1) + ZMTPConnection.frame([1, 2], flags: 0)
        let events = wire.withUnsafeBufferPointer { c.feed($0, budget: budget) }
        let pongs = events.compactMap { if case .pong(let b) = $0 { b } else { nil } }
        #expect(pongs == [ZMTPConnection.command([4] + Array("PONG".utf8) + [UInt8](repeating: 0x61, count: 16))])
        #expect(events.contains { if case .message(let m) = $0 { m == [Array("s".utf8), [1, 2]] } else { false } })
        let (long, longBudget) = connection()
        let ended = ping(17).withUnsafeBufferPointer { long.feed($0, budget: longBudget) }
        #expect(long.isClosed && !ended.contains { if case .pong = $0 { true } else { false } })
    }

    @Test func extraFramesAndOversizedFramesAreRefusedAtTheirHeaderAndTheConnectionGoesOn() throws {
        let server = try ZMTPServerHarness(limits: .init(frameBytes: [16, 1000]))
        let stream = try Socket(server.context, .stream)
        let push = try Socket(server.context, .push)
        try push.connect(try stream.bind("tcp://127.0.0.1:*"))
        try push.send(frames("a", "b", "c", "d"))  // four frames
        try push.send([Array("big".utf8), [UInt8](repeating: 7, count: 5000)])  // frame 1 over 1,000
        try push.send([[UInt8](repeating: 65, count: 40), [1]])  // frame 0 over 16
        try push.send(frames("ok", "fine"))
        try server.serve(stream) { _ in server.messages.count == 1 }
        #expect(server.refusals == [.tooManyFrames(3), .oversized(frame: 1, bytes: 5000, limit: 1000), .oversized(frame: 0, bytes: 40, limit: 16)])
        // The refused big frame names its stream: the frames before it.
        let named = server.events.compactMap { if case .refused(.oversized(1, _, _), let before) = $0 { before } else { nil } }
        #expect(named == [frames("big")])
        #expect(server.messages == [frames("ok", "fine")])
        #expect(server.ends.isEmpty && server.budget.used == 0)
    }

    @Test func aFrameThatWouldOverrunTheBufferIsRefused() throws {
        let server = try ZMTPServerHarness(limits: .init(frameBytes: [16, 100_000]), budget: 10_000)
        let stream = try Socket(server.context, .stream)
        let push = try Socket(server.context, .push)
        try push.connect(try stream.bind("tcp://127.0.0.1:*"))
        try push.send([Array("s".utf8), [UInt8](repeating: 1, count: 20_000)])
        try push.send([Array("s".utf8), [UInt8](repeating: 1, count: 9_000)])
        try server.serve(stream) { _ in server.messages.count == 1 }
        #expect(server.refusals == [.overBudget(bytes: 20_000)])
        #expect(server.messages.map { $0[1].count } == [9_000])
        #expect(server.budget.used == 0)
    }

    @Test func curveLetsInAllowedKeysOnlyAndRefusesPlaintext() throws {
        let serverKeys = try Curve.generate(), known = try Curve.generate(), unknown = try Curve.generate()
        let knownRaw = Curve.decode(known.publicKey)!
        let server = try ZMTPServerHarness(security: .curve(secretKey: Curve.decode(serverKeys.secretKey)!, allows: { $0 == knownRaw }))
        let stream = try Socket(server.context, .stream)
        let endpoint = try stream.bind("tcp://127.0.0.1:*")
        let plain = try Socket(server.context, .push), stranger = try Socket(server.context, .push), friend = try Socket(server.context, .push)
        try stranger.makeCurveClient(serverKey: serverKeys.publicKey, keys: unknown)
        try friend.makeCurveClient(serverKey: serverKeys.publicKey, keys: known)
        try plain.connect(endpoint)
        try stranger.connect(endpoint)
        try friend.connect(endpoint)
        _ = try plain.send(frames("p", "plain"), dontWait: true)
        _ = try stranger.send(frames("u", "stranger"), dontWait: true)
        let big = [UInt8](repeating: 9, count: 3000)
        try friend.send(frames("k", "friend"))
        try friend.send([Array("k".utf8), big])
        try server.serve(stream) { _ in server.messages.count == 2 && server.ends.count >= 2 }
        #expect(server.messages == [frames("k", "friend"), [Array("k".utf8), big]])
        #expect(server.events.contains { if case .ready(let client) = $0 { client == knownRaw } else { false } })
        let refused = server.ends.compactMap { if case .refused(let why, let client) = $0 { (why, client) } else { nil } }
        #expect(refused.contains { $0.0.contains("not CURVE") && $0.1 == nil })
        #expect(refused.contains { $0.1 == Curve.decode(unknown.publicKey)! })
    }

    /// A CURVE server (every key allowed) with a PUSH client that sends heartbeats every 20 ms, has
    /// sent one message ("h", "first") and been answered at least five PINGs.
    func withHeartbeatingCurveClient(
        limits: ZMTPConnection.Limits = .init(frameBytes: [64, 4096]),
        _ body: (ZMTPServerHarness, borrowing Socket, borrowing Socket, () -> Int) throws -> Void
    ) throws {
        let serverKeys = try Curve.generate(), client = try Curve.generate()
        let server = try ZMTPServerHarness(
            security: .curve(secretKey: Curve.decode(serverKeys.secretKey)!, allows: { _ in true }), limits: limits)
        let stream = try Socket(server.context, .stream)
        let push = try Socket(server.context, .push)
        try push.makeCurveClient(serverKey: serverKeys.publicKey, keys: client)
        try push.setOption(ZMQ_HEARTBEAT_IVL, 20)
        try push.connect(try stream.bind("tcp://127.0.0.1:*"))
        try push.send(frames("h", "first"))
        func pongs() -> Int { server.events.filter { if case .pong = $0 { true } else { false } }.count }
        try server.serve(stream) { _ in server.messages.count == 1 && pongs() >= 5 }
        try body(server, stream, push, pongs)
    }

    /// CURVE handshake steps (HELLO, INITIATE: public-key work anyone who reaches the port can ask
    /// for) beyond the socket's allowance wait their turn, in order, and are taken as it refills:
    /// three libzmq CURVE producers against an allowance of 20 a second (a burst of 2) on a stopped
    /// clock get two replies and nothing more; as the clock runs, all three are let in and their
    /// messages arrive. (The test assumed the three HELLOs came before any INITIATE, and failed one
    /// run in four beside other tests: it holds for either order now.)
    @Test func curveHandshakeStepsBeyondTheAllowanceWaitTheirTurn() throws {
        let clock = ManualClock()
        let allowance = ZMTPConnection.HandshakeAllowance(perSecond: 20, clock: { clock.now })
        #expect(allowance.burst == 2)
        let serverKeys = try Curve.generate()
        let server = try ZMTPServerHarness(
            security: .curve(secretKey: Curve.decode(serverKeys.secretKey)!, allows: { _ in true }), handshakes: allowance)
        let stream = try Socket(server.context, .stream)
        let endpoint = try stream.bind("tcp://127.0.0.1:*")
        func producer(_ k: Int) throws -> Socket {
            let push = try Socket(server.context, .push)
            try push.makeCurveClient(serverKey: serverKeys.publicKey, keys: try Curve.generate())
            try push.connect(endpoint)
            try push.send(frames("s", "message \(k)"))
            return push
        }
        let a = try producer(0), b = try producer(1), c = try producer(2)
        func count(_ kind: (ZMTPConnection.Event) -> Bool) -> Int { server.events.filter(kind).count }
        let sends = { (e: ZMTPConnection.Event) -> Bool in if case .send = e { true } else { false } }
        let readies = { (e: ZMTPConnection.Event) -> Bool in if case .ready = e { true } else { false } }
        // Stopped: two steps are taken (two HELLOs answered; or, when one producer's HELLO and
        // INITIATE come before the others connect, as on a loaded machine, its whole handshake),
        // then every connection not in waits.
        func waiting() -> Int { server.connections.values.filter(\.awaitsHandshakeTurn).count }
        try server.serve(stream) { _ in server.connections.count == 3 && waiting() + count(readies) == 3 }
        #expect(waiting() + count(readies) == 3 && count(readies) <= 1)
        #expect(count(sends) == 2 && server.messages.count <= count(readies))
        // Running (a tenth of a second a turn: two steps): all six steps are taken.
        server.tick = { clock.now += 0.1 }
        try server.serve(stream) { _ in server.messages.count == 3 }
        #expect(Set(server.messages.map { String(decoding: $0[1], as: UTF8.self) }) == ["message 0", "message 1", "message 2"])
        #expect(count(sends) == 6 && count(readies) == 3 && server.ends.isEmpty)
        // The producers live to here.
        try a.setLinger(milliseconds: 0)
        try b.setLinger(milliseconds: 0)
        try c.setLinger(milliseconds: 0)
    }

    /// Steps wait in the order they came: one that arrives while another waits waits behind it even
    /// when the allowance has room. A waiting connection keeps what its peer sends after the step,
    /// up to a command's size, and reads it after its reply; more closes it. A peer that leaves
    /// while its step waits is no refusal (a HELLO flood's connections leave so).
    @Test func waitingHandshakeStepsKeepTheirOrderAndTheBytesBehindThem() throws {
        let clock = ManualClock()
        let budget = ZMTPConnection.Budget(limit: 1 << 20)
        let server = try Curve.generate()
        let serverPublic = try #require(Curve.decode(server.publicKey)), serverSecret = try #require(Curve.decode(server.secretKey))
        let greeting: [UInt8] = [0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 1] + Array("CURVE".utf8) + [UInt8](repeating: 0, count: 15) + [0]
            + [UInt8](repeating: 0, count: 31)
        /// A HELLO that opens (RFC 26: version 1.0, padding, C', a short nonce, 64 zeros boxed from C' to S).
        func hello() throws -> [UInt8] {
            let transient = try Curve.generate()
            let short: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 1]
            let box = CurveServer.seal([UInt8](repeating: 0, count: 64), nonce: CurveServer.nonce("CurveZMQHELLO---", short[...]),
                                       to: serverPublic, from: try #require(Curve.decode(transient.secretKey)))
            return ZMTPConnection.command(CurveServer.name("HELLO") + [1, 0] + [UInt8](repeating: 0, count: 72)
                + (try #require(Curve.decode(transient.publicKey))) + short + box)
        }
        let allowance = ZMTPConnection.HandshakeAllowance(perSecond: 1, clock: { clock.now })
        func connection() -> ZMTPConnection {
            ZMTPConnection(security: .curve(secretKey: serverSecret, allows: { _ in true }), limits: .init(frameBytes: [64, 4096]),
                           handshakes: allowance)
        }
        func feed(_ c: ZMTPConnection, _ bytes: [UInt8]) -> [ZMTPConnection.Event] { bytes.withUnsafeBufferPointer { c.feed($0, budget: budget) } }
        func resume(_ c: ZMTPConnection) -> [ZMTPConnection.Event] {
            var events: [ZMTPConnection.Event] = []
            c.resume(budget: budget) { events.append($0) }
            return events
        }
        func welcomes(_ e: [ZMTPConnection.Event]) -> Int {
            e.filter { if case .send(let b) = $0 { b.count == 2 + 168 } else { false } }.count
        }
        // The first takes the one step the bucket holds; the second waits, with a malformed INITIATE
        // behind its HELLO.
        let first = connection(), second = connection()
        #expect(welcomes(feed(first, greeting + (try hello()))) == 1 && !first.awaitsHandshakeTurn)
        let initiate = ZMTPConnection.command(CurveServer.name("INITIATE") + [1, 2, 3])
        #expect(feed(second, greeting + (try hello()) + initiate).isEmpty && second.awaitsHandshakeTurn)
        #expect(allowance.waiting == 1 && resume(second).isEmpty)
        // A step's worth later a third arrives: it waits behind the second, though there is room.
        clock.now += 1
        let third = connection()
        #expect(feed(third, greeting + (try hello())).isEmpty && third.awaitsHandshakeTurn && allowance.waiting == 2)
        // The second's turn: its WELCOME, then the bytes it sent after its HELLO, read as its
        // INITIATE, which waits behind the third.
        #expect(welcomes(resume(second)) == 1 && second.awaitsHandshakeTurn && allowance.waiting == 2)
        clock.now += 1
        #expect(welcomes(resume(third)) == 1 && !third.awaitsHandshakeTurn && allowance.waiting == 1)
        #expect(resume(second).isEmpty && second.awaitsHandshakeTurn)
        clock.now += 1
        let initiated = resume(second)
        #expect(initiated.contains { if case .close(.protocolError("malformed CURVE INITIATE")) = $0 { true } else { false } })
        #expect(second.isClosed && allowance.waiting == 0)
        // A peer that leaves while its step waits: no refusal, and its place is given up.
        let fourth = connection()
        #expect(feed(fourth, greeting + (try hello())).isEmpty && fourth.awaitsHandshakeTurn && allowance.waiting == 1)
        #expect(fourth.peerClosed(budget: budget) == nil && allowance.waiting == 0)
        // One that sends more than a command's size while it waits is closed.
        let fifth = connection()
        #expect(feed(fifth, greeting + (try hello())).isEmpty && fifth.awaitsHandshakeTurn)
        let flood = feed(fifth, [UInt8](repeating: 0, count: 8_193))
        #expect(fifth.isClosed && flood.contains { if case .close(.protocolError(let why)) = $0 { why.contains("before its handshake was answered") } else { false } })
        #expect(allowance.waiting == 0)
        // A second later, with none waiting, a newcomer is answered at once.
        clock.now += 1
        #expect(welcomes(feed(connection(), greeting + (try hello()))) == 1)
    }

    /// A CURVE client's heartbeat PINGs are boxed as its messages are, with COMMAND in the box's own
    /// flags (bit 1): they are answered, never taken for a one-frame message (which the daemon would
    /// reject), and hold nothing of the budget, so an idle producer with heartbeats on is not a
    /// message in progress.
    @Test func curveHeartbeatsAreAnsweredAndHoldNothing() throws {
        // The handshake's replies, then a PONG for each PING.
        try withHeartbeatingCurveClient { server, stream, push, pongs in
            #expect(pongs() >= 5)
            let connection = try #require(server.connections.values.first)
            #expect(connection.held == 0 && server.budget.used == 0, "\(connection.held) bytes held after \(pongs()) PINGs")
            try push.send(frames("h", "second"))
            try server.serve(stream) { _ in server.messages.count == 2 }
            #expect(server.messages == [frames("h", "first"), frames("h", "second")])
            // The client took the PONGs for PONGs: it kept its one connection.
            #expect(server.ends.isEmpty && server.connections.count == 1)
        }
    }

    /// From review: a boxed PING is no larger than `smallBoxedFrame` and passes the frame-0 limit and
    /// the budget before it is opened: with `max_stream_name_bytes` under its size, or the budget
    /// held by others, a producer's heartbeat was refused as an oversized stream name (or over
    /// budget) and its connection closed. A frame 0 longer than a PING is still refused.
    @Test func aCurveHeartbeatIsNotRefusedForAShortNameLimit() throws {
        try withHeartbeatingCurveClient(limits: .init(frameBytes: [4, 1000])) { server, stream, push, pongs in
            #expect(pongs() >= 5 && server.ends.isEmpty && server.refusals.isEmpty)
            // A frame 0 over a PING's size is still refused at its header (one at most that size passes
            // here and is checked at admission, as the daemon's `StreamName.decode` does).
            try push.send(frames(String(repeating: "n", count: 30), "second"))
            try server.serve(stream) { _ in !server.refusals.isEmpty }
            #expect(server.refusals == [.oversized(frame: 0, bytes: 30, limit: 4)])
        }
    }

    /// Under CURVE a refused message is read past, each box's MAC checked as it passes and its
    /// flags saying where the message ends, and the connection goes on: the producer's messages
    /// after it are taken. Before, the connection was closed at the refusal and the messages libzmq
    /// had read ahead behind it were lost, uncounted (from review: 351 of 2,001 in its probe). With
    /// heartbeats on, PINGs may fall between a refused message's frames.
    @Test func aRefusedCurveMessageIsReadPastAndTheConnectionGoesOn() throws {
        try withHeartbeatingCurveClient(limits: .init(frameBytes: [64, 1000])) { server, stream, push, pongs in
            let good = (0..<200).map { [Array("k".utf8), [UInt8](repeating: UInt8($0 % 251), count: 10 + $0 % 700)] }
            try push.send(good[0])
            try push.send([Array("big".utf8), [UInt8](repeating: 9, count: 5000)])  // frame 1 over 1,000
            try push.send(frames("a", "b", "c"))  // three frames
            try push.send([Array("big2".utf8), [UInt8](repeating: 8, count: 2000)])
            for m in good.dropFirst() { try push.send(m) }
            try server.serve(stream) { _ in server.messages.count == 1 + good.count }
            #expect(server.refusals == [.oversized(frame: 1, bytes: 5000, limit: 1000), .tooManyFrames(3), .oversized(frame: 1, bytes: 2000, limit: 1000)])
            #expect(Array(server.messages.dropFirst()) == good)
            #expect(server.ends.isEmpty && server.connections.count == 1 && server.budget.used == 0)
        }
    }

    /// A box read past must still be the client's: one whose bytes were changed on the way fails its
    /// MAC when it ends, and the connection is closed as for a box that does not open.
    @Test func aRefusedCurveMessageThatWasTamperedWithClosesTheConnection() throws {
        try withHeartbeatingCurveClient(limits: .init(frameBytes: [64, 1000])) { server, stream, push, pongs in
            server.tamper = { chunk in if chunk.count > 3000 { chunk[chunk.count - 1] ^= 1 } }
            try push.send([Array("big".utf8), [UInt8](repeating: 9, count: 5000)])
            try server.serve(stream) { _ in !server.ends.isEmpty }
            #expect(server.refusals == [.oversized(frame: 1, bytes: 5000, limit: 1000)])
            #expect(server.ends == [.protocolError("CURVE MESSAGE does not open")])
        }
    }

    /// A plaintext server refuses no one: a CURVE client that leaves in the greeting is a protocol
    /// error there, not a refused handshake (heartbeats count refusals only under CURVE).
    @Test func aCurveClientOfAPlaintextServerIsAProtocolErrorNotARefusal() throws {
        let server = try ZMTPServerHarness()
        let stream = try Socket(server.context, .stream)
        let push = try Socket(server.context, .push)
        try push.makeCurveClient(serverKey: try Curve.generate().publicKey, keys: try Curve.generate())
        try push.connect(try stream.bind("tcp://127.0.0.1:*"))
        _ = try push.send(frames("c", "curve"), dontWait: true)
        try server.serve(stream) { _ in !server.ends.isEmpty }
        #expect(server.ends.first == .protocolError("the client left in the greeting (as a client whose security is not NULL does)"))
        #expect(server.messages.isEmpty)
    }
}

extension Array where Element == UInt8 {
    /// The server's READY turned into a PUSH client's.
    func replacingPull() -> [UInt8] { Array(self.dropLast(4)) + Array("PUSH".utf8) }
}
