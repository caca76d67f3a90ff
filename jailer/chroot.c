/* The jail's file system: <base>/<exec-name>/<id>/root with the monitor,
 * the caller's --copy-in files and three device nodes, then pivot_root
 * into it so that nothing of the host's tree stays reachable. */
#include "jailer/jailer.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* The only devices the monitor gets. */
static const struct {
	const char *path;
	bool optional;
} jail_devices[] = {
	{ "/dev/kvm", false },     /* the VM itself */
	{ "/dev/net/tun", true },  /* tap devices for virtio-net; a host without TUN can
				    * still run VMs that have no network */
	{ "/dev/urandom", false }, /* entropy for the monitor and a virtio-rng */
};

int jail_fs_init(struct jail_fs *fs, const char *base, const char *exec_name, const char *id)
{
	size_t len = strlen(base);

	memset(fs, 0, sizeof(*fs));
	/* "/srv/jailer/" and "/srv/jailer" are one directory. */
	while (len > 1 && base[len - 1] == '/')
		len--;
	if (snprintf(fs->base, sizeof(fs->base), "%.*s", (int)len, base) >= (int)sizeof(fs->base) ||
	    snprintf(fs->id_dir, sizeof(fs->id_dir), "%s/%s/%s", len == 1 ? "" : fs->base,
		     exec_name, id) >= (int)sizeof(fs->id_dir) ||
	    snprintf(fs->root, sizeof(fs->root), "%s/root", fs->id_dir) >= (int)sizeof(fs->root))
		return -ENAMETOOLONG;
	return 0;
}

int jail_fs_check_inner_path(const char *path)
{
	const char *p = path;

	if (*p == '/')
		p++;
	if (!*p || strlen(path) > PATH_MAX / 2)
		return -EINVAL;
	while (*p) {
		size_t n = strcspn(p, "/");

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return -EINVAL;
		p += n;
		if (*p == '/' && !*++p)
			return -EINVAL; /* trailing slash: a directory, not a file */
	}
	return 0;
}

int jail_fs_validate(const struct jail_fs *fs)
{
	char probe[PATH_MAX];
	struct statvfs sv;
	struct stat st;

	if (fs->base[0] != '/') {
		jail_msg("--chroot-base-dir: '%s' is not an absolute path", fs->base);
		return -EINVAL;
	}
	if (lstat(fs->id_dir, &st) == 0) {
		jail_msg("jail directory %s already exists: another jail with this --id, or a "
			 "stale one (remove it first); an existing jail is never reused",
			 fs->id_dir);
		return -EEXIST;
	}
	memcpy(probe, fs->id_dir, sizeof(probe));
	*strrchr(probe, '/') = '\0';
	bool parent_is_dir = lstat(probe, &st) == 0;
	if (parent_is_dir && !S_ISDIR(st.st_mode)) {
		jail_msg("%s is not a directory (a symlink?): refusing to make the jail through it",
			 probe);
		return -ENOTDIR;
	}
	/* The jail lives on whatever file system holds its nearest existing
	 * ancestor: the bind mount of the root inherits that mount's flags,
	 * and noexec or nodev there would only fail at the very end. The
	 * usual case: the parent (a real directory, just seen) is it. */
	if (!parent_is_dir)
		memcpy(probe, fs->id_dir, sizeof(probe));
	while (!parent_is_dir && stat(probe, &st)) {
		if (errno != ENOENT)
			return jail_fail("checking the chroot base directory", probe, -errno);
		*strrchr(probe, '/') = '\0';
		if (!probe[0])
			strcpy(probe, "/");
	}
	if (!S_ISDIR(st.st_mode))
		return jail_fail("checking the chroot base directory", probe, -ENOTDIR);
	if (statvfs(probe, &sv))
		return jail_fail("checking the chroot base directory's file system", probe, -errno);
	if (sv.f_flag & (ST_NOEXEC | ST_NODEV)) {
		jail_msg("--chroot-base-dir: %s is on a file system mounted %s: the jailed monitor "
			 "could not %s; pick a base directory elsewhere", probe,
			 sv.f_flag & ST_NOEXEC ? "noexec" : "nodev",
			 sv.f_flag & ST_NOEXEC ? "be executed" : "open /dev/kvm");
		return -EPERM;
	}
	return 0;
}

/* <root>/<inner>, for a path inside the jail ("/dev/kvm" or "dev/kvm"). */
static int jail_path(char *out, size_t len, const struct jail_fs *fs, const char *inner)
{
	int n = snprintf(out, len, "%s/%s", fs->root, inner + (inner[0] == '/'));

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* mkdir with exactly this mode, whatever the umask says: a jail whose
 * /dev came out 0700 would lock the monitor out of /dev/kvm. */
static int mkdir_mode(const char *path, mode_t mode)
{
	int ret;

	if (mkdir(path, mode))
		return -errno;
	if (chmod(path, mode)) {
		ret = -errno;
		rmdir(path);
		return ret;
	}
	return 0;
}

int jail_fs_create(struct jail_fs *fs)
{
	char path[PATH_MAX];
	struct stat st;
	int ret;

	/* mkdir -p <base>/<exec-name>, counting the levels we make: once
	 * one is new, all deeper ones are, so cleanup knows what is ours. */
	memcpy(path, fs->id_dir, sizeof(path));
	*strrchr(path, '/') = '\0';
	/* Usually there already (every jail of this monitor shares it): one
	 * mkdir, not one per level. */
	ret = mkdir_mode(path, 0755);
	if (ret == 0)
		fs->parents_created = 1;
	else if (ret != -EEXIST && ret != -ENOENT)
		return jail_fail("creating the jail directory", path, ret);
	bool walk = ret == -ENOENT;
	for (char *p = path + 1; walk; p++) {
		bool last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		ret = mkdir_mode(path, 0755);
		if (ret == 0)
			fs->parents_created++;
		else if (ret != -EEXIST)
			return jail_fail("creating the jail directory", path, ret);
		if (last)
			break;
		*p = '/';
	}
	/* <base>/<exec-name> may have been there already: it must be a real
	 * directory, not a symlink someone planted to put the jail (and a
	 * root directory owned by the jail's uid) elsewhere. */
	if (lstat(path, &st))
		return jail_fail("checking the jail directory", path, -errno);
	if (!S_ISDIR(st.st_mode))
		return jail_fail("the jail's parent is not a directory (a symlink?)", path,
				 -ENOTDIR);
	ret = mkdir_mode(fs->id_dir, 0755);
	if (ret == -EEXIST) {
		jail_msg("jail directory %s already exists: another jail with this --id? An "
			 "existing jail is never reused", fs->id_dir);
		return ret;
	}
	if (ret)
		return jail_fail("creating the jail directory", fs->id_dir, ret);
	fs->id_dir_created = true;
	ret = mkdir_mode(fs->root, 0755);
	if (ret)
		return jail_fail("creating the jail root", fs->root, ret);
	ret = jail_path(path, sizeof(path), fs, "dev");
	if (!ret)
		ret = mkdir_mode(path, 0755);
	if (ret)
		return jail_fail("creating the jail's /dev", path, ret);
	return 0;
}

/* Copies [off, off + len) with copy_file_range, or read/write where the
 * kernel cannot (across file systems on old kernels). */
static int copy_range(int in, int out, off_t off, off_t len)
{
	char buf[65536];
	off_t in_off = off, out_off = off;

	while (len > 0) {
		ssize_t n = copy_file_range(in, &in_off, out, &out_off, (size_t)len, 0);

		if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
			      errno == EOPNOTSUPP)) {
			size_t chunk = len < (off_t)sizeof(buf) ? (size_t)len : sizeof(buf);

			n = pread(in, buf, chunk, in_off);
			if (n > 0) {
				ssize_t w = pwrite(out, buf, (size_t)n, out_off);

				if (w != n)
					return w < 0 ? -errno : -EIO;
				in_off += n;
				out_off += n;
			}
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the source shrank under us */
		len -= n;
	}
	return 0;
}

/* Copies the data extents only, so a sparse drive image stays sparse. */
static int copy_file_data(int in, int out, off_t size)
{
	off_t data = 0, hole;
	int ret;

	while (data < size) {
		data = lseek(in, data, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break; /* only a hole is left */
		if (data < 0) {
			/* No SEEK_DATA here: copy everything. */
			data = 0;
			hole = size;
		} else {
			hole = lseek(in, data, SEEK_HOLE);
			if (hole < 0)
				return -errno;
		}
		ret = copy_range(in, out, data, hole - data);
		if (ret)
			return ret;
		data = hole;
	}
	return ftruncate(out, size) ? -errno : 0;
}

int jail_fs_copy_in(const struct jail_fs *fs, const char *src, const char *dst, mode_t mode,
		    uid_t uid, gid_t gid)
{
	char path[PATH_MAX];
	struct stat st;
	int in, out, ret;

	if (jail_path(path, sizeof(path), fs, dst))
		return jail_fail("copying into the jail", dst, -ENAMETOOLONG);
	/* Parent directories inside the jail, root-owned, as the monitor
	 * has no business adding files next to its kernel or disks. */
	for (char *p = path + strlen(fs->root) + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		ret = mkdir_mode(path, 0755);
		if (ret && ret != -EEXIST)
			return jail_fail("creating a directory in the jail", path, ret);
		*p = '/';
	}
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return jail_fail("opening a file to copy into the jail", src, -errno);
	/* O_EXCL|O_NOFOLLOW: two copies to one place are a mistake, and
	 * nothing that is already there is followed. */
	out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		ret = jail_fail("creating a file in the jail", path, -errno);
		close(in);
		return ret;
	}
	ret = fstat(in, &st) ? -errno : copy_file_data(in, out, st.st_size);
	if (ret)
		jail_fail("copying into the jail", path, ret);
	/* chown before chmod: chown clears set-id bits. */
	else if (fchown(out, uid, gid) || fchmod(out, mode))
		ret = jail_fail("setting owner and mode of", path, -errno);
	close(in);
	close(out);
	return ret;
}

int jail_fs_link_in(const struct jail_fs *fs, const char *src, const char *dst)
{
	char path[PATH_MAX];
	int ret;

	if (jail_path(path, sizeof(path), fs, dst))
		return jail_fail("linking into the jail", dst, -ENAMETOOLONG);
	for (char *p = path + strlen(fs->root) + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		ret = mkdir_mode(path, 0755);
		if (ret && ret != -EEXIST)
			return jail_fail("creating a directory in the jail", path, ret);
		*p = '/';
	}
	if (link(src, path) == 0)
		return 0;
	ret = -errno;
	if (ret == -EXDEV) {
		jail_msg("--link-in: %s and the jail (%s) are on different file systems: put "
			 "--chroot-base-dir on the file's file system, or use --copy-in", src,
			 fs->root);
		return ret;
	}
	return jail_fail("hard-linking into the jail", src, ret);
}

int jail_fs_make_devices(const struct jail_fs *fs, uid_t uid, gid_t gid)
{
	char path[PATH_MAX];
	struct stat st;
	int ret;

	for (size_t i = 0; i < sizeof(jail_devices) / sizeof(jail_devices[0]); i++) {
		const char *dev = jail_devices[i].path;

		if (stat(dev, &st)) {
			ret = -errno;
			if (ret == -ENOENT && jail_devices[i].optional) {
				jail_msg("note: the host has no %s, so the jail has none either (no tap "
					 "networking for the VM)", dev);
				continue;
			}
			return jail_fail("looking up host device", dev, ret);
		}
		if (!S_ISCHR(st.st_mode))
			return jail_fail("host device is not a character device", dev, -ENODEV);
		if (jail_path(path, sizeof(path), fs, dev))
			return jail_fail("creating device node", dev, -ENAMETOOLONG);
		/* /dev/net for tun */
		*strrchr(path, '/') = '\0';
		ret = mkdir_mode(path, 0755);
		if (ret && ret != -EEXIST)
			return jail_fail("creating a directory in the jail", path, ret);
		path[strlen(path)] = '/';
		/* The same numbers as the host's node, so it is the same device;
		 * 0600 and owned by the jail's user: only the monitor opens it. */
		if (mknod(path, S_IFCHR | 0600, st.st_rdev))
			return jail_fail("creating device node (mknod)", path, -errno);
		if (chmod(path, 0600) || chown(path, uid, gid))
			return jail_fail("setting owner and mode of device", path, -errno);
	}
	return 0;
}

int jail_fs_chown_root(const struct jail_fs *fs, uid_t uid, gid_t gid)
{
	/* The monitor may create files in its own root (an API socket, a
	 * snapshot), nowhere else. */
	if (chown(fs->root, uid, gid))
		return jail_fail("chown of the jail root", fs->root, -errno);
	return 0;
}

/* Whether mount point m is "/", the jail root (resolved: mountinfo names
 * real paths), or a directory on the way to it
 * (those stay: detaching one would take the jail root, mounted below it,
 * along). */
static bool keep_mount(const char *root, const char *m)
{
	size_t n = strlen(m);

	if (!strcmp(m, "/"))
		return true;
	return !strncmp(root, m, n) && (root[n] == '\0' || root[n] == '/');
}

/* A mountinfo path field: octal escapes (\040 for a space) decoded in
 * place. */
static void unescape_mount_path(char *s)
{
	char *d = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*d++ = *s;
		}
	}
	*d = '\0';
}

/* Detaches every mount of this (new, private) namespace but "/", the jail
 * root and the mounts on the way to it (the topmost of them: the rest go
 * along). */
static int detach_host_mounts(const char *root)
{
	char line[4096], **points = NULL;
	size_t n = 0, cap = 0;
	int ret = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return jail_fail("reading the mount table", "/proc/self/mountinfo", -errno);
	while (!ret && fgets(line, sizeof(line), f)) {
		/* id parent major:minor root mount-point ... */
		char *save = NULL, *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		if (!tok)
			continue;
		unescape_mount_path(tok);
		if (keep_mount(root, tok))
			continue;
		if (n == cap) {
			char **grown = realloc(points, (cap = cap ? 2 * cap : 64) * sizeof(*points));
			if (!grown) {
				ret = jail_fail("detaching the host's mounts", tok, -ENOMEM);
				break;
			}
			points = grown;
		}
		if (!(points[n] = strdup(tok)))
			ret = jail_fail("detaching the host's mounts", tok, -ENOMEM);
		else
			n++;
	}
	fclose(f);
	/* Only the topmost: a detached mount takes the ones below it along
	 * (/dev takes /dev/pts, /sys the cgroup trees), and each umount2 is a
	 * grace period the kernel waits out (~20 mounts here, 4-5 of them
	 * topmost). One gone already is EINVAL or ENOENT, fine. */
	for (size_t i = 0; !ret && i < n; i++) {
		bool below_another = false;
		for (size_t k = 0; k < n && !below_another; k++) {
			size_t len = strlen(points[k]);
			below_another = k != i && !strncmp(points[i], points[k], len) &&
					points[i][len] == '/';
		}
		if (!below_another && umount2(points[i], MNT_DETACH) && errno != EINVAL &&
		    errno != ENOENT)
			ret = jail_fail("detaching a host mount", points[i], -errno);
	}
	for (size_t i = 0; i < n; i++)
		free(points[i]);
	free(points);
	return ret;
}

static int enter_by_move(struct jail_fs *fs)
{
	/* The real path: through a symlink (--chroot-base-dir /var/run/x with
	 * /var/run -> /run), the mount holding the jail
	 * would not look "on the way" and be detached with the jail in it. */
	char root[PATH_MAX];
	int ret;

	if (!realpath(fs->root, root))
		return jail_fail("resolving the jail root", fs->root, -errno);
	ret = detach_host_mounts(root);
	if (ret)
		return ret;
	if (chdir(root))
		return jail_fail("chdir into the jail root", root, -errno);
	if (mount(root, "/", NULL, MS_MOVE, NULL))
		return jail_fail("moving the jail root over / (MS_MOVE)", root, -errno);
	fs->pivoted = true;
	if (chroot("."))
		return jail_fail("chroot into the jail root", fs->root, -errno);
	if (chdir("/"))
		return jail_fail("chdir into the new root", "/", -errno);
	return 0;
}

int jail_fs_enter(struct jail_fs *fs, bool move_root)
{
	char old_root[PATH_MAX];

	/* Private first: otherwise the mounts below (and the unmount of the
	 * old root) would propagate back into the host's namespace through
	 * shared mounts. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return jail_fail("making mounts private (MS_REC|MS_PRIVATE)", "/", -errno);
	/* pivot_root needs the new root to be a mount point. */
	if (mount(fs->root, fs->root, NULL, MS_BIND, NULL))
		return jail_fail("bind-mounting the jail root onto itself", fs->root, -errno);
	fs->root_bound = true;
	if (move_root)
		return enter_by_move(fs);
	if (jail_path(old_root, sizeof(old_root), fs, JAIL_OLD_ROOT))
		return jail_fail("pivot_root", fs->root, -ENAMETOOLONG);
	if (mkdir(old_root, 0700))
		return jail_fail("creating the directory for the old root", old_root, -errno);
	/* pivot_root rather than chroot: chroot leaves the host's tree
	 * reachable to anyone who can chroot again or holds a directory fd;
	 * after pivot_root and the unmount the host's tree is not in this
	 * mount namespace at all. */
	if (syscall(SYS_pivot_root, fs->root, old_root))
		return jail_fail("pivot_root", fs->root, -errno);
	fs->pivoted = true;
	if (chdir("/"))
		return jail_fail("chdir into the new root", "/", -errno);
	if (umount2("/" JAIL_OLD_ROOT, MNT_DETACH))
		return jail_fail("unmounting the old root", "/" JAIL_OLD_ROOT, -errno);
	if (rmdir("/" JAIL_OLD_ROOT))
		return jail_fail("removing the old root's mount point", "/" JAIL_OLD_ROOT, -errno);
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if ((type == FTW_DP ? rmdir(path) : unlink(path)) && errno != ENOENT)
		jail_fail("cleanup: removing", path, -errno);
	return 0;
}

void jail_fs_remove(struct jail_fs *fs)
{
	char path[PATH_MAX];

	if (fs->pivoted) {
		jail_msg("cleanup: cannot remove %s from inside the jail; remove it by hand",
			 fs->id_dir);
		return;
	}
	if (fs->root_bound && umount2(fs->root, MNT_DETACH) == 0)
		fs->root_bound = false;
	if (fs->root_bound) {
		jail_fail("cleanup: unmounting the jail root", fs->root, -errno);
		return;
	}
	if (fs->id_dir_created) {
		/* Depth first, not following symlinks nor crossing into other
		 * file systems: everything below id_dir is ours. */
		nftw(fs->id_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
		fs->id_dir_created = false;
	}
	/* The levels above are shared with other jails: remove them only if
	 * we made them and they are empty again. */
	memcpy(path, fs->id_dir, sizeof(path));
	for (int i = 0; i < fs->parents_created; i++) {
		*strrchr(path, '/') = '\0';
		if (rmdir(path))
			break;
	}
	fs->parents_created = 0;
}
