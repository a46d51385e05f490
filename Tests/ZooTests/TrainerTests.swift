import Foundation
import XCTest
@testable import Zoo

final class TrainerTests: XCTestCase {
    func smallDigits() throws -> DataSplits {
        let s = try DataSource.load(path: TrainFixtures.path("data/digits_0-4.npz"))
        return DataSplits(train: s.train.subset(Array(0..<48)), test: s.test!.subset(Array(0..<20)))
    }

    func config(_ kind: OptimizerKind, epochs: Int) -> TrainConfig {
        TrainConfig(optimizer: OptimizerConfig(kind: kind, lr: kind == .sgd ? 0.5 : 0.01, momentum: kind == .sgd ? 0.9 : 0),
                    schedule: LRSchedule(kind: .cosine, totalEpochs: epochs, warmupEpochs: 1), epochs: epochs, batchSize: 16, seed: 3,
                    labelSmoothing: 0.1, augmentation: Augmentation(cropPadding: 2, horizontalFlip: false),
                    normalization: Normalization(mean: [0.2], std: [0.3]))
    }

    func testResumeIsBitExact() throws {
        let d = try smallDigits()
        for kind in [OptimizerKind.adam, .sgd] {
            let model = Model.initialized(graph: TrainFixtures.lenet(classes: 5), seed: 1)
            var straight = Trainer(model: model, config: config(kind, epochs: 4))
            for _ in 0..<4 { _ = try straight.trainEpoch(d.train) }
            var first = Trainer(model: model, config: config(kind, epochs: 4))
            for _ in 0..<2 { _ = try first.trainEpoch(d.train) }
            let state = first.trainingState()
            let cfg = try Trainer.config(from: state)
            XCTAssertEqual(cfg, config(kind, epochs: 4))
            var resumed = Trainer.resuming(model: first.model, state: state, config: cfg)
            for _ in 0..<2 { _ = try resumed.trainEpoch(d.train) }
            XCTAssertEqual(resumed.step, straight.step)
            XCTAssertEqual(resumed.model.tensors, straight.model.tensors, "\(kind)")
            XCTAssertNotEqual(resumed.model.tensors, model.tensors)
        }
    }

    /// A training step on batch shards (each worker runs forward and backward of its own images): the same loss, logits
    /// and gradients as the step on the whole batch.
    func testBatchShardStepMatchesWholeStep() throws {
        let savedThreads = TrainingThreads.count, savedSharding = TrainingEngine.batchSharding
        defer { TrainingThreads.count = savedThreads; TrainingEngine.batchSharding = savedSharding }
        TrainingThreads.count = 2
        var engine = TrainingEngine(model: Model.initialized(graph: TrainFixtures.lenet(classes: 10), seed: 4))
        var rng = SeededRandom(seed: 9)
        let x = Tensor(shape: [64, 1, 28, 28], data: (0..<(64 * 784)).map { _ in rng.nextFloat() })
        let labels = (0..<64).map { ($0 * 7) % 10 }
        TrainingEngine.batchSharding = true
        XCTAssertEqual(engine.trainShards(x), 2)
        XCTAssertNil(engine.trainShards(Tensor(shape: [63, 1, 28, 28], data: [Float](repeating: 0, count: 63 * 784))), "odd batch")
        XCTAssertNil(engine.trainShards(Tensor(shape: [8, 1, 28, 28], data: [Float](repeating: 0, count: 8 * 784))), "too little work per weight")
        var r1 = SeededRandom(seed: 1), r2 = SeededRandom(seed: 1)
        let sharded = try engine.trainStep(x, labels: labels, labelSmoothing: 0.1, rng: &r1)
        TrainingEngine.batchSharding = false
        XCTAssertNil(engine.trainShards(x))
        let whole = try engine.trainStep(x, labels: labels, labelSmoothing: 0.1, rng: &r2)
        XCTAssertEqual(sharded.loss, whole.loss, accuracy: 1e-6 * abs(whole.loss))
        XCTAssertEqual(sharded.output.shape, whole.output.shape)
        XCTAssertLessThanOrEqual(TrainFixtures.relErr(sharded.output.data, whole.output.data), 1e-6)
        let gs = try XCTUnwrap(sharded.gradients).parameters, gw = try XCTUnwrap(whole.gradients).parameters
        XCTAssertEqual(Set(gs.keys), Set(engine.trainableParameters))
        XCTAssertEqual(Set(gs.keys), Set(gw.keys))
        for (k, v) in gw { XCTAssertLessThanOrEqual(TrainFixtures.relErr(gs[k]!, v), 1e-5, k) }
        XCTAssertEqual(r1.next(), r2.next(), "the rng advances alike")

        TrainingEngine.batchSharding = true
        // A non-finite loss: no gradients, either way.
        var bad = x
        bad.data[5] = .nan
        var r3 = SeededRandom(seed: 1)
        let nanStep = try engine.trainStep(bad, labels: labels, rng: &r3)
        XCTAssertTrue(nanStep.loss.isNaN)
        XCTAssertNil(nanStep.gradients)
    }

    /// Batch shards with BatchNorm in training mode (statistics all-reduced between the shards), with and without a frozen
    /// backbone: the same loss, logits, gradients and running statistics as the whole step.
    func testBatchShardStepWithBatchNorm() throws {
        let saved = (TrainingThreads.count, TrainingEngine.batchSharding, TrainingEngine.shardMACsPerWeight)
        defer { (TrainingThreads.count, TrainingEngine.batchSharding, TrainingEngine.shardMACsPerWeight) = saved }
        TrainingThreads.count = 2
        TrainingEngine.shardMACsPerWeight = 0  // a small input shards too
        let g = try Catalog.graph("resnet18", classes: 10, inputSize: [24])
        var model = Model.initialized(graph: g, seed: 2)
        var rng = SeededRandom(seed: 5)
        for (k, t) in model.tensors where k.hasSuffix("running_var") || k.hasSuffix("running_mean") {
            model.tensors[k] = Tensor(shape: t.shape, data: t.data.map { _ in 0.5 + rng.nextFloat() })
        }
        let x = Tensor(shape: [6, 3, 24, 24], data: (0..<(6 * 3 * 576)).map { _ in rng.nextFloat() * 2 - 1 })
        let labels = [1, 3, 5, 7, 9, 0]
        for frozen in [Set<String>(), Bench.backboneParameters(g)] {
            var a = TrainingEngine(model: model, frozen: frozen), b = a
            TrainingEngine.batchSharding = true
            XCTAssertEqual(a.trainShards(x), 2)
            var r1 = SeededRandom(seed: 1), r2 = SeededRandom(seed: 1)
            let sharded = try a.trainStep(x, labels: labels, rng: &r1)
            TrainingEngine.batchSharding = false
            let whole = try b.trainStep(x, labels: labels, rng: &r2)
            XCTAssertEqual(sharded.loss, whole.loss, accuracy: 1e-5 * abs(whole.loss))
            XCTAssertLessThanOrEqual(TrainFixtures.relErr(sharded.output.data, whole.output.data), 1e-5)
            let gs = try XCTUnwrap(sharded.gradients).parameters, gw = try XCTUnwrap(whole.gradients).parameters
            XCTAssertEqual(Set(gs.keys), Set(gw.keys))
            XCTAssertEqual(Set(gs.keys), Set(a.trainableParameters))
            for (k, v) in gw { XCTAssertLessThanOrEqual(TrainFixtures.relErr(gs[k]!, v), 1e-4, "\(k) frozen \(frozen.count)") }
            var statKeys = 0
            for (k, t) in b.model.tensors where k.hasSuffix("running_var") || k.hasSuffix("running_mean") {
                XCTAssertNotEqual(t.data, model.tensors[k]!.data, "\(k) was updated")
                XCTAssertLessThanOrEqual(TrainFixtures.relErr(a.model.tensors[k]!.data, t.data), 1e-5, k)
                statKeys += 1
            }
            XCTAssertEqual(statKeys, 40)
        }
    }

    func testNaNLossStops() throws {
        let d = try smallDigits()
        var cfg = config(.sgd, epochs: 1)
        cfg.optimizer.lr = 1e39   // float32 infinity: the second batch sees inf weights
        cfg.schedule = LRSchedule()
        var t = Trainer(model: Model.initialized(graph: TrainFixtures.lenet(classes: 5), seed: 1), config: cfg)
        XCTAssertThrowsError(try t.trainEpoch(d.train)) { e in
            XCTAssertEqual("\(e)", "training diverged: the loss is NaN at epoch 1, batch 2; stopping (lower the learning rate)")
        }
    }

    func testFineTunePlanFreezesReusedAndReinitsHead() throws {
        let pre = Model.initialized(graph: TrainFixtures.lenet(classes: 5), seed: 1)
        let target = try FineTune.withClasses(pre.graph, 3)
        let plan = try FineTune.plan(pretrained: pre, target: target, freeze: .reused, reusedLRScale: 0.1, newLRScale: 10, seed: 2)
        XCTAssertEqual(plan.reused, ["0", "3", "7", "9"])
        XCTAssertEqual(plan.new, ["11"])
        XCTAssertEqual(plan.frozen, ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias"])
        XCTAssertEqual(plan.model.tensors["11.weight"]!.shape, [3, 84])
        XCTAssertEqual(plan.model.tensors["3.weight"], pre.tensors["3.weight"])
        XCTAssertEqual(plan.lrScales["11.bias"], 10)
        XCTAssertEqual(plan.lrScales["0.weight"], 0.1)
        let p2 = try FineTune.plan(pretrained: pre, target: target, freeze: .pattern("0.*, 3"), seed: 2)
        XCTAssertEqual(p2.frozen, ["0.weight", "0.bias", "3.weight", "3.bias"])
        XCTAssertTrue(FineTune.glob("layer?.*.conv*", "layer1.0.conv2.weight"))
        XCTAssertFalse(FineTune.glob("layer?.*.conv*", "layer1.0.bn1.weight"))
    }

    func testEvaluateConfusion() throws {
        let d = try smallDigits()
        let m = Model.initialized(graph: TrainFixtures.lenet(classes: 5), seed: 1)
        let r = try Trainer.evaluate(model: m, data: d.test!, normalization: nil, classes: 5)
        XCTAssertEqual(r.confusion.flatMap { $0 }.reduce(0, +), 20)
        XCTAssertEqual(Double((0..<5).map { r.confusion[$0][$0] }.reduce(0, +)) / 20, r.accuracy)
        XCTAssertGreaterThan(r.loss, 0)
        XCTAssertThrowsError(try Trainer.evaluate(model: m, data: d.test!, normalization: nil, classes: 4))
    }

    func testCurvePlotSVG() {
        let m = (1...3).map { EpochMetrics(epoch: $0, trainLoss: 1 / Double($0), trainAccuracy: 0.5, testLoss: nil, testAccuracy: 0.4,
                                            imagesPerSecond: 1, seconds: 1, learningRates: [:]) }
        let s = CurvePlot.svg(m)
        XCTAssertTrue(s.hasPrefix("<svg"))
        XCTAssertEqual(s.components(separatedBy: "<polyline").count - 1, 3)
        XCTAssertTrue(s.hasSuffix("</svg>\n"))
    }
}
