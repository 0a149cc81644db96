#!/usr/bin/env bash
# A fuzzing campaign: every target (or those named) for SECONDS each, one at
# a time, niced. New inputs go to campaign-corpus/<target>/ (ignored by git);
# the committed seeds in corpus/<target>/ and dict/<target>.dict are read.
# Logs and a Markdown summary row per target go to logs/.
#   fuzz/campaign.sh 600                 # every target, 10 minutes each
#   fuzz/campaign.sh 60 gadgets network  # some targets
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-600}"
shift || true
NIGHTLY="${DASH_NIGHTLY:-nightly}"
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +"$NIGHTLY" fuzz list); fi
mkdir -p logs campaign-corpus
cargo +"$NIGHTLY" fuzz build >/dev/null
for t in "${targets[@]}"; do
    mkdir -p "campaign-corpus/$t" "corpus/$t"
    dict=()
    if [ -f "dict/$t.dict" ]; then dict=("-dict=dict/$t.dict"); fi
    start=$(date -u +%H:%M)
    status=ok
    /usr/bin/time -f "%U %S %e" -o "logs/$t.time" nice -n "${FUZZ_NICE:-15}" cargo +"$NIGHTLY" fuzz run "$t" \
        "campaign-corpus/$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=512 \
        -timeout=30 -print_final_stats=1 "${dict[@]}" >"logs/$t.log" 2>&1 || status=CRASH
    read -r user sys wall <"logs/$t.time" || true
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "logs/$t.log" | tail -n 1 || echo "?")
    corpus=$(find "campaign-corpus/$t" -type f | wc -l)
    row="| $t | $start | ${wall:-?} | $(echo "${user:-0} + ${sys:-0}" | bc) | $execs | $corpus | $cov | $status |"
    echo "$row" | tee -a logs/summary.md
done
