/* Boots the project's Linux kernel (guest/linux) under mote with 2 vCPUs.
 * Under this machine's nested software virtualization a kernel boot takes
 * tens of seconds and user space cannot run (see ENVIRONMENT.md), so these
 * tests check kernel-level markers, then the i8042 reboot after init dies
 * (panic=-1 reboot=k) ending the monitor with status 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

static const char *mote_bin;
static char bzimage[512], vmlinux[512], initrd[512];

#define LINUX_TIMEOUT_S 300
/* The template hides what the emulator here cannot run; on a VT-x/AMD-V
 * host it only costs the guest a few instruction-set extensions. */
#define LINUX_CMDLINE "console=ttyS0 reboot=k panic=-1 printk.time=1"

static void check_linux_boot(const struct run_result *r)
{
	assert_output_contains(r, out, "Linux version 6.1");
	assert_output_contains(r, out, "smpboot: Total of 2 processors activated");
	assert_output_contains(r, out, "Run /init as init process");
	/* init dies here (no user space under software nesting); the kernel
	 * reboots through the i8042 and mote ends cleanly. */
	assert_exit_status(r, 0);
}

static void test_linux_bzimage_smp(void **state)
{
	(void)state;
	char *const argv[] = { (char *)mote_bin, "--kernel", bzimage, "--initrd", initrd,
			       "--vcpus", "2", "--mem-mib", "256", "--cpu-template", "minimal",
			       "--cmdline", LINUX_CMDLINE, NULL };
	struct run_result r = harness_run(argv, LINUX_TIMEOUT_S, NULL);
	fprintf(stderr, "linux bzImage boot: %.1f s\n", r.wall_ms / 1000);
	check_linux_boot(&r);
	/* The initrd reached the kernel. */
	assert_output_contains(&r, out, "Unpacking initramfs");
	harness_free(&r);
}

static void test_linux_vmlinux_pvh_smp(void **state)
{
	(void)state;
	char *const argv[] = { (char *)mote_bin, "--kernel", vmlinux, "--initrd", initrd,
			       "--vcpus", "2", "--mem-mib", "256", "--cpu-template", "minimal",
			       "--cmdline", LINUX_CMDLINE, "--log-level", "debug", NULL };
	struct run_result r = harness_run(argv, LINUX_TIMEOUT_S, NULL);
	fprintf(stderr, "linux vmlinux (PVH) boot: %.1f s\n", r.wall_ms / 1000);
	assert_output_contains(&r, err, "PVH boot");
	check_linux_boot(&r);
	harness_free(&r);
}

static void test_truncated_bzimage(void **state)
{
	(void)state;
	char path[] = "/tmp/mote-bz-XXXXXX";
	int fd = mkstemp(path);
	int in = open(bzimage, O_RDONLY);
	char buf[8192];
	assert_true(fd >= 0 && in >= 0);
	assert_int_equal(read(in, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	/* Setup sectors intact, kernel payload cut short: the header's
	 * init_size still fits, so the loader must catch the short file. */
	assert_int_equal(write(fd, buf, 1000), 1000);
	close(in);
	close(fd);
	char *const argv[] = { (char *)mote_bin, "--kernel", path, NULL };
	struct run_result r = harness_run(argv, 10, NULL);
	unlink(path);
	assert_exit_status(&r, 65);
	assert_output_contains(&r, err, "bzImage");
	harness_free(&r);
}

int main(void)
{
	mote_bin = harness_env("MOTE_BIN");
	const char *dir = harness_env("MOTE_LINUX_DIR");
	snprintf(bzimage, sizeof(bzimage), "%s/bzImage", dir);
	snprintf(vmlinux, sizeof(vmlinux), "%s/vmlinux", dir);
	snprintf(initrd, sizeof(initrd), "%s/initramfs.cpio.gz", dir);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_truncated_bzimage),
		cmocka_unit_test(test_linux_bzimage_smp),
		cmocka_unit_test(test_linux_vmlinux_pvh_smp),
	};
	return cmocka_run_group_tests_name("integration: Linux guest", tests, NULL, NULL);
}
