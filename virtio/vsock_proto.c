/* The pure rules of virtio-vsock; see vsock_proto.h. */
#include "virtio/vsock_proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/devargs.h"

enum vsock_hdr_verdict vsock_hdr_check(const struct vsock_hdr *h, uint64_t guest_cid,
				       uint64_t chain_readable, const char **why)
{
	if (chain_readable < sizeof(*h)) {
		*why = "TX chain shorter than a packet header";
		return VSOCK_HDR_SHORT;
	}
	/* A guest may only speak as itself: anything else is spoofing. */
	if (h->src_cid != guest_cid) {
		*why = "packet src_cid is not the guest's CID";
		return VSOCK_HDR_BAD_SRC;
	}
	if (h->dst_cid != VSOCK_HOST_CID) {
		*why = "packet dst_cid is not the host (CID 2)";
		return VSOCK_HDR_BAD_DST;
	}
	if (h->type != VSOCK_TYPE_STREAM) {
		*why = "packet type is not stream";
		return VSOCK_HDR_BAD_TYPE;
	}
	if (h->op < VSOCK_OP_REQUEST || h->op > VSOCK_OP_CREDIT_REQUEST) {
		*why = "unknown packet op";
		return VSOCK_HDR_BAD_OP;
	}
	if (h->len > chain_readable - sizeof(*h)) {
		*why = "packet len runs past its descriptors";
		return VSOCK_HDR_BAD_LEN;
	}
	if (h->len > VSOCK_MAX_PAYLOAD) {
		*why = "packet len above 64 KiB";
		return VSOCK_HDR_BAD_LEN;
	}
	if (h->op != VSOCK_OP_RW && h->len) {
		*why = "control packet carries data";
		return VSOCK_HDR_BAD_LEN;
	}
	*why = NULL;
	return VSOCK_HDR_OK;
}

bool vsock_hdr_wants_rst(enum vsock_hdr_verdict v, const struct vsock_hdr *h)
{
	switch (v) {
	case VSOCK_HDR_BAD_DST:
	case VSOCK_HDR_BAD_TYPE:
	case VSOCK_HDR_BAD_OP:
	case VSOCK_HDR_BAD_LEN:
		return h->op != VSOCK_OP_RST;
	default:
		return false;
	}
}

uint32_t vsock_peer_credit(const struct vsock_credit *c)
{
	/* Unsigned wrap-around is the protocol's own arithmetic (the
	 * counters are free-running u32). */
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	if (in_flight > c->peer_buf_alloc)
		return 0;
	return c->peer_buf_alloc - in_flight;
}

void vsock_credit_update(struct vsock_credit *c, uint32_t buf_alloc, uint32_t fwd_cnt)
{
	c->peer_buf_alloc = buf_alloc;
	c->peer_fwd_cnt = fwd_cnt;
}

uint32_t vsock_rx_held(const struct vsock_rx_credit *c)
{
	return c->rx_cnt - c->fwd_cnt;
}

bool vsock_rx_fits(const struct vsock_rx_credit *c, uint32_t len)
{
	uint32_t held = vsock_rx_held(c);

	return held <= c->buf_alloc && len <= c->buf_alloc - held;
}

bool vsock_rx_wants_update(const struct vsock_rx_credit *c)
{
	if (c->fwd_cnt == c->last_fwd_sent)
		return false;
	/* The peer believes this much is free: buf_alloc minus what it sent
	 * since the forward count it last heard of. */
	uint32_t unacked = c->rx_cnt - c->last_fwd_sent;
	uint32_t peer_free = unacked > c->buf_alloc ? 0 : c->buf_alloc - unacked;

	return peer_free < c->buf_alloc / 2;
}

int vsock_parse_connect(const char *buf, size_t len, uint32_t *port, size_t *line_len,
			const char **err)
{
	static const char verb[] = "CONNECT ";
	size_t vlen = sizeof(verb) - 1;
	size_t n = len < VSOCK_CONNECT_LINE_MAX ? len : VSOCK_CONNECT_LINE_MAX;
	const char *nl = memchr(buf, '\n', n);

	/* The verb is checked as soon as its bytes are there, so a client
	 * speaking another protocol hears why at once. */
	if (memcmp(buf, verb, len < vlen ? len : vlen)) {
		*err = "expected 'CONNECT <port>\\n'";
		return -EINVAL;
	}
	if (!nl) {
		if (len >= VSOCK_CONNECT_LINE_MAX) {
			*err = "CONNECT line too long (no newline within 32 bytes)";
			return -EINVAL;
		}
		return 0;
	}
	size_t end = (size_t)(nl - buf);
	if (end > vlen && buf[end - 1] == '\r')
		end--; /* telnet and friends send CRLF */
	if (end <= vlen) {
		*err = "CONNECT without a port number";
		return -EINVAL;
	}
	uint64_t v = 0;
	for (size_t i = vlen; i < end; i++) {
		if (buf[i] < '0' || buf[i] > '9') {
			*err = "port is not a decimal number";
			return -EINVAL;
		}
		v = v * 10 + (uint64_t)(buf[i] - '0');
		if (v > 0xffffffffULL)
			break;
	}
	/* 0xffffffff is VMADDR_PORT_ANY, not a port one can connect to. */
	if (v >= 0xffffffffULL) {
		*err = "port out of range (0 to 4294967294)";
		return -EINVAL;
	}
	*port = (uint32_t)v;
	*line_len = (size_t)(nl - buf) + 1;
	return 1;
}

int vsock_parse_arg(const char *arg, struct vsock_config *cfg, char *err, size_t errlen)
{
	struct devargs it;
	struct devarg a;
	bool have_cid = false;
	int ret = 0;

	if (devargs_open(&it, arg))
		return -ENOMEM;
	memset(cfg, 0, sizeof(*cfg));
	while (devargs_next(&it, &a)) {
		uint64_t v;

		if (devarg_is(&a, "cid") && a.val) {
			if (devarg_u64(a.val, &v) || v < VSOCK_MIN_GUEST_CID ||
			    v > VSOCK_MAX_GUEST_CID) {
				snprintf(err, errlen, "--vsock: cid '%s' must be a number from %d to "
					 "%llu (0-2 are reserved)", a.val, VSOCK_MIN_GUEST_CID,
					 (unsigned long long)VSOCK_MAX_GUEST_CID);
				ret = -EINVAL;
				break;
			}
			cfg->guest_cid = v;
			have_cid = true;
		} else if (devarg_is(&a, "uds") && a.val && *a.val) {
			/* Room for "_<port>" too: guest connections go to
			 * uds_<port>, up to 11 more bytes. */
			if (strlen(a.val) + 11 >= sizeof(cfg->uds_path)) {
				snprintf(err, errlen, "--vsock: uds path is longer than %zu bytes "
					 "(a unix socket path, plus '_<port>')",
					 sizeof(cfg->uds_path) - 12);
				ret = -ENAMETOOLONG;
				break;
			}
			strcpy(cfg->uds_path, a.val);
		} else {
			snprintf(err, errlen, "--vsock: '%s' is not cid=N or uds=PATH", a.item);
			ret = -EINVAL;
			break;
		}
	}
	if (!ret && (!have_cid || !cfg->uds_path[0])) {
		snprintf(err, errlen, "--vsock '%s' needs both cid=N and uds=PATH", arg);
		ret = -EINVAL;
	}
	devargs_close(&it);
	return ret;
}

int vsock_peer_path(const char *uds_path, uint32_t port, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s_%u", uds_path, port);

	return n < 0 || (size_t)n >= outlen || (size_t)n >= VSOCK_UDS_PATH_MAX ? -ENAMETOOLONG : 0;
}
