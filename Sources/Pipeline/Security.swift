import CEddySystem
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ZeroMQ

/// CURVE key files, as `eddy keygen` writes them and the daemon and its clients read them:
///
///     # Eddy CURVE key pair "server" ... keep this file secret (mode 0600)
///     public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
///     secret-key = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
///
/// A `.pub` file has the `public-key` line only. Lines starting with `#` are comments (Z85 keys can
/// hold `#`, so a comment is a whole line). A file holding a secret key is refused when its group or
/// others have any access to it: a key anyone can read authenticates anyone.
public enum KeyFile {
    public struct Problem: Error, CustomStringConvertible, Equatable {
        public let why: String
        public init(_ why: String) { self.why = why }
        public var description: String { why }
    }

    /// The key pair in a secret key file (mode 0600 or narrower).
    public static func readSecret(_ path: String) throws -> CurveKeyPair {
        // A public key file given for a secret one: said as such (from review: "mode 644, chmod 600"
        // was the advice, which cannot help).
        if let fields = try? read(path), fields["secret-key"] == nil, fields["public-key"] != nil {
            throw Problem("\(path) is a public key file (it has no secret-key line): a secret key is the NAME.key file of eddy keygen")
        }
        try requireMode(path, forbidden: 0o077, what: "a secret key file")
        let fields = try read(path)
        guard let secret = fields["secret-key"] else { throw Problem("\(path) has no secret-key line") }
        guard let derived = Curve.publicKey(secretKey: secret) else { throw Problem("\(path): secret-key is not a Z85 CURVE key") }
        if let stated = fields["public-key"], stated != derived {
            throw Problem("\(path): public-key does not belong to secret-key")
        }
        return CurveKeyPair(publicKey: derived, secretKey: secret)
    }

    /// The public key in a `.pub` or secret key file, or a bare 40-character Z85 key given as text.
    public static func readPublic(_ pathOrKey: String) throws -> String {
        if !FileManager.default.fileExists(atPath: pathOrKey), Curve.isKey(pathOrKey) { return pathOrKey }
        let fields = try read(pathOrKey)
        if let key = fields["public-key"] {
            guard Curve.isKey(key) else { throw Problem("\(pathOrKey): public-key is not a Z85 CURVE key") }
            return key
        }
        if fields["secret-key"] != nil { return try readSecret(pathOrKey).publicKey }
        throw Problem("\(pathOrKey) has no public-key line")
    }

    /// The client keys a daemon accepts, each with where it came from: a file of keys (one per line,
    /// bare or as `public-key = "..."`) or a directory whose `*.pub` files hold one each. Refused when
    /// others than the owner may write it (whoever can write the list can let anyone in).
    public static func readAllowList(_ path: String) throws -> [String: String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw Problem("the allow-list \(path) does not exist")
        }
        try requireMode(path, forbidden: 0o022, what: "the allow-list")
        var keys: [String: String] = [:]
        if isDirectory.boolValue {
            let names = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".pub") }.sorted()
            for name in names {
                let file = path + "/" + name
                try requireMode(file, forbidden: 0o022, what: "an allowed key")
                keys[try readPublic(file)] = file
            }
        } else {
            for (number, line) in try lines(path) {
                // Z85 has '=' in its alphabet: only a line naming the field is `key = value`.
                let key = line.hasPrefix("public-key") ? try value(of: line, in: path, number: number).value : line
                guard Curve.isKey(key) else { throw Problem("\(path) line \(number): not a Z85 CURVE public key") }
                keys[key] = "\(path):\(number)"
            }
        }
        return keys
    }

    /// Writes `<directory>/<name>.key` (both keys, mode 0600) and `<directory>/<name>.pub` (the public
    /// key, mode 0644); refuses to overwrite either. Returns their paths.
    public static func write(_ keys: CurveKeyPair, name: String, directory: String) throws -> (secret: String, public: String) {
        let secretPath = directory + "/" + name + ".key", publicPath = directory + "/" + name + ".pub"
        for path in [secretPath, publicPath] where FileManager.default.fileExists(atPath: path) {
            throw Problem("\(path) exists; not overwriting a key")
        }
        let header = "# Eddy CURVE key pair \"\(name)\", made by `eddy keygen`."
        try create(
            secretPath, mode: 0o600,
            contents: "\(header) Keep this file secret (mode 0600).\npublic-key = \"\(keys.publicKey)\"\n"
                + "secret-key = \"\(keys.secretKey)\"\n")
        try create(
            publicPath, mode: 0o644,
            contents: "\(header) The public key: give it to the other side.\npublic-key = \"\(keys.publicKey)\"\n")
        return (secretPath, publicPath)
    }

    /// Creates the file with `mode` from the start (no moment at a wider one) and fails if it exists.
    static func create(_ path: String, mode: mode_t, contents: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw Problem("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(contents.utf8)
        guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count, fchmod(fd, mode) == 0 else {
            throw Problem("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func requireMode(_ path: String, forbidden: mode_t, what: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else { throw Problem("cannot read \(path): \(String(cString: strerror(errno)))") }
        let mode = info.st_mode & 0o777
        if mode & forbidden != 0 {
            let fix = forbidden == 0o077 ? "chmod 600" : "chmod go-w"
            throw Problem(
                "\(what) \(path) has mode \(String(mode, radix: 8)); refused while \(forbidden == 0o077 ? "group or others have access" : "group or others may write it") (\(fix) \(path))")
        }
    }

    static func read(_ path: String) throws -> [String: String] {
        var fields: [String: String] = [:]
        for (number, line) in try lines(path) {
            let (key, value) = try value(of: line, in: path, number: number)
            fields[key] = value
        }
        return fields
    }

    /// Non-blank, non-comment lines with their numbers.
    static func lines(_ path: String) throws -> [(Int, String)] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw Problem("cannot read \(path)")
        }
        return text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().compactMap { i, raw in
            let line = raw.trimmingCharacters(in: .whitespaces)
            return line.isEmpty || line.hasPrefix("#") ? nil : (i + 1, line)
        }
    }

    static func value(of line: String, in path: String, number: Int) throws -> (key: String, value: String) {
        guard let eq = line.firstIndex(of: "=") else { throw Problem("\(path) line \(number): expected key = \"value\"") }
        let key = line[..<eq].trimmingCharacters(in: .whitespaces)
        var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
        return (key, value)
    }
}

/// Who may talk to the daemon: its CURVE key pair and the client keys it lets in, read from the
/// files the configuration names. nil security (no `curve_secret_key`) is plaintext.
public struct Security: Sendable {
    public let server: CurveKeyPair
    /// Allowed client public keys (Z85), each with the file (and line) it came from; `reload` on
    /// SIGHUP replaces them.
    public let allowList: AllowList
    public var allowed: [String: String] { allowList.keys }
    /// The ZAP domain the daemon's sockets present.
    public static let domain = "eddy"

    public init(server: CurveKeyPair, allowed: [String: String]) {
        self.server = server
        allowList = AllowList(allowed)
    }

    /// The configuration's security, or nil for plaintext.
    public static func load(_ configuration: DaemonConfiguration) throws -> Security? {
        guard !configuration.curveSecretKey.isEmpty else { return nil }
        guard Curve.isAvailable else { throw KeyFile.Problem("curve_secret_key is set but this libzmq has no CURVE") }
        let server = try KeyFile.readSecret(configuration.curveSecretKey)
        return Security(server: server, allowed: try readAllowList(configuration))
    }

    /// The allow-list the configuration names, with the checks of a start (modes, keys, not empty).
    public static func readAllowList(_ configuration: DaemonConfiguration) throws -> [String: String] {
        let allowed = try KeyFile.readAllowList(configuration.curveAllowedClients)
        if allowed.isEmpty {
            throw KeyFile.Problem("the allow-list \(configuration.curveAllowedClients) holds no key: no client could connect")
        }
        return allowed
    }

    /// ZAP (RFC 27): the reply to one request from libzmq. A CURVE client whose key is on the list is
    /// let in (status 200, its key as the user id); anything else is refused (400).
    public func reply(to request: [[UInt8]]) -> (frames: [[UInt8]], accepted: Bool, why: String, address: String) {
        // version, request id, domain, address, identity, mechanism, credentials...
        guard request.count >= 6, request[0] == Array("1.0".utf8) else {
            let id = request.count > 1 ? request[1] : []
            return (Self.frames(id, "500", "malformed ZAP request", ""), false, "malformed ZAP request", "")
        }
        let id = request[1], address = String(decoding: request[3], as: UTF8.self)
        let mechanism = String(decoding: request[5], as: UTF8.self)
        guard mechanism == "CURVE", request.count == 7, let key = Curve.encode(request[6]) else {
            return (Self.frames(id, "400", "CURVE required", ""), false, "mechanism \(mechanism), CURVE required", address)
        }
        guard allowList.contains(key) else {
            return (Self.frames(id, "400", "unknown client key", ""), false, "client key \(key) is not on the allow-list", address)
        }
        return (Self.frames(id, "200", "OK", key), true, "", address)
    }

    static func frames(_ id: [UInt8], _ status: String, _ text: String, _ user: String) -> [[UInt8]] {
        [Array("1.0".utf8), id, Array(status.utf8), Array(text.utf8), Array(user.utf8), []]
    }
}

/// The client keys let in, read by the ZAP handler's thread and ingest's, replaced on SIGHUP. A key
/// taken off the list is refused from its next handshake; connections it already has stay open.
public final class AllowList: @unchecked Sendable {
    private let lock = Lock()
    private var z85: [String: String]
    private var raw: Set<[UInt8]>

    init(_ keys: [String: String]) {
        z85 = keys
        raw = Set(keys.keys.compactMap(Curve.decode))
    }

    public var keys: [String: String] { lock.withLock { z85 } }
    public func contains(_ key: String) -> Bool { lock.withLock { z85[key] != nil } }
    public func contains(raw key: [UInt8]) -> Bool { lock.withLock { raw.contains(key) } }

    public func replace(with keys: [String: String]) {
        let decoded = Set(keys.keys.compactMap(Curve.decode))
        lock.withLock {
            z85 = keys
            raw = decoded
        }
    }
}

/// Where an endpoint can be reached from.
public enum Endpoint {
    /// ZeroMQ's transports a daemon binds: an endpoint is `transport://address`.
    public static let transports = ["tcp://", "ipc://", "inproc://"]

    /// Why `endpoint` (the `key` of the configuration) cannot be bound, or nil.
    public static func problem(_ endpoint: String, key: String) -> String? {
        guard !transports.contains(where: { endpoint.hasPrefix($0) }) else { return nil }
        return "\(key) \(endpoint) is not an endpoint: ZeroMQ's are transport://address, such as "
            + "tcp://127.0.0.1:7700, tcp://[::1]:7700 or ipc:///run/eddy/ingest"
    }

    /// What libzmq binds for `endpoint`: `tcp://localhost:…` as `tcp://127.0.0.1:…` (a bind takes
    /// an address or an interface name, not a host name: `localhost` failed with ENODEV).
    public static func bindable(_ endpoint: String) -> String {
        endpoint.hasPrefix("tcp://localhost:") ? "tcp://127.0.0.1:" + endpoint.dropFirst("tcp://localhost:".count) : endpoint
    }

    /// Whether only this machine can reach `endpoint`: `inproc://`, `ipc://` (a file, guarded by its
    /// mode) and TCP on a loopback address (127.0.0.0/8, `localhost`, `[::1]`). `tcp://*`, `0.0.0.0`, an
    /// interface name or any other address are reachable from a network.
    public static func isLocal(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("inproc://") || endpoint.hasPrefix("ipc://") { return true }
        guard endpoint.hasPrefix("tcp://") else { return false }
        var host = String(endpoint.dropFirst("tcp://".count))
        if let semicolon = host.lastIndex(of: ";") { host = String(host[host.index(after: semicolon)...]) }  // source;destination
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            return host[host.index(after: host.startIndex)..<close] == "::1"
        }
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        if host == "localhost" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}
