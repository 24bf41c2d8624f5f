#!/usr/bin/env bash
# Installs what building and testing Tern needs on a fresh Debian machine with rustup:
# cross targets, qemu-user and the aarch64 linker. Safe to run again; skips what is present.
set -euo pipefail

targets=(aarch64-unknown-linux-gnu thumbv7em-none-eabihf aarch64-linux-android aarch64-apple-ios)
installed="$(rustup target list --installed)"
missing=()
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$installed" || missing+=("$t")
done
if [ "${#missing[@]}" -gt 0 ]; then
  rustup target add "${missing[@]}"
fi

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
