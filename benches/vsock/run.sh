#!/bin/bash
# virtio-vsock round-trip latency and throughput through the test
# unikernel's vsock-echo guest, over mote's hybrid vsock socket.
#
# QEMU is left out: this host's kernel has no vhost-vsock (QEMU's only
# virtio-vsock backend), see shared/ENVIRONMENT.md.
#
# usage: benches/vsock/run.sh [BUILD] [RUNS]
#   RUNS (default 3) whole runs, each a fresh VM; the table gives medians.
#   Knobs: ROUNDS (ping-pongs per size, default 2000), MIB (per stream,
#   default 32), STREAMS (concurrent streams of the second throughput row,
#   default 8).
set -euo pipefail
BUILD=${1:-build}
RUNS=${2:-3}
ROUNDS=${ROUNDS:-2000}
MIB=${MIB:-32}
STREAMS=${STREAMS:-8}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
MOTE=$BUILD/mote
GUEST=$BUILD/guest/test-guest.elf
BENCH=$BUILD/benches/vsockbench
OUT=benches/results/vsock.md
RAW=$(mktemp /tmp/mote-vsockbench-XXXXXX.tsv)
UDS=/tmp/mote-vsockbench-$$.sock

[ -x "$MOTE" ] && [ -f "$GUEST" ] || { echo "vsock bench: build mote and the guest first (make)" >&2; exit 1; }
mkdir -p "$BUILD/benches"
cc -O2 -Wall -Wextra -Werror -o "$BENCH" benches/vsock/vsockbench.c

load_start=$(cat /proc/loadavg)
for run in $(seq 1 "$RUNS"); do
    rm -f "$UDS"
    log=$BUILD/benches/vsock-run$run.out
    "$MOTE" --kernel "$GUEST" --mem-mib 128 --vsock "cid=3,uds=$UDS" \
        --cmdline "test=vsock-echo vconns=$((3 + STREAMS))" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do grep -q "listening on port" "$log" && break; sleep 0.05; done
    echo "vsock bench: run $run/$RUNS" >&2
    "$BENCH" "$UDS" "$pid" "$ROUNDS" "$MIB" "$STREAMS" | sed "s/^/$run\t/" | tee -a "$RAW" >&2
    wait "$pid" || { echo "vsock bench: mote exited with $? (see $log)" >&2; exit 1; }
    grep -q "TEST PASS vsock-echo" "$log"
done
load_end=$(cat /proc/loadavg)

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
col() { awk -F'\t' -v k="$1" -v s="$2" -v c="$3" '$2==k && $3==s {print $c}' "$RAW" | median; }

{
cat <<MD
# virtio-vsock: round trips and throughput through the echo guest

> Guest-side times were taken under nested *software* virtualization (guest CPL0 code is
> emulated, ~260 ns an instruction; see shared/ENVIRONMENT.md), so the absolute numbers are
> dominated by the guest's per-packet work, not by the monitor. The "VMM thread CPU" column
> is the monitor's own cost (its event-loop thread, which moves every byte between the
> unix sockets and guest memory), a real measurement here.
>
> **No QEMU row**: QEMU's virtio-vsock is \`vhost-vsock-device\`, which needs the host
> kernel's vhost-vsock module; this host has none. On a host that has it, compare with
> \`qemu-system-x86_64 -M microvm -device vhost-vsock-device,guest-cid=3\` and a Linux
> guest (e.g. \`guest/linux\`'s vsock-echo tool) against the same guest on mote.

- date: $(date -u '+%Y-%m-%d %H:%M UTC'); $RUNS runs (a fresh VM each), medians shown
- load average at start \`$load_start\`, at end \`$load_end\` ($(nproc) cores)
- guest: \`$GUEST\` \`test=vsock-echo\` (re-posts each received buffer as the echo, 128 RX
  buffers of 16 KiB, 64 KiB credit per stream), 128 MiB, 1 vCPU
- client: \`benches/vsock/vsockbench.c\` over \`--vsock cid=3,uds=...\` with \`CONNECT 5000\`;
  round trips: $ROUNDS per size, one stream, write then read the echo; throughput: $MIB MiB
  each way per stream, written and read back concurrently (MB/s counts one direction)
- command: \`benches/vsock/run.sh $BUILD $RUNS\` (ROUNDS=$ROUNDS MIB=$MIB STREAMS=$STREAMS)

| measurement | mote |
|---|---|
| round trip, 1 byte: median / p99 (us) | $(col rtt 1 4) / $(col rtt 1 5) |
| round trip, 4 KiB: median / p99 (us) | $(col rtt 4096 4) / $(col rtt 4096 5) |
| echo throughput, 1 stream (MB/s) | $(col tput 1 4) |
| echo throughput, $STREAMS streams (MB/s, total) | $(col tput "$STREAMS" 4) |
| VMM thread CPU per MiB echoed, 1 stream (ms) | $(col tput 1 5) |
| VMM thread CPU per MiB echoed, $STREAMS streams (ms) | $(col tput "$STREAMS" 5) |
| QEMU \`vhost-vsock-device\` | not measured: no vhost-vsock on this host |

Raw rows (run, kind, size or streams, value, value):

\`\`\`
$(cat "$RAW")
\`\`\`
MD
} >"$OUT"
rm -f "$RAW" "$UDS"
echo "vsock bench: wrote $OUT" >&2
