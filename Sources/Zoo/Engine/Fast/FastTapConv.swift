import Foundation
import CZooKernels

extension Fast {
    /// `ZOO_TAPCONV=0` sends the few-tap convolutions back to the packed GEMM / im2col path (A/B switch).
    nonisolated(unsafe) static var tapConvOn = ProcessInfo.processInfo.environment["ZOO_TAPCONV"] != "0"
    /// Image stems (at most 4 input channels, kernels up to 7×7: resnet18's and googlenet's 3→64 7×7/2) take it too, up to
    /// 196 taps: resnet18's stem at batch 1 took 0.61 ms here against 0.76 on im2col + packed GEMM (Zen 5).
    /// `ZOO_TAP_STEM=0` limits it to 32 taps again (A/B).
    nonisolated(unsafe) static var tapConvStems = ProcessInfo.processInfo.environment["ZOO_TAP_STEM"] != "0"
    /// While row bands are on, the tap-row kernel writes them (band t of the output rows on worker t), so the layers after
    /// it stay in bands; `ZOO_TAP_BANDS=0`: it splits its own way even then (A/B switch).
    nonisolated(unsafe) static var tapConvBands = ProcessInfo.processInfo.environment["ZOO_TAP_BANDS"] != "0"
    static func tapConvTapsFit(_ g: Conv2dGeometry) -> Bool {
        g.inC * g.kH * g.kW <= 32 || (tapConvStems && g.inC <= 4 && g.kH * g.kW <= 49)
    }

    /// Convolutions `tapConv` takes: one group, not 1×1, few taps (`tapConvTapsFit`: at most 32 of inC·kH·kW, e.g.
    /// mobilenet_v2's 3×3/2 stem with 3 input channels, or an image stem), horizontal stride 1 or 2, no activation or
    /// ReLU/clip, on AVX-512F CPUs.
    static func tapConvApplies(_ g: Conv2dGeometry, act: Activation) -> Bool {
        guard tapConvOn, g.groups == 1, !isPointwise(g), tapConvTapsFit(g), g.strideW == 1 || g.strideW == 2,
              g.outH > 0, g.outW > 0, zoo_kernels_simd() != 0 else { return false }
        switch act {
        case .none, .relu, .clip: return true
        case .sigmoid, .tanh: return false
        }
    }

    /// Direct convolution for few input taps as an implicit GEMM per output row: a band of output rows of one image
    /// has its input rows copied into a zero-padded, stride-deinterleaved buffer (the depthwise staging layout, one
    /// block per input channel), so each tap (c, ky, kx) of a row is a contiguous run; CZooKernels' 8×48 AVX-512F
    /// tiles then compute Y[outC, row] = W[outC, taps] · B[taps, row] with bias and ReLU/clip in the store.
    /// Tasks are (image, band of output rows) over the pool. `w` packed from [outC, inC·kH·kW] (`PointwisePacked`).
    static func tapConv(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: PointwisePacked, b: UnsafePointer<Float>?,
                        act: Activation, y: UnsafeMutablePointer<Float>, threads: Int) {
        let sw = StageWindow(g)
        let st = DepthwiseStage(sw)
        let s = g.strideW, taps = g.inC * g.kH * g.kW
        let (clamp, lo, hi): (Int32, Float, Float) = switch act {
        case .relu: (1, 0, .infinity)
        case let .clip(l, h): (1, l, h)
        default: (0, 0, 0)
        }
        let work = g.batch * g.outC * taps * g.outPlane
        let want = threads <= 1 ? 1 : Swift.max(1, Swift.min(partsPerThread * threads, work / 100_000))
        // Row bands (batch 1, cores apart): worker t writes rows band(outH, t, parts), the split the next layer reads in.
        let bandSplit = tapConvBands ? bandParts(batch: g.batch, threads: threads) : 0
        let bands = bandSplit > 0 ? Swift.min(g.outH, bandSplit) : Swift.min(g.outH, Swift.max(1, (want + g.batch - 1) / g.batch))
        let bandOut = (g.outH + bands - 1) / bands
        @inline(__always) func rowsOf(_ k: Int) -> Range<Int> {
            bandSplit > 0 ? band(g.outH, k, bands) : (k * bandOut)..<Swift.min(g.outH, k * bandOut + bandOut)
        }
        let bandRows = (bandOut - 1) * g.strideH + (g.kH - 1) * g.dilH + 1
        let chanFloats = bandRows * st.rowFloats
        var offsets = [Int](repeating: 0, count: taps)
        for c in 0..<g.inC {
            for ky in 0..<g.kH {
                for kx in 0..<g.kW {
                    let col = kx * g.dilW
                    offsets[(c * g.kH + ky) * g.kW + kx] = c * chanFloats + ky * g.dilH * st.rowFloats + (col % s) * st.runFloats + col / s
                }
            }
        }
        let xs = SendConstPtr(x), ys = SendPtr(y), ws = SendConstPtr(w.p)
        let bs = b.map(SendConstPtr.init)
        let panels = Int32((g.outC + 7) / 8)
        offsets.withUnsafeBufferPointer { offp in
            let offs = UnsafeSendableBox(offp)
            parallelTasks(g.batch * bands, threads: threads) { t in
                let img = t / bands, rows = rowsOf(t % bands), oy0 = rows.lowerBound, oy1 = rows.upperBound
                if oy0 >= oy1 { return }
                let total = g.inC * chanFloats + st.rowFloats
                ScratchPool.shared.with(total) { buf in
                buf.update(repeating: 0, count: total)
                let temp = buf + g.inC * chanFloats
                let lead = Swift.min(g.padLeft, st.rowFloats)
                let count = Swift.max(0, Swift.min(g.inW, st.rowFloats - lead))
                let pr0 = oy0 * g.strideH
                let pr1 = (oy1 - 1) * g.strideH + (g.kH - 1) * g.dilH + 1
                for c in 0..<g.inC {
                    let plane = xs.p + (img * g.inC + c) * g.inPlane
                    for r in pr0..<pr1 {
                        let iy = r - g.padTop
                        if iy < 0 || iy >= g.inH || count == 0 { continue }
                        stageRow(buf + c * chanFloats + (r - pr0) * st.rowFloats, plane + iy * g.inW, count: count, lead: lead,
                                 stride: s, runFloats: st.runFloats, temp: temp)
                    }
                }
                let out = ys.p + img * g.outC * g.outPlane
                for oy in oy0..<oy1 {
                    _ = zoo_conv_taps_row(Int32(g.outC), Int32(taps), ws.p, buf + (oy - oy0) * g.strideH * st.rowFloats,
                                          offs.value.baseAddress!, Int32(g.outW), 0, panels, bs?.p, clamp, lo, hi,
                                          out + oy * g.outW, g.outPlane)
                }
                }
            }
        }
    }
}
