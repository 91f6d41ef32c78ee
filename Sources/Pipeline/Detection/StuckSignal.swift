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
/// stuck (its short runs still count towards the longest run).
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
    /// Per channel, the last value (NaN before the first) and the values equal to the one before it,
    /// in a row (a run of `run` is `run + 1` values the same): all that a value that moved touches.
    /// Kept in memory of the signal's own, read without the exclusivity checks of a class's arrays:
    /// a sample costs 1 to 2 ns a channel. `counters` holds the samples read, the channels whose
    /// run is not 0 and whether the last sample was anomalous.
    let lastValues: UnsafeMutablePointer<Float>
    let runs: UnsafeMutablePointer<Int>
    let counters: UnsafeMutablePointer<Int>
    var seen: Int {
        get { counters[0] }
        set { counters[0] = newValue }
    }
    public var run: [Int] { Array(UnsafeBufferPointer(start: runs, count: channels)) }
    /// What a channel has learned.
    struct Channel: Equatable {
        /// The longest normal run shorter than `minimumRun` values (at any value).
        var longest = 0
        /// The repeats of every run ended (its moves are the rest of its values), and of the normal
        /// runs learned.
        var allRepeats = 0, repeats = 0
        /// The resting slot the next resting value takes.
        var restingNext = 0
        /// The current run met a sample found anomalous.
        var spoiled = false
    }
    var state: [Channel]
    /// Per channel, `restingValues` slots (NaN: empty).
    public internal(set) var resting: [Float]
    /// The channel of the last reading (the longest stuck run; −1: none).
    public private(set) var lastChannel = -1
    /// Whether the sample read last was found anomalous (set by `learn`, read by the next `read`):
    /// a run that begins at its value begins at an anomalous value. Not in the checkpoint: it spans
    /// one sample.
    var previousAnomalous: Bool {
        get { counters[2] != 0 }
        set { counters[2] = newValue ? 1 : 0 }
    }

    public var longest: [Int] { state.map(\.longest) }
    public var repeats: [Int] { state.map(\.repeats) }
    /// Per channel, the values after its first that differed from the one before.
    public var moves: [Int] { (0..<channels).map(moves(channel:)) }

    public init(channels: Int, minimumRun: Int, holdOff: Int) {
        let c = max(1, channels)
        self.channels = c
        self.minimumRun = max(2, minimumRun)
        self.holdOff = max(1, holdOff)
        lastValues = .allocate(capacity: c)
        lastValues.initialize(repeating: .nan, count: c)
        runs = .allocate(capacity: c)
        runs.initialize(repeating: 0, count: c)
        counters = .allocate(capacity: 3)
        counters.initialize(repeating: 0, count: 3)
        state = [Channel](repeating: Channel(), count: c)
        resting = [Float](repeating: .nan, count: c * Self.restingValues)
    }

    deinit {
        lastValues.deallocate()
        runs.deallocate()
        counters.deallocate()
    }

    /// What the signal holds for a stream of `channels` channels.
    public static func bytes(channels: Int) -> Int { channels * (4 * restingValues + 64) }

    public var corroborates: Bool { false }

    func moves(channel c: Int) -> Int { max(0, seen - 1 - state[c].allRepeats - runs[c]) }

    /// The run channel `c` must reach to be stuck (in `run`'s count: values after the first).
    public func bar(channel c: Int) -> Int { bar(state[c], moves: moves(channel: c)) }

    func bar(_ k: Channel, moves: Int) -> Int {
        let p = Double(k.repeats) / Double(max(k.repeats + moves, 1))
        // Every value repeating (p = 1, only from a damaged checkpoint) makes no run unlikely.
        let unlikely = p >= 1 ? 1_000_000_000 : p > 0 ? Int(min((log(Self.chance) / log(p)).rounded(.up), 1e9)) : 0
        return max(minimumRun - 1, 2 * k.longest + 1, unlikely)
    }

    /// Whether channel `c` has rested at `x`.
    public func rests(channel c: Int, at x: Float) -> Bool {
        resting[(c * Self.restingValues)..<((c + 1) * Self.restingValues)].contains(x)
    }

    /// Channel `c`'s current run in values (the first of them included).
    public func repeated(channel c: Int) -> Int { runs[c] + 1 }

    /// An alert's reason, in the words an operator reads.
    public static func reason(channel: Int, values: Int) -> String {
        "feature \(channel) has sent the same value \(values) times in a row"
    }

    public func read(_ o: inout Observation) -> Reading {
        lastChannel = -1
        counters[0] += 1
        let values = o.values, n = min(channels, o.dimension), lp = lastValues, rp = runs
        let afterAnomalous = previousAnomalous
        previousAnomalous = false
        // The usual sample: no value repeats and no run is going on. One pass that compares, a copy.
        if counters[1] == 0 {
            var equal: UInt8 = 0
            for c in 0..<n { equal |= values[c] == lp[c] ? 1 : 0 }
            if equal == 0 {
                lp.update(from: values, count: n)
                return Reading()
            }
        }
        var longestStuck = 0
        for c in 0..<n {
            let x = values[c]
            if x != lp[c] && rp[c] == 0 {
                lp[c] = x
            } else if x == lp[c] {
                if rp[c] == 0 {
                    counters[1] += 1
                    // The run's first value was the anomalous sample's.
                    if afterAnomalous { state[c].spoiled = true }
                }
                rp[c] += 1
                let r = rp[c]
                if r >= minimumRun - 1 && r > longestStuck && stuck(channel: c, run: r, at: x) { (longestStuck, lastChannel) = (r, c) }
            } else {
                let (value, r) = (lp[c], rp[c])
                (rp[c], lp[c]) = (0, x)
                counters[1] -= 1
                end(channel: c, at: value, run: r)
            }
        }
        guard lastChannel >= 0 else { return Reading() }
        return Reading(surprise: Self.stuckSurprise, strength: 1)
    }

    /// Whether channel `c`'s run of `r` repeats at `x` is stuck.
    private func stuck(channel c: Int, run r: Int, at x: Float) -> Bool {
        let k = state[c], moves = counters[0] - 1 - k.allRepeats - r
        guard moves >= Self.minimumMoves else { return false }
        let bar = bar(k, moves: moves)
        // Subtracted, not added: a restored longest run may be near Int's limit.
        return r >= bar && r - bar < holdOff && !rests(channel: c, at: x)
    }

    /// Channel `c`'s run of `r` repeats at `x` has ended. A run among normal samples is a normal run
    /// (one in the stream's warm-up too: nothing is anomalous there); one that was stuck for a whole
    /// hold-off had become the channel's normal.
    private func end(channel c: Int, at x: Float, run r: Int) {
        var k = state[c]
        defer { state[c] = k }
        let spoiled = k.spoiled
        k.spoiled = false
        k.allRepeats += r
        let resting = rests(channel: c, at: x)
        let bar = bar(k, moves: max(0, seen - 1 - k.allRepeats - runs[c]))
        let outlived = !resting && r >= bar && r - bar >= holdOff
        guard !spoiled || outlived else { return }
        k.repeats = min(k.repeats + r, Int(Int32.max))
        if r + 1 >= minimumRun {
            if !resting {
                self.resting[c * Self.restingValues + k.restingNext] = x
                k.restingNext = (k.restingNext + 1) % Self.restingValues
            }
        } else {
            k.longest = max(k.longest, r)
        }
    }

    public func learn(_ o: Observation, anomalous: Bool) {
        previousAnomalous = anomalous
        guard anomalous else { return }
        for c in 0..<channels where runs[c] > 0 { state[c].spoiled = true }
    }

    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(channels))
        w.write(UInt32(Self.restingValues))
        w.write(UInt64(seen))
        for c in 0..<channels {
            let k = state[c]
            w.write(lastValues[c])
            for n in [runs[c], k.longest, k.allRepeats, k.repeats, k.restingNext] { w.write(UInt64(n)) }
            w.write(UInt8(k.spoiled ? 1 : 0))
            for i in 0..<Self.restingValues { w.write(resting[c * Self.restingValues + i]) }
        }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        let n = Int(try r.read(UInt32.self)), slots = Int(try r.read(UInt32.self))
        guard n == channels else { throw StateError.invalid("stuck: \(n) channels, the stream has \(channels)") }
        guard slots == Self.restingValues else { throw StateError.invalid("stuck: \(slots) resting values") }
        let count = try r.read(UInt64.self)
        guard count < 1 << 62 else { throw StateError.invalid("stuck: samples read") }
        var restored: [(x: Float, counts: [Int], spoiled: Bool, resting: [Float])] = []
        for _ in 0..<n {
            let x = try r.read(Float.self)
            let counts = try (0..<5).map { _ in try r.read(UInt64.self) }
            let flags = try r.read(UInt8.self)
            let values = try (0..<slots).map { _ in try r.read(Float.self) }
            // Only states the signal can reach: runs and repeats within the samples read (compared
            // without an addition that could overflow), a run only after a first value.
            guard counts[0] <= count, counts[2] <= count - counts[0], counts[1] <= count, counts[3] <= counts[2],
                counts[3] <= UInt64(Int32.max), counts[4] < UInt64(slots), count > 0 || counts.allSatisfy({ $0 == 0 }),
                flags < 2, !x.isInfinite, !(x.isNaN && counts[0] > 0), !values.contains(where: \.isInfinite)
            else { throw StateError.invalid("stuck: a channel's run") }
            restored.append((x, counts.map { Int($0) }, flags == 1, values))
        }
        seen = Int(count)
        counters[1] = restored.filter { $0.counts[0] > 0 }.count
        for (c, v) in restored.enumerated() {
            (lastValues[c], runs[c]) = (v.x, v.counts[0])
            state[c] = Channel(longest: v.counts[1], allRepeats: v.counts[2], repeats: v.counts[3], restingNext: v.counts[4], spoiled: v.spoiled)
            for i in 0..<slots { resting[c * slots + i] = v.resting[i] }
        }
    }
}
