/* Where mote's metrics come from, without guest cooperation:
 *   - /proc/thread-self/schedstat of each vCPU thread (run and run-queue
 *     time, ns), opened by the vCPU thread itself before its seccomp
 *     filter goes on, then read with pread by the VMM thread;
 *   - KVM's binary statistics of each vCPU (KVM_GET_STATS_FD): exits by
 *     reason, halts, halt-poll and halt-wait time;
 *   - /proc/self/maps, to check that guest RAM is a shared mapping before
 *     the working-set tracker may zap it.
 * Parsers are pure functions over buffers (unit-tested); the readers are
 * thin pread wrappers. */
#ifndef MOTE_METRICS_SOURCES_H
#define MOTE_METRICS_SOURCES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "run_ns wait_ns timeslices\n" -> run and wait. 0 or -EINVAL. */
int schedstat_parse(const char *text, size_t len, uint64_t *run_ns, uint64_t *ready_ns);
/* pread of an open schedstat fd. 0, -EINVAL or -errno. */
int schedstat_read(int fd, uint64_t *run_ns, uint64_t *ready_ns);
/* Opens /proc/thread-self/schedstat for the calling thread (-1 on error). */
int schedstat_open_self_thread(void);

/* The KVM per-vCPU statistics mote reads, by name. */
enum kvm_stat_id {
	KSTAT_EXITS,
	KSTAT_IO_EXITS,
	KSTAT_MMIO_EXITS,
	KSTAT_HALT_EXITS,
	KSTAT_IRQ_EXITS,
	KSTAT_IRQ_WINDOW_EXITS,
	KSTAT_SIGNAL_EXITS,
	KSTAT_INSN_EMULATION,
	KSTAT_HALT_WAKEUP,
	KSTAT_HALT_WAIT_NS,
	KSTAT_HALT_POLL_SUCCESS_NS,
	KSTAT_HALT_POLL_FAIL_NS,
	KSTAT_PF_TAKEN,
	KSTAT_NR,
};

/* Names as KVM spells them, and as mote exports them. */
const char *kvm_stat_name(enum kvm_stat_id id);

/* Where each statistic lives in the data block; offset -1: not offered
 * by this kernel. */
struct kvm_stats_layout {
	uint32_t data_offset; /* of the data block in the stats fd */
	uint32_t data_size;   /* bytes to read: up to the last one we use */
	int64_t offset[KSTAT_NR];
};

/* Parses the header and descriptors (read from the start of the stats
 * fd into buf). 0 or -EINVAL for a malformed or truncated buffer. */
int kvm_stats_parse_layout(const void *buf, size_t len, struct kvm_stats_layout *out);
/* Reads the header and descriptors from fd and parses them. */
int kvm_stats_load_layout(int fd, struct kvm_stats_layout *out);
/* Reads the current values (absent ones are 0). 0 or -errno. */
int kvm_stats_read(int fd, const struct kvm_stats_layout *l, void *scratch, size_t scratch_len,
		   uint64_t values[KSTAT_NR]);

/* /proc/self/maps text: is the mapping that starts at addr shared ('s')?
 * 1 shared, 0 private, -ENOENT when no mapping starts there. */
int maps_mapping_is_shared(const char *maps, size_t len, uintptr_t addr);

#endif
