#include "vmm/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define LOOP_MAX_HANDLERS 64
#define LOOP_BATCH 16

/* A slot removed during a dispatch batch stays reserved (LOOP_FD_DEAD)
 * until the batch ends, so a stale event for it can never reach a new
 * handler that reused the slot. */
#define LOOP_FD_FREE -1
#define LOOP_FD_DEAD -2

struct loop_handler {
	int fd;
	loop_fd_cb cb;
	void *opaque;
};

struct event_loop {
	int epfd;
	bool stop;
	bool dispatching;
	struct loop_handler handlers[LOOP_MAX_HANDLERS];
};

struct event_loop *loop_create(void)
{
	struct event_loop *loop = calloc(1, sizeof(*loop));

	if (!loop)
		return NULL;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		free(loop);
		return NULL;
	}
	for (int i = 0; i < LOOP_MAX_HANDLERS; i++)
		loop->handlers[i].fd = LOOP_FD_FREE;
	return loop;
}

void loop_destroy(struct event_loop *loop)
{
	if (!loop)
		return;
	close(loop->epfd);
	free(loop);
}

int loop_add(struct event_loop *loop, int fd, uint32_t events, loop_fd_cb cb, void *opaque)
{
	for (int i = 0; i < LOOP_MAX_HANDLERS; i++) {
		struct loop_handler *h = &loop->handlers[i];

		if (h->fd != LOOP_FD_FREE)
			continue;
		struct epoll_event ev = { .events = events, .data.ptr = h };
		if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			return -errno;
		h->fd = fd;
		h->cb = cb;
		h->opaque = opaque;
		return 0;
	}
	return -ENOSPC;
}

static struct loop_handler *loop_find(struct event_loop *loop, int fd)
{
	if (fd < 0)
		return NULL;
	for (int i = 0; i < LOOP_MAX_HANDLERS; i++)
		if (loop->handlers[i].fd == fd)
			return &loop->handlers[i];
	return NULL;
}

int loop_modify(struct event_loop *loop, int fd, uint32_t events)
{
	struct loop_handler *h = loop_find(loop, fd);

	if (!h)
		return -ENOENT;
	struct epoll_event ev = { .events = events, .data.ptr = h };
	return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int loop_remove(struct event_loop *loop, int fd)
{
	struct loop_handler *h = loop_find(loop, fd);

	if (!h)
		return -ENOENT;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
	h->fd = loop->dispatching ? LOOP_FD_DEAD : LOOP_FD_FREE;
	return 0;
}

void loop_stop(struct event_loop *loop)
{
	loop->stop = true;
}

bool loop_stopped(const struct event_loop *loop)
{
	return loop->stop;
}

int loop_run(struct event_loop *loop)
{
	struct epoll_event evs[LOOP_BATCH];

	while (!loop->stop) {
		int n = epoll_wait(loop->epfd, evs, LOOP_BATCH, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		loop->dispatching = true;
		for (int i = 0; i < n && !loop->stop; i++) {
			struct loop_handler *h = evs[i].data.ptr;

			/* A callback earlier in this batch may have removed it. */
			if (h->fd < 0)
				continue;
			h->cb(loop, h->fd, evs[i].events, h->opaque);
		}
		loop->dispatching = false;
		for (int i = 0; i < LOOP_MAX_HANDLERS; i++)
			if (loop->handlers[i].fd == LOOP_FD_DEAD)
				loop->handlers[i].fd = LOOP_FD_FREE;
	}
	return 0;
}
