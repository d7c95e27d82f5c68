#!/usr/bin/env bash
# Large owners (issue #16) on loopback: N services registered through one agent's HTTP API
# (8 clients) reaching the other agents of a 5-agent cluster, a fresh agent joining that
# catalog, gossip bytes, UDP receive-buffer drops and replica RSS. Details in
# scripts/bench-large-owner.py. Builds the release binary first (GOSSIPD_BIN overrides it and
# skips the build). Loopback only; every agent is killed on exit; asserts nothing.
#
# usage: scripts/bench-large-owner.sh [--sizes 5000,20000] [--rounds 1] [--clients 8] [--agents 5]
#                                     [--poll-ms 150] [--converge-timeout 300] [--fresh-timeout 300]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${GOSSIPD_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release -p gossipd)
fi
# The whole run is bounded: at most 3 hours, whatever the arguments.
exec timeout --signal=TERM --kill-after=30 10800 python3 "$ROOT/scripts/bench-large-owner.py" "$@"
