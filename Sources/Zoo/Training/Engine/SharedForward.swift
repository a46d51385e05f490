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

    /// `weightCache`: pass a fresh `ConvWeightCache()` for weights that change every step (transformed once, without
    /// hashing them or filling the shared content-hashed cache); nil for fixed (frozen) weights.
    static func conv2d(_ g: Conv2dGeometry, x: [Float], w: [Float], b: [Float]?, threads: Int = threads,
                       weightCache: ConvWeightCache? = nil) -> [Float] {
        var scratch = [Float](unsafeUninitializedCapacity: Swift.max(1, Fast.conv2dScratch(g))) { _, n in n = Swift.max(1, Fast.conv2dScratch(g)) }
        return x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in withOptional(b) { bp in
            scratch.withUnsafeMutableBufferPointer { sp in
                output(g.batch * g.outC * g.outPlane) { y in
                    // Few-tap convolutions (image stems) on the tap-row kernel: their weights packed per call (a stem's are
                    // 64 × 147 floats).
                    let taps = Fast.tapConvApplies(g, act: .none)
                        ? PointwisePacked(m: g.outC, k: g.inCPerGroup * g.kH * g.kW, w: wp.baseAddress!) : nil
                    Fast.conv2d(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bp, act: .none, y: y, scratch: sp.baseAddress!, threads: threads,
                                weightCache: weightCache, pointwisePacked: taps)
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
        if g.kH == 2 && g.kW == 2 && g.strideH == 2 && g.strideW == 2 && g.padTop == 0 && g.padLeft == 0 && g.padBottom == 0
            && g.padRight == 0 && g.dilH == 1 && g.dilW == 1 && 2 * g.outH <= g.inH && 2 * g.outW <= g.inW {
            return avgPool2x2(g, x)
        }
        return x.withUnsafeBufferPointer { xp in output(g.planes * g.outH * g.outW) { Fast.avgPool2d(g, x: xp.baseAddress!, y: $0, threads: threads) } }
    }

    /// 2×2 stride-2 unpadded average pooling (LeNet's): (x00 + x01 + x10 + x11) / 4 in `Fast.avgPool2d`'s order,
    /// 16 outputs at a time; planes split over the workers.
    static func avgPool2x2(_ g: Pool2dGeometry, _ x: [Float]) -> [Float] {
        if trainFastAvgPool2Backward { return avgPool2x2C(g, x) }
        let outPlane = g.outH * g.outW
        return x.withUnsafeBufferPointer { xb in
            output(g.planes * outPlane) { yp in
                let xs = SendConstPtr(xb.baseAddress!), ys = SendPtr(yp)
                Fast.parallelFor(g.planes, threads: threads, grain: Swift.max(1, 8192 / Swift.max(1, outPlane))) { r in
                    for p in r {
                        let plane = xs.p + p * g.inH * g.inW, out = ys.p + p * outPlane
                        for oy in 0..<g.outH {
                            let r0 = plane + 2 * oy * g.inW, r1 = r0 + g.inW, o = out + oy * g.outW
                            var ox = 0
                            while ox + 16 <= g.outW {
                                let a = UnsafeRawPointer(r0 + 2 * ox).loadUnaligned(as: SIMD32<Float>.self)
                                let b = UnsafeRawPointer(r1 + 2 * ox).loadUnaligned(as: SIMD32<Float>.self)
                                let v = (((a.evenHalf + a.oddHalf) + b.evenHalf) + b.oddHalf) / 4
                                UnsafeMutableRawPointer(o + ox).storeBytes(of: v, as: SIMD16<Float>.self)
                                ox += 16
                            }
                            while ox < g.outW {
                                o[ox] = (((r0[2 * ox] + r0[2 * ox + 1]) + r1[2 * ox]) + r1[2 * ox + 1]) / 4
                                ox += 1
                            }
                        }
                    }
                }
            }
        }
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

    /// Max pooling and, per output, the flat input index of its maximum, in one pass: the first window element
    /// (row-major) equal to the maximum, or the first NaN (NaN propagates, as in `Fast.maxPool2d`); -1 and -inf
    /// for an empty window. Planes are split over the workers.
    static func maxPool2dWithArgmax(_ g: Pool2dGeometry, _ x: [Float]) -> ([Float], [Int32]) {
        let outPlane = g.outH * g.outW, count = g.planes * outPlane
        var am = [Int32](unsafeUninitializedCapacity: count) { _, n in n = count }
        let xTaps = (0..<g.outW).map { tapRange(base: $0 * g.strideW - g.padLeft, kernel: g.kW, dil: g.dilW, lo: 0, hi: g.inW) }
        // Output columns oxA..<oxB have their whole window inside the row.
        let inside = xTaps.indices.filter { xTaps[$0] == 0..<g.kW }
        let oxA = inside.first ?? 0, oxB = inside.isEmpty ? 0 : inside.last! + 1
        let y = output(count) { yp in
            x.withUnsafeBufferPointer { xb in am.withUnsafeMutableBufferPointer { ab in
                let xs = SendConstPtr(xb.baseAddress!), ys = SendPtr(yp), ams = UnsafeSendableBox(ab.baseAddress!)
                Fast.parallelFor(g.planes, threads: threads, grain: Swift.max(1, 4096 / Swift.max(1, outPlane * g.kH * g.kW))) { r in
                    let am = ams.value
                    for p in r {
                        let base = p * g.inH * g.inW
                        let plane = xs.p + base
                        for oy in 0..<g.outH {
                            let by = oy * g.strideH - g.padTop
                            let yTaps = tapRange(base: by, kernel: g.kH, dil: g.dilH, lo: 0, hi: g.inH)
                            let fullRows = yTaps.count == g.kH
                            for ox in 0..<g.outW {
                                let bx = ox * g.strideW - g.padLeft
                                if fullRows && ox >= oxA && ox < oxB {
                                    // Whole window inside: no tap ranges, branch-free selection.
                                    let w0 = by * g.inW + bx
                                    var i0 = w0
                                    var m = plane[w0], idx = w0
                                    for _ in 0..<g.kH {
                                        var i = i0
                                        for _ in 0..<g.kW {
                                            let v = plane[i]
                                            let better = v > m || (v != v && m == m)
                                            m = better ? v : m
                                            idx = better ? i : idx
                                            i += g.dilW
                                        }
                                        i0 += g.dilH * g.inW
                                    }
                                    let o = p * outPlane + oy * g.outW + ox
                                    ys.p[o] = m
                                    am[o] = Int32(base + idx)
                                    continue
                                }
                                var m = -Float.infinity, idx = -1
                                for ky in yTaps {
                                    let row = (by + ky * g.dilH) * g.inW + bx
                                    for kx in xTaps[ox] {
                                        let i = row + kx * g.dilW
                                        let v = plane[i]
                                        if idx < 0 || v > m || (v != v && m == m) { m = v; idx = i }
                                    }
                                }
                                let o = p * outPlane + oy * g.outW + ox
                                ys.p[o] = m
                                am[o] = idx < 0 ? -1 : Int32(base + idx)
                            }
                        }
                    }
                }
            } }
        }
        return (y, am)
    }
}
