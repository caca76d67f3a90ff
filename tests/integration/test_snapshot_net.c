/* A VM with a live virtio-net interface (the guest's net-reflect scenario:
 * driver up, RX buffers posted) is snapshotted and its monitor killed; a
 * new process loads it with network_overrides onto another TAP, and the
 * restored guest reflects frames sent on that TAP. The test runs in a
 * network namespace of its own (it unshares one at start: root only). */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "tests/integration/harness_api.h"
#include "tests/integration/harness_net.h"

#define ETH_TYPE_TEST 0x88b5
#define FRAMES 3

static const char *mote_bin, *guest_elf;
static char dir[64], sock_path[108];
static int pkt_fd = -1;

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/mote-snapnet-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/api.sock", dir);
	/* Our own network namespace: the TAPs and mote live there. */
	if (unshare(CLONE_NEWNET)) {
		perror("unshare(CLONE_NEWNET)");
		return -1;
	}
	if (harness_sh("ip link set lo up") || harness_tap_add("snapa", 1500) ||
	    harness_tap_add("snapb", 1500))
		return -1;
	pkt_fd = harness_packet_open("snapb", ETH_TYPE_TEST, 0);
	if (pkt_fd < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return harness_rm_rf(dir);
}

static void test_net_vm_restored_onto_another_tap_reflects(void **state)
{
	char st[128], mem[128], body[768], reply[8192];
	struct harness_proc p;

	(void)state;
	snprintf(st, sizeof(st), "%s/net.state", dir);
	snprintf(mem, sizeof(mem), "%s/net.mem", dir);
	char cmdline[64];
	snprintf(cmdline, sizeof(cmdline), "test=net-reflect frames=%d", FRAMES);
	char *const boot[] = { (char *)mote_bin, "--api-sock", sock_path, "--kernel",
			       (char *)guest_elf, "--net", "tap=snapa,id=net0", "--cmdline", cmdline,
			       NULL };
	harness_spawn_api(&p, boot, sock_path);
	if (!harness_proc_wait_for(&p, "net-reflect: ready", false, 30)) {
		kill(p.pid, SIGKILL);
		struct run_result r = harness_proc_finish(&p, 5);
		harness_dump(&r);
		fail_msg("the guest's net driver never came up");
	}
	struct run_result first = harness_snapshot_and_kill(&p, sock_path, st, mem);
	harness_free(&first);

	char *const fresh[] = { (char *)mote_bin, "--api-sock", sock_path, NULL };
	/* An interface the snapshot does not have. */
	harness_spawn_api(&p, fresh, sock_path);
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\","
		 "\"network_overrides\":[{\"iface_id\":\"eth9\",\"host_dev_name\":\"snapb\"}]}",
		 st, mem);
	assert_int_equal(harness_curl(sock_path, "PUT", "/snapshot/load", body, reply, sizeof(reply)),
			 400);
	assert_non_null(strstr(reply, "has no interface 'eth9'"));
	kill(p.pid, SIGTERM);
	struct run_result r0 = harness_proc_finish(&p, 10);
	harness_free(&r0);

	harness_spawn_api(&p, fresh, sock_path);
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\","
		 "\"resume_vm\":true,\"network_overrides\":[{\"iface_id\":\"net0\","
		 "\"host_dev_name\":\"snapb\"}]}", st, mem);
	assert_int_equal(harness_curl(sock_path, "PUT", "/snapshot/load", body, reply, sizeof(reply)),
			 204);
	assert_int_equal(harness_curl(sock_path, "GET", "/vm/config", NULL, reply, sizeof(reply)),
			 200);
	assert_non_null(strstr(reply, "\"host_dev_name\":\"snapb\""));
	/* The restored guest's driver, its RX buffers and the device carry
	 * on: frames sent on the new TAP come back reflected. */
	for (int i = 0; i < FRAMES; i++) {
		uint8_t f[64] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1,
				  ETH_TYPE_TEST >> 8, ETH_TYPE_TEST & 0xff };
		uint8_t back[256];
		for (int k = 14; k < 64; k++)
			f[k] = (uint8_t)(k * 7 + i);
		assert_int_equal(send(pkt_fd, f, sizeof(f), 0), (ssize_t)sizeof(f));
		ssize_t n = harness_packet_recv(pkt_fd, back, sizeof(back), 10000);
		if (n < 60) {
			kill(p.pid, SIGKILL);
			struct run_result r = harness_proc_finish(&p, 5);
			harness_dump(&r);
			fail_msg("frame %d: no reflection (%zd)", i, n);
		}
		/* Source and destination swapped, payload intact. */
		assert_memory_equal(back, f + 6, 6);
		assert_memory_equal(back + 6, f, 6);
		assert_memory_equal(back + 14, f + 14, 64 - 14);
	}
	struct run_result r = harness_proc_finish(&p, 30);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS net-reflect");
	harness_free(&r);
}

int main(void)
{
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_net_vm_restored_onto_another_tap_reflects),
	};
	return cmocka_run_group_tests_name("snapshot of a VM with virtio-net", tests, setup,
					   teardown);
}
