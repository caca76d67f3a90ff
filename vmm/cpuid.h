/* Guest CPUID: what KVM supports, with topology, the hypervisor bit and
 * an optional template applied per vCPU. */
#ifndef MOTE_VMM_CPUID_H
#define MOTE_VMM_CPUID_H

#include <linux/kvm.h>

enum cpu_template {
	CPU_TEMPLATE_HOST,    /* everything KVM offers */
	/* Hides features a software (emulating) nested hypervisor cannot
	 * execute at guest CPL0: XSAVE and AVX*, POPCNT, CMPXCHG16B, RDRAND,
	 * RDSEED, SMAP, FSGSBASE, RDPID, INVPCID, PCID, and the KVM paravirt
	 * features that issue hypercalls (PV IPIs, unhalt kicks, yield,
	 * async page faults, PV TLB flush). */
	CPU_TEMPLATE_MINIMAL,
};

int cpu_template_parse(const char *name, enum cpu_template *out);

/* Adjusts KVM_GET_SUPPORTED_CPUID output for vCPU cpu_index of nr_cpus. */
void cpuid_filter(struct kvm_cpuid2 *cpuid, unsigned cpu_index, unsigned nr_cpus,
		  enum cpu_template tmpl);

#endif
