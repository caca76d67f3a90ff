/* The jail's cgroup: v1 (one hierarchy per controller, the jail at
 * <root>/<controller>/<parent>/<id>) and v2 (one unified hierarchy, the jail
 * at <root>/<parent>/<id>). The root is a parameter so unit tests can run
 * all of this against a fake tree under /tmp. */
#include "jailer/jailer.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Files the kernel creates only below a hierarchy's root, so validation
 * cannot look for them there (and the jail's parent may not exist yet).
 * With v2 every limit is such a file. */
static const char *const cgroup_v1_not_on_root[] = {
	"pids.max", "freezer.state", "blkio.bfq.weight", "blkio.weight", NULL,
};
static const char *const cgroup_v2_not_on_root[] = {
	"cpu.max", "cpu.max.burst", "cpu.weight", "cpu.weight.nice", "cpu.idle",
	"cpu.uclamp.min", "cpu.uclamp.max",
	"cpuset.cpus", "cpuset.mems", "cpuset.cpus.partition", "cpuset.cpus.exclusive",
	"io.max", "io.weight", "io.latency", "io.bfq.weight",
	"memory.min", "memory.low", "memory.high", "memory.max", "memory.oom.group",
	"memory.swap.high", "memory.swap.max", "memory.zswap.max", "memory.zswap.writeback",
	"pids.max", "rdma.max", "misc.max", NULL,
};

static int path_join(char *out, size_t len, const char *a, const char *b)
{
	int n = snprintf(out, len, "%s/%s", a, b);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static bool path_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* Cgroup files are written whole, in one write(), as the kernel parses
 * each write separately. O_TRUNC is ignored by cgroupfs and keeps a fake
 * tree's files honest. */
static int file_write(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	size_t len = strlen(value);
	ssize_t n;
	int ret = 0;

	if (fd < 0)
		return -errno;
	n = write(fd, value, len);
	if (n < 0)
		ret = -errno;
	else if ((size_t)n != len)
		ret = -EIO;
	close(fd);
	return ret;
}

/* Reads a small file, without its trailing whitespace. */
static int file_read(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		n--;
	buf[n] = '\0';
	return 0;
}

/* Is `word` one of the space-separated words of `list`? */
static bool word_in_list(const char *list, const char *word)
{
	size_t len = strlen(word);

	for (const char *p = list; *p;) {
		while (*p == ' ' || *p == '\n' || *p == ',')
			p++;
		size_t n = strcspn(p, " \n,");
		if (n == len && strncmp(p, word, len) == 0)
			return true;
		p += n;
	}
	return false;
}

int cgroup_controller_of(const char *file, char *controller, size_t len)
{
	size_t n = strcspn(file, ".");

	/* "cgroup.*" are the core interface files (cgroup.procs moves tasks,
	 * cgroup.subtree_control hands out controllers): the jailer owns
	 * those, a caller's --cgroup must not. */
	if (n == 0 || file[n] != '.' || file[n + 1] == '\0' || n >= len ||
	    strchr(file, '/') || strncmp(file, "cgroup.", 7) == 0)
		return -EINVAL;
	for (size_t i = 0; file[i]; i++)
		if (!((file[i] >= 'a' && file[i] <= 'z') || (file[i] >= '0' && file[i] <= '9') ||
		      (file[i] >= 'A' && file[i] <= 'Z') || file[i] == '_' || file[i] == '.'))
			return -EINVAL;
	memcpy(controller, file, n);
	controller[n] = '\0';
	return 0;
}

int cgroup_jail_init(struct cgroup_jail *cg, int version, const char *fs_root,
		     const char *parent, const char *id)
{
	memset(cg, 0, sizeof(*cg));
	if (version != 1 && version != 2)
		return -EINVAL;
	cg->version = version;
	cg->parent = parent;
	cg->id = id;
	if (snprintf(cg->fs_root, sizeof(cg->fs_root), "%s", fs_root) >=
	    (int)sizeof(cg->fs_root))
		return -ENAMETOOLONG;
	return 0;
}

/* Hybrid hosts (systemd's layout) mount v2 at <root>/unified; pure v2
 * hosts at <root> itself. */
static int cgroup_v2_mount(const struct cgroup_jail *cg, char *out, size_t len)
{
	char probe[PATH_MAX];
	int ret;

	ret = path_join(probe, sizeof(probe), cg->fs_root, "cgroup.controllers");
	if (ret)
		return ret;
	if (!path_exists(probe)) {
		ret = path_join(probe, sizeof(probe), cg->fs_root, "unified/cgroup.controllers");
		if (ret)
			return ret;
		if (path_exists(probe))
			return path_join(out, len, cg->fs_root, "unified");
	}
	return snprintf(out, len, "%s", cg->fs_root) >= (int)len ? -ENAMETOOLONG : 0;
}

/* Finds or adds the hierarchy a controller's files live in. */
static int cgroup_hierarchy_for(struct cgroup_jail *cg, const char *controller, size_t *idx)
{
	char mount[PATH_MAX], real[PATH_MAX];
	struct cgroup_hierarchy *h;
	int ret;

	if (cg->version == 2) {
		if (cg->nr_hier) {
			*idx = 0;
			return 0;
		}
		ret = cgroup_v2_mount(cg, mount, sizeof(mount));
	} else {
		ret = path_join(mount, sizeof(mount), cg->fs_root, controller);
		/* Co-mounted controllers ("cpu" -> "cpu,cpuacct") are one
		 * directory tree: create and join it once. */
		if (!ret && realpath(mount, real))
			memcpy(mount, real, sizeof(mount));
	}
	if (ret)
		return ret;
	for (size_t i = 0; i < cg->nr_hier; i++) {
		if (strcmp(cg->hier[i].mount, mount) == 0) {
			*idx = i;
			return 0;
		}
	}
	if (cg->nr_hier == CGROUP_MAX_HIERARCHIES)
		return -E2BIG;
	h = &cg->hier[cg->nr_hier];
	memset(h, 0, sizeof(*h));
	snprintf(h->controller, sizeof(h->controller), "%s", controller);
	memcpy(h->mount, mount, sizeof(h->mount));
	if (snprintf(h->dir, sizeof(h->dir), "%s/%s/%s", mount, cg->parent, cg->id) >=
	    (int)sizeof(h->dir))
		return -ENAMETOOLONG;
	*idx = cg->nr_hier++;
	return 0;
}

int cgroup_jail_add_setting(struct cgroup_jail *cg, const char *arg)
{
	const char *eq = strchr(arg, '=');
	struct cgroup_setting *s;
	size_t file_len;
	int ret;

	if (!eq || eq == arg || !eq[1] || strchr(eq + 1, '\n')) {
		jail_msg("--cgroup: '%s' is not FILE=VALUE", arg);
		return -EINVAL;
	}
	if (cg->nr_set == CGROUP_MAX_SETTINGS) {
		jail_msg("--cgroup: more than %d settings", CGROUP_MAX_SETTINGS);
		return -E2BIG;
	}
	s = &cg->set[cg->nr_set];
	file_len = (size_t)(eq - arg);
	if (file_len < sizeof(s->file)) {
		memcpy(s->file, arg, file_len);
		s->file[file_len] = '\0';
	}
	if (file_len >= sizeof(s->file) ||
	    cgroup_controller_of(s->file, s->controller, sizeof(s->controller))) {
		jail_msg("--cgroup: '%.*s' is not a controller's file name like memory.max or "
			 "cpu.cfs_quota_us", (int)file_len, arg);
		return -EINVAL;
	}
	s->value = eq + 1;
	ret = cgroup_hierarchy_for(cg, s->controller, &s->hierarchy);
	if (ret) {
		jail_msg("--cgroup: %s: cannot place the cgroup: %s", s->file, strerror(-ret));
		return ret;
	}
	cg->nr_set++;
	return 0;
}

static bool cgroup_file_known_below_root(int version, const char *file)
{
	const char *const *list = version == 1 ? cgroup_v1_not_on_root : cgroup_v2_not_on_root;
	size_t len = strlen(file);

	for (size_t i = 0; list[i]; i++)
		if (strcmp(list[i], file) == 0)
			return true;
	/* hugetlb.<page size>.max, hugetlb.<page size>.rsvd.max */
	return version == 2 && strncmp(file, "hugetlb.", 8) == 0 && len > 12 &&
	       strcmp(file + len - 4, ".max") == 0;
}

int cgroup_jail_validate(const struct cgroup_jail *cg)
{
	char path[PATH_MAX], list[1024];
	int ret;

	for (size_t i = 0; i < cg->nr_hier; i++) {
		const struct cgroup_hierarchy *h = &cg->hier[i];

		if (cg->version == 1) {
			/* Only v1 hierarchies have a "tasks" file. */
			ret = path_join(path, sizeof(path), h->mount, "tasks");
			if (ret || !path_exists(path)) {
				jail_msg("cgroup v1: controller '%s' is not mounted at %s (no 'tasks' "
					 "file there); is this host on cgroup v2? (--cgroup-version 2)",
					 h->controller, h->mount);
				return -ENOENT;
			}
		} else {
			ret = path_join(path, sizeof(path), h->mount, "cgroup.controllers");
			if (ret || !path_exists(path)) {
				jail_msg("cgroup v2 is not mounted at %s (no cgroup.controllers there); "
					 "is this host on cgroup v1? (--cgroup-version 1)", h->mount);
				return -ENOENT;
			}
		}
		if (path_exists(h->dir)) {
			jail_msg("cgroup %s already exists: another jail with this --id? Remove it "
				 "(rmdir) or pick another --id", h->dir);
			return -EEXIST;
		}
	}
	for (size_t i = 0; i < cg->nr_set; i++) {
		const struct cgroup_setting *s = &cg->set[i];
		const struct cgroup_hierarchy *h = &cg->hier[s->hierarchy];

		if (cg->version == 2) {
			ret = path_join(path, sizeof(path), h->mount, "cgroup.controllers");
			if (!ret)
				ret = file_read(path, list, sizeof(list));
			if (ret || !word_in_list(list, s->controller)) {
				jail_msg("cgroup v2: controller '%s' (for %s) is not available in %s "
					 "(cgroup.controllers: '%s')", s->controller, s->file, h->mount,
					 ret ? "unreadable" : list);
				return -ENOENT;
			}
		}
		if (cgroup_file_known_below_root(cg->version, s->file))
			continue;
		/* Everything else shows at the hierarchy's root, or in the
		 * jail's parent cgroup when that exists already. */
		if (!path_join(path, sizeof(path), h->mount, s->file) && path_exists(path))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s/%s", h->mount, cg->parent, s->file) <
			    (int)sizeof(path) && path_exists(path))
			continue;
		jail_msg("--cgroup: unknown cgroup file '%s': there is no %s/%s", s->file,
			 h->mount, s->file);
		return -ENOENT;
	}
	return 0;
}

int cgroup_jail_read_origin(struct cgroup_jail *cg, const char *proc_cgroup)
{
	FILE *f = fopen(proc_cgroup, "re");
	char *line = NULL;
	size_t cap = 0;

	if (!f)
		return jail_fail("reading our cgroups", proc_cgroup, -errno);
	for (size_t i = 0; i < cg->nr_hier; i++)
		strcpy(cg->hier[i].origin, "/");
	/* Lines are "<hierarchy id>:<controllers>:<path>"; v2 is "0::<path>". */
	while (getline(&line, &cap, f) > 0) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (!c2)
			continue;
		*c1 = '\0';
		*c2 = '\0';
		c2[1 + strcspn(c2 + 1, "\n")] = '\0';
		for (size_t i = 0; i < cg->nr_hier; i++) {
			struct cgroup_hierarchy *h = &cg->hier[i];
			bool match = cg->version == 2 ? strcmp(line, "0") == 0 && c1[1] == '\0'
						      : word_in_list(c1 + 1, h->controller);
			if (match)
				snprintf(h->origin, sizeof(h->origin), "%s", c2 + 1);
		}
	}
	free(line);
	fclose(f);
	return 0;
}

/* A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and the
 * kernel refuses to put a task in it (ENOSPC) until both are set: start
 * from the parent's, as a v2 cpuset does by itself. */
static int cgroup_v1_cpuset_inherit(const char *dir)
{
	static const char *const files[] = { "cpuset.cpus", "cpuset.mems" };
	char path[PATH_MAX], parent_path[PATH_MAX], value[4096];
	int ret;

	for (size_t i = 0; i < 2; i++) {
		ret = path_join(path, sizeof(path), dir, files[i]);
		if (ret || !path_exists(path))
			return ret;
		ret = file_read(path, value, sizeof(value));
		if (ret)
			return jail_fail("reading cgroup cpuset", path, ret);
		if (value[0])
			continue;
		if (snprintf(parent_path, sizeof(parent_path), "%s/../%s", dir, files[i]) >=
		    (int)sizeof(parent_path))
			return -ENAMETOOLONG;
		ret = file_read(parent_path, value, sizeof(value));
		if (ret)
			return jail_fail("reading parent cgroup cpuset", parent_path, ret);
		ret = file_write(path, value);
		if (ret)
			return jail_fail("copying the parent's cpuset into", path, ret);
	}
	return 0;
}

/* mkdir -p of `target` (h->dir or one of its parents) below the mount,
 * counting what we made: once one level is new, every deeper one is too,
 * so a count says exactly which directories cleanup may remove. */
static int cgroup_mkdir_levels(const struct cgroup_jail *cg, struct cgroup_hierarchy *h,
			       const char *target, bool last_must_be_new)
{
	size_t mount_len = strlen(h->mount);
	char path[PATH_MAX];
	int ret;

	if (snprintf(path, sizeof(path), "%s", target) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	for (char *p = path + mount_len + 1;; p++) {
		bool last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (mkdir(path, 0755) == 0) {
			h->levels_created++;
			if (cg->version == 1) {
				ret = cgroup_v1_cpuset_inherit(path);
				if (ret)
					return ret;
			}
		} else if (errno != EEXIST || (last && last_must_be_new)) {
			ret = -errno;
			if (ret == -EEXIST)
				jail_msg("creating cgroup: %s already exists: another jail with this "
					 "--id?", path);
			else
				jail_fail("creating cgroup", path, ret);
			return ret;
		}
		if (last)
			return 0;
		*p = '/';
	}
}

/* v2 hands a controller to a cgroup only if every ancestor lists it in
 * cgroup.subtree_control. */
static int cgroup_v2_enable_controllers(const struct cgroup_jail *cg,
					const struct cgroup_hierarchy *h)
{
	char path[PATH_MAX], level[PATH_MAX], have[1024], want[1024];
	size_t mount_len = strlen(h->mount), want_len;
	int ret;

	memcpy(level, h->dir, sizeof(level));
	*strrchr(level, '/') = '\0'; /* the leaf's parent is the deepest level */
	for (char *p = level + mount_len;; p++) {
		bool last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		ret = path_join(path, sizeof(path), level, "cgroup.subtree_control");
		if (ret)
			return ret;
		ret = file_read(path, have, sizeof(have));
		if (ret)
			return jail_fail("reading cgroup.subtree_control", path, ret);
		want[0] = '\0';
		want_len = 0;
		for (size_t i = 0; i < cg->nr_set; i++) {
			const char *c = cg->set[i].controller;
			char plus[CGROUP_NAME_MAX + 1];

			snprintf(plus, sizeof(plus), "+%s", c);
			if (word_in_list(have, c) || word_in_list(want, plus))
				continue;
			want_len += (size_t)snprintf(want + want_len, sizeof(want) - want_len, "%s%s",
						     want_len ? " " : "", plus);
		}
		if (want_len) {
			ret = file_write(path, want);
			if (ret) {
				jail_msg("enabling controllers '%s' in %s: %s%s", want, path,
					 strerror(-ret), ret == -EBUSY ?
					 " (v2 does not allow processes in a cgroup that hands "
					 "controllers to its children: use another --parent-cgroup)" : "");
				return ret;
			}
		}
		if (last)
			return 0;
		*p = '/';
	}
}

int cgroup_jail_create(struct cgroup_jail *cg)
{
	char parent_dir[PATH_MAX];
	int ret;

	for (size_t i = 0; i < cg->nr_hier; i++) {
		struct cgroup_hierarchy *h = &cg->hier[i];

		if (cg->version == 2) {
			/* Parents first, then their subtree_control, then the
			 * leaf: made earlier, the leaf would lack the
			 * controllers' files. */
			memcpy(parent_dir, h->dir, sizeof(parent_dir));
			*strrchr(parent_dir, '/') = '\0';
			ret = cgroup_mkdir_levels(cg, h, parent_dir, false);
			if (!ret)
				ret = cgroup_v2_enable_controllers(cg, h);
			if (ret)
				return ret;
		}
		ret = cgroup_mkdir_levels(cg, h, h->dir, true);
		if (ret)
			return ret;
	}
	return 0;
}

/* Accepts what the kernel reads back if it is the value written, or the
 * value written followed by more fields (v2 "cpu.max" "max" reads back as
 * "max 100000"). */
static bool cgroup_value_matches(const char *wrote, const char *got)
{
	size_t len = strlen(wrote);

	while (len && (wrote[len - 1] == '\n' || wrote[len - 1] == ' '))
		len--;
	return strncmp(wrote, got, len) == 0 && (got[len] == '\0' || got[len] == ' ');
}

int cgroup_jail_configure(const struct cgroup_jail *cg)
{
	char path[PATH_MAX], got[4096];
	int ret;

	for (size_t i = 0; i < cg->nr_set; i++) {
		const struct cgroup_setting *s = &cg->set[i];

		ret = path_join(path, sizeof(path), cg->hier[s->hierarchy].dir, s->file);
		if (ret)
			return jail_fail("cgroup file", s->file, ret);
		ret = file_write(path, s->value);
		if (ret == -ENOENT) {
			jail_msg("--cgroup: unknown cgroup file '%s': the kernel made no %s", s->file,
				 path);
			return ret;
		}
		if (ret) {
			jail_msg("writing cgroup value '%s' to %s: %s", s->value, path, strerror(-ret));
			return ret;
		}
		/* Read back: a write can succeed and still not be the limit
		 * asked for (the kernel rounds memory limits to pages, turns
		 * -1 into its own maximum). Say so, as the caller may have
		 * meant something else. */
		ret = file_read(path, got, sizeof(got));
		if (ret)
			return jail_fail("reading back cgroup value", path, ret);
		if (!cgroup_value_matches(s->value, got))
			jail_msg("note: %s reads back as '%s' after writing '%s'", path, got, s->value);
	}
	return 0;
}

static int cgroup_write_pid(const char *dir, pid_t pid)
{
	char path[PATH_MAX], value[32];
	int ret;

	/* v1 hierarchies also have "tasks" (per thread); cgroup.procs moves
	 * the whole process, and both versions have it. */
	ret = path_join(path, sizeof(path), dir, "cgroup.procs");
	if (!ret && !path_exists(path))
		ret = path_join(path, sizeof(path), dir, "tasks");
	if (ret)
		return ret;
	snprintf(value, sizeof(value), "%d\n", (int)pid);
	ret = file_write(path, value);
	if (ret)
		jail_fail("moving the process into cgroup", path, ret);
	return ret;
}

int cgroup_jail_attach(struct cgroup_jail *cg, pid_t pid)
{
	int ret;

	for (size_t i = 0; i < cg->nr_hier; i++) {
		ret = cgroup_write_pid(cg->hier[i].dir, pid);
		if (ret)
			return ret;
		cg->hier[i].attached = true;
	}
	return 0;
}

int cgroup_jail_leave(struct cgroup_jail *cg, pid_t pid)
{
	char dir[PATH_MAX];
	int first = 0, ret;

	for (size_t i = 0; i < cg->nr_hier; i++) {
		struct cgroup_hierarchy *h = &cg->hier[i];

		if (!h->attached)
			continue;
		if (snprintf(dir, sizeof(dir), "%s%s%s", h->mount, h->origin[0] == '/' ? "" : "/",
			     h->origin) >= (int)sizeof(dir))
			ret = -ENAMETOOLONG;
		else
			ret = cgroup_write_pid(dir, pid);
		if (ret && !first)
			first = ret;
		if (!ret)
			h->attached = false;
	}
	return first;
}

static int cgroup_rmdir(const char *path, bool wait_busy)
{
	/* A task that has just exited can keep its cgroup busy for a moment
	 * while the kernel finishes with it. */
	for (int tries = 0; rmdir(path); tries++) {
		if (errno != EBUSY || !wait_busy || tries == 200)
			return -errno;
		nanosleep(&(struct timespec){ .tv_nsec = 5 * 1000 * 1000 }, NULL);
	}
	return 0;
}

void cgroup_jail_destroy(struct cgroup_jail *cg)
{
	char path[PATH_MAX];
	int ret;

	for (size_t i = 0; i < cg->nr_hier; i++) {
		struct cgroup_hierarchy *h = &cg->hier[i];

		memcpy(path, h->dir, sizeof(path));
		for (int level = 0; level < h->levels_created; level++) {
			ret = cgroup_rmdir(path, level == 0);
			if (ret) {
				/* A parent still in use belongs to other jails too. */
				if (level == 0)
					jail_fail("cleanup: removing cgroup", path, ret);
				break;
			}
			*strrchr(path, '/') = '\0';
		}
		h->levels_created = 0;
	}
}
