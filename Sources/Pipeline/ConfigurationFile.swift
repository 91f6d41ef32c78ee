/// The configuration file: `key = value` lines, `#` comments, and sections.
///
///     ingest = tcp://127.0.0.1:7700        # daemon keys come first
///     [stream]                             # defaults for streams created by their first batch
///     threshold = 0.999
///     [stream.pump-7]                      # a declared stream (starts from the defaults above)
///     dim = 8
///
/// Values may be quoted; lists are comma-separated (`autoencoder_hidden = 64, 16, 64`). An unknown
/// key, a bad value or a key outside its section is an error naming the line. `deploy/eddy.conf` lists
/// every key with its default.
public enum ConfigurationFile {
    public static func parse(_ text: String) throws -> DaemonConfiguration {
        var config = DaemonConfiguration()
        var section: Section = .daemon
        var declared: [String] = []
        // Where each key was set, per section: a key given twice is an error (from review: the
        // second silently won, and an operator who edited the first saw no effect).
        var setAt: [String: Int] = [:]
        // Lines end at any newline: "\r\n" is one Character in Swift, which a split at "\n" would
        // not split (a file written on Windows would be one commented-out line).
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let lineNumber = index + 1
            let line = stripComment(String(rawLine)).trimmingWhitespace()
            if line.isEmpty { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else { throw ConfigurationError.syntax(line: lineNumber, "unclosed section") }
                let name = String(line.dropFirst().dropLast()).trimmingWhitespace()
                if name == "stream" {
                    // A declared stream starts from the defaults as they stand where it is declared.
                    if let first = declared.first {
                        throw ConfigurationError.syntax(
                            line: lineNumber, "[stream] must come before the declared streams (it would not reach [stream.\(first)])")
                    }
                    section = .defaults
                } else if name.hasPrefix("stream.") {
                    let stream = String(name.dropFirst("stream.".count))
                    if let why = StreamName.problem(stream, maxBytes: config.maxStreamNameBytes) {
                        throw ConfigurationError.syntax(line: lineNumber, why)
                    }
                    if declared.contains(stream) {
                        throw ConfigurationError.syntax(line: lineNumber, "stream \(stream) is declared twice")
                    }
                    declared.append(stream)
                    config.streams[stream] = config.streamDefaults
                    section = .stream(stream)
                } else {
                    throw ConfigurationError.syntax(line: lineNumber, "unknown section [\(name)]")
                }
                continue
            }
            guard let eq = line.firstIndex(of: "=") else {
                throw ConfigurationError.syntax(line: lineNumber, "expected key = value")
            }
            let key = String(line[..<eq]).trimmingWhitespace()
            let place: String
            switch section {
            case .daemon: place = key
            case .defaults: place = "[stream] " + key
            case .stream(let name): place = "[stream.\(name)] " + key
            }
            if let earlier = setAt[place] {
                throw ConfigurationError.syntax(line: lineNumber, "\(key) is set twice in this section (first on line \(earlier))")
            }
            setAt[place] = lineNumber
            var value = String(line[line.index(after: eq)...]).trimmingWhitespace()
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                value = String(value.dropFirst().dropLast())
            }
            do {
                switch section {
                case .daemon:
                    try setDaemon(&config, key, value)
                case .defaults:
                    try setStream(&config.streamDefaults, key, value)
                    // Declared streams start from the defaults in force where they are declared.
                case .stream(let name):
                    try setStream(&config.streams[name]!, key, value)
                }
            } catch let error as ValueError {
                throw ConfigurationError.syntax(line: lineNumber, "\(key): \(error.why)")
            }
        }
        do {
            try config.validate()
        } catch ConfigurationError.invalid(let why) {
            // A daemon key's problem names the key first: say where the file set it.
            if let line = setAt.first(where: { !$0.key.hasPrefix("[") && why.hasPrefix($0.key + " ") })?.value {
                throw ConfigurationError.syntax(line: line, why)
            }
            throw ConfigurationError.invalid(why)
        }
        return config
    }

    enum Section { case daemon, defaults, stream(String) }

    struct ValueError: Error { let why: String }

    static func stripComment(_ line: String) -> String {
        var inQuotes = false
        for (i, ch) in line.enumerated() {
            if ch == "\"" { inQuotes.toggle() }
            if ch == "#" && !inQuotes { return String(line.prefix(i)) }
        }
        return line
    }

    static func setDaemon(_ c: inout DaemonConfiguration, _ key: String, _ v: String) throws {
        switch key {
        case "ingest": c.ingest = v
        case "publish": c.publish = v
        case "snapshots": c.snapshots = v
        case "curve_secret_key": c.curveSecretKey = v
        case "curve_allowed_clients": c.curveAllowedClients = v
        case "allow_plaintext": c.allowPlaintext = try bool(v)
        case "http": c.http = v
        case "http_allow_remote": c.httpAllowRemote = try bool(v)
        case "health_stall_seconds": c.healthStallSeconds = try double(v)
        case "data_dir": c.dataDirectory = v
        case "max_streams": c.maxStreams = try int(v)
        case "stream_idle_seconds": c.streamIdleSeconds = try double(v)
        case "max_dim": c.maxDim = try int(v)
        case "max_abs_value": c.maxAbsValue = try float(v)
        case "memory_budget": c.memoryBudget = try bytes(v)
        case "max_stream_name_bytes": c.maxStreamNameBytes = try bytes(v)
        case "max_message_bytes": c.maxMessageBytes = try bytes(v)
        case "max_samples_per_message": c.maxSamplesPerMessage = try int(v)
        case "max_line_bytes": c.maxLineBytes = try bytes(v)
        case "snapshot_every_steps": c.snapshotEverySteps = try int(v)
        case "snapshot_every_seconds": c.snapshotEverySeconds = try double(v)
        case "checkpoint_every_seconds": c.checkpointEverySeconds = try double(v)
        case "checkpoints_kept": c.checkpointsKept = try int(v)
        case "heartbeat_seconds": c.heartbeatSeconds = try double(v)
        case "high_water_mark": c.highWaterMark = try int(v)
        case "publish_queue_bytes": c.publishQueueBytes = try bytes(v)
        case "ingest_connection_bytes": c.ingestConnectionBytes = try bytes(v)
        case "max_ingest_connections": c.maxIngestConnections = try int(v)
        case "ingest_buffer_bytes": c.ingestBufferBytes = try bytes(v)
        case "ingest_handshake_seconds": c.ingestHandshakeSeconds = try double(v)
        case "ingest_handshakes_per_second": c.ingestHandshakesPerSecond = try double(v)
        case "ingest_idle_seconds": c.ingestIdleSeconds = try double(v)
        case "ingest_message_seconds": c.ingestMessageSeconds = try double(v)
        case "ingest_high_water_mark":
            throw ValueError(why: "replaced in 0.15 by ingest_connection_bytes (bytes read ahead per producer, not messages)")
        case "trainer_min_share": c.trainerMinimumShare = try double(v)
        case "trainer_priority":
            guard let p = TrainerPriority(v) else { throw ValueError(why: "\"\(v)\" is neither idle nor a nice value 0 to 19") }
            c.trainerPriority = p
        default:
            throw ValueError(why: "unknown key (stream keys go under [stream] or [stream.NAME])")
        }
    }

    static func setStream(_ s: inout StreamConfiguration, _ key: String, _ v: String) throws {
        switch key {
        case "dim": s.dim = try int(v)
        case "window": s.window = try int(v)
        case "univariate_window": s.univariateWindow = try int(v)
        case "multivariate_window": s.multivariateWindow = try int(v)
        case "window_scales": s.windowScales = try ints(v)
        case "buffer_capacity": s.bufferCapacity = try int(v)
        case "recent_fraction": s.recentFraction = try double(v)
        case "replay_ratio": s.replayRatio = try double(v)
        case "warmup_replay_ratio": s.warmupReplayRatio = try double(v)
        case "window_padding": s.windowPadding = try bool(v)
        case "early_score": s.earlyScore = try bool(v)
        case "channel_period": s.channelPeriod = try bool(v)
        case "channel_period_margin": s.channelPeriodMargin = try float(v)
        case "max_pending_steps": s.maximumPendingSteps = try double(v)
        case "batch_size": s.batchSize = try int(v)
        case "min_buffered": s.minimumBuffered = try int(v)
        case "warmup_samples": s.warmupSamples = try int(v)
        case "warmup_steps": s.warmupSteps = try int(v)
        case "threshold": s.threshold = try float(v)
        case "calibration_horizon": s.calibrationHorizon = try int(v)
        case "alert_hold_off": s.alertHoldOff = try int(v)
        case "alert_evidence": s.alertEvidence = try float(v)
        case "learn_surprise_limit": s.learnSurpriseLimit = try float(v)
        case "range_margin": s.rangeMargin = try float(v)
        case "range_refresh": s.rangeRefresh = try int(v)
        case "range_habit": s.rangeHabit = try double(v)
        case "range_confirm": s.rangeConfirm = try int(v)
        case "glitch_ranges": s.glitchRanges = try float(v)
        case "range_warmup": s.rangeWarmup = try int(v)
        case "range_deviations": s.rangeDeviations = try float(v)
        case "range_drop": s.rangeDrop = try float(v)
        case "range_tail": s.rangeTail = try double(v)
        case "range_tail_young": s.rangeTailYoung = try bool(v)
        case "range_corroboration": s.rangeCorroboration = try float(v)
        case "repeat_window": s.repeatWindow = try int(v)
        case "signals":
            let names = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            s.signals = names
        case "period":
            guard let p = PeriodSetting(v) else { throw ValueError(why: "\"\(v)\" is neither auto, off nor a period of 2 to 100000 values") }
            s.period = p
        case "discord_window": s.discordWindows = try ints(v)
        case "discord_level_window":
            let windows = try ints(v)
            guard !windows.isEmpty else { throw ValueError(why: "no window (0 for none)") }
            s.discordLevelWindows = windows == [0] ? [] : windows
        case "discord_history": s.discordHistory = try int(v)
        case "discord_channels": s.discordChannels = try int(v)
        case "discord_period_channels": s.discordPeriodChannels = try int(v)
        case "discord_repeating_only": s.discordRepeatingOnly = try bool(v)
        case "discord_peak_lag": s.discordPeakLag = try int(v)
        case "discord_count_period_only": s.discordCountPeriodOnly = try bool(v)
        case "discord_shift_veto": s.discordShiftVeto = try double(v)
        case "correlation_channels": s.correlationChannels = try int(v)
        case "discord_margin": s.discordMargin = try float(v)
        case "discord_clip": s.discordClip = try double(v)
        case "noise_window": s.noiseWindow = try int(v)
        case "stuck_run": s.stuckRun = try int(v)
        case "surge_run": s.surgeRun = try int(v)
        case "band_explains": s.bandExplains = try bool(v)
        case "level_bar": s.levelBar = try float(v)
        case "swing_bar": s.swingBar = try float(v)
        case "transform":
            guard let t = InputTransform(rawValue: v) else { throw ValueError(why: "\"\(v)\" is neither none nor log") }
            s.transform = t
        case "log": s.log = try bool(v)
        case "log_templates": s.logTemplates = try int(v)
        case "log_similarity": s.logSimilarity = try double(v)
        case "log_mix_window": s.logMixWindow = try int(v)
        case "log_horizon": s.logHorizon = try int(v)
        case "log_warmup_samples": s.logWarmupSamples = try int(v)
        case "log_warmup_steps": s.logWarmupSteps = try int(v)
        case "log_alert_evidence": s.logAlertEvidence = try float(v)
        case "template_margin": s.templateMargin = try float(v)
        case "parameter_margin": s.parameterMargin = try float(v)
        case "burst_window": s.burstWindow = try int(v)
        case "burst_margin": s.burstMargin = try float(v)
        case "burst_ratio": s.burstRatio = try double(v)
        case "silence_factor": s.silenceFactor = try double(v)
        case "normaliser_horizon": s.normaliserHorizon = try int(v)
        case "autoencoder_hidden": s.autoencoderHidden = try ints(v)
        case "learning_rate": s.learningRate = try float(v)
        case "gradient_clip_norm": s.gradientClipNorm = try float(v)
        case "moco_encoder": s.mocoEncoder = try ints(v)
        case "moco_head": s.mocoHead = try ints(v)
        case "moco_queue": s.mocoQueue = try int(v)
        case "moco_temperature": s.mocoTemperature = try float(v)
        case "moco_reconstruction": s.mocoReconstruction = try float(v)
        case "moco_batch_norm": s.mocoBatchNorm = try bool(v)
        case "moco_mix": s.mocoMix = try float(v)
        case "moco_batch_norm_groups": s.mocoBatchNormGroups = try int(v)
        case "moco_momentum": s.mocoMomentum = try float(v)
        case "jitter": s.jitter = try float(v)
        case "scale": s.scale = try float(v)
        case "mask": s.mask = try float(v)
        case "crop": s.crop = try float(v)
        case "series_channels": s.seriesChannels = try int(v)
        case "publish_representations": s.publishRepresentations = try bool(v)
        case "max_labels": s.maxLabels = try int(v)
        case "idle_steps_per_second": s.idleStepsPerSecond = try double(v)
        case "idle_passes": s.idlePasses = try double(v)
        case "time_warp": s.timeWarp = try float(v)
        case "channel_scale": s.channelScale = try float(v)
        case "channel_offset": s.channelOffset = try float(v)
        case "span_mask": s.spanMask = try float(v)
        case "seed":
            guard let seed = UInt64(v.replacingUnderscores()) else { throw ValueError(why: "\"\(v)\" is not a seed (0 to 2^64-1)") }
            s.seed = seed
        default:
            // A daemon key under a section (from review: reported as unknown, as if it did not exist).
            var scratch = DaemonConfiguration()
            do { try setDaemon(&scratch, key, v) } catch let e as ValueError where e.why.hasPrefix("unknown key") {
                throw ValueError(why: "unknown key")
            } catch {}
            throw ValueError(why: "a daemon key: daemon keys go before the first section ([stream] or [stream.NAME])")
        }
    }

    static func int(_ v: String) throws -> Int {
        guard let x = Int(v.replacingUnderscores()) else { throw ValueError(why: "\"\(v)\" is not an integer") }
        return x
    }
    /// A byte count: an integer with an optional K, M or G (powers of 1024).
    static func bytes(_ v: String) throws -> Int {
        let units: [Character: Int] = ["K": 1 << 10, "k": 1 << 10, "M": 1 << 20, "m": 1 << 20, "G": 1 << 30, "g": 1 << 30]
        let unit = v.last.flatMap { units[$0] }
        let digits = (unit == nil ? v : String(v.dropLast())).replacingUnderscores()
        guard let n = Int(digits), n >= 0, n <= Int.max / (unit ?? 1) else {
            throw ValueError(why: "\"\(v)\" is not a byte count (an integer, optionally with K, M or G)")
        }
        return n * (unit ?? 1)
    }

    static func bool(_ v: String) throws -> Bool {
        switch v {
        case "true": return true
        case "false": return false
        default: throw ValueError(why: "\"\(v)\" is not true or false")
        }
    }

    static func double(_ v: String) throws -> Double {
        guard let x = Double(v), x.isFinite else { throw ValueError(why: "\"\(v)\" is not a number") }
        return x
    }
    /// A number that is finite as a Float too (1e39 is a Double, but a Float's infinity).
    static func float(_ v: String) throws -> Float {
        let x = Float(try double(v))
        guard x.isFinite else { throw ValueError(why: "\"\(v)\" is beyond a 32-bit float's range") }
        return x
    }
    static func ints(_ v: String) throws -> [Int] {
        try v.split(separator: ",").map { try int(String($0).trimmingWhitespace()) }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return String(s)
    }
    func replacingUnderscores() -> String { filter { $0 != "_" } }
}
