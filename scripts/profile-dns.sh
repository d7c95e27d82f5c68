#!/usr/bin/env bash
# Instruction count of gossipd's DNS query path under callgrind: repeatable on a noisy machine.
#
# Starts one agent under `valgrind --tool=callgrind` (collection off), registers service `web`
# with 10 instances (as scripts/bench-dns.sh does), sends a warm-up, then turns collection on
# for exactly --queries queries from dnsperf (-e, A and SRV alternating, at a modest rate so
# none is lost) and prints instructions per query and the top functions (inclusive).
#
# With --peer dnsmasq, profiles dnsmasq instead, serving the same records as in
# scripts/bench-dns.sh: a user-space instruction count to set beside gossipd's (the kernel's
# share, the same recvfrom/sendto for both, is not counted by callgrind).
#
# usage: scripts/profile-dns.sh [--queries 20000] [--out DIR] [--peer dnsmasq]
set -euo pipefail
QUERIES=20000
OUT=""
PEER=""
while [ $# -gt 0 ]; do
    case "$1" in
        --queries) QUERIES=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --peer) PEER=$2; shift 2 ;;
        *) echo "usage: $0 [--queries 20000] [--out DIR] [--peer dnsmasq]" >&2; exit 2 ;;
    esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${GOSSIPD_BIN:-$ROOT/target/release/gossipd}
TMP=$(mktemp -d /tmp/gossipd-profile-dns.XXXXXX)
OUT=${OUT:-$TMP}
mkdir -p "$OUT"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; [ "$OUT" = "$TMP" ] || rm -rf "$TMP"; }
trap cleanup EXIT
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

VG=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out")
if [ "$PEER" = dnsmasq ]; then
    PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    : >"$TMP/hosts"
    dm_args=()
    for i in $(seq 1 10); do
        t=$(printf '7f0001%02x.addr.gossip' "$i")
        echo "127.0.1.$i web.service.gossip" >>"$TMP/hosts"
        dm_args+=("--host-record=$t,127.0.1.$i" "--srv-host=web.service.gossip,$t,8080,1,1")
    done
    "${VG[@]}" /usr/sbin/dnsmasq -k --conf-file=/dev/null --port="$PORT" --listen-address=127.0.0.1 \
        --bind-interfaces --no-resolv --no-hosts --addn-hosts="$TMP/hosts" --local=/gossip/ \
        --local-ttl=0 --cache-size=1000 --user=root --pid-file= "${dm_args[@]}" >/dev/null 2>"$TMP/log" &
    PID=$!
    DNS=127.0.0.1:$PORT
    BIN=/usr/sbin/dnsmasq
    sleep 5
else
    "$BIN" keygen >"$TMP/cluster.key"
    "${VG[@]}" "$BIN" agent --node bench --bind 127.0.0.1:0 --dns 127.0.0.1:0 --http 127.0.0.1:0 \
        --data-dir "$TMP" --cluster-key-file "$TMP/cluster.key" --log-level warn >/dev/null 2>"$TMP/log" &
    PID=$!
    for _ in $(seq 600); do [ -s "$TMP/addrs.json" ] && break; sleep 0.1; done
    sleep 1
    HTTP=$(json_field "$TMP/addrs.json" http)
    DNS=$(json_field "$TMP/addrs.json" dns)
    for i in $(seq 1 10); do
        curl -sf -X PUT --data "{\"ID\":\"web-$i\",\"Name\":\"web\",\"Address\":\"127.0.1.$i\",\"Port\":8080}" \
            "http://$HTTP/v1/agent/service/register" >/dev/null
    done
fi
printf 'web.service.gossip A\nweb.service.gossip SRV\n' >"$TMP/queries.txt"
sleep 2
callgrind_control -i on "$PID" >/dev/null
dnsperf -e -s 127.0.0.1 -p "${DNS##*:}" -d "$TMP/queries.txt" -n 50 -Q 200 >/dev/null 2>&1
# Dump (and zero) after the warm-up, so that the next dump holds the measured queries only.
callgrind_control -d "$PID" >/dev/null
out=$(dnsperf -e -s 127.0.0.1 -p "${DNS##*:}" -d "$TMP/queries.txt" -n $((QUERIES / 2)) -Q 1000 -t 30 2>&1)
callgrind_control -i off "$PID" >/dev/null
callgrind_control -d "$PID" >/dev/null
sleep 1
done_q=$(awk '/Queries completed/ {print $3}' <<<"$out")
file=$(ls -t "$OUT"/callgrind.out* | head -1)
total=$(awk '/^totals:/ {print $2}' "$file")
echo "# $("$BIN" --version 2>/dev/null | head -1), tree $(git -C "$ROOT" describe --always --dirty), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "queries answered: $done_q; instructions: $total; per query: $((total / done_q))"
callgrind_annotate --inclusive=yes "$file" 2>/dev/null | sed -n '1,60p' | grep -v '^--' | cut -c1-180 | head -45
