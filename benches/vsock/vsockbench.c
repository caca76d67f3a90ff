/* vsock benchmark client: drives the test unikernel's vsock-echo guest
 * through mote's hybrid vsock socket (CONNECT protocol).
 *
 *   vsockbench UDS PID ROUNDS MIB STREAMS
 *
 * Prints tab-separated results:
 *   rtt  <size>  <median us>  <p99 us>        ROUNDS ping-pongs of size bytes
 *   tput <streams> <MB/s> <vmm cpu ms/MiB>    MIB MiB echoed on each of STREAMS streams
 * "vmm cpu" is the CPU time of mote's VMM thread (tid == PID: the event
 * loop that moves every byte) per MiB echoed, from /proc/PID/task/PID/stat. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ECHO_PORT 5000

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void die(const char *what)
{
	fprintf(stderr, "vsockbench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int dial(const char *uds)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char line[64];
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	size_t n = 0;

	if (fd < 0 || strlen(uds) >= sizeof(sa.sun_path))
		die("socket");
	memcpy(sa.sun_path, uds, strlen(uds) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	int len = snprintf(line, sizeof(line), "CONNECT %d\n", ECHO_PORT);
	if (write(fd, line, (size_t)len) != len)
		die("write CONNECT");
	while (n + 1 < sizeof(line)) {
		if (read(fd, line + n, 1) != 1)
			die("read OK");
		if (line[n++] == '\n')
			break;
	}
	line[n] = 0;
	if (strncmp(line, "OK ", 3)) {
		fprintf(stderr, "vsockbench: CONNECT answered '%s'\n", line);
		exit(1);
	}
	return fd;
}

static double vmm_cpu_ms(int pid)
{
	char path[64], buf[1024];
	unsigned long ut = 0, st = 0;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, pid);
	FILE *f = fopen(path, "r");
	if (!f || !fgets(buf, sizeof(buf), f)) {
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	char *p = strrchr(buf, ')');
	/* fields after the comm: state(3) ... utime(14) stime(15) */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void rtt(const char *uds, int rounds, size_t size)
{
	int fd = dial(uds);
	char *buf = malloc(size), *back = malloc(size);
	double *t = calloc((size_t)rounds, sizeof(double));

	memset(buf, 0x5a, size);
	for (int i = 0; i < rounds; i++) {
		double t0 = now_us();
		if (write(fd, buf, size) != (ssize_t)size)
			die("write");
		size_t got = 0;
		while (got < size) {
			ssize_t r = read(fd, back + got, size - got);
			if (r <= 0)
				die("read echo");
			got += (size_t)r;
		}
		t[i] = now_us() - t0;
	}
	qsort(t, (size_t)rounds, sizeof(double), cmp_double);
	printf("rtt\t%zu\t%.1f\t%.1f\n", size, t[rounds / 2], t[(rounds * 99) / 100]);
	shutdown(fd, SHUT_WR);
	while (read(fd, back, size) > 0)
		;
	close(fd);
	free(buf);
	free(back);
	free(t);
}

static void tput(const char *uds, int pid, size_t mib, int streams)
{
	size_t total = mib << 20;
	int *fd = calloc((size_t)streams, sizeof(int));
	size_t *sent = calloc((size_t)streams, sizeof(size_t));
	size_t *got = calloc((size_t)streams, sizeof(size_t));
	struct pollfd *p = calloc((size_t)streams, sizeof(*p));
	static char buf[1 << 16];

	memset(buf, 0xa5, sizeof(buf));
	for (int i = 0; i < streams; i++) {
		fd[i] = dial(uds);
		fcntl(fd[i], F_SETFL, O_NONBLOCK);
	}
	double cpu0 = vmm_cpu_ms(pid), t0 = now_us();
	for (;;) {
		int open = 0;
		for (int i = 0; i < streams; i++) {
			p[i] = (struct pollfd){ fd[i], 0, 0 };
			if (got[i] < total) {
				p[i].events = POLLIN;
				open++;
			}
			if (sent[i] < total)
				p[i].events |= POLLOUT;
		}
		if (!open)
			break;
		if (poll(p, (nfds_t)streams, 30000) <= 0)
			die("poll (stalled)");
		for (int i = 0; i < streams; i++) {
			if (p[i].revents & POLLOUT) {
				size_t n = total - sent[i] < sizeof(buf) ? total - sent[i] : sizeof(buf);
				ssize_t w = write(fd[i], buf, n);
				if (w > 0)
					sent[i] += (size_t)w;
			}
			if (p[i].revents & (POLLIN | POLLHUP)) {
				ssize_t r = read(fd[i], buf, sizeof(buf));
				if (r == 0) {
					errno = EPIPE;
					die("stream closed early");
				}
				if (r > 0)
					got[i] += (size_t)r;
			}
		}
	}
	double secs = (now_us() - t0) / 1e6, cpu = vmm_cpu_ms(pid) - cpu0;
	printf("tput\t%d\t%.1f\t%.2f\n", streams, (double)total * streams / secs / 1e6,
	       cpu / (double)(mib * (size_t)streams));
	for (int i = 0; i < streams; i++) {
		shutdown(fd[i], SHUT_WR);
		fcntl(fd[i], F_SETFL, 0);
		while (read(fd[i], buf, sizeof(buf)) > 0)
			;
		close(fd[i]);
	}
	free(fd);
	free(sent);
	free(got);
	free(p);
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: vsockbench UDS PID ROUNDS MIB STREAMS\n");
		return 2;
	}
	const char *uds = argv[1];
	int pid = atoi(argv[2]), rounds = atoi(argv[3]), streams = atoi(argv[5]);
	size_t mib = (size_t)atol(argv[4]);

	setvbuf(stdout, NULL, _IOLBF, 0);
	rtt(uds, rounds, 1);
	rtt(uds, rounds, 4096);
	tput(uds, pid, mib, 1);
	tput(uds, pid, mib, streams);
	return 0;
}
