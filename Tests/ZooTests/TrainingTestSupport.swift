import Foundation
import XCTest
import CZooKernels
@testable import Zoo

enum TrainFixtures {
    static let root: String = {
        var u = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { u.deleteLastPathComponent() }
        return u.path
    }()
    static func path(_ p: String) -> String { root + "/fixtures/" + p }
    static func npz(_ p: String) throws -> [String: NumpyArray] { try NpzReader.read(path: path(p)) }

    /// The d2l LeNet-5 of seed 003 with its nn.Sequential names (independent of the catalog).
    static func lenet(classes: Int = 10) -> Graph {
        let pool = Pool2dAttrs(kernel: [2, 2], stride: [2, 2])
        let nodes: [Node] = [
            Node(name: "0", op: .conv2d(.init(inChannels: 1, outChannels: 6, kernel: [5, 5], padding: .init(2))), inputs: ["input"]),
            Node(name: "1", op: .sigmoid, inputs: ["0"]),
            Node(name: "2", op: .avgPool2d(pool), inputs: ["1"]),
            Node(name: "3", op: .conv2d(.init(inChannels: 6, outChannels: 16, kernel: [5, 5])), inputs: ["2"]),
            Node(name: "4", op: .sigmoid, inputs: ["3"]),
            Node(name: "5", op: .avgPool2d(pool), inputs: ["4"]),
            Node(name: "6", op: .flatten(startDim: 1), inputs: ["5"]),
            Node(name: "7", op: .linear(.init(inFeatures: 400, outFeatures: 120)), inputs: ["6"]),
            Node(name: "8", op: .sigmoid, inputs: ["7"]),
            Node(name: "9", op: .linear(.init(inFeatures: 120, outFeatures: 84)), inputs: ["8"]),
            Node(name: "10", op: .sigmoid, inputs: ["9"]),
            Node(name: "11", op: .linear(.init(inFeatures: 84, outFeatures: classes)), inputs: ["10"]),
        ]
        return Graph(name: "lenet", inputShape: [1, 28, 28], output: "11", nodes: nodes)
    }

    /// max |a - b| / max(|b|) over the tensor.
    static func relErr(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        var m: Float = 0, s: Float = 1e-12
        for i in 0..<a.count { m = max(m, abs(a[i] - b[i])); s = max(s, abs(b[i])) }
        return m / s
    }
}

/// Shared by the kernel batteries: uniform randoms in [-1, 1) and the largest difference relative to max|b|.
extension XCTestCase {
    /// Runs `body` once per distinct vector level of CZooKernels the CPU has (2 = AVX-512F, 1 = AVX2 + FMA, capped with
    /// `zoo_kernels_set_simd_cap`), so a battery covers the AVX2 kernels on AVX-512F machines too; the cap is lifted after.
    /// `trainConv2dBackward` asked for dx and dw, for dw only and for dx only, each against `ref` at 1e-5 relative
    /// to max|ref| (what was not asked for is nil; with `dbNilWithoutParams` the bias gradient too).
    func assertConvBackwardMatches(x: [Float], weight: [Float], dy: [Float], geometry g: ConvGeometry, hasBias: Bool, threads: Int,
                                   ref: (dx: [Float]?, dw: [Float]?, db: [Float]?), label: String, dbNilWithoutParams: Bool = false,
                                   file: StaticString = #filePath, line: UInt = #line) {
        let r = trainConv2dBackward(x: x, weight: weight, dy: dy, geometry: g, hasBias: hasBias, needInput: true, needParams: true, threads: threads)
        XCTAssertLessThan(maxRel(r.dx, ref.dx), 1e-5, "\(label) dx, \(threads) threads", file: file, line: line)
        XCTAssertLessThan(maxRel(r.dw, ref.dw), 1e-5, "\(label) dw, \(threads) threads", file: file, line: line)
        XCTAssertLessThan(maxRel(r.db, ref.db), 1e-5, "\(label) db, \(threads) threads", file: file, line: line)
        let onlyP = trainConv2dBackward(x: x, weight: weight, dy: dy, geometry: g, hasBias: hasBias, needInput: false, needParams: true, threads: threads)
        XCTAssertNil(onlyP.dx, file: file, line: line)
        XCTAssertLessThan(maxRel(onlyP.dw, ref.dw), 1e-5, "\(label) dw only", file: file, line: line)
        let onlyX = trainConv2dBackward(x: x, weight: weight, dy: dy, geometry: g, hasBias: hasBias, needInput: true, needParams: false, threads: threads)
        XCTAssertNil(onlyX.dw, file: file, line: line)
        if dbNilWithoutParams { XCTAssertNil(onlyX.db, file: file, line: line) }
        XCTAssertLessThan(maxRel(onlyX.dx, ref.dx), 1e-5, "\(label) dx only", file: file, line: line)
    }

    func forEachSIMDLevel(_ body: (Int32) -> Void) {
        defer { zoo_kernels_set_simd_cap(2) }
        var seen: Set<Int32> = []
        for cap: Int32 in [2, 1] {
            zoo_kernels_set_simd_cap(cap)
            let level = zoo_kernels_simd()
            if seen.insert(level).inserted { body(level) }
        }
    }

    func randoms(_ n: Int, _ rng: inout SeededRandom) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 2 - 1 } }

    /// The plain reference convolution with its activation: what the fast convolution paths are compared with.
    func referenceConv2d(_ g: Conv2dGeometry, x: [Float], w: [Float], b: [Float]?, act: Activation) -> [Float] {
        var y = [Float](repeating: 0, count: g.batch * g.outC * g.outPlane)
        SharedForward.withOptional(b) { bp in Reference.conv2d(g, x: x, w: w, b: bp, y: &y) }
        let pre = y
        Reference.activation(act, count: y.count, x: pre, y: &y)
        return y
    }

    /// `Fast.conv2d` with the given weight forms, into an output and scratch filled with NaN (so that anything left
    /// unwritten shows).
    func fastConv2d(_ g: Conv2dGeometry, x: [Float], w: [Float], b: [Float]?, act: Activation, threads: Int,
                    packed: PackedMatrix? = nil, pointwisePacked: PointwisePacked? = nil, rowConvPacked: RowConvPacked? = nil) -> [Float] {
        var y = [Float](repeating: .nan, count: g.batch * g.outC * g.outPlane)
        var scratch = [Float](repeating: .nan, count: Swift.max(1, Fast.conv2dScratch(g)))
        SharedForward.withOptional(b) { bp in
            Fast.conv2d(g, x: x, w: w, b: bp, act: act, y: &y, scratch: &scratch, threads: threads, packed: packed,
                        pointwisePacked: pointwisePacked, rowConvPacked: rowConvPacked)
        }
        return y
    }

    func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }

    func maxRel(_ a: [Float]?, _ b: [Float]?, file: StaticString = #filePath, line: UInt = #line) -> Float {
        guard let a, let b else { XCTAssertTrue(a == nil && b == nil, "one side is nil", file: file, line: line); return 0 }
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        let scale = max(b.map { abs($0) }.max() ?? 0, 1e-6)
        return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
    }
}
