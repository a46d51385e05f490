import CGemm
import CZooKernels
import Foundation

/// A weight matrix packed once for zoo's own GEMM (Sources/CGemm): MR-row panels blocked by KC.
public final class PackedMatrix: @unchecked Sendable {
    public let m: Int, k: Int
    let p: UnsafeMutablePointer<Float>
    init(m: Int, k: Int, a: UnsafePointer<Float>, lda: Int) {
        self.m = m; self.k = k
        let count = Swift.max(1, zoo_gemm_packed_a_floats(Int32(m), Int32(k)))
        p = .allocate(capacity: count)
        zoo_gemm_pack_a(Int32(m), Int32(k), a, Int32(lda), p)
    }
    deinit { p.deallocate() }
}

extension Fast {
    /// zoo's GEMM kernel: 2 = AVX-512 (8×48), 1 = AVX2+FMA (6×16), 0 = portable (4×8). Chosen once at run time
    /// from the CPU; `ZOO_GEMM_LEVEL=0|1` forces a lower one.
    public static let gemmLevel: Int = {
        let forced = ProcessInfo.processInfo.environment["ZOO_GEMM_LEVEL"].flatMap(Int.init) ?? -1
        return Int(zoo_gemm_select(Int32(forced)).level)
    }()
    static var gemmNR: Int { _ = gemmLevel; return Int(zoo_gemm_current().nr) }
    static var gemmMR: Int { _ = gemmLevel; return Int(zoo_gemm_current().mr) }

    /// Convolutions use the packed GEMM (im2col written straight into packed panels) instead of im2col + OpenBLAS
    /// when the executor supplies packed weights: by default only with the AVX-512 kernel. On AVX2 (Zen 3) OpenBLAS'
    /// kernel is faster for these shapes (`zoo-tool bench --gemm`, 1 thread: 0.58–0.95× of OpenBLAS's GFLOP/s) and
    /// resnet18 b1 ran faster without it (interleaved, 2026-12-04). `ZOO_PACKED_GEMM=1|0` forces it on or off.
    nonisolated(unsafe) public static var usePackedGemm: Bool = {
        switch ProcessInfo.processInfo.environment["ZOO_PACKED_GEMM"] {
        case "0": return false
        case "1": return true
        default: return gemmLevel >= 2
        }
    }()

    /// Floats of packed B for a k × n right-hand side.
    static func packedBFloats(k: Int, n: Int) -> Int {
        let nr = gemmNR
        return (n + nr - 1) / nr * nr * k
    }

    /// C[m×n] = act(A · B + bias) with A packed and B already in packed panels (`pb`), split over the workers.
    static func packedGemm(_ a: PackedMatrix, n: Int, pb: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int,
                           bias: UnsafePointer<Float>?, act: Activation, threads: Int) {
        let mr = gemmMR, nr = gemmNR
        let mp = (a.m + mr - 1) / mr, np = (n + nr - 1) / nr
        let (kind, lo, hi) = gemmEpilogue(act)
        let m = Int32(a.m), nn = Int32(n), k = Int32(a.k)
        let pas = SendConstPtr(a.p), pbs = SendConstPtr(pb), cs = SendPtr(c)
        let bs = bias.map(SendConstPtr.init)
        let work = a.m * n * a.k
        let parts = threads > 1 && work >= gemmSplitWork ? threads : 1
        if np >= 4 * parts || np >= mp {
            parallelTasks(parts, threads: threads) { t in
                let q0 = np * t / parts, q1 = np * (t + 1) / parts
                if q0 < q1 {
                    zoo_gemm_compute(m, nn, k, pas.p, pbs.p, cs.p, Int32(ldc), bs?.p, kind, lo, hi, 0, Int32(mp), Int32(q0), Int32(q1))
                }
            }
        } else {
            parallelTasks(parts, threads: threads) { t in
                let p0 = mp * t / parts, p1 = mp * (t + 1) / parts
                if p0 < p1 {
                    zoo_gemm_compute(m, nn, k, pas.p, pbs.p, cs.p, Int32(ldc), bs?.p, kind, lo, hi, Int32(p0), Int32(p1), 0, Int32(np))
                }
            }
        }
    }

    /// The GEMM store's activation: kind 1 clamps to [lo, hi]; sigmoid and tanh are applied afterwards by the caller.
    static func gemmEpilogue(_ act: Activation) -> (kind: Int32, lo: Float, hi: Float) {
        switch act {
        case .none: (0, 0, 0)
        case .relu: (1, 0, .infinity)
        case let .clip(l, h): (1, l, h)
        case .sigmoid, .tanh: (0, 0, 0)
        }
    }

    /// Packs a row-major k × n matrix B into panels (over the workers).
    static func packB(k: Int, n: Int, b: UnsafePointer<Float>, ldb: Int, pb: UnsafeMutablePointer<Float>, threads: Int) {
        let np = (n + gemmNR - 1) / gemmNR
        let bs = SendConstPtr(b), ps = SendPtr(pb)
        parallelFor(np, threads: threads, grain: Swift.max(1, 65536 / Swift.max(1, k * gemmNR))) { r in
            zoo_gemm_pack_b(Int32(k), Int32(n), bs.p, Int32(ldb), ps.p, Int32(r.lowerBound), Int32(r.upperBound))
        }
    }

    /// im2col of one image and group written straight into packed-B panels: element (r, j) of the k × plane
    /// column matrix lands at pb[(j / NR) * k * NR + r * NR + j % NR]; columns past the plane are zero. The panels
    /// are spread over the workers (`im2colPanels`); strided convolutions read rows staged by `stageRows`.
    static func im2colPacked(_ g: Conv2dGeometry, x: UnsafePointer<Float>, pb: UnsafeMutablePointer<Float>, threads: Int) {
        let np = (g.outPlane + gemmNR - 1) / gemmNR
        let staged = stagedRowsBuffer(g)
        defer { staged?.deallocate() }
        if let st = staged { stageRows(g, x: x, staged: st, threads: threads) }
        let xs = SendConstPtr(x), ps = SendPtr(pb), sts = staged.map(SendPtr.init)
        parallelFor(np, threads: threads) { range in
            im2colPanels(g, x: xs.p, staged: sts.map { UnsafePointer($0.p) }, pb: ps.p, p0: range.lowerBound, p1: range.upperBound)
        }
    }

    /// Strided convolutions gather im2col rows from a copy of each input row deinterleaved by the horizontal stride
    /// (run q holds padded columns q, q + s, q + 2s, …, zeros outside the input), so every row segment of the column
    /// matrix is one contiguous copy. `ZOO_IM2COL_STAGED=0` keeps the per-element gather (A/B).
    nonisolated(unsafe) static var im2colStaged = ProcessInfo.processInfo.environment["ZOO_IM2COL_STAGED"] != "0"

    /// The staging buffer of one image and group (`stageRows`), or nil when the convolution is not strided.
    static func stagedRowsBuffer(_ g: Conv2dGeometry) -> UnsafeMutablePointer<Float>? {
        let floats = stagedRowsFloats(g)
        return floats > 0 ? .allocate(capacity: floats) : nil
    }

    /// Floats of `stagedRowsBuffer`, or 0 when the convolution is not strided (no staging).
    static func stagedRowsFloats(_ g: Conv2dGeometry) -> Int {
        g.strideW > 1 && im2colStaged ? Swift.max(1, g.inCPerGroup * g.inH * g.strideW * stagedRunLength(g)) : 0
    }

    /// On: `im2colPanels` and `stageRows` run in AVX-512F C (Sources/CZooKernels/im2col.c) where the CPU has it; off
    /// (env ZOO_IM2COL=swift, tests): the Swift loops, the portable path and reference.
    nonisolated(unsafe) static var im2colC = ProcessInfo.processInfo.environment["ZOO_IM2COL"] != "swift"

    static func im2colGeom(_ g: Conv2dGeometry) -> zoo_im2col_geom {
        zoo_im2col_geom(inC: Int32(g.inCPerGroup), inH: Int32(g.inH), inW: Int32(g.inW), kH: Int32(g.kH), kW: Int32(g.kW),
                        strideH: Int32(g.strideH), strideW: Int32(g.strideW), padTop: Int32(g.padTop), padLeft: Int32(g.padLeft),
                        dilH: Int32(g.dilH), dilW: Int32(g.dilW), outW: Int32(g.outW), n: Int32(g.outPlane), nr: Int32(gemmNR),
                        runLen: Int32(stagedRunLength(g)))
    }

    /// Length of one deinterleaved run of a staged input row: output columns plus the widest kernel offset in runs.
    static func stagedRunLength(_ g: Conv2dGeometry) -> Int { g.outW + ((g.kW - 1) * g.dilW) / g.strideW + 1 }

    /// staged[(ic·inH + iy)·s·runLen + q·runLen + u] = x[ic][iy][u·s + q − padLeft], zero outside the row (s = strideW).
    static func stageRows(_ g: Conv2dGeometry, x: UnsafePointer<Float>, staged: UnsafeMutablePointer<Float>, threads: Int) {
        let sW = g.strideW, runLen = stagedRunLength(g), rowFloats = sW * runLen
        let xs = SendConstPtr(x), ss = SendPtr(staged)
        var cg = im2colGeom(g)
        let parts = bandParts(batch: g.batch, threads: threads)
        if parts > 0 && im2colC && zoo_kernels_simd() == 2 && g.inH >= 2 * parts {
            // Row bands: worker t stages its band of every channel's rows (the convolution's pixel panels split the same way).
            let cgs = UnsafeSendableBox(cg)
            parallelTasks(parts, threads: threads) { t in
                var c = cgs.value
                let r = band(g.inH, t, parts)
                for ic in 0..<g.inCPerGroup {
                    _ = zoo_stage_rows(&c, xs.p, ss.p, Int32(ic * g.inH + r.lowerBound), Int32(ic * g.inH + r.upperBound))
                }
            }
            return
        }
        parallelFor(g.inCPerGroup * g.inH, threads: threads, grain: 16) { range in
            if im2colC && zoo_stage_rows(&cg, xs.p, ss.p, Int32(range.lowerBound), Int32(range.upperBound)) != 0 { return }
            for item in range {
                let src = xs.p + item * g.inW
                let dst = ss.p + item * rowFloats
                for q in 0..<sW {
                    let d = dst + q * runLen
                    for u in 0..<runLen {
                        let ix = u * sW + q - g.padLeft
                        d[u] = ix >= 0 && ix < g.inW ? src[ix] : 0
                    }
                }
            }
        }
    }

    /// im2col of packed-B panels [p0, p1) only (columns [p0·NR, min(p1·NR, n))) into their places in `pb`, on the
    /// calling thread; strided convolutions read rows staged by `stageRows`.
    static func im2colPanels(_ g: Conv2dGeometry, x: UnsafePointer<Float>, staged: UnsafePointer<Float>?, pb: UnsafeMutablePointer<Float>,
                             p0: Int, p1: Int) {
        var cg = im2colGeom(g)
        if im2colC && zoo_im2col_panels(&cg, x, staged, pb, Int32(p0), Int32(p1)) != 0 { return }
        let kk = g.kH * g.kW
        let k = g.inCPerGroup * kk
        let nr = gemmNR, n = g.outPlane, np = (n + nr - 1) / nr
        let outW = g.outW, sW = g.strideW
        let runLen = stagedRunLength(g), rowFloats = sW * runLen
        let j0 = p0 * nr, j1 = Swift.min(p1 * nr, n)
        for r in 0..<k {
            let icg = r / kk, ky = (r % kk) / g.kW, kx = r % g.kW
            let base = pb + r * nr
            let offX = kx * g.dilW - g.padLeft
            let xr = validRange(outLen: outW, inLen: g.inW, stride: sW, offset: offX)
            let q = (kx * g.dilW) % sW, u0 = (kx * g.dilW) / sW
            var j = j0
            while j < j1 {
                let oy = j / outW, ox = j - oy * outW
                let p = j / nr, within = j - p * nr
                let len = Swift.min(outW - ox, nr - within, j1 - j)
                let d = base + p * k * nr + within
                let iy = oy * g.strideH - g.padTop + ky * g.dilH
                if iy < 0 || iy >= g.inH {
                    d.update(repeating: 0, count: len)
                } else if let st = staged {
                    d.update(from: st + (icg * g.inH + iy) * rowFloats + q * runLen + u0 + ox, count: len)
                } else {
                    let src = x + icg * g.inPlane + iy * g.inW + offX
                    let v0 = Swift.min(Swift.max(xr.lowerBound, ox), ox + len)
                    let v1 = Swift.max(Swift.min(xr.upperBound, ox + len), v0)
                    if v0 > ox { d.update(repeating: 0, count: v0 - ox) }
                    if sW == 1 {
                        if v1 > v0 { (d + (v0 - ox)).update(from: src + v0, count: v1 - v0) }
                    } else {
                        var o = v0
                        while o < v1 { d[o - ox] = src[o * sW]; o += 1 }
                    }
                    if v1 < ox + len { (d + (v1 - ox)).update(repeating: 0, count: ox + len - v1) }
                }
                j += len
            }
            let tail = n - (np - 1) * nr
            if p1 == np && tail < nr { (base + (np - 1) * k * nr + tail).update(repeating: 0, count: nr - tail) }
        }
    }

    /// Convolutions (not 1×1) run as blocks of packed-B panels small enough for L2 (~256 KB): each worker writes a
    /// block's im2col panels and multiplies them at once, so the column matrix is never written out whole and is read
    /// back from L2. Used when there are at least 4 blocks per worker; `ZOO_CONV_BLOCKED=0` turns it off (A/B).
    nonisolated(unsafe) static var convBlocked = ProcessInfo.processInfo.environment["ZOO_CONV_BLOCKED"] != "0"
    /// Below this many multiply-adds per image (and with at least one image per worker), `packedConv2d` gives each
    /// worker whole images; tests set it to 0 or `Int.max` to run both ways.
    nonisolated(unsafe) static var imageParallelWork = 1 << 21
    /// Floats of packed B per block (tests make it tiny so that small convolutions take the blocked path).
    nonisolated(unsafe) static var convBlockFloats = 1 << 16

    /// Convolution through the packed GEMM (one group, any kernel/stride/padding/dilation), bias and activation in the
    /// GEMM's epilogue. `scratch` must hold `packedBFloats(k: inC·kH·kW, n: outPlane)` floats.
    static func packedConv2d(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: PackedMatrix, b: UnsafePointer<Float>?, act: Activation,
                             y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, threads: Int) {
        let k = g.inCPerGroup * g.kH * g.kW, nr = gemmNR, np = (g.outPlane + nr - 1) / nr
        let blockPanels = Swift.max(1, convBlockFloats / Swift.max(1, k * nr))
        // A multiple of the workers, blocks' panels spread evenly (17 panels of 2 in 9 blocks gave one worker 10 and the
        // other 7; in 10 blocks: 8 and 9).
        let blocks = ((np + blockPanels - 1) / blockPanels + threads - 1) / Swift.max(1, threads) * Swift.max(1, threads)
        if convBlocked && !isPointwise(g) && blocks >= 4 * threads && np >= blocks {
            let staged = stagedRowsBuffer(g)
            defer { staged?.deallocate() }
            let mp = (w.m + gemmMR - 1) / gemmMR
            let (kind, lo, hi) = gemmEpilogue(act)
            let ws = SendConstPtr(w.p), ps = SendPtr(scratch), bs = b.map(SendConstPtr.init)
            let sts = staged.map(SendPtr.init)
            for n in 0..<g.batch {
                let xn = SendConstPtr(x + n * g.inC * g.inPlane)
                let ys = SendPtr(y + n * g.outC * g.outPlane)
                if let st = staged { stageRows(g, x: xn.p, staged: st, threads: threads) }
                parallelFor(blocks, threads: threads) { range in
                    for blk in range {
                        let p0 = np * blk / blocks, p1 = np * (blk + 1) / blocks
                        im2colPanels(g, x: xn.p, staged: sts.map { UnsafePointer($0.p) }, pb: ps.p, p0: p0, p1: p1)
                        zoo_gemm_compute(Int32(w.m), Int32(g.outPlane), Int32(k), ws.p, ps.p, ys.p, Int32(g.outPlane), bs?.p,
                                         kind, lo, hi, 0, Int32(mp), Int32(p0), Int32(p1))
                    }
                }
            }
            if act == .sigmoid || act == .tanh {
                biasActivation(planes: g.batch * g.outC, channels: g.outC, plane: g.outPlane, b: nil, act: act, y: y, threads: threads)
            }
            return
        }
        // Image n: its column panels into `pb`, then the product, on `t` workers.
        func image(_ n: Int, _ pb: UnsafeMutablePointer<Float>, _ t: Int) {
            let xn = x + n * g.inC * g.inPlane
            if isPointwise(g) {
                packB(k: g.inC, n: g.outPlane, b: xn, ldb: g.inPlane, pb: pb, threads: t)
            } else {
                im2colPacked(g, x: xn, pb: pb, threads: t)
            }
            packedGemm(w, n: g.outPlane, pb: pb, c: y + n * g.outC * g.outPlane, ldc: g.outPlane, bias: b, act: act, threads: t)
        }
        if threads > 1 && g.batch >= threads && w.m * g.outPlane * k < imageParallelWork {
            // Small planes (LeNet's 10×10, 100 columns: 3 panels): splitting one image's panels over the workers costs
            // more in hand-offs than the image's arithmetic, so the workers take whole images, each with its own panels.
            let floats = packedBFloats(k: k, n: g.outPlane)
            parallelFor(g.batch, threads: threads) { r in
                ScratchPool.shared.with(floats) { pb in for n in r { image(n, pb, 1) } }
            }
        } else if privatePanelsApply(g, m: w.m, k: k, threads: threads) {
            privatePanelsConv(g, x: x, w: w, b: b, act: act, y: y)
        } else {
            for n in 0..<g.batch { image(n, scratch, threads) }
        }
        if act == .sigmoid || act == .tanh {
            biasActivation(planes: g.batch * g.outC, channels: g.outC, plane: g.outPlane, b: nil, act: act, y: y, threads: threads)
        }
    }

    /// While the cores are distant (`rowBands`), a batch-1 convolution whose product `packedGemm` would split by output
    /// channels (few pixel panels: resnet18's layer3.0.conv1, 14² out, 5 panels for 32 channel panels) has every worker
    /// build all of the pixel panels itself and multiply its own half of the channels, instead of each packing half of
    /// the panels that both then read. Env ZOO_PACKED_PRIVATE=0 turns it off (A/B), =1 forces it (tests).
    nonisolated(unsafe) static var privatePanelsMode = ProcessInfo.processInfo.environment["ZOO_PACKED_PRIVATE"] ?? ""

    static func privatePanelsApply(_ g: Conv2dGeometry, m: Int, k: Int, threads: Int) -> Bool {
        guard privatePanelsMode != "0", !isPointwise(g), g.batch == 1, threads > 1, threads == spatialParts,
              privatePanelsMode == "1" || rowBands else { return false }
        let mp = (m + gemmMR - 1) / gemmMR, np = (g.outPlane + gemmNR - 1) / gemmNR
        return m * g.outPlane * k >= gemmSplitWork && np < 4 * threads && np < mp && mp >= threads
    }

    static func privatePanelsConv(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: PackedMatrix, b: UnsafePointer<Float>?,
                                  act: Activation, y: UnsafeMutablePointer<Float>) {
        let k = g.inCPerGroup * g.kH * g.kW, parts = spatialParts
        let mp = (w.m + gemmMR - 1) / gemmMR, np = (g.outPlane + gemmNR - 1) / gemmNR
        let (kind, lo, hi) = gemmEpilogue(act)
        let xs = SendConstPtr(x), ys = SendPtr(y), ws = SendConstPtr(w.p), bs = b.map(SendConstPtr.init)
        let stagedFloats = stagedRowsFloats(g), panelFloats = packedBFloats(k: k, n: g.outPlane)
        parallelTasks(parts, threads: parts) { t in
            ScratchPool.shared.with(panelFloats + stagedFloats) { pb in
                var staged: UnsafePointer<Float>? = nil
                if stagedFloats > 0 {
                    stageRows(g, x: xs.p, staged: pb + panelFloats, threads: 1)
                    staged = UnsafePointer(pb + panelFloats)
                }
                im2colPanels(g, x: xs.p, staged: staged, pb: pb, p0: 0, p1: np)
                let p0 = mp * t / parts, p1 = mp * (t + 1) / parts
                if p0 < p1 {
                    zoo_gemm_compute(Int32(w.m), Int32(g.outPlane), Int32(k), ws.p, pb, ys.p, Int32(g.outPlane), bs?.p, kind, lo, hi,
                                     Int32(p0), Int32(p1), 0, Int32(np))
                }
            }
        }
    }
}
