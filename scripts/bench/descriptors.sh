#!/usr/bin/env bash
# The descriptor benchmark of BENCHMARKS.md: each descriptor option alone and the default,
# against the classic pipeline's plain average pooling, on three real-data benchmarks:
#   copydetect  the copy-detection protocol of shared/data.md on the distinct real photos
#   fashion     Fashion-MNIST test split, N per class (default 300) as a labelled set
#   instance    the same-scene pairs of opencv-doc / scikit-image, every other cached photo
#               indexed as a distractor
#   crops       details of 2 to 30% of each cached photo's area must find the photo, with the
#               Fashion-MNIST set as distractors (not run unless named in BENCHMARKS)
# Prints one markdown table per benchmark (mAP, recall@1, search bytes per image, median
# top-10 search latency). Release build; test data from scripts/fetch-test-data.sh.
#
#   scripts/bench/descriptors.sh [WORK_DIR] [N]
# BENCHMARKS="fashion instance" picks benchmarks; ONLY="GLOB" picks configs by name.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DATA="${LOOKALIKE_TESTDATA:-$ROOT/.cache/testdata}"
PHOTOS="$DATA/photos"
WORK="${1:-$ROOT/target/bench-descriptors}"
N="${2:-300}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/lookalike"
export LOOKALIKE_MODEL_DIR="${LOOKALIKE_MODEL_DIR:-$ROOT/.cache/models}"
[[ -d "$PHOTOS" ]] || { echo "no test data in $DATA: run scripts/fetch-test-data.sh" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --locked --quiet)

# The datasets, laid out once.
mkdir -p "$WORK"
if [[ ! -d "$WORK/fashion" ]]; then
    "$ROOT/scripts/bench/fashion_mnist.sh" "$WORK/fashion" "$N" >/dev/null
fi
if [[ ! -d "$WORK/pairs" ]]; then
    "$ROOT/scripts/bench/fashion_mnist.sh" --pairs "$WORK/pairs" >/dev/null
    mkdir -p "$WORK/pair-distractors"
    # Every other photo: the pair members themselves (and other renditions of them) excluded.
    for f in "$PHOTOS"/*/*; do
        name="$(basename "$f")"
        if ! find "$WORK/pairs" -name "$name" | grep -q .; then
            cp "$f" "$WORK/pair-distractors/"
        fi
    done
fi
if [[ ! -d "$WORK/originals" ]]; then
    # As in tests/eval.rs: one rendition of each wallpaper, one photo of each opencv-doc scene.
    mkdir -p "$WORK/originals"
    for f in "$PHOTOS"/wallpapers/*; do
        case "$f" in
        *Elephants_3840x2160* | *Elephants_5640x3172* | *Flow_contents_images_720x1440* | \
            *Flow_contents_images_dark* | *Honeywave_contents_images_1080x1920* | \
            *SafeLanding_contents_images_1622x2880* | *Shell_contents_images_720x1440*) ;;
        *) cp "$f" "$WORK/originals/" ;;
        esac
    done
    for name in Blender_Suzanne1.jpg HappyFish.jpg aero1.jpg aloeL.jpg apple.jpg baboon.jpg \
        basketball1.png board.jpg box.png building.jpg butterfly.jpg cards.png chicky_512.png \
        ela_original.jpg fruits.jpg graf1.png home.jpg imageTextN.png left.jpg leuvenA.jpg \
        licenseplate_motion.jpg messi5.jpg orange.jpg rubberwhale1.png smarties.png \
        squirrel_cls.jpg starry_night.jpg stuff.jpg sudoku.png text_defocus.jpg; do
        cp "$PHOTOS/opencv/$name" "$WORK/originals/"
    done
    cp "$PHOTOS"/sklearn/*.jpg "$WORK/originals/"
fi

# name | pooling scales whiten query-expansion [verify-depth [regions]] ("-": the default;
# "default" gives no flags at all)
CONFIGS=(
    "baseline (classic pipeline)|average 1 off off"
    "GeM p=3|gem 1 off off"
    "max pooling|max 1 off off"
    "R-MAC|rmac 1 off off"
    "R-GeM p=3|rgem 1 off off"
    "scales 1 + 0.71|average 1,0.71 off off"
    "scales 1 + 1.41|average 1,1.41 off off"
    "PCA 512 (power 0)|average 1 512:0 off"
    "PCA-whitening 512 (power 0.25)|average 1 512:0.25 off"
    "PCA-whitening 512 (power 0.5, full)|average 1 512:0.5 off"
    "alpha-QE 10:3|average 1 off 10:3"
    "alpha-QE 10:10|average 1 off 10:10"
    "scales 1, 1.41 + PCA 512|average 1,1.41 512:0 off"
    "GeM + scales 1, 1.41 + PCA 512|gem 1,1.41 512:0 off"
    "R-MAC + PCA 512|rmac 1 512:0 off"
    "R-GeM + PCA 512|rgem 1 512:0 off"
    "spatial verification of the top 10|average 1 off off 10"
    "default|"
    "default without regions|- - - - - off"
    "default + spatial verification of the top 10|- - - - 10"
)
flags() { # pooling scales whiten query-expansion [verify-depth [regions]]
    local names=(--pooling --scales --whiten --query-expansion --verify --regions) out=() i=0
    for value in "$@"; do
        [[ "$value" == - ]] || out+=("${names[i]}" "$value")
        i=$((i + 1))
    done
    echo "${out[@]}"
}
run() { # benchmark flags...
    local bench="$1"
    shift
    case "$bench" in
    copydetect) "$BIN" -q eval copydetect "$WORK/originals" --distractors "$PHOTOS/skimage" --json "$@" ;;
    fashion) "$BIN" -q eval labelled "$WORK/fashion" --json "$@" ;;
    instance) "$BIN" -q eval labelled "$WORK/pairs" --distractors "$WORK/pair-distractors" --json "$@" ;;
    crops)
        "$BIN" -q eval crops "$PHOTOS"/wallpapers "$PHOTOS"/opencv "$PHOTOS"/skimage \
            "$PHOTOS"/sklearn --distractors "$WORK/fashion" --work-dir "$WORK/crops" --json "$@"
        ;;
    esac
}
for bench in ${BENCHMARKS:-copydetect fashion instance}; do
    echo
    echo "### $bench"
    echo
    echo "| descriptor | mAP | recall@1 | recall@10 | search bytes/image | search ms (median) |"
    echo "|---|---|---|---|---|---|"
    for config in "${CONFIGS[@]}"; do
        name="${config%%|*}"
        [[ -z "${ONLY:-}" || "$name" == $ONLY ]] || continue
        # shellcheck disable=SC2086 # the flags are words
        run "$bench" $(flags ${config#*|}) | python3 -c '
import json, sys
name = sys.argv[1]
r = json.load(sys.stdin)
o = r["overall"]
print("| %s | %.4f | %.4f | %.4f | %.0f | %.3f |" % (name, o["map"], o["recall_at_1"],
      o["recall_at_10"], r["search_bytes_per_item"], r["search_ms_median"]))
for group in r.get("groups", []) if r["protocol"] == "crops" else []:
    print("|   %s | | %.4f | %.4f | | |" % (group["name"], group["recall_at_1"],
          group["recall_at_10"]))
print(name, r["descriptor"], "index s %.1f, embed s %.1f, bytes/item %d" % (r["index_seconds"],
      r["embed_seconds"], r["bytes_per_item"]), file=sys.stderr)' "$name"
    done
done
