/*
 * idt.c - exception handling: an IDT for vectors 0-31, plus (only when a
 * scenario asks for interrupts) gates for vectors 0x40-0x4f.
 *
 * Every exception prints one line and exits with GUEST_EXIT_EXCEPTION,
 * except #BP (vector 3), which only counts: the int3 scenario checks that
 * the monitor delivered it (on nested software KVM the monitor has to
 * inject #BP itself). Vectors 0x40-0x4f go to irq_dispatch() (ioapic.c).
 * Gates 32-0x3f are not present: such a vector raises #NP, which is
 * reported like any other exception.
 */
#include "guest.h"
#include "user.h"

#define IDT_VECTORS      32     /* exceptions, filled at boot */
#define IDT_TABLE_SIZE   (IDT_IRQ_VECTOR_BASE + IDT_IRQ_VECTORS)
#define IDT_STUB_SIZE    16     /* matches the .balign 16 in start.S */
#define IDT_CODE_SEL     0x08
#define IDT_TYPE_INTGATE 0x8e   /* present, DPL 0, 64-bit interrupt gate */
#define VECTOR_BP        3

struct idt_gate {
	uint16_t offset_low;
	uint16_t selector;
	uint8_t ist;
	uint8_t type_attr;
	uint16_t offset_mid;
	uint32_t offset_high;
	uint32_t reserved;
} __attribute__((packed));

struct idt_pointer {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

/* struct exc_frame (the stubs' frame) is in user.h. */

extern const char exc_stubs[];
extern const char irq_stubs[];

static struct idt_gate idt_table[IDT_TABLE_SIZE] __attribute__((aligned(16)));

volatile uint32_t idt_breakpoint_count;

void idt_handle_exception(struct exc_frame *frame);

void idt_load(void)
{
	struct idt_pointer ptr = {
		.limit = sizeof(idt_table) - 1,
		.base = (uint64_t)(uintptr_t)idt_table,
	};

	__asm__ volatile("lidt %0" : : "m"(ptr));
}

/* An IDT with limit 0: any exception then escalates to a triple fault. */
void idt_load_empty(void)
{
	struct idt_pointer ptr = { .limit = 0, .base = 0 };

	__asm__ volatile("lidt %0" : : "m"(ptr));
}

static void idt_set_gate(int vec, uint64_t addr)
{
	struct idt_gate *gate = &idt_table[vec];

	gate->offset_low = (uint16_t)addr;
	gate->selector = IDT_CODE_SEL;
	gate->ist = 0;
	gate->type_attr = IDT_TYPE_INTGATE;
	gate->offset_mid = (uint16_t)(addr >> 16);
	gate->offset_high = (uint32_t)(addr >> 32);
	gate->reserved = 0;
}

/* 32 gates, a few instructions each: cheap enough to fill at boot. */
void idt_install(void)
{
	for (int vec = 0; vec < IDT_VECTORS; vec++)
		idt_set_gate(vec, (uint64_t)(uintptr_t)exc_stubs +
					  (uint64_t)vec * IDT_STUB_SIZE);
	idt_load();
}

/* The interrupt gates; the IDT limit already covers them. */
void idt_install_irq_gates(void)
{
	for (int i = 0; i < IDT_IRQ_VECTORS; i++)
		idt_set_gate(IDT_IRQ_VECTOR_BASE + i,
			     (uint64_t)(uintptr_t)irq_stubs +
				     (uint64_t)i * IDT_STUB_SIZE);
}

/* A device vector (0x40-0x4f) straight to an entry point of its own (a
 * fast path), and the common stub it can fall back to. */
void idt_set_irq_entry(uint8_t vector, const void *entry)
{
	idt_set_gate(vector, (uint64_t)(uintptr_t)entry);
}

const void *idt_irq_stub(uint8_t vector)
{
	return irq_stubs + (uint64_t)(vector - IDT_IRQ_VECTOR_BASE) * IDT_STUB_SIZE;
}

void idt_handle_exception(struct exc_frame *frame)
{
	/* ud2 at CPL3 is a user call (user.c). */
	if (user_handle_exception(frame))
		return;
	if (frame->vector >= IDT_VECTORS) {
		irq_dispatch(frame->vector);
		return;
	}
	if (frame->vector == VECTOR_BP) {
		/* Trap: rip already points after int3, just return. */
		__atomic_add_fetch(&idt_breakpoint_count, 1, __ATOMIC_SEQ_CST);
		return;
	}
	serial_printf_unlocked("guest: exception %lu at rip=0x%lx err=0x%lx\n",
			       frame->vector, frame->rip, frame->error);
	guest_exit(GUEST_EXIT_EXCEPTION);
}
