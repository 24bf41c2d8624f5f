#!/usr/bin/env bash
# Installs what building and testing Tern needs on a fresh Debian machine with rustup:
# cross targets, qemu-user and the aarch64 linker. Safe to run again; skips what is present.
set -euo pipefail

# (armv7 and x86_64 Android are checked by scripts/test-heavy.sh, which adds them itself.)
targets=(aarch64-unknown-linux-gnu thumbv7em-none-eabihf aarch64-linux-android
  aarch64-apple-ios aarch64-apple-ios-sim)
installed="$(rustup target list --installed)"
missing=()
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$installed" || missing+=("$t")
done
if [ "${#missing[@]}" -gt 0 ]; then
  # One at a time: a target that cannot be downloaded (no network to the rustup server)
  # leaves the others installed; scripts/test.sh skips it with a note.
  for t in "${missing[@]}"; do
    rustup target add "$t" >/dev/null 2>&1 || echo "note: cannot add rustup target $t" >&2
  done
fi

# rustfmt and clippy for scripts/test.sh's `cargo fmt --check` and `cargo clippy`.
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed | grep -q '^clippy' || rustup component add clippy

packages=(qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
need=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
