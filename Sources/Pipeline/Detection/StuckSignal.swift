#if canImport(Glibc)
import Glibc
#endif
import Learning

/// A stuck channel: a feature that repeats its last value exactly, for longer than it does.
///
/// A sensor that freezes (a dead converter, a gateway that resends its last reading, a driver that
/// holds the value it had) sends a value that looks entirely normal: inside the range, near the
/// level of the moment, reconstructed as well as any other. What gives it away is that it does not
/// move, and a reading of a real quantity with any noise in it does not repeat exactly for long.
///
/// Per channel the signal counts the values equal to the one before (the run). A run is **stuck**
/// when it reaches `minimumRun` values, more than twice the longest normal run of the channel and a
/// length that normal values, repeating as often as the channel's do, reach with a chance under
/// `chance` (so a quantised channel, whose values repeat, needs a longer run), on a channel that has
/// moved at least `minimumMoves` times (a flag or a setpoint that hardly moves has no habit to
/// break). A value the channel has rested at in normal data (a run of `minimumRun` values or more:
/// an idle metric's 0, a valve's closed position) is a state, not a fault: a run at it is never
/// stuck, and it does not count as the longest run.
///
/// While a run is stuck the reading is strong (strength 1: the sample is anomalous and teaches no
/// signal; the policy's repeat cap makes it one alert per incident) and its surprise is
/// `stuckSurprise`, so the published score stays high while the channel stays stuck. A run stuck
/// for `holdOff` values more is the channel's new normal: the reading stops, and when the run ends
/// it is learned as a resting value. A stuck run that ends sooner is not learned.
public final class StuckSignal: AnomalySignal, @unchecked Sendable {
    public static let name = "stuck"
    public static let stateVersion: UInt32 = 1
    /// Moves a channel must have made before a run on it can be stuck.
    public static let minimumMoves = 100
    /// The surprise of a stuck sample (standard units: Φ is 1 to float precision).
    public static let stuckSurprise: Float = 8
    /// A stuck run is one that normal values, repeating as often as the channel's do, would reach
    /// with at most this chance from a given start.
    public static let chance = 1e-6
    /// Resting values kept per channel (the newest replace the oldest).
    public static let restingValues = 8

    public let minimumRun: Int
    public let holdOff: Int
    let channels: Int
    /// Per channel: the last value, the values equal to the one before it in a row (so a run of
    /// `run` is `run + 1` values the same), the longest normal run at a value not resting, moves so
    /// far, the repeats of the normal runs learned, and whether the current run met a sample found
    /// anomalous.
    var last: [Float]
    public internal(set) var run: [Int]
    public internal(set) var longest: [Int]
    public internal(set) var moves: [Int]
    public internal(set) var repeats: [Int]
    var spoiled: [Bool]
    /// Per channel, `restingValues` slots (NaN: empty), and the slot the next one takes.
    public internal(set) var resting: [Float]
    var restingNext: [Int]
    /// The channel of the last reading (the longest stuck run; −1: none).
    public private(set) var lastChannel = -1

    public init(channels: Int, minimumRun: Int, holdOff: Int) {
        let c = max(1, channels)
        self.channels = c
        self.minimumRun = max(2, minimumRun)
        self.holdOff = max(1, holdOff)
        last = [Float](repeating: .nan, count: c)
        run = [Int](repeating: 0, count: c)
        longest = [Int](repeating: 0, count: c)
        moves = [Int](repeating: 0, count: c)
        repeats = [Int](repeating: 0, count: c)
        spoiled = [Bool](repeating: false, count: c)
        resting = [Float](repeating: .nan, count: c * Self.restingValues)
        restingNext = [Int](repeating: 0, count: c)
    }

    /// What the signal holds for a stream of `channels` channels.
    public static func bytes(channels: Int) -> Int { channels * (4 * restingValues + 64) }

    public var corroborates: Bool { false }

    /// The run channel `c` must reach to be stuck (in `run`'s count: values after the first).
    public func bar(channel c: Int) -> Int {
        let p = Double(repeats[c]) / Double(max(repeats[c] + moves[c], 1))
        let unlikely = p > 0 ? Int(min((log(Self.chance) / log(p)).rounded(.up), 1e9)) : 0
        return max(minimumRun - 1, 2 * longest[c] + 1, unlikely)
    }

    /// Whether channel `c` has rested at `x`.
    public func rests(channel c: Int, at x: Float) -> Bool {
        resting[(c * Self.restingValues)..<((c + 1) * Self.restingValues)].contains(x)
    }

    /// Channel `c`'s current run in values (the first of them included).
    public func repeated(channel c: Int) -> Int { run[c] + 1 }

    /// An alert's reason, in the words an operator reads.
    public static func reason(channel: Int, values: Int) -> String {
        "feature \(channel) has sent the same value \(values) times in a row"
    }

    public func read(_ o: inout Observation) -> Reading {
        var longestStuck = 0
        lastChannel = -1
        for c in 0..<channels {
            let x = o.values[c]
            if x == last[c] {
                run[c] += 1
            } else {
                if !last[c].isNaN {
                    moves[c] = min(moves[c] + 1, Int(Int32.max))
                    end(channel: c)
                }
                (run[c], spoiled[c]) = (0, false)
                last[c] = x
                continue
            }
            guard moves[c] >= Self.minimumMoves, run[c] > longestStuck else { continue }
            let bar = bar(channel: c)
            guard run[c] >= bar, run[c] < bar + holdOff, !rests(channel: c, at: x) else { continue }
            (longestStuck, lastChannel) = (run[c], c)
        }
        guard lastChannel >= 0 else { return Reading() }
        return Reading(surprise: Self.stuckSurprise, strength: 1)
    }

    /// Channel `c`'s run has ended. A run among normal samples is a normal run (one in the stream's
    /// warm-up too: nothing is anomalous there); one that was stuck for a whole hold-off had become
    /// the channel's normal.
    private func end(channel c: Int) {
        guard run[c] > 0 else { return }
        let x = last[c]
        let outlived = !rests(channel: c, at: x) && run[c] >= bar(channel: c) + holdOff
        guard !spoiled[c] || outlived else { return }
        repeats[c] = min(repeats[c] + run[c], Int(Int32.max))
        if run[c] + 1 >= minimumRun {
            if !rests(channel: c, at: x) {
                resting[c * Self.restingValues + restingNext[c]] = x
                restingNext[c] = (restingNext[c] + 1) % Self.restingValues
            }
        } else {
            longest[c] = max(longest[c], run[c])
        }
    }

    public func learn(_ o: Observation, anomalous: Bool) {
        guard anomalous else { return }
        for c in 0..<channels where run[c] > 0 { spoiled[c] = true }
    }

    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(channels))
        w.write(UInt32(Self.restingValues))
        for c in 0..<channels {
            w.write(last[c])
            for n in [run[c], longest[c], moves[c], repeats[c], restingNext[c]] { w.write(UInt64(n)) }
            w.write(UInt8(spoiled[c] ? 1 : 0))
            for k in 0..<Self.restingValues { w.write(resting[c * Self.restingValues + k]) }
        }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        let n = Int(try r.read(UInt32.self)), slots = Int(try r.read(UInt32.self))
        guard n == channels else { throw StateError.invalid("stuck: \(n) channels, the stream has \(channels)") }
        guard slots == Self.restingValues else { throw StateError.invalid("stuck: \(slots) resting values") }
        var restored: [(x: Float, counts: [Int], spoiled: Bool, resting: [Float])] = []
        for _ in 0..<n {
            let x = try r.read(Float.self)
            let counts = try (0..<5).map { _ in try r.read(UInt64.self) }
            let flags = try r.read(UInt8.self)
            let values = try (0..<slots).map { _ in try r.read(Float.self) }
            guard counts.allSatisfy({ $0 < 1 << 62 }), counts[4] < UInt64(slots), flags < 2, !x.isInfinite,
                !values.contains(where: \.isInfinite)
            else { throw StateError.invalid("stuck: a channel's run") }
            restored.append((x, counts.map { Int($0) }, flags == 1, values))
        }
        for (c, v) in restored.enumerated() {
            (last[c], run[c], longest[c], moves[c], repeats[c], restingNext[c]) =
                (v.x, v.counts[0], v.counts[1], v.counts[2], v.counts[3], v.counts[4])
            spoiled[c] = v.spoiled
            for k in 0..<slots { resting[c * slots + k] = v.resting[k] }
        }
    }
}
