import Foundation
import CZooKernels
import COpenBLAS

/// What `Bench.run` measures: inference (`Executor`, fast kernels), or a training step
/// (forward + cross-entropy + backward + SGD step), optionally with everything but the classifier head frozen.
public struct BenchConfig: Sendable {
    public var batch: Int
    public var threads: Int
    public var iterations: Int
    public var warmup: Int
    public var train: Bool
    public var freezeBackbone: Bool
    /// Time a 1024³ sgemm after the model (off when measuring the model's peak memory).
    public var measurePeak: Bool
    /// Inference only: record each step's time and report per-layer medians (`BenchResult.layers`).
    public var profile = false
    public init(batch: Int = 1, threads: Int = 2, iterations: Int = 10, warmup: Int = 2, train: Bool = false, freezeBackbone: Bool = false,
                measurePeak: Bool = true, profile: Bool = false) {
        self.profile = profile
        self.measurePeak = measurePeak
        self.batch = batch; self.threads = threads; self.iterations = iterations; self.warmup = warmup
        self.train = train; self.freezeBackbone = freezeBackbone
    }
}

/// One benchmark's figures (JSON keys are the ones bench/compare.py reads).
public struct BenchResult: Codable, Sendable {
    public var model: String
    public var mode: String
    public var batch: Int
    public var threads: Int
    public var iterations: Int
    public var inputShape: [Int]
    public var medianMs: Double
    public var minMs: Double
    public var p90Ms: Double
    public var imagesPerSecond: Double
    /// Floating-point operations per iteration: 2 × mult-adds (× 3 for a training step).
    public var flopsPerIteration: Double
    public var gflops: Double
    public var sgemmPeakGflops: Double
    public var peakShare: Double
    public var times: [Double]
    /// Peak resident memory of this process (VmHWM of /proc/self/status; unlike getrusage's maxrss it does not
    /// inherit the parent's peak across fork + exec), in MiB; nil where /proc is missing.
    public var peakRSSMB: Double?
    /// With `BenchConfig.profile`: each executed step (fused conv+BN+act counts as its conv), median ms over the timed runs.
    public var layers: [LayerTime]? = nil
    /// Round trip of a flag between two threads right after the timed runs (`zoo_core_roundtrip_ns`), with 2+ threads:
    /// where a VM's host has put the two CPUs (tens of ns on neighbouring cores, hundreds on distant ones).
    public var coreRoundtripNs: Double? = nil

    public struct LayerTime: Codable, Sendable {
        public var node: String
        public var op: String
        public var medianMs: Double
        /// Fastest run of the layer (on a loaded machine the least disturbed one).
        public var minMs: Double? = nil
        enum CodingKeys: String, CodingKey { case node, op, medianMs = "median_ms", minMs = "min_ms" }
    }

    enum CodingKeys: String, CodingKey {
        case model, mode, batch, threads, iterations, inputShape = "input_shape", medianMs = "median_ms", minMs = "min_ms", p90Ms = "p90_ms"
        case imagesPerSecond = "images_per_s", flopsPerIteration = "flops_per_iteration", gflops, sgemmPeakGflops = "sgemm_peak_gflops"
        case peakShare = "peak_share", times = "times_ms", peakRSSMB = "peak_rss_mb", layers, coreRoundtripNs = "core_roundtrip_ns"
    }
}

public enum Bench {
    /// Median, min and p90 (nearest rank) of a list of times.
    public static func stats(_ ts: [Double]) -> (median: Double, min: Double, p90: Double) {
        let s = ts.sorted()
        guard !s.isEmpty else { return (0, 0, 0) }
        let mid = s.count / 2
        let median = s.count % 2 == 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
        let p90 = s[Swift.min(s.count - 1, Int((0.9 * Double(s.count)).rounded(.up)) - 1)]
        return (median, s[0], p90)
    }

    /// GFLOP/s of an n×n×n sgemm with `threads` threads (best of `repeats`): the faster of OpenBLAS and zoo's general
    /// SGEMM, so that an OpenBLAS that misdetects the CPU (its SSE3 fallback) does not understate the machine's peak.
    public static func sgemmPeak(threads: Int, n: Int = 1024, repeats: Int = 5) -> Double {
        var rng = SeededRandom(seed: 1)
        let a = (0..<(n * n)).map { _ in rng.nextFloat() - 0.5 }
        let b = (0..<(n * n)).map { _ in rng.nextFloat() - 0.5 }
        var c = [Float](repeating: 0, count: n * n)
        let flops = 2 * Double(n * n * n)
        // OpenBLAS with its own `threads` threads
        Fast.setBLASThreads(threads)
        let openblas = flops / bestSeconds(repeats + 1) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a, Int32(n), b, Int32(n), 0, &c, Int32(n))
        }
        Fast.setBLASThreads(1)
        let zoo = flops / bestSeconds(repeats + 1) {
            Fast.zooSgemm(false, false, m: n, n: n, k: n, a: a, lda: n, b: b, ldb: n, accumulate: false, c: &c, ldc: n, threads: threads)
        }
        return Swift.max(openblas, zoo) / 1e9
    }

    /// The shortest of `runs` timed runs of `body`, in seconds.
    static func bestSeconds(_ runs: Int, _ body: () -> Void) -> Double {
        var best = Double.infinity
        for _ in 0..<runs {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            best = Swift.min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return best
    }

    /// VmHWM of /proc/self/status in MiB.
    public static func peakResidentMB() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Double(line.split(separator: " ").dropFirst().first { !$0.isEmpty }.map(String.init) ?? "") else { return nil }
        return kb / 1024
    }

    /// Parameter names a fine-tune step with a frozen backbone leaves fixed: all but the classifier head's.
    public static func backboneParameters(_ g: Graph) -> Set<String> {
        let head = FineTune.headNode(g).map { g.nodes[$0].name }
        return Set(g.parameterSpecs.map(\.key).filter { k in
            guard let h = head else { return true }
            return !(k.hasPrefix(h + ".") || (h.isEmpty && !k.contains(".")))
        })
    }

    /// Times `config.iterations` runs of the model after `config.warmup` untimed ones.
    public static func run(model: Model, config c: BenchConfig) throws -> BenchResult {
        guard c.batch >= 1, c.threads >= 1, c.iterations >= 1 else {
            throw ZooError.badInput("bench: batch, threads and iterations must be at least 1")
        }
        let g = model.graph
        let shape = [c.batch] + g.inputShape
        var rng = SeededRandom(seed: 42)
        let x = Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in rng.nextFloat() * 2 - 1 })
        let multAdds = try g.inferLayers(batch: c.batch).reduce(0) { $0 + $1.multAdds }
        var body: () throws -> Void
        var executor: Executor? = nil
        if c.train {
            TrainingThreads.count = c.threads
            var engine = TrainingEngine(model: model, frozen: c.freezeBackbone ? backboneParameters(g) : [])
            let classes = try g.outputShape(batch: 1).reduce(1, *)
            let labels = (0..<c.batch).map { $0 % classes }
            var opt = Optimizer(config: OptimizerConfig(kind: .sgd, lr: 0.01, momentum: 0.9),
                                groups: [ParameterGroup(name: "all", parameters: engine.trainableParameters)])
            body = {
                let r = try engine.trainStep(x, labels: labels, rng: &rng)
                guard let grads = r.gradients else { throw ZooError.badInput("bench: the loss is not finite (\(r.loss))") }
                opt.step(tensors: &engine.model.tensors, grads: grads.parameters, lr: 0.01)
            }
        } else {
            let ex = try Executor(model: model, kernels: .fast, threads: c.threads)
            ex.collectTimings = c.profile
            executor = ex
            body = { _ = try ex.forward(x) }
        }
        // ZOO_BENCH_AB=1 with --train: steps alternate TrainFast.on false/true (A = old kernels, B = new), A/B figures to stderr.
        // Inference: ZOO_BENCH_AB=NAME alternates the inference switch NAME (`Fast.setABSwitch`) off/on.
        let abToggle: ((Bool) -> Void)? = ProcessInfo.processInfo.environment["ZOO_BENCH_AB"].flatMap { name in
            if c.train { return { TrainFast.on = $0 } }
            return Fast.setABSwitch(name, on: true) ? { _ = Fast.setABSwitch(name, on: $0) } : nil
        }
        let ab = abToggle != nil
        var abTimes: [Double] = []
        if ab {
            var ta: [Double] = [], tb: [Double] = []
            for i in 0..<(2 * (c.warmup + c.iterations)) {
                abToggle?(i % 2 == 1)
                let t0 = DispatchTime.now().uptimeNanoseconds
                try body()
                let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                if i >= 2 * c.warmup { if i % 2 == 0 { ta.append(ms) } else { tb.append(ms) } }
            }
            let sa = stats(ta), sb = stats(tb)
            let line = String(format: "A/B (old/new) median %.1f / %.1f ms, min %.1f / %.1f ms\n", sa.median, sb.median, sa.min, sb.min)
                + "A: " + ta.map { String(format: "%.0f", $0) }.joined(separator: " ") + "\nB: "
                + tb.map { String(format: "%.0f", $0) }.joined(separator: " ") + "\n"
            FileHandle.standardError.write(line.data(using: .utf8)!)
            abToggle?(true)
            abTimes = tb
        }
        for _ in 0..<(ab ? 0 : c.warmup) { try body() }
        var times: [Double] = abTimes
        var perLayer: [[(node: String, op: String, ms: Double)]] = []
        for _ in 0..<(ab ? 0 : c.iterations) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            if let ex = executor, c.profile { perLayer.append(ex.timings) }
        }
        if c.train && TrainingEngine.profiling {
            let total = Double(c.iterations + c.warmup)
            let all = ProcessInfo.processInfo.environment["ZOO_TRAIN_PROFILE"] == "all"
            for (k, v) in TrainingEngine.profile.sorted(by: { $0.value > $1.value }).prefix(all ? Int.max : 40) {
                FileHandle.standardError.write((String(format: "%8.2f ms  ", v / total) + k + "\n").data(using: .utf8)!)
            }
            for v in ab ? ["old ", "new "] : [""] {
                let f = TrainingEngine.profile.filter { $0.key.hasPrefix(v + "F") }.values.reduce(0, +) / total
                let b = TrainingEngine.profile.filter { $0.key.hasPrefix(v + "B") }.values.reduce(0, +) / total
                FileHandle.standardError.write((v + String(format: "forward %.2f ms, backward %.2f ms per step\n", f, b)).data(using: .utf8)!)
            }
        }
        var layers: [BenchResult.LayerTime]? = nil
        if let first = perLayer.first {
            layers = first.indices.map { i in
                let st = stats(perLayer.map { $0[i].ms })
                return BenchResult.LayerTime(node: first[i].node, op: first[i].op, medianMs: st.median, minMs: st.min)
            }
        }
        let s = stats(times)
        let roundtrip = c.threads > 1 && ProcessInfo.processInfo.activeProcessorCount > 1 ? zoo_core_roundtrip_ns(20_000) : -1
        let flops = 2 * Double(multAdds) * (c.train ? 3 : 1)
        let gflops = flops / (s.median / 1e3) / 1e9
        let peak = c.measurePeak ? sgemmPeak(threads: c.threads) : .nan
        return BenchResult(model: g.name, mode: c.train ? (c.freezeBackbone ? "finetune" : "train") : "infer", batch: c.batch,
                           threads: c.threads, iterations: c.iterations, inputShape: shape, medianMs: s.median, minMs: s.min,
                           p90Ms: s.p90, imagesPerSecond: Double(c.batch) / (s.median / 1e3), flopsPerIteration: flops,
                           gflops: gflops, sgemmPeakGflops: peak.isNaN ? 0 : peak, peakShare: peak.isNaN ? 0 : gflops / peak, times: times,
                           peakRSSMB: peakResidentMB(), layers: layers, coreRoundtripNs: roundtrip > 0 ? roundtrip : nil)
    }

    /// One GEMM shape timed through OpenBLAS (`Fast.sgemm` on OpenBLAS, split over the workers), through zoo's packed
    /// GEMM (A packed beforehand, as the executor does for weights; B packed inside the timing) and through zoo's
    /// general SGEMM (`Fast.zooSgemm`, both operands packed inside the timing, as training's GEMMs run), interleaved.
    public struct GemmRow: Codable, Sendable {
        public var m: Int, n: Int, k: Int, threads: Int
        public var openblasGflops: Double
        public var zooGflops: Double
        public var zooSgemmGflops: Double
        public var zooLevel: Int
        public var maxAbsDiff: Float
        enum CodingKeys: String, CodingKey {
            case m, n, k, threads, openblasGflops = "openblas_gflops", zooGflops = "zoo_gflops", zooSgemmGflops = "zoo_sgemm_gflops", zooLevel = "zoo_level"
            case maxAbsDiff = "max_abs_diff"
        }
    }

    /// The GEMM shapes of resnet18's convolutions at batch 1 (im2col: M = out channels, N = output plane,
    /// K = in channels × 3 × 3) plus a large square one.
    public static let gemmShapes: [(Int, Int, Int)] = [
        (64, 12544, 147), (64, 3136, 576), (128, 784, 1152), (256, 196, 2304), (512, 49, 4608), (128, 784, 64), (512, 49, 256),
        (1024, 1024, 1024),
    ]

    public static func gemmComparison(shapes: [(Int, Int, Int)] = gemmShapes, threads: Int, repeats: Int = 7) -> [GemmRow] {
        var rng = SeededRandom(seed: 3)
        return shapes.map { (m, n, k) in
            let a = (0..<(m * k)).map { _ in rng.nextFloat() - 0.5 }
            let b = (0..<(k * n)).map { _ in rng.nextFloat() - 0.5 }
            var c1 = [Float](repeating: 0, count: m * n), c2 = c1, c3 = c1
            let pa = PackedMatrix(m: m, k: k, a: a, lda: k)
            let pb = UnsafeMutablePointer<Float>.allocate(capacity: Fast.packedBFloats(k: k, n: n))
            defer { pb.deallocate() }
            // The three routes interleaved, best of `repeats` each.
            var tb = Double.infinity, tz = Double.infinity, ts = Double.infinity
            for _ in 0..<repeats {
                tb = Swift.min(tb, bestSeconds(1) {
                    Fast.openblasSgemm(false, false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n, beta: 0, c: &c1, ldc: n,
                                       threads: threads)
                })
                ts = Swift.min(ts, bestSeconds(1) {
                    Fast.zooSgemm(false, false, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, accumulate: false, c: &c3, ldc: n,
                                  threads: threads)
                })
                tz = Swift.min(tz, bestSeconds(1) {
                    Fast.packB(k: k, n: n, b: b, ldb: n, pb: pb, threads: threads)
                    Fast.packedGemm(pa, n: n, pb: pb, c: &c2, ldc: n, bias: nil, act: .none, threads: threads)
                })
            }
            let flops = 2 * Double(m * n * k)
            func maxDiff(_ x: [Float], _ y: [Float]) -> Float { zip(x, y).reduce(Float(0)) { Swift.max($0, abs($1.0 - $1.1)) } }
            let diff = Swift.max(maxDiff(c1, c2), maxDiff(c1, c3))
            return GemmRow(m: m, n: n, k: k, threads: threads, openblasGflops: flops / tb / 1e9, zooGflops: flops / tz / 1e9,
                           zooSgemmGflops: flops / ts / 1e9, zooLevel: Fast.gemmLevel,
                           maxAbsDiff: diff)
        }
    }
}
