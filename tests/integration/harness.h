/* Integration-test helpers: run the mote binary with a timeout and
 * capture what it printed. Header-only so each test driver is one file. */
#ifndef MOTE_TESTS_HARNESS_H
#define MOTE_TESTS_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUN_MAX_ARGS 32
#define RUN_OUT_MAX (4 << 20)

struct run_result {
	int status;       /* exit code, or 128+signal */
	bool timed_out;
	char *out;        /* stdout, NUL-terminated */
	size_t out_len;
	char *err;        /* stderr, NUL-terminated */
	size_t err_len;
	double wall_ms;
	/* Milliseconds from start until `stop_marker` was first seen on stdout
	 * (then the child was killed), or -1. */
	double marker_ms;
};

static inline double harness_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline const char *harness_env(const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v) {
		fprintf(stderr, "harness: environment variable %s is not set; run through `make "
			"integration`\n", name);
		exit(2);
	}
	return v;
}

static inline void harness_append(char **buf, size_t *len, const char *data, size_t n)
{
	if (*len + n > RUN_OUT_MAX)
		n = RUN_OUT_MAX - *len;
	*buf = realloc(*buf, *len + n + 1);
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
}

typedef void (*harness_marker_fn)(void *arg);

/* The child of the harness_run_cb in progress, for on_marker to look at
 * (its /proc entries); 0 between runs. */
static pid_t harness_child_pid;

/* A child started without waiting for it (an API server under test):
 * harness_spawn() starts it with stdin from /dev/null, harness_proc_pump()
 * collects what it printed so far, harness_proc_finish() waits for it (or
 * kills it after timeout_s) and returns the usual run_result. */
struct harness_proc {
	pid_t pid;
	int out_fd, err_fd;
	int in_fd;        /* with harness_spawn_piped: the child's stdin */
	bool stdin_piped;
	char *out, *err;
	size_t out_len, err_len;
	double t0;
};

static inline void harness_spawn_io(struct harness_proc *p, char *const argv[], bool stdin_piped)
{
	int pi[2] = { -1, -1 }, po[2], pe[2];

	memset(p, 0, sizeof(*p));
	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC) || (stdin_piped && pipe2(pi, O_CLOEXEC))) {
		perror("pipe");
		exit(2);
	}
	p->out = calloc(1, 1);
	p->err = calloc(1, 1);
	p->t0 = harness_now_ms();
	pid_t parent = getpid();
	p->pid = fork();
	if (p->pid == 0) {
		/* A test that fails an assertion skips its clean-up: the child
		 * (a monitor, a daemon) must not outlive the test binary. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int in = stdin_piped ? pi[0] : open("/dev/null", O_RDONLY);
		dup2(in, 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	p->out_fd = po[0];
	p->err_fd = pe[0];
	p->in_fd = -1;
	if (stdin_piped) {
		close(pi[0]);
		p->in_fd = pi[1];
		p->stdin_piped = true;
	}
}

static inline void harness_spawn(struct harness_proc *p, char *const argv[])
{
	harness_spawn_io(p, argv, false);
}

/* As harness_spawn, with stdin a pipe (p->in_fd) that stays open until
 * harness_proc_finish: a child that reads it to EOF waits until then. */
static inline void harness_spawn_piped(struct harness_proc *p, char *const argv[])
{
	harness_spawn_io(p, argv, true);
}

/* Reads whatever the child printed, waiting at most timeout_ms for more. */
static inline void harness_proc_pump(struct harness_proc *p, int timeout_ms)
{
	struct pollfd pfd[2] = { { p->out_fd, POLLIN, 0 }, { p->err_fd, POLLIN, 0 } };

	if (poll(pfd, 2, timeout_ms) <= 0)
		return;
	for (int i = 0; i < 2; i++) {
		char buf[4096];
		ssize_t got;

		if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP)))
			continue;
		got = read(pfd[i].fd, buf, sizeof(buf));
		if (got <= 0) {
			close(pfd[i].fd);
			*(i == 0 ? &p->out_fd : &p->err_fd) = -1;
			continue;
		}
		if (i == 0)
			harness_append(&p->out, &p->out_len, buf, (size_t)got);
		else
			harness_append(&p->err, &p->err_len, buf, (size_t)got);
	}
}

/* Waits until needle shows up on stdout (on_err: stderr); false on timeout. */
static inline bool harness_proc_wait_for(struct harness_proc *p, const char *needle, bool on_err,
					 int timeout_s)
{
	double end = harness_now_ms() + timeout_s * 1e3;

	while (!strstr(on_err ? p->err : p->out, needle)) {
		if (harness_now_ms() > end || (p->out_fd < 0 && p->err_fd < 0))
			return false;
		harness_proc_pump(p, 50);
	}
	return true;
}

static inline bool harness_proc_alive(const struct harness_proc *p)
{
	return waitpid(p->pid, NULL, WNOHANG) == 0;
}

static inline struct run_result harness_proc_finish(struct harness_proc *p, int timeout_s)
{
	struct run_result r = { .marker_ms = -1 };
	double end = harness_now_ms() + timeout_s * 1e3;
	int st = 0;

	if (p->stdin_piped && p->in_fd >= 0) {
		close(p->in_fd);
		p->in_fd = -1;
	}
	while (p->out_fd >= 0 || p->err_fd >= 0) {
		if (harness_now_ms() > end && !r.timed_out) {
			r.timed_out = true;
			kill(p->pid, SIGKILL);
		}
		harness_proc_pump(p, 100);
	}
	waitpid(p->pid, &st, 0);
	r.wall_ms = harness_now_ms() - p->t0;
	r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	r.out = p->out;
	r.out_len = p->out_len;
	r.err = p->err;
	r.err_len = p->err_len;
	p->out = p->err = NULL;
	return r;
}

/* Runs argv (NULL-terminated) with stdin from /dev/null. If stop_marker is
 * non-NULL, the child is sent SIGTERM once that text shows up on stdout,
 * after on_marker (if any) ran while the child was still alive. */
static inline struct run_result harness_run_cb(char *const argv[], int timeout_s,
					       const char *stop_marker,
					       harness_marker_fn on_marker, void *arg)
{
	struct harness_proc p;
	struct run_result r;
	double marker_ms = -1;
	bool timed_out = false;

	harness_spawn(&p, argv);
	harness_child_pid = p.pid;
	while (p.out_fd >= 0 || p.err_fd >= 0) {
		double left = timeout_s * 1e3 - (harness_now_ms() - p.t0);
		if (left <= 0 && !timed_out) {
			timed_out = true;
			kill(p.pid, SIGKILL);
		}
		harness_proc_pump(&p, left > 0 ? (int)left + 1 : 1000);
		if (stop_marker && marker_ms < 0 && strstr(p.out, stop_marker)) {
			marker_ms = harness_now_ms() - p.t0;
			if (on_marker)
				on_marker(arg);
			kill(p.pid, SIGTERM);
		}
	}
	/* Both pipes are at EOF: this only reaps the child. */
	r = harness_proc_finish(&p, timeout_s);
	harness_child_pid = 0;
	r.timed_out = timed_out;
	r.marker_ms = marker_ms;
	return r;
}

static inline struct run_result harness_run(char *const argv[], int timeout_s,
					    const char *stop_marker)
{
	return harness_run_cb(argv, timeout_s, stop_marker, NULL, NULL);
}

static inline void harness_free(struct run_result *r)
{
	free(r->out);
	free(r->err);
}

/* Prints what the child printed, so a failing assertion has context. */
static inline void harness_dump(const struct run_result *r)
{
	fprintf(stderr, "--- exit %d%s, %.1f ms\n--- stdout (%zu bytes):\n%s\n--- stderr:\n%s\n---\n",
		r->status, r->timed_out ? " (TIMED OUT)" : "", r->wall_ms, r->out_len,
		r->out_len > 8192 ? r->out + r->out_len - 8192 : r->out, r->err);
}

/* Removes dir and everything below it (a test's temporary directory);
 * 0, or -1 if rm failed. */
static inline int harness_rm_rf(const char *dir)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A "<field> <n> kB" value of /proc/<pid>/<file> (status: "VmRSS:",
 * smaps_rollup: "Rss:", "Pss:"), in KiB; -1 if the file or field is missing. */
static inline long harness_proc_kib(pid_t pid, const char *file, const char *field)
{
	char path[64], line[256];
	long v = -1;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, field, strlen(field))) {
			v = atol(line + strlen(field));
			break;
		}
	}
	fclose(f);
	return v;
}

#define assert_output_contains(r, field, needle)                                          \
	do {                                                                               \
		if (!strstr((r)->field, (needle))) {                                       \
			harness_dump(r);                                                   \
			fail_msg("expected %s to contain \"%s\"", #field, (needle));       \
		}                                                                          \
	} while (0)

#define assert_exit_status(r, expected)                                                   \
	do {                                                                               \
		if ((r)->status != (expected)) {                                           \
			harness_dump(r);                                                   \
			fail_msg("exit status %d, expected %d", (r)->status, (expected));  \
		}                                                                          \
	} while (0)

#endif
