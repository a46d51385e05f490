import ArgumentParser
import Foundation
import Formats
import Zoo

/// `zoo-tool convert SRC DST`. Sources are detected from content: zoo .h5, Keras .h5, safetensors
/// (architecture from --arch or its zoo metadata), ONNX, or a catalog name / architecture JSON
/// (seeded initialisation). The destination format comes from --to, else its extension: .onnx,
/// .json (architecture), .safetensors, anything else a zoo .h5 (`--to keras` for Keras .h5).
/// The work lives in Formats (ModelFiles for HDF5/Keras/safetensors, ONNXImport/ONNXExport).
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a model between zoo .h5, Keras .h5, safetensors, ONNX and architecture JSON; reports what was renamed or transposed.")

    @Argument(help: "A model file (zoo .h5, Keras .h5, safetensors, .onnx), or a catalog architecture / JSON (seeded initialisation).")
    var source: String

    @Argument(help: "Destination: .onnx, .json (architecture), .safetensors, else a zoo .h5 (see --to).")
    var destination: String

    @Option(help: "The architecture of a weights-only SOURCE (catalog name or architecture JSON).")
    var arch: String?

    @Option(help: "Destination format: zoo, keras or safetensors (default from the extension).")
    var to: String?

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
            let isFile = FileManager.default.fileExists(atPath: source)
            var loaded: LoadedModelFile
            if isFile && (try? ModelIO.detectFormat(path: source)) == .onnx && !H5.looksLikeHDF5(path: source)
                && (source.lowercased().hasSuffix(".onnx") || (try? FileIO.readPrefix(source, count: 1).0) == [0x08]) {
                let r = try ONNXImport.load(URL(fileURLWithPath: source))
                loaded = LoadedModelFile(model: r.model, training: nil, kind: .onnx, path: source, report: r.notes.map { "\(source): \($0)" })
            } else if weights != nil || classes != nil || (isFile && (try? ModelIO.detectFormat(path: source)) == .json) {
                let m = try ModelIO.loadModel(path: source, arch: arch, weights: weights, classes: classes)
                loaded = LoadedModelFile(model: m, training: nil, kind: .safetensors, path: source, report: [])
            } else {
                loaded = try ModelFiles.load(path: source, arch: arch)
            }
            for line in loaded.report { say(line) }
            let ext = URL(fileURLWithPath: destination).pathExtension.lowercased()
            switch (to, ext) {
            case (nil, "onnx"):
                try ONNXExport.write(loaded.model, to: URL(fileURLWithPath: destination), options: .init(opset: opset, foldBN: foldBN),
                                     externalThreshold: externalThreshold)
            case (nil, "json"):
                try FileIO.writeAtomically(try loaded.model.graph.jsonData(), to: destination)
            default:
                for line in try ModelFiles.write(loaded, to: destination, format: to, sourceIsFile: isFile) { say(line) }
            }
            say("wrote \(destination)")
        }
    }
}
