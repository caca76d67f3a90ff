/* The unix sockets behind virtio-vsock (internal to virtio/vsock.c): the
 * listener on uds_path and the guest-initiated connections to
 * uds_path_<port>. Thin wrappers, so the device code reads as protocol and
 * the syscalls it needs after seccomp lock-down are in one place:
 * accept4, socket, connect (VMM thread). */
#ifndef MOTE_VIRTIO_VSOCK_UDS_H
#define MOTE_VIRTIO_VSOCK_UDS_H

#include <stddef.h>

/* Binds and listens (non-blocking). A socket file nobody listens on is
 * replaced; a live one or any other file is an error. fd or -errno, with a
 * message in err. */
int vsock_uds_listen(const char *path, char *err, size_t errlen);
/* A pending host connection (non-blocking), or -EAGAIN / -errno. */
int vsock_uds_accept(int listen_fd);
/* Connects (non-blocking) to path; fd or -errno (-ECONNREFUSED, -ENOENT
 * when nobody listens there). */
int vsock_uds_connect(const char *path);

#endif
