import Foundation
import XCTest
@testable import Zoo
import COpenBLAS

/// The worker pool and the split GEMM: every index visited exactly once (also for nested and concurrent
/// callers), and split GEMMs equal a plain triple loop.
final class ParallelTests: XCTestCase {
    func testParallelForVisitsEachIndexOnce() {
        for count in [1, 2, 3, 17, 1000, 100_003] {
            let hits = UnsafeMutablePointer<Int32>.allocate(capacity: count)
            hits.initialize(repeating: 0, count: count)
            defer { hits.deallocate() }
            let h = UnsafeSendableBox(hits)
            for _ in 0..<50 {
                Fast.parallelFor(count, threads: 2) { r in for i in r { h.value[i] += 1 } }
            }
            XCTAssertEqual((0..<count).filter { hits[$0] != 50 }.count, 0, "count \(count)")
        }
    }

    /// As many tasks as threads: task 0 on the caller and task i always on the same worker (so a repeated split meets the
    /// same core's caches); more tasks than threads are shared out dynamically, each still run once.
    func testTaskPerThreadIsStable() throws {
        let threads = WorkerPool.shared.workers + 1
        try XCTSkipIf(threads < 2 || !WorkerPool.staticTasks, "one processor, or ZOO_POOL_STATIC=0")
        var owners = [[UInt64]](repeating: [], count: threads)
        let caller = UInt64(pthread_self())
        for _ in 0..<200 {
            var ids = [UInt64](repeating: 0, count: threads)
            ids.withUnsafeMutableBufferPointer { b in
                let box = UnsafeSendableBox(b.baseAddress!)
                Fast.parallelFor(threads, threads: threads) { r in for t in r { box.value[t] = UInt64(pthread_self()) } }
            }
            for t in 0..<threads { owners[t].append(ids[t]) }
        }
        XCTAssertEqual(Set(owners[0]), [caller])
        for t in 1..<threads {
            XCTAssertEqual(Set(owners[t]).count, 1, "task \(t) always on one thread")
            XCTAssertNotEqual(owners[t][0], caller)
        }
        XCTAssertEqual(Set(owners.map { $0[0] }).count, threads, "one thread per task")
    }

    func testNestedAndConcurrentCallersRunEverything() {
        let n = 64, m = 257
        let hits = UnsafeMutablePointer<Int32>.allocate(capacity: n * m)
        hits.initialize(repeating: 0, count: n * m)
        defer { hits.deallocate() }
        let h = UnsafeSendableBox(hits)
        // nested: the inner loop runs on the calling worker
        Fast.parallelFor(n, threads: 2) { r in
            for i in r { Fast.parallelFor(m, threads: 2) { r2 in for j in r2 { h.value[i * m + j] += 1 } } }
        }
        XCTAssertEqual((0..<(n * m)).filter { hits[$0] != 1 }.count, 0)
        // concurrent callers from four threads, each on its own rows
        DispatchQueue.concurrentPerform(iterations: 4) { c in
            for rep in 0..<200 {
                Fast.parallelFor(m, threads: 2) { r in for j in r { h.value[(c * 16 + rep % 16) * m + j] += 1 } }
            }
        }
        let expected = 1 + 200 / 16
        let rows = (0..<64).map { i in (0..<m).map { Int(hits[i * m + $0]) } }
        for i in 0..<64 {
            XCTAssertEqual(Set(rows[i]).count, 1, "row \(i) uneven")
            XCTAssertGreaterThanOrEqual(rows[i][0], expected, "row \(i)")
        }
        XCTAssertEqual(rows.reduce(0) { $0 + $1.reduce(0, +) }, n * m + 4 * 200 * m)
    }

    /// OpenBLAS's server threads (which spin for ~0.1 s after each multi-threaded call) are gone once the engine is back on
    /// one OpenBLAS thread, and a later multi-threaded call still computes the right product (OpenBLAS restarts them).
    func testOpenBLASServerThreadsStopOnSingleThread() throws {
        guard dlsym(UnsafeMutableRawPointer(bitPattern: 0), "blas_thread_shutdown_") != nil else {
            throw XCTSkip("this OpenBLAS build does not export blas_thread_shutdown_")
        }
        func taskCount() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0 }
        let n = 256
        var rng = SeededRandom(seed: 5)
        let a = (0..<(n * n)).map { _ in rng.nextFloat() - 0.5 }, b = (0..<(n * n)).map { _ in rng.nextFloat() - 0.5 }
        var want = [Float](repeating: 0, count: n * n)
        for i in 0..<n { for p in 0..<n { let av = a[i * n + p]; for j in 0..<n { want[i * n + j] += av * b[p * n + j] } } }
        let saved = Fast.blasThreads
        defer { Fast.setBLASThreads(saved > 0 ? saved : 1) }
        for round in 0..<2 {
            Fast.setBLASThreads(2)
            var c = [Float](repeating: 0, count: n * n)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a, Int32(n), b, Int32(n), 0, &c, Int32(n))
            let during = taskCount()
            XCTAssertLessThan(zip(c, want).map { abs($0 - $1) }.max()!, 1e-3, "round \(round)")
            Fast.setBLASThreads(1)
            XCTAssertLessThan(taskCount(), during, "round \(round): OpenBLAS's server thread still there")
        }
    }

    func testSplitGemmMatchesTripleLoop() {
        var rng = SeededRandom(seed: 7)
        // shapes that split by columns, by rows, and stay whole
        for (m, n, k) in [(512, 16, 512), (64, 3000, 75), (1, 1000, 512), (300, 40, 9), (8, 8, 8)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = (0..<(m * k)).map { _ in rng.nextFloat() - 0.5 }
                let b = (0..<(k * n)).map { _ in rng.nextFloat() - 0.5 }
                var c = [Float](repeating: 1, count: m * n)
                let lda = ta ? m : k, ldb = tb ? k : n
                c.withUnsafeMutableBufferPointer { cp in
                    Fast.sgemm(ta, tb, m: m, n: n, k: k, alpha: 2, a: a, lda: lda, b: b, ldb: ldb, beta: 0.5, c: cp.baseAddress!, ldc: n,
                               threads: 2)
                }
                var worst: Float = 0
                for i in 0..<m {
                    for j in 0..<n {
                        var s: Float = 0
                        for p in 0..<k { s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]) }
                        worst = max(worst, abs(c[i * n + j] - (2 * s + 0.5)))
                    }
                }
                XCTAssertLessThan(worst, 1e-3, "m\(m) n\(n) k\(k) ta\(ta) tb\(tb)")
            }
        }
    }

    /// Scratch buffers stay with the thread that used them (a buffer another core wrote costs a transfer per cache line):
    /// the same thread gets its buffer back, another thread gets one of its own; with one shared list (the A/B switch)
    /// the other thread takes the buffer the first one returned.
    func testScratchPoolKeepsBuffersPerThread() {
        let saved = ScratchPool.perThread
        defer { ScratchPool.perThread = saved }
        for perThread in [true, false] {
            ScratchPool.perThread = perThread
            let pool = ScratchPool()
            let mine = pool.with(1000) { p -> UnsafeMutablePointer<Float> in p[999] = 1; return p }
            XCTAssertEqual(pool.with(500) { $0 }, mine, "the same thread, perThread \(perThread)")
            final class Box: @unchecked Sendable { var p: UnsafeMutablePointer<Float>? }
            let other = Box(), done = DispatchSemaphore(value: 0)
            let t = Thread { other.p = pool.with(1000) { $0 }; done.signal() }
            t.start()
            done.wait()
            if perThread { XCTAssertNotEqual(other.p, mine) } else { XCTAssertEqual(other.p, mine) }
        }
    }
}
