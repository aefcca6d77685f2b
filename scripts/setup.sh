#!/usr/bin/env bash
# Install what building and testing lookalike needs on a fresh Debian machine (idempotent):
# cmake + nasm build the vendored libjpeg-turbo; ffmpeg decodes videos; Chromium and its
# driver run the browser test; wrk drives the load test. Rust and Python come with the machine.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v nasm >/dev/null || need+=(nasm)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
if [[ "${1:-}" == "--tests" ]]; then
    command -v chromium >/dev/null || need+=(chromium)
    command -v chromedriver >/dev/null || need+=(chromium-driver)
    command -v curl >/dev/null || need+=(curl)
fi
if ((${#need[@]})); then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
