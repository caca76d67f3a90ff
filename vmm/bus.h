/* Port-I/O and MMIO dispatch. Devices register an address range with a
 * read/write pair before vCPUs start; lookups afterwards are lock-free
 * because the table never changes while vCPUs run. */
#ifndef MOTE_VMM_BUS_H
#define MOTE_VMM_BUS_H

#include <stdbool.h>
#include <stdint.h>

#define BUS_MAX_DEVICES 32

struct bus_device_ops {
	/* offset is relative to the registered base; len is 1, 2, 4 or 8. */
	void (*read)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len);
	void (*write)(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len);
};

struct bus_range {
	uint64_t base;
	uint64_t len;
	const struct bus_device_ops *ops;
	void *opaque;
};

struct bus {
	unsigned nr;
	struct bus_range ranges[BUS_MAX_DEVICES];
};

/* -EEXIST if it overlaps a registered range, -ENOSPC if full. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len,
		 const struct bus_device_ops *ops, void *opaque);

/* -ENOENT if no device claims addr; reads of unclaimed addresses are left
 * to the caller (the PC convention is all ones). */
int bus_dispatch(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);

#endif
