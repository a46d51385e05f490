import Foundation
import XCTest
@testable import Formats
import Zoo

func fixture(_ rel: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fixtures").appendingPathComponent(rel).path
}

final class KerasImportTests: XCTestCase {
    func testFunctionalCNNStructure() throws {
        let r = try KerasImport.read(path: fixture("keras/cnn_k3.h5"))
        let g = r.model.graph
        XCTAssertEqual(g.inputShape, [3, 16, 16])
        let byName = Dictionary(uniqueKeysWithValues: g.nodes.map { ($0.name, $0.op) })
        // Stride-2 'same' 3x3 conv on 16: Keras pads 0 on top/left and 1 at the bottom/right.
        guard case let .conv2d(c)? = byName["conv_s2"] else { return XCTFail("conv_s2 missing") }
        XCTAssertEqual(c.padding, Padding2D(top: 0, left: 0, bottom: 1, right: 1))
        XCTAssertEqual(c.stride, [2, 2])
        guard case let .batchNorm2d(bn)? = byName["bn1"] else { return XCTFail("bn1 missing") }
        XCTAssertEqual(bn.eps, 1e-3)
        XCTAssertEqual(bn.momentum, 0.1, accuracy: 1e-6)  // Keras momentum 0.9
        guard case let .conv2d(dw)? = byName["dw"] else { return XCTFail("dw missing") }
        XCTAssertEqual(dw.groups, 8); XCTAssertEqual(dw.outChannels, 16)
        XCTAssertEqual(byName["relu6"], .relu6)
        XCTAssertEqual(r.model.tensors["conv_s2.weight"]?.shape, [8, 3, 3, 3])
        XCTAssertEqual(r.model.tensors["dw.weight"]?.shape, [16, 1, 3, 3])
        XCTAssertEqual(r.model.tensors["sep.depthwise.weight"]?.shape, [16, 1, 3, 3])
        XCTAssertEqual(r.model.tensors["sep.pointwise.weight"]?.shape, [8, 16, 1, 1])
        XCTAssertEqual(r.model.tensors["fc1.weight"]?.shape, [16, 32])
        XCTAssertNil(r.model.tensors["branch_a.bias"])
        XCTAssert(r.report.contains { $0.contains("fc1.weight ← fc1/kernel (transposed; input rows permuted from NHWC to NCHW flatten order of [8, 2, 2])") }, r.report.joined(separator: "\n"))
        XCTAssert(r.report.contains("conv_s2.weight ← conv_s2/kernel (HWIO→OIHW)"))
    }

    func testKeras2LayoutGivesTheSameModel() throws {
        let a = try KerasImport.read(path: fixture("keras/cnn_k3.h5"))
        let b = try KerasImport.read(path: fixture("keras/cnn_k2.h5"))
        XCTAssertEqual(a.model.graph.nodes, b.model.graph.nodes)
        XCTAssertEqual(a.model.tensors, b.model.tensors)
        XCTAssert(b.report.contains("conv_s2.weight ← conv_s2/kernel:0 (HWIO→OIHW)"))
    }

    func testSequentialWithoutCenter() throws {
        let r = try KerasImport.read(path: fixture("keras/seq_k3.h5"))
        XCTAssertEqual(r.model.tensors["bn.bias"], Tensor(shape: [6], repeating: 0))
        XCTAssertEqual(r.model.graph.inputShape, [2, 12, 12])
        XCTAssertEqual(try r.model.graph.inferLayers().last?.outputShape, [1, 3])
    }

    func testUnsupportedLayer() throws {
        let p = fixture("keras/unsupported.h5")
        assertThrowsMessage(try KerasImport.read(path: p),
                            contains: [p + ": layer 'ln' has class LayerNormalization, which the Keras importer does not support"])
    }

    func testZooCheckpointIsNotKeras() throws {
        let p = tempDir() + "/z.h5"
        try ZooCheckpoint.write(randomModel(tinyGraph()), to: p)
        XCTAssertFalse(KerasImport.isKerasModel(path: p))
        XCTAssertTrue(KerasImport.isKerasModel(path: fixture("keras/cnn_k3.h5")))
        assertThrowsMessage(try KerasImport.read(path: p), contains: [p + ": not a Keras full-model file"])
    }
}

final class KerasExportTests: XCTestCase {
    /// zoo → Keras .h5 → zoo keeps the outputs (the Keras-as-oracle check is Tests/oracle/test_keras.py).
    func testExportImportRoundTripKeepsOutputs() throws {
        let m = try KerasImport.read(path: fixture("keras/cnn_k3.h5")).model
        let p = tempDir() + "/exp.h5"
        let report = try KerasExport.write(m, to: p)
        XCTAssert(report.contains("fc1.weight → fc1/kernel (transposed; rows permuted to NHWC flatten order of [8, 2, 2])"), report.joined(separator: "\n"))
        let back = try KerasImport.read(path: p).model
        var rng = SeededRandom(seed: 3)
        let x = Tensor(shape: [2, 3, 16, 16], data: (0..<1536).map { _ in rng.nextNormal() })
        let a = try Executor(model: m).forward(x), b = try Executor(model: back).forward(x)
        XCTAssertEqual(a.shape, b.shape)
        for i in 0..<a.count { XCTAssertEqual(a.data[i], b.data[i], accuracy: 1e-6) }
    }

    func testUnsupportedOpNamed() throws {
        let g = Graph(name: "t", inputShape: [2, 4, 4], output: "lrn", nodes: [
            Node(name: "lrn", op: .lrn(.init(size: 3)), inputs: ["input"])])
        let p = tempDir() + "/x.h5"
        assertThrowsMessage(try KerasExport.write(Model(graph: g, tensors: [:]), to: p),
                            contains: [p + ": cannot export node 'lrn' (LocalResponseNorm) to Keras: no Keras layer for this op"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: p))
    }
}
