#!/usr/bin/env bash
# Set up lookalike on a fresh machine and run the main job: index a folder, then serve search.
#   scripts/run.sh FOLDER [serve options...]     e.g. scripts/run.sh ~/Pictures --bind 0.0.0.0:7878
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: scripts/run.sh FOLDER [serve options...]" >&2; exit 2; }
folder="$1"; shift
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked
./target/release/lookalike index "$folder"
exec ./target/release/lookalike serve --root "$folder" "$@"
