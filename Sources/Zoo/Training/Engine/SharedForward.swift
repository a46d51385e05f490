import Foundation

/// The training engine's forward pass runs the shared engine's kernels (`Fast.*`, the same SIMD/BLAS code the
/// inference `Executor` uses); these helpers only adapt `[Float]` arrays to the kernels' pointer signatures.
enum SharedForward {
    /// Worker threads for the shared kernels during training (`TrainingThreads.count`).
    static var threads: Int { TrainingThreads.count }

    /// A new array of `count` floats filled by `body`.
    static func output(_ count: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buf, n in
            if count > 0 { body(buf.baseAddress!) }
            n = count
        }
    }

    static func withOptional<R>(_ a: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let a else { return body(nil) }
        return a.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    static func conv2d(_ g: Conv2dGeometry, x: [Float], w: [Float], b: [Float]?, threads: Int = threads) -> [Float] {
        var scratch = [Float](unsafeUninitializedCapacity: Swift.max(1, Fast.conv2dScratch(g))) { _, n in n = Swift.max(1, Fast.conv2dScratch(g)) }
        return x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in withOptional(b) { bp in
            scratch.withUnsafeMutableBufferPointer { sp in
                output(g.batch * g.outC * g.outPlane) { y in
                    Fast.conv2d(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bp, act: .none, y: y, scratch: sp.baseAddress!, threads: threads)
                }
            }
        } } }
    }

    /// Convolution given the training backward kernels' geometry.
    static func conv2d(_ g: ConvGeometry, x: [Float], w: [Float], b: [Float]?) -> [Float] {
        conv2d(Conv2dGeometry(batch: g.n, inC: g.c, inH: g.h, inW: g.w, outC: g.o, outH: g.oh, outW: g.ow, kH: g.kh, kW: g.kw,
                              strideH: g.sh, strideW: g.sw, padTop: g.pt, padLeft: g.pl, dilH: g.dh, dilW: g.dw, groups: g.groups),
               x: x, w: w, b: b)
    }

    static func convTranspose2d(_ g: Conv2dGeometry, x: [Float], w: [Float], b: [Float]?) -> [Float] {
        var scratch = [Float](unsafeUninitializedCapacity: Swift.max(1, Fast.convTranspose2dScratch(g))) { _, n in n = Swift.max(1, Fast.convTranspose2dScratch(g)) }
        return x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in withOptional(b) { bp in
            scratch.withUnsafeMutableBufferPointer { sp in
                output(g.batch * g.outC * g.outPlane) { y in
                    Fast.convTranspose2d(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bp, y: y, scratch: sp.baseAddress!, threads: threads)
                }
            }
        } } }
    }

    static func linear(rows: Int, inFeatures: Int, outFeatures: Int, x: [Float], w: [Float], b: [Float]?) -> [Float] {
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in withOptional(b) { bp in
            output(rows * outFeatures) { y in
                Fast.linear(rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, x: xp.baseAddress!, w: wp.baseAddress!,
                            b: bp, act: .none, y: y, threads: threads)
            }
        } } }
    }

    static func unary(_ x: [Float], _ body: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) -> [Float] {
        x.withUnsafeBufferPointer { xp in output(x.count) { y in if !x.isEmpty { body(xp.baseAddress!, y) } } }
    }

    static func activation(_ act: Activation, _ x: [Float]) -> [Float] {
        unary(x) { Fast.activation(act, count: x.count, x: $0, y: $1, threads: threads) }
    }

    /// (outer, length, inner) of a shape split at `axis`.
    static func split(_ s: [Int], _ axis: Int) -> (Int, Int, Int) {
        (s[..<axis].reduce(1, *), s[axis], s[(axis + 1)...].reduce(1, *))
    }

    static func softmax(_ x: [Float], shape s: [Int], axis: Int) -> [Float] {
        let (o, l, i) = split(s, axis < 0 ? axis + s.count : axis)
        return unary(x) { Fast.softmax(outer: o, length: l, inner: i, x: $0, y: $1, threads: threads) }
    }

    static func maxPool2d(_ g: Pool2dGeometry, _ x: [Float]) -> [Float] {
        x.withUnsafeBufferPointer { xp in output(g.planes * g.outH * g.outW) { Fast.maxPool2d(g, x: xp.baseAddress!, y: $0, threads: threads) } }
    }

    static func avgPool2d(_ g: Pool2dGeometry, _ x: [Float]) -> [Float] {
        x.withUnsafeBufferPointer { xp in output(g.planes * g.outH * g.outW) { Fast.avgPool2d(g, x: xp.baseAddress!, y: $0, threads: threads) } }
    }

    static func adaptiveAvgPool2d(_ x: [Float], shape s: [Int], output o: [Int]) -> [Float] {
        x.withUnsafeBufferPointer { xp in
            output(s[0] * s[1] * o[0] * o[1]) {
                Fast.adaptiveAvgPool2d(planes: s[0] * s[1], inH: s[2], inW: s[3], outH: o[0], outW: o[1], x: xp.baseAddress!, y: $0, threads: threads)
            }
        }
    }

    static func binary(_ g: BroadcastGeometry, multiply: Bool, _ a: [Float], _ b: [Float]) -> [Float] {
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
            output(g.outCount) { Fast.binary(g, multiply: multiply, a: ap.baseAddress!, b: bp.baseAddress!, y: $0, threads: threads) }
        } }
    }

    static func concat(_ ins: [Tensor], outShape out: [Int], axis ax: Int) -> [Float] {
        let (outer, _, inner) = split(out, ax)
        let lengths = ins.map { $0.shape[ax] }
        func go(_ i: Int, _ acc: [UnsafePointer<Float>], _ y: UnsafeMutablePointer<Float>) {
            if i == ins.count { Fast.concat(outer: outer, inner: inner, lengths: lengths, inputs: acc, y: y, threads: threads); return }
            ins[i].data.withUnsafeBufferPointer { go(i + 1, acc + [$0.baseAddress!], y) }
        }
        return output(out.reduce(1, *)) { go(0, [], $0) }
    }

    static func pad(_ x: [Float], shape s: [Int], _ p: Padding2D, value: Float) -> [Float] {
        let oh = s[2] + p.top + p.bottom, ow = s[3] + p.left + p.right
        return x.withUnsafeBufferPointer { xp in
            output(s[0] * s[1] * oh * ow) { Fast.pad(planes: s[0] * s[1], inH: s[2], inW: s[3], p, value: value, x: xp.baseAddress!, y: $0, threads: threads) }
        }
    }

    /// For max-pool backward: the flat input index of each output's maximum (the first window element equal to
    /// the forward kernel's output `y`; -1 if the window is empty). Compares against `y`, recomputes no max.
    static func maxPoolArgmax(_ g: Pool2dGeometry, x: [Float], y: [Float]) -> [Int32] {
        var am = [Int32](repeating: -1, count: y.count)
        let outPlane = g.outH * g.outW
        x.withUnsafeBufferPointer { xb in y.withUnsafeBufferPointer { yb in am.withUnsafeMutableBufferPointer { ab in
            guard let x0 = xb.baseAddress, let y0 = yb.baseAddress, let a0 = ab.baseAddress else { return }
            let xs = SendConstPtr(x0), ys = SendConstPtr(y0)
            let ams = UnsafeSendableBox(a0)
            Fast.parallelFor(g.planes, threads: threads, grain: Swift.max(1, 4096 / Swift.max(1, outPlane))) { r in
                let x = xs.p, y = ys.p, am = ams.value
                for p in r {
                    let base = p * g.inH * g.inW
                    for oy in 0..<g.outH { for ox in 0..<g.outW {
                        let o = p * outPlane + oy * g.outW + ox
                        let target = y[o]
                        search: for ky in 0..<g.kH {
                            let iy = oy * g.strideH - g.padTop + ky * g.dilH
                            if iy < 0 || iy >= g.inH { continue }
                            for kx in 0..<g.kW {
                                let ix = ox * g.strideW - g.padLeft + kx * g.dilW
                                if ix < 0 || ix >= g.inW { continue }
                                let v = x[base + iy * g.inW + ix]
                                if v == target || (v.isNaN && target.isNaN) { am[o] = Int32(base + iy * g.inW + ix); break search }
                            }
                        }
                    } }
                }
            }
        } } }
        return am
    }
}
