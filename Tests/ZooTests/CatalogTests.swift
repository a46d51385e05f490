import Foundation
import XCTest
@testable import Zoo

/// Checks every catalog graph against the manifests written by scripts/make_manifests.py from the
/// reference definitions (torchvision, and the d2l code of the notes transcribed into the script).
final class CatalogTests: XCTestCase {
    struct Manifest {
        var input: [Int]
        var output: [Int]
        var parameters: Int
        var keys: [(String, [Int])]
        /// Output shape of every leaf module of the reference at its first call.
        var layers: [String: [Int]]
    }

    static let manifestDir = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fixtures/manifests")

    func loadJSON(_ file: String) throws -> Any {
        let data = try Data(contentsOf: Self.manifestDir.appendingPathComponent(file))
        return try JSONSerialization.jsonObject(with: data)
    }

    func manifest(_ name: String) throws -> Manifest {
        let o = try XCTUnwrap(try loadJSON(name + ".json") as? [String: Any])
        let keys = try XCTUnwrap(o["keys"] as? [[Any]]).map { pair -> (String, [Int]) in
            (pair[0] as? String ?? "?", pair[1] as? [Int] ?? [])
        }
        return Manifest(input: try XCTUnwrap(o["input"] as? [Int]), output: try XCTUnwrap(o["output"] as? [Int]),
                        parameters: try XCTUnwrap(o["parameters"] as? Int), keys: keys,
                        layers: try XCTUnwrap(o["layers"] as? [String: [Int]]))
    }

    /// Architectures whose state_dict order differs from execution order (d2l's Residual registers
    /// conv1, conv2, conv3 before bn1, bn2): compared as sets, with the same count.
    static let unorderedKeys: Set<String> = ["resnet18_d2l"]
    /// Architectures without a PyTorch reference (checked by formula below).
    static let noReference: Set<String> = ["mobilenet_v1"]

    func testEveryEntryMatchesItsManifest() throws {
        XCTAssertEqual(Catalog.entries.count, 20)
        for entry in Catalog.entries where !Self.noReference.contains(entry.name) {
            let m = try manifest(entry.name)
            let g = try Catalog.graph(entry.name)
            XCTAssertEqual(g.name, entry.name)
            XCTAssertEqual([1] + entry.defaultInputShape, m.input, entry.name)
            XCTAssertEqual([1] + g.inputShape, m.input, entry.name)
            let specs = g.parameterSpecs.map { ($0.key, $0.shape) }
            let want = m.keys.map { "\($0.0) \($0.1)" }
            let got = specs.map { "\($0.0) \($0.1)" }
            if Self.unorderedKeys.contains(entry.name) {
                XCTAssertEqual(got.sorted(), want.sorted(), entry.name)
                XCTAssertNotEqual(got, want, "\(entry.name): remove it from unorderedKeys")
            } else {
                XCTAssertEqual(got, want, entry.name)
            }
            XCTAssertEqual(Set(got).count, got.count, "\(entry.name): duplicate keys")
            XCTAssertEqual(g.parameterCount, m.parameters, entry.name)
            XCTAssertEqual(try g.outputShape(batch: 1), m.output, entry.name)
            XCTAssertEqual(try g.outputShape(batch: 3), [3] + m.output.dropFirst(), entry.name)
            // Every module of the reference is a node of the same name with the same output shape.
            let inferred = Dictionary(uniqueKeysWithValues: try g.inferLayers().map { ($0.node.name, $0.outputShape) })
            XCTAssertFalse(m.layers.isEmpty)
            for (module, shape) in m.layers {
                XCTAssertEqual(inferred[module], shape, "\(entry.name): module \(module)")
            }
            let back = try Graph.fromJSON(try g.jsonData())
            XCTAssertEqual(back, g, "\(entry.name): JSON round trip")
            XCTAssertEqual(try Graph.fromJSON(try g.jsonData(pretty: false)), g, entry.name)
        }
    }

    func testPublishedParameterCounts() throws {
        // The counts torchvision documents for its models.
        let published = ["resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                         "mobilenet_v2": 3_504_872, "googlenet": 6_624_904, "alexnet": 61_100_840,
                         "vgg16": 138_357_544, "vgg19_bn": 143_678_248]
        for (name, n) in published {
            XCTAssertEqual(try Catalog.graph(name).parameterCount, n, name)
        }
    }

    func testMobileNetV1AgainstFormula() throws {
        // Hand-derived: stem 3x3 conv 3->32 + BN; 13 depthwise separable layers (dw 3x3 + BN, pw 1x1 + BN,
        // no conv biases); Linear(1024, classes). BN: 2 trainable + 2 buffers per channel.
        let widths = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
        func count(classes: Int, inC: Int) -> (params: Int, buffers: Int) {
            var p = inC * 32 * 9 + 2 * 32
            var buf = 2 * 32
            for i in 0..<13 {
                let cin = widths[i], cout = widths[i + 1]
                p += cin * 9 + 2 * cin + cin * cout + 2 * cout
                buf += 2 * cin + 2 * cout
            }
            return (p + 1024 * classes + classes, buf)
        }
        let g = try Catalog.graph("mobilenet_v1")
        XCTAssertEqual(g.parameterCount, count(classes: 1000, inC: 3).params)
        XCTAssertEqual(g.parameterCount, 4_231_976)  // Keras' MobileNet(alpha=1) trainable count
        XCTAssertEqual(g.bufferCount, count(classes: 1000, inC: 3).buffers)
        XCTAssertEqual(try g.outputShape(), [1, 1000])
        let g2 = try Catalog.graph("mobilenet_v1", classes: 10, inChannels: 1, inputSize: [96, 128])
        XCTAssertEqual(g2.parameterCount, count(classes: 10, inC: 1).params)
        XCTAssertEqual(try g2.outputShape(), [1, 10])
        // 224 -> 112 after the stem, then four stride-2 layers: 7x7 before the pool.
        let infos = try g.inferLayers()
        XCTAssertEqual(infos.first { $0.node.name == "features.13.5" }?.outputShape, [1, 1024, 7, 7])
        let dw = try XCTUnwrap(g.nodes.first { $0.name == "features.1.0" })
        guard case let .conv2d(a) = dw.op else { return XCTFail("features.1.0 is not a convolution") }
        XCTAssertEqual(a.groups, 32)
        XCTAssertEqual(try Graph.fromJSON(try g.jsonData()), g)
    }

    func testTorchvisionVariants() throws {
        let list = try XCTUnwrap(try loadJSON("variants.json") as? [[String: Any]])
        XCTAssertFalse(list.isEmpty)
        for v in list {
            let name = try XCTUnwrap(v["name"] as? String)
            let input = try XCTUnwrap(v["input"] as? [Int])
            let classes = try XCTUnwrap(v["classes"] as? Int)
            let g = try Catalog.graph(name, classes: classes, inputSize: Array(input.suffix(2)))
            XCTAssertEqual(try g.outputShape(), v["output"] as? [Int], name)
            XCTAssertEqual(g.parameterCount, v["parameters"] as? Int, name)
        }
    }

    func testClassesChannelsAndSize() throws {
        let r = try Catalog.graph("resnet18", classes: 10, inChannels: 1)
        let shapes = Dictionary(uniqueKeysWithValues: r.parameterSpecs.map { ($0.key, $0.shape) })
        XCTAssertEqual(shapes["conv1.weight"], [64, 1, 7, 7])
        XCTAssertEqual(shapes["fc.weight"], [10, 512])
        XCTAssertEqual(r.inputShape, [1, 224, 224])

        // LeNet at 32x32: the convolutions leave 16x6x6, so the first Linear widens to 576.
        let l = try Catalog.graph("lenet", inputSize: [32, 32])
        XCTAssertEqual(l.parameterSpecs.first { $0.key == "7.weight" }?.shape, [120, 576])
        XCTAssertEqual(try l.outputShape(), [1, 10])

        // NiN's class count is the last block's width.
        let n = try Catalog.graph("nin", classes: 5, inChannels: 3, inputSize: [96])
        XCTAssertEqual(n.parameterSpecs.last?.shape, [5])
        XCTAssertEqual(n.parameterSpecs.first?.shape, [96, 3, 11, 11])
        XCTAssertEqual(try n.outputShape(), [1, 5])

        let d = try Catalog.graph("vgg_d2l", inputSize: [32, 32])
        XCTAssertEqual(d.parameterSpecs.first { $0.key == "6.weight" }?.shape, [4096, 512])
    }

    func testBadRequests() {
        func message(_ body: () throws -> Graph) -> String? {
            do { _ = try body(); return nil } catch { return "\(error)" }
        }
        XCTAssertEqual(message { try Catalog.graph("resnet19") }, "unknown architecture 'resnet19' (see `zoo-tool list`)")
        XCTAssertThrowsError(try Catalog.graph("resnet19")) { XCTAssertEqual($0 as? ZooError, .unknownArchitecture("resnet19")) }
        XCTAssertEqual(message { try Catalog.graph("lenet", classes: 0) },
                       "bad input: lenet: the number of classes must be between 1 and 1048576, got 0")
        XCTAssertEqual(message { try Catalog.graph("alexnet", inChannels: -3) },
                       "bad input: alexnet: the number of input channels must be between 1 and 65536, got -3")
        XCTAssertEqual(message { try Catalog.graph("vgg11", inputSize: [1, 224, 224]) },
                       "bad input: vgg11: the input size must be [H, W] or [S], got [1, 224, 224]")
        XCTAssertEqual(message { try Catalog.graph("vgg11", inputSize: [0, 224]) },
                       "bad input: vgg11: the input size must be between 1 and 65536 per side, got [0, 224]")
        // Five 2x2 pools halve 16 to 0: the fifth pool fails.
        XCTAssertEqual(message { try Catalog.graph("vgg11", inputSize: [16]) },
                       "bad input: architecture 'vgg11' needs a larger input than [3, 16, 16]: layer 'features.20' (MaxPool2d) would produce an empty output [512, 0, 0]")
        XCTAssertEqual(message { try Catalog.graph("lenet", inputSize: [4, 4]) },
                       "bad input: architecture 'lenet' needs a larger input than [1, 4, 4]: layer '3' (Conv2d) would produce an empty output [16, 0, 0]")
    }

    func testBuilderNamesAndBranches() throws {
        var b = GraphBuilder(name: "t", inputShape: [2, 4, 4])
        let x = b.last
        XCTAssertEqual(x, "input")
        let c = try b.add("c", .conv(2, 2, 3, padding: 1))
        XCTAssertEqual(try b.add("relu", .relu), "relu")
        XCTAssertEqual(try b.add("relu", .relu), "relu_2")
        XCTAssertEqual(try b.add("sum", .add, inputs: [c, x]), "sum")
        XCTAssertEqual(b.shape, [1, 2, 4, 4])
        XCTAssertThrowsError(try b.add("c", .conv(2, 2, 1))) {
            XCTAssertEqual("\($0)", "invalid architecture: architecture 't': node name 'c' is used twice")
        }
        XCTAssertThrowsError(try b.add("z", .relu, inputs: ["nothing"])) {
            XCTAssertEqual("\($0)", "invalid architecture: architecture 't': node 'z' reads 'nothing', which no earlier node produces")
        }
        let g = try b.finish()
        XCTAssertEqual(g.output, "sum")
        XCTAssertEqual(g.nodes.map(\.name), ["c", "relu", "relu_2", "sum"])
    }

    func testStructureSpotChecks() throws {
        // torchvision's googlenet: "5x5" branch is 3x3, pools use ceil_mode, BN eps 1e-3.
        let g = try Catalog.graph("googlenet")
        let byName = Dictionary(uniqueKeysWithValues: g.nodes.map { ($0.name, $0) })
        guard case let .conv2d(b3) = byName["inception3a.branch3.1.conv"]?.op else { return XCTFail("no branch3 conv") }
        XCTAssertEqual(b3.kernel, [3, 3])
        XCTAssertFalse(b3.bias)
        guard case let .maxPool2d(p) = byName["maxpool1"]?.op else { return XCTFail("no maxpool1") }
        XCTAssertTrue(p.ceilMode)
        guard case let .batchNorm2d(bn) = byName["conv1.bn"]?.op else { return XCTFail("no conv1.bn") }
        XCTAssertEqual(bn.eps, 0.001)
        XCTAssertEqual(byName["inception3a.concat"]?.inputs.count, 4)
        XCTAssertEqual(try g.inferLayers().first { $0.node.name == "inception5b.concat" }?.outputShape, [1, 1024, 7, 7])

        // ResNet residual adds read the block's main path and its shortcut.
        let r = try Catalog.graph("resnet18")
        let add = try XCTUnwrap(r.nodes.first { $0.name == "layer2.0.add" })
        XCTAssertEqual(add.inputs, ["layer2.0.bn2", "layer2.0.downsample.1"])
        XCTAssertEqual(r.nodes.first { $0.name == "layer1.0.add" }?.inputs, ["layer1.0.bn2", "maxpool"])
        XCTAssertEqual(r.nodes.filter { if case .add = $0.op { return true } else { return false } }.count, 8)

        // MobileNetV2: ReLU6, residual sums only where stride 1 and channels agree (10 of 17 blocks).
        let m = try Catalog.graph("mobilenet_v2")
        XCTAssertEqual(m.nodes.filter { if case .add = $0.op { return true } else { return false } }.count, 10)
        XCTAssertEqual(m.nodes.first { $0.name == "features.0.2" }?.op, .relu6)
        XCTAssertEqual(m.nodes.first { $0.name == "classifier.0" }?.op, .dropout(p: 0.2))

        // LeNet: sigmoid and average pooling.
        let l = try Catalog.graph("lenet")
        XCTAssertEqual(l.nodes.map(\.op.typeName), ["Conv2d", "Sigmoid", "AvgPool2d", "Conv2d", "Sigmoid", "AvgPool2d", "Flatten",
                                                    "Linear", "Sigmoid", "Linear", "Sigmoid", "Linear"])
    }
}
