#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKernels
import LinearAlgebra

/// Settings of the Adam optimiser; the defaults are PyTorch's.
public struct AdamConfiguration: Sendable, Codable, Equatable {
    public var learningRate: Float = 1e-3
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    /// L2 penalty added to the gradient (`g += weightDecay · θ`), as `torch.optim.Adam` does.
    public var weightDecay: Float = 0
    /// If set, gradients are rescaled so that their global L2 norm is at most this
    /// (`torch.nn.utils.clip_grad_norm_`). Keeps one odd batch from throwing a streaming model off.
    public var gradientClipNorm: Float? = nil

    public init(
        learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
        weightDecay: Float = 0, gradientClipNorm: Float? = nil
    ) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.gradientClipNorm = gradientClipNorm
    }
}

/// Bias-corrected Adam over one flat parameter buffer: the whole update is one fused loop.
public final class Adam {
    public let configuration: AdamConfiguration
    /// First and second moments, same layout as the parameters.
    let m: FloatBuffer
    let v: FloatBuffer
    /// Number of updates taken.
    public internal(set) var step: Int = 0

    public init(parameterCount: Int, configuration: AdamConfiguration) {
        self.configuration = configuration
        m = FloatBuffer(count: parameterCount)
        v = FloatBuffer(count: parameterCount)
    }

    /// Clips `gradients` to the configured global norm, if any, and returns the norm before clipping.
    @discardableResult
    public func clip(_ gradients: UnsafeMutablePointer<Float>, count: Int) -> Float {
        let norm = BLAS.norm(count: count, x: gradients)
        if let maxNorm = configuration.gradientClipNorm, norm > maxNorm {
            BLAS.scale(count: count, alpha: maxNorm / (norm + 1e-6), x: gradients)
        }
        return norm
    }

    /// One update: `θ -= lr/(1-β1ᵗ) · m / (√v/√(1-β2ᵗ) + ε)`, with PyTorch's placement of ε.
    public func update(parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>, count: Int) {
        precondition(count == m.count, "parameter count mismatch")
        if configuration.gradientClipNorm != nil { clip(UnsafeMutablePointer(mutating: g), count: count) }
        step += 1
        let c = configuration
        let b1 = c.beta1, b2 = c.beta2, wd = c.weightDecay, eps = c.epsilon
        let bc1 = 1 - power(b1, step), bc2 = 1 - power(b2, step)
        let stepSize = c.learningRate / bc1
        let invSqrtBc2 = 1 / bc2.squareRoot()
        eddy_adam(p, g, m.pointer, v.pointer, count, b1, b2, stepSize, invSqrtBc2, eps, wd)
    }

    private func power(_ base: Float, _ exponent: Int) -> Float {
        Float(pow(Double(base), Double(exponent)))
    }
}

extension StateWriter {
    mutating func write(_ c: AdamConfiguration) {
        write(c.learningRate); write(c.beta1); write(c.beta2); write(c.epsilon); write(c.weightDecay)
        write(c.gradientClipNorm != nil); write(c.gradientClipNorm ?? 0)
    }
}

extension StateReader {
    mutating func read(_: AdamConfiguration.Type) throws -> AdamConfiguration {
        var c = AdamConfiguration()
        c.learningRate = try read(Float.self); c.beta1 = try read(Float.self); c.beta2 = try read(Float.self)
        c.epsilon = try read(Float.self); c.weightDecay = try read(Float.self)
        let clips = try read(Bool.self)
        let clip = try read(Float.self)
        c.gradientClipNorm = clips ? clip : nil
        return c
    }
}
