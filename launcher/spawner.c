/* See spawner.h. */
#include "launcher/spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct spawner {
	int fd;
	pid_t pid;
};

int spawn_msg_pack(char *buf, size_t cap, uint64_t tag, char *const argv[], const char *cwd,
		   const char *log_path)
{
	struct spawn_msg_hdr h = { .tag = tag };
	size_t off = sizeof(h);

	if (!argv[0] || !log_path || !log_path[0])
		return -EINVAL;
	if (cap < off)
		return -E2BIG;
	for (int i = -2; i < 0 || argv[i]; i++) {
		const char *s = i == -2 ? (cwd ? cwd : "") : i == -1 ? log_path : argv[i];
		size_t n = strlen(s) + 1;

		if (n > cap || off > cap - n)
			return -E2BIG;
		memcpy(buf + off, s, n);
		off += n;
		if (i >= 0)
			h.argc++;
	}
	h.len = (uint32_t)(off - sizeof(h));
	memcpy(buf, &h, sizeof(h));
	return (int)off;
}

int spawn_msg_unpack(char *buf, size_t len, uint64_t *tag, char **argv, size_t argv_cap,
		     const char **cwd, const char **log_path)
{
	struct spawn_msg_hdr h;
	char *p, *end;

	if (len < sizeof(h))
		return -EINVAL;
	memcpy(&h, buf, sizeof(h));
	if (h.len != len - sizeof(h) || h.argc == 0 || h.argc >= argv_cap)
		return -EINVAL;
	p = buf + sizeof(h);
	end = buf + len;
	/* cwd, the log, then argc strings, each ending in a NUL inside the
	 * message. */
	for (uint32_t i = 0; i <= h.argc + 1; i++) {
		char *nul = memchr(p, '\0', (size_t)(end - p));

		if (!nul)
			return -EINVAL;
		if (i == 0)
			*cwd = *p ? p : NULL;
		else if (i == 1)
			*log_path = p;
		else
			argv[i - 2] = p;
		p = nul + 1;
	}
	if (p != end || !argv[0][0] || !(*log_path)[0])
		return -EINVAL;
	argv[h.argc] = NULL;
	*tag = h.tag;
	return 0;
}

/* ---- the helper ---------------------------------------------------------------- */

struct child_args {
	char **argv;
	const char *cwd;
	int log_fd, null_fd;
	pid_t daemon;
	int err;
};

/* Runs on the helper's memory (CLONE_VM) while the helper waits
 * (CLONE_VFORK): syscalls and the exec only. */
static int child_main(void *p)
{
	struct child_args *a = p;
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* CLONE_PARENT: our parent is the daemon; die with it. If it is gone
	 * already, we were re-parented and nothing would reap or kill us. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != a->daemon) {
		a->err = ESRCH;
		_exit(127);
	}
	if ((a->cwd && chdir(a->cwd)) || dup2(a->null_fd, 0) < 0 || dup2(a->log_fd, 1) < 0 ||
	    dup2(a->log_fd, 2) < 0) {
		a->err = errno;
		_exit(127);
	}
	execv(a->argv[0], a->argv);
	a->err = errno;
	_exit(127);
}

/* One request: the fd it carries (closed here), the log, the clone, the
 * reply. */
static void helper_one(int fd, pid_t daemon, char *buf, ssize_t n, int fds[4], int nfds)
{
	static char stack[64 * 1024] __attribute__((aligned(16)));
	struct spawn_reply r = { 0 };
	struct child_args a = { .daemon = daemon, .log_fd = -1, .null_fd = -1 };
	const char *log_path;
	char *argv[256];

	if (nfds != 1 || spawn_msg_unpack(buf, (size_t)n, &r.tag, argv, 256, &a.cwd, &log_path)) {
		r.err = EINVAL;
	} else if ((a.log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
				    0640)) < 0) {
		r.err = errno;
	} else {
		a.argv = argv;
		a.null_fd = fds[0];
		/* Not SIGCHLD: with CLONE_PARENT the child's exit signal is
		 * ours (SIGCHLD) and goes to the daemon. */
		pid_t pid = clone(child_main, stack + sizeof(stack),
				  CLONE_VM | CLONE_VFORK | CLONE_PARENT, &a);
		if (pid < 0)
			r.err = errno;
		else
			r.pid = pid, r.err = a.err;
	}
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	if (a.log_fd >= 0)
		close(a.log_fd);
	while (send(fd, &r, sizeof(r), MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

static void __attribute__((noreturn)) helper_main(int fd, pid_t daemon)
{
	static char buf[SPAWN_MSG_MAX];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(4 * sizeof(int))];
	} cm;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != daemon)
		_exit(0);
	/* Nothing of the daemon's but the socket: a monitor must not
	 * inherit a client's connection (they are CLOEXEC anyway). */
	if (fd > 3)
		close_range(3, (unsigned)fd - 1, 0);
	close_range((unsigned)fd + 1, ~0U, 0);
	/* As the daemon (which ignores it): monitors start with the
	 * disposition they had when the daemon vforked them itself. */
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
				    .msg_controllen = sizeof(cm.b) };
		int fds[4], nfds = 0;
		ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0); /* the daemon closed its end */
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int f;
				memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (nfds < 4)
					fds[nfds++] = f;
				else
					close(f);
			}
		}
		if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
			n = 0; /* malformed: answered EINVAL */
		helper_one(fd, daemon, buf, n, fds, nfds);
	}
}

/* ---- the daemon's side ---------------------------------------------------------- */

int spawner_open(struct spawner **out)
{
	struct spawner *s = calloc(1, sizeof(*s));
	int sv[2], ret;
	pid_t daemon = getpid();

	if (!s)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
		ret = -errno;
		free(s);
		return ret;
	}
	s->pid = fork();
	if (s->pid < 0) {
		ret = -errno;
		close(sv[0]);
		close(sv[1]);
		free(s);
		return ret;
	}
	if (s->pid == 0) {
		close(sv[0]);
		helper_main(sv[1], daemon);
	}
	close(sv[1]);
	s->fd = sv[0];
	/* Room for many requests in flight: a full socket makes the daemon
	 * fall back to starting the monitor itself. */
	int sz = 1 << 20;
	setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	if (fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK)) {
		ret = -errno;
		spawner_close(s);
		return ret;
	}
	*out = s;
	return 0;
}

int spawner_fd(const struct spawner *s)
{
	return s->fd;
}

int spawner_request(struct spawner *s, uint64_t tag, char *const argv[], const char *cwd,
		    const char *log_path, int null_fd)
{
	char buf[SPAWN_MSG_MAX];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} cm;
	int n = spawn_msg_pack(buf, sizeof(buf), tag, argv, cwd, log_path);
	int fds[1] = { null_fd };

	if (n < 0)
		return n;
	struct iovec iov = { buf, (size_t)n };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
			    .msg_controllen = sizeof(cm.b) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(c), fds, sizeof(fds));
	for (;;) {
		if (sendmsg(s->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) == n)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == ENOBUFS)
			return -EAGAIN;
		return errno == ECONNRESET || errno == EPIPE ? -EPIPE : -errno;
	}
}

int spawner_reply(struct spawner *s, uint64_t *tag, pid_t *pid, int *err)
{
	struct spawn_reply r;
	ssize_t n;

	do
		n = recv(s->fd, &r, sizeof(r), MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return 0;
	if (n != (ssize_t)sizeof(r))
		return -EPIPE;
	*tag = r.tag;
	*pid = r.pid;
	*err = r.err;
	return 1;
}

void spawner_close(struct spawner *s)
{
	if (!s)
		return;
	close(s->fd);
	/* EOF ends it; the daemon's SIGCHLD handler may have reaped it. */
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	free(s);
}
