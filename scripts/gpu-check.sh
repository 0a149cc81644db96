#!/usr/bin/env bash
# Every GPU test and GPU benchmark in one command, on a machine with an
# NVIDIA GPU and driver (no CUDA toolkit needed: NVRTC comes from a wheel
# when the system has none). Fails if no GPU is usable: nothing is skipped.
#
#   bash scripts/gpu-check.sh [--minionn]     (--minionn: also the MiniONN-shaped network)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
    venv="target/nvrtc-venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    ls "$venv"/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.* >/dev/null 2>&1 ||
        "$venv/bin/pip" install --quiet --disable-pip-version-check nvidia-cuda-nvrtc-cu12
    nvrtc_lib=$(ls -d "$venv"/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib | head -n 1)
    export LD_LIBRARY_PATH="$PWD/$nvrtc_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export DASH_REQUIRE_GPU=1 DASH_REQUIRE_NVRTC=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv

echo "==> dash-gpu: parity (host build), NVRTC, and every kernel on the GPU against dash-core"
cargo test --release -p dash-gpu --features host-emu -- --nocapture
echo "==> dash-host: whole networks on the GPU equal the CPU bit for bit"
cargo test --release -p dash-host --features cuda --test offload -- --nocapture
echo "==> benchmarks"
cargo run --release -p dash-host --features cuda --example gpu_bench -- "$@"
echo "==> dashgc demo on the GPU"
cargo run --release -p dash-host --features cuda --bin dashgc -- demo --images 20 --device cuda
