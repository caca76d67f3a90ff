/* Unit-test fixture: the test plays a virtio driver on a virtio-mmio
 * transport (virtio/mmio.c, run with vm_fd = -1 so a QueueNotify reaches
 * the device at once) over split virtqueues in a fake guest RAM. Register
 * writes and reads, the spec's initialisation sequence, and the ring
 * operations a driver does. Header-only; include after <cmocka.h>. */
#ifndef MOTE_TESTS_VIRTQ_FIXTURE_H
#define MOTE_TESTS_VIRTQ_FIXTURE_H

#include <stdint.h>
#include <string.h>

#include "virtio/mmio.h"
#include "virtio/queue.h"

/* virtio-mmio registers (virtio 1.2, 4.2.2), as a driver sees them. */
#define VQF_REG_DRIVER_FEATURES     0x020
#define VQF_REG_DRIVER_FEATURES_SEL 0x024
#define VQF_REG_QUEUE_SEL           0x030
#define VQF_REG_QUEUE_NUM           0x038
#define VQF_REG_QUEUE_READY         0x044
#define VQF_REG_QUEUE_NOTIFY        0x050
#define VQF_REG_STATUS              0x070
#define VQF_REG_QUEUE_DESC_LOW      0x080
#define VQF_REG_QUEUE_DRIVER_LOW    0x090
#define VQF_REG_QUEUE_DEVICE_LOW    0x0a0
#define VQF_REG_CONFIG              0x100

/* Where queue q's rings live in guest RAM (16 KiB apart), and their size. */
#define VQF_QSIZE 16
#define VQF_DESC_GPA(q)  (0x10000ULL + 0x4000ULL * (q))
#define VQF_AVAIL_GPA(q) (0x11000ULL + 0x4000ULL * (q))
#define VQF_USED_GPA(q)  (0x12000ULL + 0x4000ULL * (q))
#define VQF_MAX_QUEUES 4

/* The driver's side of each queue: the next avail index it publishes,
 * and how many used elements it has consumed. */
struct vqf_rings {
	uint16_t avail_idx[VQF_MAX_QUEUES];
	uint16_t used_seen[VQF_MAX_QUEUES];
};

static inline void vqf_wr(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
	virtio_mmio_write(t, off, (const uint8_t *)&v, 4);
}

static inline uint32_t vqf_rd(struct virtio_mmio *t, uint64_t off)
{
	uint32_t v;

	virtio_mmio_read(t, off, (uint8_t *)&v, 4);
	return v;
}

/* QueueNotify for q: the device runs it at once (vm_fd = -1). */
static inline void vqf_kick(struct virtio_mmio *t, unsigned q)
{
	vqf_wr(t, VQF_REG_QUEUE_NOTIFY, q);
}

/* Initialises the device as the spec orders it (ACKNOWLEDGE, DRIVER,
 * features, FEATURES_OK, nq queues of VQF_QSIZE at VQF_*_GPA(q),
 * DRIVER_OK); fails the test if the device refuses a step. */
static inline void vqf_bring_up(struct virtio_mmio *t, uint64_t features, unsigned nq)
{
	vqf_wr(t, VQF_REG_STATUS, 1);
	vqf_wr(t, VQF_REG_STATUS, 3);
	vqf_wr(t, VQF_REG_DRIVER_FEATURES_SEL, 0);
	vqf_wr(t, VQF_REG_DRIVER_FEATURES, (uint32_t)features);
	vqf_wr(t, VQF_REG_DRIVER_FEATURES_SEL, 1);
	vqf_wr(t, VQF_REG_DRIVER_FEATURES, (uint32_t)(features >> 32));
	vqf_wr(t, VQF_REG_STATUS, 0xb);
	assert_int_equal(vqf_rd(t, VQF_REG_STATUS), 0xb);
	for (unsigned q = 0; q < nq; q++) {
		vqf_wr(t, VQF_REG_QUEUE_SEL, q);
		vqf_wr(t, VQF_REG_QUEUE_NUM, VQF_QSIZE);
		vqf_wr(t, VQF_REG_QUEUE_DESC_LOW, (uint32_t)VQF_DESC_GPA(q));
		vqf_wr(t, VQF_REG_QUEUE_DRIVER_LOW, (uint32_t)VQF_AVAIL_GPA(q));
		vqf_wr(t, VQF_REG_QUEUE_DEVICE_LOW, (uint32_t)VQF_USED_GPA(q));
		vqf_wr(t, VQF_REG_QUEUE_READY, 1);
	}
	vqf_wr(t, VQF_REG_STATUS, 0xf);
	assert_int_equal(vqf_rd(t, VQF_REG_STATUS), 0xf);
}

/* Writes descriptor i of queue q. */
static inline void vqf_put_desc(uint8_t *ram, unsigned q, unsigned i, uint64_t addr,
				uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc *d = (struct virtq_desc *)(ram + VQF_DESC_GPA(q)) + i;

	*d = (struct virtq_desc){ addr, len, flags, next };
}

/* Publishes head in q's available ring (the index store last, with
 * release order, as a driver must). */
static inline void vqf_avail_add(uint8_t *ram, struct vqf_rings *r, unsigned q, uint16_t head)
{
	uint16_t *avail = (uint16_t *)(ram + VQF_AVAIL_GPA(q));

	avail[2 + r->avail_idx[q] % VQF_QSIZE] = head;
	r->avail_idx[q]++;
	__atomic_store_n(&avail[1], r->avail_idx[q], __ATOMIC_RELEASE);
}

/* The next used element of q: 1 with id/len, or 0 if the device has
 * returned nothing more. */
static inline int vqf_used_pop(uint8_t *ram, struct vqf_rings *r, unsigned q, uint32_t *id,
			       uint32_t *len)
{
	uint8_t *used = ram + VQF_USED_GPA(q);
	uint8_t *e;
	uint16_t idx;

	memcpy(&idx, used + 2, 2);
	if (idx == r->used_seen[q])
		return 0;
	e = used + 4 + 8 * (r->used_seen[q] % VQF_QSIZE);
	memcpy(id, e, 4);
	memcpy(len, e + 4, 4);
	r->used_seen[q]++;
	return 1;
}

#endif
