/* virtio devices of a VM: each gets a virtio-mmio window in the MMIO hole
 * and an IOAPIC pin, in the order drives, network interfaces, then vsock. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vmm/layout.h"
#include "vmm/log.h"
#include "vmm/vm.h"

static int vm_cmdline_append(struct vm *vm, const char *s)
{
	size_t used = strlen(vm->cmdline);

	if (used + strlen(s) >= sizeof(vm->cmdline)) {
		log_error("kernel command line would exceed %zu bytes with '%s'", sizeof(vm->cmdline),
			  s);
		return -E2BIG;
	}
	strcpy(vm->cmdline + used, s);
	return 0;
}

static int vm_attach_virtio(struct vm *vm, struct virtio_device *dev, struct event_loop *loop)
{
	char frag[96];
	int ret;

	if (vm->nr_virtio == VM_MAX_VIRTIO)
		return -ENOSPC;
	unsigned i = vm->nr_virtio;
	struct virtio_mmio_env env = {
		.vm_fd = vm->vm_fd, .mem = &vm->mem, .mmio_bus = &vm->mmio, .loop = loop,
		.ioapic = vm_ioapic(vm),
	};
	ret = virtio_mmio_init(&vm->virtio[i], dev, &env,
			       LAYOUT_VIRTIO_MMIO_BASE + (uint64_t)i * VIRTIO_MMIO_WINDOW,
			       VM_VIRTIO_FIRST_IRQ + i);
	if (ret) {
		log_error("%s: virtio-mmio transport set-up failed: %s", dev->name, strerror(-ret));
		return ret;
	}
	vm->nr_virtio++;
	ret = virtio_mmio_cmdline(&vm->virtio[i], frag, sizeof(frag));
	return ret < 0 ? ret : vm_cmdline_append(vm, frag);
}

int vm_add_virtio_devices(struct vm *vm, struct event_loop *loop)
{
	char err[256];
	int ret;

	snprintf(vm->cmdline, sizeof(vm->cmdline), "%s", vm->cfg.cmdline ? vm->cfg.cmdline : "");
	for (unsigned d = 0; d < vm->cfg.nr_drives; d++) {
		const struct blk_config *dc = &vm->cfg.drives[d];
		char name[16];

		snprintf(name, sizeof(name), "blk%u", d);
		ret = virtio_blk_create(&vm->blk[d], dc, loop, name, err, sizeof(err));
		if (ret) {
			log_error("%s", err);
			return MOTE_EXIT_NOINPUT;
		}
		if (vm_attach_virtio(vm, virtio_blk_device(vm->blk[d]), loop))
			return MOTE_EXIT_INTERNAL;
		if (dc->is_root) {
			char root[48];
			/* Drives appear as vda, vdb, ... in attach order. */
			snprintf(root, sizeof(root), " root=/dev/vd%c %s", 'a' + d,
				 dc->read_only ? "ro" : "rw");
			if (vm_cmdline_append(vm, root))
				return MOTE_EXIT_USAGE;
		}
		log_debug("%s: '%s', %llu sectors%s%s", name, dc->path,
			  (unsigned long long)virtio_blk_capacity(vm->blk[d]),
			  dc->read_only ? ", read-only" : "", dc->is_root ? ", root" : "");
	}
	for (unsigned i = 0; i < vm->cfg.nr_nets; i++) {
		const struct net_config *nc = &vm->cfg.nets[i];
		char name[16];

		snprintf(name, sizeof(name), "net%u", i);
		ret = virtio_net_create(&vm->net[i], nc, loop, name, err, sizeof(err));
		if (ret) {
			log_error("%s", err);
			return MOTE_EXIT_NOINPUT;
		}
		if (vm_attach_virtio(vm, virtio_net_device(vm->net[i]), loop))
			return MOTE_EXIT_INTERNAL;
		log_debug("%s: TAP '%s', MAC %02x:%02x:%02x:%02x:%02x:%02x", name, nc->tap,
			  nc->mac[0], nc->mac[1], nc->mac[2], nc->mac[3], nc->mac[4], nc->mac[5]);
	}
	if (vm->cfg.has_vsock) {
		ret = virtio_vsock_create(&vm->vsock, &vm->cfg.vsock, loop, "vsock0", err,
					  sizeof(err));
		if (ret) {
			log_error("%s", err);
			return MOTE_EXIT_NOINPUT;
		}
		if (vm_attach_virtio(vm, virtio_vsock_device(vm->vsock), loop))
			return MOTE_EXIT_INTERNAL;
		log_debug("vsock0: guest CID %llu, host socket '%s'",
			  (unsigned long long)vm->cfg.vsock.guest_cid, vm->cfg.vsock.uds_path);
	}
	return 0;
}

void vm_destroy_virtio_devices(struct vm *vm)
{
	/* Transports first: their reset drains each device's in-flight I/O. */
	for (unsigned i = 0; i < vm->nr_virtio; i++)
		virtio_mmio_destroy(&vm->virtio[i]);
	vm->nr_virtio = 0;
	for (unsigned d = 0; d < BLK_MAX_DRIVES; d++) {
		virtio_blk_destroy(vm->blk[d]);
		vm->blk[d] = NULL;
	}
	for (unsigned i = 0; i < NET_MAX_IFACES; i++) {
		virtio_net_destroy(vm->net[i]);
		vm->net[i] = NULL;
	}
	virtio_vsock_destroy(vm->vsock);
	vm->vsock = NULL;
}
