/*
 * user.c - ring-3 support: GDT with user segments and a TSS, user-page
 * mapping, entering CPL3 with iretq, and user calls through #UD. See
 * user.h for why it is built this way.
 */
#include "guest.h"
#include "user.h"

#define VECTOR_UD 6
#define PTE_USER  0x4ULL
#define PTE_PRESENT 0x1ULL
#define PTE_ADDR  0x000ffffffffff000ULL
#define PAGE_2M   0x200000ULL
#define USER_KSTACK_SIZE 16384

struct tss64 {
	uint32_t reserved0;
	uint64_t rsp0, rsp1, rsp2;
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

struct gdt_pointer {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

extern char __image_end[];

static struct tss64 user_tss __attribute__((aligned(16)));
static uint8_t user_kstack[USER_KSTACK_SIZE] __attribute__((aligned(16)));

/* Accessed bits preset (as in start.S): the CPU never writes them back. */
static uint64_t user_gdt[10] __attribute__((aligned(16))) = {
	0,
	0x00af9b000000ffffULL,  /* 0x08 kernel code64 */
	0x00cf93000000ffffULL,  /* 0x10 kernel data */
	0x00cf9b000000ffffULL,  /* 0x18 code32 (the AP trampoline's) */
	0x00cffb000000ffffULL,  /* 0x20 user code32 (unused) */
	0x00cff3000000ffffULL,  /* 0x28 user data */
	0x00affb000000ffffULL,  /* 0x30 user code64 */
	0, 0,                   /* 0x38 TSS, 16 bytes, filled by user_init */
	0,
};

static int user_ready;
static user_call_fn user_call_handler;
static user_fault_fn user_fault_handler;
static user_irq_fn user_irq_hook;
/* RFLAGS user code starts with: bit 1 (reserved, 1), IF as set. */
uint64_t user_rflags = 0x2;
/* user_run's CPL0 stack pointer, for USER_CALL_EXIT to return there. */
uint64_t user_kernel_rsp;

/*
 * user_run(fn, arg, stack_top): saves the callee-saved registers and rsp,
 * then iretq to user_trampoline at CPL3 with IOPL 0 (port I/O, cli, sti
 * and hlt at CPL3 raise #GP) and IF=0 unless user_set_interrupts(1).
 * user_resume_kernel(value) restores them and returns value from user_run.
 */
__asm__(
	".text\n"
	".globl user_run\n"
	"user_run:\n"
	"	pushq %rbp\n"
	"	pushq %rbx\n"
	"	pushq %r12\n"
	"	pushq %r13\n"
	"	pushq %r14\n"
	"	pushq %r15\n"
	"	movq %rsp, user_kernel_rsp(%rip)\n"
	"	movq %rdi, %r12\n"            /* fn, for the trampoline */
	"	movq %rsi, %rdi\n"            /* arg */
	"	andq $-16, %rdx\n"
	/* Data segments DPL 3: valid at CPL3 and CPL0 (iretq would null a
	 * DPL 0 one), as Linux keeps __USER_DS in DS and ES. */
	"	movl $0x2b, %eax\n"
	"	movl %eax, %ds\n"
	"	movl %eax, %es\n"
	"	pushq $0x2b\n"                /* ss: USER_SEL_UDATA */
	"	pushq %rdx\n"                 /* rsp */
	"	pushq user_rflags(%rip)\n"    /* rflags: IOPL=0, IF as set */
	"	pushq $0x33\n"                /* cs: USER_SEL_UCODE */
	"	leaq user_trampoline(%rip), %rax\n"
	"	pushq %rax\n"
	"	iretq\n"
	"user_trampoline:\n"
	"	callq *%r12\n"
	"	movq %rax, %rdi\n"
	"	xorl %eax, %eax\n"            /* USER_CALL_EXIT */
	"	ud2\n"
	".globl user_resume_kernel\n"
	"user_resume_kernel:\n"
	"	movq user_kernel_rsp(%rip), %rsp\n"
	"	movq %rdi, %rax\n"
	"	popq %r15\n"
	"	popq %r14\n"
	"	popq %r13\n"
	"	popq %r12\n"
	"	popq %rbx\n"
	"	popq %rbp\n"
	"	retq\n");

int user_map(uint64_t paddr, uint64_t len)
{
	uint64_t cr3, end;

	if (len == 0 || paddr + len < paddr || paddr + len > (4ULL << 30))
		return -EINVAL;
	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	uint64_t *pml4 = (uint64_t *)(uintptr_t)(cr3 & PTE_ADDR);
	uint64_t *pdpt = (uint64_t *)(uintptr_t)(pml4[0] & PTE_ADDR);
	pml4[0] |= PTE_USER;
	end = paddr + len;
	for (uint64_t a = paddr & ~(PAGE_2M - 1); a < end; a += PAGE_2M) {
		uint64_t *pdpte = &pdpt[a >> 30];
		if (!(*pdpte & PTE_PRESENT))
			return -EINVAL;
		*pdpte |= PTE_USER;
		uint64_t *pd = (uint64_t *)(uintptr_t)(*pdpte & PTE_ADDR);
		pd[(a >> 21) & 511] |= PTE_USER;
	}
	/* Reloading CR3 flushes the TLB (no global pages here). */
	__asm__ volatile("mov %0, %%cr3" : : "r"(cr3) : "memory");
	return 0;
}

int user_init(void)
{
	uint64_t base = (uint64_t)(uintptr_t)&user_tss;
	uint64_t limit = sizeof(user_tss) - 1;

	if (user_ready)
		return 0;
	user_tss.rsp0 = (uint64_t)(uintptr_t)(user_kstack + sizeof(user_kstack));
	user_tss.iomap_base = sizeof(user_tss); /* no I/O bitmap */
	/* 64-bit available TSS (type 9), present, DPL 0. */
	user_gdt[7] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ULL << 40) |
		      (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	user_gdt[8] = base >> 32;
	struct gdt_pointer gp = { .limit = sizeof(user_gdt) - 1,
				  .base = (uint64_t)(uintptr_t)user_gdt };
	/* Selectors 0x08 and 0x10 keep their meaning: CS and SS stay valid. */
	__asm__ volatile("lgdt %0" : : "m"(gp) : "memory");
	__asm__ volatile("ltr %w0" : : "r"((uint16_t)USER_SEL_TSS) : "memory");
	user_map(0x100000, (uint64_t)(uintptr_t)__image_end - 0x100000);
	user_ready = 1;
	return 0;
}

void user_set_call_handler(user_call_fn fn)
{
	user_call_handler = fn;
}

void user_set_fault_handler(user_fault_fn fn)
{
	user_fault_handler = fn;
}

void user_set_irq_hook(user_irq_fn fn)
{
	user_irq_hook = fn;
}

void user_set_interrupts(int on)
{
	user_rflags = on ? 0x202 : 0x2;
}

int user_handle_exception(struct exc_frame *f)
{
	const uint8_t *insn = (const uint8_t *)(uintptr_t)f->rip;

	if ((f->cs & 3) != 3)
		return 0;
	if (f->vector >= 32) {
		/* An interrupt while user code ran (user_set_interrupts). */
		irq_dispatch(f->vector);
		if (user_irq_hook) {
			uint64_t stop = user_irq_hook();
			if (stop)
				user_resume_kernel(stop);
		}
		return 1;
	}
	/* The CPU decoded the ud2 at rip, so reading it here cannot fault. */
	if (f->vector != VECTOR_UD || insn[0] != 0x0f || insn[1] != 0x0b) {
		if (user_fault_handler)
			user_resume_kernel(user_fault_handler(f));
		return 0;
	}
	if (f->rax == USER_CALL_EXIT)
		user_resume_kernel(f->rdi);
	f->rax = f->rax >= USER_CALL_FIRST_FREE && user_call_handler
			 ? user_call_handler(f->rax, f->rdi, f->rsi)
			 : (uint64_t)-EINVAL;
	f->rip += 2;
	return 1;
}
