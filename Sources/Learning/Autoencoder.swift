import CKernels

/// Settings of an autoencoder; defaults are Eddy's (`D→64→16→64→D`, Adam at 1e-3, batch 64).
public struct AutoencoderConfiguration: Sendable, Equatable {
    /// Features per sample, `D`.
    public var inputDimension: Int
    /// Widths of the hidden layers; every hidden layer is ReLU, the output layer linear.
    public var hiddenWidths: [Int] = [64, 16, 64]
    /// Largest training batch (the workspace is sized for it).
    public var batchSize: Int = 64
    public var optimiser = AdamConfiguration()
    /// Standardise inputs with running per-feature statistics before the network sees them.
    public var normalise = true
    /// See `Normaliser.horizon`.
    public var normaliserHorizon = 10_000
    /// Seeds the weight initialisation.
    public var seed: UInt64 = 0

    public init(inputDimension: Int) { self.inputDimension = inputDimension }
}

/// An MLP autoencoder trained online by MSE; scores samples by reconstruction error.
///
/// All parameters live in one flat buffer (gradients and Adam moments share its layout). A training
/// step allocates nothing. Not thread-safe: one owner at a time.
public final class Autoencoder {
    public let configuration: AutoencoderConfiguration
    public let layout: NetworkLayout
    public let normaliser: Normaliser
    /// The flat parameter buffer (layout order). The trainer hands copies of it to scorers.
    public let parameters: FloatBuffer
    let gradients: FloatBuffer
    let optimiser: Adam
    var random: RandomSource
    /// Training workspace, and the normalised copy of the batch it reads.
    let train: NetworkWorkspace
    let trainInput: FloatBuffer
    /// Scoring workspace: scoring never disturbs what a training step left behind.
    let scoring: NetworkWorkspace
    let scoringInput: FloatBuffer
    /// Rows scored per pass; larger requests are chunked.
    public static let scoringChunk = 256

    public init(configuration: AutoencoderConfiguration) {
        let c = configuration
        precondition(c.inputDimension > 0 && c.batchSize > 0, "autoencoder needs a positive dimension and batch")
        self.configuration = c
        let widths = c.hiddenWidths + [c.inputDimension]
        layout = NetworkLayout(
            inputs: c.inputDimension, widths: widths,
            activations: Array(repeating: .relu, count: c.hiddenWidths.count) + [.identity])
        normaliser = Normaliser(dimension: c.inputDimension, horizon: c.normaliserHorizon)
        parameters = FloatBuffer(count: layout.parameterCount)
        gradients = FloatBuffer(count: layout.parameterCount)
        optimiser = Adam(parameterCount: layout.parameterCount, configuration: c.optimiser)
        random = RandomSource(seed: c.seed)
        layout.initialise(parameters.pointer, random: &random)
        train = NetworkWorkspace(layout: layout, capacity: c.batchSize)
        trainInput = FloatBuffer(count: c.batchSize * c.inputDimension)
        scoring = NetworkWorkspace(layout: layout, capacity: Self.scoringChunk)
        scoringInput = FloatBuffer(count: Self.scoringChunk * c.inputDimension)
    }

    /// Optimiser steps taken.
    public var step: Int { optimiser.step }
    /// Number of trainable parameters.
    public var parameterCount: Int { layout.parameterCount }

    /// Whether every weight is finite.
    /// Whether every weight is finite (what the scorer is handed).
    public var weightsFinite: Bool { Kernels.firstNonFinite(parameters.pointer, count: parameterCount) == nil }
    /// Whether every weight and Adam's two moments are finite (a moment gone infinite stops its
    /// weight learning for good, the weight itself still finite).
    public var isFinite: Bool {
        weightsFinite && [optimiser.m, optimiser.v].allSatisfy { Kernels.firstNonFinite($0.pointer, count: $0.count) == nil }
    }

    /// Feeds arriving samples to the running normaliser (call once per sample, on arrival).
    public func observe(_ x: UnsafePointer<Float>, rows: Int) {
        if configuration.normalise { normaliser.observe(x, rows: rows) }
    }

    /// One training step on `rows` samples: forward, MSE, backward, Adam. Returns the batch loss,
    /// `mean((y - x)²)` over batch and features (in normalised units when normalising).
    @discardableResult
    public func trainStep(_ x: UnsafePointer<Float>, rows: Int) -> Float {
        let loss = lossAndGradient(x, rows: rows)
        optimiser.update(parameters: parameters.pointer, gradients: gradients.pointer, count: parameterCount)
        return loss
    }

    /// Forward and backward without the update: the loss, with `gradients` holding dL/dθ.
    func lossAndGradient(_ x: UnsafePointer<Float>, rows: Int) -> Float {
        precondition(rows > 0 && rows <= configuration.batchSize, "batch of \(rows) rows is out of range")
        let d = configuration.inputDimension
        let input = prepare(x, rows: rows, into: trainInput)
        train.forward(parameters: parameters.pointer, input: input, batch: rows)
        // MSE forward and backward in one pass: dL/dy = 2 (y - x) / (rows·D).
        let n = rows * d
        let sum = eddy_mse_backward(train.output, input, train.outputDelta, n, 2 / Float(n))
        train.backward(parameters: parameters.pointer, gradients: gradients.pointer, input: input, batch: rows)
        return sum / Float(n)
    }

    /// Scores `rows` samples by reconstruction error, without learning from them.
    ///
    /// - Parameters:
    ///   - errors: receives one value per row, `mean_d (y_d - x_d)²` (normalised units).
    ///   - featureErrors: if not nil, receives `(y_d - x_d)²` per row and feature, `(rows, D)`:
    ///     which sensors (or time steps) the error comes from.
    public func score(
        _ x: UnsafePointer<Float>, rows: Int, errors: UnsafeMutablePointer<Float>,
        featureErrors: UnsafeMutablePointer<Float>? = nil
    ) {
        let d = configuration.inputDimension
        var start = 0
        while start < rows {
            let n = min(Self.scoringChunk, rows - start)
            let input = prepare(x + start * d, rows: n, into: scoringInput)
            scoring.forward(parameters: parameters.pointer, input: input, batch: n)
            eddy_row_errors(scoring.output, input, n, d, errors + start, featureErrors.map { $0 + start * d })
            start += n
        }
    }

    /// Scores an array of samples (row-major); convenience for tests and tools.
    public func score(_ samples: [Float]) -> [Float] {
        let rows = samples.count / configuration.inputDimension
        var errors = [Float](repeating: 0, count: rows)
        samples.withUnsafeBufferPointer { x in
            errors.withUnsafeMutableBufferPointer { e in score(x.baseAddress!, rows: rows, errors: e.baseAddress!) }
        }
        return errors
    }

    /// The input the network sees: normalised into `buffer`, or `x` itself.
    @inline(__always)
    private func prepare(_ x: UnsafePointer<Float>, rows: Int, into buffer: FloatBuffer) -> UnsafePointer<Float> {
        guard configuration.normalise else { return x }
        normaliser.apply(x, rows: rows, into: buffer.pointer)
        return UnsafePointer(buffer.pointer)
    }

    /// The parameters as an array, in layout order (each layer's `W` row-major, then `b`).
    public var parameterValues: [Float] { parameters.array }

    // MARK: State

    static let kind = "eddy.autoencoder"
    static let formatVersion: UInt32 = 1

    /// The full training state: configuration, parameters, Adam moments and step, normaliser
    /// statistics and random state, sealed with a CRC-32.
    public func serialized() -> [UInt8] {
        var w = StateWriter()
        w.write(Self.kind); w.write(Self.formatVersion)
        let c = configuration
        w.write(UInt32(c.inputDimension)); w.write(UInt32(c.batchSize))
        w.write(UInt32(c.hiddenWidths.count)); for h in c.hiddenWidths { w.write(UInt32(h)) }
        w.write(c.optimiser)
        w.write(c.normalise); w.write(UInt64(c.normaliserHorizon)); w.write(c.seed)
        w.write(random)
        w.write(UInt64(optimiser.step))
        w.write(parameters); w.write(optimiser.m); w.write(optimiser.v)
        normaliser.encode(&w)
        w.seal()
        return w.bytes
    }

    /// This model's state (weights, Adam's moments and step, random state, normaliser statistics)
    /// under `wanted`, which may differ from its configuration only in what governs the steps to
    /// come: the optimiser's settings and the normaliser's horizon. The seed stays this model's (its
    /// random state goes on). Another shape is a caller's error.
    public func resumed(under wanted: AutoencoderConfiguration) -> Autoencoder {
        let c = configuration
        precondition(
            wanted.inputDimension == c.inputDimension && wanted.hiddenWidths == c.hiddenWidths
                && wanted.batchSize == c.batchSize && wanted.normalise == c.normalise,
            "an autoencoder resumes only under settings of its own shape")
        var settings = wanted
        settings.seed = c.seed
        let model = Autoencoder(configuration: settings)
        model.parameters.copy(from: parameters)
        model.optimiser.m.copy(from: optimiser.m)
        model.optimiser.v.copy(from: optimiser.v)
        model.optimiser.step = optimiser.step
        model.random = random
        model.normaliser.copy(from: normaliser)
        return model
    }

    /// Bytes the model allocates beyond its weights, gradients and Adam's moments (which a decoder
    /// holds against the bytes it reads): the activations and their gradients for a batch and for a
    /// scoring chunk, and the batch's input.
    public static func workingBytes(_ c: AutoencoderConfiguration) -> Int {
        let units = c.hiddenWidths.reduce(c.inputDimension, +)
        return 4 * ((c.batchSize + scoringChunk) * (2 * units + c.inputDimension))
    }

    /// Restores a model from `serialized()`; it takes exactly the step the original would. A model
    /// whose batch would take more than `maximumBytes` of working memory (`workingBytes`) is refused
    /// before anything is allocated: a checkpoint's sizes are not trusted.
    public convenience init(serialized bytes: [UInt8], maximumBytes: Int = .max) throws {
        var r = try StateReader(sealed: bytes)
        guard try r.read(String.self) == Self.kind else { throw StateError.wrongKind(expected: Self.kind) }
        let version = try r.read(UInt32.self)
        guard version == Self.formatVersion else { throw StateError.unsupportedVersion(version) }
        var c = AutoencoderConfiguration(inputDimension: Int(try r.read(UInt32.self)))
        c.batchSize = Int(try r.read(UInt32.self))
        let depth = Int(try r.read(UInt32.self))
        guard depth <= 64 else { throw StateError.invalid("layer count") }
        c.hiddenWidths = try (0..<depth).map { _ in Int(try r.read(UInt32.self)) }
        guard c.inputDimension > 0, c.batchSize > 0, c.hiddenWidths.allSatisfy({ $0 > 0 }) else {
            throw StateError.invalid("shape")
        }
        // Sizes read from the input are held against it before the model is allocated: its
        // weights and Adam's two moments follow (4 bytes each).
        let widths = [c.inputDimension] + c.hiddenWidths + [c.inputDimension]
        guard widths.allSatisfy({ $0 <= 1 << 24 }), c.batchSize <= 1 << 16 else { throw StateError.invalid("shape") }
        try r.requireRoom(zip(widths, widths.dropFirst()).reduce(0) { $0 + $1.0 * $1.1 + $1.1 }, each: 12)
        c.optimiser = try r.read(AdamConfiguration.self)
        c.normalise = try r.read(Bool.self)
        c.normaliserHorizon = try r.readInt()
        guard c.normaliserHorizon > 0 else { throw StateError.invalid("normaliser horizon") }
        c.seed = try r.read(UInt64.self)
        guard Self.workingBytes(c) <= maximumBytes else {
            throw StateError.invalid("size: its batch would take \(Self.workingBytes(c)) bytes, more than \(maximumBytes)")
        }
        self.init(configuration: c)
        random = try r.read(RandomSource.self)
        optimiser.step = try r.readInt()
        try r.read(into: parameters); try r.read(into: optimiser.m); try r.read(into: optimiser.v)
        normaliser.copy(from: try Normaliser.decode(&r, dimension: c.inputDimension))
    }
}
