#!/usr/bin/env bash
# Labelled folders for `lookalike eval labelled` (one subfolder per label), from the real data
# cached by scripts/fetch-test-data.sh:
#
#   fashion_mnist.sh DIR [N] [SPLIT]   Fashion-MNIST as PNGs: the first N images (default 300)
#                                      of each of the 10 classes of SPLIT (test | train,
#                                      default test), DIR/<class>/<index>.png
#   fashion_mnist.sh --pairs DIR       same-scene pairs of OpenCV / scikit-image photos (two
#                                      views, two frames, before/after an edit): an instance set,
#                                      DIR/<pair>/<photo>
#
# then e.g.  lookalike eval labelled DIR --exact
#
# Python 3 standard library only (gzip, struct, zlib write the PNGs): no venv needed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DATA="${LOOKALIKE_TESTDATA:-$ROOT/.cache/testdata}"
[[ -d "$DATA/photos" ]] || { echo "no test data in $DATA: run scripts/fetch-test-data.sh" >&2; exit 1; }

if [[ "${1:-}" == "--pairs" ]]; then
    out="${2:?usage: fashion_mnist.sh --pairs DIR}"
    pairs=(
        "graf opencv/graf1.png opencv/graf3.png"
        "box opencv/box.png opencv/box_in_scene.png"
        "aero opencv/aero1.jpg opencv/aero3.jpg"
        "stereo opencv/left.jpg opencv/right.jpg"
        "aloe opencv/aloeL.jpg opencv/aloeR.jpg"
        "leuven opencv/leuvenA.jpg opencv/leuvenB.jpg"
        "suzanne opencv/Blender_Suzanne1.jpg opencv/Blender_Suzanne2.jpg"
        "rubberwhale opencv/rubberwhale1.png opencv/rubberwhale2.png"
        "basketball opencv/basketball1.png opencv/basketball2.png"
        "imagetext opencv/imageTextN.png opencv/imageTextR.png"
        "blurredtext opencv/text_defocus.jpg opencv/text_motion.jpg"
        "ela opencv/ela_original.jpg opencv/ela_modified.jpg"
        "motorcycle skimage/motorcycle_left.png skimage/motorcycle_right.png"
    )
    for pair in "${pairs[@]}"; do
        read -r name a b <<<"$pair"
        mkdir -p "$out/$name"
        for src in "$a" "$b"; do
            cp "$DATA/photos/$src" "$out/$name/"
        done
    done
    echo "$out: ${#pairs[@]} pairs"
    exit 0
fi

out="${1:?usage: fashion_mnist.sh DIR [N] [test|train]}"
n="${2:-300}"
split="${3:-test}"
case "$split" in
test) prefix=t10k ;;
train) prefix=train ;;
*) echo "split must be test or train, not $split" >&2; exit 1 ;;
esac

python3 - "$DATA/fashion-mnist" "$prefix" "$n" "$out" <<'EOF'
import gzip, os, struct, sys, zlib

src, prefix, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]

def idx(name, magic):
    with gzip.open(os.path.join(src, name)) as f:
        data = f.read()
    dims = data[3]
    if struct.unpack(">I", data[:4])[0] != magic:
        sys.exit(f"{name}: not an idx file of the expected kind")
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return shape, data[4 + 4 * dims:]

def png(path, w, h, pixels):
    """An 8-bit greyscale PNG, written with zlib alone."""
    raw = b"".join(b"\0" + pixels[y * w:(y + 1) * w] for y in range(h))
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))

(count, h, w), images = idx(f"{prefix}-images-idx3-ubyte.gz", 0x803)
(count_labels,), labels = idx(f"{prefix}-labels-idx1-ubyte.gz", 0x801)
assert count == count_labels, "images and labels disagree"
taken = [0] * len(CLASSES)
for i in range(count):
    label = labels[i]
    if taken[label] >= n:
        continue
    folder = os.path.join(out, CLASSES[label])
    os.makedirs(folder, exist_ok=True)
    png(os.path.join(folder, f"{i:05d}.png"), w, h, images[i * w * h:(i + 1) * w * h])
    taken[label] += 1
    if min(taken) >= n:
        break
print(f"{out}: {sum(taken)} images, {min(taken)}-{max(taken)} per class ({prefix})")
EOF
