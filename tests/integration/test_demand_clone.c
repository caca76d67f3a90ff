/* The working set of a restored clone (metrics/, --demand wss=dirty-log).
 * A clone's guest RAM is the snapshot's memory file mapped MAP_PRIVATE:
 * pages it wrote are its only copy, so mote zaps only the pages still
 * backed by the file and asks KVM's dirty log about the others.
 *   - a clone that writes 32 MiB and reads 16 MiB of 256 every pass reads
 *     48 MiB of working set (+-10 %), both methods at work, and the guest
 *     finds every page it wrote intact (it checks each pass: bad=0);
 *   - without wss=dirty-log a clone says why it has no working set;
 *   - a clone restored with track_dirty_pages uses that log for its
 *     working set, and its Diff snapshot still holds every page it wrote
 *     (the two readers of KVM's log share it): base + diff merges to the
 *     full snapshot byte for byte, and the merged snapshot resumes with
 *     the guest's data intact. */
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>
#include <jansson.h>

#include "tests/integration/harness_api.h"

#define MIB (1024.0 * 1024.0)
#define MOTE(...) ((char *const[]){ (char *)mote_bin, __VA_ARGS__, NULL })

static const char *mote_bin;
static const char *guest_elf;
static char tmp_dir[64];

static char *path_in_tmp(const char *name)
{
	static char paths[16][128];
	static int next;
	char *p = paths[next++ % 16];

	snprintf(p, 128, "%s/%s", tmp_dir, name);
	return p;
}

static json_t *get_demand(const char *sock)
{
	char *body;
	int st = harness_http(sock, "GET", "/demand", NULL, &body);
	json_error_t e;
	json_t *o = json_loads(body, 0, &e);

	if (st != 200 || !o)
		fail_msg("GET /demand: %d %s", st, body);
	free(body);
	return o;
}

static json_t *memory_of(json_t *d)
{
	json_t *m = json_object_get(d, "memory");

	assert_non_null(m);
	return m;
}

static double mnum(json_t *d, const char *key)
{
	json_t *v = json_object_get(memory_of(d), key);

	if (!json_is_number(v))
		fail_msg("memory.%s is not a number in the /demand answer", key);
	return json_number_value(v);
}

static const char *method_of(json_t *d)
{
	const char *s = json_string_value(json_object_get(memory_of(d), "working_set_method"));

	assert_non_null(s);
	return s;
}

/* Boots the touch guest, lets it run a second, snapshots it and kills it. */
static void make_base(const char *cmdline, const char *mem_mib, const char *state,
		      const char *mem)
{
	struct harness_proc p;
	char *sock = path_in_tmp("base.sock");

	harness_spawn_api(&p, MOTE("--api-sock", sock, "--kernel", (char *)guest_elf, "--mem-mib",
				   (char *)mem_mib, "--cmdline", (char *)cmdline),
			  sock);
	if (!harness_proc_wait_for(&p, "touch: running", false, 20)) {
		struct run_result r = harness_proc_finish(&p, 1);
		harness_dump(&r);
		fail_msg("the touch guest did not start");
	}
	usleep(1000 * 1000);
	struct run_result r = harness_snapshot_and_kill(&p, sock, state, mem);
	harness_free(&r);
}

/* The guest ran to its end, exit 0, and never found a page it wrote
 * changed. */
static void expect_guest_intact(struct harness_proc *p)
{
	struct run_result r = harness_proc_finish(p, 30);

	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "touch: done");
	assert_output_contains(&r, out, "bad=0");
	harness_free(&r);
}

static void test_clone_working_set_by_dirty_log(void **state)
{
	char *st = path_in_tmp("a.state"), *mem = path_in_tmp("a.mem"), *sock = path_in_tmp("a.sock");
	struct harness_proc c;

	(void)state;
	make_base("test=touch mb=32 at_mb=64 read_mb=16 read_at_mb=128 pause_ms=100 secs=7", "256",
		  st, mem);
	/* Without the dirty log: no estimate, and the answer says why. */
	harness_spawn_api(&c, MOTE("--api-sock", sock, "--restore", st, "--mem", mem, "--resume"),
			  sock);
	json_t *d = get_demand(sock);
	assert_non_null(strstr(method_of(d), "wss=dirty-log"));
	assert_null(json_object_get(memory_of(d), "working_set_bytes"));
	json_decref(d);
	kill(c.pid, SIGKILL);
	struct run_result r = harness_proc_finish(&c, 10);
	harness_free(&r);

	harness_spawn_api(&c, MOTE("--api-sock", sock, "--restore", st, "--mem", mem, "--resume",
				   "--demand", "period-ms=500,wss-period-ms=1000,wss=dirty-log"),
			  sock);
	/* Two working-set intervals (the first arms at 1 s); on a loaded host
	 * an arm may be put off a tick: wait for an estimate up to 5 s. */
	sleep(3);
	d = get_demand(sock);
	for (int i = 0; i < 8 && !json_object_get(memory_of(d), "working_set_bytes"); i++) {
		json_decref(d);
		usleep(250 * 1000);
		d = get_demand(sock);
	}
	double wss = mnum(d, "working_set_bytes"), by_log = mnum(d, "dirty_log_samples"),
	       zapped = mnum(d, "zapped_pages");
	print_message("clone writing 32 MiB, reading 16 MiB of 256: working set %.2f MiB; %g of "
		      "%g samples by the dirty log, %g zapped; vCPUs parked %g us for an arm, "
		      "an arm %g us, a scan %g us\n",
		      wss / MIB, by_log, mnum(d, "sampled_pages"), zapped, mnum(d, "pause_us"),
		      mnum(d, "zap_us"), mnum(d, "scan_us"));
	assert_string_equal(method_of(d), "sampled-zap-pagemap+dirty-log");
	json_decref(d);
	expect_guest_intact(&c);
	/* 1024 samples over 256 MiB: one per 256 KiB. The written 32 MiB are
	 * private copies (the dirty log), the 16 MiB read stay the file's
	 * (zapped). */
	assert_in_range((uint64_t)by_log, 120, 140);
	assert_in_range((uint64_t)zapped, 60, 80);
	if (fabs(wss - 48 * MIB) > 4.8 * MIB)
		fail_msg("working set %.2f MiB, expected 48 +- 4.8", wss / MIB);
}

static bool same_bytes(const char *a, const char *b, uint64_t len)
{
	static uint8_t ba[1 << 16], bb[1 << 16];
	int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
	bool same = fa >= 0 && fb >= 0;

	for (uint64_t off = 0; same && off < len; off += sizeof(ba))
		same = pread(fa, ba, sizeof(ba), (off_t)off) == (ssize_t)sizeof(ba) &&
		       pread(fb, bb, sizeof(bb), (off_t)off) == (ssize_t)sizeof(bb) &&
		       !memcmp(ba, bb, sizeof(ba));
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	return same;
}

static void test_clone_diff_snapshot_shares_the_dirty_log(void **state)
{
	char *bs = path_in_tmp("b.state"), *bm = path_in_tmp("b.mem"), *ds = path_in_tmp("d.state"),
	     *dm = path_in_tmp("d.mem"), *fs = path_in_tmp("f.state"), *fm = path_in_tmp("f.mem"),
	     *mm = path_in_tmp("m.mem"), *sock = path_in_tmp("b.sock");
	char body[512];
	struct harness_proc c;

	(void)state;
	/* A pass every second: a page written once and then fetched by the
	 * working-set tracker (every 250 ms) must still reach the diff. */
	make_base("test=touch mb=32 at_mb=64 pause_ms=1000 secs=7", "128", bs, bm);
	harness_spawn_api(&c, MOTE("--api-sock", sock, "--restore", bs, "--mem", bm, "--resume",
				   "--track-dirty-pages", "--demand",
				   "period-ms=250,wss-period-ms=250"),
			  sock);
	usleep(2200 * 1000);
	json_t *d = get_demand(sock);
	/* track_dirty_pages: the log is on anyway, no wss=dirty-log needed. */
	assert_string_equal(method_of(d), "sampled-zap-pagemap+dirty-log");
	json_decref(d);
	struct harness_reply rep = harness_api(sock, "PATCH", "/vm", "{\"state\":\"Paused\"}");
	harness_expect_reply(&rep, 204, NULL);
	snprintf(body, sizeof(body), "{\"snapshot_type\":\"Diff\",\"snapshot_path\":\"%s\","
		 "\"mem_file_path\":\"%s\"}", ds, dm);
	rep = harness_api(sock, "PUT", "/snapshot/create", body);
	harness_expect_reply(&rep, 204, NULL);
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}", fs, fm);
	rep = harness_api(sock, "PUT", "/snapshot/create", body);
	harness_expect_reply(&rep, 204, NULL);
	kill(c.pid, SIGKILL);
	struct run_result r = harness_proc_finish(&c, 10);
	harness_free(&r);

	r = harness_run(MOTE("snapshot-merge", bm, dm, mm), 30, NULL);
	assert_exit_status(&r, 0);
	harness_free(&r);
	if (!same_bytes(mm, fm, 128ULL << 20))
		fail_msg("base + diff differs from the full snapshot: the diff missed pages");
	/* And the merged snapshot runs on with the guest's data intact. */
	harness_spawn(&c, MOTE("--restore", ds, "--mem", mm, "--resume", "--no-api"));
	expect_guest_intact(&c);
}

static int group_setup(void **state)
{
	(void)state;
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/mote-demand-clone-XXXXXX");
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
		cmocka_unit_test(test_clone_working_set_by_dirty_log),
		cmocka_unit_test(test_clone_diff_snapshot_shares_the_dirty_log),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
