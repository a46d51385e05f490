import COpenBLAS
import CGemm
import Foundation

/// A general SGEMM on zoo's packed kernel (Sources/CGemm), the alternative to OpenBLAS behind `Fast.sgemm`.
///
/// Why: Debian's OpenBLAS 0.3.21 picks its kernel from the CPU model, and on a CPU it does not know (an Emerald Rapids
/// Xeon, model 0xCF, on 2026-12-05) it falls back to "Prescott" (SSE3): 55–64 GFLOP/s on two cores where zoo's
/// AVX-512 kernel makes 166–266 on resnet18's GEMM shapes (`zoo-tool bench --gemm`), and a resnet18 training step
/// took 2× as long. `OPENBLAS_CORETYPE` would mend it but is read when the library loads, before any of our code.
/// So `Fast.sgemm` takes this route whenever OpenBLAS's kernel is a lower vector level than zoo's (`useZooSgemm`);
/// where OpenBLAS runs a kernel for the CPU (Haswell/Zen on AVX2, SkylakeX on AVX-512) it stays with OpenBLAS, which
/// measured a little faster there. `ZOO_SGEMM=zoo|openblas` forces either (A/B).
///
/// Layout of the work (Goto-style): op(A) is packed once (MR-row panels, KC blocks, spread over the workers); the
/// columns of C are split among the workers, and each packs blocks of op(B) of `kBlock` × `nBlockPanels`·NR into a
/// buffer of its own that stays in L2 and multiplies them at once. With few column panels (small n), op(B) is packed
/// whole and the rows of C are split instead.
extension Fast {
    /// OpenBLAS's kernel family as a vector level comparable to `gemmLevel`: 2 AVX-512, 1 AVX2+FMA, 0 older.
    static func openblasLevel(coreName: String) -> Int {
        switch coreName.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return 2
        case "haswell", "zen": return 1
        default: return 0
        }
    }

    public static let openblasCoreName: String = openblas_get_corename().map { String(cString: $0) } ?? ""

    /// True when `Fast.sgemm` runs on zoo's kernel: forced by `ZOO_SGEMM`, else when OpenBLAS runs a lower vector
    /// level than zoo's kernel on this CPU.
    nonisolated(unsafe) public static var useZooSgemm: Bool = {
        switch ProcessInfo.processInfo.environment["ZOO_SGEMM"] {
        case "zoo": return true
        case "openblas": return false
        default: return gemmLevel > openblasLevel(coreName: openblasCoreName)
        }
    }()

    /// K rows of op(B) per packed block (a multiple of KC, so that A's KC blocks line up) and column panels per block.
    /// `ZOO_SGEMM_KBLOCK` / `ZOO_SGEMM_BLOCK` override them (A/B).
    nonisolated(unsafe) static var zooSgemmKBlock = ProcessInfo.processInfo.environment["ZOO_SGEMM_KBLOCK"].flatMap(Int.init) ?? 512
    nonisolated(unsafe) static var zooSgemmBlockFloats = ProcessInfo.processInfo.environment["ZOO_SGEMM_BLOCK"].flatMap(Int.init) ?? 1 << 18

    /// C = op(A) · op(B) (+ C when `accumulate`), row-major with leading dimensions; op transposes when `ta` / `tb`.
    static func zooSgemm(_ ta: Bool, _ tb: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                         b: UnsafePointer<Float>, ldb: Int, accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int,
                         threads: Int) {
        if m <= 0 || n <= 0 { return }
        if k <= 0 {
            if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            return
        }
        let mr = gemmMR, nr = gemmNR, kc = gemmKC
        let mp = (m + mr - 1) / mr, np = (n + nr - 1) / nr
        let work = m * n * k
        let parts = threads > 1 && work >= gemmSplitWork ? threads : 1
        // op(A)(i, kk) = a[i·rs + kk·cs]; op(B)(kk, j) = b[kk·rs + j·cs].
        let ars = ta ? 1 : lda, acs = ta ? lda : 1
        let brs = tb ? 1 : ldb, bcs = tb ? ldb : 1
        let pa = UnsafeMutablePointer<Float>.allocate(capacity: Int(zoo_gemm_packed_a_floats(Int32(m), Int32(k))))
        defer { pa.deallocate() }
        let as_ = SendConstPtr(a), bs = SendConstPtr(b), cs = SendPtr(c), pas = SendPtr(pa)
        let aGrain = Swift.max(1, 32768 / Swift.max(1, k * mr))
        parallelFor(mp, threads: parts > 1 ? threads : 1, grain: aGrain) { r in
            zoo_gemm_pack_a_strided(Int32(m), Int32(k), as_.p, ars, acs, pas.p, Int32(r.lowerBound), Int32(r.upperBound))
        }
        let acc: Int32 = accumulate ? 1 : 0
        if np >= 2 * parts {
            // Columns split among the workers; each packs and multiplies L2-sized blocks of op(B).
            let kBlock = Swift.max(kc, zooSgemmKBlock / kc * kc)
            let blockPanels = Swift.max(1, zooSgemmBlockFloats / (Swift.min(k, kBlock) * nr))
            parallelTasks(parts, threads: threads) { t in
                let q0 = np * t / parts, q1 = np * (t + 1) / parts
                if q0 >= q1 { return }
                let buf = UnsafeMutablePointer<Float>.allocate(capacity: Swift.min(k, kBlock) * Swift.min(blockPanels, q1 - q0) * nr)
                defer { buf.deallocate() }
                var qb = q0
                while qb < q1 {
                    let qe = Swift.min(q1, qb + blockPanels)
                    let j0 = qb * nr, nb = Swift.min(n, qe * nr) - j0
                    var k0 = 0
                    while k0 < k {
                        let kb = Swift.min(kBlock, k - k0)
                        zoo_gemm_pack_b_strided(Int32(kb), Int32(nb), bs.p + k0 * brs + j0 * bcs, brs, bcs, buf, 0, Int32(qe - qb))
                        zoo_gemm_compute_acc(Int32(m), Int32(nb), Int32(kb), pas.p + k0 * mp * mr, buf, cs.p + j0, Int32(ldc),
                                             nil, 0, 0, 0, 0, Int32(mp), 0, Int32(qe - qb), k0 > 0 ? 1 : acc)
                        k0 += kb
                    }
                    qb = qe
                }
            }
        } else {
            // Few column panels: op(B) packed whole, rows of C split among the workers.
            let pb = UnsafeMutablePointer<Float>.allocate(capacity: Int(zoo_gemm_packed_b_floats(Int32(k), Int32(n))))
            defer { pb.deallocate() }
            zoo_gemm_pack_b_strided(Int32(k), Int32(n), b, brs, bcs, pb, 0, Int32(np))
            let pbs = SendConstPtr(pb)
            let rowParts = Swift.min(parts, mp)
            parallelTasks(rowParts, threads: threads) { t in
                let p0 = mp * t / rowParts, p1 = mp * (t + 1) / rowParts
                if p0 < p1 {
                    zoo_gemm_compute_acc(Int32(m), Int32(n), Int32(k), pas.p, pbs.p, cs.p, Int32(ldc), nil, 0, 0, 0,
                                         Int32(p0), Int32(p1), 0, Int32(np), acc)
                }
            }
        }
    }
}
