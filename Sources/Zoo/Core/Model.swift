import Foundation

/// An architecture plus its named tensors (parameters and buffers), keyed by canonical name.
public struct Model: Sendable {
    public var graph: Graph
    public var tensors: [String: Tensor]

    public init(graph: Graph, tensors: [String: Tensor]) {
        self.graph = graph; self.tensors = tensors
    }

    /// Strict load: every spec'd tensor present with the spec'd shape, nothing extra.
    /// BatchNorm's `num_batches_tracked` is accepted and dropped. Scalars vs. shape-[1] tensors are not conflated.
    public static func load(graph: Graph, stateDict: [String: Tensor], strict: Bool = true) throws -> Model {
        var tensors: [String: Tensor] = [:]
        var missing: [String] = []
        var expected: Set<String> = []
        for spec in graph.parameterSpecs {
            expected.insert(spec.key)
            guard let t = stateDict[spec.key] else { missing.append(spec.key); continue }
            if t.shape != spec.shape {
                // Tolerate only a reshape-free difference of a trailing/leading singleton? No: strict.
                throw ZooError.shapeMismatch(parameter: spec.key, expected: spec.shape, got: t.shape)
            }
            tensors[spec.key] = t
        }
        let unexpected = stateDict.keys.filter { !expected.contains($0) && !$0.hasSuffix("num_batches_tracked") }.sorted()
        if strict {
            if !missing.isEmpty { throw ZooError.missingParameters(missing) }
            if !unexpected.isEmpty { throw ZooError.unexpectedParameters(unexpected) }
        }
        return Model(graph: graph, tensors: tensors)
    }

    /// PyTorch-style default initialisation, seeded: conv/linear weights and biases uniform in
    /// ±1/sqrt(fan_in) (kaiming_uniform with a=sqrt(5)), BatchNorm weight 1, bias 0, running mean 0, var 1.
    public static func initialized(graph: Graph, seed: UInt64 = 0) -> Model {
        var rng = SeededRandom(seed: seed)
        var tensors: [String: Tensor] = [:]
        for node in graph.nodes {
            tensors.merge(initialTensors(for: node, rng: &rng)) { a, _ in a }
        }
        return Model(graph: graph, tensors: tensors)
    }

    /// Fresh tensors for one node (used by `initialized` and by fine-tuning to reinitialise a head).
    public static func initialTensors(for node: Node, rng: inout SeededRandom) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        let specs = node.parameterSpecs
        var fanIn = 1
        switch node.op {
        case let .conv2d(a): fanIn = a.inChannels / a.groups * a.kernel[0] * a.kernel[1]
        case let .convTranspose2d(a): fanIn = a.outChannels / a.groups * a.kernel[0] * a.kernel[1]
        case let .linear(a): fanIn = a.inFeatures
        default: break
        }
        let bound = 1 / Float(max(fanIn, 1)).squareRoot()
        for s in specs {
            let n = s.shape.reduce(1, *)
            let key = s.key.split(separator: ".").last.map(String.init) ?? s.key
            var data = [Float](repeating: 0, count: n)
            switch (node.op, key) {
            case (.batchNorm2d, "weight"), (.batchNorm2d, "running_var"):
                data = [Float](repeating: 1, count: n)
            case (.batchNorm2d, _), (.constant, _):
                break
            default:
                for i in 0..<n { data[i] = (rng.nextFloat() * 2 - 1) * bound }
            }
            out[s.key] = Tensor(shape: s.shape, data: data)
        }
        return out
    }
}
