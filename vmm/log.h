/* Logging to stderr, with the time since the monitor started.
 *
 * Time zero is the exec of the monitor: MOTE_T0_NS (CLOCK_MONOTONIC ns, set
 * by a launcher just before execve) when given, else the earliest moment
 * this process could observe (a constructor, before main). */
#ifndef MOTE_VMM_LOG_H
#define MOTE_VMM_LOG_H

#include <stdint.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_max_level;

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int log_parse_level(const char *name, enum log_level *out);

uint64_t time_now_ns(void);
/* CLOCK_MONOTONIC ns of the monitor's exec (see above). */
uint64_t time_exec_ns(void);
/* Microseconds since the monitor's exec. */
uint64_t time_since_exec_us(void);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_max_level >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
