/*
 * blk.c - virtio-blk requests (virtio 1.2, 5.2): feature negotiation,
 * configuration, per-slot descriptor chains.
 *
 * A request is header (16 bytes, device-readable), data (optional) and a
 * status byte (device-writable). Building a chain is three descriptor
 * writes; nothing here touches the data buffers.
 */
#include "blk.h"

/* Driver part of the device memory (virtio.h: VIRTIO_DEV_MEM_DRIVER). */
#define BLK_SLOTS_OFF 0x0000
#define BLK_ITAB_OFF  0x1000

int blk_open(struct blk_dev *b, struct virtio_dev *d, unsigned index,
	     const struct blk_opts *o)
{
	uint64_t want = VIRTIO_BIT(VIRTIO_BLK_F_RO) |
			VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) |
			VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) |
			VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) |
			VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) |
			VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
	uint8_t *drv;
	unsigned max_slots;
	int err;

	if (o->event_idx)
		want |= VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX);
	if (o->indirect)
		want |= VIRTIO_BIT(VIRTIO_F_RING_INDIRECT_DESC);
	memset(b, 0, sizeof(*b));
	b->vdev = d;
	b->index = index;
	err = virtio_init(d, want, o->qsize, o->irq_mode);
	if (err)
		return err;

	b->capacity = virtio_config64(d, VIRTIO_BLK_CFG_CAPACITY);
	b->blk_size = BLK_SECTOR_SIZE;
	if (blk_has(b, VIRTIO_BLK_F_BLK_SIZE))
		b->blk_size = virtio_config32(d, VIRTIO_BLK_CFG_BLK_SIZE);
	if (blk_has(b, VIRTIO_BLK_F_SEG_MAX))
		b->seg_max = virtio_config32(d, VIRTIO_BLK_CFG_SEG_MAX);
	if (blk_has(b, VIRTIO_BLK_F_DISCARD)) {
		b->max_discard_sectors =
			virtio_config32(d, VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS);
		b->max_discard_seg =
			virtio_config32(d, VIRTIO_BLK_CFG_MAX_DISCARD_SEG);
		b->discard_align =
			virtio_config32(d, VIRTIO_BLK_CFG_DISCARD_ALIGN);
	}
	if (blk_has(b, VIRTIO_BLK_F_WRITE_ZEROES)) {
		b->max_wz_sectors =
			virtio_config32(d, VIRTIO_BLK_CFG_MAX_WZ_SECTORS);
		b->max_wz_seg = virtio_config32(d, VIRTIO_BLK_CFG_MAX_WZ_SEG);
	}

	b->indirect = blk_has(b, VIRTIO_F_RING_INDIRECT_DESC);
	max_slots = b->indirect ? d->vq.size : d->vq.size / 3u;
	b->nslots = max_slots < BLK_MAX_SLOTS ? max_slots : BLK_MAX_SLOTS;
	drv = d->mem + VIRTIO_DEV_MEM_DRIVER;
	b->slots = (struct blk_slot *)(drv + BLK_SLOTS_OFF);
	b->itab = (volatile struct virtq_desc *)(drv + BLK_ITAB_OFF);

	serial_printf("blk%u: 0x%lx irq %u: %lu sectors, features 0x%lx of 0x%lx, "
		      "queue %u, %u slots%s%s\n",
		      index, (unsigned long)d->base, d->irq,
		      (unsigned long)b->capacity, (unsigned long)d->features,
		      (unsigned long)d->offered, d->vq.size, b->nslots,
		      b->indirect ? ", indirect" : "",
		      d->irq_mode ? ", irq" : ", poll");
	return 0;
}

/* Write the chain header -> [data] -> status for slot. */
static void blk_chain(struct blk_dev *b, unsigned slot, uint64_t addr,
		      uint32_t len, uint16_t data_flags)
{
	struct blk_slot *s = &b->slots[slot];
	volatile struct virtq_desc *t;
	uint16_t first, n = 0;

	if (b->indirect) {
		t = b->itab + slot * BLK_ITAB_ENTRIES;
		first = 0;
	} else {
		t = b->vdev->vq.desc + slot * 3;
		first = (uint16_t)(slot * 3);
	}
	t[0].addr = (uint64_t)(uintptr_t)&s->hdr;
	t[0].len = sizeof(s->hdr);
	t[0].flags = VIRTQ_DESC_F_NEXT;
	t[0].next = (uint16_t)(first + 1);
	n = 1;
	if (len) {
		t[1].addr = addr;
		t[1].len = len;
		t[1].flags = (uint16_t)(data_flags | VIRTQ_DESC_F_NEXT);
		t[1].next = (uint16_t)(first + 2);
		n = 2;
	}
	t[n].addr = (uint64_t)(uintptr_t)&s->status;
	t[n].len = 1;
	t[n].flags = VIRTQ_DESC_F_WRITE;
	t[n].next = 0;
	if (b->indirect) {
		volatile struct virtq_desc *head = &b->vdev->vq.desc[slot];

		head->addr = (uint64_t)(uintptr_t)t;
		head->len = (uint32_t)(n + 1) * sizeof(struct virtq_desc);
		head->flags = VIRTQ_DESC_F_INDIRECT;
		head->next = 0;
	}
}

void blk_prep(struct blk_dev *b, unsigned slot, uint32_t type,
	      uint64_t sector, void *buf, uint32_t len)
{
	struct blk_slot *s = &b->slots[slot];
	uint16_t flags = (type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID)
				 ? VIRTQ_DESC_F_WRITE : 0;

	s->hdr.type = type;
	s->hdr.reserved = 0;
	s->hdr.sector = sector;
	blk_chain(b, slot, (uint64_t)(uintptr_t)buf, buf ? len : 0, flags);
}

void blk_prep_dwz(struct blk_dev *b, unsigned slot, uint32_t type,
		  uint64_t sector, uint32_t nsectors)
{
	struct blk_slot *s = &b->slots[slot];

	s->hdr.type = type;
	s->hdr.reserved = 0;
	s->hdr.sector = 0;
	s->dwz.sector = sector;
	s->dwz.num_sectors = nsectors;
	s->dwz.flags = 0;
	blk_chain(b, slot, (uint64_t)(uintptr_t)&s->dwz, sizeof(s->dwz), 0);
}

int blk_sync(struct blk_dev *b, unsigned slot)
{
	unsigned done;
	int r;

	blk_submit(b, slot);
	blk_kick(b);
	if (virtq_wait(b->vdev, VIRTIO_WAIT_TSC))
		return -ETIMEDOUT;
	r = blk_complete(b, &done);
	if (r <= 0 || done != slot)
		return -EIO;
	return b->slots[slot].status;
}

const char *blk_status_name(int status)
{
	switch (status) {
	case VIRTIO_BLK_S_OK:
		return "OK";
	case VIRTIO_BLK_S_IOERR:
		return "IOERR";
	case VIRTIO_BLK_S_UNSUPP:
		return "UNSUPP";
	case BLK_STATUS_PENDING:
		return "not written";
	case -ETIMEDOUT:
		return "timed out";
	case -EIO:
		return "bad completion";
	default:
		return "?";
	}
}
