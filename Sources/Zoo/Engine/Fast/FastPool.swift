import Foundation
import CZooKernels

/// Window taps k in 0..<kernel whose position base + k*dil lies in lo..<hi.
@inline(__always) func tapRange(base: Int, kernel: Int, dil: Int, lo: Int, hi: Int) -> Range<Int> {
    let first = Swift.max(0, ceilDiv(lo - base, dil))
    let last = Swift.min(kernel, floorDiv(hi - 1 - base, dil) + 1)
    return first < last ? first..<last : 0..<0
}

@inline(__always) func edgeMax(_ base: UnsafePointer<Float>, _ taps: Range<Int>, _ dil: Int) -> Float {
    var m = -Float.infinity
    for k in taps { let v = base[k * dil]; m = (m >= v || m != m) ? m : v }
    return m
}

extension Fast {
    /// Max pooling, separable: a horizontal pass (max over kx for every input row) into a per-worker buffer,
    /// then a vertical pass (max over ky) on whole output rows. NaN propagates as in PyTorch.
    /// `bands`: split in row bands where that applies (`Fast.rowBands`; the input was written in bands); returns whether it did.
    @discardableResult
    public static func maxPool2d(_ g: Pool2dGeometry, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int,
                                 bands: Bool = false) -> Bool {
        if maxPool3s2Applies(g) { return maxPool3s2(g, x: x, y: y, threads: threads, bands: bands) }
        if !maxPoolSeparable && (g.strideW == 1 || g.strideW == 2) && g.outH > 0 && g.outW > 0 {
            return maxPoolStaged(g, x: x, y: y, threads: threads, bands: bands)
        }
        let xs = SendConstPtr(x), ys = SendPtr(y)
        let xRanges = (0..<g.outW).map { tapRange(base: $0 * g.strideW - g.padLeft, kernel: g.kW, dil: g.dilW, lo: 0, hi: g.inW) }
        // Outputs oxA..<oxB have their whole window inside the row.
        let full = xRanges.indices.filter { xRanges[$0] == 0..<g.kW }
        let oxA = full.first ?? 0, oxB = full.isEmpty ? 0 : full.last! + 1
        parallelFor(g.planes, threads: threads, grain: Swift.max(1, 8192 / Swift.max(g.outH * g.outW * g.kH * g.kW, 1))) { range in
            let rowMax = UnsafeMutablePointer<Float>.allocate(capacity: g.inH * g.outW)
            defer { rowMax.deallocate() }
            for p in range {
                let plane = xs.p + p * g.inH * g.inW
                for iy in 0..<g.inH {
                    let src = plane + iy * g.inW, dst = rowMax + iy * g.outW
                    for ox in 0..<oxA { dst[ox] = edgeMax(src + ox * g.strideW - g.padLeft, xRanges[ox], g.dilW) }
                    for ox in oxA..<oxB {
                        let base = src + ox * g.strideW - g.padLeft
                        var m = base[0]
                        var kx = 1
                        while kx < g.kW { let v = base[kx * g.dilW]; m = (m >= v || m != m) ? m : v; kx += 1 }
                        dst[ox] = m
                    }
                    for ox in oxB..<g.outW { dst[ox] = edgeMax(src + ox * g.strideW - g.padLeft, xRanges[ox], g.dilW) }
                }
                let out = ys.p + p * g.outH * g.outW
                for oy in 0..<g.outH {
                    let by = oy * g.strideH - g.padTop
                    let dst = out + oy * g.outW
                    dst.update(repeating: -.infinity, count: g.outW)
                    for ky in tapRange(base: by, kernel: g.kH, dil: g.dilH, lo: 0, hi: g.inH) {
                        let src = rowMax + (by + ky * g.dilH) * g.outW
                        var ox = 0
                        while ox + 8 <= g.outW {
                            let v = UnsafeRawPointer(src + ox).loadUnaligned(as: SIMD8<Float>.self)
                            var m = UnsafeRawPointer(dst + ox).loadUnaligned(as: SIMD8<Float>.self)
                            m.replace(with: v, where: .!((m .>= v) .| (m .!= m)))
                            UnsafeMutableRawPointer(dst + ox).storeBytes(of: m, as: SIMD8<Float>.self)
                            ox += 8
                        }
                        while ox < g.outW { let v = src[ox], m = dst[ox]; dst[ox] = (m >= v || m != m) ? m : v; ox += 1 }
                    }
                }
            }
        }
        return false
    }

    /// `ZOO_AVGPOOL2=0` (A/B and tests): 2×2 stride-2 average pooling through the general window loop.
    nonisolated(unsafe) static var fastAvgPool2 = ProcessInfo.processInfo.environment["ZOO_AVGPOOL2"] != "0"

    /// Whether `avgPool2d` takes `zoo_avgpool2`: 2×2 windows at stride 2, no padding or dilation, every window whole.
    static func avgPool2Applies(_ g: Pool2dGeometry) -> Bool {
        fastAvgPool2 && g.kH == 2 && g.kW == 2 && g.strideH == 2 && g.strideW == 2 && g.dilH == 1 && g.dilW == 1
            && g.padTop == 0 && g.padLeft == 0 && g.padBottom == 0 && g.padRight == 0
            && 2 * g.outH <= g.inH && 2 * g.outW <= g.inW
    }

    /// LeNet's 2×2 stride-2 windows (no padding, none clipped) by `zoo_avgpool2` (`portable`: its plain-C body), planes
    /// split over the workers; both engines' kernel.
    static func avgPool2x2(_ g: Pool2dGeometry, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int,
                           portable: Bool = false) {
        let xs = SendConstPtr(x), ys = SendPtr(y), outPlane = g.outH * g.outW, p: Int32 = portable ? 1 : 0
        parallelFor(g.planes, threads: threads, grain: Swift.max(1, 8192 / Swift.max(1, outPlane))) { r in
            zoo_avgpool2(xs.p + r.lowerBound * g.inH * g.inW, ys.p + r.lowerBound * outPlane, r.count, g.inH, g.inW, g.outH, g.outW, p)
        }
    }

    /// Average pooling; divisor per PyTorch (see `Reference.avgPool2d`), computed from clipped tap ranges.
    public static func avgPool2d(_ g: Pool2dGeometry, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int) {
        let xs = SendConstPtr(x), ys = SendPtr(y)
        if avgPool2Applies(g) { avgPool2x2(g, x: x, y: y, threads: threads); return }
        parallelFor(g.planes, threads: threads, grain: Swift.max(1, 8192 / Swift.max(g.outH * g.outW * g.kH * g.kW, 1))) { range in
            for p in range {
                let plane = xs.p + p * g.inH * g.inW
                let out = ys.p + p * g.outH * g.outW
                for oy in 0..<g.outH {
                    let by = oy * g.strideH - g.padTop
                    let yr = tapRange(base: by, kernel: g.kH, dil: g.dilH, lo: 0, hi: g.inH)
                    let yp = tapRange(base: by, kernel: g.kH, dil: g.dilH, lo: -g.padTop, hi: g.inH + g.padBottom)
                    for ox in 0..<g.outW {
                        let bx = ox * g.strideW - g.padLeft
                        let xr = tapRange(base: bx, kernel: g.kW, dil: g.dilW, lo: 0, hi: g.inW)
                        var sum: Float = 0
                        for ky in yr {
                            let row = plane + (by + ky * g.dilH) * g.inW + bx
                            for kx in xr { sum += row[kx * g.dilW] }
                        }
                        let divisor: Int
                        if g.countIncludePad {
                            let xp = tapRange(base: bx, kernel: g.kW, dil: g.dilW, lo: -g.padLeft, hi: g.inW + g.padRight)
                            divisor = yp.count * xp.count
                        } else {
                            divisor = yr.count * xr.count
                        }
                        out[oy * g.outW + ox] = divisor > 0 ? sum / Float(divisor) : 0
                    }
                }
            }
        }
    }

    /// PyTorch adaptive average pooling (cell i covers [floor(i*H/o), ceil((i+1)*H/o))).
    public static func adaptiveAvgPool2d(planes: Int, inH: Int, inW: Int, outH: Int, outW: Int,
                                         x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int) {
        let xs = SendConstPtr(x), ys = SendPtr(y)
        let plane = inH * inW
        parallelFor(planes, threads: threads, grain: Swift.max(1, 16384 / Swift.max(plane, 1))) { range in
            for p in range {
                let src = xs.p + p * plane
                let dst = ys.p + p * outH * outW
                if outH == 1 && outW == 1 {
                    var acc = SIMD8<Float>(repeating: 0)
                    var i = 0
                    while i + 8 <= plane {
                        acc += UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self)
                        i += 8
                    }
                    var sum = acc.sum()
                    while i < plane { sum += src[i]; i += 1 }
                    dst[0] = sum / Float(plane)
                    continue
                }
                for oy in 0..<outH {
                    let y0 = (oy * inH) / outH, y1 = ((oy + 1) * inH + outH - 1) / outH
                    for ox in 0..<outW {
                        let x0 = (ox * inW) / outW, x1 = ((ox + 1) * inW + outW - 1) / outW
                        var sum: Float = 0
                        for iy in y0..<y1 { let row = src + iy * inW; for ix in x0..<x1 { sum += row[ix] } }
                        dst[oy * outW + ox] = sum / Float((y1 - y0) * (x1 - x0))
                    }
                }
            }
        }
    }

    public static func globalMaxPool(planes: Int, plane: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int) {
        let xs = SendConstPtr(x), ys = SendPtr(y)
        parallelFor(planes, threads: threads, grain: Swift.max(1, 16384 / Swift.max(plane, 1))) { range in
            for p in range {
                let src = xs.p + p * plane
                var m = -Float.infinity
                for i in 0..<plane { let v = src[i]; m = (m >= v || m != m) ? m : v }
                ys.p[p] = m
            }
        }
    }

    /// `ZOO_POOL=separable` runs the older separable max pooling for every geometry (A/B switch).
    nonisolated(unsafe) static var maxPoolSeparable = ProcessInfo.processInfo.environment["ZOO_POOL"] == "separable"

    /// `ZOO_POOL=staged` sends 3×3 stride-2 pooling through the staged path too (A/B switch; tests).
    nonisolated(unsafe) static var maxPool3s2On = ProcessInfo.processInfo.environment["ZOO_POOL"] != "staged"

    static func maxPool3s2Applies(_ g: Pool2dGeometry) -> Bool {
        maxPool3s2On && !maxPoolSeparable && stagedRowsInC && g.kH == 3 && g.kW == 3 && g.strideH == 2 && g.strideW == 2
            && g.dilH == 1 && g.dilW == 1 && g.padTop <= 1 && g.padLeft <= 1 && g.outH > 0 && g.outW > 0 && zoo_kernels_simd() == 2
    }

    /// 3×3 stride-2 max pooling (the stem pool of resnet, googlenet's pools) read straight from the planes, separably
    /// (`zoo_maxpool3s2_rows`): no staged copy of the plane. resnet18 b1's stem pool (64 × 112² → 56²) took 0.27–0.33 ms
    /// through the staged path, where onnxruntime takes 0.09–0.13. Same results bit for bit as the staged kernel.
    static func maxPool3s2(_ g: Pool2dGeometry, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int,
                           bands: Bool) -> Bool {
        let xs = SendConstPtr(x), ys = SendPtr(y)
        let inPlane = g.inH * g.inW, outPlane = g.outH * g.outW
        let work = 3 * ((g.outW + 15) / 16 * 16)
        func rows(_ p: Int, _ r: Range<Int>, _ wk: UnsafeMutablePointer<Float>) {
            _ = zoo_maxpool3s2_rows(xs.p + p * inPlane, g.inH, g.inW, g.outW, Int32(g.padTop), Int32(g.padLeft), r.lowerBound,
                                    r.upperBound, ys.p + p * outPlane, wk)
        }
        let parts = bands ? bandParts(batch: g.batch, threads: threads) : 0
        if parts > 0 && g.outH >= 2 * parts {
            // Row bands: worker t pools its band of rows of every plane.
            parallelTasks(parts, threads: threads) { t in
                ScratchPool.shared.with(work) { wk in for p in 0..<g.planes { rows(p, band(g.outH, t, parts), wk) } }
            }
            return true
        }
        parallelFor(g.planes, threads: threads, grain: Swift.max(1, 4096 / Swift.max(outPlane * 9, 1))) { range in
            ScratchPool.shared.with(work) { wk in for p in range { rows(p, 0..<g.outH, wk) } }
        }
        return false
    }

    /// Max pooling with horizontal stride 1 or 2 through the depthwise kernel's staging: each plane is copied once
    /// into a −∞-padded, stride-deinterleaved buffer (`DepthwiseStage`), then each output row is 16 (or 8) columns at
    /// a time, taps in (ky, kx) order with the same NaN-propagating rule as the scalar path.
    static func maxPoolStaged(_ g: Pool2dGeometry, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int,
                              bands: Bool = false) -> Bool {
        let sw = StageWindow(g)
        let st = DepthwiseStage(sw)
        let taps = g.kH * g.kW
        let offsets = sw.tapOffsets(st)
        let xs = SendConstPtr(x), ys = SendPtr(y)
        let inPlane = g.inH * g.inW, outPlane = g.outH * g.outW
        let parts = bands ? bandParts(batch: g.batch, threads: threads) : 0
        if parts > 0 && stagedRowsInC && zoo_kernels_simd() != 0 && g.outH >= 2 * parts {
            // Row bands: worker t stages and pools its band's window of every plane.
            offsets.withUnsafeBufferPointer { offp in
                let offs = UnsafeSendableBox(offp)
                parallelTasks(parts, threads: threads) { t in
                    let ob = band(g.outH, t, parts)
                    let window = ob.lowerBound * g.strideH..<(ob.upperBound - 1) * g.strideH + (g.kH - 1) * g.dilH + 1
                    let buf = UnsafeMutablePointer<Float>.allocate(capacity: st.workerFloats)
                    defer { buf.deallocate() }
                    prepareStage(st, buf: buf, fill: -.infinity)
                    let step = g.strideH * st.rowFloats
                    for p in 0..<g.planes {
                        stagePlane(sw, st, x: xs.p + p * inPlane, buf: buf, rows: window)
                        _ = zoo_maxpool_plane(buf + ob.lowerBound * step, offs.value.baseAddress!, Int32(taps), ob.count, g.outW, step,
                                              ys.p + p * outPlane + ob.lowerBound * g.outW)
                    }
                }
            }
            return true
        }
        offsets.withUnsafeBufferPointer { offp in
            let offs = UnsafeSendableBox(offp)
            parallelFor(g.planes, threads: threads, grain: Swift.max(1, 4096 / Swift.max(outPlane * taps, 1))) { range in
                let buf = UnsafeMutablePointer<Float>.allocate(capacity: st.workerFloats)
                defer { buf.deallocate() }
                prepareStage(st, buf: buf, fill: -.infinity)
                let tail = buf + st.rows * st.rowFloats + st.rowFloats
                for p in range {
                    stagePlane(sw, st, x: xs.p + p * inPlane, buf: buf)
                    let out = ys.p + p * outPlane
                    if stagedRowsInC && zoo_maxpool_plane(buf, offs.value.baseAddress!, Int32(taps), g.outH, g.outW,
                                                          g.strideH * st.rowFloats, out) != 0 { continue }
                    switch (st.width, taps) {
                    case (16, 9): maxRows16(sw, st, taps: 9, offs: offs.value, buf: buf, out: out, tail: tail)
                    case (16, _): maxRows16(sw, st, taps: taps, offs: offs.value, buf: buf, out: out, tail: tail)
                    case (_, 9): maxRows8(sw, st, taps: 9, offs: offs.value, buf: buf, out: out, tail: tail)
                    default: maxRows8(sw, st, taps: taps, offs: offs.value, buf: buf, out: out, tail: tail)
                    }
                }
            }
        }
        return false
    }

    @inline(__always)
    static func maxRows16(_ g: StageWindow, _ st: DepthwiseStage, taps: Int, offs: UnsafeBufferPointer<Int>, buf: UnsafePointer<Float>,
                          out: UnsafeMutablePointer<Float>, tail: UnsafeMutablePointer<Float>) {
        let o = offs.baseAddress!
        let fullBlocks = g.outW / 16
        for oy in 0..<g.outH {
            let base = buf + oy * g.strideH * st.rowFloats
            let row = out + oy * g.outW
            for bi in 0..<st.blocks {
                let col = UnsafeRawPointer(base + bi * 16)
                var m = col.loadUnaligned(fromByteOffset: o[0] * 4, as: SIMD16<Float>.self)
                for t in 1..<taps {
                    let v = col.loadUnaligned(fromByteOffset: o[t] * 4, as: SIMD16<Float>.self)
                    m.replace(with: v, where: .!((m .>= v) .| (m .!= m)))
                }
                if bi < fullBlocks {
                    UnsafeMutableRawPointer(row + bi * 16).storeBytes(of: m, as: SIMD16<Float>.self)
                } else {
                    UnsafeMutableRawPointer(tail).storeBytes(of: m, as: SIMD16<Float>.self)
                    (row + bi * 16).update(from: tail, count: g.outW - bi * 16)
                }
            }
        }
    }

    @inline(__always)
    static func maxRows8(_ g: StageWindow, _ st: DepthwiseStage, taps: Int, offs: UnsafeBufferPointer<Int>, buf: UnsafePointer<Float>,
                         out: UnsafeMutablePointer<Float>, tail: UnsafeMutablePointer<Float>) {
        let o = offs.baseAddress!
        let fullBlocks = g.outW / 8
        for oy in 0..<g.outH {
            let base = buf + oy * g.strideH * st.rowFloats
            let row = out + oy * g.outW
            for bi in 0..<st.blocks {
                let col = UnsafeRawPointer(base + bi * 8)
                var m = col.loadUnaligned(fromByteOffset: o[0] * 4, as: SIMD8<Float>.self)
                for t in 1..<taps {
                    let v = col.loadUnaligned(fromByteOffset: o[t] * 4, as: SIMD8<Float>.self)
                    m.replace(with: v, where: .!((m .>= v) .| (m .!= m)))
                }
                if bi < fullBlocks {
                    UnsafeMutableRawPointer(row + bi * 8).storeBytes(of: m, as: SIMD8<Float>.self)
                } else {
                    UnsafeMutableRawPointer(tail).storeBytes(of: m, as: SIMD8<Float>.self)
                    (row + bi * 8).update(from: tail, count: g.outW - bi * 8)
                }
            }
        }
    }
}
