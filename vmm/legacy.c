/* The small fixed devices of a microVM: the i8042 (the reset line Linux's
 * reboot=k uses, and a keyboard output buffer for Ctrl+Alt+Del), the
 * Firecracker-compatible boot timer, and the isa-debug-exit port tests use
 * to report a status. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/layout.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define I8042_CMD_READ_CTR  0x20
#define I8042_CMD_WRITE_CTR 0x60
#define I8042_CMD_WRITE_OUT 0xd1
#define I8042_CMD_RESET     0xfe
#define I8042_STATUS_OBF    0x01 /* output buffer full: a byte waits at 0x60 */
#define I8042_STATUS_CMD    0x08 /* the next 0x60 write is a command's data */
#define I8042_CTR_KBD_INT   0x01 /* raise IRQ 1 when a byte arrives */
#define I8042_CTR_POST_OK   0x04
#define I8042_KBD_ACK       0xfa
#define I8042_IRQ           1
#define BOOT_TIMER_MAGIC 123

/* Ctrl, Alt, Delete pressed, in scan code set 2 (what the controller
 * delivers with translation off): 0x14, 0x11, 0xe0 0x71. */
static const uint8_t ctrl_alt_del[] = { 0x14, 0x11, 0xe0, 0x71 };

/* Callers hold k->lock. */
static bool i8042_push(struct i8042 *k, uint8_t byte)
{
	if (k->len == I8042_BUF_SIZE)
		return false;
	k->buf[(k->head + k->len) % I8042_BUF_SIZE] = byte;
	k->len++;
	return true;
}

static void i8042_flush(struct i8042 *k)
{
	k->head = k->len = 0;
}

static void i8042_raise_irq(struct i8042 *k)
{
	if (k->control & I8042_CTR_KBD_INT)
		irq_line_raise(&k->irq);
}

static void i8042_data_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct vm *vm = opaque;
	struct i8042 *k = &vm->i8042;

	(void)offset;
	memset(data, 0, len);
	pthread_mutex_lock(&k->lock);
	if (k->len) {
		data[0] = k->buf[k->head];
		k->head = (k->head + 1) % I8042_BUF_SIZE;
		k->len--;
	}
	/* More bytes waiting: another interrupt, so an IRQ-driven driver
	 * comes back for them. */
	if (k->len)
		i8042_raise_irq(k);
	pthread_mutex_unlock(&k->lock);
}

static void i8042_status_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct vm *vm = opaque;
	struct i8042 *k = &vm->i8042;

	(void)offset;
	memset(data, 0, len);
	/* The input buffer is always empty, so wait-for-ready loops (Linux's
	 * reboot path) end at once. */
	pthread_mutex_lock(&k->lock);
	data[0] = (k->len ? I8042_STATUS_OBF : 0) | (k->pending_cmd ? I8042_STATUS_CMD : 0);
	pthread_mutex_unlock(&k->lock);
}

static void i8042_data_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct vm *vm = opaque;
	struct i8042 *k = &vm->i8042;

	(void)offset;
	(void)len;
	pthread_mutex_lock(&k->lock);
	if (k->pending_cmd == I8042_CMD_WRITE_CTR) {
		k->control = data[0];
	} else if (!k->pending_cmd) {
		/* A command for the keyboard itself: acknowledge it. */
		i8042_flush(k);
		i8042_push(k, I8042_KBD_ACK);
		i8042_raise_irq(k);
	}
	k->pending_cmd = 0;
	pthread_mutex_unlock(&k->lock);
}

static void i8042_cmd_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct vm *vm = opaque;
	struct i8042 *k = &vm->i8042;

	(void)offset;
	(void)len;
	switch (data[0]) {
	case I8042_CMD_RESET:
		vm_request_exit(vm, MOTE_EXIT_OK, "guest reset through the i8042 controller");
		break;
	case I8042_CMD_READ_CTR:
		pthread_mutex_lock(&k->lock);
		i8042_flush(k);
		i8042_push(k, k->control);
		pthread_mutex_unlock(&k->lock);
		break;
	case I8042_CMD_WRITE_CTR:
	case I8042_CMD_WRITE_OUT:
		pthread_mutex_lock(&k->lock);
		k->pending_cmd = data[0];
		pthread_mutex_unlock(&k->lock);
		break;
	default:
		break;
	}
}

int vm_send_ctrl_alt_del(struct vm *vm)
{
	struct i8042 *k = &vm->i8042;
	int ret = 0;

	pthread_mutex_lock(&k->lock);
	if (I8042_BUF_SIZE - k->len < sizeof(ctrl_alt_del)) {
		ret = -ENOSPC;
	} else {
		for (size_t i = 0; i < sizeof(ctrl_alt_del); i++)
			i8042_push(k, ctrl_alt_del[i]);
		i8042_raise_irq(k);
	}
	pthread_mutex_unlock(&k->lock);
	return ret;
}

static int i8042_init(struct vm *vm)
{
	struct i8042 *k = &vm->i8042;

	k->control = I8042_CTR_POST_OK | I8042_CTR_KBD_INT;
	return irq_line_init(&k->irq, vm->vm_fd, vm_ioapic(vm), I8042_IRQ);
}

/* Port 0x61 between them is the PIT's speaker gate: KVM's with the in-kernel
 * irqchip; with the split irqchip there is no PIT and it reads 0xff. */
static const struct bus_device_ops i8042_data_ops = { .read = i8042_data_read,
						      .write = i8042_data_write };
static const struct bus_device_ops i8042_cmd_ops = { .read = i8042_status_read,
						     .write = i8042_cmd_write };

static void debug_exit_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
	(void)offset;
	(void)len;
	char why[64];

	snprintf(why, sizeof(why), "guest wrote %u to the debug-exit port", data[0]);
	vm_request_exit(opaque, data[0], why);
}

static const struct bus_device_ops debug_exit_ops = { .write = debug_exit_write };

static void boot_timer_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct vm *vm = opaque;

	if (offset != 0 || len != 1 || data[0] != BOOT_TIMER_MAGIC)
		return;
	if (atomic_exchange(&vm->boot_timer_fired, true))
		return;
	uint64_t us = time_since_exec_us();
	log_info("boot-timer: guest signalled boot after %llu us (%llu ms) since exec",
		 (unsigned long long)us, (unsigned long long)(us / 1000));
	if (vm->instance_start_ns) {
		uint64_t since = (time_now_ns() - vm->instance_start_ns) / 1000;
		log_info("boot-timer: guest signalled boot after %llu us since InstanceStart",
			 (unsigned long long)since);
	}
}

static void boot_timer_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
	(void)opaque;
	(void)offset;
	memset(data, 0, len);
}

static const struct bus_device_ops boot_timer_ops = { .read = boot_timer_read,
						      .write = boot_timer_write };

int vm_add_legacy_devices(struct vm *vm)
{
	int ret;

	ret = i8042_init(vm);
	if (ret) {
		log_error("i8042 keyboard interrupt (GSI %d): %s", I8042_IRQ, strerror(-ret));
		return ret;
	}
	ret = bus_register(&vm->pio, PORT_COM1, 8, &serial_bus_ops, &vm->serial);
	if (!ret)
		ret = bus_register(&vm->pio, PORT_I8042_DATA, 1, &i8042_data_ops, vm);
	if (!ret)
		ret = bus_register(&vm->pio, PORT_I8042_CMD, 1, &i8042_cmd_ops, vm);
	if (!ret)
		ret = bus_register(&vm->pio, PORT_DEBUG_EXIT, 1, &debug_exit_ops, vm);
	if (!ret && vm->cfg.boot_timer)
		ret = bus_register(&vm->mmio, LAYOUT_BOOT_TIMER_ADDR, 0x1000, &boot_timer_ops, vm);
	return ret;
}
