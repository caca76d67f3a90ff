#include "vmm/bus.h"

#include <errno.h>

int bus_register(struct bus *bus, uint64_t base, uint64_t len,
		 const struct bus_device_ops *ops, void *opaque)
{
	if (len == 0 || base + len < base)
		return -EINVAL;
	for (unsigned i = 0; i < bus->nr; i++) {
		const struct bus_range *r = &bus->ranges[i];

		if (base < r->base + r->len && r->base < base + len)
			return -EEXIST;
	}
	if (bus->nr == BUS_MAX_DEVICES)
		return -ENOSPC;
	bus->ranges[bus->nr++] = (struct bus_range){ base, len, ops, opaque };
	return 0;
}

int bus_dispatch(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
	for (unsigned i = 0; i < bus->nr; i++) {
		const struct bus_range *r = &bus->ranges[i];

		if (addr < r->base || addr - r->base >= r->len)
			continue;
		uint64_t off = addr - r->base;
		if (is_write) {
			if (r->ops->write)
				r->ops->write(r->opaque, off, data, len);
		} else if (r->ops->read) {
			r->ops->read(r->opaque, off, data, len);
		}
		return 0;
	}
	return -ENOENT;
}
