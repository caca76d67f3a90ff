/* Boot-time structures: memory map, command line, zero page, PVH start
 * info, boot GDT and page tables; plus the kernel-format dispatch and the
 * initrd loader. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asm/bootparam.h>

#include "vmm/boot.h"
#include "vmm/layout.h"

int boot_load_kernel(int fd, struct guest_mem *mem, enum boot_protocol want,
		     struct boot_info *bi, char *err, size_t errlen)
{
	struct stat st;
	uint8_t magic[4];

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "stat: %s", strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "not a regular file (a directory or device?)");
		return -EINVAL;
	}
	if (st.st_size < (off_t)sizeof(magic)) {
		snprintf(err, errlen, "file is %lld bytes: empty or truncated", (long long)st.st_size);
		return -ENOEXEC;
	}
	if (pread(fd, magic, sizeof(magic), 0) != (ssize_t)sizeof(magic)) {
		snprintf(err, errlen, "read: %s", strerror(errno));
		return -EIO;
	}
	if (memcmp(magic, "\x7f" "ELF", 4) == 0)
		return elf_load(fd, (uint64_t)st.st_size, mem, want, bi, err, errlen);
	return bzimage_load(fd, (uint64_t)st.st_size, mem, want, bi, err, errlen);
}

int boot_load_initrd(int fd, struct guest_mem *mem, struct boot_info *bi, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "initrd is not a regular file");
		return -EINVAL;
	}
	uint64_t size = (uint64_t)st.st_size;
	uint64_t top = guest_mem_low_end(mem);
	if (top > bi->initrd_addr_max + 1)
		top = bi->initrd_addr_max + 1;
	uint64_t bottom = (bi->kernel_end + 0xfff) & ~0xfffULL;
	if (size == 0 || size > top || ((top - size) & ~0xfffULL) < bottom) {
		snprintf(err, errlen, "initrd of %llu bytes does not fit between the kernel end %#llx "
			 "and %#llx; give the VM more memory (--mem-mib)",
			 (unsigned long long)size, (unsigned long long)bottom, (unsigned long long)top);
		return -E2BIG;
	}
	uint64_t gpa = (top - size) & ~0xfffULL;
	uint8_t *dst = guest_mem_gpa_to_hva(mem, gpa, size);
	if (!dst)
		return -EFAULT;
	uint64_t done = 0;
	while (done < size) {
		ssize_t n = pread(fd, dst + done, size - done, (off_t)done);
		if (n <= 0) {
			snprintf(err, errlen, "reading initrd: %s", n ? strerror(errno) : "short read");
			return -EIO;
		}
		done += (uint64_t)n;
	}
	bi->initrd_gpa = gpa;
	bi->initrd_size = size;
	return 0;
}

int boot_build_memmap(const struct guest_mem *mem, struct mem_range *out, unsigned max)
{
	struct mem_range r[4];
	unsigned n = 0;
	uint64_t low_end = guest_mem_low_end(mem);

	r[n++] = (struct mem_range){ 0, LAYOUT_EBDA_ADDR, MEM_RANGE_RAM };
	/* EBDA (our MP table) and the legacy VGA/BIOS area. */
	r[n++] = (struct mem_range){ LAYOUT_EBDA_ADDR, LAYOUT_HIMEM_START - LAYOUT_EBDA_ADDR,
				     MEM_RANGE_RESERVED };
	if (low_end > LAYOUT_HIMEM_START)
		r[n++] = (struct mem_range){ LAYOUT_HIMEM_START, low_end - LAYOUT_HIMEM_START,
					     MEM_RANGE_RAM };
	for (unsigned i = 1; i < mem->nr_regions; i++)
		r[n++] = (struct mem_range){ mem->regions[i].gpa, mem->regions[i].size, MEM_RANGE_RAM };
	if (n > max)
		return -ENOSPC;
	memcpy(out, r, n * sizeof(r[0]));
	return (int)n;
}

int boot_write_cmdline(struct guest_mem *mem, const struct boot_info *bi, const char *cmdline,
		       char *err, size_t errlen)
{
	size_t len = strlen(cmdline);

	if (len > bi->cmdline_max) {
		snprintf(err, errlen, "kernel command line is %zu bytes; this kernel accepts at most %u",
			 len, bi->cmdline_max);
		return -E2BIG;
	}
	return guest_mem_write(mem, LAYOUT_CMDLINE_ADDR, cmdline, len + 1);
}

int boot_write_zero_page(struct guest_mem *mem, const struct boot_info *bi, uint32_t cmdline_len)
{
	struct boot_params *bp = guest_mem_gpa_to_hva(mem, LAYOUT_ZERO_PAGE_ADDR, sizeof(*bp));
	struct mem_range ranges[BOOT_MAX_MEM_RANGES];
	int n;

	if (!bp)
		return -EFAULT;
	memset(bp, 0, sizeof(*bp));
	if (bi->setup_header_len)
		memcpy((uint8_t *)bp + SETUP_HEADER_OFFSET, bi->setup_header, bi->setup_header_len);
	struct setup_header *h = &bp->hdr;
	if (!bi->setup_header_len) {
		/* vmlinux has no setup header: fill in what the 64-bit entry reads. */
		h->boot_flag = 0xaa55;
		h->header = 0x53726448;
		h->kernel_alignment = 0x1000000;
	}
	h->type_of_loader = 0xff; /* undefined boot loader */
	h->loadflags |= CAN_USE_HEAP | LOADED_HIGH;
	h->heap_end_ptr = 0xfe00;
	h->cmd_line_ptr = (uint32_t)LAYOUT_CMDLINE_ADDR;
	h->cmdline_size = cmdline_len;
	if (bi->initrd_size) {
		h->ramdisk_image = (uint32_t)bi->initrd_gpa;
		h->ramdisk_size = (uint32_t)bi->initrd_size;
	}

	n = boot_build_memmap(mem, ranges, BOOT_MAX_MEM_RANGES);
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		bp->e820_table[i].addr = ranges[i].addr;
		bp->e820_table[i].size = ranges[i].size;
		bp->e820_table[i].type = ranges[i].type;
	}
	bp->e820_entries = (uint8_t)n;
	return 0;
}

/* Public PVH ABI (xen/include/public/arch-x86/hvm/start_info.h). */
#define HVM_START_MAGIC 0x336ec578
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};
struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};
struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};
_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info layout");
_Static_assert(LAYOUT_PVH_INFO_ADDR + sizeof(struct hvm_start_info) <= LAYOUT_PVH_MEMMAP_ADDR,
	       "PVH memmap overlaps start info");
_Static_assert(LAYOUT_PVH_MEMMAP_ADDR + BOOT_MAX_MEM_RANGES * sizeof(struct hvm_memmap_table_entry)
	       <= LAYOUT_PVH_MODLIST_ADDR, "PVH modlist overlaps memmap");

int boot_write_pvh_info(struct guest_mem *mem, const struct boot_info *bi)
{
	struct mem_range ranges[BOOT_MAX_MEM_RANGES];
	struct hvm_start_info *si = guest_mem_gpa_to_hva(mem, LAYOUT_PVH_INFO_ADDR, sizeof(*si));
	struct hvm_memmap_table_entry *mm;
	int n = boot_build_memmap(mem, ranges, BOOT_MAX_MEM_RANGES);

	if (!si || n < 0)
		return n < 0 ? n : -EFAULT;
	mm = guest_mem_gpa_to_hva(mem, LAYOUT_PVH_MEMMAP_ADDR, (uint64_t)n * sizeof(*mm));
	if (!mm)
		return -EFAULT;
	for (int i = 0; i < n; i++)
		mm[i] = (struct hvm_memmap_table_entry){ ranges[i].addr, ranges[i].size, ranges[i].type, 0 };
	*si = (struct hvm_start_info){
		.magic = HVM_START_MAGIC,
		.version = 1,
		.cmdline_paddr = LAYOUT_CMDLINE_ADDR,
		.memmap_paddr = LAYOUT_PVH_MEMMAP_ADDR,
		.memmap_entries = (uint32_t)n,
	};
	if (bi->initrd_size) {
		struct hvm_modlist_entry mod = { .paddr = bi->initrd_gpa, .size = bi->initrd_size };
		int ret = guest_mem_write(mem, LAYOUT_PVH_MODLIST_ADDR, &mod, sizeof(mod));
		if (ret)
			return ret;
		si->nr_modules = 1;
		si->modlist_paddr = LAYOUT_PVH_MODLIST_ADDR;
	}
	return 0;
}

#define PTE_PRESENT 0x1ULL
#define PTE_RW      0x2ULL
#define PTE_PS      0x80ULL

int boot_write_gdt_and_page_tables(struct guest_mem *mem)
{
	/* Flat descriptors: 64-bit code, data, a TSS (so VMX sees a usable
	 * TR), 32-bit code for the PVH entry. */
	const uint64_t gdt[6] = {
		0,
		0,
		0x00af9b000000ffffULL, /* 0x10 code64 */
		0x00cf93000000ffffULL, /* 0x18 data */
		0x00808b000000ffffULL, /* 0x20 TSS */
		0x00cf9b000000ffffULL, /* 0x28 code32 */
	};
	int ret = guest_mem_write(mem, LAYOUT_GDT_ADDR, gdt, sizeof(gdt));
	if (ret)
		return ret;

	uint64_t *pml4 = guest_mem_gpa_to_hva(mem, LAYOUT_PML4_ADDR, 4096);
	uint64_t *pdpt = guest_mem_gpa_to_hva(mem, LAYOUT_PDPT_ADDR, 4096);
	uint64_t *pd = guest_mem_gpa_to_hva(mem, LAYOUT_PD_ADDR, 4 * 4096);
	if (!pml4 || !pdpt || !pd)
		return -EFAULT;
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = LAYOUT_PDPT_ADDR | PTE_PRESENT | PTE_RW;
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (LAYOUT_PD_ADDR + i * 4096) | PTE_PRESENT | PTE_RW;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | PTE_PRESENT | PTE_RW | PTE_PS;
	return 0;
}
