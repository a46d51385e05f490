import Foundation
import Zoo

/// NumPy `.npy` arrays: little-endian float32 ('<f4'), C order. Reads format versions 1.0, 2.0
/// and 3.0; writes 1.0 (2.0 when the header would not fit).
public enum NPY {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY

    /// Python tuple notation, as NumPy prints shapes: "(2, 3)", "(5,)", "()".
    public static func shapeString(_ shape: [Int]) -> String {
        shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    }

    public static func read(path: String) throws -> Tensor {
        try decode(FileIO.read(path), path: path)
    }

    /// Reads an array and checks its rank; the error names the file, the array's shape and the rank wanted.
    public static func read(path: String, rank: Int) throws -> Tensor {
        let t = try read(path: path)
        guard t.rank == rank else {
            throw ZooError.file(path: path, message: "expected a \(rank)-D array, got shape \(shapeString(t.shape)) (\(t.rank)-D)")
        }
        return t
    }

    public static func decode(_ data: Data, path: String) throws -> Tensor {
        func fail(_ m: String) -> ZooError { .file(path: path, message: m) }
        let bytes = [UInt8](data)
        guard bytes.count >= 8, Array(bytes[0..<6]) == magic else {
            throw fail("not a .npy file (it does not start with \\x93NUMPY)")
        }
        let major = bytes[6], minor = bytes[7]
        let headerLength: Int, headerStart: Int
        switch (major, minor) {
        case (1, 0):
            guard bytes.count >= 10 else { throw fail("truncated .npy header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case (2, 0), (3, 0):
            guard bytes.count >= 12 else { throw fail("truncated .npy header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw fail("unsupported .npy format version \(major).\(minor) (zoo reads 1.0, 2.0 and 3.0)")
        }
        guard headerStart + headerLength <= bytes.count else { throw fail("truncated .npy header") }
        guard let text = String(validating: bytes[headerStart..<headerStart + headerLength], as: UTF8.self) else {
            throw fail("malformed .npy header: not text")
        }
        let header: NPYHeader
        do { header = try NPYHeader.parse(text) } catch let e as NPYHeaderError {
            throw fail("malformed .npy header: \(e.message)")
        }
        guard header.descr == "<f4" else {
            throw fail("unsupported dtype '\(header.descr)': zoo reads little-endian float32 arrays ('<f4') only; convert with x.astype('<f4')")
        }
        guard !header.fortranOrder else {
            throw fail("Fortran-order array: zoo reads C-order arrays only; save np.ascontiguousarray(x)")
        }
        var count = 1
        for d in header.shape {
            let (p, o) = count.multipliedReportingOverflow(by: d)
            if o || p > Int(Int32.max) * 4 { throw fail("array shape \(shapeString(header.shape)) is too large") }
            count = p
        }
        let dataStart = headerStart + headerLength
        let available = bytes.count - dataStart
        let need = count * 4
        if available < need {
            throw fail("truncated .npy data: shape \(shapeString(header.shape)) of float32 needs \(need) bytes, the file holds \(available)")
        }
        if available > need {
            throw fail("\(available - need) unexpected bytes after the array data of shape \(shapeString(header.shape))")
        }
        let values = bytes.withUnsafeBytes { raw in
            (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: dataStart + 4 * $0, as: UInt32.self))) }
        }
        return Tensor(shape: header.shape, data: values)
    }

    public static func encode(_ t: Tensor) -> Data {
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeString(t.shape)), }"
        var prefixLength = 10
        var total = prefixLength + dict.utf8.count + 1
        if total > 65535 + 10 { prefixLength = 12; total = prefixLength + dict.utf8.count + 1 }
        let padded = (total + 63) / 64 * 64
        let headerText = dict + String(repeating: " ", count: padded - total) + "\n"
        let hlen = headerText.utf8.count
        var out = Data(capacity: padded + t.count * 4)
        out.append(contentsOf: magic)
        if prefixLength == 10 {
            out.append(contentsOf: [1, 0, UInt8(hlen & 0xFF), UInt8(hlen >> 8)])
        } else {
            out.append(contentsOf: [2, 0, UInt8(hlen & 0xFF), UInt8(hlen >> 8 & 0xFF), UInt8(hlen >> 16 & 0xFF), UInt8(hlen >> 24 & 0xFF)])
        }
        out.append(contentsOf: Array(headerText.utf8))
        var le = [UInt8](repeating: 0, count: t.count * 4)
        le.withUnsafeMutableBytes { raw in
            for (i, v) in t.data.enumerated() { raw.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
        }
        out.append(contentsOf: le)
        return out
    }

    /// Writes a float32 C-order array atomically.
    public static func write(_ t: Tensor, to path: String) throws {
        try FileIO.writeAtomically(encode(t), to: path)
    }
}

struct NPYHeaderError: Error { var message: String }

/// The Python dict literal of a .npy header: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
struct NPYHeader {
    var descr: String
    var fortranOrder: Bool
    var shape: [Int]

    static func parse(_ text: String) throws -> NPYHeader {
        var s = Substring(text)
        func skip() { while let c = s.first, c == " " || c == "\n" || c == "\t" || c == "\r" { s.removeFirst() } }
        func expect(_ c: Character) throws {
            skip()
            guard s.first == c else { throw NPYHeaderError(message: "expected '\(c)'") }
            s.removeFirst()
        }
        func quoted() throws -> String {
            skip()
            guard let q = s.first, q == "'" || q == "\"" else { throw NPYHeaderError(message: "expected a quoted string") }
            s.removeFirst()
            guard let end = s.firstIndex(of: q) else { throw NPYHeaderError(message: "unterminated string") }
            let v = String(s[..<end])
            s = s[s.index(after: end)...]
            return v
        }
        /// Any value: returns (kind, text) where kind is "str", "bool", "tuple" or "other".
        func value() throws -> (String, String, [Int]) {
            skip()
            guard let c = s.first else { throw NPYHeaderError(message: "unexpected end") }
            if c == "'" || c == "\"" { return ("str", try quoted(), []) }
            if s.hasPrefix("True") { s = s.dropFirst(4); return ("bool", "True", []) }
            if s.hasPrefix("False") { s = s.dropFirst(5); return ("bool", "False", []) }
            if c == "(" {
                s.removeFirst()
                var dims: [Int] = []
                while true {
                    skip()
                    if s.first == ")" { s.removeFirst(); break }
                    var digits = ""
                    while let d = s.first, d.isASCII, d.isNumber { digits.append(d); s.removeFirst() }
                    if s.first == "L" { s.removeFirst() }  // Python 2 long literals
                    guard let v = Int(digits), v >= 0 else { throw NPYHeaderError(message: "shape must be a tuple of non-negative integers") }
                    dims.append(v)
                    skip()
                    if s.first == "," { s.removeFirst(); continue }
                    if s.first == ")" { s.removeFirst(); break }
                    throw NPYHeaderError(message: "shape must be a tuple of non-negative integers")
                }
                return ("tuple", "", dims)
            }
            // Something else (e.g. a structured dtype list): keep its text up to the next top-level comma.
            var depth = 0
            var t = ""
            while let ch = s.first {
                if depth == 0 && (ch == "," || ch == "}") { break }
                if ch == "[" || ch == "(" || ch == "{" { depth += 1 }
                if ch == "]" || ch == ")" || ch == "}" { depth -= 1 }
                t.append(ch); s.removeFirst()
            }
            return ("other", t, [])
        }
        try expect("{")
        var descr: String?, fortran: Bool?, shape: [Int]?
        while true {
            skip()
            if s.first == "}" { s.removeFirst(); break }
            let key = try quoted()
            try expect(":")
            let (kind, text, dims) = try value()
            switch key {
            case "descr": descr = text
            case "fortran_order":
                guard kind == "bool" else { throw NPYHeaderError(message: "fortran_order must be True or False") }
                fortran = text == "True"
            case "shape":
                guard kind == "tuple" else { throw NPYHeaderError(message: "shape must be a tuple of non-negative integers") }
                shape = dims
            default: break
            }
            skip()
            if s.first == "," { s.removeFirst(); continue }
            if s.first == "}" { s.removeFirst(); break }
            throw NPYHeaderError(message: "expected ',' or '}'")
        }
        guard let d = descr else { throw NPYHeaderError(message: "no 'descr'") }
        guard let f = fortran else { throw NPYHeaderError(message: "no 'fortran_order'") }
        guard let sh = shape else { throw NPYHeaderError(message: "no 'shape'") }
        return NPYHeader(descr: d, fortranOrder: f, shape: sh)
    }
}
