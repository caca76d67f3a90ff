/* 8250/16550A UART model (COM1), enough for Linux's 8250 driver and early
 * console, with a 64-byte receive FIFO fed from the host's stdin.
 *
 * Register accesses come from vCPU threads, input from the event loop, so
 * the model carries its own lock; the callbacks run under it. */
#ifndef MOTE_VMM_SERIAL_H
#define MOTE_VMM_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"

#define SERIAL_FIFO_SIZE 64
#define SERIAL_NR_REGS   8

struct serial_ops {
	void (*output)(void *opaque, uint8_t byte); /* guest wrote a byte */
	void (*irq)(void *opaque);                  /* raise the (edge) IRQ */
	void (*rx_room)(void *opaque);              /* FIFO was full, now has room */
};

struct serial {
	pthread_mutex_t lock;
	const struct serial_ops *ops;
	void *opaque;
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	bool thr_irq_pending; /* THR-empty interrupt not yet acknowledged */
	uint8_t rx[SERIAL_FIFO_SIZE];
	unsigned rx_head, rx_count;
	bool rx_was_full;
};

void serial_init(struct serial *s, const struct serial_ops *ops, void *opaque);
void serial_destroy(struct serial *s);
uint8_t serial_reg_read(struct serial *s, unsigned reg);
void serial_reg_write(struct serial *s, unsigned reg, uint8_t val);
/* Queues host input for the guest; returns how many bytes fit. */
unsigned serial_rx_push(struct serial *s, const uint8_t *buf, unsigned len);
unsigned serial_rx_room(struct serial *s);

/* Port-I/O glue: opaque is the struct serial. */
extern const struct bus_device_ops serial_bus_ops;

#endif
