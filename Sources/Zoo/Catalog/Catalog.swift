/// One architecture of the catalog and its defaults.
public struct CatalogEntry: Sendable, Equatable {
    public var name: String
    public var summary: String
    public var defaultClasses: Int
    /// [C, H, W] without the batch dimension.
    public var defaultInputShape: [Int]

    public init(name: String, summary: String, defaultClasses: Int, defaultInputShape: [Int]) {
        self.name = name; self.summary = summary; self.defaultClasses = defaultClasses
        self.defaultInputShape = defaultInputShape
    }
}

/// What a catalog definition is built for.
struct CatalogConfig: Sendable {
    var name: String
    var classes: Int
    var inChannels: Int
    var height: Int
    var width: Int
    var inputShape: [Int] { [inChannels, height, width] }
    func builder() -> GraphBuilder { GraphBuilder(name: name, inputShape: inputShape) }
}

/// The canonical zoo: every architecture as a `Graph` whose parameter names are the reference
/// definition's state_dict keys (torchvision's, or the d2l `nn.Sequential` keys of the notes).
public enum Catalog {
    typealias Build = @Sendable (CatalogConfig) throws -> Graph

    static let table: [(entry: CatalogEntry, build: Build)] = [
        (.init(name: "lenet", summary: "LeNet-5 as in d2l (sigmoid, average pooling)", defaultClasses: 10, defaultInputShape: [1, 28, 28]), lenetD2L),
        (.init(name: "alexnet", summary: "AlexNet (torchvision)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), alexnetTorchvision),
        (.init(name: "alexnet_d2l", summary: "AlexNet as in d2l (Fashion-MNIST, 1x224x224)", defaultClasses: 10, defaultInputShape: [1, 224, 224]), alexnetD2L),
        (.init(name: "vgg11", summary: "VGG-11 (torchvision)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), { try vggTorchvision($0, .a, bn: false) }),
        (.init(name: "vgg13", summary: "VGG-13 (torchvision)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), { try vggTorchvision($0, .b, bn: false) }),
        (.init(name: "vgg16", summary: "VGG-16 (torchvision)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), { try vggTorchvision($0, .d, bn: false) }),
        (.init(name: "vgg19", summary: "VGG-19 (torchvision)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), { try vggTorchvision($0, .e, bn: false) }),
        (.init(name: "vgg11_bn", summary: "VGG-11 with batch norm (torchvision)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), { try vggTorchvision($0, .a, bn: true) }),
        (.init(name: "vgg13_bn", summary: "VGG-13 with batch norm (torchvision)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), { try vggTorchvision($0, .b, bn: true) }),
        (.init(name: "vgg16_bn", summary: "VGG-16 with batch norm (torchvision)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), { try vggTorchvision($0, .d, bn: true) }),
        (.init(name: "vgg19_bn", summary: "VGG-19 with batch norm (torchvision)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), { try vggTorchvision($0, .e, bn: true) }),
        (.init(name: "vgg_d2l", summary: "VGG-11 as in d2l (conv_arch table, 1x224x224)", defaultClasses: 10, defaultInputShape: [1, 224, 224]), vggD2L),
        (.init(name: "nin", summary: "Network in Network as in d2l", defaultClasses: 10, defaultInputShape: [1, 224, 224]), ninD2L),
        (.init(name: "googlenet", summary: "GoogLeNet / Inception v1 (torchvision, no auxiliary heads)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), googlenetTorchvision),
        (.init(name: "resnet18", summary: "ResNet-18 (torchvision)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), { try resnetTorchvision($0, .resnet18) }),
        (.init(name: "resnet34", summary: "ResNet-34 (torchvision)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), { try resnetTorchvision($0, .resnet34) }),
        (.init(name: "resnet50", summary: "ResNet-50 (torchvision, bottleneck v1.5)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), { try resnetTorchvision($0, .resnet50) }),
        (.init(name: "resnet18_d2l", summary: "ResNet-18 as in d2l (Residual blocks, 1x224x224)", defaultClasses: 10, defaultInputShape: [1, 224, 224]), resnet18D2L),
        (.init(name: "mobilenet_v2", summary: "MobileNetV2 (torchvision)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), mobilenetV2Torchvision),
        (.init(name: "mobilenet_v1", summary: "MobileNetV1 (depthwise separable convolutions, width 1.0)", defaultClasses: 1000, defaultInputShape: [3, 224, 224]), mobilenetV1),
    ]

    /// Every architecture, in catalog order.
    public static var entries: [CatalogEntry] { table.map(\.entry) }

    public static func entry(_ name: String) -> CatalogEntry? { table.first { $0.entry.name == name }?.entry }

    /// The architecture `name` for `classes` outputs, `inChannels` input channels and an input of
    /// `inputSize` ([H, W], or [S] for S×S); nil means the entry's default.
    public static func graph(_ name: String, classes: Int? = nil, inChannels: Int? = nil, inputSize: [Int]? = nil) throws -> Graph {
        guard let item = table.first(where: { $0.entry.name == name }) else {
            throw ZooError.unknownArchitecture(name)
        }
        let e = item.entry
        let classes = classes ?? e.defaultClasses
        let channels = inChannels ?? e.defaultInputShape[0]
        guard (1...(1 << 20)).contains(classes) else {
            throw ZooError.badInput("\(name): the number of classes must be between 1 and \(1 << 20), got \(classes)")
        }
        guard (1...65536).contains(channels) else {
            throw ZooError.badInput("\(name): the number of input channels must be between 1 and 65536, got \(channels)")
        }
        var h = e.defaultInputShape[1], w = e.defaultInputShape[2]
        if let s = inputSize {
            switch s.count {
            case 1: h = s[0]; w = s[0]
            case 2: h = s[0]; w = s[1]
            default:
                throw ZooError.badInput("\(name): the input size must be [H, W] or [S], got \(ShapeFormat.bracket(s))")
            }
            guard (1...65536).contains(h), (1...65536).contains(w) else {
                throw ZooError.badInput("\(name): the input size must be between 1 and 65536 per side, got \(ShapeFormat.bracket(s))")
            }
        }
        return try item.build(CatalogConfig(name: name, classes: classes, inChannels: channels, height: h, width: w))
    }
}
