import Foundation
import XCTest
@testable import Formats
import Zoo

/// A small CNN: conv(3→4, 3x3, pad 1) + BN + ReLU + maxpool + flatten + linear(4*4*4 → 5).
func tinyGraph() -> Graph {
    Graph(name: "tiny", inputShape: [3, 8, 8], output: "fc", nodes: [
        Node(name: "conv", op: .conv2d(.init(inChannels: 3, outChannels: 4, kernel: [3, 3], padding: .init(1))), inputs: ["input"]),
        Node(name: "bn", op: .batchNorm2d(.init(features: 4)), inputs: ["conv"]),
        Node(name: "relu", op: .relu, inputs: ["bn"]),
        Node(name: "pool", op: .maxPool2d(.init(kernel: [2, 2])), inputs: ["relu"]),
        Node(name: "flat", op: .flatten(startDim: 1), inputs: ["pool"]),
        Node(name: "fc", op: .linear(.init(inFeatures: 64, outFeatures: 5)), inputs: ["flat"]),
    ])
}

func randomModel(_ g: Graph, seed: UInt64 = 1) -> Model {
    var m = Model.initialized(graph: g, seed: seed)
    var rng = SeededRandom(seed: seed + 100)
    for k in m.tensors.keys { for i in m.tensors[k]!.data.indices { m.tensors[k]!.data[i] += rng.nextNormal() * 0.1 } }
    return m
}

func tempDir() -> String {
    let d = NSTemporaryDirectory() + "zoo-h5-\(getpid())-\(UInt64.random(in: 0..<UInt64.max))"
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

func assertThrowsMessage(_ expr: @autoclosure () throws -> Any, contains parts: [String], file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try expr()
        XCTFail("expected an error", file: file, line: line)
    } catch let e as ZooError {
        for p in parts { XCTAssert(e.description.contains(p), "'\(e.description)' lacks '\(p)'", file: file, line: line) }
    } catch {
        XCTFail("not a ZooError: \(error)", file: file, line: line)
    }
}

final class SHA256Tests: XCTestCase {
    func testKnownVectors() {
        XCTAssertEqual(SHA256.hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hex(Array("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu".utf8)),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        // One million 'a', fed in uneven pieces to exercise the streaming path.
        var s = SHA256()
        let chunk = [UInt8](repeating: 0x61, count: 999)
        var left = 1_000_000
        while left > 0 { let n = min(left, chunk.count); s.update(chunk[0..<n]); left -= n }
        XCTAssertEqual(s.finalizeHex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}

final class HDF5WrapperTests: XCTestCase {
    func testDatasetsAttributesAndLinks() throws {
        let dir = tempDir()
        let path = dir + "/a.h5"
        do {
            let f = try H5File.create(path: path)
            let g = try f.root.createGroup("g")
            try g.writeDataset("f32", shape: [2, 3], floats: [1, 2, 3, 4, 5, -6.5])
            try g.writeDataset("f64", shape: [2], doubles: [1e300, -2])
            try g.writeDataset("i64", shape: [], int64s: [Int64.min])
            try g.writeDataset("u8", shape: [4], uint8s: [0, 1, 254, 255])
            try f.root.setAttribute("s", string: "héllo")
            try f.root.setAttribute("list", strings: ["a", "", "ccc"])
            try g.setAttribute("n", int: 42)
            try f.close()
        }
        let f = try H5File.open(path: path)
        XCTAssertEqual(try f.root.linkNames(), ["g"])
        let g = try f.root.group("g")
        XCTAssertEqual(try g.linkNames(), ["f32", "f64", "i64", "u8"])
        XCTAssertEqual(try g.dataset("f32").readFloats(), [1, 2, 3, 4, 5, -6.5])
        XCTAssertEqual(try g.dataset("f32").shape(), [2, 3])
        XCTAssertEqual(try g.dataset("f64").dtype(), .float64)
        XCTAssertEqual(try g.dataset("f64").readDoubles(), [1e300, -2])
        XCTAssertEqual(try g.dataset("i64").shape(), [])
        XCTAssertEqual(try g.dataset("i64").readInt64s(), [Int64.min])
        XCTAssertEqual(try g.dataset("u8").readUInt8s(), [0, 1, 254, 255])
        XCTAssertEqual(try g.dataset("u8").dtype(), .uint8)
        XCTAssertEqual(try f.root.stringAttribute("s"), "héllo")
        XCTAssertEqual(try f.root.stringsAttribute("list"), ["a", "", "ccc"])
        XCTAssertEqual(try g.intAttribute("n"), 42)
        XCTAssertEqual(g.kind(of: "f32"), .dataset)
        XCTAssertNil(g.kind(of: "nope"))
        assertThrowsMessage(try g.dataset("nope"), contains: [path, "dataset '/g/nope' missing"])
        assertThrowsMessage(try f.root.stringAttribute("zz"), contains: [path, "attribute 'zz' missing on '/'"])
    }

    func testNotHDF5AndMissing() throws {
        let dir = tempDir()
        let p = dir + "/x.h5"
        try Data("hello, not hdf5 at all".utf8).write(to: URL(fileURLWithPath: p))
        assertThrowsMessage(try H5File.open(path: p), contains: [p, "not an HDF5 file"])
        assertThrowsMessage(try H5File.open(path: dir + "/none.h5"), contains: ["none.h5: no such file"])
    }
}

final class ZooCheckpointTests: XCTestCase {
    func testRoundTripWithTrainingState() throws {
        let dir = tempDir()
        let path = dir + "/m.h5"
        let m = randomModel(tinyGraph())
        var st = TrainingState(optimizer: "adam", hyperParameters: ["lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8],
                               step: 123, epoch: 4, frozen: ["conv.weight", "conv.bias"], learningRateScales: ["fc.weight": 10])
        st.slots["exp_avg"] = ["fc.weight": Tensor(shape: [5, 64], repeating: 0.25), "fc.bias": Tensor(shape: [5], repeating: -1)]
        st.slots["exp_avg_sq"] = ["fc.weight": Tensor(shape: [5, 64], repeating: 0.5)]
        try ZooCheckpoint.write(m, training: st, to: path, sourceFile: "orig.safetensors", sourceFormat: "safetensors")
        XCTAssertTrue(ZooCheckpoint.isZooCheckpoint(path: path))
        let c = try ZooCheckpoint.read(path: path)
        XCTAssertEqual(c.model.graph, m.graph)
        XCTAssertEqual(c.model.tensors, m.tensors)
        XCTAssertEqual(c.training, st)
        XCTAssertEqual(c.metadata.sourceFile, "orig.safetensors")
        XCTAssertEqual(c.metadata.sourceFormat, "safetensors")
        XCTAssertEqual(c.metadata.formatVersion, 1)
        XCTAssert(c.metadata.created.hasSuffix("Z"))
        // No temporary files left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["m.h5"])
        // Without training state, no /training group.
        try ZooCheckpoint.write(m, to: path)
        XCTAssertNil(try ZooCheckpoint.read(path: path).training)
    }

    /// Writes a checkpoint then edits one tensor through the raw wrapper.
    func corrupted(_ edit: (H5Group) throws -> Void) throws -> String {
        let path = tempDir() + "/bad.h5"
        try ZooCheckpoint.write(randomModel(tinyGraph()), to: path)
        let f = try H5File.open(path: path, writable: true)
        try edit(try f.root.group("tensors"))
        try f.close()
        return path
    }

    func testMissingDataset() throws {
        let p = try corrupted { try $0.removeLink("bn.running_var") }
        assertThrowsMessage(try ZooCheckpoint.read(path: p), contains: [p + ": dataset 'tensors/bn.running_var' missing (the architecture needs [4])"])
    }

    func testWrongDtype() throws {
        let p = try corrupted { g in
            try g.removeLink("fc.bias")
            try g.writeDataset("fc.bias", shape: [5], doubles: [1, 2, 3, 4, 5])
        }
        assertThrowsMessage(try ZooCheckpoint.read(path: p), contains: [p + ": tensor 'fc.bias' is stored as float64; the zoo checkpoint holds float32"])
    }

    func testWrongShape() throws {
        let p = try corrupted { g in
            try g.removeLink("fc.bias")
            try g.writeDataset("fc.bias", shape: [6], floats: [1, 2, 3, 4, 5, 6])
        }
        assertThrowsMessage(try ZooCheckpoint.read(path: p), contains: [p + ": shape mismatch for tensor 'fc.bias': architecture expects [5], file has [6]"])
    }

    func testFlippedBit() throws {
        let path = tempDir() + "/flip.h5"
        try ZooCheckpoint.write(randomModel(tinyGraph()), to: path)
        let off: Int
        do {
            let f = try H5File.open(path: path)
            off = try XCTUnwrap(try f.root.group("tensors").dataset("fc.weight").fileOffset) + 37
        }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[off] ^= 0x08
        try bytes.write(to: URL(fileURLWithPath: path))
        assertThrowsMessage(try ZooCheckpoint.read(path: path), contains: [path + ": checksum mismatch for tensor 'fc.weight': stored sha256"])
    }

    func testTruncated() throws {
        let path = tempDir() + "/trunc.h5"
        try ZooCheckpoint.write(randomModel(tinyGraph()), to: path)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
        assertThrowsMessage(try ZooCheckpoint.read(path: path), contains: [path + ": HDF5 file is truncated or damaged"])
    }

    func testExtraTensorRejected() throws {
        let p = try corrupted { try $0.writeDataset("extra.weight", shape: [1], floats: [0]) }
        assertThrowsMessage(try ZooCheckpoint.read(path: p), contains: [p + ": tensors not in the architecture: extra.weight"])
    }

    func testFailedWriteLeavesOldFile() throws {
        let dir = tempDir()
        let path = dir + "/keep.h5"
        let m = randomModel(tinyGraph())
        try ZooCheckpoint.write(m, to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        var bad = m
        bad.tensors["a/b"] = Tensor(shape: [1], data: [1])
        assertThrowsMessage(try ZooCheckpoint.write(bad, to: path), contains: ["tensor name 'a/b' cannot be stored"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["keep.h5"])
    }
}
