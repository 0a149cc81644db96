#!/usr/bin/env bash
# Miri on dash-core's unit, integration and doc tests: undefined behaviour in dash-core or in its
# dependencies (dash-core itself forbids unsafe code). Tests too slow for the
# interpreter are marked #[cfg_attr(miri, ignore)]; docs/FUZZING.md lists them.
# Run from the repository root: bash .ci/miri.sh
set -euo pipefail
cd "$(dirname "$0")/.."

NIGHTLY="${DASH_NIGHTLY:-nightly}"
if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$NIGHTLY" --profile minimal
fi
rustup component add miri rust-src --toolchain "$NIGHTLY"
cargo +"$NIGHTLY" miri setup
start=$(date +%s)
# The whole crate: unit tests, integration tests and doctests.
cargo +"$NIGHTLY" miri test -p dash-core
echo "miri: dash-core's unit, integration and doc tests passed in $(( $(date +%s) - start ))s"
