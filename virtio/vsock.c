/* virtio-vsock device: three queues (0 rx, 1 tx, 2 event), one table of
 * streams, each bridged to a unix socket. See vsock.h for the protocol.
 * This file has the queues, the packets to and from the guest and the
 * device ops; vsock_conn.c the streams and the host sockets.
 *
 * Threads: everything runs under vdev.lock, on the event loop thread
 * (queue kicks, socket events) or on a vCPU thread (activate, reset).
 * Reset only closes fds and frees no memory, so a vCPU thread needs no
 * syscall beyond close() for it.
 *
 * The host sockets live in an epoll set of their own, registered in the
 * VMM loop as one fd: the number of streams does not count against the
 * loop's handler table, and a socket the device is not ready to serve is
 * simply not in the set (level-triggered EPOLLHUP cannot spin).
 *
 * Back-pressure, both ways, without unbounded buffers:
 *  - guest -> host: the monitor advertises VSOCK_CONN_BUF per stream. RW
 *    payload goes straight to the host socket; what the socket does not
 *    take waits in the stream's ring (at most buf_alloc, enforced: a guest
 *    that sends more is reset). The TX queue itself never waits.
 *  - host -> guest: a socket is read only while the guest has credit for
 *    its stream and an RX buffer is posted, directly into that buffer. */
#include "virtio/vsock_conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "virtio/mmio.h"
#include "virtio/vsock_uds.h"
#include "vmm/log.h"

static struct virtio_vsock *to_vsock(struct virtio_device *dev)
{
	return (struct virtio_vsock *)dev;
}

/* ---- packets to the guest (RX queue) ------------------------------------------ */

static void hdr_to_guest(const struct virtio_vsock *v, struct vsock_hdr *h, uint32_t src_port,
			 uint32_t dst_port, uint16_t op)
{
	memset(h, 0, sizeof(*h));
	h->src_cid = VSOCK_HOST_CID;
	h->dst_cid = v->cfg.guest_cid;
	h->src_port = src_port;
	h->dst_port = dst_port;
	h->type = VSOCK_TYPE_STREAM;
	h->op = op;
	h->buf_alloc = VSOCK_CONN_BUF;
}

static void conn_hdr(const struct virtio_vsock *v, struct vsock_conn *c, struct vsock_hdr *h,
		     uint16_t op)
{
	hdr_to_guest(v, h, c->local_port, c->peer_port, op);
	/* Every packet carries our credit: the guest needs no separate
	 * CREDIT_UPDATE for what this one tells it. */
	h->fwd_cnt = c->rx.fwd_cnt;
	c->rx.last_fwd_sent = c->rx.fwd_cnt;
	c->pending &= ~(unsigned)PEND_CREDIT_UPDATE;
}

/* -1: no buffer (or the queue broke); 0: a chain is in v->chain. */
static int rx_pop(struct virtio_vsock *v)
{
	struct virtq *q = &v->vdev.queues[VSOCK_RXQ];
	const char *why = NULL;

	for (;;) {
		int ret = virtq_pop(q, &v->chain, &why);
		if (ret == -ENOENT) {
			if (virtq_enable_notify(q))
				continue;
			return -1;
		}
		if (ret) {
			virtio_device_set_needs_reset(&v->vdev, why);
			return -1;
		}
		if (v->chain.writable_len < VSOCK_HDR_SIZE || v->chain.nr_readable) {
			virtio_device_set_needs_reset(&v->vdev, "RX buffer not device-writable or "
						      "smaller than a packet header");
			return -1;
		}
		return 0;
	}
}

static void rx_push(struct virtio_vsock *v, const struct vsock_hdr *h, uint32_t payload)
{
	virtq_chain_write(&v->chain, 0, h, sizeof(*h));
	virtq_push(&v->vdev.queues[VSOCK_RXQ], v->chain.head, VSOCK_HDR_SIZE + payload);
	atomic_fetch_add(&v->stats.rx_packets, 1);
}

static bool conn_wants_rx(const struct vsock_conn *c)
{
	if (c->state == CONN_FREE || c->state == CONN_LINE)
		return false;
	if (c->pending)
		return true;
	return c->readable && vsock_conn_can_read_host(c) && vsock_conn_credit(c) > 0;
}

/* Reads host data straight into the popped RX chain. Returns the payload
 * length (> 0), 0 at end of stream, -EAGAIN or another -errno. */
static ssize_t rx_read_host(struct virtio_vsock *v, struct vsock_conn *c, uint32_t room)
{
	const struct virtq_chain *ch = &v->chain;
	uint64_t skip = VSOCK_HDR_SIZE;
	int n = 0;

	for (unsigned i = ch->nr_readable; i < ch->nr_bufs && room; i++) {
		const struct virtq_buf *b = &ch->bufs[i];
		if (skip >= b->len) {
			skip -= b->len;
			continue;
		}
		uint32_t take = b->len - (uint32_t)skip;
		if (take > room)
			take = room;
		v->iov[n++] = (struct iovec){ b->hva + skip, take };
		room -= take;
		skip = 0;
	}
	ssize_t got = readv(c->fd, v->iov, n);
	return got < 0 ? -errno : got;
}

/* One packet for stream c into one RX buffer. 1: sent; 0: nothing to send
 * after all; -1: out of RX buffers. */
static int rx_serve_one(struct virtio_vsock *v, struct vsock_conn *c)
{
	struct vsock_hdr h;

	if (rx_pop(v))
		return -1;
	if (c->pending & PEND_RST) {
		conn_hdr(v, c, &h, VSOCK_OP_RST);
		rx_push(v, &h, 0);
		vsock_conn_free(v, c);
		return 1;
	}
	static const struct { unsigned bit; uint16_t op; } ctl[] = {
		{ PEND_REQUEST, VSOCK_OP_REQUEST },
		{ PEND_RESPONSE, VSOCK_OP_RESPONSE },
		{ PEND_CREDIT_UPDATE, VSOCK_OP_CREDIT_UPDATE },
		{ PEND_CREDIT_REQUEST, VSOCK_OP_CREDIT_REQUEST },
	};
	for (unsigned i = 0; i < sizeof(ctl) / sizeof(ctl[0]); i++) {
		if (!(c->pending & ctl[i].bit))
			continue;
		c->pending &= ~ctl[i].bit;
		conn_hdr(v, c, &h, ctl[i].op);
		rx_push(v, &h, 0);
		if (ctl[i].bit == PEND_REQUEST) {
			c->deadline_ns = time_now_ns() + VSOCK_RESPONSE_TIMEOUT_MS * 1000000ULL;
			vsock_timer_arm(v);
		}
		return 1;
	}

	uint32_t room = vsock_conn_credit(c);
	uint64_t buf_room = v->chain.writable_len - VSOCK_HDR_SIZE;
	if (room > buf_room)
		room = (uint32_t)buf_room;
	if (room > VSOCK_MAX_PAYLOAD)
		room = VSOCK_MAX_PAYLOAD;
	if (!c->readable || !vsock_conn_can_read_host(c) || room == 0) {
		virtq_unpop(&v->vdev.queues[VSOCK_RXQ]);
		return 0;
	}
	ssize_t got = rx_read_host(v, c, room);
	if (got > 0) {
		conn_hdr(v, c, &h, VSOCK_OP_RW);
		h.len = (uint32_t)got;
		c->tx.tx_cnt += (uint32_t)got;
		rx_push(v, &h, (uint32_t)got);
		atomic_fetch_add(&v->stats.rx_bytes, (uint64_t)got);
		return 1;
	}
	if (got == -EAGAIN || got == -EINTR) {
		virtq_unpop(&v->vdev.queues[VSOCK_RXQ]);
		c->readable = false;
		vsock_conn_sync_events(v, c);
		return 0;
	}
	if (got == 0) {
		/* The host peer shut its sending side: pass that on, keep the
		 * other direction open until the guest is done with it. */
		c->host_eof = true;
		c->readable = false;
		conn_hdr(v, c, &h, VSOCK_OP_SHUTDOWN);
		h.flags = VSOCK_SHUTDOWN_SEND;
		rx_push(v, &h, 0);
		vsock_conn_sync_events(v, c);
		vsock_conn_check_done(v, c);
		return 1;
	}
	/* The host peer is gone (ECONNRESET and the like). */
	conn_hdr(v, c, &h, VSOCK_OP_RST);
	rx_push(v, &h, 0);
	vsock_conn_free(v, c);
	return 1;
}

/* Sends what is owed to the guest while RX buffers last: RST answers
 * first, then the streams in turn, a few packets each. */
void vsock_rx_run(struct virtio_vsock *v)
{
	bool pushed = false, more = true;

	if (!v->active || (v->vdev.transport->status & VIRTIO_STATUS_NEEDS_RESET))
		return;
	while (v->nr_replies) {
		struct vsock_hdr h;
		const struct vsock_reply *r = &v->replies[v->nr_replies - 1];
		if (rx_pop(v))
			goto out;
		hdr_to_guest(v, &h, r->src_port, r->dst_port, VSOCK_OP_RST);
		rx_push(v, &h, 0);
		v->nr_replies--;
		pushed = true;
	}
	while (more) {
		more = false;
		for (unsigned k = 0; k < VSOCK_MAX_CONNS; k++) {
			struct vsock_conn *c = &v->conns[(v->rr + k) % VSOCK_MAX_CONNS];

			/* A stream with data but no credit asks for some, once. */
			if (c->state == CONN_ESTABLISHED && c->readable && vsock_conn_can_read_host(c) &&
			    !vsock_conn_credit(c) && !c->credit_requested) {
				c->pending |= PEND_CREDIT_REQUEST;
				c->credit_requested = true;
			}
			for (int b = 0; b < VSOCK_RX_BURST && conn_wants_rx(c); b++) {
				int r = rx_serve_one(v, c);
				if (r < 0)
					goto out;
				if (r == 0)
					break;
				pushed = true;
				more = true;
			}
		}
		v->rr = (v->rr + 1) % VSOCK_MAX_CONNS;
	}
out:
	if (pushed)
		virtio_device_notify_used(&v->vdev, VSOCK_RXQ);
}

static void reply_rst(struct virtio_vsock *v, const struct vsock_hdr *g)
{
	if (g->op == VSOCK_OP_RST)
		return;
	if (v->nr_replies == VSOCK_REPLY_MAX) {
		atomic_fetch_add(&v->stats.rst_dropped, 1);
		return;
	}
	v->replies[v->nr_replies++] = (struct vsock_reply){ g->dst_port, g->src_port };
}

/* ---- packets from the guest (TX queue) ------------------------------------------ */

/* The guest connects to host port h->dst_port: forward to uds_path_P. */
static void tx_guest_connect(struct virtio_vsock *v, const struct vsock_hdr *h)
{
	char path[VSOCK_UDS_PATH_MAX + 16];
	int fd = -ENAMETOOLONG;

	if (v->nr_conns < VSOCK_MAX_CONNS &&
	    !vsock_peer_path(v->cfg.uds_path, h->dst_port, path, sizeof(path)))
		fd = vsock_uds_connect(path);
	if (fd < 0) {
		log_debug("%s: guest port %u -> host port %u refused: %s", v->name, h->src_port,
			  h->dst_port, strerror(-fd));
		atomic_fetch_add(&v->stats.guest_conns_refused, 1);
		reply_rst(v, h);
		return;
	}
	struct vsock_conn *c = vsock_conn_alloc(v, fd);
	c->state = CONN_ESTABLISHED;
	c->local_port = h->dst_port;
	c->peer_port = h->src_port;
	vsock_credit_update(&c->tx, h->buf_alloc, h->fwd_cnt);
	c->pending = PEND_RESPONSE;
	atomic_fetch_add(&v->stats.conns_opened, 1);
	vsock_conn_sync_events(v, c);
}

static void tx_bad_packet(struct virtio_vsock *v, const char *why)
{
	atomic_fetch_add(&v->stats.bad_packets, 1);
	atomic_fetch_add(&v->vdev.nr_guest_errors, 1);
	if (!v->warned) {
		log_warn("%s: guest sent a bad packet: %s (further ones are only counted)", v->name,
			 why);
		v->warned = true;
	}
}

static void tx_handle(struct virtio_vsock *v, const struct virtq_chain *ch)
{
	struct vsock_hdr h;
	const char *why;

	memset(&h, 0, sizeof(h));
	virtq_chain_read(ch, 0, &h, sizeof(h));
	enum vsock_hdr_verdict verdict = vsock_hdr_check(&h, v->cfg.guest_cid, ch->readable_len,
							 &why);
	if (verdict != VSOCK_HDR_OK) {
		tx_bad_packet(v, why);
		if (vsock_hdr_wants_rst(verdict, &h))
			reply_rst(v, &h);
		return;
	}
	atomic_fetch_add(&v->stats.tx_packets, 1);
	struct vsock_conn *c = vsock_conn_find(v, h.dst_port, h.src_port);
	if (!c) {
		if (h.op == VSOCK_OP_REQUEST)
			tx_guest_connect(v, &h);
		else
			reply_rst(v, &h);
		return;
	}
	if (c->state == CONN_CLOSING)
		return; /* our RST is on its way */
	if (h.op == VSOCK_OP_RST) {
		vsock_conn_reset(v, c, false);
		return;
	}
	uint32_t old_alloc = c->tx.peer_buf_alloc, old_fwd = c->tx.peer_fwd_cnt;
	vsock_credit_update(&c->tx, h.buf_alloc, h.fwd_cnt);
	if (h.buf_alloc != old_alloc || h.fwd_cnt != old_fwd)
		c->credit_requested = false;

	switch (h.op) {
	case VSOCK_OP_RESPONSE: {
		char ok[24];
		int n = snprintf(ok, sizeof(ok), "OK %u\n", c->local_port);

		if (c->state != CONN_REQUEST) {
			vsock_conn_reset(v, c, true);
			break;
		}
		c->pending &= ~(unsigned)PEND_REQUEST;
		if (write(c->fd, ok, (size_t)n) != n) {
			vsock_conn_reset(v, c, true);
			break;
		}
		c->state = CONN_ESTABLISHED;
		atomic_fetch_add(&v->stats.conns_opened, 1);
		vsock_conn_sync_events(v, c);
		break;
	}
	case VSOCK_OP_REQUEST:
		/* A second REQUEST on a live stream: the guest lost track. */
		vsock_conn_reset(v, c, true);
		break;
	case VSOCK_OP_SHUTDOWN:
		c->guest_shut |= h.flags & (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
		if (c->state == CONN_ESTABLISHED)
			vsock_conn_after_forward(v, c);
		else
			vsock_conn_reset(v, c, true);
		break;
	case VSOCK_OP_RW:
		if (c->state != CONN_ESTABLISHED || (c->guest_shut & VSOCK_SHUTDOWN_SEND)) {
			vsock_conn_reset(v, c, true);
			break;
		}
		if (!vsock_rx_fits(&c->rx, h.len)) {
			/* More than we advertised: honouring it would mean
			 * buffering without bound. */
			atomic_fetch_add(&v->stats.credit_violations, 1);
			tx_bad_packet(v, "stream data beyond the credit the device gave");
			vsock_conn_reset(v, c, true);
			break;
		}
		vsock_conn_forward(v, c, ch, h.len);
		break;
	case VSOCK_OP_CREDIT_REQUEST:
		c->pending |= PEND_CREDIT_UPDATE;
		c->guest_waiting = vsock_rx_held(&c->rx) > 0;
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break; /* applied above; vsock_rx_run sends if credit opened */
	}
}

static void tx_run(struct virtio_vsock *v)
{
	struct virtq *q = &v->vdev.queues[VSOCK_TXQ];
	bool pushed = false;

	for (;;) {
		const char *why = NULL;
		int ret = virtq_pop(q, &v->chain, &why);
		if (ret == -ENOENT) {
			if (virtq_enable_notify(q))
				continue;
			break;
		}
		if (ret) {
			virtio_device_set_needs_reset(&v->vdev, why);
			break;
		}
		tx_handle(v, &v->chain);
		virtq_push(q, v->chain.head, 0);
		pushed = true;
	}
	if (pushed)
		virtio_device_notify_used(&v->vdev, VSOCK_TXQ);
}

/* ---- device ops ----------------------------------------------------------------- */

static uint64_t vsock_features(struct virtio_device *dev)
{
	(void)dev;
	/* VERSION_1 is added by the transport; stream only (no SEQPACKET).
	 * EVENT_IDX spares the guest an interrupt per batch and the device a
	 * kick per buffer. */
	return 1ULL << VIRTIO_F_RING_EVENT_IDX;
}

static void vsock_config_read(struct virtio_device *dev, uint32_t offset, void *data, uint32_t len)
{
	memcpy(data, (const uint8_t *)&to_vsock(dev)->config_cid + offset, len);
}

static int vsock_activate(struct virtio_device *dev)
{
	struct virtio_vsock *v = to_vsock(dev);

	v->active = true;
	/* Host clients that connected before the driver came up get their
	 * REQUEST once the guest posts RX buffers (its first kick). */
	return 0;
}

static void vsock_queue_notify(struct virtio_device *dev, unsigned q)
{
	struct virtio_vsock *v = to_vsock(dev);

	if (q == VSOCK_TXQ)
		tx_run(v);
	if (q == VSOCK_TXQ || q == VSOCK_RXQ)
		vsock_rx_run(v);
}

/* Every stream ends without a word to the guest (its driver is gone or is
 * told through the event queue); host sockets close. */
static void vsock_close_all(struct virtio_vsock *v)
{
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &v->conns[i];
		if (c->state == CONN_FREE)
			continue;
		/* Host clients still at their CONNECT line never reached the
		 * guest: they may stay. */
		if (c->state == CONN_LINE)
			continue;
		vsock_conn_free(v, c);
	}
	v->nr_replies = 0;
}

static void vsock_reset(struct virtio_device *dev)
{
	struct virtio_vsock *v = to_vsock(dev);

	vsock_close_all(v);
	v->active = false;
}

/* Snapshots: only whether the driver is up. Streams are not saved: their
 * host ends die with this process, and a restore resets them
 * (virtio_vsock_transport_reset). */
static int vsock_save(struct virtio_device *dev, void *buf, size_t cap)
{
	if (cap < 1)
		return -ENOSPC;
	*(uint8_t *)buf = to_vsock(dev)->active;
	return 1;
}

static int vsock_restore(struct virtio_device *dev, const void *buf, size_t len)
{
	if (len != 1)
		return -EINVAL;
	to_vsock(dev)->active = *(const uint8_t *)buf != 0;
	return 0;
}

static const struct virtio_device_ops vsock_ops = {
	.save = vsock_save,
	.restore = vsock_restore,
	.device_id = VIRTIO_ID_VSOCK,
	.nr_queues = 3,
	.queue_max_size = VSOCK_QUEUE_SIZE,
	.features = vsock_features,
	.config_size = sizeof(uint64_t),
	.config_read = vsock_config_read,
	.activate = vsock_activate,
	.queue_notify = vsock_queue_notify,
	.reset = vsock_reset,
};

int virtio_vsock_transport_reset(struct virtio_vsock *v)
{
	struct virtq *q = &v->vdev.queues[VSOCK_EVQ];
	const char *why = NULL;
	int ret = 0;

	pthread_mutex_lock(&v->vdev.lock);
	vsock_close_all(v);
	if (!v->active) {
		ret = -ENODEV;
		goto out;
	}
	ret = virtq_pop(q, &v->chain, &why);
	if (ret == -ENOENT) {
		ret = -EAGAIN;
		goto out;
	}
	if (ret) {
		virtio_device_set_needs_reset(&v->vdev, why);
		goto out;
	}
	uint32_t id = VSOCK_EVENT_TRANSPORT_RESET;
	if (v->chain.writable_len < sizeof(id)) {
		virtio_device_set_needs_reset(&v->vdev, "event buffer smaller than an event");
		ret = -EINVAL;
		goto out;
	}
	virtq_chain_write(&v->chain, 0, &id, sizeof(id));
	virtq_push(q, v->chain.head, sizeof(id));
	virtio_device_notify_used(&v->vdev, VSOCK_EVQ);
out:
	pthread_mutex_unlock(&v->vdev.lock);
	return ret;
}

/* ---- life cycle ------------------------------------------------------------------- */

int virtio_vsock_create(struct virtio_vsock **out, const struct vsock_config *cfg,
			struct event_loop *loop, const char *name, char *err, size_t errlen)
{
	struct virtio_vsock *v = calloc(1, sizeof(*v));
	int ret;

	if (!v)
		return -ENOMEM;
	v->cfg = *cfg;
	v->loop = loop;
	v->epfd = v->listen_fd = v->timerfd = -1;
	v->config_cid = cfg->guest_cid;
	v->next_local_port = VSOCK_LOCAL_PORT_BASE;
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
		v->conns[i].fd = -1;
	snprintf(v->name, sizeof(v->name), "%s", name);
	virtio_device_init(&v->vdev, &vsock_ops, v->name);

	if (cfg->guest_cid < VSOCK_MIN_GUEST_CID || cfg->guest_cid > VSOCK_MAX_GUEST_CID) {
		snprintf(err, errlen, "vsock guest_cid %llu is reserved or too large (3 and up)",
			 (unsigned long long)cfg->guest_cid);
		ret = -EINVAL;
		goto err;
	}
	v->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (v->epfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "vsock: epoll_create1: %s", strerror(errno));
		goto err;
	}
	v->listen_fd = vsock_uds_listen(cfg->uds_path, err, errlen);
	if (v->listen_fd < 0) {
		ret = v->listen_fd;
		goto err;
	}
	v->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = VSOCK_LISTENER_TAG };
	struct epoll_event tev = { .events = EPOLLIN, .data.u64 = VSOCK_TIMER_TAG };
	if (v->timerfd < 0 || epoll_ctl(v->epfd, EPOLL_CTL_ADD, v->listen_fd, &ev) < 0 ||
	    epoll_ctl(v->epfd, EPOLL_CTL_ADD, v->timerfd, &tev) < 0) {
		ret = -errno;
		snprintf(err, errlen, "vsock: epoll_ctl: %s", strerror(errno));
		goto err;
	}
	ret = loop_add(loop, v->epfd, EPOLLIN, vsock_host_on_events, v);
	if (ret) {
		snprintf(err, errlen, "vsock: event loop: %s", strerror(-ret));
		goto err;
	}
	*out = v;
	return 0;
err:
	virtio_vsock_destroy(v);
	return ret;
}

void virtio_vsock_poll(struct virtio_vsock *v)
{
	vsock_host_on_events(v->loop, v->epfd, EPOLLIN, v);
}

struct virtio_device *virtio_vsock_device(struct virtio_vsock *v)
{
	return &v->vdev;
}

const struct vsock_stats *virtio_vsock_stats(const struct virtio_vsock *v)
{
	return &v->stats;
}

unsigned virtio_vsock_nr_conns(struct virtio_vsock *v)
{
	pthread_mutex_lock(&v->vdev.lock);
	unsigned n = v->nr_conns;
	pthread_mutex_unlock(&v->vdev.lock);
	return n;
}

void virtio_vsock_destroy(struct virtio_vsock *v)
{
	if (!v)
		return;
	if (v->epfd >= 0 && v->loop)
		loop_remove(v->loop, v->epfd);
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		if (v->conns[i].state != CONN_FREE)
			vsock_conn_free(v, &v->conns[i]);
		free(v->conns[i].ring);
	}
	if (v->listen_fd >= 0) {
		close(v->listen_fd);
		unlink(v->cfg.uds_path);
	}
	if (v->timerfd >= 0)
		close(v->timerfd);
	if (v->epfd >= 0)
		close(v->epfd);
	pthread_mutex_destroy(&v->vdev.lock);
	free(v);
}
