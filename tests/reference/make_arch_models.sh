#!/usr/bin/env bash
# Write the small random-weight qwen2 / qwen3 / phi3 / Llama 3 / gemma3 test models into models/
# (gitignored) and regenerate their fixtures tests/reference/fixtures/<name>.json from llama.cpp
# (through the PyPI package llama-cpp-python, built from source by pip).
#
#   tests/reference/make_arch_models.sh [args for make_arch_models.py]
#     --no-fixture   only write the models (needs gguf + numpy, not llama.cpp)
#     --only NAME..  some of qwen2_small qwen3_small phi3_small llama3_small gemma3_small
#     --seed N       another set of random weights (the fixtures record the seed)
#
# The tokenizers are copied from the real SmolLM2, Qwen2.5-Coder-0.5B and Gemma 3 270M files,
# which this fetches first (scripts/fetch-model.sh, scripts/fetch-models.sh).
#
# Environment:
#   REF_VENV=/path   reuse (or create) this venv instead of a throwaway one; the
#                    llama-cpp-python build takes several minutes on 2 cores.
#   CMAKE_ARGS=...   passed through to the llama-cpp-python build by pip.
#   PYTHON=python3   interpreter used to create the venv.
#
# Same pins as make_fixtures.sh, so one venv serves both.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

pins=(
  "llama-cpp-python==0.3.36"
  "gguf==0.19.0"
  "jinja2==3.1.6"
  "numpy==2.4.6"
)
for a in "$@"; do
  # Models only: llama.cpp is not needed.
  if [ "$a" = "--no-fixture" ]; then pins=("gguf==0.19.0" "numpy==2.4.6"); fi
done

# shellcheck source=tests/reference/ref_venv.sh
source "$here/ref_venv.sh"
ref_venv "${pins[@]}"

bash "$root/scripts/fetch-model.sh"
bash "$root/scripts/fetch-models.sh" gemma3-270m qwen2.5-coder-0.5b

start=$(date +%s)
"$venv/bin/python" "$here/make_arch_models.py" "$@"
echo "make_arch_models.py took $(( $(date +%s) - start ))s" >&2
