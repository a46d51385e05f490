import Foundation
import COpenBLAS
import CZooKernels

/// 1×1 convolution weights (outC × inC) packed once for `Fast.pointwiseInPlace` (8-row panels, CZooKernels).
public final class PointwisePacked: @unchecked Sendable {
    public let m: Int, k: Int
    let p: UnsafeMutablePointer<Float>
    init(m: Int, k: Int, w: UnsafePointer<Float>) {
        self.m = m; self.k = k
        p = .allocate(capacity: zoo_pw_packed_floats(Int32(m), Int32(k)))
        zoo_pw_pack(Int32(m), Int32(k), w, p)
    }
    deinit { p.deallocate() }
}

extension Fast {
    /// A/B switch for 1×1 convolutions: `ZOO_PW=legacy` takes conv2d's general path (gather/scatter copies for small
    /// planes of a batch, whole-output bias/activation pass); `ZOO_PW=gather` gathers small planes of a batch into one
    /// GEMM here too. Default: the direct path, which measured faster on every mobilenet_v2 1×1 layer at batch 8
    /// (7×7 to 112×112 planes; bench/README.md).
    nonisolated(unsafe) static var pointwiseMode = ProcessInfo.processInfo.environment["ZOO_PW"] ?? ""

    static func pointwiseApplies(_ g: Conv2dGeometry) -> Bool { isPointwise(g) && g.groups == 1 && pointwiseMode != "legacy" }

    /// `ZOO_PW_STRIDED=0` sends strided 1×1 convolutions back to the packed-GEMM path (A/B switch).
    nonisolated(unsafe) static var stridedPointwiseOn = ProcessInfo.processInfo.environment["ZOO_PW_STRIDED"] != "0"

    /// A strided, unpadded 1×1 convolution (resnet's 1×1/2 downsample) is the stride-1 one on the input subsampled by the
    /// strides: the geometry of that one (input = output size), or nil. Every sampled position lies inside the input.
    static func subsampledPointwise(_ g: Conv2dGeometry) -> Conv2dGeometry? {
        guard stridedPointwiseOn, g.kH == 1, g.kW == 1, g.groups == 1, g.padTop == 0, g.padLeft == 0,
              g.strideH > 1 || g.strideW > 1, g.outH > 0, g.outW > 0,
              (g.outH - 1) * g.strideH < g.inH, (g.outW - 1) * g.strideW < g.inW else { return nil }
        var s = g
        s.inH = g.outH; s.inW = g.outW; s.strideH = 1; s.strideW = 1; s.dilH = 1; s.dilW = 1
        return pointwiseApplies(s) ? s : nil
    }

    /// Whether `conv2d` runs this strided 1×1 convolution as a subsampling copy plus `pointwiseInPlace` (given packed
    /// pointwise weights): 1×1/2 at 56² → 28², 64 → 128 channels took 0.11 ms on the packed GEMM (staging, im2col runs of 28
    /// floats, a 64-deep product) against onnxruntime's 0.05.
    static func stridedPointwiseApplies(_ g: Conv2dGeometry, act: Activation) -> Bool {
        subsampledPointwise(g).map { pointwiseInPlaceApplies($0, act: act) } ?? false
    }

    /// x[n, c, oy·sH, ox·sW] → dst[n, c, oy, ox] (batch × inC planes of outH × outW).
    static func subsample(_ g: Conv2dGeometry, x: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, threads: Int) {
        let xs = SendConstPtr(x), ds = SendPtr(dst)
        parallelFor(g.batch * g.inC, threads: threads, grain: 8) { r in
            for plane in r {
                let src = xs.p + plane * g.inPlane, d = ds.p + plane * g.outPlane
                for oy in 0..<g.outH {
                    let row = src + oy * g.strideH * g.inW, out = d + oy * g.outW
                    if g.strideW == 1 { out.update(from: row, count: g.outW); continue }
                    for ox in 0..<g.outW { out[ox] = row[ox * g.strideW] }
                }
            }
        }
    }

    /// Whether a 1×1 convolution runs on `pointwiseInPlace` (default on AVX-512F CPUs, for no activation, ReLU or clip).
    /// `ZOO_PW=blas` keeps the OpenBLAS direct path below (A/B); `legacy` and `gather` as before.
    static func pointwiseInPlaceApplies(_ g: Conv2dGeometry, act: Activation) -> Bool {
        guard pointwiseMode == "", pointwiseApplies(g), zoo_kernels_simd() != 0 else { return false }
        switch act {
        case .none, .relu, .clip: return true
        case .sigmoid, .tanh: return false
        }
    }

    /// `ZOO_PW_NARROW=0`: column tails of ≤ 2 (7×7 planes) on the masked tiles instead of one-column ymm passes (A/B;
    /// same results).
    static let narrowTails: Void = {
        if ProcessInfo.processInfo.environment["ZOO_PW_NARROW"] == "0" { zoo_pw_set_narrow(0) }
    }()

    /// How `pointwiseInPlace` splits one image: column parts (planes of ≥ 256) or 8-row panel parts (small planes),
    /// so that the whole call has `partsPerThread` tasks per worker when there is work enough (≥ ~100k multiply-adds each).
    static func pointwiseParts(_ g: Conv2dGeometry, threads: Int) -> (cols: Int, rows: Int) {
        if threads <= 1 { return (1, 1) }
        let n = g.outPlane, panels = (g.outC + 7) / 8, tiles = (n + 47) / 48
        let want = Swift.max(1, Swift.min(partsPerThread * threads, g.batch * g.outC * g.inC * n / 100_000))
        let per = (want + g.batch - 1) / g.batch
        if per <= 1 { return (1, 1) }
        return n >= 256 ? (Swift.min(tiles, per), 1) : (1, Swift.min(panels, per))
    }

    /// 1×1 stride-1 ungrouped convolution on CZooKernels' AVX-512F tiles (8 output channels × 48 pixels), reading the
    /// input planes in place (no packing, no im2col), weights packed once (`PointwisePacked`); bias, ReLU/clip and an
    /// optional residual `res` (same shape as y, added after the activation) in the tile's store. Tasks are
    /// (image, column part, row part) over the pool. Falls back to `pointwise` when the CPU lacks AVX-512F.
    static func pointwiseInPlace(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: PointwisePacked, b: UnsafePointer<Float>?,
                                 act: Activation, res: UnsafePointer<Float>? = nil, y: UnsafeMutablePointer<Float>, threads: Int) {
        _ = narrowTails
        let m = g.outC, k = g.inC, n = g.outPlane
        let (clamp, lo, hi): (Int32, Float, Float) = switch act {
        case .relu: (1, 0, .infinity)
        case let .clip(l, h): (1, l, h)
        default: (0, 0, 0)
        }
        let (cp, rp) = pointwiseParts(g, threads: threads)
        let tiles = (n + 47) / 48, panels = (m + 7) / 8
        let xs = SendConstPtr(x), ys = SendPtr(y), ws = SendConstPtr(w.p)
        let bs = b.map(SendConstPtr.init), rs = res.map(SendConstPtr.init)
        parallelTasks(g.batch * cp * rp, threads: threads) { t in
            let img = t / (cp * rp), c = (t / rp) % cp, r = t % rp
            let n0 = Swift.min(n, tiles * c / cp * 48), n1 = Swift.min(n, tiles * (c + 1) / cp * 48)
            let p0 = panels * r / rp, p1 = panels * (r + 1) / rp
            if n0 >= n1 || p0 >= p1 { return }
            let off = img * m * n
            _ = zoo_pw_compute(Int32(m), Int32(k), ws.p, xs.p + img * k * n, n, Int32(n0), Int32(n1), Int32(p0), Int32(p1),
                               bs?.p, clamp, lo, hi, rs.map { $0.p + off }, n, ys.p + off, n)
        }
    }

    /// Small planes of a batch are gathered side by side into one GEMM (as `convTile` plans, same scratch).
    static func pointwiseGathers(_ g: Conv2dGeometry) -> Bool { pointwiseMode == "gather" && convTile(g).images > 1 }

    /// Column blocks per image for the direct path: about 2048 columns each (the block's output stays in cache for
    /// the epilogue), at least `threads` tasks in all, never under 64 columns; widths are multiples of 16.
    static func pointwiseBlock(_ g: Conv2dGeometry, threads: Int) -> Int {
        let p = g.outPlane
        var parts = Swift.max(1, (p + 2047) / 2048)
        if g.batch * parts < threads { parts = (threads + g.batch - 1) / g.batch }
        parts = Swift.min(parts, Swift.max(1, p / 64))
        return Swift.min(p, ((p + parts - 1) / parts + 15) / 16 * 16)
    }

    /// 1×1 stride-1 ungrouped convolution, Y_n[outC, plane] = W[outC, inC] · X_n[inC, plane], with the bias and
    /// activation applied to each block while it is in cache. Direct path: tasks of (image, column block; output-channel
    /// block when there are fewer column tasks than workers, e.g. 7×7 planes at batch 1), each one
    /// single-threaded OpenBLAS sgemm writing straight into the output, spread over the workers. Gather path (small
    /// planes of a batch): images copied side by side into one GEMM, the result scattered back with the epilogue.
    static func pointwise(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>, b: UnsafePointer<Float>?,
                          act: Activation, y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>?, threads: Int) {
        let m = g.outC, k = g.inC, p = g.outPlane
        let xs = SendConstPtr(x), ws = SendConstPtr(w), ys = SendPtr(y)
        let bs = b.map(SendConstPtr.init)
        if pointwiseGathers(g), let scratch {
            let images = convTile(g).images
            var n0 = 0
            while n0 < g.batch {
                let nb = Swift.min(images, g.batch - n0)
                let cols = nb * p
                let col = SendPtr(scratch), tmp = SendPtr(scratch + k * cols)
                let base = n0
                parallelFor(k * nb, threads: threads, grain: 16) { r in
                    for i in r {
                        let c = i / nb, j = i % nb
                        (col.p + c * cols + j * p).update(from: xs.p + ((base + j) * k + c) * p, count: p)
                    }
                }
                gemm(m: m, n: cols, k: k, a: w, lda: k, b: scratch, ldb: cols, c: tmp.p, ldc: cols, threads: threads)
                parallelFor(m * nb, threads: threads, grain: 8) { r in
                    for i in r {
                        let oc = i / nb, j = i % nb
                        let dst = ys.p + ((base + j) * m + oc) * p
                        dst.update(from: tmp.p + oc * cols + j * p, count: p)
                        biasAct(dst, count: p, bias: bs?.p[oc] ?? 0, act: act)
                    }
                }
                n0 += nb
            }
            return
        }
        let bw = pointwiseBlock(g, threads: threads)
        let blocks = (p + bw - 1) / bw
        // Too few column tasks for the workers (small planes at batch 1): split the output channels too.
        let rowParts = g.batch * blocks < threads && m >= 32 ? Swift.min((threads + g.batch * blocks - 1) / (g.batch * blocks), m / 16) : 1
        let mc = ((m + rowParts - 1) / rowParts + 15) / 16 * 16
        let rows = (m + mc - 1) / mc
        setBLASThreads(1)
        parallelTasks(g.batch * blocks * rows, threads: threads) { t in
            let r0 = (t % rows) * mc, mr = Swift.min(mc, m - r0)
            let n = t / (rows * blocks), c0 = ((t / rows) % blocks) * bw
            let cw = Swift.min(bw, p - c0)
            let yb = ys.p + (n * m + r0) * p + c0
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(mr), Int32(cw), Int32(k), 1, ws.p + r0 * k, Int32(k),
                        xs.p + n * k * p + c0, Int32(p), 0, yb, Int32(p))
            if bs == nil && act == .none { return }
            for oc in 0..<mr { biasAct(yb + oc * p, count: cw, bias: bs?.p[r0 + oc] ?? 0, act: act) }
        }
    }

    /// row[i] = act(row[i] + bias) in place (the bias is skipped when zero, as `biasActivation` does).
    @inline(__always)
    static func biasAct(_ row: UnsafeMutablePointer<Float>, count: Int, bias: Float, act: Activation) {
        let lo: Float, hi: Float
        switch act {
        case .relu: lo = 0; hi = .infinity
        case let .clip(l, h): lo = l; hi = h
        default:
            if bias != 0 { for i in 0..<count { row[i] += bias } }
            applyActivation(act, row, count: count)
            return
        }
        let vlo = SIMD16<Float>(repeating: lo), vhi = SIMD16<Float>(repeating: hi), vb = SIMD16<Float>(repeating: bias)
        var i = 0
        if bias != 0 {
            while i + 16 <= count {
                let raw = UnsafeMutableRawPointer(row + i)
                var v = raw.loadUnaligned(as: SIMD16<Float>.self) + vb
                v.replace(with: vlo, where: v .< vlo)
                v.replace(with: vhi, where: v .> vhi)
                raw.storeBytes(of: v, as: SIMD16<Float>.self)
                i += 16
            }
            while i < count { row[i] += bias; i += 1 }
            i = count - count % 16
        }
        clamp(row + i, count: count - i, lo: lo, hi: hi)
    }
}
