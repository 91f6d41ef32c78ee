import CZeroMQ

#if canImport(Glibc)
import Glibc
#endif

/// A failed libzmq call: the errno it left and the call's name.
public struct ZMQError: Error, CustomStringConvertible, Equatable {
    public let code: Int32
    public let call: String

    /// Reads `zmq_errno()` right after the failing call.
    static func last(_ call: String) -> ZMQError { ZMQError(code: zmq_errno(), call: call) }

    /// The context was terminated (`ETERM`): the socket's owner should close it and stop.
    public var isTerminated: Bool { code == ETERM_CODE }
    /// No message, or no room, without blocking (`EAGAIN`).
    public var isAgain: Bool { code == EAGAIN }
    /// A signal interrupted the call (`EINTR`): retry.
    public var isInterrupted: Bool { code == EINTR }
    /// A ROUTER or STREAM socket has no peer of that routing id (`EHOSTUNREACH`): it left, and
    /// libzmq dropped it before its disconnect notice was read.
    public var isUnreachable: Bool { code == EHOSTUNREACH }

    public var description: String { "\(call): \(String(cString: zmq_strerror(code))) (errno \(code))" }
}

/// `ETERM` is `ZMQ_HAUSNUMERO + 53`; the macro does not import into Swift.
let ETERM_CODE: Int32 = 156_384_712 + 53

/// A socket's kind (`ZMQ_PULL`, ...).
public struct SocketType: RawRepresentable, Sendable, Equatable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    /// `ZMQ_PUSH`
    public static let push = SocketType(rawValue: 8)
    /// `ZMQ_PULL`
    public static let pull = SocketType(rawValue: 7)
    /// `ZMQ_PUB`
    public static let pub = SocketType(rawValue: 1)
    /// `ZMQ_SUB`
    public static let sub = SocketType(rawValue: 2)
    /// `ZMQ_REQ`
    public static let req = SocketType(rawValue: 3)
    /// `ZMQ_REP`
    public static let rep = SocketType(rawValue: 4)
    /// `ZMQ_DEALER` (tests: a client that sends requests without waiting for replies)
    public static let dealer = SocketType(rawValue: 5)
    /// `ZMQ_PAIR`
    public static let pair = SocketType(rawValue: 0)
    /// Raw TCP: each message is a connection's routing id and a chunk of its bytes; an empty chunk
    /// says it opened or closed, and sending one closes it (`ZMTPConnection` speaks ZMTP over it).
    public static let stream = SocketType(rawValue: 11)
}

/// A ZeroMQ context: thread-safe, shared by every socket made from it, kept alive by them.
public final class Context: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// - Parameter ioThreads: libzmq's background I/O threads (`ZMQ_IO_THREADS`).
    public init(ioThreads: Int = 1) throws {
        guard let h = zmq_ctx_new() else { throw ZMQError.last("zmq_ctx_new") }
        handle = h
        zmq_ctx_set(h, ZMQ_IO_THREADS, Int32(ioThreads))
    }

    /// Makes every blocking call on this context's sockets fail with `ETERM` (`zmq_ctx_shutdown`), so
    /// their owner threads wake, close their sockets and stop.
    public func shutdown() { zmq_ctx_shutdown(handle) }

    deinit {
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }

    /// libzmq's version, "4.3.4".
    public static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }
}

/// One ZeroMQ socket. Not thread-safe: made, used and closed by one owner thread. Move-only; closes
/// itself when it goes out of scope, with linger 0 unless set otherwise.
public struct Socket: ~Copyable {
    let context: Context
    let handle: UnsafeMutableRawPointer
    /// Scratch for multipart receives (two: a STREAM socket's routing id and its data).
    private let message: UnsafeMutablePointer<zmq_msg_t>

    public init(_ context: Context, _ type: SocketType) throws {
        guard let h = zmq_socket(context.handle, type.rawValue) else { throw ZMQError.last("zmq_socket") }
        self.context = context
        handle = h
        message = .allocate(capacity: 2)
        var zero: Int32 = 0
        zmq_setsockopt(h, ZMQ_LINGER, &zero, MemoryLayout<Int32>.size)
    }

    deinit {
        zmq_close(handle)
        message.deallocate()
    }

    /// Binds to `endpoint` (`tcp://127.0.0.1:*` picks a free port) and returns the endpoint actually
    /// bound (`ZMQ_LAST_ENDPOINT`).
    @discardableResult
    public func bind(_ endpoint: String) throws -> String {
        try takeIPv6(for: endpoint)
        guard zmq_bind(handle, endpoint) == 0 else { throw ZMQError.last("zmq_bind(\(endpoint))") }
        var buffer = [CChar](repeating: 0, count: 512)
        var size = buffer.count
        guard zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size) == 0 else {
            throw ZMQError.last("zmq_getsockopt(ZMQ_LAST_ENDPOINT)")
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// An IPv6 address (`tcp://[::1]:7700`) binds or connects only on a socket that takes IPv6.
    private func takeIPv6(for endpoint: String) throws {
        if endpoint.hasPrefix("tcp://") && endpoint.contains("[") { try setOption(ZMQ_IPV6, 1) }
    }

    public func connect(_ endpoint: String) throws {
        try takeIPv6(for: endpoint)
        guard zmq_connect(handle, endpoint) == 0 else { throw ZMQError.last("zmq_connect(\(endpoint))") }
    }

    /// Sets an integer option (`ZMQ_SNDHWM`, `ZMQ_RCVTIMEO`, ...).
    public func setOption(_ option: Int32, _ value: Int32) throws {
        var v = value
        guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int32>.size) == 0 else {
            throw ZMQError.last("zmq_setsockopt(\(option))")
        }
    }

    /// Largest message the socket accepts (`ZMQ_MAXMSGSIZE`, an int64); a peer that sends a larger one
    /// is disconnected by libzmq before the message is ever held in memory.
    public func setMaximumMessageSize(_ bytes: Int64) throws {
        var v = bytes
        guard zmq_setsockopt(handle, ZMQ_MAXMSGSIZE, &v, MemoryLayout<Int64>.size) == 0 else {
            throw ZMQError.last("zmq_setsockopt(ZMQ_MAXMSGSIZE)")
        }
    }

    /// Milliseconds a receive waits before `receive` returns nil (`ZMQ_RCVTIMEO`; -1 forever).
    public func setReceiveTimeout(milliseconds: Int) throws { try setOption(ZMQ_RCVTIMEO, Int32(milliseconds)) }
    /// Milliseconds the context's end waits, once the socket is closed, for its queued messages to be
    /// sent (`ZMQ_LINGER`; 0 by default here: drop them).
    public func setLinger(milliseconds: Int) throws { try setOption(ZMQ_LINGER, Int32(milliseconds)) }
    /// Milliseconds a send waits for room before it fails with `EAGAIN` (`ZMQ_SNDTIMEO`).
    public func setSendTimeout(milliseconds: Int) throws { try setOption(ZMQ_SNDTIMEO, Int32(milliseconds)) }
    /// High-water marks: messages queued per peer before sends block or drop (`ZMQ_SNDHWM`, `ZMQ_RCVHWM`).
    public func setHighWaterMarks(send: Int, receive: Int) throws {
        try setOption(ZMQ_SNDHWM, Int32(send))
        try setOption(ZMQ_RCVHWM, Int32(receive))
    }

    /// Sets a byte-string option (`ZMQ_CURVE_SECRETKEY`, `ZMQ_ZAP_DOMAIN`, ...).
    public func setOption(_ option: Int32, bytes: [UInt8]) throws {
        guard zmq_setsockopt(handle, option, bytes, bytes.count) == 0 else {
            throw ZMQError.last("zmq_setsockopt(\(option))")
        }
    }

    /// Makes this socket a CURVE server (`ZMQ_CURVE_SERVER`): every peer must complete the CURVE
    /// handshake against `secretKey` (Z85), and is then put to the ZAP handler of the socket's context
    /// under `domain` (`ZMQ_ZAP_DOMAIN`), which must answer: with no handler there (it has not started,
    /// or its thread ended) the handshake fails (`ZMQ_ZAP_ENFORCE_DOMAIN`). libzmq 4.3 otherwise lets
    /// in any client that knows the server's public key when no handler is bound (from review).
    /// Call before `bind`.
    public func makeCurveServer(secretKey: String, domain: String) throws {
        try setOption(ZMQ_CURVE_SERVER, 1)
        try setOption(ZMQ_CURVE_SECRETKEY, bytes: Array(secretKey.utf8))
        try setOption(ZMQ_ZAP_DOMAIN, bytes: Array(domain.utf8))
        try setOption(Self.zapEnforceDomain, 1)
    }

    /// `ZMQ_ZAP_ENFORCE_DOMAIN`: under zmq.h's draft guard, in libzmq since 4.2.3 (Debian 12's 4.3.4).
    static let zapEnforceDomain: Int32 = 93

    /// Makes this socket a CURVE client of the server whose public key is `serverKey`, with its own
    /// key pair (all Z85). Call before `connect`.
    public func makeCurveClient(serverKey: String, keys: CurveKeyPair) throws {
        try setOption(ZMQ_CURVE_SERVERKEY, bytes: Array(serverKey.utf8))
        try setOption(ZMQ_CURVE_PUBLICKEY, bytes: Array(keys.publicKey.utf8))
        try setOption(ZMQ_CURVE_SECRETKEY, bytes: Array(keys.secretKey.utf8))
    }

    /// SUB: receive messages whose first frame starts with `prefix` (`ZMQ_SUBSCRIBE`).
    public func subscribe(_ prefix: String = "") throws {
        let bytes = Array(prefix.utf8)
        guard zmq_setsockopt(handle, ZMQ_SUBSCRIBE, bytes, bytes.count) == 0 else {
            throw ZMQError.last("zmq_setsockopt(ZMQ_SUBSCRIBE)")
        }
    }

    /// Sends one multipart message. Returns false if it would block and `dontWait` is set, or if the
    /// send timeout passed.
    @discardableResult
    public func send(_ frames: [[UInt8]], dontWait: Bool = false) throws -> Bool {
        for (i, frame) in frames.enumerated() {
            let more = i < frames.count - 1
            let sent = try frame.withUnsafeBytes { try send(frame: $0, more: more, dontWait: dontWait) }
            // Only the first frame can meet a full queue: once it is in, the rest follow atomically.
            if !sent { return false }
        }
        return true
    }

    /// Sends one frame; `more` says a further frame of the same message follows.
    public func send(frame: UnsafeRawBufferPointer, more: Bool, dontWait: Bool = false) throws -> Bool {
        let flags = (more ? ZMQ_SNDMORE : 0) | (dontWait ? ZMQ_DONTWAIT : 0)
        while true {
            if zmq_send(handle, frame.baseAddress, frame.count, flags) >= 0 { return true }
            let error = ZMQError.last("zmq_send")
            if error.isInterrupted { continue }
            if error.isAgain { return false }
            throw error
        }
    }

    /// Receives one multipart message, every frame, or nil when the receive timeout passed (or, with
    /// `dontWait`, when none is queued).
    public func receive(dontWait: Bool = false) throws -> [[UInt8]]? {
        var frames: [[UInt8]] = []
        while true {
            zmq_msg_init(message)
            defer { zmq_msg_close(message) }
            let n = zmq_msg_recv(message, handle, dontWait && frames.isEmpty ? ZMQ_DONTWAIT : 0)
            if n < 0 {
                let error = ZMQError.last("zmq_msg_recv")
                if error.isInterrupted { continue }
                if error.isAgain && frames.isEmpty { return nil }
                throw error
            }
            let data = zmq_msg_data(message)!
            frames.append(Array(UnsafeRawBufferPointer(start: data, count: Int(n))))
            if zmq_msg_more(message) == 0 { return frames }
        }
    }

    /// STREAM: receives one message (a connection's routing id and a chunk of its bytes, empty when it
    /// opened or closed) and hands both to `body` in place, without copying; false when none is
    /// queued.
    public func receiveChunk(_ body: (UnsafeRawBufferPointer, UnsafeBufferPointer<UInt8>) throws -> Void) throws -> Bool {
        let id = message, data = message + 1
        zmq_msg_init(id)
        zmq_msg_init(data)
        defer {
            zmq_msg_close(id)
            zmq_msg_close(data)
        }
        while zmq_msg_recv(id, handle, ZMQ_DONTWAIT) < 0 {
            let error = ZMQError.last("zmq_msg_recv")
            if error.isAgain { return false }
            if !error.isInterrupted { throw error }
        }
        // The data frame is queued with its id (a STREAM message is two frames, delivered together).
        while zmq_msg_recv(data, handle, 0) < 0 {
            let error = ZMQError.last("zmq_msg_recv")
            if !error.isInterrupted { throw error }
        }
        let bytes = UnsafeBufferPointer(start: zmq_msg_data(data)?.assumingMemoryBound(to: UInt8.self), count: zmq_msg_size(data))
        try body(UnsafeRawBufferPointer(start: zmq_msg_data(id), count: zmq_msg_size(id)), bytes)
        return true
    }

    /// Waits up to `timeout` milliseconds (-1: forever) for a message on either socket; says which
    /// have one.
    public static func poll(_ first: borrowing Socket, _ second: borrowing Socket, timeout milliseconds: Int) throws
        -> (first: Bool, second: Bool)
    {
        var items = [
            zmq_pollitem_t(socket: first.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0),
            zmq_pollitem_t(socket: second.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0),
        ]
        while true {
            if zmq_poll(&items, 2, milliseconds) >= 0 {
                return (items[0].revents & Int16(ZMQ_POLLIN) != 0, items[1].revents & Int16(ZMQ_POLLIN) != 0)
            }
            let error = ZMQError.last("zmq_poll")
            if !error.isInterrupted { throw error }
        }
    }

    /// Waits up to `timeout` milliseconds (-1: forever) for a message to receive.
    public func poll(timeout milliseconds: Int) throws -> Bool {
        var item = zmq_pollitem_t(socket: handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        while true {
            let n = zmq_poll(&item, 1, milliseconds)
            if n >= 0 { return n > 0 }
            let error = ZMQError.last("zmq_poll")
            if !error.isInterrupted { throw error }
        }
    }
}

/// A CURVE key pair in Z85 text (40 characters for 32 bytes each).
public struct CurveKeyPair: Sendable, Equatable {
    public let publicKey: String
    public let secretKey: String
    public init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }
}

/// CURVE keys (libzmq's `zmq_curve_keypair`, `zmq_curve_public`, Z85).
public enum Curve {
    /// Whether this libzmq was built with CURVE (Debian's is, through libsodium).
    public static var isAvailable: Bool { zmq_has("curve") == 1 }

    /// A fresh key pair from the system's random source.
    public static func generate() throws -> CurveKeyPair {
        var pub = [CChar](repeating: 0, count: 41), sec = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&pub, &sec) == 0 else { throw ZMQError.last("zmq_curve_keypair") }
        return CurveKeyPair(publicKey: string(pub), secretKey: string(sec))
    }

    /// The public key that belongs to a secret key (Z85 both), or nil if `secretKey` is not one.
    public static func publicKey(secretKey: String) -> String? {
        guard isKey(secretKey) else { return nil }
        var pub = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&pub, secretKey) == 0 else { return nil }
        return string(pub)
    }

    /// Whether `text` is a Z85 key: 40 characters that decode to 32 bytes.
    public static func isKey(_ text: String) -> Bool { decode(text) != nil }

    /// The 32 bytes of a Z85 key, or nil.
    public static func decode(_ text: String) -> [UInt8]? {
        guard text.utf8.count == 40 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 32)
        return zmq_z85_decode(&bytes, text) == nil ? nil : bytes
    }

    /// The Z85 text of 32 key bytes (what a ZAP request carries), or nil for any other length.
    public static func encode(_ bytes: [UInt8]) -> String? {
        guard bytes.count == 32 else { return nil }
        var text = [CChar](repeating: 0, count: 41)
        return zmq_z85_encode(&text, bytes, 32) == nil ? nil : string(text)
    }

    private static func string(_ chars: [CChar]) -> String {
        String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
