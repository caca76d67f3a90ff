/* virtio-net: frame handling and validation; the TAP is in virtio/tap.c. */
#include "virtio/net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "virtio/mmio.h"
#include "virtio/tap.h"
#include "vmm/log.h"

#define NET_QUEUE_SIZE 256
#define NET_RXQ 0
#define NET_TXQ 1
#define NET_HDR_LEN sizeof(struct virtio_net_hdr_v1)
#define NET_RX_BUF (NET_HDR_LEN + NET_MAX_FRAME)
/* Frames handled per wake-up before the loop serves other fds: a guest
 * that keeps its TX queue full must not starve the VMM thread. */
#define NET_BUDGET 256
#define VIRTIO_NET_S_LINK_UP 1

struct virtio_net_config {
	uint8_t mac[6];
	uint16_t status;
	uint16_t max_virtqueue_pairs;
	uint16_t mtu;
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_net_config) == 12, "virtio_net_config layout");

struct net_used {
	uint16_t head;
	uint32_t len;
};

struct virtio_net {
	struct virtio_device vdev; /* first: container_of by cast */
	struct net_config cfg;
	char name[16];
	struct event_loop *loop;
	int tap_fd;
	unsigned tap_offloads;      /* what the TAP supports */
	int wake_fd;                /* eventfd: "look at the queues" for the loop thread */
	int rl_timerfd;
	struct virtio_net_config config;

	/* Under vdev.lock. */
	bool offloads_dirty;        /* activated: the loop thread sets TUNSETOFFLOAD */
	uint32_t tap_events;        /* EPOLLIN while the TAP is polled, else 0 */
	bool tap_gone;              /* the host took the TAP away: no longer in the loop */
	bool rx_stalled;            /* no guest buffers: TAP not polled until an RX kick */
	bool rx_limited, tx_limited;
	uint64_t rl_deadline_ns;    /* when the rate-limit timer fires, 0 if unarmed */
	struct rate_limiter rx_rl, tx_rl;
	uint64_t pending_len;       /* frame (with header) in rxbuf, 0 if none */
	uint8_t *rxbuf;
	bool tap_error_logged;

	struct virtq_chain first, chain; /* scratch for virtq_pop */
	struct net_used rx_used[NET_QUEUE_SIZE];
	struct iovec iov[VIRTQ_MAX_CHAIN + 1];
	struct net_stats stats;
};

static struct virtio_net *to_net(struct virtio_device *dev)
{
	return (struct virtio_net *)dev;
}

/* ---- headers and features ------------------------------------------- */

static bool has(uint64_t features, unsigned bit)
{
	return virtio_has_feature(features, bit);
}

int net_check_tx_hdr(const struct virtio_net_hdr_v1 *h, uint64_t features, uint64_t frame_len)
{
	if (frame_len < NET_ETH_HLEN || frame_len > NET_MAX_FRAME)
		return -EINVAL;
	/* DATA_VALID and anything else is for the device to set (5.1.6.2). */
	if (h->flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
		return -EINVAL;
	if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		if (!has(features, VIRTIO_NET_F_CSUM))
			return -EINVAL;
		if ((uint64_t)h->csum_start + h->csum_offset + 2 > frame_len)
			return -EINVAL;
	}
	uint8_t gso = h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
	bool ecn = h->gso_type & VIRTIO_NET_HDR_GSO_ECN;
	unsigned need;
	switch (gso) {
	case VIRTIO_NET_HDR_GSO_NONE:
		return ecn ? -EINVAL : 0;
	case VIRTIO_NET_HDR_GSO_TCPV4: need = VIRTIO_NET_F_HOST_TSO4; break;
	case VIRTIO_NET_HDR_GSO_TCPV6: need = VIRTIO_NET_F_HOST_TSO6; break;
	case VIRTIO_NET_HDR_GSO_UDP: need = VIRTIO_NET_F_HOST_UFO; break;
	case VIRTIO_NET_HDR_GSO_UDP_L4: need = VIRTIO_NET_F_HOST_USO; break;
	default: return -EINVAL;
	}
	if (!has(features, need) || (ecn && !has(features, VIRTIO_NET_F_HOST_ECN)))
		return -EINVAL;
	/* Segmenting needs a checksum to fill in and a segment size. */
	if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || h->gso_size == 0 || h->hdr_len > frame_len)
		return -EINVAL;
	return 0;
}

int net_fix_rx_hdr(struct virtio_net_hdr_v1 *h, uint64_t features)
{
	uint8_t gso = h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
	unsigned need;

	if (!has(features, VIRTIO_NET_F_GUEST_CSUM)) {
		/* A partial checksum this guest cannot complete. */
		if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
			return -EINVAL;
		h->flags = 0;
	}
	h->flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;
	switch (gso) {
	case VIRTIO_NET_HDR_GSO_NONE:
		h->gso_type = VIRTIO_NET_HDR_GSO_NONE;
		return 0;
	case VIRTIO_NET_HDR_GSO_TCPV4: need = VIRTIO_NET_F_GUEST_TSO4; break;
	case VIRTIO_NET_HDR_GSO_TCPV6: need = VIRTIO_NET_F_GUEST_TSO6; break;
	case VIRTIO_NET_HDR_GSO_UDP: need = VIRTIO_NET_F_GUEST_UFO; break;
	case VIRTIO_NET_HDR_GSO_UDP_L4: need = VIRTIO_NET_F_GUEST_USO4; break;
	default: return -EINVAL;
	}
	if (!has(features, need))
		return -EINVAL;
	if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !has(features, VIRTIO_NET_F_GUEST_ECN))
		return -EINVAL;
	return 0;
}

unsigned net_tap_offloads(uint64_t f)
{
	unsigned off;

	/* Every offload hands the guest partial checksums. */
	if (!has(f, VIRTIO_NET_F_GUEST_CSUM))
		return 0;
	off = TAP_OFF_CSUM;
	if (has(f, VIRTIO_NET_F_GUEST_TSO4))
		off |= TAP_OFF_TSO4;
	if (has(f, VIRTIO_NET_F_GUEST_TSO6))
		off |= TAP_OFF_TSO6;
	if (has(f, VIRTIO_NET_F_GUEST_ECN) && (off & (TAP_OFF_TSO4 | TAP_OFF_TSO6)))
		off |= TAP_OFF_ECN;
	if (has(f, VIRTIO_NET_F_GUEST_UFO))
		off |= TAP_OFF_UFO;
	/* The kernel sends UDP_L4 for both families: both or none. */
	if (has(f, VIRTIO_NET_F_GUEST_USO4) && has(f, VIRTIO_NET_F_GUEST_USO6))
		off |= TAP_OFF_USO4 | TAP_OFF_USO6;
	return off;
}

uint64_t net_device_features(unsigned tap, const struct net_config *cfg)
{
	uint64_t f = (1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_STATUS) |
		     (1ULL << VIRTIO_NET_F_MRG_RXBUF) | (1ULL << VIRTIO_F_RING_EVENT_IDX) |
		     (1ULL << VIRTIO_F_RING_INDIRECT_DESC);

	if (cfg->mtu)
		f |= 1ULL << VIRTIO_NET_F_MTU;
	/* A TAP that takes TUNSETOFFLOAD parses vnet headers both ways. */
	if (!(tap & TAP_OFF_CSUM))
		return f;
	f |= (1ULL << VIRTIO_NET_F_CSUM) | (1ULL << VIRTIO_NET_F_GUEST_CSUM);
	if (tap & TAP_OFF_TSO4)
		f |= (1ULL << VIRTIO_NET_F_HOST_TSO4) | (1ULL << VIRTIO_NET_F_GUEST_TSO4) |
		     (1ULL << VIRTIO_NET_F_HOST_TSO6) | (1ULL << VIRTIO_NET_F_GUEST_TSO6) |
		     (1ULL << VIRTIO_NET_F_HOST_ECN) | (1ULL << VIRTIO_NET_F_GUEST_ECN);
	if (tap & TAP_OFF_UFO)
		f |= (1ULL << VIRTIO_NET_F_HOST_UFO) | (1ULL << VIRTIO_NET_F_GUEST_UFO);
	if (tap & TAP_OFF_USO4)
		f |= (1ULL << VIRTIO_NET_F_HOST_USO) | (1ULL << VIRTIO_NET_F_GUEST_USO4) |
		     (1ULL << VIRTIO_NET_F_GUEST_USO6);
	return f;
}

/* ---- queues --------------------------------------------------------- */

static bool net_live(const struct virtio_net *n)
{
	const struct virtio_mmio *t = n->vdev.transport;

	return t && t->activated && !(t->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* Loop thread only (epoll_ctl). */
static void net_tap_poll(struct virtio_net *n, bool on)
{
	uint32_t ev = on ? EPOLLIN : 0;

	if (!n->tap_gone && ev != n->tap_events && !loop_modify(n->loop, n->tap_fd, ev))
		n->tap_events = ev;
}

/* A TAP that fails for good (deleted on the host: EBADFD, or always
 * EPOLLERR, which epoll reports even unasked) would wake the loop forever:
 * take it out. The guest keeps a device whose frames go nowhere. */
static void net_tap_lost(struct virtio_net *n, int err)
{
	if (n->tap_gone)
		return;
	log_warn("%s: TAP '%s' failed (%s): no more frames on this interface", n->name,
		 n->cfg.tap, err ? strerror(err) : "error condition");
	loop_remove(n->loop, n->tap_fd);
	n->tap_gone = true;
}

static void net_wake(struct virtio_net *n)
{
	uint64_t one = 1;

	if (n->wake_fd >= 0 && write(n->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("%s: wake eventfd: %s", n->name, strerror(errno));
}

static bool net_rate_limited(struct virtio_net *n, struct rate_limiter *rl, uint64_t bytes)
{
	if (!rate_limiter_enabled(rl))
		return false;
	uint64_t now = time_now_ns();
	uint64_t wait = rate_limiter_consume(rl, bytes, now);
	if (!wait)
		return false;
	/* Both directions share the timer: keep the earlier deadline. */
	if (n->rl_deadline_ns > now && n->rl_deadline_ns - now <= wait)
		return true;
	struct itimerspec its = { .it_value = { (time_t)(wait / 1000000000ULL),
						(long)(wait % 1000000000ULL) } };
	timerfd_settime(n->rl_timerfd, 0, &its, NULL);
	n->rl_deadline_ns = now + wait;
	return true;
}

static void net_rx_stall(struct virtio_net *n)
{
	if (!n->rx_stalled)
		atomic_fetch_add(&n->stats.rx_no_buffers, 1);
	n->rx_stalled = true;
}

/* Gives the frame in rxbuf to the guest: one chain, or with MRG_RXBUF as
 * many as it takes. 0 delivered or dropped; -EAGAIN buffers arrived while
 * we looked, try again; -ENOBUFS not enough buffers (nothing consumed,
 * notifications on); -EINVAL the guest broke the queue. */
static int net_rx_one(struct virtio_net *n)
{
	struct virtq *q = &n->vdev.queues[NET_RXQ];
	bool mrg = has(n->vdev.driver_features, VIRTIO_NET_F_MRG_RXBUF);
	uint64_t len = n->pending_len, done = 0;
	unsigned used = 0;

	while (done < len) {
		struct virtq_chain *c = used ? &n->chain : &n->first;
		const char *why = NULL;
		int ret = virtq_pop(q, c, &why);

		if (ret == -ENOENT) {
			/* Everything is taken, so avail_event now asks for a kick
			 * on the very next buffer; then give back what we took. */
			bool more = virtq_enable_notify(q);
			while (used--)
				virtq_unpop(q);
			return more ? -EAGAIN : -ENOBUFS;
		}
		if (ret) {
			virtio_device_set_needs_reset(&n->vdev, why);
			return -EINVAL;
		}
		if (c->nr_readable || c->writable_len < (used ? 1 : NET_HDR_LEN)) {
			virtio_device_set_needs_reset(&n->vdev, "RX buffer device-readable or shorter "
						      "than the virtio-net header");
			return -EINVAL;
		}
		if (!mrg && c->writable_len < len) {
			/* Without MRG_RXBUF the frame must fit one chain: the
			 * guest gets the buffer back empty, the frame is lost. */
			virtq_push(q, c->head, 0);
			atomic_fetch_add(&n->stats.rx_dropped, 1);
			n->pending_len = 0;
			return 0;
		}
		uint64_t take = c->writable_len < len - done ? c->writable_len : len - done;
		virtq_chain_write(c, 0, n->rxbuf + done, take);
		n->rx_used[used++] = (struct net_used){ c->head, (uint32_t)take };
		done += take;
	}
	uint16_t nbufs = (uint16_t)used;
	virtq_chain_write(&n->first, offsetof(struct virtio_net_hdr_v1, num_buffers), &nbufs,
			  sizeof(nbufs));
	for (unsigned i = 0; i < used; i++)
		virtq_push(q, n->rx_used[i].head, n->rx_used[i].len);
	atomic_fetch_add(&n->stats.rx_frames, 1);
	atomic_fetch_add(&n->stats.rx_bytes, len - NET_HDR_LEN);
	n->pending_len = 0;
	return 0;
}

/* TAP -> guest, on the loop thread. */
static void net_rx_process(struct virtio_net *n)
{
	struct virtq *q = &n->vdev.queues[NET_RXQ];
	bool pushed = false;

	for (unsigned budget = NET_BUDGET; budget && net_live(n) && !n->rx_limited && !n->tap_gone;
	     budget--) {
		if (!n->pending_len) {
			ssize_t r = tap_read(n->tap_fd, n->rxbuf, NET_RX_BUF);
			if (r == -EAGAIN || r == -EINTR)
				break;
			if (r < 0) {
				net_tap_lost(n, (int)-r);
				break;
			}
			if ((size_t)r < NET_HDR_LEN + NET_ETH_HLEN ||
			    net_fix_rx_hdr((struct virtio_net_hdr_v1 *)n->rxbuf,
					   n->vdev.driver_features)) {
				atomic_fetch_add(&n->stats.rx_dropped, 1);
				continue;
			}
			n->pending_len = (uint64_t)r;
		}
		if (!virtq_has_avail(q) && !virtq_enable_notify(q)) {
			net_rx_stall(n);
			break;
		}
		if (net_rate_limited(n, &n->rx_rl, n->pending_len - NET_HDR_LEN)) {
			n->rx_limited = true;
			atomic_fetch_add(&n->stats.rx_rate_limited, 1);
			rl_throttle_hold(&n->stats.rx_throttled, time_now_ns());
			break;
		}
		int ret = net_rx_one(n);
		if (ret == -EAGAIN)
			continue;
		if (ret == -ENOBUFS) {
			net_rx_stall(n);
			break;
		}
		if (ret)
			break;
		pushed = true;
	}
	if (pushed)
		virtio_device_notify_used(&n->vdev, NET_RXQ);
	net_tap_poll(n, net_live(n) && !n->rx_stalled && !n->rx_limited);
}

/* iovecs for the frame after the header: the guest's buffers as they are. */
static int net_tx_iov(struct virtio_net *n, const struct virtq_chain *c)
{
	uint64_t skip = NET_HDR_LEN;
	int cnt = 1;

	for (unsigned i = 0; i < c->nr_readable; i++) {
		const struct virtq_buf *b = &c->bufs[i];
		if (skip >= b->len) {
			skip -= b->len;
			continue;
		}
		n->iov[cnt++] = (struct iovec){ b->hva + skip, b->len - skip };
		skip = 0;
	}
	return cnt;
}

/* Guest -> TAP, on the loop thread. */
static void net_tx_process(struct virtio_net *n)
{
	struct virtq *q = &n->vdev.queues[NET_TXQ];
	bool pushed = false;
	unsigned budget = NET_BUDGET;

	while (net_live(n) && !n->tx_limited) {
		struct virtio_net_hdr_v1 hdr;
		const char *why = NULL;

		if (!budget--) {
			net_wake(n); /* come back after the other fds */
			break;
		}
		int ret = virtq_pop(q, &n->chain, &why);
		if (ret == -ENOENT) {
			if (virtq_enable_notify(q))
				continue;
			break;
		}
		if (ret) {
			virtio_device_set_needs_reset(&n->vdev, why);
			break;
		}
		const struct virtq_chain *c = &n->chain;
		/* One copy of the header: the guest cannot change it between
		 * our check and the kernel's read. */
		if (c->readable_len < NET_HDR_LEN ||
		    (virtq_chain_read(c, 0, &hdr, NET_HDR_LEN),
		     net_check_tx_hdr(&hdr, n->vdev.driver_features, c->readable_len - NET_HDR_LEN))) {
			atomic_fetch_add(&n->stats.tx_dropped, 1);
			atomic_fetch_add(&n->vdev.nr_guest_errors, 1);
			virtq_push(q, c->head, 0);
			pushed = true;
			continue;
		}
		uint64_t frame_len = c->readable_len - NET_HDR_LEN;
		if (net_rate_limited(n, &n->tx_rl, frame_len)) {
			virtq_unpop(q);
			n->tx_limited = true;
			atomic_fetch_add(&n->stats.tx_rate_limited, 1);
			rl_throttle_hold(&n->stats.tx_throttled, time_now_ns());
			break;
		}
		hdr.num_buffers = 0;
		n->iov[0] = (struct iovec){ &hdr, NET_HDR_LEN };
		ssize_t w = tap_writev(n->tap_fd, n->iov, net_tx_iov(n, c));
		if (w < 0) {
			atomic_fetch_add(&n->stats.tx_errors, 1);
			if (!n->tap_error_logged)
				log_warn("%s: TAP write of a %llu-byte frame: %s", n->name,
					 (unsigned long long)frame_len, strerror((int)-w));
			n->tap_error_logged = true;
		} else {
			atomic_fetch_add(&n->stats.tx_frames, 1);
			atomic_fetch_add(&n->stats.tx_bytes, frame_len);
		}
		virtq_push(q, c->head, 0);
		pushed = true;
	}
	if (pushed)
		virtio_device_notify_used(&n->vdev, NET_TXQ);
}

/* The loop thread applies what activate() asked for, then serves. */
static void net_service(struct virtio_net *n)
{
	if (!net_live(n)) {
		net_tap_poll(n, false);
		return;
	}
	if (n->offloads_dirty) {
		unsigned off = net_tap_offloads(n->vdev.driver_features) & n->tap_offloads;
		int ret = tap_set_offload(n->tap_fd, off);
		if (ret)
			log_warn("%s: TUNSETOFFLOAD 0x%x: %s", n->name, off, strerror(-ret));
		n->offloads_dirty = false;
	}
	net_tx_process(n);
	net_rx_process(n);
}

static void net_on_tap(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct virtio_net *n = opaque;

	(void)loop;
	(void)fd;
	pthread_mutex_lock(&n->vdev.lock);
	if (events & (EPOLLERR | EPOLLHUP))
		net_tap_lost(n, 0);
	else if (net_live(n))
		net_rx_process(n);
	else
		net_tap_poll(n, false);
	pthread_mutex_unlock(&n->vdev.lock);
}

static void net_on_wake(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct virtio_net *n = opaque;
	uint64_t v;

	(void)loop;
	(void)events;
	if (read(fd, &v, sizeof(v)) < 0)
		return;
	pthread_mutex_lock(&n->vdev.lock);
	net_service(n);
	pthread_mutex_unlock(&n->vdev.lock);
}

static void net_on_rate_timer(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct virtio_net *n = opaque;
	uint64_t v;

	(void)loop;
	(void)events;
	if (read(fd, &v, sizeof(v)) < 0)
		return;
	pthread_mutex_lock(&n->vdev.lock);
	n->rx_limited = n->tx_limited = false;
	n->rl_deadline_ns = 0;
	uint64_t now = time_now_ns();
	rl_throttle_release(&n->stats.rx_throttled, now);
	rl_throttle_release(&n->stats.tx_throttled, now);
	net_service(n);
	pthread_mutex_unlock(&n->vdev.lock);
}

/* ---- device ops --------------------------------------------------------- */

static uint64_t net_features(struct virtio_device *dev)
{
	struct virtio_net *n = to_net(dev);

	return net_device_features(n->tap_offloads, &n->cfg);
}

static void net_config_read(struct virtio_device *dev, uint32_t offset, void *data, uint32_t len)
{
	memcpy(data, (const uint8_t *)&to_net(dev)->config + offset, len);
}

/* On the vCPU thread that wrote DRIVER_OK: its seccomp filter has no
 * epoll_ctl or TUNSETOFFLOAD, so the loop thread does the rest. */
static int net_activate(struct virtio_device *dev)
{
	struct virtio_net *n = to_net(dev);

	n->offloads_dirty = true;
	n->rx_stalled = false;
	net_wake(n);
	return 0;
}

static void net_queue_notify(struct virtio_device *dev, unsigned q)
{
	struct virtio_net *n = to_net(dev);

	if (q == NET_TXQ) {
		net_tx_process(n);
	} else if (q == NET_RXQ) {
		/* New buffers: deliver what waits and poll the TAP again. A
		 * kick with nothing new is no new stall. */
		if (virtq_has_avail(&n->vdev.queues[NET_RXQ]))
			n->rx_stalled = false;
		net_rx_process(n);
	}
}

/* Any thread (a vCPU writing status 0): no epoll_ctl here; the TAP
 * callback stops polling by itself once it sees the device is not live. */
static void net_reset(struct virtio_device *dev)
{
	struct virtio_net *n = to_net(dev);
	struct itimerspec off = { 0 };

	n->pending_len = 0;
	n->rx_stalled = false;
	n->rx_limited = n->tx_limited = false;
	rl_throttle_release(&n->stats.rx_throttled, time_now_ns());
	rl_throttle_release(&n->stats.tx_throttled, time_now_ns());
	n->offloads_dirty = false;
	n->rl_deadline_ns = 0;
	if (n->rl_timerfd >= 0)
		timerfd_settime(n->rl_timerfd, 0, &off, NULL);
}

/* Snapshots: the MAC the guest knows (a restore onto another interface
 * config is refused) and both rate limiters' tokens; a frame read from the
 * TAP but not yet delivered is dropped, as a network may drop it. The
 * offloads are set on the (possibly new) TAP again by activate. */
#define NET_STATE_MAGIC 0x5445454e /* "NEET" */
#define NET_STATE_VERSION 2

struct net_state {
	uint32_t magic, version;
	uint8_t mac[6], pad[2];
	struct rate_limiter_state rx_rl, tx_rl;
};

static int net_save(struct virtio_device *dev, void *buf, size_t cap)
{
	struct virtio_net *n = to_net(dev);
	struct net_state st = { .magic = NET_STATE_MAGIC, .version = NET_STATE_VERSION };
	uint64_t now = time_now_ns();

	if (cap < sizeof(st))
		return -ENOSPC;
	memcpy(st.mac, n->config.mac, 6);
	rate_limiter_save(&n->rx_rl, now, &st.rx_rl);
	rate_limiter_save(&n->tx_rl, now, &st.tx_rl);
	memcpy(buf, &st, sizeof(st));
	return (int)sizeof(st);
}

static int net_restore(struct virtio_device *dev, const void *buf, size_t len)
{
	struct virtio_net *n = to_net(dev);
	struct net_state st;

	if (len != sizeof(st))
		return -EINVAL;
	memcpy(&st, buf, sizeof(st));
	if (st.magic != NET_STATE_MAGIC || st.version != NET_STATE_VERSION ||
	    memcmp(st.mac, n->config.mac, 6))
		return -EINVAL;
	/* The guest keeps what it negotiated: the TAP it is restored onto must
	 * offer it too (the offloads of another TAP may differ). */
	uint64_t offered = net_features(dev) | (1ULL << VIRTIO_F_VERSION_1);
	if (n->vdev.driver_features & ~offered) {
		log_error("%s: TAP '%s' lacks features the guest negotiated (%#llx)", n->name,
			  n->cfg.tap, (unsigned long long)(n->vdev.driver_features & ~offered));
		return -EINVAL;
	}
	uint64_t now = time_now_ns();
	rate_limiter_restore(&n->rx_rl, &st.rx_rl, now);
	rate_limiter_restore(&n->tx_rl, &st.tx_rl, now);
	return 0;
}

static const struct virtio_device_ops net_ops = {
	.save = net_save,
	.restore = net_restore,
	.device_id = VIRTIO_ID_NET,
	.nr_queues = 2,
	.queue_max_size = NET_QUEUE_SIZE,
	.features = net_features,
	.config_size = sizeof(struct virtio_net_config),
	.config_read = net_config_read,
	.activate = net_activate,
	.queue_notify = net_queue_notify,
	.reset = net_reset,
};

int virtio_net_create_fd(struct virtio_net **out, int fd, unsigned tap_offloads,
			 const struct net_config *cfg, struct event_loop *loop, const char *name,
			 char *err, size_t errlen)
{
	struct virtio_net *n = calloc(1, sizeof(*n));
	uint64_t now = time_now_ns();
	int ret;

	if (!n) {
		close(fd);
		return -ENOMEM;
	}
	n->cfg = *cfg;
	n->loop = loop;
	n->tap_fd = fd;
	n->tap_offloads = tap_offloads;
	n->wake_fd = n->rl_timerfd = -1;
	snprintf(n->name, sizeof(n->name), "%s", name);
	virtio_device_init(&n->vdev, &net_ops, n->name);

	if (rate_limiter_init(&n->rx_rl, &cfg->rx_bw, &cfg->rx_ops, now) ||
	    rate_limiter_init(&n->tx_rl, &cfg->tx_bw, &cfg->tx_ops, now)) {
		snprintf(err, errlen, "network interface '%s': a rate limiter needs a refill time",
			 cfg->id);
		ret = -EINVAL;
		goto err;
	}
	n->rxbuf = malloc(NET_RX_BUF);
	if (!n->rxbuf) {
		ret = -ENOMEM;
		goto err;
	}
	n->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	n->rl_timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (n->wake_fd < 0 || n->rl_timerfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "eventfd/timerfd: %s", strerror(errno));
		goto err;
	}
	/* The TAP is polled only while the guest has buffers (from its first
	 * RX kick on): until then the kernel's TAP queue holds frames. */
	ret = loop_add(loop, fd, 0, net_on_tap, n);
	if (!ret)
		ret = loop_add(loop, n->wake_fd, EPOLLIN, net_on_wake, n);
	if (!ret)
		ret = loop_add(loop, n->rl_timerfd, EPOLLIN, net_on_rate_timer, n);
	if (ret) {
		snprintf(err, errlen, "event loop: %s", strerror(-ret));
		goto err;
	}
	memcpy(n->config.mac, cfg->mac, 6);
	n->config.status = VIRTIO_NET_S_LINK_UP;
	n->config.max_virtqueue_pairs = 1;
	n->config.mtu = cfg->mtu;
	*out = n;
	return 0;
err:
	virtio_net_destroy(n);
	return ret;
}

int virtio_net_create(struct virtio_net **out, const struct net_config *cfg,
		      struct event_loop *loop, const char *name, char *err, size_t errlen)
{
	unsigned offloads = 0;
	char why[192];
	int fd = tap_open(cfg->tap, &offloads, why, sizeof(why));

	if (fd < 0) {
		snprintf(err, errlen, "network interface '%s': %s", cfg->id, why);
		return fd;
	}
	return virtio_net_create_fd(out, fd, offloads, cfg, loop, name, err, errlen);
}

struct virtio_device *virtio_net_device(struct virtio_net *n)
{
	return &n->vdev;
}

const struct net_stats *virtio_net_stats(const struct virtio_net *n)
{
	return &n->stats;
}

int virtio_net_set_rate_limits(struct virtio_net *n, const struct token_bucket_config *rx_bw,
			       const struct token_bucket_config *rx_ops,
			       const struct token_bucket_config *tx_bw,
			       const struct token_bucket_config *tx_ops)
{
	struct rate_limiter rx, tx;
	uint64_t now = time_now_ns();
	int ret = 0;

	pthread_mutex_lock(&n->vdev.lock);
	if (rx_bw && (ret = rate_limiter_init(&rx, rx_bw, rx_ops, now)) == 0) {
		n->rx_rl = rx;
		n->cfg.rx_bw = *rx_bw;
		n->cfg.rx_ops = *rx_ops;
	}
	if (!ret && tx_bw && (ret = rate_limiter_init(&tx, tx_bw, tx_ops, now)) == 0) {
		n->tx_rl = tx;
		n->cfg.tx_bw = *tx_bw;
		n->cfg.tx_ops = *tx_ops;
	}
	/* Whatever waited for the old limits may go now. */
	n->rx_limited = n->tx_limited = false;
	rl_throttle_release(&n->stats.rx_throttled, now);
	rl_throttle_release(&n->stats.tx_throttled, now);
	net_wake(n);
	pthread_mutex_unlock(&n->vdev.lock);
	return ret;
}

void virtio_net_destroy(struct virtio_net *n)
{
	if (!n)
		return;
	const struct net_stats *s = &n->stats;
	if (n->vdev.transport)
		log_info("%s: rx %llu frames %llu bytes, tx %llu frames %llu bytes, rx_dropped %llu, "
			 "rx_no_buffers %llu, tx_dropped %llu, tx_errors %llu",
			 n->name, (unsigned long long)s->rx_frames, (unsigned long long)s->rx_bytes,
			 (unsigned long long)s->tx_frames, (unsigned long long)s->tx_bytes,
			 (unsigned long long)s->rx_dropped, (unsigned long long)s->rx_no_buffers,
			 (unsigned long long)s->tx_dropped, (unsigned long long)s->tx_errors);
	int fds[] = { n->tap_fd, n->wake_fd, n->rl_timerfd };
	for (int i = 0; i < 3; i++) {
		if (fds[i] < 0)
			continue;
		if (n->loop && !(i == 0 && n->tap_gone))
			loop_remove(n->loop, fds[i]);
		close(fds[i]);
	}
	free(n->rxbuf);
	pthread_mutex_destroy(&n->vdev.lock);
	free(n);
}
