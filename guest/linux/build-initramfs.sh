#!/bin/bash
# Builds initramfs.cpio.gz (and the same uncompressed, initramfs.cpio): Debian's static busybox plus an /init script
# that mounts proc, sys and devtmpfs and prints "mote-linux: init running".
#
# usage: guest/linux/build-initramfs.sh [OUTDIR]     (default: build/linux)
#
# No root needed: the archive is written by the kernel's usr/gen_init_cpio
# (compiled once into the cache from the extracted kernel source) from a
# file list, so /dev/console and root ownership need no mknod or chown.
# Skipped when OUTDIR already holds an image built from the same inputs.
set -euo pipefail

export LOG_TAG=initramfs # read by lib.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

OUTDIR=$(resolve_outdir "${1:-}")
BUSYBOX=${MOTE_BUSYBOX:-/bin/busybox}
OUT=$OUTDIR/initramfs.cpio.gz
STAMP=$OUTDIR/.initramfs.inputs

[ -x "$BUSYBOX" ] || die "'$BUSYBOX' not found; install the Debian package 'busybox-static'"
file_is_static() { ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'INTERP'; }
file_is_static "$BUSYBOX" ||
    die "'$BUSYBOX' is dynamically linked; install 'busybox-static' (not 'busybox')"
need_tool gzip gzip

inputs() {
    cat "$GUEST_LINUX_DIR/build-initramfs.sh" "$GUEST_LINUX_DIR/lib.sh" \
        "$GUEST_LINUX_DIR/vsock-tool.c"
    sha256sum <"$BUSYBOX"
}
want=$(inputs | sha256sum | cut -d' ' -f1)
if [ -f "$OUT" ] && [ -f "$OUTDIR/initramfs.cpio" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    log "up to date: $OUT"
    exit 0
fi

# gen_init_cpio is a single C file in the kernel tree; build it once per
# source version into the cache (renamed into place, so no lock needed).
ensure_linux_source
GEN_SRC=$LINUX_SRC_DIR/usr/gen_init_cpio.c
GEN=$MOTE_CACHE/tools/gen_init_cpio-$(sha256sum <"$GEN_SRC" | cut -c1-12)
if [ ! -x "$GEN" ]; then
    need_tool "${CC:-gcc}" gcc
    mkdir -p "$MOTE_CACHE/tools"
    "${CC:-gcc}" -O2 -o "$GEN.tmp.$$" "$GEN_SRC" ||
        die "compiling $GEN_SRC failed; check that gcc works"
    mv -f "$GEN.tmp.$$" "$GEN"
fi

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/mote-initramfs.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

cat >"$STAGE/init" <<'EOF'
#!/bin/sh
# mote's initramfs /init (busybox sh).
# Kernel command line: mote.exit=reboot  -> reboot when done (with reboot=k
# the host sees the i8042 reset and ends the VM); mote.exit=poweroff;
# default: a shell on the console.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "mote-linux: init running"
if [ -b /dev/vda ]; then
    if mount -t ext4 -o ro /dev/vda /mnt; then
        echo "mote-linux: mounted /dev/vda on /mnt"
    else
        echo "mote-linux: /dev/vda present but mounting it as ext4 failed"
    fi
fi
action=shell
for arg in $(cat /proc/cmdline); do
    case $arg in mote.exit=*) action=${arg#mote.exit=} ;; esac
done
case $action in
reboot) echo "mote-linux: rebooting"; reboot -f ;;
poweroff) echo "mote-linux: powering off"; poweroff -f ;;
esac
echo "mote-linux: starting a shell on the console"
setsid cttyhack sh
echo "mote-linux: shell exited, rebooting"
reboot -f
EOF
touch -d "@$SOURCE_DATE_EPOCH" "$STAGE/init"
cp "$BUSYBOX" "$STAGE/busybox"
touch -d "@$SOURCE_DATE_EPOCH" "$STAGE/busybox"
# /bin/vsock-tool (AF_VSOCK echo/cat for virtio-vsock on real KVM): raw
# syscalls, no libc, ~10 KiB, so it costs the image next to nothing.
need_tool "${CC:-gcc}" gcc
"${CC:-gcc}" -Os -ffreestanding -static -nostdlib -fno-stack-protector -fno-pie -no-pie \
    -fno-asynchronous-unwind-tables -Wl,--build-id=none -o "$STAGE/vsock-tool" \
    "$GUEST_LINUX_DIR/vsock-tool.c" || die "compiling vsock-tool.c failed"
touch -d "@$SOURCE_DATE_EPOCH" "$STAGE/vsock-tool"

{
    for d in /bin /sbin /usr /usr/bin /usr/sbin /dev /proc /sys /mnt /tmp /root /etc; do
        echo "dir $d 0755 0 0"
    done
    echo "nod /dev/console 0600 0 0 c 5 1"
    echo "nod /dev/null 0666 0 0 c 1 3"
    echo "file /init $STAGE/init 0755 0 0"
    echo "file /bin/busybox $STAGE/busybox 0755 0 0"
    echo "file /bin/vsock-tool $STAGE/vsock-tool 0755 0 0"
    busybox_applets "$BUSYBOX" | while read -r applet; do
        echo "slink /$applet /bin/busybox 0777 0 0"
    done
} >"$STAGE/cpio.list"

"$GEN" -t "$SOURCE_DATE_EPOCH" "$STAGE/cpio.list" >"$STAGE/initramfs.cpio" ||
    die "gen_init_cpio failed on $STAGE/cpio.list"
gzip -n -9 <"$STAGE/initramfs.cpio" >"$STAGE/initramfs.cpio.gz"
install_if_changed "$STAGE/initramfs.cpio.gz" "$OUT"
# The same archive uncompressed: unpacking gzip runs at guest CPL0, which a
# software nested hypervisor emulates (~4 minutes for this 1 MB archive),
# while an uncompressed one is only copied. Tests and benchmarks use it.
install_if_changed "$STAGE/initramfs.cpio" "$OUTDIR/initramfs.cpio"
echo "$want" >"$STAMP"
log "built $OUT ($(stat -c %s "$OUT") bytes)"
