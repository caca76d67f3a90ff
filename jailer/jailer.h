/* mote-jailer: the internal API shared by main.c, cgroup.c, chroot.c and
 * caps.c. Every function returns 0 or -errno and prints its own message
 * (naming the step and the path) before failing; only main() exits. */
#ifndef MOTE_JAILER_H
#define MOTE_JAILER_H

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#define JAILER_PROG "mote-jailer"

/* Every line the jailer prints starts with its name, so it can be told
 * apart from the monitor's own output on the same stderr. */
__attribute__((format(printf, 1, 2))) static inline void jail_msg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs(JAILER_PROG ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* "<step>: <path>: <error>", then returns err (a -errno) for tail calls. */
static inline int jail_fail(const char *step, const char *path, int err)
{
	jail_msg("%s: %s: %s", step, path, strerror(-err));
	return err;
}

/* --- cgroup.c: v1 (one hierarchy per controller) and v2 (unified) ------- */

#define CGROUP_FS_ROOT "/sys/fs/cgroup"
#define CGROUP_MAX_SETTINGS 32
#define CGROUP_MAX_HIERARCHIES 16
#define CGROUP_NAME_MAX 64

struct cgroup_setting {
	char file[CGROUP_NAME_MAX];       /* "memory.limit_in_bytes" */
	char controller[CGROUP_NAME_MAX]; /* "memory": the part before the first dot */
	const char *value;
	size_t hierarchy;                 /* index into cgroup_jail.hier */
};

/* One directory tree the jail's cgroup lives in: with v1, one per mounted
 * controller (co-mounted controllers share one); with v2, the only one. */
struct cgroup_hierarchy {
	char controller[CGROUP_NAME_MAX]; /* v1: the first controller named for it */
	char mount[PATH_MAX];             /* root of the hierarchy */
	char dir[PATH_MAX];               /* <mount>/<parent>/<id> */
	char origin[PATH_MAX];            /* our cgroup before attach, relative to mount */
	int levels_created;               /* trailing components of dir we made */
	bool attached;
};

struct cgroup_jail {
	int version; /* 1 or 2 */
	char fs_root[PATH_MAX]; /* CGROUP_FS_ROOT, or a fake tree in tests */
	const char *parent;     /* --parent-cgroup, relative, may contain '/' */
	const char *id;
	struct cgroup_setting set[CGROUP_MAX_SETTINGS];
	size_t nr_set;
	struct cgroup_hierarchy hier[CGROUP_MAX_HIERARCHIES];
	size_t nr_hier;
};

/* Controller of a cgroup file name ("cpu.cfs_quota_us" -> "cpu"). */
int cgroup_controller_of(const char *file, char *controller, size_t len);
int cgroup_jail_init(struct cgroup_jail *cg, int version, const char *fs_root,
		     const char *parent, const char *id);
/* Adds one "FILE=VALUE"; arg must outlive cg. No file-system side effects. */
int cgroup_jail_add_setting(struct cgroup_jail *cg, const char *arg);
/* Checks without changing anything: hierarchies mounted, controllers
 * available, files known (v1), the jail's cgroup not there yet. */
int cgroup_jail_validate(const struct cgroup_jail *cg);
/* Records where this process is now (a /proc/<pid>/cgroup file), so a
 * failed jail can move it back out before removing its cgroups. */
int cgroup_jail_read_origin(struct cgroup_jail *cg, const char *proc_cgroup);
int cgroup_jail_create(struct cgroup_jail *cg);
int cgroup_jail_configure(const struct cgroup_jail *cg);
int cgroup_jail_attach(struct cgroup_jail *cg, pid_t pid);
int cgroup_jail_leave(struct cgroup_jail *cg, pid_t pid);
/* Removes the directories cgroup_jail_create made, deepest first. */
void cgroup_jail_destroy(struct cgroup_jail *cg);

/* --- chroot.c: the jail's directory tree, devices, pivot_root ------------ */

#define JAIL_OLD_ROOT "old_root" /* where pivot_root parks the host's root */

struct jail_fs {
	char base[PATH_MAX];   /* --chroot-base-dir */
	char id_dir[PATH_MAX]; /* <base>/<exec-name>/<id> */
	char root[PATH_MAX];   /* <id_dir>/root */
	int parents_created;   /* components above id_dir that we made */
	bool id_dir_created;
	bool root_bound;       /* root is bind-mounted on itself (our mount ns) */
	bool pivoted;          /* host paths are gone from our view */
};

int jail_fs_init(struct jail_fs *fs, const char *base, const char *exec_name, const char *id);
int jail_fs_validate(const struct jail_fs *fs);
int jail_fs_create(struct jail_fs *fs);
/* Copies src to dst (a path inside the jail) with mode, owned by uid/gid;
 * missing parent directories are made root-owned 0755. */
int jail_fs_copy_in(const struct jail_fs *fs, const char *src, const char *dst, mode_t mode,
		    uid_t uid, gid_t gid);
/* Hard-links src into the jail as dst (--link-in, --link-exec): the same
 * inode, so every jail shares its page cache. src must be on the jail's
 * file system (EXDEV otherwise, with a message). */
int jail_fs_link_in(const struct jail_fs *fs, const char *src, const char *dst);
/* /dev/kvm, /dev/net/tun (skipped with a note if the host has none) and
 * /dev/urandom, with the host's device numbers, owned by uid/gid. */
int jail_fs_make_devices(const struct jail_fs *fs, uid_t uid, gid_t gid);
int jail_fs_chown_root(const struct jail_fs *fs, uid_t uid, gid_t gid);
/* In a fresh mount namespace: make everything private, pivot into root,
 * detach and remove the old root. Afterwards "/" is the jail.
 * move_root (--move-root): instead of pivot_root, which walks every
 * thread on the host (9 ms a start with 5,000 VMs live here), detach every
 * host mount that is not on the way to the jail root, move the jail root
 * over "/" and chroot into it: the same view from inside, at a cost that
 * does not grow with the host's threads. The host's root file system (and
 * the mounts on the way to the jail) stay in the namespace, under the jail,
 * reachable by no path. */
int jail_fs_enter(struct jail_fs *fs, bool move_root);
/* Undoes jail_fs_create (only what it made). Impossible once pivoted:
 * then it names what was left behind. */
void jail_fs_remove(struct jail_fs *fs);
/* Rejects a jail-relative path with empty, "." or ".." components. */
int jail_fs_check_inner_path(const char *path);

/* --- caps.c: giving up root for good ------------------------------------- */

int jail_drop_privileges(uid_t uid, gid_t gid);

#endif
