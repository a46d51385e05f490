import Foundation
import Zoo

/// ONNX ModelProto → zoo Graph + tensors, for the ops zoo runs, at opsets 7 to 21. Opsets 22 to 25 are read
/// too: for the ops zoo supports they only widened the accepted element types (bfloat16, float8/4-bit),
/// with the same semantics.
public enum ONNXImport {
    public static let supportedOpsets = 7...25

    public struct Result: Sendable {
        public var model: Model
        /// Default-domain opset of the file.
        public var opset: Int
        /// The catalog architecture the graph was recognised as (parameters then carry canonical names).
        public var architecture: String?
        /// Human-readable remarks (recognition, folded BatchNorm restored, ...).
        public var notes: [String]
    }

    /// Reads an `.onnx` file (with external data) and converts it; recognises catalog architectures
    /// among `candidates` (by default the catalog graphs of the same input shape and class count).
    public static func load(_ url: URL, candidates: [(String, Graph)]? = nil) throws -> Result {
        let proto = try ONNXFile.read(url)
        var r = try convert(proto, path: url.path)
        let c = candidates ?? ONNXMatch.catalogCandidates(for: r.model.graph)
        if !c.isEmpty { r = ONNXMatch.canonicalize(r, candidates: c) }
        return r
    }

    public static func convert(_ proto: Onnx_ModelProto, path: String) throws -> Result {
        do {
            var c = try Converter(proto: proto, path: path)
            return try c.run()
        } catch let e as ZooError {
            if case .file = e { throw e }
            throw ZooError.file(path: path, message: e.description)
        }
    }

    enum Value {
        case data(String)             // a zoo value name
        case const(Onnx_TensorProto)  // a constant (initializer or Constant output)
    }

    struct Converter {
        let proto: Onnx_ModelProto
        let path: String
        var opset = 0
        var values: [String: Value] = [:]
        var shapes: [String: [Int]] = [:]    // zoo value → shape (batch included)
        var nodes: [Node] = []
        var tensors: [String: Tensor] = [:]
        var usedNames: Set<String> = []
        var producerIndex: [String: Int] = [:]   // zoo value → index in nodes
        var consumers: [String: Int] = [:]       // ONNX value → number of uses
        var materialized: [String: String] = [:] // ONNX const name → zoo value of its Constant node
        var notes: [String] = []
        var batch = 1

        init(proto: Onnx_ModelProto, path: String) throws {
            self.proto = proto; self.path = path
        }

        mutating func run() throws -> Result {
            let g = proto.graph
            // opset
            var found: Int?
            for o in proto.opsetImport where o.domain == "" || o.domain == "ai.onnx" { found = Int(o.version) }
            guard let opset = found else {
                throw ZooError.file(path: path, message: "no opset_import for the default ONNX domain")
            }
            guard supportedOpsets.contains(opset) else {
                throw ZooError.unsupported("opset \(opset) (zoo reads opsets \(supportedOpsets.lowerBound) to \(supportedOpsets.upperBound))")
            }
            self.opset = opset
            for t in g.initializer { values[t.name] = .const(t) }
            let realInputs = g.input.filter { values[$0.name] == nil }
            guard realInputs.count == 1 else {
                throw ZooError.unsupported("the graph has \(realInputs.count) inputs (\(realInputs.map(\.name).joined(separator: ", "))); zoo models take exactly one")
            }
            guard g.output.count == 1 else {
                throw ZooError.unsupported("the graph has \(g.output.count) outputs (\(g.output.map(\.name).joined(separator: ", "))); zoo models have exactly one")
            }
            let inp = realInputs[0]
            let tt = inp.type.tensorType
            if tt.elemType != Int32(Onnx_TensorProto.DataType.float.rawValue) {
                throw ZooError.unsupported("graph input '\(inp.name)' has element type \(Onnx_TensorProto.typeName(tt.elemType)); zoo runs FLOAT inputs only")
            }
            let dims = tt.shape.dim
            guard dims.count >= 2 else {
                throw ZooError.unsupported("graph input '\(inp.name)' has rank \(dims.count); zoo needs a batch dimension and at least one more")
            }
            var inShape: [Int] = []
            for (i, d) in dims.enumerated().dropFirst() {
                guard case let .dimValue(v)? = d.value, v > 0 else {
                    throw ZooError.unsupported("graph input '\(inp.name)' has no fixed size in dimension \(i); zoo needs every dimension but the batch")
                }
                inShape.append(Int(v))
            }
            if case let .dimValue(v)? = dims[0].value, v > 0 { batch = Int(v) }
            let inputName = sanitize(inp.name, fallback: "input")
            usedNames.insert(inputName)
            values[inp.name] = .data(inputName)
            shapes[inputName] = [batch] + inShape

            let order = try topologicalOrder(g)
            for n in g.node { for i in n.input where !i.isEmpty { consumers[i, default: 0] += 1 } }
            consumers[g.output[0].name, default: 0] += 1
            for idx in order { try convert(g.node[idx], index: idx) }

            let outName = g.output[0].name
            guard let ov = values[outName] else {
                throw ZooError.invalidGraph("graph output '\(outName)' is never produced")
            }
            var zooOut: String
            switch ov {
            case let .data(v): zooOut = v
            case .const: zooOut = try dataValue(outName, for: "graph output")
            }
            if zooOut == inputName {
                let name = unique("output")
                try emit(Node(name: name, op: .identity, inputs: [zooOut]))
                zooOut = name
            }
            let graph = Graph(name: g.name.isEmpty ? "onnx" : g.name, input: inputName, inputShape: inShape, output: zooOut, nodes: nodes)
            try graph.validate()
            return Result(model: Model(graph: graph, tensors: tensors), opset: opset, architecture: nil, notes: notes)
        }

        // MARK: graph structure

        func topologicalOrder(_ g: Onnx_GraphProto) throws -> [Int] {
            var producer: [String: Int] = [:]
            for (i, n) in g.node.enumerated() {
                for o in n.output where !o.isEmpty {
                    if producer[o] != nil || values[o] != nil {
                        throw ZooError.invalidGraph("value '\(o)' is produced twice (node '\(n.name)')")
                    }
                    producer[o] = i
                }
            }
            var indegree = [Int](repeating: 0, count: g.node.count)
            var users: [[Int]] = Array(repeating: [], count: g.node.count)
            for (i, n) in g.node.enumerated() {
                for inp in n.input where !inp.isEmpty {
                    if let p = producer[inp] {
                        indegree[i] += 1
                        users[p].append(i)
                    } else if values[inp] == nil {
                        throw ZooError.invalidGraph("node '\(n.name)' (\(n.opType)) reads '\(inp)', which is neither the graph input, an initializer nor a node output (missing initializer?)")
                    }
                }
            }
            if g.output.count == 1, producer[g.output[0].name] == nil, values[g.output[0].name] == nil {
                throw ZooError.invalidGraph("graph output '\(g.output[0].name)' is never produced")
            }
            // Keep the file's order when it is already topological (ONNX requires it); else sort.
            var seen = Set(values.keys)
            var inOrder = true
            for n in g.node {
                if n.input.contains(where: { !$0.isEmpty && !seen.contains($0) }) { inOrder = false; break }
                for o in n.output { seen.insert(o) }
            }
            if inOrder { return Array(g.node.indices) }
            var ready = (0..<g.node.count).filter { indegree[$0] == 0 }
            var order: [Int] = []
            var k = 0
            while k < ready.count {
                let i = ready[k]; k += 1
                order.append(i)
                for u in users[i] {
                    indegree[u] -= 1
                    if indegree[u] == 0 { ready.append(u) }
                }
            }
            if order.count < g.node.count {
                let stuck = (0..<g.node.count).first { indegree[$0] > 0 }!
                throw ZooError.invalidGraph("the graph has a cycle (through node '\(g.node[stuck].name)', \(g.node[stuck].opType))")
            }
            return order
        }

        // MARK: naming

        func sanitize(_ s: String, fallback: String) -> String {
            var t = s
            while t.hasPrefix("/") { t.removeFirst() }
            let mapped = String(t.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." ? $0 : "_" })
            let trimmed = mapped.trimmingCharacters(in: CharacterSet(charactersIn: "._"))
            return trimmed.isEmpty ? fallback : trimmed
        }

        mutating func unique(_ base: String) -> String {
            var n = base, k = 1
            while usedNames.contains(n) { k += 1; n = "\(base)_\(k)" }
            usedNames.insert(n)
            return n
        }

        mutating func emit(_ node: Node, params: [String: Tensor] = [:]) throws {
            let ins = try node.inputs.map { i -> [Int] in
                guard let s = shapes[i] else { throw ZooError.invalidGraph("node '\(node.name)' reads '\(i)' before it is produced") }
                return s
            }
            let (out, _) = try Graph.infer(node: node, inputs: ins)
            shapes[node.output] = out
            producerIndex[node.output] = nodes.count
            nodes.append(node)
            for (k, t) in params { tensors[node.name + "." + k] = t }
        }

        // MARK: values

        /// The zoo value for an ONNX input used as data (constants become Constant nodes).
        mutating func dataValue(_ name: String, for what: String) throws -> String {
            switch values[name] {
            case let .data(v)?: return v
            case let .const(t)?:
                if let v = materialized[name] { return v }
                let shape = t.dims.map(Int.init)
                let data = try t.floats(context: "tensor '\(name)'")
                let n = unique(sanitize(name, fallback: "const"))
                try emit(Node(name: n, op: .constant(shape: shape), inputs: []), params: ["value": Tensor(shape: shape, data: data)])
                materialized[name] = n
                return n
            case nil:
                throw ZooError.invalidGraph("\(what) reads '\(name)', which is never produced")
            }
        }

        func constTensor(_ name: String, node: Onnx_NodeProto, role: String) throws -> Onnx_TensorProto {
            guard case let .const(t)? = values[name] else {
                throw ZooError.unsupported("node '\(node.name)' (\(node.opType)): the \(role) '\(name)' must be a constant (initializer or Constant)")
            }
            return t
        }

        func constFloats(_ name: String, node: Onnx_NodeProto, role: String) throws -> Tensor {
            let t = try constTensor(name, node: node, role: role)
            return Tensor(shape: t.dims.map(Int.init), data: try t.floats(context: "tensor '\(name)'"))
        }

        // MARK: nodes

        struct Attrs {
            var map: [String: Onnx_AttributeProto] = [:]
            func int(_ k: String, _ d: Int) -> Int { map[k].map { Int($0.i) } ?? d }
            func float(_ k: String, _ d: Float) -> Float { map[k].map { $0.f } ?? d }
            func ints(_ k: String) -> [Int]? { map[k].map { $0.ints.map(Int.init) } }
            func string(_ k: String, _ d: String) -> String { map[k].map { String(decoding: $0.s, as: UTF8.self) } ?? d }
        }

        mutating func convert(_ n: Onnx_NodeProto, index: Int) throws {
            let op = n.opType
            let label = n.name.isEmpty ? "\(op)_\(index)" : n.name
            var node = n
            node.name = label
            let a = Attrs(map: Dictionary(n.attribute.map { ($0.name, $0) }, uniquingKeysWith: { x, _ in x }))
            func unsupported(_ m: String) -> ZooError { .unsupported("node '\(label)' (\(op), opset \(opset)): \(m)") }
            guard n.domain == "" || n.domain == "ai.onnx" else {
                throw ZooError.unsupported("ONNX op '\(n.domain).\(op)' in node '\(label)' (opset \(opset)) is not supported")
            }
            let inputs = n.input
            func input(_ i: Int) -> String? { i < inputs.count && !inputs[i].isEmpty ? inputs[i] : nil }
            func onlyFirstOutputUsed() throws {
                for o in n.output.dropFirst() where !o.isEmpty && (consumers[o] ?? 0) > 0 {
                    throw unsupported("output '\(o)' is used; zoo computes only the first output")
                }
            }
            guard let out = n.output.first, !out.isEmpty else { throw unsupported("the node has no output") }
            let zname = unique(sanitize(label, fallback: op.lowercased()))
            func x0() throws -> String {
                guard let i = input(0) else { throw unsupported("missing input") }
                return try dataValue(i, for: "node '\(label)'")
            }
            func shape(_ v: String) -> [Int] { shapes[v] ?? [] }
            func finish(_ zop: Op, _ ins: [String], params: [String: Tensor] = [:]) throws {
                try emit(Node(name: zname, op: zop, inputs: ins), params: params)
                values[out] = .data(zname)
            }
            func pads2(_ kernel: [Int], stride: [Int], dilation: [Int], inHW: [Int]) throws -> Padding2D {
                let autoPad = a.string("auto_pad", "NOTSET")
                switch autoPad {
                case "NOTSET":
                    guard let p = a.ints("pads") else { return .zero }
                    guard p.count == 4 else { throw unsupported("pads \(p) (zoo supports 2-D windows)") }
                    guard p.allSatisfy({ $0 >= 0 }) else { throw unsupported("negative pads \(p)") }
                    return Padding2D(top: p[0], left: p[1], bottom: p[2], right: p[3])
                case "VALID": return .zero
                case "SAME_UPPER", "SAME_LOWER":
                    var b = [0, 0], e = [0, 0]
                    for i in 0..<2 {
                        let outLen = (inHW[i] + stride[i] - 1) / stride[i]
                        let total = max((outLen - 1) * stride[i] + (kernel[i] - 1) * dilation[i] + 1 - inHW[i], 0)
                        if autoPad == "SAME_UPPER" { b[i] = total / 2; e[i] = total - total / 2 } else { b[i] = total - total / 2; e[i] = total / 2 }
                    }
                    return Padding2D(top: b[0], left: b[1], bottom: e[0], right: e[1])
                default: throw unsupported("auto_pad '\(autoPad)'")
                }
            }

            switch op {
            case "Conv":
                let x = try x0()
                guard let wn = input(1) else { throw unsupported("missing weight") }
                let w = try constFloats(wn, node: node, role: "weight")
                guard w.rank == 4, shape(x).count == 4 else { throw unsupported("only 2-D convolutions (4-D weight and input) are supported") }
                let group = a.int("group", 1)
                let kernel = a.ints("kernel_shape") ?? [w.shape[2], w.shape[3]]
                let stride = a.ints("strides") ?? [1, 1], dil = a.ints("dilations") ?? [1, 1]
                let p = try pads2(kernel, stride: stride, dilation: dil, inHW: Array(shape(x)[2...]))
                var params = ["weight": w]
                if let bn = input(2) { params["bias"] = try constFloats(bn, node: node, role: "bias").reshaped([w.shape[0]]) }
                try finish(.conv2d(Conv2dAttrs(inChannels: w.shape[1] * group, outChannels: w.shape[0], kernel: kernel, stride: stride,
                                               padding: p, dilation: dil, groups: group, bias: params["bias"] != nil)), [x], params: params)
            case "ConvTranspose":
                let x = try x0()
                guard let wn = input(1) else { throw unsupported("missing weight") }
                let w = try constFloats(wn, node: node, role: "weight")
                guard w.rank == 4, shape(x).count == 4 else { throw unsupported("only 2-D transposed convolutions are supported") }
                let group = a.int("group", 1)
                let kernel = a.ints("kernel_shape") ?? [w.shape[2], w.shape[3]]
                let stride = a.ints("strides") ?? [1, 1], dil = a.ints("dilations") ?? [1, 1]
                var outPad = a.ints("output_padding") ?? [0, 0]
                let autoPad = a.string("auto_pad", "NOTSET")
                var p = Padding2D.zero
                let hw = Array(shape(x)[2...])
                var target: [Int]? = a.ints("output_shape").map { Array($0.suffix(2)) }
                if target == nil && (autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER") { target = hw.enumerated().map { $0.element * stride[$0.offset] } }
                if let t = target {
                    var b = [0, 0], e = [0, 0]
                    for i in 0..<2 {
                        let total = stride[i] * (hw[i] - 1) + outPad[i] + (kernel[i] - 1) * dil[i] + 1 - t[i]
                        if total < 0 { outPad[i] -= total; continue }
                        if autoPad == "SAME_UPPER" { b[i] = total / 2; e[i] = total - total / 2 } else { b[i] = total - total / 2; e[i] = total / 2 }
                    }
                    p = Padding2D(top: b[0], left: b[1], bottom: e[0], right: e[1])
                } else if autoPad == "NOTSET" {
                    p = try pads2(kernel, stride: stride, dilation: dil, inHW: hw)
                }
                var params = ["weight": w]
                if let bn = input(2) { params["bias"] = try constFloats(bn, node: node, role: "bias").reshaped([w.shape[1] * group]) }
                try finish(.convTranspose2d(ConvTranspose2dAttrs(inChannels: w.shape[0], outChannels: w.shape[1] * group, kernel: kernel, stride: stride,
                                                                 padding: p, outputPadding: outPad, dilation: dil, groups: group,
                                                                 bias: params["bias"] != nil)), [x], params: params)
            case "BatchNormalization":
                try onlyFirstOutputUsed()
                if a.int("training_mode", 0) != 0 { throw unsupported("training_mode=1") }
                if opset < 9 && a.int("spatial", 1) != 1 { throw unsupported("spatial=0") }
                let x = try x0()
                let names = (1...4).map { input($0) }
                guard names.allSatisfy({ $0 != nil }) else { throw unsupported("missing scale, bias, mean or var") }
                let t = try zip(["weight", "bias", "running_mean", "running_var"], names).map { try ($0.0, constFloats($0.1!, node: node, role: $0.0)) }
                let c = t[0].1.count
                var params: [String: Tensor] = [:]
                for (k, v) in t { params[k] = v.reshaped([c]) }
                try finish(.batchNorm2d(BatchNormAttrs(features: c, eps: a.float("epsilon", 1e-5), momentum: Float(((1 - Double(a.float("momentum", 0.9))) * 1e6).rounded() / 1e6))), [x], params: params)
            case "Gemm":
                let x = try x0()
                if a.int("transA", 0) != 0 { throw unsupported("transA=1") }
                guard shape(x).count == 2 else { throw unsupported("input A must be 2-D") }
                guard let bn = input(1) else { throw unsupported("missing B") }
                var w = try constFloats(bn, node: node, role: "B")
                guard w.rank == 2 else { throw unsupported("B must be 2-D") }
                if a.int("transB", 0) == 0 { w = transpose2(w) }
                let alpha = a.float("alpha", 1), beta = a.float("beta", 1)
                if alpha != 1 { w.data = w.data.map { $0 * alpha } }
                let outF = w.shape[0]
                var params = ["weight": w]
                if let cn = input(2) {
                    let c = try constFloats(cn, node: node, role: "C")
                    let nonOne = c.shape.filter { $0 != 1 }
                    var bias: [Float]
                    if c.count == 1 { bias = [Float](repeating: c.data[0], count: outF) }
                    else if c.count == outF && c.shape.last == outF && nonOne.count <= 1 { bias = c.data }
                    else { throw unsupported("C of shape \(c.shape) is not a per-output bias") }
                    if beta != 1 { bias = bias.map { $0 * beta } }
                    params["bias"] = Tensor(shape: [outF], data: bias)
                }
                try finish(.linear(LinearAttrs(inFeatures: w.shape[1], outFeatures: outF, bias: params["bias"] != nil)), [x], params: params)
            case "MatMul":
                guard let bn = input(1), case .const = values[bn] ?? .data("") else { throw unsupported("only MatMul with a constant 2-D right-hand side (a linear layer) is supported") }
                let x = try x0()
                let b = try constFloats(bn, node: node, role: "B")
                guard b.rank == 2, shape(x).count >= 2 else { throw unsupported("only MatMul with a constant 2-D right-hand side (a linear layer) is supported") }
                try finish(.linear(LinearAttrs(inFeatures: b.shape[0], outFeatures: b.shape[1], bias: false)), [x], params: ["weight": transpose2(b)])
            case "Add", "Mul", "Sum":
                guard inputs.count == 2, let l = input(0), let r = input(1) else { throw unsupported("takes exactly two inputs here") }
                // MatMul + Add(constant bias) → one linear layer with bias.
                if op == "Add" {
                    for (d, c) in [(l, r), (r, l)] {
                        if case let .data(v)? = values[d], case let .const(ct)? = values[c], consumers[d] == 1,
                           let pi = producerIndex[v], pi == nodes.count - 1, case var .linear(la) = nodes[pi].op, !la.bias,
                           ct.elementCount == la.outFeatures, ct.dims.last.map(Int.init) == la.outFeatures {
                            la.bias = true
                            nodes[pi].op = .linear(la)
                            tensors[nodes[pi].name + ".bias"] = Tensor(shape: [la.outFeatures], data: try ct.floats(context: "tensor '\(c)'"))
                            values[out] = .data(v)
                            return
                        }
                    }
                }
                let lv = try dataValue(l, for: "node '\(label)'"), rv = try dataValue(r, for: "node '\(label)'")
                try finish(op == "Mul" ? .mul : .add, [lv, rv])
            case "Relu": try finish(.relu, [try x0()])
            case "Sigmoid": try finish(.sigmoid, [try x0()])
            case "Tanh": try finish(.tanh, [try x0()])
            case "Clip":
                let x = try x0()
                var lo = -Float.greatestFiniteMagnitude, hi = Float.greatestFiniteMagnitude
                if opset < 11 {
                    lo = a.float("min", lo); hi = a.float("max", hi)
                } else {
                    if let m = input(1) { lo = try constFloats(m, node: node, role: "min").data.first ?? lo }
                    if let m = input(2) { hi = try constFloats(m, node: node, role: "max").data.first ?? hi }
                }
                try finish(lo == 0 && hi == 6 ? .relu6 : .clip(min: lo, max: hi), [x])
            case "Softmax":
                let x = try x0()
                let r = shape(x).count
                if opset >= 13 {
                    try finish(.softmax(axis: a.int("axis", -1)), [x])
                } else {
                    let ax = a.int("axis", 1)
                    let axn = ax < 0 ? ax + r : ax
                    guard axn == r - 1 else {
                        throw unsupported("Softmax before opset 13 with axis \(ax) on a rank-\(r) input flattens the dimensions from the axis on; zoo supports it only where that equals a softmax over the last axis")
                    }
                    try finish(.softmax(axis: axn), [x])
                }
            case "MaxPool", "AveragePool":
                try onlyFirstOutputUsed()
                let x = try x0()
                guard shape(x).count == 4, let kernel = a.ints("kernel_shape"), kernel.count == 2 else { throw unsupported("only 2-D pooling is supported") }
                let stride = a.ints("strides") ?? [1, 1], dil = a.ints("dilations") ?? [1, 1]
                let p = try pads2(kernel, stride: stride, dilation: dil, inHW: Array(shape(x)[2...]))
                let attrs = Pool2dAttrs(kernel: kernel, stride: stride, padding: p, dilation: dil, ceilMode: a.int("ceil_mode", 0) != 0,
                                        countIncludePad: op == "MaxPool" || a.int("count_include_pad", 0) != 0)
                try finish(op == "MaxPool" ? .maxPool2d(attrs) : .avgPool2d(attrs), [x])
            case "GlobalAveragePool", "GlobalMaxPool":
                let x = try x0()
                guard shape(x).count == 4 else { throw unsupported("only 4-D (NCHW) inputs are supported") }
                try finish(op == "GlobalMaxPool" ? .globalMaxPool : .adaptiveAvgPool2d(output: [1, 1]), [x])
            case "Flatten":
                let x = try x0()
                let s = shape(x)
                let ax = a.int("axis", 1)
                let axn = ax < 0 ? ax + s.count : ax
                guard axn >= 1, axn < s.count, s[1..<axn].allSatisfy({ $0 == 1 }) else {
                    throw unsupported("Flatten with axis \(ax) on shape \(s) merges the batch dimension")
                }
                try finish(.flatten(startDim: 1), [x])
            case "Reshape":
                let x = try x0()
                guard let sn = input(1) else { throw unsupported("missing shape") }
                let target = try constTensor(sn, node: node, role: "shape").ints(context: "tensor '\(sn)'").map(Int.init)
                if opset >= 14 && a.int("allowzero", 0) != 0 && target.contains(0) { throw unsupported("allowzero=1 with a zero in the shape") }
                let s = shape(x)
                let per = s.dropFirst().reduce(1, *)
                guard let first = target.first else { throw unsupported("empty target shape") }
                let rest = Array(target.dropFirst())
                let restKnown = rest.enumerated().map { $0.element == 0 && $0.offset + 1 < s.count ? s[$0.offset + 1] : $0.element }
                let keepsBatch = first == 0 || (first == -1 && !rest.contains(-1) && restKnown.reduce(1, *) == per)
                    || (first == s[0] && (rest.contains(-1) || restKnown.reduce(1, *) == per))
                guard keepsBatch else { throw unsupported("Reshape to \(target) from \(s) changes the batch dimension") }
                try finish(.reshape(shape: rest), [x])
            case "Transpose":
                let x = try x0()
                let s = shape(x)
                let perm = a.ints("perm") ?? Array((0..<s.count).reversed())
                if perm == Array(0..<s.count) { try finish(.identity, [x]); break }
                let moved = perm.filter { s[$0] != 1 }
                guard perm.first == 0, moved == moved.sorted(), perm.count == s.count else {
                    throw unsupported("Transpose with perm \(perm) on shape \(s) moves data (only layout no-op transposes are supported)")
                }
                try finish(.reshape(shape: perm.dropFirst().map { s[$0] }), [x])
            case "Dropout":
                try onlyFirstOutputUsed()
                let x = try x0()
                var ratio = a.float("ratio", 0.5)
                if opset >= 12 {
                    ratio = 0.5
                    if let r = input(1) { ratio = try constFloats(r, node: node, role: "ratio").data.first ?? 0.5 }
                    if let t = input(2), try constFloats(t, node: node, role: "training_mode").data.first ?? 0 != 0 { throw unsupported("training_mode=true") }
                }
                try finish(.dropout(p: ratio), [x])
            case "Concat":
                guard let ax = a.map["axis"].map({ Int($0.i) }) else { throw unsupported("missing axis") }
                let ins = try inputs.filter { !$0.isEmpty }.map { try dataValue($0, for: "node '\(label)'") }
                guard let f = ins.first else { throw unsupported("no inputs") }
                let r = shape(f).count
                let axn = ax < 0 ? ax + r : ax
                guard axn >= 1 else { throw unsupported("concatenation along the batch axis") }
                try finish(.concat(axis: axn), ins)
            case "LRN":
                let x = try x0()
                guard let size = a.map["size"].map({ Int($0.i) }) else { throw unsupported("missing size") }
                guard size % 2 == 1 else { throw unsupported("even size \(size) (PyTorch and ONNX place an even window differently)") }
                try finish(.lrn(LRNAttrs(size: size, alpha: a.float("alpha", 1e-4), beta: a.float("beta", 0.75), k: a.float("bias", 1))), [x])
            case "Pad":
                let x = try x0()
                let s = shape(x)
                var pads: [Int], value: Float = 0, mode = a.string("mode", "constant")
                if opset < 11 {
                    pads = a.ints("pads") ?? []
                    value = a.float("value", 0)
                } else {
                    guard let pn = input(1) else { throw unsupported("missing pads") }
                    pads = try constTensor(pn, node: node, role: "pads").ints(context: "tensor '\(pn)'").map(Int.init)
                    if let v = input(2) { value = try constFloats(v, node: node, role: "constant_value").data.first ?? 0 }
                    if let axn = input(3) {
                        let axes = try constTensor(axn, node: node, role: "axes").ints(context: "tensor '\(axn)'").map { Int($0) < 0 ? Int($0) + s.count : Int($0) }
                        var full = [Int](repeating: 0, count: 2 * s.count)
                        guard pads.count == 2 * axes.count else { throw unsupported("pads \(pads) do not match axes \(axes)") }
                        for (i, ax) in axes.enumerated() { full[ax] = pads[i]; full[ax + s.count] = pads[i + axes.count] }
                        pads = full
                    }
                }
                mode = mode.lowercased()
                guard mode == "constant" else { throw unsupported("mode '\(mode)' (only constant padding)") }
                guard s.count == 4, pads.count == 8, pads[0] == 0, pads[1] == 0, pads[4] == 0, pads[5] == 0, pads.allSatisfy({ $0 >= 0 }) else {
                    throw unsupported("pads \(pads) on shape \(s) (only non-negative padding of H and W in NCHW)")
                }
                try finish(.pad(Padding2D(top: pads[2], left: pads[3], bottom: pads[6], right: pads[7]), value: value), [x])
            case "Identity":
                guard let i = input(0) else { throw unsupported("missing input") }
                if case .const? = values[i] { values[out] = values[i]; usedNames.remove(zname); return }
                try finish(.identity, [try x0()])
            case "Constant":
                var t: Onnx_TensorProto
                if let v = a.map["value"] { t = v.t }
                else if let v = a.map["value_float"] { t = Onnx_TensorProto(name: out, float: Tensor(shape: [], data: [v.f])) }
                else if let v = a.map["value_floats"] { t = Onnx_TensorProto(name: out, float: Tensor(shape: [v.floats.count], data: v.floats)) }
                else if let v = a.map["value_int"] { t = Onnx_TensorProto(name: out, int64: [v.i], dims: []) }
                else if let v = a.map["value_ints"] { t = Onnx_TensorProto(name: out, int64: v.ints, dims: [v.ints.count]) }
                else { throw unsupported("only tensor, float(s) and int(s) constants are supported") }
                t.name = out
                values[out] = .const(t)
                usedNames.remove(zname)
            default:
                throw ZooError.unsupported("ONNX op '\(op)' in node '\(label)' at opset \(opset)")
            }
        }

        func transpose2(_ t: Tensor) -> Tensor {
            let r = t.shape[0], c = t.shape[1]
            var d = [Float](repeating: 0, count: r * c)
            for i in 0..<r { for j in 0..<c { d[j * r + i] = t.data[i * c + j] } }
            return Tensor(shape: [c, r], data: d)
        }
    }
}
