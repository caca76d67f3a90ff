/* See hclient.h. */
#include "launcher/hclient.h"

#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>

struct hc_state {
	struct hclient_resp *resp;
	size_t cap;
	char field[64];
	size_t field_len;
	bool in_value, keep, done, oom;
};

static int hc_on_field(http_parser *p, const char *at, size_t len)
{
	struct hc_state *s = p->data;

	if (s->in_value) {
		s->field_len = 0;
		s->in_value = false;
	}
	size_t n = len < sizeof(s->field) - 1 - s->field_len ? len : sizeof(s->field) - 1 - s->field_len;
	memcpy(s->field + s->field_len, at, n);
	s->field_len += n;
	s->field[s->field_len] = '\0';
	return 0;
}

static int hc_on_value(http_parser *p, const char *at, size_t len)
{
	struct hc_state *s = p->data;
	char *h = s->resp->headers;
	size_t used = strlen(h);

	if (!s->in_value) {
		s->in_value = true;
		s->keep = !strncasecmp(s->field, "X-Mote-", 7);
		if (s->keep && used + s->field_len + 3 < sizeof(s->resp->headers)) {
			if (used)
				h[used++] = '\n';
			used += (size_t)sprintf(h + used, "%s: ", s->field);
		} else {
			s->keep = false;
		}
	}
	if (s->keep && used + len + 1 < sizeof(s->resp->headers)) {
		memcpy(h + used, at, len);
		h[used + len] = '\0';
	}
	return 0;
}

static int hc_on_body(http_parser *p, const char *at, size_t len)
{
	struct hc_state *s = p->data;
	struct hclient_resp *r = s->resp;

	if (r->body_len + len + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < r->body_len + len + 1)
			cap *= 2;
		char *b = realloc(r->body, cap);
		if (!b) {
			s->oom = true;
			return -1;
		}
		r->body = b;
		s->cap = cap;
	}
	memcpy(r->body + r->body_len, at, len);
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return 0;
}

static int hc_on_complete(http_parser *p)
{
	((struct hc_state *)p->data)->done = true;
	return 0;
}

static int ms_left(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	long ms = (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
	return ms < 0 ? 0 : (int)ms;
}

static int wait_fd(int fd, short ev, const struct timespec *deadline)
{
	struct pollfd pfd = { .fd = fd, .events = ev };
	int n;

	do
		n = poll(&pfd, 1, ms_left(deadline));
	while (n < 0 && errno == EINTR);
	return n > 0 ? 0 : n == 0 ? -ETIMEDOUT : -errno;
}

int hclient_request(const char *sock_path, const char *method, const char *path,
		    const char *body, size_t body_len, int timeout_ms, struct hclient_resp *resp,
		    char *err, size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct timespec deadline;
	int fd, ret;

	memset(resp, 0, sizeof(*resp));
	if (strlen(sock_path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "socket path '%s' is too long", sock_path);
		return -ENAMETOOLONG;
	}
	strcpy(addr.sun_path, sock_path);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot connect to '%s': %s", sock_path, strerror(errno));
		close(fd);
		return ret;
	}
	char head[512];
	int hn = snprintf(head, sizeof(head),
			  "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
			  "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			  method, path, body_len);
	const char *parts[2] = { head, body };
	size_t lens[2] = { (size_t)hn, body_len };
	for (int i = 0; i < 2; i++) {
		size_t off = 0;
		while (off < lens[i]) {
			if ((ret = wait_fd(fd, POLLOUT, &deadline)))
				goto io_fail;
			ssize_t n = send(fd, parts[i] + off, lens[i] - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n < 0) {
				/* The server may answer (413) before reading the body. */
				if (errno == EPIPE || errno == ECONNRESET)
					goto read_reply;
				ret = -errno;
				goto io_fail;
			}
			off += (size_t)n;
		}
	}
read_reply:;
	http_parser parser;
	struct hc_state st = { .resp = resp };
	static const http_parser_settings settings = {
		.on_header_field = hc_on_field,
		.on_header_value = hc_on_value,
		.on_body = hc_on_body,
		.on_message_complete = hc_on_complete,
	};
	http_parser_init(&parser, HTTP_RESPONSE);
	parser.data = &st;
	while (!st.done) {
		char buf[65536];
		if ((ret = wait_fd(fd, POLLIN, &deadline)))
			goto io_fail;
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			ret = -errno;
			goto io_fail;
		}
		size_t used = http_parser_execute(&parser, &settings, buf, (size_t)n);
		if (n == 0 && !st.done) {
			ret = -ECONNRESET;
			goto io_fail;
		}
		if (used != (size_t)n || HTTP_PARSER_ERRNO(&parser) != HPE_OK) {
			snprintf(err, errlen, "malformed HTTP response from '%s'%s", sock_path,
				 st.oom ? " (out of memory)" : "");
			ret = -EPROTO;
			goto fail;
		}
	}
	resp->status = (int)parser.status_code;
	if (!resp->body && !(resp->body = calloc(1, 1))) {
		ret = -ENOMEM;
		goto fail;
	}
	close(fd);
	return 0;
io_fail:
	snprintf(err, errlen, "%s %s on '%s': %s", method, path, sock_path,
		 ret == -ETIMEDOUT ? "timed out" : ret == -ECONNRESET ? "connection closed" :
									   strerror(-ret));
fail:
	free(resp->body);
	resp->body = NULL;
	close(fd);
	return ret;
}
