import Learning

/// A lone value far beyond anything its feature has shown (a sensor's 1e4 among readings of ±1, a
/// unit error, a byte counter that wrapped) alerts, and is kept out of what the stream learns.
///
/// Before a batch is shaped into the models' rows, `inspect` looks at each value in order: once the
/// feature has shown `warmup` values, a value further beyond its range (smallest to largest so far)
/// than `ranges` times the range's width is a glitch. A younger range is crossed by more, so once
/// the feature has shown `arming` values the bar is `ranges × (warmup / n)²` widths after `n` values
/// (3,000 widths after 50 values of 500, 120 after 250): junk readings from the 51st value on are
/// caught too, while on the development streams 5 real changes of 647 (random walks' mode jumps, a
/// square wave's first edge) lose their first values to it (up to `longestRun`). It is replaced, in the batch itself, by the
/// feature's last value, so the windows, the normaliser, the replay buffer, the model and every
/// other signal see the stream as if it had not come; this signal then reads the sample as certain
/// (it scores 1) and names the feature; the first glitch of a burst is also an event (it alerts
/// whatever the repeat cap), the rest of the burst one incident with it. Without the
/// guard one such value took the normaliser's variance up a thousandfold for about
/// `normaliser_horizon` samples, trained the autoencoder on it from the buffer and taught every
/// calibration its aftermath, so that nothing after it alerted.
///
/// A burst of junk is replaced value by value, up to `longestRun` values in a row on a feature; the
/// next value that far beyond in the same run is a new level, not a glitch: it is let through, taken
/// into the range, and the signals after this one learn it as they learn any change (the run before
/// it stays replaced). On the project's development corpora (NAB's 35 files and 24 generated corpora)
/// a value beyond 30 ranges came on 2 streams of 647, each the start of a real change.
public final class GlitchGuard: AnomalySignal, @unchecked Sendable {
    public static let name = "glitch"
    public static let stateVersion: UInt32 = 1

    let dimension: Int
    /// How many widths of its range a value must lie beyond it to be a glitch.
    public let ranges: Float
    let warmup: UInt64
    /// Values a feature must show before the guard judges any (a range of fewer says nothing).
    let arming: UInt64
    /// The default `arming`: on the project's development streams (NAB's 35 files and 612 generated
    /// ones) the bar, young and grown, is crossed after 50 values by 7 streams (5 before their 500th
    /// value), each at the start of a real change.
    public static let defaultArming = 50
    /// Glitches in a row on one feature before the next is taken for a new level: a sensor's junk
    /// comes in bursts of a few readings, a real change stays, and holding a real change's first
    /// values back costs it nothing but their learning (the first alerts).
    public static let longestRun: UInt8 = 3
    /// A univariate windowed stream's window (its one value is time step `window − 1` in explanations).
    let window: Int
    /// Per feature: the range so far, the last value let through, and how many glitches in a row end
    /// with the previous value (0 to `longestRun`). Raw storage: read for every value of a batch.
    let lowP, highP, lastP: UnsafeMutablePointer<Float>
    let runP: UnsafeMutablePointer<UInt8>
    /// A batch's smallest and largest value per feature.
    let batchLow, batchHigh: UnsafeMutablePointer<Float>
    /// Values each feature has shown.
    public internal(set) var seen: UInt64 = 0
    /// The glitches of the batch being judged, by index in it, in order: (feature, value, widths
    /// beyond the range); and the next one `read` looks for.
    public private(set) var found: [(sample: Int, feature: Int, value: Float, ranges: Float, replacement: Float, first: Bool)] = []
    var cursor = 0, sample = 0
    public private(set) var explanation: [(index: Int, share: Float)] = []

    public init(dimension: Int, ranges: Float, warmup: Int, window: Int) {
        self.dimension = dimension
        self.ranges = ranges
        self.warmup = UInt64(max(1, warmup))
        self.arming = UInt64(max(1, min(Self.defaultArming, warmup)))
        self.window = window
        (lowP, highP, lastP) = (.allocate(capacity: dimension), .allocate(capacity: dimension), .allocate(capacity: dimension))
        lowP.initialize(repeating: .infinity, count: dimension)
        highP.initialize(repeating: -.infinity, count: dimension)
        lastP.initialize(repeating: 0, count: dimension)
        runP = .allocate(capacity: dimension)
        runP.initialize(repeating: 0, count: dimension)
        (batchLow, batchHigh) = (.allocate(capacity: dimension), .allocate(capacity: dimension))
        batchLow.initialize(repeating: 0, count: dimension)
        batchHigh.initialize(repeating: 0, count: dimension)
    }

    deinit {
        for p in [lowP, highP, lastP, batchLow, batchHigh] { p.deallocate() }
        runP.deallocate()
    }

    /// How many widths of its range the next value must lie beyond it once `seen` values have come.
    func bar(after seen: UInt64) -> Float {
        guard seen < warmup else { return ranges }
        let youth = Float(warmup) / Float(max(seen, 1))
        return ranges * youth * youth
    }

    /// The range so far, the last values and the runs of glitches, as arrays (tests, tools).
    var low: [Float] { Array(UnsafeBufferPointer(start: lowP, count: dimension)) }
    var high: [Float] { Array(UnsafeBufferPointer(start: highP, count: dimension)) }
    var last: [Float] { Array(UnsafeBufferPointer(start: lastP, count: dimension)) }
    var runs: [UInt8] { Array(UnsafeBufferPointer(start: runP, count: dimension)) }

    /// Finds the glitches among `count` samples, in order, and what replaces each (`found`); the
    /// range and last values move on as if the replacements had come. `apply` writes them.
    ///
    /// Nearly every batch has none: when each feature's values in the batch lie within the bounds
    /// the range had before it (which only widen within a batch), one pass of minima and maxima
    /// (it vectorises) updates the state; only a batch with a value beyond them, one that moves a
    /// feature constant so far, or one that arms the guard, is gone through value by value.
    public func inspect(_ x: UnsafePointer<Float>, count: Int) {
        if !found.isEmpty { found.removeAll(keepingCapacity: true) }
        guard count > 0 else { return }
        let d = dimension, armed = seen >= arming
        if armed || seen + UInt64(count) <= arming {
            let bl = batchLow, bh = batchHigh
            bl.update(from: x, count: d)
            bh.update(from: x, count: d)
            for i in 1..<max(1, count) {
                let row = x + i * d
                for f in 0..<d {
                    bl[f] = min(bl[f], row[f])
                    bh[f] = max(bh[f], row[f])
                }
            }
            var within = true
            if armed {
                // The bar falls as values come: the batch's last value has the lowest.
                let widths = bar(after: seen + UInt64(count - 1))
                for f in 0..<d {
                    let lo = lowP[f], hi = highP[f], slack = widths * (hi - lo)
                    // A feature constant so far has no bounds yet: a batch that moves it gets its
                    // first width from its own first values, which the bounds check needs.
                    if hi > lo ? (bh[f] > hi + slack || bl[f] < lo - slack) : (bh[f] > hi || bl[f] < lo) { within = false }
                }
            }
            if within {
                let newest = x + (count - 1) * d
                for f in 0..<d {
                    lowP[f] = min(lowP[f], bl[f])
                    highP[f] = max(highP[f], bh[f])
                    lastP[f] = newest[f]
                    // A value within the bounds ends a feature's run of glitches.
                    if armed { runP[f] = 0 }
                }
                seen &+= UInt64(count)
                return
            }
        }
        for i in 0..<count {
            let row = x + i * d
            let armed = seen >= arming, widths = bar(after: seen)
            for f in 0..<d {
                let v = row[f], lo = lowP[f], hi = highP[f]
                if armed && hi > lo {
                    let width = hi - lo, slack = widths * width
                    if v > hi + slack || v < lo - slack {
                        if runP[f] < Self.longestRun {
                            runP[f] += 1
                            found.append((i, f, v, (v > hi ? v - hi : lo - v) / width, lastP[f], runP[f] == 1))
                            continue
                        }
                    }
                    // Within the bounds, or one more after a whole run (a new level, taken in
                    // below): the next value far beyond is a glitch again.
                    runP[f] = 0
                }
                if v < lo { lowP[f] = v }
                if v > hi { highP[f] = v }
                lastP[f] = v
            }
            seen &+= 1
        }
    }

    /// Writes the replacements `inspect` found into the same batch (or its copy).
    public func apply(to x: UnsafeMutablePointer<Float>) {
        for g in found { x[g.sample * dimension + g.feature] = g.replacement }
    }

    public func prepare(_ values: UnsafePointer<Float>, count: Int, dimension: Int) {
        cursor = 0
        sample = 0
    }

    public func read(_ o: inout Observation) -> Reading {
        defer { sample += 1 }
        guard cursor < found.count, found[cursor].sample == sample else { return Reading() }
        var shares: [(index: Int, share: Float)] = []
        var total: Float = 0
        var first = false
        while cursor < found.count && found[cursor].sample == sample {
            let g = found[cursor]
            first = first || g.first
            shares.append((window > 0 && dimension == 1 ? window - 1 : g.feature, g.ranges))
            total += g.ranges
            cursor += 1
        }
        explanation = shares.map { ($0.index, $0.share / total) }.sorted { $0.share > $1.share }
        // A burst's first glitch alerts whatever the repeat cap; the rest of it is one incident.
        return Reading(certain: true, event: first)
    }

    /// The glitch of the sample judged last (the largest, if several features had one).
    public var lastGlitch: (feature: Int, value: Float, ranges: Float)? {
        let own = found.filter { $0.sample == sample - 1 }
        return own.max { $0.ranges < $1.ranges }.map { ($0.feature, $0.value, $0.ranges) }
    }

    /// An alert's reason: `feature 2's value 10000.0 lies 4990 times its range's width beyond it; not learned from`.
    public static func reason(feature: Int, value: Float, ranges: Float, dimension: Int) -> String {
        let times = ranges >= 100 ? String(Int(ranges.rounded())) : String(format: "%.1f", ranges)
        return "\(dimension > 1 ? "feature \(feature)'s" : "the") value \(value) lies \(times) times its range's width beyond it; not learned from"
    }

    public var learns: Bool { false }
    public var corroborates: Bool { false }

    public func learn(_ o: Observation, anomalous: Bool) {}

    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(dimension))
        w.write(seen)
        for f in 0..<dimension { w.write(lowP[f]) }
        for f in 0..<dimension { w.write(highP[f]) }
        for f in 0..<dimension { w.write(lastP[f]) }
        for f in 0..<dimension { w.write(runP[f]) }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        guard Int(try r.read(UInt32.self)) == dimension else { throw StateError.invalid("glitch guard width") }
        let seen = try r.readCount()
        try r.requireRoom(dimension, each: 13)
        let l = try (0..<dimension).map { _ in try r.read(Float.self) }
        let h = try (0..<dimension).map { _ in try r.read(Float.self) }
        let v = try (0..<dimension).map { _ in try r.readFinite(Float.self, "glitch guard's last values") }
        // The run lengths (0 to 3; daemons before 0.19 wrote a flag, 0 or 1, read as a run of one).
        let g = try (0..<dimension).map { _ in try r.read(UInt8.self) }
        if let f = g.firstIndex(where: { $0 > Self.longestRun }) { throw StateError.invalid("glitch guard's run of feature \(f)") }
        // A feature seen has a finite range, low ≤ high; one not yet seen has (+∞, −∞).
        for f in 0..<dimension where !(l[f].isFinite && h[f].isFinite && l[f] <= h[f]) && !(l[f] == .infinity && h[f] == -.infinity) {
            throw StateError.invalid("glitch guard's range of feature \(f)")
        }
        self.seen = seen
        lowP.update(from: l, count: dimension)
        highP.update(from: h, count: dimension)
        lastP.update(from: v, count: dimension)
        runP.update(from: g, count: dimension)
    }
}
