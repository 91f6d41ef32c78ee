import CSodium

/// The server half of CurveZMQ (RFC 26) for one connection: HELLO → WELCOME, INITIATE → READY, then
/// MESSAGE boxes both ways. Bytes in, bytes out; `ZMTPConnection` frames them. Keys are raw 32-byte
/// Curve25519 keys.
struct CurveServer {
    static let keyBytes = 32
    /// `\x07MESSAGE` (8), a short nonce (8), the box's MAC (16) and the flags byte (1).
    static let messageOverhead = 33

    private let secretKey: [UInt8]  // s
    private let publicKey: [UInt8]  // S
    private var transientPublic = [UInt8](repeating: 0, count: keyBytes)  // S'
    private var transientSecret = [UInt8](repeating: 0, count: keyBytes)  // s'
    private var cookieKey = [UInt8](repeating: 0, count: Int(crypto_secretbox_KEYBYTES))
    private var clientTransient = [UInt8](repeating: 0, count: keyBytes)  // C'
    private var shared = [UInt8](repeating: 0, count: Int(crypto_box_BEFORENMBYTES))
    private var nonce: UInt64 = 1  // ours, for READY and each MESSAGE
    private var peerNonce: UInt64 = 0  // the client's last, which each MESSAGE must exceed

    struct Failure: Error {
        let why: String
        init(_ why: String) { self.why = why }
    }

    static let initialised: Bool = sodium_init() >= 0

    init(secretKey: [UInt8]) {
        precondition(Self.initialised && secretKey.count == Self.keyBytes)
        self.secretKey = secretKey
        publicKey = Self.publicKey(of: secretKey)
    }

    /// The public key of a raw secret key.
    static func publicKey(of secret: [UInt8]) -> [UInt8] {
        var pk = [UInt8](repeating: 0, count: keyBytes)
        _ = crypto_scalarmult_base(&pk, secret)
        return pk
    }

    /// HELLO (200 bytes: name, version 1.0, 72 bytes of padding, C', a short nonce, the 80-byte
    /// signature box of 64 zero bytes from C' to S): the WELCOME to send back (168 bytes: name, a long
    /// nonce, the 144-byte box of S' and the cookie from S to C').
    mutating func welcome(hello h: [UInt8]) throws(Failure) -> [UInt8] {
        guard h.count == 200, h.starts(with: Self.name("HELLO")) else { throw Failure("malformed CURVE HELLO") }
        guard h[6] == 1, h[7] == 0 else { throw Failure("CURVE version \(h[6]).\(h[7]), 1.0 required") }
        clientTransient = Array(h[80..<112])
        let signature = try Self.open(Array(h[120..<200]), nonce: Self.nonce("CurveZMQHELLO---", h[112..<120]),
                                      from: clientTransient, to: secretKey)
        guard signature.allSatisfy({ $0 == 0 }) else { throw Failure("CURVE HELLO signature is not zeros") }

        _ = crypto_box_keypair(&transientPublic, &transientSecret)
        randombytes_buf(&cookieKey, cookieKey.count)
        let cookieNonce = Self.random(16)
        let cookie = Self.secretSeal(clientTransient + transientSecret, nonce: Array("COOKIE--".utf8) + cookieNonce, key: cookieKey)
        let welcomeNonce = Self.random(16)
        let box = Self.seal(transientPublic + cookieNonce + cookie, nonce: Array("WELCOME-".utf8) + welcomeNonce,
                            to: clientTransient, from: secretKey)
        return Self.name("WELCOME") + welcomeNonce + box
    }

    /// INITIATE (name, the cookie's nonce and box, a short nonce, the box from C' to S' of C, the
    /// vouch's nonce, the vouch (C' and S boxed from C to S'), and metadata): the client's long-term
    /// public key C and its metadata, once every box opens and agrees.
    mutating func initiate(_ m: [UInt8]) throws(Failure) -> (client: [UInt8], metadata: [UInt8]) {
        guard m.count >= 257, m.starts(with: Self.name("INITIATE")) else { throw Failure("malformed CURVE INITIATE") }
        let cookie = try Self.secretOpen(Array(m[25..<105]), nonce: Array("COOKIE--".utf8) + m[9..<25], key: cookieKey)
        guard cookie == clientTransient + transientSecret else { throw Failure("CURVE INITIATE cookie is not ours") }
        let short = Self.uint64(m[105..<113])
        let plain = try Self.open(Array(m[113...]), nonce: Self.nonce("CurveZMQINITIATE", m[105..<113]),
                                  from: clientTransient, to: transientSecret)
        let client = Array(plain[0..<32])
        let vouch = try Self.open(Array(plain[48..<128]), nonce: Array("VOUCH---".utf8) + plain[32..<48],
                                  from: client, to: transientSecret)
        guard vouch[0..<32].elementsEqual(clientTransient), vouch[32..<64].elementsEqual(publicKey) else {
            throw Failure("CURVE INITIATE vouch does not match")
        }
        peerNonce = short
        _ = crypto_box_beforenm(&shared, clientTransient, transientSecret)
        return (client, Array(plain[128...]))
    }

    /// READY (name, a short nonce, our metadata boxed from S' to C').
    mutating func ready(metadata: [UInt8]) -> [UInt8] {
        let n = nextNonce()
        return Self.name("READY") + n + sealShared(metadata, nonce: Self.nonce("CurveZMQREADY---", n[...]))
    }

    /// A MESSAGE's contents: its flags byte (more 1, command 4) and payload. Its nonce must exceed the
    /// client's last.
    mutating func open(message m: [UInt8]) throws(Failure) -> (flags: UInt8, payload: [UInt8]) {
        guard m.count >= Self.messageOverhead, m.starts(with: Self.name("MESSAGE")) else { throw Failure("malformed CURVE MESSAGE") }
        let n = Self.uint64(m[8..<16])
        guard n > peerNonce else { throw Failure("CURVE MESSAGE nonce \(n) does not increase") }
        var plain = [UInt8](repeating: 0, count: m.count - 16 - Int(crypto_box_MACBYTES))
        let nonce = Self.nonce("CurveZMQMESSAGEC", m[8..<16])
        let ok = m.withUnsafeBufferPointer { b in
            crypto_box_open_easy_afternm(&plain, b.baseAddress! + 16, UInt64(m.count - 16), nonce, shared) == 0
        }
        guard ok else { throw Failure("CURVE MESSAGE does not open") }
        peerNonce = n
        return (plain[0], Array(plain[1...]))
    }

    /// A MESSAGE read past without being kept: its MAC checked as its bytes come (the box is
    /// XSalsa20-Poly1305: the first 32 bytes of the stream key Poly1305, the rest encrypt), and its
    /// flags byte, which says whether the message goes on, read from the first byte of the box.
    struct Skip {
        fileprivate var state = crypto_onetimeauth_poly1305_state()
        fileprivate let mac: [UInt8]
        fileprivate let nonce: UInt64
        /// The MESSAGE's own flags byte (more 1, command 2): trusted once `finish` has checked the MAC.
        let flags: UInt8

        /// Takes more of the box's bytes.
        mutating func update(_ bytes: UnsafeBufferPointer<UInt8>) {
            _ = crypto_onetimeauth_poly1305_update(&state, bytes.baseAddress, UInt64(bytes.count))
        }
    }

    /// Begins reading past a MESSAGE from its first `messageOverhead` bytes (name, short nonce, MAC,
    /// the flags byte): its nonce must exceed the client's last, as `open` requires.
    func beginSkip(_ first: [UInt8]) throws(Failure) -> Skip {
        guard first.count == Self.messageOverhead, first.starts(with: Self.name("MESSAGE")) else { throw Failure("malformed CURVE MESSAGE") }
        let n = Self.uint64(first[8..<16])
        guard n > peerNonce else { throw Failure("CURVE MESSAGE nonce \(n) does not increase") }
        var block = [UInt8](repeating: 0, count: 64)
        _ = crypto_stream_xsalsa20(&block, 64, Self.nonce("CurveZMQMESSAGEC", first[8..<16]), shared)
        var skip = Skip(mac: Array(first[16..<32]), nonce: n, flags: first[32] ^ block[32])
        _ = crypto_onetimeauth_poly1305_init(&skip.state, block)
        [first[32]].withUnsafeBufferPointer { skip.update($0) }
        return skip
    }

    /// Ends reading past a MESSAGE: its MAC must match what came (else it is not the client's), and
    /// its nonce becomes the one the next must exceed. Returns its flags byte.
    mutating func finish(_ skip: Skip) throws(Failure) -> UInt8 {
        var state = skip.state, tag = [UInt8](repeating: 0, count: 16)
        _ = crypto_onetimeauth_poly1305_final(&state, &tag)
        guard crypto_verify_16(tag, skip.mac) == 0 else { throw Failure("CURVE MESSAGE does not open") }
        peerNonce = skip.nonce
        return skip.flags
    }

    /// The bits of a MESSAGE's flags byte (RFC 26): another frame follows; the frame is a command.
    static let flagMore: UInt8 = 1, flagCommand: UInt8 = 2

    /// A frame's contents boxed as a MESSAGE to the client.
    mutating func seal(flags: UInt8, payload: [UInt8]) -> [UInt8] {
        let n = nextNonce()
        return Self.name("MESSAGE") + n + sealShared([flags] + payload, nonce: Self.nonce("CurveZMQMESSAGES", n[...]))
    }

    private mutating func nextNonce() -> [UInt8] {
        defer { nonce += 1 }
        return Self.bigEndian(nonce)
    }

    private func sealShared(_ plain: [UInt8], nonce: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: plain.count + Int(crypto_box_MACBYTES))
        _ = crypto_box_easy_afternm(&out, plain, UInt64(plain.count), nonce, shared)
        return out
    }

    // MARK: Boxes

    /// A command name as ZMTP writes it: its length, then its ASCII.
    static func name(_ s: String) -> [UInt8] { [UInt8(s.utf8.count)] + Array(s.utf8) }

    static func nonce(_ prefix: String, _ short: ArraySlice<UInt8>) -> [UInt8] { Array(prefix.utf8) + short }

    static func random(_ n: Int) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: n)
        randombytes_buf(&b, n)
        return b
    }

    static func seal(_ plain: [UInt8], nonce: [UInt8], to pk: [UInt8], from sk: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: plain.count + Int(crypto_box_MACBYTES))
        _ = crypto_box_easy(&out, plain, UInt64(plain.count), nonce, pk, sk)
        return out
    }

    static func open(_ box: [UInt8], nonce: [UInt8], from pk: [UInt8], to sk: [UInt8]) throws(Failure) -> [UInt8] {
        guard box.count >= Int(crypto_box_MACBYTES) else { throw Failure("CURVE box too short") }
        var out = [UInt8](repeating: 0, count: box.count - Int(crypto_box_MACBYTES))
        guard crypto_box_open_easy(&out, box, UInt64(box.count), nonce, pk, sk) == 0 else {
            throw Failure("CURVE box does not open (wrong server key?)")
        }
        return out
    }

    static func secretSeal(_ plain: [UInt8], nonce: [UInt8], key: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: plain.count + Int(crypto_secretbox_MACBYTES))
        _ = crypto_secretbox_easy(&out, plain, UInt64(plain.count), nonce, key)
        return out
    }

    static func secretOpen(_ box: [UInt8], nonce: [UInt8], key: [UInt8]) throws(Failure) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: box.count - Int(crypto_secretbox_MACBYTES))
        guard crypto_secretbox_open_easy(&out, box, UInt64(box.count), nonce, key) == 0 else {
            throw Failure("CURVE cookie does not open")
        }
        return out
    }

    static func uint64(_ b: ArraySlice<UInt8>) -> UInt64 { b.reduce(0) { $0 << 8 | UInt64($1) } }
    static func bigEndian(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * $0)) } }
}
