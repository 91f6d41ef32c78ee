#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Learning

/// The reference workload's synthetic stream (`shared/bench/WORKLOAD.md`, v1):
///
///     x_t[d] = Σ_{k=1..3} a[k,d] · sin(2π f_k t + φ[k,d]) + 0.1 · n_t[d]
///
/// with `f = (1/50, 1/130, 1/370)`, `a ~ U(0.5, 1.5)`, `φ ~ U(0, 2π)` drawn once per seed, and
/// `n ~ N(0, 1)`. Same distribution as the peers' numpy generator; not the same draws (numpy's PCG64
/// is not reproduced), which WORKLOAD.md leaves to the implementation.
public struct ReferenceStream: Sendable {
    public static let frequencies: [Double] = [1.0 / 50, 1.0 / 130, 1.0 / 370]
    public static let noise: Float = 0.1
    public let dimension: Int
    /// The stream's frequencies: `frequencies` (the workload's), or the first alone (`cycling`).
    let frequencies: [Double]
    let amplitude: [Double]  // (3, D)
    let phase: [Double]  // (3, D)
    let seed: UInt64

    /// `cycling`: each channel is the first sine alone (period 50) with its noise, a stream whose
    /// channels repeat strongly (their first autocorrelation peak is near 1; the workload's three
    /// sines peak at 0.5 to 0.75), so that what the detection does only on such channels is timed.
    public init(dimension: Int, seed: UInt64 = 0, cycling: Bool = false) {
        self.dimension = dimension
        self.seed = seed
        frequencies = cycling ? [Self.frequencies[0]] : Self.frequencies
        var random = RandomSource(seed: seed)
        amplitude = (0..<(3 * dimension)).map { _ in Double(random.uniform(0.5, 1.5)) }
        phase = (0..<(3 * dimension)).map { _ in Double(random.uniform(0, 2 * .pi)) }
    }

    /// Samples `start ..< start + count` as a row-major `(count, D)` array; the noise of sample `t`
    /// depends only on `(seed, t)`, so any slice of the stream is reproducible.
    public func samples(from start: Int = 0, count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count * dimension)
        for i in 0..<count {
            let t = Double(start + i)
            var noise = RandomSource(seed: seed &+ 1_000_003 &+ UInt64(start + i) &* 0x9E37_79B9)
            for d in 0..<dimension {
                var v = 0.0
                for k in frequencies.indices {
                    v += amplitude[k * dimension + d] * sin(2 * .pi * frequencies[k] * t + phase[k * dimension + d])
                }
                out[i * dimension + d] = Float(v) + Self.noise * noise.normal()
            }
        }
        return out
    }
}

/// Windows of labelled waveforms, for checking that contrastive embeddings separate shapes they
/// were never told about. Each window has a random phase, period and amplitude, plus noise.
public struct WaveformClasses: Sendable {
    public enum Shape: Int, CaseIterable, Sendable { case sine, square, sawtooth, triangle }
    public let window: Int
    public let noise: Float
    /// Range of the waveform's period, in samples.
    public let periods: ClosedRange<Float>

    public init(window: Int = 32, noise: Float = 0.1, periods: ClosedRange<Float> = 10...20) {
        self.window = window
        self.noise = noise
        self.periods = periods
    }

    /// `count` windows `(count, window)` and their class labels, drawn with `random`.
    public func draw(count: Int, random: inout RandomSource) -> (samples: [Float], labels: [Int]) {
        var samples = [Float](repeating: 0, count: count * window)
        var labels = [Int](repeating: 0, count: count)
        for i in 0..<count {
            let shape = Shape.allCases[random.index(below: Shape.allCases.count)]
            labels[i] = shape.rawValue
            let period = random.uniform(periods.lowerBound, periods.upperBound)
            let phase = random.uniform(0, 1)
            let amplitude = random.uniform(0.6, 1.4)
            let offset = random.uniform(-0.3, 0.3)
            for t in 0..<window {
                let u = (Float(t) / period + phase).truncatingRemainder(dividingBy: 1)
                let v: Float
                switch shape {
                case .sine: v = sinf(2 * .pi * u)
                case .square: v = u < 0.5 ? 1 : -1
                case .sawtooth: v = 2 * u - 1
                case .triangle: v = u < 0.5 ? 4 * u - 1 : 3 - 4 * u
                }
                samples[i * window + t] = offset + amplitude * v + noise * random.normal()
            }
        }
        return (samples, labels)
    }
}
