import Foundation
import COpenBLAS

/// Winograd F(2×2, 3×3) for stride-1, undilated, ungrouped 3×3 convolutions (Lavin & Gray's transforms):
/// Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A per 2×2 output tile, with the 16 element-wise products of all channels
/// done as 16 OpenBLAS sgemms U[c] (outC×inC) · V[c] (inC×tiles). 16 instead of 36 multiplies per tile and
/// channel pair: 2.25× fewer GEMM FLOPs than im2col. The plain reference for it is `Reference.conv2d`.
extension Fast {
    /// Off: every 3×3 convolution takes the im2col path (for timing comparisons).
    nonisolated(unsafe) public static var useWinograd = true

    /// Budget of a chunk's V and M scratch, in floats (tests lower it to cover several chunks).
    nonisolated(unsafe) static var winogradChunkFloats = 1 << 21

    static func winogradApplies(_ g: Conv2dGeometry) -> Bool {
        useWinograd && g.kH == 3 && g.kW == 3 && g.strideH == 1 && g.strideW == 1 && g.dilH == 1 && g.dilW == 1
            && g.groups == 1 && g.inC >= 16 && g.outC >= 16 && g.outH >= 2 && g.outW >= 2
    }

    /// Tiles per chunk (all images' tiles are numbered together) and the scratch floats for V and M.
    static func winogradChunk(_ g: Conv2dGeometry) -> (tiles: Int, chunk: Int, scratch: Int) {
        let tiles = g.batch * ((g.outH + 1) / 2) * ((g.outW + 1) / 2)
        let chunk = Swift.max(16, Swift.min(tiles, winogradChunkFloats / (16 * (g.inC + g.outC))))
        return (tiles, chunk, 16 * (g.inC + g.outC) * chunk)
    }

    /// Transformed weights U[16][outC][inC], cached by the weights' content (a deterministic function of it).
    final class WinogradWeights: @unchecked Sendable {
        static let shared = WinogradWeights()
        private let lock = NSLock()
        private struct Key: Hashable { var address: Int; var count: Int; var hash: UInt64 }
        private var cache: [Key: Buffer] = [:]
        private var cachedFloats = 0
        static let maxFloats = 1 << 26

        func get(_ w: UnsafePointer<Float>, outC: Int, inC: Int) -> Buffer {
            let count = outC * inC * 9
            let key = Key(address: Int(bitPattern: w), count: count, hash: Fast.contentHash(w, count: count))
            lock.lock(); defer { lock.unlock() }
            if let b = cache[key] { return b }
            let u = Buffer(count: 16 * outC * inC)
            Fast.winogradTransformWeights(w, outC: outC, inC: inC, u: u.p)
            if cachedFloats + u.count > Self.maxFloats { cache.removeAll(); cachedFloats = 0 }
            cache[key] = u
            cachedFloats += u.count
            return u
        }
    }

    /// A 64-bit hash of the floats' bit patterns (16 lanes of multiply-add, then mixed).
    static func contentHash(_ p: UnsafePointer<Float>, count: Int) -> UInt64 {
        var h = SIMD16<UInt32>(repeating: 2_166_136_261)
        let raw = UnsafeRawPointer(p)
        var i = 0
        while i + 16 <= count {
            let v = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<UInt32>.self)
            h = (h &* 16_777_619) &+ v
            i += 16
        }
        var tail: UInt64 = 1_469_598_103_934_665_603
        while i < count { tail = (tail ^ UInt64(p[i].bitPattern)) &* 1_099_511_628_211; i += 1 }
        for l in 0..<16 { tail = (tail ^ UInt64(h[l]) ^ UInt64(l) << 40) &* 1_099_511_628_211 }
        return tail
    }

    /// U[c][oc][ic] = (G g Gᵀ)[c] for each 3×3 kernel g = w[oc][ic].
    static func winogradTransformWeights(_ w: UnsafePointer<Float>, outC: Int, inC: Int, u: UnsafeMutablePointer<Float>) {
        let plane = outC * inC
        for oc in 0..<outC {
            for ic in 0..<inC {
                let g = w + (oc * inC + ic) * 9
                // Gg: 4×3 (rows of g combined)
                var t = [Float](repeating: 0, count: 12)
                for j in 0..<3 {
                    let g0 = g[j], g1 = g[3 + j], g2 = g[6 + j]
                    t[j] = g0
                    t[3 + j] = 0.5 * (g0 + g1 + g2)
                    t[6 + j] = 0.5 * (g0 - g1 + g2)
                    t[9 + j] = g2
                }
                for i in 0..<4 {
                    let a = t[i * 3], b = t[i * 3 + 1], c = t[i * 3 + 2]
                    let base = u + oc * inC + ic
                    base[(i * 4 + 0) * plane] = a
                    base[(i * 4 + 1) * plane] = 0.5 * (a + b + c)
                    base[(i * 4 + 2) * plane] = 0.5 * (a - b + c)
                    base[(i * 4 + 3) * plane] = c
                }
            }
        }
    }

    public static func winogradConv2d(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>, b: UnsafePointer<Float>?,
                                      act: Activation, y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, threads: Int) {
        let u = WinogradWeights.shared.get(w, outC: g.outC, inC: g.inC)
        let (tiles, chunk, _) = winogradChunk(g)
        let tilesW = (g.outW + 1) / 2, tilesH = (g.outH + 1) / 2, perImage = tilesW * tilesH
        let inC = g.inC, outC = g.outC
        let vs = SendPtr(scratch), ms = SendPtr(scratch + 16 * inC * chunk)
        let xs = SendConstPtr(x), ys = SendPtr(y)
        var t0 = 0
        while t0 < tiles {
            let nt = Swift.min(chunk, tiles - t0)
            // V[c][ic][t] = (Bᵀ d B)[c]
            parallelFor(inC, threads: threads, grain: 4) { range in
                for ic in range {
                    for tl in 0..<nt {
                        let t = t0 + tl
                        let n = t / perImage, r = t % perImage
                        let iy0 = (r / tilesW) * 2 - g.padTop, ix0 = (r % tilesW) * 2 - g.padLeft
                        let plane = xs.p + (n * g.inC + ic) * g.inPlane
                        var d0 = SIMD4<Float>(), d1 = SIMD4<Float>(), d2 = SIMD4<Float>(), d3 = SIMD4<Float>()
                        if iy0 >= 0 && ix0 >= 0 && iy0 + 4 <= g.inH && ix0 + 4 <= g.inW {
                            let p = UnsafeRawPointer(plane + iy0 * g.inW + ix0)
                            let rs = g.inW * 4
                            d0 = p.loadUnaligned(as: SIMD4<Float>.self)
                            d1 = p.loadUnaligned(fromByteOffset: rs, as: SIMD4<Float>.self)
                            d2 = p.loadUnaligned(fromByteOffset: 2 * rs, as: SIMD4<Float>.self)
                            d3 = p.loadUnaligned(fromByteOffset: 3 * rs, as: SIMD4<Float>.self)
                        } else {
                            func row(_ k: Int) -> SIMD4<Float> {
                                var v = SIMD4<Float>()
                                let iy = iy0 + k
                                if iy < 0 || iy >= g.inH { return v }
                                for j in 0..<4 {
                                    let ix = ix0 + j
                                    if ix >= 0 && ix < g.inW { v[j] = plane[iy * g.inW + ix] }
                                }
                                return v
                            }
                            d0 = row(0); d1 = row(1); d2 = row(2); d3 = row(3)
                        }
                        // Bᵀ d: rows
                        let r0 = d0 - d2, r1 = d1 + d2, r2 = d2 - d1, r3 = d1 - d3
                        // (Bᵀ d) B: columns
                        let dst = vs.p + ic * nt + tl
                        let stride = inC * nt
                        @inline(__always) func store(_ i: Int, _ rv: SIMD4<Float>) {
                            let o = dst + i * 4 * stride
                            o[0] = rv[0] - rv[2]
                            o[stride] = rv[1] + rv[2]
                            o[2 * stride] = rv[2] - rv[1]
                            o[3 * stride] = rv[1] - rv[3]
                        }
                        store(0, r0); store(1, r1); store(2, r2); store(3, r3)
                    }
                }
            }
            // M[c] = U[c] · V[c]
            // (the 16 products are independent: one single-threaded GEMM per task)
            let us = SendConstPtr(u.p)
            parallelTasks(16, threads: threads) { c in
                sgemm(false, false, m: outC, n: nt, k: inC, a: us.p + c * outC * inC, lda: inC, b: vs.p + c * inC * nt, ldb: nt,
                      c: ms.p + c * outC * nt, ldc: nt, threads: 1)
            }
            // Y = Aᵀ M A
            parallelFor(outC, threads: threads, grain: 4) { range in
                for oc in range {
                    let stride = outC * nt
                    for tl in 0..<nt {
                        let t = t0 + tl
                        let n = t / perImage, r = t % perImage
                        let oy = (r / tilesW) * 2, ox = (r % tilesW) * 2
                        let src = ms.p + oc * nt + tl
                        @inline(__always) func mrow(_ i: Int) -> SIMD4<Float> {
                            let s = src + i * 4 * stride
                            return SIMD4(s[0], s[stride], s[2 * stride], s[3 * stride])
                        }
                        let m0 = mrow(0), m1 = mrow(1), m2 = mrow(2), m3 = mrow(3)
                        let a0 = m0 + m1 + m2, a1 = m1 - m2 - m3
                        let out = ys.p + (n * outC + oc) * g.outPlane + oy * g.outW + ox
                        let twoCols = ox + 1 < g.outW
                        out[0] = a0[0] + a0[1] + a0[2]
                        if twoCols { out[1] = a0[1] - a0[2] - a0[3] }
                        if oy + 1 < g.outH {
                            out[g.outW] = a1[0] + a1[1] + a1[2]
                            if twoCols { out[g.outW + 1] = a1[1] - a1[2] - a1[3] }
                        }
                    }
                }
            }
            t0 += nt
        }
        biasActivation(planes: g.batch * g.outC, channels: g.outC, plane: g.outPlane, b: b, act: act, y: y, threads: threads)
    }
}
