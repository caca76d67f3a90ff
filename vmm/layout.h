/* Guest physical memory layout of an x86_64 mote VM.
 *
 * Low memory follows the PC conventions Linux and PVH guests expect; the
 * MMIO hole sits at 3 GiB so 32-bit MMIO addresses (boot timer, virtio-mmio,
 * IOAPIC, LAPIC) never collide with RAM. RAM above the hole continues at 4 GiB.
 */
#ifndef MOTE_VMM_LAYOUT_H
#define MOTE_VMM_LAYOUT_H

#define LAYOUT_GDT_ADDR        0x500ULL    /* boot GDT (Linux 64-bit boot, PVH) */
#define LAYOUT_PVH_INFO_ADDR   0x6000ULL   /* struct hvm_start_info */
#define LAYOUT_PVH_MEMMAP_ADDR 0x6040ULL   /* hvm_memmap_table_entry[] after it */
#define LAYOUT_PVH_MODLIST_ADDR 0x6f00ULL  /* hvm_modlist_entry for the initrd */
#define LAYOUT_ZERO_PAGE_ADDR  0x7000ULL   /* Linux struct boot_params */
#define LAYOUT_BOOT_STACK      0x8ff0ULL   /* initial RSP for the Linux 64-bit entry */
#define LAYOUT_PML4_ADDR       0x9000ULL   /* boot page tables: PML4, PDPT, 4 PDs */
#define LAYOUT_PDPT_ADDR       0xa000ULL
#define LAYOUT_PD_ADDR         0xb000ULL   /* 4 pages: identity map 0-4 GiB, 2 MiB pages */
#define LAYOUT_CMDLINE_ADDR    0x20000ULL
#define LAYOUT_CMDLINE_MAX     0x10000ULL  /* 64 KiB, also bounded by the kernel's own limit */
#define LAYOUT_EBDA_ADDR       0x9fc00ULL  /* MP table lives here, reserved in e820 */
#define LAYOUT_HIMEM_START     0x100000ULL /* 1 MiB: where kernels load */

#define LAYOUT_MMIO_HOLE_START 0xc0000000ULL /* 3 GiB */
#define LAYOUT_MMIO_HOLE_END   0x100000000ULL
#define LAYOUT_BOOT_TIMER_ADDR 0xc0000000ULL /* Firecracker-compatible boot timer */
#define LAYOUT_VIRTIO_MMIO_BASE 0xc0001000ULL /* 4 KiB windows for virtio-mmio */
#define LAYOUT_IOAPIC_ADDR     0xfec00000ULL
#define LAYOUT_LAPIC_ADDR      0xfee00000ULL
#define LAYOUT_IDENTITY_MAP_ADDR 0xfffbc000ULL /* KVM_SET_IDENTITY_MAP_ADDR, 1 page */
#define LAYOUT_TSS_ADDR        0xfffbd000ULL /* KVM_SET_TSS_ADDR, 3 pages */

/* GDT selectors. Linux's 64-bit boot protocol wants __BOOT_CS=0x10 and
 * __BOOT_DS=0x18; PVH wants a flat 32-bit code segment. */
#define GDT_SEL_CODE64 0x10
#define GDT_SEL_DATA   0x18
#define GDT_SEL_TSS    0x20
#define GDT_SEL_CODE32 0x28

#define PORT_COM1        0x3f8
#define IRQ_COM1         4
#define PORT_I8042_DATA  0x60
#define PORT_I8042_CMD   0x64
#define PORT_DEBUG_EXIT  0xf4

#endif
