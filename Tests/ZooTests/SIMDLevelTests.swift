import Foundation
import XCTest
import CZooKernels
@testable import Zoo

/// The AVX2 + FMA twins of the in-place 1×1 tiles, the few-tap rows and the depthwise rows (CPUs without AVX-512F):
/// bit-identical to the AVX-512F kernels where the CPU has both, and the whole of mobilenet_v2 on them (fused blocks)
/// against the plain path (OpenBLAS 1×1, Swift depthwise rows, no fusion: `zoo_kernels_set_simd_cap(0)`).
final class SIMDLevelTests: XCTestCase {
    override func tearDown() { zoo_kernels_set_simd_cap(2) }

    /// Runs `body` at each vector level the CPU has (2 = AVX-512F, 1 = AVX2), returning their outputs.
    func atEachLevel(_ body: () -> [Float]) -> [(level: Int32, out: [Float])] {
        var outs: [(Int32, [Float])] = []
        for cap: Int32 in [2, 1] {
            zoo_kernels_set_simd_cap(cap)
            let level = zoo_kernels_simd()
            if level == 0 || outs.contains(where: { $0.0 == level }) { continue }
            outs.append((level, body()))
        }
        zoo_kernels_set_simd_cap(2)
        return outs
    }

    func testAVX2KernelsEqualAVX512AndLoops() throws {
        try XCTSkipIf(zoo_kernels_simd() == 0, "no AVX-512F or AVX2 on this CPU")
        var rng = SeededRandom(seed: 5)
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 - 1 } }
        // 1×1 tiles: widths around the 8/16/24/48-column tiles (k below and above 32) and the ≤ 2-column tails, rows around the 4/8-row tiles.
        for (m, k, n) in [(1, 1, 1), (5, 3, 7), (8, 16, 24), (13, 37, 49), (4, 9, 25), (96, 16, 112), (20, 160, 50), (3, 2, 2), (9, 40, 301), (16, 64, 74)] {
            let w = random(m * k), bias = random(m), res = random(m * n)
            var x = random(k * n)
            x[(k * n) / 3] = .nan
            let packed = PointwisePacked(m: m, k: k, w: w)
            for (useRes, clamp) in [(false, Int32(0)), (true, Int32(1))] {
                var want = [Float](repeating: 0, count: m * n)
                for i in 0..<m {
                    for j in 0..<n {
                        var s: Float = 0
                        for kk in 0..<k { s = s.addingProduct(w[i * k + kk], x[kk * n + j]) }
                        var v = s + bias[i]
                        if clamp != 0 && !v.isNaN { v = Swift.min(Swift.max(v, -0.5), 0.5) }
                        want[i * n + j] = useRes ? v + res[i * n + j] : v
                    }
                }
                let outs = atEachLevel {
                    var y = [Float](repeating: 99, count: m * n)
                    res.withUnsafeBufferPointer { rp in
                        _ = zoo_pw_compute(Int32(m), Int32(k), packed.p, x, n, 0, Int32(n), 0, Int32((m + 7) / 8), bias, clamp, -0.5, 0.5,
                                           useRes ? rp.baseAddress : nil, n, &y, n)
                    }
                    return y
                }
                for (level, y) in outs {
                    // The FMA chain from zero in k order, + bias, clamp, + residual: the same bits.
                    XCTAssertTrue(zip(y, want).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) },
                                  "pw level \(level) m\(m) k\(k) n\(n) res \(useRes)")
                }
            }
        }
        // Depthwise rows over a staged-like buffer: widths around the 8/16-column blocks, 9 taps and 1.
        for outW in [1, 7, 8, 9, 14, 28, 31, 33, 56, 112] {
            let outH = 3, rowStep = outW + 24
            let buf = random(rowStep * (outH + 3) + 32)
            for taps in [9, 1] {
                let offs: [Int] = (0..<taps).map { ($0 / 3) * rowStep + ($0 % 3) * 2 }
                let wk = random(taps)
                var want = [Float](repeating: 0, count: outH * outW)
                for oy in 0..<outH {
                    for ox in 0..<outW {
                        var s: Float = 0.25
                        for t in 0..<taps { s = s.addingProduct(wk[t], buf[oy * rowStep + ox + offs[t]]) }
                        want[oy * outW + ox] = Swift.min(Swift.max(s, 0), 0.5)
                    }
                }
                let outs = atEachLevel {
                    // 16 guard floats past the plane: the kernels may write whole vectors inside it, never past it.
                    var y = [Float](repeating: 99, count: outH * outW + 16)
                    _ = zoo_dw_plane(buf, offs, Int32(taps), wk, 0.25, 1, 0, 0.5, outH, outW, rowStep, &y)
                    return y
                }
                for (level, y) in outs {
                    XCTAssertEqual(Array(y.prefix(outH * outW)), want, "dw level \(level) outW \(outW) taps \(taps)")
                    XCTAssertEqual(Array(y.suffix(16)), [Float](repeating: 99, count: 16), "dw level \(level) outW \(outW): write past the plane")
                }
            }
        }
        // Few-tap rows.
        for (m, k, n) in [(13, 27, 57), (32, 27, 112), (6, 25, 28)] {
            let w = random(m * k), bias = random(m), base = random(k * 40 + n + 16)
            let offs: [Int] = (0..<k).map { $0 * 40 + $0 % 3 }
            let packed = PointwisePacked(m: m, k: k, w: w)
            let outs = atEachLevel {
                var y = [Float](repeating: 99, count: m * n)
                _ = zoo_conv_taps_row(Int32(m), Int32(k), packed.p, base, offs, Int32(n), 0, Int32((m + 7) / 8), bias, 1, 0, 6, &y, n)
                return y
            }
            for (level, y) in outs.dropFirst() { XCTAssertEqual(y, outs[0].out, "taps level \(level) vs \(outs[0].level) m\(m) k\(k) n\(n)") }
        }
    }

    /// mobilenet_v2 (fused blocks on the vector kernels) against the plain path; both against the reference executor.
    func testMobileNetV2VectorKernelsMatchPlainPath() throws {
        try XCTSkipIf(zoo_kernels_simd() == 0, "no AVX-512F or AVX2 on this CPU")
        let g = try Catalog.graph("mobilenet_v2", inputSize: [64])
        let m = Model.initialized(graph: g, seed: 3)
        var rng = SeededRandom(seed: 4)
        let x = Tensor(shape: [1] + g.inputShape, data: (0..<g.inputShape.reduce(1, *)).map { _ in rng.nextNormal() })
        let ref = try Executor(model: m, kernels: .reference, threads: 1).forward(x)
        let fused = try Executor(model: m, kernels: .fast, threads: 2)
        fused.collectTimings = true
        let vec = try fused.forward(x)
        XCTAssertFalse(fused.timings.contains { $0.node == "features.3.conv.1.0" }, "block 3 not fused")
        zoo_kernels_set_simd_cap(0)
        let plainEx = try Executor(model: m, kernels: .fast, threads: 2)
        plainEx.collectTimings = true
        let plain = try plainEx.forward(x)
        XCTAssertTrue(plainEx.timings.contains { $0.node == "features.3.conv.1.0" }, "cap 0 still fused")
        zoo_kernels_set_simd_cap(2)
        let e1 = try XCTUnwrap(EngineOpTests.relativeError(vec, plain)), e2 = try XCTUnwrap(EngineOpTests.relativeError(vec, ref))
        XCTAssertLessThanOrEqual(e1, 1e-4)
        XCTAssertLessThanOrEqual(e2, 1e-4)
    }
}
