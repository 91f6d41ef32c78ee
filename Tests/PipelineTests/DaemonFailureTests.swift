import Foundation
@testable import Pipeline
import Testing

@Suite struct DaemonFailureTests {
    /// A thread that ends with an error while the daemon is not stopping is not a quiet log line:
    /// `onThreadFailure` hears of it once (with the thread's name), `failure` keeps it, and the
    /// daemon still stops cleanly afterwards. (`eddy serve` stops on it and exits 70.)
    @Test func aDyingThreadIsReportedAndTheDaemonStillStops() throws {
        let daemon = try Daemon(configuration: testConfiguration(), logger: quietLogger)
        let heard = Lock()
        nonisolated(unsafe) var reports: [String] = []
        let told = DispatchSemaphore(value: 0)
        daemon.onThreadFailure = { thread, _ in
            heard.withLock { reports.append(thread) }
            told.signal()
        }
        _ = try daemon.start()
        #expect(daemon.failure == nil)
        daemon.stateLock.withLock { daemon.injectedFault = "eddy-snapshots" }
        #expect(told.wait(timeout: .now() + 10) == .success, "no report of the dead thread")
        #expect(heard.withLock { reports } == ["eddy-snapshots"])
        #expect(daemon.failure?.thread == "eddy-snapshots" && daemon.failure?.error.contains("fault injected") == true)
        daemon.stop()
        #expect(heard.withLock { reports }.count == 1, "reported once")
    }
}
