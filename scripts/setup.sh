#!/usr/bin/env bash
# Install what building and testing lookalike needs on a fresh Debian machine (idempotent):
# cmake + nasm build the vendored libjpeg-turbo; libheif (with its HEVC and AV1 decoders, found
# through pkg-config) reads HEIC and AVIF; ffmpeg decodes videos; Chromium and its
# driver run the browser test; wrk drives the load test. Rust and Python come with the machine.
# With --tests, also what the Spark test (tests/spark.rs) runs: a headless Java runtime from
# Debian and, in .cache/spark-venv, PySpark and pyarrow from PyPI at pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."
tests=false
[[ "${1:-}" == "--tests" ]] && tests=true

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v nasm >/dev/null || need+=(nasm)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists libheif 2>/dev/null || need+=(libheif-dev)
need_java=false
if $tests; then
    command -v chromium >/dev/null || need+=(chromium)
    command -v chromedriver >/dev/null || need+=(chromium-driver)
    command -v curl >/dev/null || need+=(curl)
    command -v java >/dev/null || need_java=true
    # Debian ships venv's ensurepip separately (python3-venv).
    [[ -x .cache/spark-venv/bin/python ]] || python3 -c 'import ensurepip' 2>/dev/null ||
        need+=(python3-venv)
fi
if ((${#need[@]})) || $need_java; then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    if $need_java; then
        # Spark 4 runs on Java 17 or 21: Debian 12 has openjdk-17, later releases only newer
        # ones (then the release's default-jre-headless).
        for pkg in openjdk-17-jre-headless openjdk-21-jre-headless default-jre-headless; do
            if apt-cache show "$pkg" >/dev/null 2>&1; then
                need+=("$pkg")
                break
            fi
        done
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if $tests; then
    # PySpark for tests/spark.rs (about 690 MB installed, once); .pins records what the venv
    # holds, so a re-run with nothing to do costs one file read.
    venv=.cache/spark-venv
    pins="pyspark==4.3.0 pyarrow==26.0.1"
    if [[ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]]; then
        [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
        # shellcheck disable=SC2086
        "$venv/bin/python" -m pip install -q --disable-pip-version-check $pins
        echo "$pins" >"$venv/.pins"
    fi
fi
