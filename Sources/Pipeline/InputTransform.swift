#if canImport(Glibc)
import Glibc
#endif
import Learning

/// What a sample stream's values become before anything reads them: the models, the replay
/// buffer, every detection signal, labelled samples and (through its snapshot) a subscriber.
///
/// Counts and volumes (requests, messages, bytes per interval) vary by multiplication: their daily
/// cycle scales a rate, a burst multiplies it for a step or two, an outage takes it to nothing. On
/// their own scale a heavy-tailed burst outweighs everything else (the normaliser's variance, the
/// range, a window's mean), and a drop to zero sits close to a quiet night. On a log scale a burst
/// is a step of its factor's logarithm, a surge lasts as a level, an outage falls far below the
/// usual. `log` is `sign(x) · ln(1 + |x|)`: defined for every value, the identity near 0, and
/// monotonic, so the order of values (and the range) is kept.
public enum InputTransform: String, Sendable, CaseIterable {
    case none
    case log

    /// Transforms `count` values in place.
    @inline(__always)
    public func apply(_ values: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .none: return
        case .log:
            for i in 0..<count { values[i] = Self.signedLog(values[i]) }
        }
    }

    /// `sign(x) · ln(1 + |x|)`: ln(1 + a) to an ulp or two with one logf, a third of log1pf's cost
    /// (Goldberg's correction: the rounding of 1 + a cancels in a / (u − 1)).
    @inline(__always)
    public static func signedLog(_ x: Float) -> Float {
        let a = abs(x), u = 1 + a
        let l = u == 1 ? a : logf(u) * (a / (u - 1))
        return x < 0 ? -l : l
    }

    /// The transformed copy of `values`.
    public func applied(to values: [Float]) -> [Float] {
        guard self != .none else { return values }
        var out = values
        out.withUnsafeMutableBufferPointer { apply($0.baseAddress!, count: $0.count) }
        return out
    }
}

/// The transform a stream's state was learned under, as a checkpoint section: a checkpoint learned
/// under one transform is refused under another (its models, buffer and signals hold transformed
/// values). Written only for a transform other than `none`, so older checkpoints read as `none`.
struct InputTransformSection: CheckpointSection {
    static let name = "input-transform"
    static let stateVersion: UInt32 = 1
    var transform: InputTransform

    func encode(_ w: inout StateWriter) { w.write(transform.rawValue) }

    mutating func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        let raw = try r.read(String.self)
        guard let t = InputTransform(rawValue: raw) else { throw StateError.invalid("input transform \"\(raw)\"") }
        transform = t
    }
}
