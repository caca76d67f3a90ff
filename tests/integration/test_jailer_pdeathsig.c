/* A jailed monitor dies with the process that started it: the kernel
 * clears a parent-death signal when the jailer changes uid/gid, so the
 * jailer arms the caller's one again before exec (mote-fnd relies on it:
 * a SIGKILLed daemon must not leak its VMs).
 *
 * Each test: a "daemon" process starts mote-jailer the way mote-fnd does
 * (PR_SET_PDEATHSIG SIGKILL in the child, then exec), the jailed mote runs
 * the spinning test guest, the daemon is SIGKILLed, and the monitor must be
 * gone (killed by SIGKILL) within a few seconds. This test is a child
 * subreaper, so the orphaned monitor becomes its child and its end can be
 * seen with waitpid.
 *
 * Root only (the jailer needs it). Environment: MOTE_JAILER, MOTE_BIN,
 * MOTE_GUEST. */
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#define JAIL_UID "12345"
#define START_TIMEOUT_MS 30000
#define DEATH_TIMEOUT_MS 5000
#define SPIN_MARKER "spinning until the host stops the VM"

static const char *jailer, *mote_bin, *guest_elf;
static char base[64];
static char id[64];

/* What one test started: the fake daemon, the jailer's process (the
 * monitor itself without --new-pid-ns) and the monitor. */
struct run {
	pid_t daemon, jailer, monitor;
	int out_fd;       /* the jailed processes' stdout+stderr */
	char out[16384];
	size_t out_len;
};

/* The fake daemon: starts the jailer as mote-fnd's proc_spawn does, tells
 * the test its pid, then waits to be killed. */
static void daemon_main(int report_fd, int out_fd, char *const argv[])
{
	pid_t c = fork();

	if (c == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		dup2(out_fd, 1);
		dup2(out_fd, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	if (write(report_fd, &c, sizeof(c)) != (ssize_t)sizeof(c))
		_exit(1);
	for (;;)
		pause();
}

static void start(struct run *r, bool new_pid_ns)
{
	char copy_in[PATH_MAX + 32];
	char *argv[32];
	int n = 0, rep[2], out[2];

	memset(r, 0, sizeof(*r));
	snprintf(copy_in, sizeof(copy_in), "%s:/guest.elf", guest_elf);
	argv[n++] = (char *)jailer;
	argv[n++] = "--id";
	argv[n++] = id;
	argv[n++] = "--exec-file";
	argv[n++] = (char *)mote_bin;
	argv[n++] = "--uid";
	argv[n++] = JAIL_UID;
	argv[n++] = "--gid";
	argv[n++] = JAIL_UID;
	argv[n++] = "--chroot-base-dir";
	argv[n++] = base;
	if (new_pid_ns)
		argv[n++] = "--new-pid-ns";
	argv[n++] = "--copy-in";
	argv[n++] = copy_in;
	argv[n++] = "--";
	argv[n++] = "--kernel";
	argv[n++] = "/guest.elf";
	argv[n++] = "--cmdline";
	argv[n++] = "test=spin";
	argv[n++] = "--no-api";
	argv[n] = NULL;
	assert_int_equal(pipe2(rep, O_CLOEXEC), 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	r->daemon = fork();
	assert_true(r->daemon >= 0);
	if (r->daemon == 0) {
		close(rep[0]);
		close(out[0]);
		daemon_main(rep[1], out[1], argv);
	}
	close(rep[1]);
	close(out[1]);
	r->out_fd = out[0];
	assert_int_equal(read(rep[0], &r->jailer, sizeof(r->jailer)), (ssize_t)sizeof(r->jailer));
	close(rep[0]);
	r->monitor = r->jailer;
}

/* Reads the jailed output until marker shows, or the timeout. */
static bool wait_output(struct run *r, const char *marker, int timeout_ms)
{
	double end = harness_now_ms() + timeout_ms;

	while (!strstr(r->out, marker)) {
		double left = end - harness_now_ms();
		struct pollfd p = { r->out_fd, POLLIN, 0 };

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return false;
		ssize_t k = read(r->out_fd, r->out + r->out_len, sizeof(r->out) - 1 - r->out_len);
		if (k <= 0)
			return false;
		r->out_len += (size_t)k;
		r->out[r->out_len] = '\0';
	}
	return true;
}

/* The only child of pid (the --new-pid-ns jailer's monitor), or 0. */
static pid_t only_child(pid_t pid)
{
	char path[64], buf[256];
	int fd;
	ssize_t k;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	k = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (k <= 0)
		return 0;
	buf[k] = '\0';
	return (pid_t)atoi(buf);
}

static bool uid_is(pid_t pid, const char *uid)
{
	char path[64], buf[4096], want[64];
	int fd;
	ssize_t k;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	k = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (k <= 0)
		return false;
	buf[k] = '\0';
	snprintf(want, sizeof(want), "\nUid:\t%s\t%s\t%s\t%s\n", uid, uid, uid, uid);
	return strstr(buf, want) != NULL;
}

/* Waits (we are their subreaper) for pid to end; true with its status. */
static bool reaped_within(pid_t pid, int timeout_ms, int *status)
{
	double end = harness_now_ms() + timeout_ms;

	for (;;) {
		pid_t w = waitpid(pid, status, WNOHANG);
		if (w == pid)
			return true;
		if (w < 0 || harness_now_ms() > end)
			return false;
		usleep(10000);
	}
}

static void kill_all(struct run *r)
{
	int st;

	kill(r->daemon, SIGKILL);
	kill(r->jailer, SIGKILL);
	if (r->monitor > 0)
		kill(r->monitor, SIGKILL);
	waitpid(r->daemon, &st, 0);
	reaped_within(r->jailer, 2000, &st);
	if (r->monitor > 0 && r->monitor != r->jailer)
		reaped_within(r->monitor, 2000, &st);
	close(r->out_fd);
}

static void run_until_spinning(struct run *r, bool new_pid_ns)
{
	start(r, new_pid_ns);
	if (!wait_output(r, SPIN_MARKER, START_TIMEOUT_MS)) {
		kill_all(r);
		fail_msg("the jailed guest did not start spinning; output:\n%s", r->out);
	}
	if (new_pid_ns) {
		r->monitor = only_child(r->jailer);
		if (r->monitor <= 0) {
			kill_all(r);
			fail_msg("no monitor under the --new-pid-ns jailer %d", (int)r->jailer);
		}
	}
	/* The monitor did change ids: the case where the kernel cleared the
	 * signal the daemon set. */
	if (!uid_is(r->monitor, JAIL_UID)) {
		kill_all(r);
		fail_msg("monitor %d does not run as uid %s", (int)r->monitor, JAIL_UID);
	}
}

/* SIGKILL to the daemon; every pid in pids must end by SIGKILL in time. */
static void kill_daemon_and_expect_gone(struct run *r, const pid_t *pids, size_t n)
{
	int st;
	double t0;

	assert_int_equal(kill(r->daemon, SIGKILL), 0);
	assert_int_equal(waitpid(r->daemon, &st, 0), r->daemon);
	t0 = harness_now_ms();
	for (size_t i = 0; i < n; i++) {
		if (!reaped_within(pids[i], DEATH_TIMEOUT_MS, &st)) {
			kill_all(r);
			fail_msg("process %d (%s) still runs %d ms after its daemon was killed",
				 (int)pids[i], pids[i] == r->monitor ? "the jailed monitor" : "the jailer",
				 DEATH_TIMEOUT_MS);
		}
		if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
			kill_all(r);
			fail_msg("process %d ended with status 0x%x, not by SIGKILL", (int)pids[i], st);
		}
	}
	fprintf(stderr, "  jailed monitor gone %.1f ms after its daemon was killed\n",
		harness_now_ms() - t0);
	close(r->out_fd);
}

/* The jailer becomes the monitor (mote-fnd's case): the daemon's
 * parent-death signal must survive the uid/gid change. */
static void test_monitor_dies_with_daemon(void **state)
{
	struct run r;

	(void)state;
	run_until_spinning(&r, false);
	assert_int_equal(r.monitor, r.jailer); /* exec'd in place */
	kill_daemon_and_expect_gone(&r, &r.monitor, 1);
}

/* --new-pid-ns: the jailer (still root) dies with the daemon, the monitor
 * (pid 1 of its namespace) with the jailer. */
static void test_new_pid_ns_monitor_dies_with_daemon(void **state)
{
	struct run r;

	(void)state;
	run_until_spinning(&r, true);
	pid_t both[2] = { r.jailer, r.monitor };
	kill_daemon_and_expect_gone(&r, both, 2);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

static int setup(void **state)
{
	static int seq;

	(void)state;
	snprintf(base, sizeof(base), "/tmp/mote-jail-pds-XXXXXX");
	if (!mkdtemp(base))
		return -1;
	snprintf(id, sizeof(id), "pds%d-%d", (int)getpid(), ++seq);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
	return 0;
}

int main(void)
{
	jailer = harness_env("MOTE_JAILER");
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	if (geteuid() != 0) {
		fprintf(stderr, "test_jailer_pdeathsig: FAIL: the jailer tests must run as root\n");
		return 1;
	}
	/* Orphans (the jailed monitor, once its daemon is gone) come to us. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) {
		perror("PR_SET_CHILD_SUBREAPER");
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_monitor_dies_with_daemon, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_pid_ns_monitor_dies_with_daemon, setup,
						teardown),
	};
	return cmocka_run_group_tests_name("integration: jailer parent-death signal", tests, NULL,
					   NULL);
}
