#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine with Rust lacks for building,
# running and testing Portcullis. Idempotent: installs only what is missing.
set -euo pipefail

# Debian packages the build and the test suite need.
PACKAGES=(pkg-config libvectorscan-dev)
# Extra packages for the benchmark (benches/proxy.sh), installed with --bench.
BENCH_PACKAGES=(wrk nginx-light)

want=("${PACKAGES[@]}")
if [[ "${1:-}" == "--bench" ]]; then
  want+=("${BENCH_PACKAGES[@]}")
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
