import Foundation
import XCTest
@testable import Zoo

final class TrainingOptimizerTests: XCTestCase {
    func runTwoSteps(_ cfg: OptimizerConfig, _ name: String, lr: Double) throws {
        let f = try TrainFixtures.npz("train/optimizers.npz")
        var tensors = ["p": Tensor(shape: [6, 5], data: f["p0"]!.values)]
        var opt = Optimizer(config: cfg, groups: [ParameterGroup(name: "all", parameters: ["p"])])
        for k in 1...2 {
            opt.step(tensors: &tensors, grads: ["p": f["g\(k)"]!.values], lr: lr)
            let err = TrainFixtures.relErr(tensors["p"]!.data, f["\(name)_step\(k)"]!.values)
            XCTAssertLessThanOrEqual(err, 1e-5, "\(name) step \(k)")
            print("optimizer \(name) step \(k): max |Δ| / max |p| = \(err)")
            // elementwise relative check too
            let ref = f["\(name)_step\(k)"]!.values
            for i in 0..<ref.count { XCTAssertEqual(tensors["p"]!.data[i], ref[i], accuracy: 1e-5 * max(abs(ref[i]), 1e-3), "\(name)[\(i)]") }
        }
    }
    func testSGDMomentumMatchesPyTorch() throws { try runTwoSteps(OptimizerConfig(kind: .sgd, lr: 0.1, momentum: 0.9, weightDecay: 1e-2), "sgd", lr: 0.1) }
    func testSGDNesterovMatchesPyTorch() throws { try runTwoSteps(OptimizerConfig(kind: .sgd, lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-2), "sgd_nesterov", lr: 0.1) }
    func testAdamMatchesPyTorch() throws { try runTwoSteps(OptimizerConfig(kind: .adam, lr: 1e-2, weightDecay: 1e-2), "adam", lr: 1e-2) }
    func testAdamWMatchesPyTorch() throws { try runTwoSteps(OptimizerConfig(kind: .adamw, lr: 1e-2, weightDecay: 1e-2), "adamw", lr: 1e-2) }
    func testRMSpropMatchesPyTorch() throws {
        try runTwoSteps(OptimizerConfig(kind: .rmsprop, lr: 1e-2, momentum: 0.9, weightDecay: 1e-2, centered: true), "rmsprop", lr: 1e-2)
    }

    func testParameterGroupsScaleAndFreeze() throws {
        var t = ["a": Tensor(shape: [1], data: [1]), "b": Tensor(shape: [1], data: [1]), "c": Tensor(shape: [1], data: [1])]
        var opt = Optimizer(config: OptimizerConfig(kind: .sgd, lr: 0.5),
                            groups: [ParameterGroup(name: "reused", parameters: ["a"], lrScale: 0.1),
                                     ParameterGroup(name: "new", parameters: ["b"], lrScale: 10, weightDecay: 0.5)])
        opt.step(tensors: &t, grads: ["a": [1], "b": [1], "c": [1]], lr: 0.5)
        XCTAssertEqual(t["a"]!.data[0], 1 - 0.05, accuracy: 1e-7)
        XCTAssertEqual(t["b"]!.data[0], 1 - 5 * (1 + 0.5), accuracy: 1e-6)
        XCTAssertEqual(t["c"]!.data[0], 1)   // in no group: frozen
    }

    func testSchedules() {
        let step = LRSchedule(kind: .step, stepSize: 2, gamma: 0.5)
        XCTAssertEqual([0, 1, 2, 3, 4].map { step.lr(base: 1, epoch: $0, batch: 0, batchesPerEpoch: 10) }, [1, 1, 0.5, 0.5, 0.25])
        let cos = LRSchedule(kind: .cosine, totalEpochs: 4)
        // PyTorch CosineAnnealingLR(T_max=4): 1, 0.8536, 0.5, 0.1464, 0
        let got = (0...4).map { cos.lr(base: 1, epoch: $0, batch: 0, batchesPerEpoch: 1) }
        for (g, e) in zip(got, [1, 0.85355339, 0.5, 0.14644661, 0] as [Double]) { XCTAssertEqual(g, e, accuracy: 1e-6) }
        let warm = LRSchedule(kind: .constant, warmupEpochs: 1)
        XCTAssertEqual((0..<5).map { warm.lr(base: 1, epoch: 0, batch: $0, batchesPerEpoch: 4) }, [0.25, 0.5, 0.75, 1, 1])
        XCTAssertEqual(warm.lr(base: 1, epoch: 1, batch: 0, batchesPerEpoch: 4), 1)
    }

    func testCrossEntropyWithSmoothingAndMSE() {
        // torch: F.cross_entropy(tensor([[1.,2.,3.],[0.,0.,0.]]), tensor([2,0]), label_smoothing=0.2) = 0.8531091
        let logits = Tensor(shape: [2, 3], data: [1, 2, 3, 0, 0, 0])
        let (l, g) = Loss.crossEntropy(logits: logits, labels: [2, 0], labelSmoothing: 0.2)
        XCTAssertEqual(l, 0.8531091, accuracy: 1e-5)
        // gradient rows sum to zero
        XCTAssertEqual(g.data[0] + g.data[1] + g.data[2], 0, accuracy: 1e-7)
        XCTAssertEqual(g.data[3], (1.0 / 3 - (0.2 / 3 + 0.8)) / 2, accuracy: 1e-6)
        let (m, mg) = Loss.mse(prediction: Tensor(shape: [2], data: [1, 3]), target: Tensor(shape: [2], data: [0, 0]))
        XCTAssertEqual(m, 5)
        XCTAssertEqual(mg.data, [1, 3])
    }
}
