#!/usr/bin/env bash
# Several datacenters on loopback (issue #15): a remote lookup's time beside a local one, the
# time until a lost datacenter answers SERVFAIL, and WAN bytes per agent per second at idle.
# Real release-build agents with a cluster CA; no root. Details in scripts/bench-dc.py.
# Asserts nothing.
#
# usage: scripts/bench-dc.sh [--dcs 3] [--queries 2000] [--idle-seconds 30] [--keep]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ -x "${GOSSIPD_BIN:-$ROOT/target/release/gossipd}" ] || (cd "$ROOT" && cargo build --release -p gossipd)
exec python3 "$ROOT/scripts/bench-dc.py" "$@"
