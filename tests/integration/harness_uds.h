/* Integration-test helpers for unix stream sockets: connect, listen, read
 * and write with timeouts, and the hybrid vsock CONNECT handshake (the
 * monitor's host side of virtio-vsock). Header-only, like harness.h;
 * include it after <cmocka.h> (listen failures are test failures). */
#ifndef MOTE_TESTS_HARNESS_UDS_H
#define MOTE_TESTS_HARNESS_UDS_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "tests/integration/harness.h"

/* Connects to the unix stream socket at path: the fd, or -errno. */
static inline int harness_uds_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* A listening unix stream socket at path (any old file there removed). */
static inline int harness_uds_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	unlink(path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

/* Reads exactly len bytes, waiting at most timeout_ms for each read;
 * false on timeout, EOF or error. */
static inline bool harness_read_full(int fd, void *buf, size_t len, int timeout_ms)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, timeout_ms) != 1)
			return false;
		ssize_t n = read(fd, (uint8_t *)buf + got, len - got);
		if (n <= 0)
			return false;
		got += (size_t)n;
	}
	return true;
}

static inline bool harness_write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, (const uint8_t *)buf + done, len - done);
		if (n <= 0)
			return false;
		done += (size_t)n;
	}
	return true;
}

/* Reads one line (up to '\n', at most len-1 bytes) with a timeout; returns
 * its length, 0 at EOF before any byte, -1 on timeout. */
static inline int harness_read_line(int fd, char *buf, size_t len, int timeout_ms)
{
	size_t n = 0;

	while (n + 1 < len) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, timeout_ms) <= 0)
			return -1;
		ssize_t got = read(fd, buf + n, 1);
		if (got <= 0)
			break;
		n++;
		if (buf[n - 1] == '\n')
			break;
	}
	buf[n] = 0;
	return (int)n;
}

/* Reads and drops data until the peer closes (EOF or reset): true, or
 * false after timeout_ms without a byte. */
static inline bool harness_wait_eof(int fd, int timeout_ms)
{
	char buf[256];

	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, timeout_ms) <= 0)
			return false;
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0)
			return false;
	}
}

/* Opens a stream to guest port `port` through the monitor's hybrid vsock
 * socket uds ("CONNECT <port>\n"): the fd once the monitor answered
 * "OK <local port>", else -1, with the answer line (or "") in line. */
static inline int harness_vsock_dial(const char *uds, unsigned port, char *line, size_t len)
{
	int fd = harness_uds_connect(uds);
	int n;

	assert_true(fd >= 0);
	snprintf(line, len, "CONNECT %u\n", port);
	assert_true(harness_write_full(fd, line, strlen(line)));
	n = harness_read_line(fd, line, len, 30000);
	if (n <= 0)
		line[0] = 0;
	if (n <= 0 || strncmp(line, "OK ", 3)) {
		close(fd);
		return -1;
	}
	return fd;
}

#endif
