#include "vmm/serial.h"

#include <string.h>

/* Register offsets (DLAB=0 unless noted). */
#define UART_RBR_THR 0
#define UART_IER     1
#define UART_IIR_FCR 2
#define UART_LCR     3
#define UART_MCR     4
#define UART_LSR     5
#define UART_MSR     6
#define UART_SCR     7

#define IER_RDI  0x01 /* received data available */
#define IER_THRI 0x02 /* transmitter holding register empty */
#define IER_MASK 0x0f
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI  0x04
#define IIR_FIFO 0xc0
#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f
#define LSR_DR   0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_CTS  0x10
#define MSR_DSR  0x20
#define MSR_RI   0x40
#define MSR_DCD  0x80

void serial_init(struct serial *s, const struct serial_ops *ops, void *opaque)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->ops = ops;
	s->opaque = opaque;
	s->mcr = MCR_OUT2;
	s->dll = 12; /* 9600 baud, as firmware would leave it */
}

void serial_destroy(struct serial *s)
{
	pthread_mutex_destroy(&s->lock);
}

static uint8_t serial_iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO : 0;

	if ((s->ier & IER_RDI) && s->rx_count)
		return IIR_RDI | fifo;
	if ((s->ier & IER_THRI) && s->thr_irq_pending)
		return IIR_THRI | fifo;
	return IIR_NONE | fifo;
}

/* Edge-triggered: signal whenever an interrupt condition is (still)
 * pending after a state change; the guest's handler loops on IIR. */
static void serial_update_irq(struct serial *s)
{
	if (!(serial_iir(s) & IIR_NONE) && s->ops && s->ops->irq)
		s->ops->irq(s->opaque);
}

static void serial_rx_enqueue(struct serial *s, uint8_t byte)
{
	if (s->rx_count == SERIAL_FIFO_SIZE)
		return; /* overrun: drop, as hardware would */
	s->rx[(s->rx_head + s->rx_count) % SERIAL_FIFO_SIZE] = byte;
	s->rx_count++;
}

static uint8_t serial_rx_dequeue(struct serial *s)
{
	if (!s->rx_count)
		return 0;
	uint8_t b = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL_FIFO_SIZE;
	s->rx_count--;
	if (s->rx_was_full && s->rx_count < SERIAL_FIFO_SIZE / 2) {
		s->rx_was_full = false;
		if (s->ops && s->ops->rx_room)
			s->ops->rx_room(s->opaque);
	}
	return b;
}

static uint8_t serial_msr(const struct serial *s)
{
	if (!(s->mcr & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS; /* a connected terminal */
	uint8_t msr = 0;
	if (s->mcr & MCR_DTR)
		msr |= MSR_DSR;
	if (s->mcr & MCR_RTS)
		msr |= MSR_CTS;
	if (s->mcr & MCR_OUT1)
		msr |= MSR_RI;
	if (s->mcr & MCR_OUT2)
		msr |= MSR_DCD;
	return msr;
}

uint8_t serial_reg_read(struct serial *s, unsigned reg)
{
	uint8_t val = 0;

	pthread_mutex_lock(&s->lock);
	switch (reg) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB) {
			val = s->dll;
		} else {
			val = serial_rx_dequeue(s);
			serial_update_irq(s);
		}
		break;
	case UART_IER:
		val = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
		break;
	case UART_IIR_FCR:
		val = serial_iir(s);
		/* Reading IIR acknowledges a THR-empty interrupt. */
		if ((val & 0x0f) == IIR_THRI)
			s->thr_irq_pending = false;
		break;
	case UART_LCR:
		val = s->lcr;
		break;
	case UART_MCR:
		val = s->mcr;
		break;
	case UART_LSR:
		val = LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
		break;
	case UART_MSR:
		val = serial_msr(s);
		break;
	case UART_SCR:
		val = s->scr;
		break;
	default:
		val = 0xff;
		break;
	}
	pthread_mutex_unlock(&s->lock);
	return val;
}

void serial_reg_write(struct serial *s, unsigned reg, uint8_t val)
{
	pthread_mutex_lock(&s->lock);
	switch (reg) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB) {
			s->dll = val;
			break;
		}
		if (s->mcr & MCR_LOOP)
			serial_rx_enqueue(s, val);
		else if (s->ops && s->ops->output)
			s->ops->output(s->opaque, val);
		/* The byte leaves at once: THR is empty again. */
		s->thr_irq_pending = true;
		serial_update_irq(s);
		break;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = val;
			break;
		}
		/* Enabling THRI while THR is empty raises it right away. */
		if ((val & IER_THRI) && !(s->ier & IER_THRI))
			s->thr_irq_pending = true;
		s->ier = val & IER_MASK;
		serial_update_irq(s);
		break;
	case UART_IIR_FCR:
		s->fcr = val;
		if (val & FCR_CLEAR_RX) {
			s->rx_head = s->rx_count = 0;
			if (s->rx_was_full) {
				s->rx_was_full = false;
				if (s->ops && s->ops->rx_room)
					s->ops->rx_room(s->opaque);
			}
		}
		break;
	case UART_LCR:
		s->lcr = val;
		break;
	case UART_MCR:
		s->mcr = val & MCR_MASK;
		break;
	case UART_SCR:
		s->scr = val;
		break;
	default:
		break; /* LSR and MSR are read-only */
	}
	pthread_mutex_unlock(&s->lock);
}

unsigned serial_rx_push(struct serial *s, const uint8_t *buf, unsigned len)
{
	unsigned n = 0;

	pthread_mutex_lock(&s->lock);
	while (n < len && s->rx_count < SERIAL_FIFO_SIZE)
		serial_rx_enqueue(s, buf[n++]);
	if (s->rx_count == SERIAL_FIFO_SIZE)
		s->rx_was_full = true;
	if (n)
		serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

unsigned serial_rx_room(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	unsigned room = SERIAL_FIFO_SIZE - s->rx_count;
	pthread_mutex_unlock(&s->lock);
	return room;
}

static void serial_bus_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
	memset(data, 0, len);
	data[0] = serial_reg_read(opaque, (unsigned)offset);
}

static void serial_bus_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
	(void)len;
	serial_reg_write(opaque, (unsigned)offset, data[0]);
}

const struct bus_device_ops serial_bus_ops = {
	.read = serial_bus_read,
	.write = serial_bus_write,
};
