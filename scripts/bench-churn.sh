#!/usr/bin/env bash
# Liveness under churn and across restarts (issue #13): agreement of every agent after 60
# replacements of 20 agents in 300 s (SIGKILL, SIGTERM and `gossipd leave` in turn), and what a
# peer answers (HTTP catalog, DNS SRV) while an agent holding 2,000 instances restarts. Real
# release-build agents with a cluster CA, on loopback; no root. Details in
# scripts/bench-churn.py. Asserts nothing.
#
# usage: scripts/bench-churn.sh [churn] [restart] [--agents 20] [--replacements 60] [--seconds 300]
#                               [--quiet-seconds 90] [--instances 2000] [--seed 13]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v dig >/dev/null || echo "dig not installed (apt-get install bind9-dnsutils): DNS is then asked without it" >&2
[ -x "${GOSSIPD_BIN:-$ROOT/target/release/gossipd}" ] || (cd "$ROOT" && cargo build --release -p gossipd)
exec python3 "$ROOT/scripts/bench-churn.py" "$@"
