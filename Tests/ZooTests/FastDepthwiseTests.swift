import Foundation
import XCTest
@testable import Zoo

/// The staged SIMD depthwise kernel (AVX-512F C rows when the CPU has them, Swift SIMD rows; and the direct kernel it replaced) against the plain reference convolution,
/// on plane widths around the 8/16-column blocks, strides 1 and 2, dilation, channel multipliers and uneven padding.
final class FastDepthwiseTests: XCTestCase {
    func random(_ n: Int, _ rng: inout SeededRandom) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 - 1 } }

    func check(batch: Int = 1, c: Int, mult: Int = 1, h: Int, w: Int, k: Int = 3, stride: Int, pad: (Int, Int, Int, Int) = (1, 1, 1, 1),
               dil: Int = 1, bias: Bool = true, act: Activation = .none, threads: Int = 2, line: UInt = #line) {
        let (pt, pl, pb, pr) = pad
        let oh = (h + pt + pb - dil * (k - 1) - 1) / stride + 1, ow = (w + pl + pr - dil * (k - 1) - 1) / stride + 1
        let g = Conv2dGeometry(batch: batch, inC: c, inH: h, inW: w, outC: c * mult, outH: oh, outW: ow, kH: k, kW: k,
                               strideH: stride, strideW: stride, padTop: pt, padLeft: pl, dilH: dil, dilW: dil, groups: c)
        XCTAssertTrue(Fast.depthwiseStagedApplies(g), line: line)
        var rng = SeededRandom(seed: UInt64(c * 1000 + h * 10 + w))
        let x = random(batch * c * h * w, &rng), wt = random(c * mult * k * k, &rng), b = random(c * mult, &rng)
        var want = [Float](repeating: 0, count: batch * c * mult * oh * ow)
        x.withUnsafeBufferPointer { xp in wt.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in
            Reference.conv2d(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bias ? bp.baseAddress! : nil, y: &want)
            let pre = want
            Reference.activation(act, count: want.count, x: pre, y: &want)
            let savedRows = Fast.stagedRowsInC
            defer { Fast.stagedRowsInC = savedRows }
            for (direct, rowsInC) in [(false, true), (false, false), (true, false)] {
                Fast.stagedRowsInC = rowsInC
                var got = [Float](repeating: .nan, count: want.count)
                if direct {
                    Fast.depthwise(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bias ? bp.baseAddress! : nil, act: act, y: &got, threads: threads)
                } else {
                    Fast.depthwiseStaged(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bias ? bp.baseAddress! : nil, act: act, y: &got,
                                         threads: threads)
                }
                let maxDiff = zip(got, want).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(maxDiff, 1e-5, "\(direct ? "direct" : rowsInC ? "staged, C rows" : "staged, Swift rows") C\(c)×\(mult) \(h)×\(w) k\(k) s\(stride) d\(dil)",
                                         line: line)
            }
        } } }
    }

    func testStagedDepthwiseMatchesReference() {
        check(c: 5, h: 112, w: 112, stride: 1, act: .clip(0, 6))
        check(batch: 2, c: 7, h: 112, w: 112, stride: 2, act: .clip(0, 6))
        check(c: 6, h: 56, w: 56, stride: 2, bias: false, act: .relu)
        check(batch: 3, c: 4, h: 7, w: 7, stride: 1, act: .clip(0, 6), threads: 1)
        check(c: 3, h: 14, w: 14, stride: 2)
        check(c: 3, h: 9, w: 17, stride: 1)
        check(c: 3, h: 9, w: 8, stride: 1, pad: (0, 0, 0, 0))
        check(c: 3, h: 10, w: 33, stride: 2, pad: (0, 1, 2, 0))
        check(c: 2, mult: 3, h: 11, w: 19, stride: 1, dil: 2, act: .sigmoid)
        check(c: 2, mult: 2, h: 12, w: 35, k: 5, stride: 2, pad: (2, 2, 2, 2), dil: 1)
        check(c: 2, h: 3, w: 3, k: 5, stride: 1, pad: (1, 2, 1, 2))
        check(c: 2, h: 13, w: 24, k: 3, stride: 2, pad: (3, 3, 3, 3), dil: 3)
    }
}

/// The 1×1 convolution paths (direct column blocks, gathered batch) against the plain reference.
final class FastPointwiseTests: XCTestCase {
    func check(batch: Int, inC: Int, outC: Int, h: Int, w: Int, bias: Bool, act: Activation, threads: Int, line: UInt = #line) {
        let g = Conv2dGeometry(batch: batch, inC: inC, inH: h, inW: w, outC: outC, outH: h, outW: w, kH: 1, kW: 1,
                               strideH: 1, strideW: 1, padTop: 0, padLeft: 0, dilH: 1, dilW: 1, groups: 1)
        var rng = SeededRandom(seed: UInt64(inC * 100 + h))
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 - 1 } }
        let x = random(batch * inC * h * w), wt = random(outC * inC), b = random(outC)
        var want = [Float](repeating: 0, count: batch * outC * h * w)
        x.withUnsafeBufferPointer { xp in wt.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in
            Reference.conv2d(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bias ? bp.baseAddress! : nil, y: &want)
            let pre = want
            Reference.activation(act, count: want.count, x: pre, y: &want)
            let saved = Fast.pointwiseMode
            defer { Fast.pointwiseMode = saved }
            for mode in ["", "gather", "legacy"] {
                Fast.pointwiseMode = mode
                XCTAssertEqual(Fast.pointwiseApplies(g), mode != "legacy", line: line)
                var got = [Float](repeating: .nan, count: want.count)
                var scratch = [Float](repeating: .nan, count: Swift.max(1, Fast.conv2dScratch(g)))
                Fast.conv2d(g, x: xp.baseAddress!, w: wp.baseAddress!, b: bias ? bp.baseAddress! : nil, act: act, y: &got,
                            scratch: &scratch, threads: threads)
                let maxDiff = zip(got, want).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(maxDiff, 1e-5 * Swift.max(1, Float(inC).squareRoot()), "mode '\(mode)' N\(batch) \(inC)→\(outC) \(h)×\(w)",
                                         line: line)
            }
        } } }
    }

    func testPointwisePathsMatchReference() {
        XCTAssertEqual(Fast.pointwiseBlock(Conv2dGeometry(batch: 1, inC: 8, inH: 112, inW: 112, outC: 8, outH: 112, outW: 112, kH: 1, kW: 1,
                                                          strideH: 1, strideW: 1, padTop: 0, padLeft: 0, dilH: 1, dilW: 1, groups: 1),
                                           threads: 2), 1792)
        check(batch: 1, inC: 16, outC: 24, h: 50, w: 50, bias: true, act: .clip(0, 6), threads: 2)
        check(batch: 3, inC: 40, outC: 17, h: 7, w: 7, bias: true, act: .relu, threads: 2)
        check(batch: 8, inC: 24, outC: 30, h: 14, w: 14, bias: false, act: .none, threads: 2)
        check(batch: 2, inC: 33, outC: 9, h: 9, w: 11, bias: true, act: .sigmoid, threads: 1)
        check(batch: 2, inC: 5, outC: 3, h: 1, w: 3, bias: true, act: .clip(-1, 1), threads: 2)
        // 7×7 at batch 1: output channels split over the workers (two blocks of 48 and 33 rows).
        check(batch: 1, inC: 20, outC: 81, h: 7, w: 7, bias: true, act: .clip(0, 6), threads: 2)
    }
}

/// Staged max pooling (and the separable one) against the reference, including NaN propagation and ceil mode.
final class FastMaxPoolTests: XCTestCase {
    func check(planes: Int, h: Int, w: Int, k: [Int], s: [Int], pad: Padding2D = .zero, dil: [Int] = [1, 1], ceil: Bool = false,
               nans: Bool = false, threads: Int = 2, line: UInt = #line) {
        let a = Pool2dAttrs(kernel: k, stride: s, padding: pad, dilation: dil, ceilMode: ceil)
        let g = Pool2dGeometry(pool: a, input: [1, planes, h, w])
        var rng = SeededRandom(seed: UInt64(planes * 100 + h * 7 + w))
        var x = (0..<planes * h * w).map { _ in rng.nextFloat() * 2 - 1 }
        if nans { for i in stride(from: 5, to: x.count, by: 37) { x[i] = .nan } }
        var want = [Float](repeating: 0, count: planes * g.outH * g.outW)
        Reference.maxPool2d(g, x: x, y: &want)
        let saved = (Fast.maxPoolSeparable, Fast.stagedRowsInC)
        defer { (Fast.maxPoolSeparable, Fast.stagedRowsInC) = saved }
        for (separable, rowsInC) in [(false, true), (false, false), (true, false)] {
            Fast.maxPoolSeparable = separable
            Fast.stagedRowsInC = rowsInC
            var got = [Float](repeating: 7, count: want.count)
            Fast.maxPool2d(g, x: x, y: &got, threads: threads)
            let same = zip(got, want).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }
            XCTAssertTrue(same, "\(separable ? "separable" : rowsInC ? "staged, C rows" : "staged, Swift rows") \(h)×\(w) k\(k) s\(s) ceil \(ceil)", line: line)
        }
    }

    func testStagedMaxPoolMatchesReference() {
        check(planes: 3, h: 112, w: 112, k: [3, 3], s: [2, 2], ceil: true)
        check(planes: 5, h: 28, w: 28, k: [3, 3], s: [1, 1], pad: Padding2D(1), nans: true)
        check(planes: 4, h: 14, w: 14, k: [3, 3], s: [2, 2], ceil: true, nans: true, threads: 1)
        check(planes: 4, h: 7, w: 7, k: [3, 3], s: [1, 1], pad: Padding2D(1))
        check(planes: 2, h: 14, w: 14, k: [2, 2], s: [2, 2], ceil: true)
        check(planes: 2, h: 9, w: 35, k: [3, 2], s: [2, 1], pad: Padding2D(top: 1, left: 0, bottom: 1, right: 0))
        check(planes: 2, h: 10, w: 19, k: [3, 3], s: [2, 2], pad: Padding2D(1), dil: [2, 2], ceil: true)
        check(planes: 2, h: 8, w: 7, k: [3, 3], s: [2, 2], pad: Padding2D(top: 0, left: 1, bottom: 1, right: 0))
    }
}
