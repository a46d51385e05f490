import Foundation

/// What a node's forward kept for its backward.
enum NodeCache {
    case none
    case batchNorm(xhat: [Float], invStd: [Float], batchStats: Bool)
    case maxPool(argmax: [Int32])
    /// Max pooling by the inference kernel; backward finds each maximum again by comparing with the output.
    case maxPoolByValue(Pool2dGeometry)
    case lrn(scale: [Float])
    case dropout(mask: [Float])
}

/// The activations of one forward pass, kept for backward.
public struct Tape {
    var values: [String: Tensor]
    var caches: [NodeCache]
    var needsBackward: [Bool]
    public var output: Tensor
}

/// Forward (training or evaluation mode) with cached activations, and backward, over a zoo Graph.
/// Parameters in `frozen` get no gradient; nodes whose output does not depend on a trainable parameter run
/// no backward at all (so nothing runs below the lowest trainable layer).
public struct TrainingEngine {
    /// ZOO_TRAIN_PROFILE set: forward and backward time per node is added to `profile` (ms, keyed "F|B op node").
    static let profiling = ProcessInfo.processInfo.environment["ZOO_TRAIN_PROFILE"] != nil
    /// ZOO_TRAIN_CONV=fast (A/B only): every training convolution through the inference kernel `Fast.conv2d`.
    nonisolated(unsafe) static var batchedConvForward = ProcessInfo.processInfo.environment["ZOO_TRAIN_CONV"] != "fast"
    nonisolated(unsafe) public static var profile: [String: Double] = [:]
    /// With ZOO_BENCH_AB the profile keys start with "old "/"new " (TrainFast off/on).
    static let abProfile = ProcessInfo.processInfo.environment["ZOO_BENCH_AB"] != nil
    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    static func record(_ phase: String, _ node: Node, since t0: UInt64) {
        let variant = abProfile ? (TrainFast.on ? "new " : "old ") : ""
        profile[variant + phase + " " + node.op.typeName + " " + node.name, default: 0] += Double(now() - t0) / 1e6
    }

    public var model: Model
    public var frozen: Set<String>
    /// Transformed weights of frozen convolutions, kept across steps (checked against the weights' content hash).
    let frozenWeightCaches = FrozenWeightCaches()
    /// Also compute dLoss/dInput (for gradient checks).
    public var inputRequiresGrad = false
    /// Set on the engine copies of a sharded training step (`trainStep`): BatchNorm's batch statistics span all shards.
    var shard: ShardContext? = nil

    public init(model: Model, frozen: Set<String> = []) {
        self.model = model; self.frozen = frozen
        _ = TrainingMemory.configured
    }

    /// Trainable parameter names (specs marked trainable and not frozen), in definition order.
    public var trainableParameters: [String] {
        model.graph.parameterSpecs.filter { $0.trainable && !frozen.contains($0.key) }.map(\.key)
    }

    /// For each node: does its output depend on a trainable parameter?
    public func nodesNeedingBackward() -> [Bool] {
        var req: Set<String> = inputRequiresGrad ? [model.graph.input] : []
        let trainable = Set(trainableParameters)
        var out: [Bool] = []
        for n in model.graph.nodes {
            let own = n.parameterSpecs.contains { trainable.contains($0.key) }
            let r = own || n.inputs.contains { req.contains($0) }
            if r { req.insert(n.output) }
            out.append(r)
        }
        return out
    }

    func param(_ node: Node, _ key: String) throws -> Tensor {
        let k = node.name.isEmpty ? key : node.name + "." + key
        guard let t = model.tensors[k] else { throw ZooError.missingParameters([k]) }
        return t
    }

    /// Runs the graph. `training` selects batch statistics for BatchNorm (updating running statistics) and
    /// active Dropout (masks drawn from `rng`).
    public mutating func forward(_ x: Tensor, training: Bool, rng: inout SeededRandom, keepTape: Bool = true) throws -> Tape {
        let g = model.graph
        guard Array(x.shape.dropFirst()) == g.inputShape else {
            throw ZooError.badInput("input is \(ShapeFormat.string(Array(x.shape.dropFirst()))) per sample but the model expects \(ShapeFormat.string(g.inputShape))")
        }
        let need = keepTape ? nodesNeedingBackward() : [Bool](repeating: false, count: g.nodes.count)
        var values: [String: Tensor] = [g.input: x]
        var caches = [NodeCache](repeating: .none, count: g.nodes.count)
        var fusedSigmoid = -1
        for (ni, node) in g.nodes.enumerated() {
            if ni == fusedSigmoid { continue }
            let ins = try node.inputs.map { name -> Tensor in
                guard let v = values[name] else { throw ZooError.invalidGraph("value '\(name)' is missing") }
                return v
            }
            let t0 = Self.profiling ? Self.now() : 0
            // A small direct convolution followed by a sigmoid of its output: both in one pass (`smallConvForward`).
            if ni + 1 < g.nodes.count, case .sigmoid = g.nodes[ni + 1].op, g.nodes[ni + 1].inputs == [node.output],
               let (y, sig) = try smallConvSigmoidForward(node, ins) {
                values[node.output] = y
                values[g.nodes[ni + 1].output] = sig
                fusedSigmoid = ni + 1
                if Self.profiling { Self.record("F", node, since: t0) }
                continue
            }
            let (y, cache) = try forwardNode(node, ins, training: training, rng: &rng, wantCache: need[ni])
            if Self.profiling { Self.record("F", node, since: t0) }
            values[node.output] = y
            if need[ni] { caches[ni] = cache }
        }
        guard let out = values[g.output] else { throw ZooError.invalidGraph("graph output '\(g.output)' is never produced") }
        return Tape(values: keepTape ? values : [:], caches: caches, needsBackward: need, output: out)
    }

    /// A convolution node taking `SmallConv`'s direct path, with the sigmoid of its output (nil: not that case).
    func smallConvSigmoidForward(_ node: Node, _ ins: [Tensor]) throws -> (Tensor, Tensor)? {
        guard case let .conv2d(a) = node.op, trainFuseSigmoidPoolBackward, SharedForward.fastSigmoid, Self.batchedConvForward,
              let x = ins.first, x.shape.count == 4 else { return nil }
        let s = x.shape
        let cg = ConvGeometry(n: s[0], c: s[1], h: s[2], w: s[3], attrs: a)
        guard SmallConv.applies(cg),
              trainConvForwardBatched(cg, threads: SharedForward.threads, changingWeights: !frozen.contains(node.name + ".weight")) else { return nil }
        let w = try param(node, "weight").data, b = a.bias ? try param(node, "bias").data : nil
        var sig: [Float] = []
        let y = smallConvForward(x: x.data, weight: w, bias: b, geometry: cg, threads: SharedForward.threads, sigmoid: &sig)
        let shape = [s[0], a.outChannels, cg.oh, cg.ow]
        return (Tensor(shape: shape, data: y), Tensor(shape: shape, data: sig))
    }

    /// `wantCache`: the node runs backward, so keep what its backward needs (else skip computing it).
    mutating func forwardNode(_ node: Node, _ ins: [Tensor], training: Bool, rng: inout SeededRandom, wantCache: Bool = true) throws -> (Tensor, NodeCache) {
        let x = ins.first ?? Tensor(zeros: [0])
        let s = x.shape
        switch node.op {
        case let .conv2d(a):
            let geo = Conv2dGeometry(conv: a, input: s)
            let cg = ConvGeometry(n: s[0], c: s[1], h: s[2], w: s[3], attrs: a)
            let w = try param(node, "weight").data, b = a.bias ? try param(node, "bias").data : nil
            let fixedWeights = frozen.contains(node.name + ".weight")
            let y = Self.batchedConvForward && trainConvForwardBatched(cg, threads: SharedForward.threads, changingWeights: !fixedWeights)
                ? trainConv2dForward(x: x.data, weight: w, bias: b, geometry: cg)
                : SharedForward.conv2d(geo, x: x.data, w: w, b: b,
                                       weightCache: fixedWeights ? frozenWeightCaches.cache(node.name, w) : ConvWeightCache())
            return (Tensor(shape: [s[0], a.outChannels, geo.outH, geo.outW], data: y), .none)
        case let .linear(a):
            let rows = x.count / a.inFeatures
            let y = SharedForward.linear(rows: rows, inFeatures: a.inFeatures, outFeatures: a.outFeatures, x: x.data,
                                         w: try param(node, "weight").data, b: a.bias ? try param(node, "bias").data : nil)
            return (Tensor(shape: Array(s.dropLast()) + [a.outFeatures], data: y), .none)
        case let .batchNorm2d(a):
            let c = s[1], plane = s.count > 2 ? s[2...].reduce(1, *) : 1
            let gamma = try param(node, "weight").data, beta = try param(node, "bias").data
            if training {
                let r: (y: [Float], xhat: [Float], invStd: [Float], mean: [Float], variance: [Float], count: Int)
                if let shard {
                    r = shardedBatchNormForward(x: x.data, n: s[0], c: c, plane: plane, gamma: gamma, beta: beta, eps: a.eps,
                                                keepXhat: wantCache, shard: shard)
                } else {
                    let w = trainBatchNormForward(x: x.data, n: s[0], c: c, plane: plane, gamma: gamma, beta: beta, eps: a.eps, keepXhat: wantCache)
                    r = (w.y, w.xhat, w.invStd, w.mean, w.variance, s[0] * plane)
                }
                let kMean = node.name + ".running_mean", kVar = node.name + ".running_var"
                let m = r.count
                if var rm = model.tensors[kMean], var rv = model.tensors[kVar] {
                    for ch in 0..<c {
                        rm.data[ch] = (1 - a.momentum) * rm.data[ch] + a.momentum * r.mean[ch]
                        let unbiased = m > 1 ? r.variance[ch] * Float(m) / Float(m - 1) : r.variance[ch]
                        rv.data[ch] = (1 - a.momentum) * rv.data[ch] + a.momentum * unbiased
                    }
                    model.tensors[kMean] = rm; model.tensors[kVar] = rv
                }
                return (Tensor(shape: s, data: r.y), .batchNorm(xhat: r.xhat, invStd: r.invStd, batchStats: true))
            }
            let rm = try param(node, "running_mean").data, rv = try param(node, "running_var").data
            var y = x.data, xhat = x.data
            var inv = [Float](repeating: 0, count: c)
            for ch in 0..<c { inv[ch] = 1 / (rv[ch] + a.eps).squareRoot() }
            for b in 0..<s[0] { for ch in 0..<c { for p in 0..<plane {
                let i = (b * c + ch) * plane + p
                xhat[i] = (x.data[i] - rm[ch]) * inv[ch]; y[i] = xhat[i] * gamma[ch] + beta[ch]
            } } }
            return (Tensor(shape: s, data: y), .batchNorm(xhat: xhat, invStd: inv, batchStats: false))
        case .relu: return (Tensor(shape: s, data: SharedForward.activation(.relu, x.data)), .none)
        case .relu6: return (Tensor(shape: s, data: SharedForward.activation(.clip(0, 6), x.data)), .none)
        case let .clip(lo, hi): return (Tensor(shape: s, data: SharedForward.activation(.clip(lo, hi), x.data)), .none)
        case .sigmoid:
            let y = SharedForward.sigmoid(x.data, portable: !SharedForward.fastSigmoid)
            return (Tensor(shape: s, data: y), .none)
        case .tanh: return (Tensor(shape: s, data: SharedForward.activation(.tanh, x.data)), .none)
        case let .softmax(axis): return (Tensor(shape: s, data: SharedForward.softmax(x.data, shape: s, axis: axis)), .none)
        case let .maxPool2d(a):
            let geo = Pool2dGeometry(pool: a, input: s)
            if !wantCache { return (Tensor(shape: [s[0], s[1], geo.outH, geo.outW], data: SharedForward.maxPool2d(geo, x.data)), .none) }
            if TrainFast.enabled("pool") {
                return (Tensor(shape: [s[0], s[1], geo.outH, geo.outW], data: SharedForward.maxPool2d(geo, x.data)), .maxPoolByValue(geo))
            }
            let (y, am) = SharedForward.maxPool2dWithArgmax(geo, x.data)
            return (Tensor(shape: [s[0], s[1], geo.outH, geo.outW], data: y), .maxPool(argmax: am))
        case let .avgPool2d(a):
            let geo = Pool2dGeometry(pool: a, input: s)
            return (Tensor(shape: [s[0], s[1], geo.outH, geo.outW], data: SharedForward.avgPool2d(geo, x.data)), .none)
        case let .adaptiveAvgPool2d(o):
            return (Tensor(shape: [s[0], s[1], o[0], o[1]], data: SharedForward.adaptiveAvgPool2d(x.data, shape: s, output: o)), .none)
        case .globalMaxPool:
            let geo = Pool2dGeometry(pool: Pool2dAttrs(kernel: [s[2], s[3]]), input: s)
            if !wantCache { return (Tensor(shape: [s[0], s[1], geo.outH, geo.outW], data: SharedForward.maxPool2d(geo, x.data)), .none) }
            let (y, am) = SharedForward.maxPool2dWithArgmax(geo, x.data)
            return (Tensor(shape: [s[0], s[1], geo.outH, geo.outW], data: y), .maxPool(argmax: am))
        case .flatten, .reshape:
            let (out, _) = try Graph.infer(node: node, inputs: [s])
            return (x.reshaped(out), .none)
        case let .dropout(p):
            guard training, p > 0 else { return (x, .none) }
            let keep = 1 - p
            var mask = [Float](repeating: 0, count: x.count)
            for i in 0..<mask.count { mask[i] = rng.nextFloat() < keep ? 1 / keep : 0 }
            var y = x.data
            for i in 0..<y.count { y[i] *= mask[i] }
            return (Tensor(shape: s, data: y), .dropout(mask: mask))
        case .identity: return (x, .none)
        case .add, .mul:
            guard ins.count == 2, let geo = BroadcastGeometry(ins[0].shape, ins[1].shape) else {
                throw ZooError.unsupported("\(node.op.typeName) node '\(node.name)' needs two broadcastable inputs in training")
            }
            var mul = false
            if case .mul = node.op { mul = true }
            return (Tensor(shape: geo.outShape, data: SharedForward.binary(geo, multiply: mul, ins[0].data, ins[1].data)), .none)
        case let .concat(axis):
            let (out, _) = try Graph.infer(node: node, inputs: ins.map(\.shape))
            let ax = axis < 0 ? axis + out.count : axis
            return (Tensor(shape: out, data: SharedForward.concat(ins, outShape: out, axis: ax)), .none)
        case let .lrn(a):
            let r = trainLRNForward(x: x.data, shape: s, attrs: a)
            return (Tensor(shape: s, data: r.y), .lrn(scale: r.scale))
        case let .pad(p, v):
            let oh = s[2] + p.top + p.bottom, ow = s[3] + p.left + p.right
            return (Tensor(shape: [s[0], s[1], oh, ow], data: SharedForward.pad(x.data, shape: s, p, value: v)), .none)
        case .constant:
            return (try param(node, "value"), .none)
        case let .convTranspose2d(a):
            let (out, _) = try Graph.infer(node: node, inputs: [s])
            let geo = convTransposeAdjointGeometry(n: s[0], outShape: out, attrs: a)
            guard geo.oh == s[2], geo.ow == s[3] else { throw ZooError.unsupported("ConvTranspose2d '\(node.name)': output padding larger than the stride") }
            let y = SharedForward.convTranspose2d(Conv2dGeometry(convTranspose: a, input: s), x: x.data, w: try param(node, "weight").data,
                                                  b: a.bias ? try param(node, "bias").data : nil)
            return (Tensor(shape: out, data: y), .none)
        }
    }

    /// Backward from `gradOutput` (dLoss/dOutput). Returns gradients of the trainable, non-frozen parameters.
    public func backward(_ tape: Tape, gradOutput: Tensor) throws -> Gradients {
        let g = model.graph
        var grads: [String: [Float]] = [g.output: gradOutput.data]
        var pgrads: [String: [Float]] = [:]
        var valueNeeds: Set<String> = inputRequiresGrad ? [g.input] : []
        for (i, n) in g.nodes.enumerated() where tape.needsBackward[i] { valueNeeds.insert(n.output) }
        func accumulate(_ name: String, _ d: [Float]) {
            guard valueNeeds.contains(name) else { return }
            if var e = grads.removeValue(forKey: name) { BVec.addInPlace(&e, d, threads: SharedForward.threads); grads[name] = e } else { grads[name] = d }
        }
        func wantParam(_ node: Node, _ key: String) -> Bool {
            !frozen.contains(node.name + "." + key)
        }
        // A sigmoid whose output only a 2×2 average pool reads: the pool's backward also does the sigmoid's (one pass).
        var readers: [String: Int] = [g.output: 1]
        for n in g.nodes { for i in n.inputs { readers[i, default: 0] += 1 } }
        var producer: [String: Int] = [:]
        for (i, n) in g.nodes.enumerated() { producer[n.output] = i }
        for ni in stride(from: g.nodes.count - 1, through: 0, by: -1) where tape.needsBackward[ni] {
            let node = g.nodes[ni]
            guard let dy = grads.removeValue(forKey: node.output) else { continue }
            let t0 = Self.profiling ? Self.now() : 0
            defer { if Self.profiling { Self.record("B", node, since: t0) } }
            let ins = node.inputs.map { tape.values[$0]! }
            let needIn = node.inputs.map { valueNeeds.contains($0) }
            let x = ins.first
            let s = x?.shape ?? []
            func setParam(_ key: String, _ d: [Float]?) {
                if let d, wantParam(node, key) { pgrads[node.name + "." + key] = d }
            }
            switch node.op {
            case let .conv2d(a):
                let geo = ConvGeometry(n: s[0], c: s[1], h: s[2], w: s[3], attrs: a)
                let wantP = wantParam(node, "weight") || (a.bias && wantParam(node, "bias"))
                let r = trainConv2dBackward(x: x!.data, weight: try param(node, "weight").data, dy: dy, geometry: geo, hasBias: a.bias,
                                            needInput: needIn[0], needParams: wantP)
                setParam("weight", r.dw); setParam("bias", r.db)
                if let d = r.dx { accumulate(node.inputs[0], d) }
            case let .linear(a):
                let rows = x!.count / a.inFeatures
                let wantP = wantParam(node, "weight") || (a.bias && wantParam(node, "bias"))
                let r = trainLinearBackward(x: x!.data, rows: rows, inF: a.inFeatures, weight: try param(node, "weight").data, outF: a.outFeatures,
                                            dy: dy, hasBias: a.bias, needInput: needIn[0], needParams: wantP)
                setParam("weight", r.dw); setParam("bias", r.db)
                if let d = r.dx { accumulate(node.inputs[0], d) }
            case .batchNorm2d:
                guard case let .batchNorm(xhat, invStd, batchStats) = tape.caches[ni] else { continue }
                let plane = s.count > 2 ? s[2...].reduce(1, *) : 1
                let gamma = try param(node, "weight").data
                let r = batchStats && shard != nil
                    ? shardedBatchNormBackward(dy: dy, xhat: xhat, invStd: invStd, gamma: gamma, n: s[0], c: s[1], plane: plane,
                                               needInput: needIn[0], shard: shard!)
                    : trainBatchNormBackward(dy: dy, xhat: xhat, invStd: invStd, gamma: gamma, n: s[0], c: s[1], plane: plane,
                                             batchStats: batchStats, needInput: needIn[0])
                setParam("weight", r.dgamma); setParam("bias", r.dbeta)
                if let d = r.dx { accumulate(node.inputs[0], d) }
            case .relu, .relu6, .clip, .sigmoid, .tanh:
                guard needIn[0] else { continue }
                accumulate(node.inputs[0], BVec.activationBackward(node.op, x: x!.data, y: tape.values[node.output]!.data, dy: dy,
                                                                   threads: SharedForward.threads))
            case let .softmax(axis):
                guard needIn[0] else { continue }
                accumulate(node.inputs[0], trainSoftmaxBackward(y: tape.values[node.output]!.data, dy: dy, shape: s, axis: axis))
            case .maxPool2d, .globalMaxPool:
                guard needIn[0] else { continue }
                if case let .maxPoolByValue(geo) = tape.caches[ni] {
                    let y = tape.values[node.output]!.data
                    if trainFuseReluPoolBackward, readers[node.inputs[0]] == 1, let ri = producer[node.inputs[0]], tape.needsBackward[ri],
                       case .relu = g.nodes[ri].op, let rIn = g.nodes[ri].inputs.first, valueNeeds.contains(rIn) {
                        // ReLU → max pool: the pool's gradient lands on its windows' maxima only, and a maximum the ReLU passed
                        // is 0 exactly where the ReLU's input was ≤ 0 (NaN stays NaN), so the ReLU's backward is dy zeroed
                        // where y == 0, scattered by the pool (no pass over the ReLU's full-size gradient).
                        accumulate(rIn, trainMaxPoolBackwardByValue(x: x!.data, y: y, dy: maskedWhereZero(dy, y), geometry: geo,
                                                                    threads: SharedForward.threads))
                        continue   // the ReLU node then finds no gradient and is skipped
                    }
                    accumulate(node.inputs[0], trainMaxPoolBackwardByValue(x: x!.data, y: y, dy: dy, geometry: geo,
                                                                           threads: SharedForward.threads))
                    continue
                }
                guard case let .maxPool(am) = tape.caches[ni] else { continue }
                accumulate(node.inputs[0], trainMaxPoolBackward(dy: dy, argmax: am, inputCount: x!.count, planes: s[0] * s[1]))
            case let .avgPool2d(a):
                guard needIn[0] else { continue }
                if trainFuseSigmoidPoolBackward, readers[node.inputs[0]] == 1, let si = producer[node.inputs[0]], tape.needsBackward[si],
                   case .sigmoid = g.nodes[si].op, let sIn = g.nodes[si].inputs.first, valueNeeds.contains(sIn),
                   let d = avgPool2x2Backward(dy: dy, PoolGeometry(s, a), threads: SharedForward.threads, sigmoidOutput: x!.data) {
                    accumulate(sIn, d)   // the sigmoid node then finds no gradient and is skipped
                    continue
                }
                accumulate(node.inputs[0], trainAvgPoolBackward(dy: dy, inputShape: s, attrs: a))
            case let .adaptiveAvgPool2d(o):
                guard needIn[0] else { continue }
                accumulate(node.inputs[0], trainAdaptiveAvgPoolBackward(dy: dy, inputShape: s, output: o))
            case .flatten, .reshape, .identity:
                if needIn[0] { accumulate(node.inputs[0], dy) }
            case .dropout:
                guard needIn[0] else { continue }
                if case let .dropout(mask) = tape.caches[ni] {
                    var d = dy
                    for i in 0..<d.count { d[i] *= mask[i] }
                    accumulate(node.inputs[0], d)
                } else { accumulate(node.inputs[0], dy) }
            case .add, .mul:
                let out = tape.values[node.output]!.shape
                for k in 0..<2 where needIn[k] {
                    if case .add = node.op, ins[k].shape == out { accumulate(node.inputs[k], dy); continue }
                    let idx = broadcastIndex(ins[k].shape, to: out)
                    var d = [Float](repeating: 0, count: ins[k].count)
                    if case .add = node.op { for i in 0..<dy.count { d[idx[i]] += dy[i] } }
                    else {
                        let other = ins[1 - k], oidx = broadcastIndex(other.shape, to: out)
                        for i in 0..<dy.count { d[idx[i]] += dy[i] * other.data[oidx[i]] }
                    }
                    accumulate(node.inputs[k], d)
                }
            case let .concat(axis):
                let out = tape.values[node.output]!.shape
                let ax = axis < 0 ? axis + out.count : axis
                let outer = out[..<ax].reduce(1, *), inner = out[(ax + 1)...].reduce(1, *)
                var parts = ins.map { [Float](repeating: 0, count: $0.count) }
                var off = 0
                for o in 0..<outer { for (k, t) in ins.enumerated() {
                    let len = t.shape[ax] * inner
                    for j in 0..<len { parts[k][o * len + j] = dy[off + j] }
                    off += len
                } }
                for k in 0..<ins.count where needIn[k] { accumulate(node.inputs[k], parts[k]) }
            case let .lrn(a):
                guard needIn[0], case let .lrn(scale) = tape.caches[ni] else { continue }
                accumulate(node.inputs[0], trainLRNBackward(x: x!.data, scale: scale, dy: dy, shape: s, attrs: a))
            case let .pad(p, _):
                guard needIn[0] else { continue }
                let (n, c, h, w) = (s[0], s[1], s[2], s[3])
                let oh = h + p.top + p.bottom, ow = w + p.left + p.right
                var d = [Float](repeating: 0, count: x!.count)
                for nc in 0..<(n * c) { for yy in 0..<h { for xx in 0..<w {
                    d[(nc * h + yy) * w + xx] = dy[(nc * oh + yy + p.top) * ow + xx + p.left]
                } } }
                accumulate(node.inputs[0], d)
            case let .convTranspose2d(a):
                let out = tape.values[node.output]!.shape
                let geo = convTransposeAdjointGeometry(n: s[0], outShape: out, attrs: a)
                let wantP = wantParam(node, "weight") || (a.bias && wantParam(node, "bias"))
                let r = trainConvTransposeBackward(x: x!.data, weight: try param(node, "weight").data, dy: dy, geometry: geo, hasBias: a.bias,
                                                   needInput: needIn[0], needParams: wantP)
                setParam("weight", r.dw); setParam("bias", r.db)
                if let d = r.dx { accumulate(node.inputs[0], d) }
            case .constant:
                continue
            }
        }
        return Gradients(parameters: pgrads, input: inputRequiresGrad ? grads[g.input] : nil)
    }
}

public struct Gradients: Sendable {
    /// dLoss/dParameter for trainable, non-frozen parameters.
    public var parameters: [String: [Float]]
    /// dLoss/dInput when the engine's `inputRequiresGrad` is set.
    public var input: [Float]?
}

/// Per-node caches of transformed weights for frozen convolutions: reused while the weights' content hash is unchanged,
/// so a fine-tune step neither re-transforms nor re-packs the backbone's weights.
final class FrozenWeightCaches: @unchecked Sendable {
    private let lock = NSLock()
    /// `weights`: the array last seen, held so that its storage stays the same as long as nobody writes to it (a write
    /// through any other reference copies it first): the same storage again means the same floats, without hashing them
    /// (9.4 MB for one of resnet18's layer4 convolutions; about 3% of a frozen resnet18 b32 step).
    private var map: [String: (hash: UInt64, weights: [Float], cache: ConvWeightCache)] = [:]

    func cache(_ node: String, _ w: [Float]) -> ConvWeightCache {
        func base(_ a: [Float]) -> UnsafePointer<Float>? { a.withUnsafeBufferPointer { $0.baseAddress } }
        lock.lock()
        if let e = map[node], e.weights.count == w.count, base(e.weights) == base(w) { lock.unlock(); return e.cache }
        lock.unlock()
        let h = w.withUnsafeBufferPointer { $0.baseAddress.map { Fast.contentHash($0, count: w.count) } ?? 0 }
        lock.lock(); defer { lock.unlock() }
        if let e = map[node], e.hash == h, e.weights.count == w.count {
            map[node] = (h, w, e.cache)
            return e.cache
        }
        let c = ConvWeightCache()
        map[node] = (h, w, c)
        return c
    }
}
