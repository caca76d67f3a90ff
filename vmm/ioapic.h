/* mote's own IOAPIC, for KVM's split irqchip (KVM_CAP_SPLIT_IRQCHIP).
 *
 * Why not KVM's in-kernel PIC/IOAPIC/PIT: tearing a VM down with them
 * costs 12-20 ms on the nested hypervisor of the test machines (every
 * in-kernel device unregisters itself from the I/O bus and waits for an
 * SRCU grace period) against ~0.5 ms with the split irqchip, and creating
 * them costs milliseconds too. The local APICs stay in the kernel; only
 * the IOAPIC, which a micro-VM's few edge-triggered lines barely use,
 * moves here. No 8259 PIC and no PIT: Linux then uses the TSC-deadline
 * LAPIC timer with kvmclock's TSC frequency (see README, "Interrupts").
 *
 * The model is an 82093AA-style IOAPIC (version 0x11, 24 pins) at
 * 0xfec00000: IOREGSEL at +0x00, IOWIN at +0x10. Every mote interrupt
 * source is an edge (the MP table says so); an edge on an unmasked pin is
 * sent to the LAPICs as an MSI (KVM_SIGNAL_MSI) built from the pin's
 * redirection entry; an edge on a masked pin is remembered and sent when
 * the guest unmasks it, so no interrupt is lost while a driver masks its
 * line. Callable from any thread (vCPU threads and the VMM thread).
 */
#ifndef MOTE_VMM_IOAPIC_H
#define MOTE_VMM_IOAPIC_H

#include <pthread.h>
#include <stdint.h>

#define IOAPIC_NR_PINS 24
#define IOAPIC_VERSION 0x11
#define IOAPIC_MMIO_SIZE 0x1000

/* Sends one MSI: 0 or -errno. The default (vm_fd >= 0) is KVM_SIGNAL_MSI. */
typedef int (*ioapic_send_msi_fn)(void *opaque, uint64_t addr, uint32_t data);

/* What a snapshot keeps (fixed layout, little-endian like the host). */
struct ioapic_state {
	uint32_t id;          /* bits 24-27 of the ID register */
	uint32_t ioregsel;
	uint32_t pending;     /* edges held for masked pins, one bit per pin */
	uint32_t reserved;
	uint64_t redir[IOAPIC_NR_PINS];
};

struct ioapic {
	pthread_mutex_t lock;
	struct ioapic_state s;
	ioapic_send_msi_fn send_msi;
	void *send_opaque;
	int vm_fd;
	uint64_t nr_sent;     /* MSIs sent, for tests and debugging */
	uint64_t nr_send_errors;
	uint64_t nr_dropped;  /* edges on pins in ExtINT or a reserved mode */
};

/* Every pin masked, as after reset. vm_fd: the VM for KVM_SIGNAL_MSI
 * (ignored when send_msi is given: unit tests). */
void ioapic_init(struct ioapic *io, int vm_fd, ioapic_send_msi_fn send_msi, void *opaque);
void ioapic_destroy(struct ioapic *io);

/* An edge on pin: sent now, or held while the pin is masked. -EINVAL for
 * a pin out of range. */
int ioapic_raise(struct ioapic *io, unsigned pin);

/* Register access through the MMIO bus (offset within the 4 KiB page).
 * Only 32-bit accesses to IOREGSEL and IOWIN do anything; others read as
 * zero and are ignored, as on the chip. */
void ioapic_mmio_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len);
void ioapic_mmio_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len);

void ioapic_get_state(struct ioapic *io, struct ioapic_state *out);
/* Restores a saved state (sends nothing: edges are held only for masked
 * pins; read-only bits and out-of-range values are cleared). */
void ioapic_set_state(struct ioapic *io, const struct ioapic_state *in);

/* The MSI an entry asks for (exposed for unit tests). */
void ioapic_entry_to_msi(uint64_t entry, uint64_t *addr, uint32_t *data);

#endif
