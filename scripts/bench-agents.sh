#!/usr/bin/env bash
# N real agents on one machine (issue #16, item 5), gossipd beside Serf: each agent on its own
# loopback address (127.0.1.1, 127.0.1.2, ...) with the default ports, all spawned in one
# tight loop; time until every agent holds every member and service, idle CPU, RSS and gossip
# bytes per agent, a change's propagation to all. Details in scripts/bench-agents.py.
# Builds the release binary first (GOSSIPD_BIN overrides it and skips the build); needs serf
# (apt-get install serf), dig and root for the iptables byte counters (without iptables the
# bytes are gossipd's own counter only). Loopback only; every agent is killed on exit; the
# whole run is bounded by BENCH_TIMEOUT seconds (default 1800); asserts nothing.
#
# usage: scripts/bench-agents.sh [--sizes 100,200,300] [--systems gossipd,serf] [--trials 3]
#                                [--idle-seconds 30] [--settle-seconds 15] [--converge-timeout 300]
#                                [--seeds 3] [--spawn-over 0] [--poll-ms 500] [--change-poll-ms 50] [--no-ca]
#                                [--no-serf-encrypt]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${GOSSIPD_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release -p gossipd)
fi
export PATH=$PATH:/usr/sbin
# 300 agents x (a poller connection + sockets): the script raises its own soft limit to the
# hard one; raise the soft limit here too for the agents it starts.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec timeout --signal=TERM --kill-after=30 "${BENCH_TIMEOUT:-1800}" python3 "$ROOT/scripts/bench-agents.py" "$@"
