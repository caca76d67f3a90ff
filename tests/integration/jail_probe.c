/* Run by mote-jailer in place of mote, to report what the jail looks like
 * from inside as key=value lines on stdout. Static: the jail has no
 * libraries. /proc is not mounted in the jail, so everything comes from
 * system calls; the test cross-checks /proc/<pid>/ from the host side.
 *
 * usage: jail_probe [--wait] [--write FILE]
 *   --wait        after the report, print "probe=waiting" and block until
 *                 stdin reaches EOF (so the host can inspect the process)
 *   --write FILE  also write the report to FILE (inside the jail), for
 *                 runs whose stdout is /dev/null (--daemonize)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/kvm.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

extern char **environ;

static char report[65536];
static size_t report_len;

__attribute__((format(printf, 1, 2))) static void put(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(report + report_len, sizeof(report) - report_len, fmt, ap);
	va_end(ap);
	if (n > 0 && report_len + (size_t)n < sizeof(report))
		report_len += (size_t)n;
}

/* "ok" or the errno's name-ish text, for reachability lines. */
static const char *result(int ret)
{
	return ret == 0 ? "ok" : strerrorname_np(errno);
}

static void report_ids(void)
{
	uid_t r, e, s;
	gid_t gr, ge, gs, groups[64];
	int n;

	getresuid(&r, &e, &s);
	getresgid(&gr, &ge, &gs);
	put("uid=%u\neuid=%u\nsuid=%u\ngid=%u\negid=%u\nsgid=%u\n", r, e, s, gr, ge, gs);
	n = getgroups(64, groups);
	put("groups=");
	for (int i = 0; i < n; i++)
		put("%s%u", i ? "," : "", groups[i]);
	put("\n");
	put("pid=%d\nsid_is_pid=%d\n", (int)getpid(), getsid(0) == getpid());
}

static void report_caps(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] = { 0 };
	unsigned long long bnd = 0, amb = 0;

	if (syscall(SYS_capget, &hdr, data)) {
		put("capget=%s\n", strerrorname_np(errno));
		return;
	}
	/* The same names and format as /proc/self/status. */
	put("CapInh=%016llx\n", (unsigned long long)data[1].inheritable << 32 | data[0].inheritable);
	put("CapPrm=%016llx\n", (unsigned long long)data[1].permitted << 32 | data[0].permitted);
	put("CapEff=%016llx\n", (unsigned long long)data[1].effective << 32 | data[0].effective);
	for (int cap = 0; cap < 64; cap++) {
		int in_bnd = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
		if (in_bnd < 0)
			break; /* past the kernel's last capability */
		if (in_bnd)
			bnd |= 1ULL << cap;
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1)
			amb |= 1ULL << cap;
	}
	put("CapBnd=%016llx\nCapAmb=%016llx\n", bnd, amb);
	put("NoNewPrivs=%d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
}

static void report_reach(void)
{
	/* Host files by absolute path and by climbing out of the root. */
	static const char *const paths[] = {
		"/etc/passwd", "../../../../../../etc/passwd", "/proc/1/status", "/proc/self/status",
		"/sys/fs/cgroup", "/tmp", "/old_root", "/bin/sh",
	};
	char cwd[4096];
	int fd;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		fd = open(paths[i], O_RDONLY | O_CLOEXEC);
		put("open:%s=%s\n", paths[i], result(fd < 0 ? -1 : 0));
		if (fd >= 0)
			close(fd);
	}
	/* Climb with chdir(".."): a chroot() jail without pivot_root leaks
	 * here; the result must still be the jail's own root. */
	for (int i = 0; i < 16; i++)
		if (chdir(".."))
			break;
	put("cwd=%s\n", getcwd(cwd, sizeof(cwd)) ? cwd : "?");
	/* What a root-in-the-jail would do to get out; all need privileges. */
	put("chroot=%s\n", result(chroot("/dev")));
	chdir("/");
	put("mount=%s\n", result(mount("none", "/dev", "tmpfs", 0, NULL)));
	put("setuid0=%s\n", result(setuid(0)));
	put("mknod=%s\n", result(mknod("/probe-null", S_IFCHR | 0600, makedev(1, 3))));
	/* The jail's root belongs to the jail's user: it may make files. */
	fd = open("/probe-file", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	put("create_in_root=%s\n", result(fd < 0 ? -1 : 0));
	if (fd >= 0) {
		close(fd);
		unlink("/probe-file");
	}
}

static void list_dir(const char *dir, const char *prefix, char *out, size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char sub[512], subprefix[512];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (e->d_type == DT_DIR) {
			snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
			snprintf(subprefix, sizeof(subprefix), "%s%s/", prefix, e->d_name);
			list_dir(sub, subprefix, out, len);
		} else {
			size_t used = strlen(out);
			snprintf(out + used, len - used, "%s%s%s", used ? "," : "", prefix, e->d_name);
		}
	}
	closedir(d);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void report_fs(void)
{
	char list[2048] = "", *items[64], *save = NULL;
	size_t n = 0;
	struct stat st;

	/* /dev, recursively, sorted: "kvm,net/tun,urandom" */
	list_dir("/dev", "", list, sizeof(list));
	for (char *t = strtok_r(list, ",", &save); t && n < 64; t = strtok_r(NULL, ",", &save))
		items[n++] = t;
	qsort(items, n, sizeof(items[0]), cmp_str);
	put("dev=");
	for (size_t i = 0; i < n; i++)
		put("%s%s", i ? "," : "", items[i]);
	put("\n");
	list[0] = '\0';
	list_dir("/", "", list, sizeof(list));
	put("root_files=%s\n", list);
	if (stat("/", &st) == 0)
		put("root_owner=%u:%u\n", st.st_uid, st.st_gid);
	if (stat("/dev/kvm", &st) == 0)
		put("kvm_owner=%u:%u\nkvm_mode=%o\n", st.st_uid, st.st_gid, st.st_mode & 07777);
}

static void report_devices(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	put("kvm_open=%s\n", result(fd < 0 ? -1 : 0));
	if (fd >= 0) {
		put("kvm_api=%d\n", ioctl(fd, KVM_GET_API_VERSION, 0));
		close(fd);
	}
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	unsigned char b[16];
	put("urandom_read=%s\n", result(fd < 0 || read(fd, b, sizeof(b)) != sizeof(b) ? -1 : 0));
	if (fd >= 0)
		close(fd);
}

static void report_limits_and_net(void)
{
	struct rlimit rl;
	struct if_nameindex *ifs;

	getrlimit(RLIMIT_NOFILE, &rl);
	put("nofile_soft=%llu\nnofile_hard=%llu\n", (unsigned long long)rl.rlim_cur,
	    (unsigned long long)rl.rlim_max);
	getrlimit(RLIMIT_FSIZE, &rl);
	if (rl.rlim_cur == RLIM_INFINITY)
		put("fsize_soft=unlimited\n");
	else
		put("fsize_soft=%llu\n", (unsigned long long)rl.rlim_cur);
	if (rl.rlim_max == RLIM_INFINITY)
		put("fsize_hard=unlimited\n");
	else
		put("fsize_hard=%llu\n", (unsigned long long)rl.rlim_max);
	/* The interfaces of our network namespace (a fresh one has only lo). */
	ifs = if_nameindex();
	put("netifs=");
	for (struct if_nameindex *i = ifs; i && i->if_index; i++)
		put("%s%s", i == ifs ? "" : ",", i->if_name);
	put("\n");
	if (ifs)
		if_freenameindex(ifs);
	/* Which fds did we inherit? Only 0, 1, 2 should be open. */
	put("open_fds=");
	for (int fd = 0, first = 1; fd < 1024; fd++) {
		if (fcntl(fd, F_GETFD) >= 0) {
			put("%s%d", first ? "" : ",", fd);
			first = 0;
		}
	}
	put("\n");
	int count = 0;
	for (char **e = environ; e && *e; e++)
		count++;
	put("env_count=%d\n", count);
}

int main(int argc, char **argv)
{
	const char *write_to = NULL;
	bool wait_stdin = false;
	char c;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--wait") == 0)
			wait_stdin = true;
		else if (strcmp(argv[i], "--write") == 0 && i + 1 < argc)
			write_to = argv[++i];
		else
			put("arg=%s\n", argv[i]);
	}
	put("argv0=%s\n", argv[0]);
	report_ids();
	report_limits_and_net();
	report_caps();
	report_fs();
	report_devices();
	report_reach();
	fwrite(report, 1, report_len, stdout);
	if (write_to) {
		int fd = open(write_to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd >= 0) {
			if (write(fd, report, report_len) < 0)
				perror("write");
			if (write(fd, "probe=done\n", 11) < 0)
				perror("write");
			close(fd);
		}
	}
	if (wait_stdin) {
		puts("probe=waiting");
		fflush(stdout);
		while (read(0, &c, 1) > 0)
			;
	}
	puts("probe=done");
	return 0;
}
