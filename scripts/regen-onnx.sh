#!/usr/bin/env bash
# Regenerates Sources/Formats/ONNX/onnx.pb.swift from specs/onnx.proto.
# Needs protoc (Debian package protobuf-compiler, installed here when missing) and builds
# protoc-gen-swift from swift-protobuf 1.39.0 in .build-protoc (gitignored). Builds of zoo never need this.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if ! command -v protoc >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq protobuf-compiler >/dev/null
fi
mkdir -p .build-protoc
cat > .build-protoc/Package.swift <<'PKG'
// swift-tools-version:5.9
import PackageDescription
let package = Package(
    name: "protoc-gen-swift-builder",
    dependencies: [.package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0")],
    targets: []
)
PKG
(cd .build-protoc && swift build --product protoc-gen-swift -c release >/dev/null)
plugin="$(cd .build-protoc && swift build --product protoc-gen-swift -c release --show-bin-path)/protoc-gen-swift"
mkdir -p Sources/Formats/ONNX
protoc --plugin=protoc-gen-swift="$plugin" --swift_opt=Visibility=Public \
  -Ispecs --swift_out=Sources/Formats/ONNX specs/onnx.proto
echo "regenerated Sources/Formats/ONNX/onnx.pb.swift"
