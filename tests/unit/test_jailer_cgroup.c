/* jailer/cgroup.c against fake cgroup trees under /tmp: path building,
 * file -> controller -> hierarchy mapping, validation, and the whole
 * create/configure/attach/leave/destroy cycle for v1 and v2.
 *
 * mkdir and rmdir are wrapped (-Wl,--wrap=) so a fake tree behaves like
 * cgroupfs: a new cgroup directory comes with its parent's interface
 * files (empty), and removing it removes them. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "jailer/jailer.h"

int __real_mkdir(const char *path, mode_t mode);
int __wrap_mkdir(const char *path, mode_t mode);
int __real_rmdir(const char *path);
int __wrap_rmdir(const char *path);

static char fake[256]; /* the fake /sys/fs/cgroup */
static char real_fake[256];

static bool in_fake(const char *path)
{
	return fake[0] && (strncmp(path, fake, strlen(fake)) == 0 ||
			   strncmp(path, real_fake, strlen(real_fake)) == 0);
}

int __wrap_mkdir(const char *path, mode_t mode)
{
	char parent[PATH_MAX], file[PATH_MAX * 2];
	struct dirent *e;
	DIR *d;
	int ret = __real_mkdir(path, mode);

	if (ret || !in_fake(path))
		return ret;
	snprintf(parent, sizeof(parent), "%s", path);
	*strrchr(parent, '/') = '\0';
	d = opendir(parent);
	while (d && (e = readdir(d))) {
		if (e->d_type != DT_REG)
			continue;
		snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
		close(open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
	}
	if (d)
		closedir(d);
	return 0;
}

int __wrap_rmdir(const char *path)
{
	char file[PATH_MAX * 2];
	struct dirent *e;
	DIR *d;

	if (in_fake(path) && (d = opendir(path))) {
		while ((e = readdir(d))) {
			if (e->d_type != DT_REG)
				continue;
			snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
			unlink(file);
		}
		closedir(d);
	}
	return __real_rmdir(path);
}

/* --- fake tree helpers ---------------------------------------------------- */

static void put_file(const char *rel, const char *content)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", fake, rel);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static void put_dir(const char *rel)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", fake, rel);
	assert_int_equal(__real_mkdir(path, 0755), 0);
}

static const char *get_file(const char *rel)
{
	static char buf[4096];
	char path[PATH_MAX];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", fake, rel);
	f = fopen(path, "r");
	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static bool fake_exists(const char *rel)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", fake, rel);
	return access(path, F_OK) == 0;
}

static const char *fake_path(const char *rel)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", real_fake, rel);
	return path;
}

/* A v1 host: memory, cpu, cpuset and pids mounted one per directory. */
static void make_v1_tree(void)
{
	static const char *const common[] = { "tasks", "cgroup.procs", "notify_on_release" };

	put_dir("memory");
	put_dir("cpu");
	put_dir("cpuset");
	put_dir("pids");
	for (size_t i = 0; i < 3; i++) {
		char rel[64];
		static const char *const ctrl[] = { "memory", "cpu", "cpuset", "pids" };
		for (size_t c = 0; c < 4; c++) {
			snprintf(rel, sizeof(rel), "%s/%s", ctrl[c], common[i]);
			put_file(rel, "");
		}
	}
	put_file("memory/memory.limit_in_bytes", "9223372036854771712\n");
	put_file("cpu/cpu.cfs_quota_us", "-1\n");
	put_file("cpu/cpu.cfs_period_us", "100000\n");
	put_file("cpuset/cpuset.cpus", "0-1\n");
	put_file("cpuset/cpuset.mems", "0\n");
	/* pids.max is only in non-root cgroups, like the kernel does it */
}

/* A v2 host. Unlike the kernel, the fake root carries the limit files so
 * the mkdir wrapper hands them to new cgroups. */
static void make_v2_tree(const char *at)
{
	char rel[128];

	if (at[0])
		put_dir(at);
	snprintf(rel, sizeof(rel), "%s%scgroup.controllers", at, at[0] ? "/" : "");
	put_file(rel, "cpuset cpu io memory pids\n");
	snprintf(rel, sizeof(rel), "%s%scgroup.subtree_control", at, at[0] ? "/" : "");
	put_file(rel, "");
	snprintf(rel, sizeof(rel), "%s%scgroup.procs", at, at[0] ? "/" : "");
	put_file(rel, "");
	snprintf(rel, sizeof(rel), "%s%smemory.max", at, at[0] ? "/" : "");
	put_file(rel, "");
	snprintf(rel, sizeof(rel), "%s%scpu.max", at, at[0] ? "/" : "");
	put_file(rel, "");
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? __real_rmdir(path) : unlink(path);
}

static int setup(void **state)
{
	(void)state;
	snprintf(fake, sizeof(fake), "/tmp/mote-cgroup-test-XXXXXX");
	if (!mkdtemp(fake))
		return -1;
	char real[PATH_MAX];

	if (!realpath(fake, real) || strlen(real) >= sizeof(real_fake))
		return -1;
	strcpy(real_fake, real);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	nftw(fake, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	fake[0] = '\0';
	return 0;
}

/* --- tests ---------------------------------------------------------------- */

static void test_controller_of(void **state)
{
	char c[CGROUP_NAME_MAX];

	(void)state;
	assert_int_equal(cgroup_controller_of("memory.limit_in_bytes", c, sizeof(c)), 0);
	assert_string_equal(c, "memory");
	assert_int_equal(cgroup_controller_of("cpu.cfs_quota_us", c, sizeof(c)), 0);
	assert_string_equal(c, "cpu");
	assert_int_equal(cgroup_controller_of("cpu.max", c, sizeof(c)), 0);
	assert_string_equal(c, "cpu");
	assert_int_equal(cgroup_controller_of("hugetlb.2MB.max", c, sizeof(c)), 0);
	assert_string_equal(c, "hugetlb");
	assert_int_equal(cgroup_controller_of("cpuset.cpus", c, sizeof(c)), 0);
	assert_string_equal(c, "cpuset");
	/* not FILE names, or the jailer's own */
	assert_int_equal(cgroup_controller_of("memory", c, sizeof(c)), -EINVAL);
	assert_int_equal(cgroup_controller_of(".max", c, sizeof(c)), -EINVAL);
	assert_int_equal(cgroup_controller_of("memory.", c, sizeof(c)), -EINVAL);
	assert_int_equal(cgroup_controller_of("", c, sizeof(c)), -EINVAL);
	assert_int_equal(cgroup_controller_of("../memory.max", c, sizeof(c)), -EINVAL);
	assert_int_equal(cgroup_controller_of("a/memory.max", c, sizeof(c)), -EINVAL);
	assert_int_equal(cgroup_controller_of("cgroup.procs", c, sizeof(c)), -EINVAL);
	assert_int_equal(cgroup_controller_of("tasks", c, sizeof(c)), -EINVAL);
	assert_int_equal(cgroup_controller_of("memory.max x", c, sizeof(c)), -EINVAL);
}

static void test_setting_syntax(void **state)
{
	static struct cgroup_jail cg;

	(void)state;
	assert_int_equal(cgroup_jail_init(&cg, 2, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.max"), -EINVAL);
	assert_int_equal(cgroup_jail_add_setting(&cg, "=5"), -EINVAL);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.max="), -EINVAL);
	assert_int_equal(cgroup_jail_add_setting(&cg, "nodot=5"), -EINVAL);
	assert_int_equal(cg.nr_set, 0);
	/* the value is everything after the first '=' */
	assert_int_equal(cgroup_jail_add_setting(&cg, "cpu.max=50000 100000"), 0);
	assert_string_equal(cg.set[0].value, "50000 100000");
	assert_int_equal(cgroup_jail_init(&cg, 3, fake, "mote", "vm1"), -EINVAL);
}

static void test_v1_paths(void **state)
{
	static struct cgroup_jail cg;
	char expect[PATH_MAX];

	(void)state;
	make_v1_tree();
	assert_int_equal(cgroup_jail_init(&cg, 1, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.limit_in_bytes=268435456"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "cpu.cfs_quota_us=50000"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "cpu.cfs_period_us=100000"), 0);
	/* one hierarchy per controller, shared by its files */
	assert_int_equal(cg.nr_hier, 2);
	assert_int_equal(cg.set[1].hierarchy, cg.set[2].hierarchy);
	assert_int_not_equal(cg.set[0].hierarchy, cg.set[1].hierarchy);
	assert_string_equal(cg.hier[cg.set[0].hierarchy].controller, "memory");
	snprintf(expect, sizeof(expect), "%s", fake_path("memory/mote/vm1"));
	assert_string_equal(cg.hier[cg.set[0].hierarchy].dir, expect);
	assert_string_equal(cg.hier[cg.set[0].hierarchy].mount, fake_path("memory"));
	snprintf(expect, sizeof(expect), "%s", fake_path("cpu/mote/vm1"));
	assert_string_equal(cg.hier[cg.set[1].hierarchy].dir, expect);
	/* a nested parent */
	assert_int_equal(cgroup_jail_init(&cg, 1, fake, "vms/mote", "a-1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "pids.max=100"), 0);
	assert_string_equal(cg.hier[0].dir, fake_path("pids/vms/mote/a-1"));
}

static void test_v1_comounted_controllers_share_a_hierarchy(void **state)
{
	static struct cgroup_jail cg;
	char link[PATH_MAX];

	(void)state;
	put_dir("cpu,cpuacct");
	put_file("cpu,cpuacct/tasks", "");
	put_file("cpu,cpuacct/cpu.shares", "1024\n");
	put_file("cpu,cpuacct/cpuacct.usage", "0\n");
	snprintf(link, sizeof(link), "%s/cpu", fake);
	assert_int_equal(symlink("cpu,cpuacct", link), 0);
	snprintf(link, sizeof(link), "%s/cpuacct", fake);
	assert_int_equal(symlink("cpu,cpuacct", link), 0);
	assert_int_equal(cgroup_jail_init(&cg, 1, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "cpu.shares=512"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "cpuacct.usage=0"), 0);
	assert_int_equal(cg.nr_hier, 1);
	assert_string_equal(cg.hier[0].dir, fake_path("cpu,cpuacct/mote/vm1"));
	assert_int_equal(cgroup_jail_validate(&cg), 0);
}

static void test_v2_paths(void **state)
{
	static struct cgroup_jail cg;
	char expect[PATH_MAX];

	(void)state;
	make_v2_tree("");
	assert_int_equal(cgroup_jail_init(&cg, 2, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.max=268435456"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "cpu.max=50000 100000"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "pids.max=64"), 0);
	/* one unified hierarchy for all controllers */
	assert_int_equal(cg.nr_hier, 1);
	assert_string_equal(cg.hier[0].mount, fake);
	snprintf(expect, sizeof(expect), "%s/mote/vm1", fake);
	assert_string_equal(cg.hier[0].dir, expect);
	assert_int_equal(cgroup_jail_validate(&cg), 0);
}

static void test_v2_hybrid_layout_uses_unified(void **state)
{
	static struct cgroup_jail cg;
	char expect[PATH_MAX];

	(void)state;
	make_v2_tree("unified");
	assert_int_equal(cgroup_jail_init(&cg, 2, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.max=1G"), 0);
	snprintf(expect, sizeof(expect), "%s/unified/mote/vm1", fake);
	assert_string_equal(cg.hier[0].dir, expect);
}

static void test_v1_validate(void **state)
{
	static struct cgroup_jail cg;

	(void)state;
	make_v1_tree();
	/* a file the controller does not have */
	assert_int_equal(cgroup_jail_init(&cg, 1, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.bogus=1"), 0);
	assert_int_equal(cgroup_jail_validate(&cg), -ENOENT);
	/* a controller that is not mounted */
	assert_int_equal(cgroup_jail_init(&cg, 1, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "blkio.weight=100"), 0);
	assert_int_equal(cgroup_jail_validate(&cg), -ENOENT);
	/* pids.max lives only below the root, and is known */
	assert_int_equal(cgroup_jail_init(&cg, 1, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "pids.max=10"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.limit_in_bytes=1G"), 0);
	assert_int_equal(cgroup_jail_validate(&cg), 0);
	/* the jail's cgroup must be new */
	put_dir("memory/mote");
	put_dir("memory/mote/vm1");
	assert_int_equal(cgroup_jail_validate(&cg), -EEXIST);
	/* nothing above was created by validation */
	assert_false(fake_exists("pids/mote"));
}

static void test_v2_validate(void **state)
{
	static struct cgroup_jail cg;

	(void)state;
	make_v2_tree("");
	assert_int_equal(cgroup_jail_init(&cg, 2, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "hugetlb.2MB.max=0"), 0);
	assert_int_equal(cgroup_jail_validate(&cg), -ENOENT); /* not in cgroup.controllers */
	assert_int_equal(cgroup_jail_init(&cg, 2, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.bogus=0"), 0);
	assert_int_equal(cgroup_jail_validate(&cg), -ENOENT);
	assert_int_equal(cgroup_jail_init(&cg, 2, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.high=100M"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "io.max=8:0 rbps=1000"), 0);
	assert_int_equal(cgroup_jail_validate(&cg), 0);
	/* v1 asked for on a v2-only tree */
	assert_int_equal(cgroup_jail_init(&cg, 1, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.limit_in_bytes=1"), 0);
	assert_int_equal(cgroup_jail_validate(&cg), -ENOENT);
}

static void test_v2_create_configure_attach_destroy(void **state)
{
	static struct cgroup_jail cg;

	(void)state;
	make_v2_tree("");
	assert_int_equal(cgroup_jail_init(&cg, 2, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.max=268435456"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "cpu.max=50000 100000"), 0);
	assert_int_equal(cgroup_jail_validate(&cg), 0);
	assert_int_equal(cgroup_jail_create(&cg), 0);
	assert_true(fake_exists("mote/vm1"));
	assert_int_equal(cg.hier[0].levels_created, 2);
	/* controllers enabled down to the leaf's parent, not in the leaf */
	assert_string_equal(get_file("cgroup.subtree_control"), "+memory +cpu");
	assert_string_equal(get_file("mote/cgroup.subtree_control"), "+memory +cpu");
	assert_string_equal(get_file("mote/vm1/cgroup.subtree_control"), "");
	assert_int_equal(cgroup_jail_configure(&cg), 0);
	assert_string_equal(get_file("mote/vm1/memory.max"), "268435456");
	assert_string_equal(get_file("mote/vm1/cpu.max"), "50000 100000");
	assert_string_equal(get_file("memory.max"), ""); /* the root is untouched */
	assert_int_equal(cgroup_jail_attach(&cg, 4242), 0);
	assert_string_equal(get_file("mote/vm1/cgroup.procs"), "4242\n");
	strcpy(cg.hier[0].origin, "/");
	assert_int_equal(cgroup_jail_leave(&cg, 4242), 0);
	assert_string_equal(get_file("cgroup.procs"), "4242\n");
	cgroup_jail_destroy(&cg);
	assert_false(fake_exists("mote/vm1"));
	assert_false(fake_exists("mote")); /* we made it, so it goes too */
}

static void test_v2_existing_parent_is_kept(void **state)
{
	static struct cgroup_jail cg;

	(void)state;
	make_v2_tree("");
	put_dir("mote");
	put_file("mote/cgroup.subtree_control", "memory");
	put_file("mote/cgroup.procs", "");
	put_file("mote/memory.max", "");
	assert_int_equal(cgroup_jail_init(&cg, 2, fake, "mote", "vm2"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.max=1000"), 0);
	assert_int_equal(cgroup_jail_validate(&cg), 0);
	assert_int_equal(cgroup_jail_create(&cg), 0);
	assert_int_equal(cg.hier[0].levels_created, 1);
	/* already enabled in the parent: not written again */
	assert_string_equal(get_file("mote/cgroup.subtree_control"), "memory");
	cgroup_jail_destroy(&cg);
	assert_false(fake_exists("mote/vm2"));
	assert_true(fake_exists("mote"));
	/* a second jail with the same id fails and leaves the first alone */
	assert_int_equal(cgroup_jail_create(&cg), 0);
	static struct cgroup_jail again;
	assert_int_equal(cgroup_jail_init(&again, 2, fake, "mote", "vm2"), 0);
	assert_int_equal(cgroup_jail_add_setting(&again, "memory.max=1000"), 0);
	assert_int_equal(cgroup_jail_validate(&again), -EEXIST);
	assert_int_equal(cgroup_jail_create(&again), -EEXIST);
	cgroup_jail_destroy(&again);
	assert_true(fake_exists("mote/vm2"));
	cgroup_jail_destroy(&cg);
}

static void test_v2_file_the_kernel_did_not_make(void **state)
{
	static struct cgroup_jail cg;

	(void)state;
	make_v2_tree("");
	assert_int_equal(cgroup_jail_init(&cg, 2, fake, "mote", "vm1"), 0);
	/* known to validation, but this (fake) kernel has no memory.high */
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.high=1000"), 0);
	assert_int_equal(cgroup_jail_validate(&cg), 0);
	assert_int_equal(cgroup_jail_create(&cg), 0);
	assert_int_equal(cgroup_jail_configure(&cg), -ENOENT);
	cgroup_jail_destroy(&cg);
	assert_false(fake_exists("mote"));
}

static void test_v1_create_inherits_cpuset(void **state)
{
	static struct cgroup_jail cg;

	(void)state;
	make_v1_tree();
	assert_int_equal(cgroup_jail_init(&cg, 1, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.limit_in_bytes=268435456"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "cpuset.cpus=1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "cpu.cfs_quota_us=50000"), 0);
	assert_int_equal(cgroup_jail_validate(&cg), 0);
	assert_int_equal(cgroup_jail_create(&cg), 0);
	/* a new v1 cpuset starts empty; the jail's takes its parent's */
	assert_string_equal(get_file("cpuset/mote/cpuset.cpus"), "0-1");
	assert_string_equal(get_file("cpuset/mote/cpuset.mems"), "0");
	assert_string_equal(get_file("cpuset/mote/vm1/cpuset.mems"), "0");
	assert_false(fake_exists("pids/mote")); /* only the controllers asked for */
	assert_int_equal(cgroup_jail_configure(&cg), 0);
	assert_string_equal(get_file("cpuset/mote/vm1/cpuset.cpus"), "1");
	assert_string_equal(get_file("memory/mote/vm1/memory.limit_in_bytes"), "268435456");
	assert_string_equal(get_file("cpu/mote/vm1/cpu.cfs_quota_us"), "50000");
	assert_int_equal(cgroup_jail_attach(&cg, 777), 0);
	assert_string_equal(get_file("memory/mote/vm1/cgroup.procs"), "777\n");
	assert_string_equal(get_file("cpu/mote/vm1/cgroup.procs"), "777\n");
	assert_string_equal(get_file("cpuset/mote/vm1/cgroup.procs"), "777\n");
	cgroup_jail_destroy(&cg);
	assert_false(fake_exists("memory/mote"));
	assert_false(fake_exists("cpu/mote"));
	assert_false(fake_exists("cpuset/mote"));
}

static void test_read_origin(void **state)
{
	static struct cgroup_jail cg;
	char proc[PATH_MAX];

	(void)state;
	make_v1_tree();
	put_file("proc-cgroup", "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n"
				"3:cpuset:/\n1:cpu,cpuacct:/user.slice\n0::/\n");
	snprintf(proc, sizeof(proc), "%s/proc-cgroup", fake);
	assert_int_equal(cgroup_jail_init(&cg, 1, fake, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.limit_in_bytes=1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "cpu.cfs_quota_us=1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "pids.max=1"), 0);
	assert_int_equal(cgroup_jail_read_origin(&cg, proc), 0);
	assert_string_equal(cg.hier[0].origin, "/process_api/abc");
	assert_string_equal(cg.hier[1].origin, "/user.slice");
	assert_string_equal(cg.hier[2].origin, "/");

	make_v2_tree("v2");
	put_file("proc-cgroup2", "0::/system.slice/x.service\n");
	snprintf(proc, sizeof(proc), "%s/v2", fake);
	assert_int_equal(cgroup_jail_init(&cg, 2, proc, "mote", "vm1"), 0);
	assert_int_equal(cgroup_jail_add_setting(&cg, "memory.max=1"), 0);
	snprintf(proc, sizeof(proc), "%s/proc-cgroup2", fake);
	assert_int_equal(cgroup_jail_read_origin(&cg, proc), 0);
	assert_string_equal(cg.hier[0].origin, "/system.slice/x.service");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_controller_of),
		cmocka_unit_test_setup_teardown(test_setting_syntax, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v1_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v1_comounted_controllers_share_a_hierarchy,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2_hybrid_layout_uses_unified, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v1_validate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2_validate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2_create_configure_attach_destroy, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_v2_existing_parent_is_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2_file_the_kernel_did_not_make, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_v1_create_inherits_cpuset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_origin, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
