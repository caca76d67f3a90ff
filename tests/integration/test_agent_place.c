/* mote-agent place on real VMs: four 25 % duty-cycle VMs on one cgroup
 * "host" capped at 0.5 CPU, three empty hosts. One placement step moves
 * VMs off the overloaded host (pause, snapshot, stop, restore in the
 * destination cgroup, resume), after which every host fits; each moved
 * guest finishes its computation with the right checksum. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#define CG_ROOT "/sys/fs/cgroup/cpu"
#define NVM 4

static const char *mote_bin, *guest_elf, *agent_bin;
static char tmp_dir[64];
static char cg_parent[64]; /* for the teardown after a failure */

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 1 << 16);

	if (f) {
		size_t n = fread(buf, 1, (1 << 16) - 1, f);
		buf[n] = '\0';
		fclose(f);
	}
	return buf;
}

/* The duty guest's checksum (cputime=1): every chunk of its work loop adds
 * chunk_iters x (chunk_iters - 1) / 2, so it must be chunks times that,
 * mod 2^64; a guest whose memory a move lost or corrupted fails this. */
static void check_duty(const char *out, const char *who)
{
	const char *cy = strstr(out, "cycles="), *ck = strstr(out, "checksum="),
		   *ch = strstr(out, "chunks="), *ci = strstr(out, "chunk_iters=");
	if (!cy || !ck || !ch || !ci)
		fail_msg("%s: no duty summary in:\n%s", who, out);
	unsigned long long cycles = strtoull(cy + 7, NULL, 10);
	unsigned long long sum = strtoull(ck + 9, NULL, 16);
	unsigned long long chunks = strtoull(ch + 7, NULL, 10), iters = strtoull(ci + 12, NULL, 10);
	unsigned __int128 want = (unsigned __int128)iters * (iters - 1) / 2 * chunks;
	printf("%s: %llu cycles, %llu chunks, checksum %llx\n", who, cycles, chunks, sum);
	assert_true(cycles > 50);
	assert_true(chunks >= cycles);
	assert_true(sum == (unsigned long long)want);
}

static struct run_result agent(char *const extra[], int n_extra, const char *parent)
{
	char *argv[32] = { (char *)agent_bin, "place", "--vm-dir", NULL, "--host", "h0=0.5",
			   "--host", "h1=0.5", "--host", "h2=0.5", "--host", "h3=0.5",
			   "--cgroup-parent", (char *)parent };
	char vms[128];
	int n = 14;

	snprintf(vms, sizeof(vms), "%s/vms", tmp_dir);
	argv[3] = vms;
	for (int i = 0; i < n_extra; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	return harness_run(argv, 60, NULL);
}

static void test_place_moves_and_guests_compute(void **state)
{
	(void)state;
	char parent[64], vms[128], st[128], procs[256], sh[2048];
	struct harness_proc vm[NVM];

	if (access(CG_ROOT "/cpu.shares", W_OK))
		skip(); /* needs root and the v1 cpu controller */
	snprintf(parent, sizeof(parent), "mote-place-test-%d", (int)getpid());
	snprintf(cg_parent, sizeof(cg_parent), "%s", parent);
	snprintf(vms, sizeof(vms), "%s/vms", tmp_dir);
	snprintf(st, sizeof(st), "%s/state", tmp_dir);
	mkdir(vms, 0755);
	mkdir(st, 0755);
	/* The hosts exist once the agent has looked at them. */
	char *dry[] = { "--dry-run" };
	struct run_result r = agent(dry, 1, parent);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "nothing to move (0 VMs on 4 hosts fit)");
	harness_free(&r);
	snprintf(procs, sizeof(procs), CG_ROOT "/%s/h0/cgroup.procs", parent);
	for (int i = 0; i < NVM; i++) {
		snprintf(sh, sizeof(sh),
			 "echo $$ > %s && exec %s --api-sock %s/vm%d.sock --kernel %s --cmdline "
			 "'test=duty work_us=10000 sleep_us=30000 cputime=1 secs=16' --demand "
			 "period-ms=250,window=8,wss=off", procs, mote_bin, vms, i, guest_elf);
		char *const argv[] = { "/bin/sh", "-c", sh, NULL };
		harness_spawn(&vm[i], argv);
		assert_true(harness_proc_wait_for(&vm[i], "duty: running", false, 10));
	}
	sleep(3);
	char mote_arg[256];
	snprintf(mote_arg, sizeof(mote_arg), "%s", mote_bin);
	char *go[] = { "--mote", mote_arg, "--state-dir", st, "--restore-demand",
		       "period-ms=250,window=8,wss=off" };
	r = agent(go, 6, parent);
	printf("%s", r.out);
	assert_exit_status(&r, 0);
	/* h0 held ~1 CPU of demand on 0.5: at least two had to go. */
	const char *p = r.out;
	int moved = 0;
	while ((p = strstr(p, ": done in ")))
		moved++, p++;
	assert_in_range(moved, 2, 3);
	harness_free(&r);
	sleep(3);
	r = agent(dry, 1, parent);
	printf("%s", r.out);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, out, "nothing to move (4 VMs on 4 hosts fit)");
	harness_free(&r);

	/* Every guest finishes its computation correctly: the ones that
	 * stayed on their first monitor, the moved ones on the restored
	 * monitor (its output is in the state directory). */
	int stayed = 0;
	for (int i = 0; i < NVM; i++) {
		struct run_result v = harness_proc_finish(&vm[i], 20);
		char who[32];
		snprintf(who, sizeof(who), "vm%d", i);
		if (v.status == 0) {
			check_duty(v.out, who);
			stayed++;
		} else {
			assert_int_equal(v.status, 128 + SIGTERM); /* stopped by the move */
			char log[256];
			snprintf(log, sizeof(log), "%s/vm%d.log", st, i);
			double end = harness_now_ms() + 20e3;
			char *out;
			while (!strstr(out = slurp(log), "duty: done") && harness_now_ms() < end) {
				free(out);
				usleep(200 * 1000);
			}
			/* iters= is in the first monitor's output. */
			size_t need = strlen(v.out) + strlen(out) + 1;
			char *both = malloc(need);
			snprintf(both, need, "%s%s", v.out, out);
			strcat(who, " (moved)");
			check_duty(both, who);
			free(both);
			free(out);
		}
		harness_free(&v);
	}
	assert_int_equal(stayed, NVM - moved);
	sleep(1); /* the restored monitors have exited after their guests */
	for (int h = 0; h < 4; h++) {
		char d[160];
		snprintf(d, sizeof(d), CG_ROOT "/%s/h%d", parent, h);
		assert_int_equal(rmdir(d), 0);
	}
	snprintf(sh, sizeof(sh), CG_ROOT "/%s", parent);
	assert_int_equal(rmdir(sh), 0);
}

static int group_setup(void **state)
{
	(void)state;
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	agent_bin = harness_env("MOTE_AGENT");
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/mote-place-XXXXXX");
	return mkdtemp(tmp_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	/* After a failure: VMs the agent restored may still run; the
	 * groups go once they are empty (best effort). */
	for (int h = 0; cg_parent[0] && h < 4; h++) {
		char d[160];
		snprintf(d, sizeof(d), CG_ROOT "/%s/h%d", cg_parent, h);
		rmdir(d);
	}
	if (cg_parent[0]) {
		char d[128];
		snprintf(d, sizeof(d), CG_ROOT "/%s", cg_parent);
		rmdir(d);
	}
	return harness_rm_rf(tmp_dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_place_moves_and_guests_compute),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
