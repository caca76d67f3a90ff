/* The shared reader of KVM's dirty log (vmm/dirty_log.c): KVM clears its
 * bitmap on every fetch, so each consumer (diff snapshots, the working-set
 * tracker) keeps its own accumulated copy. Checks that a consumer taking
 * its pages never takes another's, that slots land at their offset, and
 * the bounds. The KVM call itself is exercised by the integration tests
 * (test_demand_clone: a diff snapshot of a clone whose working set is
 * tracked merges to the full snapshot byte for byte). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/dirty_log.h"

#define MEM (8ULL << 20) /* 2048 pages */
#define PAGES (MEM / 4096)

static void set_bit(uint64_t *bm, uint64_t p)
{
	bm[p / 64] |= 1ULL << (p % 64);
}

static uint64_t count_bits(const uint64_t *bm, uint64_t words)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < words; w++)
		n += (uint64_t)__builtin_popcountll(bm[w]);
	return n;
}

static bool has_bit(const uint64_t *bm, uint64_t p)
{
	return (bm[p / 64] >> (p % 64)) & 1;
}

static void test_consumers_do_not_steal(void **state)
{
	struct dirty_log d;
	uint64_t slot[PAGES / 64 + 1], out[PAGES / 64];

	(void)state;
	assert_int_equal(dirty_log_init(&d, MEM), 0);
	assert_int_equal(d.words, PAGES / 64);
	/* Slot 0: guest RAM's first 1024 pages. */
	memset(slot, 0, sizeof(slot));
	set_bit(slot, 1);
	set_bit(slot, 63);
	set_bit(slot, 64);
	set_bit(slot, 700);
	dirty_log_merge(&d, 0, slot, 1024);
	/* The working-set tracker takes its copy... */
	dirty_log_take_merged(&d, DIRTY_LOG_METRICS, out);
	assert_int_equal(count_bits(out, PAGES / 64), 4);
	assert_true(has_bit(out, 1) && has_bit(out, 63) && has_bit(out, 64) && has_bit(out, 700));
	dirty_log_take_merged(&d, DIRTY_LOG_METRICS, out);
	assert_int_equal(count_bits(out, PAGES / 64), 0);
	/* ...a second KVM round arrives... */
	memset(slot, 0, sizeof(slot));
	set_bit(slot, 5);
	dirty_log_merge(&d, 0, slot, 1024);
	/* ...and the next diff snapshot still gets both rounds. */
	dirty_log_take_merged(&d, DIRTY_LOG_SNAPSHOT, out);
	assert_int_equal(count_bits(out, PAGES / 64), 5);
	assert_true(has_bit(out, 5) && has_bit(out, 700));
	dirty_log_take_merged(&d, DIRTY_LOG_SNAPSHOT, out);
	assert_int_equal(count_bits(out, PAGES / 64), 0);
	/* The tracker's copy of round two is still there. */
	dirty_log_take_merged(&d, DIRTY_LOG_METRICS, out);
	assert_int_equal(count_bits(out, PAGES / 64), 1);
	assert_true(has_bit(out, 5));
	dirty_log_destroy(&d);
}

static void test_slot_offset_and_bounds(void **state)
{
	struct dirty_log d;
	uint64_t slot[PAGES / 64 + 1], out[PAGES / 64];

	(void)state;
	assert_int_equal(dirty_log_init(&d, MEM), 0);
	/* Slot 1 at page 1024 (above the MMIO hole in guest-physical terms,
	 * right after slot 0 in the host mapping). Bit 1030 lies past the
	 * slot's 1024 pages: KVM never sets it, and it is ignored. */
	memset(slot, 0, sizeof(slot));
	set_bit(slot, 0);
	set_bit(slot, 1023);
	set_bit(slot, 1030);
	dirty_log_merge(&d, 1024, slot, 1024);
	dirty_log_take_merged(&d, DIRTY_LOG_SNAPSHOT, out);
	assert_int_equal(count_bits(out, PAGES / 64), 2);
	assert_true(has_bit(out, 1024) && has_bit(out, 2047));
	dirty_log_take_merged(&d, DIRTY_LOG_METRICS, out);
	assert_int_equal(count_bits(out, PAGES / 64), 2);
	/* A slot reaching past guest RAM is cut at its end; one starting past
	 * it is ignored. */
	memset(slot, 0xff, sizeof(slot));
	dirty_log_merge(&d, 2000, slot, 100);
	dirty_log_merge(&d, PAGES, slot, 10);
	dirty_log_take_merged(&d, DIRTY_LOG_METRICS, out);
	assert_int_equal(count_bits(out, PAGES / 64), 48);
	assert_true(has_bit(out, 2000) && has_bit(out, 2047) && !has_bit(out, 1999));
	dirty_log_destroy(&d);
	assert_int_equal(dirty_log_init(&d, 100), -EINVAL);
	assert_int_equal(dirty_log_words(MEM + 4096), PAGES / 64 + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_consumers_do_not_steal),
		cmocka_unit_test(test_slot_offset_and_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
