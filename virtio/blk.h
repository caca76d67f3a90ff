/* virtio-blk device (virtio 1.2, 5.2) over a file, on io_uring. */
#ifndef MOTE_VIRTIO_BLK_H
#define MOTE_VIRTIO_BLK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/loop.h"
#include "virtio/ratelimit.h"
#include "virtio/virtio.h"

#define BLK_MAX_DRIVES 8
#define BLK_ID_LEN 20

#define BLK_PATH_MAX 4096

struct blk_config {
	char path[BLK_PATH_MAX];
	char id[BLK_ID_LEN + 1];
	bool read_only;
	bool is_root;
	struct token_bucket_config bandwidth; /* bytes */
	struct token_bucket_config ops;
};

struct blk_stats {
	_Atomic uint64_t read_ops, write_ops, flush_ops, discard_ops, write_zeroes_ops;
	_Atomic uint64_t read_bytes, write_bytes;
	_Atomic uint64_t io_errors;      /* backend failures */
	_Atomic uint64_t bad_requests;   /* guest requests rejected with IOERR/UNSUPP */
	_Atomic uint64_t rate_limited;   /* times the limiter held the queue */
	struct rl_throttle throttled;    /* how long it held it */
};

struct virtio_blk;

/* Parses "path=FILE[,ro][,id=ID][,root][,bw=BYTES_PER_S][,iops=N]"
 * (FILE cannot contain a comma). */
int blk_parse_drive_arg(const char *arg, struct blk_config *cfg, char *err, size_t errlen);

/* Opens the backing file and the io_uring backend. On failure returns
 * -errno with a message in err. */
int virtio_blk_create(struct virtio_blk **out, const struct blk_config *cfg,
		      struct event_loop *loop, const char *name, char *err, size_t errlen);
struct virtio_device *virtio_blk_device(struct virtio_blk *b);
const struct blk_stats *virtio_blk_stats(const struct virtio_blk *b);
/* Requests handed to the backend and not yet completed: while any is,
 * the kernel may write guest RAM on the device's behalf at any moment
 * (the working-set sampler of a restored clone must not zap then). */
unsigned virtio_blk_inflight(const struct virtio_blk *b);
uint64_t virtio_blk_capacity(const struct virtio_blk *b);
void virtio_blk_destroy(struct virtio_blk *b);

#endif
