/* The Uffd memory backend (Firecracker's `backend_type: Uffd`): guest RAM
 * starts empty and registered with a userfaultfd; mote hands the uffd and
 * the region list to a page-fault handler listening on a unix socket,
 * which fills each page on first touch (from the memory file, or however
 * it likes). snapshot/examples/uffd_handler.c is a small handler.
 *
 * The message is Firecracker's: one JSON array of
 *   {"base_host_virt_addr": N, "size": N, "offset": N, "page_size": 4096}
 * (offset: where the region starts in the memory file) sent with the uffd
 * as SCM_RIGHTS ancillary data. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/userfaultfd.h>

#include "snapshot/snapshot.h"

__attribute__((format(printf, 3, 4))) static int uffd_fail(char *err, size_t errlen,
							   const char *fmt, ...)
{
	va_list ap;
	int e = errno ? errno : EINVAL;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -e;
}

int snapshot_uffd_attach(struct guest_mem *mem, const char *sock_path, char *err, size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int uffd = -1, sock = -1, ret;

	if (strlen(sock_path) >= sizeof(addr.sun_path)) {
		errno = ENAMETOOLONG;
		return uffd_fail(err, errlen, "mem_backend: backend_path '%s' is too long for a unix "
				 "socket", sock_path);
	}
	strcpy(addr.sun_path, sock_path);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		ret = uffd_fail(err, errlen, "mem_backend: cannot connect to the page-fault handler "
				"at '%s': %s", sock_path, strerror(errno));
		goto out;
	}
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0) {
		ret = uffd_fail(err, errlen, "mem_backend: userfaultfd: %s", strerror(errno));
		goto out;
	}
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)mem->base, .len = mem->size },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (ioctl(uffd, UFFDIO_API, &api) < 0 || ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
		ret = uffd_fail(err, errlen, "mem_backend: registering guest memory with the "
				"userfaultfd: %s", strerror(errno));
		goto out;
	}
	/* One host mapping of all RAM, laid out as in the memory file. */
	char json[256];
	int n = snprintf(json, sizeof(json),
			 "[{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":0,"
			 "\"page_size\":4096}]",
			 (unsigned long long)(uintptr_t)mem->base, (unsigned long long)mem->size);
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { json, (size_t)n };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			      .msg_controllen = sizeof(ctl.buf) };
	memset(&ctl, 0, sizeof(ctl));
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &uffd, sizeof(int));
	if (sendmsg(sock, &msg, MSG_NOSIGNAL) != n) {
		ret = uffd_fail(err, errlen, "mem_backend: sending the userfaultfd to '%s': %s",
				sock_path, strerror(errno));
		goto out;
	}
	/* Pages now arrive from the handler; everything in RAM may be there. */
	mem->uffd = true;
	ret = 0;
out:
	/* The handler holds the uffd now; the registration lives with it. The
	 * socket stays open so the handler sees when this VM goes away. */
	if (uffd >= 0)
		close(uffd);
	if (ret && sock >= 0)
		close(sock);
	return ret;
}
