/* The launcher's pure parts: routes, registration documents, admission
 * arithmetic, the instance state machine, the reader of a VM's answers,
 * the timer heap, and the HTTP server driven over a real unix socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launcher/admit.h"
#include "launcher/cpudemand.h"
#include "launcher/evloop.h"
#include "launcher/fnwire.h"
#include "launcher/hclient.h"
#include "launcher/http.h"
#include "launcher/inst_state.h"
#include "launcher/proc.h"
#include "launcher/spawner.h"
#include "launcher/spec.h"

/* ---- routes ---------------------------------------------------------------------- */

static void test_routes(void **state)
{
	char name[FN_NAME_MAX + 1];

	(void)state;
	assert_int_equal(fnd_route("GET", "/functions", name), ROUTE_LIST);
	assert_int_equal(fnd_route("GET", "/functions/", name), ROUTE_LIST);
	assert_int_equal(fnd_route("POST", "/functions", name), ROUTE_BAD_METHOD);
	assert_int_equal(fnd_route("PUT", "/functions/echo", name), ROUTE_PUT);
	assert_string_equal(name, "echo");
	assert_int_equal(fnd_route("GET", "/functions/echo", name), ROUTE_GET);
	assert_int_equal(fnd_route("DELETE", "/functions/echo", name), ROUTE_DELETE);
	assert_int_equal(fnd_route("PATCH", "/functions/echo", name), ROUTE_BAD_METHOD);
	assert_int_equal(fnd_route("POST", "/functions/my-fn-2/invoke", name), ROUTE_INVOKE);
	assert_string_equal(name, "my-fn-2");
	assert_int_equal(fnd_route("GET", "/functions/echo/invoke", name), ROUTE_BAD_METHOD);
	assert_int_equal(fnd_route("POST", "/functions/echo/scale", name), ROUTE_SCALE);
	assert_int_equal(fnd_route("POST", "/functions/echo/check", name), ROUTE_CHECK);
	assert_int_equal(fnd_route("POST", "/functions/echo/other", name), ROUTE_NOT_FOUND);
	assert_int_equal(fnd_route("POST", "/functions/echo/invoke/x", name), ROUTE_NOT_FOUND);
	assert_int_equal(fnd_route("GET", "/metrics", name), ROUTE_METRICS);
	assert_int_equal(fnd_route("PUT", "/metrics", name), ROUTE_BAD_METHOD);
	assert_int_equal(fnd_route("GET", "/", name), ROUTE_NOT_FOUND);
	assert_int_equal(fnd_route("GET", "/functionsx", name), ROUTE_NOT_FOUND);
	/* names that cannot be jail ids */
	assert_int_equal(fnd_route("PUT", "/functions/a.b", name), ROUTE_BAD_NAME);
	assert_int_equal(fnd_route("PUT", "/functions/-x", name), ROUTE_BAD_NAME);
	assert_int_equal(fnd_route("PUT", "/functions/..", name), ROUTE_BAD_NAME);
	assert_int_equal(fnd_route("PUT", "/functions//invoke", name), ROUTE_BAD_NAME);
	assert_int_equal(fnd_route("PUT", "/functions/a%20b", name), ROUTE_BAD_NAME);
	assert_int_equal(fnd_route("PUT", "/functions/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", name),
			 ROUTE_BAD_NAME); /* 33 */
	assert_int_equal(fnd_route("PUT", "/functions/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", name),
			 ROUTE_PUT); /* 32 */
}

/* ---- registration documents ------------------------------------------------------ */

static void expect_spec_error(const char *body, const char *needle)
{
	struct fn_spec s;
	char err[256] = "";

	if (fn_spec_parse("f", body, strlen(body), &s, err, sizeof(err)) != -1 ||
	    !strstr(err, needle))
		fail_msg("'%s': got '%s', want an error with '%s'", body, err, needle);
}

static void test_spec(void **state)
{
	struct fn_spec s;
	char err[256];
	const char *full = "{\"image\": \"/fns/echo.elf\", \"mem_mib\": 32, \"vcpus\": 2, "
			   "\"concurrency\": 4, \"idle_ttl_s\": 0, \"max_instances\": 5000, "
			   "\"timeout_ms\": 250}";

	(void)state;
	assert_int_equal(fn_spec_parse("echo", full, strlen(full), &s, err, sizeof(err)), 0);
	assert_string_equal(s.name, "echo");
	assert_string_equal(s.image, "/fns/echo.elf");
	assert_int_equal(s.mem_mib, 32);
	assert_int_equal(s.vcpus, 2);
	assert_int_equal(s.concurrency, 4);
	assert_int_equal(s.idle_ttl_s, 0);
	assert_int_equal(s.max_instances, 5000);
	assert_int_equal(s.timeout_ms, 250);
	assert_true(s.snapshot);
	const char *nosnap = "{\"image\": \"/x\", \"snapshot\": false}";
	assert_int_equal(fn_spec_parse("x", nosnap, strlen(nosnap), &s, err, sizeof(err)), 0);
	assert_false(s.snapshot);
	expect_spec_error("{\"image\": \"/x\", \"snapshot\": 1}", "snapshot must be true or false");

	const char *min = "{\"image\": \"/x\"}";
	assert_int_equal(fn_spec_parse("x", min, strlen(min), &s, err, sizeof(err)), 0);
	assert_int_equal(s.mem_mib, FN_DEFAULT_MEM_MIB);
	assert_int_equal(s.vcpus, 1);
	assert_int_equal(s.concurrency, 1);
	assert_int_equal(s.idle_ttl_s, FN_DEFAULT_TTL_S);
	assert_int_equal(s.max_instances, FN_DEFAULT_MAX_INSTANCES);
	assert_int_equal(s.timeout_ms, FN_DEFAULT_TIMEOUT_MS);
	assert_int_equal(s.standby, 0);
	const char *sb = "{\"image\": \"/x\", \"standby\": 2, \"max_instances\": 3}";
	assert_int_equal(fn_spec_parse("x", sb, strlen(sb), &s, err, sizeof(err)), 0);
	assert_int_equal(s.standby, 2);
	expect_spec_error("{\"image\": \"/x\", \"standby\": 17}", "standby must be between 0 and 16");
	expect_spec_error("{\"image\": \"/x\", \"standby\": 1, \"snapshot\": false}",
			  "needs \"snapshot\": true");
	expect_spec_error("{\"image\": \"/x\", \"standby\": 2, \"max_instances\": 2}",
			  "no room under max_instances=2");
	expect_spec_error("{\"image\": \"/x\", \"standby\": 1, \"max_instances\": 3, "
			  "\"idle_ttl_s\": 0}",
			  "needs \"idle_ttl_s\" above 0");

	expect_spec_error("", "body is required");
	expect_spec_error("{", "bad JSON");
	expect_spec_error("{\"image\": \"/x\", \"image\": \"/y\"}", "bad JSON"); /* duplicate */
	expect_spec_error("[]", "JSON object");
	expect_spec_error("{}", "image is required");
	expect_spec_error("{\"image\": 5}", "image is required");
	expect_spec_error("{\"image\": \"rel/x\"}", "absolute path");
	expect_spec_error("{\"image\": \"/x\", \"memory\": 5}", "unknown field 'memory'");
	expect_spec_error("{\"image\": \"/x\", \"mem_mib\": \"16\"}", "mem_mib must be an integer");
	expect_spec_error("{\"image\": \"/x\", \"mem_mib\": 1}", "mem_mib must be between 2");
	expect_spec_error("{\"image\": \"/x\", \"vcpus\": 3}", "vcpus must be between 1 and 2");
	expect_spec_error("{\"image\": \"/x\", \"vcpus\": 0}", "vcpus");
	expect_spec_error("{\"image\": \"/x\", \"concurrency\": 0}", "concurrency");
	expect_spec_error("{\"image\": \"/x\", \"max_instances\": -1}", "max_instances");
	expect_spec_error("{\"image\": \"/x\", \"timeout_ms\": 0}", "timeout_ms");
	expect_spec_error("{\"image\": \"/x\", \"idle_ttl_s\": 1e3}", "idle_ttl_s must be an integer");
	assert_int_equal(fn_spec_parse("bad/name", min, strlen(min), &s, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "function name"));
	assert_true(fn_name_valid("a"));
	assert_true(fn_name_valid("Echo-2"));
	assert_false(fn_name_valid(""));
	assert_false(fn_name_valid("a_b"));
}

/* ---- admission ------------------------------------------------------------------- */

static const struct admit_limits lim = {
	.max_instances = 100, .max_mem_mib = 4096, .min_free_mib = 512, .max_fds = 1000,
	.max_queue = 10,
};

static struct admit_host host_ok(void)
{
	return (struct admit_host){ .instances = 10, .mem_mib = 160, .free_mib = 20000, .fds = 50 };
}

static struct admit_fn fn_idle(void)
{
	return (struct admit_fn){ .concurrency = 1, .max_instances = 50, .mem_mib = 16 };
}

static void test_admit(void **state)
{
	char why[256];
	struct admit_host h = host_ok();
	struct admit_fn f = fn_idle();

	(void)state;
	/* nothing running: start one */
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_START);
	/* a free slot: run there */
	f.instances = 1;
	f.free_slots = 1;
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_RUN);
	/* the free slot is promised to one already waiting: start another */
	f.queued = 1;
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_START);
	/* a starting instance with concurrency 4 has 3 spare slots for waiters */
	f = fn_idle();
	f.concurrency = 4;
	f.instances = f.starting = 1;
	f.queued = 2;
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_QUEUE);
	f.queued = 3;
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_START);
	/* at max_instances: wait while the queue has room, then 429 */
	f = fn_idle();
	f.instances = 50;
	f.queued = 9;
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_QUEUE);
	f.queued = 10;
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_FN_FULL);
	assert_non_null(strstr(why, "max_instances=50"));

	/* host caps: each limit named; a function with instances waits instead */
	f = fn_idle();
	h = host_ok();
	h.instances = 100;
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_HOST_FULL);
	assert_non_null(strstr(why, "100 of 100 instances"));
	f.instances = 3;
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_QUEUE);
	f.queued = 10;
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_HOST_FULL);
	f = fn_idle();
	h = host_ok();
	h.mem_mib = 4090;
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_HOST_FULL);
	assert_non_null(strstr(why, "--max-mem-mib 4096"));
	h.mem_mib = 4080; /* exactly fits */
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_START);
	h = host_ok();
	h.free_mib = 511;
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_HOST_FULL);
	assert_non_null(strstr(why, "511 MiB available"));
	h = host_ok();
	h.fds = 1000 - ADMIT_FDS_PER_START + 1;
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_HOST_FULL);
	assert_non_null(strstr(why, "file descriptors"));
	h.fds = 1000 - ADMIT_FDS_PER_START;
	assert_int_equal(admit_decide(&lim, &h, &f, why, sizeof(why)), ADMIT_START);
	/* no memory cap configured */
	struct admit_limits nocap = lim;
	nocap.max_mem_mib = 0;
	h = host_ok();
	h.mem_mib = 1u << 30;
	assert_int_equal(admit_host_room(&nocap, &h, 16, 0, why, sizeof(why)), 0);
	assert_string_equal(why, "");

	/* CPU demand: 2 CPUs x overcommit 2 = 4 CPUs of demand */
	struct admit_limits cpu = lim;
	cpu.cpu_capacity = 2;
	cpu.cpu_overcommit = 2;
	h = host_ok();
	f = fn_idle();
	h.cpu_demand = 3.5;
	f.cpu_profile = 0.5; /* exactly fits */
	assert_int_equal(admit_decide(&cpu, &h, &f, why, sizeof(why)), ADMIT_START);
	f.cpu_profile = 0.6;
	assert_int_equal(admit_decide(&cpu, &h, &f, why, sizeof(why)), ADMIT_HOST_FULL);
	assert_non_null(strstr(why, "demand 3.50 CPUs"));
	assert_non_null(strstr(why, "limit of 4.00"));
	/* ...and its own instances will free up: it waits */
	f.instances = 2;
	assert_int_equal(admit_decide(&cpu, &h, &f, why, sizeof(why)), ADMIT_QUEUE);
	/* a host already over its limit refuses even a function never sampled */
	f = fn_idle();
	h.cpu_demand = 4.2;
	assert_int_equal(admit_decide(&cpu, &h, &f, why, sizeof(why)), ADMIT_HOST_FULL);
	/* overcommit 0: not checked */
	cpu.cpu_overcommit = 0;
	h.cpu_demand = 1000;
	assert_int_equal(admit_decide(&cpu, &h, &f, why, sizeof(why)), ADMIT_START);
}

/* The launcher's demand figures: schedstat parsed, and issue 9's estimator
 * fed with it. */
static void test_cpu_demand(void **state)
{
	const uint64_t ms = 1000000;
	struct cpu_demand d = { .nr_tids = 1 };
	struct demand_counters c = { 0 };
	uint64_t run, ready;

	(void)state;
	assert_int_equal(schedstat_parse("123456 789 42\n", &run, &ready), 0);
	assert_int_equal(run, 123456);
	assert_int_equal(ready, 789);
	assert_int_equal(schedstat_parse("1 2", &run, &ready), 0);
	assert_int_equal(schedstat_parse("x 2 3", &run, &ready), -EINVAL);
	assert_int_equal(schedstat_parse("12", &run, &ready), -EINVAL);
	assert_int_equal(schedstat_parse("", &run, &ready), -EINVAL);
	assert_int_equal(schedstat_parse("1 2x 3", &run, &ready), -EINVAL);

	/* The paper's VM: over 100 ms it ran 20 and waited 75 for a CPU:
	 * usage 20 %, demand 20 / (100 - 75) = 80 %. */
	c.t_ns = 1000 * ms;
	assert_int_equal(cpu_demand_feed(&d, &c, 0.5), -EAGAIN); /* baseline */
	assert_false(d.primed);
	c.t_ns += 100 * ms;
	c.run_ns += 20 * ms;
	c.ready_ns += 75 * ms;
	assert_int_equal(cpu_demand_feed(&d, &c, 0.5), 0);
	assert_true(d.primed);
	assert_true(d.cpus > 0.79 && d.cpus < 0.81);
	/* then 100 ms halted: demand 0, the EWMA halves */
	c.t_ns += 100 * ms;
	assert_int_equal(cpu_demand_feed(&d, &c, 0.5), 0);
	assert_true(d.cpus > 0.39 && d.cpus < 0.41);
	/* no time passed: nothing added, baseline kept */
	assert_int_equal(cpu_demand_feed(&d, &c, 0.5), -EAGAIN);
	assert_true(d.cpus > 0.39 && d.cpus < 0.41);
	/* a counter that went backwards (a new thread): baseline again */
	c.t_ns += 100 * ms;
	c.run_ns = 0;
	assert_int_equal(cpu_demand_feed(&d, &c, 0.5), -ERANGE);
	assert_true(d.cpus > 0.39 && d.cpus < 0.41);
	/* two vCPUs, both busy all along: 2 CPUs */
	struct cpu_demand two = { .nr_tids = 2 };
	struct demand_counters cc[2] = { { .t_ns = ms }, { .t_ns = ms } };
	assert_int_equal(cpu_demand_feed(&two, cc, 0.5), -EAGAIN);
	for (int i = 0; i < 2; i++) {
		cc[i].t_ns += 50 * ms;
		cc[i].run_ns += 50 * ms;
	}
	assert_int_equal(cpu_demand_feed(&two, cc, 0.5), 0);
	assert_true(two.cpus > 1.99 && two.cpus < 2.01);

	/* This process's own thread, read for real: a busy loop has demand
	 * ~1 (it never waits), whatever the host's load. */
	struct cpu_demand me = { 0 };
	struct demand_counters now[CPUD_MAX_VCPUS];
	me.nr_tids = 1;
	me.tid[0] = getpid();
	assert_int_equal(cpu_demand_read(&me, getpid(), now), 0);
	assert_int_equal(cpu_demand_feed(&me, now, 1.0), -EAGAIN);
	volatile uint64_t x = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		for (int i = 0; i < 100000; i++)
			x += (uint64_t)i;
		clock_gettime(CLOCK_MONOTONIC, &t1);
	} while ((t1.tv_sec - t0.tv_sec) * 1000000000ll + (t1.tv_nsec - t0.tv_nsec) < 50 * (long long)ms);
	assert_int_equal(cpu_demand_read(&me, getpid(), now), 0);
	assert_int_equal(cpu_demand_feed(&me, now, 1.0), 0);
	if (!(me.cpus > 0.8))
		fail_msg("a busy loop's demand is %.2f, expected ~1", me.cpus);
	/* no vCPU threads in a process that is not a monitor */
	assert_int_equal(cpu_demand_find_vcpus(&me, getpid()), -ENOENT);
	assert_true(me.no_tids);
}

/* ---- instance states ------------------------------------------------------------- */

static void test_inst_states(void **state)
{
	(void)state;
	/* cold boot to ready, busy, idle, TTL, reaped */
	assert_int_equal(inst_next_state(INST_BOOTING, IEV_READY, 0), INST_READY);
	assert_int_equal(inst_next_state(INST_READY, IEV_INVOKE_BEGIN, 1), INST_READY);
	assert_int_equal(inst_next_state(INST_READY, IEV_IDLE_TTL, 1), INST_READY); /* busy: stays */
	assert_int_equal(inst_next_state(INST_READY, IEV_INVOKE_END, 0), INST_READY);
	assert_int_equal(inst_next_state(INST_READY, IEV_IDLE_TTL, 0), INST_STOPPING);
	assert_int_equal(inst_next_state(INST_STOPPING, IEV_EXITED, 0), INST_DEAD);
	/* restore: the first caller rides along until the stream is accepted */
	assert_int_equal(inst_next_state(INST_RESTORING, IEV_INVOKE_BEGIN, 1), INST_RESTORING);
	assert_int_equal(inst_next_state(INST_RESTORING, IEV_CONNECTED, 1), INST_READY);
	assert_int_equal(inst_next_state(INST_RESTORING, IEV_START_TIMEOUT, 1), INST_STOPPING);
	assert_int_equal(inst_next_state(INST_BOOTING, IEV_START_TIMEOUT, 0), INST_STOPPING);
	assert_int_equal(inst_next_state(INST_RESTORING, IEV_EXITED, 1), INST_DEAD);
	/* a VM that failed an invocation is not used again */
	assert_int_equal(inst_next_state(INST_READY, IEV_BROKEN, 0), INST_STOPPING);
	/* stop while busy: drain, then stop with the last one */
	assert_int_equal(inst_next_state(INST_READY, IEV_STOP, 2), INST_DRAINING);
	assert_int_equal(inst_next_state(INST_DRAINING, IEV_INVOKE_END, 1), INST_DRAINING);
	assert_int_equal(inst_next_state(INST_DRAINING, IEV_INVOKE_END, 0), INST_STOPPING);
	assert_int_equal(inst_next_state(INST_READY, IEV_STOP, 0), INST_STOPPING);
	/* what cannot happen is refused, not guessed */
	/* A standby clone: taken by a start, or stopped unused; it takes
	 * no invocation and reports no stream before it is taken. */
	assert_int_equal(inst_next_state(INST_STANDBY, IEV_TAKEN, 0), INST_RESTORING);
	assert_int_equal(inst_next_state(INST_STANDBY, IEV_IDLE_TTL, 0), INST_STOPPING);
	assert_int_equal(inst_next_state(INST_STANDBY, IEV_STOP, 0), INST_STOPPING);
	assert_int_equal(inst_next_state(INST_STANDBY, IEV_EXITED, 0), INST_DEAD);
	assert_int_equal(inst_next_state(INST_STANDBY, IEV_INVOKE_BEGIN, 1), -1);
	assert_int_equal(inst_next_state(INST_STANDBY, IEV_CONNECTED, 0), -1);
	assert_int_equal(inst_next_state(INST_RESTORING, IEV_TAKEN, 0), -1);
	assert_int_equal(inst_next_state(INST_READY, IEV_TAKEN, 0), -1);
	assert_string_equal(inst_state_name(INST_STANDBY), "standby");
	assert_int_equal(inst_next_state(INST_READY, IEV_READY, 0), -1);
	assert_int_equal(inst_next_state(INST_BOOTING, IEV_INVOKE_END, 0), -1);
	assert_int_equal(inst_next_state(INST_DRAINING, IEV_INVOKE_BEGIN, 1), -1);
	assert_int_equal(inst_next_state(INST_DEAD, IEV_EXITED, 0), -1);
	assert_int_equal(inst_next_state(INST_STOPPING, IEV_CONNECTED, 0), -1);
	/* only READY takes work; everything but DEAD holds a process */
	for (int s = 0; s < INST_NR_STATES; s++) {
		assert_int_equal(inst_state_accepts((enum inst_state)s), s == INST_READY);
		assert_int_equal(inst_state_live((enum inst_state)s), s != INST_DEAD);
	}
	assert_string_equal(inst_state_name(INST_RESTORING), "restoring");
}

/* ---- the VM's answer ------------------------------------------------------------- */

static size_t make_answer(uint8_t *out, uint32_t status, const char *body, uint32_t claimed_len)
{
	struct fn_response_hdr h = { FN_RESP_MAGIC, status, claimed_len, 42 };
	size_t n = (size_t)sprintf((char *)out, "OK 1073741824\n");

	memcpy(out + n, &h, sizeof(h));
	n += sizeof(h);
	memcpy(out + n, body, strlen(body));
	return n + strlen(body);
}

static void test_reader(void **state)
{
	uint8_t buf[512];
	struct fn_reader r;

	(void)state;
	/* whole, then byte by byte */
	size_t n = make_answer(buf, FN_OK, "hello", 5);
	fn_reader_init(&r);
	assert_int_equal(fn_reader_feed(&r, buf, n), 0);
	assert_int_equal(r.st, FNR_DONE);
	assert_int_equal(r.hdr.handler_us, 42);
	assert_int_equal(r.body_len, 5);
	assert_string_equal(r.body, "hello");
	fn_reader_free(&r);
	fn_reader_init(&r);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(fn_reader_feed(&r, buf + i, 1), 0);
		if (i < 13)
			assert_int_equal(r.st, FNR_HANDSHAKE);
		else if (i < n - 1)
			assert_int_not_equal(r.st, FNR_DONE);
	}
	assert_int_equal(r.st, FNR_DONE);
	assert_string_equal(r.body, "hello");
	/* a byte more is a protocol error */
	assert_int_equal(fn_reader_feed(&r, "x", 1), -1);
	assert_non_null(strstr(r.error, "after its response"));
	fn_reader_free(&r);

	/* empty body */
	n = make_answer(buf, FN_FAULT, "", 0);
	fn_reader_init(&r);
	assert_int_equal(fn_reader_feed(&r, buf, n), 0);
	assert_int_equal(r.st, FNR_DONE);
	assert_int_equal(r.hdr.status, FN_FAULT);
	assert_string_equal(r.body, "");
	fn_reader_free(&r);

	/* the monitor's refusal is quoted */
	fn_reader_init(&r);
	const char *err = "ERR timed out waiting for 'CONNECT <port>\\n'\n";
	assert_int_equal(fn_reader_feed(&r, err, strlen(err)), -1);
	assert_non_null(strstr(r.error, "ERR timed out"));
	fn_reader_free(&r);
	/* a line that never ends */
	fn_reader_init(&r);
	memset(buf, 'A', 300);
	assert_int_equal(fn_reader_feed(&r, buf, 300), -1);
	assert_non_null(strstr(r.error, "too long"));
	fn_reader_free(&r);
	/* a hostile header: bad magic, or a length over the limit */
	n = make_answer(buf, FN_OK, "", 0);
	buf[14] ^= 1;
	fn_reader_init(&r);
	assert_int_equal(fn_reader_feed(&r, buf, n), -1);
	assert_non_null(strstr(r.error, "bad magic"));
	fn_reader_free(&r);
	n = make_answer(buf, FN_OK, "", FN_MAX_RESPONSE + 1);
	fn_reader_init(&r);
	assert_int_equal(fn_reader_feed(&r, buf, n), -1);
	assert_non_null(strstr(r.error, "longer than"));
	fn_reader_free(&r);

	/* the request prefix */
	char pre[64];
	uint8_t seed[16] = { 1, 2, 3 };
	size_t plen = fn_request_prefix(pre, sizeof(pre), 7, 250, seed);
	assert_int_equal(plen, strlen("CONNECT 5000\n") + sizeof(struct fn_request_hdr));
	assert_memory_equal(pre, "CONNECT 5000\n", 13);
	struct fn_request_hdr h;
	memcpy(&h, pre + 13, sizeof(h));
	assert_int_equal(h.magic, FN_REQ_MAGIC);
	assert_int_equal(h.body_len, 7);
	assert_int_equal(h.deadline_ms, 250);
	assert_memory_equal(h.seed, seed, 16);
	assert_int_equal(fn_request_prefix(pre, 20, 7, 250, seed), 0);

	assert_int_equal(fn_status_http(FN_OK), 200);
	assert_int_equal(fn_status_http(FN_TIMEOUT), 504);
	assert_int_equal(fn_status_http(FN_FAULT), 500);
	assert_int_equal(fn_status_http(99), 502);
	assert_string_equal(fn_status_name(FN_HANDLER_ERROR), "handler-error");
}

/* ---- timers ---------------------------------------------------------------------- */

static int fired[8], fire_order[8], nfired;

static void timer_cb(struct ev_timer *t)
{
	int i = (int)(intptr_t)t->opaque;
	fired[i]++;
	fire_order[nfired++] = i;
}

static void stop_cb(struct ev_timer *t)
{
	evloop_stop(t->opaque);
}

static void test_timers(void **state)
{
	struct evloop *l = evloop_new();
	struct ev_timer t[6], stop;
	const uint64_t ms = 1000000;

	(void)state;
	assert_non_null(l);
	memset(fired, 0, sizeof(fired));
	nfired = 0;
	for (int i = 0; i < 6; i++)
		ev_timer_init(&t[i], timer_cb, (void *)(intptr_t)i);
	ev_timer_arm(l, &t[0], 30 * ms);
	ev_timer_arm(l, &t[1], 10 * ms);
	ev_timer_arm(l, &t[2], 20 * ms);
	ev_timer_arm(l, &t[3], 5 * ms);
	ev_timer_arm(l, &t[4], 15 * ms);
	ev_timer_arm(l, &t[5], 25 * ms);
	ev_timer_cancel(l, &t[4]);        /* from the middle of the heap */
	assert_false(ev_timer_armed(&t[4]));
	ev_timer_arm(l, &t[3], 35 * ms);  /* re-armed later */
	ev_timer_init(&stop, stop_cb, l);
	ev_timer_arm(l, &stop, 60 * ms);
	assert_int_equal(evloop_run(l), 0);
	int want[] = { 1, 2, 5, 0, 3 };
	assert_int_equal(nfired, 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(fire_order[i], want[i]);
	assert_int_equal(fired[4], 0);
	evloop_free(l);
}

/* ---- the spawner ------------------------------------------------------------------- */

static void test_spawn_msg(void **state)
{
	char buf[512], *argv[8];
	char *args[] = { "/bin/mote", "--restore", "", "x y", NULL };
	const char *cwd, *log;
	uint64_t tag;
	int n;

	(void)state;
	n = spawn_msg_pack(buf, sizeof(buf), 42, args, "/run/x", "/var/log/a.log");
	assert_true(n > (int)sizeof(struct spawn_msg_hdr));
	assert_int_equal(spawn_msg_unpack(buf, (size_t)n, &tag, argv, 8, &cwd, &log), 0);
	assert_int_equal(tag, 42);
	assert_string_equal(cwd, "/run/x");
	assert_string_equal(log, "/var/log/a.log");
	for (int i = 0; i < 4; i++)
		assert_string_equal(argv[i], args[i]);
	assert_null(argv[4]);
	/* no cwd */
	n = spawn_msg_pack(buf, sizeof(buf), 7, args, NULL, "l");
	assert_int_equal(spawn_msg_unpack(buf, (size_t)n, &tag, argv, 8, &cwd, &log), 0);
	assert_null(cwd);
	assert_string_equal(log, "l");
	/* malformed: cut short, a length that lies, more args than room,
	 * a byte past the last string, an empty program */
	assert_int_equal(spawn_msg_unpack(buf, (size_t)n - 1, &tag, argv, 8, &cwd, &log), -EINVAL);
	assert_int_equal(spawn_msg_unpack(buf, 4, &tag, argv, 8, &cwd, &log), -EINVAL);
	assert_int_equal(spawn_msg_unpack(buf, (size_t)n, &tag, argv, 4, &cwd, &log), -EINVAL);
	struct spawn_msg_hdr h;
	memcpy(&h, buf, sizeof(h));
	h.len++;
	memcpy(buf, &h, sizeof(h));
	buf[n] = 'z';
	assert_int_equal(spawn_msg_unpack(buf, (size_t)n + 1, &tag, argv, 8, &cwd, &log), -EINVAL);
	h.len--;
	h.argc++; /* claims a string that is not there */
	memcpy(buf, &h, sizeof(h));
	assert_int_equal(spawn_msg_unpack(buf, (size_t)n, &tag, argv, 8, &cwd, &log), -EINVAL);
	char *empty[] = { "", NULL };
	n = spawn_msg_pack(buf, sizeof(buf), 1, empty, NULL, "l");
	assert_int_equal(spawn_msg_unpack(buf, (size_t)n, &tag, argv, 8, &cwd, &log), -EINVAL);
	/* an empty log path is refused on both sides */
	assert_int_equal(spawn_msg_pack(buf, sizeof(buf), 1, args, NULL, ""), -EINVAL);
	n = spawn_msg_pack(buf, sizeof(buf), 1, args, NULL, "l");
	buf[sizeof(struct spawn_msg_hdr) + 1] = '\0'; /* "l" -> "" */
	assert_int_equal(spawn_msg_unpack(buf, (size_t)n, &tag, argv, 8, &cwd, &log), -EINVAL);
	/* too big, and no program at all */
	assert_int_equal(spawn_msg_pack(buf, 20, 1, args, "/a/long/working/directory", "l"), -E2BIG);
	char *none[] = { NULL };
	assert_true(spawn_msg_pack(buf, sizeof(buf), 1, none, NULL, "l") < 0);
}

/* One reply, waiting for it at most 10 s. */
static void spawn_wait_reply(struct spawner *s, uint64_t *tag, pid_t *pid, int *err)
{
	struct pollfd p = { spawner_fd(s), POLLIN, 0 };

	assert_int_equal(poll(&p, 1, 10000), 1);
	assert_int_equal(spawner_reply(s, tag, pid, err), 1);
}

static void test_spawner(void **state)
{
	char dir[] = "/tmp/mote-spawner-test-XXXXXX", log_path[64], out[512], want[64];
	struct spawner *s;
	uint64_t tag;
	pid_t pid;
	int err, st;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(log_path, sizeof(log_path), "%s/a.log", dir);
	int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(nullfd >= 0);
	assert_int_equal(spawner_open(&s), 0);
	assert_int_equal(spawner_reply(s, &tag, &pid, &err), 0); /* nothing yet */

	/* The child is ours (CLONE_PARENT): its $PPID is this process, and
	 * waitpid here gets its status. Its stdout and stderr are the log
	 * (made by the spawner), its working directory the one asked for. */
	char *sh[] = { "/bin/sh", "-c", "echo out-$PPID; pwd; echo err >&2; exit 7", NULL };
	assert_int_equal(spawner_request(s, 11, sh, "/tmp", log_path, nullfd), 0);
	spawn_wait_reply(s, &tag, &pid, &err);
	assert_int_equal(tag, 11);
	assert_int_equal(err, 0);
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 7);
	int logfd = open(log_path, O_RDONLY | O_CLOEXEC);
	assert_true(logfd >= 0);
	ssize_t n = read(logfd, out, sizeof(out) - 1);
	close(logfd);
	assert_true(n > 0);
	out[n] = '\0';
	snprintf(want, sizeof(want), "out-%d\n/tmp\nerr\n", (int)getpid());
	assert_string_equal(out, want);

	/* An exec that fails: its errno, and a child that exits 127. */
	char *bad[] = { "/nonexistent/mote", NULL };
	assert_int_equal(spawner_request(s, 12, bad, NULL, log_path, nullfd), 0);
	spawn_wait_reply(s, &tag, &pid, &err);
	assert_int_equal(tag, 12);
	assert_int_equal(err, ENOENT);
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(WEXITSTATUS(st), 127);
	/* A working directory that is not there. */
	assert_int_equal(spawner_request(s, 13, sh, "/nonexistent-dir", log_path, nullfd), 0);
	spawn_wait_reply(s, &tag, &pid, &err);
	assert_int_equal(err, ENOENT);
	waitpid(pid, &st, 0);
	/* A log that cannot be made: nothing is started. */
	assert_int_equal(spawner_request(s, 14, sh, NULL, "/nonexistent-dir/x.log", nullfd), 0);
	spawn_wait_reply(s, &tag, &pid, &err);
	assert_int_equal(tag, 14);
	assert_int_equal(err, ENOENT);
	assert_int_equal(pid, 0);

	/* Several in flight: answered in order. */
	char *t[] = { "/bin/true", NULL };
	for (uint64_t i = 0; i < 8; i++)
		assert_int_equal(spawner_request(s, 100 + i, t, NULL, log_path, nullfd), 0);
	for (uint64_t i = 0; i < 8; i++) {
		spawn_wait_reply(s, &tag, &pid, &err);
		assert_int_equal(tag, 100 + i);
		assert_int_equal(err, 0);
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_int_equal(WEXITSTATUS(st), 0);
	}
	spawner_close(s);
	close(nullfd);
	unlink(log_path);
	rmdir(dir);
}

/* ---- the HTTP server over a unix socket ------------------------------------------ */

struct srv {
	struct evloop *loop;
	struct http_server *http;
	struct http_req *held;       /* answered later */
	int aborted;
};

static void handler(void *opaque, struct http_req *r)
{
	struct srv *s = opaque;

	if (!strcmp(r->path, "/later")) {
		s->held = r;
		return;
	}
	if (!strcmp(r->path, "/echo")) {
		http_respond(r, 200, "application/octet-stream", "X-Mote-Test: yes\r\n", r->body,
			     r->body_len);
		return;
	}
	http_respond_error(r, 404, "no %s", r->path);
}

static void on_abort(struct http_req *r)
{
	struct srv *s = r->data;
	s->aborted++;
}

static void spin(struct srv *s, int ms)
{
	struct ev_timer t;
	ev_timer_init(&t, stop_cb, s->loop);
	ev_timer_arm(s->loop, &t, (uint64_t)ms * 1000000);
	evloop_run(s->loop);
	ev_timer_cancel(s->loop, &t);
}

static int raw_exchange(const char *path, const char *req, size_t len, char *out, size_t cap,
			struct srv *s)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	strcpy(a.sun_path, path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
	spin(s, 50);
	ssize_t n = recv(fd, out, cap - 1, MSG_DONTWAIT);
	out[n > 0 ? n : 0] = '\0';
	return fd;
}

static void test_http_server(void **state)
{
	struct srv s = { 0 };
	char path[64], err[128], out[4096];

	(void)state;
	snprintf(path, sizeof(path), "/tmp/launcher-unit-%d.sock", (int)getpid());
	s.loop = evloop_new();
	struct http_server_config cfg = { path, 1024, 8, handler, &s };
	assert_int_equal(http_server_open(&s.http, s.loop, &cfg, err, sizeof(err)), 0);
	/* a second server on a live socket is refused; nothing is left of its try */
	struct http_server *other;
	assert_int_equal(http_server_open(&other, s.loop, &cfg, err, sizeof(err)), -EADDRINUSE);
	assert_non_null(strstr(err, "another server"));

	/* two pipelined requests on one connection, answered in order */
	const char *two = "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
			  "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nde";
	int fd = raw_exchange(path, two, strlen(two), out, sizeof(out), &s);
	char *first = strstr(out, "\r\n\r\nabc");
	char *second = strstr(out, "\r\n\r\nde");
	assert_non_null(first);
	assert_non_null(second);
	assert_true(first < second);
	assert_non_null(strstr(out, "X-Mote-Test: yes"));
	close(fd);

	/* over the body limit: 413 and closed */
	const char *big = "POST /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n";
	fd = raw_exchange(path, big, strlen(big), out, sizeof(out), &s);
	assert_non_null(strstr(out, "HTTP/1.1 413"));
	assert_non_null(strstr(out, "limit of 1024 bytes"));
	close(fd);

	/* garbage: 400 */
	const char *junk = "HELLO\r\n\r\n";
	fd = raw_exchange(path, junk, strlen(junk), out, sizeof(out), &s);
	assert_non_null(strstr(out, "HTTP/1.1 400"));
	close(fd);

	/* an answer that comes later, and a client that leaves first */
	const char *later = "GET /later HTTP/1.1\r\n\r\n";
	fd = raw_exchange(path, later, strlen(later), out, sizeof(out), &s);
	assert_string_equal(out, "");
	assert_non_null(s.held);
	s.held->data = &s;
	s.held->on_abort = on_abort;
	http_respond(s.held, 200, NULL, NULL, "{}", 2);
	s.held = NULL;
	spin(&s, 20);
	ssize_t n = recv(fd, out, sizeof(out) - 1, MSG_DONTWAIT);
	assert_true(n > 0);
	out[n] = '\0';
	assert_non_null(strstr(out, "HTTP/1.1 200"));
	assert_int_equal(send(fd, later, strlen(later), MSG_NOSIGNAL), (ssize_t)strlen(later));
	spin(&s, 20);
	assert_non_null(s.held);
	s.held->data = &s;
	s.held->on_abort = on_abort;
	close(fd);
	spin(&s, 20);
	assert_int_equal(s.aborted, 1);
	assert_null(s.held->conn);
	http_respond(s.held, 200, NULL, NULL, "{}", 2); /* into the void, freed */

	/* a client that half-closes after its request (shutdown(SHUT_WR)) is
	 * still answered, then the connection ends */
	s.aborted = 0;
	fd = raw_exchange(path, later, strlen(later), out, sizeof(out), &s);
	assert_non_null(s.held);
	s.held->data = &s;
	s.held->on_abort = on_abort;
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	spin(&s, 20);
	assert_int_equal(s.aborted, 0);
	assert_non_null(s.held->conn);
	http_respond(s.held, 200, NULL, NULL, "{\"late\":1}", 10);
	s.held = NULL;
	spin(&s, 20);
	n = recv(fd, out, sizeof(out) - 1, MSG_DONTWAIT);
	assert_true(n > 0);
	out[n] = '\0';
	assert_non_null(strstr(out, "{\"late\":1}"));
	assert_int_equal(recv(fd, out, sizeof(out), MSG_DONTWAIT), 0); /* closed after it */
	close(fd);
	spin(&s, 10);

	/* the blocking client against it: in a child, the server here */
	pid_t pid = fork();
	if (pid == 0) {
		struct hclient_resp r;
		char e[256];
		int ok = hclient_request(path, "POST", "/echo", "xyz", 3, 2000, &r, e, sizeof(e)) == 0 &&
			 r.status == 200 && r.body_len == 3 && !memcmp(r.body, "xyz", 3) &&
			 strstr(r.headers, "X-Mote-Test: yes");
		_exit(ok ? 0 : 1);
	}
	spin(&s, 300);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(http_server_nr_conns(s.http), 0);

	http_server_close(s.http);
	evloop_free(s.loop);
	assert_int_equal(access(path, F_OK), -1);
}

/* proc_copy_fd: every byte across several reads; a write that fails is
 * its errno (a pipe whose reader is gone: EPIPE). */
static void test_copy_fd(void **state)
{
	(void)state;
	char src[] = "/tmp/mote-copy-src-XXXXXX", dst[] = "/tmp/mote-copy-dst-XXXXXX";
	int in = mkstemp(src), out = mkstemp(dst);
	size_t len = 200 * 1024 + 17;
	uint8_t *data = malloc(len), *back = malloc(len + 1);

	assert_true(in >= 0 && out >= 0 && data && back);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 131 + i / 4096);
	assert_int_equal(write(in, data, len), (ssize_t)len);
	assert_int_equal(lseek(in, 0, SEEK_SET), 0);
	assert_int_equal(proc_copy_fd(in, out), 0);
	assert_int_equal(pread(out, back, len + 1, 0), (ssize_t)len);
	assert_memory_equal(back, data, len);

	int p[2];
	assert_int_equal(pipe(p), 0);
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(lseek(in, 0, SEEK_SET), 0);
	assert_int_equal(proc_copy_fd(in, p[1]), -EPIPE);
	close(p[1]);
	close(in);
	close(out);
	unlink(src);
	unlink(dst);
	free(data);
	free(back);
}

/* proc_sched_all: a process put under SCHED_IDLE can always be put back
 * (a standby clone must not serve at idle priority). Without CAP_SYS_NICE
 * (a launcher not run as root) leaving SCHED_IDLE is refused even for
 * one's own process, so going into it must be refused too. */
static pid_t sleeper(void)
{
	pid_t t = fork();

	if (t == 0)
		for (;;)
			pause();
	return t;
}

static void test_sched_idle_undoable(void **state)
{
	int status;

	(void)state;
	pid_t w = fork();
	assert_true(w >= 0);
	if (w == 0) {
		if (geteuid() == 0 && (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)))
			_exit(2);
		pid_t t = sleeper();
		int idle = proc_sched_all(t, SCHED_IDLE);
		int back = proc_sched_all(t, SCHED_OTHER);
		int pol = sched_getscheduler(t);
		kill(t, SIGKILL);
		waitpid(t, NULL, 0);
		_exit(pol == SCHED_OTHER && back == 0 && (idle == 0 || idle == -EPERM) ? 0 : 1);
	}
	assert_int_equal(waitpid(w, &status, 0), w);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	if (geteuid() != 0)
		return;
	/* With the capability: both ways. */
	pid_t t = sleeper();
	assert_int_equal(proc_sched_all(t, SCHED_IDLE), 0);
	assert_int_equal(sched_getscheduler(t), SCHED_IDLE);
	assert_int_equal(proc_sched_all(t, SCHED_OTHER), 0);
	assert_int_equal(sched_getscheduler(t), SCHED_OTHER);
	kill(t, SIGKILL);
	waitpid(t, NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes),       cmocka_unit_test(test_spec),
		cmocka_unit_test(test_admit),        cmocka_unit_test(test_inst_states),
		cmocka_unit_test(test_reader),       cmocka_unit_test(test_timers),
		cmocka_unit_test(test_http_server),  cmocka_unit_test(test_spawn_msg),
		cmocka_unit_test(test_spawner),      cmocka_unit_test(test_cpu_demand),
		cmocka_unit_test(test_copy_fd),      cmocka_unit_test(test_sched_idle_undoable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
