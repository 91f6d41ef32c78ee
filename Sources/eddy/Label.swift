import ArgumentParser
import EddyProtocol
import Evaluation
import Foundation
import Pipeline
import ZeroMQ

struct Label: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send labelled samples to a stream's few-label head: CSV lines `label,value,value,...`.",
        discussion: """
            The stream must exist (it has had samples) and take labels (max_labels > 0 in its \
            configuration). The daemon keeps the newest max_labels labelled samples, fits a softmax head \
            on the MoCo representation at its next snapshot, and from then on publishes every sample's \
            class and probability on class/<stream>/; the MoCo snapshot carries the head. A first line \
            whose values are not numbers is a header; if it names a label column (is_anomaly, \
            is_anomalous, label, labels, anomaly) the label is read from there and a timestamp column is \
            left out, so a CSV written for `feed` with its labels can be sent as it is. For a windowed stream (a univariate one, or one \
            with multivariate_window) a line carries the stretch of series the window reads: \
            window × largest scale samples (128 values for a univariate stream at the defaults), \
            oldest first, and the label names the window ending at its last sample.
            """)

    @Argument(help: "CSV file, or - for standard input.") var file: String = "-"
    @Option(help: "Stream name.") var stream: String
    @Option(help: "The daemon's ingest endpoint.") var endpoint: String = "tcp://127.0.0.1:7700"
    @OptionGroup var curve: CurveOptions
    @OptionGroup var refusals: RefusalOptions
    @Option(help: "The daemon's configuration file, for its limits (max_dim, max_abs_value, max_samples_per_message, max_message_bytes; default: the daemon's defaults).")
    var config: String?
    @Option(help: "Labelled samples per message (at most what the daemon's limits allow).") var batch: Int = 256

    func validate() throws {
        if batch < 1 { throw ValidationError("--batch must be at least 1") }
    }

    func run() throws {
        let limits = try ProducerLimits(config: config)
        var perMessage = batch
        let context = try Context()
        try checkStreamName(stream, limits: limits)
        let push = try producerSocket(context, endpoint: endpoint, curve: curve)
        let heard = refusals.listen(
            context: context, ingest: endpoint, configuration: limits.configuration, stream: stream, curve: curve, tool: "eddy label")
        defer { heard?.close() }
        var labels: [String] = [], values: [Float] = [], dim = 0, sent = 0, labelBytes = 0
        func flush() throws {
            guard !labels.isEmpty else { return }
            var m = Eddy_V1_LabelBatch()
            m.stream = stream
            m.labels = labels
            m.dim = UInt32(dim)
            m.count = UInt32(labels.count)
            m.values = Wire.bytes(values)
            try push.deliver([Array(stream.utf8), try m.serializedBytes()])
            sent += labels.count
            labels.removeAll()
            values.removeAll()
            labelBytes = 0
        }
        var sawRow = false
        // The label's column and those that are not values: the first column and none, unless a
        // header names a label column (is_anomaly, label, ...) and a timestamp, as `feed` and
        // `replay` read them (from review: the file that was fed, labelled, sent its timestamp and
        // took the timestamp for the label).
        var labelColumn = 0, skipped: Set<Int> = []
        for (index, line) in try readLines(file).enumerated() {
            var text = String(line)
            if index == 0, text.hasPrefix("\u{FEFF}") { text.removeFirst() }  // a byte-order mark
            var fields = CSVSamples.fields(of: text.trimmingCharacters(in: .whitespacesAndNewlines))
            if fields.count == 1 && fields[0].isEmpty { continue }
            if !sawRow && fields.dropFirst().contains(where: { Float($0) == nil }) {  // a header (after any blank lines)
                sawRow = true
                let names = fields.map { $0.lowercased() }
                labelColumn = names.firstIndex { Corpus.labelColumns.contains($0) } ?? 0
                if names[labelColumn] == "timestamp" {
                    throw CommandFailure(
                        "line \(index + 1): the header names no label column (\(Corpus.labelColumns.sorted().joined(separator: ", "))), and a timestamp is not a label")
                }
                skipped = Set(names.indices.filter { names[$0] == "timestamp" && $0 != labelColumn })
                continue
            }
            sawRow = true
            if labelColumn > 0 || !skipped.isEmpty {
                guard labelColumn < fields.count else { throw CommandFailure("line \(index + 1): no field in the label's column") }
                fields = [fields[labelColumn]] + fields.indices.filter { $0 != labelColumn && !skipped.contains($0) }.map { fields[$0] }
            }
            let numbers = fields.dropFirst().map { Float($0) }
            guard fields.count >= 2, !fields[0].isEmpty, numbers.allSatisfy({ $0 != nil }) else {
                throw CommandFailure("line \(index + 1): expected label,value,value,...")
            }
            guard numbers.allSatisfy({ $0!.isFinite }) else { throw CommandFailure("line \(index + 1): a value is not finite") }
            if dim == 0 {
                dim = numbers.count
                perMessage = try limits.samplesPerMessage(batch: batch, dim: dim)
            }
            guard numbers.count == dim else { throw CommandFailure("line \(index + 1): \(numbers.count) values, expected \(dim)") }
            try limits.check(numbers.map { $0! }, line: index + 1)
            // A label's bytes are in the message too (from review: 65,536 rows of 128-byte labels
            // went over max_message_bytes).
            let room = limits.configuration.maxMessageBytes - 1024 - (labels.count + 1) * (dim * 4 + 10)
            if !labels.isEmpty && labelBytes + fields[0].utf8.count + 3 > room { try flush() }
            labelBytes += fields[0].utf8.count + 3
            labels.append(fields[0])
            values += numbers.map { $0! }
            if labels.count == perMessage { try flush() }
        }
        try flush()
        guard sent > 0 else { throw CommandFailure("no labelled samples in \(file == "-" ? "standard input" : file)") }
        try endOfRun(
            "sent \(sent) labelled samples to stream \(stream)", tool: "eddy label", heard: heard, samples: nil,
            timeout: refusals.confirmSeconds)
    }
}
