/* mote's IOAPIC (split irqchip): register access as Linux and the test
 * guest do it, the MSI each redirection entry asks for, edges held while
 * a pin is masked and sent on unmask, the guest's mistakes (bad pins,
 * odd access sizes, read-only bits), and the snapshot state.
 *
 * The MSI sender is a recorder instead of KVM_SIGNAL_MSI. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/ioapic.h"
#include "vmm/irq.h"

#define MAX_SENT 16

struct recorder {
	unsigned n;
	uint64_t addr[MAX_SENT];
	uint32_t data[MAX_SENT];
	int fail;
};

static int record_msi(void *opaque, uint64_t addr, uint32_t data)
{
	struct recorder *r = opaque;

	if (r->fail)
		return r->fail;
	if (r->n < MAX_SENT) {
		r->addr[r->n] = addr;
		r->data[r->n] = data;
	}
	r->n++;
	return 0;
}

struct fixture {
	struct ioapic io;
	struct recorder rec;
};

static int setup(void **state)
{
	static struct fixture f;

	memset(&f, 0, sizeof(f));
	ioapic_init(&f.io, -1, record_msi, &f.rec);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ioapic_destroy(&f->io);
	return 0;
}

static void wr(struct ioapic *io, uint64_t off, uint32_t v)
{
	ioapic_mmio_write(io, off, (const uint8_t *)&v, 4);
}

static uint32_t rd(struct ioapic *io, uint64_t off)
{
	uint32_t v;

	ioapic_mmio_read(io, off, (uint8_t *)&v, 4);
	return v;
}

static void reg_write(struct ioapic *io, uint32_t reg, uint32_t v)
{
	wr(io, 0x00, reg);
	wr(io, 0x10, v);
}

static uint32_t reg_read(struct ioapic *io, uint32_t reg)
{
	wr(io, 0x00, reg);
	return rd(io, 0x10);
}

/* What Linux does to route a pin: high half (destination) first, then
 * the low half with vector, mode and mask. */
static void route(struct ioapic *io, unsigned pin, uint8_t dest, uint32_t low)
{
	reg_write(io, 0x10 + 2 * pin + 1, (uint32_t)dest << 24);
	reg_write(io, 0x10 + 2 * pin, low);
}

static void test_identification(void **state)
{
	struct fixture *f = *state;

	uint32_t ver = reg_read(&f->io, 0x01);
	assert_int_equal(ver & 0xff, IOAPIC_VERSION);
	assert_int_equal((ver >> 16) & 0xff, IOAPIC_NR_PINS - 1);
	/* The ID is writable (bits 24-27), the version is not. */
	reg_write(&f->io, 0x00, 0x05000000);
	assert_int_equal(reg_read(&f->io, 0x00), 0x05000000);
	assert_int_equal(reg_read(&f->io, 0x02), 0x05000000);
	reg_write(&f->io, 0x01, 0);
	assert_int_equal(reg_read(&f->io, 0x01), ver);
	/* IOREGSEL reads back. */
	wr(&f->io, 0x00, 0x12);
	assert_int_equal(rd(&f->io, 0x00), 0x12);
}

static void test_reset_state_masked(void **state)
{
	struct fixture *f = *state;

	for (unsigned pin = 0; pin < IOAPIC_NR_PINS; pin++)
		assert_true(reg_read(&f->io, 0x10 + 2 * pin) & 0x10000);
	/* An edge on a masked pin sends nothing. */
	assert_int_equal(ioapic_raise(&f->io, 5), 0);
	assert_int_equal(f->rec.n, 0);
}

static void test_unmasked_edge_sends_msi(void **state)
{
	struct fixture *f = *state;

	route(&f->io, 5, 1, 0x41); /* vector 0x41, fixed, physical, edge, unmasked */
	assert_int_equal(ioapic_raise(&f->io, 5), 0);
	assert_int_equal(f->rec.n, 1);
	assert_int_equal(f->rec.addr[0], 0xfee00000ull | (1u << 12));
	assert_int_equal(f->rec.data[0], 0x41);
	/* Every edge is one MSI. */
	ioapic_raise(&f->io, 5);
	ioapic_raise(&f->io, 5);
	assert_int_equal(f->rec.n, 3);
	/* Other pins stay masked. */
	ioapic_raise(&f->io, 6);
	assert_int_equal(f->rec.n, 3);
}

static void test_entry_to_msi_modes(void **state)
{
	(void)state;
	uint64_t addr;
	uint32_t data;

	/* Lowest priority (1), logical destination 0x03, vector 0x30. */
	ioapic_entry_to_msi(((uint64_t)0x03 << 56) | (1u << 11) | (1u << 8) | 0x30, &addr, &data);
	assert_int_equal(addr, 0xfee00000ull | (0x03u << 12) | (1u << 2));
	assert_int_equal(data, (1u << 8) | 0x30);
	/* Trigger mode, polarity and mask never leak into the MSI: mote only
	 * sends edges (no EOI comes back to it with the split irqchip). */
	ioapic_entry_to_msi((1u << 15) | (1u << 13) | (1u << 16) | 0x55, &addr, &data);
	assert_int_equal(addr, 0xfee00000ull);
	assert_int_equal(data, 0x55);
}

static void test_masked_edge_held_until_unmask(void **state)
{
	struct fixture *f = *state;

	route(&f->io, 7, 0, 0x10000 | 0x42); /* masked */
	ioapic_raise(&f->io, 7);
	ioapic_raise(&f->io, 7); /* edges merge, as on the chip */
	assert_int_equal(f->rec.n, 0);
	/* Rewriting the entry still masked sends nothing. */
	reg_write(&f->io, 0x10 + 14, 0x10000 | 0x43);
	assert_int_equal(f->rec.n, 0);
	/* Unmask: exactly one MSI, with the vector in force now. */
	reg_write(&f->io, 0x10 + 14, 0x43);
	assert_int_equal(f->rec.n, 1);
	assert_int_equal(f->rec.data[0], 0x43);
	/* Nothing left over. */
	reg_write(&f->io, 0x10 + 14, 0x10000 | 0x43);
	reg_write(&f->io, 0x10 + 14, 0x43);
	assert_int_equal(f->rec.n, 1);
}

static void test_extint_not_sent(void **state)
{
	struct fixture *f = *state;

	route(&f->io, 0, 0, (7u << 8)); /* ExtINT: there is no 8259 */
	ioapic_raise(&f->io, 0);
	assert_int_equal(f->rec.n, 0);
	/* Reserved delivery modes never reach KVM either. */
	route(&f->io, 1, 0, (3u << 8) | 0x40);
	route(&f->io, 2, 0, (6u << 8) | 0x40);
	ioapic_raise(&f->io, 1);
	ioapic_raise(&f->io, 2);
	assert_int_equal(f->rec.n, 0);
	assert_int_equal(f->io.nr_dropped, 3);
	/* NMI (4) is a legitimate mode. */
	route(&f->io, 3, 0, (4u << 8));
	ioapic_raise(&f->io, 3);
	assert_int_equal(f->rec.n, 1);
	assert_int_equal(f->rec.data[0], 4u << 8);
}

static void test_guest_mistakes(void **state)
{
	struct fixture *f = *state;

	/* Pins past the last: no register, no crash. */
	assert_int_equal(ioapic_raise(&f->io, IOAPIC_NR_PINS), -EINVAL);
	assert_int_equal(ioapic_raise(&f->io, 1000), -EINVAL);
	reg_write(&f->io, 0x10 + 2 * IOAPIC_NR_PINS, 0x41);
	assert_int_equal(reg_read(&f->io, 0x10 + 2 * IOAPIC_NR_PINS), 0);
	reg_write(&f->io, 0xff, 0xffffffff);
	assert_int_equal(reg_read(&f->io, 0xff), 0);
	/* Only 32-bit accesses count. */
	uint8_t b = 0x01;
	ioapic_mmio_write(&f->io, 0x00, &b, 1);
	assert_int_equal(rd(&f->io, 0x00), 0xff);
	uint64_t q = 0xdeadbeef;
	ioapic_mmio_read(&f->io, 0x10, (uint8_t *)&q, 8);
	assert_int_equal(q, 0);
	/* Offsets other than IOREGSEL/IOWIN read zero. */
	assert_int_equal(rd(&f->io, 0x20), 0);
	assert_int_equal(rd(&f->io, 0xffc), 0);
	/* Delivery status and remote IRR are read-only. */
	reg_write(&f->io, 0x10 + 2 * 3, 0x10000 | (1u << 12) | (1u << 14) | 0x44);
	assert_int_equal(reg_read(&f->io, 0x10 + 2 * 3), 0x10000 | 0x44);
}

static void test_send_failure_counted(void **state)
{
	struct fixture *f = *state;

	route(&f->io, 9, 0, 0x45);
	f->rec.fail = -EINVAL;
	ioapic_raise(&f->io, 9);
	ioapic_raise(&f->io, 9);
	assert_int_equal(f->io.nr_send_errors, 2);
	assert_int_equal(f->io.nr_sent, 0);
	f->rec.fail = 0;
	ioapic_raise(&f->io, 9);
	assert_int_equal(f->io.nr_sent, 1);
}

static void test_state_round_trip(void **state)
{
	struct fixture *f = *state;
	struct ioapic_state s;

	reg_write(&f->io, 0x00, 0x02000000);
	route(&f->io, 4, 0, 0x24);
	route(&f->io, 11, 1, 0x10000 | 0x46);
	ioapic_raise(&f->io, 11); /* held */
	ioapic_get_state(&f->io, &s);
	assert_int_equal(s.pending, 1u << 11);

	struct fixture g;
	memset(&g, 0, sizeof(g));
	ioapic_init(&g.io, -1, record_msi, &g.rec);
	ioapic_set_state(&g.io, &s);
	assert_int_equal(g.rec.n, 0); /* restoring sends nothing */
	assert_int_equal(reg_read(&g.io, 0x00), 0x02000000);
	assert_int_equal(reg_read(&g.io, 0x10 + 8), 0x24);
	ioapic_raise(&g.io, 4);
	assert_int_equal(g.rec.n, 1);
	/* The held edge survives the snapshot and goes out on unmask. */
	reg_write(&g.io, 0x10 + 22, 0x46);
	assert_int_equal(g.rec.n, 2);
	assert_int_equal(g.rec.addr[1], 0xfee00000ull | (1u << 12));
	assert_int_equal(g.rec.data[1], 0x46);
	ioapic_destroy(&g.io);
}

static void test_state_sanitised(void **state)
{
	struct fixture *f = *state;
	struct ioapic_state s;

	memset(&s, 0xff, sizeof(s));
	s.redir[2] = 0x47; /* unmasked, with a "held" edge: impossible */
	ioapic_set_state(&f->io, &s);
	struct ioapic_state t;
	ioapic_get_state(&f->io, &t);
	assert_int_equal(t.id, 0xf);
	assert_int_equal(t.ioregsel, 0xff);
	assert_int_equal(t.reserved, 0);
	assert_int_equal(t.pending & ~((1u << IOAPIC_NR_PINS) - 1), 0);
	assert_int_equal(t.pending & (1u << 2), 0);
	assert_int_equal(t.redir[5] & ((1u << 12) | (1u << 14)), 0);
	assert_int_equal(f->rec.n, 0);
}

static void test_irq_line_split(void **state)
{
	struct fixture *f = *state;
	struct irq_line l;

	assert_int_equal(irq_line_init(&l, -1, &f->io, IOAPIC_NR_PINS), -EINVAL);
	assert_int_equal(irq_line_init(&l, -1, &f->io, 8), 0);
	assert_int_equal(l.irqfd, -1);
	route(&f->io, 8, 0, 0x48);
	irq_line_raise(&l);
	assert_int_equal(f->rec.n, 1);
	assert_int_equal(f->rec.data[0], 0x48);
	irq_line_destroy(&l);
	/* A line with nowhere to go does nothing. */
	irq_line_none(&l);
	irq_line_raise(&l);
	assert_int_equal(f->rec.n, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identification, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_state_masked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unmasked_edge_sends_msi, setup, teardown),
		cmocka_unit_test(test_entry_to_msi_modes),
		cmocka_unit_test_setup_teardown(test_masked_edge_held_until_unmask, setup, teardown),
		cmocka_unit_test_setup_teardown(test_extint_not_sent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guest_mistakes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_failure_counted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_sanitised, setup, teardown),
		cmocka_unit_test_setup_teardown(test_irq_line_split, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
