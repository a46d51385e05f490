import Foundation
import XCTest
@testable import Zoo

/// The op battery: every case of fixtures/ops/op_cases.json (made by scripts/make_op_fixtures.py with PyTorch)
/// runs through the reference and the fast kernels and must match torch within 1e-4·max(1, max|y|).
final class EngineOpTests: XCTestCase {
    struct Array32: Decodable {
        var shape: [Int]
        var data: String
        var tensor: Tensor {
            let bytes = Data(base64Encoded: data)!
            var floats = [Float](repeating: 0, count: bytes.count / 4)
            _ = floats.withUnsafeMutableBytes { bytes.copyBytes(to: $0) }
            return Tensor(shape: shape, data: floats)
        }
    }
    struct Case: Decodable {
        var name: String
        var graph: Graph
        var params: [String: Array32]
        var input: Array32
        var expected: Array32
        func model() throws -> Model { try Model.load(graph: graph, stateDict: params.mapValues(\.tensor)) }
    }
    struct Fixture: Decodable { var cases: [Case] }

    static let fixture: Fixture = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let data = try! Data(contentsOf: root.appendingPathComponent("fixtures/ops/op_cases.json"))
        return try! JSONDecoder().decode(Fixture.self, from: data)
    }()

    /// max|Δ| / max(1, max|y|), or nil when the shapes differ.
    static func relativeError(_ got: Tensor, _ want: Tensor) -> Float? {
        guard got.shape == want.shape else { return nil }
        var maxDiff: Float = 0, maxAbs: Float = 0
        for i in 0..<want.count {
            let d = abs(got.data[i] - want.data[i])
            maxDiff = d.isNaN ? .infinity : Swift.max(maxDiff, d)
            maxAbs = Swift.max(maxAbs, abs(want.data[i]))
        }
        return maxDiff / Swift.max(1, maxAbs)
    }

    func runBattery(_ kernels: KernelSet, threads: Int) throws {
        let cases = Self.fixture.cases
        XCTAssertGreaterThan(cases.count, 80)
        var worst: (String, Float) = ("", 0)
        for c in cases {
            let exec = try Executor(model: try c.model(), kernels: kernels, threads: threads)
            let y = try exec.forward(c.input.tensor)
            let want = c.expected.tensor
            guard let err = Self.relativeError(y, want) else {
                XCTFail("\(c.name) [\(kernels)]: shape \(y.shape), torch \(want.shape)"); continue
            }
            XCTAssertLessThanOrEqual(err, 1e-4, "\(c.name) [\(kernels), \(threads) threads]")
            if err > worst.1 { worst = (c.name, err) }
        }
        print("op battery [\(kernels), \(threads) threads]: \(cases.count) cases, worst relative error \(worst.1) (\(worst.0))")
    }

    func testReferenceKernelsMatchTorch() throws { try runBattery(.reference, threads: 1) }
    func testFastKernelsMatchTorch() throws { try runBattery(.fast, threads: 2) }
    func testFastKernelsSingleThreadMatchTorch() throws { try runBattery(.fast, threads: 1) }
    /// The fast engine with its plain paths where a C kernel has a Swift twin: scalar sigmoid, the general average-pool
    /// window loop, convolutions' images never split among workers.
    func testFastKernelsPlainPathsMatchTorch() throws {
        let saved = (Fast.vectorSigmoid, Fast.fastAvgPool2, Fast.imageParallelWork)
        defer { (Fast.vectorSigmoid, Fast.fastAvgPool2, Fast.imageParallelWork) = saved }
        (Fast.vectorSigmoid, Fast.fastAvgPool2, Fast.imageParallelWork) = (false, false, 0)
        try runBattery(.fast, threads: 2)
    }

    func testEveryOpTypeIsCovered() {
        var seen = Set<String>()
        for c in Self.fixture.cases { for n in c.graph.nodes { seen.insert(n.op.typeName) } }
        let all = ["Conv2d", "ConvTranspose2d", "Linear", "BatchNorm2d", "ReLU", "ReLU6", "Clip", "Sigmoid", "Tanh", "Softmax",
                   "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "GlobalMaxPool", "Flatten", "Reshape", "Dropout", "Identity",
                   "Add", "Mul", "Concat", "LocalResponseNorm", "Pad", "Constant"]
        XCTAssertEqual(Set(all).subtracting(seen), [])
    }
}
