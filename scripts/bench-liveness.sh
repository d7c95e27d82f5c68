#!/usr/bin/env bash
# Failure detection of gossipd against Serf (HashiCorp, LAN defaults), side by side in one run:
# time from SIGKILL of one agent to its removal on every other agent, and false suspicions and
# deaths over a soak at 10% UDP packet loss, for N = 30 and N = 100. Each system's cluster runs
# alone (gossipd, then Serf), inside a network namespace created here (its loopback carries the
# iptables loss rule), removed on exit with every process in it. Details in
# scripts/bench-liveness.py. Needs root, serf, iptables and iproute2; installs nothing. Asserts
# nothing.
#
# usage: scripts/bench-liveness.sh [--sizes 30,100] [--kills 3] [--soak-seconds 300,180] [--loss 0.1]
#                                  [--loss-proto udp|all] [--systems gossipd,gossipd-no-ca,serf] [--no-ca]
# gossipd runs with a cluster CA made for the run (a certificate per agent, certificates
# required); gossipd-no-ca (or --no-ca) with the cluster key only.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH=$PATH:/usr/sbin:/sbin
missing=()
command -v serf >/dev/null || missing+=(serf)
command -v iptables >/dev/null || missing+=(iptables)
command -v ip >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
    echo "missing: ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
fi
[ "$(id -u)" = 0 ] || { echo "needs root (network namespace, iptables)" >&2; exit 1; }
[ -x "${GOSSIPD_BIN:-$ROOT/target/release/gossipd}" ] || (cd "$ROOT" && cargo build --release -p gossipd)

NS=gossipd-live-$$
cleanup() {
    # Only processes inside our own namespace, by pid.
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" python3 "$ROOT/scripts/bench-liveness.py" "$@"
