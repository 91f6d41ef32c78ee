import EddyProtocol
import Foundation
import Learning
import Pipeline
import SwiftProtobuf
import Testing

/// A synthetic service log: requests with a duration, cache figures, a heartbeat every 10 lines
/// and a rare disk warning (1 line in 100), from a seeded generator.
struct ServiceLog {
    var random = RandomSource(seed: 7)
    var line = 0

    mutating func next() -> String {
        line += 1
        if line % 10 == 0 { return "INFO heartbeat: node 3 alive uptime \(line)" }
        let r = random.uniform()
        if r < 0.6 { return "INFO worker-\(random.index(below: 4)): processed request \(random.index(below: 100_000)) in \(5 + random.index(below: 45)) ms" }
        if r < 0.99 { return "DEBUG cache: \(random.index(below: 1000)) hits \(random.index(below: 100)) misses" }
        return "WARN disk: usage at \(80 + random.index(below: 10)) percent on /data"
    }
}

/// Settings that warm up within a few hundred lines.
func logSettings(_ edit: (inout StreamConfiguration) -> Void = { _ in }) -> StreamConfiguration {
    var s = StreamConfiguration()
    s.log = true
    s.batchSize = 16
    s.minimumBuffered = 16
    s.bufferCapacity = 512
    s.mocoQueue = 64
    s.logWarmupSamples = 200
    s.rangeWarmup = 200
    s.logWarmupSteps = 5
    edit(&s)
    return s.resolved(dim: LogFront.dimension)
}

/// Runs `count` normal lines, then `fault` lines; returns the alerts among the fault lines.
func alerts(
    settings: StreamConfiguration = logSettings(), normal count: Int = 1500, fault: [String],
    timestamps: ((Int) -> Int64)? = nil
) -> (alerts: [(index: Int, alert: LogAlert)], run: OfflineRun, normalAlerts: Int) {
    var run = OfflineRun(name: "app", settings: settings)
    var log = ServiceLog()
    var normalAlerts = 0
    for i in 0..<count where run.next(line: Substring(log.next()), timestamp: timestamps?(i)).score.alert { normalAlerts += 1 }
    var found: [(Int, LogAlert)] = []
    for (k, line) in fault.enumerated() {
        let (s, _, alert) = run.next(line: Substring(line), timestamp: timestamps?(count + k))
        if s.alert {
            #expect(alert != nil, "every log alert has its reason")
            if let alert { found.append((k, alert)) }
        }
    }
    return (found, run, normalAlerts)
}

@Suite struct LogStreamTests {
    @Test func linesAreRepairedAndCutAtACharacterBoundaryAndCounted() {
        let raw = [Data("plain".utf8), Data([0x61, 0xFF, 0x62]), Data("ab€cd".utf8), Data("x".utf8)]
        let d = LineDecoding.decode(raw, maxBytes: 4)
        #expect(d.lines == ["plai", "a\u{FFFD}", "ab", "x"])  // "a\u{FFFD}b" is 5 bytes; "ab€" would be 5
        #expect(d.truncated == 3 && d.repaired == 1)
        let whole = LineDecoding.decode(raw, maxBytes: 100)
        #expect(whole.lines == ["plain", "a\u{FFFD}b", "ab€cd", "x"] && whole.truncated == 0)
    }

    @Test func numbersAmongParametersAreReadOnlyWhenTheyAreOneNumber() {
        let cases: [(String, Double?)] = [
            ("1234", 1234), ("size=1234", 1234), ("12.5ms", 12.5), ("[24200]:", 24200), ("-3", -3),
            ("10.0.0.1:80", nil), ("0x1f", nil), ("06:55:46", nil), ("blk_-160", -160), ("word", nil), ("12.", nil),
        ]
        for (text, value) in cases {
            #expect(LogFront.number(Substring(text)) == value, "\(text)")
        }
        // Random numbers of 1 to 20 digits, signed, with decimals, inside words: the value a digit
        // by digit sum in Doubles gives, to the bit (18 digits at most; more is no number).
        func reference(_ s: String) -> Double? {
            var value = 0.0, scale = 0.0, digits = 0, negative = false, state = 0
            for c in s.utf8 {
                let isDigit = c >= 48 && c <= 57
                switch state {
                case 0:
                    if isDigit { (state, value, digits) = (1, Double(c - 48), 1) } else { negative = c == 45 }
                case 1:
                    if isDigit {
                        value = value * 10 + Double(c - 48)
                        digits += 1
                        if scale > 0 { scale *= 10 }
                    } else if c == 46 && scale == 0 { scale = 1 } else { state = 2 }
                default:
                    if isDigit { return nil }
                }
            }
            guard digits > 0, digits <= 18, scale != 1 else { return nil }
            if scale > 1 { value /= scale }
            return negative ? -value : value
        }
        var seed: UInt64 = 4
        func next(_ n: Int) -> Int {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Int((seed >> 33) % UInt64(n))
        }
        for _ in 0..<5000 {
            let length = 1 + next(20)
            var digits = (0..<length).map { _ in String(next(10)) }
            if next(2) == 0 { digits.insert(".", at: next(length + 1)) }
            let text = ["", "-", "x=", "a-"][next(4)] + digits.joined() + ["", "ms", ",", ".x"][next(4)]
            #expect(LogFront.number(Substring(text))?.bitPattern == reference(text)?.bitPattern, "\(text)")
        }
    }

    @Test func aNewTemplateAfterAQuietStretchAlertsWithItsText() {
        let run = alerts(normal: 3000, fault: ["ERROR kernel: EXT4-fs error (device sda1): ext4_find_entry: reading directory lblock 0"])
        #expect(run.normalAlerts <= 2, "few false alarms on the unchanged log")
        #expect(run.alerts.count == 1)
        let a = run.alerts.first?.alert
        #expect(a?.signal == "template")
        #expect(a?.reason.hasPrefix("new template \"ERROR kernel: EXT4-fs error (device sda1): ext4_find_entry: reading directory lblock <*>\"") == true)
        #expect(a?.line.hasPrefix("ERROR kernel: EXT4-fs") == true)
    }

    @Test func aNumberFarBeyondItsTemplatesRangeAlertsAndOneWithinDoesNot() {
        let inside = alerts(fault: ["INFO worker-1: processed request 77 in 48 ms"])
        #expect(inside.alerts.isEmpty)
        let run = alerts(fault: ["INFO worker-1: processed request 77 in 52000 ms"])
        #expect(run.alerts.count == 1)
        let a = run.alerts.first?.alert
        #expect(a?.signal == "parameter")
        #expect(a?.reason.contains("is 52000, usually about") == true, "\(a?.reason ?? "")")
        #expect(a?.template.contains("processed request <*> in <*> ms") == true)
    }

    @Test func aBurstOfARareMessageAlertsOnceWithItsRate() {
        let burst = Array(repeating: "WARN disk: usage at 99 percent on /data", count: 50)
        let run = alerts(fault: burst)
        let bursts = run.alerts.filter { $0.alert.signal == "burst" }
        #expect(bursts.count == 1, "one alert for the burst, not one per line")
        #expect(bursts.first.map { $0.alert.reason.contains("x its usual rate") } == true)
    }

    @Test func aRegularMessageGoneSilentAlertsInLinesAndWithTimestampsInSeconds() {
        // The heartbeat comes every 10 lines; 80 lines without it.
        var log = ServiceLog()
        log.line = 1
        var quiet: [String] = []
        while quiet.count < 80 {
            let l = log.next()
            if !l.contains("heartbeat") { quiet.append(l) }
        }
        let run = alerts(fault: quiet)
        let silences = run.alerts.filter { $0.alert.signal == "silence" }
        #expect(silences.count == 1)
        // Steady gaps of 10 lines: overdue after silence_factor (5) of them.
        #expect(silences.first.map { $0.index >= 40 && $0.index < 60 } == true, "after 50 lines")
        #expect(silences.first?.alert.reason.contains("usually every 10 lines, none for") == true)
        #expect(silences.first?.alert.template.hasPrefix("INFO heartbeat: node") == true)
        // With timestamps, one line a second: the same silence in seconds.
        let timed = alerts(fault: quiet, timestamps: { Int64($0) * 1_000_000_000 })
        #expect(timed.alerts.first { $0.alert.signal == "silence" }?.alert.reason.contains("usually every 10s, none for") == true)
    }

    @Test func eachSignalCanBeLeftOut() {
        let without = logSettings { $0.signals.removeAll { $0 == TemplateSignal.name } }
        let run = alerts(settings: without, fault: ["ERROR kernel: EXT4-fs error (device sda1): ext4_find_entry: reading directory lblock 0"])
        #expect(!run.alerts.contains { $0.alert.signal == "template" })
        #expect(StreamPipeline(name: "x", settings: without).chain.signal(TemplateSignal.self) == nil)
        #expect(StreamPipeline(name: "x", settings: logSettings()).chain.signal(TemplateSignal.self) != nil)
    }

    @Test func aCheckpointKeepsTemplatesTheirIdsAndEverySignalsState() throws {
        let settings = logSettings()
        var run = OfflineRun(name: "app", settings: settings)
        var log = ServiceLog()
        var ids: [String: UInt32] = [:]
        for _ in 0..<600 {
            let line = log.next()
            ids[String(line.prefix(12))] = run.next(line: Substring(line)).template
        }
        let bytes = run.pipeline.serialized()
        let restored = try StreamPipeline.restore(bytes, settings: settings)
        #expect(restored.serialized() == bytes)
        #expect(restored.logs?.miner.templates.count == run.pipeline.logs?.miner.templates.count)
        // The same lines go on in both: the same templates, scores and alerts; a new template gets
        // the next id in both.
        for k in 0..<300 {
            let line = k == 150 ? "FATAL storage: replica 3 lost" : log.next()
            let a = run.pipeline.scoreLines([Substring(line)], firstSequence: UInt64(600 + k))
            let b = restored.scoreLines([Substring(line)], firstSequence: UInt64(600 + k))
            #expect(a.templateIDs == b.templateIDs && a.scores == b.scores && a.alerts == b.alerts)
            if k != 150 { #expect(a.templateIDs[0] == ids[String(line.prefix(12))] ?? a.templateIDs[0]) }
            while run.pipeline.trainStep() {}
            while restored.trainStep() {}
        }
        #expect(restored.serialized() == run.pipeline.serialized())
    }

    /// From review: a body's stream field that differs from frame 0 is quoted in the error by its
    /// first 64 bytes and its length. It was quoted whole: a 1 MiB field made a 1 MiB error message
    /// and log line, and SPEC 9 bounds the publish queue by messages of 20,992 bytes at most.
    @Test(arguments: ["samples", "lines", "labels"])
    func aStreamFieldThatDiffersIsQuotedShort(kind: String) throws {
        let long = String(repeating: "é", count: 1 << 19)  // 1 MiB of UTF-8
        let body: [UInt8]
        switch kind {
        case "samples":
            var b = Eddy_V1_SampleBatch()
            (b.stream, b.dim, b.count, b.values) = (long, 1, 1, Wire.bytes([1]))
            body = try b.serializedBytes()
        case "lines":
            var b = Eddy_V1_LineBatch()
            (b.stream, b.lines) = (long, [Data("a line".utf8)])
            body = try b.serializedBytes()
        default:
            var b = Eddy_V1_LabelBatch()
            (b.stream, b.dim, b.values, b.labels) = (long, 1, Wire.bytes([1]), ["a"])
            body = try b.serializedBytes()
        }
        let verdict = Admission.check(
            [Array("a".utf8), body], configuration: DaemonConfiguration(),
            lookup: { _, _, _ in .failure(.init(code: .notFound, why: "no")) })
        guard case .rejected(.undecodable, let why, _, _, _) = verdict else {
            Issue.record("refused as UNDECODABLE, got \(verdict)")
            return
        }
        #expect(why.utf8.count < 200 && why.contains("\(long.utf8.count) bytes") && why.contains("éé"), "\(why.prefix(300))")
    }

    @Test func aLineBatchIsAdmittedToALogStreamOnlyAndSamplesAreNot() throws {
        var c = DaemonConfiguration()
        c.maxLineBytes = 16
        var streams: [String: StreamPipeline] = [:]
        func lookup(_ name: String, _ dim: Int, _ log: Bool) -> Result<StreamPipeline, Admission.Refusal> {
            if let s = streams[name] {
                return s.settings.log == log ? .success(s) : .failure(.init(code: .wrongKind, why: "kind"))
            }
            var settings = logSettings()
            settings.log = log
            let s = StreamPipeline(name: name, settings: settings.resolved(dim: dim))
            streams[name] = s
            return .success(s)
        }
        var batch = Eddy_V1_LineBatch()
        batch.stream = "app"
        batch.sequence = 9
        batch.lines = [Data("a line that is longer than sixteen bytes".utf8), Data([0x6F, 0x6B, 0xC3])]
        let frames: [[UInt8]] = [Array("app".utf8), try batch.serializedBytes()]
        guard case .lines(let s, let b, let lines, let truncated, let repaired) = Admission.check(frames, configuration: c, lookup: lookup)
        else {
            Issue.record("a LineBatch is admitted")
            return
        }
        #expect(s.settings.log && b.sequence == 9 && lines == ["a line that is l", "ok\u{FFFD}"] && truncated == 1 && repaired == 1)

        var samples = Eddy_V1_SampleBatch()
        samples.stream = "app"
        samples.dim = 1
        samples.count = 1
        samples.values = Wire.bytes([1])
        let wrong = Admission.check([Array("app".utf8), try samples.serializedBytes()], configuration: c, lookup: lookup)
        guard case .rejected(.wrongKind, _, _, _, _) = wrong else {
            Issue.record("samples to a log stream are rejected as WRONG_KIND, got \(wrong)")
            return
        }
        samples.stream = "pump"
        guard case .accepted = Admission.check([Array("pump".utf8), try samples.serializedBytes()], configuration: c, lookup: lookup) else {
            Issue.record("samples make a sample stream")
            return
        }
        // Samples with a stray field 8 are samples (SPEC 4.1: a LineBatch has no dim or values).
        var stray: [UInt8] = try samples.serializedBytes()
        stray += [0x42, 0x01, 0x78]  // field 8, "x"
        samples.sequence = 1
        var strayLater: [UInt8] = try samples.serializedBytes()
        strayLater.insert(contentsOf: [0x42, 0x01, 0x78], at: 0)  // before dim and values
        for body in [stray, strayLater] {
            let read = Admission.check([Array("pump".utf8), body], configuration: c, lookup: lookup)
            guard case .accepted = read else {
                Issue.record("samples with a stray field 8 are samples, got \(read)")
                return
            }
        }
        batch.stream = "pump"
        let lines2 = Admission.check([Array("pump".utf8), try batch.serializedBytes()], configuration: c, lookup: lookup)
        guard case .rejected(.wrongKind, _, _, _, _) = lines2 else {
            Issue.record("lines to a sample stream are rejected as WRONG_KIND, got \(lines2)")
            return
        }
        batch.timestampsNs = [1]
        batch.stream = "app"
        guard case .rejected(.undecodable, _, _, _, 2) = Admission.check([Array("app".utf8), try batch.serializedBytes()], configuration: c, lookup: lookup)
        else {
            Issue.record("one timestamp for two lines is undecodable")
            return
        }
    }

    /// LineBatch{stream "s", sequence 5, lines ["ab", "c"]}, encoded by hand from the schema: field 8
    /// (lines) is what tells it from a SampleBatch, which reserves it.
    @Test func aLineBatchHasTheseBytes() throws {
        let golden: [UInt8] = [0x0A, 0x01, 0x73, 0x10, 0x05, 0x42, 0x02, 0x61, 0x62, 0x42, 0x01, 0x63]
        var b = Eddy_V1_LineBatch()
        b.stream = "s"
        b.sequence = 5
        b.lines = [Data("ab".utf8), Data("c".utf8)]
        #expect(try b.serializedBytes() == golden)
        let asSamples = try Eddy_V1_SampleBatch(serializedBytes: golden)
        #expect(asSamples.dim == 0 && asSamples.count == 0 && !asSamples.unknownFields.data.isEmpty)
    }
}
