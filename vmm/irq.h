/* One interrupt line from a mote device into the guest: an edge on an
 * IOAPIC pin. With KVM's in-kernel irqchip it is an irqfd bound to the
 * GSI; with the split irqchip (the default) it goes to mote's IOAPIC,
 * which sends an MSI. Devices only call irq_line_raise. */
#ifndef MOTE_VMM_IRQ_H
#define MOTE_VMM_IRQ_H

#include "vmm/ioapic.h"

struct irq_line {
	int irqfd;             /* in-kernel irqchip: eventfd bound to the GSI, else -1 */
	struct ioapic *ioapic; /* split irqchip: mote's IOAPIC, else NULL */
	unsigned pin;
};

/* A line that does nothing (unit tests without KVM). */
void irq_line_none(struct irq_line *l);
/* ioapic != NULL: split irqchip; else an irqfd on vm_fd's GSI pin.
 * 0 or -errno. */
int irq_line_init(struct irq_line *l, int vm_fd, struct ioapic *ioapic, unsigned pin);
void irq_line_raise(const struct irq_line *l);
void irq_line_destroy(struct irq_line *l);

#endif
