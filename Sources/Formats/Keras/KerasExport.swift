import Foundation
import Zoo

/// Writes a zoo model as a Keras 3 full-model legacy `.h5` (functional `model_config` + `model_weights`)
/// that `keras.saving.load_model` opens; the Keras model takes NHWC input.
///
/// Mapping zoo → Keras (layer name = zoo node name, extra layers get a suffix):
/// Conv2d → [ZeroPadding2D `<node>_pad`] + Conv2D (OIHW → HWIO) or DepthwiseConv2D when groups ==
/// in channels; Linear → Dense (weight transposed; after a Flatten of an image the rows are permuted
/// to NHWC flatten order); BatchNorm2d → BatchNormalization (momentum = 1 − zoo momentum);
/// ReLU / ReLU6 / Clip(0, m) → ReLU(max_value); Sigmoid, Tanh, Identity → Activation; Softmax → Softmax(-1);
/// MaxPool2d → MaxPooling2D ('same' when the padding equals Keras', zero padding when the input is
/// known to be non-negative); AvgPool2d → AveragePooling2D (zero padding when the padding counts);
/// AdaptiveAvgPool2d(1) → GlobalAveragePooling2D(keepdims); Flatten, Dropout, Add, Concat(channels),
/// Pad(0) → ZeroPadding2D. Anything else is an error naming the node and its op.
public enum KerasExport {
    @discardableResult
    public static func write(_ model: Model, to path: String) throws -> [String] {
        var b = ExportBuilder(model: model, path: path)
        try b.build()
        try H5AtomicWriter.write(to: path) { tmp in
            let f = try H5File.create(path: tmp)
            let config: [String: Any] = [
                "class_name": "Functional",
                "config": ["name": safeName(model.graph.name), "trainable": true, "layers": b.layers,
                           "input_layers": [b.inputName, 0, 0], "output_layers": [b.outputName, 0, 0]] as [String: Any],
            ]
            let json = String(decoding: try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]), as: UTF8.self)
            try f.root.setAttribute("backend", string: "jax")
            try f.root.setAttribute("keras_version", string: "3.15.1")
            try f.root.setAttribute("model_config", string: json)
            let mw = try f.root.createGroup("model_weights")
            try mw.setAttribute("backend", string: "jax")
            try mw.setAttribute("keras_version", string: "3.15.1")
            try mw.setAttribute("layer_names", strings: b.layerOrder)
            for name in b.layerOrder {
                let g = try mw.createGroup(name)
                let ws = b.weights[name] ?? []
                try g.setAttribute("weight_names", strings: ws.map { name + "/" + $0.0 })
                if ws.isEmpty { continue }
                let inner = try g.createGroup(name)
                for (wname, t) in ws { try inner.writeDataset(wname, shape: t.shape, floats: t.data) }
            }
            let top = try mw.createGroup("top_level_model_weights")
            try top.setAttribute("weight_names", strings: [])
            try f.close()
        }
        return b.report
    }

    /// Keras layer names may not contain '/'.
    static func safeName(_ s: String) -> String { s.replacingOccurrences(of: "/", with: "_") }
}

private struct ExportValue {
    var layer: String
    var shape: [Int]   // zoo shape without batch
    var flatFrom: [Int]?
    var nonNegative = false
}

private struct ExportBuilder {
    let model: Model
    let path: String
    var layers: [[String: Any]] = []
    var layerOrder: [String] = []
    /// Inbound layer names of every layer.
    var inbound: [String: [String]] = [:]
    var report: [String] = []
    var weights: [String: [(String, Tensor)]] = [:]
    var values: [String: ExportValue] = [:]
    var inputName = "input"
    var outputName = ""
    var used = Set<String>()

    init(model: Model, path: String) { self.model = model; self.path = path }

    func err(_ node: Node, _ m: String) -> ZooError {
        ZooError.file(path: path, message: "cannot export node '\(node.name)' (\(node.op.typeName)) to Keras: \(m)")
    }

    mutating func unique(_ base: String) -> String {
        var n = KerasExport.safeName(base.isEmpty ? "layer" : base)
        var i = 1
        while used.contains(n) { n = KerasExport.safeName(base) + "_\(i)"; i += 1 }
        used.insert(n)
        return n
    }

    func kerasShape(_ s: [Int]) -> [Any] {
        let t: [Int] = s.count == 3 ? [s[1], s[2], s[0]] : s
        return [NSNull()] + t.map { $0 as Any }
    }

    mutating func add(_ cls: String, _ name: String, _ config: [String: Any], inputs: [ExportValue], weights w: [(String, Tensor)] = []) {
        var c = config
        c["name"] = name
        c["trainable"] = true
        c["dtype"] = "float32"
        let tensors: [Any] = inputs.map { v in
            ["class_name": "__keras_tensor__",
             "config": ["shape": kerasShape(v.shape), "dtype": "float32", "keras_history": [v.layer, 0, 0]] as [String: Any]] as [String: Any]
        }
        let args: [Any] = inputs.count == 1 ? [tensors[0]] : [tensors]
        layers.append(["module": "keras.layers", "class_name": cls, "config": c, "registered_name": NSNull(), "name": name,
                       "inbound_nodes": [["args": args, "kwargs": [String: Any]()] as [String: Any]]])
        layerOrder.append(name)
        inbound[name] = inputs.map(\.layer)
        if !w.isEmpty { weights[name] = w }
    }

    func t(_ key: String) throws -> Tensor {
        guard let x = model.tensors[key] else { throw ZooError.missingParameters([key]) }
        return x
    }

    mutating func build() throws {
        let g = model.graph
        guard g.inputShape.count == 3 else {
            throw ZooError.file(path: path, message: "cannot export to Keras: the input \(ShapeFormat.bracket(g.inputShape)) is not an image (C, H, W)")
        }
        inputName = unique(g.input == "input" ? "input" : g.input)
        let (c, h, w) = (g.inputShape[0], g.inputShape[1], g.inputShape[2])
        layers.append(["module": "keras.layers", "class_name": "InputLayer", "registered_name": NSNull(), "name": inputName,
                       "config": ["batch_shape": [NSNull(), h, w, c], "dtype": "float32", "sparse": false, "name": inputName] as [String: Any],
                       "inbound_nodes": [Any]()])
        layerOrder.append(inputName)
        values[g.input] = ExportValue(layer: inputName, shape: g.inputShape)
        let infos = try g.inferLayers()
        for (node, info) in zip(g.nodes, infos) {
            let ins = try node.inputs.map { n -> ExportValue in
                guard let v = values[n] else { throw err(node, "input '\(n)' unknown") }
                return v
            }
            let out = Array(info.outputShape.dropFirst())
            values[node.output] = try convert(node, ins, out)
        }
        guard let o = values[g.output] else { throw ZooError.invalidGraph("output '\(g.output)' never produced") }
        outputName = o.layer
        layerOrder = kerasOrder()
    }

    /// The order Keras gives the layers of the rebuilt functional model (its weights are loaded
    /// by position in that order): by decreasing depth from the output, ties by first visit of a
    /// depth-first walk from the output through inputs in order (keras' map_graph).
    func kerasOrder() -> [String] {
        var index: [String: Int] = [:]
        var finished = Set<String>()
        var post: [String] = []
        func visit(_ l: String) {
            if finished.contains(l) { return }
            if index[l] == nil { index[l] = index.count }
            for i in inbound[l] ?? [] { visit(i) }
            finished.insert(l)
            post.append(l)
        }
        visit(outputName)
        var depth: [String: Int] = [:]
        for l in post.reversed() {
            let d = depth[l] ?? 0
            for p in inbound[l] ?? [] { depth[p] = max(depth[p] ?? 0, d + 1) }
        }
        let reachable = post
        return reachable.sorted { a, b in
            let (da, db) = (depth[a] ?? 0, depth[b] ?? 0)
            return da != db ? da > db : index[a]! < index[b]!
        }
    }

    /// Zero padding layer when needed; returns the (possibly new) value.
    mutating func zeroPad(_ v: ExportValue, _ p: Padding2D, _ base: String) -> ExportValue {
        if p == .zero { return v }
        let name = unique(base + "_pad")
        report.append("padding of '\(base)' made a ZeroPadding2D layer '\(name)'")
        add("ZeroPadding2D", name, ["padding": [[p.top, p.bottom], [p.left, p.right]], "data_format": "channels_last"], inputs: [v])
        return ExportValue(layer: name, shape: [v.shape[0], v.shape[1] + p.top + p.bottom, v.shape[2] + p.left + p.right], nonNegative: v.nonNegative)
    }

    static func kerasSame(_ size: Int, _ k: Int, _ s: Int) -> (Int, Int) {
        let out = (size + s - 1) / s
        let total = max((out - 1) * s + k - size, 0)
        return (total / 2, total - total / 2)
    }

    mutating func convert(_ node: Node, _ ins: [ExportValue], _ out: [Int]) throws -> ExportValue {
        let x = ins.first ?? ExportValue(layer: "", shape: [])
        let name = unique(node.name)
        func simple(_ cls: String, _ cfg: [String: Any], nonNeg: Bool = false, flat: Bool = true) -> ExportValue {
            add(cls, name, cfg, inputs: ins)
            return ExportValue(layer: name, shape: out, flatFrom: flat ? x.flatFrom : nil, nonNegative: nonNeg)
        }
        switch node.op {
        case let .conv2d(a):
            guard x.shape.count == 3 else { throw err(node, "input is not an image") }
            let v = zeroPad(x, a.padding, name)
            let wt = try t(node.name + ".weight")
            let (o, i, kh, kw) = (wt.shape[0], wt.shape[1], wt.shape[2], wt.shape[3])
            var ws: [(String, Tensor)] = []
            if a.groups == a.inChannels && a.groups > 1 && i == 1 {
                let m = o / a.groups
                var k = [Float](repeating: 0, count: wt.count)
                for ch in 0..<a.groups { for j in 0..<m { for y in 0..<kh { for xx in 0..<kw {
                    k[((y * kw + xx) * a.groups + ch) * m + j] = wt.data[((ch * m + j) * kh + y) * kw + xx]
                } } } }
                ws.append(("kernel", Tensor(shape: [kh, kw, a.groups, m], data: k)))
                if a.bias { ws.append(("bias", try t(node.name + ".bias"))) }
                report.append("\(node.name).weight → \(name)/kernel (depthwise (C·M)1HW → HWCM)")
                add("DepthwiseConv2D", name, ["kernel_size": [kh, kw], "strides": a.stride, "padding": "valid", "depth_multiplier": m,
                                              "dilation_rate": a.dilation, "use_bias": a.bias, "activation": "linear", "data_format": "channels_last"],
                    inputs: [v], weights: ws)
            } else {
                var k = [Float](repeating: 0, count: wt.count)
                for oo in 0..<o { for ii in 0..<i { for y in 0..<kh { for xx in 0..<kw {
                    k[((y * kw + xx) * i + ii) * o + oo] = wt.data[((oo * i + ii) * kh + y) * kw + xx]
                } } } }
                ws.append(("kernel", Tensor(shape: [kh, kw, i, o], data: k)))
                if a.bias { ws.append(("bias", try t(node.name + ".bias"))) }
                report.append("\(node.name).weight → \(name)/kernel (OIHW → HWIO)")
                add("Conv2D", name, ["filters": o, "kernel_size": [kh, kw], "strides": a.stride, "padding": "valid", "groups": a.groups,
                                     "dilation_rate": a.dilation, "use_bias": a.bias, "activation": "linear", "data_format": "channels_last"],
                    inputs: [v], weights: ws)
            }
            return ExportValue(layer: name, shape: out)
        case let .linear(a):
            guard x.shape.count == 1 else { throw err(node, "input of shape \(ShapeFormat.bracket(x.shape)) is not a vector") }
            let wt = try t(node.name + ".weight")
            let n = a.inFeatures, u = a.outFeatures
            var k = [Float](repeating: 0, count: n * u)
            if let src = x.flatFrom {
                let (c, h, w) = (src[0], src[1], src[2])
                for ch in 0..<c { for y in 0..<h { for xx in 0..<w {
                    let zi = (ch * h + y) * w + xx, ki = (y * w + xx) * c + ch
                    for o in 0..<u { k[ki * u + o] = wt.data[o * n + zi] }
                } } }
            } else {
                for i in 0..<n { for o in 0..<u { k[i * u + o] = wt.data[o * n + i] } }
            }
            var ws = [("kernel", Tensor(shape: [n, u], data: k))]
            if a.bias { ws.append(("bias", try t(node.name + ".bias"))) }
            report.append("\(node.name).weight → \(name)/kernel (transposed" + (x.flatFrom.map { "; rows permuted to NHWC flatten order of \(ShapeFormat.bracket($0))" } ?? "") + ")")
            add("Dense", name, ["units": u, "use_bias": a.bias, "activation": "linear"], inputs: [x], weights: ws)
            return ExportValue(layer: name, shape: out)
        case let .batchNorm2d(a):
            guard x.shape.count == 3 else { throw err(node, "only image batch norm is supported") }
            let ws = [("gamma", try t(node.name + ".weight")), ("beta", try t(node.name + ".bias")),
                      ("moving_mean", try t(node.name + ".running_mean")), ("moving_variance", try t(node.name + ".running_var"))]
            report.append("\(node.name).{weight,bias,running_mean,running_var} → \(name)/{gamma,beta,moving_mean,moving_variance}; momentum \(a.momentum) → \(1 - a.momentum)")
            add("BatchNormalization", name, ["axis": -1, "epsilon": Double(a.eps), "momentum": Double(1 - a.momentum), "center": true, "scale": true],
                inputs: [x], weights: ws)
            return ExportValue(layer: name, shape: out)
        case .relu: return simple("ReLU", [:], nonNeg: true)
        case .relu6: return simple("ReLU", ["max_value": 6.0], nonNeg: true)
        case let .clip(lo, hi):
            guard lo == 0 else { throw err(node, "only Clip(0, max) is supported") }
            return simple("ReLU", ["max_value": Double(hi)], nonNeg: true)
        case .sigmoid: return simple("Activation", ["activation": "sigmoid"], nonNeg: true)
        case .tanh: return simple("Activation", ["activation": "tanh"])
        case .identity: return simple("Activation", ["activation": "linear"], nonNeg: x.nonNegative)
        case let .softmax(axis):
            guard axis == 1 || axis == -1 && x.shape.count == 1 else { throw err(node, "softmax over axis \(axis); only channels (1)") }
            return simple("Softmax", ["axis": -1], nonNeg: true)
        case let .dropout(p): return simple("Dropout", ["rate": Double(p)], nonNeg: x.nonNegative)
        case let .maxPool2d(a), let .avgPool2d(a):
            let isMax: Bool
            if case .maxPool2d = node.op { isMax = true } else { isMax = false }
            guard a.dilation == [1, 1] else { throw err(node, "dilated pooling is not supported") }
            // Padding that makes a 'valid' window count equal the zoo's output (ceil mode included).
            let extraB = max(0, (out[1] - 1) * a.stride[0] + a.kernel[0] - (x.shape[1] + a.padding.top))
            let extraR = max(0, (out[2] - 1) * a.stride[1] + a.kernel[1] - (x.shape[2] + a.padding.left))
            let need = Padding2D(top: a.padding.top, left: a.padding.left, bottom: max(a.padding.bottom, extraB), right: max(a.padding.right, extraR))
            let sameH = Self.kerasSame(x.shape[1], a.kernel[0], a.stride[0]), sameW = Self.kerasSame(x.shape[2], a.kernel[1], a.stride[1])
            let cls = isMax ? "MaxPooling2D" : "AveragePooling2D"
            var cfg: [String: Any] = ["pool_size": a.kernel, "strides": a.stride, "data_format": "channels_last"]
            let ceilMatters = need.bottom != a.padding.bottom || need.right != a.padding.right
            if need == .zero {
                cfg["padding"] = "valid"
                add(cls, name, cfg, inputs: [x])
            } else if (need.top, need.bottom) == sameH && (need.left, need.right) == sameW
                        && (isMax || !a.countIncludePad) && (out[1], out[2]) == ((x.shape[1] + a.stride[0] - 1) / a.stride[0], (x.shape[2] + a.stride[1] - 1) / a.stride[1]) {
                cfg["padding"] = "same"
                add(cls, name, cfg, inputs: [x])
            } else if (isMax && x.nonNegative) || (!isMax && a.countIncludePad && !ceilMatters) {
                let v = zeroPad(x, need, name)
                cfg["padding"] = "valid"
                add(cls, name, cfg, inputs: [v])
            } else {
                throw err(node, "padding \(need) cannot be expressed in Keras for this input")
            }
            return ExportValue(layer: name, shape: out, nonNegative: x.nonNegative)
        case let .adaptiveAvgPool2d(o):
            guard x.shape.count == 3 else { throw err(node, "input is not an image") }
            if o == [1, 1] { return simple("GlobalAveragePooling2D", ["keepdims": true, "data_format": "channels_last"], nonNeg: x.nonNegative, flat: false) }
            guard o.count == 2, x.shape[1] % o[0] == 0, x.shape[2] % o[1] == 0 else { throw err(node, "output \(o) does not divide the input") }
            let k = [x.shape[1] / o[0], x.shape[2] / o[1]]
            return simple("AveragePooling2D", ["pool_size": k, "strides": k, "padding": "valid", "data_format": "channels_last"], nonNeg: x.nonNegative, flat: false)
        case let .flatten(d):
            guard d == 1 else { throw err(node, "only Flatten(1) is supported") }
            add("Flatten", name, ["data_format": "channels_last"], inputs: [x])
            let permute = x.shape.count == 3 && x.shape[0] > 1 && x.shape[1] * x.shape[2] > 1
            return ExportValue(layer: name, shape: out, flatFrom: permute ? x.shape : nil, nonNegative: x.nonNegative)
        case .add:
            guard ins.count == 2, ins[0].flatFrom == ins[1].flatFrom else { throw err(node, "inputs differ in layout") }
            add("Add", name, [:], inputs: ins)
            return ExportValue(layer: name, shape: out, flatFrom: x.flatFrom, nonNegative: ins.allSatisfy(\.nonNegative))
        case let .concat(axis):
            guard axis == 1, ins.allSatisfy({ $0.flatFrom == nil }) else { throw err(node, "only channel concatenation is supported") }
            add("Concatenate", name, ["axis": -1], inputs: ins)
            return ExportValue(layer: name, shape: out, nonNegative: ins.allSatisfy(\.nonNegative))
        case let .pad(p, value):
            guard value == 0 else { throw err(node, "only zero padding is supported") }
            add("ZeroPadding2D", name, ["padding": [[p.top, p.bottom], [p.left, p.right]], "data_format": "channels_last"], inputs: [x])
            return ExportValue(layer: name, shape: out, nonNegative: x.nonNegative)
        case let .reshape(s):
            if x.shape.count == 3 && x.shape[1] * x.shape[2] == 1 && s.count == 1 {
                return simple("Reshape", ["target_shape": [x.shape[0]]], nonNeg: x.nonNegative, flat: false)
            }
            if x.shape.count == 1 && x.flatFrom == nil && s.count == 3 && s[1] * s[2] == 1 {
                return simple("Reshape", ["target_shape": [1, 1, s[0]]], nonNeg: x.nonNegative, flat: false)
            }
            throw err(node, "reshape to \(s) would reorder data between NCHW and NHWC")
        default:
            throw err(node, "no Keras layer for this op")
        }
    }
}
