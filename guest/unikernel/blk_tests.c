/*
 * blk_tests.c - the virtio-blk scenarios: blk-write, blk-read,
 * blk-flush-wait, blk-ro, blk-discard, blk-corrupt, blk-bench.
 *
 * The host generates and checks bulk data; the guest only stamps (or
 * checks) the first 16 bytes of each 512-byte sector:
 *   bytes 0-7  = le64 (seed << 48) | (drive << 40) | sector
 *   bytes 8-15 = the same value XOR 0xffffffffffffffff
 * The other 496 bytes are whatever the buffer held (zero: fresh RAM).
 *
 * Command-line tokens: seed=<n> (1), blkmode=poll|irq (poll),
 * blkindirect=0|1 (0), blkevent=0|1 (1), blkqsize=<n> (device max, <=256),
 * qd=<n> requests in flight (4), bs=<bytes> per request (65536),
 * blkstats=1 (print notify/interrupt counts and TSC ticks per run);
 * blk-bench also op=seqread|seqwrite|randread, mb=<MiB> or ops=<n>.
 */
#include "blk.h"

#define BLK_DEFAULT_QD   4
#define BLK_DEFAULT_BS   65536u
#define BLK_MAX_BS       (4u << 20)
#define BLK_MAX_DRIVES   VIRTIO_MAX_DEVICES
#define STAMP_INVERT     0xffffffffffffffffull

_Static_assert(sizeof(struct blk_slot) == 64, "blk_slot layout");

struct blk_ctx {
	struct blk_opts opts;
	uint64_t seed;
	unsigned qd;               /* requests in flight */
	uint32_t bs;               /* bytes per request, multiple of 512 */
	uint8_t *bufs;             /* qd * bs bytes */
	struct virtio_dev vdevs[VIRTIO_MAX_DEVICES];
	struct blk_dev drives[BLK_MAX_DRIVES];
	unsigned ndrives;
	uint64_t tsc_start;        /* after set-up, for blkstats=1 */
};

static struct blk_ctx ctx;

/* What a streaming job does with each request's buffer. */
enum blk_check {
	CHECK_NONE,
	CHECK_STAMP,               /* IN: every sector carries its stamp */
	CHECK_ZERO,                /* IN: every byte is zero */
};

static const char *test_name = "";

#define blk_fail(...) test_fail(test_name, __VA_ARGS__)

/* blkstats=1: what the run cost in exits and time (TSC ticks). */
static void blk_stats(void)
{
	uint64_t ticks = cpu_rdtsc() - ctx.tsc_start;

	if (!cmdline_u64("blkstats=", 0))
		return;
	for (unsigned i = 0; i < ctx.ndrives; i++) {
		const struct virtio_dev *d = ctx.drives[i].vdev;

		serial_printf("blk: stats drive %u: notifies %u waits %u interrupts %u "
			      "isr 0x%x\n", i, d->notifies, d->sleeps,
			      d->interrupts, d->isr_seen);
	}
	serial_printf("blk: stats tsc %lu ticks since set-up\n",
		      (unsigned long)ticks);
}

static int blk_pass(void)
{
	blk_stats();
	serial_printf("TEST PASS %s\n", test_name);
	return GUEST_EXIT_PASS;
}

static int token_is(const char *key, const char *want)
{
	const char *val;
	size_t len;

	return cmdline_find(key, &val, &len) && len == lib_strlen(want) &&
	       memcmp(val, want, len) == 0;
}

/* Options from the command line; the defaults per scenario come in. */
static int blk_parse_opts(void)
{
	const char *val;
	size_t len;

	ctx.opts.irq_mode = token_is("blkmode=", "irq");
	if (cmdline_find("blkmode=", &val, &len) && !ctx.opts.irq_mode &&
	    !token_is("blkmode=", "poll"))
		return blk_fail("blkmode must be poll or irq");
	ctx.opts.indirect = cmdline_u64("blkindirect=", 0) != 0;
	ctx.opts.event_idx = cmdline_u64("blkevent=", 1) != 0;
	ctx.opts.qsize = (uint32_t)cmdline_u64("blkqsize=", 0);
	ctx.seed = cmdline_u64("seed=", 1) & 0xffff;
	ctx.qd = (unsigned)cmdline_u64("qd=", BLK_DEFAULT_QD);
	ctx.bs = (uint32_t)cmdline_u64("bs=", BLK_DEFAULT_BS);
	if (ctx.qd == 0 || ctx.qd > BLK_MAX_SLOTS)
		return blk_fail("qd must be 1-%u", BLK_MAX_SLOTS);
	if (ctx.bs == 0 || ctx.bs % BLK_SECTOR_SIZE || ctx.bs > BLK_MAX_BS)
		return blk_fail("bs must be a multiple of 512 up to %u", BLK_MAX_BS);
	return 0;
}

/* Discover and open every block device; need at least min_drives. */
static int blk_setup(unsigned min_drives, int alloc_bufs)
{
	int nvdev;

	if (blk_parse_opts())
		return GUEST_EXIT_FAIL;
	nvdev = virtio_discover(ctx.vdevs, VIRTIO_MAX_DEVICES);
	ctx.ndrives = 0;
	for (int i = 0; i < nvdev; i++) {
		struct blk_dev *b = &ctx.drives[ctx.ndrives];

		if (ctx.vdevs[i].device_id != VIRTIO_ID_BLOCK)
			continue;
		if (blk_open(b, &ctx.vdevs[i], ctx.ndrives, &ctx.opts))
			return blk_fail("drive %u at 0x%lx did not initialise",
					ctx.ndrives,
					(unsigned long)ctx.vdevs[i].base);
		if (ctx.qd > b->nslots)
			return blk_fail("qd %u > %u slots on drive %u", ctx.qd,
					b->nslots, ctx.ndrives);
		ctx.ndrives++;
	}
	if (ctx.ndrives < min_drives)
		return blk_fail("found %u block device(s), need %u "
				"(virtio_mmio.device= tokens: %d devices)",
				ctx.ndrives, min_drives, nvdev);
	if (alloc_bufs) {
		/* Fresh RAM is zero: no memset (bytes 16-511 of each sector
		 * stay as they are). */
		ctx.bufs = dma_alloc((size_t)ctx.qd * ctx.bs, 4096);
		if (!ctx.bufs)
			return blk_fail("no memory for %u x %u byte buffers",
					ctx.qd, ctx.bs);
	}
	ctx.tsc_start = cpu_rdtsc();
	return 0;
}

static inline uint64_t stamp_value(const struct blk_dev *b, uint64_t sector)
{
	return (ctx.seed << 48) | ((uint64_t)b->index << 40) | sector;
}

/*
 * The per-sector work, kept to a few instructions per sector because every
 * guest instruction is emulated on the development machines: four sectors
 * per iteration, ~4-5 instructions each (two stores or two compares).
 */
#define WORDS_PER_SECTOR (BLK_SECTOR_SIZE / 8)

static void stamp(const struct blk_dev *b, uint8_t *buf, uint64_t sector,
		  uint32_t n)
{
	uint64_t v = stamp_value(b, sector), nv = v ^ STAMP_INVERT;
	uint64_t *p = (uint64_t *)buf;

	for (; n >= 4; n -= 4, p += 4 * WORDS_PER_SECTOR, v += 4, nv -= 4) {
		p[0] = v;
		p[1] = nv;
		p[WORDS_PER_SECTOR] = v + 1;
		p[WORDS_PER_SECTOR + 1] = nv - 1;
		p[2 * WORDS_PER_SECTOR] = v + 2;
		p[2 * WORDS_PER_SECTOR + 1] = nv - 2;
		p[3 * WORDS_PER_SECTOR] = v + 3;
		p[3 * WORDS_PER_SECTOR + 1] = nv - 3;
	}
	for (; n; n--, p += WORDS_PER_SECTOR, v++, nv--) {
		p[0] = v;
		p[1] = nv;
	}
}

/* Returns 0, or 1 after printing the first bad sector. */
static int check_stamps(const struct blk_dev *b, const uint8_t *buf,
			uint64_t sector, uint32_t n)
{
	uint64_t v = stamp_value(b, sector), nv = v ^ STAMP_INVERT;
	const uint64_t *p = (const uint64_t *)buf;
	uint32_t i = 0;

	/* Fast pass: stops at the first group of four with a difference. */
	for (; i + 4 <= n; i += 4, p += 4 * WORDS_PER_SECTOR, v += 4, nv -= 4) {
		if (p[0] != v || p[1] != nv ||
		    p[WORDS_PER_SECTOR] != v + 1 ||
		    p[WORDS_PER_SECTOR + 1] != nv - 1 ||
		    p[2 * WORDS_PER_SECTOR] != v + 2 ||
		    p[2 * WORDS_PER_SECTOR + 1] != nv - 2 ||
		    p[3 * WORDS_PER_SECTOR] != v + 3 ||
		    p[3 * WORDS_PER_SECTOR + 1] != nv - 3)
			break;
	}
	for (; i < n; i++, p += WORDS_PER_SECTOR, v++, nv--) {
		if (p[0] != v || p[1] != nv) {
			serial_printf("blk: drive %u sector %lu: got 0x%lx 0x%lx, "
				      "want 0x%lx 0x%lx\n",
				      b->index, (unsigned long)(sector + i),
				      (unsigned long)p[0], (unsigned long)p[1],
				      (unsigned long)v, (unsigned long)nv);
			return 1;
		}
	}
	return 0;
}

static int check_zero(const struct blk_dev *b, const uint8_t *buf,
		      uint64_t sector, uint32_t n)
{
	const uint64_t *w = (const uint64_t *)buf;
	size_t words = (size_t)n * BLK_SECTOR_SIZE / 8;

	for (size_t i = 0; i < words; i++) {
		if (w[i]) {
			serial_printf("blk: drive %u sector %lu byte %lu: 0x%lx, want 0\n",
				      b->index,
				      (unsigned long)(sector + i * 8 / BLK_SECTOR_SIZE),
				      (unsigned long)(i * 8 % BLK_SECTOR_SIZE),
				      (unsigned long)w[i]);
			return 1;
		}
	}
	return 0;
}

/*
 * Stream [start, start+count) sectors through qd slots of bs bytes:
 * stamp before OUT, check after IN. A completed slot is refilled at once;
 * one kick per batch of completions. Returns 0 or prints and returns 1.
 */
static int blk_stream(struct blk_dev *b, uint32_t type, uint64_t start,
		      uint64_t count, enum blk_check check)
{
	uint64_t next = start, end = start + count;
	uint64_t slot_sector[BLK_MAX_SLOTS];
	uint32_t slot_n[BLK_MAX_SLOTS];
	uint32_t per_req = ctx.bs / BLK_SECTOR_SIZE;
	unsigned inflight = 0;

	for (unsigned s = 0; s < ctx.qd && next < end; s++) {
		uint8_t *buf = ctx.bufs + (size_t)s * ctx.bs;
		uint32_t n = end - next < per_req ? (uint32_t)(end - next) : per_req;

		if (type == VIRTIO_BLK_T_OUT)
			stamp(b, buf, next, n);
		blk_prep(b, s, type, next, buf, n * BLK_SECTOR_SIZE);
		blk_submit(b, s);
		slot_sector[s] = next;
		slot_n[s] = n;
		next += n;
		inflight++;
	}
	blk_kick(b);
	while (inflight) {
		unsigned s;
		int r;

		if (virtq_wait(b->vdev, VIRTIO_WAIT_TSC)) {
			serial_printf("blk: drive %u: timed out with %u requests in flight\n",
				      b->index, inflight);
			return 1;
		}
		while ((r = blk_complete(b, &s)) != 0) {
			uint8_t *buf;
			uint8_t status;

			if (r < 0) {
				serial_printf("blk: drive %u: used id %u is not a request\n",
					      b->index, s);
				return 1;
			}
			buf = ctx.bufs + (size_t)s * ctx.bs;
			status = b->slots[s].status;
			inflight--;
			if (status != VIRTIO_BLK_S_OK) {
				serial_printf("blk: drive %u: %s of %u sectors at %lu: status %u (%s)\n",
					      b->index,
					      type == VIRTIO_BLK_T_OUT ? "write" : "read",
					      slot_n[s], (unsigned long)slot_sector[s],
					      status, blk_status_name(status));
				return 1;
			}
			if (check == CHECK_STAMP &&
			    check_stamps(b, buf, slot_sector[s], slot_n[s]))
				return 1;
			if (check == CHECK_ZERO &&
			    check_zero(b, buf, slot_sector[s], slot_n[s]))
				return 1;
			if (next < end) {
				uint32_t n = end - next < per_req ? (uint32_t)(end - next)
								  : per_req;

				if (type == VIRTIO_BLK_T_OUT)
					stamp(b, buf, next, n);
				blk_prep(b, s, type, next, buf, n * BLK_SECTOR_SIZE);
				blk_submit(b, s);
				slot_sector[s] = next;
				slot_n[s] = n;
				next += n;
				inflight++;
			}
		}
		blk_kick(b);
	}
	return 0;
}

static int blk_flush(struct blk_dev *b)
{
	int st;

	if (!blk_has(b, VIRTIO_BLK_F_FLUSH)) {
		serial_printf("blk: drive %u does not offer FLUSH\n", b->index);
		return 1;
	}
	blk_prep(b, 0, VIRTIO_BLK_T_FLUSH, 0, NULL, 0);
	st = blk_sync(b, 0);
	if (st != VIRTIO_BLK_S_OK) {
		serial_printf("blk: drive %u: flush status %d (%s)\n", b->index, st,
			      blk_status_name(st));
		return 1;
	}
	return 0;
}

static int blk_test_write(void)
{
	uint64_t total = 0;

	if (blk_setup(1, 1))
		return GUEST_EXIT_FAIL;
	for (unsigned i = 0; i < ctx.ndrives; i++) {
		struct blk_dev *b = &ctx.drives[i];

		if (blk_stream(b, VIRTIO_BLK_T_OUT, 0, b->capacity, CHECK_NONE))
			return blk_fail("writing drive %u", i);
		total += b->capacity;
	}
	for (unsigned i = 0; i < ctx.ndrives; i++) {
		if (blk_flush(&ctx.drives[i]))
			return blk_fail("flushing drive %u", i);
	}
	serial_printf("blk: wrote %lu sectors on %u drives, flushed\n",
		      (unsigned long)total, ctx.ndrives);
	return blk_pass();
}

static int blk_test_read(void)
{
	uint64_t total = 0;

	if (blk_setup(1, 1))
		return GUEST_EXIT_FAIL;
	for (unsigned i = 0; i < ctx.ndrives; i++) {
		struct blk_dev *b = &ctx.drives[i];

		if (blk_stream(b, VIRTIO_BLK_T_IN, 0, b->capacity, CHECK_STAMP))
			return blk_fail("reading drive %u", i);
		total += b->capacity;
	}
	serial_printf("blk: read and checked %lu sectors on %u drives\n",
		      (unsigned long)total, ctx.ndrives);
	return blk_pass();
}

static int blk_test_flush_wait(void)
{
	struct blk_dev *b;
	uint64_t n;

	if (blk_setup(1, 1))
		return GUEST_EXIT_FAIL;
	b = &ctx.drives[0];
	n = b->capacity < 128 ? b->capacity : 128;
	if (blk_stream(b, VIRTIO_BLK_T_OUT, 0, n, CHECK_NONE))
		return blk_fail("writing drive 0");
	if (blk_flush(b))
		return blk_fail("flushing drive 0");
	serial_printf("blk: flushed, waiting\n");
	for (;;)
		cpu_pause();
	return GUEST_EXIT_FAIL;
}

static int blk_test_ro(void)
{
	struct blk_dev *b;
	uint8_t *buf;
	int st;

	if (blk_setup(1, 1))
		return GUEST_EXIT_FAIL;
	b = &ctx.drives[0];
	buf = ctx.bufs;
	if (!(b->vdev->offered & VIRTIO_BIT(VIRTIO_BLK_F_RO)))
		return blk_fail("drive 0 does not offer VIRTIO_BLK_F_RO");
	stamp(b, buf, 0, 1);
	blk_prep(b, 0, VIRTIO_BLK_T_OUT, 0, buf, BLK_SECTOR_SIZE);
	st = blk_sync(b, 0);
	serial_printf("blk: write to read-only drive: status %d (%s)\n", st,
		      blk_status_name(st));
	if (st != VIRTIO_BLK_S_IOERR)
		return blk_fail("write status %d, want IOERR (1)", st);
	blk_prep(b, 0, VIRTIO_BLK_T_IN, 0, buf, BLK_SECTOR_SIZE);
	st = blk_sync(b, 0);
	if (st != VIRTIO_BLK_S_OK)
		return blk_fail("read status %d (%s)", st, blk_status_name(st));
	serial_printf("blk: read from read-only drive: OK\n");
	return blk_pass();
}

/* Printable form of the GET_ID answer (NUL-terminated if shorter). */
static void print_id(const char *id)
{
	char out[BLK_ID_BYTES + 1];
	unsigned n = 0;

	while (n < BLK_ID_BYTES && id[n]) {
		out[n] = (id[n] >= 0x20 && id[n] < 0x7f) ? id[n] : '.';
		n++;
	}
	out[n] = 0;
	serial_printf("blk: id='%s'\n", out);
}

static int blk_test_discard(void)
{
	struct blk_dev *b;
	struct blk_slot *s;
	int st;

	if (blk_setup(1, 1))
		return GUEST_EXIT_FAIL;
	b = &ctx.drives[0];
	if (b->capacity < 256)
		return blk_fail("drive 0 has %lu sectors, need 256",
				(unsigned long)b->capacity);
	if (!blk_has(b, VIRTIO_BLK_F_DISCARD))
		return blk_fail("drive 0 does not offer DISCARD");
	if (!blk_has(b, VIRTIO_BLK_F_WRITE_ZEROES))
		return blk_fail("drive 0 does not offer WRITE_ZEROES");
	serial_printf("blk: discard max %u sectors %u seg align %u; "
		      "write-zeroes max %u sectors %u seg\n",
		      b->max_discard_sectors, b->max_discard_seg,
		      b->discard_align, b->max_wz_sectors, b->max_wz_seg);
	if (b->max_discard_sectors < 128 || b->max_discard_seg < 1 ||
	    b->max_wz_sectors < 128 || b->max_wz_seg < 1)
		return blk_fail("limits too small for 128-sector requests");

	if (blk_stream(b, VIRTIO_BLK_T_OUT, 0, 256, CHECK_NONE) ||
	    blk_stream(b, VIRTIO_BLK_T_IN, 0, 256, CHECK_STAMP))
		return blk_fail("write and read back of sectors 0-255");
	blk_prep_dwz(b, 0, VIRTIO_BLK_T_DISCARD, 0, 128);
	st = blk_sync(b, 0);
	if (st != VIRTIO_BLK_S_OK)
		return blk_fail("discard status %d (%s)", st, blk_status_name(st));
	blk_prep_dwz(b, 0, VIRTIO_BLK_T_WRITE_ZEROES, 128, 128);
	st = blk_sync(b, 0);
	if (st != VIRTIO_BLK_S_OK)
		return blk_fail("write-zeroes status %d (%s)", st,
				blk_status_name(st));
	if (blk_stream(b, VIRTIO_BLK_T_IN, 0, 256, CHECK_ZERO))
		return blk_fail("sectors 0-255 are not zero after discard/write-zeroes");
	serial_printf("blk: discarded 0-127, zeroed 128-255, read back zeros\n");

	s = &b->slots[0];
	memset(s->id, 0, sizeof(s->id));
	blk_prep(b, 0, VIRTIO_BLK_T_GET_ID, 0, s->id, BLK_ID_BYTES);
	st = blk_sync(b, 0);
	if (st != VIRTIO_BLK_S_OK)
		return blk_fail("get-id status %d (%s)", st, blk_status_name(st));
	print_id(s->id);
	return blk_pass();
}

/* Wait (bounded) until the device flags NEEDS_RESET or completes
 * something; Status is read every ~1000 pauses (each read is an exit). */
static uint32_t corrupt_observe(struct virtio_dev *d, uint64_t limit)
{
	uint64_t start = cpu_rdtsc();
	uint32_t st;

	for (;;) {
		st = virtio_read32(d, VIRTIO_MMIO_STATUS);
		if ((st & VIRTIO_STATUS_NEEDS_RESET) ||
		    d->vq.used->idx != d->vq.used_last)
			return st;
		if (cpu_rdtsc() - start > limit)
			return st;
		for (int i = 0; i < 1000; i++)
			cpu_pause();
	}
}

/* Publish avail idx as-is and notify, whatever the device's hints. */
static void corrupt_notify(struct virtio_dev *d, uint16_t avail_idx)
{
	cpu_barrier();
	d->vq.avail->idx = avail_idx;
	cpu_mfence();
	virtio_write32(d, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

/* Prints the device status and anything it completed (heads 0 and 3 are
 * slots 0 and 1: their request status byte is printed too). */
static void corrupt_report(struct blk_dev *b, const char *what, uint32_t st)
{
	struct virtio_dev *d = b->vdev;
	uint32_t id, len;

	serial_printf("blk-corrupt: %s: device status 0x%x, used idx %u", what,
		      st, d->vq.used->idx);
	while (virtq_pop(d, &id, &len)) {
		serial_printf(", completed id %u len %u", id, len);
		if (id == 0 || id == 3)
			serial_printf(" request status %u",
				      b->slots[id / 3].status);
	}
	serial_printf("\n");
}

/* corrupt=<digits> picks the steps (default 123). */
static int corrupt_step(char step)
{
	const char *val;
	size_t len;

	if (!cmdline_find("corrupt=", &val, &len))
		return 1;
	for (size_t i = 0; i < len; i++) {
		if (val[i] == step)
			return 1;
	}
	return 0;
}

/* One stamped write + read back of 128 sectors at sector 0. */
static int write_read_check(struct blk_dev *b)
{
	uint64_t n = b->capacity < 128 ? b->capacity : 128;

	return blk_stream(b, VIRTIO_BLK_T_OUT, 0, n, CHECK_NONE) ||
	       blk_stream(b, VIRTIO_BLK_T_IN, 0, n, CHECK_STAMP);
}

/* Step 1: a read whose data descriptor points outside guest memory
 * (descriptors 0-2, slot 0's header and status). */
static void corrupt_bad_address(struct blk_dev *b, uint16_t *idx)
{
	struct virtq *vq = &b->vdev->vq;
	volatile struct virtq_desc *desc = vq->desc;
	struct blk_slot *s = &b->slots[0];

	s->hdr.type = VIRTIO_BLK_T_IN;
	s->hdr.reserved = 0;
	s->hdr.sector = 0;
	s->status = BLK_STATUS_PENDING;
	desc[0].addr = (uint64_t)(uintptr_t)&s->hdr;
	desc[0].len = sizeof(s->hdr);
	desc[0].flags = VIRTQ_DESC_F_NEXT;
	desc[0].next = 1;
	desc[1].addr = 0xffffffffffff0000ull;
	desc[1].len = BLK_SECTOR_SIZE;
	desc[1].flags = VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE;
	desc[1].next = 2;
	desc[2].addr = (uint64_t)(uintptr_t)&s->status;
	desc[2].len = 1;
	desc[2].flags = VIRTQ_DESC_F_WRITE;
	desc[2].next = 0;
	vq->avail->ring[(*idx)++ & (vq->size - 1)] = 0;
	corrupt_notify(b->vdev, *idx);
	corrupt_report(b, "bad buffer address",
		       corrupt_observe(b->vdev, VIRTIO_WAIT_SHORT_TSC));
}

/* Step 2: a chain that loops, descriptor 3 -> 3 with NEXT. */
static void corrupt_loop(struct blk_dev *b, uint16_t *idx)
{
	struct virtq *vq = &b->vdev->vq;
	volatile struct virtq_desc *desc = vq->desc;
	struct blk_slot *s = &b->slots[1];

	s->hdr.type = VIRTIO_BLK_T_IN;
	s->hdr.reserved = 0;
	s->hdr.sector = 0;
	s->status = BLK_STATUS_PENDING;
	desc[3].addr = (uint64_t)(uintptr_t)&s->hdr;
	desc[3].len = sizeof(s->hdr);
	desc[3].flags = VIRTQ_DESC_F_NEXT;
	desc[3].next = 3;
	vq->avail->ring[(*idx)++ & (vq->size - 1)] = 3;
	corrupt_notify(b->vdev, *idx);
	corrupt_report(b, "looping chain",
		       corrupt_observe(b->vdev, VIRTIO_WAIT_SHORT_TSC));
}

/* Step 3: avail->idx 1000 ahead of what was made available. */
static void corrupt_avail_ahead(struct blk_dev *b, uint16_t idx)
{
	corrupt_notify(b->vdev, (uint16_t)(idx + 1000));
	corrupt_report(b, "avail idx +1000",
		       corrupt_observe(b->vdev, VIRTIO_WAIT_SHORT_TSC));
}

static int blk_test_corrupt(void)
{
	struct blk_dev *b;
	uint16_t idx = 0;
	uint32_t st;

	if (blk_setup(2, 1))
		return GUEST_EXIT_FAIL;
	b = &ctx.drives[0];
	if (b->vdev->vq.size < 8)
		return blk_fail("queue too small (%u)", b->vdev->vq.size);
	if (corrupt_step('1'))
		corrupt_bad_address(b, &idx);
	if (corrupt_step('2'))
		corrupt_loop(b, &idx);
	if (corrupt_step('3'))
		corrupt_avail_ahead(b, idx);

	st = virtio_read32(b->vdev, VIRTIO_MMIO_STATUS);
	serial_printf("blk-corrupt: drive 0 status 0x%x\n", st);
	if (!(st & VIRTIO_STATUS_NEEDS_RESET))
		return blk_fail("drive 0 status 0x%x lacks DEVICE_NEEDS_RESET", st);

	if (blk_open(b, b->vdev, 0, &ctx.opts))
		return blk_fail("drive 0 did not re-initialise after reset");
	if (write_read_check(b))
		return blk_fail("write+read on drive 0 after reset");
	serial_printf("blk-corrupt: drive 0 works after reset\n");
	if (write_read_check(&ctx.drives[1]))
		return blk_fail("write+read on drive 1");
	serial_printf("blk-corrupt: drive 1 unaffected\n");
	return blk_pass();
}

/* Benchmark load: no stamping or checking, chains built once. */
static int blk_test_bench(void)
{
	enum { SEQREAD, SEQWRITE, RANDREAD } op;
	const char *op_name;
	struct blk_dev *b;
	uint64_t total_ops, submitted = 0, completed = 0, errors = 0;
	uint64_t pos = 0, blocks, lcg;
	uint32_t nsect;
	uint8_t *buf;
	uint32_t type;

	if (token_is("op=", "seqread")) {
		op = SEQREAD;
		op_name = "seqread";
	} else if (token_is("op=", "seqwrite")) {
		op = SEQWRITE;
		op_name = "seqwrite";
	} else if (token_is("op=", "randread")) {
		op = RANDREAD;
		op_name = "randread";
	} else {
		return blk_fail("op= must be seqread, seqwrite or randread");
	}
	if (blk_setup(1, 0))
		return GUEST_EXIT_FAIL;
	b = &ctx.drives[0];
	nsect = ctx.bs / BLK_SECTOR_SIZE;
	blocks = b->capacity / nsect;
	if (blocks == 0)
		return blk_fail("drive 0 (%lu sectors) is smaller than bs",
				(unsigned long)b->capacity);
	total_ops = cmdline_u64("ops=", 0);
	if (!total_ops)
		total_ops = (cmdline_u64("mb=", 16) << 20) / ctx.bs;
	/* One buffer shared by every request: the data is not looked at. */
	buf = dma_alloc(ctx.bs, 4096);
	if (!buf)
		return blk_fail("no memory for a %u byte buffer", ctx.bs);
	type = op == SEQWRITE ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
	for (unsigned s = 0; s < ctx.qd; s++)
		blk_prep(b, s, type, 0, buf, ctx.bs);
	lcg = ctx.seed;

	while (completed < total_ops) {
		unsigned s;
		int r;

		/* Fill: on the first pass every slot, later the freed ones. */
		if (submitted == 0) {
			for (s = 0; s < ctx.qd && submitted < total_ops; s++) {
				b->slots[s].hdr.sector = pos;
				pos += nsect;
				if (pos + nsect > b->capacity)
					pos = 0;
				if (op == RANDREAD) {
					lcg = lcg * 6364136223846793005ull +
					      1442695040888963407ull;
					b->slots[s].hdr.sector =
						((lcg >> 33) % blocks) * nsect;
				}
				blk_submit(b, s);
				submitted++;
			}
			blk_kick(b);
		}
		if (virtq_wait(b->vdev, VIRTIO_WAIT_TSC))
			return blk_fail("timed out after %lu of %lu ops",
					(unsigned long)completed,
					(unsigned long)total_ops);
		while ((r = blk_complete(b, &s)) != 0) {
			if (r < 0)
				return blk_fail("used id %u is not a request", s);
			completed++;
			errors += b->slots[s].status != VIRTIO_BLK_S_OK;
			if (submitted < total_ops) {
				if (op == RANDREAD) {
					lcg = lcg * 6364136223846793005ull +
					      1442695040888963407ull;
					b->slots[s].hdr.sector =
						((lcg >> 33) % blocks) * nsect;
				} else {
					b->slots[s].hdr.sector = pos;
					pos += nsect;
					if (pos + nsect > b->capacity)
						pos = 0;
				}
				blk_submit(b, s);
				submitted++;
			}
		}
		blk_kick(b);
	}
	serial_printf("bench: %s %lu bytes %lu ops\n", op_name,
		      (unsigned long)(total_ops * ctx.bs),
		      (unsigned long)total_ops);
	if (errors)
		return blk_fail("%lu requests failed", (unsigned long)errors);
	return blk_pass();
}

struct blk_scenario {
	const char *name;
	int (*run)(void);
};

static const struct blk_scenario blk_scenarios[] = {
	{ "blk-write", blk_test_write },
	{ "blk-read", blk_test_read },
	{ "blk-flush-wait", blk_test_flush_wait },
	{ "blk-ro", blk_test_ro },
	{ "blk-discard", blk_test_discard },
	{ "blk-corrupt", blk_test_corrupt },
	{ "blk-bench", blk_test_bench },
};

int blk_test_run(const char *name, size_t len, int *code)
{
	for (size_t i = 0; i < sizeof(blk_scenarios) / sizeof(blk_scenarios[0]);
	     i++) {
		const struct blk_scenario *sc = &blk_scenarios[i];

		if (len == lib_strlen(sc->name) && memcmp(name, sc->name, len) == 0) {
			test_name = sc->name;
			*code = sc->run();
			return 1;
		}
	}
	return 0;
}
