/* bzImage loader (Linux 64-bit boot protocol). Images are synthesized with
 * the kernel's own struct boot_params, so the offsets mote reads by hand are
 * checked against <asm/bootparam.h>.
 *
 * Tests named test_regression_* are regression tests for defects found and fixed
 * in vmm/ (see the comment on each). */
#include <errno.h>
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
#define RAM_SIZE (64 * MIB)
#define BZ_BUF 0x8000
#define SETUP_SECTS 4
#define PAYLOAD_OFF ((SETUP_SECTS + 1) * 512)
#define PAYLOAD_SIZE 0x3000
#define BZ_SIZE (PAYLOAD_OFF + PAYLOAD_SIZE)
#define HDR_JUMP_LEN 0x6a /* the header ends at 0x202 + 0x6a = 0x26c (protocol 2.15) */
#define PREF_ADDRESS 0x1000000ULL /* LOAD_PHYSICAL_ADDR of a default x86_64 kernel */
#define INIT_SIZE (8 * MIB)
#define FILL 0xcc

_Static_assert(offsetof(struct boot_params, hdr) == SETUP_HEADER_OFFSET, "setup header offset");
_Static_assert(offsetof(struct boot_params, hdr.boot_flag) == 0x1fe, "boot_flag");
_Static_assert(offsetof(struct boot_params, hdr.header) == 0x202, "HdrS");
_Static_assert(offsetof(struct boot_params, hdr.version) == 0x206, "version");
_Static_assert(offsetof(struct boot_params, hdr.loadflags) == 0x211, "loadflags");
_Static_assert(offsetof(struct boot_params, hdr.initrd_addr_max) == 0x22c, "initrd_addr_max");
_Static_assert(offsetof(struct boot_params, hdr.xloadflags) == 0x236, "xloadflags");
_Static_assert(offsetof(struct boot_params, hdr.cmdline_size) == 0x238, "cmdline_size");
_Static_assert(offsetof(struct boot_params, hdr.init_size) == 0x260, "init_size");

struct bz {
	union {
		struct boot_params bp;
		uint8_t b[BZ_BUF];
	} u;
	size_t len;
};

struct hostile_case {
	void (*mutate)(struct bz *im);
	enum boot_protocol want;
	const char *err_has; /* a word the message must contain, or NULL */
};

struct fixture {
	struct guest_mem mem;
	struct bz im;
	struct boot_info bi;
	char err[BOOT_ERR_LEN];
	const struct hostile_case *hc;
};

static uint8_t payload_byte(size_t i)
{
	return (uint8_t)(i * 13 + 1);
}

static void build_bz(struct bz *im)
{
	struct setup_header *h = &im->u.bp.hdr;

	memset(im, 0, sizeof(*im));
	im->len = BZ_SIZE;
	h->setup_sects = SETUP_SECTS;
	h->boot_flag = 0xaa55;
	im->u.b[0x200] = 0xeb; /* short jmp over the header */
	im->u.b[0x201] = HDR_JUMP_LEN;
	h->header = 0x53726448;
	h->version = 0x020f;
	h->loadflags = LOADED_HIGH;
	h->initrd_addr_max = 0x7fffffff;
	h->kernel_alignment = 0x200000;
	h->relocatable_kernel = 1;
	h->xloadflags = XLF_KERNEL_64;
	h->cmdline_size = 2047;
	h->pref_address = PREF_ADDRESS;
	h->init_size = INIT_SIZE;
	for (size_t i = 0; i < PAYLOAD_SIZE; i++)
		im->u.b[PAYLOAD_OFF + i] = payload_byte(i);
}

static int memfd_with(const void *buf, size_t len)
{
	int fd = memfd_create("mote-test-bz", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	return fd;
}

static int load_kernel(struct fixture *f, enum boot_protocol want)
{
	int fd = memfd_with(f->im.u.b, f->im.len);
	int ret;

	memset(f->err, 0, sizeof(f->err));
	ret = boot_load_kernel(fd, &f->mem, want, &f->bi, f->err, sizeof(f->err));
	close(fd);
	return ret;
}

static void assert_payload_at(const struct fixture *f, uint64_t gpa, size_t len)
{
	const uint8_t *p = guest_mem_gpa_to_hva(&f->mem, gpa, len);

	assert_non_null(p);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(p[i], payload_byte(i));
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

static int setup_ram(void **state, uint64_t ram)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || guest_mem_init(&f->mem, ram) != 0) {
		free(f);
		return -1;
	}
	memset(f->mem.base + LAYOUT_HIMEM_START, FILL, 2 * PAYLOAD_SIZE);
	f->hc = *state;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_ram(state, RAM_SIZE);
}

static int setup_20m(void **state)
{
	return setup_ram(state, 20 * MIB);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	guest_mem_destroy(&f->mem);
	free(f);
	return 0;
}

static void test_loads(void **state)
{
	struct fixture *f = *state;
	const uint32_t hlen = 0x202 + HDR_JUMP_LEN - SETUP_HEADER_OFFSET;

	build_bz(&f->im);
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_int_equal(f->bi.format, KERNEL_BZIMAGE);
	assert_int_equal(f->bi.protocol, BOOT_PROTO_LINUX64);
	/* startup_64 is 0x200 into the protected-mode kernel, loaded at 1 MiB. */
	assert_int_equal(f->bi.entry, 0x100200);
	assert_int_equal(f->bi.kernel_start, 0x100000);
	/* At least init_size (the decompressor's buffer) is reserved. */
	assert_true(f->bi.kernel_end >= 0x100000 + INIT_SIZE);
	assert_int_equal(f->bi.cmdline_max, 2047);
	assert_int_equal(f->bi.initrd_addr_max, 0x7fffffff);
	assert_payload_at(f, 0x100000, PAYLOAD_SIZE);
	/* The setup sectors stay out of guest RAM. */
	assert_ram_is(f, 0x100000 + PAYLOAD_SIZE, FILL, PAYLOAD_SIZE);
	assert_int_equal(f->bi.setup_header_len, hlen);
	assert_memory_equal(f->bi.setup_header, f->im.u.b + SETUP_HEADER_OFFSET, hlen);
}

static void test_linux64_requested(void **state)
{
	struct fixture *f = *state;

	build_bz(&f->im);
	assert_int_equal(load_kernel(f, BOOT_PROTO_LINUX64), 0);
	assert_int_equal(f->bi.protocol, BOOT_PROTO_LINUX64);
	assert_int_equal(f->bi.entry, 0x100200);
}

static void test_setup_sects_zero_means_four(void **state)
{
	struct fixture *f = *state;

	build_bz(&f->im);
	f->im.u.bp.hdr.setup_sects = 0;
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_payload_at(f, 0x100000, PAYLOAD_SIZE);
}

static void test_setup_sects_one(void **state)
{
	struct fixture *f = *state;

	build_bz(&f->im);
	f->im.u.bp.hdr.setup_sects = 1;
	/* The payload now starts at 1024: 2 sectors of setup. */
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	const uint8_t *p = guest_mem_gpa_to_hva(&f->mem, 0x100000, f->im.len - 1024);
	assert_non_null(p);
	assert_memory_equal(p, f->im.u.b + 1024, f->im.len - 1024);
}

static void test_cmdline_size_defaults_and_clamps(void **state)
{
	struct fixture *f = *state;

	build_bz(&f->im);
	f->im.u.bp.hdr.cmdline_size = 0;
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_int_equal(f->bi.cmdline_max, 255);
	build_bz(&f->im);
	f->im.u.bp.hdr.cmdline_size = 0xffffffff;
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_int_equal(f->bi.cmdline_max, LAYOUT_CMDLINE_MAX - 1);
}

static void test_initrd_addr_max_variants(void **state)
{
	struct fixture *f = *state;

	build_bz(&f->im);
	f->im.u.bp.hdr.initrd_addr_max = 0;
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_int_equal(f->bi.initrd_addr_max, 0x37ffffff); /* the pre-2.03 default */
	build_bz(&f->im);
	f->im.u.bp.hdr.xloadflags |= XLF_CAN_BE_LOADED_ABOVE_4G;
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_int_equal(f->bi.initrd_addr_max, LAYOUT_MMIO_HOLE_START - 1);
}

static void test_header_length_byte(void **state)
{
	struct fixture *f = *state;

	build_bz(&f->im);
	f->im.u.b[0x201] = 0xff; /* claims a header past the end of the setup header */
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_int_equal(f->bi.setup_header_len, SETUP_HEADER_MAX);
	assert_memory_equal(f->bi.setup_header, f->im.u.b + SETUP_HEADER_OFFSET, SETUP_HEADER_MAX);
	build_bz(&f->im);
	f->im.u.b[0x201] = 0;
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_int_equal(f->bi.setup_header_len, 0x202 - SETUP_HEADER_OFFSET);
}

static void test_payload_larger_than_init_size(void **state)
{
	struct fixture *f = *state;

	build_bz(&f->im);
	f->im.u.bp.hdr.init_size = 0x100;
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	assert_true(f->bi.kernel_end >= 0x100000 + PAYLOAD_SIZE);
	assert_payload_at(f, 0x100000, PAYLOAD_SIZE);
}

static void test_file_shorter_than_claimed(void **state)
{
	struct fixture *f = *state;
	int fd;

	build_bz(&f->im);
	fd = memfd_with(f->im.u.b, f->im.len);
	assert_int_equal(bzimage_load(fd, f->im.len + 0x1000, &f->mem, BOOT_PROTO_AUTO, &f->bi,
				      f->err, sizeof(f->err)), -EIO);
	close(fd);
	assert_true(strlen(f->err) > 0);
}

/* Regression (fixed; was vmm/bzimage.c:66-84, bzimage_load): the loader reserves
 * [1 MiB, 1 MiB + init_size) for the kernel, but the boot protocol
 * (Documentation/arch/x86/boot.rst, "init_size") says the kernel runs from
 *     runtime_start = relocatable ? align_up(max(load, pref_address),
 *                                            kernel_alignment)
 *                                 : pref_address
 * and needs [runtime_start, runtime_start + init_size): the 64-bit entry of
 * arch/x86/boot/compressed/head_64.S never decompresses below
 * LOAD_PHYSICAL_ADDR (16 MiB by default). kernel_end is therefore too low:
 * boot_load_initrd() may put the initrd where the kernel decompresses, and
 * the RAM check passes VMs too small to boot. */
static void test_regression_kernel_end_ignores_pref_address(void **state)
{
	struct fixture *f = *state;

	build_bz(&f->im);
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), 0);
	if (f->bi.kernel_end < PREF_ADDRESS + INIT_SIZE)
		fail_msg("kernel_end %#llx, but the kernel decompresses into [%#llx, %#llx)",
			 (unsigned long long)f->bi.kernel_end, PREF_ADDRESS,
			 PREF_ADDRESS + INIT_SIZE);
}

/* Regression (fixed; was same place): with 20 MiB of RAM the kernel above needs
 * [16 MiB, 24 MiB) and cannot boot; the loader should say so. */
static void test_regression_ram_check_ignores_pref_address(void **state)
{
	struct fixture *f = *state;

	build_bz(&f->im);
	assert_int_equal(load_kernel(f, BOOT_PROTO_AUTO), -ENOEXEC);
	assert_true(strlen(f->err) > 0);
}

/* --- hostile images ------------------------------------------------------- */

static void test_hostile(void **state)
{
	struct fixture *f = *state;
	int ret;

	build_bz(&f->im);
	f->hc->mutate(&f->im);
	ret = load_kernel(f, f->hc->want);
	assert_int_equal(ret, -ENOEXEC);
	if (strlen(f->err) == 0)
		fail_msg("error path left no message");
	if (f->hc->err_has && !strstr(f->err, f->hc->err_has))
		fail_msg("message '%s' does not mention '%s'", f->err, f->hc->err_has);
	assert_ram_is(f, LAYOUT_HIMEM_START, FILL, PAYLOAD_SIZE);
}

static void m_too_short(struct bz *im) { im->len = 1023; }
static void m_no_boot_flag(struct bz *im) { im->u.bp.hdr.boot_flag = 0x55aa; }
static void m_no_hdrs(struct bz *im) { im->u.bp.hdr.header = 0x53726449; }
static void m_version_2_11(struct bz *im) { im->u.bp.hdr.version = 0x020b; }
static void m_version_zero(struct bz *im) { im->u.bp.hdr.version = 0; }
static void m_no_kernel_64(struct bz *im) { im->u.bp.hdr.xloadflags = XLF_CAN_BE_LOADED_ABOVE_4G; }
static void m_not_loaded_high(struct bz *im) { im->u.bp.hdr.loadflags = CAN_USE_HEAP; }
static void m_setup_sects_max(struct bz *im) { im->u.bp.hdr.setup_sects = 255; }
static void m_setup_sects_past_end(struct bz *im) { im->u.bp.hdr.setup_sects = BZ_SIZE / 512; }
static void m_no_payload(struct bz *im) { im->len = PAYLOAD_OFF; }
static void m_init_size_huge(struct bz *im) { im->u.bp.hdr.init_size = 0xffffffff; }
static void m_init_size_over_ram(struct bz *im) { im->u.bp.hdr.init_size = (uint32_t)RAM_SIZE; }
static void m_none(struct bz *im) { (void)im; }

#define HOSTILE(m, want_, word)                                                              \
	{ #m, test_hostile, setup, teardown, &(struct hostile_case){ m, want_, word } }
#define REFUSED(m) HOSTILE(m, BOOT_PROTO_AUTO, NULL)

int main(void)
{
	struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_loads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_linux64_requested, setup, teardown),
		cmocka_unit_test_setup_teardown(test_setup_sects_zero_means_four, setup, teardown),
		cmocka_unit_test_setup_teardown(test_setup_sects_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cmdline_size_defaults_and_clamps, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_initrd_addr_max_variants, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_length_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_payload_larger_than_init_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_shorter_than_claimed, setup, teardown),
		REFUSED(m_too_short),
		REFUSED(m_no_boot_flag),
		REFUSED(m_no_hdrs),
		HOSTILE(m_version_2_11, BOOT_PROTO_AUTO, "2.11"),
		REFUSED(m_version_zero),
		HOSTILE(m_no_kernel_64, BOOT_PROTO_AUTO, "XLF_KERNEL_64"),
		HOSTILE(m_not_loaded_high, BOOT_PROTO_AUTO, "LOADED_HIGH"),
		REFUSED(m_setup_sects_max),
		REFUSED(m_setup_sects_past_end),
		REFUSED(m_no_payload),
		HOSTILE(m_init_size_huge, BOOT_PROTO_AUTO, "--mem-mib"),
		HOSTILE(m_init_size_over_ram, BOOT_PROTO_AUTO, "--mem-mib"),
		HOSTILE(m_none, BOOT_PROTO_PVH, "PVH"),
		cmocka_unit_test_setup_teardown(test_regression_kernel_end_ignores_pref_address, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_regression_ram_check_ignores_pref_address, setup_20m,
						teardown),
	};

	size_t n = sizeof(tests) / sizeof(tests[0]);

	return _cmocka_run_group_tests("bzimage", tests, n, NULL, NULL);
}
