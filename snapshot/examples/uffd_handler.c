/* mote-uffd-handler: an example page-fault handler for snapshot/load with
 * mem_backend Uffd. It listens on a unix socket, takes the userfaultfd and
 * the region list from mote (Firecracker's message: a JSON array of
 * {base_host_virt_addr, size, offset, page_size} with the uffd as
 * SCM_RIGHTS), and serves every missing page from the snapshot's memory
 * file with UFFDIO_COPY. It exits when the VM's monitor goes away.
 *
 * usage: mote-uffd-handler SOCKET MEMORY_FILE
 *
 * A real handler could serve pages from the network, decompress them, or
 * prefetch; this one shows the protocol in the fewest lines. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/userfaultfd.h>

#define MAX_REGIONS 8
#define PAGE 4096ULL

struct region {
	uint64_t base, size, offset;
};

static int parse_regions(const char *json, struct region *r, int max)
{
	int n = 0;
	const char *p = json;

	while (n < max && (p = strstr(p, "\"base_host_virt_addr\"")) != NULL) {
		const char *s = strstr(p, "\"size\""), *o = strstr(p, "\"offset\"");
		if (!s || !o)
			return -1;
		r[n].base = strtoull(strchr(p, ':') + 1, NULL, 10);
		r[n].size = strtoull(strchr(s, ':') + 1, NULL, 10);
		r[n].offset = strtoull(strchr(o, ':') + 1, NULL, 10);
		n++;
		p = o;
	}
	return n;
}

int main(int argc, char **argv)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct region regions[MAX_REGIONS];
	char json[4096];
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	int uffd = -1;

	if (argc != 3 || strlen(argv[1]) >= sizeof(a.sun_path)) {
		fprintf(stderr, "usage: mote-uffd-handler SOCKET MEMORY_FILE\n");
		return 64;
	}
	int mfd = open(argv[2], O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (mfd < 0 || fstat(mfd, &sb) < 0) {
		fprintf(stderr, "mote-uffd-handler: %s: %s\n", argv[2], strerror(errno));
		return 66;
	}
	const uint8_t *file = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, mfd, 0);
	if (file == MAP_FAILED) {
		perror("mote-uffd-handler: mmap");
		return 70;
	}
	strcpy(a.sun_path, argv[1]);
	unlink(argv[1]);
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0) {
		perror("mote-uffd-handler: socket");
		return 70;
	}
	printf("mote-uffd-handler: listening on %s\n", argv[1]);
	fflush(stdout);
	int conn = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	if (conn < 0) {
		perror("mote-uffd-handler: accept");
		return 70;
	}
	struct iovec iov = { json, sizeof(json) - 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			      .msg_controllen = sizeof(ctl.buf) };
	ssize_t got = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (got <= 0 || !c || c->cmsg_type != SCM_RIGHTS) {
		fprintf(stderr, "mote-uffd-handler: no userfaultfd in the message\n");
		return 70;
	}
	memcpy(&uffd, CMSG_DATA(c), sizeof(int));
	json[got] = '\0';
	int nr = parse_regions(json, regions, MAX_REGIONS);
	if (nr <= 0) {
		fprintf(stderr, "mote-uffd-handler: bad region list '%s'\n", json);
		return 70;
	}
	uint64_t served = 0;
	struct pollfd pfd[2] = { { uffd, POLLIN, 0 }, { conn, POLLIN, 0 } };
	for (;;) {
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		/* The monitor closed its end: the VM is gone. */
		if (pfd[1].revents & (POLLHUP | POLLIN | POLLERR))
			break;
		struct uffd_msg m;
		if (read(uffd, &m, sizeof(m)) != (ssize_t)sizeof(m))
			continue;
		if (m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uint64_t addr = m.arg.pagefault.address & ~(PAGE - 1);
		for (int i = 0; i < nr; i++) {
			struct region *r = &regions[i];
			if (addr < r->base || addr - r->base >= r->size)
				continue;
			uint64_t off = r->offset + (addr - r->base);
			if (off + PAGE > (uint64_t)sb.st_size)
				break;
			struct uffdio_copy cp = { .dst = addr, .src = (uintptr_t)(file + off),
						  .len = PAGE };
			if (ioctl(uffd, UFFDIO_COPY, &cp) < 0 && errno != EEXIST)
				fprintf(stderr, "mote-uffd-handler: UFFDIO_COPY %#llx: %s\n",
					(unsigned long long)addr, strerror(errno));
			served++;
			break;
		}
	}
	printf("mote-uffd-handler: served %llu pages\n", (unsigned long long)served);
	unlink(argv[1]);
	return 0;
}
