import CGemm
import Foundation

/// Training convolutions on small planes (resnet18's layer4 at 96² input: 3×3 planes of 512 channels) as one GEMM per
/// kernel tap over only the output positions where that tap reads inside the input. im2col + GEMM multiplies the zero
/// padding as well: on a 3×3 plane with padding 1, 32 of the 81 (tap, position) pairs (40%) read padding.
///
/// Tap t = (ky, kx) reaches a rectangle R_t of output positions. With the images as the innermost column index:
/// - forward: Z_t (O × |R_t|·N) = W_t (O × C, element (o, c) = w[o][c][t], packed in place through strides) ·
///   X_t (C × |R_t|·N, the input at the positions R_t shifted by the tap); y[n][o][p] = b[o] + Σ_{t: p ∈ R_t} Z_t[o][p, n];
/// - input gradient: the same product run backwards, dY's positions feeding dX's through the tap's offset negated and
///   W_tᵀ (C × O, again strides into w);
/// - weight gradient: dW_t (O × C) = dY_t (O × |R_t|·N) · X_tᵀ, a GEMM with K = |R_t|·N.
/// The reference is `referenceConv2dBackward` / `Reference.conv2d` (TapGemmTests).
enum TapGemm {
    /// `ZOO_TRAIN_TAPGEMM=0`: these convolutions take im2col + GEMM as before (A/B switch).
    nonisolated(unsafe) static var enabled = ProcessInfo.processInfo.environment["ZOO_TRAIN_TAPGEMM"] != "0"
    /// Used where at most this share of im2col's (tap, position) pairs read inside the input: 3×3 planes with padding 1
    /// (49 / 81 = 0.60) take it, 6×6 ones (0.79) do not. `ZOO_TRAIN_TAPGEMM_MAX` overrides.
    nonisolated(unsafe) static var maxUseful: Double =
        Double(ProcessInfo.processInfo.environment["ZOO_TRAIN_TAPGEMM_MAX"] ?? "") ?? 0.7

    /// The output rectangle [y0, y1) × [x0, x1) where tap (ky, kx) reads source row y + oy + sy·ky, column x + ox + sx·kx
    /// inside an hs × ws source.
    struct Rect { var y0, y1, x0, x1: Int; var count: Int { Swift.max(0, y1 - y0) * Swift.max(0, x1 - x0) } }
    @inline(__always) static func rect(hd: Int, wd: Int, hs: Int, ws: Int, offY: Int, offX: Int) -> Rect {
        // destination d reads source d + off; 0 ≤ d + off < hs
        Rect(y0: Swift.max(0, -offY), y1: Swift.min(hd, hs - offY), x0: Swift.max(0, -offX), x1: Swift.min(wd, ws - offX))
    }

    static func usefulFraction(_ g: ConvGeometry) -> Double {
        var valid = 0
        for ky in 0..<g.kh { for kx in 0..<g.kw {
            valid += rect(hd: g.oh, wd: g.ow, hs: g.h, ws: g.w, offY: ky - g.pt, offX: kx - g.pl).count
        } }
        return Double(valid) / Double(g.kh * g.kw * g.plane)
    }

    static func applies(_ g: ConvGeometry) -> Bool {
        enabled && g.groups == 1 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.n >= 1 && g.plane > 0
            && g.c >= 16 && g.o >= 16 && usefulFraction(g) <= maxUseful
    }

    /// src[n][k][q] (q < ps) as st[k][q·n + i]: each position's images side by side.
    static func positionsMajor(_ src: UnsafePointer<Float>, n: Int, k: Int, ps: Int, into st: UnsafeMutablePointer<Float>, threads: Int) {
        let s = SendConstPtr(src), d = SendPtr(st)
        Fast.parallelFor(k, threads: threads, grain: 16) { r in
            for kk in r {
                let row = d.p + kk * ps * n
                for i in 0..<n {
                    let from = s.p + (i * k + kk) * ps
                    for q in 0..<ps { row[q * n + i] = from[q] }
                }
            }
        }
    }

    /// Copies, for each row kk < k of st (k × ps·n, positions major), the columns of the positions a tap's rectangle reads
    /// (source positions (y + offY, x + offX) for (y, x) in r) into out[kk][·] (k × r.count·n), or transposed when `columnsMajor`
    /// (out[j][kk]).
    static func gatherTap(_ st: UnsafePointer<Float>, k: Int, ws: Int, ps: Int, n: Int, r: Rect, offY: Int, offX: Int,
                          into out: UnsafeMutablePointer<Float>, threads: Int) {
        let s = SendConstPtr(st), d = SendPtr(out)
        let cols = r.count * n, run = (r.x1 - r.x0) * n
        Fast.parallelFor(k, threads: threads, grain: 16) { range in
            for kk in range {
                var o = d.p + kk * cols
                for y in r.y0..<r.y1 {
                    let q = (y + offY) * ws + r.x0 + offX
                    o.update(from: s.p + kk * ps * n + q * n, count: run)
                    o += run
                }
            }
        }
    }

    /// dst[n][m][pd] = bias + Σ_t A_t · src over the taps, A_t (m × k) element (i, kk) at a[i·rs + kk·cs + t];
    /// destination position d reads source position d + (oy + sy·ky, ox + sx·kx).
    static func tapProducts(src: UnsafePointer<Float>, n: Int, k: Int, hs: Int, ws: Int,
                            dst: UnsafeMutablePointer<Float>, m: Int, hd: Int, wd: Int,
                            kh: Int, kw: Int, oy: Int, sy: Int, ox: Int, sx: Int,
                            a: UnsafePointer<Float>, rs: Int, cs: Int, bias: UnsafePointer<Float>?, threads: Int) {
        let ps = hs * ws, pd = hd * wd, taps = kh * kw
        let info = zoo_gemm_current()
        let mr = Int(info.mr), nr = Int(info.nr)
        let rects = (0..<taps).map { t in rect(hd: hd, wd: wd, hs: hs, ws: ws, offY: oy + sy * (t / kw), offX: ox + sx * (t % kw)) }
        let st = UnsafeMutablePointer<Float>.allocate(capacity: k * ps * n)
        defer { st.deallocate() }
        positionsMajor(src, n: n, k: k, ps: ps, into: st, threads: threads)
        // Per tap: B_t packed (k × |R_t|·n), Z_t (m × |R_t|·n).
        var bOff = [Int](), zOff = [Int]()
        var bTotal = 0, zTotal = 0, plainMax = 0
        for r in rects {
            let cols = r.count * n
            bOff.append(bTotal); zOff.append(zTotal)
            if cols > 0 { bTotal += zoo_gemm_packed_b_floats(Int32(k), Int32(cols)); zTotal += m * cols; plainMax = Swift.max(plainMax, k * cols) }
        }
        let pb = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(1, bTotal))
        let z = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(1, zTotal))
        let plain = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(1, plainMax))
        // A_t for every tap, packed in one pass over the weights (each (i, kk) holds its taps side by side).
        // (+32 floats: strides of whole megabytes put the taps' nine write streams in the same L1 sets)
        let paStride = zoo_gemm_packed_a_floats(Int32(m), Int32(k)) + 32
        let pa = UnsafeMutablePointer<Float>.allocate(capacity: taps * paStride)
        defer { pb.deallocate(); z.deallocate(); plain.deallocate(); pa.deallocate() }
        for t in 0..<taps where rects[t].count > 0 {
            let r = rects[t], cols = r.count * n
            gatherTap(st, k: k, ws: ws, ps: ps, n: n, r: r, offY: oy + sy * (t / kw), offX: ox + sx * (t % kw), into: plain, threads: threads)
            let np = (cols + nr - 1) / nr, pl = SendConstPtr(plain), pbs = SendPtr(pb + bOff[t])
            Fast.parallelFor(np, threads: threads) { q in
                zoo_gemm_pack_b(Int32(k), Int32(cols), pl.p, Int32(cols), pbs.p, Int32(q.lowerBound), Int32(q.upperBound))
            }
        }
        // Each worker: its MR panels of every A_t, its rows of every Z_t, then those rows of dst.
        let mp = (m + mr - 1) / mr
        let workers = Swift.max(1, Swift.min(threads, mp))
        let pas = SendPtr(pa), zs = SendPtr(z), pbc = SendConstPtr(pb), ac = SendConstPtr(a), ds = SendPtr(dst)
        let bs = bias.map(SendConstPtr.init)
        let rectBox = UnsafeSendableBox(rects), offs = UnsafeSendableBox((bOff, zOff))
        Fast.parallelTasks(workers, threads: workers) { w in
            let panels = Fast.band(mp, w, workers)
            if panels.isEmpty { return }
            let rects = rectBox.value, (bOff, zOff) = offs.value
            zoo_gemm_pack_a_taps(Int32(m), Int32(k), Int32(taps), ac.p, rs, cs, pas.p, paStride, Int32(panels.lowerBound), Int32(panels.upperBound))
            for t in 0..<taps where rects[t].count > 0 {
                let cols = rects[t].count * n
                zoo_gemm_compute(Int32(m), Int32(cols), Int32(k), pas.p + t * paStride, pbc.p + bOff[t], zs.p + zOff[t], Int32(cols), nil, 0, 0, 0,
                                 Int32(panels.lowerBound), Int32(panels.upperBound), 0, Int32((cols + nr - 1) / nr))
            }
            // dst rows of this worker's panels: bias plus each covering tap's column block.
            let rowLo = panels.lowerBound * mr, rowHi = Swift.min(m, panels.upperBound * mr)
            let acc = UnsafeMutablePointer<Float>.allocate(capacity: pd * n)
            defer { acc.deallocate() }
            for i in rowLo..<rowHi {
                acc.update(repeating: bs?.p[i] ?? 0, count: pd * n)
                for t in 0..<taps where rects[t].count > 0 {
                    let r = rects[t], cols = r.count * n, run = (r.x1 - r.x0) * n
                    var from = zs.p + zOff[t] + i * cols
                    for y in r.y0..<r.y1 {
                        let to = acc + (y * wd + r.x0) * n
                        for j in 0..<run { to[j] += from[j] }
                        from += run
                    }
                }
                for img in 0..<n {
                    let out = ds.p + (img * m + i) * pd
                    for p in 0..<pd { out[p] = acc[p * n + img] }
                }
            }
        }
    }

    static func forward(x: [Float], weight: [Float], bias: [Float]?, geometry g: ConvGeometry, threads: Int) -> [Float] {
        let count = g.n * g.o * g.plane
        return [Float](unsafeUninitializedCapacity: count) { yb, done in
            let y = yb.baseAddress!
            x.withUnsafeBufferPointer { xb in weight.withUnsafeBufferPointer { wb in
                func run(_ bp: UnsafePointer<Float>?) {
                    tapProducts(src: xb.baseAddress!, n: g.n, k: g.c, hs: g.h, ws: g.w, dst: y, m: g.o, hd: g.oh, wd: g.ow,
                                kh: g.kh, kw: g.kw, oy: -g.pt, sy: 1, ox: -g.pl, sx: 1,
                                a: wb.baseAddress!, rs: g.kh * g.kw * g.c, cs: g.kh * g.kw, bias: bp, threads: threads)
                }
                if let bias { bias.withUnsafeBufferPointer { run($0.baseAddress) } } else { run(nil) }
            } }
            done = count
        }
    }

    /// dX: dst = dX (C channels, h × w), src = dY (O channels, oh × ow); output position (iy, ix) reads dY at
    /// (iy + pt − ky, ix + pl − kx); A_t = W_tᵀ, element (c, o) = w[o][c][t].
    static func inputGradient(dy: [Float], weight: [Float], geometry g: ConvGeometry, threads: Int) -> [Float] {
        let count = g.n * g.c * g.h * g.w
        return [Float](unsafeUninitializedCapacity: count) { db, done in
            dy.withUnsafeBufferPointer { yb in weight.withUnsafeBufferPointer { wb in
                tapProducts(src: yb.baseAddress!, n: g.n, k: g.o, hs: g.oh, ws: g.ow, dst: db.baseAddress!, m: g.c, hd: g.h, wd: g.w,
                            kh: g.kh, kw: g.kw, oy: g.pt, sy: -1, ox: g.pl, sx: -1,
                            a: wb.baseAddress!, rs: g.kh * g.kw, cs: g.kh * g.kw * g.c, bias: nil, threads: threads)
            } }
            done = count
        }
    }

    /// dW[o][c][t] = Σ over the tap's rectangle and the images of dY[n][o][p] · X[n][c][p + offset].
    static func weightGradient(x: [Float], dy: [Float], geometry g: ConvGeometry, threads: Int) -> [Float] {
        let taps = g.kh * g.kw, n = g.n, ps = g.h * g.w, pd = g.plane
        let rects = (0..<taps).map { t in rect(hd: g.oh, wd: g.ow, hs: g.h, ws: g.w, offY: t / g.kw - g.pt, offX: t % g.kw - g.pl) }
        let xt = UnsafeMutablePointer<Float>.allocate(capacity: g.c * ps * n)
        let dt = UnsafeMutablePointer<Float>.allocate(capacity: g.o * pd * n)
        let maxCols = (rects.map(\.count).max() ?? 0) * n
        let aPlain = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(1, g.o * maxCols))
        let bPlain = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(1, g.c * maxCols))
        // dW_t at t·tapStride (+32 floats: whole-megabyte strides put the re-layout's nine read streams in the same L1 sets)
        let tapStride = g.o * g.c + 32
        let staged = UnsafeMutablePointer<Float>.allocate(capacity: taps * tapStride)
        defer { xt.deallocate(); dt.deallocate(); aPlain.deallocate(); bPlain.deallocate(); staged.deallocate() }
        x.withUnsafeBufferPointer { positionsMajor($0.baseAddress!, n: n, k: g.c, ps: ps, into: xt, threads: threads) }
        dy.withUnsafeBufferPointer { positionsMajor($0.baseAddress!, n: n, k: g.o, ps: pd, into: dt, threads: threads) }
        for t in 0..<taps {
            let r = rects[t], cols = r.count * n
            let wt = staged + t * tapStride
            if cols == 0 { wt.update(repeating: 0, count: g.o * g.c); continue }
            // dY over the rectangle (no offset) and X over the shifted rectangle, both k × cols with the same column order.
            gatherTap(dt, k: g.o, ws: g.ow, ps: pd, n: n, r: r, offY: 0, offX: 0, into: aPlain, threads: threads)
            gatherTap(xt, k: g.c, ws: g.w, ps: ps, n: n, r: r, offY: t / g.kw - g.pt, offX: t % g.kw - g.pl, into: bPlain, threads: threads)
            Fast.sgemm(false, true, m: g.o, n: g.c, k: cols, a: aPlain, lda: cols, b: bPlain, ldb: cols, c: wt, ldc: g.c, threads: threads)
        }
        // staged[t][o·C + c] → dW[o][c][t]
        let count = g.o * g.c * taps
        let sp = SendConstPtr(staged)
        return [Float](unsafeUninitializedCapacity: count) { wb, done in
            let d = SendPtr(wb.baseAddress!), oc = g.o * g.c
            Fast.parallelFor(oc, threads: threads, grain: 4096) { r in
                for i in r {
                    let out = d.p + i * taps
                    for t in 0..<taps { out[t] = sp.p[t * tapStride + i] }
                }
            }
            done = count
        }
    }
}
