#!/usr/bin/env bash
# llama.cpp's own figure per weight type, for the table `cargo bench -p tern-kernels` prints:
# `test-backend-ops perf` on the CPU backend, matrix × vector (MUL_MAT, n = 1, its built-in
# 4096 × 14336 shape, f32 activations, which ggml rounds to each type's 8-bit block format
# first), as GB/s of weight bytes and as a share of Q4_0 in the same run.
#
#   bench/llamacpp-types.sh [TYPE ...]      (default: every type Tern computes with)
#
# Builds test-backend-ops from the llama.cpp sources inside the pinned llama-cpp-python sdist
# (PyPI is the only network; cmake and ninja come from PyPI too) into $LLAMA_BUILD
# (default ~/.cache/tern/llama.cpp-0.3.36), a few minutes the first time on 2 cores.
# The shapes differ from Tern's bench (576 and 1536 columns): compare the shares of Q4_0.
set -euo pipefail
version=0.3.36
build="${LLAMA_BUILD:-$HOME/.cache/tern/llama.cpp-$version}"
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(q4_0 q4_1 q5_0 q5_1 q8_0 iq4_nl iq4_xs q2_K q3_K q4_K q5_K q6_K)

bin="$build/src/vendor/llama.cpp/build/bin/test-backend-ops"
if [ ! -x "$bin" ]; then
  mkdir -p "$build"
  python3 -m venv "$build/venv"
  "$build/venv/bin/pip" install -q cmake ninja
  url="$(curl -fsS -H 'Accept: application/vnd.pypi.simple.v1+json' \
    https://pypi.org/simple/llama-cpp-python/ | python3 -c "
import json, sys
print(next(f['url'] for f in json.load(sys.stdin)['files']
           if f['filename'] == 'llama_cpp_python-$version.tar.gz'))")"
  curl -fsS -o "$build/src.tar.gz" "$url"
  rm -rf "$build/src" && mkdir -p "$build/src"
  tar xzf "$build/src.tar.gz" -C "$build/src" --strip-components=1
  src="$build/src/vendor/llama.cpp"
  PATH="$build/venv/bin:$PATH" cmake -S "$src" -B "$src/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  PATH="$build/venv/bin:$PATH" ninja -C "$src/build" test-backend-ops >/dev/null
fi

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for t in "${types[@]}"; do
  "$bin" perf -b CPU -o MUL_MAT -p "type_a=$t,type_b=f32,m=4096,n=1,k=14336,bs=\[1,1\],nr=\[1,1\]," 2>&1 |
    grep -E "^ +MUL_MAT" | head -1 >>"$out" || echo "  MUL_MAT(type_a=$t,...): not run" >>"$out"
done
python3 - "$out" <<'PY'
import re, sys
# Bytes per block and values per block (GGUF block layouts).
LAYOUT = {"q4_0": (18, 32), "q4_1": (20, 32), "q5_0": (22, 32), "q5_1": (24, 32), "q8_0": (34, 32),
          "iq4_nl": (18, 32), "iq4_xs": (136, 256), "q2_K": (84, 256), "q3_K": (110, 256),
          "q4_K": (144, 256), "q5_K": (176, 256), "q6_K": (210, 256)}
rows = []
for line in open(sys.argv[1]):
    m = re.search(r"type_a=(\w+),.*m=(\d+),n=1,k=(\d+).*?([\d.]+) us/run", line)
    if not m:
        print(line.strip())
        continue
    t, rows_, cols, us = m.group(1), int(m.group(2)), int(m.group(3)), float(m.group(4))
    b, n = LAYOUT[t]
    rows.append((t, rows_ * cols // n * b / (us * 1e-6) / 1e9, us))
base = next((g for t, g, _ in rows if t == "q4_0"), None)
print("llama.cpp test-backend-ops perf, CPU backend, MUL_MAT 4096 x 14336 x 1 (f32 activations)")
print(f"{'type':8} {'us/run':>10} {'GB/s':>8} {'% of Q4_0':>10}")
for t, g, us in rows:
    share = f"{100 * g / base:.0f} %" if base else "-"
    print(f"{t:8} {us:>10.1f} {g:>8.2f} {share:>10}")
PY
