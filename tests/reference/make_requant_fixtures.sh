#!/usr/bin/env bash
# Regenerate tests/reference/fixtures/smollm2_requant_ppl.json: SmolLM2 requantized by
# `tern quantize` to each new type (q5_0 q5_1 iq4_nl q2_k q3_k q5_k), the files' sha256, and
# llama.cpp's perplexity on each (through the PyPI package llama-cpp-python, built from source
# by pip). Builds the release `tern` first.
#
#   tests/reference/make_requant_fixtures.sh [args for make_requant_fixtures.py]
#     --types q5_0 q2_k   only these types (the fixture then holds only them)
#     --check             verify the fixture instead of writing it: same sha256, llama.cpp
#                         loads each file and reproduces its first chunk
#
# Environment:
#   REF_VENV=/path   reuse (or create) this venv instead of a throwaway one; the
#                    llama-cpp-python build takes several minutes on 2 cores.
#   CMAKE_ARGS=...   passed through to the llama-cpp-python build by pip.
#   PYTHON=python3   interpreter used to create the venv.
#
# Same pins as make_fixtures.sh, so one venv serves both. Takes ~1 min per type on 2 cores.
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

bash "$root/scripts/fetch-model.sh"
(cd "$root" && cargo build --release -q -p tern-cli)

start=$(date +%s)
"$venv/bin/python" "$here/make_requant_fixtures.py" --tern "$root/target/release/tern" "$@"
echo "make_requant_fixtures.py took $(( $(date +%s) - start ))s" >&2
