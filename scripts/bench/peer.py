#!/usr/bin/env python3
"""The Python peer of benches/throughput.rs: the same measurements with the classic pipeline's
own code (Pillow + onnxruntime + numpy, imported from shared/bench/classic_pipeline.py).

  peer.py embed ONNX [ROUNDS]     network only, batch 16, onnxruntime on all cores
  peer.py decode DIR [ROUNDS]     classic_pipeline.preprocess (Pillow draft + bicubic), 1 thread
"""
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("CLASSIC_DIR", os.path.join(HERE, "../../../shared/bench")))
import numpy as np  # noqa: E402
import pillow_heif  # noqa: E402
import classic_pipeline as classic  # noqa: E402

# Pillow opens HEIC once pillow-heif is registered (and AVIF by itself), as a user would set it up.
pillow_heif.register_heif_opener()
EXTS = classic.EXTS + (".heic", ".heif", ".avif")
BATCH = 16


def embed(onnx, rounds):
    model = classic.Model(onnx)
    size = model.size
    n = 3 * size * size
    x = ((np.arange(BATCH * n) * 7919) % 255).astype(np.float32) / 128.0 - 1.0
    x = x.reshape(BATCH, 3, size, size)
    model.sess.run(["features"], {"input": x})
    rates = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(8):
            model.sess.run(["features"], {"input": x})
        rates.append(8 * BATCH / (time.perf_counter() - t))
    print(json.dumps({"bench": "embed", "peer": "python-onnxruntime", "onnx": onnx,
                      "images_per_second": round(statistics.median(rates), 1), "rounds": rounds}))


def decode(folder, rounds):
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(EXTS))
    rates = []
    for _ in range(rounds):
        t = time.perf_counter()
        for f in files:
            classic.preprocess(f, 224)
        rates.append(len(files) / (time.perf_counter() - t))
    print(json.dumps({"bench": "decode", "peer": "python-pillow", "dir": folder, "files": len(files),
                      "images_per_second": round(statistics.median(rates), 1), "rounds": rounds}))


if __name__ == "__main__":
    what, arg = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    (embed if what == "embed" else decode)(arg, rounds)
