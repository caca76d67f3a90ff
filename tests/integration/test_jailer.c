/* mote-jailer for real, as root: the jail seen from inside (jail_probe in
 * place of mote) and from the host (/proc/<pid>/, the jail's directory
 * tree, its cgroups), a jailed VM under cgroup limits, and bad arguments
 * that must leave nothing behind.
 *
 * Environment: MOTE_JAILER, MOTE_BIN, MOTE_GUEST (and optionally
 * MOTE_JAIL_PROBE; default: jail_probe next to this binary). */
#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#define JAIL_UID "12345"
#define JAIL_GID "12345"
#define CGROUP_FS "/sys/fs/cgroup"
#define TIMEOUT_MS 30000

static const char *jailer, *mote_bin, *guest_elf;
static char probe[PATH_MAX];
static char self[PATH_MAX]; /* this test binary */
static char base[64];          /* this test's --chroot-base-dir */
static char parent_cgroup[64]; /* this test's --parent-cgroup */
static char id[80];            /* this test's --id */
static bool host_has_tun;

/* --- running the jailer ---------------------------------------------------- */

struct args {
	char *v[64];
	int n;
};

static void args_add(struct args *a, ...)
{
	va_list ap;
	char *s;

	va_start(ap, a);
	while ((s = va_arg(ap, char *)) && a->n < 63)
		a->v[a->n++] = s;
	va_end(ap);
	a->v[a->n] = NULL;
}

/* jailer --id ID --exec-file EXEC --uid --gid --chroot-base-dir BASE */
static struct args jail_args(const char *exec)
{
	struct args a = { .n = 0 };

	args_add(&a, (char *)jailer, "--id", id, "--exec-file", (char *)exec, "--uid", JAIL_UID,
		 "--gid", JAIL_GID, "--chroot-base-dir", base, NULL);
	return a;
}

/* A jailer run: the process while it runs (h, its stdin a pipe that
 * proc_finish closes: the probe's --wait blocks until then), and what it
 * printed and its status once finished. */
struct proc {
	struct harness_proc h;
	pid_t pid;
	char *out_buf, *err_buf;
	int status;
};

static void proc_start(struct proc *p, char *const argv[])
{
	memset(p, 0, sizeof(*p));
	harness_spawn_piped(&p->h, argv);
	p->pid = p->h.pid;
}

static bool proc_wait_for(struct proc *p, const char *marker, int timeout_ms)
{
	return harness_proc_wait_for(&p->h, marker, false, timeout_ms / 1000);
}

/* Closes its stdin, drains its output and reaps it (SIGKILL at timeout). */
static int proc_finish(struct proc *p, int timeout_ms)
{
	struct run_result r = harness_proc_finish(&p->h, (timeout_ms + 999) / 1000);

	p->out_buf = r.out;
	p->err_buf = r.err;
	p->status = r.status;
	return p->status;
}

static void proc_dump(const struct proc *p)
{
	fprintf(stderr, "--- exit %d\n--- stdout:\n%s\n--- stderr:\n%s\n---\n", p->status,
		p->out_buf, p->err_buf);
}

static void proc_free(struct proc *p)
{
	free(p->out_buf);
	free(p->err_buf);
}

static struct proc run(struct args *a)
{
	struct proc p;

	proc_start(&p, a->v);
	proc_finish(&p, TIMEOUT_MS);
	return p;
}

/* The value of a "key=value" line in the probe's report. */
static const char *kv(const char *out, const char *key)
{
	static char val[2048];
	char pat[128];
	const char *at;

	snprintf(pat, sizeof(pat), "\n%s=", key);
	at = strncmp(out, pat + 1, strlen(pat) - 1) == 0 ? out - 1 : strstr(out, pat);
	if (!at)
		return NULL;
	at += strlen(pat);
	size_t n = strcspn(at, "\n");
	snprintf(val, sizeof(val), "%.*s", (int)n, at);
	return val;
}

#define assert_kv(p, key, expect)                                                       \
	do {                                                                             \
		const char *v_ = kv((p)->out_buf, key);                                  \
		if (!v_ || strcmp(v_, expect)) {                                         \
			proc_dump(p);                                                    \
			fail_msg("%s=%s, expected %s", key, v_ ? v_ : "(missing)", expect); \
		}                                                                        \
	} while (0)

#define assert_proc_status(p, expect)                                                   \
	do {                                                                             \
		if ((p)->status != (expect)) {                                           \
			proc_dump(p);                                                    \
			fail_msg("exit status %d, expected %d", (p)->status, (expect));   \
		}                                                                        \
	} while (0)

/* The jailed VM exited 0 and its guest printed "TEST PASS <scenario>". */
static void expect_guest_pass(struct proc *p, const char *scenario)
{
	char want[64];

	assert_proc_status(p, 0);
	snprintf(want, sizeof(want), "TEST PASS %s", scenario);
	if (!strstr(p->out_buf, want)) {
		proc_dump(p);
		fail_msg("the guest did not pass");
	}
}

#define assert_proc_err(p, needle)                                                      \
	do {                                                                             \
		if (!strstr((p)->err_buf, needle)) {                                     \
			proc_dump(p);                                                    \
			fail_msg("expected stderr to contain \"%s\"", needle);           \
		}                                                                        \
	} while (0)

/* --- host-side views ------------------------------------------------------- */

static bool read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = '\0';
	return true;
}

/* A field of /proc/<pid>/status, whitespace-trimmed. */
static const char *proc_status(pid_t pid, const char *field)
{
	static char buf[8192], val[256];
	char path[64], pat[64];
	const char *at;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (!read_small(path, buf, sizeof(buf)))
		return NULL;
	snprintf(pat, sizeof(pat), "\n%s:", field);
	at = strstr(buf, pat);
	if (!at)
		return NULL;
	at += strlen(pat);
	at += strspn(at, " \t");
	size_t n = strcspn(at, "\n");
	while (n && (at[n - 1] == ' ' || at[n - 1] == '\t'))
		n--;
	snprintf(val, sizeof(val), "%.*s", (int)n, at);
	return val;
}

static bool is_cgroup_v1(void)
{
	return access(CGROUP_FS "/memory/tasks", F_OK) == 0;
}

/* Where the jail's cgroup for a controller is (v1) or the unified one. */
static void jail_cgroup_dir(const char *controller, char *out, size_t len)
{
	if (is_cgroup_v1())
		snprintf(out, len, CGROUP_FS "/%s/%s/%s", controller, parent_cgroup, id);
	else
		snprintf(out, len, CGROUP_FS "/%s/%s", parent_cgroup, id);
}

static const char *jail_cgroup_file(const char *controller, const char *file)
{
	static char buf[256];
	char dir[PATH_MAX], path[PATH_MAX + 64];

	jail_cgroup_dir(controller, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (!read_small(path, buf, sizeof(buf)))
		return NULL;
	buf[strcspn(buf, "\n")] = '\0';
	return buf;
}

/* rmdir <parent>/<every child> and <parent> in every hierarchy. */
static void remove_test_cgroups(void)
{
	char path[PATH_MAX], sub[PATH_MAX + 300];
	struct dirent *e, *c;
	DIR *top = opendir(CGROUP_FS), *d;

	while (top && (e = readdir(top))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), CGROUP_FS "/%s/%s", e->d_name, parent_cgroup);
		if (!(d = opendir(path)))
			continue;
		while ((c = readdir(d))) {
			if (c->d_type != DT_DIR || c->d_name[0] == '.')
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", path, c->d_name);
			for (int i = 0; rmdir(sub) && errno == EBUSY && i < 200; i++)
				usleep(5000);
		}
		closedir(d);
		rmdir(path);
	}
	if (top)
		closedir(top);
	/* v2 keeps the jail directly under the root */
	snprintf(path, sizeof(path), CGROUP_FS "/%s/%s", parent_cgroup, id);
	rmdir(path);
	snprintf(path, sizeof(path), CGROUP_FS "/%s", parent_cgroup);
	rmdir(path);
}

/* No directory named like this test's parent cgroup, anywhere. */
static void assert_no_test_cgroups(void)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *top = opendir(CGROUP_FS);

	while (top && (e = readdir(top))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), CGROUP_FS "/%s/%s", e->d_name, parent_cgroup);
		if (access(path, F_OK) == 0)
			fail_msg("cgroup %s was left behind", path);
	}
	if (top)
		closedir(top);
	snprintf(path, sizeof(path), CGROUP_FS "/%s", parent_cgroup);
	if (access(path, F_OK) == 0)
		fail_msg("cgroup %s was left behind", path);
}

static void assert_base_empty(void)
{
	DIR *d = opendir(base);
	struct dirent *e;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			fail_msg("%s/%s was left behind", base, e->d_name);
	closedir(d);
}

static const char *jail_root_path(const char *exec_name, const char *inner)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s/%s/root%s", base, exec_name, id, inner);
	return path;
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
	snprintf(base, sizeof(base), "/tmp/mote-jail-test-XXXXXX");
	if (!mkdtemp(base))
		return -1;
	snprintf(parent_cgroup, sizeof(parent_cgroup), "mote-test-%d", (int)getpid());
	snprintf(id, sizeof(id), "t%d-%d", (int)getpid(), ++seq);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	remove_test_cgroups();
	/* FTW_MOUNT: never wander into a mount (a netns file) under base */
	nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
	return 0;
}

/* --- the jail from inside and from the host -------------------------------- */

/* move_root: --move-root (MS_MOVE + chroot after detaching the host's
 * mounts) must give the monitor the same view as pivot_root. */
static void check_locked_jail(bool move_root)
{
	struct args a = jail_args(probe);
	struct stat st, host;
	char path[64], self_ns[64], buf[256];
	struct proc p;

	if (move_root)
		args_add(&a, "--move-root", NULL);
	args_add(&a, "--resource-limit", "fsize=1048576", "--resource-limit", "no-file=128",
		 "--", "--wait", NULL);
	proc_start(&p, a.v);
	if (!proc_wait_for(&p, "probe=waiting", TIMEOUT_MS)) {
		proc_finish(&p, 1000);
		proc_dump(&p);
		fail_msg("the probe did not report");
	}
	/* From the host, while it runs: the kernel's own view of its ids and
	 * capabilities (it replaced the jailer: same pid). */
	assert_string_equal(proc_status(p.pid, "Uid"), "12345\t12345\t12345\t12345");
	assert_string_equal(proc_status(p.pid, "Gid"), "12345\t12345\t12345\t12345");
	assert_string_equal(proc_status(p.pid, "Groups"), "");
	assert_string_equal(proc_status(p.pid, "CapInh"), "0000000000000000");
	assert_string_equal(proc_status(p.pid, "CapPrm"), "0000000000000000");
	assert_string_equal(proc_status(p.pid, "CapEff"), "0000000000000000");
	assert_string_equal(proc_status(p.pid, "CapBnd"), "0000000000000000");
	assert_string_equal(proc_status(p.pid, "CapAmb"), "0000000000000000");
	assert_string_equal(proc_status(p.pid, "NoNewPrivs"), "1");
	/* its own mount namespace */
	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)p.pid);
	assert_true(readlink(path, buf, sizeof(buf) - 1) > 0);
	assert_true(readlink("/proc/self/ns/mnt", self_ns, sizeof(self_ns) - 1) > 0);
	assert_int_not_equal(stat(path, &st), -1);
	assert_int_not_equal(stat("/proc/self/ns/mnt", &host), -1);
	assert_true(st.st_ino != host.st_ino);
	assert_int_equal(proc_finish(&p, TIMEOUT_MS), 0);

	/* From inside. */
	assert_kv(&p, "argv0", "jail_probe");
	assert_kv(&p, "uid", JAIL_UID);
	assert_kv(&p, "euid", JAIL_UID);
	assert_kv(&p, "suid", JAIL_UID);
	assert_kv(&p, "gid", JAIL_GID);
	assert_kv(&p, "egid", JAIL_GID);
	assert_kv(&p, "sgid", JAIL_GID);
	assert_kv(&p, "groups", "");
	assert_kv(&p, "CapEff", "0000000000000000");
	assert_kv(&p, "CapPrm", "0000000000000000");
	assert_kv(&p, "CapInh", "0000000000000000");
	assert_kv(&p, "CapBnd", "0000000000000000");
	assert_kv(&p, "CapAmb", "0000000000000000");
	assert_kv(&p, "NoNewPrivs", "1");
	/* the host's files are not there, by any path */
	assert_kv(&p, "open:/etc/passwd", "ENOENT");
	assert_kv(&p, "open:../../../../../../etc/passwd", "ENOENT");
	assert_kv(&p, "open:/proc/1/status", "ENOENT");
	assert_kv(&p, "open:/sys/fs/cgroup", "ENOENT");
	assert_kv(&p, "open:/tmp", "ENOENT");
	assert_kv(&p, "open:/old_root", "ENOENT");
	assert_kv(&p, "open:/bin/sh", "ENOENT");
	assert_kv(&p, "cwd", "/");
	/* and the ways out need privileges it does not have */
	assert_kv(&p, "chroot", "EPERM");
	assert_kv(&p, "mount", "EPERM");
	assert_kv(&p, "setuid0", "EPERM");
	assert_kv(&p, "mknod", "EPERM");
	/* exactly these devices, usable */
	assert_kv(&p, "dev", host_has_tun ? "kvm,net/tun,urandom" : "kvm,urandom");
	assert_kv(&p, "root_files", host_has_tun ? "dev/kvm,dev/net/tun,dev/urandom,jail_probe"
						 : "dev/kvm,dev/urandom,jail_probe");
	assert_kv(&p, "kvm_owner", JAIL_UID ":" JAIL_GID);
	assert_kv(&p, "kvm_mode", "600");
	assert_kv(&p, "kvm_open", "ok");
	assert_kv(&p, "kvm_api", "12");
	assert_kv(&p, "urandom_read", "ok");
	assert_kv(&p, "root_owner", JAIL_UID ":" JAIL_GID);
	assert_kv(&p, "create_in_root", "ok");
	/* limits as asked, nothing inherited */
	assert_kv(&p, "fsize_soft", "1048576");
	assert_kv(&p, "fsize_hard", "1048576");
	assert_kv(&p, "nofile_soft", "128");
	assert_kv(&p, "nofile_hard", "128");
	assert_kv(&p, "open_fds", "0,1,2");
	assert_kv(&p, "env_count", "0");
	proc_free(&p);

	/* The tree on the host: the devices are the host's, the binary is
	 * root's and read-only to the jail. */
	assert_int_equal(stat(jail_root_path("jail_probe", "/dev/kvm"), &st), 0);
	assert_int_equal(stat("/dev/kvm", &host), 0);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(st.st_rdev, host.st_rdev);
	assert_int_equal(stat(jail_root_path("jail_probe", "/dev/urandom"), &st), 0);
	assert_int_equal(stat("/dev/urandom", &host), 0);
	assert_int_equal(st.st_rdev, host.st_rdev);
	assert_int_equal(st.st_uid, 12345);
	assert_int_equal(stat(jail_root_path("jail_probe", "/jail_probe"), &st), 0);
	assert_int_equal(st.st_uid, 0);
	assert_int_equal(st.st_mode & 07777, 0755);
}

static void test_probe_sees_a_locked_jail(void **state)
{
	(void)state;
	check_locked_jail(false);
}

static void test_probe_sees_a_locked_jail_move_root(void **state)
{
	(void)state;
	check_locked_jail(true);
}

/* --move-root with a --chroot-base-dir reached through a symlink, into a
 * directory on another mount (/dev/shm here): the mount holding the jail
 * is on the way to it by its real path only, and must not be detached. */
static void test_move_root_base_through_symlink(void **state)
{
	char real[64] = "/dev/shm/mote-jail-real-XXXXXX", saved[sizeof(base)];
	struct args a;
	struct proc p;

	(void)state;
	if (!mkdtemp(real))
		skip();
	memcpy(saved, base, sizeof(saved));
	assert_true(strlen(saved) + sizeof("/link") <= sizeof(base));
	strcat(base, "/link");
	assert_int_equal(symlink(real, base), 0);
	a = jail_args(probe);
	args_add(&a, "--move-root", NULL);
	p = run(&a);
	memcpy(base, saved, sizeof(base));
	nftw(real, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
	if (WIFEXITED(p.status) && WEXITSTATUS(p.status))
		proc_dump(&p);
	assert_proc_status(&p, 0);
	assert_kv(&p, "open:/etc/passwd", "ENOENT");
	assert_kv(&p, "kvm_open", "ok");
	proc_free(&p);
}

static void test_new_pid_ns_probe_is_pid_1(void **state)
{
	struct args a = jail_args(probe);
	struct proc p;

	(void)state;
	args_add(&a, "--new-pid-ns", NULL);
	p = run(&a);
	assert_proc_status(&p, 0);
	assert_kv(&p, "pid", "1");
	assert_kv(&p, "uid", JAIL_UID);
	assert_kv(&p, "CapEff", "0000000000000000");
	assert_kv(&p, "NoNewPrivs", "1");
	assert_kv(&p, "open:/etc/passwd", "ENOENT");
	proc_free(&p);
}

static void test_daemonize_detaches(void **state)
{
	struct args a = jail_args(probe);
	char report[8192];
	double t0 = harness_now_ms();
	struct proc p;

	(void)state;
	args_add(&a, "--daemonize", "--", "--write", "/report", NULL);
	p = run(&a);
	assert_proc_status(&p, 0);
	/* the probe's stdout went to /dev/null, not to us */
	assert_null(strstr(p.out_buf, "uid="));
	proc_free(&p);
	while (!(read_small(jail_root_path("jail_probe", "/report"), report, sizeof(report)) &&
		 strstr(report, "probe=done")) && harness_now_ms() - t0 < TIMEOUT_MS)
		usleep(10000);
	assert_non_null(strstr(report, "probe=done"));
	assert_non_null(strstr(report, "\nsid_is_pid=1\n")); /* a session of its own */
	assert_non_null(strstr(report, "\nuid=" JAIL_UID "\n"));
	assert_non_null(strstr(report, "\nCapEff=0000000000000000\n"));
}

static void test_netns_is_joined(void **state)
{
	struct args a = jail_args(probe);
	char nsfile[PATH_MAX], path[64];
	struct stat want, got;
	struct proc p;
	pid_t child;
	int st;

	(void)state;
	/* A named network namespace, as `ip netns add` makes one: a file
	 * with the namespace bind-mounted on it. */
	snprintf(nsfile, sizeof(nsfile), "%s/netns", base);
	close(open(nsfile, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
	child = fork();
	if (child == 0) {
		if (unshare(CLONE_NEWNET) ||
		    mount("/proc/self/ns/net", nsfile, NULL, MS_BIND, NULL))
			_exit(1);
		_exit(0);
	}
	assert_int_equal(waitpid(child, &st, 0), child);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(stat(nsfile, &want), 0);

	args_add(&a, "--netns", nsfile, "--", "--wait", NULL);
	proc_start(&p, a.v);
	bool ok = proc_wait_for(&p, "probe=waiting", TIMEOUT_MS);
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)p.pid);
	int ret = stat(path, &got);
	proc_finish(&p, TIMEOUT_MS);
	umount2(nsfile, MNT_DETACH);
	unlink(nsfile);
	if (!ok)
		proc_dump(&p);
	assert_true(ok);
	assert_int_equal(ret, 0);
	assert_true(got.st_ino == want.st_ino); /* that namespace, not the host's */
	assert_kv(&p, "netifs", "lo");
	assert_proc_status(&p, 0);
	proc_free(&p);
}

/* --- a jailed VM under cgroup limits --------------------------------------- */

/* The limits of the brief: 256 MiB of memory, half a CPU. */
static void add_vm_cgroup_args(struct args *a)
{
	if (is_cgroup_v1())
		args_add(a, "--cgroup-version", "1", "--cgroup", "memory.limit_in_bytes=268435456",
			 "--cgroup", "cpu.cfs_period_us=100000", "--cgroup",
			 "cpu.cfs_quota_us=50000", NULL);
	else
		args_add(a, "--cgroup-version", "2", "--cgroup", "memory.max=268435456",
			 "--cgroup", "cpu.max=50000 100000", NULL);
	args_add(a, "--parent-cgroup", parent_cgroup, NULL);
}

static void assert_vm_cgroup_values(void)
{
	if (is_cgroup_v1()) {
		assert_string_equal(jail_cgroup_file("memory", "memory.limit_in_bytes"),
				    "268435456");
		assert_string_equal(jail_cgroup_file("cpu", "cpu.cfs_quota_us"), "50000");
		assert_string_equal(jail_cgroup_file("cpu", "cpu.cfs_period_us"), "100000");
	} else {
		assert_string_equal(jail_cgroup_file("memory", "memory.max"), "268435456");
		assert_string_equal(jail_cgroup_file("cpu", "cpu.max"), "50000 100000");
	}
}

static void test_jailed_vm_hello(void **state)
{
	struct args a = jail_args(mote_bin);
	char copy_in[PATH_MAX + 32];
	struct stat st, src;
	struct proc p;

	(void)state;
	add_vm_cgroup_args(&a);
	snprintf(copy_in, sizeof(copy_in), "%s:/test-guest.elf", guest_elf);
	args_add(&a, "--copy-in", copy_in, "--", "--kernel", "/test-guest.elf", "--cmdline",
		 "test=hello", NULL);
	p = run(&a);
	expect_guest_pass(&p, "hello");
	proc_free(&p);
	/* The jail's cgroup stays after a run (the caller removes it), with
	 * the values the jailer wrote. */
	assert_vm_cgroup_values();
	/* The kernel was copied in for the jail's user. */
	assert_int_equal(stat(jail_root_path("mote", "/test-guest.elf"), &st), 0);
	assert_int_equal(stat(guest_elf, &src), 0);
	assert_int_equal(st.st_uid, 12345);
	assert_int_equal(st.st_gid, 12345);
	assert_int_equal(st.st_size, src.st_size);
	assert_int_equal(st.st_mode & 0777, src.st_mode & 0777);
}

/* --link-in and --link-exec: the jail gets the host's own inode (one page
 * cache copy shared by every jail, as a snapshot memory file needs), and
 * a VM boots from it; files the jail could change are refused. */
static void test_link_in_shares_the_inode(void **state)
{
	struct args a = jail_args(mote_bin);
	char link_in[PATH_MAX + 32], shared[128], link_bad[160];
	struct stat st, src;
	struct proc p;
	int fd;

	(void)state;
	snprintf(link_in, sizeof(link_in), "%s:/boot/guest.elf", guest_elf);
	args_add(&a, "--link-exec", "--link-in", link_in, "--", "--kernel", "/boot/guest.elf",
		 "--cmdline", "test=hello", NULL);
	p = run(&a);
	expect_guest_pass(&p, "hello");
	proc_free(&p);
	assert_int_equal(stat(jail_root_path("mote", "/boot/guest.elf"), &st), 0);
	assert_int_equal(stat(guest_elf, &src), 0);
	assert_int_equal(st.st_ino, src.st_ino);
	assert_int_equal(st.st_dev, src.st_dev);
	assert_int_equal(stat(jail_root_path("mote", "/mote"), &st), 0);
	assert_int_equal(stat(mote_bin, &src), 0);
	assert_int_equal(st.st_ino, src.st_ino);
	assert_int_equal(st.st_uid, 0);

	/* A file the jail's user owns, or that others may write, is not
	 * shared: the jail could change what the host (and other jails) read. */
	snprintf(shared, sizeof(shared), "%s/shared.bin", base);
	fd = open(shared, O_WRONLY | O_CREAT | O_EXCL, 0664);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "data", 4), 4);
	assert_int_equal(fchmod(fd, 0664), 0); /* past the umask */
	close(fd);
	snprintf(link_bad, sizeof(link_bad), "%s:/shared.bin", shared);
	snprintf(id + strlen(id), sizeof(id) - strlen(id), "b");
	a = jail_args(probe);
	args_add(&a, "--link-in", link_bad, NULL);
	struct proc q = run(&a);
	assert_proc_status(&q, 64);
	assert_proc_err(&q, "--link-in");
	assert_proc_err(&q, "not writable by group or others");
	proc_free(&q);
	assert_int_equal(chmod(shared, 0444), 0);
	assert_int_equal(chown(shared, 12345, 12345), 0);
	a = jail_args(probe);
	args_add(&a, "--link-in", link_bad, NULL);
	q = run(&a);
	assert_proc_status(&q, 64);
	assert_proc_err(&q, "owned by root");
	proc_free(&q);
	assert_int_equal(unlink(shared), 0);
}

/* Devices work in the jail: a virtio-blk drive copied in is written by the
 * guest (every sector stamped, see guest/unikernel/README.md) through
 * io_uring under seccomp, as the jail's user. */
static void test_jailed_vm_virtio_blk(void **state)
{
	struct args a = jail_args(mote_bin);
	char copy_kernel[PATH_MAX + 32], copy_disk[PATH_MAX + 32];
	char disk[] = "/tmp/mote-jail-disk-XXXXXX";
	struct proc p;

	(void)state;
	int fd = mkstemp(disk);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	add_vm_cgroup_args(&a);
	snprintf(copy_kernel, sizeof(copy_kernel), "%s:/test-guest.elf", guest_elf);
	snprintf(copy_disk, sizeof(copy_disk), "%s:/disk.img", disk);
	args_add(&a, "--copy-in", copy_kernel, "--copy-in", copy_disk, "--", "--kernel",
		 "/test-guest.elf", "--drive", "path=/disk.img", "--cmdline",
		 "test=blk-write seed=21", NULL);
	p = run(&a);
	unlink(disk);
	expect_guest_pass(&p, "blk-write");
	proc_free(&p);
	/* Every sector of the jail's copy carries its stamp. */
	int img = open(jail_root_path("mote", "/disk.img"), O_RDONLY);
	assert_true(img >= 0);
	for (uint64_t sec = 0; sec < (1 << 20) / 512; sec++) {
		uint64_t v[2], want = (21ULL << 48) | sec;
		assert_int_equal(pread(img, v, sizeof(v), (off_t)(sec * 512)), (ssize_t)sizeof(v));
		if (v[0] != want || v[1] != ~want)
			fail_msg("sector %llu of the jailed drive has a wrong stamp",
				 (unsigned long long)sec);
	}
	close(img);
}

static void test_jailed_vm_inspected_while_running(void **state)
{
	struct args a = jail_args(mote_bin);
	char copy_in[PATH_MAX + 32], path[64], want[160], cg[4096];
	struct proc p;

	(void)state;
	add_vm_cgroup_args(&a);
	snprintf(copy_in, sizeof(copy_in), "%s:/boot/guest.elf", guest_elf);
	args_add(&a, "--copy-in", copy_in, "--", "--kernel", "/boot/guest.elf", "--cmdline",
		 "test=spin", NULL);
	proc_start(&p, a.v);
	if (!proc_wait_for(&p, "spinning until the host stops the VM", TIMEOUT_MS)) {
		kill(p.pid, SIGKILL);
		proc_finish(&p, 1000);
		proc_dump(&p);
		fail_msg("the guest did not start spinning");
	}
	/* mote replaced the jailer: that pid is the VM, in the jail's cgroups */
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)p.pid);
	assert_true(read_small(path, cg, sizeof(cg)));
	if (is_cgroup_v1()) {
		snprintf(want, sizeof(want), ":memory:/%s/%s\n", parent_cgroup, id);
		assert_non_null(strstr(cg, want));
		snprintf(want, sizeof(want), ":cpu:/%s/%s\n", parent_cgroup, id);
		assert_non_null(strstr(cg, want));
	} else {
		snprintf(want, sizeof(want), "0::/%s/%s\n", parent_cgroup, id);
		assert_non_null(strstr(cg, want));
	}
	snprintf(want, sizeof(want), "%d", (int)p.pid);
	assert_string_equal(jail_cgroup_file("memory", "cgroup.procs"), want);
	assert_vm_cgroup_values();
	assert_string_equal(proc_status(p.pid, "Uid"), "12345\t12345\t12345\t12345");
	assert_string_equal(proc_status(p.pid, "CapEff"), "0000000000000000");
	assert_string_equal(proc_status(p.pid, "NoNewPrivs"), "1");
	kill(p.pid, SIGTERM);
	proc_finish(&p, TIMEOUT_MS);
	assert_proc_status(&p, 128 + SIGTERM);
	proc_free(&p);
}

static void test_jailed_vm_new_pid_ns_forwards_sigterm(void **state)
{
	struct args a = jail_args(mote_bin);
	char copy_in[PATH_MAX + 32], procs[256], want[32];
	struct proc p;

	(void)state;
	add_vm_cgroup_args(&a);
	snprintf(copy_in, sizeof(copy_in), "%s:/guest.elf", guest_elf);
	args_add(&a, "--new-pid-ns", "--copy-in", copy_in, "--", "--kernel", "/guest.elf",
		 "--cmdline", "test=spin", NULL);
	proc_start(&p, a.v);
	if (!proc_wait_for(&p, "spinning until the host stops the VM", TIMEOUT_MS)) {
		kill(p.pid, SIGKILL);
		proc_finish(&p, 1000);
		proc_dump(&p);
		fail_msg("the guest did not start spinning");
	}
	/* Only the monitor is in the jail's cgroup; the waiting jailer left. */
	snprintf(procs, sizeof(procs), "%s", jail_cgroup_file("memory", "cgroup.procs"));
	snprintf(want, sizeof(want), "%d", (int)p.pid);
	assert_true(procs[0] != '\0');
	assert_null(strchr(procs, '\n'));
	assert_string_not_equal(procs, want);
	/* SIGTERM to the jailer reaches mote (pid 1 in its namespace), whose
	 * status the jailer passes on. */
	kill(p.pid, SIGTERM);
	proc_finish(&p, TIMEOUT_MS);
	assert_proc_status(&p, 128 + SIGTERM);
	proc_free(&p);
}

/* --- bad arguments leave nothing behind ------------------------------------ */

static void expect_refusal(struct args *a, int status, const char *message)
{
	struct proc p = run(a);

	assert_proc_status(&p, status);
	assert_proc_err(&p, message);
	proc_free(&p);
	assert_base_empty();
	assert_no_test_cgroups();
}

static void test_bad_ids(void **state)
{
	static const char *const bad[] = { "a/b", "", "..", "a.b", "a b",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 65 */ };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(id, sizeof(id), "%s", bad[i]);
		struct args a = jail_args(probe);
		expect_refusal(&a, 64, "--id");
	}
	/* 64 is fine */
	snprintf(id, sizeof(id), "%s", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	struct args a = jail_args(probe);
	struct proc p = run(&a);
	assert_proc_status(&p, 0);
	proc_free(&p);
}

static void test_missing_required(void **state)
{
	struct args a = { .n = 0 };

	(void)state;
	args_add(&a, (char *)jailer, "--id", id, "--exec-file", "/nonexistent/mote", "--uid", "1",
		 "--gid", "1", "--chroot-base-dir", base, NULL);
	expect_refusal(&a, 64, "--exec-file: /nonexistent/mote");
	a.n = 0;
	args_add(&a, (char *)jailer, "--id", id, "--uid", "1", "--gid", "1",
		 "--chroot-base-dir", base, NULL);
	expect_refusal(&a, 64, "--exec-file is required");
	a.n = 0;
	args_add(&a, (char *)jailer, "--id", id, "--exec-file", probe, "--gid", "1",
		 "--chroot-base-dir", base, NULL);
	expect_refusal(&a, 64, "--uid and --gid are both required");
	a.n = 0;
	args_add(&a, (char *)jailer, "--id", id, "--exec-file", probe, "--uid", "1",
		 "--chroot-base-dir", base, NULL);
	expect_refusal(&a, 64, "--uid and --gid are both required");
	a.n = 0;
	args_add(&a, (char *)jailer, "--exec-file", probe, "--uid", "1", "--gid", "1",
		 "--chroot-base-dir", base, NULL);
	expect_refusal(&a, 64, "--id is required");
	a = jail_args(probe);
	args_add(&a, "--uid", "-1", NULL);
	expect_refusal(&a, 64, "--uid");
}

static void test_bad_netns(void **state)
{
	char path[PATH_MAX];
	struct args a = jail_args(probe);

	(void)state;
	snprintf(path, sizeof(path), "%s-no-such-netns", base);
	args_add(&a, "--netns", path, NULL);
	expect_refusal(&a, 64, "--netns");
	a = jail_args(probe);
	args_add(&a, "--netns", "/etc/hostname", NULL);
	expect_refusal(&a, 64, "is not a namespace file");
}

static void test_bad_cgroups(void **state)
{
	const char *v = is_cgroup_v1() ? "1" : "2";
	struct args a = jail_args(probe);

	(void)state;
	args_add(&a, "--cgroup-version", v, "--parent-cgroup", parent_cgroup, "--cgroup",
		 "memory.bogus=1", NULL);
	expect_refusal(&a, 64, "unknown cgroup file 'memory.bogus'");
	a = jail_args(probe);
	args_add(&a, "--cgroup-version", v, "--parent-cgroup", parent_cgroup, "--cgroup",
		 "cgroup.procs=1", NULL);
	expect_refusal(&a, 64, "--cgroup");
	a = jail_args(probe);
	args_add(&a, "--cgroup-version", "3", NULL);
	expect_refusal(&a, 64, "--cgroup-version");
	a = jail_args(probe);
	args_add(&a, "--parent-cgroup", "../escape", "--cgroup-version", v, "--cgroup",
		 is_cgroup_v1() ? "memory.limit_in_bytes=1G" : "memory.max=1G", NULL);
	expect_refusal(&a, 64, "--parent-cgroup");
	/* A host on one version asked for the other. */
	a = jail_args(probe);
	args_add(&a, "--cgroup-version", is_cgroup_v1() ? "2" : "1", "--parent-cgroup",
		 parent_cgroup, "--cgroup", "memory.max=1", NULL);
	expect_refusal(&a, 64, "cgroup v");
}

/* Fails after the jail's directories and cgroups exist: both must go. */
static void test_failure_after_creation_cleans_up(void **state)
{
	struct args a = jail_args(probe);

	(void)state;
	args_add(&a, "--cgroup-version", is_cgroup_v1() ? "1" : "2", "--parent-cgroup",
		 parent_cgroup, "--cgroup", is_cgroup_v1() ? "cpu.cfs_quota_us=50000" : "cpu.max=max",
		 "--cgroup",
		 is_cgroup_v1() ? "memory.limit_in_bytes=not-a-number" : "memory.max=not-a-number",
		 NULL);
	expect_refusal(&a, 1, "writing cgroup value 'not-a-number'");
	/* an rlimit the kernel refuses, after the tree is made */
	a = jail_args(probe);
	args_add(&a, "--resource-limit", "no-file=4294967295", NULL);
	expect_refusal(&a, 1, "setting resource limit no-file");
	/* a --copy-in destination used twice */
	a = jail_args(probe);
	args_add(&a, "--copy-in", "/etc/hostname:/x", "--copy-in", "/etc/hosts:/x", NULL);
	expect_refusal(&a, 1, "creating a file in the jail");
}

static void test_existing_jail_is_never_reused(void **state)
{
	char dir[PATH_MAX], marker[PATH_MAX + 16];
	struct args a = jail_args(probe);
	struct proc p;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/jail_probe", base);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(dir, sizeof(dir), "%s/jail_probe/%s", base, id);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(marker, sizeof(marker), "%s/keep-me", dir);
	close(open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
	args_add(&a, "--cgroup-version", is_cgroup_v1() ? "1" : "2", "--parent-cgroup",
		 parent_cgroup, "--cgroup",
		 is_cgroup_v1() ? "memory.limit_in_bytes=268435456" : "memory.max=268435456", NULL);
	p = run(&a);
	assert_proc_status(&p, 64);
	assert_proc_err(&p, "already exists");
	proc_free(&p);
	/* what was there is untouched, nothing was added */
	assert_int_equal(access(marker, F_OK), 0);
	snprintf(marker, sizeof(marker), "%s/root", dir);
	assert_int_not_equal(access(marker, F_OK), 0);
	assert_no_test_cgroups();
}

static void test_other_refusals(void **state)
{
	struct args a;

	(void)state;
	/* a dynamically linked monitor could not start in a jail without
	 * libraries: refused up front (this test binary is one) */
	a = jail_args(self);
	expect_refusal(&a, 64, "dynamically linked");
	a = jail_args(probe);
	args_add(&a, "--copy-in", "/etc/hostname:../escape", NULL);
	expect_refusal(&a, 64, "--copy-in");
	a = jail_args(probe);
	args_add(&a, "--copy-in", "/etc/hostname:/dev/kvm", NULL);
	expect_refusal(&a, 64, "--copy-in");
	a = jail_args(probe);
	args_add(&a, "--resource-limit", "cpu=1", NULL);
	expect_refusal(&a, 64, "--resource-limit");
	a = jail_args(probe);
	args_add(&a, "stray", NULL);
	expect_refusal(&a, 64, "after '--'");
	a = jail_args(probe);
	args_add(&a, "--chroot-base-dir", "relative/dir", NULL);
	expect_refusal(&a, 64, "not an absolute path");
}

int main(void)
{
	const char *p;
	ssize_t n;

	jailer = harness_env("MOTE_JAILER");
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0)
		self[n] = '\0';
	p = getenv("MOTE_JAIL_PROBE");
	if (p && *p) {
		snprintf(probe, sizeof(probe), "%s", p);
	} else {
		snprintf(probe, sizeof(probe), "%s", self);
		*strrchr(probe, '/') = '\0';
		strncat(probe, "/jail_probe", sizeof(probe) - strlen(probe) - 1);
	}
	if (geteuid() != 0) {
		fprintf(stderr, "test_jailer: FAIL: the jailer tests must run as root (they make "
				"cgroups, device nodes and namespaces)\n");
		return 1;
	}
	if (access(probe, X_OK)) {
		fprintf(stderr, "test_jailer: FAIL: no probe at %s (build it: make "
				"build/tests/jail_probe, or set MOTE_JAIL_PROBE)\n", probe);
		return 1;
	}
	host_has_tun = access("/dev/net/tun", F_OK) == 0;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_probe_sees_a_locked_jail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_probe_sees_a_locked_jail_move_root, setup, teardown),
		cmocka_unit_test_setup_teardown(test_move_root_base_through_symlink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_pid_ns_probe_is_pid_1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_daemonize_detaches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_netns_is_joined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jailed_vm_hello, setup, teardown),
		cmocka_unit_test_setup_teardown(test_link_in_shares_the_inode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jailed_vm_virtio_blk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jailed_vm_inspected_while_running, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_jailed_vm_new_pid_ns_forwards_sigterm, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_required, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_netns, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_cgroups, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_after_creation_cleans_up, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_existing_jail_is_never_reused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_refusals, setup, teardown),
	};
	return cmocka_run_group_tests_name("integration: jailer", tests, NULL, NULL);
}
