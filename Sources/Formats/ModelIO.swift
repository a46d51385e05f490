import Foundation
import Zoo
#if canImport(Glibc)
import Glibc
#endif

/// Loading models from the names and files the CLI accepts.
public enum ModelIO {
    public enum Format: String, Sendable, Equatable {
        case safetensors, hdf5, json, onnx
    }

    static let hdf5Magic: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]  // \x89HDF\r\n\x1a\n

    /// The format of a model file, from its content: HDF5 signature, safetensors' header-length
    /// prefix followed by a JSON object, a JSON document (architecture spec), else ONNX protobuf.
    public static func detectFormat(path: String) throws -> Format {
        let (head, size) = try FileIO.readPrefix(path, count: 16)
        return detectFormat(prefix: head, fileSize: size)
    }

    public static func detectFormat(prefix head: [UInt8], fileSize size: Int) -> Format {
        if head.count >= 8 && Array(head[0..<8]) == hdf5Magic { return .hdf5 }
        if head.count >= 9 {
            var n: UInt64 = 0
            for i in 0..<8 { n |= UInt64(head[i]) << (8 * UInt64(i)) }
            if n >= 2 && n <= UInt64(size - 8) && head[8] == UInt8(ascii: "{") { return .safetensors }
        }
        if let first = head.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }), first == UInt8(ascii: "{") {
            return .json
        }
        return .onnx
    }

    /// True if `spec` names an existing file (rather than a catalog architecture).
    static func isFile(_ spec: String) -> Bool {
        var st = stat()
        return stat(spec, &st) == 0
    }

    /// An architecture from a catalog name or an architecture JSON file. `classes`, `inChannels` and
    /// `inputSize` ([H, W] or [S]) configure catalog architectures; a JSON file fixes its own.
    public static func loadGraph(_ spec: String, classes: Int? = nil, inChannels: Int? = nil, inputSize: [Int]? = nil) throws -> Graph {
        if isFile(spec) {
            let format = try detectFormat(path: spec)
            guard format == .json else {
                throw ZooError.file(path: spec, message: "is a \(format.rawValue) file, not an architecture (a catalog name or an architecture JSON file)")
            }
            return try graphFromJSONFile(spec)
        }
        if spec.contains("/") || spec.hasSuffix(".json") {
            throw ZooError.file(path: spec, message: "cannot open: No such file or directory")
        }
        return try Catalog.graph(spec, classes: classes, inChannels: inChannels, inputSize: inputSize)
    }

    static func graphFromJSONFile(_ path: String) throws -> Graph {
        let data = try FileIO.read(path)
        do { return try Graph.fromJSON(data) } catch let e as ZooError {
            throw ZooError.file(path: path, message: e.description)
        } catch {
            throw ZooError.file(path: path, message: "architecture JSON is not well formed: \(error)")
        }
    }

    /// A model from the CLI's MODEL argument.
    ///
    /// - `path`: a catalog name, an architecture JSON file, or a model file (HDF5, ONNX, or a
    ///   safetensors state dict when `arch` names its architecture).
    /// - `arch`: the architecture (catalog name or JSON file) for a weights-only `path`.
    /// - `weights`: a safetensors state dict loaded strictly into the architecture.
    /// - Without any weights the model gets the seeded default initialisation.
    public static func loadModel(path: String, arch: String? = nil, weights: String? = nil,
                                 classes: Int? = nil, inChannels: Int? = nil, inputSize: [Int]? = nil,
                                 seed: UInt64 = 0) throws -> Model {
        var graph: Graph
        var weightsPath = weights
        if isFile(path) {
            switch try detectFormat(path: path) {
            case .json:
                if let arch { throw ZooError.badInput("\(path) is an architecture file; --arch \(arch) does not apply") }
                graph = try graphFromJSONFile(path)
            case .safetensors:
                guard let arch else {
                    // The zoo writes its architecture into the safetensors metadata (ModelFiles).
                    if let weights { throw ZooError.badInput("\(path) already holds the weights; --weights \(weights) does not apply") }
                    return try ModelFiles.load(path: path).model
                }
                if let weights { throw ZooError.badInput("\(path) already holds the weights; --weights \(weights) does not apply") }
                graph = try loadGraph(arch, classes: classes, inChannels: inChannels, inputSize: inputSize)
                weightsPath = path
            case .hdf5:
                // zoo checkpoint or Keras full-model .h5 (Sources/Formats/Convert/ModelFiles.swift).
                if let arch { throw ZooError.badInput("\(path) holds its own architecture; --arch \(arch) does not apply") }
                if let weights { throw ZooError.badInput("\(path) already holds the weights; --weights \(weights) does not apply") }
                return try ModelFiles.load(path: path).model
            case .onnx:
                if let arch { throw ZooError.badInput("\(path) is an ONNX model with its own architecture; --arch \(arch) does not apply") }
                if let weights { throw ZooError.badInput("\(path) is an ONNX model with its own weights; --weights \(weights) does not apply") }
                return try ONNXImport.load(URL(fileURLWithPath: path)).model
            }
        } else {
            if let arch { throw ZooError.badInput("--arch \(arch) applies only to a safetensors weights file, not to '\(path)'") }
            graph = try loadGraph(path, classes: classes, inChannels: inChannels, inputSize: inputSize)
        }
        guard let w = weightsPath else { return Model.initialized(graph: graph, seed: seed) }
        return try loadWeights(graph: graph, path: w)
    }

    /// Loads a safetensors state dict strictly into `graph`. Typed errors (shape mismatch, missing
    /// or unexpected parameters) are rethrown naming the file.
    public static func loadWeights(graph: Graph, path: String) throws -> Model {
        let file = try Safetensors.read(path: path)
        do { return try Model.load(graph: graph, stateDict: file.tensors) } catch let e as ZooError {
            switch e {
            case .file: throw e
            default: throw ZooError.file(path: path, message: e.description)
            }
        }
    }
}

extension FileIO {
    /// The first `count` bytes of a file (fewer if it is shorter) and the file's size.
    public static func readPrefix(_ path: String, count: Int) throws -> ([UInt8], Int) {
        let (fd, size) = try openForReading(path)
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: count)
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, count) }
        if n < 0 { throw ZooError.file(path: path, message: "cannot read: \(reason(errno))") }
        return (Array(buf[0..<n]), size)
    }
}
