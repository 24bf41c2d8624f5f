#!/usr/bin/env bash
# Generate text with the default model: fetches it if missing, builds tern, runs a prompt.
# usage: scripts/run.sh [PROMPT] [extra `tern run` options...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
prompt="${1:-The capital of France is}"
shift || true
bash scripts/fetch-model.sh
cargo build -q --release -p tern-cli
exec target/release/tern run -m models/smollm2-135m-instruct-q4_1.gguf -p "$prompt" -n 64 "$@"
