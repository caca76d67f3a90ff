#!/bin/sh
# Prints the whole suite's tally from run-tests.sh and fails if anything failed.
tally=$1
if [ ! -s "$tally" ]; then
    echo "test-summary: no test results in $tally" >&2
    exit 1
fi
echo
echo "== test summary"
awk '{ printf "  %-45s %4d passed, %d failed\n", $3, $1, $2; p += $1; f += $2 }
     END { printf "tests: %d passed, %d failed\n", p, f; exit (f > 0) }' "$tally"
