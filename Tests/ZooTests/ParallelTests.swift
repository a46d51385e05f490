import Foundation
import XCTest
@testable import Zoo

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
}
