#!/usr/bin/env bash
# Installs what is missing, builds, and starts the gateway with the default
# configuration (config/portcullis.yaml: proxy on :8080 in front of the
# built-in echo upstream, admin API on 127.0.0.1:9090).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release
exec target/release/portcullis run -c "${PORTCULLIS_CONFIG:-config/portcullis.yaml}" "$@"
