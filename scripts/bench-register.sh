#!/usr/bin/env bash
# Bulk registration on one agent: N services registered through the HTTP API by C concurrent
# clients (one request at a time each). Prints the wall time and how many times the views were
# rebuilt (the rise of X-Consul-Index, one step per rebuild). Data directory on tmpfs
# (/dev/shm), so the figure is the agent's work, not the disk's fsync.
#
# usage: scripts/bench-register.sh [N 2000] [C 1]    (GOSSIPD_BIN overrides the binary)
set -euo pipefail
N=${1:-2000}
C=${2:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${GOSSIPD_BIN:-$ROOT/target/release/gossipd}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p gossipd)
DATA=$(mktemp -d /dev/shm/gossipd-bench-register.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
"$BIN" keygen >"$DATA/cluster.key"
"$BIN" agent --node bulk --bind 127.0.0.1:0 --dns 127.0.0.1:0 --http 127.0.0.1:0 --data-dir "$DATA/agent" \
    --cluster-key-file "$DATA/cluster.key" --log-level warn >/dev/null 2>"$DATA/log" &
PID=$!
for _ in $(seq 100); do [ -s "$DATA/agent/addrs.json" ] && break; sleep 0.05; done
sleep 0.3
echo "# $("$BIN" --version | head -1), tree $(git -C "$ROOT" describe --always --dirty), load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$DATA/agent/addrs.json" "$N" "$C" <<'PY'
import json, sys, threading, time, urllib.request
http = json.load(open(sys.argv[1]))["http"]
n, c = int(sys.argv[2]), int(sys.argv[3])
def index():
    with urllib.request.urlopen(f"http://{http}/v1/catalog/services") as r:
        return int(r.headers["X-Consul-Index"])
def worker(k):
    for i in range(k, n, c):
        body = json.dumps({"ID": f"b-{i}", "Name": f"svc{i % 100}",
                           "Address": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "Port": 8000}).encode()
        req = urllib.request.Request(f"http://{http}/v1/agent/service/register", data=body, method="PUT")
        urllib.request.urlopen(req, timeout=120).read()
i0, t0 = index(), time.time()
threads = [threading.Thread(target=worker, args=(k,)) for k in range(c)]
for t in threads: t.start()
for t in threads: t.join()
dt = time.time() - t0
time.sleep(0.1)
print(f"{n} registrations, {c} clients: {dt:.2f} s ({n / dt:.0f}/s), view rebuilds: {index() - i0}")
PY
