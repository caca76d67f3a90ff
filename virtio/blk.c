/* virtio-blk: request parsing and validation; I/O goes to blk_backend. */
#include "virtio/blk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "virtio/blk_backend.h"
#include "virtio/devargs.h"
#include "virtio/mmio.h"
#include "vmm/log.h"

/* Feature bits (5.2.3) */
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status (5.2.6) */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_WZ_UNMAP 1

#define SECTOR_SIZE 512
#define BLK_QUEUE_SIZE 256
#define BLK_SEG_MAX (VIRTQ_MAX_CHAIN - 2) /* minus header and status */
#define BLK_MAX_DISCARD_SECTORS (1u << 22) /* 2 GiB per request */

struct virtio_blk_config {
	uint64_t capacity;
	uint32_t size_max;
	uint32_t seg_max;
	struct { uint16_t cylinders; uint8_t heads; uint8_t sectors; } geometry;
	uint32_t blk_size;
	uint8_t physical_block_exp;
	uint8_t alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_blk_config) == 60, "virtio_blk_config layout");

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct blk_discard_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

struct blk_req {
	bool in_use;
	uint8_t type;
	uint16_t head;
	uint8_t *status;     /* the guest's status byte */
	uint32_t used_len;   /* bytes the device wrote into the chain on success */
	uint64_t expect;     /* result the backend must return for success */
	int iovcnt;
	struct iovec iov[BLK_SEG_MAX + 1];
};

struct virtio_blk {
	struct virtio_device vdev; /* first: container_of by cast */
	struct blk_config cfg;
	char name[16];
	int fd;
	uint64_t capacity; /* sectors */
	struct blk_backend *backend;
	struct event_loop *loop;
	struct virtio_blk_config config;

	struct rate_limiter rl;
	int rl_timerfd;
	bool rl_blocked;

	struct virtq_chain chain; /* scratch for virtq_pop */
	struct blk_req *reqs;
	unsigned nr_reqs;
	struct blk_stats stats;
};

enum blk_verdict { BLK_QUEUED, BLK_DONE, BLK_LIMITED, BLK_BROKEN };

static struct virtio_blk *to_blk(struct virtio_device *dev)
{
	return (struct virtio_blk *)dev;
}

/* ---- configuration -------------------------------------------------- */

int blk_parse_drive_arg(const char *arg, struct blk_config *cfg, char *err, size_t errlen)
{
	struct devargs it;
	struct devarg a;
	int ret = 0;

	if (devargs_open(&it, arg))
		return -ENOMEM;
	memset(cfg, 0, sizeof(*cfg));
	while (devargs_next(&it, &a)) {
		const char *val = a.val;
		uint64_t n;

		if (devarg_is(&a, "path") && val && *val) {
			if (strlen(val) >= sizeof(cfg->path)) {
				snprintf(err, errlen, "--drive path is longer than %d bytes", BLK_PATH_MAX - 1);
				ret = -ENAMETOOLONG;
				break;
			}
			strcpy(cfg->path, val);
		} else if (!strcmp(a.item, "ro") || !strcmp(a.item, "readonly")) {
			cfg->read_only = true;
		} else if (!strcmp(a.item, "root")) {
			cfg->is_root = true;
		} else if (devarg_is(&a, "id") && val) {
			if (!*val || strlen(val) > BLK_ID_LEN) {
				snprintf(err, errlen, "--drive id '%s' must be 1-%d characters", val,
					 BLK_ID_LEN);
				ret = -EINVAL;
				break;
			}
			strcpy(cfg->id, val);
		} else if (devarg_is(&a, "bw") && val && !devarg_u64(val, &n) && n && n <= INT64_MAX) {
			cfg->bandwidth = (struct token_bucket_config){ .size = n, .refill_time_ms = 1000 };
		} else if (devarg_is(&a, "iops") && val && !devarg_u64(val, &n) && n &&
			   n <= INT64_MAX) {
			cfg->ops = (struct token_bucket_config){ .size = n, .refill_time_ms = 1000 };
		} else {
			snprintf(err, errlen, "--drive: '%s' is not path=FILE, ro, root, id=ID, "
				 "bw=BYTES_PER_SECOND or iops=N", a.item);
			ret = -EINVAL;
			break;
		}
	}
	if (!ret && !cfg->path[0]) {
		snprintf(err, errlen, "--drive '%s' has no path=FILE", arg);
		ret = -EINVAL;
	}
	devargs_close(&it);
	return ret;
}

/* ---- request handling ------------------------------------------------- */

static struct blk_req *blk_req_alloc(struct virtio_blk *b)
{
	for (unsigned i = 0; i < b->nr_reqs; i++)
		if (!b->reqs[i].in_use) {
			b->reqs[i].in_use = true;
			return &b->reqs[i];
		}
	return NULL;
}

/* iovecs for bytes [offset, offset+len) of the readable or writable part. */
static int blk_build_iov(const struct virtq_chain *c, bool writable, uint64_t offset, uint64_t len,
			 struct iovec *iov, int max)
{
	unsigned first = writable ? c->nr_readable : 0;
	unsigned last = writable ? c->nr_bufs : c->nr_readable;
	int n = 0;

	for (unsigned i = first; i < last && len; i++) {
		const struct virtq_buf *buf = &c->bufs[i];
		if (offset >= buf->len) {
			offset -= buf->len;
			continue;
		}
		if (n == max)
			return -E2BIG;
		uint64_t take = buf->len - offset;
		if (take > len)
			take = len;
		iov[n++] = (struct iovec){ buf->hva + offset, take };
		len -= take;
		offset = 0;
	}
	return len ? -EINVAL : n;
}

static bool blk_range_ok(const struct virtio_blk *b, uint64_t sector, uint64_t nsectors)
{
	return sector <= b->capacity && nsectors <= b->capacity - sector;
}

static void blk_complete(struct virtio_blk *b, struct blk_req *r, uint8_t status)
{
	struct virtq *q = &b->vdev.queues[0];

	*r->status = status;
	virtq_push(q, r->head, status == VIRTIO_BLK_S_OK ? r->used_len : 1);
	r->in_use = false;
}

static enum blk_verdict blk_fail(struct virtio_blk *b, struct blk_req *r, uint8_t status)
{
	atomic_fetch_add(&b->stats.bad_requests, 1);
	blk_complete(b, r, status);
	return BLK_DONE;
}

/* Rate limiter: 0 to go ahead, else the chain is put back and a timer set. */
static bool blk_rate_limited(struct virtio_blk *b, uint64_t bytes)
{
	if (!rate_limiter_enabled(&b->rl))
		return false;
	uint64_t now = time_now_ns();
	uint64_t wait = rate_limiter_consume(&b->rl, bytes, now);
	if (!wait)
		return false;
	struct itimerspec its = { .it_value = { (time_t)(wait / 1000000000ULL),
						(long)(wait % 1000000000ULL) } };
	timerfd_settime(b->rl_timerfd, 0, &its, NULL);
	b->rl_blocked = true;
	atomic_fetch_add(&b->stats.rate_limited, 1);
	rl_throttle_hold(&b->stats.throttled, now);
	return true;
}

static enum blk_verdict blk_handle_chain(struct virtio_blk *b, const struct virtq_chain *c)
{
	struct blk_req_hdr hdr;
	struct blk_req *r;

	/* Without a writable last byte there is nowhere to put a status:
	 * the chain itself is broken. */
	if (c->writable_len < 1 || c->readable_len < sizeof(hdr))
		return BLK_BROKEN;
	const struct virtq_buf *last = &c->bufs[c->nr_bufs - 1];
	r = blk_req_alloc(b);
	if (!r)
		return BLK_LIMITED; /* cannot happen: callers check for a free slot */
	r->head = c->head;
	r->status = last->hva + last->len - 1;
	r->used_len = 1;
	virtq_chain_read(c, 0, &hdr, sizeof(hdr));
	r->type = (uint8_t)hdr.type;

	uint64_t in_data = c->writable_len - 1;      /* device-writable data bytes */
	uint64_t out_data = c->readable_len - sizeof(hdr); /* device-readable data bytes */

	switch (hdr.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool write = hdr.type == VIRTIO_BLK_T_OUT;
		uint64_t len = write ? out_data : in_data;
		if (write && b->cfg.read_only)
			return blk_fail(b, r, VIRTIO_BLK_S_IOERR);
		if (len == 0 || len % SECTOR_SIZE || !blk_range_ok(b, hdr.sector, len / SECTOR_SIZE))
			return blk_fail(b, r, VIRTIO_BLK_S_IOERR);
		r->iovcnt = blk_build_iov(c, !write, write ? sizeof(hdr) : 0, len, r->iov,
					  BLK_SEG_MAX + 1);
		if (r->iovcnt <= 0)
			return blk_fail(b, r, VIRTIO_BLK_S_IOERR);
		if (blk_rate_limited(b, len)) {
			r->in_use = false;
			return BLK_LIMITED;
		}
		r->expect = len;
		r->used_len = write ? 1 : (uint32_t)len + 1;
		if (blk_backend_queue(b->backend, write ? BLK_OP_WRITE : BLK_OP_READ, r->iov,
				      r->iovcnt, hdr.sector * SECTOR_SIZE, len, r)) {
			r->in_use = false;
			return BLK_LIMITED;
		}
		return BLK_QUEUED;
	}
	case VIRTIO_BLK_T_FLUSH:
		if (b->cfg.read_only) {
			blk_complete(b, r, VIRTIO_BLK_S_OK);
			return BLK_DONE;
		}
		if (blk_rate_limited(b, 0)) {
			r->in_use = false;
			return BLK_LIMITED;
		}
		r->expect = 0;
		if (blk_backend_queue(b->backend, BLK_OP_FLUSH, NULL, 0, 0, 0, r)) {
			r->in_use = false;
			return BLK_LIMITED;
		}
		return BLK_QUEUED;
	case VIRTIO_BLK_T_GET_ID: {
		uint64_t n = in_data < BLK_ID_LEN ? in_data : BLK_ID_LEN;
		char id[BLK_ID_LEN] = { 0 };
		memcpy(id, b->cfg.id, strnlen(b->cfg.id, BLK_ID_LEN));
		virtq_chain_write(c, 0, id, n);
		r->used_len = (uint32_t)n + 1;
		blk_complete(b, r, VIRTIO_BLK_S_OK);
		return BLK_DONE;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		struct blk_discard_seg seg;
		bool zeroes = hdr.type == VIRTIO_BLK_T_WRITE_ZEROES;
		if (b->cfg.read_only)
			return blk_fail(b, r, VIRTIO_BLK_S_IOERR);
		/* We advertise one segment per request. */
		if (out_data != sizeof(seg))
			return blk_fail(b, r, VIRTIO_BLK_S_UNSUPP);
		virtq_chain_read(c, sizeof(hdr), &seg, sizeof(seg));
		if ((!zeroes && seg.flags) || (zeroes && (seg.flags & ~VIRTIO_BLK_WZ_UNMAP)))
			return blk_fail(b, r, VIRTIO_BLK_S_UNSUPP);
		if (!seg.num_sectors || seg.num_sectors > BLK_MAX_DISCARD_SECTORS ||
		    !blk_range_ok(b, seg.sector, seg.num_sectors))
			return blk_fail(b, r, VIRTIO_BLK_S_IOERR);
		if (blk_rate_limited(b, 0)) {
			r->in_use = false;
			return BLK_LIMITED;
		}
		/* Discard and unmapping write-zeroes punch a hole: reads of a
		 * hole return zeros, as the spec requires of write-zeroes. */
		enum blk_op op = (!zeroes || (seg.flags & VIRTIO_BLK_WZ_UNMAP)) ? BLK_OP_DISCARD
										 : BLK_OP_WRITE_ZEROES;
		r->expect = 0;
		if (blk_backend_queue(b->backend, op, NULL, 0, seg.sector * SECTOR_SIZE,
				      (uint64_t)seg.num_sectors * SECTOR_SIZE, r)) {
			r->in_use = false;
			return BLK_LIMITED;
		}
		return BLK_QUEUED;
	}
	default:
		return blk_fail(b, r, VIRTIO_BLK_S_UNSUPP);
	}
}

/* Drains the available ring while there are request slots. Lock held. */
static void blk_process_queue(struct virtio_blk *b)
{
	struct virtq *q = &b->vdev.queues[0];
	bool queued = false, done = false;

	while (!b->rl_blocked && blk_backend_inflight(b->backend) < b->nr_reqs) {
		const char *why = NULL;
		int ret = virtq_pop(q, &b->chain, &why);

		if (ret == -ENOENT) {
			if (virtq_enable_notify(q))
				continue; /* raced with the guest adding more */
			break;
		}
		if (ret) {
			virtio_device_set_needs_reset(&b->vdev, why);
			break;
		}
		switch (blk_handle_chain(b, &b->chain)) {
		case BLK_QUEUED:
			queued = true;
			break;
		case BLK_DONE:
			done = true;
			break;
		case BLK_LIMITED:
			virtq_unpop(q);
			goto out;
		case BLK_BROKEN:
			virtio_device_set_needs_reset(&b->vdev, "request without header or status byte");
			goto out;
		}
	}
out:
	if (queued && blk_backend_submit(b->backend))
		log_warn("%s: io_uring submit failed", b->name);
	if (done)
		virtio_device_notify_used(&b->vdev, 0);
}

static void blk_on_done(void *opaque, void *cookie, int result)
{
	struct virtio_blk *b = opaque;
	struct blk_req *r = cookie;
	bool ok = result >= 0 && (uint64_t)result == r->expect;

	switch (r->type) {
	case VIRTIO_BLK_T_IN:
		atomic_fetch_add(&b->stats.read_ops, 1);
		if (ok)
			atomic_fetch_add(&b->stats.read_bytes, r->expect);
		break;
	case VIRTIO_BLK_T_OUT:
		atomic_fetch_add(&b->stats.write_ops, 1);
		if (ok)
			atomic_fetch_add(&b->stats.write_bytes, r->expect);
		break;
	case VIRTIO_BLK_T_FLUSH:
		atomic_fetch_add(&b->stats.flush_ops, 1);
		break;
	case VIRTIO_BLK_T_DISCARD:
		atomic_fetch_add(&b->stats.discard_ops, 1);
		break;
	default:
		atomic_fetch_add(&b->stats.write_zeroes_ops, 1);
		break;
	}
	if (!ok) {
		atomic_fetch_add(&b->stats.io_errors, 1);
		log_warn("%s: I/O error on request type %u: %s", b->name, r->type,
			 result < 0 ? strerror(-result) : "short transfer");
	}
	blk_complete(b, r, ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR);
}

static void blk_on_completion(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct virtio_blk *b = opaque;

	(void)loop;
	(void)fd;
	(void)events;
	pthread_mutex_lock(&b->vdev.lock);
	if (blk_backend_reap(b->backend, blk_on_done, b) > 0) {
		virtio_device_notify_used(&b->vdev, 0);
		/* Slots freed: more requests may be waiting. */
		if (!(b->vdev.transport->status & VIRTIO_STATUS_NEEDS_RESET))
			blk_process_queue(b);
	}
	pthread_mutex_unlock(&b->vdev.lock);
}

static void blk_on_rate_timer(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct virtio_blk *b = opaque;
	uint64_t v;

	(void)loop;
	(void)events;
	if (read(fd, &v, sizeof(v)) < 0)
		return;
	pthread_mutex_lock(&b->vdev.lock);
	b->rl_blocked = false;
	rl_throttle_release(&b->stats.throttled, time_now_ns());
	if (b->vdev.transport->activated &&
	    !(b->vdev.transport->status & VIRTIO_STATUS_NEEDS_RESET))
		blk_process_queue(b);
	pthread_mutex_unlock(&b->vdev.lock);
}

/* ---- device ops --------------------------------------------------------- */

static uint64_t blk_features(struct virtio_device *dev)
{
	struct virtio_blk *b = to_blk(dev);
	uint64_t f = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
		     (1ULL << VIRTIO_BLK_F_FLUSH) | (1ULL << VIRTIO_F_RING_EVENT_IDX) |
		     (1ULL << VIRTIO_F_RING_INDIRECT_DESC);

	if (b->cfg.read_only)
		f |= 1ULL << VIRTIO_BLK_F_RO;
	else
		f |= (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	return f;
}

static void blk_config_read(struct virtio_device *dev, uint32_t offset, void *data, uint32_t len)
{
	memcpy(data, (const uint8_t *)&to_blk(dev)->config + offset, len);
}

static int blk_activate(struct virtio_device *dev)
{
	(void)dev;
	return 0;
}

static void blk_queue_notify(struct virtio_device *dev, unsigned q)
{
	if (q == 0)
		blk_process_queue(to_blk(dev));
}

static void blk_reset(struct virtio_device *dev)
{
	struct virtio_blk *b = to_blk(dev);
	struct itimerspec off = { 0 };

	/* Nothing may touch guest memory after a reset: wait out the I/O. */
	blk_backend_drain(b->backend);
	for (unsigned i = 0; i < b->nr_reqs; i++)
		b->reqs[i].in_use = false;
	b->rl_blocked = false;
	rl_throttle_release(&b->stats.throttled, time_now_ns());
	timerfd_settime(b->rl_timerfd, 0, &off, NULL);
}

/* Snapshot state: what the guest negotiated is in the transport's record;
 * the drive's size is kept to refuse a backing file that changed, and the
 * rate limiter's tokens so a restore is no way round the limit. */
#define BLK_STATE_MAGIC 0x4b4c4253 /* "SBLK" */
#define BLK_STATE_VERSION 2

struct blk_state {
	uint32_t magic, version;
	uint64_t capacity;
	struct rate_limiter_state rl;
};

static int blk_save(struct virtio_device *dev, void *buf, size_t cap)
{
	struct virtio_blk *b = to_blk(dev);
	struct blk_state st = { .magic = BLK_STATE_MAGIC, .version = BLK_STATE_VERSION,
				.capacity = b->capacity };

	if (cap < sizeof(st))
		return -ENOSPC;
	/* Requests in flight complete into the used ring now, so the saved
	 * rings hold no request the restored device would not know about. */
	if (blk_backend_inflight(b->backend) && blk_backend_submit(b->backend))
		return -EIO;
	while (blk_backend_inflight(b->backend)) {
		int ret = blk_backend_wait(b->backend);
		if (ret)
			return ret;
		if (blk_backend_reap(b->backend, blk_on_done, b) > 0)
			virtio_device_notify_used(&b->vdev, 0);
	}
	rate_limiter_save(&b->rl, time_now_ns(), &st.rl);
	memcpy(buf, &st, sizeof(st));
	return (int)sizeof(st);
}

static int blk_restore(struct virtio_device *dev, const void *buf, size_t len)
{
	struct virtio_blk *b = to_blk(dev);
	struct blk_state st;

	if (len != sizeof(st))
		return -EINVAL;
	memcpy(&st, buf, sizeof(st));
	if (st.magic != BLK_STATE_MAGIC || st.version != BLK_STATE_VERSION)
		return -EINVAL;
	if (st.capacity != b->capacity) {
		log_error("%s: drive '%s' has %llu sectors, the snapshot was taken with %llu",
			  b->name, b->cfg.path, (unsigned long long)b->capacity,
			  (unsigned long long)st.capacity);
		return -EINVAL;
	}
	rate_limiter_restore(&b->rl, &st.rl, time_now_ns());
	/* Requests the guest queued (and kicked) before the snapshot but the
	 * device had not taken yet: no kick will come again. */
	if (b->vdev.transport->activated &&
	    !(b->vdev.transport->status & VIRTIO_STATUS_NEEDS_RESET))
		blk_process_queue(b);
	return 0;
}

static const struct virtio_device_ops blk_ops = {
	.device_id = VIRTIO_ID_BLOCK,
	.nr_queues = 1,
	.queue_max_size = BLK_QUEUE_SIZE,
	.features = blk_features,
	.config_size = sizeof(struct virtio_blk_config),
	.config_read = blk_config_read,
	.activate = blk_activate,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
	.save = blk_save,
	.restore = blk_restore,
};

int virtio_blk_create(struct virtio_blk **out, const struct blk_config *cfg,
		      struct event_loop *loop, const char *name, char *err, size_t errlen)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	struct stat st;
	int ret;

	if (!b)
		return -ENOMEM;
	b->cfg = *cfg;
	b->loop = loop;
	b->fd = b->rl_timerfd = -1;
	snprintf(b->name, sizeof(b->name), "%s", name);
	virtio_device_init(&b->vdev, &blk_ops, b->name);

	b->fd = open(cfg->path, (cfg->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (b->fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open drive '%s': %s", cfg->path, strerror(errno));
		goto err;
	}
	if (fstat(b->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		snprintf(err, errlen, "drive '%s' is not a regular file", cfg->path);
		goto err;
	}
	/* Two writers on one image would corrupt it: refuse, as QEMU does. */
	if (flock(b->fd, (cfg->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		ret = -errno;
		snprintf(err, errlen, "drive '%s' is in use by another VM (%s)", cfg->path,
			 cfg->read_only ? "opened for writing" : "locked");
		goto err;
	}
	b->capacity = (uint64_t)st.st_size / SECTOR_SIZE;
	if (b->capacity == 0) {
		ret = -EINVAL;
		snprintf(err, errlen, "drive '%s' is smaller than one 512-byte sector", cfg->path);
		goto err;
	}
	ret = rate_limiter_init(&b->rl, &cfg->bandwidth, &cfg->ops, time_now_ns());
	if (ret) {
		snprintf(err, errlen, "drive '%s': rate limiter needs a refill time", cfg->path);
		goto err;
	}
	b->nr_reqs = BLK_QUEUE_SIZE;
	b->reqs = calloc(b->nr_reqs, sizeof(*b->reqs));
	if (!b->reqs) {
		ret = -ENOMEM;
		goto err;
	}
	ret = blk_backend_open(&b->backend, b->fd, b->nr_reqs);
	if (ret) {
		snprintf(err, errlen, "drive '%s': io_uring set-up failed: %s", cfg->path,
			 strerror(-ret));
		goto err;
	}
	b->rl_timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (b->rl_timerfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "timerfd: %s", strerror(errno));
		goto err;
	}
	ret = loop_add(loop, blk_backend_eventfd(b->backend), EPOLLIN, blk_on_completion, b);
	if (!ret)
		ret = loop_add(loop, b->rl_timerfd, EPOLLIN, blk_on_rate_timer, b);
	if (ret) {
		snprintf(err, errlen, "event loop: %s", strerror(-ret));
		goto err;
	}

	b->config = (struct virtio_blk_config){
		.capacity = b->capacity,
		.seg_max = BLK_SEG_MAX,
		.blk_size = SECTOR_SIZE,
		.num_queues = 1,
		.max_discard_sectors = BLK_MAX_DISCARD_SECTORS,
		.max_discard_seg = 1,
		.discard_sector_alignment = 1,
		.max_write_zeroes_sectors = BLK_MAX_DISCARD_SECTORS,
		.max_write_zeroes_seg = 1,
		.write_zeroes_may_unmap = 1,
	};
	*out = b;
	return 0;
err:
	virtio_blk_destroy(b);
	return ret;
}

struct virtio_device *virtio_blk_device(struct virtio_blk *b)
{
	return &b->vdev;
}

const struct blk_stats *virtio_blk_stats(const struct virtio_blk *b)
{
	return &b->stats;
}

unsigned virtio_blk_inflight(const struct virtio_blk *b)
{
	return blk_backend_inflight(b->backend);
}

uint64_t virtio_blk_capacity(const struct virtio_blk *b)
{
	return b->capacity;
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b)
		return;
	if (b->backend) {
		if (b->loop)
			loop_remove(b->loop, blk_backend_eventfd(b->backend));
		blk_backend_close(b->backend);
	}
	if (b->rl_timerfd >= 0) {
		if (b->loop)
			loop_remove(b->loop, b->rl_timerfd);
		close(b->rl_timerfd);
	}
	if (b->fd >= 0)
		close(b->fd);
	free(b->reqs);
	pthread_mutex_destroy(&b->vdev.lock);
	free(b);
}
