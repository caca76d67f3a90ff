/* The API thread: HTTP/1.1 over a unix socket, parsed by http_parser.
 *
 * One epoll over the listening socket, a stop eventfd and every
 * connection, all non-blocking. A connection is only an http_parser and
 * two buffers, so a client that sends half a request (slow loris) holds
 * nothing but its slot; the others are served meanwhile. A complete request
 * is routed and validated here (api/routes.c) and then handed to the VMM
 * thread through the handler, which blocks until the VMM answered
 * (Firecracker's model: one request in flight, the VMM owns all state).
 * Connections are bounded; when all slots are taken, the one idle the
 * longest makes room for the new one. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>

#include "api/api.h"
#include "api/outbuf.h"
#include "vmm/caps.h"
#include "vmm/log.h"
#include "vmm/seccomp.h"

#define API_MAX_CONNS 32
#define API_URL_MAX 2048
#define API_READ_CHUNK 16384
#define API_OUT_HIGH_WATER (256 * 1024) /* stop reading while this much is unsent */
#define API_HDR_NAME_MAX 32

/* A request parsed in full, waiting for its answer. http_parser cannot be
 * paused at a message's end without miscounting the bytes it consumed, so
 * it parses a whole read and the requests are answered afterwards, in order. */
struct api_parsed {
	unsigned method;
	bool keep_alive;
	char *url;
	char *body;
	size_t body_len;
	struct api_parsed *next;
};

struct api_conn {
	http_parser parser;
	size_t max_payload;
	api_handler_fn handler;
	void *opaque;

	char url[API_URL_MAX + 1];
	size_t url_len;
	char *body;
	size_t body_len, body_cap;
	/* The header being parsed, to spot Expect: 100-continue. */
	char hdr_name[API_HDR_NAME_MAX + 1];
	size_t hdr_name_len;
	bool hdr_in_value, expect_continue;

	struct api_parsed *ready, **ready_tail;
	const char *fault;          /* set by a callback that refused the request */
	char fault_buf[160];

	char *out;
	size_t out_len, out_cap;
	bool closing;
};

/* ---- output ----------------------------------------------------------------- */

static int out_append(struct api_conn *c, const char *data, size_t len)
{
	return outbuf_append(&c->out, &c->out_len, &c->out_cap, data, len);
}

static const char *status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	default: return "Internal Server Error";
	}
}

static void conn_respond(struct api_conn *c, const struct api_response *r)
{
	char head[256];
	size_t blen = r->body ? strlen(r->body) : 0;
	int n;

	if (r->body)
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 %d %s\r\nServer: mote\r\nConnection: %s\r\n"
			     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			     r->status, status_text(r->status), c->closing ? "close" : "keep-alive",
			     blen);
	else
		n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nServer: mote\r\nConnection: %s\r\n\r\n",
			     r->status, status_text(r->status), c->closing ? "close" : "keep-alive");
	if (out_append(c, head, (size_t)n) || (blen && out_append(c, r->body, blen)))
		c->closing = true; /* out of memory: give up on this client */
}

static void conn_fail(struct api_conn *c, const char *fmt, const char *detail)
{
	struct api_response r = { 0 };

	c->closing = true;
	api_response_error(&r, fmt, detail);
	conn_respond(c, &r);
	api_response_free(&r);
}

/* ---- http_parser callbacks -------------------------------------------------- */

static int on_message_begin(http_parser *p)
{
	struct api_conn *c = p->data;

	c->url_len = 0;
	c->body_len = 0;
	c->hdr_name_len = 0;
	c->hdr_in_value = false;
	c->expect_continue = false;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct api_conn *c = p->data;

	if (c->url_len + len > API_URL_MAX) {
		c->fault = "Request URI is longer than the server allows";
		return -1;
	}
	memcpy(c->url + c->url_len, at, len);
	c->url_len += len;
	c->url[c->url_len] = '\0';
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct api_conn *c = p->data;

	if (c->hdr_in_value) {
		c->hdr_name_len = 0;
		c->hdr_in_value = false;
	}
	size_t room = API_HDR_NAME_MAX - c->hdr_name_len;
	size_t n = len < room ? len : room;
	memcpy(c->hdr_name + c->hdr_name_len, at, n);
	c->hdr_name_len += n;
	c->hdr_name[c->hdr_name_len] = '\0';
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct api_conn *c = p->data;

	c->hdr_in_value = true;
	if (!strcasecmp(c->hdr_name, "Expect") && len >= 12 && !strncasecmp(at, "100-continue", 12))
		c->expect_continue = true;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct api_conn *c = p->data;

	if (p->uses_transfer_encoding) {
		c->fault = "Transfer-Encoding is not supported: send the body with Content-Length";
		return -1;
	}
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->max_payload) {
		snprintf(c->fault_buf, sizeof(c->fault_buf),
			 "Request payload with size %llu is larger than the limit of %zu allowed by "
			 "server",
			 (unsigned long long)p->content_length, c->max_payload);
		c->fault = c->fault_buf;
		return -1;
	}
	if (c->expect_continue && (p->flags & F_CONTENTLENGTH) && p->content_length > 0) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		out_append(c, cont, sizeof(cont) - 1);
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct api_conn *c = p->data;

	if (c->body_len + len > c->max_payload) {
		c->fault = "Request payload is larger than the limit allowed by server";
		return -1;
	}
	if (c->body_len + len > c->body_cap) {
		size_t cap = c->body_cap ? c->body_cap : 512;

		while (cap < c->body_len + len)
			cap *= 2;
		char *n = realloc(c->body, cap);
		if (!n) {
			c->fault = "out of memory";
			return -1;
		}
		c->body = n;
		c->body_cap = cap;
	}
	memcpy(c->body + c->body_len, at, len);
	c->body_len += len;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct api_conn *c = p->data;
	struct api_parsed *r = calloc(1, sizeof(*r));

	if (!r || !(r->url = strdup(c->url))) {
		free(r);
		c->fault = "out of memory";
		return -1;
	}
	r->method = p->method;
	r->keep_alive = http_should_keep_alive(p) && !p->upgrade;
	r->body = c->body; /* the buffer moves to the request */
	r->body_len = c->body_len;
	c->body = NULL;
	c->body_len = c->body_cap = 0;
	*c->ready_tail = r;
	c->ready_tail = &r->next;
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- the connection engine -------------------------------------------------- */

struct api_conn *api_conn_new(size_t max_payload, api_handler_fn handler, void *opaque)
{
	struct api_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	c->ready_tail = &c->ready;
	c->max_payload = max_payload;
	c->handler = handler;
	c->opaque = opaque;
	return c;
}

static void parsed_free(struct api_parsed *r)
{
	free(r->url);
	free(r->body);
	free(r);
}

void api_conn_free(struct api_conn *c)
{
	if (!c)
		return;
	while (c->ready) {
		struct api_parsed *r = c->ready;
		c->ready = r->next;
		parsed_free(r);
	}
	free(c->body);
	free(c->out);
	free(c);
}

static void conn_dispatch(struct api_conn *c, const struct api_parsed *r)
{
	struct http_parser_url u;
	struct api_request *req;
	struct api_response resp = { 0 };
	char path[API_URL_MAX + 1];
	const char *method = http_method_str((enum http_method)r->method);
	size_t url_len = strlen(r->url);

	if (!r->keep_alive)
		c->closing = true;
	http_parser_url_init(&u);
	if (http_parser_parse_url(r->url, url_len, 0, &u) || !(u.field_set & (1 << UF_PATH))) {
		api_response_error(&resp, "Invalid request method and/or path: %s %s", method, r->url);
		goto respond;
	}
	memcpy(path, r->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
	path[u.field_data[UF_PATH].len] = '\0';

	/* ~12 KiB: on the heap, not on the API thread's stack. */
	req = malloc(sizeof(*req));
	if (!req) {
		api_response_error(&resp, "out of memory");
		goto respond;
	}
	if (api_route(method, path, r->body, r->body_len, req, &resp) == 0)
		c->handler(c->opaque, req, &resp);
	free(req);
respond:
	conn_respond(c, &resp);
	api_response_free(&resp);
}

int api_conn_feed(struct api_conn *c, const char *data, size_t len)
{
	if (c->closing || !len)
		return c->closing ? -1 : 0;
	size_t n = http_parser_execute(&c->parser, &parser_settings, data, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);

	/* Answer what was complete, in order, until one closes. */
	while (c->ready) {
		struct api_parsed *r = c->ready;
		c->ready = r->next;
		if (!c->closing)
			conn_dispatch(c, r);
		parsed_free(r);
	}
	c->ready_tail = &c->ready;
	if (c->closing)
		return -1;
	if (c->fault) {
		conn_fail(c, "%s", c->fault);
		c->fault = NULL;
	} else if (e != HPE_OK) {
		conn_fail(c, "Malformed HTTP request: %s", http_errno_description(e));
	} else if (c->parser.upgrade) {
		conn_fail(c, "%s", "Protocol upgrades are not supported");
	} else if (n != len) {
		conn_fail(c, "%s", "Malformed HTTP request");
	}
	return c->closing ? -1 : 0;
}

const char *api_conn_output(const struct api_conn *c, size_t *len)
{
	*len = c->out_len;
	return c->out;
}

void api_conn_consume(struct api_conn *c, size_t n)
{
	if (n >= c->out_len) {
		c->out_len = 0;
		return;
	}
	memmove(c->out, c->out + n, c->out_len - n);
	c->out_len -= n;
}

/* ---- sockets and the thread ------------------------------------------------- */

struct api_client {
	int fd;                     /* -1: free slot */
	struct api_conn *conn;
	uint64_t last_ns;           /* last byte received */
	uint32_t events;            /* what epoll watches */
};

struct api_server {
	struct api_server_config cfg;
	char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd, epfd, stop_fd;
	pthread_t thread;
	bool thread_started;
	struct api_client clients[API_MAX_CONNS];
};

/* epoll data for the two fds that are not clients */
static char tag_listen, tag_stop;

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void client_close(struct api_server *s, struct api_client *cl)
{
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, cl->fd, NULL);
	close(cl->fd);
	api_conn_free(cl->conn);
	cl->fd = -1;
	cl->conn = NULL;
}

static void client_watch(struct api_server *s, struct api_client *cl, uint32_t events)
{
	if (events == cl->events)
		return;
	struct epoll_event ev = { .events = events, .data.ptr = cl };
	if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, cl->fd, &ev) == 0)
		cl->events = events;
}

/* Sends what is pending; false when the client is gone or done. */
static bool client_flush(struct api_server *s, struct api_client *cl)
{
	size_t len;
	const char *out = api_conn_output(cl->conn, &len);

	while (len) {
		ssize_t n = send(cl->fd, out, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return false;
		}
		api_conn_consume(cl->conn, (size_t)n);
		out = api_conn_output(cl->conn, &len);
	}
	bool closing = cl->conn->closing;
	if (!len && closing)
		return false;
	/* Backpressure: a client that does not read its answers is not read. */
	uint32_t ev = len ? EPOLLOUT : 0;
	if (len < API_OUT_HIGH_WATER && !closing)
		ev |= EPOLLIN;
	client_watch(s, cl, ev);
	return true;
}

static void client_readable(struct api_server *s, struct api_client *cl)
{
	char buf[API_READ_CHUNK];

	/* A few reads per wake-up, so one busy client cannot starve others. */
	for (int i = 0; i < 4; i++) {
		ssize_t n = recv(cl->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			/* Gone: answers already queued are sent if the socket
			 * still takes them, then the slot is freed. */
			client_flush(s, cl);
			client_close(s, cl);
			return;
		}
		cl->last_ns = mono_ns();
		int closing = api_conn_feed(cl->conn, buf, (size_t)n);
		size_t pending;
		api_conn_output(cl->conn, &pending);
		if (closing || pending >= API_OUT_HIGH_WATER || (size_t)n < sizeof(buf))
			break;
	}
	if (!client_flush(s, cl))
		client_close(s, cl);
}

static void server_accept(struct api_server *s)
{
	for (;;) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				log_warn("API socket accept: %s", strerror(errno));
			return;
		}
		struct api_client *slot = NULL, *oldest = NULL;
		for (int i = 0; i < API_MAX_CONNS && !slot; i++) {
			struct api_client *cl = &s->clients[i];
			if (cl->fd < 0)
				slot = cl;
			else if (!oldest || cl->last_ns < oldest->last_ns)
				oldest = cl;
		}
		if (!slot) {
			log_warn("API: %d connections open; closing the one idle the longest",
				 API_MAX_CONNS);
			client_close(s, oldest);
			slot = oldest;
		}
		slot->conn = api_conn_new(s->cfg.max_payload, s->cfg.handler, s->cfg.opaque);
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = slot };
		if (!slot->conn || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			api_conn_free(slot->conn);
			slot->conn = NULL;
			close(fd);
			continue;
		}
		slot->fd = fd;
		slot->events = EPOLLIN;
		slot->last_ns = mono_ns();
	}
}

/* On the API thread at stop: the VMM thread may be under a seccomp
 * filter by then that has no business allowing unlink. */
static void server_close_all(struct api_server *s)
{
	for (int i = 0; i < API_MAX_CONNS; i++)
		if (s->clients[i].fd >= 0)
			client_close(s, &s->clients[i]);
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		s->listen_fd = -1;
		unlink(s->sock_path);
	}
}

static void *api_thread_main(void *arg)
{
	struct api_server *s = arg;
	struct epoll_event evs[16];

	pthread_setname_np(pthread_self(), "mote-api");
	/* This thread exists before the VMM drops capabilities and locks
	 * down: confine it first, before it reads a byte from a client. */
	int ret = caps_drop_all();
	if (!ret)
		ret = seccomp_install(SECCOMP_API);
	if (ret) {
		log_error("API thread: cannot drop capabilities or install its seccomp filter "
			  "(%s); the API is closed", strerror(-ret));
		server_close_all(s);
		return NULL;
	}
	for (;;) {
		int n = epoll_wait(s->epfd, evs, 16, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("API thread: epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			void *tag = evs[i].data.ptr;

			if (tag == &tag_stop) {
				server_close_all(s);
				return NULL;
			}
			if (tag == &tag_listen) {
				server_accept(s);
				continue;
			}
			struct api_client *cl = tag;
			if (cl->fd < 0)
				continue; /* closed earlier in this batch */
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				client_readable(s, cl);
			else if ((evs[i].events & EPOLLOUT) && !client_flush(s, cl))
				client_close(s, cl);
		}
	}
	return NULL;
}

/* A socket file nobody listens on is left over from a dead monitor. */
static bool stale_socket(const struct sockaddr_un *addr)
{
	struct stat st;

	if (lstat(addr->sun_path, &st) || !S_ISSOCK(st.st_mode))
		return false;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool stale = connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 &&
		     errno == ECONNREFUSED;
	close(fd);
	return stale;
}

int api_server_open(struct api_server **out, const struct api_server_config *cfg, char *err,
		    size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct api_server *s;
	int ret;

	if (strlen(cfg->sock_path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "API socket path '%s' is longer than %zu bytes", cfg->sock_path,
			 sizeof(addr.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(addr.sun_path, cfg->sock_path);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	strcpy(s->sock_path, cfg->sock_path);
	s->epfd = s->stop_fd = -1;
	for (int i = 0; i < API_MAX_CONNS; i++)
		s->clients[i].fd = -1;

	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "API socket: %s", strerror(errno));
		goto fail;
	}
	int r = bind(s->listen_fd, (struct sockaddr *)&addr, sizeof(addr));
	int e = errno;
	if (r < 0 && e == EADDRINUSE && stale_socket(&addr)) {
		unlink(addr.sun_path);
		r = bind(s->listen_fd, (struct sockaddr *)&addr, sizeof(addr));
		e = errno;
	}
	if (r == 0 && listen(s->listen_fd, 64) < 0) {
		r = -1;
		e = errno;
	}
	if (r < 0) {
		ret = -e;
		snprintf(err, errlen, "cannot listen on the API socket '%s': %s%s", cfg->sock_path,
			 strerror(e),
			 e == EADDRINUSE ? " (another process is serving it; pick another path)" : "");
		goto fail;
	}
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &tag_listen };
	struct epoll_event sev = { .events = EPOLLIN, .data.ptr = &tag_stop };
	if (s->epfd < 0 || s->stop_fd < 0 ||
	    epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listen_fd, &lev) < 0 ||
	    epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->stop_fd, &sev) < 0) {
		ret = -errno;
		snprintf(err, errlen, "API event set-up: %s", strerror(errno));
		unlink(s->sock_path);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	free(s);
	return ret ? ret : -EIO;
}

int api_server_start(struct api_server *s)
{
	int ret = pthread_create(&s->thread, NULL, api_thread_main, s);

	if (ret)
		return -ret;
	s->thread_started = true;
	return 0;
}

void api_server_stop(struct api_server *s)
{
	uint64_t one = 1;

	if (!s)
		return;
	if (s->thread_started) {
		if (write(s->stop_fd, &one, sizeof(one)) < 0)
			log_warn("API stop eventfd: %s", strerror(errno));
		pthread_join(s->thread, NULL);
	} else {
		server_close_all(s);
	}
	close(s->epfd);
	close(s->stop_fd);
	free(s);
}
