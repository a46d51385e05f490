import Foundation

/// A small strict JSON reader for file headers (safetensors). Unlike JSONSerialization it keeps
/// object keys in order and reports duplicate keys, which a header must not have.
enum JSONValue: Equatable {
    case object([(String, JSONValue)])
    case array([JSONValue])
    case string(String)
    /// Numbers keep their text so integers beyond 2^53 are not rounded.
    case number(String)
    case bool(Bool)
    case null

    static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    /// The value as a non-negative integer that fits in Int, or nil.
    var nonNegativeInt: Int? {
        guard case let .number(t) = self, !t.isEmpty, t.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(t)
    }

    var kindName: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }
}

struct JSONSyntaxError: Error {
    var message: String
    var offset: Int
    /// Set when the error is a repeated key; `depth` 1 is the top-level object.
    var duplicateKey: String? = nil
    var depth: Int = 0
}

/// Parses a complete JSON document (surrounding whitespace allowed). Duplicate keys in an object
/// are reported as an error naming the key.
struct StrictJSONParser {
    private let b: [UInt8]
    private var i = 0
    private var depth = 0

    init(_ bytes: [UInt8]) { b = bytes }

    static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        var p = StrictJSONParser(bytes)
        p.skipWS()
        let v = try p.value()
        p.skipWS()
        if p.i != p.b.count { throw p.err("unexpected characters after the JSON value") }
        return v
    }

    private func err(_ m: String) -> JSONSyntaxError { JSONSyntaxError(message: m, offset: i) }

    private mutating func skipWS() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    private mutating func value() throws -> JSONValue {
        guard i < b.count else { throw err("unexpected end of JSON") }
        switch b[i] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw err("unexpected character")
        }
    }

    private mutating func literal(_ s: String) throws {
        let u = Array(s.utf8)
        guard i + u.count <= b.count, Array(b[i..<i + u.count]) == u else { throw err("invalid literal") }
        i += u.count
    }

    private mutating func number() throws -> JSONValue {
        let start = i
        if b[i] == UInt8(ascii: "-") { i += 1 }
        func digits() -> Int { let s = i; while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }; return i - s }
        let intStart = i
        let n = digits()
        if n == 0 { throw err("invalid number") }
        if n > 1 && b[intStart] == 0x30 { throw err("invalid number (leading zero)") }
        if i < b.count, b[i] == UInt8(ascii: ".") { i += 1; if digits() == 0 { throw err("invalid number") } }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            if digits() == 0 { throw err("invalid number") }
        }
        return .number(String(decoding: b[start..<i], as: UTF8.self))
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= b.count else { throw err("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = b[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw err("invalid \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    private mutating func string() throws -> String {
        i += 1  // opening quote
        var out: [UInt8] = []
        while true {
            guard i < b.count else { throw err("unterminated string") }
            let c = b[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c < 0x20 { throw err("control character in string") }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < b.count else { throw err("unterminated string") }
            let e = b[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard i + 2 <= b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") else { throw err("unpaired surrogate") }
                    i += 2
                    let lo = try hex4()
                    guard lo >= 0xDC00 && lo < 0xE000 else { throw err("unpaired surrogate") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (lo - 0xDC00)
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw err("unpaired surrogate")
                }
                guard let u = Unicode.Scalar(scalar) else { throw err("invalid \\u escape") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default: throw err("invalid escape")
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw err("string is not valid UTF-8") }
        return s
    }

    private mutating func array() throws -> JSONValue {
        depth += 1
        defer { depth -= 1 }
        if depth > 64 { throw err("nesting too deep") }
        i += 1
        var items: [JSONValue] = []
        skipWS()
        if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipWS()
            items.append(try value())
            skipWS()
            guard i < b.count else { throw err("unterminated array") }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            throw err("expected ',' or ']'")
        }
    }

    private mutating func object() throws -> JSONValue {
        depth += 1
        defer { depth -= 1 }
        if depth > 64 { throw err("nesting too deep") }
        i += 1
        var items: [(String, JSONValue)] = []
        var seen: Set<String> = []
        skipWS()
        if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(items) }
        while true {
            skipWS()
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw err("expected a string key") }
            let keyOffset = i
            let k = try string()
            if !seen.insert(k).inserted { throw JSONSyntaxError(message: "duplicate key '\(k)'", offset: keyOffset, duplicateKey: k, depth: depth) }
            skipWS()
            guard i < b.count, b[i] == UInt8(ascii: ":") else { throw err("expected ':'") }
            i += 1
            skipWS()
            items.append((k, try value()))
            skipWS()
            guard i < b.count else { throw err("unterminated object") }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "}") { i += 1; return .object(items) }
            throw err("expected ',' or '}'")
        }
    }
}

/// Writes JSON strings with the escapes JSON requires.
func jsonQuoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}
