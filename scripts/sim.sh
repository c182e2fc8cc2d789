#!/usr/bin/env bash
# The deterministic simulator (sim/): many seeded fault schedules against real core
# Nodes, or one schedule replayed with a readable trace.
#   scripts/sim.sh --seeds N [--from S] [--threads T] [--strict]   long runs
#   scripts/sim.sh --seed S [--trace [--shrink]]                    one schedule
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p torronto-sim
exec target/release/torronto-sim "$@"
