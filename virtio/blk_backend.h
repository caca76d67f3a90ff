/* The block device's I/O engine: a file on io_uring (liburing). The
 * device submits reads/writes with iovecs pointing straight into guest
 * memory (no copy) and reaps completions from the event loop when the
 * ring's eventfd fires. */
#ifndef MOTE_VIRTIO_BLK_BACKEND_H
#define MOTE_VIRTIO_BLK_BACKEND_H

#include <stdint.h>
#include <sys/uio.h>

struct blk_backend;

enum blk_op { BLK_OP_READ, BLK_OP_WRITE, BLK_OP_FLUSH, BLK_OP_DISCARD, BLK_OP_WRITE_ZEROES };

/* depth: most requests in flight. Returns 0 or -errno. */
int blk_backend_open(struct blk_backend **out, int fd, unsigned depth);
void blk_backend_close(struct blk_backend *b);
int blk_backend_eventfd(const struct blk_backend *b);

/* Queues one operation (not yet submitted); cookie comes back on completion.
 * -EBUSY when the ring is full. */
int blk_backend_queue(struct blk_backend *b, enum blk_op op, const struct iovec *iov, int iovcnt,
		      uint64_t offset, uint64_t len, void *cookie);
/* Submits everything queued with one system call. */
int blk_backend_submit(struct blk_backend *b);

typedef void (*blk_done_fn)(void *opaque, void *cookie, int result);
/* Reaps completed operations; result is bytes done or -errno. Returns the
 * number reaped. */
int blk_backend_reap(struct blk_backend *b, blk_done_fn done, void *opaque);
/* Blocks until at least one operation in flight has completed (then reap
 * it); returns at once when none is in flight. 0 or -errno. */
int blk_backend_wait(struct blk_backend *b);
/* Waits for every operation in flight and discards the results (reset). */
void blk_backend_drain(struct blk_backend *b);
unsigned blk_backend_inflight(const struct blk_backend *b);

#endif
