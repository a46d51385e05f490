/// Plain-value descriptions of one kernel call: every dimension a kernel needs, resolved from the op's
/// attributes and the concrete input shape. Reference kernels, fast kernels and (later) backward kernels
/// all take these, so a kernel's signature is `(geometry, raw input pointers, raw output pointer)`.

/// Geometry of a 2-D convolution (NCHW input, OIHW weight `[outC, inC/groups, kH, kW]`).
/// For a transposed convolution the same fields describe the *forward* direction of the op:
/// `inH/inW` is the op's (small) input, `outH/outW` its (large) output; the weight is `[inC, outC/groups, kH, kW]`.
public struct Conv2dGeometry: Sendable, Equatable {
    public var batch: Int
    public var inC: Int, inH: Int, inW: Int
    public var outC: Int, outH: Int, outW: Int
    public var kH: Int, kW: Int
    public var strideH: Int, strideW: Int
    public var padTop: Int, padLeft: Int
    public var dilH: Int, dilW: Int
    public var groups: Int

    public var inCPerGroup: Int { inC / groups }
    public var outCPerGroup: Int { outC / groups }
    public var inPlane: Int { inH * inW }
    public var outPlane: Int { outH * outW }

    public init(batch: Int, inC: Int, inH: Int, inW: Int, outC: Int, outH: Int, outW: Int, kH: Int, kW: Int,
                strideH: Int, strideW: Int, padTop: Int, padLeft: Int, dilH: Int, dilW: Int, groups: Int) {
        self.batch = batch; self.inC = inC; self.inH = inH; self.inW = inW
        self.outC = outC; self.outH = outH; self.outW = outW; self.kH = kH; self.kW = kW
        self.strideH = strideH; self.strideW = strideW; self.padTop = padTop; self.padLeft = padLeft
        self.dilH = dilH; self.dilW = dilW; self.groups = groups
    }

    /// Convolution geometry from attributes and an NCHW input shape (output size by PyTorch's formula).
    public init(conv a: Conv2dAttrs, input s: [Int]) {
        let oh = ShapeRules.windowOutput(s[2], kernel: a.kernel[0], stride: a.stride[0], padBegin: a.padding.top,
                                         padEnd: a.padding.bottom, dilation: a.dilation[0], ceilMode: false)
        let ow = ShapeRules.windowOutput(s[3], kernel: a.kernel[1], stride: a.stride[1], padBegin: a.padding.left,
                                         padEnd: a.padding.right, dilation: a.dilation[1], ceilMode: false)
        self.init(batch: s[0], inC: s[1], inH: s[2], inW: s[3], outC: a.outChannels, outH: oh, outW: ow,
                  kH: a.kernel[0], kW: a.kernel[1], strideH: a.stride[0], strideW: a.stride[1],
                  padTop: a.padding.top, padLeft: a.padding.left, dilH: a.dilation[0], dilW: a.dilation[1], groups: a.groups)
    }

    /// Transposed-convolution geometry (output size: (i-1)*s - pads + d*(k-1) + output_padding + 1).
    public init(convTranspose a: ConvTranspose2dAttrs, input s: [Int]) {
        let oh = (s[2] - 1) * a.stride[0] - a.padding.top - a.padding.bottom + a.dilation[0] * (a.kernel[0] - 1) + a.outputPadding[0] + 1
        let ow = (s[3] - 1) * a.stride[1] - a.padding.left - a.padding.right + a.dilation[1] * (a.kernel[1] - 1) + a.outputPadding[1] + 1
        self.init(batch: s[0], inC: s[1], inH: s[2], inW: s[3], outC: a.outChannels, outH: oh, outW: ow,
                  kH: a.kernel[0], kW: a.kernel[1], strideH: a.stride[0], strideW: a.stride[1],
                  padTop: a.padding.top, padLeft: a.padding.left, dilH: a.dilation[0], dilW: a.dilation[1], groups: a.groups)
    }
}

/// Geometry of a 2-D pooling window over `planes = batch * channels` independent planes.
public struct Pool2dGeometry: Sendable, Equatable {
    public var planes: Int
    /// Images (planes = batch × channels).
    public var batch: Int
    public var inH: Int, inW: Int, outH: Int, outW: Int
    public var kH: Int, kW: Int
    public var strideH: Int, strideW: Int
    public var padTop: Int, padLeft: Int, padBottom: Int, padRight: Int
    public var dilH: Int, dilW: Int
    /// Average pooling only: divide by the window size clipped to the padded input (PyTorch `count_include_pad=True`)
    /// or by the number of real input elements in the window (`False`).
    public var countIncludePad: Bool

    public init(pool a: Pool2dAttrs, input s: [Int]) {
        planes = s[0] * s[1]; batch = s[0]; inH = s[2]; inW = s[3]
        outH = ShapeRules.windowOutput(s[2], kernel: a.kernel[0], stride: a.stride[0], padBegin: a.padding.top,
                                       padEnd: a.padding.bottom, dilation: a.dilation[0], ceilMode: a.ceilMode)
        outW = ShapeRules.windowOutput(s[3], kernel: a.kernel[1], stride: a.stride[1], padBegin: a.padding.left,
                                       padEnd: a.padding.right, dilation: a.dilation[1], ceilMode: a.ceilMode)
        kH = a.kernel[0]; kW = a.kernel[1]; strideH = a.stride[0]; strideW = a.stride[1]
        padTop = a.padding.top; padLeft = a.padding.left; padBottom = a.padding.bottom; padRight = a.padding.right
        dilH = a.dilation[0]; dilW = a.dilation[1]; countIncludePad = a.countIncludePad
    }
}

/// Shapes of a NumPy-broadcast binary op, with both operands' element strides aligned to the output
/// (stride 0 along broadcast dimensions).
public struct BroadcastGeometry: Sendable, Equatable {
    public var outShape: [Int]
    public var aStrides: [Int]
    public var bStrides: [Int]
    public var outCount: Int { outShape.reduce(1, *) }

    public init?(_ a: [Int], _ b: [Int]) {
        guard let out = ShapeRules.broadcast(a, b) else { return nil }
        outShape = out
        aStrides = BroadcastGeometry.strides(a, rank: out.count)
        bStrides = BroadcastGeometry.strides(b, rank: out.count)
    }

    static func strides(_ s: [Int], rank: Int) -> [Int] {
        let padded = [Int](repeating: 1, count: rank - s.count) + s
        var st = [Int](repeating: 0, count: rank)
        var acc = 1
        for i in stride(from: rank - 1, through: 0, by: -1) {
            st[i] = padded[i] == 1 ? 0 : acc
            acc *= padded[i]
        }
        return st
    }
}

/// Splits a shape around `axis` into (outer, axis length, inner) for axis-wise kernels (softmax, concat).
public func splitAxis(_ shape: [Int], _ axis: Int) -> (outer: Int, length: Int, inner: Int) {
    let outer = shape[..<axis].reduce(1, *)
    let inner = shape[(axis + 1)...].reduce(1, *)
    return (outer, shape[axis], inner)
}

/// A pointwise activation, used on its own and as the fused epilogue of a fast convolution or linear layer.
public enum Activation: Sendable, Equatable {
    case none, relu, clip(Float, Float), sigmoid, tanh
}
