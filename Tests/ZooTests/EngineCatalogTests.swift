import Foundation
import XCTest
@testable import Zoo

/// Fast and reference kernels agree on whole catalog architectures (small inputs, randomized BatchNorm
/// statistics so that folding conv+BN is exercised). Torch equality of the kernels is the op battery's job.
final class EngineCatalogTests: XCTestCase {
    func randomizedModel(_ g: Graph, seed: UInt64) -> Model {
        var m = Model.initialized(graph: g, seed: seed)
        var rng = SeededRandom(seed: seed + 1)
        for node in g.nodes {
            guard case .batchNorm2d = node.op else { continue }
            for key in ["weight", "bias", "running_mean", "running_var"] {
                let name = node.name + "." + key
                let t = m.tensors[name]!
                let data = t.data.map { _ -> Float in
                    key == "running_var" ? 0.5 + rng.nextFloat() : (key == "weight" ? 1 : 0) + 0.3 * rng.nextNormal()
                }
                m.tensors[name] = Tensor(shape: t.shape, data: data)
            }
        }
        return m
    }

    func check(_ name: String, size: [Int]?, batch: Int, tolerance: Float = 1e-4) throws {
        let g = try Catalog.graph(name, inputSize: size)
        let m = randomizedModel(g, seed: 7)
        var rng = SeededRandom(seed: 11)
        let x = Tensor(shape: [batch] + g.inputShape, data: (0..<(batch * g.inputShape.reduce(1, *))).map { _ in rng.nextNormal() })
        let ref = try Executor(model: m, kernels: .reference, threads: 1).forward(x)
        let fast = try Executor(model: m, kernels: .fast, threads: 2).forward(x)
        let err = try XCTUnwrap(EngineOpTests.relativeError(fast, ref))
        XCTAssertLessThanOrEqual(err, tolerance, name)
        XCTAssertEqual(ref.shape, try g.outputShape(batch: batch))
        XCTAssertFalse(ref.data.contains { !$0.isFinite }, name)
    }

    func testLeNet() throws { try check("lenet", size: nil, batch: 3) }
    func testResNet18() throws { try check("resnet18", size: [40, 36], batch: 2) }
    func testMobileNetV2() throws { try check("mobilenet_v2", size: [32], batch: 2) }
    func testGoogLeNet() throws { try check("googlenet", size: [48], batch: 1) }
    func testNiN() throws { try check("nin", size: [96], batch: 1) }
}
