import CZooKernels
import Foundation

/// Direct stride-1 convolutions for few channels (LeNet's layers) in training: forward, weight gradient and input
/// gradient by the C kernels `zoo_tc_corr` / `zoo_tc_dw` (AVX-512F, portable C fallback) instead of im2col + GEMM,
/// whose tiny M (6 or 16 output channels) and K (25 or 150) leave OpenBLAS at a few GFLOP/s.
///
/// Each image's channel planes are staged zero-padded with row stride `wp` (padded width), so output position
/// j = oy·wp + ox reads the staged input at j + ky·wp + kx: a 1-D correlation per plane whose 16-wide vectors cross
/// rows (columns ox ≥ ow are computed and dropped). The input gradient is the same correlation of the output
/// gradient (staged with the same row stride, zeros in the dropped columns and before the first row) at offsets
/// −(ky·wp + kx), evaluated over the padded input grid (each block of positions skipping the taps that read only zero
/// rows, about 30% of LeNet conv 2's); the weight gradient sums dy[j] · x[j + ky·wp + kx] over j.
/// The batch is split into parts taken by the workers (`SmallConv.tasks`); weight-gradient parts are summed at the end.
/// The plain references are `Reference.conv2d` and `referenceConv2dBackward` (TrainingKernelTests).
enum SmallConv {
    /// ZOO_TRAIN_DIRECT=0 (A/B only): these convolutions take the im2col + GEMM path.
    nonisolated(unsafe) static var enabled = ProcessInfo.processInfo.environment["ZOO_TRAIN_DIRECT"] != "0"
    /// ZOO_TRAIN_CVEC=0 (A/B only): layers with ≥ 12 output channels also use the flat (dropped-column) kernels.
    nonisolated(unsafe) static var channelVectors = ProcessInfo.processInfo.environment["ZOO_TRAIN_CVEC"] != "0"
    /// Tests: run the portable C bodies instead of the AVX-512F / AVX2 ones.
    nonisolated(unsafe) static var portable = false

    /// Only where the kernels have a SIMD body (AVX-512F or AVX2+FMA): the portable C loops are about 3× slower than
    /// im2col + GEMM (lenet b256 step on Zen 3: 63 vs 19 ms); tests that set `portable` run them anyway.
    static var simdBodies: Bool { zoo_kernels_simd() != 0 }

    static func applies(_ g: ConvGeometry) -> Bool {
        enabled && (simdBodies || portable) && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.groups == 1 && g.c <= 16 && g.o <= 32
            && g.kh * g.kw <= 64 && g.oh > 0 && g.ow > 0 && g.n > 0 && g.pt >= 0 && g.pl >= 0
    }

    /// ZOO_TRAIN_TASKS: batch parts per worker thread (default 2), taken dynamically by the pool's workers, so a worker
    /// the OS delays holds back less of the step than with one static half per worker (1 = that static split).
    nonisolated(unsafe) static var tasksPerThread: Int = {
        if let s = ProcessInfo.processInfo.environment["ZOO_TRAIN_TASKS"], let n = Int(s), n > 0 { return n }
        return 2
    }()

    /// Batch parts (each with its own scratch and weight-gradient part).
    static func tasks(images: Int, threads: Int) -> Int { max(1, min(images, threads <= 1 ? 1 : threads * tasksPerThread)) }

    /// Images per weight-gradient call (their staged planes stay in L2; one horizontal sum per block and call).
    static let dwImages = 8
}

struct SmallConvPlan {
    let g: ConvGeometry
    let hp, wp: Int
    /// Floats per staged input plane, per staged dy plane; zero floats before a dy plane's first row.
    let xPlane, dyPlane, front: Int
    /// 16-float vectors over the output grid (oh·wp) and over the padded input grid (hp·wp).
    let nvecF, nvecX: Int
    let offF: [Int], offX: [Int]

    init(_ g: ConvGeometry) {
        self.g = g
        hp = g.oh + g.kh - 1; wp = g.ow + g.kw - 1
        func round16(_ v: Int) -> Int { (v + 15) / 16 * 16 }
        xPlane = round16(hp * wp + 16 + g.kw)
        nvecF = (g.oh * wp + 15) / 16
        nvecX = (hp * wp + 15) / 16
        front = round16((g.kh - 1) * wp + g.kw - 1)
        dyPlane = round16(front + nvecX * 16 + 16)
        var f: [Int] = [], x: [Int] = []
        for ky in 0..<g.kh { for kx in 0..<g.kw { f.append(ky * wp + kx); x.append(-(ky * wp + kx)) } }
        offF = f; offX = x
    }

    var taps: Int { g.kh * g.kw }
    /// Where a staged input plane may be nonzero (first to last interior element), and the end of a staged dy plane's
    /// data (from `front`): the correlations skip the taps whose reads fall outside.
    var xData: Range<Int> { (g.pt * wp + g.pl)..<((g.pt + g.h - 1) * wp + g.pl + g.w) }
    var dyData: Int { (g.oh - 1) * wp + g.ow }
    /// Channel-vectorized forward and weight gradient (16 output channels per vector) for ≥ 12 output channels.
    var channelVectors: Bool { SmallConv.channelVectors && g.o >= 12 }
    /// 16-channel output blocks.
    var outBlocks: Int { (g.o + 15) / 16 }
    /// Taps over all input channels (ci·taps + t), padded with zero offsets to a multiple of 25 for `zoo_tc_cvec_dw`.
    var kPadded: Int { (g.c * taps + 24) / 25 * 25 }
    /// koff[k] = ci·xPlane + ky·wp + kx for k = ci·taps + t < C·taps, 0 after.
    func channelOffsets() -> [Int] {
        var k = [Int](repeating: 0, count: kPadded)
        for ci in 0..<g.c { for t in 0..<taps { k[ci * taps + t] = ci * xPlane + offF[t] } }
        return k
    }
    /// wv[(ob·C·taps + k)·16 + l] = w[16·ob + l][k] (0 past the last channel).
    func channelWeights(_ weight: [Float]) -> [Float] {
        let kk = g.c * taps
        var v = [Float](repeating: 0, count: outBlocks * kk * 16)
        for o in 0..<g.o { for k in 0..<kk { v[((o / 16) * kk + k) * 16 + o % 16] = weight[o * kk + k] } }
        return v
    }

    /// Zero-padded planes of image `img` (channels × xPlane floats). Writes the interior only: `buf` is zero-filled
    /// once (padding, dropped columns and tails are never written).
    func stageX(_ x: UnsafePointer<Float>, image img: Int, into buf: UnsafeMutablePointer<Float>, portable: Int32) {
        zoo_copy_rows(x + img * g.c * g.h * g.w, g.w, g.h * g.w, buf + g.pt * wp + g.pl, wp, xPlane, g.c, g.h, g.w, nil, portable)
    }

    /// dy planes of image `img` (outChannels × dyPlane floats; data at offset `front`, row stride wp); interior only,
    /// as `stageX`.
    func stageDy(_ dy: UnsafePointer<Float>, image img: Int, into buf: UnsafeMutablePointer<Float>, portable: Int32) {
        zoo_copy_rows(dy + img * g.o * g.plane, g.ow, g.plane, buf + front, wp, dyPlane, g.o, g.oh, g.ow, nil, portable)
    }
}

/// Forward of a `SmallConv.applies` convolution.
func smallConvForward(x: [Float], weight: [Float], bias: [Float]?, geometry g: ConvGeometry, threads: Int) -> [Float] {
    var none: [Float] = []
    return smallConvForward(x: x, weight: weight, bias: bias, geometry: g, threads: threads, sigmoid: &none, withSigmoid: false)
}

/// Forward of a `SmallConv.applies` convolution; with `withSigmoid`, `sigmoid` receives `zoo_sigmoid` of the output
/// too, computed per image while it is in cache (the training engine's conv → sigmoid pairs; same values as
/// `SharedForward.sigmoid` of the returned output).
func smallConvForward(x: [Float], weight: [Float], bias: [Float]?, geometry g: ConvGeometry, threads: Int, sigmoid: inout [Float],
                      withSigmoid: Bool = true) -> [Float] {
    let plan = SmallConvPlan(g)
    let taps = plan.taps, cvec = plan.channelVectors, kk = g.c * taps
    // flat: wt[(ci·taps + t)·O + o] = w[o][ci][t]; channel vectors: plan.channelWeights
    var wt: [Float]
    if cvec { wt = plan.channelWeights(weight) } else {
        wt = [Float](repeating: 0, count: weight.count)
        for o in 0..<g.o { for ci in 0..<g.c { for t in 0..<taps { wt[(ci * taps + t) * g.o + o] = weight[(o * g.c + ci) * taps + t] } } }
    }
    let koff = cvec ? plan.channelOffsets() : plan.offF
    let workers = SmallConv.tasks(images: g.n, threads: threads)
    let outFloats = cvec ? g.plane * 16 : g.o * plan.nvecF * 16, perWorker = g.c * plan.xPlane + outFloats
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: workers * perWorker)
    scratch.initialize(repeating: 0, count: workers * perWorker)
    defer { scratch.deallocate() }
    let sp = SendPtr(scratch), portable: Int32 = SmallConv.portable ? 1 : 0
    let count = g.n * g.o * g.plane
    sigmoid = withSigmoid ? [Float](unsafeUninitializedCapacity: count) { _, n in n = count } : []
    return [Float](unsafeUninitializedCapacity: count) { yb, done in
        x.withUnsafeBufferPointer { xb in wt.withUnsafeBufferPointer { wb in koff.withUnsafeBufferPointer { ob in
        SharedForward.withOptional(bias) { biasp in sigmoid.withUnsafeMutableBufferPointer { sgb in
            let sg = withSigmoid ? sgb.baseAddress.map(SendPtr.init) : nil
            let xp = SendConstPtr(xb.baseAddress!), wp = SendConstPtr(wb.baseAddress!), yp = SendPtr(yb.baseAddress!)
            let bp = biasp.map(SendConstPtr.init)
            let offs = UnsafeSendableBox(ob.baseAddress!)
            Fast.parallelTasks(workers, threads: threads) { t in
                do {
                    let xs = sp.p + t * perWorker, out = xs + g.c * plan.xPlane
                    for img in (t * g.n / workers)..<((t + 1) * g.n / workers) {
                        plan.stageX(xp.p, image: img, into: xs, portable: portable)
                        if cvec {
                            for blk in 0..<plan.outBlocks {
                                zoo_tc_cvec_fwd(xs, offs.value, Int32(kk), wp.p + blk * kk * 16, g.oh, g.ow, plan.wp, out, portable)
                                zoo_from_lanes(out, Int32(min(16, g.o - 16 * blk)), g.plane, bp.map { $0.p + 16 * blk },
                                               yp.p + (img * g.o + 16 * blk) * g.plane, g.plane, portable)
                            }
                        } else {
                            zoo_tc_corr(xs, plan.xPlane, Int32(g.c), offs.value, Int32(taps), wp.p, Int32(g.o), plan.nvecF, out,
                                        plan.nvecF * 16, plan.xData.lowerBound, plan.xData.upperBound, portable)
                            zoo_copy_rows(out, plan.wp, plan.nvecF * 16, yp.p + img * g.o * g.plane, g.ow, g.plane, g.o, g.oh, g.ow,
                                          bp?.p, portable)
                        }
                        if let sg { zoo_sigmoid(yp.p + img * g.o * g.plane, sg.p + img * g.o * g.plane, g.o * g.plane, 0) }
                    }
                }
            }
        } } } } }
        done = count
    }
}

/// Weight and input gradients of a `SmallConv.applies` convolution (bias gradient: the caller's channel sums).
func smallConvBackward(x: [Float], weight: [Float], dy: [Float], geometry g: ConvGeometry, needInput: Bool, needParams: Bool,
                       threads: Int) -> (dx: [Float]?, dw: [Float]?) {
    if !needInput && !needParams { return (nil, nil) }
    let plan = SmallConvPlan(g)
    let taps = plan.taps, wCount = weight.count, kk = g.c * taps
    let cvec = needParams && plan.channelVectors
    // Input gradient as a correlation of dy: wtX[(o·taps + t)·C + ci] = w[o][ci][t] at offsets −(ky·wp + kx).
    var wtX = [Float](repeating: 0, count: needInput ? wCount : 0)
    if needInput { for o in 0..<g.o { for ci in 0..<g.c { for t in 0..<taps { wtX[(o * taps + t) * g.c + ci] = weight[(o * g.c + ci) * taps + t] } } } }
    let koff = cvec ? plan.channelOffsets() : plan.offF
    let workers = SmallConv.tasks(images: g.n, threads: threads)
    let nb = SmallConv.dwImages
    let stageDys = needInput || (needParams && !cvec)
    let xsFloats = needParams ? nb * g.c * plan.xPlane : 0, dysFloats = stageDys ? nb * g.o * plan.dyPlane : 0
    let outFloats = needInput ? g.c * plan.nvecX * 16 : 0, dyTFloats = cvec ? nb * g.plane * 16 : 0
    let perWorker = xsFloats + dysFloats + outFloats + dyTFloats
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: workers * perWorker)
    scratch.initialize(repeating: 0, count: workers * perWorker)
    defer { scratch.deallocate() }
    // weight-gradient parts per worker: [o][ci][t] (flat) or [block][k][16] (channel vectors)
    let partFloats = needParams ? (cvec ? plan.outBlocks * plan.kPadded * 16 : wCount) : 0
    var partial = [Float](repeating: 0, count: workers * partFloats)
    var dxs = [Float](unsafeUninitializedCapacity: needInput ? x.count : 0) { _, n in n = needInput ? x.count : 0 }
    let sp = SendPtr(scratch), portable: Int32 = SmallConv.portable ? 1 : 0
    x.withUnsafeBufferPointer { xb in dy.withUnsafeBufferPointer { db in wtX.withUnsafeBufferPointer { wb in
    partial.withUnsafeMutableBufferPointer { pb in dxs.withUnsafeMutableBufferPointer { dxb in
    koff.withUnsafeBufferPointer { ofb in plan.offX.withUnsafeBufferPointer { oxb in
        let xp = SendConstPtr(xb.baseAddress!), dyp = SendConstPtr(db.baseAddress!)
        let wxp = needInput ? wb.baseAddress.map(SendConstPtr.init) : nil
        let pp = needParams ? pb.baseAddress.map(SendPtr.init) : nil, dxp = needInput ? dxb.baseAddress.map(SendPtr.init) : nil
        let offF = UnsafeSendableBox(ofb.baseAddress!), offX = UnsafeSendableBox(oxb.baseAddress!)
        Fast.parallelTasks(workers, threads: threads) { t in
            do {
                let xs = sp.p + t * perWorker, dys = xs + xsFloats, out = dys + dysFloats, dyT = out + outFloats
                let lo = t * g.n / workers, hi = (t + 1) * g.n / workers
                var n0 = lo
                while n0 < hi {
                    let cnt = min(nb, hi - n0)
                    for i in 0..<cnt {
                        if stageDys { plan.stageDy(dyp.p, image: n0 + i, into: dys + i * g.o * plan.dyPlane, portable: portable) }
                        if pp != nil { plan.stageX(xp.p, image: n0 + i, into: xs + i * g.c * plan.xPlane, portable: portable) }
                    }
                    if let pp, cvec {
                        for blk in 0..<plan.outBlocks {
                            // dyT[i][pixel][l] = dy[n0 + i][16·blk + l][pixel] (0 past the last channel)
                            for i in 0..<cnt {
                                zoo_to_lanes(dyp.p + ((n0 + i) * g.o + 16 * blk) * g.plane, g.plane, Int32(min(16, g.o - 16 * blk)), g.plane,
                                             dyT + i * g.plane * 16, portable)
                            }
                            zoo_tc_cvec_dw(xs, g.c * plan.xPlane, offF.value, Int32(plan.kPadded), dyT, g.plane * 16, Int32(cnt),
                                           g.oh, g.ow, plan.wp, pp.p + t * partFloats + blk * plan.kPadded * 16, portable)
                        }
                    } else if let pp {
                        zoo_tc_dw(xs, g.c * plan.xPlane, plan.xPlane, Int32(g.c), dys + plan.front, g.o * plan.dyPlane, plan.dyPlane,
                                  Int32(g.o), Int32(cnt), offF.value, Int32(taps), plan.nvecF, pp.p + t * partFloats, portable)
                    }
                    if let dxp, let wxp {
                        for i in 0..<cnt {
                            zoo_tc_corr(dys + i * g.o * plan.dyPlane + plan.front, plan.dyPlane, Int32(g.o), offX.value, Int32(taps),
                                        wxp.p, Int32(g.c), plan.nvecX, out, plan.nvecX * 16, 0, plan.dyData, portable)
                            zoo_copy_rows(out + g.pt * plan.wp + g.pl, plan.wp, plan.nvecX * 16, dxp.p + (n0 + i) * g.c * g.h * g.w, g.w,
                                          g.h * g.w, g.c, g.h, g.w, nil, portable)
                        }
                    }
                    n0 += cnt
                }
            }
        }
    } } } } } } }
    var dw: [Float]? = nil
    if needParams {
        var s = [Float](repeating: 0, count: wCount)
        if cvec {
            for t in 0..<workers { for o in 0..<g.o { for k in 0..<kk {
                s[o * kk + k] += partial[t * partFloats + ((o / 16) * plan.kPadded + k) * 16 + o % 16]
            } } }
        } else {
            for t in 0..<workers { for i in 0..<wCount { s[i] += partial[t * partFloats + i] } }
        }
        dw = s
    }
    return (needInput ? dxs : nil, dw)
}

/// Bias gradient of a small convolution: per channel, the sum over images of each plane's `zoo_sum`; channels split
/// over the workers.
func smallConvBiasGradient(_ dy: [Float], _ g: ConvGeometry, threads: Int) -> [Float] {
    let portable: Int32 = SmallConv.portable ? 1 : 0
    var out = [Float](repeating: 0, count: g.o)
    dy.withUnsafeBufferPointer { db in out.withUnsafeMutableBufferPointer { ob in
        let d = SendConstPtr(db.baseAddress!), o = SendPtr(ob.baseAddress!)
        Fast.parallelFor(g.o, threads: threads, grain: max(1, 16384 / max(1, g.n * g.plane))) { r in
            for ch in r {
                var acc: Float = 0
                for s in 0..<g.n { acc += zoo_sum(d.p + (s * g.o + ch) * g.plane, g.plane, portable) }
                o.p[ch] = acc
            }
        }
    } }
    return out
}

extension SharedForward {
    /// 2×2 stride-2 unpadded average pooling by `zoo_avgpool2`, planes split over the workers.
    static func avgPool2x2C(_ g: Pool2dGeometry, _ x: [Float], portable: Bool = false) -> [Float] {
        x.withUnsafeBufferPointer { xb in
            output(g.planes * g.outH * g.outW) { Fast.avgPool2x2(g, x: xb.baseAddress!, y: $0, threads: threads, portable: portable) }
        }
    }

    /// ZOO_TRAIN_SIGMOID=0 (A/B only): the training sigmoid by zoo_sigmoid's scalar `expf` body, and no conv + sigmoid fusion.
    nonisolated(unsafe) static var fastSigmoid = ProcessInfo.processInfo.environment["ZOO_TRAIN_SIGMOID"] != "0"

    /// Sigmoid by `zoo_sigmoid` (vector exp; `portable`: its scalar body), split over the workers (`Fast.sigmoid`).
    static func sigmoid(_ x: [Float], portable: Bool = false) -> [Float] {
        unary(x) { Fast.sigmoid(count: x.count, x: $0, y: $1, threads: threads, portable: portable) }
    }
}

/// ZOO_TRAIN_FUSE=0 (A/B only): a sigmoid followed by a 2×2 average pool runs two backward passes, and a small direct
/// convolution followed by a sigmoid two forward passes.
nonisolated(unsafe) var trainFuseSigmoidPoolBackward = ProcessInfo.processInfo.environment["ZOO_TRAIN_FUSE"] != "0"

/// ZOO_TRAIN_POOL2=0 (A/B only): 2×2 average-pool backward through the general window loop, forward by Swift SIMD
/// (`SharedForward.avgPool2x2`) instead of `zoo_avgpool2`.
nonisolated(unsafe) var trainFastAvgPool2Backward = ProcessInfo.processInfo.environment["ZOO_TRAIN_POOL2"] != "0"

/// 2×2 stride-2 unpadded average-pool backward (LeNet's) by `zoo_avgpool2_backward`, planes split over the workers;
/// nil when the pooling is another kind.
/// `sigmoidOutput`: the pooled tensor is a sigmoid's output y; the result is then the gradient at the sigmoid's input,
/// (dy/4)·(y·(1 − y)), both backward passes in one (`zoo_avgpool2_sigmoid_backward`).
func avgPool2x2Backward(dy: [Float], _ g: PoolGeometry, threads: Int, portable: Bool = false, sigmoidOutput: [Float]? = nil) -> [Float]? {
    guard trainFastAvgPool2Backward, g.kh == 2, g.kw == 2, g.sh == 2, g.sw == 2, g.pt == 0, g.pl == 0, g.pb == 0, g.pr == 0,
          g.dh == 1, g.dw == 1, g.oh > 0, g.ow > 0, 2 * g.oh <= g.h, 2 * g.ow <= g.w, dy.count == g.n * g.c * g.oh * g.ow,
          sigmoidOutput.map({ $0.count == g.n * g.c * g.h * g.w }) ?? true else { return nil }
    let planes = g.n * g.c, count = planes * g.h * g.w, p: Int32 = portable ? 1 : 0
    return [Float](unsafeUninitializedCapacity: count) { xb, done in
        dy.withUnsafeBufferPointer { db in SharedForward.withOptional(sigmoidOutput) { yb in
            let ds = SendConstPtr(db.baseAddress!), xs = SendPtr(xb.baseAddress!), ys = yb.map(SendConstPtr.init)
            Fast.parallelFor(planes, threads: threads, grain: max(1, 8192 / (g.h * g.w))) { r in
                zoo_avgpool2_sigmoid_backward(ds.p + r.lowerBound * g.oh * g.ow, ys.map { $0.p + r.lowerBound * g.h * g.w },
                                              xs.p + r.lowerBound * g.h * g.w, r.count, g.oh, g.ow, g.h, g.w, p)
            }
        } }
        done = count
    }
}
