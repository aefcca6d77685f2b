#!/usr/bin/env bash
# Run every check CI runs: format, lints, the test suite on real photos with the real model,
# and the browser test. Installs what is missing first (see setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
export LOOKALIKE_TESTDATA="${LOOKALIKE_TESTDATA:-$PWD/.cache/testdata}"
export LOOKALIKE_MODEL_DIR="${LOOKALIKE_MODEL_DIR:-$PWD/.cache/models}"
scripts/fetch-test-data.sh >/dev/null

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# Fetch the models once, before tests run in parallel.
cargo run --quiet --locked -- model fetch --model lite0 >/dev/null
cargo run --quiet --locked -- model fetch --model lite2 >/dev/null
# The page in a real browser (headless Chromium), then the Rust test suite (last, so its
# summary closes the output).
cargo build --locked
LOOKALIKE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/lookalike" tests/browser/run.sh
cargo test --locked
