import CGemm
import Foundation

/// Training convolutions on small planes (resnet18's layer4 at 96² input: 3×3 planes of 512 channels) as one GEMM per
/// kernel tap over only the output positions where that tap reads inside the input. im2col + GEMM multiplies the zero
/// padding as well: on a 3×3 plane with padding 1, 32 of the 81 (tap, position) pairs (40%) read padding.
///
/// Tap t = (ky, kx) reaches the output positions R_t whose input position (s·oy + ky − pt, s·ox + kx − pl) is inside the
/// input. With the images as the innermost column index:
/// - forward: Z_t (O × |R_t|·N) = W_t (O × C, element (o, c) = w[o][c][t], packed in place through strides) ·
///   X_t (C × |R_t|·N, the input at R_t's input positions); y[n][o][p] = b[o] + Σ_{t: p ∈ R_t} Z_t[o][p, n];
/// - input gradient: the same product the other way, dY at R_t through W_tᵀ (C × O, again strides into w), added into dX
///   at the input positions;
/// - weight gradient: dW_t (O × C) = dY_t (O × |R_t|·N) · X_tᵀ, a GEMM with K = |R_t|·N.
/// The reference is `referenceConv2dBackward` / `Reference.conv2d` (TapGemmTests).
enum TapGemm {
    /// `ZOO_TRAIN_TAPGEMM=0`: these convolutions take im2col + GEMM as before (A/B switch).
    nonisolated(unsafe) static var enabled = ProcessInfo.processInfo.environment["ZOO_TRAIN_TAPGEMM"] != "0"
    /// Used where at most this share of im2col's (tap, position) pairs read inside the input: 3×3 planes with padding 1
    /// (49 / 81 = 0.60) take it, 6×6 ones (0.79) do not. `ZOO_TRAIN_TAPGEMM_MAX` overrides.
    nonisolated(unsafe) static var maxUseful: Double =
        Double(ProcessInfo.processInfo.environment["ZOO_TRAIN_TAPGEMM_MAX"] ?? "") ?? 0.7

    /// Tap (ky, kx)'s output positions whose input position (s·oy + ky − pt, s·ox + kx − pl) lies inside the input, row-major:
    /// `output` as indices into the output plane, `input` as indices into the input plane (same order).
    struct TapPositions { var output: [Int] = []; var input: [Int] = [] }
    static func positions(_ g: ConvGeometry, ky: Int, kx: Int) -> TapPositions {
        var r = TapPositions()
        for oy in 0..<g.oh {
            let iy = oy * g.sh + ky - g.pt
            if iy < 0 || iy >= g.h { continue }
            for ox in 0..<g.ow {
                let ix = ox * g.sw + kx - g.pl
                if ix < 0 || ix >= g.w { continue }
                r.output.append(oy * g.ow + ox); r.input.append(iy * g.w + ix)
            }
        }
        return r
    }
    static func positions(_ g: ConvGeometry) -> [TapPositions] {
        (0..<g.kh * g.kw).map { t in positions(g, ky: t / g.kw, kx: t % g.kw) }
    }

    /// The share of im2col's (tap, output position) pairs that read inside the input (rows and columns counted apart).
    static func usefulFraction(_ g: ConvGeometry) -> Double {
        func inside(_ outLen: Int, _ inLen: Int, _ stride: Int, _ offset: Int) -> Int {
            (0..<outLen).reduce(0) { n, o in let i = o * stride + offset; return n + (i >= 0 && i < inLen ? 1 : 0) }
        }
        let rows = (0..<g.kh).reduce(0) { $0 + inside(g.oh, g.h, g.sh, $1 - g.pt) }
        let cols = (0..<g.kw).reduce(0) { $0 + inside(g.ow, g.w, g.sw, $1 - g.pl) }
        return Double(rows * cols) / Double(g.kh * g.kw * g.plane)
    }

    /// Strided convolutions (other than 1×1) where at most this share is real (`ZOO_TRAIN_TAPGEMM_STRIDED_MAX`): their im2col
    /// path gathers every other input column and runs slower per product than the stride-1 one. 0.8 takes resnet18's
    /// layer4.0.conv1 at 96² (6² → 3², 79% real; b32 backward 13.7–14.9 → 9.1–11.8 ms, forward 5.5–6.1 → 4.0–4.7 in
    /// interleaved profiles); not layer3.0.conv1 (89%: backward 11.5–13.0 against 10.9–14.5, forward slower) nor
    /// layer2.0.conv1 (94%, 12² planes: backward 11.9–15.6 against 18.3–21.8).
    nonisolated(unsafe) static var maxUsefulStrided: Double =
        Double(ProcessInfo.processInfo.environment["ZOO_TRAIN_TAPGEMM_STRIDED_MAX"] ?? "") ?? 0.8

    static func applies(_ g: ConvGeometry) -> Bool {
        guard enabled, g.groups == 1, g.sh >= 1, g.sw >= 1, g.dh == 1, g.dw == 1, g.n >= 1, g.plane > 0, g.c >= 16, g.o >= 16 else { return false }
        let strided = (g.sh > 1 || g.sw > 1) && g.kh * g.kw > 1
        return usefulFraction(g) <= (strided ? maxUsefulStrided : maxUseful)
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

    /// Copies, for each row kk < k of st (k × ps·n, positions major), the columns of positions `pos` in order into
    /// out[kk][·] (k × pos.count·n).
    static func gatherTap(_ st: UnsafePointer<Float>, k: Int, ps: Int, n: Int, pos: [Int], into out: UnsafeMutablePointer<Float>, threads: Int) {
        let s = SendConstPtr(st), d = SendPtr(out), cols = pos.count * n
        let pb = UnsafeSendableBox(pos)
        Fast.parallelFor(k, threads: threads, grain: 16) { range in
            let pos = pb.value
            for kk in range {
                var o = d.p + kk * cols
                let row = s.p + kk * ps * n
                for q in pos { o.update(from: row + q * n, count: n); o += n }
            }
        }
    }

    /// dst[n][m][pd] = bias + Σ_t A_t · src over the taps, A_t (m × k) element (i, kk) at a[i·rs + kk·cs + t]: tap t reads
    /// source positions srcPos[t] (plane of ps) and adds into destination positions dstPos[t] (plane of pd), pairwise.
    static func tapProducts(src: UnsafePointer<Float>, n: Int, k: Int, ps: Int, srcPos: [[Int]],
                            dst: UnsafeMutablePointer<Float>, m: Int, pd: Int, dstPos: [[Int]],
                            a: UnsafePointer<Float>, rs: Int, cs: Int, bias: UnsafePointer<Float>?, threads: Int) {
        let taps = srcPos.count
        let info = zoo_gemm_current()
        let mr = Int(info.mr), nr = Int(info.nr)
        let st = UnsafeMutablePointer<Float>.allocate(capacity: k * ps * n)
        defer { st.deallocate() }
        positionsMajor(src, n: n, k: k, ps: ps, into: st, threads: threads)
        // Per tap: B_t packed (k × |positions|·n), Z_t (m × |positions|·n).
        var bOff = [Int](), zOff = [Int]()
        var bTotal = 0, zTotal = 0, plainMax = 0
        for pos in srcPos {
            let cols = pos.count * n
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
        for t in 0..<taps where !srcPos[t].isEmpty {
            let cols = srcPos[t].count * n
            gatherTap(st, k: k, ps: ps, n: n, pos: srcPos[t], into: plain, threads: threads)
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
        let posBox = UnsafeSendableBox(dstPos), offs = UnsafeSendableBox((bOff, zOff))
        Fast.parallelTasks(workers, threads: workers) { w in
            let panels = Fast.band(mp, w, workers)
            if panels.isEmpty { return }
            let dstPos = posBox.value, (bOff, zOff) = offs.value
            zoo_gemm_pack_a_taps(Int32(m), Int32(k), Int32(taps), ac.p, rs, cs, pas.p, paStride, Int32(panels.lowerBound), Int32(panels.upperBound))
            for t in 0..<taps where !dstPos[t].isEmpty {
                let cols = dstPos[t].count * n
                zoo_gemm_compute(Int32(m), Int32(cols), Int32(k), pas.p + t * paStride, pbc.p + bOff[t], zs.p + zOff[t], Int32(cols), nil, 0, 0, 0,
                                 Int32(panels.lowerBound), Int32(panels.upperBound), 0, Int32((cols + nr - 1) / nr))
            }
            // dst rows of this worker's panels: bias plus each tap's columns at its destination positions.
            let rowLo = panels.lowerBound * mr, rowHi = Swift.min(m, panels.upperBound * mr)
            let acc = UnsafeMutablePointer<Float>.allocate(capacity: pd * n)
            defer { acc.deallocate() }
            for i in rowLo..<rowHi {
                acc.update(repeating: bs?.p[i] ?? 0, count: pd * n)
                for t in 0..<taps where !dstPos[t].isEmpty {
                    var from = zs.p + zOff[t] + i * dstPos[t].count * n
                    for q in dstPos[t] {
                        let to = acc + q * n
                        for j in 0..<n { to[j] += from[j] }
                        from += n
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
        let pos = positions(g)
        return [Float](unsafeUninitializedCapacity: count) { yb, done in
            let y = yb.baseAddress!
            x.withUnsafeBufferPointer { xb in weight.withUnsafeBufferPointer { wb in SharedForward.withOptional(bias) { bp in
                tapProducts(src: xb.baseAddress!, n: g.n, k: g.c, ps: g.h * g.w, srcPos: pos.map(\.input),
                            dst: y, m: g.o, pd: g.plane, dstPos: pos.map(\.output),
                            a: wb.baseAddress!, rs: g.kh * g.kw * g.c, cs: g.kh * g.kw, bias: bp, threads: threads)
            } } }
            done = count
        }
    }

    /// dX: each tap carries dY at its output positions back to its input positions through A_t = W_tᵀ (element (c, o) = w[o][c][t]).
    static func inputGradient(dy: [Float], weight: [Float], geometry g: ConvGeometry, threads: Int) -> [Float] {
        let count = g.n * g.c * g.h * g.w
        let pos = positions(g)
        return [Float](unsafeUninitializedCapacity: count) { db, done in
            let d = db.baseAddress!
            dy.withUnsafeBufferPointer { yb in weight.withUnsafeBufferPointer { wb in
                tapProducts(src: yb.baseAddress!, n: g.n, k: g.o, ps: g.plane, srcPos: pos.map(\.output),
                            dst: d, m: g.c, pd: g.h * g.w, dstPos: pos.map(\.input),
                            a: wb.baseAddress!, rs: g.kh * g.kw, cs: g.kh * g.kw * g.c, bias: nil, threads: threads)
            } }
            done = count
        }
    }

    /// dW[o][c][t] = Σ over the tap's positions and the images of dY[n][o][p] · X[n][c][input position of p].
    static func weightGradient(x: [Float], dy: [Float], geometry g: ConvGeometry, threads: Int) -> [Float] {
        let taps = g.kh * g.kw, n = g.n, ps = g.h * g.w, pd = g.plane
        let pos = positions(g)
        let xt = UnsafeMutablePointer<Float>.allocate(capacity: g.c * ps * n)
        let dt = UnsafeMutablePointer<Float>.allocate(capacity: g.o * pd * n)
        let maxCols = (pos.map(\.output.count).max() ?? 0) * n
        let aPlain = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(1, g.o * maxCols))
        let bPlain = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(1, g.c * maxCols))
        // dW_t at t·tapStride (+32 floats: whole-megabyte strides put the re-layout's nine read streams in the same L1 sets)
        let tapStride = g.o * g.c + 32
        let staged = UnsafeMutablePointer<Float>.allocate(capacity: taps * tapStride)
        defer { xt.deallocate(); dt.deallocate(); aPlain.deallocate(); bPlain.deallocate(); staged.deallocate() }
        x.withUnsafeBufferPointer { positionsMajor($0.baseAddress!, n: n, k: g.c, ps: ps, into: xt, threads: threads) }
        dy.withUnsafeBufferPointer { positionsMajor($0.baseAddress!, n: n, k: g.o, ps: pd, into: dt, threads: threads) }
        for t in 0..<taps {
            let cols = pos[t].output.count * n
            let wt = staged + t * tapStride
            if cols == 0 { wt.update(repeating: 0, count: g.o * g.c); continue }
            // dY at the tap's output positions and X at their input positions, both k × cols in the same column order.
            gatherTap(dt, k: g.o, ps: pd, n: n, pos: pos[t].output, into: aPlain, threads: threads)
            gatherTap(xt, k: g.c, ps: ps, n: n, pos: pos[t].input, into: bPlain, threads: threads)
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
