/* mote-jailer: starts a monitor (mote, or any static binary) confined to
 * its own root directory, cgroup, network namespace and unprivileged ids.
 * The flags follow Firecracker's jailer. Everything is checked before
 * anything is changed; a failure after that removes what was made. */
#include <elf.h>
#include <getopt.h>
#include <linux/magic.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include "jailer/jailer.h"

#ifndef MOTE_VERSION
#define MOTE_VERSION "0.1.0"
#endif

#define JAILER_EXIT_USAGE 64 /* bad arguments: nothing was changed */
#define JAILER_EXIT_SETUP 1  /* a jail step failed: what was made is gone */

#define ID_MAX_LEN 64
#define MAX_COPIES 32
/* Firecracker's jailer default: enough for a monitor with a few devices,
 * far below what a runaway one could use to exhaust the host's files. */
#define DEFAULT_NOFILE 2048

struct jail_copy {
	const char *src;
	char dst[PATH_MAX];
	bool link;          /* --link-in: a hard link, not a copy */
};

struct jail_rlimit {
	const char *name;
	int resource;
	bool set;
	rlim_t value;
};

struct jail {
	const char *id;
	const char *exec_file;
	const char *exec_name;
	char exec_in_jail[NAME_MAX + 2]; /* "/<exec-name>" */
	uid_t uid;
	gid_t gid;
	bool have_uid, have_gid;
	const char *chroot_base;
	const char *netns;
	int cgroup_version;
	const char *parent_cgroup;
	const char *cgroup_args[CGROUP_MAX_SETTINGS];
	size_t nr_cgroup_args;
	struct jail_rlimit rlimits[2];
	struct jail_copy copies[MAX_COPIES];
	size_t nr_copies;
	bool daemonize, new_pid_ns;
	bool move_root;           /* --move-root: MS_MOVE + chroot, not pivot_root */
	bool link_exec;      /* --link-exec */
	char **monitor_argv; /* argv[0] = exec name, then what followed "--" */
	/* The caller's parent-death signal and who that parent was: the
	 * uid/gid change clears the signal, and the monitor gets it back. */
	int pdeathsig;
	pid_t parent;

	struct cgroup_jail cg;
	struct jail_fs fs;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mote-jailer --id ID --exec-file PATH --uid UID --gid GID [options]\n"
		"                   [-- MONITOR-ARGS...]\n"
		"\n"
		"Runs PATH (a static binary, e.g. mote) inside a new jail:\n"
		"<chroot-base-dir>/<exec-file name>/<id>/root becomes its /, holding only the\n"
		"binary, the --copy-in files and /dev/{kvm,net/tun,urandom}; it runs as UID/GID\n"
		"with no capabilities, in its own mount namespace and cgroup.\n"
		"\n"
		"  --id ID                  1-%d letters, digits or hyphens (required)\n"
		"  --exec-file PATH         the monitor binary, copied into the jail (required)\n"
		"  --uid UID, --gid GID     ids the monitor runs as (required)\n"
		"  --chroot-base-dir DIR    where jails are made (default /srv/jailer)\n"
		"  --netns PATH             join this network namespace (e.g. /var/run/netns/X)\n"
		"  --cgroup-version 1|2     cgroup hierarchy layout (default 2)\n"
		"  --cgroup FILE=VALUE      write VALUE to the jail cgroup's FILE, e.g.\n"
		"                           memory.max=256M (v2), cpu.cfs_quota_us=50000 (v1);\n"
		"                           repeatable\n"
		"  --parent-cgroup NAME     the jail cgroup is <NAME>/<ID> (default mote)\n"
		"  --resource-limit R=N     fsize=N (bytes) or no-file=N (default %d); repeatable\n"
		"  --copy-in SRC[:DST]      copy SRC into the jail as DST (default /<name of SRC>),\n"
		"                           owned by UID/GID; for kernels, initrds, disks; repeatable\n"
		"                           (a mote extension)\n"
		"  --link-in SRC[:DST]      hard-link SRC into the jail as DST instead of copying:\n"
		"                           SRC must be root-owned, not writable by group or\n"
		"                           others, on the jail's file system; for files many\n"
		"                           jails share read-only (a snapshot's memory file)\n"
		"  --link-exec              hard-link the monitor binary too (same rules)\n"
		"  --daemonize              detach: new session, stdio on /dev/null, return at once\n"
		"  --new-pid-ns             run the monitor as pid 1 of a new PID namespace\n"
		"  --move-root              enter the jail by detaching the host's mounts, moving\n"
		"                           the jail root over / and chroot, not pivot_root, whose\n"
		"                           cost grows with every thread on the host (a mote\n"
		"                           extension, for hosts with thousands of VMs)\n"
		"  -h, --help               this text\n"
		"  -V, --version            print the version\n"
		"\n"
		"Exit status: the monitor's (it replaces the jailer; with --new-pid-ns the\n"
		"jailer waits and passes it on, 128+N if killed by signal N); %d bad\n"
		"arguments (nothing was changed); %d a jail step failed (what was made is\n"
		"removed again).\n",
		ID_MAX_LEN, DEFAULT_NOFILE, JAILER_EXIT_USAGE, JAILER_EXIT_SETUP);
}

/* --- arguments ------------------------------------------------------------ */

static int parse_id(const char *opt, const char *s, unsigned *out)
{
	char *end;

	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	/* (uid_t)-1 means "unchanged" to setresuid: never a valid id. */
	if (errno || *end || end == s || s[0] == '-' || s[0] == '+' || v >= 0xffffffffUL) {
		jail_msg("%s: '%s' is not a number between 0 and 4294967294", opt, s);
		return -EINVAL;
	}
	*out = (unsigned)v;
	return 0;
}

static int parse_rlimit(struct jail *j, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char *end;

	for (size_t i = 0; eq && i < 2; i++) {
		struct jail_rlimit *r = &j->rlimits[i];

		if (strlen(r->name) != (size_t)(eq - arg) || strncmp(arg, r->name, (size_t)(eq - arg)))
			continue;
		if (strcmp(eq + 1, "unlimited") == 0) {
			r->value = RLIM_INFINITY;
		} else {
			errno = 0;
			unsigned long long v = strtoull(eq + 1, &end, 10);
			if (errno || *end || end == eq + 1 || eq[1] == '-' || eq[1] == '+' ||
			    v >= RLIM_INFINITY) {
				jail_msg("--resource-limit: '%s' is not a number or 'unlimited'", eq + 1);
				return -EINVAL;
			}
			r->value = (rlim_t)v;
		}
		r->set = true;
		return 0;
	}
	jail_msg("--resource-limit: '%s' is not fsize=N or no-file=N", arg);
	return -EINVAL;
}

static int parse_copy_in(struct jail *j, char *arg, bool link)
{
	struct jail_copy *c;
	char *colon = strrchr(arg, ':');
	const char *name;
	const char *opt = link ? "--link-in" : "--copy-in";

	if (j->nr_copies == MAX_COPIES) {
		jail_msg("%s: more than %d files", opt, MAX_COPIES);
		return -E2BIG;
	}
	c = &j->copies[j->nr_copies];
	c->src = arg;
	c->link = link;
	if (colon) {
		/* SRC:DST, split at the last colon */
		*colon = '\0';
		snprintf(c->dst, sizeof(c->dst), "%s", colon + 1);
	} else {
		name = strrchr(arg, '/');
		snprintf(c->dst, sizeof(c->dst), "/%s", name ? name + 1 : arg);
	}
	if (!c->src[0]) {
		jail_msg("%s: no source file in '%s'", opt, arg);
		return -EINVAL;
	}
	j->nr_copies++;
	return 0;
}

enum {
	OPT_ID = 256, OPT_EXEC_FILE, OPT_UID, OPT_GID, OPT_CHROOT_BASE, OPT_NETNS,
	OPT_CGROUP_VERSION, OPT_CGROUP, OPT_PARENT_CGROUP, OPT_RLIMIT, OPT_DAEMONIZE,
	OPT_NEW_PID_NS, OPT_COPY_IN, OPT_LINK_IN, OPT_LINK_EXEC, OPT_MOVE_ROOT,
};

static const struct option long_opts[] = {
	{ "id", required_argument, NULL, OPT_ID },
	{ "exec-file", required_argument, NULL, OPT_EXEC_FILE },
	{ "uid", required_argument, NULL, OPT_UID },
	{ "gid", required_argument, NULL, OPT_GID },
	{ "chroot-base-dir", required_argument, NULL, OPT_CHROOT_BASE },
	{ "netns", required_argument, NULL, OPT_NETNS },
	{ "cgroup-version", required_argument, NULL, OPT_CGROUP_VERSION },
	{ "cgroup", required_argument, NULL, OPT_CGROUP },
	{ "parent-cgroup", required_argument, NULL, OPT_PARENT_CGROUP },
	{ "resource-limit", required_argument, NULL, OPT_RLIMIT },
	{ "daemonize", no_argument, NULL, OPT_DAEMONIZE },
	{ "new-pid-ns", no_argument, NULL, OPT_NEW_PID_NS },
	{ "move-root", no_argument, NULL, OPT_MOVE_ROOT },
	{ "copy-in", required_argument, NULL, OPT_COPY_IN },
	{ "link-in", required_argument, NULL, OPT_LINK_IN },
	{ "link-exec", no_argument, NULL, OPT_LINK_EXEC },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* Returns -1 to go on, else the exit code. */
static int parse_args(struct jail *j, int argc, char **argv)
{
	unsigned v;
	int c;

	j->chroot_base = "/srv/jailer";
	j->cgroup_version = 2;
	j->parent_cgroup = "mote";
	j->rlimits[0] = (struct jail_rlimit){ .name = "fsize", .resource = RLIMIT_FSIZE };
	j->rlimits[1] = (struct jail_rlimit){ .name = "no-file", .resource = RLIMIT_NOFILE,
					      .set = true, .value = DEFAULT_NOFILE };
	opterr = 0;
	/* "+": stop at the first non-option; the monitor's arguments are
	 * never ours to reorder. */
	while ((c = getopt_long(argc, argv, "+hV", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_ID:
			j->id = optarg;
			break;
		case OPT_EXEC_FILE:
			j->exec_file = optarg;
			break;
		case OPT_UID:
			if (parse_id("--uid", optarg, &v))
				return JAILER_EXIT_USAGE;
			j->uid = v;
			j->have_uid = true;
			break;
		case OPT_GID:
			if (parse_id("--gid", optarg, &v))
				return JAILER_EXIT_USAGE;
			j->gid = v;
			j->have_gid = true;
			break;
		case OPT_CHROOT_BASE:
			j->chroot_base = optarg;
			break;
		case OPT_NETNS:
			j->netns = optarg;
			break;
		case OPT_CGROUP_VERSION:
			if (strcmp(optarg, "1") && strcmp(optarg, "2")) {
				jail_msg("--cgroup-version: '%s' is not 1 or 2", optarg);
				return JAILER_EXIT_USAGE;
			}
			j->cgroup_version = optarg[0] - '0';
			break;
		case OPT_CGROUP:
			if (j->nr_cgroup_args == CGROUP_MAX_SETTINGS) {
				jail_msg("--cgroup: more than %d settings", CGROUP_MAX_SETTINGS);
				return JAILER_EXIT_USAGE;
			}
			j->cgroup_args[j->nr_cgroup_args++] = optarg;
			break;
		case OPT_PARENT_CGROUP:
			j->parent_cgroup = optarg;
			break;
		case OPT_RLIMIT:
			if (parse_rlimit(j, optarg))
				return JAILER_EXIT_USAGE;
			break;
		case OPT_DAEMONIZE:
			j->daemonize = true;
			break;
		case OPT_NEW_PID_NS:
			j->new_pid_ns = true;
			break;
		case OPT_MOVE_ROOT:
			j->move_root = true;
			break;
		case OPT_COPY_IN:
		case OPT_LINK_IN:
			if (parse_copy_in(j, optarg, c == OPT_LINK_IN))
				return JAILER_EXIT_USAGE;
			break;
		case OPT_LINK_EXEC:
			j->link_exec = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("mote-jailer %s\n", MOTE_VERSION);
			return 0;
		default:
			if (optopt)
				jail_msg("option -%c is unknown or needs a value; see --help", optopt);
			else
				jail_msg("option '%s' is unknown or needs a value; see --help",
					 argv[optind - 1]);
			return JAILER_EXIT_USAGE;
		}
	}
	if (optind < argc && strcmp(argv[optind - 1], "--") != 0) {
		jail_msg("unexpected argument '%s': the monitor's arguments go after '--'",
			 argv[optind]);
		return JAILER_EXIT_USAGE;
	}
	/* argv[optind - 1] is "--" or the last option: reuse its slot for
	 * the monitor's argv[0]. */
	j->monitor_argv = &argv[optind - 1];
	return -1;
}

/* --- validation: looks, never touches ------------------------------------ */

static int validate_id(const char *id)
{
	size_t len = id ? strlen(id) : 0;

	if (!id) {
		jail_msg("--id is required");
		return -EINVAL;
	}
	/* It becomes a directory name and a cgroup name: no '/', no '.',
	 * so no "..", and nothing a shell would trip over. */
	bool ok = len >= 1 && len <= ID_MAX_LEN;
	for (size_t i = 0; ok && i < len; i++)
		ok = (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
		     (id[i] >= '0' && id[i] <= '9') || id[i] == '-';
	if (!ok) {
		jail_msg("--id: '%s' is not 1-%d letters, digits or hyphens", id, ID_MAX_LEN);
		return -EINVAL;
	}
	return 0;
}

/* The jail has no libraries and no dynamic loader: a binary that needs
 * one would fail at exec, the very last step. Catch that now. */
static int validate_static_elf(const char *path)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph[16]; /* read 16 at a time: one pread for a static binary's ~10 */
	char interp[PATH_MAX];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return jail_fail("--exec-file", path, -errno);
	if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    (eh.e_type != ET_EXEC && eh.e_type != ET_DYN) || eh.e_phentsize != sizeof(ph[0])) {
		jail_msg("--exec-file: %s is not a 64-bit ELF executable", path);
		ret = -ENOEXEC;
	}
	for (unsigned i = 0, got; !ret && i < eh.e_phnum; i += got) {
		got = eh.e_phnum - i < 16 ? eh.e_phnum - i : 16;
		if (pread(fd, ph, got * sizeof(ph[0]), (off_t)(eh.e_phoff + i * sizeof(ph[0]))) !=
		    (ssize_t)(got * sizeof(ph[0]))) {
			jail_msg("--exec-file: %s: truncated program headers", path);
			ret = -ENOEXEC;
		}
		for (unsigned k = 0; !ret && k < got; k++) {
			if (ph[k].p_type != PT_INTERP)
				continue;
			ssize_t n = ph[k].p_filesz < sizeof(interp) ?
				    pread(fd, interp, ph[k].p_filesz, (off_t)ph[k].p_offset) : -1;
			interp[n > 0 ? n - 1 : 0] = '\0';
			jail_msg("--exec-file: %s is dynamically linked (it needs %s), but the jail "
				 "holds no libraries: link it with -static", path, interp);
			ret = -ENOEXEC;
		}
	}
	close(fd);
	return ret;
}

static int validate_exec_file(struct jail *j)
{
	struct stat st;
	const char *slash;

	if (!j->exec_file) {
		jail_msg("--exec-file is required");
		return -EINVAL;
	}
	if (stat(j->exec_file, &st))
		return jail_fail("--exec-file", j->exec_file, -errno);
	if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111)) {
		jail_msg("--exec-file: %s is not an executable file", j->exec_file);
		return -EINVAL;
	}
	slash = strrchr(j->exec_file, '/');
	j->exec_name = slash ? slash + 1 : j->exec_file;
	/* The name is a directory level of the jail's path and the binary's
	 * name in its root, next to /dev and the old root's mount point. */
	if (!j->exec_name[0] || strlen(j->exec_name) > NAME_MAX || j->exec_name[0] == '.' ||
	    strcmp(j->exec_name, "dev") == 0 || strcmp(j->exec_name, JAIL_OLD_ROOT) == 0) {
		jail_msg("--exec-file: '%s' cannot be the binary's name in the jail", j->exec_name);
		return -EINVAL;
	}
	snprintf(j->exec_in_jail, sizeof(j->exec_in_jail), "/%s", j->exec_name);
	j->monitor_argv[0] = (char *)j->exec_name;
	return validate_static_elf(j->exec_file);
}

static int validate_netns(const char *path)
{
	struct statfs sf;

	if (statfs(path, &sf))
		return jail_fail("--netns", path, -errno);
	/* /var/run/netns/X and /proc/<pid>/ns/net are both nsfs files. */
	if (sf.f_type != NSFS_MAGIC) {
		jail_msg("--netns: %s is not a namespace file (like /var/run/netns/NAME)", path);
		return -EINVAL;
	}
	return 0;
}

static int validate_parent_cgroup(const char *parent)
{
	bool ok = parent[0] && parent[0] != '/' && strlen(parent) < 256;

	for (const char *p = parent; ok && *p; p++)
		ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
		     (*p == '/' && p[1] && p[1] != '/');
	if (ok && jail_fs_check_inner_path(parent))
		ok = false;
	if (!ok)
		jail_msg("--parent-cgroup: '%s' is not a relative cgroup path like 'mote' or "
			 "'vms/mote'", parent);
	return ok ? 0 : -EINVAL;
}

/* A hard link is the host's own file: the jail may share it only if its
 * monitor cannot change it (not its owner, no write bit for others). */
static bool link_source_safe(const struct jail *j, const char *opt, const char *src,
			     const struct stat *st)
{
	if (st->st_uid != 0 || (st->st_mode & 022) || st->st_uid == j->uid) {
		jail_msg("%s: %s must be owned by root (and the jail's uid must not be 0) and not "
			 "writable by group or others, so the jail cannot change a file the host "
			 "shares (use --copy-in otherwise)", opt, src);
		return false;
	}
	return true;
}

static int validate_copies(const struct jail *j)
{
	struct stat st;

	for (size_t i = 0; i < j->nr_copies; i++) {
		const struct jail_copy *c = &j->copies[i];
		const char *top = c->dst + (c->dst[0] == '/');
		size_t top_len = strcspn(top, "/");

		const char *opt = c->link ? "--link-in" : "--copy-in";

		if (stat(c->src, &st))
			return jail_fail(opt, c->src, -errno);
		if (!S_ISREG(st.st_mode)) {
			jail_msg("%s: %s is not a regular file", opt, c->src);
			return -EINVAL;
		}
		if (c->link && !link_source_safe(j, opt, c->src, &st))
			return -EPERM;
		if (jail_fs_check_inner_path(c->dst)) {
			jail_msg("%s: '%s' is not a path inside the jail (no '.', '..' or "
				 "empty parts)", opt, c->dst);
			return -EINVAL;
		}
		/* Nothing may land on the binary, the devices or the old root. */
		if ((top_len == 3 && strncmp(top, "dev", 3) == 0) ||
		    (top_len == strlen(JAIL_OLD_ROOT) && strncmp(top, JAIL_OLD_ROOT, top_len) == 0) ||
		    (top_len == strlen(j->exec_name) && strncmp(top, j->exec_name, top_len) == 0)) {
			jail_msg("%s: '%s' would replace or shadow the jail's own /%.*s", opt,
				 c->dst, (int)top_len, top);
			return -EINVAL;
		}
	}
	return 0;
}

static int validate(struct jail *j)
{
	int ret;

	if ((ret = validate_id(j->id)) || (ret = validate_exec_file(j)))
		return ret;
	if (!j->have_uid || !j->have_gid) {
		jail_msg("--uid and --gid are both required: the ids the monitor runs as");
		return -EINVAL;
	}
	if (j->uid == 0 || j->gid == 0)
		jail_msg("note: --uid/--gid 0: the monitor gets no capabilities, but still owns "
			 "whatever root owns; an unprivileged id is safer");
	if (j->link_exec) {
		struct stat st;
		if (stat(j->exec_file, &st))
			return jail_fail("--link-exec", j->exec_file, -errno);
		if (!link_source_safe(j, "--link-exec", j->exec_file, &st))
			return -EPERM;
	}
	ret = jail_fs_init(&j->fs, j->chroot_base, j->exec_name, j->id);
	if (ret)
		return jail_fail("--chroot-base-dir", j->chroot_base, ret);
	if ((ret = jail_fs_validate(&j->fs)) || (ret = validate_copies(j)))
		return ret;
	if (j->netns && (ret = validate_netns(j->netns)))
		return ret;
	if ((ret = validate_parent_cgroup(j->parent_cgroup)))
		return ret;
	/* No --cgroup: no cgroup part (j is static, so nr_set and nr_hier
	 * stay 0). cgroup_jail_init would clear all ~200 KiB of it: 50 page
	 * faults, ~0.2 ms of every start on this host (the launcher's case). */
	if (!j->nr_cgroup_args)
		return 0;
	ret = cgroup_jail_init(&j->cg, j->cgroup_version, CGROUP_FS_ROOT, j->parent_cgroup, j->id);
	for (size_t i = 0; !ret && i < j->nr_cgroup_args; i++)
		ret = cgroup_jail_add_setting(&j->cg, j->cgroup_args[i]);
	if (!ret && j->cg.nr_set) {
		ret = cgroup_jail_validate(&j->cg);
		if (!ret)
			ret = cgroup_jail_read_origin(&j->cg, "/proc/self/cgroup");
	}
	return ret;
}

/* --- the jail ------------------------------------------------------------- */

static void close_inherited_fds(void)
{
	/* Whatever the caller left open (a socket, a log, a host directory)
	 * would be a way out of the jail; stdio stays. */
	if (close_range(3, ~0U, 0) == 0)
		return;
	for (int fd = 3; fd < 65536; fd++)
		close(fd);
}

static int join_netns(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return jail_fail("joining the network namespace: open", path, -errno);
	if (setns(fd, CLONE_NEWNET))
		ret = jail_fail("joining the network namespace: setns", path, -errno);
	close(fd);
	return ret;
}

static int set_rlimits(const struct jail *j)
{
	for (size_t i = 0; i < 2; i++) {
		const struct jail_rlimit *r = &j->rlimits[i];
		struct rlimit rl = { r->value, r->value };

		/* Soft and hard alike: the monitor cannot raise them again. */
		if (r->set && setrlimit(r->resource, &rl)) {
			int err = errno;
			jail_msg("setting resource limit %s=%llu: %s", r->name,
				 (unsigned long long)r->value, strerror(err));
			return -err;
		}
	}
	return 0;
}

/* Everything done on host paths, in the host's mount namespace: a
 * failure here is undone by unbuild(). */
static int build(struct jail *j)
{
	int ret;

	ret = jail_fs_create(&j->fs);
	if (ret)
		return ret;
	/* Root-owned 0755: the monitor runs it but cannot change it. A link
	 * shares the host's page cache (one copy of mote's text for every
	 * jail); validate() checked that the jail cannot write it. */
	if (j->link_exec)
		ret = jail_fs_link_in(&j->fs, j->exec_file, j->exec_in_jail);
	else
		ret = jail_fs_copy_in(&j->fs, j->exec_file, j->exec_in_jail, 0755, 0, 0);
	for (size_t i = 0; !ret && i < j->nr_copies; i++) {
		struct stat st;

		ret = stat(j->copies[i].src, &st) ? -errno : 0;
		if (ret)
			jail_fail(j->copies[i].link ? "--link-in" : "--copy-in", j->copies[i].src, ret);
		else if (j->copies[i].link)
			ret = jail_fs_link_in(&j->fs, j->copies[i].src, j->copies[i].dst);
		else
			ret = jail_fs_copy_in(&j->fs, j->copies[i].src, j->copies[i].dst,
					      st.st_mode & 0777, j->uid, j->gid);
	}
	/* Devices and ownership on host paths, before pivot_root rather than
	 * after (the result is the same): a failure can still be cleaned up. */
	if (!ret)
		ret = jail_fs_make_devices(&j->fs, j->uid, j->gid);
	if (!ret)
		ret = jail_fs_chown_root(&j->fs, j->uid, j->gid);
	if (!ret && j->netns)
		ret = join_netns(j->netns);
	/* After the copies: a small fsize limit must not stop those. */
	if (!ret)
		ret = set_rlimits(j);
	if (!ret && j->cg.nr_set) {
		ret = cgroup_jail_create(&j->cg);
		if (!ret)
			ret = cgroup_jail_configure(&j->cg);
		/* Children (the monitor, --new-pid-ns's pid 1) inherit it. */
		if (!ret)
			ret = cgroup_jail_attach(&j->cg, getpid());
	}
	return ret;
}

static void unbuild(struct jail *j)
{
	if (j->fs.pivoted) {
		/* From inside the jail the host's paths are gone. */
		jail_msg("cleanup: the failure came after pivot_root; remove %s%s by hand",
			 j->fs.id_dir, j->cg.nr_hier ? " and the jail's cgroup directories" : "");
		for (size_t i = 0; i < j->cg.nr_hier; i++)
			jail_msg("cleanup: left behind: %s", j->cg.hier[i].dir);
		return;
	}
	if (j->cg.nr_hier) {
		/* A cgroup with a process in it cannot be removed. */
		cgroup_jail_leave(&j->cg, getpid());
		cgroup_jail_destroy(&j->cg);
	}
	jail_fs_remove(&j->fs);
}

/* The kernel clears a process's parent-death signal when its uid or gid
 * changes (jail_drop_privileges), so it is set again, last thing before
 * exec. A parent that died before that sent nothing: the parent is checked
 * after arming, by pid (it changes once we are re-parented) or, in a new
 * PID namespace where getppid() is 0, by a pidfd of the jailer. Then the
 * signal is what the caller asked for: raised on ourselves. */
static int rearm_pdeathsig(int sig, pid_t parent, int parent_pidfd)
{
	struct pollfd pfd = { .fd = parent_pidfd, .events = POLLIN };
	bool gone;

	if (prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0))
		return jail_fail("re-arming the parent-death signal", "prctl", -errno);
	if (parent_pidfd >= 0)
		gone = poll(&pfd, 1, 0) > 0; /* readable: the process exited */
	else
		gone = getppid() != parent;
	if (gone) {
		jail_msg("the process that started the jailer died before the monitor could "
			 "start: not starting it (parent-death signal %d)", sig);
		kill(getpid(), sig);
		_exit(JAILER_EXIT_SETUP);
	}
	return 0;
}

/* The part done by the process that becomes the monitor. Returns only on
 * failure. parent_pidfd: forked, the jailer that waits (-1 if unknown). */
static int enter_and_exec(struct jail *j, int devnull, bool forked, int parent_pidfd)
{
	static char *const empty_env[] = { NULL };
	int ret;

	if (unshare(CLONE_NEWNS))
		return jail_fail("unshare(CLONE_NEWNS)", "a new mount namespace", -errno);
	ret = jail_fs_enter(&j->fs, j->move_root);
	if (ret)
		return ret;
	ret = jail_drop_privileges(j->uid, j->gid);
	if (ret)
		return ret;
	if (j->daemonize) {
		/* A session of its own: no controlling terminal, no signals
		 * from the caller's job control. */
		if (setsid() < 0)
			return jail_fail("daemonize: setsid", "-", -errno);
		if (dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)
			return jail_fail("daemonize: redirecting stdio", "/dev/null", -errno);
	} else if (forked) {
		/* The jail dies with the jailer that waits for it (set after
		 * the uid change, which clears it). */
		ret = rearm_pdeathsig(SIGKILL, 0, parent_pidfd);
		if (ret)
			return ret;
	} else if (j->pdeathsig) {
		/* The jailer is the monitor: it keeps the caller's promise
		 * (mote-fnd's monitors die with it) across the uid change. */
		ret = rearm_pdeathsig(j->pdeathsig, j->parent, -1);
		if (ret)
			return ret;
	}
	execve(j->exec_in_jail, j->monitor_argv, empty_env);
	return jail_fail("exec of the monitor", j->exec_in_jail, -errno);
}

static volatile sig_atomic_t jail_child;

static void forward_signal(int sig)
{
	if (jail_child > 0)
		kill(jail_child, sig);
}

/* --new-pid-ns or --daemonize: the monitor runs in a child. The parent
 * stays outside the jail, so it can still clean up if the child fails at
 * any step, even after pivot_root. */
static int fork_and_exec(struct jail *j, int devnull)
{
	static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
	struct sigaction sa = { .sa_handler = forward_signal, .sa_flags = SA_RESTART };
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t block, saved;
	int report[2], err = 0, status;
	ssize_t n;
	pid_t child;

	/* The child reports a failure's errno here; a successful exec closes
	 * its end (O_CLOEXEC) without a word. */
	if (pipe2(report, O_CLOEXEC))
		return jail_fail("fork: pipe", "-", -errno);
	/* For the child to tell whether we died before it armed its
	 * parent-death signal (its getppid() is 0 in a new PID namespace).
	 * A kernel without pidfds (before 5.3) leaves only the window. */
	int self_pidfd = j->daemonize ? -1 : (int)syscall(SYS_pidfd_open, getpid(), 0);
	/* Blocked across fork, so a signal cannot slip in before the parent
	 * knows whom to forward it to. */
	sigemptyset(&block);
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++) {
		sigaddset(&block, forwarded[i]);
		if (!j->daemonize)
			sigaction(forwarded[i], &sa, NULL);
	}
	sigprocmask(SIG_BLOCK, &block, &saved);
	child = fork();
	if (child < 0) {
		err = errno;
		sigprocmask(SIG_SETMASK, &saved, NULL);
		close(report[0]);
		close(report[1]);
		if (self_pidfd >= 0)
			close(self_pidfd);
		return jail_fail("fork", j->new_pid_ns ? "into the new PID namespace" : "-", -err);
	}
	if (child == 0) {
		/* The monitor starts with the caller's dispositions and mask. */
		for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
			sigaction(forwarded[i], &dfl, NULL);
		sigprocmask(SIG_SETMASK, &saved, NULL);
		close(report[0]);
		err = -enter_and_exec(j, devnull, true, self_pidfd);
		if (write(report[1], &err, sizeof(err)) < 0)
			_exit(JAILER_EXIT_SETUP);
		_exit(JAILER_EXIT_SETUP);
	}
	jail_child = child;
	sigprocmask(SIG_SETMASK, &saved, NULL);
	close(report[1]);
	if (self_pidfd >= 0)
		close(self_pidfd);
	do
		n = read(report[0], &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	close(report[0]);
	if (n == (ssize_t)sizeof(err)) {
		while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
			;
		return -err;
	}
	if (j->daemonize)
		return 0;
	/* Only the jailed processes count against the jail's cgroup. */
	if (j->cg.nr_hier)
		cgroup_jail_leave(&j->cg, getpid());
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			return jail_fail("waiting for the jailed monitor", "-", -errno);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
	static struct jail j;
	int devnull = -1, ret;

	/* First thing: a parent that dies from here on is seen as one. */
	j.parent = getppid();
	if (prctl(PR_GET_PDEATHSIG, &j.pdeathsig, 0, 0, 0))
		j.pdeathsig = 0;
	ret = parse_args(&j, argc, argv);
	if (ret >= 0)
		return ret;
	if (validate(&j))
		return JAILER_EXIT_USAGE;
	close_inherited_fds();
	/* The monitor gets no environment: nothing of the caller's (paths,
	 * credentials in variables, LD_*) reaches into the jail. */
	clearenv();

	ret = build(&j);
	if (ret)
		goto fail;
	if (j.new_pid_ns && unshare(CLONE_NEWPID)) {
		ret = jail_fail("unshare(CLONE_NEWPID)", "a new PID namespace", -errno);
		goto fail;
	}
	if (j.daemonize) {
		/* Opened now: there is no /dev/null in the jail. */
		devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (devnull < 0) {
			ret = jail_fail("daemonize: open", "/dev/null", -errno);
			goto fail;
		}
	}
	if (j.new_pid_ns || j.daemonize) {
		ret = fork_and_exec(&j, devnull);
		if (ret >= 0)
			return ret;
		jail_msg("the jailed monitor did not start: %s", strerror(-ret));
	} else {
		ret = enter_and_exec(&j, devnull, false, -1);
	}
fail:
	unbuild(&j);
	return JAILER_EXIT_SETUP;
}
