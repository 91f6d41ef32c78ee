#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A seeded, serialisable random source: xoshiro256** with a Box–Muller normal cache.
///
/// Eddy needs the generator's whole state in a checkpoint so that a restored model takes the same
/// next step; `SystemRandomNumberGenerator` cannot give that.
public struct RandomSource: RandomNumberGenerator, Sendable, Equatable {
    var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64
    /// Second normal of the last Box–Muller pair, if unused.
    var spareNormal: Float?

    /// Seeds the four words from `seed` with splitmix64, as the xoshiro authors recommend.
    public init(seed: UInt64) {
        var z = seed
        func splitmix() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        s0 = splitmix(); s1 = splitmix(); s2 = splitmix(); s3 = splitmix()
        spareNormal = nil
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        return result
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 24 bits of precision.
    @inline(__always)
    public mutating func uniform() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [lower, upper).
    @inline(__always)
    public mutating func uniform(_ lower: Float, _ upper: Float) -> Float {
        lower + (upper - lower) * uniform()
    }

    /// Uniform integer in 0..<bound (Lemire's multiply-shift, negligible bias for small bounds).
    @inline(__always)
    public mutating func index(below bound: Int) -> Int {
        Int((UInt64(UInt32(truncatingIfNeeded: next() >> 32)) &* UInt64(bound)) >> 32)
    }

    /// Standard normal by Box–Muller; the pair's second value is kept for the next call.
    @inline(__always)
    public mutating func normal() -> Float {
        if let spare = spareNormal {
            spareNormal = nil
            return spare
        }
        let u1 = max(uniform(), 1e-7)
        let u2 = uniform()
        let r = (-2 * _log(u1)).squareRoot()
        let theta = 2 * Float.pi * u2
        spareNormal = r * _sin(theta)
        return r * _cos(theta)
    }

    /// Fills `count` floats with standard normals.
    public mutating func fillNormal(_ out: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { out[i] = normal() }
    }
}

@inline(__always) func _log(_ x: Float) -> Float { logf(x) }
@inline(__always) func _sin(_ x: Float) -> Float { sinf(x) }
@inline(__always) func _cos(_ x: Float) -> Float { cosf(x) }
