#!/usr/bin/env python3
"""Generate assets/imagenet_wordnet.tsv, the word vocabulary over the ImageNet-1k classes.

lookalike stores each image's most probable ImageNet-1k classes; src/words turns a word or a
phrase ("dog", "golden retriever", "fruit") into the set of classes it names or that lie below
it in the WordNet 3.0 noun hierarchy. This script derives that table from:

- WordNet 3.0 (Princeton University), as Debian's `wordnet-base` package, fetched with
  `apt-get download` and unpacked with `dpkg-deb -x`: `data.noun` for the synsets, their lemmas
  and their hypernym pointers, `noun.exc` for irregular plurals;
- the 1000 ImageNet-1k wnids in class order, `timm/data/_info/imagenet_synsets.txt` in the
  timm 1.0.31 wheel (fetched with `pip download`; only that file is read, nothing installed).

Both downloads are cached under .cache/words/ (git-ignored). The output is deterministic: the
same inputs give the same bytes. It also writes assets/WORDNET_LICENSE, the WordNet 3.0
license notice copied from the package, which has to accompany any copy of (a part of) the
database.

Usage: python3 scripts/words/make_vocabulary.py   (from anywhere; paths are relative to the
repository root). Plain Python 3.11 standard library.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, ".cache", "words")
OUT_TSV = os.path.join(ROOT, "assets", "imagenet_wordnet.tsv")
OUT_LICENSE = os.path.join(ROOT, "assets", "WORDNET_LICENSE")

TIMM_VERSION = "1.0.31"  # the wheel assets/imagenet_labels.txt was generated from
SYNSETS_IN_WHEEL = "timm/data/_info/imagenet_synsets.txt"
NUM_CLASSES = 1000


def run(cmd: list[str], cwd: str) -> bool:
    """Runs `cmd`, echoing it; True when it succeeded."""
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, cwd=cwd).returncode == 0


def wordnet_dir() -> str:
    """The unpacked wordnet-base package: downloads and extracts it on first use."""
    unpacked = os.path.join(CACHE, "wordnet-base")
    data_dir = os.path.join(unpacked, "usr", "share", "wordnet")
    if os.path.exists(os.path.join(data_dir, "data.noun")):
        return unpacked
    os.makedirs(CACHE, exist_ok=True)
    debs = sorted(glob.glob(os.path.join(CACHE, "wordnet-base_*.deb")))
    if not debs:
        # The package lists may be missing or stale on a fresh machine: refresh only then.
        if not run(["apt-get", "download", "wordnet-base"], CACHE):
            if not (run(["apt-get", "update"], CACHE)
                    and run(["apt-get", "download", "wordnet-base"], CACHE)):
                sys.exit("could not download Debian's wordnet-base package")
        debs = sorted(glob.glob(os.path.join(CACHE, "wordnet-base_*.deb")))
    if not debs:
        sys.exit("apt-get download left no wordnet-base_*.deb in " + CACHE)
    if not run(["dpkg-deb", "-x", debs[-1], unpacked], CACHE):
        sys.exit("dpkg-deb could not extract " + debs[-1])
    return unpacked


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k wnids in class order, from the timm wheel (downloaded once)."""
    wheel_dir = os.path.join(CACHE, "timm")
    pattern = os.path.join(wheel_dir, f"timm-{TIMM_VERSION}-*.whl")
    if not glob.glob(pattern):
        os.makedirs(wheel_dir, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
               f"timm=={TIMM_VERSION}", "-d", wheel_dir]
        if not run(cmd, CACHE):
            sys.exit("could not download the timm wheel")
    wheels = sorted(glob.glob(pattern))
    if not wheels:
        sys.exit("pip download left no timm wheel in " + wheel_dir)
    with zipfile.ZipFile(wheels[-1]) as wheel:
        text = wheel.read(SYNSETS_IN_WHEEL).decode("ascii")
    wnids = [line.strip() for line in text.splitlines() if line.strip()]
    if len(wnids) != NUM_CLASSES or len(set(wnids)) != NUM_CLASSES:
        sys.exit(f"{SYNSETS_IN_WHEEL}: expected {NUM_CLASSES} distinct wnids, got {len(wnids)}")
    return wnids


def normalise_lemma(word: str) -> str:
    """WordNet's lemma as the vocabulary writes it: lower case, underscores as spaces."""
    return word.replace("_", " ").lower()


def read_nouns(path: str) -> tuple[dict[int, list[str]], dict[int, list[int]]]:
    """The noun synsets of data.noun: offset -> lemmas (normalised, unique, in WordNet's
    order) and offset -> hypernym offsets (`@` and `@i` pointers, in WordNet's order)."""
    lemmas: dict[int, list[str]] = {}
    hypernyms: dict[int, list[int]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):  # the license header
                continue
            fields = line.split(" | ", 1)[0].split()
            offset = int(fields[0])
            words = int(fields[3], 16)
            names: list[str] = []
            for i in range(words):
                name = normalise_lemma(fields[4 + 2 * i])
                if name not in names:
                    names.append(name)
            pos = 4 + 2 * words
            pointers = int(fields[pos])
            parents: list[int] = []
            for i in range(pointers):
                symbol, target, target_pos = fields[pos + 1 + 4 * i: pos + 4 + 4 * i]
                if symbol in ("@", "@i") and target_pos == "n":
                    parents.append(int(target))
            lemmas[offset] = names
            hypernyms[offset] = parents
    return lemmas, hypernyms


def read_exceptions(path: str) -> list[tuple[str, list[str]]]:
    """noun.exc: (inflected form, base forms), normalised like lemmas."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = [normalise_lemma(w) for w in line.split()]
            if len(fields) >= 2:
                out.append((fields[0], fields[1:]))
    return out


def ranges(values: list[int]) -> str:
    """Sorted class indices as comma-separated runs: [1, 2, 3, 7] -> "1-3,7"."""
    parts = []
    start = prev = None
    for v in values:
        if prev is not None and v == prev + 1:
            prev = v
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = v
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def license_text(copyright_path: str) -> str:
    """The WordNet 3.0 license notice from the Debian copyright file, verbatim once unfolded
    from Debian's format (its continuation lines start with a space; " ." is an empty line).
    It is the same text as the header of data.noun."""
    lines = open(copyright_path, encoding="utf-8").read().splitlines()
    out: list[str] = []
    inside = False
    for line in lines:
        if line.startswith("License: WordNet3.0"):
            inside = True
            continue
        if inside:
            if not line.startswith(" "):
                break
            body = line[1:]
            out.append("" if body == "." else body)
    if not out:
        sys.exit("no WordNet3.0 license text in " + copyright_path)
    return "\n".join(out) + "\n"


def main() -> None:
    package = wordnet_dir()
    data_dir = os.path.join(package, "usr", "share", "wordnet")
    lemmas, hypernyms = read_nouns(os.path.join(data_dir, "data.noun"))
    exceptions = read_exceptions(os.path.join(data_dir, "noun.exc"))
    wnids = imagenet_wnids()

    class_of: dict[int, int] = {}
    for index, wnid in enumerate(wnids):
        offset = int(wnid[1:])
        if not wnid.startswith("n") or offset not in lemmas:
            sys.exit(f"class {index}: {wnid} is not a noun synset of data.noun")
        class_of[offset] = index

    # Every class and every (instance) hypernym ancestor of one, with the classes under it.
    under: dict[int, set[int]] = {}
    for offset, index in class_of.items():
        stack, seen = [offset], {offset}
        while stack:
            node = stack.pop()
            under.setdefault(node, set()).add(index)
            for parent in hypernyms[node]:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
    nested = [o for o in class_of if len(under[o]) > 1]
    if nested:
        print(f"note: {len(nested)} classes have other classes below them", file=sys.stderr)

    # Irregular plurals whose base is a vocabulary word, or the last word of a vocabulary
    # phrase (so "snow geese" can find "snow goose").
    words = {w for o in under for w in lemmas[o]}
    bases = words | {w.rsplit(" ", 1)[-1] for w in words}
    plurals = sorted((form, [b for b in base if b in bases])
                     for form, base in exceptions if any(b in bases for b in base))

    rows = [
        "# lookalike word vocabulary (src/words): WordNet 3.0 noun synsets that are ImageNet-1k"
        " classes or hypernym ancestors of one. Generated by scripts/words/make_vocabulary.py"
        " from Debian's wordnet-base (data.noun, noun.exc) and timm " + TIMM_VERSION
        + "'s imagenet_synsets.txt; do not edit. WordNet 3.0 Copyright 2006 by Princeton"
        " University. All rights reserved. See assets/WORDNET_LICENSE and assets/CREDITS.md.",
        "# [synsets] rows: wnid, lemmas (lower case, spaces for underscores, separated by |),"
        " hypernym wnids (space separated), its class index or -, the class indices under it"
        " (itself included; runs a-b, comma separated); tab separated.",
        "# [plurals] rows: plural form, singular form(s) (separated by | if several); from noun.exc.",
        "[synsets]",
    ]
    for offset in sorted(under):
        parents = " ".join(f"n{p:08d}" for p in hypernyms[offset] if p in under)
        own = str(class_of[offset]) if offset in class_of else "-"
        rows.append("\t".join([f"n{offset:08d}", "|".join(lemmas[offset]), parents, own,
                               ranges(sorted(under[offset]))]))
    rows.append("[plurals]")
    for form, base in plurals:
        rows.append(f"{form}\t{'|'.join(base)}")
    text = "\n".join(rows) + "\n"
    with open(OUT_TSV, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    with open(OUT_LICENSE, "w", encoding="utf-8", newline="\n") as f:
        f.write(license_text(os.path.join(package, "usr", "share", "doc", "wordnet-base",
                                          "copyright")))
    print(f"wrote {OUT_TSV}: {len(under)} synsets, {len(plurals)} plurals, {len(text)} bytes",
          file=sys.stderr)


if __name__ == "__main__":
    main()
