#!/bin/sh
# Integration tests need /dev/kvm. A missing one is a loud failure, never a
# silent skip: set MOTE_ALLOW_NO_KVM=1 to skip on purpose.
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    exit 0
fi
if [ "${MOTE_ALLOW_NO_KVM:-0}" = "1" ]; then
    echo "check-kvm: /dev/kvm unusable; MOTE_ALLOW_NO_KVM=1 so KVM tests are SKIPPED" >&2
    exit 0
fi
echo "check-kvm: FAIL: /dev/kvm is missing or not read/writable by $(id -un)." >&2
echo "check-kvm: load kvm_intel or kvm_amd, run on a host with virtualization, or" >&2
echo "check-kvm: add this user to the kvm group. (MOTE_ALLOW_NO_KVM=1 skips on purpose.)" >&2
exit 1
