import Foundation

/// Switches for the training kernels of session 3 (max-pool without stored arg-max, SIMD stride-2 im2col/col2im,
/// one GEMM per image for large planes (no copies of y / dy), whole-batch backward GEMMs for small 1×1 convolutions, batched forward for few-tile frozen
/// convolutions, BatchNorm statistics in one pass), for A/B inside one binary. `ZOO_TRAIN_FAST3=0` turns all of them off;
/// `ZOO_TRAIN_OFF=pool,strided,direct,wholebwd,frozen,bn` single ones.
/// `zoo-tool bench --train` with `ZOO_BENCH_AB=1` alternates `on` between steps.
public enum TrainFast {
    nonisolated(unsafe) public static var on = ProcessInfo.processInfo.environment["ZOO_TRAIN_FAST3"] != "0"
    static let off: Set<String> = Set((ProcessInfo.processInfo.environment["ZOO_TRAIN_OFF"] ?? "").split(separator: ",").map(String.init))
    /// ZOO_AB_ONLY=name: `on` switches only that one (the others stay on), for A/B of a single change.
    static let abOnly = ProcessInfo.processInfo.environment["ZOO_AB_ONLY"]
    static func enabled(_ name: String) -> Bool {
        if let only = abOnly, only != name { return !off.contains(name) }
        return on && !off.contains(name)
    }
}
