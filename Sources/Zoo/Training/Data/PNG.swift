import Foundation

/// A decoded 8-bit image, channel-planar (C×H×W) values 0...255.
public struct DecodedImage: Sendable {
    public var channels: Int, height: Int, width: Int
    public var pixels: [UInt8]
}

/// PNG decoder for 8-bit, non-interlaced gray, gray+alpha, RGB and RGBA images (alpha is dropped).
public enum PNGDecoder {
    public static func decode(path: String) throws -> DecodedImage {
        guard let d = FileManager.default.contents(atPath: path) else { throw ZooError.file(path: path, message: "cannot read the file") }
        return try decode([UInt8](d), path: path)
    }

    public static func decode(_ b: [UInt8], path: String) throws -> DecodedImage {
        func bad(_ m: String) -> ZooError { .file(path: path, message: m) }
        let sig: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        guard b.count >= 8, Array(b[0..<8]) == sig else { throw bad("not a PNG file (bad signature)") }
        func u32(_ o: Int) -> Int { Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3]) }
        var p = 8
        var width = 0, height = 0, colorType = -1
        var idat: [UInt8] = []
        var sawEnd = false
        while p + 12 <= b.count {
            let len = u32(p)
            guard p + 12 + len <= b.count else { throw bad("truncated PNG chunk") }
            let type = String(decoding: b[(p + 4)..<(p + 8)], as: UTF8.self)
            let crc = UInt32(u32(p + 8 + len))
            guard Inflate.crc32(b[(p + 4)..<(p + 8 + len)]) == crc else { throw bad("PNG chunk \(type) has a bad CRC (corrupt file)") }
            let body = p + 8
            switch type {
            case "IHDR":
                guard len == 13 else { throw bad("bad PNG header") }
                width = u32(body); height = u32(body + 4)
                let depth = b[body + 8]; colorType = Int(b[body + 9]); let interlace = b[body + 12]
                guard depth == 8 else { throw bad("PNG bit depth \(depth) is not supported (only 8-bit)") }
                guard [0, 2, 4, 6].contains(colorType) else { throw bad("PNG color type \(colorType) is not supported (gray, RGB, RGBA only)") }
                guard interlace == 0 else { throw bad("interlaced PNGs are not supported") }
                guard width > 0, height > 0, width <= 1 << 14, height <= 1 << 14 else { throw bad("PNG size \(width)x\(height) is not supported") }
            case "IDAT": idat.append(contentsOf: b[body..<(body + len)])
            case "IEND": sawEnd = true
            default: break
            }
            p += 12 + len
            if sawEnd { break }
        }
        guard colorType >= 0 else { throw bad("PNG has no IHDR chunk") }
        guard sawEnd else { throw bad("truncated PNG (no IEND chunk)") }
        let bpp = [0: 1, 2: 3, 4: 2, 6: 4][colorType]!
        let stride = width * bpp
        let raw: [UInt8]
        do { raw = try Inflate.decompress(idat, wrapper: .zlib, expectedSize: (stride + 1) * height) } catch {
            throw bad("PNG image data: \(error)")
        }
        guard raw.count >= (stride + 1) * height else { throw bad("PNG image data is too short") }
        var img = [UInt8](repeating: 0, count: stride * height)
        for y in 0..<height {
            let f = raw[y * (stride + 1)]
            let src = y * (stride + 1) + 1
            let row = y * stride
            for x in 0..<stride {
                let a = x >= bpp ? Int(img[row + x - bpp]) : 0
                let up = y > 0 ? Int(img[row - stride + x]) : 0
                let c = (x >= bpp && y > 0) ? Int(img[row - stride + x - bpp]) : 0
                let v = Int(raw[src + x])
                let r: Int
                switch f {
                case 0: r = v
                case 1: r = v + a
                case 2: r = v + up
                case 3: r = v + (a + up) / 2
                case 4:
                    let pp = a + up - c
                    let pa = abs(pp - a), pb = abs(pp - up), pc = abs(pp - c)
                    r = v + (pa <= pb && pa <= pc ? a : pb <= pc ? up : c)
                default: throw bad("PNG row \(y) has an unknown filter type \(f)")
                }
                img[row + x] = UInt8(truncatingIfNeeded: r)
            }
        }
        let channels = (colorType == 0 || colorType == 4) ? 1 : 3
        var out = [UInt8](repeating: 0, count: channels * width * height)
        for i in 0..<(width * height) {
            for ch in 0..<channels { out[ch * width * height + i] = img[i * bpp + ch] }
        }
        return DecodedImage(channels: channels, height: height, width: width, pixels: out)
    }

    /// Minimal 8-bit gray/RGB encoder (filter 0), for tests and tools. `pixels` is channel-planar.
    public static func encode(_ im: DecodedImage) -> [UInt8] {
        var raw: [UInt8] = []
        let plane = im.width * im.height
        for y in 0..<im.height {
            raw.append(0)
            for x in 0..<im.width { for ch in 0..<im.channels { raw.append(im.pixels[ch * plane + y * im.width + x]) } }
        }
        func be(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
        func chunk(_ t: String, _ d: [UInt8]) -> [UInt8] {
            let td = Array(t.utf8) + d
            return be(d.count) + td + be(Int(Inflate.crc32(td)))
        }
        let ihdr = be(im.width) + be(im.height) + [8, im.channels == 1 ? 0 : 2, 0, 0, 0]
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr) + chunk("IDAT", Inflate.compress(raw)) + chunk("IEND", [])
    }
}
