/*
 * serial.c - output on the 8250 UART at COM1 (I/O port 0x3f8).
 *
 * No UART initialisation: QEMU's and mote's 8250 models transmit without
 * it, and every port access is a VM exit. Each byte costs one LSR read
 * and one THR write. A spin lock keeps lines from different CPUs whole.
 */
#include "guest.h"

#define COM1_PORT      0x3f8
#define UART_THR       0
#define UART_LSR       5
#define UART_LSR_THRE  0x20
/*
 * Bound the THRE poll so a missing or never-ready UART cannot hang the
 * guest (each poll is a VM exit; VM UARTs report THRE at once).
 */
#define UART_POLL_MAX  1000

static volatile uint32_t serial_lock_word;

static void serial_lock(void)
{
	while (__atomic_exchange_n(&serial_lock_word, 1, __ATOMIC_ACQUIRE)) {
		while (__atomic_load_n(&serial_lock_word, __ATOMIC_RELAXED))
			cpu_pause();
	}
}

static void serial_unlock(void)
{
	__atomic_store_n(&serial_lock_word, 0, __ATOMIC_RELEASE);
}

static void serial_write_byte(char c)
{
	for (int i = 0; i < UART_POLL_MAX; i++) {
		if (io_in8(COM1_PORT + UART_LSR) & UART_LSR_THRE)
			break;
	}
	io_out8(COM1_PORT + UART_THR, (uint8_t)c);
}

void serial_write_bytes(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		serial_write_byte(s[i]);
}

/*
 * One LSR look, then the whole run with one string instruction: under KVM
 * a rep outsb exits to the monitor once for all its bytes, not twice per
 * byte. Only right for VM UARTs, which take bytes as fast as they come
 * (mote's and QEMU's report THRE again at once; a real 8250 without FIFO
 * would keep only the first): for short lines paid by every clone start.
 */
void serial_write_burst(const char *s, size_t len)
{
	for (int i = 0; i < UART_POLL_MAX; i++) {
		if (io_in8(COM1_PORT + UART_LSR) & UART_LSR_THRE)
			break;
	}
	__asm__ volatile("rep outsb"
			 : "+S"(s), "+c"(len)
			 : "d"((uint16_t)(COM1_PORT + UART_THR))
			 : "memory");
}

static void serial_write_u64(uint64_t value, unsigned base, int negative)
{
	char buf[24];
	size_t pos = sizeof(buf);

	do {
		unsigned digit = (unsigned)(value % base);

		buf[--pos] = (char)(digit < 10 ? '0' + digit : 'a' + digit - 10);
		value /= base;
	} while (value);
	if (negative)
		buf[--pos] = '-';
	serial_write_bytes(buf + pos, sizeof(buf) - pos);
}

/*
 * Minimal printf: %s %c %d %u %x, the l modifier (%ld %lu %lx), %%.
 * No width or precision: nothing here needs them.
 */
void serial_vprintf_unlocked(const char *fmt, va_list ap)
{
	while (*fmt) {
		const char *run = fmt;
		int is_long = 0;

		while (*fmt && *fmt != '%')
			fmt++;
		serial_write_bytes(run, (size_t)(fmt - run));
		if (!*fmt)
			break;
		fmt++;
		if (*fmt == 'l') {
			is_long = 1;
			fmt++;
		}
		switch (*fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);

			if (!s)
				s = "(null)";
			serial_write_bytes(s, lib_strlen(s));
			break;
		}
		case 'c':
			serial_write_byte((char)va_arg(ap, int));
			break;
		case 'd': {
			int64_t v = is_long ? va_arg(ap, long) : va_arg(ap, int);

			serial_write_u64(v < 0 ? -(uint64_t)v : (uint64_t)v, 10,
					 v < 0);
			break;
		}
		case 'u':
		case 'x': {
			uint64_t v = is_long ? va_arg(ap, unsigned long)
					     : va_arg(ap, unsigned int);

			serial_write_u64(v, *fmt == 'x' ? 16 : 10, 0);
			break;
		}
		case '%':
			serial_write_byte('%');
			break;
		case '\0':
			return;
		default:
			/* Unknown conversion: print it verbatim. */
			serial_write_byte('%');
			serial_write_byte(*fmt);
			break;
		}
		fmt++;
	}
}

void serial_printf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	serial_lock();
	serial_vprintf_unlocked(fmt, ap);
	serial_unlock();
	va_end(ap);
}

/* For the exception path: the faulting code may hold the lock. */
void serial_printf_unlocked(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	serial_vprintf_unlocked(fmt, ap);
	va_end(ap);
}

int test_fail(const char *test, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	/* One lock for the line: another CPU's output cannot split it. */
	serial_lock();
	serial_printf_unlocked("TEST FAIL %s: ", test);
	serial_vprintf_unlocked(fmt, ap);
	serial_write_byte('\n');
	serial_unlock();
	va_end(ap);
	return GUEST_EXIT_FAIL;
}
