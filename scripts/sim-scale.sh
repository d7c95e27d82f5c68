#!/usr/bin/env bash
# Scale figures of the gossip protocol, from the deterministic simulator (crates/gossip-sim).
#
# Builds gossip-sim in release, measures for each N the anti-entropy rounds to spread one
# change (fanout 0), the rumor spreading time (default fanout), the idle bytes per node per
# round and the peak resident set, prints the table, writes docs/sim/scale.csv and
# docs/sim/scale.txt, and plots docs/sim/convergence.svg and docs/sim/bytes.svg.
#
# An N whose estimated memory (the peak at the largest N run so far, scaled by N, x 1.5)
# exceeds 80% of MemAvailable is skipped and the estimate printed. Replicas share their owner
# table and peer set (persistent trees), so memory grows with N log N: 432 MiB at 10,000.
#
# Environment: SIM_N (default 100,1000,10000,100000), SIM_TRIALS (1; the published 100-10,000
# rows used 2), SIM_SEED (1),
# SIM_TIMEOUT in seconds for the whole measurement (3600: N = 100,000 alone takes about 30
# minutes and 6 GiB on 2 cores; 100-10,000 about 6 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

N="${SIM_N:-100,1000,10000,100000}"
TRIALS="${SIM_TRIALS:-1}"
SEED="${SIM_SEED:-1}"
mkdir -p docs/sim

cargo build --release -p gossip-sim
timeout "${SIM_TIMEOUT:-3600}" cargo run --release -q -p gossip-sim -- \
    scale --n "$N" --trials "$TRIALS" --seed "$SEED" --idle-rounds 20 --csv docs/sim/scale.csv \
    | tee docs/sim/scale.txt
python3 scripts/sim-plot.py docs/sim/scale.csv docs/sim
