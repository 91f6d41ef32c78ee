import Learning

/// A unit of a stream's detection with a checkpoint section of its own: written as its name, the
/// version of its layout and its bytes, so each unit's layout can change on its own, a unit added
/// to the configuration starts fresh, and one removed is dropped.
public protocol CheckpointSection {
    static var name: String { get }
    static var stateVersion: UInt32 { get }
    func encode(_ w: inout StateWriter)
    mutating func decode(_ r: inout StateReader, version: UInt32) throws
}

extension StateWriter {
    mutating func write<S: CheckpointSection>(unit s: S) {
        write(S.name)
        write(S.stateVersion)
        var inner = StateWriter()
        s.encode(&inner)
        write(blob: inner.bytes)
    }
}

/// A checkpoint's sections by name: (version, bytes).
struct Sections {
    var byName: [String: (version: UInt32, bytes: [UInt8])] = [:]

    init(_ r: inout StateReader) throws {
        let n = Int(try r.read(UInt32.self))
        guard n <= 64 else { throw StateError.invalid("section count") }
        for _ in 0..<n {
            let name = try r.read(String.self)
            let version = try r.read(UInt32.self)
            byName[name] = (version, try r.readBlob())
        }
    }

    /// Restores `unit` from its section, if there is one.
    func restore<S: CheckpointSection>(unit: inout S) throws {
        guard let (version, bytes) = byName[S.name] else { return }
        var r = StateReader(bytes)
        try unit.decode(&r, version: version)
    }
}

/// The alert policy: no alert while the stream warms up, and one alert per incident. A sample's
/// alert strength stands only when it is higher than every strength of the last `repeatWindow`
/// samples; otherwise it is capped at 0.5 (just under the threshold if that is 0.5 or lower), so an
/// incident alerts once as it arrives, not again on each later sample whose window it still fills.
///
/// The strength measures a surprise against its signal's recent peak, so an incident that builds
/// up over many samples is measured against its own rise and may never reach the threshold, however
/// strong the evidence gets. With `evidence` > 0 a sample whose largest surprise reaches `evidence`
/// (standard units) alerts as well when no sample of the last `quiet` samples reached it and none
/// alerted: the first such sample of an incident, once.
public struct AlertPolicy: CheckpointSection, Sendable {
    public static let name = "alert-policy"
    /// 2 added the samples since the last strong evidence and since the last alert.
    public static let stateVersion: UInt32 = 2

    public let threshold: Float
    let repeatCap: Float
    /// The last `repeatWindow` strengths before the cap, and their maximum.
    public internal(set) var recent: RecentMaximum
    /// The surprise that alerts on its own (0: off), and the quiet it needs before it.
    public let evidence: Float
    public let quiet: Int
    /// Samples since one's surprise reached `evidence`, and since the last alert (capped).
    public internal(set) var sinceEvidence = Int(UInt32.max)
    public internal(set) var sinceAlert = Int(UInt32.max)

    public init(threshold: Float, repeatWindow: Int, evidence: Float = 0, quiet: Int = 0) {
        self.threshold = threshold
        repeatCap = max(0, min(0.5, threshold.nextDown))
        recent = RecentMaximum(span: repeatWindow)
        self.evidence = evidence.isFinite ? max(0, evidence) : 0
        self.quiet = max(0, quiet)
    }

    /// What becomes of a sample of alert strength `strength` and largest surprise `surprise`: the
    /// strength after the cap, whether it alerts, and whether it is anomalous (its strength before
    /// the cap reaches the threshold, or its evidence alerts: a repeat is still an anomaly, and
    /// teaches no statistics), and whether it alerts on its evidence alone.
    public mutating func decide(
        strength: Float, surprise: Float = 0, warming: Bool
    ) -> (alertScore: Float, alert: Bool, anomalous: Bool, onEvidence: Bool) {
        let stands = recent.maximum.map { strength > $0 } ?? true
        recent.push(strength.isNaN ? 0 : strength)
        let capped = stands ? strength : min(strength, repeatCap)
        var decision = (
            alertScore: capped, alert: !warming && capped >= threshold, anomalous: !warming && strength >= threshold, onEvidence: false
        )
        guard evidence > 0 && !warming else { return decision }
        sinceEvidence = min(sinceEvidence + 1, Int(UInt32.max))
        sinceAlert = min(sinceAlert + 1, Int(UInt32.max))
        if surprise >= evidence {
            if !decision.alert && sinceEvidence > quiet && sinceAlert > quiet {
                decision = (max(capped, threshold), true, true, true)
            }
            sinceEvidence = 0
        }
        if decision.alert { sinceAlert = 0 }
        return decision
    }

    /// An alert the policy did not decide (an event's): evidence alone waits its quiet after it too.
    public mutating func alerted() { sinceAlert = 0 }

    public func encode(_ w: inout StateWriter) {
        recent.encode(&w)
        w.write(UInt32(sinceEvidence))
        w.write(UInt32(sinceAlert))
    }

    /// Version 1 (before `evidence`) restores the strengths; the counts start as after a long quiet.
    public mutating func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 || version == 2 else { throw StateError.unsupportedVersion(version) }
        recent = try RecentMaximum.decode(&r, span: recent.span)
        if version == 2 {
            sinceEvidence = Int(try r.read(UInt32.self))
            sinceAlert = Int(try r.read(UInt32.self))
        }
    }
}

/// A stream's detection: its signals in order, a combiner and the alert policy (swift-nio's
/// `ChannelPipeline` is the model: each unit owns its state, the chain owns the order).
///
/// For each sample every signal reads it in turn (a signal may leave something in the observation
/// for the ones after it). The combiner makes one **score** of the readings of a scored sample:
/// 1 if a signal is certain, else Φ(the largest surprise), the probability that a normal sample is
/// less surprising; it ranks, and an incident that lasts keeps it high. The **alert strength** is
/// the largest of the signals' strengths (their surprise over their recent peak), 1 if a signal is
/// certain; the policy compares it with the threshold. Then each signal learns from the sample,
/// unless it was anomalous.
public struct DetectionChain: Sendable {
    /// The signals a chain can have, in the order they run (the range first: it measures the range
    /// the period check scales by).
    public static let knownSignals = [
        RangeSignal.name, GlitchGuard.name, ReconstructionSignal.name, PeriodSignal.name, DiscordSignal.name, NoiseSignal.name, StuckSignal.name,
        LevelSignal.name, CorrelationSignal.name, SurgeSignal.name,
        TemplateSignal.name, ParameterSignal.name, BurstSignal.name, SilenceSignal.name,
    ]

    public let signals: [any AnomalySignal]
    /// The signals whose `learn` does something.
    let learners: [any AnomalySignal]
    /// Per signal, whether its surprise can corroborate a range excursion (`AnomalySignal.corroborates`).
    let corroborating: [Bool]
    public internal(set) var policy: AlertPolicy
    /// The surprise another signal must show for the range signal's excursion to be certain (0: it
    /// is certain alone; the stream sets it for streams of more than one feature).
    public let rangeCorroboration: Float
    /// A univariate stream's score while it warms up (nil: 0 then).
    public let early: EarlyScore?

    public struct Verdict {
        /// Φ of the largest surprise (1 if a signal is certain); while warming up, Φ of the early
        /// score's surprise if the chain has one and it has something to say, else 0.
        public var score: Float
        /// The alert strength after the policy's cap, and the policy's decision.
        public var alertScore: Float
        public var alert: Bool
        public var anomalous: Bool
        public var warmingUp: Bool
        /// The largest surprise of the readings.
        public var surprise: Float
        /// The signal that is certain, if any (its `explanation` says why); else the one whose
        /// strength decided (the first of the strongest).
        public var certain: Bool
        public var source: Int
        /// The alert is on evidence alone (`source` is then the signal of the largest surprise).
        public var onEvidence = false
    }

    public init(signals: [any AnomalySignal], policy: AlertPolicy, rangeCorroboration: Float = 0, early: EarlyScore? = nil) {
        self.signals = signals
        self.early = early
        learners = signals.filter(\.learns)
        corroborating = signals.map(\.corroborates)
        self.policy = policy
        self.rangeCorroboration = rangeCorroboration
    }

    /// The signal of this type, if the chain has one.
    public func signal<S: AnomalySignal>(_ type: S.Type) -> S? {
        for s in signals { if let s = s as? S { return s } }
        return nil
    }

    /// The name of signal `k`.
    public func name(of k: Int) -> String { k >= 0 && k < signals.count ? type(of: signals[k]).name : "" }

    /// True while a signal holds the stream in its warm-up.
    public var warming: Bool { signals.contains { $0.warming } }

    public func prepare(_ values: UnsafePointer<Float>, count: Int, dimension: Int) {
        for s in signals { s.prepare(values, count: count, dimension: dimension) }
    }

    /// One sample through the signals, the combiner and the policy; nil for a sample that is not
    /// scored (it was still read by every signal). `warming`: the stream's own warm-up (samples
    /// accepted, model steps).
    public mutating func judge(_ o: inout Observation, warming: Bool) -> Verdict? {
        var surprise = -Float.infinity, strength: Float = 0, source = -1, certain = -1, event = -1, surprising = -1
        var corroboration = -Float.infinity
        var signalWarming = false
        // Every value, scored or not, until the stream is warm.
        let earlySurprise = early?.read(o.values[0])
        for k in signals.indices {
            // The chain holds its signals for its whole life: no retain per call.
            unowned(unsafe) let s = signals[k]
            let r = s.read(&o)
            // The range's certainty gives way to another signal's (the glitch guard's, on a sample
            // where another feature is also a little beyond its range): the range's may not stand
            // (`rangeCorroboration`), and the other says more.
            if r.certain && (certain < 0 || signals[certain] is RangeSignal) { certain = k }
            if r.event && event < 0 { event = k }
            if r.warming { signalWarming = true }
            if corroborating[k] && r.surprise > corroboration { corroboration = r.surprise }
            if source < 0 {
                (surprise, strength, source, surprising) = (r.surprise, r.strength, k, k)
                continue
            }
            if r.surprise > surprise { (surprise, surprising) = (r.surprise, k) }
            if r.strength > strength { (strength, source) = (r.strength, k) }
        }
        guard o.scored else { return nil }
        // An uncorroborated excursion is one more reading, not a certainty (the range signal has no
        // surprise of its own: the corroboration is the others', those whose evidence is more than
        // a value's distance from the usual).
        if certain >= 0 && rangeCorroboration > 0 && corroboration < rangeCorroboration && signals[certain] is RangeSignal {
            certain = -1
        }
        let warmingUp = warming || signalWarming
        var score = warmingUp ? earlySurprise.map(Calibrator.phi) ?? 0 : certain >= 0 ? 1 : Calibrator.phi(surprise)
        if !warmingUp { early?.retire() }
        var decision = policy.decide(
            strength: warmingUp ? 0 : certain >= 0 || event >= 0 ? 1 : strength, surprise: certain >= 0 ? 0 : surprise,
            warming: warmingUp)
        // An alert on evidence alone names the signal whose surprise it was.
        if decision.onEvidence { source = surprising }
        if event >= 0 && !warmingUp && (certain < 0 || certain == event) {
            // An event alerts whatever the repeat cap (it reports itself once), and its score is at
            // least the threshold, as every alerting sample's is (SPEC 5). A certainty that is its
            // own event (the glitch guard's) does too; under another signal's certainty the event
            // gives way to it.
            decision = (1, true, true, false)
            source = event
            score = max(score, policy.threshold)
            policy.alerted()
        }
        for k in learners.indices {
            unowned(unsafe) let s = learners[k]
            s.learn(o, anomalous: decision.anomalous)
        }
        return Verdict(
            score: score.isNaN ? 0 : score, alertScore: decision.alertScore, alert: decision.alert,
            anomalous: decision.anomalous, warmingUp: warmingUp, surprise: surprise, certain: certain >= 0,
            source: certain >= 0 ? certain : source, onEvidence: decision.onEvidence)
    }

    /// What the certain signal of a verdict says its reading comes from.
    public func explanation(_ v: Verdict) -> [(index: Int, share: Float)] { v.certain ? signals[v.source].explanation : [] }

    /// Sections `encodeSections` writes.
    public var sectionCount: Int { signals.count + 1 + (early == nil ? 0 : 1) }

    /// Every signal's section, the policy's and the early score's (the caller writes the count of all
    /// its sections first).
    public func encodeSections(_ w: inout StateWriter) {
        for s in signals { w.write(section: s) }
        w.write(unit: policy)
        if let early { w.write(unit: early) }
    }

    mutating func restore(_ sections: Sections) throws {
        for s in signals { try sections.restore(signal: s) }
        try sections.restore(unit: &policy)
        if var early { try sections.restore(unit: &early) }
    }
}

extension StateWriter {
    /// An existential signal's section (the generic `write(section:)` needs the concrete type).
    mutating func write(section s: any AnomalySignal) {
        func open<S: AnomalySignal>(_ s: S) { write(unit: s) }
        open(s)
    }
}

extension Sections {
    /// Restores a signal (a class: restored in place) from its section, if there is one.
    func restore(signal: any AnomalySignal) throws {
        func open<S: AnomalySignal>(_ s: S) throws {
            var s = s
            try restore(unit: &s)
        }
        try open(signal)
    }
}
