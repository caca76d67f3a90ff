/* virtio-vsock packet format and the pure rules of the protocol (virtio
 * 1.2, 5.10): header validation, credit accounting, the CONNECT line of
 * Firecracker's hybrid vsock and the --vsock argument. No I/O here, so the
 * unit tests exercise every rule without KVM or sockets. */
#ifndef MOTE_VIRTIO_VSOCK_PROTO_H
#define MOTE_VIRTIO_VSOCK_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VSOCK_HOST_CID 2
#define VSOCK_MIN_GUEST_CID 3
/* CIDs 0xffffffff (VMADDR_CID_ANY) and above are not addresses. */
#define VSOCK_MAX_GUEST_CID 0xfffffffeULL

#define VSOCK_TYPE_STREAM 1

enum vsock_op {
	VSOCK_OP_INVALID = 0,
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};

#define VSOCK_SHUTDOWN_RCV  1u /* the sender will receive no more */
#define VSOCK_SHUTDOWN_SEND 2u /* the sender will send no more */

#define VSOCK_EVENT_TRANSPORT_RESET 0

/* Largest payload of one packet either way (Linux uses the same bound). */
#define VSOCK_MAX_PAYLOAD (64u * 1024)

struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
} __attribute__((packed));
_Static_assert(sizeof(struct vsock_hdr) == 44, "virtio_vsock_hdr layout");

/* What a guest TX header is, once checked. */
enum vsock_hdr_verdict {
	VSOCK_HDR_OK,
	VSOCK_HDR_SHORT,        /* chain shorter than a header: drop, count */
	VSOCK_HDR_BAD_SRC,      /* src_cid is not the guest's own: drop, count */
	VSOCK_HDR_BAD_DST,      /* dst_cid is not the host: answer RST */
	VSOCK_HDR_BAD_TYPE,     /* not a stream: answer RST */
	VSOCK_HDR_BAD_OP,       /* unknown op: answer RST */
	VSOCK_HDR_BAD_LEN,      /* len beyond the chain, above the maximum, or data on a
				 * control packet: answer RST */
};

/* Checks a header the guest put on the TX queue; payload_room is how many
 * device-readable bytes follow the header in its chain. *why says what is
 * wrong (for a log line or a counter). */
enum vsock_hdr_verdict vsock_hdr_check(const struct vsock_hdr *h, uint64_t guest_cid,
				       uint64_t chain_readable, const char **why);
/* True if the guest must be answered with RST for this verdict (never for
 * a RST itself: two RSTs must not ping-pong). */
bool vsock_hdr_wants_rst(enum vsock_hdr_verdict v, const struct vsock_hdr *h);

/* ---- credit (5.10.6.3) ----------------------------------------------------- */

/* The sending half of a stream: what the peer told us, what we sent. */
struct vsock_credit {
	uint32_t peer_buf_alloc;
	uint32_t peer_fwd_cnt;
	uint32_t tx_cnt;        /* bytes we sent on the stream */
};

/* Bytes we may still send: peer_buf_alloc - (tx_cnt - peer_fwd_cnt), 0 if
 * the peer's numbers make no sense (fwd_cnt ahead of what we sent). */
uint32_t vsock_peer_credit(const struct vsock_credit *c);
/* A header from the peer updates its buffer and forward count. */
void vsock_credit_update(struct vsock_credit *c, uint32_t buf_alloc, uint32_t fwd_cnt);

/* The receiving half as the monitor keeps it for a guest->host stream. */
struct vsock_rx_credit {
	uint32_t buf_alloc;     /* what we advertise: the bytes we will hold */
	uint32_t rx_cnt;        /* bytes received from the peer */
	uint32_t fwd_cnt;       /* bytes passed on (written to the host socket) */
	uint32_t last_fwd_sent; /* fwd_cnt in the last header we sent the peer */
};

/* Would len more bytes from the peer stay within what we advertised? */
bool vsock_rx_fits(const struct vsock_rx_credit *c, uint32_t len);
/* Bytes held (received, not yet passed on). */
uint32_t vsock_rx_held(const struct vsock_rx_credit *c);
/* Should we send a CREDIT_UPDATE now? Yes when our forward count moved
 * since the last header and the peer's view of our free space is below
 * half the buffer (so the peer may be about to stall); never otherwise,
 * so a stream that flows costs no extra packets. */
bool vsock_rx_wants_update(const struct vsock_rx_credit *c);

/* ---- the hybrid vsock CONNECT line ------------------------------------------ */

/* Longest line accepted, newline included ("CONNECT 4294967294\n" is 19). */
#define VSOCK_CONNECT_LINE_MAX 32

/* Parses the first bytes a host client sent on uds_path. Returns 1 with
 * *port and *line_len (bytes up to and including '\n') when a complete
 * valid line is there; 0 when more bytes are needed; -EINVAL with *err
 * (a message without "ERR ") when the line is bad or too long. */
int vsock_parse_connect(const char *buf, size_t len, uint32_t *port, size_t *line_len,
			const char **err);

/* ---- --vsock cid=N,uds=PATH -------------------------------------------------- */

#define VSOCK_UDS_PATH_MAX 108 /* sizeof(sun_path), with the NUL */

struct vsock_config {
	uint64_t guest_cid;
	char uds_path[VSOCK_UDS_PATH_MAX];
};

/* Parses "cid=N,uds=PATH"; 0, or -EINVAL/-ENAMETOOLONG with a message. */
int vsock_parse_arg(const char *arg, struct vsock_config *cfg, char *err, size_t errlen);
/* "<uds_path>_<port>" for guest-initiated connections; -ENAMETOOLONG if
 * it does not fit a sockaddr_un. */
int vsock_peer_path(const char *uds_path, uint32_t port, char *out, size_t outlen);

#endif
