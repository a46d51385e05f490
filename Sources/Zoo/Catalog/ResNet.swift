// ResNet: K. He, X. Zhang, S. Ren, J. Sun, "Deep residual learning for image recognition", CVPR 2016
// (arXiv:1512.03385).
//
// `resnet18`/`resnet34` (BasicBlock, [2,2,2,2] / [3,4,6,3]) and `resnet50` (Bottleneck, [3,4,6,3])
// follow torchvision's `ResNet`: bias-free convolutions each followed by BatchNorm, a 1×1 convolution +
// BatchNorm `downsample` shortcut where the shape changes (the paper's option B), AdaptiveAvgPool2d(1)
// and `fc`. Deviation from the paper (torchvision's "v1.5"): the bottleneck strides in its 3×3
// convolution, not the first 1×1. Functional ops get names of their own: `layerN.M.relu` (the second
// application `relu_2`), `layerN.M.add`, `flatten`.
//
// `resnet18_d2l` is the d2l network of the notes (seed 003): `nn.Sequential(b1, b2, b3, b4, b5,
// AdaptiveAvgPool2d, Flatten, Linear)` built from `Residual` blocks whose convolutions have biases and
// whose 1×1 shortcut `conv3` has no BatchNorm; 1×224×224, 10 classes. The keys are the Sequential's
// (`0.0.weight`, `1.0.conv1.weight`, `2.0.conv3.weight`, `7.weight`). In its state_dict a block lists
// conv1, conv2, conv3, bn1, bn2 (registration order); the graph holds them in execution order.

enum ResNetKind {
    case resnet18, resnet34, resnet50
    var blocks: [Int] {
        switch self {
        case .resnet18: return [2, 2, 2, 2]
        case .resnet34, .resnet50: return [3, 4, 6, 3]
        }
    }
    var bottleneck: Bool { self == .resnet50 }
}

func resnetTorchvision(_ c: CatalogConfig, _ kind: ResNetKind) throws -> Graph {
    var b = c.builder()
    try b.add("conv1", .conv(c.inChannels, 64, 7, stride: 2, padding: 3, bias: false))
    try b.add("bn1", .bn(64))
    try b.add("relu", .relu)
    try b.add("maxpool", .maxPool(3, stride: 2, padding: 1))
    let expansion = kind.bottleneck ? 4 : 1
    var inplanes = 64
    for (stage, count) in kind.blocks.enumerated() {
        let planes = 64 << stage
        for blk in 0..<count {
            let p = "layer\(stage + 1).\(blk)"
            let stride = (blk == 0 && stage > 0) ? 2 : 1
            let x = b.last
            let outC = planes * expansion
            if kind.bottleneck {
                try b.add("\(p).conv1", .conv(inplanes, planes, 1, bias: false))
                try b.add("\(p).bn1", .bn(planes))
                try b.add("\(p).relu", .relu)
                try b.add("\(p).conv2", .conv(planes, planes, 3, stride: stride, padding: 1, bias: false))
                try b.add("\(p).bn2", .bn(planes))
                try b.add("\(p).relu", .relu)
                try b.add("\(p).conv3", .conv(planes, outC, 1, bias: false))
                try b.add("\(p).bn3", .bn(outC))
            } else {
                try b.add("\(p).conv1", .conv(inplanes, planes, 3, stride: stride, padding: 1, bias: false))
                try b.add("\(p).bn1", .bn(planes))
                try b.add("\(p).relu", .relu)
                try b.add("\(p).conv2", .conv(planes, planes, 3, padding: 1, bias: false))
                try b.add("\(p).bn2", .bn(planes))
            }
            let main = b.last
            var shortcut = x
            if stride != 1 || inplanes != outC {
                try b.add("\(p).downsample.0", .conv(inplanes, outC, 1, stride: stride, bias: false), inputs: [x])
                shortcut = try b.add("\(p).downsample.1", .bn(outC))
            }
            try b.add("\(p).add", .add, inputs: [main, shortcut])
            try b.add("\(p).relu", .relu)
            inplanes = outC
        }
    }
    try b.add("avgpool", .adaptiveAvg(1, 1))
    try b.add("flatten", .flat)
    try b.add("fc", .fc(512 * expansion, c.classes))
    return try b.finish()
}

func resnet18D2L(_ c: CatalogConfig) throws -> Graph {
    var b = c.builder()
    try b.add("0.0", .conv(c.inChannels, 64, 7, stride: 2, padding: 3))
    try b.add("0.1", .bn(64))
    try b.add("0.2", .relu)
    try b.add("0.3", .maxPool(3, stride: 2, padding: 1))
    // resnet_block(64, 64, 2, first_block=True), then (64,128), (128,256), (256,512) halving.
    var inC = 64
    for (i, outC) in [64, 128, 256, 512].enumerated() {
        for r in 0..<2 {
            let p = "\(i + 1).\(r)"
            let shortcutConv = r == 0 && i > 0
            let stride = shortcutConv ? 2 : 1
            let x = b.last
            try b.add("\(p).conv1", .conv(inC, outC, 3, stride: stride, padding: 1))
            try b.add("\(p).bn1", .bn(outC))
            try b.add("\(p).relu", .relu)
            try b.add("\(p).conv2", .conv(outC, outC, 3, padding: 1))
            let main = try b.add("\(p).bn2", .bn(outC))
            var shortcut = x
            if shortcutConv {
                shortcut = try b.add("\(p).conv3", .conv(inC, outC, 1, stride: stride), inputs: [x])
            }
            try b.add("\(p).add", .add, inputs: [main, shortcut])
            try b.add("\(p).relu", .relu)
            inC = outC
        }
    }
    try b.add("5", .adaptiveAvg(1, 1))
    try b.add("6", .flat)
    try b.add("7", .fc(512, c.classes))
    return try b.finish()
}
