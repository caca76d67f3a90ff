/* ELF64 loader: PVH and Linux 64-bit vmlinux images built in memory, and a
 * table of hostile images, each of which must be refused with a message. */
#include <elf.h>
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

#include "vmm/boot.h"
#include "vmm/layout.h"
#include "vmm/mem.h"

#define MIB (1ULL << 20)
#define GIB (1ULL << 30)
#define RAM_SIZE (16 * MIB)

#define IMG_BUF   0x14000 /* room for the oversized-note case */
#define IMG_SIZE  0x3000
#define TEXT_OFF  0x1000
#define TEXT_SIZE 0x800
#define BSS_SIZE  0x1800
#define NOTE_OFF  0x2000
#define LOAD_ADDR 0x100000ULL
#define LOAD_END  (LOAD_ADDR + TEXT_SIZE + BSS_SIZE)
#define ELF_ENTRY 0x100010ULL /* e_entry, used by the Linux 64-bit protocol */
#define PVH_ENTRY 0x100040ULL /* the XEN_ELFNOTE_PHYS32_ENTRY value */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define FILL 0xcc

struct img {
	union {
		Elf64_Ehdr eh;
		uint8_t b[IMG_BUF];
	} u;
	size_t len;
};

struct hostile_case {
	void (*mutate)(struct img *im);
	enum boot_protocol want;
	int expect;         /* the -errno elf_load must return */
	bool mem_untouched; /* refused before any byte reached guest RAM */
};

struct fixture {
	struct guest_mem mem;
	struct img im;
	struct boot_info bi;
	char err[BOOT_ERR_LEN];
	const struct hostile_case *hc;
};

static Elf64_Phdr *phdr(struct img *im, unsigned i)
{
	return (Elf64_Phdr *)(im->u.b + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr));
}

static Elf64_Nhdr *note_hdr(struct img *im)
{
	return (Elf64_Nhdr *)(im->u.b + NOTE_OFF);
}

static uint8_t text_byte(size_t i)
{
	return (uint8_t)(i * 7 + 3);
}

/* One note, name and descriptor each padded to 4 bytes; returns its size. */
static size_t put_note(uint8_t *p, const char *name, uint32_t namesz, uint32_t type,
		       const void *desc, uint32_t descsz)
{
	Elf64_Nhdr nh = { .n_namesz = namesz, .n_descsz = descsz, .n_type = type };
	size_t off = sizeof(nh);

	memcpy(p, &nh, sizeof(nh));
	memcpy(p + off, name, namesz);
	off += (namesz + 3) & ~3u;
	memcpy(p + off, desc, descsz);
	off += (descsz + 3) & ~3u;
	return off;
}

/* An ELF with one PT_LOAD at 1 MiB (with bss) and, if pvh, a PT_NOTE
 * carrying the Xen PVH entry. */
static void build_elf(struct img *im, bool pvh)
{
	Elf64_Ehdr *eh = &im->u.eh;

	memset(im, 0, sizeof(*im));
	im->len = IMG_SIZE;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = ELF_ENTRY;
	eh->e_phoff = sizeof(Elf64_Ehdr);
	eh->e_ehsize = sizeof(Elf64_Ehdr);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = pvh ? 2 : 1;

	*phdr(im, 0) = (Elf64_Phdr){
		.p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_offset = TEXT_OFF,
		.p_vaddr = 0xffffffff81000000ULL, .p_paddr = LOAD_ADDR,
		.p_filesz = TEXT_SIZE, .p_memsz = TEXT_SIZE + BSS_SIZE, .p_align = 0x1000,
	};
	for (size_t i = 0; i < TEXT_SIZE; i++)
		im->u.b[TEXT_OFF + i] = text_byte(i);
	if (pvh) {
		uint32_t entry = (uint32_t)PVH_ENTRY;
		size_t n = put_note(im->u.b + NOTE_OFF, "Xen", 4, XEN_ELFNOTE_PHYS32_ENTRY,
				    &entry, sizeof(entry));

		*phdr(im, 1) = (Elf64_Phdr){
			.p_type = PT_NOTE, .p_offset = NOTE_OFF, .p_filesz = n, .p_align = 4,
		};
	}
}

static int memfd_with(const void *buf, size_t len)
{
	int fd = memfd_create("mote-test-elf", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	return fd;
}

static int load_kernel(struct fixture *f, enum boot_protocol want)
{
	int fd = memfd_with(f->im.u.b, f->im.len);
	int ret;

	f->err[0] = '\0';
	ret = boot_load_kernel(fd, &f->mem, want, &f->bi, f->err, sizeof(f->err));
	close(fd);
	return ret;
}

static void assert_ram_is(const struct fixture *f, uint64_t gpa, uint8_t byte, size_t len)
{
	const uint8_t *p = guest_mem_gpa_to_hva(&f->mem, gpa, len);

	assert_non_null(p);
	for (size_t i = 0; i < len; i++)
		if (p[i] != byte)
			fail_msg("guest byte %#llx is %#x, expected %#x",
				 (unsigned long long)(gpa + i), p[i], byte);
}

static void assert_text_loaded(const struct fixture *f, uint64_t gpa)
{
	const uint8_t *p = guest_mem_gpa_to_hva(&f->mem, gpa, TEXT_SIZE);

	assert_non_null(p);
	for (size_t i = 0; i < TEXT_SIZE; i++)
		assert_int_equal(p[i], text_byte(i));
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || guest_mem_init(&f->mem, RAM_SIZE) != 0) {
		free(f);
		return -1;
	}
	/* Stale bytes where the kernel and its bss go: loads must overwrite
	 * or zero them, refusals must leave them. */
	memset(f->mem.base + LOAD_ADDR - 0x1000, FILL, 4 * MIB + 0x1000);
	f->hc = *state; /* the hostile case, if any */
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	guest_mem_destroy(&f->mem);
	free(f);
	return 0;
}

/* --- images that must load ------------------------------------------------ */

static void test_pvh_auto_loads(void **state)
{
	struct fixture *f = *state;

	build_elf(&f->im, true);
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_int_equal(f->bi.format, KERNEL_ELF);
	assert_int_equal(f->bi.protocol, BOOT_PROTO_PVH);
	assert_int_equal(f->bi.entry, PVH_ENTRY);
	assert_int_equal(f->bi.kernel_start, LOAD_ADDR);
	assert_int_equal(f->bi.kernel_end, LOAD_END);
	assert_int_equal(f->bi.cmdline_max, LAYOUT_CMDLINE_MAX - 1);
	assert_int_equal(f->bi.initrd_addr_max, LAYOUT_MMIO_HOLE_START - 1);
	assert_int_equal(f->bi.setup_header_len, 0);
	assert_text_loaded(f, LOAD_ADDR);
	assert_ram_is(f, LOAD_ADDR + TEXT_SIZE, 0, BSS_SIZE); /* bss zeroed */
	assert_ram_is(f, LOAD_END, FILL, 0x1000);             /* nothing past memsz */
	assert_ram_is(f, LOAD_ADDR - 0x1000, FILL, 0x1000);   /* nor before paddr */
}

static void test_pvh_forced_loads(void **state)
{
	struct fixture *f = *state;

	build_elf(&f->im, true);
	assert_int_equal(load_kernel(f, BOOT_PROTO_PVH), 0);
	assert_int_equal(f->bi.protocol, BOOT_PROTO_PVH);
	assert_int_equal(f->bi.entry, PVH_ENTRY);
}

static void test_linux64_forced_uses_e_entry(void **state)
{
	struct fixture *f = *state;

	build_elf(&f->im, true);
	assert_int_equal(load_kernel(f, BOOT_PROTO_LINUX64), 0);
	assert_int_equal(f->bi.protocol, BOOT_PROTO_LINUX64);
	assert_int_equal(f->bi.entry, ELF_ENTRY);
	assert_int_equal(f->bi.cmdline_max, 2047); /* x86 COMMAND_LINE_SIZE - 1 */
	assert_text_loaded(f, LOAD_ADDR);
}

static void test_no_note_is_linux64(void **state)
{
	struct fixture *f = *state;

	build_elf(&f->im, false);
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_int_equal(f->bi.protocol, BOOT_PROTO_LINUX64);
	assert_int_equal(f->bi.entry, ELF_ENTRY);
	assert_text_loaded(f, LOAD_ADDR);
	assert_ram_is(f, LOAD_ADDR + TEXT_SIZE, 0, BSS_SIZE);
}

static void test_pvh_note_with_8_byte_desc(void **state)
{
	struct fixture *f = *state;
	uint64_t entry = 0x100080;

	build_elf(&f->im, true);
	memset(f->im.u.b + NOTE_OFF, 0, 64);
	phdr(&f->im, 1)->p_filesz = put_note(f->im.u.b + NOTE_OFF, "Xen", 4,
					     XEN_ELFNOTE_PHYS32_ENTRY, &entry, sizeof(entry));
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_int_equal(f->bi.protocol, BOOT_PROTO_PVH);
	assert_int_equal(f->bi.entry, entry);
}

static void test_pvh_note_after_build_id(void **state)
{
	struct fixture *f = *state;
	uint8_t build_id[20];
	uint32_t entry = 0x100100;
	size_t n;

	memset(build_id, 0xab, sizeof(build_id));
	build_elf(&f->im, true);
	memset(f->im.u.b + NOTE_OFF, 0, 128);
	n = put_note(f->im.u.b + NOTE_OFF, "GNU", 4, NT_GNU_BUILD_ID, build_id, sizeof(build_id));
	n += put_note(f->im.u.b + NOTE_OFF + n, "Xen", 4, XEN_ELFNOTE_PHYS32_ENTRY, &entry, 4);
	phdr(&f->im, 1)->p_filesz = n;
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_int_equal(f->bi.entry, entry);
}

static void test_two_segments_span_kernel(void **state)
{
	struct fixture *f = *state;

	build_elf(&f->im, false);
	f->im.u.eh.e_phnum = 2;
	/* A second segment at 4 MiB, from the same file bytes, with its own bss. */
	*phdr(&f->im, 1) = (Elf64_Phdr){
		.p_type = PT_LOAD, .p_offset = TEXT_OFF, .p_paddr = 4 * MIB,
		.p_filesz = TEXT_SIZE, .p_memsz = TEXT_SIZE + 0x100,
	};
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_int_equal(f->bi.kernel_start, LOAD_ADDR);
	assert_int_equal(f->bi.kernel_end, 4 * MIB + TEXT_SIZE + 0x100);
	assert_text_loaded(f, LOAD_ADDR);
	assert_text_loaded(f, 4 * MIB);
	assert_ram_is(f, 4 * MIB + TEXT_SIZE, 0, 0x100);
	assert_ram_is(f, 4 * MIB + TEXT_SIZE + 0x100, FILL, 0x100);
	/* The gap between the segments is not touched. */
	assert_ram_is(f, LOAD_END, FILL, 4 * MIB - LOAD_END);
}

static void test_empty_pt_load_is_ignored(void **state)
{
	struct fixture *f = *state;

	build_elf(&f->im, false);
	f->im.u.eh.e_phnum = 2;
	/* memsz 0 at a nonsense address: nothing to load, so no complaint. */
	*phdr(&f->im, 1) = (Elf64_Phdr){ .p_type = PT_LOAD, .p_paddr = UINT64_MAX };
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_int_equal(f->bi.kernel_end, LOAD_END);
}

static void test_segments_around_mmio_hole(void **state)
{
	struct guest_mem big;
	struct boot_info bi;
	char err[BOOT_ERR_LEN];
	struct img *im = calloc(1, sizeof(*im));
	int fd;

	(void)state;
	assert_non_null(im);
	if (guest_mem_init(&big, 4 * GIB + GIB / 2) != 0) {
		free(im);
		skip();
	}
	/* Above the hole: loads at 4 GiB. */
	build_elf(im, false);
	phdr(im, 0)->p_paddr = 4 * GIB;
	im->u.eh.e_entry = 4 * GIB + 0x10;
	fd = memfd_with(im->u.b, im->len);
	assert_int_equal(elf_load(fd, im->len, &big, BOOT_PROTO_AUTO, &bi, err, sizeof(err)), 0);
	close(fd);
	assert_int_equal(bi.kernel_start, 4 * GIB);
	assert_int_equal(big.base[3 * GIB + 5], text_byte(5));

	/* Straddling 3 GiB, entirely in the hole, straddling 4 GiB. */
	const uint64_t bad[] = { 3 * GIB - 0x1000, 3 * GIB, LAYOUT_IOAPIC_ADDR, 4 * GIB - 0x1000 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		build_elf(im, false);
		phdr(im, 0)->p_paddr = bad[i];
		im->u.eh.e_entry = bad[i];
		fd = memfd_with(im->u.b, im->len);
		err[0] = '\0';
		assert_int_equal(elf_load(fd, im->len, &big, BOOT_PROTO_AUTO, &bi, err, sizeof(err)),
				 -ENOEXEC);
		close(fd);
		assert_true(strlen(err) > 0);
	}
	guest_mem_destroy(&big);
	free(im);
}

/* --- hostile images ------------------------------------------------------- */

static void test_hostile(void **state)
{
	struct fixture *f = *state;
	int fd, ret;

	build_elf(&f->im, true);
	f->hc->mutate(&f->im);
	fd = memfd_with(f->im.u.b, f->im.len);
	memset(f->err, 0, sizeof(f->err));
	ret = elf_load(fd, f->im.len, &f->mem, f->hc->want, &f->bi, f->err, sizeof(f->err));
	close(fd);
	assert_int_equal(ret, f->hc->expect);
	if (strlen(f->err) == 0)
		fail_msg("error path left no message");
	if (f->hc->mem_untouched)
		assert_ram_is(f, LOAD_ADDR, FILL, TEXT_SIZE + BSS_SIZE);
}

static void m_bad_magic(struct img *im) { im->u.b[EI_MAG1] = 'X'; }
static void m_class32(struct img *im) { im->u.b[EI_CLASS] = ELFCLASS32; }
static void m_big_endian(struct img *im) { im->u.b[EI_DATA] = ELFDATA2MSB; }
static void m_machine_i386(struct img *im) { im->u.eh.e_machine = EM_386; }
static void m_machine_aarch64(struct img *im) { im->u.eh.e_machine = EM_AARCH64; }
static void m_type_dyn(struct img *im) { im->u.eh.e_type = ET_DYN; }
static void m_type_rel(struct img *im) { im->u.eh.e_type = ET_REL; }
static void m_phnum_zero(struct img *im) { im->u.eh.e_phnum = 0; }
static void m_phnum_65(struct img *im) { im->u.eh.e_phnum = 65; }
static void m_phnum_max(struct img *im) { im->u.eh.e_phnum = 0xffff; }
static void m_phentsize_32bit(struct img *im) { im->u.eh.e_phentsize = sizeof(Elf32_Phdr); }
static void m_phentsize_zero(struct img *im) { im->u.eh.e_phentsize = 0; }
static void m_phoff_at_end(struct img *im) { im->u.eh.e_phoff = im->len; }
static void m_phoff_huge(struct img *im) { im->u.eh.e_phoff = UINT64_MAX - 8; }
static void m_phdrs_cross_end(struct img *im) { im->u.eh.e_phoff = im->len - sizeof(Elf64_Phdr); }
static void m_seg_truncated(struct img *im) { phdr(im, 0)->p_offset = im->len - 0x100; }
static void m_seg_offset_huge(struct img *im) { phdr(im, 0)->p_offset = UINT64_MAX - 0x10; }
static void m_seg_filesz_huge(struct img *im)
{
	phdr(im, 0)->p_filesz = UINT64_MAX;
	phdr(im, 0)->p_memsz = UINT64_MAX;
}
static void m_filesz_gt_memsz(struct img *im) { phdr(im, 0)->p_memsz = TEXT_SIZE - 1; }
static void m_paddr_zero(struct img *im) { phdr(im, 0)->p_paddr = 0; }
static void m_paddr_below_1m(struct img *im) { phdr(im, 0)->p_paddr = LOAD_ADDR - 0x1000; }
static void m_paddr_beyond_ram(struct img *im) { phdr(im, 0)->p_paddr = 64 * MIB; }
static void m_seg_crosses_ram_end(struct img *im) { phdr(im, 0)->p_paddr = RAM_SIZE - 0x1000; }
static void m_paddr_overflow(struct img *im) { phdr(im, 0)->p_paddr = UINT64_MAX - 0xfff; }
static void m_memsz_huge(struct img *im) { phdr(im, 0)->p_memsz = UINT64_MAX - 0x10; }
static void m_e_entry_outside(struct img *im) { im->u.eh.e_entry = 0x200000; }
static void m_e_entry_below(struct img *im) { im->u.eh.e_entry = LOAD_ADDR - 1; }
static void m_pvh_entry_value(struct img *im, uint32_t v)
{
	memcpy(im->u.b + NOTE_OFF + sizeof(Elf64_Nhdr) + 4, &v, 4);
}
static void m_pvh_entry_outside(struct img *im) { m_pvh_entry_value(im, 0x300000); }
static void m_pvh_entry_at_end(struct img *im) { m_pvh_entry_value(im, (uint32_t)LOAD_END); }
static void m_no_pt_load(struct img *im) { phdr(im, 0)->p_type = PT_NULL; }
static void m_only_empty_load(struct img *im)
{
	phdr(im, 0)->p_filesz = 0;
	phdr(im, 0)->p_memsz = 0;
}
static void m_note_namesz_huge(struct img *im) { note_hdr(im)->n_namesz = 0xffffffffu; }
static void m_note_descsz_huge(struct img *im) { note_hdr(im)->n_descsz = 0xfffffffdu; }
static void m_note_desc_2(struct img *im) { note_hdr(im)->n_descsz = 2; }
static void m_note_desc_16(struct img *im)
{
	note_hdr(im)->n_descsz = 16;
	phdr(im, 1)->p_filesz = sizeof(Elf64_Nhdr) + 4 + 16;
}
static void m_note_truncated(struct img *im) { phdr(im, 1)->p_filesz = sizeof(Elf64_Nhdr) + 4 + 2; }
static void m_note_seg_past_end(struct img *im) { phdr(im, 1)->p_offset = im->len - 4; }
static void m_note_seg_offset_huge(struct img *im) { phdr(im, 1)->p_offset = UINT64_MAX; }
static void m_note_seg_too_large(struct img *im)
{
	im->len = IMG_BUF;
	phdr(im, 1)->p_filesz = 64 * 1024 + 1;
}
static void m_drop_note(struct img *im) { im->u.eh.e_phnum = 1; }
static void m_too_short(struct img *im) { im->len = sizeof(Elf64_Ehdr) - 1; }

#define HOSTILE(m, want_, expect_, untouched_)                                               \
	{ #m, test_hostile, setup, teardown,                                                 \
	  &(struct hostile_case){ m, want_, expect_, untouched_ } }
#define REFUSED(m) HOSTILE(m, BOOT_PROTO_AUTO, -ENOEXEC, true)
/* Refused after the PT_LOAD before it was already copied in. */
#define REFUSED_LATE(m) HOSTILE(m, BOOT_PROTO_AUTO, -ENOEXEC, false)

static void test_err_is_truncated_not_overrun(void **state)
{
	struct fixture *f = *state;
	char err[16];
	int fd;

	build_elf(&f->im, true);
	f->im.u.eh.e_machine = EM_386;
	fd = memfd_with(f->im.u.b, f->im.len);
	memset(err, 'Z', sizeof(err));
	assert_int_equal(elf_load(fd, f->im.len, &f->mem, BOOT_PROTO_AUTO, &f->bi, err, 8),
			 -ENOEXEC);
	close(fd);
	assert_int_equal(strlen(err), 7);
	for (size_t i = 8; i < sizeof(err); i++)
		assert_int_equal(err[i], 'Z');
}

static void test_file_shorter_than_claimed(void **state)
{
	struct fixture *f = *state;
	int fd;

	/* The caller says the file is larger than it is: the segment read
	 * must fail cleanly rather than load garbage. */
	build_elf(&f->im, false);
	phdr(&f->im, 0)->p_offset = IMG_SIZE + 0x1000;
	fd = memfd_with(f->im.u.b, IMG_SIZE);
	f->err[0] = '\0';
	assert_int_equal(elf_load(fd, 4 * IMG_SIZE, &f->mem, BOOT_PROTO_AUTO, &f->bi, f->err,
				  sizeof(f->err)), -EIO);
	close(fd);
	assert_true(strlen(f->err) > 0);
}

static void test_boot_load_kernel_rejects_non_images(void **state)
{
	struct fixture *f = *state;
	char err[BOOT_ERR_LEN];
	int fd;

	/* Empty, and shorter than any magic. */
	fd = memfd_with("", 0);
	err[0] = '\0';
	assert_int_equal(boot_load_kernel(fd, &f->mem, BOOT_PROTO_AUTO, &f->bi, err, sizeof(err)),
			 -ENOEXEC);
	assert_true(strlen(err) > 0);
	close(fd);
	fd = memfd_with("\x7f" "EL", 3);
	err[0] = '\0';
	assert_int_equal(boot_load_kernel(fd, &f->mem, BOOT_PROTO_AUTO, &f->bi, err, sizeof(err)),
			 -ENOEXEC);
	assert_true(strlen(err) > 0);
	close(fd);
	/* A directory. */
	fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	err[0] = '\0';
	assert_int_equal(boot_load_kernel(fd, &f->mem, BOOT_PROTO_AUTO, &f->bi, err, sizeof(err)),
			 -EINVAL);
	assert_true(strlen(err) > 0);
	close(fd);
	/* A closed descriptor. */
	err[0] = '\0';
	assert_int_equal(boot_load_kernel(-1, &f->mem, BOOT_PROTO_AUTO, &f->bi, err, sizeof(err)),
			 -EBADF);
	assert_true(strlen(err) > 0);
	/* Neither ELF nor bzImage: handed to the bzImage loader, refused there. */
	build_elf(&f->im, true);
	f->im.u.b[0] = 'M';
	err[0] = '\0';
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), -ENOEXEC);
	assert_true(strlen(f->err) > 0);
	assert_ram_is(f, LOAD_ADDR, FILL, TEXT_SIZE);
}

/* --- elf_find_pvh_entry on raw note bytes ---------------------------------- */

/* Runs on an exact-size heap copy so ASan catches any over-read. */
static int find_exact(const uint8_t *src, size_t len, uint64_t *entry)
{
	uint8_t *copy = malloc(len ? len : 1);
	int ret;

	assert_non_null(copy);
	if (len)
		memcpy(copy, src, len);
	ret = elf_find_pvh_entry(len ? copy : NULL, len, entry);
	free(copy);
	return ret;
}

static void test_find_4_byte_desc(void **state)
{
	uint8_t buf[64] = { 0 };
	uint32_t v = 0x1000000;
	uint64_t entry = 0;
	size_t n = put_note(buf, "Xen", 4, XEN_ELFNOTE_PHYS32_ENTRY, &v, 4);

	(void)state;
	assert_int_equal(n, 20);
	assert_int_equal(find_exact(buf, n, &entry), 0);
	assert_int_equal(entry, 0x1000000);
}

static void test_find_8_byte_desc(void **state)
{
	uint8_t buf[64] = { 0 };
	uint64_t v = 0x100000123ULL, entry = 0;
	size_t n = put_note(buf, "Xen", 4, XEN_ELFNOTE_PHYS32_ENTRY, &v, 8);

	(void)state;
	assert_int_equal(find_exact(buf, n, &entry), 0);
	assert_int_equal(entry, v); /* all 64 bits kept */
}

static void test_find_after_other_notes(void **state)
{
	uint8_t buf[128] = { 0 };
	uint8_t id[20];
	uint32_t other = 0xdead, v = 0x200000;
	uint64_t entry = 0;
	size_t n;

	(void)state;
	memset(id, 0x42, sizeof(id));
	n = put_note(buf, "GNU", 4, NT_GNU_BUILD_ID, id, sizeof(id));
	/* An unpadded 5-byte name: the next note starts after 8 bytes. */
	n += put_note(buf + n, "Linux", 5, 1, &other, 3);
	/* A Xen note of another type must not be taken for the entry. */
	n += put_note(buf + n, "Xen", 4, 1, &other, 4);
	n += put_note(buf + n, "Xen", 4, XEN_ELFNOTE_PHYS32_ENTRY, &v, 4);
	assert_int_equal(find_exact(buf, n, &entry), 0);
	assert_int_equal(entry, v);
}

static void test_find_absent(void **state)
{
	uint8_t buf[128] = { 0 };
	uint32_t v = 0x300000;
	uint64_t entry = 0x77;
	size_t n;

	(void)state;
	/* Right type, wrong names. */
	n = put_note(buf, "Xe", 3, XEN_ELFNOTE_PHYS32_ENTRY, &v, 4);
	n += put_note(buf + n, "XenX", 5, XEN_ELFNOTE_PHYS32_ENTRY, &v, 4);
	n += put_note(buf + n, "xen", 4, XEN_ELFNOTE_PHYS32_ENTRY, &v, 4);
	assert_int_equal(find_exact(buf, n, &entry), -ENOENT);
	/* Trailing bytes too short for another header are not a note. */
	assert_int_equal(find_exact(buf, n + 11, &entry), -ENOENT);
	assert_int_equal(entry, 0x77);
}

static void test_find_empty(void **state)
{
	uint64_t entry = 0x77;

	(void)state;
	assert_int_equal(find_exact(NULL, 0, &entry), -ENOENT);
	assert_int_equal(find_exact((const uint8_t *)"abc", 3, &entry), -ENOENT);
	assert_int_equal(entry, 0x77);
}

static void test_find_truncated(void **state)
{
	uint8_t buf[64] = { 0 };
	uint64_t v = 0x100000, entry = 0x77;
	size_t n = put_note(buf, "Xen", 4, XEN_ELFNOTE_PHYS32_ENTRY, &v, 8);

	(void)state;
	for (size_t cut = sizeof(Elf64_Nhdr); cut < n; cut++)
		assert_int_equal(find_exact(buf, cut, &entry), -EINVAL);
	assert_int_equal(entry, 0x77);
}

static void test_find_huge_sizes(void **state)
{
	uint8_t buf[64] = { 0 };
	uint32_t v = 0x100000;
	uint64_t entry = 0x77;
	size_t n = put_note(buf, "Xen", 4, XEN_ELFNOTE_PHYS32_ENTRY, &v, 4);
	Elf64_Nhdr nh;

	(void)state;
	const uint32_t sizes[] = { 0xffffffffu, 0xfffffffdu, 0x80000000u, 0xfffffff0u };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memcpy(&nh, buf, sizeof(nh));
		nh.n_namesz = sizes[i];
		memcpy(buf, &nh, sizeof(nh));
		assert_int_equal(find_exact(buf, n, &entry), -EINVAL);
		nh.n_namesz = 4;
		nh.n_descsz = sizes[i];
		memcpy(buf, &nh, sizeof(nh));
		assert_int_equal(find_exact(buf, n, &entry), -EINVAL);
		nh.n_descsz = 4;
		memcpy(buf, &nh, sizeof(nh));
	}
	assert_int_equal(entry, 0x77);
}

static void test_find_bad_desc_size(void **state)
{
	uint8_t buf[64] = { 0 };
	uint8_t desc[16];
	uint64_t entry = 0x77;

	(void)state;
	memset(desc, 0x10, sizeof(desc));
	const uint32_t sizes[] = { 0, 1, 2, 3, 5, 6, 7, 12, 16 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = put_note(buf, "Xen", 4, XEN_ELFNOTE_PHYS32_ENTRY, desc, sizes[i]);

		assert_int_equal(find_exact(buf, n, &entry), -EINVAL);
	}
	assert_int_equal(entry, 0x77);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pvh_auto_loads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_forced_loads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_linux64_forced_uses_e_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_note_is_linux64, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_note_with_8_byte_desc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh_note_after_build_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_segments_span_kernel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_pt_load_is_ignored, setup, teardown),
		cmocka_unit_test(test_segments_around_mmio_hole),
		cmocka_unit_test_setup_teardown(test_err_is_truncated_not_overrun, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_shorter_than_claimed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_boot_load_kernel_rejects_non_images, setup,
						teardown),
		REFUSED(m_bad_magic),
		REFUSED(m_class32),
		REFUSED(m_big_endian),
		REFUSED(m_machine_i386),
		REFUSED(m_machine_aarch64),
		REFUSED(m_type_dyn),
		REFUSED(m_type_rel),
		REFUSED(m_phnum_zero),
		REFUSED(m_phnum_65),
		REFUSED(m_phnum_max),
		REFUSED(m_phentsize_32bit),
		REFUSED(m_phentsize_zero),
		REFUSED(m_phoff_at_end),
		REFUSED(m_phoff_huge),
		REFUSED(m_phdrs_cross_end),
		REFUSED(m_seg_truncated),
		REFUSED(m_seg_offset_huge),
		REFUSED(m_seg_filesz_huge),
		REFUSED(m_filesz_gt_memsz),
		REFUSED(m_paddr_zero),
		REFUSED(m_paddr_below_1m),
		REFUSED(m_paddr_beyond_ram),
		REFUSED(m_seg_crosses_ram_end),
		REFUSED(m_paddr_overflow),
		REFUSED(m_memsz_huge),
		REFUSED(m_too_short),
		REFUSED_LATE(m_pvh_entry_outside),
		REFUSED_LATE(m_pvh_entry_at_end),
		HOSTILE(m_e_entry_outside, BOOT_PROTO_LINUX64, -ENOEXEC, false),
		HOSTILE(m_e_entry_below, BOOT_PROTO_LINUX64, -ENOEXEC, false),
		REFUSED(m_no_pt_load),
		REFUSED(m_only_empty_load),
		REFUSED_LATE(m_note_namesz_huge),
		REFUSED_LATE(m_note_descsz_huge),
		REFUSED_LATE(m_note_desc_2),
		REFUSED_LATE(m_note_desc_16),
		REFUSED_LATE(m_note_truncated),
		REFUSED_LATE(m_note_seg_past_end),
		REFUSED_LATE(m_note_seg_offset_huge),
		REFUSED_LATE(m_note_seg_too_large),
		HOSTILE(m_drop_note, BOOT_PROTO_PVH, -ENOEXEC, false),
		cmocka_unit_test(test_find_4_byte_desc),
		cmocka_unit_test(test_find_8_byte_desc),
		cmocka_unit_test(test_find_after_other_notes),
		cmocka_unit_test(test_find_absent),
		cmocka_unit_test(test_find_empty),
		cmocka_unit_test(test_find_truncated),
		cmocka_unit_test(test_find_huge_sizes),
		cmocka_unit_test(test_find_bad_desc_size),
	};

	return cmocka_run_group_tests_name("elf", tests, NULL, NULL);
}
