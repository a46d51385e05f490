import Foundation
import Zoo

/// The contents of a safetensors file: tensors (converted to Float32), their names in file
/// (offset) order, their stored dtypes, and the `__metadata__` string map.
public struct SafetensorsFile: Sendable {
    public var tensors: [String: Tensor]
    /// Tensor names in the order their data lies in the file.
    public var names: [String]
    /// The dtype each tensor had in the file ("F32", "F16", "BF16", "F64", "I64").
    public var dtypes: [String: String]
    public var metadata: [String: String]

    public init(tensors: [String: Tensor], names: [String], dtypes: [String: String], metadata: [String: String]) {
        self.tensors = tensors; self.names = names; self.dtypes = dtypes; self.metadata = metadata
    }
}

/// Safetensors (https://github.com/huggingface/safetensors format): an 8-byte little-endian header
/// length N, N bytes of JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}`,
/// then the data buffer. Offsets are relative to the buffer, contiguous from 0, and cover it exactly.
public enum Safetensors {
    /// Element sizes of the dtypes zoo loads.
    public static let loadableDTypes: [String: Int] = ["F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8]
    /// The safetensors reference implementation refuses headers above 100 MB.
    public static let maxHeaderLength = 100_000_000

    public static func read(path: String) throws -> SafetensorsFile {
        try decode(FileIO.read(path), path: path)
    }

    /// Validates and decodes a safetensors image. `path` is only used in error messages.
    public static func decode(_ data: Data, path: String) throws -> SafetensorsFile {
        func fail(_ m: String) -> ZooError { .file(path: path, message: m) }
        let size = data.count
        guard size >= 8 else {
            throw fail("not a safetensors file: \(size) bytes is too short for the 8-byte header length")
        }
        let n64 = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) }
        guard n64 <= UInt64(size - 8) else {
            throw fail("corrupt or truncated safetensors file: header length \(n64) exceeds the \(size - 8) bytes that follow it")
        }
        let n = Int(n64)
        guard n <= maxHeaderLength else { throw fail("safetensors header length \(n) exceeds the 100 MB limit") }
        guard n >= 2 else { throw fail("safetensors header is not valid JSON: header length is \(n)") }

        let headerBytes = [UInt8](data[data.startIndex + 8 ..< data.startIndex + 8 + n])
        let header: JSONValue
        do { header = try StrictJSONParser.parse(headerBytes) } catch let e as JSONSyntaxError {
            if let k = e.duplicateKey, e.depth == 1 {
                throw fail("safetensors header names '\(k)' more than once")
            }
            throw fail("safetensors header is not valid JSON: \(e.message) at header byte \(e.offset)")
        }
        guard case let .object(entries) = header else {
            throw fail("safetensors header is \(header.kindName), not a JSON object")
        }

        struct Entry { var name: String; var dtype: String; var shape: [Int]; var begin: Int; var end: Int }
        var list: [Entry] = []
        var metadata: [String: String] = [:]
        for (name, v) in entries {
            if name == "__metadata__" {
                guard case let .object(kv) = v else { throw fail("safetensors __metadata__ is \(v.kindName), not an object of strings") }
                for (k, x) in kv {
                    guard case let .string(s) = x else { throw fail("safetensors __metadata__ value '\(k)' is \(x.kindName), not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard case let .object(fields) = v else { throw fail("tensor '\(name)': header entry is \(v.kindName), not an object") }
            func field(_ f: String) throws -> JSONValue {
                guard let x = fields.first(where: { $0.0 == f })?.1 else { throw fail("tensor '\(name)': header entry lacks '\(f)'") }
                return x
            }
            guard case let .string(dtype) = try field("dtype") else { throw fail("tensor '\(name)': dtype is not a string") }
            guard let elementSize = loadableDTypes[dtype] else {
                throw fail("tensor '\(name)': unsupported dtype '\(dtype)' (zoo loads F32, F16, BF16, F64 and I64)")
            }
            guard case let .array(dims) = try field("shape"), dims.allSatisfy({ $0.nonNegativeInt != nil }) else {
                throw fail("tensor '\(name)': shape must be an array of non-negative integers")
            }
            let shape = dims.compactMap(\.nonNegativeInt)
            guard case let .array(offs) = try field("data_offsets"), offs.count == 2,
                  let begin = offs[0].nonNegativeInt, let end = offs[1].nonNegativeInt, begin <= end else {
                throw fail("tensor '\(name)': data_offsets must be [begin, end] with integers 0 <= begin <= end")
            }
            var count = 1
            for d in shape {
                let (p, o) = count.multipliedReportingOverflow(by: d)
                if o || p > Int(Int32.max) * 8 { throw fail("tensor '\(name)': shape \(ShapeFormat.bracket(shape)) is too large") }
                count = p
            }
            let need = count * elementSize
            if end - begin != need {
                throw fail("tensor '\(name)': data_offsets [\(begin), \(end)] span \(end - begin) bytes, but shape \(ShapeFormat.bracket(shape)) of \(dtype) needs \(need) bytes")
            }
            list.append(Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }

        // Contiguity: sorted by offsets, each tensor starts where the previous one ended, from 0 to the end of the buffer.
        let bufferStart = 8 + n
        let bufferSize = size - bufferStart
        let sorted = list.enumerated().sorted { ($0.element.begin, $0.element.end, $0.offset) < ($1.element.begin, $1.element.end, $1.offset) }.map(\.element)
        var position = 0
        var previous: String?
        for e in sorted {
            if e.begin != position {
                if let p = previous {
                    throw fail("tensor '\(e.name)': data_offsets [\(e.begin), \(e.end)] do not start where tensor '\(p)' ends (\(position)); tensor data must be contiguous and must not overlap")
                }
                throw fail("tensor '\(e.name)': data_offsets [\(e.begin), \(e.end)] do not start at 0; tensor data must be contiguous from the start of the data buffer")
            }
            if e.end > bufferSize {
                throw fail("truncated safetensors file: tensor '\(e.name)' ends at data offset \(e.end), but the data buffer holds only \(bufferSize) bytes")
            }
            position = e.end
            previous = e.name
        }
        if position != bufferSize {
            throw fail("safetensors data buffer holds \(bufferSize) bytes, but the tensors cover only \(position)")
        }

        var tensors: [String: Tensor] = [:]
        var dtypes: [String: String] = [:]
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            for e in sorted {
                let base = bufferStart + e.begin
                let count = e.shape.reduce(1, *)
                let values = [Float](unsafeUninitializedCapacity: count) { out, initialized in
                    convert(raw, at: base, count: count, dtype: e.dtype, into: out)
                    initialized = count
                }
                tensors[e.name] = Tensor(shape: e.shape, data: values)
                dtypes[e.name] = e.dtype
            }
        }
        return SafetensorsFile(tensors: tensors, names: sorted.map(\.name), dtypes: dtypes, metadata: metadata)
    }

    static func convert(_ raw: UnsafeRawBufferPointer, at base: Int, count: Int, dtype: String, into out: UnsafeMutableBufferPointer<Float>) {
        switch dtype {
        case "F32":
            #if _endian(little)
            if count > 0 { UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: raw.baseAddress! + base, byteCount: 4 * count) }
            #else
            for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: base + 4 * i, as: UInt32.self))) }
            #endif
        case "F16":
            for i in 0..<count { out[i] = halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: base + 2 * i, as: UInt16.self))) }
        case "BF16":
            for i in 0..<count { out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: base + 2 * i, as: UInt16.self))) << 16) }
        case "F64":
            for i in 0..<count { out[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: base + 8 * i, as: UInt64.self)))) }
        case "I64":
            for i in 0..<count { out[i] = Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: base + 8 * i, as: Int64.self))) }
        default:
            break
        }
    }

    /// IEEE 754 binary16 to binary32, exact (subnormals, infinities and NaN included).
    public static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int(h >> 10) & 0x1F
        let mant = UInt32(h & 0x03FF)
        if exp == 0 {
            if mant == 0 { return Float(bitPattern: sign) }
            // Subnormal: value = mant * 2^-24.
            let v = Float(mant) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign != 0 ? -v : v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
        return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (mant << 13))
    }

    /// Encodes tensors as F32 in the given order, with optional metadata. The header is padded with
    /// spaces to a multiple of 8 bytes so the data buffer is aligned.
    public static func encode(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:]) throws -> Data {
        var seen: Set<String> = []
        for (name, _) in tensors {
            if name == "__metadata__" { throw ZooError.badInput("a tensor may not be called '__metadata__' in safetensors") }
            if !seen.insert(name).inserted { throw ZooError.badInput("tensor '\(name)' is given twice") }
        }
        var parts: [String] = []
        if !metadata.isEmpty {
            let kv = metadata.keys.sorted().map { jsonQuoted($0) + ":" + jsonQuoted(metadata[$0]!) }
            parts.append("\"__metadata__\":{" + kv.joined(separator: ",") + "}")
        }
        var offset = 0
        for (name, t) in tensors {
            let bytes = t.count * 4
            parts.append(jsonQuoted(name) + ":{\"dtype\":\"F32\",\"shape\":[" + t.shape.map(String.init).joined(separator: ",")
                         + "],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        var header = Array(("{" + parts.joined(separator: ",") + "}").utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var out = Data(capacity: 8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        for (_, t) in tensors {
            t.data.withUnsafeBufferPointer { p in
                #if _endian(little)
                out.append(UnsafeBufferPointer(start: UnsafeRawPointer(p.baseAddress!).assumingMemoryBound(to: UInt8.self), count: p.count * 4))
                #else
                for v in p { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
                #endif
            }
        }
        return out
    }

    /// Writes tensors (sorted by name) as F32 safetensors, atomically.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to path: String) throws {
        try write(ordered: tensors.keys.sorted().map { ($0, tensors[$0]!) }, metadata: metadata, to: path)
    }

    /// Writes tensors in the given order as F32 safetensors, atomically.
    public static func write(ordered tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to path: String) throws {
        try FileIO.writeAtomically(encode(tensors, metadata: metadata), to: path)
    }
}

extension Safetensors {
    /// Writes a model's parameters and buffers in the graph's definition order (the order of
    /// PyTorch's state_dict), atomically.
    public static func write(model: Model, metadata: [String: String] = [:], to path: String) throws {
        let ordered = model.graph.parameterSpecs.compactMap { s in model.tensors[s.key].map { (name: s.key, tensor: $0) } }
        try write(ordered: ordered, metadata: metadata, to: path)
    }
}
