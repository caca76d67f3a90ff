#include "vmm/irq.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "vmm/log.h"

void irq_line_none(struct irq_line *l)
{
	l->irqfd = -1;
	l->ioapic = NULL;
	l->pin = 0;
}

int irq_line_init(struct irq_line *l, int vm_fd, struct ioapic *ioapic, unsigned pin)
{
	irq_line_none(l);
	l->pin = pin;
	if (pin >= IOAPIC_NR_PINS)
		return -EINVAL;
	if (ioapic) {
		l->ioapic = ioapic;
		return 0;
	}
	l->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->irqfd < 0)
		return -errno;
	struct kvm_irqfd irqfd = { .fd = (uint32_t)l->irqfd, .gsi = pin };
	if (ioctl(vm_fd, KVM_IRQFD, &irqfd) < 0) {
		int ret = -errno;

		close(l->irqfd);
		l->irqfd = -1;
		return ret;
	}
	return 0;
}

void irq_line_raise(const struct irq_line *l)
{
	uint64_t one = 1;

	if (l->ioapic) {
		ioapic_raise(l->ioapic, l->pin);
		return;
	}
	/* EAGAIN: the counter is saturated, an edge is already pending. */
	if (l->irqfd >= 0 && write(l->irqfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("irqfd for GSI %u: %s", l->pin, strerror(errno));
}

void irq_line_destroy(struct irq_line *l)
{
	if (l->irqfd >= 0)
		close(l->irqfd);
	irq_line_none(l);
}
