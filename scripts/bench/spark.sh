#!/usr/bin/env bash
# lookalike index vs the Spark job + lookalike import, side by side on the same corpus of N real
# photos (scripts/bench/corpus.sh), alternating, ROUNDS times; prints one JSON line per run.
#
#   scripts/bench/spark.sh [N] [ROUNDS] [MASTERS] [MODES]
#
# MASTERS (default "local[2]"): the Spark masters to run in each round, e.g. "local[1] local[2]"
# to see how throughput grows with executor cores; MODES (default "bytes paths"): the job's
# input modes. Each Spark run is timed whole (spark-submit,
# JVM start included) and the job's own record gives the time inside the session; import is
# timed separately. Needs a release build and scripts/setup.sh --tests (PySpark, Java).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
N="${1:-3000}"
ROUNDS="${2:-3}"
MASTERS="${3:-local[2]}"
MODES="${4:-bytes paths}"
BIN="$ROOT/target/release/lookalike"
VENV="$ROOT/.cache/spark-venv"
export LOOKALIKE_MODEL_DIR="${LOOKALIKE_MODEL_DIR:-$ROOT/.cache/models}"
export PYSPARK_PYTHON="$VENV/bin/python"
[[ -x "$BIN" ]] || { echo "build first: cargo build --release" >&2; exit 1; }
[[ -x "$VENV/bin/spark-submit" ]] || { echo "run scripts/setup.sh --tests first" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$ROOT/scripts/bench/corpus.sh" "$WORK/corpus" "$N"
"$BIN" --quiet model fetch --model lite0 >/dev/null

# now: seconds since the epoch, with a fraction.
now() { date +%s.%N; }

for ((round = 1; round <= ROUNDS; round++)); do
    rm -rf "$WORK/db"
    t0=$(now)
    "$BIN" --quiet --db "$WORK/db" index --json "$WORK/corpus" >"$WORK/index.json"
    t1=$(now)
    python3 - "$round" "$t0" "$t1" "$WORK/index.json" <<'EOF'
import json, sys
round_, t0, t1, path = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
r = json.load(open(path))
print(json.dumps({"round": int(round_), "run": "index", "files": r["added"],
                  "seconds": round(t1 - t0, 2), "images_per_second": round(r["added"] / (t1 - t0), 1)}))
EOF
    for master in $MASTERS; do
        for mode in $MODES; do
            rm -rf "$WORK/shards" "$WORK/db2"
            t0=$(now)
            (cd "$WORK" && "$VENV/bin/spark-submit" --master "$master" \
                "$ROOT/spark/lookalike_spark.py" "$WORK/corpus" --out "$WORK/shards" \
                --input-mode "$mode" --binary "$BIN" --model-dir "$LOOKALIKE_MODEL_DIR" \
                >"$WORK/spark.out" 2>"$WORK/spark.err")
            t1=$(now)
            "$BIN" --quiet --db "$WORK/db2" import --json "$WORK/shards" >"$WORK/import.json"
            t2=$(now)
            python3 - "$round" "$master" "$mode" "$t0" "$t1" "$t2" "$WORK" <<'EOF'
import json, sys
round_, master, mode = sys.argv[1:4]
t0, t1, t2 = map(float, sys.argv[4:7])
work = sys.argv[7]
job = json.load(open(f"{work}/shards/_lookalike_job.json"))
imp = json.load(open(f"{work}/import.json"))
files = job["totals"]["files"]
tasks = job["tasks"]
print(json.dumps({
    "round": int(round_), "run": f"spark {master} {mode} + import", "files": files,
    "spark_seconds": round(t1 - t0, 2), "job_seconds": job["totals"]["wall_seconds"],
    "tasks": len(tasks), "longest_task_seconds": max(t["task_seconds"] for t in tasks),
    "import_seconds": round(t2 - t1, 2), "import_rows_per_second": round(imp["rows_per_second"]),
    "import_ann_seconds": round(imp["ann_seconds"], 2),
    "session_seconds": job["totals"]["session_seconds"],
    "planning_seconds": job["totals"]["planning_seconds"],
    "embedding_seconds": job["totals"]["embedding_seconds"],
    "task_seconds_sum": round(sum(t["task_seconds"] for t in tasks), 2),
    "seconds": round(t2 - t0, 2), "images_per_second": round(files / (t2 - t0), 1),
}))
EOF
        done
    done
done
