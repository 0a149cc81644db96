#!/usr/bin/env bash
# The server as operators deploy it, on loopback only, bounded in time:
# 1. `dashgc serve` with TLS, mutual TLS and a token file, `dashgc query`
#    with the CA file, a client certificate and the token: every image
#    verified; a query without the token and one trusting another CA are
#    refused; /metrics and /healthz answer.
# 2. deploy/loadtest.sh: three evaluators behind HAProxy (installed here if
#    missing), concurrent clients, one evaluator killed mid-run, no image
#    lost, every answer verified.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p dash-host --bin dashgc --example gen_certs
dashgc=target/release/dashgc
model=models/secureml_mlp.json
images=data/mnist/t10k-images-idx3-ubyte.gz
labels=data/mnist/t10k-labels-idx1-ubyte.gz

work="$(mktemp -d)"
target/release/examples/gen_certs "$work/pki" >/dev/null
target/release/examples/gen_certs "$work/other" >/dev/null
"$dashgc" serve --listen 127.0.0.1:0 --model "$model" --timeout-secs 30 \
    --tls-cert "$work/pki/server.pem" --tls-key "$work/pki/server.key" \
    --client-ca "$work/pki/client-ca.pem" --token-file "$work/pki/tokens" --metrics 127.0.0.1:0 \
    >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
cleanup() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 300); do
    [ "$(wc -l <"$work/serve.out")" -ge 2 ] && break
    sleep 0.1
done
addr="$(sed -n 's/^listening on //p' "$work/serve.out")"
maddr="$(sed -n 's/^metrics on //p' "$work/serve.out")"
[ -n "$addr" ] && [ -n "$maddr" ] || { echo "dashgc serve did not start" >&2; cat "$work/serve.err" >&2; exit 1; }

query() {
    timeout 120 "$dashgc" query --server "$addr" --model "$model" --mnist "$images" "$labels" --json "$@"
}
query --limit 10 --ca-file "$work/pki/server-ca.pem" --client-cert "$work/pki/client.pem" \
    --client-key "$work/pki/client.key" --token-file "$work/pki/token" | tail -n 1 >"$work/ok.json"
python3 - "$work/ok.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["verified"] is True and r["equals_plaintext"] is True and r["images"] == 10, r
print("TLS + client certificate + token: 10 images verified")
PY
# Refusals: no token; a server CA the client does not trust; no client certificate.
if query --limit 1 --retries 0 --ca-file "$work/pki/server-ca.pem" --client-cert "$work/pki/client.pem" \
    --client-key "$work/pki/client.key" >"$work/r1.json" 2>/dev/null; then
    echo "a query without a token was served" >&2; exit 1
fi
grep -q "requires a bearer token" "$work/r1.json"
if query --limit 1 --retries 0 --ca-file "$work/other/server-ca.pem" --client-cert "$work/pki/client.pem" \
    --client-key "$work/pki/client.key" --token-file "$work/pki/token" >"$work/r2.json" 2>/dev/null; then
    echo "a query trusting another CA was served" >&2; exit 1
fi
grep -q "certificate" "$work/r2.json"
if query --limit 1 --retries 0 --ca-file "$work/pki/server-ca.pem" --token-file "$work/pki/token" \
    >"$work/r3.json" 2>/dev/null; then
    echo "a query without a client certificate was served" >&2; exit 1
fi
python3 - "$maddr" <<'PY'
import sys, urllib.request
base = "http://" + sys.argv[1]
assert urllib.request.urlopen(base + "/healthz", timeout=5).read() == b"ok\n"
m = {l.split()[0]: float(l.split()[1]) for l in urllib.request.urlopen(base + "/metrics", timeout=5).read().decode().splitlines()
     if l and not l.startswith("#")}
assert m["dashgc_answers_total"] == 10 and m["dashgc_circuits_received_total"] == 10, m
assert m['dashgc_errors_total{kind="auth"}'] == 1 and m['dashgc_errors_total{kind="tls"}'] >= 2, m
print("refusals clear and counted; metrics and health check answer")
PY

timeout 300 bash deploy/loadtest.sh
