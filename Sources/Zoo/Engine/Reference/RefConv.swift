import Foundation

/// Reference kernels: naive loops that follow the PyTorch definitions literally. They share no code with
/// the fast kernels and exist to be obviously correct; tests run the same battery on both.
/// Convention: `x` input, `w` weight, `b` optional bias, `y` output (fully written by the kernel).
public enum Reference {}

extension Reference {
    /// y[n, oc, oy, ox] = b[oc] + Σ_{icg, ky, kx} x[n, g*icpg + icg, oy*s - pad + ky*d, ...] * w[oc, icg, ky, kx]
    public static func conv2d(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
                              b: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>) {
        let icpg = g.inCPerGroup, ocpg = g.outCPerGroup
        for n in 0..<g.batch {
            for oc in 0..<g.outC {
                let grp = oc / ocpg
                for oy in 0..<g.outH {
                    for ox in 0..<g.outW {
                        var sum: Float = b?[oc] ?? 0
                        for icg in 0..<icpg {
                            let ic = grp * icpg + icg
                            for ky in 0..<g.kH {
                                let iy = oy * g.strideH - g.padTop + ky * g.dilH
                                if iy < 0 || iy >= g.inH { continue }
                                for kx in 0..<g.kW {
                                    let ix = ox * g.strideW - g.padLeft + kx * g.dilW
                                    if ix < 0 || ix >= g.inW { continue }
                                    let xv = x[((n * g.inC + ic) * g.inH + iy) * g.inW + ix]
                                    let wv = w[((oc * icpg + icg) * g.kH + ky) * g.kW + kx]
                                    sum += xv * wv
                                }
                            }
                        }
                        y[((n * g.outC + oc) * g.outH + oy) * g.outW + ox] = sum
                    }
                }
            }
        }
    }

    /// Transposed convolution as the scatter of each input element through the kernel.
    /// Weight `[inC, outC/groups, kH, kW]`.
    public static func convTranspose2d(_ g: Conv2dGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
                                       b: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>) {
        let icpg = g.inCPerGroup, ocpg = g.outCPerGroup
        for n in 0..<g.batch {
            for oc in 0..<g.outC {
                for i in 0..<g.outPlane { y[(n * g.outC + oc) * g.outPlane + i] = b?[oc] ?? 0 }
            }
            for ic in 0..<g.inC {
                let grp = ic / icpg
                for iy in 0..<g.inH {
                    for ix in 0..<g.inW {
                        let xv = x[((n * g.inC + ic) * g.inH + iy) * g.inW + ix]
                        for ocg in 0..<ocpg {
                            let oc = grp * ocpg + ocg
                            for ky in 0..<g.kH {
                                let oy = iy * g.strideH - g.padTop + ky * g.dilH
                                if oy < 0 || oy >= g.outH { continue }
                                for kx in 0..<g.kW {
                                    let ox = ix * g.strideW - g.padLeft + kx * g.dilW
                                    if ox < 0 || ox >= g.outW { continue }
                                    y[((n * g.outC + oc) * g.outH + oy) * g.outW + ox] += xv * w[((ic * ocpg + ocg) * g.kH + ky) * g.kW + kx]
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// y[r, o] = b[o] + Σ_i x[r, i] * w[o, i] for `rows` rows (all leading dimensions flattened).
    public static func linear(rows: Int, inFeatures: Int, outFeatures: Int, x: UnsafePointer<Float>,
                              w: UnsafePointer<Float>, b: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            for o in 0..<outFeatures {
                var sum: Float = b?[o] ?? 0
                for i in 0..<inFeatures { sum += x[r * inFeatures + i] * w[o * inFeatures + i] }
                y[r * outFeatures + o] = sum
            }
        }
    }

    /// Inference batch norm over axis 1: y = (x - mean) / sqrt(var + eps) * weight + bias.
    public static func batchNorm(outer: Int, channels: Int, inner: Int, eps: Float, x: UnsafePointer<Float>,
                                 weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                                 variance: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for n in 0..<outer {
            for c in 0..<channels {
                let denom = (variance[c] + eps).squareRoot()
                for i in 0..<inner {
                    let k = (n * channels + c) * inner + i
                    y[k] = (x[k] - mean[c]) / denom * weight[c] + bias[c]
                }
            }
        }
    }
}
