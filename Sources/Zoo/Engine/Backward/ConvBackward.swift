import COpenBLAS
import CZooKernels
import Foundation

/// Geometry of a 2-D convolution (NCHW input, OIHW weight).
public struct ConvGeometry: Sendable {
    public var n, c, h, w, o, kh, kw, sh, sw, pt, pl, dh, dw, groups, oh, ow: Int
    public init(n: Int, c: Int, h: Int, w: Int, attrs a: Conv2dAttrs) {
        self.n = n; self.c = c; self.h = h; self.w = w; o = a.outChannels
        kh = a.kernel[0]; kw = a.kernel[1]; sh = a.stride[0]; sw = a.stride[1]
        pt = a.padding.top; pl = a.padding.left; dh = a.dilation[0]; dw = a.dilation[1]; groups = a.groups
        oh = ShapeRules.windowOutput(h, kernel: kh, stride: sh, padBegin: a.padding.top, padEnd: a.padding.bottom, dilation: dh, ceilMode: false)
        ow = ShapeRules.windowOutput(w, kernel: kw, stride: sw, padBegin: a.padding.left, padEnd: a.padding.right, dilation: dw, ceilMode: false)
    }
    var cg: Int { c / groups }
    var og: Int { o / groups }
    var kSize: Int { cg * kh * kw }
    var plane: Int { oh * ow }
    /// Samples per im2col chunk, keeping the column buffer near 8M floats.
    var chunk: Int { max(1, min(n, (8 << 20) / max(1, kSize * plane))) }
}

@inline(__always) func sgemm(_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                             _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                             _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Columns for group `g`, samples n0..<n0+nb: col[(ci*kh + ky)*kw + kx][(b*oh + y)*ow + x]. Rows
/// rowRange only (all by default); interior runs are copied, not tested per element.
/// Stride-2 rows go through `zoo_gather2` (AVX-512 when `TrainFast` "strided" is on).
func im2col(_ x: UnsafePointer<Float>, _ g: ConvGeometry, group: Int, n0: Int, nb: Int, _ col: UnsafeMutablePointer<Float>,
            rows rowRange: Range<Int>? = nil, simd: Bool = TrainFast.enabled("strided")) {
    let simdFlag: Int32 = simd ? 1 : 0
    let cols = nb * g.plane
    let kk = g.kh * g.kw
    for r in rowRange ?? 0..<(g.kSize) {
        let ci = r / kk, ky = (r % kk) / g.kw, kx = r % g.kw
        let chan = group * g.cg + ci
        let row = col + r * cols
        let offX = kx * g.dw - g.pl
        let xr = validRange(outLen: g.ow, inLen: g.w, stride: g.sw, offset: offX)
        for b in 0..<nb {
            let src = x + ((n0 + b) * g.c + chan) * g.h * g.w
            for y in 0..<g.oh {
                let iy = y * g.sh - g.pt + ky * g.dh
                let dst = row + b * g.plane + y * g.ow
                if iy < 0 || iy >= g.h || xr.isEmpty { dst.update(repeating: 0, count: g.ow); continue }
                if xr.lowerBound > 0 { dst.update(repeating: 0, count: xr.lowerBound) }
                let s = src + iy * g.w + offX
                if g.sw == 1 {
                    (dst + xr.lowerBound).update(from: s + xr.lowerBound, count: xr.count)
                } else if g.sw == 2 {
                    zoo_gather2(s + 2 * xr.lowerBound, dst + xr.lowerBound, xr.count, simdFlag)
                } else {
                    for xx in xr { dst[xx] = s[xx * g.sw] }
                }
                if xr.upperBound < g.ow { (dst + xr.upperBound).update(repeating: 0, count: g.ow - xr.upperBound) }
            }
        }
    }
}

/// Adds columns back into dx (the adjoint of im2col); rows `rowRange` only (all by default). Stride-2 rows go through
/// `zoo_scatter_add2` (AVX-512 when `TrainFast` "strided" is on).
func col2im(_ col: UnsafePointer<Float>, _ g: ConvGeometry, group: Int, n0: Int, nb: Int, _ dx: UnsafeMutablePointer<Float>,
            rows rowRange: Range<Int>? = nil, simd: Bool = TrainFast.enabled("strided")) {
    let simdFlag: Int32 = simd ? 1 : 0
    let cols = nb * g.plane
    let kk = g.kh * g.kw
    for b in 0..<nb {
        for r in rowRange ?? 0..<g.kSize {
            let ci = r / kk, ky = (r % kk) / g.kw, kx = r % g.kw
            let chan = group * g.cg + ci
            let row = col + r * cols
            let offX = kx * g.dw - g.pl
            let xr = validRange(outLen: g.ow, inLen: g.w, stride: g.sw, offset: offX)
            if xr.isEmpty { continue }
            let dst = dx + ((n0 + b) * g.c + chan) * g.h * g.w
            for y in 0..<g.oh {
                let iy = y * g.sh - g.pt + ky * g.dh
                if iy < 0 || iy >= g.h { continue }
                let src = row + b * g.plane + y * g.ow
                let d = dst + iy * g.w + offX
                if g.sw == 1 {
                    for xx in xr { d[xx] += src[xx] }
                } else if g.sw == 2 {
                    zoo_scatter_add2(src + xr.lowerBound, d + 2 * xr.lowerBound, xr.count, simdFlag)
                } else {
                    for xx in xr { d[xx * g.sw] += src[xx] }
                }
            }
        }
    }
}

/// Floats of one worker's column buffer in `trainConv2dBackward` (a chunk of images is sized to it).
let convBackwardColumnFloats = 1 << 20

/// Does dx of this convolution run as a forward (Winograd) convolution of dy with the flipped, transposed kernel?
func convBackwardDataByWinograd(_ g: ConvGeometry) -> Conv2dGeometry? {
    guard g.kh == 3, g.kw == 3, g.sh == 1, g.sw == 1, g.dh == 1, g.dw == 1, g.groups == 1, g.pt <= 2, g.pl <= 2 else { return nil }
    let geo = Conv2dGeometry(batch: g.n, inC: g.o, inH: g.oh, inW: g.ow, outC: g.c, outH: g.h, outW: g.w, kH: 3, kW: 3,
                             strideH: 1, strideW: 1, padTop: 2 - g.pt, padLeft: 2 - g.pl, dilH: 1, dilW: 1, groups: 1)
    return Fast.winogradApplies(geo) && trainWinogradWorthIt(geo) ? geo : nil
}

/// Whether a training convolution with per-step weights runs by Winograd: at least `trainWinogradMinTiles` 2×2 output
/// tiles, at least 3/4 of whose outputs are real (a 3×3 plane takes 4 tiles, 16 outputs for 9; resnet18's layer4 at 96²
/// ran 17 ms forward by Winograd against 9 ms by im2col, layer3's 6×6 planes 6.4 against 9.0).
func trainWinogradWorthIt(_ g: Conv2dGeometry) -> Bool {
    let tiles = winogradTiles(g)
    return tiles >= trainWinogradMinTiles && 4 * g.batch * g.outH * g.outW >= 3 * 4 * tiles
}

/// Backward convolution: returns (dx or nil, dweight or nil, dbias or nil). The batch is split over `threads`
/// workers (each im2col's its images, adds its part of dweight by one GEMM per chunk of images, and col2im's its dx);
/// the workers' dweight parts are summed at the end. 3×3 stride-1 dx runs as a Winograd convolution.
public func trainConv2dBackward(x: [Float], weight: [Float], dy: [Float], geometry g: ConvGeometry, hasBias: Bool,
                                needInput: Bool, needParams: Bool, threads: Int = TrainingThreads.count) -> (dx: [Float]?, dw: [Float]?, db: [Float]?) {
    var dx: [Float]? = nil, dw: [Float]? = nil, db: [Float]? = nil
    if SmallConv.applies(g) {
        if needParams && hasBias { db = smallConvBiasGradient(dy, g, threads: threads) }
        let r = smallConvBackward(x: x, weight: weight, dy: dy, geometry: g, needInput: needInput, needParams: needParams, threads: threads)
        return (r.dx, needParams ? r.dw : nil, db)
    }
    if needParams && hasBias { db = channelSums(dy, n: g.n, channels: g.o, plane: g.plane, threads: threads) }
    if !needInput && !needParams { return (dx, dw, db) }
    if TapGemm.applies(g) {
        if needInput { dx = TapGemm.inputGradient(dy: dy, weight: weight, geometry: g, threads: threads) }
        if needParams { dw = TapGemm.weightGradient(x: x, dy: dy, geometry: g, threads: threads) }
        return (dx, dw, db)
    }

    var dataGeo: Conv2dGeometry? = nil
    if needInput, let geo = convBackwardDataByWinograd(g) {
        dataGeo = geo
        // wf[c][o][ky][kx] = w[o][c][2-ky][2-kx]
        let wf = [Float](unsafeUninitializedCapacity: weight.count) { b, n in
            weight.withUnsafeBufferPointer { wb in
                let src = wb.baseAddress!, dst = b.baseAddress!
                for o in 0..<g.o { for c in 0..<g.c {
                    let s = src + (o * g.c + c) * 9, d = dst + (c * g.o + o) * 9
                    for k in 0..<9 { d[8 - k] = s[k] }
                } }
            }
            n = weight.count
        }
        dx = SharedForward.conv2d(geo, x: dy, w: wf, b: nil, threads: threads, weightCache: ConvWeightCache())
    }
    let colsForInput = needInput && dataGeo == nil
    // 3×3 stride-1 dweight by Winograd F(2×2,3×3) (WinogradWeightGradient.swift); else from the columns below.
    let paramsByWinograd = needParams && convWeightGradientByWinograd(g)
    if paramsByWinograd {
        dw = x.withUnsafeBufferPointer { xb in dy.withUnsafeBufferPointer { dyb in
            winogradWeightGradient(x: xb.baseAddress!, dy: dyb.baseAddress!, geometry: g, threads: threads)
        } }
    }
    let needParams = needParams && !paramsByWinograd
    if !needParams && !colsForInput { return (dx, dw, db) }
    if convBackwardWholeBatch(g) {
        let r = trainConv2dBackwardWholeBatch(x: x, weight: weight, dy: dy, geometry: g, needInput: colsForInput, needParams: needParams,
                                              threads: threads)
        return (colsForInput ? r.dx : dx, needParams ? r.dw : dw, db)
    }
    let wCount = weight.count
    let workers = max(1, min(threads, g.n))
    let perWorker = (g.n + workers - 1) / workers
    let chunk = max(1, min(perWorker, convBackwardColumnFloats / max(1, g.kSize * g.plane)))
    var partial = [Float](repeating: 0, count: needParams ? workers * wCount : 0)
    var dxs = colsForInput ? [Float](repeating: 0, count: x.count) : []
    // Scratch of all workers, allocated here (one block from the main heap, not per-thread arenas).
    let colFloats = g.kSize * chunk * g.plane, dygFloats = chunk > 1 ? g.og * chunk * g.plane : 0
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: workers * (colFloats + dygFloats))
    defer { scratch.deallocate() }
    let sp = SendPtr(scratch)
    // One worker (a batch of 1): its GEMMs are split over the pool instead.
    let gemmThreads = workers == 1 ? threads : 1
    let direct = convDirectPerImage(g)
    x.withUnsafeBufferPointer { xb in weight.withUnsafeBufferPointer { wb in dy.withUnsafeBufferPointer { dyb in
    partial.withUnsafeMutableBufferPointer { pb in dxs.withUnsafeMutableBufferPointer { dxb in
        let xp = SendConstPtr(xb.baseAddress!), wp = SendConstPtr(wb.baseAddress!), dyp = SendConstPtr(dyb.baseAddress!)
        // (An empty array's buffer may still have a base address: the shared empty storage. Test the flags.)
        let pp = needParams ? pb.baseAddress.map(SendPtr.init) : nil, dxp = colsForInput ? dxb.baseAddress.map(SendPtr.init) : nil
        Fast.parallelFor(workers, threads: workers) { range in
            for t in range {
                let col = sp.p + t * (colFloats + dygFloats), dyg = col + colFloats
                let lo = t * g.n / workers, hi = (t + 1) * g.n / workers
                var n0 = lo
                while n0 < hi {
                    let nb = min(chunk, hi - n0)
                    let cols = nb * g.plane
                    for grp in 0..<g.groups {
                        if direct && nb > 1 {
                            // Large planes: one GEMM per image straight from dy (no regrouped copy of dy).
                            if pp != nil { im2col(xp.p, g, group: grp, n0: n0, nb: nb, col) }
                            for s in 0..<nb {
                                let dys = dyp.p + ((n0 + s) * g.o + grp * g.og) * g.plane
                                if let pp {
                                    Fast.sgemm(false, true, m: g.og, n: g.kSize, k: g.plane, a: dys, lda: g.plane, b: col + s * g.plane, ldb: cols,
                                               beta: 1, c: pp.p + t * wCount + grp * g.og * g.kSize, ldc: g.kSize, threads: gemmThreads)
                                }
                                if colsForInput {
                                    Fast.sgemm(true, false, m: g.kSize, n: g.plane, k: g.og, a: wp.p + grp * g.og * g.kSize, lda: g.kSize, b: dys,
                                               ldb: g.plane, c: col + s * g.plane, ldc: cols, threads: gemmThreads)
                                }
                            }
                            if colsForInput, let dxp { col2im(col, g, group: grp, n0: n0, nb: nb, dxp.p) }
                            continue
                        }
                        let dg: UnsafePointer<Float>
                        if nb == 1 {
                            dg = dyp.p + (n0 * g.o + grp * g.og) * g.plane
                        } else {
                            for oc in 0..<g.og { for s in 0..<nb {
                                (dyg + oc * cols + s * g.plane).update(from: dyp.p + ((n0 + s) * g.o + grp * g.og + oc) * g.plane, count: g.plane)
                            } }
                            dg = UnsafePointer(dyg)
                        }
                        if let pp {
                            im2col(xp.p, g, group: grp, n0: n0, nb: nb, col)
                            Fast.sgemm(false, true, m: g.og, n: g.kSize, k: cols, a: dg, lda: cols, b: col, ldb: cols, beta: 1,
                                       c: pp.p + t * wCount + grp * g.og * g.kSize, ldc: g.kSize, threads: gemmThreads)
                        }
                        if colsForInput, let dxp {
                            Fast.sgemm(true, false, m: g.kSize, n: cols, k: g.og, a: wp.p + grp * g.og * g.kSize, lda: g.kSize, b: dg, ldb: cols,
                                       c: col, ldc: cols, threads: gemmThreads)
                            col2im(col, g, group: grp, n0: n0, nb: nb, dxp.p)
                        }
                    }
                    n0 += nb
                }
            }
        }
    } } } } }
    if needParams {
        if workers == 1 { dw = partial } else {
            dw = partial.withUnsafeBufferPointer { pb in
                let ps = SendConstPtr(pb.baseAddress!)
                return BVec.map(wCount, threads: threads) { r, out in
                    for i in r {
                        var s = ps.p[i]
                        for t in 1..<workers { s += ps.p[t * wCount + i] }
                        out[i] = s
                    }
                }
            }
        }
    }
    if colsForInput { dx = dxs }
    return (dx, dw, db)
}

/// Planes of at least this many outputs (ZOO_TRAIN_DIRECT_PLANE overrides) run one GEMM per image in the batch-split
/// training convolutions, reading dy and writing y in place, instead of regrouping a chunk of images through a copy.
nonisolated(unsafe) var convDirectMinPlane: Int = {
    if let s = ProcessInfo.processInfo.environment["ZOO_TRAIN_DIRECT_PLANE"], let n = Int(s) { return n }
    return 1024
}()

func convDirectPerImage(_ g: ConvGeometry) -> Bool { TrainFast.enabled("direct") && g.plane >= convDirectMinPlane }

/// Most column floats (kSize × images × plane) for which convolution backward im2col's the whole batch at once
/// (`trainConv2dBackwardWholeBatch`); ZOO_TRAIN_WHOLE_MAX overrides.
nonisolated(unsafe) var convBackwardWholeMax: Int = {
    if let s = ProcessInfo.processInfo.environment["ZOO_TRAIN_WHOLE_MAX"], let n = Int(s) { return n }
    return 3 << 20
}()

/// 1×1 convolutions with small planes (resnet18's stride-2 downsample layers): whole-batch GEMMs split over the
/// workers by columns, instead of the batch split whose per-worker dweight parts must be zeroed and summed.
/// (Measured for 3×3 layers too, layer3/layer4 at 96²: slower there, 3–18% per layer, so 1×1 only;
/// ZOO_TRAIN_WHOLE_3X3=1 takes them too, for A/B.)
func convBackwardWholeBatch(_ g: ConvGeometry) -> Bool {
    TrainFast.enabled("wholebwd") && g.groups == 1 && g.n > 1 && g.kSize * g.n * g.plane <= convBackwardWholeMax
        && ((g.kh == 1 && g.kw == 1) || convBackwardWholeAnyKernel)
}
nonisolated(unsafe) var convBackwardWholeAnyKernel = ProcessInfo.processInfo.environment["ZOO_TRAIN_WHOLE_3X3"] == "1"

/// Backward convolution (one group) over the whole batch: im2col of all images (rows over the workers), dweight =
/// dy · colᵀ and columns = Wᵀ · dy as GEMMs split by `Fast.sgemm`, then col2im with input channels over the workers.
func trainConv2dBackwardWholeBatch(x: [Float], weight: [Float], dy: [Float], geometry g: ConvGeometry, needInput: Bool,
                                   needParams: Bool, threads: Int) -> (dx: [Float]?, dw: [Float]?) {
    precondition(g.groups == 1)
    let cols = g.n * g.plane
    let col = UnsafeMutablePointer<Float>.allocate(capacity: max(1, g.kSize * cols))
    let dyg = UnsafeMutablePointer<Float>.allocate(capacity: max(1, g.o * cols))
    defer { col.deallocate(); dyg.deallocate() }
    let cs = SendPtr(col), gs = SendPtr(dyg)
    dy.withUnsafeBufferPointer { dyb in
        let src = SendConstPtr(dyb.baseAddress!)
        Fast.parallelFor(g.o, threads: threads, grain: max(1, 32768 / max(1, cols))) { r in
            for oc in r { for s in 0..<g.n {
                (gs.p + oc * cols + s * g.plane).update(from: src.p + (s * g.o + oc) * g.plane, count: g.plane)
            } }
        }
    }
    var dw: [Float]? = nil, dx: [Float]? = nil
    if needParams {
        x.withUnsafeBufferPointer { xb in
            let xs = SendConstPtr(xb.baseAddress!)
            Fast.parallelFor(g.kSize, threads: threads, grain: max(1, 32768 / max(1, cols))) { r in
                im2col(xs.p, g, group: 0, n0: 0, nb: g.n, cs.p, rows: r)
            }
        }
        dw = [Float](unsafeUninitializedCapacity: weight.count) { b, k in
            Fast.sgemm(false, true, m: g.o, n: g.kSize, k: cols, a: gs.p, lda: cols, b: cs.p, ldb: cols, c: b.baseAddress!, ldc: g.kSize,
                       threads: threads)
            k = weight.count
        }
    }
    if needInput {
        weight.withUnsafeBufferPointer { wb in
            Fast.sgemm(true, false, m: g.kSize, n: cols, k: g.o, a: wb.baseAddress!, lda: g.kSize, b: gs.p, ldb: cols, c: cs.p, ldc: cols,
                       threads: threads)
        }
        let kk = g.kh * g.kw, inPlane = g.h * g.w
        dx = [Float](unsafeUninitializedCapacity: x.count) { b, k in
            let ds = SendPtr(b.baseAddress!)
            Fast.parallelFor(g.c, threads: threads, grain: max(1, 16384 / max(1, g.n * inPlane))) { r in
                for s in 0..<g.n { (ds.p + (s * g.c + r.lowerBound) * inPlane).update(repeating: 0, count: r.count * inPlane) }
                col2im(UnsafePointer(cs.p), g, group: 0, n0: 0, nb: g.n, ds.p, rows: (r.lowerBound * kk)..<(r.upperBound * kk))
            }
            k = x.count
        }
    }
    return (dx, dw)
}

/// Does the training forward run this convolution by `trainConv2dForward` (batch split over the workers) rather
/// than the inference kernel? Everything but Winograd, depthwise and pointwise convolutions, whose inference kernels
/// already split their own work well.
/// With `changingWeights` (trainable: new weights every step), Winograd-eligible convolutions with few output tiles
/// take this path too: their weight transform, redone every step, would cost about as much as the GEMMs it saves.
func trainConvForwardBatched(_ g: ConvGeometry, threads: Int, changingWeights: Bool = true) -> Bool {
    let geo = Conv2dGeometry(batch: g.n, inC: g.c, inH: g.h, inW: g.w, outC: g.o, outH: g.oh, outW: g.ow, kH: g.kh, kW: g.kw,
                             strideH: g.sh, strideW: g.sw, padTop: g.pt, padLeft: g.pl, dilH: g.dh, dilW: g.dw, groups: g.groups)
    guard g.n >= 2, !Fast.isDepthwise(geo), !Fast.isPointwise(geo) else { return false }
    // Image stems on the inference tap-row kernel (resnet18's 7×7/2 forward at b32 96²: 10.7–11.3 → 7.5–7.7 ms, Zen 4;
    // the frozen step about 4 ms faster); LeNet-sized convolutions keep SmallConv's direct path.
    if trainTapStems && Fast.tapConvApplies(geo, act: .none) && !SmallConv.applies(g) { return false }
    // Small planes mostly padding (resnet18's layer4 at 96²), frozen or not: one GEMM per tap (TapGemm.swift).
    if TapGemm.applies(g) { return true }
    if !changingWeights && TrainFast.enabled("frozen") && Fast.winogradApplies(geo) && winogradTiles(geo) < frozenWinogradMinTiles { return true }
    return !Fast.winogradApplies(geo) || (changingWeights && !trainWinogradWorthIt(geo))
}

/// Fewest 2×2 output tiles (all images) for which training runs a convolution with per-step weights by Winograd
/// (ZOO_TRAIN_WINO_MIN_TILES overrides, for A/B). 512 while the weight transform was a Swift loop (a 256 × 256 layer's
/// transform cost about what its Winograd products saved); with `zoo_wino_weights` (2026-12-06, Zen 4) resnet18's 6×6
/// layer3 planes (288 tiles at b32 96²) gain: step 371 → 360 ms, interleaved, 6 rounds, faster in each.
nonisolated(unsafe) var trainWinogradMinTiles: Int = {
    if let s = ProcessInfo.processInfo.environment["ZOO_TRAIN_WINO_MIN_TILES"], let n = Int(s) { return n }
    return 256
}()

/// Frozen (cached-weight) convolutions with fewer 2×2 tiles than this run by im2col + GEMM too (at 3×3 planes
/// Winograd tiles are mostly padding). Off by default (0): interleaved frozen steps were slower by median with 200
/// (resnet18 layer4; the static batch halves stall when a worker is descheduled); ZOO_TRAIN_FROZEN_WINO_MIN_TILES=200
/// turns it on for A/B.
nonisolated(unsafe) var frozenWinogradMinTiles: Int = {
    if let s = ProcessInfo.processInfo.environment["ZOO_TRAIN_FROZEN_WINO_MIN_TILES"], let n = Int(s) { return n }
    return 0
}()

/// `ZOO_TRAIN_TAP_STEM=0`: image stems back on the batched im2col + GEMM forward (A/B switch).
nonisolated(unsafe) var trainTapStems = ProcessInfo.processInfo.environment["ZOO_TRAIN_TAP_STEM"] != "0"

func winogradTiles(_ g: Conv2dGeometry) -> Int { g.batch * ((g.outH + 1) / 2) * ((g.outW + 1) / 2) }

/// Convolution forward for training batches: each of `threads` workers takes a share of the images, im2col's
/// a chunk of them side by side and runs one single-threaded GEMM per chunk (y = W · col + b, the inference
/// kernel's formulation), so small images cost one dispatch per layer instead of several per image.
public func trainConv2dForward(x: [Float], weight: [Float], bias: [Float]?, geometry g: ConvGeometry,
                               threads: Int = TrainingThreads.count) -> [Float] {
    if SmallConv.applies(g) { return smallConvForward(x: x, weight: weight, bias: bias, geometry: g, threads: threads) }
    if TapGemm.applies(g) { return TapGemm.forward(x: x, weight: weight, bias: bias, geometry: g, threads: threads) }
    let workers = max(1, min(threads, g.n))
    let perWorker = (g.n + workers - 1) / workers
    let chunk = max(1, min(perWorker, convBackwardColumnFloats / max(1, g.kSize * g.plane)))
    let colFloats = g.kSize * chunk * g.plane, tmpFloats = chunk > 1 ? g.og * chunk * g.plane : 0
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: workers * (colFloats + tmpFloats))
    defer { scratch.deallocate() }
    let sp = SendPtr(scratch)
    let gemmThreads = workers == 1 ? threads : 1
    let direct = convDirectPerImage(g)
    let count = g.n * g.o * g.plane
    return [Float](unsafeUninitializedCapacity: count) { yb, done in
        x.withUnsafeBufferPointer { xb in weight.withUnsafeBufferPointer { wb in
            let xp = SendConstPtr(xb.baseAddress!), wp = SendConstPtr(wb.baseAddress!), yp = SendPtr(yb.baseAddress!)
            let bp = bias.map { b in UnsafeSendableBox(b) }
            Fast.parallelFor(workers, threads: workers) { range in
                for t in range {
                    let col = sp.p + t * (colFloats + tmpFloats), tmp = col + colFloats
                    let lo = t * g.n / workers, hi = (t + 1) * g.n / workers
                    var n0 = lo
                    while n0 < hi {
                        let nb = min(chunk, hi - n0)
                        let cols = nb * g.plane
                        for grp in 0..<g.groups {
                            im2col(xp.p, g, group: grp, n0: n0, nb: nb, col)
                            let wg = wp.p + grp * g.og * g.kSize
                            if nb == 1 || direct {
                                // One GEMM per image straight into y (large planes: no copy out of a chunk buffer).
                                for s in 0..<nb {
                                    let yg = yp.p + ((n0 + s) * g.o + grp * g.og) * g.plane
                                    Fast.sgemm(false, false, m: g.og, n: g.plane, k: g.kSize, a: wg, lda: g.kSize, b: col + s * g.plane, ldb: cols,
                                               c: yg, ldc: g.plane, threads: gemmThreads)
                                    if let b = bp?.value {
                                        for oc in 0..<g.og {
                                            let bv = b[grp * g.og + oc], row = yg + oc * g.plane
                                            for i in 0..<g.plane { row[i] += bv }
                                        }
                                    }
                                }
                            } else {
                                Fast.sgemm(false, false, m: g.og, n: cols, k: g.kSize, a: wg, lda: g.kSize, b: col, ldb: cols,
                                           c: tmp, ldc: cols, threads: gemmThreads)
                                for oc in 0..<g.og {
                                    let bv = bp?.value[grp * g.og + oc] ?? 0
                                    for s in 0..<nb {
                                        let dst = yp.p + ((n0 + s) * g.o + grp * g.og + oc) * g.plane, src = tmp + oc * cols + s * g.plane
                                        if bp == nil { dst.update(from: src, count: g.plane) } else { for i in 0..<g.plane { dst[i] = src[i] + bv } }
                                    }
                                }
                            }
                        }
                        n0 += nb
                    }
                }
            }
        } }
        done = count
    }
}

/// Sum over images and plane of each channel (bias gradients).
func channelSums(_ dy: [Float], n: Int, channels: Int, plane: Int, threads: Int) -> [Float] {
    var out = [Float](repeating: 0, count: channels)
    dy.withUnsafeBufferPointer { db in out.withUnsafeMutableBufferPointer { ob in
        let d = SendConstPtr(db.baseAddress!), o = SendPtr(ob.baseAddress!)
        Fast.parallelFor(channels, threads: threads, grain: max(1, 16384 / max(1, n * plane))) { r in
            for ch in r {
                var acc: Float = 0
                for s in 0..<n { acc += BVec.sum(d.p + (s * channels + ch) * plane, count: plane) }
                o.p[ch] = acc
            }
        }
    } }
    return out
}

/// Columns for group `g`, samples n0..<n0+nb: col[(ci*kh + ky)*kw + kx][(b*oh + y)*ow + x].
func referenceIm2col(_ x: UnsafePointer<Float>, _ g: ConvGeometry, group: Int, n0: Int, nb: Int, _ col: UnsafeMutablePointer<Float>) {
    let cols = nb * g.plane
    for ci in 0..<g.cg {
        let chan = group * g.cg + ci
        for ky in 0..<g.kh { for kx in 0..<g.kw {
            let row = col + ((ci * g.kh + ky) * g.kw + kx) * cols
            for b in 0..<nb {
                let src = x + ((n0 + b) * g.c + chan) * g.h * g.w
                for y in 0..<g.oh {
                    let iy = y * g.sh - g.pt + ky * g.dh
                    let dst = row + b * g.plane + y * g.ow
                    if iy < 0 || iy >= g.h { for xx in 0..<g.ow { dst[xx] = 0 }; continue }
                    for xx in 0..<g.ow {
                        let ix = xx * g.sw - g.pl + kx * g.dw
                        dst[xx] = (ix >= 0 && ix < g.w) ? src[iy * g.w + ix] : 0
                    }
                }
            }
        } }
    }
}

/// Adds columns back into dx (the adjoint of im2col).
func referenceCol2im(_ col: UnsafePointer<Float>, _ g: ConvGeometry, group: Int, n0: Int, nb: Int, _ dx: UnsafeMutablePointer<Float>) {
    let cols = nb * g.plane
    for ci in 0..<g.cg {
        let chan = group * g.cg + ci
        for ky in 0..<g.kh { for kx in 0..<g.kw {
            let row = col + ((ci * g.kh + ky) * g.kw + kx) * cols
            for b in 0..<nb {
                let dst = dx + ((n0 + b) * g.c + chan) * g.h * g.w
                for y in 0..<g.oh {
                    let iy = y * g.sh - g.pt + ky * g.dh
                    if iy < 0 || iy >= g.h { continue }
                    let src = row + b * g.plane + y * g.ow
                    for xx in 0..<g.ow {
                        let ix = xx * g.sw - g.pl + kx * g.dw
                        if ix >= 0 && ix < g.w { dst[iy * g.w + ix] += src[xx] }
                    }
                }
            }
        } }
    }
}

/// Plain single-threaded backward convolution (the reference `trainConv2dBackward` is tested against).
public func referenceConv2dBackward(x: [Float], weight: [Float], dy: [Float], geometry g: ConvGeometry, hasBias: Bool,
                                needInput: Bool, needParams: Bool) -> (dx: [Float]?, dw: [Float]?, db: [Float]?) {
    var dx: [Float]? = needInput ? [Float](repeating: 0, count: x.count) : nil
    var dw: [Float]? = needParams ? [Float](repeating: 0, count: weight.count) : nil
    var db: [Float]? = (needParams && hasBias) ? [Float](repeating: 0, count: g.o) : nil
    if var d = db {
        for s in 0..<g.n { for oc in 0..<g.o {
            let base = (s * g.o + oc) * g.plane
            var acc: Float = 0
            for p in 0..<g.plane { acc += dy[base + p] }
            d[oc] += acc
        } }
        db = d
    }
    if !needInput && !needParams { return (dx, dw, db) }
    let chunk = g.chunk
    var col = [Float](repeating: 0, count: g.kSize * chunk * g.plane)
    var dyg = [Float](repeating: 0, count: g.og * chunk * g.plane)
    var dxs = dx ?? []
    var dws = dw ?? []
    x.withUnsafeBufferPointer { xp in weight.withUnsafeBufferPointer { wp in dy.withUnsafeBufferPointer { dyp in
    col.withUnsafeMutableBufferPointer { cp in dyg.withUnsafeMutableBufferPointer { gp in
    dxs.withUnsafeMutableBufferPointer { dxp in dws.withUnsafeMutableBufferPointer { dwp in
        var n0 = 0
        while n0 < g.n {
            let nb = min(chunk, g.n - n0)
            let cols = nb * g.plane
            for grp in 0..<g.groups {
                for oc in 0..<g.og { for s in 0..<nb {
                    let src = dyp.baseAddress! + ((n0 + s) * g.o + grp * g.og + oc) * g.plane
                    let dst = gp.baseAddress! + oc * cols + s * g.plane
                    for p in 0..<g.plane { dst[p] = src[p] }
                } }
                if needParams {
                    referenceIm2col(xp.baseAddress!, g, group: grp, n0: n0, nb: nb, cp.baseAddress!)
                    sgemm(false, true, g.og, g.kSize, cols, 1, gp.baseAddress!, cols, cp.baseAddress!, cols, 1,
                          dwp.baseAddress! + grp * g.og * g.kSize, g.kSize)
                }
                if needInput {
                    sgemm(true, false, g.kSize, cols, g.og, 1, wp.baseAddress! + grp * g.og * g.kSize, g.kSize,
                          gp.baseAddress!, cols, 0, cp.baseAddress!, cols)
                    referenceCol2im(cp.baseAddress!, g, group: grp, n0: n0, nb: nb, dxp.baseAddress!)
                }
            }
            n0 += nb
        }
    } } } } } } }
    if needInput { dx = dxs }
    if needParams { dw = dws }
    return (dx, dw, db)
}

/// Linear: y[n, o] = sum_i x[n, i] w[o, i] + b[o] (x is rows × inF).
public func trainLinearBackward(x: [Float], rows: Int, inF: Int, weight: [Float], outF: Int, dy: [Float], hasBias: Bool,
                                needInput: Bool, needParams: Bool) -> (dx: [Float]?, dw: [Float]?, db: [Float]?) {
    var dx: [Float]? = nil, dw: [Float]? = nil, db: [Float]? = nil
    let threads = TrainingThreads.count
    dy.withUnsafeBufferPointer { dyp in
        if needInput {
            var d = [Float](repeating: 0, count: rows * inF)
            weight.withUnsafeBufferPointer { wp in d.withUnsafeMutableBufferPointer { dp in
                Fast.sgemm(false, false, m: rows, n: inF, k: outF, a: dyp.baseAddress!, lda: outF, b: wp.baseAddress!, ldb: inF,
                           c: dp.baseAddress!, ldc: inF, threads: threads)
            } }
            dx = d
        }
        if needParams {
            var d = [Float](repeating: 0, count: outF * inF)
            x.withUnsafeBufferPointer { xp in d.withUnsafeMutableBufferPointer { dp in
                Fast.sgemm(true, false, m: outF, n: inF, k: rows, a: dyp.baseAddress!, lda: outF, b: xp.baseAddress!, ldb: inF,
                           c: dp.baseAddress!, ldc: inF, threads: threads)
            } }
            dw = d
            if hasBias {
                var b = [Float](repeating: 0, count: outF)
                for r in 0..<rows { for o in 0..<outF { b[o] += dyp[r * outF + o] } }
                db = b
            }
        }
    }
    return (dx, dw, db)
}

/// ConvTranspose2d as the adjoint of a convolution: the convolution maps the transposed convolution's output
/// (N×outC×OH×OW) to its input (N×inC×H×W) with weight [inC, outC/groups, kh, kw].
public func convTransposeAdjointGeometry(n: Int, outShape: [Int], attrs a: ConvTranspose2dAttrs) -> ConvGeometry {
    ConvGeometry(n: n, c: a.outChannels, h: outShape[2], w: outShape[3],
                 attrs: Conv2dAttrs(inChannels: a.outChannels, outChannels: a.inChannels, kernel: a.kernel, stride: a.stride,
                                    padding: a.padding, dilation: a.dilation, groups: a.groups, bias: false))
}

/// Returns (dx, dweight, dbias) of a transposed convolution given dy (its output gradient).
public func trainConvTransposeBackward(x: [Float], weight: [Float], dy: [Float], geometry g: ConvGeometry, hasBias: Bool,
                                       needInput: Bool, needParams: Bool) -> (dx: [Float]?, dw: [Float]?, db: [Float]?) {
    let dx = needInput ? SharedForward.conv2d(g, x: dy, w: weight, b: nil) : nil
    var dw: [Float]? = nil, db: [Float]? = nil
    if needParams {
        dw = trainConv2dBackward(x: dy, weight: weight, dy: x, geometry: g, hasBias: false, needInput: false, needParams: true).dw
        if hasBias {
            var b = [Float](repeating: 0, count: g.c)
            let plane = g.h * g.w
            for s in 0..<g.n { for ch in 0..<g.c { for p in 0..<plane { b[ch] += dy[(s * g.c + ch) * plane + p] } } }
            db = b
        }
    }
    return (dx, dw, db)
}

public enum TrainingThreads {
    /// Workers of the training engine's kernels (forward and backward): OPENBLAS_NUM_THREADS or ZOO_THREADS if set,
    /// else the active processor count (at most 8). `zoo-tool bench --threads` sets it.
    /// On the thread of a training-step shard (`TrainingEngine.trainStep`), 1: the shard's layers are not split.
    public static var count: Int {
        get { ShardThread.active ? 1 : configured }
        set { configured = newValue }
    }
    nonisolated(unsafe) static var configured: Int = {
        for k in ["ZOO_THREADS", "OPENBLAS_NUM_THREADS"] {
            if let s = ProcessInfo.processInfo.environment[k], let n = Int(s), n > 0 { return n }
        }
        return max(1, min(8, ProcessInfo.processInfo.activeProcessorCount))
    }()

    /// Training multiplies small matrices (per layer, per batch); OpenBLAS' thread pool costs more than it
    /// gains there, especially on a shared machine. Uses one BLAS thread unless OPENBLAS_NUM_THREADS is set.
    public static func preferSingleBLASThread() {
        if ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] == nil { Fast.setBLASThreads(1) }
    }
}

/// A per-thread flag: is this thread running one shard of a training step?
enum ShardThread {
    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()

    static var active: Bool { pthread_getspecific(key) != nil }

    /// Runs `body` with the flag set on this thread.
    static func run<R>(_ body: () throws -> R) rethrows -> R {
        let was = pthread_getspecific(key)
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
        defer { pthread_setspecific(key, was) }
        return try body()
    }
}
