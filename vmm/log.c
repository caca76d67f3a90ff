#include "vmm/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum log_level log_max_level = LOG_INFO;

static uint64_t exec_ns;

uint64_t time_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

__attribute__((constructor(101))) static void log_init_clock(void)
{
	const char *t0 = getenv("MOTE_T0_NS");
	uint64_t now = time_now_ns();

	exec_ns = now;
	if (t0 && *t0) {
		char *end;
		unsigned long long v = strtoull(t0, &end, 10);

		/* Trust the launcher's stamp only if it is plausible. */
		if (*end == '\0' && v > 0 && v <= now)
			exec_ns = v;
	}
}

uint64_t time_exec_ns(void)
{
	return exec_ns;
}

uint64_t time_since_exec_us(void)
{
	return (time_now_ns() - exec_ns) / 1000;
}

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int log_parse_level(const char *name, enum log_level *out)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	if (level > log_max_level)
		return;
	uint64_t us = time_since_exec_us();
	n = snprintf(buf, sizeof(buf), "[mote %6llu.%03llu ms] %s: ",
		     (unsigned long long)(us / 1000), (unsigned long long)(us % 1000),
		     level_names[level]);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(buf))
		vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One fputs per line so lines from vCPU threads don't interleave. */
	size_t len = strlen(buf);
	if (len < sizeof(buf) - 1) {
		buf[len] = '\n';
		buf[len + 1] = '\0';
	}
	fputs(buf, stderr);
}
