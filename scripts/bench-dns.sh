#!/usr/bin/env bash
# DNS query path of gossipd side by side with dnsmasq, unbound, NSD and Knot DNS, on loopback.
#
# The same data is served by all: service `web` with 10 instances (A 127.0.1.1..10) and their
# SRV records (priority 1, weight 1, port 8080, targets `7f0001XX.addr.gossip.`, the name
# gossipd itself gives an instance with an address of its own) plus the targets' A records.
# gossipd learns them through its HTTP API; dnsmasq through an addn-hosts file, --srv-host and
# --host-record; unbound through `local-data` in a static local zone; NSD and Knot DNS from one
# zone file `gossip.` (SOA, NS, the same records, TTL 0), both authoritative for it. NSD and
# knotd run from temporary directories of their own (config, zone, pid, state, no control
# socket for NSD, a socket in the temporary directory for knotd), listen on 127.0.0.1 only,
# one UDP worker each (NSD `server-count: 1`, Knot `udp-workers: 1`), NSD's response rate
# limiting off (Debian builds it in, at 200 qps per /24 by default); all are stopped on exit.
#
# Each server is pinned to CPU 0 and the load generator (dnsperf) to CPU 1 (taskset), so every
# server has exactly one core (gossipd's tokio runtime sizes itself from the affinity mask: one
# worker). For each server, in turn, for --rounds rounds:
#   1. throughput: dnsperf over UDP with EDNS (-e: 1232-byte answers, so the SRV answer with its
#      additional records fits), -l SECONDS, -c 10 clients, -q 100 outstanding, queries
#      alternating `web.service.gossip A` and `web.service.gossip SRV`: QPS, mean latency, and
#      the server's CPU time (utime + stime from /proc/PID/stat, summed over the server's
#      processes: NSD serves from a child process) per answered query, and its user-space
#      share;
#   2. latency: dnsperf at a fixed rate every server sustains (-Q RATE, -l 5, -v, the same query
#      mix), per-query latencies -> p50, p99, p99.9.
# Prints the figures and the ratios of gossipd to each other server (best round of each).
# With --baseline BIN a second agent built from other code (e.g. main's, to compare before
# and after a change in one run) is measured beside the rest as `gossipd-base`.
# --servers "gossipd nsd" measures only those (gossipd is always started).
# Installs dnsperf, dnsmasq, unbound, nsd and knot with apt-get when missing, as programs, not
# services (a policy-rc.d that forbids starting them, removed after the install). Asserts
# nothing.
#
# usage: scripts/bench-dns.sh [--seconds 10] [--rate 2000] [--rounds 2] [--baseline BIN]
#                             [--servers "gossipd dnsmasq unbound nsd knot"]
set -euo pipefail

SECONDS_RUN=10
RATE=2000
ROUNDS=2
BASELINE=""
SERVERS="gossipd dnsmasq unbound nsd knot"
usage="usage: $0 [--seconds 10] [--rate 2000] [--rounds 2] [--baseline BIN] [--servers \"gossipd dnsmasq unbound nsd knot\"]"
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_RUN=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --baseline) BASELINE=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
want() { [[ " $SERVERS " == *" $1 "* ]]; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${GOSSIPD_BIN:-$ROOT/target/release/gossipd}

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have dnsperf || need+=(dnsperf)
want dnsmasq && ! have dnsmasq && need+=(dnsmasq)
want unbound && ! have unbound && need+=(unbound)
want nsd && ! have nsd && need+=(nsd)
want knot && ! have knotd && need+=(knot)
if [ ${#need[@]} -gt 0 ]; then
    echo "# installing ${need[*]}"
    # Installed as programs, not as services: a policy-rc.d keeps the packages' scripts from
    # starting nsd, knot, dnsmasq or unbound on this machine (as .ci/run does).
    ours=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        ours=1
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
    fi
    status=0
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || status=$?
    [ -n "$ours" ] && rm -f /usr/sbin/policy-rc.d
    [ "$status" -eq 0 ] || exit "$status"
fi
export PATH=$PATH:/usr/sbin
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p gossipd)

TMP=$(mktemp -d /tmp/gossipd-bench-dns.XXXXXX)
declare -A PID PORT
ORDER=()
# The processes of a server: its main pid and every descendant (NSD serves from a child).
tree() {
    local p=$1 c
    echo "$p"
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree "$c"; done
}
cleanup() {
    local all=() p
    for p in "${PID[@]}"; do all+=($(tree "$p")); done
    for p in "${all[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PID[@]}"; do wait "$p" 2>/dev/null || true; done
    # Anything of ours still alive after TERM (a child that outlived its parent) gets KILL.
    sleep 0.2
    for p in "${all[@]}"; do [ -d "/proc/$p" ] && kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# --- gossipd (and the baseline build) -------------------------------------------------------
start_gossipd() { # name binary
    local name=$1 bin=$2 http dns i
    mkdir -p "$TMP/$name"
    "$bin" keygen >"$TMP/$name/cluster.key"
    taskset -c 0 "$bin" agent --node bench --bind 127.0.0.1:0 --dns 127.0.0.1:0 --http 127.0.0.1:0 \
        --data-dir "$TMP/$name" --cluster-key-file "$TMP/$name/cluster.key" --log-level warn >/dev/null 2>"$TMP/$name/log" &
    PID[$name]=$!
    ORDER+=("$name")
    for _ in $(seq 100); do [ -s "$TMP/$name/addrs.json" ] && break; sleep 0.05; done
    sleep 0.2
    http=$(json_field "$TMP/$name/addrs.json" http)
    dns=$(json_field "$TMP/$name/addrs.json" dns)
    PORT[$name]=${dns##*:}
    for i in $(seq 1 10); do
        python3 - "$http" "$i" <<'PY'
import sys, urllib.request
http, i = sys.argv[1], sys.argv[2]
body = f'{{"ID":"web-{i}","Name":"web","Address":"127.0.1.{i}","Port":8080}}'.encode()
urllib.request.urlopen(urllib.request.Request(f"http://{http}/v1/agent/service/register", data=body, method="PUT"), timeout=10)
PY
    done
}
start_gossipd gossipd "$BIN"
if [ -n "$BASELINE" ]; then start_gossipd gossipd-base "$BASELINE"; fi

# --- dnsmasq ---------------------------------------------------------------------------------
if want dnsmasq; then
    PORT[dnsmasq]=$(free_port)
    mkdir -p "$TMP/dnsmasq"
    : >"$TMP/dnsmasq/hosts"
    dm_args=()
    for i in $(seq 1 10); do
        t=$(printf '7f0001%02x.addr.gossip' "$i")
        echo "127.0.1.$i web.service.gossip" >>"$TMP/dnsmasq/hosts"
        dm_args+=("--host-record=$t,127.0.1.$i" "--srv-host=web.service.gossip,$t,8080,1,1")
    done
    taskset -c 0 dnsmasq -k --conf-file=/dev/null --port="${PORT[dnsmasq]}" --listen-address=127.0.0.1 \
        --bind-interfaces --no-resolv --no-hosts --addn-hosts="$TMP/dnsmasq/hosts" --local=/gossip/ \
        --local-ttl=0 --cache-size=1000 --user=root --pid-file= "${dm_args[@]}" \
        >"$TMP/dnsmasq/log" 2>&1 &
    PID[dnsmasq]=$!
    ORDER+=(dnsmasq)
fi

# --- unbound ---------------------------------------------------------------------------------
if want unbound; then
    PORT[unbound]=$(free_port)
    mkdir -p "$TMP/unbound"
    {
        cat <<EOF
server:
  interface: 127.0.0.1@${PORT[unbound]}
  port: ${PORT[unbound]}
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
    PID[unbound]=$!
    ORDER+=(unbound)
fi

# --- the zone file of NSD and Knot DNS -------------------------------------------------------
zone_file() {
    local i t
    cat <<EOF
\$ORIGIN gossip.
\$TTL 0
@ IN SOA ns.gossip. hostmaster.gossip. 1 3600 600 86400 0
@ IN NS ns.gossip.
ns IN A 127.0.0.1
EOF
    for i in $(seq 1 10); do
        t=$(printf '7f0001%02x.addr' "$i")
        echo "web.service IN A 127.0.1.$i"
        echo "web.service IN SRV 1 1 8080 $t.gossip."
        echo "$t IN A 127.0.1.$i"
    done
}

# --- NSD: foreground (-d), one server process, no database, no control, no RRL ---------------
if want nsd; then
    PORT[nsd]=$(free_port)
    d=$TMP/nsd
    mkdir -p "$d"
    zone_file >"$d/gossip.zone"
    cat >"$d/nsd.conf" <<EOF
server:
  ip-address: 127.0.0.1@${PORT[nsd]}
  port: ${PORT[nsd]}
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$d"
  database: ""
  zonelistfile: "$d/zone.list"
  xfrdfile: "$d/xfrd.state"
  xfrdir: "$d"
  pidfile: "$d/nsd.pid"
  logfile: "$d/nsd.log"
  verbosity: 0
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: gossip
  zonefile: "$d/gossip.zone"
EOF
    taskset -c 0 nsd -d -c "$d/nsd.conf" >"$d/log" 2>&1 &
    PID[nsd]=$!
    ORDER+=(nsd)
fi

# --- Knot DNS: foreground, one UDP worker, control socket and storage in its own directory ---
if want knot; then
    PORT[knot]=$(free_port)
    d=$TMP/knot
    mkdir -p "$d/db"
    zone_file >"$d/gossip.zone"
    cat >"$d/knot.conf" <<EOF
server:
    rundir: "$d"
    pidfile: "$d/knot.pid"
    listen: 127.0.0.1@${PORT[knot]}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "$d/knot.sock"
database:
    storage: "$d/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$d"
    file: "%s.zone"
    journal-content: none
    zonefile-sync: -1
zone:
  - domain: gossip
EOF
    taskset -c 0 knotd -c "$d/knot.conf" >"$d/log" 2>&1 &
    PID[knot]=$!
    ORDER+=(knot)
fi

printf 'web.service.gossip A\nweb.service.gossip SRV\n' >"$TMP/queries.txt"

ports=()
for s in "${ORDER[@]}"; do ports+=("$s=${PORT[$s]}"); done

# Wait until every server answers 10 A records.
python3 - "${ports[@]}" <<'PY'
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
for arg in sys.argv[1:]:
    name, port = arg.split("=")
    for _ in range(100):
        try:
            (hdr, _) = query(int(port), 1)
            if hdr[3] == 10:
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        sys.exit(f"{name} on port {port} does not answer 10 A records")
PY

version() {
    case $1 in
        gossipd) echo "gossipd (binary built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC'); tree now at $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'))" ;;
        gossipd-base) echo "gossipd-base $BASELINE (built $(date -u -r "$BASELINE" '+%Y-%m-%d %H:%M UTC'))" ;;
        dnsmasq) dnsmasq --version | head -1 | cut -d' ' -f1-3 ;;
        unbound) echo "unbound $(unbound -V | head -1 | awk '{print $2}')" ;;
        nsd) nsd -v 2>&1 | head -1 ;;
        knot) knotd -V | head -1 ;;
    esac
}
echo "# DNS: $(for s in "${ORDER[@]}"; do printf '%s; ' "$(version "$s")"; done)"
echo "# $(nproc) CPUs; servers pinned to CPU 0, dnsperf to CPU 1; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# data: web.service.gossip, 10 instances (A) + 10 SRV with target A records; queries: A and SRV alternating"
echo "# throughput: dnsperf -e -l $SECONDS_RUN -c 10 -q 100 (UDP); latency: dnsperf -e -Q $RATE -l 5 -v"
echo "# answer sizes (A / SRV, bytes, EDNS payload 1232 as dnsperf -e sends):"
python3 - "${ports[@]}" <<'PY'
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
    return f"{len(r)} B ({h[3]} answers, {h[4]} authority, {h[5]} additional incl. OPT{tc})"
for arg in sys.argv[1:]:
    name, port = arg.split("=")
    print(f"#   {name:12s} A {query(int(port), 1)}; SRV {query(int(port), 33)}")
PY

RESULTS=$TMP/results.txt
: >"$RESULTS"
# CPU ticks (user + system, threads included, and of children reaped meanwhile) of a server's
# processes. The command name in /proc/PID/stat may hold spaces ("nsd: server 1"): fields are
# counted after its closing parenthesis (utime, stime, cutime, cstime are then 12 to 15).
# Prints "user system" ticks.
cpu_ticks() {
    local user=0 sys=0 p u s
    for p in $(tree "$1"); do
        read -r u s < <(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $14, $13 + $15}') || true
        user=$((user + ${u:-0})) sys=$((sys + ${s:-0}))
    done
    echo "$user $sys"
}
for round in $(seq 1 "$ROUNDS"); do
    for server in "${ORDER[@]}"; do
        port=${PORT[$server]} pid=${PID[$server]}
        read -r u0 s0 < <(cpu_ticks "$pid")
        out=$(taskset -c 1 dnsperf -e -s 127.0.0.1 -p "$port" -d "$TMP/queries.txt" -l "$SECONDS_RUN" -c 10 -q 100 2>&1)
        read -r u1 s1 < <(cpu_ticks "$pid")
        c0=$((u0 + s0)) c1=$((u1 + s1))
        qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
        done_q=$(awk '/Queries completed/ {print $3}' <<<"$out")
        avg=$(awk '/Average Latency/ {print $4}' <<<"$out")
        lost=$(awk '/Queries lost/ {print $3}' <<<"$out")
        # Server CPU (user + system, the kernel's UDP send path included) per answered query:
        # robust to other load on the machine, unlike QPS.
        cpu_us=$(python3 -c "print(f'{($c1 - $c0) / $(getconf CLK_TCK) * 1e6 / max(1, $done_q):.2f}')")
        cpu_pct=$(python3 -c "print(f'{($c1 - $c0) / $(getconf CLK_TCK) * 100 / $SECONDS_RUN:.0f}')")
        # Of which in user space (the rest is the kernel's: system calls, and on loopback the
        # delivery of each answer into the client's socket, done on the sender's CPU).
        user_us=$(python3 -c "print(f'{($u1 - $u0) / $(getconf CLK_TCK) * 1e6 / max(1, $done_q):.2f}')")
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
        printf 'round %d %-12s %7.0f QPS (mean %5.0f us, lost %s; server CPU %s%%, %s us/query, %s in user space) | at %s qps: p50 %4s us, p99 %5s us, p99.9 %5s us (%s answers, %s lost)\n' \
            "$round" "$server" "$qps" "$(python3 -c "print(float('$avg')*1e6)")" "$lost" "$cpu_pct" "$cpu_us" "$user_us" "$RATE" "$p50" "$p99" "$p999" "$n" "$nlost"
        echo "$server $qps $p50 $p99 $p999 $cpu_us $user_us" >>"$RESULTS"
    done
done

for s in "${ORDER[@]}"; do
    rss=0
    for p in $(tree "${PID[$s]}"); do rss=$((rss + $(awk '/VmRSS/ {print $2}' /proc/"$p"/status 2>/dev/null || echo 0))); done
    echo "# $s RSS after the run: $(awk -v k="$rss" 'BEGIN {printf "%.1f MiB", k/1024}') ($(tree "${PID[$s]}" | wc -l) processes)"
done

python3 - "$RESULTS" <<'PY'
import sys
best, order = {}, []
for line in open(sys.argv[1]):
    s, qps, p50, p99, p999, cpu, user = line.split()
    if s not in best:
        order.append(s)
    b = best.setdefault(s, {"qps": 0.0, "p50": float("inf"), "p99": float("inf"), "cpu": float("inf"), "user": 0.0})
    b["qps"] = max(b["qps"], float(qps))
    b["p50"] = min(b["p50"], float(p50))
    b["p99"] = min(b["p99"], float(p99))
    if float(cpu) < b["cpu"]:
        b["cpu"], b["user"] = float(cpu), float(user)
g = best["gossipd"]
print("best round of each:")
for s in order:
    b = best[s]
    print(f"  {s:12s} {b['qps']:7.0f} QPS, p50 {b['p50']:.0f} us, p99 {b['p99']:.0f} us, {b['cpu']:.2f} us CPU/query ({b['user']:.2f} user)")
for peer in order[1:]:
    p = best[peer]
    print(f"ratio gossipd/{peer}: QPS {g['qps'] / p['qps']:.2f}, p50 {g['p50'] / p['p50']:.2f}, "
          f"p99 {g['p99'] / p['p99']:.2f}, CPU/query {g['cpu'] / p['cpu']:.2f}")
PY
