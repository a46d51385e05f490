import Foundation
import XCTest
@testable import Zoo
import CZooKernels

/// The batch-1 row-band split (`Fast.rowBands`): each kernel that takes it, against the plain reference, with bands on
/// and off; and that the bands are actually taken where they should be.
final class RowBandTests: XCTestCase {
    var rng = SeededRandom(seed: 0xBA4D)
    func random(_ n: Int) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 - 1 } }

    override func setUpWithError() throws {
        try XCTSkipIf(Fast.spatialParts < 2, "one core: no row bands")
    }

    /// Runs `body` with bands on, then off (restoring the setting).
    func bothWays(_ body: (Bool) throws -> Void) rethrows {
        let saved = Fast.rowBandsMode
        defer { Fast.rowBandsMode = saved }
        for on in [true, false] { Fast.rowBands = on; try body(on) }
    }

    /// Whole catalog models at batch 1 (fast kernels, 2 threads) with bands forced on and off, against the reference
    /// kernels: the executor hands bands from layer to layer (a band-split convolution, then max pooling or the residual
    /// add in the same bands).
    func testCatalogModelsWithBandsMatchReference() throws {
        for (name, size) in [("resnet18", [64, 60]), ("vgg11", [32]), ("googlenet", [64])] {
            let g = try Catalog.graph(name, inputSize: size)
            let m = EngineCatalogTests.randomizedModel(g, seed: 5)
            var rng = SeededRandom(seed: 9)
            let x = Tensor(shape: [1] + g.inputShape, data: (0..<g.inputShape.reduce(1, *)).map { _ in rng.nextNormal() })
            let ref = try Executor(model: m, kernels: .reference, threads: 1).forward(x)
            try bothWays { on in
                let fast = try Executor(model: m, kernels: .fast, threads: Fast.spatialParts).forward(x)
                let err = try XCTUnwrap(EngineOpTests.relativeError(fast, ref))
                XCTAssertLessThanOrEqual(err, 1e-4, "\(name) bands \(on)")
            }
        }
    }

    /// The placement probe runs on the pool's threads and measures a plausible round trip (a cache line between two
    /// cores: tens to hundreds of ns; a pool that never handed the flag over would hang, one that did not wait would read ~0).
    func testPlacementProbe() throws {
        let ns = try XCTUnwrap(WorkerPool.shared.roundTripNs(rounds: 2000))
        print("pool round trip \(ns) ns, probe \(zoo_core_roundtrip_ns(20_000)) ns")
        XCTAssertGreaterThan(ns, 5)
        XCTAssertLessThan(ns, 100_000)
        let saved = Fast.rowBandsMode
        defer { Fast.rowBandsMode = saved }
        Fast.rowBandsMode = .auto
        WorkerPool.shared.refreshPlacement(interval: 0)
        XCTAssertEqual(Fast.rowBands, WorkerPool.shared.placementDistant)
        Fast.rowBandsMode = .off
        XCTAssertFalse(Fast.rowBands)
    }

    /// The CPU family that picks the Winograd band limit agrees with the kernel's /proc/cpuinfo.
    func testCPUFamilyMatchesProcCpuinfo() throws {
        let info = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let line = try XCTUnwrap(info.split(separator: "\n").first { $0.hasPrefix("cpu family") })
        let family = try XCTUnwrap(Int(line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)))
        XCTAssertEqual(Int(zoo_cpu_family()), family)
    }

    func testWinogradBandsMatchReference() {
        let t = Fast.spatialParts
        let savedTile = Fast.winogradTileOverride, savedChunk = Fast.winogradBandChunkFloats, savedC = Fast.winogradCTransforms
        defer { Fast.winogradTileOverride = savedTile; Fast.winogradBandChunkFloats = savedChunk; Fast.winogradCTransforms = savedC }
        // (inC, outC, h, w, tile, band chunk budget): one chunk per band; several (a tiny budget); the transposed products of
        // few-tile chunks; odd sizes whose last tile row and column are partial.
        let cases: [(Int, Int, Int, Int, Int, Int)] = [
            (16, 16, 16, 16, 4, 200_000), (32, 24, 15, 13, 4, 1), (16, 40, 16, 9, 2, 1),
            (24, 16, 8, 70, 2, 200_000), (64, 32, 12, 12, 2, 3000),
            // bands that start and end inside a tile row: 7 × 7 tiles (24 and 25), with chunks of one row's worth of tiles
            (16, 16, 28, 28, 4, 200_000), (16, 24, 14, 14, 2, 1), (20, 16, 27, 25, 4, 1), (32, 64, 7, 7, 2, 200_000),
        ]
        for c in [true, false] where c == false || zoo_kernels_simd() != 0 {
            Fast.winogradCTransforms = c
            for (inC, outC, h, w, tile, budget) in cases {
                Fast.winogradTileOverride = tile
                Fast.winogradBandChunkFloats = budget
                let g = Conv2dGeometry(batch: 1, inC: inC, inH: h, inW: w, outC: outC, outH: h, outW: w, kH: 3, kW: 3,
                                       strideH: 1, strideW: 1, padTop: 1, padLeft: 1, dilH: 1, dilW: 1, groups: 1)
                let x = random(inC * h * w), wt = random(outC * inC * 9), b = random(outC)
                var want = [Float](repeating: 0, count: outC * h * w)
                Reference.conv2d(g, x: x, w: wt, b: b, y: &want)
                want = want.map { max($0, 0) }
                bothWays { on in
                    XCTAssertEqual(Fast.winogradSpatialSplit(g, tile: tile, threads: t) != nil, on, "\(g)")
                    for cache in [ConvWeightCache(), nil] {
                        var got = [Float](repeating: .nan, count: want.count)
                        var scratch = [Float](repeating: .nan, count: Fast.conv2dScratch(g))
                        Fast.conv2d(g, x: x, w: wt, b: b, act: .relu, y: &got, scratch: &scratch, threads: t, weightCache: cache)
                        let worst = zip(got, want).map { abs($0 - $1) }.max()!
                        XCTAssertLessThanOrEqual(worst, 1e-4, "bands \(on) C \(c) cache \(cache != nil) F(\(tile)) \(g)")
                    }
                }
            }
        }
        // Not at batch 2.
        Fast.winogradTileOverride = 4
        let g2 = Conv2dGeometry(batch: 2, inC: 16, inH: 28, inW: 28, outC: 16, outH: 28, outW: 28, kH: 3, kW: 3,
                                strideH: 1, strideW: 1, padTop: 1, padLeft: 1, dilH: 1, dilW: 1, groups: 1)
        XCTAssertNil(Fast.winogradSpatialSplit(g2, tile: 4, threads: t))
    }

    func testMaxPoolBandsMatchReference() {
        let t = Fast.spatialParts
        for (size, attrs) in [([9, 11], Pool2dAttrs(kernel: [3, 3], stride: [2, 2], padding: Padding2D(1))),
                              ([16, 16], Pool2dAttrs(kernel: [2, 2])), ([13, 20], Pool2dAttrs(kernel: [3, 3], stride: [1, 1])),
                              ([57, 70], Pool2dAttrs(kernel: [3, 3], stride: [2, 2], padding: Padding2D(1)))] {
            let g = Pool2dGeometry(pool: attrs, input: [1, 5] + size)
            let x = random(5 * size[0] * size[1])
            var want = [Float](repeating: 0, count: 5 * g.outH * g.outW)
            Reference.maxPool2d(g, x: x, y: &want)
            bothWays { on in
                XCTAssertEqual(Fast.bandParts(batch: g.batch, threads: t), on ? t : 0)
                var got = [Float](repeating: .nan, count: want.count)
                XCTAssertEqual(Fast.maxPool2d(g, x: x, y: &got, threads: t, bands: true), on)
                XCTAssertEqual(got, want, "bands \(on) \(size) \(attrs)")
            }
        }
    }

    func testAddBandsMatchReference() {
        let t = Fast.spatialParts
        for shape in [[1, 3, 9, 7], [1, 16, 56, 56]] {
            let n = shape.reduce(1, *)
            let a = random(n), b = random(n)
            let g = BroadcastGeometry(shape, shape)!
            var want = [Float](repeating: 0, count: n)
            Reference.binary(g, multiply: false, a: a, b: b, y: &want)
            want = want.map { max($0, 0) }
            bothWays { on in
                var got = [Float](repeating: .nan, count: n)
                XCTAssertEqual(Fast.binary(g, multiply: false, a: a, b: b, act: .relu, y: &got, threads: t, bands: true), on)
                XCTAssertEqual(got, want, "bands \(on) \(shape)")
            }
        }
    }

    func testStridedConvStagingBandsMatchReference() {
        let t = Fast.spatialParts
        let savedBlock = Fast.convBlockFloats
        defer { Fast.convBlockFloats = savedBlock }
        // Blocks of panels (im2col and GEMM per block), and whole-image im2col (staged in bands) then one GEMM.
        for blockFloats in [2000, 1 << 30] {
        Fast.convBlockFloats = blockFloats
        // The stem of resnet18 at a smaller size (7×7 stride 2), a 3×3 and a 1×1 stride-2 convolution.
        for (inC, outC, size, k, pad) in [(3, 8, [40, 38], 7, 3), (8, 16, [21, 18], 3, 1), (16, 64, [30, 28], 1, 0)] {
            let a = Conv2dAttrs(inChannels: inC, outChannels: outC, kernel: [k, k], stride: [2, 2], padding: Padding2D(pad))
            let g = Conv2dGeometry(conv: a, input: [1, inC] + size)
            let x = random(inC * g.inPlane), w = random(outC * inC * k * k), b = random(outC)
            var want = [Float](repeating: 0, count: outC * g.outPlane)
            Reference.conv2d(g, x: x, w: w, b: b, y: &want)
            let pm = PackedMatrix(m: outC, k: inC * k * k, a: w, lda: inC * k * k)
            bothWays { on in
                var got = [Float](repeating: .nan, count: want.count)
                var scratch = [Float](repeating: .nan, count: Fast.conv2dScratch(g))
                Fast.conv2d(g, x: x, w: w, b: b, act: .none, y: &got, scratch: &scratch, threads: t, packed: pm)
                let worst = zip(got, want).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(worst, 1e-4, "bands \(on) block \(blockFloats) \(g)")
            }
        }
        }
    }

    /// Image stems on the tap-row kernel write row bands too (band t on worker t, `Fast.band`'s rows: an odd output
    /// height splits 10 / 11), so that max pooling and the residual adds after them stay in bands.
    func testTapStemBandsMatchReference() throws {
        try XCTSkipIf(zoo_kernels_simd() == 0, "the tap-row kernel needs AVX-512F or AVX2")
        let t = Fast.spatialParts
        for (size, act) in [([41, 38], Activation.relu), ([64, 60], Activation.none)] {
            let a = Conv2dAttrs(inChannels: 3, outChannels: 16, kernel: [7, 7], stride: [2, 2], padding: Padding2D(3))
            let g = Conv2dGeometry(conv: a, input: [1, 3] + size)
            XCTAssertTrue(Fast.tapConvApplies(g, act: act))
            let x = random(3 * g.inPlane), w = random(16 * 3 * 49), b = random(16)
            let want = referenceConv2d(g, x: x, w: w, b: b, act: act)
            let packed = PointwisePacked(m: 16, k: 3 * 49, w: w)
            bothWays { on in
                XCTAssertEqual(Fast.conv2dWritesBands(g, act: act, threads: t), on && t > 1)
                let got = fastConv2d(g, x: x, w: w, b: b, act: act, threads: t, pointwisePacked: packed)
                XCTAssertLessThanOrEqual(maxAbsDiff(got, want), 1e-4, "bands \(on) \(size)")
            }
        }
    }
}
