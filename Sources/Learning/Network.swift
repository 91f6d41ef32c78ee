import CKernels
import LinearAlgebra

/// One dense layer's place in a flat parameter buffer: `y = act(W x + b)`.
///
/// `W` is `outputs × inputs`, row-major (PyTorch's `nn.Linear` layout), followed by `b`.
public struct DenseLayer: Sendable, Equatable {
    public let inputs: Int
    public let outputs: Int
    public let activation: Activation
    /// Offset of `W` in the model's flat buffer; `b` follows at `weightOffset + outputs·inputs`.
    public let weightOffset: Int
    public var biasOffset: Int { weightOffset + outputs * inputs }
    /// Trained values of the layer: `W`, `b`, and with batch normalisation its scale γ and shift β
    /// (right after `b`).
    public var parameterCount: Int { outputs * inputs + outputs + (normalisation == nil ? 0 : 2 * outputs) }
    /// With batch normalisation (Ioffe and Szegedy 2015): `y = act(γ·(z − μ)/√(σ² + ε) + β)` for
    /// `z = W x + b`, with the batch's mean and variance while training and the running ones
    /// otherwise. The running mean and variance are not trained: they sit after every layer's trained
    /// values, at this offset (mean, then variance).
    public let normalisation: Int?
    public var scaleOffset: Int { biasOffset + outputs }
    public var shiftOffset: Int { biasOffset + 2 * outputs }

    /// Forward pass over a batch.
    ///
    /// - Parameters:
    ///   - x: input, `(batch, inputs)` row-major.
    ///   - y: output, `(batch, outputs)`; overwritten with `act(x Wᵀ + b)`.
    @inline(__always)
    func forward(
        parameters p: UnsafePointer<Float>, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, batch: Int
    ) {
        if batch == 1 {
            // One sample: sgemv. Through the whole autoencoder it scores ~1.4x faster than sgemm with
            // m = 1 (`eddy bench score`); a fused C dot-product loop was slower than both.
            BLAS.gemv(.none, rows: outputs, columns: inputs, a: p + weightOffset, x: x, y: y)
        } else {
            BLAS.gemm(.none, .transposed, m: batch, n: outputs, k: inputs, a: x, b: p + weightOffset, c: y)
        }
        Kernels.addBiasActivate(
            y, bias: p + biasOffset, rows: batch, columns: outputs, activation: normalisation == nil ? activation : .identity)
    }

    /// Backward pass over a batch; the pair of `forward`.
    ///
    /// - Parameters:
    ///   - x: the input the forward pass saw, `(batch, inputs)`.
    ///   - y: the output the forward pass wrote, `(batch, outputs)` (ReLU's mask is `y > 0`).
    ///   - dy: on entry dL/dy, `(batch, outputs)`; on return dL/d(pre-activation).
    ///   - gradients: the flat gradient buffer; this layer's `dW` and `db` are overwritten.
    ///   - dx: if not nil, receives dL/dx, `(batch, inputs)`.
    @inline(__always)
    func backward(
        parameters p: UnsafePointer<Float>, gradients g: UnsafeMutablePointer<Float>,
        x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
        dx: UnsafeMutablePointer<Float>?, batch: Int
    ) {
        Kernels.activationBackwardBiasSum(
            dy, output: y, biasGradient: g + biasOffset, rows: batch, columns: outputs, activation: activation)
        linearBackward(parameters: p, gradients: g, x: x, dz: dy, dx: dx, batch: batch)
    }

    /// The backward pass of `z = W x + b` alone: dW and dx from dL/dz (db is the caller's).
    @inline(__always)
    func linearBackward(
        parameters p: UnsafePointer<Float>, gradients g: UnsafeMutablePointer<Float>,
        x: UnsafePointer<Float>, dz dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, batch: Int
    ) {
        // dW (outputs × inputs) = dyᵀ (outputs × batch) · x (batch × inputs)
        BLAS.gemm(.transposed, .none, m: outputs, n: inputs, k: batch, a: dy, b: x, c: g + weightOffset)
        if let dx {
            // dx (batch × inputs) = dy (batch × outputs) · W (outputs × inputs)
            BLAS.gemm(.none, .none, m: batch, n: inputs, k: outputs, a: dy, b: p + weightOffset, c: dx)
        }
    }
}

/// The architecture of a multilayer perceptron: where each layer's parameters live in one flat
/// buffer. Gradients and Adam moments use the same layout.
public struct NetworkLayout: Sendable, Equatable {
    public let layers: [DenseLayer]
    public var inputs: Int { layers.first?.inputs ?? 0 }
    public var outputs: Int { layers.last?.outputs ?? 0 }
    /// Every value of the flat buffer: the trained ones, then the normalised layers' running statistics.
    public let parameterCount: Int
    /// The trained values, a prefix of the buffer: what gradients and the optimiser cover.
    public let trainableCount: Int
    public var isNormalised: Bool { trainableCount != parameterCount }

    /// - Parameters:
    ///   - inputs: width of the input.
    ///   - widths: output width of each layer in order.
    ///   - activations: one per layer.
    ///   - normalised: per layer, whether it is batch-normalised (none by default).
    public init(inputs: Int, widths: [Int], activations: [Activation], normalised: [Bool]? = nil) {
        precondition(widths.count == activations.count && !widths.isEmpty, "one activation per layer")
        precondition(inputs > 0 && widths.allSatisfy { $0 > 0 }, "layer widths must be positive")
        let normalised = normalised ?? Array(repeating: false, count: widths.count)
        precondition(normalised.count == widths.count, "one normalisation flag per layer")
        var trained = 0
        var fanIn = inputs
        for (width, n) in zip(widths, normalised) {
            trained += fanIn * width + width + (n ? 2 * width : 0)
            fanIn = width
        }
        var layers: [DenseLayer] = []
        var offset = 0, statistics = trained
        fanIn = inputs
        for (l, width) in widths.enumerated() {
            let layer = DenseLayer(
                inputs: fanIn, outputs: width, activation: activations[l], weightOffset: offset,
                normalisation: normalised[l] ? statistics : nil)
            layers.append(layer)
            offset += layer.parameterCount
            if normalised[l] { statistics += 2 * width }
            fanIn = width
        }
        self.layers = layers
        trainableCount = trained
        parameterCount = statistics
    }

    /// PyTorch's initialisation: `nn.Linear`'s weights and biases `U(-1/√fan_in, 1/√fan_in)`,
    /// `nn.BatchNorm1d`'s γ = 1, β = 0, running mean 0 and variance 1.
    public func initialise(_ parameters: UnsafeMutablePointer<Float>, random: inout RandomSource) {
        for layer in layers {
            let bound = 1 / Float(layer.inputs).squareRoot()
            for i in 0..<(layer.outputs * layer.inputs + layer.outputs) {
                parameters[layer.weightOffset + i] = random.uniform(-bound, bound)
            }
            if let statistics = layer.normalisation {
                let o = layer.outputs
                (parameters + layer.scaleOffset).update(repeating: 1, count: o)
                (parameters + layer.shiftOffset).update(repeating: 0, count: o)
                (parameters + statistics).update(repeating: 0, count: o)
                (parameters + statistics + o).update(repeating: 1, count: o)
            }
        }
    }

    /// The same function as plain dense layers, for a network evaluated on running statistics:
    /// each normalised layer folded into its weights, `W' = s·W`, `b' = s·(b − μ) + β` with
    /// `s = γ/√(σ² + ε)`. Readers that know nothing of batch normalisation (snapshots, the Python
    /// client) see the network they would evaluate.
    public func folded(_ parameters: UnsafePointer<Float>) -> (layout: NetworkLayout, parameters: [Float]) {
        let plain = NetworkLayout(
            inputs: inputs, widths: layers.map(\.outputs), activations: layers.map(\.activation))
        var out = [Float](repeating: 0, count: plain.parameterCount)
        for (layer, target) in zip(layers, plain.layers) {
            let o = layer.outputs, i = layer.inputs
            for r in 0..<o {
                var scale: Float = 1, shift: Float = 0, mean: Float = 0
                if let statistics = layer.normalisation {
                    scale = parameters[layer.scaleOffset + r] / (parameters[statistics + o + r] + batchNormEpsilon).squareRoot()
                    shift = parameters[layer.shiftOffset + r]
                    mean = parameters[statistics + r]
                }
                for c in 0..<i { out[target.weightOffset + r * i + c] = scale * parameters[layer.weightOffset + r * i + c] }
                out[target.biasOffset + r] = scale * (parameters[layer.biasOffset + r] - mean) + shift
            }
        }
        return (plain, out)
    }
}

/// PyTorch's ε of `nn.BatchNorm1d`, and the weight of a batch in the running statistics.
let batchNormEpsilon: Float = 1e-5
let batchNormMomentum: Float = 0.1

/// Shuffle BN's rule: `groups` (at most 16) split a batch of `batch` rows evenly into groups of two
/// rows or more. A stream's configuration and the bench refuse any other count; a workspace falls
/// back to one group for a batch it does not split.
public func batchNormGroupsSplit(_ groups: Int, batch: Int) -> Bool {
    (1...NetworkWorkspace.maximumGroups).contains(groups) && batch % groups == 0 && batch / groups >= 2
}

/// A network's per-batch working memory: every layer's output and the gradient flowing into it.
///
/// Allocated once for the largest batch, so a training step allocates nothing.
final class NetworkWorkspace {
    let layout: NetworkLayout
    let capacity: Int
    /// Post-activation output of each layer, `(capacity, outputs)`.
    let outputs: [FloatBuffer]
    /// dL/d(output) of each layer, `(capacity, outputs)`; the backward pass turns it into
    /// dL/d(pre-activation) in place.
    let deltas: [FloatBuffer]
    /// Per batch-normalised layer: the normalised values x̂ `(capacity, outputs)`, then
    /// 1/√(σ² + ε) and a scratch row `(outputs)` each; and whether the last forward pass used the
    /// batch's statistics (training) or the running ones.
    let normalised: [FloatBuffer?]
    var inverseDeviation: [FloatBuffer?]
    var scratch: [FloatBuffer?]
    var usedBatchStatistics: [Bool]
    /// Batch statistics per group of `batch / groups` consecutive rows, in training (1: the whole
    /// batch). MoCo's shuffle BN: the key batch regrouped by a permutation, so that a positive pair
    /// does not share statistics no negative has (He et al. 2020, section 3.3).
    var groups = 1
    static let maximumGroups = 16
    /// Σ dy, dγ and db of one group, and their sums over the groups (the backward of `groups`;
    /// allocated with the groups' statistics, at the first grouped batch).
    var groupSums: FloatBuffer?

    /// The groups a batch of `batch` rows is normalised in: `groups` when each holds two rows or
    /// more and they split it evenly, else 1.
    func groupCount(_ batch: Int) -> Int {
        groups > 1 && batchNormGroupsSplit(groups, batch: batch) ? groups : 1
    }

    init(layout: NetworkLayout, capacity: Int) {
        self.layout = layout
        self.capacity = capacity
        outputs = layout.layers.map { FloatBuffer(count: capacity * $0.outputs) }
        deltas = layout.layers.map { FloatBuffer(count: capacity * $0.outputs) }
        normalised = layout.layers.map { $0.normalisation == nil ? nil : FloatBuffer(count: capacity * $0.outputs) }
        inverseDeviation = layout.layers.map { $0.normalisation == nil ? nil : FloatBuffer(count: $0.outputs) }
        scratch = layout.layers.map { $0.normalisation == nil ? nil : FloatBuffer(count: $0.outputs) }
        usedBatchStatistics = Array(repeating: false, count: layout.layers.count)
    }

    /// The last layer's output.
    var output: UnsafeMutablePointer<Float> { outputs[outputs.count - 1].pointer }
    /// Where the caller writes dL/d(final output) before `backward`.
    var outputDelta: UnsafeMutablePointer<Float> { deltas[deltas.count - 1].pointer }

    /// Forward pass through the first `layers` layers (all by default); the result is in `output`
    /// (and each layer's in `outputs`).
    ///
    /// - Parameter training: the buffer `parameters` points at, writable: batch-normalised layers
    ///   then use the batch's mean and variance (from 2 rows) and fold them into the running ones
    ///   kept there. Without it, the running statistics are used and nothing is written.
    func forward(
        parameters: UnsafePointer<Float>, input: UnsafePointer<Float>, batch: Int, layers: Int? = nil,
        training: UnsafeMutablePointer<Float>? = nil
    ) {
        precondition(batch <= capacity, "batch exceeds the workspace capacity")
        var x = input
        for (l, layer) in layout.layers.prefix(layers ?? layout.layers.count).enumerated() {
            let y = outputs[l].pointer
            layer.forward(parameters: parameters, x: x, y: y, batch: batch)
            if layer.normalisation != nil {
                normalise(layer: l, parameters: parameters, batch: batch, training: batch > 1 ? training : nil)
            }
            x = UnsafePointer(y)
        }
    }

    /// Batch normalisation of layer `l`'s `z` (in `outputs[l]`), then its activation.
    func normalise(layer l: Int, parameters p: UnsafePointer<Float>, batch: Int, training: UnsafeMutablePointer<Float>?) {
        let layer = layout.layers[l], o = layer.outputs, statistics = layer.normalisation!
        let G = training == nil ? 1 : groupCount(batch), rows = batch / G
        if G > 1 && inverseDeviation[l]!.count < G * o {
            // A row of statistics per group, allocated at the first grouped batch.
            inverseDeviation[l] = FloatBuffer(count: Self.maximumGroups * o)
            scratch[l] = FloatBuffer(count: Self.maximumGroups * o)
            if groupSums == nil { groupSums = FloatBuffer(count: 5 * (layout.layers.map(\.outputs).max() ?? 0)) }
        }
        for g in 0..<G {
            // Each group's own statistics (and its own update of the running ones).
            usedBatchStatistics[l] =
                eddy_batchnorm_forward(
                    outputs[l].pointer + g * rows * o, normalised[l]!.pointer + g * rows * o, scratch[l]!.pointer + g * o,
                    inverseDeviation[l]!.pointer + g * o, p + layer.scaleOffset, p + statistics, training.map { $0 + statistics },
                    rows, o, batchNormEpsilon, batchNormMomentum) != 0
        }
        Kernels.addBiasActivate(
            outputs[l].pointer, bias: p + layer.shiftOffset, rows: batch, columns: o, activation: layer.activation)
    }

    /// Backpropagates `outputDelta` through every layer, overwriting all parameter gradients.
    ///
    /// - Parameters:
    ///   - inputDelta: if not nil, receives dL/d(input), `(batch, inputs)`.
    ///   - extra: if not nil, a second loss's dL/d(output) of layer `layer`, `(batch, outputs)`,
    ///     added to what flows back into that layer's output (a loss on an inner layer).
    func backward(
        parameters: UnsafePointer<Float>, gradients: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
        batch: Int, inputDelta: UnsafeMutablePointer<Float>? = nil,
        extra: (layer: Int, delta: UnsafePointer<Float>)? = nil
    ) {
        for l in stride(from: layout.layers.count - 1, through: 0, by: -1) {
            if let extra, extra.layer == l {
                BLAS.axpy(count: batch * layout.layers[l].outputs, alpha: 1, x: extra.delta, y: deltas[l].pointer)
            }
            let x = l > 0 ? UnsafePointer(outputs[l - 1].pointer) : input
            let dx = l > 0 ? deltas[l - 1].pointer : inputDelta
            if layout.layers[l].normalisation != nil {
                normaliseBackward(layer: l, parameters: parameters, gradients: gradients, batch: batch)
                layout.layers[l].linearBackward(
                    parameters: parameters, gradients: gradients, x: x, dz: deltas[l].pointer, dx: dx, batch: batch)
            } else {
                layout.layers[l].backward(
                    parameters: parameters, gradients: gradients, x: x, y: outputs[l].pointer,
                    dy: deltas[l].pointer, dx: dx, batch: batch)
            }
        }
    }

    /// Turns dL/dy of normalised layer `l` (in `deltas[l]`) into dL/dz in place, writing dγ, dβ and db.
    func normaliseBackward(layer l: Int, parameters p: UnsafePointer<Float>, gradients g: UnsafeMutablePointer<Float>, batch: Int) {
        let layer = layout.layers[l], o = layer.outputs
        // Through the activation: dy becomes dL/d(γ x̂ + β); its column sums are dβ.
        Kernels.activationBackwardBiasSum(
            deltas[l].pointer, output: outputs[l].pointer, biasGradient: g + layer.shiftOffset, rows: batch, columns: o,
            activation: layer.activation)
        // dz = (γ/σ)/n · (n·dy − Σ dy − x̂·Σ dy·x̂) with batch statistics, (γ/σ)·dy with running ones.
        let G = usedBatchStatistics[l] ? groupCount(batch) : 1
        guard G > 1 else {
            eddy_batchnorm_backward(
                deltas[l].pointer, normalised[l]!.pointer, inverseDeviation[l]!.pointer, p + layer.scaleOffset,
                g + layer.shiftOffset, g + layer.scaleOffset, g + layer.biasOffset, scratch[l]!.pointer, batch, o,
                usedBatchStatistics[l] ? 1 : 0)
            return
        }
        // In groups: each by its own statistics and its own Σ dy; dγ and db summed over the groups.
        let rows = batch / G, sums = groupSums!.pointer
        let dbeta = sums, dgamma = sums + o, db = sums + 2 * o, totalGamma = sums + 3 * o, totalB = sums + 4 * o
        totalGamma.update(repeating: 0, count: o)
        totalB.update(repeating: 0, count: o)
        for group in 0..<G {
            let d = deltas[l].pointer + group * rows * o
            dbeta.update(repeating: 0, count: o)
            for r in 0..<rows { for c in 0..<o { dbeta[c] += d[r * o + c] } }
            eddy_batchnorm_backward(
                d, normalised[l]!.pointer + group * rows * o, inverseDeviation[l]!.pointer + group * o, p + layer.scaleOffset,
                dbeta, dgamma, db, scratch[l]!.pointer, rows, o, 1)
            for c in 0..<o {
                totalGamma[c] += dgamma[c]
                totalB[c] += db[c]
            }
        }
        (g + layer.scaleOffset).update(from: totalGamma, count: o)
        (g + layer.biasOffset).update(from: totalB, count: o)
    }
}
