import Learning

/// How one stream is modelled. Every key has a default; see `deploy/eddy.conf` for the file form.
public struct StreamConfiguration: Sendable, Equatable {
    /// Features per sample; 0: fixed by the stream's first batch.
    public var dim = 0
    /// For a univariate stream (dim 1): turn values into sliding windows of this many values, each
    /// value scored as the window that ends at it. 0: samples are used as they come.
    public var window = 0
    /// Window given to a stream whose samples have dim 1 and no `window` of its own: one value alone
    /// cannot be reconstructed from anything, its recent history can. 0 leaves such streams unwindowed.
    public var univariateWindow = 16
    /// Window given to a stream whose samples have more than one feature and no `window` of its own:
    /// each row is scored with the last `multivariateWindow` rows of every channel (at the same
    /// `windowScales`), so a change of shape, frequency or level on one channel is seen. 0: rows are
    /// scored alone.
    public var multivariateWindow = 0
    /// A windowed stream's input is its window at several time scales: for scale s, `window` means of
    /// s consecutive values, the last ending at the newest value (scale 1: the raw window). [1, 8]
    /// with window 16 sees the last 16 values and the last 128 in blocks of 8.
    public var windowScales = [1, 8]
    /// Replay buffer rows, and the share of them that holds the most recent samples.
    public var bufferCapacity = 8192
    public var recentFraction = 0.5
    /// Training steps (each model) per `batchSize` arriving samples.
    public var replayRatio = 8.0
    /// Steps per `batchSize` arriving samples until the autoencoder has taken `warmupSteps` (only the
    /// warm-up's steps are earned at this rate; `replayRatio` after); 0: `replayRatio` throughout.
    /// Above `replayRatio` a stream is scored sooner: 64 takes the 30 steps as soon as the buffer
    /// holds 64 samples, and a sensor vector is scored from its 150th sample instead of its 340th.
    /// Not a default: it cost NAB's short segments and the multivariate corpora event F1
    /// (docs/anomaly-experiments.md).
    public var warmupReplayRatio = 0.0
    /// A windowed stream's rows start once the finest scale's window is full (`window × min(scales)`
    /// values: 16), the coarser scales reading the oldest sample for what came before it, instead of
    /// once the coarsest is (128). With `warmupReplayRatio` 64 a univariate stream is scored from its 150th value
    /// instead of its 467th. Not a default, for the same reason.
    public var windowPadding = false
    /// A univariate windowed stream scores its samples while it warms up by the shape novelty of its
    /// last 16 values against the earlier ones (`EarlyScore`): its score ranks from its first row
    /// (its 128th value; with `windowPadding`, from its 83rd) instead of staying 0 until about its
    /// 467th. It never alerts, and a warm stream's scores and alerts are the same with it or without
    /// it. false: scores 0 while warming up.
    public var earlyScore = true
    /// On a stream of several features (at most `discordChannels`, rows scored alone or in a window),
    /// the period check on each channel (`ChannelPeriodSignal`, enabled with `period` among the
    /// signals): each channel's last `univariateWindow` values against those one of its own periods
    /// earlier. Opt-in: on the long multivariate corpora it ranks better (AUC-PR of the published
    /// score +0.03 to +0.06, about the same on short ones) but its event F1 wins some families and
    /// loses others.
    public var channelPeriod = false
    /// Its alert strength is measured over the larger of a channel's recent peak and this, in
    /// standard units (the largest of several channels' surprises runs high, as the discord's does).
    public var channelPeriodMargin: Float = 4
    /// Steps owed but not yet taken are capped here; what the trainer cannot catch up is skipped
    /// (and counted), so a burst never leaves the models hours behind.
    public var maximumPendingSteps = 64.0
    public var batchSize = 64
    /// Publish each scored sample's representation (the MoCo encoder's output) on `rep/<stream>/`.
    public var publishRepresentations = false
    /// Labelled samples the stream keeps for its few-label head (`LabelBatch`, the oldest dropped
    /// first). 0: the stream takes no labels. Charged in `memoryEstimate` with the head's encoder.
    public var maxLabels = 0
    /// A stream with no steps owed (it has gone quiet) keeps training from its buffer, at most this
    /// many steps a second, until it has made `idlePasses` passes over the buffer since its last
    /// batch (a pass: the samples buffered, at most `buffer_capacity`, over batch_size). 0: off.
    public var idleStepsPerSecond = 0.0
    public var idlePasses = 0.0
    /// No training until the buffer holds this many samples.
    public var minimumBuffered = 64
    /// No alerts (and scores of 0) until this many samples have been accepted and the autoencoder took
    /// this many steps (and its errors have calibrated the score: `ReconstructionSignal`). Chosen by
    /// leaving one family out on short streams as well as long (docs/anomaly-experiments.md); the
    /// range rule waits longer (`rangeWarmup`).
    public var warmupSamples = 150
    public var warmupSteps = 30
    /// Calibrated score at or above which a sample alerts.
    public var threshold: Float = 0.9
    /// Errors the calibrator's running statistics cover.
    public var calibrationHorizon = 5000
    /// Samples over which a score is measured against the recent peak surprise as well as the usual
    /// errors: an anomaly alerts when it starts, not again for every sample while it lasts (0: off).
    public var alertHoldOff = 400
    /// A sample whose surprise (z of its log-error) reaches this is scored but not learned from, so an
    /// anomaly does not teach the model to accept itself; after `alertHoldOff` such samples in a row
    /// the stream has changed and they are learned again. 0: learn from everything.
    public var learnSurpriseLimit: Float = 0
    /// A value further beyond the range the stream has shown so far (any feature; for a window, the
    /// newest value) than this fraction of that range scores 1 at once: a jump to a level never seen
    /// is an anomaly however well the model reconstructs it (a smooth window at a new level is as
    /// easy as any). A sample is checked against the range as it stood when last refreshed (every
    /// `rangeRefresh` samples, and after each sample beyond it), so a drift that moves past the margin
    /// within that many samples alerts, while a slower one only widens the range. Applies once the
    /// range has seen `rangeWarmup` samples. Negative: off.
    public var rangeMargin: Float = 0.05
    /// Samples between refreshes of the range the rule compares with (1: the range up to the sample
    /// before, so only a jump past the margin alerts).
    public var rangeRefresh = 100
    /// On a stream of more than one feature: excursions of one feature beyond the range within about
    /// `calibrationHorizon` samples after which its further excursions are its habit, not certain
    /// anomalies (left to the other signals; another feature's excursion is still certain). A
    /// random walk leaves its range again and again as it wanders, and sooner or later another
    /// signal's surprise corroborates one of those excursions by chance; a spike or a new level on
    /// a feature that rarely leaves its range is still certain. 0: off. A one-feature stream's
    /// excursions are always certain (on NAB's streams a habit of 3 cost 3 points).
    public var rangeHabit = 3.0
    /// Samples beyond the margin in a row before the range takes them in (1: at once). With 2, a lone
    /// outlier alerts without widening the range, so later, smaller spikes still alert; it costs
    /// NAB's bursty streams (every repeated spike alerts), so it is opt-in.
    public var rangeConfirm = 1
    /// A value beyond its feature's range by this many times the range's width (once the range has
    /// seen `rangeWarmup` samples; a younger one, once it has seen 50, by this × (rangeWarmup / n)²)
    /// is a glitch: it alerts and is replaced by the feature's last value in everything the stream
    /// learns (`GlitchGuard`), up to three in a row; a fourth in a row is a new level and goes through. 0: off.
    /// Sample streams only.
    public var glitchRanges: Float = 30
    /// Samples the range must have seen before the range rule alerts (the other signals start after
    /// `warmupSamples`): after n samples of a steady stream, a new one sets a new extreme with
    /// probability about 2/(n + 1), so a young range is crossed by chance far more often than an
    /// old one. Until the range has seen four times as many, it compares with the range up to the
    /// sample before.
    public var rangeWarmup = 500
    /// Standard deviations of its feature (over about `calibrationHorizon` normal samples) a sample
    /// must also lie beyond the range to be certain (0: off): a series that wanders sets new extremes
    /// by ordinary steps, a spike or a new level clears them by more.
    public var rangeDeviations: Float = 0.5
    /// A feature that has never been negative (a count, a volume) is also beyond its range when it
    /// falls below its lowest value by this many standard deviations of its log values below their
    /// mean (0: off): its bursts widen the range and the spread, so on their scale a fall to nearly
    /// nothing (an outage) stays inside the margin.
    public var rangeDrop: Float = 1
    /// A feature whose values have all been whole and never negative (a count) is beyond its range
    /// upwards without being certain when the tail of its log values makes such a value at least
    /// this common a sample (0: off): a count's heavy-tailed bursts set new records as they come.
    /// With the surge signal only (alone it lets a surge's first values through).
    public var rangeTail: Double = 1e-8
    /// With `rangeTail`: a count's tail judges from its first value over its start (not its second),
    /// and a count's value above its range before its tail is placed (about 512 normal samples) is
    /// judged by a provisional tail (its start from the log values so far, its highest early values
    /// over it) instead of being certain: a young range has seen few of the count's bursts.
    public var rangeTailYoung = true
    /// On a stream of more than one feature, a value beyond the range is certain only if another
    /// signal's surprise at that sample reaches this (standard units; 0: off); if not, the sample is
    /// an ordinary one (the range takes it in, and the features' spread learns from it unless
    /// another signal finds it anomalous). One of many features sets a new extreme by chance far
    /// more often than a single one does; a value the model does not expect (a spike, a new level)
    /// also surprises the reconstruction or the discord, a record the series' ordinary shape sets
    /// (a taller bell, a random walk) does not.
    public var rangeCorroboration: Float = 2
    /// An alert strength stands only when it is higher than every strength of the last `repeatWindow`
    /// samples; otherwise it is capped at 0.5 (just under `threshold` if that is 0.5 or lower) and
    /// does not alert; the published score is not capped. An incident is reported
    /// once as it arrives, not again on each later sample whose window it still fills (its error can
    /// rise for a window's length as it moves through). 0: off.
    public var repeatWindow = 32
    /// A sample whose largest surprise reaches this (standard units) alerts even when its strength
    /// does not, if no sample of the last `alertHoldOff` reached it and none alerted: an incident
    /// that builds up slowly, whose own rise holds its strength down, still alerts once. 0: off.
    public var alertEvidence: Float = 6
    /// A windowed stream's period: detected from its first 600 values (`auto`; only a period longer
    /// than the model's input, `historyLength`, is used, or, once 1,500 values have come, a longer
    /// cycle built on a shorter one that repeats better), given in values, or `off`. With one, its
    /// last `window` values are also compared with those one period earlier (see `PeriodCheck`) and
    /// the larger of the two scores counts.
    public var period = PeriodSetting.auto
    /// The discord signal (`MultiscaleDiscord`): each channel's last values, at each of
    /// `discordWindows` (ascending; their means removed) and of `discordLevelWindows` (their means
    /// kept: a new level is as novel as a new shape), against the nearest earlier window within
    /// `discordHistory` values; a stream of more than `discordChannels` channels goes without it
    /// (it costs O(history) per channel, window and sample).
    public var discordWindows = [32]
    public var discordLevelWindows = [64]
    public var discordHistory = 1024
    public var discordChannels = 8
    /// A stream of at most this many features (and at most `discordChannels`) also gets, on each
    /// channel that repeats, a centred discord window one period long (`PeriodWindows`; the period
    /// as `period` says: found per channel, fixed, or none). 0: none.
    public var discordPeriodChannels = 8
    /// On a stream of several features, a channel's discord alerts only once the channel is seen to
    /// repeat (`RepeatingChannels`); until then, and on a channel that never does, its surprise
    /// still scores and corroborates.
    public var discordRepeatingOnly = true
    /// A channel that repeats strongly (`RepeatingChannels.strong`: a cycle, not shapes at random
    /// intervals; a univariate stream's one channel too) measures its discord's alert strength over
    /// its peak before the newest this many samples, so a discord that builds up over them (a
    /// trend, a pattern sliding into the window) stands against what came before it. 0: off; from
    /// `alertHoldOff` on, no peak at all.
    public var discordPeakLag = 8
    /// On a one-feature count (values whole, never negative), the discord reads only the window of
    /// the count's own period (`discordPeriodChannels`; none when it has none): the fixed windows
    /// compare where bursts fell, which is chance. Chosen on development count corpora, verified held
    /// back (docs/anomaly-experiments.md).
    public var discordCountPeriodOnly = true
    /// A discord reading that would alert (`threshold`, `alert_evidence`) is held back (no alert
    /// strength, its surprise just under `alert_evidence`) when less than this share of its distance is left once each value may
    /// match its nearest twin's value one sample earlier or later: a shift of timing (a square
    /// wave's edge a sample off), not a change of shape (`ShiftVeto`). 0: off.
    public var discordShiftVeto = 0.25
    /// The correlation signal (`CorrelationSignal`) reads streams of 2 to this many features (it costs
    /// O(features²) a sample: about 1 µs at 8 features, 1.4 µs more than without it at 32).
    public var correlationChannels = 8
    /// A discord alerts only when its surprise passes the larger of its recent peak and this margin
    /// (standard units) by enough for the threshold.
    public var discordMargin: Float = 4
    /// A discord's distance teaches its calibrator at most this many standard units above the mean
    /// (`DiscordSignal.clip`), so a discord that builds up is not learned as it rises. 0: unclipped.
    /// Not a default: it finds more on synthetic univariate streams, but costs NAB's real ones a
    /// little and raised false alarms on held-back multivariate ones (docs/anomaly-experiments.md).
    public var discordClip = 0.0
    /// The noise signal (`NoiseSignal`): each channel's median absolute second difference over this
    /// many values, calibrated per channel, on streams of at most `discordChannels` features. 0: off.
    /// Chosen by leaving one family out (16, 32, 64) and verified held back (docs/anomaly-experiments.md).
    public var noiseWindow = 32
    /// The stuck signal (`StuckSignal`): a channel that repeats its value exactly this many times in
    /// a row, and more than twice its longest run in normal data, is stuck. 0: off.
    public var stuckRun = 10
    /// The surge signal (`SurgeSignal`): a count that stays above its bursts' usual level (its log
    /// values' tail start) for this many values in a row, and longer than ever before, alerts. 0: off.
    public var surgeRun = 5
    /// With the surge signal: a one-feature count's value in its burst band (over its log values'
    /// tail start) explains the model's error on it, which is then not read (`ReconstructionSignal`).
    public var bandExplains = true
    /// The level signal (`LevelSignal`): a count's mean log value over its last period that lies
    /// this many robust deviations (z) from its usual difference with the period before starts an
    /// incident, which alerts through `alertEvidence` (at the larger of the two). 0: the level is not
    /// judged (with `swingBar` 0 as well, there is no signal). On streams
    /// of at most `discordChannels` features. 8 costs NAB no false alarm where 6 cost two
    /// (docs/anomaly-experiments.md).
    public var levelBar: Float = 8
    /// The level signal's second statistic, a count's swing (the spread of its log values under a
    /// running median) over its last period, starts an incident this many robust deviations from the
    /// period before's (at the larger of it and `alertEvidence`). 0: off. Every leave-one-family-out
    /// fold of the count corpora chose 6, and it cost NAB nothing (docs/anomaly-experiments.md).
    public var swingBar: Float = 6
    /// What a sample stream's values become before anything reads them (`InputTransform`): `log`
    /// for counts and volumes, whose bursts multiply a rate. Not the default: on the NAB streams
    /// (CPU, latency, temperature) it loses more than it gains (docs/anomaly-experiments.md). A log
    /// stream's rows are its own mixes of templates: it takes no transform.
    public var transform = InputTransform.none
    /// A log stream: its samples are lines (`LineBatch`), mined into templates (`LogFront`); its
    /// models learn the mix of templates, and the signals `template`, `parameter`, `burst` and
    /// `silence` read each line. A stream also becomes one when its first message carries lines.
    public var log = false
    /// Templates a log stream keeps (the least recently matched is evicted beyond this), and the
    /// share of equal tokens that makes a line join a template.
    public var logTemplates = 1000
    public var logSimilarity = 0.8
    /// The daemon's `max_line_bytes`, which a log stream's lines are cut to (set by
    /// `DaemonConfiguration.settings(for:)`): what a template can hold, for `memoryEstimate`.
    public var lineBytes = 4096
    /// A log stream's warm-up, in place of `warmupSamples` and `warmupSteps` (its defaults were
    /// chosen on log corpora with these; the shorter warm-up of sample streams was not measured there).
    public var logWarmupSamples = 500
    public var logWarmupSteps = 60
    /// A log stream's `alertEvidence` (the log corpora's defaults were chosen without one).
    public var logAlertEvidence: Float = 0
    /// Lines whose mix of templates a log stream's models see in each row.
    public var logMixWindow = 64
    /// Lines the log signals' running rates, shares and moments cover.
    public var logHorizon = 2000
    /// How far (standard units) a new template's and a burst's surprise must pass before it alerts
    /// (a new template: alert strength Φ(z − margin); a burst: once, as it passes).
    public var templateMargin: Float = 2.0
    public var burstMargin: Float = 4
    /// How far beyond the range its template's parameter has shown a number must lie to alert, on
    /// the scale ln(1 + |x|) (2.3: ten times the largest seen).
    public var parameterMargin: Float = 2.3
    /// Lines over which a burst is counted, and how many times its expected count it must reach.
    public var burstWindow = 100
    public var burstRatio = 5.0
    /// A regular template is overdue after this many of its usual gaps.
    public var silenceFactor = 5.0
    /// The signals of the stream's detection chain (`DetectionChain.knownSignals`), run in the chain's
    /// order whatever the order here. Without `range` the range is still kept (the period check scales
    /// by it) but never scores; without `reconstruction` the models still train but their error does
    /// not score; without `period` there is no period check.
    public var signals = DetectionChain.knownSignals
    public var normaliserHorizon = 10_000
    public var autoencoderHidden = [64, 16, 64]
    public var learningRate: Float = 3e-3
    public var gradientClipNorm: Float = 5
    public var mocoEncoder = [128, 64]
    public var mocoHead = [64, 32]
    public var mocoQueue = 4096
    public var mocoTemperature: Float = 0.2
    public var mocoMomentum: Float = 0.99
    /// Weight of MoCo's denoising reconstruction term (0: plain InfoNCE). With `mocoBatchNorm`, the
    /// setting chosen by leaving one probe set out (docs/representation.md).
    public var mocoReconstruction: Float = 30
    /// Batch normalisation in MoCo's encoder and head (`MoCoConfiguration.batchNorm`).
    public var mocoBatchNorm = true
    /// i-Mix's largest share of another sample in a query view (`MoCoConfiguration.mix`; 0: off, the
    /// default: it won development sets and no held-back one, docs/representation.md).
    public var mocoMix: Float = 0
    /// With `mocoBatchNorm`, the groups a training batch's statistics are taken in, the key batch
    /// regrouped by a random permutation (shuffle BN; 1: the whole batch, as before). Measured in
    /// docs/representation.md; not a default.
    public var mocoBatchNormGroups = 1
    public var jitter: Float = 0.05
    public var scale: Float = 0
    public var mask: Float = 0.1
    /// A sample stream's samples are series: this many channels of `dim / series_channels` steps
    /// each, one channel after another (a window of a stream is one without saying). 0: a sample
    /// is a vector of features with no order, augmented value by value.
    public var seriesChannels = 0
    /// Augmentations along time for series and windows (`AugmentationConfiguration`):
    /// crop-and-resize to at least `crop` of the length, time warp, each channel's scale and
    /// offset, a masked span.
    public var crop: Float = 0.5
    public var timeWarp: Float = 0
    public var channelScale: Float = 0
    public var channelOffset: Float = 0
    public var spanMask: Float = 0
    public var seed: UInt64 = 0

    public init() {}

    /// These settings for a stream whose samples have `dim` features (a dim-1 stream gets the
    /// univariate window unless it has a window already).
    public func resolved(dim: Int) -> StreamConfiguration {
        var s = self
        s.dim = dim
        if log {
            // A row is the mix of templates, scored alone; a log stream warms up on its own counts.
            s.dim = LogFront.dimension
            s.window = 0
            s.warmupSamples = logWarmupSamples
            s.warmupSteps = logWarmupSteps
            s.transform = .none
            s.alertEvidence = logAlertEvidence
            return s
        }
        if dim == 1 && s.window == 0 { s.window = univariateWindow }
        if dim > 1 && s.window == 0 { s.window = multivariateWindow }
        return s
    }

    /// Width of the models' input: the window times its scales times the channels, or the sample's dim.
    public var inputDimension: Int { window > 0 ? window * windowScales.count * max(dim, 1) : dim }

    /// Values a windowed stream keeps to build its input: the window at its coarsest scale.
    public var historyLength: Int { window * (windowScales.max() ?? 1) }

    /// A new stream's alert policy.
    public var alertPolicy: AlertPolicy {
        AlertPolicy(threshold: threshold, repeatWindow: repeatWindow, evidence: alertEvidence, quiet: alertHoldOff)
    }

    public func autoencoderConfiguration() -> AutoencoderConfiguration {
        var c = AutoencoderConfiguration(inputDimension: inputDimension)
        c.hiddenWidths = autoencoderHidden
        c.batchSize = batchSize
        c.optimiser = AdamConfiguration(learningRate: learningRate, gradientClipNorm: gradientClipNorm)
        c.normalise = true
        c.normaliserHorizon = normaliserHorizon
        c.seed = seed
        return c
    }

    public func mocoConfiguration() -> MoCoConfiguration {
        var c = MoCoConfiguration(inputDimension: inputDimension)
        c.encoderWidths = mocoEncoder
        c.headWidths = mocoHead
        c.queueSize = mocoQueue
        c.temperature = mocoTemperature
        c.momentum = mocoMomentum
        c.reconstruction = mocoReconstruction
        c.batchNorm = mocoBatchNorm
        c.mix = mocoMix
        c.batchSize = batchSize
        c.optimiser = AdamConfiguration(learningRate: learningRate, gradientClipNorm: gradientClipNorm)
        c.augmentation = AugmentationConfiguration(
            jitter: jitter, scale: scale, maskProbability: mask, cropMinimumFraction: crop > 0 ? crop : nil,
            // A window's row is a block of `window` positions per channel and scale.
            channels: window > 0 ? inputDimension / window : seriesChannels,
            timeWarp: timeWarp, channelScale: channelScale, channelOffset: channelOffset, spanMask: spanMask)
        c.normalise = true
        c.normaliserHorizon = normaliserHorizon
        c.seed = seed &+ 1
        return c
    }

    /// Each value larger than the one before (window scales, discord windows).
    static func ascending(_ values: [Int]) -> Bool { zip(values, values.dropFirst()).allSatisfy { $0 < $1 } }

    /// Why this configuration cannot be used, if it cannot.
    public func validate(name: String) throws {
        func fail(_ why: String) throws { throw ConfigurationError.invalid("stream \(name): \(why)") }
        if dim < 0 || window < 0 || univariateWindow < 0 || multivariateWindow < 0 {
            try fail("dim and the windows must not be negative")
        }
        if window == 1 || univariateWindow == 1 || multivariateWindow == 1 { try fail("a window needs at least 2 values") }
        if maxLabels < 0 || maxLabels > 65_536 { try fail("max_labels must be in 0...65536") }
        // Each value costs window × the sum of the scales to build its input (a product that must not overflow).
        let input = (windowScales.last ?? 0).multipliedReportingOverflow(by: max(window, univariateWindow, multivariateWindow))
        if windowScales.isEmpty || windowScales.first! < 1 || !Self.ascending(windowScales) || input.overflow || input.partialValue > 1 << 14 {
            try fail("window_scales must be increasing, from 1 or more, and keep window × the largest at most 16384")
        }
        // Upper bounds keep every size the memory estimate multiplies out far from overflow.
        if bufferCapacity < 2 || bufferCapacity > 1 << 26 { try fail("buffer_capacity must be in 2...67108864") }
        if !(recentFraction > 0 && recentFraction < 1) { try fail("recent_fraction must be in (0, 1)") }
        if batchSize < 1 || batchSize > 1 << 16 || mocoQueue < batchSize || mocoQueue % batchSize != 0 || mocoQueue > 1 << 24 {
            try fail("batch_size must be in 1...65536 and moco_queue a multiple of it, at most 16777216")
        }
        if !(replayRatio >= 0 && replayRatio <= 1e6) || !(maximumPendingSteps >= 1 && maximumPendingSteps <= 1e9) {
            try fail("replay_ratio must be in [0, 1e6] and max_pending_steps in [1, 1e9]")
        }
        if !(warmupReplayRatio >= 0 && warmupReplayRatio <= 1e6) { try fail("warmup_replay_ratio must be in [0, 1e6] (0: as replay_ratio)") }
        if !(channelPeriodMargin >= 0 && channelPeriodMargin <= 100) { try fail("channel_period_margin must be in 0...100") }
        if warmupSamples < 0 || warmupSteps < 0 || rangeWarmup < 0 || logWarmupSamples < 0 || logWarmupSteps < 0 {
            try fail("warmup_samples, warmup_steps, range_warmup, log_warmup_samples and log_warmup_steps must not be negative")
        }
        if minimumBuffered < 1 || minimumBuffered > bufferCapacity {
            try fail("min_buffered must be in 1...buffer_capacity (a stream that never holds it never trains)")
        }
        if calibrationHorizon < 1 || normaliserHorizon < 1 { try fail("horizons must be at least 1") }
        if !(threshold > 0 && threshold <= 1) { try fail("threshold must be in (0, 1]") }
        if !rangeMargin.isFinite { try fail("range_margin must be a number (negative: off)") }
        if rangeRefresh < 1 { try fail("range_refresh must be at least 1") }
        if !(rangeHabit >= 0 && rangeHabit <= 1e6) { try fail("range_habit must be in 0...1e6 (0: off)") }
        if rangeConfirm < 1 || rangeConfirm > 1000 { try fail("range_confirm must be in 1...1000") }
        if !(glitchRanges == 0 || (glitchRanges >= 1 && glitchRanges <= 1e6)) { try fail("glitch_ranges must be 0 (off) or in 1...1000000") }
        if !(rangeDeviations >= 0 && rangeDeviations <= 1000) { try fail("range_deviations must be in 0...1000 (0: off)") }
        if !(rangeDrop >= 0 && rangeDrop <= 1000) { try fail("range_drop must be in 0...1000 (0: off)") }
        if !(rangeTail >= 0 && rangeTail <= 0.1) { try fail("range_tail must be in 0...0.1 (0: off)") }
        if surgeRun != 0 && !(surgeRun >= 2 && surgeRun <= 1 << 20) { try fail("surge_run must be 0 (off) or in 2...1048576") }
        if !(rangeCorroboration >= 0 && rangeCorroboration <= 40) { try fail("range_corroboration must be in 0...40 (0: off)") }
        if repeatWindow < 0 || repeatWindow > 1 << 16 { try fail("repeat_window must be in 0...65536") }
        if alertHoldOff < 0 || alertHoldOff > 1 << 16 { try fail("alert_hold_off must be in 0...65536") }
        for (key, z) in [("alert_evidence", alertEvidence), ("log_alert_evidence", logAlertEvidence)] where !(z == 0 || (z >= 1 && z <= 40)) {
            try fail("\(key) must be 0 (off) or in 1...40")
        }
        if let unknown = signals.first(where: { !DetectionChain.knownSignals.contains($0) }) {
            try fail("signals: unknown signal \"\(unknown)\" (known: \(DetectionChain.knownSignals.joined(separator: ", ")))")
        }
        // One to four ascending windows in 2...4096, none longer than the history.
        func fits(_ windows: [Int]) -> Bool {
            (1...4).contains(windows.count) && windows.first! >= 2 && windows.last! <= 4096 && Self.ascending(windows)
                && windows.last! <= discordHistory
        }
        if !fits(discordWindows) || discordHistory > 1 << 16 {
            try fail("discord_window must be one to four ascending windows in 2...4096, and discord_history in the longest...65536")
        }
        if !discordLevelWindows.isEmpty && !fits(discordLevelWindows) {
            try fail("discord_level_window must be 0 (none) or one to four ascending windows in 2...4096, none longer than discord_history")
        }
        if !(discordMargin >= 0 && discordMargin <= 100) { try fail("discord_margin must be in 0...100") }
        if discordPeakLag < 0 || discordPeakLag > 1 << 16 { try fail("discord_peak_lag must be in 0...65536 (from alert_hold_off on: no peak)") }
        if stuckRun != 0 && !(stuckRun >= 2 && stuckRun <= 1 << 20) { try fail("stuck_run must be 0 (off) or in 2...1048576") }
        if !(levelBar == 0 || (levelBar >= 1 && levelBar <= 40)) { try fail("level_bar must be 0 (off) or in 1...40") }
        if !(swingBar == 0 || (swingBar >= 1 && swingBar <= 40)) { try fail("swing_bar must be 0 (off) or in 1...40") }
        if noiseWindow != 0 && !(noiseWindow >= 4 && noiseWindow <= 4096) { try fail("noise_window must be 0 (off) or in 4...4096") }
        if !(discordClip == 0 || (discordClip >= 1 && discordClip <= 100)) { try fail("discord_clip must be 0 (off) or in 1...100") }
        if discordChannels < 0 || discordChannels > 1 << 14 { try fail("discord_channels must be in 0...16384") }
        if !(discordShiftVeto >= 0 && discordShiftVeto <= 1) { try fail("discord_shift_veto must be in 0...1") }
        if discordPeriodChannels < 0 || discordPeriodChannels > 1 << 14 { try fail("discord_period_channels must be in 0...16384") }
        if correlationChannels < 0 || correlationChannels > CorrelationSignal.maxChannels {
            try fail("correlation_channels must be in 0...\(CorrelationSignal.maxChannels)")
        }
        if Set(signals).count != signals.count { try fail("signals: a signal is named twice") }
        if signals.isEmpty { try fail("signals: name at least one (a stream without signals never scores)") }
        if window > 0 && dim > 1 && inputDimension > 1 << 14 {
            try fail("a window of \(window) rows at \(windowScales.count) scales over \(dim) channels is \(inputDimension) inputs, more than 16384")
        }
        if !(mocoTemperature > 0) || !(0...1).contains(mocoMomentum) { try fail("moco_temperature > 0, moco_momentum in [0, 1]") }
        if !(0...1e6).contains(mocoReconstruction) { try fail("moco_reconstruction must be in 0...1e6") }
        if !(0...0.5).contains(mocoMix) { try fail("moco_mix must be in 0...0.5") }
        if !batchNormGroupsSplit(mocoBatchNormGroups, batch: batchSize) {
            try fail("moco_batch_norm_groups must be in 1...16 and split batch_size (\(batchSize)) into groups of two rows or more")
        }
        let layers = [autoencoderHidden, mocoEncoder, mocoHead]
        if layers.contains(where: { $0.isEmpty || $0.count > 64 }) || layers.joined().contains(where: { $0 < 1 || $0 > 1 << 16 }) {
            try fail("layer widths must be in 1...65536, one to 64 layers each")
        }
        if !(learningRate > 0 && learningRate <= 1) { try fail("learning_rate must be in (0, 1]") }
        if !(gradientClipNorm > 0) { try fail("gradient_clip_norm must be positive (0 would stop every model learning)") }
        if logTemplates < 1 || logTemplates > 100_000 { try fail("log_templates must be in 1...100000") }
        if !(logSimilarity > 0 && logSimilarity <= 1) { try fail("log_similarity must be in (0, 1]") }
        if logMixWindow < 1 || logMixWindow > 1 << 16 || burstWindow < 1 || burstWindow > 1 << 16 {
            try fail("log_mix_window and burst_window must be in 1...65536")
        }
        if logHorizon < 1 { try fail("log_horizon must be at least 1") }
        if ![templateMargin, parameterMargin, burstMargin].allSatisfy({ $0 >= 0 && $0 <= 100 }) {
            try fail("template_margin, parameter_margin and burst_margin must be in 0...100")
        }
        if !(burstRatio >= 1 && burstRatio <= 1e6) { try fail("burst_ratio must be in 1...1e6") }
        if !(silenceFactor >= 1 && silenceFactor <= 1e6) { try fail("silence_factor must be in 1...1e6") }
        if !(idleStepsPerSecond >= 0 && idleStepsPerSecond <= 1e4) || !(idlePasses >= 0 && idlePasses <= 1e4) {
            try fail("idle_steps_per_second and idle_passes must be in 0...10000")
        }
        if seriesChannels < 0 || (seriesChannels > 0 && dim > 0 && window == 0 && (dim % seriesChannels != 0 || dim / seriesChannels < 4)) {
            try fail("series_channels must divide dim into channels of at least 4 steps (0: the samples are not series)")
        }
        if ![crop, spanMask, mask].allSatisfy({ $0 >= 0 && $0 <= 1 })
            || ![jitter, scale, timeWarp, channelScale, channelOffset].allSatisfy({ $0 >= 0 && $0 <= 10 })
        {
            try fail("crop, mask and span_mask must be in 0...1; jitter, scale, time_warp, channel_scale and channel_offset in 0...10")
        }
        if log && dim != 0 && dim != LogFront.dimension { try fail("a log stream's dim is \(LogFront.dimension) (its rows are the mix of templates)") }
    }
}

/// Everything `eddy serve` needs; the embedded defaults bind 127.0.0.1 and need no file.
public struct DaemonConfiguration: Sendable, Equatable {
    /// PULL socket for samples (producers PUSH here).
    public var ingest = "tcp://127.0.0.1:7700"
    /// PUB socket for scores, alerts, snapshots, heartbeats and errors.
    public var publish = "tcp://127.0.0.1:7701"
    /// REP socket: the latest snapshot of any stream's model, on request.
    public var snapshots = "tcp://127.0.0.1:7702"
    /// CURVE: the daemon's secret key file (`eddy keygen`; mode 0600), and the client public keys it
    /// lets in (a file of keys or a directory of `.pub` files). With them, every socket (PULL, PUB,
    /// REP) takes only clients that prove they hold an allowed key; the traffic is encrypted. Both
    /// empty: plaintext, which only loopback endpoints may use unless `allowPlaintext` says so.
    public var curveSecretKey = ""
    public var curveAllowedClients = ""
    /// Lets endpoints beyond loopback run without CURVE: anyone who reaches them can send samples,
    /// read every topic and take the models. For networks that are trusted or secured otherwise.
    public var allowPlaintext = false
    /// The HTTP endpoint for operators (`HOST:PORT`): `/metrics`, `/healthz`, `/readyz`. Empty: off.
    public var http = "127.0.0.1:7703"
    /// It has no authentication: an address beyond loopback needs this set.
    public var httpAllowRemote = false
    /// A thread that has not come round its loop for this long is stalled: `/healthz` answers 503 and
    /// the systemd watchdog is no longer fed.
    public var healthStallSeconds = 30.0
    /// Checkpoints live here; empty: no checkpoints.
    public var dataDirectory = "eddy-data"
    public var maxStreams = 64
    /// A stream that is not declared and has accepted no sample for this many seconds expires: its
    /// slot and its share of `memoryBudget` are freed and its state is kept in the data directory
    /// (`expired-<name>.stream`, at most `maxStreams` such files) until its name comes back, when it
    /// resumes from there. 0: streams never expire.
    public var streamIdleSeconds = 604_800.0
    /// A batch whose `dim` is larger is rejected (oversized) before any stream is looked up or built.
    public var maxDim = 4096
    /// A batch with a value beyond ±this is rejected (value too large): a finite value can still
    /// poison a stream's statistics and models (a batch of 1e38 makes a variance infinite).
    public var maxAbsValue: Float = 1e15
    /// Bytes all streams together may take, each charged `StreamConfiguration.memoryEstimate` before
    /// it is built; a batch that would create a stream beyond it is rejected (over budget).
    public var memoryBudget = 2 << 30
    /// Stream names: 1 to this many bytes of UTF-8, no '/' and no control characters.
    public var maxStreamNameBytes = 128
    /// A message over either limit is rejected as oversized.
    public var maxMessageBytes = 16 << 20
    public var maxSamplesPerMessage = 65_536
    /// A log line longer than this is cut (at a character boundary) and counted.
    public var maxLineBytes = 4096
    /// A model snapshot is published after this many of its steps, or this many seconds, whichever
    /// comes first (and only if it trained since the last one).
    public var snapshotEverySteps = 1000
    public var snapshotEverySeconds = 30.0
    public var checkpointEverySeconds = 60.0
    public var checkpointsKept = 3
    public var heartbeatSeconds = 1.0
    /// Queue bound between the daemon's threads, in messages (ZeroMQ high-water marks).
    public var highWaterMark = 100_000
    /// Bytes queued for each subscriber that falls behind, at most, before it loses messages: the PUB
    /// socket's high-water mark is this over the largest score message (`Wire.largestScoreMessage`),
    /// which also bounds alerts, errors and heartbeats. A snapshot message is larger (up to its
    /// model's size): a subscriber to `snapshot/` that stops reading holds more by that much for each
    /// queued snapshot.
    public var publishQueueBytes = 128 << 20

    /// The PUB socket's high-water mark (messages per subscriber) that keeps `publishQueueBytes`.
    public var publishHighWaterMark: Int { max(16, publishQueueBytes / Wire.largestScoreMessage) }
    /// Bytes libzmq reads ahead from each producer connection before it stops reading it and TCP
    /// pushes back (the ingest socket's per-connection queue: this over libzmq's 8 KiB reads).
    public var ingestConnectionBytes = 1 << 20
    /// Producer connections the ingest socket holds at once; one more is closed as it opens (counted).
    public var maxIngestConnections = 512
    /// Bytes of messages in progress (read from the wire, not yet whole) across all connections: a
    /// frame that would take more is refused at its header (`OVER_BUDGET`). At least one largest
    /// message (`max_message_bytes` and a stream name).
    public var ingestBufferBytes = 64 << 20
    /// Seconds a producer connection may take to finish its ZMTP handshake before it is closed: a
    /// slot held by a peer that never greets, or never proves its key, is one a producer cannot have.
    public var ingestHandshakeSeconds = 10.0
    /// CURVE handshake steps (a HELLO or an INITIATE, about 0.14 ms of public-key work each on the
    /// ingest thread) taken per second across all producer connections; more wait their turn, in
    /// the order they came. Anyone who reaches the port can send a HELLO: unbounded, a peer opening
    /// connections as fast as it can took ingest's time from every producer. 0: no limit.
    public var ingestHandshakesPerSecond = 500.0
    /// Seconds a message may be in progress on a connection (from the first of its bytes that the
    /// buffer holds to its last) before the connection is closed: a peer that announces a large
    /// frame and then stalls, or trickles it, would otherwise hold its share of
    /// `ingest_buffer_bytes` for ever, and a few such peers all of it.
    public var ingestMessageSeconds = 30.0
    /// With all `max_ingest_connections` taken, a newcomer closes the connection that has gone
    /// longest without a message if it has been that quiet for this many seconds (peers that finish
    /// a handshake and fall silent cannot keep producers out for good); otherwise it is refused.
    public var ingestIdleSeconds = 60.0

    /// Chunks (libzmq reads of up to 8 KiB) queued per connection.
    public var ingestChunksPerConnection: Int { max(1, ingestConnectionBytes / 8192) }
    /// How the trainer thread is scheduled: `idle` (SCHED_IDLE: only CPU time nothing else wants) or
    /// a nice value 0...19.
    public var trainerPriority = TrainerPriority.idle
    /// With `idle`: the share of a CPU the trainer is guaranteed while it owes steps. When another
    /// load starves it below this, it is raised to normal priority until it has had it. 0: off.
    public var trainerMinimumShare = 0.1
    /// Settings of streams created by their first batch.
    public var streamDefaults = StreamConfiguration()
    /// Streams declared up front, by name: created at start with these settings.
    public var streams: [String: StreamConfiguration] = [:]

    public init() {}

    /// The settings a stream of this name gets.
    public func settings(for stream: String) -> StreamConfiguration {
        var s = streams[stream] ?? streamDefaults
        s.lineBytes = maxLineBytes
        return s
    }

    public func validate() throws {
        if maxStreams < 1 { throw ConfigurationError.invalid("max_streams must be at least 1") }
        if !(trainerMinimumShare >= 0 && trainerMinimumShare <= 1) {
            throw ConfigurationError.invalid("trainer_min_share must be in 0...1")
        }
        if !(streamIdleSeconds >= 0) { throw ConfigurationError.invalid("stream_idle_seconds must not be negative") }
        if curveSecretKey.isEmpty != curveAllowedClients.isEmpty {
            throw ConfigurationError.invalid("curve_secret_key and curve_allowed_clients go together: set both or neither")
        }
        for (key, endpoint) in [("ingest", ingest), ("publish", publish), ("snapshots", snapshots)] {
            if let why = Endpoint.problem(endpoint, key: key) { throw ConfigurationError.invalid(why) }
        }
        if curveSecretKey.isEmpty && !allowPlaintext,
            let open = [ingest, publish, snapshots].first(where: { !Endpoint.isLocal($0) })
        {
            throw ConfigurationError.invalid(
                "\(open) is reachable beyond this machine, and without CURVE anyone who reaches it can send samples, "
                    + "read every topic and take the models: set curve_secret_key and curve_allowed_clients "
                    + "(eddy keygen), or allow_plaintext = true if the network is trusted")
        }

        if !http.isEmpty {
            _ = try AdminServer.parse(http)
            if !httpAllowRemote && !AdminServer.isLoopback(http) {
                throw ConfigurationError.invalid(
                    "http \(http) is reachable beyond this machine and has no authentication: bind it to loopback "
                        + "(and let a proxy or Prometheus on this host reach it), or set http_allow_remote = true")
            }
        }
        if !(healthStallSeconds >= 1 && healthStallSeconds <= 3600) {
            throw ConfigurationError.invalid("health_stall_seconds must be in 1...3600")
        }
        if !(maxAbsValue >= 1 && maxAbsValue <= 1e30) { throw ConfigurationError.invalid("max_abs_value must be in 1...1e30") }
        if maxDim < 1 || maxDim > 1 << 24 { throw ConfigurationError.invalid("max_dim must be in 1...16777216") }
        if memoryBudget < 1 << 20 { throw ConfigurationError.invalid("memory_budget must be at least 1M") }
        // Each stream's settings are valid before any is sized (the estimate multiplies them).
        try streamDefaults.validate(name: "defaults")
        for (name, s) in streams {
            try s.validate(name: name)
            if let why = StreamName.problem(name, maxBytes: maxStreamNameBytes) {
                throw ConfigurationError.invalid("stream \"\(name)\": \(why)")
            }
        }
        let declared = streams.filter { $0.value.dim > 0 || $0.value.log }
        if let wide = declared.first(where: { $0.value.dim > maxDim }) {
            throw ConfigurationError.invalid("stream \(wide.key) is declared with dim \(wide.value.dim), more than max_dim \(maxDim)")
        }
        if declared.count > maxStreams {
            throw ConfigurationError.invalid("\(declared.count) streams are declared, more than max_streams \(maxStreams)")
        }
        // As they will be built: the window a multivariate_window gives, its width, within bounds
        // (before anything is sized from them, and as a stream created or restored is checked).
        for (name, s) in declared.sorted(by: { $0.key < $1.key }) {
            try settings(for: name).resolved(dim: s.dim).validate(name: name)
        }
        let declaredBytes = declared.reduce(0) { $0 + settings(for: $1.key).resolved(dim: $1.value.dim).memoryEstimate }
        if declaredBytes > memoryBudget {
            throw ConfigurationError.invalid(
                "the declared streams need \(ByteCount(declaredBytes)), more than memory_budget \(ByteCount(memoryBudget))")
        }
        if maxLineBytes < 16 || maxLineBytes > 1 << 20 { throw ConfigurationError.invalid("max_line_bytes must be in 16...1048576") }
        // One message per key, each starting with the key's name: the file's parser adds the line
        // that set it (from review: three keys named at once, and no line).
        if maxMessageBytes < 64 { throw ConfigurationError.invalid("max_message_bytes must be at least 64") }
        if maxSamplesPerMessage < 1 { throw ConfigurationError.invalid("max_samples_per_message must be at least 1") }
        let day = 86_400.0
        if !(snapshotEverySeconds > 0 && snapshotEverySeconds <= day) {
            throw ConfigurationError.invalid("snapshot_every_seconds must be positive and at most a day (86400)")
        }
        if !(checkpointEverySeconds > 0 && checkpointEverySeconds <= day) {
            throw ConfigurationError.invalid("checkpoint_every_seconds must be positive and at most a day (86400)")
        }
        if !(heartbeatSeconds > 0 && heartbeatSeconds <= 3600) {
            throw ConfigurationError.invalid("heartbeat_seconds must be positive and at most an hour (3600)")
        }
        if snapshotEverySteps < 1 { throw ConfigurationError.invalid("snapshot_every_steps must be at least 1") }
        if checkpointsKept < 1 { throw ConfigurationError.invalid("checkpoints_kept must be at least 1") }
        // A published message's header holds its stream's name: names of up to 256 bytes keep every
        // score, alert, error and heartbeat message within `Wire.largestScoreMessage`.
        if maxStreamNameBytes < 1 || maxStreamNameBytes > 256 {
            throw ConfigurationError.invalid("max_stream_name_bytes must be in 1...256")
        }
        if publishQueueBytes < 1 << 20 || publishQueueBytes > 1 << 40 {
            throw ConfigurationError.invalid("publish_queue_bytes must be in 1M...1T")
        }
        if highWaterMark < 1 || highWaterMark > Int(Int32.max) {
            throw ConfigurationError.invalid("high_water_mark must be in [1, 2^31)")
        }
        if maxMessageBytes > Int(Int32.max) { throw ConfigurationError.invalid("max_message_bytes must be below 2^31") }
        if ingestConnectionBytes < 8192 || ingestConnectionBytes > 1 << 30 {
            throw ConfigurationError.invalid("ingest_connection_bytes must be in 8K...1G")
        }
        if maxIngestConnections < 1 || maxIngestConnections > 1 << 20 {
            throw ConfigurationError.invalid("max_ingest_connections must be in 1...1048576")
        }
        if !(ingestHandshakesPerSecond == 0 || (ingestHandshakesPerSecond >= 1 && ingestHandshakesPerSecond <= 1e6)) {
            throw ConfigurationError.invalid("ingest_handshakes_per_second must be 0 (no limit) or in 1...1000000")
        }
        if !(ingestHandshakeSeconds >= 0.1 && ingestHandshakeSeconds <= 3600) {
            throw ConfigurationError.invalid("ingest_handshake_seconds must be in 0.1...3600")
        }
        if !(ingestMessageSeconds >= 0.1 && ingestMessageSeconds <= 3600) {
            throw ConfigurationError.invalid("ingest_message_seconds must be in 0.1...3600")
        }
        if !(ingestIdleSeconds >= 0.1 && ingestIdleSeconds <= 86_400) {
            throw ConfigurationError.invalid("ingest_idle_seconds must be in 0.1...86400")
        }
        if ingestBufferBytes < maxMessageBytes + maxStreamNameBytes || ingestBufferBytes > 1 << 40 {
            throw ConfigurationError.invalid(
                "ingest_buffer_bytes \(ByteCount(ingestBufferBytes)) must hold one largest message (max_message_bytes "
                    + "\(ByteCount(maxMessageBytes)) and a stream name) and be at most 1T")
        }
    }
}

public enum ConfigurationError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    case syntax(line: Int, String)

    public var description: String {
        switch self {
        case .invalid(let why): "invalid configuration: \(why)"
        case .syntax(let line, let why): "configuration line \(line): \(why)"
        }
    }
}

/// Rules for stream names, shared by configuration and ingest.
public enum StreamName {
    /// Why `name` cannot name a stream, or nil if it can.
    public static func problem(_ name: String, maxBytes: Int) -> String? {
        let bytes = name.utf8.count
        if bytes == 0 { return "the stream name is empty" }
        if bytes > maxBytes { return "the stream name is \(bytes) bytes, over the limit of \(maxBytes)" }
        if name.utf8.contains(UInt8(ascii: "/")) { return "the stream name contains '/'" }
        // Printable ASCII holds no control or format character: most names stop here.
        if name.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return nil }
        if let c = name.unicodeScalars.first(where: isControl) {
            return "the stream name contains the control character U+\(String(c.value, radix: 16, uppercase: true).leftPadded(4))"
        }
        return nil
    }

    /// The name in frame 0's bytes if they are valid UTF-8 (two different invalid names must not both
    /// become the stream "\u{FFFD}"), with why it cannot name a stream, if it cannot.
    public static func decode(_ bytes: [UInt8], maxBytes: Int) -> (name: String?, problem: String?) {
        guard let name = String(validating: bytes, as: UTF8.self) else { return (nil, "the stream name is not valid UTF-8") }
        let why = problem(name, maxBytes: maxBytes)
        return (why == nil ? name : nil, why)
    }

    /// Control characters of every plane: C0, DEL and C1 (Cc), format characters such as the bidi
    /// overrides U+202E and zero-width joiners (Cf), and the line and paragraph separators.
    static func isControl(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}

/// The trainer thread's scheduling: SCHED_IDLE, or SCHED_OTHER at a nice value.
public enum TrainerPriority: Sendable, Equatable, CustomStringConvertible {
    case idle
    case nice(Int)

    /// `idle` or a nice value 0...19, as in a configuration file.
    public init?(_ text: String) {
        if text == "idle" {
            self = .idle
        } else if let n = Int(text), (0...19).contains(n) {
            self = .nice(n)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .idle: "idle"
        case .nice(let n): String(n)
        }
    }
}

extension StreamConfiguration {
    /// How the discord signal of a stream of `channels` features finds its channels' period
    /// windows (nil: it has none).
    public func discordPeriodWindows(channels: Int) -> PeriodSetting? {
        channels <= discordPeriodChannels && channels <= discordChannels && period != .off ? period : nil
    }

    /// When the discord holds back a reading that differs from its twin mostly by timing (nil: never).
    public func shiftVeto() -> ShiftVeto? {
        guard discordShiftVeto > 0 else { return nil }
        return ShiftVeto(share: discordShiftVeto, strength: threshold, surprise: alertEvidence > 0 ? alertEvidence.nextDown : .infinity)
    }

    /// The surprise a quiet channel's discord is held to on a stream of `channels` features, just
    /// under `alert_evidence` (nil: its channels are never quiet).
    public func discordQuietSurprise(channels: Int) -> Float? {
        guard discordRepeatingOnly && channels > 1 else { return nil }
        return alertEvidence > 0 ? alertEvidence.nextDown : .infinity
    }

    /// The bytes a stream of these (resolved) settings allocates, worked out before it is built so a
    /// stream that does not fit the daemon's `memory_budget` is refused rather than built: the replay
    /// buffer, the trainer's and the scorer's autoencoders (weights, gradients, Adam's two moments,
    /// activations for a batch, and for the scorer up to 256 rows), the weights the trainer hands the
    /// scorer, MoCo's query and key encoders with their optimiser and queue, the ingest side's row
    /// buffers, the window history, the discord signal's rings and the last good models kept to roll
    /// back to. A test holds it against what
    /// the allocator reports for streams of several shapes.
    public var memoryEstimate: Int {
        let d = inputDimension, b = batchSize
        func parameters(_ widths: [Int]) -> Int { zip(widths, widths.dropFirst()).reduce(0) { $0 + $1.0 * $1.1 + $1.1 } }
        let ae = [d] + autoencoderHidden + [d]
        let moco = [d] + mocoEncoder + mocoHead
        let aeParameters = parameters(ae), mocoParameters = parameters(moco)
        let aeUnits = ae.reduce(0, +), mocoUnits = moco.reduce(0, +)
        var floats = bufferCapacity * d + 2 * bufferCapacity  // rows and their ids
        floats += 2 * 4 * aeParameters + aeParameters  // trainer and scorer, and the exchange
        floats += 3 * b * aeUnits + 3 * 256 * aeUnits  // activations and their gradients
        floats += 5 * mocoParameters + mocoQueue * (mocoHead.last ?? 0) + 2 * mocoQueue
        floats += 2 * 3 * b * mocoUnits + b * (mocoQueue + 1)  // two views, and the logits
        floats += 256 * d + 2 * d + b * d + 42 * d  // rows, feature errors, the batch, six normalisers (3 floats, 2 doubles)
        // The last good models, serialized (what a stream rolls back to): the autoencoder's weights
        // and Adam moments, MoCo's two encoders, moments and queue.
        floats += 3 * aeParameters + 4 * mocoParameters + mocoQueue * (mocoHead.last ?? 0) + 2 * mocoQueue + 4 * d
        // With batch normalisation, per normalised unit of a MoCo: γ, β and the running mean and
        // variance in both encoders and the gradients, Adam's moments of γ and β, x̂ in the two
        // training workspaces and the inference one, and two per-unit rows in each (for each of up
        // to 16 groups in the training ones with `moco_batch_norm_groups`).
        let normalisedUnits = mocoBatchNorm ? (mocoEncoder + mocoHead.dropLast()).reduce(0, +) : 0
        let normalisation = normalisedUnits * (4 * 3 + 2 * 2 + 2 * b + 256 + 3 * 2 + (mocoBatchNormGroups > 1 ? 2 * 2 * 16 : 0))
        // The trainer's, and its last good models (both encoders' four values, two moments).
        floats += normalisation + normalisedUnits * (4 * 2 + 2 * 2)
        if mocoMix > 0 { floats += b * d + b * b }  // i-Mix's blended samples and the batch's logits
        if mocoBatchNormGroups > 1 { floats += b * d + b * (mocoHead.last ?? 0) }  // the shuffled key batch and its outputs
        if mocoReconstruction > 0 {
            // MoCo's decoder: weights, gradients and Adam's moments, its activations and their
            // gradients for a batch, the gradient it sends the representation, and in the last good
            // models its weights and moments.
            let decoder = [mocoEncoder.last ?? 0] + mocoConfiguration().decoderWidths
            let decoderParameters = parameters(decoder)
            floats += 4 * decoderParameters + 2 * b * decoder.dropFirst().reduce(0, +) + b * (mocoEncoder.last ?? 0)
            floats += 3 * decoderParameters
        }
        // Smaller buffers and the allocator's bookkeeping, as measured (about 0.7 MB and 160 bytes
        // per input).
        var bytes = 4 * floats + 768 << 10 + 256 * d
        let channels = max(dim, 1)
        if window > 0 { bytes += 4 * window * (windowScales.max() ?? 1) * channels }
        if transform != .none { bytes += 4 * 256 * channels }  // a batch's values under the transform
        if signals.contains(DiscordSignal.name) && channels <= discordChannels {
            bytes += MultiscaleDiscord.bytes(
                windows: discordWindows + discordLevelWindows, periodic: discordPeriodWindows(channels: channels) != nil,
                repeating: discordQuietSurprise(channels: channels) != nil || discordPeakLag > 0, history: discordHistory,
                channels: channels, holdOff: alertHoldOff, lagged: discordPeakLag > 0)
        }
        if earlyScore && !log && channels == 1 && window > 0 { bytes += EarlyScore.bytes }
        if channelPeriod && !log && signals.contains(PeriodSignal.name) && channels > 1 && channels <= discordChannels && period != .off {
            bytes += ChannelPeriodSignal.bytes(channels: channels, span: univariateWindow, setting: period, holdOff: alertHoldOff)
        }
        if noiseWindow > 0 && !log && signals.contains(NoiseSignal.name) && channels <= discordChannels {
            bytes += NoiseSignal.bytes(channels: channels, window: noiseWindow)
        }
        if stuckRun > 0 && !log && signals.contains(StuckSignal.name) { bytes += StuckSignal.bytes(channels: channels) }
        if !log { bytes += RangeSignal.countBytes * channels }
        if surgeRun > 0 && !log && transform != .log && signals.contains(SurgeSignal.name) { bytes += SurgeSignal.bytes(channels: channels) }
        if (levelBar > 0 || swingBar > 0) && alertEvidence > 0 && !log && signals.contains(LevelSignal.name) && channels <= discordChannels {
            bytes += LevelSignal.bytes(channels: channels, horizon: calibrationHorizon)
        }
        if !log && signals.contains(CorrelationSignal.name) && channels > 1 && channels <= correlationChannels {
            bytes += CorrelationSignal.bytes(dimension: channels, holdOff: alertHoldOff)
        }
        if log { bytes += LogFront.bytes(templates: logTemplates, lineBytes: lineBytes) }
        if publishRepresentations {
            // The ingest thread's own MoCo (as the trainer's, with a queue of one batch), its
            // embedding workspace, and the exchange of the weights.
            let queue = b
            bytes += 4 * (6 * mocoParameters + queue * (mocoHead.last ?? 0) + 2 * queue + 2 * 3 * b * mocoUnits + b * (queue + 1)
                + 3 * 256 * mocoUnits + 256 * d + 3 * b * d + normalisation + 4 * normalisedUnits)
        }
        if maxLabels > 0 {
            // The labelled samples and their representations, and the head's frozen encoder (a MoCo
            // with a one-batch queue) with its embedding workspace, twice (the one ingest uses and
            // the one the trainer fits the next head with).
            let queue = b
            bytes += 4 * (maxLabels * (d + (mocoEncoder.last ?? 0)))
            bytes += 2 * 4 * (6 * mocoParameters + queue * (mocoHead.last ?? 0) + 2 * queue + 2 * 3 * b * mocoUnits
                + b * (queue + 1) + 3 * 256 * mocoUnits + 256 * d + normalisation)
        }
        return bytes
    }
}

/// A byte count as people read one: `105.4 MB`, `2.0 GB` (powers of 1024, one decimal).
public struct ByteCount: CustomStringConvertible, Sendable {
    public let bytes: Int
    public init(_ bytes: Int) { self.bytes = bytes }
    public var description: String {
        let units = ["bytes", "KB", "MB", "GB", "TB"]
        var value = Double(bytes), unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(bytes) bytes" : String(format: "%.1f %@", value, units[unit])
    }
}
