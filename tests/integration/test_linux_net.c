/* Linux on virtio-net, at the kernel level (user space cannot run under
 * this machine's nested software virtualization, see ENVIRONMENT.md): in a
 * network namespace this test creates, busybox udhcpd serves one address
 * on a TAP; the kernel gets it by DHCP (ip=dhcp) and, while it waits for a
 * root device that never comes, answers 100 pings from the host with no
 * loss, 50 of them 8000 bytes (one 9000-MTU frame each: the MTU feature and
 * MRG_RXBUF in the kernel's own driver). Slow here: ~1-3 minutes. */
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness_net.h"

#define TAP "mltap0"
#define LINUX_TIMEOUT_S 600
/* As test_linux.c: what the emulator here cannot run is hidden. No root
 * device ever appears, so the kernel waits (interrupts on) instead of
 * running an init that would die at its first syscall here. */
#define LINUX_CMDLINE "console=ttyS0 noxsave " \
	"clearcpuid=popcnt,rdrand,rdseed,smap,fsgsbase,rdpid,invpcid,pcid " \
	"rcupdate.rcu_cpu_stall_suppress=1 ip=dhcp root=/dev/vdz rootwait"

static const char *mote_bin;
static char bzimage[512];
static struct harness_netns ns = HARNESS_NETNS_INIT;
static char conf_path[128], lease_path[128];
static pid_t dhcpd_pid;

static void cleanup(void)
{
	if (dhcpd_pid > 0) {
		kill(dhcpd_pid, SIGTERM);
		waitpid(dhcpd_pid, NULL, 0);
		dhcpd_pid = 0;
	}
	harness_netns_leave(&ns);
	unlink(conf_path);
	unlink(lease_path);
}

static int group_setup(void **state)
{
	(void)state;
	mote_bin = harness_env("MOTE_BIN");
	snprintf(bzimage, sizeof(bzimage), "%s/bzImage", harness_env("MOTE_LINUX_DIR"));
	snprintf(conf_path, sizeof(conf_path), "/tmp/mote-udhcpd-%d.conf", (int)getpid());
	snprintf(lease_path, sizeof(lease_path), "/tmp/mote-udhcpd-%d.leases", (int)getpid());
	atexit(cleanup);
	if (harness_netns_enter(&ns) || harness_tap_add(TAP, 9000) ||
	    harness_sh("ip addr add 172.16.0.1/24 dev " TAP))
		return -1;
	FILE *f = fopen(conf_path, "w");
	if (!f)
		return -1;
	fprintf(f, "start 172.16.0.2\nend 172.16.0.2\ninterface " TAP "\nmax_leases 1\n"
		   "lease_file %s\noption subnet 255.255.255.0\noption router 172.16.0.1\n"
		   "option lease 3600\n", lease_path);
	fclose(f);
	close(open(lease_path, O_WRONLY | O_CREAT | O_TRUNC, 0600));
	dhcpd_pid = fork();
	if (dhcpd_pid == 0) {
		int devnull = open("/dev/null", O_RDWR);
		dup2(devnull, 0);
		dup2(devnull, 1);
		execlp("busybox", "busybox", "udhcpd", "-f", conf_path, (char *)NULL);
		_exit(127);
	}
	return dhcpd_pid > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	cleanup();
	return 0;
}

/* Runs busybox ping in this namespace; true with 0% loss. */
static bool ping_ok(unsigned count, unsigned size, char *summary, size_t len)
{
	char cmd[160], line[256];
	bool ok = false;

	snprintf(cmd, sizeof(cmd), "busybox ping -c %u -s %u -i 0.2 -W 10 172.16.0.2 2>&1", count,
		 size);
	FILE *p = popen(cmd, "r");
	summary[0] = '\0';
	if (!p)
		return false;
	while (fgets(line, sizeof(line), p)) {
		if (strstr(line, "packet loss")) {
			snprintf(summary, len, "%s", line);
			ok = strstr(line, " 0% packet loss") != NULL;
		}
	}
	pclose(p);
	return ok;
}

static void test_linux_dhcp_and_ping(void **state)
{
	struct harness_proc p;
	char small[256], big[256];

	(void)state;
	char *const argv[] = { (char *)mote_bin, "--kernel", bzimage, "--mem-mib", "256",
			       "--cpu-template", "minimal", "--net",
			       "tap=" TAP ",mac=06:00:ac:10:00:02,mtu=9000", "--cmdline",
			       LINUX_CMDLINE, NULL };
	harness_spawn(&p, argv);
	bool up = harness_proc_wait_for(&p, "Waiting for root device", false, LINUX_TIMEOUT_S);
	bool small_ok = false, big_ok = false;
	if (up) {
		small_ok = ping_ok(50, 56, small, sizeof(small));
		big_ok = ping_ok(50, 8000, big, sizeof(big));
	}
	kill(p.pid, SIGTERM);
	struct run_result r = harness_proc_finish(&p, 60);
	fprintf(stderr, "linux net: up after %.1f s; 56-byte pings: %s8000-byte pings: %s",
		r.wall_ms / 1000, small, big);
	if (!up) {
		harness_dump(&r);
		fail_msg("the kernel never got to waiting for its root device");
	}
	assert_output_contains(&r, out, "virtio_mmio.device=4K@0xc0001000:5");
	assert_output_contains(&r, out, "IP-Config: Got DHCP answer from 172.16.0.1");
	assert_output_contains(&r, out, "addr=172.16.0.2");
	if (!small_ok || !big_ok) {
		harness_dump(&r);
		fail_msg("pings lost: '%s' '%s'", small, big);
	}
	harness_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linux_dhcp_and_ping),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
