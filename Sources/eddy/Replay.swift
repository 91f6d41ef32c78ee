import ArgumentParser
import Evaluation
import Foundation
import Learning
import LinearAlgebra
import Pipeline

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon's pipeline offline over a CSV and print one calibrated score per row.",
        discussion: """
            A first line with a field that is not a number is the header (without one, every column \
            is a feature); a `timestamp` column and a label column (is_anomaly, is_anomalous, label, labels, anomaly) are \
            not features (--skip names more; each skipped column but timestamp is named on standard error), and a file \
            with one other column is a \
            univariate stream, windowed with the configuration's univariate_window. Each row is scored \
            before the models learn from it, then the trainer takes every step the row earned \
            (replay_ratio / batch_size per sample; warmup_replay_ratio for the warm-up's steps, if set), so a run is deterministic. Scores are printed in \
            [0, 1], one line per data row, in order, flushed line by line (an empty line among the rows is \
            refused: it would put every later row one place off). A file that ends within the warm-up is said on standard error.
            """)

    @Argument(help: "CSV file, or - for standard input.") var file: String = "-"
    @Option(help: "Configuration file (its [stream] section and the named stream's apply).") var config: String?
    @Option(help: "Stream name, for its settings in the configuration file.") var stream: String = "replay"
    @Option(help: "Columns that are not features, besides timestamp and a label column (comma-separated names).")
    var skip: String = ""
    @Flag(help: "Print sequence, error, score, alert strength, alert and warming-up flags, and each alert's explanation, as CSV.")
    var detail = false
    @Option(help: "Also draw the series, the alert strength with the threshold, the alerts, the warm-up and the label column's runs (if the file has one) as an SVG here.") var plot: String?
    @Flag(help: "The file is a log: one score per line, as a log stream scores it (--detail adds its template and each alert's reason).")
    var log = false

    func run() throws {
        BLAS.setThreads(1)
        let configuration = try loadConfiguration(config)
        if log { return try replayLog(configuration) }
        // A log stream's rows are mined from lines (`eval` says the same): before, its CSV read
        // failed on "1 values, expected 32" (from review).
        if configuration.settings(for: stream).log {
            throw CommandFailure("stream \(stream) is a log stream in the configuration (log = true): replay its lines with --log")
        }
        var csv = CSVSamples(skipping: skip.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) })
        var run: OfflineRun?
        if detail { print("sequence,error,score,alert_score,alert,warming_up,explanation") }
        var drawn: (values: [Float], scores: [Float], alerts: [Int], warmup: Int) = ([], [], [], 0)
        var labelled: [ClosedRange<Int>] = []
        var warming = true
        for line in try readLines(file) {
            guard let values = try csv.parse(line) else { continue }
            if run == nil {
                reportSkipped(csv)
                noteUndeclared(configuration)
                let declared = configuration.settings(for: stream)
                if declared.dim > 0 && declared.dim != values.count {
                    throw CommandFailure("line \(csv.lineNumber): \(values.count) values, but stream \(stream) is declared with dim \(declared.dim)")
                }
                let settings = declared.resolved(dim: values.count)
                try settings.validate(name: stream)
                run = OfflineRun(name: stream, settings: settings)
            }
            let d = run!.pipeline.sampleDimension
            guard values.count == d else {
                throw CommandFailure("line \(csv.lineNumber): \(values.count) values, expected \(d)")
            }
            // What the daemon would refuse (SPEC 4) is not scored here either.
            guard values.allSatisfy({ abs($0) <= configuration.maxAbsValue }) else {
                throw CommandFailure("line \(csv.lineNumber): a value beyond max_abs_value \(configuration.maxAbsValue)")
            }
            let s = values.withUnsafeBufferPointer { run!.next($0.baseAddress!) }
            warming = s.warmingUp
            if plot != nil {
                drawn.values.append(values[0])
                drawn.scores.append(s.alertScore)  // what the threshold line is compared with
                if s.alert { drawn.alerts.append(Int(s.sequence)) }
                if s.warmingUp { drawn.warmup = Int(s.sequence) + 1 }
                // The label column's runs, shaded as eval's plots shade windows.
                let row = Int(s.sequence)
                if csv.label {
                    if let last = labelled.last, last.upperBound == row - 1 { labelled[labelled.count - 1] = last.lowerBound...row } else { labelled.append(row...row) }
                }
            }
            if detail {
                let pipeline = run!.pipeline
                let why = describeContributions(
                    s.topFeatures, window: pipeline.explainedWindow, scales: pipeline.settings.windowScales, separator: "; ")
                let discord = s.discordChannel.map { c in
                    "\(pipeline.sampleDimension > 1 ? "channel \(c)'s" : "the") last \(s.discordWindow) values\(s.discordLevel ? ", level and all," : "") unlike any of the last \(s.discordHistory); "
                }
                let glitch = s.glitch.map {
                    "\(GlitchGuard.reason(feature: $0.feature, value: $0.value, ranges: $0.ranges, dimension: pipeline.sampleDimension)); "
                }
                let noise = s.noiseChannel.map { "\(NoiseSignal.reason(channel: $0, factor: s.noiseFactor)); " }
                    ?? s.stuckChannel.map { "\(StuckSignal.reason(channel: $0, values: s.stuckValues)); " }
                    ?? s.surge.map { "\(SurgeSignal.reason(channel: $0.channel, run: $0.run, record: $0.record)); " }
                let cause =
                    !s.alert ? ""
                    : glitch ?? (s.beyondRange ? "beyond range at "
                    : s.fromPeriod ? "unlike \(s.period) values earlier; "
                    : s.correlationChannel.map { "\(CorrelationSignal.reason(channel: $0)); " } ?? noise ?? discord ?? "")
                // Quoted: an explanation holds commas ("the last 64 values, level and all, ...").
                print("\(s.sequence),\(s.error),\(s.score),\(s.alertScore),\(s.alert ? 1 : 0),\(s.warmingUp ? 1 : 0),\(csvQuoted(cause + why))")
            } else {
                print(String(format: "%.6f", s.score))
            }
            flushStandardOutput()
        }
        guard let run else { throw CommandFailure("no samples in \(file == "-" ? "standard input" : file)") }
        if warming {
            // Every row scored as warming up: no alert could come (a file shorter than the warm-up).
            FileHandle.standardError.write(Data(
                "eddy replay: all \(run.pipeline.accepted) rows were within the stream's warm-up, so none could alert (warmup_samples \(run.pipeline.settings.warmupSamples) and the model's warmup_steps; a sensor vector alerts from about its 340th row, a univariate stream from its 467th at the defaults)\n".utf8))
        }
        if let plot {
            let d = run.pipeline.sampleDimension
            let title = (file == "-" ? "standard input" : file) + (d > 1 ? " (feature 0 of \(d))" : "")
            let svg = SeriesPlot(
                title: title, values: drawn.values, scores: drawn.scores, threshold: run.pipeline.settings.threshold,
                windows: labelled, alerts: drawn.alerts, unscoredPrefix: drawn.warmup,
                prefixLabel: "warming up: no alerts"
            ).svg()
            do {
                try svg.write(toFile: plot, atomically: true, encoding: .utf8)
            } catch {
                throw CommandFailure("cannot write \(plot): \(fileProblem(error))")
            }
        }
    }

    /// Says on standard error when `--stream` names no section of a configuration that declares
    /// streams: a misspelt name would run on the `[stream]` defaults without a word (from review).
    func noteUndeclared(_ configuration: DaemonConfiguration) {
        guard config != nil, !configuration.streams.isEmpty, configuration.streams[stream] == nil else { return }
        let names = configuration.streams.keys.sorted().joined(separator: ", ")
        FileHandle.standardError.write(Data(
            "eddy replay: \(config!) has no [stream.\(stream)] section (it declares \(names)): \(stream) runs on the [stream] defaults\n".utf8))
    }

    /// `--log`: each line of the file scored as a log stream scores it.
    func replayLog(_ configuration: DaemonConfiguration) throws {
        var settings = configuration.settings(for: stream)
        settings.log = true
        settings = settings.resolved(dim: LogFront.dimension)
        try settings.validate(name: stream)
        var run = OfflineRun(name: stream, settings: settings)
        var reader = try LineReader(path: file)
        if detail { print("sequence,template,score,alert_score,alert,warming_up,signal,reason") }
        var drawn: (values: [Float], scores: [Float], alerts: [Int], warmup: Int) = ([], [], [], 0)
        while true {
            let batch = try reader.next()
            if batch.isEmpty { break }
            let lines = LineDecoding.decode(batch, maxBytes: configuration.maxLineBytes).lines
            for line in lines {
                let (s, template, alert) = run.next(line: line)
                if detail {
                    print(
                        "\(s.sequence),\(template),\(s.score),\(s.alertScore),\(s.alert ? 1 : 0),\(s.warmingUp ? 1 : 0),"
                            + "\(alert?.signal ?? ""),\(alert.map { csvQuoted($0.reason) } ?? "")")
                } else {
                    print(String(format: "%.6f", s.score))
                }
                if plot != nil {
                    drawn.values.append(Float(template))
                    drawn.scores.append(s.alertScore)
                    if s.alert { drawn.alerts.append(Int(s.sequence)) }
                    if s.warmingUp { drawn.warmup = Int(s.sequence) + 1 }
                }
            }
            flushStandardOutput()
        }
        // As `eddy feed --log` says it (from review: replay printed nothing and exited 0).
        guard run.pipeline.accepted > 0 else { throw CommandFailure("no lines in \(file == "-" ? "standard input" : file)") }
        if let plot {
            let svg = SeriesPlot(
                title: (file == "-" ? "standard input" : file) + " (template id per line)", values: drawn.values,
                scores: drawn.scores, threshold: settings.threshold, alerts: drawn.alerts, unscoredPrefix: drawn.warmup,
                prefixLabel: "warming up: no alerts"
            ).svg()
            do {
                try svg.write(toFile: plot, atomically: true, encoding: .utf8)
            } catch {
                throw CommandFailure("cannot write \(plot): \(fileProblem(error))")
            }
        }
    }
}

/// A CSV field, quoted when it needs to be (RFC 4180: a comma, a quote or a line break), its quotes doubled.
func csvQuoted(_ text: String) -> String {
    guard text.contains(where: { $0 == "," || $0 == "\"" || $0.isNewline }) else { return text }
    return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}
