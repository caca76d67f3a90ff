/* Linux's own virtio-vsock driver against mote's device (kernel level:
 * user space cannot run under this machine's software nesting, see
 * ENVIRONMENT.md). A host client connects to the vsock socket before the
 * guest has even booted; once the kernel's driver is up it gets the
 * REQUEST, finds no listener on the port and answers RST, which closes
 * the host socket without "OK". That exchange needs the driver's queue
 * set-up, its RX buffers and a header the device accepts (the right
 * source CID) — a broken device leaves the client hanging instead. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#define LINUX_TIMEOUT_S 600
#define LINUX_CMDLINE "console=ttyS0 reboot=k panic=-1 noxsave " \
	"clearcpuid=popcnt,rdrand,rdseed,smap,fsgsbase,rdpid,invpcid,pcid " \
	"rcupdate.rcu_cpu_stall_suppress=1"

static const char *mote_bin;
static char vmlinux[512], initrd[512];

static void test_linux_driver_answers_connect(void **state)
{
	struct harness_proc p;
	char uds[96], arg[128], line[64];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	(void)state;

	snprintf(uds, sizeof(uds), "/tmp/mote-linux-vsock-%d.sock", getpid());
	unlink(uds);
	snprintf(arg, sizeof(arg), "cid=3,uds=%s", uds);
	char *argv[] = { (char *)mote_bin, "--kernel", vmlinux, "--initrd", initrd, "--mem-mib",
			 "256", "--cpu-template", "minimal", "--vsock", arg, "--cmdline",
			 LINUX_CMDLINE, NULL };
	harness_spawn(&p, argv);
	for (int i = 0; i < 500 && access(uds, F_OK); i++)
		harness_proc_pump(&p, 10);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memcpy(sa.sun_path, uds, strlen(uds) + 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, "CONNECT 5000\n", 13), 13);
	double t0 = harness_now_ms();
	ssize_t n = -1;
	while (harness_now_ms() - t0 < LINUX_TIMEOUT_S * 1e3 && harness_proc_alive(&p)) {
		struct pollfd q = { fd, POLLIN, 0 };
		harness_proc_pump(&p, 0);
		if (poll(&q, 1, 200) == 1) {
			n = read(fd, line, sizeof(line) - 1);
			break;
		}
	}
	fprintf(stderr, "linux vsock: host socket answered after %.1f s (read %zd)\n",
		(harness_now_ms() - t0) / 1000, n);
	close(fd);
	kill(p.pid, SIGTERM);
	struct run_result r = harness_proc_finish(&p, 60);
	unlink(uds);
	if (n != 0) {
		harness_dump(&r);
		if (n > 0) {
			line[n] = 0;
			fail_msg("expected the socket closed by the guest's RST, got '%s'", line);
		}
		fail_msg("the Linux guest never answered the vsock REQUEST");
	}
	assert_output_contains(&r, out, "Linux version 6.1");
	harness_free(&r);
}

int main(void)
{
	mote_bin = harness_env("MOTE_BIN");
	const char *dir = harness_env("MOTE_LINUX_DIR");
	snprintf(vmlinux, sizeof(vmlinux), "%s/vmlinux", dir);
	snprintf(initrd, sizeof(initrd), "%s/initramfs.cpio", dir);
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linux_driver_answers_connect),
	};
	return cmocka_run_group_tests_name("integration: Linux virtio-vsock driver", tests, NULL,
					   NULL);
}
