/*
 * vsock.h - virtio-vsock driver and scenarios of the test unikernel
 * (virtio 1.2, 5.10): stream sockets only, three queues (rx, tx, event).
 */
#ifndef MOTE_GUEST_VSOCK_H
#define MOTE_GUEST_VSOCK_H

#include "virtio.h"

#define VIRTIO_ID_VSOCK 19

/* Runs the scenario if name is a vsock-* one (vsock-echo, vsock-client);
 * returns 1 with *code set, or 0 if the name is not a vsock scenario. */
int vsock_test_run(const char *name, size_t len, int *code);

#endif /* MOTE_GUEST_VSOCK_H */
