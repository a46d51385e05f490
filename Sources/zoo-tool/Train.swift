import ArgumentParser
import Formats
import Foundation
import Zoo

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model from scratch (or continue a checkpoint with --resume).",
        discussion: "ARCH is a catalog name (`zoo-tool list`), an architecture JSON file or a zoo checkpoint (its architecture, freshly initialized).")

    @Argument(help: "Catalog name, architecture JSON or zoo .h5 (ignored with --resume).") var arch: String?
    @Option(help: "Number of classes (default: from the data).") var classes: Int?
    @Option(help: "Continue exactly from this checkpoint's weights and optimizer state.") var resume: String?
    @OptionGroup var options: TrainOptions

    func run() throws {
        try trainingCommand {
            let splits = try DataSource.load(path: options.data)
            var trainer: Trainer
            let history: [EpochMetrics]
            if let resume {
                let c = try ZooCheckpoint.read(path: resume)
                guard let state = c.training else { throw ZooError.file(path: resume, message: "holds no training state; cannot resume") }
                var cfg = try Trainer.config(from: state)
                cfg.epochs = options.epochs
                let classes = try outputClasses(c.model.graph)
                try checkData(splits, graph: c.model.graph, classes: classes, explicit: false)
                trainer = Trainer.resuming(model: c.model, state: state, config: cfg)
                emit("resuming \(resume) at epoch \(state.epoch) (step \(state.step)), training to epoch \(cfg.epochs)")
                history = readMetrics(options.log)
            } else {
                guard let arch else { throw ValidationError("give an architecture (catalog name or file) or --resume CHECKPOINT") }
                let classes = self.classes ?? splits.train.classCount
                let graph = try TrainInputs.graph(arch, classes: classes, sample: splits.train.sampleShape)
                try checkData(splits, graph: graph, classes: try outputClasses(graph), explicit: self.classes != nil)
                let model = Model.initialized(graph: graph, seed: options.seed)
                trainer = Trainer(model: model, config: try options.trainConfig(train: splits.train))
                emit("training \(graph.name) (\(graph.parameterCount) parameters) on \(splits.train.count) images" +
                    (splits.test.map { ", testing on \($0.count)" } ?? "") + ", \(trainer.config.optimizer.kind.rawValue) lr \(trainer.config.optimizer.lr)")
                history = []
            }
            try runEpochs(&trainer, splits: splits, classes: try outputClasses(trainer.model.graph), options: options, history: history)
        }
    }
}
