/*
 * virtio.c - the virtio-mmio transport (version 2, "modern", registers
 * only) and split virtqueues (virtio 1.2, 2.7 and 4.2).
 *
 * Devices are found through the kernel command line tokens
 * "virtio_mmio.device=<size>@<base>:<irq>" that mote (and QEMU microvm
 * with acpi=off) append. Each device gets queue 0 only, with its rings in
 * memory taken from a bump allocator over RAM above the guest image.
 *
 * Guest instructions are expensive under nested emulation (~260 ns each),
 * so the hot paths (push, kick, pop, wait) are a handful of instructions
 * and every MMIO access is deliberate (each one is a VM exit).
 */
#include "virtio.h"

#define DEVICE_TOKEN "virtio_mmio.device="

/* Bounds on polling the device through registers (each read is an exit). */
#define RESET_POLL_MAX   100000
#define CONFIG_GEN_TRIES 16

/* Heap: RAM above the image, up to the end of its memmap RAM entry. */
#define HEAP_ALIGN        0x10000
#define HEAP_DEFAULT_SIZE 0x1000000   /* without a memmap: assume 16 MiB */
#define HEAP_LIMIT        0xc0000000u /* the MMIO hole starts at 3 GiB */

extern char __image_end[];             /* link.ld */

static uintptr_t heap_next, heap_end;

static uintptr_t align_up(uintptr_t v, uintptr_t align)
{
	return (v + align - 1) & ~(align - 1);
}

static void heap_init(void)
{
	const struct hvm_start_info *si =
		(const void *)(uintptr_t)boot_start_info_paddr;
	uintptr_t start = (uintptr_t)__image_end;

	/* Stay clear of the command line if a loader put it above us. */
	if ((uintptr_t)guest_cmdline >= start)
		start = (uintptr_t)guest_cmdline + lib_strlen(guest_cmdline) + 1;
	start = align_up(start, HEAP_ALIGN);
	heap_next = start;
	heap_end = start + HEAP_DEFAULT_SIZE;
	if (si && si->version >= 1 && si->memmap_paddr && si->memmap_entries) {
		const struct hvm_memmap_entry *map =
			(const void *)(uintptr_t)si->memmap_paddr;

		heap_end = start;   /* nothing unless RAM holds start */
		for (uint32_t i = 0; i < si->memmap_entries; i++) {
			if (map[i].type == HVM_MEMMAP_TYPE_RAM &&
			    map[i].addr <= start &&
			    start < map[i].addr + map[i].size)
				heap_end = (uintptr_t)(map[i].addr + map[i].size);
		}
	}
	if (heap_end > HEAP_LIMIT)
		heap_end = HEAP_LIMIT;
}

void *dma_alloc(size_t size, size_t align)
{
	uintptr_t p;

	if (!heap_next)
		heap_init();
	p = align_up(heap_next, align);
	if (p + size > heap_end || p + size < p) {
		serial_printf("virtio: out of memory for %lu bytes (heap 0x%lx-0x%lx)\n",
			      (unsigned long)size, (unsigned long)heap_next,
			      (unsigned long)heap_end);
		return NULL;
	}
	heap_next = p + size;
	return (void *)p;
}

/* memparse-like: decimal or 0x hex, optional K/M/G suffix. */
static int virtio_parse_size(const char *s, size_t len, uint64_t *out)
{
	unsigned shift = 0;
	int err;

	if (len && (s[len - 1] == 'K' || s[len - 1] == 'k'))
		shift = 10;
	else if (len && (s[len - 1] == 'M' || s[len - 1] == 'm'))
		shift = 20;
	else if (len && (s[len - 1] == 'G' || s[len - 1] == 'g'))
		shift = 30;
	if (shift)
		len--;
	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		err = lib_parse_hex64(s, len, out);
	else
		err = lib_parse_u64(s, len, out);
	if (err)
		return err;
	*out <<= shift;
	return 0;
}

/* "<size>@<base>:<irq>[:<id>]" */
static int virtio_parse_token(const char *v, size_t len, uint64_t *size,
			      uint64_t *base, uint32_t *irq)
{
	size_t at = 0, colon, end;

	while (at < len && v[at] != '@')
		at++;
	colon = at + 1;
	while (colon < len && v[colon] != ':')
		colon++;
	end = colon + 1;
	while (end < len && v[end] != ':')
		end++;
	if (at >= len || colon >= len)
		return -EINVAL;
	if (virtio_parse_size(v, at, size) ||
	    virtio_parse_size(v + at + 1, colon - at - 1, base) ||
	    lib_parse_u32(v + colon + 1, end - colon - 1, irq))
		return -EINVAL;
	return 0;
}

int virtio_discover(struct virtio_dev *devs, int max)
{
	const char *cursor = NULL, *val;
	size_t len;
	int n = 0;

	while (n < max && cmdline_next(&cursor, DEVICE_TOKEN, &val, &len)) {
		struct virtio_dev *d = &devs[n];
		uint64_t size, base;
		uint32_t irq, magic, version, id;

		if (virtio_parse_token(val, len, &size, &base, &irq) ||
		    size < 0x100 + 4 || base >= 0x100000000ull ||
		    base + size > 0x100000000ull) {
			serial_printf("virtio: bad token '" DEVICE_TOKEN);
			serial_write_bytes(val, len);
			serial_printf("'\n");
			continue;
		}
		magic = mmio_read32((uintptr_t)base + VIRTIO_MMIO_MAGIC_VALUE);
		version = mmio_read32((uintptr_t)base + VIRTIO_MMIO_VERSION);
		if (magic != VIRTIO_MMIO_MAGIC) {
			serial_printf("virtio: no device at 0x%lx (magic 0x%x)\n",
				      (unsigned long)base, magic);
			continue;
		}
		if (version != 2) {
			serial_printf("virtio: 0x%lx has version %u, need 2 (modern)\n",
				      (unsigned long)base, version);
			continue;
		}
		id = mmio_read32((uintptr_t)base + VIRTIO_MMIO_DEVICE_ID);
		if (id == 0)
			continue;       /* empty transport slot */
		memset(d, 0, sizeof(*d));
		d->base = (uintptr_t)base;
		d->window = (uint32_t)size;
		d->irq = irq;
		d->device_id = id;
		d->vendor_id = mmio_read32(d->base + VIRTIO_MMIO_VENDOR_ID);
		d->vector = (uint8_t)(IRQ_VECTOR_DEVICE + n);
		n++;
	}
	return n;
}

int virtio_reset(struct virtio_dev *d)
{
	virtio_write32(d, VIRTIO_MMIO_STATUS, 0);
	for (int i = 0; i < RESET_POLL_MAX; i++) {
		if (virtio_read32(d, VIRTIO_MMIO_STATUS) == 0)
			return 0;
		cpu_pause();
	}
	return -ETIMEDOUT;
}

uint8_t virtio_config8(const struct virtio_dev *d, uint32_t off)
{
	return mmio_read8(d->base + VIRTIO_MMIO_CONFIG + off);
}

uint32_t virtio_config32(const struct virtio_dev *d, uint32_t off)
{
	return virtio_read32(d, VIRTIO_MMIO_CONFIG + off);
}

/* Two 32-bit reads; retried while ConfigGeneration changes (4.2.2.2). */
uint64_t virtio_config64(const struct virtio_dev *d, uint32_t off)
{
	uint32_t lo = 0, hi = 0;

	for (int i = 0; i < CONFIG_GEN_TRIES; i++) {
		uint32_t gen = virtio_read32(d, VIRTIO_MMIO_CONFIG_GENERATION);

		lo = virtio_config32(d, off);
		hi = virtio_config32(d, off + 4);
		if (virtio_read32(d, VIRTIO_MMIO_CONFIG_GENERATION) == gen)
			break;
	}
	return ((uint64_t)hi << 32) | lo;
}

static void virtio_fail(struct virtio_dev *d, uint32_t status)
{
	virtio_write32(d, VIRTIO_MMIO_STATUS, status | VIRTIO_STATUS_FAILED);
}

void virtio_irq_handler(void *arg)
{
	struct virtio_dev *d = arg;
	uint32_t isr = virtio_read32(d, VIRTIO_MMIO_INTERRUPT_STATUS);

	if (isr)
		virtio_write32(d, VIRTIO_MMIO_INTERRUPT_ACK, isr);
	d->isr_seen |= isr;
	d->interrupts++;
}

static void virtio_write_addr(struct virtio_dev *d, uint32_t reg_low,
			      const volatile void *p)
{
	uint64_t a = (uint64_t)(uintptr_t)p;

	virtio_write32(d, reg_low, (uint32_t)a);
	virtio_write32(d, reg_low + 4, (uint32_t)(a >> 32));
}

void virtq_place(struct virtio_dev *d, struct virtq *vq, uint8_t *mem, uint32_t size)
{
	vq->size = (uint16_t)size;
	vq->desc = (volatile struct virtq_desc *)mem;
	vq->avail = (volatile struct virtq_avail *)(mem + 0x1000);
	vq->used = (volatile struct virtq_used *)(mem + 0x1400);
	vq->used_event = &vq->avail->ring[size];
	vq->avail_event = (volatile uint16_t *)&vq->used->ring[size];
	vq->avail_shadow = 0;
	vq->avail_kicked = 0;
	vq->used_last = 0;
	virtio_write32(d, VIRTIO_MMIO_QUEUE_NUM, size);
	virtio_write_addr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, vq->desc);
	virtio_write_addr(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, vq->avail);
	virtio_write_addr(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, vq->used);
}

int virtio_init(struct virtio_dev *d, uint64_t want, uint32_t qsize,
		int irq_mode)
{
	struct virtq *vq = &d->vq;
	uint32_t status, max, size;
	uint8_t *mem;

	if (virtio_reset(d)) {
		serial_printf("virtio: 0x%lx: reset did not complete\n",
			      (unsigned long)d->base);
		return -ETIMEDOUT;
	}
	status = VIRTIO_STATUS_ACKNOWLEDGE;
	virtio_write32(d, VIRTIO_MMIO_STATUS, status);
	status |= VIRTIO_STATUS_DRIVER;
	virtio_write32(d, VIRTIO_MMIO_STATUS, status);

	virtio_write32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	d->offered = virtio_read32(d, VIRTIO_MMIO_DEVICE_FEATURES);
	virtio_write32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	d->offered |= (uint64_t)virtio_read32(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	if (!(d->offered & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
		serial_printf("virtio: 0x%lx does not offer VERSION_1 (features 0x%lx)\n",
			      (unsigned long)d->base, (unsigned long)d->offered);
		virtio_fail(d, status);
		return -ENODEV;
	}
	d->features = (want & d->offered) | VIRTIO_BIT(VIRTIO_F_VERSION_1);
	virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)d->features);
	virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES,
		       (uint32_t)(d->features >> 32));
	status |= VIRTIO_STATUS_FEATURES_OK;
	virtio_write32(d, VIRTIO_MMIO_STATUS, status);
	if (!(virtio_read32(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK)) {
		serial_printf("virtio: 0x%lx refused features 0x%lx\n",
			      (unsigned long)d->base, (unsigned long)d->features);
		virtio_fail(d, status);
		return -EIO;
	}

	virtio_write32(d, VIRTIO_MMIO_QUEUE_SEL, 0);
	if (virtio_read32(d, VIRTIO_MMIO_QUEUE_READY)) {
		serial_printf("virtio: 0x%lx queue 0 ready after reset\n",
			      (unsigned long)d->base);
		virtio_fail(d, status);
		return -EIO;
	}
	max = virtio_read32(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
	if (max == 0) {
		serial_printf("virtio: 0x%lx has no queue 0\n",
			      (unsigned long)d->base);
		virtio_fail(d, status);
		return -ENODEV;
	}
	size = qsize ? qsize : max;
	if (size > max)
		size = max;
	if (size > VIRTQ_MAX_SIZE)
		size = VIRTQ_MAX_SIZE;
	while (size & (size - 1))       /* split rings: a power of 2 */
		size &= size - 1;

	if (!d->mem) {
		d->mem = dma_alloc(VIRTIO_DEV_MEM, 4096);
		if (!d->mem) {
			virtio_fail(d, status);
			return -ENOMEM;
		}
	}
	mem = d->mem;
	virtq_place(d, vq, mem, size);
	/* Only the indices and event words need a known value. */
	vq->avail->flags = irq_mode ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT;
	vq->avail->idx = 0;
	*vq->used_event = 0;
	vq->used->flags = 0;
	vq->used->idx = 0;
	*vq->avail_event = 0;
	d->irq_mode = irq_mode;

	if (irq_mode) {
		irq_init();
		if (irq_route(d->irq, d->vector, virtio_irq_handler, d)) {
			virtio_fail(d, status);
			return -EINVAL;
		}
	}
	virtio_write32(d, VIRTIO_MMIO_QUEUE_READY, 1);
	status |= VIRTIO_STATUS_DRIVER_OK;
	virtio_write32(d, VIRTIO_MMIO_STATUS, status);
	return 0;
}

void virtq_kick(struct virtio_dev *d)
{
	struct virtq *vq = &d->vq;
	uint16_t old = vq->avail_kicked, now = vq->avail_shadow;
	int need;

	if (old == now)
		return;
	cpu_barrier();          /* descriptors and ring entries first */
	vq->avail->idx = now;
	vq->avail_kicked = now;
	cpu_mfence();           /* publish idx before reading the device's hint */
	if (d->features & VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX))
		need = (uint16_t)(now - *vq->avail_event - 1) <
		       (uint16_t)(now - old);
	else
		need = !(vq->used->flags & VIRTQ_USED_F_NO_NOTIFY);
	if (need) {
		virtio_write32(d, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
		d->notifies++;
	}
}

int virtq_wait(struct virtio_dev *d, uint64_t tsc_limit)
{
	struct virtq *vq = &d->vq;
	uint64_t start;

	if (vq->used->idx != vq->used_last)
		return 0;
	d->sleeps++;
	start = cpu_rdtsc();
	if (!d->irq_mode) {
		for (;;) {
			for (int i = 0; i < 256; i++) {
				if (vq->used->idx != vq->used_last)
					return 0;
				cpu_pause();
			}
			if (cpu_rdtsc() - start > tsc_limit)
				return -ETIMEDOUT;
		}
	}
	/* Interrupts are only ever enabled inside sti;hlt, so checking with
	 * IF=0 and then sti;hlt cannot miss a completion's interrupt. */
	for (;;) {
		if (d->features & VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX)) {
			*vq->used_event = vq->used_last;
			cpu_mfence();
		}
		if (vq->used->idx != vq->used_last)
			return 0;
		if (cpu_rdtsc() - start > tsc_limit)
			return -ETIMEDOUT;
		cpu_sti_hlt();
		cpu_cli();
	}
}
