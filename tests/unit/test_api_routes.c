/* API routing and JSON validation: api_route() and api_parse_vm_config().
 * Each endpoint's body: a good one, an unknown field, a wrong type, a
 * missing required field, an out-of-range value; each error must be a 400
 * whose fault_message names the field. Also the connection engine
 * (api_conn_*) with a stub VMM: keep-alive, pipelining, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api.h"

struct fixture {
	struct api_request req;
	struct api_response resp;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	api_response_free(&f->resp);
	free(f);
	return 0;
}

static int route(struct fixture *f, const char *method, const char *path, const char *body)
{
	api_response_free(&f->resp);
	memset(&f->resp, 0, sizeof(f->resp));
	return api_route(method, path, body, body ? strlen(body) : 0, &f->req, &f->resp);
}

#define expect_ok(f, m, p, b)                                                              \
	do {                                                                               \
		if (route(f, m, p, b) != 0)                                                \
			fail_msg("%s %s %s: %s", m, p, b ? b : "", (f)->resp.body);         \
	} while (0)

/* A 400 whose message contains every needle (NULL-terminated). */
static void expect_400(struct fixture *f, const char *m, const char *p, const char *b, ...)
{
	va_list ap;
	const char *needle;

	if (route(f, m, p, b) != 1)
		fail_msg("%s %s %s: accepted, expected a 400", m, p, b ? b : "");
	assert_int_equal(f->resp.status, 400);
	assert_non_null(f->resp.body);
	if (strncmp(f->resp.body, "{\"fault_message\":", 17))
		fail_msg("not a fault_message body: %s", f->resp.body);
	va_start(ap, b);
	while ((needle = va_arg(ap, const char *)))
		if (!strstr(f->resp.body, needle))
			fail_msg("%s %s %s: message '%s' lacks '%s'", m, p, b ? b : "", f->resp.body,
				 needle);
	va_end(ap);
}

#define BAD(f, m, p, b, ...) expect_400(f, m, p, b, __VA_ARGS__, NULL)

static void test_paths_and_methods(void **state)
{
	struct fixture *f = *state;

	expect_ok(f, "GET", "/", NULL);
	assert_int_equal(f->req.op, API_GET_INSTANCE_INFO);
	expect_ok(f, "GET", "/machine-config", NULL);
	assert_int_equal(f->req.op, API_GET_MACHINE_CONFIG);
	expect_ok(f, "GET", "/vm/config", NULL);
	assert_int_equal(f->req.op, API_GET_VM_CONFIG);
	/* /version needs no VMM. */
	assert_int_equal(route(f, "GET", "/version", NULL), 1);
	assert_int_equal(f->resp.status, 200);
	assert_non_null(strstr(f->resp.body, "\"firecracker_version\""));

	BAD(f, "GET", "/foo", NULL, "Invalid request method and/or path: GET /foo");
	BAD(f, "DELETE", "/machine-config", NULL, "DELETE /machine-config");
	BAD(f, "PUT", "/vm", "{\"state\":\"Paused\"}", "PUT /vm");
	BAD(f, "GET", "/actions", NULL, "GET /actions");
	BAD(f, "PUT", "/drives/", "{}", "PUT /drives/");
	BAD(f, "PUT", "/drives/a/b", "{}", "PUT /drives/a/b");
	BAD(f, "GET", "/", "{}", "GET request cannot have a body");
}

static void test_bodies_must_be_json_objects(void **state)
{
	struct fixture *f = *state;

	BAD(f, "PUT", "/machine-config", NULL, "machine-config", "missing JSON body");
	BAD(f, "PUT", "/machine-config", "{\"vcpu_count\": 2,", "machine-config", "malformed JSON");
	BAD(f, "PUT", "/machine-config", "[1,2]", "machine-config", "JSON object", "an array");
	BAD(f, "PUT", "/machine-config", "{\"vcpu_count\":1,\"vcpu_count\":2,\"mem_size_mib\":64}",
	    "malformed JSON", "duplicate");
}

static void test_boot_source(void **state)
{
	struct fixture *f = *state;

	expect_ok(f, "PUT", "/boot-source",
		  "{\"kernel_image_path\":\"/k\",\"boot_args\":\"console=ttyS0\","
		  "\"initrd_path\":null}");
	assert_int_equal(f->req.op, API_PUT_BOOT_SOURCE);
	assert_string_equal(f->req.boot.kernel_path, "/k");
	assert_string_equal(f->req.boot.boot_args, "console=ttyS0");
	assert_string_equal(f->req.boot.initrd_path, "");
	BAD(f, "PUT", "/boot-source", "{\"kernel_image_path\":\"/k\",\"kernel\":1}", "boot-source",
	    "unknown field 'kernel'");
	BAD(f, "PUT", "/boot-source", "{\"kernel_image_path\":7}", "kernel_image_path",
	    "must be a string", "an integer");
	BAD(f, "PUT", "/boot-source", "{\"boot_args\":\"x\"}",
	    "missing required field 'kernel_image_path'");
	BAD(f, "PUT", "/boot-source", "{\"kernel_image_path\":\"\"}", "kernel_image_path",
	    "empty");
	/* boot_args longer than the command line can be. */
	char *big = malloc(API_CMDLINE_MAX + 64);
	strcpy(big, "{\"kernel_image_path\":\"/k\",\"boot_args\":\"");
	size_t n = strlen(big);
	memset(big + n, 'a', API_CMDLINE_MAX);
	strcpy(big + n + API_CMDLINE_MAX, "\"}");
	BAD(f, "PUT", "/boot-source", big, "boot_args", "at most 4095");
	free(big);
}

static void test_machine_config(void **state)
{
	struct fixture *f = *state;

	expect_ok(f, "PUT", "/machine-config", "{\"vcpu_count\":2,\"mem_size_mib\":256,"
		  "\"smt\":false,\"track_dirty_pages\":false,\"huge_pages\":\"None\"}");
	assert_int_equal(f->req.op, API_PUT_MACHINE_CONFIG);
	assert_true(f->req.machine.has_vcpu_count && f->req.machine.has_mem_size);
	assert_int_equal(f->req.machine.vcpu_count, 2);
	assert_int_equal(f->req.machine.mem_size_mib, 256);
	assert_true(f->req.machine.has_cpu_template); /* PUT resets it */
	assert_int_equal(f->req.machine.cpu_template, CPU_TEMPLATE_HOST);

	expect_ok(f, "PUT", "/machine-config",
		  "{\"vcpu_count\":1,\"mem_size_mib\":64,\"track_dirty_pages\":true}");
	assert_true(f->req.machine.has_track_dirty_pages && f->req.machine.track_dirty_pages);
	expect_ok(f, "PATCH", "/machine-config", "{\"cpu_template\":\"Minimal\"}");
	assert_int_equal(f->req.op, API_PATCH_MACHINE_CONFIG);
	assert_false(f->req.machine.has_vcpu_count);
	assert_false(f->req.machine.has_mem_size);
	assert_int_equal(f->req.machine.cpu_template, CPU_TEMPLATE_MINIMAL);
	expect_ok(f, "PATCH", "/machine-config", "{}");
	assert_false(f->req.machine.has_cpu_template);

	BAD(f, "PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":64,\"foo\":1}",
	    "machine-config: unknown field 'foo'");
	BAD(f, "PUT", "/machine-config", "{\"vcpu_count\":\"2\",\"mem_size_mib\":64}",
	    "machine-config: vcpu_count must be an integer, got a string");
	BAD(f, "PUT", "/machine-config", "{\"vcpu_count\":1.5,\"mem_size_mib\":64}",
	    "vcpu_count must be an integer, got a real number");
	BAD(f, "PUT", "/machine-config", "{\"mem_size_mib\":64}",
	    "machine-config: missing required field 'vcpu_count'");
	BAD(f, "PUT", "/machine-config", "{\"vcpu_count\":2}",
	    "missing required field 'mem_size_mib'");
	BAD(f, "PUT", "/machine-config", "{\"vcpu_count\":0,\"mem_size_mib\":64}",
	    "machine-config: vcpu_count must be between 1 and 32, got 0");
	BAD(f, "PUT", "/machine-config", "{\"vcpu_count\":33,\"mem_size_mib\":64}",
	    "machine-config: vcpu_count must be between 1 and 32, got 33");
	BAD(f, "PUT", "/machine-config", "{\"vcpu_count\":-1,\"mem_size_mib\":64}",
	    "vcpu_count must be between 1 and 32, got -1");
	BAD(f, "PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":0}",
	    "machine-config: mem_size_mib must be between 2 and 1048576, got 0");
	BAD(f, "PATCH", "/machine-config", "{\"mem_size_mib\":true}",
	    "mem_size_mib must be an integer, got a boolean");
	BAD(f, "PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":64,\"smt\":true}",
	    "smt=true is not supported");
	BAD(f, "PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":64,\"smt\":1}",
	    "smt must be a boolean");
	BAD(f, "PUT", "/machine-config",
	    "{\"vcpu_count\":1,\"mem_size_mib\":64,\"track_dirty_pages\":1}",
	    "track_dirty_pages must be a boolean");
	BAD(f, "PUT", "/machine-config",
	    "{\"vcpu_count\":1,\"mem_size_mib\":64,\"cpu_template\":\"T2\"}",
	    "cpu_template 'T2' is not supported");
	BAD(f, "PUT", "/machine-config",
	    "{\"vcpu_count\":1,\"mem_size_mib\":64,\"cpu_template\":\"Bogus\"}",
	    "cpu_template must be one of None, Minimal", "got 'Bogus'");
	BAD(f, "PUT", "/machine-config",
	    "{\"vcpu_count\":1,\"mem_size_mib\":64,\"huge_pages\":\"2M\"}",
	    "huge_pages '2M' is not supported");
}

static void test_drives(void **state)
{
	struct fixture *f = *state;

	expect_ok(f, "PUT", "/drives/rootfs",
		  "{\"drive_id\":\"rootfs\",\"path_on_host\":\"/img\",\"is_root_device\":true,"
		  "\"is_read_only\":true,\"cache_type\":\"Writeback\",\"io_engine\":\"Sync\","
		  "\"partuuid\":null,\"socket\":null,\"rate_limiter\":{\"bandwidth\":"
		  "{\"size\":1048576,\"one_time_burst\":4096,\"refill_time\":100},\"ops\":null}}");
	assert_int_equal(f->req.op, API_PUT_DRIVE);
	assert_string_equal(f->req.path_id, "rootfs");
	assert_string_equal(f->req.drive.blk.id, "rootfs");
	assert_string_equal(f->req.drive.blk.path, "/img");
	assert_true(f->req.drive.blk.is_root);
	assert_true(f->req.drive.blk.read_only);
	assert_int_equal(f->req.drive.cache_type, API_CACHE_WRITEBACK);
	assert_int_equal(f->req.drive.blk.bandwidth.size, 1048576);
	assert_int_equal(f->req.drive.blk.bandwidth.one_time_burst, 4096);
	assert_int_equal(f->req.drive.blk.bandwidth.refill_time_ms, 100);
	assert_int_equal(f->req.drive.blk.ops.size, 0);

	BAD(f, "PUT", "/drives/d1",
	    "{\"drive_id\":\"d1\",\"path_on_host\":\"/x\",\"is_root_device\":false,\"x\":1}",
	    "drives: unknown field 'x'");
	BAD(f, "PUT", "/drives/d1",
	    "{\"drive_id\":\"d1\",\"path_on_host\":\"/x\",\"is_root_device\":\"no\"}",
	    "is_root_device must be a boolean, got a string");
	BAD(f, "PUT", "/drives/d1", "{\"drive_id\":\"d1\",\"path_on_host\":\"/x\"}",
	    "missing required field 'is_root_device'");
	BAD(f, "PUT", "/drives/d1", "{\"drive_id\":\"d1\",\"is_root_device\":false}",
	    "missing required field 'path_on_host'");
	BAD(f, "PUT", "/drives/d1",
	    "{\"drive_id\":\"d2\",\"path_on_host\":\"/x\",\"is_root_device\":false}",
	    "drive_id 'd2' in the body does not match 'd1' in the path");
	BAD(f, "PUT", "/drives/bad-id",
	    "{\"drive_id\":\"bad-id\",\"path_on_host\":\"/x\",\"is_root_device\":false}",
	    "drive_id 'bad-id' may contain only letters, digits and '_'");
	BAD(f, "PUT", "/drives/abcdefghijklmnopqrstu",
	    "{\"drive_id\":\"abcdefghijklmnopqrstu\",\"path_on_host\":\"/x\","
	    "\"is_root_device\":false}",
	    "drive_id is 21 bytes long, at most 20 are allowed");
	BAD(f, "PUT", "/drives/d1",
	    "{\"drive_id\":\"d1\",\"path_on_host\":\"/x\",\"is_root_device\":false,"
	    "\"partuuid\":\"abc\"}",
	    "partuuid is not supported");
	BAD(f, "PUT", "/drives/d1",
	    "{\"drive_id\":\"d1\",\"path_on_host\":\"/x\",\"is_root_device\":false,"
	    "\"cache_type\":\"Fast\"}",
	    "cache_type must be one of Unsafe, Writeback, got 'Fast'");
	BAD(f, "PUT", "/drives/d1",
	    "{\"drive_id\":\"d1\",\"path_on_host\":\"/x\",\"is_root_device\":false,"
	    "\"rate_limiter\":{\"ops\":{\"size\":10}}}",
	    "missing required field 'rate_limiter.ops.refill_time'");
	BAD(f, "PUT", "/drives/d1",
	    "{\"drive_id\":\"d1\",\"path_on_host\":\"/x\",\"is_root_device\":false,"
	    "\"rate_limiter\":{\"ops\":{\"size\":10,\"refill_time\":0}}}",
	    "rate_limiter.ops.refill_time must be above 0 when size is set");
	BAD(f, "PUT", "/drives/d1",
	    "{\"drive_id\":\"d1\",\"path_on_host\":\"/x\",\"is_root_device\":false,"
	    "\"rate_limiter\":{\"bandwidth\":{\"size\":-5,\"refill_time\":10}}}",
	    "rate_limiter.bandwidth.size must be between 0 and");
	BAD(f, "PUT", "/drives/d1",
	    "{\"drive_id\":\"d1\",\"path_on_host\":\"/x\",\"is_root_device\":false,"
	    "\"rate_limiter\":{\"bandwidth\":{\"size\":5,\"refill_time\":10,\"burst\":1}}}",
	    "unknown field 'rate_limiter.bandwidth.burst'");

	expect_ok(f, "PATCH", "/drives/rootfs", "{\"drive_id\":\"rootfs\"}");
	assert_int_equal(f->req.op, API_PATCH_DRIVE);
	assert_false(f->req.drive.has_path);
	assert_false(f->req.drive.has_rate_limiter);
	expect_ok(f, "PATCH", "/drives/rootfs", "{\"drive_id\":\"rootfs\",\"path_on_host\":\"/n\"}");
	assert_true(f->req.drive.has_path);
	BAD(f, "PATCH", "/drives/rootfs", "{\"drive_id\":\"rootfs\",\"is_read_only\":true}",
	    "unknown field 'is_read_only'");
}

/* The body becomes a typed request; whether the TAP exists and whether
 * the VM runs is the controller's business. */
static void test_network_interfaces_route(void **state)
{
	struct fixture *f = *state;
	const struct net_config *n = &f->req.net.net;

	expect_ok(f, "PUT", "/network-interfaces/eth0",
		  "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"guest_mac\":"
		  "\"06:00:AC:10:00:02\",\"mtu\":9000,\"rx_rate_limiter\":{\"bandwidth\":"
		  "{\"size\":1000,\"refill_time\":100}}}");
	assert_int_equal(f->req.op, API_PUT_NET);
	assert_string_equal(n->id, "eth0");
	assert_string_equal(n->tap, "tap0");
	assert_true(n->has_mac);
	assert_memory_equal(n->mac, "\x06\x00\xac\x10\x00\x02", 6);
	assert_int_equal(n->mtu, 9000);
	assert_int_equal(n->rx_bw.size, 1000);
	assert_int_equal(n->rx_bw.refill_time_ms, 100);
	assert_int_equal(n->tx_bw.size, 0);
	assert_true(f->req.net.has_rx_rate_limiter);
	assert_false(f->req.net.has_tx_rate_limiter);

	expect_ok(f, "PUT", "/network-interfaces/eth0",
		  "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\"}");
	assert_false(n->has_mac);
	assert_int_equal(n->mtu, 0);

	expect_ok(f, "PATCH", "/network-interfaces/eth0",
		  "{\"iface_id\":\"eth0\",\"tx_rate_limiter\":{\"ops\":{\"size\":10,"
		  "\"refill_time\":1000}}}");
	assert_int_equal(f->req.op, API_PATCH_NET);
	assert_false(f->req.net.has_rx_rate_limiter);
	assert_true(f->req.net.has_tx_rate_limiter);
	assert_int_equal(n->tx_ops.size, 10);
	BAD(f, "PATCH", "/network-interfaces/eth0",
	    "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap1\"}", "unknown field 'host_dev_name'");
	BAD(f, "PUT", "/network-interfaces/eth0",
	    "{\"iface_id\":\"eth0\",\"host_dev_name\":\"a-tap-name-too-long\"}",
	    "host_dev_name");
}

static void test_network_refused_vsock_validated(void **state)
{
	struct fixture *f = *state;

	BAD(f, "PUT", "/network-interfaces/eth0", "{\"iface_id\":\"eth0\"}",
	    "missing required field 'host_dev_name'");
	BAD(f, "PUT", "/network-interfaces/eth0",
	    "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"guest_mac\":\"06:00:ac\"}",
	    "guest_mac '06:00:ac' is not a unicast MAC address");
	BAD(f, "PUT", "/network-interfaces/eth0",
	    "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"guest_mac\":\"07:00:ac:10:00:02\"}",
	    "not a unicast MAC address");
	BAD(f, "PUT", "/network-interfaces/eth0",
	    "{\"iface_id\":\"eth1\",\"host_dev_name\":\"tap0\"}", "does not match 'eth0'");
	BAD(f, "PUT", "/network-interfaces/eth0",
	    "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"mtu\":20}",
	    "mtu must be between 68 and 65535, got 20");
	BAD(f, "PUT", "/network-interfaces/eth0",
	    "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"queues\":2}",
	    "unknown field 'queues'");

	expect_ok(f, "PUT", "/vsock", "{\"guest_cid\":3,\"uds_path\":\"/tmp/v.sock\"}");
	assert_int_equal(f->req.op, API_PUT_VSOCK);
	assert_int_equal(f->req.vsock.cfg.guest_cid, 3);
	assert_string_equal(f->req.vsock.cfg.uds_path, "/tmp/v.sock");
	assert_string_equal(f->req.vsock.id, "");
	expect_ok(f, "PUT", "/vsock",
		  "{\"vsock_id\":\"vs0\",\"guest_cid\":4294967294,\"uds_path\":\"/v\"}");
	assert_int_equal(f->req.vsock.cfg.guest_cid, 4294967294ULL);
	assert_string_equal(f->req.vsock.id, "vs0");
	BAD(f, "PATCH", "/vsock", "{\"guest_cid\":3,\"uds_path\":\"/v\"}", "vsock");
	BAD(f, "PUT", "/vsock", "{\"guest_cid\":2,\"uds_path\":\"/tmp/v.sock\"}",
	    "guest_cid must be between 3 and");
	BAD(f, "PUT", "/vsock", "{\"guest_cid\":4294967295,\"uds_path\":\"/tmp/v.sock\"}",
	    "guest_cid must be between 3 and 4294967294");
	BAD(f, "PUT", "/vsock", "{\"guest_cid\":3,\"uds_path\":\"\"}", "must not be empty");
	BAD(f, "PUT", "/vsock",
	    "{\"guest_cid\":3,\"uds_path\":\"/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
	    "uds_path is longer than 96 bytes");
	BAD(f, "PUT", "/vsock", "{\"guest_cid\":3}", "missing required field 'uds_path'");
	BAD(f, "PUT", "/vsock", "{\"guest_cid\":3,\"uds_path\":\"/x\",\"port\":1}",
	    "unknown field 'port'");
}

static void test_actions_and_vm_state(void **state)
{
	struct fixture *f = *state;

	expect_ok(f, "PUT", "/actions", "{\"action_type\":\"InstanceStart\"}");
	assert_int_equal(f->req.op, API_INSTANCE_START);
	expect_ok(f, "PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}");
	assert_int_equal(f->req.op, API_SEND_CTRL_ALT_DEL);
	expect_ok(f, "PUT", "/actions", "{\"action_type\":\"FlushMetrics\"}");
	assert_int_equal(f->req.op, API_FLUSH_METRICS);
	BAD(f, "PUT", "/actions", "{\"action_type\":\"Reboot\"}",
	    "actions: action_type must be one of InstanceStart, SendCtrlAltDel, FlushMetrics, got "
	    "'Reboot'");
	BAD(f, "PUT", "/actions", "{}", "missing required field 'action_type'");
	BAD(f, "PUT", "/actions", "{\"action_type\":1}", "action_type must be a string");
	BAD(f, "PUT", "/actions", "{\"action_type\":\"InstanceStart\",\"payload\":{}}",
	    "unknown field 'payload'");

	expect_ok(f, "PATCH", "/vm", "{\"state\":\"Paused\"}");
	assert_int_equal(f->req.op, API_PAUSE);
	expect_ok(f, "PATCH", "/vm", "{\"state\":\"Resumed\"}");
	assert_int_equal(f->req.op, API_RESUME);
	BAD(f, "PATCH", "/vm", "{\"state\":\"paused\"}", "vm: state must be one of Paused, Resumed");
	BAD(f, "PATCH", "/vm", "{\"state\":null}", "vm: state must be a string, got null");
	BAD(f, "PATCH", "/vm", "{}", "vm: missing required field 'state'");
}

static void test_logger_and_metrics(void **state)
{
	struct fixture *f = *state;

	expect_ok(f, "PUT", "/logger", "{\"log_path\":\"/tmp/l\",\"level\":\"warning\","
		  "\"show_level\":true,\"show_log_origin\":false}");
	assert_int_equal(f->req.op, API_PUT_LOGGER);
	assert_true(f->req.logger.has_level);
	assert_int_equal(f->req.logger.level, LOG_WARN);
	assert_false(f->req.logger.off);
	assert_true(f->req.logger.show_level);
	assert_string_equal(f->req.logger.log_path, "/tmp/l");
	expect_ok(f, "PUT", "/logger", "{\"level\":\"Off\"}");
	assert_true(f->req.logger.off);
	BAD(f, "PUT", "/logger", "{\"level\":\"Loud\"}", "logger: level must be one of Error");
	BAD(f, "PUT", "/logger", "{\"module\":\"api\"}", "logger: module is not supported");
	BAD(f, "PUT", "/logger", "{\"show_level\":\"yes\"}", "show_level must be a boolean");
	BAD(f, "PUT", "/logger", "{\"colour\":true}", "unknown field 'colour'");

	expect_ok(f, "PUT", "/metrics", "{\"metrics_path\":\"/tmp/m\"}");
	assert_string_equal(f->req.metrics_path, "/tmp/m");
	BAD(f, "PUT", "/metrics", "{}", "metrics: missing required field 'metrics_path'");
	BAD(f, "PUT", "/metrics", "{\"metrics_path\":1}", "metrics_path must be a string");
	BAD(f, "PUT", "/metrics", "{\"metrics_path\":\"/m\",\"period\":5}", "unknown field 'period'");
}

static int parse_config(const char *json, struct api_request **reqs, size_t *nr, char *err)
{
	return api_parse_vm_config(json, strlen(json), reqs, nr, err, 512);
}

static void test_config_file(void **state)
{
	(void)state;
	struct api_request *reqs;
	size_t nr;
	char err[512];
	/* What GET /vm/config writes, for two drives and a logger. */
	const char *good =
		"{\"balloon\":null,\"drives\":[{\"drive_id\":\"rootfs\",\"partuuid\":null,"
		"\"is_root_device\":true,\"cache_type\":\"Unsafe\",\"is_read_only\":false,"
		"\"path_on_host\":\"/r\",\"rate_limiter\":null,\"io_engine\":\"Async\","
		"\"socket\":null},{\"drive_id\":\"data\",\"is_root_device\":false,"
		"\"path_on_host\":\"/d\"}],\"boot-source\":{\"kernel_image_path\":\"/k\","
		"\"initrd_path\":null,\"boot_args\":\"test=hello\"},\"cpu-config\":null,"
		"\"logger\":{\"level\":\"Debug\",\"show_level\":true,\"show_log_origin\":false},"
		"\"machine-config\":{\"vcpu_count\":2,\"mem_size_mib\":64,\"smt\":false,"
		"\"track_dirty_pages\":false,\"huge_pages\":\"None\"},\"metrics\":null,"
		"\"mmds-config\":null,\"network-interfaces\":[],\"vsock\":null,\"entropy\":null}";

	if (parse_config(good, &reqs, &nr, err))
		fail_msg("%s", err);
	assert_int_equal(nr, 5);
	assert_int_equal(reqs[0].op, API_PUT_LOGGER);
	assert_int_equal(reqs[1].op, API_PUT_MACHINE_CONFIG);
	assert_int_equal(reqs[1].machine.vcpu_count, 2);
	assert_int_equal(reqs[2].op, API_PUT_BOOT_SOURCE);
	assert_string_equal(reqs[2].boot.boot_args, "test=hello");
	assert_int_equal(reqs[3].op, API_PUT_DRIVE);
	assert_string_equal(reqs[3].path_id, "rootfs");
	assert_int_equal(reqs[4].op, API_PUT_DRIVE);
	assert_string_equal(reqs[4].drive.blk.id, "data");
	free(reqs);

	assert_int_equal(parse_config("{\"boot-source\":{\"kernel_image_path\":\"/k\"},"
				      "\"extra\":1}", &reqs, &nr, err), -1);
	assert_non_null(strstr(err, "unknown field 'extra'"));
	assert_int_equal(parse_config("{\"machine-config\":{\"vcpu_count\":1,"
				      "\"mem_size_mib\":64}}", &reqs, &nr, err), -1);
	assert_non_null(strstr(err, "missing required field 'boot-source'"));
	assert_int_equal(parse_config("{\"boot-source\":{\"kernel_image_path\":\"/k\"},"
				      "\"machine-config\":{\"vcpu_count\":33,\"mem_size_mib\":64}}",
				      &reqs, &nr, err), -1);
	assert_non_null(strstr(err, "machine-config: vcpu_count must be between 1 and 32, got 33"));
	assert_int_equal(parse_config("{\"boot-source\":{\"kernel_image_path\":\"/k\"},"
				      "\"drives\":[{\"drive_id\":\"a\"}]}", &reqs, &nr, err), -1);
	assert_non_null(strstr(err, "drives[0]: missing required field"));
	assert_int_equal(parse_config("{\"boot-source\":{\"kernel_image_path\":\"/k\"},"
				      "\"balloon\":{\"amount_mib\":1}}", &reqs, &nr, err), -1);
	assert_non_null(strstr(err, "balloon is not supported"));
	assert_int_equal(parse_config("{\"boot-source\":{\"kernel_image_path\":\"/k\"},"
				      "\"vsock\":{\"guest_cid\":3,\"uds_path\":\"/v\"}}", &reqs, &nr,
				      err), 0);
	assert_int_equal(nr, 2);
	assert_int_equal(reqs[1].op, API_PUT_VSOCK);
	assert_string_equal(reqs[1].vsock.cfg.uds_path, "/v");
	free(reqs);
	assert_int_equal(parse_config("{\"boot-source\":{\"kernel_image_path\":\"/k\"},"
				      "\"vsock\":{\"guest_cid\":1,\"uds_path\":\"/v\"}}", &reqs, &nr,
				      err), -1);
	assert_non_null(strstr(err, "vsock: guest_cid must be between 3"));
	assert_int_equal(parse_config("{\"boot-source\":{\"kernel_image_path\":\"/k\"},"
				      "\"network-interfaces\":[{\"iface_id\":\"eth0\","
				      "\"host_dev_name\":\"tap0\"},{\"iface_id\":\"eth1\","
				      "\"host_dev_name\":\"tap1\",\"guest_mac\":\"06:00:00:00:00:01\"}]}",
				      &reqs, &nr, err), 0);
	assert_int_equal(nr, 3);
	assert_int_equal(reqs[1].op, API_PUT_NET);
	assert_string_equal(reqs[2].net.net.tap, "tap1");
	assert_true(reqs[2].net.net.has_mac);
	free(reqs);
	assert_int_equal(parse_config("{\"boot-source\":{\"kernel_image_path\":\"/k\"},"
				      "\"network-interfaces\":[{\"iface_id\":\"eth0\"}]}",
				      &reqs, &nr, err), -1);
	assert_non_null(strstr(err, "network-interfaces[0]: missing required field 'host_dev_name'"));
	assert_int_equal(parse_config("nope", &reqs, &nr, err), -1);
	assert_non_null(strstr(err, "malformed JSON"));
}

/* ---- the connection engine, with a stub VMM -------------------------------- */

static unsigned stub_calls;

static void stub_handler(void *opaque, const struct api_request *req, struct api_response *resp)
{
	(void)opaque;
	stub_calls++;
	if (req->op == API_GET_INSTANCE_INFO)
		api_response_body(resp, 200, strdup("{\"state\":\"Not started\"}"));
	else
		api_response_body(resp, 204, NULL);
}

static unsigned count(const char *hay, size_t len, const char *needle)
{
	unsigned n = 0;
	size_t nl = strlen(needle);

	for (size_t i = 0; i + nl <= len; i++)
		if (!memcmp(hay + i, needle, nl))
			n++;
	return n;
}

static void test_conn_keep_alive_and_pipelining(void **state)
{
	(void)state;
	struct api_conn *c = api_conn_new(API_DEFAULT_MAX_PAYLOAD, stub_handler, NULL);
	const char *reqs = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
			   "PUT /machine-config HTTP/1.1\r\nContent-Length: 34\r\n\r\n"
			   "{\"vcpu_count\":1,\"mem_size_mib\":64}"
			   "GET /nope HTTP/1.1\r\n\r\n";
	size_t len;

	stub_calls = 0;
	/* Byte by byte: the parser keeps its place between reads. */
	for (size_t i = 0; i < strlen(reqs); i++)
		if (api_conn_feed(c, reqs + i, 1))
			fail_msg("closed at byte %zu: %s", i, api_conn_output(c, &len));
	const char *out = api_conn_output(c, &len);
	assert_int_equal(stub_calls, 2);
	assert_int_equal(count(out, len, "HTTP/1.1 200 OK"), 1);
	assert_int_equal(count(out, len, "HTTP/1.1 204 No Content"), 1);
	assert_int_equal(count(out, len, "HTTP/1.1 400 Bad Request"), 1);
	assert_int_equal(count(out, len, "Connection: keep-alive"), 3);
	assert_true(count(out, len, "Invalid request method and/or path: GET /nope") == 1);
	api_conn_consume(c, len);
	api_conn_output(c, &len);
	assert_int_equal(len, 0);
	api_conn_free(c);
}

static void test_conn_limits(void **state)
{
	(void)state;
	struct api_conn *c = api_conn_new(100, stub_handler, NULL);
	const char *big = "PUT /machine-config HTTP/1.1\r\nContent-Length: 101\r\n\r\n";
	size_t len;

	assert_int_equal(api_conn_feed(c, big, strlen(big)), -1);
	const char *out = api_conn_output(c, &len);
	assert_int_equal(count(out, len, "HTTP/1.1 400"), 1);
	assert_int_equal(count(out, len, "larger than the limit of 100"), 1);
	assert_int_equal(count(out, len, "Connection: close"), 1);
	api_conn_free(c);

	c = api_conn_new(100, stub_handler, NULL);
	assert_int_equal(api_conn_feed(c, "BLAH\r\n\r\n", 8), -1);
	out = api_conn_output(c, &len);
	assert_int_equal(count(out, len, "Malformed HTTP request"), 1);
	api_conn_free(c);

	c = api_conn_new(100, stub_handler, NULL);
	const char *chunked = "PUT /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
	assert_int_equal(api_conn_feed(c, chunked, strlen(chunked)), -1);
	out = api_conn_output(c, &len);
	assert_int_equal(count(out, len, "Transfer-Encoding is not supported"), 1);
	api_conn_free(c);

	/* Connection: close is honoured after the answer. */
	c = api_conn_new(100, stub_handler, NULL);
	const char *cl = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
	assert_int_equal(api_conn_feed(c, cl, strlen(cl)), -1);
	out = api_conn_output(c, &len);
	assert_int_equal(count(out, len, "HTTP/1.1 200 OK"), 1);
	assert_int_equal(count(out, len, "Connection: close"), 1);
	api_conn_free(c);

	/* Expect: 100-continue gets its interim answer. */
	c = api_conn_new(100, stub_handler, NULL);
	const char *ex = "PUT /metrics HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 20\r\n\r\n";
	assert_int_equal(api_conn_feed(c, ex, strlen(ex)), 0);
	out = api_conn_output(c, &len);
	assert_int_equal(count(out, len, "HTTP/1.1 100 Continue"), 1);
	api_conn_free(c);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_paths_and_methods),
		T(test_bodies_must_be_json_objects),
		T(test_boot_source),
		T(test_machine_config),
		T(test_drives),
		T(test_network_interfaces_route),
		T(test_network_refused_vsock_validated),
		T(test_actions_and_vm_state),
		T(test_logger_and_metrics),
		T(test_config_file),
		T(test_conn_keep_alive_and_pipelining),
		T(test_conn_limits),
	};

	return cmocka_run_group_tests_name("api_routes", tests, NULL, NULL);
}
