/* The VMM thread's event loop: epoll over fds with typed callbacks, in the
 * style of redis' ae. Callbacks run on the loop thread only. */
#ifndef MOTE_VMM_LOOP_H
#define MOTE_VMM_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct event_loop;

/* events: EPOLLIN/EPOLLOUT mask that fired. */
typedef void (*loop_fd_cb)(struct event_loop *loop, int fd, uint32_t events, void *opaque);

struct event_loop *loop_create(void);
void loop_destroy(struct event_loop *loop);

int loop_add(struct event_loop *loop, int fd, uint32_t events, loop_fd_cb cb, void *opaque);
int loop_modify(struct event_loop *loop, int fd, uint32_t events);
int loop_remove(struct event_loop *loop, int fd);

/* Runs until loop_stop() is called from a callback. Returns 0 or -errno. */
int loop_run(struct event_loop *loop);
void loop_stop(struct event_loop *loop);
bool loop_stopped(const struct event_loop *loop);

#endif
