#!/usr/bin/env bash
# Search by upload per format (issue 17): the same 40 photos as JPEG, PNG, WebP, HEIC and AVIF
# (made with Pillow and pillow-heif from the word benchmark's photos, resized to fit 680 x 470),
# each posted to a running `lookalike serve` (k=12) over loopback; prints curl's median total
# time per format. Then the two decodable DNG fixtures (384 x 256 previews), as they are.
#
#   scripts/bench/upload_formats.sh [WORK_DIR]    (default target/bench-upload)
# The library is the word benchmark's (scripts/bench/words.sh builds it first).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${1:-$ROOT/target/bench-upload}"
mkdir -p "$WORK" && WORK="$(cd "$WORK" && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/lookalike"
PY="$ROOT/.cache/bench-venv/bin/python"
export LOOKALIKE_MODEL_DIR="${LOOKALIKE_MODEL_DIR:-$ROOT/.cache/models}"
DATA="${LOOKALIKE_BENCH_DATA:-$ROOT/.cache/bench}/words"
PORT="${PORT:-7893}"
[[ -x "$PY" ]] || { echo "no bench venv: run scripts/bench.sh decode once" >&2; exit 1; }
[[ -d "$ROOT/target/bench-words/db-all" ]] || bash "$ROOT/scripts/bench/words.sh" >/dev/null

rm -rf "$WORK/queries" && mkdir -p "$WORK/queries"
"$PY" - "$DATA/photos" "$WORK/queries" <<'PYEOF'
import sys, os
import pillow_heif
from PIL import Image
pillow_heif.register_heif_opener()
src, out = sys.argv[1], sys.argv[2]
names = sorted(n for n in os.listdir(src) if n.endswith(".jpg"))[:40]
for i, name in enumerate(names):
    im = Image.open(os.path.join(src, name)).convert("RGB")
    im.thumbnail((680, 470))
    im.save(f"{out}/{i:02d}.jpg", quality=90)
    im.save(f"{out}/{i:02d}.png")
    im.save(f"{out}/{i:02d}.webp", quality=90)
    im.save(f"{out}/{i:02d}.heic", quality=90)
    im.save(f"{out}/{i:02d}.avif", quality=90)
PYEOF
cp "$ROOT"/tests/fixtures/raw_{subifd_preview,jpgfromraw_orient6}.dng "$WORK/queries/"

"$BIN" --quiet --db "$ROOT/target/bench-words/db-all" serve --bind "127.0.0.1:$PORT" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
for ext in jpg png webp heic avif raw; do
    files=("$WORK"/queries/*."$ext")
    # Two DNGs, each posted 20 times a round.
    [[ $ext == raw ]] && mapfile -t files < <(for _ in $(seq 20); do ls "$WORK"/queries/raw_*.dng; done)
    times=()
    for round in 1 2; do
        for f in "${files[@]}"; do
            t=$(curl -s -o /dev/null -w '%{time_total}' -F "image=@$f" \
                "http://127.0.0.1:$PORT/api/search?k=12")
            [[ $round == 2 ]] && times+=("$t")
        done
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v ext="$ext" '{a[NR]=$1} END {
        printf "{\"bench\": \"upload\", \"format\": \"%s\", \"queries\": %d, \"median_ms\": %.1f, \"p90_ms\": %.1f}\n",
            ext, NR, 1000*a[int((NR+1)/2)], 1000*a[int(NR*0.9)]}'
done
