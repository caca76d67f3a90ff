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
static char bzimage[512], vmlinux[512], initrd[512], rootfs[512];

#define LINUX_TIMEOUT_S 600
/* --cpu-template minimal hides what the emulator here cannot run, but this
 * nested hypervisor honours only part of the CPUID table, so the kernel is
 * also told directly (noxsave, clearcpuid). RCU stall reports are only
 * noise at emulated speed. On a VT-x/AMD-V host none of this is needed. */
#define LINUX_CMDLINE "console=ttyS0 reboot=k panic=-1 noxsave " \
	"clearcpuid=popcnt,rdrand,rdseed,smap,fsgsbase,rdpid,invpcid,pcid " \
	"rcupdate.rcu_cpu_stall_suppress=1"

static void check_linux_boot(const struct run_result *r)
{
	assert_output_contains(r, out, "Linux version 6.1");
	assert_output_contains(r, out, "smpboot: Total of 2 processors activated");
	assert_output_contains(r, out, "Run /init as init process");
	/* init dies here (no user space under software nesting); the kernel
	 * reboots through the i8042 and mote ends cleanly. */
	assert_exit_status(r, 0);
}

/* vmlinux through PVH with the initrd as PVH module 0, on 2 vCPUs. The
 * initrd is uncompressed: gunzip at emulated CPL0 takes minutes here. */
static void test_linux_vmlinux_pvh_smp(void **state)
{
	(void)state;
	char *const argv[] = { (char *)mote_bin, "--kernel", vmlinux, "--initrd", initrd,
			       "--vcpus", "2", "--mem-mib", "256", "--cpu-template", "minimal",
			       "--cmdline", LINUX_CMDLINE, "--log-level", "debug", NULL };
	struct run_result r = harness_run(argv, LINUX_TIMEOUT_S, NULL);
	fprintf(stderr, "linux vmlinux (PVH) SMP boot: %.1f s\n", r.wall_ms / 1000);
	assert_output_contains(&r, err, "PVH boot");
	check_linux_boot(&r);
	/* The initrd reached the kernel. */
	assert_output_contains(&r, out, "Unpacking initramfs");
	harness_free(&r);
}

static uint32_t ext4_mount_count(const char *path)
{
	/* Superblock at 1024; s_mnt_count is a little-endian u16 at +52. */
	uint8_t sb[2];
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, sb, 2, 1024 + 52), 2);
	close(fd);
	return sb[0] | (uint32_t)sb[1] << 8;
}

/* bzImage through the Linux 64-bit boot protocol (zero page, e820), with
 * the ext4 root on virtio-blk: the kernel probes the drive, mounts it
 * read-write, and the mount is visible in the image on the host after. */
static void test_linux_bzimage_virtio_blk_root(void **state)
{
	(void)state;
	char img[] = "/tmp/mote-rootfs-XXXXXX";
	int fd = mkstemp(img);
	assert_true(fd >= 0);
	close(fd);
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", rootfs, img);
	assert_int_equal(system(cmd), 0);
	uint32_t before = ext4_mount_count(img);
	char drive[600];
	snprintf(drive, sizeof(drive), "path=%s,root", img);
	char *const argv[] = { (char *)mote_bin, "--kernel", bzimage, "--drive", drive,
			       "--mem-mib", "256", "--cpu-template", "minimal",
			       "--cmdline", LINUX_CMDLINE, "--log-level", "debug", NULL };
	struct run_result r = harness_run(argv, LINUX_TIMEOUT_S, NULL);
	fprintf(stderr, "linux bzImage + virtio-blk root: %.1f s\n", r.wall_ms / 1000);
	uint32_t after = ext4_mount_count(img);
	unlink(img);
	assert_output_contains(&r, err, "bzImage, Linux 64-bit boot");
	assert_output_contains(&r, out, "virtio_mmio.device=4K@0xc0001000:5 root=/dev/vda rw");
	assert_output_contains(&r, out, "[vda] 65536 512-byte logical blocks");
	assert_output_contains(&r, out, "EXT4-fs (vda): mounted filesystem");
	assert_output_contains(&r, out, "Run /sbin/init as init process");
	assert_exit_status(&r, 0);
	if (after != before + 1)
		fail_msg("ext4 mount count %u -> %u, expected +1", before, after);
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
	snprintf(initrd, sizeof(initrd), "%s/initramfs.cpio", dir);
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs.ext4", dir);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_truncated_bzimage),
		cmocka_unit_test(test_linux_vmlinux_pvh_smp),
		cmocka_unit_test(test_linux_bzimage_virtio_blk_root),
	};
	return cmocka_run_group_tests_name("integration: Linux guest", tests, NULL, NULL);
}
