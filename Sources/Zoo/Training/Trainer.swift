import Foundation

/// Everything that determines a training run besides the model and data.
public struct TrainConfig: Sendable, Equatable {
    public var optimizer: OptimizerConfig
    public var schedule: LRSchedule
    public var epochs: Int
    public var batchSize: Int
    public var seed: UInt64
    public var labelSmoothing: Double
    public var augmentation: Augmentation
    public var normalization: Normalization?

    public init(optimizer: OptimizerConfig, schedule: LRSchedule = .init(), epochs: Int = 1, batchSize: Int = 64, seed: UInt64 = 0,
                labelSmoothing: Double = 0, augmentation: Augmentation = .init(), normalization: Normalization? = nil) {
        self.optimizer = optimizer; self.schedule = schedule; self.epochs = epochs; self.batchSize = batchSize; self.seed = seed
        self.labelSmoothing = labelSmoothing; self.augmentation = augmentation; self.normalization = normalization
    }
}

/// Progress within an epoch (for the terminal line).
public struct BatchProgress: Sendable {
    public var epoch: Int, epochs: Int, batch: Int, batches: Int
    public var loss: Double, accuracy: Double, imagesPerSecond: Double, etaSeconds: Double
}

/// One epoch's figures (one line of metrics.jsonl).
public struct EpochMetrics: Codable, Sendable, Equatable {
    public var epoch: Int
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var testLoss: Double?
    public var testAccuracy: Double?
    public var imagesPerSecond: Double
    public var seconds: Double
    public var learningRates: [String: Double]
    public init(epoch: Int, trainLoss: Double, trainAccuracy: Double, testLoss: Double?, testAccuracy: Double?,
                imagesPerSecond: Double, seconds: Double, learningRates: [String: Double]) {
        self.epoch = epoch; self.trainLoss = trainLoss; self.trainAccuracy = trainAccuracy; self.testLoss = testLoss
        self.testAccuracy = testAccuracy; self.imagesPerSecond = imagesPerSecond; self.seconds = seconds; self.learningRates = learningRates
    }
    enum CodingKeys: String, CodingKey {
        case epoch, trainLoss = "train_loss", trainAccuracy = "train_accuracy", testLoss = "test_loss", testAccuracy = "test_accuracy"
        case imagesPerSecond = "images_per_second", seconds, learningRates = "learning_rates"
    }
}

public struct EvalResult: Sendable {
    public var loss: Double
    public var accuracy: Double
    public var count: Int
    /// confusion[true][predicted]
    public var confusion: [[Int]]
}

public enum TrainingError: Error, CustomStringConvertible {
    case nonFiniteLoss(epoch: Int, batch: Int, value: Float)
    public var description: String {
        switch self {
        case let .nonFiniteLoss(e, b, v):
            return "training diverged: the loss is \(v.isNaN ? "NaN" : v > 0 ? "+infinity" : "-infinity") at epoch \(e), batch \(b); stopping (lower the learning rate)"
        }
    }
}

/// Runs epochs of forward, loss, backward and optimizer steps over a TrainingEngine.
public struct Trainer {
    public var engine: TrainingEngine
    public var optimizer: Optimizer
    public var config: TrainConfig
    /// Completed epochs and optimizer steps (continue from a checkpoint).
    public var epochsDone = 0
    public var step = 0

    /// `lrScales` maps parameter names to a learning-rate multiplier (absent = 1). Frozen parameters get no group.
    public init(model: Model, frozen: Set<String> = [], lrScales: [String: Double] = [:], config: TrainConfig) {
        engine = TrainingEngine(model: model, frozen: frozen)
        self.config = config
        var byScale: [Double: [String]] = [:]
        var order: [Double] = []
        for p in engine.trainableParameters {
            let s = lrScales[p] ?? 1
            if byScale[s] == nil { order.append(s) }
            byScale[s, default: []].append(p)
        }
        optimizer = Optimizer(config: config.optimizer,
                              groups: order.map { ParameterGroup(name: "lr×\($0)", parameters: byScale[$0]!, lrScale: $0) })
    }

    public var model: Model { engine.model }

    static func mix(_ a: UInt64, _ b: Int, _ c: Int) -> UInt64 {
        var r = SeededRandom(seed: a ^ (UInt64(b) &* 0xD6E8_FEB8_6659_FD93) ^ (UInt64(c) &* 0xA076_1D64_78BD_642F))
        return r.next()
    }

    /// The learning rate of each group at the current position.
    public func learningRates(epoch: Int, batch: Int, batchesPerEpoch: Int) -> [String: Double] {
        let base = config.schedule.lr(base: config.optimizer.lr, epoch: epoch, batch: batch, batchesPerEpoch: batchesPerEpoch)
        var out: [String: Double] = [:]
        for g in optimizer.groups { out[g.name] = base * g.lrScale }
        return out
    }

    /// One epoch over `train`; returns (mean loss, accuracy, images/s, seconds).
    public mutating func trainEpoch(_ train: Dataset, progress: ((BatchProgress) -> Void)? = nil) throws -> (Double, Double, Double, Double) {
        let epoch = epochsDone
        let batcher = Batcher(data: train, batchSize: config.batchSize, normalization: config.normalization,
                              augmentation: config.augmentation, seed: config.seed)
        let order = batcher.order(epoch: epoch)
        let nb = batcher.batchesPerEpoch
        var lossSum = 0.0, correct = 0, seen = 0
        let t0 = Date()
        for b in 0..<nb {
            var rng = SeededRandom(seed: Self.mix(config.seed, epoch, b))
            let idx = Array(order[(b * batcher.batchSize)..<min(order.count, (b + 1) * batcher.batchSize)])
            let (x, y) = batcher.batch(idx, augment: !config.augmentation.isIdentity, rng: &rng)
            let r = try engine.trainStep(x, labels: y, labelSmoothing: Float(config.labelSmoothing), rng: &rng)
            guard let grads = r.gradients else { throw TrainingError.nonFiniteLoss(epoch: epoch + 1, batch: b + 1, value: r.loss) }
            let lr = config.schedule.lr(base: config.optimizer.lr, epoch: epoch, batch: b, batchesPerEpoch: nb)
            optimizer.step(tensors: &engine.model.tensors, grads: grads.parameters, lr: lr)
            step += 1
            lossSum += Double(r.loss) * Double(idx.count)
            correct += Loss.correct(logits: r.output, labels: y)
            seen += idx.count
            if let progress {
                let dt = max(Date().timeIntervalSince(t0), 1e-9)
                let ips = Double(seen) / dt
                progress(BatchProgress(epoch: epoch + 1, epochs: config.epochs, batch: b + 1, batches: nb, loss: lossSum / Double(seen),
                                       accuracy: Double(correct) / Double(seen), imagesPerSecond: ips,
                                       etaSeconds: Double(train.count - seen) / ips + Double(config.epochs - epoch - 1) * Double(train.count) / ips))
            }
        }
        epochsDone += 1
        let dt = max(Date().timeIntervalSince(t0), 1e-9)
        return (lossSum / Double(max(seen, 1)), Double(correct) / Double(max(seen, 1)), Double(seen) / dt, dt)
    }

    /// Loss, accuracy and confusion matrix in evaluation mode (running BatchNorm statistics, no dropout).
    public static func evaluate(model: Model, data: Dataset, normalization: Normalization?, batchSize: Int = 256, classes: Int) throws -> EvalResult {
        var engine = TrainingEngine(model: model)
        let batcher = Batcher(data: data, batchSize: batchSize, normalization: normalization)
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        var lossSum = 0.0, correct = 0
        var rng = SeededRandom(seed: 0)
        for b in 0..<batcher.batchesPerEpoch {
            let idx = Array((b * batcher.batchSize)..<min(data.count, (b + 1) * batcher.batchSize))
            let (x, y) = batcher.batch(idx, augment: false, rng: &rng)
            let out = try engine.forward(x, training: false, rng: &rng, keepTape: false).output
            let k = out.count / idx.count
            guard k == classes else { throw ZooError.badInput("the model has \(k) outputs but \(classes) classes were expected") }
            let (loss, _) = Loss.crossEntropy(logits: out, labels: y)
            lossSum += Double(loss) * Double(idx.count)
            for i in 0..<idx.count {
                var best = 0
                for j in 1..<k where out.data[i * k + j] > out.data[i * k + best] { best = j }
                confusion[y[i]][best] += 1
                if best == y[i] { correct += 1 }
            }
        }
        let n = max(data.count, 1)
        return EvalResult(loss: lossSum / Double(n), accuracy: Double(correct) / Double(n), count: data.count, confusion: confusion)
    }

    // MARK: Checkpoint state

    /// The optimizer, schedule, data settings and per-parameter state as a TrainingState for the zoo checkpoint.
    public func trainingState() -> TrainingState {
        let c = config, o = c.optimizer
        var h: [String: Double] = [
            "lr": o.lr, "momentum": o.momentum, "dampening": o.dampening, "nesterov": o.nesterov ? 1 : 0,
            "weight_decay": o.weightDecay, "beta1": o.beta1, "beta2": o.beta2, "eps": o.eps, "alpha": o.alpha,
            "centered": o.centered ? 1 : 0, "batch_size": Double(c.batchSize), "seed": Double(c.seed), "epochs": Double(c.epochs),
            "schedule": Double(ScheduleKind.allCases.firstIndex(of: c.schedule.kind)!), "step_size": Double(c.schedule.stepSize),
            "gamma": c.schedule.gamma, "min_lr": c.schedule.minLR, "warmup_epochs": Double(c.schedule.warmupEpochs),
            "label_smoothing": c.labelSmoothing, "crop_padding": Double(c.augmentation.cropPadding),
            "hflip": c.augmentation.horizontalFlip ? 1 : 0,
        ]
        if let n = c.normalization {
            h["norm_channels"] = Double(n.mean.count)
            for i in 0..<n.mean.count { h["norm_mean_\(i)"] = Double(n.mean[i]); h["norm_std_\(i)"] = Double(n.std[i]) }
        }
        var slots: [String: [String: Tensor]] = [:]
        let shapes = Dictionary(model.graph.parameterSpecs.map { ($0.key, $0.shape) }, uniquingKeysWith: { a, _ in a })
        for (p, bufs) in optimizer.state.buffers { for (slot, v) in bufs { slots[slot, default: [:]][p] = Tensor(shape: shapes[p]!, data: v) } }
        var scales: [String: Double] = [:]
        for g in optimizer.groups where g.lrScale != 1 { for p in g.parameters { scales[p] = g.lrScale } }
        return TrainingState(optimizer: o.kind.rawValue, hyperParameters: h, slots: slots, step: step, epoch: epochsDone,
                             frozen: engine.frozen, learningRateScales: scales)
    }

    /// The configuration a checkpoint was trained with.
    public static func config(from s: TrainingState) throws -> TrainConfig {
        guard let kind = OptimizerKind(rawValue: s.optimizer) else { throw ZooError.unsupported("optimizer '\(s.optimizer)' in the checkpoint") }
        let h = s.hyperParameters
        func v(_ k: String, _ d: Double) -> Double { h[k] ?? d }
        var o = OptimizerConfig(kind: kind, lr: v("lr", 0.01), momentum: v("momentum", 0), dampening: v("dampening", 0),
                                nesterov: v("nesterov", 0) != 0, weightDecay: v("weight_decay", 0), beta1: v("beta1", 0.9),
                                beta2: v("beta2", 0.999), eps: v("eps", 1e-8), alpha: v("alpha", 0.99), centered: v("centered", 0) != 0)
        o.weightDecay = v("weight_decay", o.weightDecay)
        let sk = ScheduleKind.allCases[min(max(Int(v("schedule", 0)), 0), ScheduleKind.allCases.count - 1)]
        let sched = LRSchedule(kind: sk, stepSize: Int(v("step_size", 10)), gamma: v("gamma", 0.1), totalEpochs: Int(v("epochs", 1)),
                               minLR: v("min_lr", 0), warmupEpochs: Int(v("warmup_epochs", 0)))
        var norm: Normalization? = nil
        if let c = h["norm_channels"], c >= 1 {
            norm = Normalization(mean: (0..<Int(c)).map { Float(v("norm_mean_\($0)", 0)) }, std: (0..<Int(c)).map { Float(v("norm_std_\($0)", 1)) })
        }
        return TrainConfig(optimizer: o, schedule: sched, epochs: Int(v("epochs", 1)), batchSize: Int(v("batch_size", 64)),
                           seed: UInt64(v("seed", 0)), labelSmoothing: v("label_smoothing", 0),
                           augmentation: Augmentation(cropPadding: Int(v("crop_padding", 0)), horizontalFlip: v("hflip", 0) != 0),
                           normalization: norm)
    }

    /// A trainer that continues exactly where the checkpoint's state left off.
    public static func resuming(model: Model, state s: TrainingState, config: TrainConfig) -> Trainer {
        var t = Trainer(model: model, frozen: s.frozen, lrScales: s.learningRateScales, config: config)
        for (slot, entries) in s.slots { for (p, tensor) in entries { t.optimizer.state.buffers[p, default: [:]][slot] = tensor.data } }
        for p in t.engine.trainableParameters { t.optimizer.state.steps[p] = s.step }
        t.step = s.step
        t.epochsDone = s.epoch
        return t
    }
}
