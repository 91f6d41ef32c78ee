#if canImport(Glibc)
import Glibc
#endif
import CKernels
import Learning

/// Shape novelty, per channel: how far the last `window` values of a channel (their mean removed)
/// lie from the nearest earlier window of the same channel that ends at most `history` values
/// before, and does not overlap them. A streaming matrix-profile discord (Yeh et al., "Matrix
/// Profile I", 2016; Lu et al., "DAMP", 2022): a change of shape, frequency or amplitude that the
/// stream has not shown within `history` values is far from every earlier window, while a value
/// that merely repeats what came before has a near twin.
///
/// The distance of one window is O(1) per earlier window: the dot products of the current window
/// with the window `lag` values earlier are kept for every lag and slid by one value per sample
/// (STOMP's update, `QT[lag] += x[t]·x[t − lag] − x[t − w]·x[t − w − lag]`), and each window's
/// centred energy (Σx² − (Σx)²/w) and mean are kept as the window ends. So a sample costs O(history)
/// per channel. Sums are in Double, the values kept in rings written twice so every lag's slice is
/// contiguous.
///
/// Each channel's `ln distance` (floored at a small share of the channel's variance, so a flat
/// stream has a scale) is calibrated as the reconstruction error is (`Calibrator`); a sample's
/// surprise is its channels' largest, its strength theirs. A stream wider than `maxChannels` does
/// not use the signal (its cost grows with the channels).
///
/// A window whose nearest twin differs from it mostly by timing is not news: a square wave whose
/// period is not a whole number of samples puts its edges a sample earlier or later from one cycle
/// to the next, and over a window of 100-odd steady values one sample of a step is a record
/// distance. With a `ShiftVeto`, a reading that would alert is read again against that twin, each
/// value free to match the twin's value one sample earlier or later (and each twin window's own
/// mean); if that leaves less than `share` of the distance, it gives no alert strength and a
/// surprise of at most `surprise`. The calibrators still learn the plain distance, and the cost is
/// one pass over the lags and three over the window, only for readings that would alert (a strength
/// of at least `ShiftVeto.strength`, or a surprise past `ShiftVeto.surprise`).
///
/// With `centred` false the windows keep their means: the distance is the plain squared
/// difference, so a window at a level the channel has not shown within `history` values (a
/// trend, a shift, a platform off the usual levels) is as far from every earlier window as a new
/// shape is. The two are the same computation, the centred one with each window's mean taken out.
public final class DiscordSignal: AnomalySignal, @unchecked Sendable {
    public static let name = "discord"
    public static let stateVersion: UInt32 = 1
    /// Distances a channel's calibrator must have learned before its readings count.
    public static let minimumCalibration = ReconstructionSignal.minimumCalibration
    /// The distance floor, as a share of the channel's variance.
    static let floorShare = 1e-4

    public let window: Int
    public let history: Int
    public let channels: Int
    /// A discord's alert strength is measured over the larger of its channel's recent peak surprise
    /// and this (in standard units), so only a window clearly unlike all before it alerts.
    public let margin: Float
    /// Whether each window's mean is removed before windows are compared (true), or kept, so a
    /// change of level counts as much as a change of shape.
    public let centred: Bool
    /// A distance teaches its channel's calibrator at most this many standard units above the mean
    /// (`Calibrator.update(logError:clip:)`; 0: unclipped, `discord_clip`), on a channel that is not
    /// quiet. A discord that builds up (a pattern that drifts away over a few dozen samples) would
    /// otherwise teach the calibrator its own rise, sample by sample, below the alert threshold,
    /// until it no longer stands out.
    public let clip: Double
    /// Ring length: a value is needed until `history + window` samples after it.
    let ring: Int
    /// Earlier windows (in windows) there must be before a distance is read (or the whole history).
    let readyWindows: Int
    /// Samples read.
    public private(set) var count = 0
    /// The count at which the rings' values begin: 0, or where a restore's kept values begin. A
    /// ring longer than the values kept (a `discord_history` raised since) holds those alone, and
    /// no lag may read the empty slots beyond them as windows of earlier values (they hid a flat
    /// stretch inside a cycle, or an outage, until the ring filled).
    var heldFrom = 0
    /// Values the rings hold (the newest `ring` of them).
    var held: Int { count - heldFrom }
    public internal(set) var calibrators: [Calibrator]
    /// Per channel, each a ring of `ring` slots written twice (slot i and i + ring; see `slot`): the values, the
    /// energy (centred, unless `centred` is false) and the mean of the window ending at each sample.
    var values: [UnsafeMutablePointer<Double>]
    var energy: [UnsafeMutablePointer<Double>]
    var mean: [UnsafeMutablePointer<Double>]
    /// Per channel, the current window's dot product with the window `lag` earlier, for lag
    /// `window...history` (index lag).
    var products: [UnsafeMutablePointer<Double>]
    /// Per channel, Welford's running mean and sum of squares of the values (for the floor).
    var moments: [(mean: Double, m2: Double)]
    /// The last reading's `ln distance` per channel (nil: none), between `read` and `learn`.
    var lastLog: [Float?]
    /// The channels of the last reading's largest surprise and largest strength, and that reading
    /// (the largest of each over the channels).
    public private(set) var surprisingChannel = 0
    public private(set) var strongestChannel = 0
    public private(set) var lastReading = Reading()
    /// Per channel, whether its discord is quiet (empty: none is): no alert strength, and a surprise
    /// at most `quietSurprise` (`RepeatingChannels`, set by `MultiscaleDiscord`).
    var quiet: [Bool] = []
    var quietSurprise: Float = .infinity
    /// Whether a reading that differs from its twin mostly by timing is held back (nil: never).
    public let shiftVeto: ShiftVeto?
    /// Readings held back by `shiftVeto`.
    public private(set) var shiftVetoes = 0
    /// The alert strength from which a lagged channel's reading opens an incident (`Calibrator.incident`).
    var standOut: Float = 0.9

    public init(
        window: Int, history: Int, channels: Int, centred: Bool = true, margin: Float = 0, clip: Double = 0, horizon: Int,
        holdOff: Int, readyWindows: Int = 4, shiftVeto: ShiftVeto? = nil
    ) {
        self.centred = centred
        self.clip = clip
        self.shiftVeto = shiftVeto
        self.readyWindows = max(1, readyWindows)
        self.margin = margin
        self.window = max(2, window)
        self.history = max(self.window, history)
        self.channels = max(1, channels)
        ring = self.history + self.window + 1
        calibrators = Array(repeating: Calibrator(horizon: horizon, holdOff: holdOff), count: self.channels)
        let r = ring, n = self.channels, h = self.history
        func allocate(_ size: Int) -> [UnsafeMutablePointer<Double>] {
            (0..<n).map { _ in
                let p = UnsafeMutablePointer<Double>.allocate(capacity: size)
                p.initialize(repeating: 0, count: size)
                return p
            }
        }
        values = allocate(2 * r)
        energy = allocate(2 * r)
        mean = allocate(2 * r)
        products = allocate(h + 1)
        moments = Array(repeating: (0, 0), count: self.channels)
        lastLog = Array(repeating: nil, count: self.channels)
    }

    deinit {
        for p in values + energy + mean + products { p.deallocate() }
    }

    /// Bytes the signal holds (for a stream's memory cost).
    /// `holdOff`: each channel's calibrator remembers that many surprises (`lagged`: and keeps a
    /// second maximum over them, `discord_peak_lag`).
    public static func bytes(window: Int, history: Int, channels: Int, holdOff: Int = 0, lagged: Bool = false) -> Int {
        let w = max(2, window), h = max(w, history)
        return channels * (8 * (3 * 2 * (h + w + 1) + h + 1) + Calibrator.bytes(holdOff: holdOff, lagged: lagged))
    }

    /// Where the value of time t lives in a ring (and again `ring` further on): slots run backwards in
    /// time, so the values from the newest back lie at increasing addresses, as the kernel reads them.
    @inline(__always)
    func slot(_ t: Int) -> Int { (ring - 1) - t % ring }

    /// The largest lag with a whole earlier window once `count` values have been read.
    var longestLag: Int { min(history, held - window) }

    public func read(_ o: inout Observation) -> Reading {
        (surprisingChannel, strongestChannel, lastReading) = (0, 0, Reading())
        guard o.dimension == channels else { return Reading() }
        var best = Reading()
        for c in 0..<channels {
            let d = push(Double(o.values[c]), channel: c)
            guard let d else { lastLog[c] = nil; continue }
            let x = logDistance(d, channel: c)
            lastLog[c] = x
            guard calibrators[c].count >= UInt64(Self.minimumCalibration) else { continue }
            var peak = max(calibrators[c].recentPeak, margin)
            let wholePeak = max(calibrators[c].wholePeak, margin)
            var s = calibrators[c].score(logError: x)
            if let floor = calibrators[c].incident {
                // An incident under way is measured over its own rise; it ends when its surprise
                // comes back under the peak it stood out against.
                if s.surprise > floor { peak = wholePeak } else { calibrators[c].incident = nil }
            }
            let silent = !quiet.isEmpty && quiet[c]
            if silent { s.surprise = min(s.surprise, quietSurprise) }
            var strength = silent ? 0 : Calibrator.score(surprise: s.surprise, peak: peak)
            if let veto = shiftVeto, strength >= veto.strength || s.surprise > veto.surprise,
                shiftShare(channel: c, distance: d) < veto.share
            {
                (strength, s.surprise) = (0, min(s.surprise, veto.surprise))
                shiftVetoes += 1
            }
            // A reading the veto held back opens no incident.
            if calibrators[c].lag > 0 && calibrators[c].incident == nil && strength >= standOut {
                calibrators[c].incident = peak
            }
            if s.surprise > best.surprise { best.surprise = s.surprise; surprisingChannel = c }
            if strength > best.strength { best.strength = strength; strongestChannel = c }
        }
        lastReading = best
        return best
    }

    /// `ln` of a distance of channel `c`, floored at a small share of the channel's variance so that
    /// a flat stream has a scale.
    func logDistance(_ d: Double, channel c: Int) -> Float {
        let variance = count > 1 ? moments[c].m2 / Double(count - 1) : 0
        return Float(log(max(d, max(Self.floorShare * variance, Double(Calibrator.floor)))))
    }

    /// A quiet channel's distances are learned unclipped: on a channel that does not repeat a far
    /// window is ordinary, and its surprise (which still corroborates a range excursion) should
    /// not be measured on a scale that refuses to learn them.
    public func learn(_ o: Observation, anomalous: Bool) {
        guard !anomalous else { return }
        for c in 0..<channels {
            guard let x = lastLog[c] else { continue }
            calibrators[c].update(logError: x, clip: !quiet.isEmpty && quiet[c] ? 0 : clip)
        }
    }

    /// Appends channel `c`'s next value (the first channel advances the count) and returns the
    /// current window's distance to its nearest earlier window (mean squared difference per value,
    /// means removed if `centred`), nil until there are `readyWindows · window` earlier windows.
    @inline(__always)
    func push(_ x: Double, channel c: Int) -> Double? {
        if c == 0 { count += 1 }
        let t = count - 1, w = window, r = ring
        let slot = slot(t)
        let xs = values[c], es = energy[c], ms = mean[c]
        xs[slot] = x
        xs[slot + r] = x
        var m = moments[c]
        let delta = x - m.mean
        m.mean += delta / Double(count)
        m.m2 += delta * (x - m.mean)
        moments[c] = m
        guard held >= w else { return nil }
        // The current window's sums, straight from its values (no drift).
        let base = slot  // x[t − k] is xs[base + k]: the rings run backwards in time
        var squares = 0.0
        let sum = eddy_window_moments(xs + base, w, &squares)
        let windowMean = sum / Double(w)
        let windowEnergy = centred ? max(0, squares - sum * windowMean) : squares
        es[slot] = windowEnergy; es[slot + r] = windowEnergy
        ms[slot] = windowMean; ms[slot + r] = windowMean
        let longest = longestLag
        guard longest >= w else { return nil }
        let qt = products[c]
        // Slide every lag that already had a window (and take the nearest of them); the lag whose
        // earlier window just became whole (it starts at value 0) is computed afresh.
        let slid = held - w - 1 >= w ? min(history, held - w - 1) : w - 1
        let ready = longest - w + 1 >= readyWindows * w || longest == history
        // With the means kept the kernel's mean term drops out: E_now + E_then − 2·QT.
        let wm = centred ? Double(w) * windowMean : 0
        var nearest = Double.infinity
        if slid >= w {
            nearest = eddy_discord_step(
                qt, xs + base, es + base, ms + base, w, w, slid, x, xs[base + w], windowEnergy, wm, 1)
        }
        if longest > slid {
            for lag in (slid + 1)...longest {
                var dot = 0.0
                for k in 0..<w { dot += xs[base + k] * xs[base + lag + k] }
                qt[lag] = dot
            }
            nearest = min(
                nearest,
                eddy_discord_step(qt, xs + base, es + base, ms + base, w, slid + 1, longest, 0, 0, windowEnergy, wm, 0))
        }
        guard ready else { return nil }
        return max(0, nearest) / Double(w)
    }

    /// The share of channel `c`'s current distance `d` (per value, as `push` returned it) that is
    /// left when each value of the window may match its nearest twin's value one sample earlier or
    /// later, each twin window taken about its own mean (1 when there is no distance to share). Read
    /// right after `push` for the channel, while its products are current.
    func shiftShare(channel c: Int, distance d: Double) -> Double {
        guard d > 0 else { return 1 }
        let w = window, base = slot(count - 1), longest = longestLag
        guard longest >= w else { return 1 }
        let xs = values[c], es = energy[c], ms = mean[c]
        let lag = eddy_discord_nearest_lag(
            products[c], es + base, ms + base, w, longest, es[base], centred ? Double(w) * ms[base] : 0)
        let own = centred ? ms[base] : 0
        let shifts = max(w, lag - 1)...min(longest, lag + 1)
        var total = 0.0
        for k in 0..<w {
            let v = xs[base + k] - own
            var best = Double.infinity
            for l in shifts {
                let e = v - (xs[base + l + k] - (centred ? ms[base + l] : 0))
                best = min(best, e * e)
            }
            total += best
        }
        return total / Double(w) / d
    }

    // MARK: Checkpoint

    /// The count, each channel's moments, calibrator and kept values (oldest first); the products
    /// and windows are worked out again from the values.
    public func encode(_ w: inout StateWriter) {
        w.write(UInt64(count))
        let kept = min(held, ring)
        for c in 0..<channels {
            w.write(moments[c].mean.bitPattern); w.write(moments[c].m2.bitPattern)
            calibrators[c].encode(&w)
            w.write(UInt32(kept))
            for i in (count - kept)..<count { w.write(values[c][slot(i)].bitPattern) }
        }
    }

    public func decode(_ r: inout StateReader, version: UInt32) throws {
        guard version == 1 else { throw StateError.unsupportedVersion(version) }
        guard let saved = Int(exactly: try r.read(UInt64.self)), saved < 1 << 62 else { throw StateError.invalid("discord count") }
        var kept: [[Double]] = []
        var restoredMoments: [(Double, Double)] = []
        var restoredCalibrators: [Calibrator] = []
        for c in 0..<channels {
            restoredMoments.append(
                (try r.readFinite(Double.self, "discord moments"), try r.readFinite(Double.self, "discord moments")))
            restoredCalibrators.append(
                try Calibrator.decode(&r).reconfigured(horizon: calibrators[c].horizon, holdOff: calibrators[c].holdOff))
            // A signal saved with a longer history kept more values than this one's ring holds: the
            // newest `ring` of them are replayed below (a shorter `discord_history` resumes).
            let n = Int(try r.read(UInt32.self))
            guard n <= saved else { throw StateError.invalid("discord values") }
            try r.requireRoom(n, each: 8)
            kept.append(
                try (0..<n).map { _ in
                    let v = Double(bitPattern: try r.read(UInt64.self))
                    guard v.isFinite else { throw StateError.invalid("discord value") }
                    return v
                })
        }
        // Replay the kept values (the newest `ring` at most) through fresh rings, then set the count
        // and the statistics the values alone do not give.
        let n = kept.first?.count ?? 0
        guard kept.allSatisfy({ $0.count == n }) else { throw StateError.invalid("discord values") }
        let start = max(0, n - ring)
        count = saved - (n - start)
        for c in 0..<channels { for p in [values[c], energy[c], mean[c]] { p.update(repeating: 0, count: 2 * ring) } }
        replay(kept.map { Array($0[start...]) })
        moments = restoredMoments.map { (mean: $0.0, m2: $0.1) }
        calibrators = restoredCalibrators
        lastLog = Array(repeating: nil, count: channels)
    }

    /// Channel `c`'s newest values, up to `n` of them and as many as the ring holds, oldest first.
    func recentValues(channel c: Int, count n: Int) -> [Float] {
        let k = max(0, min(n, held, ring))
        return ((count - k)..<count).map { Float(values[c][slot($0)]) }
    }

    /// Pushes saved values again, one sample (every channel) at a time, with the count running on
    /// from where it stands: the rings, windows and products come out as they were. The products of
    /// lags whose earlier window lies before the first value are computed afresh as they come whole.
    func replay(_ kept: [[Double]]) {
        let n = kept.first?.count ?? 0
        guard n > 0 else { return }
        let firstCount = count
        (count, heldFrom) = (0, 0)  // fresh rings: windows fill from these values on
        for i in 0..<n {
            for c in 0..<channels { _ = push(kept[c][i], channel: c) }
        }
        (count, heldFrom) = (firstCount + n, firstCount)
        // The rings are indexed by time: move what the replay wrote to the slots of the true times.
        for c in 0..<channels {
            for p in [values[c], energy[c], mean[c]] {
                let moved = (max(0, n - ring)..<n).map { i in (slot(firstCount + i), p[slot(i)]) }
                for (to, v) in moved { p[to] = v; p[to + ring] = v }
            }
        }
    }
}

/// The discord signal at one or more windows at once (`discord_window = 32`, `discord_level_window
/// = 64`): each window is a `DiscordSignal` of its own, with its own rings and calibrators, and a
/// sample's reading is the largest surprise and the largest strength over them. A short window
/// sees a change of shape within a cycle; a longer one that keeps its level (not centred) a change
/// of frequency, a trend or a shift of level, or a flat stretch that a short window finds a near
/// twin for somewhere in the history. With `period` set, each channel that repeats also has a
/// window one period long (`PeriodWindows`).
public final class MultiscaleDiscord: AnomalySignal, @unchecked Sendable {
    public static let name = DiscordSignal.name
    /// 1 was one window's section (`DiscordSignal`'s); 2 is a count, then each window and its
    /// section (every window centred); 3 adds whether each window is centred; 4 adds the period
    /// windows, if any; 5 which channels repeat, if the stream tells them; 6 which repeat strongly.
    public static let stateVersion: UInt32 = 6

    public let scales: [DiscordSignal]
    /// Each channel's window of its own period (nil: none, `discord_period_channels`).
    public let periodic: PeriodWindows?
    /// Which channels repeat, when a channel's discord is quiet until it does (nil: every channel
    /// alerts; `discord_repeating_only`).
    public private(set) var repeating: RepeatingChannels?
    /// On a channel that repeats strongly, the newest samples its windows' recent peaks skip
    /// (`discord_peak_lag`): a discord that builds up over that many samples, as a trend or a pattern
    /// sliding into the window does, is measured against the peak before it, not its own rise.
    public let peakLag: Int
    /// Whether a channel not seen to repeat is quiet (`quietSurprise` given); without it, `repeating`
    /// (kept for the lag) only says which channels repeat strongly.
    public let quieting: Bool
    /// Whether a one-feature count (`Observation.oneCount`) is read by its period's window alone: its
    /// fixed windows still learn, but have no opinion (`discord_count_period_only`). Where a count's
    /// bursts fall within 32 or 64 values is chance, so the nearest earlier such window is often far.
    public let countPeriodOnly: Bool
    /// The windows of the last reading's largest strength and largest surprise (−1: a period window).
    public private(set) var strongestScale = 0
    public private(set) var surprisingScale = 0

    /// `windows` are compared with their means removed, `levelWindows` with them kept; with
    /// `period`, each channel that repeats has a window of its period too. With `quietSurprise`, a
    /// channel not yet seen to repeat gives no alert strength and a surprise of at most that. Every
    /// window holds back readings that differ from their twins mostly by timing, as `shiftVeto` says.
    public init(
        windows: [Int], levelWindows: [Int] = [], period: PeriodSetting? = nil, history: Int, channels: Int,
        margin: Float = 0, clip: Double = 0, horizon: Int, holdOff: Int, quietSurprise: Float? = nil, shiftVeto: ShiftVeto? = nil,
        peakLag: Int = 0, threshold: Float = 0.9, countPeriodOnly: Bool = false
    ) {
        self.peakLag = max(0, peakLag)
        self.countPeriodOnly = countPeriodOnly
        let kinds = windows.map { ($0, true) } + levelWindows.map { ($0, false) }
        scales = kinds.map { window, centred in
            DiscordSignal(
                window: window, history: history, channels: channels, centred: centred, margin: margin, clip: clip,
                horizon: horizon, holdOff: holdOff, shiftVeto: shiftVeto)
        }
        for s in scales { s.standOut = threshold }
        periodic = period.map {
            PeriodWindows(
                channels: channels, setting: $0, history: history, margin: margin, clip: clip, horizon: horizon,
                holdOff: holdOff, shiftVeto: shiftVeto)
        }
        periodic?.standOut = threshold
        if let quietSurprise {
            repeating = RepeatingChannels(channels: channels)
            for s in scales { s.quietSurprise = quietSurprise }
            periodic?.quietSurprise = quietSurprise
            quieting = true
            quietChanged()
        } else {
            // Which channels repeat strongly, for the lag alone: no channel is quiet.
            if self.peakLag > 0 { repeating = RepeatingChannels(channels: channels) }
            quieting = false
        }
    }

    /// Tells every window which channels are quiet, and which measure their peak before the newest
    /// samples.
    private func quietChanged() {
        guard let repeating else { return }
        let quiet = quieting ? repeating.repeats.indices.map(repeating.quiet) : []
        for s in scales { s.quiet = quiet.contains(true) ? quiet : [] }
        let lags = repeating.strong.map { $0 ? peakLag : 0 }
        for s in scales { for c in lags.indices { s.calibrators[c].measurePeak(skippingNewest: lags[c]) } }
        periodic?.lags = lags
        periodic?.quiet = quiet.contains(true) ? quiet : []
    }

    /// Where the last reading's strongest discord was (or, `ofSurprise`, its most surprising: what an
    /// alert on evidence alone names): the channel, the window's length, whether it kept its level,
    /// and the values it was compared with (a period window's may be longer than the others').
    public func origin(ofSurprise: Bool = false) -> (channel: Int, window: Int, level: Bool, history: Int) {
        let k = ofSurprise ? surprisingScale : strongestScale
        guard k < 0 else {
            let s = scales[k]
            return (ofSurprise ? s.surprisingChannel : s.strongestChannel, s.window, !s.centred, s.history)
        }
        guard let p = periodic else { return (0, 0, false, 0) }
        let c = ofSurprise ? p.surprisingChannel : p.strongestChannel
        guard c >= 0, let w = p.windows[c] else { return (max(c, 0), 0, false, 0) }
        return (c, w.window, false, w.history)
    }

    public static func bytes(
        windows: [Int], periodic: Bool = false, repeating: Bool = false, history: Int, channels: Int, holdOff: Int = 0,
        lagged: Bool = false
    ) -> Int {
        windows.reduce(0) {
            $0 + DiscordSignal.bytes(window: $1, history: history, channels: channels, holdOff: holdOff, lagged: lagged)
        }
            + (periodic ? PeriodWindows.bytes(channels: channels, history: history, holdOff: holdOff, lagged: lagged) : 0)
            + (repeating ? RepeatingChannels.bytes(channels: channels) : 0)
    }

    public func read(_ o: inout Observation) -> Reading {
        var best = Reading(), strongest = 0, surprising = 0
        if repeating?.push(o.values, count: o.dimension) == true { quietChanged() }
        // Read all the same: a window's distances slide from sample to sample.
        let fixed = !(countPeriodOnly && o.oneCount)
        for k in scales.indices {
            let r = scales[k].read(&o)
            guard fixed else { continue }
            if r.surprise > best.surprise { (best.surprise, surprising) = (r.surprise, k) }
            if r.strength > best.strength { (best.strength, strongest) = (r.strength, k) }
        }
        if let periodic {
            let r = periodic.read(&o)
            if r.surprise > best.surprise { (best.surprise, surprising) = (r.surprise, -1) }
            if r.strength > best.strength { (best.strength, strongest) = (r.strength, -1) }
        }
        (strongestScale, surprisingScale) = (strongest, surprising)
        return best
    }

    public func learn(_ o: Observation, anomalous: Bool) {
        for s in scales { s.learn(o, anomalous: anomalous) }
        periodic?.learn(o, anomalous: anomalous)
    }

    public func encode(_ w: inout StateWriter) {
        w.write(UInt32(scales.count))
        for s in scales {
            w.write(UInt32(s.window))
            w.write(s.centred)
            var inner = StateWriter()
            s.encode(&inner)
            w.write(blob: inner.bytes)
        }
        w.write(periodic != nil)
        if let periodic {
            var inner = StateWriter()
            periodic.encode(&inner)
            w.write(blob: inner.bytes)
        }
        w.write(repeating != nil)
        if let repeating {
            var inner = StateWriter()
            repeating.encode(&inner)
            w.write(blob: inner.bytes)
        }
    }

    /// A window restores from the section of the same window and kind (centred or level); a window
    /// the section does not have starts afresh, and so do the period windows before version 4 or
    /// when the section has none (those of a section are dropped if the stream has none now).
    /// Version 1 (one centred window, not recorded) restores the first centred window; version 2's
    /// windows are all centred. Which channels repeat is restored from version 5; before it, or from
    /// a section without them, every channel counts as repeating (the discord alerted on every
    /// channel then), none strongly, on a stream that quiets channels; on one that keeps the
    /// decisions for `peakLag` alone (a univariate stream), its channels decide afresh. Version 5
    /// does not say which channels repeat strongly: a channel it says repeats decides that again
    /// from the newest values its windows kept (`RepeatingChannels.decideStrength`).
    public func decode(_ r: inout StateReader, version: UInt32) throws {
        defer { quietChanged() }
        // A stream that quiets its channels assumes they repeat until the section says otherwise; one
        // that keeps the decisions for the lag alone decides afresh if the section has none.
        if quieting { repeating?.assumeRepeating() }
        switch version {
        case 1:
            try scales.first(where: \.centred)?.decode(&r, version: 1)
        case 2, 3, 4, 5, 6:
            let n = Int(try r.read(UInt32.self))
            guard n <= 64 else { throw StateError.invalid("discord windows") }
            for _ in 0..<n {
                let window = Int(try r.read(UInt32.self))
                let centred = version == 2 ? true : try r.read(Bool.self)
                var inner = StateReader(try r.readBlob())
                if let s = scales.first(where: { $0.window == window && $0.centred == centred }) {
                    try s.decode(&inner, version: 1)
                }
            }
            if try version >= 4 && r.read(Bool.self) {
                var inner = StateReader(try r.readBlob())
                try periodic?.decode(&inner)
            }
            if try version >= 5 && r.read(Bool.self) {
                var inner = StateReader(try r.readBlob())
                try repeating?.decode(&inner, strongly: version >= 6)
                if version == 5, let kept = scales.max(by: { $0.ring < $1.ring }) {
                    for c in 0..<kept.channels {
                        repeating?.decideStrength(c, from: kept.recentValues(channel: c, count: RepeatingChannels.last))
                    }
                }
            }
        default:
            throw StateError.unsupportedVersion(version)
        }
    }
}

/// When a discord reading that differs from its nearest twin mostly by timing is held back
/// (`discord_shift_veto`): a reading that would alert (a strength of at least `strength`, the
/// alert `threshold`, or a surprise past `surprise`, just under `alert_evidence`) is read again,
/// and held back when less than `share` of its distance is left once each value may match the
/// twin's value one sample earlier or later. A held-back reading gives no alert strength and a
/// surprise of at most `surprise`, so it still scores.
public struct ShiftVeto: Sendable, Equatable {
    public var share: Double
    public var strength: Float
    public var surprise: Float
    public init(share: Double, strength: Float, surprise: Float) {
        (self.share, self.strength, self.surprise) = (share, strength, surprise)
    }
}

/// A centred discord window one period long on each channel that repeats
/// (`discord_period_channels`). A 32-value window sees a change of shape shorter than itself, and
/// finds a near twin for a stretch of a longer cycle that is only out of place, not out of shape:
/// a beat taken from a slower rhythm, a cycle played at another speed, a flat stretch where a
/// cycle should be. A window of one whole cycle has a near twin one period earlier on a channel
/// that repeats, and none when the cycle changes.
///
/// Each channel's period is found from its first `PeriodCheck.detectionSamples` values
/// (`PeriodCheck.detectPeriod`: 20 to 300 values, autocorrelation at least 0.5), which are kept
/// until then and fed to the new window, or is `period = N` from the start; the window is the
/// period, within `shortestWindow...longestWindow`. A channel without a period has no window, and
/// `period = off` gives none.
public final class PeriodWindows: @unchecked Sendable {
    public static let shortestWindow = 16
    public static let longestWindow = 256

    let history: Int
    let margin: Float
    let clip: Double
    let horizon: Int
    let holdOff: Int
    let shiftVeto: ShiftVeto?
    /// Whether each channel finds its own period (`period = auto`), rather than taking a fixed one.
    let finds: Bool
    /// Per channel: its first values, kept until its period is decided (empty after).
    var seen: [[Float]]
    /// Per channel, whether its period is decided, and its window once it is (nil: none).
    public private(set) var decided: [Bool]
    public private(set) var windows: [DiscordSignal?]
    /// Per channel, whether its window is quiet (empty: none is), and the surprise a quiet one is held
    /// to: as `DiscordSignal.quiet` (`RepeatingChannels`; with `period = auto` a channel has a window
    /// only if it repeats, with a fixed period every channel has one from the start). Each window
    /// is told its channel's, so that a quiet channel's window also learns its distances unclipped.
    var quiet: [Bool] = [] { didSet { for c in windows.indices { if let w = windows[c] { tell(w, channel: c) } } } }
    var quietSurprise: Float = .infinity

    /// The alert strength from which a lagged window's reading opens an incident.
    var standOut: Float = 0.9
    /// Per channel, the newest samples its window's recent peak skips (`discord_peak_lag`; empty: none).
    var lags: [Int] = [] { didSet { for c in windows.indices { if let w = windows[c] { tell(w, channel: c) } } } }

    /// Tells window `w` channel `c`'s settings: whether it is quiet, its lag and when it opens an incident.
    private func tell(_ w: DiscordSignal, channel c: Int) {
        w.standOut = standOut
        w.calibrators[0].measurePeak(skippingNewest: c < lags.count ? lags[c] : 0)
        w.quiet = quiet.isEmpty ? [] : [quiet[c]]
        w.quietSurprise = quietSurprise
    }
    /// The channels of the last reading's strongest window and of its most surprising (−1: none).
    public private(set) var strongestChannel = -1
    public private(set) var surprisingChannel = -1

    public init(
        channels: Int, setting: PeriodSetting, history: Int, margin: Float, clip: Double = 0, horizon: Int, holdOff: Int,
        shiftVeto: ShiftVeto? = nil
    ) {
        self.history = history
        self.clip = clip
        self.shiftVeto = shiftVeto
        self.margin = margin
        self.horizon = horizon
        self.holdOff = holdOff
        let n = max(1, channels)
        finds = setting == .auto
        seen = Array(repeating: [], count: n)
        windows = Array(repeating: nil, count: n)
        switch setting {
        case .auto:
            decided = Array(repeating: false, count: n)
            for c in 0..<n { seen[c].reserveCapacity(PeriodCheck.detectionSamples) }
        case .off:
            decided = Array(repeating: true, count: n)
        case .fixed(let period):
            decided = Array(repeating: true, count: n)
            for c in 0..<n { windows[c] = window(for: period) }
        }
    }

    /// The window of a channel of this period.
    func window(for period: Int) -> DiscordSignal {
        let w = Self.windowLength(period: period)
        return DiscordSignal(
            window: w, history: Self.history(window: w, configured: history), channels: 1, margin: margin, clip: clip,
            horizon: horizon, holdOff: holdOff, shiftVeto: shiftVeto)
    }

    /// The period within `shortestWindow...longestWindow`.
    static func windowLength(period: Int) -> Int { min(max(period, shortestWindow), longestWindow) }

    /// A window's history: `discord_history`, or `cycles` windows if longer, so that a window is
    /// compared with at least four earlier cycles.
    public static func history(window: Int, configured: Int) -> Int { max(configured, cycles * window) }
    public static let cycles = 5

    /// Bytes the windows of a stream of `channels` channels may come to hold (each channel's
    /// longest window, and the first values kept meanwhile).
    public static func bytes(channels: Int, history: Int, holdOff: Int = 0, lagged: Bool = false) -> Int {
        let w = longestWindow
        return channels
            * (DiscordSignal.bytes(
                window: w, history: Self.history(window: w, configured: history), channels: 1, holdOff: holdOff, lagged: lagged)
                + 4 * PeriodCheck.detectionSamples)
    }

    /// Each decided window's length (0: none, or not decided).
    public var lengths: [Int] { windows.map { $0?.window ?? 0 } }

    public func read(_ o: inout Observation) -> Reading {
        var best = Reading()
        (strongestChannel, surprisingChannel) = (-1, -1)
        guard o.dimension == windows.count else { return best }
        for c in windows.indices {
            let x = o.values[c]
            if !decided[c] {
                seen[c].append(x)
                guard seen[c].count >= PeriodCheck.detectionSamples else { continue }
                decide(c)  // and this sample is the new window's first reading (the chain's `learn` follows)
            }
            guard let w = windows[c] else { continue }
            // A quiet channel's window holds its own reading down (`tell`).
            let r = Self.alone(x, logError: o.logError, modelReady: o.modelReady) { w.read(&$0) }
            if surprisingChannel < 0 || r.surprise > best.surprise { (best.surprise, surprisingChannel) = (r.surprise, c) }
            if strongestChannel < 0 || r.strength > best.strength { (best.strength, strongestChannel) = (r.strength, c) }
        }
        return best
    }

    public func learn(_ o: Observation, anomalous: Bool) {
        guard o.dimension == windows.count else { return }
        for c in windows.indices {
            guard let w = windows[c] else { continue }
            Self.alone(o.values[c], logError: o.logError, modelReady: o.modelReady) { w.learn($0, anomalous: anomalous) }
        }
    }

    /// `body` given one channel's value `x` as an observation of its own.
    private static func alone<R>(_ x: Float, logError: Float?, modelReady: Bool, _ body: (inout Observation) -> R) -> R {
        var x = x
        return withUnsafePointer(to: &x) { p in
            var one = Observation(values: p, dimension: 1, logError: logError, modelReady: modelReady)
            return body(&one)
        }
    }

    /// Decides channel `c`'s period from its kept values and feeds its window all but the newest
    /// (the sample being read), if it has one.
    private func decide(_ c: Int) {
        let period = PeriodCheck.detectPeriod(seen[c])
        decided[c] = true
        if period > 0 {
            let w = window(for: period)
            tell(w, channel: c)
            for x in seen[c].dropLast() {
                Self.alone(x, logError: 0, modelReady: true) { one in
                    _ = w.read(&one)
                    w.learn(one, anomalous: false)
                }
            }
            // The replay raises no alert, so it leaves no incident under way.
            w.calibrators[0].incident = nil
            windows[c] = w
        }
        seen[c] = []
    }

    /// Whether the channels find their own periods, then per channel: whether decided; if not, its
    /// kept values; if so, its window's length (0: none) and that window's section.
    func encode(_ w: inout StateWriter) {
        w.write(UInt32(windows.count))
        w.write(finds)
        for c in windows.indices {
            w.write(decided[c])
            if !decided[c] {
                w.write(UInt32(seen[c].count))
                for x in seen[c] { w.write(x) }
                continue
            }
            w.write(UInt32(windows[c]?.window ?? 0))
            if let s = windows[c] {
                var inner = StateWriter()
                s.encode(&inner)
                w.write(blob: inner.bytes)
            }
        }
    }

    /// Restores what the settings of now still ask for (into windows fresh from them): with `period
    /// = auto`, the decisions and windows of channels that found their own periods (a fixed
    /// period's windows start afresh, to find theirs); with a fixed period, the saved windows of
    /// that length; with `period = off`, nothing.
    func decode(_ r: inout StateReader) throws {
        let n = Int(try r.read(UInt32.self))
        guard n == windows.count else { throw StateError.invalid("period windows: \(n) channels, the stream has \(windows.count)") }
        let savedFinds = try r.read(Bool.self)
        if finds && !savedFinds { return }
        let auto = finds
        for c in 0..<n {
            if !(try r.read(Bool.self)) {
                let k = Int(try r.read(UInt32.self))
                guard k < PeriodCheck.detectionSamples else { throw StateError.invalid("period window values") }
                try r.requireRoom(k, each: 4)
                let values = try (0..<k).map { _ in try r.readFinite(Float.self, "period window value") }
                if auto {
                    seen[c] = values
                    seen[c].reserveCapacity(PeriodCheck.detectionSamples)
                }
                continue
            }
            let length = Int(try r.read(UInt32.self))
            guard length == 0 || (Self.shortestWindow...Self.longestWindow).contains(length) else {
                throw StateError.invalid("period window length \(length)")
            }
            guard length > 0 else {
                if auto { (decided[c], seen[c], windows[c]) = (true, [], nil) }
                continue
            }
            var inner = StateReader(try r.readBlob())
            if auto {
                let s = window(for: length)
                try s.decode(&inner, version: DiscordSignal.stateVersion)
                (decided[c], seen[c], windows[c]) = (true, [], s)
            } else if let s = windows[c], s.window == length {
                try s.decode(&inner, version: DiscordSignal.stateVersion)
            }
        }
    }
}
