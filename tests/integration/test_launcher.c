/* mote-fnd end to end: the example function images (guest/fn/examples)
 * registered and invoked through the launcher, 200 concurrent invocations
 * over 50 instances, kill -9 of a busy instance, idle TTL, the second
 * start being a snapshot restore, and bad input of every kind.
 *
 * Each test starts its own daemon (jailed when run as root, as in
 * production) with its own socket and state directory.
 *
 * Environment: MOTE_BIN (mote-fnd and mote-fn are next to it), MOTE_FN_DIR
 * (the function images). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <http_parser.h>

#include "harness.h"
#include "launcher/hclient.h"

#define CALL_TIMEOUT_MS 60000

static char fnd_bin[300], fn_cli[300];
static const char *fn_dir;

struct daemon {
	pid_t pid;
	char sock[108];
	char state[64];
	char log[96];
};

static struct daemon D;

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

static void daemon_start(const char *extra)
{
	static int seq;
	char cmd[2048];

	snprintf(D.state, sizeof(D.state), "/tmp/mfnd-%d-%d", (int)getpid(), ++seq);
	snprintf(D.sock, sizeof(D.sock), "%s.sock", D.state);
	snprintf(D.log, sizeof(D.log), "%s.log", D.state);
	snprintf(cmd, sizeof(cmd), "exec %s --sock %s --state-dir %s --min-free-mib 256 %s %s "
		 "> %s 2>&1", fnd_bin, D.sock, D.state, extra ? extra : "",
		 geteuid() == 0 ? "" : "--no-jail", D.log);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	D.pid = pid;
	/* Up when it accepts a connection (the file exists from bind(), a
	 * moment before listen()). */
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	strcpy(addr.sun_path, D.sock);
	for (int i = 0; i < 500; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool up = fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
		if (fd >= 0)
			close(fd);
		if (up)
			return;
		usleep(10000);
	}
	fail_msg("mote-fnd did not open its socket (log %s)", D.log);
}

static void dump_log(void)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "tail -n 30 %s >&2", D.log);
	if (system(cmd) < 0)
		perror("system");
}

/* Stops the daemon with SIGTERM: it must stop every VM it started and
 * exit 0 on its own. */
static void daemon_stop(void)
{
	int status = -1;

	if (!D.pid)
		return;
	kill(D.pid, SIGTERM);
	for (int i = 0; i < 1000; i++) {
		if (waitpid(D.pid, &status, WNOHANG) == D.pid)
			break;
		usleep(10000);
	}
	if (!WIFEXITED(status)) {
		char jail[96];
		kill(D.pid, SIGKILL);
		waitpid(D.pid, &status, 0);
		snprintf(jail, sizeof(jail), "%s/jail", D.state);
		umount2(jail, MNT_DETACH); /* its tmpfs, if it had one */
		dump_log();
		D.pid = 0;
		fail_msg("mote-fnd did not stop on SIGTERM");
	}
	D.pid = 0;
	if (WEXITSTATUS(status) != 0)
		dump_log();
	assert_int_equal(WEXITSTATUS(status), 0);
	/* Every instance directory, jail and snapshot is gone: only the logs
	 * of instances that failed stay. */
	DIR *dir = opendir(D.state);
	assert_non_null(dir);
	struct dirent *e;
	while ((e = readdir(dir)))
		if (e->d_name[0] != '.' && strcmp(e->d_name, "log"))
			fail_msg("%s/%s was left behind", D.state, e->d_name);
	closedir(dir);
	nftw(D.state, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
	rmdir(D.state);
	if (!getenv("LAUNCHER_KEEP_LOG"))
		unlink(D.log);
}

static int setup(void **state)
{
	(void)state;
	daemon_start(getenv("LAUNCHER_DAEMON_ARGS"));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	daemon_stop();
	return 0;
}

/* ---- calls --------------------------------------------------------------------- */

static struct hclient_resp call(const char *method, const char *path, const char *body,
				size_t len)
{
	struct hclient_resp r;
	char err[512];

	if (hclient_request(D.sock, method, path, body, len, CALL_TIMEOUT_MS, &r, err,
			    sizeof(err))) {
		dump_log();
		fail_msg("%s %s: %s", method, path, err);
	}
	return r;
}

static const char *header(const struct hclient_resp *r, const char *name)
{
	static char val[256];
	const char *p = strstr(r->headers, name);

	val[0] = '\0';
	if (!p)
		return val;
	p += strlen(name);
	if (*p == ':')
		p++;
	while (*p == ' ')
		p++;
	size_t n = strcspn(p, "\n");
	if (n >= sizeof(val))
		n = sizeof(val) - 1;
	memcpy(val, p, n);
	val[n] = '\0';
	return val;
}

static void reg(const char *name, const char *image, const char *extra_json)
{
	char body[1024], path[128];

	snprintf(body, sizeof(body), "{\"image\": \"%s/%s\", \"mem_mib\": 16%s%s}", fn_dir, image,
		 extra_json ? ", " : "", extra_json ? extra_json : "");
	snprintf(path, sizeof(path), "/functions/%s", name);
	struct hclient_resp r = call("PUT", path, body, strlen(body));
	if (r.status != 201) {
		dump_log();
		fail_msg("PUT %s: %d %s", path, r.status, r.body);
	}
	free(r.body);
}

static struct hclient_resp invoke(const char *name, const char *body, size_t len)
{
	char path[128];

	snprintf(path, sizeof(path), "/functions/%s/invoke", name);
	return call("POST", path, body, len);
}

/* Invokes and expects 200 with exactly `want`. */
static void expect_answer(const char *name, const char *body, const char *want)
{
	struct hclient_resp r = invoke(name, body, strlen(body));

	if (r.status != 200 || r.body_len != strlen(want) || memcmp(r.body, want, r.body_len)) {
		dump_log();
		fail_msg("%s(%s): %d '%s' (headers %s), want 200 '%s'", name, body, r.status, r.body,
			 r.headers, want);
	}
	assert_string_equal(header(&r, "X-Mote-Status"), "ok");
	free(r.body);
}

/* A number from a function's JSON (GET /functions/NAME): "a.b" for nested. */
static long long fn_field(const char *name, const char *key, const char *sub)
{
	char path[128];
	snprintf(path, sizeof(path), "/functions/%s", name);
	struct hclient_resp r = call("GET", path, NULL, 0);
	assert_int_equal(r.status, 200);
	char pat[64];
	const char *p = r.body;
	if (sub) {
		snprintf(pat, sizeof(pat), "\"%s\":", sub);
		p = strstr(p, pat);
		assert_non_null(p);
	}
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(p, pat);
	assert_non_null(p);
	long long v = strtoll(p + strlen(pat), NULL, 10);
	free(r.body);
	return v;
}

static bool fn_text_has(const char *name, const char *needle)
{
	char path[128];
	snprintf(path, sizeof(path), "/functions/%s", name);
	struct hclient_resp r = call("GET", path, NULL, 0);
	bool has = strstr(r.body, needle) != NULL;
	free(r.body);
	return has;
}

/* The value of one Prometheus sample line "NAME{LABELS} V". */
static double metric(const char *line_prefix)
{
	struct hclient_resp r = call("GET", "/metrics", NULL, 0);
	assert_int_equal(r.status, 200);
	const char *p = strstr(r.body, line_prefix);
	if (!p) {
		fprintf(stderr, "%s\n", r.body);
		fail_msg("no metric %s", line_prefix);
	}
	double v = strtod(p + strlen(line_prefix), NULL);
	free(r.body);
	return v;
}

/* Jailed, the jails (and the snapshots they link) are on a tmpfs the
 * daemon mounted on <state>/jail: true if /proc/self/mountinfo says so. */
static bool jails_on_tmpfs(void)
{
	char want[128], line[1024];
	bool found = false;
	FILE *f = fopen("/proc/self/mountinfo", "r");

	snprintf(want, sizeof(want), " %s/jail ", D.state);
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, want) && strstr(line, " - tmpfs "))
			found = true;
	if (f)
		fclose(f);
	return found;
}

/* ---- the example functions ------------------------------------------------------ */

static void test_examples_answer(void **state)
{
	(void)state;
	if (geteuid() == 0 && !jails_on_tmpfs())
		fail_msg("jailed, but %s/jail is not a tmpfs", D.state);
	reg("echo", "echo.elf", NULL);
	reg("sha", "sha256.elf", NULL);
	reg("wc", "wordcount.elf", NULL);
	reg("big", "big.elf", NULL);
	reg("svc", "svc.elf", NULL);

	expect_answer("echo", "hello, launcher", "hello, launcher");
	expect_answer("sha", "abc",
		      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	expect_answer("sha", "",
		      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	expect_answer("wc", "hello world\nfoo bar baz\n", "2 5 24\n");
	expect_answer("svc", "log from the test", "logged");

	/* big: 100 KiB, byte i = (i * 7 + 3) & 0xff */
	struct hclient_resp r = invoke("big", "102400", 6);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 102400);
	for (size_t i = 0; i < r.body_len; i++)
		if ((uint8_t)r.body[i] != (uint8_t)(i * 7 + 3))
			fail_msg("big: byte %zu is %u", i, (uint8_t)r.body[i]);
	free(r.body);

	/* A 200 KiB body through echo comes back byte for byte. */
	size_t n = 200 * 1024;
	char *body = malloc(n);
	for (size_t i = 0; i < n; i++)
		body[i] = (char)(i * 31 + 7);
	r = invoke("echo", body, n);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, n);
	assert_memory_equal(r.body, body, n);
	free(r.body);
	free(body);

	/* Warm reuse: the second call to echo found its instance. */
	r = invoke("echo", "again", 5);
	assert_int_equal(r.status, 200);
	assert_string_equal(header(&r, "X-Mote-Start"), "warm");
	assert_true(strtoll(header(&r, "X-Mote-Total-Us"), NULL, 10) > 0);
	assert_string_equal(header(&r, "X-Mote-Instance"), "echo-1");
	free(r.body);
	assert_int_equal(fn_field("echo", "total", "instances"), 1);
	assert_true(metric("mote_fn_invocations_total{function=\"echo\",status=\"ok\"} ") >= 3);
}

/* ---- 200 concurrent invocations over 50 instances -------------------------------- */

struct areq {
	int fd;
	char out[512];
	size_t out_len, sent;
	char body[64];
	size_t body_len;
	http_parser p;
	char *resp;
	size_t resp_len;
	bool done;
	int status;
};

static int ar_on_body(http_parser *p, const char *at, size_t len)
{
	struct areq *a = p->data;
	a->resp = realloc(a->resp, a->resp_len + len + 1);
	memcpy(a->resp + a->resp_len, at, len);
	a->resp_len += len;
	a->resp[a->resp_len] = '\0';
	return 0;
}

static int ar_on_complete(http_parser *p)
{
	struct areq *a = p->data;
	a->done = true;
	a->status = (int)p->status_code;
	return 0;
}

/* Sends n invocations of `name` at once (all connected and sent before
 * any answer is read), each with a distinct body; returns how many came
 * back 200 with their own body. */
static int concurrent_echo(const char *name, int n, double *wall_ms)
{
	static const http_parser_settings settings = {
		.on_body = ar_on_body,
		.on_message_complete = ar_on_complete,
	};
	struct areq *a = calloc((size_t)n, sizeof(*a));
	struct pollfd *pf = calloc((size_t)n, sizeof(*pf));
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	double t0 = harness_now_ms();
	int ok = 0;

	strcpy(addr.sun_path, D.sock);
	for (int i = 0; i < n; i++) {
		a[i].fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(a[i].fd >= 0);
		assert_int_equal(connect(a[i].fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
		a[i].body_len = (size_t)snprintf(a[i].body, sizeof(a[i].body), "request-%d-%d", i,
						 rand());
		a[i].out_len = (size_t)snprintf(a[i].out, sizeof(a[i].out),
						"POST /functions/%s/invoke HTTP/1.1\r\nHost: x\r\n"
						"Content-Length: %zu\r\n\r\n%s",
						name, a[i].body_len, a[i].body);
		assert_int_equal(send(a[i].fd, a[i].out, a[i].out_len, MSG_NOSIGNAL),
				 (ssize_t)a[i].out_len);
		http_parser_init(&a[i].p, HTTP_RESPONSE);
		a[i].p.data = &a[i];
	}
	int left = n;
	while (left > 0 && harness_now_ms() - t0 < 180000) {
		for (int i = 0; i < n; i++) {
			pf[i].fd = a[i].done ? -1 : a[i].fd;
			pf[i].events = POLLIN;
		}
		if (poll(pf, (nfds_t)n, 1000) <= 0)
			continue;
		for (int i = 0; i < n; i++) {
			if (a[i].done || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char buf[4096];
			ssize_t k = recv(a[i].fd, buf, sizeof(buf), 0);
			if (k <= 0) {
				a[i].done = true;
				left--;
				continue;
			}
			http_parser_execute(&a[i].p, &settings, buf, (size_t)k);
			if (a[i].done)
				left--;
		}
	}
	*wall_ms = harness_now_ms() - t0;
	for (int i = 0; i < n; i++) {
		if (a[i].status == 200 && a[i].resp_len == a[i].body_len &&
		    !memcmp(a[i].resp, a[i].body, a[i].body_len))
			ok++;
		else if (ok + 3 > i) /* the first few failures */
			fprintf(stderr, "request %d: %d '%s'\n", i, a[i].status,
				a[i].resp ? a[i].resp : "");
		close(a[i].fd);
		free(a[i].resp);
	}
	free(a);
	free(pf);
	return ok;
}

static void test_200_concurrent_over_50_instances(void **state)
{
	double wall;

	(void)state;
	reg("echo", "echo.elf", "\"max_instances\": 50, \"concurrency\": 1");
	/* All at once at a function nothing runs yet: they wait while the
	 * template boots and makes the warm snapshot, then clones take them. */
	int ok = concurrent_echo("echo", 200, &wall);
	fprintf(stderr, "200 concurrent invocations: %d correct in %.0f ms, %lld instances\n", ok,
		wall, fn_field("echo", "total", "instances"));
	if (ok != 200)
		dump_log();
	assert_int_equal(ok, 200);
	long long insts = fn_field("echo", "total", "instances");
	assert_true(insts <= 50);
	assert_true(insts >= 2); /* more than one took part */
	assert_int_equal(fn_field("echo", "errors", NULL), 0);
	assert_int_equal((int)metric("mote_fn_starts_total{function=\"echo\",kind=\"cold-boot\"} "), 1);
	assert_true(metric("mote_fn_starts_total{function=\"echo\",kind=\"snapshot-restore\"} ") >= 1);
	/* Every clone answered on its first stream: the template was snapshotted
	 * idle, so no clone resumed mid-poll and dropped the launcher's stream
	 * with the restore's transport reset. */
	double retries = metric("\nmote_fn_stream_retries_total{function=\"echo\"} ");
	if (retries != 0)
		fail_msg("%.0f clones dropped their first stream", retries);
	/* and again, now that they are warm */
	ok = concurrent_echo("echo", 200, &wall);
	fprintf(stderr, "200 more on warm instances: %d correct in %.0f ms\n", ok, wall);
	assert_int_equal(ok, 200);
	assert_true(fn_field("echo", "total", "instances") <= 50);
}

/* ---- kill -9 mid-invocation ------------------------------------------------------ */

static pid_t busy_instance_pid(const char *name)
{
	char path[128];
	snprintf(path, sizeof(path), "/functions/%s", name);
	for (int i = 0; i < 500; i++) {
		struct hclient_resp r = call("GET", path, NULL, 0);
		const char *p = strstr(r.body, "\"inflight\":1,");
		const char *list = strstr(r.body, "\"instance_list\"");
		pid_t pid = 0;
		if (p && list) {
			/* the instance entry with inflight 1 */
			const char *e = strstr(list, "\"inflight\":1,");
			if (e) {
				const char *q = e;
				while (q > list && strncmp(q, "\"pid\":", 6))
					q--;
				if (q > list)
					pid = (pid_t)strtol(q + 6, NULL, 10);
			}
		}
		free(r.body);
		if (pid > 0)
			return pid;
		usleep(10000);
	}
	return 0;
}

struct bg_call {
	pthread_t t;
	char name[32], body[64];
	struct hclient_resp r;
	int ret;
};

static void *bg_invoke(void *arg)
{
	struct bg_call *b = arg;
	char path[128], err[256];

	snprintf(path, sizeof(path), "/functions/%s/invoke", b->name);
	b->ret = hclient_request(D.sock, "POST", path, b->body, strlen(b->body), CALL_TIMEOUT_MS,
				 &b->r, err, sizeof(err));
	return NULL;
}

static void test_kill_mid_invocation(void **state)
{
	/* 100 rounds of 100 us work and 50 ms with the vCPU halted: ~5 s */
	struct bg_call b = { .name = "burn", .body = "100 50000 100" };

	(void)state;
	reg("burn", "burn.elf", "\"timeout_ms\": 30000");
	struct hclient_resp r = invoke("burn", "100 0 1", 7);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "iterations=1 "));
	free(r.body);

	assert_int_equal(pthread_create(&b.t, NULL, bg_invoke, &b), 0);
	pid_t pid = busy_instance_pid("burn");
	assert_true(pid > 0);
	usleep(200000);
	assert_int_equal(kill(pid, SIGKILL), 0);
	pthread_join(b.t, NULL);
	assert_int_equal(b.ret, 0);
	if (b.r.status != 502 || !strstr(b.r.body, "mid-invocation"))
		fail_msg("the killed call: %d %s", b.r.status, b.r.body);
	free(b.r.body);

	/* The next one gets a new instance and is answered. */
	r = invoke("burn", "100 0 2", 7);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "iterations=2 "));
	assert_string_not_equal(header(&r, "X-Mote-Start"), "warm");
	free(r.body);
	/* The killed monitor leaves the count once the launcher has reaped it
	 * (SIGCHLD), which can come after the 502 it answered from the
	 * stream's end. */
	long long total = 0;
	for (int i = 0; i < 100 && (total = fn_field("burn", "total", "instances")) != 1; i++)
		usleep(50000);
	assert_int_equal(total, 1);
	assert_true(metric("mote_fn_errors_total{function=\"burn\"} ") >= 1);
}

/* ---- admission: a full function answers 429, a full host 503 ------------------ */

static int setup_small_host(void **state)
{
	(void)state;
	daemon_start("--max-instances 2 --max-queue 1");
	return 0;
}

static long long fn_queued(const char *name)
{
	return fn_field(name, "queued", NULL);
}

static void test_admission(void **state)
{
	struct bg_call busy = { .name = "burn", .body = "100 50000 80" }; /* ~4 s */
	struct bg_call waiting = { .name = "burn", .body = "100 0 1" };

	(void)state;
	reg("burn", "burn.elf", "\"max_instances\": 1, \"timeout_ms\": 30000");
	reg("echo", "echo.elf", NULL);
	reg("echo2", "echo.elf", NULL);
	assert_int_equal(pthread_create(&busy.t, NULL, bg_invoke, &busy), 0);
	assert_true(busy_instance_pid("burn") > 0);
	/* the function's one instance is busy: the next caller waits... */
	assert_int_equal(pthread_create(&waiting.t, NULL, bg_invoke, &waiting), 0);
	for (int i = 0; i < 300 && fn_queued("burn") != 1; i++)
		usleep(10000);
	assert_int_equal(fn_queued("burn"), 1);
	/* ...and with the queue full (--max-queue 1), the one after is refused */
	struct hclient_resp r = invoke("burn", "100 0 1", 7);
	if (r.status != 429 || !strstr(r.body, "already waiting"))
		fail_msg("function full: %d %s", r.status, r.body);
	free(r.body);

	/* The host takes one more VM (--max-instances 2)... */
	expect_answer("echo", "fits", "fits");
	/* ...and then no more: a function with nothing running gets 503 */
	r = invoke("echo2", "x", 1);
	if (r.status != 503 || !strstr(r.body, "host is full: 2 of 2 instances live"))
		fail_msg("host full: %d %s", r.status, r.body);
	free(r.body);
	assert_true(metric("mote_fnd_rejected_total{reason=\"host_full\"} ") >= 1);
	assert_true(metric("mote_fnd_rejected_total{reason=\"function_full\"} ") >= 1);

	/* the busy and the waiting caller are both served */
	pthread_join(busy.t, NULL);
	pthread_join(waiting.t, NULL);
	assert_int_equal(busy.ret, 0);
	assert_int_equal(waiting.ret, 0);
	assert_int_equal(busy.r.status, 200);
	assert_int_equal(waiting.r.status, 200);
	assert_string_equal(header(&waiting.r, "X-Mote-Start"), "warm");
	assert_true(strtoll(header(&waiting.r, "X-Mote-Queue-Us"), NULL, 10) > 100000);
	free(busy.r.body);
	free(waiting.r.body);
}

/* ---- admission from CPU demand ------------------------------------------------- */

static int setup_cpu_demand(void **state)
{
	(void)state;
	/* 1 CPU x overcommit 0.5: half a CPU of demand is the limit */
	daemon_start("--cpu-capacity 1 --cpu-overcommit 0.5");
	return 0;
}

/* Polls the host's CPU demand (the launcher samples every 200 ms) until
 * it is above (or below) the threshold; false at the timeout. */
static bool demand_reaches(double threshold, bool above, int timeout_ms)
{
	double t0 = harness_now_ms();

	while (harness_now_ms() - t0 < timeout_ms) {
		double v = metric("\nmote_fnd_cpu_demand ");
		if (above ? v > threshold : v < threshold)
			return true;
		usleep(50000);
	}
	return false;
}

/* One instance burning a CPU at its vCPU's full demand: the host (1 CPU x
 * 0.5) refuses to start another VM, with a message saying why, and takes
 * VMs again once the burner is done and its demand has decayed. Idle VMs
 * demand nothing and never count. */
static void test_cpu_demand_admission(void **state)
{
	/* 100 ms of work, no sleep, 40 times: ~4 s of one CPU */
	struct bg_call burn = { .name = "burn", .body = "100000 0 40" };

	(void)state;
	reg("burn", "burn.elf", "\"timeout_ms\": 60000");
	reg("echo", "echo.elf", NULL);
	expect_answer("echo", "idle", "idle"); /* one idle VM of echo, demand ~0 */
	assert_true(metric("\nmote_fnd_cpu_demand_limit ") > 0.49);
	assert_true(demand_reaches(0.2, false, 5000));
	assert_int_equal(pthread_create(&burn.t, NULL, bg_invoke, &burn), 0);
	if (!demand_reaches(0.6, true, 10000)) {
		dump_log();
		fail_msg("the burner's demand never showed: %.2f CPUs",
			 metric("\nmote_fnd_cpu_demand "));
	}
	assert_true(metric("\nmote_fn_cpu_demand{function=\"burn\"} ") > 0.6);
	/* echo's one instance is free: it runs there (no new VM needed) */
	expect_answer("echo", "still served", "still served");
	/* a function with no instance needs a new VM: refused, and why */
	reg("echo2", "echo.elf", NULL);
	struct hclient_resp r = invoke("echo2", "x", 1);
	if (r.status != 503 || !strstr(r.body, "host is busy") || !strstr(r.body, "demand")) {
		dump_log();
		fail_msg("busy host: %d %s", r.status, r.body);
	}
	free(r.body);
	/* scale is refused the same way */
	r = call("POST", "/functions/echo2/scale", "{\"add\": 1}", 10);
	if (r.status != 503 || !strstr(r.body, "host is busy"))
		fail_msg("scale on a busy host: %d %s", r.status, r.body);
	free(r.body);
	pthread_join(burn.t, NULL);
	assert_int_equal(burn.ret, 0);
	if (burn.r.status != 200)
		fail_msg("the burner: %d %s", burn.r.status, burn.r.body);
	free(burn.r.body);
	/* done burning: the demand decays and VMs start again */
	if (!demand_reaches(0.5, false, 10000))
		fail_msg("the demand stayed at %.2f CPUs", metric("\nmote_fnd_cpu_demand "));
	expect_answer("echo2", "room again", "room again");
}

/* ---- scale to zero, and starts from the warm snapshot ---------------------------- */

static void test_idle_ttl_and_restore(void **state)
{
	(void)state;
	reg("echo", "echo.elf", "\"idle_ttl_s\": 1");
	struct hclient_resp r = invoke("echo", "one", 3);
	if (r.status != 200) {
		dump_log();
		fail_msg("first call: %d %s", r.status, r.body);
	}
	assert_string_equal(header(&r, "X-Mote-Start"), "cold-boot");
	free(r.body);
	assert_int_equal(fn_field("echo", "total", "instances"), 1);
	/* The template made the warm snapshot. */
	if (!fn_text_has("echo", "\"snapshot\":\"ready\"")) {
		struct hclient_resp g = call("GET", "/functions/echo", NULL, 0);
		fail_msg("no warm snapshot: %s", g.body);
	}

	/* Idle past its TTL: stopped, nothing left running. */
	double t0 = harness_now_ms();
	while (fn_field("echo", "total", "instances") != 0 && harness_now_ms() - t0 < 5000)
		usleep(50000);
	assert_int_equal(fn_field("echo", "total", "instances"), 0);
	assert_true(harness_now_ms() - t0 > 300); /* not before its TTL */
	assert_int_equal((int)metric("mote_fnd_instances "), 0);

	/* The next start: a clone of the warm snapshot, not a boot. */
	r = invoke("echo", "two", 3);
	if (r.status != 200) {
		dump_log();
		fail_msg("call after the TTL: %d %s", r.status, r.body);
	}
	assert_memory_equal(r.body, "two", 3);
	assert_string_equal(header(&r, "X-Mote-Start"), "snapshot-restore");
	free(r.body);
	assert_int_equal((int)metric("mote_fn_starts_total{function=\"echo\",kind=\"snapshot-restore\"} "), 1);
	assert_int_equal((int)metric("mote_fn_starts_total{function=\"echo\",kind=\"cold-boot\"} "), 1);

	/* scale: three more clones at once, each answering */
	const char *body = "{\"add\": 3}";
	r = call("POST", "/functions/echo/scale", body, strlen(body));
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"started\":3"));
	free(r.body);
	assert_int_equal((int)metric("mote_fn_starts_total{function=\"echo\",kind=\"snapshot-restore\"} "), 4);
	r = call("POST", "/functions/echo/check", NULL, 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"answered\":4"));
	free(r.body);
}

/* The pid (and instance name) of the first instance of NAME in STATE
 * (GET's instance_list), 0 if none. */
static pid_t instance_in_state(const char *name, const char *st, char *iname, size_t iname_len)
{
	char path[128], want[64];
	pid_t pid = 0;

	snprintf(path, sizeof(path), "/functions/%s", name);
	snprintf(want, sizeof(want), "\"state\":\"%s\"", st);
	struct hclient_resp r = call("GET", path, NULL, 0);
	const char *list = strstr(r.body, "\"instance_list\"");
	const char *e = list ? strstr(list, want) : NULL;
	if (e) {
		const char *q = e;
		while (q > list && *q != '{')
			q--;
		const char *pp = strstr(q, "\"pid\":"), *np = strstr(q, "\"name\":\"");
		if (pp && pp < e + 200)
			pid = (pid_t)strtol(pp + 6, NULL, 10);
		if (iname && np && np < e + 200)
			snprintf(iname, iname_len, "%.*s", (int)strcspn(np + 8, "\""), np + 8);
	}
	free(r.body);
	return pid;
}

static pid_t instance_pid_in_state(const char *name, const char *st)
{
	return instance_in_state(name, st, NULL, 0);
}

/* Whether an instance's console log (the guest's serial output) has
 * needle: on the jails' tmpfs or in <state>/log. */
static bool instance_log_has(const char *iname, const char *needle)
{
	char path[PATH_MAX], buf[65536];
	const char *dirs[2] = { "jail/log", "log" };
	bool has = false;

	for (int i = 0; i < 2 && !has; i++) {
		snprintf(path, sizeof(path), "%s/%s/%s.log", D.state, dirs[i], iname);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = '\0';
		fclose(f);
		has = strstr(buf, needle) != NULL;
	}
	return has;
}

static long long wait_fn_field(const char *name, const char *key, const char *sub, long long want,
			       int timeout_ms)
{
	long long v = fn_field(name, key, sub);
	double t0 = harness_now_ms();

	while (v != want && harness_now_ms() - t0 < timeout_ms) {
		usleep(20000);
		v = fn_field(name, key, sub);
	}
	return v;
}

/* The run time of a monitor's vCPU threads ("mote-vcpu*"), ns; -1 while
 * it has none. */
static long long vcpu_run_ns(pid_t pid)
{
	char path[300], comm[32];
	long long total = -1;
	unsigned long long run;
	struct dirent *e;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *dir = opendir(path);
	while (dir && (e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)pid, e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		bool vcpu = fgets(comm, sizeof(comm), f) && !strncmp(comm, "mote-vcpu", 9);
		fclose(f);
		snprintf(path, sizeof(path), "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
		if (vcpu && (f = fopen(path, "r"))) {
			if (fscanf(f, "%llu", &run) == 1)
				total = (total < 0 ? 0 : total) + (long long)run;
			fclose(f);
		}
	}
	if (dir)
		closedir(dir);
	return total;
}

/* The scheduling policy every thread of pid has, or -2 when they differ. */
static int threads_sched_policy(pid_t pid)
{
	char path[64];
	struct dirent *e;
	int policy = -1;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *dir = opendir(path);
	assert_non_null(dir);
	while ((e = readdir(dir))) {
		pid_t tid = (pid_t)strtol(e->d_name, NULL, 10);
		if (tid <= 0)
			continue;
		int p = sched_getscheduler(tid);
		policy = policy == -1 || policy == p ? p : -2;
	}
	closedir(dir);
	return policy;
}

/* standby: clones restored ahead and paused; a start takes one, it runs
 * and answers, and another takes its place. */
static void test_standby(void **state)
{
	(void)state;
	reg("sb", "echo.elf", "\"standby\": 1, \"max_instances\": 4");
	expect_answer("sb", "one", "one"); /* the template's cold boot makes the snapshot */
	if (wait_fn_field("sb", "standby", "instances", 1, 5000) != 1) {
		dump_log();
		fail_msg("no standby clone after the warm snapshot");
	}
	pid_t sb = 0;
	char sb_name[64] = "";
	for (int i = 0; i < 250 && !sb; i++, usleep(20000))
		sb = instance_in_state("sb", "standby", sb_name, sizeof(sb_name));
	assert_true(sb > 0);
	/* Paused: the guest has not run. A clone that runs prints "vsock:
	 * reset" on its console at once (it hears the transport reset of its
	 * restore); the standby's log has its monitor's lines only, and its
	 * vCPU threads (made once the restore is done) gain no run time. */
	long long run0 = -1;
	for (int i = 0; i < 250 && vcpu_run_ns(sb) < 0; i++)
		usleep(20000);
	run0 = vcpu_run_ns(sb);
	usleep(300000);
	long long run1 = vcpu_run_ns(sb);
	if (run0 < 0 || run1 - run0 > 20000)
		fail_msg("standby clone %d: vCPU run time %lld -> %lld ns in 300 ms", (int)sb, run0,
			 run1);
	if (instance_log_has(sb_name, "vsock: reset"))
		fail_msg("standby clone %s: its guest ran (its console says vsock: reset)", sb_name);
	/* Made on CPU time nothing else wants; normal again once taken. */
	assert_int_equal(sched_getscheduler(sb), SCHED_IDLE);

	/* The instance that answered goes away: the next call needs a start
	 * and takes the standby, which answers. */
	pid_t first = instance_pid_in_state("sb", "ready");
	assert_true(first > 0);
	assert_int_equal(kill(first, SIGKILL), 0);
	assert_int_equal(wait_fn_field("sb", "total", "instances", 1, 5000), 1);
	struct hclient_resp r = invoke("sb", "two", 3);
	if (r.status != 200 || r.body_len != 3 || memcmp(r.body, "two", 3)) {
		dump_log();
		fail_msg("call on the standby: %d %s", r.status, r.body);
	}
	assert_string_equal(header(&r, "X-Mote-Start"), "snapshot-standby");
	assert_string_equal(header(&r, "X-Mote-Instance"), sb_name);
	free(r.body);
	assert_true(vcpu_run_ns(sb) > run1);
	assert_true(instance_log_has(sb_name, "vsock: reset"));
	assert_int_equal(threads_sched_policy(sb), SCHED_OTHER);
	assert_int_equal((int)metric("mote_fn_starts_total{function=\"sb\",kind=\"snapshot-standby\"} "), 1);
	assert_int_equal((int)metric("mote_fn_starts_total{function=\"sb\",kind=\"snapshot-restore\"} "), 0);
	/* ... and another is made in its place; scale takes that one. */
	assert_int_equal(wait_fn_field("sb", "standby", "instances", 1, 5000), 1);
	const char *add = "{\"add\": 1}";
	r = call("POST", "/functions/sb/scale", add, strlen(add));
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"started\":1"));
	free(r.body);
	assert_int_equal((int)metric("mote_fn_starts_total{function=\"sb\",kind=\"snapshot-standby\"} "), 2);
	assert_int_equal(wait_fn_field("sb", "standby", "instances", 1, 5000), 1);
	r = call("POST", "/functions/sb/check", NULL, 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"answered\":2"));
	free(r.body);

	/* standby lowered to 0: the paused clone is stopped. */
	char body[512];
	snprintf(body, sizeof(body), "{\"image\": \"%s/echo.elf\", \"mem_mib\": 16, \"max_instances\": 4, \"idle_ttl_s\": 1}",
		 fn_dir);
	r = call("PUT", "/functions/sb", body, strlen(body));
	assert_int_equal(r.status, 200);
	free(r.body);
	assert_int_equal(wait_fn_field("sb", "standby", "instances", 0, 5000), 0);
	assert_int_equal(wait_fn_field("sb", "total", "instances", 2, 5000), 2);
	/* Raised again with a 1 s TTL: one is made, and unused it goes with
	 * the idle instances. */
	snprintf(body, sizeof(body), "{\"image\": \"%s/echo.elf\", \"mem_mib\": 16, \"max_instances\": 4, \"idle_ttl_s\": 1, \"standby\": 1}",
		 fn_dir);
	r = call("PUT", "/functions/sb", body, strlen(body));
	assert_int_equal(r.status, 200);
	free(r.body);
	assert_true(fn_field("sb", "standby", "instances") == 1 ||
		    wait_fn_field("sb", "standby", "instances", 1, 2000) == 1);
	/* (an idle instance's TTL timer takes the new TTL at its next call) */
	r = call("POST", "/functions/sb/check", NULL, 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"answered\":2"));
	free(r.body);
	assert_int_equal(wait_fn_field("sb", "total", "instances", 0, 6000), 0);
	assert_int_equal((int)metric("mote_fnd_instances "), 0);
}

/* A changed image is noticed at the next start: the warm snapshot is
 * rebuilt by a boot of the new image. */
static void copy_file(const char *from, const char *to)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "cp %s %s.tmp && mv %s.tmp %s", from, to, to, to);
	assert_int_equal(system(cmd), 0);
}

static void test_image_change_rebuilds_snapshot(void **state)
{
	char img[128], src[512], body[256];

	(void)state;
	snprintf(img, sizeof(img), "%s-fn.elf", D.state);
	snprintf(src, sizeof(src), "%s/echo.elf", fn_dir);
	copy_file(src, img);
	snprintf(body, sizeof(body), "{\"image\": \"%s\", \"mem_mib\": 16, \"idle_ttl_s\": 1}", img);
	struct hclient_resp r = call("PUT", "/functions/f", body, strlen(body));
	assert_int_equal(r.status, 201);
	free(r.body);
	expect_answer("f", "abc", "abc");
	/* the same function now counts words */
	snprintf(src, sizeof(src), "%s/wordcount.elf", fn_dir);
	copy_file(src, img);
	double t0 = harness_now_ms();
	while (fn_field("f", "total", "instances") != 0 && harness_now_ms() - t0 < 5000)
		usleep(50000);
	r = invoke("f", "abc", 3);
	if (r.status != 200 || strcmp(r.body, "0 1 3\n"))
		fail_msg("after the image changed: %d '%s'", r.status, r.body);
	assert_string_equal(header(&r, "X-Mote-Start"), "cold-boot");
	free(r.body);
	assert_int_equal((int)metric("mote_fn_starts_total{function=\"f\",kind=\"cold-boot\"} "), 2);
	assert_true(fn_text_has("f", "\"snapshot\":\"ready\""));

	/* With a standby clone of the old image waiting: the start that would
	 * take it sees the change, drops it and boots the new image. */
	snprintf(src, sizeof(src), "%s/echo.elf", fn_dir);
	copy_file(src, img);
	snprintf(body, sizeof(body),
		 "{\"image\": \"%s\", \"mem_mib\": 16, \"idle_ttl_s\": 60, \"standby\": 1}", img);
	r = call("PUT", "/functions/g", body, strlen(body));
	assert_int_equal(r.status, 201);
	free(r.body);
	expect_answer("g", "abc", "abc");
	assert_int_equal(wait_fn_field("g", "standby", "instances", 1, 5000), 1);
	snprintf(src, sizeof(src), "%s/wordcount.elf", fn_dir);
	copy_file(src, img);
	pid_t ready = instance_pid_in_state("g", "ready");
	assert_true(ready > 0);
	assert_int_equal(kill(ready, SIGKILL), 0);
	assert_int_equal(wait_fn_field("g", "total", "instances", 1, 5000), 1);
	r = invoke("g", "abc", 3);
	if (r.status != 200 || strcmp(r.body, "0 1 3\n"))
		fail_msg("image changed under a standby clone: %d '%s' (%s)", r.status, r.body,
			 header(&r, "X-Mote-Start"));
	assert_string_equal(header(&r, "X-Mote-Start"), "cold-boot");
	free(r.body);
	assert_int_equal((int)metric("mote_fn_starts_total{function=\"g\",kind=\"snapshot-standby\"} "), 0);
	unlink(img);
}

/* Without the jailer (--no-jail, the default when not root): each
 * instance in its own directory, clones of the same snapshot. */
static int setup_unjailed(void **state)
{
	(void)state;
	daemon_start("--no-jail");
	return 0;
}

static void test_unjailed_instances(void **state)
{
	(void)state;
	reg("echo", "echo.elf", NULL);
	expect_answer("echo", "unjailed", "unjailed");
	const char *body = "{\"add\": 3}";
	struct hclient_resp r = call("POST", "/functions/echo/scale", body, strlen(body));
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"started\":3"));
	free(r.body);
	r = call("POST", "/functions/echo/check", NULL, 0);
	assert_non_null(strstr(r.body, "\"answered\":4"));
	free(r.body);
	char path[128];
	snprintf(path, sizeof(path), "%s/run/echo-2/v.sock", D.state);
	struct stat st;
	assert_int_equal(stat(path, &st), 0); /* the clone's own socket, in its own directory */
	assert_true(S_ISSOCK(st.st_mode));
}

/* ---- the CLI --------------------------------------------------------------------- */

static void test_cli(void **state)
{
	char cmd[4096];

	(void)state;
	snprintf(cmd, sizeof(cmd),
		 "export MOTE_FND_SOCK=%s; %s register echo %s/echo.elf --mem 16 --ttl 30 --standby 1 >/dev/null "
		 "&& printf 'via the cli' | %s invoke echo && echo && %s ls && %s rm echo && "
		 "%s ls; printf x | %s invoke echo", D.sock, fn_cli, fn_dir ? fn_dir : "", fn_cli, fn_cli, fn_cli,
		 fn_cli, fn_cli);
	char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	struct run_result res = harness_run(argv, 120, NULL);
	if (res.status != 1 || !strstr(res.out, "via the cli\n") ||
	    !strstr(res.out, "\"idle_ttl_s\": 30") || !strstr(res.out, "\"standby\": 1") ||
	    !strstr(res.err, "404: no function named")) {
		harness_dump(&res);
		fail_msg("mote-fn session");
	}
	harness_free(&res);
}
/* ---- bad input ------------------------------------------------------------------- */

static void test_bad_input(void **state)
{
	struct hclient_resp r;
	(void)state;

	/* unknown function */
	r = invoke("nosuch", "x", 1);
	assert_int_equal(r.status, 404);
	assert_non_null(strstr(r.body, "no function named 'nosuch'"));
	free(r.body);
	/* bad JSON, unknown field, relative image, missing image file */
	const char *bodies[][2] = {
		{ "{\"image\": ", "bad JSON" },
		{ "{\"image\": \"/x\", \"colour\": 1}", "unknown field 'colour'" },
		{ "{\"image\": \"fn.elf\"}", "absolute path" },
		{ "{\"image\": \"/nonexistent/fn.elf\"}", "No such file" },
		{ "{\"image\": \"/etc/hostname\", \"mem_mib\": 1}", "mem_mib must be between" },
		{ "[1]", "JSON object" },
	};
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		r = call("PUT", "/functions/bad", bodies[i][0], strlen(bodies[i][0]));
		if (r.status != 400 || !strstr(r.body, bodies[i][1]))
			fail_msg("PUT %s: %d %s, want 400 with '%s'", bodies[i][0], r.status, r.body,
				 bodies[i][1]);
		free(r.body);
	}
	r = call("PUT", "/functions/bad name", "{}", 2);
	assert_int_equal(r.status, 400);
	free(r.body);
	r = call("GET", "/nowhere", NULL, 0);
	assert_int_equal(r.status, 404);
	free(r.body);
	r = call("DELETE", "/functions", NULL, 0);
	assert_int_equal(r.status, 405);
	free(r.body);

	/* a body over the limit: 413, before any VM is involved */
	reg("echo", "echo.elf", NULL);
	size_t n = 300 * 1024;
	char *big = calloc(1, n);
	r = invoke("echo", big, n);
	free(big);
	assert_int_equal(r.status, 413);
	assert_non_null(strstr(r.body, "larger than the limit"));
	free(r.body);

	/* an image that does not boot: a clear 502 naming the cause */
	char junk[96];
	snprintf(junk, sizeof(junk), "%s-junk.elf", D.state);
	FILE *f = fopen(junk, "w");
	assert_non_null(f);
	fputs("this is not a kernel\n", f);
	fclose(f);
	char body[256];
	snprintf(body, sizeof(body), "{\"image\": \"%s\"}", junk);
	r = call("PUT", "/functions/junk", body, strlen(body));
	assert_int_equal(r.status, 201);
	free(r.body);
	r = invoke("junk", "x", 1);
	if (r.status != 502 || !strstr(r.body, "did not boot"))
		fail_msg("junk image: %d %s", r.status, r.body);
	free(r.body);
	unlink(junk);

	/* a function that faults: an error status, and the same VM goes on */
	reg("fault", "fault.elf", NULL);
	const char *faults[] = { "null", "div", "hlt", "stack" };
	for (size_t i = 0; i < 4; i++) {
		r = invoke("fault", faults[i], strlen(faults[i]));
		if (r.status != 500 || strcmp(header(&r, "X-Mote-Status"), "fault"))
			fail_msg("fault %s: %d %s %s", faults[i], r.status, r.headers, r.body);
		free(r.body);
	}
	r = invoke("fault", "error", 5);
	assert_int_equal(r.status, 500);
	assert_string_equal(header(&r, "X-Mote-Status"), "handler-error");
	free(r.body);
	expect_answer("fault", "fine", "ok");
	assert_int_equal(fn_field("fault", "total", "instances"), 1);

	/* a function that loops: stopped at its deadline (504), launcher goes on */
	reg("loop", "loop.elf", "\"timeout_ms\": 300");
	r = invoke("loop", "spin", 4);
	if (r.status != 504 || strcmp(header(&r, "X-Mote-Status"), "timeout"))
		fail_msg("loop: %d %s %s", r.status, r.headers, r.body);
	free(r.body);
	expect_answer("echo", "still here", "still here");
	r = call("GET", "/functions", NULL, 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"loop\""));
	free(r.body);
}

int main(void)
{
	const char *mote = harness_env("MOTE_BIN");
	char tmp[PATH_MAX];

	fn_dir = harness_env("MOTE_FN_DIR");
	snprintf(tmp, sizeof(tmp), "%s", mote);
	snprintf(fnd_bin, sizeof(fnd_bin), "%.280s/mote-fnd", dirname(tmp));
	snprintf(fn_cli, sizeof(fn_cli), "%.280s/mote-fn", tmp);
	srand((unsigned)getpid());
	signal(SIGPIPE, SIG_IGN);

	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_examples_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_200_concurrent_over_50_instances, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill_mid_invocation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_admission, setup_small_host, teardown),
		cmocka_unit_test_setup_teardown(test_cpu_demand_admission, setup_cpu_demand, teardown),
		cmocka_unit_test_setup_teardown(test_idle_ttl_and_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_change_rebuilds_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_standby, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unjailed_instances, setup_unjailed, teardown),
		cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
	};
	/* LAUNCHER_TEST=test_cli runs one test (for development). */
	if (getenv("LAUNCHER_TEST"))
		cmocka_set_test_filter(getenv("LAUNCHER_TEST"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
