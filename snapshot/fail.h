/* The error path of snapshot/: the message for the caller in err, the
 * -errno as the result. Internal to snapshot/. */
#ifndef MOTE_SNAPSHOT_FAIL_H
#define MOTE_SNAPSHOT_FAIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* Formats fmt into err (errlen bytes) and returns ret. */
__attribute__((format(printf, 4, 5))) static inline int fail(char *err, size_t errlen, int ret,
							      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return ret;
}

#endif
