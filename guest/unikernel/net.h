/*
 * net.h - a virtio-net driver (virtio 1.2, 5.1) for the test scenarios.
 *
 * Two queues (0 receive, 1 transmit), set up here rather than by
 * virtio_init(), which knows only queue 0. RX buffer i is descriptor i of
 * the RX queue, a fixed slice of one allocation, and is posted once and
 * re-posted after use: no per-frame descriptor writes on RX. TX slot s
 * owns descriptors s*NET_SEG_MAX.. of the TX queue, so a frame of several
 * RX buffers (MRG_RXBUF) goes back out as a chain over the same memory.
 */
#ifndef MOTE_GUEST_NET_H
#define MOTE_GUEST_NET_H

#include "virtio.h"

#define VIRTIO_ID_NET 1

#define VIRTIO_NET_F_CSUM       0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_HOST_TSO4  11
#define VIRTIO_NET_F_HOST_TSO6  12
#define VIRTIO_NET_F_MTU       3
#define VIRTIO_NET_F_MAC       5
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS    16

#define NET_HDR_LEN   12          /* virtio_net_hdr_v1 */
#define NET_ETH_HLEN  14
#define NET_SEG_MAX   8           /* descriptors per TX chain */
#define NET_TX_SLOTS  32          /* 256 descriptors / NET_SEG_MAX */
#define NET_RX_MAX    256

struct net_q {
	struct virtq vq;
	uint16_t index;
	uint32_t notifies;
};

struct net_dev {
	struct virtio_dev *vdev;
	struct net_q rx, tx;
	uint8_t mac[6];
	int mrg;                     /* MRG_RXBUF negotiated */
	uint32_t buf_size;           /* bytes per RX buffer (header included) */
	uint32_t nbufs;              /* RX buffers */
	uint8_t *rx_mem;             /* nbufs * buf_size */
	/* TX slots: free list, and what each in-flight slot carries. */
	uint16_t tx_free[NET_TX_SLOTS];
	unsigned tx_nfree;
	uint8_t tx_nseg[NET_TX_SLOTS];
	uint16_t tx_rxbuf[NET_TX_SLOTS][NET_SEG_MAX]; /* RX buffers to re-post */
	uint32_t waits;
};

struct net_opts {
	int mrg;                     /* netmrg=0|1 (1) */
	int offloads;                /* netoff=1: checksum and TSO both ways (0) */
	uint32_t buf_size;           /* netbuf=<bytes> (2048) */
	uint32_t nbufs;              /* netbufs=<n> (128) */
};

/* Finds the first virtio-net device, negotiates (VERSION_1, MAC, STATUS,
 * EVENT_IDX, MRG_RXBUF if asked), sets up both queues with interrupts and
 * allocates the buffers. Returns 0 or -errno. */
int net_open(struct net_dev *n, struct virtio_dev *vdevs, int nvdev, const struct net_opts *o);

static inline uint8_t *net_rx_buf(const struct net_dev *n, uint32_t i)
{
	return n->rx_mem + (uint64_t)i * n->buf_size;
}

/* Queue RX buffer i (visible at the next net_kick). */
void net_rx_post(struct net_dev *n, uint32_t i);
/* Publish pushed heads; notify the device if it asks for it. */
void net_kick(struct net_dev *n, struct net_q *q);

/* Next used element of q without consuming it (0 if none). */
int net_peek(const struct net_q *q, uint16_t ahead, uint32_t *id, uint32_t *len);
static inline void net_consume(struct net_q *q, uint16_t count)
{
	q->vq.used_last = (uint16_t)(q->vq.used_last + count);
}

/* Sends a chain of nseg (addr, len) segments from a free TX slot; the
 * first starts with the 12-byte header. Returns the slot or -ENOMEM when
 * every slot is in flight. rxbufs (may be NULL) are remembered with the
 * slot for net_tx_reap. */
int net_tx_chain(struct net_dev *n, const uint64_t *addr, const uint32_t *len, unsigned nseg,
		 const uint16_t *rxbufs);
/* Frees completed TX slots; with repost, their RX buffers go back to the
 * RX queue. Returns how many slots completed, or -EIO on a bad id. */
int net_tx_reap(struct net_dev *n, int repost);

/* Sleeps until an interrupt (a used buffer, or the ~10 ms LAPIC timer)
 * after asking the device to interrupt on the next used entry of both
 * queues. */
void net_wait(struct net_dev *n);

/* net_tests.c */
int net_test_run(const char *name, size_t len, int *code);

#endif /* MOTE_GUEST_NET_H */
