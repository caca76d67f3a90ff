/* --standby: a restored clone that waits, fully built, for SIGUSR2.
 *
 * The test unikernel's snap-compute scenario (one serial line per step,
 * paced by the LAPIC timer: 60 ms a step here) is snapshotted at step 6.
 * A --standby restore of it must print nothing and not run at all (its
 * vCPU thread's run time and every thread's context switches stay put:
 * zero wake-ups) until SIGUSR2; then the computation goes on from step 7
 * with the values the host computes, exactly as a --resume restore's. A
 * second SIGUSR2, or one to a clone not in standby, is logged and ignored;
 * SIGTERM still stops it. With the API, PATCH /vm Resumed ends the standby
 * too, and the demand sampler wakes nothing while it lasts. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness_api.h"
#include "tests/integration/harness_snap.h"

static const char *mote_bin;
static const char *guest_elf;
static char tmp_dir[64];
static char sock_path[108];
static char state_path[128], mem_path[128];
static char *out_before; /* the snapshotted run's output, up to step 6 */

#define STEPS 40
#define SNAP_AT 6
#define MEM_MIB "32"
#define MOTE(...) ((char *const[]){ (char *)mote_bin, __VA_ARGS__, NULL })

/* ---- the guest's computation, on the host (guest/unikernel/snap_tests.c) ---- */

static uint64_t expected_acc[STEPS];
static uint64_t expected_result;

static void compute_expected(void)
{
	expected_result = snap_expected(expected_acc, STEPS);
}

/* out_before followed by after must be the scenario's lines in order, each
 * step once, for the first `steps` steps at least (all of them and the
 * result when whole). Fails the test with both outputs otherwise. */
static void expect_transcript(const char *after, unsigned steps, bool whole)
{
	size_t n = strlen(out_before);
	char *all = malloc(n + strlen(after) + 1), want[128];

	assert_non_null(all);
	strcpy(all, out_before);
	strcat(all, after);
	const char *p = strstr(all, "snap: start steps=");
	assert_non_null(p);
	p = strchr(p, '\n') + 1;
	for (unsigned s = 0; s < steps; s++) {
		snprintf(want, sizeof(want), "snap: step %u acc=%llx\n", s,
			 (unsigned long long)expected_acc[s]);
		if (strncmp(p, want, strlen(want)))
			fail_msg("expected \"%.*s\" at step %u, got \"%.60s\"\n--- before:\n%s\n"
				 "--- after:\n%s", (int)strlen(want) - 1, want, s, p, out_before,
				 after);
		p += strlen(want);
	}
	if (whole) {
		snprintf(want, sizeof(want), "snap: result %llx\nTEST PASS snap-compute\n",
			 (unsigned long long)expected_result);
		if (strncmp(p, want, strlen(want)))
			fail_msg("expected the result %llx, got \"%.80s\"",
				 (unsigned long long)expected_result, p);
	}
	free(all);
}

/* ---- what the monitor's threads did ------------------------------------------ */

struct thread_use {
	unsigned long long switches; /* every thread's context switches, summed */
	unsigned long long vcpu_run_ns; /* mote-vcpu0's time on a CPU */
	unsigned nr_threads;
	bool have_vcpu;
};

static unsigned long long status_field(const char *path, const char *field)
{
	char line[256];
	unsigned long long v = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field)))
			v = strtoull(line + strlen(field), NULL, 10);
	fclose(f);
	return v;
}

static struct thread_use thread_use(pid_t pid)
{
	struct thread_use u = { 0 };
	char dir[64], path[384], comm[32] = "";
	struct dirent *de;

	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	DIR *d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		u.nr_threads++;
		snprintf(path, sizeof(path), "%s/%s/status", dir, de->d_name);
		u.switches += status_field(path, "voluntary_ctxt_switches:");
		u.switches += status_field(path, "nonvoluntary_ctxt_switches:");
		snprintf(path, sizeof(path), "%s/%s/comm", dir, de->d_name);
		FILE *f = fopen(path, "r");
		if (f && fgets(comm, sizeof(comm), f) && !strncmp(comm, "mote-vcpu0", 10)) {
			FILE *s;
			snprintf(path, sizeof(path), "%s/%s/schedstat", dir, de->d_name);
			s = fopen(path, "r");
			if (s && fscanf(s, "%llu", &u.vcpu_run_ns) == 1)
				u.have_vcpu = true;
			if (s)
				fclose(s);
		}
		if (f)
			fclose(f);
	}
	closedir(d);
	return u;
}

/* Waits for the standby line, lets the threads settle (the vCPU thread
 * parks shortly after the VMM thread logs), then watches 300 ms: nothing
 * printed, the vCPU not run, no thread woken. */
static void expect_standing_by(struct harness_proc *p)
{
	if (!harness_proc_wait_for(p, "in standby until SIGUSR2", true, 20)) {
		kill(p->pid, SIGKILL);
		struct run_result r = harness_proc_finish(p, 5);
		harness_dump(&r);
		fail_msg("no 'in standby until SIGUSR2' line");
	}
	harness_proc_pump(p, 100);
	size_t out_len = p->out_len;
	struct thread_use before = thread_use(p->pid);
	double end = harness_now_ms() + 300;
	while (harness_now_ms() < end)
		harness_proc_pump(p, 50);
	struct thread_use after = thread_use(p->pid);

	assert_true(before.have_vcpu && after.have_vcpu);
	if (p->out_len != out_len || strstr(p->out, "snap: step"))
		fail_msg("the guest ran in standby: \"%s\"", p->out);
	/* A running guest burns ~0.1 ms a 60 ms step and switches at every
	 * timer tick (10 ms); a parked vCPU does neither. */
	if (after.vcpu_run_ns != before.vcpu_run_ns || after.switches != before.switches)
		fail_msg("a standby clone was woken: vCPU run %llu -> %llu ns, context switches "
			 "%llu -> %llu over %u threads", before.vcpu_run_ns, after.vcpu_run_ns,
			 before.switches, after.switches, after.nr_threads);
}

static void wait_for_step(struct harness_proc *p, unsigned step)
{
	char marker[64];

	snprintf(marker, sizeof(marker), "snap: step %u ", step);
	if (!harness_proc_wait_for(p, marker, false, 20)) {
		kill(p->pid, SIGKILL);
		struct run_result r = harness_proc_finish(p, 5);
		harness_dump(&r);
		fail_msg("the guest never reached step %u", step);
	}
}

/* ---- set-up ---------------------------------------------------------------------- */

static int group_setup(void **state)
{
	struct harness_proc p;

	(void)state;
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/mote-standby-XXXXXX");
	if (!mkdtemp(tmp_dir))
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/api.sock", tmp_dir);
	snprintf(state_path, sizeof(state_path), "%s/base.state", tmp_dir);
	snprintf(mem_path, sizeof(mem_path), "%s/base.mem", tmp_dir);
	compute_expected();
	/* No drive: every test restores its own clone of the one snapshot. */
	harness_spawn_api(&p, MOTE("--api-sock", sock_path, "--kernel", (char *)guest_elf,
				   "--cmdline", "test=snap-compute snapsteps=40 snapticks=6 snapnodisk=1",
				   "--mem-mib", MEM_MIB), sock_path);
	if (!harness_proc_wait_for(&p, "snap: step 6 ", false, 30)) {
		kill(p.pid, SIGKILL);
		struct run_result r = harness_proc_finish(&p, 5);
		harness_dump(&r);
		return -1;
	}
	struct run_result r = harness_snapshot_and_kill(&p, sock_path, state_path, mem_path);
	out_before = strdup(r.out);
	harness_free(&r);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	free(out_before);
	return harness_rm_rf(tmp_dir);
}

/* ---- tests ------------------------------------------------------------------------ */

/* Parked, then run on SIGUSR2 exactly where the snapshot stopped; the
 * second SIGUSR2 changes nothing; SIGTERM stops it as usual (128 + 15). */
static void test_standby_waits_for_sigusr2(void **state)
{
	struct harness_proc p;

	(void)state;
	harness_spawn(&p, MOTE("--restore", state_path, "--mem", mem_path, "--standby", "--no-api"));
	expect_standing_by(&p);

	assert_int_equal(kill(p.pid, SIGUSR2), 0);
	wait_for_step(&p, SNAP_AT + 3);
	expect_transcript(p.out, SNAP_AT + 3, false);
	assert_true(harness_proc_wait_for(&p, "us after the resume request", true, 5));
	assert_non_null(strstr(p.err, "VM resumed from standby on SIGUSR2"));

	assert_int_equal(kill(p.pid, SIGUSR2), 0);
	wait_for_step(&p, SNAP_AT + 6);
	assert_true(harness_proc_alive(&p));
	assert_non_null(strstr(p.err, "SIGUSR2 ignored: the microVM is not in standby"));
	expect_transcript(p.out, SNAP_AT + 6, false);

	assert_int_equal(kill(p.pid, SIGTERM), 0);
	struct run_result r = harness_proc_finish(&p, 10);
	assert_exit_status(&r, 128 + SIGTERM);
	harness_free(&r);
}

/* Resumed by SIGUSR2, the clone finishes the computation with the result
 * the host computes and exits 0, as a --resume clone does. */
static void test_standby_clone_finishes_the_computation(void **state)
{
	struct harness_proc p;

	(void)state;
	harness_spawn(&p, MOTE("--restore", state_path, "--mem", mem_path, "--standby", "--no-api"));
	expect_standing_by(&p);
	assert_int_equal(kill(p.pid, SIGUSR2), 0);
	struct run_result r = harness_proc_finish(&p, 30);
	assert_exit_status(&r, 0);
	assert_null(strstr(r.out, "snap: start"));
	expect_transcript(r.out, STEPS, true);
	assert_output_contains(&r, err, "snapshot: restored from");
	harness_free(&r);
}

/* With the API: GET / says Paused, the demand sampler (every 20 ms here)
 * wakes nothing while it waits; PATCH /vm Resumed ends the standby and a
 * later SIGUSR2 is ignored. */
static void test_standby_with_api_ends_on_patch(void **state)
{
	struct harness_proc p;

	(void)state;
	unlink(sock_path);
	harness_spawn_api(&p, MOTE("--restore", state_path, "--mem", mem_path, "--standby",
				   "--api-sock", sock_path, "--demand", "period-ms=20"), sock_path);
	expect_standing_by(&p);
	struct harness_reply g = harness_api(sock_path, "GET", "/", NULL);
	harness_expect_reply(&g, 200, "\"state\":\"Paused\"");
	g = harness_api(sock_path, "GET", "/demand", NULL);
	harness_expect_reply(&g, 200, "\"samples\":0,");
	g = harness_api(sock_path, "PATCH", "/vm", "{\"state\":\"Resumed\"}");
	harness_expect_reply(&g, 204, NULL);
	wait_for_step(&p, SNAP_AT + 2);
	assert_non_null(strstr(p.err, "VM resumed from standby on PATCH /vm"));
	/* Sampling again once resumed (a sample every 20 ms; a loaded host
	 * may merge a few timer expirations into one sample). */
	double end = harness_now_ms() + 2000;
	for (;;) {
		g = harness_api(sock_path, "GET", "/demand", NULL);
		harness_expect_reply(&g, 200, "\"samples\":");
		if (atoi(strstr(g.body, "\"samples\":") + 10) >= 3)
			break;
		if (harness_now_ms() > end)
			fail_msg("the sampler did not restart: %s", g.body);
		harness_proc_pump(&p, 50);
	}
	assert_int_equal(kill(p.pid, SIGUSR2), 0);
	struct run_result r = harness_proc_finish(&p, 30);
	assert_exit_status(&r, 0);
	expect_transcript(r.out, STEPS, true);
	assert_output_contains(&r, err, "SIGUSR2 ignored: the microVM is not in standby");
	harness_free(&r);
}

/* A --resume clone that gets SIGUSR2 logs it and runs on. */
static void test_sigusr2_without_standby_is_ignored(void **state)
{
	struct harness_proc p;

	(void)state;
	harness_spawn(&p, MOTE("--restore", state_path, "--mem", mem_path, "--resume", "--no-api"));
	wait_for_step(&p, SNAP_AT + 2);
	assert_int_equal(kill(p.pid, SIGUSR2), 0);
	struct run_result r = harness_proc_finish(&p, 30);
	assert_exit_status(&r, 0);
	expect_transcript(r.out, STEPS, true);
	assert_output_contains(&r, err, "SIGUSR2 ignored: the microVM is not in standby (it is "
			       "Running)");
	harness_free(&r);
}

/* A pool drops a clone it no longer needs: SIGTERM in standby stops it at
 * once, with the usual code, without running the guest. */
static void test_sigterm_in_standby_stops_it(void **state)
{
	struct harness_proc p;

	(void)state;
	harness_spawn(&p, MOTE("--restore", state_path, "--mem", mem_path, "--standby", "--no-api"));
	expect_standing_by(&p);
	double t0 = harness_now_ms();
	assert_int_equal(kill(p.pid, SIGTERM), 0);
	struct run_result r = harness_proc_finish(&p, 10);
	assert_exit_status(&r, 128 + SIGTERM);
	assert_false(r.timed_out);
	assert_true(harness_now_ms() - t0 < 2000);
	assert_null(strstr(r.out, "snap: step"));
	harness_free(&r);
}

static void test_standby_usage_errors(void **state)
{
	(void)state;
	struct run_result r = harness_run(MOTE("--restore", state_path, "--mem", mem_path,
					       "--standby", "--resume", "--no-api"), 10, NULL);
	assert_exit_status(&r, 64);
	assert_output_contains(&r, err, "--standby and --resume exclude each other");
	harness_free(&r);

	r = harness_run(MOTE("--kernel", (char *)guest_elf, "--standby", "--no-api"), 10, NULL);
	assert_exit_status(&r, 64);
	assert_output_contains(&r, err, "--standby needs --restore");
	harness_free(&r);

	/* Without --resume or --standby a --no-api restore could never run. */
	r = harness_run(MOTE("--restore", state_path, "--mem", mem_path, "--no-api"), 10, NULL);
	assert_exit_status(&r, 64);
	assert_output_contains(&r, err, "or --standby to wait for SIGUSR2");
	harness_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_standby_usage_errors),
		cmocka_unit_test(test_standby_waits_for_sigusr2),
		cmocka_unit_test(test_standby_clone_finishes_the_computation),
		cmocka_unit_test(test_standby_with_api_ends_on_patch),
		cmocka_unit_test(test_sigusr2_without_standby_is_ignored),
		cmocka_unit_test(test_sigterm_in_standby_stops_it),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
