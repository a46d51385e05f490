import Foundation
import XCTest
@testable import Zoo
import CZooKernels

/// Winograd F(2×2,3×3) and F(4×4,3×3) (fast kernels) against the plain reference convolution, and the bench figures.
final class WinogradBenchTests: XCTestCase {
    func random(_ n: Int, _ rng: inout SeededRandom) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 - 1 } }

    /// Runs `body` once with each tile size forced (F(2×2) and F(4×4)) and once with the tile chosen by geometry, each
    /// with the AVX-512 C tile transforms (when the CPU has them) and with the Swift SIMD4 transforms.
    func eachTile(_ body: (Int) -> Void) {
        let saved = Fast.winogradTileOverride, savedC = Fast.winogradCTransforms
        defer { Fast.winogradTileOverride = saved; Fast.winogradCTransforms = savedC }
        for c in [true, false] {
            Fast.winogradCTransforms = c
            for tile in [2, 4, 0] {
                Fast.winogradTileOverride = tile
                body(tile)
            }
        }
    }

    func check(batch: Int, inC: Int, outC: Int, h: Int, w: Int, pad: Int, bias: Bool, act: Activation, threads: Int,
               cache: ConvWeightCache? = nil, line: UInt = #line) {
        let oh = h + 2 * pad - 2, ow = w + 2 * pad - 2
        let g = Conv2dGeometry(batch: batch, inC: inC, inH: h, inW: w, outC: outC, outH: oh, outW: ow, kH: 3, kW: 3,
                               strideH: 1, strideW: 1, padTop: pad, padLeft: pad, dilH: 1, dilW: 1, groups: 1)
        XCTAssertTrue(Fast.winogradApplies(g), line: line)
        var rng = SeededRandom(seed: UInt64(inC * 1000 + h))
        let x = random(batch * inC * h * w, &rng), wt = random(outC * inC * 9, &rng), b = random(outC, &rng)
        var want = [Float](repeating: 0, count: batch * outC * oh * ow), got = want, pre = want
        var scratch = [Float](repeating: .nan, count: Fast.conv2dScratch(g))
        x.withUnsafeBufferPointer { xp in wt.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in
            Reference.conv2d(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bias ? bp.baseAddress! : nil, y: &want)
            pre = want
            Reference.activation(act, count: want.count, x: pre, y: &want)
            scratch.withUnsafeMutableBufferPointer { sp in
                Fast.conv2d(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bias ? bp.baseAddress! : nil, act: act, y: &got,
                            scratch: sp.baseAddress!, threads: threads, weightCache: cache)
            }
        } } }
        // The error is relative to the convolution's own scale (before the activation): a sigmoid squeezes outputs
        // into (0, 1) but not the rounding of the pre-activation sums (on an AVX-512 Xeon, F(4×4) 16→16 9×70 with a
        // sigmoid was 1.16e-5 off against a bound taken from the squeezed outputs).
        let maxAbs = pre.map(abs).max()!
        let maxDiff = zip(got, want).map { abs($0 - $1) }.max()!
        XCTAssertLessThanOrEqual(maxDiff, 1e-5 * Swift.max(1, maxAbs),
                                 "F(\(Fast.winogradTile(g))) N\(batch) C\(inC)→\(outC) \(h)×\(w) pad \(pad)", line: line)
    }

    func testWinogradMatchesReferenceOnOddEvenSizesPaddingAndBatch() {
        forEachSIMDLevel { _ in
            eachTile { _ in
                check(batch: 1, inC: 16, outC: 16, h: 8, w: 8, pad: 1, bias: false, act: .none, threads: 1)
                check(batch: 3, inC: 17, outC: 20, h: 7, w: 9, pad: 1, bias: true, act: .relu, threads: 2)
                check(batch: 2, inC: 32, outC: 16, h: 5, w: 6, pad: 0, bias: true, act: .clip(0, 6), threads: 2)
                check(batch: 1, inC: 16, outC: 24, h: 3, w: 4, pad: 2, bias: false, act: .relu, threads: 2)
                check(batch: 2, inC: 64, outC: 32, h: 14, w: 11, pad: 1, bias: true, act: .none, threads: 2)
                check(batch: 1, inC: 256, outC: 16, h: 10, w: 13, pad: 1, bias: true, act: .relu, threads: 2)
                // Packed GEMM: inC 300 spans two KC blocks, outC 20 a partial MR panel, 33 tiles a partial NR panel.
                check(batch: 1, inC: 300, outC: 20, h: 11, w: 21, pad: 1, bias: true, act: .relu, threads: 2, cache: ConvWeightCache())
                check(batch: 2, inC: 17, outC: 40, h: 30, w: 29, pad: 1, bias: false, act: .none, threads: 1, cache: ConvWeightCache())
                // Rows of more than 16 tiles (several 16-tile blocks in the C transforms, the last one partial), runs split
                // across packed panels, an activation the C store does not apply itself.
                check(batch: 1, inC: 16, outC: 16, h: 9, w: 70, pad: 1, bias: true, act: .sigmoid, threads: 2)
                check(batch: 1, inC: 16, outC: 16, h: 10, w: 131, pad: 0, bias: true, act: .clip(-1, 6), threads: 2, cache: ConvWeightCache())
            }
            // The geometry picks the tile by the cost model α²·max(tiles, T0): T0 = 33 with the AVX-512 GEMM kernel, 16
            // below it (where F(4×4) wins from 16 of its tiles on).
            func geo(_ s: Int, batch: Int = 1) -> Conv2dGeometry {
                Conv2dGeometry(batch: batch, inC: 16, inH: s, inW: s, outC: 16, outH: s, outW: s, kH: 3, kW: 3,
                               strideH: 1, strideW: 1, padTop: 1, padLeft: 1, dilH: 1, dilW: 1, groups: 1)
            }
            let wide = Fast.gemmLevel >= 2
            XCTAssertEqual(Fast.winogradTile(geo(56)), 4)
            XCTAssertEqual(Fast.winogradTile(geo(28)), 4)
            XCTAssertEqual(Fast.winogradTile(geo(14)), wide ? 2 : 4)   // 16 F(4×4) tiles, 49 F(2×2) ones
            XCTAssertEqual(Fast.winogradTile(geo(12)), 2)
            XCTAssertEqual(Fast.winogradTile(geo(7)), 2)
            XCTAssertEqual(Fast.winogradTile(geo(7, batch: 3)), 2)
            XCTAssertEqual(Fast.winogradTile(geo(7, batch: 4)), wide ? 2 : 4)
            XCTAssertEqual(Fast.winogradTile(geo(7, batch: 8)), 4)
            XCTAssertEqual(Fast.winogradTile(geo(14, batch: 2)), 4)
            // Chunks: L2-sized where the transformed weights are small (resnet18 b8 56², 64 channels: 64·36 weight floats
            // per row of 14 tiles' 64·128·36 V and M), one large chunk where re-streaming them per chunk would cost more
            // (b8 7², 512 channels: 9.4 M weight floats).
            func rgeo(_ s: Int, _ c: Int, batch: Int) -> Conv2dGeometry {
                Conv2dGeometry(batch: batch, inC: c, inH: s, inW: s, outC: c, outH: s, outW: s, kH: 3, kW: 3,
                               strideH: 1, strideW: 1, padTop: 1, padLeft: 1, dilH: 1, dilW: 1, groups: 1)
            }
            let c56 = Fast.winogradChunk(rgeo(56, 64, batch: 8), tile: 4)
            XCTAssertEqual(c56.rows, 112)
            XCTAssertLessThanOrEqual(c56.chunkRows * 36 * 128 * 14, Fast.winogradChunkFloats)
            XCTAssertGreaterThan(c56.chunkRows, 1)
            let c7 = Fast.winogradChunk(rgeo(7, 512, batch: 8), tile: 4)
            XCTAssertEqual(c7.rows, 16)
            XCTAssertEqual(c7.chunkRows, 16)
            // Several chunks of whole tile rows: 3 images × 3 tile rows of 4×4 tiles (F(4×4), 12×12 outputs); a budget
            // of 2 rows' V and M makes 5 chunks, the last one partial.
            let saved = Fast.winogradChunkFloats
            Fast.winogradChunkFloats = 36 * 40 * 3 * 2
            defer { Fast.winogradChunkFloats = saved }
            let g12 = Conv2dGeometry(batch: 3, inC: 16, inH: 12, inW: 12, outC: 24, outH: 12, outW: 12, kH: 3, kW: 3,
                                     strideH: 1, strideW: 1, padTop: 1, padLeft: 1, dilH: 1, dilW: 1, groups: 1)
            XCTAssertEqual(Fast.winogradChunk(g12, tile: 4).rows, 9)
            XCTAssertEqual(Fast.winogradChunk(g12, tile: 4).chunkRows, 2)
            eachTile { _ in check(batch: 3, inC: 16, outC: 24, h: 12, w: 12, pad: 1, bias: true, act: .none, threads: 2) }
            // The same through the caller-owned cache (zoo's packed GEMM, V in packed panels; the last chunk's panel padded).
            eachTile { _ in check(batch: 3, inC: 16, outC: 24, h: 12, w: 12, pad: 1, bias: true, act: .none, threads: 2, cache: ConvWeightCache()) }
            // The caller-owned weight cache gives the same result as the hashed one.
            eachTile { _ in check(batch: 2, inC: 32, outC: 24, h: 9, w: 10, pad: 1, bias: true, act: .relu, threads: 2, cache: ConvWeightCache()) }
        }
    }

    /// The C weight transform (`zoo_wino_weights`, AVX-512F 8 kernels per step with scalar tails, and its plain build)
    /// equals the Swift reference bit for bit: F(2×2) and F(4×4), channel counts around the 8-lane blocks, U and Uᵀ
    /// layouts, skewed planes; the packed caches built from it give the same convolution as the Swift-built ones.
    func testWinogradWeightTransformMatchesSwift() {
        var rng = SeededRandom(seed: 41)
        let saved = Fast.winogradCWeights
        defer { Fast.winogradCWeights = saved }
        for (outC, inC) in [(1, 1), (8, 8), (9, 17), (16, 3), (24, 40), (5, 64)] {
            let w = random(outC * inC * 9, &rng)
            for m in [2, 4] {
                let a2 = (m + 2) * (m + 2), plane = outC * inC
                let ref = w.withUnsafeBufferPointer { Fast.winogradTransformWeightsSwift($0.baseAddress!, outC: outC, inC: inC, tile: m) }
                for transposed in [false, true] { for skewed in [false, true] {
                    Fast.winogradCWeights = true
                    let u = w.withUnsafeBufferPointer {
                        Fast.winogradTransformWeights($0.baseAddress!, outC: outC, inC: inC, tile: m, threads: 2, transposed: transposed, skewed: skewed)
                    }
                    let stride = skewed ? Fast.winogradSkewedPlane(plane) : plane
                    var bad = 0
                    for c in 0..<a2 { for oc in 0..<outC { for ic in 0..<inC {
                        let got = u.p[c * stride + (transposed ? ic * outC + oc : oc * inC + ic)]
                        if got.bitPattern != ref.p[c * plane + oc * inC + ic].bitPattern { bad += 1 }
                    } } }
                    XCTAssertEqual(bad, 0, "F(\(m)) \(outC)×\(inC) transposed \(transposed) skewed \(skewed)")
                } }
                var plain = [Float](repeating: .nan, count: a2 * plane)
                w.withUnsafeBufferPointer { wp in plain.withUnsafeMutableBufferPointer {
                    zoo_wino_weights(wp.baseAddress!, Int32(inC), Int32(m), $0.baseAddress!, plane, inC, 1, 0, Int32(outC), 1)
                } }
                XCTAssertEqual(plain.map(\.bitPattern), (0..<(a2 * plane)).map { ref.p[$0].bitPattern }, "plain F(\(m)) \(outC)×\(inC)")
            }
        }
        // Whole convolutions through fresh caches (packed U and, for few tiles, packed Uᵀ), C- and Swift-built.
        for c in [true, false] {
            Fast.winogradCWeights = c
            eachTile { _ in
                check(batch: 2, inC: 24, outC: 40, h: 6, w: 6, pad: 1, bias: true, act: .relu, threads: 2, cache: ConvWeightCache())
                check(batch: 2, inC: 24, outC: 40, h: 16, w: 16, pad: 1, bias: true, act: .none, threads: 2, cache: ConvWeightCache())
                check(batch: 1, inC: 17, outC: 20, h: 3, w: 3, pad: 1, bias: false, act: .none, threads: 2, cache: ConvWeightCache())
            }
        }
    }

    func testWinogradSeesWeightsChangedInPlace() {
        let g = Conv2dGeometry(batch: 1, inC: 16, inH: 6, inW: 6, outC: 16, outH: 6, outW: 6, kH: 3, kW: 3,
                               strideH: 1, strideW: 1, padTop: 1, padLeft: 1, dilH: 1, dilW: 1, groups: 1)
        var rng = SeededRandom(seed: 9)
        let x = random(16 * 36, &rng)
        var wt = random(16 * 16 * 9, &rng)
        eachTile { tile in
        var scratch = [Float](repeating: 0, count: Fast.conv2dScratch(g))
        for round in 0..<2 {
            var want = [Float](repeating: 0, count: 16 * 36), got = want
            wt.withUnsafeMutableBufferPointer { wp in
                if round == 1 { wp[100] += 1 }
                Reference.conv2d(g, x: x, w: wp.baseAddress!, b: nil, y: &want)
                Fast.conv2d(g, x: x, w: wp.baseAddress!, b: nil, act: .none, y: &got, scratch: &scratch, threads: 2)
            }
            // A stale cache would be off by about 1 (one weight moved by 1); F(4×4)'s rounding is a few 1e-6 of max|y|.
            XCTAssertLessThanOrEqual(zip(got, want).map { abs($0 - $1) }.max()!, 1e-5 * Swift.max(1, want.map(abs).max()!),
                                     "tile \(tile) round \(round)")
            if round == 1 { wt[100] -= 1 }
        }
        }
    }

    func testOneRowLinearBySgemvMatchesReference() {
        // 300 outputs over 2 threads × 4 parts (the last part shorter), 257 inputs: the sgemv path (≥ 2^16 weights).
        var rng = SeededRandom(seed: 5)
        let inF = 257, outF = 300
        let x = random(inF, &rng), w = random(inF * outF, &rng), b = random(outF, &rng)
        for act in [Activation.none, .relu] {
            var want = [Float](repeating: 0, count: outF), got = [Float](repeating: .nan, count: outF)
            Reference.linear(rows: 1, inFeatures: inF, outFeatures: outF, x: x, w: w, b: b, y: &want)
            let pre = want
            Reference.activation(act, count: outF, x: pre, y: &want)
            Fast.linear(rows: 1, inFeatures: inF, outFeatures: outF, x: x, w: w, b: b, act: act, y: &got, threads: 2)
            let maxAbs = want.map(abs).max()!
            XCTAssertLessThanOrEqual(zip(got, want).map { abs($0 - $1) }.max()!, 1e-5 * Swift.max(1, maxAbs), "\(act)")
        }
    }

    func testBenchStatsAndFigures() throws {
        let s = Bench.stats([5, 1, 4, 2, 3, 10, 6, 7, 8, 9])
        XCTAssertEqual(s.median, 5.5)
        XCTAssertEqual(s.min, 1)
        XCTAssertEqual(s.p90, 9)
        let g = try Catalog.graph("lenet")
        let m = Model.initialized(graph: g)
        let r = try Bench.run(model: m, config: BenchConfig(batch: 4, threads: 1, iterations: 3, warmup: 1, measurePeak: false))
        let multAdds = try g.inferLayers(batch: 4).reduce(0) { $0 + $1.multAdds }
        XCTAssertEqual(r.flopsPerIteration, 2 * Double(multAdds))
        XCTAssertEqual(r.times.count, 3)
        XCTAssertEqual(r.imagesPerSecond, 4 / (r.medianMs / 1000), accuracy: 1e-6)
        let t = try Bench.run(model: m, config: BenchConfig(batch: 4, threads: 1, iterations: 1, warmup: 0, train: true, freezeBackbone: true,
                                                          measurePeak: false))
        XCTAssertEqual(t.flopsPerIteration, 6 * Double(multAdds))
        XCTAssertEqual(t.mode, "finetune")
        XCTAssertEqual(Bench.backboneParameters(g), Set(g.parameterSpecs.map(\.key)).subtracting(["11.weight", "11.bias"]))
    }
}
