// VGG: K. Simonyan, A. Zisserman, "Very deep convolutional networks for large-scale image
// recognition", ICLR 2015 (arXiv:1409.1556).
//
// `vgg11`…`vgg19` and the `_bn` variants follow torchvision's `VGG` and its configuration table
// (A, B, D, E): 3×3 convolutions with padding 1, optional BatchNorm after each, 2×2 max pools,
// AdaptiveAvgPool2d((7, 7)), then Linear-ReLU-Dropout twice and the output Linear. Deviations from the
// paper (torchvision's): no LRN variant (A-LRN), no 1×1 variant (C), the adaptive pool; any input
// from 32×32 up works (five halvings must leave at least 1×1).
//
// `vgg_d2l` is the d2l `vgg(conv_arch)` of the notes (seed 003) with the full
// conv_arch = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)) (the notes train a quarter-width copy),
// one input channel, no adaptive pool (the first Linear's width follows the input: 512·7·7 at 224×224),
// 10 classes. Keys: blocks `0`…`4` with their inner indices, then `5` Flatten, `6`…`12` classifier.

enum VGGConfig {
    case a, b, d, e
    /// Channel counts, 0 meaning a 2×2 max pool (torchvision's "M").
    var layers: [Int] {
        switch self {
        case .a: return [64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0]
        case .b: return [64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0]
        case .d: return [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0]
        case .e: return [64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0]
        }
    }
}

func vggTorchvision(_ c: CatalogConfig, _ cfg: VGGConfig, bn: Bool) throws -> Graph {
    var b = c.builder()
    var i = 0
    var inC = c.inChannels
    for v in cfg.layers {
        if v == 0 {
            try b.add("features.\(i)", .maxPool(2, stride: 2)); i += 1
        } else {
            try b.add("features.\(i)", .conv(inC, v, 3, padding: 1)); i += 1
            if bn { try b.add("features.\(i)", .bn(v)); i += 1 }
            try b.add("features.\(i)", .relu); i += 1
            inC = v
        }
    }
    try b.add("avgpool", .adaptiveAvg(7, 7))
    try b.add("flatten", .flat)
    try b.add("classifier.0", .fc(512 * 7 * 7, 4096))
    try b.add("classifier.1", .relu)
    try b.add("classifier.2", .dropout(p: 0.5))
    try b.add("classifier.3", .fc(4096, 4096))
    try b.add("classifier.4", .relu)
    try b.add("classifier.5", .dropout(p: 0.5))
    try b.add("classifier.6", .fc(4096, c.classes))
    return try b.finish()
}

/// d2l's conv_arch: (number of convolutions, output channels) per block.
let d2lVGGConvArch: [(Int, Int)] = [(1, 64), (1, 128), (2, 256), (2, 512), (2, 512)]

func vggD2L(_ c: CatalogConfig) throws -> Graph {
    var b = c.builder()
    var inC = c.inChannels
    for (blk, (convs, outC)) in d2lVGGConvArch.enumerated() {
        var j = 0
        for _ in 0..<convs {
            try b.add("\(blk).\(j)", .conv(inC, outC, 3, padding: 1)); j += 1
            try b.add("\(blk).\(j)", .relu); j += 1
            inC = outC
        }
        try b.add("\(blk).\(j)", .maxPool(2, stride: 2))
    }
    var i = d2lVGGConvArch.count
    func next() -> String { defer { i += 1 }; return String(i) }
    try b.add(next(), .flat)
    try b.add(next(), .fc(b.features, 4096))
    try b.add(next(), .relu)
    try b.add(next(), .dropout(p: 0.5))
    try b.add(next(), .fc(4096, 4096))
    try b.add(next(), .relu)
    try b.add(next(), .dropout(p: 0.5))
    try b.add(next(), .fc(4096, c.classes))
    return try b.finish()
}
