import ArgumentParser
import Foundation
import Learning
import LinearAlgebra
import Pipeline

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon's pipeline offline over a CSV and print one calibrated score per row.",
        discussion: """
            The CSV needs a header; a `timestamp` column is ignored, and a file with one other column is a \
            univariate stream, windowed with the configuration's univariate_window. Each row is scored \
            before the models learn from it, then the trainer takes every step the row earned \
            (replay_ratio / batch_size per sample), so a run is deterministic. Scores are printed in \
            [0, 1], one line per data row, in order, flushed line by line.
            """)

    @Argument(help: "CSV file, or - for standard input.") var file: String = "-"
    @Option(help: "Configuration file (its [stream] section and the named stream's apply).") var config: String?
    @Option(help: "Stream name, for its settings in the configuration file.") var stream: String = "replay"
    @Flag(help: "Print sequence, error, score, alert and warming-up flags as CSV instead of the score alone.")
    var detail = false

    func run() throws {
        BLAS.setThreads(1)
        let configuration = try loadConfiguration(config)
        var csv = CSVSamples()
        var run: OfflineRun?
        if detail { print("sequence,error,score,alert,warming_up") }
        for line in try readLines(file) {
            guard let values = try csv.parse(line) else { continue }
            if run == nil {
                let settings = configuration.settings(for: stream).resolved(dim: values.count)
                try settings.validate(name: stream)
                run = OfflineRun(name: stream, settings: settings)
            }
            let d = run!.pipeline.sampleDimension
            guard values.count == d else {
                throw CommandFailure("line \(csv.lineNumber): \(values.count) values, expected \(d)")
            }
            guard values.allSatisfy(\.isFinite) else {
                throw CommandFailure("line \(csv.lineNumber): a value is not finite")
            }
            let s = values.withUnsafeBufferPointer { run!.next($0.baseAddress!) }
            if detail {
                print("\(s.sequence),\(s.error),\(s.score),\(s.alert ? 1 : 0),\(s.warmingUp ? 1 : 0)")
            } else {
                print(String(format: "%.6f", s.score))
            }
            flushStandardOutput()
        }
    }
}
