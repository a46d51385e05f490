/// Everything needed to resume training, stored beside the weights in a zoo checkpoint.
/// The optimizer's per-parameter state is kept as named slots of tensors keyed by parameter name,
/// e.g. slot "momentum_buffer" (SGD) or "exp_avg" / "exp_avg_sq" (Adam, AdamW), PyTorch's names.
public struct TrainingState: Sendable, Equatable {
    /// Optimizer name in lower case: "sgd", "adam", "adamw", ...
    public var optimizer: String
    /// Hyper-parameters by name: "lr", "momentum", "weight_decay", "beta1", "beta2", "eps", "nesterov" (0/1), ...
    public var hyperParameters: [String: Double]
    /// Per-parameter optimizer state: slot name → parameter name → tensor (same shape as the parameter).
    public var slots: [String: [String: Tensor]]
    /// Optimizer steps taken so far.
    public var step: Int
    /// Completed epochs.
    public var epoch: Int
    /// Parameters not updated by the optimizer.
    public var frozen: Set<String>
    /// Per-parameter multipliers of the learning rate (absent means 1).
    public var learningRateScales: [String: Double]

    public init(optimizer: String, hyperParameters: [String: Double] = [:], slots: [String: [String: Tensor]] = [:],
                step: Int = 0, epoch: Int = 0, frozen: Set<String> = [], learningRateScales: [String: Double] = [:]) {
        self.optimizer = optimizer; self.hyperParameters = hyperParameters; self.slots = slots
        self.step = step; self.epoch = epoch; self.frozen = frozen; self.learningRateScales = learningRateScales
    }
}
