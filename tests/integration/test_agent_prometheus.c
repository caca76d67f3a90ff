/* mote-agent on real VMs: two duty-cycle VMs with API sockets in one
 * directory; the agent scrapes them, puts each in a cgroup v1 cpu group
 * with shares and a cap from its demand, serves Prometheus text on a
 * loopback port, and a real Prometheus server (Debian's package) scrapes
 * it: a query through Prometheus' HTTP API returns each VM's demand.
 * Admission refuses a request that does not fit, with the numbers. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <jansson.h>

#include "tests/integration/harness.h"

#define PROMETHEUS "/usr/bin/prometheus"
#define CG_ROOT "/sys/fs/cgroup/cpu"

static const char *mote_bin, *guest_elf, *agent_bin;
static char tmp_dir[64];

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

/* GET over loopback TCP; HTTP status (0 if no connection), body in buf. */
static int tcp_get(int port, const char *path, char *buf, size_t cap)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char req[1024];
	size_t len = 0;
	ssize_t got;

	buf[0] = '\0';
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close"
			 "\r\n\r\n", path);
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return 0;
	}
	while (len < cap - 1 && (got = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)got;
	close(fd);
	buf[len] = '\0';
	int status = 0;
	sscanf(buf, "HTTP/1.%*d %d", &status);
	char *b = strstr(buf, "\r\n\r\n");
	if (b)
		memmove(buf, b + 4, strlen(b + 4) + 1);
	return status;
}

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -999;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -998;
		fclose(f);
	}
	return v;
}

static bool file_has_line(const char *path, long want)
{
	FILE *f = fopen(path, "r");
	long v;
	bool found = false;

	if (!f)
		return false;
	while (fscanf(f, "%ld", &v) == 1)
		found |= v == want;
	fclose(f);
	return found;
}

struct setup {
	struct harness_proc vm[2];
	struct harness_proc agent;
	char vm_dir[128];
	char cg_parent[64];
	int port;
};

static void start_vms_and_agent(struct setup *s)
{
	static const char *names[2] = { "vm-a", "vm-b" };
	char port_arg[32];

	snprintf(s->vm_dir, sizeof(s->vm_dir), "%s/vms", tmp_dir);
	mkdir(s->vm_dir, 0755);
	for (int i = 0; i < 2; i++) {
		char sock[256];
		snprintf(sock, sizeof(sock), "%s/%s.sock", s->vm_dir, names[i]);
		char *const argv[] = { (char *)mote_bin, "--api-sock", sock, "--kernel",
				       (char *)guest_elf, "--cmdline",
				       "test=duty work_us=3000 sleep_us=1000 cputime=1 secs=60", "--demand",
				       "period-ms=250,window=8", NULL };
		harness_spawn(&s->vm[i], argv);
		assert_true(harness_proc_wait_for(&s->vm[i], "duty: running", false, 10));
	}
	snprintf(s->cg_parent, sizeof(s->cg_parent), "mote-agent-test-%d", (int)getpid());
	s->port = free_port();
	snprintf(port_arg, sizeof(port_arg), "127.0.0.1:%d", s->port);
	char *const argv[] = { (char *)agent_bin, "serve", "--vm-dir", s->vm_dir, "--listen",
			       port_arg, "--interval-ms", "500", "--cgroup-version", "1",
			       "--cgroup-root", CG_ROOT, "--cgroup-parent", s->cg_parent, NULL };
	harness_spawn(&s->agent, argv);
	assert_true(harness_proc_wait_for(&s->agent, "serving /metrics", true, 5));
}

static void stop_all(struct setup *s)
{
	char path[256];

	for (int i = 0; i < 2; i++) {
		kill(s->vm[i].pid, SIGTERM);
		struct run_result r = harness_proc_finish(&s->vm[i], 10);
		harness_free(&r);
	}
	kill(s->agent.pid, SIGTERM);
	struct run_result r = harness_proc_finish(&s->agent, 10);
	assert_exit_status(&r, 0);
	harness_free(&r);
	/* The agent removes the VMs' groups on exit; the parent is left. */
	snprintf(path, sizeof(path), CG_ROOT "/%s/vm-a", s->cg_parent);
	assert_int_equal(access(path, F_OK), -1);
	snprintf(path, sizeof(path), CG_ROOT "/%s", s->cg_parent);
	assert_int_equal(rmdir(path), 0);
}

static void test_agent_cgroups_prometheus_admission(void **state)
{
	(void)state;
	struct setup s;
	char path[256], *buf = malloc(1 << 20);

	if (access(CG_ROOT "/cpu.shares", W_OK))
		skip(); /* needs root and the v1 cpu controller (the machines here have both) */
	start_vms_and_agent(&s);
	sleep(3);

	/* cgroups: each VM's process moved into its group, shares and cap set. */
	for (int i = 0; i < 2; i++) {
		const char *name = i ? "vm-b" : "vm-a";
		snprintf(path, sizeof(path), CG_ROOT "/%s/%s/cgroup.procs", s.cg_parent, name);
		assert_true(file_has_line(path, s.vm[i].pid));
		snprintf(path, sizeof(path), CG_ROOT "/%s/%s/cpu.shares", s.cg_parent, name);
		long shares = read_long(path);
		snprintf(path, sizeof(path), CG_ROOT "/%s/%s/cpu.cfs_quota_us", s.cg_parent, name);
		long quota = read_long(path);
		printf("%s: cpu.shares %ld, cpu.cfs_quota_us %ld\n", name, shares, quota);
		/* ~75 % demand: shares ~768 (not the default 1024), cap ~0.94 CPU. */
		assert_in_range(shares, 400, 1000);
		assert_in_range(quota, 50000, 100000);
	}

	/* The agent's own endpoint. */
	assert_int_equal(tcp_get(s.port, "/metrics", buf, 1 << 20), 200);
	assert_non_null(strstr(buf, "# TYPE mote_vm_demand_cpus gauge"));
	assert_non_null(strstr(buf, "mote_vm_demand_cpus{vm=\"vm-a\"}"));
	assert_non_null(strstr(buf, "mote_vm_demand_cpus{vm=\"vm-b\"}"));
	assert_int_equal(tcp_get(s.port, "/admit?demand=0.75&count=4", buf, 1 << 20), 409);
	assert_non_null(strstr(buf, "refused: 4 more VM(s) of 0.75 CPU demand"));

	/* Admission from the command line: 10 more 80 % VMs on 2 CPUs do not
	 * fit; a tiny one does at 10x overcommit. */
	char *const refuse[] = { (char *)agent_bin, "admit", "--vm-dir", s.vm_dir, "--demand", "0.8",
				 "--count", "10", "--capacity-cpus", "2", NULL };
	struct run_result r = harness_run(refuse, 10, NULL);
	assert_exit_status(&r, 1);
	assert_output_contains(&r, out, "refused: 10 more VM(s) of 0.80 CPU demand");
	assert_output_contains(&r, out, "over its limit of 2.00 CPUs");
	harness_free(&r);
	char *const admit[] = { (char *)agent_bin, "admit", "--vm-dir", s.vm_dir, "--demand", "0.05",
				"--count", "1", "--capacity-cpus", "2", "--overcommit", "10", NULL };
	r = harness_run(admit, 10, NULL);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "admitted: 1 more VM(s)");
	harness_free(&r);

	/* The profile of a running VM: three more like vm-a (~0.75 CPU each)
	 * do not fit beside the two on 2 CPUs. */
	char *const like[] = { (char *)agent_bin, "admit", "--vm-dir", s.vm_dir, "--like", "vm-a",
			       "--count", "3", "--capacity-cpus", "2", NULL };
	r = harness_run(like, 10, NULL);
	assert_exit_status(&r, 1);
	assert_output_contains(&r, out, "refused: 3 more VM(s)");
	harness_free(&r);
	assert_int_equal(tcp_get(s.port, "/admit?like=vm-b&count=1", buf, 1 << 20), 409);

	/* A real Prometheus scrapes the agent; its query API returns both
	 * VMs' demand. */
	if (access(PROMETHEUS, X_OK)) {
		stop_all(&s);
		free(buf);
		fail_msg("%s is missing (scripts/install-deps.sh installs Debian's prometheus)",
			 PROMETHEUS);
	}
	char cfg[256], data[256], listen[64], cfg_arg[300], data_arg[300], listen_arg[100];
	int pport = free_port();
	snprintf(cfg, sizeof(cfg), "%s/prometheus.yml", tmp_dir);
	snprintf(data, sizeof(data), "%s/prom-data", tmp_dir);
	FILE *f = fopen(cfg, "w");
	assert_non_null(f);
	fprintf(f, "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
		   "scrape_configs:\n  - job_name: mote\n    static_configs:\n"
		   "      - targets: ['127.0.0.1:%d']\n", s.port);
	fclose(f);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", pport);
	snprintf(cfg_arg, sizeof(cfg_arg), "--config.file=%s", cfg);
	snprintf(data_arg, sizeof(data_arg), "--storage.tsdb.path=%s", data);
	snprintf(listen_arg, sizeof(listen_arg), "--web.listen-address=%s", listen);
	struct harness_proc prom;
	char *const pargv[] = { PROMETHEUS, cfg_arg, data_arg, listen_arg, NULL };
	harness_spawn(&prom, pargv);
	double end = harness_now_ms() + 40e3;
	int series = 0;
	json_t *res = NULL;
	while (harness_now_ms() < end) {
		usleep(500 * 1000);
		harness_proc_pump(&prom, 0);
		if (tcp_get(pport, "/api/v1/query?query=mote_vm_demand_cpus", buf, 1 << 20) != 200)
			continue;
		json_error_t je;
		json_decref(res);
		res = json_loads(buf, 0, &je);
		series = (int)json_array_size(json_object_get(json_object_get(res, "data"), "result"));
		if (series == 2)
			break;
	}
	kill(prom.pid, SIGTERM);
	r = harness_proc_finish(&prom, 20);
	if (series != 2) {
		harness_dump(&r);
		fail_msg("Prometheus never returned both VMs' demand; last answer: %.400s", buf);
	}
	harness_free(&r);
	json_t *result = json_object_get(json_object_get(res, "data"), "result");
	bool seen[2] = { false, false };
	for (size_t i = 0; i < json_array_size(result); i++) {
		json_t *e = json_array_get(result, i);
		const char *vm = json_string_value(json_object_get(json_object_get(e, "metric"), "vm"));
		double v = atof(json_string_value(json_array_get(json_object_get(e, "value"), 1)));
		printf("prometheus: mote_vm_demand_cpus{vm=\"%s\"} = %.3f\n", vm, v);
		assert_non_null(vm);
		assert_true(v > 0.4 && v <= 1.0); /* each needs ~0.75 CPU */
		seen[!strcmp(vm, "vm-b")] = true;
	}
	assert_true(seen[0] && seen[1]);
	json_decref(res);
	stop_all(&s);
	free(buf);
}

static int group_setup(void **state)
{
	(void)state;
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	agent_bin = harness_env("MOTE_AGENT");
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/mote-agent-XXXXXX");
	return mkdtemp(tmp_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	return harness_rm_rf(tmp_dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_agent_cgroups_prometheus_admission),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
