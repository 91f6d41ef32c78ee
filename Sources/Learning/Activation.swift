/// The activation after a dense layer.
public enum Activation: UInt8, Sendable, Codable, CaseIterable {
    /// `f(a) = a`.
    case identity = 0
    /// `f(a) = max(a, 0)`; its derivative is taken as 0 at 0, as PyTorch does.
    case relu = 1
}
