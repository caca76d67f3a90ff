/* virtio-vsock (virtio 1.2, 5.10) bridged to unix sockets the way
 * Firecracker's hybrid vsock is:
 *
 *   host -> guest  a host program connects to uds_path, writes
 *                  "CONNECT <port>\n", reads "OK <local_port>\n", then has
 *                  a byte stream to the guest's listener on <port>. A bad
 *                  line gets "ERR <why>\n" and the socket closed; a guest
 *                  RST closes the socket.
 *   guest -> host  a guest connection to CID 2 port P is forwarded to the
 *                  unix socket "<uds_path>_P" if one listens there; else
 *                  the guest gets RST.
 *
 * Flow control is the spec's credit scheme: the monitor never holds more
 * than it advertised (buf_alloc) per stream, reads a host socket only
 * while the guest has credit for that stream, and never blocks the shared
 * TX queue on one slow host peer.
 *
 *   virtio/vsock_proto.c  header checks, credit arithmetic, CONNECT line
 *   virtio/vsock_uds.c    the unix sockets (listen, accept, connect)
 *   virtio/vsock_conn.c   the streams: table, guest -> host data, host sockets
 *   virtio/vsock.c        the device: queues, packets, ops, life cycle */
#ifndef MOTE_VIRTIO_VSOCK_H
#define MOTE_VIRTIO_VSOCK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/loop.h"
#include "virtio/virtio.h"
#include "virtio/vsock_proto.h"

/* Streams open at once (host- and guest-initiated together). */
#define VSOCK_MAX_CONNS 256
/* What the monitor advertises per stream: it holds at most this many
 * guest bytes a host peer has not read yet. */
#define VSOCK_CONN_BUF (64u * 1024)

struct vsock_stats {
	_Atomic uint64_t conns_opened, conns_closed;
	_Atomic uint64_t host_conns_refused;  /* bad CONNECT lines, table full */
	_Atomic uint64_t guest_conns_refused; /* nobody listens at uds_path_P */
	_Atomic uint64_t rx_bytes;            /* host -> guest payload */
	_Atomic uint64_t tx_bytes;            /* guest -> host payload */
	_Atomic uint64_t rx_packets, tx_packets;
	_Atomic uint64_t bad_packets;         /* guest headers that failed a check */
	_Atomic uint64_t credit_violations;   /* guest sent more than our buf_alloc */
	_Atomic uint64_t rst_dropped;         /* RST replies lost: reply queue full */
};

struct virtio_vsock;

/* Binds and listens on cfg->uds_path (a stale socket file is replaced,
 * anything else there is an error). -errno with a message in err. */
int virtio_vsock_create(struct virtio_vsock **out, const struct vsock_config *cfg,
			struct event_loop *loop, const char *name, char *err, size_t errlen);
struct virtio_device *virtio_vsock_device(struct virtio_vsock *v);
const struct vsock_stats *virtio_vsock_stats(const struct virtio_vsock *v);
/* Open streams right now. */
unsigned virtio_vsock_nr_conns(struct virtio_vsock *v);
/* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: closes every stream (host sockets
 * included) and tells the guest on the event queue, as a restored
 * snapshot must (its streams' host ends are gone). 0, or -EAGAIN if the
 * guest has no event buffer posted, -ENODEV before the driver is up. */
int virtio_vsock_transport_reset(struct virtio_vsock *v);
/* Handles whatever the host sockets have ready, as the event loop does
 * when the device's epoll fd fires (exposed for the unit tests, which
 * run the device without a loop thread). */
void virtio_vsock_poll(struct virtio_vsock *v);
/* Closes the listener, removes the socket file and frees everything. */
void virtio_vsock_destroy(struct virtio_vsock *v);

#endif
