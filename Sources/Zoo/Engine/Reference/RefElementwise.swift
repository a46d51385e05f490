import Foundation

extension Reference {
    /// Pointwise activation; `x` and `y` may be the same buffer.
    public static func activation(_ act: Activation, count: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            let v = x[i]
            switch act {
            case .none: y[i] = v
            case .relu: y[i] = v > 0 ? v : (v.isNaN ? v : 0)
            case let .clip(lo, hi): y[i] = v.isNaN ? v : Swift.min(Swift.max(v, lo), hi)
            case .sigmoid: y[i] = Float(1 / (1 + Foundation.exp(-Double(v))))
            case .tanh: y[i] = Float(Foundation.tanh(Double(v)))
            }
        }
    }

    /// Softmax along the middle axis of an (outer, length, inner) view.
    public static func softmax(outer: Int, length: Int, inner: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for o in 0..<outer {
            for i in 0..<inner {
                var m = -Float.infinity
                for k in 0..<length { m = Swift.max(m, x[(o * length + k) * inner + i]) }
                var sum: Double = 0
                for k in 0..<length { sum += Foundation.exp(Double(x[(o * length + k) * inner + i] - m)) }
                for k in 0..<length {
                    let idx = (o * length + k) * inner + i
                    y[idx] = Float(Foundation.exp(Double(x[idx] - m)) / sum)
                }
            }
        }
    }

    /// NumPy-broadcast add (`multiply == false`) or multiply, by walking every output index.
    public static func binary(_ g: BroadcastGeometry, multiply: Bool, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                              y: UnsafeMutablePointer<Float>) {
        let rank = g.outShape.count
        var index = [Int](repeating: 0, count: rank)
        for o in 0..<g.outCount {
            var rem = o
            for d in stride(from: rank - 1, through: 0, by: -1) {
                index[d] = rem % g.outShape[d]
                rem /= g.outShape[d]
            }
            var ia = 0, ib = 0
            for d in 0..<rank { ia += index[d] * g.aStrides[d]; ib += index[d] * g.bStrides[d] }
            y[o] = multiply ? a[ia] * b[ib] : a[ia] + b[ib]
        }
    }

    /// Concatenation along an axis: each input is viewed as (outer, length_k, inner).
    public static func concat(outer: Int, inner: Int, lengths: [Int], inputs: [UnsafePointer<Float>], y: UnsafeMutablePointer<Float>) {
        let total = lengths.reduce(0, +)
        for o in 0..<outer {
            var offset = 0
            for (k, x) in inputs.enumerated() {
                for j in 0..<lengths[k] {
                    for i in 0..<inner {
                        y[(o * total + offset + j) * inner + i] = x[(o * lengths[k] + j) * inner + i]
                    }
                }
                offset += lengths[k]
            }
        }
    }

    /// PyTorch LocalResponseNorm over channels (axis 1):
    /// y = x / (k + alpha/size * Σ_{c' = c - size/2}^{c + (size-1)/2} x[c']²)^beta, zero outside the channel range.
    public static func lrn(_ a: LRNAttrs, outer: Int, channels: Int, inner: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for n in 0..<outer {
            for c in 0..<channels {
                for i in 0..<inner {
                    var sum: Float = 0
                    for cc in (c - a.size / 2)...(c + (a.size - 1) / 2) where cc >= 0 && cc < channels {
                        let v = x[(n * channels + cc) * inner + i]
                        sum += v * v
                    }
                    let idx = (n * channels + c) * inner + i
                    y[idx] = x[idx] / Foundation.pow(a.k + a.alpha / Float(a.size) * sum, a.beta)
                }
            }
        }
    }

    /// Constant padding of the last two axes (negative padding crops).
    public static func pad(planes: Int, inH: Int, inW: Int, _ p: Padding2D, value: Float,
                           x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        let outH = inH + p.top + p.bottom, outW = inW + p.left + p.right
        for q in 0..<planes {
            for oy in 0..<outH {
                for ox in 0..<outW {
                    let iy = oy - p.top, ix = ox - p.left
                    let inside = iy >= 0 && iy < inH && ix >= 0 && ix < inW
                    y[(q * outH + oy) * outW + ox] = inside ? x[(q * inH + iy) * inW + ix] : value
                }
            }
        }
    }
}
