#!/usr/bin/env bash
# Online latency per query (one round: query out, answer back, verified)
# with plain TCP, with TLS, and with TLS through HAProxy (TCP mode), on
# loopback, SecureML MLP, one evaluator. Clients garble between rounds
# (--serial-offline) so that rounds do not share the cores with garbling.
# Prints one line per setting, then a JSON summary. Not part of CI.
#   N=200 bash deploy/latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-200}"
model=models/secureml_mlp.json
images=data/mnist/t10k-images-idx3-ubyte.gz
labels=data/mnist/t10k-labels-idx1-ubyte.gz
cargo build --release -p dash-host --bin dashgc --example gen_certs
dashgc=target/release/dashgc
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
target/release/examples/gen_certs "$work/pki" >/dev/null
start_server() { # name, args...
    local name=$1; shift
    "$dashgc" serve --listen 127.0.0.1:0 --model "$model" --metrics 127.0.0.1:0 "$@" >"$work/$name.out" 2>/dev/null &
    pids+=($!)
    for _ in $(seq 1 300); do [ "$(wc -l <"$work/$name.out")" -ge 2 ] && break; sleep 0.1; done
}
start_server plain --insecure-plaintext
start_server tls --tls-cert "$work/pki/server.pem" --tls-key "$work/pki/server.key" --token-file "$work/pki/tokens"
plain=$(sed -n 's/^listening on //p' "$work/plain.out")
tls=$(sed -n 's/^listening on //p' "$work/tls.out")
tls_m=$(sed -n 's/^metrics on 127.0.0.1://p' "$work/tls.out")
lb_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export DASH_LB_BIND="127.0.0.1:$lb_port" DASH_E1="$tls" DASH_E2="$tls" DASH_E3="$tls"
export DASH_E1_MPORT="$tls_m" DASH_E2_MPORT="$tls_m" DASH_E3_MPORT="$tls_m"
haproxy -db -f deploy/haproxy.cfg >"$work/haproxy.log" 2>&1 &
pids+=($!)
sleep 1.5
run() { # name, server, args...
    local name=$1 server=$2; shift 2
    "$dashgc" query --server "$server" --model "$model" --mnist "$images" "$labels" --limit "$N" \
        --serial-offline --queue 1 --json "$@" 2>/dev/null | tail -n 1 >"$work/$name.json"
}
tlsargs=(--ca-file "$work/pki/server-ca.pem" --server-name localhost --token-file "$work/pki/token")
# Twice each, interleaved, to spread the noise of a shared machine.
for round in 1 2; do
    run "plain$round" "$plain" --insecure-plaintext
    run "tls$round" "$tls" "${tlsargs[@]}"
    run "haproxy$round" "127.0.0.1:$lb_port" "${tlsargs[@]}"
done
python3 - "$work" "$N" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
out = {}
for name in ["plain", "tls", "haproxy"]:
    rs = [json.load(open("%s/%s%d.json" % (work, name, r))) for r in (1, 2)]
    for r in rs:
        assert r["verified"] is True and r["equals_plaintext"] is True and r["images"] == n, r
    med = sorted(r["online_ms_median"] for r in rs)[0]
    mean = sum(r["online_ms_mean"] for r in rs) / 2
    out[name] = {"median_ms": round(med, 3), "mean_ms": round(mean, 3)}
for name, label in [("plain", "plain TCP"), ("tls", "TLS 1.3 + token"), ("haproxy", "TLS 1.3 + token via HAProxy")]:
    d = out[name]
    print("%-30s median %.2f ms  mean %.2f ms  (+%.2f ms median over plain)" % (
        label, d["median_ms"], d["mean_ms"], d["median_ms"] - out["plain"]["median_ms"]))
print(json.dumps(out))
PY
