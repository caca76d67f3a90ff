/* The virtio-net backend: a host TAP device opened through /dev/net/tun
 * with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR. Every frame read or written
 * starts with a 12-byte virtio_net_hdr_v1, so offloads (checksum, TSO,
 * UFO/USO) pass between the guest and the host kernel unchanged.
 *
 * Raw syscalls live here, apart from the device logic (virtio/net.c), so
 * the device can run on any fd that behaves like a TAP queue (the unit
 * tests use a socketpair). */
#ifndef MOTE_VIRTIO_TAP_H
#define MOTE_VIRTIO_TAP_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#define TAP_NAME_MAX 15 /* IFNAMSIZ - 1 */

/* Offload bits for tap_set_offload (the kernel's TUN_F_*). */
#define TAP_OFF_CSUM 0x01
#define TAP_OFF_TSO4 0x02
#define TAP_OFF_TSO6 0x04
#define TAP_OFF_ECN  0x08
#define TAP_OFF_UFO  0x10
#define TAP_OFF_USO4 0x20
#define TAP_OFF_USO6 0x40

/* Attaches to the TAP named `name` (it must exist, e.g. made with
 * `ip tuntap add NAME mode tap`), non-blocking, 12-byte vnet headers.
 * *supported gets the offload bits this kernel accepts. Returns the fd or
 * -errno with a message in err. */
int tap_open(const char *name, unsigned *supported, char *err, size_t errlen);
/* Which frames the kernel may hand us (TUNSETOFFLOAD): 0 or -errno. */
int tap_set_offload(int fd, unsigned offloads);
/* One frame, header first; -errno (-EAGAIN: nothing to read). */
ssize_t tap_read(int fd, void *buf, size_t len);
ssize_t tap_writev(int fd, const struct iovec *iov, int iovcnt);

#endif
