/* Unix sockets for virtio-vsock; see vsock_uds.h. */
#include "virtio/vsock_uds.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int uds_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

int vsock_uds_connect(const char *path)
{
	struct sockaddr_un sa;
	int ret = uds_addr(path, &sa);

	if (ret)
		return ret;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A unix stream connect completes at once or fails (EAGAIN when the
	 * listener's backlog is full): there is no in-progress state. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

int vsock_uds_listen(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd, ret;

	if (uds_addr(path, &sa)) {
		snprintf(err, errlen, "vsock uds_path '%s' is too long for a unix socket", path);
		return -ENAMETOOLONG;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "vsock uds_path '%s' exists and is not a socket", path);
			return -EEXIST;
		}
		int probe = vsock_uds_connect(path);
		if (probe >= 0) {
			close(probe);
			snprintf(err, errlen, "vsock uds_path '%s' is in use by a running program",
				 path);
			return -EADDRINUSE;
		}
		unlink(path); /* stale: left by a monitor that died */
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "vsock: socket: %s", strerror(errno));
		return ret;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
		ret = -errno;
		snprintf(err, errlen, "vsock: cannot listen on '%s': %s", path, strerror(errno));
		close(fd);
		return ret;
	}
	return fd;
}

int vsock_uds_accept(int listen_fd)
{
	int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	return fd < 0 ? -errno : fd;
}
