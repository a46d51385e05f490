import Foundation
import XCTest
@testable import Formats
import Zoo

/// A .npy image built by hand (version 1.0 unless told).
func npyImage(_ dict: String, payload: [UInt8], version: UInt8 = 1) -> Data {
    var d = Data([0x93] + Array("NUMPY".utf8) + [version, 0])
    let h = Array((dict + "\n").utf8)
    if version == 1 {
        d.append(contentsOf: [UInt8(h.count & 0xFF), UInt8(h.count >> 8)])
    } else {
        withUnsafeBytes(of: UInt32(h.count).littleEndian) { d.append(contentsOf: $0) }
    }
    d.append(contentsOf: h)
    d.append(contentsOf: payload)
    return d
}

final class NPYTests: XCTestCase {
    func testRoundTripAndHeaderLayout() throws {
        let t = Tensor(shape: [2, 1, 3], data: [1, 2, 3, -4, 5.5, .infinity])
        let d = NPY.encode(t)
        // NumPy's layout: magic, version 1.0, header padded with spaces to a multiple of 64 ending in '\n'.
        XCTAssertEqual(Array(d[0..<8]), [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
        let hlen = Int(d[8]) | Int(d[9]) << 8
        XCTAssertEqual((10 + hlen) % 64, 0)
        let header = String(decoding: d[10..<10 + hlen], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 3), }"))
        XCTAssertTrue(header.hasSuffix(" \n"))
        XCTAssertEqual(try NPY.decode(d, path: "x"), t)
        XCTAssertEqual(try NPY.decode(NPY.encode(Tensor(shape: [5], data: [1, 2, 3, 4, 5])), path: "x").shape, [5])
        XCTAssertEqual(NPY.shapeString([5]), "(5,)")
        XCTAssertEqual(NPY.shapeString([]), "()")
    }

    func testReadsVersion2AndDoubleQuotes() throws {
        let d = npyImage(#"{"descr": "<f4", "fortran_order": False, "shape": (1, 2)}"#, payload: le32([3, 4]), version: 2)
        XCTAssertEqual(try NPY.decode(d, path: "x"), Tensor(shape: [1, 2], data: [3, 4]))
    }

    func check(_ d: Data, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        assertFileError(try NPY.decode(d, path: "x.npy"), "x.npy: " + message, file: file, line: line)
    }

    func testErrors() {
        check(Data("hello world".utf8), "not a .npy file (it does not start with \\x93NUMPY)")
        check(npyImage("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", payload: le32([1, 2]), version: 4),
              "unsupported .npy format version 4.0 (zoo reads 1.0, 2.0 and 3.0)")
        check(npyImage("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", payload: [UInt8](repeating: 0, count: 16)),
              "unsupported dtype '<f8': zoo reads little-endian float32 arrays ('<f4') only; convert with x.astype('<f4')")
        check(npyImage("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", payload: [UInt8](repeating: 0, count: 8)),
              "unsupported dtype '>f4': zoo reads little-endian float32 arrays ('<f4') only; convert with x.astype('<f4')")
        check(npyImage("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", payload: le32([1, 2, 3, 4])),
              "Fortran-order array: zoo reads C-order arrays only; save np.ascontiguousarray(x)")
        check(npyImage("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", payload: le32([1, 2, 3])),
              "truncated .npy data: shape (2, 3) of float32 needs 24 bytes, the file holds 12")
        check(npyImage("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", payload: le32([1, 2])),
              "4 unexpected bytes after the array data of shape (1,)")
        check(npyImage("{'descr': '<f4', 'shape': (1,), }", payload: le32([1])), "malformed .npy header: no 'fortran_order'")
        check(npyImage("{'descr': '<f4', 'fortran_order': False, 'shape': (a,), }", payload: le32([1])),
              "malformed .npy header: shape must be a tuple of non-negative integers")
        check(npyImage("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", payload: le32([1])),
              "unsupported dtype '[('a', '<f4')]': zoo reads little-endian float32 arrays ('<f4') only; convert with x.astype('<f4')")
        var cut = NPY.encode(Tensor(shape: [1], data: [1]))
        cut = cut.prefix(20)
        check(cut, "truncated .npy header")
    }

    func testRankCheck() throws {
        let dir = NSTemporaryDirectory() + "zoo-npy-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/x.npy"
        try NPY.write(Tensor(shape: [1, 28, 28], data: [Float](repeating: 0, count: 784)), to: path)
        XCTAssertEqual(try NPY.read(path: path, rank: 3).shape, [1, 28, 28])
        assertFileError(try NPY.read(path: path, rank: 4), path + ": expected a 4-D array, got shape (1, 28, 28) (3-D)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["x.npy"])
    }
}

final class ModelIOTests: XCTestCase {
    func testDetectFormatByContent() {
        let st = [UInt8](safetensorsImage(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, payload: le32([1])))
        XCTAssertEqual(ModelIO.detectFormat(prefix: Array(st.prefix(16)), fileSize: st.count), .safetensors)
        XCTAssertEqual(ModelIO.detectFormat(prefix: [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0], fileSize: 4096), .hdf5)
        XCTAssertEqual(ModelIO.detectFormat(prefix: Array("  \n{\"name\": \"x\"".utf8), fileSize: 100), .json)
        XCTAssertEqual(ModelIO.detectFormat(prefix: [0x08, 0x07, 0x12, 0x07, 0x70, 0x79, 0x74, 0x6F, 0x72, 0x63, 0x68], fileSize: 1000), .onnx)
        // A header length pointing beyond the file is not safetensors.
        XCTAssertEqual(ModelIO.detectFormat(prefix: Array(st.prefix(16)), fileSize: 20), .onnx)
    }

    func testLoadWeightsNamesFileAndParameter() throws {
        let dir = NSTemporaryDirectory() + "zoo-mio-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let graph = Graph(name: "tiny", inputShape: [4], output: "fc",
                          nodes: [Node(name: "fc", op: .linear(.init(inFeatures: 4, outFeatures: 2)), inputs: ["input"])])
        let path = dir + "/w.safetensors"
        try Safetensors.write(["fc.weight": Tensor(shape: [2, 4], repeating: 1), "fc.bias": Tensor(shape: [2], data: [1, 2])], to: path)
        let m = try ModelIO.loadWeights(graph: graph, path: path)
        XCTAssertEqual(m.tensors["fc.bias"]?.data, [1, 2])

        try Safetensors.write(["fc.weight": Tensor(shape: [4, 2], repeating: 1), "fc.bias": Tensor(shape: [2], data: [1, 2])], to: path)
        assertFileError(try ModelIO.loadWeights(graph: graph, path: path),
                        path + ": shape mismatch for parameter 'fc.weight': architecture expects [2, 4], file has [4, 2]")
        try Safetensors.write(["fc.weight": Tensor(shape: [2, 4], repeating: 1)], to: path)
        assertFileError(try ModelIO.loadWeights(graph: graph, path: path), path + ": missing parameters (1): fc.bias")
        try Safetensors.write(["fc.weight": Tensor(shape: [2, 4], repeating: 1), "fc.bias": Tensor(shape: [2], data: [1, 2]),
                               "head.weight": Tensor(shape: [1], data: [0]), "bn.num_batches_tracked": Tensor(shape: [], data: [3])], to: path)
        assertFileError(try ModelIO.loadWeights(graph: graph, path: path), path + ": unexpected parameters (1): head.weight")
    }
}
