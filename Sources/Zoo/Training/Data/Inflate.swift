import CZlib
import Foundation

/// Small wrappers over zlib's inflate for the data loaders (zip members, PNG IDAT, gzip files).
public enum Inflate {
    public enum Wrapper { case raw, zlib, gzip }

    /// Decompresses `input`. `expectedSize`, when known, sizes the output buffer up front.
    /// Throws a message (without file name) on corrupt or truncated data; callers wrap it in a ZooError.
    public static func decompress(_ input: [UInt8], wrapper: Wrapper, expectedSize: Int? = nil) throws -> [UInt8] {
        var stream = z_stream()
        let bits: Int32 = wrapper == .raw ? -15 : wrapper == .zlib ? 15 : 31
        guard inflateInit2_(&stream, bits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw InflateError("zlib initialisation failed")
        }
        defer { inflateEnd(&stream) }
        var out = [UInt8](repeating: 0, count: max(expectedSize ?? input.count * 4, 64))
        var produced = 0
        var input = input
        if input.isEmpty { input = [0] }
        let inCount = input.count
        var status: Int32 = Z_OK
        try input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inCount)
            while true {
                if produced == out.count { out.append(contentsOf: [UInt8](repeating: 0, count: out.count)) }
                let room = out.count - produced
                status = out.withUnsafeMutableBufferPointer { ob -> Int32 in
                    stream.next_out = ob.baseAddress! + produced
                    stream.avail_out = uInt(room)
                    let r = inflate(&stream, Z_NO_FLUSH)
                    produced += room - Int(stream.avail_out)
                    return r
                }
                if status == Z_STREAM_END { break }
                if status == Z_BUF_ERROR && stream.avail_in == 0 { throw InflateError("compressed data is truncated") }
                if status != Z_OK && status != Z_BUF_ERROR {
                    let msg = stream.msg.map { String(cString: $0) } ?? "code \(status)"
                    throw InflateError("compressed data is corrupt (\(msg))")
                }
            }
        }
        out.removeSubrange(produced...)
        return out
    }

    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { UInt32(CZlib.crc32(0, $0.baseAddress, uInt($0.count))) }
    }
    public static func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.withUnsafeBufferPointer { UInt32(CZlib.crc32(0, $0.baseAddress, uInt($0.count))) }
    }

    /// zlib-wrapped deflate (for writing PNGs in tests and tools).
    public static func compress(_ input: [UInt8]) -> [UInt8] {
        var destLen = compressBound(uLong(input.count))
        var out = [UInt8](repeating: 0, count: Int(destLen))
        _ = out.withUnsafeMutableBufferPointer { o in
            input.withUnsafeBufferPointer { i in CZlib.compress(o.baseAddress, &destLen, i.baseAddress, uLong(i.count)) }
        }
        return Array(out[..<Int(destLen)])
    }
}

public struct InflateError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}
