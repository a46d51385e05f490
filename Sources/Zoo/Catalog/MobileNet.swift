// MobileNetV2: M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen, "MobileNetV2: Inverted
// residuals and linear bottlenecks", CVPR 2018 (arXiv:1801.04381); as torchvision's `MobileNetV2`
// (width 1.0): `features.0` = conv-BN-ReLU6, `features.1`…`17` inverted residual blocks whose layers are
// `features.N.conv.M` (expansion conv-BN-ReLU6 as `conv.0.*` when t ≠ 1, depthwise conv-BN-ReLU6,
// linear 1×1 projection conv and its BN), `features.18` = 1×1 conv-BN-ReLU6 to 1280, global average
// pooling (`avgpool`, functional in torchvision), `flatten`, `classifier.0` Dropout(0.2),
// `classifier.1` Linear. Residual sums are `features.N.add`. No deviation from torchvision.
//
// MobileNetV1: A. Howard et al., "MobileNets: Efficient convolutional neural networks for mobile vision
// applications", arXiv:1704.04861 (width multiplier 1.0, 224×224). No torchvision reference exists, so
// the naming is ours, modelled on torchvision's Sequential style:
//   features.0.{0,1,2}     3×3/2 conv 3→32 (no bias), BatchNorm, ReLU
//   features.N.{0,1,2}     depthwise 3×3 conv (groups = channels, no bias), BatchNorm, ReLU   (N = 1…13)
//   features.N.{3,4,5}     pointwise 1×1 conv (no bias), BatchNorm, ReLU
//   avgpool, flatten, fc   global average pool, Flatten, Linear(1024, classes)
// As in the paper: ReLU (not ReLU6), no dropout, a fully connected classifier. BatchNorm eps 1e-5.

/// MobileNetV2's inverted residual settings: expansion t, channels c, repeats n, first stride s.
let mobilenetV2Settings: [(t: Int, c: Int, n: Int, s: Int)] = [
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
]

func mobilenetV2Torchvision(_ c: CatalogConfig) throws -> Graph {
    var b = c.builder()
    func convBNReLU6(_ p: String, _ inC: Int, _ outC: Int, _ k: Int, stride: Int = 1, groups: Int = 1) throws {
        try b.add("\(p).0", .conv(inC, outC, k, stride: stride, padding: (k - 1) / 2, groups: groups, bias: false))
        try b.add("\(p).1", .bn(outC))
        try b.add("\(p).2", .relu6)
    }
    try convBNReLU6("features.0", c.inChannels, 32, 3, stride: 2)
    var inC = 32
    var idx = 1
    for s in mobilenetV2Settings {
        for i in 0..<s.n {
            let stride = i == 0 ? s.s : 1
            let p = "features.\(idx)"
            let hidden = inC * s.t
            let x = b.last
            var m = 0
            if s.t != 1 { try convBNReLU6("\(p).conv.\(m)", inC, hidden, 1); m += 1 }
            try convBNReLU6("\(p).conv.\(m)", hidden, hidden, 3, stride: stride, groups: hidden); m += 1
            try b.add("\(p).conv.\(m)", .conv(hidden, s.c, 1, bias: false)); m += 1
            let y = try b.add("\(p).conv.\(m)", .bn(s.c))
            if stride == 1 && inC == s.c { try b.add("\(p).add", .add, inputs: [y, x]) }
            inC = s.c
            idx += 1
        }
    }
    try convBNReLU6("features.\(idx)", inC, 1280, 1)
    try b.add("avgpool", .adaptiveAvg(1, 1))
    try b.add("flatten", .flat)
    try b.add("classifier.0", .dropout(p: 0.2))
    try b.add("classifier.1", .fc(1280, c.classes))
    return try b.finish()
}

/// MobileNetV1's depthwise separable layers: output channels and stride of each.
let mobilenetV1Layers: [(c: Int, s: Int)] = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
]

func mobilenetV1(_ c: CatalogConfig) throws -> Graph {
    var b = c.builder()
    try b.add("features.0.0", .conv(c.inChannels, 32, 3, stride: 2, padding: 1, bias: false))
    try b.add("features.0.1", .bn(32))
    try b.add("features.0.2", .relu)
    var inC = 32
    for (i, l) in mobilenetV1Layers.enumerated() {
        let p = "features.\(i + 1)"
        try b.add("\(p).0", .conv(inC, inC, 3, stride: l.s, padding: 1, groups: inC, bias: false))
        try b.add("\(p).1", .bn(inC))
        try b.add("\(p).2", .relu)
        try b.add("\(p).3", .conv(inC, l.c, 1, bias: false))
        try b.add("\(p).4", .bn(l.c))
        try b.add("\(p).5", .relu)
        inC = l.c
    }
    try b.add("avgpool", .adaptiveAvg(1, 1))
    try b.add("flatten", .flat)
    try b.add("fc", .fc(inC, c.classes))
    return try b.finish()
}
