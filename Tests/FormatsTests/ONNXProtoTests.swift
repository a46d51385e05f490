import Foundation
import SwiftProtobuf
import XCTest
@testable import Formats

/// Wire compatibility of the generated ONNX code with files written by the python onnx package.
final class ONNXProtoTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("fixtures/onnx")

    struct Facts: Decodable {
        var bytes: Int
        var ir_version: Int64
        var opset: Int64
        var producer_name: String
        var node_ops: [String]
        var node_names: [String]
        var initializers: [String: [Int64]]
        var conv_weight_first: Float
        var conv_bias: [Float]
        var metadata: [String: String]
    }

    func testParsesPythonONNXFileAndRoundTripsBytes() throws {
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent("tiny.onnx"))
        let facts = try JSONDecoder().decode(Facts.self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("tiny.expected.json")))
        XCTAssertEqual(data.count, facts.bytes)
        let m = try Onnx_ModelProto(serializedBytes: data)
        XCTAssertEqual(m.irVersion, facts.ir_version)
        XCTAssertEqual(m.opsetImport.map(\.version), [facts.opset])
        XCTAssertEqual(m.producerName, facts.producer_name)
        XCTAssertEqual(m.graph.node.map(\.opType), facts.node_ops)
        XCTAssertEqual(m.graph.node.map(\.name), facts.node_names)
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: m.graph.initializer.map { ($0.name, $0.dims) }), facts.initializers)
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: m.metadataProps.map { ($0.key, $0.value) }), facts.metadata)
        // raw_data little-endian float32 and float_data both present in the fixture
        let w = m.graph.initializer.first { $0.name == "conv.weight" }!
        XCTAssertTrue(w.hasRawData)
        XCTAssertEqual(w.dataType, Int32(Onnx_TensorProto.DataType.float.rawValue))
        let first = w.rawData.prefix(4).withUnsafeBytes { Float(bitPattern: UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self))) }
        XCTAssertEqual(first, facts.conv_weight_first)
        let b = m.graph.initializer.first { $0.name == "conv.bias" }!
        XCTAssertFalse(b.hasRawData)
        XCTAssertEqual(b.floatData, facts.conv_bias)
        // attributes: proto2 presence and typed values
        let conv = m.graph.node[0]
        let ks = conv.attribute.first { $0.name == "kernel_shape" }!
        XCTAssertEqual(ks.type, .ints)
        XCTAssertEqual(ks.ints, [3, 3])
        XCTAssertFalse(ks.hasF)
        let gemm = m.graph.node[4]
        let alpha = gemm.attribute.first { $0.name == "alpha" }!
        XCTAssertEqual(alpha.type, .float)
        XCTAssertTrue(alpha.hasF)
        // dynamic batch dimension
        let dims = m.graph.input[0].type.tensorType.shape.dim
        XCTAssertEqual(dims[0].dimParam, "N")
        XCTAssertEqual(dims[1].dimValue, 1)
        XCTAssertEqual(m.graph.input[0].type.tensorType.elemType, 1)
        // round trip: same bytes back (python protobuf also writes in field-number order)
        let again: Data = try m.serializedBytes()
        XCTAssertEqual(again, data)
        XCTAssertEqual(try Onnx_ModelProto(serializedBytes: again), m)
    }

    func testUnknownFieldsSurviveRoundTrip() throws {
        // field 25 (ModelProto.functions) is not in zoo's schema; it must be kept as unknown.
        var m = Onnx_ModelProto()
        m.irVersion = 8
        var bytes: Data = try m.serializedBytes()
        bytes.append(contentsOf: [0xCA, 0x01, 0x02, 0x0A, 0x00]) // tag (25<<3|2), len 2, payload
        let parsed = try Onnx_ModelProto(serializedBytes: bytes)
        XCTAssertEqual(parsed.irVersion, 8)
        XCTAssertEqual(try parsed.serializedBytes() as Data, bytes)
    }
}
