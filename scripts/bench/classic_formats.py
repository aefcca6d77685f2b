#!/usr/bin/env python3
"""The classic pipeline (shared/bench/classic_pipeline.py) as a Python user would run it on a
library with HEIC and AVIF photos: pillow-heif registered so that Pillow opens HEIC (Pillow
reads AVIF itself), and those extensions added to the ones it indexes. Same arguments.

  CLASSIC_DIR=DIR classic_formats.py index --db DB FOLDER
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("CLASSIC_DIR", os.path.join(HERE, "../../../shared/bench")))
import pillow_heif  # noqa: E402
import classic_pipeline as classic  # noqa: E402

pillow_heif.register_heif_opener()
classic.EXTS = classic.EXTS + (".heic", ".heif", ".avif")

if __name__ == "__main__":
    classic.main()
