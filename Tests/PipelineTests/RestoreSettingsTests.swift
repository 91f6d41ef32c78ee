import Foundation
import Learning
@testable import Pipeline
import Testing

/// A checkpoint restores under the settings of now, resolved as a new stream's are: what changes a
/// model's input refuses the state (the stream starts afresh, its state set aside), what only
/// governs what comes next is taken up.
@Suite struct RestoreSettingsTests {
    func trained(_ settings: StreamConfiguration, name: String = "s") -> StreamPipeline {
        let p = StreamPipeline(name: name, settings: settings)
        let x = (0..<400 * settings.dim).map { sinf(Float($0) * 0.3) }
        _ = x.withUnsafeBufferPointer { p.score($0.baseAddress!, count: 400, firstSequence: 0) }
        while p.trainStep() {}
        return p
    }

    func small() -> StreamConfiguration {
        var s = StreamConfiguration()
        s.bufferCapacity = 128
        s.mocoQueue = 64
        return s
    }

    /// The daemon hands `restore` a stream's settings as configured (unresolved): the window is the
    /// one a new stream of the saved dim gets. Another window would feed the model other features,
    /// so the restore refuses it and names both; before, the saved window was kept silently.
    @Test func anotherWindowIsRefusedAndNamed() throws {
        let s = small()
        let saved = trained(s.resolved(dim: 1)).serialized()
        let again = try StreamPipeline.restore(saved, settings: s)
        #expect(again.settings.window == s.univariateWindow && again.settings.dim == 1)
        var wider = s
        wider.univariateWindow = 2 * s.univariateWindow
        #expect {
            try StreamPipeline.restore(saved, settings: wider)
        } throws: {
            "\($0)".contains("window of \(s.univariateWindow), now \(wider.univariateWindow)")
        }
    }

    /// A stream declared with another dim, or as another kind, is not the stream saved: refused and
    /// named (before, the saved dim and kind were kept, and the declared dim's samples rejected).
    /// Undeclared, a stream's dim and kind come from its state.
    @Test func anotherDeclaredDimOrKindIsRefused() throws {
        var s = small()
        s.dim = 3
        let saved = trained(s.resolved(dim: 3)).serialized()
        #expect(try StreamPipeline.restore(saved, settings: s).settings.dim == 3)
        var undeclared = s
        undeclared.dim = 0
        #expect(try StreamPipeline.restore(saved, settings: undeclared).settings.dim == 3)
        var wider = s
        wider.dim = 4
        #expect { try StreamPipeline.restore(saved, settings: wider) } throws: { "\($0)".contains("saved as a stream of dim 3, now declared dim 4") }
        var lines = s
        lines.dim = 0
        lines.log = true
        #expect { try StreamPipeline.restore(saved, settings: lines) } throws: { "\($0)".contains("now declared a log stream") }
        var run = OfflineRun(name: "app", settings: logSettings().resolved(dim: 0))
        var log = ServiceLog()
        for _ in 0..<100 { _ = run.next(line: Substring(log.next())) }
        let logState = run.pipeline.serialized()
        var plain = logSettings()
        plain.log = false
        plain.dim = 0
        #expect(try StreamPipeline.restore(logState, settings: plain).settings.log, "undeclared: a log stream from its state")
        plain.dim = 3
        #expect { try StreamPipeline.restore(logState, settings: plain) } throws: { "\($0)".contains("saved as a log stream, now declared dim 3") }
    }

    /// A changed `recent_fraction` splits the saved rows anew instead of keeping the saved split.
    @Test func anotherRecentFractionSplitsTheBufferAgain() throws {
        let s = small()
        let p = trained(s.resolved(dim: 1))
        #expect(p.buffer.count == 128 && p.buffer.recentCapacity == 64)
        var quarter = s
        quarter.recentFraction = 0.25
        let restored = try StreamPipeline.restore(p.serialized(), settings: quarter)
        #expect(restored.buffer.recentCapacity == 32 && restored.buffer.count == 32 + 64)
        #expect(restored.buffer.inserted == p.buffer.inserted && restored.buffer.evicted == p.buffer.evicted + 32)
    }

    /// A log stream restored at the daemon's start, from its settings as configured, warms up and
    /// alerts by its own `log_*` keys, as a new log stream does; before, it took the sample streams'.
    @Test func aLogStreamTakesItsOwnWarmUpAndEvidence() throws {
        // As the file gives them: `logSettings()`'s keys, unresolved.
        var settings = StreamConfiguration()
        settings.log = true
        (settings.batchSize, settings.minimumBuffered, settings.bufferCapacity, settings.mocoQueue) = (16, 16, 512, 64)
        (settings.logWarmupSamples, settings.logWarmupSteps, settings.rangeWarmup) = (200, 5, 200)
        (settings.logAlertEvidence, settings.alertEvidence, settings.warmupSamples, settings.warmupSteps) = (9, 6, 500, 30)
        var run = OfflineRun(name: "app", settings: settings.resolved(dim: 0))
        var log = ServiceLog()
        for _ in 0..<300 { _ = run.next(line: Substring(log.next())) }
        let restored = try StreamPipeline.restore(run.pipeline.serialized(), settings: settings)
        #expect(restored.settings.log && restored.settings.warmupSamples == 200)
        #expect(restored.settings.warmupSteps == 5 && restored.settings.alertEvidence == 9)
        #expect(restored.serialized() == run.pipeline.serialized())
    }
}
