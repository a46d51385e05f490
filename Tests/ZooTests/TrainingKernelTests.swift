import Foundation
import XCTest
import CZooKernels
@testable import Zoo

/// The training engine's parallel/SIMD backward kernels against their plain single-threaded references.
final class TrainingKernelTests: XCTestCase {

    func testConvBackwardMatchesReference() {
        forEachSIMDLevel { _ in
            var rng = SeededRandom(seed: 7)
            // (n, c, h, w, o, k, stride, pad, dilation, groups, bias)
            let cases: [(Int, Int, Int, Int, Int, [Int], [Int], Padding2D, [Int], Int, Bool)] = [
                (3, 4, 9, 7, 6, [3, 3], [1, 1], Padding2D(top: 1, left: 1, bottom: 1, right: 1), [1, 1], 1, true),
                (5, 6, 11, 10, 4, [5, 3], [2, 1], Padding2D(top: 2, left: 0, bottom: 1, right: 1), [1, 2], 2, true),
                (1, 3, 8, 8, 5, [1, 1], [2, 2], Padding2D(top: 0, left: 0, bottom: 0, right: 0), [1, 1], 1, false),
                // 3×3 stride 1 with ≥ 16 channels: dx by a Winograd convolution; odd sizes, pads 0..2
                (3, 16, 7, 9, 24, [3, 3], [1, 1], Padding2D(top: 1, left: 1, bottom: 1, right: 1), [1, 1], 1, false),
                (2, 17, 6, 5, 16, [3, 3], [1, 1], Padding2D(top: 0, left: 2, bottom: 2, right: 0), [1, 1], 1, true),
                // many images, small plane (several chunks per worker)
                (37, 8, 4, 4, 8, [3, 3], [1, 1], Padding2D(top: 1, left: 1, bottom: 1, right: 1), [1, 1], 1, true),
                // stride 2, rows wider than 16 outputs (SIMD gather/scatter blocks and tails): stem 7×7/2, 3×3/2, 1×1/2
                (2, 3, 40, 45, 8, [7, 7], [2, 2], Padding2D(3), [1, 1], 1, false),
                (3, 5, 9, 70, 6, [3, 3], [2, 2], Padding2D(1), [1, 1], 1, true),
                (2, 4, 6, 67, 5, [1, 1], [2, 2], Padding2D(0), [1, 1], 1, false),
            ]
            for (ci, t) in cases.enumerated() {
                let (n, c, h, w, o, k, s, p, d, grp, bias) = t
                let attrs = Conv2dAttrs(inChannels: c, outChannels: o, kernel: k, stride: s, padding: p, dilation: d, groups: grp, bias: bias)
                let g = ConvGeometry(n: n, c: c, h: h, w: w, attrs: attrs)
                let x = randoms(n * c * h * w, &rng), wt = randoms(o * (c / grp) * k[0] * k[1], &rng), dy = randoms(n * o * g.oh * g.ow, &rng)
                let ref = referenceConv2dBackward(x: x, weight: wt, dy: dy, geometry: g, hasBias: bias, needInput: true, needParams: true)
                let savedMin = trainWinogradMinTiles, savedOn = TrainFast.on, savedWhole = convBackwardWholeMax
                let savedAny = convBackwardWholeAnyKernel, savedDWMin = trainWinogradWeightMinTiles
                convBackwardWholeAnyKernel = true
                defer {
                    trainWinogradMinTiles = savedMin; TrainFast.on = savedOn; convBackwardWholeMax = savedWhole; convBackwardWholeAnyKernel = savedAny
                    trainWinogradWeightMinTiles = savedDWMin
                }
                // 0: dx (and, TrainFast on, dw) of 3×3 stride-1 cases by Winograd; 1 << 30: always by GEMM + col2im. TrainFast off: batch split and
                // portable stride-2 rows; on: whole-batch GEMMs (wholeMax large) or batch split (0) with SIMD stride-2 rows.
                let savedDirect = convDirectMinPlane
                defer { convDirectMinPlane = savedDirect }
                // direct plane 1: one GEMM per image for every case (batch split only, wholeMax 0).
                for (fast, wholeMax, directPlane) in [(false, 0, 1024), (true, 1 << 30, 1024), (true, 0, 1024), (true, 0, 1)] {
                TrainFast.on = fast; convBackwardWholeMax = wholeMax; convDirectMinPlane = directPlane
                for (threads, minTiles) in [(1, 0), (2, 0), (3, 0), (2, 1 << 30)] {
                    trainWinogradMinTiles = minTiles; trainWinogradWeightMinTiles = minTiles
                    assertConvBackwardMatches(x: x, weight: wt, dy: dy, geometry: g, hasBias: bias, threads: threads, ref: ref, label: "case \(ci)")
                }
                }
            }
        }
    }

    /// The Winograd F(2×2,3×3) weight gradient against the im2col reference: odd planes (ragged edge tiles), pads
    /// 0..2, rows wider than 16 tiles (the AVX-512 input transform's blocks and tails), several chunks per worker,
    /// 1–3 workers, the C and the Swift input transform.
    func testWinogradWeightGradientMatchesReference() {
        forEachSIMDLevel { _ in
            var rng = SeededRandom(seed: 11)
            // (n, c, h, w, o, pad top/left/bottom/right)
            let cases: [(Int, Int, Int, Int, Int, Padding2D)] = [
                (3, 16, 7, 9, 24, Padding2D(1)),
                (2, 17, 6, 5, 16, Padding2D(top: 0, left: 2, bottom: 2, right: 0)),
                (2, 16, 5, 70, 16, Padding2D(1)),
                (9, 20, 6, 6, 18, Padding2D(top: 2, left: 1, bottom: 0, right: 1)),
            ]
            let savedChunk = winogradWeightChunkFloats
            defer { winogradWeightChunkFloats = savedChunk }
            for (ci, t) in cases.enumerated() {
                let (n, c, h, w, o, p) = t
                let attrs = Conv2dAttrs(inChannels: c, outChannels: o, kernel: [3, 3], stride: [1, 1], padding: p, dilation: [1, 1], groups: 1, bias: false)
                let g = ConvGeometry(n: n, c: c, h: h, w: w, attrs: attrs)
                let x = randoms(n * c * h * w, &rng), wt = randoms(o * c * 9, &rng), dy = randoms(n * o * g.oh * g.ow, &rng)
                let ref = referenceConv2dBackward(x: x, weight: wt, dy: dy, geometry: g, hasBias: false, needInput: false, needParams: true)
                for chunkFloats in [1 << 20, 1] {   // 1: one image per chunk
                    winogradWeightChunkFloats = chunkFloats
                    for threads in [1, 2, 3] { for cT in [true, false] {
                        let dw = x.withUnsafeBufferPointer { xb in dy.withUnsafeBufferPointer { db in
                            winogradWeightGradient(x: xb.baseAddress!, dy: db.baseAddress!, geometry: g, threads: threads, cTransforms: cT)
                        } }
                        XCTAssertLessThan(maxRel(dw, ref.dw), 1e-5, "case \(ci), chunk \(chunkFloats), \(threads) threads, C \(cT)")
                    } }
                }
            }
        }
    }

    /// One row of the weight gradient's dy tile transform: the SIMD bodies (AVX-512F with masked tails, AVX2 in 8-tile
    /// steps) equal the portable loop for widths around the vector blocks, rows with and without a second row, and
    /// more tiles than the width fills (zeros); nothing past the last tile is written.
    func testWinogradGradientRowMatchesPortable() {
        forEachSIMDLevel { level in
            var rng = SeededRandom(seed: 22)
            for width in [1, 2, 3, 5, 12, 15, 16, 17, 24, 31, 32, 33, 48, 70] {
                for extraTiles in [0, 1] {
                    let tiles = (width + 1) / 2 + extraTiles, stride = tiles + 3
                    let first = randoms(width, &rng), second = randoms(width, &rng)
                    for withSecond in [true, false] {
                        var fast = [Float](repeating: 7, count: 16 * stride), plain = fast
                        first.withUnsafeBufferPointer { f in second.withUnsafeBufferPointer { s in
                            let sp = withSecond ? s.baseAddress : nil
                            fast.withUnsafeMutableBufferPointer {
                                zoo_wino_grad_row2(f.baseAddress!, sp, Int32(width), Int32(tiles), $0.baseAddress!, stride, 0)
                            }
                            plain.withUnsafeMutableBufferPointer {
                                zoo_wino_grad_row2(f.baseAddress!, sp, Int32(width), Int32(tiles), $0.baseAddress!, stride, 1)
                            }
                        } }
                        XCTAssertEqual(fast, plain, "level \(level) width \(width) tiles \(tiles) second \(withSecond)")
                    }
                }
            }
        }
    }

    /// Stride-2 row gather/scatter: the SIMD kernels (AVX-512F, or AVX2 without it) equal the portable loops bit for bit (lengths around the
    /// 16-lane blocks), odd elements of the scatter target stay untouched, nothing past the row is written.
    func testStride2RowKernelsMatchPortable() {
        forEachSIMDLevel { _ in
            var rng = SeededRandom(seed: 21)
            for n in [0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 50] {
                let src = randoms(2 * n + 3, &rng)
                var a = [Float](repeating: 9, count: n + 2), b = a
                src.withUnsafeBufferPointer { sp in
                    a.withUnsafeMutableBufferPointer { zoo_gather2(sp.baseAddress!, $0.baseAddress!, n, 1) }
                    b.withUnsafeMutableBufferPointer { zoo_gather2(sp.baseAddress!, $0.baseAddress!, n, 0) }
                }
                XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "gather n=\(n)")
                XCTAssertEqual(Array(a[..<n]), (0..<n).map { src[2 * $0] })
                XCTAssertEqual(Array(a[n...]), [9, 9])
                let s2 = randoms(n + 1, &rng), base = randoms(2 * n + 4, &rng)
                var c = base, d = base
                s2.withUnsafeBufferPointer { sp in
                    c.withUnsafeMutableBufferPointer { zoo_scatter_add2(sp.baseAddress!, $0.baseAddress!, n, 1) }
                    d.withUnsafeMutableBufferPointer { zoo_scatter_add2(sp.baseAddress!, $0.baseAddress!, n, 0) }
                }
                XCTAssertEqual(c.map(\.bitPattern), d.map(\.bitPattern), "scatter n=\(n)")
                for i in 0..<base.count {
                    let expect = i % 2 == 0 && i / 2 < n ? base[i] + s2[i / 2] : base[i]
                    XCTAssertEqual(c[i].bitPattern, expect.bitPattern, "scatter n=\(n) element \(i)")
                }
            }
        }
    }

    /// Max-pool backward by comparing with the output equals the arg-max scatter (ties, NaN, padding, ceil mode,
    /// dilation, planes over 1–3 workers), bit for bit.
    func testMaxPoolBackwardByValueMatchesArgmax() {
        forEachSIMDLevel { _ in
            var rng = SeededRandom(seed: 23)
            let savedThreads = TrainingThreads.count
            defer { TrainingThreads.count = savedThreads }
            for (shp, at) in [([2, 3, 9, 8], Pool2dAttrs(kernel: [3, 3], stride: [2, 2], padding: Padding2D(1))),
                              ([1, 2, 7, 7], Pool2dAttrs(kernel: [3, 2], stride: [2, 3], padding: Padding2D(top: 1, left: 0, bottom: 1, right: 1), ceilMode: true)),
                              ([2, 2, 6, 6], Pool2dAttrs(kernel: [2, 2], dilation: [2, 1])),
                              ([3, 4, 20, 37], Pool2dAttrs(kernel: [3, 3], stride: [2, 2], padding: Padding2D(1))),
                              ([2, 3, 5, 5], Pool2dAttrs(kernel: [5, 5])),
                              ([2, 2, 6, 40], Pool2dAttrs(kernel: [3, 3], stride: [1, 1], padding: Padding2D(1))),
                              ([1, 2, 9, 75], Pool2dAttrs(kernel: [2, 3], stride: [2, 2], padding: Padding2D(top: 0, left: 1, bottom: 0, right: 1), dilation: [2, 1]))] {
                let g = Pool2dGeometry(pool: at, input: shp)
                var x = randoms(shp.reduce(1, *), &rng).map { ($0 * 4).rounded() / 4 }   // many ties
                x[5] = .nan; x[17] = x[16]; x[x.count - 1] = .nan; x[x.count - 2] = .nan
                let savedOn = TrainFast.on
                defer { TrainFast.on = savedOn }
                for (threads, fast) in [(1, false), (1, true), (2, true), (3, false)] {
                    TrainingThreads.count = threads
                    TrainFast.on = fast   // AVX-512 interior rows or the portable loop
                    let (y, am) = SharedForward.maxPool2dWithArgmax(g, x)
                    XCTAssertEqual(y.map(\.bitPattern), SharedForward.maxPool2d(g, x).map(\.bitPattern))
                    let dy = randoms(y.count, &rng)
                    let ref = trainMaxPoolBackward(dy: dy, argmax: am, inputCount: x.count)
                    let got = trainMaxPoolBackwardByValue(x: x, y: y, dy: dy, geometry: g, threads: threads)
                    XCTAssertEqual(got.map(\.bitPattern), ref.map(\.bitPattern), "\(shp) \(threads) threads")
                }
            }
        }
    }

    func testBatchedConvForwardMatchesReference() {
        var rng = SeededRandom(seed: 11)
        let cases: [(Int, Int, Int, Int, Int, [Int], [Int], Padding2D, [Int], Int, Bool)] = [
            (5, 1, 28, 28, 6, [5, 5], [1, 1], Padding2D(2), [1, 1], 1, true),            // LeNet conv 1
            (37, 6, 14, 14, 16, [5, 5], [1, 1], Padding2D(0), [1, 1], 1, true),          // LeNet conv 2, several chunks
            (3, 6, 11, 10, 4, [5, 3], [2, 1], Padding2D(top: 2, left: 0, bottom: 1, right: 1), [1, 2], 2, false),
            (4, 3, 19, 17, 8, [7, 7], [2, 2], Padding2D(3), [1, 1], 1, false),           // ResNet stem
            (3, 16, 5, 6, 16, [3, 3], [1, 1], Padding2D(1), [1, 1], 1, true),            // Winograd-eligible, few tiles
            (2, 3, 21, 70, 8, [7, 7], [2, 2], Padding2D(3), [1, 1], 1, true),            // stem, rows > 16 outputs
        ]
        // (the stems take the batched path only with trainTapStems off; SmallConvTests covers them on the tap-row kernel)
        let savedTap = trainTapStems
        trainTapStems = false
        defer { trainTapStems = savedTap }
        for (ci, t) in cases.enumerated() {
            let (n, c, h, w, o, k, st, p, d, grp, bias) = t
            let attrs = Conv2dAttrs(inChannels: c, outChannels: o, kernel: k, stride: st, padding: p, dilation: d, groups: grp, bias: bias)
            let g = ConvGeometry(n: n, c: c, h: h, w: w, attrs: attrs)
            XCTAssertTrue(trainConvForwardBatched(g, threads: 2), "case \(ci)")
            let x = randoms(n * c * h * w, &rng), wt = randoms(o * (c / grp) * k[0] * k[1], &rng), b = bias ? randoms(o, &rng) : nil
            let geo = Conv2dGeometry(conv: attrs, input: [n, c, h, w])
            var ref = [Float](repeating: 0, count: n * o * g.oh * g.ow)
            x.withUnsafeBufferPointer { xp in wt.withUnsafeBufferPointer { wp in ref.withUnsafeMutableBufferPointer { rp in
                SharedForward.withOptional(b) { bp in
                    Reference.conv2d(geo, x: xp.baseAddress!, w: wp.baseAddress!, b: bp, y: rp.baseAddress!)
                }
            } } }
            let savedOn = TrainFast.on, savedDirect = convDirectMinPlane
            defer { TrainFast.on = savedOn; convDirectMinPlane = savedDirect }
            for (fast, directPlane) in [(false, 1024), (true, 1024), (true, 1)] {
                TrainFast.on = fast; convDirectMinPlane = directPlane
                for threads in [1, 2, 3] {
                    let y = trainConv2dForward(x: x, weight: wt, bias: b, geometry: g, threads: threads)
                    XCTAssertLessThan(maxRel(y, ref), 1e-5, "case \(ci), \(threads) threads, fast \(fast)")
                }
            }
        }
        // LeNet's 2×2 average pooling fast path equals the inference kernel (odd sizes leave a row/column out).
        for shape in [[3, 6, 28, 28], [2, 2, 7, 37]] {
            let geo = Pool2dGeometry(pool: Pool2dAttrs(kernel: [2, 2]), input: shape)
            let x = randoms(shape.reduce(1, *), &rng)
            var ref = [Float](repeating: 0, count: geo.planes * geo.outH * geo.outW)
            x.withUnsafeBufferPointer { xp in ref.withUnsafeMutableBufferPointer { Fast.avgPool2d(geo, x: xp.baseAddress!, y: $0.baseAddress!, threads: 1) } }
            XCTAssertEqual(SharedForward.avgPool2x2(geo, x), ref)
        }
    }

    func testBatchNormMatchesReference() {
        var rng = SeededRandom(seed: 3)
        for (n, c, plane) in [(2, 3, 37), (5, 16, 49), (1, 7, 1), (3, 2, 256)] {
            let x = randoms(n * c * plane, &rng).map { $0 * 3 + 0.5 }
            let gamma = randoms(c, &rng), beta = randoms(c, &rng), dy = randoms(n * c * plane, &rng)
            let ref = referenceBatchNormForward(x: x, n: n, c: c, plane: plane, gamma: gamma, beta: beta, eps: 1e-5)
            let savedOn = TrainFast.on
            defer { TrainFast.on = savedOn }
            for (threads, fast) in [(1, false), (2, false), (1, true), (2, true)] {
                TrainFast.on = fast   // one-pass statistics when on
                let noHat = trainBatchNormForward(x: x, n: n, c: c, plane: plane, gamma: gamma, beta: beta, eps: 1e-5, threads: threads,
                                                  keepXhat: false)
                XCTAssertLessThan(maxRel(noHat.y, ref.y), 1e-6)
                XCTAssertLessThan(maxRel(noHat.variance, ref.variance), 1e-6)
                let f = trainBatchNormForward(x: x, n: n, c: c, plane: plane, gamma: gamma, beta: beta, eps: 1e-5, threads: threads)
                XCTAssertLessThan(maxRel(f.y, ref.y), 1e-6)
                XCTAssertLessThan(maxRel(f.xhat, ref.xhat), 1e-6)
                XCTAssertLessThan(maxRel(f.invStd, ref.invStd), 1e-6)
                XCTAssertLessThan(maxRel(f.mean, ref.mean), 1e-6)
                XCTAssertLessThan(maxRel(f.variance, ref.variance), 1e-6)
                for stats in [true, false] {
                    let rb = referenceBatchNormBackward(dy: dy, xhat: ref.xhat, invStd: ref.invStd, gamma: gamma, n: n, c: c, plane: plane,
                                                        batchStats: stats, needInput: true)
                    let b = trainBatchNormBackward(dy: dy, xhat: ref.xhat, invStd: ref.invStd, gamma: gamma, n: n, c: c, plane: plane,
                                                   batchStats: stats, needInput: true, threads: threads)
                    XCTAssertLessThan(maxRel(b.dx, rb.dx), 1e-5)
                    XCTAssertLessThan(maxRel(b.dgamma, rb.dgamma), 1e-5)
                    XCTAssertLessThan(maxRel(b.dbeta, rb.dbeta), 1e-5)
                }
            }
        }
    }

    func testPoolAndActivationBackwardMatchPlainLoops() {
        var rng = SeededRandom(seed: 5)
        // Average pooling, against the window enumeration `avgPoolWindows`.
        for (shape, attrs) in [([2, 3, 7, 6], Pool2dAttrs(kernel: [3, 2], stride: [2, 2], padding: Padding2D(top: 1, left: 1, bottom: 1, right: 0), countIncludePad: true)),
                               ([2, 3, 7, 6], Pool2dAttrs(kernel: [3, 3], stride: [2, 1], padding: Padding2D(top: 1, left: 1, bottom: 1, right: 1), ceilMode: true, countIncludePad: false)),
                               ([4, 6, 28, 28], Pool2dAttrs(kernel: [2, 2], stride: [2, 2]))] {
            let g = PoolGeometry(shape, attrs)
            let dy = randoms(g.n * g.c * g.oh * g.ow, &rng)
            var ref = [Float](repeating: 0, count: shape.reduce(1, *))
            avgPoolWindows(g, attrs) { o, nc, y0, y1, x0, x1, div in
                if y1 > y0 && x1 > x0 { for iy in y0..<y1 { for ix in x0..<x1 { ref[nc * g.h * g.w + iy * g.w + ix] += dy[o] / div } } }
            }
            for threads in [1, 2] {
                XCTAssertLessThan(maxRel(trainAvgPoolBackward(dy: dy, inputShape: shape, attrs: attrs, threads: threads), ref), 1e-6)
            }
        }
        // Max pooling: plane-parallel scatter equals the serial one.
        let shape = [3, 5, 9, 8]
        let attrs = Pool2dAttrs(kernel: [3, 3], stride: [2, 2], padding: Padding2D(top: 1, left: 1, bottom: 1, right: 1))
        let geo = Pool2dGeometry(pool: attrs, input: shape)
        let x = randoms(shape.reduce(1, *), &rng)
        let y = SharedForward.maxPool2d(geo, x)
        let am = SharedForward.maxPoolArgmax(geo, x: x, y: y)
        let dy = randoms(y.count, &rng)
        let serial = trainMaxPoolBackward(dy: dy, argmax: am, inputCount: x.count)
        XCTAssertEqual(trainMaxPoolBackward(dy: dy, argmax: am, inputCount: x.count, planes: 15, threads: 2), serial)
        for o in 0..<y.count { XCTAssertEqual(x[Int(am[o])], y[o]) }
        let savedThreads = TrainingThreads.count
        defer { TrainingThreads.count = savedThreads }
        // Fused max + arg-max equals the inference kernel and the separate arg-max search (NaN, ceil mode, padding).
        for (shp, at) in [([2, 3, 9, 8], attrs),
                          ([1, 2, 7, 7], Pool2dAttrs(kernel: [3, 2], stride: [2, 3], padding: Padding2D(top: 1, left: 0, bottom: 1, right: 1), ceilMode: true)),
                          ([2, 2, 6, 6], Pool2dAttrs(kernel: [2, 2], dilation: [2, 1]))] {
            let g2 = Pool2dGeometry(pool: at, input: shp)
            var x2 = randoms(shp.reduce(1, *), &rng)
            x2[5] = .nan; x2[17] = x2[16]
            for threads in [1, 2] {
                TrainingThreads.count = threads
                let (y2, am2) = SharedForward.maxPool2dWithArgmax(g2, x2)
                let yRef = SharedForward.maxPool2d(g2, x2)
                XCTAssertEqual(y2.map(\.bitPattern), yRef.map(\.bitPattern))
                XCTAssertEqual(am2, SharedForward.maxPoolArgmax(g2, x: x2, y: yRef))
            }
        }
        // Activations (lengths not a multiple of 16; values at the bounds).
        var xs = randoms(1037, &rng).map { $0 * 8 }
        xs[3] = 0; xs[4] = 6; xs[5] = -1; xs[6] = .infinity
        let d = randoms(xs.count, &rng)
        let ys = xs.map { 1 / (1 + expf(-$0)) }
        let cases: [(Op, (Int) -> Float)] = [
            (.relu, { xs[$0] <= 0 ? 0 : d[$0] }),
            (.relu6, { xs[$0] <= 0 || xs[$0] >= 6 ? 0 : d[$0] }),
            (.clip(min: -1, max: 6), { xs[$0] < -1 || xs[$0] > 6 ? 0 : d[$0] }),
            (.sigmoid, { d[$0] * (ys[$0] * (1 - ys[$0])) }),
            (.tanh, { d[$0] * (1 - ys[$0] * ys[$0]) }),
        ]
        for (op, f) in cases {
            for threads in [1, 2] {
                let got = BVec.activationBackward(op, x: xs, y: ys, dy: d, threads: threads)
                XCTAssertEqual(got, (0..<xs.count).map(f), "\(op)")
            }
        }
    }

    /// Frozen Winograd convolutions reuse their transformed weights across steps, but not after the weights change.
    func testFrozenConvWeightCacheFollowsWeightChanges() throws {
        let g = Graph(name: "w", inputShape: [16, 20, 20], output: "c2", nodes: [
            Node(name: "c1", op: .conv2d(Conv2dAttrs(inChannels: 16, outChannels: 16, kernel: [3, 3], padding: Padding2D(1), bias: false)), inputs: ["input"], output: "c1"),
            Node(name: "c2", op: .conv2d(Conv2dAttrs(inChannels: 16, outChannels: 16, kernel: [3, 3], padding: Padding2D(1), bias: false)), inputs: ["c1"], output: "c2"),
        ])
        var rng = SeededRandom(seed: 9)
        let x = Tensor(shape: [4, 16, 20, 20], data: randoms(4 * 16 * 400, &rng))
        var engine = TrainingEngine(model: Model.initialized(graph: g, seed: 3), frozen: ["c1.weight"])
        let first = try engine.forward(x, training: true, rng: &rng).output
        XCTAssertEqual(try engine.forward(x, training: true, rng: &rng).output, first)
        engine.model.tensors["c1.weight"]!.data[5] += 0.5
        let changed = try engine.forward(x, training: true, rng: &rng).output
        var fresh = TrainingEngine(model: engine.model, frozen: ["c1.weight"])
        XCTAssertEqual(changed, try fresh.forward(x, training: true, rng: &rng).output)
        XCTAssertNotEqual(changed, first)
    }
}
