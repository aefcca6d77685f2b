#!/usr/bin/env bash
# Prepares what scripts/device/check.sh needs on the GPU machine, in .cache/device/ (ignored by
# git; name it in the device tool's `carry`). Run from anywhere, on the build machine:
#
#   scripts/device/pack.sh            # uses target/release/lookalike as it is (builds nothing)
#
# .cache/device/
#   bundle.tar.xz   bin/lookalike (stripped), lib/ (the shared libraries the binary links that
#                   are not glibc/libstdc++: libheif and its codecs, in case the GPU machine
#                   lacks them), models/ (a model store without the ONNX graph: the Lite0 .pth
#                   and the ONNX Runtime library; `lookalike model fetch` rewrites the graph
#                   from the .pth there, offline)
#   photos/jpeg/    a few dozen real photos (Debian wallpaper packages, scikit-image,
#                   scikit-learn, opencv-doc: see scripts/fetch-test-data.sh)
#   photos/other/   real photos in other formats: PNG, plus WebP and HEIC made here from JPEGs
#                   when a Python with Pillow (and pillow_heif for HEIC) is at hand
#   MANIFEST        git commit, binary date and version, sizes and sha256 of everything
#
# The whole call (this folder plus the working tree) must stay under the device tool's 64 MiB;
# this script refuses to finish above PACK_LIMIT_MIB (default 60) for the folder.
#
# Environment: LOOKALIKE_BIN (default target/release/lookalike), LOOKALIKE_MODEL_DIR (default
# .cache/models), LOOKALIKE_TESTDATA (default .cache/testdata), PHOTO_BUDGET_MIB (default 17),
# PACK_PYTHON (a python3 with Pillow/pillow_heif; default .cache/bench-venv/bin/python if there).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
BIN="${LOOKALIKE_BIN:-target/release/lookalike}"
MODELS="${LOOKALIKE_MODEL_DIR:-$ROOT/.cache/models}"
TESTDATA="${LOOKALIKE_TESTDATA:-$ROOT/.cache/testdata}"
PHOTO_BUDGET_MIB="${PHOTO_BUDGET_MIB:-17}"
PACK_LIMIT_MIB="${PACK_LIMIT_MIB:-60}"
DEST="$ROOT/.cache/device"
WEIGHTS="efficientnet-lite0/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256=579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db
ORT="onnxruntime-1.32.0/libonnxruntime.so.1.32.0"

log() { echo "pack.sh: $*" >&2; }
die() { log "$*"; exit 1; }

git check-ignore -q "$DEST" || die "$DEST is not ignored by git: it would travel as part of the tree"
[[ -x "$BIN" ]] || die "no binary at $BIN (build it with cargo build --release first)"
[[ -f "$MODELS/$WEIGHTS" ]] || die "no $MODELS/$WEIGHTS (run: lookalike model fetch --model lite0)"
[[ -f "$MODELS/$ORT" ]] || die "no $MODELS/$ORT (run: lookalike model fetch --model lite0)"
[[ -d "$TESTDATA/photos" ]] || die "no $TESTDATA/photos (run: scripts/fetch-test-data.sh)"
echo "$WEIGHTS_SHA256  $MODELS/$WEIGHTS" | sha256sum -c --quiet - || die "weights hash mismatch"
command -v xz >/dev/null || die "needs xz"

rm -rf "$DEST"
STAGE="$DEST/.stage"
mkdir -p "$STAGE/bin" "$STAGE/lib" "$STAGE/models/${WEIGHTS%/*}" "$STAGE/models/${ORT%/*}" \
         "$DEST/photos/jpeg" "$DEST/photos/other"

# 1. Binary, stripped.
strip -o "$STAGE/bin/lookalike" "$BIN"
chmod 755 "$STAGE/bin/lookalike"

# 2. Shared libraries beyond the C/C++ runtime (check.sh only uses them if the GPU machine
#    misses some: `ldd` there says which).
ldd "$BIN" | awk '/=> \// {print $1, $3}' | while read -r name path; do
    case "$name" in
        libc.so*|libm.so*|libmvec.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|\
        libstdc++.so*|libgcc_s.so*|libz.so*) continue ;;
    esac
    cp -L "$path" "$STAGE/lib/$name"
done

# 3. The model store's files that cannot be regenerated offline.
cp "$MODELS/$WEIGHTS" "$STAGE/models/$WEIGHTS"
cp "$MODELS/$ORT" "$STAGE/models/$ORT"
[[ -f "$MODELS/$ORT.sha256" ]] && cp "$MODELS/$ORT.sha256" "$STAGE/models/$ORT.sha256"

log "compressing the bundle (xz -9, about a minute) ..."
tar -C "$STAGE" -cf - bin lib models | xz -9 -T0 > "$DEST/bundle.tar.xz"

# 4. Photos: round-robin over the sources (smallest file first in each), skipping the same
#    wallpaper at other sizes, until the budget is spent.
PHOTOS="$TESTDATA/photos" BUDGET=$((PHOTO_BUDGET_MIB * 1048576)) OUTDIR="$DEST/photos" python3 - <<'EOF'
import os, shutil
src, budget, out = os.environ["PHOTOS"], int(os.environ["BUDGET"]), os.environ["OUTDIR"]
skip = ("_dark_", "720x1440", "1080x1920", "Elephants_", "1622x2880", "Flow_contents_images_5120")
groups = {}
for sub in sorted(os.listdir(src)):
    for f in sorted(os.listdir(os.path.join(src, sub))):
        p = os.path.join(src, sub, f)
        if any(s in f for s in skip) or os.path.getsize(p) > 2_300_000:
            continue
        if f.lower().endswith((".jpg", ".jpeg")):
            if os.path.getsize(p) < 60_000:
                continue  # thumbnails and logos: not photos
            key = "jpeg:" + (f.split("_")[0] if sub == "wallpapers" else sub)
        elif f.lower().endswith(".png") and sub == "skimage" and f in (
                "astronaut.png", "coffee.png", "chelsea.png", "motorcycle_left.png", "camera.png"):
            key = "other:skimage"
        elif f.lower().endswith(".png") and sub == "opencv" and f in ("graf1.png", "rubberwhale1.png"):
            key = "other:opencv"
        else:
            continue
        groups.setdefault(key, []).append(p)
for k in groups:
    groups[k].sort(key=os.path.getsize)
used, picked = 0, 0
while any(groups.values()):
    for k in sorted(groups):
        if not groups[k]:
            continue
        p = groups[k].pop(0)
        size = os.path.getsize(p)
        if used + size > budget:
            groups[k] = []
            continue
        kind = k.split(":")[0]
        shutil.copyfile(p, os.path.join(out, kind, os.path.basename(p)))
        used += size
        picked += 1
print("pack.sh: %d photos, %.1f MiB" % (picked, used / 1048576))
EOF

# 5. WebP and HEIC copies of two photos (real non-JPEG inputs), when a Pillow is at hand.
PY="${PACK_PYTHON:-}"
[[ -z "$PY" && -x "$ROOT/.cache/bench-venv/bin/python" ]] && PY="$ROOT/.cache/bench-venv/bin/python"
if [[ -n "$PY" ]]; then
    "$PY" - "$DEST/photos" <<'EOF' || log "no WebP/HEIC made (Pillow or pillow_heif missing)"
import os, sys
from PIL import Image
d = sys.argv[1]
jpegs = sorted(os.listdir(os.path.join(d, "jpeg")), key=lambda f: os.path.getsize(os.path.join(d, "jpeg", f)))
pick = [jpegs[len(jpegs) // 3], jpegs[len(jpegs) // 2]]
for f in pick:
    im = Image.open(os.path.join(d, "jpeg", f)).convert("RGB")
    im.thumbnail((1600, 1600))
    im.save(os.path.join(d, "other", os.path.splitext(f)[0] + ".webp"), "WEBP", quality=85)
try:
    import pillow_heif
    pillow_heif.register_heif_opener()
    for f in pick:
        im = Image.open(os.path.join(d, "jpeg", f)).convert("RGB")
        im.thumbnail((1600, 1600))
        im.save(os.path.join(d, "other", os.path.splitext(f)[0] + ".heic"), "HEIF", quality=80)
except ImportError:
    print("pack.sh: no pillow_heif: no HEIC", file=sys.stderr)
EOF
fi

# 6. Manifest.
{
    echo "made:        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git HEAD:    $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' (src/Cargo differ from HEAD)')"
    echo "binary:      $BIN, modified $(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ), $("$BIN" --version 2>/dev/null || echo '?')"
    echo "binary has --device: $("$BIN" --help 2>/dev/null | grep -q -- '--device' && echo yes || echo no); model bench: $("$BIN" model --help 2>/dev/null | grep -qw bench && echo yes || echo no)"
    echo "libs:        $(ls "$STAGE/lib" | tr '\n' ' ')"
    echo "photos:      $(ls "$DEST/photos/jpeg" | wc -l) jpeg, $(ls "$DEST/photos/other" | wc -l) other"
    echo
    (cd "$STAGE" && find . -type f -exec sha256sum {} + | sort -k2)
    (cd "$DEST" && sha256sum bundle.tar.xz)
} > "$DEST/MANIFEST"
rm -rf "$STAGE"

total=$(du -sb "$DEST" | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
untracked=${untracked:-0}
printf 'pack.sh: %s: %.1f MiB (bundle %.1f MiB, photos %.1f MiB); with the working tree %.1f MiB of the 64 MiB a call carries\n' \
    "$DEST" "$(echo "$total/1048576" | bc -l)" \
    "$(echo "$(stat -c %s "$DEST/bundle.tar.xz")/1048576" | bc -l)" \
    "$(echo "$(du -sb "$DEST/photos" | cut -f1)/1048576" | bc -l)" \
    "$(echo "($total+$tree+$untracked)/1048576" | bc -l)" >&2
if (( total > PACK_LIMIT_MIB * 1048576 )); then
    die "over the limit of $PACK_LIMIT_MIB MiB: lower PHOTO_BUDGET_MIB"
fi
