/* Applying a VM's CPU entitlement to its cgroup, v1 or v2; see agent.h.
 *   v1: <root>/<parent>/<vm>/cpu.shares, cpu.cfs_period_us, cpu.cfs_quota_us
 *       (root: the cpu controller's mount, /sys/fs/cgroup/cpu)
 *   v2: <root>/<parent>/<vm>/cpu.weight, cpu.max ("quota period" or "max")
 *       (root: the unified mount; +cpu is enabled on the way down) */
#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_file(const char *dir, const char *file, const char *val)
{
	char path[AGENT_PATH_MAX * 2];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC); /* O_TRUNC: as a shell's > does */
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, val, strlen(val));
	if (n < 0)
		ret = -errno;
	else if ((size_t)n != strlen(val))
		ret = -EIO;
	close(fd);
	return ret;
}

static int make_dir(const char *path)
{
	return mkdir(path, 0755) && errno != EEXIST ? -errno : 0;
}

int agent_cgroup_apply(const struct agent_cgroup *cg, const char *vm, pid_t pid,
		       const struct agent_entitlement *e, char *err, size_t errlen)
{
	char parent[AGENT_PATH_MAX + AGENT_NAME_MAX + 2], dir[sizeof(parent) + AGENT_NAME_MAX + 2];
	char val[64];
	const char *step;
	int ret;

	if (cg->version != 1 && cg->version != 2) {
		snprintf(err, errlen, "cgroup version must be 1 or 2");
		return -EINVAL;
	}
	if (!vm[0] || strchr(vm, '/') || !strcmp(vm, ".") || !strcmp(vm, "..")) {
		snprintf(err, errlen, "bad VM name '%s' for a cgroup", vm);
		return -EINVAL;
	}
	snprintf(parent, sizeof(parent), "%s/%s", cg->root, cg->parent);
	snprintf(dir, sizeof(dir), "%s/%s", parent, vm);
	step = "mkdir";
	ret = make_dir(parent);
	if (!ret && cg->version == 2) {
		/* The cpu controller must be on in each ancestor's subtree. */
		step = "cgroup.subtree_control";
		ret = write_file(cg->root, "cgroup.subtree_control", "+cpu");
		if (!ret)
			ret = write_file(parent, "cgroup.subtree_control", "+cpu");
	}
	if (!ret) {
		step = "mkdir";
		ret = make_dir(dir);
	}
	if (!ret && pid > 0) {
		step = "cgroup.procs";
		snprintf(val, sizeof(val), "%d", (int)pid);
		ret = write_file(dir, "cgroup.procs", val);
	}
	if (!ret && cg->version == 1) {
		step = "cpu.shares";
		snprintf(val, sizeof(val), "%u", e->shares_v1);
		ret = write_file(dir, "cpu.shares", val);
		if (!ret) {
			step = "cpu.cfs_period_us";
			snprintf(val, sizeof(val), "%ld", e->period_us);
			ret = write_file(dir, "cpu.cfs_period_us", val);
		}
		if (!ret) {
			step = "cpu.cfs_quota_us";
			snprintf(val, sizeof(val), "%ld", e->quota_us > 0 ? e->quota_us : -1L);
			ret = write_file(dir, "cpu.cfs_quota_us", val);
		}
	} else if (!ret) {
		step = "cpu.weight";
		snprintf(val, sizeof(val), "%u", e->weight_v2);
		ret = write_file(dir, "cpu.weight", val);
		if (!ret) {
			step = "cpu.max";
			if (e->quota_us > 0)
				snprintf(val, sizeof(val), "%ld %ld", e->quota_us, e->period_us);
			else
				snprintf(val, sizeof(val), "max %ld", e->period_us);
			ret = write_file(dir, "cpu.max", val);
		}
	}
	if (ret)
		snprintf(err, errlen, "cgroup v%d %s for VM '%s' in %s: %s", cg->version, step, vm,
			 dir, strerror(-ret));
	return ret;
}

int agent_cgroup_remove(const struct agent_cgroup *cg, const char *vm)
{
	char dir[AGENT_PATH_MAX * 2 + 4];

	snprintf(dir, sizeof(dir), "%s/%s/%s", cg->root, cg->parent, vm);
	return rmdir(dir) ? -errno : 0;
}

int agent_cgroup_host(const struct agent_cgroup *cg, const char *host, double cap_cpus,
		      unsigned period_us, char *err, size_t errlen)
{
	char parent[AGENT_PATH_MAX + AGENT_NAME_MAX + 2], dir[sizeof(parent) + AGENT_NAME_MAX + 2];
	char val[64];
	int ret;

	if (!host[0] || strchr(host, '/') || !strcmp(host, ".") || !strcmp(host, "..")) {
		snprintf(err, errlen, "bad host name '%s'", host);
		return -EINVAL;
	}
	snprintf(parent, sizeof(parent), "%s/%s", cg->root, cg->parent);
	snprintf(dir, sizeof(dir), "%s/%s", parent, host);
	ret = make_dir(parent);
	if (!ret && cg->version == 2) {
		ret = write_file(cg->root, "cgroup.subtree_control", "+cpu");
		if (!ret)
			ret = write_file(parent, "cgroup.subtree_control", "+cpu");
	}
	if (!ret)
		ret = make_dir(dir);
	long quota = (long)(cap_cpus * period_us + 0.5);
	if (!ret && cg->version == 1) {
		snprintf(val, sizeof(val), "%u", period_us);
		ret = write_file(dir, "cpu.cfs_period_us", val);
		snprintf(val, sizeof(val), "%ld", quota);
		if (!ret)
			ret = write_file(dir, "cpu.cfs_quota_us", val);
	} else if (!ret) {
		snprintf(val, sizeof(val), "%ld %u", quota, period_us);
		ret = write_file(dir, "cpu.max", val);
	}
	if (ret)
		snprintf(err, errlen, "host '%s' (%s): %s", host, dir, strerror(-ret));
	return ret;
}

int agent_cgroup_join(const struct agent_cgroup *cg, const char *host, pid_t pid)
{
	char dir[AGENT_PATH_MAX * 2 + 4], val[24];

	snprintf(dir, sizeof(dir), "%s/%s/%s", cg->root, cg->parent, host);
	snprintf(val, sizeof(val), "%d", (int)pid);
	return write_file(dir, "cgroup.procs", val);
}
