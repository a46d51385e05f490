import ArgumentParser
import Foundation
import Formats
import Zoo

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time inference or a training step: latency (median, min, p90), images/s, GFLOP/s and the share of the sgemm peak.")

    @Argument(help: "A catalog architecture, an architecture JSON file, or a model file.")
    var model: String

    @Option(help: "Batch size.") var batch: Int = 1
    @Option(help: "Worker threads (also OpenBLAS's thread count).") var threads: Int = 2
    @Option(help: "Timed iterations.") var iterations: Int = 10
    @Option(help: "Untimed warm-up iterations.") var warmup: Int = 2
    @Option(help: "Input size per sample, CxHxW (catalog architectures).") var input: String?
    @Option(help: "Number of classes (catalog architectures).") var classes: Int?
    @Flag(help: "Time a training step (forward, loss, backward, SGD step) instead of inference.") var train = false
    @Option(help: "With --train: 'reused' freezes everything but the classifier head (a fine-tune step).") var freeze: String?
    @Flag(inversion: .prefixedNo, help: "Also time a 1024³ sgemm with the same threads (the peak the share is taken of).") var peak = true
    @Flag(inversion: .prefixedNo, help: "Winograd F(2×2,3×3) for stride-1 3×3 convolutions (off: im2col + sgemm).") var winograd = true
    @Flag(help: "Inference: also report each layer's median time (slowest first; all of them with --json).") var profile = false
    @Flag(help: "Instead of a model: time resnet18's GEMM shapes through OpenBLAS and through zoo's packed GEMM.") var gemm = false
    @Flag(help: "Print the result as JSON.") var json = false

    func run() throws {
        try runReportingErrors {
            guard (1...256).contains(threads) else { throw ZooError.badInput("--threads must be between 1 and 256, got \(threads)") }
            guard batch >= 1 else { throw ZooError.badInput("--batch must be at least 1, got \(batch)") }
            guard iterations >= 1 else { throw ZooError.badInput("--iterations must be at least 1, got \(iterations)") }
            guard warmup >= 0 else { throw ZooError.badInput("--warmup must not be negative, got \(warmup)") }
            if let freeze, freeze != "reused" { throw ZooError.badInput("--freeze: only 'reused' is supported, got '\(freeze)'") }
            if freeze != nil && !train { throw ZooError.badInput("--freeze needs --train") }
            var inChannels: Int? = nil, size: [Int]? = nil
            if let input {
                guard let d = ShapeFormat.parse(input), d.count == 3 else {
                    throw ZooError.badInput("--input \(input): expected CxHxW like 3x224x224")
                }
                inChannels = d[0]; size = [d[1], d[2]]
            }
            Fast.useWinograd = winograd
            if gemm {
                let rows = Zoo.Bench.gemmComparison(threads: threads)
                if json {
                    let enc = JSONEncoder()
                    enc.outputFormatting = [.sortedKeys]
                    say(String(decoding: try enc.encode(rows), as: UTF8.self))
                } else {
                    say("GEMM M×N×K, \(threads) thread(s): OpenBLAS (kernel \(Fast.openblasCoreName)) vs zoo packed (level "
                        + "\(Fast.gemmLevel); A prepacked) vs zoo sgemm (both packed per call; training's GEMMs "
                        + "\(Fast.useZooSgemm ? "take it" : "use OpenBLAS")), best GFLOP/s")
                    for r in rows {
                        say(String(format: "%5d×%5d×%5d  openblas %6.1f  zoo %6.1f  (%.2fx)  zoo sgemm %6.1f  (%.2fx)  max|Δ| %.1e", r.m, r.n, r.k,
                                   r.openblasGflops, r.zooGflops, r.zooGflops / r.openblasGflops, r.zooSgemmGflops,
                                   r.zooSgemmGflops / r.openblasGflops, r.maxAbsDiff))
                    }
                }
                return
            }
            let m = try ModelIO.loadModel(path: model, classes: classes, inChannels: inChannels, inputSize: size, seed: 0)
            let r = try Zoo.Bench.run(model: m, config: BenchConfig(batch: batch, threads: threads, iterations: iterations, warmup: warmup,
                                                                   train: train, freezeBackbone: freeze == "reused", measurePeak: peak, profile: profile))
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.sortedKeys]
                say(String(decoding: try enc.encode(r), as: UTF8.self))
            } else {
                say("\(r.model) \(r.mode) input \(ShapeFormat.string(r.inputShape)), \(r.threads) thread(s), \(r.iterations) iterations")
                say(String(format: "latency median %.2f ms, min %.2f ms, p90 %.2f ms", r.medianMs, r.minMs, r.p90Ms))
                say(String(format: "%.1f images/s, %.1f GFLOP/s, sgemm peak %.1f GFLOP/s (%.0f%%)", r.imagesPerSecond, r.gflops,
                           r.sgemmPeakGflops, 100 * r.peakShare)
                    + (r.coreRoundtripNs.map { String(format: ", core-to-core round trip %.0f ns", $0) } ?? ""))
                if let layers = r.layers {
                    let total = layers.reduce(0) { $0 + $1.medianMs }
                    var byOp: [String: Double] = [:]
                    for l in layers { byOp[l.op, default: 0] += l.medianMs }
                    say(String(format: "per layer (sum of medians %.2f ms, of mins %.2f ms); by op: ", total,
                               layers.reduce(0) { $0 + ($1.minMs ?? 0) })
                        + byOp.sorted { $0.value > $1.value }.map { String(format: "%@ %.2f", $0.key, $0.value) }.joined(separator: ", "))
                    for l in layers.sorted(by: { $0.medianMs > $1.medianMs }).prefix(15) {
                        say(String(format: "  %8.3f ms (min %.3f)  %-14@ %@", l.medianMs, l.minMs ?? 0, l.op, l.node))
                    }
                }
            }
        }
    }
}
