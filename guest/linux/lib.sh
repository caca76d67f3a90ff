# shellcheck shell=bash
# Shared helpers for the guest/linux build scripts. Sourced, not executed.
#
# Everything expensive (the extracted kernel source, kernel build trees, the
# gen_init_cpio tool) lives in a cache outside the checkout, so `git clean`
# does not throw away a kernel build and several checkouts share one cache.

LINUX_TARBALL=${MOTE_LINUX_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
LINUX_SRC_NAME=linux-source-6.1
MOTE_CACHE=${MOTE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mote}
LINUX_SRC_DIR=$MOTE_CACHE/src/$LINUX_SRC_NAME

GUEST_LINUX_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$GUEST_LINUX_DIR/../.." && pwd)
DEFAULT_OUTDIR=$REPO_ROOT/build/linux

# The fixed timestamp stamped on generated files, so that rebuilding an
# image from the same inputs gives the same bytes.
: "${SOURCE_DATE_EPOCH:=1700000000}"
export SOURCE_DATE_EPOCH

# Prefix every message with the script's tag (set by the caller).
log() { echo "${LOG_TAG:-linux}: $*"; }
die() {
    echo "${LOG_TAG:-linux}: ERROR: $*" >&2
    exit 1
}

# Fail early, naming the Debian package that provides a missing tool.
need_tool() { # need_tool COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 ||
        die "'$1' not found; install the Debian package '$2' (or run scripts/install-deps.sh)"
}

# Resolve an output directory argument to an absolute path, creating it.
resolve_outdir() { # resolve_outdir [DIR]
    local dir=${1:-$DEFAULT_OUTDIR}
    mkdir -p "$dir" || die "cannot create output directory '$dir'"
    (cd "$dir" && pwd)
}

# Identity of the kernel source tarball: the Debian package version when the
# tarball comes from the package, plus its size. A new Debian upload of
# linux-source-6.1 changes this and therefore every cache key built on it.
tarball_identity() {
    [ -r "$LINUX_TARBALL" ] ||
        die "kernel source tarball '$LINUX_TARBALL' not found; install the Debian package 'linux-source-6.1' (or set MOTE_LINUX_TARBALL)"
    local version=unknown
    if [ "$LINUX_TARBALL" = /usr/src/linux-source-6.1.tar.xz ] && command -v dpkg-query >/dev/null 2>&1; then
        version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null) || version=unknown
    fi
    echo "tarball=$(basename "$LINUX_TARBALL") version=$version size=$(stat -c %s "$LINUX_TARBALL")"
}

# Hold an exclusive lock on FILE through file descriptor FD (default 9)
# until that descriptor is closed (or the script ends), telling the user
# when another build holds it.
take_lock() { # take_lock FILE [FD]
    local fd=${2:-9}
    mkdir -p "$(dirname "$1")"
    eval "exec $fd>\"\$1\"" || die "cannot open lock file '$1'"
    if ! flock -n "$fd"; then
        log "waiting for another build holding $1"
        flock "$fd" || die "cannot lock '$1'"
    fi
}

# Make sure the kernel source is extracted in the cache (once; reused by all
# kernel configurations). The identity file is written last, so an
# interrupted extraction is redone. Locked on its own (fd 8), so a kernel
# build holding the build lock does not block the other scripts.
ensure_linux_source() {
    local id stamp tmp
    id=$(tarball_identity)
    stamp=$MOTE_CACHE/src/$LINUX_SRC_NAME.id
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$id" ] && [ -f "$LINUX_SRC_DIR/Makefile" ]; then
        return 0
    fi
    take_lock "$MOTE_CACHE/src.lock" 8
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$id" ] && [ -f "$LINUX_SRC_DIR/Makefile" ]; then
        exec 8>&-
        return 0
    fi
    need_tool xz xz-utils
    log "extracting $LINUX_TARBALL into $MOTE_CACHE/src (once; ~15 s)"
    rm -rf "$LINUX_SRC_DIR" "$stamp"
    mkdir -p "$MOTE_CACHE/src"
    tmp=$(mktemp -d "$MOTE_CACHE/src/.extract.XXXXXX")
    if ! tar -xJf "$LINUX_TARBALL" -C "$tmp"; then
        rm -rf "$tmp"
        die "extracting '$LINUX_TARBALL' failed (disk full? corrupt tarball? try: apt-get install --reinstall linux-source-6.1)"
    fi
    [ -f "$tmp/$LINUX_SRC_NAME/Makefile" ] || {
        rm -rf "$tmp"
        die "'$LINUX_TARBALL' does not contain $LINUX_SRC_NAME/Makefile"
    }
    mv "$tmp/$LINUX_SRC_NAME" "$LINUX_SRC_DIR"
    rmdir "$tmp"
    echo "$id" >"$stamp"
    exec 8>&-
}

# Copy SRC to DST only when the content differs, so an unchanged artefact
# keeps its timestamp and `make` does not redo what depends on it.
install_if_changed() { # install_if_changed SRC DST
    if ! cmp -s "$1" "$2"; then
        if ! cp -f "$1" "$2.tmp.$$" || ! mv -f "$2.tmp.$$" "$2"; then
            rm -f "$2.tmp.$$"
            die "cannot write '$2'"
        fi
    fi
}

# Print "name\n" for every busybox applet path (e.g. "bin/sh"), for links.
busybox_applets() { # busybox_applets BUSYBOX
    "$1" --list-full | sed -n 's,^/*,,p' | grep -v '^bin/busybox$'
}
