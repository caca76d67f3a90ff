#include "vmm/cpuid.h"

#include <errno.h>
#include <string.h>

/* Leaf 1 */
#define L1_ECX_PCLMUL    (1u << 1)
#define L1_ECX_CX16      (1u << 13)
#define L1_ECX_PCID      (1u << 17)
#define L1_ECX_POPCNT    (1u << 23)
#define L1_ECX_TSC_DEADLINE (1u << 24)
#define L1_ECX_XSAVE     (1u << 26)
#define L1_ECX_OSXSAVE   (1u << 27)
#define L1_ECX_AVX       (1u << 28)
#define L1_ECX_F16C      (1u << 29)
#define L1_ECX_RDRAND    (1u << 30)
#define L1_ECX_HYPERVISOR (1u << 31)
#define CPUID6_EAX_ARAT (1u << 2)
#define L1_ECX_FMA       (1u << 12)
#define L1_EDX_HTT       (1u << 28)
/* Leaf 7.0 */
#define L7_EBX_FSGSBASE  (1u << 0)
#define L7_EBX_AVX2      (1u << 5)
#define L7_EBX_INVPCID   (1u << 10)
#define L7_EBX_AVX512   ((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | \
			 (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31))
#define L7_EBX_RDSEED    (1u << 18)
#define L7_EBX_SMAP      (1u << 20)
#define L7_ECX_RDPID     (1u << 22)

/* Leaf 0x40000001 eax (KVM_FEATURE_* bit numbers from the KVM ABI). */
#define KVM_PV_ASYNC_PF        (1u << 4)
#define KVM_PV_UNHALT          (1u << 7)
#define KVM_PV_TLB_FLUSH       (1u << 9)
#define KVM_PV_ASYNC_PF_VMEXIT (1u << 10)
#define KVM_PV_SEND_IPI        (1u << 11)
#define KVM_PV_POLL_CONTROL    (1u << 12)
#define KVM_PV_SCHED_YIELD     (1u << 13)
#define KVM_PV_ASYNC_PF_INT    (1u << 14)

int cpu_template_parse(const char *name, enum cpu_template *out)
{
	if (strcmp(name, "host") == 0)
		*out = CPU_TEMPLATE_HOST;
	else if (strcmp(name, "minimal") == 0)
		*out = CPU_TEMPLATE_MINIMAL;
	else
		return -EINVAL;
	return 0;
}

static unsigned bits_for(unsigned n)
{
	unsigned b = 0;

	while ((1u << b) < n)
		b++;
	return b;
}

void cpuid_filter(struct kvm_cpuid2 *cpuid, unsigned cpu_index, unsigned nr_cpus,
		  enum cpu_template tmpl)
{
	for (unsigned i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		switch (e->function) {
		case 1:
			e->ebx &= 0x0000ffff; /* keep brand index and CLFLUSH size */
			e->ebx |= (cpu_index & 0xff) << 24; /* initial APIC id */
			e->ebx |= (nr_cpus & 0xff) << 16;   /* logical processors */
			e->ecx |= L1_ECX_HYPERVISOR;
			if (nr_cpus > 1)
				e->edx |= L1_EDX_HTT;
			else
				e->edx &= ~L1_EDX_HTT;
			if (tmpl == CPU_TEMPLATE_MINIMAL)
				e->ecx &= ~(L1_ECX_CX16 | L1_ECX_PCID | L1_ECX_POPCNT | L1_ECX_XSAVE |
					    L1_ECX_OSXSAVE | L1_ECX_AVX | L1_ECX_F16C | L1_ECX_FMA |
					    L1_ECX_RDRAND);
			break;
		case 4:
			/* One core per package per vCPU count: cores-1 in 31:26. */
			e->eax &= 0x3ff;
			e->eax |= ((nr_cpus - 1) & 0x3f) << 26;
			break;
		case 6:
			/* No thermal or power management in a microVM, but ARAT
			 * (KVM's LAPIC timer runs in every C-state): without it
			 * Linux insists on a PIT, which the split irqchip lacks. */
			e->eax &= CPUID6_EAX_ARAT;
			e->ebx = e->ecx = e->edx = 0;
			break;
		case 7:
			if (e->index == 0 && tmpl == CPU_TEMPLATE_MINIMAL) {
				e->ebx &= ~(L7_EBX_FSGSBASE | L7_EBX_AVX2 | L7_EBX_INVPCID |
					    L7_EBX_RDSEED | L7_EBX_SMAP);
				e->ebx &= ~L7_EBX_AVX512;
				e->ecx &= ~L7_ECX_RDPID;
			}
			break;
		case 0xa:
			/* No PMU: perf counters are a side channel and cost exits. */
			e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		case 0xb:
		case 0x1f: /* V2 extended topology; Linux prefers it when present */
			/* x2APIC topology: each vCPU is one core with one thread. */
			e->edx = cpu_index;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1u << 8) | 0;
			} else if (e->index == 1) {
				e->eax = bits_for(nr_cpus);
				e->ebx = nr_cpus;
				e->ecx = (2u << 8) | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		case 0xd:
			if (tmpl == CPU_TEMPLATE_MINIMAL)
				e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		case 0x40000001:
			/* KVM paravirt features. The minimal template drops the ones
			 * that need hypercalls (VMCALL/VMMCALL), which a software
			 * nested hypervisor may fail to emulate (seen: an endless
			 * VMCALL retry in PV IPI sending during SMP bring-up). */
			if (tmpl == CPU_TEMPLATE_MINIMAL)
				e->eax &= ~(KVM_PV_UNHALT | KVM_PV_SEND_IPI | KVM_PV_SCHED_YIELD |
					    KVM_PV_POLL_CONTROL | KVM_PV_ASYNC_PF | KVM_PV_ASYNC_PF_INT |
					    KVM_PV_ASYNC_PF_VMEXIT | KVM_PV_TLB_FLUSH);
			break;
		case 0x80000008:
			/* AMD: cores per package - 1, and the APIC id bits they use. */
			e->ecx = (e->ecx & ~0xf0ffu) | ((nr_cpus - 1) & 0xff) |
				 (bits_for(nr_cpus) << 12);
			break;
		case 0x8000001e:
			/* AMD extended APIC id; one core per compute unit, node 0. */
			e->eax = cpu_index;
			e->ebx = cpu_index & 0xff;
			e->ecx = 0;
			break;
		default:
			break;
		}
	}
}
