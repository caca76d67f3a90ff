/* Boot-time structures: memory map, zero page, PVH start info, command line,
 * initrd placement, GDT and identity page tables. Everything is read back
 * from guest memory through the public ABI structs (<asm/bootparam.h>, the
 * Xen PVH start_info layout), not through mote's own definitions. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include <asm/bootparam.h>

#include "vmm/boot.h"
#include "vmm/layout.h"
#include "vmm/mem.h"

#define MIB (1ULL << 20)
#define GIB (1ULL << 30)
#define RAM_SIZE (64 * MIB)
#define BIG_SIZE (4 * GIB + GIB / 2)

/* xen/include/public/arch-x86/hvm/start_info.h */
#define XEN_HVM_START_MAGIC_VALUE 0x336ec578
struct xen_hvm_start_info {
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
struct xen_hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};
struct xen_hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

struct fixture {
	struct guest_mem mem;
	struct boot_info bi;
	char err[BOOT_ERR_LEN];
};

static int setup_ram(void **state, uint64_t size)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || guest_mem_init(&f->mem, size) != 0) {
		free(f);
		return -1;
	}
	/* What a loaded ELF kernel would leave. */
	f->bi.format = KERNEL_ELF;
	f->bi.kernel_start = 0x100000;
	f->bi.kernel_end = 0x200000;
	f->bi.cmdline_max = 2047;
	f->bi.initrd_addr_max = LAYOUT_MMIO_HOLE_START - 1;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_ram(state, RAM_SIZE);
}

static int setup_1m(void **state)
{
	return setup_ram(state, MIB);
}

static int setup_big(void **state)
{
	return setup_ram(state, BIG_SIZE);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	guest_mem_destroy(&f->mem);
	free(f);
	return 0;
}

static void *gpa(struct fixture *f, uint64_t addr, uint64_t len)
{
	void *p = guest_mem_gpa_to_hva(&f->mem, addr, len);

	assert_non_null(p);
	return p;
}

static void assert_range(const struct mem_range *r, uint64_t addr, uint64_t size, uint32_t type)
{
	assert_int_equal(r->addr, addr);
	assert_int_equal(r->size, size);
	assert_int_equal(r->type, type);
}

static int memfd_pattern(uint64_t size)
{
	int fd = memfd_create("mote-test-initrd", MFD_CLOEXEC);
	uint8_t chunk[4096];

	assert_true(fd >= 0);
	for (uint64_t off = 0; off < size; off += sizeof(chunk)) {
		size_t n = size - off < sizeof(chunk) ? (size_t)(size - off) : sizeof(chunk);

		for (size_t i = 0; i < n; i++)
			chunk[i] = (uint8_t)((off + i) * 31 + 7);
		assert_int_equal(write(fd, chunk, n), (ssize_t)n);
	}
	return fd;
}

/* --- memory map ------------------------------------------------------------ */

static void test_memmap_small(void **state)
{
	struct fixture *f = *state;
	struct mem_range r[BOOT_MAX_MEM_RANGES];

	assert_int_equal(boot_build_memmap(&f->mem, r, BOOT_MAX_MEM_RANGES), 3);
	assert_range(&r[0], 0, LAYOUT_EBDA_ADDR, MEM_RANGE_RAM);
	/* The EBDA, where the MP table lives, through the BIOS area. */
	assert_range(&r[1], LAYOUT_EBDA_ADDR, 0x100000 - LAYOUT_EBDA_ADDR, MEM_RANGE_RESERVED);
	assert_range(&r[2], 0x100000, RAM_SIZE - 0x100000, MEM_RANGE_RAM);
}

static void test_memmap_one_mib(void **state)
{
	struct fixture *f = *state;
	struct mem_range r[BOOT_MAX_MEM_RANGES];

	/* No RAM above 1 MiB: no empty range for it. */
	assert_int_equal(boot_build_memmap(&f->mem, r, BOOT_MAX_MEM_RANGES), 2);
	assert_range(&r[0], 0, LAYOUT_EBDA_ADDR, MEM_RANGE_RAM);
	assert_range(&r[1], LAYOUT_EBDA_ADDR, 0x100000 - LAYOUT_EBDA_ADDR, MEM_RANGE_RESERVED);
}

static void test_memmap_above_hole(void **state)
{
	struct fixture *f = *state;
	struct mem_range r[BOOT_MAX_MEM_RANGES];

	assert_int_equal(boot_build_memmap(&f->mem, r, BOOT_MAX_MEM_RANGES), 4);
	assert_range(&r[2], 0x100000, LAYOUT_MMIO_HOLE_START - 0x100000, MEM_RANGE_RAM);
	assert_range(&r[3], LAYOUT_MMIO_HOLE_END, BIG_SIZE - LAYOUT_MMIO_HOLE_START, MEM_RANGE_RAM);
}

/* Sorted, disjoint, nothing in the MMIO hole, and every byte of RAM except
 * the legacy area is usable. */
static void check_memmap_invariants(struct fixture *f)
{
	struct mem_range r[BOOT_MAX_MEM_RANGES];
	int n = boot_build_memmap(&f->mem, r, BOOT_MAX_MEM_RANGES);
	uint64_t ram = 0;

	assert_true(n > 0);
	for (int i = 0; i < n; i++) {
		assert_true(r[i].size > 0);
		if (i > 0)
			assert_true(r[i - 1].addr + r[i - 1].size <= r[i].addr);
		assert_false(r[i].addr < LAYOUT_MMIO_HOLE_END &&
			     r[i].addr + r[i].size > LAYOUT_MMIO_HOLE_START);
		if (r[i].type == MEM_RANGE_RAM) {
			ram += r[i].size;
			assert_non_null(guest_mem_gpa_to_hva(&f->mem, r[i].addr, r[i].size));
		}
	}
	assert_int_equal(ram, f->mem.size - (0x100000 - LAYOUT_EBDA_ADDR));
}

static void test_memmap_invariants_small(void **state)
{
	check_memmap_invariants(*state);
}

static void test_memmap_invariants_big(void **state)
{
	check_memmap_invariants(*state);
}

static void test_memmap_enospc(void **state)
{
	struct fixture *f = *state;
	struct mem_range r[BOOT_MAX_MEM_RANGES];

	memset(r, 0x5a, sizeof(r));
	assert_int_equal(boot_build_memmap(&f->mem, r, 2), -ENOSPC);
	assert_int_equal(boot_build_memmap(&f->mem, r, 0), -ENOSPC);
	/* Nothing written on failure: the caller's array may be exactly max long. */
	for (size_t i = 0; i < sizeof(r); i++)
		assert_int_equal(((uint8_t *)r)[i], 0x5a);
	assert_int_equal(boot_build_memmap(&f->mem, r, 3), 3);
	assert_int_equal(((uint8_t *)&r[3])[0], 0x5a);
}

static void test_memmap_enospc_big(void **state)
{
	struct fixture *f = *state;
	struct mem_range r[4];

	assert_int_equal(boot_build_memmap(&f->mem, r, 3), -ENOSPC);
	assert_int_equal(boot_build_memmap(&f->mem, r, 4), 4);
}

/* --- zero page --------------------------------------------------------------- */

static void test_zero_page_vmlinux(void **state)
{
	struct fixture *f = *state;
	const struct boot_params *bp = gpa(f, LAYOUT_ZERO_PAGE_ADDR, sizeof(*bp));
	struct mem_range r[BOOT_MAX_MEM_RANGES];
	int n;

	memset(gpa(f, LAYOUT_ZERO_PAGE_ADDR, 4096), 0xff, 4096); /* stale */
	f->bi.initrd_gpa = 0x3000000;
	f->bi.initrd_size = 0x12345;
	assert_int_equal(boot_write_zero_page(&f->mem, &f->bi, 10), 0);

	/* vmlinux has no setup header: mote supplies what startup_64 reads. */
	assert_int_equal(bp->hdr.boot_flag, 0xaa55);
	assert_int_equal(bp->hdr.header, 0x53726448);
	assert_int_equal(bp->hdr.type_of_loader, 0xff);
	assert_true(bp->hdr.loadflags & LOADED_HIGH);
	assert_true(bp->hdr.loadflags & CAN_USE_HEAP);
	assert_int_equal(bp->hdr.cmd_line_ptr, LAYOUT_CMDLINE_ADDR);
	assert_int_equal(bp->hdr.cmdline_size, 10);
	assert_int_equal(bp->hdr.ramdisk_image, 0x3000000);
	assert_int_equal(bp->hdr.ramdisk_size, 0x12345);
	assert_int_equal(bp->ext_cmd_line_ptr, 0);
	assert_int_equal(bp->ext_ramdisk_image, 0);
	/* The rest of the page was cleared: the sentinel would make Linux
	 * discard fields, stale bytes would be read as parameters. */
	assert_int_equal(bp->sentinel, 0);
	assert_int_equal(bp->hdr.setup_sects, 0);
	assert_int_equal(bp->hdr.version, 0);
	assert_int_equal(bp->acpi_rsdp_addr, 0);

	n = boot_build_memmap(&f->mem, r, BOOT_MAX_MEM_RANGES);
	assert_int_equal(bp->e820_entries, n);
	for (int i = 0; i < n; i++) {
		assert_int_equal(bp->e820_table[i].addr, r[i].addr);
		assert_int_equal(bp->e820_table[i].size, r[i].size);
		assert_int_equal(bp->e820_table[i].type, r[i].type);
	}
	assert_int_equal(bp->e820_table[n].size, 0);
	assert_int_equal(bp->e820_table[n].type, 0);
}

static void test_zero_page_without_initrd(void **state)
{
	struct fixture *f = *state;
	const struct boot_params *bp = gpa(f, LAYOUT_ZERO_PAGE_ADDR, sizeof(*bp));

	memset(gpa(f, LAYOUT_ZERO_PAGE_ADDR, 4096), 0xff, 4096);
	assert_int_equal(boot_write_zero_page(&f->mem, &f->bi, 1), 0);
	assert_int_equal(bp->hdr.ramdisk_image, 0);
	assert_int_equal(bp->hdr.ramdisk_size, 0);
	assert_int_equal(bp->hdr.cmdline_size, 1);
}

static void test_zero_page_keeps_bzimage_header(void **state)
{
	struct fixture *f = *state;
	const struct boot_params *bp = gpa(f, LAYOUT_ZERO_PAGE_ADDR, sizeof(*bp));
	struct boot_params tmpl;
	const uint32_t hlen = 0x26c - SETUP_HEADER_OFFSET; /* up to kernel_info_offset */

	memset(&tmpl, 0, sizeof(tmpl));
	tmpl.hdr.setup_sects = 27;
	tmpl.hdr.boot_flag = 0xaa55;
	tmpl.hdr.header = 0x53726448;
	tmpl.hdr.version = 0x020f;
	tmpl.hdr.loadflags = LOADED_HIGH | QUIET_FLAG;
	tmpl.hdr.kernel_alignment = 0x200000;
	tmpl.hdr.relocatable_kernel = 1;
	tmpl.hdr.xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
	tmpl.hdr.cmdline_size = 2047;
	tmpl.hdr.pref_address = 0x1000000;
	tmpl.hdr.init_size = 0x2000000;
	tmpl.hdr.kernel_info_offset = 0x1234;
	/* Bytes past the header's length must not leak into the zero page. */
	memset((uint8_t *)&tmpl + SETUP_HEADER_OFFSET + hlen, 0xee, SETUP_HEADER_MAX - hlen);

	f->bi.format = KERNEL_BZIMAGE;
	memcpy(f->bi.setup_header, (uint8_t *)&tmpl + SETUP_HEADER_OFFSET, SETUP_HEADER_MAX);
	f->bi.setup_header_len = hlen;
	memset(gpa(f, LAYOUT_ZERO_PAGE_ADDR, 4096), 0xff, 4096);
	assert_int_equal(boot_write_zero_page(&f->mem, &f->bi, 42), 0);

	assert_int_equal(bp->hdr.setup_sects, 27);
	assert_int_equal(bp->hdr.boot_flag, 0xaa55);
	assert_int_equal(bp->hdr.header, 0x53726448);
	assert_int_equal(bp->hdr.version, 0x020f);
	assert_int_equal(bp->hdr.kernel_alignment, 0x200000);
	assert_int_equal(bp->hdr.relocatable_kernel, 1);
	assert_int_equal(bp->hdr.xloadflags, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G);
	assert_int_equal(bp->hdr.pref_address, 0x1000000);
	assert_int_equal(bp->hdr.init_size, 0x2000000);
	assert_int_equal(bp->hdr.kernel_info_offset, 0x1234);
	/* The kernel's flags survive; the loader's are added. */
	assert_int_equal(bp->hdr.loadflags, LOADED_HIGH | QUIET_FLAG | CAN_USE_HEAP);
	/* Loader-owned fields are overwritten. */
	assert_int_equal(bp->hdr.type_of_loader, 0xff);
	assert_int_equal(bp->hdr.cmd_line_ptr, LAYOUT_CMDLINE_ADDR);
	assert_int_equal(bp->hdr.cmdline_size, 42);
	const uint8_t *tail = (const uint8_t *)bp + SETUP_HEADER_OFFSET + hlen;
	for (uint32_t i = 0; i < SETUP_HEADER_MAX - hlen; i++)
		assert_int_equal(tail[i], 0);
	assert_int_equal(bp->e820_entries, 3);
}

static void test_zero_page_e820_above_hole(void **state)
{
	struct fixture *f = *state;
	const struct boot_params *bp = gpa(f, LAYOUT_ZERO_PAGE_ADDR, sizeof(*bp));

	assert_int_equal(boot_write_zero_page(&f->mem, &f->bi, 1), 0);
	assert_int_equal(bp->e820_entries, 4);
	assert_int_equal(bp->e820_table[3].addr, 4 * GIB);
	assert_int_equal(bp->e820_table[3].size, BIG_SIZE - 3 * GIB);
	assert_int_equal(bp->e820_table[3].type, MEM_RANGE_RAM);
}

/* --- PVH start info ------------------------------------------------------------ */

static void test_pvh_info_without_initrd(void **state)
{
	struct fixture *f = *state;
	const struct xen_hvm_start_info *si = gpa(f, LAYOUT_PVH_INFO_ADDR, sizeof(*si));
	struct mem_range r[BOOT_MAX_MEM_RANGES];
	int n = boot_build_memmap(&f->mem, r, BOOT_MAX_MEM_RANGES);

	memset(gpa(f, LAYOUT_PVH_INFO_ADDR, 0x1000), 0xff, 0x1000); /* stale */
	assert_int_equal(boot_write_pvh_info(&f->mem, &f->bi), 0);
	assert_int_equal(si->magic, XEN_HVM_START_MAGIC_VALUE);
	assert_int_equal(si->version, 1);
	assert_int_equal(si->flags, 0);
	assert_int_equal(si->nr_modules, 0);
	assert_int_equal(si->modlist_paddr, 0);
	assert_int_equal(si->cmdline_paddr, LAYOUT_CMDLINE_ADDR);
	assert_int_equal(si->rsdp_paddr, 0);
	assert_int_equal(si->memmap_paddr, LAYOUT_PVH_MEMMAP_ADDR);
	assert_int_equal(si->memmap_entries, n);
	assert_int_equal(si->reserved, 0);

	const struct xen_hvm_memmap_table_entry *mm =
		gpa(f, si->memmap_paddr, n * sizeof(*mm));
	for (int i = 0; i < n; i++) {
		assert_int_equal(mm[i].addr, r[i].addr);
		assert_int_equal(mm[i].size, r[i].size);
		assert_int_equal(mm[i].type, r[i].type);
		assert_int_equal(mm[i].reserved, 0);
	}
	/* The memmap does not run into the start info or the module list. */
	assert_true(LAYOUT_PVH_INFO_ADDR + sizeof(*si) <= si->memmap_paddr);
	assert_true(si->memmap_paddr + n * sizeof(*mm) <= LAYOUT_PVH_MODLIST_ADDR);
}

static void test_pvh_info_with_initrd(void **state)
{
	struct fixture *f = *state;
	const struct xen_hvm_start_info *si = gpa(f, LAYOUT_PVH_INFO_ADDR, sizeof(*si));

	memset(gpa(f, LAYOUT_PVH_INFO_ADDR, 0x1000), 0xff, 0x1000);
	f->bi.initrd_gpa = 0x3f00000;
	f->bi.initrd_size = 0xabcde;
	assert_int_equal(boot_write_pvh_info(&f->mem, &f->bi), 0);
	assert_int_equal(si->nr_modules, 1);
	assert_int_equal(si->modlist_paddr, LAYOUT_PVH_MODLIST_ADDR);
	const struct xen_hvm_modlist_entry *mod = gpa(f, si->modlist_paddr, sizeof(*mod));
	assert_int_equal(mod->paddr, 0x3f00000);
	assert_int_equal(mod->size, 0xabcde);
	assert_int_equal(mod->cmdline_paddr, 0);
	assert_int_equal(mod->reserved, 0);
}

static void test_pvh_info_above_hole(void **state)
{
	struct fixture *f = *state;
	const struct xen_hvm_start_info *si = gpa(f, LAYOUT_PVH_INFO_ADDR, sizeof(*si));

	assert_int_equal(boot_write_pvh_info(&f->mem, &f->bi), 0);
	assert_int_equal(si->memmap_entries, 4);
	const struct xen_hvm_memmap_table_entry *mm = gpa(f, si->memmap_paddr, 4 * sizeof(*mm));
	assert_int_equal(mm[3].addr, 4 * GIB);
	assert_int_equal(mm[3].size, BIG_SIZE - 3 * GIB);
}

/* --- command line ---------------------------------------------------------------- */

static void test_cmdline_limits(void **state)
{
	struct fixture *f = *state;
	char line[102];
	uint8_t *dst = gpa(f, LAYOUT_CMDLINE_ADDR, 256);

	memset(dst, 0xee, 256);
	f->bi.cmdline_max = 100;
	memset(line, 'x', 100);
	line[100] = '\0';
	assert_int_equal(boot_write_cmdline(&f->mem, &f->bi, line, f->err, sizeof(f->err)), 0);
	assert_memory_equal(dst, line, 101); /* with its NUL */
	assert_int_equal(dst[101], 0xee);

	memset(dst, 0xee, 256);
	memset(line, 'y', 101);
	line[101] = '\0';
	f->err[0] = '\0';
	assert_int_equal(boot_write_cmdline(&f->mem, &f->bi, line, f->err, sizeof(f->err)),
			 -E2BIG);
	assert_true(strlen(f->err) > 0);
	assert_int_equal(dst[0], 0xee); /* nothing written */

	f->bi.cmdline_max = 0;
	assert_int_equal(boot_write_cmdline(&f->mem, &f->bi, "a", f->err, sizeof(f->err)), -E2BIG);
	assert_int_equal(boot_write_cmdline(&f->mem, &f->bi, "", f->err, sizeof(f->err)), 0);
	assert_int_equal(dst[0], 0);
}

static void test_cmdline_largest(void **state)
{
	struct fixture *f = *state;
	const size_t max = LAYOUT_CMDLINE_MAX - 1;
	char *line = malloc(max + 1);

	assert_non_null(line);
	memset(line, 'z', max);
	line[max] = '\0';
	f->bi.cmdline_max = (uint32_t)max;
	assert_int_equal(boot_write_cmdline(&f->mem, &f->bi, line, f->err, sizeof(f->err)), 0);
	const uint8_t *dst = gpa(f, LAYOUT_CMDLINE_ADDR, max + 1);
	assert_int_equal(dst[0], 'z');
	assert_int_equal(dst[max - 1], 'z');
	assert_int_equal(dst[max], 0);
	/* The command line stays below the 1 MiB kernel area. */
	assert_true(LAYOUT_CMDLINE_ADDR + max + 1 <= LAYOUT_EBDA_ADDR);
	free(line);
}

/* --- initrd ---------------------------------------------------------------------- */

static void assert_initrd_content(struct fixture *f, uint64_t size)
{
	const uint8_t *p = gpa(f, f->bi.initrd_gpa, size);

	for (uint64_t i = 0; i < size; i++)
		if (p[i] != (uint8_t)(i * 31 + 7))
			fail_msg("initrd byte %llu differs", (unsigned long long)i);
}

static void test_initrd_top_of_low_ram(void **state)
{
	struct fixture *f = *state;
	const uint64_t size = 10000;
	int fd = memfd_pattern(size);

	assert_int_equal(boot_load_initrd(fd, &f->mem, &f->bi, f->err, sizeof(f->err)), 0);
	close(fd);
	assert_int_equal(f->bi.initrd_size, size);
	assert_int_equal(f->bi.initrd_gpa & 0xfff, 0);
	assert_true(f->bi.initrd_gpa >= f->bi.kernel_end);
	assert_true(f->bi.initrd_gpa + size <= RAM_SIZE);
	/* As high as it goes: one page higher would not fit. */
	assert_true(f->bi.initrd_gpa + 0x1000 + size > RAM_SIZE);
	assert_initrd_content(f, size);
}

static void test_initrd_below_addr_max(void **state)
{
	struct fixture *f = *state;
	const uint64_t size = 0x5000;
	int fd = memfd_pattern(size);

	f->bi.initrd_addr_max = 32 * MIB - 1;
	assert_int_equal(boot_load_initrd(fd, &f->mem, &f->bi, f->err, sizeof(f->err)), 0);
	assert_int_equal(f->bi.initrd_gpa, 32 * MIB - size);
	/* initrd_addr_max is the highest byte, and need not be page-aligned. */
	f->bi.initrd_addr_max = 0x1fff7ff;
	assert_int_equal(boot_load_initrd(fd, &f->mem, &f->bi, f->err, sizeof(f->err)), 0);
	close(fd);
	assert_true(f->bi.initrd_gpa + size - 1 <= 0x1fff7ff);
	assert_int_equal(f->bi.initrd_gpa & 0xfff, 0);
	assert_initrd_content(f, size);
}

static void test_initrd_exact_fit(void **state)
{
	struct fixture *f = *state;
	const uint64_t size = RAM_SIZE - 2 * MIB;
	int fd = memfd_create("mote-test-initrd", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_int_equal(boot_load_initrd(fd, &f->mem, &f->bi, f->err, sizeof(f->err)), 0);
	assert_int_equal(f->bi.initrd_gpa, 2 * MIB); /* right at the kernel's end */
	/* An unaligned kernel end rounds up: now it no longer fits. */
	f->bi.kernel_end = 2 * MIB + 1;
	f->bi.initrd_gpa = f->bi.initrd_size = 0;
	f->err[0] = '\0';
	assert_int_equal(boot_load_initrd(fd, &f->mem, &f->bi, f->err, sizeof(f->err)), -E2BIG);
	assert_true(strlen(f->err) > 0);
	assert_int_equal(f->bi.initrd_gpa, 0);
	assert_int_equal(f->bi.initrd_size, 0);
	close(fd);
}

static void test_initrd_too_big(void **state)
{
	struct fixture *f = *state;
	int fd = memfd_create("mote-test-initrd", MFD_CLOEXEC);

	assert_true(fd >= 0);
	/* One byte more than fits between the kernel's end and the top. */
	assert_int_equal(ftruncate(fd, (off_t)(RAM_SIZE - 2 * MIB + 1)), 0);
	assert_int_equal(boot_load_initrd(fd, &f->mem, &f->bi, f->err, sizeof(f->err)), -E2BIG);
	assert_true(strlen(f->err) > 0);
	/* Larger than all of RAM. */
	assert_int_equal(ftruncate(fd, (off_t)(4 * GIB)), 0);
	f->err[0] = '\0';
	assert_int_equal(boot_load_initrd(fd, &f->mem, &f->bi, f->err, sizeof(f->err)), -E2BIG);
	assert_true(strlen(f->err) > 0);
	assert_int_equal(f->bi.initrd_size, 0);
	close(fd);
}

static void test_initrd_empty_or_not_a_file(void **state)
{
	struct fixture *f = *state;
	int fd = memfd_create("mote-test-initrd", MFD_CLOEXEC);
	int pipefd[2];

	assert_true(fd >= 0);
	assert_true(boot_load_initrd(fd, &f->mem, &f->bi, f->err, sizeof(f->err)) < 0);
	assert_true(strlen(f->err) > 0);
	assert_int_equal(f->bi.initrd_size, 0);
	close(fd);

	assert_int_equal(pipe(pipefd), 0);
	f->err[0] = '\0';
	assert_int_equal(boot_load_initrd(pipefd[0], &f->mem, &f->bi, f->err, sizeof(f->err)),
			 -EINVAL);
	assert_true(strlen(f->err) > 0);
	close(pipefd[0]);
	close(pipefd[1]);

	fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	f->err[0] = '\0';
	assert_int_equal(boot_load_initrd(fd, &f->mem, &f->bi, f->err, sizeof(f->err)), -EINVAL);
	assert_true(strlen(f->err) > 0);
	close(fd);
}

static void test_initrd_stays_below_hole(void **state)
{
	struct fixture *f = *state;
	const uint64_t size = MIB + 123;
	int fd = memfd_pattern(size);

	assert_int_equal(boot_load_initrd(fd, &f->mem, &f->bi, f->err, sizeof(f->err)), 0);
	close(fd);
	assert_true(f->bi.initrd_gpa + size <= LAYOUT_MMIO_HOLE_START);
	assert_true(f->bi.initrd_gpa >= LAYOUT_MMIO_HOLE_START - size - 0x1000);
	assert_initrd_content(f, size);
}

/* --- GDT and page tables ----------------------------------------------------------- */

/* Walks the 4-level tables in guest memory like the MMU would. */
static uint64_t walk(struct fixture *f, uint64_t va)
{
	const uint64_t *pml4 = gpa(f, LAYOUT_PML4_ADDR, 4096);
	uint64_t e = pml4[(va >> 39) & 511];

	assert_true(e & 1);
	const uint64_t *pdpt = gpa(f, e & ~0xfffULL, 4096);
	e = pdpt[(va >> 30) & 511];
	assert_true(e & 1);
	assert_false(e & 0x80); /* no 1 GiB pages */
	const uint64_t *pd = gpa(f, e & ~0xfffULL, 4096);
	e = pd[(va >> 21) & 511];
	assert_true(e & 1);
	assert_true(e & 0x80); /* 2 MiB page */
	return (e & ~0x1fffffULL) | (va & 0x1fffff);
}

static void test_gdt_and_page_tables(void **state)
{
	struct fixture *f = *state;

	memset(gpa(f, 0x500, 0x100), 0xff, 0x100);
	memset(gpa(f, LAYOUT_PML4_ADDR, 6 * 4096), 0xff, 6 * 4096); /* stale tables */
	assert_int_equal(boot_write_gdt_and_page_tables(&f->mem), 0);

	const uint64_t *gdt = gpa(f, LAYOUT_GDT_ADDR, 6 * 8);
	assert_int_equal(gdt[0], 0);
	const uint64_t code64 = gdt[GDT_SEL_CODE64 / 8];
	const uint64_t data = gdt[GDT_SEL_DATA / 8];
	const uint64_t code32 = gdt[GDT_SEL_CODE32 / 8];
	const uint64_t tss = gdt[GDT_SEL_TSS / 8];
	assert_true(code64 & (1ULL << 47));  /* present */
	assert_true(code64 & (1ULL << 43));  /* code */
	assert_true(code64 & (1ULL << 53));  /* L: 64-bit */
	assert_false(code64 & (1ULL << 54)); /* D must be clear with L */
	assert_true(code32 & (1ULL << 54));  /* D: 32-bit */
	assert_false(code32 & (1ULL << 53));
	assert_true(data & (1ULL << 47));
	assert_false(data & (1ULL << 43));   /* data */
	assert_true(data & (1ULL << 41));    /* writable */
	assert_int_equal((tss >> 40) & 0xf, 0xb); /* busy 64-bit TSS */

	const uint64_t *pml4 = gpa(f, LAYOUT_PML4_ADDR, 4096);
	const uint64_t *pdpt = gpa(f, LAYOUT_PDPT_ADDR, 4096);
	const uint64_t *pd = gpa(f, LAYOUT_PD_ADDR, 4 * 4096);
	assert_int_equal(pml4[0], LAYOUT_PDPT_ADDR | 3);
	for (int i = 1; i < 512; i++)
		assert_int_equal(pml4[i], 0);
	for (uint64_t i = 0; i < 4; i++)
		assert_int_equal(pdpt[i], (LAYOUT_PD_ADDR + i * 4096) | 3);
	for (int i = 4; i < 512; i++)
		assert_int_equal(pdpt[i], 0);
	assert_int_equal(pd[0], 0x83);
	/* The PD entry for 3 GiB + 2 MiB, in the fourth PD page. */
	assert_int_equal(pd[3 * 512 + 1], 0xc0200000ULL | 0x83);
	assert_int_equal(pd[2047], 0xffe00000ULL | 0x83);

	const uint64_t probes[] = { 0, 0x1000, 0x100200, 0x12345678, 0xbfffffff,
				    0xc0201234, LAYOUT_IOAPIC_ADDR, 0xffffffff };
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++)
		assert_int_equal(walk(f, probes[i]), probes[i]);
	/* The tables lie outside everything else mote puts in low memory. */
	assert_true(LAYOUT_PD_ADDR + 4 * 4096 <= LAYOUT_CMDLINE_ADDR);
	assert_true(LAYOUT_ZERO_PAGE_ADDR + 4096 <= LAYOUT_PML4_ADDR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_memmap_small, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memmap_one_mib, setup_1m, teardown),
		cmocka_unit_test_setup_teardown(test_memmap_above_hole, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_memmap_invariants_small, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memmap_invariants_big, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_memmap_enospc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memmap_enospc_big, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_zero_page_vmlinux, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_page_without_initrd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_page_keeps_bzimage_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_page_e820_above_hole, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_info_without_initrd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_info_with_initrd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_info_above_hole, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_cmdline_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cmdline_largest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_top_of_low_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_below_addr_max, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_exact_fit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_too_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_empty_or_not_a_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_stays_below_hole, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_gdt_and_page_tables, setup, teardown),
	};

	return cmocka_run_group_tests_name("bootparams", tests, NULL, NULL);
}
