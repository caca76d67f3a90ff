/* The snapshot requests' bodies (api/schema_snapshot.c) through
 * api_route(): PUT /snapshot/create and PUT /snapshot/load with
 * Firecracker's fields, and every mistake a 400 naming the field. */
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

static struct api_request req;
static struct api_response resp;

static int route(const char *method, const char *path, const char *body)
{
	api_response_free(&resp);
	memset(&resp, 0, sizeof(resp));
	return api_route(method, path, body, body ? strlen(body) : 0, &req, &resp);
}

static void ok(const char *method, const char *path, const char *body)
{
	if (route(method, path, body) != 0)
		fail_msg("%s %s %s: %s", method, path, body, resp.body);
}

static void bad(const char *path, const char *body, const char *needle)
{
	if (route("PUT", path, body) != 1)
		fail_msg("PUT %s %s: accepted, expected a 400", path, body);
	assert_int_equal(resp.status, 400);
	if (strncmp(resp.body, "{\"fault_message\":", 17) || !strstr(resp.body, needle))
		fail_msg("PUT %s %s: '%s' lacks '%s'", path, body, resp.body, needle);
}

static void test_create(void **state)
{
	(void)state;
	ok("PUT", "/snapshot/create", "{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\"}");
	assert_int_equal(req.op, API_SNAPSHOT_CREATE);
	assert_string_equal(req.snap_create.snapshot_path, "/s");
	assert_string_equal(req.snap_create.mem_file_path, "/m");
	assert_false(req.snap_create.diff);
	ok("PUT", "/snapshot/create",
	   "{\"snapshot_type\":\"Diff\",\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\"}");
	assert_true(req.snap_create.diff);
	bad("/snapshot/create", "{\"snapshot_path\":\"/s\"}", "missing required field 'mem_file_path'");
	bad("/snapshot/create", "{\"mem_file_path\":\"/m\"}", "missing required field 'snapshot_path'");
	bad("/snapshot/create", "{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\",\"version\":\"1\"}",
	    "unknown field 'version'");
	bad("/snapshot/create", "{\"snapshot_path\":1,\"mem_file_path\":\"/m\"}",
	    "snapshot_path must be a string");
	bad("/snapshot/create", "{\"snapshot_path\":\"\",\"mem_file_path\":\"/m\"}",
	    "snapshot_path must not be empty");
	bad("/snapshot/create",
	    "{\"snapshot_type\":\"Incremental\",\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\"}",
	    "snapshot_type must be Full or Diff");
	bad("/snapshot/create", "{\"snapshot_path\":\"/x\",\"mem_file_path\":\"/x\"}",
	    "must be different files");
	/* Only PUT. */
	assert_int_equal(route("GET", "/snapshot/create", NULL), 1);
	assert_int_equal(resp.status, 400);
}

static void test_load(void **state)
{
	(void)state;
	ok("PUT", "/snapshot/load", "{\"snapshot_path\":\"/s\",\"mem_backend\":{\"backend_type\":"
	   "\"File\",\"backend_path\":\"/m\"},\"resume_vm\":true,\"clock_realtime\":true}");
	assert_int_equal(req.op, API_SNAPSHOT_LOAD);
	assert_string_equal(req.snap_load.snapshot_path, "/s");
	assert_string_equal(req.snap_load.mem_path, "/m");
	assert_true(req.snap_load.resume_vm && req.snap_load.clock_realtime);
	assert_false(req.snap_load.uffd || req.snap_load.track_dirty_pages);
	/* The older body. */
	ok("PUT", "/snapshot/load", "{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\","
	   "\"enable_diff_snapshots\":true}");
	assert_string_equal(req.snap_load.mem_path, "/m");
	assert_true(req.snap_load.track_dirty_pages);
	ok("PUT", "/snapshot/load", "{\"snapshot_path\":\"/s\",\"mem_backend\":{\"backend_type\":"
	   "\"Uffd\",\"backend_path\":\"/sock\"},\"track_dirty_pages\":true,"
	   "\"network_overrides\":[],\"vsock_override\":{\"uds_path\":\"/v\",\"guest_cid\":9}}");
	assert_true(req.snap_load.uffd && req.snap_load.track_dirty_pages);
	assert_string_equal(req.snap_load.mem_path, "/sock");
	assert_string_equal(req.snap_load.vsock_uds_path, "/v");
	assert_int_equal(req.snap_load.vsock_cid, 9);

	bad("/snapshot/load", "{\"snapshot_path\":\"/s\"}", "missing required field 'mem_backend'");
	bad("/snapshot/load", "{\"mem_file_path\":\"/m\"}", "missing required field 'snapshot_path'");
	bad("/snapshot/load", "{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\",\"mem_backend\":"
	    "{\"backend_type\":\"File\",\"backend_path\":\"/m\"}}", "not both");
	bad("/snapshot/load", "{\"snapshot_path\":\"/s\",\"mem_backend\":{\"backend_type\":\"File\"}}",
	    "missing required field 'mem_backend.backend_path'");
	bad("/snapshot/load", "{\"snapshot_path\":\"/s\",\"mem_backend\":{\"backend_type\":\"Disk\","
	    "\"backend_path\":\"/m\"}}", "backend_type must be File or Uffd");
	bad("/snapshot/load", "{\"snapshot_path\":\"/s\",\"mem_backend\":{\"backend_type\":\"File\","
	    "\"backend_path\":\"/m\",\"extra\":1}}", "unknown field 'mem_backend.extra'");
	bad("/snapshot/load", "{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\",\"resume_vm\":1}",
	    "resume_vm must be a boolean");
	ok("PUT", "/snapshot/load", "{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\","
	   "\"network_overrides\":[{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap1\"}]}");
	assert_int_equal(req.snap_load.nr_net_overrides, 1);
	assert_string_equal(req.snap_load.net_overrides[0].iface_id, "eth0");
	assert_string_equal(req.snap_load.net_overrides[0].host_dev_name, "tap1");
	bad("/snapshot/load", "{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\","
	    "\"network_overrides\":[{\"iface_id\":\"eth0\"}]}",
	    "missing required field 'network_overrides[].host_dev_name'");
	bad("/snapshot/load", "{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\","
	    "\"network_overrides\":[{\"iface_id\":\"eth0\",\"host_dev_name\":\"a-tap-name-far-too-long\"}]}",
	    "host_dev_name is longer than");
	bad("/snapshot/load", "{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\","
	    "\"vsock_override\":{\"guest_cid\":2,\"uds_path\":\"/v\"}}",
	    "guest_cid must be an integer between 3 and");
	bad("/snapshot/load", "{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\","
	    "\"vsock_override\":{}}", "missing required field 'vsock_override.uds_path'");
}

static int teardown(void **state)
{
	(void)state;
	api_response_free(&resp);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_load),
	};
	return cmocka_run_group_tests_name("snapshot_api", tests, NULL, teardown);
}
