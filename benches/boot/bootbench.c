/*
 * bootbench - run a VM monitor command N times, one at a time, and time it.
 *
 * For every run the child takes CLOCK_MONOTONIC right before execve(), hands
 * that value to the command as MOTE_T0_NS (mote measures its own log times
 * from it; other programs ignore it) and stores it in a page shared with the
 * parent. The parent timestamps what it sees (first stdout byte, a marker
 * string on stdout, process exit through a pidfd) and subtracts the child's
 * t0, so every metric is measured from the same execve().
 *
 * Usage: bootbench [options] -- command [args...]
 *        bootbench -S FILE.tsv        summarize a TSV written with -o
 *
 * See benches/README.md for the metrics.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define NA (-1.0)
#define OBUF_MAX (32u << 20) /* keep at most this much output per stream */
#define FAIL_GRACE_NS 300000000ull /* kill this long after the failure marker */

struct opts {
	const char *label;
	const char *marker;      /* on stdout */
	const char *fail_marker; /* on stdout or stderr */
	const char *out_tsv;
	const char *save_dir;
	int runs;
	int first_index;
	double timeout_s;
	int kill_on_marker;
	int expect_code; /* -1: don't check */
	long guest_mib;  /* for the /proc sample at the marker; 0: no sample */
	int quiet;
	char **argv;
};

struct obuf {
	char *p;
	size_t len, cap;
	size_t dropped; /* bytes discarded from the front */
};

/* One run's results. Times are ms since the child's execve() or NA. */
struct result {
	double first_out, marker, fail, exit, end;
	double first_kvm_run, boot_timer;
	long maxrss_kib;
	/* /proc sample taken when the marker was seen (-g), -1 if none */
	long vmhwm_kib, vmrss_kib, rss_anon_kib, rss_file_kib, rss_shmem_kib, guest_rss_kib;
	int code;        /* exit code, or 128+signal */
	const char *how; /* exit, marker-kill, fail-kill, timeout */
	int ok;
};

struct shared {
	volatile uint64_t t0_ns;
	volatile int exec_errno;
};

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bootbench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double ms_since(uint64_t t, uint64_t t0)
{
	return t ? (double)(int64_t)(t - t0) / 1e6 : NA;
}

static void obuf_add(struct obuf *b, const char *d, size_t n)
{
	if (b->len + n > OBUF_MAX) {
		/* Drop the older half; marker search only looks at the tail. */
		size_t drop = b->len / 2;

		memmove(b->p, b->p + drop, b->len - drop);
		b->len -= drop;
		b->dropped += drop;
		if (n > OBUF_MAX / 2) {
			d += n - OBUF_MAX / 2;
			b->dropped += n - OBUF_MAX / 2;
			n = OBUF_MAX / 2;
		}
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 65536;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			die("out of memory");
		b->cap = cap;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* Search for s in the part of b that may contain a new match. */
static int obuf_find_new(const struct obuf *b, size_t before_len, const char *s)
{
	size_t sl = strlen(s);
	size_t from = before_len > sl ? before_len - sl + 1 : 0;

	if (!b->len || from >= b->len)
		return 0;
	return memmem(b->p + from, b->len - from, s, sl) != NULL;
}

static double parse_us_after(const struct obuf *b, const char *key)
{
	if (!b->len)
		return NA;
	const char *p = memmem(b->p, b->len, key, strlen(key));

	if (!p)
		return NA;
	p += strlen(key);
	char *end;
	unsigned long long v = strtoull(p, &end, 10);

	if (end == p || strncmp(end, " us", 3) != 0)
		return NA;
	return (double)v / 1000.0;
}

static char *resolve_path(const char *cmd)
{
	if (strchr(cmd, '/'))
		return strdup(cmd);
	const char *path = getenv("PATH");

	if (!path)
		path = "/usr/bin:/bin";
	char *copy = strdup(path), *save = NULL;

	for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		char buf[PATH_MAX];

		snprintf(buf, sizeof(buf), "%s/%s", *dir ? dir : ".", cmd);
		if (access(buf, X_OK) == 0) {
			free(copy);
			return strdup(buf);
		}
	}
	free(copy);
	die("%s: not found in PATH", cmd);
	return NULL;
}

/* environ without MOTE_T0_NS, plus a slot for it (filled in by the child). */
static char **build_env(char *slot)
{
	size_t n = 0;

	for (char **e = environ; *e; e++)
		n++;
	char **env = calloc(n + 2, sizeof(*env));
	size_t j = 0;

	if (!env)
		die("out of memory");
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "MOTE_T0_NS=", 11) != 0)
			env[j++] = *e;
	env[j++] = slot;
	env[j] = NULL;
	return env;
}

static void u64_to_dec(uint64_t v, char *out)
{
	char tmp[24];
	int i = 0;

	do {
		tmp[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		*out++ = tmp[--i];
	*out = '\0';
}

static long status_field(const char *buf, const char *key)
{
	const char *p = strstr(buf, key);

	if (!p)
		return -1;
	return strtol(p + strlen(key), NULL, 10);
}

/* Memory of a live process: /proc/PID/status, and the resident part of the
 * guest RAM mapping (the VMA(s) exactly guest_mib MiB long) from smaps. */
static void sample_proc(pid_t pid, long guest_mib, struct result *r)
{
	char path[64], buf[8192];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f) {
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);

		buf[n] = '\0';
		fclose(f);
		r->vmhwm_kib = status_field(buf, "VmHWM:");
		r->vmrss_kib = status_field(buf, "VmRSS:");
		r->rss_anon_kib = status_field(buf, "RssAnon:");
		r->rss_file_kib = status_field(buf, "RssFile:");
		r->rss_shmem_kib = status_field(buf, "RssShmem:");
	}
	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return;
	long size = -1, guest = 0;
	int found = 0;

	while (fgets(buf, sizeof(buf), f)) {
		long v;

		if (sscanf(buf, "Size: %ld kB", &v) == 1) {
			size = v;
		} else if (sscanf(buf, "Rss: %ld kB", &v) == 1) {
			if (size == guest_mib * 1024) {
				guest += v;
				found = 1;
			}
		}
	}
	fclose(f);
	r->guest_rss_kib = found ? guest : -1;
}

static void save_output(const struct opts *o, int idx, const char *ext, const struct obuf *b)
{
	char path[PATH_MAX];

	if (!o->save_dir)
		return;
	snprintf(path, sizeof(path), "%s/%s.%d.%s", o->save_dir, o->label, idx, ext);
	FILE *f = fopen(path, "w");

	if (!f)
		die("%s: %s", path, strerror(errno));
	if (b->dropped)
		fprintf(f, "[bootbench: %zu earlier bytes dropped]\n", b->dropped);
	if (b->len)
		fwrite(b->p, 1, b->len, f);
	fclose(f);
}

static void run_once(const struct opts *o, const char *exe, int idx, struct result *r)
{
	static char env_slot[64];
	int out[2], err[2];
	struct shared *sh;

	memset(r, 0, sizeof(*r));
	r->vmhwm_kib = r->vmrss_kib = r->rss_anon_kib = r->rss_file_kib = -1;
	r->rss_shmem_kib = r->guest_rss_kib = -1;
	r->maxrss_kib = -1;

	sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	sh->t0_ns = 0;
	sh->exec_errno = 0;
	if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
		die("pipe: %s", strerror(errno));
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

	if (devnull < 0)
		die("/dev/null: %s", strerror(errno));
	strcpy(env_slot, "MOTE_T0_NS=");
	char **env = build_env(env_slot);
	char *digits = env_slot + strlen(env_slot);

	fflush(NULL);
	pid_t pid = fork();

	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);
		if (dup2(devnull, 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
			_exit(127);
		uint64_t t0 = now_ns();

		u64_to_dec(t0, digits);
		sh->t0_ns = t0;
		execve(exe, o->argv, env);
		sh->exec_errno = errno;
		_exit(127);
	}
	setpgid(pid, pid); /* also done by the child; whichever comes first */
	free(env);
	close(devnull);
	close(out[1]);
	close(err[1]);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(err[0], F_SETFL, O_NONBLOCK);

	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	uint64_t deadline = now_ns() + (uint64_t)(o->timeout_s * 1e9);
	uint64_t t_first = 0, t_marker = 0, t_fail = 0, t_exit = 0, t_kill = 0, fail_kill_at = 0;
	struct obuf bo = { 0 }, be = { 0 };
	int out_open = 1, err_open = 1, exited = 0, status = 0;
	struct rusage ru;
	const char *how = NULL;

	memset(&ru, 0, sizeof(ru));
	for (;;) {
		struct pollfd pf[3];
		int nf = 0, i_out = -1, i_err = -1, i_pid = -1;

		if (out_open) {
			pf[nf] = (struct pollfd){ .fd = out[0], .events = POLLIN };
			i_out = nf++;
		}
		if (err_open) {
			pf[nf] = (struct pollfd){ .fd = err[0], .events = POLLIN };
			i_err = nf++;
		}
		if (pidfd >= 0 && !exited) {
			pf[nf] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
			i_pid = nf++;
		}
		if (exited && !out_open && !err_open)
			break;
		if (!exited && pidfd < 0 && !out_open && !err_open) {
			/* no pidfd: the pipes closed, so the process is (nearly) gone */
			if (wait4(pid, &status, 0, &ru) == pid) {
				t_exit = now_ns();
				exited = 1;
			}
			break;
		}
		int64_t left_ms = ((int64_t)deadline - (int64_t)now_ns()) / 1000000;
		int rc;

		if (exited)
			left_ms = 1000; /* draining after exit */
		if (left_ms < 0)
			left_ms = 0;
		rc = poll(pf, (nfds_t)nf, (int)left_ms);
		uint64_t t = now_ns();

		if (rc < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (rc == 0 && exited)
			break; /* somebody else holds the pipes open */
		if (!exited && t >= deadline) {
			if (t_kill)
				die("child %d did not die after SIGKILL", (int)pid);
			/* the timeout, or the grace period after the failure marker */
			how = fail_kill_at ? "fail-kill" : "timeout";
			t_kill = t;
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			deadline = t + 5000000000ull;
		}
		if (i_out >= 0 && pf[i_out].revents) {
			char buf[65536];
			ssize_t n;

			while ((n = read(out[0], buf, sizeof(buf))) > 0) {
				size_t before = bo.len;

				if (!t_first)
					t_first = t;
				obuf_add(&bo, buf, (size_t)n);
				if (o->marker && !t_marker && obuf_find_new(&bo, before, o->marker)) {
					t_marker = t;
					if (o->guest_mib && !exited)
						sample_proc(pid, o->guest_mib, r);
				}
				if (o->fail_marker && !t_fail && obuf_find_new(&bo, before, o->fail_marker))
					t_fail = t;
			}
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				out_open = 0;
				close(out[0]);
			}
		}
		if (i_err >= 0 && pf[i_err].revents) {
			char buf[65536];
			ssize_t n;

			while ((n = read(err[0], buf, sizeof(buf))) > 0) {
				size_t before = be.len;

				obuf_add(&be, buf, (size_t)n);
				if (o->fail_marker && !t_fail && obuf_find_new(&be, before, o->fail_marker))
					t_fail = t;
			}
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				err_open = 0;
				close(err[0]);
			}
		}
		if (i_pid >= 0 && (pf[i_pid].revents & POLLIN)) {
			t_exit = t;
			if (wait4(pid, &status, 0, &ru) == pid)
				exited = 1;
			else
				die("wait4: %s", strerror(errno));
			deadline = t + 1000000000ull;
		}
		if (!t_kill && !exited) {
			if (t_marker && o->kill_on_marker) {
				how = "marker-kill";
				t_kill = t;
				kill(-pid, SIGKILL);
				kill(pid, SIGKILL);
				deadline = t + 5000000000ull;
			} else if (t_fail && !fail_kill_at) {
				/* Let it finish reporting (QEMU prints the registers
				 * after the message), then kill it. */
				fail_kill_at = t + FAIL_GRACE_NS;
				if (fail_kill_at < deadline)
					deadline = fail_kill_at;
			}
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	if (out_open)
		close(out[0]);
	if (err_open)
		close(err[0]);
	if (!exited) {
		/* pipes stayed open after exit, or no pidfd: collect it now */
		if (wait4(pid, &status, 0, &ru) == pid && !t_exit)
			t_exit = now_ns();
	}
	if (sh->exec_errno)
		die("exec %s: %s", exe, strerror(sh->exec_errno));

	uint64_t t0 = sh->t0_ns;

	munmap(sh, 4096);
	r->first_out = ms_since(t_first, t0);
	r->marker = ms_since(t_marker, t0);
	r->fail = ms_since(t_fail, t0);
	r->end = ms_since(t_exit, t0);
	r->how = how ? how : "exit";
	r->exit = how ? NA : r->end;
	r->maxrss_kib = ru.ru_maxrss;
	r->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	r->first_kvm_run = parse_us_after(&be, "first KVM_RUN after ");
	r->boot_timer = parse_us_after(&be, "guest signalled boot after ");
	r->ok = 1;
	if (o->marker && !t_marker)
		r->ok = 0;
	if (o->expect_code >= 0 && !how && r->code != o->expect_code)
		r->ok = 0;
	if (o->expect_code >= 0 && how && strcmp(how, "marker-kill") != 0)
		r->ok = 0;
	if (t_fail || strcmp(r->how, "timeout") == 0)
		r->ok = 0;
	save_output(o, idx, "out", &bo);
	save_output(o, idx, "err", &be);
	free(bo.p);
	free(be.p);
}

/* ---- TSV ----------------------------------------------------------------- */

static const char *const cols[] = {
	"label",	 "run",		  "ok",		 "how",		 "code",
	"first_out_ms",	 "marker_ms",	  "fail_ms",	 "exit_ms",	 "end_ms",
	"first_kvm_run_ms", "boot_timer_ms", "maxrss_kib",	 "vmhwm_kib",	 "vmrss_kib",
	"rss_anon_kib",	 "rss_file_kib",  "rss_shmem_kib", "guest_rss_kib", "monitor_rss_kib",
};
#define NCOLS (sizeof(cols) / sizeof(cols[0]))
#define FIRST_METRIC 5

static void put_ms(FILE *f, double v)
{
	if (v < 0)
		fputs("\tNA", f);
	else
		fprintf(f, "\t%.3f", v);
}

static void put_kib(FILE *f, long v)
{
	if (v < 0)
		fputs("\tNA", f);
	else
		fprintf(f, "\t%ld", v);
}

static void print_header(FILE *f)
{
	for (size_t i = 0; i < NCOLS; i++)
		fprintf(f, "%s%s", i ? "\t" : "", cols[i]);
	fputc('\n', f);
}

static void print_row(FILE *f, const char *label, int idx, const struct result *r)
{
	fprintf(f, "%s\t%d\t%d\t%s\t%d", label, idx, r->ok, r->how, r->code);
	put_ms(f, r->first_out);
	put_ms(f, r->marker);
	put_ms(f, r->fail);
	put_ms(f, r->exit);
	put_ms(f, r->end);
	put_ms(f, r->first_kvm_run);
	put_ms(f, r->boot_timer);
	put_kib(f, r->maxrss_kib);
	put_kib(f, r->vmhwm_kib);
	put_kib(f, r->vmrss_kib);
	put_kib(f, r->rss_anon_kib);
	put_kib(f, r->rss_file_kib);
	put_kib(f, r->rss_shmem_kib);
	put_kib(f, r->guest_rss_kib);
	put_kib(f, (r->vmrss_kib >= 0 && r->guest_rss_kib >= 0) ? r->vmrss_kib - r->guest_rss_kib : -1);
	fputc('\n', f);
}

/* ---- summary --------------------------------------------------------------- */

struct series {
	char label[128];
	double *v[NCOLS];
	size_t n[NCOLS];
	int runs, ok;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void summarize(FILE *f, struct series *s, size_t ns)
{
	fprintf(f, "label\tmetric\tn\tmin\tmedian\tp90\tmax\truns\tok\n");
	for (size_t i = 0; i < ns; i++) {
		for (size_t c = FIRST_METRIC; c < NCOLS; c++) {
			size_t n = s[i].n[c];
			double *v = s[i].v[c];

			if (!n)
				continue;
			qsort(v, n, sizeof(*v), cmp_double);
			double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
			size_t k = (size_t)((9 * n + 9) / 10); /* nearest rank: ceil(0.9 n) */

			fprintf(f, "%s\t%s\t%zu\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t%d\n", s[i].label,
				cols[c], n, v[0], med, v[k - 1], v[n - 1], s[i].runs, s[i].ok);
		}
	}
}

static struct series *series_get(struct series **s, size_t *ns, const char *label)
{
	for (size_t i = 0; i < *ns; i++)
		if (strcmp((*s)[i].label, label) == 0)
			return &(*s)[i];
	*s = realloc(*s, (*ns + 1) * sizeof(**s));
	if (!*s)
		die("out of memory");
	struct series *n = &(*s)[(*ns)++];

	memset(n, 0, sizeof(*n));
	snprintf(n->label, sizeof(n->label), "%s", label);
	return n;
}

static void series_add(struct series *s, size_t col, double v)
{
	if (v < 0)
		return;
	s->v[col] = realloc(s->v[col], (s->n[col] + 1) * sizeof(double));
	if (!s->v[col])
		die("out of memory");
	s->v[col][s->n[col]++] = v;
}

static int summary_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	struct series *s = NULL;
	size_t ns = 0;

	if (!f)
		die("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char *save = NULL, *fld[NCOLS];
		size_t n = 0;

		line[strcspn(line, "\n")] = '\0';
		if (!line[0] || line[0] == '#' || strncmp(line, "label\t", 6) == 0)
			continue;
		for (char *t = strtok_r(line, "\t", &save); t && n < NCOLS; t = strtok_r(NULL, "\t", &save))
			fld[n++] = t;
		if (n != NCOLS)
			die("%s: malformed row (%zu fields)", path, n);
		struct series *se = series_get(&s, &ns, fld[0]);

		se->runs++;
		se->ok += atoi(fld[2]);
		for (size_t c = FIRST_METRIC; c < NCOLS; c++)
			if (strcmp(fld[c], "NA") != 0)
				series_add(se, c, strtod(fld[c], NULL));
	}
	fclose(f);
	summarize(stdout, s, ns);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bootbench [options] -- command [args...]\n"
		"       bootbench -S FILE.tsv\n"
		"  -n N        runs (default 10)\n"
		"  -l LABEL    label for the rows (default: command basename)\n"
		"  -i N        number of the first run (default 1)\n"
		"  -m STR      marker on stdout: record exec->marker\n"
		"  -k          kill the process (SIGKILL) once the marker is seen\n"
		"  -f STR      failure marker on stdout/stderr: record it, kill 0.3 s later,\n"
		"              run not ok\n"
		"  -x CODE     expected exit code (run not ok otherwise)\n"
		"  -g MIB      at the marker, sample /proc/PID/status and the Rss of the\n"
		"              guest RAM mapping (the VMA exactly MIB MiB long)\n"
		"  -t SEC      timeout per run, then SIGKILL (default 30)\n"
		"  -o FILE     append TSV rows to FILE (header if empty)\n"
		"  -O DIR      save each run's stdout/stderr to DIR/LABEL.RUN.{out,err}\n"
		"  -q          no per-run progress on stderr, no summary\n"
		"  -S FILE     print min/median/p90/max per label and metric of FILE\n");
}

int main(int argc, char **argv)
{
	struct opts o = { .runs = 10, .first_index = 1, .timeout_s = 30, .expect_code = -1 };
	int c;

	signal(SIGPIPE, SIG_IGN);
	while ((c = getopt(argc, argv, "+n:l:i:m:kf:x:g:t:o:O:qS:h")) != -1) {
		switch (c) {
		case 'n': o.runs = atoi(optarg); break;
		case 'l': o.label = optarg; break;
		case 'i': o.first_index = atoi(optarg); break;
		case 'm': o.marker = optarg; break;
		case 'k': o.kill_on_marker = 1; break;
		case 'f': o.fail_marker = optarg; break;
		case 'x': o.expect_code = atoi(optarg); break;
		case 'g': o.guest_mib = atol(optarg); break;
		case 't': o.timeout_s = atof(optarg); break;
		case 'o': o.out_tsv = optarg; break;
		case 'O': o.save_dir = optarg; break;
		case 'q': o.quiet = 1; break;
		case 'S': return summary_file(optarg);
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc || o.runs < 1 || o.timeout_s <= 0) {
		usage(stderr);
		return 2;
	}
	o.argv = argv + optind;
	if (!o.label) {
		const char *b = strrchr(o.argv[0], '/');

		o.label = b ? b + 1 : o.argv[0];
	}
	char *exe = resolve_path(o.argv[0]);
	FILE *tsv = NULL;

	if (o.out_tsv) {
		struct stat st;

		tsv = fopen(o.out_tsv, "a");
		if (!tsv)
			die("%s: %s", o.out_tsv, strerror(errno));
		if (fstat(fileno(tsv), &st) == 0 && st.st_size == 0)
			print_header(tsv);
	}
	if (!o.quiet)
		print_header(stdout);

	struct series *s = NULL;
	size_t ns = 0;
	int all_ok = 1;

	for (int i = 0; i < o.runs; i++) {
		struct result r;
		int idx = o.first_index + i;

		if (!o.quiet)
			fprintf(stderr, "bootbench: %s run %d/%d\n", o.label, i + 1, o.runs);
		run_once(&o, exe, idx, &r);
		all_ok &= r.ok;
		if (tsv) {
			print_row(tsv, o.label, idx, &r);
			fflush(tsv);
		}
		if (!o.quiet) {
			print_row(stdout, o.label, idx, &r);
			fflush(stdout);
		}
		struct series *se = series_get(&s, &ns, o.label);
		double vals[NCOLS] = { 0 };

		vals[5] = r.first_out;
		vals[6] = r.marker;
		vals[7] = r.fail;
		vals[8] = r.exit;
		vals[9] = r.end;
		vals[10] = r.first_kvm_run;
		vals[11] = r.boot_timer;
		vals[12] = (double)r.maxrss_kib;
		vals[13] = (double)r.vmhwm_kib;
		vals[14] = (double)r.vmrss_kib;
		vals[15] = (double)r.rss_anon_kib;
		vals[16] = (double)r.rss_file_kib;
		vals[17] = (double)r.rss_shmem_kib;
		vals[18] = (double)r.guest_rss_kib;
		vals[19] = (r.vmrss_kib >= 0 && r.guest_rss_kib >= 0)
				   ? (double)(r.vmrss_kib - r.guest_rss_kib)
				   : NA;
		se->runs++;
		se->ok += r.ok;
		for (size_t col = FIRST_METRIC; col < NCOLS; col++)
			series_add(se, col, vals[col]);
	}
	if (tsv)
		fclose(tsv);
	if (!o.quiet) {
		printf("\n");
		summarize(stdout, s, ns);
	}
	free(exe);
	return all_ok ? 0 : 1;
}
