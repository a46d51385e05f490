import Foundation
import Zoo

/// zoo Model → ONNX ModelProto.
public enum ONNXExport {
    public struct Options: Sendable {
        /// Default-domain opset, 13 to 21.
        public var opset: Int = 17
        /// Fold BatchNorm into the convolution before it (when that convolution feeds only the BatchNorm).
        public var foldBN: Bool = false
        /// Keep Dropout nodes (inference: identity) or leave them out.
        public var keepDropout: Bool = true
        public init(opset: Int = 17, foldBN: Bool = false, keepDropout: Bool = true) {
            self.opset = opset; self.foldBN = foldBN; self.keepDropout = keepDropout
        }
    }

    public static let supportedOpsets = 13...21

    /// The IR version ONNX releases pair with each opset (onnx.helper.VERSION_TABLE).
    public static func irVersion(forOpset opset: Int) -> Int64 {
        switch opset {
        case ...14: return 7
        case 15...18: return 8
        case 19...20: return 9
        default: return 10
        }
    }

    public static func write(_ model: Model, to url: URL, options: Options = Options(),
                             externalThreshold: Int = ONNXFile.defaultExternalThreshold) throws {
        try ONNXFile.write(modelProto(model, options: options), to: url, externalThreshold: externalThreshold)
    }

    public static func modelProto(_ model: Model, options: Options = Options()) throws -> Onnx_ModelProto {
        guard supportedOpsets.contains(options.opset) else {
            throw ZooError.unsupported("ONNX export opset \(options.opset) (zoo writes opsets \(supportedOpsets.lowerBound) to \(supportedOpsets.upperBound))")
        }
        var b = Builder(model: model, options: options)
        try b.build()
        var m = Onnx_ModelProto()
        m.irVersion = irVersion(forOpset: options.opset)
        var os = Onnx_OperatorSetIdProto(); os.domain = ""; os.version = Int64(options.opset)
        m.opsetImport = [os]
        m.producerName = "zoo"
        m.producerVersion = "0.1"
        m.graph = b.graph
        m.metadataProps = [ONNXFile.entry("zoo.architecture", model.graph.name)]
        return m
    }

    struct Builder {
        let model: Model
        let options: Options
        var graph = Onnx_GraphProto()
        var shapes: [String: [Int]] = [:]       // value → shape at batch 1
        var alias: [String: String] = [:]       // zoo value → ONNX value name
        var constNames: [String: String] = [:]
        var usedNames: Set<String> = []

        init(model: Model, options: Options) { self.model = model; self.options = options }

        func onnxName(_ v: String) -> String { alias[v] ?? v }

        mutating func param(_ key: String, _ t: Tensor? = nil) throws -> String {
            guard let t = t ?? model.tensors[key] else { throw ZooError.missingParameters([key]) }
            if !usedNames.contains(key) {
                graph.initializer.append(Onnx_TensorProto(name: key, float: t))
                usedNames.insert(key)
            }
            return key
        }

        mutating func floatConst(_ v: Float) -> String {
            let k = "f:\(v.bitPattern)"
            if let n = constNames[k] { return n }
            let n = "zoo_const_\(constNames.count)"
            constNames[k] = n
            graph.initializer.append(Onnx_TensorProto(name: n, float: Tensor(shape: [], data: [v])))
            return n
        }

        mutating func intsConst(_ v: [Int64]) -> String {
            let k = "i:\(v)"
            if let n = constNames[k] { return n }
            let n = "zoo_const_\(constNames.count)"
            constNames[k] = n
            graph.initializer.append(Onnx_TensorProto(name: n, int64: v, dims: [v.count]))
            return n
        }

        mutating func add(_ op: String, _ name: String, _ inputs: [String], _ output: String, _ attrs: [Onnx_AttributeProto] = []) {
            var n = Onnx_NodeProto()
            n.opType = op; n.name = name; n.input = inputs; n.output = [output]; n.attribute = attrs
            graph.node.append(n)
        }

        static func ints(_ name: String, _ v: [Int]) -> Onnx_AttributeProto {
            var a = Onnx_AttributeProto(); a.name = name; a.type = .ints; a.ints = v.map(Int64.init); return a
        }
        static func int(_ name: String, _ v: Int) -> Onnx_AttributeProto {
            var a = Onnx_AttributeProto(); a.name = name; a.type = .int; a.i = Int64(v); return a
        }
        static func float(_ name: String, _ v: Float) -> Onnx_AttributeProto {
            var a = Onnx_AttributeProto(); a.name = name; a.type = .float; a.f = v; return a
        }
        static func pads(_ p: Padding2D) -> Onnx_AttributeProto { ints("pads", [p.top, p.left, p.bottom, p.right]) }

        mutating func build() throws {
            let g = model.graph
            try g.validate()
            let infos = try g.inferLayers(batch: 1)
            shapes[g.input] = [1] + g.inputShape
            for i in infos { shapes[i.node.output] = i.outputShape }
            var consumers: [String: Int] = [:]
            for n in g.nodes { for i in n.inputs { consumers[i, default: 0] += 1 } }
            consumers[g.output, default: 0] += 1
            graph.name = g.name

            // BN folding plan: BN node index → the conv node it folds into.
            var foldInto: [String: Node] = [:]   // conv output value → BN node
            var skipBN: Set<String> = []
            if options.foldBN {
                let producer = Dictionary(g.nodes.map { ($0.output, $0) }, uniquingKeysWith: { a, _ in a })
                for n in g.nodes {
                    if case .batchNorm2d = n.op, let src = producer[n.inputs[0]], case .conv2d = src.op, consumers[src.output] == 1 {
                        foldInto[src.output] = n
                        skipBN.insert(n.name)
                    }
                }
            }

            for (idx, n) in g.nodes.enumerated() {
                let ins = n.inputs.map { onnxName($0) }
                let inShape = n.inputs.first.flatMap { shapes[$0] } ?? []
                let out = n.output
                switch n.op {
                case let .conv2d(a):
                    var attrs = [Self.ints("kernel_shape", a.kernel), Self.ints("strides", a.stride), Self.pads(a.padding),
                                 Self.ints("dilations", a.dilation), Self.int("group", a.groups)]
                    attrs.sort { $0.name < $1.name }
                    if let bn = foldInto[out], case let .batchNorm2d(ba) = bn.op {
                        let (w, bias) = try folded(conv: n, a, bn: bn, ba)
                        let wn = try param(n.name + ".weight", w)
                        let bnName = try param(n.name + ".bias", bias)
                        add("Conv", n.name, [ins[0], wn, bnName], bn.output, attrs)
                    } else {
                        var inputs = [ins[0], try param(n.name + ".weight")]
                        if a.bias { inputs.append(try param(n.name + ".bias")) }
                        add("Conv", n.name, inputs, out, attrs)
                    }
                case let .convTranspose2d(a):
                    var inputs = [ins[0], try param(n.name + ".weight")]
                    if a.bias { inputs.append(try param(n.name + ".bias")) }
                    add("ConvTranspose", n.name, inputs, out,
                        [Self.ints("kernel_shape", a.kernel), Self.ints("strides", a.stride), Self.pads(a.padding),
                         Self.ints("dilations", a.dilation), Self.int("group", a.groups), Self.ints("output_padding", a.outputPadding)])
                case let .linear(a):
                    if inShape.count == 2 {
                        var inputs = [ins[0], try param(n.name + ".weight")]
                        if a.bias { inputs.append(try param(n.name + ".bias")) }
                        add("Gemm", n.name, inputs, out, [Self.int("transB", 1)])
                    } else {
                        let wt = n.name + "/weight_t"
                        add("Transpose", n.name + "/transpose", [try param(n.name + ".weight")], wt, [Self.ints("perm", [1, 0])])
                        if a.bias {
                            add("MatMul", n.name + "/matmul", [ins[0], wt], out + "/matmul")
                            add("Add", n.name, [out + "/matmul", try param(n.name + ".bias")], out)
                        } else {
                            add("MatMul", n.name, [ins[0], wt], out)
                        }
                    }
                case let .batchNorm2d(a):
                    if skipBN.contains(n.name) { continue }
                    let inputs = try ["weight", "bias", "running_mean", "running_var"].map { try param(n.name + "." + $0) }
                    add("BatchNormalization", n.name, [ins[0]] + inputs, out,
                        [Self.float("epsilon", a.eps), Self.float("momentum", 1 - a.momentum)])
                case .relu: add("Relu", n.name, ins, out)
                case .relu6: add("Clip", n.name, [ins[0], floatConst(0), floatConst(6)], out)
                case let .clip(lo, hi): add("Clip", n.name, [ins[0], floatConst(lo), floatConst(hi)], out)
                case .sigmoid: add("Sigmoid", n.name, ins, out)
                case .tanh: add("Tanh", n.name, ins, out)
                case let .softmax(axis): add("Softmax", n.name, ins, out, [Self.int("axis", axis)])
                case let .maxPool2d(a):
                    var attrs = [Self.ints("kernel_shape", a.kernel), Self.ints("strides", a.stride), Self.pads(a.padding)]
                    if a.dilation != [1, 1] { attrs.append(Self.ints("dilations", a.dilation)) }
                    if a.ceilMode { attrs.append(Self.int("ceil_mode", 1)) }
                    add("MaxPool", n.name, ins, out, attrs)
                case let .avgPool2d(a):
                    var attrs = [Self.ints("kernel_shape", a.kernel), Self.ints("strides", a.stride), Self.pads(a.padding),
                                 Self.int("count_include_pad", a.countIncludePad ? 1 : 0)]
                    if a.dilation != [1, 1] {
                        guard options.opset >= 19 else {
                            throw ZooError.unsupported("node '\(n.name)': AveragePool with dilation needs opset 19 or later (asked for \(options.opset))")
                        }
                        attrs.append(Self.ints("dilations", a.dilation))
                    }
                    if a.ceilMode { attrs.append(Self.int("ceil_mode", 1)) }
                    add("AveragePool", n.name, ins, out, attrs)
                case let .adaptiveAvgPool2d(o):
                    let h = inShape[2], w = inShape[3]
                    if o == [1, 1] {
                        add("GlobalAveragePool", n.name, ins, out)
                    } else if h % o[0] == 0 && w % o[1] == 0 {
                        let k = [h / o[0], w / o[1]]
                        add("AveragePool", n.name, ins, out, [Self.ints("kernel_shape", k), Self.ints("strides", k)])
                    } else {
                        throw ZooError.unsupported("node '\(n.name)': AdaptiveAvgPool2d from \(h)x\(w) to \(o[0])x\(o[1]) has no ONNX equivalent (input size not a multiple of the output size)")
                    }
                case .globalMaxPool: add("GlobalMaxPool", n.name, ins, out)
                case let .flatten(start):
                    let d = start < 0 ? start + inShape.count : start
                    if d == 1 {
                        add("Flatten", n.name, ins, out, [Self.int("axis", 1)])
                    } else {
                        let os = shapes[out] ?? []
                        add("Reshape", n.name, [ins[0], intsConst([0] + os.dropFirst().map(Int64.init))], out)
                    }
                case let .reshape(shape):
                    add("Reshape", n.name, [ins[0], intsConst([0] + shape.map(Int64.init))], out)
                case let .dropout(p):
                    if options.keepDropout {
                        add("Dropout", n.name, [ins[0], floatConst(p)], out)
                    } else {
                        alias[out] = ins[0]
                    }
                case .identity: add("Identity", n.name, ins, out)
                case .add: add("Add", n.name, ins, out)
                case .mul: add("Mul", n.name, ins, out)
                case let .concat(axis): add("Concat", n.name, ins, out, [Self.int("axis", axis)])
                case let .lrn(a):
                    guard a.size % 2 == 1 else {
                        throw ZooError.unsupported("node '\(n.name)': LocalResponseNorm with even size \(a.size) (PyTorch and ONNX place an even window differently)")
                    }
                    add("LRN", n.name, ins, out, [Self.int("size", a.size), Self.float("alpha", a.alpha), Self.float("beta", a.beta), Self.float("bias", a.k)])
                case let .pad(p, value):
                    add("Pad", n.name, [ins[0], intsConst([0, 0, Int64(p.top), Int64(p.left), 0, 0, Int64(p.bottom), Int64(p.right)]), floatConst(value)], out)
                case .constant:
                    alias[out] = try param(n.name + ".value")
                }
                _ = idx
            }
            // The graph output must be a node output; alias it through Identity when needed.
            var outName = onnxName(g.output)
            if outName == g.input || graph.initializer.contains(where: { $0.name == outName }) {
                add("Identity", "output_identity", [outName], g.output)
                outName = g.output
            }
            graph.input = [valueInfo(g.input, [1] + g.inputShape)]
            graph.output = [valueInfo(outName, shapes[g.output] ?? [])]
        }

        func valueInfo(_ name: String, _ shape: [Int]) -> Onnx_ValueInfoProto {
            var v = Onnx_ValueInfoProto()
            v.name = name
            var tt = Onnx_TypeProto.Tensor()
            tt.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
            var sh = Onnx_TensorShapeProto()
            for (i, d) in shape.enumerated() {
                var dim = Onnx_TensorShapeProto.Dimension()
                if i == 0 { dim.dimParam = "N" } else { dim.dimValue = Int64(d) }
                sh.dim.append(dim)
            }
            tt.shape = sh
            v.type.tensorType = tt
            return v
        }

        /// W' = W·γ/√(σ²+ε) per output channel; b' = (b − μ)·γ/√(σ²+ε) + β.
        func folded(conv n: Node, _ a: Conv2dAttrs, bn: Node, _ ba: BatchNormAttrs) throws -> (Tensor, Tensor) {
            func t(_ k: String) throws -> Tensor {
                guard let v = model.tensors[k] else { throw ZooError.missingParameters([k]) }
                return v
            }
            var w = try t(n.name + ".weight")
            let gamma = try t(bn.name + ".weight").data, beta = try t(bn.name + ".bias").data
            let mean = try t(bn.name + ".running_mean").data, vars = try t(bn.name + ".running_var").data
            var bias = a.bias ? try t(n.name + ".bias").data : [Float](repeating: 0, count: a.outChannels)
            let per = w.count / a.outChannels
            for o in 0..<a.outChannels {
                let s = gamma[o] / (vars[o] + ba.eps).squareRoot()
                for j in 0..<per { w.data[o * per + j] *= s }
                bias[o] = (bias[o] - mean[o]) * s + beta[o]
            }
            return (w, Tensor(shape: [a.outChannels], data: bias))
        }
    }
}
