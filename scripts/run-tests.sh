#!/bin/sh
# Runs cmocka test binaries one after another, keeps going after a failure,
# appends "passed failed" counts per binary to $MOTE_TEST_TALLY (if set),
# and exits non-zero if any binary failed.
# usage: run-tests.sh LABEL BIN...
set -u
label=$1
shift
status=0
for t in "$@"; do
    name=$(basename "$t")
    echo "== $label: $name"
    out=$(mktemp)
    "$t" 2>&1 | tee "$out"
    passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    ran=$(sed -n 's/^\[==========\] \([0-9]*\) test(s) run.*/\1/p' "$out" | tail -n 1)
    passed=${passed:-0}
    failed=${failed:-0}
    # A binary that crashed before cmocka's summary counts as a failure.
    if [ -z "$ran" ] || [ $((passed + failed)) -ne "$ran" ]; then
        failed=$((failed + 1))
    fi
    [ "$failed" -gt 0 ] && status=1
    [ -n "${MOTE_TEST_TALLY:-}" ] && echo "$passed $failed $label/$name" >> "$MOTE_TEST_TALLY"
    rm -f "$out"
done
exit $status
