import Foundation
import CZooKernels

extension Fast {
    /// `ZOO_DW=direct` runs the older direct depthwise kernel (`depthwise`) instead of the staged one (A/B switch).
    nonisolated(unsafe) static var depthwiseDirect = ProcessInfo.processInfo.environment["ZOO_DW"] == "direct"
    /// `ZOO_DW=swift` keeps the staged kernels (depthwise, max pooling) on their Swift SIMD rows instead of the
    /// AVX-512F C rows (Sources/CZooKernels, chosen at run time when the CPU has AVX-512F).
    nonisolated(unsafe) static var stagedRowsInC = ProcessInfo.processInfo.environment["ZOO_DW"] != "swift"

    /// `ZOO_DWC`: stride-1 depthwise planes with 8 channels in the SIMD lanes (`zoo_dwc`) when the output is at most
    /// this many columns wide (default 14); `ZOO_DWC=0` never, `ZOO_DWC=all` always (A/B switch). Measured on the Zen 3
    /// (mobilenet_v2 b1, one thread, layers apart, min of 4 runs, ms, rows → lanes): 7×7 × 960 0.181 → 0.154–0.156,
    /// 14×14 × 384 0.186 → 0.165, 14×14 × 576 0.280 → 0.264; 28×28 × 192 0.262 → 0.286 (slower: not taken),
    /// 56×56 × 144 0.646 → 0.632 (even).
    nonisolated(unsafe) static var channelLanesMaxWidth = widthLimit("ZOO_DWC", default: 14)

    /// The same for other horizontal strides (`ZOO_DWC2`, same values; default all): stride 2 needs no deinterleaving
    /// copy of each row here. Same run: 112→56 × 96 1.087 → 1.005–1.012, 56→28 × 144 0.418 → 0.361–0.367,
    /// 28→14 × 192 0.191 → 0.144–0.150, 14→7 × 576 0.212 → 0.142–0.145.
    nonisolated(unsafe) static var channelLanesMaxWidthS2 = widthLimit("ZOO_DWC2", default: Int.max)
    static let channelLanesDefault = (channelLanesMaxWidth, channelLanesMaxWidthS2)

    /// A width limit from the environment: `0` never, `all` always, a number, else `default`.
    static func widthLimit(_ name: String, default d: Int) -> Int {
        switch ProcessInfo.processInfo.environment[name] {
        case "all": return Int.max
        case let s?: return Int(s) ?? d
        case nil: return d
        }
    }

    /// An activation the kernels apply in registers: (clamp flag, lo, hi) for ReLU and clip; (0, −∞, ∞) for the
    /// others, which the caller applies after.
    static func clampOf(_ a: Activation) -> (Int32, Float, Float) {
        switch a {
        case .relu: (1, 0, .infinity)
        case let .clip(l, h): (1, l, h)
        default: (0, -.infinity, .infinity)
        }
    }

    /// In-process A/B of an inference switch (`zoo-tool bench` with `ZOO_BENCH_AB=NAME`): "dwc" = the channel-lane
    /// depthwise kernel at its configured width (on) or never (off). Returns false for an unknown name.
    public static func setABSwitch(_ name: String, on: Bool) -> Bool {
        switch name {
        case "dwc":
            channelLanesMaxWidth = on ? channelLanesDefault.0 : 0
            channelLanesMaxWidthS2 = on ? channelLanesDefault.1 : 0
        default: return false
        }
        return true
    }

    /// `depthwiseChannelLanes` gives each worker one contiguous run of 8-channel groups; `ZOO_DWC_RUNS=0`: a task per
    /// group, claimed in any order (A/B switch).
    nonisolated(unsafe) static var depthwiseLaneRuns = ProcessInfo.processInfo.environment["ZOO_DWC_RUNS"] != "0"

    /// Whether the channel-lane kernel takes this depthwise geometry (one output channel per group).
    static func channelLanesApply(_ g: Conv2dGeometry) -> Bool {
        g.outW <= (g.strideW == 1 ? channelLanesMaxWidth : channelLanesMaxWidthS2) && g.outCPerGroup == 1 && g.groups == g.inC && zoo_kernels_simd() >= 1
    }

    static func dwcGeom(_ g: Conv2dGeometry) -> zoo_dwc_geom {
        zoo_dwc_geom(inH: Int32(g.inH), inW: Int32(g.inW), outH: Int32(g.outH), outW: Int32(g.outW), kH: Int32(g.kH),
                     kW: Int32(g.kW), strideH: Int32(g.strideH), strideW: Int32(g.strideW), dilH: Int32(g.dilH),
                     dilW: Int32(g.dilW), padTop: Int32(g.padTop), padLeft: Int32(g.padLeft))
    }

    /// Depthwise convolution by `zoo_dwc` over groups of (image, 8 channels). Activations other than none/ReLU/clip after.
    static func depthwiseChannelLanes(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
                                      b: UnsafePointer<Float>?, act: Activation, y: UnsafeMutablePointer<Float>, threads: Int) {
        var geom = dwcGeom(g)
        let scratch = zoo_dwc_scratch_floats(&geom)
        let groups = (g.outC + 7) / 8, taps = g.kH * g.kW
        let (clamp, lo, hi) = clampOf(act)
        let xs = SendConstPtr(x), ws = SendConstPtr(w), ys = SendPtr(y), bs = b.map(SendConstPtr.init)
        // Contiguous runs of 8-channel groups per worker (one scratch each): a 7×7 plane's group is well under a
        // microsecond of work, about what claiming it as a task of its own costs when the cores are apart.
        let count = g.batch * groups, parts = depthwiseLaneRuns ? Swift.min(threads, count) : count
        parallelTasks(parts, threads: threads) { r in
            var gg = geom
            ScratchPool.shared.with(Int(scratch)) { buf in
                for t in (count * r / parts)..<(count * (r + 1) / parts) {
                    let n = t / groups, c0 = (t % groups) * 8, nch = Swift.min(8, g.outC - c0)
                    _ = zoo_dwc(Int32(nch), xs.p + (n * g.inC + c0) * g.inPlane, g.inPlane, ws.p + c0 * taps, bs.map { $0.p + c0 },
                                &gg, clamp, lo, hi, ys.p + (n * g.outC + c0) * g.outPlane, g.outPlane, buf)
                    if clamp == 0 { applyActivation(act, ys.p + (n * g.outC + c0) * g.outPlane, count: nch * g.outPlane) }
                }
            }
        }
    }

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
        if channelLanesApply(g) {
            depthwiseChannelLanes(g, x: x, w: w, b: b, act: act, y: y, threads: threads)
            return
        }
        let sw = StageWindow(g)
        let st = DepthwiseStage(sw)
        let taps = g.kH * g.kW
        let offsets = sw.tapOffsets(st)
        let xs = SendConstPtr(x), ws = SendConstPtr(w), ys = SendPtr(y)
        let bs = b.map(SendConstPtr.init)
        let ocpg = g.outCPerGroup
        let (clampFlag, lo, hi) = clampOf(act)
        let clampInRegisters = clampFlag != 0
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
    /// `rows`: only these staged rows (a row band's window).
    static func stagePlane(_ g: StageWindow, _ st: DepthwiseStage, x: UnsafePointer<Float>, buf: UnsafeMutablePointer<Float>,
                           rows: Range<Int>? = nil) {
        let s = g.strideW
        let temp = buf + st.rows * st.rowFloats
        let lead = Swift.min(g.padLeft, st.rowFloats)
        let count = Swift.max(0, Swift.min(g.inW, st.rowFloats - lead))
        let r0 = Swift.max(0, g.padTop, rows?.lowerBound ?? 0), r1 = Swift.min(st.rows, g.padTop + g.inH, rows?.upperBound ?? st.rows)
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
