/* vmm/seccomp.c and vmm/caps.c: the allowlist tables themselves, and the
 * real filters loaded in forked children (a filter, once loaded, cannot be
 * taken off, so every test that loads one does it in a child; the parent
 * never calls seccomp_prepare, so each child starts unprepared). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/capability.h>
#include <seccomp.h>

#include <cmocka.h>

#include "vmm/caps.h"
#include "vmm/seccomp.h"

/* ---- the tables ---------------------------------------------------------- */

static bool has_rule(enum seccomp_thread kind, int nr, const char *value_name)
{
	const struct seccomp_rule *r;
	size_t n = seccomp_rules(kind, &r);

	for (size_t i = 0; i < n; i++)
		if (r[i].nr == nr &&
		    (!value_name || (r[i].value_name && !strcmp(r[i].value_name, value_name))))
			return true;
	return false;
}

static void test_tables_are_well_formed(void **state)
{
	(void)state;
	for (unsigned k = 0; k < SECCOMP_NR_THREADS; k++) {
		const struct seccomp_rule *r;
		size_t n = seccomp_rules(k, &r);

		assert_non_null(seccomp_thread_name(k));
		assert_true(n > 0 && n < 255); /* libseccomp priorities are 0..255 */
		for (size_t i = 0; i < n; i++) {
			/* Who needs it: a real sentence, not a placeholder. */
			assert_non_null(r[i].why);
			assert_true(strlen(r[i].why) >= 10);
			/* The number is the one libseccomp knows by that name. */
			assert_int_equal(r[i].nr, seccomp_syscall_resolve_name(r[i].name));
			assert_true(r[i].arg >= -1 && r[i].arg < 6);
			if (r[i].arg >= 0)
				assert_non_null(r[i].value_name);
			for (size_t j = 0; j < i; j++) {
				if (r[j].nr != r[i].nr)
					continue;
				/* A syscall is either allowed outright once, or
				 * only for listed values of one argument. */
				assert_true(r[i].arg >= 0 && r[j].arg == r[i].arg);
				assert_true(r[j].value != r[i].value);
			}
		}
	}
}

static void test_ioctl_only_by_request(void **state)
{
	(void)state;
	for (unsigned k = 0; k < SECCOMP_NR_THREADS; k++) {
		const struct seccomp_rule *r;
		size_t n = seccomp_rules(k, &r);

		for (size_t i = 0; i < n; i++)
			if (r[i].nr == SCMP_SYS(ioctl))
				assert_int_equal(r[i].arg, 1);
	}
	/* Running the guest is the vCPU's business alone. */
	assert_true(has_rule(SECCOMP_VCPU, SCMP_SYS(ioctl), "KVM_RUN"));
	assert_false(has_rule(SECCOMP_VMM, SCMP_SYS(ioctl), "KVM_RUN"));
	/* Nothing may create VMs, vCPUs or memory slots once filtered. */
	for (unsigned k = 0; k < SECCOMP_NR_THREADS; k++) {
		assert_false(has_rule(k, SCMP_SYS(ioctl), "KVM_CREATE_VM"));
		assert_false(has_rule(k, SCMP_SYS(ioctl), "KVM_CREATE_VCPU"));
		assert_false(has_rule(k, SCMP_SYS(ioctl), "KVM_SET_USER_MEMORY_REGION"));
		assert_false(has_rule(k, SCMP_SYS(open), NULL));
		/* openat only on the VMM thread, only to create files to write
		 * or open directories (snapshot/create): never to read a file. */
		const struct seccomp_rule *o;
		size_t no = seccomp_rules(k, &o);
		for (size_t i = 0; i < no; i++) {
			if (o[i].nr != SCMP_SYS(openat))
				continue;
			assert_int_equal(k, SECCOMP_VMM);
			assert_int_equal(o[i].arg, 2);
			assert_true(o[i].value == (O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC) ||
				    o[i].value == (O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		}
		assert_false(has_rule(k, SCMP_SYS(execve), NULL));
		assert_false(has_rule(k, SCMP_SYS(mprotect), NULL));
		/* mmap only for malloc: readable+writable, never executable. */
		const struct seccomp_rule *r;
		size_t n = seccomp_rules(k, &r);
		for (size_t i = 0; i < n; i++) {
			if (r[i].nr != SCMP_SYS(mmap))
				continue;
			assert_int_equal(r[i].arg, 2);
			assert_int_equal(r[i].value, PROT_READ | PROT_WRITE);
		}
		/* What the --seccomp-debug handler needs on every thread. */
		assert_true(has_rule(k, SCMP_SYS(write), NULL));
		assert_true(has_rule(k, SCMP_SYS(exit_group), NULL));
	}
}

static void test_counts_below_firecracker(void **state)
{
	(void)state;
	for (unsigned k = 0; k < SECCOMP_NR_THREADS; k++) {
		unsigned n = seccomp_count_syscalls(k);

		assert_true(n > 0);
		assert_true(n < seccomp_firecracker_count(k));
	}
	/* ioctl counts once however many requests are listed. */
	const struct seccomp_rule *r;
	size_t nr_rules = seccomp_rules(SECCOMP_VCPU, &r);
	assert_true(seccomp_count_syscalls(SECCOMP_VCPU) < nr_rules);
}

static void test_print_lists_every_rule(void **state)
{
	(void)state;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_int_equal(seccomp_print(f), 0);
	fclose(f);
	for (unsigned k = 0; k < SECCOMP_NR_THREADS; k++) {
		char head[64];
		const struct seccomp_rule *r;
		size_t n = seccomp_rules(k, &r);

		snprintf(head, sizeof(head), "%s thread: %u syscalls (Firecracker's %s filter: %u)",
			 seccomp_thread_name(k), seccomp_count_syscalls(k), seccomp_thread_name(k),
			 seccomp_firecracker_count(k));
		assert_non_null(strstr(buf, head));
		for (size_t i = 0; i < n; i++)
			assert_non_null(strstr(buf, r[i].value_name ? r[i].value_name : r[i].name));
	}
	free(buf);
}

/* ---- real filters, in children -------------------------------------------- */

/* Runs fn in a child; returns its exit code or 128 + the signal. With
 * err, the child's stderr is captured there. */
static int in_child(int (*fn)(void *), void *arg, char *err, size_t errlen)
{
	int p[2];

	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], STDERR_FILENO);
		_exit(fn(arg));
	}
	close(p[1]);
	char buf[1024];
	size_t got = 0;
	ssize_t n;
	while ((n = read(p[0], buf + got, sizeof(buf) - 1 - got)) > 0 && got < sizeof(buf) - 1)
		got += (size_t)n;
	buf[got] = '\0';
	close(p[0]);
	if (err) {
		size_t m = got < errlen - 1 ? got : errlen - 1;
		memcpy(err, buf, m);
		err[m] = '\0';
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

struct filter_case {
	enum seccomp_mode mode;
	enum seccomp_thread kind;
	const char *selftest; /* MOTE_SECCOMP_SELFTEST, or NULL */
};

/* Loads the filter, makes an allowed syscall, then a forbidden one;
 * returns 0 only if the forbidden one came back. */
static int child_forbidden(void *arg)
{
	const struct filter_case *c = arg;
	static const char ok[] = "";

	if (c->selftest)
		setenv("MOTE_SECCOMP_SELFTEST", c->selftest, 1);
	else
		unsetenv("MOTE_SECCOMP_SELFTEST");
	if (seccomp_prepare(c->mode))
		return 90;
	if (seccomp_install(c->kind))
		return 91;
	if (write(STDERR_FILENO, ok, 0) < 0) /* on every list */
		return 92;
	syscall(SYS_getppid);
	return 0;
}

/* AddressSanitizer builds: every mode means no filter (seccomp.c). */
static void check_off_under_asan(void)
{
	struct filter_case c = { SECCOMP_KILL, SECCOMP_VCPU, "vcpu" };

	assert_int_equal(in_child(child_forbidden, &c, NULL, 0), 0);
}

static void test_forbidden_syscall_kills(void **state)
{
	(void)state;
	if (!seccomp_available()) {
		check_off_under_asan();
		return;
	}
	for (unsigned k = 0; k < SECCOMP_NR_THREADS; k++) {
		struct filter_case c = { SECCOMP_KILL, k, NULL };

		assert_int_equal(in_child(child_forbidden, &c, NULL, 0), 128 + SIGSYS);
	}
}

static void test_trap_mode_names_the_syscall(void **state)
{
	(void)state;
	if (!seccomp_available()) {
		check_off_under_asan();
		return;
	}
	for (unsigned k = 0; k < SECCOMP_NR_THREADS; k++) {
		struct filter_case c = { SECCOMP_TRAP, k, NULL };
		char err[256], want[96];

		assert_int_equal(in_child(child_forbidden, &c, err, sizeof(err)),
				 SECCOMP_EXIT_CODE);
		snprintf(want, sizeof(want), "mote: seccomp: thread %s made forbidden syscall getppid",
			 seccomp_thread_name(k));
		if (!strstr(err, want))
			fail_msg("stderr '%s' lacks '%s'", err, want);
	}
}

static void test_off_mode_filters_nothing(void **state)
{
	(void)state;
	struct filter_case c = { SECCOMP_OFF, SECCOMP_VCPU, NULL };

	assert_int_equal(in_child(child_forbidden, &c, NULL, 0), 0);
	/* The self-test hook only fires under a filter. */
	c.selftest = "vcpu";
	assert_int_equal(in_child(child_forbidden, &c, NULL, 0), 0);
}

static int child_selftest_only(void *arg)
{
	const struct filter_case *c = arg;

	setenv("MOTE_SECCOMP_SELFTEST", c->selftest, 1);
	if (seccomp_prepare(c->mode) || seccomp_install(c->kind))
		return 90;
	return 0; /* the hook did not fire */
}

static void test_selftest_hook(void **state)
{
	(void)state;
	if (!seccomp_available()) {
		check_off_under_asan();
		return;
	}
	struct filter_case vcpu = { SECCOMP_KILL, SECCOMP_VCPU, "vcpu" };
	struct filter_case other = { SECCOMP_KILL, SECCOMP_VMM, "vcpu" };

	assert_int_equal(in_child(child_selftest_only, &vcpu, NULL, 0), 128 + SIGSYS);
	/* Only the named kind makes the forbidden call. */
	assert_int_equal(in_child(child_selftest_only, &other, NULL, 0), 0);
}

static int child_install_unprepared(void *arg)
{
	(void)arg;
	return seccomp_install(SECCOMP_VMM) == -EINVAL ? 0 : 1;
}

static void test_install_needs_prepare(void **state)
{
	(void)state;
	assert_int_equal(in_child(child_install_unprepared, NULL, NULL, 0), 0);
}

static void *vcpu_like_thread(void *arg)
{
	*(int *)arg = seccomp_install(SECCOMP_VCPU);
	return NULL; /* glibc's thread exit runs under the vCPU filter */
}

/* One thread's filter is not another's (no TSYNC), and a thread can end
 * under the vCPU filter. */
static int child_per_thread(void *arg)
{
	pthread_t t;
	int ret = -1;

	(void)arg;
	if (seccomp_prepare(SECCOMP_KILL))
		return 90;
	if (pthread_create(&t, NULL, vcpu_like_thread, &ret) || pthread_join(t, NULL))
		return 91;
	if (ret)
		return 92;
	syscall(SYS_getppid); /* this thread has no filter */
	return 0;
}

static void test_filters_are_per_thread(void **state)
{
	(void)state;
	if (!seccomp_available()) {
		check_off_under_asan();
		return;
	}
	assert_int_equal(in_child(child_per_thread, NULL, NULL, 0), 0);
}

static int child_caps(void *arg)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	(void)arg;
	if (caps_drop_all())
		return 90;
	if (syscall(SYS_capget, &hdr, data))
		return 91;
	for (unsigned i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		if (data[i].effective || data[i].permitted || data[i].inheritable)
			return 92;
	if (prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) != 0 ||
	    prctl(PR_CAPBSET_READ, CAP_NET_ADMIN, 0, 0, 0) != 0)
		return 93;
	/* Idempotent: nothing held, nothing to do. */
	if (caps_drop_all())
		return 94;
	return 0;
}

static void test_caps_drop_all(void **state)
{
	(void)state;
	/* A user holds nothing: a no-op (which could not empty the bounding
	 * set anyway). */
	if (geteuid() != 0) {
		assert_int_equal(caps_drop_all(), 0);
		return;
	}
	assert_int_equal(in_child(child_caps, NULL, NULL, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tables_are_well_formed),
		cmocka_unit_test(test_ioctl_only_by_request),
		cmocka_unit_test(test_counts_below_firecracker),
		cmocka_unit_test(test_print_lists_every_rule),
		cmocka_unit_test(test_forbidden_syscall_kills),
		cmocka_unit_test(test_trap_mode_names_the_syscall),
		cmocka_unit_test(test_off_mode_filters_nothing),
		cmocka_unit_test(test_selftest_hook),
		cmocka_unit_test(test_install_needs_prepare),
		cmocka_unit_test(test_filters_are_per_thread),
		cmocka_unit_test(test_caps_drop_all),
	};
	return cmocka_run_group_tests_name("seccomp", tests, NULL, NULL);
}
