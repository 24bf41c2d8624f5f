#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, fetches the model, builds
# the no_std and mobile targets, runs every test under qemu-aarch64 (NEON paths, baseline and
# full-featured CPU), and ends with the native workspace tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "setup"
bash scripts/setup.sh
bash scripts/fetch-model.sh

step "no_std build for thumbv7em-none-eabihf"
cargo build -q -p tern-kernels -p tern-runtime --no-default-features --target thumbv7em-none-eabihf

step "cargo check for Android and iOS"
for target in aarch64-linux-android aarch64-apple-ios; do
  cargo check -q -p tern-kernels -p tern-runtime --target "$target"
done

# Under qemu: every kernel and runtime test, plus the end-to-end SmolLM2 check (short form).
for cpu in cortex-a53 max; do
  step "aarch64 tests under qemu (QEMU_CPU=$cpu)"
  QEMU_CPU=$cpu cargo test -q -p tern-kernels -p tern-runtime --target aarch64-unknown-linux-gnu
  QEMU_CPU=$cpu cargo test -q -p tern-tests --target aarch64-unknown-linux-gnu --test smollm2_exact short_
done

step "native workspace tests"
cargo test --workspace
