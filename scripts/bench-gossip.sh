#!/usr/bin/env bash
# gossipd against Serf (HashiCorp, LAN defaults) on loopback, N = 30 and N = 100 agents each:
# time for a change on one agent to be visible on every agent, and steady-state bytes per agent
# per second counted by iptables (UDP and TCP separately; gossipd's own counter cross-checks).
# Each system's cluster runs alone (gossipd, then Serf; N = 30, then N = 100): 200 agents at
# once would measure the 2 CPUs, not the protocols. Details in scripts/bench-peers.py.
# Installs serf and iptables with apt-get when missing; needs root (iptables). Asserts nothing.
#
# gossipd runs with a cluster CA made for the run (a certificate per agent, certificates
# required) unless --no-ca (the cluster key only); --compare-no-ca runs both.
#
# usage: scripts/bench-gossip.sh [--sizes 30,100] [--trials 10] [--idle-seconds 60] [--poll-ms 10]
#                                [--no-ca | --compare-no-ca] [--no-serf-encrypted]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
need=()
command -v serf >/dev/null || need+=(serf)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || need+=(iptables)
if [ ${#need[@]} -gt 0 ]; then
    echo "# installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin
[ -x "${GOSSIPD_BIN:-$ROOT/target/release/gossipd}" ] || (cd "$ROOT" && cargo build --release -p gossipd)

export BENCH_IPT_CHAIN=GBENCH$$
cleanup() {
    iptables -w -D OUTPUT -j "$BENCH_IPT_CHAIN" 2>/dev/null || true
    iptables -w -F "$BENCH_IPT_CHAIN" 2>/dev/null || true
    iptables -w -X "$BENCH_IPT_CHAIN" 2>/dev/null || true
}
trap cleanup EXIT
python3 "$ROOT/scripts/bench-peers.py" gossip "$@"
