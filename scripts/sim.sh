#!/usr/bin/env bash
# The deterministic simulator (sim/): many seeded fault schedules against real core
# Nodes, or one schedule replayed with a readable trace.
#   scripts/sim.sh --seeds N [--from S] [--threads T] [--strict]   long runs
#   scripts/sim.sh --seed S [--trace [--shrink]]                    one schedule
#   scripts/sim.sh --scale N [--seed S]                             N nodes, no faults, every status exact
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p torronto-sim
exec target/release/torronto-sim "$@"
