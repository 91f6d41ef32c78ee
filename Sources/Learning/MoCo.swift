import CKernels
import LinearAlgebra

/// Settings of a momentum-contrast model. Defaults are Eddy's; the reference workload differs in
/// its temperature (0.1) and its one-layer head (`[32]`).
public struct MoCoConfiguration: Sendable, Equatable {
    /// Features per sample, `D`.
    public var inputDimension: Int
    /// Encoder widths (all ReLU); the last is the representation downstream heads use.
    public var encoderWidths: [Int] = [128, 64]
    /// Projection head widths: ReLU between, linear last; its output is L2-normalised.
    public var headWidths: [Int] = [64, 32]
    /// Negative keys kept, `K`; a multiple of `batchSize`.
    public var queueSize = 4096
    /// Softmax temperature `T` of InfoNCE.
    public var temperature: Float = 0.2
    /// Key encoder momentum: `θk = m·θk + (1 − m)·θq` after each step.
    public var momentum: Float = 0.99
    /// Training batch, `B`.
    public var batchSize = 64
    public var optimiser = AdamConfiguration()
    public var augmentation = AugmentationConfiguration()
    public var normalise = true
    public var normaliserHorizon = 10_000
    public var seed: UInt64 = 0
    /// Weight λ of a denoising reconstruction term (0: off, plain MoCo). A decoder (the encoder's
    /// widths reversed, then `D`; ReLU between, linear last) rebuilds each clean sample from the
    /// representation of its query view; the loss is InfoNCE + λ · mean squared error. On a stream of
    /// few distinct samples, InfoNCE alone spreads them evenly and forgets which are alike; the term
    /// keeps what sets samples apart in the representation.
    public var reconstruction: Float = 0
    /// Batch normalisation after every layer but the projection's last (as in SimCLR and MoCo v3):
    /// training uses each batch's statistics, the representation the running ones.
    public var batchNorm = false
    /// i-Mix (Lee et al. 2021), the largest share of another sample in a query view (0: off). Each
    /// step draws one share `s` uniformly from `[0, mix]` and a shuffle of the batch; query view i
    /// becomes `(1 − s)·view i + s·view π(i)`, and its positive is split the same way between key i
    /// and key π(i), the batch's keys joining the queue as the other negatives. Where a sample cannot
    /// be cropped or warped into a new view, a blend is a positive that costs nothing to make.
    public var mix: Float = 0

    public init(inputDimension: Int) { self.inputDimension = inputDimension }

    /// The decoder's widths after the representation: the encoder's hidden widths reversed, then `D`.
    public var decoderWidths: [Int] { Array(encoderWidths.dropLast().reversed()) + [inputDimension] }

    /// Number of channels of the key queue: the projection's width.
    public var projectionWidth: Int { headWidths.last ?? encoderWidths.last ?? 0 }
}

/// MoCo (He et al. 2020) for streams: a query encoder trained by InfoNCE against its EMA twin's keys
/// and a ring queue of past keys, with augmentations as the source of positive pairs.
///
/// Shapes below: `B` batch, `D` input, `C` projection width, `K` queue size.
public final class MoCo {
    public let configuration: MoCoConfiguration
    /// Encoder then head, as one network; the key encoder shares the layout.
    public let layout: NetworkLayout
    public let normaliser: Normaliser
    let query: FloatBuffer
    let key: FloatBuffer
    let gradients: FloatBuffer
    let optimiser: Adam
    var random: RandomSource
    /// The queue of negative keys, `(K, C)`, L2-normalised rows, and the sample id each came from
    /// (`-1`: none; the random initial keys).
    let queue: FloatBuffer
    let queueIDs: UnsafeMutablePointer<Int64>
    /// Row of the queue the next key overwrites (the oldest).
    public private(set) var queuePointer = 0

    // Per-step workspace, sized for `B`.
    let queryWork: NetworkWorkspace
    let keyWork: NetworkWorkspace
    /// With batch normalisation, the groups a training batch is normalised in (1: the whole batch),
    /// the key batch regrouped by a random permutation (shuffle BN, He et al. 2020): a positive pair
    /// then does not share batch statistics that no queue negative has. A training setting of the
    /// stream's (`moco_batch_norm_groups`), not part of the saved model.
    public var batchNormGroups = 1
    /// The permuted key batch and its encoder's outputs in order (allocated at the first shuffle).
    var shuffledKeys: (input: FloatBuffer, output: FloatBuffer)?
    var permutation: [Int] = []
    let normalised: FloatBuffer  // (B, D)
    let viewQ: FloatBuffer  // (B, D)
    let viewK: FloatBuffer  // (B, D)
    let q: FloatBuffer  // (B, C) normalised query
    let qNorm: FloatBuffer  // (B) ||p||
    let k: FloatBuffer  // (B, C) normalised key
    let logits: FloatBuffer  // (B, K) negatives, then their softmax gradient
    let dq: FloatBuffer  // (B, C)
    let positive: FloatBuffer  // (B) dL/d(positive logit)
    let rowScale: FloatBuffer  // (B) 1 / (B·Z) per row
    // Inference workspace.
    let embedWork: NetworkWorkspace
    let embedInput: FloatBuffer
    /// With `reconstruction` > 0: the decoder from the representation back to the input, its
    /// gradients, optimiser and workspace, and dL/d(representation) from it, `(B, R)`.
    let decoder: FloatBuffer?
    let decoderGradients: FloatBuffer?
    let decoderOptimiser: Adam?
    let decoderWork: NetworkWorkspace?
    let representationDelta: FloatBuffer?
    /// With `mix` > 0: the blended clean samples (the reconstruction's targets), `(B, D)`, the logits
    /// of the queries against the batch's keys, then their gradient, `(B, B)`, and the step's
    /// shuffle (empty for a step without a blend).
    let blended: FloatBuffer?
    let pairLogits: FloatBuffer?
    var partner: [Int] = []

    public init(configuration: MoCoConfiguration) {
        let c = configuration
        precondition(c.inputDimension > 0 && c.batchSize > 0, "MoCo needs a positive dimension and batch")
        precondition(!c.encoderWidths.isEmpty && !c.headWidths.isEmpty, "MoCo needs an encoder and a head")
        precondition(c.queueSize >= c.batchSize && c.queueSize % c.batchSize == 0, "queue must be a multiple of the batch")
        precondition(c.temperature > 0 && (0...1).contains(c.momentum), "temperature > 0 and momentum in [0, 1]")
        precondition(c.reconstruction >= 0 && c.reconstruction.isFinite, "the reconstruction weight is finite, not negative")
        precondition((0...0.5).contains(c.mix), "the mixed share is in [0, 0.5]")
        self.configuration = c
        let acts =
            Array(repeating: Activation.relu, count: c.encoderWidths.count)
            + Array(repeating: Activation.relu, count: c.headWidths.count - 1) + [.identity]
        layout = NetworkLayout(
            inputs: c.inputDimension, widths: c.encoderWidths + c.headWidths, activations: acts,
            normalised: Array(repeating: c.batchNorm, count: acts.count - 1) + [false])
        normaliser = Normaliser(dimension: c.inputDimension, horizon: c.normaliserHorizon)
        let n = layout.parameterCount
        query = FloatBuffer(count: n)
        key = FloatBuffer(count: n)
        gradients = FloatBuffer(count: n)
        optimiser = Adam(parameterCount: layout.trainableCount, configuration: c.optimiser)
        random = RandomSource(seed: c.seed)
        layout.initialise(query.pointer, random: &random)
        key.copy(from: query)  // f_k starts as a copy of f_q

        let C = c.projectionWidth, K = c.queueSize, B = c.batchSize, D = c.inputDimension
        queue = FloatBuffer(count: K * C)
        for row in 0..<K {
            let r = queue.pointer + row * C
            random.fillNormal(r, count: C)
            BLAS.scale(count: C, alpha: 1 / max(BLAS.norm(count: C, x: r), 1e-12), x: r)
        }
        queueIDs = .allocate(capacity: K)
        queueIDs.initialize(repeating: -1, count: K)

        queryWork = NetworkWorkspace(layout: layout, capacity: B)
        keyWork = NetworkWorkspace(layout: layout, capacity: B)
        normalised = FloatBuffer(count: B * D)
        viewQ = FloatBuffer(count: B * D)
        viewK = FloatBuffer(count: B * D)
        q = FloatBuffer(count: B * C)
        qNorm = FloatBuffer(count: B)
        k = FloatBuffer(count: B * C)
        logits = FloatBuffer(count: B * K)
        dq = FloatBuffer(count: B * C)
        positive = FloatBuffer(count: B)
        rowScale = FloatBuffer(count: B)
        embedWork = NetworkWorkspace(layout: layout, capacity: 256)
        embedInput = FloatBuffer(count: 256 * D)
        if c.reconstruction > 0 {
            // Drawn after everything else, so a model without the term is the same as before it.
            let widths = c.decoderWidths
            let decoding = NetworkLayout(
                inputs: c.encoderWidths.last!, widths: widths,
                activations: Array(repeating: .relu, count: widths.count - 1) + [.identity])
            let parameters = FloatBuffer(count: decoding.parameterCount)
            decoding.initialise(parameters.pointer, random: &random)
            decoder = parameters
            decoderGradients = FloatBuffer(count: decoding.parameterCount)
            decoderOptimiser = Adam(parameterCount: decoding.parameterCount, configuration: c.optimiser)
            decoderWork = NetworkWorkspace(layout: decoding, capacity: B)
            representationDelta = FloatBuffer(count: B * c.encoderWidths.last!)
        } else {
            (decoder, decoderGradients, decoderOptimiser, decoderWork, representationDelta) = (nil, nil, nil, nil, nil)
        }
        (blended, pairLogits) = c.mix > 0 ? (FloatBuffer(count: B * D), FloatBuffer(count: B * B)) : (nil, nil)
    }

    deinit { queueIDs.deallocate() }

    public var step: Int { optimiser.step }
    public var parameterCount: Int { layout.parameterCount }
    /// Width of the representation (the encoder's last layer).
    public var representationWidth: Int { configuration.encoderWidths.last! }

    /// Feeds arriving samples to the running normaliser (once per sample, on arrival).
    public func observe(_ x: UnsafePointer<Float>, rows: Int) {
        if configuration.normalise { normaliser.observe(x, rows: rows) }
    }

    /// One training step: two augmented views, InfoNCE (and the reconstruction term), Adam on `f_q`
    /// (and the decoder), EMA into `f_k`, enqueue keys.
    ///
    /// - Parameters:
    ///   - x: `(rows, D)` samples; `rows` at most the configured batch.
    ///   - ids: optional non-negative id per row (a sample's identity in the stream); queue entries with the same
    ///     id are masked out of the negatives, since they are the same sample: false negatives.
    /// - Returns: the batch's loss: InfoNCE, plus λ times the reconstruction error with the term.
    @discardableResult
    public func trainStep(_ x: UnsafePointer<Float>, rows: Int, ids: UnsafePointer<Int64>? = nil) -> Float {
        // Before the views are written: they hold a batch of rows at most.
        precondition(rows > 0 && rows <= configuration.batchSize, "rows must be in 1...batchSize")
        let D = configuration.inputDimension
        var input = x
        if configuration.normalise {
            normaliser.apply(x, rows: rows, into: normalised.pointer)
            input = UnsafePointer(normalised.pointer)
        }
        configuration.augmentation.apply(input, rows: rows, dimension: D, into: viewQ.pointer, random: &random)
        configuration.augmentation.apply(input, rows: rows, dimension: D, into: viewK.pointer, random: &random)
        var clean = input
        var share: Float = 0
        if let blended, rows > 1 {
            share = configuration.mix * random.uniform()
            partner.removeAll(keepingCapacity: true)
            partner.append(contentsOf: 0..<rows)
            for i in stride(from: rows - 1, to: 0, by: -1) { partner.swapAt(i, random.index(below: i + 1)) }
            blend(viewQ.pointer, rows: rows, share: share, into: blended.pointer)
            viewQ.pointer.update(from: blended.pointer, count: rows * D)
            blend(input, rows: rows, share: share, into: blended.pointer)
            clean = UnsafePointer(blended.pointer)
        }
        let loss = lossAndGradient(
            query: viewQ.pointer, key: viewK.pointer, rows: rows, ids: ids, clean: clean,
            mix: share > 0 ? (share, partner) : nil)
        optimiser.update(parameters: query.pointer, gradients: gradients.pointer, count: layout.trainableCount)
        if let decoder, let decoderGradients, let decoderOptimiser {
            decoderOptimiser.update(parameters: decoder.pointer, gradients: decoderGradients.pointer, count: decoder.count)
        }
        updateKeyEncoder()
        enqueue(keys: k.pointer, ids: ids, rows: rows)
        return loss
    }

    /// `out[i] = (1 − share)·x[i] + share·x[partner[i]]` over `rows` rows of `D`.
    func blend(_ x: UnsafePointer<Float>, rows: Int, share: Float, into out: UnsafeMutablePointer<Float>) {
        let D = configuration.inputDimension
        for r in 0..<rows {
            let o = out + r * D
            o.update(from: x + r * D, count: D)
            BLAS.axpby(count: D, alpha: share, x: x + partner[r] * D, beta: 1 - share, y: o)
        }
    }

    /// `θk = m·θk + (1 − m)·θq`: one axpby over the flat buffers.
    func updateKeyEncoder() {
        let m = configuration.momentum
        BLAS.axpby(count: parameterCount, alpha: 1 - m, x: query.pointer, beta: m, y: key.pointer)
    }

    /// Overwrites the oldest `rows` queue entries with `keys` `(rows, C)`, wrapping around.
    func enqueue(keys: UnsafePointer<Float>, ids: UnsafePointer<Int64>?, rows: Int) {
        let C = configuration.projectionWidth, K = configuration.queueSize
        for r in 0..<rows {
            (queue.pointer + queuePointer * C).update(from: keys + r * C, count: C)
            queueIDs[queuePointer] = ids?[r] ?? -1
            queuePointer = (queuePointer + 1) % K
        }
    }

    /// InfoNCE loss of query views against key views and the queue; fills `gradients` with dL/dθq
    /// and leaves the normalised keys in `k`. Changes no parameters and not the queue. With the
    /// reconstruction term and `clean` (the samples the views were made from, `(B, D)`), adds
    /// λ · mean((decoder(representation of xq) − clean)²) and fills `decoderGradients` too.
    ///
    /// With `mix` (i-Mix: query view i is a blend taking `share` of sample `partner[i]`), the
    /// logits of row i are its query against every key of the batch and the queue, and its target
    /// is `1 − share` on key i and `share` on key `partner[i]`: loss_i = log Z − Σ target · logit.
    /// With `ids`, Z leaves out the batch's other copies of sample i and of its partner.
    func lossAndGradient(
        query xq: UnsafePointer<Float>, key xk: UnsafePointer<Float>, rows B: Int, ids: UnsafePointer<Int64>?,
        clean: UnsafePointer<Float>? = nil, mix: (share: Float, partner: [Int])? = nil
    ) -> Float {
        let c = configuration
        precondition(B > 0 && B <= c.batchSize, "batch of \(B) rows is out of range")
        let C = c.projectionWidth, K = c.queueSize
        let invT = 1 / c.temperature
        // q = normalize(f_q(xq)): (B, C); k = normalize(f_k(xk)): (B, C), no gradient.
        // Both in training mode, as MoCo's: batch-normalised layers read each batch's statistics.
        queryWork.groups = batchNormGroups
        keyWork.groups = batchNormGroups
        queryWork.forward(parameters: query.pointer, input: xq, batch: B, training: query.pointer)
        if c.batchNorm && keyWork.groupCount(B) > 1 {
            // Shuffle BN: the key batch's rows regrouped by a random permutation before the key
            // encoder, its outputs put back in order.
            let D = c.inputDimension
            if shuffledKeys == nil { shuffledKeys = (FloatBuffer(count: c.batchSize * D), FloatBuffer(count: c.batchSize * C)) }
            let (input, output) = (shuffledKeys!.input.pointer, shuffledKeys!.output.pointer)
            permutation.removeAll(keepingCapacity: true)
            permutation.append(contentsOf: 0..<B)
            for i in stride(from: B - 1, to: 0, by: -1) { permutation.swapAt(i, Int(random.next() % UInt64(i + 1))) }
            for (i, row) in permutation.enumerated() { (input + i * D).update(from: xk + row * D, count: D) }
            keyWork.forward(parameters: key.pointer, input: input, batch: B, training: key.pointer)
            for (i, row) in permutation.enumerated() { (output + row * C).update(from: keyWork.output + i * C, count: C) }
            eddy_normalise_rows(output, B, C, k.pointer, nil)
        } else {
            keyWork.forward(parameters: key.pointer, input: xk, batch: B, training: key.pointer)
            eddy_normalise_rows(keyWork.output, B, C, k.pointer, nil)
        }
        eddy_normalise_rows(queryWork.output, B, C, q.pointer, qNorm.pointer)
        // Negative logits: q · queueᵀ / T, (B, K). Positive logits: q·k / T, (B).
        let l = logits.pointer
        BLAS.gemm(.none, .transposed, m: B, n: K, k: C, alpha: invT, a: q.pointer, b: queue.pointer, c: l)
        // Every logit is a cosine over T, so 1/T bounds them all: shifting by it needs no max pass and
        // cannot overflow; below T = 0.025 the shifted negatives could underflow, so take the max.
        let fixedShift = c.temperature >= 0.025
        var totalLoss: Float = 0
        let invB = 1 / Float(B)
        if let mix { precondition(mix.partner.count == B && pairLogits != nil, "a blend needs a partner per row and mix > 0") }
        let pairs = mix.map { (pairLogits!.pointer, $0.share, $0.partner) }
        if let (p, share, partner) = pairs {
            // Against the batch's keys too: (B, B), then each row's softmax minus its target, over B.
            BLAS.gemm(.none, .transposed, m: B, n: B, k: C, alpha: invT, a: q.pointer, b: k.pointer, c: p)
            for r in 0..<B {
                let lr = l + r * K, pr = p + r * B
                let top = fixedShift ? invT : max(eddy_max(pr, B), eddy_max(lr, K))
                let own = pr[r] - top, other = pr[partner[r]] - top
                var z = eddy_exp_shifted_masked(lr, K, top, ids == nil ? nil : UnsafePointer(queueIDs), ids?[r] ?? -1)
                // Other copies in the batch of the row's own sample or of its partner are not
                // negatives (as the queue's copies of its own sample are not): weight 0.
                for j in 0..<B {
                    let copy = ids.map { j != r && j != partner[r] && ($0[j] == $0[r] || $0[j] == $0[partner[r]]) } ?? false
                    pr[j] = copy ? 0 : Kernels.exp(pr[j] - top)
                    z += pr[j]
                }
                totalLoss += _log(z) - (1 - share) * own - share * other
                let scale = invB / z
                for j in 0..<B { pr[j] *= scale }
                pr[r] -= (1 - share) * invB
                pr[partner[r]] -= share * invB
                positive[r] = 0
                rowScale[r] = scale
            }
        }
        for r in 0..<B where pairs == nil {
            let lr = l + r * K
            let lpos = BLAS.dot(count: C, x: q.pointer + r * C, y: k.pointer + r * C) * invT
            let top = fixedShift ? invT : max(lpos, eddy_max(lr, K))
            // Softmax over [pos | negatives]; masked negatives (same sample id) get weight 0.
            let ePos = Kernels.exp(lpos - top)
            let z = eddy_exp_shifted_masked(lr, K, top, ids == nil ? nil : UnsafePointer(queueIDs), ids?[r] ?? -1) + ePos
            // loss_r = log Z − (lpos − top)
            totalLoss += _log(z) - (lpos - top)
            // dL/dlogit = (softmax − onehot₀) / B. The negatives' 1/(B·Z) is applied to dq below,
            // per row, rather than to all K logits.
            positive[r] = (ePos / z - 1) * invB
            rowScale[r] = invB / z
        }
        // dq = (dpos · k + dneg · queue) / T, (B, C); dneg · queue as one gemm on the unscaled exps.
        BLAS.gemm(.none, .none, m: B, n: C, k: K, alpha: invT, a: l, b: queue.pointer, c: dq.pointer)
        let dp = queryWork.outputDelta
        for r in 0..<B {
            let dqr = dq.pointer + r * C, kr = k.pointer + r * C
            let dpos = positive[r] * invT, scale = rowScale[r]
            for j in 0..<C { dqr[j] = dqr[j] * scale + dpos * kr[j] }
        }
        if let (p, _, _) = pairs {
            // The batch's keys' part: dq += (dL/dlogits over the batch) · k / T.
            BLAS.gemm(.none, .none, m: B, n: C, k: B, alpha: invT, a: p, b: k.pointer, beta: 1, c: dq.pointer)
        }
        for r in 0..<B {
            let dqr = dq.pointer + r * C, qr = q.pointer + r * C
            // Through q = p / ||p||: dp = (dq − q (q·dq)) / ||p||
            let proj = BLAS.dot(count: C, x: dqr, y: qr)
            let s = 1 / qNorm[r]
            for j in 0..<C { dp[r * C + j] = (dqr[j] - qr[j] * proj) * s }
        }
        var reconstructionLoss: Float = 0
        var extra: (layer: Int, delta: UnsafePointer<Float>)? = nil
        if let clean, let decoder, let decoderGradients, let decoderWork, let representationDelta {
            // The decoder reads the query view's representation and rebuilds the clean sample.
            let e = c.encoderWidths.count - 1, D = c.inputDimension
            let representation = UnsafePointer(queryWork.outputs[e].pointer)
            decoderWork.forward(parameters: decoder.pointer, input: representation, batch: B)
            let out = decoderWork.output, delta = decoderWork.outputDelta
            let scale = 2 * c.reconstruction / Float(B * D)
            var sum: Float = 0
            for i in 0..<(B * D) {
                let d = out[i] - clean[i]
                sum += d * d
                delta[i] = scale * d
            }
            reconstructionLoss = c.reconstruction * sum / Float(B * D)
            decoderWork.backward(
                parameters: decoder.pointer, gradients: decoderGradients.pointer, input: representation, batch: B,
                inputDelta: representationDelta.pointer)
            extra = (e, UnsafePointer(representationDelta.pointer))
        }
        queryWork.backward(parameters: query.pointer, gradients: gradients.pointer, input: xq, batch: B, extra: extra)
        return totalLoss * invB + reconstructionLoss
    }

    /// Representations of `rows` samples (the encoder's output, `(rows, representationWidth)`),
    /// from the query encoder without augmentation.
    public func embed(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
        let D = configuration.inputDimension, R = representationWidth
        let layer = configuration.encoderWidths.count - 1
        var start = 0
        while start < rows {
            let n = min(256, rows - start)
            var input = x + start * D
            if configuration.normalise {
                normaliser.apply(input, rows: n, into: embedInput.pointer)
                input = UnsafePointer(embedInput.pointer)
            }
            // The encoder alone: the projection head's output is not the representation.
            embedWork.forward(parameters: query.pointer, input: input, batch: n, layers: layer + 1)
            (out + start * R).update(from: embedWork.outputs[layer].pointer, count: n * R)
            start += n
        }
    }

    /// With the reconstruction term: the decoder's mean squared error on clean samples (row-major),
    /// in normalised units; nil without it.
    public func reconstructionError(_ samples: [Float]) -> Float? {
        guard let decoder, let decoderWork else { return nil }
        let D = configuration.inputDimension, R = representationWidth, B = configuration.batchSize
        let rows = samples.count / D
        let representation = embed(samples)
        var clean = samples
        if configuration.normalise {
            clean.withUnsafeMutableBufferPointer { normaliser.apply(samples, rows: rows, into: $0.baseAddress!) }
        }
        var sum: Double = 0
        for start in stride(from: 0, to: rows, by: B) {
            let n = min(B, rows - start)
            representation.withUnsafeBufferPointer {
                decoderWork.forward(parameters: decoder.pointer, input: $0.baseAddress! + start * R, batch: n)
            }
            for i in 0..<(n * D) {
                let d = Double(decoderWork.output[i] - clean[start * D + i])
                sum += d * d
            }
        }
        return Float(sum / Double(max(rows * D, 1)))
    }

    /// Representations of an array of samples (row-major); convenience for tests and tools.
    public func embed(_ samples: [Float]) -> [Float] {
        let rows = samples.count / configuration.inputDimension
        var out = [Float](repeating: 0, count: rows * representationWidth)
        samples.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { o in embed(x.baseAddress!, rows: rows, into: o.baseAddress!) }
        }
        return out
    }

    public var queryParameters: [Float] { query.array }

    /// The query network as plain dense layers (batch normalisation folded into the weights, see
    /// `NetworkLayout.folded`): what a snapshot publishes.
    public var exported: (layout: NetworkLayout, parameters: [Float]) {
        layout.isNormalised ? layout.folded(query.pointer) : (layout, query.array)
    }

    /// The query encoder's weights into `out` (a buffer of `parameterCount`), and back: how
    /// another thread's copy of the model is kept up to date without sharing this one.
    public func copyQuery(into out: FloatBuffer) { out.copy(from: query) }
    public func loadQuery(from source: FloatBuffer) { query.copy(from: source) }
    public var keyParameters: [Float] { key.array }
    public var queueValues: [Float] { queue.array }

    /// Whether every weight of both encoders and every queued key is finite.
    public var isFinite: Bool {
        var buffers = [query, key, queue, optimiser.m, optimiser.v]
        if let decoder, let decoderOptimiser { buffers += [decoder, decoderOptimiser.m, decoderOptimiser.v] }
        return buffers.allSatisfy { Kernels.firstNonFinite($0.pointer, count: $0.count) == nil }
    }

    /// Whether the query encoder's weights, what the representer is handed, are finite.
    public var queryFinite: Bool { Kernels.firstNonFinite(query.pointer, count: query.count) == nil }

    // MARK: State

    static let kind = "eddy.moco"
    /// 2: the augmentation's series settings (1 restores with them off). 3: the reconstruction
    /// weight, and with it the decoder and its Adam state (1 and 2 restore without the term).
    /// 4: batch normalisation (earlier formats restore without it). 5: the mixed share (earlier
    /// formats restore without a blend).
    static let formatVersion: UInt32 = 5

    /// The full training state: configuration, both encoders, Adam moments and step, queue, its ids
    /// and pointer, normaliser statistics and random state, sealed with a CRC-32.
    public func serialized() -> [UInt8] { serialized(format: Self.formatVersion) }

    /// `serialized()` in an earlier format (tests restore what older daemons wrote).
    func serialized(format: UInt32) -> [UInt8] {
        var w = StateWriter()
        w.write(Self.kind); w.write(format)
        let c = configuration
        w.write(UInt32(c.inputDimension))
        w.write(UInt32(c.encoderWidths.count)); for v in c.encoderWidths { w.write(UInt32(v)) }
        w.write(UInt32(c.headWidths.count)); for v in c.headWidths { w.write(UInt32(v)) }
        w.write(UInt32(c.queueSize)); w.write(c.temperature); w.write(c.momentum); w.write(UInt32(c.batchSize))
        w.write(c.optimiser); w.write(c.augmentation, format: format)
        w.write(c.normalise); w.write(UInt64(c.normaliserHorizon)); w.write(c.seed)
        if format >= 3 { w.write(c.reconstruction) }
        if format >= 4 { w.write(c.batchNorm) }
        if format >= 5 { w.write(c.mix) }
        w.write(random)
        w.write(UInt64(optimiser.step))
        w.write(query); w.write(key); w.write(optimiser.m); w.write(optimiser.v)
        w.write(queue)
        w.write(Array(UnsafeBufferPointer(start: queueIDs, count: c.queueSize)))
        w.write(UInt32(queuePointer))
        normaliser.encode(&w)
        if format >= 3, let decoder, let decoderOptimiser {
            w.write(UInt64(decoderOptimiser.step))
            w.write(decoder); w.write(decoderOptimiser.m); w.write(decoderOptimiser.v)
        }
        w.seal()
        return w.bytes
    }

    /// Bytes the model allocates beyond its weights, Adam's moments and its queue (which a decoder
    /// holds against the bytes it reads): the batch's logits against the queue, the two views'
    /// activations and their gradients, the views themselves, the rows `embed` takes at a time, and
    /// with the options on, i-Mix's blends and the decoder's activations.
    public static func workingBytes(_ c: MoCoConfiguration) -> Int {
        let B = c.batchSize, D = c.inputDimension
        let units = (c.encoderWidths + c.headWidths).reduce(D, +)
        var floats = B * (c.queueSize + 1) + 2 * 3 * B * units + 3 * B * D + 256 * (3 * units + D)
        if c.mix > 0 { floats += B * D + B * B }
        if c.reconstruction > 0 { floats += B * (2 * c.decoderWidths.reduce(0, +) + c.encoderWidths.last!) }
        return 4 * floats
    }

    /// Restores a model from `serialized()`; it takes exactly the step the original would. A model
    /// whose batch would take more than `maximumBytes` of working memory (`workingBytes`: a batch of
    /// 4,096 against a queue of a million keys is 16 GiB of logits) is refused before anything is
    /// allocated: a checkpoint's sizes are not trusted.
    public convenience init(serialized bytes: [UInt8], maximumBytes: Int = .max) throws {
        var r = try StateReader(sealed: bytes)
        guard try r.read(String.self) == Self.kind else { throw StateError.wrongKind(expected: Self.kind) }
        let version = try r.read(UInt32.self)
        guard (1...Self.formatVersion).contains(version) else { throw StateError.unsupportedVersion(version) }
        func widths(_ r: inout StateReader) throws -> [Int] {
            let n = Int(try r.read(UInt32.self))
            guard n > 0 && n <= 64 else { throw StateError.invalid("layer count") }
            return try (0..<n).map { _ in Int(try r.read(UInt32.self)) }
        }
        var c = MoCoConfiguration(inputDimension: Int(try r.read(UInt32.self)))
        c.encoderWidths = try widths(&r)
        c.headWidths = try widths(&r)
        c.queueSize = Int(try r.read(UInt32.self))
        c.temperature = try r.read(Float.self)
        c.momentum = try r.read(Float.self)
        c.batchSize = Int(try r.read(UInt32.self))
        guard c.inputDimension > 0, c.batchSize > 0, c.queueSize >= c.batchSize, c.queueSize % c.batchSize == 0,
            c.temperature > 0, (0...1).contains(c.momentum),
            (c.encoderWidths + c.headWidths).allSatisfy({ $0 > 0 })
        else { throw StateError.invalid("shape") }
        // Sizes read from the input are held against it before the model is allocated: the query and
        // key encoders, Adam's two moments and the queue follow (4 bytes a value).
        let widths = [c.inputDimension] + c.encoderWidths + c.headWidths
        guard widths.allSatisfy({ $0 <= 1 << 24 }), c.batchSize <= 1 << 16, c.queueSize <= 1 << 24 else {
            throw StateError.invalid("shape")
        }
        try r.requireRoom(zip(widths, widths.dropFirst()).reduce(0) { $0 + $1.0 * $1.1 + $1.1 }, each: 16)
        try r.requireRoom(c.queueSize * widths.last!, each: 4)
        c.optimiser = try r.read(AdamConfiguration.self)
        c.augmentation = try r.read(AugmentationConfiguration.self, format: version)
        c.normalise = try r.read(Bool.self)
        c.normaliserHorizon = try r.readInt()
        guard c.normaliserHorizon > 0 else { throw StateError.invalid("normaliser horizon") }
        c.seed = try r.read(UInt64.self)
        if version >= 3 {
            c.reconstruction = try r.read(Float.self)
            guard c.reconstruction >= 0 && c.reconstruction.isFinite else { throw StateError.invalid("reconstruction weight") }
            if c.reconstruction > 0 {
                let decoding = [c.encoderWidths.last!] + c.decoderWidths
                try r.requireRoom(zip(decoding, decoding.dropFirst()).reduce(0) { $0 + $1.0 * $1.1 + $1.1 }, each: 12)
            }
        }
        if version >= 4 { c.batchNorm = try r.read(Bool.self) }
        if version >= 5 {
            c.mix = try r.read(Float.self)
            guard (0...0.5).contains(c.mix) else { throw StateError.invalid("mixed share") }
        }
        guard Self.workingBytes(c) <= maximumBytes else {
            throw StateError.invalid("size: its batch would take \(Self.workingBytes(c)) bytes, more than \(maximumBytes)")
        }
        self.init(configuration: c)
        random = try r.read(RandomSource.self)
        optimiser.step = try r.readInt()
        try r.read(into: query); try r.read(into: key); try r.read(into: optimiser.m); try r.read(into: optimiser.v)
        try r.read(into: queue)
        let ids = try r.read([Int64].self, expected: c.queueSize)
        for (i, id) in ids.enumerated() { queueIDs[i] = id }
        queuePointer = Int(try r.read(UInt32.self))
        guard queuePointer < c.queueSize else { throw StateError.invalid("queue pointer") }
        normaliser.copy(from: try Normaliser.decode(&r, dimension: c.inputDimension))
        if let decoder, let decoderOptimiser {
            decoderOptimiser.step = try r.readInt()
            try r.read(into: decoder); try r.read(into: decoderOptimiser.m); try r.read(into: decoderOptimiser.v)
        }
    }
}
