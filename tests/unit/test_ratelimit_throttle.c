/* Throttled-time accounting of the rate limiters (virtio/ratelimit.c,
 * rl_throttle_*), the metric GET /demand reports per device as
 * throttled_ns: holds add up from the refusal to the release, a repeated
 * refusal during a hold does not restart it, a release without a hold
 * adds nothing, and the hold under way counts when read. Then a limiter
 * driven the way virtio-blk drives it (consume, hold while refused,
 * release when its timer would fire) accumulates exactly the waits it
 * asked for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "virtio/ratelimit.h"

#define MS 1000000ULL

static void test_holds_add_up(void **state)
{
	struct rl_throttle t = { 0 };

	(void)state;
	assert_int_equal(rl_throttle_ns(&t, 5 * MS), 0);
	rl_throttle_release(&t, 5 * MS); /* not held: nothing */
	assert_int_equal(rl_throttle_ns(&t, 6 * MS), 0);
	rl_throttle_hold(&t, 10 * MS);
	/* Under way: counted up to the reading. */
	assert_int_equal(rl_throttle_ns(&t, 13 * MS), 3 * MS);
	rl_throttle_hold(&t, 14 * MS); /* refused again while held: same hold */
	rl_throttle_release(&t, 17 * MS);
	assert_int_equal(rl_throttle_ns(&t, 100 * MS), 7 * MS);
	rl_throttle_release(&t, 120 * MS); /* a second release adds nothing */
	assert_int_equal(rl_throttle_ns(&t, 130 * MS), 7 * MS);
	rl_throttle_hold(&t, 200 * MS);
	rl_throttle_release(&t, 202 * MS);
	assert_int_equal(rl_throttle_ns(&t, 300 * MS), 9 * MS);
	/* A clock that reads 0 still starts a hold. */
	struct rl_throttle z = { 0 };
	rl_throttle_hold(&z, 0);
	rl_throttle_release(&z, 4 * MS);
	assert_in_range(rl_throttle_ns(&z, 4 * MS), 4 * MS - 1, 4 * MS);
	/* A release "before" the hold (clock oddity) adds nothing. */
	struct rl_throttle b = { 0 };
	rl_throttle_hold(&b, 50 * MS);
	rl_throttle_release(&b, 40 * MS);
	assert_int_equal(rl_throttle_ns(&b, 60 * MS), 0);
}

static void test_limited_queue_accumulates_its_waits(void **state)
{
	struct rate_limiter rl;
	struct rl_throttle t = { 0 };
	/* 1 MiB/s: a 1 MiB bucket refilled in 1 s; 64 KiB requests. */
	struct token_bucket_config bw = { .size = 1 << 20, .refill_time_ms = 1000 };
	struct token_bucket_config ops = { 0 };
	uint64_t now = 1000 * MS, waited = 0, done = 0;

	(void)state;
	assert_int_equal(rate_limiter_init(&rl, &bw, &ops, now), 0);
	/* 48 requests of 64 KiB = 3 MiB: the first 16 pass at once (a full
	 * bucket), the rest wait for tokens. */
	while (done < 48) {
		uint64_t wait = rate_limiter_consume(&rl, 64 << 10, now);
		if (!wait) {
			done++;
			continue;
		}
		rl_throttle_hold(&t, now);
		now += wait; /* the device's timer fires */
		waited += wait;
		rl_throttle_release(&t, now);
	}
	assert_int_equal(rl_throttle_ns(&t, now), waited);
	/* 2 MiB beyond the bucket at 1 MiB/s: about 2 s held. */
	assert_in_range(rl_throttle_ns(&t, now), 1990 * MS, 2010 * MS);

	/* An unlimited limiter never refuses: nothing held. */
	struct rate_limiter off;
	struct rl_throttle t2 = { 0 };
	assert_int_equal(rate_limiter_init(&off, &ops, &ops, now), 0);
	for (int i = 0; i < 1000; i++)
		if (rate_limiter_consume(&off, 1 << 20, now))
			rl_throttle_hold(&t2, now);
	assert_int_equal(rl_throttle_ns(&t2, now + 1000 * MS), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_holds_add_up),
		cmocka_unit_test(test_limited_queue_accumulates_its_waits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
