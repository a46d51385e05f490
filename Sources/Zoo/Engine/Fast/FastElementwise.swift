import Foundation
import CZooKernels

extension Fast {
    /// In-place activation over a contiguous run, SIMD16 for the piecewise-linear ones.
    @inline(__always)
    static func applyActivation(_ act: Activation, _ p: UnsafeMutablePointer<Float>, count: Int) {
        switch act {
        case .none: return
        case .relu: clamp(p, count: count, lo: 0, hi: .infinity)
        case let .clip(lo, hi): clamp(p, count: count, lo: lo, hi: hi)
        // zoo_sigmoid: vector exp on AVX2/AVX-512F; its portable body is the scalar 1 / (1 + expf(−x)).
        case .sigmoid: zoo_sigmoid(p, p, count, vectorSigmoid ? 0 : 1)
        case .tanh: for i in 0..<count { p[i] = tanhf(p[i]) }
        }
    }

    /// `ZOO_SIGMOID=scalar` (A/B and tests): sigmoid by zoo_sigmoid's scalar `expf` body instead of its vector exp.
    nonisolated(unsafe) static var vectorSigmoid = ProcessInfo.processInfo.environment["ZOO_SIGMOID"] != "scalar"

    @inline(__always)
    static func clamp(_ p: UnsafeMutablePointer<Float>, count: Int, lo: Float, hi: Float) {
        var i = 0
        let vlo = SIMD16<Float>(repeating: lo), vhi = SIMD16<Float>(repeating: hi)
        while i + 16 <= count {
            let raw = UnsafeMutableRawPointer(p + i)
            var v = raw.loadUnaligned(as: SIMD16<Float>.self)
            // NaN stays NaN: select only where the comparison holds.
            v.replace(with: vlo, where: v .< vlo)
            v.replace(with: vhi, where: v .> vhi)
            raw.storeBytes(of: v, as: SIMD16<Float>.self)
            i += 16
        }
        while i < count {
            let v = p[i]
            if v < lo { p[i] = lo } else if v > hi { p[i] = hi }
            i += 1
        }
    }

    /// Pointwise activation over `count` elements; `x` may equal `y`.
    public static func activation(_ act: Activation, count: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int) {
        if case .sigmoid = act { sigmoid(count: count, x: x, y: y, threads: threads); return }
        let xs = SendConstPtr(x), ys = SendPtr(y)
        parallelFor(count, threads: threads, grain: 1 << 15) { r in
            if UnsafePointer(ys.p) != xs.p { (ys.p + r.lowerBound).update(from: xs.p + r.lowerBound, count: r.count) }
            applyActivation(act, ys.p + r.lowerBound, count: r.count)
        }
    }

    /// y = 1 / (1 + exp(−x)) over `count` elements by `zoo_sigmoid` (`portable`: its scalar body), split over the
    /// workers; `x` may equal `y`.
    static func sigmoid(count: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int,
                        portable: Bool = !vectorSigmoid) {
        let xs = SendConstPtr(x), ys = SendPtr(y), p: Int32 = portable ? 1 : 0
        parallelFor(count, threads: threads, grain: 1 << 15) { r in
            zoo_sigmoid(xs.p + r.lowerBound, ys.p + r.lowerBound, r.count, p)
        }
    }

    /// Inference batch norm over axis 1 with a fused activation: y = x * scale[c] + shift[c].
    public static func batchNorm(outer: Int, channels: Int, inner: Int, eps: Float, x: UnsafePointer<Float>,
                                 weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                                 variance: UnsafePointer<Float>, act: Activation, y: UnsafeMutablePointer<Float>, threads: Int) {
        var scale = [Float](repeating: 0, count: channels), shift = scale
        for c in 0..<channels {
            scale[c] = weight[c] / (variance[c] + eps).squareRoot()
            shift[c] = bias[c] - mean[c] * scale[c]
        }
        let xs = SendConstPtr(x), ys = SendPtr(y)
        scale.withUnsafeBufferPointer { sc in
            shift.withUnsafeBufferPointer { sh in
                let scp = SendConstPtr(sc.baseAddress!), shp = SendConstPtr(sh.baseAddress!)
                parallelFor(outer * channels, threads: threads, grain: Swift.max(1, 16384 / Swift.max(inner, 1))) { range in
                    for p in range {
                        let c = p % channels
                        let a = scp.p[c], s = shp.p[c]
                        let src = xs.p + p * inner, dst = ys.p + p * inner
                        for i in 0..<inner { dst[i] = src[i] * a + s }
                        applyActivation(act, dst, count: inner)
                    }
                }
            }
        }
    }

    /// Softmax along the middle axis of an (outer, length, inner) view.
    public static func softmax(outer: Int, length: Int, inner: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int) {
        let xs = SendConstPtr(x), ys = SendPtr(y)
        parallelFor(outer * inner, threads: threads, grain: Swift.max(1, 4096 / Swift.max(length, 1))) { range in
            for q in range {
                let o = q / inner, i = q % inner
                let src = xs.p + o * length * inner + i, dst = ys.p + o * length * inner + i
                var m = -Float.infinity
                for k in 0..<length { m = Swift.max(m, src[k * inner]) }
                var sum: Float = 0
                for k in 0..<length { let e = expf(src[k * inner] - m); dst[k * inner] = e; sum += e }
                let inv = 1 / sum
                for k in 0..<length { dst[k * inner] *= inv }
            }
        }
    }

    /// Collapses adjacent output dimensions along which both operands are laid out contiguously (or both broadcast),
    /// so that e.g. [N,C,H,W] + [1,C,1,1] becomes three loops and equal shapes become one.
    static func collapse(_ g: BroadcastGeometry) -> (shape: [Int], a: [Int], b: [Int]) {
        var shape: [Int] = [], sa: [Int] = [], sb: [Int] = []
        for d in 0..<g.outShape.count where g.outShape[d] != 1 {
            let n = g.outShape[d], a = g.aStrides[d], b = g.bStrides[d]
            if let last = shape.last,
               (sa.last! == a * n && sb.last! == b * n) {
                shape[shape.count - 1] = last * n; sa[sa.count - 1] = a; sb[sb.count - 1] = b
            } else {
                shape.append(n); sa.append(a); sb.append(b)
            }
        }
        if shape.isEmpty { return ([1], [0], [0]) }
        return (shape, sa, sb)
    }

    /// NumPy-broadcast add or multiply. The innermost collapsed dimension runs as a tight loop.
    /// `bands`: same-shape operands at batch 1 that were written in row bands are added in the same bands; returns
    /// whether it did.
    @discardableResult
    public static func binary(_ g: BroadcastGeometry, multiply: Bool, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                              act: Activation = .none, y: UnsafeMutablePointer<Float>, threads: Int, bands: Bool = false) -> Bool {
        let o = g.outShape
        if bands, o.count == 4, case let parts = bandParts(batch: o[0], threads: threads), parts > 0, o[2] >= 2 * parts,
           g.aStrides == g.bStrides, g.aStrides == BroadcastGeometry.strides(o, rank: 4) {
            // Same-shape operands at batch 1: row bands (worker t adds its band's rows of every plane).
            let as_ = SendConstPtr(a), bs = SendConstPtr(b), ys = SendPtr(y)
            let plane = o[2] * o[3]
            parallelTasks(parts, threads: threads) { t in
                let r = band(o[2], t, parts)
                let n = r.count * o[3]
                for c in 0..<o[1] {
                    let off = c * plane + r.lowerBound * o[3]
                    contiguousBinary(multiply: multiply, as_.p + off, bs.p + off, ys.p + off, count: n, act: act)
                }
            }
            return true
        }
        let (shape, sa, sb) = collapse(g)
        let r = shape.count
        let inner = shape[r - 1], ia = sa[r - 1], ib = sb[r - 1]
        let rows = g.outCount / inner
        let as_ = SendConstPtr(a), bs = SendConstPtr(b), ys = SendPtr(y)
        parallelFor(rows, threads: threads, grain: Swift.max(1, 32768 / Swift.max(inner, 1))) { range in
            for row in range {
                var rem = row, offA = 0, offB = 0
                for d in stride(from: r - 2, through: 0, by: -1) {
                    let idx = rem % shape[d]; rem /= shape[d]
                    offA += idx * sa[d]; offB += idx * sb[d]
                }
                let pa = as_.p + offA, pb = bs.p + offB, py = ys.p + row * inner
                if ia == 1 && ib == 1 { contiguousBinary(multiply: multiply, pa, pb, py, count: inner, act: act); continue }
                switch (multiply, ia, ib) {
                case (false, 1, 0): let v = pb[0]; for i in 0..<inner { py[i] = pa[i] + v }
                case (false, 0, 1): let v = pa[0]; for i in 0..<inner { py[i] = v + pb[i] }
                case (true, 1, 0): let v = pb[0]; for i in 0..<inner { py[i] = pa[i] * v }
                case (true, 0, 1): let v = pa[0]; for i in 0..<inner { py[i] = v * pb[i] }
                default:
                    for i in 0..<inner { py[i] = multiply ? pa[i * ia] * pb[i * ib] : pa[i * ia] + pb[i * ib] }
                }
                applyActivation(act, py, count: inner)
            }
        }
        return false
    }

    /// y = a + b (or a · b) over `count` contiguous elements, then the activation (fused into the loop for an add + ReLU).
    @inline(__always)
    static func contiguousBinary(multiply: Bool, _ pa: UnsafePointer<Float>, _ pb: UnsafePointer<Float>, _ py: UnsafeMutablePointer<Float>,
                                 count n: Int, act: Activation) {
        if multiply { for i in 0..<n { py[i] = pa[i] * pb[i] } }
        else if act == .relu { for i in 0..<n { py[i] = Swift.max(pa[i] + pb[i], 0) }; return }
        else { for i in 0..<n { py[i] = pa[i] + pb[i] } }
        applyActivation(act, py, count: n)
    }

    /// Concatenation along an axis by block copies.
    public static func concat(outer: Int, inner: Int, lengths: [Int], inputs: [UnsafePointer<Float>], y: UnsafeMutablePointer<Float>, threads: Int) {
        var dst = y
        for o in 0..<outer {
            for (k, x) in inputs.enumerated() {
                let n = lengths[k] * inner
                dst.update(from: x + o * n, count: n)
                dst += n
            }
        }
    }

    /// PyTorch LocalResponseNorm with a sliding sum of squares across channels.
    public static func lrn(_ a: LRNAttrs, outer: Int, channels: Int, inner: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int) {
        let before = a.size / 2, after = (a.size - 1) / 2
        let coef = a.alpha / Float(a.size)
        let chunk = 256
        let chunks = (inner + chunk - 1) / chunk
        let xs = SendConstPtr(x), ys = SendPtr(y)
        parallelFor(outer * chunks, threads: threads) { range in
            var sums = [Float](repeating: 0, count: chunk)
            for q in range {
                let n = q / chunks, i0 = (q % chunks) * chunk, len = Swift.min(chunk, inner - i0)
                let base = xs.p + n * channels * inner + i0
                let out = ys.p + n * channels * inner + i0
                for i in 0..<len { sums[i] = 0 }
                for cc in 0..<Swift.min(after, channels - 1) + 1 where after >= 0 {
                    let s = base + cc * inner
                    for i in 0..<len { sums[i] += s[i] * s[i] }
                }
                for c in 0..<channels {
                    if c > 0 {
                        let add = c + after, sub = c - before - 1
                        if add < channels { let s = base + add * inner; for i in 0..<len { sums[i] += s[i] * s[i] } }
                        if sub >= 0 { let s = base + sub * inner; for i in 0..<len { sums[i] -= s[i] * s[i] } }
                    }
                    let s = base + c * inner, d = out + c * inner
                    for i in 0..<len { d[i] = s[i] / powf(a.k + coef * Swift.max(sums[i], 0), a.beta) }
                }
            }
        }
    }

    /// Constant padding of the last two axes by row copies (negative padding crops).
    public static func pad(planes: Int, inH: Int, inW: Int, _ p: Padding2D, value: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int) {
        let outH = inH + p.top + p.bottom, outW = inW + p.left + p.right
        let xr = validRange(outLen: outW, inLen: inW, stride: 1, offset: -p.left)
        let xs = SendConstPtr(x), ys = SendPtr(y)
        parallelFor(planes, threads: threads, grain: Swift.max(1, 16384 / Swift.max(outH * outW, 1))) { range in
            for q in range {
                for oy in 0..<outH {
                    let row = ys.p + (q * outH + oy) * outW
                    let iy = oy - p.top
                    if iy < 0 || iy >= inH || xr.isEmpty { row.update(repeating: value, count: outW); continue }
                    if xr.lowerBound > 0 { row.update(repeating: value, count: xr.lowerBound) }
                    (row + xr.lowerBound).update(from: xs.p + (q * inH + iy) * inW + xr.lowerBound - p.left, count: xr.count)
                    if xr.upperBound < outW { (row + xr.upperBound).update(repeating: value, count: outW - xr.upperBound) }
                }
            }
        }
    }
}
