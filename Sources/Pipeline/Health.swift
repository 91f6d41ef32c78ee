import Foundation

/// The release, and the protocol it speaks (`eddy --version`, `eddy_build_info`).
public enum Version {
    public static let daemon = "0.25.0"
    /// The protobuf package: its major version is the wire's (protocols/SPEC.md §10).
    public static let wire = "eddy.v1"
}

/// The daemon's long-lived threads. Each comes round its loop at least every 50 ms when all is well
/// (its sockets are polled with that timeout); a thread that has not come round for
/// `health_stall_seconds` is stalled, and the daemon is unhealthy.
public enum DaemonThread: String, CaseIterable, Sendable {
    case ingest = "eddy-ingest"
    case trainer = "eddy-trainer"
    case snapshots = "eddy-snapshots"
    case authenticator = "eddy-auth"
}

/// When each thread last came round its loop (monotonic nanoseconds; 0: not running).
final class ThreadProgress: Sendable {
    private let beats = DaemonThread.allCases.map { _ in Counter() }

    private func slot(_ thread: DaemonThread) -> Int { DaemonThread.allCases.firstIndex(of: thread)! }

    /// One relaxed store: cheap enough for every turn of a hot loop.
    func beat(_ thread: DaemonThread) { beats[slot(thread)].store(DispatchTime.now().uptimeNanoseconds) }

    /// The thread ended (or never ran): it is no longer watched.
    func retire(_ thread: DaemonThread) { beats[slot(thread)].store(0) }

    /// Seconds since each running thread last came round.
    func ages(now: UInt64 = DispatchTime.now().uptimeNanoseconds) -> [(thread: DaemonThread, seconds: Double)] {
        DaemonThread.allCases.compactMap { t in
            let last = beats[slot(t)].load
            return last == 0 ? nil : (t, Double(now &- min(last, now)) * 1e-9)
        }
    }
}

/// What `/healthz`, `/readyz` and the systemd watchdog go by.
public struct Health: Sendable, Equatable {
    public enum Phase: String, Sendable { case starting, serving, stopping }
    public var phase: Phase
    /// Seconds since each running thread last came round its loop.
    public var threads: [String: Double]
    /// Threads that have not come round for `health_stall_seconds`.
    public var stalled: [String]
    /// A thread that ended with an error (the process is about to exit).
    public var failed: String?

    /// Every thread alive and making progress.
    public var healthy: Bool { failed == nil && stalled.isEmpty }
    /// Sockets bound, checkpoints restored, not stopping: samples sent now are taken.
    public var ready: Bool { phase == .serving && healthy }

    /// A small JSON document for the endpoints' bodies.
    public func json(status: String) -> String {
        let threadList = threads.sorted { $0.key < $1.key }
            .map { "\"\($0.key)\":\(String(format: "%.3f", $0.value))" }.joined(separator: ",")
        let stalledList = stalled.sorted().map { "\"\($0)\"" }.joined(separator: ",")
        var body = "{\"status\":\"\(status)\",\"phase\":\"\(phase.rawValue)\",\"stalled\":[\(stalledList)]"
        if let failed { body += ",\"failed\":\"\(failed)\"" }
        return body + ",\"seconds_since_progress\":{\(threadList)}}\n"
    }
}
