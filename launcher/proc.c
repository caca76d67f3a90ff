/* See proc.h. */
#include "launcher/proc.h"

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int proc_spawn(char *const argv[], const char *cwd, const char *log_path, pid_t *pid)
{
	/* Opened here, not in the child: the vfork child shares our memory
	 * and should do no more than dup2/chdir/exec. */
	int logfd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
	if (logfd < 0)
		return -errno;
	int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (nullfd < 0) {
		close(logfd);
		return -errno;
	}
	volatile int child_err = 0;
	sigset_t none;
	sigemptyset(&none);
	pid_t p = vfork();
	if (p == 0) {
		/* The daemon blocks SIGCHLD (signalfd); a monitor must not
		 * inherit that mask. */
		sigprocmask(SIG_SETMASK, &none, NULL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if ((cwd && chdir(cwd)) || dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 ||
		    dup2(logfd, 2) < 0) {
			child_err = errno;
			_exit(127);
		}
		execv(argv[0], argv);
		child_err = errno;
		_exit(127);
	}
	int e = errno;
	close(logfd);
	close(nullfd);
	if (p < 0)
		return -e;
	if (child_err) {
		/* vfork: the parent resumes only after exec or _exit, so the
		 * error is already known; reap the child here. */
		waitpid(p, NULL, 0);
		return -child_err;
	}
	*pid = p;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int r = (flag == FTW_DP) ? rmdir(path) : unlink(path);
	return r && errno != ENOENT ? -errno : 0;
}

/* Whether this process has CAP_SYS_NICE in its effective set. */
static bool have_cap_sys_nice(void)
{
	char line[128];
	bool yes = false;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "CapEff:", 7)) {
			yes = (strtoull(line + 7, NULL, 16) >> 23) & 1; /* CAP_SYS_NICE */
			break;
		}
	fclose(f);
	return yes;
}

int proc_sched_all(pid_t pid, int policy)
{
	struct sched_param sp = { .sched_priority = 0 };
	char path[48];
	struct dirent *e;
	int ret = 0;

	/* Out of SCHED_IDLE takes CAP_SYS_NICE (or the target's RLIMIT_NICE
	 * allowing nice 0), even for one's own processes: without it an idle
	 * clone would stay idle once it serves. */
	if (policy == SCHED_IDLE && !have_cap_sys_nice())
		return -EPERM;
	/* The main thread first: what it creates from now on inherits it. */
	if (sched_setscheduler(pid, policy, &sp))
		return -errno;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		pid_t tid = (pid_t)strtol(e->d_name, NULL, 10);
		if (tid <= 0 || tid == pid)
			continue;
		if (sched_setscheduler(tid, policy, &sp) && errno != ESRCH && !ret)
			ret = -errno;
	}
	closedir(d);
	return ret;
}

int proc_rmtree(const char *path)
{
	int r = nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);

	if (r < 0 && errno == ENOENT)
		return 0;
	return r < 0 ? -errno : r;
}

int proc_mkdirs(const char *path, mode_t mode)
{
	char buf[4096];

	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	strcpy(buf, path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

int proc_copy_fd(int in, int out)
{
	char buf[65536];

	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : 0;
		ssize_t w = write(out, buf, (size_t)n);
		if (w != n)
			return w < 0 ? -errno : -EIO;
	}
}

int file_ident_stat(const char *path, struct file_ident *id)
{
	struct stat st;

	memset(id, 0, sizeof(*id));
	if (stat(path, &st))
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	id->size = st.st_size;
	id->mtime = st.st_mtim;
	return 0;
}

int file_ident_full(const char *path, struct file_ident *id)
{
	int ret = file_ident_stat(path, id);

	if (ret)
		return ret;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	uint64_t h = 0xcbf29ce484222325ull;
	if (id->size > 0) {
		void *m = mmap(NULL, (size_t)id->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED) {
			ret = -errno;
			close(fd);
			return ret;
		}
		const uint8_t *p = m;
		for (off_t i = 0; i < id->size; i++)
			h = (h ^ p[i]) * 0x100000001b3ull;
		munmap(m, (size_t)id->size);
	}
	close(fd);
	id->hash = h;
	return 0;
}

bool file_ident_same_stat(const struct file_ident *a, const struct file_ident *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

void proc_log_tail(const char *path, char *out, size_t max)
{
	out[0] = '\0';
	if (max < 8)
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	size_t want = max / 2; /* room for " | " expansion */
	off_t from = end > (off_t)want ? end - (off_t)want : 0;
	char buf[2048];
	if (want > sizeof(buf) - 1)
		want = sizeof(buf) - 1;
	ssize_t n = pread(fd, buf, want, from);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	size_t o = 0;
	for (ssize_t i = 0; i < n && o + 4 < max; i++) {
		if (buf[i] == '\n') {
			if (i + 1 < n) {
				memcpy(out + o, " | ", 3);
				o += 3;
			}
		} else if ((unsigned char)buf[i] >= 0x20 && buf[i] != 0x7f) {
			out[o++] = buf[i];
		}
	}
	out[o] = '\0';
}
