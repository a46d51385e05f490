import Foundation

/// A decoded NumPy array: its dtype (numpy descr such as "<f4", "|u1"), shape and values as Double-free Float
/// (integers up to 2^24 are exact, which covers labels and 8-bit pixels).
public struct NumpyArray: Sendable {
    public var dtype: String
    public var shape: [Int]
    public var values: [Float]
    /// Integer values (for labels), exact for int64/int32/uint8... dtypes.
    public var integers: [Int]?
    public var isInteger: Bool { integers != nil }
}

public enum NumpyReader {
    /// Parses one `.npy` payload. `what` names the file (and member) in error messages.
    public static func parse(_ b: [UInt8], what: String) throws -> NumpyArray {
        func bad(_ m: String) -> ZooError { .file(path: what, message: m) }
        guard b.count >= 10, b[0] == 0x93, Array(b[1...5]) == Array("NUMPY".utf8) else { throw bad("not a NumPy .npy array (bad magic)") }
        let major = b[6]
        let headerLen: Int, start: Int
        if major == 1 { headerLen = Int(b[8]) | Int(b[9]) << 8; start = 10 }
        else if major == 2 || major == 3 {
            guard b.count >= 12 else { throw bad("truncated .npy header") }
            headerLen = Int(b[8]) | Int(b[9]) << 8 | Int(b[10]) << 16 | Int(b[11]) << 24; start = 12
        } else { throw bad("unsupported .npy version \(major)") }
        guard start + headerLen <= b.count else { throw bad("truncated .npy header") }
        guard let header = String(bytes: b[start..<start + headerLen], encoding: .ascii) else { throw bad("unreadable .npy header") }
        func field(_ key: String) -> String? {
            guard let r = header.range(of: "'\(key)':") else { return nil }
            return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard let d = field("descr"), let q1 = d.firstIndex(of: "'"),
              let q2 = d[d.index(after: q1)...].firstIndex(of: "'") else { throw bad("no dtype in .npy header") }
        let descr = String(d[d.index(after: q1)..<q2])
        if let f = field("fortran_order"), f.hasPrefix("True") { throw bad("Fortran-ordered arrays are not supported; save with C order") }
        guard let s = field("shape"), let open = s.firstIndex(of: "("), let close = s.firstIndex(of: ")") else { throw bad("no shape in .npy header") }
        var shape: [Int] = []
        for part in s[s.index(after: open)..<close].split(separator: ",") {
            let t = part.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { continue }
            guard let v = Int(t), v >= 0 else { throw bad("bad shape in .npy header") }
            shape.append(v)
        }
        let n = shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).partialValue }
        let body = b[(start + headerLen)...]
        let little = descr.first != ">"
        let kind = descr.dropFirst()
        let size: Int
        switch kind {
        case "u1", "i1", "b1": size = 1
        case "u2", "i2", "f2": size = 2
        case "u4", "i4", "f4": size = 4
        case "u8", "i8", "f8": size = 8
        default: throw bad("unsupported dtype '\(descr)'")
        }
        guard n >= 0, n <= body.count / size, body.count == n * size else {
            throw bad("data holds \(body.count) bytes, shape \(ShapeFormat.bracket(shape)) of \(descr) needs \(n * size)")
        }
        var values = [Float](repeating: 0, count: n)
        var ints: [Int]? = kind.first == "f" ? nil : [Int](repeating: 0, count: n)
        body.withUnsafeBytes { raw in
            func u(_ i: Int) -> UInt64 {
                var v: UInt64 = 0
                for k in 0..<size { v |= UInt64(raw[i * size + (little ? k : size - 1 - k)]) << (8 * UInt64(k)) }
                return v
            }
            for i in 0..<n {
                let bits = u(i)
                switch kind {
                case "u1", "b1", "u2", "u4": values[i] = Float(bits); ints![i] = Int(bits)
                case "u8": values[i] = Float(bits); ints![i] = Int(truncatingIfNeeded: bits)
                case "i1": let v = Int(Int8(truncatingIfNeeded: bits)); values[i] = Float(v); ints![i] = v
                case "i2": let v = Int(Int16(truncatingIfNeeded: bits)); values[i] = Float(v); ints![i] = v
                case "i4": let v = Int(Int32(truncatingIfNeeded: bits)); values[i] = Float(v); ints![i] = v
                case "i8": let v = Int(Int64(bitPattern: bits)); values[i] = Float(v); ints![i] = v
                case "f2": values[i] = Float(Float16(bitPattern: UInt16(bits)))
                case "f4": values[i] = Float(bitPattern: UInt32(bits))
                default: values[i] = Float(Double(bitPattern: bits))
                }
            }
        }
        return NumpyArray(dtype: descr, shape: shape, values: values, integers: ints)
    }
}

/// Reads the members of a NumPy `.npz` (a zip archive of `.npy` files; stored or deflated, zip64 aware).
public enum NpzReader {
    public static func read(path: String) throws -> [String: NumpyArray] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ZooError.file(path: path, message: "cannot read the file")
        }
        let members = try members(of: [UInt8](data), path: path)
        var out: [String: NumpyArray] = [:]
        for (name, bytes) in members {
            let key = name.hasSuffix(".npy") ? String(name.dropLast(4)) : name
            out[key] = try NumpyReader.parse(bytes, what: "\(path) (member \(name))")
        }
        return out
    }

    /// Raw member payloads by name.
    public static func members(of b: [UInt8], path: String) throws -> [(String, [UInt8])] {
        func bad(_ m: String) -> ZooError { .file(path: path, message: m) }
        func u16(_ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        func u64(_ o: Int) -> Int { u32(o) | u32(o + 4) << 32 }
        guard b.count >= 22 else { throw bad("not a zip archive (.npz): file is too short") }
        var eocd = -1
        var i = b.count - 22
        let lowest = max(0, b.count - 22 - 65535)
        while i >= lowest {
            if b[i] == 0x50 && b[i + 1] == 0x4b && b[i + 2] == 5 && b[i + 3] == 6 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw bad("not a zip archive (.npz): no end-of-central-directory record") }
        var entries = u16(eocd + 10)
        var cdOffset = u32(eocd + 16)
        if (entries == 0xFFFF || cdOffset == 0xFFFF_FFFF), eocd >= 20,
           b[eocd - 20] == 0x50, b[eocd - 19] == 0x4b, b[eocd - 18] == 6, b[eocd - 17] == 7 {
            let z64 = u64(eocd - 12)
            guard z64 >= 0, z64 + 56 <= b.count, u32(z64) == 0x06064b50 else { throw bad("corrupt zip64 directory") }
            entries = u64(z64 + 32); cdOffset = u64(z64 + 48)
        }
        var out: [(String, [UInt8])] = []
        var p = cdOffset
        for _ in 0..<entries {
            guard p >= 0, p + 46 <= b.count, u32(p) == 0x02014b50 else { throw bad("corrupt zip central directory") }
            let method = u16(p + 10)
            let crc = UInt32(u32(p + 16))
            var csize = u32(p + 20), usize = u32(p + 24)
            let nlen = u16(p + 28), elen = u16(p + 30), clen = u16(p + 32)
            var local = u32(p + 42)
            guard p + 46 + nlen + elen <= b.count else { throw bad("corrupt zip central directory") }
            let name = String(decoding: b[(p + 46)..<(p + 46 + nlen)], as: UTF8.self)
            // zip64 extra field: values appear only for fields saturated at 0xFFFFFFFF, in this order.
            var e = p + 46 + nlen
            let eEnd = e + elen
            while e + 4 <= eEnd {
                let id = u16(e), len = u16(e + 2)
                if id == 1 {
                    var q = e + 4
                    if usize == 0xFFFF_FFFF, q + 8 <= eEnd { usize = u64(q); q += 8 }
                    if csize == 0xFFFF_FFFF, q + 8 <= eEnd { csize = u64(q); q += 8 }
                    if local == 0xFFFF_FFFF, q + 8 <= eEnd { local = u64(q); q += 8 }
                }
                e += 4 + len
            }
            p += 46 + nlen + elen + clen
            guard local >= 0, local + 30 <= b.count, u32(local) == 0x04034b50 else { throw bad("member \(name): corrupt local header") }
            let start = local + 30 + u16(local + 26) + u16(local + 28)
            guard csize >= 0, usize >= 0, start + csize <= b.count else { throw bad("member \(name) is truncated") }
            let raw = Array(b[start..<(start + csize)])
            let bytes: [UInt8]
            switch method {
            case 0: bytes = raw
            case 8:
                do { bytes = try Inflate.decompress(raw, wrapper: .raw, expectedSize: usize) } catch {
                    throw bad("member \(name): \(error)")
                }
            default: throw bad("member \(name) uses zip compression method \(method); only stored and deflate are supported")
            }
            guard bytes.count == usize else { throw bad("member \(name): size \(bytes.count) disagrees with the directory's \(usize)") }
            guard Inflate.crc32(bytes) == crc else { throw bad("member \(name): CRC-32 mismatch (corrupt data)") }
            out.append((name, bytes))
        }
        return out
    }
}
