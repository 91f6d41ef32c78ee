import Testing
import Workloads

@testable import Learning

/// The reference workload's replay buffer: the first 65,536 samples, batches of 64 drawn uniformly.
final class ReferenceReplay {
    let dim: Int
    let data: [Float]
    let batch: FloatBuffer
    var random = RandomSource(seed: 1)
    static let rows = 65_536

    init(dim: Int = 32) {
        self.dim = dim
        data = ReferenceStream(dimension: dim).samples(count: Self.rows)
        batch = FloatBuffer(count: 64 * dim)
    }

    func next() -> UnsafeMutablePointer<Float> {
        data.withUnsafeBufferPointer { d in
            for r in 0..<64 {
                let i = random.index(below: Self.rows)
                (batch.pointer + r * dim).update(from: d.baseAddress! + i * dim, count: dim)
            }
        }
        return batch.pointer
    }
}

func referenceAutoencoder(dim: Int = 32, seed: UInt64 = 2) -> Autoencoder {
    var c = AutoencoderConfiguration(inputDimension: dim)
    c.normalise = false
    c.seed = seed
    return Autoencoder(configuration: c)
}

@Suite struct AutoencoderTests {
    @Test func referenceStreamHasTheWorkloadsVariance() {
        let x = ReferenceStream(dimension: 32).samples(count: 8192)
        let mean = x.reduce(0, +) / Float(x.count)
        let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(x.count)
        // WORKLOAD.md: about 1.6 in expectation (3 sinusoids of amplitude U(0.5, 1.5), noise 0.01).
        #expect(variance > 1.3 && variance < 2.0, "variance \(variance)")
    }

    @Test func lossFallsFromAboutPointNineToBelowPointZeroTwoWithin3000Steps() {
        let replay = ReferenceReplay()
        let ae = referenceAutoencoder()
        var losses: [Float] = []
        for _ in 0..<3000 { losses.append(ae.trainStep(replay.next(), rows: 64)) }
        let first = losses[..<100].reduce(0, +) / 100
        let last = losses[2900...].reduce(0, +) / 100
        #expect(first > 0.6 && first < 1.3, "first 100 steps: \(first)")
        #expect(last < 0.02, "last 100 steps: \(last)")
        #expect(ae.step == 3000)
    }

    @Test func reconstructionErrorRisesOnOutliers() {
        let replay = ReferenceReplay()
        let ae = referenceAutoencoder()
        for _ in 0..<2000 { ae.trainStep(replay.next(), rows: 64) }
        // Fresh samples from later in the stream, and one with a single sensor stuck at +3.
        var fresh = ReferenceStream(dimension: 32).samples(from: 100_000, count: 256)
        let normal = ae.score(fresh).sorted()
        let p99 = normal[Int(0.99 * Double(normal.count))]
        fresh[7] += 3
        let errors = ae.score(fresh)
        #expect(errors[0] > 10 * p99, "outlier \(errors[0]) vs normal p99 \(p99)")

        // The per-feature errors name the sensor.
        var featureErrors = [Float](repeating: 0, count: 256 * 32)
        var check = [Float](repeating: 0, count: 256)
        fresh.withUnsafeBufferPointer { x in
            ae.score(x.baseAddress!, rows: 256, errors: &check, featureErrors: &featureErrors)
        }
        let row0 = Array(featureErrors[0..<32])
        #expect(row0.firstIndex(of: row0.max()!) == 7)
        #expect(abs(row0.reduce(0, +) / 32 - check[0]) < 1e-5 * max(check[0], 1))
        #expect(check == errors, "batch scoring and per-feature scoring agree")
    }

    @Test func scoringOneAtATimeMatchesScoringInBatches() {
        let ae = referenceAutoencoder(dim: 8)
        let x = randomValues(300 * 8, seed: 61)
        let batched = ae.score(x)
        for r in [0, 1, 255, 256, 299] {
            let one = ae.score(Array(x[(r * 8)..<(r * 8 + 8)]))
            #expect(abs(one[0] - batched[r]) <= 1e-5 * max(batched[r], 1))
        }
    }

    @Test func normalisationMakesRawUnitsTrainAlike() {
        // The same stream in volts and in millivolts offset by 5 V: with normalisation both learn.
        let replay = ReferenceReplay(dim: 16)
        var c = AutoencoderConfiguration(inputDimension: 16)
        c.seed = 3
        let volts = Autoencoder(configuration: c)
        let millivolts = Autoencoder(configuration: c)
        let data = replay.data
        let scaled = data.map { 1000 * $0 + 5000 }
        data.withUnsafeBufferPointer { volts.observe($0.baseAddress!, rows: ReferenceReplay.rows) }
        scaled.withUnsafeBufferPointer { millivolts.observe($0.baseAddress!, rows: ReferenceReplay.rows) }
        var lv: Float = 0, lm: Float = 0
        let mv = FloatBuffer(count: 64 * 16)
        for step in 0..<1500 {
            let x = replay.next()
            for i in 0..<(64 * 16) { mv[i] = 1000 * x[i] + 5000 }
            let a = volts.trainStep(x, rows: 64), b = millivolts.trainStep(mv.pointer, rows: 64)
            if step >= 1400 { lv += a / 100; lm += b / 100 }
        }
        #expect(lv < 0.05 && lm < 0.05, "normalised losses \(lv) and \(lm)")
        #expect(abs(lv - lm) < 0.02)
    }
}
