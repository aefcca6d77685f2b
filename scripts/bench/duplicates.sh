#!/usr/bin/env bash
# The near-duplicate benchmark (issue 15): `lookalike duplicates` side by side with imagededup's
# PHash and CNN modes at their defaults, on one set built from the real photos of shared/data.md:
#   true duplicates  the 9 copy-detection transforms of each original, made by
#                    `lookalike eval copydetect` (copies/<original>__<transform>.jpg), and the
#                    wallpapers shipped at other sizes (renditions/resized: same aspect,
#                    renditions/other-aspect: a portrait version, cropped or recomposed)
#   hard negatives   the same-scene pairs of fashion_mnist.sh --pairs (two views, two frames, an
#                    edit: every photo its own group, but see SAME_PHOTO) and bursts: 4 frames
#                    1 s apart from each test video (bursts/<video>/), each frame its own group
# WORK_DIR/set/truth.tsv says which group each image is in (path, group = the original's name).
# Prints one markdown row per tool (duplicates_score.py): pair precision and recall, group
# purity, recall per kind of duplicate, hard negatives wrongly grouped, wall seconds.
#
#   scripts/bench/duplicates.sh [WORK_DIR]
# imagededup runs in a throwaway venv, WORK_DIR/peer-venv, made on the first run. By default it
# holds only what the hash modes need (imagededup itself without its torch dependency, 0.3 GB):
# PEER_TORCH=1 adds torch and torchvision (3.1 GB of wheels, 5.7 GB installed) so that the CNN
# mode is tried too. Without its pretrained weights in torch's hub cache it reports why not.
# DUPLICATES_FLAGS: extra flags for `lookalike duplicates`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DATA="${LOOKALIKE_TESTDATA:-$ROOT/.cache/testdata}"
PHOTOS="$DATA/photos"
WORK="${1:-$ROOT/target/bench-duplicates}"
mkdir -p "$WORK" && WORK="$(cd "$WORK" && pwd)"
SET="$WORK/set"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/lookalike"
BENCH="$ROOT/scripts/bench"
export LOOKALIKE_MODEL_DIR="${LOOKALIKE_MODEL_DIR:-$ROOT/.cache/models}"
[[ -d "$PHOTOS" ]] || { echo "no test data in $DATA: run scripts/fetch-test-data.sh" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --locked --quiet)

# wallpaper NAME: the one wallpaper file whose name ends in _NAME.jpg.
wallpaper() {
    local found=("$PHOTOS"/wallpapers/*_"$1".jpg)
    [[ ${#found[@]} == 1 && -f "${found[0]}" ]] || { echo "wallpaper $1: ${found[*]}" >&2; exit 1; }
    echo "${found[0]}"
}

# Extra renditions of a wallpaper: file | folder | the kept rendition (an original, its group).
# The Flow *dark* variants are left out of the set: an edit of Flow, neither duplicate nor not.
RENDITIONS=(
    "Elephants_3840x2160 resized Elephants"
    "Elephants_5640x3172 resized Elephants"
    "Flow_contents_images_720x1440 other-aspect Flow_contents_images_5120x2880"
    "Honeywave_contents_images_1080x1920 other-aspect Honeywave_contents_images_5120x2880"
    "SafeLanding_contents_images_1622x2880 other-aspect SafeLanding_contents_images_5120x2880"
    "Shell_contents_images_720x1440 other-aspect Shell_contents_images_5120x2880"
)
# Same-scene pair members that are the same photo all the same: imageTextR is imageTextN's
# scan turned by a few degrees, i.e. the `rotate` copy transform. Member | group.
SAME_PHOTO=("imageTextR.png imageTextN.png")
# Test videos for the bursts: video | second of the first frame (tree.avi: when a hand moves in;
# before that it is a still shot).
VIDEOS=("bikes.mp4 0.5" "vtest.avi 0.5" "tree.avi 24.5" "Megamind.avi 0.5"
    "carphone_pristine.mp4 0.5" "bigbuckbunny.mp4 0.5")

if [[ ! -f "$SET/truth.tsv" ]]; then
    rm -rf "$SET" "$WORK/copies-raw"
    mkdir -p "$SET"/{originals,copies,renditions/resized,renditions/other-aspect,bursts}
    truth="$WORK/truth.tmp"
    : >"$truth"
    "$BENCH/fashion_mnist.sh" --pairs "$SET/pairs" >/dev/null

    # The originals of descriptors.sh: one rendition of each wallpaper, one photo of each
    # opencv-doc scene, the two scikit-learn photos. One that is also a same-scene pair member
    # stays in pairs/ only: copies are made from that file.
    sources=()
    for f in "$PHOTOS"/wallpapers/*; do
        case "$f" in
        *Elephants_3840x2160* | *Elephants_5640x3172* | *Flow_contents_images_720x1440* | \
            *Flow_contents_images_dark* | *Honeywave_contents_images_1080x1920* | \
            *SafeLanding_contents_images_1622x2880* | *Shell_contents_images_720x1440*) ;;
        *) sources+=("$f") ;;
        esac
    done
    for name in Blender_Suzanne1.jpg HappyFish.jpg aero1.jpg aloeL.jpg apple.jpg baboon.jpg \
        basketball1.png board.jpg box.png building.jpg butterfly.jpg cards.png chicky_512.png \
        ela_original.jpg fruits.jpg graf1.png home.jpg imageTextN.png left.jpg leuvenA.jpg \
        licenseplate_motion.jpg messi5.jpg orange.jpg rubberwhale1.png smarties.png \
        squirrel_cls.jpg starry_night.jpg stuff.jpg sudoku.png text_defocus.jpg; do
        sources+=("$PHOTOS/opencv/$name")
    done
    sources+=("$PHOTOS"/sklearn/*.jpg)
    originals=()
    for f in "${sources[@]}"; do
        name="$(basename "$f")"
        in_pair="$(find "$SET/pairs" -name "$name")"
        if [[ -n "$in_pair" ]]; then
            originals+=("$in_pair")
        else
            cp "$f" "$SET/originals/"
            originals+=("$SET/originals/$name")
        fi
    done
    for f in "${originals[@]}"; do printf '%s\t%s\n' "$f" "$(basename "$f")" >>"$truth"; done

    # Every pair member that is not an original: its own group, or the one SAME_PHOTO names.
    for f in "$SET"/pairs/*/*; do
        name="$(basename "$f")" group="$name"
        printf '%s\n' "${originals[@]}" | grep -qxF "$f" && continue
        for same in "${SAME_PHOTO[@]}"; do
            [[ "${same% *}" == "$name" ]] && group="${same#* }"
        done
        printf '%s\t%s\n' "$f" "$group" >>"$truth"
    done

    # The copies, made by the product's own transforms. Each file argument is one original, so
    # copy NNNNN_<transform>.jpg is of originals[NNNNN]; renamed <original>__<transform>.jpg.
    # (The evaluation it runs too is kept in copydetect.json.)
    echo "making the copies (lookalike eval copydetect)" >&2
    "$BIN" -q eval copydetect "${originals[@]}" --work-dir "$WORK/copies-raw" --json \
        >"$WORK/copydetect.json"
    for i in "${!originals[@]}"; do
        name="$(basename "${originals[i]}")"
        for copy in "$WORK/copies-raw/$(printf %05d "$i")"_*.jpg; do
            [[ -f "$copy" ]] || continue # an original that could not be decoded: no copies
            transform="${copy##*/[0-9][0-9][0-9][0-9][0-9]_}"
            mv "$copy" "$SET/copies/${name%.*}__$transform"
            printf '%s\t%s\n' "$SET/copies/${name%.*}__$transform" "$name" >>"$truth"
        done
    done
    rm -rf "$WORK/copies-raw"

    for rendition in "${RENDITIONS[@]}"; do
        read -r file folder kept <<<"$rendition"
        cp "$(wallpaper "$file")" "$SET/renditions/$folder/"
        printf '%s\t%s\n' "$SET/renditions/$folder/$(basename "$(wallpaper "$file")")" \
            "$(basename "$(wallpaper "$kept")")" >>"$truth"
    done

    # Bursts: 4 frames 1 s apart (JPEG q 2), each its own group. Two frames that decode to the
    # same pixels would not be different photos: refuse them.
    for video in "${VIDEOS[@]}"; do
        read -r file start <<<"$video"
        mkdir -p "$SET/bursts/${file%.*}"
        for step in 0 1 2 3; do
            t="$(python3 -c "print($start + $step)")"
            frame="$SET/bursts/${file%.*}/${file%.*}_${t}s.jpg"
            ffmpeg -v error -y -ss "$t" -i "$DATA/videos/$file" -frames:v 1 -q:v 2 "$frame"
            printf '%s\t%s\n' "$frame" "${file%.*}@${t}s" >>"$truth"
        done
        same="$(for f in "$SET/bursts/${file%.*}"/*; do ffmpeg -v error -i "$f" -f md5 -; done |
            sort | uniq -d)"
        [[ -z "$same" ]] || { echo "$file: two burst frames decode the same" >&2; exit 1; }
    done

    # Every image in the set has a truth line, and every line an image.
    if ! diff <(cut -f1 "$truth" | sort) <(find "$SET" -type f | sort) >&2; then
        echo "truth and set disagree" >&2
        exit 1
    fi
    mv "$truth" "$SET/truth.tsv"
fi
python3 "$BENCH/duplicates_score.py" "$SET/truth.tsv" --summary >&2

# The peer's throwaway venv. imagededup requires torch and torchvision (its CNN mode) even for
# the hash modes; without PEER_TORCH=1 it is installed without them, plus the hash modes' own
# dependencies, and duplicates_peer.py loads the hashing code past the torch imports. The wheels
# are kept in a wheelhouse (pip's own HTTP cache kept none of them here), PEER_WHEELS.
VENV="$WORK/peer-venv"
PY="$VENV/bin/python"
WHEELS="${PEER_WHEELS:-$ROOT/.cache/peer-wheels}"
pip_install() { # pip install ARGS, through the wheelhouse
    "$VENV/bin/pip" download --quiet --find-links "$WHEELS" -d "$WHEELS" "$@"
    "$VENV/bin/pip" install --quiet --no-index --find-links "$WHEELS" "$@"
}
if [[ ! -f "$VENV/ready" ]]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    pip_install Pillow numpy scipy PyWavelets scikit-learn tqdm
    pip_install --no-deps imagededup==0.3.3.post2
    touch "$VENV/ready"
fi
if [[ "${PEER_TORCH:-0}" == 1 ]] && ! "$PY" -c 'import torchvision' 2>/dev/null; then
    echo "installing torch and torchvision into the peer venv" >&2
    pip_install torch torchvision matplotlib
fi

# The tools, timed: lookalike indexes the set, then groups it.
score() { python3 "$BENCH/duplicates_score.py" "$SET/truth.tsv" "$@"; }
now() { date +%s.%N; }
echo
score --header
rm -rf "$WORK/db"
start="$(now)"
"$BIN" -q --db "$WORK/db" index "$SET" >&2
indexed="$(now)"
# shellcheck disable=SC2086 # the flags are words
"$BIN" -q --db "$WORK/db" duplicates --json ${DUPLICATES_FLAGS:-} >"$WORK/found-lookalike.json"
done_at="$(now)"
score "$WORK/found-lookalike.json" --name lookalike \
    --seconds "$(python3 -c "print($done_at - $start)")"
echo "lookalike: index $(python3 -c "print(round($indexed - $start, 1))") s," \
    "duplicates $(python3 -c "print(round($done_at - $indexed, 1))") s" >&2
for method in phash cnn; do
    "$PY" "$BENCH/duplicates_peer.py" "$SET" "$WORK/found-$method.json" --method "$method"
    score "$WORK/found-$method.json" --name "imagededup $method"
    if [[ -f "$WORK/found-$method.pairs.tsv" ]]; then
        score --pairs "$WORK/found-$method.pairs.tsv" --name "imagededup $method, pairs as reported"
    fi
done
