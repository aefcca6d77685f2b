#!/usr/bin/env bash
# The word-search benchmark (issue 16): precision@10 of `lookalike search --text WORD` for
# category words, on the labelled real photos of words-data.sh (labels decided from the
# packages' own file names and documents, never from our classifier; see WORDS_DATA.md).
# Two libraries are indexed: every photo, and the same without the Tux Paint cut-outs (real
# photos with their background removed: easier than scenes). For a word with fewer than 10
# relevant photos, precision is taken at that count (R-precision). Every answer above the
# threshold is kept too: the precision and recall of the whole answer say what the threshold
# lets through. Prints one markdown row per word and library, then the means.
#
#   scripts/bench/words.sh [WORK_DIR]          (default target/bench-words)
# MIN_SCORE: the --min-score of the searches (default: the CLI's).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${1:-$ROOT/target/bench-words}"
mkdir -p "$WORK" && WORK="$(cd "$WORK" && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/lookalike"
export LOOKALIKE_MODEL_DIR="${LOOKALIKE_MODEL_DIR:-$ROOT/.cache/models}"
DATA="${LOOKALIKE_BENCH_DATA:-$ROOT/.cache/bench}/words"
WORDS=(animal bird dog cat fish flower fruit food vehicle car building boat)

bash "$ROOT/scripts/bench/words-data.sh" >/dev/null
(cd "$ROOT" && cargo build --release --locked --quiet)

# The library without cut-outs: every photo not from tuxpaint-stamps-default (hard links).
SCENES="$WORK/scenes"
rm -rf "$SCENES" && mkdir -p "$SCENES"
awk -F'\t' '$3 != "tuxpaint-stamps-default" { print $1 }' "$DATA/labels.tsv" |
    while read -r name; do ln "$DATA/photos/$name" "$SCENES/$name" 2>/dev/null || cp "$DATA/photos/$name" "$SCENES/$name"; done

for library in all scenes; do
    photos="$DATA/photos"
    [[ $library == scenes ]] && photos="$SCENES"
    db="$WORK/db-$library"
    rm -rf "$db"
    start=$(date +%s.%N)
    "$BIN" --quiet --db "$db" index "$photos"
    end=$(date +%s.%N)
    files=$(find -L "$photos" -type f | wc -l)
    echo "indexed $library: $files photos in $(echo "$end - $start" | bc) s" >&2
    : >"$WORK/answers-$library.jsonl"
    for word in "${WORDS[@]}"; do
        "$BIN" --quiet --db "$db" search --json --text "$word" -k 1000 \
            ${MIN_SCORE:+--min-score "$MIN_SCORE"} >>"$WORK/answers-$library.jsonl"
    done
done
python3 "$ROOT/scripts/bench/words_score.py" "$DATA/labels.tsv" \
    "all=$WORK/answers-all.jsonl" "scenes=$WORK/answers-scenes.jsonl"
