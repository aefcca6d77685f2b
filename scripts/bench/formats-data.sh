#!/usr/bin/env bash
# The per-format benchmark corpora (scripts/bench/formats.sh), under .cache/bench/formats/:
#   jpeg/  the 59 camera-sized wallpaper photos of the test data, as they are
#   png/   the 64 real PNG photos of the word benchmark's set (scripts/bench/words-data.sh)
#   webp/  its 173 real WebP photos
#   heic/  the wallpapers converted by heif-enc (x265 preset fast, quality 85, as phones write them)
#   avif/  the wallpapers converted by avifenc (aom speed 9, quantizer 14-18, about quality 85)
#   raw/   the wallpapers as camera DNGs (scripts/bench/raw_corpus.py): Adobe DNG Converter's
#          layout, a 256 px thumbnail, the photo mosaicked to a 12-bit Bayer CFA in lossless
#          JPEG (about 1.4 bytes a pixel, as real RAW files) and a full-size JPEG preview
#          (quality 90, 4:2:0), what lookalike indexes; built in .cache/raw-venv
# HEIC and AVIF have no real samples here; lossless HEIC/AVIF (10x larger, and written by no
# camera or phone) would not be what a library holds, so the conversion is lossy.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
DATA="${LOOKALIKE_TESTDATA:-$ROOT/.cache/testdata}"
OUT="$ROOT/.cache/bench/formats"
WORDS="$ROOT/.cache/bench/words/photos"
[[ -d "$WORDS" ]] || scripts/bench/words-data.sh >/dev/null
command -v heif-enc >/dev/null && command -v avifenc >/dev/null || {
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get install -y -qq libheif-examples libavif-bin >/dev/null
}
mkdir -p "$OUT"/{jpeg,png,webp,heic,avif,raw}
for f in "$DATA"/photos/wallpapers/*.jpg; do
    name="$(basename "${f%.*}")"
    ln -f "$f" "$OUT/jpeg/$name.jpg" 2>/dev/null || cp "$f" "$OUT/jpeg/$name.jpg"
    [[ -s "$OUT/heic/$name.heic" ]] || heif-enc -q 85 -p preset=fast -o "$OUT/heic/$name.heic" "$f" >/dev/null
    [[ -s "$OUT/avif/$name.avif" ]] ||
        avifenc --min 14 --max 18 -s 9 -j 2 "$f" "$OUT/avif/$name.avif" >/dev/null
done
cp "$WORDS"/*.png "$OUT/png/"
cp "$WORDS"/*.webp "$OUT/webp/"
# raw/: numpy, Pillow, tifffile, imagecodecs and rawpy (tests/fixtures/make_raw.py, whose
# helpers raw_corpus.py uses, imports it) at pinned versions; .pins records what it holds.
RAW_VENV="$ROOT/.cache/raw-venv"
RAW_PINS="numpy==2.4.6 pillow==13.0.0 tifffile==2026.3.3 imagecodecs==2026.3.6 rawpy==0.28.0"
if [[ "$(cat "$RAW_VENV/.pins" 2>/dev/null)" != "$RAW_PINS" ]]; then
    [[ -x "$RAW_VENV/bin/python" ]] || python3 -m venv "$RAW_VENV"
    # shellcheck disable=SC2086
    "$RAW_VENV/bin/python" -m pip install -q --disable-pip-version-check $RAW_PINS
    echo "$RAW_PINS" >"$RAW_VENV/.pins"
fi
"$RAW_VENV/bin/python" scripts/bench/raw_corpus.py "$DATA/photos/wallpapers" "$OUT/raw"
for format in jpeg png webp heic avif raw; do
    echo "$format: $(find "$OUT/$format" -type f | wc -l) files, $(du -sh "$OUT/$format" | cut -f1)"
done
