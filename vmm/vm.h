/* One KVM virtual machine: its fds, memory, buses, vCPUs and the devices
 * of the foundation (COM1, i8042 reset, boot timer, debug exit). */
#ifndef MOTE_VMM_VM_H
#define MOTE_VMM_VM_H

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "vmm/boot.h"
#include "vmm/bus.h"
#include "vmm/cpuid.h"
#include "vmm/ioapic.h"
#include "vmm/irq.h"
#include "vmm/mem.h"
#include "vmm/seccomp.h"
#include "vmm/serial.h"
#include "virtio/blk.h"
#include "virtio/net.h"
#include "virtio/mmio.h"
#include "metrics/metrics.h"
#include "virtio/vsock.h"

#define VM_MAX_VCPUS MPTABLE_MAX_CPUS
#define VM_MAX_VIRTIO 16
#define VM_VIRTIO_FIRST_IRQ 5
#define VM_CMDLINE_MAX 4096
#define VM_MIN_MEM_MIB 2
#define VM_MAX_MEM_MIB (1024 * 1024)

/* Process exit codes of the monitor (sysexits.h where one fits). */
enum mote_exit {
	MOTE_EXIT_OK = 0,
	MOTE_EXIT_USAGE = 64,       /* bad command line */
	MOTE_EXIT_BAD_IMAGE = 65,   /* kernel/initrd rejected */
	MOTE_EXIT_NOINPUT = 66,     /* a file could not be opened */
	MOTE_EXIT_KVM = 69,         /* /dev/kvm missing or a KVM call failed */
	MOTE_EXIT_INTERNAL = 70,    /* monitor bug or resource failure */
	MOTE_EXIT_GUEST_CRASH = 80, /* triple fault, emulation failure, failed entry */
};

/* Where the PIC/IOAPIC/PIT live. SPLIT (the default): LAPICs in KVM, an
 * IOAPIC in mote, no 8259 and no PIT (vmm/ioapic.h says why). KERNEL:
 * KVM's in-kernel PIC, IOAPIC and PIT, for guests that need a PIT or a
 * PIC (a Linux without kvmclock or TSC-deadline timer). */
enum irqchip_mode {
	IRQCHIP_SPLIT = 0,
	IRQCHIP_KERNEL = 1,
};

struct vm_config {
	const char *kernel_path;
	const char *initrd_path;
	const char *cmdline;
	uint64_t mem_bytes;
	unsigned nr_vcpus;
	enum boot_protocol boot_protocol;
	enum cpu_template cpu_template;
	enum irqchip_mode irqchip;
	bool boot_timer;
	enum seccomp_mode seccomp; /* KILL (the zero value) unless --no-seccomp/--seccomp-debug */
	unsigned nr_drives;
	struct blk_config drives[BLK_MAX_DRIVES];
	/* Restore: guest RAM is this snapshot memory file, mapped MAP_PRIVATE
	 * (vm_create takes the fd over). */
	bool mem_from_file;
	int mem_file_fd;
	/* A snapshot restore: guest RAM comes from the snapshot (a file or a
	 * userfaultfd handler), no kernel is loaded. */
	bool from_snapshot;
	/* KVM_MEM_LOG_DIRTY_PAGES on every RAM slot (diff snapshots). */
	bool track_dirty_pages;
	/* A restore whose snapshot has every vCPU's CPUID table: [i] is vCPU
	 * i's, set as it is (no KVM_GET_SUPPORTED_CPUID, no filtering). Only
	 * valid while the VM is being made (the snapshot image owns it). */
	const struct kvm_cpuid2 *const *saved_cpuid;
	/* Each vCPU's KVM statistics fd is taken when the vCPU is made (the
	 * demand metrics read it); off when nothing can read them. */
	bool kvm_stats;
	unsigned nr_nets;
	struct net_config nets[NET_MAX_IFACES];
	struct metrics_config metrics; /* --demand */
	bool has_vsock;
	struct vsock_config vsock;
};

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	_Atomic uint64_t nr_exits; /* read by FlushMetrics on the VMM thread */
	/* /proc/thread-self/schedstat, opened by the vCPU thread before its
	 * seccomp filter; -1 until then. The demand metrics read it. */
	_Atomic int schedstat_fd;
	/* KVM_GET_STATS_FD, taken at creation (-1 if unavailable): a vCPU
	 * ioctl waits for KVM_RUN to return, so once the vCPU runs the VMM
	 * thread could block on it for as long as the guest sits in hlt
	 * (an idle function clone: until its next interrupt, which that
	 * very thread would send). The demand metrics take it over. */
	int stats_fd;
};

#define I8042_BUF_SIZE 16

/* The i8042 keyboard controller: the reset line, and an output buffer
 * through which the VMM injects Ctrl+Alt+Del (SendCtrlAltDel). */
struct i8042 {
	pthread_mutex_t lock;     /* vCPU port accesses vs. the VMM thread */
	uint8_t buf[I8042_BUF_SIZE];
	unsigned head, len;
	uint8_t control;          /* command byte (0x20 reads, 0x60 writes it) */
	uint8_t pending_cmd;      /* controller command waiting for its data byte */
	struct irq_line irq;      /* GSI 1 (keyboard) */
};

struct vm {
	int kvm_fd;
	int vm_fd;
	int vcpu_mmap_size;
	struct guest_mem mem;
	struct bus pio;
	struct bus mmio;
	struct boot_info boot;
	struct vm_config cfg;

	unsigned nr_vcpus;
	struct vcpu vcpus[VM_MAX_VCPUS];
	struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID, filtered per vCPU */

	struct event_loop *loop;
	/* Kernel command line: the user's plus what the devices add. */
	char cmdline[VM_CMDLINE_MAX];

	unsigned nr_virtio;
	struct virtio_mmio virtio[VM_MAX_VIRTIO];
	struct virtio_blk *blk[BLK_MAX_DRIVES];
	struct virtio_net *net[NET_MAX_IFACES];
	struct virtio_vsock *vsock;

	struct serial serial;
	struct irq_line serial_irq; /* COM1's GSI */
	struct ioapic ioapic;     /* split irqchip only */
	bool ioapic_ready;
	/* Loads kernel and initrd while KVM builds the VM (vm.c); a detached
	 * thread that posts loader_done when it no longer touches the VM. */
	sem_t loader_done;
	bool loader_started;
	int loader_ret;

	/* Set once by the first exit request; the event loop then stops. */
	atomic_bool exiting;
	atomic_int exit_code;
	int exit_eventfd;
	atomic_bool first_run_logged;
	/* CLOCK_MONOTONIC ns a --standby restore was told to resume (SIGUSR2
	 * or PATCH /vm), 0 otherwise: vCPU 0 logs the time to its first run. */
	_Atomic uint64_t standby_resume_ns;
	/* SIGUSR1: each vCPU dumps its registers once at its next exit. */
	atomic_uint dump_pending;
	atomic_bool boot_timer_fired;
	/* CLOCK_MONOTONIC ns of the API's InstanceStart, 0 without the API. */
	uint64_t instance_start_ns;

	struct i8042 i8042;

	/* Pause (PATCH /vm): vCPUs park outside KVM_RUN while pause_requested. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;   /* vCPUs wait here while paused */
	pthread_cond_t parked_cond;  /* vm_pause() waits here for them */
	atomic_bool pause_requested; /* read without the lock on every exit */
	unsigned nr_parked;
};

/* Opens /dev/kvm and creates the VM with its irqchip and memory.
 * Returns 0 or a mote_exit code (after logging what went wrong). */
int vm_create(struct vm *vm, const struct vm_config *cfg);
/* *dst = *src but for the drive slots at and past src->nr_drives, left as
 * they were: 33 KiB of the 34 KiB, none used by a function clone, whose
 * copying and clearing was ~20 page faults (~3 us each here) of every
 * start. Nothing reads a slot past nr_drives; a drive is added by
 * writing its slot whole. */
void vm_config_copy(struct vm_config *dst, const struct vm_config *src);
/* Loads kernel, initrd and command line; writes boot structures. */
int vm_load_kernel(struct vm *vm);
/* Creates the virtio devices (drives) and their transports, and adds
 * them to the kernel command line. */
int vm_add_virtio_devices(struct vm *vm, struct event_loop *loop);
void vm_destroy_virtio_devices(struct vm *vm);
/* Registers the legacy devices on the buses. */
int vm_add_legacy_devices(struct vm *vm);
int vm_create_vcpus(struct vm *vm);
/* KVM's halt polling off for this VM (KVM_CAP_HALT_POLL, max 0): a halted
 * vCPU sleeps at once instead of spinning inside KVM_RUN, which would show
 * as CPU used. 0, -EOPNOTSUPP when the host's KVM does not offer it, or
 * -errno. */
int vm_halt_poll_off(struct vm *vm);
int vm_start_vcpus(struct vm *vm);
/* Asks every vCPU to print its registers (SIGUSR1, for stuck guests). */
void vm_request_dump(struct vm *vm);
/* Kicks every vCPU out of KVM_RUN and joins the threads. */
void vm_stop_vcpus(struct vm *vm);
void vm_destroy(struct vm *vm);

/* Kicks every vCPU out of KVM_RUN and returns once all are parked, or
 * -ETIMEDOUT / -ESHUTDOWN (the VM is exiting). vm_resume() lets them go. */
int vm_pause(struct vm *vm, unsigned timeout_ms);
void vm_resume(struct vm *vm);
/* Called by each vCPU thread before KVM_RUN: waits while paused. */
void vcpu_pause_point(struct vcpu *vcpu);
/* Queues Ctrl+Alt+Del in the i8042 and raises IRQ 1. -ENOSPC if full. */
int vm_send_ctrl_alt_del(struct vm *vm);

/* Asks the VMM to stop the VM and exit with code. The first request wins;
 * callable from any thread. */
void vm_request_exit(struct vm *vm, int code, const char *why);

/* mote's IOAPIC with the split irqchip, NULL with KVM's in-kernel one:
 * what irq_line_init takes to pick a line's kind. */
static inline struct ioapic *vm_ioapic(struct vm *vm)
{
	return vm->ioapic_ready ? &vm->ioapic : NULL;
}

/* vCPU internals (vcpu.c). */
int vcpu_init(struct vm *vm, struct vcpu *vcpu, unsigned index);
void *vcpu_thread_main(void *arg);
void vcpu_dump_state(const struct vcpu *vcpu);
int vcpu_kick_signal(void);
/* Installed once, before any vCPU thread can be kicked. */
int vcpu_install_kick_handler(void);

#endif
