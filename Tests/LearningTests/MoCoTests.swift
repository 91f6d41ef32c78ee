import Foundation
import Testing
import Workloads

@testable import Learning

@Suite struct MoCoTests {
    func model(momentum: Float = 0.99, queue: Int = 8, batch: Int = 4, seed: UInt64 = 41) -> MoCo {
        var c = MoCoConfiguration(inputDimension: 6)
        c.encoderWidths = [8, 6]
        c.headWidths = [6, 4]
        c.queueSize = queue
        c.batchSize = batch
        c.momentum = momentum
        c.normalise = false
        c.seed = seed
        return MoCo(configuration: c)
    }

    /// Moves the query encoder away from the key encoder with one optimiser step.
    func trainOnce(_ m: MoCo) {
        let x = randomValues(4 * 6, seed: 42)
        _ = x.withUnsafeBufferPointer { m.trainStep($0.baseAddress!, rows: 4) }
    }

    @Test func emaWithMomentumZeroCopiesTheQueryEncoder() {
        let m = model(momentum: 0)
        trainOnce(m)  // the step ends with the EMA: k = 0·k + 1·q
        #expect(m.keyParameters == m.queryParameters)
        let x = randomValues(m.parameterCount, seed: 43)
        for i in 0..<x.count { m.query[i] = x[i] }
        m.updateKeyEncoder()
        #expect(m.keyParameters == x)
    }

    @Test func emaWithMomentumOneLeavesTheKeyEncoder() {
        let m = model(momentum: 1)
        let before = m.keyParameters
        trainOnce(m)
        #expect(m.keyParameters == before)
        #expect(m.queryParameters != before, "the query encoder did train")
    }

    @Test func emaBlendsWithTheConfiguredMomentum() {
        let m = model(momentum: 0.9)
        let k0 = m.keyParameters
        for i in 0..<m.parameterCount { m.query[i] = Float(i % 5) }
        m.updateKeyEncoder()
        for (i, k) in m.keyParameters.enumerated() {
            #expect(abs(k - (0.9 * k0[i] + 0.1 * Float(i % 5))) < 1e-6)
        }
    }

    @Test func queueOverwritesTheOldestEntriesInFIFOOrderAndWraps() {
        let m = model(queue: 8, batch: 4)
        let C = m.configuration.projectionWidth
        #expect(m.queuePointer == 0)
        for round in 0..<3 {
            let keys = (0..<(3 * C)).map { Float(round * 100 + $0 / C) }
            let ids = (0..<3).map { Int64(round * 10 + $0) }
            keys.withUnsafeBufferPointer { k in
                ids.withUnsafeBufferPointer { m.enqueue(keys: k.baseAddress!, ids: $0.baseAddress, rows: 3) }
            }
        }
        // Nine keys into eight slots: slot 0 holds the ninth key, slots 1...7 the second to eighth.
        #expect(m.queuePointer == 1)
        let expectedIDs: [Int64] = [22, 1, 2, 10, 11, 12, 20, 21]
        #expect((0..<8).map { m.queueIDs[$0] } == expectedIDs)
        #expect(m.queue[0 * C] == 202)
        #expect(m.queue[1 * C] == 1)
        #expect(m.queue[7 * C] == 201)
    }

    @Test func aTrainingStepEnqueuesItsKeysAndTheirIDs() {
        let m = model(queue: 8, batch: 4)
        let x = randomValues(4 * 6, seed: 44)
        let ids: [Int64] = [5, 6, 7, 8]
        _ = x.withUnsafeBufferPointer { xb in ids.withUnsafeBufferPointer { m.trainStep(xb.baseAddress!, rows: 4, ids: $0.baseAddress) } }
        #expect(m.queuePointer == 4)
        #expect((0..<4).map { m.queueIDs[$0] } == ids)
        #expect(m.queueIDs[4] == -1)
        let C = m.configuration.projectionWidth
        for r in 0..<4 {
            let norm = (0..<C).map { m.queue[r * C + $0] * m.queue[r * C + $0] }.reduce(0, +).squareRoot()
            #expect(abs(norm - 1) < 1e-5, "enqueued keys are L2-normalised")
        }
    }

    /// The loss the model reports equals InfoNCE computed naively over only the unmasked negatives.
    @Test func maskedQueueEntriesDoNotEnterTheLoss() {
        let m = model(queue: 8, batch: 4)
        for j in 0..<8 { m.queueIDs[j] = Int64(j) }
        let ids: [Int64] = [3, 100, 5, 0]
        let xq = randomValues(24, seed: 45), xk = randomValues(24, seed: 46)
        func run(_ useIDs: Bool) -> Float {
            xq.withUnsafeBufferPointer { q in
                xk.withUnsafeBufferPointer { k in
                    ids.withUnsafeBufferPointer { id in
                        m.lossAndGradient(query: q.baseAddress!, key: k.baseAddress!, rows: 4, ids: useIDs ? id.baseAddress : nil)
                    }
                }
            }
        }
        let C = m.configuration.projectionWidth, T = m.configuration.temperature
        func naive(excluding: (Int, Int) -> Bool) -> Float {
            var total: Double = 0
            for r in 0..<4 {
                func dot(_ a: Int, _ b: UnsafeMutablePointer<Float>) -> Double {
                    (0..<C).reduce(0.0) { $0 + Double(m.q[r * C + $1]) * Double(b[a * C + $1]) }
                }
                let pos = dot(r, m.k.pointer) / Double(T)
                var logits = [pos]
                for j in 0..<8 where !excluding(r, j) { logits.append(dot(j, m.queue.pointer) / Double(T)) }
                let top = logits.max()!
                let z = logits.map { exp($0 - top) }.reduce(0, +)
                total += log(z) - (pos - top)
            }
            return Float(total / 4)
        }
        let maskedLoss = run(true)
        let expectedMasked = naive { r, j in Int64(j) == ids[r] }
        #expect(abs(maskedLoss - expectedMasked) < 1e-4)
        let fullLoss = run(false)
        #expect(abs(fullLoss - naive { _, _ in false }) < 1e-4)
        #expect(abs(fullLoss - maskedLoss) > 1e-4, "masking three entries changes the loss")
    }

    /// Shuffle BN (from review): with batch normalisation, no augmentation and the key encoder a copy
    /// of the query's, every positive pair is one vector (q·k = 1) when both batches are normalised
    /// whole, in the same order: a positive shares batch statistics no negative has. With the key
    /// batch regrouped by a permutation, a row's key is normalised among other rows than its query.
    @Test func shuffleBNNormalisesAKeyAmongOtherRowsThanItsQuery() {
        var c = MoCoConfiguration(inputDimension: 6)
        c.encoderWidths = [8, 6]
        c.headWidths = [6, 4]
        c.queueSize = 32
        c.batchSize = 16
        c.batchNorm = true
        c.normalise = false
        c.seed = 3
        let x = randomValues(16 * 6, seed: 4, scale: 1.5)
        /// Each row's q·k, and the mean q·k of a row's query with other rows' keys.
        func positives(groups: Int) -> ([Float], Float) {
            let moco = MoCo(configuration: c)
            moco.batchNormGroups = groups
            let loss = x.withUnsafeBufferPointer { moco.lossAndGradient(query: $0.baseAddress!, key: $0.baseAddress!, rows: 16, ids: nil) }
            #expect(loss.isFinite)
            func dot(_ a: Int, _ b: Int) -> Float { (0..<4).reduce(0) { $0 + moco.q[a * 4 + $1] * moco.k[b * 4 + $1] } }
            let others = (0..<16).flatMap { a in (0..<16).filter { $0 != a }.map { dot(a, $0) } }
            return ((0..<16).map { dot($0, $0) }, others.reduce(0, +) / Float(others.count))
        }
        #expect(positives(groups: 1).0.allSatisfy { abs($0 - 1) < 1e-5 })
        let (shuffled, others) = positives(groups: 4)
        #expect(shuffled.contains { $0 < 1 - 1e-3 }, "\(shuffled)")
        // Keys come back in their rows' order: a query is nearer its own key than others' on average.
        #expect(shuffled.reduce(0, +) / 16 > others + 0.2, "\(shuffled) against \(others)")
    }

    /// Labelled waveforms (sine, square, sawtooth, triangle; random phase, amplitude, offset, period
    /// 14-18 samples), streamed without labels: a 5-NN classifier on MoCo's representation beats the
    /// same classifier on an untrained encoder of the same shape. Crop-and-resize supplies the phase
    /// and period invariance; T = 0.1 (at 0.2 the same budget learns less, see the closing note).
    @Test func knnOnTrainedEmbeddingsBeatsARandomEncoder() {
        let waves = WaveformClasses(window: 32, noise: 0.1, periods: 14...18)
        var random = RandomSource(seed: 51)
        _ = waves.draw(count: 2048, random: &random)
        let probe = waves.draw(count: 400, random: &random)
        let reference = waves.draw(count: 800, random: &random)

        var c = MoCoConfiguration(inputDimension: 32)
        c.queueSize = 1024
        c.batchSize = 64
        c.temperature = 0.1
        c.augmentation = AugmentationConfiguration(jitter: 0.05, scale: 0, maskProbability: 0.05, cropMinimumFraction: 0.5, channels: 1)
        c.normalise = false
        c.seed = 52
        let trained = MoCo(configuration: c)
        let untrained = MoCo(configuration: c)
        let batch = FloatBuffer(count: 64 * 32)
        var losses: [Float] = []
        for _ in 0..<4000 {
            let fresh = waves.draw(count: 64, random: &random)
            for i in 0..<(64 * 32) { batch[i] = fresh.samples[i] }
            losses.append(trained.trainStep(batch.pointer, rows: 64))
        }
        let early = losses[100..<300].reduce(0, +) / 200, late = losses[3800...].reduce(0, +) / 200
        #expect(late < early - 0.3, "InfoNCE falls: \(early) -> \(late)")
        let trainedAccuracy = knnAccuracy(trained, reference: reference, probe: probe)
        let randomAccuracy = knnAccuracy(untrained, reference: reference, probe: probe)
        #expect(trainedAccuracy > randomAccuracy + 0.05, "trained \(trainedAccuracy) vs random \(randomAccuracy)")
    }

    func knnAccuracy(_ m: MoCo, reference: (samples: [Float], labels: [Int]), probe: (samples: [Float], labels: [Int])) -> Double {
        let R = m.representationWidth
        func unit(_ e: [Float]) -> [Float] {
            var e = e
            for r in 0..<(e.count / R) {
                let n = max((0..<R).map { e[r * R + $0] * e[r * R + $0] }.reduce(0, +).squareRoot(), 1e-12)
                for j in 0..<R { e[r * R + j] /= n }
            }
            return e
        }
        let ref = unit(m.embed(reference.samples)), pro = unit(m.embed(probe.samples))
        var correct = 0
        for p in 0..<probe.labels.count {
            var sims: [(Float, Int)] = []
            for q in 0..<reference.labels.count {
                var s: Float = 0
                for j in 0..<R { s += pro[p * R + j] * ref[q * R + j] }
                sims.append((s, reference.labels[q]))
            }
            sims.sort { $0.0 > $1.0 }
            var votes = [Int](repeating: 0, count: 4)
            for (_, label) in sims.prefix(5) { votes[label] += 1 }
            if votes.firstIndex(of: votes.max()!) == probe.labels[p] { correct += 1 }
        }
        return Double(correct) / Double(probe.labels.count)
    }
}
