#!/usr/bin/env bash
# The long mixed load of issue 18: `lookalike serve` with a write token under CLIENTS clients
# for MINUTES minutes, each searching (by photo, a tenth of those with verify=10, and by
# words), asking for similar items, reading items, thumbnails and originals, loading the page,
# uploading and deleting (examples/soak.rs, the driver tests/soak.rs runs for 30 s).
#
# Collection: N_PHOTOS real photos (default: every distinct one cached, ~520: the test data's
# photos and, when scripts/bench/words-data.sh has fetched them, the word benchmark's), as
# hard links in SOAK_DIR/corpus-N (a larger N repeats them under other names), indexed once
# into SOAK_DIR/db-N. Each run serves a fresh copy of that index, so runs start alike.
# Queries and uploads: the test data's 178 photos (from a few KB up to 16 MB, the wallpapers).
#
# Prints the driver's report: per route its requests, p50/p99/max latency, 404s, 5xx and
# transport errors (verified searches on their own row); the collection at the end against
# the driver's account of its uploads and deletes; the server's RSS every RSS_EVERY seconds
# (after the warm-up, its max, at the end). Exits non-zero when the run failed (any 5xx or
# transport error, an answer inconsistent with the account, memory over its bounds) or the
# server logged a panic.
#
# env: MINUTES (30), CLIENTS (8), N_PHOTOS, PORT (7891), SEED (18), RSS_EVERY (10),
#      SOAK_DIR (default .cache/soak), SERVE_ARGS (extra `serve` options), DRIVER_ARGS (extra
#      driver options: --max-peak-growth MIB, --max-end-growth MIB, --warmup SECONDS, ...),
#      LOOKALIKE_BIN (default target/release/lookalike), LOOKALIKE_TESTDATA,
#      SOAK_SKIP_BUILD=1: use the server binary as it is and build only the driver, in the
#      dev profile (whose artifacts the test build shares), so nothing compiles in release.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${LOOKALIKE_BIN:-$TARGET/release/lookalike}"
TESTDATA="${LOOKALIKE_TESTDATA:-$ROOT/.cache/testdata}"
export LOOKALIKE_MODEL_DIR="${LOOKALIKE_MODEL_DIR:-$ROOT/.cache/models}"
MINUTES="${MINUTES:-30}"
CLIENTS="${CLIENTS:-8}"
PORT="${PORT:-7891}"
WORK="${SOAK_DIR:-$ROOT/.cache/soak}"

log() { echo "soak: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=lib/serve.sh
source "$ROOT/scripts/lib/serve.sh"

[[ -d "$TESTDATA/photos" ]] || die "test data missing: run scripts/fetch-test-data.sh"

# 1. The server and the driver.
if [[ "${SOAK_SKIP_BUILD:-}" == 1 ]]; then
    cargo build --quiet --locked --example soak
    DRIVER="$TARGET/debug/examples/soak"
else
    cargo build --release --quiet --locked --bin lookalike --example soak
    DRIVER="$TARGET/release/examples/soak"
fi
[[ -x "$BIN" ]] || die "no server binary at $BIN: cargo build --release, or set LOOKALIKE_BIN"

# 2. The collection: hard links to the cached photos, in a stable order.
sources=("$TESTDATA/photos")
[[ -d "$ROOT/.cache/bench/words/photos" ]] && sources+=("$ROOT/.cache/bench/words/photos")
mapfile -t photos < <(find "${sources[@]}" -type f \
    \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' -o -iname '*.webp' \) | sort)
N_PHOTOS="${N_PHOTOS:-${#photos[@]}}"
CORPUS="$WORK/corpus-$N_PHOTOS"
DB="$WORK/db-$N_PHOTOS"
if [[ "$(find "$CORPUS" -type f 2>/dev/null | wc -l)" -ne "$N_PHOTOS" ]]; then
    log "linking $N_PHOTOS photos into $CORPUS"
    rm -rf "$CORPUS" "$DB"
    mkdir -p "$CORPUS"
    for ((i = 0; i < N_PHOTOS; i++)); do
        src="${photos[i % ${#photos[@]}]}"
        dst="$CORPUS/$(printf '%05d' "$i")_$(basename "$src")"
        ln "$src" "$dst" 2>/dev/null || cp "$src" "$dst"
    done
fi
# Incremental: a re-run only checks stamps.
log "indexing $CORPUS into $DB"
start=$(date +%s)
"$BIN" --db "$DB" --quiet index "$CORPUS"
log "indexed in $(($(date +%s) - start)) s"

# 3. The server, over a copy of the index (uploads and deletes change it).
RUN="$WORK/run"
rm -rf "$RUN"
mkdir -p "$RUN"
cp -r "$DB" "$RUN/db"
LOOKALIKE_TOKEN="soak-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
export LOOKALIKE_TOKEN
SERVER_LOG="$RUN/serve.log"
start_server "$RUN/db" "$SERVER_LOG"

# 4. The load.
status=0
# shellcheck disable=SC2086 # DRIVER_ARGS is a list of options
"$DRIVER" --url "$URL" --pid "$SERVER" --clients "$CLIENTS" --minutes "$MINUTES" \
    --rss-every "${RSS_EVERY:-10}" --seed "${SEED:-18}" --photos "$TESTDATA/photos" \
    ${DRIVER_ARGS:-} | tee "$RUN/report.txt" || status=$?

kill -TERM "$SERVER"
wait "$SERVER" || true
trap - EXIT
panics=$(grep -c 'panicked' "$SERVER_LOG" || true)
cat <<REPORT
server          $N_PHOTOS photos indexed, $BIN, log $SERVER_LOG: $panics panics
machine         $(nproc) cores, $(uname -m)
REPORT
if [[ "$panics" -ne 0 ]]; then
    grep -m5 -A2 'panicked' "$SERVER_LOG" >&2
    status=1
fi
exit "$status"
