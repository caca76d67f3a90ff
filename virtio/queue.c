#include "virtio/queue.h"

#include <errno.h>
#include <string.h>

/* Offsets inside the rings (virtio 1.2, 2.7.6 and 2.7.8). */
#define AVAIL_FLAGS 0
#define AVAIL_IDX   1
#define AVAIL_RING  2 /* in u16 units */
#define USED_IDX_OFF   2
#define USED_RING_OFF  4
#define USED_ELEM_SIZE 8

static uint64_t virtq_avail_bytes(uint16_t size) { return 6 + 2ULL * size; }
static uint64_t virtq_used_bytes(uint16_t size) { return 6 + (uint64_t)USED_ELEM_SIZE * size; }

int virtq_activate(struct virtq *q, const struct guest_mem *mem, bool event_idx, bool indirect,
		   const char **why)
{
	if (!q->size || (q->size & (q->size - 1)) || q->size > q->max_size) {
		*why = "queue size is zero, not a power of two, or above the maximum";
		return -EINVAL;
	}
	if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3)) {
		*why = "queue ring address misaligned";
		return -EINVAL;
	}
	q->desc = guest_mem_gpa_to_hva(mem, q->desc_gpa, 16ULL * q->size);
	q->avail = guest_mem_gpa_to_hva(mem, q->avail_gpa, virtq_avail_bytes(q->size));
	q->used = guest_mem_gpa_to_hva(mem, q->used_gpa, virtq_used_bytes(q->size));
	if (!q->desc || !q->avail || !q->used) {
		*why = "queue ring lies outside guest RAM";
		q->desc = NULL;
		q->avail = NULL;
		q->used = NULL;
		return -EFAULT;
	}
	q->mem = mem;
	q->event_idx = event_idx;
	q->indirect = indirect;
	q->last_avail_idx = 0;
	q->used_idx = 0;
	q->signalled_used = 0;
	q->signalled_used_valid = false;
	return 0;
}

void virtq_reset(struct virtq *q)
{
	uint16_t max = q->max_size;

	memset(q, 0, sizeof(*q));
	q->max_size = max;
	q->size = max;
}

static uint16_t virtq_avail_idx(const struct virtq *q)
{
	/* Acquire: ring entries written before idx must be seen after it. */
	return __atomic_load_n(&q->avail[AVAIL_IDX], __ATOMIC_ACQUIRE);
}

bool virtq_has_avail(struct virtq *q)
{
	return q->avail && virtq_avail_idx(q) != q->last_avail_idx;
}

static int virtq_bad(const char **why, const char *reason)
{
	*why = reason;
	return -EINVAL;
}

static int virtq_add_buf(struct virtq *q, struct virtq_chain *c, const struct virtq_desc *d,
			 const char **why)
{
	if (d->len == 0)
		return virtq_bad(why, "zero-length descriptor");
	uint8_t *hva = guest_mem_gpa_to_hva(q->mem, d->addr, d->len);
	if (!hva) {
		*why = "descriptor buffer lies outside guest RAM";
		return -EFAULT;
	}
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;
	/* The device may write it: a diff snapshot must carry the page. */
	if (writable)
		guest_mem_mark_dirty(q->mem, hva, d->len);
	if (!writable && c->writable_len)
		return virtq_bad(why, "device-readable descriptor after a device-writable one");
	if (c->nr_bufs == VIRTQ_MAX_CHAIN)
		return virtq_bad(why, "descriptor chain longer than the device accepts");
	c->bufs[c->nr_bufs++] = (struct virtq_buf){ hva, d->len, writable };
	if (writable) {
		c->writable_len += d->len;
	} else {
		c->readable_len += d->len;
		c->nr_readable++;
	}
	return 0;
}

int virtq_pop(struct virtq *q, struct virtq_chain *c, const char **why)
{
	if (!q->avail)
		return -ENOENT;
	uint16_t avail_idx = virtq_avail_idx(q);
	uint16_t pending = (uint16_t)(avail_idx - q->last_avail_idx);
	if (pending == 0)
		return -ENOENT;
	if (pending > q->size)
		return virtq_bad(why, "available index ran more than a queue ahead");

	uint16_t head = q->avail[AVAIL_RING + q->last_avail_idx % q->size];
	if (head >= q->size)
		return virtq_bad(why, "available ring names a descriptor beyond the queue");

	c->head = head;
	c->nr_bufs = c->nr_readable = 0;
	c->readable_len = c->writable_len = 0;

	const uint8_t *table = (const uint8_t *)q->desc;
	uint32_t table_size = q->size;
	uint32_t idx = head;
	uint32_t steps = 0;
	bool in_indirect = false;
	for (;;) {
		struct virtq_desc d;

		/* Each table has at most table_size entries: more steps than
		 * that means the chain loops. */
		if (steps++ >= table_size)
			return virtq_bad(why, "descriptor chain loops");
		/* One copy: the guest may rewrite the descriptor meanwhile. */
		memcpy(&d, table + 16ULL * idx, sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!q->indirect)
				return virtq_bad(why, "indirect descriptor without the feature");
			if (in_indirect)
				return virtq_bad(why, "nested indirect descriptor table");
			if (d.flags & VIRTQ_DESC_F_NEXT)
				return virtq_bad(why, "indirect descriptor with NEXT set");
			if (d.len == 0 || d.len % 16 || d.len / 16 > VIRTQ_MAX_CHAIN)
				return virtq_bad(why, "indirect table length invalid");
			table = guest_mem_gpa_to_hva(q->mem, d.addr, d.len);
			if (!table) {
				*why = "indirect table lies outside guest RAM";
				return -EFAULT;
			}
			table_size = d.len / 16;
			idx = 0;
			steps = 0;
			in_indirect = true;
			continue;
		}
		int ret = virtq_add_buf(q, c, &d, why);
		if (ret)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		idx = d.next;
		if (idx >= table_size)
			return virtq_bad(why, "descriptor links beyond its table");
	}
	q->last_avail_idx++;
	return 0;
}

void virtq_unpop(struct virtq *q)
{
	q->last_avail_idx--;
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
	volatile uint8_t *elem = q->used + USED_RING_OFF + (uint64_t)USED_ELEM_SIZE * (q->used_idx % q->size);
	uint32_t id = head;

	memcpy((void *)elem, &id, 4);
	memcpy((void *)(elem + 4), &written, 4);
	q->used_idx++;
	/* Release: the element must be visible before the index moves. */
	__atomic_store_n((uint16_t *)(q->used + USED_IDX_OFF), q->used_idx, __ATOMIC_RELEASE);
	guest_mem_mark_dirty(q->mem, q->used, virtq_used_bytes(q->size));
}

bool virtq_should_signal(struct virtq *q)
{
	/* Order our used-index store before reading the driver's flags. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!q->event_idx)
		return !(q->avail[AVAIL_FLAGS] & VIRTQ_AVAIL_F_NO_INTERRUPT);
	uint16_t used_event = q->avail[AVAIL_RING + q->size];
	uint16_t new_idx = q->used_idx;
	uint16_t old_idx = q->signalled_used;
	bool valid = q->signalled_used_valid;

	q->signalled_used = new_idx;
	q->signalled_used_valid = true;
	if (!valid)
		return true;
	/* vring_need_event(): did new_idx pass used_event since old_idx? */
	return (uint16_t)(new_idx - used_event - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtq_enable_notify(struct virtq *q)
{
	if (!q->used)
		return false;
	if (q->event_idx) {
		uint16_t v = q->last_avail_idx;
		memcpy((void *)(q->used + USED_RING_OFF + (uint64_t)USED_ELEM_SIZE * q->size), &v, 2);
	} else {
		uint16_t flags = 0;
		memcpy((void *)q->used, &flags, 2);
	}
	guest_mem_mark_dirty(q->mem, q->used, virtq_used_bytes(q->size));
	/* Publish before re-checking, or a kick could be missed. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return virtq_has_avail(q);
}

uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t offset, void *dst, uint64_t len)
{
	uint8_t *out = dst;
	uint64_t done = 0;

	for (unsigned i = 0; i < c->nr_readable && done < len; i++) {
		const struct virtq_buf *b = &c->bufs[i];
		if (offset >= b->len) {
			offset -= b->len;
			continue;
		}
		uint64_t n = b->len - offset;
		if (n > len - done)
			n = len - done;
		memcpy(out + done, b->hva + offset, n);
		done += n;
		offset = 0;
	}
	return done;
}

uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t offset, const void *src,
			   uint64_t len)
{
	const uint8_t *in = src;
	uint64_t done = 0;

	for (unsigned i = c->nr_readable; i < c->nr_bufs && done < len; i++) {
		const struct virtq_buf *b = &c->bufs[i];
		if (offset >= b->len) {
			offset -= b->len;
			continue;
		}
		uint64_t n = b->len - offset;
		if (n > len - done)
			n = len - done;
		memcpy(b->hva + offset, in + done, n);
		done += n;
		offset = 0;
	}
	return done;
}
