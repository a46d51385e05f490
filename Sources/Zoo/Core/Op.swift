/// The typed layer vocabulary of the zoo graph. Attributes follow PyTorch's module arguments;
/// padding is always explicit and may be asymmetric (Keras 'same', ONNX pads).
public struct Padding2D: Codable, Sendable, Equatable {
    public var top: Int, left: Int, bottom: Int, right: Int
    public init(top: Int, left: Int, bottom: Int, right: Int) {
        self.top = top; self.left = left; self.bottom = bottom; self.right = right
    }
    public init(_ p: Int) { self.init(top: p, left: p, bottom: p, right: p) }
    public init(_ ph: Int, _ pw: Int) { self.init(top: ph, left: pw, bottom: ph, right: pw) }
    public static let zero = Padding2D(0)
    public var isSymmetric: Bool { top == bottom && left == right }
}

public struct Conv2dAttrs: Codable, Sendable, Equatable {
    public var inChannels: Int, outChannels: Int
    public var kernel: [Int]          // [kh, kw]
    public var stride: [Int] = [1, 1]
    public var padding: Padding2D = .zero
    public var dilation: [Int] = [1, 1]
    public var groups: Int = 1
    public var bias: Bool = true
    public init(inChannels: Int, outChannels: Int, kernel: [Int], stride: [Int] = [1, 1], padding: Padding2D = .zero,
                dilation: [Int] = [1, 1], groups: Int = 1, bias: Bool = true) {
        self.inChannels = inChannels; self.outChannels = outChannels; self.kernel = kernel; self.stride = stride
        self.padding = padding; self.dilation = dilation; self.groups = groups; self.bias = bias
    }
}

public struct ConvTranspose2dAttrs: Codable, Sendable, Equatable {
    public var inChannels: Int, outChannels: Int
    public var kernel: [Int]
    public var stride: [Int] = [1, 1]
    public var padding: Padding2D = .zero
    public var outputPadding: [Int] = [0, 0]
    public var dilation: [Int] = [1, 1]
    public var groups: Int = 1
    public var bias: Bool = true
    public init(inChannels: Int, outChannels: Int, kernel: [Int], stride: [Int] = [1, 1], padding: Padding2D = .zero,
                outputPadding: [Int] = [0, 0], dilation: [Int] = [1, 1], groups: Int = 1, bias: Bool = true) {
        self.inChannels = inChannels; self.outChannels = outChannels; self.kernel = kernel; self.stride = stride
        self.padding = padding; self.outputPadding = outputPadding; self.dilation = dilation; self.groups = groups; self.bias = bias
    }
}

public struct LinearAttrs: Codable, Sendable, Equatable {
    public var inFeatures: Int, outFeatures: Int
    public var bias: Bool = true
    public init(inFeatures: Int, outFeatures: Int, bias: Bool = true) {
        self.inFeatures = inFeatures; self.outFeatures = outFeatures; self.bias = bias
    }
}

public struct BatchNormAttrs: Codable, Sendable, Equatable {
    public var features: Int
    public var eps: Float = 1e-5
    /// PyTorch convention: running = (1 - momentum) * running + momentum * batch.
    public var momentum: Float = 0.1
    public init(features: Int, eps: Float = 1e-5, momentum: Float = 0.1) {
        self.features = features; self.eps = eps; self.momentum = momentum
    }
}

public struct Pool2dAttrs: Codable, Sendable, Equatable {
    public var kernel: [Int]
    public var stride: [Int]
    public var padding: Padding2D = .zero
    public var dilation: [Int] = [1, 1]
    public var ceilMode: Bool = false
    /// AvgPool only. PyTorch's default is true, ONNX's is false.
    public var countIncludePad: Bool = true
    public init(kernel: [Int], stride: [Int]? = nil, padding: Padding2D = .zero, dilation: [Int] = [1, 1],
                ceilMode: Bool = false, countIncludePad: Bool = true) {
        self.kernel = kernel; self.stride = stride ?? kernel; self.padding = padding; self.dilation = dilation
        self.ceilMode = ceilMode; self.countIncludePad = countIncludePad
    }
}

public struct LRNAttrs: Codable, Sendable, Equatable {
    public var size: Int
    public var alpha: Float = 1e-4
    public var beta: Float = 0.75
    public var k: Float = 1
    public init(size: Int, alpha: Float = 1e-4, beta: Float = 0.75, k: Float = 1) {
        self.size = size; self.alpha = alpha; self.beta = beta; self.k = k
    }
}

public enum Op: Sendable, Equatable {
    case conv2d(Conv2dAttrs)
    case convTranspose2d(ConvTranspose2dAttrs)
    case linear(LinearAttrs)
    case batchNorm2d(BatchNormAttrs)
    case relu
    case relu6
    /// Clamp to [min, max] (ONNX Clip; ReLU6 is clip(0, 6)).
    case clip(min: Float, max: Float)
    case sigmoid
    case tanh
    case softmax(axis: Int)
    case maxPool2d(Pool2dAttrs)
    case avgPool2d(Pool2dAttrs)
    case adaptiveAvgPool2d(output: [Int])
    case globalMaxPool
    /// Flatten dims from `startDim` to the end (PyTorch nn.Flatten, default 1).
    case flatten(startDim: Int)
    /// Reshape keeping the batch dimension; `shape` excludes batch, -1 allowed once.
    case reshape(shape: [Int])
    case dropout(p: Float)
    case identity
    case add
    /// Elementwise product of two inputs, or of one input with the constant parameter `value` (broadcast).
    case mul
    case concat(axis: Int)
    case lrn(LRNAttrs)
    /// Constant padding on H and W.
    case pad(Padding2D, value: Float)
    /// A stored tensor (parameter `value`, a buffer), e.g. an ONNX Constant or initializer used as data.
    case constant(shape: [Int])

    public var typeName: String {
        switch self {
        case .conv2d: return "Conv2d"
        case .convTranspose2d: return "ConvTranspose2d"
        case .linear: return "Linear"
        case .batchNorm2d: return "BatchNorm2d"
        case .relu: return "ReLU"
        case .relu6: return "ReLU6"
        case .clip: return "Clip"
        case .sigmoid: return "Sigmoid"
        case .tanh: return "Tanh"
        case .softmax: return "Softmax"
        case .maxPool2d: return "MaxPool2d"
        case .avgPool2d: return "AvgPool2d"
        case .adaptiveAvgPool2d: return "AdaptiveAvgPool2d"
        case .globalMaxPool: return "GlobalMaxPool"
        case .flatten: return "Flatten"
        case .reshape: return "Reshape"
        case .dropout: return "Dropout"
        case .identity: return "Identity"
        case .add: return "Add"
        case .mul: return "Mul"
        case .concat: return "Concat"
        case .lrn: return "LocalResponseNorm"
        case .pad: return "Pad"
        case .constant: return "Constant"
        }
    }
}

/// One named tensor an op owns. `trainable == false` marks buffers (BatchNorm running statistics).
public struct ParameterSpec: Sendable, Equatable {
    public var key: String
    public var shape: [Int]
    public var trainable: Bool
}

extension Op {
    /// Parameters and buffers this op owns, keyed relative to the node name (`weight`, `running_mean`).
    public var parameterSpecs: [ParameterSpec] {
        switch self {
        case let .conv2d(a):
            var s = [ParameterSpec(key: "weight", shape: [a.outChannels, a.inChannels / a.groups, a.kernel[0], a.kernel[1]], trainable: true)]
            if a.bias { s.append(.init(key: "bias", shape: [a.outChannels], trainable: true)) }
            return s
        case let .convTranspose2d(a):
            var s = [ParameterSpec(key: "weight", shape: [a.inChannels, a.outChannels / a.groups, a.kernel[0], a.kernel[1]], trainable: true)]
            if a.bias { s.append(.init(key: "bias", shape: [a.outChannels], trainable: true)) }
            return s
        case let .linear(a):
            var s = [ParameterSpec(key: "weight", shape: [a.outFeatures, a.inFeatures], trainable: true)]
            if a.bias { s.append(.init(key: "bias", shape: [a.outFeatures], trainable: true)) }
            return s
        case let .batchNorm2d(a):
            return [.init(key: "weight", shape: [a.features], trainable: true),
                    .init(key: "bias", shape: [a.features], trainable: true),
                    .init(key: "running_mean", shape: [a.features], trainable: false),
                    .init(key: "running_var", shape: [a.features], trainable: false)]
        case let .constant(shape):
            return [.init(key: "value", shape: shape, trainable: false)]
        default:
            return []
        }
    }
}
