/*
 * guest.h - internal header of the mote test unikernel.
 *
 * Everything here is freestanding: no libc, only the compiler's own
 * <stdint.h>, <stddef.h> and <stdarg.h>.
 */
#ifndef MOTE_GUEST_H
#define MOTE_GUEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes written to the debug-exit port (QEMU isa-debug-exit style). */
#define GUEST_EXIT_PASS        0
#define GUEST_EXIT_FAIL        1
#define GUEST_EXIT_BAD_CMDLINE 2
#define GUEST_EXIT_EXCEPTION   3
#define GUEST_EXIT_PORT        0xf4

/* errno-style values; functions return 0 or the negated value. */
#define ENOENT    2
#define ENODEV    19
#define EINVAL    22
#define ENOMEM    12
#define EIO       5
#define ERANGE    34
#define ETIMEDOUT 110

/* Must match start.S: the AP trampoline is copied here, SIPI vector 0x08. */
#define SMP_TRAMPOLINE_PADDR 0x8000u
#define SMP_MAX_CPUS         32

/* struct hvm_start_info from the Xen PVH boot ABI (version 1 layout). */
#define HVM_START_MAGIC 0x336ec578u
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;   /* valid only if version >= 1 */
	uint32_t memmap_entries; /* valid only if version >= 1 */
	uint32_t reserved;
};

#define HVM_MEMMAP_TYPE_RAM 1
struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

static inline void io_out8(uint16_t port, uint8_t value)
{
	__asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline uint8_t io_in8(uint16_t port)
{
	uint8_t value;

	__asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
	return value;
}

static inline void cpu_pause(void)
{
	__asm__ volatile("pause" : : : "memory");
}

static inline void mmio_write8(uintptr_t addr, uint8_t value)
{
	*(volatile uint8_t *)addr = value;
}

static inline uint8_t mmio_read8(uintptr_t addr)
{
	return *(volatile uint8_t *)addr;
}

static inline uint32_t mmio_read32(uintptr_t addr)
{
	return *(volatile uint32_t *)addr;
}

static inline void mmio_write32(uintptr_t addr, uint32_t value)
{
	*(volatile uint32_t *)addr = value;
}

static inline uint64_t cpu_rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* Compiler barrier: keeps the compiler from reordering memory accesses.
 * x86 keeps stores in order with stores and loads with loads. */
static inline void cpu_barrier(void)
{
	__asm__ volatile("" : : : "memory");
}

/* Full fence: orders an earlier store before a later load. */
static inline void cpu_mfence(void)
{
	__asm__ volatile("mfence" : : : "memory");
}

static inline void cpu_cli(void)
{
	__asm__ volatile("cli" : : : "memory");
}

/* The interrupt shadow of sti covers hlt: an interrupt that is already
 * pending, or arrives in between, wakes the hlt rather than being lost. */
static inline void cpu_sti_hlt(void)
{
	__asm__ volatile("sti; hlt" : : : "memory");
}

/* lib.c */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t lib_strlen(const char *s);
int lib_parse_u32(const char *s, size_t len, uint32_t *out);
int lib_parse_u64(const char *s, size_t len, uint64_t *out);
int lib_parse_hex64(const char *s, size_t len, uint64_t *out);

/* serial.c */
void serial_write_bytes(const char *s, size_t len);
/* VM UARTs only: one THRE look, one rep outsb (one exit) for the run. */
void serial_write_burst(const char *s, size_t len);
void serial_vprintf_unlocked(const char *fmt, va_list ap);
void serial_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void serial_printf_unlocked(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
/* "TEST FAIL <test>: <message>" as one whole line; returns GUEST_EXIT_FAIL. */
int test_fail(const char *test, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* idt.c */
#define IDT_IRQ_VECTOR_BASE 0x40   /* start.S has stubs for 0x40-0x4f */
#define IDT_IRQ_VECTORS     16
extern volatile uint32_t idt_breakpoint_count;
void idt_install(void);
void idt_install_irq_gates(void);
/* vector in 0x40-0x4f: its gate to entry; the common stub for it. */
void idt_set_irq_entry(uint8_t vector, const void *entry);
const void *idt_irq_stub(uint8_t vector);
void idt_load(void);
void idt_load_empty(void);

/* smp.c */
int smp_run_test(void);
void smp_ap_main(uint32_t slot);

/* ioapic.c: interrupt delivery, vectors IDT_IRQ_VECTOR_BASE.. */
void irq_dispatch(uint64_t vector);

/* blk_tests.c: runs the scenario if name is a blk-* one; returns 1 with
 * *code set to the exit code, or 0 if the name is not a blk scenario. */
int blk_test_run(const char *name, size_t len, int *code);
/* demand_tests.c: duty and touch (CPL3 workloads for the demand metrics),
 * same contract as blk_test_run. */
int demand_test_run(const char *name, size_t len, int *code);
/* snap_tests.c: the snap-compute scenario; returns the exit code. */
int snap_compute(void);
/* snap_tests.c: snap-dirty, the diff-snapshot scenario (never returns). */
int snap_dirty(void);
/* snap_tests.c: snap-random, clones reseed from the host after a restore. */
int snap_random(void);
/* net_tests.c: the same for the net-* scenarios. */
int net_test_run(const char *name, size_t len, int *code);

/* cmdline.c */
extern const char *guest_cmdline;
extern uint32_t boot_start_info_paddr;     /* start.S */
__attribute__((noreturn)) void guest_exit(int code);
int cmdline_next(const char **cursor, const char *key, const char **val,
		 size_t *len);
int cmdline_find(const char *key, const char **val, size_t *len);
uint64_t cmdline_u64(const char *key, uint64_t def);
/* main.c (or another program's main), called by start.S */
int main(uint32_t start_info_paddr);

#endif /* MOTE_GUEST_H */
