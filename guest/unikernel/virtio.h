/*
 * virtio.h - virtio over MMIO (version 2 registers only), split
 * virtqueues, the virtio-blk protocol and interrupt routing.
 *
 * References: virtio 1.2, sections 2.7 (split virtqueues), 4.2 (MMIO
 * transport) and 5.2 (block device). Everything is little-endian, as is
 * x86, so fields are plain integers.
 */
#ifndef MOTE_GUEST_VIRTIO_H
#define MOTE_GUEST_VIRTIO_H

#include "guest.h"

/* MMIO register offsets (4.2.2). */
#define VIRTIO_MMIO_MAGIC_VALUE       0x000
#define VIRTIO_MMIO_VERSION           0x004
#define VIRTIO_MMIO_DEVICE_ID         0x008
#define VIRTIO_MMIO_VENDOR_ID         0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES   0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES   0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL         0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX     0x034
#define VIRTIO_MMIO_QUEUE_NUM         0x038
#define VIRTIO_MMIO_QUEUE_READY       0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY      0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS  0x060
#define VIRTIO_MMIO_INTERRUPT_ACK     0x064
#define VIRTIO_MMIO_STATUS            0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW    0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH   0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW  0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW  0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG            0x100

#define VIRTIO_MMIO_MAGIC 0x74726976u          /* "virt" */
#define VIRTIO_MMIO_INT_VRING  1u
#define VIRTIO_MMIO_INT_CONFIG 2u

/* Device status bits (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 1u
#define VIRTIO_STATUS_DRIVER      2u
#define VIRTIO_STATUS_DRIVER_OK   4u
#define VIRTIO_STATUS_FEATURES_OK 8u
#define VIRTIO_STATUS_NEEDS_RESET 0x40u
#define VIRTIO_STATUS_FAILED      0x80u

/* Device IDs (5). */
#define VIRTIO_ID_BLOCK 2

/* Feature bits. */
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX     29
#define VIRTIO_F_VERSION_1          32
#define VIRTIO_BLK_F_SIZE_MAX       1
#define VIRTIO_BLK_F_SEG_MAX        2
#define VIRTIO_BLK_F_RO             5
#define VIRTIO_BLK_F_BLK_SIZE       6
#define VIRTIO_BLK_F_FLUSH          9
#define VIRTIO_BLK_F_DISCARD        13
#define VIRTIO_BLK_F_WRITE_ZEROES   14
#define VIRTIO_BIT(n) (1ull << (n))

/* Split virtqueue layout (2.7). */
#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[];        /* [size], then used_event */
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct virtq_used {
	uint16_t flags;
	uint16_t idx;
	struct virtq_used_elem ring[];  /* [size], then avail_event (u16) */
};

#define VIRTQ_MAX_SIZE 256

struct virtq {
	volatile struct virtq_desc *desc;
	volatile struct virtq_avail *avail;
	volatile struct virtq_used *used;
	volatile uint16_t *used_event;   /* &avail->ring[size] */
	volatile uint16_t *avail_event;  /* (u16 *)&used->ring[size] */
	uint16_t size;
	uint16_t avail_shadow;   /* next avail->idx to publish */
	uint16_t avail_kicked;   /* avail->idx at the last kick check */
	uint16_t used_last;      /* next used->idx entry to consume */
};

/* Per device: one virtqueue (queue 0) and the memory behind it. */
#define VIRTIO_MAX_DEVICES 8

struct virtio_dev {
	uintptr_t base;          /* MMIO window */
	uint32_t window;         /* its size in bytes */
	uint32_t irq;            /* GSI from the command line */
	uint32_t device_id;
	uint32_t vendor_id;
	uint64_t offered;        /* device features */
	uint64_t features;       /* negotiated */
	int irq_mode;            /* completions by interrupt (else polled) */
	uint8_t vector;          /* IDT vector when irq_mode */
	uint8_t *mem;            /* VIRTIO_DEV_MEM bytes, 4 KiB aligned */
	struct virtq vq;
	uint32_t notifies;               /* QueueNotify writes by virtq_kick */
	uint32_t sleeps;                 /* waits that found nothing yet */
	volatile uint32_t interrupts;    /* handler runs */
	volatile uint32_t isr_seen;      /* OR of InterruptStatus values */
};

/* Memory per device: descriptor table, rings, then driver use. */
#define VIRTIO_DEV_MEM       0x4000
#define VIRTIO_DEV_MEM_DRIVER 0x2000   /* offset of the driver's part */

static inline uint32_t virtio_read32(const struct virtio_dev *d, uint32_t reg)
{
	return mmio_read32(d->base + reg);
}

static inline void virtio_write32(const struct virtio_dev *d, uint32_t reg,
				  uint32_t value)
{
	mmio_write32(d->base + reg, value);
}

/* virtio.c: a bump allocator over guest RAM above the image. */
void *dma_alloc(size_t size, size_t align);

/* virtio.c: discovery from virtio_mmio.device=<size>@<base>:<irq> tokens.
 * Fills devs[] with every slot whose magic and version (2) are right and
 * whose device ID is not 0; returns how many (at most max). */
int virtio_discover(struct virtio_dev *devs, int max);

/* Reset: write 0 to Status, wait (bounded) until it reads back 0. */
int virtio_reset(struct virtio_dev *d);

/* Full initialisation: reset, ACKNOWLEDGE, DRIVER, negotiate
 * (VERSION_1 | (want & offered)), FEATURES_OK, queue 0 with qsize entries
 * (0: the device maximum, capped at VIRTQ_MAX_SIZE), DRIVER_OK.
 * Allocates d->mem on first use. irq_mode routes the device's interrupt
 * (ioapic.c). Returns 0 or -errno (prints why). */
int virtio_init(struct virtio_dev *d, uint64_t want, uint32_t qsize,
		int irq_mode);

/* Device configuration space reads (generation-checked for 64 bits). */
uint8_t virtio_config8(const struct virtio_dev *d, uint32_t off);
uint32_t virtio_config32(const struct virtio_dev *d, uint32_t off);
uint64_t virtio_config64(const struct virtio_dev *d, uint32_t off);

/* Put a chain head in the avail ring (not yet visible to the device). */
static inline void virtq_push(struct virtq *vq, uint16_t head)
{
	vq->avail->ring[vq->avail_shadow & (vq->size - 1)] = head;
	vq->avail_shadow++;
}

/* Publish pushed heads and notify the device if it wants it. */
/* Lays out a split virtqueue of size entries in mem (descriptors at 0,
 * avail at 0x1000, used at 0x1400: mem holds 0x1400 + 8 * size + 6
 * bytes), resets the driver's indices and gives the device the size and
 * the three addresses for the queue selected in QUEUE_SEL (not READY). */
void virtq_place(struct virtio_dev *d, struct virtq *vq, uint8_t *mem, uint32_t size);
void virtq_kick(struct virtio_dev *d);

/* Pop one used element; returns 1 (with *id and *len) or 0 if none. */
static inline int virtq_pop(struct virtio_dev *d, uint32_t *id, uint32_t *len)
{
	struct virtq *vq = &d->vq;
	volatile struct virtq_used_elem *e;

	if (vq->used->idx == vq->used_last)
		return 0;
	cpu_barrier();   /* x86 keeps loads in order: idx, then the entry */
	e = &vq->used->ring[vq->used_last & (vq->size - 1)];
	*id = e->id;
	*len = e->len;
	vq->used_last++;
	return 1;
}

/* Wait until the used ring has an unconsumed entry: spin (pause) in poll
 * mode, sti;hlt in interrupt mode. Bounded by tsc_limit TSC ticks.
 * Returns 0 or -ETIMEDOUT. */
int virtq_wait(struct virtio_dev *d, uint64_t tsc_limit);

/* The interrupt handler body (InterruptStatus, InterruptACK). */
void virtio_irq_handler(void *arg);

/* Generous bounds for waits, in TSC ticks (TSC runs at >= ~1 GHz):
 * ~10-30 s for an I/O, ~0.3-1 s where nothing may come. */
#define VIRTIO_WAIT_TSC       30000000000ull
#define VIRTIO_WAIT_SHORT_TSC 1000000000ull

/* ioapic.c */
/* Enables the LAPIC, installs the interrupt gates and starts the LAPIC
 * timer (periodic, ~10 ms, wakes hlt so every wait stays bounded). */
void irq_init(void);
/* Routes GSI gsi (edge, active high, fixed, to this CPU) to vector,
 * whose handler is fn(arg). Returns 0 or -EINVAL. */
int irq_route(uint32_t gsi, uint8_t vector, void (*fn)(void *), void *arg);
void irq_mask(uint32_t gsi);
extern volatile uint32_t irq_timer_ticks;

/* Vectors: devices use IRQ_VECTOR_DEVICE + slot. */
#define IRQ_VECTOR_DEVICE   0x40
#define IRQ_VECTOR_TIMER    0x4e
#define IRQ_VECTOR_SPURIOUS 0x4f

#endif /* MOTE_GUEST_VIRTIO_H */
