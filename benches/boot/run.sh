#!/bin/bash
# Boot benchmark: mote against QEMU microvm on the same guest images.
#
# usage: benches/boot/run.sh [BUILD]          (default BUILD=build)
#
# Writes benches/results/boot.md and benches/results/boot-raw.tsv and prints
# the tables. Knobs (environment): BOOT_RUNS (unikernel runs per side, 30),
# RSS_RUNS (5), LINUX_RUNS (3), LINUX_TIMEOUT (s, 420), TCG_TIMEOUT (s, 150),
# SKIP_LINUX=1, SKIP_TCG=1, NO_BUILD=1 (use the binaries already in BUILD),
# WAIT_IDLE=SECONDS and WAIT_LOAD (see wait_idle below).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${1:-build}
BUILD_ABS=$(mkdir -p "$BUILD" && cd "$BUILD" && pwd)
BOOT_RUNS=${BOOT_RUNS:-30}
RSS_RUNS=${RSS_RUNS:-5}
LINUX_RUNS=${LINUX_RUNS:-3}
LINUX_TIMEOUT=${LINUX_TIMEOUT:-420}
TCG_TIMEOUT=${TCG_TIMEOUT:-150}

RESULTS=benches/results
MD=$RESULTS/boot.md
RAW=$RESULTS/boot-raw.tsv
LOGS=$BUILD_ABS/benches/boot-logs
mkdir -p "$RESULTS" "$LOGS"

log() { printf 'bench: %s\n' "$*" >&2; }

# WAIT_IDLE=SECONDS: before each part, wait up to that long for the 1-minute
# load average to drop below WAIT_LOAD (default: half the CPUs). On a shared
# machine this keeps other people's builds and VMs out of the numbers.
WAIT_IDLE=${WAIT_IDLE:-0}
WAIT_LOAD=${WAIT_LOAD:-$(awk -v n="$(nproc)" 'BEGIN { print n / 2 }')}
WAIT_NOTES=""
wait_idle() { # wait_idle PART
	[ "$WAIT_IDLE" -gt 0 ] || return 0
	local start=$SECONDS l
	while :; do
		l=$(cut -d' ' -f1 /proc/loadavg)
		if awk -v l="$l" -v w="$WAIT_LOAD" 'BEGIN { exit !(l < w) }'; then
			WAIT_NOTES+="${WAIT_NOTES:+; }$1: started after $((SECONDS - start)) s at load $l"
			return 0
		fi
		if [ $((SECONDS - start)) -ge "$WAIT_IDLE" ]; then
			WAIT_NOTES+="${WAIT_NOTES:+; }$1: load still $l after $((SECONDS - start)) s, started anyway"
			log "$1: load still $l after $((SECONDS - start)) s; starting anyway"
			return 0
		fi
		log "$1: waiting for load < $WAIT_LOAD (now $l, waited $((SECONDS - start))/$WAIT_IDLE s)"
		sleep 15
	done
}

# ---- build ---------------------------------------------------------------
./scripts/check-kvm.sh
command -v qemu-system-x86_64 >/dev/null || { log "qemu-system-x86_64 not found (make deps)"; exit 1; }
if [ "${NO_BUILD:-0}" = 1 ]; then
	log "NO_BUILD=1: using the mote and guest already in $BUILD"
	[ -x "$BUILD/mote" ] && [ -f "$BUILD/guest/test-guest.elf" ] || { log "missing $BUILD/mote or guest"; exit 1; }
else
	make --no-print-directory BUILD="$BUILD" all >&2
fi
make --no-print-directory -C benches/boot BUILD="$BUILD_ABS" >&2
BB=$BUILD_ABS/benches/bootbench
MOTE=$BUILD/mote
ELF=$BUILD/guest/test-guest.elf
LINUX=$BUILD/linux

# ---- commands ------------------------------------------------------------
# -cpu host: QEMU 7.2 aborts here with "failed to set MSR 0x10a" (the nested
# hypervisor does not take IA32_ARCH_CAPABILITIES), so arch-capabilities is
# turned off; everything else is the host CPU, as with mote's default template.
QEMU_UK=(qemu-system-x86_64 -M microvm -accel kvm -cpu host,-arch-capabilities
	-nodefaults -no-user-config -nographic -serial stdio
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 -m 128 -smp 1
	-kernel "$ELF")
QEMU_UK_MIN=(qemu-system-x86_64 -M microvm,pit=off,pic=off,rtc=off -accel kvm
	-cpu host,-arch-capabilities
	-nodefaults -no-user-config -nographic -serial stdio
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 -m 128 -smp 1
	-kernel "$ELF")
MOTE_UK=("$MOTE" --kernel "$ELF" --mem-mib 128 --vcpus 1 --boot-timer)

# --cpu-template minimal (mote) and the -cpu flags (QEMU) hide what the
# emulator here cannot run, but the nested hypervisor honours only part of
# the CPUID table, so both kernels are also told directly (as in
# tests/integration/test_linux.c). RCU stall reports are noise at emulated speed.
LINUX_NOFEAT='noxsave clearcpuid=popcnt,rdrand,rdseed,smap,fsgsbase,rdpid,invpcid,pcid'
LINUX_CMDLINE="console=ttyS0 reboot=k panic=-1 $LINUX_NOFEAT rcupdate.rcu_cpu_stall_suppress=1"
LINUX_MARKER='Run /init as init process'
# The same features mote's --cpu-template minimal hides.
QEMU_LINUX_CPU=host,-arch-capabilities,-xsave,-avx,-avx2,-popcnt,-cx16,-rdrand,-rdseed,-smap,-fsgsbase,-rdpid,-invpcid,-pcid
MOTE_LINUX=("$MOTE" --kernel "$LINUX/bzImage" --initrd "$LINUX/initramfs.cpio.gz"
	--vcpus 2 --mem-mib 256 --cpu-template minimal --boot-timer
	--cmdline "$LINUX_CMDLINE")
QEMU_LINUX_KVM=(qemu-system-x86_64 -M microvm,acpi=off -accel kvm -cpu "$QEMU_LINUX_CPU"
	-nodefaults -no-user-config -nographic -serial stdio -smp 2 -m 256
	-kernel "$LINUX/bzImage" -initrd "$LINUX/initramfs.cpio.gz"
	-append "$LINUX_CMDLINE")
QEMU_LINUX_TCG=(qemu-system-x86_64 -M microvm,acpi=off -accel tcg
	-nodefaults -no-user-config -nographic -serial stdio -smp 2 -m 256
	-kernel "$LINUX/bzImage" -initrd "$LINUX/initramfs.cpio.gz"
	-append "$LINUX_CMDLINE")

# Print a command so it can be pasted into a shell: quote only what needs it.
showcmd() {
	local a out=""
	for a in "$@"; do
		if [[ $a =~ ^[A-Za-z0-9_./,=:+@%-]+$ ]]; then
			out+="$a "
		else
			out+="'${a//\'/\'\\\'\'}' "
		fi
	done
	printf '%s' "${out% }"
}

# ---- environment -----------------------------------------------------------
DATE=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
LOAD_START=$(cat /proc/loadavg)
TOP_START=$(ps -eo pid,pcpu,etime,comm --sort=-pcpu | head -6)
QEMU_VER=$(qemu-system-x86_64 --version | head -1)
MOTE_VER=$("$MOTE" --version 2>&1 | head -1)
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (+ uncommitted changes)" || true)
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
log "load average at start: $LOAD_START"

RAW_TMP=$RESULTS/boot-raw.tsv.tmp
rm -f "$RAW_TMP"
rm -f "$LOGS"/*.out "$LOGS"/*.err

# bb LABEL INDEX [bootbench options] -- command...
# The 1-minute load average before every run goes to $LOADS (label, run, load).
LOADS=$LOGS/loads.tsv
rm -f "$LOADS"
bb() {
	local label=$1 idx=$2
	shift 2
	printf '%s\t%s\t%s\n' "$label" "$idx" "$(cut -d' ' -f1 /proc/loadavg)" >>"$LOADS"
	"$BB" -q -n 1 -i "$idx" -l "$label" -o "$RAW_TMP" -O "$LOGS" "$@" || true
}

# ---- unikernel: boot to exit, interleaved -----------------------------------
wait_idle unikernel
LOAD_UK=$(cat /proc/loadavg)
UK_ARGS=(-t 20 -x 0)
for ((i = 1; i <= BOOT_RUNS; i++)); do
	# rotate the order so no side always runs first in a round
	for k in 0 1 2; do
		case $(((i + k) % 3)) in
		0)
			log "unikernel: mote run $i/$BOOT_RUNS"
			bb uk-mote "$i" "${UK_ARGS[@]}" -- "${MOTE_UK[@]}" --cmdline test=hello ;;
		1)
			log "unikernel: qemu run $i/$BOOT_RUNS"
			bb uk-qemu "$i" -t 20 -x 1 -- "${QEMU_UK[@]}" -append test=hello ;;
		2)
			log "unikernel: qemu-minimal run $i/$BOOT_RUNS"
			bb uk-qemu-min "$i" -t 20 -x 1 -- "${QEMU_UK_MIN[@]}" -append test=hello ;;
		esac
	done
done

# ---- unikernel: where mote's time goes (one run, debug log) ------------------
log "unikernel: mote timeline run (--log-level debug)"
TL_TSV=$LOGS/timeline.tsv
rm -f "$TL_TSV"
"$BB" -q -n 1 -l timeline-mote -o "$TL_TSV" -O "$LOGS" -t 20 -x 0 \
	-- "${MOTE_UK[@]}" --cmdline test=hello --log-level debug || true

# ---- the host's floor: exec -> first KVM_RUN of a monitor that does nothing else
log "kvmfloor: exec -> first KVM_RUN of a bare static KVM program (30 runs, 2 and 128 MiB)"
FLOOR=$("$BUILD_ABS/benches/kvmfloor" 30 2 || echo "kvmfloor failed")
FLOOR128=$("$BUILD_ABS/benches/kvmfloor" 30 128 || echo "kvmfloor failed")
# The floor for mote's own configuration (128 MiB): its first KVM_RUN.
FLOOR_RUN=$(printf '%s\n' "$FLOOR128" | awk '/first KVM_RUN entered/ { print $NF }')

# ---- unikernel: memory breakdown of a running VM (test=spin) ---------------
SPIN_MARKER='spinning until the host stops the VM'
for ((i = 1; i <= RSS_RUNS; i++)); do
	log "memory: mote / qemu / qemu-minimal run $i/$RSS_RUNS (test=spin)"
	bb rss-mote "$i" -t 20 -m "$SPIN_MARKER" -k -g 128 -- "${MOTE_UK[@]}" --cmdline test=spin
	bb rss-qemu "$i" -t 20 -m "$SPIN_MARKER" -k -g 128 -- "${QEMU_UK[@]}" -append test=spin
	bb rss-qemu-min "$i" -t 20 -m "$SPIN_MARKER" -k -g 128 -- "${QEMU_UK_MIN[@]}" -append test=spin
done

# ---- Linux -----------------------------------------------------------------
HAVE_LINUX=0
if [ "${SKIP_LINUX:-0}" != 1 ] && [ -f "$LINUX/bzImage" ] && [ -f "$LINUX/initramfs.cpio.gz" ]; then
	HAVE_LINUX=1
	wait_idle linux
	LOAD_LINUX=$(cat /proc/loadavg)
	for ((i = 1; i <= LINUX_RUNS; i++)); do
		log "linux: mote run $i/$LINUX_RUNS (minutes here)"
		bb linux-mote "$i" -t "$LINUX_TIMEOUT" -m "$LINUX_MARKER" -k -g 256 \
			-- "${MOTE_LINUX[@]}"
		log "linux: qemu (KVM) run $i/$LINUX_RUNS"
		bb linux-qemu-kvm "$i" -t "$LINUX_TIMEOUT" -m "$LINUX_MARKER" -k -g 256 \
			-f 'KVM internal error' -- "${QEMU_LINUX_KVM[@]}"
		if [ "${SKIP_TCG:-0}" != 1 ]; then
			log "linux: qemu (TCG) run $i/$LINUX_RUNS (up to $TCG_TIMEOUT s)"
			bb linux-qemu-tcg "$i" -t "$TCG_TIMEOUT" -m "$LINUX_MARKER" -k -g 256 \
				-- "${QEMU_LINUX_TCG[@]}"
		fi
	done
else
	log "linux: $LINUX/bzImage or initramfs.cpio.gz missing (or SKIP_LINUX=1): skipped"
fi

LOAD_END=$(cat /proc/loadavg)
log "load average at end: $LOAD_END"
mv "$RAW_TMP" "$RAW"
SUM=$BUILD_ABS/benches/boot-summary.tsv
"$BB" -S "$RAW" >"$SUM"

# ---- report ----------------------------------------------------------------
# st LABEL METRIC FIELD  (FIELD: n min median p90 max runs ok); empty if none
st() {
	awk -F'\t' -v l="$1" -v m="$2" -v f="$3" '
		NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		$1 == l && $2 == m { print $col[f]; exit }' "$SUM"
}
# runs/ok of a label from the raw rows (also when no metric has values)
runs_of() { awk -F'\t' -v l="$1" '$1 == l { n++ } END { print n + 0 }' "$RAW"; }
ok_of() { awk -F'\t' -v l="$1" '$1 == l && $3 == 1 { n++ } END { print n + 0 }' "$RAW"; }
fmt() { # fmt VALUE UNIT -> formatted
	local v=$1 unit=$2
	[ -z "$v" ] && { echo "–"; return; }
	case $unit in
	ms) awk -v v="$v" 'BEGIN { if (v >= 100) printf "%.0f", v; else if (v >= 10) printf "%.1f", v; else printf "%.2f", v }' ;;
	s) awk -v v="$v" 'BEGIN { printf "%.1f s", v / 1000 }' ;;
	mib) awk -v v="$v" 'BEGIN { printf "%.2f", v / 1024 }' ;;
	esac
}
ratio() { # ratio A B -> A/B
	[ -z "$1" ] || [ -z "$2" ] && { echo "–"; return; }
	awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "–"; else printf "%.2f", a / b }'
}
# row TITLE LABEL SIDE METRIC UNIT REF_LABEL
row() {
	local title=$1 label=$2 side=$3 metric=$4 unit=$5 ref=$6
	local n r
	n=$(st "$label" "$metric" n)
	if [ -z "$n" ]; then
		printf '| %s | %s | 0/%s | – | – | – | – | – |\n' "$title" "$side" "$(runs_of "$label")"
		return
	fi
	if [ "$label" = "$ref" ]; then
		r="1 (reference)"
	else
		r=$(ratio "$(st "$ref" "$metric" median)" "$(st "$label" "$metric" median)")
	fi
	printf '| %s | %s | %s/%s | %s | %s | %s | %s | %s |\n' "$title" "$side" "$n" "$(runs_of "$label")" \
		"$(fmt "$(st "$label" "$metric" min)" "$unit")" \
		"$(fmt "$(st "$label" "$metric" median)" "$unit")" \
		"$(fmt "$(st "$label" "$metric" p90)" "$unit")" \
		"$(fmt "$(st "$label" "$metric" max)" "$unit")" "$r"
}
HDR='| metric | side | n/runs | min | median | p90 | max | mote ÷ side (medians) |
|---|---|---|---|---|---|---|---|'

goal_line() { # goal_line TEXT PASS(0/1)
	if [ "$2" = 1 ]; then echo "- **PASS** — $1"; else echo "- **MISS** — $1"; fi
}

M_EXIT=$(st uk-mote exit_ms median)
Q_EXIT=$(st uk-qemu exit_ms median)
M_RUN=$(st uk-mote first_kvm_run_ms median)
G1=0
G1_TEXT="mote exec→exit median ≤ 1/5 of QEMU microvm's: no data"
if [ -n "$M_EXIT" ] && [ -n "$Q_EXIT" ]; then
	G1=$(awk -v m="$M_EXIT" -v q="$Q_EXIT" 'BEGIN { print (m * 5 <= q) ? 1 : 0 }')
	G1_TEXT="mote exec→exit median ≤ 1/5 of QEMU microvm's: mote $(fmt "$M_EXIT" ms) ms vs QEMU $(fmt "$Q_EXIT" ms) ms = $(ratio "$M_EXIT" "$Q_EXIT") (goal ≤ 0.20; QEMU ÷ mote = $(ratio "$Q_EXIT" "$M_EXIT")×)"
fi
G2=0
G2_TEXT="mote exec→first KVM_RUN median < 1 ms: no data"
if [ -n "$M_RUN" ]; then
	G2=$(awk -v m="$M_RUN" 'BEGIN { print (m < 1) ? 1 : 0 }')
	G2_TEXT="mote exec→first KVM_RUN median < 1 ms: $(fmt "$M_RUN" ms) ms"
	[ -n "$FLOOR_RUN" ] && G2_TEXT+=" (this host's floor for 128 MiB, \`kvmfloor\` below: $FLOOR_RUN ms; mote's own part above it $(awk -v m="$M_RUN" -v f="$FLOOR_RUN" 'BEGIN { printf "%.2f", m - f }') ms)"
fi

uk_table() {
	echo "$HDR"
	row "exec → first serial byte (ms)" uk-mote mote first_out_ms ms uk-mote
	row "exec → first serial byte (ms)" uk-qemu "QEMU microvm" first_out_ms ms uk-mote
	row "exec → first serial byte (ms)" uk-qemu-min "QEMU microvm minimal (extra)" first_out_ms ms uk-mote
	row "exec → first KVM_RUN (ms)" uk-mote mote first_kvm_run_ms ms uk-mote
	row "exec → boot timer (ms)" uk-mote mote boot_timer_ms ms uk-mote
	row "exec → exit (ms)" uk-mote mote exit_ms ms uk-mote
	row "exec → exit (ms)" uk-qemu "QEMU microvm" exit_ms ms uk-mote
	row "exec → exit (ms)" uk-qemu-min "QEMU microvm minimal (extra)" exit_ms ms uk-mote
	row "peak RSS, ru_maxrss (MiB)" uk-mote mote maxrss_kib mib uk-mote
	row "peak RSS, ru_maxrss (MiB)" uk-qemu "QEMU microvm" maxrss_kib mib uk-mote
	row "peak RSS, ru_maxrss (MiB)" uk-qemu-min "QEMU microvm minimal (extra)" maxrss_kib mib uk-mote
}
rss_table() {
	echo "$HDR"
	local m
	for m in "VmRSS at marker (MiB):vmrss_kib" "guest RAM resident (MiB):guest_rss_kib" \
		"VmRSS − guest RAM = monitor's own (MiB):monitor_rss_kib" "VmHWM at marker (MiB):vmhwm_kib" \
		"RssAnon (MiB):rss_anon_kib" "RssFile (MiB):rss_file_kib" "RssShmem (MiB):rss_shmem_kib"; do
		row "${m%%:*}" rss-mote mote "${m##*:}" mib rss-mote
		row "${m%%:*}" rss-qemu "QEMU microvm" "${m##*:}" mib rss-mote
		row "${m%%:*}" rss-qemu-min "QEMU microvm minimal (extra)" "${m##*:}" mib rss-mote
	done
}
# what a Linux run that missed the marker did: "how after N s; last line"
linux_outcome() {
	local label=$1
	awk -F'\t' -v l="$label" 'FNR == NR { load[$1 "/" $2] = $3; next }
		$1 == l && $7 != "NA" {
		printf "run %s: %.1f s to the marker (1-min load before the run: %s)\n", $2, $7 / 1000, load[l "/" $2] }
		$1 == l && $7 == "NA" {
		printf "run %s: did not reach the marker: %s after %.1f s (status %s)\n", $2,
			($4 == "fail-kill" ? "KVM internal error" : $4), ($4 == "fail-kill" ? $8 : $10) / 1000, $5 }' "$LOADS" "$RAW"
}
# Where QEMU stopped: RIP from its register dump, and the kernel symbol there.
qemu_stop_rip() {
	local f rip sym
	for f in "$LOGS"/linux-qemu-kvm.*.err; do
		[ -f "$f" ] || continue
		rip=$(grep -o 'RIP=[0-9a-f]*' "$f" | head -n 1 | cut -d= -f2)
		[ -n "$rip" ] && break
	done
	[ -n "${rip:-}" ] || return 0
	if [ -f "$LINUX/vmlinux" ] && command -v nm >/dev/null; then
		# 16-digit hex addresses compare correctly as strings; only the low
		# 8 digits are turned into numbers (awk's doubles lose 64-bit values).
		sym=$(nm "$LINUX/vmlinux" | awk -v r="$(printf '%016s' "$rip" | tr ' A-F' '0a-f')" '
			function hex(h,  i, v) { v = 0
				for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
				return v }
			$2 ~ /^[tTwW]$/ && length($1) == 16 && $1 <= r && $1 > best { best = $1; name = $3 }
			END { if (name != "") printf "%s+0x%x", name, hex(substr(r, 9)) - hex(substr(best, 9)) }')
	fi
	echo "RIP=$rip${sym:+ ($sym in $LINUX/vmlinux)}"
}
# The longest stretches without serial output in a Linux boot log (guest
# printk times): what the boot spent its time on.
printk_gaps() { # printk_gaps FILE N
	awk -F'[][]' '/^\[ *[0-9]+\.[0-9]+\]/ { t = $2 + 0
		if (seen) printf "%.1f\t%s\n", t - p, substr($0, 1, 120)
		p = t; seen = 1 }' "$1" | sort -t"$(printf '\t')" -k1,1 -rn | head -n "$2" |
		awk -F'\t' '{ printf "%s s before `%s`\n", $1, $2 }'
}
last_line() { # last non-empty line of a saved stream
	[ -f "$1" ] && grep -v '^[[:space:]]*$' "$1" | tail -n 1 | cut -c1-200 || true
}
linux_table() {
	echo "$HDR"
	local s
	for s in "exec → \"$LINUX_MARKER\" (s):marker_ms:s" "exec → first serial byte (s):first_out_ms:s" \
		"exec → first KVM_RUN (ms):first_kvm_run_ms:ms" \
		"VmRSS at marker (MiB):vmrss_kib:mib" "guest RAM resident at marker (MiB):guest_rss_kib:mib" \
		"VmRSS − guest RAM (MiB):monitor_rss_kib:mib"; do
		local t=${s%%:*} rest=${s#*:}
		local metric=${rest%%:*} unit=${rest##*:}
		row "$t" linux-mote mote "$metric" "$unit" linux-mote
		[ "$metric" = first_kvm_run_ms ] && continue
		row "$t" linux-qemu-kvm "QEMU microvm, KVM" "$metric" "$unit" linux-mote
		if [ "${SKIP_TCG:-0}" != 1 ]; then
			row "$t" linux-qemu-tcg "QEMU microvm, TCG (no KVM; extra)" "$metric" "$unit" linux-mote
		fi
	done
}

NPROC=$(nproc)
# The unikernel runs take ~0.1 s each, so the load average before them is
# other people's work; a Linux run's own two busy vCPU threads add ~2 to it.
UK_LOAD_MED=$(awk -F'\t' '$1 ~ /^uk-/ { print $3 }' "$LOADS" | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print 0 }')
UK_LOAD_MAX=$(awk -F'\t' '$1 ~ /^uk-/ && $3 > m { m = $3 } END { print m + 0 }' "$LOADS")
LOAD_NOTE=$(awk -v med="$UK_LOAD_MED" -v max="$UK_LOAD_MAX" -v l="${LOAD_LINUX:-0}" -v n="$NPROC" 'BEGIN {
	split(l, a, " ")
	printf "Before the unikernel runs the 1-min load was %s median, %s max. ", med, max
	if (med > n / 2 || a[1] > n / 2) print "**The load average was high** (above half the CPUs before the unikernel runs or when the Linux part started): other work (builds, other VMs) shared the CPUs, so expect inflated times and a wider spread.";
	else print "That is low for this machine (below half the CPUs)." }')
[ "$HAVE_LINUX" = 1 ] && LOAD_NOTE+=" The load at the end includes the benchmark's own Linux runs: a 2-vCPU Linux VM under emulation keeps both vCPU threads busy, adding up to 2."

{
	echo "# Boot benchmark: mote vs QEMU microvm"
	echo
	echo "> **All guest-side absolute times here were taken under nested *software* virtualization**"
	echo "> (KVM provided by a software nested hypervisor, \`kvm_pvm\`; guest CPL0 code is emulated at"
	echo "> ~260 ns/instruction, see \`/work/shared/ENVIRONMENT.md\`). Both monitors run the same guest image"
	echo "> on the same KVM, so the guest's emulation cost is the same on both sides; the ratios and the"
	echo "> monitor-side costs (start-up, RSS) are what this compares. On a VT-x/AMD-V host guest code runs"
	echo "> at native speed (roughly 1000× faster than the emulated CPL0 code here), so absolute guest-side"
	echo "> times will be far lower there."
	echo
	echo "- date: $DATE"
	echo "- machine: $NPROC CPUs ($CPU_MODEL), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel \`$(uname -r)\`, /dev/kvm from the nested \`kvm_pvm\` hypervisor (no vmx/svm)"
	echo "- QEMU: $QEMU_VER"
	echo "- mote: $MOTE_VER, git $GIT_REV$GIT_DIRTY"
	echo "- load average at start: \`$LOAD_START\`; when the unikernel part started: \`$LOAD_UK\`;${LOAD_LINUX:+ when the Linux part started: \`$LOAD_LINUX\`;} at end: \`$LOAD_END\`. $LOAD_NOTE"
	[ -n "$WAIT_NOTES" ] && echo "- waiting for a quieter machine (WAIT_IDLE=$WAIT_IDLE s, load < $WAIT_LOAD): $WAIT_NOTES"
	echo "- runner: \`benches/boot/run.sh $BUILD\` → \`$BB\` (one run at a time; see benches/README.md)"
	echo
	echo "## Goals"
	echo
	goal_line "$G1_TEXT" "$G1"
	goal_line "$G2_TEXT" "$G2"
	echo
	echo "## Unikernel: boot to exit ($BOOT_RUNS runs per side, interleaved)"
	echo
	echo "Guest: \`$ELF\` (PVH), \`test=hello\` (prints 3 lines, exits through port 0xf4), 128 MiB, 1 vCPU."
	echo "Each round runs mote, QEMU microvm and QEMU microvm minimal once, in rotating order."
	echo
	uk_table
	echo
	echo "\"exec → exit\" is a run that ended by itself (the guest's exit code: mote 0, QEMU 1 = (0<<1)|1)."
	echo "\"mote ÷ side\" is mote's median divided by that side's median (below 1: mote faster/smaller)."
	echo "Runs that passed (expected exit status): mote $(ok_of uk-mote)/$(runs_of uk-mote), QEMU $(ok_of uk-qemu)/$(runs_of uk-qemu), QEMU minimal $(ok_of uk-qemu-min)/$(runs_of uk-qemu-min)."
	echo
	echo "### Where mote's time goes (one extra run with \`--log-level debug\`)"
	echo
	echo "mote's own log, times since exec (MOTE_T0_NS); the launcher saw the process exit at"
	echo "$(awk -F'\t' 'NR > 1 { print $9 }' "$TL_TSV") ms. Everything after \"VM stopping\" is the kernel tearing the VM down"
	echo "(closing the VM fd), which QEMU's exit time includes as well. With KVM's in-kernel irqchip"
	echo "(\`--irqchip kernel\`, and QEMU's default) \`strace -T\` shows that teardown as a 12–20 ms"
	echo "\`close()\` of the VM fd: the PICs, IOAPIC and PIT each leave the I/O bus with an SRCU grace"
	echo "period. mote's default split irqchip (LAPICs in KVM, IOAPIC in mote, no PIC/PIT) closes in"
	echo "~0.5 ms. Registering guest RAM costs 4–8 ms once a VM has the in-kernel irqchip and ~0.2 ms"
	echo "before, so mote registers it first. The kernel and initrd are read into guest RAM on a thread"
	echo "while KVM creates the VM. Kernel-side costs of this nested KVM, not work in mote."
	echo
	echo '```'
	cat "$LOGS/timeline-mote.1.err"
	echo '```'
	echo
	echo "### The host's floor (\`benches/boot/kvmfloor\`)"
	echo
	echo "A static program that does only what KVM requires before the first guest instruction (open"
	echo "/dev/kvm, KVM_CREATE_VM, one memory slot, one vCPU with registers, KVM_RUN on a HLT), exec'd"
	echo "the way the launcher execs mote. No monitor can start below this on this host; mote's"
	echo "exec → first KVM_RUN above is this plus its own work. Registering the memory slot costs"
	echo "time in proportion to its size here (KVM allocates per-page reverse maps for its shadow"
	echo "paging up front), so the floor is given for a 2 MiB slot and for mote's 128 MiB."
	echo
	echo '```'
	echo "$FLOOR"
	echo "$FLOOR128"
	echo '```'
	echo
	echo "## Unikernel: memory of a running VM ($RSS_RUNS runs per side)"
	echo
	echo "Peak RSS above (\`ru_maxrss\` from \`wait4\`) counts everything the process ever had resident,"
	echo "guest RAM included. To show the monitor's own memory, the same guest is booted with \`test=spin\`"
	echo "(prints one line, then spins); when that line appears on the serial port the launcher reads"
	echo "\`/proc/PID/status\` and \`/proc/PID/smaps\`, then kills the VM. \"guest RAM resident\" is the Rss of the"
	echo "mapping that is exactly the guest's 128 MiB (mote: \`MAP_SHARED\` anonymous, counted in RssShmem;"
	echo "QEMU: private anonymous, counted in RssAnon — QEMU's RAM gets transparent huge pages, so the guest's"
	echo "first write makes a whole 2 MiB resident). \"VmRSS − guest RAM\" is what the monitor itself uses:"
	echo "binary, shared libraries (RssFile, shared with other processes), heap, stacks, device state."
	echo
	rss_table
	echo
	echo "## Linux: boot to \`$LINUX_MARKER\`"
	echo
	if [ "$HAVE_LINUX" = 1 ]; then
		echo "Guest: \`$LINUX/bzImage\` + \`$LINUX/initramfs.cpio.gz\` (guest/linux: 6.1 tinyconfig + virtio-mmio), 256 MiB, 2 vCPUs,"
		echo "$LINUX_RUNS runs per side. The VM is killed as soon as the marker is on the serial port (this measures"
		echo "boot, not shutdown). Linux user space cannot run here (ENVIRONMENT.md), so the marker is the last"
		echo "boot milestone both sides could show. A 2-vCPU Linux boot under emulation is far more sensitive"
		echo "to host load than the unikernel (the guest spin-waits on its other vCPU, which may not be running):"
		echo "while this benchmark was developed, with a load average of ~7 on the 2 CPUs, mote's boots did not"
		echo "reach the marker within 240 s (they stalled for minutes after \"NET: Registered PF_NETLINK\")."
		echo
		linux_table
		echo
		echo "Outcome per run:"
		echo
		for l in linux-mote linux-qemu-kvm linux-qemu-tcg; do
			[ "$(runs_of "$l")" = 0 ] && continue
			echo "- \`$l\`: reached the marker in $(ok_of "$l")/$(runs_of "$l") runs."
			linux_outcome "$l" | sed 's/^/  - /'
			if [ "$(ok_of "$l")" != "$(runs_of "$l")" ]; then
				f=$(ls "$LOGS/$l".*.out 2>/dev/null | tail -n 1 || true)
				e=${f%.out}.err
				[ -n "$f" ] && echo "  - last serial line (run ${f##*"$l".}): \`$(last_line "$f" | tr '`' "'")\`"
				[ -n "$f" ] && [ -s "$e" ] && echo "  - first stderr line: \`$(grep -v '^[[:space:]]*$' "$e" | head -n 1 | cut -c1-200 | tr '`' "'")\`"
			fi
		done
		echo
		stop=$(qemu_stop_rip)
		[ -n "$stop" ] && echo "- QEMU + KVM stopped at $stop." && echo
		if [ "$(ok_of linux-mote)" != 0 ]; then
			mid=$(awk -F'\t' '$1 == "linux-mote" && $3 == 1 { print $7 "\t" $2 }' "$RAW" | sort -n |
				awk -F'\t' '{ r[NR] = $2 } END { print r[int((NR + 1) / 2)] }')
			echo "Where mote's median Linux run (run $mid) spent its time — the longest gaps between"
			echo "consecutive kernel log lines (guest printk clock), the same guest work any monitor would do:"
			echo
			printk_gaps "$LOGS/linux-mote.$mid.out" 4 | sed 's/^/- /'
			echo
		fi
		echo "The first serial byte (the kernel's console coming up, shortly before \`int3_selftest()\`) is the"
		echo "one Linux milestone both sides reach under KVM; compare that row for mote against QEMU."
		echo
		echo "QEMU with KVM stops at the kernel's boot-time \`int3_selftest()\`: the nested hypervisor cannot"
		echo "emulate \`int3\` at CPL0, KVM returns an emulation failure and QEMU pauses the VM (\"KVM internal"
		echo "error. Suberror: 1\"); the launcher kills it when that message appears. mote answers that exit"
		echo "itself by injecting #BP, which is why it gets further. The TCG row is QEMU without KVM at all"
		echo "(a different, purely emulated execution), shown only as a reference point."
	else
		echo "Skipped: \`$LINUX/bzImage\` was not built (run \`make linux\` or \`./guest/linux/build-all.sh $LINUX\`)."
	fi
	echo
	echo "## Commands"
	echo
	echo "Unikernel (\`--cmdline\` / \`-append\` is \`test=hello\`, or \`test=spin\` for the memory table):"
	echo
	echo '```'
	echo "$(showcmd "${MOTE_UK[@]}") --cmdline test=hello"
	echo "$(showcmd "${QEMU_UK[@]}") -append test=hello"
	echo "$(showcmd "${QEMU_UK_MIN[@]}") -append test=hello"
	echo '```'
	echo
	echo "\`-cpu host\` alone makes QEMU 7.2 abort here (\"failed to set MSR 0x10a\", IA32_ARCH_CAPABILITIES,"
	echo "which the nested hypervisor rejects), hence \`host,-arch-capabilities\`."
	if [ "$HAVE_LINUX" = 1 ]; then
		echo
		echo "Linux (marker \`$LINUX_MARKER\`):"
		echo
		echo '```'
		showcmd "${MOTE_LINUX[@]}"; echo
		showcmd "${QEMU_LINUX_KVM[@]}"; echo
		[ "${SKIP_TCG:-0}" != 1 ] && { showcmd "${QEMU_LINUX_TCG[@]}"; echo; }
		echo '```'
		echo
		echo "Both sides get the same kernel command line. mote hides the CPU features the emulator cannot"
		echo "run through \`--cpu-template minimal\`, QEMU through \`-cpu\` flags; the nested hypervisor honours"
		echo "only part of the CPUID table (without \`noxsave\` the kernel still finds XSAVE and stops on an"
		echo "emulation failure), so both kernels are also told directly with \`$LINUX_NOFEAT\`."
	fi
	echo
	echo "## Raw data"
	echo
	echo "One row per run in \`benches/results/boot-raw.tsv\` (times in ms from the child's execve, NA = did"
	echo "not happen; \`how\`: exit, marker-kill, fail-kill, timeout). Summary (all labels and metrics):"
	echo
	echo "<details><summary>summary TSV</summary>"
	echo
	echo '```'
	cat "$SUM"
	echo '```'
	echo "</details>"
	echo
	echo "<details><summary>processes using the CPU at the start</summary>"
	echo
	echo '```'
	echo "$TOP_START"
	echo '```'
	echo "</details>"
} >"$MD"

# ---- stdout ----------------------------------------------------------------
echo
echo "== unikernel (test=hello, 128 MiB, 1 vCPU; nested software virtualization) =="
uk_table
echo
echo "== memory of a running VM (test=spin) =="
rss_table
if [ "$HAVE_LINUX" = 1 ]; then
	echo
	echo "== linux (2 vCPUs, 256 MiB) =="
	linux_table
	for l in linux-mote linux-qemu-kvm linux-qemu-tcg; do
		linux_outcome "$l"
	done
fi
echo
echo "== goals =="
goal_line "$G1_TEXT" "$G1"
goal_line "$G2_TEXT" "$G2"
echo
echo "load average: start $LOAD_START; end $LOAD_END"
echo "wrote $MD and $RAW"
