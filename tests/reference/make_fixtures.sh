#!/usr/bin/env bash
# Regenerate the reference fixtures in tests/reference/fixtures/ from llama.cpp
# (through the PyPI package llama-cpp-python, built from source by pip).
#
#   tests/reference/make_fixtures.sh [args for make_fixtures.py]
#   tests/reference/make_fixtures.sh --prefix qwen25_05b     # Qwen2.5-Coder-0.5B fixtures
#   tests/reference/make_fixtures.sh --prefix gemma3_270m    # Gemma 3 270M fixtures
#
# Environment:
#   REF_VENV=/path   reuse (or create) this venv instead of a throwaway one; the
#                    llama-cpp-python build takes several minutes on 2 cores.
#   CMAKE_ARGS=...   passed through to the llama-cpp-python build by pip
#                    (e.g. "-DGGML_NATIVE=OFF" for a portable AVX2 build).
#   PYTHON=python3   interpreter used to create the venv.
#
# Needs a C/C++ compiler (g++) for the llama-cpp-python build; cmake comes from PyPI.
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
# The real Gemma 3 / Qwen2.5 files, for their profiles.
for a in "$@"; do
  case "$a" in
    qwen25_05b) bash "$root/scripts/fetch-models.sh" qwen2.5-coder-0.5b ;;
    gemma3_270m) bash "$root/scripts/fetch-models.sh" gemma3-270m ;;
    qwen25_15b) bash "$root/scripts/fetch-models.sh" qwen2.5-coder-1.5b ;;
  esac
done

start=$(date +%s)
"$venv/bin/python" "$here/make_fixtures.py" "$@"
echo "make_fixtures.py took $(( $(date +%s) - start ))s" >&2
