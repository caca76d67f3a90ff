/* libFuzzer target: the split virtqueue against a hostile guest.
 *
 * The input is a queue set-up, a short script of device/guest actions and
 * the contents of a small guest RAM:
 *
 *   0      flags: 1 EVENT_IDX, 2 INDIRECT_DESC, 4 second RAM region,
 *                 8 max queue size 256 (else VIRTQ_MAX_SIZE)
 *   1..2   queue size (le16, as the driver wrote it, unchecked)
 *   3..14  desc, avail, used ring addresses (le32 each, guest-physical)
 *   15     number of 4-byte script steps that follow (0: a default run)
 *   ...    script steps {op, a, b, c}
 *   ...    RAM image: region 0 (gpa 0, 64 KiB) then region 1
 *
 * Region 1 sits right after region 0 in guest-physical space but in a
 * separate host allocation, so a buffer allowed to straddle the two reads
 * outside an allocation and ASan reports it. Each region is an exact-size
 * malloc for the same reason at its end. Every chain the queue hands out
 * is checked against the regions and touched end to end. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/queue.h"
#include "vmm/mem.h"

#define RAM0_GPA  0x0ULL
#define RAM0_SIZE 0x10000ULL
#define RAM1_GPA  (RAM0_GPA + RAM0_SIZE)
#define RAM1_SIZE 0x4000ULL
#define HDR_SIZE  16
#define STEP_SIZE 4
/* Bounds that keep one input fast: pops per default run, copies per chain. */
#define DEFAULT_POPS 64
#define COPY_MAX     4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	struct guest_mem mem;
	uint8_t *ram[GUEST_MEM_MAX_REGIONS];
	struct virtq q;
	struct virtq_chain chain;
	bool broken;          /* a pop failed: the device would stop here */
	bool can_unpop;       /* the last action was a successful pop */
	uint16_t owed[VIRTQ_MAX_SIZE]; /* popped, not yet pushed (FIFO) */
	unsigned owed_head, owed_nr;
	uint8_t scratch[COPY_MAX];
};

static struct run run;

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool inside_one_region(const struct guest_mem *mem, const uint8_t *hva, uint64_t len)
{
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct guest_mem_region *r = &mem->regions[i];
		if (hva >= r->hva && len <= r->size && (uint64_t)(hva - r->hva) <= r->size - len)
			return true;
	}
	return false;
}

/* What virtq_pop promises about a chain it returns. */
static void check_chain(struct run *r)
{
	const struct virtq_chain *c = &r->chain;
	uint64_t rd = 0, wr = 0;

	if (c->head >= r->q.size || c->nr_bufs == 0 || c->nr_bufs > VIRTQ_MAX_CHAIN ||
	    c->nr_readable > c->nr_bufs)
		__builtin_trap();
	for (unsigned i = 0; i < c->nr_bufs; i++) {
		const struct virtq_buf *b = &c->bufs[i];
		if (b->len == 0 || !inside_one_region(&r->mem, b->hva, b->len))
			__builtin_trap();
		if (b->device_writable != (i >= c->nr_readable))
			__builtin_trap();
		/* Touch both ends: ASan checks what the pointer check cannot. */
		volatile uint8_t first = b->hva[0], last = b->hva[b->len - 1];
		(void)first;
		(void)last;
		if (b->device_writable)
			wr += b->len;
		else
			rd += b->len;
	}
	if (rd != c->readable_len || wr != c->writable_len)
		__builtin_trap();
}

static void copy_through(struct run *r, uint64_t offset)
{
	uint64_t n = virtq_chain_read(&r->chain, offset, r->scratch, sizeof(r->scratch));
	uint64_t expect = offset < r->chain.readable_len ? r->chain.readable_len - offset : 0;

	if (n != (expect < COPY_MAX ? expect : COPY_MAX))
		__builtin_trap();
	n = virtq_chain_write(&r->chain, offset, r->scratch, sizeof(r->scratch));
	expect = offset < r->chain.writable_len ? r->chain.writable_len - offset : 0;
	if (n != (expect < COPY_MAX ? expect : COPY_MAX))
		__builtin_trap();
}

static void do_pop(struct run *r)
{
	const char *why = NULL;
	uint16_t before = r->q.last_avail_idx;

	r->can_unpop = false;
	if (r->broken)
		return;
	int ret = virtq_pop(&r->q, &r->chain, &why);
	if (ret == -ENOENT) {
		if (r->q.last_avail_idx != before)
			__builtin_trap();
		return;
	}
	if (ret) {
		/* A refusal names its reason and consumes nothing. */
		if (!why || !*why || r->q.last_avail_idx != before || (ret != -EINVAL && ret != -EFAULT))
			__builtin_trap();
		r->broken = true;
		return;
	}
	if (r->q.last_avail_idx != (uint16_t)(before + 1))
		__builtin_trap();
	check_chain(r);
	if (r->owed_nr == VIRTQ_MAX_SIZE) {
		/* More outstanding than any queue holds: hand it back. */
		virtq_unpop(&r->q);
		return;
	}
	r->owed[(r->owed_head + r->owed_nr) % VIRTQ_MAX_SIZE] = r->chain.head;
	r->owed_nr++;
	r->can_unpop = true;
}

static void do_push(struct run *r, uint32_t written)
{
	if (!r->owed_nr)
		return;
	uint16_t head = r->owed[r->owed_head];
	r->owed_head = (r->owed_head + 1) % VIRTQ_MAX_SIZE;
	r->owed_nr--;
	virtq_push(&r->q, head, written);
	r->can_unpop = false;
}

static void do_unpop(struct run *r)
{
	if (!r->can_unpop)
		return;
	virtq_unpop(&r->q);
	r->owed_nr--; /* the chain goes back: nothing owed for it */
	r->can_unpop = false;
}

/* The guest scribbles on its RAM between device actions. */
static void guest_write(struct run *r, uint8_t a, uint8_t b, uint8_t c)
{
	uint64_t off = ((uint64_t)a << 8 | b) % RAM0_SIZE;

	r->ram[0][off] = c;
}

static void run_step(struct run *r, const uint8_t *s)
{
	switch (s[0] % 10) {
	case 0:
		do_pop(r);
		break;
	case 1:
		do_push(r, le16(s + 1) | (uint32_t)s[3] << 16);
		break;
	case 2:
		do_unpop(r);
		break;
	case 3:
		guest_write(r, s[1], s[2], s[3]);
		break;
	case 4:
		(void)virtq_should_signal(&r->q);
		break;
	case 5:
		(void)virtq_enable_notify(&r->q);
		break;
	case 6:
		(void)virtq_has_avail(&r->q);
		break;
	case 7:
		if (r->can_unpop)
			copy_through(r, le16(s + 1) * (uint64_t)(s[3] + 1));
		break;
	case 8:
		/* The driver publishes: avail idx += n. */
		{
			volatile uint16_t *idx = r->q.avail + 1;
			*idx = (uint16_t)(*idx + s[1]);
		}
		break;
	default:
		/* The driver rewrites an avail ring slot. */
		r->q.avail[2 + s[1] % r->q.size] = le16(s + 2);
		break;
	}
}

static void run_default(struct run *r)
{
	for (unsigned i = 0; i < DEFAULT_POPS && !r->broken; i++) {
		uint16_t before = r->q.last_avail_idx;
		do_pop(r);
		if (r->q.last_avail_idx == before)
			break;
		copy_through(r, 0);
		do_push(r, (uint32_t)r->chain.writable_len);
		(void)virtq_should_signal(&r->q);
	}
	(void)virtq_enable_notify(&r->q);
	(void)virtq_should_signal(&r->q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run *r = &run;

	if (size < HDR_SIZE)
		return 0;
	const uint8_t flags = data[0];
	size_t nsteps = data[15];
	if (size < HDR_SIZE + nsteps * STEP_SIZE)
		nsteps = (size - HDR_SIZE) / STEP_SIZE;
	const uint8_t *steps = data + HDR_SIZE;
	const uint8_t *image = steps + nsteps * STEP_SIZE;
	size_t image_len = size - HDR_SIZE - nsteps * STEP_SIZE;

	memset(&r->mem, 0, sizeof(r->mem));
	r->ram[0] = calloc(1, RAM0_SIZE);
	r->ram[1] = (flags & 4) ? calloc(1, RAM1_SIZE) : NULL;
	if (!r->ram[0] || ((flags & 4) && !r->ram[1]))
		goto out;
	r->mem.base = r->ram[0];
	r->mem.fd = -1;
	r->mem.regions[0] = (struct guest_mem_region){ RAM0_GPA, RAM0_SIZE, r->ram[0] };
	r->mem.nr_regions = 1;
	r->mem.size = RAM0_SIZE;
	if (r->ram[1]) {
		r->mem.regions[1] = (struct guest_mem_region){ RAM1_GPA, RAM1_SIZE, r->ram[1] };
		r->mem.nr_regions = 2;
		r->mem.size += RAM1_SIZE;
	}
	size_t n0 = image_len < RAM0_SIZE ? image_len : RAM0_SIZE;
	memcpy(r->ram[0], image, n0);
	if (r->ram[1] && image_len > n0)
		memcpy(r->ram[1], image + n0, image_len - n0 < RAM1_SIZE ? image_len - n0 : RAM1_SIZE);

	memset(&r->q, 0, sizeof(r->q));
	r->q.max_size = (flags & 8) ? 256 : VIRTQ_MAX_SIZE;
	r->q.size = le16(data + 1);
	r->q.desc_gpa = le32(data + 3);
	r->q.avail_gpa = le32(data + 7);
	r->q.used_gpa = le32(data + 11);
	r->q.ready = true;
	r->broken = r->can_unpop = false;
	r->owed_head = r->owed_nr = 0;

	const char *why = NULL;
	int ret = virtq_activate(&r->q, &r->mem, flags & 1, flags & 2, &why);
	if (ret) {
		if (!why || (ret != -EINVAL && ret != -EFAULT) || r->q.desc || r->q.avail || r->q.used)
			__builtin_trap();
		goto out;
	}
	if (!r->q.desc || !r->q.avail || !r->q.used)
		__builtin_trap();
	if (nsteps == 0) {
		run_default(r);
	} else {
		for (size_t i = 0; i < nsteps; i++)
			run_step(r, steps + i * STEP_SIZE);
	}
	virtq_reset(&r->q);
out:
	free(r->ram[0]);
	free(r->ram[1]);
	r->ram[0] = r->ram[1] = NULL;
	return 0;
}
