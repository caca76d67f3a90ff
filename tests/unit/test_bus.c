/* Port-I/O and MMIO dispatch table. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/bus.h"

struct dev {
	unsigned reads, writes;
	uint64_t last_off;
	uint32_t last_len;
	uint8_t last_data[8];
	uint8_t fill; /* what reads return */
};

static void dev_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct dev *d = opaque;

	d->reads++;
	d->last_off = offset;
	d->last_len = len;
	memset(data, d->fill, len);
}

static void dev_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct dev *d = opaque;

	d->writes++;
	d->last_off = offset;
	d->last_len = len;
	memcpy(d->last_data, data, len);
}

static const struct bus_device_ops dev_ops = { .read = dev_read, .write = dev_write };
static const struct bus_device_ops write_only_ops = { .write = dev_write };

static void test_dispatch_offset_relative_to_base(void **state)
{
	struct bus bus = { 0 };
	struct dev a = { .fill = 0xaa }, b = { .fill = 0xbb };
	uint8_t data[8];

	(void)state;
	assert_int_equal(bus_register(&bus, 0x3f8, 8, &dev_ops, &a), 0);
	assert_int_equal(bus_register(&bus, 0xc0001000, 0x1000, &dev_ops, &b), 0);

	memset(data, 0, sizeof(data));
	assert_int_equal(bus_dispatch(&bus, 0x3fd, data, 1, false), 0);
	assert_int_equal(a.reads, 1);
	assert_int_equal(a.last_off, 5);
	assert_int_equal(a.last_len, 1);
	assert_int_equal(data[0], 0xaa);
	assert_int_equal(data[1], 0); /* only len bytes touched */

	memcpy(data, "\x01\x02\x03\x04", 4);
	assert_int_equal(bus_dispatch(&bus, 0xc0001ffc, data, 4, true), 0);
	assert_int_equal(b.writes, 1);
	assert_int_equal(b.last_off, 0xffc);
	assert_int_equal(b.last_len, 4);
	assert_memory_equal(b.last_data, "\x01\x02\x03\x04", 4);
	assert_int_equal(a.writes, 0);

	/* First and last byte of a range. */
	assert_int_equal(bus_dispatch(&bus, 0x3f8, data, 1, false), 0);
	assert_int_equal(a.last_off, 0);
	assert_int_equal(bus_dispatch(&bus, 0x3ff, data, 1, false), 0);
	assert_int_equal(a.last_off, 7);
}

static void test_unclaimed(void **state)
{
	struct bus bus = { 0 };
	struct dev a = { .fill = 0xaa };
	uint8_t data[4] = { 0x11, 0x22, 0x33, 0x44 };

	(void)state;
	assert_int_equal(bus_dispatch(&bus, 0, data, 1, false), -ENOENT);
	assert_int_equal(bus_register(&bus, 0x60, 1, &dev_ops, &a), 0);
	assert_int_equal(bus_dispatch(&bus, 0x5f, data, 4, false), -ENOENT);
	assert_int_equal(bus_dispatch(&bus, 0x61, data, 4, true), -ENOENT);
	assert_int_equal(bus_dispatch(&bus, UINT64_MAX, data, 1, false), -ENOENT);
	/* The caller decides what unclaimed reads return: data is untouched. */
	assert_memory_equal(data, "\x11\x22\x33\x44", 4);
	assert_int_equal(a.reads + a.writes, 0);
}

static void test_missing_handler_is_claimed(void **state)
{
	struct bus bus = { 0 };
	struct dev a = { 0 };
	uint8_t data[2] = { 0x5a, 0x5a };

	(void)state;
	assert_int_equal(bus_register(&bus, 0x80, 2, &write_only_ops, &a), 0);
	assert_int_equal(bus_dispatch(&bus, 0x81, data, 2, false), 0);
	assert_memory_equal(data, "\x5a\x5a", 2);
	assert_int_equal(bus_dispatch(&bus, 0x81, data, 1, true), 0);
	assert_int_equal(a.writes, 1);
	assert_int_equal(a.last_off, 1);
}

static void test_overlap_rejected(void **state)
{
	struct bus bus = { 0 };
	struct dev a = { 0 };
	const struct {
		uint64_t base, len;
	} clash[] = {
		{ 0x100, 0x10 }, /* identical */
		{ 0x0f8, 0x10 }, /* covers the start */
		{ 0x108, 0x10 }, /* covers the end */
		{ 0x104, 0x04 }, /* inside */
		{ 0x000, 0x1000 }, /* contains it */
		{ 0x10f, 1 },    /* its last byte */
		{ 0x0ff, 2 },    /* one byte either side of its start */
	};

	(void)state;
	assert_int_equal(bus_register(&bus, 0x100, 0x10, &dev_ops, &a), 0);
	for (size_t i = 0; i < sizeof(clash) / sizeof(clash[0]); i++)
		assert_int_equal(bus_register(&bus, clash[i].base, clash[i].len, &dev_ops, &a),
				 -EEXIST);
	assert_int_equal(bus.nr, 1);
	/* Adjacent on either side is fine. */
	assert_int_equal(bus_register(&bus, 0x0f0, 0x10, &dev_ops, &a), 0);
	assert_int_equal(bus_register(&bus, 0x110, 0x10, &dev_ops, &a), 0);
	assert_int_equal(bus.nr, 3);
}

static void test_bad_ranges_rejected(void **state)
{
	struct bus bus = { 0 };
	struct dev a = { 0 };

	(void)state;
	assert_int_equal(bus_register(&bus, 0x100, 0, &dev_ops, &a), -EINVAL);
	assert_int_equal(bus_register(&bus, UINT64_MAX, 2, &dev_ops, &a), -EINVAL);
	assert_int_equal(bus_register(&bus, 0x1000, UINT64_MAX, &dev_ops, &a), -EINVAL);
	assert_int_equal(bus_register(&bus, UINT64_MAX - 0xf, 0x20, &dev_ops, &a), -EINVAL);
	assert_int_equal(bus.nr, 0);
	/* A wrapped range must not have been recorded and then "overlap". */
	assert_int_equal(bus_register(&bus, 0, 0x10, &dev_ops, &a), 0);
}

static void test_range_near_top_of_address_space(void **state)
{
	struct bus bus = { 0 };
	struct dev a = { .fill = 0x77 };
	uint8_t data[1];

	(void)state;
	assert_int_equal(bus_register(&bus, UINT64_MAX - 0x10, 0x10, &dev_ops, &a), 0);
	assert_int_equal(bus_dispatch(&bus, UINT64_MAX - 1, data, 1, false), 0);
	assert_int_equal(a.last_off, 0xf);
	assert_int_equal(bus_dispatch(&bus, UINT64_MAX, data, 1, false), -ENOENT);
	assert_int_equal(bus_dispatch(&bus, 0, data, 1, false), -ENOENT);
}

static void test_full(void **state)
{
	struct bus bus = { 0 };
	struct dev devs[BUS_MAX_DEVICES];
	uint8_t data[1];

	(void)state;
	memset(devs, 0, sizeof(devs));
	for (unsigned i = 0; i < BUS_MAX_DEVICES; i++)
		assert_int_equal(bus_register(&bus, 0x1000 + i * 0x10, 0x10, &dev_ops, &devs[i]), 0);
	assert_int_equal(bus_register(&bus, 0x9000, 0x10, &dev_ops, &devs[0]), -ENOSPC);
	assert_int_equal(bus.nr, BUS_MAX_DEVICES);
	/* Each registration still reaches its own device. */
	for (unsigned i = 0; i < BUS_MAX_DEVICES; i++) {
		assert_int_equal(bus_dispatch(&bus, 0x1000 + i * 0x10 + 3, data, 1, false), 0);
		assert_int_equal(devs[i].reads, 1);
		assert_int_equal(devs[i].last_off, 3);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dispatch_offset_relative_to_base),
		cmocka_unit_test(test_unclaimed),
		cmocka_unit_test(test_missing_handler_is_claimed),
		cmocka_unit_test(test_overlap_rejected),
		cmocka_unit_test(test_bad_ranges_rejected),
		cmocka_unit_test(test_range_near_top_of_address_space),
		cmocka_unit_test(test_full),
	};

	return cmocka_run_group_tests_name("bus", tests, NULL, NULL);
}
