import Foundation
import XCTest
import CZooKernels
@testable import Zoo

/// The staged SIMD depthwise kernel (AVX-512F C rows when the CPU has them, Swift SIMD rows; and the direct kernel it replaced) against the plain reference convolution,
/// on plane widths around the 8/16-column blocks, strides 1 and 2, dilation, channel multipliers and uneven padding.
final class FastDepthwiseTests: XCTestCase {
    func random(_ n: Int, _ rng: inout SeededRandom) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 - 1 } }

    func check(batch: Int = 1, c: Int, mult: Int = 1, h: Int, w: Int, k: Int = 3, stride: Int, pad: (Int, Int, Int, Int) = (1, 1, 1, 1),
               dil: Int = 1, bias: Bool = true, act: Activation = .none, threads: Int = 2, line: UInt = #line) {
        let (pt, pl, pb, pr) = pad
        let oh = (h + pt + pb - dil * (k - 1) - 1) / stride + 1, ow = (w + pl + pr - dil * (k - 1) - 1) / stride + 1
        let g = Conv2dGeometry(batch: batch, inC: c, inH: h, inW: w, outC: c * mult, outH: oh, outW: ow, kH: k, kW: k,
                               strideH: stride, strideW: stride, padTop: pt, padLeft: pl, dilH: dil, dilW: dil, groups: c)
        XCTAssertTrue(Fast.depthwiseStagedApplies(g), line: line)
        var rng = SeededRandom(seed: UInt64(c * 1000 + h * 10 + w))
        let x = random(batch * c * h * w, &rng), wt = random(c * mult * k * k, &rng), b = random(c * mult, &rng)
        var want = [Float](repeating: 0, count: batch * c * mult * oh * ow)
        x.withUnsafeBufferPointer { xp in wt.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in
            Reference.conv2d(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bias ? bp.baseAddress! : nil, y: &want)
            let pre = want
            Reference.activation(act, count: want.count, x: pre, y: &want)
            let savedRows = Fast.stagedRowsInC, savedLanes = Fast.channelLanesMaxWidth, savedRuns = Fast.depthwiseLaneRuns
            defer { Fast.stagedRowsInC = savedRows; Fast.channelLanesMaxWidth = savedLanes; Fast.depthwiseLaneRuns = savedRuns }
            var cRows: [Float] = []
            // channel lanes twice: groups in one contiguous run per worker, and one task per group
            for (direct, rowsInC, lanes, runs) in [(false, true, false, true), (false, false, false, true), (true, false, false, true),
                                                   (false, true, true, true), (false, true, true, false)] {
                Fast.stagedRowsInC = rowsInC
                Fast.channelLanesMaxWidth = lanes ? Int.max : 0
                Fast.depthwiseLaneRuns = runs
                var got = [Float](repeating: .nan, count: want.count)
                if direct {
                    Fast.depthwise(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bias ? bp.baseAddress! : nil, act: act, y: &got, threads: threads)
                } else {
                    Fast.depthwiseStaged(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bias ? bp.baseAddress! : nil, act: act, y: &got,
                                         threads: threads)
                }
                let maxDiff = zip(got, want).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(maxDiff, 1e-5, "\(direct ? "direct" : lanes ? "channel lanes" : rowsInC ? "staged, C rows" : "staged, Swift rows") C\(c)×\(mult) \(h)×\(w) k\(k) s\(stride) d\(dil)",
                                         line: line)
                if rowsInC && !lanes { cRows = got }
                // The channel-lane kernel (zoo_dwc) has the C rows' FMA chain per element: the same bits.
                if lanes && zoo_kernels_simd() >= 1 {
                    XCTAssertEqual(cRows.count, got.count, line: line)
                    XCTAssertEqual(zip(got, cRows).filter { $0.0.bitPattern != $0.1.bitPattern }.count, 0,
                                   "channel lanes vs C rows: elements that differ, C\(c) \(h)×\(w) k\(k) s\(stride)", line: line)
                }
            }
        } } }
    }

    func testStagedDepthwiseMatchesReference() {
        check(c: 5, h: 112, w: 112, stride: 1, act: .clip(0, 6))
        check(batch: 2, c: 7, h: 112, w: 112, stride: 2, act: .clip(0, 6))
        check(c: 6, h: 56, w: 56, stride: 2, bias: false, act: .relu)
        check(batch: 3, c: 4, h: 7, w: 7, stride: 1, act: .clip(0, 6), threads: 1)
        check(c: 3, h: 14, w: 14, stride: 2)
        check(c: 3, h: 9, w: 17, stride: 1)
        check(c: 3, h: 9, w: 8, stride: 1, pad: (0, 0, 0, 0))
        check(c: 3, h: 10, w: 33, stride: 2, pad: (0, 1, 2, 0))
        check(c: 2, mult: 3, h: 11, w: 19, stride: 1, dil: 2, act: .sigmoid)
        check(c: 2, mult: 2, h: 12, w: 35, k: 5, stride: 2, pad: (2, 2, 2, 2), dil: 1)
        check(c: 2, h: 3, w: 3, k: 5, stride: 1, pad: (1, 2, 1, 2))
        check(c: 2, h: 13, w: 24, k: 3, stride: 2, pad: (3, 3, 3, 3), dil: 3)
        // Channel counts around the 8 lanes, mobilenet_v2's small planes, several images.
        check(batch: 2, c: 13, h: 7, w: 7, stride: 1, act: .clip(0, 6))
        check(c: 20, h: 14, w: 14, stride: 2, act: .clip(0, 6), threads: 3)
        check(batch: 2, c: 17, h: 28, w: 28, stride: 1, act: .relu)
        check(c: 9, h: 5, w: 6, k: 5, stride: 1, pad: (2, 0, 1, 2), dil: 1, act: .tanh)
        check(c: 8, h: 1, w: 1, stride: 1)
    }
}

/// The 1×1 convolution paths (direct column blocks, gathered batch) against the plain reference.
final class FastPointwiseTests: XCTestCase {
    func check(batch: Int, inC: Int, outC: Int, h: Int, w: Int, bias: Bool, act: Activation, threads: Int, line: UInt = #line) {
        let g = Conv2dGeometry(batch: batch, inC: inC, inH: h, inW: w, outC: outC, outH: h, outW: w, kH: 1, kW: 1,
                               strideH: 1, strideW: 1, padTop: 0, padLeft: 0, dilH: 1, dilW: 1, groups: 1)
        var rng = SeededRandom(seed: UInt64(inC * 100 + h))
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 - 1 } }
        let x = random(batch * inC * h * w), wt = random(outC * inC), b = random(outC)
        var want = [Float](repeating: 0, count: batch * outC * h * w)
        x.withUnsafeBufferPointer { xp in wt.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in
            Reference.conv2d(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bias ? bp.baseAddress! : nil, y: &want)
            let pre = want
            Reference.activation(act, count: want.count, x: pre, y: &want)
            let saved = (Fast.pointwiseMode, Fast.partsPerThread)
            defer { (Fast.pointwiseMode, Fast.partsPerThread) = saved }
            let packed = PointwisePacked(m: outC, k: inC, w: wp.baseAddress!)
            // the in-place tiles twice: one part per worker, and up to four per worker (`partsPerThread`)
            for (mode, parts) in [("", 1), ("", 4), ("blas", 1), ("gather", 1), ("legacy", 1)] {
                Fast.pointwiseMode = mode
                Fast.partsPerThread = parts
                XCTAssertEqual(Fast.pointwiseApplies(g), mode != "legacy", line: line)
                let inPlace = mode == "" && zoo_kernels_simd() != 0 && act != .sigmoid && act != .tanh
                XCTAssertEqual(Fast.pointwiseInPlaceApplies(g, act: act), inPlace, line: line)
                var got = [Float](repeating: .nan, count: want.count)
                var scratch = [Float](repeating: .nan, count: Swift.max(1, Fast.conv2dScratch(g)))
                Fast.conv2d(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bias ? bp.baseAddress! : nil, act: act, y: &got,
                            scratch: &scratch, threads: threads, pointwisePacked: packed)
                let maxDiff = zip(got, want).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(maxDiff, 1e-5 * Swift.max(1, Float(inC).squareRoot()), "mode '\(mode)' parts \(parts) N\(batch) \(inC)→\(outC) \(h)×\(w)",
                                         line: line)
            }
        } } }
    }

    func testPointwisePathsMatchReference() {
        XCTAssertEqual(Fast.pointwiseBlock(Conv2dGeometry(batch: 1, inC: 8, inH: 112, inW: 112, outC: 8, outH: 112, outW: 112, kH: 1, kW: 1,
                                                          strideH: 1, strideW: 1, padTop: 0, padLeft: 0, dilH: 1, dilW: 1, groups: 1),
                                           threads: 2), 1792)
        check(batch: 1, inC: 16, outC: 24, h: 50, w: 50, bias: true, act: .clip(0, 6), threads: 2)
        check(batch: 3, inC: 40, outC: 17, h: 7, w: 7, bias: true, act: .relu, threads: 2)
        check(batch: 8, inC: 24, outC: 30, h: 14, w: 14, bias: false, act: .none, threads: 2)
        check(batch: 2, inC: 33, outC: 9, h: 9, w: 11, bias: true, act: .sigmoid, threads: 1)
        check(batch: 2, inC: 5, outC: 3, h: 1, w: 3, bias: true, act: .clip(-1, 1), threads: 2)
        // 7×7 at batch 1: output channels split over the workers (two blocks of 48 and 33 rows).
        check(batch: 1, inC: 20, outC: 81, h: 7, w: 7, bias: true, act: .clip(0, 6), threads: 2)
        // In-place AVX-512 tiles: plane widths around the 16/48-column tiles, k = 1 and large k, row tails.
        check(batch: 1, inC: 1, outC: 8, h: 4, w: 4, bias: true, act: .relu, threads: 2)
        check(batch: 1, inC: 160, outC: 960, h: 7, w: 7, bias: true, act: .clip(0, 6), threads: 2)
        check(batch: 2, inC: 96, outC: 23, h: 14, w: 14, bias: true, act: .none, threads: 2)
        check(batch: 1, inC: 16, outC: 96, h: 40, w: 40, bias: true, act: .clip(0, 6), threads: 2)
        check(batch: 1, inC: 7, outC: 5, h: 1, w: 47, bias: false, act: .clip(0, 6), threads: 3)
        check(batch: 3, inC: 9, outC: 17, h: 1, w: 97, bias: true, act: .relu, threads: 1)
    }

    /// The C tiles directly: every column/row range split, a residual, NaN through the clamp; against a triple loop.
    func testInPlaceTilesMatchLoops() throws {
        try XCTSkipIf(zoo_kernels_simd() == 0, "no AVX-512F or AVX2 on this CPU")
        var rng = SeededRandom(seed: 77)
        for (m, k, n) in [(8, 3, 48), (13, 17, 50), (24, 64, 97), (3, 300, 16), (40, 5, 113), (17, 40, 49), (9, 6, 1)] {
            let w = (0..<m * k).map { _ in rng.nextFloat() * 2 - 1 }
            var x = (0..<k * n).map { _ in rng.nextFloat() * 2 - 1 }
            x[k * n / 2] = .nan
            let bias = (0..<m).map { _ in rng.nextFloat() }, res = (0..<m * n).map { _ in rng.nextFloat() * 2 - 1 }
            let packed = PointwisePacked(m: m, k: k, w: w)
            for (useRes, clamp) in [(false, Int32(0)), (true, Int32(1)), (true, Int32(0))] {
                var want = [Float](repeating: 0, count: m * n)
                for i in 0..<m {
                    for j in 0..<n {
                        var s: Float = 0
                        for kk in 0..<k { s += w[i * k + kk] * x[kk * n + j] }
                        var v = s + bias[i]
                        if clamp != 0 { v = v.isNaN ? v : Swift.min(Swift.max(v, -0.5), 0.5) }
                        want[i * n + j] = useRes ? v + res[i * n + j] : v
                    }
                }
                // Several (column, panel) ranges cover the output exactly once; sentinel elsewhere is overwritten.
                var got = [Float](repeating: 99, count: m * n)
                let panels = (m + 7) / 8
                let cuts = [0, Swift.min(n, 48), n]
                for c in 0..<2 where cuts[c] < cuts[c + 1] {
                    for p in 0..<panels {
                        res.withUnsafeBufferPointer { rp in
                            XCTAssertEqual(zoo_pw_compute(Int32(m), Int32(k), packed.p, x, n, Int32(cuts[c]), Int32(cuts[c + 1]), Int32(p), Int32(p + 1),
                                                          bias, clamp, -0.5, 0.5, useRes ? rp.baseAddress : nil, n, &got, n), 1)
                        }
                    }
                }
                // Narrow column tails (≤ 2 columns) off: the masked tiles give the same bits.
                var tiles = [Float](repeating: 99, count: m * n)
                zoo_pw_set_narrow(0)
                res.withUnsafeBufferPointer { rp in
                    _ = zoo_pw_compute(Int32(m), Int32(k), packed.p, x, n, 0, Int32(n), 0, Int32(panels), bias, clamp, -0.5, 0.5,
                                       useRes ? rp.baseAddress : nil, n, &tiles, n)
                }
                zoo_pw_set_narrow(1)
                XCTAssertTrue(zip(got, tiles).allSatisfy { $0.bitPattern == $1.bitPattern }, "narrow tails m\(m) k\(k) n\(n)")
                for i in 0..<m * n {
                    let ok = (got[i].isNaN && want[i].isNaN) || abs(got[i] - want[i]) <= 1e-5 * Swift.max(1, Float(k).squareRoot())
                    if !ok { XCTFail("m\(m) k\(k) n\(n) res \(useRes) clamp \(clamp) at \(i): \(got[i]) vs \(want[i])"); break }
                }
            }
        }
    }
}

/// `Fast.tapConv` (few-tap convolutions as implicit GEMM rows over staged bands) against the plain reference, and the
/// packed-GEMM path it replaces with the same weights.
final class FastTapConvTests: XCTestCase {
    func check(batch: Int, inC: Int, outC: Int, h: Int, w: Int, k: Int, stride: Int, pad: (Int, Int, Int, Int), dil: Int = 1,
               act: Activation, threads: Int, line: UInt = #line) throws {
        try XCTSkipIf(zoo_kernels_simd() == 0, "no AVX-512F or AVX2 on this CPU")
        let (pt, pl, pb, pr) = pad
        let oh = (h + pt + pb - dil * (k - 1) - 1) / stride + 1, ow = (w + pl + pr - dil * (k - 1) - 1) / stride + 1
        let g = Conv2dGeometry(batch: batch, inC: inC, inH: h, inW: w, outC: outC, outH: oh, outW: ow, kH: k, kW: k,
                               strideH: stride, strideW: stride, padTop: pt, padLeft: pl, dilH: dil, dilW: dil, groups: 1)
        XCTAssertTrue(Fast.tapConvApplies(g, act: act), line: line)
        var rng = SeededRandom(seed: UInt64(inC * 31 + h * 7 + w))
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 - 1 } }
        let x = random(batch * inC * h * w), wt = random(outC * inC * k * k), b = random(outC)
        let want = referenceConv2d(g, x: x, w: wt, b: b, act: act)
        let packed = PointwisePacked(m: outC, k: inC * k * k, w: wt)
        let pm = PackedMatrix(m: outC, k: inC * k * k, a: wt, lda: inC * k * k)
        let saved = Fast.tapConvOn
        defer { Fast.tapConvOn = saved }
        for on in [true, false] {
            Fast.tapConvOn = on
            let got = fastConv2d(g, x: x, w: wt, b: b, act: act, threads: threads, packed: pm, pointwisePacked: packed)
            XCTAssertLessThanOrEqual(maxAbsDiff(got, want), 1e-5 * Swift.max(1, Float(inC * k * k).squareRoot()),
                                     "tapConv \(on) N\(batch) \(inC)→\(outC) \(h)×\(w) k\(k) s\(stride)", line: line)
        }
    }

    func testTapConvMatchesReference() throws {
        // mobilenet_v2's stem geometry (3×3/2, pad 1, 3→32, ReLU6), one band and several.
        try check(batch: 1, inC: 3, outC: 32, h: 64, w: 64, k: 3, stride: 2, pad: (1, 1, 1, 1), act: .clip(0, 6), threads: 2)
        try check(batch: 2, inC: 3, outC: 32, h: 224, w: 224, k: 3, stride: 2, pad: (1, 1, 1, 1), act: .clip(0, 6), threads: 2)
        try check(batch: 1, inC: 3, outC: 13, h: 33, w: 29, k: 3, stride: 2, pad: (0, 1, 2, 0), act: .none, threads: 1)
        // LeNet-like 5×5 stride 1, odd channel counts, dilation, ReLU.
        try check(batch: 3, inC: 1, outC: 6, h: 28, w: 28, k: 5, stride: 1, pad: (2, 2, 2, 2), act: .relu, threads: 2)
        try check(batch: 1, inC: 2, outC: 9, h: 21, w: 70, k: 3, stride: 1, pad: (1, 1, 1, 1), dil: 2, act: .relu, threads: 3)
        try check(batch: 1, inC: 3, outC: 8, h: 5, w: 5, k: 3, stride: 2, pad: (0, 0, 0, 0), act: .clip(-1, 1), threads: 2)
        // Image stems beyond 32 taps: resnet18's and googlenet's 7×7/2, pad 3, 3→64 (147 taps), and a 4-channel 5×5 one.
        try check(batch: 1, inC: 3, outC: 64, h: 64, w: 64, k: 7, stride: 2, pad: (3, 3, 3, 3), act: .relu, threads: 2)
        try check(batch: 2, inC: 3, outC: 20, h: 45, w: 37, k: 7, stride: 2, pad: (3, 3, 3, 3), act: .none, threads: 2)
        try check(batch: 1, inC: 4, outC: 9, h: 30, w: 31, k: 5, stride: 1, pad: (2, 2, 2, 2), act: .relu, threads: 2)
    }

    func testTapConvTakesStemsOnly() throws {
        try XCTSkipIf(zoo_kernels_simd() == 0, "no AVX-512F or AVX2 on this CPU")
        func geo(_ inC: Int, _ k: Int) -> Conv2dGeometry {
            Conv2dGeometry(batch: 1, inC: inC, inH: 32, inW: 32, outC: 16, outH: 16, outW: 16, kH: k, kW: k, strideH: 2, strideW: 2,
                           padTop: k / 2, padLeft: k / 2, dilH: 1, dilW: 1, groups: 1)
        }
        XCTAssertTrue(Fast.tapConvApplies(geo(3, 7), act: .relu))
        XCTAssertFalse(Fast.tapConvApplies(geo(5, 3), act: .relu))   // 45 taps, not a stem
        XCTAssertFalse(Fast.tapConvApplies(geo(3, 9), act: .relu))   // 243 taps
        let saved = Fast.tapConvStems
        defer { Fast.tapConvStems = saved }
        Fast.tapConvStems = false
        XCTAssertFalse(Fast.tapConvApplies(geo(3, 7), act: .relu))
    }
}

/// Strided, unpadded 1×1 convolutions (resnet's downsample) as a subsampling copy plus `pointwiseInPlace`, against the
/// reference and against the packed-GEMM path they otherwise take.
final class StridedPointwiseTests: XCTestCase {
    func check(batch: Int, inC: Int, outC: Int, h: Int, w: Int, stride: (Int, Int), padEnd: (Int, Int) = (0, 0), act: Activation,
               threads: Int, expectFast: Bool, line: UInt = #line) throws {
        let oh = (h + padEnd.0 - 1) / stride.0 + 1, ow = (w + padEnd.1 - 1) / stride.1 + 1
        let g = Conv2dGeometry(batch: batch, inC: inC, inH: h, inW: w, outC: outC, outH: oh, outW: ow, kH: 1, kW: 1,
                               strideH: stride.0, strideW: stride.1, padTop: 0, padLeft: 0, dilH: 1, dilW: 1, groups: 1)
        XCTAssertEqual(Fast.stridedPointwiseApplies(g, act: act), expectFast && zoo_kernels_simd() != 0, line: line)
        var rng = SeededRandom(seed: UInt64(inC * 13 + h * 5 + w))
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 - 1 } }
        let x = random(batch * inC * h * w), wt = random(outC * inC), b = random(outC)
        let want = referenceConv2d(g, x: x, w: wt, b: b, act: act)
        let pm = PackedMatrix(m: outC, k: inC, a: wt, lda: inC)
        let pw = PointwisePacked(m: outC, k: inC, w: wt)
        let saved = Fast.stridedPointwiseOn
        defer { Fast.stridedPointwiseOn = saved }
        for on in [true, false] {
            Fast.stridedPointwiseOn = on
            let got = fastConv2d(g, x: x, w: wt, b: b, act: act, threads: threads, packed: pm, pointwisePacked: pw)
            XCTAssertLessThanOrEqual(maxAbsDiff(got, want), 1e-5 * Swift.max(1, Float(inC).squareRoot()),
                                     "strided 1×1 \(on) N\(batch) \(inC)→\(outC) \(h)×\(w) s\(stride)", line: line)
        }
    }

    func testStridedPointwiseMatchesReference() throws {
        // resnet18's downsamples (56² → 28², 64 → 128; 7² output, 256 → 512), odd sizes, stride 3, unequal strides.
        try check(batch: 1, inC: 64, outC: 128, h: 56, w: 56, stride: (2, 2), act: .none, threads: 2, expectFast: true)
        try check(batch: 2, inC: 256, outC: 40, h: 14, w: 14, stride: (2, 2), act: .relu, threads: 2, expectFast: true)
        try check(batch: 3, inC: 17, outC: 9, h: 15, w: 13, stride: (3, 2), act: .clip(-0.5, 0.5), threads: 3, expectFast: true)
        try check(batch: 1, inC: 5, outC: 7, h: 9, w: 11, stride: (1, 2), act: .relu, threads: 1, expectFast: true)
        // Padding at the end that a sampled position falls on: left to the packed GEMM, same results.
        try check(batch: 1, inC: 8, outC: 16, h: 8, w: 8, stride: (2, 2), padEnd: (1, 1), act: .none, threads: 2, expectFast: false)
        // Sigmoid is not an in-place epilogue: packed GEMM.
        try check(batch: 1, inC: 8, outC: 16, h: 8, w: 8, stride: (2, 2), act: .sigmoid, threads: 2, expectFast: false)
    }
}

/// Staged max pooling (and the separable one) against the reference, including NaN propagation and ceil mode.
final class FastMaxPoolTests: XCTestCase {
    func check(planes: Int, h: Int, w: Int, k: [Int], s: [Int], pad: Padding2D = .zero, dil: [Int] = [1, 1], ceil: Bool = false,
               nans: Bool = false, ties: Bool = false, threads: Int = 2, line: UInt = #line) {
        let a = Pool2dAttrs(kernel: k, stride: s, padding: pad, dilation: dil, ceilMode: ceil)
        let g = Pool2dGeometry(pool: a, input: [1, planes, h, w])
        var rng = SeededRandom(seed: UInt64(planes * 100 + h * 7 + w))
        var x = (0..<planes * h * w).map { _ in rng.nextFloat() * 2 - 1 }
        if nans { for i in stride(from: 5, to: x.count, by: 37) { x[i] = .nan } }
        // ties between −0 and +0 where they are the window's maximum
        for i in stride(from: 3, to: x.count, by: 11) { x[i] = i % 2 == 0 ? 0 : -0.0 }
        for i in stride(from: 4, to: x.count, by: 13) { x[i] = -1 }
        // every window's maximum a tie of ±0 (which one wins shows the order the taps were taken in)
        if ties { for i in x.indices { x[i] = i % 5 == 0 ? -1 : (i / 3 + i / 7) % 2 == 0 ? 0 : -0.0 } }
        var want = [Float](repeating: 0, count: planes * g.outH * g.outW)
        Reference.maxPool2d(g, x: x, y: &want)
        let saved = (Fast.maxPoolSeparable, Fast.stagedRowsInC, Fast.maxPool3s2On)
        defer { (Fast.maxPoolSeparable, Fast.stagedRowsInC, Fast.maxPool3s2On) = saved }
        for (separable, rowsInC, direct3s2) in [(false, true, true), (false, true, false), (false, false, false), (true, false, false)] {
            Fast.maxPoolSeparable = separable
            Fast.stagedRowsInC = rowsInC
            Fast.maxPool3s2On = direct3s2
            var got = [Float](repeating: 7, count: want.count)
            Fast.maxPool2d(g, x: x, y: &got, threads: threads)
            // bit for bit (a tie between −0 and +0 resolves to the first in window order, as in the reference)
            let same = zip(got, want).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) }
            XCTAssertTrue(same, "\(separable ? "separable" : direct3s2 && Fast.maxPool3s2Applies(g) ? "3×3/2 direct" : rowsInC ? "staged, C rows" : "staged, Swift rows") \(h)×\(w) k\(k) s\(s) ceil \(ceil)", line: line)
        }
    }

    func testStagedMaxPoolMatchesReference() {
        forEachSIMDLevel { _ in
            check(planes: 3, h: 112, w: 112, k: [3, 3], s: [2, 2], ceil: true)
            check(planes: 5, h: 28, w: 28, k: [3, 3], s: [1, 1], pad: Padding2D(1), nans: true)
            check(planes: 4, h: 14, w: 14, k: [3, 3], s: [2, 2], ceil: true, nans: true, threads: 1)
            check(planes: 4, h: 7, w: 7, k: [3, 3], s: [1, 1], pad: Padding2D(1))
            check(planes: 2, h: 14, w: 14, k: [2, 2], s: [2, 2], ceil: true)
            check(planes: 2, h: 9, w: 35, k: [3, 2], s: [2, 1], pad: Padding2D(top: 1, left: 0, bottom: 1, right: 0))
            check(planes: 2, h: 10, w: 19, k: [3, 3], s: [2, 2], pad: Padding2D(1), dil: [2, 2], ceil: true)
            check(planes: 2, h: 8, w: 7, k: [3, 3], s: [2, 2], pad: Padding2D(top: 0, left: 1, bottom: 1, right: 0))
            // resnet18's stem pool (112² → 56²), odd sizes, ceil mode's partial last windows, NaNs, one-row planes.
            check(planes: 3, h: 112, w: 112, k: [3, 3], s: [2, 2], pad: Padding2D(1), nans: true)
            check(planes: 2, h: 57, w: 45, k: [3, 3], s: [2, 2], pad: Padding2D(1), ceil: true)
            check(planes: 2, h: 33, w: 70, k: [3, 3], s: [2, 2], ceil: true, nans: true, threads: 3)
            check(planes: 3, h: 1, w: 5, k: [3, 3], s: [2, 2], pad: Padding2D(1))
            check(planes: 2, h: 6, w: 35, k: [3, 3], s: [2, 2], pad: Padding2D(top: 1, left: 0, bottom: 1, right: 1))
            check(planes: 2, h: 23, w: 41, k: [3, 3], s: [2, 2], pad: Padding2D(1), ties: true)
            check(planes: 2, h: 20, w: 34, k: [3, 3], s: [2, 2], ceil: true, ties: true)
            // googlenet's inception pools (3×3/1, pad 1), odd widths, no padding, NaNs
            check(planes: 4, h: 28, w: 28, k: [3, 3], s: [1, 1], pad: Padding2D(1), nans: true)
            check(planes: 3, h: 13, w: 37, k: [3, 3], s: [1, 1], pad: Padding2D(1))
            check(planes: 2, h: 9, w: 18, k: [3, 3], s: [1, 1], nans: true, threads: 3)
        }
    }
}

/// `Fast.expandDepthwise` (expand 1×1 + depthwise in cache-sized bands and channel groups) against the two layers
/// run apart (in-place 1×1 tiles, staged depthwise: the same numbers) and against the plain reference convolutions.
final class FastExpandDepthwiseTests: XCTestCase {
    func check(batch: Int, inC: Int, c: Int, h: Int, w: Int, stride: Int, actE: Activation = .clip(0, 6), actD: Activation = .clip(0, 6),
               bias: Bool = true, threads: Int, line: UInt = #line) throws {
        try XCTSkipIf(zoo_kernels_simd() == 0, "no AVX-512F or AVX2 on this CPU")
        let ge = Conv2dGeometry(batch: batch, inC: inC, inH: h, inW: w, outC: c, outH: h, outW: w, kH: 1, kW: 1,
                                strideH: 1, strideW: 1, padTop: 0, padLeft: 0, dilH: 1, dilW: 1, groups: 1)
        let oh = (h + 2 - 3) / stride + 1, ow = (w + 2 - 3) / stride + 1
        let gd = Conv2dGeometry(batch: batch, inC: c, inH: h, inW: w, outC: c, outH: oh, outW: ow, kH: 3, kW: 3,
                                strideH: stride, strideW: stride, padTop: 1, padLeft: 1, dilH: 1, dilW: 1, groups: c)
        XCTAssertTrue(Fast.expandDepthwiseApplies(ge, actE: actE, gd, actD: actD), line: line)
        var rng = SeededRandom(seed: UInt64(inC * 13 + c * 7 + h))
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 - 1 } }
        let x = random(batch * inC * h * w), we = random(c * inC), be = random(c), wd = random(c * 9), bd = random(c)
        let pe = PointwisePacked(m: c, k: inC, w: we)
        var mid = [Float](repeating: 0, count: batch * c * h * w)
        var want = [Float](repeating: 0, count: batch * c * oh * ow)
        Reference.conv2d(ge, x: x, w: we, b: bias ? be : nil, y: &mid)
        var t = mid
        Reference.activation(actE, count: mid.count, x: t, y: &mid)
        Reference.conv2d(gd, x: mid, w: wd, b: bias ? bd : nil, y: &want)
        t = want
        Reference.activation(actD, count: want.count, x: t, y: &want)
        // The two fast layers apart.
        var midFast = [Float](repeating: .nan, count: mid.count), apart = [Float](repeating: .nan, count: want.count)
        Fast.pointwiseInPlace(ge, x: x, w: pe, b: bias ? be : nil, act: actE, y: &midFast, threads: threads)
        Fast.depthwiseStaged(gd, x: midFast, w: wd, b: bias ? bd : nil, act: actD, y: &apart, threads: threads)
        var got = [Float](repeating: .nan, count: want.count)
        Fast.expandDepthwise(ge, x: x, we: pe, be: bias ? be : nil, actE: actE, gd, wd: wd, bd: bias ? bd : nil, actD: actD, y: &got,
                             threads: threads)
        XCTAssertEqual(got, apart, "fused vs apart N\(batch) \(inC)→\(c) \(h)×\(w) s\(stride)", line: line)
        let maxDiff = zip(got, want).map { abs($0 - $1) }.max()!
        XCTAssertLessThanOrEqual(maxDiff, 1e-5 * Swift.max(1, Float(inC).squareRoot()) * 4, "fused vs reference", line: line)
    }

    func testExpandDepthwiseMatchesLayersApart() throws {
        // Both plans: one band of rows per worker (`preferBands`, the default) and channel groups for small planes.
        let saved = Fast.preferBands
        defer { Fast.preferBands = saved }
        for bands in [true, false] {
            Fast.preferBands = bands
            // mobilenet_v2-like shapes: stride 2 and 1 with several bands, 7² (channel groups or row bands).
            try check(batch: 1, inC: 16, c: 96, h: 60, w: 60, stride: 2, threads: 2)
            try check(batch: 2, inC: 24, c: 144, h: 40, w: 40, stride: 1, threads: 2)
            try check(batch: 1, inC: 160, c: 960, h: 7, w: 7, stride: 1, threads: 2)
            // Odd sizes, channel counts not multiples of 8, no bias, other activations, one thread, three threads.
            try check(batch: 3, inC: 5, c: 13, h: 9, w: 17, stride: 2, actE: .relu, actD: .none, bias: false, threads: 3)
            try check(batch: 1, inC: 7, c: 20, h: 33, w: 10, stride: 1, actE: .none, actD: .relu, threads: 1)
            try check(batch: 2, inC: 3, c: 8, h: 2, w: 2, stride: 2, threads: 2)
        }
    }
}

/// `Fast.expandDepthwise` with its project stage (and residual) against the three layers run apart and the reference.
final class FastInvertedResidualTests: XCTestCase {
    func check(batch: Int, inC: Int, c: Int, outC: Int, h: Int, w: Int, stride: Int, residual: Bool, threads: Int, line: UInt = #line) throws {
        try XCTSkipIf(zoo_kernels_simd() == 0, "no AVX-512F or AVX2 on this CPU")
        let ge = Conv2dGeometry(batch: batch, inC: inC, inH: h, inW: w, outC: c, outH: h, outW: w, kH: 1, kW: 1,
                                strideH: 1, strideW: 1, padTop: 0, padLeft: 0, dilH: 1, dilW: 1, groups: 1)
        let oh = (h + 2 - 3) / stride + 1, ow = (w + 2 - 3) / stride + 1
        let gd = Conv2dGeometry(batch: batch, inC: c, inH: h, inW: w, outC: c, outH: oh, outW: ow, kH: 3, kW: 3,
                                strideH: stride, strideW: stride, padTop: 1, padLeft: 1, dilH: 1, dilW: 1, groups: c)
        let gp = Conv2dGeometry(batch: batch, inC: c, inH: oh, inW: ow, outC: outC, outH: oh, outW: ow, kH: 1, kW: 1,
                                strideH: 1, strideW: 1, padTop: 0, padLeft: 0, dilH: 1, dilW: 1, groups: 1)
        guard Fast.expandDepthwiseProjectApplies(ge, gd, gp, actP: .none, threads: threads) else {
            XCTFail("project stage not taken", line: line); return
        }
        var rng = SeededRandom(seed: UInt64(inC * 17 + c + h))
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 - 1 } }
        let x = random(batch * inC * h * w), we = random(c * inC), be = random(c), wd = random(c * 9), bd = random(c)
        let wp = random(outC * c), bp = random(outC)
        let pe = PointwisePacked(m: c, k: inC, w: we), pp = PointwisePacked(m: outC, k: c, w: wp)
        // Reference: three convolutions, ReLU6 after the first two, then x added.
        var e = [Float](repeating: 0, count: batch * c * h * w), d = [Float](repeating: 0, count: batch * c * oh * ow)
        var want = [Float](repeating: 0, count: batch * outC * oh * ow)
        Reference.conv2d(ge, x: x, w: we, b: be, y: &e)
        var t = e; Reference.activation(.clip(0, 6), count: e.count, x: t, y: &e)
        Reference.conv2d(gd, x: e, w: wd, b: bd, y: &d)
        t = d; Reference.activation(.clip(0, 6), count: d.count, x: t, y: &d)
        Reference.conv2d(gp, x: d, w: wp, b: bp, y: &want)
        if residual { for i in want.indices { want[i] += x[i] } }
        // Apart: the fused pair, then the project tiles with the residual in their store.
        var pair = [Float](repeating: .nan, count: d.count), apart = [Float](repeating: .nan, count: want.count)
        Fast.expandDepthwise(ge, x: x, we: pe, be: be, actE: .clip(0, 6), gd, wd: wd, bd: bd, actD: .clip(0, 6), y: &pair, threads: threads)
        x.withUnsafeBufferPointer { xp in
            Fast.pointwiseInPlace(gp, x: pair, w: pp, b: bp, act: .none, res: residual ? xp.baseAddress! : nil, y: &apart, threads: threads)
        }
        var got = [Float](repeating: .nan, count: want.count)
        x.withUnsafeBufferPointer { xp in bp.withUnsafeBufferPointer { bpp in
            let stage = Fast.ProjectStage(g: gp, w: pp, b: bpp.baseAddress!, act: .none, res: residual ? xp.baseAddress! : nil)
            Fast.expandDepthwise(ge, x: x, we: pe, be: be, actE: .clip(0, 6), gd, wd: wd, bd: bd, actD: .clip(0, 6), project: stage,
                                 y: &got, threads: threads)
        } }
        XCTAssertEqual(got, apart, "fused block vs apart N\(batch) \(inC)→\(c)→\(outC) \(h)×\(w) s\(stride)", line: line)
        let maxDiff = zip(got, want).map { abs($0 - $1) }.max()!
        XCTAssertLessThanOrEqual(maxDiff, 4e-5 * Float(inC + c).squareRoot(), "fused block vs reference", line: line)
    }

    func testInvertedResidualMatchesLayersApart() throws {
        // 56² × 144 channels is several bands at the 512 KB band budget (`expandBandFloats`), so 2 images give 4+ tasks and no
        // channel groups; a plane that fits one band would be split by channels and not take the project stage.
        try check(batch: 2, inC: 24, c: 144, outC: 24, h: 56, w: 56, stride: 1, residual: true, threads: 2)
        try check(batch: 1, inC: 16, c: 96, outC: 24, h: 60, w: 60, stride: 2, residual: false, threads: 1)
        try check(batch: 3, inC: 5, c: 13, outC: 5, h: 9, w: 17, stride: 1, residual: true, threads: 1)
        try check(batch: 4, inC: 160, c: 480, outC: 160, h: 7, w: 7, stride: 1, residual: true, threads: 2)
    }

    /// No expand stage (mobilenet_v2's first block): the depthwise reads the input's rows in place, band by band, then the
    /// project; against the reference's two convolutions and the two fast layers apart (bit-equal).
    func testDepthwiseProjectMatchesReference() throws {
        try XCTSkipIf(zoo_kernels_simd() == 0, "no AVX-512F or AVX2 on this CPU")
        for (batch, c, outC, h, w, stride, threads) in [(1, 32, 16, 112, 112, 1, 2), (4, 24, 8, 70, 50, 2, 2), (3, 16, 16, 9, 17, 1, 1)] {
            let oh = (h + 2 - 3) / stride + 1, ow = (w + 2 - 3) / stride + 1
            let gd = Conv2dGeometry(batch: batch, inC: c, inH: h, inW: w, outC: c, outH: oh, outW: ow, kH: 3, kW: 3,
                                    strideH: stride, strideW: stride, padTop: 1, padLeft: 1, dilH: 1, dilW: 1, groups: c)
            let gp = Conv2dGeometry(batch: batch, inC: c, inH: oh, inW: ow, outC: outC, outH: oh, outW: ow, kH: 1, kW: 1,
                                    strideH: 1, strideW: 1, padTop: 0, padLeft: 0, dilH: 1, dilW: 1, groups: 1)
            let name = "N\(batch) \(c)→\(outC) \(h)×\(w) s\(stride)"
            guard Fast.depthwiseProjectApplies(gd, actD: .clip(0, 6), gp, actP: .none, threads: threads) else {
                XCTFail("not taken: " + name); continue
            }
            if batch == 1 { XCTAssertLessThan(Fast.expandDepthwisePlan(gd, gd, threads: threads).bandOut, oh, "several bands") }
            var rng = SeededRandom(seed: UInt64(c * 31 + h))
            func random(_ n: Int) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 - 1 } }
            let x = random(batch * c * h * w), wd = random(c * 9), bd = random(c), wp = random(outC * c), bp = random(outC)
            let pp = PointwisePacked(m: outC, k: c, w: wp)
            var d = [Float](repeating: 0, count: batch * c * oh * ow), want = [Float](repeating: 0, count: batch * outC * oh * ow)
            Reference.conv2d(gd, x: x, w: wd, b: bd, y: &d)
            let t = d; Reference.activation(.clip(0, 6), count: d.count, x: t, y: &d)
            Reference.conv2d(gp, x: d, w: wp, b: bp, y: &want)
            var dw = [Float](repeating: .nan, count: d.count), apart = [Float](repeating: .nan, count: want.count)
            Fast.depthwiseStaged(gd, x: x, w: wd, b: bd, act: .clip(0, 6), y: &dw, threads: threads)
            Fast.pointwiseInPlace(gp, x: dw, w: pp, b: bp, act: .none, res: nil, y: &apart, threads: threads)
            var got = [Float](repeating: .nan, count: want.count)
            bp.withUnsafeBufferPointer { bpp in
                let stage = Fast.ProjectStage(g: gp, w: pp, b: bpp.baseAddress!, act: .none, res: nil)
                Fast.expandDepthwise(gd, x: x, we: nil, be: nil, actE: .none, gd, wd: wd, bd: bd, actD: .clip(0, 6), project: stage,
                                     y: &got, threads: threads)
            }
            XCTAssertTrue(got == apart, "depthwise + project vs apart (bit-equal) " + name)
            let maxDiff = zip(got, want).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(maxDiff, 4e-5 * Float(c).squareRoot(), "depthwise + project vs reference " + name)
        }
    }
}
