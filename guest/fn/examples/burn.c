/* burn.c - a CPU burner with a duty cycle, for the demand experiments.
 *
 * Request: "work_us sleep_us iterations" (decimal, space separated).
 * Repeats `iterations` times: a fixed amount of work (a loop count
 * calibrated at boot to take work_us on an idle CPU: under contention it
 * takes longer but stays the same work), then sleep_us with the vCPU
 * halted. Response: "iterations=N work_us=W sleep_us=S elapsed_us=E\n".
 * Give the request a deadline that covers the run. */
#include "fn.h"

#define CALIB_ITERS  1000000ULL
#define CALIB_ROUNDS 8

static uint64_t iters_per_ms;

static void __attribute__((noinline)) spin(uint64_t n)
{
	uint64_t x = 0;

	for (uint64_t i = 0; i < n; i++)
		__asm__ volatile("add %1, %0" : "+r"(x) : "r"(i));
}

/* The fastest of a few rounds: some round ran undisturbed. */
void fn_init(void)
{
	uint64_t best = ~0ULL;

	for (int r = 0; r < CALIB_ROUNDS; r++) {
		uint64_t t0 = fn_clock_ns();
		spin(CALIB_ITERS);
		uint64_t dt = fn_clock_ns() - t0;
		if (dt && dt < best)
			best = dt;
	}
	iters_per_ms = CALIB_ITERS * 1000000ULL / (best == ~0ULL ? 1000000ULL : best);
}

static uint32_t put(uint8_t *out, const char *s, uint64_t v)
{
	uint32_t n = (uint32_t)fn_strlen(s);

	memcpy(out, s, n);
	return n + (uint32_t)fn_fmt_u64((char *)out + n, v);
}

int fn_handle(const uint8_t *req, uint32_t req_len, uint8_t *resp, uint32_t resp_cap,
	      uint32_t *resp_len)
{
	const char *p = (const char *)req, *end = p + req_len;
	uint64_t work_us, sleep_us, iterations;
	uint32_t n = 0;

	(void)resp_cap;
	if (fn_parse_u64(&p, end, &work_us) || fn_parse_u64(&p, end, &sleep_us) ||
	    fn_parse_u64(&p, end, &iterations)) {
		static const char usage[] = "usage: work_us sleep_us iterations";
		memcpy(resp, usage, sizeof(usage) - 1);
		*resp_len = sizeof(usage) - 1;
		return 1;
	}
	uint64_t work_iters = work_us * iters_per_ms / 1000;
	uint64_t t0 = fn_clock_ns();
	for (uint64_t i = 0; i < iterations; i++) {
		spin(work_iters);
		if (sleep_us)
			fn_sleep_ns(sleep_us * 1000);
	}
	uint64_t elapsed_us = (fn_clock_ns() - t0) / 1000;
	n += put(resp + n, "iterations=", iterations);
	n += put(resp + n, " work_us=", work_us);
	n += put(resp + n, " sleep_us=", sleep_us);
	n += put(resp + n, " elapsed_us=", elapsed_us);
	resp[n++] = '\n';
	*resp_len = n;
	return 0;
}
