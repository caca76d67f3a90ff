/* The small fixed devices of a microVM: i8042 (only what Linux's
 * reboot=k needs), the Firecracker-compatible boot timer, and the
 * isa-debug-exit port tests use to report a status. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmm/layout.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define I8042_CMD_RESET 0xfe
#define BOOT_TIMER_MAGIC 123

static void i8042_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
	(void)opaque;
	(void)offset;
	/* Status 0: output buffer empty, input buffer empty, so the
	 * guest's wait-for-ready loops end at once. */
	memset(data, 0, len);
}

static void i8042_cmd_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
	(void)offset;
	(void)len;
	if (data[0] == I8042_CMD_RESET)
		vm_request_exit(opaque, MOTE_EXIT_OK, "guest reset through the i8042 controller");
}

/* Port 0x61 between them belongs to KVM's in-kernel PIT (speaker gate). */
static const struct bus_device_ops i8042_data_ops = { .read = i8042_read };
static const struct bus_device_ops i8042_cmd_ops = { .read = i8042_read, .write = i8042_cmd_write };

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
