/*
 * protocol.h - the wire protocol between mote's function runtime (a PVH
 * unikernel, guest/fn/) and whoever invokes it on the host (the launcher).
 *
 * Shared by guest and host code: freestanding (no libc types beyond the
 * fixed-width integers), little-endian, no padding.
 *
 * Transport: virtio-vsock. The runtime listens on FN_VSOCK_PORT. A host
 * process reaches it through mote's hybrid vsock unix socket: connect to
 * uds_path, send "CONNECT 5000\n", read "OK <port>\n", then one or more
 * request/response exchanges on the stream, one at a time.
 *
 * Ready: after initialising, the runtime (first boot only, not after a
 * snapshot restore) connects to the host, CID 2, port FN_READY_PORT, sends
 * FN_READY_LINE and closes. mote forwards that to the unix socket
 * "<uds_path>_53", where the launcher listens while the instance boots. It
 * also prints FN_READY_LINE on the serial console (for humans and QEMU).
 *
 * Randomness: every request carries 16 fresh bytes from the host, which
 * the runtime mixes into its generator before running the handler, so two
 * clones restored from one snapshot never hand out the same numbers.
 */
#ifndef MOTE_FN_PROTOCOL_H
#define MOTE_FN_PROTOCOL_H

#include <stdint.h>

#define FN_VSOCK_PORT 5000u
#define FN_READY_PORT 53u
#define FN_READY_LINE "mote-fn: ready\n"

#define FN_REQ_MAGIC 0x51464d4du  /* "MMFQ" little-endian */
#define FN_RESP_MAGIC 0x52464d4du /* "MMFR" */

/* Limits the runtime enforces (and the launcher checks before sending). */
#define FN_MAX_REQUEST  (256u * 1024u)
#define FN_MAX_RESPONSE (256u * 1024u)

struct fn_request_hdr {
	uint32_t magic;       /* FN_REQ_MAGIC */
	uint32_t body_len;    /* bytes of body that follow, <= FN_MAX_REQUEST */
	uint32_t deadline_ms; /* handler time limit; 0 = the runtime's default */
	uint32_t flags;       /* 0 */
	uint8_t seed[16];     /* fresh host randomness */
} __attribute__((packed));

enum fn_status {
	FN_OK = 0,            /* handler returned a response */
	FN_HANDLER_ERROR = 1, /* handler returned an error; body is its message */
	FN_FAULT = 2,         /* handler crashed (exception at CPL3); body says which */
	FN_TIMEOUT = 3,       /* handler ran past its deadline and was stopped */
	FN_TOO_LARGE = 4,     /* request or response over the limit */
	FN_BAD_REQUEST = 5,   /* bad magic / header */
};

struct fn_response_hdr {
	uint32_t magic;       /* FN_RESP_MAGIC */
	uint32_t status;      /* enum fn_status */
	uint32_t body_len;    /* bytes of body that follow, <= FN_MAX_RESPONSE */
	uint32_t handler_us;  /* guest-measured handler run time */
} __attribute__((packed));

#endif
