#!/usr/bin/env bash
# Tern vs llama.cpp on the same GGUF, same threads and token counts, in one run.
# usage: bench/vs-llamacpp.sh [MODEL] [THREADS] [N_PROMPT] [N_GEN] [REPS] [-- extra tern bench options]
# llama.cpp comes from PyPI's llama-cpp-python (built from source, several minutes the first
# time) in a throwaway venv; set REF_VENV to reuse one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model="${1:-models/smollm2-135m-instruct-q4_1.gguf}"
threads="${2:-2}"; n_prompt="${3:-128}"; n_gen="${4:-128}"; reps="${5:-5}"
shift $(( $# < 5 ? $# : 5 )) || true
[ "${1:-}" = "--" ] && shift
extra=("$@")

[ -f "$model" ] || bash scripts/fetch-model.sh
venv="${REF_VENV:-$(mktemp -d)/venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q llama-cpp-python==0.3.36
fi
cargo build -q --release -p tern-cli

tern_json="$(target/release/tern bench -m "$model" -t "$threads" -p "$n_prompt" -n "$n_gen" -r "$reps" --json "${extra[@]}")"
ref_json="$("$venv/bin/python" bench/llamacpp_bench.py -m "$model" -t "$threads" -p "$n_prompt" -n "$n_gen" -r "$reps")"
python3 - "$tern_json" "$ref_json" "$model" "$threads" "$n_prompt" "$n_gen" <<'PY'
import json, sys
t, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
model, threads, n_prompt, n_gen = sys.argv[3:7]
print(f"model {model}, {threads} threads, pp{n_prompt} / tg{n_gen}")
print(f"{'':12} {'pp tok/s':>16} {'tg tok/s':>16}")
print(f"{'tern':12} {t['pp_tok_s']:>9.1f} ± {t['pp_tok_s_sd']:<5.1f} {t['tg_tok_s']:>9.1f} ± {t['tg_tok_s_sd']:<5.1f}")
print(f"{'llama.cpp':12} {r['pp_tok_s']:>9.1f} ± {r['pp_tok_s_sd']:<5.1f} {r['tg_tok_s']:>9.1f} ± {r['tg_tok_s_sd']:<5.1f}")
print(f"{'ratio':12} {t['pp_tok_s'] / r['pp_tok_s']:>16.2f} {t['tg_tok_s'] / r['tg_tok_s']:>16.2f}")
print(f"tern: {t['bytes_per_token'] / 1e6:.1f} MB/token, {t['gbps']:.1f} GB/s; kernels {', '.join(t['kernels'][:6])}")
PY
