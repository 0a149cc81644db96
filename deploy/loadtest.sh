#!/usr/bin/env bash
# Scale-out check on loopback: three `dashgc serve` evaluators (TLS, bearer
# tokens, metrics) behind HAProxy in TCP mode (deploy/haproxy.cfg),
# CLIENTS concurrent `dashgc query` clients of IMAGES images each, and one
# evaluator killed (SIGKILL) mid-run. Every client must finish every image
# with verified outputs equal to the plaintext network (clients whose
# connection dropped reconnect with backoff), and at least one client must
# have reconnected (the kill hit work in flight). Bounded: every process
# has a timeout (the evaluators and HAProxy are ended on exit; callers such
# as .ci/serve.sh bound the whole), everything listens on 127.0.0.1 only.
#
#   bash deploy/loadtest.sh            # CLIENTS=6 IMAGES=40
#   CLIENTS=8 IMAGES=60 bash deploy/loadtest.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS="${CLIENTS:-6}"
IMAGES="${IMAGES:-40}"
model=models/secureml_mlp.json
images=data/mnist/t10k-images-idx3-ubyte.gz
labels=data/mnist/t10k-labels-idx1-ubyte.gz

if ! command -v haproxy >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq haproxy >/dev/null
    fi
fi
command -v haproxy >/dev/null || { echo "haproxy is needed (Debian package haproxy)" >&2; exit 1; }

cargo build --release -p dash-host --bin dashgc --example gen_certs
dashgc=target/release/dashgc

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
target/release/examples/gen_certs "$work/pki" >/dev/null

# Free loopback ports, chosen by the kernel.
read -r -a ports < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(7)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()')
lb_port=${ports[0]}

for i in 1 2 3; do
    port=${ports[$i]}
    mport=${ports[$((i + 3))]}
    "$dashgc" serve --listen "127.0.0.1:$port" --model "$model" \
        --tls-cert "$work/pki/server.pem" --tls-key "$work/pki/server.key" \
        --token-file "$work/pki/tokens" --metrics "127.0.0.1:$mport" \
        --timeout-secs 20 --idle-secs 30 \
        >"$work/e$i.out" 2>"$work/e$i.err" &
    pids+=($!)
    eval "e${i}_pid=$!"
    export "DASH_E$i=127.0.0.1:$port" "DASH_E${i}_MPORT=$mport"
done
export DASH_LB_BIND="127.0.0.1:$lb_port"
for i in 1 2 3; do
    for _ in $(seq 1 300); do
        [ "$(wc -l <"$work/e$i.out")" -ge 2 ] && break
        sleep 0.1
    done
    grep -q '^listening on' "$work/e$i.out" || { echo "evaluator $i did not start" >&2; cat "$work/e$i.err" >&2; exit 1; }
done
echo "evaluators on ${ports[1]}, ${ports[2]}, ${ports[3]}; HAProxy on $lb_port"

haproxy -c -q -f deploy/haproxy.cfg
haproxy -db -f deploy/haproxy.cfg >"$work/haproxy.log" 2>&1 &
pids+=($!)

# HAProxy up and its checks passed (rise 2 x 300 ms).
for _ in $(seq 1 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $lb_port), 1).close()" 2>/dev/null && break
    sleep 0.1
done
sleep 1

start=$(date +%s)
client_pids=()
for c in $(seq 1 "$CLIENTS"); do
    timeout 300 "$dashgc" query --server "127.0.0.1:$lb_port" --server-name localhost --model "$model" \
        --ca-file "$work/pki/server-ca.pem" --token-file "$work/pki/token" \
        --mnist "$images" "$labels" --limit "$IMAGES" --queue 2 --retries 8 --retry-backoff-ms 200 \
        --timeout-secs 20 --json >"$work/client$c.json" 2>"$work/client$c.err" &
    client_pids+=($!)
done

# Kill (SIGKILL) the evaluator with the most connections once a fifth of
# all images are answered.
python3 - "$((CLIENTS * IMAGES / 5))" "$e1_pid:${ports[4]}" "$e2_pid:${ports[5]}" "$e3_pid:${ports[6]}" <<'PY'
import os, sys, time, urllib.request
threshold = int(sys.argv[1])
evaluators = [tuple(int(x) for x in a.split(":")) for a in sys.argv[2:]]
def metrics(port):
    try:
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2).read().decode()
    except Exception:
        return {}
    return {l.split()[0]: float(l.split()[1]) for l in body.splitlines() if l and not l.startswith("#")}
deadline = time.time() + 120
while time.time() < deadline:
    ms = [metrics(port) for _, port in evaluators]
    answered = sum(m.get("dashgc_answers_total", 0) for m in ms)
    if answered >= threshold:
        active = [m.get("dashgc_connections_active", 0) for m in ms]
        victim = max(range(3), key=lambda i: active[i])
        os.kill(evaluators[victim][0], 9)
        print("killed evaluator %d (%d connections active) after %d answers" % (victim + 1, active[victim], answered))
        sys.exit(0)
    time.sleep(0.05)
sys.exit("the run ended before the kill")
PY

failed=0
for c in $(seq 1 "$CLIENTS"); do
    if ! wait "${client_pids[$((c - 1))]}"; then
        echo "client $c failed:" >&2
        tail -n 5 "$work/client$c.err" >&2
        failed=1
    fi
done
[ "$failed" = 0 ] || exit 1

python3 - "$work" "$CLIENTS" "$IMAGES" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
work, clients, images, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
reconnects = 0
for c in range(1, clients + 1):
    r = json.loads(open("%s/client%d.json" % (work, c)).read().splitlines()[-1])
    assert r["verified"] is True and r["equals_plaintext"] is True, (c, r)
    assert r["images"] == images and len(r["predictions"]) == images, (c, r)
    reconnects += r["reconnects"]
assert reconnects >= 1, "no client reconnected: the kill hit no work in flight"
print("HAProxy + 3 evaluators, one killed: %d clients x %d images, every image verified and equal to the "
      "plaintext network; %d reconnects; %s s" % (clients, images, reconnects, seconds))
PY
