/* Snapshots end to end: the test unikernel's snap-compute scenario (state
 * in registers, RAM, the LAPIC timer and a virtio-blk drive) is paused,
 * snapshotted through the API and its monitor killed with SIGKILL; a new
 * process restores it and the computation finishes with the value the
 * host computes, its serial output continuing with nothing lost or
 * repeated. Then: restore through PUT /snapshot/load, 50 clones of one
 * snapshot at once (PSS well under RSS), every kind of bad file, snapshot
 * requests in the wrong state, and SIGKILL at each step of a create. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "tests/integration/harness_api.h"
#include "tests/integration/harness_snap.h"

static const char *mote_bin;
static const char *guest_elf;
static char tmp_dir[64];
static char sock_path[108];

#define STEPS 30
#define MEM_MIB "32"
#define MOTE(...) ((char *const[]){ (char *)mote_bin, __VA_ARGS__, NULL })

/* ---- the guest's computation, on the host (guest/unikernel/snap_tests.c) ---- */

static uint64_t expected_acc[STEPS + 64];
static uint64_t expected_result;

static void compute_expected(unsigned steps)
{
	expected_result = snap_expected(expected_acc, steps);
}

/* The whole serial transcript must be exactly the scenario's lines, each
 * step once and in order. Returns NULL or what is wrong. */
static const char *check_transcript(const char *out, unsigned steps, char *why, size_t len)
{
	char want[128];
	const char *p = strstr(out, "snap: start steps=");

	if (!p)
		return "no 'snap: start' line";
	p = strchr(p, '\n') + 1;
	for (unsigned s = 0; s < steps; s++) {
		snprintf(want, sizeof(want), "snap: step %u acc=%llx\n", s,
			 (unsigned long long)expected_acc[s]);
		if (strncmp(p, want, strlen(want))) {
			snprintf(why, len, "expected \"%.*s\" at step %u, got \"%.60s\"",
				 (int)strlen(want) - 1, want, s, p);
			return why;
		}
		p += strlen(want);
	}
	snprintf(want, sizeof(want), "snap: result %llx\nTEST PASS snap-compute\n",
		 (unsigned long long)expected_result);
	if (strncmp(p, want, strlen(want))) {
		snprintf(why, len, "expected the result %llx, got \"%.80s\"",
			 (unsigned long long)expected_result, p);
		return why;
	}
	return NULL;
}

/* Fails the test unless before (the output up to the snapshot) followed by
 * r's output is one whole transcript: the restored guest went on exactly
 * where the snapshot stopped it. what prefixes the failure message. */
static void expect_continues(const char *before, const struct run_result *r, const char *what)
{
	char why[256];
	size_t n = strlen(before);
	char *all = malloc(n + r->out_len + 1);

	assert_non_null(all);
	memcpy(all, before, n);
	memcpy(all + n, r->out, r->out_len + 1);
	const char *bad = check_transcript(all, STEPS, why, sizeof(why));
	if (bad) {
		harness_dump(r);
		fprintf(stderr, "--- before the snapshot:\n%s\n", before);
		fail_msg("%s%s", what, bad);
	}
	free(all);
}

/* ---- API over curl ------------------------------------------------------------- */

static struct harness_reply api_at(const char *sock, const char *method, const char *path,
				   const char *body)
{
	return harness_api(sock, method, path, body);
}

static struct harness_reply api(const char *method, const char *path, const char *body)
{
	return harness_api(sock_path, method, path, body);
}

static void expect(struct harness_reply r, int code, const char *needle)
{
	harness_expect_reply(&r, code, needle);
}

static void spawn_with_api(struct harness_proc *p, char *const argv[])
{
	harness_spawn_api(p, argv, sock_path);
}

static char *path_in_tmp(const char *name)
{
	static char paths[16][128];
	static int next;
	char *p = paths[next++ % 16];

	snprintf(p, 128, "%s/%s", tmp_dir, name);
	return p;
}

static void make_disk(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
}

static void copy_file(const char *from, const char *to)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", from, to);
	assert_int_equal(system(cmd), 0);
}

/* ---- the base snapshot ----------------------------------------------------------- */

static char *base_state, *base_mem, *disk, *out_before;

/* Boots snap-compute, waits for step `at`, pauses, snapshots to state/mem
 * and kills the monitor with SIGKILL. Returns what it printed. */
static char *snapshot_running_guest(const char *cmdline, const char *drive, const char *state,
				    const char *mem, unsigned at, const char *extra_env)
{
	struct harness_proc p;
	char marker[64], body[512], drive_arg[256];

	snprintf(drive_arg, sizeof(drive_arg), "path=%s", drive ? drive : "");
	if (extra_env)
		putenv((char *)extra_env);
	if (drive)
		spawn_with_api(&p, MOTE("--api-sock", sock_path, "--kernel", (char *)guest_elf,
					"--cmdline", (char *)cmdline, "--mem-mib", MEM_MIB, "--drive",
					drive_arg));
	else
		spawn_with_api(&p, MOTE("--api-sock", sock_path, "--kernel", (char *)guest_elf,
					"--cmdline", (char *)cmdline, "--mem-mib", MEM_MIB));
	snprintf(marker, sizeof(marker), "snap: step %u ", at);
	if (!harness_proc_wait_for(&p, marker, false, 30)) {
		kill(p.pid, SIGKILL);
		struct run_result r = harness_proc_finish(&p, 5);
		harness_dump(&r);
		fail_msg("the guest never reached step %u", at);
	}
	expect(api("PATCH", "/vm", "{\"state\":\"Paused\"}"), 204, NULL);
	snprintf(body, sizeof(body), "{\"snapshot_type\":\"Full\",\"snapshot_path\":\"%s\","
		 "\"mem_file_path\":\"%s\"}", state, mem);
	struct harness_reply r = api("PUT", "/snapshot/create", body);
	if (extra_env) {
		char name[64];
		snprintf(name, sizeof(name), "%.*s", (int)(strchr(extra_env, '=') - extra_env),
			 extra_env);
		unsetenv(name);
	}
	kill(p.pid, SIGKILL);
	struct run_result rr = harness_proc_finish(&p, 10);
	if (!extra_env && r.status != 204) {
		harness_dump(&rr);
		fail_msg("snapshot/create: %d %s", r.status, r.body);
	}
	char *out = strdup(rr.out);
	harness_free(&rr);
	return out;
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/mote-snap-XXXXXX");
	if (!mkdtemp(tmp_dir))
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/api.sock", tmp_dir);
	compute_expected(STEPS);
	base_state = strdup(path_in_tmp("base.state"));
	base_mem = strdup(path_in_tmp("base.mem"));
	disk = strdup(path_in_tmp("disk.img"));
	make_disk(disk);
	out_before = snapshot_running_guest("test=snap-compute snapsteps=30 snapticks=6", disk,
					    base_state, base_mem, 6, NULL);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	return harness_rm_rf(tmp_dir);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_restore_in_new_process_continues(void **state)
{
	(void)state;
	struct run_result r = harness_run(MOTE("--restore", base_state, "--mem", base_mem,
					       "--resume", "--no-api", "--log-level", "debug"),
					  60, NULL);
	assert_exit_status(&r, 0);
	/* The first monitor's output ends mid-computation; the restored one
	 * starts exactly where it stopped. */
	assert_null(strstr(r.out, "snap: start"));
	expect_continues(out_before, &r, "");
	assert_output_contains(&r, err, "snapshot: restored from");
	/* With the CPUID tables the snapshot saved: KVM is not asked again. */
	assert_output_contains(&r, err, "CPUID: each vCPU's table as the snapshot saved it");
	harness_free(&r);
}

/* A VM on KVM's in-kernel irqchip (--irqchip kernel): the snapshot holds
 * the PICs, IOAPIC and PIT instead of mote's IOAPIC, and the restore
 * rebuilds that irqchip (the mode comes from the snapshot, not the
 * command line); the guest, waiting on LAPIC timer ticks, goes on. */
static void test_in_kernel_irqchip_snapshot_restores(void **state)
{
	(void)state;
	struct harness_proc p;
	char body[512];
	char *st = strdup(path_in_tmp("kernel-irqchip.state"));
	char *mem = strdup(path_in_tmp("kernel-irqchip.mem"));

	spawn_with_api(&p, MOTE("--api-sock", sock_path, "--irqchip", "kernel", "--kernel",
				(char *)guest_elf, "--cmdline",
				"test=snap-compute snapsteps=30 snapticks=6 snapnodisk=1", "--mem-mib",
				MEM_MIB));
	if (!harness_proc_wait_for(&p, "snap: step 6 ", false, 30)) {
		kill(p.pid, SIGKILL);
		struct run_result r = harness_proc_finish(&p, 5);
		harness_dump(&r);
		fail_msg("the guest never reached step 6");
	}
	expect(api("PATCH", "/vm", "{\"state\":\"Paused\"}"), 204, NULL);
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}", st,
		 mem);
	expect(api("PUT", "/snapshot/create", body), 204, NULL);
	kill(p.pid, SIGKILL);
	struct run_result before = harness_proc_finish(&p, 10);

	struct run_result r = harness_run(MOTE("--restore", st, "--mem", mem, "--resume",
					       "--no-api", "--log-level", "debug"), 60, NULL);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, err, "in-kernel irqchip and PIT created");
	assert_null(strstr(r.err, "split irqchip"));
	expect_continues(before.out, &r, "in-kernel irqchip: ");
	harness_free(&r);
	harness_free(&before);
	free(st);
	free(mem);
}

static void test_load_through_api_paused_then_resumed(void **state)
{
	struct harness_proc p;
	char body[512];

	(void)state;
	spawn_with_api(&p, MOTE("--api-sock", sock_path));
	/* A backend type that does not exist. */
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_backend\":{\"backend_type\":"
		 "\"Disk\",\"backend_path\":\"%s\"}}", base_state, base_mem);
	expect(api("PUT", "/snapshot/load", body), 400, "backend_type must be File or Uffd");
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_backend\":{\"backend_type\":"
		 "\"File\",\"backend_path\":\"%s\"},\"resume_vm\":false,\"clock_realtime\":true}",
		 base_state, base_mem);
	expect(api("PUT", "/snapshot/load", body), 204, NULL);
	expect(api("GET", "/", NULL), 200, "\"state\":\"Paused\"");
	/* Paused: no guest code runs. */
	harness_proc_pump(&p, 300);
	assert_null(strstr(p.out, "snap: step"));
	expect(api("PUT", "/snapshot/load", body), 400, "already started");
	/* A snapshot of the restored VM (its memory: the file's data plus the
	 * pages it copied on write), under the VMM thread's seccomp filter. */
	char *g2s = path_in_tmp("gen2.state"), *g2m = path_in_tmp("gen2.mem");
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}", g2s,
		 g2m);
	expect(api("PUT", "/snapshot/create", body), 204, NULL);
	expect(api("PATCH", "/vm", "{\"state\":\"Resumed\"}"), 204, NULL);
	struct run_result r = harness_proc_finish(&p, 60);
	assert_exit_status(&r, 0);
	expect_continues(out_before, &r, "");
	harness_free(&r);

	/* The second-generation snapshot continues from the same point. */
	r = harness_run(MOTE("--restore", g2s, "--mem", g2m, "--resume", "--no-api"), 60, NULL);
	assert_exit_status(&r, 0);
	expect_continues(out_before, &r, "second generation: ");
	harness_free(&r);
}

static void test_snapshot_requests_in_wrong_state(void **state)
{
	struct harness_proc p;
	char body[512];

	(void)state;
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}",
		 path_in_tmp("x.state"), path_in_tmp("x.mem"));
	spawn_with_api(&p, MOTE("--api-sock", sock_path));
	expect(api("PUT", "/snapshot/create", body), 400, "must be paused");
	expect(api("PUT", "/snapshot/create", "{\"snapshot_path\":\"a\",\"mem_file_path\":\"b\","
		   "\"snapshot_type\":\"Half\"}"), 400, "snapshot_type must be Full or Diff");
	expect(api("PUT", "/snapshot/create", "{\"snapshot_path\":\"a\"}"), 400,
	       "missing required field 'mem_file_path'");
	expect(api("PUT", "/snapshot/load", "{\"snapshot_path\":\"a\"}"), 400,
	       "missing required field 'mem_backend'");
	char boot[512];
	snprintf(boot, sizeof(boot), "{\"kernel_image_path\":\"%s\",\"boot_args\":\"test=spin\"}",
		 guest_elf);
	expect(api("PUT", "/boot-source", boot), 204, NULL);
	char load[512];
	snprintf(load, sizeof(load), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}",
		 base_state, base_mem);
	expect(api("PUT", "/snapshot/load", load), 400, "after configuring boot-specific");
	expect(api("PUT", "/actions", "{\"action_type\":\"InstanceStart\"}"), 204, NULL);
	/* Running, not paused: refused, and nothing written. */
	expect(api("PUT", "/snapshot/create", body), 400, "must be paused first");
	assert_int_equal(access(path_in_tmp("x.state"), F_OK), -1);
	assert_int_equal(access(path_in_tmp("x.mem"), F_OK), -1);
	/* Paused, but a Diff without dirty tracking (and no base). */
	expect(api("PATCH", "/vm", "{\"state\":\"Paused\"}"), 204, NULL);
	snprintf(body, sizeof(body), "{\"snapshot_type\":\"Diff\",\"snapshot_path\":\"%s\","
		 "\"mem_file_path\":\"%s\"}", path_in_tmp("x.state"), path_in_tmp("x.mem"));
	expect(api("PUT", "/snapshot/create", body), 400, "needs dirty page tracking");
	assert_int_equal(access(path_in_tmp("x.mem"), F_OK), -1);
	kill(p.pid, SIGTERM);
	struct run_result r = harness_proc_finish(&p, 10);
	harness_free(&r);
}

/* ---- bad files ------------------------------------------------------------------ */

static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
	}
	return ~c;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc(*len);
	assert_int_equal(fread(b, 1, *len, f), *len);
	fclose(f);
	return b;
}

static void spit(const char *path, const uint8_t *b, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, len, f), len);
	fclose(f);
}

/* Rewrites the trailer's CRC after an edit, so only the edit is wrong. */
static void reseal(uint8_t *b, size_t len)
{
	uint32_t crc = crc32_ieee(b, len - 8);
	memcpy(b + len - 8, &crc, 4);
}

/* The config section comes first: header (32) + section header (16). */
#define CONFIG_DATA 48
#define CONFIG_NR_VCPUS (CONFIG_DATA + 16)
#define CONFIG_NR_DRIVES (CONFIG_DATA + 28)

/* Restores state+mem and expects failure with every needle in stderr and
 * no guest output at all. */
static void expect_restore_fails(const char *state, const char *mem, const char *n1,
				 const char *n2)
{
	struct run_result r = harness_run(MOTE("--restore", (char *)state, "--mem", (char *)mem,
					       "--resume", "--no-api"), 30, NULL);
	if (r.status == 0 || !strstr(r.err, n1) || (n2 && !strstr(r.err, n2)) ||
	    strstr(r.out, "snap:")) {
		harness_dump(&r);
		fail_msg("restore of '%s' + '%s': expected a failure naming '%s' and '%s'", state,
			 mem, n1, n2 ? n2 : "");
	}
	harness_free(&r);
}

static void test_bad_files(void **state)
{
	size_t len;
	uint8_t *good = slurp(base_state, &len);
	uint8_t *b = malloc(len);
	char *bad = path_in_tmp("bad.state");

	(void)state;
	/* Truncated. */
	spit(bad, good, len / 2);
	expect_restore_fails(bad, base_mem, bad, "truncated");
	/* Wrong magic. */
	memcpy(b, good, len);
	memcpy(b, "NOTASNAP", 8);
	spit(bad, b, len);
	expect_restore_fails(bad, base_mem, bad, "wrong magic");
	/* Unsupported major version. */
	memcpy(b, good, len);
	b[8] = 9;
	spit(bad, b, len);
	expect_restore_fails(bad, base_mem, bad, "unsupported version 9.");
	/* One flipped byte in the middle: checksum. */
	memcpy(b, good, len);
	b[len / 2] ^= 0x40;
	spit(bad, b, len);
	expect_restore_fails(bad, base_mem, bad, "checksum mismatch");
	/* vCPU count that does not match the vCPU sections. */
	memcpy(b, good, len);
	b[CONFIG_NR_VCPUS] = 2;
	reseal(b, len);
	spit(bad, b, len);
	expect_restore_fails(bad, base_mem, bad, "1 vCPU sections for a machine of 2 vCPUs");
	/* Device list that does not match. */
	memcpy(b, good, len);
	b[CONFIG_NR_DRIVES] = 0;
	reseal(b, len);
	spit(bad, b, len);
	expect_restore_fails(bad, base_mem, bad, "virtio device sections");
	/* Not a state file at all. */
	expect_restore_fails(base_mem, base_mem, base_mem, "wrong magic");
	/* Missing state file. */
	expect_restore_fails(path_in_tmp("nope.state"), base_mem, "nope.state", "No such file");

	/* Memory file shorter than the guest's memory. */
	char *mem = path_in_tmp("short.mem");
	copy_file(base_mem, mem);
	assert_int_equal(truncate(mem, 16 << 20), 0);
	expect_restore_fails(base_state, mem, mem, "shorter than the snapshot's 32 MiB");
	/* The right size without the footer (e.g. cut at the memory's end). */
	assert_int_equal(truncate(mem, 32 << 20), 0);
	expect_restore_fails(base_state, mem, mem, "without a valid mote footer");
	expect_restore_fails(base_state, path_in_tmp("nope.mem"), "nope.mem", "No such file");

	/* The drive's backing file is gone. */
	char *moved = path_in_tmp("disk.moved");
	assert_int_equal(rename(disk, moved), 0);
	expect_restore_fails(base_state, base_mem, disk, "No such file");
	assert_int_equal(rename(moved, disk), 0);

	/* Through the API too: a 400 naming the file. */
	struct harness_proc p;
	char body[512];
	spawn_with_api(&p, MOTE("--api-sock", sock_path));
	memcpy(b, good, len);
	b[len / 2] ^= 0x40;
	spit(bad, b, len);
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}", bad,
		 base_mem);
	struct harness_reply rep = api("PUT", "/snapshot/load", body);
	expect(rep, 400, "checksum mismatch");
	assert_non_null(strstr(rep.body, bad));
	expect(api("GET", "/", NULL), 200, "Not started");
	kill(p.pid, SIGTERM);
	struct run_result r = harness_proc_finish(&p, 10);
	assert_null(strstr(r.out, "snap:"));
	harness_free(&r);
	free(b);
	free(good);
}

/* SIGKILL of the monitor at each step of a create: what is left under the
 * final names either is the complete old snapshot or does not load. */
static void test_kill_during_create_leaves_no_loadable_half(void **state)
{
	static const char *const steps[] = { "mem-written", "state-written", "mem-renamed" };
	char env[64];

	(void)state;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		char *st = path_in_tmp("crash.state"), *mem = path_in_tmp("crash.mem");
		char *d = path_in_tmp("crash-disk.img");

		make_disk(d);
		/* An earlier, complete snapshot under the same names. */
		copy_file(base_state, st);
		copy_file(base_mem, mem);
		snprintf(env, sizeof(env), "MOTE_SNAPSHOT_CRASH_AT=%s", steps[i]);
		free(snapshot_running_guest("test=snap-compute snapsteps=1000 snapticks=2", d, st, mem,
					    2, env));
		if (!strcmp(steps[i], "mem-renamed")) {
			/* New memory, old state: the footer's id gives it away. */
			expect_restore_fails(st, mem, mem, "belongs to another snapshot");
		} else {
			/* The old pair is intact and still loads. */
			size_t a, b;
			uint8_t *x = slurp(st, &a), *y = slurp(base_state, &b);
			assert_int_equal(a, b);
			assert_memory_equal(x, y, a);
			free(x);
			free(y);
		}
		/* Without an earlier snapshot nothing loadable exists. */
		unlink(st);
		unlink(mem);
		free(snapshot_running_guest("test=snap-compute snapsteps=1000 snapticks=2", d, st, mem,
					    2, env));
		expect_restore_fails(st, mem, "crash.state", "No such file");
		char cmd[256];
		snprintf(cmd, sizeof(cmd), "rm -f %s/*.tmp-*", tmp_dir);
		assert_int_equal(system(cmd), 0);
	}
}

/* ---- clones ----------------------------------------------------------------------- */

#define CLONES 50

static void test_fifty_clones_share_memory(void **state)
{
	char *st = path_in_tmp("clone.state"), *mem = path_in_tmp("clone.mem");
	static struct harness_proc p[CLONES];
	char what[32];
	long rss = 0, pss = 0;

	(void)state;
	/* No drive (clones cannot share one writable image); 256 KiB of RAM
	 * filled before the snapshot and read by every clone afterwards. */
	char *before = snapshot_running_guest("test=snap-compute snapsteps=30 snapticks=5 "
					      "snapnodisk=1 snaptouch=256", NULL, st, mem, 3, NULL);
	for (int i = 0; i < CLONES; i++)
		harness_spawn(&p[i], MOTE("--restore", st, "--mem", mem, "--resume", "--no-api"));
	/* Measure while all of them run: each has printed a step after the
	 * snapshot point. */
	for (int i = 0; i < CLONES; i++) {
		if (!harness_proc_wait_for(&p[i], "snap: step 5 ", false, 120))
			fail_msg("clone %d made no progress: %s", i, p[i].err);
	}
	for (int i = 0; i < CLONES; i++) {
		long r = harness_proc_kib(p[i].pid, "smaps_rollup", "Rss:");
		long s = harness_proc_kib(p[i].pid, "smaps_rollup", "Pss:");
		if (r > 0 && s > 0) {
			rss += r;
			pss += s;
		}
	}
	print_message("%d clones: sum RSS %ld KiB, sum PSS %ld KiB (%.1f KiB private-ish each)\n",
		      CLONES, rss, pss, (double)pss / CLONES);
	for (int i = 0; i < CLONES; i++) {
		struct run_result r = harness_proc_finish(&p[i], 120);
		if (r.status != 0) {
			harness_dump(&r);
			fail_msg("clone %d: exit %d", i, r.status);
		}
		snprintf(what, sizeof(what), "clone %d: ", i);
		expect_continues(before, &r, what);
		harness_free(&r);
	}
	assert_true(rss > 0);
	/* Guest RAM and the monitor's text are page cache, shared by all. */
	assert_true(pss * 3 < rss);
	free(before);
}

/* ---- the Uffd backend -------------------------------------------------------------- */

static void test_load_with_uffd_handler(void **state)
{
	char handler_bin[512], body[768];
	char *hsock = path_in_tmp("uffd.sock");
	struct harness_proc h, p;

	(void)state;
	/* The example handler is built beside mote. */
	snprintf(handler_bin, sizeof(handler_bin), "%s", mote_bin);
	strcpy(strrchr(handler_bin, '/') + 1, "mote-uffd-handler");
	char *const hargv[] = { handler_bin, hsock, base_mem, NULL };
	harness_spawn(&h, hargv);
	assert_true(harness_proc_wait_for(&h, "listening", false, 10));

	spawn_with_api(&p, MOTE("--api-sock", sock_path));
	/* A socket nobody listens on: a clear 400, nothing started. */
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_backend\":{\"backend_type\":"
		 "\"Uffd\",\"backend_path\":\"%s\"},\"resume_vm\":true}", base_state,
		 path_in_tmp("nobody.sock"));
	expect(api("PUT", "/snapshot/load", body), 400, "cannot connect to the page-fault handler");
	kill(p.pid, SIGTERM);
	struct run_result r = harness_proc_finish(&p, 10);
	harness_free(&r);

	spawn_with_api(&p, MOTE("--api-sock", sock_path));
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_backend\":{\"backend_type\":"
		 "\"Uffd\",\"backend_path\":\"%s\"},\"resume_vm\":true}", base_state, hsock);
	expect(api("PUT", "/snapshot/load", body), 204, NULL);
	r = harness_proc_finish(&p, 60);
	assert_exit_status(&r, 0);
	expect_continues(out_before, &r, "");
	harness_free(&r);
	/* The handler served the pages and ends with the VM. */
	struct run_result hr = harness_proc_finish(&h, 10);
	assert_exit_status(&hr, 0);
	assert_output_contains(&hr, out, "served ");
	assert_null(strstr(hr.out, "served 0 pages"));
	harness_free(&hr);
}

/* ---- clone identity: vsock_override ------------------------------------------------ */

static void test_vsock_override_gives_a_clone_its_own_socket(void **state)
{
	char *st = path_in_tmp("vs.state"), *mem = path_in_tmp("vs.mem");
	char *orig = path_in_tmp("v.sock"), *mine = path_in_tmp("clone.sock");
	char vsock_arg[256], body[768];
	struct harness_proc p;

	(void)state;
	snprintf(vsock_arg, sizeof(vsock_arg), "cid=5,uds=%s", orig);
	spawn_with_api(&p, MOTE("--api-sock", sock_path, "--kernel", (char *)guest_elf, "--cmdline",
				"test=snap-compute snapsteps=100000 snapticks=5 snapnodisk=1",
				"--mem-mib", MEM_MIB, "--vsock", vsock_arg));
	assert_true(harness_proc_wait_for(&p, "snap: step 2 ", false, 30));
	struct run_result r = harness_snapshot_and_kill(&p, sock_path, st, mem);
	harness_free(&r);
	unlink(orig);

	/* No vsock in the base snapshot: an override is an error. */
	spawn_with_api(&p, MOTE("--api-sock", sock_path));
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\","
		 "\"vsock_override\":{\"uds_path\":\"%s\"}}", base_state, base_mem, mine);
	expect(api("PUT", "/snapshot/load", body), 400, "has no vsock device");
	kill(p.pid, SIGTERM);
	r = harness_proc_finish(&p, 10);
	harness_free(&r);

	spawn_with_api(&p, MOTE("--api-sock", sock_path));
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\","
		 "\"resume_vm\":true,\"vsock_override\":{\"uds_path\":\"%s\",\"guest_cid\":7}}",
		 st, mem, mine);
	expect(api("PUT", "/snapshot/load", body), 204, NULL);
	/* The clone listens on its own socket, not the saved one, and runs. */
	struct stat sb;
	assert_int_equal(stat(mine, &sb), 0);
	assert_true(S_ISSOCK(sb.st_mode));
	assert_int_equal(access(orig, F_OK), -1);
	assert_true(harness_proc_wait_for(&p, "snap: step 4 ", false, 30));
	expect(api("GET", "/vm/config", NULL), 200, "\"guest_cid\":7");
	kill(p.pid, SIGTERM);
	r = harness_proc_finish(&p, 10);
	harness_free(&r);
}

/* ---- clones reseed their randomness ------------------------------------------------ */

/* A host service at path: every connection gets 8 random bytes. */
static pid_t start_seed_server(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(strlen(path) < sizeof(a.sun_path));
	memcpy(a.sun_path, path, strlen(path) + 1);
	unlink(path);
	assert_true(ls >= 0);
	assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(ls, 8), 0);
	pid_t pid = fork();
	if (pid == 0) {
		int ur = open("/dev/urandom", O_RDONLY);
		for (;;) {
			uint8_t seed[8];
			int c = accept(ls, NULL, NULL);
			if (c < 0)
				continue;
			if (read(ur, seed, sizeof(seed)) == (ssize_t)sizeof(seed) &&
			    write(c, seed, sizeof(seed)) < 0) {
				/* the guest went away: next one */
			}
			close(c);
		}
	}
	close(ls);
	return pid;
}

static void test_clones_reseed_from_their_host(void **state)
{
	char *st = path_in_tmp("rand.state"), *mem = path_in_tmp("rand.mem");
	char uds[3][80], seed_path[108], vsock_arg[256], body[768], socks[2][108];
	pid_t servers[3];
	struct harness_proc p, clone[2];
	char values[2][32];

	(void)state;
	for (int i = 0; i < 3; i++) {
		snprintf(uds[i], sizeof(uds[i]), "%s/r%d.sock", tmp_dir, i);
		snprintf(seed_path, sizeof(seed_path), "%.90s_7000", uds[i]);
		servers[i] = start_seed_server(seed_path);
	}
	snprintf(vsock_arg, sizeof(vsock_arg), "cid=3,uds=%s", uds[0]);
	spawn_with_api(&p, MOTE("--api-sock", sock_path, "--kernel", (char *)guest_elf, "--cmdline",
				"test=snap-random", "--mem-mib", MEM_MIB, "--vsock", vsock_arg));
	assert_true(harness_proc_wait_for(&p, "rand: ready", false, 30));
	struct run_result r = harness_snapshot_and_kill(&p, sock_path, st, mem);
	harness_free(&r);

	/* Two clones, each on its own vsock socket and so its own host. */
	for (int i = 0; i < 2; i++) {
		snprintf(socks[i], sizeof(socks[i]), "%s/clone%d.api", tmp_dir, i);
		unlink(socks[i]);
		harness_spawn(&clone[i], MOTE("--api-sock", socks[i]));
		for (int k = 0; k < 2000 && access(socks[i], F_OK); k++)
			usleep(5000);
		snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\","
			 "\"resume_vm\":true,\"vsock_override\":{\"uds_path\":\"%s\"}}", st, mem,
			 uds[i + 1]);
		expect(api_at(socks[i], "PUT", "/snapshot/load", body), 204, NULL);
	}
	for (int i = 0; i < 2; i++) {
		r = harness_proc_finish(&clone[i], 60);
		assert_exit_status(&r, 0);
		assert_output_contains(&r, out, "vsock: reset");
		const char *v = strstr(r.out, "rand: reseeded after restore, value ");
		if (!v) {
			harness_dump(&r);
			fail_msg("clone %d did not reseed", i);
		}
		snprintf(values[i], sizeof(values[i]), "%.16s", v + strlen("rand: reseeded after "
									  "restore, value "));
		harness_free(&r);
	}
	for (int i = 0; i < 3; i++) {
		kill(servers[i], SIGKILL);
		waitpid(servers[i], NULL, 0);
	}
	print_message("clone values: %s %s\n", values[0], values[1]);
	assert_string_not_equal(values[0], values[1]);
}

/* ---- working-set prefetch -------------------------------------------------------- */

static void test_working_set_record_and_prefetch(void **state)
{
	char *ws = path_in_tmp("base.ws");
	struct stat sb;

	(void)state;
	struct run_result r = harness_run(MOTE("--restore", base_state, "--mem", base_mem,
					       "--resume", "--no-api", "--record-working-set", ws),
					  60, NULL);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, err, "working set of ");
	harness_free(&r);
	assert_int_equal(stat(ws, &sb), 0);
	assert_true(sb.st_size > 24 && (sb.st_size - 24) % 16 == 0);

	r = harness_run(MOTE("--restore", base_state, "--mem", base_mem, "--resume", "--no-api",
			     "--prefetch", ws), 60, NULL);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, err, "prefetched ");
	expect_continues(out_before, &r, "");
	harness_free(&r);

	/* A record that does not fit is ignored with a warning. */
	char *junk = path_in_tmp("junk.ws");
	spit(junk, (const uint8_t *)"MOTEWS01garbage-garbage-garbage!", 32);
	r = harness_run(MOTE("--restore", base_state, "--mem", base_mem, "--resume", "--no-api",
			     "--prefetch", junk), 60, NULL);
	assert_exit_status(&r, 0);
	assert_output_contains(&r, err, "not a record for this snapshot");
	harness_free(&r);
}

/* ---- diff snapshots ------------------------------------------------------------- */

/* Page indices (< mem_bytes) of the data extents of a memory file. */
static size_t data_pages(const char *path, uint64_t mem_bytes, uint64_t *pages, size_t max)
{
	int fd = open(path, O_RDONLY);
	size_t n = 0;
	off_t off = 0;

	assert_true(fd >= 0);
	for (;;) {
		off_t d = lseek(fd, off, SEEK_DATA);
		if (d < 0 || (uint64_t)d >= mem_bytes)
			break;
		off_t h = lseek(fd, d, SEEK_HOLE);
		for (off_t p = d; p < h && (uint64_t)p < mem_bytes && n < max; p += 4096)
			pages[n++] = (uint64_t)p / 4096;
		off = h;
	}
	close(fd);
	return n;
}

static bool same_ram(const char *a, const char *b, uint64_t len)
{
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	static uint8_t ba[1 << 16], bb[1 << 16];
	bool same = fa && fb;

	for (uint64_t done = 0; same && done < len; done += sizeof(ba)) {
		same = fread(ba, 1, sizeof(ba), fa) == sizeof(ba) &&
		       fread(bb, 1, sizeof(bb), fb) == sizeof(bb) && !memcmp(ba, bb, sizeof(ba));
	}
	if (fa)
		fclose(fa);
	if (fb)
		fclose(fb);
	return same;
}

static void test_diff_snapshot_holds_written_pages_and_merges(void **state)
{
	struct harness_proc p;
	char *bs = path_in_tmp("b.state"), *bm = path_in_tmp("b.mem"), *ds = path_in_tmp("d.state"),
	     *dm = path_in_tmp("d.mem"), *fs = path_in_tmp("f.state"), *fm = path_in_tmp("f.mem"),
	     *mm = path_in_tmp("m.mem");
	char body[512];
	const uint64_t mem_bytes = 32ULL << 20;

	(void)state;
	spawn_with_api(&p, MOTE("--api-sock", sock_path, "--kernel", (char *)guest_elf, "--cmdline",
				"test=snap-dirty dirtypages=20", "--mem-mib", MEM_MIB,
				"--track-dirty-pages"));
	assert_true(harness_proc_wait_for(&p, "pages=21\n", false, 30));
	unsigned long region = strtoul(strstr(p.out, "region=") + 7, NULL, 16);
	expect(api("PATCH", "/vm", "{\"state\":\"Paused\"}"), 204, NULL);
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}", bs, bm);
	expect(api("PUT", "/snapshot/create", body), 204, NULL);
	expect(api("PATCH", "/vm", "{\"state\":\"Resumed\"}"), 204, NULL);
	expect(api("PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}"), 204, NULL);
	assert_true(harness_proc_wait_for(&p, "dirty: written\n", false, 30));
	expect(api("PATCH", "/vm", "{\"state\":\"Paused\"}"), 204, NULL);
	snprintf(body, sizeof(body), "{\"snapshot_type\":\"Diff\",\"snapshot_path\":\"%s\","
		 "\"mem_file_path\":\"%s\"}", ds, dm);
	expect(api("PUT", "/snapshot/create", body), 204, NULL);
	/* A full one at the same point, to compare with. */
	snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}", fs, fm);
	expect(api("PUT", "/snapshot/create", body), 204, NULL);
	kill(p.pid, SIGKILL);
	struct run_result r = harness_proc_finish(&p, 10);
	harness_free(&r);

	/* The diff holds every page the guest wrote (21, one of them zeroed)
	 * and only a few more: its stack and variables for the serial line. */
	static uint64_t pages[8192];
	size_t n = data_pages(dm, mem_bytes, pages, 8192);
	for (uint64_t pg = region / 4096; pg < region / 4096 + 21; pg++) {
		bool found = false;
		for (size_t i = 0; i < n && !found; i++)
			found = pages[i] == pg;
		if (!found)
			fail_msg("page %#llx written by the guest is not in the diff",
				 (unsigned long long)pg * 4096);
	}
	print_message("diff: %zu pages (21 written by the guest)\n", n);
	assert_true(n >= 21 && n <= 21 + 4);
	/* The full snapshot has far more. */
	assert_true(data_pages(fm, mem_bytes, pages, 8192) > n);

	/* A diff alone does not restore; merged onto its base it is the full
	 * snapshot byte for byte, and restores. */
	expect_restore_fails(ds, dm, dm, "is a diff snapshot");
	struct run_result mr = harness_run(MOTE("snapshot-merge", fm, dm, mm), 30, NULL);
	assert_int_not_equal(mr.status, 0);
	assert_output_contains(&mr, err, "is a diff of snapshot");
	harness_free(&mr);
	mr = harness_run(MOTE("snapshot-merge", bm, dm, mm), 30, NULL);
	assert_exit_status(&mr, 0);
	harness_free(&mr);
	assert_true(same_ram(mm, fm, mem_bytes));
	assert_false(same_ram(bm, fm, mem_bytes));
	/* The guest spins forever: stop it once it is restored and running. */
	struct harness_proc q;
	harness_spawn(&q, MOTE("--restore", ds, "--mem", mm, "--resume", "--no-api"));
	assert_true(harness_proc_wait_for(&q, "restored from", true, 30));
	usleep(200 * 1000);
	kill(q.pid, SIGTERM);
	r = harness_proc_finish(&q, 10);
	assert_exit_status(&r, 128 + SIGTERM);
	harness_free(&r);
}

int main(void)
{
	mote_bin = harness_env("MOTE_BIN");
	guest_elf = harness_env("MOTE_GUEST");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_restore_in_new_process_continues),
		cmocka_unit_test(test_in_kernel_irqchip_snapshot_restores),
		cmocka_unit_test(test_load_through_api_paused_then_resumed),
		cmocka_unit_test(test_snapshot_requests_in_wrong_state),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_kill_during_create_leaves_no_loadable_half),
		cmocka_unit_test(test_fifty_clones_share_memory),
		cmocka_unit_test(test_diff_snapshot_holds_written_pages_and_merges),
		cmocka_unit_test(test_working_set_record_and_prefetch),
		cmocka_unit_test(test_load_with_uffd_handler),
		cmocka_unit_test(test_vsock_override_gives_a_clone_its_own_socket),
		cmocka_unit_test(test_clones_reseed_from_their_host),
	};
	return cmocka_run_group_tests_name("snapshot", tests, group_setup, group_teardown);
}
