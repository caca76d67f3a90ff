/*
 * net.c - virtio-net: negotiation, the two queues, RX buffers, TX slots.
 * See net.h. The hot paths touch no frame bytes.
 */
#include "net.h"

#define NET_Q_MEM 0x2000             /* desc 4K, avail @0x1000, used @0x1400 */

static int net_setup_queue(struct virtio_dev *d, struct net_q *q, uint16_t index)
{
	struct virtq *vq = &q->vq;
	uint32_t max, size;
	uint8_t *mem;

	virtio_write32(d, VIRTIO_MMIO_QUEUE_SEL, index);
	if (virtio_read32(d, VIRTIO_MMIO_QUEUE_READY))
		return -EIO;
	max = virtio_read32(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
	if (max == 0)
		return -ENODEV;
	size = max < VIRTQ_MAX_SIZE ? max : VIRTQ_MAX_SIZE;
	while (size & (size - 1))
		size &= size - 1;
	mem = dma_alloc(NET_Q_MEM, 4096);
	if (!mem)
		return -ENOMEM;
	memset(mem, 0, NET_Q_MEM);
	q->index = index;
	virtq_place(d, vq, mem, size);
	virtio_write32(d, VIRTIO_MMIO_QUEUE_READY, 1);
	return 0;
}

int net_open(struct net_dev *n, struct virtio_dev *vdevs, int nvdev, const struct net_opts *o)
{
	struct virtio_dev *d = NULL;
	uint64_t want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_NET_F_MAC) |
			VIRTIO_BIT(VIRTIO_NET_F_STATUS) | VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX);
	uint32_t status;
	int err;

	for (int i = 0; i < nvdev && !d; i++)
		if (vdevs[i].device_id == VIRTIO_ID_NET)
			d = &vdevs[i];
	if (!d) {
		serial_printf("net: no virtio-net device on the command line\n");
		return -ENODEV;
	}
	memset(n, 0, sizeof(*n));
	n->vdev = d;
	if (o->mrg)
		want |= VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF);
	/* The reflector passes headers through untouched, so whatever
	 * offload a received frame uses goes straight back out. */
	if (o->offloads)
		want |= VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |
			VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6) |
			VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6);
	if (virtio_reset(d))
		return -ETIMEDOUT;
	status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;
	virtio_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_write32(d, VIRTIO_MMIO_STATUS, status);
	virtio_write32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	d->offered = virtio_read32(d, VIRTIO_MMIO_DEVICE_FEATURES);
	virtio_write32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	d->offered |= (uint64_t)virtio_read32(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	d->features = want & d->offered;
	if (!(d->features & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
		serial_printf("net: device does not offer VERSION_1\n");
		return -ENODEV;
	}
	virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)d->features);
	virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(d->features >> 32));
	status |= VIRTIO_STATUS_FEATURES_OK;
	virtio_write32(d, VIRTIO_MMIO_STATUS, status);
	if (!(virtio_read32(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK)) {
		serial_printf("net: device refused features 0x%lx\n", (unsigned long)d->features);
		return -EIO;
	}
	if ((err = net_setup_queue(d, &n->rx, 0)) || (err = net_setup_queue(d, &n->tx, 1))) {
		serial_printf("net: queue set-up failed (%d)\n", err);
		return err;
	}
	n->mrg = (d->features & VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF)) != 0;
	for (int i = 0; i < 6; i++)
		n->mac[i] = virtio_config8(d, (uint32_t)i);

	n->buf_size = (o->buf_size + 63u) & ~63u;
	n->nbufs = o->nbufs < n->rx.vq.size ? o->nbufs : n->rx.vq.size;
	if (n->buf_size < NET_HDR_LEN + NET_ETH_HLEN || n->nbufs == 0)
		return -EINVAL;
	n->rx_mem = dma_alloc((size_t)n->nbufs * n->buf_size, 4096);
	if (!n->rx_mem)
		return -ENOMEM;
	for (uint32_t i = 0; i < n->nbufs; i++) {
		volatile struct virtq_desc *dsc = &n->rx.vq.desc[i];

		dsc->addr = (uint64_t)(uintptr_t)net_rx_buf(n, i);
		dsc->len = n->buf_size;
		dsc->flags = VIRTQ_DESC_F_WRITE;
		dsc->next = 0;
	}
	for (unsigned s = 0; s < NET_TX_SLOTS; s++)
		n->tx_free[s] = (uint16_t)(NET_TX_SLOTS - 1 - s);
	n->tx_nfree = NET_TX_SLOTS;

	d->irq_mode = 1;
	irq_init();
	if (irq_route(d->irq, d->vector, virtio_irq_handler, d))
		return -EINVAL;
	status |= VIRTIO_STATUS_DRIVER_OK;
	virtio_write32(d, VIRTIO_MMIO_STATUS, status);
	serial_printf("net: 0x%lx irq %u mac %x:%x:%x:%x:%x:%x features 0x%lx of 0x%lx, "
		      "queues %u/%u, %u RX buffers of %u bytes%s\n",
		      (unsigned long)d->base, d->irq, n->mac[0], n->mac[1], n->mac[2], n->mac[3],
		      n->mac[4], n->mac[5], (unsigned long)d->features, (unsigned long)d->offered,
		      n->rx.vq.size, n->tx.vq.size, n->nbufs, n->buf_size, n->mrg ? ", mrg" : "");
	return 0;
}

void net_rx_post(struct net_dev *n, uint32_t i)
{
	struct virtq *vq = &n->rx.vq;

	vq->avail->ring[vq->avail_shadow & (vq->size - 1)] = (uint16_t)i;
	vq->avail_shadow++;
}

void net_kick(struct net_dev *n, struct net_q *q)
{
	struct virtq *vq = &q->vq;
	uint16_t old = vq->avail_kicked, now = vq->avail_shadow;

	if (old == now)
		return;
	cpu_barrier();
	vq->avail->idx = now;
	vq->avail_kicked = now;
	cpu_mfence();
	if ((uint16_t)(now - *vq->avail_event - 1) < (uint16_t)(now - old)) {
		virtio_write32(n->vdev, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
		q->notifies++;
	}
}

int net_peek(const struct net_q *q, uint16_t ahead, uint32_t *id, uint32_t *len)
{
	const struct virtq *vq = &q->vq;
	uint16_t at = (uint16_t)(vq->used_last + ahead);
	volatile struct virtq_used_elem *e;

	if ((uint16_t)(vq->used->idx - vq->used_last) <= ahead)
		return 0;
	cpu_barrier();
	e = &vq->used->ring[at & (vq->size - 1)];
	*id = e->id;
	*len = e->len;
	return 1;
}

int net_tx_chain(struct net_dev *n, const uint64_t *addr, const uint32_t *len, unsigned nseg,
		 const uint16_t *rxbufs)
{
	struct virtq *vq = &n->tx.vq;
	uint16_t slot, first;

	if (!n->tx_nfree || nseg == 0 || nseg > NET_SEG_MAX)
		return -ENOMEM;
	slot = n->tx_free[--n->tx_nfree];
	first = (uint16_t)(slot * NET_SEG_MAX);
	for (unsigned i = 0; i < nseg; i++) {
		volatile struct virtq_desc *dsc = &vq->desc[first + i];

		dsc->addr = addr[i];
		dsc->len = len[i];
		dsc->flags = i + 1 < nseg ? VIRTQ_DESC_F_NEXT : 0;
		dsc->next = (uint16_t)(first + i + 1);
		if (rxbufs)
			n->tx_rxbuf[slot][i] = rxbufs[i];
	}
	n->tx_nseg[slot] = rxbufs ? (uint8_t)nseg : 0;
	vq->avail->ring[vq->avail_shadow & (vq->size - 1)] = first;
	vq->avail_shadow++;
	return slot;
}

int net_tx_reap(struct net_dev *n, int repost)
{
	uint32_t id, len;
	int done = 0;

	while (net_peek(&n->tx, 0, &id, &len)) {
		uint32_t slot = id / NET_SEG_MAX;

		if (id % NET_SEG_MAX || slot >= NET_TX_SLOTS)
			return -EIO;
		net_consume(&n->tx, 1);
		if (repost)
			for (unsigned i = 0; i < n->tx_nseg[slot]; i++)
				net_rx_post(n, n->tx_rxbuf[slot][i]);
		n->tx_free[n->tx_nfree++] = (uint16_t)slot;
		done++;
	}
	return done;
}

void net_wait(struct net_dev *n)
{
	*n->rx.vq.used_event = n->rx.vq.used_last;
	*n->tx.vq.used_event = n->tx.vq.used_last;
	cpu_mfence();
	n->waits++;
	if (n->rx.vq.used->idx != n->rx.vq.used_last || n->tx.vq.used->idx != n->tx.vq.used_last)
		return;
	cpu_sti_hlt();
	cpu_cli();
}
