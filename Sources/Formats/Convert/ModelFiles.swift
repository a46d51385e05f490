import Foundation
import Zoo

/// Model files `convert` and `verify` handle, detected from content.
public enum ModelFileKind: String, Sendable, CaseIterable {
    /// The zoo checkpoint (HDF5 with root attribute zoo_format).
    case zoo
    /// Keras full-model HDF5 (root attribute model_config).
    case keras
    /// safetensors state dict (architecture from --arch or from the zoo_architecture metadata).
    case safetensors
    /// ONNX (read by ONNXImport; listed here so conversions can name their source).
    case onnx

    public var displayName: String {
        switch self {
        case .zoo: return "zoo checkpoint (.h5)"
        case .keras: return "Keras .h5"
        case .safetensors: return "safetensors"
        case .onnx: return "ONNX"
        }
    }
}

/// A model loaded from a file, with what was done to it.
public struct LoadedModelFile {
    public var model: Model
    public var training: TrainingState?
    public var kind: ModelFileKind
    public var path: String
    /// Renames, transposes and checks performed while loading.
    public var report: [String]

    public init(model: Model, training: TrainingState?, kind: ModelFileKind, path: String, report: [String]) {
        self.model = model; self.training = training; self.kind = kind; self.path = path; self.report = report
    }
}

public enum ModelFiles {
    /// The safetensors metadata key under which the zoo stores the architecture JSON.
    public static let architectureMetadataKey = "zoo_architecture"

    public static func detect(path: String) throws -> ModelFileKind {
        guard FileManager.default.fileExists(atPath: path) else { throw ZooError.file(path: path, message: "no such file") }
        switch try ModelIO.detectFormat(path: path) {
        case .hdf5:
            let f = try H5File.open(path: path)
            if f.root.hasAttribute("zoo_format") { return .zoo }
            if f.root.hasAttribute("model_config") { return .keras }
            if f.root.kind(of: "model_weights") == .group || f.root.hasAttribute("layer_names") {
                throw ZooError.file(path: path, message: "Keras weights-only HDF5 (no model_config); save the full model with model.save('x.h5')")
            }
            throw ZooError.file(path: path, message: "HDF5 file is neither a zoo checkpoint (attribute zoo_format) nor a Keras model (attribute model_config)")
        case .safetensors: return .safetensors
        case .json: throw ZooError.file(path: path, message: "is an architecture JSON file, not a model file")
        case .onnx:
            if H5.looksLikeHDF5(path: path) { return try detect(path: path) }
            // ONNX has no magic number: a .onnx name, or a ModelProto starting with ir_version (field 1, varint: 0x08).
            if path.lowercased().hasSuffix(".onnx") || (try? FileIO.readPrefix(path, count: 1).0) == [0x08] { return .onnx }
            throw ZooError.file(path: path, message: "not a zoo checkpoint, Keras .h5, safetensors or ONNX file (unrecognised content)")
        }
    }

    /// Loads any supported model file (or a catalog name: its seeded initialisation). `arch` (catalog name or architecture JSON) is required for
    /// safetensors without zoo_architecture metadata and not allowed for files that carry their own.
    public static func load(path: String, arch: String? = nil) throws -> LoadedModelFile {
        if !FileManager.default.fileExists(atPath: path) && !path.contains("/") && !path.contains(".") {
            // A catalog name: its seeded default initialisation (seed 0).
            if let arch { throw ZooError.badInput("\(path) is a catalog architecture; --arch \(arch) does not apply") }
            let graph = try ModelIO.loadGraph(path)
            return LoadedModelFile(model: Model.initialized(graph: graph, seed: 0), training: nil, kind: .zoo, path: path,
                                   report: ["\(path): catalog architecture, seeded default initialisation (seed 0)"])
        }
        let kind = try detect(path: path)
        switch kind {
        case .zoo:
            if let arch { throw ZooError.badInput("\(path) holds its own architecture; --arch \(arch) does not apply") }
            let c = try ZooCheckpoint.read(path: path)
            let n = c.model.tensors.count
            return LoadedModelFile(model: c.model, training: c.training, kind: kind, path: path,
                                   report: ["\(path): zoo checkpoint v\(c.metadata.formatVersion), \(n) tensors, SHA-256 verified, shapes match '\(c.model.graph.name)'"])
        case .keras:
            if let arch { throw ZooError.badInput("\(path) holds its own architecture; --arch \(arch) does not apply") }
            let r = try KerasImport.read(path: path)
            return LoadedModelFile(model: r.model, training: nil, kind: kind, path: path,
                                   report: ["\(path): Keras model '\(r.model.graph.name)', NHWC → NCHW"] + r.report.map { "  " + $0 })
        case .onnx:
            if let arch { throw ZooError.badInput("\(path) is an ONNX model with its own architecture; --arch \(arch) does not apply") }
            let r = try ONNXImport.load(URL(fileURLWithPath: path))
            return LoadedModelFile(model: r.model, training: nil, kind: kind, path: path,
                                   report: ["\(path): ONNX opset \(r.opset)" + (r.architecture.map { ", recognised as '\($0)'" } ?? ", generic graph")]
                                       + r.notes.map { "  " + $0 })
        case .safetensors:
            let file = try Safetensors.read(path: path)
            let graph: Graph
            var report: [String] = []
            if let arch {
                graph = try ModelIO.loadGraph(arch)
                report.append("\(path): safetensors, architecture from --arch \(arch)")
            } else if let json = file.metadata[architectureMetadataKey] {
                do { graph = try Graph.fromJSON(Data(json.utf8)) } catch let e as ZooError {
                    throw ZooError.file(path: path, message: "metadata \(architectureMetadataKey): \(e.description)")
                }
                report.append("\(path): safetensors, architecture from its \(architectureMetadataKey) metadata")
            } else {
                throw ZooError.file(path: path, message: "a safetensors file holds weights only; name its architecture (a catalog name or an architecture JSON file) with --arch")
            }
            let model: Model
            do { model = try Model.load(graph: graph, stateDict: file.tensors) } catch let e as ZooError {
                throw ZooError.file(path: path, message: e.description)
            }
            for (name, dt) in file.dtypes.sorted(by: { $0.key < $1.key }) where dt != "F32" && model.tensors[name] != nil {
                report.append("  \(name): \(dt) converted to F32")
            }
            let dropped = file.tensors.keys.filter { model.tensors[$0] == nil }.sorted()
            if !dropped.isEmpty { report.append("  dropped: " + dropped.joined(separator: ", ")) }
            report.append("  names kept (PyTorch state_dict keys)")
            return LoadedModelFile(model: model, training: nil, kind: kind, path: path, report: report)
        }
    }

    /// The output kind: `to` when given, else from the extension (.safetensors, else zoo .h5).
    public static func outputKind(path: String, to: String?) throws -> ModelFileKind {
        if let to {
            switch to.lowercased() {
            case "zoo", "zoo-h5", "h5": return .zoo
            case "keras", "keras-h5": return .keras
            case "safetensors", "st": return .safetensors
            default: throw ZooError.badInput("--to \(to): expected zoo, keras or safetensors")
            }
        }
        return path.lowercased().hasSuffix(".safetensors") ? .safetensors : .zoo
    }

    /// Converts `input` to `output`; returns the report. Nothing is written unless everything loads
    /// and converts; writes are atomic.
    public static func convert(input: String, output: String, to: String? = nil, arch: String? = nil) throws -> [String] {
        let loaded = try load(path: input, arch: arch)
        return loaded.report + (try write(loaded, to: output, format: to, sourceIsFile: FileManager.default.fileExists(atPath: input)))
    }

    /// Writes a loaded model as zoo .h5, safetensors or Keras .h5 (`format`, else from the extension).
    public static func write(_ loaded: LoadedModelFile, to output: String, format: String?, sourceIsFile: Bool = true) throws -> [String] {
        let outKind = try outputKind(path: output, to: format)
        var report: [String] = []
        switch outKind {
        case .zoo, .onnx:
            try ZooCheckpoint.write(loaded.model, training: loaded.training, to: output,
                                    sourceFile: sourceIsFile ? URL(fileURLWithPath: loaded.path).lastPathComponent : nil,
                                    sourceFormat: sourceIsFile ? loaded.kind.rawValue : "catalog")
            report.append("\(output): zoo checkpoint, \(loaded.model.tensors.count) tensors under their canonical names with SHA-256"
                          + (loaded.training != nil ? ", training state kept" : ""))
        case .safetensors:
            let json = String(decoding: try loaded.model.graph.jsonData(pretty: false), as: UTF8.self)
            try Safetensors.write(model: loaded.model, metadata: ["format": "pt", architectureMetadataKey: json], to: output)
            report.append("\(output): safetensors (F32), \(loaded.model.tensors.count) tensors in state_dict order, architecture in metadata '\(architectureMetadataKey)'")
            if loaded.training != nil { report.append("  note: the training state is not stored in safetensors") }
        case .keras:
            let lines = try KerasExport.write(loaded.model, to: output)
            report.append("\(output): Keras .h5 (functional, NHWC)")
            report += lines.map { "  " + $0 }
        }
        return report
    }
}
