/* vCPU set-up and the per-vCPU thread: KVM_RUN and exit dispatch only. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "metrics/sources.h"
#include "vmm/layout.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define MSR_IA32_SYSENTER_CS  0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_TSC          0x10
#define MSR_IA32_MISC_ENABLE  0x1a0
#define MSR_MTRR_DEF_TYPE     0x2ff
#define MSR_STAR              0xc0000081
#define MSR_LSTAR             0xc0000082
#define MSR_CSTAR             0xc0000083
#define MSR_SYSCALL_MASK      0xc0000084
#define MSR_KERNEL_GS_BASE    0xc0000102
#define MISC_ENABLE_FAST_STRING 1ULL
#define MTRR_ENABLE_WB        ((1ULL << 11) | 6)

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

#define X86_CR0_PE 0x1ULL
#define X86_CR0_ET 0x10ULL
#define X86_CR0_PG 0x80000000ULL
#define X86_CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

int vcpu_kick_signal(void)
{
	return SIGRTMIN;
}

static void vcpu_kick_handler(int sig)
{
	(void)sig; /* only here to interrupt KVM_RUN with EINTR */
}

int vcpu_install_kick_handler(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };

	sigemptyset(&sa.sa_mask);
	return sigaction(vcpu_kick_signal(), &sa, NULL) < 0 ? -errno : 0;
}

static int vcpu_set_cpuid(struct vcpu *v)
{
	/* A restore: the table the guest ran with, as saved. */
	if (v->vm->cfg.saved_cpuid)
		return ioctl(v->fd, KVM_SET_CPUID2, v->vm->cfg.saved_cpuid[v->index]) < 0 ? -errno
											    : 0;
	const struct kvm_cpuid2 *src = v->vm->cpuid;
	size_t sz = sizeof(*src) + src->nent * sizeof(src->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	int ret = 0;

	if (!c)
		return -ENOMEM;
	memcpy(c, src, sz);
	cpuid_filter(c, v->index, v->vm->cfg.nr_vcpus, v->vm->cfg.cpu_template);
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		ret = -errno;
	free(c);
	return ret;
}

static int vcpu_set_msrs(struct vcpu *v)
{
	static const uint32_t zeroed[] = {
		MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP, MSR_STAR,
		MSR_CSTAR, MSR_KERNEL_GS_BASE, MSR_SYSCALL_MASK, MSR_LSTAR, MSR_IA32_TSC,
	};
	enum { N = sizeof(zeroed) / sizeof(zeroed[0]) + 2 };
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[N];
	} m;

	memset(&m, 0, sizeof(m));
	for (unsigned i = 0; i < N - 2; i++)
		m.e[i].index = zeroed[i];
	m.e[N - 2] = (struct kvm_msr_entry){ .index = MSR_IA32_MISC_ENABLE,
					      .data = MISC_ENABLE_FAST_STRING };
	/* Without MTRRs enabled Linux maps all memory uncached. */
	m.e[N - 1] = (struct kvm_msr_entry){ .index = MSR_MTRR_DEF_TYPE, .data = MTRR_ENABLE_WB };
	m.hdr.nmsrs = N;
	int n = ioctl(v->fd, KVM_SET_MSRS, &m);
	if (n < 0)
		return -errno;
	if (n != N)
		log_debug("vCPU %u: KVM accepted %d of %d boot MSRs", v->index, n, N);
	return 0;
}

static int vcpu_set_lapic(struct vcpu *v)
{
	struct kvm_lapic_state st;

	if (ioctl(v->fd, KVM_GET_LAPIC, &st) < 0)
		return -errno;
	uint32_t *lvt0 = (uint32_t *)(st.regs + APIC_LVT0);
	uint32_t *lvt1 = (uint32_t *)(st.regs + APIC_LVT1);
	/* LINT0 takes the 8259's ExtINT, LINT1 NMI: what firmware sets up
	 * and what the MP table promises. */
	*lvt0 = (*lvt0 & ~0x700u) | (APIC_MODE_EXTINT << 8);
	*lvt1 = (*lvt1 & ~0x700u) | (APIC_MODE_NMI << 8);
	if (ioctl(v->fd, KVM_SET_LAPIC, &st) < 0)
		return -errno;
	return 0;
}

static int vcpu_set_fpu(struct vcpu *v)
{
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };

	return ioctl(v->fd, KVM_SET_FPU, &fpu) < 0 ? -errno : 0;
}

static struct kvm_segment seg_flat(uint16_t sel, uint8_t type, bool code64)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = code64 ? 0 : 1, .s = 1, .l = code64 ? 1 : 0, .g = 1,
	};
}

/* The boot vCPU starts where the protocol says: PVH in 32-bit protected
 * mode with paging off and %ebx at the start info; Linux in 64-bit mode
 * with identity paging and %rsi at the zero page. */
static int vcpu_set_boot_regs(struct vcpu *v)
{
	const struct boot_info *bi = &v->vm->boot;
	struct kvm_sregs s;
	struct kvm_regs r;

	if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	struct kvm_segment data = seg_flat(GDT_SEL_DATA, 0x3, false);
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.tr = (struct kvm_segment){ .base = 0, .limit = 0xffff, .selector = GDT_SEL_TSS,
				     .type = 0xb, .present = 1, .s = 0 };
	s.gdt.base = LAYOUT_GDT_ADDR;
	s.gdt.limit = 6 * 8 - 1;
	s.idt.base = 0;
	s.idt.limit = 0;
	memset(&r, 0, sizeof(r));
	r.rflags = 0x2;
	r.rip = bi->entry;
	if (bi->protocol == BOOT_PROTO_PVH) {
		s.cs = seg_flat(GDT_SEL_CODE32, 0xb, false);
		s.cr0 = X86_CR0_PE | X86_CR0_ET;
		s.cr4 = 0;
		s.efer = 0;
		r.rbx = LAYOUT_PVH_INFO_ADDR;
	} else {
		s.cs = seg_flat(GDT_SEL_CODE64, 0xb, true);
		s.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
		s.cr3 = LAYOUT_PML4_ADDR;
		s.cr4 = X86_CR4_PAE;
		s.efer = EFER_LME | EFER_LMA;
		r.rsi = LAYOUT_ZERO_PAGE_ADDR;
		r.rsp = r.rbp = LAYOUT_BOOT_STACK;
	}
	if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0)
		return -errno;
	if (ioctl(v->fd, KVM_SET_REGS, &r) < 0)
		return -errno;
	return 0;
}

int vcpu_init(struct vm *vm, struct vcpu *v, unsigned index)
{
	const char *step;
	int ret;

	memset(v, 0, sizeof(*v));
	v->vm = vm;
	v->index = index;
	atomic_init(&v->schedstat_fd, -1);
	v->stats_fd = -1;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (v->fd < 0) {
		log_error("KVM_CREATE_VCPU %u: %s", index, strerror(errno));
		return MOTE_EXIT_KVM;
	}
	if (vm->cfg.kvm_stats)
		v->stats_fd = ioctl(v->fd, KVM_GET_STATS_FD, 0);
	v->run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		log_error("mmap of vCPU %u run area: %s", index, strerror(errno));
		return MOTE_EXIT_KVM;
	}
	step = "KVM_SET_CPUID2";
	ret = vcpu_set_cpuid(v);
	if (!ret) {
		step = "KVM_SET_MSRS";
		ret = vcpu_set_msrs(v);
	}
	if (!ret) {
		step = "KVM_SET_LAPIC";
		ret = vcpu_set_lapic(v);
	}
	if (!ret) {
		step = "KVM_SET_FPU";
		ret = vcpu_set_fpu(v);
	}
	/* Application processors wait for INIT/SIPI in the in-kernel LAPIC. */
	if (!ret && index == 0) {
		step = "boot registers";
		ret = vcpu_set_boot_regs(v);
	}
	if (ret) {
		log_error("vCPU %u: %s failed: %s", index, step, strerror(-ret));
		return MOTE_EXIT_KVM;
	}
	return 0;
}

static void vcpu_print_segment(const char *name, const struct kvm_segment *s)
{
	fprintf(stderr, "  %-3s sel=%04x base=%016llx limit=%08x type=%x dpl=%u l=%u db=%u\n", name,
		s->selector, (unsigned long long)s->base, s->limit, s->type, s->dpl, s->l, s->db);
}

void vcpu_dump_state(const struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		log_error("vCPU %u: cannot read registers: %s", v->index, strerror(errno));
		return;
	}
	fprintf(stderr,
		"vCPU %u registers:\n"
		"  rip=%016llx rsp=%016llx rflags=%016llx\n"
		"  rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx\n"
		"  rsi=%016llx rdi=%016llx rbp=%016llx\n"
		"  r8 =%016llx r9 =%016llx r10=%016llx r11=%016llx\n"
		"  r12=%016llx r13=%016llx r14=%016llx r15=%016llx\n"
		"  cr0=%016llx cr2=%016llx cr3=%016llx cr4=%016llx efer=%016llx\n"
		"  gdt=%016llx/%04x idt=%016llx/%04x\n",
		v->index, r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp,
		r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, s.cr0, s.cr2, s.cr3, s.cr4,
		s.efer, s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit);
	vcpu_print_segment("cs", &s.cs);
	vcpu_print_segment("ss", &s.ss);
	vcpu_print_segment("ds", &s.ds);
	vcpu_print_segment("tr", &s.tr);
}

static void vcpu_handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

	/* String I/O (rep outsb) arrives as count items back to back. */
	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		if (bus_dispatch(&v->vm->pio, run->io.port, data, run->io.size, is_write) < 0) {
			if (!is_write)
				memset(data, 0xff, run->io.size); /* floating ISA bus */
		}
	}
}

static void vcpu_handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t len = run->mmio.len;

	if (len > sizeof(run->mmio.data))
		len = sizeof(run->mmio.data);
	if (bus_dispatch(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len,
			 run->mmio.is_write) < 0 && !run->mmio.is_write)
		memset(run->mmio.data, 0, len);
}

/* Under a software nested hypervisor the emulator cannot execute int3 at
 * CPL0 (Linux's int3_selftest does). Do what the CPU would have done:
 * step past the 0xCC and raise #BP. On real VT-x/AMD-V this never runs. */
static bool vcpu_try_emulate_int3(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_vcpu_events ev;

	if (v->run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION)
		return false;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return false;
	struct kvm_translation tr = { .linear_address = s.cs.base + r.rip };
	if (ioctl(v->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
		return false;
	uint8_t insn;
	if (guest_mem_read(&v->vm->mem, tr.physical_address, &insn, 1) < 0 || insn != 0xcc)
		return false;
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return false;
	r.rip += 1;
	ev.exception.injected = 1;
	ev.exception.nr = 3;
	ev.exception.has_error_code = 0;
	if (ioctl(v->fd, KVM_SET_REGS, &r) < 0 || ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
		return false;
	log_debug("vCPU %u: emulated int3 at rip %#llx", v->index, r.rip - 1);
	return true;
}

static void vcpu_crash(struct vcpu *v, const char *what)
{
	char why[160];

	snprintf(why, sizeof(why), "vCPU %u: %s", v->index, what);
	log_error("%s", why);
	vcpu_dump_state(v);
	vm_request_exit(v->vm, MOTE_EXIT_GUEST_CRASH, why);
}

/* Returns false when the thread should stop. */
static bool vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char what[128];

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		vcpu_handle_mmio(v);
		return true;
	case KVM_EXIT_IOAPIC_EOI:
		/* Split irqchip: the EOI of a level-triggered vector. mote sends
		 * only edges and its IOAPIC keeps no remote IRR: nothing to do. */
		return true;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC; nothing will wake it. */
		vm_request_exit(v->vm, MOTE_EXIT_OK, "guest halted");
		return false;
	case KVM_EXIT_SHUTDOWN:
		vcpu_crash(v, "guest triple fault (KVM_EXIT_SHUTDOWN)");
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		vm_request_exit(v->vm, MOTE_EXIT_OK,
				run->system_event.type == KVM_SYSTEM_EVENT_RESET ? "guest reset"
										  : "guest powered off");
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		if (vcpu_try_emulate_int3(v))
			return true;
		snprintf(what, sizeof(what), "KVM internal error, suberror %u (1 = emulation failure)",
			 run->internal.suberror);
		vcpu_crash(v, what);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what), "VM entry failed, hardware reason %#llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_crash(v, what);
		return false;
	default:
		snprintf(what, sizeof(what), "unexpected KVM exit reason %u", run->exit_reason);
		vcpu_crash(v, what);
		return false;
	}
}

void *vcpu_thread_main(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	sigset_t set;
	char name[16];

	snprintf(name, sizeof(name), "mote-vcpu%u", v->index);
	pthread_setname_np(pthread_self(), name);
	sigemptyset(&set);
	sigaddset(&set, vcpu_kick_signal());
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	/* Opened here, unfiltered: the filter has no open, and only this
	 * thread knows its own tid cheaply. */
	atomic_store_explicit(&v->schedstat_fd, schedstat_open_self_thread(), memory_order_release);
	/* Guest code only ever runs under this thread's filter. */
	int ret = seccomp_install(SECCOMP_VCPU);
	if (ret) {
		log_error("vCPU %u: cannot install its seccomp filter: %s", v->index, strerror(-ret));
		vm_request_exit(vm, MOTE_EXIT_INTERNAL, "seccomp set-up failed");
		return NULL;
	}

	while (!atomic_load(&vm->exiting)) {
		/* PATCH /vm Paused: the kick brings us here, out of KVM_RUN. */
		vcpu_pause_point(v);
		if (v->index == 0 && !atomic_exchange(&vm->first_run_logged, true)) {
			uint64_t standby_ns = atomic_load(&vm->standby_resume_ns);
			if (standby_ns)
				log_info("standby: first KVM_RUN %llu us after the resume request "
					 "(%llu us since exec)",
					 (unsigned long long)((time_now_ns() - standby_ns) / 1000),
					 (unsigned long long)time_since_exec_us());
			else
				log_msg(vm->cfg.boot_timer ? LOG_INFO : LOG_DEBUG,
					"first KVM_RUN after %llu us since exec",
					(unsigned long long)time_since_exec_us());
		}
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->run->immediate_exit = 0;
				unsigned bit = 1u << v->index;
				if (atomic_fetch_and(&vm->dump_pending, ~bit) & bit)
					vcpu_dump_state(v);
				continue;
			}
			char what[96];
			snprintf(what, sizeof(what), "KVM_RUN failed: %s", strerror(errno));
			vcpu_crash(v, what);
			break;
		}
		v->nr_exits++;
		if (!vcpu_handle_exit(v))
			break;
	}
	return NULL;
}
