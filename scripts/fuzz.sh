#!/usr/bin/env bash
# The long fuzzing run (issue 18). The short run is part of `cargo test` (tests/fuzz.rs, 2,000
# decoder inputs); this builds the same harness with --release and runs it longer:
#
#   scripts/fuzz.sh [INPUTS [UPLOADS [VIDEOS]]]
#
# INPUTS mutated or hostile files go to decode_bytes (min_side 0 and 224) and
# PhotoFacts::of_bytes (default 50,000), UPLOADS to a real server (default INPUTS/25), VIDEOS
# through ffmpeg (default INPUTS/250). Prints the figures as JSON lines: the run, then one line
# per target (inputs, panics, failures, outcomes by kind, time median/max with the slowest
# input's recipe, peak Rust heap and RSS growth per input median/max, each bomb's figures).
# The whole log, failing inputs and each target's slowest input go to the findings folder
# ($LOOKALIKE_FUZZ_FINDINGS, default target/fuzz-findings); exits non-zero when an input
# failed (a panic, a 5xx, memory over its bound, a video over its time bound).
#
# Replay: LOOKALIKE_FUZZ_SEED=S LOOKALIKE_FUZZ_ONLY=decode:1234 (or upload:N, video:N), or
# LOOKALIKE_FUZZ_FILE=path/to/input; either with `cargo test --test fuzz -- --nocapture`.
set -euo pipefail
cd "$(dirname "$0")/.."

inputs="${1:-50000}"
export LOOKALIKE_FUZZ_INPUTS="$inputs"
export LOOKALIKE_FUZZ_UPLOADS="${2:-$((inputs / 25))}"
export LOOKALIKE_FUZZ_VIDEOS="${3:-$((inputs / 250))}"
export LOOKALIKE_FUZZ_SEED="${LOOKALIKE_FUZZ_SEED:-18}"
export LOOKALIKE_TESTDATA="${LOOKALIKE_TESTDATA:-$PWD/.cache/testdata}"
export LOOKALIKE_MODEL_DIR="${LOOKALIKE_MODEL_DIR:-$PWD/.cache/models}"
findings="${LOOKALIKE_FUZZ_FINDINGS:-${CARGO_TARGET_DIR:-$PWD/target}/fuzz-findings}"
export LOOKALIKE_FUZZ_FINDINGS="$findings"
mkdir -p "$findings"

scripts/fetch-test-data.sh >/dev/null
cargo test --release --locked --test fuzz --no-run
status=0
cargo test --release --locked --test fuzz -- --nocapture >"$findings/fuzz.log" 2>&1 || status=$?
grep '^{' "$findings/fuzz.log" || true
if [[ $status -ne 0 ]]; then
    echo "fuzz: failures (log: $findings/fuzz.log):" >&2
    grep -A1 '^FUZZ FAILURE' "$findings/fuzz.log" | head -40 >&2 || tail -20 "$findings/fuzz.log" >&2
fi
exit "$status"
