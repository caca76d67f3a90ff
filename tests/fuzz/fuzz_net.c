/* libFuzzer target: the virtio-net device against a hostile guest and odd
 * frames from its backend.
 *
 * The device runs behind the MMIO transport (no KVM) on one end of a
 * SOCK_SEQPACKET socketpair standing in for the TAP. The input is:
 *
 *   0      flags: 1 MRG_RXBUF, 2 EVENT_IDX, 4 INDIRECT_DESC, 8 the backend
 *                 "supports" offloads (so CSUM/TSO are offered and taken),
 *                 16 an RX rate limit, 32 a TX rate limit
 *   1..2   RX queue size, 3..4 TX queue size (le16, as the driver wrote them)
 *   5      script length, then that many steps of 3 bytes {op, a, b}:
 *            op % 4 == 0  the backend sends a frame of (a | b << 8) * 8 bytes
 *                         (header included; bytes from the RAM image)
 *            op % 4 == 1  the guest kicks the RX queue
 *            op % 4 == 2  the guest kicks the TX queue
 *            op % 4 == 3  the guest resets the device and sets it up again
 *   ...    guest RAM image (RAM_SIZE bytes at most; the rest is zero)
 *
 * Rings sit at fixed addresses in the 64 KiB of RAM; everything in them
 * (descriptors, indices, lengths, addresses) comes from the input. RAM is
 * an exact-size allocation, so any access past it is an ASan report. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "virtio/mmio.h"
#include "virtio/net.h"
#include "virtio/tap.h"
#include "vmm/bus.h"
#include "vmm/log.h"
#include "vmm/loop.h"
#include "vmm/mem.h"

#define RAM_SIZE 0x10000ULL
#define HDR 6
#define STEP 3
#define MAX_STEPS 32
#define REG_QUEUE_SEL 0x030
#define REG_QUEUE_NUM 0x038
#define REG_QUEUE_READY 0x044
#define REG_QUEUE_NOTIFY 0x050
#define REG_STATUS 0x070
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_DESC_LOW 0x080
#define REG_QUEUE_DRIVER_LOW 0x090
#define REG_QUEUE_DEVICE_LOW 0x0a0

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint64_t ring_gpa[2][3] = { { 0x1000, 0x2000, 0x3000 },
					 { 0x4000, 0x5000, 0x6000 } };

struct run {
	struct guest_mem mem;
	uint8_t *ram;
	struct bus bus;
	struct event_loop *loop;
	struct virtio_mmio t;
	struct virtio_net *net;
	int host;
	uint16_t qsize[2];
	uint64_t features;
};

static void wr(struct run *r, uint64_t off, uint32_t v)
{
	virtio_mmio_write(&r->t, off, (const uint8_t *)&v, 4);
}

static void bring_up(struct run *r)
{
	wr(r, REG_STATUS, 1);
	wr(r, REG_STATUS, 3);
	wr(r, REG_DRIVER_FEATURES_SEL, 0);
	wr(r, REG_DRIVER_FEATURES, (uint32_t)r->features);
	wr(r, REG_DRIVER_FEATURES_SEL, 1);
	wr(r, REG_DRIVER_FEATURES, (uint32_t)(r->features >> 32));
	wr(r, REG_STATUS, 0xb);
	for (unsigned q = 0; q < 2; q++) {
		wr(r, REG_QUEUE_SEL, q);
		wr(r, REG_QUEUE_NUM, r->qsize[q]);
		wr(r, REG_QUEUE_DESC_LOW, (uint32_t)ring_gpa[q][0]);
		wr(r, REG_QUEUE_DRIVER_LOW, (uint32_t)ring_gpa[q][1]);
		wr(r, REG_QUEUE_DEVICE_LOW, (uint32_t)ring_gpa[q][2]);
		wr(r, REG_QUEUE_READY, 1);
	}
	wr(r, REG_STATUS, 0xf);
}

static void drain(int fd)
{
	static uint8_t buf[NET_MAX_FRAME + 64];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t frame[12 + NET_MAX_FRAME];
	struct net_config cfg = { .id = "eth0", .tap = "fuzz", .mac = { 6, 0, 0, 0, 0, 1 } };
	struct run r = { 0 };
	char err[256];
	int sv[2];

	if (size < HDR)
		return 0;
	log_max_level = LOG_ERROR;
	unsigned nsteps = data[5] > MAX_STEPS ? MAX_STEPS : data[5];
	size_t script = HDR;
	size_t image = script + (size_t)nsteps * STEP;
	if (image > size)
		return 0;

	r.ram = calloc(1, RAM_SIZE);
	if (!r.ram)
		abort();
	/* One small region (guest_mem_init_from_buffer wants a whole VM's
	 * worth): gpa 0 .. RAM_SIZE, nothing else is RAM. */
	r.mem = (struct guest_mem){ .base = r.ram, .size = RAM_SIZE, .fd = -1, .nr_regions = 1 };
	r.mem.regions[0] = (struct guest_mem_region){ .gpa = 0, .size = RAM_SIZE, .hva = r.ram };
	memcpy(r.ram, data + image, size - image < RAM_SIZE ? size - image : RAM_SIZE);
	r.qsize[0] = (uint16_t)(data[1] | data[2] << 8);
	r.qsize[1] = (uint16_t)(data[3] | data[4] << 8);
	r.features = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_NET_F_MAC;
	if (data[0] & 1)
		r.features |= 1ULL << VIRTIO_NET_F_MRG_RXBUF;
	if (data[0] & 2)
		r.features |= 1ULL << VIRTIO_F_RING_EVENT_IDX;
	if (data[0] & 4)
		r.features |= 1ULL << VIRTIO_F_RING_INDIRECT_DESC;
	unsigned offloads = 0;
	if (data[0] & 8) {
		offloads = TAP_OFF_CSUM | TAP_OFF_TSO4 | TAP_OFF_TSO6 | TAP_OFF_ECN | TAP_OFF_UFO |
			   TAP_OFF_USO4 | TAP_OFF_USO6;
		r.features |= net_device_features(offloads, &cfg) & ~(1ULL << VIRTIO_NET_F_MRG_RXBUF);
	}
	if (data[0] & 16)
		cfg.rx_bw = (struct token_bucket_config){ .size = 4000, .refill_time_ms = 1000 };
	if (data[0] & 32)
		cfg.tx_ops = (struct token_bucket_config){ .size = 3, .refill_time_ms = 1000 };

	r.loop = loop_create();
	if (!r.loop || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		abort();
	int big = 1 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	r.host = sv[1];
	if (virtio_net_create_fd(&r.net, sv[0], offloads, &cfg, r.loop, "net0", err, sizeof(err)))
		abort();
	const struct virtio_mmio_env env = {
		.vm_fd = -1, .mem = &r.mem, .mmio_bus = &r.bus, .loop = r.loop,
	};
	if (virtio_mmio_init(&r.t, virtio_net_device(r.net), &env, 0xc0001000ULL, 5))
		abort();
	bring_up(&r);

	for (unsigned i = 0; i < nsteps; i++) {
		const uint8_t *s = data + script + (size_t)i * STEP;
		switch (s[0] % 4) {
		case 0: {
			size_t len = (size_t)(s[1] | s[2] << 8) * 8;
			if (len > sizeof(frame))
				len = sizeof(frame);
			/* Frame bytes from the RAM image: header fields included. */
			for (size_t k = 0; k < len; k++)
				frame[k] = r.ram[k % RAM_SIZE];
			if (send(r.host, frame, len, MSG_DONTWAIT) < 0 && errno != EAGAIN)
				abort();
			break;
		}
		case 1:
			wr(&r, REG_QUEUE_NOTIFY, 0);
			break;
		case 2:
			wr(&r, REG_QUEUE_NOTIFY, 1);
			drain(r.host);
			break;
		default:
			wr(&r, REG_STATUS, 0);
			bring_up(&r);
			break;
		}
	}
	if (!nsteps) { /* default: a frame both ways */
		frame[0] = 0;
		memset(frame, 0, 12 + 60);
		send(r.host, frame, 12 + 60, MSG_DONTWAIT);
		wr(&r, REG_QUEUE_NOTIFY, 0);
		wr(&r, REG_QUEUE_NOTIFY, 1);
	}
	virtio_mmio_destroy(&r.t);
	virtio_net_destroy(r.net);
	loop_destroy(r.loop);
	close(r.host);
	free(r.ram);
	return 0;
}
