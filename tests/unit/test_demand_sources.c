/* The metrics' source parsers (metrics/sources.c): schedstat text, KVM's
 * binary statistics layout (on a synthetic buffer and, when /dev/kvm is
 * usable, on a real vCPU's stats fd), /proc/self/maps sharing. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/kvm.h>

#include "metrics/sources.h"

static void test_schedstat_parse(void **state)
{
	(void)state;
	uint64_t run = 1, ready = 1;
	const char ok[] = "123456789 987654 42\n";

	assert_int_equal(schedstat_parse(ok, strlen(ok), &run, &ready), 0);
	assert_int_equal(run, 123456789);
	assert_int_equal(ready, 987654);
	assert_int_equal(schedstat_parse("18446744073709551615 0 1", 24, &run, &ready), 0);
	assert_true(run == UINT64_MAX);
	assert_int_equal(schedstat_parse("18446744073709551616 0 1", 24, &run, &ready), -EINVAL);
	assert_int_equal(schedstat_parse("", 0, &run, &ready), -EINVAL);
	assert_int_equal(schedstat_parse("12", 2, &run, &ready), -EINVAL);
	assert_int_equal(schedstat_parse("x 1 2", 5, &run, &ready), -EINVAL);
	/* The length bounds the parse: no reading past it. */
	assert_int_equal(schedstat_parse("5 6", 1, &run, &ready), -EINVAL);
}

static void test_schedstat_of_this_thread(void **state)
{
	(void)state;
	int fd = schedstat_open_self_thread();
	uint64_t run0, ready0, run1, ready1;

	assert_true(fd >= 0);
	assert_int_equal(schedstat_read(fd, &run0, &ready0), 0);
	/* Burn ~20 ms of CPU: the run counter must grow by about that. */
	struct timespec a, b;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	volatile uint64_t x = 0;
	do {
		for (int i = 0; i < 100000; i++)
			x += (uint64_t)i;
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	} while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < 20000000L);
	assert_int_equal(schedstat_read(fd, &run1, &ready1), 0);
	assert_true(run1 - run0 >= 15000000ULL);
	assert_true(ready1 >= ready0);
	close(fd);
	assert_int_equal(schedstat_read(-1, &run1, &ready1), -EBADF);
}

/* A stats fd image: header, descriptors, data. */
#define NAME_SIZE 48
struct fake_desc {
	struct kvm_stats_desc d;
	char name[NAME_SIZE];
};

static size_t build_stats(uint8_t *buf, size_t cap, const char *const *names, const uint16_t *sizes,
			  unsigned n)
{
	struct kvm_stats_header h = { .name_size = NAME_SIZE, .num_desc = n };
	size_t dsz = sizeof(struct fake_desc);

	h.id_offset = sizeof(h);
	h.desc_offset = sizeof(h) + 16;
	h.data_offset = h.desc_offset + (uint32_t)(n * dsz);
	memset(buf, 0, cap);
	memcpy(buf, &h, sizeof(h));
	uint32_t off = 0;
	for (unsigned i = 0; i < n; i++) {
		struct fake_desc f = { .d = { .size = sizes[i], .offset = off } };
		snprintf(f.name, NAME_SIZE, "%s", names[i]);
		memcpy(buf + h.desc_offset + i * dsz, &f, sizeof(f));
		off += 8u * sizes[i];
	}
	return h.data_offset + off;
}

static void test_kvm_stats_layout(void **state)
{
	(void)state;
	static const char *const names[] = { "halt_wait_hist", "exits", "unknown_stat",
					     "halt_wait_ns", "io_exits" };
	static const uint16_t sizes[] = { 32, 1, 1, 1, 1 };
	uint8_t buf[4096];
	struct kvm_stats_layout l;
	size_t len = build_stats(buf, sizeof(buf), names, sizes, 5);

	assert_int_equal(kvm_stats_parse_layout(buf, len, &l), 0);
	assert_int_equal(l.offset[KSTAT_EXITS], 32 * 8);
	assert_int_equal(l.offset[KSTAT_HALT_WAIT_NS], 34 * 8);
	assert_int_equal(l.offset[KSTAT_IO_EXITS], 35 * 8);
	assert_int_equal(l.offset[KSTAT_MMIO_EXITS], -1); /* not offered */
	assert_int_equal(l.data_size, 36 * 8);
	assert_string_equal(kvm_stat_name(KSTAT_HALT_EXITS), "halt_exits");
	assert_null(kvm_stat_name(KSTAT_NR));
	/* Truncated descriptors and a silly header are refused. */
	assert_int_equal(kvm_stats_parse_layout(buf, len - 400, &l), -EINVAL);
	assert_int_equal(kvm_stats_parse_layout(buf, 10, &l), -EINVAL);
	struct kvm_stats_header h;
	memcpy(&h, buf, sizeof(h));
	h.num_desc = 1u << 30;
	memcpy(buf, &h, sizeof(h));
	assert_int_equal(kvm_stats_parse_layout(buf, len, &l), -EINVAL);
}

static void test_kvm_stats_real_vcpu(void **state)
{
	(void)state;
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		skip();
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	assert_true(vm >= 0);
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	assert_true(vcpu >= 0);
	int sfd = ioctl(vcpu, KVM_GET_STATS_FD, 0);
	if (sfd < 0) {
		close(vcpu), close(vm), close(kvm);
		skip();
	}
	struct kvm_stats_layout l;
	uint64_t v[KSTAT_NR], scratch[512];
	assert_int_equal(kvm_stats_load_layout(sfd, &l), 0);
	assert_true(l.offset[KSTAT_EXITS] >= 0);
	assert_true(l.offset[KSTAT_HALT_WAIT_NS] >= 0);
	assert_int_equal(kvm_stats_read(sfd, &l, scratch, sizeof(scratch), v), 0);
	assert_int_equal(v[KSTAT_EXITS], 0); /* never ran */
	assert_int_equal(kvm_stats_read(sfd, &l, scratch, 8, v), -ENOSPC);
	close(sfd);
	close(vcpu);
	close(vm);
	close(kvm);
}

static void test_maps_shared(void **state)
{
	(void)state;
	const char maps[] =
		"55d0c0000000-55d0c0021000 r--p 00000000 08:01 123 /usr/bin/x\n"
		"7f0000000000-7f0010000000 rw-s 00000000 00:01 456 /dev/zero (deleted)\n"
		"7f2000000000-7f2010000000 rw-p 00000000 00:00 0\n";

	assert_int_equal(maps_mapping_is_shared(maps, strlen(maps), 0x7f0000000000), 1);
	assert_int_equal(maps_mapping_is_shared(maps, strlen(maps), 0x7f2000000000), 0);
	assert_int_equal(maps_mapping_is_shared(maps, strlen(maps), 0x7f0000001000), -ENOENT);
	assert_int_equal(maps_mapping_is_shared("", 0, 0x1000), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_schedstat_parse),
		cmocka_unit_test(test_schedstat_of_this_thread),
		cmocka_unit_test(test_kvm_stats_layout),
		cmocka_unit_test(test_kvm_stats_real_vcpu),
		cmocka_unit_test(test_maps_shared),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
