#!/usr/bin/env bash
# Miri on dash-core's unit tests and doctests: undefined behaviour in dash-core or in its
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
cargo +"$NIGHTLY" miri test -p dash-core --lib
# The doctests take about three minutes more under the interpreter: run
# them with DASH_MIRI_DOC=1 (docs/FUZZING.md).
if [ "${DASH_MIRI_DOC:-0}" = 1 ]; then
    cargo +"$NIGHTLY" miri test -p dash-core --doc
fi
echo "miri: dash-core unit tests passed in $(( $(date +%s) - start ))s"
