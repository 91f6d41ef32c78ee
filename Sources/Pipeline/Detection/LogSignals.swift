import Foundation
import Learning
import LogMining

/// What a log stream knows of one line when its signals read it (`Observation.line`): the
/// template it joined (`LogFront` mined it), the numbers among its parameters, and when it came.
public struct LineFacts: Sendable {
    /// The template's id, and whether the line founded it or generalised it (a position became `<*>`,
    /// so the template's parameters are no longer the ones they were).
    public var template: UInt32
    public var isNew: Bool
    public var changed: Bool
    /// A template evicted to make room for this one (0: none): signals forget what they kept of it.
    public var evicted: UInt32
    /// The stream's line number of this line (1 for the first).
    public var index: UInt64
    /// The producer's timestamp in seconds, or nil.
    public var seconds: Double?
    /// The template's first `LogFront.maximumParameters` parameters as numbers (nil: not a number).
    public var numbers: ParameterNumbers

    public init(
        template: UInt32, isNew: Bool, changed: Bool = false, evicted: UInt32 = 0, index: UInt64, seconds: Double? = nil,
        numbers: ParameterNumbers = []
    ) {
        self.template = template
        self.isNew = isNew
        self.changed = changed
        self.evicted = evicted
        self.index = index
        self.seconds = seconds
        self.numbers = numbers
    }
}

/// A line's first `LogFront.maximumParameters` parameters as numbers (nil: not a number), held
/// inline: a line's facts cost no allocation.
public struct ParameterNumbers: RandomAccessCollection, ExpressibleByArrayLiteral, Sendable {
    private var values: (Double, Double, Double, Double, Double, Double, Double, Double) = (0, 0, 0, 0, 0, 0, 0, 0)
    /// Bit i: parameter i is a number.
    private var present: UInt8 = 0
    public private(set) var endIndex = 0
    public var startIndex: Int { 0 }
    public static let capacity = 8

    public init() {}
    public init(arrayLiteral elements: Double?...) { for x in elements { append(x) } }

    public subscript(i: Int) -> Double? {
        precondition(i >= 0 && i < endIndex, "parameter index out of range")
        guard present & (1 << i) != 0 else { return nil }
        return withUnsafeBytes(of: values) { $0.load(fromByteOffset: i * 8, as: Double.self) }
    }

    /// Adds a parameter (at most `capacity`).
    public mutating func append(_ x: Double?) {
        precondition(endIndex < Self.capacity, "more than \(Self.capacity) parameters")
        if let x {
            let i = endIndex
            withUnsafeMutableBytes(of: &values) { $0.storeBytes(of: x, toByteOffset: i * 8, as: Double.self) }
            present |= 1 << i
        }
        endIndex += 1
    }
}

/// Why a log signal read a line as unusual, for the alert (`LogFront.describe` puts it in words).
public enum LogFinding: Sendable, Equatable {
    /// The line founded its template, or its template is rare (`seen` lines of it before, in `lines`).
    case newTemplate(UInt32)
    case rareTemplate(UInt32, seen: UInt64, lines: UInt64)
    /// Parameter `position` (0-based among the template's `<*>`) is `value`, its template usually
    /// carries about `usual` there.
    case parameter(UInt32, position: Int, value: Double, usual: Double)
    /// `count` of the last `window` lines are of the template, `ratio` times its usual rate.
    case burst(UInt32, count: Int, window: Int, ratio: Double)
    /// A template that usually comes every `usual` (lines, or seconds) has not come for `gap`.
    case silence(UInt32, usual: Double, gap: Double, seconds: Bool)
    /// The mix of templates in the last lines is unlike the stream's usual (the autoencoder).
    case mix(UInt32)

    public var template: UInt32 {
        switch self {
        case .newTemplate(let t), .rareTemplate(let t, _, _), .parameter(let t, _, _, _), .burst(let t, _, _, _),
            .silence(let t, _, _, _), .mix(let t):
            t
        }
    }
}

/// The upper-tail standard-normal quantile: the z with Φ(z) = 1 − p (Abramowitz and Stegun
/// 26.2.23, error below 5·10⁻⁴), so a line with probability p reads as z standard units of surprise.
func upperQuantile(_ p: Double) -> Float {
    let q = min(max(p, 1e-300), 1 - 1e-16)
    if q > 0.5 { return -upperQuantile(1 - q) }
    let t = (-2 * log(q)).squareRoot()
    let z = t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t)
    return Float(z)
}

/// A template id read from a state file (0 is no template).
func readTemplateID(_ r: inout StateReader) throws -> UInt32 {
    let id = try r.read(UInt32.self)
    guard id != 0 else { throw StateError.invalid("template id 0") }
    return id
}

/// The alert strength of a surprise over a margin: Φ(z − margin).
func strength(_ z: Float, margin: Float) -> Float { z.isFinite ? Calibrator.phi(z - margin) : 0 }

// MARK: - New and rare templates

/// A line whose template is new, or rare. The chance that the next line founds a template is
/// Good–Turing's: the share of the lines so far whose template was seen once only (at least one
/// such line), so where new templates are common (a young stream, or a log with ever-new messages)
/// one is no news, and where every template has come many times it is. A new template's surprise
/// is the upper quantile of that chance; a template seen before reads as the quantile of its share
/// of the lines so far (it ranks, it does not alert). Strength: Φ(z − margin).
/// A log signal that keeps something per template: what it kept of an evicted template goes.
public protocol TemplateKeeping: AnyObject {
    func forget(template id: UInt32)
}

public final class TemplateSignal: AnomalySignal, TemplateKeeping, @unchecked Sendable {
    public static let name = "template"
    public static let stateVersion: UInt32 = 1

    let margin: Float
    /// Lines seen, each template's count, and the templates seen once only.
    var lines: UInt64 = 0
    var counts = TemplateMap<UInt64>()
    var singletons = 0
    public private(set) var finding: LogFinding?

    public init(margin: Float) { self.margin = margin }

    public func forget(template id: UInt32) {
        if let n = counts.removeValue(forKey: id), n == 1 { singletons -= 1 }
    }

    public func read(_ o: inout Observation) -> Reading {
        finding = nil
        guard let line = o.line else { return Reading() }
        if line.evicted != 0 { forget(template: line.evicted) }
        if line.isNew {
            let z = upperQuantile(Double(max(singletons, 1)) / Double(max(lines, 1)))
            let s = strength(z, margin: margin)
            if s >= 0.5 { finding = .newTemplate(line.template) }
            return Reading(surprise: z, strength: s)
        }
        let seen = counts[line.template] ?? 0
        let z = upperQuantile(Double(seen + 1) / Double(lines + 1))
        if seen < 3 && strength(z, margin: margin) >= 0.5 { finding = .rareTemplate(line.template, seen: seen, lines: lines) }
        return Reading(surprise: z)
    }

    /// Every line counts (an anomalous line is still a line of its template, and a stream whose new
    /// templates keep alerting should learn that they are its habit).
    public func learn(_ o: Observation, anomalous: Bool) {
        guard let line = o.line else { return }
        lines &+= 1
        let n = counts.update(line.template, default: 0) { n in
            n &+= 1
            return n
        }
        if n == 1 { singletons += 1 } else if n == 2 { singletons -= 1 }
    }

    public func encode(_ w: inout StateWriter) {
        w.write(lines)
        w.write(UInt32(counts.count))
        for (id, n) in counts.sortedEntries { w.write(id); w.write(n) }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        lines = try r.readCount()
        let n = Int(try r.read(UInt32.self))
        try r.requireRoom(n, each: 12)
        counts = TemplateMap()
        for _ in 0..<n { counts[try readTemplateID(&r)] = try r.readCount() }
        singletons = counts.values.filter { $0 == 1 }.count
    }
}

// MARK: - Parameters

/// A number far outside what its template usually carries at that position. Each template's first
/// `LogFront.maximumParameters` numeric parameters are followed on the scale y = sign(x)·ln(1 + |x|):
/// their range (the smallest and largest y learned) and running mean and variance (over `horizon`
/// values). Once a position has `minimumCount` values, a value reads as its distance from the mean
/// in deviations (a scale of at least 0.1): that ranks. It alerts (an event) only above the range by
/// more than `margin` on that scale (2.3: ten times the largest value seen): many parameters (ports,
/// ids, sizes) spread wider than their deviation says, and a number far below what its position
/// carried was, on LogHub's samples, an id far more often than a fault.
public final class ParameterSignal: AnomalySignal, TemplateKeeping, @unchecked Sendable {
    public static let name = "parameter"
    public static let stateVersion: UInt32 = 1
    static let minimumCount = 20.0
    static let floor = 0.1

    struct Moments { var count = 0.0, mean = 0.0, variance = 0.0, low = Double.infinity, high = -Double.infinity }
    let horizon: Double, margin: Float
    var stats = TemplateMap<[Moments]>()
    public private(set) var finding: LogFinding?

    public init(horizon: Int, margin: Float) {
        self.horizon = Double(max(horizon, 1))
        self.margin = margin
    }

    public func forget(template id: UInt32) { stats[id] = nil }

    static func scaled(_ x: Double) -> Double { x < 0 ? -log1p(-x) : log1p(x) }

    /// The line's numbers on that scale: worked out by `read` for every line, kept for the `learn`
    /// that follows it (matched by line number; `learn` works them out if they do not match).
    var scaledLine = (index: UInt64.max, values: ParameterNumbers())
    static func scaled(_ line: LineFacts) -> ParameterNumbers {
        var values = ParameterNumbers()
        for x in line.numbers { values.append(x.map(scaled)) }
        return values
    }

    public func read(_ o: inout Observation) -> Reading {
        finding = nil
        guard let line = o.line else { return Reading() }
        if line.evicted != 0 { forget(template: line.evicted) }
        if line.changed { stats[line.template] = nil }  // its positions moved
        let ys = Self.scaled(line)
        scaledLine = (line.index, ys)
        guard let slot = stats.slot(of: line.template) else { return Reading() }
        var best = -Float.infinity, position = -1, beyond = false
        let count = stats[slot: slot].count
        for (k, y) in ys.enumerated() where k < count {
            guard let y, stats[slot: slot][k].count >= Self.minimumCount else { continue }
            let m = stats[slot: slot][k]
            let z = Float(abs(y - m.mean) / max(m.variance.squareRoot(), Self.floor))
            let outside = y - m.high > Double(margin)
            if (outside && !beyond) || (outside == beyond && z > best) { (best, position, beyond) = (z, k, outside) }
        }
        guard position >= 0 else { return Reading() }
        if beyond {
            let m = stats[slot: slot][position]
            let usual = m.mean < 0 ? -expm1(-m.mean) : expm1(m.mean)
            finding = .parameter(line.template, position: position, value: line.numbers[position]!, usual: usual)
        }
        return Reading(surprise: best, strength: beyond ? 1 : 0, event: beyond)
    }

    /// The range learns every value (a new level alerts once, not on every line at it); the moments
    /// only those of normal lines.
    public func learn(_ o: Observation, anomalous: Bool) {
        guard let line = o.line, !line.numbers.isEmpty else { return }
        let learn = !anomalous, horizon = horizon
        let ys = scaledLine.index == line.index ? scaledLine.values : Self.scaled(line)
        // In place: a copy of the template's moments would be an allocation per line.
        stats.update(line.template, default: []) { moments in
            if moments.count < ys.count {
                moments += Array(repeating: Moments(), count: ys.count - moments.count)
            }
            for (k, y) in ys.enumerated() {
                guard let y else { continue }
                Self.update(&moments[k], y, learn: learn, horizon: horizon)
            }
        }
    }

    static func update(_ m: inout Moments, _ y: Double, learn: Bool, horizon: Double) {
        m.low = min(m.low, y)
        m.high = max(m.high, y)
        guard learn else { return }
        m.count += 1
        let delta = y - m.mean
        let a = 1 / min(m.count, horizon)
        m.mean += a * delta
        m.variance = (1 - a) * (m.variance + a * delta * delta)
    }

    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(stats.count))
        for (id, moments) in stats.sortedEntries {
            w.write(id); w.write(UInt32(moments.count))
            for m in moments { w.write(m.count); w.write(m.mean); w.write(m.variance); w.write(m.low); w.write(m.high) }
        }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        let n = Int(try r.read(UInt32.self))
        try r.requireRoom(n, each: 8)
        stats = TemplateMap()
        scaledLine.index = .max
        for _ in 0..<n {
            let id = try readTemplateID(&r)
            let k = Int(try r.read(UInt32.self))
            guard k <= LogFront.maximumParameters else { throw StateError.invalid("parameter count \(k)") }
            stats[id] = try (0..<k).map { _ in
                Moments(
                    count: try r.readFinite(Double.self, "parameter moments"), mean: try r.readFinite(Double.self, "parameter moments"),
                    variance: try r.readFinite(Double.self, "parameter moments"),
                    low: try r.readNumber(Double.self, "parameter range"), high: try r.readNumber(Double.self, "parameter range"))
            }
        }
    }
}

// MARK: - Bursts

/// A template far more frequent in the last `window` lines than usual. Each template's share of the
/// lines is a running mean over `horizon` lines (decayed lazily: a template is touched only when it
/// comes) of the lines that have left the window, so a burst inside the window does not raise the
/// baseline it is measured against; its count among the last `window` lines is compared with the
/// `window × share` expected, as a Poisson count: the surprise is the signed root of the deviance,
/// √(2(c·ln(c/λ) − (c − λ))), for at least `minimumCount` lines of it in the window. A burst (at
/// least `ratio` times the expected count, surprise at least `margin`) alerts once as it starts, an
/// event, and not again for that template until its surprise has fallen below half the margin.
public final class BurstSignal: AnomalySignal, TemplateKeeping, @unchecked Sendable {
    public static let name = "burst"
    public static let stateVersion: UInt32 = 1
    static let minimumCount = 5

    let window: Int, horizon: Double, margin: Float, ratio: Double
    /// Per template: its decayed count of lines (`share` makes it a share) and the line it was last
    /// brought up to date at.
    var shares = TemplateMap<(share: Double, at: UInt64)>()
    /// The last `window` lines' templates (a ring) and their counts.
    var recent: [UInt32] = []
    var next = 0
    var counts = TemplateMap<Int>()
    var lines: UInt64 = 0
    /// Templates in a burst now (reported; quiet until their surprise falls below margin / 2).
    var bursting = TemplateMap<Void>()
    public private(set) var finding: LogFinding?

    /// d^k for the first `decays.count` whole k (d = 1 − 1/horizon): a template's count is decayed
    /// by the lines since it last came, usually few, on every line of it (the same values `pow` gives).
    let decays: [Double]

    public init(window: Int, horizon: Int, margin: Float, ratio: Double) {
        self.ratio = ratio
        self.window = max(window, 1)
        self.horizon = Double(max(horizon, 1))
        self.margin = margin
        let d = 1 - 1 / self.horizon
        decays = (0..<1024).map { pow(d, Double($0)) }
    }

    /// The template's share of the lines that left the window: its count decayed by d = 1 − 1/horizon
    /// per line since, over the lines' decayed total (1 − dⁿ)/(1 − d), an exponentially weighted
    /// share that is unbiased from the first line on.
    func share(_ id: UInt32) -> Double {
        guard let s = shares[id], lines > 0 else { return 0 }
        let d = 1 - 1 / horizon
        return decayed(s, to: lines) / ((1 - pow(d, Double(lines))) * horizon)
    }

    /// The template's count, decayed to line `now`.
    func decayed(_ s: (share: Double, at: UInt64), to now: UInt64) -> Double {
        let k = now - s.at
        return s.share * (k < UInt64(decays.count) ? decays[Int(k)] : pow(1 - 1 / horizon, Double(k)))
    }

    public func read(_ o: inout Observation) -> Reading {
        finding = nil
        guard let line = o.line else { return Reading() }
        if line.evicted != 0 { forget(template: line.evicted) }
        // The window moves on by this line (whatever becomes of it); the line leaving it joins the shares.
        if recent.count < window {
            recent.append(line.template)
        } else {
            let out = recent[next]
            if let k = counts.slot(of: out), counts[slot: k] > 1 { counts[slot: k] -= 1 } else { counts[out] = nil }
            if out != 0 { learnShare(out) }
            recent[next] = line.template
            next = next + 1 == window ? 0 : next + 1
        }
        let c = counts.update(line.template, default: 0) { c in
            c += 1
            return c
        }
        guard c >= Self.minimumCount, lines >= UInt64(window) else {
            bursting.removeValue(forKey: line.template)
            return Reading()
        }
        let lambda = Double(recent.count) * max(share(line.template), 0.5 / horizon)
        let n = Double(c)
        let z = n > lambda ? Float((2 * (n * log(n / lambda) - (n - lambda))).squareRoot()) : 0
        if z < margin / 2 { bursting.removeValue(forKey: line.template) }
        guard z >= margin, n >= ratio * lambda, bursting.insert(line.template) else { return Reading(surprise: z) }
        finding = .burst(line.template, count: c, window: recent.count, ratio: n / lambda)
        return Reading(surprise: z, strength: 1, event: true)
    }

    /// An evicted template: its share, its burst, and its lines in the window (which become id 0,
    /// no template's, so they leave without teaching a share of a template that is gone).
    public func forget(template id: UInt32) {
        shares[id] = nil
        bursting.removeValue(forKey: id)
        counts[id] = nil
        for k in recent.indices where recent[k] == id { recent[k] = 0 }
    }

    /// A line that left the window, counted in its template's share (every line counts: a lasting
    /// change of rate becomes the usual).
    func learnShare(_ id: UInt32) {
        let then = lines
        lines &+= 1
        let now = lines
        // Decayed by one more line, plus this one; the others decay lazily (`share`).
        shares.update(id, default: (0, then)) { s in
            s = (decayed(s, to: then) * (1 - 1 / horizon) + 1, now)
        }
    }

    public func learn(_ o: Observation, anomalous: Bool) {}
    public var learns: Bool { false }

    public func encode(_ w: inout StateWriter) {
        w.write(lines)
        w.write(UInt32(shares.count))
        for (id, s) in shares.sortedEntries { w.write(id); w.write(s.share); w.write(s.at) }
        // The ring, oldest first.
        let ordered = recent.count < window ? recent : Array(recent[next...] + recent[..<next])
        w.write(UInt32(ordered.count))
        for id in ordered { w.write(id) }
        w.write(UInt32(bursting.count))
        for id in bursting.sortedKeys { w.write(id) }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        lines = try r.readCount()
        let n = Int(try r.read(UInt32.self))
        try r.requireRoom(n, each: 20)
        shares = TemplateMap()
        for _ in 0..<n {
            let id = try readTemplateID(&r), share = try r.read(Double.self), at = try r.read(UInt64.self)
            guard at <= lines, share.isFinite, share >= 0 else { throw StateError.invalid("burst share") }
            shares[id] = (share, at)
        }
        let k = Int(try r.read(UInt32.self))
        try r.requireRoom(k, each: 4)
        let ordered = try (0..<k).map { _ in try r.read(UInt32.self) }.suffix(window)
        recent = Array(ordered)
        next = 0
        counts = TemplateMap()
        // Lines of an evicted template (0) are no template's: not counted.
        for id in recent where id != 0 { counts[id, default: 0] += 1 }
        let b = Int(try r.read(UInt32.self))
        try r.requireRoom(b, each: 4)
        bursting = TemplateMap()
        for _ in 0..<b { _ = bursting.insert(try readTemplateID(&r)) }
    }
}

// MARK: - Silences

/// A template that comes regularly and stops. Each template's gaps between lines (in lines, or in
/// seconds when the producer sends timestamps) are followed as a running mean and mean absolute
/// deviation; once a template has come `minimumCount` times with a deviation at most half its mean
/// gap (and, in lines, that gap at least `minimumGap`), it is overdue when `factor` mean gaps have passed
/// without it. (A rule of the mean gap plus `factor` deviations, taking in templates as irregular
/// as a Poisson stream's, found no more silences in the leave-one-system-out runs and raised more
/// false alarms: docs/log-streams.md.) Overdue templates are found through a heap of deadlines, so
/// each line costs O(log templates); a silence is read on the first line after its deadline (an
/// event), once until the template comes again.
public final class SilenceSignal: AnomalySignal, TemplateKeeping, @unchecked Sendable {
    public static let name = "silence"
    public static let stateVersion: UInt32 = 1
    static let minimumCount = 8.0

    struct Rhythm {
        var count = 0.0
        var last = 0.0
        var gap = 0.0, deviation = 0.0
        var reported = false
    }
    let factor: Double, horizon: Double
    var rhythms = TemplateMap<Rhythm>()
    /// Deadlines (min-heap by time), with the count of the template when set (stale when it differs).
    var deadlines: [(at: Double, id: UInt32, count: Double)] = []
    var timed: Bool?
    public private(set) var finding: LogFinding?

    public init(factor: Double, horizon: Int) {
        self.factor = factor
        self.horizon = Double(max(horizon, 1))
    }

    public func forget(template id: UInt32) { rhythms[id] = nil }

    /// Where the line is in the stream's time: seconds if the stream's first line had a timestamp,
    /// else lines. A line without one in a timed stream has no place in its time (nil): it is
    /// neither read nor learned by this signal.
    func now(_ line: LineFacts) -> Double? {
        if timed == nil { timed = line.seconds != nil }
        return timed! ? line.seconds : Double(line.index)
    }

    public func read(_ o: inout Observation) -> Reading {
        finding = nil
        guard let line = o.line else { return Reading() }
        if line.evicted != 0 { forget(template: line.evicted) }
        guard let t = now(line) else { return Reading() }
        while let top = deadlines.first, top.at <= t {
            popDeadline()
            guard let k = rhythms.slot(of: top.id), case let r = rhythms[slot: k], r.count == top.count, !r.reported,
                top.id != line.template
            else { continue }
            rhythms[slot: k].reported = true
            finding = .silence(top.id, usual: r.gap, gap: t - r.last, seconds: timed!)
            return Reading(surprise: Float(min((t - r.last) / max(r.gap, 1e-9), 1e6)), strength: 1, event: true)
        }
        return Reading()
    }

    public func learn(_ o: Observation, anomalous: Bool) {
        guard let line = o.line, let t = now(line) else { return }
        let horizon = horizon
        let r = rhythms.update(line.template, default: Rhythm()) { r in
            if r.count > 0 {
                let gap = max(t - r.last, 0), a = 1 / min(r.count, horizon)
                r.deviation += a * (abs(gap - r.gap) - r.deviation)
                r.gap += a * (gap - r.gap)
            }
            r.count += 1
            r.last = max(r.last, t)
            r.reported = false
            return r
        }
        if regular(r) {
            pushDeadline((t + allowance(r), line.template, r.count))
        }
        // Stale deadlines leave as time passes; a heap grown far past the templates is rebuilt.
        if deadlines.count > 4 * rhythms.count + 64 { rebuild() }
    }

    /// Often enough seen, its gaps steady (at most half their mean apart from it) and, in lines, at
    /// least `minimumGap` long: a template on every other line is the traffic itself.
    func regular(_ r: Rhythm) -> Bool {
        r.count >= Self.minimumCount && r.deviation <= 0.5 * r.gap && (timed == true ? r.gap > 0 : r.gap >= Self.minimumGap)
    }

    /// How long after its last line a regular template is overdue.
    func allowance(_ r: Rhythm) -> Double { factor * r.gap }
    static let minimumGap = 4.0

    func rebuild() {
        let live = deadlines.filter { d in rhythms[d.id].map { $0.count == d.count } ?? false }
        deadlines = []
        for d in live { pushDeadline(d) }
    }

    func pushDeadline(_ d: (at: Double, id: UInt32, count: Double)) {
        deadlines.append(d)
        var i = deadlines.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard deadlines[p].at > deadlines[i].at else { break }
            deadlines.swapAt(p, i)
            i = p
        }
    }

    func popDeadline() {
        deadlines.swapAt(0, deadlines.count - 1)
        deadlines.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < deadlines.count && deadlines[l].at < deadlines[m].at { m = l }
            if r < deadlines.count && deadlines[r].at < deadlines[m].at { m = r }
            if m == i { break }
            deadlines.swapAt(i, m)
            i = m
        }
    }

    public func encode(_ w: inout StateWriter) {
        w.write(UInt8(timed == nil ? 0 : timed! ? 2 : 1))
        w.write(UInt32(rhythms.count))
        for (id, r) in rhythms.sortedEntries {
            w.write(id); w.write(r.count); w.write(r.last); w.write(r.gap); w.write(r.deviation); w.write(r.reported)
        }
    }

    /// Deadlines are not saved: they are set again from the rhythms.
    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        let mode = try r.read(UInt8.self)
        timed = mode == 0 ? nil : mode == 2
        let n = Int(try r.read(UInt32.self))
        try r.requireRoom(n, each: 37)
        rhythms = TemplateMap()
        deadlines = []
        for _ in 0..<n {
            let id = try readTemplateID(&r)
            let rhythm = Rhythm(
                count: try r.read(Double.self), last: try r.read(Double.self), gap: try r.read(Double.self),
                deviation: try r.read(Double.self), reported: try r.read(Bool.self))
            rhythms[id] = rhythm
            if regular(rhythm) && !rhythm.reported {
                pushDeadline((rhythm.last + allowance(rhythm), id, rhythm.count))
            }
        }
    }
}
