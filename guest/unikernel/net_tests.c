/*
 * net_tests.c - the virtio-net scenarios: net-reflect, net-gen, net-norx.
 *
 * The host generates and checks the bytes; per frame the guest does a
 * few dozen instructions (guest CPL0 code is emulated on the development
 * machines, ~260 ns an instruction).
 *
 *   net-reflect  every received frame goes back out with its Ethernet
 *                source and destination swapped, from the same buffers
 *                (no copy); exits 0 after frames=<n> (10000) frames.
 *   net-gen      sends frames=<n> (1000) frames cycling through
 *                sizes=<a,b,..> (60,1514) bytes, broadcast, EtherType
 *                0x88b5, payload: "MOTE", le32 sequence number, le32
 *                frame length, then byte i of the frame = NET_PATTERN(i).
 *   net-norx     posts no RX buffers for norx_ms=<ms> (2000), then posts
 *                them and counts what arrives for rx_ms=<ms> (1000).
 *   net-hostile  sends chains the device must refuse, then breaks the TX
 *                ring; passes when the device says DEVICE_NEEDS_RESET.
 *
 * Other tokens: netmrg=0|1 (1), netbuf=<bytes per RX buffer> (2048),
 * netbufs=<n> (128), netoff=1 (also negotiate CSUM, GUEST_CSUM and TSO4/6
 * both ways; the reflector passes the header through unchanged).
 */
#include "net.h"

#define NET_GEN_MAGIC   0x45544f4du   /* "MOTE" */
#define NET_GEN_TYPE_HI 0x88
#define NET_GEN_TYPE_LO 0xb5
#define NET_GEN_MAX     9216u
#define NET_GEN_HDR     26            /* eth 14 + magic, seq, len */
#define NET_MAX_SIZES   16
#define NET_PATTERN(i)  ((uint8_t)((i) * 13u + ((i) >> 8)))
#define NET_DRAIN_WAITS 3000          /* ~30 s of 10 ms timer ticks */

static struct virtio_dev vdevs[VIRTIO_MAX_DEVICES];
static struct net_dev net;
static const char *test_name = "";

#define net_fail(...) test_fail(test_name, __VA_ARGS__)

static int net_setup(void)
{
	struct net_opts o = {
		.mrg = (int)cmdline_u64("netmrg=", 1),
		.offloads = (int)cmdline_u64("netoff=", 0),
		.buf_size = (uint32_t)cmdline_u64("netbuf=", 2048),
		.nbufs = (uint32_t)cmdline_u64("netbufs=", 128),
	};
	int nvdev = virtio_discover(vdevs, VIRTIO_MAX_DEVICES);
	int err = net_open(&net, vdevs, nvdev, &o);

	if (err)
		return net_fail("device set-up failed (%d)", err);
	return 0;
}

/* Waits until every TX slot came back, so no frame is lost at exit. */
static int net_drain_tx(void)
{
	for (unsigned w = 0; net.tx_nfree < NET_TX_SLOTS; w++) {
		if (net_tx_reap(&net, 0) < 0)
			return net_fail("bad TX completion id");
		if (net.tx_nfree == NET_TX_SLOTS)
			break;
		if (w > NET_DRAIN_WAITS)
			return net_fail("%u TX frames never completed", NET_TX_SLOTS - net.tx_nfree);
		net_wait(&net);
	}
	return 0;
}

static void net_swap_macs(uint8_t *eth)
{
	uint32_t d0, s0;
	uint16_t d1, s1;

	__builtin_memcpy(&d0, eth, 4);
	__builtin_memcpy(&d1, eth + 4, 2);
	__builtin_memcpy(&s0, eth + 6, 4);
	__builtin_memcpy(&s1, eth + 10, 2);
	__builtin_memcpy(eth, &s0, 4);
	__builtin_memcpy(eth + 4, &s1, 2);
	__builtin_memcpy(eth + 6, &d0, 4);
	__builtin_memcpy(eth + 10, &d1, 2);
}

static int net_reflect(void)
{
	uint64_t frames = cmdline_u64("frames=", 10000), done = 0, bad = 0;
	uint64_t t0;
	int err;

	if ((err = net_setup()))
		return err;
	for (uint32_t i = 0; i < net.nbufs; i++)
		net_rx_post(&net, i);
	net_kick(&net, &net.rx);
	serial_printf("net-reflect: ready for %lu frames\n", (unsigned long)frames);
	t0 = cpu_rdtsc();
	while (done < frames) {
		int progress = net_tx_reap(&net, 1);

		if (progress < 0)
			return net_fail("bad TX completion id");
		while (done < frames && net.tx_nfree) {
			uint64_t addr[NET_SEG_MAX];
			uint32_t id, len[NET_SEG_MAX];
			uint16_t ids[NET_SEG_MAX];
			uint16_t nb = 1;
			uint8_t *b;

			if (!net_peek(&net.rx, 0, &id, &len[0]))
				break;
			if (id >= net.nbufs)
				return net_fail("RX completion id %u out of range", id);
			b = net_rx_buf(&net, id);
			if (net.mrg)
				__builtin_memcpy(&nb, b + 10, 2);
			if (nb == 0 || nb > NET_SEG_MAX)
				return net_fail("frame in %u buffers (at most %u)", nb, NET_SEG_MAX);
			/* The device may not have published the rest yet. */
			if (nb > 1 && !net_peek(&net.rx, (uint16_t)(nb - 1), &id, &len[nb - 1]))
				break;
			for (uint16_t k = 0; k < nb; k++) {
				net_peek(&net.rx, k, &id, &len[k]);
				if (id >= net.nbufs)
					return net_fail("RX completion id %u out of range", id);
				ids[k] = (uint16_t)id;
				addr[k] = (uint64_t)(uintptr_t)net_rx_buf(&net, id);
			}
			net_consume(&net.rx, nb);
			progress++;
			if (len[0] < NET_HDR_LEN + NET_ETH_HLEN) {
				/* Nothing to reflect: straight back to the RX queue. */
				for (uint16_t k = 0; k < nb; k++)
					net_rx_post(&net, ids[k]);
				bad++;
				continue;
			}
			net_swap_macs(b + NET_HDR_LEN);
			/* DATA_VALID is the device's to set: not on TX. */
			b[0] &= 1;
			net_tx_chain(&net, addr, len, nb, ids);
			done++;
		}
		net_kick(&net, &net.tx);
		net_kick(&net, &net.rx);
		if (!progress)
			net_wait(&net);
	}
	if ((err = net_drain_tx()))
		return err;
	serial_printf("net-reflect: %lu frames reflected, %lu runt, %lu TSC ticks, waits %u, "
		      "kicks rx %u tx %u, interrupts %u\n",
		      (unsigned long)done, (unsigned long)bad, (unsigned long)(cpu_rdtsc() - t0),
		      net.waits, net.rx.notifies, net.tx.notifies, net.vdev->interrupts);
	serial_printf("TEST PASS net-reflect\n");
	return GUEST_EXIT_PASS;
}

static int net_parse_sizes(uint32_t *sizes)
{
	const char *v;
	size_t len;
	int n = 0;

	if (!cmdline_find("sizes=", &v, &len)) {
		sizes[0] = 60;
		sizes[1] = 1514;
		return 2;
	}
	while (len && n < NET_MAX_SIZES) {
		size_t k = 0;

		while (k < len && v[k] != ',')
			k++;
		if (lib_parse_u32(v, k, &sizes[n]) || sizes[n] < NET_GEN_HDR ||
		    sizes[n] > NET_GEN_MAX)
			return -EINVAL;
		n++;
		v += k;
		len -= k;
		if (len) {
			v++;
			len--;
		}
	}
	return n ? n : -EINVAL;
}

static int net_gen(void)
{
	uint64_t frames = cmdline_u64("frames=", 1000), sent = 0;
	uint32_t sizes[NET_MAX_SIZES];
	uint32_t slot_size = NET_HDR_LEN + NET_GEN_MAX;
	uint8_t *mem;
	int nsizes = net_parse_sizes(sizes), err;

	if (nsizes < 0)
		return net_fail("sizes= must be %u to %u bytes each", NET_GEN_HDR, NET_GEN_MAX);
	if ((err = net_setup()))
		return err;
	mem = dma_alloc((size_t)NET_TX_SLOTS * slot_size, 4096);
	if (!mem)
		return net_fail("out of memory for TX buffers");
	/* One template, copied to every slot with rep movsb: header zero,
	 * broadcast, our MAC, EtherType, then the pattern. */
	memset(mem, 0, NET_HDR_LEN + NET_ETH_HLEN);
	memset(mem + NET_HDR_LEN, 0xff, 6);
	memcpy(mem + NET_HDR_LEN + 6, net.mac, 6);
	mem[NET_HDR_LEN + 12] = NET_GEN_TYPE_HI;
	mem[NET_HDR_LEN + 13] = NET_GEN_TYPE_LO;
	for (uint32_t i = NET_GEN_HDR; i < NET_GEN_MAX; i++)
		mem[NET_HDR_LEN + i] = NET_PATTERN(i);
	for (unsigned s = 1; s < NET_TX_SLOTS; s++)
		memcpy(mem + (size_t)s * slot_size, mem, slot_size);
	serial_printf("net-gen: sending %lu frames\n", (unsigned long)frames);
	while (sent < frames) {
		if (net_tx_reap(&net, 0) < 0)
			return net_fail("bad TX completion id");
		while (sent < frames && net.tx_nfree) {
			/* The slot net_tx_chain takes next: top of the free list. */
			uint16_t slot = net.tx_free[net.tx_nfree - 1];
			uint8_t *f = mem + (size_t)slot * slot_size;
			uint32_t flen = sizes[sent % (uint64_t)nsizes];
			uint32_t magic = NET_GEN_MAGIC, seq = (uint32_t)sent;
			uint64_t addr = (uint64_t)(uintptr_t)f;
			uint32_t len = NET_HDR_LEN + flen;

			__builtin_memcpy(f + NET_HDR_LEN + 14, &magic, 4);
			__builtin_memcpy(f + NET_HDR_LEN + 18, &seq, 4);
			__builtin_memcpy(f + NET_HDR_LEN + 22, &flen, 4);
			net_tx_chain(&net, &addr, &len, 1, NULL);
			sent++;
		}
		net_kick(&net, &net.tx);
		if (!net.tx_nfree)
			net_wait(&net);
	}
	if ((err = net_drain_tx()))
		return err;
	serial_printf("net-gen: %lu frames sent, kicks %u, waits %u\n", (unsigned long)sent,
		      net.tx.notifies, net.waits);
	serial_printf("TEST PASS net-gen\n");
	return GUEST_EXIT_PASS;
}

static void net_sleep_ms(uint64_t ms)
{
	uint32_t start = irq_timer_ticks;

	while ((uint64_t)(uint32_t)(irq_timer_ticks - start) * 10 < ms) {
		cpu_sti_hlt();
		cpu_cli();
	}
}

static int net_norx(void)
{
	uint64_t norx_ms = cmdline_u64("norx_ms=", 2000), rx_ms = cmdline_u64("rx_ms=", 1000);
	uint64_t got = 0;
	uint32_t start;
	int err;

	if ((err = net_setup()))
		return err;
	/* A kick with nothing posted: the device learns the queue is empty. */
	serial_printf("net-norx: ready, no RX buffers for %lu ms\n", (unsigned long)norx_ms);
	net_sleep_ms(norx_ms);
	for (uint32_t i = 0; i < net.nbufs; i++)
		net_rx_post(&net, i);
	net_kick(&net, &net.rx);
	serial_printf("net-norx: posted %u buffers\n", net.nbufs);
	start = irq_timer_ticks;
	while ((uint64_t)(uint32_t)(irq_timer_ticks - start) * 10 < rx_ms) {
		uint32_t id, len;
		int any = 0;

		while (net_peek(&net.rx, 0, &id, &len)) {
			uint16_t nb = 1;

			if (id >= net.nbufs)
				return net_fail("RX completion id %u out of range", id);
			if (net.mrg)
				__builtin_memcpy(&nb, net_rx_buf(&net, id) + 10, 2);
			if (nb == 0 || nb > net.nbufs)
				return net_fail("frame in %u buffers", nb);
			/* The device may not have published the rest yet. */
			if (!net_peek(&net.rx, (uint16_t)(nb - 1), &id, &len))
				break;
			for (uint16_t k = 0; k < nb; k++) {
				net_peek(&net.rx, 0, &id, &len);
				net_consume(&net.rx, 1);
				net_rx_post(&net, id);
			}
			got++;
			any = 1;
		}
		net_kick(&net, &net.rx);
		if (!any)
			net_wait(&net);
	}
	serial_printf("net-norx: %lu frames after posting buffers\n", (unsigned long)got);
	serial_printf("TEST PASS net-norx\n");
	return GUEST_EXIT_PASS;
}

/* Breaks the rules on purpose: a chain shorter than the header, a frame
 * past 64 KiB, a header with DATA_VALID (the device's flag), then one good
 * frame; then an available-ring entry naming a descriptor beyond the
 * queue. The monitor must drop and count the first three, send the good
 * one, and answer the broken ring with DEVICE_NEEDS_RESET. */
static int net_hostile(void)
{
	uint32_t big = NET_HDR_LEN + 65551;
	uint8_t *mem;
	uint64_t addr[2];
	uint32_t len[2], status = 0;
	int err;

	if ((err = net_setup()))
		return err;
	mem = dma_alloc(big + 4096, 4096);
	if (!mem)
		return net_fail("out of memory");
	memset(mem, 0, big + 4096);
	addr[0] = (uint64_t)(uintptr_t)mem;
	len[0] = 8;
	net_tx_chain(&net, addr, len, 1, NULL);
	len[0] = big;
	net_tx_chain(&net, addr, len, 1, NULL);
	uint8_t *h = mem + big;                 /* 12-byte header, then a frame */
	h[0] = 2;                               /* VIRTIO_NET_HDR_F_DATA_VALID */
	addr[0] = (uint64_t)(uintptr_t)h;
	len[0] = NET_HDR_LEN;
	addr[1] = (uint64_t)(uintptr_t)(h + 64);
	len[1] = 60;
	net_tx_chain(&net, addr, len, 2, NULL);
	uint8_t *g = h + 256;                   /* the good one */
	memset(g + NET_HDR_LEN, 0xff, 6);
	memcpy(g + NET_HDR_LEN + 6, net.mac, 6);
	g[NET_HDR_LEN + 12] = NET_GEN_TYPE_HI;
	g[NET_HDR_LEN + 13] = NET_GEN_TYPE_LO;
	memcpy(g + NET_HDR_LEN + 14, "GOOD", 4);
	addr[0] = (uint64_t)(uintptr_t)g;
	len[0] = NET_HDR_LEN + 60;
	net_tx_chain(&net, addr, len, 1, NULL);
	net_kick(&net, &net.tx);
	if ((err = net_drain_tx()))
		return err;
	serial_printf("net-hostile: 4 frames handed back\n");
	/* A head beyond the queue. */
	net.tx.vq.avail->ring[net.tx.vq.avail_shadow & (net.tx.vq.size - 1)] = 0xffff;
	net.tx.vq.avail_shadow++;
	net_kick(&net, &net.tx);
	virtio_write32(net.vdev, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	for (unsigned w = 0; w < 300 && !(status & VIRTIO_STATUS_NEEDS_RESET); w++) {
		status = virtio_read32(net.vdev, VIRTIO_MMIO_STATUS);
		if (!(status & VIRTIO_STATUS_NEEDS_RESET))
			net_wait(&net);
	}
	serial_printf("net-hostile: device status 0x%x\n", status);
	if (!(status & VIRTIO_STATUS_NEEDS_RESET))
		return net_fail("no DEVICE_NEEDS_RESET after a broken ring");
	serial_printf("TEST PASS net-hostile\n");
	return GUEST_EXIT_PASS;
}

int net_test_run(const char *name, size_t len, int *code)
{
	static const struct {
		const char *name;
		int (*fn)(void);
	} tests[] = {
		{ "net-reflect", net_reflect },
		{ "net-gen", net_gen },
		{ "net-norx", net_norx },
		{ "net-hostile", net_hostile },
	};

	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (lib_strlen(tests[i].name) == len && memcmp(name, tests[i].name, len) == 0) {
			test_name = tests[i].name;
			*code = tests[i].fn();
			return 1;
		}
	}
	return 0;
}
