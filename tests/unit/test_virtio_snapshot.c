/* The virtio-mmio transport's snapshot record (virtio_mmio_save/restore):
 * a live device with two queues is saved and restored onto a fresh
 * transport, which then carries on from the same ring indices; a record
 * that is damaged, for another device type, or pointing rings outside guest
 * RAM is refused. No KVM: vm_fd = -1, registers driven as the bus would. */
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

#include "tests/unit/virtq_fixture.h"
#include "virtio/mmio.h"
#include "vmm/bus.h"
#include "vmm/mem.h"

#define RAM_SIZE (2ULL << 20)

struct fake {
	struct virtio_device vdev;
	uint32_t secret;        /* the device's own state */
	unsigned activates, restores;
};

static uint64_t fake_features(struct virtio_device *d)
{
	(void)d;
	return 1ULL << VIRTIO_F_RING_EVENT_IDX;
}

static int fake_activate(struct virtio_device *d)
{
	((struct fake *)d)->activates++;
	return 0;
}

static int fake_save(struct virtio_device *d, void *buf, size_t cap)
{
	if (cap < 4)
		return -ENOSPC;
	memcpy(buf, &((struct fake *)d)->secret, 4);
	return 4;
}

static int fake_restore(struct virtio_device *d, const void *buf, size_t len)
{
	if (len != 4)
		return -EINVAL;
	memcpy(&((struct fake *)d)->secret, buf, 4);
	((struct fake *)d)->restores++;
	return 0;
}

static const struct virtio_device_ops fake_ops = {
	.device_id = 42, .nr_queues = 2, .queue_max_size = 64, .features = fake_features,
	.activate = fake_activate, .save = fake_save, .restore = fake_restore,
};
static const struct virtio_device_ops other_ops = {
	.device_id = 43, .nr_queues = 2, .queue_max_size = 64, .features = fake_features,
};

struct side {
	struct fake fake;
	struct virtio_mmio t;
	struct bus bus;
};

static uint8_t *ram;
static struct guest_mem mem;

static void side_init(struct side *s, const struct virtio_device_ops *ops)
{
	memset(s, 0, sizeof(*s));
	virtio_device_init(&s->fake.vdev, ops, "fake");
	const struct virtio_mmio_env env = { .vm_fd = -1, .mem = &mem, .mmio_bus = &s->bus };
	assert_int_equal(virtio_mmio_init(&s->t, &s->fake.vdev, &env, 0xc0001000, 5), 0);
}

/* What the driver acks: event-idx, so the rings carry their events too. */
#define DRIVER_FEATURES ((1ULL << VIRTIO_F_RING_EVENT_IDX) | (1ULL << VIRTIO_F_VERSION_1))

static int setup(void **state)
{
	(void)state;
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return ram == MAP_FAILED || guest_mem_init_from_buffer(&mem, ram, RAM_SIZE) ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	munmap(ram, RAM_SIZE);
	return 0;
}

static void test_round_trip(void **state)
{
	static struct side a, b;
	uint8_t buf[VIRTIO_MMIO_STATE_MAX];

	(void)state;
	side_init(&a, &fake_ops);
	vqf_bring_up(&a.t, DRIVER_FEATURES, 2);
	assert_true(a.t.activated);
	a.fake.secret = 0xfeedbeef;
	/* The device took some requests and returned some. */
	a.fake.vdev.queues[1].last_avail_idx = 7;
	a.fake.vdev.queues[1].used_idx = 5;
	a.fake.vdev.queues[1].signalled_used = 4;
	a.fake.vdev.queues[1].signalled_used_valid = true;
	atomic_store(&a.t.interrupt_status, 1);
	int n = virtio_mmio_save(&a.t, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(virtio_mmio_save(&a.t, buf, 10), -ENOSPC);

	const char *why = NULL;
	side_init(&b, &fake_ops);
	assert_int_equal(virtio_mmio_restore(&b.t, buf, (size_t)n, &why), 0);
	assert_true(b.t.activated);
	assert_int_equal(b.fake.activates, 1);
	assert_int_equal(b.fake.restores, 1);
	assert_int_equal(b.fake.secret, 0xfeedbeef);
	assert_int_equal(b.t.status, 15);
	assert_int_equal(atomic_load(&b.t.interrupt_status), 1);
	assert_int_equal(b.fake.vdev.driver_features, a.fake.vdev.driver_features);
	const struct virtq *q = &b.fake.vdev.queues[1];
	assert_int_equal(q->size, 16);
	assert_true(q->event_idx);
	assert_int_equal(q->last_avail_idx, 7);
	assert_int_equal(q->used_idx, 5);
	assert_int_equal(q->signalled_used, 4);
	assert_true(q->signalled_used_valid);
	/* The rings are mapped again, onto the same guest RAM. */
	assert_ptr_equal(q->used, ram + 0x16000);
	assert_ptr_equal((void *)q->avail, ram + 0x15000);
	virtio_mmio_destroy(&a.t);
	virtio_mmio_destroy(&b.t);
}

static void test_bad_records(void **state)
{
	static struct side a, b;
	uint8_t buf[VIRTIO_MMIO_STATE_MAX], bad[VIRTIO_MMIO_STATE_MAX];
	const char *why;

	(void)state;
	side_init(&a, &fake_ops);
	vqf_bring_up(&a.t, DRIVER_FEATURES, 2);
	int n = virtio_mmio_save(&a.t, buf, sizeof(buf));
	assert_true(n > 0);

	side_init(&b, &fake_ops);
	assert_int_equal(virtio_mmio_restore(&b.t, buf, 10, &why), -EINVAL);
	assert_non_null(strstr(why, "truncated"));
	memcpy(bad, buf, (size_t)n);
	bad[0] ^= 1; /* magic */
	assert_int_equal(virtio_mmio_restore(&b.t, bad, (size_t)n, &why), -EINVAL);
	assert_int_equal(virtio_mmio_restore(&b.t, buf, (size_t)n - 1, &why), -EINVAL);
	assert_non_null(strstr(why, "length"));
	/* Ring addresses outside guest RAM, as a hostile file would have. */
	memcpy(bad, buf, (size_t)n);
	uint64_t far = RAM_SIZE + 0x1000;
	/* struct virtio_mmio_state: 12 u32 + u64 features, then the queues:
	 * desc_gpa first. */
	memcpy(bad + 56, &far, 8);
	assert_int_equal(virtio_mmio_restore(&b.t, bad, (size_t)n, &why), -EFAULT);
	assert_non_null(strstr(why, "outside guest RAM"));
	assert_false(b.t.activated);
	virtio_mmio_destroy(&b.t);

	/* Another device type at this slot. */
	static struct side c;
	side_init(&c, &other_ops);
	assert_int_equal(virtio_mmio_restore(&c.t, buf, (size_t)n, &why), -EINVAL);
	assert_non_null(strstr(why, "different device type"));
	virtio_mmio_destroy(&c.t);
	virtio_mmio_destroy(&a.t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_bad_records),
	};
	return cmocka_run_group_tests_name("virtio_snapshot", tests, setup, teardown);
}
