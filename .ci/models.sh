#!/usr/bin/env bash
# CI check of the trained models in models/ (never retrains):
#  - every file matches models/SHA256SUMS and is under 5 MiB;
#  - onnxruntime re-measures each model's float accuracy on the full
#    10,000-image MNIST test set and its outputs on fixed inputs, and both
#    must equal what the file's metadata and models/reference_outputs.json
#    record (scripts/train_models.py --verify).
# Installs onnx, onnxruntime and numpy from PyPI into a venv under target/.
set -euo pipefail
cd "$(dirname "$0")/.."

(cd models && sha256sum --quiet -c SHA256SUMS)
echo "models/SHA256SUMS: all files match"
while read -r _ name; do
    size=$(stat -c %s "models/$name")
    if [ "$size" -gt $((5 * 1024 * 1024)) ]; then
        echo "models/$name is $size bytes (limit 5 MiB)" >&2
        exit 1
    fi
done < models/SHA256SUMS
# Every ONNX file under models/ is listed (nothing unchecked slips in).
listed=$(cut -d' ' -f3 models/SHA256SUMS | grep '\.onnx$' | sort)
present=$(cd models && find . -name '*.onnx' | sed 's|^\./||' | sort)
if [ "$listed" != "$present" ]; then
    echo "models/SHA256SUMS and the .onnx files under models/ differ" >&2
    diff <(echo "$listed") <(echo "$present") >&2 || true
    exit 1
fi

venv="target/ci-models-venv"
if ! "$venv/bin/python" -c "import onnx, onnxruntime, numpy" >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check onnx onnxruntime numpy
fi
nice -n 10 "$venv/bin/python" scripts/train_models.py --verify --threads 2
