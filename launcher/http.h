/* mote-fnd's HTTP/1.1 server over a unix socket (http_parser), built for
 * answers that come later: a request is handed to the handler, which may
 * answer at once or much later (an invocation waits for a VM), while the
 * loop goes on serving every other connection. api/server.c answers on
 * its own thread, one request at a time, synchronously with the VMM;
 * that model does not fit thousands of requests in flight.
 *
 * A connection carries one request at a time: further pipelined requests
 * wait parsed in order, and the socket is not read while one is pending
 * (back-pressure), but a hang-up is still seen and reported to the
 * handler's abort callback. */
#ifndef MOTE_LAUNCHER_HTTP_H
#define MOTE_LAUNCHER_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "launcher/evloop.h"

struct http_server;
struct http_conn;

struct http_req {
	struct http_conn *conn;     /* NULL once the client has gone */
	const char *method;         /* "GET", "PUT", ... */
	char *path;                 /* without the query */
	char *body;
	size_t body_len;
	bool keep_alive;
	/* Set by the handler if it answers later: called (once) when the
	 * client goes away first; the request must still be answered (or
	 * dropped with http_req_drop) afterwards. */
	void (*on_abort)(struct http_req *r);
	void *data;
	struct http_req *next;
};

typedef void (*http_handler_fn)(void *opaque, struct http_req *r);

struct http_server_config {
	const char *sock_path;
	size_t max_body;            /* larger bodies get 413 */
	unsigned max_conns;         /* further clients get 503 and are closed */
	http_handler_fn handler;
	void *opaque;
};

int http_server_open(struct http_server **out, struct evloop *loop,
		     const struct http_server_config *cfg, char *err, size_t errlen);
void http_server_close(struct http_server *s);
unsigned http_server_nr_conns(const struct http_server *s);

/* Answers r and frees it. headers: extra "Name: value\r\n" lines or NULL.
 * When the client has gone the answer is dropped. */
void http_respond(struct http_req *r, int status, const char *content_type, const char *headers,
		  const char *body, size_t len);
/* 4xx/5xx with {"error": "..."}. */
void http_respond_error(struct http_req *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
const char *http_status_text(int status);

#endif
