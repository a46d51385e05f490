import Foundation
import SwiftProtobuf
import Zoo

/// Reading and writing `.onnx` files, including external data (tensors stored in a side file next
/// to the model, each at an offset aligned to 4096, as ONNX's external data format describes).
public enum ONNXFile {
    /// Highest IR version zoo reads (ONNX 1.20's IR 13; the fields zoo uses are unchanged since IR 10, and
    /// newer fields are kept as unknown fields).
    public static let maxIRVersion: Int64 = 13
    /// protobuf cannot serialize messages of 2 GiB or more; above this many tensor bytes, `write` uses external data.
    public static let defaultExternalThreshold = 1 << 31 - (64 << 20)
    static let alignment = 4096

    /// Parses a model file. External tensors are loaded into `rawData` (their `location` must stay inside
    /// the model's folder).
    public static func read(_ url: URL) throws -> Onnx_ModelProto {
        let path = url.path
        let data: Data
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw ZooError.file(path: path, message: "cannot read: \(error.localizedDescription)")
        }
        var model = try parse(data, path: path)
        try loadExternalData(&model.graph, modelURL: url)
        return model
    }

    /// Parses bytes; `path` only names the source in error messages.
    public static func parse(_ data: Data, path: String) throws -> Onnx_ModelProto {
        if data.isEmpty { throw ZooError.file(path: path, message: "not an ONNX model (empty file)") }
        let model: Onnx_ModelProto
        do {
            model = try Onnx_ModelProto(serializedBytes: data)
        } catch let e as BinaryDecodingError {
            switch e {
            case .truncated:
                throw ZooError.file(path: path, message: "not an ONNX model or truncated: protobuf data ends inside a field")
            default:
                throw ZooError.file(path: path, message: "not an ONNX model: protobuf decoding failed (\(e))")
            }
        } catch {
            throw ZooError.file(path: path, message: "not an ONNX model: protobuf decoding failed (\(error))")
        }
        // Random bytes sometimes parse as protobuf; a model has an IR version and a graph.
        if !model.hasIrVersion || !model.hasGraph {
            throw ZooError.file(path: path, message: "not an ONNX model: no ir_version or no graph")
        }
        if model.irVersion > maxIRVersion {
            throw ZooError.file(path: path, message: "ir_version \(model.irVersion) is newer than supported (zoo reads up to \(maxIRVersion))")
        }
        if model.irVersion < 3 {
            throw ZooError.file(path: path, message: "ir_version \(model.irVersion) is older than supported (zoo reads 3 to \(maxIRVersion))")
        }
        return model
    }

    /// Writes `model` to `url` (temp file + rename). When the tensors hold more than `externalThreshold` bytes,
    /// every initializer of at least 1 KiB goes to `<name>.data` in the same folder at 4096-aligned offsets.
    public static func write(_ model: Onnx_ModelProto, to url: URL, externalThreshold: Int = defaultExternalThreshold) throws {
        var model = model
        let total = model.graph.initializer.reduce(0) { $0 + $1.rawData.count }
        let dir = url.deletingLastPathComponent()
        if total > externalThreshold {
            let dataName = url.lastPathComponent + ".data"
            var blob = Data()
            for i in model.graph.initializer.indices where model.graph.initializer[i].rawData.count >= 1024 {
                let pad = (alignment - blob.count % alignment) % alignment
                blob.append(Data(count: pad))
                var t = model.graph.initializer[i]
                let offset = blob.count
                blob.append(t.rawData)
                t.clearRawData()
                t.dataLocation = .external
                t.externalData = [entry("location", dataName), entry("offset", String(offset)), entry("length", String(blob.count - offset))]
                model.graph.initializer[i] = t
            }
            try atomicWrite(blob, to: dir.appendingPathComponent(dataName))
        }
        let bytes: Data
        do { bytes = try model.serializedBytes() } catch {
            throw ZooError.file(path: url.path, message: "cannot serialize the ONNX model: \(error)")
        }
        try atomicWrite(bytes, to: url)
    }

    static func entry(_ k: String, _ v: String) -> Onnx_StringStringEntryProto {
        var e = Onnx_StringStringEntryProto(); e.key = k; e.value = v; return e
    }

    static func atomicWrite(_ data: Data, to url: URL) throws {
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        do {
            try data.write(to: tmp)
            if rename(tmp.path, url.path) != 0 {
                throw ZooError.file(path: url.path, message: "cannot write: \(String(cString: strerror(errno)))")
            }
        } catch let e as ZooError {
            try? FileManager.default.removeItem(at: tmp)
            throw e
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw ZooError.file(path: url.path, message: "cannot write: \(error.localizedDescription)")
        }
    }

    /// Replaces external references by the bytes they point to.
    static func loadExternalData(_ graph: inout Onnx_GraphProto, modelURL: URL) throws {
        let dir = modelURL.deletingLastPathComponent().standardizedFileURL.resolvingSymlinksInPath()
        var files: [String: Data] = [:]
        for i in graph.initializer.indices where graph.initializer[i].dataLocation == .external {
            var t = graph.initializer[i]
            let kv = Dictionary(t.externalData.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            guard let loc = kv["location"], !loc.isEmpty else {
                throw ZooError.file(path: modelURL.path, message: "tensor '\(t.name)' has external data without a location")
            }
            let target = dir.appendingPathComponent(loc).standardizedFileURL.resolvingSymlinksInPath()
            if loc.hasPrefix("/") || loc.split(separator: "/").contains("..") || !target.path.hasPrefix(dir.path + "/") {
                throw ZooError.file(path: modelURL.path, message: "tensor '\(t.name)': external data location '\(loc)' leaves the model's folder")
            }
            if files[loc] == nil {
                do { files[loc] = try Data(contentsOf: target, options: .mappedIfSafe) } catch {
                    throw ZooError.file(path: target.path, message: "cannot read external data for tensor '\(t.name)': \(error.localizedDescription)")
                }
            }
            let blob = files[loc]!
            guard let offset = Int(kv["offset"] ?? "0"), offset >= 0 else {
                throw ZooError.file(path: modelURL.path, message: "tensor '\(t.name)': bad external data offset '\(kv["offset"] ?? "")'")
            }
            let length: Int
            if let l = kv["length"] {
                guard let v = Int(l), v >= 0 else { throw ZooError.file(path: modelURL.path, message: "tensor '\(t.name)': bad external data length '\(l)'") }
                length = v
            } else { length = blob.count - offset }
            guard offset <= blob.count, length <= blob.count - offset else {
                throw ZooError.file(path: target.path, message: "tensor '\(t.name)': external data range \(offset)..<\(offset + length) lies outside the file (\(blob.count) bytes)")
            }
            t.rawData = blob.subdata(in: blob.startIndex + offset ..< blob.startIndex + offset + length)
            t.dataLocation = .default
            t.clearDataLocation()
            t.externalData = []
            graph.initializer[i] = t
        }
    }
}

extension Onnx_TensorProto {
    /// A float32 tensor stored as little-endian raw_data.
    init(name: String, float tensor: Tensor) {
        self.init()
        self.name = name
        dims = tensor.shape.map(Int64.init)
        dataType = Int32(DataType.float.rawValue)
        rawData = tensor.data.withUnsafeBufferPointer { Data(buffer: $0) }
    }

    init(name: String, int64 values: [Int64], dims: [Int]) {
        self.init()
        self.name = name
        self.dims = dims.map(Int64.init)
        dataType = Int32(DataType.int64.rawValue)
        rawData = values.withUnsafeBufferPointer { Data(buffer: $0) }
    }

    var elementCount: Int { dims.reduce(1) { $0 * Int($1) } }

    static func typeName(_ t: Int32) -> String {
        if let d = DataType(rawValue: Int(t)) { return "\(d)".uppercased() }
        return "type \(t)"
    }

    /// The values as Float (float32/64, float16, bfloat16, integers and bool converted). `context` names the
    /// tensor in errors.
    func floats(context: String) throws -> [Float] {
        let n = elementCount
        guard dims.allSatisfy({ $0 >= 0 }) else { throw ZooError.unsupported("\(context): negative dimension in \(dims)") }
        func raw<T>(_ type: T.Type, _ conv: (T) -> Float) throws -> [Float] {
            let size = MemoryLayout<T>.size
            guard rawData.count == n * size else {
                throw ZooError.badInput("\(context): raw_data holds \(rawData.count) bytes, dims \(dims) need \(n * size)")
            }
            return rawData.withUnsafeBytes { p in (0..<n).map { conv(p.loadUnaligned(fromByteOffset: $0 * size, as: T.self)) } }
        }
        func check(_ c: Int) throws {
            guard c == n else { throw ZooError.badInput("\(context): holds \(c) values, dims \(dims) need \(n)") }
        }
        guard let dt = DataType(rawValue: Int(dataType)) else {
            throw ZooError.unsupported("\(context): data type \(dataType) is not supported")
        }
        switch dt {
        case .float:
            if hasRawData { return try raw(UInt32.self) { Float(bitPattern: UInt32(littleEndian: $0)) } }
            try check(floatData.count); return floatData
        case .double:
            if hasRawData { return try raw(UInt64.self) { Float(Double(bitPattern: UInt64(littleEndian: $0))) } }
            try check(doubleData.count); return doubleData.map { Float($0) }
        case .float16:
            if hasRawData { return try raw(UInt16.self) { halfToFloat(UInt16(littleEndian: $0)) } }
            try check(int32Data.count); return int32Data.map { halfToFloat(UInt16(truncatingIfNeeded: $0)) }
        case .bfloat16:
            if hasRawData { return try raw(UInt16.self) { Float(bitPattern: UInt32(UInt16(littleEndian: $0)) << 16) } }
            try check(int32Data.count); return int32Data.map { Float(bitPattern: UInt32(UInt16(truncatingIfNeeded: $0)) << 16) }
        case .int64:
            if hasRawData { return try raw(Int64.self) { Float(Int64(littleEndian: $0)) } }
            try check(int64Data.count); return int64Data.map { Float($0) }
        case .int32, .int16, .int8, .uint8, .uint16, .bool:
            if hasRawData {
                switch dt {
                case .int32: return try raw(Int32.self) { Float(Int32(littleEndian: $0)) }
                case .int16: return try raw(Int16.self) { Float(Int16(littleEndian: $0)) }
                case .int8: return try raw(Int8.self) { Float($0) }
                case .uint16: return try raw(UInt16.self) { Float(UInt16(littleEndian: $0)) }
                default: return try raw(UInt8.self) { Float($0) }
                }
            }
            try check(int32Data.count); return int32Data.map { Float($0) }
        default:
            throw ZooError.unsupported("\(context): data type \(Self.typeName(dataType)) is not supported")
        }
    }

    /// Integer values (INT64/INT32 and friends), for shapes, pads and axes.
    func ints(context: String) throws -> [Int64] {
        guard let dt = DataType(rawValue: Int(dataType)) else {
            throw ZooError.unsupported("\(context): data type \(dataType) is not supported")
        }
        if dt == .int64 {
            let n = elementCount
            if hasRawData {
                guard rawData.count == n * 8 else { throw ZooError.badInput("\(context): raw_data holds \(rawData.count) bytes, dims \(dims) need \(n * 8)") }
                return rawData.withUnsafeBytes { p in (0..<n).map { Int64(littleEndian: p.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) } }
            }
            guard int64Data.count == n else { throw ZooError.badInput("\(context): holds \(int64Data.count) values, dims \(dims) need \(n)") }
            return int64Data
        }
        return try floats(context: context).map { Int64($0) }
    }
}

func halfToFloat(_ h: UInt16) -> Float {
    let s = UInt32(h & 0x8000) << 16
    let e = Int((h >> 10) & 0x1F)
    let m = UInt32(h & 0x3FF)
    if e == 0 {
        if m == 0 { return Float(bitPattern: s) }
        let v = Float(m) * Float(sign: .plus, exponent: -24, significand: 1)
        return s != 0 ? -v : v
    }
    if e == 31 { return Float(bitPattern: s | 0x7F80_0000 | (m << 13)) }
    return Float(bitPattern: s | (UInt32(e - 15 + 127) << 23) | (m << 13))
}
