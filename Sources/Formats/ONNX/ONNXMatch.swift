import Zoo

/// Recognises catalog architectures in imported graphs, so parameters get their canonical names.
///
/// Two graphs match when, walking back from the output, every node pairs with a node of the same op and
/// attributes, ignoring Dropout and Identity, ReLU6 ≡ Clip(0, 6), 1×1 stride-1 pooling and adaptive pooling
/// to the input size (no-ops), and AdaptiveAvgPool2d ≡ AveragePool with kernel = stride = input/output.
/// A convolution with bias in the file may stand for the catalog's bias-free convolution + BatchNorm
/// (the default `torch.onnx.export` folds BatchNorm): the BatchNorm then gets weight 1, bias = the folded bias,
/// running mean 0 and running variance 1 − eps, which computes the same function.
public enum ONNXMatch {
    public static func canonicalize(_ r: ONNXImport.Result, candidates: [(String, Graph)]) -> ONNXImport.Result {
        for (name, cg) in candidates {
            if let m = match(imported: r.model, catalog: cg) {
                var out = r
                out.model = m.model
                out.architecture = name
                out.notes.append("recognised as catalog architecture '\(name)'; parameters carry canonical names"
                                 + (m.restoredBN > 0 ? " (\(m.restoredBN) BatchNorm layers folded into convolutions by the exporter restored with identity statistics)" : ""))
                return out
            }
        }
        return r
    }

    /// Catalog graphs shaped like `graph` (same input shape and class count), for `canonicalize`.
    public static func catalogCandidates(for graph: Graph) -> [(String, Graph)] {
        guard graph.inputShape.count == 3, let outShape = try? graph.outputShape(batch: 1), outShape.count == 2 else { return [] }
        let convs = graph.nodes.filter { if case .conv2d = $0.op { return true }; return false }.count
        var out: [(String, Graph)] = []
        for e in Catalog.entries {
            guard let g = try? Catalog.graph(e.name, classes: outShape[1], inChannels: graph.inputShape[0],
                                             inputSize: [graph.inputShape[1], graph.inputShape[2]]) else { continue }
            let c = g.nodes.filter { if case .conv2d = $0.op { return true }; return false }.count
            if c == convs { out.append((e.name, g)) }
        }
        return out
    }

    struct Side {
        let graph: Graph
        var producer: [String: Node] = [:]
        var shapes: [String: [Int]] = [:]
        init(_ g: Graph) throws {
            graph = g
            for n in g.nodes { producer[n.output] = n }
            shapes[g.input] = [1] + g.inputShape
            for i in try g.inferLayers(batch: 1) { shapes[i.node.output] = i.outputShape }
        }
        /// Follows no-op nodes back to the value that carries the data.
        func resolve(_ v: String) -> String {
            var v = v
            while let n = producer[v], isNoop(n) { v = n.inputs[0] }
            return v
        }
        func isNoop(_ n: Node) -> Bool {
            switch n.op {
            case .dropout, .identity: return true
            case let .maxPool2d(a), let .avgPool2d(a): return a.kernel == [1, 1] && a.stride == [1, 1] && a.padding == .zero
            case let .adaptiveAvgPool2d(o): return shapes[n.inputs[0]].map { Array($0.suffix(2)) == o } ?? false
            default: return false
            }
        }
    }

    struct Matched { var model: Model; var restoredBN: Int }

    static func match(imported: Model, catalog: Graph) -> Matched? {
        guard let I = try? Side(imported.graph), let C = try? Side(catalog) else { return nil }
        var map: [String: String] = [:]        // catalog value → imported value
        var nodePair: [String: String] = [:]   // catalog node name → imported node name
        var folded: Set<String> = []           // catalog BatchNorm names restored from a folded conv

        func sameOp(_ c: Node, _ i: Node) -> Bool {
            switch (c.op, i.op) {
            case (.relu6, .clip(0, 6)), (.clip(0, 6), .relu6): return true
            case let (.softmax(a), .softmax(b)):
                let r = C.shapes[c.output]?.count ?? 0
                return (a < 0 ? a + r : a) == (b < 0 ? b + r : b)
            case let (.avgPool2d(a), .avgPool2d(b)):
                var a = a, b = b
                if a.padding == .zero { a.countIncludePad = true }
                if b.padding == .zero { b.countIncludePad = true }
                return a == b
            case let (.batchNorm2d(a), .batchNorm2d(b)):
                return a.features == b.features && a.eps == b.eps   // momentum does not affect inference
            case let (.maxPool2d(a), .maxPool2d(b)):
                var a = a, b = b
                a.countIncludePad = true; b.countIncludePad = true
                return a == b
            case let (.adaptiveAvgPool2d(o), .avgPool2d(b)):
                guard let s = C.shapes[c.inputs[0]] else { return false }
                let k = [s[2] / o[0], s[3] / o[1]]
                return s[2] % o[0] == 0 && s[3] % o[1] == 0 && b.kernel == k && b.stride == k && b.padding == .zero && !b.ceilMode
            case (.adaptiveAvgPool2d([1, 1]), .adaptiveAvgPool2d([1, 1])): return true
            case let (.flatten(a), .flatten(b)): return a == b
            case let (.concat(a), .concat(b)):
                let r = C.shapes[c.output]?.count ?? 0
                return (a < 0 ? a + r : a) == (b < 0 ? b + r : b)
            default: return c.op == i.op
            }
        }

        func m(_ cv0: String, _ iv0: String) -> Bool {
            let cv = C.resolve(cv0), iv = I.resolve(iv0)
            if let known = map[cv] { return known == iv }
            if cv == catalog.input || iv == imported.graph.input {
                guard cv == catalog.input && iv == imported.graph.input else { return false }
                map[cv] = iv
                return true
            }
            guard let cn = C.producer[cv], let inode = I.producer[iv] else { return false }
            // Folded BatchNorm: catalog conv(no bias) → BN  vs  imported conv(bias).
            if case let .batchNorm2d(ba) = cn.op, case var .conv2d(ia) = inode.op, ia.bias,
               let cc = C.producer[C.resolve(cn.inputs[0])], case let .conv2d(ca) = cc.op, !ca.bias {
                ia.bias = false
                guard ia == ca, ba.features == ca.outChannels else { return false }
                map[cv] = iv
                nodePair[cc.name] = inode.name
                folded.insert(cn.name)
                return m(cc.inputs[0], inode.inputs[0])
            }
            guard sameOp(cn, inode), cn.inputs.count == inode.inputs.count else { return false }
            map[cv] = iv
            nodePair[cn.name] = inode.name
            let saved = (map, nodePair, folded)
            if zip(cn.inputs, inode.inputs).allSatisfy({ m($0.0, $0.1) }) { return true }
            if cn.inputs.count == 2, cn.op == .add || cn.op == .mul {
                (map, nodePair, folded) = saved
                if m(cn.inputs[0], inode.inputs[1]) && m(cn.inputs[1], inode.inputs[0]) { return true }
            }
            return false
        }

        guard m(catalog.output, imported.graph.output) else { return nil }
        // Every imported node with parameters must be used, and every catalog node with parameters paired.
        let pairedImported = Set(nodePair.values)
        for n in imported.graph.nodes where !n.op.parameterSpecs.isEmpty && !pairedImported.contains(n.name) { return nil }
        var tensors: [String: Tensor] = [:]
        for n in catalog.nodes where !n.op.parameterSpecs.isEmpty {
            if folded.contains(n.name) {
                guard case let .batchNorm2d(ba) = n.op, let conv = C.producer[C.resolve(n.inputs[0])],
                      let iname = nodePair[conv.name], let bias = imported.tensors[iname + ".bias"] else { return nil }
                let c = ba.features
                tensors[n.name + ".weight"] = Tensor(shape: [c], repeating: 1)
                tensors[n.name + ".bias"] = bias.reshaped([c])
                tensors[n.name + ".running_mean"] = Tensor(shape: [c], repeating: 0)
                tensors[n.name + ".running_var"] = Tensor(shape: [c], repeating: 1 - ba.eps)
                continue
            }
            guard let iname = nodePair[n.name] else { return nil }
            for s in n.op.parameterSpecs {
                guard let t = imported.tensors[iname + "." + s.key] else { return nil }
                tensors[n.name + "." + s.key] = t
            }
        }
        guard let model = try? Model.load(graph: catalog, stateDict: tensors) else { return nil }
        return Matched(model: model, restoredBN: folded.count)
    }
}
