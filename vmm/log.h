/* Logging to stderr, with the time since the monitor started.
 *
 * Time zero is the exec of the monitor: MOTE_T0_NS (CLOCK_MONOTONIC ns, set
 * by a launcher just before execve) when given, else the earliest moment
 * this process could observe (a constructor, before main). */
#ifndef MOTE_VMM_LOG_H
#define MOTE_VMM_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_max_level;

/* log_msg() records where it was called from, for show_log_origin. */
#define log_msg(level, ...) log_msg_at(__FILE__, __LINE__, level, __VA_ARGS__)
void log_msg_at(const char *file, int line, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int log_parse_level(const char *name, enum log_level *out);

/* Output set by the API's PUT /logger: lines go to fd (stderr until then;
 * -1 keeps the current one), with or without the level and the file:line
 * of the call. off drops every line. */
void log_configure(int fd, bool show_level, bool show_origin, bool off);
/* While set on a thread, that thread's error messages are also copied into
 * buf (the first one wins), so a failing API action can answer with the
 * same words the log got. NULL stops. */
void log_capture_errors(char *buf, size_t len);

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
