import Foundation

/// MNIST / Fashion-MNIST IDX files (big-endian), raw or gzip-compressed.
public enum IDXReader {
    public static func read(path: String) throws -> NumpyArray {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ZooError.file(path: path, message: "cannot read the file")
        }
        var b = [UInt8](data)
        if b.count >= 2 && b[0] == 0x1f && b[1] == 0x8b {
            do { b = try Inflate.decompress(b, wrapper: .gzip) } catch { throw ZooError.file(path: path, message: "gzip: \(error)") }
        }
        return try parse(b, path: path)
    }

    public static func parse(_ b: [UInt8], path: String) throws -> NumpyArray {
        func bad(_ m: String) -> ZooError { .file(path: path, message: m) }
        guard b.count >= 4, b[0] == 0, b[1] == 0 else { throw bad("not an IDX file (bad magic)") }
        let type = b[2], rank = Int(b[3])
        let size: Int, name: String
        switch type {
        case 0x08: size = 1; name = "|u1"
        case 0x09: size = 1; name = "|i1"
        case 0x0B: size = 2; name = ">i2"
        case 0x0C: size = 4; name = ">i4"
        case 0x0D: size = 4; name = ">f4"
        case 0x0E: size = 8; name = ">f8"
        default: throw bad("not an IDX file (unknown element type 0x\(String(type, radix: 16)))")
        }
        guard rank >= 1, rank <= 4, b.count >= 4 + 4 * rank else { throw bad("truncated IDX header") }
        var shape: [Int] = []
        for d in 0..<rank {
            let o = 4 + 4 * d
            shape.append(Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3]))
        }
        let n = shape.reduce(1, *)
        let start = 4 + 4 * rank
        guard b.count - start == n * size else {
            throw bad("IDX data holds \(b.count - start) bytes but its header \(ShapeFormat.bracket(shape)) needs \(n * size)")
        }
        // Re-use the .npy decoder by building a tiny big-endian payload description.
        var values = [Float](repeating: 0, count: n)
        var ints: [Int]? = (type == 0x0D || type == 0x0E) ? nil : [Int](repeating: 0, count: n)
        for i in 0..<n {
            var v: UInt64 = 0
            for k in 0..<size { v = v << 8 | UInt64(b[start + i * size + k]) }
            switch type {
            case 0x08: values[i] = Float(v); ints![i] = Int(v)
            case 0x09: let x = Int(Int8(truncatingIfNeeded: v)); values[i] = Float(x); ints![i] = x
            case 0x0B: let x = Int(Int16(truncatingIfNeeded: v)); values[i] = Float(x); ints![i] = x
            case 0x0C: let x = Int(Int32(truncatingIfNeeded: v)); values[i] = Float(x); ints![i] = x
            case 0x0D: values[i] = Float(bitPattern: UInt32(v))
            default: values[i] = Float(Double(bitPattern: v))
            }
        }
        return NumpyArray(dtype: name, shape: shape, values: values, integers: ints)
    }
}
