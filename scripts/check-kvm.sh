#!/bin/sh
# Integration tests need /dev/kvm. A missing one is a loud failure, never a
# silent skip. Exit 0: usable; 1: unusable (fail); 2: unusable but
# MOTE_ALLOW_NO_KVM=1 asked to skip on purpose.
if [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    exit 0
fi
if [ "${MOTE_ALLOW_NO_KVM:-0}" = "1" ]; then
    echo "check-kvm: /dev/kvm unusable; MOTE_ALLOW_NO_KVM=1, so the KVM tests are SKIPPED" >&2
    exit 2
fi
echo "check-kvm: FAIL: /dev/kvm is missing or not read/writable by $(id -un)." >&2
echo "check-kvm: load kvm_intel or kvm_amd, run on a host with virtualization, or" >&2
echo "check-kvm: add this user to the kvm group. (MOTE_ALLOW_NO_KVM=1 skips on purpose.)" >&2
exit 1
