import CHDF5
import Foundation
import Zoo

/// A small safe layer over libhdf5: files, groups, datasets (float32, float64, int64, uint8),
/// string and string-array attributes, link iteration. Every failure is `ZooError.file(path:message:)`
/// naming the file and the object; HDF5's own error printing is switched off.
public enum H5 {
    /// Element types this wrapper reads and writes.
    public enum DType: Equatable, Sendable, CustomStringConvertible {
        case float32, float64, int64, uint8
        /// Any other stored type, described (e.g. "int32", "string", "compound").
        case other(String)

        public var description: String {
            switch self {
            case .float32: return "float32"
            case .float64: return "float64"
            case .int64: return "int64"
            case .uint8: return "uint8"
            case let .other(s): return s
            }
        }
        var fileType: hid_t? {
            switch self {
            case .float32: return zoo_H5T_IEEE_F32LE()
            case .float64: return zoo_H5T_IEEE_F64LE()
            case .int64: return zoo_H5T_STD_I64LE()
            case .uint8: return zoo_H5T_STD_U8LE()
            case .other: return nil
            }
        }
        var memType: hid_t? {
            switch self {
            case .float32: return zoo_H5T_NATIVE_FLOAT()
            case .float64: return zoo_H5T_NATIVE_DOUBLE()
            case .int64: return zoo_H5T_NATIVE_INT64()
            case .uint8: return zoo_H5T_NATIVE_UINT8()
            case .other: return nil
            }
        }
        var size: Int {
            switch self {
            case .float32: return 4
            case .float64, .int64: return 8
            case .uint8: return 1
            case .other: return 0
            }
        }
    }

    nonisolated(unsafe) private static var silenced = false
    private static let lock = NSLock()
    /// Called before any HDF5 use: switches off HDF5's automatic error printing (once).
    static func setUp() {
        lock.lock(); defer { lock.unlock() }
        if !silenced { _ = H5open(); _ = zoo_H5_silence_errors(); silenced = true }
    }

    /// The innermost message on HDF5's error stack (or "" when empty); clears the stack.
    static func lastError() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        zoo_H5_last_error(&buf)
        zoo_H5_clear_errors()
        return h5String(buf)
    }

    /// True when the file starts with the HDF5 signature (at offset 0, 512, 1024, ...).
    public static func looksLikeHDF5(path: String) -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        let sig: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]
        var offset: UInt64 = 0
        while offset <= 1 << 16 {
            do { try h.seek(toOffset: offset) } catch { return false }
            guard let d = try? h.read(upToCount: 8), d.count == 8 else { return false }
            if Array(d) == sig { return true }
            offset = offset == 0 ? 512 : offset * 2
        }
        return false
    }
}

/// Base of every HDF5 object handle: owns an id and closes it on deinit.
public class H5Object {
    let id: hid_t
    /// Path of the file, for messages.
    public let filePath: String
    /// Path of the object inside the file ("/", "/tensors/conv1.weight").
    public let name: String
    private let closer: (hid_t) -> herr_t

    init(id: hid_t, filePath: String, name: String, closer: @escaping (hid_t) -> herr_t) {
        self.id = id; self.filePath = filePath; self.name = name; self.closer = closer
    }
    deinit { _ = closer(id) }

    func fail(_ what: String) -> ZooError {
        let detail = H5.lastError()
        return ZooError.file(path: filePath, message: what + (detail.isEmpty ? "" : " (HDF5: \(detail))"))
    }

    func child(_ n: String) -> String { name == "/" ? "/" + n : name + "/" + n }

    // MARK: attributes

    public func hasAttribute(_ attr: String) -> Bool { H5Aexists(id, attr) > 0 }

    public func attributeNames() throws -> [String] {
        var info = H5O_info_t()
        guard H5Oget_info2(id, &info, UInt32(H5O_INFO_NUM_ATTRS)) >= 0 else { throw fail("cannot list attributes of '\(name)'") }
        var names: [String] = []
        for i in 0..<info.num_attrs {
            let n = H5Aget_name_by_idx(id, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, nil, 0, zoo_H5P_DEFAULT())
            let n2 = n >= 0 ? n : H5Aget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, zoo_H5P_DEFAULT())
            guard n2 >= 0 else { throw fail("cannot list attributes of '\(name)'") }
            var buf = [CChar](repeating: 0, count: Int(n2) + 1)
            let idx = n >= 0 ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME
            _ = H5Aget_name_by_idx(id, ".", idx, H5_ITER_INC, i, &buf, buf.count, zoo_H5P_DEFAULT())
            names.append(h5String(buf))
        }
        _ = H5.lastError()
        return names
    }

    private func openAttribute(_ attr: String) throws -> hid_t {
        guard hasAttribute(attr) else {
            _ = H5.lastError()
            throw ZooError.file(path: filePath, message: "attribute '\(attr)' missing on '\(name)'")
        }
        let a = H5Aopen(id, attr, zoo_H5P_DEFAULT())
        guard a >= 0 else { throw fail("cannot open attribute '\(attr)' on '\(name)'") }
        return a
    }

    /// Writes (replacing) a UTF-8 string attribute (variable length, what h5py reads as `str`).
    public func setAttribute(_ attr: String, string value: String) throws {
        try setAttribute(attr, strings: [value], scalar: true)
    }

    /// Writes (replacing) a 1-D array of UTF-8 strings.
    public func setAttribute(_ attr: String, strings values: [String]) throws {
        try setAttribute(attr, strings: values, scalar: false)
    }

    private func setAttribute(_ attr: String, strings values: [String], scalar: Bool) throws {
        if hasAttribute(attr) { _ = H5Adelete(id, attr) }
        let t = H5Tcopy(zoo_H5T_C_S1())
        defer { _ = H5Tclose(t) }
        _ = H5Tset_size(t, zoo_H5T_VARIABLE())
        _ = H5Tset_cset(t, H5T_CSET_UTF8)
        let space: hid_t
        if scalar { space = H5Screate(H5S_SCALAR) } else {
            var dims = [hsize_t(values.count)]
            space = H5Screate_simple(1, &dims, nil)
        }
        defer { _ = H5Sclose(space) }
        let a = H5Acreate2(id, attr, t, space, zoo_H5P_DEFAULT(), zoo_H5P_DEFAULT())
        guard a >= 0 else { throw fail("cannot create attribute '\(attr)' on '\(name)'") }
        defer { _ = H5Aclose(a) }
        let cstrs = values.map { strdup($0) }
        defer { cstrs.forEach { free($0) } }
        var ptrs: [UnsafePointer<CChar>?] = cstrs.map { UnsafePointer($0) }
        let r = ptrs.withUnsafeMutableBufferPointer { H5Awrite(a, t, $0.baseAddress) }
        guard r >= 0 else { throw fail("cannot write attribute '\(attr)' on '\(name)'") }
    }

    /// Writes (replacing) a scalar int64 attribute.
    public func setAttribute(_ attr: String, int value: Int64) throws {
        try setNumericAttribute(attr, values: [value], type: zoo_H5T_STD_I64LE(), mem: zoo_H5T_NATIVE_INT64(), scalar: true)
    }

    /// Writes (replacing) a scalar float64 attribute.
    public func setAttribute(_ attr: String, double value: Double) throws {
        try setNumericAttribute(attr, values: [value], type: zoo_H5T_IEEE_F64LE(), mem: zoo_H5T_NATIVE_DOUBLE(), scalar: true)
    }

    /// Writes (replacing) a 1-D int64 attribute.
    public func setAttribute(_ attr: String, ints values: [Int64]) throws {
        try setNumericAttribute(attr, values: values, type: zoo_H5T_STD_I64LE(), mem: zoo_H5T_NATIVE_INT64(), scalar: false)
    }

    private func setNumericAttribute<T>(_ attr: String, values: [T], type: hid_t, mem: hid_t, scalar: Bool) throws {
        if hasAttribute(attr) { _ = H5Adelete(id, attr) }
        let space: hid_t
        if scalar { space = H5Screate(H5S_SCALAR) } else {
            var dims = [hsize_t(values.count)]
            space = H5Screate_simple(1, &dims, nil)
        }
        defer { _ = H5Sclose(space) }
        let a = H5Acreate2(id, attr, type, space, zoo_H5P_DEFAULT(), zoo_H5P_DEFAULT())
        guard a >= 0 else { throw fail("cannot create attribute '\(attr)' on '\(name)'") }
        defer { _ = H5Aclose(a) }
        let r = values.withUnsafeBufferPointer { H5Awrite(a, mem, $0.baseAddress) }
        guard r >= 0 else { throw fail("cannot write attribute '\(attr)' on '\(name)'") }
    }

    /// Reads a string attribute (scalar, or the first of an array); fixed or variable length.
    public func stringAttribute(_ attr: String) throws -> String {
        let v = try stringsAttribute(attr)
        guard let first = v.first else {
            throw ZooError.file(path: filePath, message: "attribute '\(attr)' on '\(name)' is empty")
        }
        return first
    }

    /// Reads a string or string-array attribute (fixed or variable length, ASCII or UTF-8).
    public func stringsAttribute(_ attr: String) throws -> [String] {
        let a = try openAttribute(attr)
        defer { _ = H5Aclose(a) }
        let ftype = H5Aget_type(a)
        defer { _ = H5Tclose(ftype) }
        let space = H5Aget_space(a)
        defer { _ = H5Sclose(space) }
        guard H5Tget_class(ftype) == H5T_STRING else {
            throw ZooError.file(path: filePath, message: "attribute '\(attr)' on '\(name)' is not a string")
        }
        let n = Int(H5Sget_simple_extent_npoints(space))
        if n == 0 { return [] }
        if H5Tis_variable_str(ftype) > 0 {
            let mem = H5Tcopy(zoo_H5T_C_S1())
            defer { _ = H5Tclose(mem) }
            _ = H5Tset_size(mem, zoo_H5T_VARIABLE())
            _ = H5Tset_cset(mem, H5Tget_cset(ftype))
            var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: n)
            guard H5Aread(a, mem, &ptrs) >= 0 else { throw fail("cannot read attribute '\(attr)' on '\(name)'") }
            let out = ptrs.map { $0.map { String(cString: $0) } ?? "" }
            _ = H5Dvlen_reclaim(mem, space, zoo_H5P_DEFAULT(), &ptrs)
            return out
        }
        let size = H5Tget_size(ftype)
        guard size > 0, size < 1 << 30 else { throw fail("attribute '\(attr)' on '\(name)' has a bad string size") }
        var raw = [UInt8](repeating: 0, count: size * n)
        guard H5Aread(a, ftype, &raw) >= 0 else { throw fail("cannot read attribute '\(attr)' on '\(name)'") }
        return (0..<n).map { i in
            var bytes = Array(raw[i * size..<(i + 1) * size])
            if let z = bytes.firstIndex(of: 0) { bytes.removeSubrange(z...) }
            while bytes.last == 0x20 && H5Tget_strpad(ftype) == H5T_STR_SPACEPAD { bytes.removeLast() }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// Reads a numeric attribute (any integer or float type) converted to Double.
    public func doublesAttribute(_ attr: String) throws -> [Double] {
        let a = try openAttribute(attr)
        defer { _ = H5Aclose(a) }
        let ftype = H5Aget_type(a)
        defer { _ = H5Tclose(ftype) }
        let cls = H5Tget_class(ftype)
        guard cls == H5T_INTEGER || cls == H5T_FLOAT else {
            throw ZooError.file(path: filePath, message: "attribute '\(attr)' on '\(name)' is not numeric")
        }
        let space = H5Aget_space(a)
        defer { _ = H5Sclose(space) }
        let n = Int(H5Sget_simple_extent_npoints(space))
        var out = [Double](repeating: 0, count: n)
        guard H5Aread(a, zoo_H5T_NATIVE_DOUBLE(), &out) >= 0 else { throw fail("cannot read attribute '\(attr)' on '\(name)'") }
        return out
    }

    public func intAttribute(_ attr: String) throws -> Int64 {
        let a = try openAttribute(attr)
        defer { _ = H5Aclose(a) }
        let ftype = H5Aget_type(a)
        defer { _ = H5Tclose(ftype) }
        guard H5Tget_class(ftype) == H5T_INTEGER else {
            throw ZooError.file(path: filePath, message: "attribute '\(attr)' on '\(name)' is not an integer")
        }
        let space = H5Aget_space(a)
        defer { _ = H5Sclose(space) }
        guard H5Sget_simple_extent_npoints(space) == 1 else {
            throw ZooError.file(path: filePath, message: "attribute '\(attr)' on '\(name)' is not a single integer")
        }
        var v: Int64 = 0
        guard H5Aread(a, zoo_H5T_NATIVE_INT64(), &v) >= 0 else { throw fail("cannot read attribute '\(attr)' on '\(name)'") }
        return v
    }
}

/// An open HDF5 file. Closing happens when the last reference goes away, or with `close()`.
public final class H5File {
    public let path: String
    private var fid: hid_t
    public let root: H5Group

    private init(path: String, fid: hid_t) throws {
        self.path = path; self.fid = fid
        let g = H5Gopen2(fid, "/", zoo_H5P_DEFAULT())
        guard g >= 0 else {
            _ = H5Fclose(fid)
            let detail = H5.lastError()
            throw ZooError.file(path: path, message: "cannot open the root group" + (detail.isEmpty ? "" : " (HDF5: \(detail))"))
        }
        root = H5Group(id: g, filePath: path, name: "/")
    }

    /// Creates (truncating) a file.
    public static func create(path: String) throws -> H5File {
        H5.setUp()
        let f = H5Fcreate(path, zoo_H5F_ACC_TRUNC(), zoo_H5P_DEFAULT(), zoo_H5P_DEFAULT())
        guard f >= 0 else {
            let detail = H5.lastError()
            throw ZooError.file(path: path, message: "cannot create HDF5 file" + (detail.isEmpty ? "" : " (HDF5: \(detail))"))
        }
        return try H5File(path: path, fid: f)
    }

    /// Opens an existing file. Distinguishes "missing", "not HDF5" and "damaged/truncated".
    public static func open(path: String, writable: Bool = false) throws -> H5File {
        H5.setUp()
        guard FileManager.default.fileExists(atPath: path) else {
            throw ZooError.file(path: path, message: "no such file")
        }
        guard H5.looksLikeHDF5(path: path) else {
            throw ZooError.file(path: path, message: "not an HDF5 file (no HDF5 signature)")
        }
        let f = H5Fopen(path, writable ? zoo_H5F_ACC_RDWR() : zoo_H5F_ACC_RDONLY(), zoo_H5P_DEFAULT())
        guard f >= 0 else {
            let detail = H5.lastError()
            throw ZooError.file(path: path, message: "HDF5 file is truncated or damaged; it cannot be opened" + (detail.isEmpty ? "" : " (HDF5: \(detail))"))
        }
        return try H5File(path: path, fid: f)
    }

    /// Flushes and closes. Later use of groups from this file fails with an error.
    public func close() throws {
        guard fid >= 0 else { return }
        let r = H5Fclose(fid)
        fid = -1
        if r < 0 {
            let detail = H5.lastError()
            throw ZooError.file(path: path, message: "cannot close HDF5 file" + (detail.isEmpty ? "" : " (HDF5: \(detail))"))
        }
    }

    public func flush() throws {
        guard H5Fflush(fid, H5F_SCOPE_GLOBAL) >= 0 else {
            throw ZooError.file(path: path, message: "cannot flush HDF5 file (HDF5: \(H5.lastError()))")
        }
    }

    deinit { if fid >= 0 { _ = H5Fclose(fid) } }
}

public enum H5LinkKind: Sendable { case group, dataset, other }

/// A group: children by name, sub-groups, datasets.
public final class H5Group: H5Object {
    init(id: hid_t, filePath: String, name: String) {
        super.init(id: id, filePath: filePath, name: name, closer: { H5Gclose($0) })
    }

    /// True when a link with this (single-level) name exists.
    public func contains(_ link: String) -> Bool {
        let r = H5Lexists(id, link, zoo_H5P_DEFAULT()) > 0
        if !r { _ = H5.lastError() }
        return r
    }

    /// Kind of the object a link points to (nil when the link does not exist).
    public func kind(of link: String) -> H5LinkKind? {
        guard contains(link) else { return nil }
        var info = H5O_info_t()
        guard H5Oget_info_by_name2(id, link, &info, UInt32(H5O_INFO_BASIC), zoo_H5P_DEFAULT()) >= 0 else {
            _ = H5.lastError(); return nil
        }
        switch info.type {
        case H5O_TYPE_GROUP: return .group
        case H5O_TYPE_DATASET: return .dataset
        default: return .other
        }
    }

    /// Names of the links in this group, in name order (HDF5's default index).
    public func linkNames() throws -> [String] {
        final class Box { var names: [String] = [] }
        let box = Box()
        var idx: hsize_t = 0
        let r = withExtendedLifetime(box) {
            H5Literate(id, H5_INDEX_NAME, H5_ITER_INC, &idx, { _, cname, _, data in
                let b = Unmanaged<Box>.fromOpaque(data!).takeUnretainedValue()
                b.names.append(String(cString: cname!))
                return 0
            }, Unmanaged.passUnretained(box).toOpaque())
        }
        guard r >= 0 else { throw fail("cannot list the members of '\(name)'") }
        return box.names
    }

    /// Removes a link (the object's space is not reclaimed in the file).
    public func removeLink(_ link: String) throws {
        guard H5Ldelete(id, link, zoo_H5P_DEFAULT()) >= 0 else { throw fail("cannot remove '\(child(link))'") }
    }

    public func createGroup(_ g: String) throws -> H5Group {
        let gid = H5Gcreate2(id, g, zoo_H5P_DEFAULT(), zoo_H5P_DEFAULT(), zoo_H5P_DEFAULT())
        guard gid >= 0 else { throw fail("cannot create group '\(child(g))'") }
        return H5Group(id: gid, filePath: filePath, name: child(g))
    }

    public func group(_ g: String) throws -> H5Group {
        guard kind(of: g) == .group else {
            throw ZooError.file(path: filePath, message: "group '\(child(g))' missing")
        }
        let gid = H5Gopen2(id, g, zoo_H5P_DEFAULT())
        guard gid >= 0 else { throw fail("cannot open group '\(child(g))'") }
        return H5Group(id: gid, filePath: filePath, name: child(g))
    }

    /// Opens an existing group or creates it.
    public func groupCreatingIfNeeded(_ g: String) throws -> H5Group {
        kind(of: g) == .group ? try group(g) : try createGroup(g)
    }

    public func dataset(_ d: String) throws -> H5Dataset {
        guard kind(of: d) == .dataset else {
            throw ZooError.file(path: filePath, message: "dataset '\(child(d))' missing")
        }
        let did = H5Dopen2(id, d, zoo_H5P_DEFAULT())
        guard did >= 0 else { throw fail("cannot open dataset '\(child(d))'") }
        return H5Dataset(id: did, filePath: filePath, name: child(d))
    }

    /// Creates a dataset of `shape` (empty shape = scalar) and writes `count` elements from `pointer`.
    @discardableResult
    public func writeDataset(_ d: String, dtype: H5.DType, shape: [Int], bytes pointer: UnsafeRawPointer?) throws -> H5Dataset {
        guard let ftype = dtype.fileType, let mtype = dtype.memType else {
            throw ZooError.file(path: filePath, message: "cannot write dataset '\(child(d))' of type \(dtype)")
        }
        let space: hid_t
        if shape.isEmpty { space = H5Screate(H5S_SCALAR) } else {
            var dims = shape.map { hsize_t($0) }
            space = H5Screate_simple(Int32(shape.count), &dims, nil)
        }
        guard space >= 0 else { throw fail("cannot make a dataspace for '\(child(d))'") }
        defer { _ = H5Sclose(space) }
        let did = H5Dcreate2(id, d, ftype, space, zoo_H5P_DEFAULT(), zoo_H5P_DEFAULT(), zoo_H5P_DEFAULT())
        guard did >= 0 else { throw fail("cannot create dataset '\(child(d))'") }
        let ds = H5Dataset(id: did, filePath: filePath, name: child(d))
        if shape.reduce(1, *) > 0 {
            guard let pointer, H5Dwrite(did, mtype, zoo_H5S_ALL(), zoo_H5S_ALL(), zoo_H5P_DEFAULT(), pointer) >= 0 else {
                throw fail("cannot write dataset '\(child(d))'")
            }
        }
        return ds
    }

    @discardableResult
    public func writeDataset(_ d: String, shape: [Int], floats: [Float]) throws -> H5Dataset {
        try checkCount(d, shape, floats.count)
        return try floats.withUnsafeBytes { try writeDataset(d, dtype: .float32, shape: shape, bytes: $0.baseAddress) }
    }

    @discardableResult
    public func writeDataset(_ d: String, shape: [Int], doubles: [Double]) throws -> H5Dataset {
        try checkCount(d, shape, doubles.count)
        return try doubles.withUnsafeBytes { try writeDataset(d, dtype: .float64, shape: shape, bytes: $0.baseAddress) }
    }

    @discardableResult
    public func writeDataset(_ d: String, shape: [Int], int64s: [Int64]) throws -> H5Dataset {
        try checkCount(d, shape, int64s.count)
        return try int64s.withUnsafeBytes { try writeDataset(d, dtype: .int64, shape: shape, bytes: $0.baseAddress) }
    }

    @discardableResult
    public func writeDataset(_ d: String, shape: [Int], uint8s: [UInt8]) throws -> H5Dataset {
        try checkCount(d, shape, uint8s.count)
        return try uint8s.withUnsafeBytes { try writeDataset(d, dtype: .uint8, shape: shape, bytes: $0.baseAddress) }
    }

    /// A scalar variable-length UTF-8 string dataset (h5py: `f[name][()]` gives bytes, `.asstr()[()]` str).
    public func writeStringDataset(_ d: String, _ value: String) throws {
        let t = H5Tcopy(zoo_H5T_C_S1())
        defer { _ = H5Tclose(t) }
        _ = H5Tset_size(t, zoo_H5T_VARIABLE())
        _ = H5Tset_cset(t, H5T_CSET_UTF8)
        let space = H5Screate(H5S_SCALAR)
        defer { _ = H5Sclose(space) }
        let did = H5Dcreate2(id, d, t, space, zoo_H5P_DEFAULT(), zoo_H5P_DEFAULT(), zoo_H5P_DEFAULT())
        guard did >= 0 else { throw fail("cannot create dataset '\(child(d))'") }
        defer { _ = H5Dclose(did) }
        let c = strdup(value)
        defer { free(c) }
        var p: [UnsafePointer<CChar>?] = [UnsafePointer(c)]
        guard H5Dwrite(did, t, zoo_H5S_ALL(), zoo_H5S_ALL(), zoo_H5P_DEFAULT(), &p) >= 0 else {
            throw fail("cannot write dataset '\(child(d))'")
        }
    }

    /// Reads a scalar string dataset (fixed or variable length).
    public func readStringDataset(_ d: String) throws -> String {
        let ds = try dataset(d)
        return try ds.readString()
    }

    private func checkCount(_ d: String, _ shape: [Int], _ n: Int) throws {
        guard shape.reduce(1, *) == n else {
            throw ZooError.file(path: filePath, message: "dataset '\(child(d))': shape \(ShapeFormat.bracket(shape)) does not hold \(n) elements")
        }
    }
}

/// A dataset: shape, element type, reading converted to Float / Double / Int64 / UInt8.
public final class H5Dataset: H5Object {
    init(id: hid_t, filePath: String, name: String) {
        super.init(id: id, filePath: filePath, name: name, closer: { H5Dclose($0) })
    }

    public func shape() throws -> [Int] {
        let s = H5Dget_space(id)
        guard s >= 0 else { throw fail("cannot read the shape of '\(name)'") }
        defer { _ = H5Sclose(s) }
        let rank = H5Sget_simple_extent_ndims(s)
        guard rank >= 0, rank <= 32 else { throw fail("cannot read the shape of '\(name)'") }
        var dims = [hsize_t](repeating: 0, count: Int(rank))
        _ = H5Sget_simple_extent_dims(s, &dims, nil)
        return dims.map { Int($0) }
    }

    public func dtype() throws -> H5.DType {
        let t = H5Dget_type(id)
        guard t >= 0 else { throw fail("cannot read the type of '\(name)'") }
        defer { _ = H5Tclose(t) }
        let size = H5Tget_size(t)
        switch H5Tget_class(t) {
        case H5T_FLOAT:
            return size == 4 ? .float32 : size == 8 ? .float64 : .other("float\(size * 8)")
        case H5T_INTEGER:
            let signed = H5Tget_sign(t) == H5T_SGN_2
            if signed && size == 8 { return .int64 }
            if !signed && size == 1 { return .uint8 }
            return .other((signed ? "int" : "uint") + "\(size * 8)")
        case H5T_STRING: return .other("string")
        case H5T_COMPOUND: return .other("compound")
        default: return .other("unsupported type")
        }
    }

    /// Byte offset of a contiguous dataset's data in the file (nil when not contiguous or unallocated).
    public var fileOffset: Int? {
        let o = H5Dget_offset(id)
        if o == hsize_t.max { _ = H5.lastError(); return nil }
        return Int(o)
    }

    public var elementCount: Int { get throws { try shape().reduce(1, *) } }

    /// Reads all elements into `buffer` (which must hold `elementCount` elements of `dtype`), converting.
    public func read(into buffer: UnsafeMutableRawPointer?, as dtype: H5.DType) throws {
        guard let mtype = dtype.memType else { throw ZooError.file(path: filePath, message: "cannot read '\(name)' as \(dtype)") }
        let stored = try self.dtype()
        if case .other(let s) = stored {
            throw ZooError.file(path: filePath, message: "dataset '\(name)' has type \(s), not a number type")
        }
        guard try elementCount > 0 else { return }
        guard H5Dread(id, mtype, zoo_H5S_ALL(), zoo_H5S_ALL(), zoo_H5P_DEFAULT(), buffer) >= 0 else {
            throw fail("cannot read dataset '\(name)' (truncated or damaged file?)")
        }
    }

    public func readFloats() throws -> [Float] {
        let n = try elementCount
        var out = [Float](repeating: 0, count: n)
        try out.withUnsafeMutableBytes { try read(into: $0.baseAddress, as: .float32) }
        return out
    }

    public func readDoubles() throws -> [Double] {
        let n = try elementCount
        var out = [Double](repeating: 0, count: n)
        try out.withUnsafeMutableBytes { try read(into: $0.baseAddress, as: .float64) }
        return out
    }

    public func readInt64s() throws -> [Int64] {
        let n = try elementCount
        var out = [Int64](repeating: 0, count: n)
        try out.withUnsafeMutableBytes { try read(into: $0.baseAddress, as: .int64) }
        return out
    }

    public func readUInt8s() throws -> [UInt8] {
        let n = try elementCount
        var out = [UInt8](repeating: 0, count: n)
        try out.withUnsafeMutableBytes { try read(into: $0.baseAddress, as: .uint8) }
        return out
    }

    /// Reads a scalar (or first element of a) string dataset.
    public func readString() throws -> String {
        let t = H5Dget_type(id)
        defer { _ = H5Tclose(t) }
        guard H5Tget_class(t) == H5T_STRING else {
            throw ZooError.file(path: filePath, message: "dataset '\(name)' is not a string")
        }
        let space = H5Dget_space(id)
        defer { _ = H5Sclose(space) }
        let n = Int(H5Sget_simple_extent_npoints(space))
        guard n >= 1 else { return "" }
        if H5Tis_variable_str(t) > 0 {
            let mem = H5Tcopy(zoo_H5T_C_S1())
            defer { _ = H5Tclose(mem) }
            _ = H5Tset_size(mem, zoo_H5T_VARIABLE())
            _ = H5Tset_cset(mem, H5Tget_cset(t))
            var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: n)
            guard H5Dread(id, mem, zoo_H5S_ALL(), zoo_H5S_ALL(), zoo_H5P_DEFAULT(), &ptrs) >= 0 else {
                throw fail("cannot read dataset '\(name)'")
            }
            let s = ptrs[0].map { String(cString: $0) } ?? ""
            _ = H5Dvlen_reclaim(mem, space, zoo_H5P_DEFAULT(), &ptrs)
            return s
        }
        let size = H5Tget_size(t)
        var raw = [UInt8](repeating: 0, count: size * n)
        guard H5Dread(id, t, zoo_H5S_ALL(), zoo_H5S_ALL(), zoo_H5P_DEFAULT(), &raw) >= 0 else {
            throw fail("cannot read dataset '\(name)'")
        }
        var first = Array(raw[0..<size])
        if let z = first.firstIndex(of: 0) { first.removeSubrange(z...) }
        return String(decoding: first, as: UTF8.self)
    }
}

/// A NUL-terminated C buffer as a String.
func h5String(_ buf: [CChar]) -> String {
    let bytes = buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
