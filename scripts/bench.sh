#!/usr/bin/env bash
# Side-by-side benchmarks of lookalike and the classic Python pipeline
# (shared/bench/classic_pipeline.py: Pillow + onnxruntime + numpy) on the same machine, in the
# same run, alternating the two so background noise hits both alike. Prints JSON lines; the
# tables in BENCHMARKS.md are made from them.
#
#   scripts/bench.sh embed       network throughput, Lite0 and Lite2, same ONNX file
#   scripts/bench.sh decode      decode + preprocess, large camera JPEGs and small photos
#   scripts/bench.sh index [N]   end-to-end `index` of N real photos (default 3000) + vector agreement
#                                (CORPUS_DIR=DIR: the photos of DIR instead, e.g. one format's)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DATA="${LOOKALIKE_TESTDATA:-$ROOT/.cache/testdata}"
export LOOKALIKE_MODEL_DIR="${LOOKALIKE_MODEL_DIR:-$ROOT/.cache/models}"
CLASSIC="${CLASSIC_PIPELINE:-$ROOT/../shared/bench/classic_pipeline.py}"
ROUNDS="${ROUNDS:-5}"
VENV="$ROOT/.cache/bench-venv"

scripts/fetch-test-data.sh >/dev/null
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q numpy pillow onnxruntime==1.32.0
fi
# pillow-heif lets the classic pipeline's Pillow open HEIC (scripts/bench/formats.sh).
"$VENV/bin/python" -c 'import pillow_heif' 2>/dev/null || "$VENV/bin/pip" install -q pillow-heif==1.8.1
PY="$VENV/bin/python"
cargo build --release --locked --quiet
BIN="$ROOT/target/release/lookalike"
CLASSIC_DESCRIPTOR="--pooling average --scales 1 --whiten off --query-expansion off"
onnx_of() { "$BIN" model info --model "$1" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["onnx"])'; }
rust_bench() { cargo bench --quiet --locked --bench throughput -- "$@" 2>/dev/null; }
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

case "${1:-}" in
embed)
    for model in lite0 lite2; do
        "$BIN" model fetch --model "$model" >/dev/null
        onnx="$(onnx_of "$model")"
        for _ in 1 2 3; do
            rust_bench embed "$model" "$ROUNDS"
            "$PY" scripts/bench/peer.py embed "$onnx" "$ROUNDS"
        done
    done
    ;;
decode)
    small="$(mktemp -d)"
    # Small photos: the opencv-doc and scikit-image samples (~256 to 1000 px).
    cp "$DATA"/photos/opencv/*.jpg "$DATA"/photos/skimage/*.png "$small/"
    for dir in "$DATA/photos/wallpapers" "$small"; do
        for _ in 1 2 3; do
            rust_bench decode "$dir" "$ROUNDS"
            CLASSIC_DIR="$(dirname "$CLASSIC")" "$PY" scripts/bench/peer.py decode "$dir" "$ROUNDS"
        done
    done
    rm -rf "$small"
    ;;
index)
    n="${2:-3000}"
    if [[ -n "${CORPUS_DIR:-}" ]]; then
        corpus="$(mktemp -d)"
        cp -rl "$CORPUS_DIR"/. "$corpus"/ 2>/dev/null || cp -r "$CORPUS_DIR"/. "$corpus"/
        n=$(find "$corpus" -type f | wc -l)
    else
        corpus="$(mktemp -d)"
        scripts/bench/corpus.sh "$corpus" "$n"
    fi
    onnx="$(onnx_of lite0)"
    for round in 1 2 3; do
        rm -rf "$corpus.db" "$corpus.classic"
        start=$(date +%s.%N)
        # The classic pipeline's descriptor (average pooling, one scale): the same work, and
        # vectors that must agree with its vectors.
        # shellcheck disable=SC2086 # the flags are words
        "$BIN" --quiet index --db "$corpus.db" $CLASSIC_DESCRIPTOR "$corpus" >/dev/null
        mid=$(date +%s.%N)
        CLASSIC_ONNX="$onnx" "$PY" "$CLASSIC" index --db "$corpus.classic" "$corpus" >/dev/null 2>&1
        end=$(date +%s.%N)
        "$PY" -c "import json; n=$n; a=$mid-$start; b=$end-$mid; print(json.dumps({'bench':'index','round':$round,'files':n,'lookalike_images_per_second':round(n/a,1),'classic_images_per_second':round(n/b,1),'ratio':round(b/a,2)}))"
    done
    "$BIN" --quiet export --db "$corpus.db" --out "$corpus.export"
    "$PY" scripts/bench/agreement.py "$corpus.export" "$corpus.classic"
    rm -rf "$corpus" "$corpus.db" "$corpus.classic" "$corpus.export"
    ;;
*)
    sed -n '2,10p' "$0"; exit 2 ;;
esac
