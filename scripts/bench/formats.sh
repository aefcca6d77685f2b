#!/usr/bin/env bash
# Decode and end-to-end indexing per format, lookalike beside the classic pipeline (Pillow with
# pillow-heif) in the same run, on the corpora of scripts/bench/formats-data.sh. RAW has no
# classic peer (Pillow reads no RAW): lookalike alone. Prints JSON lines under a "# FORMAT"
# header each.
#   scripts/bench/formats.sh [FORMAT...]      default: jpeg png webp heic avif raw
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
export LOOKALIKE_MODEL_DIR="${LOOKALIKE_MODEL_DIR:-$ROOT/.cache/models}"
FORMATS="$ROOT/.cache/bench/formats"
[[ -d "$FORMATS/heic" ]] || scripts/bench/formats-data.sh
PY="$ROOT/.cache/bench-venv/bin/python"
export CLASSIC_PIPELINE="$ROOT/scripts/bench/classic_formats.py"
export CLASSIC_DIR="${CLASSIC_DIR:-$ROOT/../shared/bench}"
# At least this many files per end-to-end run: a format's photos repeated under new names.
MIN_FILES="${MIN_FILES:-120}"

corpus_of() { # DIR -> a temporary folder of >= MIN_FILES hard links to DIR's files
    local corpus i=0
    corpus="$(mktemp -d)"
    mapfile -t files < <(find "$1" -type f | sort)
    while ((i < MIN_FILES || i < ${#files[@]})); do
        local f="${files[i % ${#files[@]}]}"
        ln "$f" "$corpus/$(printf '%05d' "$i")_$(basename "$f")"
        i=$((i + 1))
    done
    echo "$corpus"
}

for format in "${@:-jpeg png webp heic avif raw}"; do
  for format in $format; do
    echo "# $format: $(find "$FORMATS/$format" -type f | wc -l) files"
    dir="$FORMATS/$format"
    for _ in 1 2; do
        cargo bench --quiet --locked --bench throughput -- decode "$dir" 3 2>/dev/null
        [[ "$format" == raw ]] || "$PY" scripts/bench/peer.py decode "$dir" 3
    done
    corpus="$(corpus_of "$dir")"
    if [[ "$format" == raw ]]; then
        n=$(find "$corpus" -type f | wc -l)
        cargo build --release --locked --quiet
        for round in 1 2 3; do
            rm -rf "$corpus.db"
            start=$(date +%s.%N)
            target/release/lookalike --quiet index --db "$corpus.db" "$corpus" >/dev/null
            end=$(date +%s.%N)
            "$PY" -c "import json; print(json.dumps({'bench':'index','round':$round,'files':$n,'lookalike_images_per_second':round($n/($end-$start),1)}))"
        done
        rm -rf "$corpus.db"
    else
        CORPUS_DIR="$corpus" scripts/bench.sh index | grep -v '^#'
    fi
    rm -rf "$corpus"
  done
done
