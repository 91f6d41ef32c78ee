import Foundation
import Learning
@testable import Pipeline
import Testing
import Workloads

/// What the log signals keep stays bounded and consistent when templates are evicted, when a
/// stream's timestamps come and go, and when a checkpoint is crafted.
@Suite struct LogSignalStateTests {
    /// Distinct messages (each its own template): words without digits.
    static func message(_ k: Int) -> String {
        let word = LetterWords.word(k)
        return "svc \(word)x reported \(word)y for \(word)z"
    }

    @Test func evictedTemplatesLeaveNothingBehindInTheSignals() throws {
        let settings = logSettings { $0.logTemplates = 20 }
        var run = OfflineRun(name: "app", settings: settings)
        for k in 0..<600 { _ = run.next(line: Substring(Self.message(k % 300))) }
        let burst = try #require(run.pipeline.chain.signal(BurstSignal.self))
        let template = try #require(run.pipeline.chain.signal(TemplateSignal.self))
        let silence = try #require(run.pipeline.chain.signal(SilenceSignal.self))
        let live = Set(run.pipeline.logs!.miner.templates.keys)
        #expect(live.count == 20)
        #expect(Set(burst.shares.keys).isSubset(of: live) && Set(burst.bursting.keys).isSubset(of: live))
        #expect(Set(template.counts.keys).isSubset(of: live) && Set(silence.rhythms.keys).isSubset(of: live))
        #expect(burst.recent.allSatisfy { $0 == 0 || live.contains($0) })
    }

    @Test func linesWithoutTimestampsInATimedStreamRaiseNoSilence() {
        // A heartbeat every 10 lines, one line a second; then 30 lines sent without timestamps
        // (they have no place in the stream's time, so the signal skips them), then stamped lines
        // again: nothing is overdue (the gap is 31 s, under five of 10 s), nothing reads "none for
        // 1.7e9 s" (a line without a time read as time 0 would).
        var run = OfflineRun(name: "app", settings: logSettings())
        var log = ServiceLog()
        let start: Int64 = 1_700_000_000 * 1_000_000_000
        var silences: [String] = []
        for i in 0..<1700 {
            let stamped = !(1500..<1530).contains(i)
            let (_, _, alert) = run.next(line: Substring(log.next()), timestamp: stamped ? start + Int64(i) * 1_000_000_000 : nil)
            if let alert, alert.signal == "silence" { silences.append(alert.reason) }
        }
        #expect(silences.isEmpty, "\(silences)")
    }

    @Test func aBurstShareFromTheFutureIsRefused() throws {
        let burst = BurstSignal(window: 4, horizon: 10, margin: 4, ratio: 5)
        var w = StateWriter()
        w.write(UInt64(3))  // lines
        w.write(UInt32(1)); w.write(UInt32(7)); w.write(1.0); w.write(UInt64(9))  // at 9 > 3 lines
        w.write(UInt32(0)); w.write(UInt32(0))
        var r = StateReader(w.bytes)
        #expect(throws: StateError.self) { try burst.decode(&r, version: 1) }
    }
}
