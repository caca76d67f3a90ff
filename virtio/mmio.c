#include "virtio/mmio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "vmm/log.h"

/* Register offsets (4.2.2) */
#define REG_MAGIC            0x000
#define REG_VERSION          0x004
#define REG_DEVICE_ID        0x008
#define REG_VENDOR_ID        0x00c
#define REG_DEVICE_FEATURES  0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES  0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL        0x030
#define REG_QUEUE_NUM_MAX    0x034
#define REG_QUEUE_NUM        0x038
#define REG_QUEUE_READY      0x044
#define REG_QUEUE_NOTIFY     0x050
#define REG_INTERRUPT_STATUS 0x060
#define REG_INTERRUPT_ACK    0x064
#define REG_STATUS           0x070
#define REG_QUEUE_DESC_LOW   0x080
#define REG_QUEUE_DESC_HIGH  0x084
#define REG_QUEUE_DRIVER_LOW 0x090
#define REG_QUEUE_DRIVER_HIGH 0x094
#define REG_QUEUE_DEVICE_LOW 0x0a0
#define REG_QUEUE_DEVICE_HIGH 0x0a4
#define REG_CONFIG_GENERATION 0x0fc
#define REG_CONFIG           0x100

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */
#define VIRTIO_MMIO_VENDOR 0x45544f4d /* "MOTE" */

void virtio_device_init(struct virtio_device *dev, const struct virtio_device_ops *ops,
			const char *name)
{
	memset(dev, 0, sizeof(*dev));
	dev->ops = ops;
	dev->name = name;
	pthread_mutex_init(&dev->lock, NULL);
	for (unsigned i = 0; i < ops->nr_queues && i < VIRTIO_MAX_QUEUES; i++) {
		dev->queues[i].max_size = ops->queue_max_size;
		virtq_reset(&dev->queues[i]);
	}
}

void virtio_mmio_signal(struct virtio_mmio *t, uint32_t bits)
{
	atomic_fetch_or(&t->interrupt_status, bits);
	irq_line_raise(&t->irq_line);
}

void virtio_device_set_needs_reset(struct virtio_device *dev, const char *why)
{
	struct virtio_mmio *t = dev->transport;

	atomic_fetch_add(&dev->nr_guest_errors, 1);
	if (t->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	log_warn("%s: guest error, device needs reset: %s", dev->name, why);
	t->status |= VIRTIO_STATUS_NEEDS_RESET;
	t->config_generation++;
	if (t->status & VIRTIO_STATUS_DRIVER_OK)
		virtio_mmio_signal(t, VIRTIO_MMIO_INT_CONFIG);
}

void virtio_device_notify_used(struct virtio_device *dev, unsigned q)
{
	if (virtq_should_signal(&dev->queues[q]))
		virtio_mmio_signal(dev->transport, VIRTIO_MMIO_INT_VRING);
}

static bool virtio_mmio_live(const struct virtio_mmio *t)
{
	return t->activated && !(t->status & VIRTIO_STATUS_NEEDS_RESET);
}

static void virtio_mmio_reset(struct virtio_mmio *t)
{
	struct virtio_device *dev = t->dev;

	if (t->activated && dev->ops->reset)
		dev->ops->reset(dev);
	t->activated = false;
	t->status = 0;
	t->device_features_sel = t->driver_features_sel = t->queue_sel = 0;
	atomic_store(&t->interrupt_status, 0);
	dev->driver_features = 0;
	for (unsigned i = 0; i < dev->ops->nr_queues; i++)
		virtq_reset(&dev->queues[i]);
}

static void virtio_mmio_activate(struct virtio_mmio *t)
{
	struct virtio_device *dev = t->dev;
	bool event_idx = virtio_has_feature(dev->driver_features, VIRTIO_F_RING_EVENT_IDX);
	bool indirect = virtio_has_feature(dev->driver_features, VIRTIO_F_RING_INDIRECT_DESC);

	for (unsigned i = 0; i < dev->ops->nr_queues; i++) {
		struct virtq *q = &dev->queues[i];
		const char *why = NULL;

		if (!q->ready)
			continue;
		if (virtq_activate(q, t->env.mem, event_idx, indirect, &why)) {
			virtio_device_set_needs_reset(dev, why);
			return;
		}
	}
	int ret = dev->ops->activate ? dev->ops->activate(dev) : 0;
	if (ret) {
		virtio_device_set_needs_reset(dev, "device could not start");
		return;
	}
	t->activated = true;
}

static void virtio_mmio_write_status(struct virtio_mmio *t, uint32_t val)
{
	struct virtio_device *dev = t->dev;

	if (val == 0) {
		virtio_mmio_reset(t);
		return;
	}
	/* Bits only come back off through a reset (2.1.2). */
	if ((t->status & ~val) & ~(uint32_t)VIRTIO_STATUS_NEEDS_RESET) {
		atomic_fetch_add(&dev->nr_guest_errors, 1);
		return;
	}
	uint32_t added = val & ~t->status;
	if (added & VIRTIO_STATUS_FEATURES_OK) {
		uint64_t offered = dev->ops->features(dev) | (1ULL << VIRTIO_F_VERSION_1);
		/* A driver without VERSION_1 or asking for more than offered
		 * does not get FEATURES_OK; it reads the status back and fails. */
		if ((dev->driver_features & ~offered) ||
		    !virtio_has_feature(dev->driver_features, VIRTIO_F_VERSION_1))
			val &= ~(uint32_t)VIRTIO_STATUS_FEATURES_OK;
	}
	t->status = val | (t->status & VIRTIO_STATUS_NEEDS_RESET);
	if ((added & VIRTIO_STATUS_DRIVER_OK) && (t->status & VIRTIO_STATUS_FEATURES_OK) &&
	    !t->activated)
		virtio_mmio_activate(t);
}

static struct virtq *virtio_mmio_cur_queue(struct virtio_mmio *t)
{
	if (t->queue_sel >= t->dev->ops->nr_queues)
		return NULL;
	return &t->dev->queues[t->queue_sel];
}

static uint32_t virtio_mmio_read_reg(struct virtio_mmio *t, uint64_t off)
{
	struct virtio_device *dev = t->dev;
	struct virtq *q = virtio_mmio_cur_queue(t);

	switch (off) {
	case REG_MAGIC:
		return VIRTIO_MMIO_MAGIC;
	case REG_VERSION:
		return 2;
	case REG_DEVICE_ID:
		return dev->ops->device_id;
	case REG_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case REG_DEVICE_FEATURES: {
		uint64_t f = dev->ops->features(dev) | (1ULL << VIRTIO_F_VERSION_1);
		if (t->device_features_sel > 1)
			return 0;
		return (uint32_t)(f >> (32 * t->device_features_sel));
	}
	case REG_QUEUE_NUM_MAX:
		return q ? q->max_size : 0;
	case REG_QUEUE_READY:
		return q ? q->ready : 0;
	case REG_INTERRUPT_STATUS:
		return atomic_load(&t->interrupt_status);
	case REG_STATUS:
		return t->status;
	case REG_CONFIG_GENERATION:
		return t->config_generation;
	default:
		return 0;
	}
}

static void virtio_mmio_set_addr(uint64_t *addr, bool high, uint32_t val)
{
	if (high)
		*addr = (*addr & 0xffffffffULL) | ((uint64_t)val << 32);
	else
		*addr = (*addr & ~0xffffffffULL) | val;
}

static void virtio_mmio_write_reg(struct virtio_mmio *t, uint64_t off, uint32_t val)
{
	struct virtio_device *dev = t->dev;
	struct virtq *q = virtio_mmio_cur_queue(t);
	/* Queue layout and features are frozen once the driver is running. */
	bool queue_locked = !q || q->ready || (t->status & VIRTIO_STATUS_DRIVER_OK);

	switch (off) {
	case REG_DEVICE_FEATURES_SEL:
		t->device_features_sel = val;
		break;
	case REG_DRIVER_FEATURES:
		if (t->status & VIRTIO_STATUS_FEATURES_OK || t->driver_features_sel > 1)
			break;
		virtio_mmio_set_addr(&dev->driver_features, t->driver_features_sel == 1, val);
		break;
	case REG_DRIVER_FEATURES_SEL:
		t->driver_features_sel = val;
		break;
	case REG_QUEUE_SEL:
		t->queue_sel = val;
		break;
	case REG_QUEUE_NUM:
		if (!queue_locked)
			q->size = (uint16_t)(val > q->max_size ? 0 : val);
		break;
	case REG_QUEUE_READY:
		if (q && !(t->status & VIRTIO_STATUS_DRIVER_OK))
			q->ready = val == 1;
		break;
	case REG_QUEUE_NOTIFY:
		/* Only reached when no ioeventfd matched (no KVM, or an odd
		 * access); handle it the same way. */
		if (val < dev->ops->nr_queues && virtio_mmio_live(t) && dev->ops->queue_notify)
			dev->ops->queue_notify(dev, val);
		break;
	case REG_INTERRUPT_ACK:
		atomic_fetch_and(&t->interrupt_status, ~val);
		break;
	case REG_STATUS:
		virtio_mmio_write_status(t, val);
		break;
	case REG_QUEUE_DESC_LOW:
	case REG_QUEUE_DESC_HIGH:
		if (!queue_locked)
			virtio_mmio_set_addr(&q->desc_gpa, off == REG_QUEUE_DESC_HIGH, val);
		break;
	case REG_QUEUE_DRIVER_LOW:
	case REG_QUEUE_DRIVER_HIGH:
		if (!queue_locked)
			virtio_mmio_set_addr(&q->avail_gpa, off == REG_QUEUE_DRIVER_HIGH, val);
		break;
	case REG_QUEUE_DEVICE_LOW:
	case REG_QUEUE_DEVICE_HIGH:
		if (!queue_locked)
			virtio_mmio_set_addr(&q->used_gpa, off == REG_QUEUE_DEVICE_HIGH, val);
		break;
	default:
		break; /* read-only or unknown register: ignored */
	}
}

void virtio_mmio_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_mmio *t = opaque;
	struct virtio_device *dev = t->dev;

	memset(data, 0, len);
	pthread_mutex_lock(&dev->lock);
	if (offset >= REG_CONFIG) {
		uint64_t off = offset - REG_CONFIG;
		if (dev->ops->config_read && off < dev->ops->config_size &&
		    len <= dev->ops->config_size - off)
			dev->ops->config_read(dev, (uint32_t)off, data, len);
	} else if (len == 4 && !(offset & 3)) {
		uint32_t v = virtio_mmio_read_reg(t, offset);
		memcpy(data, &v, 4);
	} else {
		/* Registers are 32-bit only (4.2.2.2). */
		atomic_fetch_add(&dev->nr_guest_errors, 1);
	}
	pthread_mutex_unlock(&dev->lock);
}

void virtio_mmio_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct virtio_mmio *t = opaque;
	struct virtio_device *dev = t->dev;

	pthread_mutex_lock(&dev->lock);
	if (offset >= REG_CONFIG) {
		uint64_t off = offset - REG_CONFIG;
		if (dev->ops->config_write && off < dev->ops->config_size &&
		    len <= dev->ops->config_size - off)
			dev->ops->config_write(dev, (uint32_t)off, data, len);
	} else if (len == 4 && !(offset & 3)) {
		uint32_t v;
		memcpy(&v, data, 4);
		virtio_mmio_write_reg(t, offset, v);
	} else {
		/* Registers are 32-bit only (4.2.2.2). */
		atomic_fetch_add(&dev->nr_guest_errors, 1);
	}
	pthread_mutex_unlock(&dev->lock);
}

static const struct bus_device_ops virtio_mmio_bus_ops = {
	.read = virtio_mmio_read,
	.write = virtio_mmio_write,
};

static void virtio_mmio_on_notify(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct virtio_mmio *t = opaque;
	struct virtio_device *dev = t->dev;
	uint64_t v;

	(void)loop;
	(void)events;
	if (read(fd, &v, sizeof(v)) < 0)
		return;
	for (unsigned q = 0; q < dev->ops->nr_queues; q++) {
		if (t->notify_fd[q] != fd)
			continue;
		pthread_mutex_lock(&dev->lock);
		if (virtio_mmio_live(t) && dev->ops->queue_notify)
			dev->ops->queue_notify(dev, q);
		pthread_mutex_unlock(&dev->lock);
	}
}

int virtio_mmio_init(struct virtio_mmio *t, struct virtio_device *dev,
		     const struct virtio_mmio_env *env, uint64_t base, uint32_t irq)
{
	int ret;

	memset(t, 0, sizeof(*t));
	t->dev = dev;
	t->env = *env;
	t->base = base;
	t->irq = irq;
	irq_line_none(&t->irq_line);
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		t->notify_fd[i] = -1;
	dev->transport = t;

	ret = bus_register(env->mmio_bus, base, VIRTIO_MMIO_WINDOW, &virtio_mmio_bus_ops, t);
	if (ret)
		return ret;
	if (env->vm_fd < 0)
		return 0;

	ret = irq_line_init(&t->irq_line, env->vm_fd, env->ioapic, irq);
	if (ret)
		return ret;
	for (unsigned q = 0; q < dev->ops->nr_queues; q++) {
		t->notify_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (t->notify_fd[q] < 0)
			return -errno;
		struct kvm_ioeventfd ioev = {
			.datamatch = q,
			.addr = base + REG_QUEUE_NOTIFY,
			.len = 4,
			.fd = t->notify_fd[q],
			.flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
		};
		if (ioctl(env->vm_fd, KVM_IOEVENTFD, &ioev) < 0)
			return -errno;
		ret = loop_add(env->loop, t->notify_fd[q], EPOLLIN, virtio_mmio_on_notify, t);
		if (ret)
			return ret;
	}
	return 0;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
	if (t->dev) {
		pthread_mutex_lock(&t->dev->lock);
		virtio_mmio_reset(t);
		pthread_mutex_unlock(&t->dev->lock);
	}
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		if (t->notify_fd[q] >= 0)
			close(t->notify_fd[q]);
	irq_line_destroy(&t->irq_line);
}

int virtio_mmio_cmdline(const struct virtio_mmio *t, char *buf, size_t len)
{
	int n = snprintf(buf, len, " virtio_mmio.device=4K@0x%llx:%u",
			 (unsigned long long)t->base, t->irq);
	return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

/* ---- snapshots -------------------------------------------------------------- */

#define VIRTIO_MMIO_STATE_MAGIC 0x534f494d /* "MIOS" */
#define VIRTIO_MMIO_STATE_VERSION 1

struct virtio_mmio_queue_state {
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t size, ready, last_avail_idx, used_idx;
	uint16_t signalled_used, signalled_used_valid, pad[2];
};

struct virtio_mmio_state {
	uint32_t magic, version;
	uint32_t device_id, nr_queues;
	uint32_t status, device_features_sel, driver_features_sel, queue_sel;
	uint32_t config_generation, activated, interrupt_status, dev_len;
	uint64_t driver_features;
	struct virtio_mmio_queue_state q[VIRTIO_MAX_QUEUES];
	/* dev_len bytes of the device's own state follow. */
};

int virtio_mmio_save(struct virtio_mmio *t, void *buf, size_t cap)
{
	struct virtio_device *dev = t->dev;
	struct virtio_mmio_state st = { 0 };
	int dev_len = 0;

	if (cap < sizeof(st))
		return -ENOSPC;
	pthread_mutex_lock(&dev->lock);
	/* The device first: finishing its in-flight work moves the rings. */
	if (dev->ops->save) {
		dev_len = dev->ops->save(dev, (uint8_t *)buf + sizeof(st), cap - sizeof(st));
		if (dev_len < 0) {
			pthread_mutex_unlock(&dev->lock);
			return dev_len;
		}
	}
	st.magic = VIRTIO_MMIO_STATE_MAGIC;
	st.version = VIRTIO_MMIO_STATE_VERSION;
	st.device_id = dev->ops->device_id;
	st.nr_queues = dev->ops->nr_queues;
	st.status = t->status;
	st.device_features_sel = t->device_features_sel;
	st.driver_features_sel = t->driver_features_sel;
	st.queue_sel = t->queue_sel;
	st.config_generation = t->config_generation;
	st.activated = t->activated;
	st.interrupt_status = atomic_load(&t->interrupt_status);
	st.dev_len = (uint32_t)dev_len;
	st.driver_features = dev->driver_features;
	for (unsigned i = 0; i < dev->ops->nr_queues && i < VIRTIO_MAX_QUEUES; i++) {
		const struct virtq *q = &dev->queues[i];
		st.q[i] = (struct virtio_mmio_queue_state){
			.desc_gpa = q->desc_gpa, .avail_gpa = q->avail_gpa, .used_gpa = q->used_gpa,
			.size = q->size, .ready = q->ready, .last_avail_idx = q->last_avail_idx,
			.used_idx = q->used_idx, .signalled_used = q->signalled_used,
			.signalled_used_valid = q->signalled_used_valid,
		};
	}
	pthread_mutex_unlock(&dev->lock);
	memcpy(buf, &st, sizeof(st));
	return (int)(sizeof(st) + (size_t)dev_len);
}

int virtio_mmio_restore(struct virtio_mmio *t, const void *buf, size_t len, const char **why)
{
	struct virtio_device *dev = t->dev;
	struct virtio_mmio_state st;
	int ret = 0;

	if (len < sizeof(st)) {
		*why = "transport state is truncated";
		return -EINVAL;
	}
	memcpy(&st, buf, sizeof(st));
	if (st.magic != VIRTIO_MMIO_STATE_MAGIC || st.version != VIRTIO_MMIO_STATE_VERSION) {
		*why = "transport state has an unknown magic or version";
		return -EINVAL;
	}
	if (st.device_id != dev->ops->device_id || st.nr_queues != dev->ops->nr_queues) {
		*why = "the snapshot has a different device type at this slot";
		return -EINVAL;
	}
	if (st.dev_len != len - sizeof(st)) {
		*why = "device state length does not match the section";
		return -EINVAL;
	}
	pthread_mutex_lock(&dev->lock);
	t->status = st.status;
	t->device_features_sel = st.device_features_sel;
	t->driver_features_sel = st.driver_features_sel;
	t->queue_sel = st.queue_sel;
	t->config_generation = st.config_generation;
	atomic_store(&t->interrupt_status, st.interrupt_status);
	dev->driver_features = st.driver_features;
	bool event_idx = virtio_has_feature(dev->driver_features, VIRTIO_F_RING_EVENT_IDX);
	bool indirect = virtio_has_feature(dev->driver_features, VIRTIO_F_RING_INDIRECT_DESC);
	for (unsigned i = 0; i < dev->ops->nr_queues; i++) {
		struct virtq *q = &dev->queues[i];
		const struct virtio_mmio_queue_state *s = &st.q[i];

		virtq_reset(q);
		q->desc_gpa = s->desc_gpa;
		q->avail_gpa = s->avail_gpa;
		q->used_gpa = s->used_gpa;
		q->size = s->size;
		q->ready = s->ready != 0;
		/* The file is input: the same checks as the guest's own setup. */
		if (st.activated && q->ready) {
			ret = virtq_activate(q, t->env.mem, event_idx, indirect, why);
			if (ret)
				goto out;
			q->last_avail_idx = s->last_avail_idx;
			q->used_idx = s->used_idx;
			q->signalled_used = s->signalled_used;
			q->signalled_used_valid = s->signalled_used_valid != 0;
		}
	}
	if (st.activated && !(t->status & VIRTIO_STATUS_NEEDS_RESET)) {
		ret = dev->ops->activate ? dev->ops->activate(dev) : 0;
		if (ret) {
			*why = "the device could not start";
			goto out;
		}
		t->activated = true;
	}
	if (dev->ops->restore) {
		ret = dev->ops->restore(dev, (const uint8_t *)buf + sizeof(st), st.dev_len);
		if (ret)
			*why = "the device rejected its saved state";
	} else if (st.dev_len) {
		*why = "the snapshot has device state this device does not take";
		ret = -EINVAL;
	}
out:
	pthread_mutex_unlock(&dev->lock);
	return ret;
}
