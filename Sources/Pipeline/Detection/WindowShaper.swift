import Learning

/// Input shaping for a windowed stream: each arriving sample becomes the model's input row of the
/// window that ends at it, at several time scales (for scale s and each channel, `window` means of s
/// values, the last ending at the newest sample). A sample before the history holds
/// `window × max(scales)` samples has no row and is not scored. A row is laid out scale by scale,
/// channel by channel, oldest first: index `(k · channels + c) · window + j` is position j of
/// channel c at scale `scales[k]`.
public struct WindowShaper: CheckpointSection, Sendable {
    public static let name = "window"
    public static let stateVersion: UInt32 = 1

    public let window: Int
    public let scales: [Int]
    public let channels: Int
    /// Samples kept: the window at its coarsest scale.
    public let historyLength: Int
    /// The last `historyLength` samples, oldest first, `channels` values each.
    public internal(set) var history: [Float]
    /// Samples the history must hold before a sample has a row: `historyLength`, or with padding
    /// `window × min(scales)` (the coarser scales read the oldest sample in place of the samples not
    /// yet seen).
    public let firstRow: Int

    public init(window: Int, scales: [Int], channels: Int = 1, padded: Bool = false) {
        self.window = window
        self.scales = scales
        self.channels = max(1, channels)
        historyLength = window * (scales.max() ?? 1)
        firstRow = padded ? min(window * (scales.min() ?? 1), historyLength) : historyLength
        history = []
        history.reserveCapacity(historyLength * self.channels)
    }

    /// Width of a row.
    public var rowWidth: Int { window * scales.count * channels }

    /// Appends `count` values and writes the row ending at each value that has one into `rows`, in
    /// order; `rowOf[i]` is the row of value i, or −1. Returns the number of rows written.
    public mutating func shape(_ values: UnsafePointer<Float>, count: Int, into rows: UnsafeMutablePointer<Float>, rowOf: inout [Int]) -> Int {
        var rowCount = 0
        let c = channels, full = historyLength * c
        for i in 0..<count {
            if history.count == full { history.removeFirst(c) }
            history.append(contentsOf: UnsafeBufferPointer(start: values + i * c, count: c))
            guard history.count >= firstRow * c else { continue }
            Self.windowRow(history, window: window, scales: scales, channels: c, into: rows + rowCount * rowWidth)
            rowOf[i] = rowCount
            rowCount += 1
        }
        return rowCount
    }

    /// The model input for the newest of `history`'s samples (`channels` values each): for each
    /// scale s and channel, `w` means of s values, position j ending (w − 1 − j)·s samples before the
    /// newest. A position before the oldest sample reads the oldest sample.
    public static func windowRow(
        _ history: [Float], window w: Int, scales: [Int], channels c: Int = 1, into row: UnsafeMutablePointer<Float>
    ) {
        let n = history.count / c
        var column = 0
        for s in scales {
            for ch in 0..<c {
                for j in 0..<w {
                    let end = n - (w - 1 - j) * s
                    var sum: Float = 0
                    if end - s >= 0 {
                        for u in (end - s)..<end { sum += history[u * c + ch] }
                    } else {
                        for u in (end - s)..<end { sum += history[max(u, 0) * c + ch] }
                    }
                    row[column] = sum / Float(s)
                    column += 1
                }
            }
        }
    }

    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(history.count)); for v in history { w.write(v) }
    }

    public mutating func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        try restore(history: &r)
    }

    /// The history as `encode` writes it (and checkpoint formats 2 to 5 did).
    mutating func restore(history r: inout StateReader) throws {
        let h = Int(try r.read(UInt32.self))
        guard h <= historyLength * channels, h % channels == 0 else { throw StateError.invalid("window history") }
        try r.requireRoom(h, each: 4)
        history = try (0..<h).map { _ in try r.readFinite(Float.self, "window history value") }
    }
}
