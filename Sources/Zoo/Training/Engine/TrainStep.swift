import Foundation

/// One training step (forward in training mode, cross-entropy loss, backward), on the whole batch or split into
/// batch shards that run concurrently.
///
/// Batch shards: each worker runs forward and backward of its own images with the layers unsplit, and the parameter
/// gradients are summed. Split layers hand half of each activation and gradient to the other core at every layer; this does
/// not, which matters when the host places the two vCPUs on cores without a shared L3 (bench/README, session 10). The loss
/// and its gradient are computed once on the joined logits, so the step computes the same loss, and the same gradients up to
/// the order of summation, as the unsharded one. Graphs whose training forward mixes images (BatchNorm with batch statistics)
/// or draws random numbers (active Dropout) are not sharded.
public struct TrainStepResult {
    public var loss: Float
    public var output: Tensor
    /// Nil when the loss is not finite (no backward ran).
    public var gradients: Gradients?
}

extension TrainingEngine {
    /// `ZOO_TRAIN_SHARD=0` turns batch shards off (A/B measurements).
    nonisolated(unsafe) static var batchSharding = ProcessInfo.processInfo.environment["ZOO_TRAIN_SHARD"] != "0"
    /// Each shard reads every weight and writes a full gradient: sharding needs this many multiply-adds per shard for each
    /// weight (LeNet b256: 880).
    static let shardMACsPerWeight = 64

    /// Shards for a training step on `x` (nil: run it whole).
    func trainShards(_ x: Tensor) -> Int? {
        let n = SharedForward.threads
        let g = model.graph
        guard Self.batchSharding, n >= 2, !Self.profiling, !inputRequiresGrad, x.shape.count == g.inputShape.count + 1,
              x.shape[0] >= n, x.shape[0] % n == 0 else { return nil }
        for node in g.nodes {
            switch node.op {
            case .batchNorm2d: return nil
            case let .dropout(p) where p > 0: return nil
            default: continue
            }
        }
        guard let layers = try? g.inferLayers(batch: x.shape[0] / n, inputShape: g.inputShape) else { return nil }
        let macs = layers.reduce(0) { $0 + $1.multAdds }
        let weights = g.parameterSpecs.reduce(0) { $0 + $1.shape.reduce(1, *) }
        return weights * Self.shardMACsPerWeight <= macs ? n : nil
    }

    /// Forward in training mode, softmax cross-entropy against `labels`, and backward when the loss is finite.
    public mutating func trainStep(_ x: Tensor, labels: [Int], labelSmoothing: Float = 0, rng: inout SeededRandom) throws -> TrainStepResult {
        guard let n = trainShards(x) else {
            let tape = try forward(x, training: true, rng: &rng)
            let (loss, dl) = Loss.crossEntropy(logits: tape.output, labels: labels, labelSmoothing: labelSmoothing)
            guard loss.isFinite else { return TrainStepResult(loss: loss, output: tape.output, gradients: nil) }
            return TrainStepResult(loss: loss, output: tape.output, gradients: try backward(tape, gradOutput: dl))
        }
        let per = x.shape[0] / n, sample = x.count / x.shape[0]
        var engines = [TrainingEngine](repeating: self, count: n)
        var tapes = [Result<Tape, Error>?](repeating: nil, count: n)
        // No BatchNorm in training mode and no active Dropout (`trainShards`): forward leaves the model unchanged and draws
        // no random numbers, so each shard may run on its own copy of the engine and rng.
        let seed = rng
        engines.withUnsafeMutableBufferPointer { ep in
            tapes.withUnsafeMutableBufferPointer { tp in
                let e = UnsafeSendableBox(ep.baseAddress!), t = UnsafeSendableBox(tp.baseAddress!)
                Fast.parallelTasks(n, threads: n) { s in
                    let part = Tensor(shape: [per] + Array(x.shape.dropFirst()), data: Array(x.data[(s * per * sample)..<((s + 1) * per * sample)]))
                    var r = seed
                    t.value[s] = Result { try e.value[s].forward(part, training: true, rng: &r) }
                }
            }
        }
        let shardTapes = try tapes.map { try $0!.get() }
        let k = shardTapes[0].output.count / per
        var logits: [Float] = []
        logits.reserveCapacity(x.shape[0] * k)
        for t in shardTapes { logits.append(contentsOf: t.output.data) }
        let output = Tensor(shape: [x.shape[0]] + Array(shardTapes[0].output.shape.dropFirst()), data: logits)
        let (loss, dl) = Loss.crossEntropy(logits: output, labels: labels, labelSmoothing: labelSmoothing)
        guard loss.isFinite else { return TrainStepResult(loss: loss, output: output, gradients: nil) }
        var grads = [Result<Gradients, Error>?](repeating: nil, count: n)
        grads.withUnsafeMutableBufferPointer { gp in
            let gs = UnsafeSendableBox(gp.baseAddress!), es = UnsafeSendableBox(engines), ts = UnsafeSendableBox(shardTapes)
            Fast.parallelTasks(n, threads: n) { s in
                let part = Tensor(shape: [per] + Array(output.shape.dropFirst()), data: Array(dl.data[(s * per * k)..<((s + 1) * per * k)]))
                gs.value[s] = Result { try es.value[s].backward(ts.value[s], gradOutput: part) }
            }
        }
        var total = try grads[0]!.get().parameters
        for s in 1..<n {
            for (key, d) in try grads[s]!.get().parameters {
                if total[key] != nil { BVec.addInPlace(&total[key]!, d, threads: 1) } else { total[key] = d }
            }
        }
        return TrainStepResult(loss: loss, output: output, gradients: Gradients(parameters: total, input: nil))
    }
}
