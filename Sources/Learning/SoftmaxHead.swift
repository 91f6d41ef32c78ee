#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A few-label classifier over a frozen representation: a linear softmax on standardised
/// features, fitted by full-batch gradient descent on the L2-regularised cross-entropy.
///
/// It is the Python client's `fit_softmax` step for step (float64, the same standardisation, the
/// same initial zeros, learning rate, penalty and step count, classes in sorted order), so a head
/// fitted in the daemon and one fitted by a subscriber on the same features agree.
public struct SoftmaxHead: Sendable, Equatable {
    /// features × classes, row-major.
    public var weights: [Float]
    public var bias: [Float]
    /// Each feature's mean and standard deviation (+1e-6) over the labelled samples.
    public var mean: [Float]
    public var scale: [Float]
    /// The label of each column, in sorted order (by Unicode scalars, as Python sorts strings).
    public var classes: [String]

    public var featureCount: Int { mean.count }
    public var classCount: Int { classes.count }

    public struct Settings: Sendable, Equatable {
        public var l2 = 1e-2
        public var steps = 500
        public var learningRate = 0.5
        public init() {}
    }

    /// Fits on `features` (`labels.count` rows of `featureCount`, row-major). At least one label.
    public static func fit(features: [Float], labels: [String], settings: Settings = Settings()) -> SoftmaxHead {
        let n = labels.count
        precondition(n > 0 && features.count % n == 0, "one label per row of features")
        let d = features.count / n
        // Classes are labels as bytes, in code point order (numpy's `unique`): Swift's String
        // equality would take canonically equivalent labels ("é" and "e" + U+0301) for one.
        let classes = Self.classes(of: labels)
        let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { (Array($1.utf8), $0) })
        let y = labels.map { index[Array($0.utf8)]! }
        let k = classes.count
        var mean = [Double](repeating: 0, count: d), scale = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mean[j] += Double(features[i * d + j]) } }
        for j in 0..<d { mean[j] /= Double(n) }
        for i in 0..<n {
            for j in 0..<d {
                let c = Double(features[i * d + j]) - mean[j]
                scale[j] += c * c
            }
        }
        for j in 0..<d { scale[j] = (scale[j] / Double(n)).squareRoot() + 1e-6 }
        var f = [Double](repeating: 0, count: n * d)
        for i in 0..<n { for j in 0..<d { f[i * d + j] = (Double(features[i * d + j]) - mean[j]) / scale[j] } }

        var w = [Double](repeating: 0, count: d * k), b = [Double](repeating: 0, count: k)
        var gw = w, gb = b
        for _ in 0..<settings.steps {
            _ = lossAndGradient(f, y, rows: n, features: d, classes: k, w, b, l2: settings.l2, gw: &gw, gb: &gb)
            for i in 0..<w.count { w[i] -= settings.learningRate * gw[i] }
            for c in 0..<k { b[c] -= settings.learningRate * gb[c] }
        }
        return SoftmaxHead(
            weights: w.map(Float.init), bias: b.map(Float.init), mean: mean.map(Float.init), scale: scale.map(Float.init),
            classes: classes)
    }

    /// The distinct labels, as bytes, in code point order.
    public static func classes(of labels: [String]) -> [String] {
        var seen = Set<[UInt8]>(), out: [String] = []
        for label in labels where seen.insert(Array(label.utf8)).inserted { out.append(label) }
        return out.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    /// The mean cross-entropy plus `l2`/2·‖w‖² of standardised features `f` with class indices `y`,
    /// and its gradient (`gw` as `w`, `gb` as `b`). The data term's gradient is `fᵀ(p − onehot)/n`.
    static func lossAndGradient(
        _ f: [Double], _ y: [Int], rows n: Int, features d: Int, classes k: Int, _ w: [Double], _ b: [Double],
        l2: Double, gw: inout [Double], gb: inout [Double]
    ) -> Double {
        for i in 0..<gw.count { gw[i] = l2 * w[i] }
        for c in 0..<k { gb[c] = 0 }
        var loss = 0.0
        var z = [Double](repeating: 0, count: k)
        for i in 0..<n {
            for c in 0..<k { z[c] = b[c] }
            for j in 0..<d {
                let x = f[i * d + j]
                for c in 0..<k { z[c] += x * w[j * k + c] }
            }
            let top = z.max()!
            var sum = 0.0
            for c in 0..<k {
                z[c] = exp(z[c] - top)
                sum += z[c]
            }
            loss -= log(z[y[i]] / sum)
            for c in 0..<k {
                let g = (z[c] / sum - (c == y[i] ? 1 : 0)) / Double(n)
                gb[c] += g
                for j in 0..<d { gw[j * k + c] += f[i * d + j] * g }
            }
        }
        var penalty = 0.0
        for v in w { penalty += v * v }
        return loss / Double(n) + 0.5 * l2 * penalty
    }

    /// Class probabilities of `rows` rows of features (row-major), `rows` × `classCount`.
    public func probabilities(_ features: UnsafePointer<Float>, rows: Int) -> [Float] {
        let d = featureCount, k = classCount
        var out = [Float](repeating: 0, count: rows * k)
        var z = [Float](repeating: 0, count: k)
        for i in 0..<rows {
            for c in 0..<k { z[c] = bias[c] }
            for j in 0..<d {
                let x = (features[i * d + j] - mean[j]) / scale[j]
                for c in 0..<k { z[c] += x * weights[j * k + c] }
            }
            let top = z.max() ?? 0
            var sum: Float = 0
            for c in 0..<k {
                z[c] = expf(z[c] - top)
                sum += z[c]
            }
            for c in 0..<k { out[i * k + c] = z[c] / sum }
        }
        return out
    }

    /// Each row's most probable class (its index in `classes`) and that probability, a row at a
    /// time (no `rows` × `classCount` table), as `probabilities` gives them.
    public func predict(_ features: UnsafePointer<Float>, rows: Int) -> [(index: Int, probability: Float)] {
        let d = featureCount, k = classCount
        var z = [Float](repeating: 0, count: k)
        return (0..<rows).map { i in
            for c in 0..<k { z[c] = bias[c] }
            for j in 0..<d {
                let x = (features[i * d + j] - mean[j]) / scale[j]
                for c in 0..<k { z[c] += x * weights[j * k + c] }
            }
            let top = z.max() ?? 0
            var sum: Float = 0, best = 0
            for c in 0..<k {
                z[c] = expf(z[c] - top)
                sum += z[c]
                if z[c] > z[best] { best = c }
            }
            return (best, k == 0 ? 0 : z[best] / sum)
        }
    }
}
