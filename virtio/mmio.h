/* virtio-mmio transport, version 2 registers (virtio 1.2, 4.2.2).
 *
 * The transport owns the register block of one device in a 4 KiB window
 * and its interrupt line. Queue notifications are ioeventfds (a guest kick
 * never exits to user space on a vCPU thread); the interrupt is an
 * irq_line (an MSI from mote's IOAPIC, or an irqfd). */
#ifndef MOTE_VIRTIO_MMIO_H
#define MOTE_VIRTIO_MMIO_H

#include <stdatomic.h>
#include <stdint.h>

#include "vmm/bus.h"
#include "vmm/irq.h"
#include "vmm/loop.h"
#include "vmm/mem.h"
#include "virtio/virtio.h"

#define VIRTIO_MMIO_WINDOW 0x1000

/* What a transport needs from the VM, without depending on struct vm. */
struct virtio_mmio_env {
	int vm_fd;                  /* -1: no KVM (unit tests): no ioeventfd/interrupt */
	struct ioapic *ioapic;      /* split irqchip; NULL: an irqfd on the GSI */
	const struct guest_mem *mem;
	struct bus *mmio_bus;
	struct event_loop *loop;
};

struct virtio_mmio {
	struct virtio_device *dev;
	struct virtio_mmio_env env;
	uint64_t base;
	uint32_t irq;
	struct irq_line irq_line;
	int notify_fd[VIRTIO_MAX_QUEUES];

	/* Register state, under dev->lock. */
	uint32_t status;
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint32_t queue_sel;
	uint32_t config_generation;
	bool activated;
	_Atomic uint32_t interrupt_status;
};

/* Registers the window on the MMIO bus, the interrupt line `irq` and one
 * ioeventfd per queue (handled in env->loop). */
int virtio_mmio_init(struct virtio_mmio *t, struct virtio_device *dev,
		     const struct virtio_mmio_env *env, uint64_t base, uint32_t irq);
void virtio_mmio_destroy(struct virtio_mmio *t);

/* Appends " virtio_mmio.device=4K@0x...:IRQ" for the guest kernel. */
int virtio_mmio_cmdline(const struct virtio_mmio *t, char *buf, size_t len);

/* Register access, as the bus calls it (exposed for unit tests). */
void virtio_mmio_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len);
void virtio_mmio_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len);

/* Raises interrupt status bits (1: used buffer, 2: config change). */
void virtio_mmio_signal(struct virtio_mmio *t, uint32_t bits);

#define VIRTIO_MMIO_INT_VRING  1
#define VIRTIO_MMIO_INT_CONFIG 2

/* Snapshots: the transport's registers, the driver's features and every
 * queue (layout and ring indices) in a fixed, versioned record, followed
 * by the device's own state (ops->save). Call with the vCPUs paused.
 * save returns the bytes written or -errno (-ENOSPC: cap too small).
 * restore runs on a freshly initialised transport of the same device
 * type; it re-maps the rings through guest_mem (checked as at activation)
 * and returns 0 or -EINVAL with *why set. */
#define VIRTIO_MMIO_STATE_MAX 8192
int virtio_mmio_save(struct virtio_mmio *t, void *buf, size_t cap);
int virtio_mmio_restore(struct virtio_mmio *t, const void *buf, size_t len, const char **why);

#endif
