/* KVM's dirty page log, shared by every mote component that reads it.
 *
 * KVM_GET_DIRTY_LOG returns the pages the vCPUs wrote since the previous
 * call *and clears KVM's bitmap*. Two parts of mote want it: diff
 * snapshots (every page written since the last snapshot) and the
 * working-set tracker of a restored clone (pages written in the last
 * interval). If each called KVM itself, one would steal the other's
 * pages and a diff snapshot could miss a page. So only this module calls
 * KVM: each fetch ORs the slots' bitmaps into one accumulated bitmap per
 * consumer, and a consumer takes (and clears) only its own.
 *
 * Bit i stands for the 4 KiB page at offset i * 4096 of the host mapping
 * of guest RAM (vm->mem.base), across both RAM slots. VMM thread only. */
#ifndef MOTE_VMM_DIRTY_LOG_H
#define MOTE_VMM_DIRTY_LOG_H

#include <stdint.h>

enum dirty_log_consumer {
	DIRTY_LOG_SNAPSHOT, /* Diff snapshots: since the last snapshot */
	DIRTY_LOG_METRICS,  /* working set: since the last interval */
	DIRTY_LOG_NR,
};

struct dirty_log {
	uint64_t nr_pages;
	uint64_t words;               /* of each bitmap */
	uint64_t *acc[DIRTY_LOG_NR];  /* pages written, not yet taken */
	uint64_t *slot_buf;           /* KVM's bitmap of one slot */
	uint64_t fetches;             /* KVM_GET_DIRTY_LOG rounds (all slots) */
};

struct vm;

/* Bitmap words for `bytes` of guest RAM. */
static inline uint64_t dirty_log_words(uint64_t bytes)
{
	return (bytes / 4096 + 63) / 64;
}

int dirty_log_init(struct dirty_log *d, uint64_t mem_bytes);
void dirty_log_destroy(struct dirty_log *d);
/* ORs one slot's bitmap (bit p = the slot's page p) into every
 * consumer's, at page first_page of guest RAM. Pages past the end are
 * ignored. */
void dirty_log_merge(struct dirty_log *d, uint64_t first_page, const uint64_t *slot_bm,
		     uint64_t slot_pages);
/* Copies consumer c's pages into out (dirty_log_words() words) and
 * clears them; does not ask KVM. */
void dirty_log_take_merged(struct dirty_log *d, enum dirty_log_consumer c, uint64_t *out);

/* Turns KVM_MEM_LOG_DIRTY_PAGES on for every RAM slot of a running
 * configuration (KVM allows changing only the flags of a slot). Before
 * the seccomp lock-down. 0 or -errno. */
int dirty_log_enable(struct vm *vm);
/* Fetches KVM's log of every slot (KVM_GET_DIRTY_LOG) into every
 * consumer's bitmap. Creates vm->mem.kvm_log on first use. 0 or -errno. */
int dirty_log_fetch(struct vm *vm);
/* dirty_log_fetch, then dirty_log_take_merged. 0 or -errno. */
int dirty_log_take(struct vm *vm, enum dirty_log_consumer c, uint64_t *out);

#endif
