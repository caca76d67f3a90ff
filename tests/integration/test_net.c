/* virtio-net under /dev/kvm with the test unikernel, on a TAP in a network
 * namespace this test creates (and always deletes). The host side is an
 * AF_PACKET socket on the TAP: it sends and checks raw frames, so the
 * guest only swaps MAC addresses or stamps a sequence number (guest CPL0
 * code is emulated on the development machines). */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "tests/integration/harness_api.h"
#include "tests/integration/harness_net.h"

#define TAP "mtap0"
#define ETH_TYPE_TEST 0x88b5
#define FRAME_MAX 9216
#define HDR 18 /* eth 14 + le32 sequence number */
#define WINDOW 48

static const char *mote_bin;
static const char *guest_elf;
static struct harness_netns ns = HARNESS_NETNS_INIT;
static int pkt_fd = -1;

/* ---- the namespace, the TAP and the packet socket -------------------------- */

static void netns_cleanup(void)
{
	if (pkt_fd >= 0)
		close(pkt_fd);
	pkt_fd = -1;
	harness_netns_leave(&ns);
}

static int group_setup(void **state)
{
	(void)state;
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	atexit(netns_cleanup);
	if (harness_netns_enter(&ns))
		return -1;
	/* From here on this process, its children (mote, ip) and their TAP
	 * live in the test namespace. */
	if (harness_tap_add(TAP, FRAME_MAX))
		return -1;
	pkt_fd = harness_packet_open(TAP, ETH_TYPE_TEST, 16 << 20);
	return pkt_fd >= 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	netns_cleanup();
	return 0;
}

/* Frames mote hands the TAP; -1 after timeout_ms without one. */
static ssize_t recv_frame(uint8_t *buf, size_t len, int timeout_ms)
{
	return harness_packet_recv(pkt_fd, buf, len, timeout_ms);
}

static void drain_socket(void)
{
	uint8_t buf[64];

	while (recv(pkt_fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
		;
}

/* The kernel's count of frames it could not queue for the TAP's reader. */
static long tap_tx_dropped(void)
{
	char line[256];
	long v[6] = { -1 };
	bool next = false;
	FILE *p = popen("ip -s link show dev " TAP, "r");

	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p)) {
		if (next) {
			sscanf(line, "%ld %ld %ld %ld", &v[0], &v[1], &v[2], &v[3]);
			next = false;
		}
		if (strstr(line, "TX:"))
			next = true;
	}
	pclose(p);
	return v[3];
}

/* ---- frames ------------------------------------------------------------------ */

static const uint32_t sizes[] = { 60, 61, 64, 128, 333, 576, 1000, 1514, 2048, 3000, 4096,
				  6000, 8192, 9014, 9216 };
#define NR_SIZES (sizeof(sizes) / sizeof(sizes[0]))

static void make_frame(uint8_t *f, uint32_t seq, uint32_t *len)
{
	static const uint8_t dst[6] = { 0x06, 0x00, 0x00, 0x00, 0x00, 0x01 };
	static const uint8_t src[6] = { 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee };
	uint32_t x = seq * 2654435761u + 1;

	*len = sizes[seq % NR_SIZES];
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = ETH_TYPE_TEST >> 8;
	f[13] = ETH_TYPE_TEST & 0xff;
	memcpy(f + 14, &seq, 4);
	for (uint32_t i = HDR; i < *len; i++) {
		x = x * 1103515245u + 12345u;
		f[i] = (uint8_t)(x >> 16);
	}
}

/* Sends `frames` frames with at most WINDOW unanswered and checks that
 * each comes back unchanged but for swapped MAC addresses, in order. */
static void reflect_frames(struct harness_proc *p, uint32_t frames, double *fps, double *mbps)
{
	static uint8_t out[FRAME_MAX], in[FRAME_MAX + 64];
	uint32_t sent = 0, got = 0;
	uint64_t bytes = 0;
	double t0 = harness_now_ms();

	while (got < frames) {
		while (sent < frames && sent - got < WINDOW) {
			uint32_t len;
			make_frame(out, sent, &len);
			if (send(pkt_fd, out, len, 0) != (ssize_t)len)
				fail_msg("send of frame %u (%u bytes): %s", sent, len, strerror(errno));
			sent++;
		}
		ssize_t n = recv_frame(in, sizeof(in), 15000);
		if (n < 0) {
			harness_proc_pump(p, 10);
			fprintf(stderr, "--- stdout:\n%s\n--- stderr:\n%s\n", p->out, p->err);
			fail_msg("frame %u of %u did not come back within 15 s", got, frames);
		}
		uint32_t len;
		make_frame(out, got, &len);
		if ((size_t)n != len || memcmp(in, out + 6, 6) || memcmp(in + 6, out, 6) ||
		    memcmp(in + 12, out + 12, len - 12)) {
			uint32_t seq;
			memcpy(&seq, in + 14, 4);
			fail_msg("reflected frame %u: %zd bytes (sent %u), seq %u", got, n, len, seq);
		}
		bytes += len;
		got++;
	}
	double s = (harness_now_ms() - t0) / 1e3;
	*fps = frames / s;
	*mbps = (double)bytes / s / 1e6;
}

static bool wait_ready(struct harness_proc *p, const char *marker)
{
	if (harness_proc_wait_for(p, marker, false, 60))
		return true;
	harness_proc_pump(p, 10);
	fprintf(stderr, "--- stdout:\n%s\n--- stderr:\n%s\n", p->out, p->err);
	return false;
}

static void run_reflect(const char *guest_opts, uint32_t frames)
{
	struct harness_proc p;
	char cmdline[256];
	double fps, mbps;

	drain_socket();
	snprintf(cmdline, sizeof(cmdline), "test=net-reflect frames=%u %s", frames, guest_opts);
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--net", "tap=" TAP,
			 "--cmdline", cmdline, NULL };
	harness_spawn(&p, argv);
	assert_true(wait_ready(&p, "net-reflect: ready"));
	reflect_frames(&p, frames, &fps, &mbps);
	struct run_result r = harness_proc_finish(&p, 60);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS net-reflect");
	char want[96];
	snprintf(want, sizeof(want), "net0: rx %u frames", frames);
	assert_output_contains(&r, err, want);
	assert_output_contains(&r, err, "rx_dropped 0");
	assert_output_contains(&r, err, "tx_dropped 0, tx_errors 0");
	printf("reflected %u frames of 60-9216 bytes (%s): %.0f frames/s, %.2f MB/s\n", frames,
	       guest_opts, fps, mbps);
	harness_free(&r);
}

/* ---- offloads --------------------------------------------------------------- */

struct vnet_hdr {
	uint8_t flags, gso_type;
	uint16_t hdr_len, gso_size, csum_start, csum_offset;
};

/* An IPv4/TCP frame of `len` bytes (Ethernet header included). */
static void make_tcp_frame(uint8_t *f, uint32_t len, uint32_t seed)
{
	memcpy(f, "\x06\x00\x00\x00\x00\x01\x02\xaa\xbb\xcc\xdd\xee\x08\x00", 14);
	uint8_t *ip = f + 14, *tcp = ip + 20;
	uint16_t tot = htons((uint16_t)(len - 14));
	memset(ip, 0, 40);
	ip[0] = 0x45;
	memcpy(ip + 2, &tot, 2);
	ip[8] = 64;
	ip[9] = 6; /* TCP */
	memcpy(ip + 12, "\xac\x10\x00\x01\xac\x10\x00\x02", 8);
	uint32_t sum = 0;
	for (int i = 0; i < 20; i += 2)
		sum += (uint32_t)ip[i] << 8 | ip[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	uint16_t csum = htons((uint16_t)~sum);
	memcpy(ip + 10, &csum, 2);
	tcp[0] = 0x30; tcp[1] = 0x39; /* 12345 */
	tcp[2] = 0x00; tcp[3] = 0x50; /* 80 */
	tcp[12] = 5 << 4;
	tcp[13] = 0x18; /* PSH|ACK */
	tcp[14] = 0xff; tcp[15] = 0xff;
	uint32_t x = seed;
	for (uint32_t i = 54; i < len; i++) {
		x = x * 1103515245u + 12345u;
		f[i] = (uint8_t)(x >> 16);
	}
}

/* Sends one 9000-byte TCP frame as TSO (gso_size 1448) through a packet
 * socket that speaks virtio-net headers, and collects what comes back. */
static void tso_roundtrip(const char *guest_cmdline, unsigned *frames, unsigned *gso_frames,
			  bool *intact)
{
	static uint8_t out[10 + FRAME_MAX], in[10 + FRAME_MAX + 64], sent[FRAME_MAX];
	const uint32_t len = 9000;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(0x0800) };
	int one = 1, s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(0x0800));
	struct harness_proc p;

	assert_true(s >= 0);
	assert_int_equal(setsockopt(s, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)), 0);
	sll.sll_ifindex = (int)if_nametoindex(TAP);
	assert_int_equal(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--net", "tap=" TAP,
			 "--cmdline", (char *)guest_cmdline, NULL };
	harness_spawn(&p, argv);
	assert_true(wait_ready(&p, "net-reflect: ready"));
	struct vnet_hdr h = { .flags = 1, .gso_type = 1 /* TCPV4 */, .hdr_len = 54,
			      .gso_size = 1448, .csum_start = 34, .csum_offset = 16 };
	memcpy(out, &h, sizeof(h));
	make_tcp_frame(out + 10, len, 7);
	memcpy(sent, out + 10, len);
	assert_int_equal(send(s, out, 10 + len, 0), (ssize_t)(10 + len));
	*frames = *gso_frames = 0;
	*intact = false;
	for (;;) {
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		struct pollfd pf = { s, POLLIN, 0 };
		if (poll(&pf, 1, 3000) <= 0)
			break;
		ssize_t n = recvfrom(s, in, sizeof(in), 0, (struct sockaddr *)&from, &fl);
		if (n < 10 || from.sll_pkttype == PACKET_OUTGOING)
			continue;
		struct vnet_hdr rh;
		memcpy(&rh, in, sizeof(rh));
		(*frames)++;
		if (rh.gso_type == 1 && rh.gso_size == 1448)
			(*gso_frames)++;
		if ((size_t)n == 10 + len && !memcmp(in + 10, sent + 6, 6) &&
		    !memcmp(in + 16, sent, 6) && !memcmp(in + 22, sent + 12, len - 12))
			*intact = true;
	}
	close(s);
	kill(p.pid, SIGTERM);
	struct run_result r = harness_proc_finish(&p, 30);
	if (r.status != 128 + SIGTERM)
		harness_dump(&r);
	assert_int_equal(r.status, 128 + SIGTERM);
	harness_free(&r);
}

/* With checksum and TSO offloads negotiated, a 9000-byte TSO frame goes
 * host -> guest -> host as one frame with its GSO header: the TAP was
 * told (TUNSETOFFLOAD) it may hand the guest unsegmented frames. */
static void test_tso_frame_passes_whole_with_offloads(void **state)
{
	unsigned frames, gso;
	bool intact;

	(void)state;
	tso_roundtrip("test=net-reflect frames=1000 netoff=1", &frames, &gso, &intact);
	printf("offloads on: %u frame(s) back, %u with TSO, intact %d\n", frames, gso, intact);
	assert_int_equal(frames, 1);
	assert_int_equal(gso, 1);
	assert_true(intact);
}

/* Without offloads the kernel segments before mote reads: the guest sees
 * and returns MSS-sized frames only. */
static void test_tso_frame_is_segmented_without_offloads(void **state)
{
	unsigned frames, gso;
	bool intact;

	(void)state;
	tso_roundtrip("test=net-reflect frames=1000 netoff=0", &frames, &gso, &intact);
	printf("offloads off: %u frame(s) back, %u with TSO\n", frames, gso);
	assert_int_equal(frames, (9000 - 54 + 1447) / 1448);
	assert_int_equal(gso, 0);
	assert_false(intact);
}

/* ---- tests ------------------------------------------------------------------- */

/* The number: 10,000 frames of 60 B to 9 KiB, through 2 KiB
 * guest buffers (MRG_RXBUF: up to 5 buffers a frame). */
static void test_reflect_10000_mixed_mrg(void **state)
{
	(void)state;
	run_reflect("netmrg=1 netbuf=2048 netbufs=128", 10000);
}

/* Without MRG_RXBUF every frame needs one buffer big enough. */
static void test_reflect_single_buffers(void **state)
{
	(void)state;
	run_reflect("netmrg=0 netbuf=9280 netbufs=64", 1500);
}

static void test_generator_frames_arrive_intact(void **state)
{
	static uint8_t in[FRAME_MAX + 64];
	static const uint32_t gsizes[] = { 60, 1514, 9014, 333 };
	const uint32_t frames = 2000;
	struct harness_proc p;
	uint8_t mac[6];

	(void)state;
	drain_socket();
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--net",
			 "tap=" TAP ",mac=06:00:ac:10:00:02", "--cmdline",
			 "test=net-gen frames=2000 sizes=60,1514,9014,333", NULL };
	harness_spawn(&p, argv);
	assert_true(wait_ready(&p, "net-gen: sending"));
	memcpy(mac, "\x06\x00\xac\x10\x00\x02", 6);
	for (uint32_t seq = 0; seq < frames; seq++) {
		ssize_t n = recv_frame(in, sizeof(in), 15000);
		uint32_t magic, s, len, want = gsizes[seq % 4];
		if (n < 0)
			fail_msg("generated frame %u of %u missing", seq, frames);
		memcpy(&magic, in + 14, 4);
		memcpy(&s, in + 18, 4);
		memcpy(&len, in + 22, 4);
		if ((size_t)n != want || len != want || s != seq || magic != 0x45544f4d ||
		    memcmp(in, "\xff\xff\xff\xff\xff\xff", 6) || memcmp(in + 6, mac, 6))
			fail_msg("frame %u: %zd bytes, header says seq %u len %u magic %08x", seq, n, s,
				 len, magic);
		for (uint32_t i = 26; i < want; i++)
			if (in[i] != (uint8_t)(i * 13u + (i >> 8)))
				fail_msg("frame %u byte %u is %02x", seq, i, in[i]);
	}
	struct run_result r = harness_proc_finish(&p, 60);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS net-gen");
	assert_output_contains(&r, out, "mac 6:0:ac:10:0:2");
	assert_output_contains(&r, err, "tx 2000 frames");
	harness_free(&r);
}

/* The guest posts no RX buffers: mote stops reading the TAP (one frame
 * held), the kernel's bounded TAP queue drops the rest and counts them,
 * and the monitor's memory does not grow. Once buffers come, frames flow. */
static void test_no_rx_buffers_drops_are_bounded(void **state)
{
	static uint8_t out[FRAME_MAX];
	struct harness_proc p;
	const uint32_t frames = 3000;

	(void)state;
	drain_socket();
	long dropped0 = tap_tx_dropped();
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--net", "tap=" TAP,
			 "--cmdline", "test=net-norx norx_ms=4000 rx_ms=1500", NULL };
	harness_spawn(&p, argv);
	assert_true(wait_ready(&p, "net-norx: ready"));
	usleep(200 * 1000);
	long rss0 = harness_proc_kib(p.pid, "status", "VmRSS:");
	for (uint32_t i = 0; i < frames; i++) {
		uint32_t len;
		make_frame(out, i, &len);
		len = 1514;
		if (send(pkt_fd, out, len, 0) != (ssize_t)len)
			fail_msg("send: %s", strerror(errno));
	}
	usleep(500 * 1000);
	long rss1 = harness_proc_kib(p.pid, "status", "VmRSS:");
	long dropped = tap_tx_dropped() - dropped0;
	struct run_result r = harness_proc_finish(&p, 60);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS net-norx");
	printf("no RX buffers: %u frames sent, kernel dropped %ld, monitor RSS %ld -> %ld KiB\n",
	       frames, dropped, rss0, rss1);
	assert_true(rss0 > 0 && rss1 > 0);
	assert_true(rss1 - rss0 < 1024); /* 3000 x 1.5 KB would be 4.4 MiB */
	assert_true(dropped >= frames / 2);
	unsigned long n;
	const char *got = strstr(r.out, " frames after posting buffers");
	assert_non_null(got);
	while (got > r.out && got[-1] >= '0' && got[-1] <= '9')
		got--;
	n = strtoul(got, NULL, 10);
	/* What waited: the frame mote held plus the kernel queue (500). */
	assert_true(n >= 1 && n <= frames - (unsigned long)dropped + 1);
	/* At least the stall above; more once the guest's 128 buffers refill. */
	const char *nb = strstr(r.err, "rx_no_buffers ");
	assert_non_null(nb);
	assert_true(strtoul(nb + strlen("rx_no_buffers "), NULL, 10) >= 1);
	assert_output_contains(&r, err, "rx_dropped 0");
	harness_free(&r);
}

/* --config-file with a network interface: the same path as the API's PUT. */
static void test_config_file_interface(void **state)
{
	char path[] = "/tmp/mote-net-cfg-XXXXXX";
	double fps, mbps;
	struct harness_proc p;

	(void)state;
	drain_socket();
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	dprintf(fd,
		"{\"boot-source\":{\"kernel_image_path\":\"%s\",\"boot_args\":"
		"\"test=net-reflect frames=200\"},\"network-interfaces\":[{\"iface_id\":\"eth0\","
		"\"host_dev_name\":\"" TAP "\",\"guest_mac\":\"06:00:ac:10:00:07\","
		"\"rx_rate_limiter\":{\"bandwidth\":{\"size\":100000000,\"refill_time\":100}}}]}",
		guest_elf);
	close(fd);
	char *argv[] = { (char *)mote_bin, "--no-api", "--config-file", path, NULL };
	harness_spawn(&p, argv);
	assert_true(wait_ready(&p, "net-reflect: ready"));
	reflect_frames(&p, 200, &fps, &mbps);
	struct run_result r = harness_proc_finish(&p, 60);
	unlink(path);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "mac 6:0:ac:10:0:7");
	assert_output_contains(&r, err, "net0: rx 200 frames");
	harness_free(&r);
}

static void api_expect(const char *sock, int code, const char *method, const char *path,
		       const char *body, const char *needle, char *reply, size_t cap)
{
	int st = harness_curl(sock, method, path, body, reply, cap);

	if (st != code || (needle && !strstr(reply, needle)))
		fail_msg("%s %s: got %d '%s', expected %d with '%s'", method, path, st, reply, code,
			 needle ? needle : "");
}

#define API_EXPECT(code, method, path, body, needle) \
	api_expect(sock, code, method, path, body, needle, reply, sizeof(reply))

static char *slurp(const char *path)
{
	static char buf[1 << 16];
	int fd = open(path, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* The API path: PUT before boot (TAP checked, duplicates refused), the
 * derived MAC in GET /vm/config, net counters in FlushMetrics, and a PATCH
 * of the TX limiter that takes effect on the running VM. */
static void test_api_interface_metrics_and_patch(void **state)
{
	char sock[64], metrics[64], body[512], reply[16384];
	double fps, mbps;
	struct harness_proc p;

	(void)state;
	drain_socket();
	snprintf(sock, sizeof(sock), "/tmp/mote-net-api-%d.sock", (int)getpid());
	snprintf(metrics, sizeof(metrics), "/tmp/mote-net-metrics-%d.json", (int)getpid());
	unlink(metrics);
	char *argv[] = { (char *)mote_bin, "--api-sock", sock, "--id", "netvm", NULL };
	harness_spawn_api(&p, argv, sock);
	snprintf(body, sizeof(body),
		 "{\"kernel_image_path\":\"%s\",\"boot_args\":\"test=net-reflect frames=1000000\"}",
		 guest_elf);
	API_EXPECT(204, "PUT", "/boot-source", body, NULL);
	API_EXPECT(204, "PUT", "/network-interfaces/eth0",
		   "{\"iface_id\":\"eth0\",\"host_dev_name\":\"" TAP "\"}", NULL);
	API_EXPECT(400, "PUT", "/network-interfaces/eth1",
		   "{\"iface_id\":\"eth1\",\"host_dev_name\":\"" TAP "\"}",
		   "interface 'eth0' already uses this host_dev_name");
	API_EXPECT(400, "PATCH", "/network-interfaces/eth0",
		   "{\"iface_id\":\"eth0\",\"rx_rate_limiter\":{}}", "not running");
	snprintf(body, sizeof(body), "{\"metrics_path\":\"%s\"}", metrics);
	API_EXPECT(204, "PUT", "/metrics", body, NULL);
	API_EXPECT(204, "PUT", "/actions", "{\"action_type\":\"InstanceStart\"}", NULL);
	API_EXPECT(400, "PUT", "/network-interfaces/eth0",
		   "{\"iface_id\":\"eth0\",\"host_dev_name\":\"" TAP "\"}", "already started");
	assert_true(wait_ready(&p, "net-reflect: ready"));
	reflect_frames(&p, 300, &fps, &mbps);

	API_EXPECT(200, "GET", "/vm/config", NULL,
		   "\"network-interfaces\":[{\"iface_id\":\"eth0\",\"host_dev_name\":\"" TAP "\"");
	assert_non_null(strstr(reply, "\"guest_mac\":\"06:"));
	API_EXPECT(204, "PUT", "/actions", "{\"action_type\":\"FlushMetrics\"}", NULL);
	const char *m = slurp(metrics);
	if (!strstr(m, "\"net\":[{\"iface_id\":\"eth0\",\"rx_frames\":300,") ||
	    !strstr(m, "\"tx_frames\":300,"))
		fail_msg("metrics line lacks the net counters: %s", m);

	/* 20 frames a second from now on: 50 frames need about 1.5 s. */
	API_EXPECT(204, "PATCH", "/network-interfaces/eth0",
		   "{\"iface_id\":\"eth0\",\"tx_rate_limiter\":{\"ops\":{\"size\":20,"
		   "\"refill_time\":1000}}}", NULL);
	API_EXPECT(400, "PATCH", "/network-interfaces/eth7",
		   "{\"iface_id\":\"eth7\",\"rx_rate_limiter\":{}}", "no network interface 'eth7'");
	double t0 = harness_now_ms();
	reflect_frames(&p, 50, &fps, &mbps);
	double limited_ms = harness_now_ms() - t0;
	API_EXPECT(200, "GET", "/vm/config", NULL, "\"tx_rate_limiter\":{\"bandwidth\":null,\"ops\":{\"size\":20");
	API_EXPECT(204, "PUT", "/actions", "{\"action_type\":\"FlushMetrics\"}", NULL);
	m = slurp(metrics);
	const char *rl = strstr(m, "\"tx_rate_limited\":");
	while (rl && strstr(rl + 1, "\"tx_rate_limited\":"))
		rl = strstr(rl + 1, "\"tx_rate_limited\":");
	assert_non_null(rl);
	long limited = strtol(rl + strlen("\"tx_rate_limited\":"), NULL, 10);
	/* The demand group's io entry of the same line: how long TX waited on
	 * the limiter (RX never did). */
	const char *thr = strstr(rl, "\"write_throttled_ns\":");
	assert_non_null(thr);
	long long tx_thr_ns = strtoll(thr + strlen("\"write_throttled_ns\":"), NULL, 10);
	assert_non_null(strstr(rl, "\"read_throttled_ns\":0"));
	printf("API: 300 frames, then 50 under a 20 frames/s TX limit in %.0f ms (%ld waits, "
	       "%.0f ms throttled)\n", limited_ms, limited, (double)tx_thr_ns / 1e6);
	assert_true(limited_ms > 1200);
	assert_true(limited > 0);
	assert_true(tx_thr_ns > 500000000LL && tx_thr_ns < (long long)(limited_ms * 1e6));
	kill(p.pid, SIGTERM);
	struct run_result r = harness_proc_finish(&p, 30);
	unlink(metrics);
	unlink(sock);
	assert_output_contains(&r, err, "net0: rx 350 frames");
	harness_free(&r);
}

/* A guest that breaks the rules: three bad frames dropped and counted, the
 * good one sent, a broken ring answered with DEVICE_NEEDS_RESET; the
 * monitor carries on and exits with the guest's status. */
static void test_hostile_guest(void **state)
{
	static uint8_t in[FRAME_MAX + 64];
	struct harness_proc p;
	unsigned good = 0, other = 0;

	(void)state;
	drain_socket();
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--net", "tap=" TAP,
			 "--cmdline", "test=net-hostile", NULL };
	harness_spawn(&p, argv);
	assert_true(wait_ready(&p, "net-hostile: 4 frames handed back"));
	ssize_t n;
	while ((n = recv_frame(in, sizeof(in), 500)) >= 0) {
		if (n == 60 && !memcmp(in + 14, "GOOD", 4))
			good++;
		else
			other++;
	}
	struct run_result r = harness_proc_finish(&p, 60);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS net-hostile");
	assert_output_contains(&r, err, "guest error, device needs reset");
	assert_output_contains(&r, err, "tx 1 frames 60 bytes");
	assert_output_contains(&r, err, "tx_dropped 3,");
	assert_int_equal(good, 1);
	assert_int_equal(other, 0);
	harness_free(&r);
}

/* Four interfaces (the most): each gets its window, IRQ and MAC; frames
 * on the first TAP are reflected while the others idle; a fifth --net is
 * a usage error. */
static void test_four_interfaces(void **state)
{
	double fps, mbps;
	struct harness_proc p;

	(void)state;
	drain_socket();
	for (int i = 1; i < 4; i++)
		assert_int_equal(harness_sh("ip tuntap add dev mtap%d mode tap && ip link set mtap%d up", i, i),
				 0);
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--log-level", "debug",
			 "--net", "tap=" TAP, "--net", "tap=mtap1,id=b", "--net", "tap=mtap2,id=c",
			 "--net", "tap=mtap3,id=d,mac=06:00:00:00:00:04", "--cmdline",
			 "test=net-reflect frames=100", NULL };
	harness_spawn(&p, argv);
	assert_true(wait_ready(&p, "net-reflect: ready"));
	reflect_frames(&p, 100, &fps, &mbps);
	struct run_result r = harness_proc_finish(&p, 60);
	for (int i = 1; i < 4; i++)
		harness_sh("ip link del mtap%d", i);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, err, "net3: TAP 'mtap3', MAC 06:00:00:00:00:04");
	assert_output_contains(&r, err, "net0: rx 100 frames");
	assert_output_contains(&r, err, "net1: rx 0 frames");
	harness_free(&r);

	char *argv5[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--net", "tap=a",
			  "--net", "tap=b", "--net", "tap=c", "--net", "tap=d", "--net", "tap=e", NULL };
	r = harness_run(argv5, 30, NULL);
	assert_exit_status(&r, 64);
	assert_output_contains(&r, err, "at most 4 network interfaces");
	harness_free(&r);
	char *argv_dup[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--net", "tap=a",
			     "--net", "tap=a", NULL };
	r = harness_run(argv_dup, 30, NULL);
	assert_exit_status(&r, 64);
	assert_output_contains(&r, err, "must each be used once");
	harness_free(&r);
}

static void test_net_arg_errors(void **state)
{
	(void)state;
	struct {
		const char *arg, *msg;
		int code;
	} cases[] = {
		{ "tap=mote-absent0", "TAP 'mote-absent0' does not exist", 66 },
		{ "mac=06:00:00:00:00:01", "has no tap=NAME", 64 },
		{ "tap=" TAP ",mac=01:00:00:00:00:01", "not a unicast MAC", 64 },
		{ "tap=" TAP ",speed=10", "'speed=10' is not tap=NAME", 64 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--net",
				 (char *)cases[i].arg, "--cmdline", "test=hello", NULL };
		struct run_result r = harness_run(argv, 30, NULL);
		assert_exit_status(&r, cases[i].code);
		assert_output_contains(&r, err, cases[i].msg);
		harness_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reflect_10000_mixed_mrg),
		cmocka_unit_test(test_reflect_single_buffers),
		cmocka_unit_test(test_generator_frames_arrive_intact),
		cmocka_unit_test(test_no_rx_buffers_drops_are_bounded),
		cmocka_unit_test(test_config_file_interface),
		cmocka_unit_test(test_api_interface_metrics_and_patch),
		cmocka_unit_test(test_hostile_guest),
		cmocka_unit_test(test_tso_frame_passes_whole_with_offloads),
		cmocka_unit_test(test_tso_frame_is_segmented_without_offloads),
		cmocka_unit_test(test_four_interfaces),
		cmocka_unit_test(test_net_arg_errors),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
