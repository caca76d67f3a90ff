/* mote-agent's pure parts: entitlement and admission arithmetic, parsing
 * a GET /demand answer, the Prometheus text, and the cgroup writes (v1
 * and v2) on a directory tree under /tmp laid out like cgroupfs. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/agent.h"

static void test_entitlement(void **state)
{
	(void)state;
	struct agent_policy p;
	struct agent_entitlement e;

	agent_policy_default(&p);
	agent_entitlement(&p, 0.8, 1, &e);
	assert_int_equal(e.shares_v1, 819);
	assert_int_equal(e.weight_v2, 80);
	assert_int_equal(e.period_us, 100000);
	assert_int_equal(e.quota_us, 100000); /* 0.8 x 1.25 = 1.0 CPU */
	/* The cap never exceeds the VM's vCPUs, nor goes below the minimum. */
	agent_entitlement(&p, 1.9, 2, &e);
	assert_int_equal(e.quota_us, 200000);
	agent_entitlement(&p, 0.0, 1, &e);
	assert_int_equal(e.shares_v1, 2);
	assert_int_equal(e.weight_v2, 1);
	assert_int_equal(e.quota_us, 10000);
	agent_entitlement(&p, NAN, 0, &e);
	assert_int_equal(e.shares_v1, 2);
	/* Shares only. */
	p.cap = false;
	agent_entitlement(&p, 0.5, 1, &e);
	assert_int_equal(e.quota_us, -1);
	assert_int_equal(e.shares_v1, 512);
}

static void test_admission(void **state)
{
	(void)state;
	struct agent_admission a = { .capacity_cpus = 2, .overcommit = 1 };
	char msg[512];
	unsigned fit;

	/* The paper's host: 2 CPUs; each 80 % VM needs 0.8. Two fit (1.6). */
	assert_int_equal(agent_admit(&a, 0, 0.8, 2, &fit, msg, sizeof(msg)), 1);
	assert_int_equal(fit, 2);
	assert_non_null(strstr(msg, "admitted"));
	assert_int_equal(agent_admit(&a, 0, 0.8, 3, &fit, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "refused: 3 more VM(s) of 0.80 CPU demand"));
	assert_non_null(strstr(msg, "2.40 CPUs of demand, over its limit of 2.00 CPUs"));
	assert_non_null(strstr(msg, "at most 2 fit"));
	/* With 8 CPUs of demand already (the 10-VM table), nothing fits... */
	assert_int_equal(agent_admit(&a, 8.0, 0.8, 1, &fit, msg, sizeof(msg)), 0);
	assert_int_equal(fit, 0);
	/* ...unless the operator accepts 5x overcommit: 10 - 8 = 2 more. */
	a.overcommit = 5;
	assert_int_equal(agent_admit(&a, 8.0, 0.8, 2, &fit, msg, sizeof(msg)), 1);
	assert_int_equal(fit, 2);
	assert_int_equal(agent_admit(&a, 8.0, 0.8, 0, &fit, msg, sizeof(msg)), 1);
	assert_int_equal(agent_admit(&a, 8.0, 0, 1, &fit, msg, sizeof(msg)), -EINVAL);
	a.capacity_cpus = 0;
	assert_int_equal(agent_admit(&a, 0, 0.5, 1, &fit, msg, sizeof(msg)), -EINVAL);
}

static const char demand_json[] =
	"{\"pid\":1234,\"period_ms\":250,\"window\":12,\"ewma_alpha\":0.3,\"samples\":40,"
	"\"halt_polling\":\"disabled\","
	"\"vm\":{\"vcpus\":2,\"last\":{\"usage\":0.4,\"demand\":1.5,\"ready\":0.6},"
	"\"window\":{\"usage\":0.41,\"demand\":1.6,\"ready\":0.7},"
	"\"ewma\":{\"usage\":0.42,\"demand\":1.55,\"ready\":0.65}},"
	"\"vcpus\":[{\"id\":0,\"window\":{\"usage\":0.2,\"demand\":0.8,\"ready\":0.35},"
	"\"kvm\":{\"exits\":10,\"halt_exits\":4}},"
	"{\"id\":1,\"window\":{\"usage\":0.21,\"demand\":0.8,\"ready\":0.35},\"kvm\":{}}],"
	"\"memory\":{\"guest_bytes\":268435456,\"working_set_method\":\"sampled-zap-pagemap\","
	"\"resident_bytes\":40000000,\"working_set_bytes\":33554432},"
	"\"io\":[{\"device\":\"block\",\"id\":\"root\\\"fs\",\"ops\":7,\"read_ops\":5,"
	"\"write_ops\":2,\"read_bytes\":4096,\"write_bytes\":1024,\"rate_limited_events\":1,"
	"\"throttled_ns\":1500000000}]}";

static void test_parse_demand(void **state)
{
	(void)state;
	struct agent_vm vm = { .name = "vm1" };
	char err[160];

	assert_int_equal(agent_parse_demand(demand_json, &vm, err, sizeof(err)), 0);
	assert_int_equal(vm.pid, 1234);
	assert_int_equal(vm.nr_vcpus, 2);
	assert_true(fabs(vm.window.demand - 1.6) < 1e-9);
	assert_true(fabs(vm.ewma.usage - 0.42) < 1e-9);
	assert_true(fabs(vm.vcpu[1].usage - 0.21) < 1e-9);
	assert_int_equal(vm.nr_exits[0], 2);
	assert_string_equal(vm.exits[0][1].name, "halt_exits");
	assert_int_equal(vm.exits[0][1].value, 4);
	assert_true(vm.has_working_set);
	assert_int_equal(vm.working_set_bytes, 33554432);
	assert_int_equal(vm.nr_io, 1);
	assert_string_equal(vm.io[0].id, "root\"fs");
	assert_int_equal(vm.io[0].write_bytes, 1024);
	assert_int_equal(vm.io[0].rate_limited, 1);
	assert_int_equal(vm.io[0].throttled_ns, 1500000000);
	assert_int_equal(agent_parse_demand("{", &vm, err, sizeof(err)), -EINVAL);
	assert_int_equal(agent_parse_demand("{\"vm\":1}", &vm, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no vm.window"));
}

static void test_prometheus_text(void **state)
{
	(void)state;
	struct agent_vm vms[2] = { { .name = "vm1", .up = true }, { .name = "gone" } };
	struct agent_admission a = { .capacity_cpus = 2, .overcommit = 1.5 };
	char err[160], *buf = NULL;
	size_t len = 0;

	assert_int_equal(agent_parse_demand(demand_json, &vms[0], err, sizeof(err)), 0);
	vms[0].shares = 1638;
	vms[0].quota_us = 200000;
	vms[0].period_us = 100000;
	FILE *f = open_memstream(&buf, &len);
	assert_int_equal(agent_prom_render(f, vms, 2, &a, 5, 1), 0);
	fclose(f);
	assert_non_null(strstr(buf, "# TYPE mote_vm_demand_cpus gauge\n"));
	assert_non_null(strstr(buf, "mote_vm_demand_cpus{vm=\"vm1\"} 1.6\n"));
	assert_non_null(strstr(buf, "mote_vm_usage_cpus{vm=\"vm1\"} 0.41\n"));
	assert_non_null(strstr(buf, "mote_vcpu_demand{vm=\"vm1\",vcpu=\"1\"} 0.8\n"));
	assert_non_null(strstr(buf, "mote_vcpu_kvm_total{vm=\"vm1\",vcpu=\"0\",stat=\"halt_exits\"} 4\n"));
	assert_non_null(strstr(buf, "mote_vm_working_set_bytes{vm=\"vm1\"} 3.35544e+07\n"));
	/* Label values are escaped. */
	assert_non_null(strstr(buf, "id=\"root\\\"fs\",dir=\"write\"} 1024\n"));
	assert_non_null(strstr(buf, "mote_vm_cpu_cap_cpus{vm=\"vm1\"} 2\n"));
	assert_non_null(strstr(buf, "# TYPE mote_vm_io_throttled_seconds_total counter\n"));
	assert_non_null(strstr(buf, "mote_vm_io_throttled_seconds_total{vm=\"vm1\",device=\"block\","
				    "id=\"root\\\"fs\"} 1.5\n"));
	assert_non_null(strstr(buf, "mote_vm_io_rate_limited_total{vm=\"vm1\",device=\"block\","
				    "id=\"root\\\"fs\"} 1\n"));
	assert_non_null(strstr(buf, "mote_host_demand_limit_cpus 3\n"));
	/* A VM that did not answer is only "up 0". */
	assert_non_null(strstr(buf, "mote_vm_up{vm=\"gone\"} 0\n"));
	assert_null(strstr(buf, "mote_vm_demand_cpus{vm=\"gone\"}"));
	assert_non_null(strstr(buf, "mote_agent_scrape_errors_total 1\n"));
	free(buf);
}

static char tree[64];

static void mkfile(const char *dir, const char *name)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);
}

static void expect_file(const char *dir, const char *name, const char *want)
{
	char path[512], got[128] = "";

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(got, 1, sizeof(got) - 1, f);
	got[n] = '\0';
	fclose(f);
	assert_string_equal(got, want);
}

/* A tree under /tmp laid out like cgroupfs (cg points at it): the parent
 * "mote" and, in vm_dir, its child vm1 with the interface files named
 * (NULL-terminated). Real cgroupfs creates those with the directory; here
 * they exist beforehand (the agent only writes existing files). v2 has
 * cgroup.subtree_control in the root and the parent too. */
static void make_tree(struct agent_cgroup *cg, char *vm_dir, size_t len, const char *const files[])
{
	snprintf(tree, sizeof(tree), "/tmp/mote-agent-cg-XXXXXX");
	assert_non_null(mkdtemp(tree));
	snprintf(cg->root, sizeof(cg->root), "%s", tree);
	snprintf(cg->parent, sizeof(cg->parent), "mote");
	if (cg->version == 2)
		mkfile(tree, "cgroup.subtree_control");
	snprintf(vm_dir, len, "%s/mote", tree);
	assert_int_equal(mkdir(vm_dir, 0755), 0);
	if (cg->version == 2)
		mkfile(vm_dir, "cgroup.subtree_control");
	snprintf(vm_dir, len, "%s/mote/vm1", tree);
	assert_int_equal(mkdir(vm_dir, 0755), 0);
	for (int i = 0; files[i]; i++)
		mkfile(vm_dir, files[i]);
}

static void remove_tree(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tree);
	assert_int_equal(system(cmd), 0);
}

static void test_cgroup_v1(void **state)
{
	(void)state;
	struct agent_cgroup cg = { .version = 1 };
	struct agent_entitlement e = { .shares_v1 = 819, .weight_v2 = 80, .quota_us = 100000,
				       .period_us = 100000 };
	static const char *const files[] = { "cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us",
					     "cgroup.procs", NULL };
	char dir[256], err[256];

	make_tree(&cg, dir, sizeof(dir), files);
	assert_int_equal(agent_cgroup_apply(&cg, "vm1", 4321, &e, err, sizeof(err)), 0);
	expect_file(dir, "cpu.shares", "819");
	expect_file(dir, "cpu.cfs_quota_us", "100000");
	expect_file(dir, "cgroup.procs", "4321");
	/* No cap: quota -1. */
	e.quota_us = -1;
	assert_int_equal(agent_cgroup_apply(&cg, "vm1", 0, &e, err, sizeof(err)), 0);
	expect_file(dir, "cpu.cfs_quota_us", "-1");
	/* A name that would escape the parent is refused. */
	assert_int_equal(agent_cgroup_apply(&cg, "../x", 0, &e, err, sizeof(err)), -EINVAL);
	/* A missing interface file is an error naming it. */
	assert_int_equal(agent_cgroup_apply(&cg, "vm2", 0, &e, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cpu.shares"));
	remove_tree();
}

static void test_cgroup_v2(void **state)
{
	(void)state;
	struct agent_cgroup cg = { .version = 2 };
	struct agent_entitlement e = { .shares_v1 = 819, .weight_v2 = 80, .quota_us = 125000,
				       .period_us = 100000 };
	static const char *const files[] = { "cpu.weight", "cpu.max", "cgroup.procs", NULL };
	char dir[256], err[256];

	make_tree(&cg, dir, sizeof(dir), files);
	assert_int_equal(agent_cgroup_apply(&cg, "vm1", 99, &e, err, sizeof(err)), 0);
	expect_file(tree, "cgroup.subtree_control", "+cpu");
	expect_file(dir, "cpu.weight", "80");
	expect_file(dir, "cpu.max", "125000 100000");
	e.quota_us = -1;
	assert_int_equal(agent_cgroup_apply(&cg, "vm1", 0, &e, err, sizeof(err)), 0);
	expect_file(dir, "cpu.max", "max 100000");
	remove_tree();
}

static void test_place_plan(void **state)
{
	(void)state;
	struct agent_host hosts[4] = { { "h0", 1.0 }, { "h1", 1.0 }, { "h2", 1.0 }, { "h3", 1.0 } };
	/* The paper's host: 8 VMs of 0.25 on h0 (2 CPUs of demand on 1). */
	double demand[9] = { 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.1 };
	int host_of[9] = { 0, 0, 0, 0, 0, 0, 0, 0, 1 };
	struct agent_move m[16];
	unsigned n;
	char msg[256];

	/* One step: 3 stay (0.75 <= 0.9), 5 move, largest room first. */
	assert_int_equal(agent_place_plan(demand, host_of, 9, hosts, 4, 0.9, m, 16, &n, msg,
					  sizeof(msg)), 5);
	assert_int_equal(n, 5);
	double load[4] = { 0.75, 0.1, 0, 0 };
	for (unsigned k = 0; k < n; k++) {
		assert_int_equal(m[k].from, 0);
		assert_int_not_equal(m[k].to, 0);
		load[m[k].to] += demand[m[k].vm];
	}
	for (int h = 0; h < 4; h++)
		assert_true(load[h] <= 0.9 + 1e-9);
	/* Nothing over capacity: nothing moves. */
	double small[2] = { 0.3, 0.3 };
	int at[2] = { 0, 0 };
	assert_int_equal(agent_place_plan(small, at, 2, hosts, 4, 0.9, m, 16, &n, msg,
					  sizeof(msg)), 0);
	/* A VM on no host is placed. */
	at[1] = -1;
	assert_int_equal(agent_place_plan(small, at, 2, hosts, 4, 0.9, m, 16, &n, msg,
					  sizeof(msg)), 1);
	assert_int_equal(m[0].vm, 1);
	assert_int_equal(m[0].from, -1);
	/* Too little room anywhere: refused, with how much is missing. */
	struct agent_host two[2] = { { "a", 0.5 }, { "b", 0.5 } };
	double big[4] = { 0.3, 0.3, 0.3, 0.3 };
	int on_a[4] = { 0, 0, 0, 0 };
	assert_int_equal(agent_place_plan(big, on_a, 4, two, 2, 0.9, m, 16, &n, msg, sizeof(msg)),
			 -ENOSPC);
	assert_int_equal(n, 1); /* a keeps one, b takes one, two fit nowhere */
	assert_non_null(strstr(msg, "0.60 CPUs of demand fit on no host"));
	assert_int_equal(agent_place_plan(big, on_a, 4, two, 0, 0.9, m, 16, &n, msg, sizeof(msg)),
			 -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entitlement),
		cmocka_unit_test(test_admission),
		cmocka_unit_test(test_parse_demand),
		cmocka_unit_test(test_prometheus_text),
		cmocka_unit_test(test_cgroup_v1),
		cmocka_unit_test(test_cgroup_v2),
		cmocka_unit_test(test_place_plan),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
