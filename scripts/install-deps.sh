#!/bin/sh
# Installs every Debian package mote needs to build, test and benchmark.
# Idempotent: only missing packages are installed. Uses sudo when not root.
set -eu

PKGS="build-essential pkg-config clang libclang-rt-14-dev
liburing-dev libseccomp-dev libcap-ng-dev libcmocka-dev libjansson-dev libhttp-parser-dev zlib1g-dev curl
linux-source-6.1 flex bison bc libelf-dev libssl-dev xz-utils cpio kmod
busybox-static e2fsprogs
qemu-system-x86 python3 iproute2 procps
prometheus gnuplot-nox"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=sudo
    else
        echo "install-deps: need root or sudo to install:$missing" >&2
        exit 1
    fi
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
echo "install-deps: done"
