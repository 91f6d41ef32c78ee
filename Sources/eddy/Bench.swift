import ArgumentParser
import Foundation
import Learning
import LinearAlgebra
import Pipeline
import CEddySystem
import Workloads


struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Eddy's speed and memory on a fixed reference workload.",
        discussion: """
            Each subcommand prints readable lines, or one JSON object with --json. Figures are rates on \
            this machine: compare them with a peer measured in the same run (`make bench` in a checkout \
            runs the numpy and PyTorch peers beside these), not with figures taken at another time.
            """,
        subcommands: [TrainBench.self, ScoreBench.self, PipelineBench.self, MemoryBench.self, KernelBench.self, IngestBench.self, LatencyBench.self, MineBench.self, LogIngestBench.self])
}

enum BenchModel: String, ExpressibleByArgument, CaseIterable {
    case ae, moco, both
}

struct BenchOptions: ParsableArguments {
    @Option(help: "Input dimension D (the workload defines 32 and 128).")
    var dim = 32
    @Option(help: "Seconds in each timed window, after warm-up.")
    var seconds = 1.5
    @Option(help: "OpenBLAS threads (the trainer's budget is one).")
    var threads = 1
    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        try validateBenchShape(dim: dim, seconds: seconds)
        if !(1...64).contains(threads) { throw ValidationError("--threads must be in 1...64") }
    }
}

/// The checks every bench's sample width and window share: a dim of 0 divided by zero, a negative
/// one trapped on a range, and a window of no time (or NaN) measured nothing (from review).
func validateBenchShape(dim: Int, seconds: Double) throws {
    if !(1...(1 << 16)).contains(dim) { throw ValidationError("--dim must be in 1...65536") }
    if !(seconds > 0 && seconds <= 86_400) { throw ValidationError("--seconds must be more than 0 (and at most a day)") }
}

/// The workload's models: the AE as specified, MoCo with T = 0.1 and a one-layer head, no normalisation.
enum ReferenceModels {
    static let batch = 64
    static let bufferRows = 65_536

    static func autoencoder(dim: Int) -> Autoencoder {
        var c = AutoencoderConfiguration(inputDimension: dim)
        c.normalise = false
        c.seed = 2
        return Autoencoder(configuration: c)
    }

    static func moco(dim: Int, reconstruction: Float = 0, batchNorm: Bool = false, groups: Int = 1, mix: Float = 0) -> MoCo {
        var c = MoCoConfiguration(inputDimension: dim)
        c.reconstruction = reconstruction
        c.batchNorm = batchNorm
        c.mix = mix
        c.encoderWidths = [128, 64]
        c.headWidths = [32]
        c.queueSize = 4096
        c.temperature = 0.1
        c.momentum = 0.99
        c.augmentation = AugmentationConfiguration(jitter: 0.05, scale: 0, maskProbability: 0.1)
        c.normalise = false
        c.seed = 3
        let moco = MoCo(configuration: c)
        moco.batchNormGroups = groups
        return moco
    }
}

/// The replay buffer of the workload: the first 65,536 samples, and a batch gathered uniformly at
/// random with replacement (the gather is part of each timed step).
final class ReferenceBuffer {
    let dim: Int
    let rows = ReferenceModels.bufferRows
    let data: FloatBuffer
    let batch: FloatBuffer
    let index = UnsafeMutablePointer<Int64>.allocate(capacity: ReferenceModels.batch)
    var random = RandomSource(seed: 1)

    init(dim: Int) {
        self.dim = dim
        data = FloatBuffer(ReferenceStream(dimension: dim).samples(count: ReferenceModels.bufferRows))
        batch = FloatBuffer(count: ReferenceModels.batch * dim)
    }

    @inline(__always)
    func next() -> UnsafePointer<Float> {
        for r in 0..<ReferenceModels.batch { index[r] = Int64(random.index(below: rows)) }
        Kernels.gatherRows(data.pointer, index: index, rows: ReferenceModels.batch, columns: dim, into: batch.pointer)
        return UnsafePointer(batch.pointer)
    }
}

/// Wall and CPU time of repeated calls after a warm-up, as the peers' `workload.bench` measures.
struct Rate {
    var wall: Double
    var cpu: Double

    static func measure(samplesPerCall: Int, seconds: Double, warmup: Double = 0.3, _ body: () -> Void) -> Rate {
        let warmEnd = now() + warmup
        while now() < warmEnd { body() }
        var calls = 0
        let c0 = cpuNow(), t0 = now()
        var t = t0
        repeat {
            for _ in 0..<8 { body() }
            calls += 8
            t = now()
        } while t < t0 + seconds
        let samples = Double(calls * samplesPerCall)
        return Rate(wall: samples / (t - t0), cpu: samples / max(cpuNow() - c0, 1e-9))
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    static func cpuNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

/// Two runs timed in turn in one invocation, a window each per round (the order alternating, so
/// that neither always follows the other): this machine's rate drifts from one run to the next by
/// more than most settings cost, and slow drift hits both alike.
enum Rounds {
    /// The middle round; the mean of the two middle ones when they are even.
    static func median(_ x: [Double]) -> Double {
        let s = x.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Student's t at 0.975 for 1 to 30 degrees of freedom (2 beyond: t(60) is 2.000).
    static let t975: [Double] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ]

    /// `a` against `b`: the geometric mean of the rounds' ratios, a 95 % interval from their spread
    /// (Student's t: five rounds are few), and each round's ratio.
    static func ratio(_ a: [Double], _ b: [Double]) -> (mean: Double, interval: String, rounds: String) {
        let logs = zip(a, b).map { log($0 / $1) }
        let mean = logs.reduce(0, +) / Double(logs.count)
        let sd = (logs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(1, logs.count - 1))).squareRoot()
        let df = logs.count - 1
        let half = (df >= 1 && df <= t975.count ? t975[df - 1] : 2.0) * sd / Double(logs.count).squareRoot()
        // One round has no spread to measure: no interval, not a point that looks certain.
        return (exp(mean), logs.count < 2 ? "n/a (one round)" : String(format: "%.3f-%.3f", exp(mean - half), exp(mean + half)),
                logs.map { String(format: "%.2f", exp($0)) }.joined(separator: " "))
    }
}

/// One result: printed as `key value` lines, or as a single JSON object.
/// The share of the machine's CPU time the hypervisor took (`steal` in /proc/stat) between `init`
/// and `fraction`: on a virtual machine it explains much of the run-to-run spread, so the daemon
/// benchmarks report it beside their figures.
struct StealMeter {
    private let start: (steal: Double, total: Double)?

    init() { start = Self.read() }

    var fraction: Double {
        guard let a = start, let b = Self.read(), b.total > a.total else { return .nan }
        return (b.steal - a.steal) / (b.total - a.total)
    }

    private static func read() -> (steal: Double, total: Double)? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
        else { return nil }
        let v = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard v.count >= 8 else { return nil }
        // user nice system idle iowait irq softirq steal (guest time is already in user)
        return (v[7], v[0..<8].reduce(0, +))
    }
}

struct Report {
    var fields: [(String, String)] = []

    mutating func add(_ key: String, _ value: String) { fields.append((key, "\"\(value)\"")) }
    mutating func add(_ key: String, _ value: Double) {
        fields.append((key, value.isFinite ? String(format6(value)) : "null"))
    }
    mutating func add(_ key: String, _ value: Int) { fields.append((key, String(value))) }

    func print(json: Bool) {
        if json {
            Swift.print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
        } else {
            for (k, v) in fields { Swift.print("\(k.padding(28)) \(v.replacingQuotes())") }
        }
    }

    private func format6(_ v: Double) -> String { String(format: "%.6g", v) }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
    fileprivate func replacingQuotes() -> String { filter { $0 != "\"" } }
}

struct TrainBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training samples per second on the reference workload, and the learning check.")

    @Option(help: "Which model: ae, moco, or both (one minibatch feeds one AE and one MoCo step).")
    var model: BenchModel = .ae
    @Option(help: "Learning-check steps before timing (they double as warm-up).")
    var steps = 2000
    @Option(help: "MoCo's reconstruction weight (the workload's MoCo has none: 0; a stream's default differs, to measure its cost).")
    var reconstruction: Float = 0
    @Flag(help: "MoCo with batch normalisation (moco_batch_norm; the workload's MoCo has none), to measure its cost.")
    var batchNorm = false
    @Option(help: "With --batch-norm: shuffle BN's groups (moco_batch_norm_groups), to measure its cost.")
    var batchNormGroups = 1
    @Option(help: "MoCo's i-Mix share (moco_mix; the workload's MoCo has none: 0), to measure its cost.")
    var mix: Float = 0
    @OptionGroup var options: BenchOptions

    func validate() throws {
        if !batchNormGroupsSplit(batchNormGroups, batch: ReferenceModels.batch) {
            // Any other count would fall back to one group unseen.
            throw ValidationError("--batch-norm-groups must be in 1...16 and split the batch of \(ReferenceModels.batch) into groups of two rows or more")
        }
        if batchNormGroups > 1 && !batchNorm { throw ValidationError("--batch-norm-groups needs --batch-norm") }
        if steps < 0 { throw ValidationError("--steps must not be negative") }
        if !(0...1e6).contains(reconstruction) { throw ValidationError("--reconstruction must be in 0...1e6") }
        if !(0...0.5).contains(mix) { throw ValidationError("--mix must be in 0...0.5") }
    }

    func run() throws {
        BLAS.setThreads(options.threads)
        let dim = options.dim, batch = ReferenceModels.batch
        let buffer = ReferenceBuffer(dim: dim)
        let ae = ReferenceModels.autoencoder(dim: dim)
        let moco = ReferenceModels.moco(
            dim: dim, reconstruction: reconstruction, batchNorm: batchNorm, groups: batchNormGroups, mix: mix)
        var report = Report()
        report.add("model", model.rawValue)
        if reconstruction > 0 { report.add("reconstruction", Double(reconstruction)) }
        if batchNorm { report.add("batch_norm", 1) }
        if batchNormGroups > 1 { report.add("batch_norm_groups", batchNormGroups) }
        if mix > 0 { report.add("mix", Double(mix)) }
        report.add("dim", dim)
        report.add("batch", batch)
        report.add("threads", options.threads)

        // Learning check, as WORKLOAD.md defines it (AE: steps 1-100 vs last 100; MoCo: 101-200 vs last 100).
        func check(_ name: String, firstWindow: Range<Int>, _ step: () -> Float) -> Float {
            var losses = [Float]()
            losses.reserveCapacity(steps)
            for _ in 0..<steps { losses.append(step()) }
            let first = firstWindow.clamped(to: 0..<losses.count)
            let last = max(0, losses.count - 100)..<losses.count
            func mean(_ r: Range<Int>) -> Double { r.isEmpty ? .nan : Double(losses[r].reduce(0, +)) / Double(r.count) }
            report.add("\(name)_loss_first", mean(first))
            report.add("\(name)_loss_last", mean(last))
            return losses.last ?? .nan
        }

        var finalLoss: Float = .nan
        var rate: Rate
        switch model {
        case .ae:
            finalLoss = check("ae", firstWindow: 0..<100) { ae.trainStep(buffer.next(), rows: batch) }
            rate = Rate.measure(samplesPerCall: batch, seconds: options.seconds) {
                finalLoss = ae.trainStep(buffer.next(), rows: batch)
            }
        case .moco:
            finalLoss = check("moco", firstWindow: 100..<200) { moco.trainStep(buffer.next(), rows: batch) }
            rate = Rate.measure(samplesPerCall: batch, seconds: options.seconds) {
                finalLoss = moco.trainStep(buffer.next(), rows: batch)
            }
        case .both:
            _ = check("ae", firstWindow: 0..<100) { ae.trainStep(buffer.next(), rows: batch) }
            finalLoss = check("moco", firstWindow: 100..<200) { moco.trainStep(buffer.next(), rows: batch) }
            rate = Rate.measure(samplesPerCall: batch, seconds: options.seconds) {
                let x = buffer.next()
                ae.trainStep(x, rows: batch)
                finalLoss = moco.trainStep(x, rows: batch)
            }
        }
        report.add("samples_per_second", rate.wall)
        report.add("samples_per_second_cpu", rate.cpu)
        report.add("final_loss", Double(finalLoss))

        // The ceiling: the same step's sgemm calls alone, on the same shapes.
        let gemms = GemmPlan.step(model: model, dim: dim, batch: batch)
        let gemmRate = Rate.measure(samplesPerCall: batch, seconds: min(options.seconds, 1.0)) { gemms.run() }
        report.add("sgemm_only_samples_per_second", gemmRate.wall)
        report.add("fraction_of_sgemm_limit", rate.wall / gemmRate.wall)
        report.print(json: options.json)
    }
}

struct ScoreBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Autoencoder scoring throughput (forward + per-sample MSE) at batch 1 and 256.")

    @OptionGroup var options: BenchOptions

    func run() throws {
        BLAS.setThreads(options.threads)
        let dim = options.dim
        let buffer = ReferenceBuffer(dim: dim)
        let ae = ReferenceModels.autoencoder(dim: dim)
        for _ in 0..<500 { ae.trainStep(buffer.next(), rows: ReferenceModels.batch) }
        let errors = FloatBuffer(count: 256)
        var i = 0
        let b1 = Rate.measure(samplesPerCall: 1, seconds: options.seconds) {
            ae.score(buffer.data.pointer + i * dim, rows: 1, errors: errors.pointer)
            i = (i + 1) & 4095
        }
        let b256 = Rate.measure(samplesPerCall: 256, seconds: options.seconds) {
            ae.score(buffer.data.pointer, rows: 256, errors: errors.pointer)
        }
        var report = Report()
        report.add("dim", dim)
        report.add("score_b1", b1.wall)
        report.add("score_b256", b256.wall)
        report.add("score_b1_cpu", b1.cpu)
        report.add("score_b256_cpu", b256.cpu)
        report.print(json: options.json)
    }
}

struct PipelineBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "A stream's scoring path alone (StreamPipeline.score: model, detection chain, buffer), no trainer, no sockets.",
        discussion: """
            Trains a stream on the reference stream past its warm-up, then times score() on batches of \
            --batch samples (training stays off, so the figure is what ingest spends per sample on \
            one stream besides decoding and publishing). --config measures a setting's cost, e.g. \
            a multivariate window. --without measures what parts of the detector cost: a second \
            stream without them is timed in the same run, a window each per round in alternating \
            order, and the ratio is reported.
            """)

    @OptionGroup var options: BenchOptions
    @Option(help: "Samples per score() call (1 to 4096).") var batch: Int = 256
    @Option(help: "Configuration file whose [stream] section the stream takes.") var config: String?
    @Flag(
        help: """
            Each channel one sine of period 50 with its noise instead of the workload's three: channels \
            that repeat strongly, so a setting that acts only on them (discord_peak_lag) is timed \
            (the discord runs only with --dim up to discord_channels, 8 by default).
            """)
    var cycling = false
    @Flag(
        help: """
            Each value made a count (max(0, 50·(x + 4)) rounded: whole, never negative), so that the \
            level signal, which judges counts only, is timed (with --cycling it finds their period).
            """)
    var counts = false
    @Option(help: Ablation.help) var without: String?
    @Option(help: "With --without: rounds, each a window of --seconds on both streams.") var rounds: Int = 5

    func validate() throws {
        if !(1...4096).contains(batch) { throw ValidationError("--batch must be in 1...4096") }
        if !(1...1000).contains(rounds) { throw ValidationError("--rounds must be in 1...1000") }
        if try Ablation.parts(without).isEmpty, without != nil { throw ValidationError("--without names no part") }
    }

    /// A stream trained past its warm-up on `data`, and its timed window.
    final class Timed {
        let pipeline: StreamPipeline
        let data: [Float]
        let dim: Int
        var sequence: UInt64 = 0
        var offset = 0

        init(settings: StreamConfiguration, data: [Float], dim: Int) {
            pipeline = StreamPipeline(name: "bench", settings: settings)
            (self.data, self.dim) = (data, dim)
            data.withUnsafeBufferPointer { v in
                for k in 0..<2048 {
                    _ = pipeline.score(v.baseAddress! + (k % 4096) * dim, count: 1, firstSequence: sequence)
                    sequence += 1
                    while pipeline.trainStep() {}
                }
            }
        }

        func nanosecondsPerSample(batch: Int, seconds: Double) -> Double {
            let rate = data.withUnsafeBufferPointer { v in
                Rate.measure(samplesPerCall: batch, seconds: seconds) {
                    _ = pipeline.score(v.baseAddress! + offset * dim, count: batch, firstSequence: sequence)
                    sequence &+= UInt64(batch)
                    offset = (offset + batch) % (8192 - batch)
                }
            }
            return 1e9 / rate.wall
        }
    }

    func run() throws {
        BLAS.setThreads(options.threads)
        let dim = options.dim
        let defaults = try loadConfiguration(config).streamDefaults
        // A log stream's rows are mined from lines (`eddy bench logs` measures those).
        if defaults.log { throw ValidationError("the configuration's [stream] has log = true: use eddy bench logs") }
        func settings(_ c: StreamConfiguration) throws -> StreamConfiguration {
            var s = c.resolved(dim: dim)
            s.warmupSamples = 200
            try s.validate(name: "bench")
            return s
        }
        var data = ReferenceStream(dimension: dim, seed: 1, cycling: cycling).samples(count: 8192)
        if counts { data = data.map { max(0, 50 * ($0 + 4)).rounded() } }
        let timed = Timed(settings: try settings(defaults), data: data, dim: dim)
        var report = Report()
        report.add("dim", dim)
        report.add("batch", batch)
        // How many channels the discord measures with the lag (`discord_peak_lag`): on the cycling
        // stream all of them when the lag is on, on the workload's none.
        report.add("lagged_channels", MemoryBench.laggedChannels(timed.pipeline))
        // Features the level signal judges with a period found (on counts with --cycling, all).
        let level = timed.pipeline.chain.signal(LevelSignal.self)
        report.add("level_channels", level.map { l in (0..<dim).filter { l.judges(channel: $0) && l.period(channel: $0) > 0 }.count } ?? 0)
        // The chain's signals, in order (with --without, the peer's as well: what was left out).
        func signals(_ t: Timed) -> String { t.pipeline.chain.signals.map { type(of: $0).name }.joined(separator: ",") }
        report.add("signals", signals(timed))
        guard without != nil else {
            let ns = timed.nanosecondsPerSample(batch: batch, seconds: options.seconds)
            report.add("samples_per_second", 1e9 / ns)
            report.add("ns_per_sample", ns)
            return report.print(json: options.json)
        }
        var ablated = defaults
        try Ablation.apply(without, to: &ablated)
        let peer = Timed(settings: try settings(ablated), data: data, dim: dim)
        var full: [Double] = [], lessened: [Double] = []
        for round in 0..<rounds {
            for whole in round % 2 == 0 ? [true, false] : [false, true] {
                if whole {
                    full.append(timed.nanosecondsPerSample(batch: batch, seconds: options.seconds))
                } else {
                    lessened.append(peer.nanosecondsPerSample(batch: batch, seconds: options.seconds))
                }
            }
        }
        let ratio = Rounds.ratio(full, lessened)
        report.add("without", try Ablation.parts(without).joined(separator: ","))
        report.add("signals_without", signals(peer))
        report.add("rounds", rounds)
        report.add("ns_per_sample", Rounds.median(full))
        report.add("ns_per_sample_without", Rounds.median(lessened))
        // What the parts cost a sample: the median of the rounds' differences.
        report.add("cost_ns_per_sample", Rounds.median(zip(full, lessened).map { $0 - $1 }))
        report.add("time_ratio_with_to_without", ratio.mean)
        report.add("time_ratio_interval_95", ratio.interval)
        report.add("time_ratio_by_round", ratio.rounds)
        report.print(json: options.json)
    }
}

struct MemoryBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory",
        abstract: "What a stream allocates, against the estimate the daemon's memory budget charges it.",
        discussion: """
            For each --dims value: builds a stream (the configuration's [stream] section, or the \
            defaults), scores 600 samples of the reference stream, trains 20 steps and takes its \
            snapshots, and reports \
            the bytes the allocator handed out meanwhile (glibc's mallinfo2) beside \
            StreamConfiguration.memoryEstimate, which `memory_budget` charges each stream before \
            it is built.
            """)

    @Option(help: "Stream dims (comma-separated).") var dims: String = "1,8,32,128,700,2000"
    @Option(help: "Also a log stream with this many templates at most (log_templates), fed three times as many distinct messages (0: none).")
    var logTemplates: Int = 1000
    @Option(help: "Configuration file whose [stream] section the streams take.") var config: String?
    @Flag(
        help: """
            Each channel one sine of period 50 instead of the workload's three: channels that repeat \
            strongly, whose discord keeps a lagged maximum too (discord_peak_lag; the discord runs \
            only with a dim up to discord_channels, 8 by default).
            """)
    var cycling = false
    @Flag(
        help: """
            The log stream's messages as long as max_line_bytes allows, each 128 distinct words: \
            the most a template was measured to hold, which the estimate must bound.
            """)
    var worstLines = false
    @Flag(help: "One JSON object instead of text.") var json = false

    func run() throws {
        BLAS.setThreads(1)
        let parsed = dims.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parsed.isEmpty, parsed.allSatisfy({ $0 > 0 }) else { throw ValidationError("--dims: positive integers") }
        let defaults = try loadConfiguration(config).streamDefaults
        var report = Report()
        for dim in parsed {
            var settings = defaults.resolved(dim: dim)
            settings.warmupSamples = 100
            settings.minimumBuffered = 64
            try settings.validate(name: "bench")
            let data = ReferenceStream(dimension: dim, seed: 1, cycling: cycling).samples(count: 600)
            let before = eddy_allocated_bytes()
            let pipeline = StreamPipeline(name: "bench", settings: settings)
            data.withUnsafeBufferPointer { v in
                for k in 0..<6 { _ = pipeline.score(v.baseAddress! + k * 100 * dim, count: 100, firstSequence: UInt64(k * 100)) }
            }
            for _ in 0..<20 { pipeline.trainStep() }
            _ = pipeline.takeSnapshots(now: 0)  // keeps the last good models
            let allocated = Int(eddy_allocated_bytes() &- before)
            withExtendedLifetime(pipeline) {}
            let estimate = settings.memoryEstimate
            report.add("dim_\(dim)_allocated_bytes", allocated)
            report.add("dim_\(dim)_estimate_bytes", estimate)
            report.add("dim_\(dim)_estimate_over_allocated", Double(estimate) / Double(max(allocated, 1)))
            report.add("dim_\(dim)_lagged_channels", Self.laggedChannels(pipeline))
        }
        if logTemplates > 0 {
            var settings = defaults
            settings.log = true
            settings.logTemplates = logTemplates
            settings.warmupSamples = 100
            settings = settings.resolved(dim: LogFront.dimension)
            try settings.validate(name: "bench")
            let lines = worstLines ? Self.longMessages(3 * logTemplates, bytes: settings.lineBytes) : Self.distinctMessages(3 * logTemplates)
            let before = eddy_allocated_bytes()
            let pipeline = StreamPipeline(name: "bench", settings: settings)
            for start in stride(from: 0, to: lines.count, by: 500) {
                _ = pipeline.scoreLines(Array(lines[start..<min(start + 500, lines.count)]), firstSequence: UInt64(start))
                for _ in 0..<4 { pipeline.trainStep() }
            }
            _ = pipeline.takeSnapshots(now: 0)
            let allocated = Int(eddy_allocated_bytes() &- before)
            withExtendedLifetime(pipeline) {}
            report.add("log_templates", pipeline.logs?.miner.templates.count ?? 0)
            report.add("log_allocated_bytes", allocated)
            report.add("log_estimate_bytes", settings.memoryEstimate)
            report.add("log_estimate_over_allocated", Double(settings.memoryEstimate) / Double(max(allocated, 1)))
        }
        report.print(json: json)
    }

    /// A word of letters (nothing in it is masked) for `n`, distinct for each `n`.
    static func word(_ n: Int) -> String { LetterWords.word(n) + "x" }

    /// `count` messages of about `bytes` bytes, each a template of its own: 128 words of letters
    /// (nothing masked), distinct from message to message, filling the line.
    static func longMessages(_ count: Int, bytes: Int) -> [Substring] {
        let tokens = 128, length = max(bytes / tokens - 1, 1)  // TemplateMiner.maximumTokens
        return (0..<count).map { k in
            Substring((0..<tokens).map { i in
                let w = Self.word(k * tokens + i)
                return w + String(repeating: "z", count: max(0, length - w.utf8.count))
            }.joined(separator: " "))
        }
    }

    /// How many channels a stream's discord measures with the lag (`discord_peak_lag`).
    static func laggedChannels(_ pipeline: StreamPipeline) -> Int {
        pipeline.chain.signal(MultiscaleDiscord.self)?.scales.first?.calibrators.filter { $0.lag > 0 }.count ?? 0
    }

    /// `count` messages that are each a template of their own: distinct words (no digits, so
    /// nothing is masked) in 6 to 13 tokens, with a number and an address as parameters.
    static func distinctMessages(_ count: Int) -> [Substring] {
        return (0..<count).map { k in
            let extra = (0..<(k % 8)).map { word(k * 31 + $0 * 7919) }.joined(separator: " ")
            return Substring("svc \(Self.word(k)) reported \(Self.word(k * 7 + 1)) for \(Self.word(k * 13 + 2)) \(extra) code \(k % 997) from 10.0.\(k % 256).\(k % 7)")
        }
    }
}
