import Foundation
import Zoo

/// Keras full-model `.h5` files (root attribute `model_config` + group `model_weights`), Keras 2
/// (`conv/kernel:0`, old `inbound_nodes` lists) and Keras 3 (`conv/kernel`, `args` inbound nodes).
///
/// Naming rules Keras → zoo (node name = Keras layer name; weights are taken by position in the
/// layer's `weight_names`, so `kernel:0`, `kernel` and `vars/0` spellings all work):
///
/// | Keras layer            | Keras weight          | zoo tensor                  | transform                      |
/// |------------------------|-----------------------|-----------------------------|--------------------------------|
/// | Conv2D                 | kernel (H,W,I,O)      | `<layer>.weight` (O,I,H,W)  | HWIO → OIHW                    |
/// |                        | bias                  | `<layer>.bias`              |                                |
/// | DepthwiseConv2D        | depthwise_kernel (H,W,C,M) | `<layer>.weight` (C·M,1,H,W) | out channel c·M+m         |
/// |                        | bias                  | `<layer>.bias`              |                                |
/// | SeparableConv2D        | depthwise_kernel      | `<layer>.depthwise.weight`  | as DepthwiseConv2D, no bias    |
/// |                        | pointwise_kernel      | `<layer>.pointwise.weight`  | HWIO → OIHW                    |
/// |                        | bias                  | `<layer>.pointwise.bias`    |                                |
/// | Dense                  | kernel (I,O)          | `<layer>.weight` (O,I)      | transposed; after Flatten of an image the inputs are permuted from NHWC to NCHW flatten order |
/// |                        | bias                  | `<layer>.bias`              |                                |
/// | BatchNormalization     | gamma, beta           | `<layer>.weight`, `.bias`   | 1 / 0 when scale / center off  |
/// |                        | moving_mean, moving_variance | `<layer>.running_mean`, `.running_var` | momentum = 1 − Keras momentum |
///
/// A layer's fused `activation` becomes an extra node `<layer>.activation`; 'same' padding becomes
/// explicit (extra row/column at the bottom/right when the total is odd, as Keras does).
public enum KerasImport {
    public struct Result {
        public var model: Model
        /// What was renamed or transposed, one line per tensor or layer.
        public var report: [String]
    }

    /// True when `path` is HDF5 with a root `model_config` attribute.
    public static func isKerasModel(path: String) -> Bool {
        guard H5.looksLikeHDF5(path: path), let f = try? H5File.open(path: path) else { return false }
        return f.root.hasAttribute("model_config")
    }

    public static func read(path: String) throws -> Result {
        let f = try H5File.open(path: path)
        guard f.root.hasAttribute("model_config") else {
            throw ZooError.file(path: path, message: "not a Keras full-model file (no root attribute 'model_config'; weights-only files need --arch)")
        }
        let configText = try f.root.stringAttribute("model_config")
        guard let cfg = (try? JSONSerialization.jsonObject(with: Data(configText.utf8))) as? [String: Any] else {
            throw ZooError.file(path: path, message: "model_config is not a JSON object")
        }
        let weights: H5Group = f.root.kind(of: "model_weights") == .group ? try f.root.group("model_weights") : f.root
        var b = Builder(path: path, weights: weights)
        try b.build(cfg)
        let graph = Graph(name: b.modelName, input: "input", inputShape: b.inputShape, output: b.outputValue, nodes: b.nodes)
        do { try graph.validate() } catch let e as ZooError {
            throw ZooError.file(path: path, message: "converted architecture is invalid: \(e.description)")
        }
        let model: Model
        do { model = try Model.load(graph: graph, stateDict: b.tensors) } catch let e as ZooError {
            throw ZooError.file(path: path, message: e.description)
        }
        return Result(model: model, report: b.report)
    }
}

/// A value of the converted graph: its zoo name and shape without batch ([C,H,W] or [F]).
private struct Value {
    var name: String
    var shape: [Int]
    /// Set when this 1-D value is an image flattened in Keras' (H,W,C) order: the (C,H,W) it came from.
    var flatFrom: [Int]?
}

private struct KLayer {
    var className: String
    var name: String
    var config: [String: Any]
    /// Names of the Keras layers whose outputs feed this layer (first call only).
    var inputs: [String]
}

private struct Builder {
    let path: String
    let weights: H5Group
    var modelName = "keras_model"
    var inputShape: [Int] = []
    var outputValue = ""
    var nodes: [Node] = []
    var tensors: [String: Tensor] = [:]
    var report: [String] = []
    var values: [String: Value] = [:]

    init(path: String, weights: H5Group) { self.path = path; self.weights = weights }

    func err(_ m: String) -> ZooError { ZooError.file(path: path, message: m) }

    mutating func build(_ cfg: [String: Any]) throws {
        let cls = cfg["class_name"] as? String ?? ""
        var config = cfg["config"] as? [String: Any] ?? [:]
        if let list = cfg["config"] as? [[String: Any]] { config = ["layers": list] }  // very old Sequential
        modelName = config["name"] as? String ?? "keras_model"
        guard let layerList = config["layers"] as? [[String: Any]] else {
            throw err("model_config has no layer list (class \(cls))")
        }
        var layers: [KLayer] = []
        for l in layerList {
            let lc = l["config"] as? [String: Any] ?? [:]
            let name = l["name"] as? String ?? lc["name"] as? String ?? ""
            layers.append(KLayer(className: l["class_name"] as? String ?? "?", name: name, config: lc,
                                 inputs: try inboundNames(l, name)))
        }
        switch cls {
        case "Sequential":
            var prev: String? = nil
            for (i, var l) in layers.enumerated() {
                if l.className == "InputLayer" { try addInput(l); prev = l.name; continue }
                if prev == nil {
                    // Keras 2: the first layer carries batch_input_shape.
                    guard let shape = (l.config["batch_input_shape"] ?? l.config["batch_shape"]) as? [Any] else {
                        throw err("Sequential model without an input shape")
                    }
                    try addInput(KLayer(className: "InputLayer", name: "input_\(i)", config: ["batch_shape": shape], inputs: []))
                    prev = "input_\(i)"
                }
                l.inputs = [prev!]
                try convert(l)
                prev = l.name
            }
            guard let last = prev, let v = values[last] else { throw err("Sequential model has no layers") }
            outputValue = v.name
        case "Functional", "Model":
            let ins = refs(config["input_layers"])
            let outs = refs(config["output_layers"])
            guard ins.count == 1, outs.count == 1 else {
                throw err("only models with one input and one output are supported (found \(ins.count) inputs, \(outs.count) outputs)")
            }
            for l in layers {
                if l.className == "InputLayer" { try addInput(l) } else { try convert(l) }
            }
            guard let v = values[outs[0]] else { throw err("output layer '\(outs[0])' not found") }
            outputValue = v.name
        default:
            throw err("model class '\(cls)' is not supported (Sequential and Functional are)")
        }
    }

    /// ["a", 0, 0] or [["a", 0, 0], ...] → ["a", ...]
    func refs(_ any: Any?) -> [String] {
        guard let arr = any as? [Any] else { return [] }
        if let s = arr.first as? String { return [s] }
        return arr.compactMap { ($0 as? [Any])?.first as? String }
    }

    func inboundNames(_ layer: [String: Any], _ name: String) throws -> [String] {
        guard let nodes = layer["inbound_nodes"] as? [Any], !nodes.isEmpty else { return [] }
        if nodes.count > 1 {
            throw err("layer '\(name)' is called \(nodes.count) times (shared layers are not supported)")
        }
        if let node = nodes[0] as? [String: Any] {  // Keras 3
            var out: [String] = []
            func walk(_ x: Any) {
                if let d = x as? [String: Any] {
                    if d["class_name"] as? String == "__keras_tensor__",
                       let h = (d["config"] as? [String: Any])?["keras_history"] as? [Any], let n = h.first as? String {
                        out.append(n)
                    }
                } else if let a = x as? [Any] { a.forEach(walk) }
            }
            walk(node["args"] ?? [])
            return out
        }
        if let node = nodes[0] as? [Any] {  // Keras 2: [[name, node, tensor, kwargs], ...]
            return node.compactMap { ($0 as? [Any])?.first as? String }
        }
        return []
    }

    mutating func addInput(_ l: KLayer) throws {
        guard let shape = (l.config["batch_shape"] ?? l.config["batch_input_shape"]) as? [Any], shape.count == 4,
              let h = shape[1] as? Int, let w = shape[2] as? Int, let c = shape[3] as? Int else {
            throw err("input layer '\(l.name)' must have a known image shape (None, H, W, C)")
        }
        guard inputShape.isEmpty else { throw err("more than one input layer ('\(l.name)')") }
        inputShape = [c, h, w]
        values[l.name] = Value(name: "input", shape: [c, h, w])
        report.append("input '\(l.name)': NHWC (N,\(h),\(w),\(c)) → NCHW (N,\(c),\(h),\(w))")
    }

    // MARK: weights

    /// The layer's weights in `weight_names` order, as (name, shape, data).
    func layerWeights(_ l: KLayer) throws -> [(String, [Int], [Float])] {
        guard weights.kind(of: l.name) == .group else { return [] }
        let g = try weights.group(l.name)
        guard g.hasAttribute("weight_names"), let names = try? g.stringsAttribute("weight_names") else { return [] }
        var out: [(String, [Int], [Float])] = []
        for n in names {
            var grp = g
            let parts = n.split(separator: "/").map(String.init)
            for p in parts.dropLast() { grp = try grp.group(p) }
            guard let last = parts.last else { continue }
            let ds: H5Dataset
            do { ds = try grp.dataset(last) } catch {
                throw err("dataset 'model_weights/\(l.name)/\(n)' missing (weights of layer '\(l.name)')")
            }
            let dt = try ds.dtype()
            guard dt == .float32 || dt == .float64 else {
                throw err("weight 'model_weights/\(l.name)/\(n)' has type \(dt), expected float32")
            }
            out.append((n, try ds.shape(), try ds.readFloats()))
        }
        return out
    }

    func expectWeights(_ l: KLayer, _ w: [(String, [Int], [Float])], _ shapes: [[Int]], _ what: [String]) throws {
        guard w.count == shapes.count else {
            throw err("layer '\(l.name)' (\(l.className)) has \(w.count) weights, expected \(shapes.count) (\(what.joined(separator: ", ")))")
        }
        for (i, s) in shapes.enumerated() where w[i].1 != s {
            throw err("weight 'model_weights/\(l.name)/\(w[i].0)' has shape \(ShapeFormat.bracket(w[i].1)), layer '\(l.name)' (\(l.className)) expects \(ShapeFormat.bracket(s)) for its \(what[i])")
        }
    }

    // MARK: helpers

    func input(_ l: KLayer, _ i: Int = 0) throws -> Value {
        guard i < l.inputs.count, let v = values[l.inputs[i]] else {
            throw err("layer '\(l.name)' (\(l.className)) has no input \(i)")
        }
        return v
    }

    func ints(_ any: Any?, _ n: Int, default d: [Int]? = nil) -> [Int]? {
        if let i = any as? Int { return [Int](repeating: i, count: n) }
        if let a = any as? [Any] {
            let v = a.compactMap { $0 as? Int }
            return v.count == n ? v : nil
        }
        return d
    }

    func image(_ l: KLayer, _ v: Value) throws -> (Int, Int, Int) {
        guard v.shape.count == 3 else {
            throw err("layer '\(l.name)' (\(l.className)) needs an image input (H, W, C); its input has shape \(ShapeFormat.bracket(v.shape))")
        }
        if let df = l.config["data_format"] as? String, df != "channels_last" {
            throw err("layer '\(l.name)' (\(l.className)) uses data_format '\(df)'; only channels_last is supported")
        }
        return (v.shape[0], v.shape[1], v.shape[2])
    }

    /// Explicit padding for Keras 'same' / 'valid' along one axis.
    func pads(_ padding: String, size: Int, kernel: Int, stride: Int, dilation: Int, _ l: KLayer) throws -> (Int, Int) {
        switch padding {
        case "valid": return (0, 0)
        case "same":
            let eff = (kernel - 1) * dilation + 1
            let out = (size + stride - 1) / stride
            let total = max((out - 1) * stride + eff - size, 0)
            return (total / 2, total - total / 2)
        default: throw err("layer '\(l.name)' (\(l.className)) has padding '\(padding)'; only 'valid' and 'same' are supported")
        }
    }

    mutating func emit(_ name: String, _ op: Op, _ inputs: [String], shape: [Int], flatFrom: [Int]? = nil, keras: String? = nil) {
        nodes.append(Node(name: name, op: op, inputs: inputs))
        if let keras { values[keras] = Value(name: name, shape: shape, flatFrom: flatFrom) }
    }

    /// Fused `activation` of Conv/Dense: an extra node, or nothing for linear.
    mutating func activation(_ l: KLayer, from v: Value) throws {
        let a = l.config["activation"] as? String ?? "linear"
        if a == "linear" { values[l.name] = v; return }
        guard let op = activationOp(a) else {
            throw err("layer '\(l.name)' (\(l.className)) uses activation '\(a)', which is not supported")
        }
        emit(l.name + ".activation", op, [v.name], shape: v.shape, flatFrom: v.flatFrom, keras: l.name)
    }

    func activationOp(_ a: String) -> Op? {
        switch a {
        case "relu": return .relu
        case "relu6": return .relu6
        case "sigmoid": return .sigmoid
        case "tanh": return .tanh
        case "softmax": return .softmax(axis: 1)
        case "linear": return .identity
        default: return nil
        }
    }

    static func hwioToOIHW(_ k: [Float], _ kh: Int, _ kw: Int, _ ci: Int, _ co: Int) -> [Float] {
        var out = [Float](repeating: 0, count: k.count)
        for y in 0..<kh { for x in 0..<kw { for i in 0..<ci { for o in 0..<co {
            out[((o * ci + i) * kh + y) * kw + x] = k[((y * kw + x) * ci + i) * co + o]
        } } } }
        return out
    }

    /// (H,W,C,M) depthwise kernel → (C·M, 1, H, W); output channel c·M + m.
    static func depthwiseToOIHW(_ k: [Float], _ kh: Int, _ kw: Int, _ c: Int, _ m: Int) -> [Float] {
        var out = [Float](repeating: 0, count: k.count)
        for y in 0..<kh { for x in 0..<kw { for ch in 0..<c { for j in 0..<m {
            out[((ch * m + j) * kh + y) * kw + x] = k[((y * kw + x) * c + ch) * m + j]
        } } } }
        return out
    }

    // MARK: layers

    mutating func convert(_ l: KLayer) throws {
        switch l.className {
        case "Conv2D": try conv(l)
        case "DepthwiseConv2D": try depthwise(l)
        case "SeparableConv2D": try separable(l)
        case "Dense": try dense(l)
        case "BatchNormalization": try batchNorm(l)
        case "MaxPooling2D", "AveragePooling2D": try pool(l)
        case "GlobalAveragePooling2D":
            let v = try input(l)
            let (c, _, _) = try image(l, v)
            let keep = l.config["keepdims"] as? Bool ?? false
            if keep {
                emit(l.name, .adaptiveAvgPool2d(output: [1, 1]), [v.name], shape: [c, 1, 1], keras: l.name)
            } else {
                emit(l.name + ".pool", .adaptiveAvgPool2d(output: [1, 1]), [v.name], shape: [c, 1, 1])
                emit(l.name, .flatten(startDim: 1), [l.name + ".pool"], shape: [c], keras: l.name)
            }
        case "Flatten":
            let v = try input(l)
            if v.shape.count == 1 { values[l.name] = v; return }
            let n = v.shape.reduce(1, *)
            let needsPermute = v.shape.count == 3 && v.shape[1] * v.shape[2] > 1 && v.shape[0] > 1
            emit(l.name, .flatten(startDim: 1), [v.name], shape: [n], flatFrom: needsPermute ? v.shape : nil, keras: l.name)
            if needsPermute { report.append("layer '\(l.name)' (Flatten): NHWC flatten order; the next Dense's input rows are permuted to NCHW order") }
        case "Reshape": try reshape(l)
        case "Dropout":
            let v = try input(l)
            let p = (l.config["rate"] as? Double).map(Float.init) ?? 0.5
            emit(l.name, .dropout(p: p), [v.name], shape: v.shape, flatFrom: v.flatFrom, keras: l.name)
        case "Activation":
            let v = try input(l)
            let a = l.config["activation"] as? String ?? "linear"
            guard let op = activationOp(a) else {
                throw err("layer '\(l.name)' (Activation) uses activation '\(a)', which is not supported")
            }
            emit(l.name, op, [v.name], shape: v.shape, flatFrom: v.flatFrom, keras: l.name)
        case "ReLU":
            let v = try input(l)
            let maxValue = l.config["max_value"] as? Double
            let slope = l.config["negative_slope"] as? Double ?? 0
            let threshold = l.config["threshold"] as? Double ?? 0
            guard slope == 0, threshold == 0 else {
                throw err("layer '\(l.name)' (ReLU) has negative_slope \(slope) / threshold \(threshold); only plain ReLU with max_value is supported")
            }
            let op: Op = maxValue == nil ? .relu : maxValue == 6 ? .relu6 : .clip(min: 0, max: Float(maxValue!))
            emit(l.name, op, [v.name], shape: v.shape, flatFrom: v.flatFrom, keras: l.name)
        case "Softmax":
            let v = try input(l)
            let axis = ints(l.config["axis"], 1) ?? [-1]
            guard axis == [-1] || axis == [v.shape.count] else {
                throw err("layer '\(l.name)' (Softmax) has axis \(axis); only the channel axis (-1) is supported")
            }
            emit(l.name, .softmax(axis: 1), [v.name], shape: v.shape, flatFrom: v.flatFrom, keras: l.name)
        case "Add":
            guard l.inputs.count >= 2 else { throw err("layer '\(l.name)' (Add) needs two inputs") }
            var acc = try input(l, 0)
            for i in 1..<l.inputs.count {
                let v = try input(l, i)
                guard v.shape == acc.shape, v.flatFrom == acc.flatFrom else {
                    throw err("layer '\(l.name)' (Add): inputs of shapes \(ShapeFormat.bracket(acc.shape)) and \(ShapeFormat.bracket(v.shape)) differ")
                }
                let name = i == l.inputs.count - 1 ? l.name : l.name + ".\(i)"
                emit(name, .add, [acc.name, v.name], shape: v.shape, flatFrom: v.flatFrom)
                acc = Value(name: name, shape: v.shape, flatFrom: v.flatFrom)
            }
            values[l.name] = acc
        case "Concatenate":
            let ins = try (0..<l.inputs.count).map { try input(l, $0) }
            guard let first = ins.first else { throw err("layer '\(l.name)' (Concatenate) has no inputs") }
            let rank = first.shape.count
            let axis = l.config["axis"] as? Int ?? -1
            guard axis == -1 || axis == rank else {
                throw err("layer '\(l.name)' (Concatenate) has axis \(axis); only the channel axis (-1) is supported")
            }
            guard ins.allSatisfy({ $0.shape.count == rank && Array($0.shape.dropFirst()) == Array(first.shape.dropFirst()) && $0.flatFrom == nil }) else {
                throw err("layer '\(l.name)' (Concatenate): input shapes \(ins.map { ShapeFormat.bracket($0.shape) }.joined(separator: ", ")) cannot be joined on channels")
            }
            let c = ins.reduce(0) { $0 + $1.shape[0] }
            emit(l.name, .concat(axis: 1), ins.map(\.name), shape: [c] + Array(first.shape.dropFirst()), keras: l.name)
        case "ZeroPadding2D":
            let v = try input(l)
            let (c, h, w) = try image(l, v)
            var p = Padding2D.zero
            if let i = l.config["padding"] as? Int { p = Padding2D(i) }
            else if let a = l.config["padding"] as? [Any] {
                if let ii = a as? [Int], ii.count == 2 { p = Padding2D(ii[0], ii[1]) }
                else if let pp = a as? [[Int]], pp.count == 2, pp[0].count == 2, pp[1].count == 2 {
                    p = Padding2D(top: pp[0][0], left: pp[1][0], bottom: pp[0][1], right: pp[1][1])
                } else { throw err("layer '\(l.name)' (ZeroPadding2D) has an unreadable padding") }
            }
            emit(l.name, .pad(p, value: 0), [v.name], shape: [c, h + p.top + p.bottom, w + p.left + p.right], keras: l.name)
        case "InputLayer":
            try addInput(l)
        default:
            throw err("layer '\(l.name)' has class \(l.className), which the Keras importer does not support")
        }
    }

    mutating func conv(_ l: KLayer) throws {
        let v = try input(l)
        let (c, h, w) = try image(l, v)
        guard let filters = l.config["filters"] as? Int, let k = ints(l.config["kernel_size"], 2) else {
            throw err("layer '\(l.name)' (Conv2D) lacks filters/kernel_size")
        }
        let s = ints(l.config["strides"], 2, default: [1, 1]) ?? [1, 1]
        let d = ints(l.config["dilation_rate"], 2, default: [1, 1]) ?? [1, 1]
        let groups = l.config["groups"] as? Int ?? 1
        let useBias = l.config["use_bias"] as? Bool ?? true
        let padding = l.config["padding"] as? String ?? "valid"
        let (pt, pb) = try pads(padding, size: h, kernel: k[0], stride: s[0], dilation: d[0], l)
        let (pl, pr) = try pads(padding, size: w, kernel: k[1], stride: s[1], dilation: d[1], l)
        guard groups >= 1, c % groups == 0, filters % groups == 0 else { throw err("layer '\(l.name)' (Conv2D): groups \(groups) do not divide channels") }
        let wts = try layerWeights(l)
        try expectWeights(l, wts, [[k[0], k[1], c / groups, filters]] + (useBias ? [[filters]] : []), ["kernel"] + (useBias ? ["bias"] : []))
        tensors[l.name + ".weight"] = Tensor(shape: [filters, c / groups, k[0], k[1]], data: Self.hwioToOIHW(wts[0].2, k[0], k[1], c / groups, filters))
        report.append("\(l.name).weight ← \(wts[0].0) (HWIO→OIHW)")
        if useBias { tensors[l.name + ".bias"] = Tensor(shape: [filters], data: wts[1].2); report.append("\(l.name).bias ← \(wts[1].0)") }
        let pad = Padding2D(top: pt, left: pl, bottom: pb, right: pr)
        if padding == "same" && !pad.isSymmetric { report.append("layer '\(l.name)': 'same' padding made explicit and asymmetric (top \(pt), bottom \(pb), left \(pl), right \(pr))") }
        let oh = ShapeRules.windowOutput(h, kernel: k[0], stride: s[0], padBegin: pt, padEnd: pb, dilation: d[0], ceilMode: false)
        let ow = ShapeRules.windowOutput(w, kernel: k[1], stride: s[1], padBegin: pl, padEnd: pr, dilation: d[1], ceilMode: false)
        let out = Value(name: l.name, shape: [filters, oh, ow])
        emit(l.name, .conv2d(.init(inChannels: c, outChannels: filters, kernel: k, stride: s, padding: pad, dilation: d, groups: groups, bias: useBias)),
             [v.name], shape: out.shape)
        try activation(l, from: out)
    }

    /// Depthwise part shared by DepthwiseConv2D and SeparableConv2D. Returns the output value.
    mutating func depthwisePart(_ l: KLayer, nodeName: String, kernel wt: (String, [Int], [Float]), bias: (String, [Int], [Float])?, from v: Value) throws -> Value {
        let (c, h, w) = try image(l, v)
        guard let k = ints(l.config["kernel_size"], 2) else { throw err("layer '\(l.name)' (\(l.className)) lacks kernel_size") }
        let m = l.config["depth_multiplier"] as? Int ?? 1
        let s = ints(l.config["strides"], 2, default: [1, 1]) ?? [1, 1]
        let d = ints(l.config["dilation_rate"], 2, default: [1, 1]) ?? [1, 1]
        let padding = l.config["padding"] as? String ?? "valid"
        let (pt, pb) = try pads(padding, size: h, kernel: k[0], stride: s[0], dilation: d[0], l)
        let (pl, pr) = try pads(padding, size: w, kernel: k[1], stride: s[1], dilation: d[1], l)
        guard wt.1 == [k[0], k[1], c, m] else {
            throw err("weight 'model_weights/\(l.name)/\(wt.0)' has shape \(ShapeFormat.bracket(wt.1)), layer '\(l.name)' (\(l.className)) expects \(ShapeFormat.bracket([k[0], k[1], c, m])) for its depthwise_kernel")
        }
        tensors[nodeName + ".weight"] = Tensor(shape: [c * m, 1, k[0], k[1]], data: Self.depthwiseToOIHW(wt.2, k[0], k[1], c, m))
        report.append("\(nodeName).weight ← \(wt.0) (depthwise HWCM→(C·M)1HW)")
        if let bias {
            tensors[nodeName + ".bias"] = Tensor(shape: [c * m], data: bias.2)
            report.append("\(nodeName).bias ← \(bias.0)")
        }
        let pad = Padding2D(top: pt, left: pl, bottom: pb, right: pr)
        let oh = ShapeRules.windowOutput(h, kernel: k[0], stride: s[0], padBegin: pt, padEnd: pb, dilation: d[0], ceilMode: false)
        let ow = ShapeRules.windowOutput(w, kernel: k[1], stride: s[1], padBegin: pl, padEnd: pr, dilation: d[1], ceilMode: false)
        emit(nodeName, .conv2d(.init(inChannels: c, outChannels: c * m, kernel: k, stride: s, padding: pad, dilation: d, groups: c, bias: bias != nil)),
             [v.name], shape: [c * m, oh, ow])
        return Value(name: nodeName, shape: [c * m, oh, ow])
    }

    mutating func depthwise(_ l: KLayer) throws {
        let v = try input(l)
        let useBias = l.config["use_bias"] as? Bool ?? true
        let wts = try layerWeights(l)
        guard wts.count == (useBias ? 2 : 1) else {
            throw err("layer '\(l.name)' (DepthwiseConv2D) has \(wts.count) weights, expected \(useBias ? 2 : 1)")
        }
        let out = try depthwisePart(l, nodeName: l.name, kernel: wts[0], bias: useBias ? wts[1] : nil, from: v)
        try activation(l, from: out)
    }

    mutating func separable(_ l: KLayer) throws {
        let v = try input(l)
        let useBias = l.config["use_bias"] as? Bool ?? true
        guard let filters = l.config["filters"] as? Int else { throw err("layer '\(l.name)' (SeparableConv2D) lacks filters") }
        let wts = try layerWeights(l)
        guard wts.count == (useBias ? 3 : 2) else {
            throw err("layer '\(l.name)' (SeparableConv2D) has \(wts.count) weights, expected \(useBias ? 3 : 2)")
        }
        let dw = try depthwisePart(l, nodeName: l.name + ".depthwise", kernel: wts[0], bias: nil, from: v)
        let cm = dw.shape[0]
        guard wts[1].1 == [1, 1, cm, filters] else {
            throw err("weight 'model_weights/\(l.name)/\(wts[1].0)' has shape \(ShapeFormat.bracket(wts[1].1)), layer '\(l.name)' (SeparableConv2D) expects \(ShapeFormat.bracket([1, 1, cm, filters])) for its pointwise_kernel")
        }
        let pw = l.name + ".pointwise"
        tensors[pw + ".weight"] = Tensor(shape: [filters, cm, 1, 1], data: Self.hwioToOIHW(wts[1].2, 1, 1, cm, filters))
        report.append("\(pw).weight ← \(wts[1].0) (HWIO→OIHW)")
        if useBias { tensors[pw + ".bias"] = Tensor(shape: [filters], data: wts[2].2); report.append("\(pw).bias ← \(wts[2].0)") }
        emit(pw, .conv2d(.init(inChannels: cm, outChannels: filters, kernel: [1, 1], bias: useBias)), [dw.name], shape: [filters, dw.shape[1], dw.shape[2]])
        try activation(l, from: Value(name: pw, shape: [filters, dw.shape[1], dw.shape[2]]))
    }

    mutating func dense(_ l: KLayer) throws {
        let v = try input(l)
        guard v.shape.count == 1 else {
            throw err("layer '\(l.name)' (Dense) on an input of shape \(ShapeFormat.bracket(v.shape)) is not supported (flatten first)")
        }
        guard let units = l.config["units"] as? Int else { throw err("layer '\(l.name)' (Dense) lacks units") }
        let useBias = l.config["use_bias"] as? Bool ?? true
        let n = v.shape[0]
        let wts = try layerWeights(l)
        try expectWeights(l, wts, [[n, units]] + (useBias ? [[units]] : []), ["kernel"] + (useBias ? ["bias"] : []))
        var out = [Float](repeating: 0, count: n * units)
        let k = wts[0].2
        if let src = v.flatFrom {
            let (c, h, w) = (src[0], src[1], src[2])
            for ch in 0..<c { for y in 0..<h { for x in 0..<w {
                let zi = (ch * h + y) * w + x, ki = (y * w + x) * c + ch
                for u in 0..<units { out[u * n + zi] = k[ki * units + u] }
            } } }
            report.append("\(l.name).weight ← \(wts[0].0) (transposed; input rows permuted from NHWC to NCHW flatten order of \(ShapeFormat.bracket(src)))")
        } else {
            for i in 0..<n { for u in 0..<units { out[u * n + i] = k[i * units + u] } }
            report.append("\(l.name).weight ← \(wts[0].0) (transposed)")
        }
        tensors[l.name + ".weight"] = Tensor(shape: [units, n], data: out)
        if useBias { tensors[l.name + ".bias"] = Tensor(shape: [units], data: wts[1].2); report.append("\(l.name).bias ← \(wts[1].0)") }
        emit(l.name, .linear(.init(inFeatures: n, outFeatures: units, bias: useBias)), [v.name], shape: [units])
        try activation(l, from: Value(name: l.name, shape: [units]))
    }

    mutating func batchNorm(_ l: KLayer) throws {
        let v = try input(l)
        let (c, _, _) = try image(l, v)
        let axis = ints(l.config["axis"], 1) ?? [-1]
        guard axis == [-1] || axis == [3] else {
            throw err("layer '\(l.name)' (BatchNormalization) normalizes axis \(axis); only the channel axis is supported")
        }
        let scale = l.config["scale"] as? Bool ?? true
        let center = l.config["center"] as? Bool ?? true
        let eps = Float(l.config["epsilon"] as? Double ?? 1e-3)
        let momentum = Float(l.config["momentum"] as? Double ?? 0.99)
        let wts = try layerWeights(l)
        var what: [String] = []
        if scale { what.append("gamma") }
        if center { what.append("beta") }
        what += ["moving_mean", "moving_variance"]
        try expectWeights(l, wts, [[Int]](repeating: [c], count: what.count), what)
        var i = 0
        let zooKey = ["gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"]
        for wname in what {
            tensors[l.name + "." + zooKey[wname]!] = Tensor(shape: [c], data: wts[i].2)
            report.append("\(l.name).\(zooKey[wname]!) ← \(wts[i].0)")
            i += 1
        }
        if !scale { tensors[l.name + ".weight"] = Tensor(shape: [c], repeating: 1); report.append("\(l.name).weight = 1 (Keras scale=False)") }
        if !center { tensors[l.name + ".bias"] = Tensor(shape: [c], repeating: 0); report.append("\(l.name).bias = 0 (Keras center=False)") }
        emit(l.name, .batchNorm2d(.init(features: c, eps: eps, momentum: 1 - momentum)), [v.name], shape: v.shape, keras: l.name)
    }

    mutating func pool(_ l: KLayer) throws {
        let v = try input(l)
        let (c, h, w) = try image(l, v)
        let k = ints(l.config["pool_size"], 2, default: [2, 2]) ?? [2, 2]
        let s = ints(l.config["strides"], 2) ?? k
        let padding = l.config["padding"] as? String ?? "valid"
        let (pt, pb) = try pads(padding, size: h, kernel: k[0], stride: s[0], dilation: 1, l)
        let (pl, pr) = try pads(padding, size: w, kernel: k[1], stride: s[1], dilation: 1, l)
        let pad = Padding2D(top: pt, left: pl, bottom: pb, right: pr)
        let attrs = Pool2dAttrs(kernel: k, stride: s, padding: pad, countIncludePad: false)
        let oh = ShapeRules.windowOutput(h, kernel: k[0], stride: s[0], padBegin: pt, padEnd: pb, dilation: 1, ceilMode: false)
        let ow = ShapeRules.windowOutput(w, kernel: k[1], stride: s[1], padBegin: pl, padEnd: pr, dilation: 1, ceilMode: false)
        emit(l.name, l.className == "MaxPooling2D" ? .maxPool2d(attrs) : .avgPool2d(attrs), [v.name], shape: [c, oh, ow], keras: l.name)
    }

    mutating func reshape(_ l: KLayer) throws {
        let v = try input(l)
        guard let target = l.config["target_shape"] as? [Int] else { throw err("layer '\(l.name)' (Reshape) lacks target_shape") }
        let n = v.shape.reduce(1, *)
        var t = target
        if let i = t.firstIndex(of: -1) { t[i] = n / max(t.filter { $0 != -1 }.reduce(1, *), 1) }
        guard t.reduce(1, *) == n else {
            throw err("layer '\(l.name)' (Reshape): \(n) elements cannot take shape \(target)")
        }
        func fail() -> ZooError {
            err("layer '\(l.name)' (Reshape) from \(ShapeFormat.bracket(v.shape)) (NCHW) to Keras \(target) would reorder channels; not supported")
        }
        switch (v.shape.count, t.count) {
        case (1, 1):
            values[l.name] = v
        case (1, 3):
            // (F) → (H, W, C): trivially [C, H, W] when H·W == 1, or the exact inverse of a Keras flatten.
            if t[0] * t[1] == 1 && v.flatFrom == nil {
                emit(l.name, .reshape(shape: [t[2], 1, 1]), [v.name], shape: [t[2], 1, 1], keras: l.name)
            } else if let src = v.flatFrom, src == [t[2], t[0], t[1]] {
                emit(l.name, .reshape(shape: src), [v.name], shape: src, keras: l.name)
            } else if v.flatFrom == nil && t[2] == 1 {
                emit(l.name, .reshape(shape: [1, t[0], t[1]]), [v.name], shape: [1, t[0], t[1]], keras: l.name)
            } else { throw fail() }
        case (3, 1):
            let needsPermute = v.shape[1] * v.shape[2] > 1 && v.shape[0] > 1
            emit(l.name, .flatten(startDim: 1), [v.name], shape: [n], flatFrom: needsPermute ? v.shape : nil, keras: l.name)
        case (3, 3):
            if [t[2], t[0], t[1]] == v.shape { values[l.name] = v; return }
            if v.shape[1] * v.shape[2] == 1 && t[0] * t[1] == 1 {
                emit(l.name, .reshape(shape: [t[2], 1, 1]), [v.name], shape: [t[2], 1, 1], keras: l.name)
            } else { throw fail() }
        default: throw fail()
        }
    }
}
