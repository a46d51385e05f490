import CGemm
import Foundation
import XCTest
@testable import Zoo

/// The per-tap GEMM training convolutions (TapGemm.swift) against the plain references (`Reference.conv2d`,
/// `referenceConv2dBackward`): small planes with symmetric and one-sided padding, kernels larger than the plane,
/// several K blocks, 1–3 workers, every GEMM kernel level the CPU has.
final class TapGemmTests: XCTestCase {
    /// (n, c, h, w, o, kernel, stride, padding, bias)
    let cases: [(Int, Int, Int, Int, Int, [Int], [Int], Padding2D, Bool)] = [
        (5, 16, 3, 3, 24, [3, 3], [1, 1], Padding2D(1), true),                                    // resnet18 layer4 at 96², scaled down
        (3, 300, 3, 3, 17, [3, 3], [1, 1], Padding2D(1), false),                                  // K over two KC blocks, M not a panel multiple
        (4, 20, 2, 3, 33, [3, 3], [1, 1], Padding2D(top: 1, left: 2, bottom: 1, right: 0), true), // one-sided padding, 2×3 plane
        (2, 18, 4, 4, 16, [5, 5], [1, 1], Padding2D(2), true),                                    // 5×5 on a 4×4 plane
        (1, 16, 1, 1, 16, [3, 3], [1, 1], Padding2D(1), false),                                   // 1×1 plane: only the centre tap
        (4, 16, 6, 6, 24, [3, 3], [2, 2], Padding2D(1), true),                                    // layer4.0.conv1 at 96², scaled down
        (3, 17, 7, 5, 16, [3, 3], [2, 1], Padding2D(top: 1, left: 0, bottom: 1, right: 2), false), // odd sizes, stride 2 × 1
    ]

    func testSelectionBySharedOfPadding() {
        func geometry(_ h: Int) -> ConvGeometry {
            ConvGeometry(n: 32, c: 512, h: h, w: h, attrs: Conv2dAttrs(inChannels: 512, outChannels: 512, kernel: [3, 3], stride: [1, 1],
                                                                       padding: Padding2D(1), dilation: [1, 1], groups: 1, bias: false))
        }
        XCTAssertEqual(TapGemm.usefulFraction(geometry(3)), 49.0 / 81.0, accuracy: 1e-12)
        XCTAssertEqual(TapGemm.usefulFraction(geometry(6)), 256.0 / 324.0, accuracy: 1e-12)
        XCTAssertTrue(TapGemm.applies(geometry(3)))
        XCTAssertFalse(TapGemm.applies(geometry(6)))
        let saved = TapGemm.maxUsefulStrided
        defer { TapGemm.maxUsefulStrided = saved }
        TapGemm.maxUsefulStrided = 1
        for (n, c, h, w, o, k, s, p, bias) in cases {
            let g = ConvGeometry(n: n, c: c, h: h, w: w, attrs: Conv2dAttrs(inChannels: c, outChannels: o, kernel: k, stride: s, padding: p,
                                                                            dilation: [1, 1], groups: 1, bias: bias))
            XCTAssertTrue(TapGemm.applies(g), "\(n) \(c) \(h)×\(w) \(k) \(s)")
            // the counted share equals the positions the taps actually use
            let used = TapGemm.positions(g).reduce(0) { $0 + $1.output.count }
            XCTAssertEqual(TapGemm.usefulFraction(g), Double(used) / Double(k[0] * k[1] * g.plane), accuracy: 1e-12)
        }
        // a strided 1×1 convolution never (no padding to skip)
        XCTAssertFalse(TapGemm.applies(ConvGeometry(n: 2, c: 16, h: 6, w: 6, attrs: Conv2dAttrs(inChannels: 16, outChannels: 16, kernel: [1, 1],
            stride: [2, 2], padding: Padding2D(0), dilation: [1, 1], groups: 1, bias: false))))
    }

    func testForwardAndBackwardMatchReference() {
        var rng = SeededRandom(seed: 23)
        let best = Fast.gemmLevel, saved = TapGemm.maxUsefulStrided
        defer { _ = zoo_gemm_select(Int32(best)); TapGemm.maxUsefulStrided = saved }
        TapGemm.maxUsefulStrided = 1
        for (ci, (n, c, h, w, o, k, s, p, bias)) in cases.enumerated() {
            let attrs = Conv2dAttrs(inChannels: c, outChannels: o, kernel: k, stride: s, padding: p, dilation: [1, 1], groups: 1, bias: bias)
            let g = ConvGeometry(n: n, c: c, h: h, w: w, attrs: attrs)
            let geo = Conv2dGeometry(batch: n, inC: c, inH: h, inW: w, outC: o, outH: g.oh, outW: g.ow, kH: k[0], kW: k[1], strideH: s[0], strideW: s[1],
                                     padTop: p.top, padLeft: p.left, dilH: 1, dilW: 1, groups: 1)
            let x = randoms(n * c * h * w, &rng), wt = randoms(o * c * k[0] * k[1], &rng), dy = randoms(n * o * g.plane, &rng)
            let b: [Float]? = bias ? randoms(o, &rng) : nil
            let refY = referenceConv2d(geo, x: x, w: wt, b: b, act: .none)
            let ref = referenceConv2dBackward(x: x, weight: wt, dy: dy, geometry: g, hasBias: bias, needInput: true, needParams: true)
            for level in 0...best {
                _ = zoo_gemm_select(Int32(level))
                for threads in [1, 2, 3] {
                    let label = "case \(ci), level \(level), \(threads) threads"
                    let y = trainConv2dForward(x: x, weight: wt, bias: b, geometry: g, threads: threads)
                    XCTAssertLessThan(maxRel(y, refY), 1e-5, label)
                    XCTAssertLessThan(maxRel(TapGemm.forward(x: x, weight: wt, bias: b, geometry: g, threads: threads), refY), 1e-5, label)
                    XCTAssertLessThan(maxRel(TapGemm.inputGradient(dy: dy, weight: wt, geometry: g, threads: threads), ref.dx), 1e-5, label)
                    XCTAssertLessThan(maxRel(TapGemm.weightGradient(x: x, dy: dy, geometry: g, threads: threads), ref.dw), 1e-5, label)
                    assertConvBackwardMatches(x: x, weight: wt, dy: dy, geometry: g, hasBias: bias, threads: threads, ref: ref, label: label)
                }
            }
        }
    }

    /// With the switch off, the same convolutions take im2col + GEMM and still match (the A/B path stays correct).
    func testSwitchedOffMatchesReference() {
        var rng = SeededRandom(seed: 29)
        let saved = TapGemm.enabled
        defer { TapGemm.enabled = saved }
        TapGemm.enabled = false
        let (n, c, h, w, o, k, _, p, bias) = cases[0]
        let g = ConvGeometry(n: n, c: c, h: h, w: w, attrs: Conv2dAttrs(inChannels: c, outChannels: o, kernel: k, stride: [1, 1], padding: p,
                                                                        dilation: [1, 1], groups: 1, bias: bias))
        XCTAssertFalse(TapGemm.applies(g))
        let x = randoms(n * c * h * w, &rng), wt = randoms(o * c * 9, &rng), dy = randoms(n * o * g.plane, &rng)
        let ref = referenceConv2dBackward(x: x, weight: wt, dy: dy, geometry: g, hasBias: bias, needInput: true, needParams: true)
        assertConvBackwardMatches(x: x, weight: wt, dy: dy, geometry: g, hasBias: bias, threads: 2, ref: ref, label: "im2col")
    }
}
