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
/// A channel repeats when the autocorrelation of its first n values has a local maximum above
/// `PeriodCheck.minimumCorrelation` (0.5) at a lag from 21 to min(n / 2, 300) − 2 (a maximum needs
/// a lag on each side, from `PeriodCheck.shortestPeriod`, 20, to below half the values and
/// `PeriodCheck.longestPeriod`, 300): checked at each of `checks` values, so a quick cycle is known
/// after 200 values and a slow one after 600, when the last check decides (the lags
/// `PeriodCheck.detectPeriod` searches). The values are kept until then. A channel constant through
/// all of them counts as repeating: nothing is more regular, and its first move is news.
///
/// A channel repeats *strongly* when that first maximum is at least `strongCorrelation` (0.8): a
/// cycle, a beat, a square wave or a sawtooth (their first maxima lie from 0.9 up on the development
/// corpora), not the plateaus and ramps of shapes at random intervals or a walk that happens to
/// come back (0.5 to 0.7). A strongly repeating channel's discord is measured over its peak before
/// the newest samples (`discord_peak_lag`).
public struct RepeatingChannels: Sendable, Equatable {
    public static let checks = [200, 300, 400, 500, PeriodCheck.detectionSamples]
    public static var last: Int { checks[checks.count - 1] }
    public static let strongCorrelation = 0.8

    /// Per channel: true once it repeats, false once the last check found no repetition, nil before.
    public private(set) var repeats: [Bool?]
    /// Per channel: whether it repeats strongly (false until decided, and for a constant channel).
    public private(set) var strong: [Bool]
    /// Per channel, its values while undecided (empty after).
    var seen: [[Float]]

    public init(channels: Int) {
        repeats = Array(repeating: nil, count: max(1, channels))
        strong = Array(repeating: false, count: max(1, channels))
        seen = (0..<max(1, channels)).map { _ in Self.keeping([]) }
    }

    /// `values` with room for every value a channel keeps, so that its storage does not grow past
    /// what `bytes` counts.
    static func keeping(_ values: [Float]) -> [Float] {
        var kept = values
        kept.reserveCapacity(last)
        return kept
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
            // nil: constant so far (undecided until the last check, then repeating).
            let peak = Self.firstPeak(seen[c], longestLag: min(n / 2, PeriodCheck.longestPeriod))
            if let peak, peak > 0 {
                (repeats[c], strong[c], seen[c], changed) = (true, peak >= Self.strongCorrelation, [], true)
            } else if peak == nil && n >= Self.last {
                (repeats[c], seen[c], changed) = (true, [], true)
            } else if n >= Self.last {
                (repeats[c], seen[c], changed) = (false, [], true)
            }
        }
        return changed
    }

    /// Whether the autocorrelation of `values` has a local maximum above 0.5 among lags
    /// `PeriodCheck.shortestPeriod + 1 ... longestLag − 2` (nil: the values are constant). The lags
    /// are worked out in order and the search stops at the first such maximum.
    public static func repeats(_ values: [Float], longestLag: Int) -> Bool? {
        firstPeak(values, longestLag: longestLag).map { $0 > 0 }
    }

    /// The autocorrelation at the first local maximum above 0.5 that `repeats` looks for (0: none;
    /// nil: the values are constant).
    public static func firstPeak(_ values: [Float], longestLag: Int) -> Double? {
        let first = PeriodCheck.shortestPeriod, end = max(first, longestLag)
        guard let autocorrelation = PeriodCheck.autocorrelation(values) else { return nil }
        guard end - first >= 3 else { return 0 }
        let least = Double(PeriodCheck.minimumCorrelation)
        var (previous, current) = (autocorrelation(first), autocorrelation(first + 1))
        for lag in (first + 1)..<(end - 1) {
            let next = autocorrelation(lag + 1)
            if current > least && current >= previous && current >= next { return current }
            (previous, current) = (current, next)
        }
        return 0
    }

    /// Every channel counted as repeating: a stream restored from a checkpoint written before the
    /// decisions were kept alerts as it did then.
    mutating func assumeRepeating() {
        repeats = Array(repeating: true, count: repeats.count)
        strong = Array(repeating: false, count: repeats.count)
        seen = Array(repeating: [], count: repeats.count)
    }

    /// Decides again whether channel `c`, which repeats, does so strongly, from `values` (its
    /// newest, oldest first, at least the first check's count): for a section that did not say
    /// (version 5). A channel that does not repeat, or too few values, leaves it as it is.
    mutating func decideStrength(_ c: Int, from values: [Float]) {
        guard repeats[c] == true, values.count >= Self.checks[0] else { return }
        let peak = Self.firstPeak(values, longestLag: min(values.count / 2, PeriodCheck.longestPeriod)) ?? 0
        strong[c] = peak >= Self.strongCorrelation
    }

    /// Bytes the kept values may come to.
    public static func bytes(channels: Int) -> Int { max(1, channels) * 4 * last }

    /// The channel count, then per channel its decision (0 undecided, 1 repeats, 2 does not, 3
    /// repeats strongly: from the discord's section version 6) and, undecided, its kept values.
    func encode(_ w: inout StateWriter) {
        w.write(UInt32(repeats.count))
        for c in repeats.indices {
            w.write(UInt8(repeats[c].map { $0 ? (strong[c] ? 3 : 1) : 2 } ?? 0))
            if repeats[c] == nil {
                w.write(UInt32(seen[c].count))
                for x in seen[c] { w.write(x) }
            }
        }
    }

    /// `strongly`: whether the section may say a channel repeats strongly (before, none does).
    mutating func decode(_ r: inout StateReader, strongly: Bool = true) throws {
        let n = Int(try r.read(UInt32.self))
        guard n == repeats.count else { throw StateError.invalid("repeating channels: \(n), the stream has \(repeats.count)") }
        var repeats = self.repeats, seen = self.seen
        var strong = Array(repeating: false, count: n)
        for c in 0..<n {
            switch try r.read(UInt8.self) {
            case 0:
                let k = Int(try r.read(UInt32.self))
                guard k < Self.last else { throw StateError.invalid("repeating channel values") }
                try r.requireRoom(k, each: 4)
                let values = try (0..<k).map { _ in try r.read(Float.self) }
                guard values.allSatisfy(\.isFinite) else { throw StateError.invalid("repeating channel values") }
                (repeats[c], seen[c]) = (nil, Self.keeping(values))
            case 1: (repeats[c], seen[c]) = (true, [])
            case 2: (repeats[c], seen[c]) = (false, [])
            case 3 where strongly: (repeats[c], strong[c], seen[c]) = (true, true, [])
            default: throw StateError.invalid("repeating channel decision")
            }
        }
        (self.repeats, self.strong, self.seen) = (repeats, strong, seen)
    }
}
