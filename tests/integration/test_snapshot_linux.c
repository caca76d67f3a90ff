/* A Linux kernel snapshotted in the middle of its boot (2 vCPUs, right
 * after SMP bring-up: kvmclock, TSC, LAPIC timers, IOAPIC and both CPUs'
 * state all in use), its monitor killed with SIGKILL, and restored in a new
 * process: the kernel carries on to "Run /init as init process" without
 * booting again. Slow under this machine's software nesting (tens of s). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "tests/integration/harness_api.h"

#define LINUX_TIMEOUT_S 600
/* As test_linux.c: what this nested hypervisor's emulator cannot run. */
#define LINUX_CMDLINE "console=ttyS0 reboot=k panic=-1 noxsave " \
	"clearcpuid=popcnt,rdrand,rdseed,smap,fsgsbase,rdpid,invpcid,pcid " \
	"rcupdate.rcu_cpu_stall_suppress=1"
#define MID_BOOT_MARKER "smpboot: Total of 2 processors activated"

static const char *mote_bin;
static char vmlinux[512], initrd[512], dir[64], sock_path[108];

static void test_linux_snapshot_mid_boot_restores_in_new_process(void **state)
{
	char st[128], mem[128];
	struct harness_proc p;

	(void)state;
	snprintf(st, sizeof(st), "%s/linux.state", dir);
	snprintf(mem, sizeof(mem), "%s/linux.mem", dir);
	char *const boot[] = { (char *)mote_bin, "--api-sock", sock_path, "--kernel", vmlinux,
			       "--initrd", initrd, "--vcpus", "2", "--mem-mib", "256",
			       "--cpu-template", "minimal", "--cmdline", LINUX_CMDLINE, NULL };
	double t0 = harness_now_ms();
	harness_spawn(&p, boot);
	if (!harness_proc_wait_for(&p, MID_BOOT_MARKER, false, LINUX_TIMEOUT_S)) {
		kill(p.pid, SIGKILL);
		struct run_result r = harness_proc_finish(&p, 10);
		harness_dump(&r);
		fail_msg("the kernel never got to '%s'", MID_BOOT_MARKER);
	}
	struct run_result first = harness_snapshot_and_kill(&p, sock_path, st, mem);
	assert_null(strstr(first.out, "Run /init as init process"));
	fprintf(stderr, "linux: snapshotted after %.1f s of boot\n", (harness_now_ms() - t0) / 1e3);

	char *const restore[] = { (char *)mote_bin, "--restore", st, "--mem", mem, "--resume",
				  "--no-api", NULL };
	struct run_result r = harness_run(restore, LINUX_TIMEOUT_S, NULL);
	fprintf(stderr, "linux: restored run took %.1f s\n", r.wall_ms / 1e3);
	/* It carries on; it does not start over. */
	assert_null(strstr(r.out, "Linux version"));
	assert_null(strstr(r.out, MID_BOOT_MARKER));
	assert_output_contains(&r, out, "Run /init as init process");
	assert_output_contains(&r, err, "snapshot: restored from");
	/* init dies (no user space under software nesting); the kernel
	 * reboots through the i8042 and mote ends cleanly. */
	assert_exit_status(&r, 0);
	harness_free(&r);
	harness_free(&first);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/mote-snaplinux-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/api.sock", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return harness_rm_rf(dir);
}

int main(void)
{
	mote_bin = harness_env("MOTE_BIN");
	const char *d = harness_env("MOTE_LINUX_DIR");
	snprintf(vmlinux, sizeof(vmlinux), "%s/vmlinux", d);
	snprintf(initrd, sizeof(initrd), "%s/initramfs.cpio", d);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linux_snapshot_mid_boot_restores_in_new_process),
	};
	return cmocka_run_group_tests_name("integration: Linux snapshot mid-boot", tests, setup,
					   teardown);
}
