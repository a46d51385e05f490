// AlexNet: A. Krizhevsky, I. Sutskever, G. Hinton, "ImageNet classification with deep convolutional
// neural networks", NeurIPS 2012.
//
// `alexnet` follows torchvision's `AlexNet` (itself the single-tower "one weird trick" variant,
// arXiv:1404.5997): 64/192/384/256/256 channels, no local response normalisation, no grouped
// convolutions, AdaptiveAvgPool2d((6, 6)) before the classifier, dropout 0.5 before the first two
// Linear layers. Any input size works for which the features keep at least 1×1 (63×63 and up);
// the adaptive pool makes the classifier width 256·6·6 regardless.
//
// `alexnet_d2l` is the d2l `nn.Sequential` of the notes (seed 003): Fashion-MNIST at 1×224×224,
// 96/256/384/384/256 channels, no LRN, dropout after the ReLU of the first two Linear layers,
// 10 classes. Another input size changes the first Linear's width (6400 at 224×224).

func alexnetTorchvision(_ c: CatalogConfig) throws -> Graph {
    var b = c.builder()
    try b.add("features.0", .conv(c.inChannels, 64, 11, stride: 4, padding: 2))
    try b.add("features.1", .relu)
    try b.add("features.2", .maxPool(3, stride: 2))
    try b.add("features.3", .conv(64, 192, 5, padding: 2))
    try b.add("features.4", .relu)
    try b.add("features.5", .maxPool(3, stride: 2))
    try b.add("features.6", .conv(192, 384, 3, padding: 1))
    try b.add("features.7", .relu)
    try b.add("features.8", .conv(384, 256, 3, padding: 1))
    try b.add("features.9", .relu)
    try b.add("features.10", .conv(256, 256, 3, padding: 1))
    try b.add("features.11", .relu)
    try b.add("features.12", .maxPool(3, stride: 2))
    try b.add("avgpool", .adaptiveAvg(6, 6))
    try b.add("flatten", .flat)
    try b.add("classifier.0", .dropout(p: 0.5))
    try b.add("classifier.1", .fc(256 * 6 * 6, 4096))
    try b.add("classifier.2", .relu)
    try b.add("classifier.3", .dropout(p: 0.5))
    try b.add("classifier.4", .fc(4096, 4096))
    try b.add("classifier.5", .relu)
    try b.add("classifier.6", .fc(4096, c.classes))
    return try b.finish()
}

func alexnetD2L(_ c: CatalogConfig) throws -> Graph {
    var b = c.builder()
    try b.add("0", .conv(c.inChannels, 96, 11, stride: 4, padding: 1))
    try b.add("1", .relu)
    try b.add("2", .maxPool(3, stride: 2))
    try b.add("3", .conv(96, 256, 5, padding: 2))
    try b.add("4", .relu)
    try b.add("5", .maxPool(3, stride: 2))
    try b.add("6", .conv(256, 384, 3, padding: 1))
    try b.add("7", .relu)
    try b.add("8", .conv(384, 384, 3, padding: 1))
    try b.add("9", .relu)
    try b.add("10", .conv(384, 256, 3, padding: 1))
    try b.add("11", .relu)
    try b.add("12", .maxPool(3, stride: 2))
    try b.add("13", .flat)
    try b.add("14", .fc(b.features, 4096))
    try b.add("15", .relu)
    try b.add("16", .dropout(p: 0.5))
    try b.add("17", .fc(4096, 4096))
    try b.add("18", .relu)
    try b.add("19", .dropout(p: 0.5))
    try b.add("20", .fc(4096, c.classes))
    return try b.finish()
}
