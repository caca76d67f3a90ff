/* virtio-vsock under /dev/kvm with the test unikernel: host -> guest
 * streams over the CONNECT protocol (echo guest), guest -> host streams to
 * uds_path_<port> (client guest), many streams at once, a host reader that
 * stalls, bad CONNECT lines. The host generates and checks the data; the
 * guest only moves buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "tests/integration/harness_api.h"

#define ECHO_PORT 5000

static const char *mote_bin;
static const char *guest_elf;

struct vm_run {
	struct harness_proc p;
	char uds[96];
	char cmdline[192];
	char vsock_arg[160];
};

static void uds_path(char *out, size_t len, const char *tag)
{
	snprintf(out, len, "/tmp/mote-vsock-%d-%s.sock", getpid(), tag);
}

static void vm_start(struct vm_run *vm, const char *tag, const char *cmdline)
{
	uds_path(vm->uds, sizeof(vm->uds), tag);
	unlink(vm->uds);
	snprintf(vm->cmdline, sizeof(vm->cmdline), "%s", cmdline);
	snprintf(vm->vsock_arg, sizeof(vm->vsock_arg), "cid=42,uds=%s", vm->uds);
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--mem-mib", "64",
			 "--vsock", vm->vsock_arg, "--cmdline", vm->cmdline, NULL };
	harness_spawn(&vm->p, argv);
}

static struct run_result vm_finish(struct vm_run *vm, int timeout_s)
{
	struct run_result r = harness_proc_finish(&vm->p, timeout_s);
	unlink(vm->uds);
	return r;
}

static void vm_wait_marker(struct vm_run *vm, const char *marker)
{
	if (!harness_proc_wait_for(&vm->p, marker, false, 60)) {
		struct run_result r = vm_finish(vm, 5);
		harness_dump(&r);
		fail_msg("the guest never printed '%s'", marker);
	}
}

/* Connects through the CONNECT protocol; returns the fd after "OK <n>". */
static int vsock_dial(const char *uds, unsigned port)
{
	char line[64];
	int fd = harness_vsock_dial(uds, port, line, sizeof(line));

	if (fd < 0)
		fail_msg("CONNECT %u: got '%s'", port, line);
	unsigned long local = strtoul(line + 3, NULL, 10);
	assert_true(local >= 1024);
	return fd;
}

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

/* One echo stream driven without blocking: what was sent, what came back. */
struct stream {
	int fd;
	uint8_t *data;
	size_t len, sent, got;
	uint64_t sent_hash, got_hash;
	bool shut;
	bool mismatch;
};

static void stream_open(struct stream *s, const char *uds, size_t len, unsigned seed)
{
	memset(s, 0, sizeof(*s));
	s->fd = vsock_dial(uds, ECHO_PORT);
	s->len = len;
	s->data = malloc(len);
	uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		s->data[i] = (uint8_t)x;
	}
	s->sent_hash = s->got_hash = 0xcbf29ce484222325ULL;
	fcntl(s->fd, F_SETFL, O_NONBLOCK);
}

/* Pumps every stream until all echoes are back; false on timeout. */
static bool streams_pump(struct stream *s, int n, int timeout_s)
{
	double end = harness_now_ms() + timeout_s * 1e3;
	struct pollfd *p = calloc((size_t)n, sizeof(*p));
	uint8_t buf[65536];
	bool ok = false;

	for (;;) {
		int open = 0;
		for (int i = 0; i < n; i++) {
			p[i].fd = s[i].fd;
			p[i].events = 0;
			if (s[i].got < s[i].len) {
				p[i].events |= POLLIN;
				open++;
			}
			if (s[i].sent < s[i].len)
				p[i].events |= POLLOUT;
		}
		if (!open) {
			ok = true;
			break;
		}
		if (harness_now_ms() > end || poll(p, (nfds_t)n, 1000) < 0)
			break;
		for (int i = 0; i < n; i++) {
			if (p[i].revents & POLLOUT) {
				size_t chunk = s[i].len - s[i].sent;
				if (chunk > 65536)
					chunk = 65536;
				ssize_t w = write(s[i].fd, s[i].data + s[i].sent, chunk);
				if (w > 0) {
					s[i].sent_hash = fnv(s[i].sent_hash, s[i].data + s[i].sent,
							     (size_t)w);
					s[i].sent += (size_t)w;
				}
			}
			if (p[i].revents & (POLLIN | POLLHUP)) {
				ssize_t r = read(s[i].fd, buf, sizeof(buf));
				if (r > 0) {
					if (memcmp(buf, s[i].data + s[i].got, (size_t)r))
						s[i].mismatch = true;
					s[i].got_hash = fnv(s[i].got_hash, buf, (size_t)r);
					s[i].got += (size_t)r;
				} else if (r == 0) {
					s[i].len = s[i].got; /* closed early: recorded below */
					s[i].mismatch = true;
				}
			}
		}
	}
	free(p);
	return ok;
}

static void stream_close(struct stream *s)
{
	close(s->fd);
	free(s->data);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_host_to_guest_echo_1mib(void **state)
{
	struct vm_run vm;
	struct stream s;
	(void)state;

	vm_start(&vm, "echo1m", "test=vsock-echo vconns=1");
	vm_wait_marker(&vm, "listening on port");
	stream_open(&s, vm.uds, 1 << 20, 1);
	assert_true(streams_pump(&s, 1, 120));
	assert_false(s.mismatch);
	assert_int_equal(s.got, 1 << 20);
	assert_true(s.sent_hash == s.got_hash);
	/* Our close is a SHUTDOWN for the guest, which then closes too. */
	shutdown(s.fd, SHUT_WR);
	assert_true(harness_wait_eof(s.fd, 30000));
	stream_close(&s);
	struct run_result r = vm_finish(&vm, 60);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS vsock-echo");
	assert_output_contains(&r, out, "1048576 bytes echoed");
	harness_free(&r);
}

static void test_32_concurrent_streams(void **state)
{
	enum { N = 32, LEN = 96 * 1024 };
	struct vm_run vm;
	struct stream s[N];
	(void)state;

	/* Without EVENT_IDX (vevent=0): the other tests cover the guest that
	 * negotiates it. */
	vm_start(&vm, "many", "test=vsock-echo vconns=32 vevent=0");
	vm_wait_marker(&vm, "listening on port");
	/* All 32 open before any data moves: they are live at once. */
	for (int i = 0; i < N; i++)
		stream_open(&s[i], vm.uds, LEN, (unsigned)i + 100);
	assert_true(streams_pump(s, N, 180));
	for (int i = 0; i < N; i++) {
		if (s[i].mismatch || s[i].got != LEN || s[i].sent_hash != s[i].got_hash)
			fail_msg("stream %d: %zu of %d bytes back%s", i, s[i].got, LEN,
				 s[i].mismatch ? ", corrupted" : "");
		stream_close(&s[i]);
	}
	struct run_result r = vm_finish(&vm, 60);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "32 streams opened, 32 closed");
	harness_free(&r);
}

/* Stream A's host client writes and never reads. The guest echoes until
 * the monitor's buffer for A (64 KiB) is full, then waits for credit; the
 * monitor stops taking A's data. A's writer must stall after a bounded
 * amount, while stream B echoes 512 KiB normally, and the monitor's
 * memory must not grow with what A tries to send. */
static void test_stalled_reader_stalls_only_itself(void **state)
{
	struct vm_run vm;
	struct stream b;
	(void)state;

	vm_start(&vm, "stall", "test=vsock-echo vconns=2");
	vm_wait_marker(&vm, "listening on port");
	long rss0 = harness_proc_kib(vm.p.pid, "status", "VmRSS:");
	int a = vsock_dial(vm.uds, ECHO_PORT);
	fcntl(a, F_SETFL, O_NONBLOCK);
	static uint8_t junk[65536];
	memset(junk, 0xa5, sizeof(junk));
	size_t accepted = 0;
	for (;;) {
		ssize_t w = write(a, junk, sizeof(junk));
		if (w > 0) {
			accepted += (size_t)w;
			assert_true(accepted < (64u << 20)); /* unbounded buffering somewhere */
			continue;
		}
		assert_true(w < 0 && errno == EAGAIN);
		struct pollfd p = { a, POLLOUT, 0 };
		if (poll(&p, 1, 1500) == 0)
			break; /* stalled for 1.5 s: back-pressure reached the writer */
	}
	/* What A could push = kernel socket buffers (both directions) plus the
	 * guest's and the monitor's 64 KiB windows; nothing like the 64 MiB
	 * an unbounded buffer would swallow. */
	fprintf(stderr, "stalled stream accepted %zu bytes before blocking\n", accepted);
	assert_true(accepted < (8u << 20));

	stream_open(&b, vm.uds, 512 * 1024, 7);
	assert_true(streams_pump(&b, 1, 120));
	assert_false(b.mismatch);
	assert_int_equal(b.got, 512 * 1024);
	long rss1 = harness_proc_kib(vm.p.pid, "status", "VmRSS:");
	fprintf(stderr, "monitor RSS %ld KiB before, %ld KiB with a stalled stream\n", rss0, rss1);
	assert_true(rss0 > 0 && rss1 > 0);
	assert_true(rss1 - rss0 < 16 * 1024);
	shutdown(b.fd, SHUT_WR);
	assert_true(harness_wait_eof(b.fd, 30000));
	stream_close(&b);
	/* Closing A without reading: the monitor resets the stream. */
	close(a);
	struct run_result r = vm_finish(&vm, 60);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "2 streams opened, 2 closed");
	harness_free(&r);
}

static void expect_refusal(const char *uds, const void *send, size_t len, const char *want)
{
	char line[160];
	int fd = harness_uds_connect(uds);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, send, len), (ssize_t)len);
	int n = harness_read_line(fd, line, sizeof(line), 30000);
	if (want) {
		if (n <= 0 || strncmp(line, "ERR ", 4) || !strstr(line, want))
			fail_msg("sent '%.*s': expected 'ERR ...%s...', got '%s'", (int)len,
				 (const char *)send, want, n > 0 ? line : "(nothing)");
	} else if (n != 0) {
		fail_msg("sent '%.*s': expected the socket closed, got '%s'", (int)len,
			 (const char *)send, n > 0 ? line : "(timeout)");
	}
	assert_true(harness_wait_eof(fd, 30000));
	close(fd);
}

static void test_bad_connect_lines_and_unknown_port(void **state)
{
	struct vm_run vm;
	struct stream s;
	char longline[64];
	(void)state;

	vm_start(&vm, "bad", "test=vsock-echo vconns=1");
	vm_wait_marker(&vm, "listening on port");
	expect_refusal(vm.uds, "CONNECT abc\n", 12, "not a decimal number");
	expect_refusal(vm.uds, "CONNECT 99999999999\n", 20, "out of range");
	expect_refusal(vm.uds, "CONNECT 4294967295\n", 19, "out of range");
	expect_refusal(vm.uds, "CONNECT\n", 8, "CONNECT");
	expect_refusal(vm.uds, "GET / HTTP/1.1\r\n", 16, "expected 'CONNECT");
	memset(longline, '1', sizeof(longline));
	memcpy(longline, "CONNECT ", 8);
	expect_refusal(vm.uds, longline, sizeof(longline), "too long");
	/* Half a line and silence: the slot is given back after 5 s. */
	double t0 = harness_now_ms();
	expect_refusal(vm.uds, "CONN", 4, "timed out");
	double waited = harness_now_ms() - t0;
	assert_true(waited >= 4000 && waited < 15000);
	/* A port nobody listens on in the guest: the guest answers RST, the
	 * monitor closes the socket without an OK. */
	expect_refusal(vm.uds, "CONNECT 5001\n", 13, NULL);
	/* The monitor is unharmed: a good stream still works. */
	stream_open(&s, vm.uds, 4096, 3);
	assert_true(streams_pump(&s, 1, 60));
	assert_false(s.mismatch);
	shutdown(s.fd, SHUT_WR);
	assert_true(harness_wait_eof(s.fd, 30000));
	stream_close(&s);
	struct run_result r = vm_finish(&vm, 60);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "1 streams opened, 1 closed");
	harness_free(&r);
}

/* The guest connects to CID 2 port 6000: the monitor forwards to
 * <uds>_6000, where this test listens, checks every byte of the guest's
 * pattern, and answers with the count and the sum. */
static void test_guest_to_host_1mib(void **state)
{
	struct vm_run vm;
	char peer[128];
	(void)state;

	uds_path(vm.uds, sizeof(vm.uds), "g2h");
	snprintf(peer, sizeof(peer), "%s_6000", vm.uds);
	int lfd = harness_uds_listen(peer);
	vm_start(&vm, "g2h", "test=vsock-client vport=6000 vbytes=1048576");
	struct pollfd p = { lfd, POLLIN, 0 };
	if (poll(&p, 1, 60000) != 1) {
		struct run_result r = vm_finish(&vm, 5);
		harness_dump(&r);
		fail_msg("the guest's connection never reached %s", peer);
	}
	int fd = accept(lfd, NULL, NULL);
	assert_true(fd >= 0);
	uint8_t buf[65536];
	uint64_t total = 0;
	uint32_t sum = 0;
	bool pattern_ok = true;
	for (;;) {
		struct pollfd q = { fd, POLLIN, 0 };
		assert_int_equal(poll(&q, 1, 60000), 1);
		ssize_t n = read(fd, buf, sizeof(buf));
		assert_true(n >= 0);
		if (n == 0)
			break; /* the guest's SHUTDOWN(SEND) */
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != (uint8_t)(total + (uint64_t)i))
				pattern_ok = false;
			sum += buf[i];
		}
		total += (uint64_t)n;
	}
	assert_true(pattern_ok);
	assert_int_equal(total, 1 << 20);
	uint32_t reply[2] = { (uint32_t)total, sum };
	assert_int_equal(write(fd, reply, sizeof(reply)), (ssize_t)sizeof(reply));
	close(fd);
	close(lfd);
	unlink(peer);
	struct run_result r = vm_finish(&vm, 60);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS vsock-client");
	harness_free(&r);
}

static void test_guest_connect_nobody_listens(void **state)
{
	struct vm_run vm;
	(void)state;

	vm_start(&vm, "refused", "test=vsock-client vport=6001 vexpect=refused");
	struct run_result r = vm_finish(&vm, 60);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "connection refused (RST)");
	assert_output_contains(&r, out, "TEST PASS vsock-client");
	harness_free(&r);
}

static void test_cli_errors(void **state)
{
	(void)state;
	static const char *const bad[] = { "cid=2,uds=/tmp/x", "cid=3", "uds=/tmp/x",
					   "cid=3,uds=/tmp/x,port=1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--vsock",
				 (char *)bad[i], NULL };
		struct run_result r = harness_run(argv, 30, NULL);
		assert_exit_status(&r, 64);
		assert_output_contains(&r, err, "--vsock");
		harness_free(&r);
	}
	/* uds_path that is a regular file: refused, not replaced. */
	char path[64] = "/tmp/mote-vsock-file-XXXXXX", arg[96];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	snprintf(arg, sizeof(arg), "cid=3,uds=%s", path);
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--vsock", arg,
			 "--cmdline", "test=hello", NULL };
	struct run_result r = harness_run(argv, 30, NULL);
	unlink(path);
	assert_exit_status(&r, 66);
	assert_output_contains(&r, err, "not a socket");
	harness_free(&r);
}

static void echo_once(const char *uds)
{
	struct stream s;

	stream_open(&s, uds, 64 * 1024, 9);
	assert_true(streams_pump(&s, 1, 60));
	assert_false(s.mismatch);
	assert_int_equal(s.got, 64 * 1024);
	shutdown(s.fd, SHUT_WR);
	assert_true(harness_wait_eof(s.fd, 30000));
	stream_close(&s);
}

/* PUT /vsock before InstanceStart, and the same through --config-file. */
static void test_api_and_config_file(void **state)
{
	struct vm_run vm;
	char sock[96], body[512], out[8192];
	(void)state;

	uds_path(vm.uds, sizeof(vm.uds), "api");
	uds_path(sock, sizeof(sock), "api-http");
	unlink(vm.uds);
	char *argv[] = { (char *)mote_bin, "--api-sock", sock, NULL };
	harness_spawn_api(&vm.p, argv, sock);
	snprintf(body, sizeof(body), "{\"kernel_image_path\":\"%s\",\"boot_args\":"
		 "\"test=vsock-echo vconns=2\"}", guest_elf);
	assert_int_equal(harness_curl(sock, "PUT", "/boot-source", body, out, sizeof(out)), 204);
	char metrics[96];
	uds_path(metrics, sizeof(metrics), "metrics");
	unlink(metrics);
	snprintf(body, sizeof(body), "{\"metrics_path\":\"%s\"}", metrics);
	assert_int_equal(harness_curl(sock, "PUT", "/metrics", body, out, sizeof(out)), 204);
	snprintf(body, sizeof(body), "{\"vsock_id\":\"vsock0\",\"guest_cid\":3,\"uds_path\":\"%s\"}",
		 vm.uds);
	assert_int_equal(harness_curl(sock, "PUT", "/vsock", body, out, sizeof(out)), 204);
	assert_int_equal(harness_curl(sock, "GET", "/vm/config", NULL, out, sizeof(out)), 200);
	if (!strstr(out, "\"vsock\":{\"guest_cid\":3,\"uds_path\":\""))
		fail_msg("GET /vm/config lacks the vsock: %s", out);
	assert_non_null(strstr(out, "\"vsock_id\":\"vsock0\""));
	assert_int_equal(harness_curl(sock, "PUT", "/actions", "{\"action_type\":\"InstanceStart\"}",
				  out, sizeof(out)), 204);
	/* After boot the device cannot change. */
	assert_int_equal(harness_curl(sock, "PUT", "/vsock", body, out, sizeof(out)), 400);
	assert_non_null(strstr(out, "already started"));
	vm_wait_marker(&vm, "listening on port");
	echo_once(vm.uds);
	/* FlushMetrics carries the device's counters. */
	assert_int_equal(harness_curl(sock, "PUT", "/actions", "{\"action_type\":\"FlushMetrics\"}",
				  out, sizeof(out)), 204);
	FILE *mf = fopen(metrics, "r");
	assert_non_null(mf);
	size_t mlen = fread(out, 1, sizeof(out) - 1, mf);
	out[mlen] = 0;
	fclose(mf);
	unlink(metrics);
	if (!strstr(out, "\"vsock\":{\"conns_opened\":1,") || !strstr(out, "\"tx_bytes\":65536") ||
	    !strstr(out, "\"rx_bytes\":65536") || !strstr(out, "\"bad_packets\":0"))
		fail_msg("metrics line lacks the vsock counters: %s", out);
	echo_once(vm.uds);
	struct run_result r = vm_finish(&vm, 60);
	unlink(sock);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS vsock-echo");
	assert_output_contains(&r, out, "cid 3,");
	harness_free(&r);

	/* --config-file: the GET /vm/config schema. */
	char cfg[64] = "/tmp/mote-vsock-cfg-XXXXXX";
	int fd = mkstemp(cfg);
	assert_true(fd >= 0);
	uds_path(vm.uds, sizeof(vm.uds), "cfg");
	unlink(vm.uds);
	int n = snprintf(body, sizeof(body), "{\"boot-source\":{\"kernel_image_path\":\"%s\","
			 "\"boot_args\":\"test=vsock-echo vconns=1\"},\"vsock\":{\"guest_cid\":9,"
			 "\"uds_path\":\"%s\"}}", guest_elf, vm.uds);
	assert_int_equal(write(fd, body, (size_t)n), n);
	close(fd);
	char *argv2[] = { (char *)mote_bin, "--no-api", "--config-file", cfg, NULL };
	harness_spawn(&vm.p, argv2);
	vm_wait_marker(&vm, "listening on port");
	echo_once(vm.uds);
	r = vm_finish(&vm, 60);
	unlink(cfg);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "cid 9,");
	harness_free(&r);
}

/* The guest resets its device (status 0, on a vCPU thread, under that
 * thread's seccomp filter) while a stream is open: the monitor drops the
 * stream and closes its host socket, and the re-initialised device works. */
static void test_guest_reset_closes_streams(void **state)
{
	struct vm_run vm;
	char buf[8];
	(void)state;

	vm_start(&vm, "reset", "test=vsock-echo vconns=1 vreset=1");
	vm_wait_marker(&vm, "listening on port");
	int a = vsock_dial(vm.uds, ECHO_PORT);
	assert_int_equal(write(a, "ping", 4), 4);
	size_t got = 0;
	while (got < 4) {
		struct pollfd p = { a, POLLIN, 0 };
		assert_int_equal(poll(&p, 1, 30000), 1);
		ssize_t n = read(a, buf + got, sizeof(buf) - got);
		assert_true(n > 0);
		got += (size_t)n;
	}
	assert_memory_equal(buf, "ping", 4);
	assert_true(harness_wait_eof(a, 30000));
	close(a);
	vm_wait_marker(&vm, "device reset with streams open");
	echo_once(vm.uds);
	struct run_result r = vm_finish(&vm, 60);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS vsock-echo");
	harness_free(&r);
}

int main(void)
{
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_to_guest_echo_1mib),
		cmocka_unit_test(test_guest_to_host_1mib),
		cmocka_unit_test(test_guest_connect_nobody_listens),
		cmocka_unit_test(test_32_concurrent_streams),
		cmocka_unit_test(test_stalled_reader_stalls_only_itself),
		cmocka_unit_test(test_bad_connect_lines_and_unknown_port),
		cmocka_unit_test(test_cli_errors),
		cmocka_unit_test(test_api_and_config_file),
		cmocka_unit_test(test_guest_reset_closes_streams),
	};
	return cmocka_run_group_tests_name("integration: virtio-vsock", tests, NULL, NULL);
}
