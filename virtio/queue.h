/* Split virtqueue (virtio 1.2, 2.7), device side.
 *
 * Everything in the rings is written by a hostile guest: indices, heads,
 * descriptor addresses, lengths, flags, chain links and indirect tables
 * are validated here, and every buffer is translated through
 * guest_mem_gpa_to_hva(). A malformed chain makes virtq_pop() fail with a
 * reason; the caller marks its device NEEDS_RESET. */
#ifndef MOTE_VIRTIO_QUEUE_H
#define MOTE_VIRTIO_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/mem.h"

#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

#define VIRTQ_MAX_SIZE 1024
/* Longest chain a device accepts, direct or through an indirect table. */
#define VIRTQ_MAX_CHAIN 256

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* One guest buffer of a chain, already translated to a host address. */
struct virtq_buf {
	uint8_t *hva;
	uint32_t len;
	bool device_writable;
};

struct virtq_chain {
	uint16_t head;              /* goes back in the used ring */
	unsigned nr_bufs;
	unsigned nr_readable;       /* the first nr_readable bufs are device-readable */
	uint64_t readable_len;
	uint64_t writable_len;
	struct virtq_buf bufs[VIRTQ_MAX_CHAIN];
};

struct virtq {
	/* Set by the driver through the transport. */
	uint16_t size;
	uint16_t max_size;
	bool ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;

	/* Device-side state. */
	const struct guest_mem *mem;
	bool event_idx;
	bool indirect;
	struct virtq_desc *desc;    /* host views of the rings, checked at activation */
	volatile uint16_t *avail;   /* flags, idx, ring[size], used_event */
	volatile uint8_t *used;     /* flags, idx, ring[size]{id,len}, avail_event */
	uint16_t last_avail_idx;
	uint16_t used_idx;
	uint16_t signalled_used;
	bool signalled_used_valid;
};

/* Validates ring addresses/sizes and maps them. -EINVAL with a reason. */
int virtq_activate(struct virtq *q, const struct guest_mem *mem, bool event_idx, bool indirect,
		   const char **why);
void virtq_reset(struct virtq *q);

/* 0: a chain was taken; -ENOENT: queue empty; -EINVAL/-EFAULT: the guest
 * broke the queue (why says how). */
int virtq_pop(struct virtq *q, struct virtq_chain *chain, const char **why);
/* Puts the last popped chain back (e.g. rate limited: retry later). */
void virtq_unpop(struct virtq *q);
/* Returns a chain to the guest with `written` bytes written into it. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t written);
/* After pushes: does the guest want an interrupt now? (EVENT_IDX aware) */
bool virtq_should_signal(struct virtq *q);
/* Ask the guest to notify (or not) about new buffers. With EVENT_IDX this
 * publishes avail_event; returns true if buffers arrived meanwhile. */
bool virtq_enable_notify(struct virtq *q);
bool virtq_has_avail(struct virtq *q);

/* Copies from/to a chain's buffers, starting at byte `offset` of the
 * readable (or writable) part. Returns bytes copied. */
uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t offset, void *dst, uint64_t len);
uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t offset, const void *src,
			   uint64_t len);

#endif
