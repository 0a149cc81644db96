#!/usr/bin/env bash
# dash-core on a Cortex-M4F under QEMU (mps2-an386), both directions:
#   build -> host garbles -> firmware evaluates -> host decodes and verifies
#   build -> firmware garbles -> host evaluates, decodes and verifies
#   firmware garbles whole FHE-DiNN-100 inferences on MNIST images -> dashgc
#     evaluates -> firmware decodes, verifies, predicts (and rejects forgeries)
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
qemu_timeout="${QEMU_TIMEOUT:-300}"
# MNIST test images the whole-network garbler runs on (each twice).
NET_IMAGES="${NET_IMAGES:-20}"

echo "== build: host checker (dash-core, std), dashgc (the evaluator of (c)) and firmware (thumbv7em-none-eabihf, release)"
# The host tools are built from the repository root: inside firmware/ cargo
# would apply the firmware's .cargo/config.toml (the thumbv7em target).
(cd "$root" && cargo build --quiet --release --manifest-path firmware/host/Cargo.toml)
(cd "$root" && cargo build --quiet --release -p dash-host --bin dashgc)
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
echo "== (c) a whole network garbled on the Cortex-M: FHE-DiNN-100 on $NET_IMAGES MNIST test images, evaluated by dashgc"
# The device (netgarbler) garbles each image twice with fresh keys; the host
# answers the first honestly and forges the second (a flipped bit, or two
# outputs' labels swapped). The device must print the plaintext integer
# network's prediction for the first and reject the second. The link is two
# FIFOs; entropy.bin is a fixed test seed so that the first inference's
# material can be compared byte for byte with the host garbler's.
dashgc="$root/target/release/dashgc"
model="$root/models/fhe_dinn100.onnx"
"$dashgc" device export --model "$model" --out "$fw/net/fhe_dinn100.dnet" --check
"$dashgc" device images --model "$model" --limit "$NET_IMAGES" --repeat 2 --out "$run_dir/images.bin" \
    --reference "$run_dir/reference.txt"
printf 'dash netgarbler CI test seed 32B' >"$run_dir/entropy.bin"
rm -f "$run_dir/link.tx" "$run_dir/link.rx"
mkfifo "$run_dir/link.tx" "$run_dir/link.rx"
timeout "$qemu_timeout" "$dashgc" device serve --model "$model" --tx "$run_dir/link.tx" --rx "$run_dir/link.rx" --tamper odd \
    --capture "$run_dir/material0.bin" >"$run_dir/serve.log" 2>&1 &
serve_pid=$!
status=0
run_image netgarbler 2>"$run_dir/netgarbler.console" || status=$?
# A device that died before opening the link would leave the server blocked.
[ "$status" -eq 0 ] || kill "$serve_pid" 2>/dev/null || true
serve_status=0
wait "$serve_pid" || serve_status=$?
decode_log netgarbler
cat "$run_dir/netgarbler.console"
tail -n 1 "$run_dir/serve.log"
if [ "$status" -ne 0 ] || [ "$serve_status" -ne 0 ]; then
    echo "netgarbler: QEMU exited with $status, the host evaluator with $serve_status" >&2
    cat "$run_dir/serve.log" >&2
    exit 1
fi
"$dashgc" device check-material --model "$model" --seed "$run_dir/entropy.bin" --material "$run_dir/material0.bin"
python3 - "$run_dir/reference.txt" "$run_dir/results.txt" <<'PY'
import sys
ref = [l.split() for l in open(sys.argv[1]) if not l.startswith("#")]
res = [l.strip() for l in open(sys.argv[2]) if l.strip()]
if len(res) != 2 * len(ref):
    sys.exit(f"netgarbler: {len(res)} results for {len(ref)} images x 2")
for (image, label, plain), honest, forged in zip(ref, res[0::2], res[1::2]):
    if not honest.endswith(f"prediction {plain} (answer verified)"):
        sys.exit(f"image {image}: the device says '{honest}', the plaintext integer network predicts {plain}")
    if "rejected (authenticity check failed)" not in forged:
        sys.exit(f"image {image}: a forged answer was not rejected: '{forged}'")
agree = sum(1 for (_, label, plain) in ref if label == plain)
print(f"netgarbler: {len(ref)} images, every verified prediction equals the plaintext integer network's "
      f"({agree}/{len(ref)} equal the label); {len(ref)} forged answers rejected")
PY

echo
echo "== baseline image (board support without dash-core), for the footprint"
qemu baseline

echo
bash "$fw/footprint.sh"
echo
echo "firmware: both directions verified against the plaintext reference"
