#!/bin/bash
# Snapshot benchmark: restore latency (mote vs QEMU microvm -incoming), create
# time and file sizes, clones started per second and private memory per clone.
#
# usage: benches/snapshot/run.sh [BUILD]        (default BUILD=build)
#
# Writes benches/results/snapshot.md and benches/results/snapshot-raw.tsv.
# Knobs: RUNS (restores per point, 30), SIZES (MiB, "128 1024 4096"),
# QEMU_SIZES (MiB, "128 1024"), CLONES (per round, 100), CLONE_ROUNDS (3),
# RATE_N (clones per start-rate run, 500), RATE_PAR ("1 2 4 8 16"),
# NO_BUILD=1, SKIP_QEMU=1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${1:-build}
BUILD_ABS=$(mkdir -p "$BUILD" && cd "$BUILD" && pwd)
RUNS=${RUNS:-30}
SIZES=${SIZES:-"128 1024 4096"}
QEMU_SIZES=${QEMU_SIZES:-"128 1024"}
CLONES=${CLONES:-100}
CLONE_ROUNDS=${CLONE_ROUNDS:-3}
RATE_N=${RATE_N:-500}
RATE_PAR=${RATE_PAR:-"1 2 4 8 16"}
RESULTS=benches/results
MD=$RESULTS/snapshot.md
RAW=$RESULTS/snapshot-raw.tsv
WORK=$(mktemp -d /tmp/mote-snapbench-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
log() { printf 'snapbench: %s\n' "$*" >&2; }

./scripts/check-kvm.sh
if [ "${NO_BUILD:-0}" != 1 ]; then
	make --no-print-directory BUILD="$BUILD" mote guest >&2
fi
make --no-print-directory -C benches/boot BUILD="$BUILD_ABS" >&2
make --no-print-directory -C benches/snapshot BUILD="$BUILD_ABS" >&2
BB=$BUILD_ABS/benches/bootbench
CB=$BUILD_ABS/benches/clonebench
MOTE=$BUILD_ABS/mote
ELF=$BUILD_ABS/guest/test-guest.elf
# The guest prints a line per step as fast as it can (no timer waits, no
# disk), so the first serial byte after a restore comes right after resume.
CMDLINE="test=snap-compute snapsteps=100000000 snapticks=0 snapnodisk=1"
MARKER="snap: step"
SNAP_AT=20

rm -f "$RAW"
LOAD_START=$(cat /proc/loadavg)
# snapshot_booted NAME MARKER MOTE_ARG...: boots mote with an API socket and
# the given arguments (stdout/stderr in $WORK/NAME.out/.err), waits (up to
# 60 s) for MARKER on the guest's console, pauses the VM, snapshots it to
# $WORK/NAME.state and $WORK/NAME.mem and kills that monitor.
snapshot_booted() {
	local name=$1 marker=$2 sock=$WORK/api.sock pid
	shift 2
	rm -f "$sock"
	"$MOTE" --api-sock "$sock" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
	pid=$!
	for _ in $(seq 3000); do grep -q "$marker" "$WORK/$name.out" && break; sleep 0.02; done
	curl -sf --unix-socket "$sock" -X PATCH http://localhost/vm -d '{"state":"Paused"}'
	curl -sf --unix-socket "$sock" -X PUT http://localhost/snapshot/create \
		-d "{\"snapshot_path\":\"$WORK/$name.state\",\"mem_file_path\":\"$WORK/$name.mem\"}"
	kill -9 "$pid"; wait "$pid" 2>/dev/null || true
}

# ---- mote: snapshot at step SNAP_AT, for every size ------------------------
declare -A CREATE_US STATE_B MEM_B MEM_DISK
for mib in $SIZES; do
	snapshot_booted "$mib" "snap: step $SNAP_AT " --kernel "$ELF" --cmdline "$CMDLINE" \
		--mem-mib "$mib" --boot-timer
	CREATE_US[$mib]=$(sed -n 's/.*snapshot: full .* in \([0-9]*\) us$/\1/p' "$WORK/$mib.err")
	STATE_B[$mib]=$(stat -c %s "$WORK/$mib.state")
	MEM_B[$mib]=$(stat -c %s "$WORK/$mib.mem")
	MEM_DISK[$mib]=$(( $(stat -c %b "$WORK/$mib.mem") * $(stat -c %B "$WORK/$mib.mem") ))
	log "$mib MiB: created in ${CREATE_US[$mib]} us, state ${STATE_B[$mib]} B, memory ${MEM_DISK[$mib]} B on disk"
done

# QEMU's human monitor on a unix socket: send one command, print the answer.
qmon() { # qmon SOCKET COMMAND
	python3 - "$1" "$2" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(0.3)
def drain():
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except socket.timeout:
        pass
    return out
drain()
s.sendall(sys.argv[2].encode() + b"\n")
sys.stdout.write(drain().decode(errors="replace"))
PY
}

# ---- QEMU microvm: the same guest saved with migrate, loaded with -incoming --
QEMU=(qemu-system-x86_64 -M microvm -accel kvm -cpu host,-arch-capabilities -nodefaults
	-no-user-config -nographic -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04
	-smp 1 -kernel "$ELF" -append "$CMDLINE")
QEMU_OK=0
if [ "${SKIP_QEMU:-0}" != 1 ] && command -v qemu-system-x86_64 >/dev/null; then
	QEMU_OK=1
	for mib in $QEMU_SIZES; do
		mon=$WORK/qmp-$mib.sock
		"${QEMU[@]}" -m "$mib" -monitor "unix:$mon,server,nowait" >"$WORK/q-$mib.out" 2>&1 &
		pid=$!
		for _ in $(seq 600); do grep -q "snap: step $SNAP_AT " "$WORK/q-$mib.out" && break; sleep 0.05; done
		t0=$(date +%s%N)
		# No "stop" first: the stream then records a running VM and the
		# destination resumes it by itself, as mote --resume does.
		qmon "$mon" "migrate \"exec:cat > $WORK/q-$mib.mig\"" >/dev/null
		for _ in $(seq 600); do
			qmon "$mon" "info migrate" | grep -q "Migration status: completed" && break
			sleep 0.05
		done
		CREATE_US[q$mib]=$(( ($(date +%s%N) - t0) / 1000 ))
		qmon "$mon" quit >/dev/null || true
		wait "$pid" 2>/dev/null || true
		MEM_B[q$mib]=$(stat -c %s "$WORK/q-$mib.mig")
		MEM_DISK[q$mib]=$(( $(stat -c %b "$WORK/q-$mib.mig") * $(stat -c %B "$WORK/q-$mib.mig") ))
		log "QEMU $mib MiB: saved in ${CREATE_US[q$mib]} us (incl. monitor round trips), ${MEM_B[q$mib]} B"
	done
fi

# ---- restore latency, interleaved ------------------------------------------
for run in $(seq "$RUNS"); do
	for mib in $SIZES; do
		"$BB" -q -n 1 -i "$run" -l "mote-$mib" -m "$MARKER" -k -t 30 -o "$RAW" -- \
			"$MOTE" --restore "$WORK/$mib.state" --mem "$WORK/$mib.mem" --resume --no-api ||
			log "mote-$mib run $run: not ok"
	done
	if [ "$QEMU_OK" = 1 ]; then
		for mib in $QEMU_SIZES; do
			"$BB" -q -n 1 -i "$run" -l "qemu-$mib" -m "$MARKER" -k -t 60 -o "$RAW" -- \
				"${QEMU[@]}" -m "$mib" -incoming "exec:cat $WORK/q-$mib.mig" ||
				log "qemu-$mib run $run: not ok"
		done
	fi
done

# ---- mote's own restore path: one debug run per size --------------------------
declare -A OWN
for mib in $SIZES; do
	timeout -s TERM 1 "$MOTE" --restore "$WORK/$mib.state" --mem "$WORK/$mib.mem" --resume \
		--no-api --log-level debug >/dev/null 2>"$WORK/dbg-$mib.err" || true
	OWN[$mib]=$(grep -E "checked in|state set in|restored from|first KVM_RUN" "$WORK/dbg-$mib.err" |
		sed 's/^/    /')
done

# ---- clones ----------------------------------------------------------------------
# CLONES restores of one snapshot started at once. The guest is idle (in
# hlt between timer ticks, a step a second), as a warm function instance
# waiting for work: clones/s = CLONES / (time until every monitor logged
# "restored from", i.e. its vCPUs run). Then each clone's smaps_rollup:
# private (clean+dirty), PSS, RSS.
CLONE_MIB=$(echo "$SIZES" | awk '{print $1}')
snapshot_booted idle "snap: step 1 " --kernel "$ELF" --mem-mib "$CLONE_MIB" \
	--cmdline "test=snap-compute snapsteps=100000 snapticks=100 snapnodisk=1"
CLONE_ROWS=""
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for round in $(seq "$CLONE_ROUNDS"); do
	rm -rf "$WORK/clones"; mkdir -p "$WORK/clones"
	t0=$(date +%s%N)
	pids=()
	for i in $(seq "$CLONES"); do
		"$MOTE" --restore "$WORK/idle.state" --mem "$WORK/idle.mem" --resume --no-api \
			>/dev/null 2>"$WORK/clones/$i.err" &
		pids+=($!)
	done
	left=$CLONES
	while [ "$left" -gt 0 ]; do
		left=0
		for i in $(seq "$CLONES"); do
			grep -q "restored from" "$WORK/clones/$i.err" 2>/dev/null || left=$((left + 1))
		done
		[ $(( ($(date +%s%N) - t0) / 1000000000 )) -lt 120 ] || break
	done
	t1=$(date +%s%N)
	sleep 1 # let them settle into their idle loop
	priv=(); pss=(); rss=()
	for p in "${pids[@]}"; do
		r=/proc/$p/smaps_rollup
		[ -r "$r" ] || continue
		priv+=($(awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s}' "$r"))
		pss+=($(awk '/^Pss:/ {print $2}' "$r"))
		rss+=($(awk '/^Rss:/ {print $2}' "$r"))
	done
	kill -9 "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	ms=$(( (t1 - t0) / 1000000 ))
	CLONE_ROWS+="| $round | $CLONES | $left | $ms | $(awk -v n="$CLONES" -v l="$left" -v ms="$ms" 'BEGIN {printf "%.0f", (n-l)*1000/ms}') | $(med "${priv[@]}") | $(med "${pss[@]}") | $(med "${rss[@]}") |"$'\n'
	log "clones round $round: $CLONES restored in $ms ms ($left not done)"
	sleep 5 # the next round starts on a calmer machine
done

# ---- start rate: clonebench ------------------------------------------------------
# RATE_N clones, at most P restoring at once, from one epoll loop
# (posix_spawn, a stderr pipe each). Churn: clones of the idle snapshot
# above, each killed as soon as it counted and reaped in the loop, as a
# launcher retiring instances would. Live: every clone stays up until all
# RATE_N started; once of the idle snapshot above (its guest ticks at
# 100 Hz, which under emulation is real CPU per live clone) and once of a
# guest halted for good (test=idle: no timer, no exits), which shows what
# the monitors themselves cost as they accumulate.
snapshot_booted halt "guest: idle" --kernel "$ELF" --mem-mib "$CLONE_MIB" --cmdline test=idle
RATE_ROWS=""
rate_run() { # rate_run MODE GUEST SNAPSHOT P KEEP
	local line
	line=$("$CB" "$MOTE" "$WORK/$3.state" "$WORK/$3.mem" "$RATE_N" "$4" "$5" || true)
	log "start rate $1 ($2) P=$4: $line"
	get() { printf '%s\n' "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
	RATE_ROWS+="| $1 | $2 | $4 | $(get clones) | $(get failed) | $(get seconds) | **$(get clones_per_s)** | $(get p50_ms) | $(get p90_ms) | $(get p99_ms) |"$'\n'
	sleep 2
}
for par in $RATE_PAR; do
	rate_run churn "100 Hz tick" idle "$par" 0
done
rate_run live "halted" halt 16 1
rate_run live "100 Hz tick" idle 16 1

# ---- working-set prefetch, cold page cache -------------------------------------------
# A guest that filled 2 MiB before the snapshot and reads it all back after
# the restore; the memory file is evicted from the page cache before each
# run (POSIX_FADV_DONTNEED on that file only), so every page it touches
# comes from the disk: one batch with --prefetch, one fault at a time
# without.
PF_RUNS=${PF_RUNS:-10}
evict() { python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$1"; }
snapshot_booted pf "snap: start" --kernel "$ELF" --mem-mib 128 \
	--cmdline "test=snap-compute snapsteps=1 snapticks=100 snapnodisk=1 snaptouch=2048"
"$MOTE" --restore "$WORK/pf.state" --mem "$WORK/pf.mem" --resume --no-api \
	--record-working-set "$WORK/pf.ws" >/dev/null 2>"$WORK/pf-rec.err" || true
PF_PAGES=$(sed -n 's/.*working set of \([0-9]*\) pages.*/\1/p' "$WORK/pf-rec.err")
for run in $(seq "$PF_RUNS"); do
	evict "$WORK/pf.mem"
	"$BB" -q -n 1 -i "$run" -l pf-off -x 0 -t 60 -o "$RAW" -- \
		"$MOTE" --restore "$WORK/pf.state" --mem "$WORK/pf.mem" --resume --no-api || true
	evict "$WORK/pf.mem"
	"$BB" -q -n 1 -i "$run" -l pf-on -x 0 -t 60 -o "$RAW" -- \
		"$MOTE" --restore "$WORK/pf.state" --mem "$WORK/pf.mem" --resume --no-api \
		--prefetch "$WORK/pf.ws" || true
done

# ---- report ------------------------------------------------------------------------
stats() { # stats LABEL COLUMN -> "n min median p90"
	awk -F'\t' -v l="$1" -v c="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) col = i; next }
		$1 == l && $col != "NA" { print $col }' "$RAW" | sort -g |
		awk '{ v[++n] = $1 } END { if (!n) { print "0 - - -"; exit }
		      m = (n % 2) ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2; r = int(0.9 * n); if (r < 0.9 * n) r++;
		      printf "%d %.2f %.2f %.2f\n", n, v[1], m, v[r] }'
}
{
	echo "# Snapshot benchmark: restore, create, clones"
	echo
	echo "> **Guest-side absolute times were taken under nested *software* virtualization** (KVM from"
	echo "> the \`kvm_pvm\` nested hypervisor: guest CPL0 code is emulated, and creating a VM and its"
	echo "> memory slot costs ~1 ms in the host kernel; see \`/work/shared/ENVIRONMENT.md\`)."
	echo "> Both monitors restore the same guest on the same KVM, so the comparison is fair; on a VT-x/AMD-V"
	echo "> host both would be faster."
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel \`$(uname -r)\`"
	echo "- mote: git $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (+ uncommitted changes)'); QEMU: $(qemu-system-x86_64 --version 2>/dev/null | head -1 || echo none)"
	echo "- load average at the start: \`$LOAD_START\`; at the end: \`$(cat /proc/loadavg)\` (other sessions share the 2 CPUs)"
	echo "- command: \`benches/snapshot/run.sh $BUILD\` (RUNS=$RUNS, SIZES=\"$SIZES\", QEMU_SIZES=\"$QEMU_SIZES\", CLONES=$CLONES)"
	echo "- guest: \`$CMDLINE\`, 1 vCPU, snapshotted at step $SNAP_AT; after a restore it prints the next step at once"
	echo "- Firecracker (published): 29–34 ms to restore 1 vCPU / 128 MiB on x86, target < 5 ms"
	echo
	echo "## Restore latency (exec → first serial byte after resume), $RUNS runs each, interleaved"
	echo
	echo "mote: \`mote --restore S --mem M --resume --no-api\` (memory file mapped MAP_PRIVATE, nothing read up front)."
	echo "QEMU: \`qemu-system-x86_64 -M microvm ... -m SIZE -incoming \"exec:cat FILE\"\` of a \`migrate\` of the same guest at the same point."
	echo
	echo "| side | memory | n | min (ms) | median (ms) | p90 (ms) | exec → first KVM_RUN median (ms) |"
	echo "|---|---|---|---|---|---|---|"
	for mib in $SIZES; do
		read -r n mn md p9 < <(stats "mote-$mib" first_out_ms)
		read -r _ _ kr _ < <(stats "mote-$mib" first_kvm_run_ms)
		echo "| mote | $mib MiB | $n | $mn | $md | $p9 | $kr |"
	done
	if [ "$QEMU_OK" = 1 ]; then
		for mib in $QEMU_SIZES; do
			read -r n mn md p9 < <(stats "qemu-$mib" first_out_ms)
			echo "| QEMU microvm -incoming | $mib MiB | $n | $mn | $md | $p9 | – |"
		done
	fi
	echo
	echo "### mote's own restore path (one \`--log-level debug\` run per size)"
	echo
	echo "Reading and checking both files and setting every vCPU, the IOAPIC (split irqchip, the default),"
	echo "clock and device state is mote's work; between them the host kernel creates the VM and its"
	echo "memory slot (the same cost as a boot, see boot.md). Registering the slot grows with its size"
	echo "on this host (KVM allocates per-page reverse maps for its shadow paging here: a boot measured"
	echo "0.28 / 0.87 / 3.5 ms for 128 MiB / 1 GiB / 4 GiB); any monitor pays it, and with the TDP MMU"
	echo "of a VT-x/AMD-V host those maps are not allocated up front."
	echo
	for mib in $SIZES; do
		echo "$mib MiB:"
		echo
		echo '```'
		echo "${OWN[$mib]}"
		echo '```'
		echo
	done
	echo "## Create time and file sizes"
	echo
	echo "| side | memory | create (ms) | state file (bytes) | memory file (apparent) | memory file (on disk) |"
	echo "|---|---|---|---|---|---|"
	for mib in $SIZES; do
		echo "| mote | $mib MiB | $(awk -v u="${CREATE_US[$mib]}" 'BEGIN {printf "%.1f", u/1000}') | ${STATE_B[$mib]} | ${MEM_B[$mib]} | ${MEM_DISK[$mib]} |"
	done
	if [ "$QEMU_OK" = 1 ]; then
		for mib in $QEMU_SIZES; do
			echo "| QEMU migrate to file | $mib MiB | $(awk -v u="${CREATE_US[q$mib]}" 'BEGIN {printf "%.1f", u/1000}') (incl. monitor polling) | – | ${MEM_B[q$mib]} (one stream) | ${MEM_DISK[q$mib]} |"
		done
	fi
	echo
	echo "mote's create time is its own log line (pause excluded; both files written, fsynced and renamed)."
	echo "Diff snapshots (\`snapshot_type: Diff\`, \`track_dirty_pages\`) write only the pages written since"
	echo "the last snapshot: in \`test_snapshot\` a diff after the guest wrote 21 pages held 23 pages."
	echo
	echo "## Clones of one snapshot ($CLONE_MIB MiB), $CLONES started at once"
	echo
	echo "Started from a bash loop (a fork+exec of bash per clone and log files polled with grep: a floor,"
	echo "not mote's rate; see the start-rate table above for that)."
	echo
	echo "| round | clones | not restored after 120 s | all restored after (ms) | clones/s | private KiB per clone (median) | PSS KiB (median) | RSS KiB (median) |"
	echo "|---|---|---|---|---|---|---|---|"
	printf '%s' "$CLONE_ROWS"
	echo
	echo "The guest: \`test=snap-compute snapsteps=100000 snapticks=100 snapnodisk=1\` (idle in hlt, one"
	echo "step a second), snapshotted at step 1. \"Restored\" = the monitor logged \`snapshot: restored from\`"
	echo "(VM, devices and vCPUs set up, vCPU threads started)."
	echo
	echo "Private = Private_Clean + Private_Dirty of /proc/PID/smaps_rollup a second after: the monitor's"
	echo "heap and stacks plus the guest pages that clone wrote (copy-on-write); everything the guest"
	echo "only reads, and the static mote binary, is page cache shared by all clones."
	echo
	echo "## Start rate ($RATE_N clones per run, \`benches/snapshot/clonebench\`)"
	echo
	echo "One epoll loop spawns \`mote --restore idle.state --mem idle.mem --resume --no-api\` (posix_spawn,"
	echo "stderr on a pipe) keeping at most P restoring at once; a clone has started when its monitor logs"
	echo "\`snapshot: restored from\` (vCPU threads running the restored guest). Latency = spawn → that line."
	echo "churn: each clone is killed when it counted and reaped inside the loop (its VM teardown is in the"
	echo "measured time); live: all $RATE_N stay up until the last started. Guest \"100 Hz tick\": the idle"
	echo "snapshot of the clone table above (LAPIC timer at 100 Hz: under this host's emulation each"
	echo "live clone's ticks are real CPU, so the rate falls as they pile up); \"halted\": \`test=idle\`"
	echo "(\`cli; hlt\`: no timer, no exits), what the monitors themselves cost as they accumulate."
	echo
	echo "| mode | guest | P | started | failed | seconds | clones/s | p50 (ms) | p90 (ms) | p99 (ms) |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	printf '%s' "$RATE_ROWS"
	echo
	echo "## Working-set prefetch, cold page cache ($PF_RUNS runs each, interleaved)"
	echo
	echo "Guest: \`test=snap-compute snapsteps=1 snapticks=100 snapnodisk=1 snaptouch=2048\`, 128 MiB:"
	echo "it fills 2 MiB, prints \`snap: start\` and waits up to 1 s of timer ticks; snapshotted in that"
	echo "wait. After a restore it waits out the rest (the same for every run: the LAPIC timer is"
	echo "restored), then reads back the 2 MiB it filled and exits."
	echo "The working set recorded by one restore (\`--record-working-set\`): ${PF_PAGES:-?} pages."
	echo "Before every run the memory file is dropped from the page cache (POSIX_FADV_DONTNEED)."
	echo
	echo "| prefetch | n | exec → exit min (ms) | median (ms) | p90 (ms) |"
	echo "|---|---|---|---|---|"
	read -r n mn md p9 < <(stats pf-off exit_ms)
	echo "| off | $n | $mn | $md | $p9 |"
	read -r n mn md p9 < <(stats pf-on exit_ms)
	echo "| on (\`--prefetch\`) | $n | $mn | $md | $p9 |"
	echo
	echo "Under this nested hypervisor most of a guest page fault's cost is the emulated guest MMU,"
	echo "which prefetching the host pages does not remove; the difference is the disk reads and host"
	echo "page faults only."
} >"$MD"
cat "$MD"
