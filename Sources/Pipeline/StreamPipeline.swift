import Learning

/// The score of one accepted sample.
public struct SampleScore: Sendable, Equatable {
    public var sequence: UInt64
    /// Mean squared reconstruction error, normalised units; 0 while a window fills.
    public var error: Float
    /// The evidence, in [0, 1]: Φ of the sample's surprise under its stream's usual errors (1 beyond
    /// the range). It ranks: an incident that lasts keeps a high score.
    public var score: Float
    /// What the alert policy compared with the threshold: the evidence over the recent peak, no higher
    /// than 0.5 for a repeat within `repeatWindow` (so an incident alerts once, as it arrives).
    public var alertScore: Float
    public var alert: Bool
    public var warmingUp: Bool
    /// The sample lies beyond the range its stream has shown (see `StreamConfiguration.rangeMargin`):
    /// it scores 1, and an alert's `topFeatures` share out how far each feature lies outside.
    public var beyondRange: Bool
    /// The alert comes from a period check: the period (in values) it compared the sample's
    /// values with; 0 when it does not. On a stream of several features the alert's `topFeatures`
    /// name the channel (`channel_period`).
    public var period = 0
    public var fromPeriod: Bool { period > 0 }
    /// The alert comes from the discord signal: the channel whose last values are unlike every
    /// earlier window (nil: it does not).
    public var discordChannel: Int? = nil
    /// And the window (in values) it compared, and whether that window kept its level
    /// (`discord_level_window`) or had its mean removed.
    public var discordWindow = 0
    public var discordLevel = false
    /// And how many values back its nearest earlier window was looked for.
    public var discordHistory = 0
    /// The alert comes from the correlation signal: the feature that moved apart from the others
    /// (nil: it does not). The alert's `topFeatures` name it alone.
    public var correlationChannel: Int? = nil
    /// The alert comes from the noise signal: the channel whose noise rose, and its noise level over
    /// its usual one (nil: it does not). The alert's `topFeatures` name the channel alone.
    public var noiseChannel: Int? = nil
    public var noiseFactor: Float = 0
    /// The alert comes from the stuck signal: the channel that repeats its value, and how many times
    /// in a row it had sent it (nil: it does not). The alert's `topFeatures` name the channel alone.
    public var stuckChannel: Int? = nil
    public var stuckValues = 0
    /// The alert comes from the level signal: the feature whose level over its period moved, the
    /// period, and its level over the period's before (nil: it does not). The alert's
    /// `topFeatures` name the feature alone.
    public var levelChannel: Int? = nil
    public var levelPeriod = 0
    public var levelRatio: Float = 1
    /// When the level signal's swing spoke (the spread over its period), the swing over the period
    /// before's (`levelRatio` is then the level's, at the same sample).
    public var levelSwing: Float? = nil
    /// The alert comes from the glitch guard: the feature, its value as it came (under the stream's
    /// transform) and how many widths of its range it lay beyond it (nil: it does not).
    public var glitch: (feature: Int, value: Float, ranges: Float)? = nil
    /// The alert comes from the surge signal: the feature that stayed above its bursts' usual level,
    /// for how many values in a row, and its longest such run before (nil: it does not).
    public var surge: (channel: Int, run: Int, record: Int)? = nil
    public var timestamp: Int64
    /// For alerts: (feature or time step, share of the squared error), largest first.
    public var topFeatures: [(index: Int, share: Float)]

    public static func == (a: SampleScore, b: SampleScore) -> Bool {
        a.sequence == b.sequence && a.error == b.error && a.score == b.score && a.alertScore == b.alertScore && a.alert == b.alert
            && a.warmingUp == b.warmingUp && a.beyondRange == b.beyondRange && a.period == b.period && a.discordChannel == b.discordChannel && a.discordWindow == b.discordWindow && a.discordLevel == b.discordLevel && a.discordHistory == b.discordHistory
            && a.correlationChannel == b.correlationChannel && a.noiseChannel == b.noiseChannel
            && a.stuckChannel == b.stuckChannel && a.levelChannel == b.levelChannel && a.glitch?.feature == b.glitch?.feature
            && a.surge?.channel == b.surge?.channel && a.timestamp == b.timestamp
            && a.topFeatures.map(\.index) == b.topFeatures.map(\.index)
    }
}

/// The scores of one batch, column by column, and the model that gave them: sample `i` has
/// sequence `firstSequence + i`.
public struct ScoredBatch: Sendable {
    public var stream: String
    public var modelVersion: UInt64
    public var threshold: Float
    public var firstSequence: UInt64
    public var errors: [Float]
    /// The evidence (`SampleScore.score`) and what the alert policy compared with the threshold.
    public var scores: [Float]
    public var alertScores: [Float]
    public var alerts: [Bool]
    public var warmingUp: [Bool]
    /// Samples (by index in the batch) beyond their stream's range so far, scored 1 for that.
    public var beyondRange: Set<Int> = []
    /// Alerts (by index in the batch) that come from a period check, and the period it compared.
    public var fromPeriod: [Int: Int] = [:]
    /// The stream's period (a windowed stream's check; 0: none).
    public var period = 0
    /// Alerts (by index in the batch) that come from the discord signal: the channel, the window and
    /// whether it kept its level.
    public var fromDiscord: [Int: (channel: Int, window: Int, level: Bool, history: Int)] = [:]
    /// Alerts (by index in the batch) that come from the correlation signal: the feature that moved
    /// apart from the others.
    public var fromCorrelation: [Int: Int] = [:]
    /// Alerts (by index in the batch) that come from the noise signal: the channel and its noise over
    /// its usual noise.
    public var fromNoise: [Int: (channel: Int, factor: Float)] = [:]
    /// Alerts (by index in the batch) that come from the stuck signal: the channel and how many times
    /// in a row it had sent its value.
    public var fromStuck: [Int: (channel: Int, values: Int)] = [:]
    /// Alerts (by index in the batch) that come from the level signal: the feature, its period and
    /// its level over the reference's.
    public var fromLevel: [Int: (channel: Int, period: Int, ratio: Float, swing: Float?)] = [:]
    /// Alerts (by index in the batch) that come from the glitch guard (`SampleScore.glitch`), and the
    /// stream's features per sample (a glitch's reason names the feature when there are several).
    public var fromGlitch: [Int: (feature: Int, value: Float, ranges: Float)] = [:]
    /// Alerts (by index in the batch) that come from the surge signal: the feature, its run above its
    /// bursts' usual level and its longest run before.
    public var fromSurge: [Int: (channel: Int, run: Int, record: Int)] = [:]
    public var sampleDimension = 1
    /// The producer's timestamps, or empty.
    public var timestamps: [Int64]
    /// For each alerting sample (by index in the batch): the largest shares of its squared error.
    public var topFeatures: [Int: [(index: Int, share: Float)]]
    /// The stream's window length and scales: `topFeatures` index i is then position i % window of
    /// scale windowScales[i / window]. window 0: indices are features.
    public var window = 0
    public var windowScales: [Int] = []
    /// A log stream's lines: the template each joined (empty for a sample stream), and for each
    /// alerting line what the signal that raised it found.
    public var templateIDs: [UInt32] = []
    /// With `publish_representations`: the representations (`representationWidth` each) of the
    /// samples from index `representationFirst` on (a window's first samples have none), computed
    /// by MoCo version `representationVersion`.
    public var representations: [Float] = []
    public var representationWidth = 0
    public var representationFirst = 0
    public var representationVersion: UInt64 = 0
    /// Samples with a representation here.
    public var representedCount: Int { representationWidth > 0 ? representations.count / representationWidth : 0 }
    /// With a few-label head: each sample's class (an index into `classes`) and its probability,
    /// from the head fitted on MoCo version `classVersion`. Empty without a head.
    public var classIndex: [UInt32] = []
    public var classProbability: [Float] = []
    public var classes: [String] = []
    public var classVersion: UInt64 = 0
    public var logAlerts: [Int: LogAlert] = [:]

    public var count: Int { errors.count }

    /// Sample `i` as one value.
    public func sample(_ i: Int) -> SampleScore {
        SampleScore(
            sequence: firstSequence &+ UInt64(i), error: errors[i], score: scores[i], alertScore: alertScores[i], alert: alerts[i],
            warmingUp: warmingUp[i], beyondRange: beyondRange.contains(i), period: fromPeriod[i] ?? 0,
            discordChannel: fromDiscord[i]?.channel, discordWindow: fromDiscord[i]?.window ?? 0,
            discordLevel: fromDiscord[i]?.level ?? false, discordHistory: fromDiscord[i]?.history ?? 0,
            correlationChannel: fromCorrelation[i], noiseChannel: fromNoise[i]?.channel, noiseFactor: fromNoise[i]?.factor ?? 0,
            stuckChannel: fromStuck[i]?.channel, stuckValues: fromStuck[i]?.values ?? 0,
            levelChannel: fromLevel[i]?.channel, levelPeriod: fromLevel[i]?.period ?? 0, levelRatio: fromLevel[i]?.ratio ?? 1,
            levelSwing: fromLevel[i]?.swing,
            glitch: fromGlitch[i], surge: fromSurge[i],
            timestamp: timestamps.isEmpty ? 0 : timestamps[i],
            topFeatures: topFeatures[i] ?? [])
    }

    public var samples: [SampleScore] { (0..<count).map(sample) }
}

/// Why a log stream's line alerted, in the words an operator reads (`Alert.reason`).
public struct LogAlert: Sendable, Equatable {
    /// The signal that raised it, its finding in words, the template it is about (the silent one,
    /// for a silence) and its id, and the line that alerted.
    public var signal: String
    public var reason: String
    public var template: String
    public var templateID: UInt32
    public var line: String
}

/// A model's parameters as a subscriber sees them (the protocol's ModelSnapshot, without framing).
public struct Snapshot: Sendable {
    public enum Kind: String, Sendable { case autoencoder, moco }
    public var stream: String
    public var kind: Kind
    public var version: UInt64
    public var samplesSeen: UInt64
    public var steps: UInt64
    public var inputDimension: Int
    public var window: Int
    public var windowScales: [Int]
    /// What each sample's values became before its row was built.
    public var inputTransform = InputTransform.none
    public var layers: [(weights: [Float], bias: [Float], outputs: Int, inputs: Int, activation: Activation)]
    public var normaliserMean: [Float]
    public var normaliserVariance: [Float]
    public var representationLayer: Int
    public var temperature: Float
    public var createdNanoseconds: Int64
    /// MoCo, once the stream has labels: the head fitted on this snapshot's representation, and how
    /// many labelled samples it was fitted on.
    public var head: SoftmaxHead? = nil
    public var headLabels = 0
}

/// What a model's version base is (added to its steps to make its versions), as a checkpoint
/// section written only when not 0.
protocol VersionBaseSection: CheckpointSection {
    var base: UInt64 { get set }
}

extension VersionBaseSection {
    static var stateVersion: UInt32 { 1 }

    func encode(_ w: inout StateWriter) { w.write(base) }

    mutating func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        base = try r.readCount()
    }
}

/// `StreamPipeline.mocoVersionBase`.
struct MoCoVersionBase: VersionBaseSection {
    static let name = "moco-version-base"
    var base: UInt64
}

/// `StreamPipeline.autoencoderVersionBase`.
struct AutoencoderVersionBase: VersionBaseSection {
    static let name = "autoencoder-version-base"
    var base: UInt64
}

/// Where a stream's learning stands between batches, as a checkpoint section: the run of surprising
/// rows kept out of learning (so a restart does not quarantine an incident's next `alert_hold_off`
/// rows again), the idle steps it may still take, and the counts of both.
struct LearningProgress: CheckpointSection {
    static let name = "learning-progress"
    /// 2 added the steps rollbacks undid.
    static let stateVersion: UInt32 = 2
    var quarantineRun: Int
    var quarantined: UInt64
    var idleLeft: Double
    var idleSteps: UInt64
    var stepsUndone: UInt64 = 0

    var isEmpty: Bool { quarantineRun == 0 && quarantined == 0 && idleLeft == 0 && idleSteps == 0 && stepsUndone == 0 }

    func encode(_ w: inout StateWriter) {
        w.write(UInt64(quarantineRun)); w.write(quarantined)
        w.write(idleLeft.bitPattern); w.write(idleSteps)
        w.write(stepsUndone)
    }

    mutating func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 || version == 2 else { throw StateError.unsupportedVersion(version) }
        quarantineRun = try r.readInt()
        quarantined = try r.readCount()
        idleLeft = try r.read(Double.self)
        guard idleLeft.isFinite, idleLeft >= 0 else { throw StateError.invalid("idle steps left \(idleLeft)") }
        idleSteps = try r.readCount()
        stepsUndone = version >= 2 ? try r.readCount() : 0
    }
}

/// The scorer's normaliser's running moments in double, as a checkpoint section (the fixed fields
/// hold their float copies): a restart resumes them exactly. Absent (a checkpoint from before it),
/// they start from the floats.
struct RunningMoments: CheckpointSection {
    static let name = "normaliser-moments"
    static let stateVersion: UInt32 = 1
    let normaliser: Normaliser

    func encode(_ w: inout StateWriter) { normaliser.encodeRunning(&w) }

    mutating func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        try normaliser.restoreRunning(&r)
    }
}

/// A stream's labelled samples, as a checkpoint section (a daemon without labels drops it).
struct LabelSet: CheckpointSection {
    static let name = "labels"
    static let stateVersion: UInt32 = 1
    let dimension: Int
    var values: [Float]
    var labels: [String]

    func encode(_ w: inout StateWriter) {
        w.write(UInt32(dimension))
        w.write(UInt32(labels.count))
        for label in labels { w.write(label) }
        for v in values { w.write(v) }
    }

    mutating func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1, Int(try r.read(UInt32.self)) == dimension else { throw StateError.invalid("labels' shape") }
        let n = Int(try r.read(UInt32.self))
        guard n <= 65_536 else { throw StateError.invalid("label count") }
        try r.requireRoom(n, each: 4)  // each label's length at least
        labels = try (0..<n).map { _ in try r.read(String.self) }
        try r.requireRoom(n * dimension, each: 4)
        values = try (0..<(n * dimension)).map { _ in try r.readFinite(Float.self, "labelled sample value") }
    }
}

/// A few-label head and the frozen encoder (with its normaliser) it was fitted on: classes always
/// come from the encoder the head was fitted with.
final class FittedHead: @unchecked Sendable {
    let head: SoftmaxHead
    let encoder: MoCo
    let version: UInt64
    init(head: SoftmaxHead, encoder: MoCo, version: UInt64) {
        self.head = head
        self.encoder = encoder
        self.version = version
    }
}

/// One stream's learning pipeline: normaliser, replay buffer, autoencoder and MoCo, calibration.
///
/// The daemon splits it over threads: `score(_:)` runs on the ingest thread, `trainStep()` on the
/// trainer; what both touch (buffer, live normaliser, calibrator, pending steps, the scorer's weights)
/// is under `lock`, held only for copies. `eddy replay` calls the same methods in turn on one thread,
/// so what it measures is what the daemon runs.
public final class StreamPipeline: @unchecked Sendable {
    public let name: String
    public let settings: StreamConfiguration
    /// Width of arriving samples (1 for a windowed stream) and of the models' input.
    public let sampleDimension: Int
    public let inputDimension: Int

    let lock = Lock()
    /// Held for a log stream's whole batch (mining, then judging) and by `serialized()`, so a
    /// checkpoint never falls between a miner and the signals that have not yet read its lines.
    let batchLock = Lock()

    // Shared under `lock`.
    var buffer: ReplayBuffer
    var pendingSteps = 0.0
    /// An owed step has been taken from `pendingSteps` and is not handed over yet: it is still
    /// reported as pending, so pending 0 means the models handed over have seen every step owed.
    var owedStepRunning = false
    /// Steps a rollback took back (the models went back to an earlier step): the stream's training
    /// steps are its model's step plus these, so they never go down.
    var stepsUndone: UInt64 = 0
    /// Idle steps the stream may still take (granted anew with each batch: `idle_passes` over the
    /// buffer), the trainer's clock at the last one, and how many were taken since start.
    var idleLeft = 0.0
    var lastIdleStep = -Double.infinity
    public private(set) var idleSteps: UInt64 = 0
    /// Samples accepted, and steps owed but skipped because the trainer could not keep up.
    public private(set) var accepted: UInt64 = 0
    /// Alerts raised (not checkpointed: a count since the daemon started).
    var alertsRaised: UInt64 = 0
    public private(set) var skippedSteps: UInt64 = 0
    /// The part of a step skipped but not yet counted in `skippedSteps` (not checkpointed: less than one).
    var skippedFraction = 0.0
    var rejectedCount: UInt64 = 0
    /// Samples scored but kept out of learning because they looked anomalous.
    public private(set) var quarantined: UInt64 = 0
    var quarantineRun = 0
    var quarantinedRows: [Int] = []
    /// A log stream's alerting lines in the batch being scored: (line, signal, finding).
    var findings: [(line: Int, signal: String, finding: LogFinding)] = []
    /// The stream's detection: its signals, the combiner and the alert policy.
    public internal(set) var chain: DetectionChain
    /// A windowed stream's input shaping (nil: samples are the models' input as they come).
    var shaper: WindowShaper?
    /// A log stream's template miner and mix of templates (nil: a sample stream).
    public let logs: LogFront?
    /// The chain's period check and reconstruction signal, if it has them (its signals never change).
    let periodSignal: PeriodSignal?
    let reconstructionSignal: ReconstructionSignal?
    /// The chain's glitch guard, which `score` runs before the batch is shaped (nil: off).
    let glitchGuard: GlitchGuard?
    /// The trainer's latest autoencoder weights for the scorer, and their version (steps taken).
    let exchange: FloatBuffer
    /// The normaliser the handed-over weights (the autoencoder's and MoCo's, taken at one step)
    /// were trained with: the statistics as they were when that step began.
    let exchangeNormaliser: Normaliser
    var exchangeVersion: UInt64 = 0
    /// Hand-overs of `exchange` (and of `mocoExchange`), every one, rollbacks too: what the ingest
    /// side compares with what it took. A version alone can come back (a rollback, then as many
    /// steps again) with other weights.
    var exchangeHandovers: UInt64 = 0, mocoExchangeHandovers: UInt64 = 0
    var scorerHandovers: UInt64 = 0, representerHandovers: UInt64 = 0
    /// MoCo's step count, for heartbeats (the trainer updates the model itself outside the lock).
    var mocoVersion: UInt64 = 0
    var lastLosses: (autoencoder: Float, moco: Float) = (.nan, .nan)

    /// With `publish_representations`: the trainer's latest MoCo query weights, their version, and
    /// the ingest side's own MoCo whose encoder computes each sample's representation.
    let mocoExchange: FloatBuffer?
    var mocoExchangeVersion: UInt64 = 0
    let representer: MoCo?
    var representerVersion: UInt64 = 0

    /// Labelled samples for the few-label head (`max_labels` at most, oldest dropped first), and a
    /// count that moves with every batch of them (under `lock`).
    var labelledValues: [Float] = []
    var labels: [String] = []
    var labelsVersion: UInt64 = 0
    /// The labels version the last head was fitted on (trainer side).
    var headLabelsVersion: UInt64 = 0
    /// When new labels may next have a head fitted at once (monotonic seconds, trainer thread): as
    /// long after the last fit as it took, so fits take at most half the trainer's time however
    /// often labels come (the periodic snapshots fit them meanwhile).
    var headFitReady = -Double.infinity
    /// The newest head for the ingest thread (under `lock`), and the one it scores with.
    var headExchange: FittedHead?
    var ingestHead: FittedHead?

    // Ingest side: the live statistics, the scorer and the rows it scores.
    /// The stream's running statistics, which every accepted sample updates (under `lock`). The
    /// models are not applied with them: each training step takes a copy (the trainer's models'
    /// normaliser), and a step's weights are handed over with that copy, so that a model version
    /// is its weights and its normaliser together, as its snapshot carries them (SPEC 6).
    let live: Normaliser
    /// The scorer applies the normaliser handed over with its weights (`exchangeNormaliser`).
    let scorer: Autoencoder
    var scorerVersion: UInt64 = 0
    var rows: FloatBuffer
    var errors: FloatBuffer
    /// A batch's values under the stream's `transform` (empty without one).
    var transformed: [Float] = []
    var featureErrors: FloatBuffer

    // Trainer side.
    public internal(set) var autoencoder: Autoencoder
    public internal(set) var moco: MoCo
    /// Set by `restore` when the saved MoCo no longer fits the settings (another shape, or any
    /// setting it trains by but the seed): why a fresh one took its place. The rest of the
    /// stream (the autoencoder and detection, which do not read MoCo) was restored.
    public internal(set) var mocoStartedAfresh: String?
    /// Set by `restore` when the autoencoder was saved under other training settings (its learning
    /// rate, gradient clip or normaliser horizon): it resumes under the settings' values; this says
    /// which changed.
    public internal(set) var autoencoderRetuned: String?
    /// Set when the labels a restored stream held were dropped (more classes than a head takes).
    public internal(set) var labelsDropped: String?
    /// Added to MoCo's steps to make its versions: a MoCo restarted by `restore` continues from the
    /// versions its predecessor published, so a version never decreases (SPEC 5).
    public internal(set) var mocoVersionBase: UInt64 = 0
    /// Added to the autoencoder's steps to make its versions: 0 unless a daemon that stopped without
    /// a checkpoint had published later versions than the state restored (`versionsFollow`). Set
    /// before the stream is shared, never after.
    public internal(set) var autoencoderVersionBase: UInt64 = 0
    /// The autoencoder's version now (trainer thread).
    var autoencoderVersion: UInt64 { autoencoderVersionBase + UInt64(autoencoder.step) }
    /// The steps of the autoencoder last handed over (under `lock`): its version less the base.
    var handedOverSteps: UInt64 { exchangeVersion - autoencoderVersionBase }
    /// The models as they last were with every weight finite (serialized when a snapshot was taken,
    /// or when the stream was restored), the state a stream rolls back to; nil before the first
    /// snapshot of a new stream (it then starts afresh).
    var lastGood: (autoencoder: [UInt8], moco: [UInt8])?
    /// Times the trainer found a non-finite weight and rolled the models back (under `lock`).
    public private(set) var rollbacks: UInt64 = 0
    let batch: FloatBuffer
    let batchIDs: UnsafeMutablePointer<Int64>
    /// The versions of the last snapshots published, autoencoder and MoCo.
    public internal(set) var snapshotVersions: (autoencoder: UInt64, moco: UInt64) = (0, 0)
    /// Restored from a checkpoint and not yet published since.
    var snapshotsOwed = false
    /// The rollbacks the trainer has reported (trainer thread only).
    var rollbacksReported: UInt64 = 0
    /// Steps since the daemon last published the stream's snapshots (trainer thread only): kept
    /// with the stream, so it goes when the stream expires.
    var stepsSinceSnapshot = 0

    /// Its models are published again at the next snapshot, at the versions they have (a stream
    /// that comes back from expiry: its served snapshots were dropped).
    func oweSnapshots() { lock.withLock { snapshotsOwed = true } }

    /// Makes the models' versions follow `published`, the highest a daemon published for this stream
    /// (it may have been killed after its last checkpoint): a version is never published twice with
    /// other weights. Versions published beyond the last the restored state knew of (its
    /// `snapshotVersions`), up to or past the model's own, were other weights: a model that has
    /// trained goes on from the version after them (its restored state is published again at that
    /// version), one that has not from that version itself, so its first step is the next. Call
    /// before the stream is shared (at start, or when a stream is made or read back from its file).
    func versionsFollow(_ published: (autoencoder: UInt64, moco: UInt64)) {
        let ae = UInt64(autoencoder.step), mo = UInt64(moco.step)
        let raiseAutoencoder = published.autoencoder > snapshotVersions.autoencoder && published.autoencoder >= autoencoderVersion
        let raiseMoCo = published.moco > snapshotVersions.moco && published.moco >= mocoVersionBase + mo
        guard raiseAutoencoder || raiseMoCo else { return }
        if raiseAutoencoder { autoencoderVersionBase = published.autoencoder + (ae > 0 ? 1 : 0) - ae }
        if raiseMoCo { mocoVersionBase = published.moco + (mo > 0 ? 1 : 0) - mo }
        lock.withLock {
            snapshotVersions = (max(snapshotVersions.autoencoder, published.autoencoder), max(snapshotVersions.moco, published.moco))
            exchangeVersion = autoencoderVersion
            scorerVersion = exchangeVersion
            mocoVersion = mocoVersionBase + mo
            if mocoExchange != nil {
                mocoExchangeVersion = mocoVersion
                representerVersion = mocoVersion
            }
        }
    }

    public init(name: String, settings: StreamConfiguration) {
        precondition(settings.inputDimension > 0, "a stream's dim must be known before it is built")
        self.name = name
        self.settings = settings
        sampleDimension = max(settings.dim, 1)
        inputDimension = settings.inputDimension
        buffer = ReplayBuffer(
            dimension: inputDimension, capacity: settings.bufferCapacity, recentFraction: settings.recentFraction,
            seed: settings.seed)
        autoencoder = Autoencoder(configuration: settings.autoencoderConfiguration())
        moco = MoCo(configuration: settings.mocoConfiguration())
        scorer = Autoencoder(configuration: settings.autoencoderConfiguration())
        live = Normaliser(dimension: inputDimension, horizon: settings.normaliserHorizon)
        exchangeNormaliser = Normaliser(dimension: inputDimension, horizon: settings.normaliserHorizon)
        exchange = FloatBuffer(autoencoder.parameterValues)
        scorer.parameters.copy(from: exchange)
        if settings.publishRepresentations {
            let weights = FloatBuffer(count: moco.parameterCount)
            moco.copyQuery(into: weights)
            mocoExchange = weights
            representer = Self.frozenEncoder(settings, weights: weights)
        } else {
            mocoExchange = nil
            representer = nil
        }
        chain = Self.chain(settings, sampleDimension: sampleDimension)
        logs = settings.log ? LogFront(templates: settings.logTemplates, similarity: settings.logSimilarity, mixWindow: settings.logMixWindow) : nil
        periodSignal = chain.signal(PeriodSignal.self)
        reconstructionSignal = chain.signal(ReconstructionSignal.self)
        glitchGuard = chain.signal(GlitchGuard.self)
        if settings.window > 0 {
            shaper = WindowShaper(
                window: settings.window, scales: settings.windowScales, channels: sampleDimension, padded: settings.windowPadding)
        }
        rows = FloatBuffer(count: Self.retainedRows * inputDimension)
        errors = FloatBuffer(count: Self.retainedRows)
        featureErrors = FloatBuffer(count: inputDimension)
        batch = FloatBuffer(count: settings.batchSize * inputDimension)
        batchIDs = .allocate(capacity: settings.batchSize)
    }

    deinit { batchIDs.deallocate() }

    /// The detection chain `settings` ask for: the range always (the period check scales by it; it
    /// scores only when `range` is among the signals and the margin is not negative), the
    /// reconstruction surprise, and for a windowed stream the period check. On a stream of several
    /// features the range's excursions wait for another signal's word (`range_corroboration`), when
    /// there is another signal, and a feature's habit of leaving its range is not certain (`range_habit`).
    static func chain(_ settings: StreamConfiguration, sampleDimension: Int) -> DetectionChain {
        let on = Set(settings.signals)
        // Under the log transform the values are logs, never whole: no count has a burst band. The
        // range's tail comes with the surge signal only: alone it lets surges' first values through.
        let surge = on.contains(SurgeSignal.name) && settings.surgeRun > 0 && !settings.log && settings.transform != .log
        var signals: [any AnomalySignal] = [
            RangeSignal(
                dimension: sampleDimension, margin: on.contains(RangeSignal.name) ? settings.rangeMargin : -1,
                refresh: settings.rangeRefresh, warmup: settings.rangeWarmup, window: settings.window,
                habitLimit: sampleDimension > 1 ? settings.rangeHabit : 0, habitHorizon: settings.calibrationHorizon,
                confirm: settings.rangeConfirm,
                deviations: settings.rangeDeviations, scaleHorizon: settings.calibrationHorizon,
                // Under the log transform the values are on a log scale already.
                drop: settings.transform == .log ? 0 : settings.rangeDrop, tail: surge ? settings.rangeTail : 0,
                young: settings.rangeTailYoung, bands: surge, explains: settings.bandExplains)
        ]
        if on.contains(GlitchGuard.name) && settings.glitchRanges > 0 && !settings.log {
            signals.append(
                GlitchGuard(dimension: sampleDimension, ranges: settings.glitchRanges, warmup: settings.rangeWarmup, window: settings.window))
        }
        if on.contains(ReconstructionSignal.name) {
            signals.append(ReconstructionSignal(horizon: settings.calibrationHorizon, holdOff: settings.alertHoldOff))
        }
        if settings.log {
            // A log stream's rows are mixes of templates: no range, period or discord of them; its
            // lines are read by the log signals.
            let h = settings.logHorizon
            if on.contains(TemplateSignal.name) { signals.append(TemplateSignal(margin: settings.templateMargin)) }
            if on.contains(ParameterSignal.name) { signals.append(ParameterSignal(horizon: h, margin: settings.parameterMargin)) }
            if on.contains(BurstSignal.name) {
                signals.append(
                    BurstSignal(window: settings.burstWindow, horizon: h, margin: settings.burstMargin, ratio: settings.burstRatio))
            }
            if on.contains(SilenceSignal.name) { signals.append(SilenceSignal(factor: settings.silenceFactor, horizon: h)) }
            signals[0] = RangeSignal(
                dimension: sampleDimension, margin: -1, refresh: settings.rangeRefresh, warmup: settings.rangeWarmup, window: 0,
                habitLimit: 0, habitHorizon: settings.calibrationHorizon)
            return DetectionChain(
                signals: signals, policy: settings.alertPolicy)
        }
        if on.contains(PeriodSignal.name) && settings.window > 0 && sampleDimension == 1 && settings.period != .off {
            signals.append(
                PeriodSignal(
                    window: settings.window, context: settings.historyLength, setting: settings.period,
                    horizon: settings.calibrationHorizon, holdOff: settings.alertHoldOff))
        }
        if on.contains(PeriodSignal.name) && settings.channelPeriod && sampleDimension > 1 && sampleDimension <= settings.discordChannels
            && settings.period != .off
        {
            signals.append(
                ChannelPeriodSignal(
                    channels: sampleDimension, span: settings.univariateWindow, context: settings.window > 0 ? settings.historyLength : 0,
                    setting: settings.period, margin: settings.channelPeriodMargin, horizon: settings.calibrationHorizon,
                    holdOff: settings.alertHoldOff))
        }
        if on.contains(DiscordSignal.name) && sampleDimension <= settings.discordChannels {
            signals.append(
                MultiscaleDiscord(
                    windows: settings.discordWindows, levelWindows: settings.discordLevelWindows,
                    period: settings.discordPeriodWindows(channels: sampleDimension),
                    history: settings.discordHistory, channels: sampleDimension,
                    margin: settings.discordMargin, clip: settings.discordClip, horizon: settings.calibrationHorizon,
                    holdOff: settings.alertHoldOff,
                    quietSurprise: settings.discordQuietSurprise(channels: sampleDimension),
                    shiftVeto: settings.shiftVeto(), peakLag: settings.discordPeakLag,
                    threshold: settings.threshold, countPeriodOnly: settings.discordCountPeriodOnly))
        }
        if on.contains(NoiseSignal.name) && settings.noiseWindow > 0 && sampleDimension <= settings.discordChannels {
            signals.append(
                NoiseSignal(channels: sampleDimension, window: settings.noiseWindow, horizon: settings.calibrationHorizon))
        }
        if on.contains(StuckSignal.name) && settings.stuckRun > 0 {
            signals.append(StuckSignal(channels: sampleDimension, minimumRun: settings.stuckRun, holdOff: settings.alertHoldOff))
        }
        if surge { signals.append(SurgeSignal(channels: sampleDimension, minimumRun: settings.surgeRun, window: settings.window)) }
        if on.contains(LevelSignal.name) && (settings.levelBar > 0 || settings.swingBar > 0) && settings.alertEvidence > 0
            && sampleDimension <= settings.discordChannels
        {
            // A statistic set to 0 is off: its bar is out of reach.
            let bar = { (b: Float) in b > 0 ? max(b, settings.alertEvidence) : .infinity }
            signals.append(
                LevelSignal(
                    channels: sampleDimension, bar: bar(settings.levelBar), horizon: settings.calibrationHorizon,
                    logScale: settings.transform == .log, swingBar: bar(settings.swingBar)))
        }
        if on.contains(CorrelationSignal.name) && sampleDimension > 1 && sampleDimension <= settings.correlationChannels {
            signals.append(
                CorrelationSignal(dimension: sampleDimension, horizon: settings.calibrationHorizon, holdOff: settings.alertHoldOff))
        }
        return DetectionChain(
            signals: signals, policy: settings.alertPolicy,
            rangeCorroboration: sampleDimension > 1 && signals.count > 1 ? settings.rangeCorroboration : 0,
            early: settings.earlyScore && settings.window > 0 && sampleDimension == 1 ? EarlyScore() : nil)
    }

    // MARK: Ingest

    /// Scores `count` samples `(count, sampleDimension)` with the current autoencoder, then admits them
    /// to the buffer and the normaliser and owes the trainer its steps. Values must be finite.
    ///
    /// - Returns: exactly one score per sample, in order.
    public func score(
        _ values: UnsafePointer<Float>, count: Int, firstSequence: UInt64, timestamps: [Int64]? = nil,
        lines: [LineFacts]? = nil
    ) -> ScoredBatch {
        guard settings.transform != .none else {
            return scoreShaped(values, count: count, firstSequence: firstSequence, timestamps: timestamps, lines: lines)
        }
        // Everything downstream (models, buffer, signals) sees the transformed values.
        let n = count * sampleDimension
        if transformed.count < n { transformed = [Float](repeating: 0, count: n) }
        // A larger batch's room is given back after it (see `retainedRows`).
        defer { if transformed.count > Self.retainedRows * sampleDimension { transformed = [] } }
        return transformed.withUnsafeMutableBufferPointer {
            let p = $0.baseAddress!
            p.update(from: values, count: n)
            settings.transform.apply(p, count: n)
            return scoreShaped(p, count: count, firstSequence: firstSequence, timestamps: timestamps, lines: lines)
        }
    }

    /// `score` on values already under the stream's transform.
    private func scoreShaped(
        _ values: UnsafePointer<Float>, count: Int, firstSequence: UInt64, timestamps: [Int64]?, lines: [LineFacts]?
    ) -> ScoredBatch {
        // The newest weights the trainer handed over.
        lock.withLock {
            // Every hand-over since the last the scorer took (a rollback's too) is newer.
            if exchangeHandovers != scorerHandovers {
                scorer.parameters.copy(from: exchange)
                scorer.normaliser.copy(from: exchangeNormaliser)
                scorerVersion = exchangeVersion
                scorerHandovers = exchangeHandovers
            }
            if let representer, let mocoExchange, mocoExchangeHandovers != representerHandovers {
                representer.loadQuery(from: mocoExchange)
                representer.normaliser.copy(from: exchangeNormaliser)
                representerVersion = mocoExchangeVersion
                representerHandovers = mocoExchangeHandovers
            }
            if headExchange !== ingestHead { ingestHead = headExchange }
            // The glitch guard judges the values as the models see them (under the transform), here
            // under the lock: a checkpoint on the trainer thread reads its range too. A sample with
            // a glitch is counted as quarantined (its value is replaced in what the stream learns).
            if let glitchGuard {
                glitchGuard.inspect(values, count: count)
                var last = -1
                for g in glitchGuard.found where g.sample != last {
                    quarantined &+= 1
                    last = g.sample
                }
            }
        }
        if let glitchGuard, !glitchGuard.found.isEmpty {
            // Rare: the batch is copied with its glitches replaced, and scored from the copy.
            var repaired = Array(UnsafeBufferPointer(start: values, count: count * sampleDimension))
            return repaired.withUnsafeMutableBufferPointer {
                glitchGuard.apply(to: $0.baseAddress!)
                return scoreInspected($0.baseAddress!, count: count, firstSequence: firstSequence, timestamps: timestamps, lines: lines)
            }
        }
        return scoreInspected(values, count: count, firstSequence: firstSequence, timestamps: timestamps, lines: lines)
    }

    /// `scoreShaped` once the scorer has its weights and the glitches are replaced.
    private func scoreInspected(
        _ values: UnsafePointer<Float>, count: Int, firstSequence: UInt64, timestamps: [Int64]?, lines: [LineFacts]?
    ) -> ScoredBatch {
        // Rows the models see: the samples themselves, or the window ending at each value.
        let d = inputDimension
        let windowed = shaper != nil
        var rowOf: [Int] = windowed ? [Int](repeating: -1, count: count) : []
        var rowCount = 0
        if errors.count < count { grow(count) }
        defer { if errors.count > Self.retainedRows { grow(Self.retainedRows) } }
        if windowed {
            // Under the lock: a checkpoint on the trainer thread reads the history too.
            lock.withLock { rowCount = shaper!.shape(values, count: count, into: rows.pointer, rowOf: &rowOf) }
        } else {
            rowCount = count
        }
        // The models' rows: the windows built above, or the samples as they came (no copy).
        let input: UnsafePointer<Float> = windowed ? UnsafePointer(rows.pointer) : values
        if rowCount > 0 {
            scorer.score(input, rows: rowCount, errors: errors.pointer)
        }

        var result = ScoredBatch(
            stream: name, modelVersion: scorerVersion, threshold: settings.threshold, firstSequence: firstSequence,
            errors: [Float](repeating: 0, count: count), scores: [Float](repeating: 0, count: count),
            alertScores: [Float](repeating: 0, count: count), alerts: [Bool](repeating: false, count: count),
            warmingUp: [Bool](repeating: true, count: count), timestamps: timestamps ?? [], topFeatures: [:],
            window: explainedWindow, windowScales: explainedWindow > 0 ? settings.windowScales : [])
        result.sampleDimension = sampleDimension
        if let representer, rowCount > 0 {
            // Normalised by the normaliser handed over with the representer's weights.
            let width = representer.representationWidth
            var out = [Float](repeating: 0, count: rowCount * width)
            out.withUnsafeMutableBufferPointer { representer.embed(input, rows: rowCount, into: $0.baseAddress!) }
            result.representations = out
            result.representationWidth = width
            // A window's rows are its last samples' (the first have too little history for one).
            result.representationFirst = count - rowCount
            result.representationVersion = representerVersion
        }
        if let fitted = ingestHead, rowCount == count {
            // The head's own encoder and normaliser: those it was fitted on.
            let width = fitted.encoder.representationWidth
            var r = [Float](repeating: 0, count: rowCount * width)
            r.withUnsafeMutableBufferPointer { fitted.encoder.embed(input, rows: rowCount, into: $0.baseAddress!) }
            let predicted = r.withUnsafeBufferPointer { fitted.head.predict($0.baseAddress!, rows: rowCount) }
            result.classIndex = predicted.map { UInt32($0.index) }
            result.classProbability = predicted.map(\.probability)
            result.classes = fitted.head.classes
            result.classVersion = fitted.version
        }
        lock.withLock {
            let modelReady = scorerVersion - autoencoderVersionBase >= UInt64(settings.warmupSteps)
            // Sample i is the stream's (accepted + i + 1)th: it warms up while that is within
            // `warmup_samples`, whether it came alone or in a batch that crosses the boundary.
            let warmingRows = settings.warmupSamples - Int(min(accepted, UInt64(settings.warmupSamples)))
            // The loop works on a local chain (its policy is a value mutated per sample): a class's
            // stored property would cost a dynamic exclusivity check per access where those are on.
            // Swapped out, not copied, so the policy's ring stays uniquely owned.
            var chain = DetectionChain(signals: [], policy: AlertPolicy(threshold: 1, repeatWindow: 0))
            swap(&chain, &self.chain)
            var quarantineRun = self.quarantineRun
            defer {
                swap(&chain, &self.chain)
                self.quarantineRun = quarantineRun
                result.period = self.periodSignal?.period ?? 0
            }
            let limit = settings.learnSurpriseLimit, holdOff = settings.alertHoldOff, sd = sampleDimension
            findings.removeAll(keepingCapacity: true)
            chain.prepare(values, count: count, dimension: sd)
            for i in 0..<count {
                let r = windowed ? rowOf[i] : i
                var o = Observation(
                    values: values + i * sd, dimension: sd, logError: r >= 0 ? Calibrator.logError(errors[r]) : nil,
                    modelReady: modelReady)
                if let lines { o.line = lines[i] }
                guard let v = chain.judge(&o, warming: i < warmingRows || !modelReady) else { continue }
                var channelAlert: Int? = nil
                if v.alert && v.certain, let glitch = chain.signals[v.source] as? GlitchGuard, let g = glitch.lastGlitch {
                    result.fromGlitch[i] = g
                }
                if v.alert && v.certain, let surge = chain.signals[v.source] as? SurgeSignal, surge.lastChannel >= 0 {
                    result.fromSurge[i] = (surge.lastChannel, surge.lastRun, surge.lastRecord)
                }
                if v.alert && !v.certain {
                    let source = chain.signals[v.source]
                    if let period = source as? PeriodSignal { result.fromPeriod[i] = period.period }
                    if let period = source as? ChannelPeriodSignal {
                        let c = period.alertChannel(onEvidence: v.onEvidence)
                        if c >= 0 {
                            result.fromPeriod[i] = period.checks[c].period
                            channelAlert = c
                        }
                    }
                    if let noise = source as? NoiseSignal {
                        let c = noise.lastChannel
                        if c >= 0 {
                            channelAlert = c
                            result.fromNoise[i] = (c, noise.factor(channel: c))
                        }
                    }
                    if let stuck = source as? StuckSignal, stuck.lastChannel >= 0 {
                        channelAlert = stuck.lastChannel
                        result.fromStuck[i] = (stuck.lastChannel, stuck.repeated(channel: stuck.lastChannel))
                    }
                    if let level = source as? LevelSignal, level.lastChannel >= 0 {
                        channelAlert = level.lastChannel
                        result.fromLevel[i] = (
                            level.lastChannel, level.period(channel: level.lastChannel), level.lastLevelRatio,
                            level.lastStatistic == .swing ? level.lastRatio : nil
                        )
                    }
                    if let correlation = source as? CorrelationSignal, correlation.lastChannel >= 0 {
                        channelAlert = correlation.lastChannel
                        result.fromCorrelation[i] = correlation.lastChannel
                    }
                    if let discord = source as? MultiscaleDiscord {
                        result.fromDiscord[i] = discord.origin(ofSurprise: v.onEvidence)
                    }
                }
                if v.alert, let lines {
                    // The signal that decided, or else the first log signal with something to say
                    // about this line (a new template also changes the mix the autoencoder sees).
                    var k = v.source
                    if chain.signals[k].finding == nil, let other = chain.signals.firstIndex(where: { $0.finding != nil }) { k = other }
                    findings.append((i, chain.name(of: k), chain.signals[k].finding ?? .mix(lines[i].template)))
                }
                // Kept out of the buffer and the normaliser while it looks anomalous, unless the
                // stream has looked anomalous for a whole hold-off (then it is the new normal).
                // The model's own surprise: what is kept from the model is what surprised it.
                let surprising = limit > 0 && !v.warmingUp && (reconstructionSignal?.lastSurprise ?? -.infinity) >= limit
                quarantineRun = surprising ? quarantineRun + 1 : 0
                if surprising && quarantineRun <= holdOff {
                    quarantinedRows.append(r)
                    // A sample with a glitch was counted as quarantined already: once.
                    if glitchGuard?.found.contains(where: { $0.sample == i }) == true { quarantined &-= 1 }
                }
                result.errors[i] = errors[r]
                result.scores[i] = v.score
                result.alertScores[i] = v.alertScore
                result.warmingUp[i] = v.warmingUp
                // A surge is certain without lying beyond the range.
                if v.certain && !v.warmingUp && !(chain.signals[v.source] is SurgeSignal) { result.beyondRange.insert(i) }
                if v.alert {
                    alertsRaised &+= 1
                    result.alerts[i] = true
                    result.topFeatures[i] =
                        v.certain ? chain.explanation(v) : channelAlert.map { [(index: $0, share: Float(1))] } ?? topContributions(input + r * d)
                }
            }
            // Learn from them only after scoring them.
            if rowCount > 0 && quarantinedRows.isEmpty {
                live.observe(input, rows: rowCount)
                buffer.insert(input, rows: rowCount)
            } else if rowCount > 0 {
                // The runs of rows between quarantined ones (quarantinedRows is in order).
                var start = 0
                for q in quarantinedRows + [rowCount] {
                    if q > start {
                        live.observe(input + start * d, rows: q - start)
                        buffer.insert(input + start * d, rows: q - start)
                    }
                    start = q + 1
                }
                quarantined &+= UInt64(quarantinedRows.count)
                quarantinedRows.removeAll(keepingCapacity: true)
            }
            accepted += UInt64(count)
            idleLeft = idlePass
            pendingSteps += earnedSteps(rows: rowCount)
            if pendingSteps > settings.maximumPendingSteps {
                // Whole steps are counted and the fraction carried: single samples each owe an
                // eighth of a step, and dropping every fraction counted none of them.
                let over = pendingSteps - settings.maximumPendingSteps + skippedFraction
                let whole = over.rounded(.down)
                skippedSteps &+= UInt64(min(whole, 1e15))
                skippedFraction = over - whole
                pendingSteps = settings.maximumPendingSteps
            }
        }
        return result
    }

    /// Scores a log stream's lines: each is mined into its template, its row (the mix of templates
    /// up to it) scored by the autoencoder, and the line read by the log signals; then learned from
    /// as `score` does. Alerting lines get their reason in words (`logAlerts`).
    ///
    /// - Returns: exactly one score per line, in order.
    public func scoreLines(_ lines: [Substring], firstSequence: UInt64, timestamps: [Int64]? = nil) -> ScoredBatch {
        batchLock.withLock { scoreLinesHeld(lines, firstSequence: firstSequence, timestamps: timestamps) }
    }

    private func scoreLinesHeld(_ lines: [Substring], firstSequence: UInt64, timestamps: [Int64]?) -> ScoredBatch {
        guard let logs else { preconditionFailure("scoreLines on a sample stream") }
        let n = lines.count, d = LogFront.dimension
        guard n > 0 else { return score(UnsafePointer(rows.pointer), count: 0, firstSequence: firstSequence) }
        let seconds = timestamps.map { $0.map { Double($0) * 1e-9 } }
        var mixes = [Float](repeating: 0, count: n * d)
        let facts = lock.withLock { mixes.withUnsafeMutableBufferPointer { logs.mine(lines, seconds: seconds, rows: $0.baseAddress!) } }
        var result = mixes.withUnsafeBufferPointer {
            score($0.baseAddress!, count: n, firstSequence: firstSequence, timestamps: timestamps, lines: facts)
        }
        result.templateIDs = facts.map(\.template)
        lock.withLock {
            for (i, signal, finding) in findings {
                result.logAlerts[i] = LogAlert(
                    signal: signal, reason: logs.describe(finding), template: logs.text(finding.template),
                    templateID: finding.template, line: String(lines[i]))
            }
            findings.removeAll(keepingCapacity: true)
        }
        return result
    }

    /// Counts lines cut to `max_line_bytes` or with invalid UTF-8 replaced (ingest thread).
    public func countRepairs(truncated: Int, repaired: Int) {
        guard let logs, truncated + repaired > 0 else { return }
        lock.withLock {
            logs.truncated &+= UInt64(truncated)
            logs.repaired &+= UInt64(repaired)
        }
    }

    /// The window an alert's contributions name time steps of: a univariate stream's (a multivariate
    /// window names channels, as features).
    public var explainedWindow: Int { sampleDimension == 1 ? settings.window : 0 }

    /// Rows whose room the ingest side keeps between batches (the memory estimate's): a larger
    /// batch (a message of up to `max_samples_per_message`) gets room for itself, given back after it,
    /// so one large message does not hold its size for the stream's life.
    static let retainedRows = 256

    /// Room for `count` rows (the windows the models read, and their errors).
    private func grow(_ count: Int) {
        rows = FloatBuffer(count: count * inputDimension)
        errors = FloatBuffer(count: count)
    }

    /// The five largest shares of `row`'s squared error.
    /// A multivariate window's shares are summed per channel (which sensor matters more to a person
    /// than which of its time steps), so its indices are features.
    private func topContributions(_ row: UnsafePointer<Float>) -> [(index: Int, share: Float)] {
        let d = inputDimension
        // Alerts are rare: the per-feature errors are worked out again for this row alone.
        var error: Float = 0
        scorer.score(row, rows: 1, errors: &error, featureErrors: featureErrors.pointer)
        var fe = Array(UnsafeBufferPointer(start: featureErrors.pointer, count: d))
        if let shaper, shaper.channels > 1 {
            var perChannel = [Float](repeating: 0, count: shaper.channels)
            for i in 0..<d { perChannel[(i / shaper.window) % shaper.channels] += fe[i] }
            fe = perChannel
        }
        var total: Float = 0
        for c in fe.indices { total += fe[c] }
        guard total > 0 else { return [] }
        var top: [(index: Int, share: Float)] = []
        for c in fe.indices {
            let share = fe[c] / total
            if top.count < 5 || share > top[top.count - 1].share {
                top.append((c, share))
                top.sort { $0.share > $1.share }
                if top.count > 5 { top.removeLast() }
            }
        }
        return top
    }

    /// A windowed stream's period in values (0: none found, not decided yet, or no period check).
    public var period: Int { lock.withLock { periodSignal?.period ?? 0 } }

    /// Counts a rejected message against this stream.
    public func countRejected() { lock.withLock { rejectedCount += 1 } }

    /// Steps `rows` new rows earn: at `warmupReplayRatio` (when set) while the warm-up's steps are
    /// neither taken nor owed, at `replayRatio` otherwise (under the lock). A step the trainer has
    /// begun is neither owed nor counted as taken until it is done, so one more may be earned early.
    func earnedSteps(rows: Int) -> Double {
        let b = Double(settings.batchSize), n = Double(rows)
        let due = min(
            Double(settings.warmupSteps) - Double(handedOverSteps) - pendingSteps, settings.maximumPendingSteps - pendingSteps)
        guard settings.warmupReplayRatio > 0, settings.warmupReplayRatio != settings.replayRatio, due > 0 else {
            return settings.replayRatio * n / b
        }
        let fast = min(n, due * b / settings.warmupReplayRatio)
        return settings.warmupReplayRatio * fast / b + settings.replayRatio * (n - fast) / b
    }

    // MARK: Training

    /// Whether the trainer owes this stream a step and the buffer is ready.
    public var wantsStep: Bool {
        lock.withLock { pendingSteps >= 1 && buffer.count >= settings.minimumBuffered }
    }

    /// When the stream may next take an idle step (trainer clock, seconds), if it has any left: a
    /// stream that has stopped sending keeps learning from its buffer, at most
    /// `idle_steps_per_second`, until it has made `idle_passes` passes over it.
    /// The idle steps a batch grants: `idle_passes` over what the buffer holds, in batches (each
    /// sample may sit in both halves).
    var idlePass: Double {
        settings.idlePasses * Double(min(buffer.inserted, UInt64(buffer.capacity))) / Double(settings.batchSize)
    }

    public var idleStepDue: Double? {
        lock.withLock {
            guard settings.idleStepsPerSecond > 0, idleLeft >= 1, pendingSteps < 1, buffer.count >= settings.minimumBuffered
            else { return nil }
            return lastIdleStep + 1 / settings.idleStepsPerSecond
        }
    }

    /// One step of each model on a minibatch from the buffer, if one is owed (or, with `idle`, an
    /// idle step is due at `now`).
    ///
    /// - Returns: false when no step was taken.
    @discardableResult
    public func trainStep(idle now: Double? = nil) -> Bool {
        let n = settings.batchSize
        let ready: Bool = lock.withLock {
            guard buffer.count >= settings.minimumBuffered else { return false }
            if pendingSteps >= 1 {
                pendingSteps -= 1
                owedStepRunning = true
            } else if let now, settings.idleStepsPerSecond > 0, idleLeft >= 1, now >= lastIdleStep + 1 / settings.idleStepsPerSecond {
                idleLeft -= 1
                lastIdleStep = now
                idleSteps &+= 1
            } else {
                return false
            }
            buffer.sample(n, into: batch.pointer, ids: batchIDs)
            autoencoder.normaliser.copy(from: live)
            moco.normaliser.copy(from: live)
            return true
        }
        guard ready else { return false }
        let aeLoss = autoencoder.trainStep(batch.pointer, rows: n)
        moco.batchNormGroups = settings.mocoBatchNormGroups
        let mocoLoss = moco.trainStep(batch.pointer, rows: n, ids: batchIDs)
        // The last line of defence against poisoned weights. What is handed to the scorer and the
        // representer is checked at every step: the losses come before the update, and a NaN
        // weight feeding a ReLU can leave later losses finite, so a finite loss says nothing of the
        // weights handed over. Everything else (MoCo's key encoder and queue, Adam's moments, the
        // decoder) is checked on a non-finite loss and every `weightCheckEvery` steps. If a value
        // is not finite the models go back to their last good state and nothing of this step is
        // handed over.
        let check = !(aeLoss.isFinite && mocoLoss.isFinite) || autoencoder.step % Self.weightCheckEvery == 0
        if !(check ? modelsFinite : handedOverFinite) {
            rollBack()
            return true
        }
        lock.withLock {
            handOver()
            lastLosses = (aeLoss, mocoLoss)
        }
        return true
    }

    /// Gives the ingest side the models as they are now (under the lock).
    private func handOver() {
        owedStepRunning = false
        exchange.copy(from: autoencoder.parameters)
        exchangeNormaliser.copy(from: autoencoder.normaliser)
        exchangeVersion = autoencoderVersion
        exchangeHandovers &+= 1
        if let mocoExchange {
            moco.copyQuery(into: mocoExchange)
            mocoExchangeVersion = mocoVersionBase + UInt64(moco.step)
            mocoExchangeHandovers &+= 1
        }
        mocoVersion = mocoVersionBase + UInt64(moco.step)
    }

    /// Steps between scans of every weight and queued key (a read of each, beside a step's several
    /// passes over them).
    static let weightCheckEvery = 16

    /// Whether every weight of both models (MoCo's key encoder and queue too) and their optimisers'
    /// moments are finite.
    var modelsFinite: Bool { autoencoder.isFinite && moco.isFinite }

    /// Whether the weights a hand-over copies (the autoencoder's and MoCo's query encoder) are
    /// finite: one read of each, beside a training step's several passes over them.
    var handedOverFinite: Bool { autoencoder.weightsFinite && moco.queryFinite }

    /// Puts the models back as they were at the last good snapshot (or fresh, if there was none) and
    /// counts it (trainer thread).
    func rollBack() {
        let reached = UInt64(autoencoder.step)
        let restored = lastGood.flatMap { good in
            (try? Autoencoder(serialized: good.autoencoder)).flatMap { ae in (try? MoCo(serialized: good.moco)).map { (ae, $0) } }
        }
        autoencoder = restored?.0 ?? Autoencoder(configuration: settings.autoencoderConfiguration())
        moco = restored?.1 ?? MoCo(configuration: settings.mocoConfiguration())
        lock.withLock {
            rollbacks += 1
            stepsUndone &+= reached - min(reached, UInt64(autoencoder.step))
            lastLosses = (.nan, .nan)
            // The ingest side takes the models gone back to at its next batch; heartbeats and the
            // trainer read their versions.
            handOver()
        }
    }

    /// Snapshots of the models that trained since their last snapshot (trainer thread). Models with
    /// a non-finite weight are never published: they are rolled back first. Models that are
    /// published are kept (serialized) as the state to roll back to.
    public func takeSnapshots(now: Int64) -> [Snapshot] {
        if !modelsFinite { rollBack() }
        // With labels, MoCo's snapshot carries a head fitted on it: on the same encoder weights and
        // the same normaliser, taken together with the snapshot's under one lock.
        let aeVersion = autoencoderVersion, mocoVersion = mocoVersionBase + UInt64(moco.step)
        // A restored stream's models are published again once (at the versions they had), so a
        // subscriber or snapshot client gets them before the stream trains again.
        let again = lock.withLock {
            defer { snapshotsOwed = false }
            return snapshotsOwed
        }
        let (hasLabels, labelsChanged) = lock.withLock { (!labels.isEmpty, labelsVersion != headLabelsVersion) }
        // Published again only once trained: a MoCo started afresh at a restore (its settings
        // changed) has the version its predecessor was last published at until its first step.
        let mocoDue = mocoVersion > snapshotVersions.moco || ((again || labelsChanged) && moco.step > 0)
        let headEncoder = hasLabels && mocoDue ? headEncoderNow() : nil
        let samples = lock.withLock { accepted }
        // Each model with the normaliser its last step took (and was handed over with): the one
        // every score and representation of its version was computed with.
        func snapshot(
            _ kind: Snapshot.Kind, version: UInt64, steps: Int, _ layout: NetworkLayout, _ parameters: [Float],
            representationLayer: Int, temperature: Float, normaliser: Normaliser
        ) -> Snapshot {
            Snapshot(
                stream: name, kind: kind, version: version, samplesSeen: samples, steps: UInt64(steps),
                inputDimension: inputDimension, window: settings.window,
                windowScales: settings.window > 0 ? settings.windowScales : [], inputTransform: settings.transform,
                layers: Self.layers(layout, parameters),
                normaliserMean: normaliser.means, normaliserVariance: normaliser.variances, representationLayer: representationLayer,
                temperature: temperature, createdNanoseconds: now)
        }
        var out: [Snapshot] = []
        if aeVersion > snapshotVersions.autoencoder || (again && autoencoder.step > 0) {
            snapshotVersions.autoencoder = aeVersion
            out.append(
                snapshot(
                    .autoencoder, version: aeVersion, steps: autoencoder.step, autoencoder.layout, autoencoder.parameterValues,
                    representationLayer: settings.autoencoderHidden.count / 2, temperature: 0, normaliser: autoencoder.normaliser))
        }
        if mocoDue {
            snapshotVersions.moco = mocoVersion
            let exported = moco.exported
            var s = snapshot(
                .moco, version: mocoVersion, steps: moco.step, exported.layout, exported.parameters,
                representationLayer: settings.mocoEncoder.count - 1, temperature: settings.mocoTemperature, normaliser: moco.normaliser)
            if let headEncoder, let fitted = fitHead(encoder: headEncoder, version: mocoVersion) {
                s.head = fitted.head
                s.headLabels = fitted.labels
            }
            out.append(s)
        }
        if !out.isEmpty { keepAsLastGood() }
        return out
    }

    /// Keeps the models as they are now as the state to roll back to.
    func keepAsLastGood() {
        // Copied to arrays of their exact size: a writer's array keeps its growth's spare capacity.
        func exact(_ bytes: [UInt8]) -> [UInt8] { bytes.withUnsafeBufferPointer { Array($0) } }
        lastGood = (exact(autoencoder.serialized()), exact(moco.serialized()))
    }

    // MARK: Few-label head

    /// Values in a labelled sample: a sample, or for a windowed stream the samples its window reads
    /// (`window × largest scale` of them, oldest first, `sampleDimension` values each), so that a
    /// label names the stretch of the series that ends at the labelled moment.
    public var labelDimension: Int { shaper.map { $0.historyLength * $0.channels } ?? sampleDimension }

    /// Classes a stream's head takes at most: its fit's cost and a published ClassBatch (which names
    /// every class) grow with them.
    public static let maximumClasses = 64

    /// Labels a stream refused: with the labels it holds, they would give its head more than
    /// `maximumClasses` classes (nothing is taken).
    public struct TooManyClasses: Error, CustomStringConvertible {
        public let classes: Int
        public var description: String {
            "the labels held with these would be \(classes) classes, more than the \(StreamPipeline.maximumClasses) a head takes"
        }
    }

    /// Keeps labelled samples (`labels.count` of `labelDimension` values, one label each) for the
    /// head, dropping the oldest beyond `max_labels`; the trainer fits a new head at its next
    /// snapshot. A windowed stream keeps the model input of each: the window ending at its newest
    /// sample, as the stream itself would build it. Returns how many the stream holds, or
    /// refuses them all if they would make more than `maximumClasses` classes.
    @discardableResult
    public func addLabels(_ values: [Float], labels new: [String]) -> Result<Int, TooManyClasses> {
        let values = settings.transform.applied(to: values)
        guard let shaper else { return holdLabels(values, labels: new) }
        let span = labelDimension, width = inputDimension
        precondition(values.count == new.count * span, "labelled samples of \(span) values each")
        var rows = [Float](repeating: 0, count: new.count * width)
        rows.withUnsafeMutableBufferPointer { out in
            for k in new.indices {
                WindowShaper.windowRow(
                    Array(values[(k * span)..<((k + 1) * span)]), window: shaper.window, scales: shaper.scales,
                    channels: shaper.channels, into: out.baseAddress! + k * width)
            }
        }
        return holdLabels(rows, labels: new)
    }

    /// Labelled samples already under the stream's transform (a checkpoint's).
    func holdLabels(_ values: [Float], labels new: [String]) -> Result<Int, TooManyClasses> {
        lock.withLock {
            // The newest max_labels of those held and these.
            let over = max(0, labels.count + new.count - settings.maxLabels), d = inputDimension
            let kept = labels.dropFirst(min(over, labels.count)) + new.dropFirst(max(0, over - labels.count))
            let classes = SoftmaxHead.classes(of: Array(kept)).count
            guard classes <= Self.maximumClasses else { return .failure(TooManyClasses(classes: classes)) }
            if over >= labels.count {
                // Only these are kept: new arrays of their size (one large batch leaves no room behind).
                let drop = over - labels.count
                labels = Array(new.dropFirst(drop))
                labelledValues = Array(values.dropFirst(drop * d))
            } else {
                labels.removeFirst(over)
                labelledValues.removeFirst(over * d)
                labels += new
                labelledValues += values
            }
            labelsVersion &+= 1
            return .success(labels.count)
        }
    }

    /// Labels arrived since the last head was fitted, and MoCo has trained (the trainer then publishes
    /// a snapshot with a new head).
    public var wantsHead: Bool { lock.withLock { labelsVersion != headLabelsVersion && mocoVersion > 0 } }

    /// Labelled samples held.
    public var labelCount: Int { lock.withLock { labels.count } }

    /// A MoCo with the trainer's current query weights, frozen for a head.
    func headEncoderNow() -> MoCo {
        let weights = FloatBuffer(count: moco.parameterCount)
        moco.copyQuery(into: weights)
        let encoder = Self.frozenEncoder(settings, weights: weights)
        encoder.normaliser.copy(from: moco.normaliser)
        return encoder
    }

    /// A MoCo that only embeds (the ingest thread's representer, a head's encoder) with these query
    /// weights: it never trains, so the smallest queue there is (one batch), no decoder and no blend.
    static func frozenEncoder(_ settings: StreamConfiguration, weights: FloatBuffer) -> MoCo {
        var c = settings.mocoConfiguration()
        c.queueSize = c.batchSize
        c.reconstruction = 0
        c.mix = 0
        let encoder = MoCo(configuration: c)
        encoder.loadQuery(from: weights)
        return encoder
    }

    /// Fits the head on the labelled samples' representations under `encoder` (trainer thread) and
    /// hands it, with the encoder, to the ingest thread.
    func fitHead(encoder: MoCo, version: UInt64) -> (head: SoftmaxHead, labels: Int)? {
        let (values, labels, seen) = lock.withLock { (labelledValues, self.labels, labelsVersion) }
        headLabelsVersion = seen
        guard !labels.isEmpty else { return nil }
        let began = Daemon.monotonic()
        defer {
            let ended = Daemon.monotonic()
            headFitReady = ended + (ended - began)
        }
        let head = SoftmaxHead.fit(features: encoder.embed(values), labels: labels)
        let fitted = FittedHead(head: head, encoder: encoder, version: version)
        lock.withLock { headExchange = fitted }
        return (head, labels.count)
    }

    static func layers(_ layout: NetworkLayout, _ p: [Float])
        -> [(weights: [Float], bias: [Float], outputs: Int, inputs: Int, activation: Activation)]
    {
        layout.layers.map { l in
            (
                Array(p[l.weightOffset..<(l.weightOffset + l.outputs * l.inputs)]),
                Array(p[l.biasOffset..<(l.biasOffset + l.outputs)]), l.outputs, l.inputs, l.activation
            )
        }
    }

    /// Figures for heartbeats.
    public struct Status: Sendable {
        public var accepted, rejected, buffered, evicted, skippedSteps, quarantined, rollbacks: UInt64
        /// The models' versions (their steps, plus a base that keeps versions from going down).
        public var autoencoderSteps, mocoSteps: UInt64
        /// Training steps taken since the stream began: never fewer after a rollback.
        public var trainSteps: UInt64 = 0
        public var warmingUp: Bool
        public var autoencoderLoss, mocoLoss: Float
        /// The period check's period (0: none).
        public var period: Int
        /// A log stream's templates now and evicted, and lines cut or repaired (zeros otherwise).
        public var templates = 0
        public var templatesEvicted: UInt64 = 0, linesTruncated: UInt64 = 0, linesRepaired: UInt64 = 0
        /// Steps taken while the stream was quiet (included in the model steps).
        public var idleSteps: UInt64 = 0
        /// Steps earned and not taken yet (whole steps).
        public var pendingSteps: UInt64 = 0
        /// Alerts raised since the daemon started.
        public var alerts: UInt64 = 0
    }

    public var status: Status {
        lock.withLock {
            Status(
                accepted: accepted, rejected: rejectedCount, buffered: UInt64(buffer.count), evicted: buffer.evicted,
                skippedSteps: skippedSteps, quarantined: quarantined, rollbacks: rollbacks, autoencoderSteps: exchangeVersion, mocoSteps: mocoVersion,
                trainSteps: handedOverSteps &+ stepsUndone,
                warmingUp: accepted < UInt64(settings.warmupSamples) || handedOverSteps < UInt64(settings.warmupSteps)
                    || chain.warming,
                autoencoderLoss: lastLosses.autoencoder, mocoLoss: lastLosses.moco,
                period: periodSignal?.period ?? 0, templates: logs?.miner.templates.count ?? 0,
                templatesEvicted: logs?.miner.evicted ?? 0, linesTruncated: logs?.truncated ?? 0,
                linesRepaired: logs?.repaired ?? 0, idleSteps: idleSteps,
                pendingSteps: min(UInt64(max(pendingSteps, 0)) + (owedStepRunning ? 1 : 0), UInt64(settings.maximumPendingSteps)),
                alerts: alertsRaised)
        }
    }

    // MARK: State

    static let kind = "eddy.stream"
    /// 3 added the stream's range, 4 the period check, 5 the range the rule compares with and the
    /// recent scores; 6 writes the detection as sections, one per unit (window, each signal, the
    /// alert policy), each with its own layout version; 7 says whether the stream is a log stream
    /// (whose front end, the template miner, is a section). Formats 2 to 6 still restore.
    public static let formatVersion: UInt32 = 7

    /// Bytes of a replay buffer's rows a checkpoint copies with the stream's lock held at a time
    /// (a megabyte: 0.3 to 0.5 ms, timed at dim 2,000).
    var checkpointStepBytes = 1 << 20

    /// The stream's whole state (call from the trainer thread, or with no trainer running).
    public func serialized() -> [UInt8] { batchLock.withLock { serializedHeld() } }

    private func serializedHeld() -> [UInt8] {
        if !modelsFinite { rollBack() }  // a non-finite weight is never checkpointed
        var w = StateWriter()
        w.write(Self.kind); w.write(Self.formatVersion)
        w.write(name)
        w.write(UInt32(settings.dim)); w.write(UInt32(settings.window))
        w.write(UInt32(settings.windowScales.count)); for s in settings.windowScales { w.write(UInt32(s)) }
        w.write(settings.log)
        w.write(blob: autoencoder.serialized())
        w.write(blob: moco.serialized())
        // Under `lock` ingest waits for this stream, and so every stream: held only for copies.
        // The buffer (65 MB at dim 2,000) goes into room made ready before it, a megabyte of rows
        // at a time with the lock released between (the samples that arrive meanwhile do not
        // change what is written: `ReplayBuffer.beginEncoding`); the sections (their size unknown
        // until written) into a writer of their own, joined after (into the room's slack,
        // usually: 512 bytes a feature).
        w.prepare(room: lock.withLock { buffer.encodingBound } + 512 * inputDimension + 65536)
        var sections = StateWriter()
        let encoding: ReplayBuffer = lock.withLock {
            w.write(accepted); w.write(rejectedCount); w.write(skippedSteps); w.write(pendingSteps.bitPattern)
            w.write(snapshotVersions.autoencoder); w.write(snapshotVersions.moco)
            live.encode(&w)
            buffer.beginEncoding(&w)
            let transformSection = settings.transform == .none ? 0 : 1
            let progress = LearningProgress(
                quarantineRun: quarantineRun, quarantined: quarantined, idleLeft: idleLeft, idleSteps: idleSteps,
                stepsUndone: stepsUndone)
            sections.write(
                UInt32(
                    chain.sectionCount + (shaper == nil ? 0 : 1) + (logs == nil ? 0 : 1) + (labels.isEmpty ? 0 : 1)
                        + transformSection + (mocoVersionBase == 0 ? 0 : 1) + (autoencoderVersionBase == 0 ? 0 : 1)
                        + (progress.isEmpty ? 0 : 1)
                        + (live.count == 0 ? 0 : 1)))
            if transformSection > 0 { sections.write(unit: InputTransformSection(transform: settings.transform)) }
            chain.encodeSections(&sections)
            if let shaper { sections.write(unit: shaper) }
            if let logs { sections.write(unit: logs) }
            if !labels.isEmpty { sections.write(unit: LabelSet(dimension: inputDimension, values: labelledValues, labels: labels)) }
            if mocoVersionBase > 0 { sections.write(unit: MoCoVersionBase(base: mocoVersionBase)) }
            if autoencoderVersionBase > 0 { sections.write(unit: AutoencoderVersionBase(base: autoencoderVersionBase)) }
            if !progress.isEmpty { sections.write(unit: progress) }
            if live.count > 0 { sections.write(unit: RunningMoments(normaliser: live)) }
            return buffer
        }
        let rowsAtOnce = max(1, checkpointStepBytes / (4 * inputDimension))
        while lock.withLock({ encoding.continueEncoding(&w, rows: rowsAtOnce) }) {}
        w.bytes.append(contentsOf: sections.bytes)
        return w.bytes
    }

    /// Restores a stream from `serialized()`, with `settings` (which must agree on dim and window).
    /// Units the settings have and the checkpoint does not start fresh; sections of units the
    /// settings no longer have are dropped.
    ///
    /// A stream whose saved shape would take more than `maxBytes` (its `memoryEstimate`) is refused
    /// before anything is allocated.
    public static func restore(_ bytes: [UInt8], settings: StreamConfiguration, maxBytes: Int = Int.max) throws -> StreamPipeline {
        var r = StateReader(bytes)
        guard try r.read(String.self) == kind else { throw StateError.wrongKind(expected: kind) }
        let version = try r.read(UInt32.self)
        guard (2...formatVersion).contains(version) else { throw StateError.unsupportedVersion(version) }
        let name = try r.read(String.self)
        let savedDim = Int(try r.read(UInt32.self))
        let savedWindow = Int(try r.read(UInt32.self))
        let scaleCount = Int(try r.read(UInt32.self))
        guard scaleCount <= 64 else { throw StateError.invalid("window scales") }
        let scales = try (0..<scaleCount).map { _ in Int(try r.read(UInt32.self)) }
        // Nothing is allocated for a shape the settings' own checks would refuse (a crafted or
        // corrupt checkpoint must not make the daemon allocate without bound).
        guard savedDim >= 1 && savedDim <= 1 << 24 && savedWindow <= 1 << 14 else {
            throw StateError.invalid("stream \(name) has dim \(savedDim) and window \(savedWindow)")
        }
        // The kind and dim come from the state; the rest is the settings' now, resolved for them as
        // a new stream's are (a log stream's own warm-up and evidence, the window for its dim).
        var s = settings
        s.log = version >= 7 ? try r.read(Bool.self) : false
        // A stream the settings declare (a dim, or log) must be the one saved.
        if settings.log && !s.log || !settings.log && settings.dim > 0 && (s.log || settings.dim != savedDim) {
            let saved = s.log ? "a log stream" : "a stream of dim \(savedDim)"
            let now = settings.log ? "a log stream" : "dim \(settings.dim)"
            throw StateError.invalid("stream \(name) was saved as \(saved), now declared \(now)")
        }
        s = s.resolved(dim: savedDim)
        // Another window, or the same width from other scales, would feed the model other features.
        guard s.window == savedWindow else {
            throw StateError.invalid("stream \(name) was saved with a window of \(savedWindow), now \(s.window)")
        }
        guard s.window == 0 || scales == s.windowScales else {
            throw StateError.invalid("stream \(name) was windowed at scales \(scales), now \(s.windowScales)")
        }
        do {
            try s.validate(name: name)
        } catch {
            throw StateError.invalid("stream \(name): \(error)")
        }
        guard s.memoryEstimate <= maxBytes else {
            throw StateError.invalid("stream \(name) would take \(ByteCount(s.memoryEstimate)), more than \(ByteCount(maxBytes))")
        }
        let stream = StreamPipeline(name: name, settings: s)
        let ae = try Autoencoder(serialized: try r.readBlob(), maximumBytes: maxBytes)
        let moco = try MoCo(serialized: try r.readBlob(), maximumBytes: maxBytes)
        // The trainer's batch is the settings': a model saved with a smaller one could not take it.
        guard ae.configuration.inputDimension == stream.inputDimension, ae.layout == stream.autoencoder.layout,
            ae.configuration.batchSize == s.batchSize, ae.configuration.normalise == stream.autoencoder.configuration.normalise
        else { throw StateError.invalid("model shape for stream \(name)") }
        let retuned = Self.changes(from: ae.configuration, to: stream.autoencoder.configuration)
        if retuned.isEmpty {
            stream.autoencoder = ae
        } else {
            // Its learning rate, gradient clip and normaliser horizon govern only the steps to come:
            // the model resumes under the settings' values, its weights, moments and calibration kept.
            stream.autoencoder = ae.resumed(under: stream.autoencoder.configuration)
            stream.autoencoderRetuned = "autoencoder saved with other settings: " + retuned.joined(separator: ", ")
        }
        let changed = Self.changes(from: moco.configuration, to: stream.moco.configuration)
        if changed.isEmpty {
            stream.moco = moco
        } else {
            // Nothing else reads MoCo: a setting that changed its shape (a width, batch normalisation,
            // the reconstruction term) or how it trains (the loss, the augmentations, the optimiser)
            // restarts it alone, as the settings build it; the saved model would go on as it was saved.
            stream.mocoStartedAfresh = "MoCo saved with other settings: " + changed.joined(separator: ", ")
        }
        stream.accepted = try r.readCount()
        stream.rejectedCount = try r.readCount()
        // Statistics only, added to with wrap-around: a count beyond the bound is kept at it.
        stream.skippedSteps = min(try r.read(UInt64.self), StateReader.countLimit)
        let pending = try r.read(Double.self)
        guard pending.isFinite, pending >= 0 else { throw StateError.invalid("pending steps \(pending) for stream \(name)") }
        // Saved under a larger maximum_pending_steps, it keeps at most today's, and the steps beyond
        // are given up as ingest gives them up: counted, the fraction carried (they vanished, from
        // review).
        if pending > s.maximumPendingSteps {
            let over = pending - s.maximumPendingSteps, whole = over.rounded(.down)
            stream.skippedSteps = min(stream.skippedSteps &+ UInt64(min(whole, 1e15)), StateReader.countLimit)
            stream.skippedFraction = over - whole
        }
        stream.pendingSteps = min(pending, s.maximumPendingSteps)
        stream.snapshotVersions = (try r.readCount(), try r.readCount())
        stream.snapshotsOwed = true
        // The state holds values under the transform it was learned under (none before format 6's
        // section, and whenever the section is absent): under another it means nothing.
        func requireTransform(_ learned: InputTransform) throws {
            guard learned == s.transform else {
                throw StateError.invalid("stream \(name) learned under transform \(learned), now \(s.transform)")
            }
        }
        if version >= 6 {
            stream.live.copy(from: try Normaliser.decode(&r, dimension: stream.live.dimension))
            try stream.restoreBuffer(&r)
            let sections = try Sections(&r)
            var learned = InputTransformSection(transform: .none)
            try sections.restore(unit: &learned)
            try requireTransform(learned.transform)
            try stream.chain.restore(sections)
            if var shaper = stream.shaper {
                try sections.restore(unit: &shaper)
                stream.shaper = shaper
            }
            if var logs = stream.logs {
                try sections.restore(unit: &logs)
                // Templates a smaller log_templates left out: the signals forget them as evicted.
                for id in logs.miner.droppedAtRestore {
                    for case let keeping as TemplateKeeping in stream.chain.signals { keeping.forget(template: id) }
                }
            }
            var moments = RunningMoments(normaliser: stream.live)
            try sections.restore(unit: &moments)
            var base = MoCoVersionBase(base: 0)
            try sections.restore(unit: &base)
            stream.mocoVersionBase = base.base
            var aeBase = AutoencoderVersionBase(base: 0)
            try sections.restore(unit: &aeBase)
            stream.autoencoderVersionBase = aeBase.base
            var progress = LearningProgress(quarantineRun: 0, quarantined: 0, idleLeft: 0, idleSteps: 0)
            try sections.restore(unit: &progress)
            stream.quarantineRun = progress.quarantineRun
            stream.quarantined = progress.quarantined
            // A pass over today's buffer at most (the settings may have changed since).
            stream.idleLeft = min(progress.idleLeft, stream.idlePass)
            stream.idleSteps = progress.idleSteps
            stream.stepsUndone = progress.stepsUndone
            var labelled = LabelSet(dimension: stream.inputDimension, values: [], labels: [])
            try sections.restore(unit: &labelled)
            if s.maxLabels > 0 && !labelled.labels.isEmpty {
                // The newest max_labels, should the setting have shrunk; a head is fitted on them at
                // the stream's first snapshot.
                if case .failure(let refusal) = stream.holdLabels(labelled.values, labels: labelled.labels) {
                    // Saved before labels were capped in classes: dropped, and said so at start.
                    stream.labelsDropped = "\(labelled.labels.count) labels: \(refusal)"
                }
            }
        } else {
            try requireTransform(.none)
            try stream.restoreLegacy(&r, version: version)
        }
        if stream.mocoStartedAfresh != nil {
            // The fresh MoCo's versions continue after every version its predecessor reached.
            stream.mocoVersionBase = max(stream.mocoVersionBase + UInt64(moco.step), stream.snapshotVersions.moco)
        }
        stream.exchange.copy(from: stream.autoencoder.parameters)
        stream.exchangeVersion = stream.autoencoderVersion
        if let weights = stream.mocoExchange {
            stream.moco.copyQuery(into: weights)
            stream.mocoExchangeVersion = stream.mocoVersionBase + UInt64(stream.moco.step)
            stream.mocoExchangeHandovers = 1  // the representer takes the restored encoder at its first batch
        }
        stream.exchangeNormaliser.copy(from: stream.autoencoder.normaliser)
        stream.scorer.parameters.copy(from: stream.exchange)
        stream.scorer.normaliser.copy(from: stream.exchangeNormaliser)
        stream.scorerVersion = stream.exchangeVersion
        stream.mocoVersion = stream.mocoVersionBase + UInt64(stream.moco.step)
        // A rollback before the first snapshot returns to the models restored, not to fresh ones.
        if stream.modelsFinite { stream.keepAsLastGood() }
        return stream
    }

    private func restoreBuffer(_ r: inout StateReader) throws {
        let saved = try ReplayBuffer.decode(&r)
        guard saved.dimension == inputDimension, saved.capacity == buffer.capacity else {
            throw StateError.invalid("buffer shape for stream \(name)")
        }
        // Another `recent_fraction` splits the same rows another way.
        buffer = saved.recentCapacity == buffer.recentCapacity ? saved : saved.resplit(recentFraction: settings.recentFraction)
    }

    /// Formats 2 to 5: the detection's state in fixed fields, after the counters.
    private func restoreLegacy(_ r: inout StateReader, version: UInt32) throws {
        let calibrator = try Calibrator.decode(&r)
        if let s = chain.signal(ReconstructionSignal.self) {
            s.calibrator = calibrator.reconfigured(horizon: s.calibrator.horizon, holdOff: s.calibrator.holdOff)
        }
        live.copy(from: try Normaliser.decode(&r, dimension: live.dimension))
        try restoreBuffer(&r)
        if shaper != nil {
            try shaper!.restore(history: &r)
        } else {
            var scratch = WindowShaper(window: 1, scales: [max(settings.historyLength, 1)])
            try scratch.restore(history: &r)
        }
        let d = sampleDimension
        var low = [Float](repeating: .infinity, count: d), high = [Float](repeating: -.infinity, count: d)
        var seen: UInt64 = 0
        var reference: ([Float], [Float])?
        var recent: RecentMaximum?
        if version >= 3 {
            guard Int(try r.read(UInt32.self)) == d else { throw StateError.invalid("range width for stream \(name)") }
            low = try (0..<d).map { _ in try r.read(Float.self) }
            high = try (0..<d).map { _ in try r.read(Float.self) }
        }
        // Format 3 kept the range only while the rule was on; such a range starts its count afresh.
        if version >= 4 { seen = try r.readCount() }
        if version >= 5 {
            reference = (try (0..<d).map { _ in try r.read(Float.self) }, try (0..<d).map { _ in try r.read(Float.self) })
            recent = try RecentMaximum.decode(&r, span: settings.repeatWindow)
        }
        try chain.signal(RangeSignal.self)?.restore(low: low, high: high, seen: seen, reference: reference)
        if let recent { chain.policy.recent = recent }
        if version >= 4, try r.read(UInt8.self) != 0 {
            let saved = try PeriodCheck.decode(&r, streamFormat: version)
            periodSignal?.adopt(saved)
        }
    }
}

extension StreamPipeline {
    /// The autoencoder settings a saved model was trained under that differ from the stream's
    /// settings now, each as "name saved → now" (empty: it resumes as saved). Only those that govern
    /// later steps can differ here; its shape is checked before.
    static func changes(from saved: AutoencoderConfiguration, to wanted: AutoencoderConfiguration) -> [String] {
        var changed: [String] = []
        func check<T: Equatable>(_ name: String, _ a: T, _ b: T) { if a != b { changed.append("\(name) \(a) → \(b)") } }
        func clip(_ norm: Float?) -> String { norm.map { "\($0)" } ?? "none" }
        let a = saved.optimiser, b = wanted.optimiser
        check("learning rate", a.learningRate, b.learningRate)
        check("gradient clip norm", clip(a.gradientClipNorm), clip(b.gradientClipNorm))
        check("adam betas", [a.beta1, a.beta2], [b.beta1, b.beta2])
        check("adam epsilon", a.epsilon, b.epsilon)
        check("weight decay", a.weightDecay, b.weightDecay)
        check("normaliser horizon", saved.normaliserHorizon, wanted.normaliserHorizon)
        return changed
    }

    /// The MoCo settings a saved model was trained under that differ from the stream's settings now,
    /// each as "name saved → now" (empty: the model resumes). The seed is not one: the saved model's
    /// random state goes on.
    static func changes(from saved: MoCoConfiguration, to wanted: MoCoConfiguration) -> [String] {
        var changed: [String] = []
        func check<T: Equatable>(_ name: String, _ a: T, _ b: T) { if a != b { changed.append("\(name) \(a) → \(b)") } }
        check("inputs", saved.inputDimension, wanted.inputDimension)
        check("encoder", saved.encoderWidths, wanted.encoderWidths)
        check("head", saved.headWidths, wanted.headWidths)
        check("batch norm", saved.batchNorm, wanted.batchNorm)
        check("reconstruction", saved.reconstruction, wanted.reconstruction)
        check("mix", saved.mix, wanted.mix)
        check("batch", saved.batchSize, wanted.batchSize)
        check("queue", saved.queueSize, wanted.queueSize)
        check("temperature", saved.temperature, wanted.temperature)
        check("momentum", saved.momentum, wanted.momentum)
        check("optimiser", saved.optimiser, wanted.optimiser)
        check("augmentation", saved.augmentation, wanted.augmentation)
        check("normaliser", saved.normalise, wanted.normalise)
        check("normaliser horizon", saved.normaliserHorizon, wanted.normaliserHorizon)
        var rest = saved
        rest.seed = wanted.seed
        if changed.isEmpty && rest != wanted { changed.append("another setting") }
        return changed
    }
}
