#!/usr/bin/env bash
# Builds the iOS package's native half. macOS with Xcode and rustup only.
#
#   ios/build-xcframework.sh            # release build
#
# 1. Builds tern-ffi as a static library for iOS devices (aarch64-apple-ios), the simulators
#    (aarch64-apple-ios-sim + x86_64-apple-ios, merged with lipo) and macOS (aarch64 + x86_64,
#    so `swift build` works on a Mac).
# 2. Generates the Swift bindings, the C header and its module map with tern-ffi's
#    uniffi-bindgen from the host library.
# 3. Packs ios/TernFFIC.xcframework and writes ios/Sources/TernFFI/TernFFI.swift, which
#    Package.swift expects. Both are build outputs (see ios/.gitignore).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

if [ "$(uname -s)" != "Darwin" ]; then
  echo "error: building an XCFramework needs macOS with Xcode (xcodebuild, lipo)" >&2
  exit 1
fi

targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin)
rustup target add "${targets[@]}"
export IPHONEOS_DEPLOYMENT_TARGET=15.0 MACOSX_DEPLOYMENT_TARGET=12.0
for t in "${targets[@]}"; do
  cargo build --release -p tern-ffi --lib --target "$t"
done
cargo build --release -p tern-ffi --features cli
target_dir="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

build="$here/build"
rm -rf "$build" "$here/TernFFIC.xcframework"
mkdir -p "$build/headers" "$build/ios-sim" "$build/macos"

# Swift bindings + C header + module map, from the host library (same API on every target).
"$target_dir/release/uniffi-bindgen" generate --library "$target_dir/release/libtern_ffi.dylib" \
  --language swift --out-dir "$build/gen"
cp "$build/gen/TernFFIC.h" "$build/headers/"
cp "$build/gen/TernFFIC.modulemap" "$build/headers/module.modulemap"
cp "$build/gen/TernFFI.swift" "$here/Sources/TernFFI/TernFFI.swift"

lib() { echo "$target_dir/$1/release/libtern_ffi.a"; }
lipo -create "$(lib aarch64-apple-ios-sim)" "$(lib x86_64-apple-ios)" -output "$build/ios-sim/libtern_ffi.a"
lipo -create "$(lib aarch64-apple-darwin)" "$(lib x86_64-apple-darwin)" -output "$build/macos/libtern_ffi.a"

xcodebuild -create-xcframework \
  -library "$(lib aarch64-apple-ios)" -headers "$build/headers" \
  -library "$build/ios-sim/libtern_ffi.a" -headers "$build/headers" \
  -library "$build/macos/libtern_ffi.a" -headers "$build/headers" \
  -output "$here/TernFFIC.xcframework"

echo "built $here/TernFFIC.xcframework and Sources/TernFFI/TernFFI.swift" >&2
