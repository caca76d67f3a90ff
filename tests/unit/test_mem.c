/* Guest RAM layout and the one checked door into it: guest_mem_gpa_to_hva(). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "vmm/layout.h"
#include "vmm/mem.h"

#define MIB (1ULL << 20)
#define GIB (1ULL << 30)
#define SMALL_SIZE (2 * MIB)
#define BIG_SIZE (4 * GIB + GIB / 2) /* 3 GiB low + 1.5 GiB above the hole */

struct fixture {
	struct guest_mem mem;
	uint8_t *buf;
	uint64_t size;
};

/* Only the pages a test touches are ever backed. */
static uint8_t *map_noreserve(uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static int setup_size(void **state, uint64_t size)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->size = size;
	f->buf = map_noreserve(size);
	if (!f->buf || guest_mem_init_from_buffer(&f->mem, f->buf, size) != 0) {
		if (f->buf)
			munmap(f->buf, size);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int setup_small(void **state)
{
	return setup_size(state, SMALL_SIZE);
}

static int setup_big(void **state)
{
	return setup_size(state, BIG_SIZE);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	munmap(f->buf, f->size);
	free(f);
	return 0;
}

static void test_init_from_buffer_rejects_bad_arguments(void **state)
{
	struct guest_mem mem;
	static uint8_t buf[4096];

	(void)state;
	assert_int_equal(guest_mem_init_from_buffer(&mem, NULL, SMALL_SIZE), -EINVAL);
	assert_int_equal(guest_mem_init_from_buffer(&mem, buf, 0), -EINVAL);
	/* Below 1 MiB there is no room for a kernel. */
	assert_int_equal(guest_mem_init_from_buffer(&mem, buf, MIB - 4096), -EINVAL);
	/* KVM slots are page-granular. */
	assert_int_equal(guest_mem_init_from_buffer(&mem, buf, MIB + 1), -EINVAL);
	assert_int_equal(guest_mem_init_from_buffer(&mem, buf, MIB + 2048), -EINVAL);
}

static void test_init_rejects_bad_sizes(void **state)
{
	struct guest_mem mem;

	(void)state;
	assert_int_equal(guest_mem_init(&mem, 0), -EINVAL);
	assert_int_equal(guest_mem_init(&mem, MIB - 4096), -EINVAL);
	assert_int_equal(guest_mem_init(&mem, 8 * MIB + 100), -EINVAL);
}

static void test_init_maps_and_destroy_unmaps(void **state)
{
	struct guest_mem mem;

	(void)state;
	assert_int_equal(guest_mem_init(&mem, 4 * MIB), 0);
	assert_non_null(mem.base);
	assert_int_equal(mem.size, 4 * MIB);
	assert_true(mem.fd >= 0); /* the memfd snapshots ask for SEEK_DATA */
	assert_false(mem.private_file);
	assert_int_equal(mem.nr_regions, 1);
	/* Fresh memory reads as zero and is writable end to end. */
	assert_int_equal(mem.base[4 * MIB - 1], 0);
	mem.base[0] = 0x5a;
	mem.base[4 * MIB - 1] = 0xa5;
	guest_mem_destroy(&mem);
	assert_null(mem.base);
	guest_mem_destroy(&mem); /* a second destroy is harmless */
}

static void test_layout_small_is_one_region(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(f->mem.nr_regions, 1);
	assert_ptr_equal(f->mem.base, f->buf);
	assert_int_equal(f->mem.size, SMALL_SIZE);
	assert_int_equal(f->mem.fd, -1);
	assert_int_equal(f->mem.regions[0].gpa, 0);
	assert_int_equal(f->mem.regions[0].size, SMALL_SIZE);
	assert_ptr_equal(f->mem.regions[0].hva, f->buf);
	assert_int_equal(guest_mem_low_end(&f->mem), SMALL_SIZE);
}

static void test_layout_exactly_3g_is_one_region(void **state)
{
	uint8_t *buf = map_noreserve(3 * GIB);
	struct guest_mem mem;

	(void)state;
	if (!buf)
		skip();
	assert_int_equal(guest_mem_init_from_buffer(&mem, buf, 3 * GIB), 0);
	assert_int_equal(mem.nr_regions, 1);
	assert_int_equal(mem.regions[0].size, LAYOUT_MMIO_HOLE_START);
	assert_int_equal(guest_mem_low_end(&mem), LAYOUT_MMIO_HOLE_START);
	assert_non_null(guest_mem_gpa_to_hva(&mem, 3 * GIB - 1, 1));
	assert_null(guest_mem_gpa_to_hva(&mem, 3 * GIB, 1));
	assert_null(guest_mem_gpa_to_hva(&mem, 4 * GIB, 1));
	munmap(buf, 3 * GIB);
}

static void test_layout_big_splits_around_hole(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(f->mem.nr_regions, 2);
	assert_int_equal(f->mem.regions[0].gpa, 0);
	assert_int_equal(f->mem.regions[0].size, 3 * GIB);
	assert_ptr_equal(f->mem.regions[0].hva, f->buf);
	assert_int_equal(f->mem.regions[1].gpa, 4 * GIB);
	assert_int_equal(f->mem.regions[1].size, BIG_SIZE - 3 * GIB);
	assert_ptr_equal(f->mem.regions[1].hva, f->buf + 3 * GIB);
	assert_int_equal(guest_mem_low_end(&f->mem), 3 * GIB);
}

static void test_gpa_to_hva_in_range(void **state)
{
	struct fixture *f = *state;

	assert_ptr_equal(guest_mem_gpa_to_hva(&f->mem, 0, 1), f->buf);
	assert_ptr_equal(guest_mem_gpa_to_hva(&f->mem, 0x1234, 16), f->buf + 0x1234);
	/* The whole of RAM as one range. */
	assert_ptr_equal(guest_mem_gpa_to_hva(&f->mem, 0, SMALL_SIZE), f->buf);
	/* The last byte, and a range ending exactly at the end. */
	assert_ptr_equal(guest_mem_gpa_to_hva(&f->mem, SMALL_SIZE - 1, 1), f->buf + SMALL_SIZE - 1);
	assert_ptr_equal(guest_mem_gpa_to_hva(&f->mem, SMALL_SIZE - 8, 8), f->buf + SMALL_SIZE - 8);
}

static void test_gpa_to_hva_out_of_range(void **state)
{
	struct fixture *f = *state;

	/* One past the end. */
	assert_null(guest_mem_gpa_to_hva(&f->mem, SMALL_SIZE, 1));
	/* Crossing the end by one byte. */
	assert_null(guest_mem_gpa_to_hva(&f->mem, SMALL_SIZE - 8, 9));
	assert_null(guest_mem_gpa_to_hva(&f->mem, 0, SMALL_SIZE + 1));
	/* Far away, including inside the MMIO hole with no RAM above it. */
	assert_null(guest_mem_gpa_to_hva(&f->mem, 64 * MIB, 1));
	assert_null(guest_mem_gpa_to_hva(&f->mem, LAYOUT_IOAPIC_ADDR, 4));
	assert_null(guest_mem_gpa_to_hva(&f->mem, 4 * GIB, 1));
	assert_null(guest_mem_gpa_to_hva(&f->mem, UINT64_MAX, 1));
}

static void test_gpa_to_hva_overflow(void **state)
{
	struct fixture *f = *state;

	/* gpa + len wraps past 2^64 to a small, in-range looking number. */
	assert_null(guest_mem_gpa_to_hva(&f->mem, 0x1000, UINT64_MAX));
	assert_null(guest_mem_gpa_to_hva(&f->mem, 0x1000, UINT64_MAX - 0xfff + 0x10));
	assert_null(guest_mem_gpa_to_hva(&f->mem, SMALL_SIZE - 1, UINT64_MAX));
	assert_null(guest_mem_gpa_to_hva(&f->mem, UINT64_MAX, UINT64_MAX));
	assert_null(guest_mem_gpa_to_hva(&f->mem, UINT64_MAX - 0xfff, 0x2000));
	assert_null(guest_mem_gpa_to_hva(&f->mem, 0, UINT64_MAX));
}

static void test_gpa_to_hva_big_layout(void **state)
{
	struct fixture *f = *state;
	const uint64_t high_end = 4 * GIB + (BIG_SIZE - 3 * GIB);

	/* Below the hole. */
	assert_ptr_equal(guest_mem_gpa_to_hva(&f->mem, 3 * GIB - 1, 1), f->buf + 3 * GIB - 1);
	/* Every address in the hole is MMIO, not RAM. */
	assert_null(guest_mem_gpa_to_hva(&f->mem, LAYOUT_MMIO_HOLE_START, 1));
	assert_null(guest_mem_gpa_to_hva(&f->mem, LAYOUT_VIRTIO_MMIO_BASE, 4));
	assert_null(guest_mem_gpa_to_hva(&f->mem, LAYOUT_IOAPIC_ADDR, 4));
	assert_null(guest_mem_gpa_to_hva(&f->mem, LAYOUT_LAPIC_ADDR, 4));
	assert_null(guest_mem_gpa_to_hva(&f->mem, 4 * GIB - 1, 1));
	/* Ranges straddling either edge of the hole. */
	assert_null(guest_mem_gpa_to_hva(&f->mem, 3 * GIB - 4, 8));
	assert_null(guest_mem_gpa_to_hva(&f->mem, 4 * GIB - 4, 8));
	assert_null(guest_mem_gpa_to_hva(&f->mem, 3 * GIB - 4096, GIB + 8192));
	/* Above the hole: gpa 4 GiB is host offset 3 GiB. */
	assert_ptr_equal(guest_mem_gpa_to_hva(&f->mem, 4 * GIB, 1), f->buf + 3 * GIB);
	assert_ptr_equal(guest_mem_gpa_to_hva(&f->mem, high_end - 1, 1), f->buf + BIG_SIZE - 1);
	assert_ptr_equal(guest_mem_gpa_to_hva(&f->mem, 4 * GIB, BIG_SIZE - 3 * GIB),
			 f->buf + 3 * GIB);
	assert_null(guest_mem_gpa_to_hva(&f->mem, high_end, 1));
	assert_null(guest_mem_gpa_to_hva(&f->mem, high_end - 1, 2));
	assert_null(guest_mem_gpa_to_hva(&f->mem, 4 * GIB + 0x1000, UINT64_MAX - 0x1000));
	assert_null(guest_mem_gpa_to_hva(&f->mem, 4 * GIB, UINT64_MAX));
}

static void test_write_read_roundtrip(void **state)
{
	struct fixture *f = *state;
	const uint8_t msg[] = "mote guest memory";
	uint8_t back[sizeof(msg)];

	assert_int_equal(guest_mem_write(&f->mem, 0x100000, msg, sizeof(msg)), 0);
	assert_memory_equal(f->buf + 0x100000, msg, sizeof(msg));
	memset(back, 0, sizeof(back));
	assert_int_equal(guest_mem_read(&f->mem, 0x100000, back, sizeof(back)), 0);
	assert_memory_equal(back, msg, sizeof(msg));
	/* Up to the very last byte. */
	assert_int_equal(guest_mem_write(&f->mem, SMALL_SIZE - 4, "abcd", 4), 0);
	assert_memory_equal(f->buf + SMALL_SIZE - 4, "abcd", 4);
}

static void test_write_read_efault_leaves_memory_alone(void **state)
{
	struct fixture *f = *state;
	uint8_t src[16], dst[16], expect[16];

	memset(src, 0x77, sizeof(src));
	memset(f->buf + SMALL_SIZE - 8, 0x11, 8);
	assert_int_equal(guest_mem_write(&f->mem, SMALL_SIZE - 8, src, 16), -EFAULT);
	memset(expect, 0x11, 8);
	assert_memory_equal(f->buf + SMALL_SIZE - 8, expect, 8);
	assert_int_equal(guest_mem_write(&f->mem, SMALL_SIZE, src, 1), -EFAULT);
	assert_int_equal(guest_mem_write(&f->mem, 0x1000, src, UINT64_MAX), -EFAULT);

	memset(dst, 0xee, sizeof(dst));
	memset(expect, 0xee, sizeof(expect));
	assert_int_equal(guest_mem_read(&f->mem, SMALL_SIZE - 8, dst, 16), -EFAULT);
	assert_memory_equal(dst, expect, sizeof(dst));
	assert_int_equal(guest_mem_read(&f->mem, UINT64_MAX, dst, 1), -EFAULT);
	assert_int_equal(guest_mem_read(&f->mem, 0x1000, dst, UINT64_MAX - 0x800), -EFAULT);
	assert_memory_equal(dst, expect, sizeof(dst));
}

static void test_write_read_above_hole(void **state)
{
	struct fixture *f = *state;
	uint64_t v = 0x0123456789abcdefULL, back = 0;

	assert_int_equal(guest_mem_write(&f->mem, 4 * GIB + 0x10, &v, sizeof(v)), 0);
	assert_memory_equal(f->buf + 3 * GIB + 0x10, &v, sizeof(v));
	assert_int_equal(guest_mem_read(&f->mem, 4 * GIB + 0x10, &back, sizeof(back)), 0);
	assert_int_equal(back, v);
	assert_int_equal(guest_mem_write(&f->mem, 3 * GIB + 0x10, &v, sizeof(v)), -EFAULT);
	assert_int_equal(guest_mem_read(&f->mem, 3 * GIB - 4, &back, sizeof(back)), -EFAULT);
}


/* guest_mem_zero on real guest RAM (the memfd): an unaligned range reads
 * zero afterwards and its neighbours keep their bytes; whole pages inside
 * it are given back (not faulted in); on a private buffer, where pages
 * cannot be punched, it zeroes by memset. */
static void test_zero_range(void **state)
{
	(void)state;
	struct guest_mem mem;
	const uint64_t base = 0x200000, len = 5 * 4096 + 300;

	assert_int_equal(guest_mem_init(&mem, 4 * MIB), 0);
	uint8_t *p = guest_mem_gpa_to_hva(&mem, base - 4096, len + 2 * 4096);
	assert_non_null(p);
	memset(p, 0xab, len + 2 * 4096);
	uint8_t *z = p + 4096 - 100; /* starts 100 bytes before a page boundary */
	guest_mem_zero(z, len);
	for (uint64_t i = 0; i < len; i++)
		if (z[i])
			fail_msg("byte %llu of the range is %#x", (unsigned long long)i, z[i]);
	for (uint8_t *q = p; q < z; q++)
		assert_int_equal(*q, 0xab);
	for (uint8_t *q = z + len; q < p + len + 2 * 4096; q++)
		assert_int_equal(*q, 0xab);
	/* A range never written: its whole pages stay unallocated. */
	uint8_t *fresh = guest_mem_gpa_to_hva(&mem, 0x300000, 64 * 4096);
	unsigned char vec[64];
	guest_mem_zero(fresh, 64 * 4096);
	assert_int_equal(mincore(fresh, 64 * 4096, vec), 0);
	unsigned resident = 0;
	for (int i = 0; i < 64; i++)
		resident += vec[i] & 1;
	assert_int_equal(resident, 0);
	guest_mem_destroy(&mem);

	uint8_t *buf = malloc(3 * 4096);
	assert_non_null(buf);
	memset(buf, 0xcd, 3 * 4096);
	guest_mem_zero(buf + 10, 3 * 4096 - 20);
	for (int i = 10; i < 3 * 4096 - 10; i++)
		assert_int_equal(buf[i], 0);
	assert_int_equal(buf[9], 0xcd);
	assert_int_equal(buf[3 * 4096 - 10], 0xcd);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_from_buffer_rejects_bad_arguments),
		cmocka_unit_test(test_init_rejects_bad_sizes),
		cmocka_unit_test(test_init_maps_and_destroy_unmaps),
		cmocka_unit_test_setup_teardown(test_layout_small_is_one_region, setup_small, teardown),
		cmocka_unit_test(test_layout_exactly_3g_is_one_region),
		cmocka_unit_test_setup_teardown(test_layout_big_splits_around_hole, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_gpa_to_hva_in_range, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_gpa_to_hva_out_of_range, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_gpa_to_hva_overflow, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_gpa_to_hva_big_layout, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_write_read_roundtrip, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_write_read_efault_leaves_memory_alone, setup_small,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_read_above_hole, setup_big, teardown),
		cmocka_unit_test(test_zero_range),
	};

	return cmocka_run_group_tests_name("mem", tests, NULL, NULL);
}
