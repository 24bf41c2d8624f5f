#!/usr/bin/env bash
# The NPU delegate's tests (crate delegate-qnn, issue 20), on ONNX Runtime's CPU provider and on
# Qualcomm's HTP emulator, from a fresh clone; scripts/test.sh runs it (the wheels are ~115 MB
# to install once; the tests take ~1 minute on 2 cores after the build).
#
# Installs from PyPI, into a venv under $TERN_CACHE (default ~/.cache/tern/npu-venv):
#   onnxruntime-qnn==2.7.0 (x86-64, CPython 3.11, manylinux_2_35), which pulls onnxruntime:
#   libonnxruntime.so (the CPU provider), the QNN provider plugin and QNN's x86-64 HTP
#   emulator libQnnHtp.so. Qualcomm's libraries are never copied into the repository.
#
# Then runs, with TERN_REQUIRE_NPU_TESTS=1 (a missing library fails instead of skipping):
#   - the packing of every offloaded format against Tern's dequantizers, bit for bit;
#   - tests/ort_cpu.rs: every format on the CPU provider vs the f64 product, whole small models;
#   - tests/emulator.rs: each format on the emulated HTP with CPU fallback disabled, the EP
#     context cache, a whole layer (Q, K, V, O graphs + the FFN block graph) of a TQ2_0 and a
#     Q4_0 model with every HTP call checked against a derived bound, 16 greedy tokens with
#     every FFN block on the HTP (prompt through the prefill graph) equal to the CPU's.
# Emulator timings are host timings, never NPU speed (docs/npu.md).
#
# TERN_NPU_HEAVY=1 (scripts/test-heavy.sh's `npu` step, ~13 minutes here) adds the heavier
# emulator cases: a whole layer of BitNet b1.58 large's shape (two layers written by
# make_bitnet_models.py --layers700m) and of SmolLM2-135M requantized to Q4_0 (`tern quantize`,
# release build), the output head on the HTP, and SmolLM2-Q4_0's 16 greedy tokens with every
# FFN block on the HTP; and tern-ffi's delegate tests (feature `npu`).
#
# --cpu-only: only the PyPI `onnxruntime==1.32.0` wheel (CPU, ~15 MB, into
# $TERN_CACHE/ort-venv) and the tests that need no emulator (packing + tests/ort_cpu.rs).
#
# --ort-library: prints the path of an installed libonnxruntime.so and exits (the QNN venv's
# when it is installed, else the CPU wheel's, installed if missing): scripts/test-kotlin.sh's
# delegate tests use it. Fails when neither can be installed.
#
#   scripts/test-npu.sh [--cpu-only | --ort-library]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cache="${TERN_CACHE:-$HOME/.cache/tern}"
py="${PYTHON311:-python3.11}"
cpu_only=0
[ "${1:-}" = "--cpu-only" ] && cpu_only=1

# The CPU wheel, into $cache/ort-venv.
install_ort_cpu() {
  venv="$cache/ort-venv"
  if ! "$venv/bin/python" -c 'import onnxruntime' 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet onnxruntime==1.32.0 >&2
  fi
}

# The QNN wheel (and the CPU provider it pulls), into $cache/npu-venv.
install_ort_qnn() {
  venv="$cache/npu-venv"
  if ! "$venv/bin/python" -c 'import onnxruntime, onnxruntime_qnn' 2>/dev/null; then
    command -v "$py" >/dev/null || { echo "error: the onnxruntime-qnn wheel needs CPython 3.11 ($py)" >&2; exit 1; }
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet onnxruntime-qnn==2.7.0
  fi
}

# libonnxruntime.so of $venv.
ort_library() {
  "$venv/bin/python" - <<'PY'
import glob, os, onnxruntime
capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
print(sorted(glob.glob(os.path.join(capi, "libonnxruntime.so*")))[0])
PY
}

if [ "${1:-}" = "--ort-library" ]; then
  venv="$cache/npu-venv"
  "$venv/bin/python" -c 'import onnxruntime' 2>/dev/null || install_ort_cpu
  ort_library
  exit 0
fi

if [ "$cpu_only" = 1 ]; then
  install_ort_cpu
else
  install_ort_qnn
fi

# The small BitNet models (TQ2_0, TQ1_0, I2_S, Q4_0 copies) the model tests run on.
if [ ! -f models/bitnet_small_q4_0.gguf ]; then
  REF_VENV="${TERN_MODELS_VENV:-$cache/models-venv}" \
    bash tests/reference/make_bitnet_models.sh --no-fixture
fi
# SmolLM2 Q4_1: its matrices must be declined (float minimums).
bash scripts/fetch-model.sh
if [ "${TERN_NPU_HEAVY:-0}" = 1 ]; then
  # llama3_small's Q8_0 output head (scripts/test.sh writes it too; the real Qwen2.5 and
  # Gemma 3 files lend their tokenizers).
  if [ ! -f models/llama3_small.gguf ]; then
    bash scripts/fetch-models.sh
    REF_VENV="${TERN_MODELS_VENV:-$cache/models-venv}" \
      bash tests/reference/make_arch_models.sh --no-fixture
  fi
  if [ ! -f models/bitnet_700m_layers_tq2_0.gguf ]; then
    REF_VENV="${TERN_MODELS_VENV:-$cache/models-venv}" \
      bash tests/reference/make_bitnet_models.sh --no-fixture --layers700m
  fi
  if [ ! -f models/smollm2-135m-instruct-q4_0.gguf ]; then
    cargo build --release -q -p tern-cli
    target/release/tern quantize -m models/smollm2-135m-instruct-q4_1.gguf \
      -o models/smollm2-135m-instruct-q4_0.gguf --type q4_0
  fi
fi

ORT_DYLIB_PATH="$(ort_library)"
export ORT_DYLIB_PATH TERN_REQUIRE_NPU_TESTS=1
echo "ONNX Runtime: $ORT_DYLIB_PATH"
# The packages and features of scripts/test.sh's native build (see scripts/test-kotlin.sh): the
# tests below select the same, so they reuse that build; `-p tern-delegate-qnn` would resolve
# other features and compile tern-kernels, tern-runtime and tern-cli a second time. Targets are
# picked by name (only tern-delegate-qnn has `ort_cpu` and `emulator`, only tern-cli `delegate`);
# its unit tests by their module, `pack::tests` (`--skip repack`: tern-kernels' `repack::tests`).
ws=(--workspace --features tern-ffi/cli,tern-ffi/npu)
cargo test -q "${ws[@]}" --lib -- pack::tests:: --skip repack
# Its no_run doctest (the workspace's only compiled one; the rest are `text`).
cargo test -q "${ws[@]}" --doc
if [ "$cpu_only" = 1 ]; then
  cargo test "${ws[@]}" --test ort_cpu
  exit 0
fi

paths="$("$venv/bin/python" - <<'PY'
import onnxruntime_qnn
print(onnxruntime_qnn.get_library_path())
print(onnxruntime_qnn.get_qnn_htp_path())
PY
)"
{ read -r TERN_QNN_PROVIDER; read -r TERN_QNN_BACKEND; } <<<"$paths"
export TERN_QNN_PROVIDER TERN_QNN_BACKEND
echo "QNN provider: $TERN_QNN_PROVIDER"
echo "QNN HTP (emulator): $TERN_QNN_BACKEND"

# One test at a time: the emulator is one process-wide backend.
start=$SECONDS
cargo test "${ws[@]}" --test ort_cpu --test emulator -- --test-threads 1
echo "delegate-qnn tests: $((SECONDS - start)) s (build included)"

# `tern inspect/run --delegate` from the command line: the decisions listed, and the emulated
# HTP's greedy tokens equal to the CPU's.
cargo test -q "${ws[@]}" --test delegate -- --test-threads 1

# The FFI's `delegate` model option (ffi/src/delegate.rs, feature `npu`): typed errors, and
# SmolLM2-Q4_0 on ONNX Runtime's CPU provider with the CPU's greedy tokens. Heavy only;
# scripts/test-kotlin.sh checks the same through Kotlin in every run.
if [ "${TERN_NPU_HEAVY:-0}" = 1 ]; then
  cargo test -q "${ws[@]}" --lib -- delegate::
fi
