import Foundation

/// One line of a model summary: a layer (a graph node) or a module grouping layers
/// (`layer1`, `layer1.0`), indented by its depth in the module tree.
public struct SummaryRow: Codable, Sendable, Equatable {
    /// Full module path (`layer1.0.conv1`).
    public var path: String
    /// Depth in the module tree (0 for top-level modules).
    public var depth: Int
    /// The op type (`Conv2d`), or "Module" for a grouping row.
    public var type: String
    public var isGroup: Bool
    /// Output shape including the batch dimension (for a group: its last layer's output).
    public var outputShape: [Int]
    /// Trainable-parameter elements (for a group: of all its layers), frozen ones included.
    public var parameters: Int
    /// Of `parameters`, those that are frozen.
    public var frozenParameters: Int
    /// Buffer elements (BatchNorm running statistics, constants).
    public var buffers: Int
    /// Multiply-adds for the whole batch.
    public var multAdds: Int
}

/// A torchinfo/Keras-style summary of a graph for an input shape.
public struct ModelSummary: Codable, Sendable, Equatable {
    public var name: String
    /// Input shape including the batch dimension.
    public var inputShape: [Int]
    public var outputShape: [Int]
    public var rows: [SummaryRow]
    public var totalParameters: Int
    public var trainableParameters: Int
    public var nonTrainableParameters: Int
    public var buffers: Int
    public var totalMultAdds: Int
    /// Float32 bytes of the parameters.
    public var parameterBytes: Int
    /// Float32 bytes of the buffers.
    public var bufferBytes: Int

    /// - `batch`, `inputShape`: the input to summarise for (nil: the graph's own input shape).
    /// - `frozen`: parameter keys (`fc.weight`) or module paths (`features`, `layer1.0`) whose
    ///   parameters are frozen; a module path freezes everything beneath it.
    public init(graph: Graph, batch: Int = 1, inputShape: [Int]? = nil, frozen: Set<String> = []) throws {
        let infos = try graph.inferLayers(batch: batch, inputShape: inputShape)
        func isFrozen(_ key: String) -> Bool {
            if frozen.contains(key) { return true }
            var p = Substring(key)
            while let dot = p.lastIndex(of: ".") {
                p = p[..<dot]
                if frozen.contains(String(p)) { return true }
            }
            return false
        }
        var rows: [SummaryRow] = []
        var openGroups: [String] = []  // paths of the groups enclosing the current row
        var groupIndex: [String: Int] = [:]
        for info in infos {
            let node = info.node
            let parts = node.name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            let prefixes = parts.count > 1 ? (1..<parts.count).map { parts[0..<$0].joined(separator: ".") } : []
            // Close groups that are not prefixes of this node; open the new ones.
            var keep = 0
            while keep < openGroups.count && keep < prefixes.count && openGroups[keep] == prefixes[keep] { keep += 1 }
            openGroups.removeLast(openGroups.count - keep)
            for p in prefixes.dropFirst(keep) {
                groupIndex[p] = rows.count
                rows.append(SummaryRow(path: p, depth: openGroups.count, type: "Module", isGroup: true, outputShape: [],
                                       parameters: 0, frozenParameters: 0, buffers: 0, multAdds: 0))
                openGroups.append(p)
            }
            let specs = node.parameterSpecs.filter(\.trainable)
            let frozenCount = specs.filter { isFrozen($0.key) }.reduce(0) { $0 + $1.shape.reduce(1, *) }
            rows.append(SummaryRow(path: node.name, depth: openGroups.count, type: node.op.typeName, isGroup: false,
                                   outputShape: info.outputShape, parameters: info.parameters, frozenParameters: frozenCount,
                                   buffers: info.buffers, multAdds: info.multAdds))
            for g in openGroups {
                let i = groupIndex[g]!
                rows[i].outputShape = info.outputShape
                rows[i].parameters += info.parameters
                rows[i].frozenParameters += frozenCount
                rows[i].buffers += info.buffers
                rows[i].multAdds += info.multAdds
            }
        }
        let leaves = rows.filter { !$0.isGroup }
        self.name = graph.name
        self.inputShape = [batch] + (inputShape ?? graph.inputShape)
        self.outputShape = try graph.outputShape(batch: batch, inputShape: inputShape)
        self.rows = rows
        self.totalParameters = leaves.reduce(0) { $0 + $1.parameters }
        self.nonTrainableParameters = leaves.reduce(0) { $0 + $1.frozenParameters }
        self.trainableParameters = totalParameters - nonTrainableParameters
        self.buffers = leaves.reduce(0) { $0 + $1.buffers }
        self.totalMultAdds = leaves.reduce(0) { $0 + $1.multAdds }
        self.parameterBytes = totalParameters * 4
        self.bufferBytes = buffers * 4
    }

    /// "11,689,512"
    public static func grouped(_ n: Int) -> String {
        let s = String(n.magnitude)
        var out = ""
        for (i, c) in s.enumerated() {
            if i > 0 && (s.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return (n < 0 ? "-" : "") + out
    }

    /// "1.81 G", "431.08 K"
    public static func scaled(_ n: Int) -> String {
        let v = Double(n)
        for (limit, unit) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")] where v >= limit {
            return String(format: "%.2f %@", v / limit, unit)
        }
        return String(n)
    }

    static func paramText(_ r: SummaryRow) -> String {
        if r.parameters == 0 { return r.isGroup ? "--" : "0" }
        if r.frozenParameters == 0 { return grouped(r.parameters) }
        if r.frozenParameters == r.parameters { return "(" + grouped(r.parameters) + ")" }
        return grouped(r.parameters - r.frozenParameters) + " (" + grouped(r.frozenParameters) + ")"
    }

    /// The table: layer tree, type, output shape, params (frozen in parentheses), mult-adds; then totals.
    public var text: String {
        let header = ["Layer", "Type", "Output Shape", "Param #", "Mult-Adds"]
        var cells: [[String]] = []
        for r in rows {
            let label = r.depth == 0 ? r.path : String(repeating: "  ", count: r.depth) + (r.path.split(separator: ".").last.map(String.init) ?? r.path)
            cells.append([label, r.isGroup ? "" : r.type, ShapeFormat.bracket(r.outputShape), Self.paramText(r),
                          r.multAdds == 0 ? (r.isGroup ? "--" : "0") : Self.grouped(r.multAdds)])
        }
        var widths = header.map(\.count)
        for c in cells { for (i, s) in c.enumerated() { widths[i] = max(widths[i], s.count) } }
        func line(_ c: [String]) -> String {
            var s = ""
            for (i, v) in c.enumerated() {
                let pad = String(repeating: " ", count: widths[i] - v.count)
                // Text columns left-aligned, numbers right-aligned.
                s += i < 3 ? v + pad : pad + v
                if i < c.count - 1 { s += "   " }
            }
            while s.hasSuffix(" ") { s.removeLast() }
            return s
        }
        let total = widths.reduce(0, +) + 3 * (widths.count - 1)
        let heavy = String(repeating: "=", count: total)
        let light = String(repeating: "-", count: total)
        var out = [heavy, "\(name)   input \(ShapeFormat.bracket(inputShape)) -> output \(ShapeFormat.bracket(outputShape))", heavy, line(header), light]
        out += cells.map(line)
        out.append(heavy)
        out.append("Total params: " + Self.grouped(totalParameters))
        out.append("Trainable params: " + Self.grouped(trainableParameters))
        out.append("Non-trainable params: " + Self.grouped(nonTrainableParameters))
        out.append("Buffers (running statistics): " + Self.grouped(buffers))
        out.append("Total mult-adds: " + Self.grouped(totalMultAdds) + (totalMultAdds >= 1000 ? " (" + Self.scaled(totalMultAdds) + ")" : ""))
        out.append(String(format: "Parameter memory: %.2f MB (float32; buffers %.2f MB)", Double(parameterBytes) / 1e6, Double(bufferBytes) / 1e6))
        out.append(heavy)
        return out.joined(separator: "\n") + "\n"
    }

    public func jsonData(pretty: Bool = true) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        return try e.encode(self)
    }
}
