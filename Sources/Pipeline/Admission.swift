import EddyProtocol
import Foundation
import Learning

/// What ingest decides about one producer message, before anything of it touches a stream.
///
/// Checks, in order (the first failure names the rejection): two frames; a usable stream name in
/// frame 0; size within limits; frame 1 decodes as a SampleBatch naming the same stream; count and
/// dim positive and at most `max_dim`, `values` exactly `count · dim` floats, timestamps absent or one per sample; every
/// value finite and within ±`max_abs_value`; the stream exists or may be created (within `max_streams` and `memory_budget`); dim
/// matches the stream's.
public enum Admission {
    /// Text a producer chose, quoted in an error: at most `limit` bytes of it (whole characters),
    /// then its length, so an error message stays within the size SPEC 9 bounds the publish queue
    /// by (a 16 MiB stream field was repeated whole into every error and log line).
    static func excerpt(_ text: String, limit: Int = 64) -> String {
        guard text.utf8.count > limit else { return text }
        var kept = "", bytes = 0
        for c in text {
            bytes += c.utf8.count
            if bytes > limit { break }
            kept.append(c)
        }
        return kept + "… (\(text.utf8.count) bytes)"
    }

    case accepted(StreamPipeline, Eddy_V1_SampleBatch, [Float])
    /// A LineBatch for a log stream: its lines as decoded (`LineDecoding`), with how many were cut or
    /// had invalid UTF-8 replaced (the batch's own `lines` may be left empty).
    case lines(StreamPipeline, Eddy_V1_LineBatch, [Substring], truncated: Int, repaired: Int)
    /// A LabelBatch for an existing sample stream that takes labels: its samples and labels.
    case labels(StreamPipeline, [Float], [String])
    case rejected(Eddy_V1_ErrorCode, String, stream: String?, sequence: UInt64, samples: Int)
    /// A message for a stream coming back from expiry whose kept state is still being read (off
    /// the ingest thread): held, and checked again once the stream is there (`Daemon.hold`).
    case held(stream: String)

    public struct Refusal: Error {
        public var code: Eddy_V1_ErrorCode
        public var why: String
        /// Not a refusal: the stream is coming back, and the message waits for it.
        public var comingBack = false
        public init(code: Eddy_V1_ErrorCode, why: String) {
            self.code = code
            self.why = why
        }
        /// What a lookup answers for a stream whose kept state is being read.
        static let comingBackNow: Refusal = {
            var r = Refusal(code: .unspecified, why: "the stream is coming back from expiry")
            r.comingBack = true
            return r
        }()
    }

    public static func check(
        _ frames: [[UInt8]], configuration c: DaemonConfiguration,
        lookup: (_ name: String, _ dim: Int, _ log: Bool) -> Result<StreamPipeline, Refusal>,
        existing: (_ name: String) -> StreamPipeline? = { _ in nil }
    ) -> Admission {
        guard frames.count == 2 else {
            let usable = frames.first.flatMap { StreamName.decode($0, maxBytes: c.maxStreamNameBytes).name }
            return .rejected(.badFrames, "expected 2 frames (stream, SampleBatch), got \(frames.count)",
                             stream: usable, sequence: 0, samples: 0)
        }
        let decoded = StreamName.decode(frames[0], maxBytes: c.maxStreamNameBytes)
        guard let name = decoded.name else {
            return .rejected(.badStreamName, decoded.problem ?? "bad stream name", stream: nil, sequence: 0, samples: 0)
        }
        if frames[1].count > c.maxMessageBytes {
            return .rejected(.oversized, "message of \(frames[1].count) bytes exceeds max_message_bytes \(c.maxMessageBytes)",
                             stream: name, sequence: 0, samples: 0)
        }
        // Lines, read in one pass where the body is plainly a LineBatch (`LineBatchWire`).
        if let read = frames[1].withUnsafeBufferPointer({ LineBatchWire.read($0, keep: c.maxSamplesPerMessage) }) {
            return check(read.batch, lines: read.lineCount, timestamps: read.timestampCount, name: name, configuration: c, lookup: lookup) {
                frames[1].withUnsafeBufferPointer { LineDecoding.decode($0, ranges: read.lines, maxBytes: c.maxLineBytes) }
            }
        }
        guard let batch = try? Eddy_V1_SampleBatch(serializedBytes: frames[1]) else {
            return .rejected(.undecodable, "frame 1 is not a SampleBatch or a LineBatch", stream: name, sequence: 0, samples: 0)
        }
        // A LineBatch's lines (field 8) are a field SampleBatch does not know; a body with `dim` or
        // `values` is samples, whatever else it holds.
        if !batch.unknownFields.data.isEmpty, batch.dim == 0, batch.values.isEmpty,
            let lines = try? Eddy_V1_LineBatch(serializedBytes: frames[1]), !lines.lines.isEmpty
        {
            return check(lines, lines: lines.lines.count, timestamps: lines.timestampsNs.count, name: name, configuration: c, lookup: lookup) {
                LineDecoding.decode(lines.lines, maxBytes: c.maxLineBytes)
            }
        }
        // A LabelBatch's labels (field 9) likewise.
        if !batch.unknownFields.data.isEmpty, let labelled = try? Eddy_V1_LabelBatch(serializedBytes: frames[1]),
            !labelled.labels.isEmpty
        {
            return check(labelled, name: name, configuration: c, existing: existing)
        }
        let count = Int(batch.count), dim = Int(batch.dim)
        // The samples a rejected message carried are counted once its values bear its count out:
        // before that the count is only the producer's claim (up to 2³² for one message).
        var carried = 0
        func reject(_ code: Eddy_V1_ErrorCode, _ why: String) -> Admission {
            .rejected(code, why, stream: name, sequence: batch.sequence, samples: carried)
        }
        guard batch.stream == name else {
            return reject(.undecodable, "SampleBatch.stream \"\(Admission.excerpt(batch.stream))\" differs from frame 0 \"\(name)\"")
        }
        guard count > 0, dim > 0 else { return reject(.undecodable, "count and dim must be positive") }
        guard dim <= c.maxDim else { return reject(.oversized, "dim \(dim) exceeds max_dim \(c.maxDim)") }
        guard count <= c.maxSamplesPerMessage else {
            return reject(.oversized, "\(count) samples exceed max_samples_per_message \(c.maxSamplesPerMessage)")
        }
        guard batch.values.count == count * dim * 4 else {
            return reject(.undecodable, "values holds \(batch.values.count) bytes, expected count·dim·4 = \(count * dim * 4)")
        }
        carried = count
        guard batch.timestampsNs.isEmpty || batch.timestampsNs.count == count else {
            return reject(.undecodable, "\(batch.timestampsNs.count) timestamps for \(count) samples")
        }
        // Values before the stream: a bad first batch must not create a stream.
        let values = Wire.floats(batch.values)!
        if let (code, why) = valueProblem(values, dim: dim, c) { return reject(code, why) }
        let stream: StreamPipeline
        switch lookup(name, dim, false) {
        case .success(let s): stream = s
        case .failure(let refusal) where refusal.comingBack: return .held(stream: name)
        case .failure(let refusal): return reject(refusal.code, refusal.why)
        }
        guard !stream.settings.log else {
            return reject(.wrongKind, "stream \(name) is a log stream: send it lines (LineBatch), not samples")
        }
        guard dim == stream.sampleDimension else {
            return reject(.dimMismatch, "stream \(name) has dim \(stream.sampleDimension), the batch has \(dim)")
        }
        return .accepted(stream, batch, values)
    }

    /// The first value that is not finite, or beyond ±`max_abs_value`, located: nil if none.
    static func valueProblem(_ values: [Float], dim: Int, _ c: DaemonConfiguration) -> (Eddy_V1_ErrorCode, String)? {
        guard let bad = values.withUnsafeBufferPointer({ Kernels.firstOutside($0.baseAddress!, count: $0.count, limit: c.maxAbsValue) })
        else { return nil }
        let located = "value \(bad % dim) of sample \(bad / dim) is \(values[bad])"
        return values[bad].isFinite ? (.valueTooLarge, "\(located), beyond max_abs_value \(c.maxAbsValue)") : (.nonFinite, located)
    }

    /// A LabelBatch: one label (1 to 128 bytes) per sample, samples as a SampleBatch's, for a sample
    /// stream that exists, takes labels (`max_labels`) and scores its samples as they come (no window).
    static func check(
        _ batch: Eddy_V1_LabelBatch, name: String, configuration c: DaemonConfiguration,
        existing: (String) -> StreamPipeline?
    ) -> Admission {
        let count = Int(batch.count), dim = Int(batch.dim)
        var carried = 0  // as a SampleBatch's: counted once its labels bear the count out
        func reject(_ code: Eddy_V1_ErrorCode, _ why: String) -> Admission {
            .rejected(code, why, stream: name, sequence: 0, samples: carried)
        }
        guard batch.stream == name else {
            return reject(.undecodable, "LabelBatch.stream \"\(Admission.excerpt(batch.stream))\" differs from frame 0 \"\(name)\"")
        }
        guard count > 0, dim > 0, batch.labels.count == count else {
            return reject(.undecodable, "a LabelBatch needs count and dim positive and one label per sample (\(batch.labels.count) for \(count))")
        }
        carried = count
        guard dim <= c.maxDim, count <= c.maxSamplesPerMessage else {
            return reject(.oversized, "dim \(dim) or \(count) samples beyond max_dim or max_samples_per_message")
        }
        guard batch.values.count == count * dim * 4 else {
            return reject(.undecodable, "values holds \(batch.values.count) bytes, expected count·dim·4 = \(count * dim * 4)")
        }
        if let bad = batch.labels.firstIndex(where: { $0.isEmpty || $0.utf8.count > 128 || $0.unicodeScalars.contains { $0.properties.generalCategory == .control } }) {
            return reject(.undecodable, "label \(bad) is empty, longer than 128 bytes or holds a control character")
        }
        let values = Wire.floats(batch.values)!
        if let (code, why) = valueProblem(values, dim: dim, c) { return reject(code, why) }
        guard let stream = existing(name) else {
            return reject(.notFound, "no stream \(name): labels go to a stream that already has samples")
        }
        guard !stream.settings.log, stream.settings.maxLabels > 0 else {
            return reject(
                .wrongKind,
                stream.settings.log ? "stream \(name) is a log stream: it takes no labels"
                    : "stream \(name) takes no labels (max_labels = 0: set it under [stream] to fine-tune in the daemon)")
        }
        guard dim == stream.labelDimension else {
            if let shaper = stream.shaper {
                return reject(
                    .dimMismatch,
                    "stream \(name) is windowed: a labelled sample is the \(shaper.historyLength) samples its window reads "
                        + "(window × largest scale), oldest first, \(shaper.channels) value(s) each: dim \(stream.labelDimension), not \(dim)")
            }
            return reject(.dimMismatch, "stream \(name) has dim \(stream.sampleDimension), the labelled samples \(dim)")
        }
        return .labels(stream, values, batch.labels)
    }

    /// A LineBatch: lines within `max_samples_per_message`, timestamps absent or one per line, the
    /// stream a log stream (or one that may be created as one).
    static func check(
        _ batch: Eddy_V1_LineBatch, lines count: Int, timestamps: Int, name: String, configuration c: DaemonConfiguration,
        lookup: (String, Int, Bool) -> Result<StreamPipeline, Refusal>,
        decode: () -> (lines: [Substring], truncated: Int, repaired: Int)
    ) -> Admission {
        func reject(_ code: Eddy_V1_ErrorCode, _ why: String) -> Admission {
            .rejected(code, why, stream: name, sequence: batch.sequence, samples: count)
        }
        guard batch.stream == name else {
            return reject(.undecodable, "LineBatch.stream \"\(Admission.excerpt(batch.stream))\" differs from frame 0 \"\(name)\"")
        }
        guard count <= c.maxSamplesPerMessage else {
            return reject(.oversized, "\(count) lines exceed max_samples_per_message \(c.maxSamplesPerMessage)")
        }
        guard timestamps == 0 || timestamps == count else {
            return reject(.undecodable, "\(timestamps) timestamps for \(count) lines")
        }
        let stream: StreamPipeline
        switch lookup(name, LogFront.dimension, true) {
        case .success(let s): stream = s
        case .failure(let refusal) where refusal.comingBack: return .held(stream: name)
        case .failure(let refusal): return reject(refusal.code, refusal.why)
        }
        guard stream.settings.log else {
            return reject(.wrongKind, "stream \(name) is a sample stream: send it samples (SampleBatch), not lines")
        }
        let decoded = decode()
        return .lines(stream, batch, decoded.lines, truncated: decoded.truncated, repaired: decoded.repaired)
    }
}
