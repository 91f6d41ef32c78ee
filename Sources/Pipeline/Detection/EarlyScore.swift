import Learning

/// A univariate stream's score while it warms up, before the autoencoder and the signals have seen
/// enough to speak: the shape novelty of its last `window` values (their mean removed), measured by
/// a `DiscordSignal` against every earlier window among its newest `capacity` values, calibrated by
/// a running Gaussian of the log-distances before it. It speaks from the stream's 83rd value (by
/// default its first row is its 128th); it never alerts (the alert strength stays 0 until the stream
/// is warm), and once the stream is warm it retires and frees what it kept. A stream that never
/// warms (no training: `replay_ratio = 0`) keeps it, and its cost, for good.
///
/// It is the chain's, not a signal: its reading enters only the score of a warming sample, so what
/// a warm stream scores and alerts is the same with it or without it.
public final class EarlyScore: CheckpointSection, @unchecked Sendable {
    public static let name = "early-score"
    /// 2: the discord's own section (1 kept the values itself; such a section starts afresh).
    public static let stateVersion: UInt32 = 2
    /// The window compared (values); it speaks once two windows' worth of earlier windows exist.
    public static let window = 16
    /// Log-distances that calibrate the surprise before the first is published.
    public static let minimumCalibration = 20
    /// The newest values compared with (a longer warm-up slides over them): the lags of a discord
    /// whose oldest earlier window starts `capacity` values back.
    public static let capacity = 512
    static let history = capacity - window

    /// The distances (nil once retired). Its own calibrators are not used: the early score
    /// publishes from fewer distances than a discord alerts on.
    private(set) var discord: DiscordSignal? = EarlyScore.makeDiscord()
    public private(set) var calibrator = Calibrator(horizon: Int(Int32.max), holdOff: 0)
    /// The last value's distance to its nearest earlier window (nil: none yet, or retired).
    public private(set) var lastDistance: Double?

    public init() {}

    static func makeDiscord() -> DiscordSignal {
        DiscordSignal(window: window, history: history, channels: 1, horizon: 1, holdOff: 0, readyWindows: 2)
    }

    /// Bytes it holds at most (the discord's rings).
    public static let bytes = DiscordSignal.bytes(window: window, history: history, channels: 1) + 256

    /// Values read so far.
    public var count: Int { discord?.count ?? 0 }
    /// True once the stream was warm: nothing is kept or read any more.
    public var retired: Bool { discord == nil }

    /// Reads the sample's value; its surprise in standard units once there are enough earlier
    /// windows and log-distances, else nil.
    public func read(_ x: Float) -> Float? {
        guard let discord else { return nil }
        lastDistance = discord.push(Double(x), channel: 0)
        guard let d = lastDistance else { return nil }
        let logDistance = discord.logDistance(d, channel: 0)
        let ready = calibrator.count >= UInt64(Self.minimumCalibration)
        let surprise = calibrator.surprise(logError: logDistance)
        calibrator.update(logError: logDistance)
        return ready ? surprise : nil
    }

    /// The stream is warm: drop what was kept; later reads say nothing.
    public func retire() {
        discord = nil
        lastDistance = nil
    }

    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(retired ? 1 : 0))
        guard let discord else { return }
        calibrator.encode(&w)
        var inner = StateWriter()
        discord.encode(&inner)
        w.write(blob: inner.bytes)
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 || version == 2 else { throw StateError.unsupportedVersion(version) }
        guard version == 2 else { return }
        let isRetired = try r.read(UInt32.self)
        guard isRetired <= 1 else { throw StateError.invalid("early score") }
        guard isRetired == 0 else { return retire() }
        let calibrator = try Calibrator.decode(&r).reconfigured(horizon: self.calibrator.horizon, holdOff: 0)
        let restored = Self.makeDiscord()
        var inner = StateReader(try r.readBlob())
        try restored.decode(&inner, version: DiscordSignal.stateVersion)
        (self.calibrator, discord, lastDistance) = (calibrator, restored, nil)
    }
}
