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
}
