import Foundation
@testable import Learning
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
        // What an orchestrator sees until the process exits: unhealthy, not ready, the thread named.
        let http = try #require(daemon.httpEndpoint)
        let (status, body) = try HTTPProbe.get(http, "/healthz")
        #expect(status == 503 && body.contains("\"failed\":\"eddy-snapshots\""), "\(body)")
        #expect(try HTTPProbe.get(http, "/readyz").status == 503)
        #expect(!daemon.health().healthy)
        daemon.stop()
        #expect(heard.withLock { reports }.count == 1, "reported once")
    }
}

@Suite struct RollbackTests {
    static func trained(_ p: StreamPipeline, from start: Int = 0, samples: Int = 600) {
        var random = RandomSource(seed: UInt64(start + 1))
        let d = p.sampleDimension
        var x = [Float](repeating: 0, count: samples * d)
        for i in 0..<x.count {
            let phase = Double(start * d + i) / 7
            x[i] = Float(sin(phase)) + 0.1 * random.normal()
        }
        _ = x.withUnsafeBufferPointer { p.score($0.baseAddress!, count: samples, firstSequence: UInt64(start)) }
        while p.trainStep() {}
    }

    /// A weight that turns NaN (as a poisoned batch once made it) is found within 16 steps: the
    /// models go back to the last published state, the scorer never gets the bad weights, no
    /// snapshot or checkpoint carries them, and the rollback is counted.
    @Test func aNonFiniteWeightRollsTheModelsBackToTheLastPublishedState() throws {
        var settings = StreamConfiguration().resolved(dim: 4)
        settings.mocoQueue = 128
        let p = StreamPipeline(name: "r", settings: settings)
        Self.trained(p)
        let published = p.takeSnapshots(now: 1)
        #expect(published.count == 2 && p.lastGood != nil)
        let goodVersion = p.autoencoder.step
        Self.trained(p, from: 600, samples: 200)  // more steps after the snapshot
        #expect(p.autoencoder.step > goodVersion)
        p.autoencoder.parameters.pointer[3] = .nan
        Self.trained(p, from: 800, samples: 200)
        #expect(p.rollbacks == 1 && p.status.rollbacks == 1)
        #expect(p.autoencoder.isFinite && p.moco.isFinite)
        #expect(p.autoencoder.step < goodVersion + 20, "back to the snapshot (found within 16 steps), then on")
        // Whatever is published or checkpointed next is finite.
        for s in p.takeSnapshots(now: 2) { #expect(s.layers.allSatisfy { $0.weights.allSatisfy(\.isFinite) && $0.bias.allSatisfy(\.isFinite) }) }
        p.moco.key.pointer[0] = .infinity  // found before the checkpoint, not after a step
        let restored = try StreamPipeline.restore(p.serialized(), settings: p.settings)
        #expect(restored.autoencoder.isFinite && restored.moco.isFinite && p.rollbacks == 2)
    }

    /// A restored stream's models are its good state until its first snapshot: a weight that turns
    /// NaN before then rolls back to them, not to fresh models.
    @Test func aRestoredStreamRollsBackToTheModelsItRestored() throws {
        var settings = StreamConfiguration().resolved(dim: 4)
        settings.mocoQueue = 128
        let p = StreamPipeline(name: "r", settings: settings)
        Self.trained(p)
        let restored = try StreamPipeline.restore(p.serialized(), settings: p.settings)
        let (aeStep, mocoStep) = (restored.autoencoder.step, restored.moco.step)
        #expect(aeStep > 20 && mocoStep > 20)
        restored.autoencoder.parameters.pointer[3] = .nan
        Self.trained(restored, from: 600, samples: 200)
        #expect(restored.rollbacks == 1 && restored.autoencoder.isFinite)
        #expect(restored.autoencoder.step >= aeStep && restored.moco.step >= mocoStep, "back to the restored models, then on")
    }

    /// With nothing published yet there is no good state to go back to: the models start afresh.
    @Test func withoutAPublishedStateTheModelsStartAfresh() {
        let p = StreamPipeline(name: "f", settings: StreamConfiguration().resolved(dim: 3))
        Self.trained(p)
        p.moco.query.pointer[0] = .nan
        Self.trained(p, from: 600, samples: 200)
        #expect(p.rollbacks == 1 && p.moco.isFinite && p.autoencoder.isFinite)
    }
}
