/* Guest RAM: one host mapping, split around the MMIO hole into at most two
 * KVM memory slots. Every guest-physical access goes through
 * guest_mem_gpa_to_hva(), which checks range and overflow. */
#ifndef MOTE_VMM_MEM_H
#define MOTE_VMM_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 2

struct guest_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct guest_mem {
	uint8_t *base;   /* host mapping of all guest RAM */
	uint64_t size;   /* total bytes of guest RAM */
	int fd;          /* backing fd (memfd, or a snapshot's memory file); -1: a caller's buffer */
	bool private_file; /* MAP_PRIVATE of a snapshot's memory file (restore) */
	/* Diff snapshots: one bit per 4 KiB page (offset from base) that the
	 * monitor itself may have written since the last snapshot: device
	 * buffers, used rings. KVM's dirty log has what the vCPUs wrote. NULL
	 * unless guest_mem_track_dirty() was called. */
	uint64_t *dirty;
	/* KVM's dirty log, shared by its readers (vmm/dirty_log.h); NULL
	 * until the first fetch. */
	struct dirty_log *kvm_log;
	/* Pages arrive from a userfaultfd handler (snapshot/load Uffd): a hole
	 * in the memfd is not a zero page. */
	bool uffd;
	unsigned nr_regions;
	struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
};

/* Maps `size` bytes of guest RAM: a memfd mapped MAP_SHARED, lazily
 * populated (the fd lets a snapshot find the pages ever written with
 * SEEK_DATA, and the working-set tracker zap host PTEs without losing
 * data). */
int guest_mem_init(struct guest_mem *mem, uint64_t size);
/* Restore: maps the first `size` bytes of the memory file `fd` MAP_PRIVATE
 * without reading it: pages fault in from the page cache on first touch
 * (shared by every VM restored from the file) and are copied on write.
 * Takes over fd (closed by guest_mem_destroy). */
int guest_mem_init_file(struct guest_mem *mem, int fd, uint64_t size);
/* Lays out regions over an existing host buffer (used by tests and restore). */
int guest_mem_init_from_buffer(struct guest_mem *mem, void *buf, uint64_t size);
void guest_mem_destroy(struct guest_mem *mem);

/* Starts recording the pages the monitor writes (see `dirty`). */
int guest_mem_track_dirty(struct guest_mem *mem);
/* Records [hva, hva+len) as written by the monitor; cheap no-op when not
 * tracking. Any thread. */
static inline void guest_mem_mark_dirty(const struct guest_mem *mem, const volatile void *hva,
					uint64_t len)
{
	if (__builtin_expect(!mem->dirty, 1) || !len)
		return;
	uint64_t first = (uint64_t)((const volatile uint8_t *)hva - mem->base) >> 12;
	uint64_t last = (uint64_t)((const volatile uint8_t *)hva - mem->base + len - 1) >> 12;
	for (uint64_t p = first; p <= last && p < (mem->size >> 12); p++)
		__atomic_fetch_or(&mem->dirty[p / 64], 1ULL << (p % 64), __ATOMIC_RELAXED);
}

/* Host address of [gpa, gpa+len) if it lies entirely within one RAM region;
 * NULL otherwise (out of range, crosses the MMIO hole, or overflows). */
void *guest_mem_gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Highest guest-physical address + 1 of RAM below the MMIO hole. */
uint64_t guest_mem_low_end(const struct guest_mem *mem);

/* Copies to/from guest memory; -EFAULT if the range is not RAM. */
int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len);
/* Zeroes [hva, hva+len) of guest RAM without touching whole pages that
 * hold nothing: on the memfd they are punched out (MADV_REMOVE), which
 * costs nothing for pages never written, where memset would fault each
 * one in (~5 us a page here: a kernel's BSS is hundreds of pages). Falls
 * back to memset where the mapping cannot punch (a test's buffer). */
void guest_mem_zero(void *hva, uint64_t len);
int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len);

#endif
