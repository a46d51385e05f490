import CGemm
import Foundation

/// Raw weights transposed and packed for `Fast.rowConv`: one block of output channels per worker (task t of the pool
/// always runs on worker t, so each worker streams the same half of the weights every run).
public final class RowConvPacked: @unchecked Sendable {
    let parts: [(col0: Int, n: Int, buf: Buffer)]
    init(_ g: Conv2dGeometry, w: UnsafePointer<Float>, parts count: Int) {
        var geo = Fast.rowConvGeom(g)
        parts = Fast.rowConvParts(outC: g.outC, parts: count).map { r in
            let b = Buffer(count: zoo_rowconv_packed_floats(&geo, Int32(r.count)))
            zoo_rowconv_pack(&geo, w, Int32(r.lowerBound), Int32(r.count), b.p)
            return (r.lowerBound, r.count, b)
        }
    }
}

extension Fast {
    /// `ZOO_ROWCONV=0` sends the narrow-plane convolutions back to Winograd / the packed GEMM (A/B switch).
    nonisolated(unsafe) static var rowConvOn = ProcessInfo.processInfo.environment["ZOO_ROWCONV"] != "0"

    /// Each output row is one A panel of exactly outW slots, on AVX-512 tiles of that many rows (`zoo_gemm_rows_acc`):
    /// 7×7 planes computed 56 slots for 49 pixels on the 8-row tile. Env ZOO_ROWCONV_EXACT=0 restores the 8-slot panels
    /// (A/B switch); `rowConvExact` sets it (tests).
    static var rowConvExact: Bool {
        get { _ = rowConvExactFromEnv; return rowConvExactValue }
        set { _ = rowConvExactFromEnv; rowConvExactValue = newValue; zoo_rowconv_set_exact(newValue ? 1 : 0) }
    }
    nonisolated(unsafe) private static var rowConvExactValue = true
    private static let rowConvExactFromEnv: Void = {
        if ProcessInfo.processInfo.environment["ZOO_ROWCONV_EXACT"] == "0" { rowConvExactValue = false; zoo_rowconv_set_exact(0) }
    }()

    /// Convolutions `rowConv` takes: one image, output rows 5 to 8 wide (one panel per row; 8-slot panels would be at
    /// most 3/8 padding), at most 16 rows, one group, not 1×1 stride 1 (the in-place pointwise kernel), K = inC·kH·kW ≥ 256, on
    /// the AVX-512 GEMM. resnet18 b1 layer4 (512 → 512, 7×7): Winograd F(2×2) streams 16 MB of transformed weights per
    /// convolution, 1.8× the raw 9.4 MB, and at 16 tiles a product is bound by that stream.
    static func rowConvApplies(_ g: Conv2dGeometry, act: Activation) -> Bool {
        guard rowConvOn, gemmLevel == 2, gemmMR == 8, g.batch == 1, g.groups == 1, g.outW >= 5, g.outW <= 8, g.outH >= 1,
              g.outH <= 16, g.inCPerGroup * g.kH * g.kW >= 256, !isPointwise(g), g.strideH >= 1, g.strideW >= 1 else { return false }
        switch act {
        case .none, .relu, .clip: return true
        case .sigmoid, .tanh: return false
        }
    }

    static func rowConvGeom(_ g: Conv2dGeometry) -> zoo_rowconv_geom {
        zoo_rowconv_geom(inC: Int32(g.inC), inH: Int32(g.inH), inW: Int32(g.inW), outC: Int32(g.outC), outH: Int32(g.outH),
                         outW: Int32(g.outW), kH: Int32(g.kH), kW: Int32(g.kW), sH: Int32(g.strideH), sW: Int32(g.strideW),
                         padT: Int32(g.padTop), padL: Int32(g.padLeft), dH: Int32(g.dilH), dW: Int32(g.dilW))
    }

    /// Output-channel blocks, one per worker, boundaries on multiples of 16 (a 48-column panel's last vector masked).
    static func rowConvParts(outC: Int, parts: Int) -> [Range<Int>] {
        let p = Swift.max(1, Swift.min(parts, outC / 16))
        let cuts = (0...p).map { $0 == p ? outC : (outC * $0 / p) / 16 * 16 }
        return (0..<p).map { cuts[$0]..<cuts[$0 + 1] }.filter { !$0.isEmpty }
    }

    /// Scratch floats `rowConv` needs: Cᵀ (outH·8 × outC).
    static func rowConvScratch(_ g: Conv2dGeometry) -> Int { g.outH * 8 * g.outC }

    /// One worker per output-channel block (`RowConvPacked`), each staging the input and building the pixel panels
    /// itself (they are small: 7 panels × KC × 8 floats) so that nothing but the input crosses between the cores.
    static func rowConv(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: RowConvPacked, b: UnsafePointer<Float>?, act: Activation,
                        y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, threads: Int) {
        _ = rowConvExactFromEnv
        let (kind, lo, hi) = gemmEpilogue(act)
        let geoBox = UnsafeSendableBox(rowConvGeom(g))
        var geo = geoBox.value
        let work = Int(zoo_rowconv_work_floats(&geo))
        let xs = SendConstPtr(x), ys = SendPtr(y), cs = SendPtr(scratch), bs = b.map(SendConstPtr.init)
        let parts = UnsafeSendableBox(w.parts.map { ($0.col0, $0.n, SendConstPtr(UnsafePointer($0.buf.p))) })
        parallelTasks(parts.value.count, threads: threads) { t in
            let (col0, n, pb) = parts.value[t]
            var gg = geoBox.value
            ScratchPool.shared.with(work) { wk in
                _ = zoo_rowconv_part(&gg, xs.p, pb.p, Int32(col0), Int32(n), bs?.p, kind, lo, hi, cs.p, ys.p, wk)
            }
        }
    }
}
