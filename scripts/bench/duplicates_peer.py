#!/usr/bin/env python3
"""imagededup's duplicate finding at its defaults, for the duplicates benchmark (duplicates.sh).

    duplicates_peer.py SET_DIR OUT.json --method phash|cnn

Runs PHash().find_duplicates (default max_distance_threshold 10) or CNN().find_duplicates
(default min_similarity_threshold 0.9) over every image under SET_DIR (recursive=True: the set
has subfolders), timed, and writes
    OUT.json       {"method", "seconds", "groups": [{"members": [{"path": ...}, ...]}, ...]}
    OUT.pairs.tsv  the pairs imagededup reported, two absolute paths a line
imagededup answers with a {file: [its duplicates]} map, i.e. pairs, not groups. A user who acts
on it (keeps one file of each set of duplicates) acts on the connected components of those
pairs, so those are the groups written; the raw pairs are scored too. Where the method cannot
run, OUT.json is {"unavailable": "<the exact error>"}.

Runs in the benchmark's throwaway venv. imagededup's package __init__s import torch even for the
hash modes; where torch is not installed, the hashing module (imagededup's own code, unchanged)
is loaded with those __init__s skipped.
"""
import argparse
import importlib
import json
import os
import sys
import time
import traceback
import types


def imagededup_class(method):
    name = {"phash": "PHash", "cnn": "CNN"}[method]
    try:
        import torch  # noqa: F401
    except ImportError:
        if method == "cnn":
            raise
        # Stand-ins for the imagededup.methods and imagededup.utils packages: their submodules
        # load from the real folders, but their __init__ (which imports torch) does not run.
        import imagededup
        for sub in ("methods", "utils"):
            package = types.ModuleType(f"imagededup.{sub}")
            package.__path__ = [os.path.join(imagededup.__path__[0], sub)]
            sys.modules[package.__name__] = package
        return importlib.import_module("imagededup.methods.hashing").PHash
    return getattr(importlib.import_module("imagededup.methods"), name)


def components(pairs):
    """Connected components (of two or more files) of the pairs, by union-find."""
    parent = {}

    def root(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups = {}
    for x in parent:
        groups.setdefault(root(x), []).append(x)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("set_dir")
    parser.add_argument("out")
    parser.add_argument("--method", choices=["phash", "cnn"], required=True)
    args = parser.parse_args()
    set_dir = os.path.realpath(args.set_dir)
    pairs_out = os.path.splitext(args.out)[0] + ".pairs.tsv"
    if os.path.exists(pairs_out):
        os.remove(pairs_out)  # a former run's
    try:
        method = imagededup_class(args.method)
        start = time.perf_counter()  # the imports (torch's: seconds) not counted
        finder = method()
        # Defaults all along; only recursive is set, for the set's subfolders.
        found = finder.find_duplicates(image_dir=set_dir, recursive=True)
    except Exception as e:  # noqa: BLE001 - whatever stops the peer is the report
        trace = traceback.format_exc()
        why = f"{type(e).__name__}: {e}"
        if "load_state_dict_from_url" in trace:
            why += " (torch.hub fetching the pretrained weights)"
        elif isinstance(e, ImportError):
            why += " (PEER_TORCH=1 installs torch and torchvision into the peer venv)"
        print(f"imagededup {args.method}: unavailable: {why}", file=sys.stderr)
        with open(args.out, "w") as f:
            json.dump({"method": args.method, "unavailable": why}, f)
        return
    seconds = time.perf_counter() - start
    # Keys and duplicates are paths relative to image_dir; each pair is listed from both ends.
    pairs = sorted({tuple(sorted((os.path.join(set_dir, a), os.path.join(set_dir, b))))
                    for a, dups in found.items() for b in dups})
    groups = components(pairs)
    with open(args.out, "w") as f:
        json.dump({"method": args.method, "seconds": seconds,
                   "groups": [{"members": [{"path": p} for p in g]} for g in groups]}, f)
    with open(pairs_out, "w") as f:
        f.writelines(f"{a}\t{b}\n" for a, b in pairs)
    print(f"imagededup {args.method}: {len(found)} images, {len(pairs)} pairs, "
          f"{len(groups)} groups, {seconds:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
