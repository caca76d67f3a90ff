/* Boots mote's test unikernel under /dev/kvm and checks what the guest
 * and the monitor really did; feeds the monitor bad kernels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

static const char *mote_bin;
static const char *guest_elf;

#define MOTE(...) ((char *const[]){ (char *)mote_bin, __VA_ARGS__, NULL })

static void test_hello(void **state)
{
	(void)state;
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--cmdline",
					       "test=hello", "--boot-timer"), 30, NULL);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "hello from PVH guest");
	assert_output_contains(&r, out, "cmdline='test=hello'");
	assert_output_contains(&r, out, "TEST PASS hello");
	/* The boot-timer device and the first-KVM_RUN stamp were logged. */
	assert_output_contains(&r, err, "boot-timer: guest signalled boot after");
	assert_output_contains(&r, err, "first KVM_RUN after");
	harness_free(&r);
}

static void test_memory_map_reaches_guest(void **state)
{
	(void)state;
	/* 256 MiB: the guest reports the RAM it found in the PVH memmap. */
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--mem-mib", "256",
					       "--cmdline", "test=hello"), 30, NULL);
	assert_exit_status(&r, 0);
	/* 0x9fc00 bytes below the EBDA + 255 MiB above 1 MiB */
	char expect[64];
	snprintf(expect, sizeof(expect), "ram=%llu bytes", 0x9fc00ULL + (255ULL << 20));
	assert_output_contains(&r, out, expect);
	harness_free(&r);
}

static void test_cpuid_topology(void **state)
{
	(void)state;
	/* What the guest's CPUID says comes from mote's table: the logical
	 * processor count follows --vcpus and the hypervisor bit is set. */
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--vcpus", "2",
					       "--cmdline", "test=cpuid"), 30, NULL);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "apic_id=0 logical=2 hypervisor=1");
	harness_free(&r);
	r = harness_run(MOTE("--kernel", (char *)guest_elf, "--vcpus", "1", "--cmdline",
			     "test=cpuid"), 30, NULL);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "apic_id=0 logical=1 hypervisor=1");
	harness_free(&r);
}

static void test_smp(void **state)
{
	(void)state;
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--vcpus", "2",
					       "--cmdline", "test=smp"), 60, NULL);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "cpu 1 up");
	assert_output_contains(&r, out, "smp: 2 of 2 cpus ran guest code");
	assert_output_contains(&r, out, "TEST PASS smp");
	harness_free(&r);
}

static void test_smp_detects_missing_cpu(void **state)
{
	(void)state;
	/* With one vCPU the MP table lists one CPU; the scenario needs two. */
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--vcpus", "1",
					       "--cmdline", "test=smp"), 60, NULL);
	assert_exit_status(&r, 1);
	assert_output_contains(&r, out, "TEST FAIL smp");
	harness_free(&r);
}

static void test_triple_fault(void **state)
{
	(void)state;
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--cmdline",
					       "test=triple-fault"), 30, NULL);
	assert_exit_status(&r, 80);
	assert_output_contains(&r, out, "about to triple fault");
	assert_output_contains(&r, err, "triple fault");
	assert_output_contains(&r, err, "rip=");
	assert_output_contains(&r, err, "cr0=");
	harness_free(&r);
}

static void test_int3_is_delivered(void **state)
{
	(void)state;
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--cmdline",
					       "test=int3"), 30, NULL);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS int3");
	harness_free(&r);
}

static void test_guest_exception_reported(void **state)
{
	(void)state;
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--cmdline",
					       "test=ud2"), 30, NULL);
	assert_exit_status(&r, 3);
	assert_output_contains(&r, out, "exception 6");
	harness_free(&r);
}

static void test_exit_code_propagates(void **state)
{
	(void)state;
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--cmdline",
					       "test=exit:42"), 30, NULL);
	assert_exit_status(&r, 42);
	harness_free(&r);
}

static void test_unknown_scenario(void **state)
{
	(void)state;
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--cmdline",
					       "test=no-such-test"), 30, NULL);
	assert_exit_status(&r, 2);
	assert_output_contains(&r, out, "unknown scenario");
	harness_free(&r);
}

static void test_missing_kernel(void **state)
{
	(void)state;
	struct run_result r = harness_run(MOTE("--kernel", "/nonexistent/kernel"), 10, NULL);
	assert_exit_status(&r, 66);
	assert_output_contains(&r, err, "cannot open kernel '/nonexistent/kernel'");
	harness_free(&r);
}

static void test_directory_as_kernel(void **state)
{
	(void)state;
	struct run_result r = harness_run(MOTE("--kernel", "/tmp"), 10, NULL);
	assert_exit_status(&r, 65);
	assert_output_contains(&r, err, "not a regular file");
	harness_free(&r);
}

static char *write_temp(const void *data, size_t len)
{
	static char path[64];
	strcpy(path, "/tmp/mote-test-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

static void test_truncated_elf(void **state)
{
	(void)state;
	FILE *f = fopen(guest_elf, "rb");
	assert_non_null(f);
	static char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	assert_true(n > 4096);
	/* Keep the headers, cut the segment data. */
	char *path = write_temp(buf, 600);
	struct run_result r = harness_run(MOTE("--kernel", path), 10, NULL);
	unlink(path);
	assert_exit_status(&r, 65);
	assert_output_contains(&r, err, "truncated");
	harness_free(&r);
}

static void test_random_file(void **state)
{
	(void)state;
	static unsigned char buf[64 * 1024];
	srand(12345);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)rand();
	char *path = write_temp(buf, sizeof(buf));
	struct run_result r = harness_run(MOTE("--kernel", path), 10, NULL);
	unlink(path);
	assert_exit_status(&r, 65);
	assert_output_contains(&r, err, "not a bzImage");
	harness_free(&r);
}

static void test_bad_usage(void **state)
{
	(void)state;
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--vcpus", "0"), 10,
					  NULL);
	assert_exit_status(&r, 64);
	assert_output_contains(&r, err, "--vcpus");
	harness_free(&r);
	r = harness_run(MOTE("--bogus"), 10, NULL);
	assert_exit_status(&r, 64);
	assert_output_contains(&r, err, "--bogus");
	harness_free(&r);
	r = harness_run(MOTE("--cmdline", "x"), 10, NULL);
	assert_exit_status(&r, 64);
	assert_output_contains(&r, err, "no kernel given");
	harness_free(&r);
}

static void test_sigterm_stops_vm(void **state)
{
	(void)state;
	/* A guest that never stops: SIGTERM must end the monitor promptly
	 * with 128+15 once the guest is running. */
	struct run_result r = harness_run(MOTE("--kernel", (char *)guest_elf, "--cmdline",
					       "test=spin"), 30, "spinning");
	assert_int_equal(r.status, 128 + SIGTERM);
	assert_true(r.marker_ms >= 0);
	assert_true(r.wall_ms - r.marker_ms < 2000);
	harness_free(&r);
}

int main(void)
{
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_memory_map_reaches_guest),
		cmocka_unit_test(test_cpuid_topology),
		cmocka_unit_test(test_smp),
		cmocka_unit_test(test_smp_detects_missing_cpu),
		cmocka_unit_test(test_triple_fault),
		cmocka_unit_test(test_int3_is_delivered),
		cmocka_unit_test(test_guest_exception_reported),
		cmocka_unit_test(test_exit_code_propagates),
		cmocka_unit_test(test_unknown_scenario),
		cmocka_unit_test(test_missing_kernel),
		cmocka_unit_test(test_directory_as_kernel),
		cmocka_unit_test(test_truncated_elf),
		cmocka_unit_test(test_random_file),
		cmocka_unit_test(test_bad_usage),
		cmocka_unit_test(test_sigterm_stops_vm),
	};
	return cmocka_run_group_tests_name("integration: test unikernel", tests, NULL, NULL);
}
