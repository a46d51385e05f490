import Foundation
import CZooKernels

extension Fast {
    /// `ZOO_DW=direct` runs the older direct depthwise kernel (`depthwise`) instead of the staged one (A/B switch).
    nonisolated(unsafe) static var depthwiseDirect = ProcessInfo.processInfo.environment["ZOO_DW"] == "direct"
    /// `ZOO_DW=swift` keeps the staged kernels (depthwise, max pooling) on their Swift SIMD rows instead of the
    /// AVX-512F C rows (Sources/CZooKernels, chosen at run time when the CPU has AVX-512F).
    nonisolated(unsafe) static var stagedRowsInC = ProcessInfo.processInfo.environment["ZOO_DW"] != "swift"

    /// Whether `depthwiseStaged` handles this geometry (depthwise with horizontal stride 1 or 2).
    static func depthwiseStagedApplies(_ g: Conv2dGeometry) -> Bool {
        isDepthwise(g) && (g.strideW == 1 || g.strideW == 2) && g.outH > 0 && g.outW > 0
    }

    /// Layout of the staged (zero-padded) copy of one input plane: `rows` padded rows, each split into `phases`
    /// (= horizontal stride) runs of `runFloats`, run q holding padded columns q, q+s, q+2s, ….
    /// Output column ox of tap kx then reads run (kx·dilW) mod s at index ox + (kx·dilW) div s: contiguous for
    /// any stride, so the inner loop is SIMD loads with no bounds tests.
    /// The window geometry the staging needs (from a convolution or a pooling).
    struct StageWindow {
        var inH: Int, inW: Int, outH: Int, outW: Int, kH: Int, kW: Int
        var strideH: Int, strideW: Int, dilH: Int, dilW: Int, padTop: Int, padLeft: Int
        init(_ g: Conv2dGeometry) {
            inH = g.inH; inW = g.inW; outH = g.outH; outW = g.outW; kH = g.kH; kW = g.kW
            strideH = g.strideH; strideW = g.strideW; dilH = g.dilH; dilW = g.dilW; padTop = g.padTop; padLeft = g.padLeft
        }
        init(_ g: Pool2dGeometry) {
            inH = g.inH; inW = g.inW; outH = g.outH; outW = g.outW; kH = g.kH; kW = g.kW
            strideH = g.strideH; strideW = g.strideW; dilH = g.dilH; dilW = g.dilW; padTop = g.padTop; padLeft = g.padLeft
        }
        /// Offset of tap (ky, kx) inside a staged plane laid out as `st`, from the output row's first padded row.
        func tapOffsets(_ st: DepthwiseStage) -> [Int] {
            var offsets = [Int](repeating: 0, count: kH * kW)
            for ky in 0..<kH {
                for kx in 0..<kW {
                    let c = kx * dilW
                    offsets[ky * kW + kx] = ky * dilH * st.rowFloats + (c % strideW) * st.runFloats + c / strideW
                }
            }
            return offsets
        }
    }

    struct DepthwiseStage {
        var width: Int, blocks: Int, runFloats: Int, rowFloats: Int, rows: Int
        /// Output columns per SIMD block: 8 for narrow rows (7×7, 14×14 planes waste less), else 16.
        init(_ g: StageWindow) {
            let s = g.strideW
            width = g.outW <= 8 ? 8 : 16
            blocks = (g.outW + width - 1) / width
            let maxOff = ((g.kW - 1) * g.dilW) / s
            runFloats = (blocks * width + maxOff + 15) / 16 * 16
            rowFloats = s * runFloats
            rows = (g.outH - 1) * g.strideH + (g.kH - 1) * g.dilH + 1
        }
        /// Per-worker floats: the staged plane, one undeinterleaved row (stride 2) and a 16-float output tail.
        var workerFloats: Int { rows * rowFloats + rowFloats + 16 }
    }

    /// Depthwise convolution (groups with one input channel, any channel multiplier, horizontal stride 1 or 2):
    /// each input plane is copied once into a zero-padded, stride-deinterleaved buffer (`DepthwiseStage`), then
    /// every output row is 16 columns at a time: the bias, then each tap's weight × a contiguous SIMD16 load, in the
    /// reference's (ky, kx) order; ReLU/clip are applied in registers. Planes (image × channel) are split over workers.
    static func depthwiseStaged(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>, b: UnsafePointer<Float>?,
                                act: Activation, y: UnsafeMutablePointer<Float>, threads: Int) {
        let sw = StageWindow(g)
        let st = DepthwiseStage(sw)
        let taps = g.kH * g.kW
        let offsets = sw.tapOffsets(st)
        let xs = SendConstPtr(x), ws = SendConstPtr(w), ys = SendPtr(y)
        let bs = b.map(SendConstPtr.init)
        let ocpg = g.outCPerGroup
        let (lo, hi, clampInRegisters): (Float, Float, Bool) = {
            switch act {
            case .relu: return (0, .infinity, true)
            case let .clip(l, h): return (l, h, true)
            default: return (-.infinity, .infinity, false)
            }
        }()
        offsets.withUnsafeBufferPointer { offp in
            let offs = UnsafeSendableBox(offp)
            parallelFor(g.batch * g.outC, threads: threads) { range in
                let buf = UnsafeMutablePointer<Float>.allocate(capacity: st.workerFloats)
                defer { buf.deallocate() }
                prepareStage(st, buf: buf, fill: 0)
                let tail = buf + st.rows * st.rowFloats + st.rowFloats
                var staged = -1
                for p in range {
                    let n = p / g.outC, oc = p % g.outC
                    let src = n * g.inC + oc / ocpg
                    if src != staged {
                        stagePlane(sw, st, x: xs.p + src * g.inPlane, buf: buf)
                        staged = src
                    }
                    let out = ys.p + p * g.outPlane
                    let wk = ws.p + oc * taps
                    let bias = bs?.p[oc] ?? 0
                    if stagedRowsInC && zoo_dw_plane(buf, offs.value.baseAddress!, Int32(taps), wk, bias, clampInRegisters ? 1 : 0, lo, hi,
                                                     g.outH, g.outW, g.strideH * st.rowFloats, out) != 0 {
                        // done by the AVX-512F rows
                    } else if taps == 9 && st.width == 16 {
                        depthwiseRows16(g, st, taps: 9, offs: offs.value, wk: wk, bias: bias, lo: lo, hi: hi, clamp: clampInRegisters,
                                      buf: buf, out: out, tail: tail)
                    } else if taps == 9 {
                        depthwiseRows8(g, st, taps: 9, offs: offs.value, wk: wk, bias: bias, lo: lo, hi: hi, clamp: clampInRegisters,
                                      buf: buf, out: out, tail: tail)
                    } else if st.width == 16 {
                        depthwiseRows16(g, st, taps: taps, offs: offs.value, wk: wk, bias: bias, lo: lo, hi: hi, clamp: clampInRegisters,
                                      buf: buf, out: out, tail: tail)
                    } else {
                        depthwiseRows8(g, st, taps: taps, offs: offs.value, wk: wk, bias: bias, lo: lo, hi: hi, clamp: clampInRegisters,
                                      buf: buf, out: out, tail: tail)
                    }
                    if !clampInRegisters { applyActivation(act, out, count: g.outPlane) }
                }
            }
        }
    }

    /// One output plane, 16 columns per block (the 8-column twin below is the same code). Kept as two concrete
    /// copies on purpose: a version generic over `V: SIMD` (even with `@_specialize`) ran 3× slower (mobilenet_v2 b1
    /// with ZOO_DW=swift 27–28 ms vs 8–9 ms), because generic code reaches the protocol's element-wise default
    /// arithmetic instead of SIMD16/SIMD8's vector operators.
    @inline(__always)
    static func depthwiseRows16(_ g: Conv2dGeometry, _ st: DepthwiseStage, taps: Int, offs: UnsafeBufferPointer<Int>,
                              wk: UnsafePointer<Float>, bias: Float, lo: Float, hi: Float, clamp: Bool,
                              buf: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, tail: UnsafeMutablePointer<Float>) {
        let vlo = SIMD16<Float>(repeating: lo), vhi = SIMD16<Float>(repeating: hi)
        let vb = SIMD16<Float>(repeating: bias)
        let outW = g.outW, wd = 16
        let fullBlocks = outW / wd
        let o = offs.baseAddress!
        for oy in 0..<g.outH {
            let base = buf + oy * g.strideH * st.rowFloats
            let row = out + oy * outW
            for bi in 0..<st.blocks {
                let col = base + bi * wd
                var acc = vb
                for t in 0..<taps {
                    acc += SIMD16<Float>(repeating: wk[t]) * UnsafeRawPointer(col + o[t]).loadUnaligned(as: SIMD16<Float>.self)
                }
                if clamp {
                    acc.replace(with: vlo, where: acc .< vlo)
                    acc.replace(with: vhi, where: acc .> vhi)
                }
                if bi < fullBlocks {
                    UnsafeMutableRawPointer(row + bi * wd).storeBytes(of: acc, as: SIMD16<Float>.self)
                } else {
                    UnsafeMutableRawPointer(tail).storeBytes(of: acc, as: SIMD16<Float>.self)
                    (row + bi * wd).update(from: tail, count: outW - bi * wd)
                }
            }
        }
    }


    @inline(__always)
    static func depthwiseRows8(_ g: Conv2dGeometry, _ st: DepthwiseStage, taps: Int, offs: UnsafeBufferPointer<Int>,
                              wk: UnsafePointer<Float>, bias: Float, lo: Float, hi: Float, clamp: Bool,
                              buf: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, tail: UnsafeMutablePointer<Float>) {
        let vlo = SIMD8<Float>(repeating: lo), vhi = SIMD8<Float>(repeating: hi)
        let vb = SIMD8<Float>(repeating: bias)
        let outW = g.outW, wd = 8
        let fullBlocks = outW / wd
        let o = offs.baseAddress!
        for oy in 0..<g.outH {
            let base = buf + oy * g.strideH * st.rowFloats
            let row = out + oy * outW
            for bi in 0..<st.blocks {
                let col = base + bi * wd
                var acc = vb
                for t in 0..<taps {
                    acc += SIMD8<Float>(repeating: wk[t]) * UnsafeRawPointer(col + o[t]).loadUnaligned(as: SIMD8<Float>.self)
                }
                if clamp {
                    acc.replace(with: vlo, where: acc .< vlo)
                    acc.replace(with: vhi, where: acc .> vhi)
                }
                if bi < fullBlocks {
                    UnsafeMutableRawPointer(row + bi * wd).storeBytes(of: acc, as: SIMD8<Float>.self)
                } else {
                    UnsafeMutableRawPointer(tail).storeBytes(of: acc, as: SIMD8<Float>.self)
                    (row + bi * wd).update(from: tail, count: outW - bi * wd)
                }
            }
        }
    }

    /// Fills a worker's staging buffer once with `fill` (padding rows and columns then never change: every plane of
    /// one call writes the same interior region).
    static func prepareStage(_ st: DepthwiseStage, buf: UnsafeMutablePointer<Float>, fill: Float) {
        buf.update(repeating: fill, count: st.workerFloats)
    }

    /// Copies input plane `x` into the staged layout prepared by `prepareStage`: the input rows go to their padded
    /// position (clipped to the columns any tap reads), deinterleaved by the horizontal stride.
    static func stagePlane(_ g: StageWindow, _ st: DepthwiseStage, x: UnsafePointer<Float>, buf: UnsafeMutablePointer<Float>) {
        let s = g.strideW
        let temp = buf + st.rows * st.rowFloats
        let lead = Swift.min(g.padLeft, st.rowFloats)
        let count = Swift.max(0, Swift.min(g.inW, st.rowFloats - lead))
        let r0 = Swift.max(0, g.padTop), r1 = Swift.min(st.rows, g.padTop + g.inH)
        if r0 >= r1 { return }
        for r in r0..<r1 {
            stageRow(buf + r * st.rowFloats, x + (r - g.padTop) * g.inW, count: count, lead: lead, stride: s,
                     runFloats: st.runFloats, temp: temp)
        }
    }

    /// One input row into a staged row at column `lead`: as it is for stride 1; for stride 2 copied to `temp` first and
    /// split into the even run and the odd run (`runFloats` apart).
    @inline(__always)
    static func stageRow(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int, lead: Int, stride s: Int,
                         runFloats: Int, temp: UnsafeMutablePointer<Float>) {
        if s == 1 { copyFloats(dst + lead, src, count); return }
        copyFloats(temp + lead, src, count)
        var j = 0
        while j < runFloats {
            let v = UnsafeRawPointer(temp + 2 * j).loadUnaligned(as: SIMD32<Float>.self)
            UnsafeMutableRawPointer(dst + j).storeBytes(of: v.evenHalf, as: SIMD16<Float>.self)
            UnsafeMutableRawPointer(dst + runFloats + j).storeBytes(of: v.oddHalf, as: SIMD16<Float>.self)
            j += 16
        }
    }

    /// Short copies without a memmove call.
    @inline(__always)
    static func copyFloats(_ d: UnsafeMutablePointer<Float>, _ s: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        while i + 16 <= n {
            UnsafeMutableRawPointer(d + i).storeBytes(of: UnsafeRawPointer(s + i).loadUnaligned(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
            i += 16
        }
        while i + 4 <= n {
            UnsafeMutableRawPointer(d + i).storeBytes(of: UnsafeRawPointer(s + i).loadUnaligned(as: SIMD4<Float>.self), as: SIMD4<Float>.self)
            i += 4
        }
        while i < n { d[i] = s[i]; i += 1 }
    }
}
