import XCTest
@testable import Zoo

final class SummaryTests: XCTestCase {
    /// features(conv 1->2 3x3 pad 1, bn, relu), pool, flat, fc 2->3; input 1x4x4.
    func tinyGraph() -> Graph {
        Graph(name: "tiny", inputShape: [1, 4, 4], output: "fc", nodes: [
            Node(name: "features.0", op: .conv2d(.init(inChannels: 1, outChannels: 2, kernel: [3, 3], padding: .init(1))), inputs: ["input"]),
            Node(name: "features.1", op: .batchNorm2d(.init(features: 2)), inputs: ["features.0"]),
            Node(name: "features.2", op: .relu, inputs: ["features.1"]),
            Node(name: "pool", op: .adaptiveAvgPool2d(output: [1, 1]), inputs: ["features.2"]),
            Node(name: "flat", op: .flatten(startDim: 1), inputs: ["pool"]),
            Node(name: "fc", op: .linear(.init(inFeatures: 2, outFeatures: 3)), inputs: ["flat"]),
        ])
    }

    func testRowsTreeAndTotals() throws {
        let s = try ModelSummary(graph: tinyGraph(), batch: 2)
        XCTAssertEqual(s.rows.map(\.path), ["features", "features.0", "features.1", "features.2", "pool", "flat", "fc"])
        XCTAssertEqual(s.rows.map(\.depth), [0, 1, 1, 1, 0, 0, 0])
        XCTAssertEqual(s.rows.map(\.isGroup), [true, false, false, false, false, false, false])
        XCTAssertEqual(s.rows[0].outputShape, [2, 2, 4, 4])
        // conv 2*1*3*3+2, bn 2+2 (running stats are buffers), fc 3*2+3
        XCTAssertEqual(s.rows.map(\.parameters), [24, 20, 4, 0, 0, 0, 9])
        XCTAssertEqual(s.totalParameters, 33)
        XCTAssertEqual(s.trainableParameters, 33)
        XCTAssertEqual(s.nonTrainableParameters, 0)
        XCTAssertEqual(s.buffers, 4)
        // conv 2*2*4*4*9, bn 2*2*16, pool 2*2*16, fc 2*2*3
        XCTAssertEqual(s.totalMultAdds, 576 + 64 + 64 + 12)
        XCTAssertEqual(s.parameterBytes, 132)
        XCTAssertEqual(s.inputShape, [2, 1, 4, 4])
        XCTAssertEqual(s.outputShape, [2, 3])
    }

    func testFrozenModulesAndParameters() throws {
        let s = try ModelSummary(graph: tinyGraph(), frozen: ["features", "fc.bias"])
        XCTAssertEqual(s.nonTrainableParameters, 27)
        XCTAssertEqual(s.trainableParameters, 6)
        let lines = s.text.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains { $0.hasPrefix("  0 ") && $0.contains("Conv2d") && $0.contains("[1, 2, 4, 4]") && $0.contains("(20)") }, s.text)
        XCTAssertTrue(lines.contains { $0.hasPrefix("fc ") && $0.contains("6 (3)") }, s.text)
        XCTAssertTrue(lines.contains("Total params: 33"))
        XCTAssertTrue(lines.contains("Trainable params: 6"))
        XCTAssertTrue(lines.contains("Non-trainable params: 27"))
        XCTAssertTrue(lines.contains("Total mult-adds: 358"))
        XCTAssertTrue(lines.contains("Parameter memory: 0.00 MB (float32; buffers 0.00 MB)"))
    }

    func testJSONRoundTripsAndInputOverride() throws {
        let s = try ModelSummary(graph: tinyGraph(), batch: 1, inputShape: [1, 8, 8])
        XCTAssertEqual(s.rows[1].outputShape, [1, 2, 8, 8])
        XCTAssertEqual(try JSONDecoder().decode(ModelSummary.self, from: s.jsonData()), s)
        XCTAssertEqual(ModelSummary.grouped(11689512), "11,689,512")
        XCTAssertEqual(ModelSummary.grouped(999), "999")
        XCTAssertEqual(ModelSummary.scaled(1_814_083_944), "1.81 G")
    }

    func testTooSmallInputIsABadInputError() {
        XCTAssertThrowsError(try ModelSummary(graph: tinyGraph(), inputShape: [2, 4, 4])) {
            XCTAssertEqual(($0 as? ZooError)?.description,
                           "bad input: layer 'features.0' (Conv2d): expects 1 input channels, got 2; input shape [1, 2, 4, 4]")
        }
    }
}
