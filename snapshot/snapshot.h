/* Snapshots of a paused microVM: a state file (state.h) and a memory file.
 *
 * The memory file is guest RAM as a plain file (byte i = guest RAM byte i,
 * the RAM above the MMIO hole following the RAM below it), sparse where
 * the guest never wrote, followed by one 4 KiB footer page that names the
 * snapshot it belongs to (struct snap_mem_footer). Restore maps the RAM
 * part MAP_PRIVATE.
 *
 * Writes are atomic: both files are written under temporary names and
 * fsynced, the memory file is renamed first and the state file last. The
 * state file carries a random snapshot id that the memory file's footer
 * must repeat, so a crash between the two renames leaves a pair that
 * refuses to load rather than one that looks complete. */
#ifndef MOTE_SNAPSHOT_SNAPSHOT_H
#define MOTE_SNAPSHOT_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/state.h"
#include "vmm/vm.h"

#define SNAP_MEM_FOOTER_SIZE 4096
#define SNAP_MEM_MAGIC "MOTEMEM1"
#define SNAP_PATH_MAX 4096
#define SNAP_CPUID_MAX 256 /* entries of a saved CPUID table (SNAP_SEC_CPUID) */

struct snap_mem_footer {
	char magic[8];
	uint64_t snapshot_id;
	uint64_t mem_bytes;
	uint64_t parent_id;   /* diff: the snapshot it applies to */
	uint32_t diff;        /* 1: only the pages written since the previous snapshot */
	uint32_t crc;         /* CRC-32 of the fields above */
};

/* The machine as the state file describes it. */
struct snap_config {
	uint32_t magic, version;
	uint64_t mem_bytes;
	uint32_t nr_vcpus, cpu_template, boot_timer, nr_drives;
	uint32_t nr_virtio, track_dirty_pages;
	uint32_t irqchip, pad;      /* enum irqchip_mode */
	char kernel_path[SNAP_PATH_MAX];
	char cmdline[VM_CMDLINE_MAX];
};

struct snap_drive {
	uint32_t magic, version;
	char path[SNAP_PATH_MAX];
	char id[BLK_ID_LEN + 1];
	uint8_t read_only, is_root;
	uint8_t pad[1];
	uint64_t bw_size, bw_refill_ms, bw_burst;
	uint64_t ops_size, ops_refill_ms, ops_burst;
};

/* The vsock device's config; its streams are not saved (a restore resets
 * them, as Firecracker does: the guest hears it through the event queue). */
struct snap_vsock {
	uint32_t magic, version;
	uint64_t guest_cid;
	char uds_path[VSOCK_UDS_PATH_MAX];
};

/* A network interface's config (the TAP can be replaced on load:
 * network_overrides). */
struct snap_net {
	uint32_t magic, version;
	char id[NET_ID_MAX + 1];
	char tap[NET_TAP_NAME_MAX + 1];
	uint8_t mac[6], has_mac, pad;
	uint16_t mtu, pad2[3];
	uint64_t rl[12]; /* rx bw, rx ops, tx bw, tx ops: size, refill ms, burst each */
};

struct snap_memory {
	uint32_t magic, version;
	uint64_t snapshot_id;
	uint64_t mem_bytes;
	uint64_t parent_id;
	uint32_t diff, pad;
	char mem_path[SNAP_PATH_MAX];
};

struct snap_create_opts {
	const char *state_path;
	const char *mem_path;
	bool diff;             /* only pages dirtied since the last snapshot (track_dirty_pages) */
};

/* Opens what a later snapshot_create needs but the VMM thread's seccomp
 * filter does not allow it to open (/proc/self/pagemap). Call before the
 * filter is installed. 0 or -errno. */
int snapshot_prepare(void);

/* Writes a snapshot of vm, whose vCPUs must be paused (vm_pause). Runs on
 * the VMM thread. Returns 0, or -errno with a message naming the file and
 * the problem in err; on failure no file exists under the final names
 * that was not there before. */
int snapshot_create(struct vm *vm, const struct snap_create_opts *o, char *err, size_t errlen);

/* A state file read and checked against its memory file, ready to apply. */
struct snap_image {
	uint8_t *buf;          /* the state file */
	size_t len;
	struct snap_state st;
	struct snap_config cfg;
	struct snap_memory mem;
	struct snap_drive drives[BLK_MAX_DRIVES];
	bool has_vsock;
	struct snap_vsock vsock;
	unsigned nr_nets;
	struct snap_net nets[NET_MAX_IFACES];
	int mem_fd;            /* the memory file, opened read-only */
	/* SNAP_SEC_CPUID: vCPU i's CPUID table (views into buf), for the
	 * first nr_cpuid vCPUs. */
	const struct kvm_cpuid2 *cpuid[VM_MAX_VCPUS];
	unsigned nr_cpuid;
	bool clock_realtime;   /* apply: advance kvmclock by the wall time since the save */
	char state_path[SNAP_PATH_MAX];
	char mem_path[SNAP_PATH_MAX];
};

/* Reads state_path and checks it (container, config, vCPU and device
 * sections present and well-formed, each drive's backing file still
 * there), then opens mem_path and checks its size and footer (mem_path
 * NULL: the Uffd backend, whose handler owns the memory file). Returns 0,
 * or -errno with "'<file>': <problem>" in err. */
int snapshot_open(struct snap_image *img, const char *state_path, const char *mem_path,
		  char *err, size_t errlen);
void snapshot_close(struct snap_image *img);

/* Writes out_path = base memory file + diff memory file (the pages the
 * diff holds replace the base's), atomically (temporary name, fsync,
 * rename). The result is a full memory file for the diff's state file.
 * Checks that diff is a diff of base. 0 or -errno with err. */
int snapshot_merge(const char *base_path, const char *diff_path, const char *out_path,
		   char *err, size_t errlen);

/* Fills a vm_config (memory from the image's file, drives, vCPUs) that
 * vm_create and vm_add_virtio_devices turn into the same machine. The
 * config's strings point into img. Hands img's mem_fd to the config. */
void snapshot_vm_config(struct snap_image *img, struct vm_config *cfg);

/* After vm_create, vm_add_virtio_devices, vm_add_legacy_devices and
 * vm_create_vcpus: sets every vCPU, the interrupt controller(s), clock, serial,
 * i8042 and virtio device to the saved state. 0 or -errno with err. */
int snapshot_apply(struct vm *vm, const struct snap_image *img, char *err, size_t errlen);

/* uffd.c: guest RAM filled on demand by a page-fault handler: registers
 * mem with a new userfaultfd and sends it, with the region list, to the
 * handler listening on sock_path. Before anything touches guest RAM.
 * 0 or -errno with err. */
int snapshot_uffd_attach(struct guest_mem *mem, const char *sock_path, char *err, size_t errlen);

/* prefetch.c: working-set prefetch. record writes the guest pages this
 * process has mapped (touched since the restore) to path; prefetch maps
 * the pages a record lists (MADV_POPULATE_READ) before the vCPUs start.
 * 0 or -errno (-EINVAL: not a record for this memory size). */
int snapshot_ws_record(const struct guest_mem *mem, const char *path, uint64_t *nr_pages);
int snapshot_ws_prefetch(const struct guest_mem *mem, const char *path, uint64_t *nr_pages);

/* kvm.c: the KVM parts. */
int snap_save_vcpus(struct vm *vm, struct snap_writer *w, char *err, size_t errlen);
int snap_restore_vcpus(struct vm *vm, const struct snap_state *st, char *err, size_t errlen);
int snap_save_vm(struct vm *vm, struct snap_writer *w, char *err, size_t errlen);
int snap_restore_vm(struct vm *vm, const struct snap_state *st, bool clock_realtime, char *err,
		    size_t errlen);
/* Diff snapshots: fills bm (a bit per page) with the pages written since
 * the last call: KVM's dirty log of every slot and the monitor's own
 * writes (guest_mem.dirty). Needs track_dirty_pages. */
int snap_collect_dirty(struct vm *vm, uint64_t *bm);
/* The size a vCPU section must have. */
size_t snap_vcpu_state_size(void);

#endif
