#!/usr/bin/env bash
# A/B of the fixed-key-AES hash and the p = 17 / 97 projection batches:
# this checkout's dash-core against another commit's (default f6f89af, the
# last one before issue 17's hash changes), both linked into one binary.
# Every figure is timed in short batches (about 30 µs) alternating with a
# reference (1024 blocks through `permute_in_flight(1, ..)`, the best AES
# path of this checkout), ROUNDS times (default 2000); printed: the fastest
# and the median batch, and the 10th percentile and median of the per-round
# ratio to the reference. On a loaded machine the ratios are the figures to
# compare (the clock moves between rounds; the ratio of two batches
# microseconds apart barely does).
#
#   bash scripts/aes-ab/run.sh [BASE_COMMIT] [FILTER...]
#   e.g. bash scripts/aes-ab/run.sh f6f89af permute/1024 hash_batch proj17
set -euo pipefail
cd "$(dirname "$0")/../.."
base="${1:-f6f89af}"
shift || true
work="${AES_AB_DIR:-${TMPDIR:-/tmp}/dash-aes-ab}"
rm -rf "$work"
mkdir -p "$work/base" "$work/ab/src"
git archive "$base" Cargo.toml dash-core | tar -x -C "$work/base"
# The old commit's crate alone, under another version so both fit one lock file.
sed -i 's/^members = .*/members = ["dash-core"]/' "$work/base/Cargo.toml"
sed -i 's/^version.workspace = true/version = "0.0.1"/' "$work/base/dash-core/Cargo.toml"
sed "s|@HEAD@|$PWD/dash-core|; s|@BASE@|$work/base/dash-core|" scripts/aes-ab/Cargo.toml.in >"$work/ab/Cargo.toml"
cp scripts/aes-ab/main.rs scripts/aes-ab/fixture.rs "$work/ab/src/"
cp Cargo.lock "$work/ab/"
(cd "$work/ab" && cargo build --release --quiet)
"$work/ab/target/release/aes-ab" "$@"
