/// Shape inference, parameter and multiply-add counts.
public struct LayerInfo: Sendable {
    public var node: Node
    public var inputShapes: [[Int]]
    public var outputShape: [Int]
    /// Trainable parameter elements owned by this node.
    public var parameters: Int
    /// Buffer elements (BatchNorm running statistics, constants).
    public var buffers: Int
    /// Multiply-adds for the whole batch.
    public var multAdds: Int
}

public enum ShapeRules {
    /// Output length of a convolution or pooling window along one axis (PyTorch's formula).
    public static func windowOutput(_ size: Int, kernel: Int, stride: Int, padBegin: Int, padEnd: Int, dilation: Int, ceilMode: Bool) -> Int {
        let span = size + padBegin + padEnd - dilation * (kernel - 1) - 1
        if span < 0 { return 0 }
        var out = (ceilMode ? (span + stride - 1) / stride : span / stride) + 1
        if ceilMode && (out - 1) * stride >= size + padBegin { out -= 1 }
        return out
    }

    /// NumPy broadcasting of two shapes.
    public static func broadcast(_ a: [Int], _ b: [Int]) -> [Int]? {
        let n = max(a.count, b.count)
        var out = [Int](repeating: 1, count: n)
        for i in 0..<n {
            let x = i < n - a.count ? 1 : a[i - (n - a.count)]
            let y = i < n - b.count ? 1 : b[i - (n - b.count)]
            if x == y || y == 1 { out[i] = x } else if x == 1 { out[i] = y } else { return nil }
        }
        return out
    }
}

extension Graph {
    /// Shapes of every value for a batch of `batch` inputs of `inputShape` (or `inputShapeOverride`).
    public func inferLayers(batch: Int = 1, inputShape inputShapeOverride: [Int]? = nil) throws -> [LayerInfo] {
        var shapes: [String: [Int]] = [input: [batch] + (inputShapeOverride ?? inputShape)]
        var infos: [LayerInfo] = []
        infos.reserveCapacity(nodes.count)
        for node in nodes {
            var ins: [[Int]] = []
            for i in node.inputs {
                guard let s = shapes[i] else {
                    throw ZooError.invalidGraph("node '\(node.name)' reads '\(i)', which no earlier node produces")
                }
                ins.append(s)
            }
            let (out, macs) = try Self.infer(node: node, inputs: ins)
            if out.contains(where: { $0 <= 0 }) {
                throw ZooError.badInput("layer '\(node.name)' (\(node.op.typeName)) would produce an empty output \(ShapeFormat.bracket(out)) from input \(ins.map { ShapeFormat.bracket($0) }.joined(separator: ", ")); the input is too small")
            }
            shapes[node.output] = out
            let specs = node.op.parameterSpecs
            infos.append(LayerInfo(node: node, inputShapes: ins, outputShape: out,
                                   parameters: specs.filter(\.trainable).reduce(0) { $0 + $1.shape.reduce(1, *) },
                                   buffers: specs.filter { !$0.trainable }.reduce(0) { $0 + $1.shape.reduce(1, *) },
                                   multAdds: macs))
        }
        return infos
    }

    /// Output shape for a batch.
    public func outputShape(batch: Int = 1, inputShape: [Int]? = nil) throws -> [Int] {
        let infos = try inferLayers(batch: batch, inputShape: inputShape)
        if output == input { return [batch] + (inputShape ?? self.inputShape) }
        guard let o = infos.last(where: { $0.node.output == output }) else {
            throw ZooError.invalidGraph("graph output '\(output)' is never produced")
        }
        return o.outputShape
    }

    /// Output shape and multiply-adds of one node for the given input shapes (used by importers).
    public static func infer(node: Node, inputs ins: [[Int]]) throws -> ([Int], Int) {
        func fail(_ m: String) -> ZooError {
            .badInput("layer '\(node.name)' (\(node.op.typeName)): \(m); input shape \(ins.map { ShapeFormat.bracket($0) }.joined(separator: ", "))")
        }
        func need(_ n: Int) throws { if ins.count != n { throw ZooError.invalidGraph("node '\(node.name)' (\(node.op.typeName)) takes \(n) input(s), has \(ins.count)") } }
        func image() throws -> (Int, Int, Int, Int) {
            try need(1)
            let s = ins[0]
            guard s.count == 4 else { throw fail("expects a 4-D NCHW input") }
            return (s[0], s[1], s[2], s[3])
        }
        let count = { (s: [Int]) in s.reduce(1, *) }
        switch node.op {
        case let .conv2d(a):
            let (n, c, h, w) = try image()
            guard c == a.inChannels else { throw fail("expects \(a.inChannels) input channels, got \(c)") }
            guard a.groups > 0, a.inChannels % a.groups == 0, a.outChannels % a.groups == 0 else { throw fail("groups \(a.groups) do not divide the channels") }
            let oh = ShapeRules.windowOutput(h, kernel: a.kernel[0], stride: a.stride[0], padBegin: a.padding.top, padEnd: a.padding.bottom, dilation: a.dilation[0], ceilMode: false)
            let ow = ShapeRules.windowOutput(w, kernel: a.kernel[1], stride: a.stride[1], padBegin: a.padding.left, padEnd: a.padding.right, dilation: a.dilation[1], ceilMode: false)
            return ([n, a.outChannels, oh, ow], n * a.outChannels * oh * ow * (a.inChannels / a.groups) * a.kernel[0] * a.kernel[1])
        case let .convTranspose2d(a):
            let (n, c, h, w) = try image()
            guard c == a.inChannels else { throw fail("expects \(a.inChannels) input channels, got \(c)") }
            let oh = (h - 1) * a.stride[0] - a.padding.top - a.padding.bottom + a.dilation[0] * (a.kernel[0] - 1) + a.outputPadding[0] + 1
            let ow = (w - 1) * a.stride[1] - a.padding.left - a.padding.right + a.dilation[1] * (a.kernel[1] - 1) + a.outputPadding[1] + 1
            return ([n, a.outChannels, oh, ow], n * c * h * w * (a.outChannels / a.groups) * a.kernel[0] * a.kernel[1])
        case let .linear(a):
            try need(1)
            guard let last = ins[0].last, ins[0].count >= 2 else { throw fail("expects at least a 2-D input") }
            guard last == a.inFeatures else { throw fail("expects \(a.inFeatures) input features, got \(last)") }
            let out = Array(ins[0].dropLast()) + [a.outFeatures]
            return (out, count(ins[0]) / last * a.inFeatures * a.outFeatures)
        case let .batchNorm2d(a):
            try need(1)
            guard ins[0].count >= 2, ins[0][1] == a.features else { throw fail("expects \(a.features) channels") }
            return (ins[0], count(ins[0]))
        case .relu, .relu6, .clip, .sigmoid, .tanh, .dropout, .identity:
            try need(1)
            return (ins[0], 0)
        case let .softmax(axis):
            try need(1)
            let r = ins[0].count
            guard axis >= -r && axis < r else { throw fail("softmax axis \(axis) out of range") }
            return (ins[0], 0)
        case let .maxPool2d(a), let .avgPool2d(a):
            let (n, c, h, w) = try image()
            let oh = ShapeRules.windowOutput(h, kernel: a.kernel[0], stride: a.stride[0], padBegin: a.padding.top, padEnd: a.padding.bottom, dilation: a.dilation[0], ceilMode: a.ceilMode)
            let ow = ShapeRules.windowOutput(w, kernel: a.kernel[1], stride: a.stride[1], padBegin: a.padding.left, padEnd: a.padding.right, dilation: a.dilation[1], ceilMode: a.ceilMode)
            return ([n, c, oh, ow], n * c * oh * ow * a.kernel[0] * a.kernel[1])
        case let .adaptiveAvgPool2d(o):
            let (n, c, h, w) = try image()
            return ([n, c, o[0], o[1]], n * c * h * w)
        case .globalMaxPool:
            let (n, c, h, w) = try image()
            return ([n, c, 1, 1], n * c * h * w)
        case let .flatten(start):
            try need(1)
            let s = ins[0]
            let d = start < 0 ? start + s.count : start
            guard d >= 1 && d < s.count else {
                if d == s.count { return (s + [1], 0) }
                throw fail("flatten start_dim \(start) out of range")
            }
            return (Array(s[..<d]) + [count(Array(s[d...]))], 0)
        case let .reshape(shape):
            try need(1)
            let total = count(ins[0]) / ins[0][0]
            var out = shape.enumerated().map { $0.element == 0 && $0.offset + 1 < ins[0].count ? ins[0][$0.offset + 1] : $0.element }
            let known = out.filter { $0 != -1 }.reduce(1, *)
            if let i = out.firstIndex(of: -1) {
                guard known > 0, total % known == 0, out.filter({ $0 == -1 }).count == 1 else { throw fail("cannot reshape to \(ShapeFormat.bracket(shape))") }
                out[i] = total / known
            }
            guard out.reduce(1, *) == total else { throw fail("cannot reshape \(total) elements to \(ShapeFormat.bracket(shape))") }
            return ([ins[0][0]] + out, 0)
        case .add, .mul:
            try need(2)
            guard let out = ShapeRules.broadcast(ins[0], ins[1]) else { throw fail("shapes do not broadcast") }
            return (out, count(out))
        case let .concat(axis):
            guard !ins.isEmpty else { throw fail("concat of nothing") }
            let r = ins[0].count
            let ax = axis < 0 ? axis + r : axis
            guard ax >= 0 && ax < r else { throw fail("concat axis \(axis) out of range") }
            var out = ins[0]
            for s in ins.dropFirst() {
                guard s.count == r else { throw fail("concat inputs differ in rank") }
                for i in 0..<r where i != ax && s[i] != out[i] { throw fail("concat inputs differ off the concat axis") }
                out[ax] += s[ax]
            }
            return (out, 0)
        case let .lrn(a):
            try need(1)
            return (ins[0], count(ins[0]) * a.size)
        case let .pad(p, _):
            let (n, c, h, w) = try image()
            return ([n, c, h + p.top + p.bottom, w + p.left + p.right], 0)
        case let .constant(shape):
            try need(0)
            return (shape, 0)
        }
    }
}
