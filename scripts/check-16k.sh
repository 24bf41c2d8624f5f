#!/usr/bin/env bash
# 16 KB pages: every 64-bit shared library the Android AAR carries must have its LOAD segments
# aligned to 16 KB (Android 15+ devices with 16 KB pages refuse the rest; Google Play refuses
# apps for new targets that carry them). Checks, with scripts/check-16k.py:
#   - tern-ffi cross-built for aarch64 with the link flag android/build.gradle.kts gives the
#     64-bit Android ABIs (-Wl,-z,max-page-size=16384), linked by Debian's aarch64-linux-gnu gcc
#     (the NDK is not installed here; the flag and the linker's handling of it are the same);
#   - JNA's libjnidispatch.so for android-aarch64 and android-x86-64, from the jars or AARs
#     named in TERN_JNA_JARS (space-separated) or a JNA AAR in the Gradle cache. JNA ships these
#     on Maven Central only (Debian's libjna-java has no Android libraries, and no PyPI or npm
#     package carries them): where none is found, this says so and checks tern-ffi alone.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The flag as the Android build sets it.
flag="$(grep -o 'link-arg=-Wl,-z,max-page-size=[0-9]*' android/build.gradle.kts | sort -u)"
if [ "$(wc -l <<<"$flag")" -ne 1 ] || [ -z "$flag" ]; then
  echo "error: android/build.gradle.kts does not set one max-page-size link flag" >&2
  exit 1
fi
# `cargo rustc` gives the flag to the final link only, so the dependencies (and the host's proc
# macros) are the ones the other aarch64 builds of the suite share.
target_dir="${CARGO_TARGET_DIR:-$root/target}"
cargo rustc -q -p tern-ffi --lib --crate-type cdylib --target aarch64-unknown-linux-gnu -- -C "$flag"
libs=("$target_dir/aarch64-unknown-linux-gnu/debug/libtern_ffi.so")

jars=()
if [ -n "${TERN_JNA_JARS:-}" ]; then
  read -r -a jars <<<"$TERN_JNA_JARS"
else
  while IFS= read -r f; do jars+=("$f"); done < <(
    find "${GRADLE_USER_HOME:-$HOME/.gradle}/caches" -name 'jna-5.*.aar' 2>/dev/null | sort)
fi
if [ "${#jars[@]}" -eq 0 ]; then
  echo "note: no JNA Android jar or AAR found (set TERN_JNA_JARS); checking tern-ffi only" >&2
fi
python3 scripts/check-16k.py "${libs[@]}" "${jars[@]}"
