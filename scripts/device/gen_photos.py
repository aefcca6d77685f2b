#!/usr/bin/env python3
"""Makes a few thousand photo-sized test images from a few dozen real photos.

  gen_photos.py SRC_DIR OUT_DIR [--count 3000] [--min-width 1600] [--max-width 4000] [--jobs N]

Each output is a random crop (60-100% of each side) of one source photo (those with a long side
of at least --min-source px), mirrored half the time,
re-toned (brightness/contrast), with sensor-like Gaussian noise (smooth upscales decode faster
than real photos), rescaled so its long side is uniform in [min, max] px (typical camera and phone
sizes), and re-encoded: ~94% JPEG (quality 75-95, mostly 4:2:0, some 4:4:4 and progressive),
~3% PNG (long side 1200-2000) and ~3% WebP, in folders of 500. Deterministic for a given
--seed. Uses Pillow; without Pillow, OpenCV; without
either, plain copies of the sources under new names (and says so). Prints one JSON line:
{"images", "by_format", "megapixels_mean", "bytes_mean", "seconds", "tool"}.
"""
import argparse
import json
import os
import random
import shutil
import sys
import time
from multiprocessing import Pool

EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")  # what Pillow/OpenCV read
PER_TASK = 20
PER_DIR = 500


def sources(src):
    out = []
    for dp, dns, fns in os.walk(src):
        dns.sort()
        out += [os.path.join(dp, f) for f in sorted(fns) if f.lower().endswith(EXTS)]
    return out


def plan(args, srcs):
    """(source, [(index, seed)]) tasks: each source decoded once per task."""
    rng = random.Random(args.seed)
    per_source = {}
    for i in range(args.count):
        per_source.setdefault(i % len(srcs), []).append((i, rng.randrange(1 << 30)))
    tasks = []
    for s, items in per_source.items():
        for k in range(0, len(items), PER_TASK):
            tasks.append((srcs[s], items[k:k + PER_TASK]))
    rng.shuffle(tasks)  # big and small sources spread over the workers
    return tasks


def out_path(args, index, ext):
    d = os.path.join(args.out, "%03d" % (index // PER_DIR))
    return os.path.join(d, "gen%06d%s" % (index, ext))


_NOISE = None


def noise_tile(Image, side, sigma):
    """A grey Gaussian noise image centred on 128, made once per worker and cropped per use."""
    global _NOISE
    if _NOISE is None or _NOISE.size[0] < side:
        _NOISE = Image.effect_noise((side, side), sigma)
    return _NOISE


def make_pil(args, src, items):
    from PIL import Image, ImageChops, ImageOps, features
    Image.MAX_IMAGE_PIXELS = None
    webp = features.check("webp")
    with Image.open(src) as im:
        im = ImageOps.exif_transpose(im)
        base = im.convert("RGB")
    done = []
    for index, seed in items:
        rng = random.Random(seed)
        w, h = base.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = base.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        roll = rng.random()
        fmt = "png" if roll < 0.03 else ("webp" if roll < 0.06 and webp else "jpeg")
        lo, hi = (1200, 2000) if fmt == "png" else (args.min_width, args.max_width)
        long_side = rng.randint(lo, hi)
        scale = long_side / max(cw, ch)
        size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
        img = img.resize(size, Image.BILINEAR, reducing_gap=2.0)
        # Brightness and contrast through one lookup table (cheap, unlike ImageEnhance).
        gain, offset = rng.uniform(0.85, 1.15), rng.uniform(-12, 12)
        img = img.point([min(255, max(0, round(v * gain + offset))) for v in range(256)] * 3)
        if args.noise:
            # Sensor-like noise: smooth upscales would decode faster than real photos.
            tile = noise_tile(Image, max(args.max_width, 2000), args.noise)
            ox, oy = rng.randint(0, tile.size[0] - size[0]), rng.randint(0, tile.size[1] - size[1])
            n = tile.crop((ox, oy, ox + size[0], oy + size[1]))
            img = ImageChops.add(img, Image.merge("RGB", (n, n, n)), 1.0, -128)
        if fmt == "jpeg":
            path = out_path(args, index, ".jpg")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            img.save(path, "JPEG", quality=rng.randint(75, 95),
                     subsampling=0 if rng.random() < 0.1 else 2,
                     progressive=rng.random() < 0.08, optimize=False)
        elif fmt == "png":
            path = out_path(args, index, ".png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            img.save(path, "PNG", compress_level=3)
        else:
            path = out_path(args, index, ".webp")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            img.save(path, "WEBP", quality=rng.randint(75, 90), method=2)
        done.append((fmt, size[0] * size[1], os.path.getsize(path)))
    return done


def make_cv2(args, src, items):
    import cv2
    base = cv2.imread(src, cv2.IMREAD_COLOR)
    if base is None:
        return []
    done = []
    for index, seed in items:
        rng = random.Random(seed)
        h, w = base.shape[:2]
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = base[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            img = cv2.flip(img, 1)
        long_side = rng.randint(args.min_width, args.max_width)
        scale = long_side / max(cw, ch)
        size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
        path = out_path(args, index, ".jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, rng.randint(75, 95)])
        done.append(("jpeg", size[0] * size[1], os.path.getsize(path)))
    return done


def make_copy(args, src, items):
    done = []
    ext = os.path.splitext(src)[1].lower()
    for index, _ in items:
        path = out_path(args, index, ext)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(src, path)
        done.append((ext.lstrip("."), 0, os.path.getsize(path)))
    return done


TOOLS = {"pillow": make_pil, "opencv": make_cv2, "copy": make_copy}
_ARGS = None


def init(args):
    global _ARGS
    _ARGS = args


def work(task):
    src, items = task
    try:
        return TOOLS[_ARGS.tool](_ARGS, src, items)
    except Exception as e:  # noqa: BLE001 - one bad source must not stop the rest
        print("gen_photos.py: %s: %s: %s" % (src, type(e).__name__, e), file=sys.stderr)
        return []


def long_side(path, tool):
    """The longer side in pixels (0 when unreadable); Pillow reads only the header."""
    try:
        if tool == "pillow":
            from PIL import Image
            with Image.open(path) as im:
                return max(im.size)
        import cv2
        im = cv2.imread(path, cv2.IMREAD_REDUCED_COLOR_8)
        return 8 * max(im.shape[:2]) if im is not None else 0
    except Exception:  # noqa: BLE001
        return 0


def pick_tool():
    try:
        import PIL.Image  # noqa: F401
        return "pillow"
    except ImportError:
        pass
    try:
        import cv2  # noqa: F401
        return "opencv"
    except ImportError:
        return "copy"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--min-width", type=int, default=1600)
    p.add_argument("--max-width", type=int, default=4000)
    p.add_argument("--noise", type=float, default=4.0, help="noise sigma in levels (0: none)")
    p.add_argument("--min-source", type=int, default=1280,
                   help="use only sources whose long side has at least this many px")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--tool", choices=sorted(TOOLS), help="default: pillow, opencv, copy")
    args = p.parse_args()
    args.tool = args.tool or pick_tool()
    if args.tool == "copy":
        print("gen_photos.py: neither Pillow nor OpenCV: plain copies", file=sys.stderr)
    srcs = sources(args.src)
    if args.tool != "copy":
        # Big sources only for big outputs (small ones would just be blurry upscales).
        big = [s for s in srcs if long_side(s, args.tool) >= args.min_source]
        srcs = big or srcs
    if not srcs:
        sys.exit("gen_photos.py: no source images in %s" % args.src)
    t0 = time.time()
    results = []
    with Pool(args.jobs, initializer=init, initargs=(args,)) as pool:
        for r in pool.imap_unordered(work, plan(args, srcs)):
            results += r
    by_format = {}
    for fmt, _, _ in results:
        by_format[fmt] = by_format.get(fmt, 0) + 1
    n = max(len(results), 1)
    print(json.dumps({
        "images": len(results), "by_format": by_format, "sources": len(srcs),
        "megapixels_mean": round(sum(r[1] for r in results) / n / 1e6, 2),
        "bytes_mean": int(sum(r[2] for r in results) / n),
        "seconds": round(time.time() - t0, 1), "tool": args.tool,
    }))
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
