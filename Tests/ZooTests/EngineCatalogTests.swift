import Foundation
import XCTest
@testable import Zoo

/// Fast and reference kernels agree on whole catalog architectures (small inputs, randomized BatchNorm
/// statistics so that folding conv+BN is exercised). Torch equality of the kernels is the op battery's job.
final class EngineCatalogTests: XCTestCase {
    func randomizedModel(_ g: Graph, seed: UInt64) -> Model { Self.randomizedModel(g, seed: seed) }
    static func randomizedModel(_ g: Graph, seed: UInt64) -> Model {
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
    /// Batch 4 at 48²: every inverted-residual block runs as one fused step (expand, depthwise, project, residual Add); the
    /// first block (no expand) as depthwise + project. Checked against the reference kernels.
    func testMobileNetV2FusedBlocks() throws {
        try check("mobilenet_v2", size: [48], batch: 4)
        guard Fast.expandDepthwiseApplies(Conv2dGeometry(batch: 1, inC: 8, inH: 8, inW: 8, outC: 8, outH: 8, outW: 8, kH: 1, kW: 1, strideH: 1,
                                                         strideW: 1, padTop: 0, padLeft: 0, dilH: 1, dilW: 1, groups: 1), actE: .none,
                                          Conv2dGeometry(batch: 1, inC: 8, inH: 8, inW: 8, outC: 8, outH: 8, outW: 8, kH: 3, kW: 3, strideH: 1,
                                                         strideW: 1, padTop: 1, padLeft: 1, dilH: 1, dilW: 1, groups: 8), actD: .none)
        else { return }  // no AVX-512F (or ZOO_FUSE=0): nothing fused
        let g = try Catalog.graph("mobilenet_v2", inputSize: [48])
        let ex = try Executor(model: randomizedModel(g, seed: 7), kernels: .fast, threads: 2)
        ex.collectTimings = true
        _ = try ex.forward(Tensor(shape: [4] + g.inputShape, data: [Float](repeating: 0.5, count: 4 * g.inputShape.reduce(1, *))))
        let names = Set(ex.timings.map(\.node))
        XCTAssertTrue(names.contains("features.3.conv.0.0"))
        XCTAssertFalse(names.contains("features.3.conv.1.0") || names.contains("features.3.conv.2"), "\(names.sorted())")
        // The first block (no expand): its depthwise and project convolutions run as one step.
        XCTAssertTrue(names.contains("features.1.conv.0.0"))
        XCTAssertEqual(names.contains("features.1.conv.1"), !Fast.fuseDepthwiseProject, "\(names.sorted())")
        if Fast.fuseProject { XCTAssertFalse(ex.timings.contains { $0.op == "Add" }, "\(ex.timings.map(\.op))") }
    }

    /// `forwardAll` (unfused: raw conv weights) after `forward` (BN folded into the weights) on one executor: the
    /// Winograd weight caches of the two must not be shared.
    func testForwardAllAfterForwardKeepsUnfoldedWeights() throws {
        let g = try Catalog.graph("resnet18", inputSize: [40, 36])
        let m = randomizedModel(g, seed: 7)
        var rng = SeededRandom(seed: 5)
        let x = Tensor(shape: [1] + g.inputShape, data: (0..<g.inputShape.reduce(1, *)).map { _ in rng.nextNormal() })
        let ex = try Executor(model: m, kernels: .fast, threads: 2)
        _ = try ex.forward(x)
        let all = try ex.forwardAll(x)
        let fresh = try Executor(model: m, kernels: .fast, threads: 2).forwardAll(x)
        for name in ["layer1.0.conv1", "layer1.0.bn1", g.output] {
            let a = try XCTUnwrap(all[name]), b = try XCTUnwrap(fresh[name])
            XCTAssertLessThanOrEqual(try XCTUnwrap(EngineOpTests.relativeError(a, b)), 1e-6, name)
        }
    }

    /// Batch sharding (each worker runs the whole graph on its own images): same result as the reference kernels and as
    /// the unsharded fast run; odd batches and one thread are not sharded.
    func testBatchShardsAgreeWithReferenceAndUnsharded() throws {
        let saved = (Executor.shardMinMACsPerImage, Executor.shardMACsPerWeight, Executor.batchSharding)
        defer { (Executor.shardMinMACsPerImage, Executor.shardMACsPerWeight, Executor.batchSharding) = saved }
        // Small inputs: let them shard although they are far below the thresholds.
        Executor.shardMinMACsPerImage = 0
        Executor.shardMACsPerWeight = 0
        for (name, size) in [("resnet18", [40, 36]), ("googlenet", [48]), ("mobilenet_v2", [48])] {
            let g = try Catalog.graph(name, inputSize: size)
            let m = randomizedModel(g, seed: 3)
            for batch in [2, 3] {
                var rng = SeededRandom(seed: UInt64(batch))
                let x = Tensor(shape: [batch] + g.inputShape, data: (0..<(batch * g.inputShape.reduce(1, *))).map { _ in rng.nextNormal() })
                Executor.batchSharding = true
                let ex = try Executor(model: m, kernels: .fast, threads: 2)
                let sharded = try ex.forward(x)
                XCTAssertEqual(ex.lastShards, batch % 2 == 0 ? 2 : 1, "\(name) b\(batch)")
                let again = try ex.forward(x)
                XCTAssertEqual(again.data, sharded.data, "\(name) b\(batch): a second sharded run reuses the shards' state")
                let one = try Executor(model: m, kernels: .fast, threads: 1)
                _ = try one.forward(x)
                XCTAssertEqual(one.lastShards, 1)
                Executor.batchSharding = false
                let plain = try Executor(model: m, kernels: .fast, threads: 2).forward(x)
                if batch == 2 {
                    let ref = try Executor(model: m, kernels: .reference, threads: 1).forward(x)
                    XCTAssertEqual(sharded.shape, ref.shape)
                    XCTAssertLessThanOrEqual(try XCTUnwrap(EngineOpTests.relativeError(sharded, ref)), 1e-4, "\(name) b\(batch)")
                }
                XCTAssertLessThanOrEqual(try XCTUnwrap(EngineOpTests.relativeError(sharded, plain)), 1e-5, "\(name) b\(batch)")
            }
        }
    }

    /// Which runs shard at the real thresholds (decided from shapes alone; nothing runs).
    func testShardThresholds() throws {
        func shards(_ name: String, batch: Int, threads: Int = 2) throws -> Int? {
            let g = try Catalog.graph(name)
            let ex = try Executor(model: Model.initialized(graph: g, seed: 1), kernels: .fast, threads: threads)
            return ex.shardCount(Tensor(shape: [batch] + g.inputShape, data: [Float](repeating: 0, count: batch * g.inputShape.reduce(1, *))))
        }
        XCTAssertEqual(try shards("resnet18", batch: 8), 2)
        XCTAssertEqual(try shards("mobilenet_v2", batch: 2), 2)
        XCTAssertEqual(try shards("googlenet", batch: 8), 2)
        XCTAssertNil(try shards("resnet18", batch: 1))
        XCTAssertNil(try shards("resnet18", batch: 8, threads: 1))
        XCTAssertNil(try shards("vgg11", batch: 8), "3.2 M floats per image in the largest layer output")
        XCTAssertNil(try shards("alexnet", batch: 8), "61 M weights against 2.8 G multiply-adds per shard")
        XCTAssertNil(try shards("lenet", batch: 256), "0.4 M multiply-adds per image")
    }

    func testGoogLeNet() throws { try check("googlenet", size: [48], batch: 1) }
    func testNiN() throws { try check("nin", size: [96], batch: 1) }
}
