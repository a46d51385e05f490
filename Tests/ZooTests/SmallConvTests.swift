import CZooKernels
import Foundation
import XCTest
@testable import Zoo

/// The direct small-channel training convolutions (SmallConv, C kernels zoo_tc_*: AVX-512F and portable bodies) and
/// the vector sigmoid against the plain references (`Reference.conv2d`, `referenceConv2dBackward`, Double sigmoid).
final class SmallConvTests: XCTestCase {

    // (n, c, h, w, o, kernel, padding, bias)
    let cases: [(Int, Int, Int, Int, Int, [Int], Padding2D, Bool)] = [
        (5, 1, 28, 28, 6, [5, 5], Padding2D(2), true),                                   // LeNet conv 1
        (19, 6, 14, 14, 16, [5, 5], Padding2D(0), true),                                 // LeNet conv 2, several chunks
        (3, 4, 9, 7, 7, [3, 3], Padding2D(1), false),                                    // odd output count (7)
        (2, 3, 11, 10, 5, [5, 3], Padding2D(top: 2, left: 0, bottom: 1, right: 2), true), // asymmetric
        (1, 16, 6, 5, 32, [3, 3], Padding2D(top: 0, left: 2, bottom: 2, right: 0), true), // widest, one image
        (4, 2, 13, 3, 9, [7, 7], Padding2D(3), true),                                     // 49 taps, narrow
        (3, 5, 4, 4, 3, [1, 1], Padding2D(0), false),                                     // 1×1
        (2, 3, 5, 6, 4, [3, 5], Padding2D(top: 3, left: 5, bottom: 3, right: 5), true),   // padding ≥ kernel
        (3, 2, 28, 28, 16, [5, 5], Padding2D(2), true),                                  // channel vectors, wide rows
        (2, 3, 9, 7, 13, [3, 3], Padding2D(1), true),                                     // channel vectors, 13 lanes
    ]

    func testSmallConvMatchesReference() {
        forEachSIMDLevel { _ in
            var rng = SeededRandom(seed: 23)
            let saved = (SmallConv.enabled, SmallConv.portable, SmallConv.channelVectors)
            defer { (SmallConv.enabled, SmallConv.portable, SmallConv.channelVectors) = saved }
            for (ci, t) in cases.enumerated() {
                let (n, c, h, w, o, k, p, bias) = t
                let attrs = Conv2dAttrs(inChannels: c, outChannels: o, kernel: k, stride: [1, 1], padding: p, dilation: [1, 1], groups: 1, bias: bias)
                let g = ConvGeometry(n: n, c: c, h: h, w: w, attrs: attrs)
                SmallConv.enabled = true
                XCTAssertTrue(SmallConv.applies(g), "case \(ci)")
                let x = randoms(n * c * h * w, &rng), wt = randoms(o * c * k[0] * k[1], &rng), dy = randoms(n * o * g.oh * g.ow, &rng)
                let b = bias ? randoms(o, &rng) : nil
                let geo = Conv2dGeometry(conv: attrs, input: [n, c, h, w])
                var ref = [Float](repeating: 0, count: n * o * g.oh * g.ow)
                x.withUnsafeBufferPointer { xp in wt.withUnsafeBufferPointer { wp in ref.withUnsafeMutableBufferPointer { rp in
                    SharedForward.withOptional(b) { bp in Reference.conv2d(geo, x: xp.baseAddress!, w: wp.baseAddress!, b: bp, y: rp.baseAddress!) }
                } } }
                let refB = referenceConv2dBackward(x: x, weight: wt, dy: dy, geometry: g, hasBias: bias, needInput: true, needParams: true)
                // direct AVX-512 (where the CPU has it) and portable C, channel-vectorized (≥ 12 outputs) or flat, and the
                // im2col + GEMM path they replace
                for (enabled, portable, cvec) in [(true, false, true), (true, true, true), (true, false, false), (true, true, false), (false, false, false)] {
                    if !cvec && o < 12 && enabled && portable { continue }   // same as the cvec run
                    SmallConv.enabled = enabled; SmallConv.portable = portable; SmallConv.channelVectors = cvec
                    XCTAssertEqual(SmallConvPlan(g).channelVectors, enabled && cvec && o >= 12)
                    let label = "case \(ci) direct \(enabled) portable \(portable) cvec \(cvec)"
                    for (threads, perThread) in [(1, 2), (2, 2), (3, 2), (2, 1), (2, 5)] {
                        SmallConv.tasksPerThread = perThread
                        defer { SmallConv.tasksPerThread = 2 }
                        let y = trainConv2dForward(x: x, weight: wt, bias: b, geometry: g, threads: threads)
                        XCTAssertLessThan(maxRel(y, ref), 1e-5, "\(label) forward, \(threads) threads")
                        assertConvBackwardMatches(x: x, weight: wt, dy: dy, geometry: g, hasBias: bias, threads: threads, ref: refB, label: label,
                                                  dbNilWithoutParams: true)
                    }
                }
            }
        }
    }

    func testSmallConvScope() {
        let saved = SmallConv.enabled
        defer { SmallConv.enabled = saved }
        SmallConv.enabled = true
        func geo(_ c: Int, _ o: Int, _ k: Int, stride: Int = 1, dil: Int = 1, groups: Int = 1) -> ConvGeometry {
            ConvGeometry(n: 2, c: c, h: 12, w: 12, attrs: Conv2dAttrs(inChannels: c, outChannels: o, kernel: [k, k], stride: [stride, stride],
                                                                   padding: Padding2D(1), dilation: [dil, dil], groups: groups, bias: false))
        }
        XCTAssertTrue(SmallConv.applies(geo(6, 16, 5)))
        XCTAssertFalse(SmallConv.applies(geo(6, 16, 5, stride: 2)))
        XCTAssertFalse(SmallConv.applies(geo(6, 16, 3, dil: 2)))
        XCTAssertFalse(SmallConv.applies(geo(8, 16, 3, groups: 2)))
        XCTAssertFalse(SmallConv.applies(geo(64, 64, 3)))   // ResNet-sized layers keep im2col/Winograd
        XCTAssertFalse(SmallConv.applies(geo(3, 64, 3)))    // VGG's first layer
        SmallConv.enabled = false
        XCTAssertFalse(SmallConv.applies(geo(6, 16, 5)))
    }

    func testSigmoidMatchesDoubleReference() {
        forEachSIMDLevel { _ in
            var xs: [Float] = [0, -0, 1e-30, -1e-30, 1e-7, -1e-7, 87, -87, 88.5, -88.5, 89, -89, 103, -103, 104, -104, 105, -105,
                               200, -200, 1e30, -1e30, .infinity, -.infinity, .greatestFiniteMagnitude, -.greatestFiniteMagnitude]
            var rng = SeededRandom(seed: 5)
            for _ in 0..<4000 { xs.append((rng.nextFloat() * 2 - 1) * 30) }
            for i in 0..<2000 { xs.append(Float(i - 1000) * 0.0173) }
            xs.append(.nan)
            for count in [xs.count, 1, 15, 16, 17, 33] {
                let input = Array(xs.prefix(count))
                for portable in [false, true] {
                    var y = [Float](repeating: -1, count: input.count + 3)   // nothing written past the end
                    input.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { zoo_sigmoid(xp.baseAddress!, $0.baseAddress!, input.count, portable ? 1 : 0) } }
                    XCTAssertEqual(Array(y[input.count...]), [-1, -1, -1])
                    for (i, v) in input.enumerated() {
                        let r = 1 / (1 + Foundation.exp(-Double(v)))
                        if v.isNaN { XCTAssertTrue(y[i].isNaN); continue }
                        if r < 1e-37 { XCTAssertLessThanOrEqual(Double(y[i]), 1e-37, "x \(v)"); XCTAssertGreaterThanOrEqual(y[i], 0); continue }
                        XCTAssertLessThanOrEqual(abs(Double(y[i]) - r) / r, 4e-7, "x \(v) portable \(portable): \(y[i]) vs \(r)")
                    }
                }
            }
            // the training engine's sigmoid node (split over workers) gives the same values as the kernel on one thread
            let big = (0..<100_003).map { Float($0 % 997) * 0.05 - 25 }
            var one = [Float](repeating: 0, count: big.count)
            big.withUnsafeBufferPointer { xp in one.withUnsafeMutableBufferPointer { zoo_sigmoid(xp.baseAddress!, $0.baseAddress!, big.count, 0) } }
            XCTAssertEqual(SharedForward.sigmoid(big), one)
        }
    }

    func testAvgPool2x2BackwardMatchesWindowLoop() {
        forEachSIMDLevel { _ in
            var rng = SeededRandom(seed: 9)
            let saved = trainFastAvgPool2Backward
            defer { trainFastAvgPool2Backward = saved }
            for shape in [[3, 6, 28, 28], [2, 3, 7, 37], [1, 2, 5, 34], [2, 1, 2, 2], [1, 1, 3, 3]] {
                let attrs = Pool2dAttrs(kernel: [2, 2], stride: [2, 2])
                let g = PoolGeometry(shape, attrs)
                let dy = randoms(g.n * g.c * g.oh * g.ow, &rng)
                // each input element gets dy / 4 of its window; rows/columns outside every window 0
                var ref = [Float](repeating: 0, count: shape.reduce(1, *))
                for p in 0..<(g.n * g.c) { for oy in 0..<g.oh { for ox in 0..<g.ow { for a in 0..<2 { for b in 0..<2 {
                    ref[p * g.h * g.w + (2 * oy + a) * g.w + 2 * ox + b] = dy[(p * g.oh + oy) * g.ow + ox] / 4
                } } } } }
                trainFastAvgPool2Backward = true
                for portable in [false, true] {
                    for threads in [1, 2, 3] {
                        XCTAssertEqual(avgPool2x2Backward(dy: dy, g, threads: threads, portable: portable), ref, "\(shape) portable \(portable)")
                    }
                }
                XCTAssertEqual(trainAvgPoolBackward(dy: dy, inputShape: shape, attrs: attrs, threads: 2), ref)
                trainFastAvgPool2Backward = false
                XCTAssertNil(avgPool2x2Backward(dy: dy, g, threads: 1))
                XCTAssertEqual(trainAvgPoolBackward(dy: dy, inputShape: shape, attrs: attrs, threads: 2), ref)
            }
            // forward: the C kernel (AVX-512 and portable) equals the inference kernel bit for bit
            for shape in [[3, 6, 28, 28], [2, 3, 7, 37], [1, 2, 5, 34], [2, 1, 2, 2], [1, 1, 3, 3], [2, 16, 10, 10]] {
                let geo = Pool2dGeometry(pool: Pool2dAttrs(kernel: [2, 2]), input: shape)
                let x = randoms(shape.reduce(1, *), &rng)
                var ref = [Float](repeating: 0, count: geo.planes * geo.outH * geo.outW)
                x.withUnsafeBufferPointer { xp in ref.withUnsafeMutableBufferPointer { Fast.avgPool2d(geo, x: xp.baseAddress!, y: $0.baseAddress!, threads: 1) } }
                XCTAssertEqual(SharedForward.avgPool2x2C(geo, x), ref, "\(shape)")
                XCTAssertEqual(SharedForward.avgPool2x2C(geo, x, portable: true), ref, "\(shape) portable")
            }
            // other poolings are not taken by the fast path
            trainFastAvgPool2Backward = true
            XCTAssertNil(avgPool2x2Backward(dy: [Float](repeating: 0, count: 2 * 9), PoolGeometry([1, 2, 7, 7], Pool2dAttrs(kernel: [3, 3], stride: [2, 2])), threads: 1))
            XCTAssertNil(avgPool2x2Backward(dy: [Float](repeating: 0, count: 2 * 16), PoolGeometry([1, 2, 7, 7], Pool2dAttrs(kernel: [2, 2], stride: [2, 2], ceilMode: true)), threads: 1))
        }
    }

    /// LeNet through the training engine: every fast path of this file on (direct convolutions, channel vectors,
    /// vector sigmoid, fused sigmoid + 2×2 average-pool backward, fused convolution + sigmoid forward) against all of
    /// them off, at the PyTorch fixture's parameters (gradients vs PyTorch: TrainingGradientTests.testLeNetGradientsMatchPyTorch);
    /// the fusions alone change no bit. Input gradients too (the first convolution's dx path).
    func testLeNetEngineFastPathsMatchPlainPaths() throws {
        let f = try TrainFixtures.npz("train/lenet_grads.npz")
        var sd: [String: Tensor] = [:]
        for (k, v) in f where k.hasPrefix("param/") { sd[String(k.dropFirst(6))] = Tensor(shape: v.shape, data: v.values) }
        let model = try Model.load(graph: TrainFixtures.lenet(), stateDict: sd)
        let x = Tensor(shape: f["input"]!.shape, data: f["input"]!.values)
        let saved = (SmallConv.enabled, SmallConv.channelVectors, SharedForward.fastSigmoid, trainFuseSigmoidPoolBackward, trainFastAvgPool2Backward)
        defer { (SmallConv.enabled, SmallConv.channelVectors, SharedForward.fastSigmoid, trainFuseSigmoidPoolBackward, trainFastAvgPool2Backward) = saved }
        func run(_ fast: Bool, fuse: Bool) throws -> (Float, Gradients) {
            (SmallConv.enabled, SmallConv.channelVectors, SharedForward.fastSigmoid, trainFastAvgPool2Backward) = (fast, fast, fast, fast)
            trainFuseSigmoidPoolBackward = fuse
            var engine = TrainingEngine(model: model)
            engine.inputRequiresGrad = true
            var rng = SeededRandom(seed: 0)
            let tape = try engine.forward(x, training: true, rng: &rng)
            let (loss, dl) = Loss.crossEntropy(logits: tape.output, labels: f["labels"]!.integers!, labelSmoothing: 0.1)
            return (loss, try engine.backward(tape, gradOutput: dl))
        }
        let (lossPlain, plain) = try run(false, fuse: false)
        let (lossFast, fast) = try run(true, fuse: true)
        let (lossUnfused, unfused) = try run(true, fuse: false)
        XCTAssertEqual(lossFast, lossUnfused)
        XCTAssertEqual(lossFast, lossPlain, accuracy: 1e-6)
        XCTAssertEqual(Set(fast.parameters.keys), Set(plain.parameters.keys))
        XCTAssertEqual(fast.parameters.count, 10)
        for (k, v) in plain.parameters {
            XCTAssertLessThanOrEqual(TrainFixtures.relErr(fast.parameters[k]!, v), 1e-5, k)
            XCTAssertEqual(fast.parameters[k]!, unfused.parameters[k]!, k)
        }
        XCTAssertLessThanOrEqual(TrainFixtures.relErr(fast.input!, plain.input!), 1e-5)
        XCTAssertEqual(fast.input!, unfused.input!)
    }

    /// Image stems (few input channels, up to 7×7) run the training forward on the inference tap-row kernel instead of
    /// the batched im2col + GEMM; both against the plain reference, through a training engine's forward, frozen or not.
    func testImageStemTrainingForwardOnTapKernel() throws {
        let attrs = Conv2dAttrs(inChannels: 3, outChannels: 20, kernel: [7, 7], stride: [2, 2], padding: Padding2D(3), dilation: [1, 1],
                                groups: 1, bias: true)
        let g = Graph(name: "stem", inputShape: [3, 27, 30], output: "c", nodes: [
            Node(name: "c", op: .conv2d(attrs), inputs: ["input"], output: "c"),
        ])
        var rng = SeededRandom(seed: 31)
        let n = 3
        let x = Tensor(shape: [n, 3, 27, 30], data: randoms(n * 3 * 27 * 30, &rng))
        let model = Model.initialized(graph: g, seed: 5)
        let geo = Conv2dGeometry(conv: attrs, input: [n, 3, 27, 30])
        var ref = [Float](repeating: 0, count: n * 20 * geo.outH * geo.outW)
        let w = model.tensors["c.weight"]!.data, b = model.tensors["c.bias"]!.data
        x.data.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in
            ref.withUnsafeMutableBufferPointer { rp in Reference.conv2d(geo, x: xp.baseAddress!, w: wp.baseAddress!, b: bp.baseAddress!, y: rp.baseAddress!) }
        } } }
        let cg = ConvGeometry(n: n, c: 3, h: 27, w: 30, attrs: attrs)
        let saved = trainTapStems
        defer { trainTapStems = saved }
        for tap in [true, false] {
            trainTapStems = tap
            XCTAssertEqual(trainConvForwardBatched(cg, threads: 2), !(tap && Fast.tapConvApplies(geo, act: .none)))
            for frozen in [Set<String>(), ["c.weight", "c.bias"]] {
                var engine = TrainingEngine(model: model, frozen: frozen)
                for _ in 0..<2 {   // the frozen weight cache's first and second use
                    let y = try engine.forward(x, training: true, rng: &rng).output
                    XCTAssertLessThan(maxRel(y.data, ref), 1e-5, "tap \(tap) frozen \(frozen.count)")
                }
            }
        }
    }
}
