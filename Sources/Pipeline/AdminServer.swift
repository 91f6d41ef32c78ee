import Foundation

#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1
import NIOPosix

/// The operator's HTTP endpoint (`http`, default 127.0.0.1:7703): `/metrics` (Prometheus text
/// format), `/healthz` and `/readyz`.
///
/// SwiftNIO directly, on one event-loop thread of its own. FlyingFox, lighter to build, was tried
/// first: it runs on Swift's cooperative pool, and a daemon started from a task (as the tests and
/// any embedding program do) blocked that pool's threads waiting for its bind, while the bind
/// needed one of them. NIO binds and answers on its own thread whatever the caller's context; a
/// request is answered from the daemon's atomics and a lock or two, never a socket or BLAS call.
///
/// Bounded whatever clients do: a client that sends requests without reading the answers is not
/// read from while its answers wait (NIO's `BackPressureHandler`, the channel's default 64 KiB
/// write watermark), so its requests stay in the kernel's buffers, not in the daemon; a connection
/// that neither reads nor writes for `idleSeconds` (60) is closed; at most `maxConnections` (64)
/// are open at once: one more closes the connection that has gone longest without a whole request
/// answered (since it opened), so clients that trickle requests, or never finish one, cannot keep
/// a scraper out.
final class AdminServer: @unchecked Sendable {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var channel: (any Channel)?
    private weak var daemon: Daemon?
    private let address: (host: String, port: UInt16)
    let idleSeconds: Double, maxConnections: Int
    /// Connections open now (on the event loop's thread only).
    private let open = Connections()

    init(address: String, daemon: Daemon, idleSeconds: Double = 60, maxConnections: Int = 64) throws {
        self.address = try Self.parse(address)
        self.daemon = daemon
        self.idleSeconds = idleSeconds
        self.maxConnections = maxConnections
    }

    /// Starts listening; returns `HOST:PORT` as bound, or throws why it could not bind.
    func start() throws -> String {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [weak daemon, open, maxConnections, idleSeconds] channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(BackPressureHandler())
                    try pipeline.addHandler(IdleStateHandler(allTimeout: .milliseconds(Int64(idleSeconds * 1000))))
                    try pipeline.addHandler(Limits(open: open, maximum: maxConnections))
                    try pipeline.configureHTTPServerPipeline(withErrorHandling: true)
                    try pipeline.addHandler(Routes(daemon: daemon, open: open))
                }
            }
        do {
            let channel = try bootstrap.bind(host: address.host, port: Int(address.port)).wait()
            self.channel = channel
            let bound = channel.localAddress
            let host = bound?.ipAddress ?? address.host
            return host.contains(":") ? "[\(host)]:\(bound?.port ?? 0)" : "\(host):\(bound?.port ?? 0)"
        } catch {
            try? group.syncShutdownGracefully()
            // NIO's IOError reads `bind(descriptor:ptr:bytes:): ... (errno: 98)`: the reason alone.
            let why = (error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? "\(error)"
            throw ConfigurationError.invalid("cannot bind http \(address.host):\(address.port): \(why)")
        }
    }

    func stop() {
        try? channel?.close().wait()
        try? group.syncShutdownGracefully()
    }

    /// The connections open, each with when it last had a whole request answered (or opened).
    /// Touched only on the event loop's one thread.
    final class Connections: @unchecked Sendable {
        private var progress: [ObjectIdentifier: (channel: any Channel, at: NIODeadline)] = [:]
        var count: Int { progress.count }

        func opened(_ channel: any Channel) { progress[ObjectIdentifier(channel)] = (channel, .now()) }
        func answered(_ channel: any Channel) { progress[ObjectIdentifier(channel)]?.at = .now() }
        func closed(_ channel: any Channel) { progress[ObjectIdentifier(channel)] = nil }

        /// Closes the connection that has gone longest without a request answered.
        func closeStalest() {
            guard let stalest = progress.min(by: { $0.value.at < $1.value.at }) else { return }
            progress[stalest.key] = nil
            stalest.value.channel.close(promise: nil)
        }
    }

    /// Counts the connection among those open, making room by closing the stalest if `maximum` are;
    /// closes it when the idle handler says it has neither read nor written for a while.
    final class Limits: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = NIOAny
        let open: Connections
        let maximum: Int

        init(open: Connections, maximum: Int) {
            self.open = open
            self.maximum = maximum
        }

        func channelActive(context: ChannelHandlerContext) {
            while open.count >= maximum { open.closeStalest() }
            open.opened(context.channel)
            context.fireChannelActive()
        }

        func channelInactive(context: ChannelHandlerContext) {
            open.closed(context.channel)
            context.fireChannelInactive()
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if event is IdleStateHandler.IdleStateEvent {
                context.close(promise: nil)
            } else {
                context.fireUserInboundEventTriggered(event)
            }
        }
    }

    /// One request at a time per connection: its head is kept until its end, then answered.
    final class Routes: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        weak var daemon: Daemon?
        let open: AdminServer.Connections
        private var head: HTTPRequestHead?

        init(daemon: Daemon?, open: AdminServer.Connections) {
            self.daemon = daemon
            self.open = open
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): head = h
            case .body: break
            case .end:
                guard let request = head else { return }
                head = nil
                let (status, contentType, body) =
                    daemon.map { AdminServer.respond(method: request.method, path: request.uri, daemon: $0) }
                    ?? (.serviceUnavailable, "text/plain; charset=utf-8", "stopping\n")
                var headers = HTTPHeaders([
                    ("Content-Type", contentType), ("Content-Length", "\(body.utf8.count)"), ("Cache-Control", "no-store"),
                ])
                if request.method != .GET { headers.add(name: "Allow", value: "GET") }
                if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
                let done = context.eventLoop.makePromise(of: Void.self)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
                let channel = context.channel, open = self.open
                done.futureResult.whenSuccess { open.answered(channel) }
                if !request.isKeepAlive {
                    let channel = context.channel
                    done.futureResult.whenComplete { _ in channel.close(promise: nil) }
                }
            }
        }
    }

    /// Status, content type and body for a request.
    static func respond(method: HTTPMethod, path: String, daemon: Daemon) -> (HTTPResponseStatus, String, String) {
        let text = "text/plain; charset=utf-8", json = "application/json"
        guard method == .GET else { return (.methodNotAllowed, text, "GET only\n") }
        switch path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path {
        case "/metrics":
            guard let metrics = daemon.metrics else { return (.notFound, text, "metrics are off\n") }
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", metrics.scrape(daemon))
        case "/healthz":
            let h = daemon.health()
            return (h.healthy ? .ok : .serviceUnavailable, json, h.json(status: h.healthy ? "ok" : "unhealthy"))
        case "/readyz":
            let h = daemon.health()
            return (h.ready ? .ok : .serviceUnavailable, json, h.json(status: h.ready ? "ready" : "not ready"))
        case "/":
            return (.ok, text, "eddy \(Version.daemon): /metrics /healthz /readyz\n")
        default:
            return (.notFound, text, "not found: /metrics /healthz /readyz\n")
        }
    }

    /// `127.0.0.1:7703`, `[::1]:7703`, `localhost:7703`.
    static func parse(_ address: String) throws -> (host: String, port: UInt16) {
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else {
            throw ConfigurationError.invalid("http must be HOST:PORT (port 0 to 65535), got \"\(address)\"")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" { host = "127.0.0.1" }
        if host.isEmpty || host == "*" { host = "0.0.0.0" }
        return (host, port)
    }

    /// Loopback only: the endpoint has no authentication.
    static func isLoopback(_ address: String) -> Bool {
        guard let (host, _) = try? parse(address) else { return false }
        return host.hasPrefix("127.") || host == "::1"
    }
}

/// The smallest HTTP client that reads the endpoint: for benchmarks and tests that scrape a daemon
/// as Prometheus would, without a client library.
public enum HTTPProbe {
    public enum ProbeError: Error { case connect(String, Int32), malformed(String) }

    /// A blocking HTTP/1.1 GET to an IPv4 `HOST:PORT`: (status code, body).
    public static func get(_ hostPort: String, _ path: String) throws -> (status: Int, body: String) {
        guard let colon = hostPort.lastIndex(of: ":"), let port = UInt16(hostPort[hostPort.index(after: colon)...]) else {
            throw ProbeError.malformed("not HOST:PORT: \(hostPort)")
        }
        let host = String(hostPort[..<colon])
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw ProbeError.connect(hostPort, errno) }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: \(hostPort)\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += chunk[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let head = text.range(of: "\r\n\r\n"), let status = Int(text.split(separator: " ").dropFirst().first ?? "") else {
            throw ProbeError.malformed(text)
        }
        return (status, String(text[head.upperBound...]))
    }
}
