import ArgumentParser
import EddyProtocol
import Foundation
import Learning
import Logging
import Pipeline
import SwiftProtobuf
import ZeroMQ

/// Runs `body` on a new thread; `join()` waits for it.
final class Worker: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)

    init(_ name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread { [done] in
            body()
            done.signal()
        }
        thread.name = name
        thread.start()
    }

    func join() { done.wait() }
}

/// A flag threads poll to stop.
final class StopFlag: @unchecked Sendable {
    private let lock = Lock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

func benchDaemonConfiguration() -> DaemonConfiguration {
    var c = DaemonConfiguration()
    c.ingest = "tcp://127.0.0.1:*"
    c.publish = "tcp://127.0.0.1:*"
    c.snapshots = "tcp://127.0.0.1:*"
    c.dataDirectory = ""
    c.http = ""
    return c
}

func quietLogger() -> Logger {
    var l = Logger(label: "eddy.bench")
    l.logLevel = .error
    return l
}

struct IngestBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Samples per second accepted by a live daemon (decoded, scored, buffered, published) with "
            + "training running, beside raw libzmq PUSH/PULL with the same messages in the same run.")

    @Option(help: "Samples per message; 0 runs both 256 and 1.") var batch: Int = 0
    @Option(help: "Features per sample.") var dim: Int = 32
    @Option(help: "Seconds per measurement.") var seconds: Double = 3
    @Flag(inversion: .prefixedNo, help: "Run a subscriber that receives and decodes every score (it shares the CPU).")
    var subscriber = true
    @Flag(help: "One JSON object per measurement.") var json = false
    @Option(help: "Configuration file whose [stream] section the bench stream takes (to measure a setting's cost).")
    var config: String?
    @Option(help: ArgumentHelp(
        "Measure the HTTP endpoint's cost instead: this many rounds, each a window of --seconds on a daemon "
            + "without it and one on a daemon with it (scraped every second), in alternating order.", valueName: "rounds"))
    var metricsRounds = 0

    func validate() throws {
        try validateBenchShape(dim: dim, seconds: seconds)
        let limit = DaemonConfiguration().maxSamplesPerMessage
        if !(0...limit).contains(batch) { throw ValidationError("--batch must be in 0...\(limit) (max_samples_per_message)") }
        if metricsRounds < 0 { throw ValidationError("--metrics-rounds must not be negative") }
    }

    func run() throws {
        let streamDefaults = try loadConfiguration(config).streamDefaults
        if metricsRounds > 0 { return try compareMetrics(streamDefaults: streamDefaults) }
        for b in batch > 0 ? [batch] : [256, 1] {
            var report = Report()
            report.add("batch", b)
            report.add("dim", dim)
            report.add("subscriber", subscriber ? "yes" : "no")
            // A producer numbers its samples: 1,024 messages with consecutive sequence numbers, sent
            // round and round (the numbering restarts once per round).
            let values = (0..<(b * dim)).map { sinf(Float($0) * 0.1) }
            let messages = try (0..<1024).map {
                try sampleFrames(stream: "bench", sequence: UInt64($0 * b), dim: dim, values: values)
            }
            let daemon = try measureDaemon(messages: messages, samplesPerMessage: b, streamDefaults: streamDefaults)
            let ceiling = try measureRawPushPull(message: messages[0], samplesPerMessage: b)
            report.add("samples_per_second", daemon.rate)
            report.add("scores_received_per_second", daemon.scoresRate)
            report.add("train_steps_per_second", daemon.stepsRate)
            report.add("alerts_per_second", daemon.alertsRate)
            report.add("libzmq_push_pull_samples_per_second", ceiling)
            report.add("fraction_of_libzmq", daemon.rate / ceiling)
            report.add("cpu_steal_fraction", daemon.steal)
            report.print(json: json)
        }
    }

    /// The endpoint's cost. On this machine a daemon's rate drifts by up to ±30 % from one run to the
    /// next, far more than what is measured, so both daemons stay up and one producer feeds them in
    /// turn, a window each per round (the order alternating, so that neither always follows the
    /// other), with a pause between windows for queues to drain: slow drift hits both alike. The
    /// ratio is `Rounds.ratio`'s.
    func compareMetrics(streamDefaults: StreamConfiguration) throws {
        for b in batch > 0 ? [batch] : [256, 1] {
            let values = (0..<(b * dim)).map { sinf(Float($0) * 0.1) }
            let messages = try (0..<1024).map {
                try sampleFrames(stream: "bench", sequence: UInt64($0 * b), dim: dim, values: values)
            }
            var daemons: [Daemon] = []
            defer { for d in daemons { d.stop() } }
            for metrics in [false, true] {
                var configuration = benchDaemonConfiguration()
                configuration.streamDefaults = streamDefaults
                if metrics { configuration.http = "127.0.0.1:0" }
                let d = try Daemon(configuration: configuration, logger: quietLogger())
                daemons.append(d)
            }
            let endpoints = try daemons.map { try $0.start() }
            let stop = StopFlag(), target = Target()
            let scrapes = Counter(), http = daemons[1].httpEndpoint!
            var workers = endpoints.map { scoreSubscriber($0.publish, stop: stop) { _ in } }
            workers.append(Worker("bench-scrape") {
                while !stop.isSet {
                    if (try? HTTPProbe.get(http, "/metrics"))?.status == 200, (try? HTTPProbe.get(http, "/healthz"))?.status == 200 {
                        scrapes.add()
                    }
                    for _ in 0..<20 where !stop.isSet { Thread.sleep(forTimeInterval: 0.05) }
                }
            })
            workers.append(Worker("bench-push") {
                guard let context = try? Context(), let off = try? Socket(context, .push), let on = try? Socket(context, .push)
                else { return }
                // Small queues: a paused producer leaves little behind to drain.
                try? off.setHighWaterMarks(send: 64, receive: 64)
                try? on.setHighWaterMarks(send: 64, receive: 64)
                try? off.setSendTimeout(milliseconds: 50)
                try? on.setSendTimeout(milliseconds: 50)
                try? off.connect(endpoints[0].ingest)
                try? on.connect(endpoints[1].ingest)
                var next = 0
                while !stop.isSet {
                    let t = target.value
                    guard t >= 0 else {
                        Thread.sleep(forTimeInterval: 0.001)
                        continue
                    }
                    for _ in 0..<16 {
                        if t == 0 { _ = try? off.send(messages[next]) } else { _ = try? on.send(messages[next]) }
                        next = (next + 1) % messages.count
                    }
                }
            })
            func window(_ k: Int) -> (rate: Double, cpu: Double) {
                target.value = k
                Thread.sleep(forTimeInterval: 0.2)
                let a0 = daemons[k].samplesAccepted.load, c0 = daemons[k].cpuSeconds()[.ingest] ?? 0, start = Date()
                Thread.sleep(forTimeInterval: seconds)
                let a1 = daemons[k].samplesAccepted.load, c1 = daemons[k].cpuSeconds()[.ingest] ?? 0
                let elapsed = Date().timeIntervalSince(start)
                target.value = -1
                Thread.sleep(forTimeInterval: 0.3)
                return (Double(a1 - a0) / elapsed, (c1 - c0) / Double(max(1, a1 - a0)))
            }
            _ = (window(0), window(1))  // warm-up: streams created, trainers running
            var off: [(rate: Double, cpu: Double)] = [], on: [(rate: Double, cpu: Double)] = []
            for round in 0..<metricsRounds {
                for k in round % 2 == 0 ? [0, 1] : [1, 0] {
                    let w = window(k)
                    if k == 1 { on.append(w) } else { off.append(w) }
                }
            }
            stop.set()
            for w in workers { w.join() }

            let rates = Rounds.ratio(on.map(\.rate), off.map(\.rate)), cpu = Rounds.ratio(on.map(\.cpu), off.map(\.cpu))
            var report = Report()
            report.add("batch", b)
            report.add("dim", dim)
            report.add("rounds", metricsRounds)
            report.add("window_seconds", seconds)
            report.add("samples_per_second_http_off", Rounds.median(off.map(\.rate)))
            report.add("samples_per_second_http_on", Rounds.median(on.map(\.rate)))
            report.add("rate_ratio_on_to_off", rates.mean)
            report.add("rate_ratio_interval_95", rates.interval)
            report.add("rate_ratio_by_round", rates.rounds)
            // The ingest thread's CPU time per sample: what the endpoint adds where samples flow.
            report.add("ingest_cpu_ns_per_sample_http_off", Rounds.median(off.map(\.cpu)) * 1e9)
            report.add("ingest_cpu_ns_per_sample_http_on", Rounds.median(on.map(\.cpu)) * 1e9)
            report.add("ingest_cpu_ratio_on_to_off", cpu.mean)
            report.add("ingest_cpu_ratio_interval_95", cpu.interval)
            report.add("ingest_cpu_ratio_by_round", cpu.rounds)
            report.add("scrapes", Int(scrapes.load))
            report.print(json: json)
        }
    }

    /// With `--subscriber`, a thread that receives and decodes every score batch until `stop`.
    func scoreSubscriber(_ publish: String, stop: StopFlag, _ take: @escaping @Sendable (Eddy_V1_ScoreBatch) -> Void) -> Worker {
        let subscribe = subscriber
        return Worker("bench-sub") {
            guard subscribe, let context = try? Context(), let sub = try? Socket(context, .sub) else { return }
            try? sub.setHighWaterMarks(send: 1_000_000, receive: 1_000_000)
            try? sub.subscribe("score/")
            try? sub.connect(publish)
            while !stop.isSet {
                guard (try? sub.poll(timeout: 50)) == true else { continue }
                while let frames = try? sub.receive(dontWait: true) {
                    if frames.count == 2, let batch = try? Eddy_V1_ScoreBatch(serializedBytes: frames[1]) { take(batch) }
                }
            }
        }
    }

    /// Which daemon the producer feeds (-1: none).
    final class Target: @unchecked Sendable {
        private let lock = Lock()
        private var index = -1
        var value: Int {
            get { lock.withLock { index } }
            set { lock.withLock { index = newValue } }
        }
    }

    /// Floods a live daemon from one producer for `seconds`; counts accepted samples, with a
    /// subscriber receiving every score.
    func measureDaemon(messages: [[[UInt8]]], samplesPerMessage: Int, streamDefaults: StreamConfiguration) throws
        -> (rate: Double, scoresRate: Double, stepsRate: Double, alertsRate: Double, steal: Double)
    {
        var configuration = benchDaemonConfiguration()
        configuration.streamDefaults = streamDefaults
        let daemon = try Daemon(configuration: configuration, logger: quietLogger())
        let endpoints = try daemon.start()
        defer { daemon.stop() }
        let stop = StopFlag()
        let scores = Counter(), alerts = Counter()
        let subscriberThread = scoreSubscriber(endpoints.publish, stop: stop) { batch in
            scores.add(UInt64(batch.count))
            alerts.add(UInt64(batch.alerts.lazy.filter { $0 }.count))
        }
        let producer = Worker("bench-push") {
            guard let context = try? Context(), let push = try? Socket(context, .push) else { return }
            try? push.setHighWaterMarks(send: 10_000, receive: 10_000)
            try? push.setSendTimeout(milliseconds: 50)  // block while the daemon is busy, wake to stop
            try? push.connect(endpoints.ingest)
            while !stop.isSet {
                for message in messages { _ = try? push.send(message) }
            }
        }
        Thread.sleep(forTimeInterval: 1)  // warm-up: stream created, trainer running
        let a0 = daemon.samplesAccepted.load, s0 = scores.load, t0 = daemon.trainSteps.load, l0 = alerts.load
        let steal = StealMeter()
        let start = Date()
        Thread.sleep(forTimeInterval: seconds)
        let elapsed = Date().timeIntervalSince(start)
        let a1 = daemon.samplesAccepted.load, s1 = scores.load, t1 = daemon.trainSteps.load, l1 = alerts.load
        stop.set()
        producer.join()
        subscriberThread.join()
        return (
            Double(a1 - a0) / elapsed, Double(s1 - s0) / elapsed, Double(t1 - t0) / elapsed, Double(l1 - l0) / elapsed,
            steal.fraction
        )
    }

    /// The same messages through bare libzmq: one PUSH thread, one PULL thread that only receives.
    func measureRawPushPull(message: [[UInt8]], samplesPerMessage: Int) throws -> Double {
        let context = try Context()
        let stop = StopFlag()
        let received = Counter()
        let ready = DispatchSemaphore(value: 0)
        let endpoint = Promise<String>()
        let puller = Worker("raw-pull") {
            do {
                let pull = try Socket(context, .pull)
                try pull.setHighWaterMarks(send: 10_000, receive: 10_000)
                endpoint.fulfil(try pull.bind("tcp://127.0.0.1:*"))
                var n: UInt64 = 0
                while !stop.isSet {
                    guard try pull.poll(timeout: 50) else { continue }
                    while try pull.receive(dontWait: true) != nil {
                        n += 1
                        if n % 64 == 0 { received.add(64) }
                    }
                }
            } catch {
                endpoint.fail(error)
            }
            ready.signal()
        }
        let target = try endpoint.wait()
        let pusher = Worker("raw-push") {
            guard let push = try? Socket(context, .push) else { return }
            try? push.setHighWaterMarks(send: 10_000, receive: 10_000)
            try? push.setSendTimeout(milliseconds: 50)
            try? push.connect(target)
            while !stop.isSet {
                for _ in 0..<100 { _ = try? push.send(message) }
            }
        }
        Thread.sleep(forTimeInterval: 0.5)
        let r0 = received.load
        let start = Date()
        Thread.sleep(forTimeInterval: min(seconds, 2))
        let rate = Double(received.load - r0) / Date().timeIntervalSince(start) * Double(samplesPerMessage)
        stop.set()
        pusher.join()
        puller.join()
        return rate
    }
}

struct LatencyBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latency",
        abstract: "Producer send to score arrival at a subscriber, at a fixed offered load with training "
            + "running, beside the same path through a bare libzmq forwarder in the same run.")

    @Option(help: "Offered load, samples per second (single-sample messages).") var rate: Double = 10_000
    @Option(help: "Features per sample.") var dim: Int = 32
    @Option(help: "Seconds measured, after one second of warm-up.") var seconds: Double = 5
    @Flag(inversion: .prefixedNo, help: "Train while measuring (--no-training: replay_ratio 0, scoring only).")
    var training = true
    @Flag(help: "One JSON object.") var json = false

    func validate() throws {
        try validateBenchShape(dim: dim, seconds: seconds)
        // 1/0 made the second send's wait infinite: the bench hung past --seconds (from review).
        if !(rate >= 1 && rate <= 1e7) { throw ValidationError("--rate must be in 1...1e7 samples per second") }
    }

    func run() throws {
        var configuration = benchDaemonConfiguration()
        if !training { configuration.streamDefaults.replayRatio = 0 }
        let daemon = try Daemon(configuration: configuration, logger: quietLogger())
        let endpoints = try daemon.start()
        let steal = StealMeter()
        let eddy = try measure(ingest: endpoints.ingest, publish: endpoints.publish, topic: "score/")
        let steps = daemon.trainSteps.load
        let stealFraction = steal.fraction
        daemon.stop()
        let raw = try measureForwarder()
        var report = Report()
        report.add("offered_samples_per_second", rate)
        report.add("training", training ? "yes" : "no")
        report.add("dim", dim)
        report.add("samples_measured", eddy.count)
        report.add("p50_ms", eddy.percentile(0.50))
        report.add("p99_ms", eddy.percentile(0.99))
        report.add("p999_ms", eddy.percentile(0.999))
        report.add("max_ms", eddy.last ?? .nan)
        report.add("train_steps", Int(steps))
        report.add("libzmq_forwarder_p50_ms", raw.percentile(0.50))
        report.add("libzmq_forwarder_p99_ms", raw.percentile(0.99))
        report.add("cpu_steal_fraction", stealFraction)
        report.print(json: json)
    }

    static func nowNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Sends one sample every 1/rate s with its send time as timestamp; returns sorted latencies (ms)
    /// of the scores that came back after the warm-up second.
    func measure(ingest: String, publish: String, topic: String) throws -> [Double] {
        let stop = StopFlag()
        // (send time, latency in ms) of every score; those sent in the first second are the warm-up,
        // counted from the first send (it was counted from here, before the subscription's 0.3 s).
        let collected = Promise<[(sent: Int64, ms: Double)]>()
        let subscribed = DispatchSemaphore(value: 0)
        let subscriber = Worker("latency-sub") {
            guard let context = try? Context(), let sub = try? Socket(context, .sub) else {
                collected.fulfil([])
                subscribed.signal()
                return
            }
            try? sub.subscribe(topic)
            try? sub.connect(publish)
            subscribed.signal()
            var local: [(sent: Int64, ms: Double)] = []
            while !stop.isSet {
                guard (try? sub.poll(timeout: 20)) == true else { continue }
                while let frames = try? sub.receive(dontWait: true),
                    let batch = try? Eddy_V1_ScoreBatch(serializedBytes: frames[1])
                {
                    let now = Self.nowNanoseconds()
                    for t in batch.timestampsNs { local.append((t, Double(now - t) / 1e6)) }
                }
            }
            collected.fulfil(local)
        }
        subscribed.wait()
        Thread.sleep(forTimeInterval: 0.3)  // the subscription reaches the publisher
        let context = try Context()
        let push = try Socket(context, .push)
        try push.connect(ingest)
        let values = (0..<dim).map { Float($0) * 0.01 }
        let interval = 1 / rate
        let start = Date()
        let warmupEnd = Self.nowNanoseconds() + 1_000_000_000
        var sent = 0
        while Date().timeIntervalSince(start) < seconds + 1 {
            let due = start.addingTimeInterval(Double(sent) * interval)
            // Sleep, never spin: a spinning producer would take the CPU the daemon is measured on.
            let wait = due.timeIntervalSinceNow
            if wait > 0 { Thread.sleep(forTimeInterval: wait) }
            try push.send(
                try sampleFrames(
                    stream: "latency", sequence: UInt64(sent), dim: dim, values: values,
                    timestamps: [Self.nowNanoseconds()]))
            sent += 1
        }
        Thread.sleep(forTimeInterval: 0.5)
        stop.set()
        subscriber.join()
        return try collected.wait().filter { $0.sent > warmupEnd }.map(\.ms).sorted()
    }

    /// The same sockets and message sizes through a bare forwarder (PULL → decode nothing → PUB).
    func measureForwarder() throws -> [Double] {
        let context = try Context()
        let stop = StopFlag()
        let endpoints = Promise<[String]>()
        let forwarder = Worker("forwarder") {
            do {
                let pull = try Socket(context, .pull)
                let pub = try Socket(context, .pub)
                endpoints.fulfil([try pull.bind("tcp://127.0.0.1:*"), try pub.bind("tcp://127.0.0.1:*")])
                while !stop.isSet {
                    guard try pull.poll(timeout: 20) else { continue }
                    while let frames = try pull.receive(dontWait: true) {
                        // Re-frame as a score batch carrying the producer's timestamp, as the daemon would.
                        let batch = try Eddy_V1_SampleBatch(serializedBytes: frames[1])
                        var scores = Eddy_V1_ScoreBatch()
                        scores.count = 1
                        scores.scores = [0.5]
                        scores.errors = [0]
                        scores.timestampsNs = batch.timestampsNs
                        try pub.send([Array("score/latency/".utf8), try scores.serializedBytes()])
                    }
                }
            } catch {
                endpoints.fail(error)
            }
        }
        let bound = try endpoints.wait()
        let result = try measure(ingest: bound[0], publish: bound[1], topic: "score/")
        stop.set()
        forwarder.join()
        return result
    }
}

extension Array where Element == Double {
    /// The value at quantile `q` of a sorted array.
    func percentile(_ q: Double) -> Double {
        isEmpty ? .nan : self[Swift.min(count - 1, Int(Double(count - 1) * q))]
    }
}
