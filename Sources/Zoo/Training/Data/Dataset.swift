import Foundation

/// Labelled images in memory: `images` is N×C×H×W (uint8 sources scaled to [0, 1], float sources as stored).
public struct Dataset: Sendable {
    /// Where it came from, for messages ("digits.npz (x_train)").
    public var name: String
    public var sampleShape: [Int]
    public var images: [Float]
    public var labels: [Int]
    /// Class names when the source has them (folder datasets).
    public var classNames: [String]?

    public init(name: String, sampleShape: [Int], images: [Float], labels: [Int], classNames: [String]? = nil) {
        self.name = name; self.sampleShape = sampleShape; self.images = images; self.labels = labels; self.classNames = classNames
    }

    public var count: Int { labels.count }
    public var sampleSize: Int { sampleShape.reduce(1, *) }
    /// Number of classes the data implies: the folder count, else the largest label + 1.
    public var classCount: Int { classNames?.count ?? ((labels.max() ?? -1) + 1) }

    /// The images fit a model input of `shape` (C, H, W).
    public func checkImageShape(_ shape: [Int]) throws {
        if shape != sampleShape {
            throw ZooError.badInput("\(name): images are \(ShapeFormat.string(sampleShape)) but the model expects \(ShapeFormat.string(shape))")
        }
    }

    /// Every label lies in 0..<classes.
    public func checkLabels(classes: Int) throws {
        for (i, l) in labels.enumerated() where l < 0 || l >= classes {
            throw ZooError.badInput("\(name): label \(l) of sample \(i) is out of range for \(classes) classes (expected 0...\(classes - 1))")
        }
    }

    /// An explicitly requested class count agrees with the data.
    public func checkClassCount(_ n: Int) throws {
        try checkLabels(classes: n)
        if classCount != n {
            throw ZooError.badInput("\(name): --classes \(n) disagrees with the data, which has \(classCount) classes")
        }
    }

    public func subset(_ idx: [Int]) -> Dataset {
        let s = sampleSize
        var im = [Float](); im.reserveCapacity(idx.count * s)
        for i in idx { im.append(contentsOf: images[(i * s)..<((i + 1) * s)]) }
        return Dataset(name: name, sampleShape: sampleShape, images: im, labels: idx.map { labels[$0] }, classNames: classNames)
    }
}

public struct DataSplits: Sendable {
    public var train: Dataset
    public var test: Dataset?
}

public enum DataSource {
    /// Loads `path`: a `.npz` (Keras mnist.npz keys), a folder of IDX files (MNIST layout, raw or .gz),
    /// or a folder of PNGs with one sub-folder per class (optionally under train/ and test/).
    public static func load(path: String) throws -> DataSplits {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw ZooError.file(path: path, message: "no such file or folder")
        }
        if !isDir.boolValue { return try loadNpz(path: path) }
        let entries = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
        if entries.contains(where: { $0.hasPrefix("train-images") }) { return try loadIDX(folder: path, entries: entries) }
        return try loadFolders(path: path)
    }

    static func images(from a: NumpyArray, what: String) throws -> ([Int], [Float]) {
        var shape = a.shape
        if shape.count == 3 { shape.insert(1, at: 1) }
        guard shape.count == 4, shape.allSatisfy({ $0 > 0 }) else {
            throw ZooError.badInput("\(what): images must be N×H×W or N×C×H×W, got shape \(ShapeFormat.bracket(a.shape))")
        }
        var v = a.values
        if a.dtype.hasSuffix("u1") { for i in v.indices { v[i] /= 255 } }
        else if a.isInteger { throw ZooError.badInput("\(what): images have dtype \(a.dtype); expected uint8 or float32") }
        if let bad = v.firstIndex(where: { !$0.isFinite }) {
            throw ZooError.badInput("\(what): image value \(v[bad]) at element \(bad) is not finite")
        }
        return (shape, v)
    }

    static func labels(from a: NumpyArray, what: String) throws -> [Int] {
        guard let ints = a.integers else { throw ZooError.badInput("\(what): labels have dtype \(a.dtype); expected integers (int64 or uint8)") }
        guard a.shape.count == 1 || (a.shape.count == 2 && a.shape[1] == 1) else {
            throw ZooError.badInput("\(what): labels must be a vector, got shape \(ShapeFormat.bracket(a.shape))")
        }
        if let i = ints.firstIndex(where: { $0 < 0 }) {
            throw ZooError.badInput("\(what): label \(ints[i]) of sample \(i) is negative")
        }
        return ints
    }

    static func pair(_ x: NumpyArray, _ y: NumpyArray, name: String, xw: String, yw: String) throws -> Dataset {
        let (shape, v) = try images(from: x, what: xw)
        let l = try labels(from: y, what: yw)
        guard l.count == shape[0] else {
            throw ZooError.badInput("\(name): \(shape[0]) images but \(l.count) labels")
        }
        return Dataset(name: name, sampleShape: Array(shape.dropFirst()), images: v, labels: l)
    }

    static func loadNpz(path: String) throws -> DataSplits {
        let arrays = try NpzReader.read(path: path)
        func need(_ k: String) throws -> NumpyArray {
            guard let a = arrays[k] else {
                throw ZooError.file(path: path, message: "no array '\(k)' (expected keys x_train, y_train and optionally x_test, y_test; found \(arrays.keys.sorted().joined(separator: ", ")))")
            }
            return a
        }
        let train = try pair(try need("x_train"), try need("y_train"), name: "\(path) (train)", xw: "\(path) (x_train)", yw: "\(path) (y_train)")
        var test: Dataset? = nil
        if arrays["x_test"] != nil || arrays["y_test"] != nil {
            test = try pair(try need("x_test"), try need("y_test"), name: "\(path) (test)", xw: "\(path) (x_test)", yw: "\(path) (y_test)")
            if test!.sampleShape != train.sampleShape {
                throw ZooError.badInput("\(path): test images are \(ShapeFormat.string(test!.sampleShape)) but training images are \(ShapeFormat.string(train.sampleShape))")
            }
        }
        return DataSplits(train: train, test: test)
    }

    static func loadIDX(folder: String, entries: [String]) throws -> DataSplits {
        func find(_ prefix: String) -> String? { entries.first { $0.hasPrefix(prefix) }.map { folder + "/" + $0 } }
        func split(_ img: String, _ lab: String, _ label: String) throws -> Dataset? {
            guard let ip = find(img) else { return nil }
            guard let lp = find(lab) else { throw ZooError.file(path: folder, message: "has \(ip.split(separator: "/").last!) but no \(lab)* file") }
            let x = try IDXReader.read(path: ip), y = try IDXReader.read(path: lp)
            return try pair(x, y, name: "\(folder) (\(label))", xw: ip, yw: lp)
        }
        guard let train = try split("train-images", "train-labels", "train") else {
            throw ZooError.file(path: folder, message: "no train-images IDX file")
        }
        let test = try split("t10k-images", "t10k-labels", "test")
        if let t = test, t.sampleShape != train.sampleShape {
            throw ZooError.badInput("\(folder): test images are \(ShapeFormat.string(t.sampleShape)) but training images are \(ShapeFormat.string(train.sampleShape))")
        }
        return DataSplits(train: train, test: test)
    }

    static func subfolders(_ p: String) -> [String] {
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: p)) ?? []).filter {
            var d: ObjCBool = false
            return !$0.hasPrefix(".") && fm.fileExists(atPath: p + "/" + $0, isDirectory: &d) && d.boolValue
        }.sorted()
    }

    static func loadFolders(path: String) throws -> DataSplits {
        let subs = subfolders(path)
        if subs.contains("train") {
            let train = try loadClassFolder(path + "/train", classes: nil)
            let test = subs.contains("test") ? try loadClassFolder(path + "/test", classes: train.classNames) : nil
            if let t = test, t.sampleShape != train.sampleShape {
                throw ZooError.badInput("\(path): test images are \(ShapeFormat.string(t.sampleShape)) but training images are \(ShapeFormat.string(train.sampleShape))")
            }
            return DataSplits(train: train, test: test)
        }
        return DataSplits(train: try loadClassFolder(path, classes: nil), test: nil)
    }

    /// One sub-folder per class, PNG files inside; every image must have the same size.
    static func loadClassFolder(_ path: String, classes: [String]?) throws -> Dataset {
        let names = subfolders(path)
        guard !names.isEmpty else { throw ZooError.file(path: path, message: "not a dataset: expected a .npz file, IDX files or one sub-folder of PNG images per class") }
        if let c = classes, c != names {
            throw ZooError.badInput("\(path): class folders \(names.joined(separator: ", ")) differ from the training classes \(c.joined(separator: ", "))")
        }
        var decoded: [(String, DecodedImage, Int)] = []
        for (ci, cname) in names.enumerated() {
            let dir = path + "/" + cname
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.lowercased().hasSuffix(".png") }.sorted()
            for f in files { decoded.append((dir + "/" + f, try PNGDecoder.decode(path: dir + "/" + f), ci)) }
        }
        guard let first = decoded.first else { throw ZooError.file(path: path, message: "no PNG images in the class folders") }
        // Gray images join color ones as three equal channels (like torchvision's ImageFolder RGB conversion).
        let channels = decoded.map(\.1.channels).max()!
        let shape = [channels, first.1.height, first.1.width]
        var images: [Float] = [], labels: [Int] = []
        images.reserveCapacity(decoded.count * shape.reduce(1, *))
        for (fp, im, ci) in decoded {
            if im.height != first.1.height || im.width != first.1.width {
                throw ZooError.badInput("\(fp): image is \(im.width)x\(im.height) (width x height) but \(first.0) is \(first.1.width)x\(first.1.height); all images must have the same size")
            }
            let px = im.pixels.map { Float($0) / 255 }
            if im.channels == channels { images.append(contentsOf: px) }
            else { for _ in 0..<channels { images.append(contentsOf: px) } }
            labels.append(ci)
        }
        return Dataset(name: path, sampleShape: shape, images: images, labels: labels, classNames: names)
    }
}

/// Per-channel normalization: (x - mean) / std.
public struct Normalization: Codable, Sendable, Equatable {
    public var mean: [Float]
    public var std: [Float]
    public init(mean: [Float], std: [Float]) { self.mean = mean; self.std = std }

    /// Channel statistics of a dataset (population std).
    public static func compute(_ d: Dataset) -> Normalization {
        let c = d.sampleShape[0], plane = d.sampleSize / c
        var mean = [Float](repeating: 0, count: c), std = [Float](repeating: 1, count: c)
        for ch in 0..<c {
            var s = 0.0, s2 = 0.0, n = 0.0
            for i in 0..<d.count {
                let base = i * d.sampleSize + ch * plane
                for k in 0..<plane { let v = Double(d.images[base + k]); s += v; s2 += v * v }
                n += Double(plane)
            }
            let m = s / max(n, 1)
            mean[ch] = Float(m)
            std[ch] = Float(max((s2 / max(n, 1) - m * m).squareRoot(), 1e-6))
        }
        return Normalization(mean: mean, std: std)
    }
}

/// Training-time augmentation.
public struct Augmentation: Codable, Sendable, Equatable {
    /// Random crop of the original size after zero-padding each side by this many pixels (0 = off).
    public var cropPadding: Int = 0
    /// Horizontal flip with probability 1/2.
    public var horizontalFlip: Bool = false
    public init(cropPadding: Int = 0, horizontalFlip: Bool = false) { self.cropPadding = cropPadding; self.horizontalFlip = horizontalFlip }
    public var isIdentity: Bool { cropPadding == 0 && !horizontalFlip }
}

/// Seeded epoch order and batch assembly.
public struct Batcher: Sendable {
    public var data: Dataset
    public var batchSize: Int
    public var normalization: Normalization?
    public var augmentation: Augmentation
    public var seed: UInt64

    public init(data: Dataset, batchSize: Int, normalization: Normalization?, augmentation: Augmentation = .init(), seed: UInt64 = 0) {
        self.data = data; self.batchSize = max(1, batchSize); self.normalization = normalization
        self.augmentation = augmentation; self.seed = seed
    }

    public var batchesPerEpoch: Int { (data.count + batchSize - 1) / batchSize }

    /// Fisher-Yates shuffle seeded by (seed, epoch): an epoch's order does not depend on earlier epochs,
    /// so a resumed run sees the same batches.
    public func order(epoch: Int, shuffle: Bool = true) -> [Int] {
        var idx = Array(0..<data.count)
        guard shuffle else { return idx }
        var rng = SeededRandom(seed: seed &* 0x100000001B3 &+ UInt64(epoch) &* 0x9E3779B1 &+ 1)
        if idx.count > 1 {
            for i in stride(from: idx.count - 1, to: 0, by: -1) {
                let j = Int(rng.next() % UInt64(i + 1))
                idx.swapAt(i, j)
            }
        }
        return idx
    }

    /// The batch of samples `indices`, normalized, augmented with `rng` when `augment`.
    public func batch(_ indices: [Int], augment: Bool, rng: inout SeededRandom) -> (Tensor, [Int]) {
        let c = data.sampleShape[0], h = data.sampleShape[1], w = data.sampleShape[2]
        let s = data.sampleSize
        var out = [Float](repeating: 0, count: indices.count * s)
        for (bi, i) in indices.enumerated() {
            let src = i * s, dst = bi * s
            var dy = 0, dx = 0, flip = false
            if augment {
                let p = augmentation.cropPadding
                if p > 0 {
                    dy = Int(rng.next() % UInt64(2 * p + 1)) - p
                    dx = Int(rng.next() % UInt64(2 * p + 1)) - p
                }
                if augmentation.horizontalFlip { flip = rng.next() & 1 == 1 }
            }
            for ch in 0..<c {
                let m = normalization?.mean[ch] ?? 0, sd = normalization?.std[ch] ?? 1
                for y in 0..<h {
                    let sy = y + dy
                    for x in 0..<w {
                        let xx = flip ? w - 1 - x : x
                        let sx = xx + dx
                        let v: Float = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? data.images[src + ch * h * w + sy * w + sx] : 0
                        out[dst + ch * h * w + y * w + x] = (v - m) / sd
                    }
                }
            }
        }
        return (Tensor(shape: [indices.count] + data.sampleShape, data: out), indices.map { data.labels[$0] })
    }
}
