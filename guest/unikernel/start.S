/*
 * start.S - the only assembly of the mote test unikernel:
 *   - the PVH ELF note (XEN_ELFNOTE_PHYS32_ENTRY),
 *   - the GDT and the statically built identity page tables,
 *   - the 32-bit PVH entry and the 32 -> 64-bit switch shared by BSP and APs,
 *   - the real-mode AP trampoline (copied to 0x8000 at run time),
 *   - the 32 exception entry stubs and 16 interrupt stubs (0x40-0x4f),
 *   - the stacks.
 *
 * Guest CPL0 code is emulated on the development machines (~260 ns per
 * instruction), so nothing here loops over data: the page tables are
 * emitted by the assembler, not built at boot.
 */

#define GDT_CODE64 0x08
#define GDT_DATA   0x10
#define GDT_CODE32 0x18

#define CR0_PE     0x00000001
#define CR0_PG     0x80000000
#define CR4_PAE    0x00000020
#define MSR_EFER   0xc0000080
#define EFER_LME   0x00000100

#define SMP_TRAMPOLINE_PADDR 0x8000
#define SMP_MAX_CPUS         32
#define AP_STACK_SHIFT       12          /* 4 KiB per AP */
#define BSP_STACK_SIZE       16384

/* Address a trampoline label will have once copied to SMP_TRAMPOLINE_PADDR. */
#define TRAMP_ADDR(label) ((label) - smp_trampoline_start + SMP_TRAMPOLINE_PADDR)

/* ------------------------------------------------------------------ */
/* PVH note: name "Xen", type 18, desc = 32-bit physical entry.        */
/* ------------------------------------------------------------------ */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4                 /* namesz: "Xen\0" */
	.long 4                 /* descsz: 32-bit entry address */
	.long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long pvh_start32
	/*
	 * An empty note (all zero) right after the desc: QEMU 7.2 reads the
	 * desc of a 64-bit ELF as 8 bytes, so the 4 bytes after it must be 0.
	 * Note walkers see a harmless note with no name, no desc, type 0.
	 */
	.long 0, 0, 0

/* ------------------------------------------------------------------ */
/* 32-bit entry (PVH): protected mode, paging off, %ebx = start_info.  */
/* ------------------------------------------------------------------ */
	.section .text.boot, "ax"
	.code32
	.globl pvh_start32
pvh_start32:
	cli
	cld
	movl %ebx, boot_start_info_paddr
	lgdt gdt_descriptor
	movl $start64_bsp, %edi
	/* fall through */

/*
 * Enter long mode. 32-bit protected mode, paging off, our GDT loaded.
 * %edi = 64-bit code to continue at. Used by the BSP and by every AP.
 */
long_mode_enter:
	movw $GDT_DATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	orl $(CR0_PG | CR0_PE), %eax
	movl %eax, %cr0
	ljmp $GDT_CODE64, $long_mode_dispatch

	.code64
long_mode_dispatch:
	/* The upper halves of GPRs are undefined after the mode switch. */
	movl %edi, %edi
	jmp *%rdi

start64_bsp:
	movl $bsp_stack_top, %esp
	xorl %ebp, %ebp
	movl boot_start_info_paddr(%rip), %edi
	call main
	jmp halt_forever

/* Each AP takes the next stack slot with an atomic counter. */
start64_ap:
	movl $1, %eax
	lock xaddl %eax, ap_next_slot(%rip)
	cmpl $SMP_MAX_CPUS, %eax
	jae halt_forever
	movl %eax, %edi
	incl %eax
	shll $AP_STACK_SHIFT, %eax
	leaq ap_stacks(%rip), %rsp
	addq %rax, %rsp
	xorl %ebp, %ebp
	call smp_ap_main
	/* fall through */

	.globl halt_forever
halt_forever:
	cli
	hlt
	jmp halt_forever

/* ------------------------------------------------------------------ */
/* AP trampoline: copied to 0x8000, entered in real mode at 0800:0000. */
/* real -> protected here, then long_mode_enter does protected -> long */
/* ------------------------------------------------------------------ */
	.code16
	.globl smp_trampoline_start, smp_trampoline_end
smp_trampoline_start:
	cli
	cld
	xorw %ax, %ax
	movw %ax, %ds
	lgdtl TRAMP_ADDR(tramp_gdtr)
	movl %cr0, %eax
	orl $CR0_PE, %eax
	movl %eax, %cr0
	movl $start64_ap, %edi
	ljmpl $GDT_CODE32, $long_mode_enter
	.balign 4
tramp_gdtr:
	.word gdt_end - gdt - 1
	.long gdt
smp_trampoline_end:

/* ------------------------------------------------------------------ */
/* Exception stubs: 16 bytes each, so idt.c finds stub N at +16*N.     */
/* Vectors without a CPU error code push 0 to keep one frame layout.   */
/* ------------------------------------------------------------------ */
	.code64
	.macro exc_stub vec
	.balign 16
	.if (\vec == 8) || ((\vec >= 10) && (\vec <= 14)) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	pushq $0
	.endif
	pushq $\vec
	jmp exc_common
	.endm

	.balign 16
	.globl exc_stubs
exc_stubs:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	exc_stub \v
	.endr

/*
 * Interrupt stubs for vectors 0x40-0x4f (IDT_IRQ_VECTOR_BASE in guest.h):
 * same frame as an exception without error code, so exc_common serves
 * both; idt_handle_exception passes vectors >= 32 to irq_dispatch().
 */
	.balign 16
	.globl irq_stubs
irq_stubs:
	.irp v, 0x40,0x41,0x42,0x43,0x44,0x45,0x46,0x47,0x48,0x49,0x4a,0x4b,0x4c,0x4d,0x4e,0x4f
	.balign 16
	pushq $0
	pushq $\v
	jmp exc_common
	.endr

/* Save the caller-saved registers; C saves the rest. Frame: struct exc_frame. */
exc_common:
	pushq %rax
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	movq %rsp, %rdi
	cld
	call idt_handle_exception
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rax
	addq $16, %rsp          /* vector and error code */
	iretq

/* ------------------------------------------------------------------ */
/* Data: GDT (accessed bits preset so the CPU never writes it back).   */
/* ------------------------------------------------------------------ */
	.section .data, "aw"
	.balign 16
gdt:
	.quad 0
	.quad 0x00af9b000000ffff        /* 0x08: 64-bit code */
	.quad 0x00cf93000000ffff        /* 0x10: flat data */
	.quad 0x00cf9b000000ffff        /* 0x18: 32-bit code (AP trampoline) */
gdt_end:

	.balign 4
gdt_descriptor:
	.word gdt_end - gdt - 1
	.long gdt

	.balign 4
	.globl boot_start_info_paddr
boot_start_info_paddr:
	.long 0
ap_next_slot:
	.long 0

/* ------------------------------------------------------------------ */
/* Page tables: identity map 0-4 GiB with 2 MiB pages, emitted by the  */
/* assembler. Accessed/dirty bits preset: no page-walk write-backs.    */
/* 0xC0000000-0xFFFFFFFF (boot timer, LAPIC, IOAPIC, virtio-mmio) is   */
/* mapped uncached (PCD|PWT).                                          */
/* ------------------------------------------------------------------ */
#define PTE_TABLE   0x23        /* P | RW | A */
#define PDE_2M_WB   0xe3        /* P | RW | A | D | PS */
#define PDE_2M_UC   0xfb        /* P | RW | PWT | PCD | A | D | PS */

	.section .data.pagetables, "aw"
	.balign 4096
pml4:
	.quad pdpt + PTE_TABLE
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x0000 + PTE_TABLE
	.quad pd + 0x1000 + PTE_TABLE
	.quad pd + 0x2000 + PTE_TABLE
	.quad pd + 0x3000 + PTE_TABLE
	.fill 508, 8, 0
pd:
	.set page, 0
	.rept 1536                      /* 0 - 3 GiB: write-back */
	.quad page + PDE_2M_WB
	.set page, page + 0x200000
	.endr
	.rept 512                       /* 3 - 4 GiB: uncached */
	.quad page + PDE_2M_UC
	.set page, page + 0x200000
	.endr

/* ------------------------------------------------------------------ */
/* Stacks: no file space; the ELF loader provides zeroed memory.       */
/* ------------------------------------------------------------------ */
	.section .stack, "aw", @nobits
	.balign 4096
bsp_stack:
	.skip BSP_STACK_SIZE
bsp_stack_top:
ap_stacks:
	.skip SMP_MAX_CPUS << AP_STACK_SHIFT

	.section .note.GNU-stack, "", @progbits
