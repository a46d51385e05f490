import Foundation
import XCTest
@testable import Formats
import Zoo

/// Builds a safetensors image by hand: 8-byte LE header length, the header text, then `payload`.
func safetensorsImage(header: String, payload: [UInt8]) -> Data {
    var d = Data()
    let h = Array(header.utf8)
    withUnsafeBytes(of: UInt64(h.count).littleEndian) { d.append(contentsOf: $0) }
    d.append(contentsOf: h)
    d.append(contentsOf: payload)
    return d
}

func le32(_ values: [Float]) -> [UInt8] { values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } } }

func assertFileError(_ expr: @autoclosure () throws -> Any, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertThrowsError(try expr(), file: file, line: line) { e in
        XCTAssertEqual((e as? ZooError)?.description, message, file: file, line: line)
    }
}

final class SafetensorsTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "zoo-st-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func testRoundTripWithMetadataAndOrder() throws {
        let a = Tensor(shape: [2, 3], data: [1, -2, 3.5, 0, .greatestFiniteMagnitude, -.leastNonzeroMagnitude])
        let b = Tensor(shape: [], data: [7])
        let c = Tensor(shape: [0, 4], data: [])
        let path = dir + "/w.safetensors"
        try Safetensors.write(ordered: [("z.weight", a), ("a.bias", b), ("empty", c)], metadata: ["format": "pt", "q\"uote": "x\ny"], to: path)
        let f = try Safetensors.read(path: path)
        XCTAssertEqual(f.names, ["z.weight", "a.bias", "empty"])
        XCTAssertEqual(f.tensors["z.weight"], a)
        XCTAssertEqual(f.tensors["a.bias"], b)
        XCTAssertEqual(f.tensors["empty"], c)
        XCTAssertEqual(f.metadata, ["format": "pt", "q\"uote": "x\ny"])
        XCTAssertEqual(Set(f.dtypes.values), ["F32"])
        // Header is padded to 8 bytes so the data is aligned, and nothing is left beside the file.
        let raw = try FileIO.read(path)
        let n = raw.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual(n % 8, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["w.safetensors"])
    }

    func testWriteIsByteExactForKnownLayout() throws {
        let d = try Safetensors.encode([("w", Tensor(shape: [1], data: [1]))])
        let header = #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        var padded = header
        while padded.utf8.count % 8 != 0 { padded += " " }
        XCTAssertEqual(d, safetensorsImage(header: padded, payload: [0, 0, 0x80, 0x3F]))
    }

    func testConvertsHalfBFloatDoubleAndInt64() throws {
        // F16: 1.0, -2.0, smallest subnormal 2^-24, +inf; BF16: 1.0, -0.5; F64: 0.1; I64: 123456 and -3.
        let f16: [UInt16] = [0x3C00, 0xC000, 0x0001, 0x7C00]
        let bf16: [UInt16] = [0x3F80, 0xBF00]
        var payload: [UInt8] = []
        for h in f16 { withUnsafeBytes(of: h.littleEndian) { payload += $0 } }
        for h in bf16 { withUnsafeBytes(of: h.littleEndian) { payload += $0 } }
        withUnsafeBytes(of: (0.1 as Double).bitPattern.littleEndian) { payload += $0 }
        for v: Int64 in [123456, -3] { withUnsafeBytes(of: v.littleEndian) { payload += $0 } }
        let header = #"{"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},"d":{"dtype":"F64","shape":[],"data_offsets":[12,20]},"n":{"dtype":"I64","shape":[2],"data_offsets":[20,36]},"__metadata__":{"format":"pt"}}"#
        let f = try Safetensors.decode(safetensorsImage(header: header, payload: payload), path: "x")
        XCTAssertEqual(f.tensors["h"]?.data, [1, -2, Float(sign: .plus, exponent: -24, significand: 1), .infinity])
        XCTAssertEqual(f.tensors["b"]?.data, [1, -0.5])
        XCTAssertEqual(f.tensors["d"], Tensor(shape: [], data: [Float(0.1 as Double)]))
        XCTAssertEqual(f.tensors["n"]?.data, [123456, -3])
        XCTAssertEqual(f.dtypes, ["h": "F16", "b": "BF16", "d": "F64", "n": "I64"])
        XCTAssertEqual(f.metadata, ["format": "pt"])
        XCTAssertEqual(f.names, ["h", "b", "d", "n"])
    }

    func testHalfConversionIsExactForAllValues() {
        // Every finite half is exactly representable as Float: compare with Swift's own Float16 where it exists.
        #if arch(x86_64) && os(Linux)
        for bits in UInt16.min...UInt16.max {
            let expected = Float(Float16(bitPattern: bits))
            let got = Safetensors.halfToFloat(bits)
            if expected.isNaN { XCTAssertTrue(got.isNaN) } else { XCTAssertEqual(got.bitPattern, expected.bitPattern, "half \(bits)") }
        }
        #endif
    }

    func testOffsetsOutOfOrderInHeaderAreAccepted() throws {
        let header = #"{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        let f = try Safetensors.decode(safetensorsImage(header: header, payload: le32([1, 2])), path: "x")
        XCTAssertEqual(f.names, ["a", "b"])
        XCTAssertEqual(f.tensors["b"]?.data, [2])
    }

    func check(_ header: String, _ payload: [UInt8], _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        assertFileError(try Safetensors.decode(safetensorsImage(header: header, payload: payload), path: "w.st"), "w.st: " + message, file: file, line: line)
    }

    func testTooShortAndHeaderLengthBeyondFile() {
        assertFileError(try Safetensors.decode(Data([1, 2, 3]), path: "w.st"),
                        "w.st: not a safetensors file: 3 bytes is too short for the 8-byte header length")
        var d = safetensorsImage(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, payload: le32([1]))
        d.replaceSubrange(0..<8, with: [0xFF, 0xFF, 0, 0, 0, 0, 0, 0])
        assertFileError(try Safetensors.decode(d, path: "w.st"),
                        "w.st: corrupt or truncated safetensors file: header length 65535 exceeds the \(d.count - 8) bytes that follow it")
    }

    func testMalformedHeaders() {
        check(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#, le32([1]),
              "safetensors header is not valid JSON: unterminated object at header byte 53")
        check(#"[1, 2]"#, [], "safetensors header is an array, not a JSON object")
        check(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, le32([1, 2]),
              "safetensors header names 'a' more than once")
        check(#"{"a":{"shape":[1],"data_offsets":[0,4]}}"#, le32([1]), "tensor 'a': header entry lacks 'dtype'")
        check(#"{"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#, le32([1]),
              "tensor 'a': unsupported dtype 'I32' (zoo loads F32, F16, BF16, F64 and I64)")
        check(#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, le32([1]),
              "tensor 'a': shape must be an array of non-negative integers")
        check(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, le32([1]),
              "tensor 'a': data_offsets must be [begin, end] with integers 0 <= begin <= end")
        check(#"{"__metadata__":{"n":1},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, le32([1]),
              "safetensors __metadata__ value 'n' is a number, not a string")
    }

    func testByteLengthMustMatchShape() {
        check(#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#, le32([1, 2, 3]),
              "tensor 'a': data_offsets [0, 12] span 12 bytes, but shape [2, 2] of F32 needs 16 bytes")
    }

    func testOffsetsMustBeContiguousAndCoverTheBuffer() {
        check(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, le32([1, 2]),
              "tensor 'a': data_offsets [4, 8] do not start at 0; tensor data must be contiguous from the start of the data buffer")
        check(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#, le32([1, 2, 3]),
              "tensor 'b': data_offsets [8, 12] do not start where tensor 'a' ends (4); tensor data must be contiguous and must not overlap")
        check(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, le32([1, 2]),
              "tensor 'b': data_offsets [4, 8] do not start where tensor 'a' ends (8); tensor data must be contiguous and must not overlap")
        check(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, le32([1]),
              "truncated safetensors file: tensor 'a' ends at data offset 8, but the data buffer holds only 4 bytes")
        check(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, le32([1, 2]),
              "safetensors data buffer holds 8 bytes, but the tensors cover only 4")
    }

    func testReadErrorsNameTheFile() {
        assertFileError(try Safetensors.read(path: dir + "/missing.safetensors"), dir + "/missing.safetensors: cannot open: No such file or directory")
        assertFileError(try Safetensors.write(["a": Tensor(shape: [1], data: [1])], to: dir + "/no/such/dir/w.safetensors"),
                        dir + "/no/such/dir/w.safetensors: cannot create file: No such file or directory")
    }

    func testEncodeRefusesDuplicateNames() {
        XCTAssertThrowsError(try Safetensors.encode([("a", Tensor(shape: [1], data: [1])), ("a", Tensor(shape: [1], data: [2]))])) {
            XCTAssertEqual(($0 as? ZooError)?.description, "bad input: tensor 'a' is given twice")
        }
    }
}
