#!/usr/bin/env bash
# DNS query path of gossipd side by side with dnsmasq and unbound, on loopback.
#
# The same data is served by all three: service `web` with 10 instances (A 127.0.1.1..10) and
# their SRV records (priority 1, weight 1, port 8080, targets `7f0001XX.addr.gossip.`, the name
# gossipd itself gives an instance with an address of its own) plus the targets' A records.
# gossipd learns them through its HTTP API; dnsmasq through an addn-hosts file, --srv-host and
# --host-record; unbound through `local-data` in a static local zone.
#
# Each server is pinned to CPU 0 and the load generator (dnsperf) to CPU 1 (taskset), so every
# server has exactly one core (gossipd's tokio runtime sizes itself from the affinity mask: one
# worker). For each server, in turn, for --rounds rounds:
#   1. throughput: dnsperf over UDP with EDNS (-e: 1232-byte answers, so the SRV answer with its
#      additional records fits), -l SECONDS, -c 10 clients, -q 100 outstanding, queries
#      alternating `web.service.gossip A` and `web.service.gossip SRV`: QPS, mean latency, and
#      the server's CPU time (utime + stime from /proc/PID/stat) per answered query;
#   2. latency: dnsperf at a fixed rate every server sustains (-Q RATE, -l 5, -v, the same query
#      mix), per-query latencies -> p50, p99, p99.9.
# Prints the figures and the ratios gossipd/dnsmasq and gossipd/unbound (best round of each).
# Installs dnsperf, dnsmasq and unbound with apt-get when missing. Asserts nothing.
#
# usage: scripts/bench-dns.sh [--seconds 10] [--rate 2000] [--rounds 2]
set -euo pipefail

SECONDS_RUN=10
RATE=2000
ROUNDS=2
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_RUN=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        *) echo "usage: $0 [--seconds 10] [--rate 2000] [--rounds 2]" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${GOSSIPD_BIN:-$ROOT/target/release/gossipd}

need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq)
command -v unbound >/dev/null || [ -x /usr/sbin/unbound ] || need+=(unbound)
if [ ${#need[@]} -gt 0 ]; then
    echo "# installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p gossipd)

TMP=$(mktemp -d /tmp/gossipd-bench-dns.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# --- gossipd ---------------------------------------------------------------------------------
mkdir -p "$TMP/gossipd"
"$BIN" keygen >"$TMP/cluster.key"
taskset -c 0 "$BIN" agent --node bench --bind 127.0.0.1:0 --dns 127.0.0.1:0 --http 127.0.0.1:0 \
    --data-dir "$TMP/gossipd" --cluster-key-file "$TMP/cluster.key" --log-level warn >/dev/null 2>"$TMP/gossipd/log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$TMP/gossipd/addrs.json" ] && break; sleep 0.05; done
sleep 0.2
HTTP=$(json_field "$TMP/gossipd/addrs.json" http)
DNS=$(json_field "$TMP/gossipd/addrs.json" dns)
GOSSIPD_PORT=${DNS##*:}
for i in $(seq 1 10); do
    python3 - "$HTTP" "$i" <<'PY'
import sys, urllib.request
http, i = sys.argv[1], sys.argv[2]
body = f'{{"ID":"web-{i}","Name":"web","Address":"127.0.1.{i}","Port":8080}}'.encode()
urllib.request.urlopen(urllib.request.Request(f"http://{http}/v1/agent/service/register", data=body, method="PUT"), timeout=10)
PY
done

# --- dnsmasq ---------------------------------------------------------------------------------
DNSMASQ_PORT=$(free_port)
mkdir -p "$TMP/dnsmasq"
: >"$TMP/dnsmasq/hosts"
dm_args=()
for i in $(seq 1 10); do
    t=$(printf '7f0001%02x.addr.gossip' "$i")
    echo "127.0.1.$i web.service.gossip" >>"$TMP/dnsmasq/hosts"
    dm_args+=("--host-record=$t,127.0.1.$i" "--srv-host=web.service.gossip,$t,8080,1,1")
done
taskset -c 0 dnsmasq -k --conf-file=/dev/null --port="$DNSMASQ_PORT" --listen-address=127.0.0.1 \
    --bind-interfaces --no-resolv --no-hosts --addn-hosts="$TMP/dnsmasq/hosts" --local=/gossip/ \
    --local-ttl=0 --cache-size=1000 --user=root --pid-file= "${dm_args[@]}" \
    >"$TMP/dnsmasq/log" 2>&1 &
PIDS+=($!)

# --- unbound ---------------------------------------------------------------------------------
UNBOUND_PORT=$(free_port)
mkdir -p "$TMP/unbound"
{
    cat <<EOF
server:
  interface: 127.0.0.1@$UNBOUND_PORT
  port: $UNBOUND_PORT
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "$TMP/unbound"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  local-zone: "gossip." static
EOF
    for i in $(seq 1 10); do
        t=$(printf '7f0001%02x.addr.gossip.' "$i")
        echo "  local-data: \"web.service.gossip. 0 IN A 127.0.1.$i\""
        echo "  local-data: \"web.service.gossip. 0 IN SRV 1 1 8080 $t\""
        echo "  local-data: \"$t 0 IN A 127.0.1.$i\""
    done
    printf 'remote-control:\n  control-enable: no\n'
} >"$TMP/unbound/unbound.conf"
taskset -c 0 unbound -d -c "$TMP/unbound/unbound.conf" >"$TMP/unbound/log" 2>&1 &
PIDS+=($!)

printf 'web.service.gossip A\nweb.service.gossip SRV\n' >"$TMP/queries.txt"

# Wait until every server answers 10 A records.
python3 - "$GOSSIPD_PORT" "$DNSMASQ_PORT" "$UNBOUND_PORT" <<'PY'
import socket, struct, sys, time
def query(port, qtype):
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 1)
    q += b"".join(bytes([len(l)]) + l.encode() for l in "web.service.gossip".split(".")) + b"\0"
    q += struct.pack(">HH", qtype, 1) + b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)  # EDNS, 1232
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    s.sendto(q, ("127.0.0.1", port))
    r = s.recv(4096)
    return struct.unpack(">HHHHHH", r[:12]), len(r)
for port in map(int, sys.argv[1:]):
    for _ in range(100):
        try:
            (hdr, _) = query(port, 1)
            if hdr[3] == 10:
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        sys.exit(f"server on port {port} does not answer 10 A records")
PY

echo "# DNS: $("$BIN" --version 2>/dev/null | head -1 || echo '?') (binary built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC'); tree now at $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')), $(dnsmasq --version | head -1 | cut -d' ' -f1-3), $(unbound -V | head -1)"
echo "# $(nproc) CPUs; servers pinned to CPU 0, dnsperf to CPU 1; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# data: web.service.gossip, 10 instances (A) + 10 SRV with target A records; queries: A and SRV alternating"
echo "# throughput: dnsperf -e -l $SECONDS_RUN -c 10 -q 100 (UDP); latency: dnsperf -e -Q $RATE -l 5 -v"
echo "# answer sizes (A / SRV, bytes, EDNS payload 1232 as dnsperf -e sends):"
python3 - "$GOSSIPD_PORT" "$DNSMASQ_PORT" "$UNBOUND_PORT" <<'PY'
import socket, struct, sys
def query(port, qtype):
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 1)
    q += b"".join(bytes([len(l)]) + l.encode() for l in "web.service.gossip".split(".")) + b"\0"
    q += struct.pack(">HH", qtype, 1) + b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)  # EDNS, 1232
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    s.sendto(q, ("127.0.0.1", port))
    r = s.recv(4096)
    h = struct.unpack(">HHHHHH", r[:12])
    tc = " TC" if h[1] & 0x0200 else ""
    return f"{len(r)} B ({h[3]} answers, {h[5]} additional incl. OPT{tc})"
for name, port in zip(["gossipd", "dnsmasq", "unbound"], map(int, sys.argv[1:])):
    print(f"#   {name:8s} A {query(port, 1)}; SRV {query(port, 33)}")
PY

RESULTS=$TMP/results.txt
: >"$RESULTS"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for round in $(seq 1 "$ROUNDS"); do
    for server in gossipd dnsmasq unbound; do
        case $server in
            gossipd) port=$GOSSIPD_PORT pid=${PIDS[0]} ;;
            dnsmasq) port=$DNSMASQ_PORT pid=${PIDS[1]} ;;
            unbound) port=$UNBOUND_PORT pid=${PIDS[2]} ;;
        esac
        c0=$(cpu_ticks "$pid")
        out=$(taskset -c 1 dnsperf -e -s 127.0.0.1 -p "$port" -d "$TMP/queries.txt" -l "$SECONDS_RUN" -c 10 -q 100 2>&1)
        c1=$(cpu_ticks "$pid")
        qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
        done_q=$(awk '/Queries completed/ {print $3}' <<<"$out")
        avg=$(awk '/Average Latency/ {print $4}' <<<"$out")
        lost=$(awk '/Queries lost/ {print $3}' <<<"$out")
        # Server CPU (user + system, the kernel's UDP send path included) per answered query:
        # robust to other load on the machine, unlike QPS.
        cpu_us=$(python3 -c "print(f'{($c1 - $c0) / $(getconf CLK_TCK) * 1e6 / max(1, $done_q):.1f}')")
        cpu_pct=$(python3 -c "print(f'{($c1 - $c0) / $(getconf CLK_TCK) * 100 / $SECONDS_RUN:.0f}')")
        taskset -c 1 dnsperf -e -s 127.0.0.1 -p "$port" -d "$TMP/queries.txt" -l 5 -Q "$RATE" -v \
            >"$TMP/lat-$server-$round.txt" 2>&1
        read -r p50 p99 p999 n nlost < <(python3 - "$TMP/lat-$server-$round.txt" <<'PY'
import sys
lat, lost = [], 0
for line in open(sys.argv[1]):
    if line.startswith("> "):
        f = line.split()
        if f[1] == "NOERROR":
            lat.append(float(f[-1]) * 1e6)
    elif "Queries lost:" in line:
        lost = int(line.split()[2])
lat.sort()
pick = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
print(f"{pick(0.5):.0f} {pick(0.99):.0f} {pick(0.999):.0f} {len(lat)} {lost}")
PY
        )
        printf 'round %d %-8s %7.0f QPS (mean %5.0f us, lost %s; server CPU %s%%, %s us/query) | at %s qps: p50 %4s us, p99 %5s us, p99.9 %5s us (%s answers, %s lost)\n' \
            "$round" "$server" "$qps" "$(python3 -c "print(float('$avg')*1e6)")" "$lost" "$cpu_pct" "$cpu_us" "$RATE" "$p50" "$p99" "$p999" "$n" "$nlost"
        echo "$server $qps $p50 $p99 $p999 $cpu_us" >>"$RESULTS"
    done
done

for i in 0 1 2; do
    name=(gossipd dnsmasq unbound)
    echo "# ${name[$i]} RSS after the run: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/"${PIDS[$i]}"/status)"
done

python3 - "$RESULTS" <<'PY'
import sys
best = {}
for line in open(sys.argv[1]):
    s, qps, p50, p99, p999, cpu = line.split()
    b = best.setdefault(s, {"qps": 0.0, "p50": float("inf"), "p99": float("inf"), "cpu": float("inf")})
    b["qps"] = max(b["qps"], float(qps))
    b["p50"] = min(b["p50"], float(p50))
    b["p99"] = min(b["p99"], float(p99))
    b["cpu"] = min(b["cpu"], float(cpu))
g = best["gossipd"]
print("best round of each:")
for s, b in best.items():
    print(f"  {s:8s} {b['qps']:7.0f} QPS, p50 {b['p50']:.0f} us, p99 {b['p99']:.0f} us, {b['cpu']:.1f} us CPU/query")
for peer in ("dnsmasq", "unbound"):
    p = best[peer]
    print(f"ratio gossipd/{peer}: QPS {g['qps'] / p['qps']:.2f}, p50 {g['p50'] / p['p50']:.2f}, "
          f"p99 {g['p99'] / p['p99']:.2f}, CPU/query {g['cpu'] / p['cpu']:.2f}")
PY
