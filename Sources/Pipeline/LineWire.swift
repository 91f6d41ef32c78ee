import EddyProtocol

/// A LineBatch read from its wire bytes in one pass, its lines left where they are (as ranges of the
/// frame) until ingest decodes them into strings: the generated decoder makes a `Data` of every
/// line, and ingest had decoded each frame twice (as a SampleBatch, then as a LineBatch).
///
/// It takes a body only as the generated decoders would read it as a LineBatch with lines: every
/// field's wire type is the one its number has in SampleBatch, LineBatch or LabelBatch (0, 1, 2 or 5
/// for others, which are skipped), strings are UTF-8, varints end within ten bytes. Anything else
/// (a group, a field of the wrong type, no lines at all) makes it decline, and the generated
/// decoders decide as before.
public enum LineBatchWire {
    /// What `read` found: the batch's fields but its lines and timestamps, where each of the first
    /// `keep` lines lies in the frame, the first `keep` timestamps (in `batch`), and how many lines
    /// and timestamps the frame holds in all.
    public struct Read {
        public var batch: Eddy_V1_LineBatch
        public var lines: [Range<Int>]
        public var lineCount: Int
        public var timestampCount: Int
    }

    /// The batch's fields but its lines (`lines` is left empty), and where each line lies in `frame`.
    /// Lines and timestamps beyond `keep` are counted, not kept: a line of two bytes on the wire is a
    /// range of sixteen, a timestamp of one byte an Int64, so a body of `max_message_bytes` that holds
    /// more than `max_samples_per_message` of them would cost eight times its size before its count
    /// could be refused.
    public static func read(_ frame: UnsafeBufferPointer<UInt8>, keep: Int = .max) -> Read? {
        var batch = Eddy_V1_LineBatch()
        var lines: [Range<Int>] = []
        var lineCount = 0, timestampCount = 0
        var at = 0
        let n = frame.count

        func varint() -> UInt64? {
            var value: UInt64 = 0, shift: UInt64 = 0
            while at < n && shift < 70 {
                let b = frame[at]
                at += 1
                if shift == 63 && b > 1 { return nil }  // beyond 64 bits
                value |= UInt64(b & 0x7F) << shift
                if b < 0x80 { return value }
                shift += 7
            }
            return nil
        }
        func delimited() -> Range<Int>? {
            guard let length = varint(), length <= UInt64(n - at) else { return nil }
            defer { at += Int(length) }
            return at..<(at + Int(length))
        }
        func string(_ r: Range<Int>) -> String? { String(validating: UnsafeBufferPointer(rebasing: frame[r]), as: UTF8.self) }
        func timestamp(_ v: UInt64) {
            if timestampCount < keep { batch.timestampsNs.append(Int64(bitPattern: v)) }
            timestampCount += 1
        }

        while at < n {
            guard let tag = varint(), tag >> 3 > 0, tag >> 3 <= UInt64(Int32.max) else { return nil }
            let field = tag >> 3, type = tag & 7
            // SampleBatch's and LabelBatch's own fields are skipped below, if of their type; a body
            // with `dim` or `values` is not plainly a LineBatch (SPEC 4.1), whatever else it holds.
            if let theirs = Self.wireType(ofOtherField: field), type != theirs || field == 3 || field == 6 { return nil }
            switch (field, type) {
            case (1, 2):
                guard let r = delimited(), let s = string(r) else { return nil }
                batch.stream = s
            case (2, 0):
                guard let v = varint() else { return nil }
                batch.sequence = v
            case (5, 0):
                guard let v = varint() else { return nil }
                timestamp(v)
            case (5, 2):
                guard let r = delimited() else { return nil }
                let end = at
                at = r.lowerBound
                while at < r.upperBound {
                    guard let v = varint(), at <= r.upperBound else { return nil }
                    timestamp(v)
                }
                at = end
            case (7, 2):
                guard let r = delimited(), let s = string(r) else { return nil }
                batch.producer = s
            case (8, 2):
                guard let r = delimited() else { return nil }
                if lineCount < keep { lines.append(r) }
                lineCount += 1
            case (1, _), (2, _), (5, _), (7, _), (8, _):
                return nil
            case (_, 0):
                guard varint() != nil else { return nil }
            case (_, 1):
                guard n - at >= 8 else { return nil }
                at += 8
            case (_, 2):
                guard delimited() != nil else { return nil }
            case (_, 5):
                guard n - at >= 4 else { return nil }
                at += 4
            default:
                return nil
            }
        }
        return lineCount == 0 ? nil : Read(batch: batch, lines: lines, lineCount: lineCount, timestampCount: timestampCount)
    }

    /// The wire type of a field SampleBatch or LabelBatch has and LineBatch does not (nil: neither).
    static func wireType(ofOtherField field: UInt64) -> UInt64? {
        switch field {
        case 3, 4, 10, 11: 0  // dim, count
        case 6, 9, 12: 2  // values, labels
        default: nil
        }
    }
}
