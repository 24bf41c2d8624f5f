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

step "aarch64 tests under qemu (baseline Armv8.0 CPU: cortex-a53)"
QEMU_CPU=cortex-a53 cargo test -q -p tern-kernels -p tern-runtime --target aarch64-unknown-linux-gnu

step "aarch64 tests under qemu (QEMU_CPU=max: dotprod, i8mm, fp16)"
QEMU_CPU=max cargo test -q -p tern-kernels -p tern-runtime --target aarch64-unknown-linux-gnu

step "native workspace tests"
cargo test --workspace
