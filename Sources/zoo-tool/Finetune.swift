import ArgumentParser
import Formats
import Foundation
import Zoo

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a pretrained zoo checkpoint on new data and classes.",
        discussion: "Layers are matched by name and shape; the head and any layer whose shape changed are reinitialized. No backward pass runs below the lowest trainable layer.")

    @Argument(help: "Pretrained zoo checkpoint (.h5).") var pretrained: String
    @Option(help: "Number of classes of the new task.") var classes: Int
    @Option(help: "Which parameters to freeze: reused, none, or glob patterns of parameter/layer names (comma separated).") var freeze: String = "reused"
    @Option(help: "Further layers to reinitialize as new (glob patterns of layer names, comma separated).") var reinit: String?
    @Option(name: .customLong("reused-lr-scale"), help: "Learning-rate multiplier for reused layers.") var reusedLRScale: Double = 1
    @Option(name: .customLong("new-lr-scale"), help: "Learning-rate multiplier for new layers.") var newLRScale: Double = 1
    @OptionGroup var options: TrainOptions

    func run() throws {
        try trainingCommand {
            let pre = try ZooCheckpoint.read(path: pretrained)
            let splits = try DataSource.load(path: options.data)
            guard classes >= 1 else { throw ZooError.badInput("--classes must be at least 1") }
            let target = try FineTune.withClasses(pre.model.graph, classes)
            try checkData(splits, graph: target, classes: classes, explicit: true)
            let plan = try FineTune.plan(pretrained: pre.model, target: target, freeze: FreezeMode(freeze),
                                         reusedLRScale: reusedLRScale, newLRScale: newLRScale,
                                         reinit: (reinit ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty },
                                         seed: options.seed)
            var cfg = try options.trainConfig(train: splits.train)
            // Keep the pretrained model's input normalization unless asked to recompute it.
            if !options.normalize, let st = pre.training, let n = try Trainer.config(from: st).normalization { cfg.normalization = n }
            let frozenLayers = target.nodes.filter { n in n.parameterSpecs.contains { $0.trainable } && n.parameterSpecs.filter(\.trainable).allSatisfy { plan.frozen.contains($0.key) } }.map(\.name)
            emit("reused (\(plan.reused.count)): \(plan.reused.joined(separator: ", "))")
            emit("new    (\(plan.new.count)): \(plan.new.joined(separator: ", "))")
            emit("frozen (\(frozenLayers.count)): \(frozenLayers.isEmpty ? "none" : frozenLayers.joined(separator: ", "))")
            var trainer = Trainer(model: plan.model, frozen: plan.frozen, lrScales: plan.lrScales, config: cfg)
            let trainable = trainer.engine.trainableParameters.reduce(0) { $0 + plan.model.tensors[$1]!.count }
            let need = trainer.engine.nodesNeedingBackward()
            let lowest = target.nodes.indices.first { need[$0] }.map { target.nodes[$0].name } ?? "none"
            emit("trainable parameters: \(trainable) of \(target.parameterCount); backward stops at layer \(lowest)")
            try runEpochs(&trainer, splits: splits, classes: classes, options: options)
        }
    }
}
