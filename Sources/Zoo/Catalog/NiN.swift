// Network in Network: M. Lin, Q. Chen, S. Yan, "Network in network", ICLR 2014 (arXiv:1312.4400);
// here as the d2l `nn.Sequential` of the notes (seed 003): four nin_blocks (a k×k convolution and two
// 1×1 convolutions, each followed by ReLU), 3×3/2 max pools, dropout 0.5 before the last block, global
// average pooling and Flatten. Deviations from the paper (d2l's): AlexNet-like kernel sizes and
// widths, 1×224×224 Fashion-MNIST input. `classes` sets the last block's width (10 by default).

func ninD2L(_ c: CatalogConfig) throws -> Graph {
    var b = c.builder()
    func block(_ prefix: String, _ inC: Int, _ outC: Int, _ k: Int, _ stride: Int, _ pad: Int) throws {
        try b.add("\(prefix).0", .conv(inC, outC, k, stride: stride, padding: pad))
        try b.add("\(prefix).1", .relu)
        try b.add("\(prefix).2", .conv(outC, outC, 1))
        try b.add("\(prefix).3", .relu)
        try b.add("\(prefix).4", .conv(outC, outC, 1))
        try b.add("\(prefix).5", .relu)
    }
    try block("0", c.inChannels, 96, 11, 4, 0)
    try b.add("1", .maxPool(3, stride: 2))
    try block("2", 96, 256, 5, 1, 2)
    try b.add("3", .maxPool(3, stride: 2))
    try block("4", 256, 384, 3, 1, 1)
    try b.add("5", .maxPool(3, stride: 2))
    try b.add("6", .dropout(p: 0.5))
    try block("7", 384, c.classes, 3, 1, 1)
    try b.add("8", .adaptiveAvg(1, 1))
    try b.add("9", .flat)
    return try b.finish()
}
