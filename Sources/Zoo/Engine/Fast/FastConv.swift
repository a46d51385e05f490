import CGemm
import Foundation
import COpenBLAS

@inline(__always) func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
@inline(__always) func ceilDiv(_ a: Int, _ b: Int) -> Int { -floorDiv(-a, b) }

/// Output positions o in 0..<outLen for which o*stride + offset lies in 0..<inLen, as a half-open range.
@inline(__always) func validRange(outLen: Int, inLen: Int, stride: Int, offset: Int) -> Range<Int> {
    let lo = Swift.max(0, ceilDiv(-offset, stride))
    let hi = Swift.min(outLen, floorDiv(inLen - 1 - offset, stride) + 1)
    return lo < hi ? lo..<hi : 0..<0
}

extension Fast {
    /// Upper bound on the im2col tile, in floats (keeps the scratch small for large planes, e.g. VGG at 224²).
    static let im2colTileFloats = 1 << 21

    static func isPointwise(_ g: Conv2dGeometry) -> Bool {
        g.kH == 1 && g.kW == 1 && g.strideH == 1 && g.strideW == 1 && g.padTop == 0 && g.padLeft == 0
            && g.outH == g.inH && g.outW == g.inW
    }
    static func isDepthwise(_ g: Conv2dGeometry) -> Bool { g.inCPerGroup == 1 && g.groups > 1 }

    /// How `conv2d` tiles the work: output rows per im2col tile (one image at a time), or, for small planes in a
    /// batch, `images` whole images side by side in one GEMM; and the scratch floats either needs.
    static func convTile(_ g: Conv2dGeometry) -> (rows: Int, images: Int, scratch: Int) {
        if isDepthwise(g) { return (g.outH, 1, 0) }
        let k = g.inCPerGroup * g.kH * g.kW
        if g.batch > 1 && g.outPlane < 1024 {
            let images = Swift.min(g.batch, Swift.max(1, 2048 / g.outPlane), Swift.max(1, im2colTileFloats / Swift.max(1, k * g.outPlane)))
            if images > 1 {
                let cols = images * g.outPlane
                return (g.outH, images, (k + g.outCPerGroup) * cols)
            }
        }
        if isPointwise(g) { return (g.outH, 1, 0) }
        let rows = Swift.max(1, Swift.min(g.outH, im2colTileFloats / Swift.max(1, k * g.outW)))
        return (rows, 1, k * rows * g.outW)
    }

    /// C[m, n] = A[m, k] · B[k, n] (row-major, leading dimensions given): `sgemm` split over the workers.
    static func gemm(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                     c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int) {
        sgemm(false, false, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, threads: threads)
    }

    /// Scratch floats `conv2d` needs for this geometry.
    public static func conv2dScratch(_ g: Conv2dGeometry) -> Int {
        Swift.max(convTile(g).scratch, winogradScratch(g),
                  packedConvApplies(g) ? packedBFloats(k: g.inCPerGroup * g.kH * g.kW, n: g.outPlane) : 0,
                  subsampledPointwise(g) != nil ? g.batch * g.inC * g.outPlane : 0,
                  rowConvApplies(g, act: .none) ? rowConvScratch(g) : 0)
    }

    /// Whether `conv2d` writes this convolution in row bands (`rowBands`): Winograd convolutions that split by tile rows,
    /// the packed-GEMM convolution, whose pixel panels go to the workers in contiguous halves of the plane, and the
    /// tap-row kernel (`tapConvBands`).
    static func conv2dWritesBands(_ g: Conv2dGeometry, act: Activation, threads: Int) -> Bool {
        let parts = bandParts(batch: g.batch, threads: threads)
        guard parts > 0 else { return false }
        if tapConvApplies(g, act: act) { return tapConvBands && parts <= g.outH }
        if pointwiseInPlaceApplies(g, act: act) || stridedPointwiseApplies(g, act: act)
            || rowConvApplies(g, act: act) || isDepthwise(g) { return false }
        if packedConvApplies(g) { return !privatePanelsApply(g, m: g.outC, k: g.inCPerGroup * g.kH * g.kW, threads: threads) }
        let m = winogradTile(g)
        return m != 0 && winogradSpatialSplit(g, tile: m, threads: threads) != nil
    }

    /// The re-laid-out weights `conv2d` uses for this geometry and activation, so that a caller holding weights (the
    /// executor) makes only those: `packed` for the packed-GEMM convolution, `pointwise` for the in-place 1×1 / tap-row /
    /// strided 1×1 kernels, `rowConv` for the row-panel convolution.
    static func conv2dWeightForms(_ g: Conv2dGeometry, act: Activation) -> (packed: Bool, pointwise: Bool, rowConv: Bool) {
        let rowConv = rowConvApplies(g, act: act), strided = stridedPointwiseApplies(g, act: act)
        return (packedConvApplies(g) && !strided && !rowConv,
                pointwiseInPlaceApplies(g, act: act) || tapConvApplies(g, act: act) || strided, rowConv)
    }

    /// Geometries the packed-GEMM convolution takes (when packed weights are supplied): one group, not depthwise,
    /// and not one Winograd handles.
    static func packedConvApplies(_ g: Conv2dGeometry) -> Bool {
        usePackedGemm && g.groups == 1 && !winogradApplies(g) && !pointwiseApplies(g)
    }

    /// Convolution with a fused bias + activation epilogue. `scratch` must hold `conv2dScratch(g)` floats.
    public static func conv2d(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>, b: UnsafePointer<Float>?,
                              act: Activation, y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>?, threads: Int,
                              packed: PackedMatrix? = nil, weightCache: ConvWeightCache? = nil,
                              /// Weights packed for `pointwiseInPlace` / `tapConv` ([outC, inC·kH·kW]); used when they apply.
                              pointwisePacked: PointwisePacked? = nil,
                              /// Transposed raw weights for `rowConv` (narrow planes at batch 1); used when it applies.
                              rowConvPacked: RowConvPacked? = nil) {
        if let rowConvPacked, let scratch, rowConvApplies(g, act: act) {
            rowConv(g, x: x, w: rowConvPacked, b: b, act: act, y: y, scratch: scratch, threads: threads); return
        }
        if let pointwisePacked, pointwisePacked.k == g.inCPerGroup * g.kH * g.kW {
            if pointwiseInPlaceApplies(g, act: act) {
                pointwiseInPlace(g, x: x, w: pointwisePacked, b: b, act: act, y: y, threads: threads); return
            }
            if tapConvApplies(g, act: act) { tapConv(g, x: x, w: pointwisePacked, b: b, act: act, y: y, threads: threads); return }
            if let s = subsampledPointwise(g), pointwiseInPlaceApplies(s, act: act), let scratch {
                subsample(g, x: x, into: scratch, threads: threads)
                pointwiseInPlace(s, x: scratch, w: pointwisePacked, b: b, act: act, y: y, threads: threads); return
            }
        }
        if isDepthwise(g) {
            if !depthwiseDirect && depthwiseStagedApplies(g) {
                depthwiseStaged(g, x: x, w: w, b: b, act: act, y: y, threads: threads)
            } else {
                depthwise(g, x: x, w: w, b: b, act: act, y: y, threads: threads)
            }
            return
        }
        if let packed, let scratch, packedConvApplies(g) {
            packedConv2d(g, x: x, w: packed, b: b, act: act, y: y, scratch: scratch, threads: threads); return
        }
        if pointwiseApplies(g) { pointwise(g, x: x, w: w, b: b, act: act, y: y, scratch: scratch, threads: threads); return }
        if winogradApplies(g), let scratch {
            winogradConv2d(g, x: x, w: w, b: b, act: act, y: y, scratch: scratch, threads: threads, weightCache: weightCache)
            return
        }
        let icpg = g.inCPerGroup, ocpg = g.outCPerGroup
        let k = icpg * g.kH * g.kW
        let (tileRows, images, _) = convTile(g)
        if images > 1, let col = scratch {
            // Several small images per GEMM: col = [K, images*plane], C = W_g · col, then scatter C to NCHW.
            var n0 = 0
            while n0 < g.batch {
                let nb = Swift.min(images, g.batch - n0)
                let cols = nb * g.outPlane
                let tmp = col + k * cols
                for grp in 0..<g.groups {
                    for j in 0..<nb {
                        let xg = x + ((n0 + j) * g.inC + grp * icpg) * g.inPlane
                        if isPointwise(g) {
                            let cs = SendPtr(col + j * g.outPlane), xs = SendConstPtr(xg)
                            parallelFor(k, threads: threads, grain: 16) { r in
                                for c in r { (cs.p + c * cols).update(from: xs.p + c * g.inPlane, count: g.inPlane) }
                            }
                        } else {
                            im2col(g, x: xg, oy0: 0, rows: g.outH, col: col + j * g.outPlane, ld: cols, threads: threads)
                        }
                    }
                    gemm(m: ocpg, n: cols, k: k, a: w + grp * ocpg * k, lda: k, b: col, ldb: cols, c: tmp, ldc: cols, threads: threads)
                    let ts = SendConstPtr(tmp), ys = SendPtr(y)
                    parallelFor(ocpg, threads: threads, grain: 4) { r in
                        for oc in r {
                            for j in 0..<nb {
                                (ys.p + ((n0 + j) * g.outC + grp * ocpg + oc) * g.outPlane)
                                    .update(from: ts.p + oc * cols + j * g.outPlane, count: g.outPlane)
                            }
                        }
                    }
                }
                n0 += nb
            }
            biasActivation(planes: g.batch * g.outC, channels: g.outC, plane: g.outPlane, b: b, act: act, y: y, threads: threads)
            return
        }
        for n in 0..<g.batch {
            for grp in 0..<g.groups {
                let xg = x + (n * g.inC + grp * icpg) * g.inPlane
                let yg = y + (n * g.outC + grp * ocpg) * g.outPlane
                let wg = w + grp * ocpg * k
                if isPointwise(g) {
                    gemm(m: ocpg, n: g.outPlane, k: k, a: wg, lda: k, b: xg, ldb: g.inPlane, c: yg, ldc: g.outPlane, threads: threads)
                    continue
                }
                guard let col = scratch else { return }
                var oy0 = 0
                while oy0 < g.outH {
                    let rows = Swift.min(tileRows, g.outH - oy0)
                    let cols = rows * g.outW
                    im2col(g, x: xg, oy0: oy0, rows: rows, col: col, ld: cols, threads: threads)
                    gemm(m: ocpg, n: cols, k: k, a: wg, lda: k, b: col, ldb: cols, c: yg + oy0 * g.outW, ldc: g.outPlane, threads: threads)
                    oy0 += rows
                }
            }
        }
        biasActivation(planes: g.batch * g.outC, channels: g.outC, plane: g.outPlane, b: b, act: act, y: y, threads: threads)
    }

    /// Fills col[(icg, ky, kx) * ld + (oy - oy0) * outW + ox] for output rows oy0..<oy0+rows of one image and group.
    static func im2col(_ g: Conv2dGeometry, x: UnsafePointer<Float>, oy0: Int, rows: Int, col: UnsafeMutablePointer<Float>,
                       ld cols: Int, threads: Int) {
        let kk = g.kH * g.kW
        let k = g.inCPerGroup * kk
        let xs = SendConstPtr(x), cs = SendPtr(col)
        parallelFor(k, threads: threads, grain: 8) { range in
            for r in range {
                let icg = r / kk, ky = (r % kk) / g.kW, kx = r % g.kW
                let plane = xs.p + icg * g.inPlane
                let dst = cs.p + r * cols
                let offX = kx * g.dilW - g.padLeft
                let xr = validRange(outLen: g.outW, inLen: g.inW, stride: g.strideW, offset: offX)
                for j in 0..<rows {
                    let iy = (oy0 + j) * g.strideH - g.padTop + ky * g.dilH
                    let d = dst + j * g.outW
                    if iy < 0 || iy >= g.inH || xr.isEmpty {
                        d.update(repeating: 0, count: g.outW)
                        continue
                    }
                    let src = plane + iy * g.inW + offX
                    if xr.lowerBound > 0 { d.update(repeating: 0, count: xr.lowerBound) }
                    if g.strideW == 1 {
                        (d + xr.lowerBound).update(from: src + xr.lowerBound, count: xr.count)
                    } else {
                        for ox in xr { d[ox] = src[ox * g.strideW] }
                    }
                    if xr.upperBound < g.outW { (d + xr.upperBound).update(repeating: 0, count: g.outW - xr.upperBound) }
                }
            }
        }
    }

    /// Direct convolution for groups with one input channel each (depthwise, any channel multiplier).
    /// Each output element accumulates its taps in registers; interior columns (whole window inside the row) run
    /// without bounds tests, eight at a time for stride 1.
    static func depthwise(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>, b: UnsafePointer<Float>?,
                          act: Activation, y: UnsafeMutablePointer<Float>, threads: Int) {
        let ocpg = g.outCPerGroup
        let xs = SendConstPtr(x), ws = SendConstPtr(w), ys = SendPtr(y)
        let bs = b.map(SendConstPtr.init)
        let kH = g.kH, kW = g.kW, sW = g.strideW, dW = g.dilW, inW = g.inW, outW = g.outW
        let xTaps = (0..<outW).map { tapRange(base: $0 * sW - g.padLeft, kernel: kW, dil: dW, lo: 0, hi: inW) }
        let interior = xTaps.indices.filter { xTaps[$0] == 0..<kW }
        let oxA = interior.first ?? 0, oxB = interior.isEmpty ? 0 : interior.last! + 1
        parallelFor(g.batch * g.outC, threads: threads) { range in
            for p in range {
                let n = p / g.outC, oc = p % g.outC
                let ic = oc / ocpg
                let plane = xs.p + (n * g.inC + ic) * g.inPlane
                let out = ys.p + p * g.outPlane
                let wk = ws.p + oc * kH * kW
                let bias = bs?.p[oc] ?? 0
                for oy in 0..<g.outH {
                    let row = out + oy * outW
                    let by = oy * g.strideH - g.padTop
                    let yTaps = tapRange(base: by, kernel: kH, dil: g.dilH, lo: 0, hi: g.inH)
                    // One output column with clipped taps.
                    @inline(__always) func edge(_ ox: Int) {
                        var acc = bias
                        let bx = ox * sW - g.padLeft
                        for ky in yTaps {
                            let src = plane + (by + ky * g.dilH) * inW + bx
                            for kx in xTaps[ox] { acc += wk[ky * kW + kx] * src[kx * dW] }
                        }
                        row[ox] = acc
                    }
                    for ox in 0..<Swift.min(oxA, outW) { edge(ox) }
                    var ox = oxA
                    if sW == 1 {
                        while ox + 8 <= oxB {
                            var acc = SIMD8<Float>(repeating: bias)
                            for ky in yTaps {
                                let src = plane + (by + ky * g.dilH) * inW + ox - g.padLeft
                                let wr = wk + ky * kW
                                for kx in 0..<kW {
                                    acc += wr[kx] * UnsafeRawPointer(src + kx * dW).loadUnaligned(as: SIMD8<Float>.self)
                                }
                            }
                            UnsafeMutableRawPointer(row + ox).storeBytes(of: acc, as: SIMD8<Float>.self)
                            ox += 8
                        }
                    }
                    while ox < oxB {
                        var acc = bias
                        let bx = ox * sW - g.padLeft
                        for ky in yTaps {
                            let src = plane + (by + ky * g.dilH) * inW + bx
                            let wr = wk + ky * kW
                            for kx in 0..<kW { acc += wr[kx] * src[kx * dW] }
                        }
                        row[ox] = acc
                        ox += 1
                    }
                    for ox in Swift.max(oxB, oxA)..<outW where ox >= oxA { edge(ox) }
                }
                applyActivation(act, out, count: g.outPlane)
            }
        }
    }

    /// Transposed convolution: col = W_gᵀ · X_g by sgemm, then col2im scatter. Scratch: `convTranspose2dScratch(g)`.
    public static func convTranspose2dScratch(_ g: Conv2dGeometry) -> Int { g.outCPerGroup * g.kH * g.kW * g.inPlane }

    public static func convTranspose2d(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>, b: UnsafePointer<Float>?,
                                       y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, threads: Int) {
        let icpg = g.inCPerGroup, ocpg = g.outCPerGroup, kk = g.kH * g.kW
        let m = ocpg * kk
        let cs = SendConstPtr(scratch)
        let bs = b.map(SendConstPtr.init)
        for n in 0..<g.batch {
            for grp in 0..<g.groups {
                let xg = x + (n * g.inC + grp * icpg) * g.inPlane
                let wg = w + grp * icpg * m
                sgemm(true, false, m: m, n: g.inPlane, k: icpg, a: wg, lda: m, b: xg, ldb: g.inPlane, c: scratch, ldc: g.inPlane,
                      threads: threads)
                let ys = SendPtr(y + (n * g.outC + grp * ocpg) * g.outPlane)
                parallelFor(ocpg, threads: threads) { range in
                    for ocg in range {
                        let out = ys.p + ocg * g.outPlane
                        out.update(repeating: bs?.p[grp * ocpg + ocg] ?? 0, count: g.outPlane)
                        for ky in 0..<g.kH {
                            for kx in 0..<g.kW {
                                let src = cs.p + ((ocg * g.kH + ky) * g.kW + kx) * g.inPlane
                                let offX = kx * g.dilW - g.padLeft
                                // ix for which ox = ix*s + offX is inside the output
                                let xr = validRange(outLen: g.inW, inLen: g.outW, stride: g.strideW, offset: offX)
                                for iy in 0..<g.inH {
                                    let oy = iy * g.strideH - g.padTop + ky * g.dilH
                                    if oy < 0 || oy >= g.outH { continue }
                                    let row = out + oy * g.outW + offX
                                    let s = src + iy * g.inW
                                    for ix in xr { row[ix * g.strideW] += s[ix] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// y[r, :] = act(x[r, :] · wᵀ + b) by sgemm; one row by sgemv (zoo's `zoo_gemv` where `useZooSgemm`; sgemm would pack, i.e. copy, the whole weight
    /// matrix for a single row: VGG's 25088×4096 layer reads 411 MB, and packing tripled its memory traffic).
    public static func linear(rows: Int, inFeatures: Int, outFeatures: Int, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
                              b: UnsafePointer<Float>?, act: Activation, y: UnsafeMutablePointer<Float>, threads: Int) {
        if rows == 1 && linearGemv && inFeatures * outFeatures >= 1 << 16 {
            setBLASThreads(1)
            let xs = SendConstPtr(x), ws = SendConstPtr(w), ys = SendPtr(y)
            let parts = threads * partsPerThread
            let chunk = (outFeatures + parts - 1) / parts
            parallelTasks((outFeatures + chunk - 1) / chunk, threads: threads) { t in
                let lo = t * chunk, hi = Swift.min(outFeatures, lo + chunk)
                if lo >= hi { return }
                if useZooSgemm {
                    zoo_gemv(Int32(hi - lo), Int32(inFeatures), ws.p + lo * inFeatures, Int32(inFeatures), xs.p, ys.p + lo)
                } else {
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(hi - lo), Int32(inFeatures), 1, ws.p + lo * inFeatures,
                                Int32(inFeatures), xs.p, 1, 0, ys.p + lo, 1)
                }
            }
        } else {
            sgemm(false, true, m: rows, n: outFeatures, k: inFeatures, a: x, lda: inFeatures, b: w, ldb: inFeatures, c: y,
                  ldc: outFeatures, threads: threads)
        }
        let bs = b.map(SendConstPtr.init), ys = SendPtr(y)
        parallelFor(rows, threads: threads, grain: Swift.max(1, 16384 / Swift.max(outFeatures, 1))) { range in
            for r in range {
                let row = ys.p + r * outFeatures
                if let bp = bs?.p { for o in 0..<outFeatures { row[o] += bp[o] } }
                applyActivation(act, row, count: outFeatures)
            }
        }
    }

    /// Off (env ZOO_LINEAR_GEMV=0): one-row linear layers go through sgemm too (for A/B).
    nonisolated(unsafe) static var linearGemv = ProcessInfo.processInfo.environment["ZOO_LINEAR_GEMV"] != "0"

    /// Adds a per-channel bias to each plane and applies the activation, in place.
    static func biasActivation(planes: Int, channels: Int, plane: Int, b: UnsafePointer<Float>?, act: Activation,
                               y: UnsafeMutablePointer<Float>, threads: Int) {
        if b == nil && act == .none { return }
        let bs = b.map(SendConstPtr.init), ys = SendPtr(y)
        parallelFor(planes, threads: threads, grain: Swift.max(1, 16384 / Swift.max(plane, 1))) { range in
            for p in range {
                let row = ys.p + p * plane
                if let bp = bs?.p {
                    let bv = bp[p % channels]
                    if bv != 0 { for i in 0..<plane { row[i] += bv } }
                }
                applyActivation(act, row, count: plane)
            }
        }
    }
}
