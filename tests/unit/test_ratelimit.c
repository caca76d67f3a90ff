/* Token-bucket rate limiter: arithmetic on a fake clock (the limiter never
 * reads time itself, every call takes "now" in nanoseconds). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "virtio/ratelimit.h"

#define MS  1000000ULL
#define SEC 1000000000ULL
#define T0  (1000 * SEC) /* an arbitrary start on the monotonic clock */

static const struct token_bucket_config off = { 0 };

/* A limiter on bytes only (ops unlimited). */
static void init_bytes(struct rate_limiter *rl, uint64_t size, uint64_t refill_ms, uint64_t burst)
{
	const struct token_bucket_config b = { size, refill_ms, burst };

	assert_int_equal(rate_limiter_init(rl, &b, &off, T0), 0);
}

static void init_ops(struct rate_limiter *rl, uint64_t size, uint64_t refill_ms)
{
	const struct token_bucket_config o = { size, refill_ms, 0 };

	assert_int_equal(rate_limiter_init(rl, &off, &o, T0), 0);
}

/* The wait for `missing` tokens of a bucket refilling `size` per `refill_ms`. */
static uint64_t wait_for(uint64_t missing, uint64_t size, uint64_t refill_ms)
{
	return (missing * refill_ms * MS + size - 1) / size;
}

static void test_disabled_never_limits(void **state)
{
	struct rate_limiter rl;

	(void)state;
	assert_int_equal(rate_limiter_init(&rl, NULL, NULL, T0), 0);
	assert_false(rate_limiter_enabled(&rl));
	for (unsigned i = 0; i < 1000; i++)
		assert_int_equal(rate_limiter_consume(&rl, UINT64_MAX / 2, T0), 0);
	assert_int_equal(rate_limiter_init(&rl, &off, &off, T0), 0);
	assert_false(rate_limiter_enabled(&rl));
	assert_int_equal(rate_limiter_consume(&rl, UINT64_MAX, 0), 0);
	/* size 0 disables even with a refill time */
	const struct token_bucket_config zero = { 0, 1000, 5 };
	assert_int_equal(rate_limiter_init(&rl, &zero, &zero, T0), 0);
	assert_false(rate_limiter_enabled(&rl));
	assert_int_equal(rate_limiter_consume(&rl, 1ULL << 40, T0), 0);
}

static void test_init_rejects_size_without_refill(void **state)
{
	struct rate_limiter rl;
	struct token_bucket tb;
	const struct token_bucket_config bad = { 1000, 0, 0 };
	const struct token_bucket_config good = { 1000, 1000, 0 };

	(void)state;
	assert_int_equal(token_bucket_init(&tb, &bad, T0), -EINVAL);
	assert_int_equal(rate_limiter_init(&rl, &bad, &good, T0), -EINVAL);
	assert_int_equal(rate_limiter_init(&rl, &good, &bad, T0), -EINVAL);
	assert_int_equal(token_bucket_init(&tb, &good, T0), 0);
	assert_int_equal(tb.budget, 1000);
	assert_int_equal(tb.size, 1000);
	/* Sizes the signed budget cannot hold are refused. */
	const struct token_bucket_config huge = { (1ULL << 63), 1000, 0 };
	assert_int_equal(token_bucket_init(&tb, &huge, T0), -EINVAL);
}

static void test_enabled_by_either_bucket(void **state)
{
	struct rate_limiter rl;

	(void)state;
	init_bytes(&rl, 1000, 1000, 0);
	assert_true(rate_limiter_enabled(&rl));
	init_ops(&rl, 10, 1000);
	assert_true(rate_limiter_enabled(&rl));
}

static void test_size_and_refill(void **state)
{
	struct rate_limiter rl;

	(void)state;
	init_bytes(&rl, 1000, 1000, 0);
	assert_int_equal(rate_limiter_consume(&rl, 600, T0), 0);
	/* 400 left, 500 wanted: 100 bytes at 1 byte/ms */
	uint64_t w = rate_limiter_consume(&rl, 500, T0);
	assert_int_equal(w, 100 * MS);
	/* Nothing was taken by the refusal. */
	assert_int_equal(rate_limiter_consume(&rl, 400, T0), 0);
	assert_int_not_equal(rate_limiter_consume(&rl, 1, T0), 0);

	init_bytes(&rl, 1000, 1000, 0);
	assert_int_equal(rate_limiter_consume(&rl, 600, T0), 0);
	assert_int_not_equal(rate_limiter_consume(&rl, 500, T0 + 99 * MS), 0);
	assert_int_equal(rate_limiter_consume(&rl, 500, T0 + 100 * MS), 0);
	/* Bucket empty now: 1 ms per byte. */
	assert_int_equal(rate_limiter_consume(&rl, 10, T0 + 100 * MS), 10 * MS);
	assert_int_equal(rate_limiter_consume(&rl, 10, T0 + 110 * MS), 0);
}

static void test_waiting_the_returned_time_is_enough(void **state)
{
	struct rate_limiter rl;
	uint64_t now = T0;

	(void)state;
	/* Odd numbers so the divisions do not come out even. */
	init_bytes(&rl, 777, 333, 0);
	assert_int_equal(rate_limiter_consume(&rl, 777, now), 0);
	uint64_t total = 777;
	for (unsigned i = 0; i < 200; i++) {
		uint64_t want = 1 + (i * 37) % 777;
		uint64_t w = rate_limiter_consume(&rl, want, now);
		if (w) {
			assert_true(w <= wait_for(want, 777, 333));
			now += w;
			assert_int_equal(rate_limiter_consume(&rl, want, now), 0);
		}
		total += want;
	}
	/* Over the whole run the rate held: at most size + elapsed * rate. */
	assert_true(total <= 777 + (now - T0) * 777 / (333 * MS));
}

static void test_fractions_accumulate(void **state)
{
	struct rate_limiter rl;

	(void)state;
	/* 1000 tokens per second: one per ms. Polling every 0.3 ms must not
	 * lose the fractions. */
	init_bytes(&rl, 1000, 1000, 0);
	assert_int_equal(rate_limiter_consume(&rl, 1000, T0), 0);
	uint64_t now = T0;
	unsigned got = 0;
	for (unsigned i = 0; i < 1000; i++) {
		now += 300000;
		if (rate_limiter_consume(&rl, 1, now) == 0)
			got++;
	}
	/* 300 ms elapsed: 300 tokens, give or take one. */
	assert_in_range(got, 299, 300);
}

static void test_refill_caps_at_size(void **state)
{
	struct rate_limiter rl;

	(void)state;
	init_bytes(&rl, 1000, 1000, 0);
	assert_int_equal(rate_limiter_consume(&rl, 1000, T0), 0);
	/* An hour idle refills one bucket, not 3600. */
	uint64_t later = T0 + 3600 * SEC;
	assert_int_equal(rate_limiter_consume(&rl, 1000, later), 0);
	assert_int_equal(rate_limiter_consume(&rl, 1, later), MS);
	assert_int_equal(rl.bucket[RL_BYTES].budget, 0);
}

static void test_clock_going_backwards_is_harmless(void **state)
{
	struct rate_limiter rl;

	(void)state;
	init_bytes(&rl, 1000, 1000, 0);
	assert_int_equal(rate_limiter_consume(&rl, 1000, T0), 0);
	assert_int_not_equal(rate_limiter_consume(&rl, 1, T0 - SEC), 0);
	assert_int_not_equal(rate_limiter_consume(&rl, 1, 0), 0);
	assert_int_equal(rate_limiter_consume(&rl, 1, T0 + MS), 0);
}

static void test_one_time_burst_first(void **state)
{
	struct rate_limiter rl;

	(void)state;
	init_bytes(&rl, 1000, 1000, 5000);
	/* The burst goes first and leaves the bucket full. */
	assert_int_equal(rate_limiter_consume(&rl, 3000, T0), 0);
	assert_int_equal(rl.bucket[RL_BYTES].budget, 1000);
	assert_int_equal(rl.bucket[RL_BYTES].one_time_burst, 2000);
	/* Straddling: the rest of the burst, then the bucket. */
	assert_int_equal(rate_limiter_consume(&rl, 2500, T0), 0);
	assert_int_equal(rl.bucket[RL_BYTES].one_time_burst, 0);
	assert_int_equal(rl.bucket[RL_BYTES].budget, 500);
	assert_int_equal(rate_limiter_consume(&rl, 500, T0), 0);
	assert_int_equal(rate_limiter_consume(&rl, 1, T0), MS);
	/* The burst never comes back. */
	assert_int_equal(rate_limiter_consume(&rl, 1000, T0 + 3600 * SEC), 0);
	assert_int_equal(rl.bucket[RL_BYTES].one_time_burst, 0);
	assert_int_not_equal(rate_limiter_consume(&rl, 1, T0 + 3600 * SEC), 0);
}

static void test_burst_too_small_for_request_waits_on_bucket(void **state)
{
	struct rate_limiter rl;

	(void)state;
	init_bytes(&rl, 1000, 1000, 100);
	assert_int_equal(rate_limiter_consume(&rl, 900, T0), 0); /* 100 burst + 800 */
	assert_int_equal(rl.bucket[RL_BYTES].budget, 200);
	assert_int_equal(rate_limiter_consume(&rl, 300, T0), 100 * MS);
	assert_int_equal(rl.bucket[RL_BYTES].budget, 200);
}

static void test_oversized_request_passes_when_full_and_leaves_debt(void **state)
{
	struct rate_limiter rl;

	(void)state;
	init_bytes(&rl, 1000, 1000, 0);
	assert_int_equal(rate_limiter_consume(&rl, 1, T0), 0);
	/* Not full: a 5000-byte request waits until it is. */
	assert_int_equal(rate_limiter_consume(&rl, 5000, T0), MS);
	assert_int_equal(rate_limiter_consume(&rl, 5000, T0 + MS), 0);
	assert_int_equal(rl.bucket[RL_BYTES].budget, -4000);
	/* Now even one byte waits for the debt plus itself: 4001 ms. */
	assert_int_equal(rate_limiter_consume(&rl, 1, T0 + MS), 4001 * MS);
	assert_int_not_equal(rate_limiter_consume(&rl, 1, T0 + 4001 * MS), 0);
	assert_int_equal(rate_limiter_consume(&rl, 1, T0 + 4002 * MS), 0);
}

static void test_both_buckets_must_allow(void **state)
{
	struct rate_limiter rl;
	const struct token_bucket_config bytes = { 1000, 1000, 0 };
	const struct token_bucket_config ops = { 2, 1000, 0 };

	(void)state;
	assert_int_equal(rate_limiter_init(&rl, &bytes, &ops, T0), 0);
	assert_int_equal(rate_limiter_consume(&rl, 100, T0), 0);
	assert_int_equal(rate_limiter_consume(&rl, 100, T0), 0);
	/* Bytes would allow, ops refuse: nothing taken from bytes. */
	uint64_t w = rate_limiter_consume(&rl, 100, T0);
	assert_int_equal(w, 500 * MS); /* one op per 500 ms */
	assert_int_equal(rl.bucket[RL_BYTES].budget, 800);
	assert_int_equal(rl.bucket[RL_OPS].budget, 0);

	/* Ops would allow, bytes refuse: nothing taken from ops. */
	assert_int_equal(rate_limiter_init(&rl, &bytes, &ops, T0), 0);
	assert_int_equal(rate_limiter_consume(&rl, 900, T0), 0);
	w = rate_limiter_consume(&rl, 200, T0);
	assert_int_equal(w, 100 * MS);
	assert_int_equal(rl.bucket[RL_OPS].budget, 1);
	assert_int_equal(rl.bucket[RL_BYTES].budget, 100);

	/* Both refuse: the longer wait wins. */
	assert_int_equal(rate_limiter_consume(&rl, 100, T0), 0); /* bytes 0, ops 0 */
	w = rate_limiter_consume(&rl, 10, T0);
	assert_int_equal(w, 500 * MS);
	w = rate_limiter_consume(&rl, 900, T0);
	assert_int_equal(w, 900 * MS);
}

static void test_ops_bucket_counts_requests(void **state)
{
	struct rate_limiter rl;

	(void)state;
	init_ops(&rl, 100, 1000);
	for (unsigned i = 0; i < 100; i++)
		assert_int_equal(rate_limiter_consume(&rl, 1ULL << 30, T0), 0);
	assert_int_equal(rate_limiter_consume(&rl, 0, T0), 10 * MS);
	assert_int_equal(rate_limiter_consume(&rl, 0, T0 + 10 * MS), 0);
}

static void test_huge_sizes_and_long_idle(void **state)
{
	struct rate_limiter rl;
	const uint64_t size = 1ULL << 62;
	const uint64_t ten_years = 10ULL * 365 * 24 * 3600 * SEC;

	(void)state;
	init_bytes(&rl, size, 1000, 0);
	assert_int_equal(rate_limiter_consume(&rl, size, T0), 0);
	assert_int_equal(rl.bucket[RL_BYTES].budget, 0);
	/* Half a second: half a bucket, computed without overflowing. */
	assert_int_equal(rate_limiter_consume(&rl, size / 2, T0 + 500 * MS), 0);
	assert_int_not_equal(rate_limiter_consume(&rl, size / 2, T0 + 500 * MS), 0);
	/* Ten years idle: exactly full, not more, not wrapped. */
	uint64_t later = T0 + ten_years;
	assert_int_equal(rate_limiter_consume(&rl, size, later), 0);
	assert_int_equal(rl.bucket[RL_BYTES].budget, 0);
	uint64_t w = rate_limiter_consume(&rl, size, later);
	assert_int_equal(w, 1000 * MS);

	/* The largest bucket the budget can hold, with a long refill. */
	const uint64_t max = (uint64_t)INT64_MAX;
	init_bytes(&rl, max, 10ULL * 365 * 24 * 3600 * 1000, 0);
	assert_int_equal(rate_limiter_consume(&rl, max, T0), 0);
	w = rate_limiter_consume(&rl, max, T0);
	assert_int_equal(w, ten_years);
	assert_int_equal(rate_limiter_consume(&rl, max, T0 + ten_years), 0);
	assert_int_equal(rate_limiter_consume(&rl, max / 2, UINT64_MAX), 0);
	assert_int_equal(rl.bucket[RL_BYTES].budget, max - max / 2);

	/* A tiny bucket, a long refill and a very long idle. */
	init_bytes(&rl, 1, UINT64_MAX / MS / 2, 0);
	assert_int_equal(rate_limiter_consume(&rl, 1, 0), 0);
	assert_int_not_equal(rate_limiter_consume(&rl, 1, 0), 0);
	assert_int_equal(rate_limiter_consume(&rl, 1, UINT64_MAX), 0);
}

static void test_oversized_huge_debt_waits_without_overflow(void **state)
{
	struct rate_limiter rl;

	(void)state;
	/* 1000 bytes/s and a 1 GiB request: twelve days of debt. */
	init_bytes(&rl, 1000, 1000, 0);
	assert_int_equal(rate_limiter_consume(&rl, 1ULL << 30, T0), 0);
	assert_int_equal(rl.bucket[RL_BYTES].budget, 1000 - (1LL << 30));
	uint64_t w = rate_limiter_consume(&rl, 1, T0);
	assert_int_equal(w, ((1ULL << 30) - 999) * MS);
	assert_int_equal(rate_limiter_consume(&rl, 1, T0 + w), 0);
}

static void test_regression_wait_longer_than_u64_saturates(void **state)
{
	struct rate_limiter rl;

	(void)state;
	/* 1 byte/s and an oversized 2^58-byte request: the debt takes 2^58 s
	 * to repay, more nanoseconds than a u64 holds. The wait must say
	 * "very long", not wrap around to a tiny number (the caller would
	 * re-arm a 1 ns timer forever). */
	init_bytes(&rl, 1, 1000, 0);
	assert_int_equal(rate_limiter_consume(&rl, 1ULL << 58, T0), 0);
	uint64_t w = rate_limiter_consume(&rl, 1, T0);
	assert_true(w >= UINT64_MAX / 2);
}

static void test_regression_request_above_int64_max_leaves_debt(void **state)
{
	struct rate_limiter rl;

	(void)state;
	/* An oversized request passes on a full bucket and must leave it in
	 * debt, whatever its size: the budget must not wrap to a credit. */
	init_bytes(&rl, 1000, 1000, 0);
	assert_int_equal(rate_limiter_consume(&rl, UINT64_MAX, T0), 0);
	assert_true(rl.bucket[RL_BYTES].budget <= 0);
	assert_int_not_equal(rate_limiter_consume(&rl, 1, T0), 0);
}

static void test_regression_refill_time_overflowing_ns_rejected(void **state)
{
	struct token_bucket tb;
	/* 2^58 ms is 2^64 * 15625 ns: refill_time_ms * 1e6 wraps to exactly
	 * 0 in 64 bits and consume() divides by it. Refuse it at init. */
	const struct token_bucket_config cfg = { 1000, 1ULL << 58, 0 };

	(void)state;
	assert_int_equal(token_bucket_init(&tb, &cfg, T0), -EINVAL);
	/* The largest refill time that fits in ns is fine. */
	const struct token_bucket_config ok = { 1000, UINT64_MAX / MS, 0 };
	assert_int_equal(token_bucket_init(&tb, &ok, T0), 0);
}


/* A snapshot keeps the tokens: a limiter drained before the save is still
 * drained after the restore in another process (another clock), and gets
 * tokens back only as time passes after it. */
static void test_save_restore_keeps_tokens(void **state)
{
	(void)state;
	struct rate_limiter rl, back;
	struct rate_limiter_state st;

	init_bytes(&rl, 1000, 1000, 300);               /* 1000 B/s, burst 300 */
	assert_int_equal(rate_limiter_consume(&rl, 300, T0), 0);  /* the burst */
	assert_int_equal(rate_limiter_consume(&rl, 900, T0), 0);  /* 100 left */
	rate_limiter_save(&rl, T0 + 50 * MS, &st);      /* +50 tokens by then */
	assert_int_equal(st.bucket[RL_BYTES].budget, 150);
	assert_int_equal(st.bucket[RL_BYTES].one_time_burst, 0);

	const uint64_t t1 = 7 * SEC; /* the restoring process's clock */
	const struct token_bucket_config b = { 1000, 1000, 300 };
	assert_int_equal(rate_limiter_init(&back, &b, &off, t1), 0);
	rate_limiter_restore(&back, &st, t1);
	/* Not the full bucket and burst a fresh limiter would have. */
	assert_true(rate_limiter_consume(&back, 200, t1) > 0);
	assert_int_equal(rate_limiter_consume(&back, 150, t1), 0);
	/* 100 ms later, 100 tokens more. */
	assert_true(rate_limiter_consume(&back, 101, t1 + 100 * MS) > 0);
	assert_int_equal(rate_limiter_consume(&back, 100, t1 + 100 * MS), 0);
}

/* A damaged state file cannot lift a limit: more tokens than a bucket
 * holds, a bigger burst than configured and a bottomless debt are clamped;
 * buckets the config does not enable stay off. */
static void test_restore_clamps_state(void **state)
{
	(void)state;
	struct rate_limiter rl;
	struct rate_limiter_state st;

	init_bytes(&rl, 1000, 1000, 10);
	memset(&st, 0, sizeof(st));
	st.bucket[RL_BYTES].budget = INT64_MAX;
	st.bucket[RL_BYTES].one_time_burst = UINT64_MAX;
	st.bucket[RL_OPS].budget = 5;
	rate_limiter_restore(&rl, &st, T0);
	assert_int_equal(rl.bucket[RL_BYTES].budget, 1000);
	assert_int_equal(rl.bucket[RL_BYTES].one_time_burst, 10);
	assert_int_equal(rl.bucket[RL_OPS].size, 0);
	assert_int_equal(rl.bucket[RL_OPS].budget, 0);
	st.bucket[RL_BYTES].budget = INT64_MIN;
	rate_limiter_restore(&rl, &st, T0);
	assert_int_equal(rl.bucket[RL_BYTES].budget, -1000);
	/* Two seconds refill the debt and the bucket: it works again. */
	assert_int_equal(rate_limiter_consume(&rl, 1000, T0 + 2 * SEC), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_disabled_never_limits),
		cmocka_unit_test(test_init_rejects_size_without_refill),
		cmocka_unit_test(test_enabled_by_either_bucket),
		cmocka_unit_test(test_size_and_refill),
		cmocka_unit_test(test_waiting_the_returned_time_is_enough),
		cmocka_unit_test(test_fractions_accumulate),
		cmocka_unit_test(test_refill_caps_at_size),
		cmocka_unit_test(test_clock_going_backwards_is_harmless),
		cmocka_unit_test(test_one_time_burst_first),
		cmocka_unit_test(test_burst_too_small_for_request_waits_on_bucket),
		cmocka_unit_test(test_oversized_request_passes_when_full_and_leaves_debt),
		cmocka_unit_test(test_both_buckets_must_allow),
		cmocka_unit_test(test_ops_bucket_counts_requests),
		cmocka_unit_test(test_huge_sizes_and_long_idle),
		cmocka_unit_test(test_oversized_huge_debt_waits_without_overflow),
		cmocka_unit_test(test_regression_wait_longer_than_u64_saturates),
		cmocka_unit_test(test_regression_request_above_int64_max_leaves_debt),
		cmocka_unit_test(test_regression_refill_time_overflowing_ns_rejected),
		cmocka_unit_test(test_save_restore_keeps_tokens),
		cmocka_unit_test(test_restore_clamps_state),
	};

	return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
