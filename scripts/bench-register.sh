#!/usr/bin/env bash
# Bulk registration on one agent: N services registered through the HTTP API by C concurrent
# clients (one request at a time each, on a kept-alive connection), after PREFILL services the
# agent already owns (registered first by 16 clients, not timed). Prints the wall time, the
# rate, per-request latency (p50, p99) and how many times the views were rebuilt (the rise of
# X-Consul-Index, one step per rebuild). Data directory on tmpfs (/dev/shm), so the figure is
# the agent's work, not the disk's fsync; DISK=1 puts it under /var/tmp (a real fsync).
# RESTART=1 then stops the agent (SIGTERM) and starts it again on the same data directory:
# prints the time from the start until its HTTP API answers with every registration.
#
# usage: scripts/bench-register.sh [N 2000] [C 1] [PREFILL 0]   (GOSSIPD_BIN overrides the binary)
set -euo pipefail
N=${1:-2000}
C=${2:-1}
PREFILL=${3:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${GOSSIPD_BIN:-$ROOT/target/release/gossipd}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p gossipd)
if [ "${DISK:-0}" = 1 ]; then base=/var/tmp; else base=/dev/shm; fi
DATA=$(mktemp -d "$base/gossipd-bench-register.XXXXXX")
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
"$BIN" keygen >"$DATA/cluster.key"
# A certificate with room for everything (the default quota is 10,000 services).
"$BIN" ca create --out "$DATA/ca" >/dev/null
"$BIN" ca sign --ca "$DATA/ca" --name bulk --services '*' --max-entries $((N + PREFILL + 100)) --out "$DATA/certs" >/dev/null
start() {
    "$BIN" agent --node bulk --bind 127.0.0.1:0 --dns 127.0.0.1:0 --http 127.0.0.1:0 --data-dir "$DATA/agent" \
        --cluster-key-file "$DATA/cluster.key" --ca-file "$DATA/ca/ca.crt" --cert-file "$DATA/certs/bulk.crt" \
        --identity-file "$DATA/certs/bulk.key" --log-level warn >/dev/null 2>>"$DATA/log" &
    PID=$!
}
start
for _ in $(seq 100); do [ -s "$DATA/agent/addrs.json" ] && break; sleep 0.05; done
sleep 0.3
echo "# $("$BIN" --version | head -1), tree $(git -C "$ROOT" describe --always --dirty), load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$DATA/agent/addrs.json" "$N" "$C" "$PREFILL" <<'PY'
import http.client, json, sys, threading, time
http_addr = json.load(open(sys.argv[1]))["http"]
n, c, pre = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
host, port = http_addr.rsplit(":", 1)
def conn():
    return http.client.HTTPConnection(host, int(port), timeout=120)
def index():
    h = conn(); h.request("GET", "/v1/catalog/services"); r = h.getresponse(); r.read()
    return int(r.headers["X-Consul-Index"])
def put(h, i):
    body = json.dumps({"ID": f"b-{i}", "Name": f"svc{i % 100}",
                       "Address": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "Port": 8000})
    h.request("PUT", "/v1/agent/service/register", body=body)
    r = h.getresponse(); r.read()
    if r.status != 200: raise SystemExit(f"register {i}: {r.status}")
def worker(lo, hi, k, c, lat):
    h = conn()
    for i in range(lo + k, hi, c):
        t = time.time(); put(h, i); lat.append(time.time() - t)
def run(lo, hi, c):
    lat = []
    threads = [threading.Thread(target=worker, args=(lo, hi, k, c, lat)) for k in range(c)]
    t0 = time.time()
    for t in threads: t.start()
    for t in threads: t.join()
    return time.time() - t0, sorted(lat)
if pre:
    dt, _ = run(0, pre, 16)
    print(f"prefill: {pre} in {dt:.1f} s")
i0 = index()
dt, lat = run(pre, pre + n, c)
time.sleep(0.1)
p50 = lat[len(lat)//2]*1000; p99 = lat[int(len(lat)*0.99)]*1000
print(f"{n} registrations on top of {pre}, {c} clients: {dt:.2f} s ({n / dt:.0f}/s), latency p50 {p50:.1f} ms p99 {p99:.1f} ms, view rebuilds: {index() - i0}")
PY
if [ "${RESTART:-0}" = 1 ]; then
    kill -TERM "$PID"
    wait "$PID" 2>/dev/null || true
    rm -f "$DATA/agent/addrs.json"
    t0=$(date +%s.%N)
    start
    python3 - "$DATA/agent/addrs.json" "$((N + PREFILL))" "$t0" <<'PY'
import http.client, json, os, sys, time
path, want, t0 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
while not os.path.exists(path) or os.path.getsize(path) == 0:
    time.sleep(0.01)
    if time.time() - t0 > 300: raise SystemExit("the restarted agent did not start in 300 s")
http_addr = json.load(open(path))["http"]
host, port = http_addr.rsplit(":", 1)
while True:
    try:
        h = http.client.HTTPConnection(host, int(port), timeout=30)
        h.request("GET", "/v1/agent/metrics"); r = h.getresponse(); m = json.loads(r.read())
        if m["Catalog"]["Instances"] >= want:
            break
    except (OSError, ValueError, KeyError):
        pass
    time.sleep(0.02)
    if time.time() - t0 > 300: raise SystemExit("the restarted agent did not serve everything in 300 s")
print(f"restart: serving all {want} registrations {time.time() - t0:.2f} s after the start")
PY
fi
