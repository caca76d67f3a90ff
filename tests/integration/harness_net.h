/* Integration-test helpers for virtio-net: a network namespace of the
 * test's own (created with `ip netns add`, entered with setns, always
 * deleted), TAP devices in it, and an AF_PACKET socket on a TAP that sends
 * and receives the raw frames. Header-only, like harness.h. Needs root. */
#ifndef MOTE_TESTS_HARNESS_NET_H
#define MOTE_TESTS_HARNESS_NET_H

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/socket.h>

#include "tests/integration/harness.h"

/* Runs a shell command built from fmt; its exit status (0: success). */
__attribute__((format(printf, 1, 2))) static inline int harness_sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

struct harness_netns {
	char name[64];
	int host_fd; /* this process's namespace before, to go back to; -1 */
	bool created;
};

#define HARNESS_NETNS_INIT { .host_fd = -1 }

/* Creates the namespace mote-test-<pid> and moves this process into it,
 * so that its children (mote, ip) and their TAPs live there too. The
 * caller registers a cleanup that calls harness_netns_leave (also at
 * exit: a failed test must not leave the namespace behind). */
static inline int harness_netns_enter(struct harness_netns *ns)
{
	char path[128];
	int fd;

	snprintf(ns->name, sizeof(ns->name), "mote-test-%d", (int)getpid());
	if (harness_sh("ip netns add %s", ns->name)) {
		fprintf(stderr, "harness: ip netns add %s failed (needs root)\n", ns->name);
		return -1;
	}
	ns->created = true;
	ns->host_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "/run/netns/%s", ns->name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (ns->host_fd < 0 || fd < 0 || setns(fd, CLONE_NEWNET)) {
		perror("harness: setns");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* Back to the namespace we came from, and the test's one deleted. */
static inline void harness_netns_leave(struct harness_netns *ns)
{
	if (ns->host_fd >= 0) {
		if (setns(ns->host_fd, CLONE_NEWNET))
			perror("harness: setns back");
		close(ns->host_fd);
		ns->host_fd = -1;
	}
	if (ns->created && harness_sh("ip netns del %s", ns->name))
		fprintf(stderr, "harness: could not delete netns %s\n", ns->name);
	ns->created = false;
}

/* A TAP device, up, with the given MTU and no IPv6 (no router
 * solicitations among the test's frames). */
static inline int harness_tap_add(const char *tap, unsigned mtu)
{
	if (harness_sh("ip tuntap add dev %s mode tap", tap) ||
	    harness_sh("sysctl -qw net.ipv6.conf.%s.disable_ipv6=1", tap) ||
	    harness_sh("ip link set %s mtu %u up", tap, mtu))
		return -1;
	return 0;
}

/* An AF_PACKET socket bound to ifname for frames of ethertype, with
 * buffers of buf_bytes each way (0: the defaults); the fd, or -1. */
static inline int harness_packet_open(const char *ifname, uint16_t ethertype, int buf_bytes)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ethertype) };
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ethertype));

	if (fd < 0)
		return -1;
	if (buf_bytes) {
		setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf_bytes, sizeof(buf_bytes));
		setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf_bytes, sizeof(buf_bytes));
	}
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	if (!sll.sll_ifindex || bind(fd, (struct sockaddr *)&sll, sizeof(sll))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A frame the TAP's reader (mote) sent, not one of our own that the
 * socket sees going out; -1 after timeout_ms without one. */
static inline ssize_t harness_packet_recv(int fd, void *buf, size_t len, int timeout_ms)
{
	double end = harness_now_ms() + timeout_ms;

	for (;;) {
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		struct pollfd p = { fd, POLLIN, 0 };
		double left = end - harness_now_ms();

		if (left <= 0 || poll(&p, 1, (int)left + 1) <= 0)
			return -1;
		ssize_t n = recvfrom(fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (n > 0 && from.sll_pkttype != PACKET_OUTGOING)
			return n;
	}
}

#endif
