#!/usr/bin/env bash
# Float64 perplexity of the real Gemma 3 270M and Qwen2.5-Coder-0.5B files on GPL-3:
# tests/reference/fixtures/{gemma3_270m,qwen25_05b}_f64_ppl.json (see make_f64_ppl.py).
#
#   tests/reference/make_f64_ppl.sh [args for make_f64_ppl.py]
#     --chunks N     chunks to score (default 0 = all 14, as committed; about 35 s a chunk
#                    on 2 busy cores, plus about a minute to load each model)
#     --only PREFIX  gemma3_270m and/or qwen25_05b
#
# Needs the llama.cpp fixtures PREFIX_ppl.json and PREFIX_logits.json (make_fixtures.sh) for the
# token check and the comparison. llama-cpp-python is only used for its tokenizer.
#
# Environment:
#   REF_VENV=/path   reuse (or create) this venv instead of a throwaway one; the
#                    llama-cpp-python build takes several minutes on 2 cores.
#   CMAKE_ARGS=...   passed through to the llama-cpp-python build by pip.
#   PYTHON=python3   interpreter used to create the venv.
#   OPENBLAS_NUM_THREADS  numpy's BLAS threads (default 2).
#
# Same pins as make_fixtures.sh, so one venv serves both. Times measured: the fixtures'
# provenance (seconds_load, seconds_per_chunk_mean, seconds_total).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

pins=(
  "llama-cpp-python==0.3.36"
  "gguf==0.19.0"
  "jinja2==3.1.6"
  "numpy==2.4.6"
)

# shellcheck source=tests/reference/ref_venv.sh
source "$here/ref_venv.sh"
ref_venv "${pins[@]}"

bash "$root/scripts/fetch-models.sh" gemma3-270m qwen2.5-coder-0.5b
case " $* " in *" qwen25_15b "*) bash "$root/scripts/fetch-models.sh" qwen2.5-coder-1.5b ;; esac

export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-2}"
start=$(date +%s)
"$venv/bin/python" "$here/make_f64_ppl.py" "$@"
echo "make_f64_ppl.py took $(( $(date +%s) - start ))s" >&2
