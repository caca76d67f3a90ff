/* virtio/devargs.c: the "key=value,key,..." splitter behind --drive, --net
 * and --vsock. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "virtio/devargs.h"

static void test_items_keys_and_values(void **state)
{
	struct devargs it;
	struct devarg a;
	const char *arg = "path=/tmp/a=b,,ro,id=,bw=5";

	(void)state;
	assert_int_equal(devargs_open(&it, arg), 0);
	assert_true(devargs_next(&it, &a));
	/* The first '=' ends the key; the item stays whole for messages. */
	assert_string_equal(a.item, "path=/tmp/a=b");
	assert_string_equal(a.val, "/tmp/a=b");
	assert_true(devarg_is(&a, "path"));
	assert_false(devarg_is(&a, "pat"));
	assert_false(devarg_is(&a, "paths"));
	/* The empty item between the commas is skipped. */
	assert_true(devargs_next(&it, &a));
	assert_string_equal(a.item, "ro");
	assert_null(a.val);
	assert_true(devarg_is(&a, "ro"));
	assert_true(devargs_next(&it, &a));
	assert_true(devarg_is(&a, "id"));
	assert_string_equal(a.val, "");
	assert_true(devargs_next(&it, &a));
	assert_string_equal(a.item, "bw=5");
	assert_false(devargs_next(&it, &a));
	assert_false(devargs_next(&it, &a));
	devargs_close(&it);
	/* The caller's string is untouched. */
	assert_string_equal(arg, "path=/tmp/a=b,,ro,id=,bw=5");
}

static void test_empty_argument_has_no_items(void **state)
{
	struct devargs it;
	struct devarg a;

	(void)state;
	assert_int_equal(devargs_open(&it, ""), 0);
	assert_false(devargs_next(&it, &a));
	devargs_close(&it);
	assert_int_equal(devargs_open(&it, ",,,"), 0);
	assert_false(devargs_next(&it, &a));
	devargs_close(&it);
}

static void test_u64(void **state)
{
	uint64_t v = 7;

	(void)state;
	assert_int_equal(devarg_u64("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(devarg_u64("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);
	v = 7;
	assert_int_equal(devarg_u64("18446744073709551616", &v), -EINVAL);
	assert_int_equal(devarg_u64("-1", &v), -EINVAL);
	assert_int_equal(devarg_u64("", &v), -EINVAL);
	assert_int_equal(devarg_u64("12k", &v), -EINVAL);
	assert_int_equal(devarg_u64("0x10", &v), -EINVAL);
	/* A refused number leaves *out alone. */
	assert_int_equal(v, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_items_keys_and_values),
		cmocka_unit_test(test_empty_argument_has_no_items),
		cmocka_unit_test(test_u64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
