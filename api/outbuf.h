/* A growable output buffer for HTTP answers, shared by mote's API server
 * (api/server.c) and the launcher's server (launcher/http.c). Header-only:
 * the launcher does not link libmote. */
#ifndef MOTE_API_OUTBUF_H
#define MOTE_API_OUTBUF_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Appends len bytes to *buf (*len used of *cap), doubling the capacity
 * from 1 KiB as needed. 0 or -ENOMEM (the buffer is then unchanged). */
static inline int outbuf_append(char **buf, size_t *len, size_t *cap, const void *data,
				size_t n)
{
	if (*len + n > *cap) {
		size_t c = *cap ? *cap : 1024;

		while (c < *len + n)
			c *= 2;
		char *p = realloc(*buf, c);
		if (!p)
			return -ENOMEM;
		*buf = p;
		*cap = c;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	return 0;
}

#endif
