#include "virtio/ratelimit.h"

#include <errno.h>
#include <string.h>

#define NS_PER_MS 1000000ULL

int token_bucket_init(struct token_bucket *tb, const struct token_bucket_config *cfg, uint64_t now_ns)
{
	memset(tb, 0, sizeof(*tb));
	if (!cfg || cfg->size == 0)
		return 0;
	if (cfg->refill_time_ms == 0 || cfg->refill_time_ms > UINT64_MAX / NS_PER_MS ||
	    cfg->size > INT64_MAX)
		return -EINVAL;
	tb->size = cfg->size;
	tb->refill_time_ms = cfg->refill_time_ms;
	tb->one_time_burst = cfg->one_time_burst;
	tb->budget = (int64_t)cfg->size;
	tb->last_ns = now_ns;
	return 0;
}

int rate_limiter_init(struct rate_limiter *rl, const struct token_bucket_config *bytes,
		      const struct token_bucket_config *ops, uint64_t now_ns)
{
	int ret = token_bucket_init(&rl->bucket[RL_BYTES], bytes, now_ns);

	return ret ? ret : token_bucket_init(&rl->bucket[RL_OPS], ops, now_ns);
}

bool rate_limiter_enabled(const struct rate_limiter *rl)
{
	return rl->bucket[RL_BYTES].size || rl->bucket[RL_OPS].size;
}

static void token_bucket_refill(struct token_bucket *tb, uint64_t now_ns)
{
	if (now_ns <= tb->last_ns)
		return;
	uint64_t elapsed = now_ns - tb->last_ns;
	uint64_t refill_ns = tb->refill_time_ms * NS_PER_MS;
	/* tokens = elapsed * size / refill_ns, without overflowing 64 bits. */
	__uint128_t add = (__uint128_t)elapsed * tb->size / refill_ns;
	if (add == 0)
		return; /* keep last_ns so fractions accumulate */
	__int128 budget = (__int128)tb->budget + (__int128)add;
	tb->budget = budget > (__int128)tb->size ? (int64_t)tb->size : (int64_t)budget;
	/* Advance by the time the added tokens represent. */
	tb->last_ns += (uint64_t)((__uint128_t)add * refill_ns / tb->size);
	if (tb->budget == (int64_t)tb->size)
		tb->last_ns = now_ns;
}

/* 0 if `tokens` can be taken now; else the wait in ns. Takes nothing. */
static uint64_t token_bucket_wait(const struct token_bucket *tb, uint64_t tokens)
{
	if (!tb->size)
		return 0;
	if (tokens <= tb->one_time_burst)
		return 0;
	uint64_t need = tokens - tb->one_time_burst;
	if (need > tb->size)
		need = tb->size; /* oversized: wait for a full bucket */
	if (tb->budget >= (int64_t)need)
		return 0;
	/* need <= INT64_MAX and budget >= INT64_MIN: fits in 64 bits. */
	uint64_t missing = (uint64_t)((__int128)need - tb->budget);
	uint64_t refill_ns = tb->refill_time_ms * NS_PER_MS;
	__uint128_t wait = ((__uint128_t)missing * refill_ns + tb->size - 1) / tb->size;
	if (wait > UINT64_MAX)
		return UINT64_MAX;
	return wait ? (uint64_t)wait : 1;
}

static void token_bucket_take(struct token_bucket *tb, uint64_t tokens)
{
	if (!tb->size)
		return;
	if (tokens <= tb->one_time_burst) {
		tb->one_time_burst -= tokens;
		return;
	}
	tokens -= tb->one_time_burst;
	tb->one_time_burst = 0;
	/* Debt saturates rather than wrapping round to credit. */
	__int128 budget = (__int128)tb->budget - (__int128)tokens;
	tb->budget = budget < INT64_MIN ? INT64_MIN : (int64_t)budget;
}

uint64_t rate_limiter_consume(struct rate_limiter *rl, uint64_t bytes, uint64_t now_ns)
{
	const uint64_t want[RL_NR] = { bytes, 1 };
	uint64_t wait = 0;

	for (int i = 0; i < RL_NR; i++) {
		if (!rl->bucket[i].size)
			continue;
		token_bucket_refill(&rl->bucket[i], now_ns);
		uint64_t w = token_bucket_wait(&rl->bucket[i], want[i]);
		if (w > wait)
			wait = w;
	}
	if (wait)
		return wait;
	for (int i = 0; i < RL_NR; i++)
		token_bucket_take(&rl->bucket[i], want[i]);
	return 0;
}

void rate_limiter_save(struct rate_limiter *rl, uint64_t now_ns, struct rate_limiter_state *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < RL_NR; i++) {
		struct token_bucket *tb = &rl->bucket[i];

		if (!tb->size)
			continue;
		token_bucket_refill(tb, now_ns);
		out->bucket[i].budget = tb->budget;
		out->bucket[i].one_time_burst = tb->one_time_burst;
	}
}

void rate_limiter_restore(struct rate_limiter *rl, const struct rate_limiter_state *in,
			  uint64_t now_ns)
{
	for (int i = 0; i < RL_NR; i++) {
		struct token_bucket *tb = &rl->bucket[i];

		if (!tb->size)
			continue;
		/* init left the configured burst and a full bucket: the most a
		 * state may claim. Debt down to one bucket's worth below zero
		 * is kept (an oversized request's), deeper debt is clamped. */
		int64_t budget = in->bucket[i].budget;
		int64_t floor = -(int64_t)tb->size;
		if (budget > (int64_t)tb->size)
			budget = (int64_t)tb->size;
		if (budget < floor)
			budget = floor;
		tb->budget = budget;
		if (in->bucket[i].one_time_burst < tb->one_time_burst)
			tb->one_time_burst = in->bucket[i].one_time_burst;
		tb->last_ns = now_ns;
	}
}

void rl_throttle_hold(struct rl_throttle *t, uint64_t now_ns)
{
	/* 0 means "not held": a clock reading of 0 counts from 1 ns. */
	if (!atomic_load_explicit(&t->since_ns, memory_order_relaxed))
		atomic_store_explicit(&t->since_ns, now_ns ? now_ns : 1, memory_order_relaxed);
}

void rl_throttle_release(struct rl_throttle *t, uint64_t now_ns)
{
	uint64_t since = atomic_exchange_explicit(&t->since_ns, 0, memory_order_relaxed);

	if (since && now_ns > since)
		atomic_fetch_add_explicit(&t->total_ns, now_ns - since, memory_order_relaxed);
}

uint64_t rl_throttle_ns(const struct rl_throttle *t, uint64_t now_ns)
{
	uint64_t total = atomic_load_explicit(&t->total_ns, memory_order_relaxed);
	uint64_t since = atomic_load_explicit(&t->since_ns, memory_order_relaxed);

	return total + (since && now_ns > since ? now_ns - since : 0);
}
