#!/bin/bash
# Builds rootfs.ext4: a small ext4 root file system with Debian's static
# busybox and an /sbin/init script that prints
# "mote-linux: rootfs init running", for `root=/dev/vda` on virtio-blk.
#
# usage: guest/linux/build-rootfs.sh [OUTDIR]     (default: build/linux)
#
# No root needed: `mke2fs -d` copies a staging directory into the image,
# then debugfs gives every file uid/gid 0 (mke2fs copies the builder's ids).
# /dev is left empty: the kernel mounts devtmpfs there (DEVTMPFS_MOUNT).
# Skipped when OUTDIR already holds an image built from the same inputs.
set -euo pipefail

export LOG_TAG=rootfs # read by lib.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

OUTDIR=$(resolve_outdir "${1:-}")
BUSYBOX=${MOTE_BUSYBOX:-/bin/busybox}
SIZE_MB=${MOTE_ROOTFS_MB:-32}
OUT=$OUTDIR/rootfs.ext4
STAMP=$OUTDIR/.rootfs.inputs

[ -x "$BUSYBOX" ] || die "'$BUSYBOX' not found; install the Debian package 'busybox-static'"
! LC_ALL=C readelf -l "$BUSYBOX" 2>/dev/null | grep -q INTERP ||
    die "'$BUSYBOX' is dynamically linked; install 'busybox-static' (not 'busybox')"
need_tool mke2fs e2fsprogs
need_tool debugfs e2fsprogs

inputs() {
    cat "$GUEST_LINUX_DIR/build-rootfs.sh" "$GUEST_LINUX_DIR/lib.sh"
    sha256sum <"$BUSYBOX"
    echo "size=$SIZE_MB"
}
want=$(inputs | sha256sum | cut -d' ' -f1)
if [ -f "$OUT" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    log "up to date: $OUT"
    exit 0
fi

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/mote-rootfs.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
ROOT=$STAGE/root
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,mnt,root,etc,run}
chmod 1777 "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
busybox_applets "$BUSYBOX" | while read -r applet; do
    [ -e "$ROOT/$applet" ] || ln -s /bin/busybox "$ROOT/$applet"
done
rm -f "$ROOT/sbin/init" # busybox's own init applet; ours is a script

cat >"$ROOT/sbin/init" <<'EOF'
#!/bin/sh
# mote's rootfs /sbin/init (busybox sh). devtmpfs is already on /dev.
# Kernel command line: mote.exit=reboot or mote.exit=poweroff when done;
# default: a shell on the console.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo "mote-linux: rootfs init running"
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
chmod 0755 "$ROOT/sbin/init"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\n' >"$ROOT/etc/group"
printf 'mote\n' >"$ROOT/etc/hostname"
find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# Fixed UUID, hash seed and clock: the same inputs give the same image.
rm -f "$STAGE/rootfs.ext4"
if ! E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mke2fs -q -F -t ext4 -L mote-root \
    -U 6d6f7465-0000-4000-8000-000000000001 \
    -E root_owner=0:0,hash_seed=6d6f7465-0000-4000-8000-000000000002 \
    -d "$ROOT" "$STAGE/rootfs.ext4" "${SIZE_MB}M" >"$STAGE/mke2fs.log" 2>&1; then
    cat "$STAGE/mke2fs.log" >&2
    die "mke2fs failed (is e2fsprogs >= 1.43 installed, for -d?)"
fi

# Give every entry uid/gid 0 (a no-op when run as root).
if [ "$(id -u)" != 0 ] || [ "$(id -g)" != 0 ]; then
    (cd "$ROOT" && find . -mindepth 1) | sed 's,^\.,,' | while read -r p; do
        echo "sif \"$p\" uid 0"
        echo "sif \"$p\" gid 0"
    done >"$STAGE/chown.debugfs"
    E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f "$STAGE/chown.debugfs" \
        "$STAGE/rootfs.ext4" >"$STAGE/debugfs.log" 2>&1 ||
        { cat "$STAGE/debugfs.log" >&2; die "debugfs (setting root ownership) failed"; }
fi

install_if_changed "$STAGE/rootfs.ext4" "$OUT"
echo "$want" >"$STAMP"
log "built $OUT (${SIZE_MB} MiB)"
