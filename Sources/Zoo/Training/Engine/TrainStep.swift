import Foundation
import Synchronization

/// One training step (forward in training mode, cross-entropy loss, backward), on the whole batch or split into
/// batch shards that run concurrently.
///
/// Batch shards: each worker runs forward and backward of its own images with the layers unsplit, and the parameter
/// gradients are summed. Split layers hand half of each activation and gradient to the other core at every layer; this does
/// not, which matters when the host places the two vCPUs on cores without a shared L3 (bench/README, session 10). BatchNorm
/// with batch statistics all-reduces its per-channel sums between the shards (forward and backward), and the loss and its
/// gradient are computed once on the joined logits, so the step computes the same loss, running statistics and gradients as
/// the unsharded one up to the order of summation. Graphs with active Dropout (random masks) are not sharded.
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
    nonisolated(unsafe) static var shardMACsPerWeight = 64

    /// Shards for a training step on `x` (nil: run it whole).
    func trainShards(_ x: Tensor) -> Int? {
        let n = SharedForward.threads
        let g = model.graph
        guard Self.batchSharding, n >= 2, !Self.profiling, !inputRequiresGrad, x.shape.count == g.inputShape.count + 1,
              x.shape[0] >= n, x.shape[0] % n == 0 else { return nil }
        // Shards must run at the same time (they wait for each other in BatchNorm, spinning), which only the pool
        // guarantees, each on a processor of its own.
        guard !Fast.legacyThreading, WorkerPool.shared.workers >= n - 1, ProcessInfo.processInfo.activeProcessorCount >= n else { return nil }
        for node in g.nodes { if case let .dropout(p) = node.op, p > 0 { return nil } }
        guard let layers = try? g.inferLayers(batch: x.shape[0] / n, inputShape: g.inputShape) else { return nil }
        let macs = layers.reduce(0) { $0 + $1.multAdds }
        let weights = g.parameterSpecs.reduce(0) { $0 + $1.shape.reduce(1, *) }
        return weights * Self.shardMACsPerWeight <= macs ? n : nil
    }

    private mutating func wholeStep(_ x: Tensor, labels: [Int], labelSmoothing: Float, rng: inout SeededRandom) throws -> TrainStepResult {
        let tape = try forward(x, training: true, rng: &rng)
        let (loss, dl) = Loss.crossEntropy(logits: tape.output, labels: labels, labelSmoothing: labelSmoothing)
        guard loss.isFinite else { return TrainStepResult(loss: loss, output: tape.output, gradients: nil) }
        return TrainStepResult(loss: loss, output: tape.output, gradients: try backward(tape, gradOutput: dl))
    }

    /// Runs `body(s)` for every shard at once, each on its own thread with the shard flag set, into `results[s]`; a failing
    /// shard aborts `sync` so the others do not wait for it. False (nothing run) when the pool is taken.
    private static func runShards<T>(_ n: Int, _ sync: ShardSync, into results: inout [Result<T, Error>?],
                                     _ body: (Int) throws -> T) -> Bool {
        results.withUnsafeMutableBufferPointer { rp in
            let out = UnsafeSendableBox(rp.baseAddress!)
            return WorkerPool.shared.runConcurrently(tasks: n) { s in
                let r = Result { try ShardThread.run { try body(s) } }
                if case .failure = r { sync.abort() }
                out.value[s] = r
            }
        }
    }

    /// Forward in training mode, softmax cross-entropy against `labels`, and backward when the loss is finite.
    public mutating func trainStep(_ x: Tensor, labels: [Int], labelSmoothing: Float = 0, rng: inout SeededRandom) throws -> TrainStepResult {
        guard let n = trainShards(x) else { return try wholeStep(x, labels: labels, labelSmoothing: labelSmoothing, rng: &rng) }
        let per = x.shape[0] / n, sample = x.count / x.shape[0]
        let forwardSync = ShardSync(parties: n), backwardSync = ShardSync(parties: n)
        var engines = [TrainingEngine](repeating: self, count: n)
        var tapes = [Result<Tape, Error>?](repeating: nil, count: n)
        // No active Dropout (`trainShards`): forward draws no random numbers, so each shard may run on its own copy of the rng.
        let seed = rng
        for s in 0..<n { engines[s].shard = ShardContext(sync: forwardSync, index: s) }
        let ran = engines.withUnsafeMutableBufferPointer { ep in
            let e = UnsafeSendableBox(ep.baseAddress!)
            return Self.runShards(n, forwardSync, into: &tapes) { s in
                let part = Tensor(shape: [per] + Array(x.shape.dropFirst()), data: Array(x.data[(s * per * sample)..<((s + 1) * per * sample)]))
                var r = seed
                return try e.value[s].forward(part, training: true, rng: &r)
            }
        }
        // The pool was taken (a concurrent caller): the whole step on this thread.
        guard ran else { return try wholeStep(x, labels: labels, labelSmoothing: labelSmoothing, rng: &rng) }
        let shardTapes = try tapes.map { try $0!.get() }
        // BatchNorm's running statistics: every shard computed the same (from the whole batch's sums).
        for node in model.graph.nodes {
            guard case .batchNorm2d = node.op else { continue }
            for key in [node.name + ".running_mean", node.name + ".running_var"] where model.tensors[key] != nil {
                model.tensors[key] = engines[0].model.tensors[key]
            }
        }
        let k = shardTapes[0].output.count / per
        var logits: [Float] = []
        logits.reserveCapacity(x.shape[0] * k)
        for t in shardTapes { logits.append(contentsOf: t.output.data) }
        let output = Tensor(shape: [x.shape[0]] + Array(shardTapes[0].output.shape.dropFirst()), data: logits)
        let (loss, dl) = Loss.crossEntropy(logits: output, labels: labels, labelSmoothing: labelSmoothing)
        guard loss.isFinite else { return TrainStepResult(loss: loss, output: output, gradients: nil) }
        var grads = [Result<Gradients, Error>?](repeating: nil, count: n)
        for s in 0..<n { engines[s].shard = ShardContext(sync: backwardSync, index: s) }
        // Forward took the pool, so this thread is not inside a pool job: if another thread holds it now, its job ends.
        let es = UnsafeSendableBox(engines), ts = UnsafeSendableBox(shardTapes)
        while !Self.runShards(n, backwardSync, into: &grads, { s in
            let part = Tensor(shape: [per] + Array(output.shape.dropFirst()), data: Array(dl.data[(s * per * k)..<((s + 1) * per * k)]))
            return try es.value[s].backward(ts.value[s], gradOutput: part)
        }) { sched_yield() }
        // Sum the shards' parameter gradients, one parameter per task (every shard has the same keys).
        let parts = try grads.map { try $0!.get().parameters }
        let keys = Array(parts[0].keys)
        var sums = keys.map { parts[0][$0]! }
        sums.withUnsafeMutableBufferPointer { sp in
            let box = UnsafeSendableBox(sp.baseAddress!), others = UnsafeSendableBox(parts)
            Fast.parallelTasks(keys.count, threads: n) { i in
                for s in 1..<n { if let d = others.value[s][keys[i]] { BVec.addInPlace(&box.value[i], d, threads: 1) } }
            }
        }
        let total = Dictionary(uniqueKeysWithValues: zip(keys, sums))
        return TrainStepResult(loss: loss, output: output, gradients: Gradients(parameters: total, input: nil))
    }
}

/// What the shards of one training step share: a spinning barrier and one slot per shard for the all-reduce of BatchNorm's
/// per-channel sums. Every shard makes the same sequence of `allReduce` calls (same graph, same shapes). After `abort()`
/// (a shard failed) waits return at once, so the other shards run to their end instead of waiting for it.
final class ShardSync: @unchecked Sendable {
    let parties: Int
    private let arrived = Atomic<Int>(0)
    private let generation = Atomic<Int>(0)
    private let aborted = Atomic<Bool>(false)
    /// One slot per shard (separate storage: shards write theirs concurrently).
    private let slots: UnsafeMutablePointer<[Double]>

    init(parties: Int) {
        self.parties = parties
        slots = .allocate(capacity: parties)
        slots.initialize(repeating: [], count: parties)
    }
    deinit { slots.deinitialize(count: parties); slots.deallocate() }

    private func wait() {
        if aborted.load(ordering: .acquiring) { return }
        let gen = generation.load(ordering: .acquiring)
        if arrived.add(1, ordering: .acquiringAndReleasing).newValue == parties {
            arrived.store(0, ordering: .relaxed)
            generation.store(gen + 1, ordering: .releasing)
        } else {
            while generation.load(ordering: .acquiring) == gen && !aborted.load(ordering: .relaxed) {}
        }
    }

    func abort() { aborted.store(true, ordering: .releasing) }

    /// The element-wise sum over all shards of `v` (in shard order, so every shard gets bit-identical sums).
    func allReduce(shard: Int, _ v: [Double]) -> [Double] {
        slots[shard] = v
        wait()
        var total = [Double](repeating: 0, count: v.count)
        for s in 0..<parties where slots[s].count == v.count { for i in 0..<v.count { total[i] += slots[s][i] } }
        wait()
        return total
    }
}

/// A training-step shard: its index and the step's `ShardSync`.
struct ShardContext {
    let sync: ShardSync
    let index: Int
}

/// Training-mode BatchNorm forward over the images of all shards: per-channel sums and sums of squares (double) of this
/// shard's images are all-reduced, then each shard normalizes its own. Returns the statistics of the whole batch and its
/// element count per channel (for the running variance's unbiased correction).
func shardedBatchNormForward(x: [Float], n: Int, c: Int, plane: Int, gamma: [Float], beta: [Float], eps: Float, keepXhat: Bool,
                             shard: ShardContext)
    -> (y: [Float], xhat: [Float], invStd: [Float], mean: [Float], variance: [Float], count: Int) {
    var sums = [Double](repeating: 0, count: 2 * c + 1)
    sums[2 * c] = Double(n * plane)
    x.withUnsafeBufferPointer { xb in
        for ch in 0..<c {
            for b in 0..<n {
                let (s, q) = BVec.sumAndSquaresDouble(xb.baseAddress! + (b * c + ch) * plane, count: plane)
                sums[ch] += s; sums[c + ch] += q
            }
        }
    }
    let total = shard.sync.allReduce(shard: shard.index, sums)
    let m = total[2 * c]
    let count = x.count
    var y = [Float](unsafeUninitializedCapacity: count) { _, k in k = count }
    var xhat = keepXhat ? [Float](unsafeUninitializedCapacity: count) { _, k in k = count } : []
    var invStd = [Float](repeating: 0, count: c), mean = invStd, variance = invStd
    x.withUnsafeBufferPointer { xb in y.withUnsafeMutableBufferPointer { yb in xhat.withUnsafeMutableBufferPointer { hb in
        for ch in 0..<c {
            let mu = total[ch] / m, v = Swift.max(0, total[c + ch] / m - mu * mu)
            let istd = Float(1 / (v + Double(eps)).squareRoot())
            mean[ch] = Float(mu); variance[ch] = Float(v); invStd[ch] = istd
            let muF = Float(mu), g = gamma[ch], bt = beta[ch]
            let vmu = SIMD16<Float>(repeating: muF), vis = SIMD16<Float>(repeating: istd)
            let vg = SIMD16<Float>(repeating: g), vb = SIMD16<Float>(repeating: bt)
            for b in 0..<n {
                let base = (b * c + ch) * plane
                let xp = xb.baseAddress! + base, yp = yb.baseAddress! + base, hp = keepXhat ? hb.baseAddress! + base : nil
                var p = 0
                while p + 16 <= plane {
                    let h = (BVec.load(xp + p) - vmu) * vis
                    if let hp { BVec.store(h, hp + p) }
                    BVec.store(h * vg + vb, yp + p)
                    p += 16
                }
                while p < plane {
                    let h = (xp[p] - muF) * istd
                    hp?[p] = h
                    yp[p] = h * g + bt
                    p += 1
                }
            }
        }
    } } }
    return (y, xhat, invStd, mean, variance, Int(m))
}

/// Training-mode BatchNorm backward over the images of all shards: Σdy and Σdy·xhat per channel are all-reduced for dx;
/// dγ and dβ are this shard's part (the step sums the shards' parameter gradients).
func shardedBatchNormBackward(dy: [Float], xhat: [Float], invStd: [Float], gamma: [Float], n: Int, c: Int, plane: Int, needInput: Bool,
                              shard: ShardContext) -> (dx: [Float]?, dgamma: [Float], dbeta: [Float]) {
    var local = [Double](repeating: 0, count: 2 * c + 1)
    local[2 * c] = Double(n * plane)
    var dgamma = [Float](repeating: 0, count: c), dbeta = dgamma
    dy.withUnsafeBufferPointer { db in xhat.withUnsafeBufferPointer { hb in
        for ch in 0..<c {
            var sdy: Float = 0, sdyx: Float = 0
            for b in 0..<n {
                let base = (b * c + ch) * plane
                let (a, d) = BVec.sumAndDot(db.baseAddress! + base, hb.baseAddress! + base, count: plane)
                sdy += a; sdyx += d
            }
            dbeta[ch] = sdy; dgamma[ch] = sdyx
            local[ch] = Double(sdy); local[c + ch] = Double(sdyx)
        }
    } }
    let total = shard.sync.allReduce(shard: shard.index, local)
    guard needInput else { return (nil, dgamma, dbeta) }
    let m = Float(total[2 * c]), count = dy.count
    var dx = [Float](unsafeUninitializedCapacity: count) { _, k in k = count }
    dy.withUnsafeBufferPointer { db in xhat.withUnsafeBufferPointer { hb in dx.withUnsafeMutableBufferPointer { ob in
        for ch in 0..<c {
            let k = gamma[ch] * invStd[ch], a = Float(total[ch]) / m, q = Float(total[c + ch]) / m
            let vk = SIMD16<Float>(repeating: k), va = SIMD16<Float>(repeating: a), vq = SIMD16<Float>(repeating: q)
            for b in 0..<n {
                let base = (b * c + ch) * plane
                let dp = db.baseAddress! + base, hp = hb.baseAddress! + base, op = ob.baseAddress! + base
                var p = 0
                while p + 16 <= plane { BVec.store(vk * (BVec.load(dp + p) - va - BVec.load(hp + p) * vq), op + p); p += 16 }
                while p < plane { op[p] = k * (dp[p] - a - hp[p] * q); p += 1 }
            }
        }
    } } }
    return (dx, dgamma, dbeta)
}
