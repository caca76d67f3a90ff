/*
 * blk.h - the virtio-blk request protocol (virtio 1.2, 5.2) on top of
 * virtio.c.
 *
 * Requests live in "slots": slot i owns a fixed descriptor chain (three
 * descriptors 3i..3i+2, or with indirect descriptors descriptor i pointing
 * at its own 3-entry table), a header, a status byte and small payloads,
 * all in the device's memory. A chain is rebuilt per request with a few
 * stores; the benchmark builds them once and only changes the sector.
 */
#ifndef MOTE_GUEST_BLK_H
#define MOTE_GUEST_BLK_H

#include "virtio.h"

#define BLK_SECTOR_SIZE 512
#define BLK_ID_BYTES    20

/* Request types and status values. */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2
#define BLK_STATUS_PENDING  0xff       /* written before submission */

/* Config space offsets (struct virtio_blk_config). */
#define VIRTIO_BLK_CFG_CAPACITY        0x00
#define VIRTIO_BLK_CFG_SIZE_MAX        0x08
#define VIRTIO_BLK_CFG_SEG_MAX         0x0c
#define VIRTIO_BLK_CFG_BLK_SIZE        0x14
#define VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS 0x24
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG 0x28
#define VIRTIO_BLK_CFG_DISCARD_ALIGN   0x2c
#define VIRTIO_BLK_CFG_MAX_WZ_SECTORS  0x30
#define VIRTIO_BLK_CFG_MAX_WZ_SEG      0x34

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct blk_dwz {                   /* discard / write zeroes segment */
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

struct blk_slot {                  /* 64 bytes, device-visible */
	struct blk_req_hdr hdr;    /* device-readable */
	struct blk_dwz dwz;        /* device-readable payload */
	volatile uint8_t status;   /* device-writable */
	uint8_t pad[7];
	char id[24];               /* device-writable GET_ID payload */
};

#define BLK_MAX_SLOTS   64
#define BLK_ITAB_ENTRIES 4         /* per-slot indirect table */

struct blk_opts {
	int irq_mode;              /* blkmode=irq */
	int indirect;              /* blkindirect=1: accept INDIRECT_DESC */
	int event_idx;             /* blkevent=0 turns EVENT_IDX off */
	uint32_t qsize;            /* blkqsize=, 0: device maximum (<=256) */
};

struct blk_dev {
	struct virtio_dev *vdev;
	unsigned index;            /* drive index: order of discovery */
	uint64_t capacity;         /* in 512-byte sectors */
	uint32_t blk_size, seg_max;
	uint32_t max_discard_sectors, max_discard_seg, discard_align;
	uint32_t max_wz_sectors, max_wz_seg;
	int indirect;              /* chains go through indirect tables */
	unsigned nslots;
	struct blk_slot *slots;
	volatile struct virtq_desc *itab;
};

/* Initialises the device (features: VERSION_1, RO, BLK_SIZE, FLUSH,
 * SEG_MAX, DISCARD, WRITE_ZEROES, EVENT_IDX and INDIRECT_DESC as opts
 * say) and reads its configuration. Returns 0 or -errno. */
int blk_open(struct blk_dev *b, struct virtio_dev *d, unsigned index,
	     const struct blk_opts *o);

static inline int blk_has(const struct blk_dev *b, unsigned feature)
{
	return (b->vdev->features & VIRTIO_BIT(feature)) != 0;
}

/* Builds slot's chain: header (type, sector), optional data (len bytes
 * at buf; device-writable for IN and GET_ID), status. */
void blk_prep(struct blk_dev *b, unsigned slot, uint32_t type,
	      uint64_t sector, void *buf, uint32_t len);
/* DISCARD / WRITE_ZEROES with one segment. */
void blk_prep_dwz(struct blk_dev *b, unsigned slot, uint32_t type,
		  uint64_t sector, uint32_t nsectors);

static inline uint16_t blk_head(const struct blk_dev *b, unsigned slot)
{
	return (uint16_t)(b->indirect ? slot : slot * 3);
}

/* Queue a prepared slot (visible to the device at the next kick). */
static inline void blk_submit(struct blk_dev *b, unsigned slot)
{
	b->slots[slot].status = BLK_STATUS_PENDING;
	virtq_push(&b->vdev->vq, blk_head(b, slot));
}

static inline void blk_kick(struct blk_dev *b)
{
	virtq_kick(b->vdev);
}

/* Pop one completion: 1 with *slot set, 0 if none, -EIO if the device
 * returned an id that is no chain head of ours (*slot = the raw id). */
static inline int blk_complete(struct blk_dev *b, unsigned *slot)
{
	uint32_t id, len;
	unsigned s;

	if (!virtq_pop(b->vdev, &id, &len))
		return 0;
	s = b->indirect ? id : id / 3;
	if (s >= b->nslots || blk_head(b, s) != id) {
		*slot = id;
		return -EIO;
	}
	*slot = s;
	return 1;
}

/* One request on an otherwise idle queue: submit, kick, wait.
 * Returns the status byte or -ETIMEDOUT / -EIO (unexpected completion). */
int blk_sync(struct blk_dev *b, unsigned slot);

const char *blk_status_name(int status);

#endif /* MOTE_GUEST_BLK_H */
