/* CPUID filtering on a fake KVM_GET_SUPPORTED_CPUID result.
 *
 * Tests named test_regression_* are regression tests for defects found and fixed
 * in vmm/ (see the comment on each). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/cpuid.h"

/* Leaf 1 ECX / EDX */
#define CX16      (1u << 13)
#define PCID      (1u << 17)
#define POPCNT    (1u << 23)
#define XSAVE     (1u << 26)
#define OSXSAVE   (1u << 27)
#define AVX       (1u << 28)
#define F16C      (1u << 29)
#define RDRAND    (1u << 30)
#define HYPERVISOR (1u << 31)
#define FMA       (1u << 12)
#define SSE3      (1u << 0)
#define PCLMUL    (1u << 1)
#define SSE42     (1u << 20)
#define HTT       (1u << 28)
#define EDX_APIC  (1u << 9)
/* Leaf 7.0 EBX / ECX */
#define FSGSBASE  (1u << 0)
#define BMI1      (1u << 3)
#define AVX2      (1u << 5)
#define ERMS      (1u << 9)
#define INVPCID   (1u << 10)
#define AVX512F   (1u << 16)
#define RDSEED    (1u << 18)
#define SMAP      (1u << 20)
#define CLFLUSHOPT (1u << 23)
#define UMIP      (1u << 2)
#define RDPID     (1u << 22)

/* Leaf 0x40000001 EAX: KVM_FEATURE_* (Documentation/virt/kvm/x86/cpuid.rst) */
#define KVM_CLOCKSOURCE2   (1u << 3)
#define KVM_ASYNC_PF       (1u << 4)
#define KVM_STEAL_TIME     (1u << 5)
#define KVM_PV_EOI         (1u << 6)
#define KVM_PV_UNHALT      (1u << 7)
#define KVM_PV_TLB_FLUSH   (1u << 9)
#define KVM_ASYNC_PF_VMEXIT (1u << 10)
#define KVM_PV_SEND_IPI    (1u << 11)
#define KVM_POLL_CONTROL   (1u << 12)
#define KVM_PV_SCHED_YIELD (1u << 13)
#define KVM_ASYNC_PF_INT   (1u << 14)
#define KVM_MSI_EXT_DEST_ID (1u << 15)
#define KVM_PV_NO_HYPERCALL (KVM_CLOCKSOURCE2 | KVM_STEAL_TIME | KVM_PV_EOI | KVM_MSI_EXT_DEST_ID)
#define KVM_PV_HYPERCALL (KVM_ASYNC_PF | KVM_PV_UNHALT | KVM_PV_TLB_FLUSH | KVM_ASYNC_PF_VMEXIT | \
			  KVM_PV_SEND_IPI | KVM_POLL_CONTROL | KVM_PV_SCHED_YIELD | KVM_ASYNC_PF_INT)
#define KVM_PV_HOST (KVM_PV_NO_HYPERCALL | KVM_PV_HYPERCALL)

#define LEAF1_ECX_HOST (SSE3 | PCLMUL | FMA | CX16 | PCID | SSE42 | POPCNT | XSAVE | OSXSAVE | \
			AVX | F16C | RDRAND)
#define LEAF7_EBX_HOST (FSGSBASE | BMI1 | AVX2 | ERMS | INVPCID | AVX512F | RDSEED | SMAP | \
			CLFLUSHOPT)
#define LEAF7_ECX_HOST (UMIP | RDPID)

struct leaf {
	uint32_t function, index, eax, ebx, ecx, edx;
};

/* What a host with 16 logical CPUs might report, run on its CPU 7. */
static const struct leaf host_leaves[] = {
	{ 0x0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69 },
	{ 0x1, 0, 0x000906ea, 0x07100800, LEAF1_ECX_HOST, 0x178bfbff | HTT | EDX_APIC },
	{ 0x4, 0, (7u << 26) | (1u << 14) | 0x121, 0x01c0003f, 0x3f, 0 },
	{ 0x4, 1, (7u << 26) | (1u << 14) | 0x122, 0x01c0003f, 0x3f, 0 },
	{ 0x6, 0, 0x77, 0x2, 0x9, 0 },
	{ 0x7, 0, 0, LEAF7_EBX_HOST, LEAF7_ECX_HOST, 0xbc000400 },
	{ 0x7, 1, 0x30, 0x1, 0x2, 0x3 },
	{ 0xa, 0, 0x07300404, 0, 0, 0x603 },
	{ 0xb, 0, 1, 2, 0x100, 7 },
	{ 0xb, 1, 4, 16, 0x201, 7 },
	{ 0xb, 2, 0, 0, 2, 7 },
	{ 0xd, 0, 0x2e7, 0xa88, 0xa88, 0 },
	{ 0xd, 1, 0xf, 0x3c0, 0x1900, 0 },
	{ 0x40000001, 0, KVM_PV_HOST, 0, 0, 0 },
	{ 0x80000001, 0, 0, 0, 0x121, 0x2c100800 },
	{ 0x80000008, 0, 0x3030, 0x1000, (2u << 16) | (7u << 12) | 0xf, 0 },
	{ 0x8000001e, 0, 7, 0x103, 0x300, 0 },
};
#define NR_HOST (sizeof(host_leaves) / sizeof(host_leaves[0]))

static struct kvm_cpuid2 *make_cpuid(const struct leaf *leaves, unsigned n)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

	assert_non_null(c);
	c->nent = n;
	for (unsigned i = 0; i < n; i++) {
		c->entries[i] = (struct kvm_cpuid_entry2){
			.function = leaves[i].function, .index = leaves[i].index,
			.eax = leaves[i].eax, .ebx = leaves[i].ebx,
			.ecx = leaves[i].ecx, .edx = leaves[i].edx,
		};
		if (leaves[i].function == 0x4 || leaves[i].function == 0x7 ||
		    leaves[i].function == 0xb || leaves[i].function == 0xd)
			c->entries[i].flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
	}
	return c;
}

static struct kvm_cpuid2 *filtered(unsigned cpu, unsigned nr, enum cpu_template tmpl)
{
	struct kvm_cpuid2 *c = make_cpuid(host_leaves, NR_HOST);

	cpuid_filter(c, cpu, nr, tmpl);
	return c;
}

static const struct kvm_cpuid_entry2 *leaf(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (unsigned i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	fail_msg("leaf %#x.%u missing", fn, idx);
	return NULL;
}

static void test_leaf1_topology_cpu1_of_2(void **state)
{
	struct kvm_cpuid2 *c = filtered(1, 2, CPU_TEMPLATE_HOST);
	const struct kvm_cpuid_entry2 *e = leaf(c, 1, 0);

	(void)state;
	assert_int_equal(e->ebx >> 24, 1);          /* initial APIC id */
	assert_int_equal((e->ebx >> 16) & 0xff, 2); /* logical processors */
	assert_int_equal(e->ebx & 0xffff, 0x0800);  /* CLFLUSH size, brand kept */
	assert_true(e->ecx & HYPERVISOR);
	assert_true(e->edx & HTT);
	assert_true(e->edx & EDX_APIC);
	assert_int_equal(e->eax, 0x000906ea);       /* family/model untouched */
	free(c);
}

static void test_leaf1_single_cpu_clears_htt(void **state)
{
	struct kvm_cpuid2 *c = filtered(0, 1, CPU_TEMPLATE_HOST);
	const struct kvm_cpuid_entry2 *e = leaf(c, 1, 0);

	(void)state;
	assert_int_equal(e->ebx >> 24, 0);
	assert_int_equal((e->ebx >> 16) & 0xff, 1);
	assert_false(e->edx & HTT);
	assert_true(e->ecx & HYPERVISOR);
	free(c);
}

static void test_leaf1_last_of_32(void **state)
{
	struct kvm_cpuid2 *c = filtered(31, 32, CPU_TEMPLATE_HOST);
	const struct kvm_cpuid_entry2 *e = leaf(c, 1, 0);

	(void)state;
	assert_int_equal(e->ebx, (31u << 24) | (32u << 16) | 0x0800);
	free(c);
}

static void test_leaf4_cores(void **state)
{
	(void)state;
	for (unsigned nr = 1; nr <= 32; nr *= 2) {
		struct kvm_cpuid2 *c = filtered(0, nr, CPU_TEMPLATE_HOST);

		for (uint32_t idx = 0; idx < 2; idx++) {
			const struct kvm_cpuid_entry2 *e = leaf(c, 4, idx);

			assert_int_equal(e->eax >> 26, nr - 1);       /* cores per package - 1 */
			assert_int_equal((e->eax >> 14) & 0xfff, 0);  /* one thread per cache */
			assert_int_equal(e->eax & 0x3ff, 0x121 + idx); /* cache type/level kept */
			assert_int_equal(e->ebx, 0x01c0003f);
		}
		free(c);
	}
}

/* Leaf 6 keeps only ARAT (the LAPIC timer always runs): without it Linux
 * wants a PIT, which the split irqchip does not have. */
static void test_power_and_pmu_leaves_zeroed(void **state)
{
	(void)state;
	for (int t = 0; t < 2; t++) {
		struct kvm_cpuid2 *c = filtered(0, 2, t ? CPU_TEMPLATE_MINIMAL : CPU_TEMPLATE_HOST);
		const struct kvm_cpuid_entry2 *six = leaf(c, 6, 0), *pmu = leaf(c, 0xa, 0);

		assert_int_equal(six->eax, 1u << 2); /* the fixture has 0x77 */
		assert_int_equal(six->ebx | six->ecx | six->edx, 0);
		assert_int_equal(pmu->eax | pmu->ebx | pmu->ecx | pmu->edx, 0);
		free(c);
	}
}

static void test_leaf_b_topology(void **state)
{
	struct kvm_cpuid2 *c = filtered(1, 2, CPU_TEMPLATE_HOST);
	const struct kvm_cpuid_entry2 *smt = leaf(c, 0xb, 0), *core = leaf(c, 0xb, 1);
	const struct kvm_cpuid_entry2 *inv = leaf(c, 0xb, 2);

	(void)state;
	/* SMT level: one thread, shift 0. */
	assert_int_equal(smt->eax, 0);
	assert_int_equal(smt->ebx, 1);
	assert_int_equal(smt->ecx, (1u << 8) | 0);
	/* Core level: two cores, shift 1. */
	assert_int_equal(core->eax, 1);
	assert_int_equal(core->ebx, 2);
	assert_int_equal(core->ecx, (2u << 8) | 1);
	/* Then an invalid level that echoes its index. */
	assert_int_equal(inv->eax, 0);
	assert_int_equal(inv->ebx, 0);
	assert_int_equal(inv->ecx, 2);
	/* x2APIC id = vCPU index at every level, never the host's 7. */
	assert_int_equal(smt->edx, 1);
	assert_int_equal(core->edx, 1);
	assert_int_equal(inv->edx, 1);
	free(c);
}

static void test_leaf_b_shift_widths(void **state)
{
	const unsigned nr[] = { 1, 2, 3, 4, 5, 8, 9, 32 };
	const unsigned shift[] = { 0, 1, 2, 2, 3, 3, 4, 5 };

	(void)state;
	for (size_t i = 0; i < sizeof(nr) / sizeof(nr[0]); i++) {
		struct kvm_cpuid2 *c = filtered(nr[i] - 1, nr[i], CPU_TEMPLATE_HOST);
		const struct kvm_cpuid_entry2 *core = leaf(c, 0xb, 1);

		assert_int_equal(core->eax, shift[i]);
		assert_int_equal(core->ebx, nr[i]);
		assert_int_equal(core->edx, nr[i] - 1);
		/* Every APIC id fits in the shift width. */
		assert_true((nr[i] - 1) >> shift[i] == 0);
		free(c);
	}
}

static void test_minimal_template_hides_features(void **state)
{
	struct kvm_cpuid2 *c = filtered(0, 1, CPU_TEMPLATE_MINIMAL);
	const struct kvm_cpuid_entry2 *l1 = leaf(c, 1, 0), *l7 = leaf(c, 7, 0);

	(void)state;
	assert_int_equal(l1->ecx & (XSAVE | OSXSAVE | AVX | F16C | FMA | POPCNT | CX16 | RDRAND |
				    PCID), 0);
	assert_int_equal(l1->ecx & (SSE3 | PCLMUL | SSE42), SSE3 | PCLMUL | SSE42);
	assert_true(l1->ecx & HYPERVISOR);
	assert_int_equal(l7->ebx & (FSGSBASE | SMAP | RDSEED | INVPCID | AVX2 | AVX512F), 0);
	assert_int_equal(l7->ebx & (BMI1 | ERMS | CLFLUSHOPT), BMI1 | ERMS | CLFLUSHOPT);
	assert_int_equal(l7->ecx, UMIP); /* RDPID gone, UMIP kept */
	assert_int_equal(l7->edx, 0xbc000400);
	for (uint32_t idx = 0; idx < 2; idx++) {
		const struct kvm_cpuid_entry2 *xs = leaf(c, 0xd, idx);

		assert_int_equal(xs->eax | xs->ebx | xs->ecx | xs->edx, 0);
	}
	/* Subleaf 1 of leaf 7 is not the feature word the template edits. */
	const struct kvm_cpuid_entry2 *l71 = leaf(c, 7, 1);
	assert_int_equal(l71->eax, 0x30);
	assert_int_equal(l71->ebx, 0x1);
	free(c);
}

static void test_host_template_keeps_features(void **state)
{
	struct kvm_cpuid2 *c = filtered(0, 1, CPU_TEMPLATE_HOST);

	(void)state;
	assert_int_equal(leaf(c, 1, 0)->ecx, LEAF1_ECX_HOST | HYPERVISOR);
	assert_int_equal(leaf(c, 7, 0)->ebx, LEAF7_EBX_HOST);
	assert_int_equal(leaf(c, 7, 0)->ecx, LEAF7_ECX_HOST);
	assert_int_equal(leaf(c, 0xd, 0)->eax, 0x2e7);
	assert_int_equal(leaf(c, 0xd, 0)->ebx, 0xa88);
	assert_int_equal(leaf(c, 0xd, 1)->eax, 0xf);
	free(c);
}

static void test_other_leaves_untouched(void **state)
{
	(void)state;
	for (int t = 0; t < 2; t++) {
		struct kvm_cpuid2 *c = filtered(3, 4, t ? CPU_TEMPLATE_MINIMAL : CPU_TEMPLATE_HOST);

		for (size_t i = 0; i < NR_HOST; i++) {
			uint32_t fn = host_leaves[i].function;

			if (fn != 0 && fn != 0x80000001)
				continue;
			const struct kvm_cpuid_entry2 *e = leaf(c, fn, host_leaves[i].index);
			assert_int_equal(e->eax, host_leaves[i].eax);
			assert_int_equal(e->ebx, host_leaves[i].ebx);
			assert_int_equal(e->ecx, host_leaves[i].ecx);
			assert_int_equal(e->edx, host_leaves[i].edx);
		}
		assert_int_equal(c->nent, NR_HOST); /* no entries added or dropped */
		free(c);
	}
}

static void test_kvm_pv_features(void **state)
{
	struct kvm_cpuid2 *host = filtered(0, 2, CPU_TEMPLATE_HOST);
	struct kvm_cpuid2 *min = filtered(0, 2, CPU_TEMPLATE_MINIMAL);

	(void)state;
	assert_int_equal(leaf(host, 0x40000001, 0)->eax, KVM_PV_HOST);
	/* The minimal template keeps what works without VMCALL/VMMCALL. */
	assert_int_equal(leaf(min, 0x40000001, 0)->eax, KVM_PV_NO_HYPERCALL);
	free(host);
	free(min);
}

static void test_amd_topology_leaves(void **state)
{
	struct kvm_cpuid2 *c = filtered(2, 4, CPU_TEMPLATE_HOST);
	const struct kvm_cpuid_entry2 *sz = leaf(c, 0x80000008, 0);
	const struct kvm_cpuid_entry2 *ext = leaf(c, 0x8000001e, 0);

	(void)state;
	/* NC = cores - 1, ApicIdSize = bits for 4 cores; PerfTscSize kept. */
	assert_int_equal(sz->ecx, (2u << 16) | (2u << 12) | 3);
	assert_int_equal(sz->eax, 0x3030); /* address sizes untouched */
	assert_int_equal(sz->ebx, 0x1000);
	/* Extended APIC id = vCPU index; one thread per core; node 0. */
	assert_int_equal(ext->eax, 2);
	assert_int_equal(ext->ebx, 2);
	assert_int_equal(ext->ecx, 0);
	free(c);

	c = filtered(0, 1, CPU_TEMPLATE_HOST);
	assert_int_equal(leaf(c, 0x80000008, 0)->ecx, 2u << 16);
	assert_int_equal(leaf(c, 0x8000001e, 0)->eax, 0);
	free(c);
}

static void test_filter_is_idempotent(void **state)
{
	struct kvm_cpuid2 *once = filtered(5, 8, CPU_TEMPLATE_MINIMAL);
	struct kvm_cpuid2 *twice = filtered(5, 8, CPU_TEMPLATE_MINIMAL);

	(void)state;
	cpuid_filter(twice, 5, 8, CPU_TEMPLATE_MINIMAL);
	assert_memory_equal(once->entries, twice->entries, NR_HOST * sizeof(once->entries[0]));
	/* Re-filtering a copy for another vCPU gives that vCPU's ids only. */
	cpuid_filter(twice, 2, 8, CPU_TEMPLATE_MINIMAL);
	assert_int_equal(leaf(twice, 1, 0)->ebx >> 24, 2);
	assert_int_equal(leaf(twice, 0xb, 0)->edx, 2);
	free(once);
	free(twice);
}

static void test_empty_cpuid(void **state)
{
	struct kvm_cpuid2 *c = make_cpuid(NULL, 0);

	(void)state;
	cpuid_filter(c, 0, 1, CPU_TEMPLATE_MINIMAL);
	assert_int_equal(c->nent, 0);
	free(c);
}

/* Regression (fixed; was vmm/cpuid.c:102, cpuid_filter): leaf 0x1f (V2 extended topology) is
 * passed through with the host's values while leaf 0xb is rewritten. KVM's
 * KVM_GET_SUPPORTED_CPUID copies 0x1f from the host on CPUs that have it
 * (Alder Lake, Sapphire Rapids and later), and Linux prefers 0x1f over 0xb
 * (detect_extended_topology_leaf()), so such guests see the host thread
 * count and the host CPU's x2APIC id on every vCPU. Fix: give 0x1f the same
 * treatment as 0xb (case 0xb: case 0x1f:). */
static void test_regression_leaf_1f_matches_leaf_b(void **state)
{
	static const struct leaf with_1f[] = {
		{ 0xb, 0, 1, 2, 0x100, 7 },
		{ 0xb, 1, 4, 16, 0x201, 7 },
		{ 0x1f, 0, 1, 2, 0x100, 7 },
		{ 0x1f, 1, 4, 16, 0x201, 7 },
		{ 0x1f, 2, 0, 0, 2, 7 },
	};
	struct kvm_cpuid2 *c = make_cpuid(with_1f, 5);
	char why[128] = "";

	(void)state;
	cpuid_filter(c, 1, 2, CPU_TEMPLATE_HOST);
	for (uint32_t idx = 0; idx < 3 && !why[0]; idx++) {
		const struct kvm_cpuid_entry2 *e = leaf(c, 0x1f, idx);

		if (e->edx != 1)
			snprintf(why, sizeof(why), "leaf 0x1f.%u reports x2APIC id %u on vCPU 1",
				 idx, e->edx);
	}
	if (!why[0] && (leaf(c, 0x1f, 0)->ebx != leaf(c, 0xb, 0)->ebx ||
			leaf(c, 0x1f, 1)->ebx != leaf(c, 0xb, 1)->ebx ||
			leaf(c, 0x1f, 1)->eax != leaf(c, 0xb, 1)->eax))
		snprintf(why, sizeof(why), "leaf 0x1f disagrees with leaf 0xb on the topology");
	free(c);
	if (why[0])
		fail_msg("%s", why);
}

static void test_template_parse(void **state)
{
	enum cpu_template t = CPU_TEMPLATE_MINIMAL;

	(void)state;
	assert_int_equal(cpu_template_parse("host", &t), 0);
	assert_int_equal(t, CPU_TEMPLATE_HOST);
	assert_int_equal(cpu_template_parse("minimal", &t), 0);
	assert_int_equal(t, CPU_TEMPLATE_MINIMAL);
	const char *bad[] = { "", "Host", "HOST", "minimal ", " host", "hostx", "min", "t2",
			      "minimal\n" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = CPU_TEMPLATE_MINIMAL;
		assert_int_equal(cpu_template_parse(bad[i], &t), -EINVAL);
		assert_int_equal(t, CPU_TEMPLATE_MINIMAL); /* untouched on error */
	}
}

int main(void)
{
	struct CMUnitTest tests[] = {
		cmocka_unit_test(test_leaf1_topology_cpu1_of_2),
		cmocka_unit_test(test_leaf1_single_cpu_clears_htt),
		cmocka_unit_test(test_leaf1_last_of_32),
		cmocka_unit_test(test_leaf4_cores),
		cmocka_unit_test(test_power_and_pmu_leaves_zeroed),
		cmocka_unit_test(test_leaf_b_topology),
		cmocka_unit_test(test_leaf_b_shift_widths),
		cmocka_unit_test(test_minimal_template_hides_features),
		cmocka_unit_test(test_host_template_keeps_features),
		cmocka_unit_test(test_other_leaves_untouched),
		cmocka_unit_test(test_kvm_pv_features),
		cmocka_unit_test(test_amd_topology_leaves),
		cmocka_unit_test(test_filter_is_idempotent),
		cmocka_unit_test(test_empty_cpuid),
		cmocka_unit_test(test_template_parse),
		cmocka_unit_test(test_regression_leaf_1f_matches_leaf_b),
	};

	size_t n = sizeof(tests) / sizeof(tests[0]);

	return _cmocka_run_group_tests("cpuid", tests, n, NULL, NULL);
}
