import EddyProtocol
import Foundation
import Learning

/// Topics of the PUB socket (frame 0). Every topic ends with '/', so that subscribing to
/// `score/pump-7/` never also matches `score/pump-70/`.
public enum Topic {
    public static func score(_ stream: String) -> String { "score/\(stream)/" }
    public static func alert(_ stream: String) -> String { "alert/\(stream)/" }
    public static func snapshot(_ stream: String, _ kind: Snapshot.Kind) -> String { "snapshot/\(stream)/\(kind.rawValue)/" }
    public static func representation(_ stream: String) -> String { "rep/\(stream)/" }
    public static func classes(_ stream: String) -> String { "class/\(stream)/" }
    public static let heartbeat = "hb/"
    /// `error/_/` when the message named no usable stream.
    public static func error(_ stream: String?) -> String { "error/\(stream ?? "_")/" }
}

/// Conversions between the pipeline's values and the protocol's messages (`protocols/eddy/v1/eddy.proto`).
public enum Wire {
    /// Little-endian float32 bytes of `values`.
    public static func bytes(_ values: UnsafeBufferPointer<Float>) -> Data {
        var data = Data(count: values.count * 4)
        data.withUnsafeMutableBytes { raw in
            for (i, v) in values.enumerated() { raw.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
        }
        return data
    }

    public static func bytes(_ values: [Float]) -> Data { values.withUnsafeBufferPointer { bytes($0) } }

    /// Floats from little-endian float32 bytes; nil if the byte count is not a multiple of 4.
    public static func floats(_ data: Data) -> [Float]? {
        guard data.count % 4 == 0 else { return nil }
        let n = data.count / 4
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBytes { dst in
            data.withUnsafeBytes { src in dst.copyMemory(from: src) }
        }
        #if _endian(big)
        for i in 0..<n { out[i] = Float(bitPattern: UInt32(littleEndian: out[i].bitPattern)) }
        #endif
        return out
    }

    /// A `SnapshotReply` holding `snapshot`, the bytes of a `ModelSnapshot` as published: field 1
    /// (`snapshot`, length-delimited: tag 0x0A), its length as a varint, the bytes as they are.
    public static func snapshotReply(_ snapshot: Data) -> [UInt8] {
        var out: [UInt8] = [0x0A]
        out.reserveCapacity(snapshot.count + 11)
        var n = UInt64(snapshot.count)
        while n >= 0x80 {
            out.append(UInt8(n & 0x7F) | 0x80)
            n >>= 7
        }
        out.append(UInt8(n))
        out += snapshot
        return out
    }

    /// Bytes `v` takes as a protobuf varint.
    public static func varintSize(_ v: UInt64) -> Int { max(1, (64 - v.leadingZeroBitCount + 6) / 7) }

    /// Samples per published ScoreBatch at most: a run scored together is published in pieces of
    /// this many, so that every score message stays under `largestScoreMessage` bytes and a
    /// subscriber's queue can be bounded in bytes (`publish_queue_bytes`).
    public static let scoresPerMessage = 1024
    /// Bytes a ScoreBatch of `scoresPerMessage` samples takes at most: per sample an error and a score
    /// (4 bytes each), two flags and a timestamp (up to 10 bytes as a varint), plus the header.
    public static let largestScoreMessage = scoresPerMessage * 20 + 512

    /// Representations per message, at most, so that one stays under `largestScoreMessage` bytes
    /// (the publish queue's bound is stated in those).
    public static func representationsPerMessage(width: Int) -> Int { max(1, (largestScoreMessage - 64) / (4 * max(width, 1))) }

    /// The batch's classes (those of samples `range`), as published.
    public static func classes(_ batch: ScoredBatch, range: Range<Int>) -> Eddy_V1_ClassBatch {
        var m = Eddy_V1_ClassBatch()
        m.stream = batch.stream
        m.firstSequence = batch.firstSequence &+ UInt64(range.lowerBound)
        m.count = UInt32(range.count)
        m.classIndex = Array(batch.classIndex[range])
        m.probability = Array(batch.classProbability[range])
        m.classes = batch.classes
        m.modelVersion = batch.classVersion
        return m
    }

    /// The batch's representations (those of samples `range`, indices into them), as published.
    public static func representations(_ batch: ScoredBatch, range: Range<Int>) -> Eddy_V1_RepresentationBatch {
        var m = Eddy_V1_RepresentationBatch()
        m.stream = batch.stream
        m.firstSequence = batch.firstSequence &+ UInt64(batch.representationFirst + range.lowerBound)
        m.dim = UInt32(batch.representationWidth)
        m.count = UInt32(range.count)
        m.modelVersion = batch.representationVersion
        let w = batch.representationWidth
        m.values = batch.representations.withUnsafeBufferPointer { bytes(UnsafeBufferPointer(rebasing: $0[range.lowerBound * w..<range.upperBound * w])) }
        return m
    }

    public static func message(_ batch: ScoredBatch, range: Range<Int>? = nil) -> Eddy_V1_ScoreBatch {
        let r = range ?? 0..<batch.count
        var m = Eddy_V1_ScoreBatch()
        m.stream = batch.stream
        m.modelVersion = batch.modelVersion
        m.threshold = batch.threshold
        m.firstSequence = batch.firstSequence &+ UInt64(r.lowerBound)
        m.count = UInt32(r.count)
        if r == 0..<batch.count {
            // The whole run (the common case): its arrays are shared, not copied.
            m.errors = batch.errors
            m.scores = batch.scores
            m.alerts = batch.alerts
            m.warmingUp = batch.warmingUp
            m.timestampsNs = batch.timestamps
            m.templateIds = batch.templateIDs
        } else {
            m.errors = Array(batch.errors[r])
            m.scores = Array(batch.scores[r])
            m.alerts = Array(batch.alerts[r])
            m.warmingUp = Array(batch.warmingUp[r])
            m.timestampsNs = batch.timestamps.isEmpty ? [] : Array(batch.timestamps[r])
            m.templateIds = batch.templateIDs.isEmpty ? [] : Array(batch.templateIDs[r])
        }
        return m
    }

    public static func message(_ s: SampleScore) -> Eddy_V1_Score {
        var m = Eddy_V1_Score()
        m.sequence = s.sequence
        m.error = s.error
        m.score = s.score
        m.alert = s.alert
        m.warmingUp = s.warmingUp
        m.timestampNs = s.timestamp
        return m
    }

    public static func alert(_ s: SampleScore, in batch: ScoredBatch) -> Eddy_V1_Alert {
        var m = sampleAlert(s, in: batch)
        if !batch.logAlerts.isEmpty, let log = batch.logAlerts[Int(truncatingIfNeeded: s.sequence &- batch.firstSequence)] {
            m.signal = log.signal
            m.reason = log.reason
            m.template = log.template
            m.templateID = log.templateID
            m.line = log.line
        }
        return m
    }

    static func sampleAlert(_ s: SampleScore, in batch: ScoredBatch) -> Eddy_V1_Alert {
        var m = Eddy_V1_Alert()
        m.stream = batch.stream
        m.modelVersion = batch.modelVersion
        m.threshold = batch.threshold
        m.score = message(s)
        m.topFeatures = s.topFeatures.map { f in
            var c = Eddy_V1_Contribution()
            c.index = UInt32(f.index)
            c.share = f.share
            return c
        }
        m.window = UInt32(batch.window)
        m.windowScales = batch.windowScales.map { UInt32($0) }
        m.beyondRange = s.beyondRange
        m.period = UInt32(s.period)
        if let channel = s.discordChannel {
            m.discord = true
            m.discordChannel = UInt32(channel)
            m.discordWindow = UInt32(s.discordWindow)
            m.discordLevel = s.discordLevel
        }
        if let channel = s.correlationChannel {
            m.signal = CorrelationSignal.name
            m.reason = CorrelationSignal.reason(channel: channel)
        }
        if let channel = s.noiseChannel {
            m.signal = NoiseSignal.name
            m.reason = NoiseSignal.reason(channel: channel, factor: s.noiseFactor)
        }
        if let channel = s.levelChannel {
            m.signal = LevelSignal.name
            m.reason = LevelSignal.reason(channel: channel, period: s.levelPeriod, ratio: s.levelRatio, swing: s.levelSwing)
        }
        if let g = s.glitch {
            m.signal = GlitchGuard.name
            m.reason = GlitchGuard.reason(feature: g.feature, value: g.value, ranges: g.ranges, dimension: batch.sampleDimension)
        }
        if let channel = s.stuckChannel {
            m.signal = StuckSignal.name
            m.reason = StuckSignal.reason(channel: channel, values: s.stuckValues)
        }
        if let surge = s.surge {
            m.signal = SurgeSignal.name
            m.reason = SurgeSignal.reason(channel: surge.channel, run: surge.run, record: surge.record)
        }
        return m
    }

    public static func message(_ s: Snapshot) -> Eddy_V1_ModelSnapshot {
        var m = Eddy_V1_ModelSnapshot()
        m.stream = s.stream
        m.kind = s.kind == .autoencoder ? .autoencoder : .moco
        m.version = s.version
        m.samplesSeen = s.samplesSeen
        m.steps = s.steps
        m.inputDim = UInt32(s.inputDimension)
        m.window = UInt32(s.window)
        m.windowScales = s.windowScales.map { UInt32($0) }
        m.inputTransform = s.inputTransform == .log ? .log : .none
        var crcInput = Data()
        for (i, layer) in s.layers.enumerated() {
            var w = Eddy_V1_Tensor()
            w.name = "layers.\(i).weight"
            w.shape = [UInt32(layer.outputs), UInt32(layer.inputs)]
            w.data = bytes(layer.weights)
            var b = Eddy_V1_Tensor()
            b.name = "layers.\(i).bias"
            b.shape = [UInt32(layer.outputs)]
            b.data = bytes(layer.bias)
            crcInput.append(w.data)
            crcInput.append(b.data)
            m.tensors += [w, b]
            m.activations.append(layer.activation == .relu ? .relu : .identity)
        }
        m.normaliserMean = s.normaliserMean
        m.normaliserVariance = s.normaliserVariance
        m.normaliserEpsilon = Normaliser.epsilon
        m.representationLayer = UInt32(s.representationLayer)
        m.temperature = s.temperature
        m.checksum = CRC32.checksum(crcInput)
        m.createdNs = s.createdNanoseconds
        if let head = s.head {
            var w = Eddy_V1_Tensor()
            w.name = "head.weight"
            w.shape = [UInt32(head.featureCount), UInt32(head.classCount)]
            w.data = bytes(head.weights)
            m.headWeights = w
            m.headBias = head.bias
            m.headMean = head.mean
            m.headScale = head.scale
            m.headClasses = head.classes
            m.headLabels = UInt32(s.headLabels)
        }
        return m
    }

    public static func error(
        _ code: Eddy_V1_ErrorCode, _ text: String, stream: String?, sequence: UInt64 = 0, samples: Int = 0
    ) -> Eddy_V1_Error {
        var e = Eddy_V1_Error()
        e.stream = stream ?? ""
        e.code = code
        e.message = text
        e.sequence = sequence
        e.samples = UInt32(clamping: samples)
        return e
    }
}

/// How a person reads an alert's contributions: `#3 41%` for feature 3; for a windowed stream
/// `t-2 41%` (two values before the alerting one; `t` is the value itself), and at a coarser scale
/// the values a block averages, `t-15..t-8 20%`.
public func describeContributions(
    _ top: [(index: Int, share: Float)], window: Int, scales: [Int] = [1], separator: String = ", "
) -> String {
    func step(_ k: Int) -> String { k == 0 ? "t" : "t-\(k)" }
    return top.map { c in
        let name: String
        if window > 0 && c.index / window < max(scales.count, 1) {
            let s = scales.isEmpty ? 1 : scales[c.index / window], j = c.index % window
            let newest = (window - 1 - j) * s
            name = s == 1 ? step(newest) : "\(step(newest + s - 1))..\(step(newest))"
        } else {
            name = "#\(c.index)"
        }
        return "\(name) \(Int((c.share * 100).rounded()))%"
    }.joined(separator: separator)
}
