#!/usr/bin/env bash
# The every-type table of `bench/vs-llamacpp.sh --types [REPS]` (see there): Tern (f32, int8)
# against llama-bench on identical files, 1 and 2 threads, pp128 / tg128, REPS alternating
# rounds; ratios are Tern / llama.cpp, "best" the faster Tern precision, "default" what
# `--precision auto` picks on this CPU.
# TYPES="q4_0 q8_0" runs only those.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
reps="${1:-3}"
version=0.3.36
build="${LLAMA_BUILD:-$HOME/.cache/tern/llama.cpp-$version}"
src="$build/src/vendor/llama.cpp"
bin="$src/build/bin"
if [ ! -x "$bin/llama-bench" ] || [ ! -x "$bin/llama-quantize" ]; then
  mkdir -p "$build"
  [ -x "$build/venv/bin/ninja" ] || { python3 -m venv "$build/venv"; "$build/venv/bin/pip" install -q cmake ninja; }
  if [ ! -d "$src" ]; then
    url="$(curl -fsS -H 'Accept: application/vnd.pypi.simple.v1+json' \
      https://pypi.org/simple/llama-cpp-python/ | python3 -c "
import json, sys
print(next(f['url'] for f in json.load(sys.stdin)['files']
           if f['filename'] == 'llama_cpp_python-$version.tar.gz'))")"
    curl -fsS -o "$build/src.tar.gz" "$url"
    rm -rf "$build/src" && mkdir -p "$build/src"
    tar xzf "$build/src.tar.gz" -C "$build/src" --strip-components=1
  fi
  [ -f "$src/build/build.ninja" ] || PATH="$build/venv/bin:$PATH" cmake -S "$src" -B "$src/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  PATH="$build/venv/bin:$PATH" ninja -C "$src/build" llama-bench llama-quantize >/dev/null
fi
export LD_LIBRARY_PATH="$bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

[ -f models/smollm2-135m-instruct-q4_1.gguf ] || bash scripts/fetch-model.sh
cache="${TERN_CACHE:-$HOME/.cache/tern}/vs-llamacpp"
mkdir -p "$cache"
read -ra files <<<"${TYPES:-q4_0 q4_1 q8_0 q5_0 q5_1 iq4_nl q4_k q5_k q6_k q3_k q2_k iq4_xs tq1_0 tq2_0}"
path() {
  case "$1" in
    q4_1) echo models/smollm2-135m-instruct-q4_1.gguf ;;
    tq1_0|tq2_0) echo "models/bitnet_small_$1.gguf" ;;
    *) echo "$cache/smollm2-135m-$1.gguf" ;;
  esac
}
for t in q4_0 q8_0 q5_0 q5_1 iq4_nl q4_k q5_k q6_k q3_k q2_k iq4_xs; do
  out="$(path "$t")"
  if [ ! -f "$out" ]; then
    "$bin/llama-quantize" --allow-requantize --pure \
      models/smollm2-135m-instruct-q4_1.gguf "$out.tmp" "${t^^}" >"$out.log" 2>&1
    mv "$out.tmp" "$out"
  fi
done
cargo build -q --release -p tern-cli

# RUNS=FILE keeps the per-run figures (one JSON line each) there.
runs="${RUNS:-$(mktemp)}"
[ -n "${RUNS:-}" ] || trap 'rm -f "$runs"' EXIT
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
# What `--precision auto`, the default, resolves to on this CPU: the "default" column.
default="$(target/release/tern bench -m models/smollm2-135m-instruct-q4_1.gguf -p 4 -n 1 -r 1 --json |
  python3 -c "import json,sys; print(json.load(sys.stdin)['precision'])")"
for t in "${files[@]}"; do
  f="$(path "$t")"
  [ -f "$f" ] || { echo "skipped $t: $f is missing" >&2; continue; }
  for threads in 1 2; do
    for _ in $(seq "$reps"); do
      for p in f32 int8; do
        target/release/tern bench -m "$f" -t "$threads" -p 128 -n 128 -r 1 --precision "$p" --json |
          python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'type':'$t','threads':$threads,'who':'$p','pp':d['pp_tok_s'],'tg':d['tg_tok_s']}))" >>"$runs"
      done
      "$bin/llama-bench" -m "$f" -t "$threads" -p 128 -n 128 -r 1 -o jsonl 2>/dev/null |
        python3 -c "
import json, sys
r = [json.loads(l) for l in sys.stdin if l.strip()]
pp = next(x['avg_ts'] for x in r if x['n_prompt'])
tg = next(x['avg_ts'] for x in r if x['n_gen'])
print(json.dumps({'type': '$t', 'threads': $threads, 'who': 'llama', 'pp': pp, 'tg': tg}))" >>"$runs"
    done
  done
done
python3 - "$runs" "$reps" "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" "$default" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
reps, before, after, default = sys.argv[2:6]
def med(t, th, who, k):
    v = [r[k] for r in runs if (r["type"], r["threads"], r["who"]) == (t, th, who)]
    return statistics.median(v) if v else float("nan")
print(f"pp128 / tg128 tok/s, median of {reps} alternating rounds; load average {before} before, {after} after")
print(f"| type | threads | llama.cpp pp / tg | Tern f32 pp / tg | Tern int8 pp / tg | best ratio pp / tg | default ({default}) ratio pp / tg |")
print("|---|---|---|---|---|---|---|")
seen = []
for r in runs:
    key = (r["type"], r["threads"])
    if key in seen:
        continue
    seen.append(key)
    t, th = key
    l = [med(t, th, "llama", k) for k in ("pp", "tg")]
    f = [med(t, th, "f32", k) for k in ("pp", "tg")]
    i = [med(t, th, "int8", k) for k in ("pp", "tg")]
    best = [max(f[j], i[j]) / l[j] for j in range(2)]
    dflt = [(i if default == "int8" else f)[j] / l[j] for j in range(2)]
    print(f"| {t.upper()} | {th} | {l[0]:.1f} / {l[1]:.1f} | {f[0]:.1f} / {f[1]:.1f} | {i[0]:.1f} / {i[1]:.1f} "
          f"| {best[0]:.2f} / {best[1]:.2f} | {dflt[0]:.2f} / {dflt[1]:.2f} |")
PY
