#!/usr/bin/env bash
# Runs the whole test suite: unit tests, integration tests against the real
# binary and a real upstream on loopback, the fuzz-corpus replay, and the
# default config check. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build
# Hosts without Hyperscan build the pure-Rust matcher alone: it must keep
# compiling, tests included (the default build never sees those cfg paths).
cargo check --all-targets --no-default-features
"${CARGO_TARGET_DIR:-target}/debug/portcullis" check -c config/portcullis.yaml
# (thread count via the environment: criterion benches, run once as tests
# here, do not take libtest flags)
RUST_TEST_THREADS="${TEST_THREADS:-4}" cargo test --all-targets
