/* netbench: frames through a reflector guest, the host side.
 *
 * Runs a monitor (argv after --) whose guest reflects every frame on a
 * TAP (test=net-reflect), waits for its "net-reflect: ready" line, then
 * sends frames of one size over an AF_PACKET socket on the TAP with at
 * most `window` unanswered, checks each reflection (length, sequence
 * number) and prints one TSV line:
 *   label  size  frames  seconds  frames_per_s  MB_per_s  exit_status
 * The clock runs from the first send to the last reflection: boot and
 * shutdown are not in it. Run inside the network namespace of the TAP.
 *
 * usage: netbench -i TAP -l LABEL -s SIZE -n FRAMES [-w WINDOW] [-t TIMEOUT_S] -- CMD...
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ETH_TYPE 0x88b5
#define FRAME_MAX 9216

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *msg)
{
	perror(msg);
	exit(2);
}

/* Reads the child's stdout until `marker` (or EOF / timeout). */
static bool wait_marker(int fd, const char *marker, double timeout_s)
{
	static char buf[1 << 16];
	size_t len = 0;
	double end = now_s() + timeout_s;

	while (now_s() < end) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			return false;
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, marker))
			return true;
		if (len > sizeof(buf) / 2) { /* keep the tail */
			memmove(buf, buf + len - 256, 256);
			len = 256;
		}
	}
	return false;
}

int main(int argc, char **argv)
{
	const char *ifname = NULL, *label = "run";
	unsigned size = 64, frames = 1000, window = 64, timeout = 120;
	int c;

	while ((c = getopt(argc, argv, "i:l:s:n:w:t:")) != -1) {
		switch (c) {
		case 'i': ifname = optarg; break;
		case 'l': label = optarg; break;
		case 's': size = (unsigned)atoi(optarg); break;
		case 'n': frames = (unsigned)atoi(optarg); break;
		case 'w': window = (unsigned)atoi(optarg); break;
		case 't': timeout = (unsigned)atoi(optarg); break;
		default: return 2;
		}
	}
	if (!ifname || optind >= argc || size < 60 || size > FRAME_MAX || !window) {
		fprintf(stderr, "usage: netbench -i TAP -l LABEL -s SIZE(60-%d) -n FRAMES [-w WINDOW] "
			"[-t TIMEOUT_S] -- CMD...\n", FRAME_MAX);
		return 2;
	}

	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_TYPE));
	int big = 16 << 20;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_TYPE) };
	if (s < 0)
		die("socket");
	setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	if (!sll.sll_ifindex || bind(s, (struct sockaddr *)&sll, sizeof(sll)))
		die("bind to the TAP");

	int po[2];
	if (pipe2(po, O_CLOEXEC))
		die("pipe");
	pid_t pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR);
		dup2(devnull, 0);
		dup2(po[1], 1);
		dup2(devnull, 2);
		execvp(argv[optind], argv + optind);
		_exit(127);
	}
	close(po[1]);
	if (!wait_marker(po[0], "net-reflect: ready", timeout)) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		fprintf(stderr, "netbench: %s: the guest never got ready\n", label);
		printf("%s\t%u\t%u\tnan\tnan\tnan\t-1\n", label, size, frames);
		return 1;
	}

	static uint8_t out[FRAME_MAX], in[FRAME_MAX + 64];
	memcpy(out, "\x06\x00\x00\x00\x00\x01\x02\xaa\xbb\xcc\xdd\xee\x88\xb5", 14);
	for (unsigned i = 18; i < size; i++)
		out[i] = (uint8_t)(i * 7);
	unsigned sent = 0, got = 0, bad = 0;
	double t0 = now_s(), end = t0 + timeout;
	while (got < frames && now_s() < end) {
		while (sent < frames && sent - got < window) {
			memcpy(out + 14, &sent, 4);
			if (send(s, out, size, 0) != (ssize_t)size)
				die("send");
			sent++;
		}
		struct pollfd p = { s, POLLIN, 0 };
		if (poll(&p, 1, 1000) <= 0)
			continue;
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(s, in, sizeof(in), 0, (struct sockaddr *)&from, &fl);
		if (n < 0 || from.sll_pkttype == PACKET_OUTGOING)
			continue;
		uint32_t seq;
		memcpy(&seq, in + 14, 4);
		if ((unsigned)n != size || seq != got)
			bad++;
		got++;
	}
	double dt = now_s() - t0;
	int st = 0;
	double wait_end = now_s() + 30;
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (now_s() > wait_end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
		usleep(10000);
	}
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	if (got < frames || bad) {
		fprintf(stderr, "netbench: %s: %u of %u frames back, %u bad\n", label, got, frames, bad);
		printf("%s\t%u\t%u\tnan\tnan\tnan\t%d\n", label, size, frames, code);
		return 1;
	}
	printf("%s\t%u\t%u\t%.4f\t%.1f\t%.3f\t%d\n", label, size, frames, dt, frames / dt,
	       (double)frames * size / dt / 1e6, code);
	return 0;
}
