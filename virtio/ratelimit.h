/* Token-bucket rate limiter in the shape of Firecracker's: one bucket for
 * bandwidth (bytes) and one for operations, each with a size, a refill time
 * (from empty to full) and a one-time burst spent before the bucket.
 * Pure arithmetic on a caller-supplied clock, so it is unit-testable; the
 * device arms a timer for the wait it returns. */
#ifndef MOTE_VIRTIO_RATELIMIT_H
#define MOTE_VIRTIO_RATELIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct token_bucket {
	uint64_t size;            /* 0: this bucket does not limit */
	uint64_t refill_time_ms;
	uint64_t one_time_burst;  /* remaining */
	int64_t budget;           /* may go negative after an oversized request */
	uint64_t last_ns;
};

enum { RL_BYTES, RL_OPS, RL_NR };

struct rate_limiter {
	struct token_bucket bucket[RL_NR];
};

struct token_bucket_config {
	uint64_t size;
	uint64_t refill_time_ms;
	uint64_t one_time_burst;
};

/* -EINVAL if size is set without a refill time. */
int token_bucket_init(struct token_bucket *tb, const struct token_bucket_config *cfg, uint64_t now_ns);
int rate_limiter_init(struct rate_limiter *rl, const struct token_bucket_config *bytes,
		      const struct token_bucket_config *ops, uint64_t now_ns);
bool rate_limiter_enabled(const struct rate_limiter *rl);

/* What a snapshot keeps of a limiter: each bucket's tokens and remaining
 * one-time burst as of the save (Firecracker keeps them too), so a restored
 * device, or each clone of it, cannot burst past its limits. The clock is
 * not kept: another process's CLOCK_MONOTONIC means nothing here, and time
 * spent in the snapshot earns no tokens. */
struct rate_limiter_state {
	struct {
		int64_t budget;
		uint64_t one_time_burst;
	} bucket[RL_NR];
};

void rate_limiter_save(struct rate_limiter *rl, uint64_t now_ns, struct rate_limiter_state *out);
/* Onto a limiter set up (rate_limiter_init) from the same config: values
 * from the file are clamped to what that config allows (a full bucket, the
 * configured burst), so a damaged state file cannot lift a limit. */
void rate_limiter_restore(struct rate_limiter *rl, const struct rate_limiter_state *in,
			  uint64_t now_ns);

/* Throttled time of a device queue (a metric): how long the queue has
 * waited on its limiter, from the refusal that held it to the moment it
 * was let go (the limiter's timer fired, or a reset). The device marks
 * hold and release under its lock; any thread reads without a lock (a
 * reader racing a release may miss or double one hold for that read). */
struct rl_throttle {
	_Atomic uint64_t total_ns; /* of the holds that ended */
	_Atomic uint64_t since_ns; /* start of the hold under way, 0 if none */
};

/* Starts a hold at now_ns; a queue already held stays held since then. */
void rl_throttle_hold(struct rl_throttle *t, uint64_t now_ns);
/* Ends the hold under way, if any. */
void rl_throttle_release(struct rl_throttle *t, uint64_t now_ns);
/* Throttled ns so far, the hold under way included. */
uint64_t rl_throttle_ns(const struct rl_throttle *t, uint64_t now_ns);

/* Takes `bytes` and one operation if both buckets allow it and returns 0;
 * otherwise takes nothing and returns the nanoseconds to wait before
 * trying again. A request larger than a whole bucket passes when that
 * bucket is full and leaves it in debt, so it cannot starve. */
uint64_t rate_limiter_consume(struct rate_limiter *rl, uint64_t bytes, uint64_t now_ns);

#endif
