/* Intel MultiProcessor Specification 1.4 table. Linux (CONFIG_X86_MPPARSE)
 * and mote's test guest find CPUs, the IOAPIC and ISA IRQ routing in it,
 * which lets a microVM boot SMP without ACPI. */
#include <errno.h>
#include <string.h>

#include "vmm/boot.h"
#include "vmm/layout.h"

struct mpf_intel {
	char signature[4];
	uint32_t physptr;
	uint8_t length;
	uint8_t specification;
	uint8_t checksum;
	uint8_t feature[5];
} __attribute__((packed));

struct mpc_table {
	char signature[4];
	uint16_t length;
	uint8_t spec;
	uint8_t checksum;
	char oem[8];
	char productid[12];
	uint32_t oemptr;
	uint16_t oemsize;
	uint16_t oemcount;
	uint32_t lapic;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));

struct mpc_cpu {
	uint8_t type;
	uint8_t apicid;
	uint8_t apicver;
	uint8_t cpuflag;
	uint32_t cpufeature;
	uint32_t featureflag;
	uint32_t reserved[2];
} __attribute__((packed));

struct mpc_bus {
	uint8_t type;
	uint8_t busid;
	char bustype[6];
} __attribute__((packed));

struct mpc_ioapic {
	uint8_t type;
	uint8_t apicid;
	uint8_t apicver;
	uint8_t flags;
	uint32_t apicaddr;
} __attribute__((packed));

struct mpc_intsrc {
	uint8_t type;
	uint8_t irqtype;
	uint16_t irqflag;
	uint8_t srcbus;
	uint8_t srcbusirq;
	uint8_t dstapic;
	uint8_t dstirq;
} __attribute__((packed));

_Static_assert(sizeof(struct mpf_intel) == 16, "mpf size");
_Static_assert(sizeof(struct mpc_table) == 44, "mpc size");
_Static_assert(sizeof(struct mpc_cpu) == 20, "mpc_cpu size");
_Static_assert(sizeof(struct mpc_intsrc) == 8, "mpc_intsrc size");

enum { MP_PROCESSOR, MP_BUS, MP_IOAPIC, MP_INTSRC, MP_LINTSRC };
enum { MP_IRQ_INT = 0, MP_IRQ_NMI = 1, MP_IRQ_EXTINT = 3 };
#define MP_CPU_ENABLED 1
#define MP_CPU_BSP     2
#define MP_IOAPIC_PINS 24 /* KVM's in-kernel IOAPIC */
#define MP_APIC_VERSION 0x14
#define MP_IOAPIC_VERSION 0x11

#define MPTABLE_MAX_SIZE (sizeof(struct mpf_intel) + sizeof(struct mpc_table) + \
	MPTABLE_MAX_CPUS * sizeof(struct mpc_cpu) + sizeof(struct mpc_bus) + \
	sizeof(struct mpc_ioapic) + (MP_IOAPIC_PINS + 2) * sizeof(struct mpc_intsrc))
_Static_assert(LAYOUT_EBDA_ADDR + MPTABLE_MAX_SIZE <= 0xa0000, "MP table overflows the EBDA");

static uint8_t mp_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum = (uint8_t)(sum + *p++);
	return (uint8_t)-sum;
}

int mptable_write(struct guest_mem *mem, unsigned nr_cpus)
{
	if (nr_cpus == 0 || nr_cpus > MPTABLE_MAX_CPUS)
		return -EINVAL;
	uint8_t *base = guest_mem_gpa_to_hva(mem, LAYOUT_EBDA_ADDR, MPTABLE_MAX_SIZE);
	if (!base)
		return -EFAULT;
	memset(base, 0, MPTABLE_MAX_SIZE);

	struct mpf_intel *mpf = (struct mpf_intel *)base;
	struct mpc_table *mpc = (struct mpc_table *)(mpf + 1);
	uint8_t *p = (uint8_t *)(mpc + 1);
	uint16_t count = 0;
	const uint8_t ioapic_id = (uint8_t)nr_cpus;

	for (unsigned i = 0; i < nr_cpus; i++) {
		struct mpc_cpu cpu = {
			.type = MP_PROCESSOR,
			.apicid = (uint8_t)i,
			.apicver = MP_APIC_VERSION,
			.cpuflag = MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0),
			.cpufeature = 0x600,      /* family 6 */
			.featureflag = 0x201,     /* FPU, APIC */
		};
		memcpy(p, &cpu, sizeof(cpu));
		p += sizeof(cpu);
		count++;
	}
	struct mpc_bus bus = { .type = MP_BUS, .busid = 0, .bustype = "ISA   " };
	memcpy(p, &bus, sizeof(bus));
	p += sizeof(bus);
	count++;
	struct mpc_ioapic ioapic = {
		.type = MP_IOAPIC, .apicid = ioapic_id, .apicver = MP_IOAPIC_VERSION,
		.flags = 1, .apicaddr = (uint32_t)LAYOUT_IOAPIC_ADDR,
	};
	memcpy(p, &ioapic, sizeof(ioapic));
	p += sizeof(ioapic);
	count++;
	/* Bus IRQ n is wired to IOAPIC pin n, as in KVM's in-kernel IOAPIC;
	 * pins 16-23 carry the virtio-mmio devices. */
	for (uint8_t irq = 0; irq < MP_IOAPIC_PINS; irq++) {
		struct mpc_intsrc src = {
			.type = MP_INTSRC, .irqtype = MP_IRQ_INT, .srcbus = 0,
			.srcbusirq = irq, .dstapic = ioapic_id, .dstirq = irq,
		};
		memcpy(p, &src, sizeof(src));
		p += sizeof(src);
		count++;
	}
	/* LINT0 carries the 8259 (ExtINT), LINT1 NMI, on every CPU. */
	struct mpc_intsrc lint0 = { .type = MP_LINTSRC, .irqtype = MP_IRQ_EXTINT,
				    .dstapic = 0xff, .dstirq = 0 };
	struct mpc_intsrc lint1 = { .type = MP_LINTSRC, .irqtype = MP_IRQ_NMI,
				    .dstapic = 0xff, .dstirq = 1 };
	memcpy(p, &lint0, sizeof(lint0));
	p += sizeof(lint0);
	memcpy(p, &lint1, sizeof(lint1));
	p += sizeof(lint1);
	count += 2;

	memcpy(mpc->signature, "PCMP", 4);
	mpc->length = (uint16_t)(p - (uint8_t *)mpc);
	mpc->spec = 4;
	memcpy(mpc->oem, "MOTE    ", 8);
	memcpy(mpc->productid, "MICROVM     ", 12);
	mpc->oemcount = count;
	mpc->lapic = (uint32_t)LAYOUT_LAPIC_ADDR;
	mpc->checksum = mp_checksum((uint8_t *)mpc, mpc->length);

	memcpy(mpf->signature, "_MP_", 4);
	mpf->physptr = (uint32_t)(LAYOUT_EBDA_ADDR + sizeof(*mpf));
	mpf->length = 1;
	mpf->specification = 4;
	mpf->checksum = mp_checksum((uint8_t *)mpf, sizeof(*mpf));
	return 0;
}
