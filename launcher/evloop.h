/* mote-fnd's event loop: one epoll set for every socket of the daemon
 * (clients, instance vsock streams, boot listeners, the signalfd) and a
 * min-heap of timers. vmm/loop.c serves a monitor's few dozen fds from a
 * fixed table; the launcher holds thousands at once, so each watched
 * object embeds its own struct ev_watch and epoll hands it straight back. */
#ifndef MOTE_LAUNCHER_EVLOOP_H
#define MOTE_LAUNCHER_EVLOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evloop;
struct ev_watch;

typedef void (*ev_fd_cb)(struct ev_watch *w, uint32_t events);

struct ev_watch {
	int fd;
	uint32_t events;
	ev_fd_cb cb;
	void *opaque;
};

struct ev_timer;
typedef void (*ev_timer_cb)(struct ev_timer *t);

struct ev_timer {
	uint64_t due_ns;           /* CLOCK_MONOTONIC */
	size_t heap_idx;           /* position in the heap, EV_TIMER_IDLE when not armed */
	ev_timer_cb cb;
	void *opaque;
};
#define EV_TIMER_IDLE ((size_t)-1)

struct evloop *evloop_new(void);
void evloop_free(struct evloop *l);

/* Watches w->fd for events (EPOLLIN/EPOLLOUT...). */
int ev_add(struct evloop *l, struct ev_watch *w, int fd, uint32_t events, ev_fd_cb cb,
	   void *opaque);
int ev_modify(struct evloop *l, struct ev_watch *w, uint32_t events);
/* Stops watching (the caller closes the fd). Safe inside a callback: a
 * stale event already fetched for w in the same batch is dropped. */
void ev_del(struct evloop *l, struct ev_watch *w);

void ev_timer_init(struct ev_timer *t, ev_timer_cb cb, void *opaque);
/* (Re)arms t to fire once, delay_ns from now. */
int ev_timer_arm(struct evloop *l, struct ev_timer *t, uint64_t delay_ns);
void ev_timer_cancel(struct evloop *l, struct ev_timer *t);
static inline bool ev_timer_armed(const struct ev_timer *t)
{
	return t->heap_idx != EV_TIMER_IDLE;
}

/* Runs until evloop_stop() (called from a callback). Returns 0 or -errno. */
int evloop_run(struct evloop *l);
void evloop_stop(struct evloop *l);

uint64_t ev_now_ns(void);

#endif
