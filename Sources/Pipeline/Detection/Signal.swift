import Learning

/// One sample as the signals of a stream's detection chain see it, passed down the chain in order;
/// a signal may leave something for the signals after it (the range signal leaves the range's width).
public struct Observation {
    /// The sample as it came: `dimension` values.
    public var values: UnsafePointer<Float>
    public var dimension: Int
    /// The model's log-error (`Calibrator.logError`) of the input row ending at this sample; nil when
    /// the sample has no row yet (a window still filling): such a sample is not scored.
    public var logError: Float?
    /// The autoencoder has trained enough for its errors to teach the calibration.
    public var modelReady: Bool
    /// The width of the first feature's range so far (set by `RangeSignal`; 0 before).
    public var rangeWidth: Float = 0
    /// Per feature, the value above which a count is in its burst band (set by `RangeSignal` when
    /// the surge signal reads it; +∞ for a feature that is not a count or not yet measured).
    public var countBands: UnsafePointer<Float>? = nil
    /// A one-feature count's value is in its burst band (set by `RangeSignal` with `explains`): the
    /// model's error on it is the burst's, so the reconstruction signal does not read it.
    public var countBurst = false
    /// The stream is one count: one feature whose values have all been whole and never negative (set
    /// by `RangeSignal`). Its discord reads only its period's window (`discord_count_period_only`).
    public var oneCount = false
    /// A log stream's line: its template, parameters and time (nil for a sample stream).
    public var line: LineFacts? = nil

    public init(values: UnsafePointer<Float>, dimension: Int, logError: Float?, modelReady: Bool) {
        self.values = values
        self.dimension = dimension
        self.logError = logError
        self.modelReady = modelReady
    }

    /// Whether the sample is scored (it has an input row).
    public var scored: Bool { logError != nil }
}

/// What one signal makes of one sample (plain values: nothing to retain per sample).
public struct Reading: Sendable {
    /// How unusual the sample is, in standard units (Φ(surprise) is its tail probability); −∞: no
    /// opinion (not ready, or nothing to compare).
    public var surprise: Float = -.infinity
    /// The alert strength: the surprise measured over the signal's recent peak as well, Φ(z − peak),
    /// so that an incident is strong when it starts; 0: none.
    public var strength: Float = 0
    /// The sample scores 1 on this signal alone (a value beyond the range); the signal's
    /// `explanation` then says which features (or, for a window, time steps) it comes from.
    public var certain = false
    /// The signal holds the stream in its warm-up (scores 0, or the chain's early score; no alerts):
    /// it has not seen enough to say anything yet.
    public var warming = false
    /// A discrete event the signal reports once by itself (a burst as it starts, a silence, a
    /// number beyond its range): it alerts whatever the repeat cap, since an alert of another kind
    /// just before it is another incident.
    public var event = false

    public init(surprise: Float = -.infinity, strength: Float = 0, certain: Bool = false, warming: Bool = false, event: Bool = false) {
        self.surprise = surprise
        self.strength = strength
        self.certain = certain
        self.warming = warming
        self.event = event
    }
}

/// One source of evidence in a stream's detection chain, with its own state and checkpoint section.
///
/// For each sample the chain calls `read` on every signal in order (also for samples that are not
/// scored, so a signal can follow every value), combines the readings of scored samples, lets the
/// alert policy decide, and then calls `learn`: a sample the policy found anomalous must not teach
/// a signal's statistics that anomalies are normal. Signals are classes, as swift-nio's channel
/// handlers are: the chain calls them through the protocol on every sample, and a reference needs
/// no copy-on-write check where a boxed value would. They are used under their stream's lock.
public protocol AnomalySignal: AnyObject, CheckpointSection, Sendable {
    /// Once per batch, before its samples: a cheap pass over the whole batch (`count × dimension`).
    func prepare(_ values: UnsafePointer<Float>, count: Int, dimension: Int)
    /// One sample, in order.
    func read(_ o: inout Observation) -> Reading
    /// After the alert policy, for scored samples.
    func learn(_ o: Observation, anomalous: Bool)
    /// Whether `learn` does anything (the chain calls only the signals that learn).
    var learns: Bool { get }
    /// True while this signal holds its stream in its warm-up (its readings say so per sample).
    var warming: Bool { get }
    /// For the last reading, if it was certain: which features (or time steps) it comes from, as
    /// shares, largest first.
    var explanation: [(index: Int, share: Float)] { get }
    /// A log signal's reason for its last reading, for an alert it decided (nil: none).
    var finding: LogFinding? { get }
    /// Whether this signal's surprise is evidence apart from a value's distance beyond the range,
    /// so that it can corroborate a range excursion (`range_corroboration`).
    var corroborates: Bool { get }
}

extension AnomalySignal {
    public func prepare(_ values: UnsafePointer<Float>, count: Int, dimension: Int) {}
    public var learns: Bool { true }
    public var warming: Bool { false }
    public var explanation: [(index: Int, share: Float)] { [] }
    public var finding: LogFinding? { nil }
    public var corroborates: Bool { true }
}

/// The autoencoder's reconstruction error, calibrated: the surprise of `ln error` under a running
/// Gaussian of the log-errors of normal samples, and its strength over the recent peak (`Calibrator`).
/// A one-feature count's burst (`Observation.countBurst`: its value over its tail's start) is not
/// read: a count's bursts are its normal behaviour, heavy-tailed, and the model's error on one is
/// the burst's size, which the range judges against the count's own tail (and the surge signal a
/// burst that stays). On bursty count corpora most of the model's false alarms were bursts (stop 68,
/// docs/anomaly-experiments.md). The error is still calibrated against and kept (`lastSurprise`,
/// for the quarantine), and its surprise is the recent peak the next samples' strength is measured
/// over, so the windows that still hold the burst do not alert for it.
public final class ReconstructionSignal: AnomalySignal, @unchecked Sendable {
    public static let name = "reconstruction"
    public static let stateVersion: UInt32 = 1
    /// Errors the calibrator must have seen before the stream's scores mean anything.
    public static let minimumCalibration = 100

    public internal(set) var calibrator: Calibrator
    /// The surprise of the last scored error (−∞ before any).
    public private(set) var lastSurprise = -Float.infinity

    public init(horizon: Int, holdOff: Int) { calibrator = Calibrator(horizon: horizon, holdOff: holdOff) }

    public func read(_ o: inout Observation) -> Reading {
        guard let logError = o.logError else { return Reading(warming: warming) }
        let c = calibrator.score(logError: logError)
        lastSurprise = c.surprise
        if o.countBurst { return Reading(warming: warming) }
        return Reading(surprise: c.surprise, strength: c.score, warming: warming)
    }

    /// Only errors of a model that has trained a little (an untrained model's errors would set the
    /// scale), and never of anomalous samples.
    public func learn(_ o: Observation, anomalous: Bool) {
        if !anomalous && o.modelReady, let logError = o.logError { calibrator.update(logError: logError) }
    }

    public var warming: Bool { calibrator.count < UInt64(Self.minimumCalibration) }

    public func encode(_ w: inout StateWriter) { calibrator.encode(&w) }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        calibrator = try Calibrator.decode(&r).reconfigured(horizon: calibrator.horizon, holdOff: calibrator.holdOff)
    }
}
