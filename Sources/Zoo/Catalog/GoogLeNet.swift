// GoogLeNet (Inception v1): C. Szegedy et al., "Going deeper with convolutions", CVPR 2015
// (arXiv:1409.4842); as torchvision's `GoogLeNet(aux_logits=False, transform_input=False)`.
// Deviations from the paper (torchvision's): every convolution is a `BasicConv2d` (bias-free
// convolution, BatchNorm with eps 0.001, ReLU), no LRN, the "5×5" branch (`branch3`) uses a 3×3 kernel,
// max pools use ceil_mode, dropout 0.2 before `fc`, and no auxiliary classifiers (so no `aux1`/`aux2`
// keys). The functional ReLU of a BasicConv2d is the node `<module>.relu`; a block's concatenation is
// `<inception>.concat`. `transform_input` (ImageNet re-normalisation) is not part of the graph.

func googlenetTorchvision(_ c: CatalogConfig) throws -> Graph {
    var b = c.builder()
    @discardableResult
    func basic(_ p: String, _ inC: Int, _ outC: Int, _ k: Int, stride: Int = 1, padding: Int = 0, from: String? = nil) throws -> String {
        try b.add("\(p).conv", .conv(inC, outC, k, stride: stride, padding: padding, bias: false), inputs: from.map { [$0] })
        try b.add("\(p).bn", .bn(outC, eps: 0.001))
        return try b.add("\(p).relu", .relu)
    }
    func inception(_ p: String, _ inC: Int, _ c1: Int, _ c3r: Int, _ c3: Int, _ c5r: Int, _ c5: Int, _ pool: Int) throws {
        let x = b.last
        let b1 = try basic("\(p).branch1", inC, c1, 1, from: x)
        try basic("\(p).branch2.0", inC, c3r, 1, from: x)
        let b2 = try basic("\(p).branch2.1", c3r, c3, 3, padding: 1)
        try basic("\(p).branch3.0", inC, c5r, 1, from: x)
        let b3 = try basic("\(p).branch3.1", c5r, c5, 3, padding: 1)
        try b.add("\(p).branch4.0", .maxPool(3, stride: 1, padding: 1, ceil: true), inputs: [x])
        let b4 = try basic("\(p).branch4.1", inC, pool, 1)
        try b.add("\(p).concat", .concat(axis: 1), inputs: [b1, b2, b3, b4])
    }
    try basic("conv1", c.inChannels, 64, 7, stride: 2, padding: 3)
    try b.add("maxpool1", .maxPool(3, stride: 2, ceil: true))
    try basic("conv2", 64, 64, 1)
    try basic("conv3", 64, 192, 3, padding: 1)
    try b.add("maxpool2", .maxPool(3, stride: 2, ceil: true))
    try inception("inception3a", 192, 64, 96, 128, 16, 32, 32)
    try inception("inception3b", 256, 128, 128, 192, 32, 96, 64)
    try b.add("maxpool3", .maxPool(3, stride: 2, ceil: true))
    try inception("inception4a", 480, 192, 96, 208, 16, 48, 64)
    try inception("inception4b", 512, 160, 112, 224, 24, 64, 64)
    try inception("inception4c", 512, 128, 128, 256, 24, 64, 64)
    try inception("inception4d", 512, 112, 144, 288, 32, 64, 64)
    try inception("inception4e", 528, 256, 160, 320, 32, 128, 128)
    try b.add("maxpool4", .maxPool(2, stride: 2, ceil: true))
    try inception("inception5a", 832, 256, 160, 320, 32, 128, 128)
    try inception("inception5b", 832, 384, 192, 384, 48, 128, 128)
    try b.add("avgpool", .adaptiveAvg(1, 1))
    try b.add("flatten", .flat)
    try b.add("dropout", .dropout(p: 0.2))
    try b.add("fc", .fc(1024, c.classes))
    return try b.finish()
}
