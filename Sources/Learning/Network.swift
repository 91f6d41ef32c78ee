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
    public var parameterCount: Int { outputs * inputs + outputs }

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
        Kernels.addBiasActivate(y, bias: p + biasOffset, rows: batch, columns: outputs, activation: activation)
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
    public var parameterCount: Int { layers.last.map { $0.biasOffset + $0.outputs } ?? 0 }

    /// - Parameters:
    ///   - inputs: width of the input.
    ///   - widths: output width of each layer in order.
    ///   - activations: one per layer.
    public init(inputs: Int, widths: [Int], activations: [Activation]) {
        precondition(widths.count == activations.count && !widths.isEmpty, "one activation per layer")
        precondition(inputs > 0 && widths.allSatisfy { $0 > 0 }, "layer widths must be positive")
        var layers: [DenseLayer] = []
        var offset = 0
        var fanIn = inputs
        for (width, activation) in zip(widths, activations) {
            let layer = DenseLayer(inputs: fanIn, outputs: width, activation: activation, weightOffset: offset)
            layers.append(layer)
            offset += layer.parameterCount
            fanIn = width
        }
        self.layers = layers
    }

    /// PyTorch's `nn.Linear` default initialisation: weights and biases `U(-1/√fan_in, 1/√fan_in)`.
    public func initialise(_ parameters: UnsafeMutablePointer<Float>, random: inout RandomSource) {
        for layer in layers {
            let bound = 1 / Float(layer.inputs).squareRoot()
            for i in 0..<layer.parameterCount {
                parameters[layer.weightOffset + i] = random.uniform(-bound, bound)
            }
        }
    }
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

    init(layout: NetworkLayout, capacity: Int) {
        self.layout = layout
        self.capacity = capacity
        outputs = layout.layers.map { FloatBuffer(count: capacity * $0.outputs) }
        deltas = layout.layers.map { FloatBuffer(count: capacity * $0.outputs) }
    }

    /// The last layer's output.
    var output: UnsafeMutablePointer<Float> { outputs[outputs.count - 1].pointer }
    /// Where the caller writes dL/d(final output) before `backward`.
    var outputDelta: UnsafeMutablePointer<Float> { deltas[deltas.count - 1].pointer }

    /// Runs every layer; the result is in `output` (and each layer's in `outputs`).
    /// Forward pass through the first `layers` layers (all by default).
    func forward(parameters: UnsafePointer<Float>, input: UnsafePointer<Float>, batch: Int, layers: Int? = nil) {
        precondition(batch <= capacity, "batch exceeds the workspace capacity")
        var x = input
        for (l, layer) in layout.layers.prefix(layers ?? layout.layers.count).enumerated() {
            let y = outputs[l].pointer
            layer.forward(parameters: parameters, x: x, y: y, batch: batch)
            x = UnsafePointer(y)
        }
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
            layout.layers[l].backward(
                parameters: parameters, gradients: gradients, x: x, y: outputs[l].pointer,
                dy: deltas[l].pointer, dx: dx, batch: batch)
        }
    }
}
