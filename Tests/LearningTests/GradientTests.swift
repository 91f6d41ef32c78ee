import Foundation
import Testing

@testable import Learning

@Suite struct GradientTests {
    /// L = Σ w ⊙ y over a network's output, so dL/dy = w: checks dense forward/backward pairs alone.
    /// With `normalised` layers, `training` uses the batch's statistics and otherwise running ones
    /// (set away from their initial 0 and 1 first); only trained values are checked (the running
    /// statistics have no gradient).
    func checkNetwork(widths: [Int], activations: [Activation], normalised: [Bool]? = nil, training: Bool = false, groups: Int = 1) {
        let inputs = 6, batch = groups > 1 ? 4 * groups : 5
        let layout = NetworkLayout(inputs: inputs, widths: widths, activations: activations, normalised: normalised)
        let work = NetworkWorkspace(layout: layout, capacity: batch)
        work.groups = groups
        let params = FloatBuffer(count: layout.parameterCount)
        let grads = FloatBuffer(count: layout.parameterCount)
        var random = RandomSource(seed: 11)
        layout.initialise(params.pointer, random: &random)
        let x = FloatBuffer(randomValues(batch * inputs, seed: 12))
        let w = randomValues(batch * layout.outputs, seed: 13)
        let dx = FloatBuffer(count: batch * inputs)
        for layer in layout.layers {
            // γ and β away from 1 and 0; running statistics from a few training passes.
            for j in 0..<layer.outputs where layer.normalisation != nil {
                params[layer.scaleOffset + j] = 0.5 + 0.2 * Float(j)
                params[layer.shiftOffset + j] = 0.3 - 0.1 * Float(j)
            }
        }
        for _ in 0..<5 { work.forward(parameters: params.pointer, input: x.pointer, batch: batch, training: params.pointer) }

        func loss() -> Float {
            work.forward(parameters: params.pointer, input: x.pointer, batch: batch, training: training ? params.pointer : nil)
            var sum: Float = 0
            for i in 0..<(batch * layout.outputs) { sum += w[i] * work.output[i] }
            return sum
        }
        _ = loss()
        for i in 0..<w.count { work.outputDelta[i] = w[i] }
        work.backward(
            parameters: params.pointer, gradients: grads.pointer, input: x.pointer, batch: batch, inputDelta: dx.pointer)

        let numeric = finiteDifferences(params.pointer, count: layout.trainableCount, loss: loss)
        let check = GradientCheck(Array(grads.array.prefix(layout.trainableCount)), numeric)
        #expect(check.failures.isEmpty, "parameters: \(check.failures)")
        let numericX = finiteDifferences(x.pointer, count: batch * inputs, loss: loss)
        let checkX = GradientCheck(dx.array, numericX)
        #expect(checkX.failures.isEmpty, "inputs: \(checkX.failures)")
    }

    @Test func denseIdentityBackwardMatchesFiniteDifferences() {
        checkNetwork(widths: [4], activations: [.identity])
    }

    @Test func denseReLUStackBackwardMatchesFiniteDifferences() {
        checkNetwork(widths: [7, 5, 3], activations: [.relu, .relu, .identity])
    }

    @Test(arguments: [true, false])
    func batchNormalisedStackBackwardMatchesFiniteDifferences(training: Bool) {
        checkNetwork(
            widths: [7, 5, 3], activations: [.relu, .relu, .identity], normalised: [true, true, false], training: training)
    }

    /// Batch statistics in groups of rows (MoCo's shuffle BN): each group normalised by its own, its
    /// own Σ dy in the backward, dγ and db summed over the groups; against central differences. With
    /// identity activations: in groups of four rows, ReLU's kinks sit within the differences' step
    /// (the activation's own backward is checked on whole batches above).
    @Test(arguments: [2, 3])
    func groupedBatchNormBackwardMatchesFiniteDifferences(groups: Int) {
        checkNetwork(
            widths: [7, 5, 3], activations: [.identity, .identity, .identity], normalised: [true, true, false], training: true, groups: groups)
    }

    /// In groups, a row's normalised output depends on its own group alone.
    @Test func groupedBatchNormUsesEachGroupsOwnStatistics() {
        let layout = NetworkLayout(inputs: 3, widths: [4], activations: [.identity], normalised: [true])
        let params = FloatBuffer(count: layout.parameterCount)
        var random = RandomSource(seed: 5)
        layout.initialise(params.pointer, random: &random)
        let x = FloatBuffer(randomValues(8 * 3, seed: 6))
        func run(groups: Int) -> [Float] {
            let work = NetworkWorkspace(layout: layout, capacity: 8)
            work.groups = groups
            work.forward(parameters: params.pointer, input: x.pointer, batch: 8, training: params.pointer)
            return Array(UnsafeBufferPointer(start: work.output, count: 8 * 4))
        }
        let whole = run(groups: 1), halves = run(groups: 2)
        // The first half alone, as a batch of 4, is the first half of the grouped output.
        let first = NetworkWorkspace(layout: layout, capacity: 4)
        first.forward(parameters: params.pointer, input: x.pointer, batch: 4, training: params.pointer)
        let alone = Array(UnsafeBufferPointer(start: first.output, count: 4 * 4))
        #expect(zip(halves.prefix(16), alone).allSatisfy { abs($0 - $1) < 1e-5 })
        #expect(zip(whole, halves).contains { abs($0 - $1) > 1e-3 })
        // Groups that do not split the batch evenly into two rows or more fall back to the whole batch.
        #expect(run(groups: 3) == whole && run(groups: 8) == whole)
    }

    /// The running statistics are the batches' (PyTorch's momentum 0.1, unbiased variance), and a
    /// network evaluated on them is the folded plain network, value for value.
    @Test func batchNormFoldsIntoPlainLayers() {
        let layout = NetworkLayout(
            inputs: 4, widths: [6, 3], activations: [.relu, .identity], normalised: [true, false])
        #expect(layout.trainableCount == 4 * 6 + 6 + 2 * 6 + 6 * 3 + 3 && layout.parameterCount == layout.trainableCount + 2 * 6)
        let params = FloatBuffer(count: layout.parameterCount)
        var random = RandomSource(seed: 5)
        layout.initialise(params.pointer, random: &random)
        let batch = 8
        let x = FloatBuffer(randomValues(batch * 4, seed: 6, scale: 3))
        let work = NetworkWorkspace(layout: layout, capacity: batch)
        work.forward(parameters: params.pointer, input: x.pointer, batch: batch, training: params.pointer)
        // The first layer's z = W x + b by hand, its batch mean and unbiased variance.
        let first = layout.layers[0], stats = first.normalisation!
        for j in 0..<6 {
            let z = (0..<batch).map { r in
                (0..<4).reduce(params[first.biasOffset + j]) { $0 + params[first.weightOffset + j * 4 + $1] * x[r * 4 + $1] }
            }
            let mean = z.reduce(0, +) / Float(batch)
            let variance = z.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(batch - 1)
            #expect(abs(params[stats + j] - 0.1 * mean) < 1e-5)
            #expect(abs(params[stats + 6 + j] - (0.9 + 0.1 * variance)) < 1e-4)
        }
        work.forward(parameters: params.pointer, input: x.pointer, batch: batch)
        let normalisedOutput = Array(UnsafeBufferPointer(start: work.output, count: batch * 3))
        let (plain, folded) = layout.folded(params.pointer)
        #expect(!plain.isNormalised && plain.parameterCount == 4 * 6 + 6 + 6 * 3 + 3)
        let plainWork = NetworkWorkspace(layout: plain, capacity: batch)
        let foldedBuffer = FloatBuffer(folded)
        plainWork.forward(parameters: foldedBuffer.pointer, input: x.pointer, batch: batch)
        for i in 0..<(batch * 3) { #expect(abs(plainWork.output[i] - normalisedOutput[i]) < 1e-4) }
        // A training pass of one row cannot have batch statistics: it uses the running ones.
        work.forward(parameters: params.pointer, input: x.pointer, batch: 1, training: params.pointer)
        for i in 0..<3 { #expect(abs(work.output[i] - normalisedOutput[i]) < 1e-4) }
    }

    @Test func autoencoderMSEGradientMatchesFiniteDifferences() {
        var c = AutoencoderConfiguration(inputDimension: 5)
        c.hiddenWidths = [6, 3, 6]
        c.batchSize = 4
        c.normalise = false
        c.seed = 21
        let ae = Autoencoder(configuration: c)
        let x = randomValues(4 * 5, seed: 22, scale: 2)
        let loss = x.withUnsafeBufferPointer { xb in ae.lossAndGradient(xb.baseAddress!, rows: 4) }
        #expect(loss > 0)
        let analytic = ae.gradients.array
        let numeric = x.withUnsafeBufferPointer { xb in
            finiteDifferences(ae.parameters.pointer, count: ae.parameterCount) {
                ae.lossAndGradient(xb.baseAddress!, rows: 4)
            }
        }
        let check = GradientCheck(analytic, numeric)
        #expect(check.failures.isEmpty, "\(check.failures)")
    }

    func smallMoCo(temperature: Float = 0.5, reconstruction: Float = 0, batchNorm: Bool = false, mix: Float = 0) -> MoCo {
        var c = MoCoConfiguration(inputDimension: 6)
        c.reconstruction = reconstruction
        c.mix = mix
        c.batchNorm = batchNorm
        c.encoderWidths = [7, 5]
        c.headWidths = [5, 4]
        c.queueSize = 8
        c.batchSize = 4
        c.temperature = temperature
        c.normalise = false
        c.seed = 31
        return MoCo(configuration: c)
    }

    /// The loss of `smallMoCo` on 4 seeded query and key views (`seed`, `seed + 1`), as a closure for
    /// finite differences; with `ids` its queue's 8 entries get ids 100 to 107 and rows 0 and 2 each
    /// have a masked (false) negative.
    func mocoLoss(
        _ moco: MoCo, seed: UInt64, masked: Bool, mix: (share: Float, partner: [Int])? = nil, ids: [Int64] = [103, 7, 106, 8]
    ) -> (ids: [Int64], loss: () -> Float) {
        for j in 0..<8 { moco.queueIDs[j] = Int64(100 + j) }
        let xq = randomValues(4 * 6, seed: seed, scale: 1.5), xk = randomValues(4 * 6, seed: seed + 1, scale: 1.5)
        return (ids, {
            xq.withUnsafeBufferPointer { q in
                xk.withUnsafeBufferPointer { k in
                    ids.withUnsafeBufferPointer { id in
                        moco.lossAndGradient(
                            query: q.baseAddress!, key: k.baseAddress!, rows: 4, ids: masked ? id.baseAddress : nil, mix: mix)
                    }
                }
            }
        })
    }

    /// InfoNCE through the L2 normalisation, the projection head and the encoder, with and without
    /// masked queue entries: every query-encoder parameter against central differences. Below a
    /// temperature of 0.025 the logits are shifted by their row's maximum rather than by 1/T
    /// (exp(2/T) would overflow): that path too, masked (every case ran at T ≥ 0.1 before, from review).
    /// At T = 0.02 and 0.01 the queue holds the batch's own keys moved by noise, as a trained queue
    /// holds keys near the query's: with the random queue the positive won by so much that the loss
    /// was 1e-6 and every gradient under 1e-4, and the check said nothing (from review). Rounding
    /// grows with 1/T there, and with batch normalisation's curvature over a batch of 4 ε is 3e-4.
    @Test(arguments: [(false, false, 0.5), (true, false, 0.5), (false, true, 0.5), (true, false, 0.02), (true, false, 0.01)]
        as [(Bool, Bool, Float)])
    func mocoInfoNCEGradientMatchesFiniteDifferences(masked: Bool, batchNorm: Bool, temperature: Float) {
        let moco = smallMoCo(temperature: temperature, batchNorm: batchNorm)
        let loss = mocoLoss(moco, seed: 32, masked: masked).loss
        if temperature < 0.1 {
            _ = loss()
            let noise = randomValues(8 * 4, seed: 39, scale: 0.3)
            for j in 0..<8 {
                let row = (0..<4).map { moco.k[(j % 4) * 4 + $0] + noise[j * 4 + $0] }
                let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
                for c in 0..<4 { moco.queue[j * 4 + c] = row[c] / norm }
            }
        }
        let value = loss()
        #expect(value.isFinite && value > 0.1)
        let trained = moco.layout.trainableCount
        #expect(batchNorm == (trained < moco.parameterCount))
        let analytic = Array(moco.gradients.array.prefix(trained))
        let numeric = finiteDifferences(moco.query.pointer, count: trained, epsilon: batchNorm ? 3e-4 : 1e-3, loss: loss)
        let check = GradientCheck(analytic, numeric, noise: batchNorm ? 1e-3 : 3e-4 * max(1, 0.1 / temperature))
        #expect(check.failures.isEmpty, "\(check.failures)")
    }

    /// From review: a key in the queue that is NaN makes the loss NaN, on both softmax paths (shifted
    /// by 1/T, and by the row's maximum below T 0.025), so the trainer's check on a non-finite loss
    /// sees it at once. The exponential turned a NaN logit into e^-87, and the loss stayed finite.
    @Test(arguments: [Float(0.5), 0.02])
    func aPoisonedKeyMakesTheLossNaN(temperature: Float) {
        let moco = smallMoCo(temperature: temperature)
        let loss = mocoLoss(moco, seed: 34, masked: false).loss
        #expect(loss().isFinite)
        moco.queue.pointer[0] = .nan
        #expect(loss().isNaN)
    }

    /// InfoNCE plus the reconstruction term: the decoder's gradient, and the encoder's, which the
    /// term reaches through the representation, against central differences.
    @Test func mocoReconstructionGradientMatchesFiniteDifferences() throws {
        let moco = smallMoCo(reconstruction: 3)
        let xq = randomValues(4 * 6, seed: 34, scale: 1.5), xk = randomValues(4 * 6, seed: 35, scale: 1.5)
        let clean = randomValues(4 * 6, seed: 36, scale: 1.5)
        func loss() -> Float {
            xq.withUnsafeBufferPointer { q in
                xk.withUnsafeBufferPointer { k in
                    clean.withUnsafeBufferPointer { c in
                        moco.lossAndGradient(query: q.baseAddress!, key: k.baseAddress!, rows: 4, ids: nil, clean: c.baseAddress!)
                    }
                }
            }
        }
        let total = loss()
        let decoder = try #require(moco.decoder), decoderGradients = try #require(moco.decoderGradients)
        let analytic = moco.gradients.array, analyticDecoder = decoderGradients.array
        // The term is in the loss: without `clean` it is InfoNCE alone, and smaller.
        let infoNCE = xq.withUnsafeBufferPointer { q in
            xk.withUnsafeBufferPointer { k in moco.lossAndGradient(query: q.baseAddress!, key: k.baseAddress!, rows: 4, ids: nil) }
        }
        #expect(total > infoNCE + 0.1)
        // The loss is InfoNCE's and three times a mean square: its rounding is about three times.
        let check = GradientCheck(analytic, finiteDifferences(moco.query.pointer, count: moco.parameterCount, loss: loss), noise: 1e-3)
        #expect(check.failures.isEmpty, "encoder and head: \(check.failures)")
        let checkDecoder = GradientCheck(
            analyticDecoder, finiteDifferences(decoder.pointer, count: decoder.count, loss: loss), noise: 1e-3)
        #expect(checkDecoder.failures.isEmpty, "decoder: \(checkDecoder.failures)")
        // The encoder's gradient differs from InfoNCE's alone: the term reaches it.
        _ = infoNCE
        xq.withUnsafeBufferPointer { q in
            xk.withUnsafeBufferPointer { k in _ = moco.lossAndGradient(query: q.baseAddress!, key: k.baseAddress!, rows: 4, ids: nil) }
        }
        #expect(moco.gradients.array != analytic)
        #expect(analyticDecoder.contains { $0 != 0 })
    }

    /// i-Mix's loss: each row's query against the batch's keys and the queue, its target split
    /// between its own key and its partner's. The loss against the definition worked by hand from
    /// the normalised queries and keys, and its gradient (every query-encoder parameter, with masked
    /// queue entries, batch normalisation, and a row that is its own partner) against central
    /// differences.
    /// i-Mix with copies of a sample in the batch (sampled twice, or from both halves of the
    /// buffer): a row's other copies of its own sample and of its partner are not its negatives.
    /// The loss against the definition by hand, its gradient against central differences.
    @Test func mocoMixLeavesOutCopiesInTheBatch() {
        let moco = smallMoCo(mix: 0.4)
        let partner = [2, 3, 0, 1], share: Float = 0.3, ids: [Int64] = [5, 5, 9, 9]
        let (_, loss) = mocoLoss(moco, seed: 41, masked: true, mix: (share, partner), ids: ids)
        let total = loss()
        let C = 4, T = 0.5
        let q = moco.q.array.map(Double.init), k = moco.k.array.map(Double.init), queue = moco.queue.array.map(Double.init)
        func dot(_ a: [Double], _ i: Int, _ b: [Double], _ j: Int) -> Double { (0..<C).reduce(0) { $0 + a[i * C + $1] * b[j * C + $1] } }
        var expected = 0.0, unmasked = 0.0
        for r in 0..<4 {
            var z = 0.0, all = 0.0
            for j in 0..<4 {
                all += Foundation.exp(dot(q, r, k, j) / T)
                if j == r || j == partner[r] { z += Foundation.exp(dot(q, r, k, j) / T) }  // the others are copies
            }
            for n in 0..<8 { z += Foundation.exp(dot(q, r, queue, n) / T); all += Foundation.exp(dot(q, r, queue, n) / T) }
            let target = (1 - Double(share)) * dot(q, r, k, r) / T + Double(share) * dot(q, r, k, partner[r]) / T
            expected += Foundation.log(z) - target
            unmasked += Foundation.log(all) - target
        }
        #expect(abs(Double(total) - expected / 4) < 1e-4, "\(total) against \(expected / 4)")
        #expect(abs(expected - unmasked) / 4 > 1e-3, "the copies made a difference")
        _ = loss()
        let trained = moco.layout.trainableCount
        let analytic = Array(moco.gradients.array.prefix(trained))
        let check = GradientCheck(analytic, finiteDifferences(moco.query.pointer, count: trained, loss: loss))
        #expect(check.failures.isEmpty, "\(check.failures)")
    }

    @Test(arguments: [false, true])
    func mocoMixGradientMatchesFiniteDifferences(batchNorm: Bool) {
        let moco = smallMoCo(batchNorm: batchNorm, mix: 0.4)
        let partner = [2, 1, 3, 0], share: Float = 0.3
        let (ids, loss) = mocoLoss(moco, seed: 37, masked: true, mix: (share, partner))
        let total = loss()
        // By hand, in Double: cosines over T against keys and the unmasked queue entries.
        let C = 4, T = 0.5
        let q = moco.q.array.map(Double.init), k = moco.k.array.map(Double.init), queue = moco.queue.array.map(Double.init)
        func dot(_ a: [Double], _ i: Int, _ b: [Double], _ j: Int) -> Double { (0..<C).reduce(0) { $0 + a[i * C + $1] * b[j * C + $1] } }
        var expected = 0.0
        for r in 0..<4 {
            var z = 0.0
            for j in 0..<4 { z += Foundation.exp(dot(q, r, k, j) / T) }
            for n in 0..<8 where moco.queueIDs[n] != ids[r] { z += Foundation.exp(dot(q, r, queue, n) / T) }
            let own: Double = dot(q, r, k, r) / T, other: Double = dot(q, r, k, partner[r]) / T
            expected += Foundation.log(z) - (1 - Double(share)) * own - Double(share) * other
        }
        #expect(abs(Double(total) - expected / 4) < 1e-4, "\(total) against \(expected / 4)")
        // Not InfoNCE's loss: the blend's target and the batch's keys are in it.
        #expect(abs(mocoLoss(moco, seed: 37, masked: true).loss() - total) > 1e-3)
        _ = loss()
        let trained = moco.layout.trainableCount
        let analytic = Array(moco.gradients.array.prefix(trained))
        let check = GradientCheck(analytic, finiteDifferences(moco.query.pointer, count: trained, loss: loss))
        #expect(check.failures.isEmpty, "\(check.failures)")
    }
}
