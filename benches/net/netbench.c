/* netbench: frames through a reflector guest, the host side.
 *
 * Runs a monitor (argv after --) whose guest reflects every frame on a
 * TAP (test=net-reflect), waits for its "net-reflect: ready" line, then
 * sends frames of one size over an AF_PACKET socket on the TAP with at
 * most `window` unanswered, checks each reflection (length, sequence
 * number) and prints one TSV line:
 *   label  size  frames  seconds  frames_per_s  MB_per_s  exit_status  main_thread_us_per_frame
 * The last column is the CPU time of the monitor's main thread (mote's VMM
 * event loop; QEMU's main loop, where its userspace virtio-net runs) per
 * frame, from schedstat: a monitor-side cost that does not depend on how
 * fast the guest's instructions run.
 * The clock runs from the first send to the last reflection: boot and
 * shutdown are not in it. Run inside the network namespace of the TAP.
 *
 * With -g the frames are IPv4/TCP sent as TSO (a virtio-net header with
 * GSO_TCPV4, MSS 1448, through PACKET_VNET_HDR) and must come back whole:
 * the guest and both monitors must pass the offload through.
 *
 * usage: netbench -i TAP -l LABEL -s SIZE -n FRAMES [-w WINDOW] [-t TIMEOUT_S] [-g] -- CMD...
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
#define FRAME_MAX 65000
#define VNET 10 /* struct virtio_net_hdr, as PACKET_VNET_HDR speaks it */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run time of thread tid of pid in ns (schedstat), or 0. */
static uint64_t thread_run_ns(pid_t pid)
{
	char path[64];
	unsigned long long ns = 0;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", (int)pid, (int)pid);
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%llu", &ns) != 1)
			ns = 0;
		fclose(f);
	}
	return ns;
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
	bool gso = false;
	int c;

	while ((c = getopt(argc, argv, "i:l:s:n:w:t:g")) != -1) {
		switch (c) {
		case 'i': ifname = optarg; break;
		case 'l': label = optarg; break;
		case 's': size = (unsigned)atoi(optarg); break;
		case 'n': frames = (unsigned)atoi(optarg); break;
		case 'w': window = (unsigned)atoi(optarg); break;
		case 't': timeout = (unsigned)atoi(optarg); break;
		case 'g': gso = true; break;
		default: return 2;
		}
	}
	if (!ifname || optind >= argc || size < 60 || size > FRAME_MAX || !window ||
	    (!gso && size > 9216) || (gso && size < 1600)) {
		fprintf(stderr, "usage: netbench -i TAP -l LABEL -s SIZE(60-9216; -g: 1600-%d) "
			"-n FRAMES [-w WINDOW] [-t TIMEOUT_S] [-g] -- CMD...\n", FRAME_MAX);
		return 2;
	}

	uint16_t proto = gso ? 0x0800 : ETH_TYPE;
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(proto));
	int big = 16 << 20, one = 1;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(proto) };
	if (s < 0)
		die("socket");
	setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
	setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
	if (gso && setsockopt(s, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)))
		die("PACKET_VNET_HDR");
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
		printf("%s\t%u\t%u\tnan\tnan\tnan\t-1\tnan\n", label, size, frames);
		return 1;
	}
	uint64_t cpu0 = thread_run_ns(pid);

	static uint8_t buf[VNET + FRAME_MAX], in[VNET + FRAME_MAX + 64];
	/* With -g: a virtio-net header, then the frame. */
	unsigned off = gso ? VNET : 0, seq_at = gso ? 54 : 14;
	uint8_t *out = buf + off;
	if (gso) {
		/* NEEDS_CSUM, TCPV4, hdr_len 54, MSS 1448, csum at 34+16. */
		memcpy(buf, "\x01\x01\x36\x00\xa8\x05\x22\x00\x10\x00", VNET);
		memcpy(out, "\x06\x00\x00\x00\x00\x01\x02\xaa\xbb\xcc\xdd\xee\x08\x00", 14);
		uint8_t *ip = out + 14;
		uint16_t tot = htons((uint16_t)(size - 14));
		memset(ip, 0, 40);
		ip[0] = 0x45;
		memcpy(ip + 2, &tot, 2);
		ip[8] = 64;
		ip[9] = 6;
		memcpy(ip + 12, "\xac\x10\x00\x01\xac\x10\x00\x02", 8);
		uint32_t sum = 0;
		for (int i = 0; i < 20; i += 2)
			sum += (uint32_t)ip[i] << 8 | ip[i + 1];
		while (sum >> 16)
			sum = (sum & 0xffff) + (sum >> 16);
		uint16_t csum = htons((uint16_t)~sum);
		memcpy(ip + 10, &csum, 2);
		ip[20 + 1] = 1;
		ip[20 + 3] = 2;
		ip[20 + 12] = 0x50;
		ip[20 + 13] = 0x18;
		ip[20 + 14] = 0xff;
	} else {
		memcpy(out, "\x06\x00\x00\x00\x00\x01\x02\xaa\xbb\xcc\xdd\xee\x88\xb5", 14);
	}
	for (unsigned i = seq_at + 4; i < size; i++)
		out[i] = (uint8_t)(i * 7);
	unsigned sent = 0, got = 0, bad = 0;
	double t0 = now_s(), end = t0 + timeout;
	while (got < frames && now_s() < end) {
		while (sent < frames && sent - got < window) {
			memcpy(out + seq_at, &sent, 4);
			if (send(s, buf, off + size, 0) != (ssize_t)(off + size))
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
		memcpy(&seq, in + off + seq_at, 4);
		if ((unsigned)n != off + size || seq != got)
			bad++;
		got++;
	}
	double dt = now_s() - t0;
	uint64_t cpu1 = thread_run_ns(pid);
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
		printf("%s\t%u\t%u\tnan\tnan\tnan\t%d\tnan\n", label, size, frames, code);
		return 1;
	}
	printf("%s\t%u\t%u\t%.4f\t%.1f\t%.3f\t%d\t%.2f\n", label, size, frames, dt, frames / dt,
	       (double)frames * size / dt / 1e6, code,
	       cpu1 > cpu0 ? (double)(cpu1 - cpu0) / 1e3 / frames : 0.0);
	return 0;
}
