#!/bin/sh
# The paper's table on mote VMs: 10 VMs x 1 vCPU on CPUs 0,1, 4 ms work +
# 1 ms sleep each. usage: benches/demand/run.sh [BUILD] [N] [CPUS] [SECONDS]
# Writes benches/results/demand.md, demand-raw.tsv, demand.svg.
set -eu
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
[ -n "${NO_BUILD:-}" ] || make --no-print-directory BUILD="$BUILD" mote guest >/dev/null
exec python3 benches/demand/table.py "$BUILD" "${2:-10}" "${3:-0,1}" "${4:-20}"
