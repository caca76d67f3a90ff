/* The density and start-rate harness (issue 10): drives mote-fnd.
 *
 *   1. cold boot to the runtime's ready line, mote vs QEMU -M microvm, on
 *      the same function image (serial console; QEMU has no vsock here);
 *   2. start rate: N instances by cold boot (snapshot: false), then N by
 *      snapshot clone, through POST /functions/NAME/scale: starts per
 *      second and request -> first response p50/p99 (each start is
 *      measured from the request to the clone's first answer); then one
 *      at a time, the whole path (jail, exec, restore) and taking a
 *      standby clone (restored ahead, paused: --standby N, default 2);
 *   3. density: keep adding idle clones in batches until the target, a
 *      refusal (the host is full) or Ctrl-C, with a progress line per
 *      batch; then PSS of every monitor (guest RAM and monitor overhead
 *      apart; shared clone pages count once), host memory, and a check
 *      that every VM still answers.
 *
 * --rate-only runs 2. alone (a minute, not half an hour): the report's
 * density part is then carried over from the report it replaces.
 *
 * Everything it started is stopped at the end, also on Ctrl-C/SIGTERM
 * (mote-fnd stops its VMs on SIGTERM). Results: a markdown report and a
 * TSV of the raw numbers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "launcher/hclient.h"

/* Starts made one at a time: 200, so p99 is not simply the slowest. */
#define SEQ_N(rate_n) ((rate_n) < 200 ? (rate_n) : 200)

static volatile sig_atomic_t interrupted;
static volatile pid_t daemon_pid;
static char sock[108];
static FILE *tsv;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
	/* The daemon stops every VM on SIGTERM; a scale call in progress
	 * returns when it goes. */
	if (daemon_pid > 0)
		kill(daemon_pid, SIGTERM);
}

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
	va_list ap;
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	fprintf(stderr, "[density %02d:%02d:%02d] ", tm.tm_hour, tm.tm_min, tm.tm_sec);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t mem_available_kib(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	uint64_t v = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %lu kB", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

static json_t *api(const char *method, const char *path, const char *body, int *status)
{
	struct hclient_resp r;
	char err[512];

	if (hclient_request(sock, method, path, body, body ? strlen(body) : 0, 3600 * 1000, &r,
			    err, sizeof(err))) {
		progress("%s %s: %s", method, path, err);
		*status = -1;
		return NULL;
	}
	*status = r.status;
	json_t *o = json_loadb(r.body, r.body_len, 0, NULL);
	if (!o && r.body_len)
		o = json_pack("{s:s}", "raw", r.body);
	free(r.body);
	return o;
}

static long long jint(json_t *o, const char *path)
{
	/* "a.b" nested */
	char key[64];
	const char *dot;
	while (o && (dot = strchr(path, '.'))) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		o = json_object_get(o, key);
		path = dot + 1;
	}
	json_t *v = o ? json_object_get(o, path) : NULL;
	return json_is_integer(v) ? json_integer_value(v) : json_is_real(v) ? (long long)json_real_value(v) : -1;
}

static double jreal(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_number(v) ? json_number_value(v) : -1;
}

/* ---- 1. cold boot to ready: mote vs QEMU ------------------------------------------- */

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
	if (n <= 0)
		return -1;
	qsort(v, (size_t)n, sizeof(double), cmp_d);
	int i = (int)((n - 1) * p + 0.5);
	return v[i];
}

/* Runs argv, returns ms from exec to `marker` on its stdout (-1 if not
 * within timeout_ms); the child is killed either way. */
static double time_to_marker(char *const argv[], const char *marker, int timeout_ms)
{
	int p[2];
	if (pipe(p))
		return -1;
	double t0 = now_ms();
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 2);
		close(p[0]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	char buf[8192];
	size_t len = 0;
	double found = -1;
	while (found < 0 && now_ms() - t0 < timeout_ms && !interrupted) {
		struct pollfd pf = { .fd = p[0], .events = POLLIN };
		if (poll(&pf, 1, 100) <= 0)
			continue;
		ssize_t n = read(p[0], buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, marker))
			found = now_ms() - t0;
		if (len > sizeof(buf) / 2) {
			memmove(buf, buf + len - 64, 64);
			len = 64;
		}
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(p[0]);
	return found;
}

struct boot_cmp {
	double mote_p50, mote_p99, mote_min, qemu_p50, qemu_p99, qemu_min;
	double nov_p50, nov_p99, nov_min;
	int runs, mote_ok, qemu_ok, nov_ok;
};

static void bench_boot(const char *mote, const char *image, int runs, struct boot_cmp *out)
{
	double *m = calloc((size_t)runs, sizeof(double)), *q = calloc((size_t)runs, sizeof(double));
	double *nv = calloc((size_t)runs, sizeof(double));
	char uds[64], mem[] = "16";
	int nm = 0, nq = 0, nn = 0;

	snprintf(uds, sizeof(uds), "cid=3,uds=/tmp/density-boot-%d.sock", (int)getpid());
	for (int i = 0; i < runs && !interrupted; i++) {
		char *ma[] = { (char *)mote, "--kernel", (char *)image, "--mem-mib", mem, "--vsock", uds,
			       "--no-api", "--log-level", "error", NULL };
		double t = time_to_marker(ma, "mote-fn: ready", 30000);
		if (t >= 0)
			m[nm++] = t;
		char *qa[] = { "qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu",
			       "host,-arch-capabilities", "-nodefaults", "-no-user-config", "-nographic",
			       "-serial", "stdio", "-m", mem, "-smp", "1", "-kernel", (char *)image, NULL };
		t = time_to_marker(qa, "mote-fn: ready", 30000);
		if (t >= 0)
			q[nq++] = t;
		/* mote with the devices QEMU has here (no vsock): the runtime
		 * skips the vsock driver, whose set-up is emulated CPL0 code */
		char *na[] = { (char *)mote, "--kernel", (char *)image, "--mem-mib", mem, "--no-api",
			       "--log-level", "error", NULL };
		t = time_to_marker(na, "mote-fn: ready", 30000);
		if (t >= 0)
			nv[nn++] = t;
		progress("cold boot to ready, run %d/%d: mote %.1f ms, qemu %.1f ms, mote without "
			 "vsock %.1f ms", i + 1, runs, nm ? m[nm - 1] : -1, nq ? q[nq - 1] : -1,
			 nn ? nv[nn - 1] : -1);
		if (tsv)
			fprintf(tsv, "boot\t%d\t%.3f\t%.3f\t%.3f\n", i, nm ? m[nm - 1] : -1,
				nq ? q[nq - 1] : -1, nn ? nv[nn - 1] : -1);
	}
	out->runs = runs;
	out->mote_ok = nm;
	out->qemu_ok = nq;
	out->mote_min = nm ? pct(m, nm, 0) : -1;
	out->mote_p50 = pct(m, nm, 0.5);
	out->mote_p99 = pct(m, nm, 0.99);
	out->qemu_min = nq ? pct(q, nq, 0) : -1;
	out->qemu_p50 = pct(q, nq, 0.5);
	out->qemu_p99 = pct(q, nq, 0.99);
	out->nov_ok = nn;
	out->nov_min = nn ? pct(nv, nn, 0) : -1;
	out->nov_p50 = pct(nv, nn, 0.5);
	out->nov_p99 = pct(nv, nn, 0.99);
	unlink(uds + 10);
	free(m);
	free(q);
	free(nv);
}

/* ---- 2./3. through the launcher ---------------------------------------------------- */

struct scale_res {
	long long requested, started, failed;
	double wall_ms, per_s, p50_ms, p99_ms, max_ms;
	double spawn_ms, accept_ms, answer_ms, accept_p99_ms; /* p50 of each phase */
	double loop_ms, loop_p99_ms; /* what a start cost the launcher's event loop */
	char error[256];
};

static bool scale(const char *fn, int add, int parallel, struct scale_res *r)
{
	char path[96], body[96];
	int st;

	snprintf(path, sizeof(path), "/functions/%s/scale", fn);
	snprintf(body, sizeof(body), "{\"add\": %d, \"parallel\": %d}", add, parallel);
	double t0 = now_ms();
	json_t *o = api("POST", path, body, &st);
	memset(r, 0, sizeof(*r));
	r->wall_ms = now_ms() - t0;
	if (!o)
		return false;
	r->requested = jint(o, "requested");
	r->started = jint(o, "started");
	r->failed = jint(o, "failed");
	r->per_s = jreal(o, "per_second");
	r->p50_ms = (double)jint(o, "first_response_us.p50") / 1000;
	r->p99_ms = (double)jint(o, "first_response_us.p99") / 1000;
	r->max_ms = (double)jint(o, "first_response_us.max") / 1000;
	r->spawn_ms = (double)jint(o, "phases_us.spawn.p50") / 1000;
	r->accept_ms = (double)jint(o, "phases_us.accept.p50") / 1000;
	r->accept_p99_ms = (double)jint(o, "phases_us.accept.p99") / 1000;
	r->answer_ms = (double)jint(o, "phases_us.answer.p50") / 1000;
	r->loop_ms = (double)jint(o, "phases_us.loop.p50") / 1000;
	r->loop_p99_ms = (double)jint(o, "phases_us.loop.p99") / 1000;
	json_t *e = json_object_get(o, "first_error");
	if (json_is_string(e))
		snprintf(r->error, sizeof(r->error), "%s", json_string_value(e));
	else if (st != 200 && json_is_string(json_object_get(o, "error")))
		snprintf(r->error, sizeof(r->error), "%s", json_string_value(json_object_get(o, "error")));
	json_decref(o);
	return st == 200;
}

static bool reg(const char *name, const char *image, bool snapshot, int max, int standby)
{
	char path[96], body[1024];
	int st;

	snprintf(path, sizeof(path), "/functions/%s", name);
	snprintf(body, sizeof(body),
		 "{\"image\": \"%s\", \"mem_mib\": 16, \"idle_ttl_s\": 86400, \"max_instances\": %d, "
		 "\"snapshot\": %s, \"timeout_ms\": 60000, \"standby\": %d}",
		 image, max, snapshot ? "true" : "false", standby);
	json_t *o = api("PUT", path, body, &st);
	if (st != 201 && st != 200) {
		char *s = o ? json_dumps(o, 0) : NULL;
		progress("register %s: %d %s", name, st, s ? s : "");
		free(s);
	}
	json_decref(o);
	return st == 201 || st == 200;
}

static void unreg(const char *name)
{
	char path[96];
	int st;
	snprintf(path, sizeof(path), "/functions/%s", name);
	json_decref(api("DELETE", path, NULL, &st));
}

static long long fn_live(const char *name, json_t **out)
{
	char path[96];
	int st;
	snprintf(path, sizeof(path), "/functions/%s", name);
	json_t *o = api("GET", path, NULL, &st);
	long long n = jint(o, "instances.total");
	if (out)
		*out = o;
	else
		json_decref(o);
	return n;
}

/* PSS of one process, split into guest RAM (the big mapping of the
 * snapshot memory file, or the memfd/anonymous RAM of a booted VM) and
 * the rest (the monitor's own). kB. */
struct pss {
	uint64_t guest, monitor, rss, priv_dirty;
};

static bool read_pss(pid_t pid, uint64_t guest_kib, struct pss *p)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	bool is_guest = false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b;
		char perms[8];
		uint64_t v;
		if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) == 3 && strchr(line, ' ')) {
			uint64_t kib = (b - a) / 1024;
			is_guest = kib >= guest_kib && (strstr(line, "snap.mem") || strstr(line, "memfd") ||
							 kib == guest_kib);
			continue;
		}
		if (sscanf(line, "Pss: %lu kB", &v) == 1) {
			if (is_guest)
				p->guest += v;
			else
				p->monitor += v;
		} else if (sscanf(line, "Rss: %lu kB", &v) == 1) {
			p->rss += v;
		} else if (sscanf(line, "Private_Dirty: %lu kB", &v) == 1) {
			p->priv_dirty += v;
		}
	}
	fclose(f);
	return true;
}

/* CPU time (ms) each live instance of fn has used so far, all its threads
 * (schedstat run time): the jailer (same process, before its exec of
 * mote), the restore, the guest's vCPU and the VMM's device work. The
 * median over the instances, and the vCPU thread's share of it. */
static void clone_cpu(const char *fn, double *total_p50, double *vcpu_p50, int *n_out)
{
	json_t *fo = NULL;
	double *tot, *vc;
	int n = 0;

	fn_live(fn, &fo);
	json_t *list = json_object_get(fo, "instance_list");
	size_t cnt = json_array_size(list), i;
	json_t *it;
	tot = calloc(cnt + 1, sizeof(double));
	vc = calloc(cnt + 1, sizeof(double));
	json_array_foreach(list, i, it) {
		pid_t p = (pid_t)json_integer_value(json_object_get(it, "pid"));
		char path[96], comm[32];
		double t = 0, v = 0;
		DIR *d;
		struct dirent *e;

		snprintf(path, sizeof(path), "/proc/%d/task", (int)p);
		if (p <= 0 || !(d = opendir(path)))
			continue;
		while ((e = readdir(d))) {
			unsigned long long run = 0;
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/proc/%d/task/%.20s/schedstat", (int)p, e->d_name);
			FILE *f = fopen(path, "r");
			if (f && fscanf(f, "%llu", &run) == 1)
				t += run / 1e6;
			if (f)
				fclose(f);
			snprintf(path, sizeof(path), "/proc/%d/task/%.20s/comm", (int)p, e->d_name);
			f = fopen(path, "r");
			if (f && fgets(comm, sizeof(comm), f) && !strncmp(comm, "mote-vcpu", 9))
				v += run / 1e6;
			if (f)
				fclose(f);
		}
		closedir(d);
		tot[n] = t;
		vc[n++] = v;
	}
	json_decref(fo);
	*total_p50 = n ? pct(tot, n, 0.5) : -1;
	*vcpu_p50 = n ? pct(vc, n, 0.5) : -1;
	*n_out = n;
	free(tot);
	free(vc);
}

/* A section of the report being replaced, for a --rate-only run: from
 * the line `from` up to the line `to` (NULL: the end), or NULL. */
static char *old_section(const char *path, const char *from, const char *to)
{
	FILE *f = fopen(path, "r");
	char *buf, *at;
	long len;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)len + 1);
	if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	at = strstr(buf, from);
	if (!at) {
		free(buf);
		return NULL;
	}
	char *end = to ? strstr(at + 1, to) : NULL;
	if (end)
		end[1] = '\0';
	char *out = strdup(at + 1);
	free(buf);
	return out;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: density --fnd PATH --mote PATH --image ECHO.elf --out FILE.md [--tsv FILE]\n"
		"       [--state DIR] [--rate-n N] [--target N] [--batch N] [--parallel N]\n"
		"       [--boot-runs N] [--no-jail] [--rate-only] [--standby N]\n");
	exit(64);
}

int main(int argc, char **argv)
{
	const char *fnd = NULL, *mote = NULL, *image = NULL, *out_path = NULL, *tsv_path = NULL;
	const char *state = "/tmp/mote-density";
	int rate_n = 200, target = 1000, batch = 250, parallel = 32, boot_runs = 10;
	/* Standby clones for the one-at-a-time row that takes them: 2, so a
	 * start back to back with the last finds one whose restore is done
	 * (the one made at the last start may still be restoring). 0: no row. */
	int standby = 2;
	bool no_jail = geteuid() != 0, rate_only = false;
	static const struct option opts[] = {
		{ "fnd", 1, NULL, 'f' },       { "mote", 1, NULL, 'm' },   { "image", 1, NULL, 'i' },
		{ "out", 1, NULL, 'o' },       { "tsv", 1, NULL, 't' },    { "state", 1, NULL, 's' },
		{ "rate-n", 1, NULL, 'r' },    { "target", 1, NULL, 'n' }, { "batch", 1, NULL, 'b' },
		{ "parallel", 1, NULL, 'p' },  { "boot-runs", 1, NULL, 'B' },
		{ "no-jail", 0, NULL, 'J' },   { "rate-only", 0, NULL, 'R' },
		{ "standby", 1, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'f': fnd = optarg; break;
		case 'm': mote = optarg; break;
		case 'i': image = optarg; break;
		case 'o': out_path = optarg; break;
		case 't': tsv_path = optarg; break;
		case 's': state = optarg; break;
		case 'r': rate_n = atoi(optarg); break;
		case 'n': target = atoi(optarg); break;
		case 'b': batch = atoi(optarg); break;
		case 'p': parallel = atoi(optarg); break;
		case 'B': boot_runs = atoi(optarg); break;
		case 'J': no_jail = true; break;
		case 'R': rate_only = true; break;
		case 'S': standby = atoi(optarg); break;
		default: usage();
		}
	}
	if (!fnd || !mote || !image || !out_path)
		usage();
	/* A rate-only run keeps the last full run's raw density numbers. */
	if (tsv_path && !rate_only)
		tsv = fopen(tsv_path, "w");
	char *old_density = rate_only ? old_section(out_path, "\n## Density\n", NULL) : NULL;
	char *old_boot = rate_only ? old_section(out_path, "\n## Cold boot", "\n## ") : NULL;
	if (rate_only)
		boot_runs = 0;
	if (tsv)
		fprintf(tsv, "phase\ti\ta\tb\n");

	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* 1. cold boot, mote vs QEMU */
	struct boot_cmp boot = { 0 };
	if (boot_runs > 0)
		bench_boot(mote, image, boot_runs, &boot);

	/* the daemon */
	snprintf(sock, sizeof(sock), "%s.sock", state);
	char log_path[128];
	snprintf(log_path, sizeof(log_path), "%s.log", state);
	uint64_t avail0 = mem_available_kib();
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		char *da[] = { (char *)fnd, "--sock", sock, "--state-dir", (char *)state,
			       "--min-free-mib", "1024", "--restore-timeout-ms", "30000",
			       "--boot-timeout-ms", "60000", no_jail ? "--no-jail" : NULL, NULL };
		execv(fnd, da);
		_exit(127);
	}
	daemon_pid = pid;
	for (int i = 0; i < 300; i++) {
		struct stat st;
		if (stat(sock, &st) == 0)
			break;
		usleep(10000);
	}
	progress("mote-fnd pid %d (%s), log %s", (int)pid, no_jail ? "not jailed" : "jailed",
		 log_path);

	/* 2a. start rate by cold boot */
	struct scale_res cold = { 0 }, warm = { 0 }, tmpl = { 0 }, seq = { 0 }, seq_sb = { 0 };
	double cpu_p50 = -1, cpu_vcpu_p50 = -1;
	int cpu_n = 0;
	if (!interrupted && reg("coldfn", image, false, rate_n, 0)) {
		progress("start rate: %d cold boots, %d at a time", rate_n, parallel);
		scale("coldfn", rate_n, parallel, &cold);
		progress("cold boot: %lld of %d started, %.1f/s, first response p50 %.1f ms p99 %.1f ms%s%s",
			 cold.started, rate_n, cold.per_s, cold.p50_ms, cold.p99_ms,
			 cold.error[0] ? "; first error: " : "", cold.error);
		unreg("coldfn");
		for (int i = 0; i < 600 && !interrupted && fn_live("coldfn", NULL) > 0; i++)
			usleep(100000);
	}

	/* 2b. start rate from the warm snapshot */
	bool snap_ok = false;
	char snap_note[512] = "";
	if (!interrupted && reg("fn", image, true, 20000, 0)) {
		scale("fn", 1, 1, &tmpl); /* the template: boot + snapshot */
		json_t *o = NULL;
		fn_live("fn", &o);
		json_t *s = json_object_get(o, "snapshot");
		snap_ok = json_is_string(s) && !strcmp(json_string_value(s), "ready");
		json_t *note = json_object_get(o, "snapshot_note");
		if (json_is_string(note))
			snprintf(snap_note, sizeof(snap_note), "%s", json_string_value(note));
		json_decref(o);
		progress("template booted in %.1f ms; warm snapshot: %s %s", tmpl.wall_ms,
			 snap_ok ? "ready" : "NOT available:", snap_note);
		progress("start rate: %d starts %s, %d at a time", rate_n,
			 snap_ok ? "from the snapshot" : "(cold boots: no snapshot)", parallel);
		scale("fn", rate_n, parallel, &warm);
		progress("%s: %lld of %d started, %.1f/s, first response p50 %.2f ms p99 %.2f ms%s%s",
			 snap_ok ? "snapshot clone" : "cold boot", warm.started, rate_n, warm.per_s,
			 warm.p50_ms, warm.p99_ms, warm.error[0] ? "; first error: " : "", warm.error);
		progress("  phases p50: spawn->exec %.2f ms, to stream accepted %.2f ms, to answer %.2f "
			 "ms; the launcher's loop %.3f ms per start (p99 %.3f)",
			 warm.spawn_ms, warm.accept_ms, warm.answer_ms, warm.loop_ms, warm.loop_p99_ms);
		clone_cpu("fn", &cpu_p50, &cpu_vcpu_p50, &cpu_n);
		progress("  CPU per clone (jailer + monitor + guest, all threads so far): p50 %.1f ms, "
			 "of which the vCPU %.1f ms (%d clones)", cpu_p50, cpu_vcpu_p50, cpu_n);
		/* one at a time: the latency of a start on an otherwise quiet
		 * launcher; 200 starts, so p99 is not simply the slowest one */
		int n1 = SEQ_N(rate_n);
		progress("start latency: %d starts from the snapshot, one at a time", n1);
		scale("fn", n1, 1, &seq);
		progress("one at a time: %lld of %d started, %.1f/s, first response p50 %.2f ms p99 "
			 "%.2f ms; phases p50: spawn %.2f, to accepted %.2f, to answer %.2f ms",
			 seq.started, n1, seq.per_s, seq.p50_ms, seq.p99_ms, seq.spawn_ms, seq.accept_ms,
			 seq.answer_ms);
	}
	/* The same one at a time with a standby clone (the spec's "standby":
	 * 1): each start takes a clone restored and paused ahead of time and
	 * makes the next one, so the jail, the exec and the restore are off
	 * its path. A function of its own, gone before the density part. */
	if (!interrupted && snap_ok && standby > 0 && reg("fnsb", image, true, 20000, standby)) {
		struct scale_res t = { 0 };
		int n1 = SEQ_N(rate_n);
		scale("fnsb", 1, 1, &t); /* its template; the first standby follows */
		usleep(200000);
		progress("start latency: %d starts taking a standby clone, one at a time", n1);
		scale("fnsb", n1, 1, &seq_sb);
		progress("standby, one at a time: %lld of %d started, %.1f/s, first response p50 %.2f "
			 "ms p99 %.2f ms; phases p50: to accepted %.2f, to answer %.2f ms%s%s",
			 seq_sb.started, n1, seq_sb.per_s, seq_sb.p50_ms, seq_sb.p99_ms,
			 seq_sb.accept_ms, seq_sb.answer_ms, seq_sb.error[0] ? "; first error: " : "",
			 seq_sb.error);
		unreg("fnsb");
		for (int i = 0; i < 600 && !interrupted && fn_live("fnsb", NULL) > 0; i++)
			usleep(100000);
	}

	/* 3. density: add idle clones until the target or a refusal */
	double t_dens = now_ms();
	long long live = fn_live("fn", NULL);
	char stop_reason[300] = "target reached";
	while (!rate_only && !interrupted && live >= 0 && live < target) {
		int add = target - (int)live < batch ? target - (int)live : batch;
		struct scale_res r;
		scale("fn", add, parallel, &r);
		live = fn_live("fn", NULL);
		uint64_t avail = mem_available_kib();
		progress("density: %lld live VMs (+%lld in %.1f s, %.0f/s), host MemAvailable %.1f GiB%s%s",
			 live, r.started, r.wall_ms / 1000, r.per_s, (double)avail / 1048576,
			 r.error[0] ? "; " : "", r.error);
		if (tsv)
			fprintf(tsv, "density\t%lld\t%.3f\t%llu\n", live, r.per_s, (unsigned long long)avail);
		if (r.started < add) {
			snprintf(stop_reason, sizeof(stop_reason), "refused: %s",
				 r.error[0] ? r.error : "(no message)");
			break;
		}
	}
	if (interrupted)
		snprintf(stop_reason, sizeof(stop_reason), "interrupted");
	double dens_s = (now_ms() - t_dens) / 1000;
	uint64_t avail1 = mem_available_kib();

	/* memory of every monitor */
	struct pss tot = { 0 };
	long long measured = 0;
	json_t *fo = NULL;
	live = fn_live("fn", &fo);
	json_t *list = json_object_get(fo, "instance_list");
	size_t i;
	json_t *it;
	json_array_foreach(list, i, it) {
		pid_t p = (pid_t)json_integer_value(json_object_get(it, "pid"));
		if (!rate_only && p > 0 && read_pss(p, 16 * 1024, &tot))
			measured++;
	}
	json_decref(fo);
	struct pss dpss = { 0 };
	read_pss(pid, 1u << 30, &dpss);
	progress("memory: %lld monitors, PSS guest %.1f MiB + monitor %.1f MiB, RSS %.1f MiB",
		 measured, tot.guest / 1024.0, tot.monitor / 1024.0, tot.rss / 1024.0);

	/* every VM answers */
	long long answered = -1;
	double check_s = 0, check_p50 = -1, check_p99 = -1;
	if (!interrupted && !rate_only) {
		int st;
		double t0 = now_ms();
		json_t *o = api("POST", "/functions/fn/check", "{\"parallel\": 1}", &st);
		check_s = (now_ms() - t0) / 1000;
		answered = jint(o, "answered");
		check_p50 = (double)jint(o, "first_response_us.p50") / 1000;
		check_p99 = (double)jint(o, "first_response_us.p99") / 1000;
		progress("check: %lld of %lld answered in %.1f s (warm invocation p50 %.2f ms, p99 "
			 "%.2f ms)", answered, live, check_s, check_p50, check_p99);
		json_decref(o);
	}

	/* stop everything; remember the monitors, in case the daemon could
	 * not (jailed monitors do not die with it) */
	pid_t *left = NULL;
	size_t nleft = 0;
	json_t *lo = NULL;
	fn_live("fn", &lo);
	json_t *ll = json_object_get(lo, "instance_list");
	left = calloc(json_array_size(ll) + 1, sizeof(pid_t));
	json_array_foreach(ll, i, it)
		if (left)
			left[nleft++] = (pid_t)json_integer_value(json_object_get(it, "pid"));
	json_decref(lo);
	kill(pid, SIGTERM);
	int wst = 0;
	for (int k = 0; k < 1200 && waitpid(pid, &wst, WNOHANG) != pid; k++)
		usleep(100000);
	if (waitpid(pid, &wst, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &wst, 0);
	}
	daemon_pid = 0;
	unsigned killed = 0;
	for (size_t k = 0; k < nleft; k++) {
		char path[64], comm[32] = "";
		snprintf(path, sizeof(path), "/proc/%d/comm", (int)left[k]);
		FILE *cf = fopen(path, "r");
		if (cf && fgets(comm, sizeof(comm), cf) && !strncmp(comm, "mote", 4) &&
		    kill(left[k], SIGKILL) == 0)
			killed++;
		if (cf)
			fclose(cf);
	}
	free(left);
	progress("mote-fnd stopped (%s)%s", WIFEXITED(wst) ? "exit" : "signal",
		 killed ? "; killed monitors it left" : "");

	/* report */
	FILE *o = fopen(out_path, "w");
	if (!o) {
		perror(out_path);
		return 1;
	}
	double per_vm_guest = measured ? tot.guest / 1024.0 / measured : -1;
	double per_vm_mon = measured ? tot.monitor / 1024.0 / measured : -1;
	double host_per_vm = live > 0 ? ((double)avail0 - (double)avail1) / 1024.0 / live : -1;
	fprintf(o, "# Density and start rate (mote-fnd)\n\n");
	fprintf(o, "Produced by `benches/density/run.sh` (%s, %s). Function: `%s` (echo), 16 MiB, "
		   "1 vCPU, one instance per VM. Guest-side times were taken under nested "
		   "software virtualization (CPL0 guest code is emulated here; see "
		   "`../shared/ENVIRONMENT.md`): the cold-boot rows are dominated by that, the "
		   "monitor-side costs (restore, memory, launcher) are real.\n\n",
		 no_jail ? "monitors not jailed" : "every monitor jailed by mote-jailer", "2 cores",
		 image);
	if (old_boot) {
		fprintf(o, "%s", old_boot);
		if (!strstr(old_boot, "(Carried over"))
			fprintf(o, "(Carried over from the last full run: this one was "
				   "`--rate-only`.)\n\n");
	} else if (!rate_only) {
	fprintf(o, "## Cold boot to the runtime's ready line (serial), same image\n\n");
	fprintf(o, "| monitor | runs | min ms | p50 ms | p99 ms |\n|---|---|---|---|---|\n");
	fprintf(o, "| mote | %d | %.1f | %.1f | %.1f |\n", boot.mote_ok, boot.mote_min, boot.mote_p50,
		boot.mote_p99);
	fprintf(o, "| mote, no vsock device (what QEMU has here) | %d | %.1f | %.1f | %.1f |\n",
		boot.nov_ok, boot.nov_min, boot.nov_p50, boot.nov_p99);
	fprintf(o, "| QEMU -M microvm (no vhost-vsock on this host) | %d | %.1f | %.1f | %.1f |\n\n",
		boot.qemu_ok, boot.qemu_min, boot.qemu_p50, boot.qemu_p99);
	}
	fprintf(o, "## Start rate through the launcher (%d starts, %d at a time)\n\n", rate_n, parallel);
	fprintf(o, "Request → first response: from the scale request's start of one instance to "
		   "its first answer (spawn, boot or restore, vsock handshake, one echo).\n\n");
	fprintf(o, "| start | started | starts/s | p50 ms | p99 ms | max ms | goal |\n"
		   "|---|---|---|---|---|---|---|\n");
	fprintf(o, "| cold boot | %lld/%d | %.1f | %.1f | %.1f | %.1f | — |\n", cold.started, rate_n,
		cold.per_s, cold.p50_ms, cold.p99_ms, cold.max_ms);
	fprintf(o, "| %s | %lld/%d | %.1f | %.2f | %.2f | %.2f | ≥ 500/s, p99 ≤ 10 ms |\n",
		snap_ok ? "snapshot clone" : "snapshot clone (unavailable: cold boot)", warm.started,
		rate_n, warm.per_s, warm.p50_ms, warm.p99_ms, warm.max_ms);
	fprintf(o, "| %s, one at a time | %lld/%d | %.1f | %.2f | %.2f | %.2f | p99 ≤ 10 ms |\n",
		snap_ok ? "snapshot clone" : "cold boot", seq.started, SEQ_N(rate_n),
		seq.per_s, seq.p50_ms, seq.p99_ms, seq.max_ms);
	if (seq_sb.requested)
		fprintf(o, "| snapshot clone taken from standby (`\"standby\": %d`), one at a time | "
			   "%lld/%d | %.1f | %.2f | %.2f | %.2f | p99 ≤ 10 ms |\n",
			standby, seq_sb.started, SEQ_N(rate_n), seq_sb.per_s, seq_sb.p50_ms,
			seq_sb.p99_ms, seq_sb.max_ms);
	fprintf(o, "\n");
	if (seq_sb.requested)
		fprintf(o, "A standby clone was jailed, exec'd and restored (paused, `mote --standby`) "
			   "before its start: the start tells it to run (SIGUSR2 once its socket "
			   "answers) and makes the next one. The one-at-a-time row before it is the "
			   "whole path, jail + exec + restore included; what is left on the standby's "
			   "path is the guest's own work (its transport reset, the CONNECT, the "
			   "request), emulated CPL0 code here.\n\n");
	if (!snap_ok)
		fprintf(o, "The warm snapshot could not be made: %s\n\n", snap_note);
	fprintf(o, "Where a start's time goes (p50, ms): the spawn request → the exec seen by "
		   "the launcher's spawner process (clone + exec of the jailer, or of mote); exec → "
		   "the runtime accepted the stream (the jail, the monitor's restore or boot, then "
		   "the guest's vsock work, which is emulated CPL0 code here); accepted → answer (the "
		   "request through the guest and back); and what each start cost the launcher's "
		   "event loop itself (it does not wait for the exec).\n\n");
	fprintf(o, "| start | spawn → exec | → stream accepted (p50 / p99) | → answer | launcher loop "
		   "per start (p50 / p99) |\n|---|---|---|---|---|\n");
	fprintf(o, "| cold boot | %.2f | %.2f / %.2f | %.2f | %.3f / %.3f |\n", cold.spawn_ms,
		cold.accept_ms, cold.accept_p99_ms, cold.answer_ms, cold.loop_ms, cold.loop_p99_ms);
	fprintf(o, "| %s | %.2f | %.2f / %.2f | %.2f | %.3f / %.3f |\n",
		snap_ok ? "snapshot clone" : "(cold boot)", warm.spawn_ms, warm.accept_ms,
		warm.accept_p99_ms, warm.answer_ms, warm.loop_ms, warm.loop_p99_ms);
	fprintf(o, "| %s, one at a time | %.2f | %.2f / %.2f | %.2f | %.3f / %.3f |\n",
		snap_ok ? "snapshot clone" : "(cold boot)", seq.spawn_ms, seq.accept_ms,
		seq.accept_p99_ms, seq.answer_ms, seq.loop_ms, seq.loop_p99_ms);
	if (seq_sb.requested)
		fprintf(o, "| taken from standby, one at a time | %.2f | %.2f / %.2f | %.2f | %.3f / "
			   "%.3f |\n",
			seq_sb.spawn_ms, seq_sb.accept_ms, seq_sb.accept_p99_ms, seq_sb.answer_ms,
			seq_sb.loop_ms, seq_sb.loop_p99_ms);
	fprintf(o, "\n");
	fprintf(o, "CPU time per snapshot clone (all its threads, from the jailer's start to its "
		   "first answer; median of %d): %.1f ms, of which the guest's vCPU %.1f ms. With 2 "
		   "CPUs that bounds clone starts at ~%.0f/s on this host.\n\n",
		cpu_n, cpu_p50, cpu_vcpu_p50, cpu_p50 > 0 ? 2000.0 / cpu_p50 : 0);
	if (old_density) {
		fprintf(o, "%s", old_density);
		fclose(o);
		free(old_density);
		free(old_boot);
		progress("report: %s (density part carried over)", out_path);
		return interrupted ? 130 : 0;
	}
	fprintf(o, "## Density\n\n| measure | value | goal |\n|---|---|---|\n");
	fprintf(o, "| live VMs | %lld (stopped: %s) | ≥ 5,000 |\n", live, stop_reason);
	fprintf(o, "| time to add them | %.1f s | |\n", dens_s);
	fprintf(o, "| every VM answers | %lld of %lld (%.1f s) | all |\n", answered, live, check_s);
	fprintf(o, "| warm invocation of each idle VM in turn, request → response | p50 %.2f ms, p99 %.2f ms | |\n",
		check_p50, check_p99);
	fprintf(o, "| PSS per VM, monitor (all but guest RAM) | %.3f MiB | ≤ 1 MiB |\n", per_vm_mon);
	fprintf(o, "| PSS per VM, guest RAM | %.3f MiB | |\n", per_vm_guest);
	fprintf(o, "| RSS per VM (shared pages counted in each) | %.2f MiB | |\n",
		measured ? tot.rss / 1024.0 / measured : -1);
	fprintf(o, "| private dirty per VM | %.3f MiB | |\n",
		measured ? tot.priv_dirty / 1024.0 / measured : -1);
	fprintf(o, "| host memory used per VM (MemAvailable drop / VMs, includes kernel/KVM) | %.3f MiB | |\n",
		host_per_vm);
	fprintf(o, "| host MemAvailable before / at the end | %.1f / %.1f GiB | |\n",
		(double)avail0 / 1048576, (double)avail1 / 1048576);
	fprintf(o, "| mote-fnd PSS | %.1f MiB (%.2f KiB per VM) | |\n\n",
		(dpss.guest + dpss.monitor) / 1024.0,
		live > 0 ? (double)(dpss.guest + dpss.monitor) / live : -1);
	fclose(o);
	if (tsv)
		fclose(tsv);
	progress("report: %s", out_path);
	return interrupted ? 130 : 0;
}
