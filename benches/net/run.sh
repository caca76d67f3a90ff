#!/bin/bash
# virtio-net throughput: mote vs QEMU microvm (userspace virtio-net, vhost
# off), the same reflector guest ELF (test=net-reflect), the same TAP in a
# private network namespace, the same host-side frames (netbench.c). Each
# point is the median of RUNS runs; the clock covers only the frames, not
# boot or exit. Results: benches/results/net.md.
#
# usage: benches/net/run.sh [BUILD] [RUNS]
set -euo pipefail
BUILD=${1:-build}
RUNS=${2:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=$(cd "$BUILD" && pwd)
MOTE=$BUILD/mote
GUEST=$BUILD/guest/test-guest.elf
BENCH=$BUILD/benches/netbench
OUT=benches/results/net.md
TSV=$(mktemp /tmp/mote-netbench-XXXXXX.tsv)
NS=mote-netbench-$$
TAP=mbtap0

[ -x "$MOTE" ] && [ -f "$GUEST" ] || { echo "net bench: build mote and the guest first (make)" >&2; exit 1; }
mkdir -p "$(dirname "$BENCH")"
cc -O2 -Wall -Wextra -Werror -o "$BENCH" benches/net/netbench.c

cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -f "$TSV"; }
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" tuntap add dev "$TAP" mode tap
ip netns exec "$NS" sysctl -qw "net.ipv6.conf.$TAP.disable_ipv6=1"
ip -n "$NS" link set "$TAP" mtu 9216 up

load_start=$(cat /proc/loadavg)
# size frames window netbench-flags guest-tokens
# The last row: 64000-byte IPv4/TCP frames sent as TSO (PACKET_VNET_HDR),
# with the guest taking checksum and TSO offloads both ways, so each one
# crosses both monitors whole (16 KiB guest buffers, MRG_RXBUF).
WORKLOADS=(
  "64    4000 64 -  netbuf=2048,netbufs=128"
  "1514  3000 64 -  netbuf=2048,netbufs=128"
  "9014  1500 32 -  netbuf=2048,netbufs=128"
  "64000 600  16 -g netbuf=16384,netbufs=64,netoff=1"
)
for w in "${WORKLOADS[@]}"; do
    read -r size frames window flags tokens <<<"$w"
    [ "$flags" = - ] && flags=
    cmd="test=net-reflect frames=$frames netmrg=1 ${tokens//,/ }"
    for run in $(seq "$RUNS"); do
        echo "net bench: $size B, run $run/$RUNS" >&2
        ip netns exec "$NS" "$BENCH" $flags -i "$TAP" -l "mote" -s "$size" -n "$frames" -w "$window" -- \
            "$MOTE" --kernel "$GUEST" --mem-mib 128 --net "tap=$TAP" --cmdline "$cmd" \
            >>"$TSV" || true
        # The demand metrics' working-set sampler (on by default) zaps guest
        # pages every second from the VMM thread: measured apart.
        ip netns exec "$NS" "$BENCH" $flags -i "$TAP" -l "mote-nowss" -s "$size" -n "$frames" -w "$window" -- \
            "$MOTE" --kernel "$GUEST" --mem-mib 128 --net "tap=$TAP" --demand wss=off --cmdline "$cmd" \
            >>"$TSV" || true
        ip netns exec "$NS" "$BENCH" $flags -i "$TAP" -l "qemu" -s "$size" -n "$frames" -w "$window" -- \
            qemu-system-x86_64 -M microvm,acpi=off -accel kvm -nodefaults -no-user-config \
            -nographic -serial stdio -m 128 -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
            -global virtio-mmio.force-legacy=false \
            -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no,vhost=off" \
            -device virtio-net-device,netdev=n0 -kernel "$GUEST" -append "$cmd" \
            >>"$TSV" || true
    done
done
load_end=$(cat /proc/loadavg)

python3 - "$TSV" "$OUT" "$load_start" "$load_end" "$RUNS" <<'PY'
import sys, statistics, subprocess, datetime
tsv, out, l0, l1, runs = sys.argv[1:]
rows = {}
for line in open(tsv):
    f = line.split("\t")
    if len(f) < 8 or f[4] == "nan":
        continue
    rows.setdefault((f[0], int(f[1])), []).append((float(f[4]), float(f[5]), float(f[7])))
def med(side, size, i):
    l = [r[i] for r in rows.get((side, size), [])]
    return (statistics.median(l), len(l)) if l else (float("nan"), 0)
qv = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
with open(out, "w") as f:
    f.write("# virtio-net throughput: mote vs QEMU microvm\n\n")
    f.write("> Taken under nested *software* virtualization: guest CPL0 code is emulated here (~260 ns an\n"
            "> instruction, see shared/ENVIRONMENT.md), so the absolute rates are far below a real host's.\n"
            "> Both monitors run the same test unikernel (`net-reflect`: every frame goes back out of the\n"
            "> same buffers with its MAC addresses swapped, a few dozen guest instructions a frame) on the\n"
            "> same kind of TAP, so the guest's cost is the same on both sides and the ratio compares the\n"
            "> monitors' network paths. QEMU uses its userspace virtio-net (`vhost=off`: this host has no\n"
            "> vhost-net). On a VT-x/AMD-V host use `benches/net/iperf3-linux.sh` with a Linux guest.\n\n")
    f.write(f"- date: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; median of {runs} runs per point; {qv}\n")
    f.write(f"- load average at start `{l0}`, at end `{l1}` (2 cores shared with other work)\n")
    f.write("- host side: AF_PACKET on the TAP in a private netns, at most 64 (9014 B: 32; TSO: 16) frames\n"
            "  unanswered; the clock runs from the first frame sent to the last reflection received\n")
    f.write("- guest: MRG_RXBUF, EVENT_IDX, 128 RX buffers of 2 KiB, interrupts (no polling); the 64000 B\n"
            "  row sends IPv4/TCP frames as TSO (MSS 1448) and the guest negotiates CSUM/TSO both ways\n"
            "  (64 buffers of 16 KiB), so every frame crosses the TAP, both monitors and the guest unsegmented\n")
    f.write("- mote: `--net tap=TAP`; QEMU: `-netdev tap,...,vhost=off -device virtio-net-device`\n")
    f.write("- main-thread CPU: schedstat run time of the monitor's main thread per frame (mote's VMM\n"
            "  event loop; QEMU's main loop, where its userspace virtio-net and tap handling run), a\n"
            "  monitor-side cost that does not depend on the emulated guest's speed\n\n")
    f.write("| frame size | mote frames/s | mote, wss=off frames/s | QEMU frames/s | mote MB/s | QEMU MB/s | mote / QEMU | mote main-thread CPU µs/frame | mote wss=off | QEMU main-thread CPU µs/frame | runs (mote, wss=off, QEMU) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    for size in sorted({k[1] for k in rows}):
        mf, mn = med("mote", size, 0); qf, qn = med("qemu", size, 0)
        mm, _ = med("mote", size, 1); qm, _ = med("qemu", size, 1)
        mc, _ = med("mote", size, 2); qc, _ = med("qemu", size, 2)
        nf, nn = med("mote-nowss", size, 0); nc, _ = med("mote-nowss", size, 2)
        ratio = mf / qf if qf == qf and qf else float("nan")
        name = f"{size} B TSO" if size > 9216 else f"{size} B"
        f.write(f"| {name} | {mf:.0f} | {nf:.0f} | {qf:.0f} | {mm:.2f} | {qm:.2f} | {ratio:.2f} | {mc:.1f} | {nc:.1f} | {qc:.1f} | {mn}, {nn}, {qn} |\n")
    f.write("\nmote / QEMU compares mote as it starts by default. `wss=off` is mote with the demand\n"
            "metrics' sampled working-set tracker off (`--demand wss=off`): by default it zaps 4096 guest\n"
            "pages a second from the VMM thread (one madvise each), and the guest faults them back in.\n")
    if float(l0.split()[0]) > 2 or float(l1.split()[0]) > 2:
        f.write("\n**The host was busy** (load average above 2 on 2 cores): the frames/s and MB/s columns\n"
                "then mostly measure how the scheduler shared the cores among the guest, the monitor, the\n"
                "host side and other work, and swing by tens of percent between runs; the main-thread CPU\n"
                "per frame is the steadier comparison of the two monitors.\n")
    f.write("\nGoal: mote >= QEMU's userspace virtio-net (ratio >= 1).\n")
print(open(out).read())
PY
