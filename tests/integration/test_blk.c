/* virtio-blk under /dev/kvm with the test unikernel: the guest stamps
 * sectors cheaply (see guest/unikernel/README.md, "Sector stamp") and the
 * host checks every one of them in the backing files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#define SECTOR 512
#define DRIVE_MIB 4
#define NR_DRIVES 4

static const char *mote_bin;
static const char *guest_elf;

struct drive {
	char path[64];
	char arg[128];
};

static void drive_make(struct drive *d, unsigned mib, const char *opts)
{
	strcpy(d->path, "/tmp/mote-blk-XXXXXX");
	int fd = mkstemp(d->path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)mib << 20), 0);
	close(fd);
	snprintf(d->arg, sizeof(d->arg), "path=%s%s%s", d->path, opts ? "," : "", opts ? opts : "");
}

static uint64_t stamp(unsigned seed, unsigned drive, uint64_t sector)
{
	return ((uint64_t)(seed & 0xffff) << 48) | ((uint64_t)drive << 40) | sector;
}

/* Checks sectors [first, first+n) of a drive file; returns the first bad
 * sector or -1. */
static int64_t check_stamps(const char *path, unsigned seed, unsigned drive, uint64_t first,
			    uint64_t n)
{
	int fd = open(path, O_RDONLY);
	uint8_t buf[SECTOR];

	assert_true(fd >= 0);
	for (uint64_t s = first; s < first + n; s++) {
		uint64_t a, b;
		if (pread(fd, buf, SECTOR, (off_t)(s * SECTOR)) != SECTOR) {
			close(fd);
			return (int64_t)s;
		}
		memcpy(&a, buf, 8);
		memcpy(&b, buf + 8, 8);
		if (a != stamp(seed, drive, s) || b != ~stamp(seed, drive, s)) {
			close(fd);
			return (int64_t)s;
		}
	}
	close(fd);
	return -1;
}

static void write_stamps(const char *path, unsigned seed, unsigned drive, uint64_t n)
{
	int fd = open(path, O_WRONLY);
	uint8_t buf[SECTOR] = { 0 };

	assert_true(fd >= 0);
	for (uint64_t s = 0; s < n; s++) {
		uint64_t a = stamp(seed, drive, s), b = ~a;
		memcpy(buf, &a, 8);
		memcpy(buf + 8, &b, 8);
		assert_int_equal(pwrite(fd, buf, SECTOR, (off_t)(s * SECTOR)), SECTOR);
	}
	close(fd);
}

static void run_write_all(const char *mode)
{
	struct drive d[NR_DRIVES];
	char cmdline[128];

	for (int i = 0; i < NR_DRIVES; i++)
		drive_make(&d[i], DRIVE_MIB, NULL);
	snprintf(cmdline, sizeof(cmdline), "test=blk-write seed=77 blkmode=%s", mode);
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--drive", d[0].arg,
			 "--drive", d[1].arg, "--drive", d[2].arg, "--drive", d[3].arg,
			 "--cmdline", cmdline, NULL };
	struct run_result r = harness_run(argv, 120, NULL);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS blk-write");
	/* 16 MiB over four drives: every sector carries its stamp. */
	for (int i = 0; i < NR_DRIVES; i++) {
		int64_t bad = check_stamps(d[i].path, 77, (unsigned)i, 0, (DRIVE_MIB << 20) / SECTOR);
		unlink(d[i].path);
		if (bad >= 0)
			fail_msg("drive %d sector %lld has a wrong stamp", i, (long long)bad);
	}
	harness_free(&r);
}

static void test_write_16mib_4_drives_poll(void **state)
{
	(void)state;
	run_write_all("poll");
}

static void test_write_16mib_4_drives_irq(void **state)
{
	(void)state;
	run_write_all("irq");
}

static void test_read_host_data(void **state)
{
	(void)state;
	struct drive d[2];

	for (int i = 0; i < 2; i++) {
		drive_make(&d[i], 2, i ? "ro" : NULL);
		write_stamps(d[i].path, 9, (unsigned)i, (2 << 20) / SECTOR);
	}
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--drive", d[0].arg,
			 "--drive", d[1].arg, "--cmdline", "test=blk-read seed=9 blkmode=irq", NULL };
	struct run_result r = harness_run(argv, 120, NULL);
	for (int i = 0; i < 2; i++)
		unlink(d[i].path);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS blk-read");
	harness_free(&r);
}

/* The drive's completions reach the guest as interrupts through either
 * irqchip: mote's IOAPIC (split, the default) and KVM's (kernel). The
 * guest counts the ones its handler ran for; its periodic LAPIC timer
 * would also end every wait, so a count of 0 means no device interrupt
 * was delivered even if the data arrived. The drive is held to 10
 * requests a second: 16 requests of 64 KiB, the last 6 each ~100 ms
 * late, so the guest is certain to be waiting in hlt when they complete
 * (unthrottled, on a loaded host, every completion can land before the
 * guest waits, and 0 interrupts would be right). */
static void test_interrupts_delivered_both_irqchips(void **state)
{
	(void)state;
	static const char *const modes[] = { "split", "kernel" };

	for (int m = 0; m < 2; m++) {
		struct drive d;

		drive_make(&d, 1, "iops=10");
		write_stamps(d.path, 9, 0, (1 << 20) / SECTOR);
		char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--irqchip",
				 (char *)modes[m], "--drive", d.arg, "--cmdline",
				 "test=blk-read seed=9 blkmode=irq blkstats=1", "--log-level", "debug",
				 NULL };
		struct run_result r = harness_run(argv, 120, NULL);
		unlink(d.path);
		assert_exit_status(&r, 0);
		assert_output_contains(&r, out, "TEST PASS blk-read");
		assert_output_contains(&r, err, m == 0 ? "split irqchip" : "in-kernel irqchip");
		const char *p = strstr(r.out, "interrupts ");
		assert_non_null(p);
		unsigned long n = strtoul(p + strlen("interrupts "), NULL, 10);
		fprintf(stderr, "--irqchip %s: %lu device interrupts handled\n", modes[m], n);
		assert_true(n > 0);
		harness_free(&r);
	}
	/* A mode mote does not know is a usage error that names the option. */
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--irqchip", "pic",
			 NULL };
	struct run_result r = harness_run(argv, 10, NULL);
	assert_exit_status(&r, 64);
	assert_output_contains(&r, err, "--irqchip");
	harness_free(&r);
}

static void test_read_detects_wrong_data(void **state)
{
	(void)state;
	struct drive d;

	/* Stamped with seed 9, checked for seed 8: the guest must notice. */
	drive_make(&d, 1, NULL);
	write_stamps(d.path, 9, 0, (1 << 20) / SECTOR);
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--drive", d.arg,
			 "--cmdline", "test=blk-read seed=8", NULL };
	struct run_result r = harness_run(argv, 60, NULL);
	unlink(d.path);
	assert_exit_status(&r, 1);
	assert_output_contains(&r, out, "TEST FAIL blk-read");
	harness_free(&r);
}

struct flush_check {
	const char *path;
	int64_t bad;
};

static void check_while_running(void *arg)
{
	struct flush_check *fc = arg;

	fc->bad = check_stamps(fc->path, 5, 0, 0, 128);
}

static void test_flush_reaches_file_while_running(void **state)
{
	(void)state;
	struct drive d;
	drive_make(&d, 1, NULL);
	struct flush_check fc = { d.path, -2 };
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--drive", d.arg,
			 "--cmdline", "test=blk-flush-wait seed=5", NULL };
	struct run_result r = harness_run_cb(argv, 60, "blk: flushed, waiting",
					     check_while_running, &fc);
	unlink(d.path);
	assert_true(r.marker_ms >= 0);
	assert_int_equal(r.status, 128 + SIGTERM); /* it was still running */
	if (fc.bad != -1)
		fail_msg("after FLUSH, sector %lld was not in the host file", (long long)fc.bad);
	harness_free(&r);
}

static void test_read_only_drive(void **state)
{
	(void)state;
	struct drive d;
	drive_make(&d, 1, "ro");
	write_stamps(d.path, 3, 0, 16);
	struct stat before, after;
	assert_int_equal(stat(d.path, &before), 0);
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--drive", d.arg,
			 "--cmdline", "test=blk-ro", NULL };
	struct run_result r = harness_run(argv, 60, NULL);
	assert_int_equal(stat(d.path, &after), 0);
	int64_t bad = check_stamps(d.path, 3, 0, 0, 16);
	unlink(d.path);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "status 1 (IOERR)");
	assert_true(bad == -1); /* the host file is unchanged */
	assert_true(before.st_mtim.tv_sec == after.st_mtim.tv_sec &&
		    before.st_mtim.tv_nsec == after.st_mtim.tv_nsec);
	harness_free(&r);
}

static void test_discard_and_write_zeroes(void **state)
{
	(void)state;
	struct drive d;
	drive_make(&d, 1, "id=disk-under-test");
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--drive", d.arg,
			 "--cmdline", "test=blk-discard", NULL };
	struct run_result r = harness_run(argv, 60, NULL);
	/* The zeros are real on the host too. */
	int fd = open(d.path, O_RDONLY);
	uint8_t buf[256 * SECTOR];
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	close(fd);
	unlink(d.path);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "read back zeros");
	assert_output_contains(&r, out, "id='disk-under-test'");
	for (size_t i = 0; i < sizeof(buf); i++)
		if (buf[i])
			fail_msg("byte %zu of the discarded range is %u on the host", i, buf[i]);
	harness_free(&r);
}

static void test_corrupt_queue_spares_monitor_and_other_drive(void **state)
{
	(void)state;
	/* Each corruption alone (corrupt=N), so each must be caught by itself. */
	static const char *const steps[][2] = {
		{ "test=blk-corrupt corrupt=1", "device needs reset: descriptor buffer lies outside guest RAM" },
		{ "test=blk-corrupt corrupt=2", "device needs reset: descriptor chain loops" },
		{ "test=blk-corrupt corrupt=3", "device needs reset: available index ran more than a queue ahead" },
		{ "test=blk-corrupt", "device needs reset" },
	};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct drive d[2];
		drive_make(&d[0], 1, NULL);
		drive_make(&d[1], 1, NULL);
		char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--drive", d[0].arg,
				 "--drive", d[1].arg, "--cmdline", (char *)steps[i][0], NULL };
		struct run_result r = harness_run(argv, 120, NULL);
		for (int j = 0; j < 2; j++)
			unlink(d[j].path);
		assert_exit_status(&r, 0);
		assert_output_contains(&r, out, "drive 0 works after reset");
		assert_output_contains(&r, out, "drive 1 unaffected");
		assert_output_contains(&r, out, "TEST PASS blk-corrupt");
		/* The monitor named the problem and carried on. */
		assert_output_contains(&r, err, steps[i][1]);
		harness_free(&r);
	}
}

static void test_drive_errors(void **state)
{
	(void)state;
	char *argv[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--drive",
			 "path=/nonexistent.img", NULL };
	struct run_result r = harness_run(argv, 10, NULL);
	assert_exit_status(&r, 66);
	assert_output_contains(&r, err, "cannot open drive '/nonexistent.img'");
	harness_free(&r);

	struct drive d;
	drive_make(&d, 1, NULL);
	char *argv2[] = { (char *)mote_bin, "--kernel", (char *)guest_elf, "--drive", d.arg,
			  "--drive", d.arg, NULL };
	r = harness_run(argv2, 10, NULL);
	unlink(d.path);
	assert_exit_status(&r, 66);
	assert_output_contains(&r, err, "in use by another VM");
	harness_free(&r);
}

int main(void)
{
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_16mib_4_drives_poll),
		cmocka_unit_test(test_write_16mib_4_drives_irq),
		cmocka_unit_test(test_read_host_data),
		cmocka_unit_test(test_read_detects_wrong_data),
		cmocka_unit_test(test_interrupts_delivered_both_irqchips),
		cmocka_unit_test(test_flush_reaches_file_while_running),
		cmocka_unit_test(test_read_only_drive),
		cmocka_unit_test(test_discard_and_write_zeroes),
		cmocka_unit_test(test_corrupt_queue_spares_monitor_and_other_drive),
		cmocka_unit_test(test_drive_errors),
	};
	return cmocka_run_group_tests_name("integration: virtio-blk", tests, NULL, NULL);
}
