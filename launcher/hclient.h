/* A blocking HTTP/1.1 client over a unix socket, one request per
 * connection: mote-fn talks to mote-fnd with it, and mote-fnd to a
 * template monitor's API (pause, snapshot) with it. */
#ifndef MOTE_LAUNCHER_HCLIENT_H
#define MOTE_LAUNCHER_HCLIENT_H

#include <stddef.h>

struct hclient_resp {
	int status;
	char *body;                 /* malloc'd, NUL-terminated */
	size_t body_len;
	char headers[1024];         /* "Name: value\n" lines of X-Mote-* headers */
};

/* 0 with *resp filled (free resp->body), or -errno with a message in err.
 * timeout_ms bounds the whole exchange. */
int hclient_request(const char *sock_path, const char *method, const char *path,
		    const char *body, size_t body_len, int timeout_ms, struct hclient_resp *resp,
		    char *err, size_t errlen);

#endif
