#!/bin/sh
# The serverless launcher in a few commands (see launcher/README.md): a
# function registered and invoked through mote-fnd, first by a cold boot
# that leaves a warm snapshot, then warm, then on a clone of the snapshot.
set -eu
BUILD=${1:-build}
FN="$BUILD/mote-fn"
S=$(mktemp -d /tmp/mote-demo-fn.XXXXXX)
SOCK="$S.sock"
JAIL=""
[ "$(id -u)" = 0 ] || JAIL=--no-jail
"$BUILD/mote-fnd" --sock "$SOCK" --state-dir "$S" $JAIL >"$S.log" 2>&1 &
pid=$!
# Stop the daemon (it stops its VMs) and remove what it made, also on Ctrl-C.
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$S" "$SOCK" "$S.log"' EXIT INT TERM
i=0
while [ ! -S "$SOCK" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
export MOTE_FND_SOCK="$SOCK"

echo
echo "demo: serverless functions ($([ -n "$JAIL" ] && echo "monitors not jailed: not root" || echo "every VM jailed"))"
echo "demo: \$ mote-fn register wc $BUILD/fn/wordcount.elf --mem 16"
"$FN" register wc "$BUILD/fn/wordcount.elf" --mem 16 >/dev/null
for what in "first call: a cold boot, then the warm snapshot" "second call: the same VM, warm"; do
    echo "demo: \$ printf 'hello serverless world' | mote-fn invoke wc -v     # $what"
    printf 'hello serverless world' | "$FN" invoke wc -v 2>&1 | grep -E '^[0-9]|X-Mote-(Start|Total-Us)'
done
echo "demo: \$ mote-fn scale wc 3     # three more instances, each a clone of the snapshot"
"$FN" scale wc 3 | grep -E -A1 '"started"|"first_response_us"'
echo "demo: \$ mote-fn ls     # starts by kind"
"$FN" ls | grep -E -A3 '"starts"'
