import Foundation
import Pipeline

#if canImport(Glibc)
import Glibc
#endif

/// systemd's notification protocol (sd_notify(3)), without libsystemd: datagrams of `KEY=VALUE`
/// lines to the socket named by `NOTIFY_SOCKET`. With `Type=notify` the unit is started when the
/// daemon says READY=1 (sockets bound, checkpoints restored); with `WatchdogSec=` it is restarted
/// when WATCHDOG=1 stops coming, which the daemon stops sending as soon as a thread stalls.
final class SystemdNotifier: @unchecked Sendable {
    private let fd: Int32
    private var address = sockaddr_un()
    private let addressLength: socklen_t
    /// How often to feed the watchdog (half its timeout), if systemd set one for this process.
    let watchdogInterval: Double?

    /// Nil when not started by systemd with a notify socket.
    init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty, path.utf8.count < 108,
            path.hasPrefix("/") || path.hasPrefix("@")
        else { return nil }
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }  // the abstract namespace
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        addressLength = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes[0] == 0 ? 0 : 1))
        // WATCHDOG_PID, when set, names the process the watchdog is for.
        if let usec = environment["WATCHDOG_USEC"].flatMap(Double.init), usec > 0,
            environment["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true
        {
            watchdogInterval = usec * 1e-6 / 2
        } else {
            watchdogInterval = nil
        }
    }

    deinit { close(fd) }

    /// Sends one notification (`READY=1`, `STATUS=...`); false if it could not be sent.
    @discardableResult
    func notify(_ state: String) -> Bool {
        let bytes = Array(state.utf8)
        return withUnsafePointer(to: &address) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                sendto(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL), sa, addressLength) == bytes.count
            }
        }
    }

    /// Feeds the watchdog every `watchdogInterval` while the daemon is healthy, on a thread of its
    /// own, until `stopped` says so. A stalled thread starves it: systemd then kills and restarts.
    func feedWatchdog(_ daemon: Daemon, stopped: @escaping @Sendable () -> Bool) {
        guard let interval = watchdogInterval else { return }
        let thread = Thread { [self] in
            var fed = true
            while !stopped() {
                let health = daemon.health()
                if health.healthy {
                    notify("WATCHDOG=1")
                } else if fed {
                    notify("STATUS=unhealthy: stalled \(health.stalled.joined(separator: ", "))")
                }
                fed = health.healthy
                Thread.sleep(forTimeInterval: min(interval, 1))
            }
        }
        thread.name = "eddy-watchdog"
        thread.start()
    }
}
