#!/usr/bin/env bash
# ARM cost without ARM hardware: AArch64 instructions executed per prompt token and per decoded
# token, counted by class under qemu-aarch64 with a TCG plugin (bench/insn-plugin/insn_count.c),
# for `tern bench` and for a llama-bench-shaped driver linked against llama.cpp's NEON build.
# Counts are deterministic: one short run per configuration, unaffected by a busy machine.
#
# usage:
#   bench/arm-insn-count.sh [-p N_PROMPT] [-n N_GEN] [--levels "dotprod i8mm"] [--no-llama]
#                           [--funcs] [MODEL...]
#       the markdown table: Tern (int8 and default mode) vs llama.cpp, per level and file;
#       --funcs adds each run's top functions by instructions per decoded token (slower)
#   bench/arm-insn-count.sh --gate [--update-baseline]
#       CI gate: Tern's own counts on two small shapes against bench/arm-insn-baseline.json;
#       fails when instructions per token rise by more than 2 %
#   bench/arm-insn-count.sh --mca
#       llvm-mca on Tern's hot NEON kernels for cortex-a76 and cortex-x1
#
# Levels (qemu exposes a CPU's features to the guest through AT_HWCAP/AT_HWCAP2, which is what
# Tern's dispatch and llama.cpp's repack selection read):
#   dotprod = qemu -cpu cortex-a76 (Armv8.2: asimddp, fphp; no i8mm, no SVE),
#             llama.cpp built with -march=armv8.2-a+dotprod
#   i8mm    = qemu -cpu max (adds i8mm, bf16, SVE...), llama.cpp built with
#             -march=armv8.2-a+dotprod+i8mm (no SVE code, so both engines run NEON)
#
# Everything built is cached under ~/.cache/tern/ (TERN_CACHE): the qemu plugin header (from
# the Debian source package of the installed qemu-user), the llama-cpp-python sdist (llama.cpp
# itself is its vendor/ directory), the two llama.cpp builds and the quantized model files.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
cache="${TERN_CACHE:-$HOME/.cache/tern}"
llama_pkg="llama-cpp-python==0.3.36"
jobs="${TERN_JOBS:-2}"

mode=table
n_prompt=16
n_gen=8
levels="dotprod i8mm"
with_llama=1
update_baseline=0
funcs_arg=""
models=()
while [ $# -gt 0 ]; do
  case "$1" in
    -p) n_prompt="$2"; shift 2 ;;
    -n) n_gen="$2"; shift 2 ;;
    --levels) levels="$2"; shift 2 ;;
    --no-llama) with_llama=0; shift ;;
    --funcs) funcs_arg=",funcs=3"; shift ;;
    --gate) mode=gate; shift ;;
    --update-baseline) update_baseline=1; shift ;;
    --mca) mode=mca; shift ;;
    --build) mode=build; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) models+=("$1"); shift ;;
  esac
done

log() { printf '%s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------------------------

ensure_packages() {
  local need=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  [ "${#need[@]}" -eq 0 ] && return
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
}

cpu_of() {
  case "$1" in
    dotprod) echo cortex-a76 ;;
    i8mm) echo max ;;
    *) log "unknown level $1 (dotprod or i8mm)"; exit 2 ;;
  esac
}

march_of() {
  case "$1" in
    dotprod) echo armv8.2-a+dotprod ;;
    i8mm) echo armv8.2-a+dotprod+i8mm ;;
  esac
}

# qemu-plugin.h is not in any binary package of Debian 12: it comes from the source package of
# the installed qemu-user, fetched with apt-get from the deb-src twin of the configured mirrors.
plugin_header_dir() {
  local srcver dir apt_dir opts src
  srcver="$(dpkg-query -W -f='${source:Version}' qemu-user)"
  dir="$cache/qemu-src/${srcver//:/_}"
  if [ ! -f "$dir/include/qemu/qemu-plugin.h" ]; then
    apt_dir="$cache/qemu-src/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/sources.list.d" "$dir"
    : >"$apt_dir/sources.list.d/src.list"
    for src in /etc/apt/sources.list.d/*.sources; do
      [ -f "$src" ] && sed 's/^Types: deb$/Types: deb-src/' "$src" >"$apt_dir/sources.list.d/$(basename "$src")"
    done
    [ -f /etc/apt/sources.list ] &&
      sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >"$apt_dir/sources.list.d/src.list"
    opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
      -o "Dir::State::Lists=$apt_dir/lists" -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update -q >&2
    (cd "$cache/qemu-src" && apt-get "${opts[@]}" source --download-only -q "qemu=$srcver" >&2)
    local orig
    orig="$(ls "$cache"/qemu-src/qemu_"$(sed 's/^[0-9]*://; s/-[^-]*$//' <<<"$srcver")".orig.tar.*)"
    tar -xf "$orig" -C "$dir" --strip-components=1 --wildcards '*/include/qemu/qemu-plugin.h'
  fi
  echo "$dir/include/qemu"
}

build_plugin() {
  local hdr out="$cache/insn-plugin/libinsn_count.so"
  hdr="$(plugin_header_dir)"
  mkdir -p "$(dirname "$out")"
  if [ ! -f "$out" ] || [ bench/insn-plugin/insn_count.c -nt "$out" ]; then
    gcc -shared -fPIC -O2 -Wall -Wextra -Werror -I"$hdr" bench/insn-plugin/insn_count.c \
      -o "$out.$$"
    mv "$out.$$" "$out"
  fi
  echo "$out"
}

# The table and llvm-mca read the release build (what ships). The CI gate reads the dev profile
# (opt-level 3 with overflow checks): it reuses the aarch64 dependencies the qemu tests built,
# which saves CI a fat-LTO cross build; its counts are its own, kept in its own baseline.
# Always non-incremental (as scripts/test.sh builds): incremental builds split code into other
# units, which changes inlining and so the counts.
build_tern() {
  local profile=${1:-release}
  if [ "$profile" = dev ]; then
    CARGO_INCREMENTAL=0 cargo build -q -p tern-cli --target aarch64-unknown-linux-gnu -j "$jobs"
    echo "$repo/target/aarch64-unknown-linux-gnu/debug/tern"
  else
    cargo build -q --release -p tern-cli --target aarch64-unknown-linux-gnu -j "$jobs"
    echo "$repo/target/aarch64-unknown-linux-gnu/release/tern"
  fi
}

# llama.cpp from the llama-cpp-python sdist on PyPI (pip fetches only the source archive).
llama_source() {
  local ver="${llama_pkg#*==}" dir
  dir="$cache/llama_cpp_python-$ver"
  if [ ! -f "$dir/vendor/llama.cpp/CMakeLists.txt" ]; then
    mkdir -p "$cache/sdist"
    if [ ! -f "$cache/sdist/llama_cpp_python-$ver.tar.gz" ]; then
      python3 -m pip download -q --no-deps --no-binary llama-cpp-python -d "$cache/sdist" "$llama_pkg" >&2
    fi
    tar -xzf "$cache/sdist/llama_cpp_python-$ver.tar.gz" -C "$cache"
  fi
  echo "$dir/vendor/llama.cpp"
}

# libllama + ggml, static, for one level; then the driver linked against them.
build_llama() {
  local level="$1" src dir march
  src="$(llama_source)"
  march="$(march_of "$level")"
  dir="$cache/llama-arm/$level"
  if [ ! -f "$dir/build/src/libllama.a" ]; then
    mkdir -p "$dir"
    cmake -S "$src" -B "$dir/build" -G "Unix Makefiles" \
      -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
      -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
      -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF \
      -DGGML_CPU_ARM_ARCH="$march" -DGGML_OPENMP=OFF -DLLAMA_BUILD_COMMON=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
      -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF >"$dir/cmake.log" 2>&1
    cmake --build "$dir/build" --target llama -j "$jobs" >"$dir/build.log" 2>&1
  fi
  if [ ! -x "$dir/llama_driver" ] || [ bench/insn-plugin/llama_driver.c -nt "$dir/llama_driver" ]; then
    local libs
    libs="$(find "$dir/build" -name '*.a' | sort -r | tr '\n' ' ')"
    aarch64-linux-gnu-gcc -O2 -Wall -march="$march" -I"$src/include" -I"$src/ggml/include" \
      -c bench/insn-plugin/llama_driver.c -o "$dir/llama_driver.o"
    # shellcheck disable=SC2086  # a list of archive paths without spaces
    aarch64-linux-gnu-g++ "$dir/llama_driver.o" -Wl,--start-group $libs -Wl,--end-group \
      -lpthread -lm -o "$dir/llama_driver"
  fi
  echo "$dir/llama_driver"
}

# SmolLM2 in the formats the table covers, requantized from the Q4_1 file by `tern quantize`
# (run under qemu: the aarch64 build is at hand; the counts do not depend on the weights'
# quality), and the small random-weight BitNet file for TQ2_0.
default_models() {
  local tern="$1" src=models/smollm2-135m-instruct-q4_1.gguf t out
  [ -f "$src" ] || bash scripts/fetch-model.sh >&2
  mkdir -p "$cache/arm-models"
  echo "$src"
  for t in q4_0 q8_0 q4_k_m; do
    out="$cache/arm-models/smollm2-135m-instruct-$t.gguf"
    if [ ! -f "$out" ]; then
      qemu-aarch64 -L /usr/aarch64-linux-gnu "$tern" quantize -m "$src" -o "$out.tmp" --type "$t" >&2
      mv "$out.tmp" "$out"
    fi
    echo "$out"
  done
  if [ ! -f models/bitnet_small_tq2_0.gguf ]; then
    REF_VENV="${TERN_MODELS_VENV:-$cache/models-venv}" \
      bash tests/reference/make_bitnet_models.sh --no-fixture >&2
  fi
  echo models/bitnet_small_tq2_0.gguf
}

# --- counting --------------------------------------------------------------------------------

# count LEVEL OUT -- CMD...: runs CMD under qemu with the plugin; the plugin writes one line per
# phase and class to OUT ("PHASE CLASS COUNT").
count() {
  local level="$1" out="$2"
  shift 3
  TERN_INSN_MARKERS=1 qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu "$(cpu_of "$level")" \
    -plugin "$plugin,out=$out$funcs_arg" "$@" >/dev/null
}

# `--ternary auto` times two kernels at load, which under qemu is neither meaningful nor
# repeatable: ternary files are counted with the LUT kernel.
ternary_opt() {
  case "$(basename "$1")" in
    *tq1_0* | *tq2_0* | *i2_s*) echo "--ternary lut" ;;
  esac
}

main_table() {
  ensure_packages qemu-user gcc gcc-aarch64-linux-gnu g++-aarch64-linux-gnu \
    libc6-dev-arm64-cross cmake xz-utils
  plugin="$(build_plugin)"
  local tern
  tern="$(build_tern)"
  [ "${#models[@]}" -gt 0 ] || mapfile -t models < <(default_models "$tern")

  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  local rows="$work/rows.tsv"
  : >"$rows"
  local level model drv
  for level in $levels; do
    [ "$with_llama" -eq 1 ] && drv="$(build_llama "$level")"
    for model in "${models[@]}"; do
      log "== $level $(basename "$model")"
      # shellcheck disable=SC2046  # an optional option pair
      count "$level" "$work/t-int8" -- "$tern" bench -m "$model" -t 1 -p "$n_prompt" -n "$n_gen" \
        -r 1 --precision int8 $(ternary_opt "$model")
      # shellcheck disable=SC2046
      count "$level" "$work/t-def" -- "$tern" bench -m "$model" -t 1 -p "$n_prompt" -n "$n_gen" \
        -r 1 $(ternary_opt "$model")
      if [ "$with_llama" -eq 1 ]; then
        count "$level" "$work/l" -- "$drv" "$model" "$n_prompt" "$n_gen"
      else
        : >"$work/l"
      fi
      local m
      for m in t-int8 t-def l; do
        awk -v lv="$level" -v f="$(basename "$model")" -v who="$m" \
          '{ print lv "\t" f "\t" who "\t" $0 }' "$work/$m" >>"$rows"
      done
    done
  done
  echo "$(date -u +%F), $(qemu-aarch64 --version | head -1)"
  python3 bench/insn-plugin/report.py table "$rows" "$n_prompt" "$n_gen" \
    "$(qemu-aarch64 --version | head -1)"
}

# The CI gate: two small shapes of Tern's own, one repetition each (counts are deterministic).
# Shape names carry level, file, mode and token counts; renaming one needs a new baseline.
main_gate() {
  ensure_packages qemu-user gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross xz-utils
  plugin="$(build_plugin)"
  local tern model=models/smollm2-135m-instruct-q4_1.gguf
  tern="$(build_tern dev)"
  [ -f "$model" ] || bash scripts/fetch-model.sh >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # The instrument first: known instruction mixes must come out class by class, exactly.
  aarch64-linux-gnu-gcc -O1 -march=armv8.6-a+i8mm+fp16 -static bench/insn-plugin/selftest.c \
    -o "$work/selftest"
  qemu-aarch64 -cpu max -plugin "$plugin,out=$work/selftest.out" "$work/selftest"
  if ! grep -E '^(1|2) ' "$work/selftest.out" | diff - bench/insn-plugin/selftest.expected; then
    log "insn_count.c classifies bench/insn-plugin/selftest.c wrongly (diff above)"
    exit 1
  fi
  count dotprod "$work/dotprod_smollm2-q4_1_int8_p8_n4" -- \
    "$tern" bench -m "$model" -t 1 -p 8 -n 4 -r 1 --precision int8
  count i8mm "$work/i8mm_smollm2-q4_1_default_p8_n4" -- \
    "$tern" bench -m "$model" -t 1 -p 8 -n 4 -r 1
  local update=()
  [ "$update_baseline" -eq 1 ] && update=(--update)
  python3 bench/insn-plugin/report.py gate bench/arm-insn-baseline.json "$work" "${update[@]}" \
    --rustc "$(rustc --version)" --qemu "$(qemu-aarch64 --version | head -1)"
}

# llvm-mca on the hot loop of the kernels the table's files decode with, Tern's and
# llama.cpp's (whichever llama.cpp builds exist).
main_mca() {
  ensure_packages llvm gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  # LLVM 19's Neoverse N1 / V1 models (the A76 / X1 cores' siblings) where Debian has them.
  apt-cache show llvm-19 >/dev/null 2>&1 && ensure_packages llvm-19
  local tern level
  tern="$(build_tern)"
  echo "Tern ($tern):"
  python3 bench/insn-plugin/mca.py "$tern" gemm::dotprod::gemm_q4_0_q8 gemm::i8mm::gemm_q4_0_q8 \
    gemm::dotprod::gemm_q4_1_q8 gemm::i8mm::gemm_q4_1_q8 gemm::dotprod::gemm_q8_0_q8 \
    gemm::i8mm::gemm_q8_0_q8 kq_dotprod::gemm_q4_k_q8 kquants_int8::dotprod::dot_q6_k_q8 \
    ternary::dotprod::dot_tq2_0_q8row
  for level in $levels; do
    [ -x "$cache/llama-arm/$level/llama_driver" ] || continue
    echo
    echo "llama.cpp, $level build:"
    python3 bench/insn-plugin/mca.py "$cache/llama-arm/$level/llama_driver" \
      ggml_gemv_q4_0_4x4_q8_0 ggml_gemm_q4_0_4x4_q8_0 ggml_gemv_q4_0_4x8_q8_0 \
      ggml_gemm_q4_0_4x8_q8_0 ggml_vec_dot_q4_1_q8_1 ggml_vec_dot_q8_0_q8_0 \
      ggml_vec_dot_q4_K_q8_K ggml_vec_dot_q6_K_q8_K ggml_vec_dot_tq2_0_q8_K
  done
}

case "$mode" in
  table) main_table ;;
  gate) main_gate ;;
  mca) main_mca ;;
  build) plugin="$(build_plugin)"; for level in $levels; do build_llama "$level"; done ;;
esac
