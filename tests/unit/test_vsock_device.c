/* virtio-vsock device (virtio/vsock.c) without KVM: the test plays a
 * hostile guest driver on rings in a fake guest RAM (the transport runs
 * with vm_fd = -1, so a QueueNotify write calls the device at once) and
 * the host side with real unix sockets. Checks header validation as the
 * device applies it, credit enforcement both ways, RST answers, RX buffer
 * checks and the transport-reset event. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/unit/virtq_fixture.h"
#include "virtio/mmio.h"
#include "virtio/vsock.h"
#include "vmm/bus.h"
#include "vmm/loop.h"
#include "vmm/mem.h"


#define RAM_SIZE (4ULL << 20)
#define RXBUF_GPA(i) (0x100000ULL + 0x11000ULL * (i))   /* 68 KiB apart */
#define RXBUF_LEN    (44 + 65536)
#define TXBUF_GPA(i) (0x300000ULL + 0x11000ULL * (i))
#define EVBUF_GPA    0x3f0000ULL
#define RXQ 0
#define TXQ 1
#define EVQ 2
#define CID 9

struct fixture {
	struct virtio_vsock *v;
	struct virtio_device *dev;
	struct virtio_mmio t;
	struct bus bus;
	struct guest_mem mem;
	struct event_loop *loop;
	uint8_t *ram;
	char uds[96];
	struct vqf_rings rings;
	unsigned tx_slot;
};

static void post_rx(struct fixture *f, unsigned i, uint32_t len)
{
	vqf_put_desc(f->ram, RXQ, i, RXBUF_GPA(i), len, VIRTQ_DESC_F_WRITE, 0);
	vqf_avail_add(f->ram, &f->rings, RXQ, (uint16_t)i);
}

static struct vsock_hdr hdr(uint16_t op, uint32_t src_port, uint32_t dst_port, uint32_t len)
{
	return (struct vsock_hdr){ .src_cid = CID, .dst_cid = VSOCK_HOST_CID,
				   .src_port = src_port, .dst_port = dst_port, .len = len,
				   .type = VSOCK_TYPE_STREAM, .op = op, .buf_alloc = 65536 };
}

/* A TX packet: header and payload in one buffer; chain_len may lie. */
static void send_tx_len(struct fixture *f, const struct vsock_hdr *h, const void *payload,
			uint32_t plen, uint32_t chain_len)
{
	unsigned i = f->tx_slot++ % VQF_QSIZE;
	memcpy(f->ram + TXBUF_GPA(i), h, sizeof(*h));
	if (plen)
		memcpy(f->ram + TXBUF_GPA(i) + sizeof(*h), payload, plen);
	vqf_put_desc(f->ram, TXQ, i, TXBUF_GPA(i), chain_len, 0, 0);
	vqf_avail_add(f->ram, &f->rings, TXQ, (uint16_t)i);
	vqf_kick(&f->t, TXQ);
}

static void send_tx(struct fixture *f, const struct vsock_hdr *h, const void *payload,
		    uint32_t plen)
{
	send_tx_len(f, h, payload, plen, (uint32_t)sizeof(*h) + plen);
}

/* The next RX packet the device wrote; false if none. */
static bool rx_next(struct fixture *f, struct vsock_hdr *h, uint8_t **payload)
{
	uint32_t id, len;
	if (!vqf_used_pop(f->ram, &f->rings, RXQ, &id, &len))
		return false;
	assert_true(id < VQF_QSIZE);
	assert_true(len >= sizeof(*h));
	memcpy(h, f->ram + RXBUF_GPA(id), sizeof(*h));
	assert_int_equal(len, sizeof(*h) + h->len);
	assert_int_equal(h->src_cid, VSOCK_HOST_CID);
	assert_int_equal(h->dst_cid, CID);
	if (payload)
		*payload = f->ram + RXBUF_GPA(id) + sizeof(*h);
	/* Recycle it at once, as a driver would. */
	post_rx(f, id, RXBUF_LEN);
	return true;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(f->ram != MAP_FAILED);
	assert_int_equal(guest_mem_init_from_buffer(&f->mem, f->ram, RAM_SIZE), 0);
	f->loop = loop_create();
	assert_non_null(f->loop);
	snprintf(f->uds, sizeof(f->uds), "/tmp/mote-vsock-unit-%d.sock", getpid());
	struct vsock_config cfg = { .guest_cid = CID };
	strcpy(cfg.uds_path, f->uds);
	if (virtio_vsock_create(&f->v, &cfg, f->loop, "vsock0", err, sizeof(err)))
		fail_msg("%s", err);
	f->dev = virtio_vsock_device(f->v);
	const struct virtio_mmio_env env = { .vm_fd = -1, .mem = &f->mem, .mmio_bus = &f->bus };
	assert_int_equal(virtio_mmio_init(&f->t, f->dev, &env, 0xc0001000ULL, 5), 0);

	vqf_bring_up(&f->t, 1ULL << VIRTIO_F_VERSION_1, 3);
	assert_int_equal(vqf_rd(&f->t, VQF_REG_CONFIG), CID);
	for (unsigned i = 0; i < 8; i++)
		post_rx(f, i, RXBUF_LEN);
	vqf_kick(&f->t, RXQ);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	virtio_mmio_destroy(&f->t);
	virtio_vsock_destroy(f->v);
	loop_destroy(f->loop);
	munmap(f->ram, RAM_SIZE);
	free(f);
	return 0;
}

static int listen_at(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	unlink(path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

static int dial(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* The guest connects to host port 7000 where the test listens; returns
 * the accepted host-side fd, with the RESPONSE consumed. */
static int guest_connect(struct fixture *f, uint32_t guest_port, uint32_t buf_alloc)
{
	char peer[128];
	struct vsock_hdr h = hdr(VSOCK_OP_REQUEST, guest_port, 7000, 0), r;

	snprintf(peer, sizeof(peer), "%s_7000", f->uds);
	int lfd = listen_at(peer);
	h.buf_alloc = buf_alloc;
	send_tx(f, &h, NULL, 0);
	assert_true(rx_next(f, &r, NULL));
	assert_int_equal(r.op, VSOCK_OP_RESPONSE);
	assert_int_equal(r.src_port, 7000);
	assert_int_equal(r.dst_port, guest_port);
	assert_int_equal(r.buf_alloc, VSOCK_CONN_BUF);
	int fd = accept(lfd, NULL, NULL);
	assert_true(fd >= 0);
	close(lfd);
	unlink(peer);
	return fd;
}

static void test_guest_stream_both_ways(void **state)
{
	struct fixture *f = *state;
	struct vsock_hdr r;
	uint8_t *p;
	char buf[256];

	int fd = guest_connect(f, 1234, 65536);
	struct vsock_hdr h = hdr(VSOCK_OP_RW, 1234, 7000, 5);
	send_tx(f, &h, "hello", 5);
	assert_int_equal(read(fd, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(write(fd, "world!", 6), 6);
	virtio_vsock_poll(f->v);
	assert_true(rx_next(f, &r, &p));
	assert_int_equal(r.op, VSOCK_OP_RW);
	assert_int_equal(r.len, 6);
	assert_memory_equal(p, "world!", 6);
	assert_int_equal(r.fwd_cnt, 5); /* the 5 bytes reached the host */
	/* Host closes: the guest hears SHUTDOWN, then (after its own) RST. */
	close(fd);
	virtio_vsock_poll(f->v);
	assert_true(rx_next(f, &r, NULL));
	assert_int_equal(r.op, VSOCK_OP_SHUTDOWN);
	assert_int_equal(r.flags & VSOCK_SHUTDOWN_SEND, VSOCK_SHUTDOWN_SEND);
	h = hdr(VSOCK_OP_SHUTDOWN, 1234, 7000, 0);
	h.flags = VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND;
	send_tx(f, &h, NULL, 0);
	assert_true(rx_next(f, &r, NULL));
	assert_int_equal(r.op, VSOCK_OP_RST);
	assert_int_equal(virtio_vsock_nr_conns(f->v), 0);
	const struct vsock_stats *st = virtio_vsock_stats(f->v);
	assert_int_equal(st->tx_bytes, 5);
	assert_int_equal(st->rx_bytes, 6);
	assert_int_equal(st->bad_packets, 0);
}

static void test_hostile_headers(void **state)
{
	struct fixture *f = *state;
	const struct vsock_stats *st = virtio_vsock_stats(f->v);
	struct vsock_hdr r, h;
	uint32_t id, len;

	/* Spoofed source CID: dropped without an answer. */
	h = hdr(VSOCK_OP_REQUEST, 1, 7000, 0);
	h.src_cid = VSOCK_HOST_CID;
	send_tx(f, &h, NULL, 0);
	assert_false(rx_next(f, &r, NULL));
	assert_int_equal(st->bad_packets, 1);
	/* The TX chain still comes back to the guest. */
	assert_true(vqf_used_pop(f->ram, &f->rings, TXQ, &id, &len));
	/* Wrong destination, bad type, bad op, len past the descriptor: RST. */
	h = hdr(VSOCK_OP_REQUEST, 2, 7000, 0);
	h.dst_cid = 77;
	send_tx(f, &h, NULL, 0);
	h = hdr(VSOCK_OP_REQUEST, 3, 7000, 0);
	h.type = 2;
	send_tx(f, &h, NULL, 0);
	h = hdr(99, 4, 7000, 0);
	send_tx(f, &h, NULL, 0);
	h = hdr(VSOCK_OP_RW, 5, 7000, 1000);
	send_tx_len(f, &h, "x", 1, 45);
	for (uint32_t port = 2; port <= 5; port++) {
		assert_true(rx_next(f, &r, NULL));
		assert_int_equal(r.op, VSOCK_OP_RST);
		assert_int_equal(r.dst_port, port);
		assert_int_equal(r.src_port, 7000);
	}
	assert_int_equal(st->bad_packets, 5);
	/* A chain shorter than a header: dropped. */
	h = hdr(VSOCK_OP_REQUEST, 6, 7000, 0);
	send_tx_len(f, &h, NULL, 0, 20);
	assert_false(rx_next(f, &r, NULL));
	assert_int_equal(st->bad_packets, 6);
	/* A RST for no stream is not answered (no ping-pong). */
	h = hdr(VSOCK_OP_RST, 7, 7000, 0);
	send_tx(f, &h, NULL, 0);
	assert_false(rx_next(f, &r, NULL));
	/* Data for no stream: RST. */
	h = hdr(VSOCK_OP_RW, 8, 7000, 3);
	send_tx(f, &h, "abc", 3);
	assert_true(rx_next(f, &r, NULL));
	assert_int_equal(r.op, VSOCK_OP_RST);
	/* Nobody listens at uds_7001: the guest's REQUEST gets RST. */
	h = hdr(VSOCK_OP_REQUEST, 9, 7001, 0);
	send_tx(f, &h, NULL, 0);
	assert_true(rx_next(f, &r, NULL));
	assert_int_equal(r.op, VSOCK_OP_RST);
	assert_int_equal(st->guest_conns_refused, 1);
	/* None of it hurt the device. */
	assert_int_equal(vqf_rd(&f->t, VQF_REG_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

/* The guest may not send more than the device advertised: once the host
 * socket is full, the device holds at most VSOCK_CONN_BUF more, and a
 * guest that keeps sending gets its stream reset rather than buffered. */
static void test_guest_credit_enforced(void **state)
{
	struct fixture *f = *state;
	const struct vsock_stats *st = virtio_vsock_stats(f->v);
	static uint8_t chunk[60000];
	struct vsock_hdr r;
	bool rst = false;
	int sent = 0;

	int fd = guest_connect(f, 2000, 65536);
	struct vsock_hdr h = hdr(VSOCK_OP_RW, 2000, 7000, sizeof(chunk));
	/* The host never reads; the guest ignores every credit it is told. */
	while (!rst && sent < 40) {
		send_tx(f, &h, chunk, sizeof(chunk));
		sent++;
		while (rx_next(f, &r, NULL))
			rst |= r.op == VSOCK_OP_RST;
	}
	assert_true(rst);
	assert_int_equal(st->credit_violations, 1);
	assert_int_equal(virtio_vsock_nr_conns(f->v), 0);
	/* What the socket took plus at most 64 KiB; the rest was refused. */
	assert_true(st->tx_bytes <= (uint64_t)sent * sizeof(chunk));
	assert_true((uint64_t)sent * sizeof(chunk) - st->tx_bytes <= VSOCK_CONN_BUF + sizeof(chunk));
	close(fd);
}

/* Host -> guest: the device never sends more than the guest's buf_alloc
 * beyond its fwd_cnt, and resumes when the guest reports progress. */
static void test_host_data_respects_guest_credit(void **state)
{
	struct fixture *f = *state;
	static uint8_t big[32768];
	struct vsock_hdr r;
	uint32_t got = 0;

	int fd = guest_connect(f, 3000, 4096);
	memset(big, 0x42, sizeof(big));
	assert_int_equal(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
	virtio_vsock_poll(f->v);
	while (rx_next(f, &r, NULL)) {
		if (r.op == VSOCK_OP_RW)
			got += r.len;
		else
			assert_int_equal(r.op, VSOCK_OP_CREDIT_REQUEST);
	}
	assert_int_equal(got, 4096);
	/* Nothing more until the guest forwards: polling again changes nothing. */
	virtio_vsock_poll(f->v);
	while (rx_next(f, &r, NULL))
		assert_int_not_equal(r.op, VSOCK_OP_RW);
	struct vsock_hdr h = hdr(VSOCK_OP_CREDIT_UPDATE, 3000, 7000, 0);
	h.buf_alloc = 4096;
	h.fwd_cnt = 4096;
	send_tx(f, &h, NULL, 0);
	while (rx_next(f, &r, NULL))
		if (r.op == VSOCK_OP_RW)
			got += r.len;
	assert_int_equal(got, 8192);
	/* A guest claiming to have consumed more than it got earns nothing. */
	h.fwd_cnt = 1u << 30;
	send_tx(f, &h, NULL, 0);
	while (rx_next(f, &r, NULL))
		assert_int_not_equal(r.op, VSOCK_OP_RW);
	close(fd);
}

static void test_host_connect_and_bad_rx_buffer(void **state)
{
	struct fixture *f = *state;
	struct vsock_hdr r;
	char line[64];

	int fd = dial(f->uds);
	assert_int_equal(write(fd, "CONNECT 80\n", 11), 11);
	virtio_vsock_poll(f->v);
	assert_true(rx_next(f, &r, NULL));
	assert_int_equal(r.op, VSOCK_OP_REQUEST);
	assert_int_equal(r.dst_port, 80);
	assert_true(r.src_port >= (1u << 30));
	struct vsock_hdr h = hdr(VSOCK_OP_RESPONSE, 80, r.src_port, 0);
	send_tx(f, &h, NULL, 0);
	ssize_t n = read(fd, line, sizeof(line) - 1);
	assert_true(n > 0);
	line[n] = 0;
	char want[32];
	snprintf(want, sizeof(want), "OK %u\n", r.src_port);
	assert_string_equal(line, want);
	/* A guest RST closes the host socket. */
	h = hdr(VSOCK_OP_RST, 80, r.src_port, 0);
	send_tx(f, &h, NULL, 0);
	assert_int_equal(read(fd, line, sizeof(line)), 0);
	close(fd);

	/* An RX buffer too small for a header breaks the device, not the
	 * monitor. Drain the good buffers first with a burst of RSTs. */
	for (uint32_t port = 100; port < 109; port++) {
		h = hdr(VSOCK_OP_RW, port, 7000, 0);
		send_tx(f, &h, NULL, 0);
	}
	vqf_put_desc(f->ram, RXQ, 15, RXBUF_GPA(15), 10, VIRTQ_DESC_F_WRITE, 0);
	vqf_avail_add(f->ram, &f->rings, RXQ, 15);
	vqf_kick(&f->t, RXQ);
	assert_true(vqf_rd(&f->t, VQF_REG_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_transport_reset_event(void **state)
{
	struct fixture *f = *state;
	uint32_t id, len, ev = 0xffffffff;
	char c;

	int fd = guest_connect(f, 4000, 65536);
	assert_int_equal(virtio_vsock_transport_reset(f->v), -EAGAIN); /* no event buffer */
	/* The stream is gone either way. */
	assert_int_equal(read(fd, &c, 1), 0);
	close(fd);
	memcpy(f->ram + EVBUF_GPA, &ev, 4);
	vqf_put_desc(f->ram, EVQ, 0, EVBUF_GPA, 8, VIRTQ_DESC_F_WRITE, 0);
	vqf_avail_add(f->ram, &f->rings, EVQ, 0);
	vqf_kick(&f->t, EVQ);
	assert_int_equal(virtio_vsock_transport_reset(f->v), 0);
	assert_true(vqf_used_pop(f->ram, &f->rings, EVQ, &id, &len));
	assert_int_equal(id, 0);
	assert_int_equal(len, 4);
	memcpy(&ev, f->ram + EVBUF_GPA, 4);
	assert_int_equal(ev, VSOCK_EVENT_TRANSPORT_RESET);
	assert_int_equal(virtio_vsock_nr_conns(f->v), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_guest_stream_both_ways),
		T(test_hostile_headers),
		T(test_guest_credit_enforced),
		T(test_host_data_respects_guest_credit),
		T(test_host_connect_and_bad_rx_buffer),
		T(test_transport_reset_event),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
