import Testing

@testable import Learning

@Suite struct GradientTests {
    /// L = Σ w ⊙ y over a network's output, so dL/dy = w: checks dense forward/backward pairs alone.
    /// With `normalised` layers, `training` uses the batch's statistics and otherwise running ones
    /// (set away from their initial 0 and 1 first); only trained values are checked (the running
    /// statistics have no gradient).
    func checkNetwork(widths: [Int], activations: [Activation], normalised: [Bool]? = nil, training: Bool = false) {
        let inputs = 6, batch = 5
        let layout = NetworkLayout(inputs: inputs, widths: widths, activations: activations, normalised: normalised)
        let work = NetworkWorkspace(layout: layout, capacity: batch)
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
        let bad = gradientMismatches(Array(grads.array.prefix(layout.trainableCount)), numeric)
        #expect(bad.isEmpty, "parameter gradient mismatches: \(bad.prefix(5))")
        let numericX = finiteDifferences(x.pointer, count: batch * inputs, loss: loss)
        let badX = gradientMismatches(dx.array, numericX)
        #expect(badX.isEmpty, "input gradient mismatches: \(badX.prefix(5))")
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
        let bad = gradientMismatches(analytic, numeric)
        #expect(bad.isEmpty, "mismatches: \(bad.prefix(5))")
        #expect(analytic.contains { $0 != 0 })
    }

    func smallMoCo(temperature: Float = 0.5, reconstruction: Float = 0, batchNorm: Bool = false) -> MoCo {
        var c = MoCoConfiguration(inputDimension: 6)
        c.reconstruction = reconstruction
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

    /// InfoNCE through the L2 normalisation, the projection head and the encoder, with and without
    /// masked queue entries: every query-encoder parameter against central differences.
    @Test(arguments: [(false, false), (true, false), (false, true)])
    func mocoInfoNCEGradientMatchesFiniteDifferences(masked: Bool, batchNorm: Bool) {
        let moco = smallMoCo(batchNorm: batchNorm)
        // Give the queue known ids so that rows 0 and 2 each have a masked (false) negative.
        for j in 0..<8 { moco.queueIDs[j] = Int64(100 + j) }
        let ids: [Int64] = [103, 7, 106, 8]
        let xq = randomValues(4 * 6, seed: 32, scale: 1.5), xk = randomValues(4 * 6, seed: 33, scale: 1.5)
        func loss() -> Float {
            xq.withUnsafeBufferPointer { q in
                xk.withUnsafeBufferPointer { k in
                    ids.withUnsafeBufferPointer { id in
                        moco.lossAndGradient(
                            query: q.baseAddress!, key: k.baseAddress!, rows: 4, ids: masked ? id.baseAddress : nil)
                    }
                }
            }
        }
        _ = loss()
        let trained = moco.layout.trainableCount
        #expect(batchNorm == (trained < moco.parameterCount))
        let analytic = Array(moco.gradients.array.prefix(trained))
        let numeric = finiteDifferences(moco.query.pointer, count: trained, loss: loss)
        let bad = gradientMismatches(analytic, numeric)
        #expect(bad.isEmpty, "mismatches: \(bad.prefix(5))")
        #expect(analytic.contains { $0 != 0 })
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
        let bad = gradientMismatches(analytic, finiteDifferences(moco.query.pointer, count: moco.parameterCount, loss: loss))
        #expect(bad.isEmpty, "encoder and head: \(bad.prefix(5))")
        let badDecoder = gradientMismatches(analyticDecoder, finiteDifferences(decoder.pointer, count: decoder.count, loss: loss))
        #expect(badDecoder.isEmpty, "decoder: \(badDecoder.prefix(5))")
        // The encoder's gradient differs from InfoNCE's alone: the term reaches it.
        _ = infoNCE
        xq.withUnsafeBufferPointer { q in
            xk.withUnsafeBufferPointer { k in _ = moco.lossAndGradient(query: q.baseAddress!, key: k.baseAddress!, rows: 4, ids: nil) }
        }
        #expect(moco.gradients.array != analytic)
        #expect(analyticDecoder.contains { $0 != 0 })
    }
}
