import Learning

/// Period deviation on each channel of a stream of several features (`PeriodCheck` per channel):
/// each channel's last `span` values against those one of its own periods earlier, calibrated per
/// channel; the reading is the most surprising channel's. A row of such a stream is scored alone,
/// so a channel's cycle is something no other signal compares with itself: a trend, a level moved
/// or a flat stretch that keeps within the range and looks, row by row, like rows seen before.
public final class ChannelPeriodSignal: AnomalySignal, @unchecked Sendable {
    public static let name = "channel-period"
    public static let stateVersion: UInt32 = 1

    public internal(set) var checks: [PeriodCheck]
    /// Each channel's smallest and largest value so far (the checks' flat-stretch floor scales by
    /// the range).
    public internal(set) var low: [Float], high: [Float]
    /// The last sample's `ln ratio` per channel (nil: not comparable yet), between `read` and `learn`.
    var logRatios: [Float?]
    /// The channel of the last reading's surprise (−1: none).
    public private(set) var lastChannel = -1
    /// The channel of the last reading's strength, and that strength (each channel's strength is
    /// measured over its own peak, so it need not be the most surprising channel).
    public private(set) var strongest: (channel: Int, strength: Float) = (-1, 0)
    /// The strength is measured over the larger of a channel's recent peak and this (as the
    /// discord's: the largest of several channels' surprises is larger than one channel's).
    public let margin: Float

    /// `context`: values each row's input covers (a channel's period up to it is the model's).
    public init(channels: Int, span: Int, context: Int, setting: PeriodSetting, margin: Float = 0, horizon: Int, holdOff: Int) {
        self.margin = margin
        let c = max(1, channels)
        checks = (0..<c).map { _ in PeriodCheck(span: span, context: context, setting: setting, horizon: horizon, holdOff: holdOff) }
        low = [Float](repeating: .infinity, count: c)
        high = [Float](repeating: -.infinity, count: c)
        logRatios = [Float?](repeating: nil, count: c)
    }

    /// What the signal holds for a stream of `channels` channels: per channel the check's values,
    /// stored twice over, and its calibrator's remembered surprises.
    public static func bytes(channels: Int, span: Int, setting: PeriodSetting, holdOff: Int) -> Int {
        var fixed = 0
        if case .fixed(let n) = setting { fixed = n }
        let capacity = max(PeriodCheck.longDetectionSamples, fixed + span + 1)
        return channels * (4 * 2 * capacity + 16 * max(holdOff, 1) + 128)
    }

    /// The channel an alert of the last reading comes from: the strongest, or for an alert on
    /// evidence alone the most surprising one; −1: none.
    public func alertChannel(onEvidence: Bool) -> Int { onEvidence ? lastChannel : strongest.channel }

    /// Each channel's period in values (0: none found, or not decided yet).
    public var periods: [Int] { checks.map(\.period) }

    public func read(_ o: inout Observation) -> Reading {
        var surprise = -Float.infinity, strength: Float = 0
        lastChannel = -1
        strongest = (-1, 0)
        for c in checks.indices {
            let x = o.values[c]
            if x < low[c] { low[c] = x }
            if x > high[c] { high[c] = x }
            let ratio = checks[c].push(x, rangeWidth: high[c] - low[c])
            logRatios[c] = ratio
            guard o.scored, let ratio, checks[c].ready else { continue }
            let peak = max(checks[c].calibrator.recentPeak, margin)
            let s = checks[c].score(logRatio: ratio)
            if s.surprise > surprise { (surprise, lastChannel) = (s.surprise, c) }
            let channelStrength = Calibrator.score(surprise: s.surprise, peak: peak)
            if channelStrength > strongest.strength { strongest = (c, channelStrength) }
            strength = max(strength, channelStrength)
        }
        return Reading(surprise: surprise, strength: strength)
    }

    public func learn(_ o: Observation, anomalous: Bool) {
        guard !anomalous else { return }
        for c in checks.indices { if let r = logRatios[c] { checks[c].learn(logRatio: r) } }
    }

    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(checks.count))
        for c in checks.indices {
            w.write(low[c]); w.write(high[c])
            checks[c].encode(&w)
        }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        let n = Int(try r.read(UInt32.self))
        guard n == checks.count else { throw StateError.invalid("channel period: \(n) channels, the stream has \(checks.count)") }
        var restored: [(Float, Float, PeriodCheck)] = []
        for _ in 0..<n {
            let lo = try r.readNumber(Float.self, "channel range"), hi = try r.readNumber(Float.self, "channel range")
            restored.append((lo, hi, try PeriodCheck.decode(&r, streamFormat: 5)))
        }
        for c in 0..<n { (low[c], high[c], checks[c]) = (restored[c].0, restored[c].1, checks[c].adopting(restored[c].2)) }
    }
}
