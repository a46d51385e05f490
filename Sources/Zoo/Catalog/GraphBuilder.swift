/// Builds a `Graph` node by node while tracking every value's shape (for a batch of one), so a
/// definition can read the current channel count or flattened width, and an input too small for the
/// architecture fails at build time with a `ZooError` naming the layer.
///
/// Nodes are sequential by default (each reads the previous node's output); pass `inputs:` for
/// branches. A node's name is its module path, so its parameters become `name.weight` etc.
/// Parameter-free nodes reusing a name (a functional ReLU applied twice) get `_2`, `_3`, ... appended.
public struct GraphBuilder: Sendable {
    public let name: String
    public let inputShape: [Int]
    public let input: String
    public private(set) var nodes: [Node] = []
    /// The value the next node reads by default: the last node's output (initially the graph input).
    public private(set) var last: String
    private var shapes: [String: [Int]]
    private var used: Set<String>

    public init(name: String, inputShape: [Int], input: String = "input") {
        self.name = name; self.inputShape = inputShape; self.input = input
        self.last = input
        self.shapes = [input: [1] + inputShape]
        self.used = [input]
    }

    /// Shape of a value for a batch of one (batch dimension included).
    public func shape(of value: String) -> [Int]? { shapes[value] }

    /// Shape of `last` (batch dimension included).
    public var shape: [Int] { shapes[last] ?? [] }

    /// Channel count (dimension 1) of `last`.
    public var channels: Int { shape.count > 1 ? shape[1] : 0 }

    /// Elements per sample of `last` (what a Flatten would produce).
    public var features: Int { shape.dropFirst().reduce(1, *) }

    /// Appends a node and returns the name of the value it produces.
    @discardableResult
    public mutating func add(_ nodeName: String, _ op: Op, inputs: [String]? = nil) throws -> String {
        var nodeName = nodeName
        if used.contains(nodeName) {
            guard op.parameterSpecs.isEmpty else {
                throw ZooError.invalidGraph("architecture '\(name)': node name '\(nodeName)' is used twice")
            }
            var k = 2
            while used.contains("\(nodeName)_\(k)") { k += 1 }
            nodeName = "\(nodeName)_\(k)"
        }
        let ins = inputs ?? [last]
        var inShapes: [[Int]] = []
        for i in ins {
            guard let s = shapes[i] else {
                throw ZooError.invalidGraph("architecture '\(name)': node '\(nodeName)' reads '\(i)', which no earlier node produces")
            }
            inShapes.append(s)
        }
        let node = Node(name: nodeName, op: op, inputs: ins)
        let (out, _) = try Graph.infer(node: node, inputs: inShapes)
        if out.contains(where: { $0 <= 0 }) {
            throw ZooError.badInput("architecture '\(name)' needs a larger input than \(ShapeFormat.bracket(inputShape)): layer '\(nodeName)' (\(op.typeName)) would produce an empty output \(ShapeFormat.bracket(Array(out.dropFirst())))")
        }
        used.insert(nodeName)
        shapes[nodeName] = out
        nodes.append(node)
        last = nodeName
        return nodeName
    }

    /// The finished graph; its output is `output` or the last node's.
    public func finish(output: String? = nil) throws -> Graph {
        let g = Graph(name: name, input: input, inputShape: inputShape, output: output ?? last, nodes: nodes)
        try g.validate()
        return g
    }
}

// Shorthands for the catalog definitions (PyTorch argument order and defaults).
extension Op {
    static func conv(_ inC: Int, _ outC: Int, _ k: Int, stride: Int = 1, padding: Int = 0,
                     groups: Int = 1, bias: Bool = true) -> Op {
        .conv2d(Conv2dAttrs(inChannels: inC, outChannels: outC, kernel: [k, k], stride: [stride, stride],
                            padding: Padding2D(padding), groups: groups, bias: bias))
    }
    static func bn(_ c: Int, eps: Float = 1e-5) -> Op { .batchNorm2d(BatchNormAttrs(features: c, eps: eps)) }
    static func fc(_ i: Int, _ o: Int) -> Op { .linear(LinearAttrs(inFeatures: i, outFeatures: o)) }
    static func maxPool(_ k: Int, stride: Int? = nil, padding: Int = 0, ceil: Bool = false) -> Op {
        .maxPool2d(Pool2dAttrs(kernel: [k, k], stride: [stride ?? k, stride ?? k], padding: Padding2D(padding), ceilMode: ceil))
    }
    static func avgPool(_ k: Int, stride: Int? = nil, padding: Int = 0) -> Op {
        .avgPool2d(Pool2dAttrs(kernel: [k, k], stride: [stride ?? k, stride ?? k], padding: Padding2D(padding)))
    }
    static func adaptiveAvg(_ h: Int, _ w: Int) -> Op { .adaptiveAvgPool2d(output: [h, w]) }
    static var flat: Op { .flatten(startDim: 1) }
}
