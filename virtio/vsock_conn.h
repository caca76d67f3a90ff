/* Internal to virtio-vsock (vsock.c, vsock_conn.c): the device and
 * stream state, in one struct so that a snapshot can reset it whole
 * (virtio_vsock_transport_reset), and the functions the two files share.
 * Everything here runs under vdev.lock. */
#ifndef MOTE_VIRTIO_VSOCK_CONN_H
#define MOTE_VIRTIO_VSOCK_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "virtio/vsock.h"

#define VSOCK_QUEUE_SIZE 256
#define VSOCK_RXQ 0
#define VSOCK_TXQ 1
#define VSOCK_EVQ 2
#define VSOCK_HDR_SIZE ((uint32_t)sizeof(struct vsock_hdr))
/* RST answers to packets that belong to no stream, waiting for an RX
 * buffer. Bounded: when full, further answers are dropped and counted
 * (the guest's own timeouts then apply). */
#define VSOCK_REPLY_MAX 64
/* First local port handed to host-initiated streams (as Firecracker). */
#define VSOCK_LOCAL_PORT_BASE (1u << 30)
#define VSOCK_EPOLL_BATCH 32
/* Packets one stream may take in a row before the next gets its turn. */
#define VSOCK_RX_BURST 4
#define VSOCK_LISTENER_TAG UINT64_MAX
#define VSOCK_TIMER_TAG (UINT64_MAX - 1)
/* A host client that does not finish its CONNECT line, or a guest that
 * does not answer a delivered REQUEST, holds a stream slot at most this
 * long (checked once a second while any such stream exists). */
#define VSOCK_LINE_TIMEOUT_MS 5000
#define VSOCK_RESPONSE_TIMEOUT_MS 10000

/* Control packets a stream owes the guest, sent as RX buffers allow. */
#define PEND_RST            0x01
#define PEND_REQUEST        0x02
#define PEND_RESPONSE       0x04
#define PEND_CREDIT_UPDATE  0x08
#define PEND_CREDIT_REQUEST 0x10

enum conn_state {
	CONN_FREE,
	CONN_LINE,        /* host client accepted, reading its CONNECT line */
	CONN_REQUEST,     /* REQUEST owed or sent to the guest, awaiting RESPONSE */
	CONN_ESTABLISHED,
	CONN_CLOSING,     /* socket closed, RST owed to the guest */
};

struct vsock_conn {
	enum conn_state state;
	uint32_t gen;           /* tags epoll events: stale ones are ignored */
	int fd;
	uint32_t events;        /* what the socket is registered for; 0: not in the set */
	uint32_t local_port;    /* the host side's port */
	uint32_t peer_port;     /* the guest side's port */
	unsigned pending;       /* PEND_* */
	uint32_t guest_shut;    /* VSOCK_SHUTDOWN_* the guest sent */
	bool host_eof;          /* the host peer will send no more (SHUTDOWN sent) */
	bool host_wr_shut;      /* we shut the socket's write side */
	bool readable;          /* EPOLLIN seen, not yet read to EAGAIN */
	bool credit_requested;  /* we asked the guest for credit */
	bool guest_waiting;     /* the guest asked us: tell it when fwd_cnt moves */
	struct vsock_credit tx;     /* host -> guest */
	struct vsock_rx_credit rx;  /* guest -> host */
	/* guest -> host bytes the socket has not taken yet */
	uint8_t *ring;          /* VSOCK_CONN_BUF bytes, allocated on first use, kept */
	uint32_t ring_head, ring_len;
	/* CONNECT line being read */
	char line[VSOCK_CONNECT_LINE_MAX];
	uint32_t line_len;
	/* CONN_LINE: the line must be complete by then; CONN_REQUEST: the
	 * guest must answer by then (0 until the REQUEST is delivered: a guest
	 * still booting is not late). CLOCK_MONOTONIC ns. */
	uint64_t deadline_ns;
};

struct vsock_reply {
	uint32_t src_port, dst_port;
};

struct virtio_vsock {
	struct virtio_device vdev; /* first: container_of by cast */
	struct vsock_config cfg;
	char name[16];
	struct event_loop *loop;
	int epfd;
	int listen_fd;
	int timerfd;               /* deadlines of CONN_LINE / CONN_REQUEST streams */
	bool timer_armed;
	bool active;
	uint64_t config_cid;       /* config space: le64 guest_cid */

	/* All stream state, in one place (snapshots reset it, see
	 * virtio_vsock_transport_reset). */
	struct vsock_conn conns[VSOCK_MAX_CONNS];
	unsigned nr_conns;
	unsigned rr;               /* round-robin start for RX service */
	uint32_t next_local_port;
	struct vsock_reply replies[VSOCK_REPLY_MAX];
	unsigned nr_replies;

	struct virtq_chain chain;  /* scratch for virtq_pop */
	struct iovec iov[VIRTQ_MAX_CHAIN];
	struct vsock_stats stats;
	bool warned;
};

/* ---- vsock_conn.c ---- */
struct vsock_conn *vsock_conn_find(struct virtio_vsock *v, uint32_t local, uint32_t peer);
/* A free slot for a stream on fd (state still CONN_FREE: set it), or NULL. */
struct vsock_conn *vsock_conn_alloc(struct virtio_vsock *v, int fd);
void vsock_conn_free(struct virtio_vsock *v, struct vsock_conn *c);
/* Ends a stream; tell_guest: owe it a RST (the guest knows the stream). */
void vsock_conn_reset(struct virtio_vsock *v, struct vsock_conn *c, bool tell_guest);
bool vsock_conn_can_read_host(const struct vsock_conn *c);
/* Bytes the guest will still take on this stream. */
uint32_t vsock_conn_credit(const struct vsock_conn *c);
/* Puts the socket in the epoll set for what the stream can use now. */
void vsock_conn_sync_events(struct virtio_vsock *v, struct vsock_conn *c);
/* Both directions finished: RST and close. */
void vsock_conn_check_done(struct virtio_vsock *v, struct vsock_conn *c);
/* After data moved toward the host or a guest SHUTDOWN: credit updates,
 * SHUT_WR on the socket, the end of the stream. */
void vsock_conn_after_forward(struct virtio_vsock *v, struct vsock_conn *c);
/* RW payload (len bytes after the header of chain ch) to the host socket. */
void vsock_conn_forward(struct virtio_vsock *v, struct vsock_conn *c,
			const struct virtq_chain *ch, uint32_t len);
/* Starts the once-a-second deadline check if it is not running. */
void vsock_timer_arm(struct virtio_vsock *v);
/* The device's epoll fd is readable (an event loop callback). */
void vsock_host_on_events(struct event_loop *loop, int fd, uint32_t events, void *opaque);

/* ---- vsock.c ---- */
/* Sends what is owed to the guest while RX buffers last. */
void vsock_rx_run(struct virtio_vsock *v);

#endif
