import Foundation
import Learning
import LogMining

/// A log stream's front end: lines in, templates mined (`TemplateMiner`), and for each line the
/// facts its signals read (`LineFacts`) and the row its models learn: the mix of templates over the
/// last `mixWindow` lines, as the share of those lines in each of `dimension` buckets (template id
/// modulo `dimension`), which the autoencoder and MoCo learn as the stream's usual mix.
///
/// Used under its stream's lock (ingest mines, the trainer's checkpoint reads).
public final class LogFront: CheckpointSection, @unchecked Sendable {
    public static let name = "log-front"
    public static let stateVersion: UInt32 = 1
    /// Width of a log stream's rows, and the parameters per line read as numbers.
    public static let dimension = 32
    public static let maximumParameters = ParameterNumbers.capacity

    public private(set) var miner: TemplateMiner
    let mixWindow: Int
    var ring: [UInt8] = []
    var next = 0
    var mix = [Float](repeating: 0, count: LogFront.dimension)
    /// Lines cut to `max_line_bytes`, and lines whose invalid UTF-8 was replaced (since start; the
    /// ingest thread counts them).
    public internal(set) var truncated: UInt64 = 0
    public internal(set) var repaired: UInt64 = 0

    public init(templates: Int, similarity: Double, mixWindow: Int) {
        var c = TemplateMiner.Configuration()
        c.maxTemplates = templates
        c.similarity = similarity
        miner = TemplateMiner(configuration: c)
        self.mixWindow = max(mixWindow, 1)
    }

    /// Mines `lines`: their facts, and their rows (`lines.count × dimension`) into `rows`.
    public func mine(_ lines: [Substring], seconds: [Double]?, rows: UnsafeMutablePointer<Float>) -> [LineFacts] {
        var facts: [LineFacts] = []
        facts.reserveCapacity(lines.count)
        let d = Self.dimension, share = 1 / Float(mixWindow)
        for (i, line) in lines.enumerated() {
            // The parameters read in place, in the miner's buffers.
            var numbers = ParameterNumbers()
            let m = miner.add(line) { parameters in
                for k in 0..<min(parameters.count, Self.maximumParameters) { numbers.append(Self.number(parameters[k])) }
            }
            facts.append(
                LineFacts(
                    template: m.id, isNew: m.isNew, changed: m.changed, evicted: m.evicted, index: miner.lines,
                    seconds: seconds?[i], numbers: numbers))
            let bucket = UInt8(truncatingIfNeeded: Int(m.id) % d)
            if ring.count < mixWindow {
                ring.append(bucket)
            } else {
                mix[Int(ring[next])] -= share
                ring[next] = bucket
                next = next + 1 == mixWindow ? 0 : next + 1
            }
            mix[Int(bucket)] += share
            mix.withUnsafeBufferPointer { mix in
                for j in 0..<d { rows[i * d + j] = max(mix[j], 0) }
            }
        }
        return facts
    }

    /// A parameter as a number, if it is one: an optional sign, digits and at most one decimal
    /// point, with letters or punctuation around it but no other digits (`1234`, `size=1234`,
    /// `12.5ms`, `[24200]:`; not `10.0.0.1:80`, `0x1f`, `06:55:46`).
    public static func number(_ p: Substring) -> Double? {
        // A native Substring's bytes are contiguous: read them in place.
        p.utf8.withContiguousStorageIfAvailable(number) ?? Array(p.utf8).withUnsafeBufferPointer(number)
    }

    static func number(_ bytes: UnsafeBufferPointer<UInt8>) -> Double? {
        // The digits as an integer (up to 18 fit), the decimals as a power of ten.
        var whole: UInt64 = 0, scale = 0.0, digits = 0, negative = false, state = 0  // 0 before, 1 in, 2 after
        for c in bytes {
            let digit = c &- 48
            switch state {
            case 0:
                if digit < 10 {
                    state = 1
                    whole = UInt64(digit)
                    digits = 1
                } else {
                    negative = c == 45
                }
            case 1:
                if digit < 10 {
                    whole = whole &* 10 &+ UInt64(digit)
                    digits += 1
                    if scale > 0 { scale *= 10 }
                } else if c == 46 && scale == 0 {
                    scale = 1
                } else {
                    state = 2
                }
            default:
                if digit < 10 { return nil }
            }
        }
        guard digits > 0, digits <= 18 else { return nil }
        if scale == 1 { return nil }  // "12." is not a decimal
        // Up to 15 digits a Double holds exactly, as summing them one by one in Doubles did; beyond,
        // the sum as it was, each step rounded.
        var value = Double(whole)
        if digits > 15 {
            value = 0
            for c in bytes {
                let digit = c &- 48
                if digit < 10 { value = value * 10 + Double(digit) }
            }
        }
        if scale > 1 { value /= scale }
        return negative ? -value : value
    }

    /// The template's text (or a placeholder for one evicted since).
    public func text(_ id: UInt32) -> String { miner.templates[id]?.text ?? "template \(id) (evicted)" }

    /// A finding in words, naming its template.
    public func describe(_ f: LogFinding) -> String {
        func figure(_ x: Double) -> String {
            if x == x.rounded() && abs(x) < 1e15 { return String(Int64(x)) }
            return String(format: abs(x) >= 100 ? "%.0f" : "%.3g", x)
        }
        let t = "\"\(text(f.template))\""
        switch f {
        case .newTemplate: return "new template \(t)"
        case .rareTemplate(_, let seen, let lines): return "rare template \(t): \(seen) lines of it in \(lines)"
        case .parameter(_, let position, let value, let usual):
            return "\(t): parameter \(position + 1) is \(figure(value)), usually about \(figure(usual))"
        case .burst(_, let count, let window, let ratio):
            return "\(t) at \(figure(ratio.rounded()))x its usual rate (\(count) of the last \(window) lines)"
        case .silence(_, let usual, let gap, let seconds):
            // Lines are whole; seconds keep three figures (a heartbeat every 0.1 s).
            let unit = seconds ? "s" : " lines"
            let (u, g) = seconds ? (usual, gap) : (usual.rounded(), gap.rounded())
            return "\(t) usually every \(figure(u))\(unit), none for \(figure(g))\(unit)"
        case .mix: return "unusual mix of templates in the last \(mixWindow) lines, at \(t)"
        }
    }

    /// Bytes a front end of `templates` templates takes at most, for `memory_budget`, with lines cut
    /// to `lineBytes` (`max_line_bytes`, 4,096 by default). A template's text is at most four times
    /// its line's: its tokens and their vocabulary entries masked (masking at most doubles a token:
    /// `1,` becomes `<*>,`), or raw twice more where a long token is also its tree branch and route.
    /// Beside the text, each of its at most `TemplateMiner.maximumTokens` tokens costs up to 170
    /// bytes of headers, ids and table slots, and each log signal keeps under 1 KB per template.
    /// `eddy bench memory --worst-lines` measures templates of 128 distinct words filling
    /// `max_line_bytes` (about 29 KB each at 4,096, the most measured); on messages of 6 to 13 tokens
    /// a template takes about 1.4 KB. Beside the templates: the miner's remembered lines
    /// (`TemplateMiner.rememberedBytes`, about 300 KB), the tree's root, and the burst signal's
    /// table of decays (8 KB).
    public static func bytes(templates: Int, lineBytes: Int = 4096) -> Int {
        let perTemplate = 4 * lineBytes + TemplateMiner.maximumTokens * 170 + 1024
        return templates * perTemplate + (1 << 16) + TemplateMiner.rememberedBytes + 8_192
    }

    // MARK: State

    public func encode(_ w: inout StateWriter) {
        miner.encode(&w)
        let ordered = ring.count < mixWindow ? ring : Array(ring[next...] + ring[..<next])
        w.write(UInt32(ordered.count))
        for b in ordered { w.write(b) }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        let restored = try TemplateMiner.decode(&r, configuration: miner.configuration)
        let n = Int(try r.read(UInt32.self))
        try r.requireRoom(n, each: 1)
        let buckets = try (0..<n).map { _ in try r.read(UInt8.self) }
        guard buckets.allSatisfy({ Int($0) < Self.dimension }) else { throw StateError.invalid("log mix bucket") }
        miner = restored
        ring = Array(buckets.suffix(mixWindow))
        next = 0
        mix = [Float](repeating: 0, count: Self.dimension)
        for b in ring { mix[Int(b)] += 1 / Float(mixWindow) }
    }
}

/// Lines as a log stream takes them: UTF-8 (invalid bytes become U+FFFD) and at most `maxBytes`
/// each (cut at a character boundary), with what had to be repaired or cut.
public enum LineDecoding {
    public static func decode(_ raw: [Data], maxBytes: Int) -> (lines: [Substring], truncated: Int, repaired: Int) {
        var out = (lines: [Substring](), truncated: 0, repaired: 0)
        out.lines.reserveCapacity(raw.count)
        for data in raw {
            data.withUnsafeBytes { take($0.bindMemory(to: UInt8.self), maxBytes: maxBytes, into: &out) }
        }
        return out
    }

    /// The lines at `ranges` of `frame` (a LineBatch's wire bytes: `LineBatchWire`).
    public static func decode(_ frame: UnsafeBufferPointer<UInt8>, ranges: [Range<Int>], maxBytes: Int)
        -> (lines: [Substring], truncated: Int, repaired: Int)
    {
        var out = (lines: [Substring](), truncated: 0, repaired: 0)
        out.lines.reserveCapacity(ranges.count)
        for r in ranges { take(UnsafeBufferPointer(rebasing: frame[r]), maxBytes: maxBytes, into: &out) }
        return out
    }

    static func take(
        _ bytes: UnsafeBufferPointer<UInt8>, maxBytes: Int, into out: inout (lines: [Substring], truncated: Int, repaired: Int)
    ) {
        // Decoded in one pass (invalid bytes become U+FFFD); it was valid if nothing changed.
        var s = String(decoding: bytes, as: UTF8.self)
        let valid =
            s.utf8.withContiguousStorageIfAvailable { decoded in
                decoded.count == bytes.count && (bytes.isEmpty || memcmp(decoded.baseAddress!, bytes.baseAddress!, bytes.count) == 0)
            } ?? s.utf8.elementsEqual(bytes)
        if !valid { out.repaired += 1 }
        if s.utf8.count > maxBytes {
            // Back to the start of the character the limit falls in.
            let cut = Array(s.utf8)
            var end = maxBytes
            while end > 0 && cut[end] & 0xC0 == 0x80 { end -= 1 }
            s = String(decoding: cut[..<end], as: UTF8.self)
            out.truncated += 1
        }
        out.lines.append(Substring(s))
    }
}
