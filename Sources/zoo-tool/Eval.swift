import ArgumentParser
import Formats
import Foundation
import Zoo

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate a zoo checkpoint: loss, accuracy and confusion matrix.")

    @Argument(help: "Zoo checkpoint (.h5).") var file: String
    @Option(help: "Dataset (as for train).") var data: String
    @Option(help: "Which split: test (default when present) or train.") var split: String?
    @Option(name: .customLong("batch-size")) var batchSize: Int = 256

    func run() throws {
        try trainingCommand {
            let c = try ZooCheckpoint.read(path: file)
            let splits = try DataSource.load(path: data)
            let which = split ?? (splits.test != nil ? "test" : "train")
            let ds: Dataset
            switch which {
            case "test":
                guard let t = splits.test else { throw ZooError.file(path: data, message: "has no test split") }
                ds = t
            case "train": ds = splits.train
            default: throw ZooError.badInput("--split \(which): expected test or train")
            }
            let classes = try outputClasses(c.model.graph)
            try ds.checkImageShape(c.model.graph.inputShape)
            try ds.checkLabels(classes: classes)
            let norm = try c.training.flatMap { try Trainer.config(from: $0).normalization }
            let r = try Trainer.evaluate(model: c.model, data: ds, normalization: norm, batchSize: max(1, batchSize), classes: classes)
            emit("\(file) on \(data) (\(which), \(r.count) images)")
            emit(String(format: "loss      %.4f", r.loss))
            emit(String(format: "accuracy  %.2f%% (%d/%d)", r.accuracy * 100, Int((r.accuracy * Double(r.count)).rounded()), r.count))
            emit("confusion matrix (rows: true class, columns: predicted)")
            let names = ds.classNames ?? (0..<classes).map(String.init)
            let w = max(5, (r.confusion.flatMap { $0 }.map { String($0).count }.max() ?? 1) + 1, (names.map(\.count).max() ?? 1) + 1)
            func pad(_ s: String) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }
            emit(pad("") + names.map(pad).joined())
            for (i, row) in r.confusion.enumerated() { emit(pad(names[i]) + row.map { pad(String($0)) }.joined()) }
        }
    }
}
