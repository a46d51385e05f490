import Foundation
import Zoo

/// The zoo's own checkpoint: one HDF5 file that h5py reads without zoo code.
///
/// Layout (format version 1):
///
///     /                          attrs: zoo_format = "zoo-checkpoint", format_version = 1 (int64),
///                                       producer, created (ISO 8601 UTC),
///                                       source_file, source_format (only when converted)
///     /architecture              scalar UTF-8 string dataset: the architecture spec JSON (Graph)
///     /tensors/<name>            float32 dataset per parameter and buffer, under its canonical
///                                dotted name in one flat group ("layer1.0.conv1.weight"), so
///                                `{k: v[()] for k, v in f["tensors"].items()}` is a state_dict;
///                                attr sha256 = hex SHA-256 of the tensor's little-endian float32
///                                bytes in C order
///     /training                  only when there is training state; attrs: optimizer,
///                                hyperparameters (JSON object), step, epoch (int64),
///                                frozen (string array), lr_scales (JSON object name → scale)
///     /training/<slot>/<name>    per-parameter optimizer state ("momentum_buffer", "exp_avg",
///                                "exp_avg_sq"), float32 with sha256 attrs like /tensors
///
/// Writes go to a temporary file in the same folder, then rename over the target, one tensor at a
/// time. Reads check every checksum, the dtype and every shape against the architecture.
public enum ZooCheckpoint {
    public static let formatName = "zoo-checkpoint"
    public static let formatVersion: Int64 = 1
    public static let producer = "zoo-tool (zoo Formats library)"

    public struct Metadata: Sendable, Equatable {
        public var formatVersion: Int
        public var producer: String
        public var created: String
        public var sourceFile: String?
        public var sourceFormat: String?
    }

    public struct Contents: Sendable {
        public var model: Model
        public var training: TrainingState?
        public var metadata: Metadata
    }

    /// True when `path` is an HDF5 file with the zoo checkpoint's root attribute.
    public static func isZooCheckpoint(path: String) -> Bool {
        guard H5.looksLikeHDF5(path: path), let f = try? H5File.open(path: path) else { return false }
        return (try? f.root.stringAttribute("zoo_format")) == formatName
    }

    /// Writes `model` (and `training`) atomically to `path`.
    public static func write(_ model: Model, training: TrainingState? = nil, to path: String,
                             sourceFile: String? = nil, sourceFormat: String? = nil) throws {
        let delay = ProcessInfo.processInfo.environment["ZOO_TEST_WRITE_DELAY_MS"].flatMap { UInt32($0) } ?? 0
        try H5AtomicWriter.write(to: path) { tmp in
            let f = try H5File.create(path: tmp)
            let root = f.root
            try root.setAttribute("zoo_format", string: formatName)
            try root.setAttribute("format_version", int: formatVersion)
            try root.setAttribute("producer", string: producer)
            let fmt = ISO8601DateFormatter()
            fmt.timeZone = TimeZone(identifier: "UTC")
            try root.setAttribute("created", string: fmt.string(from: Date()))
            if let sourceFile { try root.setAttribute("source_file", string: sourceFile) }
            if let sourceFormat { try root.setAttribute("source_format", string: sourceFormat) }
            let json = String(decoding: try model.graph.jsonData(pretty: false), as: UTF8.self)
            try root.writeStringDataset("architecture", json)

            let tensors = try root.createGroup("tensors")
            for name in orderedNames(model) {
                guard let t = model.tensors[name] else { continue }
                try writeTensor(t, name: name, in: tensors, displayPath: path)
                if delay > 0 { usleep(delay * 1000) }
            }
            if let training {
                let g = try root.createGroup("training")
                try g.setAttribute("optimizer", string: training.optimizer)
                try g.setAttribute("hyperparameters", string: try jsonObject(training.hyperParameters))
                try g.setAttribute("step", int: Int64(training.step))
                try g.setAttribute("epoch", int: Int64(training.epoch))
                try g.setAttribute("frozen", strings: training.frozen.sorted())
                try g.setAttribute("lr_scales", string: try jsonObject(training.learningRateScales))
                for slot in training.slots.keys.sorted() {
                    let sg = try g.createGroup(slot)
                    let entries = training.slots[slot]!
                    for name in entries.keys.sorted() {
                        try writeTensor(entries[name]!, name: name, in: sg, displayPath: path)
                    }
                }
            }
            try f.close()
        }
    }

    /// Parameter order of the architecture first, then anything else sorted.
    static func orderedNames(_ model: Model) -> [String] {
        var seen = Set<String>()
        var out: [String] = []
        for s in model.graph.parameterSpecs where model.tensors[s.key] != nil && !seen.contains(s.key) {
            out.append(s.key); seen.insert(s.key)
        }
        out += model.tensors.keys.filter { !seen.contains($0) }.sorted()
        return out
    }

    static func writeTensor(_ t: Tensor, name: String, in group: H5Group, displayPath: String) throws {
        guard !name.isEmpty, !name.contains("/") else {
            throw ZooError.file(path: displayPath, message: "tensor name '\(name)' cannot be stored (empty or contains '/')")
        }
        let ds = try group.writeDataset(name, shape: t.shape, floats: t.data)
        try ds.setAttribute("sha256", string: SHA256.hex(floats: t.data))
    }

    static func jsonObject(_ d: [String: Double]) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return String(decoding: try e.encode(d), as: UTF8.self)
    }

    /// Reads and verifies a checkpoint: format attribute, architecture, every tensor's dtype, shape and
    /// SHA-256; strictly the architecture's parameters (no missing, no extra).
    public static func read(path: String) throws -> Contents {
        let f = try H5File.open(path: path)
        let root = f.root
        guard root.hasAttribute("zoo_format"), (try? root.stringAttribute("zoo_format")) == formatName else {
            throw ZooError.file(path: path, message: "not a zoo checkpoint (root attribute zoo_format = \"\(formatName)\" missing)")
        }
        let version = try root.intAttribute("format_version")
        guard version >= 1, version <= formatVersion else {
            throw ZooError.file(path: path, message: "zoo checkpoint format version \(version) is not supported (this build reads 1...\(formatVersion))")
        }
        let meta = Metadata(formatVersion: Int(version),
                            producer: (try? root.stringAttribute("producer")) ?? "",
                            created: (try? root.stringAttribute("created")) ?? "",
                            sourceFile: try? root.stringAttribute("source_file"),
                            sourceFormat: try? root.stringAttribute("source_format"))
        let json = try root.readStringDataset("architecture")
        let graph: Graph
        do { graph = try Graph.fromJSON(Data(json.utf8)) } catch let e as ZooError {
            throw ZooError.file(path: path, message: "architecture: \(e.description)")
        }
        let tg = try root.group("tensors")
        var tensors: [String: Tensor] = [:]
        var expected = Set<String>()
        for spec in graph.parameterSpecs {
            expected.insert(spec.key)
            guard tg.contains(spec.key) else {
                throw ZooError.file(path: path, message: "dataset 'tensors/\(spec.key)' missing (the architecture needs \(ShapeFormat.bracket(spec.shape)))")
            }
            tensors[spec.key] = try readTensor(spec.key, in: tg, expectedShape: spec.shape, what: "tensor", path: path)
        }
        let extra = try tg.linkNames().filter { !expected.contains($0) && !$0.hasSuffix("num_batches_tracked") }
        if !extra.isEmpty {
            throw ZooError.file(path: path, message: "tensors not in the architecture: " + extra.prefix(10).joined(separator: ", "))
        }
        let model = Model(graph: graph, tensors: tensors)

        var training: TrainingState?
        if root.kind(of: "training") == .group {
            let g = try root.group("training")
            var st = TrainingState(optimizer: try g.stringAttribute("optimizer"))
            st.hyperParameters = try decodeObject(try g.stringAttribute("hyperparameters"), "training/hyperparameters", path)
            st.learningRateScales = try decodeObject(try g.stringAttribute("lr_scales"), "training/lr_scales", path)
            st.step = Int(try g.intAttribute("step"))
            st.epoch = Int(try g.intAttribute("epoch"))
            st.frozen = Set(try g.stringsAttribute("frozen"))
            let shapes = Dictionary(graph.parameterSpecs.map { ($0.key, $0.shape) }, uniquingKeysWith: { a, _ in a })
            for slot in try g.linkNames() where g.kind(of: slot) == .group {
                let sg = try g.group(slot)
                var entries: [String: Tensor] = [:]
                for name in try sg.linkNames() {
                    guard let shape = shapes[name] else {
                        throw ZooError.file(path: path, message: "training state 'training/\(slot)/\(name)' is for a parameter not in the architecture")
                    }
                    entries[name] = try readTensor(name, in: sg, expectedShape: shape, what: "training state '\(slot)' of", path: path)
                }
                st.slots[slot] = entries
            }
            training = st
        }
        return Contents(model: model, training: training, metadata: meta)
    }

    static func decodeObject(_ s: String, _ what: String, _ path: String) throws -> [String: Double] {
        do { return try JSONDecoder().decode([String: Double].self, from: Data(s.utf8)) } catch {
            throw ZooError.file(path: path, message: "\(what) is not a JSON object of numbers")
        }
    }

    static func readTensor(_ name: String, in group: H5Group, expectedShape: [Int], what: String, path: String) throws -> Tensor {
        let ds = try group.dataset(name)
        let dtype = try ds.dtype()
        guard dtype == .float32 else {
            throw ZooError.file(path: path, message: "\(what) '\(name)' is stored as \(dtype); the zoo checkpoint holds float32")
        }
        let shape = try ds.shape()
        guard shape == expectedShape else {
            throw ZooError.file(path: path, message: "shape mismatch for \(what) '\(name)': architecture expects \(ShapeFormat.bracket(expectedShape)), file has \(ShapeFormat.bracket(shape))")
        }
        let data = try ds.readFloats()
        guard ds.hasAttribute("sha256") else {
            throw ZooError.file(path: path, message: "\(what) '\(name)' has no sha256 attribute")
        }
        let stored = try ds.stringAttribute("sha256")
        let actual = SHA256.hex(floats: data)
        guard stored.lowercased() == actual else {
            throw ZooError.file(path: path, message: "checksum mismatch for \(what) '\(name)': stored sha256 \(stored), data has \(actual)")
        }
        return Tensor(shape: shape, data: data)
    }
}

/// Atomic file replacement: the body writes a temporary file in the target's folder; on success it is
/// renamed over the target, on failure it is removed. A crash leaves the previous target intact.
public enum H5AtomicWriter {
    public static func temporaryPath(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        return dir + "/." + url.lastPathComponent + ".tmp-\(getpid())"
    }

    public static func write(to path: String, _ body: (String) throws -> Void) throws {
        let tmp = temporaryPath(for: path)
        unlink(tmp)
        do {
            try body(tmp)
        } catch {
            unlink(tmp)
            throw error
        }
        // Make the data durable before it replaces the old file.
        let fd = open(tmp, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
        guard rename(tmp, path) == 0 else {
            let msg = String(cString: strerror(errno))
            unlink(tmp)
            throw ZooError.file(path: path, message: "cannot replace file: \(msg)")
        }
    }
}
