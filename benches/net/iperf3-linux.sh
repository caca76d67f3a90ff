#!/bin/sh
# For hosts with real VT-x/AMD-V, where Linux user space runs in the guest
# (it cannot under the nested software virtualization of the test hosts).
# Puts a TAP with 172.16.0.1/24 in a private network namespace, starts
# `iperf3 -s` there, and boots the project's Linux guest on it with the
# console on this terminal (the kernel configures 172.16.0.2 itself). Then
# you run iperf3 in the guest shell. The busybox rootfs has no iperf3: copy
# a static iperf3 into a copy of build/linux/rootfs.ext4 first (e.g.
# debugfs -w -R "write iperf3 /bin/iperf3") and pass that image as ROOTFS.
# Run the same with QEMU (-M microvm -netdev tap,...,vhost=on|off
# -device virtio-net-device) on the same TAP to compare.
#
# usage: benches/net/iperf3-linux.sh [BUILD] [ROOTFS]
set -eu
BUILD=${1:-build}
ROOTFS_SRC=${2:-$BUILD/linux/rootfs.ext4}
NS=mote-iperf-$$
TAP=miperf0
ROOTFS=$(mktemp /tmp/mote-iperf-root-XXXXXX.ext4)
cleanup() {
    [ -n "${IPERF_PID:-}" ] && kill "$IPERF_PID" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -f "$ROOTFS"
}
trap cleanup EXIT
command -v iperf3 >/dev/null || { echo "install iperf3 on the host first" >&2; exit 1; }
cp --sparse=always "$ROOTFS_SRC" "$ROOTFS"
ip netns add "$NS"
ip -n "$NS" tuntap add dev "$TAP" mode tap
ip -n "$NS" addr add 172.16.0.1/24 dev "$TAP"
ip -n "$NS" link set "$TAP" mtu 1500 up
ip netns exec "$NS" iperf3 -s -D -B 172.16.0.1 --pidfile "/tmp/$NS.pid"
IPERF_PID=$(cat "/tmp/$NS.pid" 2>/dev/null || true)
cat <<TXT
In the guest shell, run for example:
  iperf3 -c 172.16.0.1 -t 20            # guest -> host (TX, TSO)
  iperf3 -c 172.16.0.1 -t 20 -R         # host -> guest (RX, MRG_RXBUF, GRO)
  iperf3 -c 172.16.0.1 -t 20 -u -b 0 -l 1400   # UDP, small datagrams: frames/s
then 'reboot -f' to end the VM.
TXT
ip netns exec "$NS" "$BUILD/mote" --kernel "$BUILD/linux/vmlinux" --vcpus 2 --mem-mib 512 \
    --drive "path=$ROOTFS,root" --net "tap=$TAP" \
    --cmdline "console=ttyS0 reboot=k panic=-1 ip=172.16.0.2::172.16.0.1:255.255.255.0::eth0:off"
