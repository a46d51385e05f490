import Foundation
import Zoo

/// `zoo-tool verify`: file checks plus a forward pass, or a comparison of two model files.
public enum ModelVerify {
    /// Seeded normal input of shape [batch] + inputShape.
    public static func seededInput(_ shape: [Int], batch: Int, seed: UInt64) -> Tensor {
        var rng = SeededRandom(seed: seed)
        let s = [batch] + shape
        return Tensor(shape: s, data: (0..<s.reduce(1, *)).map { _ in rng.nextNormal() })
    }

    /// Loads (checksums, dtypes and shapes are checked by the readers), checks every tensor is finite
    /// and runs one forward pass. Throws on the first problem; returns the report lines.
    public static func verify(path: String, arch: String? = nil) throws -> [String] {
        let loaded = try ModelFiles.load(path: path, arch: arch)
        var lines = loaded.report
        let m = loaded.model
        for spec in m.graph.parameterSpecs {
            guard let t = m.tensors[spec.key] else { throw ZooError.file(path: path, message: "tensor '\(spec.key)' missing") }
            if let i = t.data.firstIndex(where: { !$0.isFinite }) {
                throw ZooError.file(path: path, message: "tensor '\(spec.key)' holds a non-finite value (\(t.data[i])) at flat index \(i)")
            }
        }
        if let st = loaded.training {
            for (slot, entries) in st.slots { for (name, t) in entries where t.data.contains(where: { !$0.isFinite }) {
                throw ZooError.file(path: path, message: "training state '\(slot)' of '\(name)' holds a non-finite value")
            } }
            lines.append("training state: optimizer \(st.optimizer), step \(st.step), epoch \(st.epoch), \(st.slots.count) state slots, \(st.frozen.count) frozen")
        }
        lines.append("shapes: \(m.graph.parameterSpecs.count) tensors match architecture '\(m.graph.name)' (\(m.graph.parameterCount) parameters)")
        lines.append("values: all finite")
        let x = seededInput(m.graph.inputShape, batch: 1, seed: 0)
        let y = try Executor(model: m).forward(x)
        guard y.data.allSatisfy({ $0.isFinite }) else {
            throw ZooError.file(path: path, message: "forward pass on a seeded input produced non-finite outputs")
        }
        lines.append("forward: input \(ShapeFormat.string(x.shape)) → output \(ShapeFormat.string(y.shape)), finite")
        lines.append("OK")
        return lines
    }

    public struct Comparison {
        public var maxAbs: Float
        /// max|Δ| / max(1, max|y_A|).
        public var maxRel: Float
        public var lines: [String]
    }

    /// Runs both models on the same seeded inputs (batch 2) and compares the outputs.
    public static func compare(_ a: String, against b: String, arch: String? = nil, seed: UInt64 = 0) throws -> Comparison {
        let ma = try ModelFiles.load(path: a, arch: try ModelFiles.detect(path: a) == .safetensors ? arch : nil)
        let mb = try ModelFiles.load(path: b, arch: try ModelFiles.detect(path: b) == .safetensors ? arch : nil)
        guard ma.model.graph.inputShape == mb.model.graph.inputShape else {
            throw ZooError.badInput("\(a) takes input \(ShapeFormat.bracket(ma.model.graph.inputShape)) but \(b) takes \(ShapeFormat.bracket(mb.model.graph.inputShape))")
        }
        let x = seededInput(ma.model.graph.inputShape, batch: 2, seed: seed)
        let ya = try Executor(model: ma.model).forward(x)
        let yb = try Executor(model: mb.model).forward(x)
        guard ya.shape == yb.shape else {
            throw ZooError.badInput("outputs differ in shape: \(ShapeFormat.bracket(ya.shape)) vs \(ShapeFormat.bracket(yb.shape))")
        }
        var maxAbs: Float = 0, maxY: Float = 0
        for i in 0..<ya.count {
            let d = abs(ya.data[i] - yb.data[i])
            if !(d <= maxAbs) { maxAbs = d.isNaN ? .infinity : max(maxAbs, d) }
            maxY = max(maxY, abs(ya.data[i]))
        }
        let rel = maxAbs / max(1, maxY)
        let lines = ["input: seeded normal \(ShapeFormat.string(x.shape)) (seed \(seed)), output \(ShapeFormat.string(ya.shape))",
                     "max abs error: \(maxAbs)",
                     "max relative error: \(rel) (max|Δ| / max(1, max|y|))"]
        return Comparison(maxAbs: maxAbs, maxRel: rel, lines: lines)
    }
}
