/* virtio-net: --net parsing, MACs, feature and offload negotiation, the
 * header checks against hostile values, and the device itself driven
 * through the MMIO transport (no KVM) with a socketpair in place of the
 * TAP: frames in both directions, MRG_RXBUF, stalls without RX buffers,
 * and guests that break the rules. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/unit/virtq_fixture.h"
#include "virtio/mmio.h"
#include "virtio/net.h"
#include "virtio/tap.h"
#include "vmm/bus.h"
#include "vmm/loop.h"
#include "vmm/mem.h"

#define BIT(n) (1ULL << (n))

/* ---- parsing and MACs -------------------------------------------------------- */

static void test_parse_mac(void **state)
{
	uint8_t mac[6];

	(void)state;
	assert_int_equal(net_parse_mac("06:00:ac:10:00:02", mac), 0);
	assert_memory_equal(mac, "\x06\x00\xac\x10\x00\x02", 6);
	assert_int_equal(net_parse_mac("AA:BB:CC:DD:EE:FE", mac), 0);
	assert_memory_equal(mac, "\xaa\xbb\xcc\xdd\xee\xfe", 6);
	memset(mac, 0x55, 6);
	/* Multicast, short, long, bad separators and digits are refused and
	 * leave the output alone. */
	assert_int_equal(net_parse_mac("01:00:5e:00:00:01", mac), -EINVAL);
	assert_int_equal(net_parse_mac("06:00:ac:10:00", mac), -EINVAL);
	assert_int_equal(net_parse_mac("06:00:ac:10:00:02:03", mac), -EINVAL);
	assert_int_equal(net_parse_mac("06-00-ac-10-00-02", mac), -EINVAL);
	assert_int_equal(net_parse_mac("06:00:ac:10:00:0g", mac), -EINVAL);
	assert_int_equal(net_parse_mac("6:0:ac:10:0:2", mac), -EINVAL);
	assert_int_equal(net_parse_mac("", mac), -EINVAL);
	assert_memory_equal(mac, "\x55\x55\x55\x55\x55\x55", 6);
}

static void test_derive_mac(void **state)
{
	uint8_t a[6], b[6], c[6];

	(void)state;
	net_derive_mac("vm1", "eth0", a);
	net_derive_mac("vm1", "eth0", b);
	net_derive_mac("vm1", "eth1", c);
	assert_memory_equal(a, b, 6);
	assert_memory_not_equal(a, c, 6);
	/* Locally administered, unicast. */
	assert_int_equal(a[0], 0x06);
	net_derive_mac("vm2", "eth0", b);
	assert_memory_not_equal(a, b, 6);
	/* "vm1"+"/"+"eth0" must not collide with "vm1/"+"eth0"... but ids
	 * cannot contain '/', so only the plain case matters here. */
	net_derive_mac(NULL, NULL, c);
	assert_int_equal(c[0], 0x06);
}

static void test_parse_arg(void **state)
{
	struct net_config c;
	char err[256];

	(void)state;
	assert_int_equal(net_parse_arg("tap=tap0", &c, err, sizeof(err)), 0);
	assert_string_equal(c.tap, "tap0");
	assert_false(c.has_mac);
	assert_int_equal(c.mtu, 0);
	assert_int_equal(c.rx_bw.size, 0);

	assert_int_equal(net_parse_arg("tap=t1,mac=06:00:00:00:00:09,id=eth_1,mtu=9000,rx-bw=1000,"
				       "tx-bw=2000,rx-ops=10,tx-ops=20",
				       &c, err, sizeof(err)),
			 0);
	assert_true(c.has_mac);
	assert_int_equal(c.mac[5], 9);
	assert_string_equal(c.id, "eth_1");
	assert_int_equal(c.mtu, 9000);
	assert_int_equal(c.rx_bw.size, 1000);
	assert_int_equal(c.rx_bw.refill_time_ms, 1000);
	assert_int_equal(c.tx_bw.size, 2000);
	assert_int_equal(c.rx_ops.size, 10);
	assert_int_equal(c.tx_ops.size, 20);

	static const struct {
		const char *arg, *msg;
	} bad[] = {
		{ "mac=06:00:00:00:00:01", "has no tap=NAME" },
		{ "tap=", "must be 1-15 characters" },
		{ "tap=a-name-of-16-chr", "must be 1-15 characters" },
		{ "tap=t,mac=07:00:00:00:00:01", "unicast MAC" },
		{ "tap=t,id=a/b", "letters, digits or '_'" },
		{ "tap=t,mtu=67", "'mtu=67' is not" },
		{ "tap=t,mtu=65536", "'mtu=65536' is not" },
		{ "tap=t,rx-bw=0", "'rx-bw=0' is not" },
		{ "tap=t,rx-bw=-5", "'rx-bw=-5' is not" },
		{ "tap=t,speed=1", "'speed=1' is not" },
		{ "tap=t,promisc", "'promisc' is not" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(net_parse_arg(bad[i].arg, &c, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].msg))
			fail_msg("'%s': message '%s' lacks '%s'", bad[i].arg, err, bad[i].msg);
	}
}

/* ---- features and offloads ----------------------------------------------------- */

static void test_features_follow_the_tap(void **state)
{
	struct net_config c = { .mtu = 0 };
	const unsigned all = TAP_OFF_CSUM | TAP_OFF_TSO4 | TAP_OFF_TSO6 | TAP_OFF_ECN |
			     TAP_OFF_UFO | TAP_OFF_USO4 | TAP_OFF_USO6;

	(void)state;
	uint64_t f = net_device_features(0, &c);
	assert_true(f & BIT(VIRTIO_NET_F_MAC));
	assert_true(f & BIT(VIRTIO_NET_F_MRG_RXBUF));
	assert_false(f & BIT(VIRTIO_NET_F_MTU));
	/* A backend without offloads offers none. */
	assert_false(f & (BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_GUEST_CSUM) |
			  BIT(VIRTIO_NET_F_HOST_TSO4) | BIT(VIRTIO_NET_F_GUEST_TSO4)));
	c.mtu = 1500;
	assert_true(net_device_features(0, &c) & BIT(VIRTIO_NET_F_MTU));

	f = net_device_features(TAP_OFF_CSUM | TAP_OFF_TSO4 | TAP_OFF_TSO6 | TAP_OFF_ECN, &c);
	assert_true(f & BIT(VIRTIO_NET_F_HOST_TSO6));
	assert_true(f & BIT(VIRTIO_NET_F_GUEST_TSO4));
	assert_false(f & BIT(VIRTIO_NET_F_HOST_UFO));
	assert_false(f & BIT(VIRTIO_NET_F_HOST_USO));
	f = net_device_features(all, &c);
	assert_true(f & BIT(VIRTIO_NET_F_HOST_USO));
	assert_true(f & BIT(VIRTIO_NET_F_GUEST_USO6));
	assert_true(f & BIT(VIRTIO_NET_F_GUEST_UFO));
}

static void test_tap_offloads_from_guest_features(void **state)
{
	(void)state;
	/* Nothing without GUEST_CSUM, whatever else the guest took. */
	assert_int_equal(net_tap_offloads(BIT(VIRTIO_NET_F_GUEST_TSO4)), 0);
	assert_int_equal(net_tap_offloads(BIT(VIRTIO_NET_F_GUEST_CSUM)), TAP_OFF_CSUM);
	assert_int_equal(net_tap_offloads(BIT(VIRTIO_NET_F_GUEST_CSUM) |
					  BIT(VIRTIO_NET_F_GUEST_TSO4) | BIT(VIRTIO_NET_F_GUEST_ECN)),
			 TAP_OFF_CSUM | TAP_OFF_TSO4 | TAP_OFF_ECN);
	/* ECN alone means nothing without TSO. */
	assert_int_equal(net_tap_offloads(BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_ECN)),
			 TAP_OFF_CSUM);
	/* USO needs both families. */
	assert_int_equal(net_tap_offloads(BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_USO4)),
			 TAP_OFF_CSUM);
	assert_int_equal(net_tap_offloads(BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_USO4) |
					  BIT(VIRTIO_NET_F_GUEST_USO6) | BIT(VIRTIO_NET_F_GUEST_UFO)),
			 TAP_OFF_CSUM | TAP_OFF_USO4 | TAP_OFF_USO6 | TAP_OFF_UFO);
}

/* ---- header checks --------------------------------------------------------------- */

static void test_tx_header_hostile_values(void **state)
{
	const uint64_t all = BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_HOST_TSO4) |
			     BIT(VIRTIO_NET_F_HOST_TSO6) | BIT(VIRTIO_NET_F_HOST_ECN) |
			     BIT(VIRTIO_NET_F_HOST_UFO) | BIT(VIRTIO_NET_F_HOST_USO);
	struct virtio_net_hdr_v1 h = { 0 };

	(void)state;
	assert_int_equal(net_check_tx_hdr(&h, 0, 60), 0);
	assert_int_equal(net_check_tx_hdr(&h, 0, NET_ETH_HLEN), 0);
	assert_int_equal(net_check_tx_hdr(&h, 0, NET_MAX_FRAME), 0);
	/* Frames shorter than an Ethernet header or longer than the largest. */
	assert_int_equal(net_check_tx_hdr(&h, all, 0), -EINVAL);
	assert_int_equal(net_check_tx_hdr(&h, all, NET_ETH_HLEN - 1), -EINVAL);
	assert_int_equal(net_check_tx_hdr(&h, all, NET_MAX_FRAME + 1), -EINVAL);
	assert_int_equal(net_check_tx_hdr(&h, all, UINT64_MAX), -EINVAL);
	/* DATA_VALID and unknown flags are the device's to set. */
	h.flags = VIRTIO_NET_HDR_F_DATA_VALID;
	assert_int_equal(net_check_tx_hdr(&h, all, 60), -EINVAL);
	h.flags = 0x80;
	assert_int_equal(net_check_tx_hdr(&h, all, 60), -EINVAL);
	/* Partial checksum: needs CSUM and must lie inside the frame, also
	 * when start + offset would overflow 16 bits. */
	h = (struct virtio_net_hdr_v1){ .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34,
					.csum_offset = 16 };
	assert_int_equal(net_check_tx_hdr(&h, all, 60), 0);
	assert_int_equal(net_check_tx_hdr(&h, 0, 60), -EINVAL);
	assert_int_equal(net_check_tx_hdr(&h, all, 51), -EINVAL);
	assert_int_equal(net_check_tx_hdr(&h, all, 52), 0);
	h.csum_start = 0xffff;
	h.csum_offset = 0xffff;
	assert_int_equal(net_check_tx_hdr(&h, all, NET_MAX_FRAME), -EINVAL);
	/* GSO: only negotiated types, with a checksum, a size and headers
	 * within the frame. */
	h = (struct virtio_net_hdr_v1){ .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
					.gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .hdr_len = 54,
					.gso_size = 1448, .csum_start = 34, .csum_offset = 16 };
	assert_int_equal(net_check_tx_hdr(&h, all, 60000), 0);
	assert_int_equal(net_check_tx_hdr(&h, all & ~BIT(VIRTIO_NET_F_HOST_TSO4), 60000), -EINVAL);
	h.gso_size = 0;
	assert_int_equal(net_check_tx_hdr(&h, all, 60000), -EINVAL);
	h.gso_size = 1448;
	h.hdr_len = 60001;
	assert_int_equal(net_check_tx_hdr(&h, all, 60000), -EINVAL);
	h.hdr_len = 54;
	h.flags = 0;
	assert_int_equal(net_check_tx_hdr(&h, all, 60000), -EINVAL);
	h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h.gso_type = VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN;
	assert_int_equal(net_check_tx_hdr(&h, all, 60000), 0);
	assert_int_equal(net_check_tx_hdr(&h, all & ~BIT(VIRTIO_NET_F_HOST_ECN), 60000), -EINVAL);
	h.gso_type = VIRTIO_NET_HDR_GSO_UDP_L4;
	assert_int_equal(net_check_tx_hdr(&h, all, 60000), 0);
	assert_int_equal(net_check_tx_hdr(&h, all & ~BIT(VIRTIO_NET_F_HOST_USO), 60000), -EINVAL);
	h.gso_type = VIRTIO_NET_HDR_GSO_UDP;
	assert_int_equal(net_check_tx_hdr(&h, all & ~BIT(VIRTIO_NET_F_HOST_UFO), 60000), -EINVAL);
	h.gso_type = 2; /* unassigned */
	assert_int_equal(net_check_tx_hdr(&h, all, 60000), -EINVAL);
	h.gso_type = VIRTIO_NET_HDR_GSO_ECN; /* ECN on nothing */
	assert_int_equal(net_check_tx_hdr(&h, all, 60000), -EINVAL);
}

static void test_rx_header_fixed_for_the_guest(void **state)
{
	struct virtio_net_hdr_v1 h = { .flags = VIRTIO_NET_HDR_F_DATA_VALID };

	(void)state;
	/* Without GUEST_CSUM the guest must not see checksum flags. */
	assert_int_equal(net_fix_rx_hdr(&h, 0), 0);
	assert_int_equal(h.flags, 0);
	h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	assert_int_equal(net_fix_rx_hdr(&h, 0), -EINVAL);
	assert_int_equal(net_fix_rx_hdr(&h, BIT(VIRTIO_NET_F_GUEST_CSUM)), 0);
	assert_int_equal(h.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
	h.flags = 0xfe;
	assert_int_equal(net_fix_rx_hdr(&h, BIT(VIRTIO_NET_F_GUEST_CSUM)), 0);
	assert_int_equal(h.flags, VIRTIO_NET_HDR_F_DATA_VALID);
	/* GSO frames only for a guest that took that offload. */
	h = (struct virtio_net_hdr_v1){ .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
					.gso_type = VIRTIO_NET_HDR_GSO_TCPV4 };
	assert_int_equal(net_fix_rx_hdr(&h, BIT(VIRTIO_NET_F_GUEST_CSUM)), -EINVAL);
	assert_int_equal(net_fix_rx_hdr(&h, BIT(VIRTIO_NET_F_GUEST_CSUM) |
						BIT(VIRTIO_NET_F_GUEST_TSO4)),
			 0);
	h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN;
	assert_int_equal(net_fix_rx_hdr(&h, BIT(VIRTIO_NET_F_GUEST_CSUM) |
						BIT(VIRTIO_NET_F_GUEST_TSO4)),
			 -EINVAL);
	h.gso_type = 9;
	assert_int_equal(net_fix_rx_hdr(&h, ~0ULL), -EINVAL);
}

/* ---- the device over a socketpair ---------------------------------------------- */

#define RAM_SIZE  (2ULL << 20)
#define MMIO_BASE 0xc0001000ULL
#define BUF_GPA      0x40000ULL

#define RXQ 0
#define TXQ 1

struct fixture {
	struct guest_mem mem;
	uint8_t *ram;
	struct bus bus;
	struct event_loop *loop;
	struct virtio_mmio t;
	struct virtio_net *net;
	int host;                  /* the "kernel" end of the fake TAP */
	struct vqf_rings rings;
	uint64_t next_buf;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct net_config cfg = { .id = "eth0", .tap = "fake", .mac = { 6, 1, 2, 3, 4, 5 } };
	char err[256];
	int sv[2];

	if (!f)
		return -1;
	f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (f->ram == MAP_FAILED || guest_mem_init_from_buffer(&f->mem, f->ram, RAM_SIZE))
		return -1;
	f->loop = loop_create();
	/* SEQPACKET keeps frame boundaries, as a TAP queue does. */
	if (!f->loop || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -1;
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	int big = 1 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	f->host = sv[1];
	if (virtio_net_create_fd(&f->net, sv[0], 0, &cfg, f->loop, "net0", err, sizeof(err)))
		fail_msg("create: %s", err);
	const struct virtio_mmio_env env = {
		.vm_fd = -1, .mem = &f->mem, .mmio_bus = &f->bus, .loop = f->loop,
	};
	if (virtio_mmio_init(&f->t, virtio_net_device(f->net), &env, MMIO_BASE, 5))
		return -1;
	f->next_buf = BUF_GPA;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	virtio_mmio_destroy(&f->t);
	virtio_net_destroy(f->net);
	loop_destroy(f->loop);
	close(f->host);
	munmap(f->ram, RAM_SIZE);
	free(f);
	return 0;
}

static void bring_up(struct fixture *f, uint64_t features)
{
	vqf_bring_up(&f->t, features | BIT(VIRTIO_F_VERSION_1), 2);
}

static uint8_t *gva(struct fixture *f, uint64_t gpa)
{
	return f->ram + gpa;
}

/* Guest memory for a buffer (host pointer via gva). */
static uint64_t alloc_buf(struct fixture *f, uint32_t len)
{
	uint64_t gpa = f->next_buf;

	f->next_buf += (len + 63) & ~63u;
	assert_true(f->next_buf < RAM_SIZE);
	return gpa;
}

/* Puts a chain of n descriptors (starting at descriptor `first`) in the
 * available ring of q. */
static void post_chain(struct fixture *f, unsigned q, uint16_t first, const uint64_t *gpa,
		       const uint32_t *len, const uint16_t *flags, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		vqf_put_desc(f->ram, q, first + i, gpa[i], len[i],
			     (uint16_t)(flags[i] | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
			     (uint16_t)(first + i + 1));
	vqf_avail_add(f->ram, &f->rings, q, first);
}

/* The next used element of q: 1 with id/len, or 0. */
static int used_pop(struct fixture *f, unsigned q, uint32_t *id, uint32_t *len)
{
	return vqf_used_pop(f->ram, &f->rings, q, id, len);
}

static const struct net_stats *stats(struct fixture *f)
{
	return virtio_net_stats(f->net);
}

static bool needs_reset(struct fixture *f)
{
	return vqf_rd(&f->t, VQF_REG_STATUS) & VIRTIO_STATUS_NEEDS_RESET;
}

/* A TX chain: header (12 bytes, zero) then frame of flen bytes of pattern. */
static void post_tx(struct fixture *f, uint16_t first, uint32_t hdr_len, uint32_t flen,
		    uint8_t seed)
{
	uint64_t g[2] = { alloc_buf(f, hdr_len ? hdr_len : 1), alloc_buf(f, flen ? flen : 1) };
	uint32_t l[2] = { hdr_len, flen };
	uint16_t fl[2] = { 0, 0 };

	memset(gva(f, g[0]), 0, hdr_len);
	for (uint32_t i = 0; i < flen; i++)
		gva(f, g[1])[i] = (uint8_t)(seed + i);
	post_chain(f, TXQ, first, g, l, fl, 2);
}

static void test_device_config_space(void **state)
{
	struct fixture *f = *state;
	uint8_t mac[6];

	for (int i = 0; i < 6; i++)
		virtio_mmio_read(&f->t, VQF_REG_CONFIG + (uint64_t)i, &mac[i], 1);
	assert_memory_equal(mac, "\x06\x01\x02\x03\x04\x05", 6);
	uint16_t status;
	virtio_mmio_read(&f->t, VQF_REG_CONFIG + 6, (uint8_t *)&status, 2);
	assert_int_equal(status, 1); /* link up */
}

static void test_tx_frames_reach_the_backend(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[256];
	uint32_t id, len;

	bring_up(f, BIT(VIRTIO_NET_F_MAC));
	post_tx(f, 0, 12, 60, 1);
	post_tx(f, 2, 12, 100, 7);
	vqf_kick(&f->t, TXQ);
	assert_int_equal(read(f->host, buf, sizeof(buf)), 72);
	for (int i = 0; i < 12; i++)
		assert_int_equal(buf[i], 0);
	for (int i = 0; i < 60; i++)
		assert_int_equal(buf[12 + i], (uint8_t)(1 + i));
	assert_int_equal(read(f->host, buf, sizeof(buf)), 112);
	assert_int_equal(buf[12], 7);
	assert_int_equal(used_pop(f, TXQ, &id, &len), 1);
	assert_int_equal(id, 0);
	assert_int_equal(used_pop(f, TXQ, &id, &len), 1);
	assert_int_equal(id, 2);
	assert_int_equal(stats(f)->tx_frames, 2);
	assert_int_equal(stats(f)->tx_bytes, 160);
	assert_false(needs_reset(f));
}

static void test_tx_hostile_chains_are_dropped(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[256];
	uint32_t id, len;

	bring_up(f, BIT(VIRTIO_NET_F_MAC));
	/* Header split short: 8 readable bytes in all. */
	post_tx(f, 0, 4, 4, 0);
	/* A frame above 64 KiB plus headers. */
	post_tx(f, 2, 12, NET_MAX_FRAME + 1, 0);
	/* A runt: less than an Ethernet header. */
	post_tx(f, 4, 12, 13, 0);
	/* Only device-writable buffers. */
	{
		uint64_t g = alloc_buf(f, 100);
		uint32_t l = 100;
		uint16_t fl = VIRTQ_DESC_F_WRITE;
		post_chain(f, TXQ, 6, &g, &l, &fl, 1);
	}
	/* A header with DATA_VALID, which the driver must not set. */
	post_tx(f, 8, 12, 60, 0);
	gva(f, f->next_buf - 64 - 64)[0] = VIRTIO_NET_HDR_F_DATA_VALID;
	/* And a good one after all of them. */
	post_tx(f, 10, 12, 64, 9);
	vqf_kick(&f->t, TXQ);
	assert_int_equal(read(f->host, buf, sizeof(buf)), 76);
	assert_int_equal(buf[12], 9);
	assert_int_equal(recv(f->host, buf, sizeof(buf), MSG_DONTWAIT), -1);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(used_pop(f, TXQ, &id, &len), 1);
		assert_int_equal(len, 0);
	}
	assert_int_equal(stats(f)->tx_dropped, 5);
	assert_int_equal(stats(f)->tx_frames, 1);
	/* Dropped and counted, the device goes on. */
	assert_false(needs_reset(f));
}

static void test_tx_broken_ring_needs_reset(void **state)
{
	struct fixture *f = *state;
	uint16_t *avail = (uint16_t *)gva(f, VQF_AVAIL_GPA(TXQ));

	bring_up(f, BIT(VIRTIO_NET_F_MAC));
	post_tx(f, 0, 12, 60, 0);
	avail[2] = VQF_QSIZE + 3; /* a head beyond the queue */
	vqf_kick(&f->t, TXQ);
	assert_true(needs_reset(f));
	assert_int_equal(stats(f)->tx_frames, 0);
}

static void post_rx(struct fixture *f, uint16_t first, uint32_t len, uint64_t *gpa_out)
{
	uint64_t g = alloc_buf(f, len);
	uint16_t fl = VIRTQ_DESC_F_WRITE;

	memset(gva(f, g), 0xee, len);
	post_chain(f, RXQ, first, &g, &len, &fl, 1);
	if (gpa_out)
		*gpa_out = g;
}

/* A frame as the TAP would give it: 12-byte header then payload. */
static void host_send(struct fixture *f, uint32_t flen, uint8_t seed)
{
	static uint8_t frame[12 + NET_MAX_FRAME];

	memset(frame, 0, 12);
	for (uint32_t i = 0; i < flen; i++)
		frame[12 + i] = (uint8_t)(seed + i * 3);
	assert_int_equal(write(f->host, frame, 12 + flen), (ssize_t)(12 + flen));
}

static void test_rx_one_buffer_per_frame(void **state)
{
	struct fixture *f = *state;
	uint64_t g0, g1;
	uint32_t id, len;
	uint16_t nbufs;

	bring_up(f, BIT(VIRTIO_NET_F_MAC));
	post_rx(f, 0, 2048, &g0);
	post_rx(f, 1, 2048, &g1);
	host_send(f, 100, 5);
	host_send(f, 1514, 6);
	vqf_kick(&f->t, RXQ);
	assert_int_equal(used_pop(f, RXQ, &id, &len), 1);
	assert_int_equal(id, 0);
	assert_int_equal(len, 112);
	memcpy(&nbufs, gva(f, g0) + 10, 2);
	assert_int_equal(nbufs, 1);
	for (uint32_t i = 0; i < 100; i++)
		assert_int_equal(gva(f, g0)[12 + i], (uint8_t)(5 + i * 3));
	assert_int_equal(gva(f, g0)[112], 0xee); /* nothing past the frame */
	assert_int_equal(used_pop(f, RXQ, &id, &len), 1);
	assert_int_equal(len, 1526);
	assert_int_equal(stats(f)->rx_frames, 2);
	assert_int_equal(stats(f)->rx_bytes, 1614);
}

static void test_rx_merged_buffers(void **state)
{
	struct fixture *f = *state;
	uint64_t g[4];
	uint32_t id, len;
	uint16_t nbufs;

	bring_up(f, BIT(VIRTIO_NET_F_MAC) | BIT(VIRTIO_NET_F_MRG_RXBUF));
	for (uint16_t i = 0; i < 4; i++)
		post_rx(f, i, 1024, &g[i]);
	host_send(f, 3000, 11);
	vqf_kick(&f->t, RXQ);
	const uint32_t want[3] = { 1024, 1024, 3012 - 2048 };
	for (int i = 0; i < 3; i++) {
		assert_int_equal(used_pop(f, RXQ, &id, &len), 1);
		assert_int_equal(id, (uint32_t)i);
		assert_int_equal(len, want[i]);
	}
	assert_int_equal(used_pop(f, RXQ, &id, &len), 0);
	memcpy(&nbufs, gva(f, g[0]) + 10, 2);
	assert_int_equal(nbufs, 3);
	/* Byte 12 + k of the frame is in buffer (12 + k) / 1024. */
	for (uint32_t k = 0; k < 3000; k++) {
		uint32_t at = 12 + k;
		assert_int_equal(gva(f, g[at / 1024])[at % 1024], (uint8_t)(11 + k * 3));
	}
}

/* Not enough buffers for a merged frame: nothing is consumed, and the
 * frame goes out once the guest adds more. */
static void test_rx_merged_waits_for_enough_buffers(void **state)
{
	struct fixture *f = *state;
	uint32_t id, len;

	bring_up(f, BIT(VIRTIO_NET_F_MAC) | BIT(VIRTIO_NET_F_MRG_RXBUF) |
			    BIT(VIRTIO_F_RING_EVENT_IDX));
	post_rx(f, 0, 1024, NULL);
	host_send(f, 2000, 1);
	vqf_kick(&f->t, RXQ);
	assert_int_equal(used_pop(f, RXQ, &id, &len), 0);
	assert_int_equal(stats(f)->rx_no_buffers, 1);
	/* avail_event asks for a kick on the very next buffer. */
	uint16_t avail_event;
	memcpy(&avail_event, gva(f, VQF_USED_GPA(RXQ)) + 4 + 8 * VQF_QSIZE, 2);
	assert_int_equal(avail_event, 1);
	post_rx(f, 1, 1024, NULL);
	vqf_kick(&f->t, RXQ);
	assert_int_equal(used_pop(f, RXQ, &id, &len), 1);
	assert_int_equal(len, 1024);
	assert_int_equal(used_pop(f, RXQ, &id, &len), 1);
	assert_int_equal(len, 2012 - 1024);
	assert_int_equal(stats(f)->rx_frames, 1);
	assert_false(needs_reset(f));
}

static void test_rx_without_buffers_stalls_and_holds_one_frame(void **state)
{
	struct fixture *f = *state;
	uint64_t g[VQF_QSIZE];
	uint32_t id, len;

	bring_up(f, BIT(VIRTIO_NET_F_MAC));
	for (int i = 0; i < 12; i++)
		host_send(f, 60 + (uint32_t)i, (uint8_t)i);
	vqf_kick(&f->t, RXQ);
	/* One frame read and held, the rest left in the backend's queue:
	 * nothing delivered, nothing dropped, one stall counted. */
	assert_int_equal(stats(f)->rx_no_buffers, 1);
	assert_int_equal(stats(f)->rx_frames, 0);
	assert_int_equal(used_pop(f, RXQ, &id, &len), 0);
	/* A kick with still no buffers is no new stall. */
	vqf_kick(&f->t, RXQ);
	assert_int_equal(stats(f)->rx_no_buffers, 1);
	/* Buffers come: every frame arrives, in order, the held one first. */
	for (uint16_t i = 0; i < VQF_QSIZE; i++)
		post_rx(f, i, 2048, &g[i]);
	vqf_kick(&f->t, RXQ);
	for (uint32_t i = 0; i < 12; i++) {
		assert_int_equal(used_pop(f, RXQ, &id, &len), 1);
		assert_int_equal(id, i);
		assert_int_equal(len, 12 + 60 + i);
		assert_int_equal(gva(f, g[i])[12], (uint8_t)i);
	}
	assert_int_equal(stats(f)->rx_frames, 12);
	assert_int_equal(stats(f)->rx_dropped, 0);
}

static void test_rx_buffer_too_small_without_mrg(void **state)
{
	struct fixture *f = *state;
	uint32_t id, len;

	bring_up(f, BIT(VIRTIO_NET_F_MAC));
	post_rx(f, 0, 100, NULL);
	post_rx(f, 1, 2048, NULL);
	host_send(f, 1000, 0);
	host_send(f, 60, 0);
	vqf_kick(&f->t, RXQ);
	/* The big frame is dropped (buffer back empty), the next one fits. */
	assert_int_equal(used_pop(f, RXQ, &id, &len), 1);
	assert_int_equal(len, 0);
	assert_int_equal(used_pop(f, RXQ, &id, &len), 1);
	assert_int_equal(len, 72);
	assert_int_equal(stats(f)->rx_dropped, 1);
	assert_int_equal(stats(f)->rx_frames, 1);
	assert_false(needs_reset(f));
}

static void test_rx_hostile_buffers_need_reset(void **state)
{
	struct fixture *f = *state;

	bring_up(f, BIT(VIRTIO_NET_F_MAC) | BIT(VIRTIO_NET_F_MRG_RXBUF));
	/* A first buffer smaller than the header. */
	post_rx(f, 0, 8, NULL);
	host_send(f, 60, 0);
	vqf_kick(&f->t, RXQ);
	assert_true(needs_reset(f));
	assert_int_equal(stats(f)->rx_frames, 0);
}

static void test_rx_device_readable_buffer_needs_reset(void **state)
{
	struct fixture *f = *state;
	uint64_t g = alloc_buf(f, 2048);
	uint32_t l = 2048;
	uint16_t fl = 0;

	bring_up(f, BIT(VIRTIO_NET_F_MAC));
	post_chain(f, RXQ, 0, &g, &l, &fl, 1);
	host_send(f, 60, 0);
	vqf_kick(&f->t, RXQ);
	assert_true(needs_reset(f));
}

static void test_runt_from_backend_is_dropped(void **state)
{
	struct fixture *f = *state;
	uint8_t small[20] = { 0 };
	uint32_t id, len;

	bring_up(f, BIT(VIRTIO_NET_F_MAC));
	post_rx(f, 0, 2048, NULL);
	assert_int_equal(write(f->host, small, sizeof(small)), (ssize_t)sizeof(small));
	host_send(f, 60, 0);
	vqf_kick(&f->t, RXQ);
	assert_int_equal(used_pop(f, RXQ, &id, &len), 1);
	assert_int_equal(len, 72);
	assert_int_equal(stats(f)->rx_dropped, 1);
}

static void test_tx_rate_limited_then_released(void **state)
{
	struct fixture *f = *state;
	struct token_bucket_config bw = { .size = 100, .refill_time_ms = 100000 };
	struct token_bucket_config none = { 0 };
	uint8_t buf[256];
	uint32_t id, len;

	bring_up(f, BIT(VIRTIO_NET_F_MAC));
	assert_int_equal(virtio_net_set_rate_limits(f->net, NULL, NULL, &bw, &none), 0);
	post_tx(f, 0, 12, 60, 0);
	post_tx(f, 2, 12, 60, 0);
	vqf_kick(&f->t, TXQ);
	/* 100 bytes of budget: the first frame goes, the second waits. */
	assert_int_equal(read(f->host, buf, sizeof(buf)), 72);
	assert_int_equal(recv(f->host, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(used_pop(f, TXQ, &id, &len), 1);
	assert_int_equal(used_pop(f, TXQ, &id, &len), 0);
	assert_int_equal(stats(f)->tx_rate_limited, 1);
	/* Lifting the limit (PATCH) lets it go at the next kick. */
	assert_int_equal(virtio_net_set_rate_limits(f->net, NULL, NULL, &none, &none), 0);
	vqf_kick(&f->t, TXQ);
	assert_int_equal(read(f->host, buf, sizeof(buf)), 72);
	assert_int_equal(used_pop(f, TXQ, &id, &len), 1);
}

static void test_rx_rate_limited_then_released(void **state)
{
	struct fixture *f = *state;
	struct token_bucket_config bw = { .size = 100, .refill_time_ms = 100000 };
	struct token_bucket_config none = { 0 };
	uint32_t id, len;

	bring_up(f, BIT(VIRTIO_NET_F_MAC));
	assert_int_equal(virtio_net_set_rate_limits(f->net, &bw, &none, NULL, NULL), 0);
	post_rx(f, 0, 2048, NULL);
	post_rx(f, 1, 2048, NULL);
	host_send(f, 60, 1);
	host_send(f, 60, 2);
	vqf_kick(&f->t, RXQ);
	/* 100 bytes of budget: one frame in, the next one held. */
	assert_int_equal(used_pop(f, RXQ, &id, &len), 1);
	assert_int_equal(used_pop(f, RXQ, &id, &len), 0);
	assert_int_equal(stats(f)->rx_rate_limited, 1);
	assert_int_equal(stats(f)->rx_dropped, 0);
	/* Lifted: the held frame is the next one delivered. */
	assert_int_equal(virtio_net_set_rate_limits(f->net, &none, &none, NULL, NULL), 0);
	vqf_kick(&f->t, RXQ);
	assert_int_equal(used_pop(f, RXQ, &id, &len), 1);
	assert_int_equal(id, 1);
	assert_int_equal(len, 72);
	assert_int_equal(stats(f)->rx_frames, 2);
	/* A limiter without a refill time is refused. */
	struct token_bucket_config bad = { .size = 10 };
	assert_int_equal(virtio_net_set_rate_limits(f->net, &bad, &none, NULL, NULL), -EINVAL);
}

static void test_reset_drops_the_held_frame(void **state)
{
	struct fixture *f = *state;
	uint32_t id, len;

	bring_up(f, BIT(VIRTIO_NET_F_MAC));
	host_send(f, 60, 1);
	host_send(f, 61, 2);
	vqf_kick(&f->t, RXQ); /* holds frame 1, no buffers */
	vqf_wr(&f->t, VQF_REG_STATUS, 0);
	assert_int_equal(vqf_rd(&f->t, VQF_REG_STATUS), 0);
	f->rings.avail_idx[RXQ] = f->rings.avail_idx[TXQ] = 0;
	f->rings.used_seen[RXQ] = f->rings.used_seen[TXQ] = 0;
	memset(gva(f, VQF_AVAIL_GPA(RXQ)), 0, 0x1000);
	memset(gva(f, VQF_USED_GPA(RXQ)), 0, 0x1000);
	bring_up(f, BIT(VIRTIO_NET_F_MAC));
	post_rx(f, 0, 2048, NULL);
	vqf_kick(&f->t, RXQ);
	/* The frame held before the reset is gone; the next one arrives. */
	assert_int_equal(used_pop(f, RXQ, &id, &len), 1);
	assert_int_equal(len, 12 + 61);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_mac),
		cmocka_unit_test(test_derive_mac),
		cmocka_unit_test(test_parse_arg),
		cmocka_unit_test(test_features_follow_the_tap),
		cmocka_unit_test(test_tap_offloads_from_guest_features),
		cmocka_unit_test(test_tx_header_hostile_values),
		cmocka_unit_test(test_rx_header_fixed_for_the_guest),
		T(test_device_config_space),
		T(test_tx_frames_reach_the_backend),
		T(test_tx_hostile_chains_are_dropped),
		T(test_tx_broken_ring_needs_reset),
		T(test_rx_one_buffer_per_frame),
		T(test_rx_merged_buffers),
		T(test_rx_merged_waits_for_enough_buffers),
		T(test_rx_without_buffers_stalls_and_holds_one_frame),
		T(test_rx_buffer_too_small_without_mrg),
		T(test_rx_hostile_buffers_need_reset),
		T(test_rx_device_readable_buffer_needs_reset),
		T(test_runt_from_backend_is_dropped),
		T(test_tx_rate_limited_then_released),
		T(test_rx_rate_limited_then_released),
		T(test_reset_drops_the_held_frame),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
