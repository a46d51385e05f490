import CZooKernels
import Foundation

// MARK: BatchNorm

/// Training-mode BatchNorm2d forward with batch statistics. Returns y, the normalized xhat, 1/std per channel,
/// batch mean and biased variance (sums in double). Running statistics are updated by the caller (PyTorch
/// momentum, unbiased var). Channels are split over `threads`.
public func trainBatchNormForward(x: [Float], n: Int, c: Int, plane: Int, gamma: [Float], beta: [Float], eps: Float,
                                  threads: Int = TrainingThreads.count, keepXhat: Bool = true)
    -> (y: [Float], xhat: [Float], invStd: [Float], mean: [Float], variance: [Float]) {
    let count = x.count
    var y = [Float](unsafeUninitializedCapacity: count) { _, k in k = count }
    var xhat = keepXhat ? [Float](unsafeUninitializedCapacity: count) { _, k in k = count } : []
    var invStd = [Float](repeating: 0, count: c), mean = invStd, variance = invStd
    let m = Double(n * plane)
    x.withUnsafeBufferPointer { xb in y.withUnsafeMutableBufferPointer { yb in xhat.withUnsafeMutableBufferPointer { hb in
    invStd.withUnsafeMutableBufferPointer { ib in mean.withUnsafeMutableBufferPointer { mb in variance.withUnsafeMutableBufferPointer { vb in
    gamma.withUnsafeBufferPointer { gb in beta.withUnsafeBufferPointer { bb in
        guard count > 0 else { return }
        let xs = SendConstPtr(xb.baseAddress!), ys = SendPtr(yb.baseAddress!), hs = keepXhat ? hb.baseAddress.map(SendPtr.init) : nil
        let isd = SendPtr(ib.baseAddress!), ms = SendPtr(mb.baseAddress!), vs = SendPtr(vb.baseAddress!)
        let gs = SendConstPtr(gb.baseAddress!), bs = SendConstPtr(bb.baseAddress!)
        let onePass = TrainFast.enabled("bn")
        Fast.parallelFor(c, threads: threads, grain: max(1, 16384 / max(1, n * plane))) { r in
            for ch in r {
                let mu: Double, v: Double
                if onePass {
                    // Sum and sum of squares in one read (double: E[x²] − μ² loses nothing that matters for float data).
                    var s = 0.0, q = 0.0
                    for b in 0..<n {
                        let (bs, bq) = BVec.sumAndSquaresDouble(xs.p + (b * c + ch) * plane, count: plane)
                        s += bs; q += bq
                    }
                    mu = s / m
                    v = Swift.max(0, q / m - mu * mu)
                } else {
                    var s = 0.0
                    for b in 0..<n { s += BVec.sumDouble(xs.p + (b * c + ch) * plane, count: plane) }
                    mu = s / m
                    var d = 0.0
                    for b in 0..<n { d += BVec.squaredDeviationDouble(xs.p + (b * c + ch) * plane, count: plane, mean: mu) }
                    v = d / m
                }
                let istd = Float(1 / (v + Double(eps)).squareRoot())
                ms.p[ch] = Float(mu); vs.p[ch] = Float(v); isd.p[ch] = istd
                let muF = Float(mu), gm = gs.p[ch], bt = bs.p[ch]
                let vmu = SIMD16<Float>(repeating: muF), vis = SIMD16<Float>(repeating: istd)
                let vg = SIMD16<Float>(repeating: gm), vb = SIMD16<Float>(repeating: bt)
                for b in 0..<n {
                    let base = (b * c + ch) * plane
                    let xp = xs.p + base, yp = ys.p + base
                    var p = 0
                    if let hs {
                        let hp = hs.p + base
                        while p + 16 <= plane {
                            let h = (BVec.load(xp + p) - vmu) * vis
                            BVec.store(h, hp + p)
                            BVec.store(h * vg + vb, yp + p)
                            p += 16
                        }
                        while p < plane {
                            let h = (xp[p] - muF) * istd
                            hp[p] = h
                            yp[p] = h * gm + bt
                            p += 1
                        }
                    } else {
                        while p + 16 <= plane { BVec.store((BVec.load(xp + p) - vmu) * vis * vg + vb, yp + p); p += 16 }
                        while p < plane { yp[p] = (xp[p] - muF) * istd * gm + bt; p += 1 }
                    }
                }
            }
        }
    } } } } } } } }
    return (y, xhat, invStd, mean, variance)
}

/// BatchNorm backward. With `batchStats` the statistics depend on x (training mode); otherwise they are constants.
/// Channels are split over `threads`.
public func trainBatchNormBackward(dy: [Float], xhat: [Float], invStd: [Float], gamma: [Float], n: Int, c: Int, plane: Int,
                                   batchStats: Bool, needInput: Bool, threads: Int = TrainingThreads.count)
    -> (dx: [Float]?, dgamma: [Float], dbeta: [Float]) {
    var dg = [Float](repeating: 0, count: c), dbt = dg
    let count = dy.count
    var dxs = needInput ? [Float](unsafeUninitializedCapacity: count) { _, k in k = count } : []
    let m = Float(n * plane)
    dy.withUnsafeBufferPointer { db in xhat.withUnsafeBufferPointer { hb in invStd.withUnsafeBufferPointer { ib in
    gamma.withUnsafeBufferPointer { gb in dg.withUnsafeMutableBufferPointer { dgb in dbt.withUnsafeMutableBufferPointer { dbb in
    dxs.withUnsafeMutableBufferPointer { xb in
        guard count > 0 else { return }
        let ds = SendConstPtr(db.baseAddress!), hs = SendConstPtr(hb.baseAddress!), isd = SendConstPtr(ib.baseAddress!)
        let gs = SendConstPtr(gb.baseAddress!), dgs = SendPtr(dgb.baseAddress!), dbs = SendPtr(dbb.baseAddress!)
        let dxp = needInput ? xb.baseAddress.map(SendPtr.init) : nil  // (an empty array may still have a base address)
        Fast.parallelFor(c, threads: threads, grain: max(1, 16384 / max(1, n * plane))) { r in
            for ch in r {
                var sdy: Float = 0, sdyx: Float = 0
                for b in 0..<n {
                    let base = (b * c + ch) * plane
                    let (a, d) = BVec.sumAndDot(ds.p + base, hs.p + base, count: plane)
                    sdy += a; sdyx += d
                }
                dgs.p[ch] = sdyx; dbs.p[ch] = sdy
                guard let dxp else { continue }
                let k = gs.p[ch] * isd.p[ch]
                let a = sdy / m, q = sdyx
                let vk = SIMD16<Float>(repeating: k), va = SIMD16<Float>(repeating: a), vq = SIMD16<Float>(repeating: q)
                let vm = SIMD16<Float>(repeating: m)
                for b in 0..<n {
                    let base = (b * c + ch) * plane
                    let dp = ds.p + base, hp = hs.p + base, op = dxp.p + base
                    var p = 0
                    if batchStats {
                        while p + 16 <= plane { BVec.store(vk * (BVec.load(dp + p) - va - BVec.load(hp + p) * vq / vm), op + p); p += 16 }
                        while p < plane { op[p] = k * (dp[p] - a - hp[p] * q / m); p += 1 }
                    } else {
                        while p + 16 <= plane { BVec.store(vk * BVec.load(dp + p), op + p); p += 16 }
                        while p < plane { op[p] = k * dp[p]; p += 1 }
                    }
                }
            }
        }
    } } } } } } }
    return (needInput ? dxs : nil, dg, dbt)
}

/// Plain single-threaded `trainBatchNormForward` (the reference it is tested against).
/// Training-mode BatchNorm2d forward with batch statistics. Returns y, the normalized xhat, 1/std per channel,
/// batch mean and biased variance. Running statistics are updated by the caller (PyTorch momentum, unbiased var).
public func referenceBatchNormForward(x: [Float], n: Int, c: Int, plane: Int, gamma: [Float], beta: [Float], eps: Float)
    -> (y: [Float], xhat: [Float], invStd: [Float], mean: [Float], variance: [Float]) {
    var y = [Float](repeating: 0, count: x.count), xhat = y
    var invStd = [Float](repeating: 0, count: c), mean = invStd, variance = invStd
    let m = Double(n * plane)
    for ch in 0..<c {
        var s = 0.0
        for b in 0..<n { let base = (b * c + ch) * plane; for p in 0..<plane { s += Double(x[base + p]) } }
        let mu = s / m
        var v = 0.0
        for b in 0..<n { let base = (b * c + ch) * plane; for p in 0..<plane { let d = Double(x[base + p]) - mu; v += d * d } }
        v /= m
        let istd = Float(1 / (v + Double(eps)).squareRoot())
        mean[ch] = Float(mu); variance[ch] = Float(v); invStd[ch] = istd
        let muF = Float(mu)
        for b in 0..<n {
            let base = (b * c + ch) * plane
            for p in 0..<plane {
                let h = (x[base + p] - muF) * istd
                xhat[base + p] = h
                y[base + p] = h * gamma[ch] + beta[ch]
            }
        }
    }
    return (y, xhat, invStd, mean, variance)
}

/// Plain single-threaded `trainBatchNormBackward`. With `batchStats` the statistics depend on x (training mode); otherwise they are constants.
public func referenceBatchNormBackward(dy: [Float], xhat: [Float], invStd: [Float], gamma: [Float], n: Int, c: Int, plane: Int,
                                   batchStats: Bool, needInput: Bool) -> (dx: [Float]?, dgamma: [Float], dbeta: [Float]) {
    var dg = [Float](repeating: 0, count: c), dbt = dg
    var dx: [Float]? = needInput ? [Float](repeating: 0, count: dy.count) : nil
    let m = Float(n * plane)
    for ch in 0..<c {
        var sdy: Float = 0, sdyx: Float = 0
        for b in 0..<n { let base = (b * c + ch) * plane; for p in 0..<plane { sdy += dy[base + p]; sdyx += dy[base + p] * xhat[base + p] } }
        dg[ch] = sdyx; dbt[ch] = sdy
        if needInput {
            let k = gamma[ch] * invStd[ch]
            for b in 0..<n {
                let base = (b * c + ch) * plane
                for p in 0..<plane {
                    dx![base + p] = batchStats ? k * (dy[base + p] - sdy / m - xhat[base + p] * sdyx / m) : k * dy[base + p]
                }
            }
        }
    }
    return (dx, dg, dbt)
}

// MARK: Pooling

struct PoolGeometry {
    var n, c, h, w, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, oh, ow: Int
    init(_ s: [Int], _ a: Pool2dAttrs) {
        n = s[0]; c = s[1]; h = s[2]; w = s[3]; kh = a.kernel[0]; kw = a.kernel[1]; sh = a.stride[0]; sw = a.stride[1]
        pt = a.padding.top; pl = a.padding.left; pb = a.padding.bottom; pr = a.padding.right
        dh = a.dilation[0]; dw = a.dilation[1]
        oh = ShapeRules.windowOutput(h, kernel: kh, stride: sh, padBegin: pt, padEnd: pb, dilation: dh, ceilMode: a.ceilMode)
        ow = ShapeRules.windowOutput(w, kernel: kw, stride: sw, padBegin: pl, padEnd: pr, dilation: dw, ceilMode: a.ceilMode)
    }
}

/// Scatters dy to each window's arg-max. With `planes` > 1 the outputs of plane p point into input plane p only
/// (true of max pooling), so planes are split over `threads`.
public func trainMaxPoolBackward(dy: [Float], argmax: [Int32], inputCount: Int, planes: Int = 1, threads: Int = TrainingThreads.count) -> [Float] {
    var dx = [Float](repeating: 0, count: inputCount)
    let outPlane = planes > 0 ? dy.count / planes : dy.count
    if planes <= 1 || outPlane * planes != dy.count {
        for i in 0..<dy.count where argmax[i] >= 0 { dx[Int(argmax[i])] += dy[i] }
        return dx
    }
    dy.withUnsafeBufferPointer { db in argmax.withUnsafeBufferPointer { ab in dx.withUnsafeMutableBufferPointer { xb in
        let ds = SendConstPtr(db.baseAddress!), xs = SendPtr(xb.baseAddress!)
        let am = UnsafeSendableBox(ab.baseAddress!)
        Fast.parallelFor(planes, threads: threads, grain: max(1, 8192 / max(1, outPlane))) { r in
            for i in (r.lowerBound * outPlane)..<(r.upperBound * outPlane) where am.value[i] >= 0 { xs.p[Int(am.value[i])] += ds.p[i] }
        }
    } } }
    return dx
}

/// Max-pool backward without a stored arg-max: each output's gradient goes to the first window element (row-major)
/// equal to the forward output `y` (if `y` is NaN, the first NaN) — the element `maxPool2dWithArgmax` records — so the
/// forward can run the inference kernel. Planes split over the workers; windows inside the input skip the bounds tests.
public func trainMaxPoolBackwardByValue(x: [Float], y: [Float], dy: [Float], geometry g: Pool2dGeometry,
                                        threads: Int = TrainingThreads.count) -> [Float] {
    let inPlane = g.inH * g.inW, outPlane = g.outH * g.outW
    let xTaps = (0..<g.outW).map { tapRange(base: $0 * g.strideW - g.padLeft, kernel: g.kW, dil: g.dilW, lo: 0, hi: g.inW) }
    // Output columns oxA..<oxB have their whole window inside the row.
    let inside = xTaps.indices.filter { xTaps[$0] == 0..<g.kW }
    let oxA = inside.first ?? 0, oxB = inside.isEmpty ? 0 : inside.last! + 1
    let kH = g.kH, kW = g.kW, inW = g.inW, rowStep = g.dilH * g.inW, dilW = g.dilW
    let simd: Int32 = TrainFast.enabled("pool") ? 1 : 0
    return [Float](unsafeUninitializedCapacity: x.count) { db, done in
        x.withUnsafeBufferPointer { xb in y.withUnsafeBufferPointer { yb in dy.withUnsafeBufferPointer { dyb in
            guard x.count > 0, let x0 = xb.baseAddress else { return }
            let xs = SendConstPtr(x0), ds = SendPtr(db.baseAddress!)
            let ys = yb.baseAddress.map(SendConstPtr.init), gs = dyb.baseAddress.map(SendConstPtr.init)
            Fast.parallelFor(g.planes, threads: threads, grain: max(1, 8192 / max(1, inPlane))) { r in
                for p in r {
                    let plane = xs.p + p * inPlane, dx = ds.p + p * inPlane
                    dx.update(repeating: 0, count: inPlane)
                    guard let ys, let gs else { continue }
                    let yo = ys.p + p * outPlane, go = gs.p + p * outPlane
                    for oy in 0..<g.outH {
                        let by = oy * g.strideH - g.padTop
                        let yTaps = tapRange(base: by, kernel: g.kH, dil: g.dilH, lo: 0, hi: g.inH)
                        let fullRows = yTaps.count == kH
                        for ox in 0..<g.outW {
                            let o = oy * g.outW + ox
                            let target = yo[o], nan = target != target
                            let bx = ox * g.strideW - g.padLeft
                            if fullRows && ox == oxA && oxB > oxA {
                                // Whole windows inside the input: one C call for the run (AVX-512 for stride 1 or 2).
                                let w0 = by * inW + bx
                                zoo_maxpool_back_row(plane + w0, dx + w0, yo + o, go + o, oxB - oxA, Int32(g.strideW), Int32(kH), Int32(kW),
                                                     rowStep, Int32(dilW), simd)
                                continue
                            }
                            if fullRows && ox > oxA && ox < oxB { continue }
                            let xr = xTaps[ox]
                            var idx = -1
                            for ky in yTaps.reversed() {
                                let row = (by + ky * g.dilH) * inW + bx
                                for kx in xr.reversed() {
                                    let i = row + kx * dilW
                                    let v = plane[i]
                                    idx = (v == target || (nan && v != v)) ? i : idx
                                }
                            }
                            if idx >= 0 { dx[idx] += go[o] }
                        }
                    }
                }
            }
        } } }
        done = x.count
    }
}

/// `ZOO_TRAIN_RELU_POOL=0`: a ReLU's backward before a max pool runs as a pass of its own (A/B switch).
nonisolated(unsafe) var trainFuseReluPoolBackward = ProcessInfo.processInfo.environment["ZOO_TRAIN_RELU_POOL"] != "0"

/// dy with the entries where y is (±)0 set to 0.
func maskedWhereZero(_ dy: [Float], _ y: [Float]) -> [Float] {
    precondition(dy.count == y.count)
    return [Float](unsafeUninitializedCapacity: dy.count) { out, done in
        dy.withUnsafeBufferPointer { d in y.withUnsafeBufferPointer { v in
            for i in 0..<dy.count { out[i] = v[i] == 0 ? 0 : d[i] }
        } }
        done = dy.count
    }
}

/// Average pooling with PyTorch's divisor rules (count_include_pad counts padding inside the padded extent).
func avgPoolWindows(_ g: PoolGeometry, _ a: Pool2dAttrs, _ body: (_ o: Int, _ nc: Int, _ y0: Int, _ y1: Int, _ x0: Int, _ x1: Int, _ div: Float) -> Void) {
    for nc in 0..<(g.n * g.c) {
        for oy in 0..<g.oh { for ox in 0..<g.ow {
            var hs = oy * g.sh - g.pt, ws = ox * g.sw - g.pl
            var he = min(hs + g.kh, g.h + g.pb), we = min(ws + g.kw, g.w + g.pr)
            let poolSize = (he - hs) * (we - ws)
            hs = max(hs, 0); ws = max(ws, 0); he = min(he, g.h); we = min(we, g.w)
            let div = a.countIncludePad ? poolSize : (he - hs) * (we - ws)
            body((nc * g.oh + oy) * g.ow + ox, nc, hs, he, ws, we, Float(max(div, 1)))
        } }
    }
}

/// Average-pool backward, planes split over `threads` (the windows of `avgPoolWindows`, computed inline).
public func trainAvgPoolBackward(dy: [Float], inputShape: [Int], attrs: Pool2dAttrs, threads: Int = TrainingThreads.count) -> [Float] {
    let g = PoolGeometry(inputShape, attrs)
    if let d = avgPool2x2Backward(dy: dy, g, threads: threads) { return d }
    var dx = [Float](repeating: 0, count: inputShape.reduce(1, *))
    let planes = g.n * g.c
    guard planes > 0, g.oh > 0, g.ow > 0 else { return dx }
    dy.withUnsafeBufferPointer { db in dx.withUnsafeMutableBufferPointer { xb in
        let ds = SendConstPtr(db.baseAddress!), xs = SendPtr(xb.baseAddress!)
        Fast.parallelFor(planes, threads: threads, grain: max(1, 8192 / max(1, g.oh * g.ow * g.kh * g.kw))) { r in
            for nc in r {
                let plane = xs.p + nc * g.h * g.w
                let dyp = ds.p + nc * g.oh * g.ow
                for oy in 0..<g.oh {
                    var hs = oy * g.sh - g.pt
                    var he = min(hs + g.kh, g.h + g.pb)
                    let ph = he - hs
                    hs = max(hs, 0); he = min(he, g.h)
                    for ox in 0..<g.ow {
                        var ws = ox * g.sw - g.pl
                        var we = min(ws + g.kw, g.w + g.pr)
                        let pw = we - ws
                        ws = max(ws, 0); we = min(we, g.w)
                        let div = attrs.countIncludePad ? ph * pw : (he - hs) * (we - ws)
                        let v = dyp[oy * g.ow + ox] / Float(max(div, 1))
                        if he > hs && we > ws { for iy in hs..<he { for ix in ws..<we { plane[iy * g.w + ix] += v } } }
                    }
                }
            }
        }
    } }
    return dx
}

/// Adaptive average pooling windows: [floor(i*H/oh), ceil((i+1)*H/oh)).
func adaptiveWindows(_ s: [Int], _ out: [Int], _ body: (_ o: Int, _ nc: Int, _ y0: Int, _ y1: Int, _ x0: Int, _ x1: Int) -> Void) {
    let (n, c, h, w, oh, ow) = (s[0], s[1], s[2], s[3], out[0], out[1])
    for nc in 0..<(n * c) { for oy in 0..<oh { for ox in 0..<ow {
        body((nc * oh + oy) * ow + ox, nc, oy * h / oh, ((oy + 1) * h + oh - 1) / oh, ox * w / ow, ((ox + 1) * w + ow - 1) / ow)
    } } }
}

public func trainAdaptiveAvgPoolBackward(dy: [Float], inputShape: [Int], output: [Int]) -> [Float] {
    var dx = [Float](repeating: 0, count: inputShape.reduce(1, *))
    let hw = inputShape[2] * inputShape[3], w = inputShape[3]
    adaptiveWindows(inputShape, output) { o, nc, y0, y1, x0, x1 in
        let v = dy[o] / Float((y1 - y0) * (x1 - x0))
        for iy in y0..<y1 { for ix in x0..<x1 { dx[nc * hw + iy * w + ix] += v } }
    }
    return dx
}

// MARK: Softmax, LRN

public func trainSoftmaxBackward(y: [Float], dy: [Float], shape: [Int], axis: Int) -> [Float] {
    let ax = axis < 0 ? axis + shape.count : axis
    let outer = shape[..<ax].reduce(1, *), len = shape[ax], inner = shape[(ax + 1)...].reduce(1, *)
    var dx = dy
    for o in 0..<outer { for i in 0..<inner {
        var s: Float = 0
        for k in 0..<len { let j = (o * len + k) * inner + i; s += dy[j] * y[j] }
        for k in 0..<len { let j = (o * len + k) * inner + i; dx[j] = y[j] * (dy[j] - s) }
    } }
    return dx
}

/// PyTorch LocalResponseNorm across channels: y = x / (k + alpha/size * sum_window x^2)^beta,
/// the window spanning channels c - size/2 ... c + (size-1)/2. Returns y and the scale (k + ...).
public func trainLRNForward(x: [Float], shape: [Int], attrs a: LRNAttrs) -> (y: [Float], scale: [Float]) {
    let (n, c) = (shape[0], shape[1]), plane = shape[2...].reduce(1, *)
    var y = x, sc = x
    for b in 0..<n { for ch in 0..<c { for p in 0..<plane {
        var s: Float = 0
        for j in max(0, ch - a.size / 2)...min(c - 1, ch + (a.size - 1) / 2) { let v = x[(b * c + j) * plane + p]; s += v * v }
        let i = (b * c + ch) * plane + p
        sc[i] = a.k + a.alpha / Float(a.size) * s
        y[i] = x[i] * powf(sc[i], -a.beta)
    } } }
    return (y, sc)
}

public func trainLRNBackward(x: [Float], scale: [Float], dy: [Float], shape: [Int], attrs a: LRNAttrs) -> [Float] {
    let (n, c) = (shape[0], shape[1]), plane = shape[2...].reduce(1, *)
    var dx = [Float](repeating: 0, count: x.count)
    // t_j = dy_j * x_j * scale_j^(-beta-1); dx_i = dy_i * scale_i^-beta - 2 alpha beta / size * x_i * sum_{j: i in win(j)} t_j
    var t = x
    for i in 0..<x.count { t[i] = dy[i] * x[i] * powf(scale[i], -a.beta - 1) }
    for b in 0..<n { for ch in 0..<c { for p in 0..<plane {
        let i = (b * c + ch) * plane + p
        var s: Float = 0
        // j's window contains ch when j - size/2 <= ch <= j + (size-1)/2
        for j in max(0, ch - (a.size - 1) / 2)...min(c - 1, ch + a.size / 2) { s += t[(b * c + j) * plane + p] }
        dx[i] = dy[i] * powf(scale[i], -a.beta) - 2 * a.alpha * a.beta / Float(a.size) * x[i] * s
    } } }
    return dx
}

// MARK: Broadcasting helpers (Add, Mul)

/// Index map from an output of `out` shape to an input of shape `s` under NumPy broadcasting.
func broadcastIndex(_ s: [Int], to out: [Int]) -> [Int] {
    let r = out.count
    let sp = [Int](repeating: 1, count: r - s.count) + s
    var strides = [Int](repeating: 0, count: r)
    var acc = 1
    for d in stride(from: r - 1, through: 0, by: -1) { strides[d] = sp[d] == 1 ? 0 : acc; acc *= sp[d] }
    let total = out.reduce(1, *)
    var idx = [Int](repeating: 0, count: total)
    var coord = [Int](repeating: 0, count: r)
    for i in 0..<total {
        var off = 0
        for d in 0..<r { off += coord[d] * strides[d] }
        idx[i] = off
        var d = r - 1
        while d >= 0 { coord[d] += 1; if coord[d] < out[d] { break }; coord[d] = 0; d -= 1 }
    }
    return idx
}
