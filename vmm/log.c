#include "vmm/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum log_level log_max_level = LOG_INFO;

static int log_fd = STDERR_FILENO;
static bool log_show_level = true;
static bool log_show_origin;
static bool log_off;
static __thread char *capture_buf;
static __thread size_t capture_len;

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

void log_configure(int fd, bool show_level, bool show_origin, bool off)
{
	if (fd >= 0)
		log_fd = fd;
	log_show_level = show_level;
	log_show_origin = show_origin;
	log_off = off;
}

void log_capture_errors(char *buf, size_t len)
{
	capture_buf = buf;
	capture_len = len;
	if (buf && len)
		buf[0] = '\0';
}

void log_msg_at(const char *file, int line, enum log_level level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	if (level > log_max_level || (log_off && !(level == LOG_ERROR && capture_buf)))
		return;
	uint64_t us = time_since_exec_us();
	n = snprintf(buf, sizeof(buf), "[mote %6llu.%03llu ms] ", (unsigned long long)(us / 1000),
		     (unsigned long long)(us % 1000));
	if (log_show_origin && n > 0 && (size_t)n < sizeof(buf))
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%s:%d ", file, line);
	if (log_show_level && n > 0 && (size_t)n < sizeof(buf))
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%s: ", level_names[level]);
	size_t text = n > 0 && (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
	va_start(ap, fmt);
	vsnprintf(buf + text, sizeof(buf) - text, fmt, ap);
	va_end(ap);
	if (level == LOG_ERROR && capture_buf && capture_len && !capture_buf[0])
		snprintf(capture_buf, capture_len, "%s", buf + text);
	if (log_off)
		return;
	/* One write per line so lines from vCPU threads don't interleave. */
	size_t len = strlen(buf);
	if (len < sizeof(buf) - 1) {
		buf[len] = '\n';
		buf[++len] = '\0';
	}
	while (write(log_fd, buf, len) < 0 && errno == EINTR)
		;
}
