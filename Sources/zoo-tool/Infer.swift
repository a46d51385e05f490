import ArgumentParser
import Foundation
import Formats
import Zoo

struct Infer: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model forward on a NumPy array (float32, C order) and save the output as .npy.")

    @Argument(help: "A catalog architecture, an architecture JSON file, or a model file.")
    var model: String

    @Option(help: "Weights to load strictly into the architecture (a safetensors state dict).")
    var weights: String?

    @Option(help: "The architecture of a weights-only MODEL file (catalog name or architecture JSON).")
    var arch: String?

    @Option(help: "Number of classes (catalog architectures).")
    var classes: Int?

    @Option(help: "Input array, .npy float32 of shape (N, C, H, W).")
    var input: String

    @Option(help: "Where to write the output array (.npy float32).")
    var output: String

    @Option(help: "Print the top K classes of each sample.")
    var top: Int?

    @Option(help: "Worker threads.")
    var threads: Int = 2

    @Flag(help: "Run the plain reference kernels instead of the optimized ones (slow; for cross-checking).")
    var reference = false

    @Option(help: "Seed of the default initialisation when no weights are given.")
    var seed: UInt64 = 0

    func run() throws {
        try runReportingErrors {
            guard threads >= 1 && threads <= 256 else { throw ZooError.badInput("--threads must be between 1 and 256, got \(threads)") }
            if let top, top < 1 { throw ZooError.badInput("--top must be at least 1, got \(top)") }
            let m = try ModelIO.loadModel(path: model, arch: arch, weights: weights, classes: classes, seed: seed)
            var x = try NPY.read(path: input)
            let g = m.graph
            let want = "(N, " + g.inputShape.map(String.init).joined(separator: ", ") + ")"
            guard x.rank == g.inputShape.count + 1 else {
                throw ZooError.file(path: input, message: "array has shape \(NPY.shapeString(x.shape)) (\(x.rank)-D), but \(g.name) takes a \(g.inputShape.count + 1)-D input \(want)")
            }
            guard x.shape[0] >= 1 else { throw ZooError.file(path: input, message: "array has an empty batch: shape \(NPY.shapeString(x.shape))") }
            if x.shape.count > 1 && x.shape[1] != g.inputShape[0] {
                throw ZooError.file(path: input, message: "array has shape \(NPY.shapeString(x.shape)), but \(g.name) takes \(want): \(g.inputShape[0]) channel(s), not \(x.shape[1])")
            }
            do { _ = try g.outputShape(batch: x.shape[0], inputShape: Array(x.shape.dropFirst())) } catch let e as ZooError {
                throw ZooError.file(path: input, message: "array of shape \(NPY.shapeString(x.shape)) does not fit \(g.name) \(want): \(e.description)")
            }
            let executor = try Executor(model: m, kernels: reference ? .reference : .fast, threads: threads)
            let y = try executor.forward(x)
            x = Tensor(zeros: [0])
            try NPY.write(y, to: output)
            if let top {
                let n = y.shape[0], per = y.count / max(n, 1)
                for i in 0..<n {
                    let row = Array(y.data[i * per ..< (i + 1) * per])
                    let best = row.indices.sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }.prefix(top)
                    say("sample \(i): " + best.map { "class \($0) (\(String(format: "%.4f", row[$0])))" }.joined(separator: ", "))
                }
            }
        }
    }
}
