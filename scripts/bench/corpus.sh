#!/usr/bin/env bash
# Make a benchmark corpus of N files from the real photos (wallpapers, opencv-doc, scikit-image),
# repeated as hard links under distinct names: every file is a real photo, and both pipelines
# read the very same bytes.
#   corpus.sh DIR N
set -euo pipefail
dir="$1"; n="$2"
DATA="${LOOKALIKE_TESTDATA:-$(cd "$(dirname "$0")/../.." && pwd)/.cache/testdata}"
mkdir -p "$dir"
mapfile -t photos < <(find "$DATA/photos/wallpapers" "$DATA/photos/opencv" "$DATA/photos/skimage" \
    -type f \( -name '*.jpg' -o -name '*.png' \) | sort)
for ((i = 0; i < n; i++)); do
    src="${photos[i % ${#photos[@]}]}"
    ln "$src" "$dir/$(printf '%06d' "$i")_$(basename "$src")" 2>/dev/null ||
        cp "$src" "$dir/$(printf '%06d' "$i")_$(basename "$src")"
done
