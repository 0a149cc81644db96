#!/usr/bin/env bash
# dash-core on a Cortex-M4F under QEMU (mps2-an386), both directions:
#   build -> host garbles -> firmware evaluates -> host decodes and verifies
#   build -> firmware garbles -> host evaluates, decodes and verifies
# plus tamper checks (a flipped byte must make the host check fail) and the
# footprint report. Exits non-zero on any mismatch or QEMU failure.
#
# Needs qemu-system-arm (>= 7; see .ci/embedded.sh for the install), the
# thumbv7em-none-eabihf rustup target, and optionally defmt-print (decodes
# the firmware's defmt log; without it the raw log is checked for size only)
# and llvm-size (footprint). Run from anywhere:  bash firmware/run.sh
set -euo pipefail
fw="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$fw")"
run_dir="$fw/run"
elf_dir="$fw/target/thumbv7em-none-eabihf/release"
host_bin="$fw/host/target/release/dash-firmware-host"
qemu_timeout="${QEMU_TIMEOUT:-120}"

echo "== build: host checker (dash-core, std) and firmware (thumbv7em-none-eabihf, release)"
# The host checker is built from the repository root: inside firmware/ cargo
# would apply the firmware's .cargo/config.toml (the thumbv7em target).
(cd "$root" && cargo build --quiet --release --manifest-path firmware/host/Cargo.toml)
(cd "$fw" && cargo build --quiet --release --bins)

rm -rf "$run_dir"
mkdir -p "$run_dir"

# qemu IMAGE: runs one firmware image in $run_dir (semihosting files resolve
# there); its defmt log (binary frames on semihosting stdout) goes to
# IMAGE.defmt. -icount shift=0: one instruction per virtual ns (the
# firmware's instruction counter relies on it).
qemu() {
    local image="$1" status=0
    run_image "$image" || status=$?
    decode_log "$image"
    if [ "$status" -ne 0 ]; then
        echo "QEMU exited with status $status running $image" >&2
        exit 1
    fi
    if [ -f "$run_dir/$image.log" ] && ! grep -q "exit: success" "$run_dir/$image.log"; then
        echo "$image: the decoded defmt log does not end in success" >&2
        exit 1
    fi
}

run_image() {
    (cd "$run_dir" && timeout "$qemu_timeout" qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic \
        -icount shift=0 -semihosting-config enable=on,target=native -kernel "$elf_dir/$1" >"$1.defmt")
}

decode_log() {
    local image="$1"
    if command -v defmt-print >/dev/null 2>&1; then
        defmt-print -e "$elf_dir/$image" <"$run_dir/$image.defmt" | tee "$run_dir/$image.log"
    else
        if [ ! -s "$run_dir/$image.defmt" ]; then
            echo "$image wrote no defmt log" >&2
            exit 1
        fi
        echo "(defmt-print not installed: $(wc -c <"$run_dir/$image.defmt") bytes of raw defmt log in $run_dir/$image.defmt)"
    fi
}

# expect_fail DESCRIPTION CMD...: the command must fail (the check can fail).
expect_fail() {
    local what="$1"
    shift
    if "$@" >/dev/null 2>&1; then
        echo "tamper check FAILED: $what was accepted" >&2
        exit 1
    fi
    echo "tamper check: $what rejected"
}

# flip FILE OFFSET: xor one byte of FILE with 0x01.
flip() {
    python3 - "$1" "$2" <<'PY'
import sys
path, off = sys.argv[1], int(sys.argv[2])
data = bytearray(open(path, "rb").read())
data[off] ^= 0x01
open(path, "wb").write(bytes(data))
PY
}

echo
echo "== (a) evaluator on the Cortex-M: ReLU + rescale over a k = 7 CRT vector, garbled on the host"
"$host_bin" gen-eval "$run_dir"
qemu evaluator
"$host_bin" check-eval "$run_dir"
cp "$run_dir/eval.out" "$run_dir/eval.out.good"
flip "$run_dir/eval.out" 5
expect_fail "a corrupted output label from the evaluator" "$host_bin" check-eval "$run_dir"
mv "$run_dir/eval.out.good" "$run_dir/eval.out"
# Untrusted input on the device: truncated material must end the run with an
# error (QEMU exit status 1), not a hang, a panic or output.
cp "$run_dir/eval.in" "$run_dir/eval.in.good"
head -c "$(($(wc -c <"$run_dir/eval.in.good") - 100))" "$run_dir/eval.in.good" >"$run_dir/eval.in"
expect_fail "truncated garbled material on the evaluator" run_image evaluator
mv "$run_dir/eval.in.good" "$run_dir/eval.in"

echo
echo "== (a') the same evaluator circuit without the rescale: one exact ReLU per value (the RAM/flash target)"
"$host_bin" gen-relu "$run_dir"
qemu evaluator_relu
"$host_bin" check-relu "$run_dir"

echo
echo "== (b) garbler on the Cortex-M: exact ReLU over a k = 7 CRT vector, evaluated on the host"
"$host_bin" gen-garble "$run_dir"
qemu garbler
"$host_bin" check-garble "$run_dir"
cp "$run_dir/garble.out" "$run_dir/garble.out.good"
# A byte of the last element's first output zero label (the file ends with
# k zero labels of 16 bytes, then k offsets of 4 + 16 bytes; k = 7).
flip "$run_dir/garble.out" "$(($(wc -c <"$run_dir/garble.out") - 7 * 20 - 7 * 16 + 5))"
expect_fail "corrupted decoding information from the garbler" "$host_bin" check-garble "$run_dir"
mv "$run_dir/garble.out.good" "$run_dir/garble.out"

echo
echo "== baseline image (board support without dash-core), for the footprint"
qemu baseline

echo
bash "$fw/footprint.sh"
echo
echo "firmware: both directions verified against the plaintext reference"
