/* The HTTP API from outside, with a real client (curl --unix-socket) and
 * raw sockets: configure -> InstanceStart -> pause -> resume -> Ctrl+Alt+Del
 * on the test unikernel, GET /vm/config round-tripped through
 * --config-file, and bad input of every kind, after which the monitor must
 * still answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "tests/integration/harness_api.h"

static const char *mote_bin;
static const char *guest_elf;
static char sock_path[108];
static char tmp_dir[64];

#define MOTE(...) ((char *const[]){ (char *)mote_bin, __VA_ARGS__, NULL })

/* One request with curl. body: JSON text, "@file" for a file, or NULL. */
static struct harness_reply api(const char *method, const char *path, const char *body)
{
	return harness_api(sock_path, method, path, body);
}

static void expect_reply(struct harness_reply r, int code, const char *needle)
{
	harness_expect_reply(&r, code, needle);
}

/* A request that must answer 400 with needle in its fault_message. */
static void expect_fault(const char *method, const char *path, const char *body,
			 const char *needle)
{
	struct harness_reply r = api(method, path, body);

	if (r.status != 400 || !strstr(r.body, "{\"fault_message\":") || !strstr(r.body, needle))
		fail_msg("%s %s %s: got %d '%s', expected 400 with '%s'", method, path,
			 body ? body : "", r.status, r.body, needle);
}

static int connect_api(void)
{
	return harness_uds_connect(sock_path);
}

/* Starts mote with the API; returns once the socket accepts. */
static void start_mote(struct harness_proc *p, char *const argv[])
{
	harness_spawn_api(p, argv, sock_path);
}

static void stop_mote(struct harness_proc *p)
{
	kill(p->pid, SIGTERM);
	struct run_result r = harness_proc_finish(p, 10);
	assert_exit_status(&r, 128 + SIGTERM);
	/* A clean stop removes the socket. */
	assert_int_equal(access(sock_path, F_OK), -1);
	harness_free(&r);
}

static void put_boot_source(const char *args)
{
	char body[1024];

	snprintf(body, sizeof(body), "{\"kernel_image_path\":\"%s\",\"boot_args\":\"%s\"}",
		 guest_elf, args);
	expect_reply(api("PUT", "/boot-source", body), 204, NULL);
}

static char *make_file(const char *name, size_t size)
{
	static char paths[4][128];
	static int next;
	char *path = paths[next++ % 4];

	snprintf(path, 128, "%s/%s", tmp_dir, name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
	return path;
}

/* vCPU 0's exit count in the last line of the metrics file. */
static long last_vcpu_exits(const char *metrics)
{
	char buf[65536];
	FILE *f = fopen(metrics, "r");
	long exits = -1;

	assert_non_null(f);
	while (fgets(buf, sizeof(buf), f)) {
		const char *p = strstr(buf, "\"vcpus\":[{\"id\":0,\"exits\":");
		if (p)
			exits = atol(p + strlen("\"vcpus\":[{\"id\":0,\"exits\":"));
	}
	fclose(f);
	return exits;
}

static void test_full_flow(void **state)
{
	(void)state;
	struct harness_proc p;
	char body[1024], metrics[128];
	struct harness_reply r;

	snprintf(metrics, sizeof(metrics), "%s/metrics.json", tmp_dir);
	unlink(metrics);
	start_mote(&p, MOTE("--api-sock", sock_path, "--id", "flow-1", "--boot-timer"));
	r = api("GET", "/", NULL);
	expect_reply(r, 200, "\"state\":\"Not started\"");
	expect_reply(r, 200, "\"id\":\"flow-1\"");
	expect_reply(r, 200, "\"app_name\":\"mote\"");
	expect_reply(api("GET", "/version", NULL), 200, "\"firecracker_version\"");
	snprintf(body, sizeof(body), "{\"metrics_path\":\"%s\"}", metrics);
	expect_reply(api("PUT", "/metrics", body), 204, NULL);
	put_boot_source("test=wait-ctrl-alt-del");
	expect_reply(api("PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":64}"), 204,
		     NULL);
	expect_reply(api("PATCH", "/machine-config", "{\"mem_size_mib\":96}"), 204, NULL);
	expect_reply(api("GET", "/machine-config", NULL), 200, "\"mem_size_mib\":96");
	snprintf(body, sizeof(body),
		 "{\"drive_id\":\"rootfs\",\"path_on_host\":\"%s\",\"is_root_device\":true,"
		 "\"is_read_only\":false}",
		 make_file("rootfs.img", 1 << 20));
	expect_reply(api("PUT", "/drives/rootfs", body), 204, NULL);
	expect_reply(api("GET", "/vm/config", NULL), 200, "\"drive_id\":\"rootfs\"");

	expect_reply(api("PUT", "/actions", "{\"action_type\":\"InstanceStart\"}"), 204, NULL);
	if (!harness_proc_wait_for(&p, "guest: waiting for ctrl-alt-del", false, 30))
		fail_msg("the guest never started: %s / %s", p.out, p.err);
	expect_reply(api("GET", "/", NULL), 200, "\"state\":\"Running\"");
	/* Pre-boot resources are closed now. */
	expect_fault("PUT", "/machine-config", "{\"vcpu_count\":2,\"mem_size_mib\":64}",
		     "machine-config: the microVM is already started");
	expect_fault("PUT", "/actions", "{\"action_type\":\"InstanceStart\"}", "already started");
	expect_fault("PATCH", "/drives/rootfs", "{\"drive_id\":\"rootfs\",\"path_on_host\":\"/x\"}",
		     "path_on_host of a running microVM is not supported yet");
	expect_reply(api("PATCH", "/drives/rootfs", "{\"drive_id\":\"rootfs\"}"), 204, NULL);

	/* Paused: the guest polls the i8042 (one VM exit per poll), so a
	 * vCPU that is really held makes no exits while paused. */
	expect_reply(api("PATCH", "/vm", "{\"state\":\"Paused\"}"), 204, NULL);
	expect_reply(api("GET", "/", NULL), 200, "\"state\":\"Paused\"");
	expect_reply(api("PUT", "/actions", "{\"action_type\":\"FlushMetrics\"}"), 204, NULL);
	long paused_a = last_vcpu_exits(metrics);
	usleep(300 * 1000);
	expect_reply(api("PUT", "/actions", "{\"action_type\":\"FlushMetrics\"}"), 204, NULL);
	long paused_b = last_vcpu_exits(metrics);
	assert_true(paused_a > 0);
	assert_int_equal(paused_a, paused_b);
	expect_reply(api("PATCH", "/vm", "{\"state\":\"Resumed\"}"), 204, NULL);
	expect_reply(api("GET", "/", NULL), 200, "\"state\":\"Running\"");
	usleep(300 * 1000);
	expect_reply(api("PUT", "/actions", "{\"action_type\":\"FlushMetrics\"}"), 204, NULL);
	long resumed = last_vcpu_exits(metrics);
	if (resumed <= paused_b)
		fail_msg("no guest progress after resume: %ld exits, %ld while paused", resumed,
			 paused_b);

	expect_reply(api("PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}"), 204, NULL);
	struct run_result res = harness_proc_finish(&p, 30);
	assert_exit_status(&res, 0);
	assert_output_contains(&res, out, "guest: got ctrl-alt-del");
	assert_output_contains(&res, err, "API socket ready after");
	assert_output_contains(&res, err, "since InstanceStart");
	assert_output_contains(&res, err, "VM paused");
	assert_output_contains(&res, err, "VM resumed");
	harness_free(&res);
	assert_int_equal(access(sock_path, F_OK), -1);
}

/* Booted from the command line with the API beside it: the VMM thread
 * answers under its seccomp filter from the first request on; pausing
 * also holds an application processor that waits for INIT/SIPI in KVM. */
static void test_cli_boot_with_api(void **state)
{
	(void)state;
	struct harness_proc p;

	start_mote(&p, MOTE("--api-sock", sock_path, "--kernel", (char *)guest_elf, "--vcpus", "2",
			    "--cmdline", "test=spin"));
	if (!harness_proc_wait_for(&p, "spinning until the host stops the VM", false, 30))
		fail_msg("the guest never started: %s / %s", p.out, p.err);
	expect_reply(api("GET", "/", NULL), 200, "\"state\":\"Running\"");
	expect_reply(api("GET", "/vm/config", NULL), 200, "\"vcpu_count\":2");
	for (int i = 0; i < 3; i++) {
		expect_reply(api("PATCH", "/vm", "{\"state\":\"Paused\"}"), 204, NULL);
		expect_reply(api("GET", "/", NULL), 200, "\"state\":\"Paused\"");
		expect_reply(api("PATCH", "/vm", "{\"state\":\"Resumed\"}"), 204, NULL);
	}
	expect_reply(api("PATCH", "/vm", "{\"state\":\"Paused\"}"), 204, NULL);
	expect_fault("PUT", "/boot-source", "{\"kernel_image_path\":\"/x\"}", "already started");
	expect_fault("PUT", "/logger", "{\"level\":\"Debug\"}", "already started");
	/* SIGTERM ends a paused VM too. */
	stop_mote(&p);
}

static void test_vm_config_round_trip(void **state)
{
	(void)state;
	struct harness_proc p;
	char body[1024], cfg_path[128];

	start_mote(&p, MOTE("--api-sock", sock_path));
	put_boot_source("test=hello");
	expect_reply(api("PUT", "/machine-config",
			 "{\"vcpu_count\":2,\"mem_size_mib\":80,\"cpu_template\":\"Minimal\"}"),
		     204, NULL);
	snprintf(body, sizeof(body),
		 "{\"drive_id\":\"data\",\"path_on_host\":\"%s\",\"is_root_device\":false,"
		 "\"is_read_only\":true,\"rate_limiter\":{\"ops\":{\"size\":1000,"
		 "\"refill_time\":1000}}}",
		 make_file("data.img", 1 << 20));
	expect_reply(api("PUT", "/drives/data", body), 204, NULL);
	struct harness_reply r = api("GET", "/vm/config", NULL);
	expect_reply(r, 200, "\"boot-source\"");
	stop_mote(&p);

	snprintf(cfg_path, sizeof(cfg_path), "%s/vm.json", tmp_dir);
	FILE *f = fopen(cfg_path, "w");
	assert_non_null(f);
	fputs(r.body, f);
	fclose(f);

	/* The same VM from the file, without the API: 80 MiB, 2 vCPUs, the
	 * drive on the command line. */
	struct run_result res = harness_run(MOTE("--no-api", "--config-file", cfg_path), 30, NULL);
	assert_exit_status(&res, 0);
	assert_output_contains(&res, out, "TEST PASS hello");
	assert_output_contains(&res, out, "ram=");
	assert_output_contains(&res, out, "(79 MiB)");
	assert_output_contains(&res, out, "virtio_mmio.device=4K@0xc0001000:5");
	harness_free(&res);

	/* With the API, the file's VM boots at once and the API serves it. */
	f = fopen(cfg_path, "w");
	fprintf(f, "{\"boot-source\":{\"kernel_image_path\":\"%s\",\"boot_args\":"
		"\"test=wait-ctrl-alt-del\"},\"machine-config\":{\"vcpu_count\":1,"
		"\"mem_size_mib\":64},\"drives\":[],\"network-interfaces\":[],\"vsock\":null}",
		guest_elf);
	fclose(f);
	start_mote(&p, MOTE("--api-sock", sock_path, "--config-file", cfg_path));
	if (!harness_proc_wait_for(&p, "guest: waiting for ctrl-alt-del", false, 30))
		fail_msg("the guest never started: %s / %s", p.out, p.err);
	expect_reply(api("GET", "/", NULL), 200, "\"state\":\"Running\"");
	expect_reply(api("PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}"), 204, NULL);
	res = harness_proc_finish(&p, 30);
	assert_exit_status(&res, 0);
	harness_free(&res);

	/* A bad file is a usage error naming the field. */
	f = fopen(cfg_path, "w");
	fprintf(f, "{\"boot-source\":{\"kernel_image_path\":\"%s\"},\"machine-config\":"
		"{\"vcpu_count\":33,\"mem_size_mib\":64}}", guest_elf);
	fclose(f);
	res = harness_run(MOTE("--no-api", "--config-file", cfg_path), 10, NULL);
	assert_exit_status(&res, 64);
	assert_output_contains(&res, err, "machine-config: vcpu_count must be between 1 and 32, got 33");
	harness_free(&res);
}

static void test_bad_requests(void **state)
{
	(void)state;
	struct harness_proc p;
	char big[128];

	start_mote(&p, MOTE("--api-sock", sock_path));
	expect_fault("PUT", "/machine-config", "{\"vcpu_count\":", "malformed JSON");
	expect_fault("PUT", "/machine-config", "{\"vcpu_count\":\"two\",\"mem_size_mib\":64}",
		     "machine-config: vcpu_count must be an integer, got a string");
	expect_fault("PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":64,\"cpus\":1}",
		     "machine-config: unknown field 'cpus'");
	expect_fault("PUT", "/machine-config", "{\"mem_size_mib\":64}",
		     "machine-config: missing required field 'vcpu_count'");
	expect_fault("PUT", "/machine-config", "{\"vcpu_count\":0,\"mem_size_mib\":64}",
		     "machine-config: vcpu_count must be between 1 and 32, got 0");
	expect_fault("PUT", "/machine-config", "{\"vcpu_count\":33,\"mem_size_mib\":64}",
		     "machine-config: vcpu_count must be between 1 and 32, got 33");
	expect_fault("PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":0}",
		     "machine-config: mem_size_mib must be between 2 and 1048576, got 0");
	expect_fault("PUT", "/boot-source", "{\"kernel_image_path\":\"/nonexistent/vmlinux\"}",
		     "boot-source: cannot open kernel_image_path '/nonexistent/vmlinux': No such "
		     "file or directory");
	expect_fault("PUT", "/drives/d0",
		     "{\"drive_id\":\"d0\",\"path_on_host\":\"/nonexistent.img\","
		     "\"is_root_device\":false}",
		     "drives: cannot open path_on_host '/nonexistent.img'");
	expect_fault("PUT", "/boot-source", "{\"kernel_image_path\":true}",
		     "kernel_image_path must be a string, got a boolean");
	expect_fault("PUT", "/actions", "{\"action_type\":\"Explode\"}", "action_type must be one of");
	expect_fault("PUT", "/network-interfaces/eth0",
		     "{\"iface_id\":\"eth0\",\"host_dev_name\":\"mote-absent0\"}",
		     "network-interfaces: TAP 'mote-absent0' does not exist");
	expect_fault("PUT", "/vsock", "{\"guest_cid\":2,\"uds_path\":\"/tmp/v.sock\"}",
		     "guest_cid");

	/* A body over the 51,200-byte default limit. */
	snprintf(big, sizeof(big), "%s/big.json", tmp_dir);
	FILE *f = fopen(big, "w");
	fputs("{\"metrics_path\":\"", f);
	for (int i = 0; i < 52000; i++)
		fputc('a', f);
	fputs("\"}", f);
	fclose(f);
	char at[160];
	snprintf(at, sizeof(at), "@%s", big);
	expect_fault("PUT", "/metrics", at, "larger than the limit of 51200 allowed by server");

	/* Wrong method, unknown path. */
	expect_fault("DELETE", "/machine-config", NULL,
		     "Invalid request method and/or path: DELETE /machine-config");
	expect_fault("GET", "/foo", NULL, "Invalid request method and/or path: GET /foo");
	expect_fault("PUT", "/vm", "{\"state\":\"Paused\"}", "Invalid request method and/or path");

	/* Wrong phase: runtime operations before InstanceStart. */
	expect_fault("PATCH", "/vm", "{\"state\":\"Paused\"}", "vm: the microVM is not running");
	expect_fault("PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}", "not running");
	expect_fault("PATCH", "/drives/rootfs", "{\"drive_id\":\"rootfs\"}", "not running");
	expect_fault("PUT", "/actions", "{\"action_type\":\"InstanceStart\"}",
		     "no kernel configured; PUT /boot-source first");
	expect_fault("PUT", "/actions", "{\"action_type\":\"FlushMetrics\"}",
		     "metrics system is not configured");

	/* Still serving, still not started. */
	expect_reply(api("GET", "/", NULL), 200, "\"state\":\"Not started\"");
	assert_true(harness_proc_alive(&p));
	stop_mote(&p);
}

static void send_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(fd, s, len);
		assert_true(n > 0);
		s += n;
		len -= (size_t)n;
	}
}

static void test_slow_loris(void **state)
{
	(void)state;
	struct harness_proc p;
	int loris[3];

	start_mote(&p, MOTE("--api-sock", sock_path));
	/* Half a request line, half the headers, half a body: each holds. */
	const char *halves[3] = {
		"GET /mach",
		"PUT /machine-config HTTP/1.1\r\nContent-Le",
		"PUT /machine-config HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"vcpu_count\":",
	};
	for (int i = 0; i < 3; i++) {
		loris[i] = connect_api();
		assert_true(loris[i] >= 0);
		send_all(loris[i], halves[i], strlen(halves[i]));
	}
	double t0 = harness_now_ms();
	for (int i = 0; i < 5; i++)
		expect_reply(api("GET", "/", NULL), 200, "\"state\":\"Not started\"");
	expect_reply(api("PUT", "/machine-config", "{\"vcpu_count\":2,\"mem_size_mib\":64}"), 204,
		     NULL);
	fprintf(stderr, "slow loris: 6 requests answered in %.0f ms with 3 half requests open\n",
		harness_now_ms() - t0);
	for (int i = 0; i < 3; i++)
		close(loris[i]);
	expect_reply(api("GET", "/machine-config", NULL), 200, "\"vcpu_count\":2");
	stop_mote(&p);
}

/* Reads one response; returns its status or -1. */
static int read_response(int fd, char *buf, size_t cap, size_t *have)
{
	for (;;) {
		char *end = memmem(buf, *have, "\r\n\r\n", 4);
		if (end) {
			size_t head = (size_t)(end - buf) + 4;
			char *cl = memmem(buf, head, "Content-Length: ", 16);
			size_t blen = cl ? (size_t)atol(cl + 16) : 0;
			if (*have >= head + blen) {
				int status = atoi(buf + 9);
				memmove(buf, buf + head + blen, *have - head - blen);
				*have -= head + blen;
				return status;
			}
		}
		ssize_t n = read(fd, buf + *have, cap - *have);
		if (n <= 0)
			return -1;
		*have += (size_t)n;
	}
}

static void test_thousand_requests_one_connection(void **state)
{
	(void)state;
	struct harness_proc p;
	static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	char buf[65536];
	size_t have = 0;
	int ok = 0;

	start_mote(&p, MOTE("--api-sock", sock_path));
	int fd = connect_api();
	assert_true(fd >= 0);
	double t0 = harness_now_ms();
	for (int i = 0; i < 1000; i++) {
		send_all(fd, req, sizeof(req) - 1);
		if (read_response(fd, buf, sizeof(buf), &have) == 200)
			ok++;
	}
	double ms = harness_now_ms() - t0;
	/* Pipelined: 100 requests in one write, 100 answers back. */
	char burst[100 * (sizeof(req) - 1)];
	for (int i = 0; i < 100; i++)
		memcpy(burst + i * (sizeof(req) - 1), req, sizeof(req) - 1);
	send_all(fd, burst, sizeof(burst));
	int piped = 0;
	for (int i = 0; i < 100; i++)
		piped += read_response(fd, buf, sizeof(buf), &have) == 200;
	close(fd);
	fprintf(stderr, "keep-alive: 1000 GET / on one connection in %.0f ms (%.1f us each)\n", ms,
		ms * 1000 / 1000);
	assert_int_equal(ok, 1000);
	assert_int_equal(piped, 100);
	stop_mote(&p);
}

static void test_usage_errors(void **state)
{
	(void)state;
	struct run_result r = harness_run(MOTE("--no-api"), 10, NULL);
	assert_exit_status(&r, 64);
	assert_output_contains(&r, err, "--no-api needs --kernel PATH or --config-file FILE");
	harness_free(&r);
	r = harness_run(MOTE("--no-api", "--api-sock", sock_path), 10, NULL);
	assert_exit_status(&r, 64);
	harness_free(&r);
	r = harness_run(MOTE("--config-file", "/nonexistent.json"), 10, NULL);
	assert_exit_status(&r, 66);
	assert_output_contains(&r, err, "/nonexistent.json");
	harness_free(&r);
	r = harness_run(MOTE("--config-file", "/dev/null", "--kernel", (char *)guest_elf), 10,
			NULL);
	assert_exit_status(&r, 64);
	assert_output_contains(&r, err, "--config-file describes the whole VM");
	harness_free(&r);
	r = harness_run(MOTE("--api-sock", sock_path, "--id", "bad id!"), 10, NULL);
	assert_exit_status(&r, 64);
	assert_output_contains(&r, err, "--id");
	harness_free(&r);
}

static int setup_group(void **state)
{
	(void)state;
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/mote-api-test-%d", (int)getpid());
	mkdir(tmp_dir, 0700);
	snprintf(sock_path, sizeof(sock_path), "%s/api.sock", tmp_dir);
	return 0;
}

static int teardown_group(void **state)
{
	(void)state;
	return harness_rm_rf(tmp_dir);
}

int main(void)
{
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_flow),
		cmocka_unit_test(test_cli_boot_with_api),
		cmocka_unit_test(test_vm_config_round_trip),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_slow_loris),
		cmocka_unit_test(test_thousand_requests_one_connection),
		cmocka_unit_test(test_usage_errors),
	};
	return cmocka_run_group_tests_name("integration: HTTP API", tests, setup_group,
					   teardown_group);
}
