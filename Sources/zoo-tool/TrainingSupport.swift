import ArgumentParser
import Formats
import Foundation
import Zoo
#if canImport(Glibc)
import Glibc
#endif

/// Options shared by `train` and `finetune`.
struct TrainOptions: ParsableArguments {
    @Option(help: "Dataset: a .npz (Keras mnist.npz keys), a folder of MNIST IDX files, or a folder with one sub-folder of PNGs per class.")
    var data: String
    @Option(help: "Total number of epochs (a resumed run continues up to this many).") var epochs: Int = 10
    @Option(name: .customLong("batch-size"), help: "Images per batch.") var batchSize: Int = 64
    @Option(help: "Base learning rate (default: 0.1 for sgd, 0.001 for adam/adamw, 0.01 for rmsprop).") var lr: Double?
    @Option(help: "sgd, adam, adamw or rmsprop.") var optimizer: String = "sgd"
    @Option(help: "Momentum (sgd, rmsprop); default 0.9 for sgd.") var momentum: Double?
    @Flag(help: "Nesterov momentum (sgd).") var nesterov = false
    @Option(name: .customLong("weight-decay"), help: "Weight decay (L2 for sgd/adam/rmsprop, decoupled for adamw).") var weightDecay: Double?
    @Option(help: "Learning-rate schedule: constant, step or cosine.") var schedule: String = "constant"
    @Option(name: .customLong("step-size"), help: "Epochs between decays (step schedule).") var stepSize: Int = 10
    @Option(help: "Decay factor (step schedule).") var gamma: Double = 0.1
    @Option(name: .customLong("warmup-epochs"), help: "Linear warm-up over this many epochs.") var warmupEpochs: Int = 0
    @Option(name: .customLong("label-smoothing"), help: "Cross-entropy label smoothing.") var labelSmoothing: Double = 0
    @Option(name: .customLong("crop-padding"), help: "Random crop after zero padding by this many pixels (0 = off).") var cropPadding: Int = 0
    @Flag(help: "Random horizontal flips.") var hflip = false
    @Flag(help: "Normalize inputs with the training set's per-channel mean and std (stored in the checkpoint).") var normalize = false
    @Option(help: "Seed for initialization, shuffling, augmentation and dropout.") var seed: UInt64 = 0
    @Option(help: "Write one JSON object per epoch to this file.") var log: String?
    @Option(help: "Draw loss and accuracy curves to this SVG file.") var plot: String?
    @Option(name: .shortAndLong, help: "Output zoo checkpoint (.h5), rewritten after every epoch.") var output: String
    @Option(help: "Also export the trained model to this ONNX file at the end.") var onnx: String?
    @Flag(help: "Print the trained model's summary at the end (frozen parameters in parentheses).") var summary = false

    func optimizerConfig() throws -> OptimizerConfig {
        guard let kind = OptimizerKind(rawValue: optimizer.lowercased()) else {
            throw ZooError.badInput("--optimizer \(optimizer): expected one of sgd, adam, adamw, rmsprop")
        }
        let defLR: Double = kind == .sgd ? 0.1 : kind == .rmsprop ? 0.01 : 0.001
        let lr = self.lr ?? defLR
        guard lr > 0, lr.isFinite else { throw ZooError.badInput("--lr must be positive, got \(lr)") }
        return OptimizerConfig(kind: kind, lr: lr, momentum: momentum ?? (kind == .sgd ? 0.9 : 0), nesterov: nesterov, weightDecay: weightDecay)
    }

    func trainConfig(train: Dataset) throws -> TrainConfig {
        guard let sk = ScheduleKind(rawValue: schedule.lowercased()) else {
            throw ZooError.badInput("--schedule \(schedule): expected constant, step or cosine")
        }
        guard epochs >= 1 else { throw ZooError.badInput("--epochs must be at least 1") }
        guard batchSize >= 1 else { throw ZooError.badInput("--batch-size must be at least 1") }
        return TrainConfig(optimizer: try optimizerConfig(),
                           schedule: LRSchedule(kind: sk, stepSize: stepSize, gamma: gamma, totalEpochs: epochs, warmupEpochs: warmupEpochs),
                           epochs: epochs, batchSize: batchSize, seed: seed, labelSmoothing: labelSmoothing,
                           augmentation: Augmentation(cropPadding: cropPadding, horizontalFlip: hflip),
                           normalization: normalize ? Normalization.compute(train) : nil)
    }
}

/// A model file or name for training: catalog name, architecture JSON, or zoo checkpoint.
enum TrainInputs {
    static func isZooCheckpoint(_ path: String) -> Bool {
        FileManager.default.fileExists(atPath: path) && ZooCheckpoint.isZooCheckpoint(path: path)
    }

    static func graph(_ spec: String, classes: Int?, sample: [Int]) throws -> Graph {
        if FileManager.default.fileExists(atPath: spec) {
            if isZooCheckpoint(spec) { return try ZooCheckpoint.read(path: spec).model.graph }
            guard let d = FileManager.default.contents(atPath: spec) else { throw ZooError.file(path: spec, message: "cannot read the file") }
            do { return try Graph.fromJSON(d) } catch let e as ZooError { throw ZooError.file(path: spec, message: e.description) }
        }
        guard sample.count == 3 else { throw ZooError.badInput("images must be C×H×W") }
        return try Catalog.graph(spec, classes: classes, inChannels: sample[0], inputSize: [sample[1], sample[2]])
    }
}

/// The progress line: redrawn in place on a terminal (throttled), plain lines otherwise.
final class ProgressPrinter {
    let tty = isatty(STDOUT_FILENO) != 0
    var last = Date.distantPast
    var width = 0

    func batch(_ p: BatchProgress) {
        guard tty else { return }
        let now = Date()
        if now.timeIntervalSince(last) < 0.1 && p.batch < p.batches { return }
        last = now
        let line = String(format: "epoch %d/%d  batch %d/%d  loss %.4f  acc %.1f%%  %.0f img/s  ETA %@",
                          p.epoch, p.epochs, p.batch, p.batches, p.loss, p.accuracy * 100, p.imagesPerSecond, Self.clock(p.etaSeconds))
        let padded = line + String(repeating: " ", count: max(0, width - line.count))
        width = line.count
        FileHandle.standardOutput.write(Data(("\r" + padded).utf8))
    }

    func epoch(_ m: EpochMetrics, epochs: Int) {
        var line = String(format: "epoch %d/%d  train loss %.4f acc %.1f%%", m.epoch, epochs, m.trainLoss, m.trainAccuracy * 100)
        if let tl = m.testLoss, let ta = m.testAccuracy { line += String(format: "  test loss %.4f acc %.1f%%", tl, ta * 100) }
        let lrs = m.learningRates.keys.sorted().map { String(format: "%.3g", m.learningRates[$0]!) }.joined(separator: "/")
        line += String(format: "  %.0f img/s  lr %@  %.1fs", m.imagesPerSecond, lrs, m.seconds)
        if tty { FileHandle.standardOutput.write(Data(("\r" + line + String(repeating: " ", count: max(0, width - line.count)) + "\n").utf8)); width = 0 }
        else { emit(line) }
    }

    static func clock(_ s: Double) -> String {
        guard s.isFinite else { return "?" }
        let t = Int(s.rounded())
        return String(format: "%d:%02d", t / 60, t % 60)
    }
}

/// The epoch loop shared by train and finetune: evaluates, logs, plots and checkpoints after every epoch.
func runEpochs(_ trainer: inout Trainer, splits: DataSplits, classes: Int, options o: TrainOptions, history: [EpochMetrics] = []) throws {
    let progress = ProgressPrinter()
    var metrics = history
    if let log = o.log, trainer.epochsDone == 0 { try? FileManager.default.removeItem(atPath: log) }
    while trainer.epochsDone < trainer.config.epochs {
        let nb = (splits.train.count + trainer.config.batchSize - 1) / trainer.config.batchSize
        let lrs = trainer.learningRates(epoch: trainer.epochsDone, batch: nb - 1, batchesPerEpoch: nb)
        let r: (Double, Double, Double, Double)
        do { r = try trainer.trainEpoch(splits.train, progress: progress.batch) } catch let e as TrainingError {
            if progress.tty { emit("") }
            let keep = FileManager.default.fileExists(atPath: o.output)
                ? "the last good checkpoint (epoch \(trainer.epochsDone)) is kept in \(o.output)"
                : "no checkpoint was written"
            throw CommandFailure(description: "\(e.description); \(keep)")
        }
        var m = EpochMetrics(epoch: trainer.epochsDone, trainLoss: r.0, trainAccuracy: r.1, testLoss: nil, testAccuracy: nil,
                             imagesPerSecond: r.2, seconds: r.3, learningRates: lrs)
        if let test = splits.test {
            let ev = try Trainer.evaluate(model: trainer.model, data: test, normalization: trainer.config.normalization, classes: classes)
            m.testLoss = ev.loss; m.testAccuracy = ev.accuracy
        }
        metrics.append(m)
        progress.epoch(m, epochs: trainer.config.epochs)
        try ZooCheckpoint.write(trainer.model, training: trainer.trainingState(), to: o.output)
        if let log = o.log {
            let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
            var line = try enc.encode(m); line.append(0x0A)
            if let h = FileHandle(forWritingAtPath: log) { h.seekToEndOfFile(); h.write(line); h.closeFile() }
            else { try line.write(to: URL(fileURLWithPath: log)) }
        }
        if let plot = o.plot {
            try Data(CurvePlot.svg(metrics, title: "\(trainer.model.graph.name): loss and accuracy").utf8).write(to: URL(fileURLWithPath: plot), options: .atomic)
        }
    }
    emit("saved \(o.output)")
    if let onnx = o.onnx {
        try ONNXExport.write(trainer.model, to: URL(fileURLWithPath: onnx))
        emit("exported \(onnx) (ONNX)")
    }
    if o.summary {
        emit("")
        let s = try ModelSummary(graph: trainer.model.graph, batch: 1, inputShape: nil, frozen: trainer.engine.frozen)
        FileHandle.standardOutput.write(Data(s.text.utf8))
    }
}

/// Reads back metrics.jsonl (for --plot on a resumed run).
func readMetrics(_ path: String?) -> [EpochMetrics] {
    guard let path, let d = FileManager.default.contents(atPath: path) else { return [] }
    return String(decoding: d, as: UTF8.self).split(separator: "\n").compactMap { try? JSONDecoder().decode(EpochMetrics.self, from: Data($0.utf8)) }
}

func checkData(_ splits: DataSplits, graph: Graph, classes: Int, explicit: Bool) throws {
    try splits.train.checkImageShape(graph.inputShape)
    if explicit { try splits.train.checkClassCount(classes) } else { try splits.train.checkLabels(classes: classes) }
    if let t = splits.test { try t.checkLabels(classes: classes) }
}

func outputClasses(_ g: Graph) throws -> Int {
    let s = try g.outputShape(batch: 1)
    return s.dropFirst().reduce(1, *)
}

/// Runs a training subcommand; errors print as `error: <description>` on stderr with exit status 1.
func trainingCommand(_ body: () throws -> Void) throws {
    TrainingThreads.preferSingleBLASThread()
    do { try body() } catch let e as ExitCode { throw e } catch let e as ValidationError { throw e } catch {
        let m = String(describing: error)
        FileHandle.standardError.write(Data(("error: " + m + "\n").utf8))
        throw ExitCode(1)
    }
}

/// A line on standard output, written at once.
func emit(_ s: String) {
    FileHandle.standardOutput.write(Data((s.hasSuffix("\n") ? s : s + "\n").utf8))
}

struct CommandFailure: Error, CustomStringConvertible { var description: String }
