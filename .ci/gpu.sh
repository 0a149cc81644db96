#!/usr/bin/env bash
# CI step for dash-gpu on machines without a GPU (a few minutes):
#  * the kernels' device code, built for the host, equals dash-core and the
#    plaintext linear layers bit for bit (dash-gpu parity tests) and runs
#    whole networks bit-identically to the CPU engine (dash-host offload test);
#  * every kernel compiles to PTX through NVRTC (the nvidia-cuda-nvrtc-cu12
#    wheel, installed into a venv under target/);
#  * the GPU tests report themselves skipped, with the reason, and the skip
#    count is printed.
# Run from the repository root: bash .ci/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv="target/nvrtc-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! ls "$venv"/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.* >/dev/null 2>&1; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check nvidia-cuda-nvrtc-cu12
fi
nvrtc_lib=$(ls -d "$venv"/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib | head -n 1)
export LD_LIBRARY_PATH="$PWD/$nvrtc_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The PTX cache of this run lives under target/ (never the user's home).
export DASH_GPU_CACHE="$PWD/target/dash-gpu-cache"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# NVRTC must work here: the compile test fails instead of skipping.
DASH_REQUIRE_NVRTC=1 cargo test --release -p dash-gpu --features host-emu -- --nocapture 2>&1 | tee "$log"
cargo test --release -p dash-host --features cuda --test offload -- --nocapture 2>&1 | tee -a "$log"
# The GPU benchmark program, dry-run on the host build of the kernels.
cargo run --release -p dash-host --features cuda --example gpu_bench -- --emu

skips=$(grep -c '^dash-gpu: SKIP' "$log" || true)
echo "dash-gpu: $skips GPU test(s) skipped (no usable GPU here); reasons:"
grep '^dash-gpu: SKIP' "$log" | sed 's/^dash-gpu: SKIP /  /' || true
grep -q -- '-> PTX for compute_90' "$log" || { echo "the NVRTC compile test did not run" >&2; exit 1; }
