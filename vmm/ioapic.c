#include "vmm/ioapic.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "vmm/log.h"

#define REG_SELECT 0x00
#define REG_WINDOW 0x10

#define IOAPIC_REG_ID      0x00
#define IOAPIC_REG_VERSION 0x01
#define IOAPIC_REG_ARB     0x02
#define IOAPIC_REG_REDIR   0x10 /* two registers per pin: low, high */

/* Redirection entry bits (82093AA datasheet, 3.2.4). */
#define RTE_VECTOR_MASK   0xffull
#define RTE_DELIVERY_SHIFT 8
#define RTE_DELIVERY_MASK (7ull << RTE_DELIVERY_SHIFT)
#define RTE_DEST_LOGICAL  (1ull << 11)
#define RTE_DELIVERY_STATUS (1ull << 12) /* read-only */
#define RTE_REMOTE_IRR    (1ull << 14)   /* read-only */
#define RTE_MASKED        (1ull << 16)
#define RTE_DEST_SHIFT    56
#define RTE_READ_ONLY     (RTE_DELIVERY_STATUS | RTE_REMOTE_IRR)

#define DELIVERY_RESERVED_3 3
#define DELIVERY_RESERVED_6 6
#define DELIVERY_EXTINT 7

/* MSI format (Intel SDM vol. 3, 11.11): the LAPIC window, the
 * destination in address bits 12-19, logical mode in bit 2; vector and
 * delivery mode in the data, edge-triggered. */
#define MSI_ADDR_BASE        0xfee00000ull
#define MSI_ADDR_DEST_SHIFT  12
#define MSI_ADDR_DEST_LOGICAL (1ull << 2)

static int ioapic_send_kvm(void *opaque, uint64_t addr, uint32_t data)
{
	struct ioapic *io = opaque;
	struct kvm_msi msi = {
		.address_lo = (uint32_t)addr,
		.address_hi = (uint32_t)(addr >> 32),
		.data = data,
	};

	/* > 0: delivered to that many LAPICs; 0: none accepted it (e.g. a
	 * destination no vCPU has): the guest's own doing, not an error. */
	if (ioctl(io->vm_fd, KVM_SIGNAL_MSI, &msi) < 0)
		return -errno;
	return 0;
}

void ioapic_init(struct ioapic *io, int vm_fd, ioapic_send_msi_fn send_msi, void *opaque)
{
	memset(io, 0, sizeof(*io));
	pthread_mutex_init(&io->lock, NULL);
	io->vm_fd = vm_fd;
	if (send_msi) {
		io->send_msi = send_msi;
		io->send_opaque = opaque;
	} else {
		io->send_msi = ioapic_send_kvm;
		io->send_opaque = io;
	}
	for (unsigned i = 0; i < IOAPIC_NR_PINS; i++)
		io->s.redir[i] = RTE_MASKED;
}

void ioapic_destroy(struct ioapic *io)
{
	pthread_mutex_destroy(&io->lock);
}

void ioapic_entry_to_msi(uint64_t entry, uint64_t *addr, uint32_t *data)
{
	uint64_t dest = (entry >> RTE_DEST_SHIFT) & 0xff;

	*addr = MSI_ADDR_BASE | (dest << MSI_ADDR_DEST_SHIFT) |
		((entry & RTE_DEST_LOGICAL) ? MSI_ADDR_DEST_LOGICAL : 0);
	*data = (uint32_t)(entry & (RTE_VECTOR_MASK | RTE_DELIVERY_MASK));
}

/* Called with the lock held. */
static void ioapic_deliver(struct ioapic *io, unsigned pin)
{
	uint64_t entry = io->s.redir[pin];
	uint64_t addr;
	uint32_t data;

	/* ExtINT means "ask the 8259", which this VM does not have; modes 3
	 * and 6 are reserved (KVM would log each one on the host: a guest
	 * could flood the host's log). Fixed, lowest priority, SMI, NMI and
	 * INIT go out: the guest can send those with its LAPIC anyway. */
	unsigned mode = (unsigned)((entry & RTE_DELIVERY_MASK) >> RTE_DELIVERY_SHIFT);
	if (mode == DELIVERY_EXTINT || mode == DELIVERY_RESERVED_3 || mode == DELIVERY_RESERVED_6) {
		io->nr_dropped++;
		return;
	}
	ioapic_entry_to_msi(entry, &addr, &data);
	int ret = io->send_msi(io->send_opaque, addr, data);
	if (ret) {
		/* Logged once: a guest could otherwise flood the log. */
		if (io->nr_send_errors++ == 0)
			log_warn("IOAPIC pin %u: sending the interrupt failed: %s", pin,
				 strerror(-ret));
		return;
	}
	io->nr_sent++;
}

int ioapic_raise(struct ioapic *io, unsigned pin)
{
	if (pin >= IOAPIC_NR_PINS)
		return -EINVAL;
	pthread_mutex_lock(&io->lock);
	if (io->s.redir[pin] & RTE_MASKED)
		io->s.pending |= 1u << pin;
	else
		ioapic_deliver(io, pin);
	pthread_mutex_unlock(&io->lock);
	return 0;
}

/* Called with the lock held. */
static uint32_t ioapic_reg_read(const struct ioapic *io, uint32_t reg)
{
	switch (reg) {
	case IOAPIC_REG_ID:
	case IOAPIC_REG_ARB:
		return (io->s.id & 0xf) << 24;
	case IOAPIC_REG_VERSION:
		return ((IOAPIC_NR_PINS - 1) << 16) | IOAPIC_VERSION;
	default:
		if (reg >= IOAPIC_REG_REDIR && reg < IOAPIC_REG_REDIR + 2 * IOAPIC_NR_PINS) {
			uint64_t e = io->s.redir[(reg - IOAPIC_REG_REDIR) / 2];

			return (reg & 1) ? (uint32_t)(e >> 32) : (uint32_t)e;
		}
		return 0;
	}
}

/* Called with the lock held. */
static void ioapic_reg_write(struct ioapic *io, uint32_t reg, uint32_t value)
{
	if (reg == IOAPIC_REG_ID) {
		io->s.id = (value >> 24) & 0xf;
		return;
	}
	if (reg < IOAPIC_REG_REDIR || reg >= IOAPIC_REG_REDIR + 2 * IOAPIC_NR_PINS)
		return; /* version and arbitration are read-only */
	unsigned pin = (reg - IOAPIC_REG_REDIR) / 2;
	uint64_t e = io->s.redir[pin];

	if (reg & 1) {
		e = (e & 0xffffffffull) | ((uint64_t)value << 32);
	} else {
		e = (e & ~0xffffffffull) | (e & RTE_READ_ONLY) | (value & ~(uint32_t)RTE_READ_ONLY);
	}
	io->s.redir[pin] = e;
	if (!(e & RTE_MASKED) && (io->s.pending & (1u << pin))) {
		io->s.pending &= ~(1u << pin);
		ioapic_deliver(io, pin);
	}
}

void ioapic_mmio_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct ioapic *io = opaque;
	uint32_t v = 0;

	memset(data, 0, len);
	if (len != 4)
		return;
	pthread_mutex_lock(&io->lock);
	if (offset == REG_SELECT)
		v = io->s.ioregsel;
	else if (offset == REG_WINDOW)
		v = ioapic_reg_read(io, io->s.ioregsel);
	pthread_mutex_unlock(&io->lock);
	memcpy(data, &v, sizeof(v));
}

void ioapic_mmio_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct ioapic *io = opaque;
	uint32_t v;

	if (len != 4)
		return;
	memcpy(&v, data, sizeof(v));
	pthread_mutex_lock(&io->lock);
	if (offset == REG_SELECT)
		io->s.ioregsel = v & 0xff;
	else if (offset == REG_WINDOW)
		ioapic_reg_write(io, io->s.ioregsel, v);
	pthread_mutex_unlock(&io->lock);
}

void ioapic_get_state(struct ioapic *io, struct ioapic_state *out)
{
	pthread_mutex_lock(&io->lock);
	*out = io->s;
	pthread_mutex_unlock(&io->lock);
}

void ioapic_set_state(struct ioapic *io, const struct ioapic_state *in)
{
	pthread_mutex_lock(&io->lock);
	io->s = *in;
	io->s.id &= 0xf;
	io->s.ioregsel &= 0xff;
	io->s.reserved = 0;
	io->s.pending &= (1u << IOAPIC_NR_PINS) - 1;
	for (unsigned pin = 0; pin < IOAPIC_NR_PINS; pin++) {
		io->s.redir[pin] &= ~RTE_READ_ONLY;
		/* Edges are held only while a pin is masked (an unmask sends
		 * them), so a saved state has none on an unmasked pin; a state
		 * file that says otherwise is damaged: drop the edge. */
		if (!(io->s.redir[pin] & RTE_MASKED))
			io->s.pending &= ~(1u << pin);
	}
	pthread_mutex_unlock(&io->lock);
}
