// LeNet-5: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to document
// recognition", Proc. IEEE 1998; here as the d2l `nn.Sequential` of the notes (seed 003).
// Deviations from the paper (all d2l's): padding 2 on the first convolution instead of a 32×32 input,
// plain average pooling without trainable coefficients, full C3 connectivity, sigmoid everywhere and a
// plain Linear output instead of Gaussian RBF units. Keys: 0, 3, 7, 9, 11 (Sequential indices).
// Extensions: `classes` sets the last Linear, `inChannels` the first convolution; another input size
// changes the first Linear's width (16·5·5 at 28×28) to what the convolutions produce.

func lenetD2L(_ c: CatalogConfig) throws -> Graph {
    var b = c.builder()
    try b.add("0", .conv(c.inChannels, 6, 5, padding: 2))
    try b.add("1", .sigmoid)
    try b.add("2", .avgPool(2, stride: 2))
    try b.add("3", .conv(6, 16, 5))
    try b.add("4", .sigmoid)
    try b.add("5", .avgPool(2, stride: 2))
    try b.add("6", .flat)
    try b.add("7", .fc(b.features, 120))
    try b.add("8", .sigmoid)
    try b.add("9", .fc(120, 84))
    try b.add("10", .sigmoid)
    try b.add("11", .fc(84, c.classes))
    return try b.finish()
}
