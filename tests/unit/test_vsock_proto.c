/* virtio-vsock protocol rules (virtio/vsock_proto.c): header checks
 * against hostile guests, credit arithmetic with wrapping counters, the
 * CONNECT line, the --vsock argument. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "virtio/vsock_proto.h"

#define CID 42

static struct vsock_hdr good_hdr(uint16_t op, uint32_t len)
{
	return (struct vsock_hdr){
		.src_cid = CID, .dst_cid = VSOCK_HOST_CID, .src_port = 1234, .dst_port = 80,
		.len = len, .type = VSOCK_TYPE_STREAM, .op = op, .buf_alloc = 65536,
	};
}

static void test_hdr_good(void **state)
{
	const char *why = "x";
	(void)state;
	struct vsock_hdr h = good_hdr(VSOCK_OP_RW, 100);
	assert_int_equal(vsock_hdr_check(&h, CID, 44 + 100, &why), VSOCK_HDR_OK);
	assert_null(why);
	for (uint16_t op = VSOCK_OP_REQUEST; op <= VSOCK_OP_CREDIT_REQUEST; op++) {
		h = good_hdr(op, op == VSOCK_OP_RW ? 1 : 0);
		assert_int_equal(vsock_hdr_check(&h, CID, 44 + 1, &why), VSOCK_HDR_OK);
	}
	/* Payload room larger than len is fine (a guest may post big buffers). */
	h = good_hdr(VSOCK_OP_RW, 10);
	assert_int_equal(vsock_hdr_check(&h, CID, 44 + 4096, &why), VSOCK_HDR_OK);
}

static void test_hdr_short_chain(void **state)
{
	const char *why = NULL;
	(void)state;
	struct vsock_hdr h = good_hdr(VSOCK_OP_RW, 0);
	assert_int_equal(vsock_hdr_check(&h, CID, 43, &why), VSOCK_HDR_SHORT);
	assert_non_null(why);
	assert_int_equal(vsock_hdr_check(&h, CID, 0, &why), VSOCK_HDR_SHORT);
	assert_false(vsock_hdr_wants_rst(VSOCK_HDR_SHORT, &h));
}

static void test_hdr_spoofed_src(void **state)
{
	const char *why = NULL;
	(void)state;
	struct vsock_hdr h = good_hdr(VSOCK_OP_REQUEST, 0);
	h.src_cid = VSOCK_HOST_CID; /* pretending to be the host */
	assert_int_equal(vsock_hdr_check(&h, CID, 44, &why), VSOCK_HDR_BAD_SRC);
	h.src_cid = CID + 1; /* another guest */
	assert_int_equal(vsock_hdr_check(&h, CID, 44, &why), VSOCK_HDR_BAD_SRC);
	h.src_cid = CID | (1ULL << 32); /* only the low 32 bits right */
	assert_int_equal(vsock_hdr_check(&h, CID, 44, &why), VSOCK_HDR_BAD_SRC);
	/* Spoofed packets are dropped, never answered. */
	assert_false(vsock_hdr_wants_rst(VSOCK_HDR_BAD_SRC, &h));
}

static void test_hdr_bad_dst_type_op(void **state)
{
	const char *why = NULL;
	(void)state;
	struct vsock_hdr h = good_hdr(VSOCK_OP_REQUEST, 0);
	h.dst_cid = CID; /* loopback to itself through the device */
	assert_int_equal(vsock_hdr_check(&h, CID, 44, &why), VSOCK_HDR_BAD_DST);
	assert_true(vsock_hdr_wants_rst(VSOCK_HDR_BAD_DST, &h));
	h = good_hdr(VSOCK_OP_REQUEST, 0);
	h.type = 2; /* SOCK_DGRAM: not offered */
	assert_int_equal(vsock_hdr_check(&h, CID, 44, &why), VSOCK_HDR_BAD_TYPE);
	h = good_hdr(0, 0);
	assert_int_equal(vsock_hdr_check(&h, CID, 44, &why), VSOCK_HDR_BAD_OP);
	h = good_hdr(8, 0);
	assert_int_equal(vsock_hdr_check(&h, CID, 44, &why), VSOCK_HDR_BAD_OP);
	h = good_hdr(0xffff, 0);
	assert_int_equal(vsock_hdr_check(&h, CID, 44, &why), VSOCK_HDR_BAD_OP);
	/* A bad RST is never answered with a RST (no ping-pong). */
	h = good_hdr(VSOCK_OP_RST, 0);
	h.type = 3;
	assert_int_equal(vsock_hdr_check(&h, CID, 44, &why), VSOCK_HDR_BAD_TYPE);
	assert_false(vsock_hdr_wants_rst(VSOCK_HDR_BAD_TYPE, &h));
}

static void test_hdr_bad_len(void **state)
{
	const char *why = NULL;
	(void)state;
	struct vsock_hdr h = good_hdr(VSOCK_OP_RW, 101);
	/* len one byte past the descriptors */
	assert_int_equal(vsock_hdr_check(&h, CID, 44 + 100, &why), VSOCK_HDR_BAD_LEN);
	h.len = UINT32_MAX;
	assert_int_equal(vsock_hdr_check(&h, CID, 44 + 100, &why), VSOCK_HDR_BAD_LEN);
	/* above 64 KiB even if the chain is that long */
	h.len = VSOCK_MAX_PAYLOAD + 1;
	assert_int_equal(vsock_hdr_check(&h, CID, 44ULL + (1 << 20), &why), VSOCK_HDR_BAD_LEN);
	h.len = VSOCK_MAX_PAYLOAD;
	assert_int_equal(vsock_hdr_check(&h, CID, 44ULL + (1 << 20), &why), VSOCK_HDR_OK);
	/* control packets carry no data */
	h = good_hdr(VSOCK_OP_CREDIT_UPDATE, 4);
	assert_int_equal(vsock_hdr_check(&h, CID, 48, &why), VSOCK_HDR_BAD_LEN);
	assert_true(vsock_hdr_wants_rst(VSOCK_HDR_BAD_LEN, &h));
}

static void test_peer_credit(void **state)
{
	(void)state;
	struct vsock_credit c = { .peer_buf_alloc = 1000, .peer_fwd_cnt = 0, .tx_cnt = 0 };
	assert_int_equal(vsock_peer_credit(&c), 1000);
	c.tx_cnt = 600;
	assert_int_equal(vsock_peer_credit(&c), 400);
	c.tx_cnt = 1000;
	assert_int_equal(vsock_peer_credit(&c), 0);
	vsock_credit_update(&c, 1000, 700);
	assert_int_equal(vsock_peer_credit(&c), 700);
	/* Counters wrap: 2^32 - 100 sent, 2^32 - 300 forwarded. */
	c = (struct vsock_credit){ .peer_buf_alloc = 1000, .peer_fwd_cnt = UINT32_MAX - 299,
				   .tx_cnt = UINT32_MAX - 99 };
	assert_int_equal(vsock_peer_credit(&c), 800);
	c.tx_cnt += 500; /* wrapped past zero */
	assert_int_equal(vsock_peer_credit(&c), 300);
	/* A guest claiming to have forwarded more than it got: no credit,
	 * not 4 GiB of it. */
	c = (struct vsock_credit){ .peer_buf_alloc = 1000, .peer_fwd_cnt = 5000, .tx_cnt = 100 };
	assert_int_equal(vsock_peer_credit(&c), 0);
	/* A guest shrinking its buffer below what is in flight. */
	c = (struct vsock_credit){ .peer_buf_alloc = 100, .peer_fwd_cnt = 0, .tx_cnt = 500 };
	assert_int_equal(vsock_peer_credit(&c), 0);
}

static void test_rx_fits(void **state)
{
	(void)state;
	struct vsock_rx_credit r = { .buf_alloc = 65536 };
	assert_true(vsock_rx_fits(&r, 65536));
	assert_false(vsock_rx_fits(&r, 65537));
	r.rx_cnt = 60000;
	r.fwd_cnt = 10000; /* 50000 held */
	assert_int_equal(vsock_rx_held(&r), 50000);
	assert_true(vsock_rx_fits(&r, 15536));
	assert_false(vsock_rx_fits(&r, 15537));
	assert_false(vsock_rx_fits(&r, UINT32_MAX));
	/* wrapping */
	r.rx_cnt = 100;
	r.fwd_cnt = UINT32_MAX - 99; /* 200 held */
	assert_int_equal(vsock_rx_held(&r), 200);
	assert_true(vsock_rx_fits(&r, 65336));
	assert_false(vsock_rx_fits(&r, 65337));
}

static void test_rx_wants_update(void **state)
{
	(void)state;
	struct vsock_rx_credit r = { .buf_alloc = 1000 };
	/* Nothing forwarded since the last header: nothing to say. */
	assert_false(vsock_rx_wants_update(&r));
	/* Peer sent 300, we forwarded them: it still sees 700 free. */
	r.rx_cnt = 300;
	r.fwd_cnt = 300;
	assert_false(vsock_rx_wants_update(&r));
	/* Peer sent 600 unacknowledged: it sees 400 free (< half). */
	r.rx_cnt = 600;
	r.fwd_cnt = 600;
	assert_true(vsock_rx_wants_update(&r));
	/* After the update went out, quiet again. */
	r.last_fwd_sent = r.fwd_cnt;
	assert_false(vsock_rx_wants_update(&r));
	/* Peer filled the buffer but the host reader has not moved: an
	 * update would tell it nothing. */
	r.rx_cnt = 1600;
	assert_false(vsock_rx_wants_update(&r));
	r.fwd_cnt = 1100;
	assert_true(vsock_rx_wants_update(&r));
}

static int parse(const char *s, uint32_t *port, size_t *used, const char **err)
{
	return vsock_parse_connect(s, strlen(s), port, used, err);
}

static void test_connect_line(void **state)
{
	uint32_t port = 0;
	size_t used = 0;
	const char *err = NULL;
	(void)state;
	assert_int_equal(parse("CONNECT 52\n", &port, &used, &err), 1);
	assert_int_equal(port, 52);
	assert_int_equal(used, 11);
	/* Data after the newline is not part of the line. */
	assert_int_equal(parse("CONNECT 1024\nhello", &port, &used, &err), 1);
	assert_int_equal(port, 1024);
	assert_int_equal(used, 13);
	assert_int_equal(parse("CONNECT 7\r\n", &port, &used, &err), 1);
	assert_int_equal(port, 7);
	assert_int_equal(parse("CONNECT 4294967294\n", &port, &used, &err), 1);
	assert_int_equal(port, 4294967294u);
	assert_int_equal(parse("CONNECT 0\n", &port, &used, &err), 1);
	assert_int_equal(port, 0);
	/* Incomplete: wait for more. */
	assert_int_equal(parse("", &port, &used, &err), 0);
	assert_int_equal(parse("CONN", &port, &used, &err), 0);
	assert_int_equal(parse("CONNECT 12", &port, &used, &err), 0);
}

static void test_connect_line_bad(void **state)
{
	uint32_t port;
	size_t used;
	const char *err;
	(void)state;
	static const char *const bad[] = {
		"connect 52\n", "CONNECTX\n", "GET / HTTP/1.1\r\n", "CONNECT\n", "CONNECT \n",
		"CONNECT abc\n", "CONNECT -1\n", "CONNECT 12x\n", "CONNECT  52\n", "CONNECT 5 2\n",
		"CONNECT 4294967295\n", "CONNECT 4294967296\n", "CONNECT 99999999999999999999\n",
		"CONNECT 0x10\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		if (parse(bad[i], &port, &used, &err) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
		assert_non_null(err);
	}
	err = NULL;
	assert_int_equal(parse("CONNECT 4294967295\n", &port, &used, &err), -EINVAL);
	assert_non_null(strstr(err, "range"));
	err = NULL;
	assert_int_equal(parse("CONNECT abc\n", &port, &used, &err), -EINVAL);
	assert_non_null(strstr(err, "number"));
	/* 32 bytes without a newline: too long, even if all digits. */
	err = NULL;
	assert_int_equal(parse("CONNECT 000000000000000000000001", &port, &used, &err), -EINVAL);
	assert_non_null(strstr(err, "too long"));
	/* A newline beyond 32 bytes does not count. */
	err = NULL;
	assert_int_equal(parse("CONNECT 0000000000000000000000001\n", &port, &used, &err),
			 -EINVAL);
}

static void test_parse_arg(void **state)
{
	struct vsock_config cfg;
	char err[256];
	(void)state;
	assert_int_equal(vsock_parse_arg("cid=3,uds=/tmp/v.sock", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.guest_cid, 3);
	assert_string_equal(cfg.uds_path, "/tmp/v.sock");
	assert_int_equal(vsock_parse_arg("uds=/x,cid=4294967294", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.guest_cid, 4294967294ULL);
	static const char *const bad[] = {
		"cid=2,uds=/x", "cid=0,uds=/x", "cid=4294967295,uds=/x", "cid=-3,uds=/x",
		"cid=3", "uds=/x", "cid=abc,uds=/x", "cid=3,uds=", "cid=3,uds=/x,foo=1", "",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		if (!vsock_parse_arg(bad[i], &cfg, err, sizeof(err)))
			fail_msg("'%s' was accepted", bad[i]);
		assert_true(strlen(err) > 0);
	}
	char longp[200] = "cid=3,uds=/";
	memset(longp + 11, 'a', 100);
	longp[111] = 0;
	assert_int_equal(vsock_parse_arg(longp, &cfg, err, sizeof(err)), -ENAMETOOLONG);
}

static void test_peer_path(void **state)
{
	char out[VSOCK_UDS_PATH_MAX + 16];
	(void)state;
	assert_int_equal(vsock_peer_path("/tmp/v.sock", 52, out, sizeof(out)), 0);
	assert_string_equal(out, "/tmp/v.sock_52");
	char p[VSOCK_UDS_PATH_MAX];
	memset(p, 'a', 100);
	p[0] = '/';
	p[100] = 0;
	assert_int_equal(vsock_peer_path(p, 4294967294u, out, sizeof(out)), -ENAMETOOLONG);
	assert_int_equal(vsock_peer_path(p, 1, out, sizeof(out)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_good),
		cmocka_unit_test(test_hdr_short_chain),
		cmocka_unit_test(test_hdr_spoofed_src),
		cmocka_unit_test(test_hdr_bad_dst_type_op),
		cmocka_unit_test(test_hdr_bad_len),
		cmocka_unit_test(test_peer_credit),
		cmocka_unit_test(test_rx_fits),
		cmocka_unit_test(test_rx_wants_update),
		cmocka_unit_test(test_connect_line),
		cmocka_unit_test(test_connect_line_bad),
		cmocka_unit_test(test_parse_arg),
		cmocka_unit_test(test_peer_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
