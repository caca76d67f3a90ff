/* See http.h. */
#include "launcher/http.h"
#include "api/outbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <http_parser.h>
#include <jansson.h>

#define HTTP_URL_MAX 1024
#define HTTP_READ_CHUNK 65536

struct http_conn {
	struct ev_watch w;
	struct http_server *s;
	http_parser p;
	char url[HTTP_URL_MAX + 1];
	size_t url_len;
	char *body;
	size_t body_len, body_cap;
	int fault;                  /* 400/413 refused by a parser callback */
	const char *fault_msg;
	struct http_req *queue, **queue_tail; /* parsed, waiting their turn */
	struct http_req *current;   /* with the handler */
	char *out;
	size_t out_len, out_off, out_cap;
	bool closing, broken, in_pump;
	bool rd_closed;             /* the client shut its sending side (half-close) */
	struct http_conn *prev, *next;
};

struct http_server {
	struct http_server_config cfg;
	struct evloop *loop;
	struct ev_watch lw;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct http_conn *conns;
	unsigned nr_conns;
};

const char *http_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Unknown";
	}
}

static int out_append(struct http_conn *c, const char *d, size_t n)
{
	return outbuf_append(&c->out, &c->out_len, &c->out_cap, d, n);
}

static void req_free(struct http_req *r)
{
	if (!r)
		return;
	free(r->path);
	free(r->body);
	free(r);
}

/* ---- parser callbacks --------------------------------------------------------- */

static int on_begin(http_parser *p)
{
	struct http_conn *c = p->data;

	c->url_len = 0;
	c->body_len = 0;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;

	if (c->url_len + len > HTTP_URL_MAX) {
		c->fault = 400;
		c->fault_msg = "request URI too long";
		return -1;
	}
	memcpy(c->url + c->url_len, at, len);
	c->url_len += len;
	c->url[c->url_len] = '\0';
	return 0;
}

static int on_headers(http_parser *p)
{
	struct http_conn *c = p->data;

	if (p->uses_transfer_encoding) {
		c->fault = 400;
		c->fault_msg = "chunked bodies are not supported: send Content-Length";
		return -1;
	}
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->s->cfg.max_body) {
		c->fault = 413;
		return -1;
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;

	if (c->body_len + len > c->s->cfg.max_body) {
		c->fault = 413;
		return -1;
	}
	if (c->body_len + len > c->body_cap) {
		size_t cap = c->body_cap ? c->body_cap : 1024;
		while (cap < c->body_len + len)
			cap *= 2;
		char *b = realloc(c->body, cap + 1);
		if (!b) {
			c->fault = 500;
			c->fault_msg = "out of memory";
			return -1;
		}
		c->body = b;
		c->body_cap = cap;
	}
	memcpy(c->body + c->body_len, at, len);
	c->body_len += len;
	return 0;
}

static int on_complete(http_parser *p)
{
	struct http_conn *c = p->data;
	struct http_parser_url u;
	struct http_req *r = calloc(1, sizeof(*r));

	if (!r)
		goto oom;
	http_parser_url_init(&u);
	if (http_parser_parse_url(c->url, c->url_len, 0, &u) || !(u.field_set & (1 << UF_PATH))) {
		free(r);
		c->fault = 400;
		c->fault_msg = "malformed request URI";
		return -1;
	}
	r->path = strndup(c->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
	if (!r->path)
		goto oom;
	r->method = http_method_str((enum http_method)p->method);
	r->keep_alive = http_should_keep_alive(p);
	if (c->body) {
		c->body[c->body_len] = '\0'; /* room kept by on_body */
		r->body = c->body;
		r->body_len = c->body_len;
		c->body = NULL;
		c->body_len = c->body_cap = 0;
	}
	r->conn = c;
	*c->queue_tail = r;
	c->queue_tail = &r->next;
	return 0;
oom:
	req_free(r);
	c->fault = 500;
	c->fault_msg = "out of memory";
	return -1;
}

static const http_parser_settings settings = {
	.on_message_begin = on_begin,
	.on_url = on_url,
	.on_headers_complete = on_headers,
	.on_body = on_body,
	.on_message_complete = on_complete,
};

/* ---- responses ---------------------------------------------------------------- */

static void conn_write_response(struct http_conn *c, int status, const char *ctype,
				const char *headers, const char *body, size_t len)
{
	char head[512];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nServer: mote-fnd\r\nConnection: %s\r\n"
			 "Content-Type: %s\r\nContent-Length: %zu\r\n",
			 status, http_status_text(status), c->closing ? "close" : "keep-alive",
			 ctype ? ctype : "application/json", len);
	if (out_append(c, head, (size_t)n) || (headers && out_append(c, headers, strlen(headers))) ||
	    out_append(c, "\r\n", 2) || (len && out_append(c, body, len)))
		c->broken = true;
}

static void conn_error(struct http_conn *c, int status, const char *msg)
{
	json_t *o = json_pack("{s:s}", "error", msg);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

	c->closing = true;
	conn_write_response(c, status, NULL, NULL, s ? s : "{}", s ? strlen(s) : 2);
	free(s);
	json_decref(o);
}

/* ---- connections -------------------------------------------------------------- */

static void conn_pump(struct http_conn *c);

static void conn_free(struct http_conn *c)
{
	struct http_server *s = c->s;

	ev_del(s->loop, &c->w);
	close(c->w.fd);
	if (c->current) {
		/* The handler still holds it: tell it, and let it answer into
		 * the void. */
		struct http_req *r = c->current;
		r->conn = NULL;
		c->current = NULL;
		if (r->on_abort)
			r->on_abort(r);
	}
	while (c->queue) {
		struct http_req *r = c->queue;
		c->queue = r->next;
		req_free(r);
	}
	free(c->body);
	free(c->out);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nr_conns--;
	free(c);
}

static void conn_flush(struct http_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->w.fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			c->broken = true;
			return;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
}

static void conn_read(struct http_conn *c)
{
	char buf[HTTP_READ_CHUNK];
	ssize_t n = recv(c->w.fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == 0) {
		/* End of what it sends: a half-close still wants its answers. */
		c->rd_closed = true;
		if (!c->current && !c->queue)
			c->broken = true;
		return;
	}
	if (n < 0) {
		c->broken = true;
		return;
	}
	size_t used = http_parser_execute(&c->p, &settings, buf, (size_t)n);
	if (c->fault == 413) {
		char msg[128];
		snprintf(msg, sizeof(msg), "request body is larger than the limit of %zu bytes",
			 c->s->cfg.max_body);
		conn_error(c, 413, msg);
	} else if (c->fault) {
		conn_error(c, c->fault, c->fault_msg);
	} else if (HTTP_PARSER_ERRNO(&c->p) != HPE_OK) {
		char msg[160];
		snprintf(msg, sizeof(msg), "malformed HTTP request: %s",
			 http_errno_description(HTTP_PARSER_ERRNO(&c->p)));
		conn_error(c, 400, msg);
	} else if (c->p.upgrade || used != (size_t)n) {
		conn_error(c, 400, "malformed HTTP request");
	}
}

/* Hands queued requests to the handler one at a time, sends what is
 * ready, sets what to watch, and frees the connection when it is done.
 * Re-entered (from http_respond inside the handler) it only marks work. */
static void conn_pump(struct http_conn *c)
{
	if (c->in_pump)
		return;
	c->in_pump = true;
	while (!c->current && c->queue && !c->closing && !c->broken) {
		struct http_req *r = c->queue;
		c->queue = r->next;
		if (!c->queue)
			c->queue_tail = &c->queue;
		r->next = NULL;
		c->current = r;
		c->s->cfg.handler(c->s->cfg.opaque, r);
	}
	c->in_pump = false;
	/* A half-closed client with nothing left to answer is done. */
	if (c->rd_closed && !c->current && !c->queue)
		c->closing = true;
	conn_flush(c);
	bool pending = c->out_len > c->out_off;
	if (c->broken || (c->closing && !pending && !c->current)) {
		conn_free(c);
		return;
	}
	/* EPOLLHUP (the client closed for good) is always reported: it
	 * aborts what is in flight. A half-close is seen once (RDHUP), then
	 * no longer watched. */
	uint32_t ev = 0;
	if (!c->rd_closed) {
		ev |= EPOLLRDHUP;
		if (!c->current && !c->queue && !c->closing)
			ev |= EPOLLIN;
	}
	if (pending)
		ev |= EPOLLOUT;
	if (ev_modify(c->s->loop, &c->w, ev))
		conn_free(c);
}

static void conn_event(struct ev_watch *w, uint32_t events)
{
	struct http_conn *c = w->opaque;

	if (events & EPOLLIN)
		conn_read(c);
	/* A client that closes with a request in flight aborts it; one that
	 * only shut its sending side still gets its answers. */
	if (events & (EPOLLHUP | EPOLLERR))
		c->broken = true;
	else if (events & EPOLLRDHUP)
		c->rd_closed = true;
	conn_pump(c);
}

void http_respond(struct http_req *r, int status, const char *content_type, const char *headers,
		  const char *body, size_t len)
{
	struct http_conn *c = r->conn;

	if (c) {
		c->current = NULL;
		if (!r->keep_alive)
			c->closing = true;
		conn_write_response(c, status, content_type, headers, body, len);
	}
	req_free(r);
	if (c)
		conn_pump(c);
}

void http_respond_error(struct http_req *r, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *o = json_pack("{s:s}", "error", msg);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	char hdr[64];
	snprintf(hdr, sizeof(hdr), "X-Mote-Error: %d\r\n", status);
	http_respond(r, status, NULL, hdr, s ? s : "{}", s ? strlen(s) : 2);
	free(s);
	json_decref(o);
}

/* ---- the listening socket ------------------------------------------------------ */

static void server_accept(struct ev_watch *w, uint32_t events)
{
	struct http_server *s = w->opaque;

	(void)events;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(s->lw.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (s->nr_conns >= s->cfg.max_conns) {
			static const char busy[] =
				"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
				"Content-Type: application/json\r\nContent-Length: 51\r\n\r\n"
				"{\"error\":\"too many client connections; retry later\"}";
			if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
				/* nothing more to do for it */
			}
			close(fd);
			continue;
		}
		struct http_conn *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->s = s;
		http_parser_init(&c->p, HTTP_REQUEST);
		c->p.data = c;
		c->queue_tail = &c->queue;
		if (ev_add(s->loop, &c->w, fd, EPOLLIN | EPOLLRDHUP, conn_event, c)) {
			close(fd);
			free(c);
			continue;
		}
		c->next = s->conns;
		if (s->conns)
			s->conns->prev = c;
		s->conns = c;
		s->nr_conns++;
	}
}

int http_server_open(struct http_server **out, struct evloop *loop,
		     const struct http_server_config *cfg, char *err, size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct http_server *s;

	if (strlen(cfg->sock_path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "socket path '%s' is too long", cfg->sock_path);
		return -ENAMETOOLONG;
	}
	strcpy(addr.sun_path, cfg->sock_path);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->loop = loop;
	strcpy(s->path, cfg->sock_path);
	/* A live daemon on the path is an error; a socket file left by a dead
	 * one is replaced. */
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
		close(probe);
		free(s);
		snprintf(err, errlen, "cannot listen on '%s': another server is listening there",
			 cfg->sock_path);
		return -EADDRINUSE;
	}
	if (probe >= 0)
		close(probe);
	/* Bound and listening under a temporary name, then renamed: the path
	 * appears only once a client can connect to it. */
	struct sockaddr_un tmp = { .sun_family = AF_UNIX };
	if (snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%d", cfg->sock_path, (int)getpid()) >=
	    (int)sizeof(tmp.sun_path)) {
		free(s);
		snprintf(err, errlen, "socket path '%s' is too long", cfg->sock_path);
		return -ENAMETOOLONG;
	}
	unlink(tmp.sun_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&tmp, sizeof(tmp)) < 0 || listen(fd, 1024) < 0 ||
	    rename(tmp.sun_path, cfg->sock_path) < 0) {
		int e = errno;
		unlink(tmp.sun_path);
		errno = e;
		goto fail;
	}
	if (ev_add(loop, &s->lw, fd, EPOLLIN, server_accept, s))
		goto fail;
	*out = s;
	return 0;
fail:;
	int e = errno;
	snprintf(err, errlen, "cannot listen on '%s': %s", cfg->sock_path, strerror(e));
	if (fd >= 0)
		close(fd);
	free(s);
	return -e;
}

unsigned http_server_nr_conns(const struct http_server *s)
{
	return s->nr_conns;
}

void http_server_close(struct http_server *s)
{
	if (!s)
		return;
	while (s->conns)
		conn_free(s->conns);
	ev_del(s->loop, &s->lw);
	close(s->lw.fd);
	unlink(s->path);
	free(s);
}
