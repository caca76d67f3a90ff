/* See evloop.h. Timers live in a binary min-heap keyed by due time; the
 * epoll_wait timeout is the earliest one, so no timerfd is needed. */
#include "launcher/evloop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define EV_BATCH 64

struct evloop {
	int epfd;
	bool stop;
	bool no_pwait2;         /* the kernel has no epoll_pwait2 */
	struct ev_timer **heap;
	size_t nr_timers, cap_timers;
	/* The batch being dispatched, so ev_del can void later events for a
	 * watch that its owner is about to free. */
	struct epoll_event batch[EV_BATCH];
	int batch_len, batch_pos;
};

uint64_t ev_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct evloop *evloop_new(void)
{
	struct evloop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		free(l);
		return NULL;
	}
	return l;
}

void evloop_free(struct evloop *l)
{
	if (!l)
		return;
	close(l->epfd);
	free(l->heap);
	free(l);
}

int ev_add(struct evloop *l, struct ev_watch *w, int fd, uint32_t events, ev_fd_cb cb,
	   void *opaque)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };

	w->fd = fd;
	w->events = events;
	w->cb = cb;
	w->opaque = opaque;
	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int ev_modify(struct evloop *l, struct ev_watch *w, uint32_t events)
{
	if (events == w->events)
		return 0;
	struct epoll_event ev = { .events = events, .data.ptr = w };
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
		return -errno;
	w->events = events;
	return 0;
}

void ev_del(struct evloop *l, struct ev_watch *w)
{
	if (w->fd >= 0)
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	for (int i = l->batch_pos; i < l->batch_len; i++)
		if (l->batch[i].data.ptr == w)
			l->batch[i].data.ptr = NULL;
}

/* ---- timers ----------------------------------------------------------------- */

static void heap_set(struct evloop *l, size_t i, struct ev_timer *t)
{
	l->heap[i] = t;
	t->heap_idx = i;
}

static void heap_up(struct evloop *l, size_t i)
{
	struct ev_timer *t = l->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (l->heap[parent]->due_ns <= t->due_ns)
			break;
		heap_set(l, i, l->heap[parent]);
		i = parent;
	}
	heap_set(l, i, t);
}

static void heap_down(struct evloop *l, size_t i)
{
	struct ev_timer *t = l->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= l->nr_timers)
			break;
		if (c + 1 < l->nr_timers && l->heap[c + 1]->due_ns < l->heap[c]->due_ns)
			c++;
		if (t->due_ns <= l->heap[c]->due_ns)
			break;
		heap_set(l, i, l->heap[c]);
		i = c;
	}
	heap_set(l, i, t);
}

void ev_timer_init(struct ev_timer *t, ev_timer_cb cb, void *opaque)
{
	t->due_ns = 0;
	t->heap_idx = EV_TIMER_IDLE;
	t->cb = cb;
	t->opaque = opaque;
}

void ev_timer_cancel(struct evloop *l, struct ev_timer *t)
{
	size_t i = t->heap_idx;

	if (i == EV_TIMER_IDLE)
		return;
	t->heap_idx = EV_TIMER_IDLE;
	l->nr_timers--;
	if (i == l->nr_timers)
		return;
	struct ev_timer *moved = l->heap[l->nr_timers];
	heap_set(l, i, moved);
	heap_up(l, i);
	heap_down(l, moved->heap_idx);
}

int ev_timer_arm(struct evloop *l, struct ev_timer *t, uint64_t delay_ns)
{
	ev_timer_cancel(l, t);
	if (l->nr_timers == l->cap_timers) {
		size_t cap = l->cap_timers ? l->cap_timers * 2 : 64;
		struct ev_timer **h = realloc(l->heap, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		l->heap = h;
		l->cap_timers = cap;
	}
	t->due_ns = ev_now_ns() + delay_ns;
	l->heap[l->nr_timers] = t;
	t->heap_idx = l->nr_timers++;
	heap_up(l, t->heap_idx);
	return 0;
}

/* How long to wait for the next timer: -1 none, else nanoseconds (capped
 * at a minute). */
static int64_t next_timeout_ns(struct evloop *l)
{
	if (!l->nr_timers)
		return -1;
	uint64_t now = ev_now_ns(), due = l->heap[0]->due_ns;
	if (due <= now)
		return 0;
	return due - now > 60000000000ull ? 60000000000ll : (int64_t)(due - now);
}

/* epoll_pwait2 takes the timeout in nanoseconds: a VM's socket is polled
 * every 100 us while it starts, where epoll_wait's milliseconds made every
 * retry wait a whole one. Kernels before 5.11 get the millisecond wait
 * (rounded up: waking early would only spin). */
static int wait_events(struct evloop *l)
{
	int64_t ns = next_timeout_ns(l);

	if (!l->no_pwait2) {
		struct timespec ts = { ns / 1000000000, ns % 1000000000 };
		int n = epoll_pwait2(l->epfd, l->batch, EV_BATCH, ns < 0 ? NULL : &ts, NULL);
		if (n >= 0 || errno != ENOSYS)
			return n;
		l->no_pwait2 = true;
	}
	return epoll_wait(l->epfd, l->batch, EV_BATCH, ns < 0 ? -1 : (int)((ns + 999999) / 1000000));
}

static void run_timers(struct evloop *l)
{
	uint64_t now = ev_now_ns();

	while (l->nr_timers && l->heap[0]->due_ns <= now && !l->stop) {
		struct ev_timer *t = l->heap[0];
		ev_timer_cancel(l, t);
		t->cb(t); /* may re-arm itself */
	}
}

int evloop_run(struct evloop *l)
{
	l->stop = false;
	while (!l->stop) {
		int n = wait_events(l);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		l->batch_len = n;
		for (l->batch_pos = 0; l->batch_pos < n && !l->stop;) {
			struct epoll_event *e = &l->batch[l->batch_pos++];
			struct ev_watch *w = e->data.ptr;
			if (w)
				w->cb(w, e->events);
		}
		l->batch_len = l->batch_pos = 0;
		run_timers(l);
	}
	return 0;
}

void evloop_stop(struct evloop *l)
{
	l->stop = true;
}
