#!/usr/bin/env bash
# The Kotlin SDK on a desktop JVM: builds tern-ffi for this machine, generates the Kotlin
# bindings from the built library, compiles them with the wrapper in android/ and the test
# program android/jvm-test/TernJvmTest.kt, and runs it through JNA on the real model. The
# expected text comes from the Rust API (`tern run --temp 0 -n 16 --json`).
#
# The model options' NPU delegate runs on ONNX Runtime's CPU provider (the library
# scripts/test-npu.sh installs) on SmolLM2 requantized to Q4_0 (`tern quantize`, written to
# models/ once).
#
# Needs Java 17+ and python3 (pip). Installs, if missing: the Kotlin 2.x compiler and
# kotlinx-coroutines that ship inside the PyPI wheel kotlin-jupyter-kernel (into
# $TERN_CACHE, default ~/.cache/tern), and Debian's libjna-java. Ends with `N passed, M failed`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

KOTLIN_KERNEL_VERSION="0.19.0.944"
PROMPT="The capital of France is"
cache="${TERN_CACHE:-$HOME/.cache/tern}"
kotlin_dir="$cache/kotlin-jupyter-kernel-$KOTLIN_KERNEL_VERSION"
model="$root/models/smollm2-135m-instruct-q4_1.gguf"

step() { printf '==> %s\n' "$*" >&2; }

step "Kotlin compiler (PyPI kotlin-jupyter-kernel==$KOTLIN_KERNEL_VERSION)"
if [ -z "$(find "$kotlin_dir" -name '*-all.jar' 2>/dev/null | head -n 1)" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$kotlin_dir" \
    "kotlin-jupyter-kernel==$KOTLIN_KERNEL_VERSION"
fi
compiler_jar="$(find "$kotlin_dir" -name '*-all.jar' | head -n 1)"
stdlib_jar="$(find "$kotlin_dir" -name 'kotlin-stdlib-[0-9]*.jar' | head -n 1)"
if [ -z "$compiler_jar" ] || [ -z "$stdlib_jar" ]; then
  echo "error: no *-all.jar or kotlin-stdlib-*.jar in $kotlin_dir" >&2
  exit 1
fi
# kotlinx-coroutines is shaded into the compiler jar: copy its classes into a jar of their own,
# so the test's classpath holds the library and not the whole compiler.
coroutines_jar="$kotlin_dir/kotlinx-coroutines-core-v2.jar"
if [ ! -f "$coroutines_jar" ]; then
  python3 - "$compiler_jar" "$coroutines_jar.part" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as src, zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED) as dst:
    for name in src.namelist():
        if name.startswith(("kotlinx/coroutines/", "_COROUTINE/")) or name in (
            "DebugProbesKt.bin",
            "META-INF/kotlinx-coroutines-core.kotlin_module",
        ):
            dst.writestr(name, src.read(name))
PY
  mv "$coroutines_jar.part" "$coroutines_jar"
fi

step "JNA (Debian libjna-java)"
jna_jar=/usr/share/java/jna.jar
if [ ! -f "$jna_jar" ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq libjna-java >/dev/null
fi

step "models"
bash scripts/fetch-model.sh
bash scripts/fetch-models.sh gemma3-270m
gemma="$root/models/gemma-3-270m-q4_k_m.gguf"

# The NPU delegate's tests run the delegate on ONNX Runtime's CPU provider: its library from
# the wheel scripts/test-npu.sh installs (a failure to install ends the script here).
step "ONNX Runtime (scripts/test-npu.sh --ort-library)"
ort_library="$(bash scripts/test-npu.sh --ort-library)"
echo "$ort_library" >&2

# The workspace's test build with one feature set (`--features tern-ffi/cli,tern-ffi/npu`) that
# scripts/test.sh's other host steps (test-npu.sh, the native workspace tests) select too: they
# reuse it instead of compiling tern-kernels, tern-runtime, tern-ffi and tern-cli again with
# other features. It holds libtern_ffi.so (with the NPU delegate), uniffi-bindgen and tern (and
# the tests, which a lone run of this script builds in addition).
step "build tern-ffi (with the NPU delegate), its uniffi-bindgen and tern (dev profile, optimized)"
cargo test -q --workspace --features tern-ffi/cli,tern-ffi/npu --no-run
# `cargo test` leaves the cdylib and binaries in target/debug/deps; the same units, built again
# by `cargo build`, are reused and copied to target/debug.
cargo build -q --workspace --features tern-ffi/cli,tern-ffi/npu --lib --bins
target_dir="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
bin="$target_dir/debug"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

step "expected text from the Rust API"
"$bin/tern" run -m "$model" -p "$PROMPT" -n 16 --temp 0 --json >"$work/rust.json"
python3 - "$work/rust.json" "$work/expected.txt" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
assert len(out["tokens"]) == 16, out
open(sys.argv[2], "w").write(out["text"])
PY

"$bin/tern" run -m "$gemma" -p "$PROMPT" -n 16 --temp 0 --json >"$work/gemma.json"
python3 - "$work/gemma.json" "$work/gemma_expected.txt" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
assert len(out["tokens"]) == 16, out
open(sys.argv[2], "w").write(out["text"])
PY

# SmolLM2 requantized to Q4_0, whose matrices the delegate takes (Q4_1's it declines).
q4_0="$root/models/smollm2-135m-instruct-q4_0.gguf"
if [ ! -f "$q4_0" ]; then
  "$bin/tern" quantize -m "$model" -o "$q4_0.part" --type q4_0 >/dev/null
  mv "$q4_0.part" "$q4_0"
fi
"$bin/tern" run -m "$q4_0" -p "$PROMPT" -n 16 --temp 0 --precision f32 --json >"$work/q4_0.json"
python3 - "$work/q4_0.json" "$work/q4_0_expected.txt" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
assert len(out["tokens"]) == 16, out
open(sys.argv[2], "w").write(out["text"])
PY

step "Kotlin bindings (uniffi-bindgen, library mode)"
"$bin/uniffi-bindgen" generate --library "$bin/libtern_ffi.so" --language kotlin \
  --out-dir "$work/gen" --no-format >/dev/null

step "compile bindings + wrapper + test (kotlinc $(basename "$compiler_jar"))"
classpath="$stdlib_jar:$coroutines_jar:$jna_jar"
# The pure-Kotlin wrapper only: dev/tern/android/ needs the Android SDK.
java -Xss8m -cp "$compiler_jar" org.jetbrains.kotlin.cli.jvm.K2JVMCompiler \
  -no-stdlib -no-reflect -jvm-target 17 -nowarn -classpath "$classpath" -d "$work/classes" \
  "$work"/gen/dev/tern/ffi/*.kt android/src/main/kotlin/dev/tern/*.kt \
  android/jvm-test/TernJvmTest.kt

step "run"
RUST_BACKTRACE=0 java -Djna.library.path="$bin" -cp "$work/classes:$classpath" dev.tern.test.TernJvmTestKt \
  "$model" "$work/expected.txt" "$work/scratch" "$gemma" "$work/gemma_expected.txt" \
  "$q4_0" "$work/q4_0_expected.txt" "$ort_library"
