import Testing

@testable import Learning

@Suite struct SoftmaxHeadTests {
    @Test func theGradientMatchesFiniteDifferences() {
        let n = 7, d = 3, k = 4
        let f = randomValues(n * d, seed: 3).map(Double.init)
        let y = (0..<n).map { $0 % k }
        let w = randomValues(d * k, seed: 4, scale: 0.5).map(Double.init)
        let b = randomValues(k, seed: 5, scale: 0.5).map(Double.init)
        var gw = w, gb = b
        _ = SoftmaxHead.lossAndGradient(f, y, rows: n, features: d, classes: k, w, b, l2: 0.1, gw: &gw, gb: &gb)
        // Central differences in float64: parameter i of the weights, then of the bias.
        func numeric(_ i: Int) -> Double {
            func loss(_ shift: Double) -> Double {
                var w2 = w, b2 = b, sw = w, sb = b
                if i < w.count { w2[i] += shift } else { b2[i - w.count] += shift }
                return SoftmaxHead.lossAndGradient(f, y, rows: n, features: d, classes: k, w2, b2, l2: 0.1, gw: &sw, gb: &sb)
            }
            return (loss(1e-5) - loss(-1e-5)) / 2e-5
        }
        for (i, g) in (gw + gb).enumerated() { #expect(abs(numeric(i) - g) < 1e-7, "parameter \(i)") }
    }

    /// The Python client's `fit_softmax` on the same six labelled rows (numpy, float64), printed once
    /// with `eddy_client.fit_softmax(f, labels)`: the daemon's head must be the subscriber's.
    @Test func itIsThePythonClientsFitStepForStep() {
        let f: [Float] = [0.5, -1.0, 2.0, 0.25, 0.75, -0.5, -1.5, 1.0, 2.5, 0.0, -1.0, 1.5]
        let head = SoftmaxHead.fit(features: f, labels: ["b", "a", "b", "c", "a", "c"])
        let numpy = (
            w: [2.2532382011413574, -0.8042699694633484, -1.4489682912826538, 0.8534356355667114, -2.1866238117218018,
                1.3331881761550903],
            b: [0.02297222428023815, 0.2853502035140991, -0.3083224296569824],
            mean: [0.5416666865348816, 0.2083333283662796], scale: [1.446380615234375, 0.8467677235603333]
        )
        #expect(head.classes == ["a", "b", "c"])
        for (a, e) in zip(head.weights, numpy.w) { #expect(abs(Double(a) - e) < 1e-5) }
        for (a, e) in zip(head.bias, numpy.b) { #expect(abs(Double(a) - e) < 1e-5) }
        for (a, e) in zip(head.mean + head.scale, numpy.mean + numpy.scale) { #expect(abs(Double(a) - e) < 1e-6) }
    }

    @Test func fiveLabelsPerClassSeparateClustersItHasNotSeen() {
        // Three clusters in 4 dimensions; five labelled points each, then 300 unlabelled ones.
        var r = RandomSource(seed: 11)
        let centres: [[Float]] = [[3, 0, 0, 1], [0, 3, 0, -1], [0, 0, 3, 0]]
        func points(_ m: Int) -> (values: [Float], labels: [String]) {
            var values: [Float] = [], labels: [String] = []
            for i in 0..<m {
                let c = i % 3
                values += centres[c].map { $0 + r.uniform(-1, 1) }
                labels.append(["pump", "fan", "valve"][c])
            }
            return (values, labels)
        }
        let train = points(15), test = points(300)
        let head = SoftmaxHead.fit(features: train.values, labels: train.labels)
        let predicted = test.values.withUnsafeBufferPointer { head.predict($0.baseAddress!, rows: 300) }
        let correct = zip(predicted, test.labels).filter { head.classes[$0.0.index] == $0.1 }.count
        #expect(correct >= 290, "\(correct) of 300")
        #expect(predicted.allSatisfy { $0.probability > 1.0 / 3 && $0.probability <= 1 })
        let p = test.values.withUnsafeBufferPointer { head.probabilities($0.baseAddress!, rows: 300) }
        for i in 0..<300 { #expect(abs(p[3 * i] + p[3 * i + 1] + p[3 * i + 2] - 1) < 1e-5) }
    }
}
