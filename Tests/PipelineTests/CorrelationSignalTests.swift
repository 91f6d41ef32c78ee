import EddyProtocol
import Foundation
import Learning
@testable import Pipeline
import Testing

@Suite struct CorrelationSignalTests {
    /// Three channels that follow one mode (±5, jumping every 150 rows, each channel with its own
    /// gain and offset) plus noise; from `breakAt` for 60 rows channel `broken` takes the other mode
    /// alone.
    static func modes(_ n: Int, breakAt: Int = -1, broken: Int = 1, seed: UInt64 = 4) -> [[Float]] {
        var r = RandomSource(seed: seed)
        return (0..<n).map { t in
            let mode: Float = (t / 150) % 2 == 0 ? 5 : -5
            return (0..<3).map { c in
                let flipped = c == broken && (breakAt..<(breakAt + 60)).contains(t)
                return Float(c + 1) * (flipped ? -mode : mode) + Float(10 * c) + 0.1 * r.normal()
            }
        }
    }

    static func feed(_ s: CorrelationSignal, _ row: [Float], anomalous: Bool = false) -> Reading {
        DiscordSignalTests.feed(s, row, anomalous: anomalous)
    }

    /// The median and the median absolute deviation walked out from the median equal the ones
    /// worked out by sorting, for every length from 1 to 12 (odd and even) and for ties.
    @Test func theRobustScaleIsTheMedianAbsoluteDeviation() {
        func median(_ a: [Float]) -> Float {
            let s = a.sorted(), n = s.count
            return n % 2 == 1 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2])
        }
        var r = RandomSource(seed: 8)
        for n in 1...12 {
            for draw in 0..<20 {
                let a = (0..<n).map { _ in draw % 4 == 0 ? Float(Int(r.uniform() * 3)) : r.normal() }.sorted()
                let (m, deviation) = CorrelationSignal.medianAndDeviation(a)
                #expect(m == median(a))
                #expect(abs(deviation - median(a.map { abs($0 - m) })) < 1e-6, "n \(n): \(a)")
            }
        }
    }

    /// Rows the policy found anomalous teach the signal nothing (neither the covariance nor the
    /// readings); past 1,000 readings the window keeps the newest 1,000, in order in `sorted`.
    @Test func anomalousRowsAreNotLearnedAndTheWindowSlides() {
        let s = CorrelationSignal(dimension: 3, horizon: 5000, holdOff: 0)
        let rows = Self.modes(1300)
        for t in 0..<200 { _ = Self.feed(s, rows[t]) }
        let (count, mean, readings) = (s.count, s.mean, s.readings)
        for t in 200..<220 { _ = Self.feed(s, rows[t], anomalous: true) }
        #expect(s.count == count && s.mean == mean && s.readings == readings)
        for t in 220..<1300 { _ = Self.feed(s, rows[t]) }
        #expect(s.readings.count == CorrelationSignal.calibrationWindow)
        #expect(s.sorted == s.readings.sorted())
        #expect(s.count == 200 + 1080)
    }

    /// The inverse of a small matrix by Gauss-Jordan elimination with partial pivoting, worked out
    /// apart from the signal's Cholesky factor.
    static func inverse(_ a: [Double], _ d: Int) -> [Double] {
        var m = a, inv = (0..<(d * d)).map { $0 / d == $0 % d ? 1.0 : 0.0 }
        for c in 0..<d {
            let p = (c..<d).max { abs(m[$0 * d + c]) < abs(m[$1 * d + c]) }!
            for k in 0..<d { m.swapAt(c * d + k, p * d + k); inv.swapAt(c * d + k, p * d + k) }
            let pivot = m[c * d + c]
            for k in 0..<d { m[c * d + k] /= pivot; inv[c * d + k] /= pivot }
            for r in 0..<d where r != c {
                let f = m[r * d + c]
                for k in 0..<d { m[r * d + k] -= f * m[c * d + k]; inv[r * d + k] -= f * inv[c * d + k] }
            }
        }
        return inv
    }

    /// The Cholesky factor multiplies back to its matrix (L Lᵀ = A, L lower triangular) for a random
    /// symmetric positive definite matrix; a matrix with a non-positive pivot has none.
    @Test func theCholeskyFactorMultipliesBack() throws {
        let d = 6
        var r = RandomSource(seed: 1)
        let b = (0..<(d * d)).map { _ in Double(r.normal()) }
        var a = [Double](repeating: 0, count: d * d)
        for i in 0..<d { for j in 0..<d { for k in 0..<d { a[i * d + j] += b[i * d + k] * b[j * d + k] } }; a[i * d + i] += 0.1 }
        let l = try #require(CorrelationSignal.cholesky(a, d))
        for i in 0..<d {
            for j in 0..<d {
                var v = 0.0
                for k in 0..<d { v += l[i * d + k] * l[j * d + k] }
                #expect(abs(v - a[i * d + j]) < 1e-9 * max(1, abs(a[i * d + j])), "(\(i), \(j)): \(v)")
                if j > i { #expect(l[i * d + j] == 0) }
            }
        }
        #expect(CorrelationSignal.cholesky([1, 2, 2, 1], 2) == nil)
    }

    /// From review: two channels of equal variance that move together are shrunk as SPEC 5 says,
    /// S = 0.99 C + 0.01 (tr C / d) I, so the factor's second pivot is √(0.0199 v) and a row that
    /// breaks their bond is many units out, not a rounding error's blow-up. Shrinking the diagonal
    /// alone left S = C, singular: its pivot was the ridge's 1e-6.
    @Test func twoChannelsThatMoveTogetherAreShrunkAsTheSpecSays() throws {
        let s = CorrelationSignal(dimension: 2, horizon: 5000, holdOff: 0)
        var r = RandomSource(seed: 2)
        for _ in 0..<305 {
            let x = 3 * r.normal()
            _ = Self.feed(s, [x, x])
        }
        let v = s.covariance[0]
        #expect(abs(s.covariance[1] - v) < 1e-9 * v && abs(s.covariance[3] - v) < 1e-9 * v)
        let pivot = try #require(s.factor.last)
        #expect(abs(pivot - (0.0199 * v).squareRoot()) < 0.01 * pivot, "\(pivot) against \((0.0199 * v).squareRoot())")
    }

    /// The distance a reading is made of is the squared Mahalanobis distance per feature under the
    /// covariance of the rows learned so far (population, as of the last refresh), shrunk by 1% towards
    /// its mean variance, worked out directly.
    @Test func theDistanceIsTheShrunkMahalanobisDistance() throws {
        let s = CorrelationSignal(dimension: 3, horizon: 5000, holdOff: 0)
        let rows = Self.modes(400)
        for t in 0..<305 { _ = Self.feed(s, rows[t]) }  // refreshes at 30, 55, ..., 305 rows learned
        var checked = 0
        for t in 305..<325 {
            var row = rows[t]
            let x = try #require(row.withUnsafeMutableBufferPointer { b -> Float? in
                var o = Observation(values: UnsafePointer(b.baseAddress!), dimension: 3, logError: 0, modelReady: true)
                _ = s.read(&o)
                return s.lastLog
            })
            // Directly: the mean and covariance of rows 0..<305.
            let d = 3, seen = rows[0..<305].map { $0.map(Double.init) }
            let mean = (0..<d).map { c in seen.map { $0[c] }.reduce(0, +) / 305 }
            var cov = [Double](repeating: 0, count: d * d)
            for v in seen { for i in 0..<d { for j in 0..<d { cov[i * d + j] += (v[i] - mean[i]) * (v[j] - mean[j]) / 305 } } }
            let trace = (0..<d).map { cov[$0 * d + $0] }.reduce(0, +)
            for i in 0..<d * d { cov[i] *= 0.99 }
            for i in 0..<d { cov[i * d + i] += 0.01 * trace / 3 }
            let inv = Self.inverse(cov, d)
            let e = (0..<d).map { Double(row[$0]) - mean[$0] }
            var q = 0.0
            for i in 0..<d { for j in 0..<d { q += e[i] * inv[i * d + j] * e[j] } }
            #expect(abs(Double(x) - log(q / 3)) < 1e-3, "row \(t): \(x) against \(log(q / 3))")
            checked += 1
        }
        #expect(checked == 20)
    }

    /// One channel taking the other mode alone for 60 rows, inside its own range, is many standard
    /// units out and alerts strongly, and names that channel; the modes jumping together, every 150
    /// rows, do not, and neither does one channel flipping alone for two rows (less than `sustain`).
    @Test func aChannelLeavingTheOthersIsSurprisingAndTheirJumpsAreNot() {
        let s = CorrelationSignal(dimension: 3, horizon: 5000, holdOff: 400)
        var rows = Self.modes(1500, breakAt: 1220, broken: 1)
        for t in 900..<(900 + CorrelationSignal.sustain / 2) { rows[t][0] = -rows[t][0] }
        var normal: Float = 0, broken: Float = 0, brokenSurprise = -Float.infinity, channel = -1
        for t in 0..<1500 {
            let r = Self.feed(s, rows[t])
            if t >= 600 && t < 1220 { normal = max(normal, r.strength) }
            if t >= 1220 && t < 1280 && r.strength > broken { (broken, channel) = (r.strength, s.lastChannel) }
            if t >= 1220 && t < 1280 { brokenSurprise = max(brokenSurprise, r.surprise) }
        }
        #expect(normal < 0.5, "the modes' own jumps: strength \(normal)")
        #expect(broken > 0.99 && brokenSurprise > 8, "the break: strength \(broken), surprise \(brokenSurprise)")
        #expect(channel == 1)
    }

    /// A signal restored from a checkpoint (before its first factor, between refreshes, with readings
    /// and peaks) reads the rest of the stream exactly as the original; a section of another width,
    /// or with a scale or reading that is not a finite number, is refused.
    @Test func aRestoredSignalReadsOnAsTheOriginal() throws {
        let rows = Self.modes(1400, breakAt: 1250)
        for cut in [20, 150, 517] {
            let original = CorrelationSignal(dimension: 3, horizon: 300, holdOff: 100)
            for t in 0..<cut { _ = Self.feed(original, rows[t]) }
            var w = StateWriter()
            original.encode(&w)
            let scaleThen = original.scale
            let restored = CorrelationSignal(dimension: 3, horizon: 300, holdOff: 100)
            var r = StateReader(w.bytes)
            try restored.decode(&r, version: CorrelationSignal.stateVersion)
            for t in cut..<1400 {
                let a = Self.feed(original, rows[t]), b = Self.feed(restored, rows[t])
                #expect(a.surprise == b.surprise && a.strength == b.strength, "row \(t) after a cut at \(cut)")
                #expect(original.lastChannel == restored.lastChannel)
            }
            var other = StateReader(w.bytes)
            #expect(throws: (any Error).self) {
                try CorrelationSignal(dimension: 4, horizon: 300, holdOff: 100).decode(&other, version: 1)
            }
            // The scale follows the counts, the flag, the moments and the factor (if any) and the centre.
            let hasFactor = cut >= CorrelationSignal.minimumRows
            let scaleAt = 4 + 8 + 4 + 8 * (3 + 9) + 1 + (hasFactor ? 8 * 9 : 0) + 4
            #expect(Array(w.bytes[scaleAt..<(scaleAt + 4)]) == withUnsafeBytes(of: scaleThen.bitPattern.littleEndian, Array.init))
            for bad in [Float.nan, 0, -1] {
                var bytes = w.bytes
                withUnsafeBytes(of: bad.bitPattern.littleEndian) { for k in 0..<4 { bytes[scaleAt + k] = $0[k] } }
                var tampered = StateReader(bytes)
                #expect(throws: (any Error).self, "scale \(bad)") {
                    try CorrelationSignal(dimension: 3, horizon: 300, holdOff: 100).decode(&tampered, version: 1)
                }
            }
        }
    }

    /// The chain has the signal by default on streams of 2 to `correlation_channels` (8) features,
    /// not on a univariate one, a wider one, or when it is not named; the setting is validated. On a
    /// running stream, the break alerts and the alert names the channel that broke away.
    @Test func aStreamNamesTheChannelThatBrokeAway() throws {
        func has(_ dim: Int, _ change: (inout StreamConfiguration) -> Void = { _ in }) -> Bool {
            var settings = StreamConfiguration()
            change(&settings)
            return StreamPipeline(name: "s", settings: settings.resolved(dim: dim)).chain.signal(CorrelationSignal.self) != nil
        }
        #expect(has(2) && has(8) && !has(1) && !has(9))
        #expect(has(9) { $0.correlationChannels = 16 })
        #expect(!has(3) { $0.signals.removeAll { $0 == CorrelationSignal.name } })
        #expect(try ConfigurationFile.parse("[stream]\ncorrelation_channels = 32\n").streamDefaults.correlationChannels == 32)
        for bad in ["correlation_channels = -1", "correlation_channels = 257"] {
            #expect(throws: (any Error).self, "\(bad)") { try ConfigurationFile.parse("[stream]\n\(bad)\n") }
        }
        var settings = StreamConfiguration().resolved(dim: 3)
        settings.signals.removeAll { $0 == DiscordSignal.name || $0 == RangeSignal.name }
        let p = StreamPipeline(name: "machine", settings: settings)
        #expect(p.chain.signal(CorrelationSignal.self)?.dimension == 3)
        let rows = Self.modes(1500, breakAt: 1220, broken: 2)
        var alerts: [(Int, [Int])] = [], wire: [Eddy_V1_Alert] = []
        for t in 0..<1500 {
            let batch = rows[t].withUnsafeBufferPointer { p.score($0.baseAddress!, count: 1, firstSequence: UInt64(t)) }
            let s = batch.sample(0)
            if s.alert {
                alerts.append((t, s.topFeatures.map(\.index)))
                if s.correlationChannel != nil { wire.append(Wire.alert(s, in: batch)) }
            }
            while p.trainStep() {}
        }
        // The model's error may alert first; the correlation's alert follows within `sustain` rows.
        #expect(alerts.contains { (1220..<(1220 + CorrelationSignal.sustain)).contains($0.0) && $0.1 == [2] }, "alerts \(alerts)")
        let first = try #require(wire.first)
        #expect((1220..<1280).contains(Int(first.score.sequence)))
        #expect(first.signal == "correlation" && first.reason == "feature 2 moved apart from the others")
        #expect(first.topFeatures.map(\.index) == [2] && first.topFeatures.first?.share == 1)
        let restored = try StreamPipeline.restore(p.serialized(), settings: p.settings)
        #expect(restored.chain.signal(CorrelationSignal.self)?.count == p.chain.signal(CorrelationSignal.self)?.count)
    }
}
