/* virtio 1.2 constants and the interface between a device and the MMIO
 * transport. A device never sees register offsets: the transport owns the
 * register block and calls the device through `struct virtio_device_ops`. */
#ifndef MOTE_VIRTIO_VIRTIO_H
#define MOTE_VIRTIO_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/queue.h"

/* Device status bits (2.1) */
#define VIRTIO_STATUS_ACKNOWLEDGE  0x01
#define VIRTIO_STATUS_DRIVER       0x02
#define VIRTIO_STATUS_DRIVER_OK    0x04
#define VIRTIO_STATUS_FEATURES_OK  0x08
#define VIRTIO_STATUS_NEEDS_RESET  0x40
#define VIRTIO_STATUS_FAILED       0x80

/* Transport feature bits (6) */
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX     29
#define VIRTIO_F_VERSION_1          32

#define VIRTIO_ID_NET   1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_VSOCK 19

#define VIRTIO_MAX_QUEUES 4

struct virtio_device;

struct virtio_device_ops {
	uint32_t device_id;
	unsigned nr_queues;
	uint16_t queue_max_size;
	uint64_t (*features)(struct virtio_device *dev);
	/* Config space access; offset and len are within config_size. */
	uint32_t config_size;
	void (*config_read)(struct virtio_device *dev, uint32_t offset, void *data, uint32_t len);
	void (*config_write)(struct virtio_device *dev, uint32_t offset, const void *data, uint32_t len);
	/* DRIVER_OK with valid queues: start serving. 0 or -errno (the
	 * transport then sets NEEDS_RESET). */
	int (*activate)(struct virtio_device *dev);
	/* The guest kicked queue `q` (from the event loop thread). */
	void (*queue_notify)(struct virtio_device *dev, unsigned q);
	/* Stop using guest memory and drop all state: the guest wrote 0 to
	 * the status register or the VM is shutting down. */
	void (*reset)(struct virtio_device *dev);
	/* Snapshots (optional; NULL: the device has no state of its own
	 * beyond the transport's and its queues'). save runs on the VMM
	 * thread with the vCPUs paused and dev->lock held: it first finishes
	 * any work in flight (e.g. block I/O, whose completions go to the used
	 * ring), then writes its own fixed, versioned state into buf (at most
	 * cap bytes) and returns the bytes written or -errno. restore runs on
	 * a fresh device after the transport and queues are back (queues
	 * already activated); it gets what save wrote and returns 0 or -errno
	 * (-EINVAL: not this device's state, or a version it cannot read). */
	int (*save)(struct virtio_device *dev, void *buf, size_t cap);
	int (*restore)(struct virtio_device *dev, const void *buf, size_t len);
};

struct virtio_mmio;

/* Common device state; devices embed it as their first member. `lock`
 * serialises register access (vCPU threads) with queue processing and
 * I/O completion (the event loop thread). */
struct virtio_device {
	const struct virtio_device_ops *ops;
	pthread_mutex_t lock;
	const char *name;           /* for log lines, e.g. "blk0" */
	struct virtio_mmio *transport;
	uint64_t driver_features;
	struct virtq queues[VIRTIO_MAX_QUEUES];
	/* Guest mistakes (bad chains, bad requests), for metrics. */
	_Atomic uint64_t nr_guest_errors;
};

static inline bool virtio_has_feature(uint64_t features, unsigned bit)
{
	return (features >> bit) & 1;
}

void virtio_device_init(struct virtio_device *dev, const struct virtio_device_ops *ops,
			const char *name);

/* Marks the device broken by the guest: DEVICE_NEEDS_RESET, a config
 * change interrupt, a counted error, one log line. The monitor goes on. */
void virtio_device_set_needs_reset(struct virtio_device *dev, const char *why);

/* Interrupt the guest for used buffers on queue q if the ring says so.
 * Call with dev->lock held. */
void virtio_device_notify_used(struct virtio_device *dev, unsigned q);

#endif
