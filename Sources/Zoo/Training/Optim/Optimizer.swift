import Foundation

public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
    case sgd, adam, adamw, rmsprop
}

/// Hyper-parameters (PyTorch's names and defaults).
public struct OptimizerConfig: Codable, Sendable, Equatable {
    public var kind: OptimizerKind
    public var lr: Double
    public var momentum: Double = 0
    public var dampening: Double = 0
    public var nesterov: Bool = false
    public var weightDecay: Double = 0
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var eps: Double = 1e-8
    /// RMSprop smoothing constant.
    public var alpha: Double = 0.99
    public var centered: Bool = false

    public init(kind: OptimizerKind, lr: Double, momentum: Double = 0, dampening: Double = 0, nesterov: Bool = false,
                weightDecay: Double? = nil, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double? = nil, alpha: Double = 0.99, centered: Bool = false) {
        self.kind = kind; self.lr = lr; self.momentum = momentum; self.dampening = dampening; self.nesterov = nesterov
        self.weightDecay = weightDecay ?? (kind == .adamw ? 0.01 : 0)
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps ?? (kind == .rmsprop ? 1e-8 : 1e-8); self.alpha = alpha; self.centered = centered
    }
}

/// A set of parameters sharing a learning-rate scale and weight decay.
public struct ParameterGroup: Codable, Sendable, Equatable {
    public var name: String
    public var parameters: [String]
    /// Multiplies the scheduled learning rate.
    public var lrScale: Double
    /// Overrides the optimizer's weight decay when set.
    public var weightDecay: Double?
    public init(name: String, parameters: [String], lrScale: Double = 1, weightDecay: Double? = nil) {
        self.name = name; self.parameters = parameters; self.lrScale = lrScale; self.weightDecay = weightDecay
    }
}

/// Per-parameter optimizer state, keyed by parameter name then buffer name
/// ("momentum_buffer", "exp_avg", "exp_avg_sq", "square_avg", "grad_avg"), plus PyTorch's per-parameter step.
public struct OptimizerState: Codable, Sendable, Equatable {
    public var buffers: [String: [String: [Float]]] = [:]
    public var steps: [String: Int] = [:]
    public init() {}
}

/// SGD / Adam / AdamW / RMSprop with PyTorch's update formulas (float32, same operation order).
public struct Optimizer: Sendable {
    public var config: OptimizerConfig
    public var groups: [ParameterGroup]
    public var state = OptimizerState()

    public init(config: OptimizerConfig, groups: [ParameterGroup]) {
        self.config = config; self.groups = groups
    }

    /// Applies one step to `tensors` with learning rate `lr` (already scheduled; each group's scale applies on top).
    public mutating func step(tensors: inout [String: Tensor], grads: [String: [Float]], lr: Double) {
        for group in groups {
            let glr = lr * group.lrScale
            let wd = group.weightDecay ?? config.weightDecay
            for name in group.parameters {
                // Taken out of the dictionary while updated, so the arrays are not copied on write.
                guard let g = grads[name], var p = tensors.removeValue(forKey: name) else { continue }
                update(name: name, p: &p.data, grad: g, lr: glr, wd: wd)
                tensors[name] = p
            }
        }
    }

    mutating func update(name: String, p: inout [Float], grad: [Float], lr lrD: Double, wd wdD: Double) {
        // Hyper-parameters are doubles (Python floats); PyTorch rounds each scalar to float32 where it meets a tensor.
        let c = config
        let lr = Float(lrD), wd = Float(wdD), momentum = Float(c.momentum), eps = Float(c.eps)
        let beta2 = Float(c.beta2), alpha = Float(c.alpha)
        let n = p.count
        var g = grad
        var buf = state.buffers.removeValue(forKey: name) ?? [:]
        let step = (state.steps[name] ?? 0) + 1
        state.steps[name] = step
        switch c.kind {
        case .sgd:
            if wd != 0 { for i in 0..<n { g[i] = g[i] + wd * p[i] } }
            if c.momentum != 0 {
                var b: [Float]
                if let old = buf.removeValue(forKey: "momentum_buffer") {
                    b = old
                    let damp = Float(1 - c.dampening)
                    for i in 0..<n { b[i] = b[i] * momentum + damp * g[i] }
                } else { b = g }
                buf["momentum_buffer"] = b
                if c.nesterov { for i in 0..<n { g[i] = g[i] + momentum * b[i] } } else { g = b }
            }
            for i in 0..<n { p[i] = p[i] + (-lr) * g[i] }
        case .adam, .adamw:
            if c.kind == .adamw { let k = Float(1 - lrD * wdD); for i in 0..<n { p[i] = p[i] * k } }
            else if wd != 0 { for i in 0..<n { g[i] = g[i] + wd * p[i] } }
            var m = buf.removeValue(forKey: "exp_avg") ?? [Float](repeating: 0, count: n)
            var v = buf.removeValue(forKey: "exp_avg_sq") ?? [Float](repeating: 0, count: n)
            // Scalars are computed in double and rounded once, as PyTorch does with Python floats.
            let w1 = Float(1 - c.beta1), w2 = Float(1 - c.beta2)
            for i in 0..<n {
                m[i] = m[i] + w1 * (g[i] - m[i])
                v[i] = v[i] * beta2 + w2 * g[i] * g[i]
            }
            let bc1 = 1 - pow(c.beta1, Double(step))
            let bc2 = 1 - pow(c.beta2, Double(step))
            let stepSize = Float(lrD / bc1)
            let bc2Sqrt = Float(bc2.squareRoot())
            for i in 0..<n {
                let denom = v[i].squareRoot() / bc2Sqrt + eps
                p[i] = p[i] + (-stepSize) * (m[i] / denom)
            }
            buf["exp_avg"] = m; buf["exp_avg_sq"] = v
        case .rmsprop:
            if wd != 0 { for i in 0..<n { g[i] = g[i] + wd * p[i] } }
            var sq = buf.removeValue(forKey: "square_avg") ?? [Float](repeating: 0, count: n)
            let wa = Float(1 - c.alpha)
            for i in 0..<n { sq[i] = sq[i] * alpha + wa * g[i] * g[i] }
            var avg = [Float](repeating: 0, count: n)
            if c.centered {
                var ga = buf.removeValue(forKey: "grad_avg") ?? [Float](repeating: 0, count: n)
                for i in 0..<n { ga[i] = ga[i] + wa * (g[i] - ga[i]) }
                for i in 0..<n { avg[i] = (sq[i] - ga[i] * ga[i]).squareRoot() + eps }
                buf["grad_avg"] = ga
            } else {
                for i in 0..<n { avg[i] = sq[i].squareRoot() + eps }
            }
            buf["square_avg"] = sq
            if c.momentum > 0 {
                var b = buf.removeValue(forKey: "momentum_buffer") ?? [Float](repeating: 0, count: n)
                for i in 0..<n { b[i] = b[i] * momentum + g[i] / avg[i] }
                buf["momentum_buffer"] = b
                for i in 0..<n { p[i] = p[i] + (-lr) * b[i] }
            } else {
                for i in 0..<n { p[i] = p[i] + (-lr) * (g[i] / avg[i]) }
            }
        }
        state.buffers[name] = buf
    }
}

public enum ScheduleKind: String, Codable, Sendable, CaseIterable {
    case constant, step, cosine
}

/// Learning-rate schedule by epoch (PyTorch StepLR / CosineAnnealingLR closed forms), with an optional
/// linear warm-up over the first `warmupEpochs` epochs, counted in batches.
public struct LRSchedule: Codable, Sendable, Equatable {
    public var kind: ScheduleKind = .constant
    public var stepSize: Int = 10
    public var gamma: Double = 0.1
    public var totalEpochs: Int = 1
    public var minLR: Double = 0
    public var warmupEpochs: Int = 0
    public init(kind: ScheduleKind = .constant, stepSize: Int = 10, gamma: Double = 0.1, totalEpochs: Int = 1, minLR: Double = 0, warmupEpochs: Int = 0) {
        self.kind = kind; self.stepSize = stepSize; self.gamma = gamma; self.totalEpochs = totalEpochs; self.minLR = minLR; self.warmupEpochs = warmupEpochs
    }

    /// Learning rate for batch `batch` of epoch `epoch` (both from 0).
    public func lr(base: Double, epoch: Int, batch: Int, batchesPerEpoch: Int) -> Double {
        var lr: Double
        switch kind {
        case .constant: lr = base
        case .step: lr = base * pow(gamma, Double(epoch / max(stepSize, 1)))
        case .cosine:
            let t = Double(min(epoch, totalEpochs)), T = Double(max(totalEpochs, 1))
            lr = minLR + (base - minLR) * (1 + cos(Double.pi * t / T)) / 2
        }
        if warmupEpochs > 0 {
            let it = epoch * batchesPerEpoch + batch, total = warmupEpochs * max(batchesPerEpoch, 1)
            if it < total { lr *= Double(it + 1) / Double(total) }
        }
        return lr
    }
}
