#!/usr/bin/env bash
# Client and server as a user runs them: `dashgc serve` on loopback, then
# `dashgc query` on 20 bundled MNIST images; every output must verify and
# equal the plaintext integer network. (The protocol's test suites run in
# the workspace tests, the wire_message fuzz target in the fuzz step.)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p dash-host --bin dashgc
dashgc=target/release/dashgc
model=models/secureml_mlp.json
images=data/mnist/t10k-images-idx3-ubyte.gz
labels=data/mnist/t10k-labels-idx1-ubyte.gz

out_dir="$(mktemp -d)"
"$dashgc" serve --listen 127.0.0.1:0 --model "$model" --timeout-secs 30 --insecure-plaintext >"$out_dir/serve.out" 2>"$out_dir/serve.err" &
server_pid=$!
cleanup() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; rm -rf "$out_dir"; }
trap cleanup EXIT

for _ in $(seq 1 100); do
    [ -s "$out_dir/serve.out" ] && break
    sleep 0.1
done
addr="$(head -n 1 "$out_dir/serve.out" | sed -n 's/^listening on //p')"
[ -n "$addr" ] || { echo "dashgc serve did not report its address" >&2; cat "$out_dir/serve.err" >&2; exit 1; }
echo "server listening on $addr"

"$dashgc" query --server "$addr" --model "$model" --insecure-plaintext --mnist "$images" "$labels" --limit 20 --queue 4 --json \
    | tee "$out_dir/query.out"
tail -n 1 "$out_dir/query.out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
assert r["verified"] is True and r["equals_plaintext"] is True, r
assert r["images"] == 20 and len(r["predictions"]) == 20, r
k = len(r["crt_moduli"])
assert r["online_bytes_per_image"] == (784 + 10) * k * 16 + 2 * (5 + 16), r
print("query JSON ok: accuracy %.2f, %d online bytes and %.1f ms (median) per image"
      % (r["accuracy"], r["online_bytes_per_image"], r["online_ms_median"]))
'
