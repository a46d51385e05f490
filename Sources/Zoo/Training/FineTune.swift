import Foundation

/// Which layers of a pretrained model a fine-tuning run reuses, reinitializes and freezes.
public struct FineTunePlan: Sendable {
    public var model: Model
    /// Node names whose parameters came from the pretrained model.
    public var reused: [String]
    /// Node names with fresh parameters (the head and any layer whose shape changed or that is new).
    public var new: [String]
    /// Parameter names that will not be trained.
    public var frozen: Set<String>
    /// Learning-rate multipliers per parameter.
    public var lrScales: [String: Double]
}

public enum FreezeMode: Sendable, Equatable {
    case reused
    case none
    /// Glob patterns (`*`, `?`) matched against parameter names or node names, comma separated.
    case pattern(String)

    public init(_ text: String) {
        switch text {
        case "reused": self = .reused
        case "none": self = .none
        default: self = .pattern(text)
        }
    }
}

public enum FineTune {
    /// The node that produces the class scores: walking back from the output through parameter-free nodes.
    public static func headNode(_ g: Graph) -> Int? {
        var value = g.output
        while let i = g.nodes.lastIndex(where: { $0.output == value }) {
            let n = g.nodes[i]
            switch n.op {
            case .linear, .conv2d: return i
            default:
                guard let first = n.inputs.first else { return nil }
                value = first
            }
        }
        return nil
    }

    /// `g` with its head producing `classes` outputs.
    public static func withClasses(_ g: Graph, _ classes: Int) throws -> Graph {
        guard let h = headNode(g) else { throw ZooError.unsupported("cannot find the classifier layer of '\(g.name)' to give it \(classes) classes") }
        var out = g
        switch out.nodes[h].op {
        case var .linear(a): a.outFeatures = classes; out.nodes[h].op = .linear(a)
        case var .conv2d(a):
            guard a.groups == 1 else { throw ZooError.unsupported("the classifier layer '\(g.nodes[h].name)' is a grouped convolution") }
            a.outChannels = classes; out.nodes[h].op = .conv2d(a)
        default: break
        }
        _ = try out.inferLayers(batch: 1)
        return out
    }

    /// Glob match with `*` and `?`.
    public static func glob(_ pattern: String, _ s: String) -> Bool {
        let p = Array(pattern), t = Array(s)
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count && (p[pi] == "?" || p[pi] == t[ti]) { pi += 1; ti += 1 }
            else if pi < p.count && p[pi] == "*" { star = pi; mark = ti; pi += 1 }
            else if star >= 0 { pi = star + 1; mark += 1; ti = mark }
            else { return false }
        }
        while pi < p.count && p[pi] == "*" { pi += 1 }
        return pi == p.count
    }

    /// Matches `target`'s layers against `pretrained` by node name and parameter shapes; the head is always new.
    /// `reinit` lists glob patterns of further layers (node names) to reinitialize.
    public static func plan(pretrained: Model, target: Graph, freeze: FreezeMode, reusedLRScale: Double = 1, newLRScale: Double = 1,
                            reinit: [String] = [], seed: UInt64 = 0) throws -> FineTunePlan {
        let old = Dictionary(pretrained.graph.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let head = headNode(target)
        var rng = SeededRandom(seed: seed)
        var tensors: [String: Tensor] = [:]
        var reused: [String] = [], new: [String] = []
        for (i, node) in target.nodes.enumerated() {
            let specs = node.parameterSpecs
            if specs.isEmpty { continue }
            var ok = i != head && !reinit.contains { glob($0, node.name) }
            if ok, let o = old[node.name], o.op.typeName == node.op.typeName {
                for s in specs where pretrained.tensors[s.key]?.shape != s.shape { ok = false }
            } else { ok = false }
            if ok {
                for s in specs { tensors[s.key] = pretrained.tensors[s.key]! }
                reused.append(node.name)
            } else {
                tensors.merge(Model.initialTensors(for: node, rng: &rng)) { a, _ in a }
                new.append(node.name)
            }
        }
        let model = Model(graph: target, tensors: tensors)
        let reusedSet = Set(reused)
        var frozen: Set<String> = []
        var scales: [String: Double] = [:]
        let patterns: [String]
        if case let .pattern(p) = freeze { patterns = p.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } } else { patterns = [] }
        for node in target.nodes {
            for s in node.parameterSpecs where s.trainable {
                let isReused = reusedSet.contains(node.name)
                switch freeze {
                case .reused: if isReused { frozen.insert(s.key) }
                case .none: break
                case .pattern: if patterns.contains(where: { glob($0, s.key) || glob($0, node.name) }) { frozen.insert(s.key) }
                }
                scales[s.key] = isReused ? reusedLRScale : newLRScale
            }
        }
        return FineTunePlan(model: model, reused: reused, new: new, frozen: frozen, lrScales: scales)
    }
}

/// An SVG of loss and accuracy curves per epoch (train solid, test dashed).
public enum CurvePlot {
    public static func svg(_ metrics: [EpochMetrics], title: String = "training curves") -> String {
        let w = 720.0, h = 300.0, pad = 44.0, gap = 40.0
        let pw = (w - 2 * pad - gap) / 2, ph = h - 2 * pad
        func esc(_ s: String) -> String { s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;") }
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"\(Int(w / 2))\" y=\"16\" text-anchor=\"middle\" font-size=\"13\">\(esc(title))</text>\n"
        let epochs = metrics.map { Double($0.epoch) }
        let xmin = epochs.min() ?? 0, xmax = max(epochs.max() ?? 1, xmin + 1)
        func panel(_ x0: Double, _ name: String, _ series: [(String, String, [Double?])], fixedMax: Double?) {
            let vals = series.flatMap { $0.2.compactMap { $0 } }.filter { $0.isFinite }
            let ymax = fixedMax ?? max(vals.max() ?? 1, 1e-6), ymin = fixedMax != nil ? 0 : min(vals.min() ?? 0, 0)
            out += "<rect x=\"\(x0)\" y=\"\(pad)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#999\"/>\n"
            out += "<text x=\"\(x0 + pw / 2)\" y=\"\(pad - 6)\" text-anchor=\"middle\">\(name)</text>\n"
            out += "<text x=\"\(x0 - 4)\" y=\"\(pad + 4)\" text-anchor=\"end\">\(String(format: "%.3g", ymax))</text>\n"
            out += "<text x=\"\(x0 - 4)\" y=\"\(pad + ph)\" text-anchor=\"end\">\(String(format: "%.3g", ymin))</text>\n"
            out += "<text x=\"\(x0)\" y=\"\(pad + ph + 14)\">epoch \(Int(xmin))</text><text x=\"\(x0 + pw)\" y=\"\(pad + ph + 14)\" text-anchor=\"end\">\(Int(xmax))</text>\n"
            for (k, (label, color, ys)) in series.enumerated() {
                var pts: [String] = []
                for (e, y) in zip(epochs, ys) {
                    guard let y, y.isFinite else { continue }
                    let px = x0 + (e - xmin) / (xmax - xmin) * pw, py = pad + ph - (y - ymin) / max(ymax - ymin, 1e-12) * ph
                    pts.append(String(format: "%.1f,%.1f", px, py))
                }
                if !pts.isEmpty {
                    out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(k == 1 ? " stroke-dasharray=\"5,3\"" : "") points=\"\(pts.joined(separator: " "))\"/>\n"
                }
                out += "<text x=\"\(x0 + 8)\" y=\"\(pad + 16 + Double(k) * 14)\" fill=\"\(color)\">\(label)</text>\n"
            }
        }
        panel(pad, "loss", [("train", "#1f77b4", metrics.map { $0.trainLoss }), ("test", "#ff7f0e", metrics.map { $0.testLoss })], fixedMax: nil)
        panel(pad + pw + gap, "accuracy", [("train", "#1f77b4", metrics.map { $0.trainAccuracy }), ("test", "#ff7f0e", metrics.map { $0.testAccuracy })], fixedMax: 1)
        return out + "</svg>\n"
    }
}
