/*
 * ioapic.c - interrupt delivery for the virtio "irq" mode: the IOAPIC
 * routes a device's GSI to a vector on this CPU's local APIC, whose
 * handler runs from the IDT stubs in start.S (vectors 0x40-0x4f).
 *
 * Set up only when a scenario asks for interrupts; the guest otherwise
 * runs with interrupts disabled. Even in irq mode they are enabled only
 * inside "sti; hlt" (virtq_wait), so handlers never interleave with
 * driver code.
 *
 * The LAPIC timer runs periodically (~10 ms with KVM's 1 GHz APIC bus),
 * so a hlt always wakes up again and every wait stays bounded even if a
 * device never interrupts.
 */
#include "virtio.h"

#define IOAPIC_BASE        0xfec00000u
#define IOAPIC_SPACING     0x10000u    /* QEMU microvm's second IOAPIC */
#define IOAPIC_PINS_FIRST  24          /* GSIs per IOAPIC assumed */
#define IOAPIC_REGSEL      0x00
#define IOAPIC_WIN         0x10
#define IOAPIC_REG_VER     0x01
#define IOAPIC_REDTBL(pin) (0x10 + 2 * (pin))
#define IOAPIC_RTE_MASKED  0x10000u
/* Fixed delivery, physical destination, active high, edge: all zero. */

#define LAPIC_BASE         0xfee00000u
#define LAPIC_ID           0x020
#define LAPIC_EOI          0x0b0
#define LAPIC_SVR          0x0f0
#define LAPIC_LVT_TIMER    0x320
#define LAPIC_LVT_LINT0    0x350
#define LAPIC_LVT_MASKED   0x10000u
#define LAPIC_TIMER_INIT   0x380
#define LAPIC_TIMER_DIV    0x3e0
#define LAPIC_SVR_ENABLE   0x100
#define LAPIC_TIMER_PERIODIC 0x20000u
#define LAPIC_TIMER_DIV_1  0xb
#define LAPIC_TIMER_COUNT  10000000u   /* 10 ms at 1 GHz */

struct irq_handler {
	void (*fn)(void *);
	void *arg;
};

static struct irq_handler irq_handlers[IDT_IRQ_VECTORS];
static int irq_ready;
volatile uint32_t irq_timer_ticks;

static uint32_t lapic_read(uint32_t reg)
{
	return mmio_read32(LAPIC_BASE + reg);
}

static void lapic_write(uint32_t reg, uint32_t value)
{
	mmio_write32(LAPIC_BASE + reg, value);
}

static uint32_t ioapic_read(uintptr_t base, uint32_t reg)
{
	mmio_write32(base + IOAPIC_REGSEL, reg);
	return mmio_read32(base + IOAPIC_WIN);
}

static void ioapic_write(uintptr_t base, uint32_t reg, uint32_t value)
{
	mmio_write32(base + IOAPIC_REGSEL, reg);
	mmio_write32(base + IOAPIC_WIN, value);
}

void irq_init(void)
{
	if (irq_ready)
		return;
	idt_install_irq_gates();
	/*
	 * LINT0 off: monitors (QEMU, Firecracker-style ones) set it to ExtINT
	 * for the BSP, and GSIs below 16 also reach the never-initialised
	 * 8259 PIC, which would then deliver the device's IRQ a second time
	 * as vector 0 + irq (an "exception").
	 */
	lapic_write(LAPIC_LVT_LINT0, LAPIC_LVT_MASKED);
	lapic_write(LAPIC_SVR, LAPIC_SVR_ENABLE | IRQ_VECTOR_SPURIOUS);
	lapic_write(LAPIC_TIMER_DIV, LAPIC_TIMER_DIV_1);
	lapic_write(LAPIC_LVT_TIMER, LAPIC_TIMER_PERIODIC | IRQ_VECTOR_TIMER);
	lapic_write(LAPIC_TIMER_INIT, LAPIC_TIMER_COUNT);
	irq_ready = 1;
}

/* GSI -> (IOAPIC base, pin). GSIs 0-23 are on the IOAPIC at 0xfec00000;
 * QEMU microvm with ACPI puts GSIs 24+ on a second one 64 KiB above. */
static int irq_locate(uint32_t gsi, uintptr_t *base, uint32_t *pin)
{
	uint32_t max_pin;

	*base = IOAPIC_BASE + (gsi / IOAPIC_PINS_FIRST) * IOAPIC_SPACING;
	*pin = gsi % IOAPIC_PINS_FIRST;
	if (gsi >= 2 * IOAPIC_PINS_FIRST)
		return -EINVAL;
	max_pin = (ioapic_read(*base, IOAPIC_REG_VER) >> 16) & 0xff;
	if (*pin > max_pin || max_pin == 0xff)
		return -EINVAL;
	return 0;
}

int irq_route(uint32_t gsi, uint8_t vector, void (*fn)(void *), void *arg)
{
	uintptr_t base;
	uint32_t pin;

	if (vector < IDT_IRQ_VECTOR_BASE ||
	    vector >= IDT_IRQ_VECTOR_BASE + IDT_IRQ_VECTORS ||
	    irq_locate(gsi, &base, &pin)) {
		serial_printf("irq: cannot route GSI %u to vector 0x%x\n", gsi,
			      vector);
		return -EINVAL;
	}
	irq_handlers[vector - IDT_IRQ_VECTOR_BASE].fn = fn;
	irq_handlers[vector - IDT_IRQ_VECTOR_BASE].arg = arg;
	/* Destination first, then the low half, which unmasks. */
	ioapic_write(base, IOAPIC_REDTBL(pin) + 1,
		     (lapic_read(LAPIC_ID) >> 24) << 24);
	ioapic_write(base, IOAPIC_REDTBL(pin), vector);
	return 0;
}

void irq_mask(uint32_t gsi)
{
	uintptr_t base;
	uint32_t pin;

	if (irq_locate(gsi, &base, &pin) == 0)
		ioapic_write(base, IOAPIC_REDTBL(pin), IOAPIC_RTE_MASKED);
}

/* From idt_handle_exception() for vectors >= 32. */
void irq_dispatch(uint64_t vector)
{
	if (vector == IRQ_VECTOR_SPURIOUS)
		return;                 /* no EOI for a spurious interrupt */
	if (vector == IRQ_VECTOR_TIMER) {
		irq_timer_ticks++;
	} else if (vector >= IDT_IRQ_VECTOR_BASE &&
		   vector < IDT_IRQ_VECTOR_BASE + IDT_IRQ_VECTORS) {
		struct irq_handler *h =
			&irq_handlers[vector - IDT_IRQ_VECTOR_BASE];

		if (h->fn)
			h->fn(h->arg);
	}
	lapic_write(LAPIC_EOI, 0);
}
