import CoreMetrics
import EddyProtocol
import Foundation
import Prometheus

/// The daemon's figures for Prometheus (`/metrics`), through swift-metrics with swift-prometheus as
/// the backend, one registry per daemon.
///
/// Nothing on the sample path pays for them beyond what the heartbeats already cost:
/// - counters the daemon keeps anyway (atomics added to once per message or batch) are carried into
///   their swift-metrics counters when scraped, by what they grew since the last scrape;
/// - per-stream figures are read from each stream's status at scrape time; a stream that expired
///   takes its series with it, so their number stays bounded by `max_streams`;
/// - the histograms are recorded as things happen: once per scored run of messages, per training
///   step and per checkpoint.
///
/// Every family is named in `catalogue` with its help text, which the exposition carries as
/// `# HELP` lines (swift-metrics has no place for them).
public final class DaemonMetrics: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory
    /// Seconds from a message leaving the ingest socket to its scores being published (the oldest
    /// message of each run scored together).
    let scoreLatency: CoreMetrics.Timer
    let trainStepDuration: CoreMetrics.Timer
    let checkpointDuration: CoreMetrics.Timer

    /// Scrapes one at a time: the carried counters' last values and the per-stream series.
    private let lock = Lock()
    private var carried: [String: (counter: CoreMetrics.FloatingPointCounter, last: UInt64)] = [:]
    private var gauges: [String: CoreMetrics.Gauge] = [:]
    /// Series keys of each stream, to remove when the stream goes.
    private var streamKeys: [String: Set<String>] = [:]
    /// The daemon's streams restored at start (`Daemon.restoredAtStart`), and the per-stream series
    /// that have taken their restored count as their start.
    private var restoredAtStart: Set<String> = []
    private var baselined: Set<String> = []

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        let short: [Duration] = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
            .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        ]
        factory.durationHistogramBuckets = [
            "eddy_score_latency_seconds": short,
            "eddy_train_step_duration_seconds": short,
            "eddy_checkpoint_duration_seconds": [
                .milliseconds(1), .milliseconds(10), .milliseconds(100), .milliseconds(500), .seconds(1),
                .seconds(5), .seconds(10), .seconds(30), .seconds(60),
            ],
        ]
        self.factory = factory
        scoreLatency = CoreMetrics.Timer(label: "eddy_score_latency_seconds", factory: factory)
        trainStepDuration = CoreMetrics.Timer(label: "eddy_train_step_duration_seconds", factory: factory)
        checkpointDuration = CoreMetrics.Timer(label: "eddy_checkpoint_duration_seconds", factory: factory)
        gauge("eddy_build_info", [("version", Version.daemon), ("wire", Version.wire)], 1)
        gauge("process_start_time_seconds", [], Date().timeIntervalSince1970)
    }

    /// Every family: name, Prometheus type, help. Tests hold the exposition to it both ways.
    public static let catalogue: [(name: String, type: String, help: String)] = [
        ("eddy_build_info", "gauge", "Always 1; the labels give the daemon's version and its wire protocol."),
        ("process_start_time_seconds", "gauge", "When the daemon started, in seconds since the Unix epoch."),
        ("process_resident_memory_bytes", "gauge", "Resident memory of the daemon process."),
        ("process_open_fds", "gauge", "File descriptors the daemon has open (each producer or subscriber connection holds one)."),
        ("process_max_fds", "gauge", "The daemon's descriptor limit."),
        ("eddy_up", "gauge", "1 while every thread is alive and making progress (what /healthz reports), else 0."),
        ("eddy_thread_progress_age_seconds", "gauge", "Seconds since each daemon thread last came round its loop."),
        ("eddy_thread_cpu_seconds_total", "counter", "CPU time each daemon thread has used."),
        ("eddy_messages_received_total", "counter", "Messages taken from the ingest socket."),
        ("eddy_messages_rejected_total", "counter", "Messages rejected, by error code (each also published on error/)."),
        ("eddy_samples_accepted_total", "counter", "Samples (or log lines) accepted and scored."),
        ("eddy_samples_rejected_total", "counter", "Samples in rejected messages, by error code."),
        ("eddy_samples_dropped_total", "counter", "Scores the publish socket refused (computed, not sent), samples admitted but not yet scored when the ingest thread failed, and samples held for a stream coming back from expiry when ingest failed or the daemon stopped before its state was read. A subscriber that falls behind loses messages at its own queue, not counted here."),
        ("eddy_alerts_total", "counter", "Alerts raised, all streams."),
        ("eddy_labels_accepted_total", "counter", "Labelled samples taken for few-label heads (LabelBatch)."),
        ("eddy_train_steps_total", "counter", "Training steps taken, all streams and models."),
        ("eddy_snapshots_published_total", "counter", "Model snapshots published."),
        ("eddy_snapshot_requests_total", "counter", "Snapshot requests answered on the snapshot endpoint (with a snapshot or an error)."),
        ("eddy_pongs_dropped_total", "counter", "PONGs dropped because their producer did not read them or was leaving (its messages are still taken)."),
        ("eddy_handshakes_waited_total", "counter", "CURVE handshake steps (HELLO, INITIATE) that waited for their turn under ingest_handshakes_per_second: a reconnecting fleet, or a flood of handshakes."),
        ("eddy_ingest_connections_evicted_total", "counter", "Producer connections closed to make room for a new one at max_ingest_connections: one in its handshake for a second or more, or one idle for ingest_idle_seconds or more."),
        ("eddy_checkpoints_total", "counter", "Checkpoints written."),
        ("eddy_checkpoint_failures_total", "counter", "Checkpoints that failed (the previous one stays), and failed writes of the versions published."),
        ("eddy_handshakes_refused_total", "counter", "Clients turned away in the handshake (a CURVE key not on the allow-list, another security mechanism)."),
        ("eddy_protocol_errors_total", "counter", "Producer connections closed for breaking ZMTP."),
        ("eddy_connections_refused_total", "counter", "Producer connections closed as they opened, max_ingest_connections being open."),
        ("eddy_streams_expired_total", "counter", "Streams expired after stream_idle_seconds without a sample."),
        ("eddy_streams_revived_total", "counter", "Expired streams that came back and resumed from their kept state."),
        ("eddy_messages_held_total", "counter", "Messages held while their stream came back from expiry (its kept state read off the ingest thread), scored once it was there."),
        ("eddy_revival_waits_total", "counter", "Times ingest waited for an expired stream's kept state to be read: the messages held for streams coming back at ingest_buffer_bytes, or the daemon stopping."),
        ("eddy_streams_set_aside_total", "counter", "Saved streams a start did not restore (their state no longer fits their settings, or their name the name rules), and expired streams whose kept state could not come back with their name (another dim or kind, changed settings, a damaged file), kept aside in the data directory."),
        ("eddy_checkpoints_skipped_total", "counter", "Checkpoints a start passed over for an older one: damaged (moved aside as .damaged, kept for the operator) or unreadable (left as they are)."),
        ("eddy_allow_list_reload_failures_total", "counter", "Reloads of the CURVE allow-list (SIGHUP, systemctl reload) refused by its checks; the list in force is kept."),
        ("eddy_trainer_boosts_total", "counter", "Times the starved idle-priority trainer was raised to a normal share."),
        ("eddy_streams", "gauge", "Streams the daemon holds."),
        ("eddy_max_streams", "gauge", "The max_streams setting."),
        ("eddy_memory_committed_bytes", "gauge", "Memory the streams are charged against memory_budget."),
        ("eddy_memory_budget_bytes", "gauge", "The memory_budget setting."),
        ("eddy_score_latency_seconds", "histogram", "Time from a message leaving the ingest socket to its scores being published."),
        ("eddy_train_step_duration_seconds", "histogram", "Time one training step takes (a batch through a stream's models)."),
        ("eddy_checkpoint_duration_seconds", "histogram", "Time writing a checkpoint of every stream takes."),
        ("eddy_stream_samples_accepted_total", "counter", "Samples accepted, per stream."),
        ("eddy_stream_messages_rejected_total", "counter", "Messages naming the stream that were rejected, per stream (the heartbeat's rejected)."),
        ("eddy_stream_samples_evicted_total", "counter", "Samples the replay buffer let go to make room, per stream."),
        ("eddy_stream_samples_quarantined_total", "counter", "Samples kept out of learning while they looked anomalous, or learned with a glitch replaced, per stream."),
        ("eddy_stream_alerts_total", "counter", "Alerts raised, per stream."),
        ("eddy_stream_train_steps_skipped_total", "counter", "Training steps owed and given up because the trainer fell behind, per stream."),
        ("eddy_stream_train_steps_idle_total", "counter", "Training steps taken while the stream was quiet, per stream."),
        ("eddy_stream_rollbacks_total", "counter", "Times a non-finite weight sent the stream's models back to their last snapshot."),
        ("eddy_stream_buffered_samples", "gauge", "Samples in the stream's replay buffer."),
        ("eddy_stream_buffer_fill_ratio", "gauge", "The replay buffer's fill, 0 to 1."),
        ("eddy_stream_model_version", "gauge", "Training steps the stream's model has taken, by model."),
        ("eddy_stream_loss", "gauge", "The stream's last training loss, by model (MSE for the autoencoder, InfoNCE for MoCo); absent until its first step since the daemon started."),
        ("eddy_stream_warming_up", "gauge", "1 while the stream is warming up (no alerts yet), else 0."),
        ("eddy_stream_templates", "gauge", "Log templates the stream's miner holds (log streams)."),
        ("eddy_stream_lines_truncated_total", "counter", "Log lines cut to max_line_bytes, per log stream (the line is taken, its end dropped)."),
        ("eddy_stream_lines_repaired_total", "counter", "Log lines with invalid UTF-8, taken with U+FFFD in its place, per log stream."),
        ("eddy_stream_templates_evicted_total", "counter", "Templates let go at log_templates (the least recently matched), per log stream."),
    ]

    /// Adds `value`'s growth since the last scrape, times `scale`, to the counter of this name and labels.
    func carry(_ name: String, _ value: UInt64, labels: [(String, String)] = [], stream: String? = nil, scale: Double = 1) {
        let key = Self.key(name, labels)
        var entry = carried[key] ?? (CoreMetrics.FloatingPointCounter(label: name, dimensions: labels, factory: factory), 0)
        if carried[key] == nil, let stream, restoredAtStart.contains(stream), baselined.insert(key).inserted {
            // Restored from a checkpoint: its counts so far are the earlier process's (before,
            // they were added at the first scrape, and a restart after a kill took the series
            // from 13,000 back to 10,000, which `increase()` reads as 10,000 new; from review).
            // Only once: a stream that expires and comes back continues its counters.
            entry.last = value
        }
        // A count that went down started again (a stream that expired and came back afresh).
        let grown = value >= entry.last ? value - entry.last : value
        if grown > 0 { entry.counter.increment(by: Double(grown) * scale) }
        entry.last = value
        carried[key] = entry
        if let stream { streamKeys[stream, default: []].insert(key) }
    }

    func gauge(_ name: String, _ labels: [(String, String)], _ value: Double, stream: String? = nil) {
        let key = Self.key(name, labels)
        let g = gauges[key] ?? CoreMetrics.Gauge(label: name, dimensions: labels, factory: factory)
        gauges[key] = g
        g.record(value)
        if let stream { streamKeys[stream, default: []].insert(key) }
    }

    static func key(_ name: String, _ labels: [(String, String)]) -> String {
        labels.reduce(name) { $0 + "\u{0}" + $1.0 + "\u{0}" + $1.1 }
    }

    /// Brings every figure up to date from `daemon` and renders the registry in the text format.
    func scrape(_ daemon: Daemon) -> String {
        lock.withLock {
            restoredAtStart = daemon.restoredAtStart
            collect(daemon)
            var out: [UInt8] = []
            registry.emit(into: &out)
            return Self.withHelp(String(decoding: out, as: UTF8.self))
        }
    }

    private func collect(_ d: Daemon) {
        let counters: [(String, Counter)] = [
            ("eddy_messages_received_total", d.messagesReceived), ("eddy_samples_accepted_total", d.samplesAccepted),
            ("eddy_samples_dropped_total", d.samplesDropped), ("eddy_alerts_total", d.alertsRaised),
            ("eddy_labels_accepted_total", d.labelsAccepted), ("eddy_train_steps_total", d.trainSteps),
            ("eddy_snapshots_published_total", d.snapshotsPublished), ("eddy_snapshot_requests_total", d.snapshotRequests), ("eddy_pongs_dropped_total", d.pongsDropped), ("eddy_ingest_connections_evicted_total", d.connectionsEvicted),
            ("eddy_handshakes_waited_total", d.handshakesWaited),
            ("eddy_checkpoints_total", d.checkpointsWritten),
            ("eddy_checkpoint_failures_total", d.checkpointFailures), ("eddy_handshakes_refused_total", d.handshakesRefused),
            ("eddy_streams_expired_total", d.streamsExpired), ("eddy_streams_revived_total", d.streamsRevived),
            ("eddy_streams_set_aside_total", d.streamsSetAside), ("eddy_checkpoints_skipped_total", d.checkpointsSkipped),
            ("eddy_allow_list_reload_failures_total", d.allowListReloadFailures),
            ("eddy_messages_held_total", d.messagesHeld), ("eddy_revival_waits_total", d.revivalWaits),
            ("eddy_trainer_boosts_total", d.trainerBoosts), ("eddy_protocol_errors_total", d.protocolErrors),
            ("eddy_connections_refused_total", d.connectionsRefused),
        ]
        for (name, counter) in counters { carry(name, counter.load) }
        for code in Eddy_V1_ErrorCode.allCases where code != .unspecified {
            let labels = [("code", Self.label(code))]
            carry("eddy_messages_rejected_total", d.rejectedMessages[code.rawValue].load, labels: labels)
            carry("eddy_samples_rejected_total", d.rejectedSamples[code.rawValue].load, labels: labels)
        }
        let health = d.health()
        gauge("eddy_up", [], health.healthy ? 1 : 0)
        for (thread, age) in health.threads { gauge("eddy_thread_progress_age_seconds", [("thread", thread)], age) }
        for (thread, seconds) in d.cpuSeconds() {
            carry("eddy_thread_cpu_seconds_total", UInt64(seconds * 1e9), labels: [("thread", thread.rawValue)], scale: 1e-9)
        }
        let (streams, committed) = d.streamsLock.withLock { (d.streamOrder.compactMap { d.streams[$0] }, d.committedBytes) }
        gauge("eddy_streams", [], Double(streams.count))
        gauge("eddy_max_streams", [], Double(d.configuration.maxStreams))
        gauge("eddy_memory_committed_bytes", [], Double(committed))
        gauge("eddy_memory_budget_bytes", [], Double(d.configuration.memoryBudget))
        let process = ProcessFigures.read()
        gauge("process_resident_memory_bytes", [], process.residentBytes)
        gauge("process_open_fds", [], process.openDescriptors)
        gauge("process_max_fds", [], process.maxDescriptors)

        var present = Set<String>()
        for s in streams {
            present.insert(s.name)
            let st = s.status
            let l = [("stream", s.name)]
            for (name, count) in Self.streamCounters { carry(name, st[keyPath: count], labels: l, stream: s.name) }
            gauge("eddy_stream_buffered_samples", l, Double(st.buffered), stream: s.name)
            gauge("eddy_stream_buffer_fill_ratio", l, Double(st.buffered) / Double(max(1, s.settings.bufferCapacity)), stream: s.name)
            gauge("eddy_stream_model_version", l + [("model", "autoencoder")], Double(st.autoencoderSteps), stream: s.name)
            gauge("eddy_stream_model_version", l + [("model", "moco")], Double(st.mocoSteps), stream: s.name)
            // No loss before the stream's first step in this process (a restored stream's too): no
            // series, rather than a NaN that reads as divergence (from review).
            if !st.autoencoderLoss.isNaN { gauge("eddy_stream_loss", l + [("model", "autoencoder")], Double(st.autoencoderLoss), stream: s.name) }
            if !st.mocoLoss.isNaN { gauge("eddy_stream_loss", l + [("model", "moco")], Double(st.mocoLoss), stream: s.name) }
            gauge("eddy_stream_warming_up", l, st.warmingUp ? 1 : 0, stream: s.name)
            if s.settings.log {
                gauge("eddy_stream_templates", l, Double(st.templates), stream: s.name)
                // Lines taken but changed on the way in, and templates let go (from review: only in heartbeats).
                carry("eddy_stream_lines_truncated_total", st.linesTruncated, labels: l, stream: s.name)
                carry("eddy_stream_lines_repaired_total", st.linesRepaired, labels: l, stream: s.name)
                carry("eddy_stream_templates_evicted_total", st.templatesEvicted, labels: l, stream: s.name)
            }
        }
        // Streams that expired: their series go with them.
        for (name, keys) in streamKeys where !present.contains(name) {
            for key in keys {
                if let c = carried.removeValue(forKey: key) { c.counter.destroy() }
                if let g = gauges.removeValue(forKey: key) { g.destroy() }
            }
            streamKeys[name] = nil
        }
    }

    /// Per-stream counters and where a stream's status keeps them.
    static let streamCounters: [(String, KeyPath<StreamPipeline.Status, UInt64> & Sendable)] = [
        ("eddy_stream_samples_accepted_total", \.accepted), ("eddy_stream_messages_rejected_total", \.rejected),
        ("eddy_stream_samples_evicted_total", \.evicted), ("eddy_stream_samples_quarantined_total", \.quarantined),
        ("eddy_stream_alerts_total", \.alerts), ("eddy_stream_train_steps_skipped_total", \.skippedSteps),
        ("eddy_stream_train_steps_idle_total", \.idleSteps), ("eddy_stream_rollbacks_total", \.rollbacks),
    ]

    /// `badFrames` -> `bad_frames`.
    public static func label(_ code: Eddy_V1_ErrorCode) -> String {
        var out = ""
        for ch in "\(code)" {
            if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
        }
        return out
    }

    /// The exposition with its families in name order, each with a `# HELP` line before its `# TYPE`.
    static func withHelp(_ text: String) -> String {
        let help = Dictionary(uniqueKeysWithValues: catalogue.map { ($0.name, $0.help) })
        var families: [(name: Substring, lines: [Substring])] = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE "), let name = line.dropFirst(7).split(separator: " ").first {
                families.append((name, []))
            }
            if families.isEmpty { families.append(("", [])) }
            families[families.count - 1].lines.append(line)
        }
        var out = ""
        out.reserveCapacity(text.utf8.count + 8192)
        for family in families.sorted(by: { $0.name < $1.name }) {
            if let h = help[String(family.name)] { out += "# HELP \(family.name) \(h)\n" }
            for line in family.lines { out += line + "\n" }
        }
        return out
    }
}

/// The process's resident memory and descriptors, from /proc (zeros where it cannot be read).
struct ProcessFigures {
    var residentBytes = 0.0, openDescriptors = 0.0, maxDescriptors = 0.0

    static func read() -> ProcessFigures {
        var f = ProcessFigures()
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = statm.split(separator: " ")
            if fields.count > 1, let pages = Double(fields[1]) { f.residentBytes = pages * Double(sysconf(Int32(_SC_PAGESIZE))) }
        }
        f.openDescriptors = Double((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0)
        var limit = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 { f.maxDescriptors = Double(limit.rlim_cur) }
        return f
    }
}
