#!/bin/bash
# Builds everything mote needs to boot a Linux guest into OUTDIR:
#   vmlinux (PVH entry), bzImage, kernel.config, initramfs.cpio.gz, rootfs.ext4
#
# usage: guest/linux/build-all.sh [OUTDIR]     (default: build/linux)
#
# Idempotent: the kernel is cached outside the checkout (see README.md) and
# the images are rebuilt only when their inputs change; a fully cached run
# takes well under a second.
set -euo pipefail

export LOG_TAG=linux # read by lib.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

OUTDIR=$(resolve_outdir "${1:-}")
"$GUEST_LINUX_DIR/build-kernel.sh" "$OUTDIR"
"$GUEST_LINUX_DIR/build-initramfs.sh" "$OUTDIR"
"$GUEST_LINUX_DIR/build-rootfs.sh" "$OUTDIR"
log "guest images ready in $OUTDIR"
