#!/usr/bin/env python3
"""Scores found duplicate groups against the truth of the duplicates benchmark (duplicates.sh).

    duplicates_score.py TRUTH.tsv FOUND.json [--name NAME] [--seconds S]
    duplicates_score.py TRUTH.tsv --pairs FOUND.tsv [--name NAME]
    duplicates_score.py TRUTH.tsv --header | --summary

TRUTH.tsv: `path<TAB>group` for every image of the set, which lies in the folder of TRUTH.tsv:
originals/, copies/<original>__<transform>.jpg, renditions/<resized|other-aspect>/,
pairs/<scene>/ (same-scene pairs; an original may be one of them), bursts/<video>/.
FOUND.json: {"groups": [{"members": [{"path": ...}, ...]}, ...]} (`lookalike duplicates
--json`; other fields ignored; {"unavailable": WHY} prints WHY instead of numbers).
FOUND.tsv: found pairs, two paths a line (imagededup's answer as it is).

Prints one markdown row: true pairs, found pairs, pair precision and recall, group purity (the
share of found groups whose members are all of one truth group), recall per kind of duplicate
(the kind of a pair's member that is not the original: the copy's transform, the rendition,
a same-scene member that is the same photo; "among copies" where neither is the original: two
copies, a copy and a rendition) and the hard negatives wrongly grouped: found pairs of two
different photos of one same-scene pair, or of one burst. Python 3 standard library only.
"""
import argparse
import collections
import itertools
import json
import os
import sys

# The copy-detection transforms in the order of `lookalike eval copydetect`.
TRANSFORMS = ["downscale50", "jpeg30", "crop70", "randcrop", "rotate", "flip", "gray",
              "brightcontrast", "text"]
OTHER_KINDS = ["resized", "other-aspect", "same-scene, same photo", "among copies"]


def load_truth(path):
    root = os.path.dirname(os.path.realpath(path))
    group, where = {}, {}
    with open(path) as f:
        for line in f:
            file, name = line.rstrip("\n").split("\t")
            file = os.path.realpath(file)
            group[file] = name
            where[file] = os.path.relpath(file, root).split(os.sep)  # [folder, ..., name]
    return group, where


def kind(where):
    """What a member that is not its group's original is: its transform, its rendition..."""
    folder = where[0]
    if folder == "copies":
        return os.path.splitext(where[-1])[0].rsplit("__", 1)[1]
    if folder == "renditions":
        return where[1]
    if folder == "pairs":
        return "same-scene, same photo"
    return folder


def true_pairs(group, where):
    """{pair: kind} for every pair of files in one truth group."""
    members = {}
    for file, name in group.items():
        members.setdefault(name, []).append(file)
    pairs = {}
    for name, files in members.items():
        for a, b in itertools.combinations(sorted(files), 2):
            if os.path.basename(a) == name:
                pairs[(a, b)] = kind(where[b])
            elif os.path.basename(b) == name:
                pairs[(a, b)] = kind(where[a])
            else:
                pairs[(a, b)] = "among copies"
    return pairs


def hard_negative(a, b, group, where):
    """'scene' or 'burst' for two different photos of one same-scene pair or one burst."""
    if group[a] == group[b] or where[a][0] != where[b][0] or where[a][:-1] != where[b][:-1]:
        return None
    return {"pairs": "scene", "bursts": "burst"}.get(where[a][0])


def kinds_of(pairs):
    present = set(pairs.values())
    return [k for k in TRANSFORMS + OTHER_KINDS if k in present] + sorted(
        present - set(TRANSFORMS + OTHER_KINDS))


def found_groups(args, group):
    """The found groups as lists of known paths; unknown paths are dropped with a warning."""
    if args.pairs:
        with open(args.pairs) as f:
            pairs = [line.split("\t") for line in f.read().splitlines() if line]
        groups = components(pairs)
    else:
        with open(args.found) as f:
            found = json.load(f)
        if "unavailable" in found:
            return found["unavailable"], None, None
        groups = [[m["path"] for m in g["members"]] for g in found["groups"]]
        pairs = [p for g in groups for p in itertools.combinations(g, 2)]
    seconds = args.seconds if args.seconds is not None else (
        None if args.pairs else found.get("seconds"))
    unknown = set()

    def known(files):
        paths = [os.path.realpath(p) for p in files]
        unknown.update(p for p in paths if p not in group)
        return [p for p in paths if p in group]

    groups = [known(g) for g in groups]
    pairs = {tuple(sorted(p)) for p in map(known, pairs) if len(p) == 2 and p[0] != p[1]}
    if unknown:
        print(f"{len(unknown)} found paths are not in the truth, e.g. {min(unknown)}",
              file=sys.stderr)
    return [g for g in groups if len(g) > 1], pairs, seconds


def components(pairs):
    parent = {}

    def root(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in pairs:
        parent[root(a)] = root(b)
    out = {}
    for x in parent:
        out.setdefault(root(x), []).append(x)
    return list(out.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("truth")
    parser.add_argument("found", nargs="?")
    parser.add_argument("--pairs", help="found pairs, two paths a line, instead of FOUND.json")
    parser.add_argument("--name", default="?")
    parser.add_argument("--seconds", type=float, help="wall time (default: FOUND.json's)")
    parser.add_argument("--header", action="store_true", help="print the table's header")
    parser.add_argument("--summary", action="store_true", help="what the set holds")
    args = parser.parse_args()
    group, where = load_truth(args.truth)
    truth = true_pairs(group, where)
    kinds = kinds_of(truth)
    per_kind = collections.Counter(truth.values())
    negatives = collections.Counter(hard_negative(a, b, group, where)
                                    for a, b in itertools.combinations(sorted(group), 2))

    if args.summary:
        folders = {}
        for w in where.values():
            folders.setdefault("/".join(w[:2]) if w[0] == "renditions" else w[0], []).append(w)
        originals = {g for g, w in zip(group.values(), where.values()) if w[0] == "copies"}
        print(f"set: {len(group)} images in {len(set(group.values()))} truth groups "
              f"({len(originals)} originals with copies); " +
              ", ".join(f"{folder} {len(ws)}" for folder, ws in sorted(folders.items())),
              file=sys.stderr)
        print(f"true pairs: {len(truth)} (" + ", ".join(f"{k} {per_kind[k]}" for k in kinds) +
              f"); hard-negative pairs: scene {negatives['scene']}, burst {negatives['burst']}",
              file=sys.stderr)
        return
    if args.header:
        print("| tool | true pairs | found pairs | precision | recall | group purity | " +
              " | ".join(f"{k} ({per_kind[k]})" for k in kinds) +
              f" | hard negatives grouped: scene ({negatives['scene']}) / burst"
              f" ({negatives['burst']}) | wall s |")
        print("|---" * (8 + len(kinds)) + "|")
        return
    if not (args.found or args.pairs):
        parser.error("FOUND.json or --pairs FOUND.tsv")

    groups, found, seconds = found_groups(args, group)
    if found is None:
        print(f"| {args.name} | unavailable: {groups} |")
        return
    hit = found & truth.keys()
    pure = sum(1 for g in groups if len({group[p] for p in g}) == 1)
    wrong = collections.Counter(hard_negative(a, b, group, where) for a, b in found - hit)
    hit_kind = collections.Counter(truth[p] for p in hit)

    def ratio(a, b):
        return f"{a / b:.4f}" if b else "-"

    print(f"| {args.name} | {len(truth)} | {len(found)} | {ratio(len(hit), len(found))} | "
          f"{ratio(len(hit), len(truth))} | {ratio(pure, len(groups))} | " +
          " | ".join(ratio(hit_kind[k], per_kind[k]) for k in kinds) +
          f" | {wrong['scene']} / {wrong['burst']} | "
          f"{'-' if seconds is None else f'{seconds:.1f}'} |")


if __name__ == "__main__":
    main()
