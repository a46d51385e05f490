import Zoo

/// Recognises catalog architectures in imported graphs (placeholder until matching lands).
enum ONNXMatch {
    static func canonicalize(_ r: ONNXImport.Result, candidates: [(String, Graph)]) -> ONNXImport.Result { r }
}
