/* io_uring file backend for virtio-blk. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <liburing.h>

#include "virtio/blk_backend.h"

struct blk_backend {
	struct io_uring ring;
	int fd;
	int efd;
	unsigned inflight;  /* submitted or queued, not yet reaped */
	unsigned depth;
};

int blk_backend_open(struct blk_backend **out, int fd, unsigned depth)
{
	struct blk_backend *b = calloc(1, sizeof(*b));
	int ret;

	if (!b)
		return -ENOMEM;
	b->fd = fd;
	b->depth = depth;
	ret = io_uring_queue_init(depth, &b->ring, 0);
	if (ret < 0)
		goto err_free;
	b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->efd < 0) {
		ret = -errno;
		goto err_ring;
	}
	ret = io_uring_register_eventfd(&b->ring, b->efd);
	if (ret < 0)
		goto err_efd;
	*out = b;
	return 0;
err_efd:
	close(b->efd);
err_ring:
	io_uring_queue_exit(&b->ring);
err_free:
	free(b);
	return ret;
}

void blk_backend_close(struct blk_backend *b)
{
	if (!b)
		return;
	blk_backend_drain(b);
	io_uring_queue_exit(&b->ring);
	close(b->efd);
	free(b);
}

int blk_backend_eventfd(const struct blk_backend *b)
{
	return b->efd;
}

unsigned blk_backend_inflight(const struct blk_backend *b)
{
	return b->inflight;
}

int blk_backend_queue(struct blk_backend *b, enum blk_op op, const struct iovec *iov, int iovcnt,
		      uint64_t offset, uint64_t len, void *cookie)
{
	if (b->inflight >= b->depth)
		return -EBUSY;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
	if (!sqe) {
		/* Ring full of unsubmitted entries: push them out and retry. */
		io_uring_submit(&b->ring);
		sqe = io_uring_get_sqe(&b->ring);
		if (!sqe)
			return -EBUSY;
	}
	switch (op) {
	case BLK_OP_READ:
		io_uring_prep_readv(sqe, b->fd, iov, (unsigned)iovcnt, offset);
		break;
	case BLK_OP_WRITE:
		io_uring_prep_writev(sqe, b->fd, iov, (unsigned)iovcnt, offset);
		break;
	case BLK_OP_FLUSH:
		io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
		break;
	case BLK_OP_DISCARD:
		io_uring_prep_fallocate(sqe, b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					offset, len);
		break;
	case BLK_OP_WRITE_ZEROES:
		io_uring_prep_fallocate(sqe, b->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
					offset, len);
		break;
	default:
		return -EINVAL;
	}
	io_uring_sqe_set_data(sqe, cookie);
	b->inflight++;
	return 0;
}

int blk_backend_submit(struct blk_backend *b)
{
	int ret;

	do {
		ret = io_uring_submit(&b->ring);
	} while (ret == -EINTR);
	return ret < 0 ? ret : 0;
}

int blk_backend_reap(struct blk_backend *b, blk_done_fn done, void *opaque)
{
	struct io_uring_cqe *cqe;
	uint64_t v;
	int n = 0;

	/* Clear the eventfd first: completions after this re-arm it. */
	if (read(b->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -errno;
	while (io_uring_peek_cqe(&b->ring, &cqe) == 0) {
		void *cookie = io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&b->ring, cqe);
		b->inflight--;
		done(opaque, cookie, res);
		n++;
	}
	return n;
}

int blk_backend_wait(struct blk_backend *b)
{
	struct io_uring_cqe *cqe;
	int ret;

	if (!b->inflight)
		return 0;
	do {
		ret = io_uring_wait_cqe(&b->ring, &cqe);
	} while (ret == -EINTR);
	return ret < 0 ? ret : 0;
}

void blk_backend_drain(struct blk_backend *b)
{
	struct io_uring_cqe *cqe;

	blk_backend_submit(b);
	while (b->inflight) {
		int ret = io_uring_wait_cqe(&b->ring, &cqe);
		if (ret == -EINTR)
			continue;
		if (ret < 0)
			break;
		io_uring_cqe_seen(&b->ring, cqe);
		b->inflight--;
	}
}
