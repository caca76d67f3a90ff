/* The function runtime (guest/fn/) under /dev/kvm: each example image
 * boots in mote with a vsock device, signals ready on <uds>_53, and
 * answers requests (guest/fn/protocol.h) sent through CONNECT 5000:
 * right answers, and the error cases (fault, deadline, oversize, bad
 * header) each with its status while the VM goes on serving. Images come
 * from MOTE_FN_DIR (make fn-examples, part of make all). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "guest/fn/protocol.h"
#include "tests/integration/harness_api.h"

static const char *mote_bin;
static const char *fn_dir;

struct fnvm {
	struct harness_proc p;
	char api[112];
	char uds[96];
	char ready_path[112];
	int ready_lfd;
	char image[256];
	char vsock_arg[160];
	char cmdline[128];
};

struct fn_reply {
	int status;          /* enum fn_status, or -1: the stream ended first */
	uint32_t handler_us;
	uint8_t *body;
	uint32_t len;
};

static void fnvm_dump_fail(struct fnvm *vm, const char *what)
{
	kill(vm->p.pid, SIGKILL);
	struct run_result r = harness_proc_finish(&vm->p, 10);
	harness_dump(&r);
	fail_msg("%s", what);
}

/* Boots image name.elf (with an API socket if api) and waits for its
 * ready connection. */
static void fnvm_start_api(struct fnvm *vm, const char *name, const char *cmdline, bool api)
{
	snprintf(vm->uds, sizeof(vm->uds), "/tmp/mote-fn-%d-%s.sock", getpid(), name);
	snprintf(vm->ready_path, sizeof(vm->ready_path), "%s_%u", vm->uds, FN_READY_PORT);
	snprintf(vm->image, sizeof(vm->image), "%s/%s.elf", fn_dir, name);
	snprintf(vm->vsock_arg, sizeof(vm->vsock_arg), "cid=3,uds=%s", vm->uds);
	snprintf(vm->cmdline, sizeof(vm->cmdline), "%s", cmdline ? cmdline : "");
	if (access(vm->image, R_OK))
		fail_msg("no function image %s (make fn-examples)", vm->image);
	unlink(vm->uds);
	vm->ready_lfd = harness_uds_listen(vm->ready_path);
	snprintf(vm->api, sizeof(vm->api), "%s.api", vm->uds);
	unlink(vm->api);
	char *argv[16] = { (char *)mote_bin, "--kernel", vm->image, "--mem-mib", "32", "--vsock",
			   vm->vsock_arg };
	int n_arg = 7;
	if (api) {
		argv[n_arg++] = "--api-sock";
		argv[n_arg++] = vm->api;
	}
	if (cmdline) {
		argv[n_arg++] = "--cmdline";
		argv[n_arg++] = vm->cmdline;
	}
	double t0 = harness_now_ms();
	harness_spawn(&vm->p, argv);

	/* Ready: the runtime connects to CID 2 port 53, sends the line, closes. */
	struct pollfd p = { vm->ready_lfd, POLLIN, 0 };
	if (poll(&p, 1, 60000) != 1)
		fnvm_dump_fail(vm, "no ready connection on <uds>_53");
	int fd = accept(vm->ready_lfd, NULL, NULL);
	fprintf(stderr, "%s: ready connection %.1f ms after the monitor started\n", name,
		harness_now_ms() - t0);
	assert_true(fd >= 0);
	char line[64];
	size_t n = 0;
	for (;;) {
		struct pollfd q = { fd, POLLIN, 0 };
		if (poll(&q, 1, 30000) != 1)
			fnvm_dump_fail(vm, "the ready connection stayed open");
		ssize_t got = read(fd, line + n, sizeof(line) - 1 - n);
		if (got <= 0)
			break;
		n += (size_t)got;
		if (n == sizeof(line) - 1)
			break;
	}
	line[n] = 0;
	close(fd);
	assert_string_equal(line, FN_READY_LINE);
	if (!harness_proc_wait_for(&vm->p, FN_READY_LINE, false, 10))
		fnvm_dump_fail(vm, "the serial console lacks the ready line");
}

static void fnvm_start(struct fnvm *vm, const char *name, const char *cmdline)
{
	fnvm_start_api(vm, name, cmdline, false);
}

/* Stops the VM (it serves forever); returns what it printed. The VM must
 * still be running: a runtime that died would fail here. */
static struct run_result fnvm_stop(struct fnvm *vm)
{
	harness_proc_pump(&vm->p, 0);
	bool alive = harness_proc_alive(&vm->p);
	kill(vm->p.pid, SIGTERM);
	struct run_result r = harness_proc_finish(&vm->p, 20);
	close(vm->ready_lfd);
	unlink(vm->ready_path);
	unlink(vm->uds);
	unlink(vm->api);
	if (!alive) {
		harness_dump(&r);
		fail_msg("the function VM exited while serving");
	}
	return r;
}

/* CONNECT FN_VSOCK_PORT through the hybrid vsock socket: the fd, or -1
 * if the guest refused. */
static int fn_try_dial(struct fnvm *vm)
{
	char line[64];

	return harness_vsock_dial(vm->uds, FN_VSOCK_PORT, line, sizeof(line));
}

static int fn_dial(struct fnvm *vm)
{
	int fd = fn_try_dial(vm);

	if (fd < 0)
		fnvm_dump_fail(vm, "CONNECT 5000 was not answered with OK");
	return fd;
}

static void seed_fill(uint8_t seed[16], unsigned v)
{
	for (int i = 0; i < 16; i++)
		seed[i] = (uint8_t)(v * 131 + (unsigned)i * 17 + 1);
}

/* Sends a request with an explicit header; reads the response. */
static struct fn_reply fn_call_hdr(int fd, const struct fn_request_hdr *h, const void *body,
				   uint32_t len)
{
	struct fn_reply r = { .status = -1 };
	struct fn_response_hdr rh;

	assert_true(harness_write_full(fd, h, sizeof(*h)));
	if (len)
		assert_true(harness_write_full(fd, body, len));
	if (!harness_read_full(fd, &rh, sizeof(rh), 60000))
		return r;
	assert_int_equal(rh.magic, FN_RESP_MAGIC);
	assert_true(rh.body_len <= FN_MAX_RESPONSE);
	r.body = malloc(rh.body_len + 1);
	assert_true(harness_read_full(fd, r.body, rh.body_len, 60000));
	r.body[rh.body_len] = 0;
	r.len = rh.body_len;
	r.status = (int)rh.status;
	r.handler_us = rh.handler_us;
	return r;
}

static struct fn_reply fn_call_seed(int fd, const void *body, uint32_t len, uint32_t deadline_ms,
				    unsigned seed)
{
	struct fn_request_hdr h = { .magic = FN_REQ_MAGIC, .body_len = len,
				    .deadline_ms = deadline_ms };

	seed_fill(h.seed, seed);
	return fn_call_hdr(fd, &h, body, len);
}

static struct fn_reply fn_call(int fd, const char *text, uint32_t deadline_ms)
{
	return fn_call_seed(fd, text, (uint32_t)strlen(text), deadline_ms, 1);
}

static void expect(struct fn_reply *r, int status, const char *body_has)
{
	if (r->status != status || (body_has && !strstr((char *)r->body, body_has)))
		fail_msg("status %d body '%s', expected status %d with '%s'", r->status,
			 r->body ? (char *)r->body : "", status, body_has ? body_has : "");
	free(r->body);
	r->body = NULL;
}

static void fill_random(uint8_t *p, size_t n, uint64_t x)
{
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
}

/* ---- tests ---------------------------------------------------------------- */

/* Exact bytes back, for sizes from 0 to the limit, on one stream. */
static void test_echo(void **state)
{
	static const uint32_t sizes[] = { 0, 1, 4095, 16384, 70000, FN_MAX_REQUEST };
	struct fnvm vm;
	(void)state;

	fnvm_start(&vm, "echo", NULL);
	int fd = fn_dial(&vm);
	uint8_t *data = malloc(FN_MAX_REQUEST);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fill_random(data, sizes[i], 0x1234 + i);
		double t0 = harness_now_ms();
		struct fn_reply r = fn_call_seed(fd, data, sizes[i], 0, (unsigned)i);
		double ms = harness_now_ms() - t0;
		fprintf(stderr, "echo %u bytes: %.2f ms round trip, handler %u us\n", sizes[i], ms,
			r.handler_us);
		assert_int_equal(r.status, FN_OK);
		assert_int_equal(r.len, sizes[i]);
		assert_memory_equal(r.body, data, sizes[i]);
		free(r.body);
	}
	close(fd);
	/* A new stream per request works too. */
	for (int i = 0; i < 3; i++) {
		fd = fn_dial(&vm);
		struct fn_reply r = fn_call(fd, "hello", 0);
		expect(&r, FN_OK, "hello");
		close(fd);
	}
	free(data);
	struct run_result rr = fnvm_stop(&vm);
	harness_free(&rr);
}

static void sha256_host(const uint8_t *data, size_t len, char out[65])
{
	char path[] = "/tmp/mote-fn-sha-XXXXXX", cmd[128];
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_true(harness_write_full(fd, data, len));
	close(fd);
	snprintf(cmd, sizeof(cmd), "sha256sum %s", path);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(out, 65, f));
	pclose(f);
	unlink(path);
	out[64] = 0;
}

static void test_sha256(void **state)
{
	/* FIPS 180-4 examples (and the empty message). */
	static const struct {
		const char *msg, *digest;
	} kat[] = {
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	};
	static const uint32_t sizes[] = { 55, 56, 63, 64, 65, 100000, FN_MAX_REQUEST };
	struct fnvm vm;
	(void)state;

	fnvm_start(&vm, "sha256", NULL);
	int fd = fn_dial(&vm);
	for (size_t i = 0; i < sizeof(kat) / sizeof(kat[0]); i++) {
		struct fn_reply r = fn_call(fd, kat[i].msg, 0);
		assert_int_equal(r.status, FN_OK);
		assert_int_equal(r.len, 64);
		assert_string_equal((char *)r.body, kat[i].digest);
		free(r.body);
	}
	uint8_t *data = malloc(FN_MAX_REQUEST);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char want[65];
		fill_random(data, sizes[i], 99 + i);
		sha256_host(data, sizes[i], want);
		struct fn_reply r = fn_call_seed(fd, data, sizes[i], 0, 1);
		assert_int_equal(r.status, FN_OK);
		assert_string_equal((char *)r.body, want);
		if (sizes[i] == FN_MAX_REQUEST)
			fprintf(stderr, "sha256 of 256 KiB: handler %u us\n", r.handler_us);
		free(r.body);
	}
	free(data);
	close(fd);
	struct run_result rr = fnvm_stop(&vm);
	harness_free(&rr);
}

static void test_wordcount(void **state)
{
	struct fnvm vm;
	(void)state;

	fnvm_start(&vm, "wordcount", NULL);
	int fd = fn_dial(&vm);
	struct fn_reply r = fn_call(fd, "hello world\nfoo  bar\tbaz\n\nlast", 0);
	expect(&r, FN_OK, NULL);
	r = fn_call(fd, "hello world\nfoo  bar\tbaz\n\nlast", 0);
	assert_string_equal((char *)r.body, "3 6 30\n");
	free(r.body);
	r = fn_call(fd, "", 0);
	assert_string_equal((char *)r.body, "0 0 0\n");
	free(r.body);
	r = fn_call(fd, "   \n\n  \t", 0);
	assert_string_equal((char *)r.body, "2 0 8\n");
	free(r.body);
	close(fd);
	struct run_result rr = fnvm_stop(&vm);
	harness_free(&rr);
}

/* Every kind of crash is an FN_FAULT naming it; the next request works. */
static void test_fault_then_next_works(void **state)
{
	static const struct {
		const char *req, *want;
	} crashes[] = {
		{ "null", "page fault (vector 14)" },
		{ "div", "divide error (vector 0)" },
		{ "hlt", "general protection fault (vector 13)" },
		{ "stack", "page fault (vector 14)" },
		{ "kwrite", "error=0x7" },  /* present, write, user: closed to CPL3 */
		{ "twrite", "error=0x7" },  /* present, write, user: read-only */
	};
	struct fnvm vm;
	(void)state;

	fnvm_start(&vm, "fault", NULL);
	int fd = fn_dial(&vm);
	for (size_t i = 0; i < sizeof(crashes) / sizeof(crashes[0]); i++) {
		struct fn_reply r = fn_call(fd, crashes[i].req, 0);
		if (i == 0)
			assert_non_null(strstr((char *)r.body, "address=0x0 "));
		expect(&r, FN_FAULT, crashes[i].want);
		r = fn_call(fd, "fine", 0);
		expect(&r, FN_OK, "ok");
	}
	struct fn_reply r = fn_call(fd, "error", 0);
	expect(&r, FN_HANDLER_ERROR, "asked to fail");
	close(fd);
	/* And on a new stream. */
	fd = fn_dial(&vm);
	r = fn_call(fd, "fine", 0);
	expect(&r, FN_OK, "ok");
	close(fd);
	struct run_result rr = fnvm_stop(&vm);
	assert_output_contains(&rr, out, "mote-fn: request 1: fault: page fault");
	harness_free(&rr);
}

/* A handler that never returns is stopped at its deadline, spinning or
 * sleeping; the default deadline comes from fn_deadline_ms=. */
static void test_loop_timeout(void **state)
{
	struct fnvm vm;
	(void)state;

	fnvm_start(&vm, "loop", "fn_deadline_ms=300");
	int fd = fn_dial(&vm);
	for (int i = 0; i < 2; i++) {
		double t0 = harness_now_ms();
		struct fn_reply r = fn_call(fd, "spin", 200);
		double ms = harness_now_ms() - t0;
		fprintf(stderr, "spin, deadline 200 ms: answered after %.1f ms (handler %u us)\n", ms,
			r.handler_us);
		assert_true(r.handler_us >= 190000 && r.handler_us < 1000000);
		expect(&r, FN_TIMEOUT, "deadline of 200 ms");
		assert_true(ms >= 190 && ms < 5000);
	}
	struct fn_reply r = fn_call(fd, "sleep", 150);
	assert_true(r.handler_us >= 140000 && r.handler_us < 1000000);
	expect(&r, FN_TIMEOUT, "deadline of 150 ms");
	r = fn_call(fd, "spin", 0);
	assert_true(r.handler_us >= 290000 && r.handler_us < 1500000);
	expect(&r, FN_TIMEOUT, "deadline of 300 ms");
	close(fd);
	struct run_result rr = fnvm_stop(&vm);
	assert_output_contains(&rr, out, "timeout after 300 ms");
	harness_free(&rr);
}

/* While a handler runs, a new stream is still accepted at once (the
 * monitor would give up on the guest after 10 s), and its request is
 * served when the handler is done. */
static void test_accepts_while_busy(void **state)
{
	struct fnvm vm;
	(void)state;

	fnvm_start(&vm, "loop", NULL);
	int a = fn_dial(&vm);
	struct fn_request_hdr h = { .magic = FN_REQ_MAGIC, .body_len = 4, .deadline_ms = 1500 };
	assert_true(harness_write_full(a, &h, sizeof(h)));
	assert_true(harness_write_full(a, "spin", 4));
	usleep(200000); /* the handler is running */
	double t0 = harness_now_ms();
	int b = fn_dial(&vm);
	double dial_ms = harness_now_ms() - t0;
	fprintf(stderr, "CONNECT answered after %.1f ms while a handler ran\n", dial_ms);
	assert_true(dial_ms < 1000);
	h.deadline_ms = 100;
	assert_true(harness_write_full(b, &h, sizeof(h)));
	assert_true(harness_write_full(b, "spin", 4));
	struct fn_response_hdr rh;
	assert_true(harness_read_full(a, &rh, sizeof(rh), 30000));
	assert_int_equal(rh.status, FN_TIMEOUT);
	assert_true(rh.handler_us >= 1400000);
	char msg[256];
	assert_true(rh.body_len < sizeof(msg) && harness_read_full(a, msg, rh.body_len, 30000));
	assert_true(harness_read_full(b, &rh, sizeof(rh), 30000));
	assert_int_equal(rh.status, FN_TIMEOUT);
	assert_true(rh.handler_us >= 90000 && rh.handler_us < 1000000);
	close(a);
	close(b);

	/* A stream that goes away while its handler runs: nobody to answer,
	 * and the next stream is served. */
	a = fn_dial(&vm);
	h.deadline_ms = 400;
	assert_true(harness_write_full(a, &h, sizeof(h)));
	assert_true(harness_write_full(a, "spin", 4));
	usleep(100000);
	close(a);
	b = fn_dial(&vm);
	struct fn_reply r = fn_call(b, "spin", 50);
	expect(&r, FN_TIMEOUT, "deadline of 50 ms");
	close(b);
	struct run_result rr = fnvm_stop(&vm);
	harness_free(&rr);
}

/* The largest response arrives whole (more than the monitor's 64 KiB
 * window: the runtime waits for credit); one byte more is FN_TOO_LARGE. */
static void test_big_response(void **state)
{
	struct fnvm vm;
	char req[32];
	(void)state;

	fnvm_start(&vm, "big", NULL);
	int fd = fn_dial(&vm);
	snprintf(req, sizeof(req), "%u", FN_MAX_RESPONSE);
	struct fn_reply r = fn_call(fd, req, 0);
	assert_int_equal(r.status, FN_OK);
	assert_int_equal(r.len, FN_MAX_RESPONSE);
	for (uint32_t i = 0; i < r.len; i++)
		if (r.body[i] != (uint8_t)(i * 7 + 3))
			fail_msg("byte %u of the response is 0x%02x", i, r.body[i]);
	free(r.body);
	snprintf(req, sizeof(req), "%u", FN_MAX_RESPONSE + 1);
	r = fn_call(fd, req, 0);
	expect(&r, FN_TOO_LARGE, "over the limit");
	r = fn_call(fd, "overrun", 0);
	expect(&r, FN_FAULT, "page fault");
	r = fn_call(fd, "10", 0);
	assert_int_equal(r.status, FN_OK);
	assert_int_equal(r.len, 10);
	free(r.body);
	close(fd);
	struct run_result rr = fnvm_stop(&vm);
	harness_free(&rr);
}

/* A bad header gets its answer and the end of the stream (the bytes after
 * it cannot be trusted); other streams are unaffected. */
static void test_bad_requests(void **state)
{
	struct fnvm vm;
	(void)state;

	fnvm_start(&vm, "echo", NULL);
	struct fn_request_hdr h = { .magic = 0xdeadbeef, .body_len = 4 };
	int fd = fn_dial(&vm);
	struct fn_reply r = fn_call_hdr(fd, &h, "abcd", 4);
	expect(&r, FN_BAD_REQUEST, "bad request magic 0xdeadbeef");
	assert_true(harness_wait_eof(fd, 30000));
	close(fd);

	h.magic = FN_REQ_MAGIC;
	h.flags = 1;
	fd = fn_dial(&vm);
	r = fn_call_hdr(fd, &h, "abcd", 4);
	expect(&r, FN_BAD_REQUEST, "unknown flags");
	assert_true(harness_wait_eof(fd, 30000));
	close(fd);

	h.flags = 0;
	h.body_len = FN_MAX_REQUEST + 1;
	fd = fn_dial(&vm);
	r = fn_call_hdr(fd, &h, NULL, 0);
	expect(&r, FN_TOO_LARGE, "over the limit");
	assert_true(harness_wait_eof(fd, 30000));
	close(fd);

	/* A stream that ends mid-request: the runtime closes it too. */
	fd = fn_dial(&vm);
	h.body_len = 1000;
	assert_true(harness_write_full(fd, &h, sizeof(h)));
	assert_true(harness_write_full(fd, "partial", 7));
	shutdown(fd, SHUT_WR);
	assert_true(harness_wait_eof(fd, 30000));
	close(fd);

	fd = fn_dial(&vm);
	r = fn_call(fd, "still here", 0);
	expect(&r, FN_OK, "still here");
	close(fd);
	struct run_result rr = fnvm_stop(&vm);
	harness_free(&rr);
}

/* Two streams open at once: an idle one does not keep the other waiting,
 * and both are served. */
static void test_two_streams(void **state)
{
	struct fnvm vm;
	(void)state;

	fnvm_start(&vm, "echo", NULL);
	int a = fn_dial(&vm);
	int b = fn_dial(&vm);
	struct fn_reply r = fn_call(b, "from b", 0);
	expect(&r, FN_OK, "from b");
	r = fn_call(a, "from a", 0);
	expect(&r, FN_OK, "from a");
	/* Both send before either reads. */
	uint8_t *big = malloc(200000);
	fill_random(big, 200000, 5);
	struct fn_request_hdr h = { .magic = FN_REQ_MAGIC, .body_len = 200000 };
	assert_true(harness_write_full(a, &h, sizeof(h)));
	assert_true(harness_write_full(a, big, 200000));
	r = fn_call(b, "b again", 0);
	expect(&r, FN_OK, "b again");
	struct fn_response_hdr rh;
	assert_true(harness_read_full(a, &rh, sizeof(rh), 60000));
	assert_int_equal(rh.status, FN_OK);
	assert_int_equal(rh.body_len, 200000);
	uint8_t *back = malloc(200000);
	assert_true(harness_read_full(a, back, 200000, 60000));
	assert_memory_equal(back, big, 200000);
	free(back);
	free(big);
	close(a);
	close(b);
	struct run_result rr = fnvm_stop(&vm);
	harness_free(&rr);
}

/* Randomness differs with the request's seed; clock, sleep, log and state
 * across requests work. */
static void test_services(void **state)
{
	struct fnvm vm;
	(void)state;

	fnvm_start(&vm, "svc", NULL);
	int fd = fn_dial(&vm);
	struct fn_reply r1 = fn_call_seed(fd, "random 32", 9, 0, 100);
	struct fn_reply r2 = fn_call_seed(fd, "random 32", 9, 0, 200);
	assert_int_equal(r1.status, FN_OK);
	assert_int_equal(r2.status, FN_OK);
	assert_int_equal(r1.len, 32);
	assert_int_equal(r2.len, 32);
	assert_true(memcmp(r1.body, r2.body, 32) != 0);
	static const uint8_t zero[32];
	assert_true(memcmp(r1.body, zero, 32) != 0);
	free(r1.body);
	free(r2.body);

	struct fn_reply c = fn_call(fd, "clock", 0);
	assert_int_equal(c.status, FN_OK);
	unsigned long long t0, t1;
	assert_int_equal(sscanf((char *)c.body, "%llu %llu", &t0, &t1), 2);
	fprintf(stderr, "fn_clock_ns around a 1 ms sleep: %llu ns\n", t1 - t0);
	assert_true(t1 - t0 >= 900000 && t1 - t0 < 500000000);
	free(c.body);

	struct fn_reply l = fn_call(fd, "log hello from a function", 0);
	expect(&l, FN_OK, "logged");
	struct fn_reply s1 = fn_call(fd, "state", 0);
	struct fn_reply s2 = fn_call(fd, "state", 0);
	assert_int_equal(atoi((char *)s2.body), atoi((char *)s1.body) + 1);
	free(s1.body);
	free(s2.body);
	close(fd);
	struct run_result rr = fnvm_stop(&vm);
	assert_output_contains(&rr, out, "fn: hello from a function\n");
	harness_free(&rr);
}

/* A clone restored from the snapshot, serving on vm->uds: request body
 * with seed, the answer's bytes. */
static struct fn_reply clone_call(struct fnvm *vm, const char *state, const char *mem,
				  const char *body, unsigned seed, bool *ready_again)
{
	char *argv[] = { (char *)mote_bin, "--restore", (char *)state, "--mem", (char *)mem,
			 "--resume", "--no-api", NULL };
	struct harness_proc p;

	unlink(vm->uds);
	harness_spawn(&p, argv);
	int fd = -1;
	for (int i = 0; i < 100 && fd < 0; i++) {
		if (access(vm->uds, F_OK) == 0)
			fd = fn_try_dial(vm);
		if (fd < 0)
			usleep(20000);
	}
	assert_true(fd >= 0);
	struct fn_reply r = fn_call_seed(fd, body, (uint32_t)strlen(body), 0, seed);
	close(fd);
	/* A restored clone does not signal ready again. */
	struct pollfd q = { vm->ready_lfd, POLLIN, 0 };
	*ready_again = poll(&q, 1, 100) == 1;
	kill(p.pid, SIGTERM);
	struct run_result rr = harness_proc_finish(&p, 20);
	if (!strstr(rr.out, "vsock: reset")) {
		harness_dump(&rr);
		fail_msg("the clone did not see the transport reset");
	}
	harness_free(&rr);
	return r;
}

/* The launcher's path: boot, ready, pause, snapshot; every clone restored
 * from it drops the stale streams (transport reset), serves without a
 * second ready, starts from the snapshot's state, and its randomness
 * follows the request's seed: clones given different seeds differ, the
 * same seed gives the same bytes (so the host's fresh seed is what keeps
 * clones apart). */
static void test_snapshot_clones(void **state)
{
	struct fnvm vm;
	char st[160], mem[160];
	bool again;
	(void)state;

	fnvm_start_api(&vm, "svc", NULL, true);
	snprintf(st, sizeof(st), "%s.state", vm.uds);
	snprintf(mem, sizeof(mem), "%s.mem", vm.uds);
	struct run_result rr = harness_snapshot_and_kill(&vm.p, vm.api, st, mem);
	harness_free(&rr);

	struct fn_reply s1 = clone_call(&vm, st, mem, "state", 1, &again);
	assert_false(again);
	expect(&s1, FN_OK, NULL);
	struct fn_reply a1 = clone_call(&vm, st, mem, "random 32", 111, &again);
	struct fn_reply b = clone_call(&vm, st, mem, "random 32", 222, &again);
	struct fn_reply a2 = clone_call(&vm, st, mem, "random 32", 111, &again);
	assert_int_equal(a1.status, FN_OK);
	assert_int_equal(b.status, FN_OK);
	assert_int_equal(a2.status, FN_OK);
	assert_true(memcmp(a1.body, b.body, 32) != 0);
	assert_memory_equal(a1.body, a2.body, 32);
	free(a1.body);
	free(b.body);
	free(a2.body);
	struct fn_reply s2 = clone_call(&vm, st, mem, "state", 1, &again);
	assert_string_equal((char *)s2.body, "1"); /* each clone starts from the snapshot */
	free(s2.body);
	close(vm.ready_lfd);
	unlink(vm.ready_path);
	unlink(vm.uds);
	unlink(vm.api);
	unlink(st);
	unlink(mem);
}

/* The duty-cycle burner: the right number of iterations, and about the
 * time they should take (work + sleep per iteration). */
static void test_burn(void **state)
{
	struct fnvm vm;
	(void)state;

	fnvm_start(&vm, "burn", NULL);
	int fd = fn_dial(&vm);
	struct fn_reply r = fn_call(fd, "2000 3000 20", 5000);
	assert_int_equal(r.status, FN_OK);
	fprintf(stderr, "burn: %s", (char *)r.body);
	unsigned long long it, w, s, e;
	assert_int_equal(sscanf((char *)r.body, "iterations=%llu work_us=%llu sleep_us=%llu "
				"elapsed_us=%llu", &it, &w, &s, &e), 4);
	assert_int_equal(it, 20);
	assert_true(e >= 20 * 5000 * 9 / 10 && e < 20 * 5000 * 4);
	free(r.body);
	r = fn_call(fd, "nonsense", 0);
	expect(&r, FN_HANDLER_ERROR, "usage");
	close(fd);
	struct run_result rr = fnvm_stop(&vm);
	harness_free(&rr);
}

/* 64 streams at once (the most a function VM takes), each with requests
 * of its own size, all sent before any answer is read: every one is
 * answered with its own bytes. */
static void test_many_streams(void **state)
{
	enum { N = 64, ROUNDS = 3 };
	struct fnvm vm;
	int fd[N];
	uint8_t body[N][2048];
	(void)state;

	fnvm_start(&vm, "echo", NULL);
	for (int i = 0; i < N; i++)
		fd[i] = fn_dial(&vm);
	double t0 = harness_now_ms();
	for (int round = 0; round < ROUNDS; round++) {
		for (int i = 0; i < N; i++) {
			uint32_t len = 100 + (uint32_t)i * 29 + (uint32_t)round;
			struct fn_request_hdr h = { .magic = FN_REQ_MAGIC, .body_len = len };
			fill_random(body[i], len, (uint64_t)(i * 1000 + round + 1));
			seed_fill(h.seed, (unsigned)i);
			assert_true(harness_write_full(fd[i], &h, sizeof(h)));
			assert_true(harness_write_full(fd[i], body[i], len));
		}
		for (int i = 0; i < N; i++) {
			uint32_t len = 100 + (uint32_t)i * 29 + (uint32_t)round;
			struct fn_response_hdr rh;
			uint8_t back[2048];
			if (!harness_read_full(fd[i], &rh, sizeof(rh), 60000))
				fail_msg("stream %d round %d: no answer", i, round);
			assert_int_equal(rh.status, FN_OK);
			assert_int_equal(rh.body_len, len);
			assert_true(harness_read_full(fd[i], back, len, 60000));
			assert_memory_equal(back, body[i], len);
		}
	}
	fprintf(stderr, "%d requests over %d streams: %.1f ms\n", N * ROUNDS, N,
		harness_now_ms() - t0);
	for (int i = 0; i < N; i++)
		close(fd[i]);
	/* Once the closes have gone through (the guest's slots come back
	 * with the monitor's RST), new streams are taken again. */
	int again = -1;
	for (int i = 0; i < 50 && again < 0; i++) {
		usleep(100000);
		again = fn_try_dial(&vm);
	}
	assert_true(again >= 0);
	struct fn_reply r = fn_call(again, "after", 0);
	expect(&r, FN_OK, "after");
	close(again);
	struct run_result rr = fnvm_stop(&vm);
	if (strstr(rr.out, "resetting"))
		fail_msg("the runtime reset a stream: %s", rr.out);
	harness_free(&rr);
}

/* The same image boots under QEMU -M microvm to its ready line (QEMU has
 * no vhost-vsock on the development hosts, so it cannot serve there). */
static void test_boots_under_qemu(void **state)
{
	char image[256];
	(void)state;

	if (system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0)
		skip();
	snprintf(image, sizeof(image), "%s/sha256.elf", fn_dir);
	char *argv[] = { "/usr/bin/env", "qemu-system-x86_64", "-M", "microvm", "-accel", "kvm",
			 "-cpu", "host,-arch-capabilities", "-nodefaults", "-no-user-config",
			 "-nographic", "-serial", "stdio", "-m", "32", "-smp", "1", "-kernel",
			 image, NULL };
	struct run_result r = harness_run(argv, 60, FN_READY_LINE);
	if (r.marker_ms < 0) {
		harness_dump(&r);
		fail_msg("no ready line under QEMU");
	}
	fprintf(stderr, "QEMU microvm: ready after %.1f ms\n", r.marker_ms);
	assert_output_contains(&r, out, "mote-fn: tsc ");
	harness_free(&r);
}

int main(void)
{
	mote_bin = harness_env("MOTE_BIN");
	fn_dir = harness_env("MOTE_FN_DIR");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_echo),
		cmocka_unit_test(test_sha256),
		cmocka_unit_test(test_wordcount),
		cmocka_unit_test(test_fault_then_next_works),
		cmocka_unit_test(test_loop_timeout),
		cmocka_unit_test(test_accepts_while_busy),
		cmocka_unit_test(test_big_response),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_two_streams),
		cmocka_unit_test(test_services),
		cmocka_unit_test(test_snapshot_clones),
		cmocka_unit_test(test_burn),
		cmocka_unit_test(test_many_streams),
		cmocka_unit_test(test_boots_under_qemu),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
