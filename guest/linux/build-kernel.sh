#!/bin/bash
# Builds mote's Linux guest kernel (vmlinux for PVH boot, bzImage for the
# Linux boot protocol) from Debian's linux-source-6.1 tarball.
#
# usage: guest/linux/build-kernel.sh [OUTDIR]     (default: build/linux)
#
# The build happens in a cache outside the checkout, in a directory keyed
# by a hash of config.fragment, this script, the tarball's identity and the
# compiler version (not lib.sh: its helpers do not change the kernel):
#   ${MOTE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mote}/linux-6.1-<hash12>/
# A finished build there is reused; OUTDIR only receives copies of
# vmlinux and bzImage (rewritten only when their content changes).
set -euo pipefail

export LOG_TAG=linux # read by lib.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

OUTDIR=$(resolve_outdir "${1:-}")
FRAGMENT=$GUEST_LINUX_DIR/config.fragment
[ -r "$FRAGMENT" ] || die "missing $FRAGMENT"

key_inputs() {
    cat "$FRAGMENT" "$GUEST_LINUX_DIR/build-kernel.sh"
    tarball_identity
    echo "arch=x86_64 cc=$(${CC:-gcc} --version 2>/dev/null | head -n1)"
}
HASH=$(key_inputs | sha256sum | cut -c1-12)
BUILD=$MOTE_CACHE/linux-6.1-$HASH
DONE=$BUILD/.mote-build-done
LOG=$BUILD/build.log

publish() {
    install_if_changed "$BUILD/vmlinux" "$OUTDIR/vmlinux"
    install_if_changed "$BUILD/arch/x86/boot/bzImage" "$OUTDIR/bzImage"
    install_if_changed "$BUILD/.config" "$OUTDIR/kernel.config"
}

is_built() { [ -f "$DONE" ] && [ -f "$BUILD/vmlinux" ] && [ -f "$BUILD/arch/x86/boot/bzImage" ]; }

# Fast path, without the lock: a finished build never changes.
if is_built; then
    publish
    log "cached at $BUILD"
    exit 0
fi

take_lock "$MOTE_CACHE/linux-build.lock"
if is_built; then # another build finished it while we waited
    publish
    log "cached at $BUILD (built by a concurrent run)"
    exit 0
fi

for t in gcc:gcc make:make flex:flex bison:bison bc:bc perl:perl flock:util-linux; do
    need_tool "${t%%:*}" "${t#*:}"
done
[ -e /usr/include/libelf.h ] || [ -e /usr/include/gelf.h ] ||
    die "libelf headers not found; install the Debian package 'libelf-dev'"
[ -e /usr/include/openssl/ssl.h ] ||
    die "OpenSSL headers not found; install the Debian package 'libssl-dev'"

START=$(date +%s)
ensure_linux_source
mkdir -p "$BUILD"
: >"$LOG"
log "building kernel in $BUILD (log: $LOG)"

JOBS=${MOTE_JOBS:-$(nproc)}
kmake() {
    make -C "$LINUX_SRC_DIR" O="$BUILD" ARCH=x86_64 "$@"
}

fail_with_log() { # fail_with_log WHAT HINT
    echo "----- last 40 lines of $LOG -----" >&2
    tail -n 40 "$LOG" >&2
    echo "-----" >&2
    die "$1 failed; full log: $LOG. $2"
}

# --- Configuration --------------------------------------------------------
log "configuring: tinyconfig + config.fragment + olddefconfig"
kmake tinyconfig >>"$LOG" 2>&1 ||
    fail_with_log "make tinyconfig" "Check that flex, bison and gcc work."

# Merge: drop every symbol the fragment sets from .config, then append the
# fragment, so each symbol has exactly one (the fragment's) assignment.
frag_syms=$(sed -n -e 's/^\(CONFIG_[A-Za-z0-9_]*\)=.*/\1/p' \
    -e 's/^# \(CONFIG_[A-Za-z0-9_]*\) is not set$/\1/p' "$FRAGMENT" | sort -u)
grep -v -w -F -f <(echo "$frag_syms") "$BUILD/.config" >"$BUILD/.config.merged" || true
grep -E '^(CONFIG_|# CONFIG_.* is not set$)' "$FRAGMENT" >>"$BUILD/.config.merged"
mv "$BUILD/.config.merged" "$BUILD/.config"
kmake olddefconfig >>"$LOG" 2>&1 ||
    fail_with_log "make olddefconfig" "Check config.fragment for syntax errors."

# Every assignment in the fragment must have survived olddefconfig. If one
# was dropped, a dependency of it is off (or it has no prompt): show the
# Kconfig entry so the fix is obvious.
dropped=()
while IFS= read -r line; do
    case $line in
    CONFIG_*=*)
        grep -q -x -F "$line" "$BUILD/.config" || dropped+=("$line")
        ;;
    "# CONFIG_"*" is not set")
        sym=${line#\# }
        sym=${sym%% *}
        ! grep -q "^$sym=" "$BUILD/.config" || dropped+=("$line")
        ;;
    esac
done <"$FRAGMENT"
# Kconfig files that matter for x86 (other architectures' are skipped).
kconfig_files() {
    find "$LINUX_SRC_DIR/" -path "$LINUX_SRC_DIR/arch" -prune -o -name 'Kconfig*' -print
    find "$LINUX_SRC_DIR/arch/x86/" -name 'Kconfig*'
}
# Print where SYMBOL is defined, its own conditions ("depends on", "if" on
# its prompt), the enclosing "if" blocks, and the options that select it.
kconfig_explain() { # kconfig_explain SYMBOL(without CONFIG_)
    # shellcheck disable=SC2016 # the $N are awk fields
    kconfig_files | xargs awk -v want="$1" -v src="$LINUX_SRC_DIR/" '
        FNR == 1 { n = 0; entry = 0; cur = "" }
        /^(menu)?config / {
            entry = ($2 == want); cur = $2
            if (entry) {
                f = FILENAME; sub(src, "", f)
                print "    defined at " f ":" FNR
                for (i = 1; i <= n; i++) print "    inside: if " stack[i]
            }
            next
        }
        /^if / { stack[++n] = substr($0, 4); entry = 0; next }
        /^endif/ { n--; entry = 0; next }
        /^(choice|endchoice|menu|endmenu|comment|source)/ { entry = 0 }
        entry && /^[ \t]+(depends on |(bool|tristate|prompt) .* if )/ { sub(/^[ \t]+/, ""); print "    " $0 }
        $1 == "select" && $2 == want { print "    selected by CONFIG_" cur ($3 == "if" ? " (" $0 ")" : "") }
    ' || true
}
if [ ${#dropped[@]} -gt 0 ]; then
    for want in "${dropped[@]}"; do
        sym=${want#\# }
        sym=${sym%%[= ]*}
        got=$(grep -E "^($sym=|# $sym is not set)" "$BUILD/.config" || echo "absent: its dependencies are off")
        echo "linux: option not honoured: '$want' (got: $got)" >&2
        kconfig_explain "${sym#CONFIG_}" >&2
    done
    die "config.fragment options were dropped by olddefconfig (see above); add the missing dependency (or switch off the selecting option) in config.fragment"
fi
log "config OK: all $(grep -c -E '^(CONFIG_|# CONFIG_)' "$FRAGMENT") fragment options kept"

# --- Compilation ------------------------------------------------------------
# The full make output goes to the log; the terminal gets a line every
# PROGRESS_EVERY compiled files so a long build shows it is alive.
PROGRESS_EVERY=${MOTE_PROGRESS_EVERY:-100}
log "compiling with -j$JOBS (a cold build takes ~6 min on 2 cores)"
if ! kmake -j"$JOBS" vmlinux bzImage 2>&1 | tee -a "$LOG" |
    awk -v every="$PROGRESS_EVERY" -v start="$START" '
        /^  (CC|AS|LD|AR|HOSTCC)/ {
            n++
            if (n % every == 0) {
                printf "linux:   %5d files, %4ds: %s\n", n, systime() - start, $2
                fflush()
            }
        }
        END { printf "linux:   %5d files, %4ds: done\n", n, systime() - start }'; then
    fail_with_log "kernel build (make vmlinux bzImage)" \
        "Fix the error above; rerunning continues the build where it stopped."
fi

for f in vmlinux arch/x86/boot/bzImage; do
    [ -f "$BUILD/$f" ] || fail_with_log "kernel build" "make succeeded but $BUILD/$f is missing."
done
touch "$DONE" # written last: marks the build as complete and reusable
publish
log "built in $(($(date +%s) - START)) s: vmlinux $(stat -c %s "$BUILD/vmlinux") bytes, bzImage $(stat -c %s "$BUILD/arch/x86/boot/bzImage") bytes"
log "installed vmlinux, bzImage, kernel.config in $OUTDIR"
# Builds for other configurations stay in the cache (switching branches
# back is then free); say how to reclaim the space.
old=$(find "$MOTE_CACHE" -maxdepth 1 -name 'linux-6.1-*' -type d ! -path "$BUILD")
if [ -n "$old" ]; then
    log "note: $(echo "$old" | wc -l) other kernel build(s) in $MOTE_CACHE ($(echo "$old" | xargs du -sch | tail -n1 | cut -f1)); remove unused ones with: rm -rf $MOTE_CACHE/linux-6.1-<hash>"
fi
