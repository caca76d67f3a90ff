#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vmm/layout.h"
#include "vmm/log.h"

#define KVM_DEV_PATH "/dev/kvm"
#define CPUID_MAX_ENTRIES 256

struct kvm_cap_name {
	int cap;
	const char *name;
};

/* 0, or MOTE_EXIT_KVM after naming the first capability KVM lacks. */
static int vm_require_caps(struct vm *vm, const struct kvm_cap_name *caps, size_t n,
			   const char *hint)
{
	for (size_t i = 0; i < n; i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
			log_error("this host's KVM lacks %s, which mote needs%s", caps[i].name, hint);
			return MOTE_EXIT_KVM;
		}
	}
	return 0;
}

/* What each irqchip mode needs on top of the common set: the split
 * irqchip has no in-kernel PIC, IOAPIC or PIT and sends MSIs instead. */
static int vm_check_caps(struct vm *vm)
{
	static const struct kvm_cap_name common[] = {
		{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
		{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
		{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
		{ KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
		{ KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
		{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	};
	static const struct kvm_cap_name split[] = {
		{ KVM_CAP_SPLIT_IRQCHIP, "KVM_CAP_SPLIT_IRQCHIP" },
		{ KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI" },
	};
	static const struct kvm_cap_name kernel[] = {
		{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
		{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
	};
	int ret = vm_require_caps(vm, common, sizeof(common) / sizeof(common[0]), "");

	if (ret)
		return ret;
	if (vm->cfg.irqchip == IRQCHIP_SPLIT)
		return vm_require_caps(vm, split, sizeof(split) / sizeof(split[0]),
				       " for its split irqchip: try --irqchip kernel");
	return vm_require_caps(vm, kernel, sizeof(kernel) / sizeof(kernel[0]),
			       " for --irqchip kernel: try --irqchip split");
}

static int vm_get_supported_cpuid(struct vm *vm)
{
	size_t sz = sizeof(struct kvm_cpuid2) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2);

	vm->cpuid = calloc(1, sz);
	if (!vm->cpuid)
		return -ENOMEM;
	vm->cpuid->nent = CPUID_MAX_ENTRIES;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, vm->cpuid) < 0)
		return -errno;
	return 0;
}

static int vm_map_memory(struct vm *vm, const struct vm_config *cfg)
{
	int ret;

	if (cfg->mem_from_file) {
		ret = guest_mem_init_file(&vm->mem, cfg->mem_file_fd, cfg->mem_bytes);
		if (ret)
			close(cfg->mem_file_fd);
	} else {
		ret = guest_mem_init(&vm->mem, cfg->mem_bytes);
	}
	if (!ret && cfg->track_dirty_pages)
		ret = guest_mem_track_dirty(&vm->mem);
	if (ret) {
		log_error("cannot map %llu MiB of guest memory: %s",
			  (unsigned long long)(cfg->mem_bytes >> 20), strerror(-ret));
		return MOTE_EXIT_INTERNAL;
	}
	return 0;
}

static int vm_register_memory(struct vm *vm, const struct vm_config *cfg)
{
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = i,
			.guest_phys_addr = vm->mem.regions[i].gpa,
			.memory_size = vm->mem.regions[i].size,
			.userspace_addr = (uint64_t)(uintptr_t)vm->mem.regions[i].hva,
			.flags = cfg->track_dirty_pages ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
			log_error("KVM_SET_USER_MEMORY_REGION slot %u: %s", i, strerror(errno));
			return MOTE_EXIT_KVM;
		}
	}
	return 0;
}

static void vm_start_loader(struct vm *vm);

/* The split irqchip must be enabled before any vCPU exists; the IOAPIC
 * window then goes on mote's MMIO bus (vCPU threads handle its exits). */
static int vm_create_irqchip(struct vm *vm)
{
	if (vm->cfg.irqchip == IRQCHIP_SPLIT) {
		struct kvm_enable_cap cap = { .cap = KVM_CAP_SPLIT_IRQCHIP,
					      .args = { IOAPIC_NR_PINS } };

		if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
			log_error("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP): %s; this KVM may be too "
				  "old for a split irqchip: try --irqchip kernel",
				  strerror(errno));
			return MOTE_EXIT_KVM;
		}
		ioapic_init(&vm->ioapic, vm->vm_fd, NULL, NULL);
		vm->ioapic_ready = true;
		static const struct bus_device_ops ioapic_ops = { .read = ioapic_mmio_read,
								  .write = ioapic_mmio_write };
		int ret = bus_register(&vm->mmio, LAYOUT_IOAPIC_ADDR, IOAPIC_MMIO_SIZE, &ioapic_ops,
				       &vm->ioapic);
		if (ret) {
			log_error("IOAPIC window: %s", strerror(-ret));
			return MOTE_EXIT_INTERNAL;
		}
		log_debug("split irqchip: LAPICs in KVM, IOAPIC in mote, no PIC or PIT");
		return 0;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		log_error("KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return MOTE_EXIT_KVM;
	}
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		log_error("KVM_CREATE_PIT2: %s", strerror(errno));
		return MOTE_EXIT_KVM;
	}
	log_debug("in-kernel irqchip and PIT created");
	return 0;
}

void vm_config_copy(struct vm_config *dst, const struct vm_config *src)
{
	const size_t d0 = offsetof(struct vm_config, drives), d1 = d0 + sizeof(src->drives);

	memcpy(dst, src, d0);
	memcpy(dst->drives, src->drives, src->nr_drives * sizeof(src->drives[0]));
	memcpy((char *)dst + d1, (const char *)src + d1, sizeof(*dst) - d1);
}

int vm_create(struct vm *vm, const struct vm_config *cfg)
{
	/* All cleared but vm->cfg, which vm_config_copy writes (but for
	 * its unused drive slots). */
	const size_t c0 = offsetof(struct vm, cfg), c1 = c0 + sizeof(vm->cfg);
	int ret;

	memset(vm, 0, c0);
	memset((char *)vm + c1, 0, sizeof(*vm) - c1);
	vm_config_copy(&vm->cfg, cfg);
	vm->kvm_fd = vm->vm_fd = vm->exit_eventfd = -1;
	irq_line_none(&vm->serial_irq);
	irq_line_none(&vm->i8042.irq);
	vm->mem.fd = -1;
	pthread_mutex_init(&vm->i8042.lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	pthread_condattr_t mono;
	pthread_condattr_init(&mono);
	pthread_condattr_setclock(&mono, CLOCK_MONOTONIC); /* vm_pause's deadline */
	pthread_cond_init(&vm->parked_cond, &mono);
	pthread_condattr_destroy(&mono);

	vm->kvm_fd = open(KVM_DEV_PATH, O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		log_error("cannot open %s: %s; mote needs KVM: load kvm_intel/kvm_amd (or run on a "
			  "host with virtualization) and give this user access to %s",
			  KVM_DEV_PATH, strerror(errno), KVM_DEV_PATH);
		return MOTE_EXIT_KVM;
	}
	int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		log_error("KVM API version %d, mote needs %d", api, KVM_API_VERSION);
		return MOTE_EXIT_KVM;
	}
	ret = vm_check_caps(vm);
	if (ret)
		return ret;
	int max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max_vcpus > 0 && cfg->nr_vcpus > (unsigned)max_vcpus) {
		log_error("%u vCPUs requested; this host's KVM allows at most %d", cfg->nr_vcpus,
			  max_vcpus);
		return MOTE_EXIT_USAGE;
	}
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size <= 0) {
		log_error("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
		return MOTE_EXIT_KVM;
	}

	ret = vm_map_memory(vm, cfg);
	if (ret)
		return ret;
	vm_start_loader(vm);

	do {
		vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	} while (vm->vm_fd < 0 && errno == EINTR);
	if (vm->vm_fd < 0) {
		log_error("KVM_CREATE_VM: %s", strerror(errno));
		return MOTE_EXIT_KVM;
	}
	/* Guest memory is registered before anything else: on the nested
	 * hypervisor of the test machines a memslot update waits for an SRCU
	 * grace period that is quick while the VM has no irqchip or PIT yet and
	 * costs 4-8 ms afterwards (measured: exec -> first KVM_RUN 7.6 ms median
	 * with the old order, ~1 ms with this one). */
	log_debug("KVM_CREATE_VM done");
	ret = vm_register_memory(vm, cfg);
	if (ret)
		return ret;
	log_debug("guest memory registered (%u slots)", vm->mem.nr_regions);
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_TSS_ADDR) < 0) {
		log_error("KVM_SET_TSS_ADDR: %s", strerror(errno));
		return MOTE_EXIT_KVM;
	}
	uint64_t idmap = LAYOUT_IDENTITY_MAP_ADDR;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) {
		log_error("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
		return MOTE_EXIT_KVM;
	}
	ret = vm_create_irqchip(vm);
	if (ret)
		return ret;
	vm->exit_eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->exit_eventfd < 0) {
		log_error("eventfd: %s", strerror(errno));
		return MOTE_EXIT_INTERNAL;
	}
	ret = irq_line_init(&vm->serial_irq, vm->vm_fd, vm_ioapic(vm), IRQ_COM1);
	if (ret) {
		log_error("COM1 interrupt line (GSI %d): %s", IRQ_COM1, strerror(-ret));
		return MOTE_EXIT_KVM;
	}
	/* With a loader thread, it asks KVM for the CPUID table too. A
	 * restore with the snapshot's own tables needs none: asking costs
	 * ~0.2 ms of every clone here (KVM runs CPUID for every leaf, and
	 * CPUID traps to the hypervisor under nested virtualization). */
	if (cfg->saved_cpuid)
		log_debug("CPUID: each vCPU's table as the snapshot saved it");
	if (!vm->loader_started && !cfg->saved_cpuid) {
		ret = vm_get_supported_cpuid(vm);
		if (ret) {
			log_error("KVM_GET_SUPPORTED_CPUID: %s", strerror(-ret));
			return MOTE_EXIT_KVM;
		}
	}
	return 0;
}

static int vm_open_input(const char *what, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		log_error("cannot open %s '%s': %s; check the path and permissions", what, path,
			  strerror(errno));
	return fd;
}

/* The kernel and initrd into guest RAM: needs the mapping, not the VM. */
static int vm_load_images(struct vm *vm)
{
	char err[BOOT_ERR_LEN] = "";
	int fd, ret;

	fd = vm_open_input("kernel", vm->cfg.kernel_path);
	if (fd < 0)
		return MOTE_EXIT_NOINPUT;
	ret = boot_load_kernel(fd, &vm->mem, vm->cfg.boot_protocol, &vm->boot, err, sizeof(err));
	close(fd);
	if (ret) {
		log_error("kernel '%s' rejected: %s", vm->cfg.kernel_path, err);
		return MOTE_EXIT_BAD_IMAGE;
	}
	log_debug("kernel: %s, %s boot, entry %#llx, loaded [%#llx, %#llx)",
		  vm->boot.format == KERNEL_ELF ? "ELF" : "bzImage",
		  vm->boot.protocol == BOOT_PROTO_PVH ? "PVH" : "Linux 64-bit",
		  (unsigned long long)vm->boot.entry, (unsigned long long)vm->boot.kernel_start,
		  (unsigned long long)vm->boot.kernel_end);

	if (vm->cfg.initrd_path) {
		fd = vm_open_input("initrd", vm->cfg.initrd_path);
		if (fd < 0)
			return MOTE_EXIT_NOINPUT;
		ret = boot_load_initrd(fd, &vm->mem, &vm->boot, err, sizeof(err));
		close(fd);
		if (ret) {
			log_error("initrd '%s' rejected: %s", vm->cfg.initrd_path, err);
			return MOTE_EXIT_BAD_IMAGE;
		}
	}
	return 0;
}

static void *vm_loader_main(void *arg)
{
	struct vm *vm = arg;
	int ret = vm_get_supported_cpuid(vm);

	if (ret) {
		log_error("KVM_GET_SUPPORTED_CPUID: %s", strerror(-ret));
		vm->loader_ret = MOTE_EXIT_KVM;
		sem_post(&vm->loader_done);
		return NULL;
	}
	vm->loader_ret = vm_load_images(vm);
	sem_post(&vm->loader_done);
	return NULL;
}

/* Reading the kernel and initrd into guest RAM (and KVM's CPUID table)
 * overlaps with KVM creating the VM, its memory slot and irqchip (on
 * another CPU): ~0.4 ms of the test guest's start-up, tens of ms for a
 * Linux vmlinux. Without a thread (it could not start) vm_create fetches
 * the CPUID table and vm_load_kernel loads the images itself. A restore
 * loads no kernel. */
static void vm_start_loader(struct vm *vm)
{
	pthread_attr_t attr;
	pthread_t t;

	if (vm->cfg.from_snapshot || !vm->cfg.kernel_path)
		return;
	if (sem_init(&vm->loader_done, 0, 0))
		return;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	/* Detached, waited for through the semaphore: joining waits for the
	 * thread's exit in the kernel too, ~0.1 ms more on the test hosts. */
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	vm->loader_started = pthread_create(&t, &attr, vm_loader_main, vm) == 0;
	pthread_attr_destroy(&attr);
	if (!vm->loader_started)
		sem_destroy(&vm->loader_done);
}

static int vm_join_loader(struct vm *vm)
{
	if (!vm->loader_started)
		return -1;
	while (sem_wait(&vm->loader_done) && errno == EINTR)
		;
	sem_destroy(&vm->loader_done);
	vm->loader_started = false;
	return vm->loader_ret;
}

int vm_load_kernel(struct vm *vm)
{
	char err[BOOT_ERR_LEN] = "";
	int ret;

	ret = vm_join_loader(vm);
	if (ret < 0)
		ret = vm_load_images(vm);
	if (ret)
		return ret;

	const char *cmdline = vm->cmdline;
	ret = boot_write_cmdline(&vm->mem, &vm->boot, cmdline, err, sizeof(err));
	if (ret) {
		log_error("%s", err);
		return MOTE_EXIT_USAGE;
	}
	ret = mptable_write(&vm->mem, vm->cfg.nr_vcpus);
	if (!ret)
		ret = boot_write_gdt_and_page_tables(&vm->mem);
	if (!ret) {
		if (vm->boot.protocol == BOOT_PROTO_PVH)
			ret = boot_write_pvh_info(&vm->mem, &vm->boot);
		else
			ret = boot_write_zero_page(&vm->mem, &vm->boot, (uint32_t)strlen(cmdline) + 1);
	}
	if (ret) {
		log_error("writing boot structures: %s", strerror(-ret));
		return MOTE_EXIT_INTERNAL;
	}
	return 0;
}

int vm_create_vcpus(struct vm *vm)
{
	for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++) {
		int ret = vcpu_init(vm, &vm->vcpus[i], i);

		/* Counted once KVM made it, even if a later step failed, so
		 * vm_destroy closes its fds and unmaps its run area. */
		if (vm->vcpus[i].fd >= 0)
			vm->nr_vcpus++;
		if (ret)
			return ret;
	}
	return 0;
}

int vm_halt_poll_off(struct vm *vm)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_HALT_POLL, .args = { 0 } };

	if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_HALT_POLL) <= 0)
		return -EOPNOTSUPP;
	return ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) ? -errno : 0;
}

int vm_start_vcpus(struct vm *vm)
{
	if (vcpu_install_kick_handler() < 0) {
		log_error("cannot install the vCPU kick signal handler: %s", strerror(errno));
		return MOTE_EXIT_INTERNAL;
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		int ret = pthread_create(&v->thread, NULL, vcpu_thread_main, v);

		if (ret) {
			log_error("cannot start vCPU %u thread: %s", i, strerror(ret));
			return MOTE_EXIT_INTERNAL;
		}
		v->thread_started = true;
	}
	return 0;
}

void vm_request_exit(struct vm *vm, int code, const char *why)
{
	bool expected = false;

	if (!atomic_compare_exchange_strong(&vm->exiting, &expected, true))
		return;
	atomic_store(&vm->exit_code, code);
	log_debug("exit requested (code %d): %s", code, why);
	if (code != MOTE_EXIT_OK || log_max_level >= LOG_DEBUG)
		log_info("VM stopping: %s (exit code %d)", why, code);
	uint64_t one = 1;
	if (write(vm->exit_eventfd, &one, sizeof(one)) < 0)
		log_warn("exit eventfd write: %s", strerror(errno));
}

void vm_request_dump(struct vm *vm)
{
	atomic_store(&vm->dump_pending, (1u << vm->nr_vcpus) - 1);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (!v->thread_started)
			continue;
		v->run->immediate_exit = 1;
		pthread_kill(v->thread, vcpu_kick_signal());
	}
}

static void vm_kick_vcpus(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (!v->thread_started)
			continue;
		/* immediate_exit covers a kick that lands before KVM_RUN. */
		v->run->immediate_exit = 1;
		pthread_kill(v->thread, vcpu_kick_signal());
	}
}

void vcpu_pause_point(struct vcpu *v)
{
	struct vm *vm = v->vm;

	/* The common case costs one load: vCPUs never share the lock unless
	 * a pause is under way. */
	if (!atomic_load(&vm->pause_requested))
		return;
	/* An exit handled just now (port or MMIO read) completes inside the
	 * next KVM_RUN: do that now, without running guest code, so that a
	 * snapshot taken while parked holds the finished instruction. */
	v->run->immediate_exit = 1;
	if (ioctl(v->fd, KVM_RUN, 0) == 0)
		log_debug("vCPU %u: unexpected exit %u completing I/O before a pause", v->index,
			  v->run->exit_reason);
	pthread_mutex_lock(&vm->pause_lock);
	if (atomic_load(&vm->pause_requested) && !atomic_load(&vm->exiting)) {
		vm->nr_parked++;
		pthread_cond_broadcast(&vm->parked_cond);
		while (atomic_load(&vm->pause_requested) && !atomic_load(&vm->exiting))
			pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
		vm->nr_parked--;
	}
	pthread_mutex_unlock(&vm->pause_lock);
}

int vm_pause(struct vm *vm, unsigned timeout_ms)
{
	struct timespec deadline;
	unsigned started = 0;
	int ret = 0;

	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		started += vm->vcpus[i].thread_started;
	pthread_mutex_lock(&vm->pause_lock);
	atomic_store(&vm->pause_requested, true);
	pthread_mutex_unlock(&vm->pause_lock);
	vm_kick_vcpus(vm);

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->nr_parked < started) {
		/* A vCPU thread only ends once the VM is exiting; never wait
		 * for one that will not park. Short slices notice that. */
		if (atomic_load(&vm->exiting)) {
			ret = -ESHUTDOWN;
			break;
		}
		struct timespec now, slice;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > deadline.tv_sec ||
		    (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec)) {
			ret = -ETIMEDOUT;
			break;
		}
		slice = now;
		slice.tv_nsec += 10 * 1000000L;
		if (slice.tv_nsec >= 1000000000L) {
			slice.tv_sec++;
			slice.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&vm->parked_cond, &vm->pause_lock, &slice);
	}
	pthread_mutex_unlock(&vm->pause_lock);
	if (ret)
		vm_resume(vm);
	return ret;
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	atomic_store(&vm->pause_requested, false);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_stop_vcpus(struct vm *vm)
{
	atomic_store(&vm->exiting, true);
	/* Parked vCPUs wait on pause_cond, not in KVM_RUN. */
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	vm_kick_vcpus(vm);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->thread_started)
			pthread_join(v->thread, NULL);
		v->thread_started = false;
	}
}

void vm_destroy(struct vm *vm)
{
	vm_join_loader(vm);
	vm_destroy_virtio_devices(vm);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i].run)
			munmap(vm->vcpus[i].run, (size_t)vm->vcpu_mmap_size);
		if (vm->vcpus[i].fd >= 0)
			close(vm->vcpus[i].fd);
		if (vm->vcpus[i].stats_fd >= 0)
			close(vm->vcpus[i].stats_fd);
	}
	free(vm->cpuid);
	guest_mem_destroy(&vm->mem);
	irq_line_destroy(&vm->serial_irq);
	irq_line_destroy(&vm->i8042.irq);
	if (vm->ioapic_ready)
		ioapic_destroy(&vm->ioapic);
	if (vm->exit_eventfd >= 0)
		close(vm->exit_eventfd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
}
