#!/bin/sh
# Boots mote's test unikernel once and prints its boot time.
set -eu
BUILD=${1:-build}
MOTE="$BUILD/mote"
GUEST="$BUILD/guest/test-guest.elf"

./scripts/check-kvm.sh
echo "demo: booting $GUEST under $MOTE (1 vCPU, 128 MiB)"
echo "demo: \$ $MOTE --kernel $GUEST --cmdline test=hello --boot-timer"
log=$(mktemp)
start=$(date +%s%N)
set +e
"$MOTE" --kernel "$GUEST" --cmdline "test=hello" --boot-timer 2>"$log"
rc=$?
set -e
end=$(date +%s%N)
cat "$log"
first_run=$(sed -n 's/.*first KVM_RUN after \([0-9]*\) us.*/\1/p' "$log")
boot=$(sed -n 's/.*boot-timer: guest signalled boot after \([0-9]*\) us.*/\1/p' "$log")
rm -f "$log"
if [ "$rc" -ne 0 ]; then
    echo "demo: FAILED: mote exited with status $rc (see mote --help for what it means)" >&2
    exit 1
fi
echo
echo "demo: exec -> first KVM_RUN:      ${first_run:-?} us"
echo "demo: exec -> guest boot timer:   ${boot:-?} us"
echo "demo: whole run (exec -> exit):   $(( (end - start) / 1000 )) us"
echo "demo: (measured under this host's virtualization; see benches/results/boot.md)"

# Serverless functions through the launcher (mote-fnd).
if [ -x "$BUILD/mote-fnd" ]; then ./scripts/demo-fn.sh "$BUILD"; fi
