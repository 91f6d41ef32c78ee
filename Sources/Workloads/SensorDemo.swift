#if canImport(Glibc)
import Glibc
#endif
import Learning

/// A synthetic multi-sensor machine for the demo: eight sensors driven by two shared hidden cycles
/// (so they are correlated, as real sensors on one machine are), plus noise, in their own units and
/// offsets. Every `anomalyEvery` samples it injects one anomaly for `anomalyLength` samples, rotating
/// through three kinds: a spike on one sensor, a sensor stuck at a constant, and a broken
/// correlation (one sensor runs against its cycle).
public struct SensorDemo: Sendable {
    public enum Anomaly: String, Sendable { case spike, stuck, decorrelated }
    public static let dimension = 8
    public var anomalyEvery: Int
    public var anomalyLength: Int
    let gain: [Float]
    let offset: [Float]
    let mix: [Float]  // (8, 2)
    var random: RandomSource
    public private(set) var t = 0

    public init(seed: UInt64 = 7, anomalyEvery: Int = 5000, anomalyLength: Int = 20) {
        var r = RandomSource(seed: seed)
        gain = (0..<Self.dimension).map { _ in r.uniform(1, 50) }
        offset = (0..<Self.dimension).map { _ in r.uniform(-100, 100) }
        mix = (0..<(2 * Self.dimension)).map { _ in r.uniform(-1, 1) }
        random = r
        self.anomalyEvery = anomalyEvery
        self.anomalyLength = anomalyLength
    }

    /// The anomaly active at sample `t`, if any, and the sensor it hits.
    public func anomaly(at t: Int) -> (kind: Anomaly, sensor: Int)? {
        let cycle = t / anomalyEvery
        guard cycle > 0, t % anomalyEvery < anomalyLength else { return nil }
        let kinds: [Anomaly] = [.spike, .stuck, .decorrelated]
        return (kinds[(cycle - 1) % 3], (cycle * 3) % Self.dimension)
    }

    /// The next sample, in raw units.
    public mutating func next() -> [Float] {
        let a = sinf(2 * .pi * Float(t) / 200), b = sinf(2 * .pi * Float(t) / 730 + 1)
        var x = (0..<Self.dimension).map { d in mix[2 * d] * a + mix[2 * d + 1] * b + 0.05 * random.normal() }
        if let (kind, sensor) = anomaly(at: t) {
            switch kind {
            case .spike: x[sensor] += 1.5
            case .stuck: x[sensor] = 0.9
            case .decorrelated: x[sensor] = -(mix[2 * sensor] * a + mix[2 * sensor + 1] * b)
            }
        }
        t += 1
        return (0..<Self.dimension).map { offset[$0] + gain[$0] * x[$0] }
    }
}
