import ArgumentParser
import Foundation
import Formats
import Zoo

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a layer-by-layer summary: output shapes, parameters, mult-adds.")

    @Argument(help: "A catalog architecture (see `zoo-tool list`), an architecture JSON file, or a model file.")
    var model: String

    @Option(help: "Input shape, e.g. 1x3x224x224 (batch first; a catalog architecture adapts its channels and size).")
    var input: String?

    @Option(help: "Number of classes (catalog architectures).")
    var classes: Int?

    @Option(help: "Comma-separated parameter names or module paths to show as frozen (non-trainable).")
    var frozen: String?

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func run() throws {
        try runReportingErrors {
            var batch = 1
            var inputShape: [Int]? = nil
            var graph: Graph
            if let input, !ModelIOFacade.isFile(model) {
                // A catalog architecture is built for the requested channels and size.
                let base = try Catalog.graph(model, classes: classes)
                let parsed = try parseInputOption(input, like: base.inputShape)
                batch = parsed.batch
                graph = try Catalog.graph(model, classes: classes, inChannels: parsed.shape.first,
                                          inputSize: Array(parsed.shape.dropFirst()))
            } else {
                graph = try ModelIOFacade.graph(model, classes: classes)
                if let input {
                    let parsed = try parseInputOption(input, like: graph.inputShape)
                    batch = parsed.batch
                    inputShape = parsed.shape
                }
            }
            let frozenSet = Set((frozen ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
            let keys = graph.parameterSpecs.filter(\.trainable).map(\.key)
            for f in frozenSet.sorted() where !keys.contains(where: { $0 == f || $0.hasPrefix(f + ".") }) {
                throw ZooError.badInput("--frozen \(f): no parameter of \(graph.name) has this name or module path")
            }
            let s = try ModelSummary(graph: graph, batch: batch, inputShape: inputShape, frozen: frozenSet)
            if json {
                say(String(decoding: try s.jsonData(), as: UTF8.self))
            } else {
                FileHandle.standardOutput.write(Data(s.text.utf8))
            }
        }
    }
}

/// Graph lookup for commands that only need the architecture.
enum ModelIOFacade {
    static func isFile(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    static func graph(_ spec: String, classes: Int?) throws -> Graph {
        if isFile(spec), try ModelIO.detectFormat(path: spec) != .json {
            return try ModelIO.loadModel(path: spec, classes: classes).graph
        }
        return try ModelIO.loadGraph(spec, classes: classes)
    }
}
