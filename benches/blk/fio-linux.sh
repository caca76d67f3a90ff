#!/bin/sh
# For hosts with real VT-x/AMD-V, where Linux user space runs in the guest
# (it cannot under the nested software virtualization of the test hosts).
# Boots the project's Linux guest with a scratch data drive (/dev/vdb) and
# the console on this terminal, then you run fio in the guest shell. The
# busybox rootfs has no fio: copy a static fio binary into a copy of
# build/linux/rootfs.ext4 first (e.g. with debugfs -w -R "write fio /bin/fio")
# and pass that image as ROOTFS.
#
# usage: benches/blk/fio-linux.sh [BUILD] [MIB] [ROOTFS]
set -eu
BUILD=${1:-build}
MIB=${2:-1024}
ROOTFS_SRC=${3:-$BUILD/linux/rootfs.ext4}
IMG=$(mktemp /tmp/mote-fio-XXXXXX.img)
ROOTFS=$(mktemp /tmp/mote-fio-root-XXXXXX.ext4)
trap 'rm -f "$IMG" "$ROOTFS"' EXIT
truncate -s "${MIB}M" "$IMG"
cp --sparse=always "$ROOTFS_SRC" "$ROOTFS"
cat <<TXT
In the guest shell, run for example:
  fio --name=seqread  --filename=/dev/vdb --rw=read  --bs=64k --iodepth=8 --ioengine=libaio --direct=1 --size=${MIB}M
  fio --name=seqwrite --filename=/dev/vdb --rw=write --bs=64k --iodepth=8 --ioengine=libaio --direct=1 --size=${MIB}M
  fio --name=randread --filename=/dev/vdb --rw=randread --bs=4k --iodepth=32 --ioengine=libaio --direct=1 --runtime=20 --time_based
then 'reboot -f' to end the VM. Compare with the same under qemu-system-x86_64 -M microvm.
TXT
"$BUILD/mote" --kernel "$BUILD/linux/vmlinux" --vcpus 2 --mem-mib 512 \
    --drive "path=$ROOTFS,root" --drive "path=$IMG" \
    --cmdline "console=ttyS0 reboot=k panic=-1"
