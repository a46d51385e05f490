import Foundation
import XCTest
@testable import Zoo

final class TrainingGradientTests: XCTestCase {
    /// Checks input and parameter gradients of `graph` against central finite differences of
    /// loss = sum(y * r) for a fixed random r, in training or eval mode.
    func gradCheck(_ graph: Graph, batch: Int = 2, training: Bool = false, seed: UInt64 = 1, tol: Float = 2e-2, kinks: [Float] = [],
                   file: StaticString = #filePath, line: UInt = #line) throws {
        var rng = SeededRandom(seed: seed)
        var model = Model.initialized(graph: graph, seed: seed)
        for k in model.tensors.keys.sorted() where k.hasSuffix("weight") || k.hasSuffix("bias") || k.hasSuffix("value") {
            // move BatchNorm affine parameters away from 1/0
            if graph.nodes.contains(where: { if case .batchNorm2d = $0.op { return k.hasPrefix($0.name + ".") }; return false }) {
                model.tensors[k]!.data = model.tensors[k]!.data.map { _ in rng.nextFloat() + 0.5 }
            }
        }
        for k in model.tensors.keys where k.hasSuffix("running_var") { model.tensors[k]!.data = model.tensors[k]!.data.map { _ in rng.nextFloat() + 0.5 } }
        for k in model.tensors.keys where k.hasSuffix("running_mean") { model.tensors[k]!.data = model.tensors[k]!.data.map { _ in rng.nextFloat() - 0.5 } }
        let xShape = [batch] + graph.inputShape
        var x = Tensor(zeros: xShape)
        for i in 0..<x.count {
            x.data[i] = rng.nextNormal()
            // keep inputs away from points where the op is not differentiable
            for k in kinks where abs(x.data[i] - k) < 0.05 { x.data[i] = k + (x.data[i] < k ? -0.1 : 0.1) }
        }
        var engine = TrainingEngine(model: model)
        engine.inputRequiresGrad = true
        let outShape = try graph.outputShape(batch: batch)
        let r = (0..<outShape.reduce(1, *)).map { _ in rng.nextNormal() }
        func loss(_ m: Model, _ x: Tensor) throws -> Double {
            var e = TrainingEngine(model: m)
            var dr = SeededRandom(seed: 99)
            let y = try e.forward(x, training: training, rng: &dr, keepTape: false).output
            return zip(y.data, r).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        var dr = SeededRandom(seed: 99)
        let tape = try engine.forward(x, training: training, rng: &dr)
        let grads = try engine.backward(tape, gradOutput: Tensor(shape: outShape, data: r))
        let h: Float = 1e-2
        func check(_ name: String, _ analytic: [Float], _ perturb: (Int, Float) throws -> Double) rethrows {
            XCTAssertFalse(analytic.isEmpty, name, file: file, line: line)
            let n = analytic.count
            let picks = n <= 40 ? Array(0..<n) : (0..<40).map { _ in Int(rng.next() % UInt64(n)) }
            var maxErr: Float = 0, scale: Float = 1e-3
            for i in picks {
                let num = Float((try perturb(i, h) - perturb(i, -h)) / Double(2 * h))
                maxErr = max(maxErr, abs(num - analytic[i])); scale = max(scale, abs(num))
            }
            XCTAssertLessThanOrEqual(maxErr / scale, tol, "\(graph.nodes.map(\.op.typeName)) \(name): \(maxErr) vs scale \(scale)", file: file, line: line)
        }
        try check("input", grads.input ?? []) { i, d in var xx = x; xx.data[i] += d; return try loss(model, xx) }
        for spec in graph.parameterSpecs where spec.trainable {
            try check(spec.key, grads.parameters[spec.key] ?? []) { i, d in
                var m = model; m.tensors[spec.key]!.data[i] += d; return try loss(m, x)
            }
        }
    }

    func single(_ op: Op, _ shape: [Int]) -> Graph {
        Graph(name: "t", inputShape: shape, output: "n", nodes: [Node(name: "n", op: op, inputs: ["input"])])
    }

    func testConvGradients() throws {
        try gradCheck(single(.conv2d(.init(inChannels: 3, outChannels: 4, kernel: [3, 3], padding: .init(1))), [3, 5, 5]))
        try gradCheck(single(.conv2d(.init(inChannels: 4, outChannels: 6, kernel: [3, 2], stride: [2, 1],
                                            padding: Padding2D(top: 1, left: 0, bottom: 2, right: 1), dilation: [1, 2], groups: 2)), [4, 7, 6]))
        try gradCheck(single(.conv2d(.init(inChannels: 4, outChannels: 4, kernel: [3, 3], padding: .init(1), groups: 4, bias: false)), [4, 5, 5]))
    }
    func testConvTransposeGradients() throws {
        try gradCheck(single(.convTranspose2d(.init(inChannels: 4, outChannels: 6, kernel: [3, 3], stride: [2, 2], padding: .init(1),
                                                     outputPadding: [1, 1], groups: 2)), [4, 4, 3]))
        try gradCheck(single(.convTranspose2d(.init(inChannels: 3, outChannels: 2, kernel: [2, 3], stride: [1, 2], dilation: [2, 1], bias: false)), [3, 3, 4]))
    }
    func testLinearGradient() throws { try gradCheck(single(.linear(.init(inFeatures: 7, outFeatures: 5)), [7])) }
    func testBatchNormGradients() throws {
        try gradCheck(single(.batchNorm2d(.init(features: 3)), [3, 4, 4]), batch: 3, training: true)
        try gradCheck(single(.batchNorm2d(.init(features: 3)), [3, 4, 4]), batch: 3, training: false)
    }
    func testActivationGradients() throws {
        for op in [Op.relu, .relu6, .clip(min: -0.5, max: 0.5), .sigmoid, .tanh, .softmax(axis: 1), .identity, .flatten(startDim: 1),
                   .reshape(shape: [-1, 2]), .lrn(.init(size: 3, alpha: 0.1, beta: 0.75, k: 1)), .pad(Padding2D(top: 1, left: 0, bottom: 0, right: 2), value: 0.5)] {
            try gradCheck(single(op, [4, 3, 3]), kinks: [0, -0.5, 0.5, 6])
        }
    }
    func testPoolGradients() throws {
        try gradCheck(single(.maxPool2d(.init(kernel: [3, 3], stride: [2, 2], padding: .init(1), ceilMode: true)), [2, 6, 6]))
        try gradCheck(single(.avgPool2d(.init(kernel: [3, 3], stride: [2, 2], padding: .init(1), ceilMode: true, countIncludePad: true)), [2, 6, 6]))
        try gradCheck(single(.avgPool2d(.init(kernel: [3, 3], stride: [2, 2], padding: .init(1), countIncludePad: false)), [2, 7, 7]))
        try gradCheck(single(.adaptiveAvgPool2d(output: [3, 2]), [2, 7, 5]))
        try gradCheck(single(.globalMaxPool, [3, 4, 4]))
    }
    /// ReLU → max pool: the fused backward (the pool scatters dy zeroed where its output is 0) against the finite
    /// differences, and bit for bit against the two separate passes, with exact ±0 and NaN among the inputs.
    func testReluMaxPoolBackwardFused() throws {
        let g = Graph(name: "t", inputShape: [3, 7, 7], output: "p", nodes: [
            Node(name: "r", op: .relu, inputs: ["input"]),
            Node(name: "p", op: .maxPool2d(.init(kernel: [3, 3], stride: [2, 2], padding: .init(1))), inputs: ["r"]),
        ])
        let saved = trainFuseReluPoolBackward
        defer { trainFuseReluPoolBackward = saved }
        trainFuseReluPoolBackward = true
        try gradCheck(g, kinks: [0])
        var rng = SeededRandom(seed: 17)
        var x = Tensor(zeros: [2, 3, 7, 7])
        for i in 0..<x.count { x.data[i] = rng.nextNormal() }
        for i in stride(from: 0, to: x.count, by: 7) { x.data[i] = 0 }
        for i in stride(from: 3, to: x.count, by: 11) { x.data[i] = -0.0 }
        // a whole negative plane (every pooled output 0) and NaN
        for i in 49..<98 { x.data[i] = -abs(x.data[i]) - 0.1 }
        x.data[150] = .nan
        let outShape = try g.outputShape(batch: 2)
        let r = Tensor(shape: outShape, data: (0..<outShape.reduce(1, *)).map { _ in rng.nextNormal() })
        var inputs: [[UInt32]] = []
        for fused in [true, false] {
            trainFuseReluPoolBackward = fused
            var engine = TrainingEngine(model: Model.initialized(graph: g))
            engine.inputRequiresGrad = true
            var dr = SeededRandom(seed: 1)
            let tape = try engine.forward(x, training: true, rng: &dr)
            let grads = try engine.backward(tape, gradOutput: r)
            let d = try XCTUnwrap(grads.input)
            XCTAssertEqual(d.count, x.count)
            inputs.append(d.map(\.bitPattern))
        }
        XCTAssertEqual(inputs[0], inputs[1])
        XCTAssertTrue(inputs[0].contains { Float(bitPattern: $0) != 0 })
        XCTAssertTrue(inputs[0][49..<98].allSatisfy { Float(bitPattern: $0) == 0 })
    }
    func testDropoutGradientAndScaling() throws {
        let g = single(.dropout(p: 0.25), [2, 8, 8])
        try gradCheck(g, training: true)
        var e = TrainingEngine(model: Model.initialized(graph: g))
        var rng = SeededRandom(seed: 5)
        let y = try e.forward(Tensor(shape: [4, 2, 8, 8], repeating: 1), training: true, rng: &rng).output
        XCTAssertEqual(Set(y.data), [0, 1 / 0.75])
        let kept = Float(y.data.filter { $0 > 0 }.count) / Float(y.count)
        XCTAssertEqual(kept, 0.75, accuracy: 0.08)
        var rng2 = SeededRandom(seed: 5)
        XCTAssertEqual(try e.forward(Tensor(shape: [4, 2, 8, 8], repeating: 1), training: true, rng: &rng2).output, y)
        XCTAssertEqual(try e.forward(Tensor(shape: [4, 2, 8, 8], repeating: 1), training: false, rng: &rng2).output.data, [Float](repeating: 1, count: 512))
    }
    func testMultiInputGradients() throws {
        // conv branch + identity into Add, Mul and Concat
        let conv = Op.conv2d(.init(inChannels: 2, outChannels: 2, kernel: [1, 1]))
        for join in [Op.add, .mul, .concat(axis: 1)] {
            let g = Graph(name: "t", inputShape: [2, 3, 3], output: "j", nodes: [
                Node(name: "c", op: conv, inputs: ["input"]),
                Node(name: "j", op: join, inputs: ["c", "input"])])
            try gradCheck(g)
        }
        // broadcasting: per-channel constant
        let g = Graph(name: "t", inputShape: [2, 3, 3], output: "j", nodes: [
            Node(name: "k", op: .constant(shape: [2, 1, 1]), inputs: []),
            Node(name: "j", op: .mul, inputs: ["input", "k"])])
        try gradCheck(g)
    }

    func testLeNetGradientsMatchPyTorch() throws {
        let f = try TrainFixtures.npz("train/lenet_grads.npz")
        let graph = TrainFixtures.lenet()
        var sd: [String: Tensor] = [:]
        for (k, v) in f where k.hasPrefix("param/") { sd[String(k.dropFirst(6))] = Tensor(shape: v.shape, data: v.values) }
        var engine = TrainingEngine(model: try Model.load(graph: graph, stateDict: sd))
        var rng = SeededRandom(seed: 0)
        let x = Tensor(shape: f["input"]!.shape, data: f["input"]!.values)
        let tape = try engine.forward(x, training: true, rng: &rng)
        let (loss, dl) = Loss.crossEntropy(logits: tape.output, labels: f["labels"]!.integers!, labelSmoothing: 0.1)
        XCTAssertEqual(loss, f["loss"]!.values[0], accuracy: 1e-5)
        let g = try engine.backward(tape, gradOutput: dl)
        XCTAssertEqual(Set(g.parameters.keys), Set(f.keys.filter { $0.hasPrefix("grad/") }.map { String($0.dropFirst(5)) }))
        for (k, v) in f where k.hasPrefix("grad/") {
            let name = String(k.dropFirst(5))
            XCTAssertLessThanOrEqual(TrainFixtures.relErr(g.parameters[name]!, v.values), 1e-4, name)
            print("lenet grad \(name): rel err \(TrainFixtures.relErr(g.parameters[name]!, v.values))")
        }
    }

    func basicBlock() -> Graph {
        Graph(name: "block", inputShape: [8, 8, 8], output: "relu_out", nodes: [
            Node(name: "conv1", op: .conv2d(.init(inChannels: 8, outChannels: 16, kernel: [3, 3], stride: [2, 2], padding: .init(1), bias: false)), inputs: ["input"]),
            Node(name: "bn1", op: .batchNorm2d(.init(features: 16)), inputs: ["conv1"]),
            Node(name: "relu", op: .relu, inputs: ["bn1"]),
            Node(name: "conv2", op: .conv2d(.init(inChannels: 16, outChannels: 16, kernel: [3, 3], padding: .init(1), bias: false)), inputs: ["relu"]),
            Node(name: "bn2", op: .batchNorm2d(.init(features: 16)), inputs: ["conv2"]),
            Node(name: "downsample.0", op: .conv2d(.init(inChannels: 8, outChannels: 16, kernel: [1, 1], stride: [2, 2], bias: false)), inputs: ["input"]),
            Node(name: "downsample.1", op: .batchNorm2d(.init(features: 16)), inputs: ["downsample.0"]),
            Node(name: "add", op: .add, inputs: ["bn2", "downsample.1"]),
            Node(name: "relu_out", op: .relu, inputs: ["add"]),
        ])
    }

    func testBasicBlockGradientsAndRunningStatsMatchPyTorch() throws {
        let f = try TrainFixtures.npz("train/block_grads.npz")
        var sd: [String: Tensor] = [:]
        for (k, v) in f where k.hasPrefix("param/") { sd[String(k.dropFirst(6))] = Tensor(shape: v.shape, data: v.values) }
        var engine = TrainingEngine(model: try Model.load(graph: basicBlock(), stateDict: sd))
        engine.inputRequiresGrad = true
        var rng = SeededRandom(seed: 0)
        let tape = try engine.forward(Tensor(shape: f["input"]!.shape, data: f["input"]!.values), training: true, rng: &rng)
        XCTAssertLessThanOrEqual(TrainFixtures.relErr(tape.output.data, f["output"]!.values), 1e-5)
        let (loss, dl) = Loss.mse(prediction: tape.output, target: Tensor(shape: f["target"]!.shape, data: f["target"]!.values))
        XCTAssertEqual(loss, f["loss"]!.values[0], accuracy: 1e-5 * f["loss"]!.values[0])
        let g = try engine.backward(tape, gradOutput: dl)
        XCTAssertLessThanOrEqual(TrainFixtures.relErr(g.input!, f["grad_input"]!.values), 1e-4)
        var n = 0
        for (k, v) in f where k.hasPrefix("grad/") {
            let name = String(k.dropFirst(5)); n += 1
            XCTAssertLessThanOrEqual(TrainFixtures.relErr(g.parameters[name]!, v.values), 1e-4, name)
            print("block grad \(name): rel err \(TrainFixtures.relErr(g.parameters[name]!, v.values))")
        }
        XCTAssertEqual(n, 9)
        for (k, v) in f where k.hasPrefix("after/") {
            let name = String(k.dropFirst(6))
            XCTAssertLessThanOrEqual(TrainFixtures.relErr(engine.model.tensors[name]!.data, v.values), 1e-5, name)
        }
    }

    func testFrozenLayersRunNoBackwardBelowLowestTrainable() throws {
        let graph = TrainFixtures.lenet()
        let frozen: Set<String> = ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias"]
        let engine = TrainingEngine(model: Model.initialized(graph: graph), frozen: frozen)
        let need = engine.nodesNeedingBackward()
        XCTAssertEqual(need, [false, false, false, false, false, false, false, false, false, true, true, true])
        var e = engine
        var rng = SeededRandom(seed: 0)
        let tape = try e.forward(Tensor(zeros: [2, 1, 28, 28]), training: true, rng: &rng)
        let g = try e.backward(tape, gradOutput: Tensor(shape: [2, 10], repeating: 1))
        XCTAssertEqual(Set(g.parameters.keys), ["9.weight", "9.bias", "11.weight", "11.bias"])
    }
}

/// The training engine's eval-mode forward equals the inference engine's reference kernels (validated against PyTorch).
final class TrainingForwardVsEngineTests: XCTestCase {
    func compare(_ g: Graph, batch: Int = 2, file: StaticString = #filePath, line: UInt = #line) throws {
        var model = Model.initialized(graph: g, seed: 4)
        var rng = SeededRandom(seed: 8)
        for k in model.tensors.keys.sorted() where k.hasSuffix("running_var") || k.hasSuffix("running_mean") {
            model.tensors[k]!.data = model.tensors[k]!.data.map { _ in rng.nextFloat() + (k.hasSuffix("var") ? 0.5 : -0.5) }
        }
        var x = Tensor(zeros: [batch] + g.inputShape)
        for i in 0..<x.count { x.data[i] = rng.nextNormal() }
        let ref = try Executor(model: model, kernels: .reference, threads: 1).forward(x)
        var e = TrainingEngine(model: model)
        let got = try e.forward(x, training: false, rng: &rng, keepTape: false).output
        XCTAssertEqual(got.shape, ref.shape, file: file, line: line)
        XCTAssertLessThanOrEqual(TrainFixtures.relErr(got.data, ref.data), 1e-5, g.name, file: file, line: line)
    }

    func testCatalogModels() throws {
        try compare(try Catalog.graph("lenet"))
        try compare(try Catalog.graph("resnet18", classes: 10, inputSize: [32]), batch: 1)
        try compare(try Catalog.graph("mobilenet_v2", classes: 10, inputSize: [32]), batch: 1)
        try compare(try Catalog.graph("googlenet", classes: 10, inputSize: [64]), batch: 1)
    }

    func testConvTransposeAndLRN() throws {
        for op in [Op.convTranspose2d(.init(inChannels: 4, outChannels: 6, kernel: [3, 3], stride: [2, 2], padding: .init(1), outputPadding: [1, 1], groups: 2)),
                   .lrn(.init(size: 5, alpha: 1e-2, beta: 0.75, k: 2))] {
            try compare(Graph(name: op.typeName, inputShape: [4, 5, 5], output: "n", nodes: [Node(name: "n", op: op, inputs: ["input"])]))
        }
    }
}
