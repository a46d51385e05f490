import Foundation
import COpenBLAS
import Synchronization

/// Optimized kernels: im2col + OpenBLAS sgemm, Winograd, direct depthwise convolution, SIMD pointwise loops,
/// work split over `threads` workers of `WorkerPool`. Same signatures as `Reference` plus a thread count;
/// share no code with it.
public enum Fast {}

/// A raw pointer that may cross into the pool's worker closures. Kernels guarantee that
/// concurrent workers write disjoint ranges.
struct SendPtr: @unchecked Sendable {
    let p: UnsafeMutablePointer<Float>
    init(_ p: UnsafeMutablePointer<Float>) { self.p = p }
}
struct SendConstPtr: @unchecked Sendable {
    let p: UnsafePointer<Float>
    init(_ p: UnsafePointer<Float>) { self.p = p }
}

extension Fast {
    /// Runs `body` over disjoint sub-ranges of 0..<count, on up to `threads` workers (the caller is one of
    /// them). Work below `grain` items per worker stays on the calling thread, as does a call made while the
    /// pool is already running a job (nested or concurrent callers).
    static func parallelFor(_ count: Int, threads: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        if count <= 0 { return }
        let workers = Swift.min(threads, Swift.max(1, count / Swift.max(grain, 1)))
        if workers <= 1 { body(0..<count); return }
        let chunk = (count + workers - 1) / workers
        let tasks = (count + chunk - 1) / chunk
        runTasks(tasks) { t in
            let lo = t * chunk, hi = Swift.min(count, lo + chunk)
            if lo < hi { body(lo..<hi) }
        }
    }

    /// Tasks per worker for the layers that cut their work into parts (1×1 tiles, tap-row bands, the classifier's gemv):
    /// one part per thread (task i on thread i, so a layer's part lands on the same core every run) rather than four
    /// claimed in any order: googlenet b1 near 13.71 → 13.42 ms (13 / 14 interleaved rounds, Zen 4, 1×1 parts), 19.30 →
    /// 18.91 on distant cores (6 rounds). `ZOO_PARTS=4` restores the four (A/B switch).
    nonisolated(unsafe) static var partsPerThread = Int(ProcessInfo.processInfo.environment["ZOO_PARTS"] ?? "") ?? 1

    /// Runs `body(t)` for t in 0..<tasks, spread over up to `threads` workers (one task per worker at a time).
    static func parallelTasks(_ tasks: Int, threads: Int, _ body: (Int) -> Void) {
        if tasks <= 0 { return }
        if threads <= 1 || tasks == 1 { for t in 0..<tasks { body(t) }; return }
        runTasks(tasks, body)
    }

    /// Row bands: at batch 1, with every thread of the pool at work, the layers that support it (Winograd convolutions,
    /// max pooling, same-shape adds, the staging of strided convolutions) give worker t the same band of rows of every
    /// plane (`band`), so that what one layer writes on a core the next one reads on that core, and only the rows at a
    /// band's edge cross between the cores. The packed-GEMM convolution's pixel panels split the same way (contiguous
    /// halves of a plane). Bands cost time when the two cores share their caches (every worker streams all of a layer's
    /// weights, and the products are narrower) and save more when they do not, so by default (`auto`) they are on only
    /// while the pool's own threads measure a distant placement (`WorkerPool.placementDistant`). Env ZOO_BANDS=0 / 1
    /// forces them off / on (A/B, tests).
    nonisolated(unsafe) static var rowBandsMode: RowBandsMode =
        switch ProcessInfo.processInfo.environment["ZOO_BANDS"] { case "0": .off; case "1": .on; default: .auto }
    enum RowBandsMode { case off, on, auto }
    /// Whether row bands are in use now; setting it forces them on or off.
    static var rowBands: Bool {
        get { rowBandsMode == .on || (rowBandsMode == .auto && WorkerPool.shared.placementDistant) }
        set { rowBandsMode = newValue ? .on : .off }
    }
    /// The workers a row-band split uses: every thread of the pool (scratch is sized for that many).
    static var spatialParts: Int { WorkerPool.shared.workers + 1 }
    /// The parts of a row-band split for this batch and thread count, or 0 when the layer splits its own way.
    /// `always`: as if bands were on (scratch sizes, which must not depend on the placement measured at the time).
    static func bandParts(batch: Int, threads: Int, always: Bool = false) -> Int {
        (always || rowBands) && batch == 1 && threads > 1 && threads == spatialParts ? threads : 0
    }
    /// Rows of band t of `parts` over `rows` rows.
    @inline(__always) static func band(_ rows: Int, _ t: Int, _ parts: Int) -> Range<Int> {
        rows * t / parts..<rows * (t + 1) / parts
    }

    /// `ZOO_THREADING=gcd` (for A/B measurements only): GCD's concurrentPerform instead of the pool, and
    /// OpenBLAS's own threads instead of split GEMMs — the engine's threading before the pool.
    nonisolated(unsafe) static var legacyThreading = ProcessInfo.processInfo.environment["ZOO_THREADING"] == "gcd"

    private static func runTasks(_ tasks: Int, _ body: (Int) -> Void) {
        if legacyThreading {
            withoutActuallyEscaping(body) { b in
                let box = UnsafeSendableBox(b)
                DispatchQueue.concurrentPerform(iterations: tasks) { box.value($0) }
            }
        } else {
            WorkerPool.shared.run(tasks: tasks, body)
        }
    }

    /// OpenBLAS runs single-threaded (set once, process-wide): the engine splits GEMMs over its own workers,
    /// so OpenBLAS's spinning threads never compete with ours for the cores. `Bench.sgemmPeak` raises it
    /// temporarily to time OpenBLAS's own multi-threaded peak.
    static func setBLASThreads(_ n: Int) {
        if blasThreads != n {
            openblas_set_num_threads(Int32(n))
            if n == 1 { stopBLASServerThreads() }
            blasThreads = n
        }
    }
    nonisolated(unsafe) static var blasThreads = -1

    /// OpenBLAS's pthread build starts its server threads when the library loads, and they spin on `sched_yield` for
    /// 2^28 cycles (about 0.1 s) after they start and after every multi-threaded call before they sleep: on two cores
    /// that took a core from our workers for the first ~10 LeNet training steps (5 → 10–14 ms each, 25 context switches
    /// per step) and for the first timed runs after `zoo-tool bench`'s OpenBLAS peak. With OpenBLAS on one thread they
    /// have nothing to do, so they are stopped (`blas_thread_shutdown_`, looked up at run time: not every OpenBLAS build
    /// exports it); OpenBLAS starts them again by itself when a multi-threaded call needs them.
    static func stopBLASServerThreads() {
        typealias Shutdown = @convention(c) () -> Int32
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "blas_thread_shutdown_") else { return }
        _ = unsafeBitCast(sym, to: Shutdown.self)()
    }

    /// C = alpha · op(A) · op(B) + beta · C (row-major; op = transpose when `ta`/`tb`): on zoo's packed kernel when
    /// `useZooSgemm` (OpenBLAS running a lower vector level than zoo's kernel; alpha 1, beta 0 or 1), else `openblasSgemm`.
    static func sgemm(_ ta: Bool, _ tb: Bool, m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int, beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int) {
        if useZooSgemm && alpha == 1 && (beta == 0 || beta == 1) && !legacyThreading {
            zooSgemm(ta, tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, accumulate: beta == 1, c: c, ldc: ldc, threads: threads)
        } else {
            openblasSgemm(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, threads: threads)
        }
    }

    /// `sgemm` through OpenBLAS on one thread per part: large products are split into `threads` column blocks (or row
    /// blocks when C has few columns), one per worker.
    static func openblasSgemm(_ ta: Bool, _ tb: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                              b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int) {
        setBLASThreads(legacyThreading ? threads : 1)
        @inline(__always) func call(_ m: Int, _ n: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), Int32(k),
                        alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        }
        if m <= 0 || n <= 0 { return }
        let work = m * n * Swift.max(k, 1)
        if threads <= 1 || work < gemmSplitWork || k <= 0 || legacyThreading {
            call(m, n, a, b, c); return
        }
        let as_ = SendConstPtr(a), bs = SendConstPtr(b), cs = SendPtr(c)
        if n >= 32 * threads || n >= m {
            // Column blocks (multiples of 16 columns).
            let chunk = ((n + threads - 1) / threads + 15) / 16 * 16
            let parts = (n + chunk - 1) / chunk
            parallelTasks(parts, threads: threads) { t in
                let lo = t * chunk, hi = Swift.min(n, lo + chunk)
                if lo < hi { call(m, hi - lo, as_.p, bs.p + (tb ? lo * ldb : lo), cs.p + lo) }
            }
        } else {
            let chunk = ((m + threads - 1) / threads + 7) / 8 * 8
            let parts = (m + chunk - 1) / chunk
            parallelTasks(parts, threads: threads) { t in
                let lo = t * chunk, hi = Swift.min(m, lo + chunk)
                if lo < hi { call(hi - lo, n, as_.p + (ta ? lo : lo * lda), bs.p, cs.p + lo * ldc) }
            }
        }
    }
    /// Below this many multiply-adds a GEMM is not worth splitting.
    static let gemmSplitWork = 1 << 16
}

struct UnsafeSendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}

/// A persistent pool of worker threads for the engine's parallel loops.
///
/// `run(tasks:_:)` publishes a job; the caller and the workers claim task indices from one atomic word that
/// holds the job's generation, task count and next index (a worker still finishing an older job can never
/// claim a task of a newer one). Idle workers spin briefly on that word, then sleep on a condition variable.
/// At most one job runs at a time; a `run` issued while another is active (from inside a task, or from a
/// second thread) runs its tasks on the calling thread.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool(workers: Swift.max(1, ProcessInfo.processInfo.activeProcessorCount - 1))

    /// generation (bits 40...) | task count (bits 20..<40) | next task index (bits 0..<20)
    private let state = Atomic<Int>(0)
    private let remaining = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    private let sleepers = Atomic<Int>(0)
    private let cond = NSCondition()
    nonisolated(unsafe) private var job: ((Int) -> Void)?
    private let workerCount: Int
    private static let spinIterations = 20_000

    init(workers: Int) {
        workerCount = workers
        // The engine splits GEMMs over this pool, one OpenBLAS thread per worker (see `Fast.setBLASThreads`).
        if ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] == nil && !Fast.legacyThreading { Fast.setBLASThreads(1) }
        for i in 0..<workers {
            let t = Thread { [unowned self] in self.workerLoop(id: i + 1) }
            t.stackSize = 1 << 20
            t.start()
        }
    }

    private static func unpack(_ s: Int) -> (gen: Int, count: Int, next: Int) {
        (s >> 40, (s >> 20) & 0xFFFFF, s & 0xFFFFF)
    }

    /// Claims one task of generation `gen`, or nil when none is left.
    @inline(__always) private func claim(gen: Int) -> Int? {
        var s = state.load(ordering: .acquiring)
        while true {
            let u = Self.unpack(s)
            if u.gen != gen || u.next >= u.count { return nil }
            let (done, now) = state.compareExchange(expected: s, desired: s + 1, ordering: .acquiringAndReleasing)
            if done { return u.next }
            s = now
        }
    }

    @inline(__always) private func work(gen: Int, id: Int) {
        if Self.staticTasks && Self.unpack(state.load(ordering: .acquiring)).count == workerCount + 1 {
            // As many tasks as threads: task i on thread i (the caller is 0), so that a split that repeats (the same
            // weights, the same rows) meets the same core's caches every time.
            if claimIndex(gen: gen, id) {
                job!(id)
                remaining.subtract(1, ordering: .releasing)
            }
            return
        }
        while let t = claim(gen: gen) {
            job!(t)
            remaining.subtract(1, ordering: .releasing)
        }
    }

    /// `ZOO_POOL_STATIC=0`: any thread takes any task (A/B switch).
    nonisolated(unsafe) static var staticTasks = ProcessInfo.processInfo.environment["ZOO_POOL_STATIC"] != "0"

    /// Counts task `i` of generation `gen` as claimed by its own thread (static jobs never hand out indices via `claim`).
    @inline(__always) private func claimIndex(gen: Int, _ i: Int) -> Bool {
        var s = state.load(ordering: .acquiring)
        while true {
            let u = Self.unpack(s)
            if u.gen != gen || i >= u.count || u.next >= u.count { return false }
            let (done, now) = state.compareExchange(expected: s, desired: s + 1, ordering: .acquiringAndReleasing)
            if done { return true }
            s = now
        }
    }

    /// Worker threads besides the caller.
    var workers: Int { workerCount }

    /// Whether the last placement probe found the caller and a worker on cores that share no cache (a flag round trip
    /// above `distantRoundTripNs`; on the 2-vCPU Zen 4 machines of bench/README: 50–130 ns near, 300–600 ns distant).
    private let distant = Atomic<Bool>(false)
    var placementDistant: Bool { distant.load(ordering: .relaxed) }
    static let distantRoundTripNs = 200.0
    private let lastProbe = Atomic<Int>(0)
    /// Re-measures the placement when the last probe is older than `interval` ns (the host moves vCPUs now and then).
    func refreshPlacement(interval: Int = 250_000_000) {
        let now = Int(DispatchTime.now().uptimeNanoseconds)
        let last = lastProbe.load(ordering: .relaxed)
        guard now - last >= interval, lastProbe.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged else { return }
        if let ns = roundTripNs() { distant.store(ns > Self.distantRoundTripNs, ordering: .relaxed) }
    }

    private final class PingFlag: Sendable { let v = Atomic<Int>(0); let start = Atomic<Int>(0); let end = Atomic<Int>(0) }
    /// Round trip (ns) of a flag between the caller and worker 1, the threads that run the row bands: `rounds` timed
    /// after 32 untimed ones (about 30 µs on near cores, 100 µs on distant ones); nil when the pool is busy or has no worker.
    func roundTripNs(rounds: Int = 256) -> Double? {
        let f = PingFlag()
        let total = rounds + 32
        let ran = runConcurrently(tasks: 2) { t in
            if t == 0 {
                for i in 0..<total {
                    if i == 32 { f.start.store(Int(DispatchTime.now().uptimeNanoseconds), ordering: .relaxed) }
                    f.v.store(1, ordering: .releasing)
                    while f.v.load(ordering: .acquiring) != 0 { }
                }
                f.end.store(Int(DispatchTime.now().uptimeNanoseconds), ordering: .relaxed)
            } else {
                for _ in 0..<total {
                    while f.v.load(ordering: .acquiring) != 1 { }
                    f.v.store(0, ordering: .releasing)
                }
            }
        }
        guard ran else { return nil }
        return Double(f.end.load(ordering: .relaxed) - f.start.load(ordering: .relaxed)) / Double(rounds)
    }

    func run(tasks: Int, _ body: (Int) -> Void) {
        if tasks <= 0 { return }
        if !dispatch(tasks: tasks, body) { for t in 0..<tasks { body(t) } }
    }

    /// Runs `body(t)` for t in 0..<tasks with every task on a thread of its own, all at the same time (so tasks may wait for
    /// each other), or returns false without running any: when the pool is taken or has fewer than tasks − 1 workers. The
    /// caller runs one task; it cannot claim another before its own returns, so each other task goes to an idle worker.
    func runConcurrently(tasks: Int, _ body: (Int) -> Void) -> Bool {
        guard tasks >= 1, tasks <= workerCount + 1 else { return false }
        return dispatch(tasks: tasks, body)
    }

    /// Publishes the job, works on it with the workers and returns true; false (nothing run) when the pool is taken.
    private func dispatch(tasks: Int, _ body: (Int) -> Void) -> Bool {
        guard tasks < 0xFFFFF, workerCount > 0,
              busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        withoutActuallyEscaping(body) { b in
            job = b
            let gen = (Self.unpack(state.load(ordering: .relaxed)).gen + 1) & 0x7FFFFF
            remaining.store(tasks, ordering: .relaxed)
            state.store(gen << 40 | tasks << 20, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                cond.lock(); cond.broadcast(); cond.unlock()
            }
            work(gen: gen, id: 0)
            while remaining.load(ordering: .acquiring) > 0 { }
            job = nil
        }
        busy.store(false, ordering: .releasing)
        return true
    }

    private func workerLoop(id: Int) {
        var seen = 0
        while true {
            var s = state.load(ordering: .acquiring)
            var spins = 0
            while Self.unpack(s).gen == seen {
                spins += 1
                if spins < Self.spinIterations {
                    s = state.load(ordering: .acquiring)
                    continue
                }
                cond.lock()
                sleepers.add(1, ordering: .sequentiallyConsistent)
                while Self.unpack(state.load(ordering: .sequentiallyConsistent)).gen == seen { cond.wait() }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                cond.unlock()
                s = state.load(ordering: .acquiring)
                spins = 0
            }
            seen = Self.unpack(s).gen
            work(gen: seen, id: id)
        }
    }
}
