// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "zoo",
    products: [
        .library(name: "Zoo", targets: ["Zoo"]),
        .library(name: "Formats", targets: ["Formats"]),
        .executable(name: "zoo-tool", targets: ["zoo-tool"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CGemm", path: "Sources/CGemm"),
        .target(name: "CZooKernels", path: "Sources/CZooKernels"),
        .target(name: "Zoo", dependencies: ["COpenBLAS", "CZlib", "CGemm", "CZooKernels"], path: "Sources/Zoo"),
        .target(name: "Formats",
                dependencies: ["Zoo", "CHDF5", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                path: "Sources/Formats"),
        .executableTarget(name: "zoo-tool",
                          dependencies: ["Zoo", "Formats",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/zoo-tool"),
        .testTarget(name: "ZooTests", dependencies: ["Zoo"], path: "Tests/ZooTests"),
        .testTarget(name: "FormatsTests", dependencies: ["Zoo", "Formats"], path: "Tests/FormatsTests"),
        .testTarget(name: "CLITests", dependencies: ["Zoo", "Formats"], path: "Tests/CLITests"),
    ]
)
