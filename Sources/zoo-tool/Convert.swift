import ArgumentParser
import Foundation
import Formats
import Zoo

/// `zoo-tool convert SRC DST`: ONNX branches (export to .onnx, import from .onnx to a safetensors state dict
/// or an architecture JSON). Minimal; the HDF5/Keras branches belong to the HDF5 issue.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a model between formats; the destination's extension picks the format (.onnx, .safetensors, .json).")

    @Argument(help: "A model file (.onnx; safetensors with --arch), or a catalog architecture / JSON (seeded initialisation).")
    var source: String

    @Argument(help: "Destination file: .onnx, .safetensors (state dict) or .json (architecture).")
    var destination: String

    @Option(help: "The architecture of a weights-only SOURCE (catalog name or architecture JSON).")
    var arch: String?

    @Option(help: "Weights to load strictly into the architecture (a safetensors state dict).")
    var weights: String?

    @Option(help: "Number of classes (catalog architectures).")
    var classes: Int?

    @Option(help: "ONNX opset to write (13 to 21; the IR version follows).")
    var opset: Int = 17

    @Flag(name: .customLong("fold-bn"), help: "Fold BatchNorm into the preceding convolution in the ONNX file.")
    var foldBN = false

    @Option(name: .customLong("external-threshold"),
            help: "Write ONNX tensors to an external data file (4096-aligned) when they total more than this many bytes (default: just under 2 GiB).")
    var externalThreshold: Int = ONNXFile.defaultExternalThreshold

    func run() throws {
        try runReportingErrors {
            let model: Model
            if (try? ModelIO.detectFormat(path: source)) == .onnx && FileManager.default.fileExists(atPath: source) {
                let r = try ONNXImport.load(URL(fileURLWithPath: source))
                for n in r.notes { say("\(source): \(n)") }
                model = r.model
            } else {
                model = try ModelIO.loadModel(path: source, arch: arch, weights: weights, classes: classes)
            }
            let ext = URL(fileURLWithPath: destination).pathExtension.lowercased()
            switch ext {
            case "onnx":
                try ONNXExport.write(model, to: URL(fileURLWithPath: destination), options: .init(opset: opset, foldBN: foldBN),
                                       externalThreshold: externalThreshold)
            case "safetensors":
                try Safetensors.write(model: model, to: destination)
            case "json":
                try FileIO.writeAtomically(try model.graph.jsonData(), to: destination)
            default:
                throw ZooError.badInput("\(destination): unknown destination format '.\(ext)' (use .onnx, .safetensors or .json)")
            }
            say("wrote \(destination)")
        }
    }
}
