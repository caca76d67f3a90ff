/* The launcher's side of guest/fn/protocol.h on one vsock stream:
 * "CONNECT 5000\n" -> "OK <port>\n", then one request out and one
 * response in. The reader is an incremental, bounded parser of what the
 * VM sends back (the VM is untrusted: every length is checked). */
#ifndef MOTE_LAUNCHER_FNWIRE_H
#define MOTE_LAUNCHER_FNWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest/fn/protocol.h"

enum fn_reader_state { FNR_HANDSHAKE, FNR_HEADER, FNR_BODY, FNR_DONE, FNR_ERROR };

struct fn_reader {
	enum fn_reader_state st;
	char line[160];
	size_t line_len;
	uint8_t hdr_buf[sizeof(struct fn_response_hdr)];
	size_t hdr_len;
	struct fn_response_hdr hdr;
	char *body;                 /* malloc'd, hdr.body_len bytes (+1 for a NUL) */
	size_t body_len;
	const char *error;          /* why FNR_ERROR */
	char err_buf[200];
};

void fn_reader_init(struct fn_reader *r);
void fn_reader_free(struct fn_reader *r);
/* Consumes all of data. 0, or -1 with r->st FNR_ERROR and r->error.
 * r->st tells where it is (past FNR_HANDSHAKE: the runtime accepted the
 * stream; FNR_DONE: the whole response is in). */
int fn_reader_feed(struct fn_reader *r, const void *data, size_t len);

/* The first bytes to send: the CONNECT line and the request header. */
size_t fn_request_prefix(char *out, size_t outlen, uint32_t body_len, uint32_t deadline_ms,
			 const uint8_t seed[16]);

/* "ok", "handler-error", "fault", "timeout", "too-large", "bad-request". */
const char *fn_status_name(uint32_t status);
/* The HTTP status an invocation gets for a runtime status. */
int fn_status_http(uint32_t status);

#endif
