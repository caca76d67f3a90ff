/*
 * fnlib.c - the runtime's CPL3 side: the job entry point user_run()
 * starts, and the services of fn.h.
 *
 * fn_clock_ns() and fn_random() run entirely at CPL3, as a vDSO would:
 * no crossing into the runtime (which costs an exception, and CPL0 code
 * is emulated on the development machines). fn_log() and fn_sleep_ns()
 * need the runtime (serial port, hlt) and are user calls (ud2, user.h):
 * `syscall` and `int N` do not reach CPL0 on the nested hypervisor here,
 * an exception does, both here and on real hosts.
 */
#include "fn.h"
#include "fn_internal.h"

uint64_t fn_tsc_base, fn_tsc_mult;
struct fn_job fn_job;

/* ---- randomness: xoshiro256**, state mixed with every request's seed ---- */

static uint64_t rng_s[4] = { 0x6d6f74652d666e31ULL, 0x9e3779b97f4a7c15ULL,
			     0xbf58476d1ce4e5b9ULL, 0x94d049bb133111ebULL };

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void)
{
	uint64_t result = rotl(rng_s[1] * 5, 7) * 9;
	uint64_t t = rng_s[1] << 17;

	rng_s[2] ^= rng_s[0];
	rng_s[3] ^= rng_s[1];
	rng_s[1] ^= rng_s[2];
	rng_s[0] ^= rng_s[3];
	rng_s[2] ^= t;
	rng_s[3] = rotl(rng_s[3], 45);
	return result;
}

/* Clones restored from one snapshot share rng_s; the host's fresh seed
 * makes their streams differ from the first request on. */
static void rng_mix(const uint8_t seed[16])
{
	uint64_t a, b;

	memcpy(&a, seed, 8);
	memcpy(&b, seed + 8, 8);
	for (int i = 0; i < 4; i++) {
		uint64_t x = rng_s[i] ^ (i & 1 ? b : a) ^ (uint64_t)i << 56;
		rng_s[i] = splitmix64(&x);
	}
	if (!(rng_s[0] | rng_s[1] | rng_s[2] | rng_s[3]))
		rng_s[0] = 1;
}

void fn_random(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		uint64_t r = rng_next();
		size_t n = len < 8 ? len : 8;

		memcpy(p, &r, n);
		p += n;
		len -= n;
	}
}

/* ---- clock, log, sleep ------------------------------------------------- */

uint64_t fn_clock_ns(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	uint64_t delta = (((uint64_t)hi << 32) | lo) - fn_tsc_base;
	return (uint64_t)(((unsigned __int128)delta * fn_tsc_mult) >> 32);
}

void fn_log(const char *msg)
{
	user_call(FN_CALL_LOG, (uint64_t)(uintptr_t)msg, fn_strlen(msg));
}

void fn_sleep_ns(uint64_t ns)
{
	user_call(FN_CALL_SLEEP, ns, 0);
}

/* ---- small helpers ------------------------------------------------------- */

size_t fn_strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

size_t fn_fmt_u64(char *out, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

int fn_parse_u64(const char **p, const char *end, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;

	while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
		s++;
	if (s >= end || *s < '0' || *s > '9')
		return -1;
	while (s < end && *s >= '0' && *s <= '9') {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
		s++;
	}
	*p = s;
	*out = v;
	return 0;
}

/* ---- the job ----------------------------------------------------------- */

uint64_t fn_user_entry(uint64_t arg)
{
	struct fn_job *job = (struct fn_job *)(uintptr_t)arg;

	for (uint32_t i = 0; i < job->nseg && i < FN_SEG_MAX; i++)
		memcpy(job->seg[i].dst, job->seg[i].src, job->seg[i].len);
	if (job->op == FN_JOB_CALL) {
		rng_mix(job->seed);
		job->resp_len = 0;
		job->ret = fn_handle(job->req, job->req_len, job->resp, job->resp_cap,
				     &job->resp_len);
	} else if (job->op == FN_JOB_INIT && fn_init) {
		fn_init();
	}
	return FN_RUN_DONE;
}
