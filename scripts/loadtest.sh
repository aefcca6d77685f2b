#!/usr/bin/env bash
# Load test of `lookalike serve`: search by upload under concurrent clients.
#
# Collection: N_IMAGES (default 10,000) real Fashion-MNIST product photos (28x28 grey, from
# the Debian dataset-fashion-mnist package that scripts/fetch-test-data.sh caches), written
# out as PNG files once and indexed with `lookalike index`. Every image costs the model the
# same whatever its size (all are resized to the network input), so this measures a 10k-image
# collection honestly; the query is a real 640x480 colour JPEG (opencv's aero1.jpg), so each
# request pays a real JPEG decode + inference + HNSW search.
#
# Load: wrk, CLIENTS connections (default 8) for DURATION (default 60s), each POSTing the JPEG
# to /api/search?k=24 as fast as answers come. Prints requests/s, p50/p90/p99 latency, errors
# and the server's RSS at start and end.
#
# env: LOOKALIKE_BIN (default target/release/lookalike), LOOKALIKE_TESTDATA, N_IMAGES,
#      CLIENTS, DURATION, PORT (default 7890), LOADTEST_DIR (default .cache/loadtest; kept, so
#      a re-run skips writing and indexing), SERVE_ARGS (extra `serve` options).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${LOOKALIKE_BIN:-$ROOT/target/release/lookalike}"
TESTDATA="${LOOKALIKE_TESTDATA:-$ROOT/.cache/testdata}"
N_IMAGES="${N_IMAGES:-10000}"
CLIENTS="${CLIENTS:-8}"
DURATION="${DURATION:-60s}"
PORT="${PORT:-7890}"
WORK="${LOADTEST_DIR:-$ROOT/.cache/loadtest}"
QUERY="$TESTDATA/photos/opencv/aero1.jpg"
FMNIST="$TESTDATA/fashion-mnist/train-images-idx3-ubyte.gz"

log() { echo "loadtest: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=lib/serve.sh
source "$ROOT/scripts/lib/serve.sh"

[[ -x "$BIN" ]] || die "no binary at $BIN: cargo build --release, or set LOOKALIKE_BIN"
[[ -f "$FMNIST" && -f "$QUERY" ]] || die "test data missing: run scripts/fetch-test-data.sh"
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
command -v python3 >/dev/null || die "python3 is needed to write the Fashion-MNIST PNGs"
(( N_IMAGES % 10 == 0 )) || die "N_IMAGES must be a multiple of 10 (the same number per class)"

IMAGES="$WORK/fashion-mnist-$N_IMAGES"
DB="$WORK/db-$N_IMAGES"
mkdir -p "$WORK"

# 1. The collection: N_IMAGES PNGs, N_IMAGES/10 of each class of the train split.
if [[ "$(find "$IMAGES" -name '*.png' 2>/dev/null | wc -l)" -ne "$N_IMAGES" ]]; then
    log "writing $N_IMAGES Fashion-MNIST images as PNG to $IMAGES"
    rm -rf "$IMAGES"
    "$ROOT/scripts/bench/fashion_mnist.sh" "$IMAGES" "$(( N_IMAGES / 10 ))" train >&2
fi

# 2. The index (incremental: a re-run only checks stamps).
log "indexing $IMAGES into $DB"
start=$(date +%s)
"$BIN" --db "$DB" --quiet index "$IMAGES"
log "indexed in $(( $(date +%s) - start )) s"

# 3. The server.
SERVER_LOG="$WORK/serve.log"
start_server "$DB" "$SERVER_LOG"
items=$(curl -fs "$URL/api/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"])')
[[ "$items" -ge "$N_IMAGES" ]] || die "the index holds $items items, expected $N_IMAGES"

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER/status"; }
# One search to check the route works (and to fault in the model) before measuring.
curl -fs -X POST -H 'Content-Type: image/jpeg' --data-binary "@$QUERY" "$URL/api/search?k=24" >/dev/null \
    || die "a single search failed: $(tail -5 "$SERVER_LOG")"
RSS_START=$(rss_kb)

# 4. The load.
log "wrk: $CLIENTS connections for $DURATION against $URL/api/search?k=24 ($items items)"
RESULT=$(wrk -t "$(( CLIENTS < 2 ? CLIENTS : 2 ))" -c "$CLIENTS" -d "$DURATION" --timeout 30s -s "$ROOT/scripts/loadtest.lua" \
    "$URL/api/search?k=24" -- "$QUERY" | tee "$WORK/wrk.txt" | grep '^RESULT')
RSS_END=$(rss_kb)
curl -fs "$URL/metrics" | grep -E '^lookalike_(inference_rejected_total|index_items) ' || true

kill -TERM "$SERVER"
wait "$SERVER" || true
trap - EXIT

field() { sed -E "s/.*[ ]$1=([^ ]+).*/\1/" <<<"$RESULT"; }
errors=$(( $(field errors_status) + $(field errors_connect) + $(field errors_read) + $(field errors_write) + $(field errors_timeout) ))
cat <<REPORT
lookalike load test
  collection      $items Fashion-MNIST images (PNG), query: 640x480 JPEG (aero1.jpg), k=24
  clients         $CLIENTS concurrent connections for $DURATION (wrk)
  requests        $(field requests) in $(field seconds) s = $(field rps) requests/s
  latency         p50 $(field p50_ms) ms, p90 $(field p90_ms) ms, p99 $(field p99_ms) ms, max $(field max_ms) ms
  errors          $errors (non-2xx $(field errors_status), timeouts $(field errors_timeout), socket $(( $(field errors_connect) + $(field errors_read) + $(field errors_write) )))
  server RSS      $(( RSS_START / 1024 )) MiB at start, $(( RSS_END / 1024 )) MiB at end
  machine         $(nproc) cores, $(uname -m)
REPORT
