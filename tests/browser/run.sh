#!/usr/bin/env bash
# Browser test of lookalike's search page: installs the Node dependency (playwright-core, which
# never downloads a browser: the system's Chromium is used), indexes real photos with the
# binary, starts `lookalike serve` and runs search.test.mjs against it.
# A video (videos/bikes.mp4) is indexed too, and a frame of it (grabbed with ffmpeg) is the
# query of the video step. For the duplicates step, a half-size astronaut.png and an identical
# pair of a wallpaper (both copies made here, so the step's move only touches them) are indexed
# as well; the server runs with a write token, which the step enters on the page.
# The words step searches "dog": opencv's chicky_512.png (indexed with its folder), a Pekinese,
# comes first. The filter step narrows searches to the skimage folder, by its path as indexed
# (canonical: the indexer resolves links).
#
# env: LOOKALIKE_BIN (default target/release/lookalike), LOOKALIKE_TESTDATA, CHROMIUM
#      (default /usr/bin/chromium), SCREENSHOT (e.g. docs/screenshot.png), PORT (default 7891).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${LOOKALIKE_BIN:-$ROOT/target/release/lookalike}"
TESTDATA="${LOOKALIKE_TESTDATA:-$ROOT/.cache/testdata}"
PORT="${PORT:-7891}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

die() { echo "browser test: $*" >&2; exit 1; }
[[ -x "$BIN" ]] || die "no binary at $BIN: cargo build --release, or set LOOKALIKE_BIN"
[[ -f "$TESTDATA/photos/skimage/chelsea.png" ]] || die "test photos missing: run scripts/fetch-test-data.sh"
[[ -x "$CHROMIUM" ]] || die "no Chromium at $CHROMIUM (apt-get install chromium)"
command -v node >/dev/null || die "Node.js 20+ is needed"
command -v ffmpeg >/dev/null || die "ffmpeg is needed (scripts/setup.sh)"
VIDEO="$TESTDATA/videos/bikes.mp4"
[[ -f "$VIDEO" ]] || die "test video missing: run scripts/fetch-test-data.sh"
WORDS_PHOTO="$TESTDATA/photos/opencv/chicky_512.png"
[[ -f "$WORDS_PHOTO" ]] || die "test photo missing: run scripts/fetch-test-data.sh"
FILTER_FOLDER="$(cd "$TESTDATA/photos/skimage" && pwd -P)"

(cd "$HERE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)

WORK="$(mktemp -d)"
SERVER=""
cleanup() {
    [[ -n "$SERVER" ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

WALLPAPER="$TESTDATA/photos/wallpapers/lomiri-wallpapers-16.04_usr_share_backgrounds_Wine_by_Jakkub_Mede.jpg"
[[ -f "$WALLPAPER" ]] || die "test wallpaper missing: run scripts/fetch-test-data.sh"
mkdir -p "$WORK/dups/old" "$WORK/dups/new"
ffmpeg -v error -i "$TESTDATA/photos/skimage/astronaut.png" -vf "scale=iw/2:-1" "$WORK/dups/astronaut-small.jpg"
cp "$WALLPAPER" "$WORK/dups/old/wine.jpg"
cp "$WALLPAPER" "$WORK/dups/new/wine.jpg"
touch -d "2020-01-01" "$WORK/dups/old/wine.jpg"   # the older one is the keeper the server picks
"$BIN" --db "$WORK/db" --quiet index "$TESTDATA/photos/skimage" "$TESTDATA/photos/opencv" \
    "$TESTDATA/photos/sklearn" "$VIDEO" "$WORK/dups"
ffmpeg -v error -ss 6 -i "$VIDEO" -frames:v 1 "$WORK/video-frame.png"
# A detail of 16% of china.jpg's area, away from its centre, as a JPEG.
ffmpeg -v error -i "$TESTDATA/photos/sklearn/china.jpg" \
    -vf "crop=iw*0.4:ih*0.4:iw*0.08:ih*0.52" -q:v 4 "$WORK/detail.jpg"
TOKEN="browser-test-$RANDOM$RANDOM"
LOOKALIKE_TOKEN="$TOKEN" "$BIN" --db "$WORK/db" serve --bind "127.0.0.1:$PORT" >"$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    kill -0 "$SERVER" 2>/dev/null || die "the server exited: $(tail -5 "$WORK/serve.log")"
    sleep 0.1
done

# The first listing of duplicates compares every indexed image with its neighbours: some
# seconds with a release binary, minutes with a debug one. It runs here, before the page asks
# (whose listing then only scans what is new), so that the page's steps keep short timeouts.
curl -fsS --max-time 1200 -o /dev/null "http://127.0.0.1:$PORT/api/duplicates" \
    || die "the first duplicates scan failed: $(tail -5 "$WORK/serve.log")"

if [[ -n "${SCREENSHOT:-}" ]]; then
    mkdir -p "$(dirname "$SCREENSHOT")"
    SCREENSHOT="$(cd "$(dirname "$SCREENSHOT")" && pwd)/$(basename "$SCREENSHOT")"
    export SCREENSHOT
fi
BASE_URL="http://127.0.0.1:$PORT" QUERY_IMAGE="$TESTDATA/photos/skimage/chelsea.png" \
    QUERY_VIDEO_FRAME="$WORK/video-frame.png" VIDEO_NAME="$(basename "$VIDEO")" \
    OBJECT_SCENE="$TESTDATA/photos/opencv/box_in_scene.png" OBJECT_NAME=box.png \
    DETAIL_IMAGE="$WORK/detail.jpg" DETAIL_NAME=china.jpg \
    TOKEN="$TOKEN" NEAR_DUPLICATE=astronaut-small.jpg \
    IDENTICAL_KEPT="$WORK/dups/new/wine.jpg" IDENTICAL_MOVED="$WORK/dups/old/wine.jpg" \
    DB="$WORK/db" \
    WORDS_NAME="$(basename "$WORDS_PHOTO")" WORDS_LABEL=Pekinese \
    FILTER_FOLDER="$FILTER_FOLDER" FILTER_QUERY="$WORDS_PHOTO" \
    node "$HERE/search.test.mjs" || die "failed; server log: $(tail -20 "$WORK/serve.log")"
