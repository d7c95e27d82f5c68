#!/usr/bin/env bash
# Idle footprint of gossipd against Serf (HashiCorp, LAN defaults) at N = 30 agents each on
# loopback: CPU (utime + stime from /proc/PID/stat over a 30 s window) and RSS per agent; then
# gossipd's RSS with 10,000 service instances in the catalog (10 agents, 1,000 registered on
# each through the HTTP API, measured once every agent holds all 10,000). Each cluster runs
# alone. Details in scripts/bench-peers.py. Installs serf with apt-get when missing. Asserts
# nothing.
#
# usage: scripts/bench-footprint.sh [--n 30] [--cpu-seconds 30] [--instances 10000] [--holders 10]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v serf >/dev/null; then
    echo "# installing serf"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq serf >/dev/null
fi
[ -x "${GOSSIPD_BIN:-$ROOT/target/release/gossipd}" ] || (cd "$ROOT" && cargo build --release -p gossipd)
exec python3 "$ROOT/scripts/bench-peers.py" footprint "$@"
