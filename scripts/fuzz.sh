#!/usr/bin/env bash
# Fuzzes one target for a given time: scripts/fuzz.sh TARGET SECONDS [JOBS]
#
# TERN_FUZZ_SANITIZER=none runs libFuzzer without AddressSanitizer (5-10x the executions per
# second; safe Rust keeps its bounds checks, and debug assertions stay on for overflow checks),
# for reaching large execution counts; the default is address.
#
# Targets: gguf_parse, model_load, chat_template, session_restore, conversation_restore (their
# bodies: tests/src/fuzz.rs). With a nightly toolchain and cargo-fuzz installed, runs libFuzzer
# (coverage-guided) from the seeds in fuzz/corpus/TARGET, keeping what it finds in
# fuzz/target/corpus/TARGET (not committed: copy an input worth keeping); otherwise the stable
# random-mutation driver (tests/src/bin/fuzz_stable.rs). Crashes land in fuzz/artifacts/TARGET/;
# copy one into fuzz/corpus/TARGET/ once fixed, and the normal test suite replays it
# (tests/tests/fuzz_corpus.rs). Not part of CI: it runs for as long as you ask.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:?usage: scripts/fuzz.sh TARGET SECONDS [JOBS]}
seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS [JOBS]}
jobs=${3:-1}

if [ ! -d "fuzz/corpus/$target" ]; then
  cargo run -q --release -p tern-tests --bin fuzz_stable -- seed
fi

if rustup run nightly rustc --version >/dev/null 2>&1 && cargo fuzz --version >/dev/null 2>&1; then
  # -max_len: the tiny model seed is ~27 KB. -rss_limit_mb: an input that makes a load use
  # more than 2 GB is a finding; -timeout: an input running longer than 10 s is a hang.
  parallel=()
  if [ "$jobs" -gt 1 ]; then parallel=(-jobs="$jobs" -workers="$jobs"); fi
  cd fuzz
  mkdir -p "target/corpus/$target"
  exec cargo +nightly fuzz run -s "${TERN_FUZZ_SANITIZER:-address}" -a "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 "${parallel[@]}"
else
  echo "nightly or cargo-fuzz missing: using the stable mutation driver" >&2
  exec cargo run -q --release -p tern-tests --bin fuzz_stable -- "$target" "$seconds"
fi
