/* Clone start rate: restores N clones of one snapshot as fast as the host
 * allows, at most P restoring at once, and reports clones per second and
 * each clone's spawn -> "restored from" latency (p50/p99). A clone counts
 * as started when its monitor logs that line, which it does once the
 * vCPUs run the restored guest. Everything is driven from one epoll loop
 * (posix_spawn, one stderr pipe per clone), so the launcher itself is not
 * the bottleneck the way a shell loop polling log files is.
 *
 * usage: clonebench MOTE STATE MEM N P [KEEP]
 *   KEEP=1: leave the clones running until all N started (default: each
 *   clone is killed as soon as it counted, as a function instance that
 *   finished would be; the kill and reap are part of the measured time).
 * Prints one line of key=value figures on stdout. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct clone {
	pid_t pid;
	int fd;
	uint64_t t_spawn;
	char buf[512];
	size_t len;
	int done;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int spawn_clone(struct clone *c, char *const argv[], int epfd, unsigned idx)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	c->t_spawn = now_ns();
	int ret = posix_spawn(&c->pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (ret) {
		close(p[0]);
		return -ret;
	}
	c->fd = p[0];
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = idx };
	return epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0 ? -errno : 0;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: %s MOTE STATE MEM N P [KEEP]\n", argv[0]);
		return 64;
	}
	unsigned n = (unsigned)atoi(argv[4]), par = (unsigned)atoi(argv[5]);
	int keep = argc > 6 && atoi(argv[6]);
	if (n == 0 || par == 0) {
		fprintf(stderr, "clonebench: N and P must be positive\n");
		return 64;
	}
	char *const cargv[] = { argv[1], "--restore", argv[2], "--mem", argv[3], "--resume",
				"--no-api", NULL };
	struct clone *c = calloc(n, sizeof(*c));
	uint64_t *lat = calloc(n, sizeof(*lat));
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!c || !lat || epfd < 0) {
		perror("clonebench");
		return 70;
	}
	unsigned next = 0, started = 0, in_flight = 0, failed = 0;
	uint64_t t0 = now_ns(), deadline = t0 + 300ull * 1000000000ull;

	while (started + failed < n && now_ns() < deadline) {
		while (next < n && in_flight < par) {
			int ret = spawn_clone(&c[next], cargv, epfd, next);
			if (ret) {
				fprintf(stderr, "clonebench: spawn %u: %s\n", next, strerror(-ret));
				return 70;
			}
			next++;
			in_flight++;
		}
		struct epoll_event evs[64];
		int k = epoll_wait(epfd, evs, 64, 1000);
		for (int e = 0; e < k; e++) {
			struct clone *cl = &c[evs[e].data.u32];
			ssize_t r = read(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - 1 - cl->len);
			if (r > 0) {
				cl->len += (size_t)r;
				cl->buf[cl->len] = '\0';
				if (!cl->done && strstr(cl->buf, "restored from")) {
					cl->done = 1;
					lat[started++] = now_ns() - cl->t_spawn;
					in_flight--;
					epoll_ctl(epfd, EPOLL_CTL_DEL, cl->fd, NULL);
					close(cl->fd);
					cl->fd = -1;
					if (!keep)
						kill(cl->pid, SIGKILL);
				} else if (cl->len > sizeof(cl->buf) / 2) {
					/* Keep the tail: the line may straddle reads. */
					memmove(cl->buf, cl->buf + cl->len - 64, 64);
					cl->len = 64;
				}
			} else if (r == 0 || (r < 0 && errno != EAGAIN)) {
				/* The monitor ended without restoring. */
				if (!cl->done) {
					cl->done = 1;
					failed++;
					in_flight--;
					fprintf(stderr, "clonebench: clone %u ended before restoring: %s\n",
						evs[e].data.u32, cl->buf);
				}
				epoll_ctl(epfd, EPOLL_CTL_DEL, cl->fd, NULL);
				close(cl->fd);
				cl->fd = -1;
			}
		}
		/* Reap what was killed, so pids and memory come back as they would
		 * in a launcher. */
		while (!keep && waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
	uint64_t t1 = now_ns();
	for (unsigned i = 0; i < next; i++)
		if (c[i].pid > 0)
			kill(c[i].pid, SIGKILL);
	uint64_t t_kill = now_ns();
	while (waitpid(-1, NULL, 0) > 0)
		;
	uint64_t t_reaped = now_ns();
	qsort(lat, started, sizeof(*lat), cmp_u64);
	double secs = (double)(t1 - t0) / 1e9;
	printf("clones=%u failed=%u parallel=%u keep=%d seconds=%.3f clones_per_s=%.1f "
	       "p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f reap_rest_ms=%.1f\n",
	       started, failed, par, keep, secs, started / secs,
	       started ? lat[started / 2] / 1e6 : 0, started ? lat[started * 9 / 10] / 1e6 : 0,
	       started ? lat[started * 99 / 100] / 1e6 : 0,
	       started ? lat[started - 1] / 1e6 : 0, (double)(t_reaped - t_kill) / 1e6);
	return failed || started < n ? 1 : 0;
}
