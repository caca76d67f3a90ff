/* What KVM holds: per vCPU (registers, FPU/XSAVE, XCRs, MSRs, LAPIC, MP
 * state, pending events, debug registers) and per VM (both PICs, IOAPIC,
 * PIT, kvmclock). Saved with the vCPUs parked outside KVM_RUN; restored on
 * freshly created vCPUs before their threads start, in the order
 * Firecracker uses (LAPIC before MSRs: TSC_DEADLINE needs the timer mode;
 * events last: they may inject into the restored state). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "snapshot/snapshot.h"
#include "vmm/dirty_log.h"
#include "vmm/log.h"

#define SNAP_VCPU_MAGIC 0x55504356 /* "VCPU" */
#define SNAP_VCPU_VERSION 1
#define SNAP_MAX_MSRS 256
#define MSR_LIST_MAX 1024

struct snap_vcpu {
	uint32_t magic, version;
	uint32_t index, has_xsave, has_xcrs, nr_msrs;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_xsave xsave;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp_state;
	struct kvm_vcpu_events events;
	struct kvm_debugregs debugregs;
	struct kvm_msr_entry msrs[SNAP_MAX_MSRS];
};

size_t snap_vcpu_state_size(void)
{
	return sizeof(struct snap_vcpu);
}

__attribute__((format(printf, 3, 4))) static int snap_fail(char *err, size_t errlen,
							   const char *fmt, ...)
{
	va_list ap;
	int e = errno;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return e ? -e : -EIO;
}

/* MSRs KVM does not list in KVM_GET_MSR_INDEX_LIST but a guest sets:
 * MTRRs (Linux maps memory uncached without them), TSC_AUX (rdtscp). */
static const uint32_t extra_msrs[] = {
	0x2ff, 0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, 0x208, 0x209, 0x20a,
	0x20b, 0x20c, 0x20d, 0x20e, 0x20f, 0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b,
	0x26c, 0x26d, 0x26e, 0x26f, 0xc0000103,
};

/* The MSRs to save: KVM's list plus the above, minus those this vCPU
 * cannot read (KVM_GET_MSRS stops at the first it cannot: drop it and go
 * on). */
static int snap_get_msrs(struct vm *vm, struct vcpu *v, struct snap_vcpu *s)
{
	struct {
		struct kvm_msr_list l;
		uint32_t idx[MSR_LIST_MAX];
	} list = { .l.nmsrs = MSR_LIST_MAX };
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[SNAP_MAX_MSRS];
	} m;
	unsigned n = 0;

	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &list) < 0)
		return -errno;
	memset(&m, 0, sizeof(m));
	for (unsigned i = 0; i < list.l.nmsrs && n < SNAP_MAX_MSRS; i++)
		m.e[n++].index = list.idx[i];
	for (unsigned i = 0; i < sizeof(extra_msrs) / sizeof(extra_msrs[0]) && n < SNAP_MAX_MSRS;
	     i++) {
		bool dup = false;
		for (unsigned j = 0; j < n && !dup; j++)
			dup = m.e[j].index == extra_msrs[i];
		if (!dup)
			m.e[n++].index = extra_msrs[i];
	}
	unsigned done = 0;
	while (done < n) {
		/* Read the rest in one call; on a short read drop the refused one. */
		struct {
			struct kvm_msrs hdr;
			struct kvm_msr_entry e[SNAP_MAX_MSRS];
		} part;
		part.hdr.nmsrs = n - done;
		part.hdr.pad = 0;
		memcpy(part.e, &m.e[done], (n - done) * sizeof(m.e[0]));
		int got = ioctl(v->fd, KVM_GET_MSRS, &part);
		if (got < 0)
			return -errno;
		memcpy(&m.e[done], part.e, (size_t)got * sizeof(m.e[0]));
		done += (unsigned)got;
		if (done < n) {
			memmove(&m.e[done], &m.e[done + 1], (n - done - 1) * sizeof(m.e[0]));
			n--;
		}
	}
	memcpy(s->msrs, m.e, n * sizeof(m.e[0]));
	s->nr_msrs = n;
	return 0;
}

/* The vCPU's CPUID table: a restore sets it as saved (the guest goes on
 * seeing what it saw) instead of asking KVM for the host's and filtering. */
static int save_cpuid(struct vcpu *v, struct snap_writer *w, unsigned i)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + SNAP_CPUID_MAX * sizeof(c->entries[0]));
	int ret = 0;

	if (!c)
		return -ENOMEM;
	c->nent = SNAP_CPUID_MAX;
	if (ioctl(v->fd, KVM_GET_CPUID2, c) < 0)
		ret = -errno;
	else if (snap_writer_add(w, SNAP_SEC_CPUID, i, c,
				 sizeof(*c) + c->nent * sizeof(c->entries[0])))
		ret = w->err;
	free(c);
	return ret;
}

int snap_save_vcpus(struct vm *vm, struct snap_writer *w, char *err, size_t errlen)
{
	bool has_xsave = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0;
	bool has_xcrs = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;

	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		struct snap_vcpu *s = snap_writer_section(w, SNAP_SEC_VCPU, i, sizeof(*s));
		const char *what = NULL;

		if (!s)
			return snap_fail(err, errlen, "vCPU %u: %s", i, strerror(-w->err));
		s->magic = SNAP_VCPU_MAGIC;
		s->version = SNAP_VCPU_VERSION;
		s->index = i;
		s->has_xsave = has_xsave;
		s->has_xcrs = has_xcrs;
		errno = 0;
		if (ioctl(v->fd, KVM_GET_REGS, &s->regs) < 0)
			what = "KVM_GET_REGS";
		else if (ioctl(v->fd, KVM_GET_SREGS, &s->sregs) < 0)
			what = "KVM_GET_SREGS";
		else if (ioctl(v->fd, KVM_GET_FPU, &s->fpu) < 0)
			what = "KVM_GET_FPU";
		else if (has_xsave && ioctl(v->fd, KVM_GET_XSAVE, &s->xsave) < 0)
			what = "KVM_GET_XSAVE";
		else if (has_xcrs && ioctl(v->fd, KVM_GET_XCRS, &s->xcrs) < 0)
			what = "KVM_GET_XCRS";
		else if (ioctl(v->fd, KVM_GET_LAPIC, &s->lapic) < 0)
			what = "KVM_GET_LAPIC";
		else if (ioctl(v->fd, KVM_GET_MP_STATE, &s->mp_state) < 0)
			what = "KVM_GET_MP_STATE";
		else if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &s->events) < 0)
			what = "KVM_GET_VCPU_EVENTS";
		else if (ioctl(v->fd, KVM_GET_DEBUGREGS, &s->debugregs) < 0)
			what = "KVM_GET_DEBUGREGS";
		else {
			int ret = snap_get_msrs(vm, v, s);
			if (ret) {
				errno = -ret;
				what = "KVM_GET_MSRS";
			}
		}
		if (what)
			return snap_fail(err, errlen, "vCPU %u: %s: %s", i, what, strerror(errno));
		/* s is not used past here: the next section may move the buffer. */
		int ret = save_cpuid(v, w, i);
		if (ret)
			return snap_fail(err, errlen, "vCPU %u: KVM_GET_CPUID2: %s", i, strerror(-ret));
	}
	return 0;
}

static int snap_set_msrs(struct vcpu *v, const struct snap_vcpu *s)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[SNAP_MAX_MSRS];
	} m;
	unsigned done = 0;

	while (done < s->nr_msrs) {
		memset(&m.hdr, 0, sizeof(m.hdr));
		m.hdr.nmsrs = s->nr_msrs - done;
		memcpy(m.e, &s->msrs[done], m.hdr.nmsrs * sizeof(m.e[0]));
		int got = ioctl(v->fd, KVM_SET_MSRS, &m);
		if (got < 0)
			return -errno;
		done += (unsigned)got;
		if (done < s->nr_msrs) {
			/* Read on the same host, so this should not happen: say so
			 * and go on with the rest. */
			log_warn("vCPU %u: KVM refused MSR %#x = %#llx on restore", v->index,
				 s->msrs[done].index, (unsigned long long)s->msrs[done].data);
			done++;
		}
	}
	return 0;
}

int snap_restore_vcpus(struct vm *vm, const struct snap_state *st, char *err, size_t errlen)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		const struct snap_section *sec = snap_state_find(st, SNAP_SEC_VCPU, i);
		struct vcpu *v = &vm->vcpus[i];
		const char *what = NULL;
		struct snap_vcpu *s;

		/* snapshot_open checked presence and size. */
		if (!sec || sec->len != sizeof(*s)) {
			errno = EINVAL;
			return snap_fail(err, errlen, "vCPU %u: no state", i);
		}
		s = malloc(sizeof(*s));
		if (!s)
			return -ENOMEM;
		memcpy(s, sec->data, sizeof(*s));
		errno = 0;
		if (s->nr_msrs > SNAP_MAX_MSRS) {
			errno = EINVAL;
			what = "MSR count";
		} else if (ioctl(v->fd, KVM_SET_MP_STATE, &s->mp_state) < 0)
			what = "KVM_SET_MP_STATE";
		else if (ioctl(v->fd, KVM_SET_REGS, &s->regs) < 0)
			what = "KVM_SET_REGS";
		else if (ioctl(v->fd, KVM_SET_SREGS, &s->sregs) < 0)
			what = "KVM_SET_SREGS";
		else if (s->has_xsave && ioctl(v->fd, KVM_SET_XSAVE, &s->xsave) < 0)
			what = "KVM_SET_XSAVE";
		else if (!s->has_xsave && ioctl(v->fd, KVM_SET_FPU, &s->fpu) < 0)
			what = "KVM_SET_FPU";
		else if (s->has_xcrs && ioctl(v->fd, KVM_SET_XCRS, &s->xcrs) < 0)
			what = "KVM_SET_XCRS";
		else if (ioctl(v->fd, KVM_SET_DEBUGREGS, &s->debugregs) < 0)
			what = "KVM_SET_DEBUGREGS";
		else if (ioctl(v->fd, KVM_SET_LAPIC, &s->lapic) < 0)
			what = "KVM_SET_LAPIC";
		else {
			int ret = snap_set_msrs(v, s);
			if (ret) {
				errno = -ret;
				what = "KVM_SET_MSRS";
			} else if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &s->events) < 0)
				what = "KVM_SET_VCPU_EVENTS";
		}
		free(s);
		if (what)
			return snap_fail(err, errlen, "vCPU %u: %s: %s", i, what, strerror(errno));
	}
	return 0;
}

/* In-kernel irqchip: both PICs, the IOAPIC and the PIT. */
static int save_kernel_irqchip(struct vm *vm, struct snap_writer *w, char *err, size_t errlen)
{
	for (uint32_t chip = 0; chip < 3; chip++) {
		struct kvm_irqchip c = { .chip_id = chip };

		errno = 0;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &c) < 0)
			return snap_fail(err, errlen, "KVM_GET_IRQCHIP %u: %s", chip, strerror(errno));
		snap_writer_add(w, SNAP_SEC_IRQCHIP, chip, &c, sizeof(c));
	}
	struct kvm_pit_state2 pit;
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
		return snap_fail(err, errlen, "KVM_GET_PIT2: %s", strerror(errno));
	snap_writer_add(w, SNAP_SEC_PIT, 0, &pit, sizeof(pit));
	return 0;
}

int snap_save_vm(struct vm *vm, struct snap_writer *w, char *err, size_t errlen)
{
	if (vm->cfg.irqchip == IRQCHIP_SPLIT) {
		struct ioapic_state io;

		ioapic_get_state(&vm->ioapic, &io);
		snap_writer_add(w, SNAP_SEC_IOAPIC, 0, &io, sizeof(io));
	} else {
		int ret = save_kernel_irqchip(vm, w, err, errlen);

		if (ret)
			return ret;
	}
	struct kvm_clock_data clock;
	memset(&clock, 0, sizeof(clock));
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
		return snap_fail(err, errlen, "KVM_GET_CLOCK: %s", strerror(errno));
	snap_writer_add(w, SNAP_SEC_CLOCK, 0, &clock, sizeof(clock));
	return w->err;
}

static int restore_kernel_irqchip(struct vm *vm, const struct snap_state *st, char *err,
				  size_t errlen)
{
	const struct snap_section *sec;

	for (uint32_t chip = 0; chip < 3; chip++) {
		struct kvm_irqchip c;

		sec = snap_state_find(st, SNAP_SEC_IRQCHIP, chip);
		if (!sec || sec->len != sizeof(c)) {
			errno = EINVAL;
			return snap_fail(err, errlen, "irqchip %u: section missing or of the wrong size",
					 chip);
		}
		memcpy(&c, sec->data, sizeof(c));
		if (c.chip_id != chip) {
			errno = EINVAL;
			return snap_fail(err, errlen, "irqchip section %u holds chip %u", chip, c.chip_id);
		}
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &c) < 0)
			return snap_fail(err, errlen, "KVM_SET_IRQCHIP %u: %s", chip, strerror(errno));
	}
	struct kvm_pit_state2 pit;
	sec = snap_state_find(st, SNAP_SEC_PIT, 0);
	if (!sec || sec->len != sizeof(pit)) {
		errno = EINVAL;
		return snap_fail(err, errlen, "PIT: section missing or of the wrong size");
	}
	memcpy(&pit, sec->data, sizeof(pit));
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
		return snap_fail(err, errlen, "KVM_SET_PIT2: %s", strerror(errno));
	return 0;
}

static int restore_ioapic(struct vm *vm, const struct snap_state *st, char *err, size_t errlen)
{
	const struct snap_section *sec = snap_state_find(st, SNAP_SEC_IOAPIC, 0);
	struct ioapic_state io;

	if (!sec || sec->len != sizeof(io)) {
		errno = EINVAL;
		return snap_fail(err, errlen, "IOAPIC: section missing or of the wrong size");
	}
	memcpy(&io, sec->data, sizeof(io));
	ioapic_set_state(&vm->ioapic, &io);
	return 0;
}

int snap_restore_vm(struct vm *vm, const struct snap_state *st, bool clock_realtime, char *err,
		    size_t errlen)
{
	const struct snap_section *sec;
	int ret = vm->cfg.irqchip == IRQCHIP_SPLIT ? restore_ioapic(vm, st, err, errlen)
						   : restore_kernel_irqchip(vm, st, err, errlen);

	if (ret)
		return ret;
	struct kvm_clock_data clock;
	sec = snap_state_find(st, SNAP_SEC_CLOCK, 0);
	if (!sec || sec->len != sizeof(clock)) {
		errno = EINVAL;
		return snap_fail(err, errlen, "kvmclock: section missing or of the wrong size");
	}
	memcpy(&clock, sec->data, sizeof(clock));
	/* Only the clock value: the flags describe the old host's TSC. With
	 * clock_realtime KVM adds the wall time elapsed since `realtime` (as
	 * Firecracker's clock_realtime does). */
	struct kvm_clock_data set = { .clock = clock.clock };
	if (clock_realtime) {
		if (!(clock.flags & KVM_CLOCK_REALTIME)) {
			errno = EOPNOTSUPP;
			return snap_fail(err, errlen, "clock_realtime: the snapshot's clock has no "
					 "wall-clock stamp (host KVM without KVM_CLOCK_REALTIME)");
		}
		set.flags = KVM_CLOCK_REALTIME;
		set.realtime = clock.realtime;
	}
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &set) < 0)
		return snap_fail(err, errlen, "KVM_SET_CLOCK: %s", strerror(errno));
	return 0;
}

int snap_collect_dirty(struct vm *vm, uint64_t *bm)
{
	uint64_t words = (vm->mem.size / 4096 + 63) / 64;
	/* KVM's log through the shared reader: the working-set tracker may
	 * have fetched (and so cleared) KVM's bitmap since the last snapshot;
	 * those pages wait in this consumer's bitmap. */
	int ret = dirty_log_take(vm, DIRTY_LOG_SNAPSHOT, bm);

	if (ret)
		return ret;
	/* And what the monitor wrote (device buffers, used rings). */
	for (uint64_t w = 0; w < words; w++)
		bm[w] |= __atomic_exchange_n(&vm->mem.dirty[w], 0, __ATOMIC_RELAXED);
	return 0;
}
