import Foundation
import XCTest
@testable import Zoo

final class TrainingDataTests: XCTestCase {
    func testDigitsNpzDeflated() throws {
        let s = try DataSource.load(path: TrainFixtures.path("data/digits.npz"))
        XCTAssertEqual(s.train.count, 1347)
        XCTAssertEqual(s.test?.count, 450)
        XCTAssertEqual(s.train.sampleShape, [1, 28, 28])
        XCTAssertEqual(s.train.labels.reduce(0, +), 6054)
        XCTAssertEqual(Array(s.train.labels.prefix(5)), [7, 3, 6, 6, 7])
        // numpy: x_train.sum() == 60397920 (uint8), x_train[0,14,10:16] == [48,0,0,0,80,80]
        let sum = s.train.images.reduce(0.0) { $0 + Double($1) * 255 }
        XCTAssertEqual(sum, 60397920, accuracy: 1)
        XCTAssertEqual(s.train.images[14 * 28 + 10..<14 * 28 + 16].map { Int(($0 * 255).rounded()) }, [48, 0, 0, 0, 80, 80])
        XCTAssertEqual(s.train.classCount, 10)
    }

    func testStoredNpzFloatNCHW() throws {
        let s = try DataSource.load(path: TrainFixtures.path("data/tiny_stored.npz"))
        XCTAssertEqual(s.train.sampleShape, [3, 4, 5])
        XCTAssertEqual(s.train.labels, [0, 1, 2, 0, 1, 2])
        XCTAssertEqual(s.test?.labels, [2, 0])
        let raw = try TrainFixtures.npz("data/tiny_stored.npz")
        XCTAssertEqual(raw["x_train"]!.dtype, "<f4")
        XCTAssertEqual(s.train.images, raw["x_train"]!.values)
    }

    func testIDXGzipAndRaw() throws {
        let s = try DataSource.load(path: TrainFixtures.path("data/idx"))
        let e = try TrainFixtures.npz("data/idx_expected.npz")
        XCTAssertEqual(s.train.sampleShape, [1, 6, 7])
        XCTAssertEqual(s.train.images.map { ($0 * 255).rounded() }, e["x_train"]!.values)
        XCTAssertEqual(s.train.labels, e["y_train"]!.integers!)
        XCTAssertEqual(s.test!.images.map { ($0 * 255).rounded() }, e["x_test"]!.values)
        XCTAssertEqual(s.test!.labels, e["y_test"]!.integers!)
    }

    func testPNGFolderMatchesPillow() throws {
        let s = try DataSource.load(path: TrainFixtures.path("data/pngs"))
        let e = try TrainFixtures.npz("data/pngs_expected.npz")
        XCTAssertEqual(s.train.classNames, ["cat", "dog"])
        XCTAssertEqual(s.train.sampleShape, [3, 4, 5])
        XCTAssertEqual(s.train.labels, e["y"]!.integers!)
        XCTAssertEqual(s.train.images, e["x"]!.values)
        XCTAssertEqual(s.test?.count, 2)
    }

    func testPNGEncodeDecodeRoundTrip() throws {
        var rng = SeededRandom(seed: 3)
        let im = DecodedImage(channels: 3, height: 7, width: 9, pixels: (0..<189).map { _ in UInt8(rng.next() % 256) })
        let back = try PNGDecoder.decode(PNGDecoder.encode(im), path: "x.png")
        XCTAssertEqual(back.pixels, im.pixels)
    }

    // MARK: bad input

    func testLabelOutOfRange() throws {
        let p = TrainFixtures.path("data/tiny_badlabels.npz")
        let s = try DataSource.load(path: p)
        XCTAssertThrowsError(try s.train.checkLabels(classes: 3)) {
            XCTAssertEqual("\($0)", "bad input: \(p) (train): label 7 of sample 2 is out of range for 3 classes (expected 0...2)")
        }
    }

    func testClassCountDisagrees() throws {
        let p = TrainFixtures.path("data/digits_5-9.npz")
        let s = try DataSource.load(path: p)
        XCTAssertNoThrow(try s.train.checkClassCount(5))
        XCTAssertThrowsError(try s.train.checkClassCount(7)) {
            XCTAssertEqual("\($0)", "bad input: \(p) (train): --classes 7 disagrees with the data, which has 5 classes")
        }
        XCTAssertThrowsError(try s.train.checkClassCount(4)) {
            XCTAssertEqual("\($0)", "bad input: \(p) (train): label 4 of sample 6 is out of range for 4 classes (expected 0...3)")
        }
    }

    func testWrongImageSize() throws {
        let p = TrainFixtures.path("data/tiny_stored.npz")
        let s = try DataSource.load(path: p)
        XCTAssertThrowsError(try s.train.checkImageShape([1, 28, 28])) {
            XCTAssertEqual("\($0)", "bad input: \(p) (train): images are 3x4x5 but the model expects 1x28x28")
        }
    }

    func tempDir() throws -> String {
        let d = NSTemporaryDirectory() + "zoo-data-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    func testUnreadableData() throws {
        let d = try tempDir()
        let notZip = d + "/notzip.npz"
        try Data("hello, this is not a zip archive at all".utf8).write(to: URL(fileURLWithPath: notZip))
        XCTAssertThrowsError(try DataSource.load(path: notZip)) {
            XCTAssertEqual("\($0)", "\(notZip): not a zip archive (.npz): no end-of-central-directory record")
        }
        // flip a byte inside the deflated x_train member
        var bytes = [UInt8](FileManager.default.contents(atPath: TrainFixtures.path("data/digits_0-4.npz"))!)
        bytes[2000] ^= 0xFF
        let corrupt = d + "/corrupt.npz"
        try Data(bytes).write(to: URL(fileURLWithPath: corrupt))
        XCTAssertThrowsError(try DataSource.load(path: corrupt)) { e in
            let m = "\(e)"
            XCTAssertTrue(m.hasPrefix("\(corrupt): member x_train.npy: compressed data is corrupt") || m == "\(corrupt): member x_train.npy: CRC-32 mismatch (corrupt data)", m)
        }
        let missing = d + "/nothere.npz"
        XCTAssertThrowsError(try DataSource.load(path: missing)) { XCTAssertEqual("\($0)", "\(missing): no such file or folder") }
        // a class folder with a truncated PNG
        try FileManager.default.createDirectory(atPath: d + "/imgs/a", withIntermediateDirectories: true)
        let png = PNGDecoder.encode(DecodedImage(channels: 1, height: 4, width: 4, pixels: [UInt8](repeating: 9, count: 16)))
        try Data(png.prefix(40)).write(to: URL(fileURLWithPath: d + "/imgs/a/x.png"))
        XCTAssertThrowsError(try DataSource.load(path: d + "/imgs")) { XCTAssertEqual("\($0)", "\(d)/imgs/a/x.png: truncated PNG (no IEND chunk)") }
    }

    func testPNGOfWrongSizeInFolder() throws {
        let d = try tempDir()
        for (c, size) in [("a", 4), ("b", 5)] {
            try FileManager.default.createDirectory(atPath: d + "/" + c, withIntermediateDirectories: true)
            let png = PNGDecoder.encode(DecodedImage(channels: 1, height: size, width: size, pixels: [UInt8](repeating: 9, count: size * size)))
            try Data(png).write(to: URL(fileURLWithPath: d + "/\(c)/0.png"))
        }
        XCTAssertThrowsError(try DataSource.load(path: d)) {
            XCTAssertEqual("\($0)", "bad input: \(d)/b/0.png: image is 5x5 (width x height) but \(d)/a/0.png is 4x4; all images must have the same size")
        }
    }

    func testIDXCountMismatch() throws {
        let d = try tempDir()
        let img: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2] + [UInt8](repeating: 1, count: 8)
        let lab: [UInt8] = [0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 0]
        try Data(img).write(to: URL(fileURLWithPath: d + "/train-images-idx3-ubyte"))
        try Data(lab).write(to: URL(fileURLWithPath: d + "/train-labels-idx1-ubyte"))
        XCTAssertThrowsError(try DataSource.load(path: d)) { XCTAssertEqual("\($0)", "bad input: \(d) (train): 2 images but 3 labels") }
    }

    // MARK: batching and augmentation

    func testShuffleSeededAndPermutation() throws {
        let s = try DataSource.load(path: TrainFixtures.path("data/tiny_stored.npz"))
        let b = Batcher(data: s.train, batchSize: 4, normalization: nil, seed: 7)
        XCTAssertEqual(b.order(epoch: 0), b.order(epoch: 0))
        XCTAssertNotEqual(b.order(epoch: 0), b.order(epoch: 1))
        XCTAssertEqual(b.order(epoch: 3).sorted(), Array(0..<6))
        XCTAssertEqual(b.batchesPerEpoch, 2)
    }

    func testNormalizationCropFlip() throws {
        // one 1x3x3 image 1..9
        let d = Dataset(name: "t", sampleShape: [1, 3, 3], images: (1...9).map(Float.init), labels: [0])
        let norm = Normalization.compute(d)
        XCTAssertEqual(norm.mean[0], 5, accuracy: 1e-6)
        XCTAssertEqual(norm.std[0], (60.0 / 9).squareRoot(), accuracy: 1e-5)
        var rng = SeededRandom(seed: 1)
        let plain = Batcher(data: d, batchSize: 1, normalization: Normalization(mean: [1], std: [2]))
        XCTAssertEqual(plain.batch([0], augment: false, rng: &rng).0.data, (0...8).map { Float($0) / 2 })
        let flip = Batcher(data: d, batchSize: 1, normalization: nil, augmentation: .init(cropPadding: 0, horizontalFlip: true))
        var seen: Set<[Float]> = []
        for _ in 0..<20 { seen.insert(flip.batch([0], augment: true, rng: &rng).0.data) }
        XCTAssertEqual(seen, [[1, 2, 3, 4, 5, 6, 7, 8, 9], [3, 2, 1, 6, 5, 4, 9, 8, 7]])
        let crop = Batcher(data: d, batchSize: 1, normalization: nil, augmentation: .init(cropPadding: 1))
        var crops: Set<[Float]> = []
        for _ in 0..<200 { crops.insert(crop.batch([0], augment: true, rng: &rng).0.data) }
        XCTAssertEqual(crops.count, 9)
        XCTAssertTrue(crops.contains([0, 0, 0, 0, 1, 2, 0, 4, 5]))   // shifted down-right by one
        XCTAssertTrue(crops.contains([5, 6, 0, 8, 9, 0, 0, 0, 0]))
    }
}
