#!/usr/bin/env bash
# DNS latency of gossipd and dnsmasq at a fixed query rate, A/B alternated: each round starts a
# fresh server of each kind (pinned to CPU 0, dnsperf to CPU 1), serving the records of
# scripts/bench-dns.sh, and measures it with the same `dnsperf -e -Q RATE -l SECONDS -v` run.
# Prints per round the latency percentiles and how often the server was preempted
# (nonvoluntary context switches, from /proc): on a shared machine the tail is made of those.
#
# usage: scripts/latency-dns.sh [--rounds 3] [--rate 2000] [--seconds 5]
set -euo pipefail
ROUNDS=3
RATE=2000
SECS=5
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --seconds) SECS=$2; shift 2 ;;
        *) echo "usage: $0 [--rounds 3] [--rate 2000] [--seconds 5]" >&2; exit 2 ;;
    esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${GOSSIPD_BIN:-$ROOT/target/release/gossipd}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p gossipd)
TMP=$(mktemp -d /tmp/gossipd-latency-dns.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
printf 'web.service.gossip A\nweb.service.gossip SRV\n' >"$TMP/queries.txt"
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

start_gossipd() {
    rm -rf "$TMP/g" && mkdir -p "$TMP/g"
    "$BIN" keygen >"$TMP/g/key"
    taskset -c 0 "$BIN" agent --node lat --bind 127.0.0.1:0 --dns 127.0.0.1:0 --http 127.0.0.1:0 \
        --data-dir "$TMP/g/data" --cluster-key-file "$TMP/g/key" --log-level warn >/dev/null 2>"$TMP/g/log" &
    PID=$!
    for _ in $(seq 100); do [ -s "$TMP/g/data/addrs.json" ] && break; sleep 0.05; done
    sleep 0.3
    local http
    http=$(json_field "$TMP/g/data/addrs.json" http)
    PORT=$(json_field "$TMP/g/data/addrs.json" dns)
    PORT=${PORT##*:}
    for i in $(seq 1 10); do
        curl -sf -X PUT --data "{\"ID\":\"web-$i\",\"Name\":\"web\",\"Address\":\"127.0.1.$i\",\"Port\":8080}" \
            "http://$http/v1/agent/service/register" >/dev/null
    done
}

start_dnsmasq() {
    rm -rf "$TMP/d" && mkdir -p "$TMP/d"
    PORT=$(free_port)
    : >"$TMP/d/hosts"
    local args=() t
    for i in $(seq 1 10); do
        t=$(printf '7f0001%02x.addr.gossip' "$i")
        echo "127.0.1.$i web.service.gossip" >>"$TMP/d/hosts"
        args+=("--host-record=$t,127.0.1.$i" "--srv-host=web.service.gossip,$t,8080,1,1")
    done
    taskset -c 0 /usr/sbin/dnsmasq -k --conf-file=/dev/null --port="$PORT" --listen-address=127.0.0.1 \
        --bind-interfaces --no-resolv --no-hosts --addn-hosts="$TMP/d/hosts" --local=/gossip/ \
        --local-ttl=0 --cache-size=1000 --user=root --pid-file= "${args[@]}" >/dev/null 2>&1 &
    PID=$!
}

preempted() { cat /proc/"$PID"/task/*/status | awk '/^nonvoluntary_ctxt_switches/ {n += $2} END {print n}'; }

echo "# $("$BIN" --version | head -1), tree $(git -C "$ROOT" describe --always --dirty); dnsperf -e -Q $RATE -l $SECS -v; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
    for server in gossipd dnsmasq; do
        "start_$server"
        sleep 1
        c0=$(preempted)
        taskset -c 1 dnsperf -e -s 127.0.0.1 -p "$PORT" -d "$TMP/queries.txt" -l "$SECS" -Q "$RATE" -v >"$TMP/lat.txt" 2>&1
        c1=$(preempted)
        kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
        python3 - "$TMP/lat.txt" "$round" "$server" "$((c1 - c0))" <<'PY'
import sys
lat = []
for line in open(sys.argv[1]):
    if line.startswith("> "):
        f = line.split()
        if f[1] == "NOERROR":
            lat.append(float(f[-1]) * 1e6)
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
print(f"round {sys.argv[2]} {sys.argv[3]:8s} {len(lat)} answers: p50 {p(.5):.0f} us, p90 {p(.9):.0f}, "
      f"p99 {p(.99):.0f}, p99.9 {p(.999):.0f}, max {lat[-1] if lat else 0:.0f}; preempted {sys.argv[4]} times")
PY
    done
done
