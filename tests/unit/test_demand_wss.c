/* The working-set sampler (metrics/wss.c) on real host memory: a
 * MAP_SHARED anonymous mapping like guest RAM, touched by this process
 * itself (the kernel's pagemap does not care who faults a page back in).
 * Checks that zapping keeps the data, that exactly the touched pages come
 * back, that sampling scales up within a few percent, and the bounds; and
 * that on a private file mapping (a restored clone) only file-backed pages
 * are zapped, never the written ones. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "metrics/wss.h"

#define MIB (1ULL << 20)
#define SIZE (64 * MIB)

struct fixture {
	uint8_t *mem;
	int pagemap;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->mem = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	f->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (f->mem == MAP_FAILED || f->pagemap < 0)
		return -1;
	for (uint64_t off = 0; off < SIZE; off += WSS_PAGE_SIZE)
		f->mem[off] = (uint8_t)(off >> 12);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	munmap(f->mem, SIZE);
	close(f->pagemap);
	free(f);
	return 0;
}

/* Stores rewrite the pattern setup() wrote (a pure store: no read fault
 * first); loads read it. */
static void touch(uint8_t *mem, uint64_t start, uint64_t len, bool write)
{
	volatile uint8_t sink = 0;

	for (uint64_t off = start; off < start + len; off += WSS_PAGE_SIZE) {
		if (write)
			((volatile uint8_t *)mem)[off] = (uint8_t)(off >> 12);
		else
			sink += ((volatile uint8_t *)mem)[off];
	}
	(void)sink;
}

static void test_every_page_exact(void **state)
{
	struct fixture *f = *state;
	struct wss_config cfg = { .sample_pages = 0 };
	struct wss w;
	struct wss_result r;

	assert_int_equal(wss_init(&w, f->mem, SIZE, &cfg, f->pagemap), 0);
	assert_int_equal(w.stride, 1);
	assert_int_equal(wss_collect(&w, &r), -EAGAIN); /* the first call arms */
	touch(f->mem, 16 * MIB, 8 * MIB, true);
	touch(f->mem, 40 * MIB, 4 * MIB, false); /* reads count too */
	assert_int_equal(wss_collect(&w, &r), 0);
	assert_int_equal(r.sampled, SIZE / WSS_PAGE_SIZE);
	/* Read faults on shmem map up to 16 cached neighbours at once (the
	 * kernel's fault-around, 64 KiB): at most 16 extra pages per edge of
	 * the read range. Writes are exact. */
	assert_in_range(r.touched, 12 * MIB / WSS_PAGE_SIZE, 12 * MIB / WSS_PAGE_SIZE + 32);
	assert_int_equal(r.estimate_bytes, r.touched * WSS_PAGE_SIZE);
	assert_int_equal(wss_collect(&w, &r), 0);
	assert_int_equal(r.touched, 0);
	touch(f->mem, 16 * MIB, 8 * MIB, true);
	assert_int_equal(wss_collect(&w, &r), 0);
	assert_int_equal(r.estimate_bytes, 8 * MIB);
	/* All of it is still resident: zapping dropped mappings, not data. */
	assert_int_equal(r.resident_bytes, SIZE);
	for (uint64_t off = 0; off < SIZE; off += WSS_PAGE_SIZE)
		if (f->mem[off] != (uint8_t)(off >> 12))
			fail_msg("data lost at offset %#llx", (unsigned long long)off);
	/* That check touched every page: the next interval sees all of it. */
	assert_int_equal(wss_collect(&w, &r), 0);
	assert_int_equal(r.estimate_bytes, SIZE);
	wss_destroy(&w);
}

static void sampled(struct fixture *f, uint64_t samples, uint64_t touched_mib, double tol)
{
	struct wss_config cfg = { .sample_pages = samples, .seed = 42 };
	struct wss w;
	struct wss_result r;

	assert_int_equal(wss_init(&w, f->mem, SIZE, &cfg, f->pagemap), 0);
	assert_true(w.stride > 1);
	assert_int_equal(wss_arm(&w), 0);
	for (int round = 0; round < 4; round++) {
		touch(f->mem, 8 * MIB, touched_mib * MIB, round & 1);
		assert_int_equal(wss_collect(&w, &r), 0);
		assert_int_equal(r.sampled, w.nr_samples);
		double got = (double)r.estimate_bytes, want = (double)(touched_mib * MIB);
		if (got < want * (1 - tol) || got > want * (1 + tol))
			fail_msg("%llu samples, %llu MiB touched: estimate %.2f MiB",
				 (unsigned long long)samples, (unsigned long long)touched_mib,
				 got / MIB);
	}
	wss_destroy(&w);
}

static void test_sampled_dense(void **state)
{
	/* stride 16: the pagemap is read in chunks */
	sampled(*state, 1024, 32, 0.05);
	sampled(*state, 1024, 3, 0.10);
}

static void test_sampled_sparse(void **state)
{
	/* stride 128: one pread per sample */
	sampled(*state, 128, 16, 0.05);
}

static void test_sample_positions_move(void **state)
{
	struct fixture *f = *state;
	struct wss_config cfg = { .sample_pages = 100, .seed = 7 };
	struct wss w;
	unsigned moved = 0;

	assert_int_equal(wss_init(&w, f->mem, SIZE, &cfg, f->pagemap), 0);
	for (uint64_t k = 0; k < w.nr_samples; k++) {
		uint64_t p0 = wss_sample_page(&w, k);
		assert_true(p0 >= k * w.stride && p0 < (k + 1) * w.stride && p0 < w.nr_pages);
		w.epoch++;
		moved += wss_sample_page(&w, k) != p0;
		w.epoch--;
	}
	assert_true(moved > w.nr_samples / 2);
	wss_destroy(&w);
}

static void test_bad_arguments(void **state)
{
	struct fixture *f = *state;
	struct wss_config cfg = { 0 };
	struct wss w;

	assert_int_equal(wss_init(&w, NULL, SIZE, &cfg, f->pagemap), -EINVAL);
	assert_int_equal(wss_init(&w, f->mem + 1, SIZE - 4096, &cfg, f->pagemap), -EINVAL);
	assert_int_equal(wss_init(&w, f->mem, 100, &cfg, f->pagemap), -EINVAL);
	assert_int_equal(wss_init(&w, f->mem, SIZE, &cfg, -1), -EINVAL);
	/* A sample larger than the memory means every page. */
	cfg.sample_pages = 1ULL << 40;
	assert_int_equal(wss_init(&w, f->mem, SIZE, &cfg, f->pagemap), 0);
	assert_int_equal(w.stride, 1);
	wss_destroy(&w);
}

/* A restored clone's RAM: the snapshot's memory file mapped MAP_PRIVATE.
 * Pages the clone wrote are anonymous copies, its only copy of the data:
 * arming must leave them alone (the written bitmap, KVM's dirty log in
 * mote, tells whether they were written again), and zap only pages still
 * backed by the file. */
static void test_private_mapping_keeps_written_pages(void **state)
{
	const uint64_t size = 16 * MIB, pages = size / WSS_PAGE_SIZE;
	struct fixture *f = *state;
	struct wss_config cfg = { .sample_pages = 0, .private_map = true };
	struct wss w;
	struct wss_result r;
	static uint64_t written[16 * MIB / WSS_PAGE_SIZE / 64];
	static uint8_t page[WSS_PAGE_SIZE];
	int fd = memfd_create("wss-clone", MFD_CLOEXEC);

	assert_true(fd >= 0);
	for (uint64_t p = 0; p < pages; p++) {
		page[0] = (uint8_t)(0xa0 ^ p);
		assert_int_equal(pwrite(fd, page, sizeof(page), (off_t)(p * WSS_PAGE_SIZE)),
				 (ssize_t)sizeof(page));
	}
	/* At a 2 MiB-aligned address, so that the kernel's read fault-around
	 * (64 KiB windows of virtual addresses) stays inside the ranges. */
	uint8_t *resv = mmap(NULL, size + 2 * MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(resv != MAP_FAILED);
	uint8_t *mem = (uint8_t *)(((uintptr_t)resv + 2 * MIB - 1) & ~(uintptr_t)(2 * MIB - 1));
	assert_true(mmap(mem, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0) == mem);
	/* Before the interval: the clone wrote [0, 4) MiB, read [8, 12). */
	for (uint64_t off = 0; off < 4 * MIB; off += WSS_PAGE_SIZE)
		((volatile uint8_t *)mem)[off] = (uint8_t)(0x5a ^ (off >> 12));
	touch(mem, 8 * MIB, 4 * MIB, false);

	assert_int_equal(wss_init(&w, mem, size, &cfg, f->pagemap), 0);
	assert_int_equal(wss_count(&w, written, &r), -EAGAIN);
	assert_int_equal(wss_collect(&w, &r), -EINVAL); /* collect arms: not here */
	assert_int_equal(wss_arm(&w), 0);
	/* Only the file-backed pages were zapped (the ranges are 64 KiB
	 * aligned, so the read fault-around stayed inside them). */
	assert_int_equal(w.last_zapped, 4 * MIB / WSS_PAGE_SIZE);
	assert_int_equal(wss_count(&w, NULL, &r), -EINVAL);

	/* The interval: writes [2, 6) MiB (half of them private copies
	 * already), reads [10, 14) (half zapped, half never mapped). */
	for (uint64_t off = 2 * MIB; off < 6 * MIB; off += WSS_PAGE_SIZE) {
		((volatile uint8_t *)mem)[off] = (uint8_t)(0x77 ^ (off >> 12));
		written[(off >> 12) / 64] |= 1ULL << ((off >> 12) % 64);
	}
	touch(mem, 10 * MIB, 4 * MIB, false);
	assert_int_equal(wss_count(&w, written, &r), 0);
	assert_int_equal(r.dirty_sampled, 4 * MIB / WSS_PAGE_SIZE); /* [0, 4) */
	assert_int_equal(r.zapped, 4 * MIB / WSS_PAGE_SIZE);         /* [8, 12) */
	/* [2, 4) by the written bitmap, [4, 6) and [10, 14) present. */
	assert_int_equal(r.touched, 8 * MIB / WSS_PAGE_SIZE);
	assert_int_equal(r.estimate_bytes, 8 * MIB);

	/* Another arm, nothing written: the private copies [0, 6) stay. */
	memset(written, 0, sizeof(written));
	assert_int_equal(wss_arm(&w), 0);
	/* [10, 14): [8, 10) was zapped last time and not touched since. */
	assert_int_equal(w.last_zapped, 4 * MIB / WSS_PAGE_SIZE);
	assert_int_equal(wss_count(&w, written, &r), 0);
	assert_int_equal(r.touched, 0);
	assert_int_equal(r.dirty_sampled, 6 * MIB / WSS_PAGE_SIZE);

	/* Prepared arm: classified with the writers running; [10, 14) are
	 * file-backed candidates then, and [10, 11) is written before the
	 * arm: the arm looks again and leaves those private copies alone. */
	touch(mem, 10 * MIB, 4 * MIB, false);
	assert_int_equal(wss_arm_prepare(&w), 0);
	assert_int_equal(w.nr_cand, 4 * MIB / WSS_PAGE_SIZE);
	for (uint64_t off = 10 * MIB; off < 11 * MIB; off += WSS_PAGE_SIZE)
		((volatile uint8_t *)mem)[off] = (uint8_t)(0x33 ^ (off >> 12));
	assert_int_equal(wss_arm(&w), 0);
	assert_int_equal(w.last_zapped, 3 * MIB / WSS_PAGE_SIZE); /* [11, 14) */
	for (uint64_t off = 10 * MIB; off < 11 * MIB; off += WSS_PAGE_SIZE)
		written[(off >> 12) / 64] |= 1ULL << ((off >> 12) % 64);
	assert_int_equal(wss_count(&w, written, &r), 0);
	assert_int_equal(r.dirty_sampled, 7 * MIB / WSS_PAGE_SIZE);
	assert_int_equal(r.touched, 1 * MIB / WSS_PAGE_SIZE);

	/* No data lost: the clone's writes are there, the rest reads as the
	 * file, and the file never changed. */
	for (uint64_t p = 0; p < pages; p++) {
		uint8_t want = p < 512			 ? (uint8_t)(0x5a ^ p)
			       : p < 1536		 ? (uint8_t)(0x77 ^ p)
			       : (p >= 2560 && p < 2816) ? (uint8_t)(0x33 ^ p)
							 : (uint8_t)(0xa0 ^ p);
		if (mem[p * WSS_PAGE_SIZE] != want)
			fail_msg("page %llu holds %#x, expected %#x", (unsigned long long)p,
				 mem[p * WSS_PAGE_SIZE], want);
		assert_int_equal(pread(fd, page, 1, (off_t)(p * WSS_PAGE_SIZE)), 1);
		assert_int_equal(page[0], (uint8_t)(0xa0 ^ p));
	}
	wss_destroy(&w);
	munmap(resv, size + 2 * MIB);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_page_exact),
		cmocka_unit_test(test_sampled_dense),
		cmocka_unit_test(test_sampled_sparse),
		cmocka_unit_test(test_sample_positions_move),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_private_mapping_keeps_written_pages),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
