#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, fetches the model, builds
# the no_std and mobile targets, runs every test under qemu-aarch64 (NEON paths, baseline and
# full-featured CPU), and ends with the native workspace tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Each step prints the minutes since the start, so a slow CI run shows where the time went.
start=$SECONDS
step() { printf '\n==> [%dm%02ds] %s\n' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) "$*"; }

# A fresh clone builds everything once: incremental compilation's caches would only cost time.
export CARGO_INCREMENTAL=0

step "setup"
bash scripts/setup.sh
bash scripts/fetch-model.sh
# Small random-weight BitNet models (TQ2_0, TQ1_0, I2_S, Q4_0 copies): needs gguf + numpy only.
if [ ! -f models/bitnet_small_i2_s.gguf ]; then
  REF_VENV="${TERN_MODELS_VENV:-$HOME/.cache/tern/models-venv}" \
    bash tests/reference/make_bitnet_models.sh --no-fixture
fi
# The real Gemma 3 270M and Qwen2.5-Coder-0.5B files (their tokenizers are tested, and copied
# into the generated models below).
bash scripts/fetch-models.sh
# Small random-weight qwen2, qwen3, phi3, Llama 3 and gemma3 models: needs gguf + numpy only.
for m in qwen2_small qwen3_small phi3_small llama3_small gemma3_small; do
  if [ ! -f "models/$m.gguf" ]; then
    REF_VENV="${TERN_MODELS_VENV:-$HOME/.cache/tern/models-venv}" \
      bash tests/reference/make_arch_models.sh --no-fixture
    break
  fi
done

# Formatting is checked first: it takes a second.
step "cargo fmt --check"
cargo fmt --all -- --check

# Lints, denied: every host target with the features the native build below uses (its build
# scripts and proc macros are shared), and the no_std kernels and runtime on aarch64, whose
# NEON code the host never compiles.
step "cargo clippy"
cargo clippy -q --workspace --all-targets --features tern-ffi/cli,tern-ffi/npu -- -D warnings
cargo clippy -q -p tern-kernels -p tern-runtime --no-default-features \
  --target aarch64-unknown-linux-gnu -- -D warnings

step "no_std build for thumbv7em-none-eabihf"
cargo build -q -p tern-kernels -p tern-runtime --no-default-features --target thumbv7em-none-eabihf

# The shipping ABIs; the other Android ABIs (armv7, x86_64) are checked by
# scripts/test-heavy.sh's `abis` step.
step "cargo check for Android and iOS"
for target in aarch64-linux-android aarch64-apple-ios aarch64-apple-ios-sim; do
  # setup.sh adds these targets; a machine that cannot download one says so and goes on.
  if ! rustup target list --installed | grep -qx "$target"; then
    echo "note: rustup target $target is not installed: not checked" >&2
    continue
  fi
  cargo check -q -p tern-kernels -p tern-runtime -p tern-ffi --target "$target"
done

# Under qemu: every kernel and runtime test, plus the end-to-end SmolLM2 check (short form).
# (The generated qwen2/gemma3 models against float64 under qemu: scripts/test-heavy.sh's
# `qemu-arch` step; natively below.)
for cpu in cortex-a53 max; do
  step "aarch64 tests under qemu (QEMU_CPU=$cpu)"
  QEMU_CPU=$cpu cargo test -q -p tern-kernels -p tern-gguf -p tern-tokenizer -p tern-runtime --target aarch64-unknown-linux-gnu
  QEMU_CPU=$cpu cargo test -q -p tern-tests --target aarch64-unknown-linux-gnu --test smollm2_exact short_
  # --precision f16: the fp16 kernels against float64 where the CPU has FEAT_FP16; without it
  # only the fallback to f32 (the scalar emulation would take minutes under qemu).
  if [ "$cpu" = max ]; then f16_filter=""; else f16_filter=falls_back; fi
  QEMU_CPU=$cpu cargo test -q -p tern-tests --target aarch64-unknown-linux-gnu --test smollm2_f16 $f16_filter
done

# Instructions per token on ARM (deterministic under qemu's plugin; the dev-profile build, which
# reuses the qemu tests' aarch64 dependencies): fails on a rise of more
# than 2 % over bench/arm-insn-baseline.json; a commit that improves them rewrites it with
# `bench/arm-insn-count.sh --gate --update-baseline`.
step "AArch64 instruction counts against the committed baseline"
bash bench/arm-insn-count.sh --gate

step "16 KB page alignment of the Android libraries"
bash scripts/check-16k.sh

# The QNN delegate on ONNX Runtime's CPU provider and Qualcomm's HTP emulator (PyPI wheels,
# installed by the script into ~/.cache/tern; ~1 minute). Before the Kotlin step, whose delegate
# tests use the ONNX Runtime library it installs.
step "NPU delegate: ONNX Runtime CPU provider and the QNN HTP emulator"
bash scripts/test-npu.sh

step "Kotlin bindings on the JVM"
bash scripts/test-kotlin.sh

# (tern-delegate-qnn ran above, with its ONNX Runtime libraries required.) The packages and
# features of the Kotlin step's build, which this reuses (see scripts/test-kotlin.sh).
step "native workspace tests"
cargo test --workspace --exclude tern-delegate-qnn --features tern-ffi/cli,tern-ffi/npu
