import CGemm
import Foundation
import XCTest
@testable import Zoo

/// zoo's packed GEMM (Sources/CGemm) on every kernel level the CPU has (AVX-512, AVX2, portable) against a plain
/// triple loop, and the packed-GEMM convolution against `Reference.conv2d`.
final class PackedGemmTests: XCTestCase {
    /// Levels this CPU can run, best last; the original selection is restored afterwards.
    func forEachLevel(_ body: (Int) throws -> Void) rethrows {
        let best = Fast.gemmLevel
        defer { _ = zoo_gemm_select(Int32(best)) }
        for level in 0...best {
            XCTAssertEqual(Int(zoo_gemm_select(Int32(level)).level), level)
            try body(level)
        }
    }

    func testGemmMatchesTripleLoopWithBiasAndClampEpilogue() {
        var rng = SeededRandom(seed: 11)
        forEachLevel { level in
            // edges in M and N, K over several KC blocks, K = 1
            for (m, n, k) in [(1, 1, 1), (7, 5, 3), (8, 48, 256), (13, 50, 300), (65, 97, 513), (6, 17, 1), (512, 49, 600)] {
                let a = (0..<(m * k)).map { _ in rng.nextFloat() - 0.5 }
                let b = (0..<(k * n)).map { _ in rng.nextFloat() - 0.5 }
                let bias = (0..<m).map { _ in rng.nextFloat() - 0.5 }
                let ldc = n + 3
                for act in [Activation.none, .relu, .clip(-0.5, 0.25)] {
                    var c = [Float](repeating: .nan, count: m * ldc)
                    let pa = PackedMatrix(m: m, k: k, a: a, lda: k)
                    let pb = UnsafeMutablePointer<Float>.allocate(capacity: Fast.packedBFloats(k: k, n: n))
                    defer { pb.deallocate() }
                    Fast.packB(k: k, n: n, b: b, ldb: n, pb: pb, threads: 2)
                    c.withUnsafeMutableBufferPointer { cp in
                        Fast.packedGemm(pa, n: n, pb: pb, c: cp.baseAddress!, ldc: ldc, bias: bias, act: act, threads: 2)
                    }
                    var worst: Float = 0
                    for i in 0..<m {
                        for j in 0..<n {
                            var s = bias[i]
                            for p in 0..<k { s += a[i * k + p] * b[p * n + j] }
                            switch act {
                            case .relu: s = max(s, 0)
                            case let .clip(lo, hi): s = min(max(s, lo), hi)
                            default: break
                            }
                            worst = max(worst, abs(c[i * ldc + j] - s))
                        }
                        for j in n..<ldc { XCTAssertTrue(c[i * ldc + j].isNaN, "wrote past n at level \(level)") }
                    }
                    XCTAssertLessThan(worst, 1e-4, "level \(level) m\(m) n\(n) k\(k) \(act)")
                }
            }
        }
    }

    /// `Fast.zooSgemm` (the general SGEMM on zoo's kernel that `Fast.sgemm` takes when OpenBLAS runs a lower vector
    /// level): every transpose pair, C overwritten or accumulated, leading dimensions wider than the matrices, the
    /// column-split path with several K and column blocks (block sizes made tiny) and the row-split path (few columns),
    /// one and two workers, against a plain triple loop.
    func testGeneralSgemmOnZooKernelMatchesTripleLoop() {
        var rng = SeededRandom(seed: 13)
        let savedK = Fast.zooSgemmKBlock, savedB = Fast.zooSgemmBlockFloats
        defer { Fast.zooSgemmKBlock = savedK; Fast.zooSgemmBlockFloats = savedB }
        forEachLevel { level in
            for (kBlock, blockFloats) in [(savedK, savedB), (256, 1)] {
                Fast.zooSgemmKBlock = kBlock; Fast.zooSgemmBlockFloats = blockFloats
                for (m, n, k) in [(1, 1, 1), (7, 5, 3), (9, 200, 700), (40, 150, 600), (300, 20, 77), (16, 3, 40), (5, 8, 0)] {
                    for ta in [false, true] { for tb in [false, true] { for accumulate in [false, true] { for threads in [1, 2] {
                        let lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3
                        let a = (0..<((ta ? k : m) * lda)).map { _ in rng.nextFloat() - 0.5 }
                        let b = (0..<((tb ? n : k) * ldb)).map { _ in rng.nextFloat() - 0.5 }
                        let c0 = (0..<(m * ldc)).map { _ in rng.nextFloat() - 0.5 }
                        var c = c0
                        if !accumulate { for i in 0..<m { for j in 0..<n { c[i * ldc + j] = .nan } } }
                        c.withUnsafeMutableBufferPointer { cp in
                            Fast.zooSgemm(ta, tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, accumulate: accumulate,
                                          c: cp.baseAddress!, ldc: ldc, threads: threads)
                        }
                        var worst: Float = 0
                        for i in 0..<m {
                            for j in 0..<n {
                                var s: Float = accumulate ? c0[i * ldc + j] : 0
                                for p in 0..<k { s += (ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]) }
                                worst = max(worst, abs(c[i * ldc + j] - s))
                            }
                            for j in n..<ldc { XCTAssertEqual(c[i * ldc + j], c0[i * ldc + j], "wrote past n") }
                        }
                        XCTAssertLessThan(worst, 1e-4, "level \(level) m\(m) n\(n) k\(k) ta \(ta) tb \(tb) acc \(accumulate) t\(threads)")
                    } } } }
                }
            }
        }
    }

    /// `zoo_gemv` (one-row Linear layers where `Fast.sgemm` runs on zoo's kernel) on each level: row counts around the
    /// 4-row blocks, K around the 8/16-float vectors (masked tails), a leading dimension wider than K, against a plain loop.
    func testGemvMatchesPlainLoop() {
        var rng = SeededRandom(seed: 14)
        forEachLevel { level in
            for (m, k) in [(1, 1), (3, 7), (4, 16), (5, 17), (9, 33), (13, 100), (64, 1280)] {
                let lda = k + 5
                let a = (0..<(m * lda)).map { _ in rng.nextFloat() - 0.5 }
                let x = (0..<k).map { _ in rng.nextFloat() - 0.5 }
                var y = [Float](repeating: .nan, count: m + 2)
                y.withUnsafeMutableBufferPointer { zoo_gemv(Int32(m), Int32(k), a, Int32(lda), x, $0.baseAddress!) }
                for i in 0..<m {
                    var s: Float = 0
                    for p in 0..<k { s += a[i * lda + p] * x[p] }
                    XCTAssertEqual(y[i], s, accuracy: 1e-4, "level \(level) m\(m) k\(k) row \(i)")
                }
                XCTAssertTrue(y[m].isNaN && y[m + 1].isNaN, "wrote past m at level \(level)")
            }
        }
    }

    /// OpenBLAS's kernel family name maps to a vector level, so that a misdetected CPU (its "Prescott" fallback)
    /// routes `Fast.sgemm` to zoo's kernel.
    func testOpenBLASCoreLevels() {
        XCTAssertEqual(Fast.openblasLevel(coreName: "Prescott"), 0)
        XCTAssertEqual(Fast.openblasLevel(coreName: "Haswell"), 1)
        XCTAssertEqual(Fast.openblasLevel(coreName: "Zen"), 1)
        XCTAssertEqual(Fast.openblasLevel(coreName: "SkylakeX"), 2)
        XCTAssertEqual(Fast.openblasLevel(coreName: "SapphireRapids"), 2)
        XCTAssertFalse(Fast.openblasCoreName.isEmpty)
    }

    /// Inference sigmoid by zoo_sigmoid (vector exp) against the scalar expf path, lengths across the 32-wide body and the
    /// masked tail, in place, with ±∞ and NaN.
    func testVectorSigmoidMatchesScalar() {
        var rng = SeededRandom(seed: 31)
        let saved = Fast.vectorSigmoid
        defer { Fast.vectorSigmoid = saved }
        for n in [1, 15, 16, 17, 31, 32, 33, 100, 1000] {
            var x = (0..<n).map { _ in rng.nextFloat() * 60 - 30 }
            if n >= 4 { x[0] = .infinity; x[1] = -.infinity; x[2] = .nan; x[3] = 0 }
            var fast = x, plain = x
            Fast.vectorSigmoid = true
            fast.withUnsafeMutableBufferPointer { Fast.applyActivation(.sigmoid, $0.baseAddress!, count: n) }
            Fast.vectorSigmoid = false
            plain.withUnsafeMutableBufferPointer { Fast.applyActivation(.sigmoid, $0.baseAddress!, count: n) }
            for i in 0..<n {
                if plain[i].isNaN { XCTAssertTrue(fast[i].isNaN, "n \(n) i \(i)"); continue }
                XCTAssertEqual(fast[i], plain[i], accuracy: 2e-7, "n \(n) x \(x[i])")
            }
        }
    }

    /// 2×2 stride-2 average pooling by zoo_avgpool2 against the general window loop (bit-identical: same sum order),
    /// odd sizes that drop the last row or column, one plane and many over the workers; windows that the
    /// fast path must refuse (padding, ceil-mode partial windows).
    func testAveragePool2x2MatchesWindowLoop() {
        var rng = SeededRandom(seed: 32)
        let saved = Fast.fastAvgPool2
        defer { Fast.fastAvgPool2 = saved }
        for (planes, h, w) in [(1, 2, 2), (3, 28, 28), (16, 10, 10), (5, 7, 9), (40, 5, 37)] {
            let a = Pool2dAttrs(kernel: [2, 2], stride: [2, 2], padding: .zero)
            let g = Pool2dGeometry(pool: a, input: [1, planes, h, w])
            Fast.fastAvgPool2 = true
            XCTAssertTrue(Fast.avgPool2Applies(g))
            let x = (0..<(planes * h * w)).map { _ in rng.nextFloat() * 2 - 1 }
            var fast = [Float](repeating: .nan, count: planes * g.outH * g.outW), plain = fast
            fast.withUnsafeMutableBufferPointer { Fast.avgPool2d(g, x: x, y: $0.baseAddress!, threads: 2) }
            Fast.fastAvgPool2 = false
            plain.withUnsafeMutableBufferPointer { Fast.avgPool2d(g, x: x, y: $0.baseAddress!, threads: 2) }
            XCTAssertEqual(fast, plain, "\(planes)×\(h)×\(w)")
        }
        Fast.fastAvgPool2 = true
        XCTAssertFalse(Fast.avgPool2Applies(Pool2dGeometry(pool: Pool2dAttrs(kernel: [2, 2], stride: [2, 2], padding: Padding2D(1)),
                                                         input: [1, 1, 6, 6])))
        XCTAssertFalse(Fast.avgPool2Applies(Pool2dGeometry(pool: Pool2dAttrs(kernel: [2, 2], stride: [2, 2], padding: .zero, ceilMode: true),
                                                         input: [1, 1, 7, 7])))
        XCTAssertFalse(Fast.avgPool2Applies(Pool2dGeometry(pool: Pool2dAttrs(kernel: [3, 3], stride: [2, 2], padding: .zero),
                                                         input: [1, 1, 7, 7])))
    }

    /// Distant-core batch-1 convolutions split by output channels, each worker building all pixel panels itself
    /// (`privatePanelsConv`, forced on), against the reference: strided (staged and per-element im2col) and stride 1,
    /// output channels off the 8-row panel grid.
    func testPrivatePanelsMatchReference() throws {
        try XCTSkipIf(Fast.spatialParts < 2, "needs two threads")
        let saved = (Fast.privatePanelsMode, Fast.im2colStaged)
        defer { (Fast.privatePanelsMode, Fast.im2colStaged) = saved }
        Fast.privatePanelsMode = "1"
        var rng = SeededRandom(seed: 31)
        let threads = Fast.spatialParts
        for staged in [true, false] {
            Fast.im2colStaged = staged
            for (inC, outC, size, stride) in [(32, 64, 28, 2), (24, 70, 13, 1), (16, 60, 27, 2)] {
                let a = Conv2dAttrs(inChannels: inC, outChannels: outC, kernel: [3, 3], stride: [stride, stride], padding: Padding2D(1),
                                    dilation: [1, 1])
                let g = Conv2dGeometry(conv: a, input: [1, inC, size, size])
                let k = inC * 9
                XCTAssertTrue(Fast.privatePanelsApply(g, m: outC, k: k, threads: threads), "\(g)")
                let x = (0..<(inC * g.inPlane)).map { _ in rng.nextFloat() * 2 - 1 }
                let w = (0..<(outC * k)).map { _ in rng.nextFloat() - 0.5 }
                let b = (0..<outC).map { _ in rng.nextFloat() - 0.5 }
                var ref = [Float](repeating: 0, count: outC * g.outPlane), out = [Float](repeating: .nan, count: ref.count)
                ref.withUnsafeMutableBufferPointer { Reference.conv2d(g, x: x, w: w, b: b, y: $0.baseAddress!) }
                let pm = PackedMatrix(m: outC, k: k, a: w, lda: k)
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: Fast.packedBFloats(k: k, n: g.outPlane))
                defer { scratch.deallocate() }
                out.withUnsafeMutableBufferPointer {
                    Fast.packedConv2d(g, x: x, w: pm, b: b, act: .relu, y: $0.baseAddress!, scratch: scratch, threads: threads)
                }
                // every output written (NaN before) and within 1e-5
                XCTAssertTrue(zip(ref, out).allSatisfy { abs(max($0, 0) - $1) < 1e-5 }, "staged \(staged) \(g)")
            }
        }
    }

    func testPackedConvolutionMatchesReference() throws {
        var rng = SeededRandom(seed: 12)
        let cases: [(batch: Int, inC: Int, outC: Int, size: [Int], attrs: (kernel: [Int], stride: [Int], pad: Padding2D, dil: [Int]))] = [
            (1, 3, 16, [23, 19], ([7, 7], [2, 2], Padding2D(3), [1, 1])),
            (2, 8, 20, [9, 11], ([3, 3], [2, 2], Padding2D(1), [1, 1])),
            (1, 16, 24, [7, 7], ([3, 3], [1, 1], Padding2D(top: 0, left: 2, bottom: 1, right: 0), [2, 2])),
            (3, 12, 9, [10, 6], ([1, 1], [1, 1], .zero, [1, 1])),
            (1, 5, 50, [13, 13], ([1, 1], [2, 2], .zero, [1, 1])),
            (2, 4, 8, [5, 60], ([3, 5], [1, 3], Padding2D(1, 2), [1, 1])),
            (1, 3, 10, [17, 29], ([3, 3], [2, 3], Padding2D(top: 1, left: 2, bottom: 0, right: 1), [2, 2])),
            (1, 2, 9, [11, 70], ([7, 7], [2, 2], Padding2D(3), [1, 1])),
            // ≥ 8 panels of 48 columns, so that blocks of one panel take the blocked path at 2 threads
            (1, 3, 16, [40, 50], ([7, 7], [2, 2], Padding2D(3), [1, 1])),
            (2, 4, 8, [30, 30], ([5, 5], [1, 1], Padding2D(2), [1, 1])),
            // stride-2 rows whose 16-output blocks end at the row's last element (C staging's masked second load)
            (1, 4, 8, [9, 33], ([3, 3], [2, 2], Padding2D(1), [1, 1])),
            (1, 4, 8, [6, 64], ([3, 3], [2, 2], .zero, [1, 1])),
        ]
        let savedStaged = Fast.im2colStaged, savedBlocked = Fast.convBlocked, savedBlock = Fast.convBlockFloats
        let savedC = Fast.im2colC, savedImages = Fast.imageParallelWork
        defer {
            Fast.im2colStaged = savedStaged; Fast.convBlocked = savedBlocked; Fast.convBlockFloats = savedBlock; Fast.im2colC = savedC
            Fast.imageParallelWork = savedImages
        }
        // Strided convolutions: the staged (deinterleaved rows) im2col and the per-element gather; whole-image im2col
        // then GEMM, and blocks of one or two panels (im2col + GEMM per block); im2col and staging in C (AVX-512F, where
        // the CPU has it) and in Swift.
        // Batches of 2 and 3: whole images per worker (every case small enough) and images split among the workers.
        for images in [Int.max, 0] {
        Fast.imageParallelWork = images
        for useC in [true, false] {
        Fast.im2colC = useC
        for (staged, blockFloats) in [(true, 0), (false, 0), (true, 1), (false, 1), (true, 20_000)] {
        Fast.im2colStaged = staged
        Fast.convBlocked = blockFloats > 0
        Fast.convBlockFloats = blockFloats
        forEachLevel { level in
            for cs in cases {
                let a = Conv2dAttrs(inChannels: cs.inC, outChannels: cs.outC, kernel: cs.attrs.kernel, stride: cs.attrs.stride,
                                    padding: cs.attrs.pad, dilation: cs.attrs.dil)
                let g = Conv2dGeometry(conv: a, input: [cs.batch, cs.inC] + cs.size)
                XCTAssertFalse(Fast.winogradApplies(g))
                let x = (0..<(g.batch * g.inC * g.inPlane)).map { _ in rng.nextFloat() * 2 - 1 }
                let k = g.inC * g.kH * g.kW
                let w = (0..<(g.outC * k)).map { _ in rng.nextFloat() - 0.5 }
                let b = (0..<g.outC).map { _ in rng.nextFloat() - 0.5 }
                var ref = [Float](repeating: 0, count: g.batch * g.outC * g.outPlane), out = ref
                ref.withUnsafeMutableBufferPointer { Reference.conv2d(g, x: x, w: w, b: b, y: $0.baseAddress!) }
                let pm = PackedMatrix(m: g.outC, k: k, a: w, lda: k)
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: Fast.packedBFloats(k: k, n: g.outPlane))
                defer { scratch.deallocate() }
                out.withUnsafeMutableBufferPointer {
                    Fast.packedConv2d(g, x: x, w: pm, b: b, act: .relu, y: $0.baseAddress!, scratch: scratch, threads: 2)
                }
                let worst = zip(ref, out).reduce(Float(0)) { max($0, abs(max($1.0, 0) - $1.1)) }
                XCTAssertLessThan(worst, 1e-5, "level \(level) C \(useC) staged \(staged) block \(blockFloats) images \(images) \(g)")
            }
        }
        }
        }
        }
    }
}
