#!/usr/bin/env python3
"""Per-file cosine between lookalike's vectors (an `export` folder) and the classic pipeline's
(its --db folder), for the files both indexed. Same network, so they must agree (>= 0.99)."""
import json
import os
import sys

import numpy as np

ours_dir, classic_dir = sys.argv[1], sys.argv[2]
ours = np.load(os.path.join(ours_dir, "vectors.npy"))
with open(os.path.join(ours_dir, "items.jsonl")) as fh:
    row_of = {json.loads(line)["path"]: i for i, line in enumerate(fh)}
theirs = np.load(os.path.join(classic_dir, "feats.npy"))
with open(os.path.join(classic_dir, "paths.json")) as fh:
    paths = json.load(fh)
cos = np.array([float(ours[row_of[os.path.realpath(p)]] @ theirs[i])
                for i, p in enumerate(paths) if os.path.realpath(p) in row_of])
print(json.dumps({"bench": "agreement", "files": int(cos.size), "min_cosine": round(float(cos.min()), 5),
                  "median_cosine": round(float(np.median(cos)), 5),
                  "share_at_least_0.99": round(float((cos >= 0.99).mean()), 4)}))
