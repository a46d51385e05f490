/// Errors raised on bad input. Every message names what was wrong and where; the CLI prints
/// `description` and exits non-zero. Nothing in the library calls `fatalError` on input.
public enum ZooError: Error, CustomStringConvertible, Equatable {
    /// A parameter's shape disagrees with the architecture.
    case shapeMismatch(parameter: String, expected: [Int], got: [Int])
    case missingParameters([String])
    case unexpectedParameters([String])
    /// The input tensor does not fit the model.
    case badInput(String)
    /// An architecture spec that does not hold together (unknown input name, impossible shapes, ...).
    case invalidGraph(String)
    case unknownArchitecture(String)
    /// A file-level problem: the path and what is wrong with it.
    case file(path: String, message: String)
    case unsupported(String)

    public var description: String {
        switch self {
        case let .shapeMismatch(p, e, g):
            return "shape mismatch for parameter '\(p)': architecture expects \(ShapeFormat.bracket(e)), file has \(ShapeFormat.bracket(g))"
        case let .missingParameters(k):
            return "missing parameters (\(k.count)): " + k.prefix(10).joined(separator: ", ") + (k.count > 10 ? ", ..." : "")
        case let .unexpectedParameters(k):
            return "unexpected parameters (\(k.count)): " + k.prefix(10).joined(separator: ", ") + (k.count > 10 ? ", ..." : "")
        case let .badInput(m): return "bad input: \(m)"
        case let .invalidGraph(m): return "invalid architecture: \(m)"
        case let .unknownArchitecture(n): return "unknown architecture '\(n)' (see `zoo-tool list`)"
        case let .file(path, m): return "\(path): \(m)"
        case let .unsupported(m): return "unsupported: \(m)"
        }
    }
}

extension ShapeFormat {
    /// "[64, 3, 7, 7]"
    public static func bracket(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }
}
