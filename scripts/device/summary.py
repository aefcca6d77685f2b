#!/usr/bin/env python3
"""The compact end of check.sh: reads its results folder, prints a summary, writes summary.json.

  summary.py RESULTS_DIR PHOTOS_DIR DEVICE
"""
import json
import os
import sys


def last_json(path):
    """The last line of a file that parses as a JSON object (None if none)."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def read_text(path):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def fmt_rate(v):
    return "%8.0f" % v if isinstance(v, (int, float)) else "%8s" % "-"


def main(res, photos, device):
    parts = {}
    for line in read_text(os.path.join(res, "parts.tsv")).splitlines():
        f = line.split("\t")
        if len(f) == 3:
            parts[f[0]] = {"rc": f[1], "seconds": float(f[2]) if f[2] else 0.0}
    r = {name: last_json(os.path.join(res, name + ".out")) for name in (
        "gen_photos", "lk_bench_dev", "torch_bench", "lk_bench_cpu", "lk_index_dev", "lk_embed_dev",
        "lk_index_dev_fp32", "lk_index_dev_formats", "lk_index_cpu", "torch_check", "torch_lite2")}
    summary = {"device": device, "parts": parts, "results": r}

    info = read_text(os.path.join(res, "info.out")).splitlines()
    for line in info[:4]:
        print(line)

    g = r["gen_photos"]
    if g:
        print("photos: %d generated (%s), %.1f MP and %.0f KB on average, in %.0f s with %s"
              % (g["images"], ", ".join("%s %d" % kv for kv in sorted(g["by_format"].items())),
                 g["megapixels_mean"], g["bytes_mean"] / 1024, g["seconds"], g["tool"]))

    # Network-only images/s: one row per (who, variant, precision), one column per batch.
    rows, batches = {}, set()

    def add(who, bench, variant_key=None):
        if not bench:
            return
        for n in bench.get("network", []):
            if "batch" not in n:
                continue
            key = (who, n.get(variant_key, "") if variant_key else "", n.get("precision", ""))
            batches.add(int(n["batch"]))
            rows.setdefault(key, {})[int(n["batch"])] = n.get("images_per_s", n.get("error"))

    add("lookalike " + device, r["lk_bench_dev"])
    add("torch", r["torch_bench"], "variant")
    add("lookalike cpu", r["lk_bench_cpu"])
    add("torch lite2", r["torch_lite2"], "variant")
    if rows:
        cols = sorted(batches)
        model = (r["lk_bench_dev"] or r["torch_bench"] or {}).get("model", "?")
        print("network only, images/s (%s; torch lite2: random weights)" % model)
        print("  %-34s" % "" + "".join("%8s" % ("b%d" % b) for b in cols))
        for (who, variant, precision), vals in rows.items():
            label = " ".join(x for x in (who, variant, precision) if x)
            print("  %-34s" % label + "".join(fmt_rate(vals.get(b)) for b in cols))
        errors = [(k, v) for k, vs in rows.items() for v in vs.values() if isinstance(v, str)]
        for k, v in errors[:3]:
            print("  error %s: %s" % (" ".join(x for x in k if x), v[:200]))

    for name in ("lk_bench_dev", "lk_bench_cpu", "torch_bench"):
        if r[name]:
            gpu = r[name].get("gpu")
            print("%s ran on: %s%s" % (name, r[name].get("device"), " (%s)" % gpu if gpu else ""))
    bench = r["lk_bench_dev"] or {}
    for a in bench.get("agreements") or ([bench["agreement"]] if bench.get("agreement") else []):
        print("agreement %s %s vs cpu: %s images, cosine min %.6f median %.6f, top-10 same %.3f,"
              " overlap %.4f"
              % (device, a.get("precision", ""), a.get("images"),
                 a.get("cosine_min", float("nan")), a.get("cosine_median", float("nan")),
                 a.get("top10_same", float("nan")), a.get("top10_overlap", float("nan"))))

    def index_line(name, label):
        j, p = r[name], parts.get(name)
        if not p:
            return
        if not j:
            print("index %s: no report (exit %s after %.0f s)" % (label, p["rc"], p["seconds"]))
            return
        added = j.get("added", 0)
        wall = p["seconds"]
        print("index %s: %d images, %d failed, %.1f s -> %.0f images/s (report); %.1f s wall "
              "with start-up -> %.0f images/s"
              % (label, added, len(j.get("failed", [])), j.get("seconds", 0),
                 j.get("images_per_second", 0), wall, added / wall if wall else 0))

    index_line("lk_index_dev_formats", device + " (carried originals)")
    for f in (r["lk_index_dev_formats"] or {}).get("failed", [])[:5]:
        print("  failed %s: %s" % (os.path.basename(str(f.get("path"))), str(f.get("reason"))[:150]))
    index_line("lk_index_dev", device)
    e, p = r["lk_embed_dev"], parts.get("lk_embed_dev")
    if p:
        if e and e.get("seconds"):
            print("embed %s (shard, no index): %d images, %d failed, %.1f s -> %.0f images/s"
                  % (device, e.get("images", 0), e.get("failed", 0), e["seconds"],
                     e.get("images", 0) / e["seconds"]))
        else:
            print("embed %s: no report (exit %s after %.0f s)" % (device, p["rc"], p["seconds"]))
    index_line("lk_index_dev_fp32", device + " fp32")
    index_line("lk_index_cpu", "cpu (subset)")

    c = r["torch_check"]
    if c:
        o = c.get("vs_onnxruntime", {})
        lk = c.get("vs_lookalike_classify", {})
        line = "peer check (%d images): %s" % (c.get("images", 0), "PASS" if c.get("pass") else "FAIL")
        if "max_abs_logit_diff" in o:
            line += "; vs ORT max|dlogit| %.2g, top-1 %d/%d" % (
                o["max_abs_logit_diff"], o["top1_same"], c["images"])
        elif o:
            line += "; vs ORT: %s" % o.get("error", "?")[:120]
        if "top1_same" in lk:
            line += "; vs lookalike classify top-1 %d/%d, max|dp| %.2g" % (
                lk["top1_same"], c["images"], lk["max_abs_prob_diff"])
        elif lk:
            line += "; vs classify: %s" % lk.get("error", "?")[:120]
        for prec, v in sorted((c.get("cuda") or {}).items()):
            if "max_abs_logit_diff" in v:
                line += "; cuda %s max|dlogit| %.2g top-1 %d/%d" % (
                    prec, v["max_abs_logit_diff"], v["top1_same"], c["images"])
        print(line)

    for name, p in parts.items():
        if p["rc"] not in ("0", "skipped"):
            err = [l for l in read_text(os.path.join(res, name + ".err")).splitlines() if l.strip()]
            errs = [l for l in err if "error" in l.lower()] or err
            why = "timed out" if p["rc"] in ("124", "137") else (errs[-1][:200] if errs else "")
            print("FAILED %s (exit %s): %s" % (name, p["rc"], why))
    print("parts: " + ", ".join("%s %s %.0fs" % (k, "ok" if v["rc"] == "0" else "rc=" + v["rc"],
                                                 v["seconds"]) for k, v in parts.items()))
    with open(os.path.join(res, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
