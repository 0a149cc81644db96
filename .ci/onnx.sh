#!/usr/bin/env bash
# ONNX import (issue 5): every shipped ONNX MNIST model through the real
# command line, `dashgc run --model M.onnx`, on a garbled subset of the
# bundled MNIST test set: the garbled outputs must equal the plaintext
# integer network's on every image. (Import, quantisation and the 0.3-point
# accuracy check on all 10,000 images run in `cargo test --release`:
# dash-host/tests/onnx_models.rs; the importer's fuzz target runs in the
# fuzz step.) DASH_ONNX_IMAGES sets the subset size (default 100);
# MiniONN-MNIST (about 150 MB of garbled material and seconds per image on
# 2 cores) runs DASH_ONNX_IMAGES_LARGE images (default 10) to keep CI short.
set -euo pipefail
cd "$(dirname "$0")/.."

images="${DASH_ONNX_IMAGES:-100}"
images_large="${DASH_ONNX_IMAGES_LARGE:-10}"
cargo build --release --quiet -p dash-host --bin dashgc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
shopt -s nullglob
models=(models/*.onnx)
if [ ${#models[@]} -eq 0 ]; then
    echo "no ONNX models under models/"
    exit 0
fi
for model in "${models[@]}"; do
    case "$model" in
        *cifar*) echo "$model: not an MNIST model, skipped here"; continue ;;
    esac
    flags=()
    case "$model" in *tanh*) flags+=(--tanh-as-sign) ;; esac
    limit="$images"
    case "$model" in *minionn*) limit="$images_large" ;; esac
    start=$(date +%s)
    if ! target/release/dashgc run --model "$model" "${flags[@]}" \
        --mnist data/mnist/t10k-images-idx3-ubyte.gz data/mnist/t10k-labels-idx1-ubyte.gz \
        --limit "$limit" --garbled-only --json >"$tmp/out" 2>"$tmp/err"; then
        echo "$model: dashgc run failed" >&2
        tail -n 20 "$tmp/err" >&2
        exit 1
    fi
    line=$(tail -n 1 "$tmp/out")
    MODEL="$model" SECONDS_TAKEN=$(( $(date +%s) - start )) python3 -c '
import json, os, sys
r = json.loads(sys.stdin.read())
name = os.environ["MODEL"]
assert r["garbled_equals_plaintext"] is True, (name, r)
assert r["accuracy_garbled"] == r["accuracy_quantized"], (name, r)
k = len(r["crt_moduli"])
acc = [r["accuracy_float"], r["accuracy_quantized"], r["accuracy_garbled"]]
print("%s: %d images, float %.3f quantized %.3f garbled %.3f, k=%d, %s s"
      % (name, r["images"], acc[0], acc[1], acc[2], k, os.environ["SECONDS_TAKEN"]))
' <<<"$line"
done
