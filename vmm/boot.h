/* Loading a guest kernel and building the boot-time structures it reads.
 *
 * Three formats: an ELF with a Xen PVH note (unikernels, and Linux vmlinux),
 * an ELF without one (Linux vmlinux, 64-bit boot protocol) and a bzImage
 * (64-bit boot protocol). Every loader treats the image as hostile: each
 * offset and size is checked against the file and against guest RAM. */
#ifndef MOTE_VMM_BOOT_H
#define MOTE_VMM_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/mem.h"

enum boot_protocol {
	BOOT_PROTO_AUTO,    /* PVH if the ELF has the note, else Linux 64-bit */
	BOOT_PROTO_PVH,
	BOOT_PROTO_LINUX64,
};

enum kernel_format { KERNEL_ELF, KERNEL_BZIMAGE };

#define SETUP_HEADER_OFFSET 0x1f1
#define SETUP_HEADER_MAX    (0x280 - SETUP_HEADER_OFFSET)

struct boot_info {
	enum kernel_format format;
	enum boot_protocol protocol; /* resolved: PVH or LINUX64 */
	uint64_t entry;              /* guest-physical entry point */
	uint64_t kernel_start;       /* lowest loaded guest-physical byte */
	uint64_t kernel_end;         /* one past the highest loaded byte */
	uint32_t cmdline_max;        /* longest command line the kernel accepts, without NUL */
	uint64_t initrd_addr_max;    /* highest byte the initrd may occupy */
	uint64_t initrd_gpa;
	uint64_t initrd_size;
	/* bzImage only: the setup header, copied into the zero page. */
	uint8_t setup_header[SETUP_HEADER_MAX];
	uint32_t setup_header_len;
};

#define BOOT_ERR_LEN 256

/* Loads the kernel in fd into guest memory. On failure returns -errno and
 * leaves a message naming what was wrong in err. */
int boot_load_kernel(int fd, struct guest_mem *mem, enum boot_protocol want,
		     struct boot_info *bi, char *err, size_t errlen);
int elf_load(int fd, uint64_t file_size, struct guest_mem *mem, enum boot_protocol want,
	     struct boot_info *bi, char *err, size_t errlen);
int bzimage_load(int fd, uint64_t file_size, struct guest_mem *mem, enum boot_protocol want,
		 struct boot_info *bi, char *err, size_t errlen);

/* Finds XEN_ELFNOTE_PHYS32_ENTRY in a PT_NOTE segment's bytes.
 * 0 and *entry set; -ENOENT if absent; -EINVAL if the notes are malformed. */
int elf_find_pvh_entry(const uint8_t *notes, size_t len, uint64_t *entry);

/* Places the initrd in fd at the top of low RAM, page-aligned, above the
 * kernel and below bi->initrd_addr_max. */
int boot_load_initrd(int fd, struct guest_mem *mem, struct boot_info *bi, char *err, size_t errlen);

/* Memory map shared by e820 (zero page) and the PVH memmap. */
enum mem_range_type { MEM_RANGE_RAM = 1, MEM_RANGE_RESERVED = 2 };
struct mem_range {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};
#define BOOT_MAX_MEM_RANGES 8
/* Returns the number of ranges written (<= max) or -ENOSPC. */
int boot_build_memmap(const struct guest_mem *mem, struct mem_range *out, unsigned max);

/* Writes the command line at LAYOUT_CMDLINE_ADDR; -E2BIG (with a message)
 * if it is longer than bi->cmdline_max. */
int boot_write_cmdline(struct guest_mem *mem, const struct boot_info *bi, const char *cmdline,
		       char *err, size_t errlen);

/* Linux 64-bit boot protocol: zero page with setup header and e820. */
int boot_write_zero_page(struct guest_mem *mem, const struct boot_info *bi, uint32_t cmdline_len);
/* PVH: struct hvm_start_info, memmap and module list. */
int boot_write_pvh_info(struct guest_mem *mem, const struct boot_info *bi);
/* Boot GDT and identity page tables for 0-4 GiB. */
int boot_write_gdt_and_page_tables(struct guest_mem *mem);

/* Intel MultiProcessor table (spec 1.4) at LAYOUT_EBDA_ADDR, so guests find
 * CPUs, the IOAPIC and ISA IRQ routing without ACPI. */
int mptable_write(struct guest_mem *mem, unsigned nr_cpus);
#define MPTABLE_MAX_CPUS 32

#endif
