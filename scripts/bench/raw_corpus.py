#!/usr/bin/env python3
"""Builds the RAW benchmark corpus: a camera-like DNG for each JPEG photo in SRC_DIR.

    raw_corpus.py [-j JOBS] [--check] SRC_DIR OUT_DIR

Each OUT_DIR/NAME.dng is laid out as Adobe DNG Converter writes them (and as
tests/fixtures/raw_subifd_preview.dng, whose helpers in tests/fixtures/make_raw.py are reused):
- IFD0: a thumbnail, 256 px on its long side, 8-bit RGB uncompressed (NewSubFileType 1);
- SubIFD 0: the sensor data at the photo's full size, the photo mosaicked to a 12-bit RGGB
  Bayer CFA (linear light) and stored as lossless JPEG (SOF3, libjpeg-turbo through
  imagecodecs) in one strip, as most cameras' DNGs store it;
- SubIFD 1: a full-size preview, the photo re-encoded by Pillow (libjpeg-turbo) as baseline
  JPEG at quality 90 with 4:2:0 chroma, as cameras embed them (NewSubFileType 1).
The photo's EXIF orientation, if any, goes into IFD0's Orientation; the pixels stay as stored.
lookalike indexes such a file through its largest embedded JPEG, the preview (src/image/raw.rs).

Files already in OUT_DIR are kept (each is written to NAME.dng.part and renamed when done).
--check opens every DNG with LibRaw (rawpy) and asserts that the preview it extracts is the
full-size JPEG stored in the file. Needs the venv tests/fixtures/make_raw.py names (numpy,
Pillow, tifffile, imagecodecs, rawpy).
"""
import argparse
import io
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import tifffile
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import make_raw  # noqa: E402  (bayer, dng_tags, write_raw, write_jpeg_strip)

THUMB_SIDE = 256
PREVIEW_QUALITY = 90
MAKE, MODEL = 271, 272


def preview_jpeg(image):
    """The full-size preview a camera would embed: baseline, quality 90, 4:2:0, no EXIF.
    (make_raw.jpeg fixes quality 88.)"""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=PREVIEW_QUALITY, subsampling="4:2:0")
    return out.getvalue()


def ifd0_tags(orientation):
    """make_raw's DNG tags, with the model naming this corpus."""
    tags = []
    for tag in make_raw.dng_tags(orientation):
        if tag[0] == MODEL:
            tag = (MODEL, make_raw.ASCII, 0, "raw benchmark corpus", True)
        tags.append(tag)
    return tags


def build(src, dst):
    """Writes dst, the DNG of the photo src; returns its size in bytes."""
    with Image.open(src) as opened:
        orientation = opened.getexif().get(0x0112, 1)
        if orientation not in range(1, 9):
            orientation = 1
        image = opened.convert("RGB")
    preview = preview_jpeg(image)
    thumb = image.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.LANCZOS)
    cfa = make_raw.bayer(image)
    del image
    part = dst + ".part"
    with tifffile.TiffWriter(part) as tif:
        tif.write(np.asarray(thumb), photometric="rgb", subfiletype=1, subifds=2,
                  extratags=ifd0_tags(orientation), software="lookalike raw_corpus.py",
                  metadata=None)
        make_raw.write_raw(tif, cfa)
        make_raw.write_jpeg_strip(tif, preview, (cfa.shape[1], cfa.shape[0]))
    os.replace(part, dst)
    return os.path.getsize(dst)


def check(path):
    """LibRaw's preview of path: the full-size JPEG stored in it. Returns its size."""
    import rawpy

    data = open(path, "rb").read()
    with rawpy.imread(path) as raw:
        sensor = (raw.sizes.raw_width, raw.sizes.raw_height)
        thumb = raw.extract_thumb()
    assert thumb.format == rawpy.ThumbFormat.JPEG, f"{path}: LibRaw's preview is not a JPEG"
    stored = make_raw.without_inserted_exif(bytes(thumb.data), data)
    size = Image.open(io.BytesIO(stored)).size
    assert size == sensor, f"{path}: preview {size}, sensor data {sensor}"
    return size


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src_dir")
    parser.add_argument("out_dir")
    parser.add_argument("-j", "--jobs", type=int, default=min(os.cpu_count() or 1, 8),
                        help="files built at once (about 1 GB of memory each at 18 MP)")
    parser.add_argument("--check", action="store_true",
                        help="check every DNG's preview with LibRaw (rawpy) afterwards")
    args = parser.parse_args()

    os.makedirs(args.out_dir, exist_ok=True)
    todo, kept = [], 0
    names = sorted(n for n in os.listdir(args.src_dir) if n.lower().endswith((".jpg", ".jpeg")))
    for name in names:
        dst = os.path.join(args.out_dir, os.path.splitext(name)[0] + ".dng")
        if os.path.exists(dst) and os.path.getsize(dst) > 0:
            kept += 1
        else:
            todo.append((os.path.join(args.src_dir, name), dst))
    # The largest first, so that the last one started is not an 18 MP photo.
    todo.sort(key=lambda job: -os.path.getsize(job[0]))
    start = time.monotonic()
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        sizes = list(pool.map(build, *zip(*todo))) if todo else []
    print(f"raw_corpus: built {len(sizes)} DNGs ({sum(sizes) / 1e6:.0f} MB) in "
          f"{time.monotonic() - start:.1f} s, kept {kept}", file=sys.stderr)
    if args.check:
        dngs = [os.path.join(args.out_dir, os.path.splitext(n)[0] + ".dng") for n in names]
        for path in dngs:
            check(path)
        print(f"raw_corpus: LibRaw extracts the full-size preview of all {len(dngs)}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
