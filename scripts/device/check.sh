#!/usr/bin/env bash
# The GPU check: one run on the device machine measures lookalike's CUDA path against PyTorch
# and against its own CPU path, on the same machine, in about 5-8 minutes. See README.md here.
#
#   bash scripts/device/check.sh          # on the GPU machine, from the repository root, with
#                                         # .cache/device carried (made by scripts/device/pack.sh)
#   DEVICE=cpu bash scripts/device/check.sh   # the same flow on a machine without a GPU (small
#                                             # counts): tests the script, not the speed
#
# What it prints, each part under its own timeout (a failing part prints its error and the run
# goes on):
#   info           nvidia-smi's line, cores, CPU model, memory, Python/PyTorch versions
#   model_fetch    `lookalike model fetch` (rewrites the ONNX graph from the carried .pth, offline)
#   gen_photos     COUNT photo-sized images (JPEG, some PNG/WebP, 1600-4000 px) made from the
#                  carried real photos, with all cores
#   lk_bench_dev   (a) lookalike --device $DEVICE model bench, batches 64,128,256 x fp16,fp32,
#                  with --images: agreement of device vectors with the CPU path
#   lk_index_dev_formats  `lookalike --device $DEVICE index` of the carried originals (PNG,
#                  WebP, HEIC, JPEG): every format through the device path
#   lk_index_dev   (c) end-to-end `lookalike --device $DEVICE index` of the generated images,
#                  all cores decoding
#   lk_embed_dev   the same images through `embed` into a Parquet shard: the pipeline without
#                  the index's writer (what bounds index beyond the GPU and the decoders)
#   gpu_diagnose   only if lk_bench_dev failed on a GPU: tiny batches with synchronous launches
#                  and debug logs, then compute-sanitizer's memcheck if the machine has it
#   torch_bench    (b) PyTorch network-only images/s (torch_peer.py: eager, BN-folded and
#                  CUDA-graph variants, fp16/fp32, same batches)
#   lk_bench_cpu   (d) lookalike --device cpu model bench (network only, ONNX Runtime)
#   lk_index_cpu   (d) end-to-end CPU index of CPU_INDEX_COUNT of the images
#   torch_check    the peer's logits vs ONNX Runtime on lookalike's graph and vs lookalike
#                  classify (CPU), and its own CUDA fp32/fp16 vs CPU: it computes the same network
#   torch_lite2    PyTorch Lite2 (random weights: only speed) fp16, if time is left
#   gpu_profile    if the bench ran and the machine has Nsight Systems (nsys): the GPU time of
#                  each kernel (cuBLAS's too) and of the copies, batch 256 fp16, if time is left
# then a compact summary. Everything also goes to $OUT (check.log, summary.json, results.tgz)
# when the device tool's OUT is set.
#
# Environment (defaults for DEVICE=cuda; DEVICE=cpu uses small ones):
#   DEVICE=cuda|cuda:N|cpu   PACK=.cache/device   WORK=/tmp/lookalike-check   PYTHON=python3
#   COUNT=4000  CPU_INDEX_COUNT=800  BENCH_SECONDS=3  AGREE_LIMIT=256  BUDGET_S=450 (the whole
#   run's seconds: each part's timeout is capped by what is left, later parts are skipped)
#   INDEX_FP32=0 (1: also index on the device in fp32)
#   PARTS=all, or a comma list of the part names above to run only those (a rerun of what
#   failed: info and model_fetch always run, gen_photos whenever a part needs photos)
set -u

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/scripts/device"
DEVICE="${DEVICE:-cuda}"
PACK="${PACK:-$ROOT/.cache/device}"
WORK="${WORK:-/tmp/lookalike-check}"
PYTHON="${PYTHON:-python3}"
BUDGET_S="${BUDGET_S:-450}"
PARTS="${PARTS:-all}"
RESERVE_S=15 # kept for the summary
if [[ "$DEVICE" == cpu ]]; then
    COUNT="${COUNT:-60}"; CPU_INDEX_COUNT="${CPU_INDEX_COUNT:-30}"; BENCH_SECONDS="${BENCH_SECONDS:-1}"
    AGREE_LIMIT="${AGREE_LIMIT:-16}"
else
    COUNT="${COUNT:-4000}"; CPU_INDEX_COUNT="${CPU_INDEX_COUNT:-800}"; BENCH_SECONDS="${BENCH_SECONDS:-3}"
    AGREE_LIMIT="${AGREE_LIMIT:-256}"
fi
INDEX_FP32="${INDEX_FP32:-0}"
T0=$SECONDS

case "$WORK" in
    /tmp/?*|"$ROOT"/.cache/?*) rm -rf "$WORK" ;;
    *) [[ -e "$WORK" ]] && { echo "check.sh: WORK=$WORK exists and is not under /tmp or .cache: refusing to clear it"; exit 2; } ;;
esac
RES="$WORK/results"
mkdir -p "$RES"
LOG="$WORK/check.log"
[[ -n "${OUT:-}" ]] && LOG="$OUT/check.log"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
: > "$RES/parts.tsv"

# part NAME MAX_SECONDS CMD...: CMD under `timeout` (capped by what is left of BUDGET_S),
# stdout to $RES/NAME.out, stderr to $RES/NAME.err; prints both in short; never stops the run.
want() { [[ "$PARTS" == all || ",$PARTS," == *",$1,"* ]]; }
part() {
    local name=$1 max=$2
    shift 2
    case "$name" in info|model_fetch|gpu_diagnose) ;; gen_photos) want gen_photos || want lk_bench_dev ||
        want lk_index_dev || want lk_embed_dev || want lk_index_cpu || want lk_index_dev_fp32 || return 0 ;;
        *) want "$name" || return 0 ;;
    esac
    local left=$((BUDGET_S - (SECONDS - T0) - RESERVE_S))
    local limit=$((max < left ? max : left))
    if ((limit < 10)); then
        echo "== $name: SKIPPED (out of time, ${left}s left)"
        printf '%s\tskipped\t0\n' "$name" >>"$RES/parts.tsv"
        return 0
    fi
    echo "== $name (limit ${limit}s): $*"
    # A shell function runs in a child bash (timeout runs programs): export it first.
    declare -F "$1" >/dev/null && set -- bash -c "$*"
    local start=$EPOCHREALTIME
    timeout -k 5 "$limit" "$@" >"$RES/$name.out" 2>"$RES/$name.err"
    local rc=$?
    local took
    took=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
    printf '%s\t%s\t%s\n' "$name" "$rc" "$took" >>"$RES/parts.tsv"
    head -c 3000 "$RES/$name.out"
    [[ -s "$RES/$name.out" ]] && echo
    if ((rc != 0)); then
        ((rc == 124 || rc == 137)) && echo "-- $name: TIMED OUT after ${limit}s"
        echo "-- $name: exit $rc after ${took}s; stderr (tail):"
        tail -n 15 "$RES/$name.err" | cut -c1-400
    else
        echo "-- $name: ok in ${took}s"
    fi
    return 0
}

echo "== lookalike device check: DEVICE=$DEVICE COUNT=$COUNT CPU_INDEX_COUNT=$CPU_INDEX_COUNT budget ${BUDGET_S}s, $(date -u +%FT%TZ)"
[[ -f "$PACK/MANIFEST" ]] && sed -n '1,6p' "$PACK/MANIFEST"

# ---------------------------------------------------------------- unpack and environment
unpack() {
    mkdir -p "$WORK/bundle"
    if command -v xz >/dev/null; then
        tar -C "$WORK/bundle" -xJf "$PACK/bundle.tar.xz"
    else
        "$PYTHON" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
            "$PACK/bundle.tar.xz" "$WORK/bundle"
    fi
}
if [[ -f "$PACK/bundle.tar.xz" ]]; then
    unpack || echo "-- unpack failed"
else
    echo "-- no $PACK/bundle.tar.xz: run scripts/device/pack.sh and carry .cache/device"
fi
BIN="$WORK/bundle/bin/lookalike"
MODELS="$WORK/bundle/models"

# CUDA libraries for lookalike (it loads them at run time): libcuda from the driver, cuBLAS,
# cuBLASLt and NVRTC from the Python environment's nvidia-* wheels (every nvidia/**/lib).
LDP=""
add_ld() { [[ -d "$1" ]] && case ":$LDP:" in *":$1:"*) ;; *) LDP="${LDP:+$LDP:}$1" ;; esac; }
if [[ "$DEVICE" != cpu ]]; then
    while IFS= read -r d; do add_ld "$d"; done < <("$PYTHON" - <<'EOF' 2>/dev/null
import os
try:
    import nvidia
    roots = list(nvidia.__path__)
except ImportError:
    roots = []
for r in roots:
    for dp, dns, fns in os.walk(r):
        if os.path.basename(dp) == "lib":
            print(dp)
EOF
)
    if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
        for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64; do
            [[ -e "$d/libcuda.so.1" ]] && add_ld "$d"
        done
    fi
fi
# The binary's own shared libraries (libheif and codecs): the carried copies, only if missing.
if [[ -x "$BIN" ]] && ldd "$BIN" 2>/dev/null | grep -q 'not found'; then
    echo "-- system lacks: $(ldd "$BIN" | awk '/not found/ {print $1}' | tr '\n' ' ')-> carried lib/"
    add_ld "$WORK/bundle/lib"
fi
LK="$WORK/lk"
cat >"$LK" <<EOF
#!/bin/sh
export LD_LIBRARY_PATH="$LDP\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export LOOKALIKE_MODEL_DIR="$MODELS"
unset LOOKALIKE_DEVICE LOOKALIKE_PRECISION LOOKALIKE_DB
exec "$BIN" "\$@"
EOF
chmod +x "$LK"

info() {
    echo "host: $(hostname) $(uname -m), $(nproc) cores: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
    echo "memory: $(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB"}')"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu \
            --format=csv,noheader
    else
        echo "nvidia-smi: not found"
    fi
    echo "python: $("$PYTHON" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1)"
    echo "LD_LIBRARY_PATH for lookalike: $LDP"
    for l in libcuda.so.1 libcublas.so.13 libcublasLt.so.13 libnvrtc.so.13; do
        local f=""
        for d in ${LDP//:/ }; do [[ -e "$d/$l" ]] && f="$d/$l" && break; done
        [[ -z "$f" ]] && f=$(ldconfig -p 2>/dev/null | awk -v l="$l" '$1 == l {print $NF; exit}')
        echo "  $l: ${f:-NOT FOUND}"
    done
    "$LK" --version
    "$LK" --help | grep -q -- '--device' && echo "binary: has --device" || echo "binary: NO --device flag"
    "$LK" model --help | grep -qw bench && echo "binary: has model bench" || echo "binary: NO model bench"
}
export -f info
export PYTHON LDP LK
part info 30 info

HAS_DEVICE=0
"$LK" --help 2>/dev/null | grep -q -- '--device' && HAS_DEVICE=1
# The flags that pick a device, or none when the binary has no --device (then only the CPU
# path exists, and the device parts are skipped unless DEVICE=cpu).
dev_flags() { ((HAS_DEVICE)) && echo "--device $1"; }
if [[ "$DEVICE" == cpu ]]; then
    DEV_PRECISIONS=fp32; TORCH_ARGS=(--device cpu --batch 8 --precision fp32 --variants eager,folded --seconds 1 --repeats 2 --threads "$(nproc)")
    RUN_DEV=1
else
    DEV_PRECISIONS=fp16,fp32; TORCH_ARGS=(--device "$DEVICE" --batch 64,128,256 --precision fp16,fp32 --variants eager,folded,graph --seconds 2 --repeats 5)
    RUN_DEV=$HAS_DEVICE
    ((HAS_DEVICE)) || echo "-- the binary has no --device: the lookalike device parts are skipped"
fi

part model_fetch 60 "$LK" model fetch --model lite0

# ---------------------------------------------------------------- photos
PHOTOS="$WORK/photos"
mkdir -p "$PHOTOS/orig"
cp -r "$PACK/photos/." "$PHOTOS/orig/" 2>/dev/null
part gen_photos 150 "$PYTHON" "$HERE/gen_photos.py" "$PACK/photos/jpeg" "$PHOTOS/gen" --count "$COUNT"
# link_first N DIR: the first N generated files, flat in DIR (hard links: the same bytes).
link_first() {
    mkdir -p "$2"
    find "$PHOTOS/gen" -type f 2>/dev/null | sort | head -n "$1" | while read -r f; do
        ln "$f" "$2/$(basename "$f")" 2>/dev/null || cp "$f" "$2/"
    done
}
link_first "$CPU_INDEX_COUNT" "$PHOTOS/cpu"  # the CPU index's subset
link_first "$AGREE_LIMIT" "$PHOTOS/agree"    # model bench --images (a flat folder)
echo "-- photos: $(find "$PHOTOS/gen" -type f 2>/dev/null | wc -l) generated ($(du -sh "$PHOTOS/gen" 2>/dev/null | cut -f1)), $(find "$PHOTOS/orig" -type f | wc -l) carried originals, $(find "$PHOTOS/cpu" -type f | wc -l) in the CPU subset, $(find "$PHOTOS/agree" -type f | wc -l) for the agreement"

# ---------------------------------------------------------------- the measurements
# Where a failing GPU path fails: tiny batches with synchronous launches (the error then names
# the launch that failed, with lookalike's debug log), then NVIDIA's memory checker, if the
# machine has it, for the first out-of-bounds access (kernel, thread and address).
gpu_diagnose() {
    local p sanitizer
    for p in fp32 fp16; do
        echo "--- $p, batch 2, CUDA_LAUNCH_BLOCKING=1"
        CUDA_LAUNCH_BLOCKING=1 LOOKALIKE_LOG=debug "$LK" --device "$DEVICE" --precision "$p" \
            model bench --batch 2 --precisions "$p" --seconds 0.2 --json 2>&1 | tail -n 25
    done
    sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
    if [[ -n "$sanitizer" ]]; then
        echo "--- $sanitizer --tool memcheck, fp16, batch 2"
        "$sanitizer" --tool memcheck --print-limit 5 "$LK" --device "$DEVICE" \
            model bench --batch 2 --precisions fp16 --seconds 0.1 2>&1 | tail -n 60
    else
        echo "--- no compute-sanitizer on this machine"
    fi
}
export -f gpu_diagnose
export DEVICE
if ((RUN_DEV)); then
    # The agreement compares a GPU with the CPU: nothing to compare on the CPU itself.
    AGREE=(--images "$PHOTOS/agree" --limit "$AGREE_LIMIT")
    [[ "$DEVICE" == cpu ]] && AGREE=()
    # shellcheck disable=SC2046
    part lk_bench_dev 150 "$LK" $(dev_flags "$DEVICE") model bench --batch 64,128,256 \
        --precisions "$DEV_PRECISIONS" --seconds "$BENCH_SECONDS" "${AGREE[@]}" --json
    # The GPU path has never run before a first GPU session: if it failed, find where in this
    # same run (a rerun costs minutes of device time).
    # (Only when it ran and failed: a rerun of other parts skips it.)
    if [[ "$DEVICE" != cpu ]] && awk -F'\t' '$1 == "lk_bench_dev" && $2 != 0 && $2 != "skipped" {failed = 1} END {exit !failed}' "$RES/parts.tsv"; then
        part gpu_diagnose 100 gpu_diagnose
    fi
    # The carried originals first (PNG, WebP, HEIC, small JPEGs: do all formats go through?),
    # then the generated photos alone, for the rate.
    # shellcheck disable=SC2046
    part lk_index_dev_formats 60 "$LK" $(dev_flags "$DEVICE") --db "$WORK/db-dev-formats" \
        index --json "$PHOTOS/orig"
    # shellcheck disable=SC2046
    part lk_index_dev 180 "$LK" $(dev_flags "$DEVICE") --db "$WORK/db-dev" index --json \
        --decode-threads "$(nproc)" "$PHOTOS/gen"
    # The same photos into a vector shard: the same pipeline without the index's writer
    # (HNSW insertion of 19 vectors per image), the path the Spark job takes.
    # shellcheck disable=SC2046
    part lk_embed_dev 120 "$LK" $(dev_flags "$DEVICE") embed --json \
        --decode-threads "$(nproc)" --out "$WORK/shards-dev" "$PHOTOS/gen"
fi
part torch_bench 150 "$PYTHON" "$HERE/torch_peer.py" bench --model-dir "$MODELS" "${TORCH_ARGS[@]}"
# shellcheck disable=SC2046
part lk_bench_cpu 60 "$LK" $(dev_flags cpu) model bench --batch 16,64 --precisions fp32 \
    --seconds "$BENCH_SECONDS" --json
# shellcheck disable=SC2046
part lk_index_cpu 120 "$LK" $(dev_flags cpu) --db "$WORK/db-cpu" index --json \
    --decode-threads "$(nproc)" "$PHOTOS/cpu"
part torch_check 90 "$PYTHON" "$HERE/torch_peer.py" check-logits --model-dir "$MODELS" \
    --lookalike "$LK" --limit 16 "$PACK/photos/jpeg" "$PACK/photos/other"
if ((RUN_DEV)) && [[ "$INDEX_FP32" == 1 ]]; then
    # shellcheck disable=SC2046
    part lk_index_dev_fp32 120 "$LK" $(dev_flags "$DEVICE") --precision fp32 --db "$WORK/db-dev32" \
        index --json --decode-threads "$(nproc)" "$PHOTOS/gen"
fi
# Where the GPU's time goes, kernel by kernel (cuBLAS's included), if the machine has Nsight
# Systems and the bench ran: last, with what is left of the budget.
gpu_profile() {
    local nsys
    nsys=$(command -v nsys || ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -n 1)
    [[ -n "$nsys" ]] || { echo "no nsys on this machine"; return 0; }
    "$nsys" profile --trace cuda --sample none --cpuctxsw none --force-overwrite true \
        --output "$WORK/profile" "$LK" --device "$DEVICE" model bench --batch 256 \
        --precisions fp16 --seconds 1 --json >/dev/null || return 1
    "$nsys" stats --report cuda_gpu_kern_sum,cuda_gpu_mem_time_sum --format table \
        "$WORK/profile.nsys-rep" 2>&1 | head -n 60
}
export -f gpu_profile
export WORK
if [[ "$DEVICE" != cpu ]]; then
    part torch_lite2 60 "$PYTHON" "$HERE/torch_peer.py" bench --model lite2 --weights random \
        --device "$DEVICE" --batch 128,256 --precision fp16 --variants eager,graph --seconds 1.5 --repeats 3
    if awk -F'\t' '$1 == "lk_bench_dev" && $2 == 0 {ok = 1} END {exit !ok}' "$RES/parts.tsv"; then
        part gpu_profile 90 gpu_profile
    fi
fi

# ---------------------------------------------------------------- summary
echo "== summary ($((SECONDS - T0))s in all)"
"$PYTHON" "$HERE/summary.py" "$RES" "$PHOTOS" "$DEVICE" || echo "-- summary failed"
if [[ -n "${OUT:-}" ]]; then
    cp "$RES/summary.json" "$OUT/" 2>/dev/null
    tar -C "$WORK" -czf "$OUT/results.tgz" results 2>/dev/null
fi
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null # let tee write the last lines
exit 0
