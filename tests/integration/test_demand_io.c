/* I/O in the demand metrics (GET /demand "io"): per device ops, bytes and
 * the time its queue waited on its rate limiter (throttled_ns). A guest
 * writes two 3 MiB drives, the second limited to 1 MiB/s (a 1 MiB bucket
 * refilled in 1 s): that drive's queue waits about 2 s and reports it,
 * the unlimited one reports 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>
#include <jansson.h>

#include "tests/integration/harness_api.h"

#define MOTE(...) ((char *const[]){ (char *)mote_bin, __VA_ARGS__, NULL })
#define DRIVE_BYTES (3LL << 20)

static const char *mote_bin;
static const char *guest_elf;
static char tmp_dir[64];

static double num(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_number(v))
		fail_msg("io.%s is not a number", key);
	return json_number_value(v);
}

static json_t *io_entry(json_t *d, const char *id)
{
	json_t *io = json_object_get(d, "io"), *e;
	size_t i;

	json_array_foreach(io, i, e)
		if (!strcmp(json_string_value(json_object_get(e, "id")) ?: "", id))
			return e;
	fail_msg("no io entry for drive %s", id);
	return NULL;
}

static void test_rate_limited_drive_reports_throttled_time(void **state)
{
	char path[2][80], arg[2][256], sock[128];
	struct harness_proc p;
	json_t *last = NULL;

	(void)state;
	for (int i = 0; i < 2; i++) {
		snprintf(path[i], sizeof(path[i]), "%s/d%d.img", tmp_dir, i);
		int fd = open(path[i], O_RDWR | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, DRIVE_BYTES), 0);
		close(fd);
		snprintf(arg[i], sizeof(arg[i]), "path=%s,id=%s%s", path[i], i ? "limited" : "free",
			 i ? ",bw=1048576" : "");
	}
	snprintf(sock, sizeof(sock), "%s/io.sock", tmp_dir);
	harness_spawn_api(&p, MOTE("--api-sock", sock, "--kernel", (char *)guest_elf, "--drive",
				   arg[0], "--drive", arg[1], "--cmdline",
				   "test=blk-write seed=5 blkmode=irq", "--demand", "period-ms=100"),
			  sock);
	double t0 = harness_now_ms();
	/* Keep the last answer before the guest is done and mote exits. */
	while (harness_proc_alive(&p) && harness_now_ms() - t0 < 60e3) {
		char *body;
		json_error_t e;
		if (harness_http(sock, "GET", "/demand", NULL, &body) == 200) {
			json_t *o = json_loads(body, 0, &e);
			if (o) {
				json_decref(last);
				last = o;
			}
		}
		free(body);
		harness_proc_pump(&p, 100);
	}
	double wall_ms = harness_now_ms() - t0;
	struct run_result r = harness_proc_finish(&p, 30);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "TEST PASS blk-write");
	harness_free(&r);
	assert_non_null(last);
	json_t *fr = io_entry(last, "free"), *lim = io_entry(last, "limited");
	print_message("unlimited drive: %g B written, throttled %g ms; 1 MiB/s drive: %g B written, "
		      "throttled %g ms in %g events (run %.0f ms)\n",
		      num(fr, "write_bytes"), num(fr, "throttled_ns") / 1e6, num(lim, "write_bytes"),
		      num(lim, "throttled_ns") / 1e6, num(lim, "rate_limited_events"), wall_ms);
	assert_true(num(fr, "write_bytes") >= DRIVE_BYTES);
	assert_true(num(fr, "throttled_ns") == 0);
	assert_true(num(fr, "rate_limited_events") == 0);
	assert_true(num(lim, "rate_limited_events") > 0);
	/* 2 MiB beyond the bucket at 1 MiB/s: ~2 s held, less whatever ran
	 * after the last answer; never more than the run. */
	assert_true(num(lim, "throttled_ns") > 1.0e9);
	assert_true(num(lim, "throttled_ns") < wall_ms * 1e6);
	json_decref(last);
}

static int group_setup(void **state)
{
	(void)state;
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/mote-demand-io-XXXXXX");
	return mkdtemp(tmp_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	return harness_rm_rf(tmp_dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rate_limited_drive_reports_throttled_time),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
