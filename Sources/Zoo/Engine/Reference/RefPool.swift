import Foundation

extension Reference {
    /// Max over each window; padded positions never win (they are -inf).
    public static func maxPool2d(_ g: Pool2dGeometry, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for p in 0..<g.planes {
            for oy in 0..<g.outH {
                for ox in 0..<g.outW {
                    var m = -Float.infinity
                    for ky in 0..<g.kH {
                        let iy = oy * g.strideH - g.padTop + ky * g.dilH
                        if iy < 0 || iy >= g.inH { continue }
                        for kx in 0..<g.kW {
                            let ix = ox * g.strideW - g.padLeft + kx * g.dilW
                            if ix < 0 || ix >= g.inW { continue }
                            let v = x[(p * g.inH + iy) * g.inW + ix]
                            if v > m || v.isNaN { m = v }
                        }
                    }
                    y[(p * g.outH + oy) * g.outW + ox] = m
                }
            }
        }
    }

    /// Mean over each window. The divisor counts the window taps that fall inside the padded input
    /// (`countIncludePad`, PyTorch's default; taps past the bottom/right padding, possible with ceil_mode,
    /// never count) or only those on real input elements.
    public static func avgPool2d(_ g: Pool2dGeometry, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for p in 0..<g.planes {
            for oy in 0..<g.outH {
                for ox in 0..<g.outW {
                    var sum: Float = 0
                    var real = 0, padded = 0
                    for ky in 0..<g.kH {
                        let iy = oy * g.strideH - g.padTop + ky * g.dilH
                        if iy < -g.padTop || iy >= g.inH + g.padBottom { continue }
                        for kx in 0..<g.kW {
                            let ix = ox * g.strideW - g.padLeft + kx * g.dilW
                            if ix < -g.padLeft || ix >= g.inW + g.padRight { continue }
                            padded += 1
                            if iy < 0 || iy >= g.inH || ix < 0 || ix >= g.inW { continue }
                            real += 1
                            sum += x[(p * g.inH + iy) * g.inW + ix]
                        }
                    }
                    let divisor = g.countIncludePad ? padded : real
                    y[(p * g.outH + oy) * g.outW + ox] = divisor > 0 ? sum / Float(divisor) : 0
                }
            }
        }
    }

    /// PyTorch adaptive average pooling: cell i covers [floor(i*H/o), ceil((i+1)*H/o)).
    public static func adaptiveAvgPool2d(planes: Int, inH: Int, inW: Int, outH: Int, outW: Int,
                                         x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for p in 0..<planes {
            for oy in 0..<outH {
                let y0 = (oy * inH) / outH, y1 = ((oy + 1) * inH + outH - 1) / outH
                for ox in 0..<outW {
                    let x0 = (ox * inW) / outW, x1 = ((ox + 1) * inW + outW - 1) / outW
                    var sum: Float = 0
                    for iy in y0..<y1 { for ix in x0..<x1 { sum += x[(p * inH + iy) * inW + ix] } }
                    y[(p * outH + oy) * outW + ox] = sum / Float((y1 - y0) * (x1 - x0))
                }
            }
        }
    }

    /// Max over each whole plane.
    public static func globalMaxPool(planes: Int, plane: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for p in 0..<planes {
            var m = -Float.infinity
            for i in 0..<plane { let v = x[p * plane + i]; if v > m || v.isNaN { m = v } }
            y[p] = m
        }
    }
}
