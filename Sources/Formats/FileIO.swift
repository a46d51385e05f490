import Foundation
import Zoo
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file reads and atomic writes with errors that name the file and the system's reason.
public enum FileIO {
    static func reason(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// Reads a whole regular file.
    /// Opens `path` for reading; the caller closes the descriptor. Errors name the file (missing, unreadable,
    /// a directory).
    static func openForReading(_ path: String) throws -> (fd: Int32, size: Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw ZooError.file(path: path, message: "cannot open: \(reason(errno))") }
        var st = stat()
        if fstat(fd, &st) != 0 {
            let message = "cannot read: \(reason(errno))"
            close(fd)
            throw ZooError.file(path: path, message: message)
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            close(fd)
            throw ZooError.file(path: path, message: "is a directory, not a file")
        }
        return (fd, Int(st.st_size))
    }

    public static func read(_ path: String) throws -> Data {
        let (fd, size) = try openForReading(path)
        defer { close(fd) }
        var data = Data(count: size)
        var got = 0
        try data.withUnsafeMutableBytes { (buf: UnsafeMutableRawBufferPointer) in
            while got < size {
                let n = Glibc.read(fd, buf.baseAddress! + got, min(size - got, 1 << 30))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ZooError.file(path: path, message: "cannot read: \(reason(errno))")
                }
                if n == 0 { break }
                got += n
            }
        }
        if got < size { data.removeSubrange(got..<size) }
        return data
    }

    /// Writes `data` to a temporary file in the destination's folder, flushes it and renames it over
    /// `path`, so readers never see a partial file and a failure leaves no output behind.
    public static func writeAtomically(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let tmp = (dir.isEmpty ? "." : dir) + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0 { throw ZooError.file(path: path, message: "cannot create file: \(reason(errno))") }
        var failure: ZooError?
        data.withUnsafeBytes { (buf: UnsafeRawBufferPointer) in
            var done = 0
            while done < buf.count {
                let n = write(fd, buf.baseAddress! + done, min(buf.count - done, 1 << 30))
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = .file(path: path, message: "cannot write: \(reason(errno))")
                    return
                }
                done += n
            }
        }
        if failure == nil && fsync(fd) != 0 { failure = .file(path: path, message: "cannot write: \(reason(errno))") }
        if close(fd) != 0 && failure == nil { failure = .file(path: path, message: "cannot write: \(reason(errno))") }
        if failure == nil && rename(tmp, path) != 0 {
            failure = .file(path: path, message: "cannot move the finished file into place: \(reason(errno))")
        }
        if let failure {
            unlink(tmp)
            throw failure
        }
    }
}
