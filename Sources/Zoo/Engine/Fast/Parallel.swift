import Foundation
import COpenBLAS

/// Optimized kernels: im2col + OpenBLAS sgemm, direct depthwise convolution, SIMD pointwise loops,
/// work split over `threads` with `DispatchQueue.concurrentPerform`. Same signatures as `Reference`
/// plus a thread count; share no code with it.
public enum Fast {}

/// A raw pointer that may cross into concurrentPerform's worker closures. Kernels guarantee that
/// concurrent workers write disjoint ranges.
struct SendPtr: @unchecked Sendable {
    let p: UnsafeMutablePointer<Float>
    init(_ p: UnsafeMutablePointer<Float>) { self.p = p }
}
struct SendConstPtr: @unchecked Sendable {
    let p: UnsafePointer<Float>
    init(_ p: UnsafePointer<Float>) { self.p = p }
}

extension Fast {
    /// Runs `body` over disjoint sub-ranges of 0..<count, on up to `threads` workers. Work below `grain`
    /// items per worker stays on the calling thread.
    static func parallelFor(_ count: Int, threads: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        if count <= 0 { return }
        let workers = Swift.min(threads, Swift.max(1, count / Swift.max(grain, 1)))
        if workers <= 1 { body(0..<count); return }
        let chunk = (count + workers - 1) / workers
        withoutActuallyEscaping(body) { b in
            let box = UnsafeSendableBox(b)
            DispatchQueue.concurrentPerform(iterations: workers) { t in
                let lo = t * chunk, hi = Swift.min(count, lo + chunk)
                if lo < hi { box.value(lo..<hi) }
            }
        }
    }

    /// Sets OpenBLAS's own thread count (global to the process) before a GEMM.
    static func setBLASThreads(_ n: Int) {
        if blasThreads != n { openblas_set_num_threads(Int32(n)); blasThreads = n }
    }
    nonisolated(unsafe) static var blasThreads = -1
}

struct UnsafeSendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}
