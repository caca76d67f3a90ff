/* virtio-mmio transport (version 2 registers): identification, feature
 * negotiation, queue set-up, the status state machine, activation, reset,
 * interrupts, config space and the guest's register-access mistakes.
 *
 * A fake device records what the transport asks of it; the transport runs
 * without KVM (vm_fd = -1: no irqfd or ioeventfd) and the test drives it
 * through virtio_mmio_read/write as the MMIO bus would. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "virtio/mmio.h"
#include "vmm/bus.h"
#include "vmm/log.h"
#include "vmm/mem.h"

/* Register offsets (virtio 1.2, 4.2.2) */
#define REG_MAGIC               0x000
#define REG_VERSION             0x004
#define REG_DEVICE_ID           0x008
#define REG_VENDOR_ID           0x00c
#define REG_DEVICE_FEATURES     0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES     0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL           0x030
#define REG_QUEUE_NUM_MAX       0x034
#define REG_QUEUE_NUM           0x038
#define REG_QUEUE_READY         0x044
#define REG_QUEUE_NOTIFY        0x050
#define REG_INTERRUPT_STATUS    0x060
#define REG_INTERRUPT_ACK       0x064
#define REG_STATUS              0x070
#define REG_QUEUE_DESC_LOW      0x080
#define REG_QUEUE_DESC_HIGH     0x084
#define REG_QUEUE_DRIVER_LOW    0x090
#define REG_QUEUE_DRIVER_HIGH   0x094
#define REG_QUEUE_DEVICE_LOW    0x0a0
#define REG_QUEUE_DEVICE_HIGH   0x0a4
#define REG_CONFIG_GENERATION   0x0fc
#define REG_CONFIG              0x100

#define ACK     VIRTIO_STATUS_ACKNOWLEDGE
#define DRIVER  VIRTIO_STATUS_DRIVER
#define FEAT_OK VIRTIO_STATUS_FEATURES_OK
#define DRV_OK  VIRTIO_STATUS_DRIVER_OK

#define RAM_SIZE  (2ULL << 20)
#define MMIO_BASE 0xc0001000ULL
#define MMIO_IRQ  5

#define FAKE_ID      42
#define FAKE_QMAX    64
#define FAKE_NR_Q    2
#define CONFIG_SIZE  12
#define FAKE_F_A     0 /* two device-specific feature bits */
#define FAKE_F_B     5
#define FAKE_FEATURES ((1ULL << FAKE_F_A) | (1ULL << FAKE_F_B) | \
		       (1ULL << VIRTIO_F_RING_EVENT_IDX) | (1ULL << VIRTIO_F_RING_INDIRECT_DESC))
#define GOOD_FEATURES ((1ULL << VIRTIO_F_VERSION_1) | (1ULL << FAKE_F_B) | \
		       (1ULL << VIRTIO_F_RING_EVENT_IDX))

/* Ring addresses of queue q in guest RAM. */
#define DESC_GPA(q)  (0x10000ULL + 0x4000ULL * (q))
#define AVAIL_GPA(q) (0x11000ULL + 0x4000ULL * (q))
#define USED_GPA(q)  (0x12000ULL + 0x4000ULL * (q))

struct fake {
	struct virtio_device vdev; /* first: the ops cast back */
	unsigned activates, resets, feature_calls;
	unsigned notifies[VIRTIO_MAX_QUEUES];
	unsigned config_reads, config_writes;
	uint32_t last_off, last_len;
	uint8_t config[CONFIG_SIZE];
	int activate_ret;
	/* What the device saw when activated. */
	bool saw_event_idx, saw_indirect;
};

struct fixture {
	struct fake fake;
	struct virtio_mmio t;
	struct bus bus;
	struct guest_mem mem;
	uint8_t *ram;
};

static struct fake *to_fake(struct virtio_device *dev)
{
	return (struct fake *)dev;
}

static uint64_t fake_features(struct virtio_device *dev)
{
	to_fake(dev)->feature_calls++;
	return FAKE_FEATURES;
}

static void fake_config_read(struct virtio_device *dev, uint32_t offset, void *data, uint32_t len)
{
	struct fake *f = to_fake(dev);

	f->config_reads++;
	f->last_off = offset;
	f->last_len = len;
	memcpy(data, f->config + offset, len);
}

static void fake_config_write(struct virtio_device *dev, uint32_t offset, const void *data,
			      uint32_t len)
{
	struct fake *f = to_fake(dev);

	f->config_writes++;
	f->last_off = offset;
	f->last_len = len;
	memcpy(f->config + offset, data, len);
}

static int fake_activate(struct virtio_device *dev)
{
	struct fake *f = to_fake(dev);

	f->activates++;
	f->saw_event_idx = dev->queues[0].event_idx;
	f->saw_indirect = dev->queues[0].indirect;
	return f->activate_ret;
}

static void fake_queue_notify(struct virtio_device *dev, unsigned q)
{
	to_fake(dev)->notifies[q]++;
}

static void fake_reset(struct virtio_device *dev)
{
	to_fake(dev)->resets++;
}

static const struct virtio_device_ops fake_ops = {
	.device_id = FAKE_ID,
	.nr_queues = FAKE_NR_Q,
	.queue_max_size = FAKE_QMAX,
	.features = fake_features,
	.config_size = CONFIG_SIZE,
	.config_read = fake_config_read,
	.config_write = fake_config_write,
	.activate = fake_activate,
	.queue_notify = fake_queue_notify,
	.reset = fake_reset,
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (f->ram == MAP_FAILED || guest_mem_init_from_buffer(&f->mem, f->ram, RAM_SIZE))
		goto err;
	virtio_device_init(&f->fake.vdev, &fake_ops, "fake0");
	for (unsigned i = 0; i < CONFIG_SIZE; i++)
		f->fake.config[i] = (uint8_t)(0xc0 + i);
	const struct virtio_mmio_env env = {
		.vm_fd = -1, .mem = &f->mem, .mmio_bus = &f->bus, .loop = NULL,
	};
	if (virtio_mmio_init(&f->t, &f->fake.vdev, &env, MMIO_BASE, MMIO_IRQ))
		goto err;
	*state = f;
	return 0;
err:
	if (f->ram != MAP_FAILED && f->ram)
		munmap(f->ram, RAM_SIZE);
	free(f);
	return -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	virtio_mmio_destroy(&f->t);
	pthread_mutex_destroy(&f->fake.vdev.lock);
	munmap(f->ram, RAM_SIZE);
	free(f);
	return 0;
}

static uint32_t rd(struct fixture *f, uint64_t off)
{
	uint32_t v;

	virtio_mmio_read(&f->t, off, (uint8_t *)&v, 4);
	return v;
}

static void wr(struct fixture *f, uint64_t off, uint32_t v)
{
	virtio_mmio_write(&f->t, off, (const uint8_t *)&v, 4);
}

static uint64_t guest_errors(struct fixture *f)
{
	return f->fake.vdev.nr_guest_errors;
}

static void write_driver_features(struct fixture *f, uint64_t features)
{
	wr(f, REG_DRIVER_FEATURES_SEL, 0);
	wr(f, REG_DRIVER_FEATURES, (uint32_t)features);
	wr(f, REG_DRIVER_FEATURES_SEL, 1);
	wr(f, REG_DRIVER_FEATURES, (uint32_t)(features >> 32));
}

/* The driver's side of 3.1.1 up to FEATURES_OK; returns the status read back. */
static uint32_t negotiate(struct fixture *f, uint64_t features)
{
	wr(f, REG_STATUS, ACK);
	wr(f, REG_STATUS, ACK | DRIVER);
	write_driver_features(f, features);
	wr(f, REG_STATUS, ACK | DRIVER | FEAT_OK);
	return rd(f, REG_STATUS);
}

static void setup_queue_at(struct fixture *f, unsigned q, uint32_t num, uint64_t desc,
			   uint64_t avail, uint64_t used)
{
	wr(f, REG_QUEUE_SEL, q);
	wr(f, REG_QUEUE_NUM, num);
	wr(f, REG_QUEUE_DESC_LOW, (uint32_t)desc);
	wr(f, REG_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	wr(f, REG_QUEUE_DRIVER_LOW, (uint32_t)avail);
	wr(f, REG_QUEUE_DRIVER_HIGH, (uint32_t)(avail >> 32));
	wr(f, REG_QUEUE_DEVICE_LOW, (uint32_t)used);
	wr(f, REG_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
	wr(f, REG_QUEUE_READY, 1);
}

static void setup_queue(struct fixture *f, unsigned q, uint32_t num)
{
	setup_queue_at(f, q, num, DESC_GPA(q), AVAIL_GPA(q), USED_GPA(q));
}

/* Everything up to a live device. */
static void bring_up(struct fixture *f)
{
	unsigned activates = f->fake.activates;

	assert_int_equal(negotiate(f, GOOD_FEATURES), ACK | DRIVER | FEAT_OK);
	setup_queue(f, 0, 16);
	setup_queue(f, 1, 32);
	wr(f, REG_STATUS, ACK | DRIVER | FEAT_OK | DRV_OK);
	assert_int_equal(rd(f, REG_STATUS), ACK | DRIVER | FEAT_OK | DRV_OK);
	assert_int_equal(f->fake.activates, activates + 1);
	assert_true(f->t.activated);
}

/* ---- identification ------------------------------------------------------ */

static void test_identification_registers(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(rd(f, REG_MAGIC), 0x74726976); /* "virt" */
	assert_int_equal(rd(f, REG_VERSION), 2);
	assert_int_equal(rd(f, REG_DEVICE_ID), FAKE_ID);
	assert_int_not_equal(rd(f, REG_VENDOR_ID), 0);
	assert_int_equal(rd(f, REG_STATUS), 0);
	assert_int_equal(rd(f, REG_INTERRUPT_STATUS), 0);
	/* Holes and write-only registers read as zero. */
	assert_int_equal(rd(f, 0x018), 0);
	assert_int_equal(rd(f, REG_QUEUE_NOTIFY), 0);
	assert_int_equal(rd(f, REG_INTERRUPT_ACK), 0);
	assert_int_equal(rd(f, 0x0f8), 0);
}

static void test_registered_on_bus(void **state)
{
	struct fixture *f = *state;
	uint32_t v = 0;

	assert_int_equal(bus_dispatch(&f->bus, MMIO_BASE + REG_MAGIC, (uint8_t *)&v, 4, false), 0);
	assert_int_equal(v, 0x74726976);
	assert_int_equal(bus_dispatch(&f->bus, MMIO_BASE + VIRTIO_MMIO_WINDOW - 4, (uint8_t *)&v, 4,
				      false),
			 0);
	assert_int_equal(bus_dispatch(&f->bus, MMIO_BASE + VIRTIO_MMIO_WINDOW, (uint8_t *)&v, 4,
				      false),
			 -ENOENT);
	v = ACK;
	assert_int_equal(bus_dispatch(&f->bus, MMIO_BASE + REG_STATUS, (uint8_t *)&v, 4, true), 0);
	assert_int_equal(rd(f, REG_STATUS), ACK);
	assert_ptr_equal(f->fake.vdev.transport, &f->t);
	assert_int_equal(f->t.irq_line.irqfd, -1);
	assert_null(f->t.irq_line.ioapic);
}

static void test_cmdline(void **state)
{
	struct fixture *f = *state;
	char buf[64];
	const char *expect = " virtio_mmio.device=4K@0xc0001000:5";

	assert_int_equal(virtio_mmio_cmdline(&f->t, buf, sizeof(buf)), (int)strlen(expect));
	assert_string_equal(buf, expect);
	assert_int_equal(virtio_mmio_cmdline(&f->t, buf, strlen(expect)), -ENOSPC);
}

/* ---- features --------------------------------------------------------------- */

static void test_device_features_by_selector(void **state)
{
	struct fixture *f = *state;

	wr(f, REG_DEVICE_FEATURES_SEL, 0);
	assert_int_equal(rd(f, REG_DEVICE_FEATURES), (uint32_t)FAKE_FEATURES);
	wr(f, REG_DEVICE_FEATURES_SEL, 1);
	/* VERSION_1 (bit 32) comes from the transport, not the device. */
	assert_int_equal(rd(f, REG_DEVICE_FEATURES), 1);
	wr(f, REG_DEVICE_FEATURES_SEL, 2);
	assert_int_equal(rd(f, REG_DEVICE_FEATURES), 0);
	wr(f, REG_DEVICE_FEATURES_SEL, 0xffffffff);
	assert_int_equal(rd(f, REG_DEVICE_FEATURES), 0);
}

static void test_driver_features_by_selector(void **state)
{
	struct fixture *f = *state;

	write_driver_features(f, 0x0000000120000021ULL);
	assert_int_equal(f->fake.vdev.driver_features, 0x0000000120000021ULL);
	/* Selector 2 and up: no such word, ignored. */
	wr(f, REG_DRIVER_FEATURES_SEL, 2);
	wr(f, REG_DRIVER_FEATURES, 0xffffffff);
	assert_int_equal(f->fake.vdev.driver_features, 0x0000000120000021ULL);
	/* Each word replaces only itself. */
	wr(f, REG_DRIVER_FEATURES_SEL, 0);
	wr(f, REG_DRIVER_FEATURES, 0x20);
	assert_int_equal(f->fake.vdev.driver_features, 0x0000000100000020ULL);
}

static void test_features_ok_accepted(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(negotiate(f, GOOD_FEATURES), ACK | DRIVER | FEAT_OK);
	/* The bare minimum too. */
	wr(f, REG_STATUS, 0);
	assert_int_equal(negotiate(f, 1ULL << VIRTIO_F_VERSION_1), ACK | DRIVER | FEAT_OK);
	/* Everything offered. */
	wr(f, REG_STATUS, 0);
	assert_int_equal(negotiate(f, FAKE_FEATURES | (1ULL << VIRTIO_F_VERSION_1)),
			 ACK | DRIVER | FEAT_OK);
}

static void test_features_ok_refused_without_version_1(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(negotiate(f, 1ULL << FAKE_F_B), ACK | DRIVER);
	assert_int_equal(negotiate(f, 0), ACK | DRIVER);
	/* The driver may fix its features and try again. */
	assert_int_equal(negotiate(f, GOOD_FEATURES), ACK | DRIVER | FEAT_OK);
}

static void test_features_ok_refused_for_unknown_bits(void **state)
{
	struct fixture *f = *state;

	/* bit 1: not offered by the device */
	assert_int_equal(negotiate(f, GOOD_FEATURES | 2), ACK | DRIVER);
	assert_int_equal(negotiate(f, GOOD_FEATURES | (1ULL << 33)), ACK | DRIVER);
	assert_int_equal(negotiate(f, GOOD_FEATURES | (1ULL << 63)), ACK | DRIVER);
	/* A refused driver cannot go live by writing DRIVER_OK. */
	setup_queue(f, 0, 16);
	wr(f, REG_STATUS, ACK | DRIVER | DRV_OK);
	assert_int_equal(f->fake.activates, 0);
	assert_false(f->t.activated);
}

static void test_driver_features_frozen_after_features_ok(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(negotiate(f, GOOD_FEATURES), ACK | DRIVER | FEAT_OK);
	write_driver_features(f, 0xffffffffffffffffULL);
	assert_int_equal(f->fake.vdev.driver_features, GOOD_FEATURES);
}

/* ---- queues ---------------------------------------------------------------- */

static void test_queue_num_max_and_num(void **state)
{
	struct fixture *f = *state;
	struct virtq *q0 = &f->fake.vdev.queues[0];

	wr(f, REG_QUEUE_SEL, 0);
	assert_int_equal(rd(f, REG_QUEUE_NUM_MAX), FAKE_QMAX);
	assert_int_equal(rd(f, REG_QUEUE_READY), 0);
	wr(f, REG_QUEUE_NUM, 32);
	assert_int_equal(q0->size, 32);
	wr(f, REG_QUEUE_NUM, FAKE_QMAX);
	assert_int_equal(q0->size, FAKE_QMAX);
	/* Above the maximum: not taken (activation then fails). */
	wr(f, REG_QUEUE_NUM, FAKE_QMAX * 2);
	assert_true(q0->size == 0 || q0->size == FAKE_QMAX);
	wr(f, REG_QUEUE_NUM, 0x10010); /* would truncate to 16 */
	assert_int_not_equal(q0->size, 16);
	wr(f, REG_QUEUE_SEL, 1);
	assert_int_equal(rd(f, REG_QUEUE_NUM_MAX), FAKE_QMAX);
}

static void test_queue_addresses_low_high(void **state)
{
	struct fixture *f = *state;
	struct virtq *q1 = &f->fake.vdev.queues[1];

	wr(f, REG_QUEUE_SEL, 1);
	wr(f, REG_QUEUE_DESC_LOW, 0x11112220);
	wr(f, REG_QUEUE_DESC_HIGH, 0x3);
	wr(f, REG_QUEUE_DRIVER_HIGH, 0x5);
	wr(f, REG_QUEUE_DRIVER_LOW, 0x44446660);
	wr(f, REG_QUEUE_DEVICE_LOW, 0x77778880);
	wr(f, REG_QUEUE_DEVICE_HIGH, 0xffffffff);
	assert_int_equal(q1->desc_gpa, 0x311112220ULL);
	assert_int_equal(q1->avail_gpa, 0x544446660ULL);
	assert_int_equal(q1->used_gpa, 0xffffffff77778880ULL);
	/* Rewriting one half keeps the other. */
	wr(f, REG_QUEUE_DESC_LOW, 0x1000);
	assert_int_equal(q1->desc_gpa, 0x300001000ULL);
	wr(f, REG_QUEUE_DESC_HIGH, 0);
	assert_int_equal(q1->desc_gpa, 0x1000ULL);
	/* Queue 0 untouched. */
	assert_int_equal(f->fake.vdev.queues[0].desc_gpa, 0);
}

static void test_queue_ready_reads_back(void **state)
{
	struct fixture *f = *state;

	wr(f, REG_QUEUE_SEL, 1);
	wr(f, REG_QUEUE_READY, 1);
	assert_int_equal(rd(f, REG_QUEUE_READY), 1);
	wr(f, REG_QUEUE_SEL, 0);
	assert_int_equal(rd(f, REG_QUEUE_READY), 0);
	wr(f, REG_QUEUE_SEL, 1);
	wr(f, REG_QUEUE_READY, 0);
	assert_int_equal(rd(f, REG_QUEUE_READY), 0);
}

static void test_queue_layout_frozen_while_ready(void **state)
{
	struct fixture *f = *state;
	struct virtq *q0 = &f->fake.vdev.queues[0];

	setup_queue(f, 0, 16);
	wr(f, REG_QUEUE_SEL, 0);
	wr(f, REG_QUEUE_NUM, 32);
	wr(f, REG_QUEUE_DESC_LOW, 0x9000);
	assert_int_equal(q0->size, 16);
	assert_int_equal(q0->desc_gpa, DESC_GPA(0));
}

static void test_queue_sel_out_of_range(void **state)
{
	struct fixture *f = *state;
	const uint32_t sels[] = { FAKE_NR_Q, VIRTIO_MAX_QUEUES, 0xffff, 0xffffffff };

	for (unsigned i = 0; i < sizeof(sels) / sizeof(sels[0]); i++) {
		wr(f, REG_QUEUE_SEL, sels[i]);
		assert_int_equal(rd(f, REG_QUEUE_NUM_MAX), 0);
		assert_int_equal(rd(f, REG_QUEUE_READY), 0);
		/* Writes go nowhere (and crash nothing). */
		wr(f, REG_QUEUE_NUM, 8);
		wr(f, REG_QUEUE_DESC_LOW, 0x1000);
		wr(f, REG_QUEUE_DRIVER_HIGH, 1);
		wr(f, REG_QUEUE_DEVICE_LOW, 0x2000);
		wr(f, REG_QUEUE_READY, 1);
		assert_int_equal(rd(f, REG_QUEUE_READY), 0);
	}
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		assert_int_equal(f->fake.vdev.queues[q].desc_gpa, 0);
		assert_false(f->fake.vdev.queues[q].ready);
	}
}

/* ---- status and activation ---------------------------------------------- */

static void test_driver_ok_activates_once(void **state)
{
	struct fixture *f = *state;

	bring_up(f);
	struct virtq *q0 = &f->fake.vdev.queues[0];
	assert_non_null(q0->desc);
	assert_ptr_equal(q0->desc, f->ram + DESC_GPA(0));
	assert_ptr_equal((void *)q0->used, f->ram + USED_GPA(0));
	assert_ptr_equal(q0->mem, &f->mem);
	assert_true(f->fake.saw_event_idx);   /* negotiated */
	assert_false(f->fake.saw_indirect);   /* offered, not negotiated */
	assert_non_null(f->fake.vdev.queues[1].desc);
	/* Writing the same status again does nothing more. */
	wr(f, REG_STATUS, ACK | DRIVER | FEAT_OK | DRV_OK);
	assert_int_equal(f->fake.activates, 1);
	assert_int_equal(guest_errors(f), 0);
}

static void test_driver_ok_with_unready_queue(void **state)
{
	struct fixture *f = *state;

	/* Queue 1 never set up: only ready queues are mapped. */
	assert_int_equal(negotiate(f, GOOD_FEATURES), ACK | DRIVER | FEAT_OK);
	setup_queue(f, 0, 16);
	wr(f, REG_STATUS, ACK | DRIVER | FEAT_OK | DRV_OK);
	assert_int_equal(f->fake.activates, 1);
	assert_null(f->fake.vdev.queues[1].desc);
	assert_int_equal(rd(f, REG_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

static void expect_needs_reset_on_driver_ok(struct fixture *f)
{
	uint32_t gen = rd(f, REG_CONFIG_GENERATION);

	wr(f, REG_STATUS, ACK | DRIVER | FEAT_OK | DRV_OK);
	assert_int_equal(rd(f, REG_STATUS),
			 ACK | DRIVER | FEAT_OK | DRV_OK | VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(f->fake.activates, 0);
	assert_false(f->t.activated);
	assert_int_equal(guest_errors(f), 1);
	assert_int_not_equal(rd(f, REG_CONFIG_GENERATION), gen);
	/* The driver hears about it through a config-change interrupt. */
	assert_true(rd(f, REG_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	/* A dead device ignores kicks. */
	wr(f, REG_QUEUE_NOTIFY, 0);
	assert_int_equal(f->fake.notifies[0], 0);
}

static void test_driver_ok_bad_size_needs_reset(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(negotiate(f, GOOD_FEATURES), ACK | DRIVER | FEAT_OK);
	setup_queue(f, 0, 12); /* not a power of two */
	expect_needs_reset_on_driver_ok(f);
}

static void test_driver_ok_size_above_max_needs_reset(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(negotiate(f, GOOD_FEATURES), ACK | DRIVER | FEAT_OK);
	setup_queue(f, 0, FAKE_QMAX * 2);
	expect_needs_reset_on_driver_ok(f);
}

static void test_driver_ok_misaligned_ring_needs_reset(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(negotiate(f, GOOD_FEATURES), ACK | DRIVER | FEAT_OK);
	setup_queue(f, 0, 16);
	setup_queue_at(f, 1, 16, DESC_GPA(1) + 8, AVAIL_GPA(1), USED_GPA(1));
	expect_needs_reset_on_driver_ok(f);
}

static void test_driver_ok_ring_outside_ram_needs_reset(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(negotiate(f, GOOD_FEATURES), ACK | DRIVER | FEAT_OK);
	setup_queue_at(f, 0, 16, DESC_GPA(0), AVAIL_GPA(0), 0x100000000ULL + RAM_SIZE);
	expect_needs_reset_on_driver_ok(f);
}

static void test_activate_failure_needs_reset(void **state)
{
	struct fixture *f = *state;

	f->fake.activate_ret = -ENOMEM;
	assert_int_equal(negotiate(f, GOOD_FEATURES), ACK | DRIVER | FEAT_OK);
	setup_queue(f, 0, 16);
	wr(f, REG_STATUS, ACK | DRIVER | FEAT_OK | DRV_OK);
	assert_int_equal(f->fake.activates, 1);
	assert_true(rd(f, REG_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_false(f->t.activated);
	wr(f, REG_QUEUE_NOTIFY, 0);
	assert_int_equal(f->fake.notifies[0], 0);
}

static void test_driver_ok_without_features_ok_does_not_activate(void **state)
{
	struct fixture *f = *state;

	wr(f, REG_STATUS, ACK | DRIVER);
	write_driver_features(f, GOOD_FEATURES);
	setup_queue(f, 0, 16);
	wr(f, REG_STATUS, ACK | DRIVER | DRV_OK);
	assert_int_equal(f->fake.activates, 0);
	assert_false(f->t.activated);
}

static void test_registers_frozen_after_driver_ok(void **state)
{
	struct fixture *f = *state;
	struct virtq *q0 = &f->fake.vdev.queues[0];

	bring_up(f);
	wr(f, REG_QUEUE_SEL, 0);
	wr(f, REG_QUEUE_READY, 0);
	wr(f, REG_QUEUE_NUM, 8);
	wr(f, REG_QUEUE_DESC_LOW, 0x1000);
	wr(f, REG_QUEUE_DESC_HIGH, 0x1);
	wr(f, REG_QUEUE_DRIVER_LOW, 0x2000);
	wr(f, REG_QUEUE_DEVICE_LOW, 0x3000);
	write_driver_features(f, 0);
	assert_true(q0->ready);
	assert_int_equal(rd(f, REG_QUEUE_READY), 1);
	assert_int_equal(q0->size, 16);
	assert_int_equal(q0->desc_gpa, DESC_GPA(0));
	assert_int_equal(q0->avail_gpa, AVAIL_GPA(0));
	assert_int_equal(q0->used_gpa, USED_GPA(0));
	assert_int_equal(f->fake.vdev.driver_features, GOOD_FEATURES);
	/* A queue left unready before DRIVER_OK stays so. */
	wr(f, REG_STATUS, 0);
	assert_int_equal(negotiate(f, GOOD_FEATURES), ACK | DRIVER | FEAT_OK);
	setup_queue(f, 0, 16);
	wr(f, REG_STATUS, ACK | DRIVER | FEAT_OK | DRV_OK);
	wr(f, REG_QUEUE_SEL, 1);
	wr(f, REG_QUEUE_NUM, 16);
	wr(f, REG_QUEUE_DESC_LOW, 0x1000);
	wr(f, REG_QUEUE_READY, 1);
	assert_false(f->fake.vdev.queues[1].ready);
	assert_int_equal(f->fake.vdev.queues[1].desc_gpa, 0);
}

static void test_clearing_status_bits_ignored(void **state)
{
	struct fixture *f = *state;

	bring_up(f);
	wr(f, REG_STATUS, ACK | DRIVER | FEAT_OK); /* drops DRIVER_OK */
	assert_int_equal(rd(f, REG_STATUS), ACK | DRIVER | FEAT_OK | DRV_OK);
	wr(f, REG_STATUS, DRV_OK);
	assert_int_equal(rd(f, REG_STATUS), ACK | DRIVER | FEAT_OK | DRV_OK);
	assert_int_equal(guest_errors(f), 2);
	assert_int_equal(f->fake.resets, 0);
	assert_true(f->t.activated);
	/* FAILED may be added. */
	wr(f, REG_STATUS, ACK | DRIVER | FEAT_OK | DRV_OK | VIRTIO_STATUS_FAILED);
	assert_int_equal(rd(f, REG_STATUS), ACK | DRIVER | FEAT_OK | DRV_OK | VIRTIO_STATUS_FAILED);
}

static void test_status_zero_resets(void **state)
{
	struct fixture *f = *state;

	bring_up(f);
	virtio_mmio_signal(&f->t, VIRTIO_MMIO_INT_VRING);
	wr(f, REG_DEVICE_FEATURES_SEL, 1);
	wr(f, REG_QUEUE_SEL, 1);
	wr(f, REG_STATUS, 0);
	assert_int_equal(f->fake.resets, 1);
	assert_false(f->t.activated);
	assert_int_equal(rd(f, REG_STATUS), 0);
	assert_int_equal(rd(f, REG_INTERRUPT_STATUS), 0);
	assert_int_equal(f->fake.vdev.driver_features, 0);
	assert_int_equal(f->t.queue_sel, 0);
	assert_int_equal(f->t.device_features_sel, 0);
	for (unsigned q = 0; q < FAKE_NR_Q; q++) {
		struct virtq *vq = &f->fake.vdev.queues[q];
		assert_false(vq->ready);
		assert_null(vq->desc);
		assert_null((void *)vq->avail);
		assert_null((void *)vq->used);
		assert_int_equal(vq->desc_gpa, 0);
		assert_int_equal(vq->avail_gpa, 0);
		assert_int_equal(vq->used_gpa, 0);
		assert_int_equal(vq->max_size, FAKE_QMAX);
	}
	/* Dead after reset: kicks go nowhere. */
	wr(f, REG_QUEUE_NOTIFY, 0);
	assert_int_equal(f->fake.notifies[0], 0);
	/* And the whole dance works again. */
	bring_up(f);
	assert_int_equal(f->fake.activates, 2);
}

static void test_reset_clears_needs_reset(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(negotiate(f, GOOD_FEATURES), ACK | DRIVER | FEAT_OK);
	setup_queue(f, 0, 3);
	wr(f, REG_STATUS, ACK | DRIVER | FEAT_OK | DRV_OK);
	assert_true(rd(f, REG_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	/* Rewriting status without 0x40 does not clear it. */
	wr(f, REG_STATUS, ACK | DRIVER | FEAT_OK | DRV_OK);
	assert_true(rd(f, REG_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	wr(f, REG_STATUS, 0);
	assert_int_equal(rd(f, REG_STATUS), 0);
	assert_int_equal(f->fake.vdev.queues[0].size, FAKE_QMAX);
	bring_up(f);
	wr(f, REG_QUEUE_NOTIFY, 1);
	assert_int_equal(f->fake.notifies[1], 1);
}

static void test_needs_reset_from_device(void **state)
{
	struct fixture *f = *state;

	/* Before DRIVER_OK: flagged, no interrupt. */
	wr(f, REG_STATUS, ACK);
	virtio_device_set_needs_reset(&f->fake.vdev, "test says so");
	assert_true(rd(f, REG_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(rd(f, REG_INTERRUPT_STATUS), 0);
	assert_int_equal(guest_errors(f), 1);
	wr(f, REG_STATUS, 0);

	bring_up(f);
	uint32_t gen = rd(f, REG_CONFIG_GENERATION);
	virtio_device_set_needs_reset(&f->fake.vdev, "bad chain");
	assert_true(rd(f, REG_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(rd(f, REG_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(rd(f, REG_CONFIG_GENERATION), gen + 1);
	/* A second error is counted but changes nothing else. */
	virtio_device_set_needs_reset(&f->fake.vdev, "again");
	assert_int_equal(rd(f, REG_CONFIG_GENERATION), gen + 1);
	assert_int_equal(guest_errors(f), 3);
	wr(f, REG_QUEUE_NOTIFY, 0);
	assert_int_equal(f->fake.notifies[0], 0);
}

/* ---- interrupts and notifications ----------------------------------------- */

static void test_interrupt_status_and_ack(void **state)
{
	struct fixture *f = *state;

	virtio_mmio_signal(&f->t, VIRTIO_MMIO_INT_VRING);
	assert_int_equal(rd(f, REG_INTERRUPT_STATUS), 1);
	virtio_mmio_signal(&f->t, VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(rd(f, REG_INTERRUPT_STATUS), 3);
	wr(f, REG_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	assert_int_equal(rd(f, REG_INTERRUPT_STATUS), 2);
	virtio_mmio_signal(&f->t, VIRTIO_MMIO_INT_VRING);
	wr(f, REG_INTERRUPT_ACK, 3);
	assert_int_equal(rd(f, REG_INTERRUPT_STATUS), 0);
	/* InterruptStatus is read-only. */
	wr(f, REG_INTERRUPT_STATUS, 3);
	assert_int_equal(rd(f, REG_INTERRUPT_STATUS), 0);
}

static void test_notify_used_signals(void **state)
{
	struct fixture *f = *state;

	bring_up(f);
	struct virtq *q0 = &f->fake.vdev.queues[0];
	virtq_push(q0, 0, 0);
	virtio_device_notify_used(&f->fake.vdev, 0); /* first: always */
	assert_int_equal(rd(f, REG_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	wr(f, REG_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	virtio_device_notify_used(&f->fake.vdev, 0); /* nothing new */
	assert_int_equal(rd(f, REG_INTERRUPT_STATUS), 0);
}

static void test_queue_notify(void **state)
{
	struct fixture *f = *state;

	/* Not live yet: ignored. */
	assert_int_equal(negotiate(f, GOOD_FEATURES), ACK | DRIVER | FEAT_OK);
	setup_queue(f, 0, 16);
	wr(f, REG_QUEUE_NOTIFY, 0);
	assert_int_equal(f->fake.notifies[0], 0);
	setup_queue(f, 1, 16);
	wr(f, REG_STATUS, ACK | DRIVER | FEAT_OK | DRV_OK);
	wr(f, REG_QUEUE_NOTIFY, 0);
	wr(f, REG_QUEUE_NOTIFY, 1);
	wr(f, REG_QUEUE_NOTIFY, 1);
	assert_int_equal(f->fake.notifies[0], 1);
	assert_int_equal(f->fake.notifies[1], 2);
	/* No such queue. */
	wr(f, REG_QUEUE_NOTIFY, FAKE_NR_Q);
	wr(f, REG_QUEUE_NOTIFY, VIRTIO_MAX_QUEUES);
	wr(f, REG_QUEUE_NOTIFY, 0xffffffff);
	for (unsigned q = FAKE_NR_Q; q < VIRTIO_MAX_QUEUES; q++)
		assert_int_equal(f->fake.notifies[q], 0);
	assert_int_equal(f->fake.notifies[0], 1);
	assert_int_equal(f->fake.notifies[1], 2);
}

/* ---- config space ----------------------------------------------------------- */

static void test_config_read_in_bounds(void **state)
{
	struct fixture *f = *state;
	uint8_t b[8];

	memset(b, 0xff, sizeof(b));
	virtio_mmio_read(&f->t, REG_CONFIG + 4, b, 4);
	assert_int_equal(f->fake.config_reads, 1);
	assert_int_equal(f->fake.last_off, 4);
	assert_int_equal(f->fake.last_len, 4);
	assert_int_equal(b[0], 0xc4);
	assert_int_equal(b[3], 0xc7);
	/* Byte, word and quad accesses are all fine in config space. */
	virtio_mmio_read(&f->t, REG_CONFIG + CONFIG_SIZE - 1, b, 1);
	assert_int_equal(b[0], 0xc0 + CONFIG_SIZE - 1);
	virtio_mmio_read(&f->t, REG_CONFIG + 2, b, 2);
	assert_int_equal(b[1], 0xc3);
	virtio_mmio_read(&f->t, REG_CONFIG + CONFIG_SIZE - 8, b, 8);
	assert_int_equal(b[7], 0xc0 + CONFIG_SIZE - 1);
	assert_int_equal(f->fake.config_reads, 4);
	assert_int_equal(guest_errors(f), 0);
}

static void test_config_read_out_of_bounds(void **state)
{
	struct fixture *f = *state;
	uint8_t b[8];

	memset(b, 0xff, sizeof(b));
	virtio_mmio_read(&f->t, REG_CONFIG + CONFIG_SIZE, b, 4);
	assert_int_equal(f->fake.config_reads, 0);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(b[i], 0);
	assert_int_equal(b[4], 0xff); /* only len bytes */
	/* Straddling the end: all or nothing. */
	memset(b, 0xff, sizeof(b));
	virtio_mmio_read(&f->t, REG_CONFIG + CONFIG_SIZE - 2, b, 4);
	assert_int_equal(f->fake.config_reads, 0);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(b[i], 0);
	virtio_mmio_read(&f->t, REG_CONFIG + CONFIG_SIZE - 4, b, 8);
	assert_int_equal(f->fake.config_reads, 0);
	virtio_mmio_read(&f->t, VIRTIO_MMIO_WINDOW - 4, b, 4);
	assert_int_equal(f->fake.config_reads, 0);
	assert_int_equal(b[0], 0);
}

static void test_config_write(void **state)
{
	struct fixture *f = *state;
	const uint8_t v[4] = { 1, 2, 3, 4 };

	virtio_mmio_write(&f->t, REG_CONFIG + 8, v, 4);
	assert_int_equal(f->fake.config_writes, 1);
	assert_int_equal(f->fake.last_off, 8);
	assert_memory_equal(f->fake.config + 8, v, 4);
	virtio_mmio_write(&f->t, REG_CONFIG + 10, v, 4); /* straddles */
	virtio_mmio_write(&f->t, REG_CONFIG + CONFIG_SIZE, v, 1);
	virtio_mmio_write(&f->t, VIRTIO_MMIO_WINDOW - 4, v, 4);
	assert_int_equal(f->fake.config_writes, 1);
}

static void test_config_generation_stable(void **state)
{
	struct fixture *f = *state;

	uint32_t gen = rd(f, REG_CONFIG_GENERATION);
	bring_up(f);
	assert_int_equal(rd(f, REG_CONFIG_GENERATION), gen);
	wr(f, REG_CONFIG_GENERATION, gen + 5); /* read-only */
	assert_int_equal(rd(f, REG_CONFIG_GENERATION), gen);
}

/* ---- register access mistakes ---------------------------------------------- */

static void test_non_32bit_register_writes_ignored(void **state)
{
	struct fixture *f = *state;
	const uint8_t v8[8] = { ACK, 0, 0, 0, 0, 0, 0, 0 };

	virtio_mmio_write(&f->t, REG_STATUS, v8, 1);
	virtio_mmio_write(&f->t, REG_STATUS, v8, 2);
	virtio_mmio_write(&f->t, REG_STATUS, v8, 8);
	virtio_mmio_write(&f->t, REG_STATUS + 1, v8, 4); /* misaligned */
	virtio_mmio_write(&f->t, REG_STATUS + 2, v8, 2);
	assert_int_equal(rd(f, REG_STATUS), 0);
	assert_int_equal(guest_errors(f), 5);
	wr(f, REG_STATUS, ACK);
	assert_int_equal(rd(f, REG_STATUS), ACK);
	assert_int_equal(guest_errors(f), 5);
}

static void test_non_32bit_register_reads_return_zero(void **state)
{
	struct fixture *f = *state;
	uint8_t b[8];

	memset(b, 0xff, sizeof(b));
	virtio_mmio_read(&f->t, REG_MAGIC, b, 1);
	assert_int_equal(b[0], 0);
	assert_int_equal(b[1], 0xff);
	memset(b, 0xff, sizeof(b));
	virtio_mmio_read(&f->t, REG_MAGIC, b, 2);
	assert_int_equal(b[0], 0);
	assert_int_equal(b[1], 0);
	memset(b, 0xff, sizeof(b));
	virtio_mmio_read(&f->t, REG_MAGIC, b, 8);
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(b[i], 0);
	memset(b, 0xff, sizeof(b));
	virtio_mmio_read(&f->t, REG_MAGIC + 1, b, 4);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(b[i], 0);
}

static void test_regression_non_32bit_register_reads_counted(void **state)
{
	struct fixture *f = *state;
	uint8_t b[8];

	/* 4.2.2.2: the driver MUST use 32-bit aligned accesses; a mistaken
	 * read is as much a guest error as a mistaken write. */
	virtio_mmio_read(&f->t, REG_MAGIC, b, 1);
	virtio_mmio_read(&f->t, REG_STATUS + 2, b, 4);
	assert_int_equal(guest_errors(f), 2);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_identification_registers),
		T(test_registered_on_bus),
		T(test_cmdline),
		T(test_device_features_by_selector),
		T(test_driver_features_by_selector),
		T(test_features_ok_accepted),
		T(test_features_ok_refused_without_version_1),
		T(test_features_ok_refused_for_unknown_bits),
		T(test_driver_features_frozen_after_features_ok),
		T(test_queue_num_max_and_num),
		T(test_queue_addresses_low_high),
		T(test_queue_ready_reads_back),
		T(test_queue_layout_frozen_while_ready),
		T(test_queue_sel_out_of_range),
		T(test_driver_ok_activates_once),
		T(test_driver_ok_with_unready_queue),
		T(test_driver_ok_bad_size_needs_reset),
		T(test_driver_ok_size_above_max_needs_reset),
		T(test_driver_ok_misaligned_ring_needs_reset),
		T(test_driver_ok_ring_outside_ram_needs_reset),
		T(test_activate_failure_needs_reset),
		T(test_driver_ok_without_features_ok_does_not_activate),
		T(test_registers_frozen_after_driver_ok),
		T(test_clearing_status_bits_ignored),
		T(test_status_zero_resets),
		T(test_reset_clears_needs_reset),
		T(test_needs_reset_from_device),
		T(test_interrupt_status_and_ack),
		T(test_notify_used_signals),
		T(test_queue_notify),
		T(test_config_read_in_bounds),
		T(test_config_read_out_of_bounds),
		T(test_config_write),
		T(test_config_generation_stable),
		T(test_non_32bit_register_writes_ignored),
		T(test_non_32bit_register_reads_return_zero),
		T(test_regression_non_32bit_register_reads_counted),
	};

	/* The tests make guest errors on purpose: keep their warnings quiet. */
	log_max_level = LOG_ERROR;
	return cmocka_run_group_tests_name("virtio_mmio", tests, NULL, NULL);
}
