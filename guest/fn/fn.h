/*
 * fn.h - the one header a mote function is written against.
 *
 * A function is a C file that defines fn_handle() (and optionally
 * fn_init()). `make fn FN=path/to/file.c` links it with the runtime into
 * a bootable PVH image (build/fn/<name>.elf) that serves requests over
 * virtio-vsock (protocol.h), one at a time.
 *
 * The function runs at CPL3 (user mode) inside the guest, freestanding:
 * no libc, no floating point / SSE (built with -mgeneral-regs-only), no
 * I/O instructions. A fault (bad pointer, division by zero, ...) or
 * running past the request's deadline ends the request with an error
 * response; the runtime and the VM go on with the next request.
 * Memory persists across requests (globals keep their values).
 */
#ifndef MOTE_FN_H
#define MOTE_FN_H

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

/*
 * Handles one request: req_len bytes at req (at most FN_MAX_REQUEST).
 * Writes the response at resp (resp_cap == FN_MAX_RESPONSE bytes) and
 * sets *resp_len (0 if not set). Returns 0 for FN_OK; any other value
 * gives FN_HANDLER_ERROR, with the response bytes as the error message.
 * A *resp_len over resp_cap gives FN_TOO_LARGE.
 */
int fn_handle(const uint8_t *req, uint32_t req_len, uint8_t *resp, uint32_t resp_cap,
	      uint32_t *resp_len);

/* Optional, once at boot before the runtime signals ready (so its work
 * is in the launcher's warm snapshot). */
void fn_init(void) __attribute__((weak));

/* Services. */
uint64_t fn_clock_ns(void);            /* monotonic, ns since boot */
void fn_random(void *buf, size_t len); /* mixed with each request's host seed */
void fn_log(const char *msg);          /* one line on the serial console (<= 200 bytes) */
void fn_sleep_ns(uint64_t ns);         /* the vCPU halts meanwhile */

/* Freestanding helpers. */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t fn_strlen(const char *s);
/* Decimal text of v at out (no NUL); returns its length (<= 20). */
size_t fn_fmt_u64(char *out, uint64_t v);
/* Parses a decimal number at *p (skipping leading spaces), advances *p
 * past it. 0, or -1 if there is no number before end. */
int fn_parse_u64(const char **p, const char *end, uint64_t *out);

#endif /* MOTE_FN_H */
