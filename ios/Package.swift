// swift-tools-version:5.9
// Tern for iOS. Run ./build-xcframework.sh on macOS first: it builds TernFFIC.xcframework (the
// Rust static library with its C header) and generates Sources/TernFFI/TernFFI.swift.
import PackageDescription

let package = Package(
    name: "Tern",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "Tern", targets: ["Tern"]),
    ],
    targets: [
        // libtern_ffi.a for devices and simulators, plus TernFFIC.h and its module map.
        .binaryTarget(name: "TernFFIC", path: "TernFFIC.xcframework"),
        // The Swift bindings uniffi generates from the library.
        .target(name: "TernFFI", dependencies: ["TernFFIC"], path: "Sources/TernFFI"),
        // The hand-written layer apps use.
        .target(name: "Tern", dependencies: ["TernFFI"], path: "Sources/Tern"),
    ]
)
