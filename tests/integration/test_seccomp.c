/* mote's seccomp filters and capability drop, seen from outside: the
 * lists it prints, a forbidden syscall that must end the process, real
 * guest runs under the filters (and without them), and the /proc view of
 * a running monitor. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#define SIGSYS_STATUS (128 + SIGSYS) /* mote's SECCOMP_EXIT_CODE, 159 */
#define DRIVE_MIB 2

static const char *mote_bin;
static const char *guest_elf;

#define MOTE(...) ((char *const[]){ (char *)mote_bin, __VA_ARGS__, NULL })

/* "<kind> thread: N syscalls" in --print-seccomp's output, or -1. */
static int printed_count(const char *out, const char *kind)
{
	char needle[32];
	const char *p;
	int n;

	snprintf(needle, sizeof(needle), "\n%s thread: ", kind);
	p = strstr(out, needle);
	if (!p || sscanf(p + strlen(needle), "%d syscalls", &n) != 1)
		return -1;
	return n;
}

static void test_print_counts_below_firecracker(void **state)
{
	(void)state;
	struct run_result r = harness_run(MOTE("--print-seccomp"), 10, NULL);
	assert_exit_status(&r, 0);
	int vmm = printed_count(r.out, "vmm"), vcpu = printed_count(r.out, "vcpu");
	int api = printed_count(r.out, "api");
	fprintf(stderr, "seccomp: vmm %d syscalls (Firecracker 50), vcpu %d (Firecracker 27), "
		"api %d (Firecracker 31)\n", vmm, vcpu, api);
	if (vmm <= 0 || vmm >= 50 || vcpu <= 0 || vcpu >= 27 || api <= 0 || api >= 31) {
		harness_dump(&r);
		fail_msg("counts vmm=%d vcpu=%d api=%d, expected 0 < vmm < 50, 0 < vcpu < 27, "
			 "0 < api < 31", vmm, vcpu, api);
	}
	/* ioctl only by request number, and KVM_RUN only on the vCPU list
	 * (printed after the vmm one). */
	const char *vcpu_list = strstr(r.out, "\nvcpu thread:");
	const char *kvm_run = strstr(r.out, "ioctl KVM_RUN");
	assert_non_null(vcpu_list);
	assert_non_null(kvm_run);
	assert_true(kvm_run > vcpu_list);
	assert_null(strstr(r.out, "ioctl  "));
	harness_free(&r);
}

/* mode NULL: the default (seccomp on, KILL); it also ends argv. */
static struct run_result run_selftest(const char *kind, const char *mode)
{
	setenv("MOTE_SECCOMP_SELFTEST", kind, 1);
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--cmdline",
					       "test=hello", (char *)mode), 30, NULL);
	unsetenv("MOTE_SECCOMP_SELFTEST");
	return r;
}

static void check_forbidden_syscall(const char *kind)
{
	char msg[96];

	/* Default: the kernel kills the whole process with SIGSYS. */
	struct run_result r = run_selftest(kind, NULL);
	assert_exit_status(&r, SIGSYS_STATUS);
	assert_null(strstr(r.out, "TEST PASS"));
	harness_free(&r);

	/* --seccomp-debug: the handler names thread and syscall, same status. */
	r = run_selftest(kind, "--seccomp-debug");
	assert_exit_status(&r, SIGSYS_STATUS);
	snprintf(msg, sizeof(msg), "mote: seccomp: thread %s made forbidden syscall getppid", kind);
	assert_output_contains(&r, err, msg);
	harness_free(&r);

	/* The hook itself is harmless: without filters getppid just works. */
	r = run_selftest(kind, "--no-seccomp");
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS hello");
	harness_free(&r);
}

static void test_forbidden_syscall_on_vmm_thread(void **state)
{
	(void)state;
	check_forbidden_syscall("vmm");
}

static void test_forbidden_syscall_on_vcpu_thread(void **state)
{
	(void)state;
	check_forbidden_syscall("vcpu");
}

/* The API thread confines itself before serving: the selftest hook fires
 * there as soon as it starts, even while the guest boots on its own. */
static void test_forbidden_syscall_on_api_thread(void **state)
{
	(void)state;
	char sock[64];
	snprintf(sock, sizeof(sock), "/tmp/mote-seccomp-api-%d.sock", (int)getpid());
	const char *modes[] = { NULL, "--seccomp-debug" };
	for (int i = 0; i < 2; i++) {
		setenv("MOTE_SECCOMP_SELFTEST", "api", 1);
		struct run_result r = harness_run(MOTE("--api-sock", sock, "--kernel", (char *)guest_elf,
						       "--cmdline", "test=spin", (char *)modes[i]),
						  30, NULL);
		unsetenv("MOTE_SECCOMP_SELFTEST");
		unlink(sock);
		assert_exit_status(&r, SIGSYS_STATUS);
		if (modes[i])
			assert_output_contains(&r, err, "mote: seccomp: thread api made forbidden "
							"syscall getppid");
		harness_free(&r);
	}
}

static void run_hello(const char *mode)
{
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--cmdline",
					       "test=hello", "--boot-timer", (char *)mode), 30, NULL);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS hello");
	assert_output_contains(&r, err, "boot-timer: guest signalled boot after");
	harness_free(&r);
}

static void run_smp(const char *mode)
{
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--vcpus", "2",
					       "--cmdline", "test=smp", (char *)mode), 60, NULL);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "smp: 2 of 2 cpus ran guest code");
	harness_free(&r);
}

/* Two drives, the second limited to 1 MiB/s (a 1 MiB bucket for 2 MiB
 * of writes) so that its rate-limit timerfd fires under the filter too. */
static void run_blk_write(const char *mode)
{
	char path[2][64], arg[2][128];

	for (int i = 0; i < 2; i++) {
		strcpy(path[i], "/tmp/mote-seccomp-XXXXXX");
		int fd = mkstemp(path[i]);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, (off_t)DRIVE_MIB << 20), 0);
		close(fd);
		snprintf(arg[i], sizeof(arg[i]), "path=%s%s", path[i], i ? ",bw=1048576" : "");
	}
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--drive", arg[0],
					       "--drive", arg[1], "--cmdline",
					       "test=blk-write seed=3 blkmode=irq", (char *)mode),
					  120, NULL);
	for (int i = 0; i < 2; i++)
		unlink(path[i]);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS blk-write");
	harness_free(&r);
}

static void test_guest_runs_under_filters(void **state)
{
	(void)state;
	/* Seccomp is on by default; --seccomp-debug allows the same lists. */
	run_hello(NULL);
	run_hello("--seccomp-debug");
	run_smp(NULL);
	run_blk_write(NULL);
}

static void test_guest_runs_without_filters(void **state)
{
	(void)state;
	run_hello("--no-seccomp");
	run_smp("--no-seccomp");
	run_blk_write("--no-seccomp");
}

/* The value of "Field:" in a /proc status file, as text (or ""). */
static void status_field(const char *path, const char *field, char *val, size_t len)
{
	char line[256];
	FILE *f = fopen(path, "r");
	size_t flen = strlen(field);

	val[0] = '\0';
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
			const char *v = line + flen + 1;
			v += strspn(v, " \t");
			snprintf(val, len, "%.*s", (int)strcspn(v, "\n"), v);
			break;
		}
	}
	fclose(f);
}

struct proc_view {
	bool seen;
	char cap_eff[32], cap_prm[32], cap_bnd[32], no_new_privs[8];
	unsigned threads;        /* mote's own: main + vCPUs */
	unsigned filtered;       /* of those, Seccomp: 2 with exactly one filter */
	char api_cap_eff[32];    /* the mote-api thread's own, when there is one */
};

static void read_proc(void *arg)
{
	struct proc_view *pv = arg;
	char path[320], comm[32];
	pid_t pid = harness_child_pid;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	status_field(path, "CapEff", pv->cap_eff, sizeof(pv->cap_eff));
	status_field(path, "CapPrm", pv->cap_prm, sizeof(pv->cap_prm));
	status_field(path, "CapBnd", pv->cap_bnd, sizeof(pv->cap_bnd));
	status_field(path, "NoNewPrivs", pv->no_new_privs, sizeof(pv->no_new_privs));
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return;
	pv->seen = true;
	for (struct dirent *e; (e = readdir(d));) {
		char val[16], nf[16];
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		/* KVM adds kernel workers (kvm-nx-lpage-recovery) to the
		 * process; only mote's own threads are ours to check. */
		snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)pid, e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = '\0';
		fclose(f);
		if (strncmp(comm, "mote", 4) != 0)
			continue;
		pv->threads++;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)pid, e->d_name);
		status_field(path, "Seccomp", val, sizeof(val));
		status_field(path, "Seccomp_filters", nf, sizeof(nf));
		/* One filter each: per thread, not stacked or synced. */
		if (strcmp(val, "2") == 0 && strcmp(nf, "1") == 0)
			pv->filtered++;
		if (strncmp(comm, "mote-api", 8) == 0)
			status_field(path, "CapEff", pv->api_cap_eff, sizeof(pv->api_cap_eff));
	}
	closedir(d);
}

static struct proc_view run_spin(const char *mode)
{
	struct proc_view pv = { 0 };
	struct run_result r = harness_run_cb(MOTE("--kernel", (char *)guest_elf, "--vcpus", "2",
						  "--cmdline", "test=spin", (char *)mode),
					     30, "spinning until the host stops the VM", read_proc,
					     &pv);
	assert_int_equal(r.status, 128 + SIGTERM);
	assert_true(pv.seen);
	harness_free(&r);
	return pv;
}

static void test_running_monitor_is_locked_down(void **state)
{
	(void)state;
	struct proc_view pv = run_spin(NULL);

	/* main + 2 vCPUs, each with exactly its own filter */
	assert_int_equal(pv.threads, 3);
	assert_int_equal(pv.filtered, 3);
	assert_string_equal(pv.no_new_privs, "1");
	if (geteuid() != 0) {
		fprintf(stderr, "not root: capability drop not checked\n");
		return;
	}
	assert_string_equal(pv.cap_eff, "0000000000000000");
	assert_string_equal(pv.cap_prm, "0000000000000000");
	assert_string_equal(pv.cap_bnd, "0000000000000000");
}

/* With the API: main + 2 vCPUs + the API thread, each with its own filter,
 * and the API thread (started before the VM) without capabilities too. */
static void test_api_thread_is_locked_down(void **state)
{
	(void)state;
	struct proc_view pv = { 0 };
	char sock[64];
	snprintf(sock, sizeof(sock), "/tmp/mote-seccomp-api2-%d.sock", (int)getpid());
	struct run_result r = harness_run_cb(MOTE("--api-sock", sock, "--kernel", (char *)guest_elf,
						  "--vcpus", "2", "--cmdline", "test=spin"),
					     30, "spinning until the host stops the VM", read_proc,
					     &pv);
	unlink(sock);
	assert_int_equal(r.status, 128 + SIGTERM);
	harness_free(&r);
	assert_true(pv.seen);
	assert_int_equal(pv.threads, 4);
	assert_int_equal(pv.filtered, 4);
	if (geteuid() == 0)
		assert_string_equal(pv.api_cap_eff, "0000000000000000");
}

static void test_no_seccomp_leaves_threads_unfiltered(void **state)
{
	(void)state;
	struct proc_view pv = run_spin("--no-seccomp");

	assert_int_equal(pv.threads, 3);
	assert_int_equal(pv.filtered, 0);
	/* Capabilities go either way. */
	if (geteuid() == 0)
		assert_string_equal(pv.cap_eff, "0000000000000000");
}

int main(void)
{
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_print_counts_below_firecracker),
		cmocka_unit_test(test_forbidden_syscall_on_vmm_thread),
		cmocka_unit_test(test_forbidden_syscall_on_vcpu_thread),
		cmocka_unit_test(test_forbidden_syscall_on_api_thread),
		cmocka_unit_test(test_api_thread_is_locked_down),
		cmocka_unit_test(test_guest_runs_under_filters),
		cmocka_unit_test(test_guest_runs_without_filters),
		cmocka_unit_test(test_running_monitor_is_locked_down),
		cmocka_unit_test(test_no_seccomp_leaves_threads_unfiltered),
	};
	return cmocka_run_group_tests_name("integration: seccomp and capabilities", tests, NULL,
					   NULL);
}
