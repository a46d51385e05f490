import Foundation

/// One layer application. `name` is the module path of the reference definition (`layer1.0.conv1`,
/// or `0` for a d2l `nn.Sequential`); the op's parameters are `name + "." + key`.
public struct Node: Codable, Sendable, Equatable {
    public var name: String
    public var op: Op
    /// Value names consumed, in order. The graph input is called `Graph.input`.
    public var inputs: [String]
    /// The value this node produces (by default its own name).
    public var output: String

    public init(name: String, op: Op, inputs: [String], output: String? = nil) {
        self.name = name; self.op = op; self.inputs = inputs; self.output = output ?? name
    }

    public var parameterSpecs: [ParameterSpec] {
        op.parameterSpecs.map { ParameterSpec(key: name.isEmpty ? $0.key : name + "." + $0.key, shape: $0.shape, trainable: $0.trainable) }
    }
}

/// The architecture spec: a single-input, single-output DAG of nodes in topological order.
/// Encodes to and decodes from JSON.
public struct Graph: Codable, Sendable, Equatable {
    public var name: String
    /// Name of the graph input value.
    public var input: String
    /// Input shape without the batch dimension, e.g. [3, 224, 224].
    public var inputShape: [Int]
    /// Name of the value that is the graph's output.
    public var output: String
    public var nodes: [Node]

    public init(name: String, input: String = "input", inputShape: [Int], output: String, nodes: [Node]) {
        self.name = name; self.input = input; self.inputShape = inputShape; self.output = output; self.nodes = nodes
    }

    /// Every parameter and buffer in definition order.
    public var parameterSpecs: [ParameterSpec] { nodes.flatMap { $0.parameterSpecs } }

    public var parameterCount: Int { parameterSpecs.filter(\.trainable).reduce(0) { $0 + $1.shape.reduce(1, *) } }
    public var bufferCount: Int { parameterSpecs.filter { !$0.trainable }.reduce(0) { $0 + $1.shape.reduce(1, *) } }

    public func jsonData(pretty: Bool = true) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        return try e.encode(self)
    }

    public static func fromJSON(_ data: Data) throws -> Graph {
        let g: Graph
        do { g = try JSONDecoder().decode(Graph.self, from: data) } catch let e as DecodingError {
            throw ZooError.invalidGraph("architecture JSON does not decode: \(describe(e))")
        }
        try g.validate()
        return g
    }

    /// Structural checks: unique outputs, inputs defined before use, output present, sane dimensions.
    public func validate() throws {
        var defined: Set<String> = [input]
        for n in nodes {
            for i in n.inputs where !defined.contains(i) {
                throw ZooError.invalidGraph("node '\(n.name)' (\(n.op.typeName)) reads '\(i)', which no earlier node produces")
            }
            if defined.contains(n.output) {
                throw ZooError.invalidGraph("value '\(n.output)' is produced twice (node '\(n.name)')")
            }
            defined.insert(n.output)
        }
        if !defined.contains(output) { throw ZooError.invalidGraph("graph output '\(output)' is never produced") }
        for d in inputShape where d <= 0 || d > 1 << 20 {
            throw ZooError.invalidGraph("input shape \(ShapeFormat.bracket(inputShape)) has an impossible dimension")
        }
        for s in parameterSpecs {
            let n = s.shape.reduce(1) { $0.multipliedReportingOverflow(by: max($1, 0)).partialValue }
            if s.shape.contains(where: { $0 < 0 }) || n > 1 << 32 {
                throw ZooError.invalidGraph("parameter '\(s.key)' has an impossible shape \(ShapeFormat.bracket(s.shape))")
            }
        }
    }
}

func describe(_ e: DecodingError) -> String {
    func path(_ c: [CodingKey]) -> String { c.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") }
    switch e {
    case let .dataCorrupted(c): return c.debugDescription + (c.codingPath.isEmpty ? "" : " at \(path(c.codingPath))")
    case let .keyNotFound(k, c): return "missing key '\(k.stringValue)' at \(path(c.codingPath))"
    case let .typeMismatch(_, c): return "wrong type at \(path(c.codingPath)): \(c.debugDescription)"
    case let .valueNotFound(_, c): return "missing value at \(path(c.codingPath))"
    @unknown default: return "\(e)"
    }
}
