#!/usr/bin/env bash
# Tern vs llama.cpp on the same GGUF, same threads and token counts, in one run of REPS rounds
# that alternate the two (so the ratio does not hinge on when the machine was busy).
# usage: bench/vs-llamacpp.sh [MODEL] [THREADS] [N_PROMPT] [N_GEN] [REPS] [-- extra tern bench options]
# llama.cpp comes from PyPI's llama-cpp-python (built from source, several minutes the first
# time) in a throwaway venv; set REF_VENV to reuse one.
#
# bench/vs-llamacpp.sh --types [REPS]
#   every weight type (issue 22): SmolLM2-135M requantized by llama-quantize (--pure) from the
#   shipped Q4_1 file to Q4_0, Q8_0, Q5_0, Q5_1, IQ4_NL and the 256-block types Q4_K, Q5_K,
#   Q6_K, Q3_K, Q2_K, IQ4_XS (576-wide rows are not whole 256-blocks: there llama-quantize
#   falls back, e.g. Q3_K to Q4_0, so only the 30 ffn_down matrices carry the type), the Q4_1
#   file itself, and the generated
#   ternary models (TQ1_0, TQ2_0), so both engines read identical bytes; Tern at f32 and int8,
#   1 and 2 threads, against llama-bench (pp128 / tg128), REPS alternating rounds (default 3);
#   prints the ratio table with the load average (TYPES="q4_0 q8_0" runs only those). llama-bench and llama-quantize are built
#   from the pinned llama-cpp-python sdist's llama.cpp into $LLAMA_BUILD (as
#   bench/llamacpp-types.sh does; minutes the first time).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "${1:-}" = "--types" ] && { shift; exec bash bench/vs-llamacpp-types.sh "$@"; }
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

# Rounds alternate the two runtimes (one measured repetition each, after each one's warm-up),
# so a slow spell of this shared machine hits both rather than one side's whole series.
rounds="$(mktemp)"
trap 'rm -f "$rounds"' EXIT
for _ in $(seq "$reps"); do
  target/release/tern bench -m "$model" -t "$threads" -p "$n_prompt" -n "$n_gen" -r 1 --json "${extra[@]}" >>"$rounds"
  "$venv/bin/python" bench/llamacpp_bench.py -m "$model" -t "$threads" -p "$n_prompt" -n "$n_gen" -r 1 >>"$rounds"
done
python3 - "$rounds" "$model" "$threads" "$n_prompt" "$n_gen" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
model, threads, n_prompt, n_gen = sys.argv[2:6]
tern, ref = lines[0::2], lines[1::2]
def stat(runs, key):
    v = [r[key] for r in runs if r.get(key) is not None]
    if not v:
        return float("nan"), 0.0
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)
(tp, tps), (tt, tts) = stat(tern, "pp_tok_s"), stat(tern, "tg_tok_s")
(rp, rps), (rt, rts) = stat(ref, "pp_tok_s"), stat(ref, "tg_tok_s")
pair = lambda key: statistics.median(a[key] / b[key] for a, b in zip(tern, ref)) if tern[0].get(key) and ref[0].get(key) else float("nan")
print(f"model {model}, {threads} threads, pp{n_prompt} / tg{n_gen}, {len(tern)} alternating rounds")
print(f"{'':12} {'pp tok/s':>16} {'tg tok/s':>16}")
print(f"{'tern':12} {tp:>9.1f} ± {tps:<5.1f} {tt:>9.1f} ± {tts:<5.1f}")
print(f"{'llama.cpp':12} {rp:>9.1f} ± {rps:<5.1f} {rt:>9.1f} ± {rts:<5.1f}")
print(f"{'ratio':12} {tp / rp:>16.2f} {tt / rt:>16.2f}")
print(f"{'round median':12} {pair('pp_tok_s'):>16.2f} {pair('tg_tok_s'):>16.2f}")
t = tern[0]
print(f"tern: {t['bytes_per_token'] / 1e6:.1f} MB/token; weights {t['weights']}; kernels {', '.join(t['kernels'][:6])}")
PY
