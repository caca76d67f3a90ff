#!/bin/bash
# The density and start-rate bench (issue 10). Heavy: thousands of VMs.
#   benches/density/run.sh [BUILD] [density options]
# e.g. benches/density/run.sh build --target 500 --rate-n 200
#      benches/density/run.sh build --rate-only --rate-n 300 --parallel 16
#      (the start rate alone, ~30 s; the report keeps the last full run's
#      boot and density parts, and the raw TSV is left as it was)
# Writes benches/results/density.md (and density-raw.tsv). Ctrl-C stops it
# and everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
shift || true
make --no-print-directory BUILD="$BUILD" all "$BUILD/benches/density" >/dev/null
B=$(cd "$BUILD" && pwd)
exec "$B/benches/density" --fnd "$B/mote-fnd" --mote "$B/mote" --image "$B/fn/echo.elf" \
	--out benches/results/density.md --tsv benches/results/density-raw.tsv \
	--state /tmp/mote-density "$@"
