import XCTest
import CGemm
@testable import Zoo

/// `Fast.rowConv` (narrow planes at batch 1: output pixels as the GEMM's 8-row panels, raw weights transposed) against the
/// plain reference convolution, over strides, padding, dilation, channel counts off the 16/48 grid and worker counts.
final class RowConvTests: XCTestCase {
    func check(inC: Int, outC: Int, h: Int, w: Int, k: Int, stride: Int, pad: Int, dil: Int = 1, act: Activation, threads: Int,
               line: UInt = #line) throws {
        try XCTSkipIf(Fast.gemmLevel != 2, "the row-panel convolution needs the AVX-512 GEMM")
        let oh = (h + 2 * pad - dil * (k - 1) - 1) / stride + 1, ow = (w + 2 * pad - dil * (k - 1) - 1) / stride + 1
        let g = Conv2dGeometry(batch: 1, inC: inC, inH: h, inW: w, outC: outC, outH: oh, outW: ow, kH: k, kW: k,
                               strideH: stride, strideW: stride, padTop: pad, padLeft: pad, dilH: dil, dilW: dil, groups: 1)
        XCTAssertTrue(Fast.rowConvApplies(g, act: act), "\(g)", line: line)
        var rng = SeededRandom(seed: UInt64(inC * 7 + outC * 3 + h))
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 - 1 } }
        let x = random(inC * h * w), wt = random(outC * inC * k * k), b = random(outC)
        let want = referenceConv2d(g, x: x, w: wt, b: b, act: act)
        let packed = wt.withUnsafeBufferPointer { RowConvPacked(g, w: $0.baseAddress!, parts: threads) }
        XCTAssertEqual(packed.parts.map(\.n).reduce(0, +), outC, line: line)
        let got = fastConv2d(g, x: x, w: wt, b: b, act: act, threads: threads, rowConvPacked: packed)
        XCTAssertLessThanOrEqual(maxAbsDiff(got, want), 2e-5 * Float(inC * k * k).squareRoot(),
                                 "\(g) \(act) threads \(threads) exact rows \(Fast.rowConvExact)", line: line)
    }

    /// The battery below on exact-width row panels (the default: `zoo_gemm_rows_acc` tiles of outW rows) and on the
    /// 8-slot panels of the 8-row tile.
    func testRowConvMatchesReference() throws {
        let saved = Fast.rowConvExact
        defer { Fast.rowConvExact = saved }
        for exact in [true, false] {
            Fast.rowConvExact = exact
            try battery()
        }
    }

    func battery() throws {
        // resnet18 layer4 shapes at reduced channel counts: 3×3 stride 1 on 7×7, 3×3 stride 2 from 14×14
        try check(inC: 64, outC: 96, h: 7, w: 7, k: 3, stride: 1, pad: 1, act: .relu, threads: 2)
        try check(inC: 32, outC: 64, h: 14, w: 14, k: 3, stride: 2, pad: 1, act: .none, threads: 2)
        // K across several KC blocks with a channel split between blocks; outC off the 16 grid; one and three workers
        try check(inC: 100, outC: 70, h: 7, w: 7, k: 3, stride: 1, pad: 1, act: .clip(-0.5, 0.5), threads: 3)
        try check(inC: 30, outC: 17, h: 8, w: 6, k: 3, stride: 1, pad: 1, act: .relu, threads: 1)
        // 8-wide rows (no padding slot), odd heights, stride 2 from odd sizes, dilation, a 5×5 kernel, no padding
        try check(inC: 40, outC: 48, h: 11, w: 8, k: 3, stride: 1, pad: 1, act: .none, threads: 2)
        // 5-wide rows (the 5-row tile), an outC under one 48-column panel
        try check(inC: 36, outC: 20, h: 6, w: 5, k: 3, stride: 1, pad: 1, act: .relu, threads: 2)
        try check(inC: 29, outC: 33, h: 15, w: 13, k: 3, stride: 2, pad: 1, act: .relu, threads: 2)
        try check(inC: 32, outC: 32, h: 9, w: 10, k: 3, stride: 1, pad: 1, dil: 2, act: .none, threads: 2)
        try check(inC: 16, outC: 20, h: 9, w: 10, k: 5, stride: 1, pad: 0, act: .relu, threads: 2)
        // staging rows longer than one vector or strides above 2 (the scalar staging): 7×7 stride 3, 7×7 dilation 2
        try check(inC: 8, outC: 24, h: 22, w: 22, k: 7, stride: 3, pad: 3, act: .relu, threads: 2)
        try check(inC: 8, outC: 16, h: 18, w: 19, k: 7, stride: 1, pad: 0, dil: 2, act: .none, threads: 2)
    }

    /// resnet18 at 96 × 168 (layer4 and its stride-2 entry at 3 × 6, where the row-panel convolution takes them) through the
    /// executor at batch 2 (batch shards: one image per worker, each a batch-1 executor sharing the packed weights), against
    /// the reference kernels.
    func testResNetThroughExecutorMatchesReference() throws {
        try XCTSkipIf(Fast.gemmLevel != 2, "the row-panel convolution needs the AVX-512 GEMM")
        let g = try Catalog.graph("resnet18", inputSize: [96, 168])
        let layer4 = Conv2dGeometry(batch: 1, inC: 512, inH: 3, inW: 6, outC: 512, outH: 3, outW: 6, kH: 3, kW: 3, strideH: 1,
                                    strideW: 1, padTop: 1, padLeft: 1, dilH: 1, dilW: 1, groups: 1)
        XCTAssertTrue(Fast.rowConvApplies(layer4, act: .relu))
        let m = EngineCatalogTests.randomizedModel(g, seed: 3)
        for batch in [2] {
            var rng = SeededRandom(seed: UInt64(batch))
            let x = Tensor(shape: [batch] + g.inputShape, data: (0..<batch * g.inputShape.reduce(1, *)).map { _ in rng.nextNormal() })
            let ref = try Executor(model: m, kernels: .reference, threads: 1).forward(x)
            let fast = try Executor(model: m, kernels: .fast, threads: 2).forward(x)
            let err = try XCTUnwrap(EngineOpTests.relativeError(fast, ref))
            XCTAssertLessThanOrEqual(err, 1e-4, "resnet18 96×168 batch \(batch)")
        }
    }

    func testRowConvTakesNarrowSingleImagesOnly() throws {
        try XCTSkipIf(Fast.gemmLevel != 2, "the row-panel convolution needs the AVX-512 GEMM")
        func geo(batch: Int = 1, inC: Int = 64, hw: Int = 7, k: Int = 3) -> Conv2dGeometry {
            Conv2dGeometry(batch: batch, inC: inC, inH: hw, inW: hw, outC: 64, outH: hw, outW: hw, kH: k, kW: k, strideH: 1,
                           strideW: 1, padTop: k / 2, padLeft: k / 2, dilH: 1, dilW: 1, groups: 1)
        }
        XCTAssertTrue(Fast.rowConvApplies(geo(), act: .relu))
        XCTAssertFalse(Fast.rowConvApplies(geo(batch: 2), act: .relu))
        XCTAssertFalse(Fast.rowConvApplies(geo(hw: 14), act: .relu))      // 14-wide rows: Winograd
        XCTAssertFalse(Fast.rowConvApplies(geo(hw: 4), act: .relu))       // half a panel of padding
        XCTAssertFalse(Fast.rowConvApplies(geo(inC: 16), act: .relu))     // K = 144
        XCTAssertFalse(Fast.rowConvApplies(geo(k: 1), act: .relu))        // 1×1: the in-place pointwise kernel
        XCTAssertFalse(Fast.rowConvApplies(geo(), act: .sigmoid))
        let saved = Fast.rowConvOn
        defer { Fast.rowConvOn = saved }
        Fast.rowConvOn = false
        XCTAssertFalse(Fast.rowConvApplies(geo(), act: .relu))
    }
}
