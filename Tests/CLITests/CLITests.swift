import Foundation
import XCTest
import Formats
import Zoo

/// Runs the zoo-tool built beside the test bundle (`swift build` puts both in .build/<config>).
final class CLITests: XCTestCase {
    var tool: URL {
        Bundle.main.bundleURL.appendingPathComponent("zoo-tool")
    }

    func run(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        guard FileManager.default.isExecutableFile(atPath: tool.path) else {
            throw XCTSkip("zoo-tool is not built at \(tool.path)")
        }
        let p = Process()
        p.executableURL = tool
        p.arguments = args
        let o = Pipe(), e = Pipe()
        p.standardOutput = o
        p.standardError = e
        try p.run()
        let out = o.fileHandleForReading.readDataToEndOfFile()
        let err = e.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
    }

    func testListShowsEveryCatalogEntryWithItsCount() throws {
        let r = try run(["list"])
        XCTAssertEqual(r.status, 0, r.err)
        let lines = r.out.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, Catalog.entries.count + 1)
        for e in Catalog.entries {
            let count = ModelSummary.grouped(try Catalog.graph(e.name).parameterCount)
            XCTAssertTrue(lines.contains { $0.split(separator: " ").first.map(String.init) == e.name && $0.contains(" " + count + " ") }, e.name)
        }
    }

    func testSummaryJSONEqualsTheLibrarySummary() throws {
        let r = try run(["summary", "mobilenet_v2", "--input", "2x3x96x96", "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let decoded = try JSONDecoder().decode(ModelSummary.self, from: Data(r.out.utf8))
        let expected = try ModelSummary(graph: Catalog.graph("mobilenet_v2", inChannels: 3, inputSize: [96, 96]), batch: 2)
        XCTAssertEqual(decoded, expected)
        XCTAssertEqual(decoded.outputShape, [2, 1000])
    }

    func testErrorsGoToStderrWithStatus1() throws {
        let r = try run(["summary", "resnet99"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.out, "")
        XCTAssertEqual(r.err, "error: unknown architecture 'resnet99' (see `zoo-tool list`)\n")
    }

    func testInferWithDefaultInitialisationWritesAnArray() throws {
        let dir = NSTemporaryDirectory() + "zoo-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SeededRandom(seed: 1)
        let x = Tensor(shape: [3, 1, 28, 28], data: (0..<(3 * 784)).map { _ in rng.nextFloat() })
        try NPY.write(x, to: dir + "/x.npy")
        let r = try run(["infer", "lenet", "--input", dir + "/x.npy", "--output", dir + "/y.npy", "--seed", "7"])
        XCTAssertEqual(r.status, 0, r.err)
        let y = try NPY.read(path: dir + "/y.npy")
        // Same model and input through the library: identical output.
        let m = Model.initialized(graph: try Catalog.graph("lenet"), seed: 7)
        let expected = try Executor(model: m, kernels: .fast, threads: 2).forward(x)
        XCTAssertEqual(y, expected)
    }

    /// `bench --json`: the FLOP count is 2 × the summary's mult-adds (× 3 for a training step), the statistics
    /// agree with the listed times, and `--profile` lists one entry per executed step.
    func testBenchJSONIsConsistentWithTheSummary() throws {
        let summary = try ModelSummary(graph: Catalog.graph("lenet"), batch: 4)
        struct Layer: Decodable { var node: String; var op: String; var median_ms: Double }
        struct Result: Decodable {
            var mode: String; var batch: Int; var threads: Int; var iterations: Int; var input_shape: [Int]
            var median_ms: Double; var min_ms: Double; var p90_ms: Double; var images_per_s: Double
            var flops_per_iteration: Double; var gflops: Double; var times_ms: [Double]; var layers: [Layer]?
        }
        for train in [false, true] {
            var args = ["bench", "lenet", "--batch", "4", "--threads", "2", "--iterations", "5", "--warmup", "1", "--no-peak", "--json"]
            args += train ? ["--train"] : ["--profile"]
            let r = try run(args)
            XCTAssertEqual(r.status, 0, r.err)
            let b = try JSONDecoder().decode(Result.self, from: Data(r.out.utf8))
            XCTAssertEqual(b.mode, train ? "train" : "infer")
            XCTAssertEqual(b.input_shape, [4] + summary.inputShape.dropFirst())
            XCTAssertEqual(b.flops_per_iteration, Double(2 * summary.totalMultAdds * (train ? 3 : 1)))
            XCTAssertEqual(b.times_ms.count, 5)
            let sorted = b.times_ms.sorted()
            XCTAssertEqual(b.min_ms, sorted[0])
            XCTAssertEqual(b.median_ms, sorted[2])
            XCTAssertEqual(b.p90_ms, sorted[4])
            XCTAssertEqual(b.images_per_s, 4 / (b.median_ms / 1000), accuracy: 1e-6 * b.images_per_s)
            XCTAssertEqual(b.gflops, b.flops_per_iteration / (b.median_ms / 1000) / 1e9, accuracy: 1e-9 * b.gflops)
            if train {
                XCTAssertNil(b.layers)
            } else {
                // lenet's steps: conv+sigmoid... every node of the graph runs (no conv+BN+ReLU fusion applies)
                let nodes = try Catalog.graph("lenet").nodes.map(\.name)
                XCTAssertEqual(b.layers?.map(\.node), nodes)
                XCTAssertTrue(b.layers!.allSatisfy { $0.median_ms >= 0 && $0.median_ms <= b.times_ms.max()! })
            }
        }
        let bad = try run(["bench", "lenet", "--batch", "0"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertEqual(bad.err, "error: bad input: --batch must be at least 1, got 0\n")
    }
}
