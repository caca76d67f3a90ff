/*
 * smp.c - the "smp" scenario: find the CPUs in the Intel MP table and start
 * every AP with INIT-SIPI-SIPI through the xAPIC.
 *
 * APs enter the trampoline (start.S) at 0x8000 in real mode, switch to
 * long mode with the BSP's page tables, take a stack slot and call
 * smp_ap_main(), which prints "cpu <apic id> up" and counts itself.
 */
#include "guest.h"

#define MP_FLOATING_SIG 0x5f504d5fu   /* "_MP_" read as a little-endian u32 */
#define MP_CONFIG_SIG   0x504d4350u   /* "PCMP" */
#define MP_ENTRY_PROCESSOR 0
#define MP_ENTRY_MAX_KNOWN 4          /* bus, I/O APIC, I/O and local int */
#define MP_PROCESSOR_SIZE  20
#define MP_OTHER_SIZE      8
#define MP_CPU_ENABLED     0x01

#define LAPIC_BASE      0xfee00000u
#define LAPIC_ID        0x020
#define LAPIC_SVR       0x0f0
#define LAPIC_ICR_LOW   0x300
#define LAPIC_ICR_HIGH  0x310
#define LAPIC_SVR_ENABLE 0x100
#define LAPIC_SPURIOUS_VECTOR 0xff
#define ICR_DELIVERY_PENDING 0x1000
#define ICR_INIT        0x00004500u   /* INIT, level assert */
#define ICR_STARTUP     0x00004600u   /* SIPI, level assert; | vector */
#define SIPI_VECTOR     (SMP_TRAMPOLINE_PADDR >> 12)

/*
 * Bounds on busy waits, in loop iterations. Under the nested software KVM
 * one iteration is ~1-2 us, natively ~10-50 ns, so the AP wait allows
 * ~5-10 s emulated and well under a second natively.
 */
#define ICR_POLL_MAX    100000
#define IPI_DELAY_SPINS 200
#define AP_WAIT_SPINS   5000000

struct mp_floating_pointer {
	uint32_t signature;
	uint32_t config_paddr;
	uint8_t length;                 /* in 16-byte units */
	uint8_t spec_rev;
	uint8_t checksum;
	uint8_t features[5];            /* features[0] != 0: default config */
} __attribute__((packed));

struct mp_config_header {
	uint32_t signature;
	uint16_t base_length;
	uint8_t spec_rev;
	uint8_t checksum;
	char oem_id[8];
	char product_id[12];
	uint32_t oem_table_paddr;
	uint16_t oem_table_size;
	uint16_t entry_count;
	uint32_t lapic_paddr;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));

struct mp_processor_entry {
	uint8_t type;
	uint8_t lapic_id;
	uint8_t lapic_version;
	uint8_t flags;
	uint32_t signature;
	uint32_t features;
	uint32_t reserved[2];
} __attribute__((packed));

struct smp_cpu_list {
	uint32_t count;                 /* enabled processors in the table */
	uint8_t apic_id[SMP_MAX_CPUS];  /* first SMP_MAX_CPUS of them */
};

extern const char smp_trampoline_start[], smp_trampoline_end[];

static volatile uint32_t smp_cpus_up;

static uint8_t smp_checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + b[i]);
	return sum;
}

/* Scan [start, end) on 16-byte boundaries for a valid floating pointer. */
static const struct mp_floating_pointer *smp_scan_floating(uintptr_t start,
							   uintptr_t end)
{
	for (uintptr_t p = start; p + 16 <= end; p += 16) {
		const struct mp_floating_pointer *fp = (const void *)p;

		if (fp->signature != MP_FLOATING_SIG)
			continue;
		if (fp->length == 0 ||
		    smp_checksum(fp, (size_t)fp->length * 16) != 0)
			continue;
		return fp;
	}
	return NULL;
}

/* Fill *list from the MP table. Returns 0, -ENOENT or -EINVAL. */
static int smp_parse_mp_table(struct smp_cpu_list *list)
{
	const struct mp_floating_pointer *fp;
	const struct mp_config_header *cfg;
	const uint8_t *entry, *end;

	/* 0x9fc00 first: that is where mote puts it, and it is short. */
	fp = smp_scan_floating(0x9fc00, 0xa0000);
	if (!fp)
		fp = smp_scan_floating(0xf0000, 0x100000);
	if (!fp)
		return -ENOENT;
	if (fp->features[0] != 0 || fp->config_paddr == 0) {
		serial_printf("smp: MP default configurations not supported\n");
		return -EINVAL;
	}
	cfg = (const void *)(uintptr_t)fp->config_paddr;
	if (cfg->signature != MP_CONFIG_SIG ||
	    cfg->base_length < sizeof(*cfg) ||
	    smp_checksum(cfg, cfg->base_length) != 0) {
		serial_printf("smp: bad MP config table at 0x%x\n",
			      fp->config_paddr);
		return -EINVAL;
	}
	serial_printf("smp: MP table at 0x%lx, config at 0x%x, %u bytes\n",
		      (unsigned long)(uintptr_t)fp, fp->config_paddr,
		      cfg->base_length);

	list->count = 0;
	entry = (const uint8_t *)(cfg + 1);
	end = (const uint8_t *)cfg + cfg->base_length;
	/*
	 * Walk by base_length, not entry_count: QEMU's qboot firmware writes
	 * entry_count = 0 with valid entries (Linux also walks by length).
	 */
	while (entry < end) {
		size_t size = *entry == MP_ENTRY_PROCESSOR ? MP_PROCESSOR_SIZE
							     : MP_OTHER_SIZE;

		if (*entry > MP_ENTRY_MAX_KNOWN || entry + size > end) {
			serial_printf("smp: bad MP entry type %u at 0x%lx\n",
				      *entry, (unsigned long)(uintptr_t)entry);
			return -EINVAL;
		}
		if (*entry == MP_ENTRY_PROCESSOR) {
			const struct mp_processor_entry *cpu =
				(const void *)entry;

			if (cpu->flags & MP_CPU_ENABLED) {
				if (list->count < SMP_MAX_CPUS)
					list->apic_id[list->count] =
						cpu->lapic_id;
				list->count++;
			}
		}
		entry += size;
	}
	return 0;
}

static uint32_t lapic_read(uint32_t reg)
{
	return mmio_read32(LAPIC_BASE + reg);
}

static void lapic_write(uint32_t reg, uint32_t value)
{
	mmio_write32(LAPIC_BASE + reg, value);
}

static uint32_t lapic_read_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

static void smp_delay(uint32_t spins)
{
	for (uint32_t i = 0; i < spins; i++)
		cpu_pause();
}

/* Send one IPI. Returns 0 or -ETIMEDOUT if it stays pending. */
static int lapic_send_ipi(uint32_t apic_id, uint32_t icr_low)
{
	lapic_write(LAPIC_ICR_HIGH, apic_id << 24);
	lapic_write(LAPIC_ICR_LOW, icr_low);   /* this write sends it */
	for (uint32_t i = 0; i < ICR_POLL_MAX; i++) {
		if (!(lapic_read(LAPIC_ICR_LOW) & ICR_DELIVERY_PENDING))
			return 0;
		cpu_pause();
	}
	return -ETIMEDOUT;
}

/* INIT, then two SIPIs; a started AP ignores the second one. */
static int smp_start_ap(uint32_t apic_id)
{
	int err;

	err = lapic_send_ipi(apic_id, ICR_INIT);
	if (err)
		return err;
	smp_delay(IPI_DELAY_SPINS);
	for (int i = 0; i < 2; i++) {
		err = lapic_send_ipi(apic_id, ICR_STARTUP | SIPI_VECTOR);
		if (err)
			return err;
		smp_delay(IPI_DELAY_SPINS);
	}
	return 0;
}

/* Called by start64_ap in start.S on the AP's own stack. */
void smp_ap_main(uint32_t slot)
{
	(void)slot;
	idt_load();
	serial_printf("cpu %u up\n", lapic_read_id());
	/* Count after printing: the BSP's final lines come after ours. */
	__atomic_add_fetch(&smp_cpus_up, 1, __ATOMIC_SEQ_CST);
}

/* Returns the exit code for the scenario. */
int smp_run_test(void)
{
	struct smp_cpu_list list;
	uint32_t bsp_id, up, started = 0;
	int err;

	err = smp_parse_mp_table(&list);
	if (err) {
		serial_printf("TEST FAIL smp: no usable MP table (%d)\n", err);
		return GUEST_EXIT_FAIL;
	}
	if (list.count < 2) {
		serial_printf("TEST FAIL smp: MP table lists %u cpu(s), need >= 2\n",
			      list.count);
		return GUEST_EXIT_FAIL;
	}

	memcpy((void *)(uintptr_t)SMP_TRAMPOLINE_PADDR, smp_trampoline_start,
	       (size_t)(smp_trampoline_end - smp_trampoline_start));
	/* Software-enable the local APIC; all LVT entries stay masked. */
	lapic_write(LAPIC_SVR, LAPIC_SVR_ENABLE | LAPIC_SPURIOUS_VECTOR);

	bsp_id = lapic_read_id();
	__atomic_store_n(&smp_cpus_up, 1, __ATOMIC_SEQ_CST);
	serial_printf("cpu %u up (bsp)\n", bsp_id);

	for (uint32_t i = 0; i < list.count && i < SMP_MAX_CPUS; i++) {
		if (list.apic_id[i] == bsp_id)
			continue;
		err = smp_start_ap(list.apic_id[i]);
		if (err)
			serial_printf("smp: starting cpu %u failed (%d)\n",
				      list.apic_id[i], err);
		else
			started++;
	}

	for (uint32_t spin = 0; spin < AP_WAIT_SPINS; spin++) {
		if (__atomic_load_n(&smp_cpus_up, __ATOMIC_SEQ_CST) >=
		    list.count)
			break;
		cpu_pause();
	}
	up = __atomic_load_n(&smp_cpus_up, __ATOMIC_SEQ_CST);
	serial_printf("smp: %u of %u cpus ran guest code\n", up, list.count);
	if (up != list.count) {
		serial_printf("TEST FAIL smp: %u of %u cpus up (%u APs sent SIPI)\n",
			      up, list.count, started);
		return GUEST_EXIT_FAIL;
	}
	serial_printf("TEST PASS smp\n");
	return GUEST_EXIT_PASS;
}
