/*
 * snap_tests.c - the snapshot scenario snap-compute.
 *
 * A computation whose state lives everywhere a snapshot must carry:
 * the accumulator in registers, a table in RAM, the pacing in the LAPIC
 * timer (sti;hlt until N ticks passed) and the results on a virtio-blk
 * drive (one sector per step, written and read back with interrupts).
 * Each step prints one line, so the host can check that serial output
 * continues across a snapshot with nothing lost or repeated:
 *
 *   snap: step <i> acc=<hex>
 *   ...
 *   snap: result <hex>          (XOR of every step's acc, read back from disk)
 *   TEST PASS snap-compute
 *
 * Tokens: snapsteps=<n> (40), snapticks=<n> timer ticks per step (4),
 * snapnodisk=1 (no drive: the records stay in RAM; for clones of one
 * snapshot, which cannot share a writable drive), snaptouch=<KiB> (fill
 * that much RAM at the start and check it at the end: pages clones share).
 * tests/integration/test_snapshot.c computes the same values on the host.
 */
#include "blk.h"
#include "vsock.h"

#define SNAP_TABLE     4096
#define SNAP_MIX_ROUNDS 64
#define SNAP_MAGIC     0x534e4150u  /* "SNAP" */

static uint64_t snap_table[SNAP_TABLE];
static struct virtio_dev snap_vdevs[VIRTIO_MAX_DEVICES];
static struct blk_dev snap_blk;
static uint64_t snap_nodisk_result;

/* The same function is in test_snapshot.c: keep them equal. */
static uint64_t snap_step(uint64_t acc, uint64_t step)
{
	for (unsigned i = 0; i < SNAP_MIX_ROUNDS; i++) {
		unsigned idx = (unsigned)((acc >> (i % 7)) + i * 31) & (SNAP_TABLE - 1);

		snap_table[idx] = snap_table[idx] * 6364136223846793005ull + acc + step;
		acc = ((acc << 13) | (acc >> 51)) ^ snap_table[idx];
	}
	return acc;
}

static int snap_fail(const char *what, int r)
{
	serial_printf("TEST FAIL snap-compute: %s (%d)\n", what, r);
	return GUEST_EXIT_FAIL;
}

static void snap_wait_ticks(uint32_t ticks)
{
	uint32_t start = irq_timer_ticks;

	while (irq_timer_ticks - start < ticks) {
		cpu_sti_hlt();
		cpu_cli();
	}
}

static int snap_open_drive(void)
{
	struct blk_opts o = { .irq_mode = 1, .event_idx = 1 };
	int n = virtio_discover(snap_vdevs, VIRTIO_MAX_DEVICES);

	for (int i = 0; i < n; i++) {
		if (snap_vdevs[i].device_id == VIRTIO_ID_BLOCK)
			return blk_open(&snap_blk, &snap_vdevs[i], 0, &o);
	}
	return -ENODEV;
}

int snap_compute(void)
{
	uint64_t steps = cmdline_u64("snapsteps=", 40);
	uint32_t ticks = (uint32_t)cmdline_u64("snapticks=", 4);
	uint64_t touch = cmdline_u64("snaptouch=", 0) << 10;
	int nodisk = cmdline_u64("snapnodisk=", 0) != 0;
	uint64_t acc = 0x6d6f7465ull, result = 0;
	uint64_t *buf;
	uint8_t *touched = 0;
	int r;

	irq_init();
	if (!nodisk) {
		r = snap_open_drive();
		if (r)
			return snap_fail("no virtio-blk drive", r);
		if (steps > snap_blk.capacity)
			return snap_fail("drive too small for snapsteps", (int)snap_blk.capacity);
	}
	buf = dma_alloc(BLK_SECTOR_SIZE, 4096);
	if (!buf)
		return snap_fail("no buffer", -ENOMEM);
	if (touch) {
		touched = dma_alloc(touch, 4096);
		if (!touched)
			return snap_fail("no memory for snaptouch", -ENOMEM);
		memset(touched, 0x5a, touch);
	}
	for (unsigned i = 0; i < SNAP_TABLE; i++)
		snap_table[i] = i * 0x9e3779b97f4a7c15ull;
	serial_printf("snap: start steps=%lu\n", (unsigned long)steps);
	for (uint64_t s = 0; s < steps; s++) {
		snap_wait_ticks(ticks);
		acc = snap_step(acc, s);
		buf[0] = SNAP_MAGIC | (s << 32);
		buf[1] = acc;
		if (nodisk) {
			/* The records stay in RAM: only their XOR. */
			snap_nodisk_result ^= acc;
		} else {
			blk_prep(&snap_blk, 0, VIRTIO_BLK_T_OUT, s, buf, BLK_SECTOR_SIZE);
			r = blk_sync(&snap_blk, 0);
			if (r != VIRTIO_BLK_S_OK)
				return snap_fail("write failed", r);
		}
		serial_printf("snap: step %lu acc=%lx\n", (unsigned long)s, (unsigned long)acc);
	}
	/* Read every step's record back: the drive must hold them all, each
	 * written once, whichever monitor process wrote it. */
	for (uint64_t s = 0; s < steps && !nodisk; s++) {
		buf[0] = buf[1] = 0;
		blk_prep(&snap_blk, 0, VIRTIO_BLK_T_IN, s, buf, BLK_SECTOR_SIZE);
		r = blk_sync(&snap_blk, 0);
		if (r != VIRTIO_BLK_S_OK)
			return snap_fail("read failed", r);
		if (buf[0] != (SNAP_MAGIC | (s << 32)))
			return snap_fail("bad record on disk", (int)s);
		result ^= buf[1];
	}
	if (nodisk)
		result = snap_nodisk_result;
	for (uint64_t off = 0; off < touch; off += 4096) {
		if (touched[off] != 0x5a || touched[off + 4095] != 0x5a)
			return snap_fail("snaptouch memory changed", (int)(off >> 12));
	}
	serial_printf("snap: result %lx\n", (unsigned long)result);
	serial_printf("TEST PASS snap-compute\n");
	return GUEST_EXIT_PASS;
}

#define I8042_DATA_PORT   0x60
#define I8042_STATUS_PORT 0x64

/*
 * snap-dirty: for diff snapshots. Prints the region it will write, waits
 * for a byte in the i8042 (the host's SendCtrlAltDel, sent after its base
 * snapshot) while writing no memory, then writes one word into each of
 * dirtypages=<n> (16) pages and zeroes one more page it had filled before,
 * prints "dirty: written" and spins with interrupts off (no more writes).
 */
int snap_dirty(void)
{
	uint64_t pages = cmdline_u64("dirtypages=", 16);
	uint8_t *region = dma_alloc((pages + 1) * 4096, 4096);

	if (!region)
		return snap_fail("no memory for dirtypages", -ENOMEM);
	memset(region + pages * 4096, 0xff, 4096);
	serial_printf("dirty: ready region=%lx pages=%lu\n", (unsigned long)(uintptr_t)region,
		      (unsigned long)(pages + 1));
	cpu_cli();
	while (!(io_in8(I8042_STATUS_PORT) & 1))
		cpu_pause();
	(void)io_in8(I8042_DATA_PORT);
	for (uint64_t p = 0; p < pages; p++)
		*(volatile uint64_t *)(region + p * 4096 + 8 * (p % 512)) =
			(p + 1) * 0x0101010101010101ull;
	memset(region + pages * 4096, 0, 4096);
	serial_printf("dirty: written\n");
	for (;;)
		cpu_pause();
	return GUEST_EXIT_FAIL;
}

/*
 * snap-random: clones need their own randomness. The guest seeds a PRNG
 * from the host (8 bytes read from a vsock stream to host port
 * vseedport=<n> (7000)), prints "rand: ready", then waits. A restored
 * clone hears the vsock transport reset (its streams died with the saved
 * monitor), seeds again from its own host, and prints
 *   rand: reseeded after restore, value <hex>
 * then exits 0. Two clones of one snapshot must print different values.
 */
static uint8_t rand_seed[8];
static unsigned rand_got;

static int rand_accept(struct vsock_conn *c)
{
	(void)c;
	return 0;
}

static void rand_data(struct vsock_conn *c, uint16_t buf, const uint8_t *p, uint32_t len)
{
	for (uint32_t i = 0; i < len && rand_got < sizeof(rand_seed); i++)
		rand_seed[rand_got++] = p[i];
	vsock_release(c, buf, len);
}

static void rand_closed(struct vsock_conn *c)
{
	(void)c;
}

static const struct vsock_app rand_app = {
	.accept = rand_accept, .data = rand_data, .closed = rand_closed,
};

/* 0 with the seed in *out, or -errno. */
static int rand_fetch_seed(uint32_t port, uint64_t *out)
{
	uint64_t start = cpu_rdtsc();
	struct vsock_conn *c;

	rand_got = 0;
	c = vsock_connect(port);
	if (!c)
		return -EIO;
	while (rand_got < sizeof(rand_seed)) {
		if (cpu_rdtsc() - start > VIRTIO_WAIT_TSC)
			return -ETIMEDOUT;
		if (!vsock_poll())
			vsock_wait();
	}
	memcpy(out, rand_seed, sizeof(*out));
	return 0;
}

static uint64_t rand_next(uint64_t *s)
{
	/* xorshift64*: plenty for telling clones apart. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

int snap_random(void)
{
	uint32_t port = (uint32_t)cmdline_u64("vseedport=", 7000);
	uint64_t state;
	int r;

	if (vsock_app_open(&rand_app, 0))
		return snap_fail("no vsock device", -ENODEV);
	r = rand_fetch_seed(port, &state);
	if (r)
		return snap_fail("no seed from the host", r);
	serial_printf("rand: ready, value %lx\n", (unsigned long)rand_next(&state));
	uint32_t resets = vsock_transport_resets();
	while (vsock_transport_resets() == resets) {
		if (!vsock_poll())
			vsock_wait();
	}
	r = rand_fetch_seed(port, &state);
	if (r)
		return snap_fail("no seed from the host after the restore", r);
	serial_printf("rand: reseeded after restore, value %lx\n",
		      (unsigned long)rand_next(&state));
	serial_printf("TEST PASS snap-random\n");
	return GUEST_EXIT_PASS;
}
