import Learning

/// A count that stays in its burst band: a surge, or a level that rose and stays.
///
/// A count's bursts (a retweet storm, a retry wave) take it high for a value or a few, and where
/// their sizes are heavy-tailed they set new records as they come, so its range does not tell a
/// burst from a rise that stays (the range's tail rule, `range_tail`, lets ordinary records through
/// for that reason). What a burst does not do is stay. The range hands on each count feature's
/// burst band (`Observation.countBands`: its log values' tail start, `RangeSignal.tailDeviations`
/// spreads over their mean), and this signal counts the values in a row above it. A run that
/// reaches `minimumRun` values and is longer than every earlier run that did not alert is a surge:
/// the sample where it crosses is certain (it alerts, unless the stream warms up or the policy holds
/// it, and teaches nothing), once per run. The record learns from every run that ends without having
/// been certain, in warm-up too; a run that was certain is not learned (whether or not it alerted),
/// so a surge does not raise the bar for the next. Features that are not counts (a value that was not
/// whole, or negative) have no band and are never read. Where several features pass their records
/// at one sample, one is read (the first), the others at the next. A sample that is both beyond the
/// range and a surge's is reported as the surge (the chain lets a certainty other than the range's
/// stand for it).
public final class SurgeSignal: AnomalySignal, @unchecked Sendable {
    public static let name = "surge"
    public static let stateVersion: UInt32 = 1

    public let minimumRun: Int
    let channels: Int
    /// Per channel: the current run above the band, the longest run that ended without alerting,
    /// and whether the current run has alerted. Raw storage: read for every sample.
    let runs: UnsafeMutablePointer<UInt32>, records: UnsafeMutablePointer<UInt32>
    let alerted: UnsafeMutablePointer<UInt8>
    /// The channel of the last reading (−1: none), its run and the record it passed.
    public private(set) var lastChannel = -1
    public private(set) var lastRun = 0, lastRecord = 0
    public private(set) var explanation: [(index: Int, share: Float)] = []
    /// A univariate windowed stream's window (its one value is time step `window − 1` in explanations).
    let window: Int

    public init(channels: Int, minimumRun: Int, window: Int) {
        let c = max(1, channels)
        self.channels = c
        self.minimumRun = max(2, minimumRun)
        self.window = window
        (runs, records) = (.allocate(capacity: c), .allocate(capacity: c))
        runs.initialize(repeating: 0, count: c)
        records.initialize(repeating: 0, count: c)
        alerted = .allocate(capacity: c)
        alerted.initialize(repeating: 0, count: c)
    }

    deinit {
        runs.deallocate()
        records.deallocate()
        alerted.deallocate()
    }

    /// What the signal holds for a stream of `channels` channels.
    public static func bytes(channels: Int) -> Int { channels * 9 + 64 }

    public var corroborates: Bool { false }
    public var learns: Bool { false }

    public var run: [Int] { (0..<channels).map { Int(runs[$0]) } }
    public var record: [Int] { (0..<channels).map { Int(records[$0]) } }

    /// An alert's reason, in the words an operator reads.
    public static func reason(channel: Int, run: Int, record: Int) -> String {
        "feature \(channel) has stayed above its bursts' usual level for \(run) values in a row (\(record) at most before)"
    }

    public func read(_ o: inout Observation) -> Reading {
        lastChannel = -1
        guard let bands = o.countBands else { return Reading() }
        let x = o.values, n = min(channels, o.dimension)
        for c in 0..<n {
            if x[c] > bands[c] {
                if runs[c] < UInt32.max { runs[c] += 1 }
                let r = runs[c]
                // One channel a sample: another that passes its record at the same sample is read at
                // the next (its run still longer), so every surge is reported.
                if lastChannel < 0 && alerted[c] == 0 && Int(r) >= minimumRun && r > records[c] {
                    alerted[c] = 1
                    (lastChannel, lastRun, lastRecord) = (c, Int(r), Int(records[c]))
                }
            } else if runs[c] > 0 {
                if alerted[c] == 0 { records[c] = max(records[c], runs[c]) }
                (runs[c], alerted[c]) = (0, 0)
            }
        }
        guard lastChannel >= 0 else { return Reading() }
        explanation = [(window > 0 && o.dimension == 1 ? window - 1 : lastChannel, 1)]
        return Reading(certain: true)
    }

    public func learn(_ o: Observation, anomalous: Bool) {}

    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(channels))
        for c in 0..<channels {
            w.write(runs[c])
            w.write(records[c])
            w.write(alerted[c])
        }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        let n = Int(try r.read(UInt32.self))
        guard n == channels else { throw StateError.invalid("surge: \(n) channels, the stream has \(channels)") }
        var restored: [(UInt32, UInt32, UInt8)] = []
        for _ in 0..<n {
            let run = try r.read(UInt32.self), record = try r.read(UInt32.self), flag = try r.read(UInt8.self)
            // (An alerted run shorter than `minimumRun` is a setting raised since: kept, not refused.)
            guard flag < 2 else { throw StateError.invalid("surge: a channel's run") }
            restored.append((run, record, flag))
        }
        for (c, v) in restored.enumerated() { (runs[c], records[c], alerted[c]) = v }
    }
}
