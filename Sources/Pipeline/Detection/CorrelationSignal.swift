#if canImport(Glibc)
import Glibc
#endif
import CKernels
import Learning

/// Correlation breaks on a stream of several features: how far a row lies from what the features'
/// running covariance expects, its squared Mahalanobis distance per feature, `eᵀ S⁻¹ e / d` with
/// `e` the row less the running mean and `S` the running covariance shrunk a little towards its
/// mean variance (Ledoit and Wolf's target; `shrinkage`). Channels that move together (modes that
/// jump at once, sensors on one machine) make a row in which one of them moves alone far from every
/// row before, even when each value is well inside its own range; a move they make together is not.
///
/// The mean and covariance follow the normal rows as the calibrator's Gaussian does (Welford until
/// `horizon` rows, then an exponential average); its Cholesky factor is worked out again every
/// `max(refresh, features)` rows. `ln distance` is calibrated robustly, by the median and the median absolute
/// deviation of the last `calibrationWindow` normal readings: the log of a Mahalanobis distance is
/// skewed (a long tail towards 0), so a running Gaussian of it is too wide to see a break. A
/// reading's surprise is the smallest of the last `sustain` (a break lasts), and its strength is
/// measured over `max(recent peak, margin)`, as the discord's is. Its surprise does not corroborate
/// a range excursion: a value beyond the range is far from the mean as well.
public final class CorrelationSignal: AnomalySignal, @unchecked Sendable {
    public static let name = "correlation"
    public static let stateVersion: UInt32 = 1
    /// The widest stream `correlation_channels` may give the signal (it costs O(features²) a sample
    /// and O(features³) per refresh).
    public static let maxChannels = 256
    /// Rows learned before the first reading.
    public static let minimumRows = 30
    /// Readings the robust scale must have before the signal has an opinion.
    public static let minimumCalibration = 100
    static let calibrationWindow = 1000
    /// Rows between refreshes of the factor (O(features³) each, so every `max(25, features)` rows
    /// keeps a row's share O(features²)).
    static let refresh = 25
    static let shrinkage = 0.01
    /// The scale never goes below this (log units), as the calibrator's deviation.
    static let minimumDeviation: Float = 0.05
    /// A reading's surprise is the smallest of the last this many: a break between channels is
    /// something that lasts, while one channel switching a row or two before its partner (square
    /// waves of different frequencies, sensors that lag each other) is not.
    public static let sustain = 4

    public let dimension: Int
    public let horizon: Int
    public let margin: Float
    /// Rows learned.
    public private(set) var count = 0
    var mean: [Double]
    /// Row-major, `dimension × dimension`.
    var covariance: [Double]
    /// The shrunk covariance's Cholesky factor (lower, row-major), as of the last refresh (empty
    /// before the first): `eᵀ S⁻¹ e = |L⁻¹ e|²`.
    var factor: [Double] = []
    var sinceRefresh = 0
    /// The last `calibrationWindow` normal readings' `ln distance`, in a ring from `start`.
    var readings: [Float] = []
    var start = 0
    /// The median and the scale (1.4826 × the median absolute deviation) of `readings`, as of the
    /// last refresh (or the 100th reading, if later).
    var centre: Float = 0, scale: Float = 1
    var recent: RecentMaximum
    /// The last `sustain` readings' surprises, negated (their maximum is minus their minimum).
    var lasting: RecentMaximum
    /// The last reading's `ln distance` (nil: none), between `read` and `learn`.
    var lastLog: Float?
    /// The feature that contributed most to the last reading's distance, for a reading of at least
    /// 1 standard unit (−1: none).
    public private(set) var lastChannel = -1
    /// The row less the mean, `L⁻¹` times it, and `S⁻¹` times it (scratch).
    var residual: [Double], solved: [Double], shares: [Double]
    /// `readings` in ascending order.
    var sorted: [Float] = []

    public init(dimension: Int, horizon: Int, holdOff: Int, margin: Float = 4) {
        self.dimension = max(1, dimension)
        self.horizon = max(1, horizon)
        self.margin = margin
        mean = [Double](repeating: 0, count: self.dimension)
        covariance = [Double](repeating: 0, count: self.dimension * self.dimension)
        residual = mean
        solved = mean
        shares = mean
        recent = RecentMaximum(span: holdOff)
        lasting = RecentMaximum(span: Self.sustain)
    }

    /// Bytes the signal holds: the mean and scratch, the covariance and its factor (and their copies
    /// while a refresh works), the readings twice (in order of arrival and sorted), the remembered
    /// surprises.
    public static func bytes(dimension d: Int, holdOff: Int) -> Int {
        8 * (4 * d + 4 * d * d) + 2 * 4 * calibrationWindow + 20 * (holdOff + sustain)
    }

    public var warming: Bool { false }
    /// What an alert from this signal says, in the `Alert` and in `eddy replay --detail`.
    public static func reason(channel: Int) -> String { "feature \(channel) moved apart from the others" }
    /// A value beyond its range is far from the mean too, so its distance grows with the
    /// excursion itself: no corroboration for the range signal.
    public var corroborates: Bool { false }

    public func read(_ o: inout Observation) -> Reading {
        lastLog = nil
        guard o.dimension == dimension, o.scored, !factor.isEmpty else { return Reading() }
        let d = dimension, values = o.values
        for i in 0..<d { residual[i] = Double(values[i]) - mean[i] }
        let distance = eddy_forward_norm(factor, residual, &solved, d)
        guard distance.isFinite else { return Reading() }
        let x = Float(log(max(distance / Double(d), 1e-12)))
        lastLog = x
        guard readings.count >= Self.minimumCalibration else { return Reading() }
        lasting.push(-(x - centre) / scale)
        guard lasting.pushed >= Self.sustain, let negated = lasting.maximum else { return Reading() }
        let z = -negated
        let peak = max(recent.maximum ?? 0, margin)
        recent.push(z)
        // Which feature: only for a reading that could alert (the back substitution is as dear as
        // the distance): at least 1 standard unit, the least `alert_evidence` allows; −1 otherwise.
        lastChannel = z >= 1 ? eddy_back_shares(factor, solved, residual, &shares, d) : -1
        return Reading(surprise: z, strength: Calibrator.score(surprise: z, peak: peak))
    }

    public func learn(_ o: Observation, anomalous: Bool) {
        guard !anomalous, o.dimension == dimension else { return }
        let d = dimension, values = o.values
        count += 1
        let w = 1 / Double(min(count, horizon))
        for i in 0..<d {
            residual[i] = Double(values[i]) - mean[i]
            mean[i] += w * residual[i]
        }
        eddy_covariance_update(&covariance, residual, d, w)
        if let x = lastLog {
            keep(x)
            // The first readings are judged on a scale made of all the readings they wait for.
            if readings.count == Self.minimumCalibration { refreshScale() }
        }
        sinceRefresh += 1
        if count >= Self.minimumRows && (factor.isEmpty || sinceRefresh >= max(Self.refresh, d)) { refreshModel() }
    }

    /// Adds a reading to the window (the oldest leaves a full one), in order in `sorted` too.
    func keep(_ x: Float) {
        if readings.count < Self.calibrationWindow {
            readings.append(x)
        } else {
            let leaving = Self.lowerBound(of: readings[start], in: sorted)
            if leaving < sorted.count { sorted.remove(at: leaving) }
            readings[start] = x
            start = (start + 1) % Self.calibrationWindow
        }
        sorted.insert(x, at: Self.lowerBound(of: x, in: sorted))
    }

    static func lowerBound(of x: Float, in a: [Float]) -> Int {
        var lo = 0, hi = a.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if a[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The median of an ascending array and the median of its absolute deviations from it (the
    /// deviations taken in ascending order by walking out from the median both ways).
    static func medianAndDeviation(_ a: [Float]) -> (median: Float, deviation: Float) {
        let n = a.count
        guard n > 0 else { return (0, 0) }
        let m = n % 2 == 1 ? a[n / 2] : 0.5 * (a[n / 2 - 1] + a[n / 2])
        var left = n / 2 - 1, right = n / 2  // the next deviation either side of the median
        var previous: Float = 0, deviation: Float = 0
        for k in 0...(n / 2) {
            let dl = left >= 0 ? m - a[left] : .infinity, dr = right < n ? a[right] - m : .infinity
            let next: Float
            if dl <= dr { next = dl; left -= 1 } else { next = dr; right += 1 }
            // The k-th smallest deviation (0-based); the median of n is the ((n - 1) / 2)-th, or the
            // mean of the (n / 2 - 1)-th and (n / 2)-th.
            if n % 2 == 1 && k == n / 2 { deviation = next }
            if n % 2 == 0 && k == n / 2 { deviation = 0.5 * (previous + next) }
            previous = next
        }
        return (m, deviation)
    }

    /// The shrunk covariance's factor and the readings' robust centre and scale, afresh (the scale
    /// also once the readings first number `minimumCalibration`).
    func refreshModel() {
        sinceRefresh = 0
        let d = dimension
        var trace = 0.0
        for i in 0..<d { trace += covariance[i * d + i] }
        var ridge = Self.shrinkage * trace / Double(d) + 1e-12
        while true {
            // S = (1 − λ) C + λ (tr C / d) I (SPEC 5): every entry shrunk, not the diagonal alone,
            // which left two channels of equal variance that move together as singular as they were.
            var s = covariance.map { (1 - Self.shrinkage) * $0 }
            for i in 0..<d { s[i * d + i] += ridge }
            if let l = Self.cholesky(s, d) { factor = l; break }
            ridge *= 10
            if !ridge.isFinite || ridge > 1e300 { factor = []; break }
        }
        refreshScale()
    }

    func refreshScale() {
        guard !sorted.isEmpty else { return }
        let (m, deviation) = Self.medianAndDeviation(sorted)
        centre = m
        scale = max(1.4826 * deviation, Self.minimumDeviation)
    }

    /// The Cholesky factor `L` (lower, row-major) of a symmetric positive definite `d × d` matrix,
    /// `a = L Lᵀ`, or nil if a pivot is not positive.
    static func cholesky(_ a: [Double], _ d: Int) -> [Double]? {
        var l = [Double](repeating: 0, count: d * d)
        return eddy_cholesky(a, &l, d) == 0 ? l : nil
    }

    // MARK: Checkpoint

    /// The rows learned, the mean, the covariance, the readings (oldest first), the remembered
    /// surprises (for the peak, and the last `sustain`), and what the last refresh worked out (the
    /// factor, the robust centre and scale) with
    /// the rows since it, so a restored signal reads on as the original.
    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(dimension))
        w.write(UInt64(count))
        w.write(UInt32(sinceRefresh))
        for v in mean + covariance { w.write(v.bitPattern) }
        w.write(UInt8(factor.isEmpty ? 0 : 1))
        for v in factor { w.write(v.bitPattern) }
        w.write(centre); w.write(scale)
        let ordered = Array(readings[start...] + readings[..<start])
        w.write(UInt32(ordered.count))
        for x in ordered { w.write(x) }
        for kept in [recent.ordered, lasting.ordered] {
            w.write(UInt32(kept.count))
            for z in kept { w.write(z) }
        }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        let d = Int(try r.read(UInt32.self))
        guard d == dimension else { throw StateError.invalid("correlation: \(d) features, the stream has \(dimension)") }
        let saved = Int(clamping: try r.read(UInt64.self))
        guard saved <= 1 << 62 else { throw StateError.invalid("correlation count") }
        let since = Int(try r.read(UInt32.self))
        let moments = try (0..<(d + d * d)).map { _ in Double(bitPattern: try r.read(UInt64.self)) }
        let hasFactor = try r.read(UInt8.self) == 1
        let l = hasFactor ? try (0..<(d * d)).map { _ in Double(bitPattern: try r.read(UInt64.self)) } : []
        guard moments.allSatisfy(\.isFinite), l.allSatisfy(\.isFinite) else { throw StateError.invalid("correlation moments") }
        let c = try r.read(Float.self), s = try r.read(Float.self)
        guard c.isFinite, s.isFinite, s >= Self.minimumDeviation else { throw StateError.invalid("correlation scale") }
        let n = Int(try r.read(UInt32.self))
        guard n <= Self.calibrationWindow else { throw StateError.invalid("correlation readings") }
        try r.requireRoom(n, each: 4)
        let xs = try (0..<n).map { _ in try r.read(Float.self) }
        guard xs.allSatisfy(\.isFinite) else { throw StateError.invalid("correlation readings") }
        var kept: [[Float]] = []
        for _ in 0..<2 {
            let m = Int(try r.read(UInt32.self))
            guard m <= 1 << 24 else { throw StateError.invalid("correlation surprises") }
            kept.append(try (0..<m).map { _ in try r.read(Float.self) })
        }
        count = saved
        sinceRefresh = since
        mean = Array(moments[..<d])
        covariance = Array(moments[d...])
        factor = l
        (centre, scale) = (c, s)
        readings = xs
        sorted = xs.sorted()
        start = 0
        recent = RecentMaximum(span: recent.span)
        for z in kept[0].suffix(recent.span) { recent.push(z) }
        lasting = RecentMaximum(span: Self.sustain)
        for z in kept[1].suffix(Self.sustain) { lasting.push(z) }
        lastLog = nil
    }
}
