import Foundation
import XCTest
import Zoo
@testable import Formats

final class ONNXTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("zoo-onnx-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func randomized(_ g: Graph, seed: UInt64 = 1) -> Model {
        var m = Model.initialized(graph: g, seed: seed)
        var rng = SeededRandom(seed: seed + 100)
        for (k, t) in m.tensors where k.hasSuffix("running_var") || k.hasSuffix("running_mean") || (k.hasSuffix(".weight") && t.rank == 1) {
            m.tensors[k] = Tensor(shape: t.shape, data: t.data.map { _ in k.hasSuffix("running_mean") ? rng.nextFloat() - 0.5 : 0.5 + rng.nextFloat() })
        }
        return m
    }

    func testIRVersionTable() {
        XCTAssertEqual((13...21).map { ONNXExport.irVersion(forOpset: $0) }, [7, 7, 8, 8, 8, 8, 9, 9, 10])
    }

    func testExportImportRoundTripRecognisesCatalog() throws {
        for name in ["lenet", "nin", "resnet18_d2l"] {
            let g = try Catalog.graph(name)
            let model = randomized(g)
            let proto = try ONNXExport.modelProto(model)
            XCTAssertEqual(proto.irVersion, 8)
            XCTAssertEqual(proto.opsetImport.first?.version, 17)
            XCTAssertEqual(proto.graph.input[0].type.tensorType.shape.dim[0].dimParam, "N")
            // initializers carry the canonical names
            for s in g.parameterSpecs { XCTAssertTrue(proto.graph.initializer.contains { $0.name == s.key }, "\(name): \(s.key)") }
            let url = dir.appendingPathComponent("\(name).onnx")
            try ONNXFile.write(proto, to: url)
            let r = try ONNXImport.load(url)
            XCTAssertEqual(r.architecture, name)
            XCTAssertTrue(r.model.graph == g, name)
            XCTAssertTrue(r.model.tensors == model.tensors, name)
        }
    }

    func testFoldedBatchNormIsRestoredOnImport() throws {
        let g = try Catalog.graph("resnet18", classes: 10, inputSize: [32, 32])
        let model = randomized(g)
        let proto = try ONNXExport.modelProto(model, options: .init(opset: 13, foldBN: true))
        XCTAssertEqual(proto.irVersion, 7)
        XCTAssertFalse(proto.graph.node.contains { $0.opType == "BatchNormalization" })
        XCTAssertEqual(proto.graph.node.filter { $0.opType == "Conv" }.count, 20)
        let plain = try ONNXImport.convert(proto, path: "r.onnx")
        XCTAssertNil(plain.architecture)
        let r = ONNXMatch.canonicalize(plain, candidates: ONNXMatch.catalogCandidates(for: plain.model.graph))
        XCTAssertEqual(r.architecture, "resnet18")
        XCTAssertTrue(r.model.graph == g)
        XCTAssertTrue(r.notes.joined().contains("20 BatchNorm layers"))
        // folded weight = W·γ/√(σ²+ε), restored BN has identity statistics
        let w = model.tensors["conv1.weight"]!, gamma = model.tensors["bn1.weight"]!, v = model.tensors["bn1.running_var"]!
        guard r.architecture != nil else { return }
        let s0 = gamma.data[0] / (v.data[0] + 1e-5).squareRoot()
        XCTAssertEqual(r.model.tensors["conv1.weight"]!.data[0], w.data[0] * s0, accuracy: 1e-6)
        XCTAssertEqual(r.model.tensors["bn1.running_mean"]!.data, [Float](repeating: 0, count: 64))
        XCTAssertEqual(r.model.tensors["bn1.weight"]!.data, [Float](repeating: 1, count: 64))
    }

    func testExternalDataWrittenAlignedAndRead() throws {
        let g = try Catalog.graph("lenet")
        let model = randomized(g)
        let url = dir.appendingPathComponent("m.onnx")
        try ONNXExport.write(model, to: url, externalThreshold: 1000)
        let data = try Data(contentsOf: dir.appendingPathComponent("m.onnx.data"))
        let raw = try Onnx_ModelProto(serializedBytes: Data(contentsOf: url))
        let ext = raw.graph.initializer.filter { $0.dataLocation == .external }
        XCTAssertFalse(ext.isEmpty)
        for t in ext {
            let kv = Dictionary(uniqueKeysWithValues: t.externalData.map { ($0.key, $0.value) })
            XCTAssertEqual(kv["location"], "m.onnx.data")
            XCTAssertEqual(Int(kv["offset"]!)! % 4096, 0)
            XCTAssertFalse(t.hasRawData)
        }
        XCTAssertGreaterThan(data.count, 4096)
        let r = try ONNXImport.load(url)
        XCTAssertTrue(r.model.tensors == model.tensors)
        XCTAssertEqual(r.architecture, "lenet")
    }

    func testExternalLocationOutsideFolderRefused() throws {
        var t = Onnx_TensorProto(name: "w", float: Tensor(shape: [2], data: [1, 2]))
        t.clearRawData(); t.dataLocation = .external
        t.externalData = [ONNXFile.entry("location", "../secret.bin")]
        var m = tinyModel(); m.graph.initializer = [t]
        let url = dir.appendingPathComponent("e.onnx")
        try ONNXFile.write(m, to: url)
        XCTAssertThrowsError(try ONNXFile.read(url)) {
            XCTAssertEqual("\($0)", "\(url.path): tensor 'w': external data location '../secret.bin' leaves the model's folder")
        }
        m.graph.initializer[0].externalData = [ONNXFile.entry("location", "/etc/passwd")]
        try ONNXFile.write(m, to: url)
        XCTAssertThrowsError(try ONNXFile.read(url)) {
            XCTAssertEqual("\($0)", "\(url.path): tensor 'w': external data location '/etc/passwd' leaves the model's folder")
        }
    }

    // MARK: bad input

    func tinyModel(op: String = "Relu", irVersion: Int64 = 8, opset: Int64 = 17) -> Onnx_ModelProto {
        var m = Onnx_ModelProto()
        m.irVersion = irVersion
        var os = Onnx_OperatorSetIdProto(); os.version = opset; m.opsetImport = [os]
        var n = Onnx_NodeProto(); n.opType = op; n.name = "n1"; n.input = ["x"]; n.output = ["y"]
        m.graph.node = [n]
        m.graph.input = [ONNXExport.Builder(model: Model(graph: Graph(name: "g", inputShape: [3], output: "input", nodes: []), tensors: [:]), options: .init()).valueInfo("x", [1, 3])]
        m.graph.output = [ONNXExport.Builder(model: Model(graph: Graph(name: "g", inputShape: [3], output: "input", nodes: []), tensors: [:]), options: .init()).valueInfo("y", [1, 3])]
        return m
    }

    func check(_ m: Onnx_ModelProto, _ expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let url = dir.appendingPathComponent("bad.onnx")
        try ONNXFile.write(m, to: url)
        XCTAssertThrowsError(try ONNXImport.load(url), file: file, line: line) {
            XCTAssertEqual("\($0)", "\(url.path): " + expected, file: file, line: line)
        }
    }

    func testGoodTinyModelImports() throws {
        let r = try ONNXImport.convert(tinyModel(), path: "t.onnx")
        XCTAssertEqual(r.model.graph.nodes.map(\.op), [.relu])
        XCTAssertEqual(r.model.graph.inputShape, [3])
    }

    func testNotProtobuf() throws {
        let url = dir.appendingPathComponent("x.onnx")
        try Data("this is not a model\n".utf8).write(to: url)
        XCTAssertThrowsError(try ONNXImport.load(url)) { XCTAssertEqual("\($0)", "\(url.path): not an ONNX model: protobuf decoding failed (malformedProtobuf)") }
        try Data().write(to: url)
        XCTAssertThrowsError(try ONNXImport.load(url)) { XCTAssertEqual("\($0)", "\(url.path): not an ONNX model (empty file)") }
    }

    func testTruncated() throws {
        let proto = try ONNXExport.modelProto(randomized(try Catalog.graph("lenet")))
        let bytes: Data = try proto.serializedBytes()
        let url = dir.appendingPathComponent("t.onnx")
        try bytes.prefix(bytes.count - 100).write(to: url)
        XCTAssertThrowsError(try ONNXImport.load(url)) {
            XCTAssertEqual("\($0)", "\(url.path): not an ONNX model or truncated: protobuf data ends inside a field")
        }
    }

    func testUnknownOp() throws {
        try check(tinyModel(op: "Gelu", opset: 20), "unsupported: ONNX op 'Gelu' in node 'n1' at opset 20")
        try check(tinyModel(op: "Relu", opset: 26), "unsupported: opset 26 (zoo reads opsets 7 to 25)")
    }

    func testMissingInitializer() throws {
        var m = tinyModel(op: "Conv")
        m.graph.node[0].input = ["x", "conv.weight"]
        try check(m, "invalid architecture: node 'n1' (Conv) reads 'conv.weight', which is neither the graph input, an initializer nor a node output (missing initializer?)")
    }

    func testCycle() throws {
        var m = tinyModel()
        var a = Onnx_NodeProto(); a.opType = "Relu"; a.name = "a"; a.input = ["x", "c"]; a.output = ["b"]
        var b = Onnx_NodeProto(); b.opType = "Relu"; b.name = "b"; b.input = ["b"]; b.output = ["c"]
        m.graph.node[0].input = ["c"]
        m.graph.node = [a, b, m.graph.node[0]]
        try check(m, "invalid architecture: the graph has a cycle (through node 'a', Relu)")
    }

    func testUnsupportedDtype() throws {
        var m = tinyModel(op: "Add")
        var t = Onnx_TensorProto(); t.name = "s"; t.dims = [1]; t.dataType = Int32(Onnx_TensorProto.DataType.string.rawValue); t.stringData = [Data("a".utf8)]
        m.graph.initializer = [t]
        m.graph.node[0].input = ["x", "s"]
        try check(m, "unsupported: tensor 's': data type STRING is not supported")
        var m2 = tinyModel()
        m2.graph.input[0].type.tensorType.elemType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        try check(m2, "unsupported: graph input 'x' has element type INT64; zoo runs FLOAT inputs only")
    }

    func testIRVersionTooNew() throws {
        try check(tinyModel(irVersion: 14), "ir_version 14 is newer than supported (zoo reads up to 13)")
    }

    func testOpsetOutOfRange() throws {
        try check(tinyModel(opset: 6), "unsupported: opset 6 (zoo reads opsets 7 to 25)")
    }

    func testSoftmaxBeforeOpset13() throws {
        var m = tinyModel(op: "Softmax", opset: 11)
        XCTAssertEqual(try ONNXImport.convert(m, path: "s.onnx").model.graph.nodes.map(\.op), [.softmax(axis: 1)])
        m.graph.input[0] = ONNXExport.Builder(model: Model(graph: Graph(name: "g", inputShape: [3], output: "input", nodes: []), tensors: [:]), options: .init()).valueInfo("x", [1, 3, 4])
        try check(m, "unsupported: node 'n1' (Softmax, opset 11): Softmax before opset 13 with axis 1 on a rank-3 input flattens the dimensions from the axis on; zoo supports it only where that equals a softmax over the last axis")
    }
}

/// Numerics through the engine: export (BN folded or kept) → generic import runs like the original.
final class ONNXEngineTests: XCTestCase {
    func testFoldedExportImportRunsLikeOriginal() throws {
        for (name, size) in [("mobilenet_v2", 32), ("googlenet", 64), ("lenet", 28)] {
            let g = try Catalog.graph(name, classes: 7, inputSize: [size, size])
            var m = Model.initialized(graph: g, seed: 3)
            var rng = SeededRandom(seed: 9)
            for (k, t) in m.tensors where k.hasSuffix("running_var") || k.hasSuffix("running_mean") {
                m.tensors[k] = Tensor(shape: t.shape, data: t.data.map { _ in k.hasSuffix("running_var") ? 0.5 + rng.nextFloat() : rng.nextFloat() - 0.5 })
            }
            var x = Tensor(zeros: [2] + g.inputShape)
            for i in 0..<x.count { x.data[i] = rng.nextNormal() }
            let ref = try Executor(model: m).forward(x)
            let scale = max(1, ref.data.map(abs).max()!)
            for fold in [false, true] {
                let proto = try ONNXExport.modelProto(m, options: .init(opset: fold ? 21 : 13, foldBN: fold))
                let imported = try ONNXImport.convert(proto, path: "m.onnx")
                let y = try Executor(model: imported.model).forward(x)
                XCTAssertEqual(y.shape, ref.shape)
                let d = zip(y.data, ref.data).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(d, 1e-4 * scale, "\(name) fold=\(fold)")
                let canon = ONNXMatch.canonicalize(imported, candidates: ONNXMatch.catalogCandidates(for: imported.model.graph))
                XCTAssertEqual(canon.architecture, name, "fold=\(fold)")
                if canon.architecture != nil {
                    let y2 = try Executor(model: canon.model).forward(x)
                    let d2 = zip(y2.data, ref.data).map { abs($0 - $1) }.max()!
                    XCTAssertLessThanOrEqual(d2, 1e-4 * scale, "\(name) canonical fold=\(fold)")
                }
            }
        }
    }
}
