import Foundation
import COpenBLAS

/// SIMD loops shared by the backward kernels (portable Swift SIMD; memory-bound, so no CPU target is needed).
enum BVec {
    static let grain = 1 << 15

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }
    @inline(__always) static func store(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
    }

    /// Σ p[i] in float (16 lanes, then the lanes).
    static func sum(_ p: UnsafePointer<Float>, count: Int) -> Float {
        var acc = SIMD16<Float>()
        var i = 0
        while i + 16 <= count { acc += load(p + i); i += 16 }
        var s = acc.sum()
        while i < count { s += p[i]; i += 1 }
        return s
    }

    /// (Σ a[i], Σ a[i]·b[i]) in float.
    static func sumAndDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> (Float, Float) {
        var s = SIMD16<Float>(), d = SIMD16<Float>()
        var i = 0
        while i + 16 <= count { let va = load(a + i); s += va; d += va * load(b + i); i += 16 }
        var ss = s.sum(), dd = d.sum()
        while i < count { ss += a[i]; dd += a[i] * b[i]; i += 1 }
        return (ss, dd)
    }

    /// Σ p[i] in double.
    static func sumDouble(_ p: UnsafePointer<Float>, count: Int) -> Double {
        var acc = SIMD8<Double>()
        var i = 0
        while i + 8 <= count { acc += SIMD8<Double>(UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)); i += 8 }
        var s = acc.sum()
        while i < count { s += Double(p[i]); i += 1 }
        return s
    }

    /// (Σ p[i], Σ p[i]²) in double, one read.
    static func sumAndSquaresDouble(_ p: UnsafePointer<Float>, count: Int) -> (Double, Double) {
        var a = SIMD8<Double>(), q = SIMD8<Double>()
        var i = 0
        while i + 8 <= count {
            let d = SIMD8<Double>(UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self))
            a += d; q += d * d
            i += 8
        }
        var s = a.sum(), t = q.sum()
        while i < count { let d = Double(p[i]); s += d; t += d * d; i += 1 }
        return (s, t)
    }

    /// Σ (p[i] - mean)² in double.
    static func squaredDeviationDouble(_ p: UnsafePointer<Float>, count: Int, mean: Double) -> Double {
        var acc = SIMD8<Double>()
        let m = SIMD8<Double>(repeating: mean)
        var i = 0
        while i + 8 <= count {
            let d = SIMD8<Double>(UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)) - m
            acc += d * d
            i += 8
        }
        var s = acc.sum()
        while i < count { let d = Double(p[i]) - mean; s += d * d; i += 1 }
        return s
    }

    /// dst[i] += src[i] over `count` elements, split over `threads`.
    static func addInPlace(_ dst: inout [Float], _ src: [Float], threads: Int) {
        let n = Swift.min(dst.count, src.count)
        dst.withUnsafeMutableBufferPointer { db in src.withUnsafeBufferPointer { sb in
            guard let d0 = db.baseAddress, let s0 = sb.baseAddress else { return }
            let d = SendPtr(d0), s = SendConstPtr(s0)
            Fast.parallelFor(n, threads: threads, grain: grain) { r in
                var i = r.lowerBound
                while i + 16 <= r.upperBound { store(load(d.p + i) + load(s.p + i), d.p + i); i += 16 }
                while i < r.upperBound { d.p[i] += s.p[i]; i += 1 }
            }
        } }
    }

    /// A new array y[i] = body(i-range) filled in parallel over `count` elements.
    static func map(_ count: Int, threads: Int, _ body: (Range<Int>, UnsafeMutablePointer<Float>) -> Void) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { b, n in
            if count > 0 {
                let out = SendPtr(b.baseAddress!)
                Fast.parallelFor(count, threads: threads, grain: grain) { r in body(r, out.p) }
            }
            n = count
        }
    }

    /// Gradient through a pointwise activation: dx = dy where the input passes (ReLU, ReLU6, Clip), or dy · f'(x)
    /// from the output y (sigmoid, tanh).
    static func activationBackward(_ op: Op, x: [Float], y: [Float], dy: [Float], threads: Int) -> [Float] {
        x.withUnsafeBufferPointer { xb in y.withUnsafeBufferPointer { yb in dy.withUnsafeBufferPointer { db in
            let xs = SendConstPtr(xb.baseAddress!), ys = SendConstPtr(yb.baseAddress!), ds = SendConstPtr(db.baseAddress!)
            return map(dy.count, threads: threads) { r, out in
                let x = xs.p, y = ys.p, d = ds.p
                var i = r.lowerBound
                switch op {
                case .relu, .relu6, .clip:
                    // ReLU/ReLU6 zero the gradient at x == bound, Clip passes it; ReLU has no upper bound (NaN never compares).
                    var lo: Float = 0, hi: Float = .nan
                    var closedLow = true
                    if case .relu6 = op { hi = 6 }
                    if case let .clip(l, h) = op { lo = l; hi = h; closedLow = false }
                    let vlo = SIMD16<Float>(repeating: lo), vhi = SIMD16<Float>(repeating: hi)
                    while i + 16 <= r.upperBound {
                        var v = load(d + i)
                        let xv = load(x + i)
                        let off = closedLow ? (xv .<= vlo) .| (xv .>= vhi) : (xv .< vlo) .| (xv .> vhi)
                        v.replace(with: 0, where: off)
                        store(v, out + i)
                        i += 16
                    }
                    while i < r.upperBound {
                        let xv = x[i]
                        let off = closedLow ? (xv <= lo || xv >= hi) : (xv < lo || xv > hi)
                        out[i] = off ? 0 : d[i]
                        i += 1
                    }
                case .sigmoid:
                    while i + 16 <= r.upperBound { let yv = load(y + i); store(load(d + i) * (yv * (1 - yv)), out + i); i += 16 }
                    while i < r.upperBound { out[i] = d[i] * (y[i] * (1 - y[i])); i += 1 }
                default:
                    while i + 16 <= r.upperBound { let yv = load(y + i); store(load(d + i) * (1 - yv * yv), out + i); i += 16 }
                    while i < r.upperBound { out[i] = d[i] * (1 - y[i] * y[i]); i += 1 }
                }
            }
        } } }
    }
}

/// Keeps freed activation-sized blocks in the heap instead of returning them to the kernel after each step (every
/// step would page-fault its tape in again). Set once, when the first training engine is made.
enum TrainingMemory {
    static let configured: Bool = {
        #if os(Linux)
        _ = mallopt(M_MMAP_THRESHOLD, 32 << 20)
        _ = mallopt(M_TRIM_THRESHOLD, 1 << 30)
        _ = mallopt(M_TOP_PAD, 64 << 20)
        #endif
        return true
    }()
}
