/* 8250/16550A model, driven through its registers with fake host ops that
 * record output bytes, IRQ edges and "FIFO has room" notifications. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/bus.h"
#include "vmm/layout.h"
#include "vmm/serial.h"

enum { RBR_THR, IER, IIR_FCR, LCR, MCR, LSR, MSR, SCR };

#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI  0x04
#define LSR_DR   0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MSR_CTS  0x10
#define MSR_DSR  0x20
#define MSR_RI   0x40
#define MSR_DCD  0x80

struct host {
	struct serial s;
	uint8_t out[512];
	unsigned nout;
	unsigned irqs;
	unsigned rooms;
};

static void host_output(void *opaque, uint8_t byte)
{
	struct host *h = opaque;

	if (h->nout < sizeof(h->out))
		h->out[h->nout] = byte;
	h->nout++;
}

static void host_irq(void *opaque)
{
	((struct host *)opaque)->irqs++;
}

static void host_rx_room(void *opaque)
{
	((struct host *)opaque)->rooms++;
}

static const struct serial_ops host_ops = {
	.output = host_output,
	.irq = host_irq,
	.rx_room = host_rx_room,
};

static int setup(void **state)
{
	struct host *h = calloc(1, sizeof(*h));

	if (!h)
		return -1;
	serial_init(&h->s, &host_ops, h);
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	struct host *h = *state;

	serial_destroy(&h->s);
	free(h);
	return 0;
}

static uint8_t rd(struct host *h, unsigned reg)
{
	return serial_reg_read(&h->s, reg);
}

static void wr(struct host *h, unsigned reg, uint8_t v)
{
	serial_reg_write(&h->s, reg, v);
}

static unsigned push(struct host *h, const char *bytes, unsigned len)
{
	return serial_rx_push(&h->s, (const uint8_t *)bytes, len);
}

static void test_thr_write_outputs(void **state)
{
	struct host *h = *state;

	wr(h, RBR_THR, 'h');
	wr(h, RBR_THR, 'i');
	wr(h, RBR_THR, 0);
	wr(h, RBR_THR, 0xff);
	assert_int_equal(h->nout, 4);
	assert_memory_equal(h->out, "hi\0\xff", 4);
	assert_int_equal(h->irqs, 0); /* IER is 0 after reset */
}

static void test_lsr(void **state)
{
	struct host *h = *state;

	/* The transmitter is always empty: bytes leave at once. */
	assert_int_equal(rd(h, LSR), LSR_THRE | LSR_TEMT);
	wr(h, RBR_THR, 'x');
	assert_int_equal(rd(h, LSR), LSR_THRE | LSR_TEMT);
	assert_int_equal(push(h, "ab", 2), 2);
	assert_int_equal(rd(h, LSR), LSR_THRE | LSR_TEMT | LSR_DR);
	rd(h, RBR_THR);
	assert_int_equal(rd(h, LSR) & LSR_DR, LSR_DR);
	rd(h, RBR_THR);
	assert_int_equal(rd(h, LSR), LSR_THRE | LSR_TEMT);
	/* LSR is read-only. */
	wr(h, LSR, 0);
	assert_int_equal(rd(h, LSR), LSR_THRE | LSR_TEMT);
}

static void test_rx_order(void **state)
{
	struct host *h = *state;

	assert_int_equal(push(h, "hello", 5), 5);
	assert_int_equal(serial_rx_room(&h->s), SERIAL_FIFO_SIZE - 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(rd(h, RBR_THR), "hello"[i]);
	assert_int_equal(serial_rx_room(&h->s), SERIAL_FIFO_SIZE);
	/* An empty FIFO reads as 0 and stays empty. */
	assert_int_equal(rd(h, RBR_THR), 0);
	assert_int_equal(serial_rx_room(&h->s), SERIAL_FIFO_SIZE);
	assert_int_equal(push(h, "", 0), 0);
	assert_int_equal(h->nout, 0); /* input never echoes to output */
}

static void test_rx_fifo_full(void **state)
{
	struct host *h = *state;
	uint8_t in[100];

	for (unsigned i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)i;
	assert_int_equal(serial_rx_push(&h->s, in, sizeof(in)), SERIAL_FIFO_SIZE);
	assert_int_equal(serial_rx_room(&h->s), 0);
	assert_int_equal(serial_rx_push(&h->s, in, 1), 0);
	/* The first 64 bytes, in order, nothing overwritten. */
	for (unsigned i = 0; i < SERIAL_FIFO_SIZE; i++)
		assert_int_equal(rd(h, RBR_THR), i);
	assert_int_equal(rd(h, LSR) & LSR_DR, 0);
}

static void test_rx_ring_wraps(void **state)
{
	struct host *h = *state;
	uint8_t in[SERIAL_FIFO_SIZE];
	unsigned next_in = 0, next_out = 0;

	/* Push and drain in uneven steps so head and tail wrap many times. */
	for (int round = 0; round < 20; round++) {
		unsigned want = serial_rx_room(&h->s);

		for (unsigned i = 0; i < want; i++)
			in[i] = (uint8_t)(next_in + i);
		assert_int_equal(serial_rx_push(&h->s, in, want), want);
		next_in += want;
		for (unsigned i = 0; i < 37u + (unsigned)round % 11; i++, next_out++)
			assert_int_equal(rd(h, RBR_THR), (uint8_t)next_out);
	}
}

static void test_rx_room_after_draining_below_half(void **state)
{
	struct host *h = *state;
	char in[SERIAL_FIFO_SIZE];

	memset(in, 'r', sizeof(in));
	assert_int_equal(push(h, in, SERIAL_FIFO_SIZE), SERIAL_FIFO_SIZE);
	assert_int_equal(push(h, in, 1), 0); /* the host now waits for room */
	for (int i = 0; i < SERIAL_FIFO_SIZE / 2; i++)
		rd(h, RBR_THR);
	assert_int_equal(h->rooms, 0); /* 32 left: not below half yet */
	rd(h, RBR_THR);
	assert_int_equal(h->rooms, 1);
	while (rd(h, LSR) & LSR_DR)
		rd(h, RBR_THR);
	assert_int_equal(h->rooms, 1); /* once per full FIFO */
}

static void test_rx_room_not_signalled_unless_full(void **state)
{
	struct host *h = *state;
	char in[SERIAL_FIFO_SIZE];

	memset(in, 'r', sizeof(in));
	assert_int_equal(push(h, in, SERIAL_FIFO_SIZE - 1), SERIAL_FIFO_SIZE - 1);
	while (rd(h, LSR) & LSR_DR)
		rd(h, RBR_THR);
	assert_int_equal(h->rooms, 0);
}

static void test_fcr_clears_rx(void **state)
{
	struct host *h = *state;
	char in[SERIAL_FIFO_SIZE];

	memset(in, 'c', sizeof(in));
	assert_int_equal(push(h, in, SERIAL_FIFO_SIZE), SERIAL_FIFO_SIZE);
	wr(h, IIR_FCR, 0x01 | 0x02); /* enable FIFOs, clear RX */
	assert_int_equal(rd(h, LSR) & LSR_DR, 0);
	assert_int_equal(serial_rx_room(&h->s), SERIAL_FIFO_SIZE);
	assert_int_equal(h->rooms, 1); /* the host may send again */
	assert_int_equal(push(h, "ok", 2), 2);
	assert_int_equal(rd(h, RBR_THR), 'o');
	assert_int_equal(rd(h, RBR_THR), 'k');
	/* With FIFOs enabled, IIR says so in bits 7:6 (a 16550A). */
	assert_int_equal(rd(h, IIR_FCR) & 0xc0, 0xc0);
	wr(h, IIR_FCR, 0);
	assert_int_equal(rd(h, IIR_FCR) & 0xc0, 0);
}

static void test_thri_raised_and_acknowledged(void **state)
{
	struct host *h = *state;

	assert_int_equal(rd(h, IIR_FCR), IIR_NONE);
	wr(h, IER, 0x02); /* enable THRI: THR is empty, so it fires now */
	assert_int_equal(h->irqs, 1);
	assert_int_equal(rd(h, IIR_FCR), IIR_THRI);
	/* Reading IIR acknowledged it. */
	assert_int_equal(rd(h, IIR_FCR), IIR_NONE);
	/* Rewriting the same IER does not re-raise it. */
	wr(h, IER, 0x02);
	assert_int_equal(h->irqs, 1);
	assert_int_equal(rd(h, IIR_FCR), IIR_NONE);
	/* Each byte sent empties THR again. */
	wr(h, RBR_THR, 'a');
	assert_int_equal(h->irqs, 2);
	assert_int_equal(rd(h, IIR_FCR), IIR_THRI);
	assert_int_equal(rd(h, IIR_FCR), IIR_NONE);
	/* Toggling THRI off and on re-raises (Linux's start_tx relies on it). */
	wr(h, IER, 0);
	wr(h, IER, 0x02);
	assert_int_equal(h->irqs, 3);
	assert_int_equal(rd(h, IIR_FCR), IIR_THRI);
}

static void test_no_irq_when_disabled(void **state)
{
	struct host *h = *state;

	wr(h, RBR_THR, 'a');
	assert_int_equal(push(h, "x", 1), 1);
	assert_int_equal(h->irqs, 0);
	assert_int_equal(rd(h, IIR_FCR), IIR_NONE);
}

static void test_rdi_raised_until_drained(void **state)
{
	struct host *h = *state;

	wr(h, IER, 0x01);
	assert_int_equal(h->irqs, 0);
	assert_int_equal(push(h, "ab", 2), 2);
	assert_int_equal(h->irqs, 1);
	assert_int_equal(rd(h, IIR_FCR), IIR_RDI);
	assert_int_equal(rd(h, IIR_FCR), IIR_RDI); /* IIR reads do not clear RDI */
	assert_int_equal(rd(h, RBR_THR), 'a');
	assert_int_equal(rd(h, IIR_FCR), IIR_RDI);
	assert_int_equal(rd(h, RBR_THR), 'b');
	assert_int_equal(rd(h, IIR_FCR), IIR_NONE);
}

static void test_rdi_has_priority_over_thri(void **state)
{
	struct host *h = *state;

	wr(h, IER, 0x03);
	assert_int_equal(push(h, "z", 1), 1);
	assert_int_equal(rd(h, IIR_FCR), IIR_RDI);
	/* Reading IIR while it shows RDI must not swallow the pending THRI. */
	assert_int_equal(rd(h, RBR_THR), 'z');
	assert_int_equal(rd(h, IIR_FCR), IIR_THRI);
	assert_int_equal(rd(h, IIR_FCR), IIR_NONE);
}

static void test_ier_keeps_low_nibble(void **state)
{
	struct host *h = *state;

	/* Linux's autoconfig writes 0x0f and expects it back, 0 likewise. */
	wr(h, IER, 0xff);
	assert_int_equal(rd(h, IER), 0x0f);
	wr(h, IER, 0);
	assert_int_equal(rd(h, IER), 0);
}

static void test_dlab_divisor_latch(void **state)
{
	struct host *h = *state;

	wr(h, LCR, 0x80);
	assert_int_equal(rd(h, RBR_THR), 12); /* 9600 baud left by "firmware" */
	wr(h, RBR_THR, 0x01);                 /* 115200 baud */
	wr(h, IER, 0x00);
	assert_int_equal(rd(h, RBR_THR), 0x01);
	assert_int_equal(rd(h, IER), 0x00);
	wr(h, IER, 0x5a);
	assert_int_equal(rd(h, IER), 0x5a); /* DLM keeps all 8 bits */
	assert_int_equal(h->nout, 0);      /* divisor writes are not output */
	assert_int_equal(h->irqs, 0);
	/* DLAB reads of register 0 leave received data alone. */
	assert_int_equal(push(h, "q", 1), 1);
	assert_int_equal(rd(h, RBR_THR), 0x01);
	wr(h, LCR, 0x03); /* 8N1, DLAB off */
	assert_int_equal(rd(h, LCR), 0x03);
	assert_int_equal(rd(h, IER), 0); /* the real IER, untouched by DLM writes */
	assert_int_equal(rd(h, RBR_THR), 'q');
	wr(h, RBR_THR, 'w');
	assert_int_equal(h->nout, 1);
	assert_int_equal(h->out[0], 'w');
}

static void test_loopback(void **state)
{
	struct host *h = *state;

	wr(h, IER, 0x01);
	wr(h, MCR, MCR_LOOP | MCR_RTS | MCR_OUT2);
	wr(h, RBR_THR, 'L');
	assert_int_equal(h->nout, 0); /* nothing reaches the host */
	assert_int_equal(rd(h, LSR) & LSR_DR, LSR_DR);
	assert_true(h->irqs >= 1);
	assert_int_equal(rd(h, IIR_FCR), IIR_RDI);
	assert_int_equal(rd(h, RBR_THR), 'L');
	/* Linux's autoconfig: MCR = LOOP|0x0a must read MSR[7:4] == 0x9. */
	assert_int_equal(rd(h, MSR) & 0xf0, 0x90);
	wr(h, MCR, MCR_LOOP | MCR_DTR | MCR_OUT1);
	assert_int_equal(rd(h, MSR), MSR_DSR | MSR_RI);
	wr(h, MCR, MCR_LOOP);
	assert_int_equal(rd(h, MSR), 0);
	wr(h, MCR, MCR_LOOP | 0x0f);
	assert_int_equal(rd(h, MSR), MSR_CTS | MSR_DSR | MSR_RI | MSR_DCD);
	/* Leaving loopback: output flows again, MSR shows a connected line. */
	wr(h, MCR, MCR_OUT2 | MCR_RTS | MCR_DTR);
	wr(h, RBR_THR, 'O');
	assert_int_equal(h->nout, 1);
	assert_int_equal(h->out[0], 'O');
	assert_int_equal(rd(h, MSR), MSR_DCD | MSR_DSR | MSR_CTS);
}

static void test_loopback_fifo_overrun(void **state)
{
	struct host *h = *state;

	wr(h, MCR, MCR_LOOP);
	for (int i = 0; i < SERIAL_FIFO_SIZE + 10; i++)
		wr(h, RBR_THR, (uint8_t)i);
	assert_int_equal(serial_rx_room(&h->s), 0);
	for (int i = 0; i < SERIAL_FIFO_SIZE; i++)
		assert_int_equal(rd(h, RBR_THR), i); /* the overflow was dropped */
	assert_int_equal(rd(h, LSR) & LSR_DR, 0);
	assert_int_equal(h->nout, 0);
}

static void test_mcr_and_scratch(void **state)
{
	struct host *h = *state;

	assert_int_equal(rd(h, MCR), MCR_OUT2); /* reset value */
	wr(h, MCR, 0xff);
	assert_int_equal(rd(h, MCR), 0x1f);
	wr(h, SCR, 0xa5);
	assert_int_equal(rd(h, SCR), 0xa5);
	wr(h, SCR, 0x5a);
	assert_int_equal(rd(h, SCR), 0x5a);
	assert_int_equal(h->nout, 0);
}

static void test_out_of_range_registers(void **state)
{
	struct host *h = *state;
	const unsigned regs[] = { 8, 9, 15, 255, 1000, 0x10000, UINT_MAX };

	wr(h, SCR, 0x42);
	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
		assert_int_equal(rd(h, regs[i]), 0xff); /* floating bus */
		wr(h, regs[i], 0x00);
		wr(h, regs[i], 0xff);
	}
	/* Nothing changed, nothing was sent. */
	assert_int_equal(rd(h, SCR), 0x42);
	assert_int_equal(rd(h, LCR), 0);
	assert_int_equal(rd(h, IER), 0);
	assert_int_equal(rd(h, MCR), MCR_OUT2);
	assert_int_equal(h->nout, 0);
	assert_int_equal(h->irqs, 0);
	/* MSR is read-only too. */
	wr(h, MSR, 0);
	assert_int_equal(rd(h, MSR), MSR_DCD | MSR_DSR | MSR_CTS);
}

static void test_null_ops(void **state)
{
	struct serial s;
	char in[SERIAL_FIFO_SIZE];

	(void)state;
	serial_init(&s, NULL, NULL);
	serial_reg_write(&s, IER, 0x03);
	serial_reg_write(&s, RBR_THR, 'n');
	memset(in, 'i', sizeof(in));
	assert_int_equal(serial_rx_push(&s, (const uint8_t *)in, sizeof(in)), SERIAL_FIFO_SIZE);
	for (int i = 0; i < SERIAL_FIFO_SIZE; i++)
		assert_int_equal(serial_reg_read(&s, RBR_THR), 'i');
	assert_int_equal(serial_rx_push(&s, (const uint8_t *)in, sizeof(in)), SERIAL_FIFO_SIZE);
	serial_reg_write(&s, IIR_FCR, 0x03);
	assert_int_equal(serial_rx_room(&s), SERIAL_FIFO_SIZE);
	serial_destroy(&s);
}

static void test_bus_glue(void **state)
{
	struct host *h = *state;
	struct bus bus = { 0 };
	uint8_t data[4];

	assert_int_equal(bus_register(&bus, PORT_COM1, SERIAL_NR_REGS, &serial_bus_ops, &h->s), 0);
	data[0] = 'B';
	assert_int_equal(bus_dispatch(&bus, PORT_COM1, data, 1, true), 0);
	assert_int_equal(h->nout, 1);
	assert_int_equal(h->out[0], 'B');
	data[0] = 0x77;
	assert_int_equal(bus_dispatch(&bus, PORT_COM1 + SCR, data, 1, true), 0);
	assert_int_equal(rd(h, SCR), 0x77);
	/* Wider reads return the register in the low byte, zeroes above. */
	memset(data, 0xff, sizeof(data));
	assert_int_equal(bus_dispatch(&bus, PORT_COM1 + LSR, data, 4, false), 0);
	assert_int_equal(data[0], LSR_THRE | LSR_TEMT);
	assert_int_equal(data[1], 0);
	assert_int_equal(data[2], 0);
	assert_int_equal(data[3], 0);
	assert_int_equal(push(h, "p", 1), 1);
	assert_int_equal(bus_dispatch(&bus, PORT_COM1, data, 1, false), 0);
	assert_int_equal(data[0], 'p');
	/* COM1 is 8 ports wide. */
	assert_int_equal(bus_dispatch(&bus, PORT_COM1 + 8, data, 1, false), -ENOENT);
	assert_int_equal(bus_dispatch(&bus, PORT_COM1 - 1, data, 1, true), -ENOENT);
	assert_int_equal(h->nout, 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_thr_write_outputs),
		T(test_lsr),
		T(test_rx_order),
		T(test_rx_fifo_full),
		T(test_rx_ring_wraps),
		T(test_rx_room_after_draining_below_half),
		T(test_rx_room_not_signalled_unless_full),
		T(test_fcr_clears_rx),
		T(test_thri_raised_and_acknowledged),
		T(test_no_irq_when_disabled),
		T(test_rdi_raised_until_drained),
		T(test_rdi_has_priority_over_thri),
		T(test_ier_keeps_low_nibble),
		T(test_dlab_divisor_latch),
		T(test_loopback),
		T(test_loopback_fifo_overrun),
		T(test_mcr_and_scratch),
		T(test_out_of_range_registers),
		cmocka_unit_test(test_null_ops),
		T(test_bus_glue),
	};
#undef T

	return cmocka_run_group_tests_name("serial", tests, NULL, NULL);
}
