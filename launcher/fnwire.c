/* See fnwire.h. */
#include "launcher/fnwire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fn_reader_init(struct fn_reader *r)
{
	memset(r, 0, sizeof(*r));
	r->st = FNR_HANDSHAKE;
}

void fn_reader_free(struct fn_reader *r)
{
	free(r->body);
	r->body = NULL;
}

static int fail(struct fn_reader *r, const char *why)
{
	r->st = FNR_ERROR;
	r->error = why;
	return -1;
}

static int handshake_line(struct fn_reader *r)
{
	/* mote's hybrid vsock answers "OK <port>\n"; anything else is a refusal. */
	if (strncmp(r->line, "OK ", 3)) {
		/* "ERR <why>" from the monitor, or nothing it should say. */
		snprintf(r->err_buf, sizeof(r->err_buf), "the VM's vsock refused the stream: %.140s",
			 r->line);
		return fail(r, r->err_buf);
	}
	r->st = FNR_HEADER;
	return 0;
}

int fn_reader_feed(struct fn_reader *r, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		switch (r->st) {
		case FNR_HANDSHAKE: {
			uint8_t ch = *p++;
			len--;
			if (ch == '\n') {
				r->line[r->line_len] = '\0';
				if (handshake_line(r))
					return -1;
				break;
			}
			if (r->line_len + 1 >= sizeof(r->line))
				return fail(r, "the VM's vsock handshake line is too long");
			r->line[r->line_len++] = (char)ch;
			break;
		}
		case FNR_HEADER: {
			size_t n = sizeof(r->hdr_buf) - r->hdr_len;
			if (n > len)
				n = len;
			memcpy(r->hdr_buf + r->hdr_len, p, n);
			r->hdr_len += n;
			p += n;
			len -= n;
			if (r->hdr_len < sizeof(r->hdr_buf))
				break;
			memcpy(&r->hdr, r->hdr_buf, sizeof(r->hdr));
			if (r->hdr.magic != FN_RESP_MAGIC)
				return fail(r, "the function runtime's response has a bad magic");
			if (r->hdr.body_len > FN_MAX_RESPONSE)
				return fail(r, "the function runtime's response is longer than "
					       "FN_MAX_RESPONSE");
			r->body = malloc((size_t)r->hdr.body_len + 1);
			if (!r->body)
				return fail(r, "out of memory");
			r->st = r->hdr.body_len ? FNR_BODY : FNR_DONE;
			if (r->st == FNR_DONE)
				r->body[0] = '\0';
			break;
		}
		case FNR_BODY: {
			size_t n = r->hdr.body_len - r->body_len;
			if (n > len)
				n = len;
			memcpy(r->body + r->body_len, p, n);
			r->body_len += n;
			p += n;
			len -= n;
			if (r->body_len == r->hdr.body_len) {
				r->body[r->body_len] = '\0';
				r->st = FNR_DONE;
			}
			break;
		}
		case FNR_DONE:
			return fail(r, "the function runtime sent bytes after its response");
		case FNR_ERROR:
			return -1;
		}
	}
	return 0;
}

size_t fn_request_prefix(char *out, size_t outlen, uint32_t body_len, uint32_t deadline_ms,
			 const uint8_t seed[16])
{
	struct fn_request_hdr h = {
		.magic = FN_REQ_MAGIC, .body_len = body_len, .deadline_ms = deadline_ms, .flags = 0,
	};
	int n = snprintf(out, outlen, "CONNECT %u\n", FN_VSOCK_PORT);

	memcpy(h.seed, seed, sizeof(h.seed));
	if (n < 0 || (size_t)n + sizeof(h) > outlen)
		return 0;
	memcpy(out + n, &h, sizeof(h));
	return (size_t)n + sizeof(h);
}

const char *fn_status_name(uint32_t status)
{
	switch (status) {
	case FN_OK: return "ok";
	case FN_HANDLER_ERROR: return "handler-error";
	case FN_FAULT: return "fault";
	case FN_TIMEOUT: return "timeout";
	case FN_TOO_LARGE: return "too-large";
	case FN_BAD_REQUEST: return "bad-request";
	default: return "unknown";
	}
}

int fn_status_http(uint32_t status)
{
	switch (status) {
	case FN_OK: return 200;
	case FN_HANDLER_ERROR:
	case FN_FAULT: return 500;
	case FN_TIMEOUT: return 504;
	case FN_TOO_LARGE: return 413;
	default: return 502;
	}
}
