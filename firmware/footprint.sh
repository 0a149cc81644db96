#!/usr/bin/env bash
# Footprint of dash-core on the Cortex-M4F, from the release images and the
# *.stats files a run of firmware/run.sh leaves in firmware/run/:
#   flash = .text + .rodata (+ the vector table), from llvm-size;
#   dash-core's share = image minus the baseline image (same board support,
#   no dash-core);
#   RAM = statics (.data + .bss) + measured peak stack (stack painting).
# Fails if the exact k = 7 ReLU evaluator (the whole image, board support
# included) needs more than 16 KiB of RAM or 64 KiB of flash (issue 9), or
# the whole-network garbler (netgarbler) more than 64 KiB of RAM, 512 KiB of
# flash or 4e8 instructions per inference (issue 24).
set -euo pipefail
fw="$(cd "$(dirname "$0")" && pwd)"
elf_dir="$fw/target/thumbv7em-none-eabihf/release"
run_dir="$fw/run"
stat() { awk -F= -v k="$2" '$1 == k { print $2 }' "$run_dir/$1.stats"; }
ram_target=16384
flash_target=65536
relu_stack=$(stat relu peak_stack)
if [ "$relu_stack" -gt "$ram_target" ]; then
    echo "footprint: evaluator_relu's peak stack alone ($relu_stack B) exceeds the $ram_target B RAM target" >&2
    exit 1
fi
size_tool="$(command -v llvm-size || command -v rust-size || true)"
if [ -z "$size_tool" ]; then
    echo "footprint: llvm-size not found; skipping the flash figures" >&2
    exit 0
fi

section() { "$size_tool" -A "$elf_dir/$1" | awk -v s="$2" '$1 == s { print $2 }'; }
flash() { echo $(($(section "$1" .text) + $(section "$1" .rodata))); }

base_flash=$(flash baseline)
base_stack=$(stat baseline peak_stack)
printf '%-15s %12s %16s %12s %12s %16s\n' image "flash (B)" "dash-core (B)" "statics (B)" "stack (B)" "dash-core RAM (B)"
for image in baseline evaluator_relu evaluator garbler netgarbler; do
    stats="$image"
    [ "$image" = evaluator_relu ] && stats=relu
    [ "$image" = evaluator ] && stats=eval
    [ "$image" = garbler ] && stats=garble
    f=$(flash "$image")
    statics=$(($(section "$image" .data) + $(section "$image" .bss)))
    stack=$(stat "$stats" peak_stack)
    printf '%-15s %12d %16d %12d %12d %16d\n' "$image" "$f" $((f - base_flash)) "$statics" "$stack" $((stack - base_stack))
done
echo "sizes on the M4: PackedLabel (the evaluators' wires) $(stat relu label_bytes) B, Bundle<PackedLabel> $(stat relu bundle_bytes) B; an unpacked Label is 312 B"
echo
echo "instructions (QEMU -icount shift=0, SysTick calibrated against 100,000 nops):"
echo "  evaluator_relu: exact ReLU $(stat relu relu_insns) ($(stat relu relu_rows) rows)"
echo "  evaluator: exact ReLU $(stat eval relu_insns) ($(stat eval relu_rows) rows), rescale /35 $(stat eval rescale_insns) ($(stat eval rescale_rows) rows), $(stat eval insns_per_row) per garbled row"
echo "  garbler:   exact ReLU $(stat garble relu_garble_insns) ($(stat garble relu_rows) rows)"
echo "  projection gate mod $(stat garble proj_modulus) (16 rows): garble $(stat garble proj_garble_insns), evaluate $(stat garble proj_eval_insns)"
echo "  netgarbler: one FHE-DiNN-100 inference ($(stat netgarbler rows) rows) $(stat netgarbler insns_per_inference): keys $(stat netgarbler keys_insns), dense layers with the input labels $(stat netgarbler dense_insns), sign gadgets $(stat netgarbler gadget_insns), decode and verify $(stat netgarbler decode_insns)"

relu_ram=$((relu_stack + $(section evaluator_relu .data) + $(section evaluator_relu .bss)))
relu_flash=$(flash evaluator_relu)
if [ "$relu_ram" -gt "$ram_target" ] || [ "$relu_flash" -gt "$flash_target" ]; then
    echo "footprint: evaluator_relu needs $relu_ram B RAM and $relu_flash B flash; targets $ram_target and $flash_target" >&2
    exit 1
fi
echo "targets (exact k = 7 ReLU evaluator, whole image): RAM $relu_ram B <= $ram_target, flash $relu_flash B <= $flash_target"

# The whole-network garbler (issue 24): FHE-DiNN-100 in 64 KiB of RAM and
# 512 KiB of flash, at most 4e8 instructions per inference.
net_ram=$(($(stat netgarbler peak_stack) + $(section netgarbler .data) + $(section netgarbler .bss)))
net_flash=$(flash netgarbler)
net_insns=$(stat netgarbler insns_per_inference)
if [ "$net_ram" -gt 65536 ] || [ "$net_flash" -gt 524288 ] || [ "$net_insns" -gt 400000000 ]; then
    echo "footprint: netgarbler needs $net_ram B RAM, $net_flash B flash, $net_insns instructions per inference; targets 65536, 524288, 400000000" >&2
    exit 1
fi
echo "targets (FHE-DiNN-100 garbler, whole image): RAM $net_ram B <= 65536, flash $net_flash B <= 524288, $net_insns instructions per inference <= 4e8"
