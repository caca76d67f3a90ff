/*
 * apibench - times mote's HTTP API from a client's side.
 *
 * For each run it starts `mote --api-sock SOCK --boot-timer` with
 * MOTE_T0_NS set right before execve() (as benches/boot/bootbench.c does),
 * then:
 *   ready_us       exec -> the first connect() to the socket that succeeds
 *                  (connect is retried every 20 us)
 *   put_rtt        PUT /machine-config round trips on one keep-alive
 *                  connection (write the request, read the whole answer):
 *                  -p N of them in the first run
 *   start_rtt_us   the PUT /actions InstanceStart round trip
 *   start_boot_us  InstanceStart -> the guest's boot-timer write, from
 *                  mote's log ("... after N us since InstanceStart")
 *   log_ready_us   mote's own "API socket ready after N us since exec"
 *
 * usage: apibench [-n RUNS] [-p PUTS] MOTE GUEST_ELF
 * Prints one TSV row per run and a summary with min/median/p90/p99/max.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "apibench: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int try_connect(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
		return fd;
	close(fd);
	return -1;
}

/* Sends req and reads one whole response; returns the status. */
static int round_trip(int fd, const char *req, size_t len)
{
	static char buf[65536];
	size_t have = 0;

	while (len) {
		ssize_t n = write(fd, req, len);
		if (n <= 0)
			die("write");
		req += n;
		len -= (size_t)n;
	}
	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0)
			die("read");
		have += (size_t)n;
		buf[have] = '\0';
		char *end = strstr(buf, "\r\n\r\n");
		if (!end)
			continue;
		char *cl = strstr(buf, "Content-Length: ");
		size_t body = cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0;
		if (have >= (size_t)(end - buf) + 4 + body)
			return atoi(buf + 9);
	}
}

static int request(int fd, const char *method, const char *path, const char *body)
{
	char req[2048];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: localhost\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			 method, path, strlen(body), body);
	return round_trip(fd, req, (size_t)n);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, size_t n, double p)
{
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);

	return (double)v[i < n ? i : n - 1];
}

static long log_value(const char *log, const char *before, const char *after)
{
	const char *p = strstr(log, before);

	while (p) {
		const char *q = p + strlen(before);
		char *end;
		long v = strtol(q, &end, 10);
		if (end != q && !strncmp(end, after, strlen(after)))
			return v;
		p = strstr(q, before);
	}
	return -1;
}

static void summary(const char *name, const char *unit, uint64_t *v, size_t n, double div)
{
	if (!n) {
		printf("%s\tno data\n", name);
		return;
	}
	qsort(v, n, sizeof(*v), cmp_u64);
	printf("%s\t%s\tn=%zu\tmin=%.1f\tmedian=%.1f\tp90=%.1f\tp99=%.1f\tmax=%.1f\n", name, unit, n,
	       (double)v[0] / div, pct(v, n, 0.5) / div, pct(v, n, 0.9) / div,
	       pct(v, n, 0.99) / div, (double)v[n - 1] / div);
}

int main(int argc, char **argv)
{
	int runs = 20, puts_n = 10000, c;

	while ((c = getopt(argc, argv, "n:p:")) != -1) {
		if (c == 'n')
			runs = atoi(optarg);
		else if (c == 'p')
			puts_n = atoi(optarg);
		else
			return 2;
	}
	if (argc - optind != 2 || runs < 1) {
		fprintf(stderr, "usage: apibench [-n RUNS] [-p PUTS] MOTE GUEST_ELF\n");
		return 2;
	}
	const char *mote = argv[optind], *guest = argv[optind + 1];
	char sock[108], logpath[128], boot[1024];
	snprintf(sock, sizeof(sock), "/tmp/apibench-%d.sock", (int)getpid());
	snprintf(logpath, sizeof(logpath), "/tmp/apibench-%d.log", (int)getpid());
	snprintf(boot, sizeof(boot), "{\"kernel_image_path\":\"%s\",\"boot_args\":\"test=hello\"}",
		 guest);

	uint64_t *ready = calloc((size_t)runs, sizeof(uint64_t));
	uint64_t *log_ready = calloc((size_t)runs, sizeof(uint64_t));
	uint64_t *start_rtt = calloc((size_t)runs, sizeof(uint64_t));
	uint64_t *start_boot = calloc((size_t)runs, sizeof(uint64_t));
	uint64_t *put = calloc((size_t)(puts_n > 0 ? puts_n : 1), sizeof(uint64_t));
	size_t n_log = 0, n_boot = 0, n_put = 0;
	int failures = 0;

	printf("run\tready_us\tlog_ready_us\tstart_rtt_us\tstart_boot_us\texit\n");
	for (int r = 0; r < runs; r++) {
		unlink(sock);
		int logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (logfd < 0)
			die("log file");
		uint64_t *t0 = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
				    -1, 0);
		pid_t pid = fork();
		if (pid == 0) {
			char env[64];
			int devnull = open("/dev/null", O_RDWR);
			dup2(devnull, 0);
			dup2(devnull, 1);
			dup2(logfd, 2);
			*t0 = now_ns();
			snprintf(env, sizeof(env), "MOTE_T0_NS=%llu", (unsigned long long)*t0);
			putenv(env);
			execl(mote, mote, "--api-sock", sock, "--boot-timer", (char *)NULL);
			_exit(127);
		}
		close(logfd);
		int fd;
		/* 20 us between attempts: a client spinning flat out would take
		 * one of the two CPUs mote itself needs to start. */
		struct timespec gap = { 0, 20000 };
		while ((fd = try_connect(sock)) < 0) {
			if (waitpid(pid, NULL, WNOHANG) == pid) {
				fprintf(stderr, "apibench: mote exited before its socket accepted\n");
				return 1;
			}
			nanosleep(&gap, NULL);
		}
		uint64_t t_ready = now_ns();
		ready[r] = (t_ready - *t0) / 1000;
		if (r == 0) {
			for (int i = 0; i < puts_n; i++) {
				uint64_t a = now_ns();
				int st = request(fd, "PUT", "/machine-config",
						 "{\"vcpu_count\":1,\"mem_size_mib\":128}");
				put[n_put++] = now_ns() - a;
				if (st != 204)
					failures++;
			}
		}
		if (request(fd, "PUT", "/boot-source", boot) != 204)
			failures++;
		uint64_t a = now_ns();
		int st = request(fd, "PUT", "/actions", "{\"action_type\":\"InstanceStart\"}");
		start_rtt[r] = (now_ns() - a) / 1000;
		if (st != 204)
			failures++;
		close(fd);
		int wst;
		waitpid(pid, &wst, 0);
		munmap(t0, 4096);
		char log[65536] = "";
		FILE *f = fopen(logpath, "r");
		if (f) {
			size_t n = fread(log, 1, sizeof(log) - 1, f);
			log[n] = '\0';
			fclose(f);
		}
		long lr = log_value(log, "API socket ready after ", " us since exec");
		long sb = log_value(log, "guest signalled boot after ", " us since InstanceStart");
		if (lr >= 0)
			log_ready[n_log++] = (uint64_t)lr;
		if (sb >= 0)
			start_boot[n_boot++] = (uint64_t)sb;
		int code = WIFEXITED(wst) ? WEXITSTATUS(wst) : 128 + WTERMSIG(wst);
		if (code)
			failures++;
		printf("%d\t%llu\t%ld\t%llu\t%ld\t%d\n", r + 1, (unsigned long long)ready[r], lr,
		       (unsigned long long)start_rtt[r], sb, code);
	}
	unlink(logpath);
	printf("\nmetric\tunit\tn\tmin\tmedian\tp90\tp99\tmax\n");
	summary("exec->socket accepts (client)", "us", ready, (size_t)runs, 1);
	summary("exec->socket ready (mote log)", "us", log_ready, n_log, 1);
	summary("PUT /machine-config round trip", "us", put, n_put, 1000);
	summary("InstanceStart round trip", "us", start_rtt, (size_t)runs, 1);
	summary("InstanceStart->guest boot timer", "us", start_boot, n_boot, 1);
	printf("failures\t%d\n", failures);
	return failures ? 1 : 0;
}
