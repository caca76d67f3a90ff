/* virtio-vsock streams: the connection table, the guest -> host data path
 * (straight to the socket, the rest in a bounded per-stream ring) and the
 * host sockets (accept, the CONNECT line, readiness). The queues and the
 * packets to and from the guest are in vsock.c; see vsock_conn.h. */
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

#include "virtio/vsock_uds.h"
#include "vmm/log.h"

/* ---- connection table ------------------------------------------------------ */

static uint64_t conn_tag(const struct virtio_vsock *v, const struct vsock_conn *c)
{
	/* Bit 63 stays clear: the listener's and the timer's tags have it. */
	return (uint64_t)(c - v->conns) | ((uint64_t)(c->gen & 0x7fffffffu) << 32);
}

struct vsock_conn *vsock_conn_find(struct virtio_vsock *v, uint32_t local, uint32_t peer)
{
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &v->conns[i];
		if (c->state != CONN_FREE && c->state != CONN_LINE && c->local_port == local &&
		    c->peer_port == peer)
			return c;
	}
	return NULL;
}

struct vsock_conn *vsock_conn_alloc(struct virtio_vsock *v, int fd)
{
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &v->conns[i];
		if (c->state != CONN_FREE)
			continue;
		uint8_t *ring = c->ring;
		uint32_t gen = c->gen;
		memset(c, 0, sizeof(*c));
		c->ring = ring;
		c->gen = gen;
		c->fd = fd;
		c->rx.buf_alloc = VSOCK_CONN_BUF;
		v->nr_conns++;
		return c;
	}
	return NULL;
}

/* Closes the socket; the slot stays until an owed RST is delivered. No
 * memory is freed (see the top of the file). */
static void conn_close_fd(struct vsock_conn *c)
{
	if (c->fd >= 0)
		close(c->fd); /* also leaves the epoll set */
	c->fd = -1;
	c->events = 0;
}

void vsock_conn_free(struct virtio_vsock *v, struct vsock_conn *c)
{
	conn_close_fd(c);
	if (c->state != CONN_LINE)
		atomic_fetch_add(&v->stats.conns_closed, 1);
	c->state = CONN_FREE;
	c->gen++;
	c->ring_head = c->ring_len = 0;
	v->nr_conns--;
}

/* Ends a stream; tell_guest: owe it a RST (the guest knows the stream). */
void vsock_conn_reset(struct virtio_vsock *v, struct vsock_conn *c, bool tell_guest)
{
	if (!tell_guest || !v->active || c->state == CONN_LINE) {
		vsock_conn_free(v, c);
		return;
	}
	conn_close_fd(c);
	c->state = CONN_CLOSING;
	c->pending = PEND_RST;
}

bool vsock_conn_can_read_host(const struct vsock_conn *c)
{
	return c->state == CONN_ESTABLISHED && !c->host_eof &&
	       !(c->guest_shut & VSOCK_SHUTDOWN_RCV);
}

/* Puts the socket in the epoll set for what the stream can use now. */
void vsock_conn_sync_events(struct virtio_vsock *v, struct vsock_conn *c)
{
	uint32_t want = 0;

	if (c->fd < 0)
		return;
	if (c->state == CONN_LINE)
		want = EPOLLIN;
	if (c->state == CONN_ESTABLISHED) {
		/* Once readable, the device reads when it can: no need to hear
		 * about it again until a read says EAGAIN. */
		if (!c->readable && vsock_conn_can_read_host(c))
			want |= EPOLLIN;
		if (c->ring_len)
			want |= EPOLLOUT;
	}
	if (want == c->events)
		return;
	struct epoll_event ev = { .events = want, .data.u64 = conn_tag(v, c) };
	int op = !c->events ? EPOLL_CTL_ADD : !want ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
	if (epoll_ctl(v->epfd, op, c->fd, &ev) < 0) {
		log_warn("%s: epoll_ctl on a stream socket: %s", v->name, strerror(errno));
		return;
	}
	c->events = want;
}

uint32_t vsock_conn_credit(const struct vsock_conn *c)
{
	return vsock_peer_credit(&c->tx);
}

/* Both directions finished: RST (the guest's cue that the stream is gone)
 * and close. */
void vsock_conn_check_done(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->state != CONN_ESTABLISHED)
		return;
	bool g2h_done = (c->guest_shut & VSOCK_SHUTDOWN_SEND) && !c->ring_len;
	bool h2g_done = c->host_eof || (c->guest_shut & VSOCK_SHUTDOWN_RCV);
	if (g2h_done && h2g_done)
		vsock_conn_reset(v, c, true);
}

/* ---- guest -> host data ------------------------------------------------------ */

static void ring_push(struct vsock_conn *c, const struct virtq_chain *ch, uint64_t off,
		      uint32_t len)
{
	while (len) {
		uint32_t tail = (c->ring_head + c->ring_len) % VSOCK_CONN_BUF;
		uint32_t n = VSOCK_CONN_BUF - tail;
		if (n > len)
			n = len;
		virtq_chain_read(ch, off, c->ring + tail, n);
		c->ring_len += n;
		off += n;
		len -= n;
	}
}

/* Writes what the ring holds to the socket. 0 or -errno (peer gone). */
static int conn_flush(struct virtio_vsock *v, struct vsock_conn *c)
{
	while (c->ring_len) {
		uint32_t first = VSOCK_CONN_BUF - c->ring_head;
		struct iovec iov[2] = { { c->ring + c->ring_head, c->ring_len } };
		int n = 1;
		if (first < c->ring_len) {
			iov[0].iov_len = first;
			iov[1] = (struct iovec){ c->ring, c->ring_len - first };
			n = 2;
		}
		ssize_t w = writev(c->fd, iov, n);
		if (w < 0)
			return errno == EAGAIN ? 0 : -errno;
		c->ring_head = (c->ring_head + (uint32_t)w) % VSOCK_CONN_BUF;
		c->ring_len -= (uint32_t)w;
		c->rx.fwd_cnt += (uint32_t)w;
		atomic_fetch_add(&v->stats.tx_bytes, (uint64_t)w);
	}
	c->ring_head = 0;
	return 0;
}

void vsock_conn_after_forward(struct virtio_vsock *v, struct vsock_conn *c)
{
	/* A guest that asked for credit hears as soon as there is news, even
	 * when the usual half-buffer rule would stay quiet (its packets may be
	 * larger than what it thinks is free). */
	if (vsock_rx_wants_update(&c->rx) ||
	    (c->guest_waiting && c->rx.fwd_cnt != c->rx.last_fwd_sent)) {
		c->pending |= PEND_CREDIT_UPDATE;
		c->guest_waiting = false;
	}
	if ((c->guest_shut & VSOCK_SHUTDOWN_SEND) && !c->ring_len && !c->host_wr_shut) {
		shutdown(c->fd, SHUT_WR);
		c->host_wr_shut = true;
	}
	vsock_conn_sync_events(v, c);
	vsock_conn_check_done(v, c);
}

/* RW payload at offset VSOCK_HDR_SIZE of the chain, to the host socket. */
void vsock_conn_forward(struct virtio_vsock *v, struct vsock_conn *c, const struct virtq_chain *ch,
		       uint32_t len)
{
	uint64_t off = VSOCK_HDR_SIZE;

	c->rx.rx_cnt += len;
	if (!c->ring_len) {
		/* Straight from guest memory when the socket takes it. */
		uint64_t skip = off;
		uint32_t left = len;
		int n = 0;
		for (unsigned i = 0; i < ch->nr_readable && left; i++) {
			const struct virtq_buf *b = &ch->bufs[i];
			if (skip >= b->len) {
				skip -= b->len;
				continue;
			}
			uint32_t take = b->len - (uint32_t)skip;
			if (take > left)
				take = left;
			v->iov[n++] = (struct iovec){ b->hva + skip, take };
			left -= take;
			skip = 0;
		}
		ssize_t w = n ? writev(c->fd, v->iov, n) : 0;
		if (w < 0 && errno != EAGAIN) {
			vsock_conn_reset(v, c, true);
			return;
		}
		if (w > 0) {
			c->rx.fwd_cnt += (uint32_t)w;
			atomic_fetch_add(&v->stats.tx_bytes, (uint64_t)w);
			off += (uint64_t)w;
			len -= (uint32_t)w;
		}
	}
	if (len) {
		if (!c->ring) {
			c->ring = malloc(VSOCK_CONN_BUF);
			if (!c->ring) {
				log_warn("%s: out of memory for a stream buffer", v->name);
				vsock_conn_reset(v, c, true);
				return;
			}
		}
		/* vsock_rx_fits() held: held bytes (the ring) stay within it. */
		ring_push(c, ch, off, len);
	}
	vsock_conn_after_forward(v, c);
}

/* ---- host sockets ------------------------------------------------------------ */

static void host_refuse(struct virtio_vsock *v, int fd, const char *why)
{
	char line[128];
	int n = snprintf(line, sizeof(line), "ERR %s\n", why);

	/* Best effort: a fresh socket's buffer takes one short line. */
	if (write(fd, line, (size_t)n) < 0)
		log_debug("%s: could not tell a host client why: %s", v->name, strerror(errno));
	atomic_fetch_add(&v->stats.host_conns_refused, 1);
}

static uint32_t alloc_local_port(struct virtio_vsock *v)
{
	for (;;) {
		uint32_t p = v->next_local_port++;
		if (v->next_local_port < VSOCK_LOCAL_PORT_BASE || v->next_local_port == UINT32_MAX)
			v->next_local_port = VSOCK_LOCAL_PORT_BASE;
		bool used = false;
		for (unsigned i = 0; i < VSOCK_MAX_CONNS && !used; i++)
			used = v->conns[i].state != CONN_FREE && v->conns[i].local_port == p;
		if (!used)
			return p;
	}
}

/* Reads the CONNECT line a byte at a time: what follows the newline is
 * stream data and stays in the socket for the guest. */
static void host_read_line(struct virtio_vsock *v, struct vsock_conn *c)
{
	while (c->line_len < sizeof(c->line)) {
		char ch;
		ssize_t n = read(c->fd, &ch, 1);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			vsock_conn_free(v, c); /* the client left before asking */
			return;
		}
		c->line[c->line_len++] = ch;
		uint32_t port;
		size_t used;
		const char *err = NULL;
		int r = vsock_parse_connect(c->line, c->line_len, &port, &used, &err);
		if (r < 0) {
			host_refuse(v, c->fd, err);
			vsock_conn_free(v, c);
			return;
		}
		if (r == 0)
			continue;
		c->state = CONN_REQUEST;
		c->local_port = alloc_local_port(v);
		c->peer_port = port;
		c->pending = PEND_REQUEST;
		c->deadline_ns = 0; /* set when the REQUEST reaches the guest */
		/* Until the guest's RESPONSE, the guest's credit is unknown:
		 * nothing is read from the socket before then. */
		vsock_conn_sync_events(v, c);
		return;
	}
}

static void host_accept(struct virtio_vsock *v)
{
	for (int i = 0; i < 16; i++) {
		int fd = vsock_uds_accept(v->listen_fd);
		if (fd < 0)
			return;
		struct vsock_conn *c = v->nr_conns < VSOCK_MAX_CONNS ? vsock_conn_alloc(v, fd) : NULL;
		if (!c) {
			host_refuse(v, fd, "too many vsock connections");
			close(fd);
			continue;
		}
		c->state = CONN_LINE;
		c->deadline_ns = time_now_ns() + VSOCK_LINE_TIMEOUT_MS * 1000000ULL;
		vsock_timer_arm(v);
		vsock_conn_sync_events(v, c);
		/* Clients usually send the line with the connect: read it now
		 * rather than on the next turn of the loop. */
		host_read_line(v, c);
	}
}

static void host_event(struct virtio_vsock *v, struct vsock_conn *c, uint32_t events)
{
	if (c->state == CONN_LINE) {
		host_read_line(v, c);
		return;
	}
	if (c->state != CONN_ESTABLISHED)
		return;
	if (events & EPOLLERR) {
		vsock_conn_reset(v, c, true);
		return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
		c->readable = vsock_conn_can_read_host(c);
	if (c->ring_len && (events & (EPOLLOUT | EPOLLHUP))) {
		if (conn_flush(v, c)) {
			vsock_conn_reset(v, c, true);
			return;
		}
		vsock_conn_after_forward(v, c);
		if (c->state != CONN_ESTABLISHED)
			return;
	}
	vsock_conn_sync_events(v, c);
}

void vsock_timer_arm(struct virtio_vsock *v)
{
	struct itimerspec its = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };

	if (v->timer_armed || v->timerfd < 0)
		return;
	if (timerfd_settime(v->timerfd, 0, &its, NULL) == 0)
		v->timer_armed = true;
}

/* Once a second while streams wait on a host client's line or a guest's
 * answer: those past their deadline end, so neither side can hold a slot
 * forever by saying nothing. */
static void host_check_deadlines(struct virtio_vsock *v)
{
	uint64_t now = time_now_ns(), expired;
	bool waiting = false;

	if (read(v->timerfd, &expired, sizeof(expired)) < 0)
		return;
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &v->conns[i];
		bool line = c->state == CONN_LINE;
		if ((!line && c->state != CONN_REQUEST) || !c->deadline_ns)
			continue;
		if (c->deadline_ns > now) {
			waiting = true;
			continue;
		}
		if (line) {
			host_refuse(v, c->fd, "timed out waiting for 'CONNECT <port>\\n'");
			vsock_conn_free(v, c);
		} else {
			log_debug("%s: the guest did not answer a connection to port %u", v->name,
				  c->peer_port);
			vsock_conn_reset(v, c, true);
		}
	}
	if (!waiting) {
		struct itimerspec off = { 0 };
		timerfd_settime(v->timerfd, 0, &off, NULL);
		v->timer_armed = false;
	}
}

void vsock_host_on_events(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct virtio_vsock *v = opaque;
	struct epoll_event evs[VSOCK_EPOLL_BATCH];

	(void)loop;
	(void)fd;
	(void)events;
	pthread_mutex_lock(&v->vdev.lock);
	int n = epoll_wait(v->epfd, evs, VSOCK_EPOLL_BATCH, 0);
	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;
		if (tag == VSOCK_LISTENER_TAG) {
			host_accept(v);
			continue;
		}
		if (tag == VSOCK_TIMER_TAG) {
			host_check_deadlines(v);
			continue;
		}
		struct vsock_conn *c = &v->conns[(uint32_t)tag % VSOCK_MAX_CONNS];
		/* The stream may have ended earlier in this batch. */
		if (c->state == CONN_FREE || (c->gen & 0x7fffffffu) != (uint32_t)(tag >> 32))
			continue;
		host_event(v, c, evs[i].events);
	}
	vsock_rx_run(v);
	pthread_mutex_unlock(&v->vdev.lock);
}
