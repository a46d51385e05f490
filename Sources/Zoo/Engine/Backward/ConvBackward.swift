import COpenBLAS
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

/// Columns for group `g`, samples n0..<n0+nb: col[(ci*kh + ky)*kw + kx][(b*oh + y)*ow + x].
func im2col(_ x: UnsafePointer<Float>, _ g: ConvGeometry, group: Int, n0: Int, nb: Int, _ col: UnsafeMutablePointer<Float>) {
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
func col2im(_ col: UnsafePointer<Float>, _ g: ConvGeometry, group: Int, n0: Int, nb: Int, _ dx: UnsafeMutablePointer<Float>) {
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

/// Backward convolution: returns (dx or nil, dweight or nil, dbias or nil).
public func trainConv2dBackward(x: [Float], weight: [Float], dy: [Float], geometry g: ConvGeometry, hasBias: Bool,
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
                    im2col(xp.baseAddress!, g, group: grp, n0: n0, nb: nb, cp.baseAddress!)
                    sgemm(false, true, g.og, g.kSize, cols, 1, gp.baseAddress!, cols, cp.baseAddress!, cols, 1,
                          dwp.baseAddress! + grp * g.og * g.kSize, g.kSize)
                }
                if needInput {
                    sgemm(true, false, g.kSize, cols, g.og, 1, wp.baseAddress! + grp * g.og * g.kSize, g.kSize,
                          gp.baseAddress!, cols, 0, cp.baseAddress!, cols)
                    col2im(cp.baseAddress!, g, group: grp, n0: n0, nb: nb, dxp.baseAddress!)
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
    dy.withUnsafeBufferPointer { dyp in
        if needInput {
            var d = [Float](repeating: 0, count: rows * inF)
            weight.withUnsafeBufferPointer { wp in d.withUnsafeMutableBufferPointer { dp in
                sgemm(false, false, rows, inF, outF, 1, dyp.baseAddress!, outF, wp.baseAddress!, inF, 0, dp.baseAddress!, inF)
            } }
            dx = d
        }
        if needParams {
            var d = [Float](repeating: 0, count: outF * inF)
            x.withUnsafeBufferPointer { xp in d.withUnsafeMutableBufferPointer { dp in
                sgemm(true, false, outF, inF, rows, 1, dyp.baseAddress!, outF, xp.baseAddress!, inF, 0, dp.baseAddress!, inF)
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
    /// Training multiplies small matrices (per layer, per batch); OpenBLAS' thread pool costs more than it
    /// gains there, especially on a shared machine. Uses one BLAS thread unless OPENBLAS_NUM_THREADS is set.
    public static func preferSingleBLASThread() {
        if ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] == nil { openblas_set_num_threads(1) }
    }
}
