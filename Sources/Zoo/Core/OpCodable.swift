/// JSON form of an op: `{"type": "Conv2d", "inChannels": 3, ...}`: the type name plus its attributes.
extension Op: Codable {
    private enum Keys: String, CodingKey { case type, axis, min, max, output, startDim, shape, p, value }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(typeName, forKey: .type)
        switch self {
        case let .conv2d(a): try a.encode(to: encoder)
        case let .convTranspose2d(a): try a.encode(to: encoder)
        case let .linear(a): try a.encode(to: encoder)
        case let .batchNorm2d(a): try a.encode(to: encoder)
        case let .maxPool2d(a), let .avgPool2d(a): try a.encode(to: encoder)
        case let .lrn(a): try a.encode(to: encoder)
        case let .clip(lo, hi): try c.encode(lo, forKey: .min); try c.encode(hi, forKey: .max)
        case let .softmax(axis), let .concat(axis): try c.encode(axis, forKey: .axis)
        case let .adaptiveAvgPool2d(o): try c.encode(o, forKey: .output)
        case let .flatten(d): try c.encode(d, forKey: .startDim)
        case let .reshape(s), let .constant(s): try c.encode(s, forKey: .shape)
        case let .dropout(p): try c.encode(p, forKey: .p)
        case let .pad(p, v): try p.encode(to: encoder); try c.encode(v, forKey: .value)
        case .relu, .relu6, .sigmoid, .tanh, .globalMaxPool, .identity, .add, .mul: break
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let type = try c.decode(String.self, forKey: .type)
        switch type {
        case "Conv2d": self = .conv2d(try Conv2dAttrs(from: decoder))
        case "ConvTranspose2d": self = .convTranspose2d(try ConvTranspose2dAttrs(from: decoder))
        case "Linear": self = .linear(try LinearAttrs(from: decoder))
        case "BatchNorm2d": self = .batchNorm2d(try BatchNormAttrs(from: decoder))
        case "MaxPool2d": self = .maxPool2d(try Pool2dAttrs(from: decoder))
        case "AvgPool2d": self = .avgPool2d(try Pool2dAttrs(from: decoder))
        case "LocalResponseNorm": self = .lrn(try LRNAttrs(from: decoder))
        case "ReLU": self = .relu
        case "ReLU6": self = .relu6
        case "Clip": self = .clip(min: try c.decode(Float.self, forKey: .min), max: try c.decode(Float.self, forKey: .max))
        case "Sigmoid": self = .sigmoid
        case "Tanh": self = .tanh
        case "Softmax": self = .softmax(axis: try c.decodeIfPresent(Int.self, forKey: .axis) ?? 1)
        case "AdaptiveAvgPool2d": self = .adaptiveAvgPool2d(output: try c.decode([Int].self, forKey: .output))
        case "GlobalMaxPool": self = .globalMaxPool
        case "Flatten": self = .flatten(startDim: try c.decodeIfPresent(Int.self, forKey: .startDim) ?? 1)
        case "Reshape": self = .reshape(shape: try c.decode([Int].self, forKey: .shape))
        case "Dropout": self = .dropout(p: try c.decodeIfPresent(Float.self, forKey: .p) ?? 0.5)
        case "Identity": self = .identity
        case "Add": self = .add
        case "Mul": self = .mul
        case "Concat": self = .concat(axis: try c.decodeIfPresent(Int.self, forKey: .axis) ?? 1)
        case "Pad": self = .pad(try Padding2D(from: decoder), value: try c.decodeIfPresent(Float.self, forKey: .value) ?? 0)
        case "Constant": self = .constant(shape: try c.decode([Int].self, forKey: .shape))
        default:
            throw DecodingError.dataCorruptedError(forKey: .type, in: c, debugDescription: "unknown op type '\(type)'")
        }
    }
}
