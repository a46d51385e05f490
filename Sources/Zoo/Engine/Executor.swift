import Foundation

/// Which kernels an `Executor` runs: the naive reference loops or the optimized ones.
public enum KernelSet: Sendable {
    case reference, fast
}

/// A heap buffer of floats owned by the executor (values, parameters' folded copies, scratch).
final class Buffer {
    let p: UnsafeMutablePointer<Float>
    let count: Int
    init(count: Int) {
        self.count = count
        p = .allocate(capacity: Swift.max(count, 1))
    }
    convenience init(_ data: [Float]) {
        self.init(count: data.count)
        data.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: data.count) }
    }
    deinit { p.deallocate() }
}

/// Runs a zoo `Graph` forward: Float32, NCHW, batched, on the CPU.
///
/// Shapes are inferred once per input shape and cached with the step list. Each intermediate buffer is
/// released as soon as its last consumer has run and recycled for later values of the same size.
/// With `.fast` kernels, a convolution followed by inference BatchNorm is folded into one convolution, and a
/// following ReLU/ReLU6/Clip runs as its epilogue (only in `forward`; `forwardAll` keeps every value).
public final class Executor {
    public let model: Model
    public let kernels: KernelSet
    public let threads: Int

    /// Parameters by full name (`layer1.0.conv1.weight`), as float arrays shared with `model`.
    private let params: [String: [Float]]
    /// Fast path: conv/linear nodes with a BatchNorm folded in: node index → (weight, bias).
    private var folded: [Int: (w: [Float], b: [Float])] = [:]
    /// Fast path: node index of a conv/linear → fused chain (indices of absorbed BN/activation nodes, activation).
    private var fusion: [Int: (absorbed: [Int], act: Activation)] = [:]
    /// Fast path: an expand 1×1 convolution's node index → the depthwise convolution that alone reads its fused chain
    /// (run together by `Fast.expandDepthwise` when the geometry allows).
    private var expandPairs: [Int: Int] = [:]
    /// Fast path: expand node → the project 1×1 convolution that alone reads the pair's output, and the Add that alone
    /// reads the project's output with the block input as its other operand (a residual), if any.
    private var projectAfter: [Int: (project: Int, add: Int?)] = [:]
    /// Fast path: a depthwise convolution that no expand 1×1 feeds → the project 1×1 convolution that alone reads its fused
    /// chain (run together by `Fast.expandDepthwise` without an expand stage).
    private var depthwiseProject: [Int: Int] = [:]
    private var programs: [ProgramKey: Program] = [:]
    /// Fast path: weights re-laid out for the kernels, made on first use; shared with the batch-shard executors.
    private let store: WeightStore
    /// Batch-shard executors (one thread each), made on the first sharded run.
    private var shards: [Executor] = []
    private var pool: [Int: [Buffer]] = [:]
    private var scratch = Buffer(count: 0)
    /// Floats held by live values during the last run, and their peak (the memory plan's effect; scratch excluded).
    private(set) var liveFloats = 0
    public private(set) var peakLiveFloats = 0
    /// When set, `forward` records each step's wall time (node name, op type, milliseconds) in `timings`.
    public var collectTimings = false
    public private(set) var timings: [(node: String, op: String, ms: Double)] = []

    public init(model: Model, kernels: KernelSet = .fast, threads: Int = 2) throws {
        try model.graph.validate()
        var params: [String: [Float]] = [:]
        var missing: [String] = []
        for spec in model.graph.parameterSpecs {
            guard let t = model.tensors[spec.key] else { missing.append(spec.key); continue }
            if t.shape != spec.shape { throw ZooError.shapeMismatch(parameter: spec.key, expected: spec.shape, got: t.shape) }
            params[spec.key] = t.data
        }
        if !missing.isEmpty { throw ZooError.missingParameters(missing) }
        self.model = model
        self.kernels = kernels
        self.threads = Swift.max(1, threads)
        self.params = params
        self.store = WeightStore()
        if kernels == .fast { planFusion() }
    }

    /// A single-threaded executor for one batch shard: the parent's parameters, fusion plan and folded weights (copy-on-write
    /// arrays, not copied) and its weight store; programs and buffers of its own.
    private init(shardOf parent: Executor) {
        model = parent.model; kernels = parent.kernels; threads = 1
        params = parent.params; folded = parent.folded; fusion = parent.fusion
        expandPairs = parent.expandPairs; projectAfter = parent.projectAfter; depthwiseProject = parent.depthwiseProject
        store = parent.store
    }

    /// Runs the graph on a batch `[N] + graph.inputShape` and returns the graph output.
    public func forward(_ input: Tensor) throws -> Tensor {
        if let n = shardCount(input) { return try shardedForward(input, shards: n) }
        lastShards = 1
        return try run(input, keepAll: false)[model.graph.output]!
    }

    /// `ZOO_SHARD=0` turns batch sharding off (A/B measurements; EngineCatalogTests compares both ways).
    nonisolated(unsafe) static var batchSharding = ProcessInfo.processInfo.environment["ZOO_SHARD"] != "0"
    /// Below this many multiply-adds per image a shard's single-threaded layers are too short to beat the split ones.
    nonisolated(unsafe) static var shardMinMACsPerImage = 1 << 26
    /// Above this many floats in one image's largest layer output, two shards' working sets crowd the shared L3: vgg11 b8
    /// (3.2 M floats per image at 224²) ran 10% slower sharded; resnet18 and googlenet b8 (0.8 M) ran 0–3% slower on near
    /// cores, and resnet18 b8 35% faster on distant ones (median 130 → 100 ms); mobilenet_v2 (1.2 M, in fused bands) b8 and
    /// b2 ran 6–9% faster in runs with both states.
    static let shardMaxValueFloats = 3 << 19
    /// Each shard reads every weight once per run, where split layers read each weight once in all: alexnet b8 (61 M
    /// weights, 2.8 G multiply-adds per 4-image shard) ran 25% slower sharded. Sharding needs this many multiply-adds per
    /// shard for each weight (resnet18 b8: 620; mobilenet_v2 b2: 86; alexnet b8: 46).
    nonisolated(unsafe) static var shardMACsPerWeight = 64

    /// Batch sharding: with the fast kernels, `threads` ≥ 2 and a batch that splits evenly, each worker runs the whole graph on
    /// its own images with one thread, instead of both workers splitting every layer. Each layer's output then stays in the
    /// cache of the core that made it; split layers hand half of every tensor to the other core, which costs little when the
    /// two vCPUs share an L3 and 1.5–1.8× the run time when the host places them on cores that do not (bench/README, session 10).
    func shardCount(_ input: Tensor) -> Int? {
        guard Self.batchSharding, kernels == .fast, threads >= 2, !collectTimings, input.shape.count == model.graph.inputShape.count + 1,
              Array(input.shape.dropFirst()) == model.graph.inputShape else { return nil }
        let batch = input.shape[0], n = threads
        guard batch >= n, batch % n == 0 else { return nil }
        if perImage == nil {
            let layers = (try? model.graph.inferLayers(batch: 1, inputShape: model.graph.inputShape)) ?? []
            perImage = (layers.reduce(0) { $0 + $1.multAdds }, layers.map { $0.outputShape.reduce(1, *) }.max() ?? 0,
                        params.values.reduce(0) { $0 + $1.count })
        }
        let (macs, largest, weights) = perImage!
        // Every shard streams all weights: worth it only when that is small against the shard's arithmetic.
        guard macs >= Self.shardMinMACsPerImage, largest <= Self.shardMaxValueFloats,
              weights * Self.shardMACsPerWeight <= macs * (batch / n) else { return nil }
        return n
    }
    private var perImage: (macs: Int, largestValue: Int, weights: Int)?

    /// Shards the last `forward` ran on (1: not sharded).
    private(set) var lastShards = 1

    private func shardedForward(_ input: Tensor, shards n: Int) throws -> Tensor {
        lastShards = n
        while shards.count < n { shards.append(Executor(shardOf: self)) }
        let per = input.shape[0] / n, imageCount = input.count / input.shape[0]
        var results = [Result<Tensor, Error>?](repeating: nil, count: n)
        let box = UnsafeSendableBox(shards)
        results.withUnsafeMutableBufferPointer { rp in
            let out = UnsafeSendableBox(rp.baseAddress!)
            Fast.parallelTasks(n, threads: n) { t in
                let lo = t * per * imageCount
                let part = Tensor(shape: [per] + Array(input.shape.dropFirst()), data: Array(input.data[lo..<(lo + per * imageCount)]))
                out.value[t] = Result { try box.value[t].run(part, keepAll: false)[box.value[t].model.graph.output]! }
            }
        }
        var parts: [Tensor] = []
        for r in results { parts.append(try r!.get()) }
        peakLiveFloats = shards.prefix(n).reduce(0) { $0 + $1.peakLiveFloats }
        var data: [Float] = []
        data.reserveCapacity(parts.reduce(0) { $0 + $1.count })
        for p in parts { data.append(contentsOf: p.data) }
        return Tensor(shape: [input.shape[0]] + Array(parts[0].shape.dropFirst()), data: data)
    }

    /// Runs the graph and returns every named value (the input and each node's output), unfused.
    public func forwardAll(_ input: Tensor) throws -> [String: Tensor] {
        try run(input, keepAll: true)
    }

    // MARK: - Fusion (fast kernels only)

    private func planFusion() {
        let g = model.graph
        var consumers: [String: Int] = [:]
        for n in g.nodes { for i in n.inputs { consumers[i, default: 0] += 1 } }
        var producer: [String: Int] = [:]
        for (i, n) in g.nodes.enumerated() { producer[n.output] = i }
        func soleConsumer(of value: String) -> Int? {
            guard value != g.output, consumers[value] == 1 else { return nil }
            return g.nodes.firstIndex { $0.inputs.contains(value) }
        }
        for (i, node) in g.nodes.enumerated() {
            var absorbed: [Int] = []
            var act = Activation.none
            var current = node.output
            switch node.op {
            case let .conv2d(a):
                if let j = soleConsumer(of: current), case let .batchNorm2d(bn) = g.nodes[j].op {
                    foldBatchNorm(conv: i, outChannels: a.outChannels, perChannel: a.inChannels / a.groups * a.kernel[0] * a.kernel[1],
                                  hasBias: a.bias, bnNode: g.nodes[j], eps: bn.eps)
                    absorbed.append(j); current = g.nodes[j].output
                }
            case .linear: break
            // A residual sum's activation (ResNet's `relu(out + identity)`) runs in the same pass as the sum.
            case .add where node.inputs.count == 2: break
            default: continue
            }
            if let j = soleConsumer(of: current) {
                switch g.nodes[j].op {
                case .relu: act = .relu
                case .relu6: act = .clip(0, 6)
                case let .clip(lo, hi): act = .clip(lo, hi)
                default: break
                }
                if act != .none { absorbed.append(j) }
            }
            if !absorbed.isEmpty { fusion[i] = (absorbed, act) }
        }
        for (i, f) in fusion {
            guard case let .conv2d(a) = g.nodes[i].op, a.kernel == [1, 1], a.groups == 1,
                  let j = soleConsumer(of: g.nodes[f.absorbed.last!].output),
                  case let .conv2d(d) = g.nodes[j].op, d.groups > 1, d.groups == d.inChannels, d.outChannels == d.inChannels,
                  g.nodes[j].inputs.count == 1 else { continue }
            expandPairs[i] = j
            let jOut = fusion[j].map { g.nodes[$0.absorbed.last!].output } ?? g.nodes[j].output
            guard let k = soleConsumer(of: jOut), case let .conv2d(p) = g.nodes[k].op, p.kernel == [1, 1], p.groups == 1,
                  g.nodes[k].inputs.count == 1 else { continue }
            let kOut = fusion[k].map { g.nodes[$0.absorbed.last!].output } ?? g.nodes[k].output
            let blockIn = g.nodes[i].inputs[0]
            var add: Int? = nil
            if let a = soleConsumer(of: kOut), case .add = g.nodes[a].op, g.nodes[a].inputs.count == 2, kOut != blockIn,
               Set(g.nodes[a].inputs) == Set([kOut, blockIn]) {
                add = a
            }
            projectAfter[i] = (k, add)
            // An add the project step absorbs keeps its own activation node.
            if let add { fusion[add] = nil }
        }
        let paired = Set(expandPairs.values)
        for (j, node) in g.nodes.enumerated() where !paired.contains(j) {
            guard case let .conv2d(d) = node.op, d.groups > 1, d.groups == d.inChannels, d.outChannels == d.inChannels,
                  node.inputs.count == 1 else { continue }
            let jOut = fusion[j].map { g.nodes[$0.absorbed.last!].output } ?? node.output
            guard let k = soleConsumer(of: jOut), case let .conv2d(p) = g.nodes[k].op, p.kernel == [1, 1], p.groups == 1,
                  g.nodes[k].inputs.count == 1 else { continue }
            depthwiseProject[j] = k
        }
    }

    private func foldBatchNorm(conv i: Int, outChannels: Int, perChannel: Int, hasBias: Bool, bnNode: Node, eps: Float) {
        let cname = model.graph.nodes[i].name
        var w = params[cname + ".weight"]!
        var b = hasBias ? params[cname + ".bias"]! : [Float](repeating: 0, count: outChannels)
        let gamma = params[bnNode.name + ".weight"]!, beta = params[bnNode.name + ".bias"]!
        let mean = params[bnNode.name + ".running_mean"]!, variance = params[bnNode.name + ".running_var"]!
        for c in 0..<outChannels {
            let s = gamma[c] / (variance[c] + eps).squareRoot()
            for k in 0..<perChannel { w[c * perChannel + k] *= s }
            b[c] = (b[c] - mean[c]) * s + beta[c]
        }
        folded[i] = (w, b)
    }

    // MARK: - Programs

    private struct ProgramKey: Hashable { var shape: [Int]; var keepAll: Bool }

    private struct Step {
        var node: Int
        var inputs: [Int]
        var inShapes: [[Int]]
        var output: Int
        var outShape: [Int]
        var act: Activation
        /// Runs a convolution with a BatchNorm folded into its weights.
        var folded: Bool
        /// Slots whose last reader is this step.
        var release: [Int]
        /// A depthwise convolution run together with this (expand 1×1) one, its activation and whether BN is folded in.
        var pair: Int? = nil
        var pairAct: Activation = .none
        var pairFolded = false
        /// The project 1×1 convolution run in the same pass, its activation, BN folding, and whether the step's input
        /// is added to its output (residual).
        var project: Int? = nil
        var projectAct: Activation = .none
        var projectFolded = false
        var residual = false
        /// This (depthwise) convolution and the project after it run as one step, without an expand stage.
        var depthwiseFirst: Bool { pair == nil && project != nil }
    }

    private struct Program {
        var slotNames: [String]
        var inputSlot: Int
        var outputSlot: Int
        var steps: [Step]
        var scratch: Int
    }

    private func program(for shape: [Int], keepAll: Bool) throws -> Program {
        let key = ProgramKey(shape: shape, keepAll: keepAll)
        if let p = programs[key] { return p }
        let g = model.graph
        let infos = try g.inferLayers(batch: shape[0], inputShape: Array(shape.dropFirst()))
        var slotOf: [String: Int] = [g.input: 0]
        var names = [g.input]
        func slot(_ name: String) -> Int {
            if let s = slotOf[name] { return s }
            slotOf[name] = names.count; names.append(name); return names.count - 1
        }
        var absorbedNodes = Set<Int>()
        var steps: [Step] = []
        var scratchNeed = 0
        for (i, node) in g.nodes.enumerated() where !absorbedNodes.contains(i) {
            var outName = node.output
            var outShape = infos[i].outputShape
            var act = Activation.none
            var isFolded = false
            if !keepAll, let f = fusion[i] {
                isFolded = folded[i] != nil
                absorbedNodes.formUnion(f.absorbed)
                let last = f.absorbed.last!
                outName = g.nodes[last].output
                outShape = infos[last].outputShape
                act = f.act
            }
            var pair: (node: Int, act: Activation, folded: Bool)? = nil
            var project: (node: Int, act: Activation, folded: Bool, residual: Bool)? = nil
            if !keepAll, kernels == .fast, let j = expandPairs[i], case let .conv2d(ea) = node.op, case let .conv2d(da) = g.nodes[j].op {
                let fj = fusion[j] ?? (absorbed: [], act: .none)
                if Fast.expandDepthwiseApplies(Conv2dGeometry(conv: ea, input: infos[i].inputShapes[0]), actE: act,
                                               Conv2dGeometry(conv: da, input: infos[j].inputShapes[0]), actD: fj.act) {
                    absorbedNodes.insert(j)
                    absorbedNodes.formUnion(fj.absorbed)
                    let last = fj.absorbed.last ?? j
                    outName = g.nodes[last].output
                    outShape = infos[last].outputShape
                    pair = (j, fj.act, folded[j] != nil)
                    if let pr = projectAfter[i], case let .conv2d(pa) = g.nodes[pr.project].op {
                        let k = pr.project, add = pr.add
                        let fk = fusion[k] ?? (absorbed: [], act: .none)
                        if Fast.expandDepthwiseProjectApplies(Conv2dGeometry(conv: ea, input: infos[i].inputShapes[0]),
                                                              Conv2dGeometry(conv: da, input: infos[j].inputShapes[0]),
                                                              Conv2dGeometry(conv: pa, input: infos[k].inputShapes[0]), actP: fk.act,
                                                              threads: threads) {
                            absorbedNodes.insert(k)
                            absorbedNodes.formUnion(fk.absorbed)
                            var last = fk.absorbed.last ?? k
                            project = (k, fk.act, folded[k] != nil, false)
                            if let a = add, infos[a].inputShapes[0] == infos[a].inputShapes[1],
                               infos[a].inputShapes[0] == infos[i].inputShapes[0] {
                                absorbedNodes.insert(a)
                                last = a
                                project?.residual = true
                            }
                            outName = g.nodes[last].output
                            outShape = infos[last].outputShape
                        }
                    }
                }
            }
            if !keepAll, kernels == .fast, pair == nil, let k = depthwiseProject[i], case let .conv2d(da) = node.op,
               case let .conv2d(pa) = g.nodes[k].op {
                let fk = fusion[k] ?? (absorbed: [], act: .none)
                if Fast.depthwiseProjectApplies(Conv2dGeometry(conv: da, input: infos[i].inputShapes[0]), actD: act,
                                                Conv2dGeometry(conv: pa, input: infos[k].inputShapes[0]), actP: fk.act, threads: threads) {
                    absorbedNodes.insert(k)
                    absorbedNodes.formUnion(fk.absorbed)
                    let last = fk.absorbed.last ?? k
                    project = (k, fk.act, folded[k] != nil, false)
                    outName = g.nodes[last].output
                    outShape = infos[last].outputShape
                }
            }
            let ins = node.inputs.map { slot($0) }
            steps.append(Step(node: i, inputs: ins, inShapes: infos[i].inputShapes, output: slot(outName),
                              outShape: outShape, act: act, folded: isFolded, release: [],
                              pair: pair?.node, pairAct: pair?.act ?? .none, pairFolded: pair?.folded ?? false,
                              project: project?.node, projectAct: project?.act ?? .none, projectFolded: project?.folded ?? false,
                              residual: project?.residual ?? false))
            if kernels == .fast {
                switch node.op {
                case let .conv2d(a): scratchNeed = Swift.max(scratchNeed, Fast.conv2dScratch(Conv2dGeometry(conv: a, input: infos[i].inputShapes[0])))
                case let .convTranspose2d(a): scratchNeed = Swift.max(scratchNeed, Fast.convTranspose2dScratch(Conv2dGeometry(convTranspose: a, input: infos[i].inputShapes[0])))
                default: break
                }
            }
        }
        let outSlot = slot(g.output)
        if !keepAll {
            var lastUse: [Int: Int] = [:]
            for (s, step) in steps.enumerated() { for i in step.inputs { lastUse[i] = s } }
            for (slotIndex, s) in lastUse where slotIndex != outSlot { steps[s].release.append(slotIndex) }
        }
        let p = Program(slotNames: names, inputSlot: 0, outputSlot: outSlot, steps: steps, scratch: scratchNeed)
        programs[key] = p
        return p
    }

    // MARK: - Running

    /// `banded`: written in row bands (`Fast.rowBands`): worker t wrote band t of every plane.
    private struct Value { var shape: [Int]; var buf: Buffer; var banded = false }

    private func allocate(_ count: Int) -> Buffer {
        liveFloats += count
        peakLiveFloats = Swift.max(peakLiveFloats, liveFloats)
        if let b = pool[count]?.popLast() { return b }
        return Buffer(count: count)
    }

    private func recycle(_ v: inout Value?) {
        guard var value = v else { return }
        v = nil
        if isKnownUniquelyReferenced(&value.buf) {
            liveFloats -= value.buf.count
            pool[value.buf.count, default: []].append(value.buf)
        }
    }

    private func run(_ input: Tensor, keepAll: Bool) throws -> [String: Tensor] {
        let g = model.graph
        guard input.shape.count == g.inputShape.count + 1, Array(input.shape.dropFirst()) == g.inputShape, input.shape[0] >= 1 else {
            let expected = "[N, " + g.inputShape.map(String.init).joined(separator: ", ") + "]"
            throw ZooError.badInput("model '\(g.name)' expects input of shape \(expected), got \(ShapeFormat.bracket(input.shape))")
        }
        let prog = try program(for: input.shape, keepAll: keepAll)
        // Row bands (batch 1) follow the cores' placement: measured at most every 0.25 s.
        if kernels == .fast && input.shape[0] == 1 && threads > 1 && Fast.rowBandsMode == .auto { WorkerPool.shared.refreshPlacement() }
        liveFloats = 0; peakLiveFloats = 0
        if scratch.count < prog.scratch { scratch = Buffer(count: prog.scratch) }
        var values = [Value?](repeating: nil, count: prog.slotNames.count)
        values[prog.inputSlot] = Value(shape: input.shape, buf: copyIn(input))
        timings.removeAll(keepingCapacity: true)
        for step in prog.steps {
            let t0 = collectTimings ? DispatchTime.now().uptimeNanoseconds : 0
            values[step.output] = try execute(step, values)
            if collectTimings {
                let node = g.nodes[step.node]
                timings.append((node.name, node.op.typeName, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6))
            }
            for r in step.release { recycle(&values[r]) }
        }
        func tensor(_ v: Value) -> Tensor {
            Tensor(shape: v.shape, data: Array(UnsafeBufferPointer(start: v.buf.p, count: v.shape.reduce(1, *))))
        }
        var out: [String: Tensor] = [:]
        if keepAll {
            for (s, name) in prog.slotNames.enumerated() { if let v = values[s] { out[name] = tensor(v) } }
        } else {
            out[g.output] = tensor(values[prog.outputSlot]!)
        }
        for s in values.indices { recycle(&values[s]) }
        return out
    }

    private func copyIn(_ t: Tensor) -> Buffer {
        let b = allocate(t.count)
        t.data.withUnsafeBufferPointer { b.p.update(from: $0.baseAddress!, count: t.count) }
        return b
    }

    private func param(_ node: Node, _ key: String) -> [Float] { params[node.name.isEmpty ? key : node.name + "." + key]! }

    private func execute(_ step: Step, _ values: [Value?]) throws -> Value {
        let node = model.graph.nodes[step.node]
        let ins = step.inputs.map { values[$0]! }
        let outCount = step.outShape.reduce(1, *)
        let fast = kernels == .fast
        let t = threads
        // Ops that only relabel their input share its buffer.
        switch node.op {
        case .flatten, .reshape, .dropout, .identity:
            return Value(shape: step.outShape, buf: ins[0].buf, banded: ins[0].banded)
        default: break
        }
        // Pooling and adds take row bands when what they read was written in bands (and so stay on the cores that hold it).
        let inBands = fast && !ins.isEmpty && ins.allSatisfy(\.banded)
        var banded = false
        let y = allocate(outCount)
        let x = UnsafePointer(ins.first?.buf.p ?? y.p)
        let s0 = step.inShapes.first ?? []
        switch node.op {
        case let .conv2d(a):
            let geo = Conv2dGeometry(conv: a, input: s0)
            banded = fast && step.pair == nil && step.project == nil && Fast.conv2dWritesBands(geo, act: step.act, threads: t)
            if fast, step.pair != nil || step.project != nil {
                runExpandDepthwise(step, geo: geo, attrs: a, x: x, y: y.p)
            } else if fast {
                // Folded (forward) and unfolded (forwardAll) weights of one node need caches of their own.
                let key = step.node * 2 + (step.folded ? 1 : 0)
                let cache = weightCache(key)
                let (wantPacked, wantPointwise, wantRowConv) = Fast.conv2dWeightForms(geo, act: step.act)
                func packed(_ w: UnsafePointer<Float>) -> PackedMatrix? {
                    guard wantPacked else { return nil }
                    let k = geo.inCPerGroup * geo.kH * geo.kW
                    return store.packed(key) { PackedMatrix(m: geo.outC, k: k, a: w, lda: k) }
                }
                func pointwise(_ w: UnsafePointer<Float>) -> PointwisePacked? {
                    guard wantPointwise else { return nil }
                    return store.pointwise(key) { PointwisePacked(m: geo.outC, k: geo.inCPerGroup * geo.kH * geo.kW, w: w) }
                }
                func rowConv(_ w: UnsafePointer<Float>) -> RowConvPacked? {
                    guard wantRowConv else { return nil }
                    return store.rowConv(key) { RowConvPacked(geo, w: w, parts: t) }
                }
                if step.folded, let f = folded[step.node] {
                    f.w.withUnsafeBufferPointer { w in f.b.withUnsafeBufferPointer { b in
                        Fast.conv2d(geo, x: x, w: w.baseAddress!, b: b.baseAddress!, act: step.act, y: y.p, scratch: scratch.p, threads: t,
                                    packed: packed(w.baseAddress!), weightCache: cache, pointwisePacked: pointwise(w.baseAddress!),
                                    rowConvPacked: rowConv(w.baseAddress!))
                    } }
                } else {
                    withParams(node, a.bias ? ["weight", "bias"] : ["weight"]) { p in
                        Fast.conv2d(geo, x: x, w: p[0], b: a.bias ? p[1] : nil, act: step.act, y: y.p, scratch: scratch.p, threads: t,
                                    packed: packed(p[0]), weightCache: cache, pointwisePacked: pointwise(p[0]),
                                    rowConvPacked: rowConv(p[0]))
                    }
                }
            } else {
                withParams(node, a.bias ? ["weight", "bias"] : ["weight"]) { p in
                    Reference.conv2d(geo, x: x, w: p[0], b: a.bias ? p[1] : nil, y: y.p)
                }
            }
        case let .convTranspose2d(a):
            let geo = Conv2dGeometry(convTranspose: a, input: s0)
            withParams(node, a.bias ? ["weight", "bias"] : ["weight"]) { p in
                if fast {
                    Fast.convTranspose2d(geo, x: x, w: p[0], b: a.bias ? p[1] : nil, y: y.p, scratch: scratch.p, threads: t)
                } else {
                    Reference.convTranspose2d(geo, x: x, w: p[0], b: a.bias ? p[1] : nil, y: y.p)
                }
            }
        case let .linear(a):
            let rows = ins[0].shape.reduce(1, *) / a.inFeatures
            withParams(node, a.bias ? ["weight", "bias"] : ["weight"]) { p in
                if fast {
                    Fast.linear(rows: rows, inFeatures: a.inFeatures, outFeatures: a.outFeatures, x: x, w: p[0],
                                b: a.bias ? p[1] : nil, act: step.act, y: y.p, threads: t)
                } else {
                    Reference.linear(rows: rows, inFeatures: a.inFeatures, outFeatures: a.outFeatures, x: x, w: p[0],
                                     b: a.bias ? p[1] : nil, y: y.p)
                }
            }
        case let .batchNorm2d(a):
            let outer = s0[0], c = s0[1], inner = s0.dropFirst(2).reduce(1, *)
            withParams(node, ["weight", "bias", "running_mean", "running_var"]) { p in
                if fast {
                    Fast.batchNorm(outer: outer, channels: c, inner: inner, eps: a.eps, x: x, weight: p[0], bias: p[1],
                                   mean: p[2], variance: p[3], act: step.act, y: y.p, threads: t)
                } else {
                    Reference.batchNorm(outer: outer, channels: c, inner: inner, eps: a.eps, x: x, weight: p[0], bias: p[1],
                                        mean: p[2], variance: p[3], y: y.p)
                }
            }
        case .relu, .relu6, .clip, .sigmoid, .tanh:
            let act: Activation
            switch node.op {
            case .relu: act = .relu
            case .relu6: act = .clip(0, 6)
            case let .clip(lo, hi): act = .clip(lo, hi)
            case .sigmoid: act = .sigmoid
            default: act = .tanh
            }
            if fast { Fast.activation(act, count: outCount, x: x, y: y.p, threads: t) }
            else { Reference.activation(act, count: outCount, x: x, y: y.p) }
        case let .softmax(axis):
            let ax = axis < 0 ? axis + s0.count : axis
            let (o, l, i) = splitAxis(s0, ax)
            if fast { Fast.softmax(outer: o, length: l, inner: i, x: x, y: y.p, threads: t) }
            else { Reference.softmax(outer: o, length: l, inner: i, x: x, y: y.p) }
        case let .maxPool2d(a):
            let geo = Pool2dGeometry(pool: a, input: s0)
            if fast { banded = Fast.maxPool2d(geo, x: x, y: y.p, threads: t, bands: inBands) } else { Reference.maxPool2d(geo, x: x, y: y.p) }
        case let .avgPool2d(a):
            let geo = Pool2dGeometry(pool: a, input: s0)
            if fast { Fast.avgPool2d(geo, x: x, y: y.p, threads: t) } else { Reference.avgPool2d(geo, x: x, y: y.p) }
        case let .adaptiveAvgPool2d(o):
            if fast {
                Fast.adaptiveAvgPool2d(planes: s0[0] * s0[1], inH: s0[2], inW: s0[3], outH: o[0], outW: o[1], x: x, y: y.p, threads: t)
            } else {
                Reference.adaptiveAvgPool2d(planes: s0[0] * s0[1], inH: s0[2], inW: s0[3], outH: o[0], outW: o[1], x: x, y: y.p)
            }
        case .globalMaxPool:
            if fast { Fast.globalMaxPool(planes: s0[0] * s0[1], plane: s0[2] * s0[3], x: x, y: y.p, threads: t) }
            else { Reference.globalMaxPool(planes: s0[0] * s0[1], plane: s0[2] * s0[3], x: x, y: y.p) }
        case .add, .mul:
            guard let geo = BroadcastGeometry(step.inShapes[0], step.inShapes[1]) else {
                throw ZooError.badInput("layer '\(node.name)': shapes \(ShapeFormat.bracket(step.inShapes[0])) and \(ShapeFormat.bracket(step.inShapes[1])) do not broadcast")
            }
            let mul: Bool
            if case .mul = node.op { mul = true } else { mul = false }
            let b = UnsafePointer(ins[1].buf.p)
            if fast { banded = Fast.binary(geo, multiply: mul, a: x, b: b, act: step.act, y: y.p, threads: t, bands: inBands) }
            else { Reference.binary(geo, multiply: mul, a: x, b: b, y: y.p) }
        case let .concat(axis):
            let ax = axis < 0 ? axis + s0.count : axis
            let (outer, _, inner) = splitAxis(s0, ax)
            let lengths = step.inShapes.map { $0[ax] }
            let ptrs = ins.map { UnsafePointer($0.buf.p) }
            if fast { Fast.concat(outer: outer, inner: inner, lengths: lengths, inputs: ptrs, y: y.p, threads: t) }
            else { Reference.concat(outer: outer, inner: inner, lengths: lengths, inputs: ptrs, y: y.p) }
        case let .lrn(a):
            let outer = s0[0], c = s0[1], inner = s0.dropFirst(2).reduce(1, *)
            if fast { Fast.lrn(a, outer: outer, channels: c, inner: inner, x: x, y: y.p, threads: t) }
            else { Reference.lrn(a, outer: outer, channels: c, inner: inner, x: x, y: y.p) }
        case let .pad(p, value):
            if fast { Fast.pad(planes: s0[0] * s0[1], inH: s0[2], inW: s0[3], p, value: value, x: x, y: y.p, threads: t) }
            else { Reference.pad(planes: s0[0] * s0[1], inH: s0[2], inW: s0[3], p, value: value, x: x, y: y.p) }
        case .constant:
            let v = param(node, "value")
            v.withUnsafeBufferPointer { y.p.update(from: $0.baseAddress!, count: v.count) }
        case .flatten, .reshape, .dropout, .identity:
            break
        }
        return Value(shape: step.outShape, buf: y, banded: banded)
    }

    /// A step that runs an expand 1×1 convolution and the depthwise convolution after it together.
    /// (With `step.depthwiseFirst`: the step's own depthwise convolution and the project after it, no expand stage.)
    private func runExpandDepthwise(_ step: Step, geo: Conv2dGeometry, attrs a: Conv2dAttrs, x: UnsafePointer<Float>,
                                    y: UnsafeMutablePointer<Float>) {
        let g = model.graph
        let j = step.pair ?? step.node
        guard case let .conv2d(da) = g.nodes[j].op else { return }
        let gd = step.depthwiseFirst ? geo : Conv2dGeometry(conv: da, input: [geo.batch, geo.outC, geo.outH, geo.outW])
        let dwFolded = step.depthwiseFirst ? step.folded : step.pairFolded, actD = step.depthwiseFirst ? step.act : step.pairAct
        let key = step.node * 2 + (step.folded ? 1 : 0)
        func expandWeights(_ w: UnsafePointer<Float>) -> PointwisePacked {
            store.pointwise(key) { PointwisePacked(m: geo.outC, k: geo.inC, w: w) }
        }
        func withExpand(_ body: (PointwisePacked?, UnsafePointer<Float>?) -> Void) {
            if step.depthwiseFirst {
                body(nil, nil)
            } else if step.folded, let f = folded[step.node] {
                f.w.withUnsafeBufferPointer { w in f.b.withUnsafeBufferPointer { b in body(expandWeights(w.baseAddress!), b.baseAddress!) } }
            } else {
                withParams(g.nodes[step.node], a.bias ? ["weight", "bias"] : ["weight"]) { p in body(expandWeights(p[0]), a.bias ? p[1] : nil) }
            }
        }
        func withDepthwise(_ body: (UnsafePointer<Float>, UnsafePointer<Float>?) -> Void) {
            if dwFolded, let f = folded[j] {
                f.w.withUnsafeBufferPointer { w in f.b.withUnsafeBufferPointer { b in body(w.baseAddress!, b.baseAddress!) } }
            } else {
                withParams(g.nodes[j], da.bias ? ["weight", "bias"] : ["weight"]) { p in body(p[0], da.bias ? p[1] : nil) }
            }
        }
        func withProject(_ body: (Fast.ProjectStage?) -> Void) {
            guard let k = step.project, case let .conv2d(pa) = g.nodes[k].op else { body(nil); return }
            let gp = Conv2dGeometry(conv: pa, input: [gd.batch, gd.outC, gd.outH, gd.outW])
            let pkey = k * 2 + (step.projectFolded ? 1 : 0)
            func packedP(_ w: UnsafePointer<Float>) -> PointwisePacked {
                store.pointwise(pkey) { PointwisePacked(m: gp.outC, k: gp.inC, w: w) }
            }
            let res = step.residual ? x : nil
            if step.projectFolded, let f = folded[k] {
                f.w.withUnsafeBufferPointer { w in f.b.withUnsafeBufferPointer { b in
                    body(Fast.ProjectStage(g: gp, w: packedP(w.baseAddress!), b: b.baseAddress!, act: step.projectAct, res: res))
                } }
            } else {
                withParams(g.nodes[k], pa.bias ? ["weight", "bias"] : ["weight"]) { p in
                    body(Fast.ProjectStage(g: gp, w: packedP(p[0]), b: pa.bias ? p[1] : nil, act: step.projectAct, res: res))
                }
            }
        }
        withExpand { we, be in
            withDepthwise { wd, bd in
                withProject { project in
                    Fast.expandDepthwise(geo, x: x, we: we, be: be, actE: step.depthwiseFirst ? .none : step.act, gd, wd: wd, bd: bd,
                                         actD: actD, project: project, y: y, threads: threads)
                }
            }
        }
    }

    /// The node's transformed-weight cache (none when `Fast.executorWeightCaches` is off: content-hashed shared cache).
    private func weightCache(_ key: Int) -> ConvWeightCache? {
        guard Fast.executorWeightCaches else { return nil }
        return store.cache(key)
    }

    /// Calls `body` with pointers to the node's named parameters, in the order given.
    private func withParams(_ node: Node, _ keys: [String], _ body: ([UnsafePointer<Float>]) -> Void) {
        func go(_ i: Int, _ acc: [UnsafePointer<Float>]) {
            if i == keys.count { body(acc); return }
            param(node, keys[i]).withUnsafeBufferPointer { go(i + 1, acc + [$0.baseAddress!]) }
        }
        go(0, [])
    }
}

/// An executor's re-laid-out weights, by conv node index × 2 + 1 when BN is folded in (valid because parameters and folded
/// weights never change), made on first use under a lock: the batch-shard executors of one executor share them.
final class WeightStore: @unchecked Sendable {
    private let lock = NSLock()
    /// Transformed (Winograd) weights.
    private var caches: [Int: ConvWeightCache] = [:]
    /// Weights packed for zoo's GEMM.
    private var packedWeights: [Int: PackedMatrix] = [:]
    /// Weights packed for `Fast.pointwiseInPlace` / `Fast.tapConv` / the fused inverted-residual block.
    private var pointwiseWeights: [Int: PointwisePacked] = [:]

    func cache(_ key: Int) -> ConvWeightCache { made(\.caches, key) { ConvWeightCache() } }
    func packed(_ key: Int, make: () -> PackedMatrix) -> PackedMatrix { made(\.packedWeights, key, make) }
    func pointwise(_ key: Int, make: () -> PointwisePacked) -> PointwisePacked { made(\.pointwiseWeights, key, make) }
    private var rowConvWeights: [Int: RowConvPacked] = [:]
    func rowConv(_ key: Int, make: () -> RowConvPacked) -> RowConvPacked { made(\.rowConvWeights, key, make) }

    /// The entry of `table` for `key`, made (under the lock) on first use.
    private func made<T>(_ table: ReferenceWritableKeyPath<WeightStore, [Int: T]>, _ key: Int, _ make: () -> T) -> T {
        lock.lock(); defer { lock.unlock() }
        if let v = self[keyPath: table][key] { return v }
        let v = make()
        self[keyPath: table][key] = v
        return v
    }
}
