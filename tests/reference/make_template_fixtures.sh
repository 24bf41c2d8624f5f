#!/usr/bin/env bash
# Regenerate tests/reference/fixtures/chat_templates.json: the templates of
# tests/reference/templates/ rendered by jinja2 as transformers' apply_chat_template does.
# Needs only Python and jinja2 (no model, no llama.cpp).
#
#   tests/reference/make_template_fixtures.sh [args for make_template_fixtures.py]
#
# Environment:
#   REF_VENV=/path   reuse (or create) this venv instead of a throwaway one (the venv of
#                    make_fixtures.sh has the same jinja2 pin and works as is).
#   PYTHON=python3   interpreter used to create the venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

pins=(
  "jinja2==3.1.6"
  "markupsafe==3.0.4"
)

# shellcheck source=tests/reference/ref_venv.sh
source "$here/ref_venv.sh"
ref_venv "${pins[@]}"

"$venv/bin/python" "$here/make_template_fixtures.py" "$@"
