import Foundation
import COpenBLAS
import CGemm
import CZooKernels

/// Winograd F(m×m, 3×3), m = 2 or 4, for stride-1, undilated, ungrouped 3×3 convolutions (Lavin & Gray's
/// transforms; F(4×4) with the interpolation points 0, ±1, ±2, ∞): per m×m output tile,
/// Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A over α×α input tiles (α = m + 2). The α² element-wise products of all
/// channels are α² sgemms U[c] (outC×inC) · V[c] (inC×tiles): 2.25× (m = 2) or 4× (m = 4) fewer GEMM FLOPs than
/// im2col. The tile size is chosen per geometry (`winogradTile`). The plain reference is `Reference.conv2d`.
///
/// Layout: tiles are numbered by (image, tile row, tile column), chunks hold whole tile rows. The input transform
/// works on whole tile rows of one channel (columns first, reading a zero-padded copy of the α input rows; then
/// rows, vectorizable over the tile columns), the output transform likewise, with the bias and activation fused.
extension Fast {
    /// Off: every 3×3 convolution takes the im2col path (for timing comparisons).
    nonisolated(unsafe) public static var useWinograd = true

    /// Forces the tile size where Winograd applies (2 or 4); 0 chooses by geometry. Env ZOO_WINOGRAD_TILE.
    nonisolated(unsafe) public static var winogradTileOverride: Int =
        Int(ProcessInfo.processInfo.environment["ZOO_WINOGRAD_TILE"] ?? "") ?? 0

    /// On: the α² GEMMs are spread over the workers, each one single-threaded; off: one after the other, each
    /// split over the workers by `sgemm`. Env ZOO_WINOGRAD_BLAS_THREADS=1 turns it off.
    nonisolated(unsafe) public static var winogradSplitGemms =
        ProcessInfo.processInfo.environment["ZOO_WINOGRAD_BLAS_THREADS"] != "1"

    /// On: with a caller-owned weight cache, the α² products run on zoo's packed GEMM (Sources/CGemm) with the
    /// transformed weights packed once and V written by the input transform straight into packed panels; off
    /// (env ZOO_WINOGRAD_GEMM=openblas): OpenBLAS sgemm, which packs U and V again on every call.
    nonisolated(unsafe) public static var winogradPackedGemm = ProcessInfo.processInfo.environment["ZOO_WINOGRAD_GEMM"] != "openblas"

    /// On: few-tile products run transposed on the packed GEMM (see `winogradConv2d`); env ZOO_WINOGRAD_SWAP=0 turns it off.
    /// Tile transforms in AVX-512F C (Sources/CZooKernels/winograd.c) when the CPU has it; `ZOO_WINOGRAD_TRANSFORMS=swift`
    /// keeps the Swift SIMD4 transforms (the portable path, and the A/B switch).
    nonisolated(unsafe) public static var winogradCTransforms = ProcessInfo.processInfo.environment["ZOO_WINOGRAD_TRANSFORMS"] != "swift"
    nonisolated(unsafe) public static var winogradSwapSmall = ProcessInfo.processInfo.environment["ZOO_WINOGRAD_SWAP"] != "0"

    /// On: the inference `Executor` keeps each node's transformed weights (no hashing per call). Env
    /// ZOO_WINOGRAD_HASH=1 turns it off (the content-hashed shared cache, as training uses).
    nonisolated(unsafe) public static var executorWeightCaches =
        ProcessInfo.processInfo.environment["ZOO_WINOGRAD_HASH"] != "1"

    /// Budget of a chunk's V and M scratch, in floats (tests lower it to cover several chunks): 1.6 MB, so that what the
    /// input transform writes is still in L2 when the products read it (Xeon, 2 MB L2 per core: resnet18 b1 56² F(4×4)
    /// input transform 0.38 → 0.23 ms; the budget was 8 MB). `winogradLargeChunkFloats` (8 MB) is the budget when
    /// re-streaming the weights per chunk would cost more (`winogradChunk`).
    nonisolated(unsafe) static var winogradChunkFloats =
        Int(ProcessInfo.processInfo.environment["ZOO_WINOGRAD_CHUNK"] ?? "") ?? 400_000
    nonisolated(unsafe) static var winogradLargeChunkFloats =
        Int(ProcessInfo.processInfo.environment["ZOO_WINOGRAD_LARGE_CHUNK"] ?? "") ?? (1 << 21)

    static func winogradEligible(_ g: Conv2dGeometry) -> Bool {
        g.kH == 3 && g.kW == 3 && g.strideH == 1 && g.strideW == 1 && g.dilH == 1 && g.dilW == 1
            && g.groups == 1 && g.inC >= 16 && g.outC >= 16 && g.outH >= 2 && g.outW >= 2
    }

    /// The Winograd output tile m for this geometry (2 or 4), or 0 when the im2col path is used.
    static func winogradTile(_ g: Conv2dGeometry) -> Int {
        guard useWinograd, winogradEligible(g) else { return 0 }
        if winogradTileOverride == 2 || winogradTileOverride == 4 { return winogradTileOverride }
        // Cost model per output: the α² products cost α²·max(tiles, T0), T0 the tile count below which a product
        // streams its transformed weights (α²·inC·outC floats) slower than it computes on them (compute bound above
        // T0 columns, weight bound below). F(4×4) does 1.8× fewer GEMM FLOPs than F(2×2) but reads 2.25× the weights.
        // T0 = 16 on AVX2 (Zen 3, measured: resnet18 b1 14²: F(4) 0.83–0.95 vs F(2) 0.95–1.1 ms; resnet18 b1 7²: F(4)
        // 1.9 vs 1.3–1.4); 33 with the AVX-512 kernel (≈ 2 × 250 GFLOP/s / 15 GB/s of weight stream, Xeon: resnet18
        // b1 14²: F(2) 0.68 vs F(4) 0.88 ms per conv). Ties keep F(4×4).
        let t0 = gemmLevel >= 2 ? 33 : 16
        let tiles4 = g.batch * ((g.outH + 3) / 4) * ((g.outW + 3) / 4)
        let tiles2 = g.batch * ((g.outH + 1) / 2) * ((g.outW + 1) / 2)
        return 36 * Swift.max(tiles4, t0) <= 16 * Swift.max(tiles2, t0) ? 4 : 2
    }

    static func winogradApplies(_ g: Conv2dGeometry) -> Bool { winogradTile(g) != 0 }

    /// zoo's GEMM KC (input-channel block of packed A).
    static var gemmKC: Int { _ = gemmLevel; return Int(zoo_gemm_current().kc) }

    /// Tile rows in all (batch × tile rows of an image), tile rows per chunk, and the scratch floats for V and M.
    static func winogradChunk(_ g: Conv2dGeometry, tile m: Int, rows share: Int? = nil, budget: (small: Int, large: Int)? = nil)
        -> (rows: Int, chunkRows: Int, scratch: Int) {
        let smallFloats = budget?.small ?? winogradChunkFloats, largeFloats = budget?.large ?? winogradLargeChunkFloats
        let a = m + 2
        let tilesW = (g.outW + m - 1) / m, tilesH = (g.outH + m - 1) / m
        let rows = share ?? g.batch * tilesH
        let perRow = a * a * (g.inC + g.outC) * tilesW
        // Every chunk streams all α² transformed weight matrices (α²·inC·outC floats) again; a chunk whose V and M
        // outgrow L2 writes and reads them from farther away. Of the L2-sized chunks (`winogradChunkFloats`) and
        // large ones (`winogradLargeChunkFloats`), the choice moves fewer floats beyond L2: per chunk U, plus 2·(V + M)
        // when they spill (more than the budget). resnet18 b8: 56² and 28² take small chunks, 14² and 7²
        // (2.4–9.4 M weight floats) large ones; b8 step 99.4 → 95.6 ms. The spill line was 1.25× the budget (2 MB, for a
        // Xeon's 2 MB L2); at the budget itself resnet18 b1's 28² layers (451 000 floats in one chunk) take two chunks:
        // 0.35–0.42 → 0.29–0.33 ms each on Zen 5 (1 MB L2), while its 14² layers (399 000 floats) stay whole.
        let nr = gemmNR
        let u = a * a * g.inC * g.outC
        func cost(_ cr: Int) -> Int {
            (rows + cr - 1) / cr * u + (perRow * cr > smallFloats ? 2 * perRow * rows : 0)
        }
        let small = Swift.max(1, Swift.min(rows, smallFloats / perRow))
        let large = Swift.max(small, Swift.min(rows, largeFloats / perRow))
        let maxRows = cost(large) < cost(small) ? large : small
        // At most maxRows; among those, the row count whose chunks waste the least NR-column panel padding (ties: the
        // larger one), e.g. 56² F(4×4): 6 rows of 14 tiles (84 in 96 columns) rather than 5 (70 in 96).
        func padded(_ cr: Int) -> Int {
            let full = rows / cr, rest = rows % cr
            return full * ((cr * tilesW + nr - 1) / nr * nr) + (rest > 0 ? (rest * tilesW + nr - 1) / nr * nr : 0)
        }
        var chunkRows = maxRows
        for cr in stride(from: maxRows - 1, through: Swift.max(1, maxRows / 2), by: -1) where padded(cr) < padded(chunkRows) {
            chunkRows = cr
        }
        // + one packed-B panel of padding per product (V in packed panels), + the skew of V's and M's product strides
        return (rows, chunkRows, perRow * chunkRows + a * a * g.inC * gemmNR + 2 * a * a * 1024)
    }

    /// A product stride (floats) rounded up to 16 more than a multiple of 1024: the α² products are written and
    /// read as α² concurrent streams, and strides that are multiples of 4 KB (inC·ntPad = 64·240, 128·96, 256·48 in
    /// resnet18) put them all in the same L1/L2 sets.
    @inline(__always) static func winogradSkew(_ s: Int) -> Int { s + (16 - s % 1024 + 1024) % 1024 }

    /// The α² products over the workers: contiguous halves (`ZOO_WINO_CONTIG=0`: one product at a time to any worker). With
    /// the pool's task-per-thread split, each worker multiplies by the same half of the transformed weights every run.
    static func productTasks(_ n: Int, threads: Int, _ body: (Int) -> Void) {
        if winogradContiguousProducts { parallelFor(n, threads: threads) { r in for c in r { body(c) } } }
        else { parallelTasks(n, threads: threads, body) }
    }
    nonisolated(unsafe) static var winogradContiguousProducts = ProcessInfo.processInfo.environment["ZOO_WINO_CONTIG"] != "0"

    /// Whether the packed products of chunks of up to `ntMax` tiles run transposed (`winogradSwapSmall`): NR-column panels
    /// more than 1/3 padding.
    static func winogradSwaps(ntMax: Int) -> Bool {
        winogradSwapSmall && ntMax * 4 < (ntMax + gemmNR - 1) / gemmNR * gemmNR * 3
    }

    static func winogradScratch(_ g: Conv2dGeometry) -> Int {
        let m = winogradTile(g)
        if m == 0 { return 0 }
        let whole = winogradChunk(g, tile: m).scratch
        guard let split = winogradSpatialSplit(g, tile: m, threads: spatialParts, always: true) else { return whole }
        return Swift.max(whole, spatialParts * split.scratch)
    }

    /// With row bands (`rowBands`), a Winograd convolution whose transformed weights are at most this many floats is split
    /// by tiles: each worker transforms, multiplies and transforms back its own band of tiles (all channels), reading the
    /// shared weights, so only the input rows at a band's edge cross between the cores. The chunked path instead splits
    /// the input transform by channels and the α² products between the workers, so that much of V and M is written on
    /// one core and read on the other. Every band streams all of the weights, though: on distant cores resnet18 b1 took
    /// 20.4 ms with bands up to 2.5 MB of weights (layer1, layer2), 21.6 with layer3's 4 MB as well, 22.1 without bands
    /// (bench/README.md, session 13, Zen 4). On Zen 5 (CPU family 26; session 14) layer2's bands cost more than they
    /// save: distant resnet18 b1 10.44–10.81 ms with layer1–2 bands, 10.02–10.27 with layer1's only (3 interleaved rounds
    /// each), near unchanged; there the limit is 300 000 floats. Env ZOO_WINO_SPATIAL_MAXU (0: no Winograd bands).
    nonisolated(unsafe) static var winogradSpatialMaxU =
        Int(ProcessInfo.processInfo.environment["ZOO_WINO_SPATIAL_MAXU"] ?? "") ?? (zoo_cpu_family() >= 26 ? 300_000 : 655_360)

    /// A band's chunk budget (V and M, floats): a band's chunk is multiplied and transformed back on the core that wrote it,
    /// so it must stay in that core's L2. Env ZOO_WINO_BAND_CHUNK.
    nonisolated(unsafe) static var winogradBandChunkFloats =
        Int(ProcessInfo.processInfo.environment["ZOO_WINO_BAND_CHUNK"] ?? "") ?? 200_000
    /// A band's chunk budget for this convolution: every chunk streams all of the transformed weights U again, so where U is
    /// larger than the base budget the budget grows up to twice the base (the V and M a second chunk would save re-reading
    /// U for). resnet18 b1 layer2 (U 590k floats, a band 3.5 tile rows of 64.5k): one chunk per band instead of two,
    /// 0.75–0.83 → 0.64–0.70 ms per convolution with bands forced on near cores (3 rounds); layer1 (U 147k, bands of
    /// 451k) keeps its three chunks (one chunk: 0.47–0.6 → 0.74–0.9 ms). Env ZOO_WINO_BAND_BYU=0: the base budget only.
    static func bandBudget(_ g: Conv2dGeometry, tile m: Int) -> Int {
        let u = (m + 2) * (m + 2) * g.inC * g.outC
        return winogradBandBudgetByU ? Swift.max(winogradBandChunkFloats, Swift.min(u, 2 * winogradBandChunkFloats)) : winogradBandChunkFloats
    }
    nonisolated(unsafe) static var winogradBandBudgetByU = ProcessInfo.processInfo.environment["ZOO_WINO_BAND_BYU"] != "0"

    /// A worker's chunk rows and scratch when this convolution is split into row bands over `threads` workers, or nil.
    /// `always`: as if row bands were on (scratch sizing).
    static func winogradSpatialSplit(_ g: Conv2dGeometry, tile m: Int, threads: Int, always: Bool = false) -> (chunkRows: Int, scratch: Int)? {
        let tilesH = (g.outH + m - 1) / m
        guard bandParts(batch: g.batch, threads: threads, always: always) > 0, tilesH >= 2 * threads,
              (m + 2) * (m + 2) * g.inC * g.outC <= winogradSpatialMaxU else { return nil }
        let c = winogradChunk(g, tile: m, rows: (tilesH + threads - 1) / threads, budget: (bandBudget(g, tile: m), bandBudget(g, tile: m)))
        return (c.chunkRows, c.scratch)
    }

    /// Transformed weights U[α²][outC][inC] by tile size.
    final class WinogradWeights: @unchecked Sendable {
        static let shared = WinogradWeights()
        private let lock = NSLock()
        private struct Key: Hashable { var address: Int; var count: Int; var tile: Int; var hash: UInt64 }
        private var cache: [Key: Buffer] = [:]
        private var cachedFloats = 0
        static let maxFloats = 1 << 26

        /// Cached by the weights' content (a deterministic function of it): for callers whose weights change.
        func get(_ w: UnsafePointer<Float>, outC: Int, inC: Int, tile m: Int, threads: Int = 1) -> Buffer {
            let count = outC * inC * 9
            let key = Key(address: Int(bitPattern: w), count: count, tile: m, hash: Fast.contentHash(w, count: count))
            lock.lock(); defer { lock.unlock() }
            if let b = cache[key] { return b }
            let u = Fast.winogradTransformWeights(w, outC: outC, inC: inC, tile: m, threads: threads)
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

    /// G for F(2×2) (4×3) and F(4×4) (6×3).
    static let winogradG2: [[Double]] = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
    static let winogradG4: [[Double]] = [[1.0 / 4, 0, 0], [-1.0 / 6, -1.0 / 6, -1.0 / 6], [-1.0 / 6, 1.0 / 6, -1.0 / 6],
                                         [1.0 / 24, 1.0 / 12, 1.0 / 6], [1.0 / 24, -1.0 / 12, 1.0 / 6], [0, 0, 1]]

    /// `ZOO_WINO_WEIGHTS=swift` (A/B and tests): the weight transform by the Swift loops below instead of `zoo_wino_weights`.
    nonisolated(unsafe) static var winogradCWeights = ProcessInfo.processInfo.environment["ZOO_WINO_WEIGHTS"] != "swift"

    /// U[i·α + j][oc][ic] = (G g Gᵀ)[i][j] for each 3×3 kernel g = w[oc][ic] (computed in Double); with `transposed`,
    /// U[i·α + j][ic][oc]. Training transforms its weights at every step (a 512 × 512 layer has 262 144 kernels), so the
    /// C transform (`zoo_wino_weights`, bit-identical) runs unless `winogradCWeights` is off.
    /// `skewed`: matrix c starts at c · (outC·inC + 16) floats (`winogradSkewedPlane`), so that the α² output streams of a
    /// 512 × 512 layer (1 MB apart) do not all map to the same cache sets.
    static func winogradTransformWeights(_ w: UnsafePointer<Float>, outC: Int, inC: Int, tile m: Int, threads: Int = 1,
                                         transposed: Bool = false, skewed: Bool = false) -> Buffer {
        guard winogradCWeights else {
            let u = winogradTransformWeightsSwift(w, outC: outC, inC: inC, tile: m, threads: threads)
            if !transposed && !skewed { return u }
            let plane = outC * inC, stride = skewed ? winogradSkewedPlane(outC * inC) : plane
            let t = Buffer(count: (m + 2) * (m + 2) * stride)
            for c in 0..<((m + 2) * (m + 2)) {
                let uc = u.p + c * plane, tc = t.p + c * stride
                if !transposed { tc.update(from: uc, count: plane); continue }
                for oc in 0..<outC { for ic in 0..<inC { tc[ic * outC + oc] = uc[oc * inC + ic] } }
            }
            return t
        }
        let plane = outC * inC, stride = skewed ? winogradSkewedPlane(plane) : plane
        let u = Buffer(count: (m + 2) * (m + 2) * stride)
        let us = SendPtr(u.p), ws = SendConstPtr(w)
        parallelFor(outC, threads: threads, grain: Swift.max(1, 4096 / Swift.max(1, inC))) { r in
            zoo_wino_weights(ws.p, Int32(inC), Int32(m), us.p, stride, transposed ? 1 : inC, transposed ? outC : 1,
                             Int32(r.lowerBound), Int32(r.upperBound), 0)
        }
        return u
    }

    static func winogradSkewedPlane(_ plane: Int) -> Int { plane + 16 }

    /// The Swift reference of `winogradTransformWeights` (U[i·α + j][oc][ic]).
    static func winogradTransformWeightsSwift(_ w: UnsafePointer<Float>, outC: Int, inC: Int, tile m: Int, threads: Int = 1) -> Buffer {
        let gm = m == 4 ? winogradG4 : winogradG2
        let a = m + 2
        let plane = outC * inC
        let u = Buffer(count: a * a * plane)
        let us = SendPtr(u.p), ws = SendConstPtr(w)
        parallelFor(outC, threads: threads, grain: 8) { range in
            var t = [Double](repeating: 0, count: a * 3)
            for oc in range {
                for ic in 0..<inC {
                    let g = ws.p + (oc * inC + ic) * 9
                    for i in 0..<a {
                        for j in 0..<3 {
                            t[i * 3 + j] = gm[i][0] * Double(g[j]) + gm[i][1] * Double(g[3 + j]) + gm[i][2] * Double(g[6 + j])
                        }
                    }
                    let base = us.p + oc * inC + ic
                    for i in 0..<a {
                        for j in 0..<a {
                            let v = t[i * 3] * gm[j][0] + t[i * 3 + 1] * gm[j][1] + t[i * 3 + 2] * gm[j][2]
                            base[(i * a + j) * plane] = Float(v)
                        }
                    }
                }
            }
        }
        return u
    }

    // MARK: 1-D transforms (α inputs → α outputs for B, α → m for A)

    @inline(__always) static func bt4(_ d0: Float, _ d1: Float, _ d2: Float, _ d3: Float, _ d4: Float, _ d5: Float)
        -> (Float, Float, Float, Float, Float, Float) {
        let t0 = d4 - 4 * d2, t1 = d3 - 4 * d1, t2 = d4 - d2, t3 = 2 * (d3 - d1)
        return (4 * d0 - 5 * d2 + d4, t0 + t1, t0 - t1, t2 + t3, t2 - t3, 4 * d1 - 5 * d3 + d5)
    }

    @inline(__always) static func at4(_ s0: Float, _ s1: Float, _ s2: Float, _ s3: Float, _ s4: Float, _ s5: Float)
        -> (Float, Float, Float, Float) {
        let p12 = s1 + s2, m12 = s1 - s2, p34 = s3 + s4, m34 = s3 - s4
        return (s0 + p12 + p34, m12 + 2 * m34, p12 + 4 * p34, m12 + 8 * m34 + s5)
    }

    /// `rows` zero-padded rows of one input plane (h × w) for a row of tiles: dst[k][c] = x[top + k][c − padLeft],
    /// 0 outside the image, `width` columns each.
    @inline(__always)
    static func winogradPaddedRows(_ plane: UnsafePointer<Float>, h: Int, w: Int, top: Int, padLeft: Int, rows: Int, width wp: Int,
                                   into pad: UnsafeMutablePointer<Float>) {
        let lo = Swift.min(wp, padLeft), hi = Swift.min(wp, padLeft + w)
        for k in 0..<rows {
            let iy = top + k
            let dst = pad + k * wp
            if iy < 0 || iy >= h || hi <= lo { dst.update(repeating: 0, count: wp); continue }
            if lo > 0 { dst.update(repeating: 0, count: lo) }
            (dst + lo).update(from: plane + iy * w + (lo - padLeft), count: hi - lo)
            if hi < wp { (dst + hi).update(repeating: 0, count: wp - hi) }
        }
    }

    public static func winogradConv2d(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>, b: UnsafePointer<Float>?,
                                      act: Activation, y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, threads: Int,
                                      weightCache: ConvWeightCache? = nil) {
        let m = winogradTile(g) == 4 ? 4 : 2
        let (rows, wholeChunkRows, _) = winogradChunk(g, tile: m)
        let tilesW = (g.outW + m - 1) / m, tiles = rows * tilesW
        if let split = winogradSpatialSplit(g, tile: m, threads: threads) {
            // Row bands, one per worker (task t runs on thread t: the same band on the same core in every layer).
            let xs = SendConstPtr(x), ys = SendPtr(y), ss = SendPtr(scratch), ws = SendConstPtr(w), bs = b.map(SendConstPtr.init)
            if let weightCache, winogradPackedGemm {
                // Build the cached weights once, on all workers, before the bands read them.
                if winogradSwaps(ntMax: split.chunkRows * tilesW) {
                    _ = weightCache.winogradPackedT(w, outC: g.outC, inC: g.inC, tile: m, threads: threads)
                } else {
                    _ = weightCache.winogradPacked(w, outC: g.outC, inC: g.inC, tile: m, threads: threads)
                }
            }
            parallelTasks(threads, threads: threads) { t in
                winogradRows(g, tile: m, tiles: band(tiles, t, threads), chunkRows: split.chunkRows,
                             x: xs.p, w: ws.p, b: bs?.p, act: act, y: ys.p, scratch: ss.p + t * split.scratch, threads: 1,
                             weightCache: weightCache)
            }
            return
        }
        winogradRows(g, tile: m, tiles: 0..<tiles, chunkRows: wholeChunkRows, x: x, w: w, b: b, act: act, y: y, scratch: scratch,
                     threads: threads, weightCache: weightCache)
    }

    /// Tiles `tileRange` of the convolution (numbered by image, tile row, tile column; a range may start and end inside a
    /// tile row), in chunks of `chunkRows` tile rows' worth of tiles; `scratch` holds `winogradChunk`'s scratch for them.
    static func winogradRows(_ g: Conv2dGeometry, tile m: Int, tiles tileRange: Range<Int>, chunkRows: Int, x: UnsafePointer<Float>,
                             w: UnsafePointer<Float>, b: UnsafePointer<Float>?, act: Activation, y: UnsafeMutablePointer<Float>,
                             scratch: UnsafeMutablePointer<Float>, threads: Int, weightCache: ConvWeightCache?) {
        let a = m + 2, aa = a * a
        let tilesW = (g.outW + m - 1) / m, tilesH = (g.outH + m - 1) / m
        let wp = m * tilesW + 2
        let inC = g.inC, outC = g.outC
        let nr = gemmNR, mrow = gemmMR
        let ntMax = chunkRows * tilesW
        // zoo's packed GEMM when the weights stay (caller-owned cache), else OpenBLAS on plain U. With few tiles
        // (NR-column panels more than 1/3 padding: e.g. 16 tiles of a 7² plane in 48 columns) the product runs
        // transposed, Mᵀ[c] = Vᵀ[c] · Uᵀ[c]: tiles on the MR-row side, Uᵀ pre-packed as NR-column panels.
        let usePacked = weightCache != nil && winogradPackedGemm
        let swapped = usePacked && winogradSwaps(ntMax: ntMax)
        let packedU: [PackedMatrix]? = usePacked && !swapped
            ? weightCache!.winogradPacked(w, outC: outC, inC: inC, tile: m, threads: threads) : nil
        let packedUT: [Buffer]? = swapped ? weightCache!.winogradPackedT(w, outC: outC, inC: inC, tile: m, threads: threads) : nil
        let u: Buffer? = usePacked ? nil : (weightCache?.winograd(w, outC: outC, inC: inC, tile: m, threads: threads)
            ?? WinogradWeights.shared.get(w, outC: outC, inC: inC, tile: m, threads: threads))
        // V: per product c, inC × nt row-major; (packed) inC × ntPad in NR-column panels; (swapped) Vᵀ as packed
        // A: MR-row panels of tiles, blocked by KC input channels.
        let kc = gemmKC
        let vStride = winogradSkew(swapped ? inC * ((ntMax + mrow - 1) / mrow * mrow)
                                           : packedU != nil ? inC * ((ntMax + nr - 1) / nr * nr) : inC * ntMax)
        let vs = SendPtr(scratch), ms = SendPtr(scratch + aa * vStride)
        let xs = SendConstPtr(x), ys = SendPtr(y), us = SendConstPtr(u?.p ?? scratch)
        let bs = b.map(SendConstPtr.init)
        let isPacked = packedU != nil
        // The packed products' pointers in a plain table: reading them through the [Buffer] / [PackedMatrix] arrays inside
        // the workers' closures touched the objects' reference counts from both cores on every product.
        let table = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: aa)
        defer { table.deallocate() }
        for c in 0..<aa {
            if let put = packedUT { table[c] = UnsafePointer(put[c].p) } else if let pu = packedU { table[c] = UnsafePointer(pu[c].p) }
        }
        let uTable = UnsafeSendableBox(UnsafePointer(table))
        // M[c]: outC × nt, or (swapped) nt × outC; `ts` is the stride between tiles.
        let ts = swapped ? outC : 1
        let prof = winogradProfile
        var tIn: UInt64 = 0, tGemm: UInt64 = 0, tOut: UInt64 = 0
        var chunkLo = tileRange.lowerBound
        while chunkLo < tileRange.upperBound {
            let c0 = prof ? DispatchTime.now().uptimeNanoseconds : 0
            let chunkHi = Swift.min(chunkLo + chunkRows * tilesW, tileRange.upperBound)
            let nt = chunkHi - chunkLo
            // Tile rows the chunk touches; row r's tile columns in the chunk are cols(r), its column 0 is tile r·tilesW − chunkLo.
            let firstRow = chunkLo / tilesW, lastRow = (chunkHi - 1) / tilesW, nrows = lastRow - firstRow + 1
            @inline(__always) func cols(_ row: Int) -> (Int, Int) {
                (row == firstRow ? chunkLo - row * tilesW : 0, row == lastRow ? chunkHi - row * tilesW : tilesW)
            }
            // V[i·α + j][ic][t] = (Bᵀ d B)[i][j]
            let ntPad = (nt + nr - 1) / nr * nr
            let mPad = (nt + mrow - 1) / mrow * mrow
            let useC = winogradCTransforms && zoo_kernels_simd() != 0 && tilesW <= 512
            let cScratch = useC ? Int(zoo_wino_scratch_floats(Int32(m), Int32(tilesW))) : 0
            parallelFor(inC * nrows, threads: threads, grain: 2) { range in
                // padded rows, then the Swift column stage's e[α][α][tilesW] or the C transform's scratch
                let pad = UnsafeMutablePointer<Float>.allocate(capacity: a * wp + (useC ? cScratch : aa * tilesW))
                defer { pad.deallocate() }
                let e = pad + a * wp, cTmp = e
                for item in range {
                    let ic = item / nrows, rr = item % nrows
                    let row = firstRow + rr, n = row / tilesH, ty = row % tilesH
                    let (txLo, txHi) = cols(row), rowStart = row * tilesW - chunkLo
                    let plane = xs.p + (n * inC + ic) * g.inPlane
                    // α zero-padded input rows: pad[k][c] = x[ty·m − padTop + k][c − padLeft]
                    winogradPaddedRows(plane, h: g.inH, w: g.inW, top: ty * m - g.padTop, padLeft: g.padLeft, rows: a, width: wp, into: pad)
                    // Columns: e[k][j][tx] = (d B)[k][j] for each input row k (the C rows do both stages themselves)
                    for k in 0..<a where !useC {
                        let p = pad + k * wp
                        let ek = e + k * a * tilesW
                        if m == 4 {
                            for tx in 0..<tilesW {
                                let q = p + 4 * tx
                                let r = bt4(q[0], q[1], q[2], q[3], q[4], q[5])
                                ek[tx] = r.0; ek[tilesW + tx] = r.1; ek[2 * tilesW + tx] = r.2
                                ek[3 * tilesW + tx] = r.3; ek[4 * tilesW + tx] = r.4; ek[5 * tilesW + tx] = r.5
                            }
                        } else {
                            for tx in 0..<tilesW {
                                let q = p + 2 * tx
                                ek[tx] = q[0] - q[2]; ek[tilesW + tx] = q[1] + q[2]
                                ek[2 * tilesW + tx] = q[2] - q[1]; ek[3 * tilesW + tx] = q[1] - q[3]
                            }
                        }
                    }
                    // Rows: V[i][j] = Σ_k Bᵀ[i][k] e[k][j], contiguous over the tile columns: plain V[c][ic][t], or
                    // (packed) element (ic, t) of product c at V_c[(t / NR)·inC·NR + ic·NR + t % NR], in runs
                    // that stay inside one panel.
                    @inline(__always) func rowTransform(_ lo: Int, _ hi: Int, _ base: UnsafeMutablePointer<Float>) {
                        // base[(i·α + j)·vStride + tx] receives V[i][j] of tile column tx
                        if useC {
                            _ = zoo_wino_input_row(Int32(m), pad + m * lo, wp, Int32(hi - lo), base + lo, vStride, cTmp)
                            return
                        }
                        for j in 0..<a {
                            @inline(__always) func er(_ k: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(e + (k * a + j) * tilesW) }
                            @inline(__always) func vr(_ i: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(base + (i * a + j) * vStride) }
                            var tx = lo
                            if m == 4 {
                                let e0 = er(0), e1 = er(1), e2 = er(2), e3 = er(3), e4 = er(4), e5 = er(5)
                                let v0 = vr(0), v1 = vr(1), v2 = vr(2), v3 = vr(3), v4 = vr(4), v5 = vr(5)
                                while tx + 4 <= hi {
                                    let o = tx * 4
                                    let d0 = e0.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
                                    let d1 = e1.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
                                    let d2 = e2.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
                                    let d3 = e3.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
                                    let d4 = e4.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
                                    let d5 = e5.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
                                    let t0 = d4 - 4 * d2, t1 = d3 - 4 * d1, t2 = d4 - d2, t3 = 2 * (d3 - d1)
                                    v0.storeBytes(of: 4 * d0 - 5 * d2 + d4, toByteOffset: o, as: SIMD4<Float>.self)
                                    v1.storeBytes(of: t0 + t1, toByteOffset: o, as: SIMD4<Float>.self)
                                    v2.storeBytes(of: t0 - t1, toByteOffset: o, as: SIMD4<Float>.self)
                                    v3.storeBytes(of: t2 + t3, toByteOffset: o, as: SIMD4<Float>.self)
                                    v4.storeBytes(of: t2 - t3, toByteOffset: o, as: SIMD4<Float>.self)
                                    v5.storeBytes(of: 4 * d1 - 5 * d3 + d5, toByteOffset: o, as: SIMD4<Float>.self)
                                    tx += 4
                                }
                                while tx < hi {
                                    let o = tx * 4
                                    let r = bt4(e0.load(fromByteOffset: o, as: Float.self), e1.load(fromByteOffset: o, as: Float.self),
                                                e2.load(fromByteOffset: o, as: Float.self), e3.load(fromByteOffset: o, as: Float.self),
                                                e4.load(fromByteOffset: o, as: Float.self), e5.load(fromByteOffset: o, as: Float.self))
                                    v0.storeBytes(of: r.0, toByteOffset: o, as: Float.self); v1.storeBytes(of: r.1, toByteOffset: o, as: Float.self)
                                    v2.storeBytes(of: r.2, toByteOffset: o, as: Float.self); v3.storeBytes(of: r.3, toByteOffset: o, as: Float.self)
                                    v4.storeBytes(of: r.4, toByteOffset: o, as: Float.self); v5.storeBytes(of: r.5, toByteOffset: o, as: Float.self)
                                    tx += 1
                                }
                            } else {
                                let e0 = er(0), e1 = er(1), e2 = er(2), e3 = er(3)
                                let v0 = vr(0), v1 = vr(1), v2 = vr(2), v3 = vr(3)
                                while tx + 4 <= hi {
                                    let o = tx * 4
                                    let d0 = e0.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
                                    let d1 = e1.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
                                    let d2 = e2.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
                                    let d3 = e3.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
                                    v0.storeBytes(of: d0 - d2, toByteOffset: o, as: SIMD4<Float>.self)
                                    v1.storeBytes(of: d1 + d2, toByteOffset: o, as: SIMD4<Float>.self)
                                    v2.storeBytes(of: d2 - d1, toByteOffset: o, as: SIMD4<Float>.self)
                                    v3.storeBytes(of: d1 - d3, toByteOffset: o, as: SIMD4<Float>.self)
                                    tx += 4
                                }
                                while tx < hi {
                                    let o = tx * 4
                                    let d0 = e0.load(fromByteOffset: o, as: Float.self), d1 = e1.load(fromByteOffset: o, as: Float.self)
                                    let d2 = e2.load(fromByteOffset: o, as: Float.self), d3 = e3.load(fromByteOffset: o, as: Float.self)
                                    v0.storeBytes(of: d0 - d2, toByteOffset: o, as: Float.self)
                                    v1.storeBytes(of: d1 + d2, toByteOffset: o, as: Float.self)
                                    v2.storeBytes(of: d2 - d1, toByteOffset: o, as: Float.self)
                                    v3.storeBytes(of: d1 - d3, toByteOffset: o, as: Float.self)
                                    tx += 1
                                }
                            }
                        }
                    }
                    if swapped {
                        // element (t, ic) of Vᵀ[c] at k0·mPad + (t / MR)·kb·MR + (ic − k0)·MR + t % MR
                        let k0 = ic / kc * kc, kb = Swift.min(kc, inC - k0)
                        let blk = vs.p + k0 * mPad + (ic - k0) * mrow
                        var tx = txLo
                        while tx < txHi {
                            let t = rowStart + tx, q = t / mrow, within = t - q * mrow
                            let len = Swift.min(txHi - tx, mrow - within)
                            rowTransform(tx, tx + len, blk + q * kb * mrow + within - tx)
                            tx += len
                        }
                        if rr == nrows - 1 && mPad > nt {
                            let off = blk - vs.p + (mPad / mrow - 1) * kb * mrow + (nt - (mPad - mrow))
                            for c in 0..<aa { (vs.p + c * vStride + off).update(repeating: 0, count: mPad - nt) }
                        }
                    } else if isPacked {
                        var tx = txLo
                        while tx < txHi {
                            let t = rowStart + tx, q = t / nr, within = t - q * nr
                            let len = Swift.min(txHi - tx, nr - within)
                            rowTransform(tx, tx + len, vs.p + q * inC * nr + ic * nr + within - tx)
                            tx += len
                        }
                        if rr == nrows - 1 && ntPad > nt {
                            let off = (ntPad / nr - 1) * inC * nr + ic * nr + (nt - (ntPad - nr))
                            for c in 0..<aa { (vs.p + c * vStride + off).update(repeating: 0, count: ntPad - nt) }
                        }
                    } else {
                        rowTransform(txLo, txHi, vs.p + ic * nt + rowStart)
                    }
                }
            }
            let c1 = prof ? DispatchTime.now().uptimeNanoseconds : 0
            // M[c] = U[c] · V[c]; products `cs` floats apart
            let cs = winogradSkew(outC * nt)
            if packedUT != nil {
                let mp = mPad / mrow, np = (outC + nr - 1) / nr
                productTasks(aa, threads: threads) { c in
                    zoo_gemm_compute(Int32(nt), Int32(outC), Int32(inC), vs.p + c * vStride, uTable.value[c], ms.p + c * cs, Int32(outC),
                                     nil, 0, 0, 0, 0, Int32(mp), 0, Int32(np))
                }
            } else if packedU != nil {
                let mp = (outC + gemmMR - 1) / gemmMR, np = ntPad / nr
                productTasks(aa, threads: threads) { c in
                    zoo_gemm_compute(Int32(outC), Int32(nt), Int32(inC), uTable.value[c], vs.p + c * vStride, ms.p + c * cs, Int32(nt),
                                     nil, 0, 0, 0, 0, Int32(mp), 0, Int32(np))
                }
            } else if winogradSplitGemms {
                // The α² products are independent: one single-threaded GEMM per task.
                productTasks(aa, threads: threads) { c in
                    sgemm(false, false, m: outC, n: nt, k: inC, a: us.p + c * outC * inC, lda: inC, b: vs.p + c * vStride, ldb: nt,
                          c: ms.p + c * cs, ldc: nt, threads: 1)
                }
            } else {
                for c in 0..<aa {
                    sgemm(false, false, m: outC, n: nt, k: inC, a: us.p + c * outC * inC, lda: inC, b: vs.p + c * vStride, ldb: nt,
                          c: ms.p + c * cs, ldc: nt, threads: threads)
                }
            }
            let c2 = prof ? DispatchTime.now().uptimeNanoseconds : 0
            // Y = Aᵀ M A + bias, activation
            let useCOut = winogradCTransforms && !swapped && zoo_kernels_simd() != 0 && tilesW <= 512
            let (clampOut, cLo, cHi): (Int32, Float, Float) = switch act {
            case .relu: (1, 0, .infinity)
            case let .clip(l, h): (1, l, h)
            case .none, .sigmoid, .tanh: (0, 0, 0)
            }
            parallelFor(outC * nrows, threads: threads, grain: 2) { range in
                let s = UnsafeMutablePointer<Float>.allocate(capacity: m * a * tilesW)
                defer { s.deallocate() }
                for item in range {
                    let oc = item / nrows, rr = item % nrows
                    let row = firstRow + rr, n = row / tilesH, ty = row % tilesH
                    let (txLo, txHi) = cols(row), rowStart = row * tilesW - chunkLo
                    // M of tile column tx at base + tx·ts (tx in txLo..<txHi)
                    let base = swapped ? ms.p + rowStart * outC + oc : ms.p + oc * nt + rowStart
                    // Output columns of the tiles txLo..<txHi (the C row stores every column up to its width: the next
                    // tiles may be another worker's)
                    let x0 = m * txLo, x1 = Swift.min(g.outW, m * txHi)
                    if useCOut {
                        let rowsOut = Swift.min(m, g.outH - ty * m)
                        let out = ys.p + (n * outC + oc) * g.outPlane + ty * m * g.outW + x0
                        _ = zoo_wino_output_row(Int32(m), base + txLo, cs, Int32(txHi - txLo), bs?.p[oc] ?? 0, clampOut, cLo, cHi,
                                                out, g.outW, Int32(x1 - x0), Int32(rowsOut))
                        if clampOut == 0 && act != .none {
                            for i in 0..<rowsOut { applyActivation(act, out + i * g.outW, count: x1 - x0) }
                        }
                        continue
                    }
                    // Rows: s[i'][j][tx] = Σ_i Aᵀ[i'][i] M[i][j]
                    for j in 0..<a {
                        @inline(__always) func mr(_ i: Int) -> UnsafeMutablePointer<Float> { base + (i * a + j) * cs }
                        @inline(__always) func sr(_ i: Int) -> UnsafeMutablePointer<Float> { s + (i * a + j) * tilesW }
                        var tx = txLo
                        if m == 4 {
                            let m0 = mr(0), m1 = mr(1), m2 = mr(2), m3 = mr(3), m4 = mr(4), m5 = mr(5)
                            let s0 = sr(0), s1 = sr(1), s2 = sr(2), s3 = sr(3)
                            @inline(__always) func ld(_ p: UnsafeMutablePointer<Float>) -> SIMD4<Float> {
                                UnsafeRawPointer(p + tx).loadUnaligned(as: SIMD4<Float>.self)
                            }
                            @inline(__always) func st(_ p: UnsafeMutablePointer<Float>, _ v: SIMD4<Float>) {
                                UnsafeMutableRawPointer(p + tx).storeBytes(of: v, as: SIMD4<Float>.self)
                            }
                            while ts == 1 && tx + 4 <= txHi {
                                let q0 = ld(m0), q1 = ld(m1), q2 = ld(m2), q3 = ld(m3), q4 = ld(m4), q5 = ld(m5)
                                let p12 = q1 + q2, d12 = q1 - q2, p34 = q3 + q4, d34 = q3 - q4
                                st(s0, q0 + p12 + p34); st(s1, d12 + 2 * d34); st(s2, p12 + 4 * p34); st(s3, d12 + 8 * d34 + q5)
                                tx += 4
                            }
                            while tx < txHi {
                                let r = at4(m0[tx * ts], m1[tx * ts], m2[tx * ts], m3[tx * ts], m4[tx * ts], m5[tx * ts])
                                s0[tx] = r.0; s1[tx] = r.1; s2[tx] = r.2; s3[tx] = r.3
                                tx += 1
                            }
                        } else {
                            let m0 = mr(0), m1 = mr(1), m2 = mr(2), m3 = mr(3)
                            let s0 = sr(0), s1 = sr(1)
                            while ts == 1 && tx + 4 <= txHi {
                                let q0 = UnsafeRawPointer(m0 + tx).loadUnaligned(as: SIMD4<Float>.self)
                                let q1 = UnsafeRawPointer(m1 + tx).loadUnaligned(as: SIMD4<Float>.self)
                                let q2 = UnsafeRawPointer(m2 + tx).loadUnaligned(as: SIMD4<Float>.self)
                                let q3 = UnsafeRawPointer(m3 + tx).loadUnaligned(as: SIMD4<Float>.self)
                                UnsafeMutableRawPointer(s0 + tx).storeBytes(of: q0 + q1 + q2, as: SIMD4<Float>.self)
                                UnsafeMutableRawPointer(s1 + tx).storeBytes(of: q1 - q2 - q3, as: SIMD4<Float>.self)
                                tx += 4
                            }
                            while tx < txHi {
                                s0[tx] = m0[tx * ts] + m1[tx * ts] + m2[tx * ts]; s1[tx] = m1[tx * ts] - m2[tx * ts] - m3[tx * ts]
                                tx += 1
                            }
                        }
                    }
                    // Columns: out[i'][j'] = Σ_j s[i'][j] A[j][j'] + bias
                    let bias = bs?.p[oc] ?? 0
                    let outPlane = ys.p + (n * outC + oc) * g.outPlane
                    let fullTiles = g.outW / m
                    for i in 0..<m {
                        let oy = ty * m + i
                        if oy >= g.outH { break }
                        let out = outPlane + oy * g.outW
                        @inline(__always) func sc(_ j: Int) -> UnsafeMutablePointer<Float> { s + (i * a + j) * tilesW }
                        if m == 4 {
                            let c0 = sc(0), c1 = sc(1), c2 = sc(2), c3 = sc(3), c4 = sc(4), c5 = sc(5)
                            for tx in txLo..<txHi {
                                let r = at4(c0[tx], c1[tx], c2[tx], c3[tx], c4[tx], c5[tx])
                                let o = out + 4 * tx
                                if tx < fullTiles {
                                    o[0] = r.0 + bias; o[1] = r.1 + bias; o[2] = r.2 + bias; o[3] = r.3 + bias
                                } else {
                                    let left = g.outW - 4 * tx
                                    o[0] = r.0 + bias
                                    if left > 1 { o[1] = r.1 + bias }
                                    if left > 2 { o[2] = r.2 + bias }
                                }
                            }
                        } else {
                            let c0 = sc(0), c1 = sc(1), c2 = sc(2), c3 = sc(3)
                            for tx in txLo..<txHi {
                                let o = out + 2 * tx
                                o[0] = c0[tx] + c1[tx] + c2[tx] + bias
                                if tx < fullTiles { o[1] = c1[tx] - c2[tx] - c3[tx] + bias }
                            }
                        }
                        applyActivation(act, out + x0, count: x1 - x0)
                    }
                }
            }
            if prof {
                let c3 = DispatchTime.now().uptimeNanoseconds
                tIn += c1 - c0; tGemm += c2 - c1; tOut += c3 - c2
            }
            chunkLo = chunkHi
        }
        if prof {
            FileHandle.standardError.write(String(format: "winograd F(%d) N%d %d→%d %dx%d tiles %d..<%d chunks %d: in %.3f gemm %.3f out %.3f ms\n",
                                                  m, g.batch, inC, outC, g.outH, g.outW, tileRange.lowerBound, tileRange.upperBound,
                                                  (tileRange.count + chunkRows * tilesW - 1) / (chunkRows * tilesW),
                                                  Double(tIn) / 1e6, Double(tGemm) / 1e6, Double(tOut) / 1e6).data(using: .utf8)!)
        }
    }
    nonisolated(unsafe) static var winogradProfile = ProcessInfo.processInfo.environment["ZOO_WINOGRAD_PROFILE"] == "1"
}

/// Transformed weights of one convolution, owned by a caller whose weights do not change while it holds this
/// (the inference `Executor`, one per node): looked up without hashing the weights. Callers whose weights change
/// (training) pass none and get the content-hashed shared cache.
public final class ConvWeightCache: @unchecked Sendable {
    private let lock = NSLock()
    private var winogradU: [Int: Buffer] = [:]
    public init() {}

    private var winogradPackedU: [Int: [PackedMatrix]] = [:]

    /// The α² transformed weight matrices U[c] (outC × inC), each packed for zoo's GEMM.
    func winogradPacked(_ w: UnsafePointer<Float>, outC: Int, inC: Int, tile m: Int, threads: Int = 1) -> [PackedMatrix] {
        lock.lock(); defer { lock.unlock() }
        if let p = winogradPackedU[m] { return p }
        let u = Fast.winogradTransformWeights(w, outC: outC, inC: inC, tile: m, threads: threads, skewed: true)
        let count = (m + 2) * (m + 2), stride = Fast.winogradSkewedPlane(outC * inC)
        var packed = [PackedMatrix?](repeating: nil, count: count)
        packed.withUnsafeMutableBufferPointer { pp in
            let ps = UnsafeSendableBox(pp.baseAddress!), us = SendConstPtr(u.p)
            Fast.parallelFor(count, threads: threads) { r in
                for c in r { ps.value[c] = PackedMatrix(m: outC, k: inC, a: us.p + c * stride, lda: inC) }
            }
        }
        let p = packed.map { $0! }
        winogradPackedU[m] = p
        return p
    }

    private var winogradPackedUT: [Int: [Buffer]] = [:]

    /// The α² transposed matrices U[c]ᵀ (inC × outC), each packed as NR-column panels (the B side of zoo's GEMM).
    func winogradPackedT(_ w: UnsafePointer<Float>, outC: Int, inC: Int, tile m: Int, threads: Int = 1) -> [Buffer] {
        lock.lock(); defer { lock.unlock() }
        if let p = winogradPackedUT[m] { return p }
        // Uᵀ[c] (inC × outC) straight from the transform, then each packed as NR-column panels, the products in parallel.
        let ut = Fast.winogradTransformWeights(w, outC: outC, inC: inC, tile: m, threads: threads, transposed: true, skewed: true)
        let stride = Fast.winogradSkewedPlane(outC * inC)
        let floats = Swift.max(1, zoo_gemm_packed_b_floats(Int32(inC), Int32(outC))), panels = Int32((outC + Fast.gemmNR - 1) / Fast.gemmNR)
        let p = (0..<(m + 2) * (m + 2)).map { _ in Buffer(count: floats) }
        let ts = SendConstPtr(ut.p), ps = UnsafeSendableBox(p.map { SendPtr($0.p) })
        Fast.parallelFor(p.count, threads: threads) { r in
            for c in r { zoo_gemm_pack_b(Int32(inC), Int32(outC), ts.p + c * stride, Int32(outC), ps.value[c].p, 0, panels) }
        }
        winogradPackedUT[m] = p
        return p
    }

    func winograd(_ w: UnsafePointer<Float>, outC: Int, inC: Int, tile m: Int, threads: Int = 1) -> Buffer {
        lock.lock(); defer { lock.unlock() }
        if let u = winogradU[m] { return u }
        let u = Fast.winogradTransformWeights(w, outC: outC, inC: inC, tile: m, threads: threads)
        winogradU[m] = u
        return u
    }
}
