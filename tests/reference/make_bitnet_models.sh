#!/usr/bin/env bash
# Write the random-weight BitNet test models into models/ (gitignored) and regenerate
# tests/reference/fixtures/bitnet_small.json from llama.cpp (through the PyPI package
# llama-cpp-python, built from source by pip).
#
#   tests/reference/make_bitnet_models.sh [args for make_bitnet_models.py]
#     --no-fixture   only write the models (needs gguf + numpy, not llama.cpp)
#     --bench        also write the ~700M-parameter benchmark shape (TQ2_0 and I2_S, ~1.3 GB)
#     --seed N       another set of random weights (the fixture records the seed)
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

pins=(
  "llama-cpp-python==0.3.36"
  "gguf==0.19.0"
  "numpy==2.4.6"
)
for a in "$@"; do
  # Models only: llama.cpp is not needed.
  if [ "$a" = "--no-fixture" ]; then pins=("gguf==0.19.0" "numpy==2.4.6"); fi
done

# shellcheck source=tests/reference/ref_venv.sh
source "$here/ref_venv.sh"
ref_venv "${pins[@]}"

start=$(date +%s)
"$venv/bin/python" "$here/make_bitnet_models.py" "$@"
echo "make_bitnet_models.py took $(( $(date +%s) - start ))s" >&2
