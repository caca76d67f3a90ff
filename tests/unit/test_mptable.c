/* Intel MP table: parsed back from guest memory the way a guest OS scans it
 * (Intel MultiProcessor Specification 1.4, chapter 4). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/boot.h"
#include "vmm/layout.h"
#include "vmm/mem.h"

#define MIB (1ULL << 20)
#define RAM_SIZE (2 * MIB)
#define FILL 0xee
#define IOAPIC_PINS 24 /* KVM's in-kernel IOAPIC */

enum { MP_PROCESSOR, MP_BUS, MP_IOAPIC, MP_INTSRC, MP_LINTSRC };

struct parsed {
	unsigned cpus, buses, ioapics, intsrcs, lintsrcs, entries;
	uint8_t cpu_id[256];
	uint8_t cpu_flags[256];
	uint8_t ioapic_id, ioapic_flags;
	uint32_t ioapic_addr;
	uint8_t irq_seen[IOAPIC_PINS];
	uint16_t table_len;
};

struct fixture {
	struct guest_mem mem;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || guest_mem_init(&f->mem, RAM_SIZE) != 0) {
		free(f);
		return -1;
	}
	memset(f->mem.base + LAYOUT_EBDA_ADDR, FILL, 0x100000 - LAYOUT_EBDA_ADDR);
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

static uint8_t sum8(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s = (uint8_t)(s + *p++);
	return s;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }

/* Finds the floating pointer by scanning the EBDA's first KiB on 16-byte
 * boundaries, as Linux's smp_scan_config() does, checks both checksums,
 * then walks the entries. */
static void parse(const struct guest_mem *mem, struct parsed *out)
{
	const uint8_t *ebda = guest_mem_gpa_to_hva(mem, LAYOUT_EBDA_ADDR, 1024);
	const uint8_t *mpf = NULL;

	memset(out, 0, sizeof(*out));
	assert_non_null(ebda);
	for (size_t off = 0; off < 1024; off += 16) {
		if (memcmp(ebda + off, "_MP_", 4) == 0) {
			mpf = ebda + off;
			break;
		}
	}
	assert_non_null(mpf);
	assert_ptr_equal(mpf, ebda); /* at the very start of the EBDA */
	assert_int_equal(mpf[8], 1);     /* length in 16-byte units */
	assert_int_equal(mpf[9], 4);     /* spec 1.4 */
	assert_int_equal(sum8(mpf, 16), 0);
	assert_int_equal(mpf[11], 0);    /* feature byte 1: a config table follows */

	uint32_t physptr = rd32(mpf + 4);
	assert_int_equal(physptr, LAYOUT_EBDA_ADDR + 16);
	const uint8_t *mpc = guest_mem_gpa_to_hva(mem, physptr, 44);
	assert_non_null(mpc);
	assert_memory_equal(mpc, "PCMP", 4);
	out->table_len = rd16(mpc + 4);
	assert_true(out->table_len >= 44);
	mpc = guest_mem_gpa_to_hva(mem, physptr, out->table_len);
	assert_non_null(mpc);
	assert_int_equal(mpc[6], 4);
	assert_int_equal(sum8(mpc, out->table_len), 0);
	assert_int_equal(rd32(mpc + 36), LAYOUT_LAPIC_ADDR);
	assert_int_equal(rd16(mpc + 40), 0); /* no extended entries */
	/* The whole table sits in the EBDA, below the VGA hole at 640 KiB. */
	assert_true(physptr + out->table_len <= 0xa0000);

	uint16_t count = rd16(mpc + 34);
	const uint8_t *p = mpc + 44, *end = mpc + out->table_len;
	while (p < end) {
		switch (p[0]) {
		case MP_PROCESSOR:
			assert_true(p + 20 <= end);
			out->cpu_id[out->cpus] = p[1];
			out->cpu_flags[out->cpus] = p[3];
			out->cpus++;
			p += 20;
			break;
		case MP_BUS:
			assert_memory_equal(p + 2, "ISA", 3);
			out->buses++;
			p += 8;
			break;
		case MP_IOAPIC:
			out->ioapic_id = p[1];
			out->ioapic_flags = p[3];
			out->ioapic_addr = rd32(p + 4);
			out->ioapics++;
			p += 8;
			break;
		case MP_INTSRC:
			assert_int_equal(p[1], 0);            /* INT, not NMI/SMI/ExtINT */
			assert_int_equal(p[4], 0);            /* source bus: the ISA bus */
			assert_true(p[5] < IOAPIC_PINS);
			assert_int_equal(p[6], out->ioapic_id);
			assert_int_equal(p[7], p[5]);         /* IRQ n -> pin n */
			out->irq_seen[p[5]]++;
			out->intsrcs++;
			p += 8;
			break;
		case MP_LINTSRC:
			out->lintsrcs++;
			p += 8;
			break;
		default:
			fail_msg("unknown MP entry type %u at offset %td", p[0], p - mpc);
		}
		out->entries++;
	}
	assert_ptr_equal(p, end); /* the entries fill the table exactly */
	assert_int_equal(count, out->entries);
}

static void check_cpus(void **state, unsigned n)
{
	struct fixture *f = *state;
	struct parsed mp;

	assert_int_equal(mptable_write(&f->mem, n), 0);
	parse(&f->mem, &mp);
	assert_int_equal(mp.cpus, n);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(mp.cpu_id[i], i);
		assert_true(mp.cpu_flags[i] & 1); /* enabled */
		assert_int_equal(!!(mp.cpu_flags[i] & 2), i == 0); /* BSP only on CPU 0 */
	}
	assert_int_equal(mp.buses, 1);
	assert_int_equal(mp.ioapics, 1);
	assert_int_equal(mp.ioapic_id, n); /* distinct from every LAPIC id */
	assert_true(mp.ioapic_flags & 1);
	assert_int_equal(mp.ioapic_addr, LAYOUT_IOAPIC_ADDR);
	/* Every IOAPIC pin is routed once, from the bus IRQ of the same
	 * number: 0-15 for ISA devices, 16-23 for virtio-mmio. */
	assert_int_equal(mp.intsrcs, IOAPIC_PINS);
	for (unsigned pin = 0; pin < IOAPIC_PINS; pin++)
		assert_int_equal(mp.irq_seen[pin], 1);
	assert_int_equal(mp.lintsrcs, 2);
}

static void test_one_cpu(void **state) { check_cpus(state, 1); }
static void test_two_cpus(void **state) { check_cpus(state, 2); }
static void test_max_cpus(void **state) { check_cpus(state, MPTABLE_MAX_CPUS); }

static void test_rewrite_with_fewer_cpus(void **state)
{
	struct fixture *f = *state;
	struct parsed mp;

	assert_int_equal(mptable_write(&f->mem, MPTABLE_MAX_CPUS), 0);
	assert_int_equal(mptable_write(&f->mem, 1), 0);
	parse(&f->mem, &mp);
	assert_int_equal(mp.cpus, 1);
	/* Nothing of the larger table is left after the new one. */
	const uint8_t *tail = guest_mem_gpa_to_hva(&f->mem, LAYOUT_EBDA_ADDR + 16 + mp.table_len,
						   20 * (MPTABLE_MAX_CPUS - 1));
	assert_non_null(tail);
	for (unsigned i = 0; i < 20 * (MPTABLE_MAX_CPUS - 1); i++)
		assert_int_equal(tail[i], 0);
}

static void test_bad_cpu_counts(void **state)
{
	struct fixture *f = *state;
	const uint8_t *ebda = f->mem.base + LAYOUT_EBDA_ADDR;

	assert_int_equal(mptable_write(&f->mem, 0), -EINVAL);
	assert_int_equal(mptable_write(&f->mem, MPTABLE_MAX_CPUS + 1), -EINVAL);
	assert_int_equal(mptable_write(&f->mem, 255), -EINVAL);
	assert_int_equal(mptable_write(&f->mem, 256), -EINVAL); /* would wrap a u8 APIC id */
	assert_int_equal(mptable_write(&f->mem, UINT32_MAX), -EINVAL);
	for (int i = 0; i < 1024; i++)
		assert_int_equal(ebda[i], FILL);
}

static void test_table_fits_below_640k(void **state)
{
	/* RAM ending exactly at 640 KiB still holds the largest table. The
	 * public initialisers require 1 MiB, so build the layout by hand. */
	uint8_t *buf = calloc(1, 0xa0000);
	struct guest_mem mem = { .base = buf, .size = 0xa0000, .fd = -1, .nr_regions = 1 };
	struct parsed mp;

	(void)state;
	assert_non_null(buf);
	mem.regions[0] = (struct guest_mem_region){ .gpa = 0, .size = 0xa0000, .hva = buf };
	assert_int_equal(mptable_write(&mem, MPTABLE_MAX_CPUS), 0);
	parse(&mem, &mp);
	assert_int_equal(mp.cpus, MPTABLE_MAX_CPUS);
	free(buf);
}

static void test_too_little_memory(void **state)
{
	/* Not reachable through guest_mem_init*() (they require 1 MiB), but
	 * mptable_write() must still go through the checked door. */
	const uint64_t size = LAYOUT_EBDA_ADDR + 100;
	uint8_t *buf = malloc(size);
	struct guest_mem mem = { .base = buf, .size = size, .fd = -1, .nr_regions = 1 };

	(void)state;
	assert_non_null(buf);
	memset(buf, FILL, size);
	mem.regions[0] = (struct guest_mem_region){ .gpa = 0, .size = size, .hva = buf };
	assert_int_equal(mptable_write(&mem, 1), -EFAULT);
	for (uint64_t i = LAYOUT_EBDA_ADDR; i < size; i++)
		assert_int_equal(buf[i], FILL);
	free(buf);
}

static void test_ebda_is_reserved_in_memmap(void **state)
{
	struct fixture *f = *state;
	struct mem_range r[BOOT_MAX_MEM_RANGES];
	struct parsed mp;
	int n;

	assert_int_equal(mptable_write(&f->mem, MPTABLE_MAX_CPUS), 0);
	parse(&f->mem, &mp);
	n = boot_build_memmap(&f->mem, r, BOOT_MAX_MEM_RANGES);
	assert_true(n > 0);
	/* A guest must never reuse the MP table's bytes as RAM. */
	const uint64_t start = LAYOUT_EBDA_ADDR, end = LAYOUT_EBDA_ADDR + 16 + mp.table_len;
	for (int i = 0; i < n; i++)
		if (r[i].type == MEM_RANGE_RAM)
			assert_false(r[i].addr < end && start < r[i].addr + r[i].size);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_one_cpu, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_cpus, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_cpus, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rewrite_with_fewer_cpus, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_cpu_counts, setup, teardown),
		cmocka_unit_test(test_table_fits_below_640k),
		cmocka_unit_test(test_too_little_memory),
		cmocka_unit_test_setup_teardown(test_ebda_is_reserved_in_memmap, setup, teardown),
	};

	return cmocka_run_group_tests_name("mptable", tests, NULL, NULL);
}
