"""Scores word searches against labelled photos (scripts/bench/words.sh).

usage: words_score.py LABELS.tsv NAME=ANSWERS.jsonl...

LABELS.tsv: file, comma-separated words true of it, source package, original path.
ANSWERS.jsonl: one `lookalike search --json --text WORD` line per word; NAME=scenes leaves
the tuxpaint-stamps-default cut-outs out of the relevant sets (that library does not hold them).
Prints a markdown table: per word and library, the relevant photos R, precision@10 (at R when
R < 10), the precision and recall of the whole answer (every photo above the threshold), and
the wrong answers in the top; then the means.
"""

import json
import os
import sys

K = 10
CUT_OUTS = "tuxpaint-stamps-default"


def main():
    labels_path, runs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
    truth = {}
    for line in open(labels_path, encoding="utf-8"):
        file, words, source, _ = line.rstrip("\n").split("\t")
        truth[file] = (set(w for w in words.split(",") if w), source)
    print("| library | word | relevant R | precision@min(10,R) | whole answer: precision, recall "
          "| wrong answers in the top (their top label) |")
    print("|---|---|---|---|---|---|")
    means = {}
    for name, path in runs:
        photos = {f: w for f, (w, s) in truth.items() if name != "scenes" or s != CUT_OUTS}
        scores = []
        for line in open(path, encoding="utf-8"):
            answer = json.loads(line)
            word = answer["query"]
            relevant = {f for f, words in photos.items() if word in words}
            if not relevant:
                continue
            depth = min(K, len(relevant))
            top = answer["results"][:depth]
            hits = [os.path.basename(r["path"]) for r in top]
            right = sum(h in relevant for h in hits)
            wrong = [
                f"{h} ({r['labels'][0]['name'].split(',')[0]})" if r.get("labels") else h
                for h, r in zip(hits, top)
                if h not in relevant
            ]
            precision = right / depth
            everything = [os.path.basename(r["path"]) for r in answer["results"]]
            found = sum(h in relevant for h in everything)
            whole = (found / len(everything) if everything else 1.0, found / len(relevant))
            scores.append((word, len(relevant), precision, whole))
            print(f"| {name} | {word} | {len(relevant)} | {precision:.2f} ({right}/{depth}) | "
                  f"{whole[0]:.2f} of {len(everything)}, {whole[1]:.2f} | "
                  f"{', '.join(wrong) or '-'} |")
        full = [p for _, r, p, _ in scores if r >= K]
        mean = lambda xs: sum(xs) / max(len(xs), 1)
        means[name] = (mean(full), len(full), mean([s[2] for s in scores]), len(scores),
                       mean([s[3][0] for s in scores]), mean([s[3][1] for s in scores]))
    for name, (full, n_full, every, n_every, whole_p, whole_r) in means.items():
        print(f"\n{name}: mean precision@10 {full:.3f} over the {n_full} words with R >= 10; "
              f"{every:.3f} over all {n_every} words (at min(10, R)); whole answers: "
              f"precision {whole_p:.3f}, recall {whole_r:.3f}")


if __name__ == "__main__":
    main()
