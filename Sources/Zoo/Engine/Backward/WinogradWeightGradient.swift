import CZooKernels
import Foundation

// Weight gradient of a 3×3 stride-1 convolution by Winograd F(2×2,3×3) (Lavin & Gray's transforms, run backwards).
//
// The forward pass per 2×2 output tile t is Y_t = Aᵀ [ U ⊙ V_t ] A with U = G g Gᵀ (g one 3×3 kernel) and
// V_t = Bᵀ d_t B (d_t the 4×4 input tile). Its adjoint with respect to g is
//     dW[o][c] = Gᵀ [ Σ_t (A dY_t[o] Aᵀ) ⊙ V_t[c] ] G,
// so the sum over the tiles of all images is, per position ξ of the 4×4 product, one GEMM
//     dU_ξ (outC × inC) = P_ξ (outC × tiles) · V_ξᵀ (tiles × inC),   P_ξ[o][t] = (A dY_t[o] Aᵀ)_ξ,
// 16 · outC · inC · tiles multiply-adds against im2col's 36: 2.25× fewer. Output tiles past the plane's edge have
// dY = 0 there, and input rows and columns outside the image are zero (the padding), so ragged planes need no
// special case. The plain reference is `referenceConv2dBackward`.

/// Does this convolution's weight gradient run by Winograd? 3×3, stride 1, undilated, ungrouped, at least 16 input
/// and output channels and `trainWinogradWeightMinTiles` output tiles; `TrainFast` switch "winodw".
/// Off by default where `Fast.sgemm` runs on zoo's kernel (OpenBLAS misdetecting the CPU): its 16 GEMMs per layer have
/// a long K (the tiles) and both operands packed per call, and on the AVX-512 Xeon of 2026-12-05 a resnet18 b32 96²
/// step took 452–456 ms with it and 427–435 ms with the im2col weight gradient (interleaved, 3 rounds each, twice).
/// `ZOO_TRAIN_WINO_DW=1|0` forces it.
let winogradWeightGradientWanted: Bool = {
    switch ProcessInfo.processInfo.environment["ZOO_TRAIN_WINO_DW"] {
    case "1": return true
    case "0": return false
    default: return !Fast.useZooSgemm
    }
}()

func convWeightGradientByWinograd(_ g: ConvGeometry) -> Bool {
    guard TrainFast.enabled("winodw"), winogradWeightGradientWanted, g.kh == 3, g.kw == 3, g.sh == 1, g.sw == 1, g.dh == 1, g.dw == 1, g.groups == 1,
          g.c >= 16, g.o >= 16, g.oh >= 1, g.ow >= 1 else { return false }
    let tiles = g.n * ((g.oh + 1) / 2) * ((g.ow + 1) / 2)
    // The 2×2 tiles of a plane with odd sides are partly padding: a 3×3 plane takes 4 tiles (16 outputs for 9).
    let useful = Double(g.n * g.oh * g.ow) / Double(4 * tiles)
    return tiles >= trainWinogradWeightMinTiles && useful >= 0.75
}

/// Fewest output tiles (all images) for the Winograd weight gradient (ZOO_TRAIN_WINO_DW_MIN_TILES overrides).
nonisolated(unsafe) var trainWinogradWeightMinTiles: Int = {
    if let s = ProcessInfo.processInfo.environment["ZOO_TRAIN_WINO_DW_MIN_TILES"], let n = Int(s) { return n }
    return 128
}()

/// Floats of one worker's V and P scratch in `winogradWeightGradient` (a chunk of images is sized to it).
nonisolated(unsafe) var winogradWeightChunkFloats = 1 << 20

/// dW (outC × inC × 3 × 3) of a 3×3 stride-1 convolution from its input x and output gradient dy. The images are
/// split over the workers; each transforms a chunk of its images (V of x, P of dy) and adds the 16 products into
/// its own dU; the parts are summed and transformed back to 3×3 at the end.
/// `cTransforms`: the tile transforms in C (AVX-512F or AVX2+FMA when the CPU has them); off: Swift (the tests' reference).
func winogradWeightGradient(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, geometry g: ConvGeometry, threads: Int,
                            cTransforms: Bool = true) -> [Float] {
    precondition(g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.groups == 1)
    let tilesW = (g.ow + 1) / 2, tilesH = (g.oh + 1) / 2, perImage = tilesW * tilesH
    let workers = max(1, min(threads, g.n))
    let perWorker = (g.n + workers - 1) / workers
    let most = max(1, min(perWorker, winogradWeightChunkFloats / max(1, 16 * (g.c + g.o) * perImage)))
    let chunk = (perWorker + (perWorker + most - 1) / most - 1) / ((perWorker + most - 1) / most)   // even chunks
    let ucount = 16 * g.o * g.c
    let useC = cTransforms && Fast.winogradCTransforms && zoo_kernels_simd() != 0 && tilesW <= 512
    let wp = 2 * tilesW + 2                       // padded row: the columns the tiles of a row read
    let cScratch = useC ? Int(zoo_wino_scratch_floats(2, Int32(tilesW))) : 0
    let vFloats = 16 * g.c * chunk * perImage, pFloats = 16 * g.o * chunk * perImage
    let rowFloats = 4 * wp + cScratch + 4 * (tilesW + 1)
    let per = vFloats + pFloats + ucount + rowFloats
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: workers * per)
    defer { scratch.deallocate() }
    let sp = SendPtr(scratch), xs = SendConstPtr(x), ds = SendConstPtr(dy)
    Fast.parallelFor(workers, threads: workers) { range in
        for wk in range {
            let v = sp.p + wk * per, p = v + vFloats, du = p + pFloats, rows = du + ucount
            du.update(repeating: 0, count: ucount)
            let lo = wk * g.n / workers, hi = (wk + 1) * g.n / workers
            var n0 = lo
            while n0 < hi {
                let nb = min(chunk, hi - n0)
                let nt = nb * perImage
                let vStride = g.c * nt, pStride = g.o * nt
                // V[ξ][c][t] = (Bᵀ d_t B)_ξ
                for ic in 0..<g.c {
                    for s in 0..<nb {
                        let plane = xs.p + ((n0 + s) * g.c + ic) * g.h * g.w
                        for ty in 0..<tilesH {
                            let pad = rows
                            Fast.winogradPaddedRows(plane, h: g.h, w: g.w, top: 2 * ty - g.pt, padLeft: g.pl, rows: 4, width: wp, into: pad)
                            let out = v + ic * nt + s * perImage + ty * tilesW
                            if useC {
                                _ = zoo_wino_input_row(2, pad, wp, Int32(tilesW), out, vStride, pad + 4 * wp)
                            } else {
                                winogradInputRow2(pad, wp, tilesW, out, vStride)
                            }
                        }
                    }
                }
                // P[ξ][o][t] = (A dY_t Aᵀ)_ξ
                for oc in 0..<g.o {
                    for s in 0..<nb {
                        let plane = ds.p + ((n0 + s) * g.o + oc) * g.plane
                        for ty in 0..<tilesH {
                            let out = p + oc * nt + s * perImage + ty * tilesW
                            let first = plane + 2 * ty * g.ow, second = 2 * ty + 1 < g.oh ? plane + (2 * ty + 1) * g.ow : nil
                            if cTransforms {
                                zoo_wino_grad_row2(first, second, Int32(g.ow), Int32(tilesW), out, pStride, 0)
                            } else {
                                winogradGradientRow2(first, second: second, width: g.ow, tiles: tilesW, out: out, stride: pStride, scratch: rows)
                            }
                        }
                    }
                }
                // dU_ξ += P_ξ · V_ξᵀ
                for xi in 0..<16 {
                    Fast.sgemm(false, true, m: g.o, n: g.c, k: nt, a: p + xi * pStride, lda: nt, b: v + xi * vStride, ldb: nt,
                               beta: 1, c: du + xi * g.o * g.c, ldc: g.c, threads: 1)
                }
                n0 += nb
            }
        }
    }
    // dW[o][c] = Gᵀ (Σ_workers dU[·][o][c]) G
    let oc = g.o * g.c
    return [Float](unsafeUninitializedCapacity: oc * 9) { b, done in
        let out = SendPtr(b.baseAddress!)
        Fast.parallelFor(g.o, threads: threads, grain: max(1, 4096 / max(1, g.c))) { r in
            let u = UnsafeMutablePointer<Float>.allocate(capacity: 16)
            defer { u.deallocate() }
            for o in r {
                for c in 0..<g.c {
                    let e = o * g.c + c
                    for xi in 0..<16 {
                        var acc: Float = 0
                        for wk in 0..<workers { acc += sp.p[wk * per + vFloats + pFloats + xi * oc + e] }
                        u[xi] = acc
                    }
                    winogradGradientOutput(UnsafePointer(u), out.p + e * 9)
                }
            }
        }
        done = oc * 9
    }
}

/// V of one row of F(2×2) tiles (Swift; the AVX-512 C transform's twin): `rows` holds the 4 zero-padded input rows
/// (stride `rowStride`); out[(i·4 + j)·stride + t] = (Bᵀ d_t B)[i][j], Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]].
func winogradInputRow2(_ rows: UnsafePointer<Float>, _ rowStride: Int, _ tiles: Int, _ out: UnsafeMutablePointer<Float>, _ stride: Int) {
    @inline(__always) func dB(_ q: UnsafePointer<Float>) -> SIMD4<Float> { SIMD4(q[0] - q[2], q[1] + q[2], q[2] - q[1], q[1] - q[3]) }
    for t in 0..<tiles {
        let e0 = dB(rows + 2 * t), e1 = dB(rows + rowStride + 2 * t)
        let e2 = dB(rows + 2 * rowStride + 2 * t), e3 = dB(rows + 3 * rowStride + 2 * t)
        let v0 = e0 - e2, v1 = e1 + e2, v2 = e2 - e1, v3 = e1 - e3
        for j in 0..<4 {
            out[j * stride + t] = v0[j]; out[(4 + j) * stride + t] = v1[j]
            out[(8 + j) * stride + t] = v2[j]; out[(12 + j) * stride + t] = v3[j]
        }
    }
}

/// P of one row of F(2×2) tiles of dy: `first`/`second` are the tile row's two dy rows (`second` nil past the plane),
/// `width` their length. out[(i·4 + j)·stride + t] = (A dY_t Aᵀ)[i][j] with A = [[1,0],[1,1],[1,−1],[0,−1]]
/// (each pair (p, q) becomes (p, p + q, p − q, −q), first down the columns, then along the rows). `scratch` holds
/// 4·(tiles + 1) floats: the two rows deinterleaved into even and odd columns, zero past `width`.
@inline(__always)
func winogradGradientRow2(_ first: UnsafePointer<Float>, second: UnsafePointer<Float>?, width: Int, tiles: Int,
                          out: UnsafeMutablePointer<Float>, stride: Int, scratch: UnsafeMutablePointer<Float>) {
    let a = scratch, b = scratch + tiles, c = scratch + 2 * tiles, d = scratch + 3 * tiles
    for t in 0..<tiles {
        let x0 = 2 * t, x1 = 2 * t + 1
        a[t] = first[x0]; b[t] = x1 < width ? first[x1] : 0
        if let second { c[t] = second[x0]; d[t] = x1 < width ? second[x1] : 0 } else { c[t] = 0; d[t] = 0 }
    }
    // rows of A·dY: (a, b), (a + c, b + d), (a − c, b − d), (−c, −d); each row (p, q) → (p, p + q, p − q, −q)
    for t in 0..<tiles {
        let av = a[t], bv = b[t], cv = c[t], dv = d[t]
        let rp: (Float, Float, Float, Float) = (av, av + cv, av - cv, -cv)
        let rq: (Float, Float, Float, Float) = (bv, bv + dv, bv - dv, -dv)
        out[0 * stride + t] = rp.0; out[1 * stride + t] = rp.0 + rq.0; out[2 * stride + t] = rp.0 - rq.0; out[3 * stride + t] = -rq.0
        out[4 * stride + t] = rp.1; out[5 * stride + t] = rp.1 + rq.1; out[6 * stride + t] = rp.1 - rq.1; out[7 * stride + t] = -rq.1
        out[8 * stride + t] = rp.2; out[9 * stride + t] = rp.2 + rq.2; out[10 * stride + t] = rp.2 - rq.2; out[11 * stride + t] = -rq.2
        out[12 * stride + t] = rp.3; out[13 * stride + t] = rp.3 + rq.3; out[14 * stride + t] = rp.3 - rq.3; out[15 * stride + t] = -rq.3
    }
}

/// g = Gᵀ U G for one 4×4 U (row-major) to a 3×3 kernel, Gᵀ = [[1,½,½,0],[0,½,−½,0],[0,½,½,1]].
@inline(__always)
func winogradGradientOutput(_ u: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>) {
    let u0 = SIMD4(u[0], u[1], u[2], u[3]), u1 = SIMD4(u[4], u[5], u[6], u[7])
    let u2 = SIMD4(u[8], u[9], u[10], u[11]), u3 = SIMD4(u[12], u[13], u[14], u[15])
    let s = 0.5 * (u1 + u2)
    let l0 = u0 + s, l1 = 0.5 * (u1 - u2), l2 = s + u3          // rows of Gᵀ U
    @inline(__always) func row(_ i: Int, _ r: SIMD4<Float>) {
        let h = 0.5 * (r[1] + r[2])
        out[3 * i] = r[0] + h; out[3 * i + 1] = 0.5 * (r[1] - r[2]); out[3 * i + 2] = h + r[3]
    }
    row(0, l0); row(1, l1); row(2, l2)
}
