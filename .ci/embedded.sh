#!/usr/bin/env bash
# dash-core on a Cortex-M4F under QEMU (issues 9 and 24): installs QEMU and
# the target, lints the firmware and the defmt feature, then runs
# firmware/run.sh (both directions, verified against the plaintext
# reference, and whole FHE-DiNN-100 inferences garbled on the device and
# evaluated by dashgc on 20 MNIST test images; fails on any mismatch, QEMU
# error or missed footprint target). Run from the repo root.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v qemu-system-arm >/dev/null 2>&1; then
    # Bookworm's own qemu-system-arm conflicts with the image's qemu-utils;
    # the backports build installs cleanly.
    if [ ! -f /etc/apt/sources.list.d/bookworm-backports.sources ] &&
        ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        cat >/etc/apt/sources.list.d/bookworm-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports \
        qemu-system-arm >/dev/null
fi
qemu-system-arm --version | head -n 1
rustup target add thumbv7em-none-eabihf

# defmt-print (decodes the firmware's log) takes 20 min to build on two
# cores, so CI uses it only if it is already installed; without it run.sh
# checks that the raw defmt log was written.
command -v defmt-print >/dev/null 2>&1 && defmt-print --version || echo "defmt-print not installed: raw defmt logs only"

echo "-- dash-core and dash-mcu with the defmt feature (clippy -D warnings; the firmware build compiles them for the M4)"
cargo clippy --quiet -p dash-core --features defmt -- -D warnings
cargo clippy --quiet -p dash-mcu --features defmt -- -D warnings

echo "-- firmware and its host checker: fmt and clippy -D warnings"
(cd firmware && cargo fmt -- --check && cargo clippy --quiet --release --bins -- -D warnings)
cargo fmt --manifest-path firmware/host/Cargo.toml -- --check
cargo clippy --quiet --release --manifest-path firmware/host/Cargo.toml -- -D warnings

echo "-- both directions under QEMU"
bash firmware/run.sh
