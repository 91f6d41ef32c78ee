import Learning

/// Which channels of a stream repeat, for the discord's alerts on streams of several features
/// (`discord_repeating_only`).
///
/// A discord is a window with no near twin in the channel's past. On a channel whose normal
/// behaviour repeats (a cycle, a beat, a square wave) that is rare, and it is news. On a channel
/// that never repeats (a random walk, shapes of random height at random intervals) most windows
/// have no near twin and a record one is ordinary: measured on the multivariate development
/// corpora (model seed 0), such channels' discord alerts were 9 finds against 45 false alarms,
/// those of repeating channels 188 against 16. So a channel's discord is quiet (no alert strength,
/// and a surprise kept under `alert_evidence`, so it does not alert on evidence alone either)
/// until the channel is seen to repeat; its surprise still moves the published score and
/// corroborates a range excursion.
///
/// A channel repeats when the autocorrelation of its first values has a local maximum of at least
/// `PeriodCheck.minimumCorrelation` (0.5) at a lag from `PeriodCheck.shortestPeriod` (20) up to
/// half the values kept (and below `PeriodCheck.longestPeriod`, 300): checked at each of `checks`
/// values, so a quick cycle is known after 200 values and a slow one after 600, when the last check
/// decides (the lags `PeriodCheck.detectPeriod` searches). The values are kept until then.
public struct RepeatingChannels: Sendable, Equatable {
    public static let checks = [200, 300, 400, 500, PeriodCheck.detectionSamples]
    static var last: Int { checks[checks.count - 1] }

    /// Per channel: true once it repeats, false once the last check found no repetition, nil before.
    public private(set) var repeats: [Bool?]
    /// Per channel, its values while undecided (empty after).
    var seen: [[Float]]

    public init(channels: Int) {
        repeats = Array(repeating: nil, count: max(1, channels))
        seen = Array(repeating: [], count: max(1, channels))
    }

    /// Whether channel `c`'s discord is quiet (it has not been seen to repeat).
    @inline(__always)
    public func quiet(_ c: Int) -> Bool { repeats[c] != true }

    /// Takes one sample's values (one per channel); true when a channel's decision changed.
    public mutating func push(_ values: UnsafePointer<Float>, count: Int) -> Bool {
        guard count == repeats.count else { return false }
        var changed = false
        for c in 0..<count where repeats[c] == nil {
            seen[c].append(values[c])
            let n = seen[c].count
            guard Self.checks.contains(n) else { continue }
            if Self.repeats(seen[c], longestLag: min(n / 2, PeriodCheck.longestPeriod)) {
                (repeats[c], seen[c], changed) = (true, [], true)
            } else if n >= Self.last {
                (repeats[c], seen[c], changed) = (false, [], true)
            }
        }
        return changed
    }

    /// Whether the autocorrelation of `values` has a local maximum of at least 0.5 among lags
    /// `PeriodCheck.shortestPeriod..<longestLag`.
    public static func repeats(_ values: [Float], longestLag: Int) -> Bool {
        let lags = Array(PeriodCheck.shortestPeriod..<max(PeriodCheck.shortestPeriod, longestLag))
        guard lags.count >= 3, let autocorrelation = PeriodCheck.autocorrelation(values) else { return false }
        let correlation = lags.map(autocorrelation)
        for k in 1..<(lags.count - 1)
        where correlation[k] > Double(PeriodCheck.minimumCorrelation) && correlation[k] >= correlation[k - 1]
            && correlation[k] >= correlation[k + 1]
        {
            return true
        }
        return false
    }

    /// Every channel counted as repeating: a stream restored from a checkpoint written before the
    /// decisions were kept alerts as it did then.
    mutating func assumeRepeating() {
        repeats = Array(repeating: true, count: repeats.count)
        seen = Array(repeating: [], count: repeats.count)
    }

    /// Bytes the kept values may come to.
    public static func bytes(channels: Int) -> Int { max(1, channels) * 4 * last }

    /// The channel count, then per channel its decision (0 undecided, 1 repeats, 2 does not) and,
    /// undecided, its kept values.
    func encode(_ w: inout StateWriter) {
        w.write(UInt32(repeats.count))
        for c in repeats.indices {
            w.write(UInt8(repeats[c].map { $0 ? 1 : 2 } ?? 0))
            if repeats[c] == nil {
                w.write(UInt32(seen[c].count))
                for x in seen[c] { w.write(x) }
            }
        }
    }

    mutating func decode(_ r: inout StateReader) throws {
        let n = Int(try r.read(UInt32.self))
        guard n == repeats.count else { throw StateError.invalid("repeating channels: \(n), the stream has \(repeats.count)") }
        var repeats = self.repeats, seen = self.seen
        for c in 0..<n {
            switch try r.read(UInt8.self) {
            case 0:
                let k = Int(try r.read(UInt32.self))
                guard k < Self.last else { throw StateError.invalid("repeating channel values") }
                try r.requireRoom(k, each: 4)
                let values = try (0..<k).map { _ in try r.read(Float.self) }
                guard values.allSatisfy(\.isFinite) else { throw StateError.invalid("repeating channel values") }
                (repeats[c], seen[c]) = (nil, values)
            case 1: (repeats[c], seen[c]) = (true, [])
            case 2: (repeats[c], seen[c]) = (false, [])
            default: throw StateError.invalid("repeating channel decision")
            }
        }
        (self.repeats, self.seen) = (repeats, seen)
    }
}
