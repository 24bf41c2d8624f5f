#!/usr/bin/env bash
# Opt-in checks too slow for `cargo test` on a small machine (minutes each on 2 cores). Not
# part of scripts/test.sh. Runs, in order (`--list` prints this list and exits):
#
#   requant-ppl    SmolLM2 requantized by the release `tern quantize` to every type of
#                  tests/reference/fixtures/smollm2_requant_ppl.json (q5_0 q5_1 iq4_nl q2_k q3_k
#                  q5_k): the file's sha256 equals the fixture's (the bytes llama.cpp was measured
#                  on), then `tern perplexity --json` over all 14 windows of the GPL-3 text at
#                  c=512, at --precision int8 (8-bit activations, llama.cpp's arithmetic) and f32
#                  (Tern's default). Fails unless f32 is within 0.1 % of the fixture's float64
#                  forward pass after every window, and int8 within 0.5 % of llama.cpp's final
#                  perplexity (1.5 % for q2_k, where llama.cpp rounds activations per 256 values
#                  and Tern's int8 path per 32). Prints the table, f32 vs llama.cpp included.
#                  First `cargo test -p tern-cli --features heavy --test requant_ppl`: sha256
#                  and f32 vs float64 on the first two windows.
#   qwen15         the real Qwen2.5-Coder-1.5B-Instruct Q4_K_M file (1.1 GB, fetched by
#                  scripts/fetch-models.sh qwen2.5-coder-1.5b): tokenization, detokenization,
#                  chat template, logits, greedy tokens and perplexity (4 windows) against
#                  llama.cpp (`cargo test -p tern-tests --features heavy --test
#                  qwen25_15b_reference`). Its speed: bench/vs-llamacpp.sh on the same file.
#   tools          tool calling and JSON-schema output on Qwen2.5-Coder-0.5B-Instruct: all 20
#                  requests of tests/reference/tools/requests.json with and without constraints
#                  (every constrained call validates; prints right tool + arguments for both),
#                  and `tern run --json-schema` on all 10 schemas × 3 prompts of schemas.json
#                  (every document validates). Normal `cargo test` runs a few of each. Then
#                  Qwen2.5-0.5B greedy tokens with int8 activations against llama.cpp
#                  (qwen25_reference's heavy test: the int8 decode kernels on the real file).
#   ppl            perplexity of the real Qwen2.5-Coder-0.5B and Gemma 3 270M files against
#                  llama.cpp and float64 over every chunk of their fixtures (TERN_PPL_CHUNKS=all;
#                  scripts/test.sh scores the first chunk only).
#   qemu-arch      the generated qwen2 and gemma3 models against float64 under qemu-aarch64
#                  (cortex-a53 and max: the Q5_0, Q4_0, Q4_1, Q8_0 and F16 NEON paths end to end).
#   abis           `cargo check` of the runtime and FFI for the Android ABIs scripts/test.sh
#                  leaves out (armv7-linux-androideabi, x86_64-linux-android).
#   stress         ffi/tests/stress.rs at 4 threads x 1000 rounds (scripts/test.sh runs 200):
#                  create, generate, cancel; RSS flat and every cancel within a batch.
#   npu            the NPU delegate's heavier emulator cases (TERN_NPU_HEAVY=1 scripts/test-npu.sh:
#                  whole layers of the 700M BitNet shape and SmolLM2-Q4_0, the output head,
#                  SmolLM2-Q4_0 greedy decode with FFN blocks on the emulated HTP; ~13
#                  minutes, 7.5 of them the SmolLM2 decode on the emulator).
#   requant-llama  only with REF_VENV=/path to a venv holding llama-cpp-python (as
#                  tests/reference/make_requant_fixtures.sh makes it): each file again through
#                  make_requant_fixtures.py --check, so llama.cpp loads it and reproduces the
#                  fixture's first window.
#
#   scripts/test-heavy.sh [--list]
#
# Environment:
#   STEPS="qwen15"      only these steps (default: all of them; requant-llama needs REF_VENV)
#   TYPES="q5_0 q2_k"   only these types
#   THREADS=N           threads for `tern perplexity` (default: all cores)
#   REF_VENV=/path      enables requant-llama
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${1:-}" = "--list" ]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 0
fi

step() { printf '\n==> %s\n' "$*"; }

fixture=tests/reference/fixtures/smollm2_requant_ppl.json
model=models/smollm2-135m-instruct-q4_1.gguf
types="${TYPES:-$(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["types"]))' "$fixture")}"
threads=("--threads" "${THREADS:-$(nproc)}")

step "build: cargo build --release -p tern-cli"
bash scripts/fetch-model.sh
cargo build --release -q -p tern-cli
tern=target/release/tern

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

steps="${STEPS:-requant-ppl qwen15 tools ppl qemu-arch abis stress npu requant-llama}"
has_step() { [[ " $steps " == *" $1 "* ]]; }

if has_step qwen15; then
  step "qwen15: cargo test -p tern-tests --features heavy --test qwen25_15b_reference"
  bash scripts/fetch-models.sh qwen2.5-coder-1.5b
  cargo test -q -p tern-tests --features heavy --test qwen25_15b_reference
fi

if has_step tools; then
  step "tools: cargo test --features heavy (tools_qwen, json_schema)"
  bash scripts/fetch-models.sh qwen2.5-coder-0.5b
  cargo test -q -p tern-tests --features heavy --test tools_qwen -- --nocapture --test-threads 1
  cargo test -q -p tern-tests --features heavy --test qwen25_reference greedy_continuations_match_llama_cpp_int8
  cargo test -q -p tern-cli --features heavy --test json_schema -- --nocapture
fi

if has_step ppl; then
  step "ppl: perplexity_matches_llama_cpp over every chunk (TERN_PPL_CHUNKS=all)"
  bash scripts/fetch-models.sh
  TERN_PPL_CHUNKS=all cargo test -q -p tern-tests --test qwen25_reference --test gemma3_reference \
    perplexity_matches_llama_cpp
fi

if has_step qemu-arch; then
  step "qemu-arch: arch_small under qemu-aarch64"
  for cpu in cortex-a53 max; do
    QEMU_CPU=$cpu cargo test -q -p tern-tests --target aarch64-unknown-linux-gnu --test arch_small \
      -- qwen2_with gemma3_with
  done
fi

if has_step abis; then
  step "abis: cargo check for armv7 and x86_64 Android"
  for target in armv7-linux-androideabi x86_64-linux-android; do
    rustup target add "$target" >/dev/null
    cargo check -q -p tern-kernels -p tern-runtime -p tern-ffi --target "$target"
  done
fi

if has_step stress; then
  step "stress: ffi/tests/stress.rs, 4 threads x 1000 rounds"
  TERN_STRESS_ROUNDS=1000 cargo test -q -p tern-ffi --test stress -- --nocapture
fi

if has_step npu; then
  step "npu: TERN_NPU_HEAVY=1 scripts/test-npu.sh"
  TERN_NPU_HEAVY=1 bash scripts/test-npu.sh
fi

has_step requant-ppl || types=""
[ -z "$types" ] || step "requant-ppl: types $types"
[ -z "$types" ] || cargo test -q -p tern-cli --features heavy --test requant_ppl
for t in $types; do
  out="$work/smollm2_$t.gguf"
  echo "tern quantize -m $model -o $out --type $t" >&2
  "$tern" quantize -m "$model" -o "$out" --type "$t" > /dev/null
  sha256sum "$out" | cut -d' ' -f1 > "$work/$t.sha256"
  for p in int8 f32; do
    echo "tern perplexity -m $out -f /usr/share/common-licenses/GPL-3 -c 512 --precision $p ${threads[*]} --json" >&2
    "$tern" perplexity -m "$out" -f /usr/share/common-licenses/GPL-3 -c 512 --precision "$p" \
      "${threads[@]}" --json 2> /dev/null > "$work/$t.$p.json"
  done
  rm -f "$out"
done

[ -z "$types" ] || python3 - "$fixture" "$work" $types <<'PY'
import json, sys
from pathlib import Path

F64_REL = 0.001    # Tern's f32 path against the float64 forward pass, after every window
LLAMA_REL = 0.005  # the issue's bar: Tern at int8 (llama.cpp's kind of arithmetic) vs llama.cpp
# Types where Tern's int8 path is not llama.cpp's arithmetic closely enough for LLAMA_REL, with
# their own bound and the reason. Q2_K: llama.cpp rounds ffn_down's input to Q8_K (one scale
# per 256 values), Tern's int8 path per 32; on 2-bit weights that alone lifts llama.cpp's
# perplexity 1.5 % (float64 with per-256 rounding: 90.31, with per-32: 88.90, llama.cpp 90.22).
KNOWN = {"q2_k": (0.015, "llama.cpp's Q8_K (per-256) activations; float64 with them lands on its figure")}

fixture = json.load(open(sys.argv[1]))
work = Path(sys.argv[2])
failures, notes, rows = [], [], []
for t in sys.argv[3:]:
    want = fixture["types"][t]
    sha = (work / f"{t}.sha256").read_text().strip()
    if sha != want["sha256"]:
        failures.append(f"{t}: sha256 {sha} is not the fixture's {want['sha256']}")
    r = {p: json.loads((work / f"{t}.{p}.json").read_text()) for p in ("int8", "f32")}
    for p in r:
        if r[p]["tokens"] != fixture["n_tokens"] or r[p]["chunks"] != fixture["n_chunks"]:
            failures.append(f"{t} {p}: {r[p]['tokens']} tokens, {r[p]['chunks']} windows")
    llama, f64, f64r = want["ppl"], want["f64_ppl"], want["f64_llama_rounding_ppl"]
    rel = lambda a, b: (a - b) / b
    for k, (a, b) in enumerate(zip(r["f32"]["running_ppl"], want["f64_running_ppl"])):
        if abs(rel(a, b)) >= F64_REL:
            failures.append(f"{t}: f32 perplexity after {k + 1} windows {a:.4f} vs float64 {b}")
    d8 = rel(r["int8"]["ppl"], llama)
    bound, why = KNOWN.get(t, (LLAMA_REL, None))
    if abs(d8) >= bound:
        failures.append(f"{t}: int8 perplexity {r['int8']['ppl']:.4f} vs llama.cpp {llama} ({100 * d8:+.3f} %)")
    if why:
        notes.append(f"{t}: int8 vs llama.cpp {100 * d8:+.3f} %, bound {100 * bound} %: {why}")
    rows.append((t, sha[:12], r["f32"]["ppl"], r["int8"]["ppl"], llama, f64, f64r,
                 rel(r["f32"]["ppl"], f64), rel(r["f32"]["ppl"], llama), d8, rel(f64r, llama)))

print("\n| type | sha256 | Tern f32 | Tern int8 | llama.cpp | float64 | float64, llama.cpp's rounding "
      "| f32 vs float64 | f32 vs llama.cpp | int8 vs llama.cpp | rounding model vs llama.cpp |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for t, sha, p32, p8, llama, f64, f64r, a, b, c, d in rows:
    print(f"| {t} | {sha} | {p32:.4f} | {p8:.4f} | {llama:.4f} | {f64:.4f} | {f64r:.4f} "
          f"| {100 * a:+.3f} % | {100 * b:+.3f} % | {100 * c:+.3f} % | {100 * d:+.3f} % |")
for n in notes:
    print(f"note: {n}")
if failures:
    print("\nFAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"\nrequant-ppl: {len(rows)} types pass")
PY

if ! has_step requant-llama || [ -z "$types" ]; then
  :
elif [ -n "${REF_VENV:-}" ]; then
  step "requant-llama: make_requant_fixtures.py --check (REF_VENV=$REF_VENV)"
  # shellcheck disable=SC2086
  "$REF_VENV/bin/python" tests/reference/make_requant_fixtures.py --check --tern "$tern" --types $types
else
  step "requant-llama: skipped (set REF_VENV to a venv with llama-cpp-python)"
fi
