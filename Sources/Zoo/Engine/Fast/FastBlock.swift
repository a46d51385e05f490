import Foundation
import CZooKernels

/// Task scratch buffers kept for reuse: a fresh allocation of a few hundred KB per task is an mmap with a page fault per
/// 4 KB on first touch, which cost more than the task's arithmetic. Each thread keeps its own buffers (`perThread`): a
/// buffer one core wrote and the other core then takes and writes costs a cross-core transfer per cache line (37 ns a
/// line with the vCPUs on distant cores, `bench/handoff.c`), and one shared list's lock bounced between the cores too.
final class ScratchPool: @unchecked Sendable {
    static let shared = ScratchPool()
    /// `ZOO_SCRATCH_SHARED=1`: one list for all threads, as before (A/B switch).
    nonisolated(unsafe) static var perThread = ProcessInfo.processInfo.environment["ZOO_SCRATCH_SHARED"] != "1"
    private final class Slot: @unchecked Sendable {
        let lock = NSLock()
        var free: [(p: UnsafeMutablePointer<Float>, count: Int)] = []
    }
    private static let slotCount = 64
    private let slots = (0..<ScratchPool.slotCount).map { _ in Slot() }

    /// Runs `body` with at least `count` floats (contents undefined), returned to the pool afterwards.
    func with<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
        let s = slots[Self.perThread ? Int(zoo_thread_slot()) % Self.slotCount : 0]
        s.lock.lock()
        var buf: (p: UnsafeMutablePointer<Float>, count: Int)
        if let i = s.free.lastIndex(where: { $0.count >= count }) {
            buf = s.free.remove(at: i)
        } else {
            if let small = s.free.popLast() { small.p.deallocate() }
            buf = (.allocate(capacity: count), count)
        }
        s.lock.unlock()
        defer { s.lock.lock(); s.free.append(buf); s.lock.unlock() }
        return body(buf.p)
    }
}

extension Fast {
    /// `ZOO_FUSE=0` runs an expand 1×1 convolution and the depthwise convolution after it as two layers (A/B switch).
    nonisolated(unsafe) static var fuseExpandDepthwise = ProcessInfo.processInfo.environment["ZOO_FUSE"] != "0"
    /// `ZOO_FUSE=pair` keeps the project 1×1 convolution (and residual Add) as layers of their own (A/B switch).
    nonisolated(unsafe) static var fuseProject = ProcessInfo.processInfo.environment["ZOO_FUSE"] != "pair"

    /// Whether `expandDepthwise` takes the pair: `ge` a 1×1 convolution `pointwiseInPlace` takes, `gd` a depthwise
    /// convolution (one output channel per group) `depthwiseStaged` takes over ge's output, activations none/ReLU/clip.
    static func expandDepthwiseApplies(_ ge: Conv2dGeometry, actE: Activation, _ gd: Conv2dGeometry, actD: Activation) -> Bool {
        guard fuseExpandDepthwise, pointwiseInPlaceApplies(ge, act: actE), isDepthwise(gd), depthwiseStagedApplies(gd),
              gd.groups == gd.inC, gd.outC == gd.inC, gd.inC == ge.outC, gd.batch == ge.batch, gd.inH == ge.outH, gd.inW == ge.outW,
              zoo_kernels_simd() != 0 else { return false }
        switch actD {
        case .none, .relu, .clip: return true
        case .sigmoid, .tanh: return false
        }
    }

    /// On: `expandDepthwisePlan` never splits channels (small planes get one band of rows per worker), so the project 1×1
    /// (and residual) run fused in every block; off (`ZOO_FUSE_BANDS=0`): small planes at a small batch split channel groups
    /// over the workers (same results either way). On by default since session 14 (Zen 5): mobilenet_v2 b1 on near cores
    /// 2.59 → 2.52 ms (24 interleaved rounds; 2.66 → 2.57 over 14 more), b8 unchanged (18.2–18.5 either way).
    nonisolated(unsafe) static var preferBands = ProcessInfo.processInfo.environment["ZOO_FUSE_BANDS"] != "0"

    /// Expanded-tensor floats one task may hold (512 KB). Measured on a Zen 3 (512 KB L2), mobilenet_v2 b8 in interleaved
    /// runs: 1 << 16 57.3 ms, 1 << 17 53.4 / 48.7, 1 << 18 47.8, 1 << 19 47.6, unbounded 48.5 (1 << 18 was the default).
    /// On the Zen 4 (1 MB L2, 2026-12-06), interleaved, 6 rounds: b1 1 << 16 5.19, 1 << 17 4.92 / 5.03, 1 << 18
    /// 5.10 / 5.24, 1 << 19 5.14 ms; b8 (4 rounds) 1 << 17 38.3, 1 << 18 39.4 ms. `ZOO_BAND_FLOATS` overrides it (A/B).
    static let expandBandFloats: Int = {
        if let s = ProcessInfo.processInfo.environment["ZOO_BAND_FLOATS"], let v = Int(s), v > 0 { return v }
        return 1 << 17
    }()

    /// How `expandDepthwise` splits the work: output rows per band (the band's expanded rows of all channels fit
    /// `expandBandFloats`) and channel groups (multiples of 8) only when there are fewer than 2 tasks per worker (a
    /// project stage needs all channels in its task).
    static func expandDepthwisePlan(_ ge: Conv2dGeometry, _ gd: Conv2dGeometry, threads: Int) -> (bandOut: Int, groups: Int) {
        let c = gd.inC, w = gd.inW
        var bandOut = gd.outH
        while bandOut > 1 && c * Swift.min(gd.inH, (bandOut - 1) * gd.strideH + (gd.kH - 1) * gd.dilH + 1) * w > expandBandFloats {
            bandOut -= 1
        }
        var bands = (gd.outH + bandOut - 1) / bandOut
        if preferBands && threads > 1 && gd.batch * bands < threads {
            // Small planes at a small batch: one band of rows per worker (their halo rows computed twice) instead of
            // channel groups, so that the project stage stays in the same tasks.
            bands = Swift.min(gd.outH, (threads + gd.batch - 1) / gd.batch)
        }
        bandOut = (gd.outH + bands - 1) / bands
        let panels = (c + 7) / 8
        if preferBands { return (bandOut, 1) }
        let groups = threads <= 1 ? 1 : Swift.max(1, Swift.min(panels, (2 * threads + gd.batch * bands - 1) / (gd.batch * bands)))
        return (bandOut, groups)
    }

    /// The project 1×1 convolution after a fused expand + depthwise pair, run in the same tasks (`expandDepthwise`'s
    /// `project`): when the plan has no channel groups (each task holds all channels of its band) and the tiles take it.
    static func expandDepthwiseProjectApplies(_ ge: Conv2dGeometry, _ gd: Conv2dGeometry, _ gp: Conv2dGeometry, actP: Activation,
                                              threads: Int) -> Bool {
        fuseProject && pointwiseInPlaceApplies(gp, act: actP) && gp.inC == gd.outC && gp.inH == gd.outH && gp.inW == gd.outW && gp.batch == gd.batch
            && expandDepthwisePlan(ge, gd, threads: threads).groups == 1
    }

    /// Whether `expandDepthwise` without an expand stage (`we` nil) takes a depthwise convolution and the project 1×1 after
    /// it (mobilenet_v2's first block, expand ratio 1): the depthwise kernel reads the block input's rows in place.
    static func depthwiseProjectApplies(_ gd: Conv2dGeometry, actD: Activation, _ gp: Conv2dGeometry, actP: Activation, threads: Int) -> Bool {
        guard fuseDepthwiseProject, isDepthwise(gd), depthwiseStagedApplies(gd), gd.groups == gd.inC, gd.outC == gd.inC,
              zoo_kernels_simd() != 0 else { return false }
        switch actD {
        case .none, .relu, .clip: break
        case .sigmoid, .tanh: return false
        }
        return expandDepthwiseProjectApplies(gd, gd, gp, actP: actP, threads: threads)
    }
    /// `ZOO_FUSE_DWP=0` runs a depthwise convolution without an expand before it and its project 1×1 as two layers (A/B).
    nonisolated(unsafe) static var fuseDepthwiseProject = ProcessInfo.processInfo.environment["ZOO_FUSE_DWP"] != "0"

    /// The project stage of `expandDepthwise`: weights, bias, activation and an optional residual (shape of its output,
    /// added after the activation).
    struct ProjectStage {
        var g: Conv2dGeometry
        var w: PointwisePacked
        var b: UnsafePointer<Float>?
        var act: Activation
        var res: UnsafePointer<Float>?
    }

    /// An inverted-residual block's expand 1×1 convolution (+ bias + activation) and the depthwise convolution after it
    /// (+ bias + activation), without writing the expanded tensor: each task (image, band of depthwise output rows,
    /// group of channels) computes the band's expanded rows of its channels into a buffer that stays in cache
    /// (`zoo_pw_compute`, the same tiles as `pointwiseInPlace`), then each channel's depthwise rows from it (the staging
    /// and rows of `depthwiseStaged`). Rows shared by two bands are computed twice. Numerics are those of the two
    /// layers run apart (same kernels, same summation order).
    static func expandDepthwise(_ ge: Conv2dGeometry, x: UnsafePointer<Float>, we: PointwisePacked?, be: UnsafePointer<Float>?,
                                actE: Activation, _ gd: Conv2dGeometry, wd: UnsafePointer<Float>, bd: UnsafePointer<Float>?,
                                actD: Activation, project: ProjectStage? = nil, y: UnsafeMutablePointer<Float>, threads: Int) {
        _ = narrowTails
        let (clampE, loE, hiE) = clampOf(actE), (clampD, loD, hiD) = clampOf(actD)
        let (clampP, loP, hiP) = clampOf(project?.act ?? .none)
        let (bandOut, groups) = expandDepthwisePlan(ge, gd, threads: threads)
        precondition(project == nil || groups == 1, "expandDepthwise: a project stage needs all channels in each task")
        let wps = project.map { SendConstPtr($0.w.p) }, bps = project?.b.map(SendConstPtr.init)
        let rps = project?.res.map(SendConstPtr.init)
        let outP = project?.g.outC ?? 0
        let dFloats = project == nil ? 0 : gd.outC * bandOut * gd.outW
        let bands = (gd.outH + bandOut - 1) / bandOut
        let c = gd.inC, w = gd.inW, panels = (c + 7) / 8
        let taps = gd.kH * gd.kW
        let maxRows = Swift.min(gd.inH, (bandOut - 1) * gd.strideH + (gd.kH - 1) * gd.dilH + 1)
        let maxGroupC = ((panels + groups - 1) / groups) * 8
        let xs = SendConstPtr(x), ys = SendPtr(y), wes = we.map { SendConstPtr($0.p) }, wds = SendConstPtr(wd)
        let bes = be.map(SendConstPtr.init), bds = bd.map(SendConstPtr.init)
        // The staging layout depends only on the band's output rows and padding; sized for the largest band.
        var gFull = gd
        gFull.outH = bandOut
        let stMax = DepthwiseStage(StageWindow(gFull))
        let lanes = channelLanesApply(gd)
        var geomFull = dwcGeom(gFull)
        let stageFloats = lanes ? Int(zoo_dwc_scratch_floats(&geomFull)) : stMax.workerFloats
        parallelTasks(gd.batch * bands * groups, threads: threads) { t in
            let img = t / (bands * groups), band = (t / groups) % bands, grp = t % groups
            let oy0 = band * bandOut, oy1 = Swift.min(gd.outH, oy0 + bandOut)
            let p0 = panels * grp / groups, p1 = panels * (grp + 1) / groups
            if oy0 >= oy1 || p0 >= p1 { return }
            let c0 = p0 * 8, c1 = Swift.min(c, p1 * 8)
            let er0 = Swift.max(0, oy0 * gd.strideH - gd.padTop)
            let er1 = Swift.min(gd.inH, (oy1 - 1) * gd.strideH - gd.padTop + (gd.kH - 1) * gd.dilH + 1)
            if er0 >= er1 { return }  // cannot happen for a valid geometry (every output row reads an input row)
            let rowsE = er1 - er0, planeE = rowsE * w
            ScratchPool.shared.with(maxGroupC * maxRows * w + stageFloats + dFloats) { e in
            // The depthwise input's rows er0..<er1 of channel ch at src + ch · srcStride: the expanded rows of channels
            // c0..<c1 computed into E[c - c0][row][col], or (no expand) the block input's own rows.
            let src: UnsafePointer<Float>, srcStride: Int
            if let wes {
                _ = zoo_pw_compute(Int32(c), Int32(ge.inC), wes.p, xs.p + img * ge.inC * ge.inPlane + er0 * w, ge.inPlane,
                                   0, Int32(planeE), Int32(p0), Int32(p1), bes?.p, clampE, loE, hiE, nil, 0,
                                   e - c0 * planeE, planeE)
                src = UnsafePointer(e - c0 * planeE); srcStride = planeE
            } else {
                src = xs.p + img * c * gd.inPlane + er0 * w; srcStride = gd.inPlane
            }
            // The band as a convolution of its own: input rows er0..<er1, output rows oy0..<oy1.
            var gb = gd
            gb.batch = 1; gb.inH = rowsE; gb.outH = oy1 - oy0
            gb.padTop = gd.padTop + er0 - oy0 * gd.strideH
            let buf = e + maxGroupC * maxRows * w
            // Depthwise rows go to the output, or (with a project stage) to D[ch][row][col] of this band.
            let d = buf + stageFloats
            let bandPlane = gb.outH * gd.outW
            let ocs = wps == nil ? gd.outPlane : bandPlane  // between output channels
            let out0 = wps == nil ? ys.p + img * c * gd.outPlane + oy0 * gd.outW : d  // channel 0's rows
            if lanes {
                // 8 channels at a time with the channels in the SIMD lanes (c0 is a multiple of 8).
                var gg = dwcGeom(gb)
                for ch in stride(from: c0, to: c1, by: 8) {
                    _ = zoo_dwc(Int32(Swift.min(8, c1 - ch)), src + ch * srcStride, srcStride, wds.p + ch * taps, bds.map { $0.p + ch },
                                &gg, clampD, loD, hiD, out0 + ch * ocs, ocs, buf)
                }
            } else {
                let sw = StageWindow(gb)
                let st = DepthwiseStage(sw)
                prepareStage(st, buf: buf, fill: 0)
                let offsets = sw.tapOffsets(st)
                offsets.withUnsafeBufferPointer { offs in
                    for ch in c0..<c1 {
                        stagePlane(sw, st, x: src + ch * srcStride, buf: buf)
                        _ = zoo_dw_plane(buf, offs.baseAddress!, Int32(taps), wds.p + ch * taps, bds?.p[ch] ?? 0, clampD, loD, hiD,
                                         gb.outH, gb.outW, gd.strideH * st.rowFloats, out0 + ch * ocs)
                    }
                }
            }
            if let wps {
                let off = img * outP * gd.outPlane + oy0 * gd.outW
                _ = zoo_pw_compute(Int32(outP), Int32(c), wps.p, d, bandPlane, 0, Int32(bandPlane), 0, Int32((outP + 7) / 8),
                                   bps?.p, clampP, loP, hiP, rps.map { $0.p + off }, gd.outPlane, ys.p + off, gd.outPlane)
            }
            }
        }
    }
}
