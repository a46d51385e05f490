import Foundation
import XCTest
@testable import Zoo

/// Whole-graph behaviour of the Executor: a branched graph (add, concat, fused conv+BN+ReLU) against torch,
/// forwardAll, batch handling, the memory plan and input/parameter errors.
final class EngineGraphTests: XCTestCase {
    var branches: EngineOpTests.Case { EngineOpTests.fixture.cases.first { $0.name == "graph_branches" }! }

    func testBranchedGraphMatchesTorchOnBothKernelSets() throws {
        let c = branches
        for kernels in [KernelSet.reference, .fast] {
            let exec = try Executor(model: try c.model(), kernels: kernels)
            let y = try exec.forward(c.input.tensor)
            let err = try XCTUnwrap(EngineOpTests.relativeError(y, c.expected.tensor))
            XCTAssertLessThanOrEqual(err, 1e-4, "\(kernels)")
            // forwardAll runs unfused and must give the same output plus every intermediate value.
            let all = try exec.forwardAll(c.input.tensor)
            XCTAssertEqual(all.count, c.graph.nodes.count + 1)
            XCTAssertEqual(all["cat"]?.shape, [3, 12, 8, 7])
            XCTAssertEqual(all["input"], c.input.tensor)
            let errAll = try XCTUnwrap(EngineOpTests.relativeError(all["prob"]!, c.expected.tensor))
            XCTAssertLessThanOrEqual(errAll, 1e-4, "forwardAll \(kernels)")
        }
    }

    func testFastAndReferenceAgreeOnEveryIntermediateValue() throws {
        let c = branches
        let ref = try Executor(model: try c.model(), kernels: .reference).forwardAll(c.input.tensor)
        let fast = try Executor(model: try c.model(), kernels: .fast).forwardAll(c.input.tensor)
        XCTAssertEqual(Set(ref.keys), Set(fast.keys))
        for (name, r) in ref {
            let err = try XCTUnwrap(EngineOpTests.relativeError(fast[name]!, r), name)
            XCTAssertLessThanOrEqual(err, 1e-5, name)
        }
    }

    func testBatchRowsAreIndependentAndRepeatedRunsAreStable() throws {
        let c = branches
        let exec = try Executor(model: try c.model(), kernels: .fast)
        let x = c.input.tensor
        let full = try exec.forward(x)
        let per = x.count / x.shape[0], outPer = full.count / full.shape[0]
        for n in 0..<x.shape[0] {
            let one = Tensor(shape: [1] + Array(x.shape.dropFirst()), data: Array(x.data[n * per..<(n + 1) * per]))
            let y = try exec.forward(one)
            let err = try XCTUnwrap(EngineOpTests.relativeError(
                y, Tensor(shape: y.shape, data: Array(full.data[n * outPer..<(n + 1) * outPer]))))
            XCTAssertLessThanOrEqual(err, 1e-5)
        }
        XCTAssertEqual(try exec.forward(x), full, "a second run on recycled buffers gives the same bits")
    }

    func testMemoryPlanFreesBuffersAfterTheirLastConsumer() throws {
        var nodes: [Node] = []
        var last = "input"
        for i in 0..<8 {
            nodes.append(Node(name: "s\(i)", op: i % 2 == 0 ? .sigmoid : .tanh, inputs: [last]))
            last = "s\(i)"
        }
        let graph = Graph(name: "chain", inputShape: [4, 64, 64], output: last, nodes: nodes)
        let x = Tensor(shape: [1, 4, 64, 64], data: (0..<16384).map { Float($0 % 97) / 50 - 1 })
        for kernels in [KernelSet.reference, .fast] {
            let exec = try Executor(model: Model(graph: graph, tensors: [:]), kernels: kernels)
            let y = try exec.forward(x)
            XCTAssertEqual(exec.peakLiveFloats, 2 * 16384, "only the current input and output are alive")
            var v = Double(x.data[5])
            for i in 0..<8 { v = i % 2 == 0 ? 1 / (1 + exp(-v)) : Foundation.tanh(v) }
            XCTAssertEqual(Double(y.data[5]), v, accuracy: 1e-6)
            _ = try exec.forwardAll(x)
            XCTAssertEqual(exec.peakLiveFloats, 9 * 16384, "forwardAll keeps every value")
        }
    }

    func testWrongInputShapeNamesExpectedAndGot() throws {
        let exec = try Executor(model: try branches.model())
        XCTAssertThrowsError(try exec.forward(Tensor(zeros: [1, 3, 32, 32]))) { e in
            XCTAssertEqual("\(e)", "bad input: model 'graph_branches' expects input of shape [N, 3, 15, 13], got [1, 3, 32, 32]")
        }
        XCTAssertThrowsError(try exec.forward(Tensor(zeros: [3, 15, 13]))) { e in
            XCTAssertEqual("\(e)", "bad input: model 'graph_branches' expects input of shape [N, 3, 15, 13], got [3, 15, 13]")
        }
    }

    func testMissingAndMisshapenParametersAreRejected() throws {
        var m = try branches.model()
        m.tensors["fc.bias"] = nil
        XCTAssertThrowsError(try Executor(model: m)) { XCTAssertEqual($0 as? ZooError, .missingParameters(["fc.bias"])) }
        m = try branches.model()
        m.tensors["a.conv.weight"] = Tensor(zeros: [8, 8, 3, 1])
        XCTAssertThrowsError(try Executor(model: m)) { e in
            XCTAssertEqual("\(e)", "shape mismatch for parameter 'a.conv.weight': architecture expects [8, 8, 3, 3], file has [8, 8, 3, 1]")
        }
    }

    func testIdentityGraphReturnsInput() throws {
        let g = Graph(name: "id", inputShape: [2, 3], output: "input", nodes: [])
        let x = Tensor(shape: [2, 2, 3], data: (0..<12).map(Float.init))
        XCTAssertEqual(try Executor(model: Model(graph: g, tensors: [:])).forward(x), x)
    }
}

extension EngineGraphTests {
    /// PyTorch's max pooling propagates NaN; so do both kernel sets (window, separable and global paths).
    func testMaxPoolPropagatesNaN() throws {
        let g = Graph(name: "nan", inputShape: [1, 6, 6], output: "gm", nodes: [
            Node(name: "mp", op: .maxPool2d(Pool2dAttrs(kernel: [3, 3], stride: [2, 2], padding: Padding2D(1))), inputs: ["input"]),
            Node(name: "gm", op: .globalMaxPool, inputs: ["mp"]),
        ])
        var data = (0..<36).map { Float($0) }
        data[7] = .nan   // row 1, col 1: inside the windows of outputs (0,0), (0,1), (1,0), (1,1)
        for kernels in [KernelSet.reference, .fast] {
            let all = try Executor(model: Model(graph: g, tensors: [:]), kernels: kernels).forwardAll(Tensor(shape: [1, 1, 6, 6], data: data))
            let mp = all["mp"]!.data
            XCTAssertEqual(mp.map { $0.isNaN }, [true, true, false, true, true, false, false, false, false], "\(kernels)")
            XCTAssertEqual(mp[5], 23, "\(kernels)")
            XCTAssertTrue(all["gm"]!.data[0].isNaN, "\(kernels)")
        }
    }
}
