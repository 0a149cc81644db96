#!/usr/bin/env bash
# Fuzz smoke runs: builds every cargo-fuzz target once, then runs each for
# FUZZ_SECONDS (default 30) from its committed seeds (fuzz/corpus/<target>,
# read only) with its dictionary, under the memory limits of a campaign.
# Fails if any target crashes, hangs or exceeds a limit, naming it.
# Run from the repository root: bash .ci/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."

NIGHTLY="${DASH_NIGHTLY:-nightly}"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"

if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$NIGHTLY" --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
fi

cd fuzz
cargo +"$NIGHTLY" fuzz build
mapfile -t targets < <(cargo +"$NIGHTLY" fuzz list)
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target" "corpus/$target"
    dict=()
    if [ -f "dict/$target.dict" ]; then dict=("-dict=dict/$target.dict"); fi
    log="$scratch/$target.log"
    # New inputs go to the scratch directory; the committed seeds stay as they are.
    if cargo +"$NIGHTLY" fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=30 \
        "${dict[@]}" >"$log" 2>&1; then
        echo "fuzz target $target: ok ($(grep -Eo '^Done [0-9]+ runs' "$log" | tail -n 1 || true))"
    else
        echo "fuzz target $target: FAILED" >&2
        grep -E 'panicked|ERROR|SUMMARY|Test unit written|artifact_prefix' "$log" | head -n 20 >&2 || tail -n 40 "$log" >&2
        failed+=("$target")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz targets that failed: ${failed[*]} (reproduce: cd fuzz && cargo +$NIGHTLY fuzz run TARGET artifacts/TARGET/CRASH)" >&2
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${SECONDS_PER_TARGET}s each without a crash"
