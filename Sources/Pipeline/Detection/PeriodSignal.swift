import Learning

/// Period deviation, for a windowed stream: its last `window` values against those one period
/// earlier (`PeriodCheck`), calibrated like the reconstruction error.
public final class PeriodSignal: AnomalySignal, @unchecked Sendable {
    public static let name = "period"
    public static let stateVersion: UInt32 = 1

    public internal(set) var check: PeriodCheck
    let setting: PeriodSetting
    /// The last value's `ln ratio`, between `read` and `learn`.
    var logRatio: Float?

    public init(window: Int, context: Int, setting: PeriodSetting, horizon: Int, holdOff: Int) {
        self.setting = setting
        check = PeriodCheck(span: window, context: context, setting: setting, horizon: horizon, holdOff: holdOff)
    }

    /// The period in values (0: none found, or not decided yet).
    public var period: Int { check.period }

    public func read(_ o: inout Observation) -> Reading {
        logRatio = check.push(o.values[0], rangeWidth: o.rangeWidth)
        guard o.scored, let logRatio else { return Reading() }
        let s = check.score(logRatio: logRatio)
        return check.ready ? Reading(surprise: s.surprise, strength: s.score) : Reading()
    }

    public func learn(_ o: Observation, anomalous: Bool) {
        if !anomalous, let logRatio { check.learn(logRatio: logRatio) }
    }

    public func encode(_ w: inout StateWriter) { check.encode(&w) }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        adopt(try PeriodCheck.decode(&r, streamFormat: 5))  // its layout since stream format 5
    }

    /// Takes a saved check while the settings still ask for it (`PeriodCheck.adopting`).
    func adopt(_ saved: PeriodCheck) {
        guard setting != .off else { return }
        check = check.adopting(saved)
    }
}
