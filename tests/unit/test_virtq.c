/* Split virtqueue, device side: activation checks, chain walking over
 * hostile rings, used ring, notification suppression, chain copies.
 *
 * The test plays the driver: it lays out the descriptor table and both
 * rings in a fake guest RAM (an anonymous mapping behind
 * guest_mem_init_from_buffer) and writes them the way a guest would. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "virtio/queue.h"
#include "vmm/mem.h"

#define RAM_SIZE (2ULL << 20)

/* Room for a 1024-entry queue: desc 16 KiB, avail 2 KiB, used 8 KiB. */
#define DESC_GPA     0x1000ULL
#define AVAIL_GPA    0x5000ULL
#define USED_GPA     0x6000ULL
#define INDIRECT_GPA 0x10000ULL
#define INDIRECT2_GPA 0x14000ULL
#define DATA_GPA     0x20000ULL

#define QSIZE 16
#define QMAX  256

/* Offsets in the used ring (virtio 1.2, 2.7.8). */
#define USED_FLAGS 0
#define USED_IDX   2
#define USED_RING  4

struct drv {
	struct guest_mem mem;
	uint8_t *ram;
	struct virtq q;
	struct virtq_chain chain;
	uint16_t avail_idx;  /* the driver's copy */
	uint16_t next_desc;  /* next free descriptor for add_chain */
};

struct seg {
	uint64_t addr;
	uint32_t len;
	bool write;
};

static uint8_t *gpa(struct drv *d, uint64_t addr)
{
	return d->ram + addr;
}

static void put16(struct drv *d, uint64_t addr, uint16_t v)
{
	memcpy(gpa(d, addr), &v, sizeof(v));
}

static uint16_t get16(struct drv *d, uint64_t addr)
{
	uint16_t v;

	memcpy(&v, gpa(d, addr), sizeof(v));
	return v;
}

static uint32_t get32(struct drv *d, uint64_t addr)
{
	uint32_t v;

	memcpy(&v, gpa(d, addr), sizeof(v));
	return v;
}

static void desc_set(struct drv *d, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	struct virtq_desc v = { .addr = addr, .len = len, .flags = flags, .next = next };

	memcpy(gpa(d, table + 16ULL * i), &v, sizeof(v));
}

static void avail_set_idx(struct drv *d, uint16_t idx)
{
	put16(d, AVAIL_GPA + 2, idx);
}

static void avail_set_flags(struct drv *d, uint16_t flags)
{
	put16(d, AVAIL_GPA, flags);
}

static void avail_set_used_event(struct drv *d, uint16_t v)
{
	put16(d, AVAIL_GPA + 4 + 2ULL * d->q.size, v);
}

/* Makes descriptor `head` available and bumps the index. */
static void avail_publish(struct drv *d, uint16_t head)
{
	put16(d, AVAIL_GPA + 4 + 2ULL * (d->avail_idx % d->q.size), head);
	d->avail_idx++;
	avail_set_idx(d, d->avail_idx);
}

static uint16_t used_idx(struct drv *d)
{
	return get16(d, USED_GPA + USED_IDX);
}

static void used_elem(struct drv *d, unsigned slot, uint32_t *id, uint32_t *len)
{
	*id = get32(d, USED_GPA + USED_RING + 8ULL * slot);
	*len = get32(d, USED_GPA + USED_RING + 8ULL * slot + 4);
}

static uint16_t avail_event(struct drv *d)
{
	return get16(d, USED_GPA + USED_RING + 8ULL * d->q.size);
}

/* Links segs into a chain of fresh descriptors and publishes it. */
static uint16_t add_chain(struct drv *d, const struct seg *segs, unsigned n)
{
	uint16_t head = d->next_desc;

	for (unsigned i = 0; i < n; i++) {
		uint16_t me = (uint16_t)((head + i) % d->q.size);
		uint16_t next = (uint16_t)((head + i + 1) % d->q.size);
		uint16_t flags = (uint16_t)((segs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
					    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		desc_set(d, DESC_GPA, me, segs[i].addr, segs[i].len, flags, next);
	}
	d->next_desc = (uint16_t)((head + n) % d->q.size);
	avail_publish(d, head);
	return head;
}

/* One descriptor chain of a single buffer. */
static uint16_t add_one(struct drv *d, uint64_t addr, uint32_t len, bool write)
{
	const struct seg s = { addr, len, write };

	return add_chain(d, &s, 1);
}

static int activate_q(struct drv *d, uint16_t size, bool event_idx, bool indirect)
{
	const char *why = NULL;

	d->q.max_size = QMAX > size ? QMAX : size;
	d->q.size = size;
	d->q.desc_gpa = DESC_GPA;
	d->q.avail_gpa = AVAIL_GPA;
	d->q.used_gpa = USED_GPA;
	d->q.ready = true;
	d->avail_idx = 0;
	d->next_desc = 0;
	/* A driver starts from zeroed rings. */
	memset(gpa(d, AVAIL_GPA), 0, 6 + 2ULL * size);
	memset(gpa(d, USED_GPA), 0, 6 + 8ULL * size);
	return virtq_activate(&d->q, &d->mem, event_idx, indirect, &why);
}

static int setup(void **state)
{
	struct drv *d = calloc(1, sizeof(*d));

	if (!d)
		return -1;
	d->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d->ram == MAP_FAILED || guest_mem_init_from_buffer(&d->mem, d->ram, RAM_SIZE)) {
		free(d);
		return -1;
	}
	if (activate_q(d, QSIZE, false, false)) {
		munmap(d->ram, RAM_SIZE);
		free(d);
		return -1;
	}
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	struct drv *d = *state;

	munmap(d->ram, RAM_SIZE);
	free(d);
	return 0;
}

/* The guest broke the queue: an error, a reason, and nothing taken. */
static void expect_rejected(struct drv *d, int err)
{
	const char *why = NULL;
	uint16_t before = d->q.last_avail_idx;

	assert_int_equal(virtq_pop(&d->q, &d->chain, &why), err);
	assert_non_null(why);
	assert_true(strlen(why) > 0);
	assert_int_equal(d->q.last_avail_idx, before);
}

static void expect_pop_ok(struct drv *d)
{
	const char *why = NULL;
	int ret = virtq_pop(&d->q, &d->chain, &why);

	if (ret)
		fail_msg("virtq_pop: %d (%s)", ret, why ? why : "no reason");
}

/* ---- activation ---------------------------------------------------------- */

static void expect_activate_fails(struct drv *d, int err)
{
	const char *why = NULL;

	assert_int_equal(virtq_activate(&d->q, &d->mem, false, false, &why), err);
	assert_non_null(why);
	/* no half-mapped rings */
	assert_null(d->q.desc);
	assert_null((void *)d->q.avail);
	assert_null((void *)d->q.used);
}

static void reset_q(struct drv *d, uint16_t size)
{
	memset(&d->q, 0, sizeof(d->q));
	d->q.max_size = QMAX;
	d->q.size = size;
	d->q.desc_gpa = DESC_GPA;
	d->q.avail_gpa = AVAIL_GPA;
	d->q.used_gpa = USED_GPA;
}

static void test_activate_rejects_bad_sizes(void **state)
{
	struct drv *d = *state;

	reset_q(d, 0);
	expect_activate_fails(d, -EINVAL);
	reset_q(d, 3);
	expect_activate_fails(d, -EINVAL);
	reset_q(d, 24);
	expect_activate_fails(d, -EINVAL);
	reset_q(d, 2 * QMAX);
	expect_activate_fails(d, -EINVAL);
	reset_q(d, 0x8000);
	expect_activate_fails(d, -EINVAL);
	reset_q(d, 0xffff);
	expect_activate_fails(d, -EINVAL);
	/* 1 and the maximum itself are fine. */
	const char *why = NULL;
	reset_q(d, 1);
	assert_int_equal(virtq_activate(&d->q, &d->mem, false, false, &why), 0);
	reset_q(d, QMAX);
	assert_int_equal(virtq_activate(&d->q, &d->mem, false, false, &why), 0);
}

static void test_activate_rejects_misaligned_rings(void **state)
{
	struct drv *d = *state;

	reset_q(d, QSIZE);
	d->q.desc_gpa = DESC_GPA + 8; /* needs 16 */
	expect_activate_fails(d, -EINVAL);
	reset_q(d, QSIZE);
	d->q.avail_gpa = AVAIL_GPA + 1; /* needs 2 */
	expect_activate_fails(d, -EINVAL);
	reset_q(d, QSIZE);
	d->q.used_gpa = USED_GPA + 2; /* needs 4 */
	expect_activate_fails(d, -EINVAL);
	/* The minimum alignments themselves are enough. */
	reset_q(d, QSIZE);
	d->q.desc_gpa = DESC_GPA + 16;
	d->q.avail_gpa = AVAIL_GPA + 2;
	d->q.used_gpa = USED_GPA + 4;
	const char *why = NULL;
	assert_int_equal(virtq_activate(&d->q, &d->mem, false, false, &why), 0);
}

static void test_activate_rejects_rings_outside_ram(void **state)
{
	struct drv *d = *state;

	reset_q(d, QSIZE);
	d->q.desc_gpa = RAM_SIZE; /* just past the end */
	expect_activate_fails(d, -EFAULT);
	reset_q(d, QSIZE);
	d->q.desc_gpa = RAM_SIZE - 16ULL * QSIZE + 16; /* crosses the end */
	expect_activate_fails(d, -EFAULT);
	reset_q(d, QSIZE);
	d->q.avail_gpa = RAM_SIZE - 4; /* 6 + 2 * size bytes do not fit */
	expect_activate_fails(d, -EFAULT);
	reset_q(d, QSIZE);
	d->q.used_gpa = RAM_SIZE - 8ULL * QSIZE; /* misses the avail_event */
	expect_activate_fails(d, -EFAULT);
	reset_q(d, QSIZE);
	d->q.used_gpa = 0xfffffffffffffff0ULL; /* addr + len wraps */
	expect_activate_fails(d, -EFAULT);
	reset_q(d, QSIZE);
	d->q.avail_gpa = 0xc0000000ULL; /* the MMIO hole */
	expect_activate_fails(d, -EFAULT);

	/* Rings that end exactly at the end of RAM are fine (the used ring
	 * is 6 + 8 * size bytes, so with 4-byte alignment it ends 2 short). */
	const char *why = NULL;
	reset_q(d, QSIZE);
	d->q.desc_gpa = RAM_SIZE - 16ULL * QSIZE;
	assert_int_equal(virtq_activate(&d->q, &d->mem, false, false, &why), 0);
	reset_q(d, QSIZE);
	d->q.avail_gpa = RAM_SIZE - (6 + 2 * QSIZE);
	assert_int_equal(virtq_activate(&d->q, &d->mem, false, false, &why), 0);
	reset_q(d, QSIZE);
	d->q.used_gpa = RAM_SIZE - (6 + 8 * QSIZE) - 2;
	assert_int_equal(virtq_activate(&d->q, &d->mem, false, false, &why), 0);
}

static void test_activate_resets_indices(void **state)
{
	struct drv *d = *state;

	add_one(d, DATA_GPA, 64, false);
	expect_pop_ok(d);
	virtq_push(&d->q, d->chain.head, 0);
	assert_int_equal(activate_q(d, QSIZE, true, true), 0);
	assert_int_equal(d->q.last_avail_idx, 0);
	assert_int_equal(d->q.used_idx, 0);
	assert_true(d->q.event_idx);
	assert_true(d->q.indirect);
	assert_ptr_equal(d->q.desc, gpa(d, DESC_GPA));
}

static void test_reset_unmaps_and_keeps_max(void **state)
{
	struct drv *d = *state;
	const char *why = NULL;

	add_one(d, DATA_GPA, 64, false);
	virtq_reset(&d->q);
	assert_null(d->q.desc);
	assert_null((void *)d->q.avail);
	assert_null((void *)d->q.used);
	assert_false(d->q.ready);
	assert_int_equal(d->q.max_size, QMAX);
	assert_int_equal(d->q.size, QMAX);
	/* A reset queue is simply empty. */
	assert_int_equal(virtq_pop(&d->q, &d->chain, &why), -ENOENT);
	assert_false(virtq_has_avail(&d->q));
	assert_false(virtq_enable_notify(&d->q));
}

/* ---- popping good chains ---------------------------------------------- */

static void test_pop_empty(void **state)
{
	struct drv *d = *state;
	const char *why = NULL;

	assert_false(virtq_has_avail(&d->q));
	assert_int_equal(virtq_pop(&d->q, &d->chain, &why), -ENOENT);
}

static void test_pop_readable_then_writable(void **state)
{
	struct drv *d = *state;
	const struct seg segs[] = {
		{ DATA_GPA, 16, false },
		{ DATA_GPA + 0x100, 512, false },
		{ DATA_GPA + 0x1000, 4096, true },
		{ DATA_GPA + 0x3000, 1, true },
	};

	d->next_desc = 5;
	uint16_t head = add_chain(d, segs, 4);
	assert_true(virtq_has_avail(&d->q));
	expect_pop_ok(d);
	assert_int_equal(d->chain.head, head);
	assert_int_equal(d->chain.head, 5);
	assert_int_equal(d->chain.nr_bufs, 4);
	assert_int_equal(d->chain.nr_readable, 2);
	assert_int_equal(d->chain.readable_len, 16 + 512);
	assert_int_equal(d->chain.writable_len, 4096 + 1);
	for (unsigned i = 0; i < 4; i++) {
		assert_ptr_equal(d->chain.bufs[i].hva, gpa(d, segs[i].addr));
		assert_int_equal(d->chain.bufs[i].len, segs[i].len);
		assert_int_equal(d->chain.bufs[i].device_writable, segs[i].write);
	}
	assert_int_equal(d->q.last_avail_idx, 1);
	assert_false(virtq_has_avail(&d->q));
}

static void test_pop_only_writable_or_only_readable(void **state)
{
	struct drv *d = *state;

	add_one(d, DATA_GPA, 100, true);
	add_one(d, DATA_GPA + 0x200, 200, false);
	expect_pop_ok(d);
	assert_int_equal(d->chain.nr_readable, 0);
	assert_int_equal(d->chain.readable_len, 0);
	assert_int_equal(d->chain.writable_len, 100);
	expect_pop_ok(d);
	assert_int_equal(d->chain.nr_readable, 1);
	assert_int_equal(d->chain.readable_len, 200);
	assert_int_equal(d->chain.writable_len, 0);
}

static void test_pop_in_order_several(void **state)
{
	struct drv *d = *state;
	uint16_t heads[5];

	for (unsigned i = 0; i < 5; i++)
		heads[i] = add_one(d, DATA_GPA + 0x100 * i, 10 + i, i & 1);
	for (unsigned i = 0; i < 5; i++) {
		expect_pop_ok(d);
		assert_int_equal(d->chain.head, heads[i]);
		assert_int_equal(d->chain.bufs[0].len, 10 + i);
	}
	const char *why = NULL;
	assert_int_equal(virtq_pop(&d->q, &d->chain, &why), -ENOENT);
}

static void test_pop_buffer_at_end_of_ram(void **state)
{
	struct drv *d = *state;

	add_one(d, RAM_SIZE - 512, 512, true);
	expect_pop_ok(d);
	assert_ptr_equal(d->chain.bufs[0].hva, d->ram + RAM_SIZE - 512);
	add_one(d, 0, 1, false); /* gpa 0 is RAM too */
	expect_pop_ok(d);
	assert_ptr_equal(d->chain.bufs[0].hva, d->ram);
}

static void test_pop_chain_as_long_as_the_queue(void **state)
{
	struct drv *d = *state;
	struct seg segs[QSIZE];

	for (unsigned i = 0; i < QSIZE; i++)
		segs[i] = (struct seg){ DATA_GPA + 16ULL * i, 16, i >= QSIZE / 2 };
	add_chain(d, segs, QSIZE);
	expect_pop_ok(d);
	assert_int_equal(d->chain.nr_bufs, QSIZE);
	assert_int_equal(d->chain.nr_readable, QSIZE / 2);
}

static void test_pop_avail_idx_wraps(void **state)
{
	struct drv *d = *state;

	d->q.last_avail_idx = 65534;
	d->q.used_idx = 65534;
	put16(d, USED_GPA + USED_IDX, 65534);
	d->avail_idx = 65534;
	for (unsigned i = 0; i < 4; i++)
		add_one(d, DATA_GPA + 0x100 * i, 8, false);
	assert_int_equal(get16(d, AVAIL_GPA + 2), 2);
	for (unsigned i = 0; i < 4; i++) {
		expect_pop_ok(d);
		assert_int_equal(d->chain.head, i);
		virtq_push(&d->q, d->chain.head, i);
	}
	assert_int_equal(d->q.last_avail_idx, 2);
	assert_int_equal(used_idx(d), 2);
	/* 65534 % 16 == 14: the elements went to slots 14, 15, 0, 1. */
	uint32_t id, len;
	used_elem(d, 14, &id, &len);
	assert_int_equal(id, 0);
	used_elem(d, 1, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, 3);
}

static void test_pop_full_queue_of_pending(void **state)
{
	struct drv *d = *state;

	/* Exactly `size` outstanding is legal. */
	for (unsigned i = 0; i < QSIZE; i++)
		add_one(d, DATA_GPA, 8, false);
	for (unsigned i = 0; i < QSIZE; i++)
		expect_pop_ok(d);
}

/* ---- indirect tables ---------------------------------------------------- */

static void test_pop_indirect(void **state)
{
	struct drv *d = *state;

	assert_int_equal(activate_q(d, QSIZE, false, true), 0);
	desc_set(d, INDIRECT_GPA, 0, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	desc_set(d, INDIRECT_GPA, 2, DATA_GPA + 0x100, 100, VIRTQ_DESC_F_NEXT, 1);
	desc_set(d, INDIRECT_GPA, 1, DATA_GPA + 0x1000, 1, VIRTQ_DESC_F_WRITE, 0);
	desc_set(d, DESC_GPA, 3, INDIRECT_GPA, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_publish(d, 3);
	expect_pop_ok(d);
	assert_int_equal(d->chain.head, 3);
	assert_int_equal(d->chain.nr_bufs, 3);
	assert_int_equal(d->chain.nr_readable, 2);
	assert_int_equal(d->chain.readable_len, 116);
	assert_int_equal(d->chain.writable_len, 1);
	assert_ptr_equal(d->chain.bufs[1].hva, gpa(d, DATA_GPA + 0x100));
	assert_ptr_equal(d->chain.bufs[2].hva, gpa(d, DATA_GPA + 0x1000));
}

static void test_pop_indirect_table_larger_than_queue(void **state)
{
	struct drv *d = *state;
	const unsigned n = VIRTQ_MAX_CHAIN;

	/* A 4-entry queue may carry a request of VIRTQ_MAX_CHAIN buffers. */
	assert_int_equal(activate_q(d, 4, false, true), 0);
	for (unsigned i = 0; i < n; i++)
		desc_set(d, INDIRECT_GPA, i, DATA_GPA + 8ULL * i, 8,
			 (uint16_t)(i + 1 < n ? VIRTQ_DESC_F_NEXT : VIRTQ_DESC_F_WRITE),
			 (uint16_t)(i + 1));
	desc_set(d, DESC_GPA, 0, INDIRECT_GPA, n * 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_publish(d, 0);
	expect_pop_ok(d);
	assert_int_equal(d->chain.nr_bufs, n);
	assert_int_equal(d->chain.writable_len, 8);
	assert_int_equal(d->chain.readable_len, 8ULL * (n - 1));
}

static void test_pop_indirect_unaligned_table(void **state)
{
	struct drv *d = *state;

	/* Nothing in the spec aligns an indirect table: copy, don't cast. */
	assert_int_equal(activate_q(d, QSIZE, false, true), 0);
	desc_set(d, INDIRECT_GPA + 3, 0, DATA_GPA, 32, VIRTQ_DESC_F_NEXT, 1);
	desc_set(d, INDIRECT_GPA + 3, 1, DATA_GPA + 0x40, 32, VIRTQ_DESC_F_WRITE, 0);
	desc_set(d, DESC_GPA, 0, INDIRECT_GPA + 3, 32, VIRTQ_DESC_F_INDIRECT, 0);
	avail_publish(d, 0);
	expect_pop_ok(d);
	assert_int_equal(d->chain.nr_bufs, 2);
}

/* ---- hostile rings ------------------------------------------------------- */

static void test_hostile_buffer_outside_ram(void **state)
{
	struct drv *d = *state;

	add_one(d, RAM_SIZE, 1, false);
	expect_rejected(d, -EFAULT);
}

static void test_hostile_buffer_in_mmio_hole(void **state)
{
	struct drv *d = *state;

	add_one(d, 0xc0001000ULL, 0x100, true);
	expect_rejected(d, -EFAULT);
}

static void test_hostile_buffer_addr_len_overflow(void **state)
{
	struct drv *d = *state;

	add_one(d, UINT64_MAX - 7, 16, true);
	expect_rejected(d, -EFAULT);
	desc_set(d, DESC_GPA, 0, UINT64_MAX, UINT32_MAX, 0, 0);
	expect_rejected(d, -EFAULT);
	desc_set(d, DESC_GPA, 0, 0x1000, UINT32_MAX, 0, 0);
	expect_rejected(d, -EFAULT);
}

static void test_hostile_buffer_crosses_end_of_ram(void **state)
{
	struct drv *d = *state;

	add_one(d, RAM_SIZE - 8, 16, true);
	expect_rejected(d, -EFAULT);
}

static void test_hostile_bad_buffer_late_in_chain(void **state)
{
	struct drv *d = *state;
	const struct seg segs[] = {
		{ DATA_GPA, 16, false },
		{ DATA_GPA + 0x100, 16, true },
		{ RAM_SIZE - 1, 2, true },
	};

	add_chain(d, segs, 3);
	expect_rejected(d, -EFAULT);
}

static void test_hostile_self_loop(void **state)
{
	struct drv *d = *state;

	desc_set(d, DESC_GPA, 2, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	avail_publish(d, 2);
	expect_rejected(d, -EINVAL);
}

static void test_hostile_two_cycle(void **state)
{
	struct drv *d = *state;

	desc_set(d, DESC_GPA, 0, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	desc_set(d, DESC_GPA, 1, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 0);
	avail_publish(d, 0);
	expect_rejected(d, -EINVAL);
}

static void test_hostile_cycle_through_whole_queue(void **state)
{
	struct drv *d = *state;

	/* 0 -> 1 -> ... -> 15 -> 0: one more link than the queue has. */
	for (unsigned i = 0; i < QSIZE; i++)
		desc_set(d, DESC_GPA, i, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, (uint16_t)((i + 1) % QSIZE));
	avail_publish(d, 7);
	expect_rejected(d, -EINVAL);
}

static void test_hostile_chain_longer_than_device_accepts(void **state)
{
	struct drv *d = *state;
	const unsigned n = VIRTQ_MAX_CHAIN + 1;

	/* A 512-entry queue can hold a loop-free chain of 257. */
	assert_int_equal(activate_q(d, 512, false, false), 0);
	for (unsigned i = 0; i < n; i++)
		desc_set(d, DESC_GPA, i, DATA_GPA, 8, (uint16_t)(i + 1 < n ? VIRTQ_DESC_F_NEXT : 0),
			 (uint16_t)(i + 1));
	avail_publish(d, 0);
	expect_rejected(d, -EINVAL);

	/* One shorter is fine. */
	desc_set(d, DESC_GPA, n - 2, DATA_GPA, 8, 0, 0);
	expect_pop_ok(d);
	assert_int_equal(d->chain.nr_bufs, VIRTQ_MAX_CHAIN);
}

static void test_hostile_direct_then_indirect_too_long(void **state)
{
	struct drv *d = *state;
	const unsigned n = VIRTQ_MAX_CHAIN;

	/* A direct buffer, then a full indirect table: one too many. */
	assert_int_equal(activate_q(d, QSIZE, false, true), 0);
	for (unsigned i = 0; i < n; i++)
		desc_set(d, INDIRECT_GPA, i, DATA_GPA, 8, (uint16_t)(i + 1 < n ? VIRTQ_DESC_F_NEXT : 0),
			 (uint16_t)(i + 1));
	desc_set(d, DESC_GPA, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	desc_set(d, DESC_GPA, 1, INDIRECT_GPA, n * 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_publish(d, 0);
	expect_rejected(d, -EINVAL);
}

/* Valid-looking descriptors just past the table, so that a missing index
 * check shows up as a chain that pops rather than some other error. */
static void plant_beyond_table(struct drv *d)
{
	desc_set(d, DESC_GPA, QSIZE, DATA_GPA, 16, 0, 0);
	desc_set(d, DESC_GPA, 0xffff, DATA_GPA, 16, 0, 0);
}

static void test_hostile_head_beyond_queue(void **state)
{
	struct drv *d = *state;

	plant_beyond_table(d);
	avail_publish(d, QSIZE);
	expect_rejected(d, -EINVAL);
	put16(d, AVAIL_GPA + 4, 0xffff);
	expect_rejected(d, -EINVAL);
}

static void test_hostile_next_beyond_queue(void **state)
{
	struct drv *d = *state;

	plant_beyond_table(d);
	desc_set(d, DESC_GPA, 0, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, QSIZE);
	avail_publish(d, 0);
	expect_rejected(d, -EINVAL);
	desc_set(d, DESC_GPA, 0, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 0xffff);
	expect_rejected(d, -EINVAL);
}

static void test_hostile_avail_idx_too_far_ahead(void **state)
{
	struct drv *d = *state;

	for (unsigned i = 0; i < QSIZE; i++)
		desc_set(d, DESC_GPA, i, DATA_GPA, 16, 0, 0);
	avail_set_idx(d, QSIZE + 1);
	expect_rejected(d, -EINVAL);
	avail_set_idx(d, 0xffff); /* "one behind" is 65535 ahead */
	expect_rejected(d, -EINVAL);
	/* Behind by one after a pop: also more than a queue ahead. */
	avail_set_idx(d, 1);
	expect_pop_ok(d);
	avail_set_idx(d, 0);
	expect_rejected(d, -EINVAL);
}

static void test_hostile_indirect_without_feature(void **state)
{
	struct drv *d = *state;

	desc_set(d, INDIRECT_GPA, 0, DATA_GPA, 16, 0, 0);
	desc_set(d, DESC_GPA, 0, INDIRECT_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_publish(d, 0);
	expect_rejected(d, -EINVAL);
}

static void test_hostile_nested_indirect(void **state)
{
	struct drv *d = *state;

	assert_int_equal(activate_q(d, QSIZE, false, true), 0);
	desc_set(d, INDIRECT2_GPA, 0, DATA_GPA, 16, 0, 0);
	desc_set(d, INDIRECT_GPA, 0, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	desc_set(d, INDIRECT_GPA, 1, INDIRECT2_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	desc_set(d, DESC_GPA, 0, INDIRECT_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0);
	avail_publish(d, 0);
	expect_rejected(d, -EINVAL);
	/* An indirect table pointing at itself is nested too. */
	desc_set(d, INDIRECT_GPA, 0, INDIRECT_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	desc_set(d, DESC_GPA, 0, INDIRECT_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	expect_rejected(d, -EINVAL);
}

static void test_hostile_indirect_with_next(void **state)
{
	struct drv *d = *state;

	assert_int_equal(activate_q(d, QSIZE, false, true), 0);
	desc_set(d, INDIRECT_GPA, 0, DATA_GPA, 16, 0, 0);
	desc_set(d, DESC_GPA, 0, INDIRECT_GPA, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	desc_set(d, DESC_GPA, 1, DATA_GPA, 16, VIRTQ_DESC_F_WRITE, 0);
	avail_publish(d, 0);
	expect_rejected(d, -EINVAL);
}

static void test_hostile_indirect_bad_lengths(void **state)
{
	struct drv *d = *state;
	const uint32_t bad[] = { 0, 8, 24, 17, (VIRTQ_MAX_CHAIN + 1) * 16, UINT32_MAX & ~15u };

	assert_int_equal(activate_q(d, QSIZE, false, true), 0);
	for (unsigned i = 0; i < VIRTQ_MAX_CHAIN + 1; i++)
		desc_set(d, INDIRECT_GPA, i, DATA_GPA, 16, 0, 0);
	avail_publish(d, 0);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		desc_set(d, DESC_GPA, 0, INDIRECT_GPA, bad[i], VIRTQ_DESC_F_INDIRECT, 0);
		expect_rejected(d, -EINVAL);
	}
}

static void test_hostile_indirect_table_outside_ram(void **state)
{
	struct drv *d = *state;

	assert_int_equal(activate_q(d, QSIZE, false, true), 0);
	desc_set(d, DESC_GPA, 0, RAM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	avail_publish(d, 0);
	expect_rejected(d, -EFAULT);
	desc_set(d, DESC_GPA, 0, UINT64_MAX - 15, 32, VIRTQ_DESC_F_INDIRECT, 0);
	expect_rejected(d, -EFAULT);
	desc_set(d, DESC_GPA, 0, 0xc0000000ULL, 32, VIRTQ_DESC_F_INDIRECT, 0);
	expect_rejected(d, -EFAULT);
}

static void test_hostile_indirect_loop_and_next_beyond_table(void **state)
{
	struct drv *d = *state;

	assert_int_equal(activate_q(d, QSIZE, false, true), 0);
	desc_set(d, INDIRECT_GPA, 0, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	desc_set(d, INDIRECT_GPA, 1, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 0);
	desc_set(d, DESC_GPA, 0, INDIRECT_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0);
	avail_publish(d, 0);
	expect_rejected(d, -EINVAL);
	/* next = 2 in a 2-entry table, though the queue has 16 */
	desc_set(d, INDIRECT_GPA, 2, DATA_GPA, 16, 0, 0);
	desc_set(d, INDIRECT_GPA, 1, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	expect_rejected(d, -EINVAL);
}

static void test_hostile_zero_length_descriptor(void **state)
{
	struct drv *d = *state;
	const struct seg segs[] = { { DATA_GPA, 16, false }, { DATA_GPA + 0x100, 0, true } };

	add_chain(d, segs, 2);
	expect_rejected(d, -EINVAL);
	/* in an indirect table too */
	assert_int_equal(activate_q(d, QSIZE, false, true), 0);
	desc_set(d, INDIRECT_GPA, 0, DATA_GPA, 0, 0, 0);
	desc_set(d, DESC_GPA, 0, INDIRECT_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_publish(d, 0);
	expect_rejected(d, -EINVAL);
}

static void test_hostile_readable_after_writable(void **state)
{
	struct drv *d = *state;
	const struct seg segs[] = {
		{ DATA_GPA, 16, false },
		{ DATA_GPA + 0x100, 16, true },
		{ DATA_GPA + 0x200, 16, false },
	};

	add_chain(d, segs, 3);
	expect_rejected(d, -EINVAL);
}

static void test_hostile_queue_recovers_after_rewrite(void **state)
{
	struct drv *d = *state;

	/* A rejected chain leaves the queue where it was: if the guest
	 * repairs the descriptor, the same slot pops. */
	desc_set(d, DESC_GPA, 0, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 0);
	avail_publish(d, 0);
	expect_rejected(d, -EINVAL);
	desc_set(d, DESC_GPA, 0, DATA_GPA, 16, 0, 0);
	expect_pop_ok(d);
	assert_int_equal(d->chain.head, 0);
}

/* ---- used ring and notifications ---------------------------------------- */

static void test_push_writes_element_and_idx(void **state)
{
	struct drv *d = *state;
	uint32_t id, len;

	virtq_push(&d->q, 5, 123);
	assert_int_equal(used_idx(d), 1);
	used_elem(d, 0, &id, &len);
	assert_int_equal(id, 5);
	assert_int_equal(len, 123);
	virtq_push(&d->q, QSIZE - 1, UINT32_MAX);
	assert_int_equal(used_idx(d), 2);
	used_elem(d, 1, &id, &len);
	assert_int_equal(id, QSIZE - 1);
	assert_int_equal(len, UINT32_MAX);
	/* The ring wraps at size; the index does not. */
	for (unsigned i = 2; i < QSIZE + 3; i++)
		virtq_push(&d->q, (uint16_t)i % QSIZE, i);
	assert_int_equal(used_idx(d), QSIZE + 3);
	used_elem(d, 2, &id, &len);
	assert_int_equal(len, QSIZE + 2);
	/* Nothing past the ring (avail_event) was written. */
	assert_int_equal(avail_event(d), 0);
}

static void test_should_signal_without_event_idx(void **state)
{
	struct drv *d = *state;

	virtq_push(&d->q, 0, 0);
	assert_true(virtq_should_signal(&d->q));
	avail_set_flags(d, VIRTQ_AVAIL_F_NO_INTERRUPT);
	virtq_push(&d->q, 1, 0);
	assert_false(virtq_should_signal(&d->q));
	/* used_event is ignored without the feature */
	avail_set_used_event(d, 1);
	assert_false(virtq_should_signal(&d->q));
	avail_set_flags(d, 0);
	assert_true(virtq_should_signal(&d->q));
}

static void test_should_signal_with_event_idx(void **state)
{
	struct drv *d = *state;

	assert_int_equal(activate_q(d, QSIZE, true, false), 0);
	/* The flag means nothing with EVENT_IDX; used_event decides. */
	avail_set_flags(d, VIRTQ_AVAIL_F_NO_INTERRUPT);
	avail_set_used_event(d, 0);
	virtq_push(&d->q, 0, 0); /* used idx 0 -> 1 passes event 0 */
	assert_true(virtq_should_signal(&d->q));
	virtq_push(&d->q, 1, 0); /* 1 -> 2: event 0 already passed */
	assert_false(virtq_should_signal(&d->q));
	/* Nothing new: no interrupt. */
	assert_false(virtq_should_signal(&d->q));

	avail_set_used_event(d, 4); /* "interrupt when idx goes past 4" */
	virtq_push(&d->q, 2, 0);
	virtq_push(&d->q, 3, 0); /* 2 -> 4 */
	assert_false(virtq_should_signal(&d->q));
	virtq_push(&d->q, 4, 0); /* 4 -> 5 */
	assert_true(virtq_should_signal(&d->q));

	/* Several pushes at once crossing the event: one interrupt. */
	avail_set_used_event(d, 6);
	for (unsigned i = 0; i < 4; i++)
		virtq_push(&d->q, (uint16_t)i, 0); /* 5 -> 9 */
	assert_true(virtq_should_signal(&d->q));
	assert_false(virtq_should_signal(&d->q));
}

static void test_should_signal_event_idx_wraps(void **state)
{
	struct drv *d = *state;

	assert_int_equal(activate_q(d, QSIZE, true, false), 0);
	d->q.used_idx = 65534;
	virtq_push(&d->q, 0, 0); /* 65535 */
	assert_true(virtq_should_signal(&d->q)); /* first: always */
	avail_set_used_event(d, 65535);
	virtq_push(&d->q, 0, 0); /* 65535 -> 0 passes 65535 */
	assert_true(virtq_should_signal(&d->q));
	avail_set_used_event(d, 0);
	virtq_push(&d->q, 0, 0); /* 0 -> 1 passes 0 */
	assert_true(virtq_should_signal(&d->q));
	avail_set_used_event(d, 100);
	virtq_push(&d->q, 0, 0);
	assert_false(virtq_should_signal(&d->q));
}

static void test_enable_notify_event_idx(void **state)
{
	struct drv *d = *state;

	assert_int_equal(activate_q(d, QSIZE, true, false), 0);
	add_one(d, DATA_GPA, 8, false);
	add_one(d, DATA_GPA, 8, false);
	expect_pop_ok(d);
	/* One left: enabling reports it. */
	assert_true(virtq_enable_notify(&d->q));
	assert_int_equal(avail_event(d), 1);
	expect_pop_ok(d);
	assert_false(virtq_enable_notify(&d->q));
	assert_int_equal(avail_event(d), 2);
	/* The used flags are left alone with EVENT_IDX. */
	assert_int_equal(get16(d, USED_GPA + USED_FLAGS), 0);
	assert_int_equal(used_idx(d), 0);
}

static void test_enable_notify_without_event_idx(void **state)
{
	struct drv *d = *state;

	put16(d, USED_GPA + USED_FLAGS, VIRTQ_USED_F_NO_NOTIFY);
	assert_false(virtq_enable_notify(&d->q));
	assert_int_equal(get16(d, USED_GPA + USED_FLAGS), 0);
	assert_int_equal(avail_event(d), 0);
	add_one(d, DATA_GPA, 8, false);
	assert_true(virtq_enable_notify(&d->q));
}

static void test_unpop_returns_the_chain(void **state)
{
	struct drv *d = *state;

	add_one(d, DATA_GPA, 8, false);
	uint16_t second = add_one(d, DATA_GPA + 8, 8, false);
	expect_pop_ok(d);
	expect_pop_ok(d);
	assert_int_equal(d->chain.head, second);
	assert_false(virtq_has_avail(&d->q));
	virtq_unpop(&d->q);
	assert_true(virtq_has_avail(&d->q));
	expect_pop_ok(d);
	assert_int_equal(d->chain.head, second);
	assert_ptr_equal(d->chain.bufs[0].hva, gpa(d, DATA_GPA + 8));
}

/* ---- copying through chains ------------------------------------------- */

static void fill(uint8_t *p, size_t n, uint8_t start)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(start + i);
}

static void test_chain_read_across_buffers(void **state)
{
	struct drv *d = *state;
	const struct seg segs[] = {
		{ DATA_GPA, 3, false },
		{ DATA_GPA + 0x100, 5, false },
		{ DATA_GPA + 0x200, 8, false },
		{ DATA_GPA + 0x300, 4, true },
	};
	uint8_t out[32], expect[16];

	fill(gpa(d, DATA_GPA), 3, 0);
	fill(gpa(d, DATA_GPA + 0x100), 5, 3);
	fill(gpa(d, DATA_GPA + 0x200), 8, 8);
	memset(gpa(d, DATA_GPA + 0x300), 0xee, 4);
	fill(expect, sizeof(expect), 0);
	add_chain(d, segs, 4);
	expect_pop_ok(d);

	memset(out, 0, sizeof(out));
	assert_int_equal(virtq_chain_read(&d->chain, 0, out, 16), 16);
	assert_memory_equal(out, expect, 16);
	memset(out, 0, sizeof(out));
	assert_int_equal(virtq_chain_read(&d->chain, 2, out, 10), 10);
	assert_memory_equal(out, expect + 2, 10);
	/* Offset at a buffer boundary. */
	assert_int_equal(virtq_chain_read(&d->chain, 8, out, 3), 3);
	assert_memory_equal(out, expect + 8, 3);
	/* Short: only the readable part counts, never the writable buffer. */
	memset(out, 0, sizeof(out));
	assert_int_equal(virtq_chain_read(&d->chain, 10, out, sizeof(out)), 6);
	assert_memory_equal(out, expect + 10, 6);
	assert_int_equal(out[6], 0);
	assert_int_equal(virtq_chain_read(&d->chain, 16, out, 1), 0);
	assert_int_equal(virtq_chain_read(&d->chain, UINT64_MAX, out, 1), 0);
	assert_int_equal(virtq_chain_read(&d->chain, 0, out, 0), 0);
}

static void test_chain_write_across_buffers(void **state)
{
	struct drv *d = *state;
	const struct seg segs[] = {
		{ DATA_GPA, 4, false },
		{ DATA_GPA + 0x100, 3, true },
		{ DATA_GPA + 0x200, 2, true },
		{ DATA_GPA + 0x300, 6, true },
	};
	uint8_t src[16];

	memset(gpa(d, DATA_GPA), 0xaa, 0x400);
	fill(src, sizeof(src), 100);
	add_chain(d, segs, 4);
	expect_pop_ok(d);

	assert_int_equal(virtq_chain_write(&d->chain, 2, src, 5), 5);
	/* bytes 2..6 of the writable part: 1 in buf1, 2 in buf2, 2 in buf3 */
	assert_int_equal(gpa(d, DATA_GPA + 0x100)[1], 0xaa);
	assert_int_equal(gpa(d, DATA_GPA + 0x100)[2], 100);
	assert_int_equal(gpa(d, DATA_GPA + 0x200)[0], 101);
	assert_int_equal(gpa(d, DATA_GPA + 0x200)[1], 102);
	assert_int_equal(gpa(d, DATA_GPA + 0x300)[0], 103);
	assert_int_equal(gpa(d, DATA_GPA + 0x300)[1], 104);
	assert_int_equal(gpa(d, DATA_GPA + 0x300)[2], 0xaa);
	/* The readable buffer and the bytes around buffers are untouched. */
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(gpa(d, DATA_GPA)[i], 0xaa);
	assert_int_equal(gpa(d, DATA_GPA + 0x103)[0], 0xaa);
	assert_int_equal(gpa(d, DATA_GPA + 0x202)[0], 0xaa);
	assert_int_equal(gpa(d, DATA_GPA + 0x306)[0], 0xaa);

	/* Too much: fills to the end and says how much fit. */
	assert_int_equal(virtq_chain_write(&d->chain, 8, src, sizeof(src)), 3);
	assert_int_equal(gpa(d, DATA_GPA + 0x300)[5], 102);
	assert_int_equal(gpa(d, DATA_GPA + 0x306)[0], 0xaa);
	assert_int_equal(virtq_chain_write(&d->chain, 11, src, 1), 0);
	assert_int_equal(virtq_chain_write(&d->chain, 0, src, 11), 11);
	assert_int_equal(gpa(d, DATA_GPA + 0x100)[0], 100);
	assert_int_equal(gpa(d, DATA_GPA + 0x300)[5], 110);
}

static void test_chain_write_without_writable_part(void **state)
{
	struct drv *d = *state;
	uint8_t src[4] = { 1, 2, 3, 4 };

	memset(gpa(d, DATA_GPA), 0xaa, 16);
	add_one(d, DATA_GPA, 16, false);
	expect_pop_ok(d);
	assert_int_equal(virtq_chain_write(&d->chain, 0, src, sizeof(src)), 0);
	assert_int_equal(gpa(d, DATA_GPA)[0], 0xaa);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_activate_rejects_bad_sizes),
		T(test_activate_rejects_misaligned_rings),
		T(test_activate_rejects_rings_outside_ram),
		T(test_activate_resets_indices),
		T(test_reset_unmaps_and_keeps_max),
		T(test_pop_empty),
		T(test_pop_readable_then_writable),
		T(test_pop_only_writable_or_only_readable),
		T(test_pop_in_order_several),
		T(test_pop_buffer_at_end_of_ram),
		T(test_pop_chain_as_long_as_the_queue),
		T(test_pop_avail_idx_wraps),
		T(test_pop_full_queue_of_pending),
		T(test_pop_indirect),
		T(test_pop_indirect_table_larger_than_queue),
		T(test_pop_indirect_unaligned_table),
		T(test_hostile_buffer_outside_ram),
		T(test_hostile_buffer_in_mmio_hole),
		T(test_hostile_buffer_addr_len_overflow),
		T(test_hostile_buffer_crosses_end_of_ram),
		T(test_hostile_bad_buffer_late_in_chain),
		T(test_hostile_self_loop),
		T(test_hostile_two_cycle),
		T(test_hostile_cycle_through_whole_queue),
		T(test_hostile_chain_longer_than_device_accepts),
		T(test_hostile_direct_then_indirect_too_long),
		T(test_hostile_head_beyond_queue),
		T(test_hostile_next_beyond_queue),
		T(test_hostile_avail_idx_too_far_ahead),
		T(test_hostile_indirect_without_feature),
		T(test_hostile_nested_indirect),
		T(test_hostile_indirect_with_next),
		T(test_hostile_indirect_bad_lengths),
		T(test_hostile_indirect_table_outside_ram),
		T(test_hostile_indirect_loop_and_next_beyond_table),
		T(test_hostile_zero_length_descriptor),
		T(test_hostile_readable_after_writable),
		T(test_hostile_queue_recovers_after_rewrite),
		T(test_push_writes_element_and_idx),
		T(test_should_signal_without_event_idx),
		T(test_should_signal_with_event_idx),
		T(test_should_signal_event_idx_wraps),
		T(test_enable_notify_event_idx),
		T(test_enable_notify_without_event_idx),
		T(test_unpop_returns_the_chain),
		T(test_chain_read_across_buffers),
		T(test_chain_write_across_buffers),
		T(test_chain_write_without_writable_part),
	};

	return cmocka_run_group_tests_name("virtq", tests, NULL, NULL);
}
